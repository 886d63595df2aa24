//! Union: merges all inputs into one stream. The chain driver already takes the minimum
//! watermark over the inputs, so batches pass through unchanged.

use arrow::record_batch::RecordBatch;

use super::{Operator, Output};
use crate::Result;

#[derive(Debug, Default)]
pub struct Union;

impl Operator for Union {
    fn process_batch(&mut self, _input: usize, batch: RecordBatch, out: &mut Output) -> Result<()> {
        out.push_batch(batch);
        Ok(())
    }
}
