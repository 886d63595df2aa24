//! # sluice-coordinator
//!
//! The JobManager side of Sluice and the `sluice` executable.
//!
//! - [`local`]: the embedded local mode, which runs a JobGraph inside this process on the
//!   engine's local runtime.
//! - [`jobmanager`]: the cluster's JobManager process: the [`dispatcher`] (REST API, job
//!   submission), the [`resource_manager`] (TaskManagers, slots, heartbeats) and one
//!   [`job_master`] per job (ExecutionGraph, task states), speaking gRPC ([`rpc`]).
//! - [`taskmanager`]: the TaskManager process: offers slots, heartbeats, runs deployed tasks;
//!   [`exchange`] places a deployment's tasks for its Flight data exchange, and
//!   [`checkpoint`]: its side of checkpoints (acknowledgements to the JobMaster).
//! - [`rest_client`]: the CLI's client of the REST API; [`remote`]: the DataStream API's
//!   remote environment, which submits a program's job to a running cluster.
//! - [`cli`]: command-line pieces shared with user binaries (a TaskManager that knows the
//!   binary's named user functions).
//!
//! The coordination logic (ResourceManager, JobMaster) is pure state machines; the processes
//! are thin async shells around them.

pub mod checkpoint;
pub mod cli;
pub mod dispatcher;
pub mod exchange;
pub mod ha;
pub mod interrupt;
pub mod job_master;
pub mod jobmanager;
pub mod local;
pub mod progress;
pub mod prometheus;
pub mod remote;
pub mod resource_manager;
pub mod rest_client;
pub mod rpc;
pub mod sink_tables;
pub mod sql_client;
pub mod task_metrics;
pub mod taskmanager;
