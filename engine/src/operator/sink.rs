//! The operator that drives a [`Sink`]: the last operator of a chain.

use arrow::record_batch::RecordBatch;

use super::{Operator, OperatorContext, Output};
use crate::Result;
use crate::connector::Sink;
use crate::element::Watermark;
use crate::ids::CheckpointId;
use crate::state::StateSnapshot;

pub struct SinkOperator {
    sink: Box<dyn Sink>,
}

impl SinkOperator {
    pub fn new(sink: Box<dyn Sink>) -> Self {
        SinkOperator { sink }
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
        // The pre-commit result joins the checkpoint once the checkpoint storage exists;
        // flushing here already gives at-least-once output at every barrier.
        self.sink.pre_commit(checkpoint)?;
        Ok(StateSnapshot::default())
    }

    fn finish(&mut self, _out: &mut Output) -> Result<()> {
        self.sink.finish()
    }
}
