//! The batch-level operator trait and the built-in operators.
//!
//! An [`Operator`] runs on its slot's pinned thread, one call per batch. It is synchronous
//! and object-safe: one virtual call per batch is cheap, one per row would not be, so all row
//! work happens inside arrow kernels or typed loops within an operator.
//!
//! Lifecycle, driven by the chain driver (`runtime::task`):
//! `open` → `restore` (restarted jobs only) → any number of `process_batch` /
//! `process_watermark` / `snapshot` / `notify_checkpoint_complete` → `finish` (once, at end of
//! input; may emit final results) → `finish_more` (until it returns false; the rest of a large
//! final result) → `close` (always, also after a failure).

mod aggregate;
mod filter;
mod join;
mod lookup_join;
mod project;
mod rank;
pub(crate) mod registry;
#[cfg(test)]
mod restore_tests;
mod sink;
mod sort;
mod union;
mod user_function;
mod window;

pub(crate) use aggregate::GroupTable;
pub use aggregate::KeyedAggregate;
pub(crate) use aggregate::partial_state_types;
pub use filter::Filter;
pub use lookup_join::LookupJoin;
pub use project::Project;
pub use rank::Rank;
pub use registry::{OperatorFactory, OperatorRegistry};
pub use sink::SinkOperator;
pub use sort::Sort;
pub use union::Union;
pub use user_function::{MissingFunction, UserFunctionFactory, UserFunctions};

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;

use crate::Result;
use crate::element::{CheckpointBarrier, StreamElement, Watermark};
use crate::ids::{CheckpointId, SubtaskIndex};
use crate::runtime::OperatorMetrics;
use crate::state::{KeyGroupRange, StateSnapshot};

/// What an operator learns about its place in the job when it is opened.
#[derive(Debug, Clone)]
pub struct OperatorContext {
    /// The vertex name (unique within the job).
    pub vertex: String,
    pub subtask: SubtaskIndex,
    pub parallelism: u32,
    pub max_parallelism: u32,
    /// The key groups this subtask owns (keyed operators only see keys from these).
    pub key_groups: KeyGroupRange,
    /// One schema per input index.
    pub input_schemas: Vec<SchemaRef>,
    pub output_schema: SchemaRef,
    /// Checkpoints are incremental (`execution.checkpointing.incremental`): keyed operators
    /// that track their changes leave key-group slices unchanged since the last completed
    /// checkpoint out of their snapshots ([`crate::state::ChangeTracker`]).
    pub incremental_checkpoints: bool,
    /// The job takes checkpoints: exactly-once sinks hold output back until the checkpoint
    /// that covers it completes.
    pub checkpointing: bool,
    /// What this instance may hold in memory before it spills (memory-consuming operators;
    /// unlimited for the others).
    pub memory: crate::spill::MemoryBudget,
}

/// `batch` in slices of at most `rows` rows (zero-copy), for operators that emit a large
/// result in batches of the usual size.
pub(crate) fn slices(batch: RecordBatch, rows: usize) -> impl Iterator<Item = RecordBatch> {
    (0..batch.num_rows())
        .step_by(rows)
        .map(move |at| batch.slice(at, rows.min(batch.num_rows() - at)))
}

/// Where an operator puts what it produces. The chain driver drains it into the next operator
/// (a direct call) or into the partitioner of the chain's outgoing edges.
#[derive(Debug, Default)]
pub struct Output {
    elements: Vec<StreamElement>,
}

impl Output {
    /// Emits a batch; empty batches are dropped here so no operator sends one downstream.
    pub fn push_batch(&mut self, batch: RecordBatch) {
        if batch.num_rows() > 0 {
            self.elements.push(StreamElement::Batch(batch));
        }
    }

    pub fn push_watermark(&mut self, watermark: Watermark) {
        self.elements.push(StreamElement::Watermark(watermark));
    }

    pub(crate) fn push_barrier(&mut self, barrier: CheckpointBarrier) {
        self.elements.push(StreamElement::Barrier(barrier));
    }

    pub(crate) fn take(&mut self) -> Vec<StreamElement> {
        std::mem::take(&mut self.elements)
    }

