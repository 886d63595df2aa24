//! The `blackhole` sink: accepts and discards every row.

use arrow::record_batch::RecordBatch;

use super::Sink;
use crate::Result;

pub(crate) struct BlackholeSink;

impl Sink for BlackholeSink {
    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        std::hint::black_box(batch);
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        Ok(())
    }
}
