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
        Ok(StateSnapshot {
            key_groups: None,
            tables: Vec::new(),
            sink_pre_commit: Some(framed),
        })
    }

    fn restore(&mut self, snapshot: &StateSnapshot) -> Result<()> {
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

    fn finish(&mut self, _out: &mut Output) -> Result<()> {
        self.sink.finish()
    }
}
