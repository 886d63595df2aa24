//! Keyed state and its partitioning into key groups.
//!
//! Keys are hashed into `max_parallelism` key groups; each subtask of a keyed operator owns a
//! contiguous [`KeyGroupRange`]. [`KeyedStateBackend`] holds an operator's keyed state by
//! dense key id. State is snapshotted per key-group range ([`StateSnapshot`]), which is what
//! lets a job restore at a different parallelism.

mod incremental;
mod key_group;
mod keyed;
mod snapshot;

pub use incremental::{
    ChangeTracker, MAX_SLICES, SliceSelection, SliceSet, TableSlices, TouchedIds, slice_range,
    slice_width, slices_of,
};
pub use key_group::{
    KeyGroupOwnership, KeyGroupRange, hash_columns, key_group_of_hash, subtask_for_key_group,
};
pub(crate) use keyed::snapshot_columns;
pub use keyed::{ColumnState, KeyId, KeyTable, KeyedStateBackend, ListState, MapState, ValueState};
pub use snapshot::{SnapshotTable, StateSnapshot};
