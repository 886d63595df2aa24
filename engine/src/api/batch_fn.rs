//! A user function applied to every batch (the DataStream API's `map_batches`).

use std::sync::Arc;

use arrow::record_batch::RecordBatch;

use crate::Result;
use crate::operator::{Operator, Output};

/// A function from a batch to a batch, shared by the subtasks that run it.
pub type BatchFunction = Arc<dyn Fn(&RecordBatch) -> Result<RecordBatch> + Send + Sync>;

/// Runs a batch function: one call per batch.
pub struct BatchFn {
    function: BatchFunction,
}

impl BatchFn {
    pub fn new(function: BatchFunction) -> Self {
        BatchFn { function }
    }
}

impl Operator for BatchFn {
    fn process_batch(&mut self, _input: usize, batch: RecordBatch, out: &mut Output) -> Result<()> {
        out.push_batch((self.function)(&batch)?);
        Ok(())
    }
}
