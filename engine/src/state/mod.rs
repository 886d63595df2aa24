//! Keyed state and its partitioning into key groups.
//!
//! Keys are hashed into `max_parallelism` key groups; each subtask of a keyed operator owns a
//! contiguous [`KeyGroupRange`]. State is snapshotted per key-group range ([`StateSnapshot`]),
//! which is what lets a job restore at a different parallelism.

mod key_group;
mod snapshot;

pub use key_group::{KeyGroupRange, hash_columns, key_group_of_hash, subtask_for_key_group};
pub use snapshot::{SnapshotTable, StateSnapshot};
