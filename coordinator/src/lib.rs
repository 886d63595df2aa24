//! # sluice-coordinator
//!
//! The JobManager side of Sluice and the `sluice` executable. Today: the embedded local mode
//! ([`local`]), which runs a JobGraph inside this process on the engine's local runtime. The
//! Dispatcher, ResourceManager, JobMaster, CheckpointCoordinator and etcd HA join here in later
//! issues, each as a pure state machine with a thin async shell.

pub mod interrupt;
pub mod local;
pub mod sql_client;
