//! The collecting sink: keeps a job's output in memory for the caller (tests, examples).
//!
//! Each subtask buffers its batches locally and hands them over once, at end of input, so the
//! shared map's lock is taken once per subtask, never per batch.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use arrow::record_batch::RecordBatch;

use super::Sink;
use crate::Result;
use crate::operator::OperatorContext;

/// Batches by sink name, then by subtask.
type BySink = BTreeMap<String, BTreeMap<u32, Vec<RecordBatch>>>;

/// The results of all collecting sinks of a job, by sink name, then by subtask.
#[derive(Debug, Clone, Default)]
pub struct CollectedResults {
    inner: Arc<Mutex<BySink>>,
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

    /// Adds `batch` as what `subtask` of sink `name` produced.
    pub(crate) fn put(&self, name: &str, subtask: u32, batch: RecordBatch) {
        let mut inner = self
            .inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        inner
            .entry(name.to_string())
            .or_default()
            .entry(subtask)
            .or_default()
            .push(batch);
    }

    /// All batches collected under `name`, subtask by subtask.
    pub fn batches(&self, name: &str) -> Vec<RecordBatch> {
        let inner = self
            .inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        inner
            .get(name)
            .map(|by_subtask| by_subtask.values().flatten().cloned().collect())
            .unwrap_or_default()
    }

    /// Names of the sinks that collected anything.
    pub fn names(&self) -> Vec<String> {
        let inner = self
            .inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        inner.keys().cloned().collect()
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

    fn finish(&mut self) -> Result<()> {
        let mut inner = self
            .results
            .inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        inner
            .entry(self.name.clone())
            .or_default()
            .entry(self.subtask)
            .or_default()
            .append(&mut self.batches);
        Ok(())
    }
}
