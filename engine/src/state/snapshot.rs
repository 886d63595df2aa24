//! The in-memory form of an operator's snapshot, before it is written to files.
//!
//! Tabular state (aggregation tables, window contents, timers) is handed over as Arrow batches
//! so the checkpoint writer can store it as Parquet or Arrow IPC without a conversion. Keyed
//! tables carry a key-group column so a restore can pick the key groups a subtask owns.

use arrow::record_batch::RecordBatch;

use super::{KeyGroupRange, TableSlices};

/// One named table of an operator's state.
#[derive(Debug, Clone)]
pub struct SnapshotTable {
    pub name: String,
    pub batches: Vec<RecordBatch>,
    /// For a keyed table (with a `key_group` column) of an operator that tracks its changes:
    /// how it is cut into key-group slices for an incremental checkpoint, and which slices
    /// are left out of `batches` because they did not change. `None`: one file, all rows.
    pub slices: Option<TableSlices>,
}

impl SnapshotTable {
    /// A table written whole, as one file.
    pub fn new(name: impl Into<String>, batches: Vec<RecordBatch>) -> Self {
        SnapshotTable {
            name: name.into(),
            batches,
            slices: None,
        }
    }
}

/// Everything an operator needs to resume where it was.
#[derive(Debug, Clone, Default)]
pub struct StateSnapshot {
    /// The key groups covered, for keyed operators.
    pub key_groups: Option<KeyGroupRange>,
    pub tables: Vec<SnapshotTable>,
    /// What a sink's `pre_commit` returned for this checkpoint; stored in the checkpoint's
    /// metadata and handed back to the sink to commit on completion or restore.
    pub sink_pre_commit: Option<Vec<u8>>,
}

impl StateSnapshot {
    pub fn is_empty(&self) -> bool {
        self.tables.iter().all(|t| t.batches.is_empty()) && self.sink_pre_commit.is_none()
    }
}
