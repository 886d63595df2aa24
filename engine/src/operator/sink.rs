//! The operator that drives a [`Sink`]: the last operator of a chain.
//!
//! On a barrier it pre-commits the sink and puts the result, prefixed with the checkpoint id
//! (8 bytes, little endian), into the snapshot, so a restore knows which checkpoint the data
//! belongs to. On completion of a checkpoint it commits every pre-commit up to it; on restore
//! it hands the checkpoint's pre-commit to [`Sink::recover`].

use std::collections::BTreeMap;

use arrow::record_batch::RecordBatch;

use super::{Operator, OperatorContext, Output};
use crate::connector::Sink;
use crate::element::Watermark;
use crate::ids::CheckpointId;
use crate::state::StateSnapshot;
use crate::{Error, Result};

pub struct SinkOperator {
    sink: Box<dyn Sink>,
    /// Pre-committed, not yet committed: checkpoint id → the sink's data.
    pending: BTreeMap<CheckpointId, Vec<u8>>,
}

impl SinkOperator {
    pub fn new(sink: Box<dyn Sink>) -> Self {
        SinkOperator {
            sink,
            pending: BTreeMap::new(),
        }
    }
}

impl Operator for SinkOperator {
    fn open(&mut self, ctx: &OperatorContext) -> Result<()> {
        self.sink.open(ctx)
    }

    fn process_batch(
        &mut self,
        _input: usize,
        batch: RecordBatch,
        _out: &mut Output,
    ) -> Result<()> {
        self.sink.write(&batch)
    }

    fn process_watermark(&mut self, _watermark: Watermark, _out: &mut Output) -> Result<()> {
        Ok(())
    }

    fn snapshot(&mut self, checkpoint: CheckpointId) -> Result<StateSnapshot> {
        let data = self.sink.pre_commit(checkpoint)?;
        let mut framed = Vec::with_capacity(8 + data.len());
        framed.extend_from_slice(&checkpoint.0.to_le_bytes());
        framed.extend_from_slice(&data);
        self.pending.insert(checkpoint, data);
        let tables = self.sink.snapshot_tables(checkpoint)?;
        Ok(StateSnapshot {
            key_groups: None,
            tables,
            sink_pre_commit: Some(framed),
        })
    }

    fn restore(&mut self, snapshot: &StateSnapshot) -> Result<()> {
        self.sink.restore_tables(&snapshot.tables)?;
        match &snapshot.sink_pre_commit {
            Some(framed) => {
                let (id, data) = framed.split_first_chunk::<8>().ok_or_else(|| {
                    Error::data("sink pre-commit in checkpoint", "shorter than its header")
                })?;
                self.sink
                    .recover(Some((CheckpointId(u64::from_le_bytes(*id)), data)))
            }
            None => self.sink.recover(None),
        }
    }

    fn notify_checkpoint_complete(&mut self, checkpoint: CheckpointId) -> Result<()> {
        let later = self
            .pending
            .split_off(&CheckpointId(checkpoint.0.saturating_add(1)));
        let done = std::mem::replace(&mut self.pending, later);
        for (id, data) in done {
            self.sink.commit(id, &data)?;
        }
        Ok(())
    }

    /// End of input: every pre-commit still waiting for its checkpoint's completion is
    /// committed, then the sink finishes. The input is complete, so nothing staged can be
    /// replayed any more; a completion notice may never come (the job's last checkpoints are
    /// aborted as its tasks finish, and a notice can arrive after this task has ended). Should
    /// the job still fail and restart from an earlier checkpoint, [`Sink::recover`] removes
    /// what was committed after that checkpoint, so the output stays exactly once.
    fn finish(&mut self, _out: &mut Output) -> Result<()> {
        for (id, data) in std::mem::take(&mut self.pending) {
            self.sink.commit(id, &data)?;
        }
        self.sink.finish()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Records the calls it gets.
    struct Recording(Arc<Mutex<Vec<String>>>);

    impl Sink for Recording {
        fn write(&mut self, _batch: &RecordBatch) -> Result<()> {
            Ok(())
        }

        fn pre_commit(&mut self, checkpoint: CheckpointId) -> Result<Vec<u8>> {
            Ok(format!("staged-{}", checkpoint.0).into_bytes())
        }

        fn commit(&mut self, checkpoint: CheckpointId, pending: &[u8]) -> Result<()> {
            let pending = String::from_utf8_lossy(pending);
            self.0
                .lock()
                .unwrap()
                .push(format!("commit {} {pending}", checkpoint.0));
            Ok(())
        }

        fn finish(&mut self) -> Result<()> {
            self.0.lock().unwrap().push("finish".into());
            Ok(())
        }
    }

    #[test]
    fn finishing_commits_the_pre_commits_whose_completion_never_came() {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let mut operator = SinkOperator::new(Box::new(Recording(calls.clone())));
        for id in 1..=3 {
            operator.snapshot(CheckpointId(id)).unwrap();
        }
        operator
            .notify_checkpoint_complete(CheckpointId(1))
            .unwrap();
        operator.finish(&mut Output::default()).unwrap();
        assert_eq!(
            *calls.lock().unwrap(),
            [
                "commit 1 staged-1",
                "commit 2 staged-2",
                "commit 3 staged-3",
                "finish"
            ]
        );
    }
}
