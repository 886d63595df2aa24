//! Checkpoints: barrier alignment inside a task, the coordinator's state machine, the typed
//! configuration, the layout of completed checkpoints and the stores that hold their files
//! (a local directory, or an object store a process registers).

mod aligner;
pub mod config;
pub mod coordinator;
pub mod metadata;
pub mod storage;
pub mod store;

pub use aligner::BarrierAligner;
pub use config::{CheckpointConfig, RestartStrategy, S3Config, parse_duration};
pub use coordinator::{CheckpointCoordinator, CoordinatorAction, CoordinatorEvent, TaskKey};
pub use metadata::{CheckpointMetadata, OperatorState, StateFile};
pub use storage::{CheckpointStorage, RestoredCheckpoint, SubtaskSnapshot};
pub use store::{
    EntryKind, LocalStore, ObjectStores, ObjectUrl, StatePath, StateStore, StateStores, StoreEntry,
};