    /// Returns a drained vector so its allocation is reused.
    pub(crate) fn recycle(&mut self, mut spent: Vec<StreamElement>) {
        if self.elements.is_empty() {
            spent.clear();
            self.elements = spent;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.elements.is_empty()
    }

    /// Drops everything emitted so far (benchmarks and harnesses that discard output).
    pub fn clear(&mut self) {
        self.elements.clear();
    }

    /// Takes everything emitted so far, in order (harnesses that drive an operator directly).
    pub fn drain(&mut self) -> Vec<StreamElement> {
        std::mem::take(&mut self.elements)
    }
}

/// A batch-at-a-time stream operator.
///
/// Called only from the slot thread that owns the subtask; never concurrently. A call may not
/// block on I/O for long: blocking work belongs on a separate runtime, reached through bounded
/// queues. An `Err` fails the task and with it the job (or, once restarts exist, the attempt).
pub trait Operator: Send {
    /// Called once before any element. Operators that need state handles or the key-group
    /// range take them from `ctx`.
    fn open(&mut self, ctx: &OperatorContext) -> Result<()> {
        let _ = ctx;
        Ok(())
    }

    /// Processes one non-empty batch that arrived on input `input` (0 for single-input
    /// operators).
    fn process_batch(&mut self, input: usize, batch: RecordBatch, out: &mut Output) -> Result<()>;

    /// The combined watermark of all inputs advanced. The default forwards it.
    fn process_watermark(&mut self, watermark: Watermark, out: &mut Output) -> Result<()> {
        out.push_watermark(watermark);
        Ok(())
    }

    /// The wall clock moved on (called every few milliseconds while the task runs, also when
    /// no data arrives): fire processing-time timers and windows that are due. The default
    /// does nothing.
    fn on_processing_time(&mut self, now_ms: i64, out: &mut Output) -> Result<()> {
        let _ = (now_ms, out);
        Ok(())
    }

    /// Takes a snapshot of the operator's state for `checkpoint`. Called after all inputs have
    /// delivered the checkpoint's barrier and before the barrier is forwarded. Stateless
    /// operators keep the default (an empty snapshot).
    fn snapshot(&mut self, checkpoint: CheckpointId) -> Result<StateSnapshot> {
        let _ = checkpoint;
        Ok(StateSnapshot::default())
    }

    /// Loads the state of a restored checkpoint, after `open` and before any element. The
    /// snapshot may have been taken at another parallelism: keyed operators keep only the
    /// rows of the key groups they own. A restarted job calls this on every operator, with an
    /// empty snapshot when the checkpoint holds nothing for it. The default accepts only an
    /// empty snapshot: an operator that snapshots state must restore it.
    fn restore(&mut self, snapshot: &StateSnapshot) -> Result<()> {
        if snapshot.is_empty() {
            Ok(())
        } else {
            Err(crate::Error::Internal(format!(
                "an operator without restore support was handed a non-empty snapshot ({} \
                 tables)",
                snapshot.tables.len()
            )))
        }
    }

    /// Checkpoint `checkpoint` (and every earlier one) completed. Sinks commit what they
    /// pre-committed. The default does nothing.
    fn notify_checkpoint_complete(&mut self, checkpoint: CheckpointId) -> Result<()> {
        let _ = checkpoint;
        Ok(())
    }

    /// Input `input` has ended (every channel of it) while other inputs go on; not called
    /// for the last one to end, which [`Operator::finish`] follows. A batch join whose build
    /// side ended first starts probing with the rows of the other side as they come. The
    /// default does nothing.
    fn end_input(&mut self, input: usize, out: &mut Output) -> Result<()> {
        let _ = (input, out);
        Ok(())
    }

    /// All inputs have ended: emit whatever is final (aggregates of a bounded input, buffered
    /// rows of a sink). Called once.
    fn finish(&mut self, out: &mut Output) -> Result<()> {
        let _ = out;
        Ok(())
    }

    /// Called after [`Operator::finish`], once per step of the task, until it returns false:
    /// an operator with a large final result (a batch join, partition by partition) emits it
    /// in parts, and the task sends each part on, waiting while downstream is backpressured,
    /// before asking for the next, so the result is never held whole. The default has
    /// nothing more.
    fn finish_more(&mut self, out: &mut Output) -> Result<bool> {
        let _ = out;
        Ok(false)
    }

    /// Adds what only the operator knows to its metrics: late records dropped, state size.
    /// Called off the hot path (when metrics are collected).
    fn report_metrics(&self, metrics: &mut OperatorMetrics) {
        let _ = metrics;
    }

    /// Releases resources. Called once, also when the job fails or is cancelled.
    fn close(&mut self) -> Result<()> {
        Ok(())
    }
}
