//! The collecting sink: keeps a job's output in memory for the caller (tests, examples).
//!
//! Without checkpoints each subtask buffers its batches locally and hands them over once, at
//! end of input, so the shared map's lock is taken once per subtask, never per batch.
//!
//! With checkpoints it is exactly-once: on a barrier the batches buffered since the previous
//! one are *staged* in the shared results under the checkpoint id (pre-commit); when the
//! checkpoint completes, everything staged up to it becomes visible (commit). A failed
//! attempt's unstaged buffer dies with it; on restore, the restored checkpoint's staged data is
//! committed (its completion may not have reached the failed attempt) and anything staged
//! after it is discarded, so the replay from the checkpoint adds each row exactly once. The
//! staging is per subtask index: restoring at another parallelism is not supported for it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use arrow::record_batch::RecordBatch;

use super::Sink;
use crate::Result;
use crate::ids::CheckpointId;
use crate::operator::OperatorContext;

/// Batches by sink name, then by subtask.
type BySink = BTreeMap<String, BTreeMap<u32, Vec<RecordBatch>>>;

/// Pre-committed batches by (sink name, subtask), then checkpoint id.
type Staged = BTreeMap<(String, u32), BTreeMap<CheckpointId, Vec<RecordBatch>>>;

#[derive(Debug, Default)]
struct Store {
    committed: BySink,
    staged: Staged,
}

impl Store {
    /// Makes the staged batches of `checkpoint` and earlier visible.
    fn commit(&mut self, name: &str, subtask: u32, checkpoint: Option<CheckpointId>) {
        let Some(staged) = self.staged.get_mut(&(name.to_string(), subtask)) else {
            return;
        };
        let done = match checkpoint {
            Some(id) => {
                let later = staged.split_off(&CheckpointId(id.0.saturating_add(1)));
                std::mem::replace(staged, later)
            }
            None => std::mem::take(staged),
        };
        let target = self
            .committed
            .entry(name.to_string())
            .or_default()
            .entry(subtask)
            .or_default();
        for (_, mut batches) in done {
            target.append(&mut batches);
        }
    }
}

/// The results of all collecting sinks of a job, by sink name, then by subtask.
#[derive(Debug, Clone, Default)]
pub struct CollectedResults {
    inner: Arc<Mutex<Store>>,
}

impl CollectedResults {
    pub(crate) fn sink(&self, name: &str) -> CollectSink {
        CollectSink {
            name: name.to_string(),
            subtask: 0,
            batches: Vec::new(),
            results: self.clone(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Store> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Adds `batch` as what `subtask` of sink `name` produced.
    pub(crate) fn put(&self, name: &str, subtask: u32, batch: RecordBatch) {
        self.lock()
            .committed
            .entry(name.to_string())
            .or_default()
            .entry(subtask)
            .or_default()
            .push(batch);
    }

    /// All batches collected under `name`, subtask by subtask.
    pub fn batches(&self, name: &str) -> Vec<RecordBatch> {
        self.lock()
            .committed
            .get(name)
            .map(|by_subtask| by_subtask.values().flatten().cloned().collect())
            .unwrap_or_default()
    }

    /// Names of the sinks that collected anything.
    pub fn names(&self) -> Vec<String> {
        self.lock().committed.keys().cloned().collect()
    }
}

pub(crate) struct CollectSink {
    name: String,
    subtask: u32,
    batches: Vec<RecordBatch>,
    results: CollectedResults,
}

impl Sink for CollectSink {
    fn open(&mut self, ctx: &OperatorContext) -> Result<()> {
        self.subtask = ctx.subtask.0;
        Ok(())
    }

    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        self.batches.push(batch.clone());
        Ok(())
    }

    fn pre_commit(&mut self, checkpoint: CheckpointId) -> Result<Vec<u8>> {
        let batches = std::mem::take(&mut self.batches);
        self.results
            .lock()
            .staged
            .entry((self.name.clone(), self.subtask))
            .or_default()
            .insert(checkpoint, batches);
        Ok(Vec::new())
    }

    fn commit(&mut self, checkpoint: CheckpointId, _pending: &[u8]) -> Result<()> {
        self.results
            .lock()
            .commit(&self.name, self.subtask, Some(checkpoint));
        Ok(())
    }

    fn recover(&mut self, restored: Option<(CheckpointId, &[u8])>) -> Result<()> {
        let mut store = self.results.lock();
        if let Some((checkpoint, _)) = restored {
            store.commit(&self.name, self.subtask, Some(checkpoint));
        }
        // What is still staged belongs to checkpoints that never completed: the replay
        // produces it again.
        store.staged.remove(&(self.name.clone(), self.subtask));
        Ok(())
    }

    fn abort(&mut self, _checkpoint: CheckpointId, _pending: &[u8]) -> Result<()> {
        // Staged data of an aborted checkpoint stays staged: the next completed checkpoint
        // covers it (it was written before that checkpoint's barrier too).
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        let mut store = self.results.lock();
        store.commit(&self.name, self.subtask, None);
        store
            .committed
            .entry(self.name.clone())
            .or_default()
            .entry(self.subtask)
            .or_default()
            .append(&mut self.batches);
        Ok(())
    }
}
