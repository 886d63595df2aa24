//! Checkpoints: barrier alignment inside a task, the coordinator's state machine, the typed
//! configuration and the file storage of completed checkpoints.

mod aligner;
pub mod config;
pub mod coordinator;
pub mod metadata;
pub mod storage;

pub use aligner::BarrierAligner;
pub use config::{CheckpointConfig, RestartStrategy, parse_duration};
pub use coordinator::{CheckpointCoordinator, CoordinatorAction, CoordinatorEvent, TaskKey};
pub use metadata::{CheckpointMetadata, OperatorState, StateFile};
pub use storage::{CheckpointStorage, RestoredCheckpoint, SubtaskSnapshot};
