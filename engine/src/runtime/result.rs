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

/// A job that ended without failure: its input ended (finished), or it was stopped with a
/// savepoint (`stopped_with`; Flink's stop-with-savepoint, after which the job counts as
/// finished too, its sinks committed up to the savepoint).
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
    /// The savepoint directory the job was stopped with; `None` when its input ended.
    pub stopped_with: Option<crate::checkpoint::StatePath>,
}

impl JobResult {
    pub fn vertex(&self, name: &str) -> Option<&VertexMetrics> {
        self.vertices.iter().find(|v| v.name == name)
    }
}

impl fmt::Display for JobResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let seconds = self.wall_time.as_secs_f64();
        match &self.stopped_with {
            None => writeln!(
                f,
                "Job '{}' ({}) finished in {seconds:.3} s",
                self.name, self.job_id
            )?,
            Some(savepoint) => writeln!(
                f,
                "Job '{}' ({}) stopped with savepoint {} after {seconds:.3} s (sinks committed \
                 up to the savepoint; a restore from it goes on from there)",
                self.name, self.job_id, savepoint
            )?,
        }
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
            if v.metrics.spilled_bytes > 0 {
                writeln!(
                    f,
                    "{:<28} spilled to disk: {:.1} MiB",
                    "",
                    v.metrics.spilled_bytes as f64 / f64::from(1 << 20)
                )?;
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn result(stopped_with: Option<crate::checkpoint::StatePath>) -> JobResult {
        JobResult {
            job_id: JobId("0123456789abcdef".into()),
            name: "count".into(),
            wall_time: Duration::from_millis(1500),
            vertices: Vec::new(),
            restarts: 0,
            restored_from: None,
            checkpoints_completed: 2,
            last_checkpoint: None,
            stopped_with,
        }
    }

    #[test]
    fn a_stopped_job_says_so_and_names_its_savepoint() {
        let finished = result(None).to_string();
        assert!(
            finished.starts_with("Job 'count' (0123456789abcdef) finished in 1.500 s"),
            "{finished}"
        );
        let stopped = result(Some(crate::checkpoint::StatePath::Local(
            "/sp/savepoint-012345-abc".into(),
        )))
        .to_string();
        assert!(
            stopped.starts_with(
                "Job 'count' (0123456789abcdef) stopped with savepoint /sp/savepoint-012345-abc \
                 after 1.500 s"
            ),
            "{stopped}"
        );
        assert!(!stopped.contains("finished"), "{stopped}");
    }
}
