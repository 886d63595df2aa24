//! The elements of a stream.
//!
//! A stream carries exactly four kinds of element, in order: record batches, watermarks,
//! checkpoint barriers and one end-of-input marker. Every `match` on [`StreamElement`] lists all
//! four; adding a kind is meant to be a compile error everywhere it matters.

use arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};

use crate::ids::CheckpointId;

/// An event-time watermark in milliseconds since the epoch: no later element of this stream has
/// an event time at or below it (except late records, which operators count and drop).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Watermark(pub i64);

impl Watermark {
    /// The watermark that closes every window: emitted at the end of bounded input.
    pub const MAX: Watermark = Watermark(i64::MAX);
    /// The watermark before any data.
    pub const MIN: Watermark = Watermark(i64::MIN);
}

/// Whether a barrier belongs to a periodic checkpoint or a user-triggered savepoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SnapshotKind {
    Checkpoint,
    Savepoint,
}

/// A checkpoint barrier, injected at the sources and flowing in-band with the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CheckpointBarrier {
    pub id: CheckpointId,
    /// When the coordinator triggered it, milliseconds since the epoch.
    pub timestamp_ms: i64,
    pub kind: SnapshotKind,
}

/// One element of a stream.
#[derive(Debug, Clone)]
pub enum StreamElement {
    /// A batch of records. Never empty when sent between tasks.
    Batch(RecordBatch),
    Watermark(Watermark),
    Barrier(CheckpointBarrier),
    /// The producer has no more elements; the last element of every stream.
    EndOfInput,
}

impl StreamElement {
    /// A short name for logs and errors.
    pub fn kind_name(&self) -> &'static str {
        match self {
            StreamElement::Batch(_) => "batch",
            StreamElement::Watermark(_) => "watermark",
            StreamElement::Barrier(_) => "barrier",
            StreamElement::EndOfInput => "end-of-input",
        }
    }
}

/// The name of the column that carries a row's [`RowKind`] in a changelog stream.
pub const ROW_KIND_COLUMN: &str = "_row_kind";

/// The kind of change a row of a changelog stream describes, as Flink's `RowKind`. Stored as
/// `Int8` in the [`ROW_KIND_COLUMN`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[repr(i8)]
pub enum RowKind {
    /// `+I`: a new row.
    Insert = 0,
    /// `-U`: the previous version of an updated row (retracted).
    UpdateBefore = 1,
    /// `+U`: the new version of an updated row.
    UpdateAfter = 2,
    /// `-D`: a deleted row.
    Delete = 3,
}

impl RowKind {
    /// Flink's short notation: `+I`, `-U`, `+U`, `-D`.
    pub fn short_string(self) -> &'static str {
        match self {
            RowKind::Insert => "+I",
            RowKind::UpdateBefore => "-U",
            RowKind::UpdateAfter => "+U",
            RowKind::Delete => "-D",
        }
    }

    pub fn from_i8(value: i8) -> Option<RowKind> {
        match value {
            0 => Some(RowKind::Insert),
            1 => Some(RowKind::UpdateBefore),
            2 => Some(RowKind::UpdateAfter),
            3 => Some(RowKind::Delete),
            _ => None,
        }
    }
}
