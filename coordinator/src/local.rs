//! The embedded local mode: a JobManager and its TaskManager slots inside one process.
//!
//! It is also the mini-cluster tests use. Jobs run on the engine's [`LocalRuntime`] with one
//! slot per core unless told otherwise.

use sluice_engine::Result;
use sluice_engine::graph::JobGraph;
use sluice_engine::runtime::{JobEnvironment, JobResult, LocalRuntime, RuntimeConfig};
use tracing::info;

/// Options of the embedded mode (the `sluice` CLI flags).
#[derive(Debug, Clone)]
pub struct LocalOptions {
    /// Slots (pinned worker threads); default: one per core.
    pub slots: Option<usize>,
    /// Rows per source batch; default 8192.
    pub batch_size: Option<usize>,
}

/// Runs `graph` to completion in this process.
pub fn run_job(
    graph: &JobGraph,
    env: &JobEnvironment,
    options: &LocalOptions,
) -> Result<JobResult> {
    let mut config = RuntimeConfig::default();
    if let Some(slots) = options.slots {
        config = config.with_slots(slots);
    }
    if let Some(rows) = options.batch_size {
        config = config.with_batch_size(rows);
    }
    info!(job = %graph.name, slots = config.slots, "running job in local mode");
    LocalRuntime::new(config).execute(graph, env)
}
