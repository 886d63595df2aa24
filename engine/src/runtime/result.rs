//! The result of a finished job.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

use super::OperatorMetrics;
use crate::ids::{CheckpointId, JobId};

/// One completed checkpoint, as the job result reports it.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct CheckpointStats {
    pub id: CheckpointId,
    /// From trigger to `_metadata` written.
    pub duration: Duration,
    /// Bytes of the state files.
    pub state_bytes: u64,
}

/// Per-vertex totals over all subtasks.
#[derive(Debug, Clone, Serialize)]
pub struct VertexMetrics {
    pub name: String,
    pub kind: &'static str,
    pub parallelism: u32,
    #[serde(flatten)]
    pub metrics: OperatorMetrics,
}

/// A successfully finished job.
#[derive(Debug, Clone, Serialize)]
pub struct JobResult {
    pub job_id: JobId,
    pub name: String,
    pub wall_time: Duration,
    /// In the JobGraph's vertex order.
    pub vertices: Vec<VertexMetrics>,
    /// Restarts after failures (restart strategy).
    pub restarts: u32,
    /// The checkpoint the last restart resumed from (`None`: never restarted, or restarted
    /// from the beginning).
    pub restored_from: Option<CheckpointId>,
    /// Checkpoints completed over all attempts.
    pub checkpoints_completed: u64,
    pub last_checkpoint: Option<CheckpointStats>,
}

impl JobResult {
    pub fn vertex(&self, name: &str) -> Option<&VertexMetrics> {
        self.vertices.iter().find(|v| v.name == name)
    }
}

impl fmt::Display for JobResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "Job '{}' ({}) finished in {:.3} s",
            self.name,
            self.job_id,
            self.wall_time.as_secs_f64()
        )?;
        writeln!(
            f,
            "{:<28} {:>4} {:>14} {:>14} {:>10} {:>10}",
            "operator", "par", "records in", "records out", "batches in", "batches out"
        )?;
        for v in &self.vertices {
            writeln!(
                f,
                "{:<28} {:>4} {:>14} {:>14} {:>10} {:>10}",
                format!("{} ({})", v.name, v.kind),
                v.parallelism,
                v.metrics.records_in,
                v.metrics.records_out,
                v.metrics.batches_in,
                v.metrics.batches_out
            )?;
            if v.metrics.skipped_records > 0 {
                writeln!(
                    f,
                    "{:<28} skipped malformed records: {}",
                    "", v.metrics.skipped_records
                )?;
            }
        }
        Ok(())
    }
}
