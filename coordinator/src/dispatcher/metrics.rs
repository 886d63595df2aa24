//! The JobManager's metrics in the Prometheus text exposition format (`GET /metrics`): the
//! cluster (TaskManagers, slots, jobs by state) and each job (restarts, attempt, checkpoints
//! completed and failed, the latest checkpoint's duration and size, and the records its
//! finished tasks counted). Names follow Prometheus conventions: `sluice_` prefix, base units
//! (seconds, bytes), `_total` on counters.

use super::ClusterState;
use crate::job_master::JobState;
use crate::prometheus::{Exposition, NamedTask, write_tasks};
use sluice_engine::runtime::now_ms;

/// The exposition of `state`.
#[must_use]
pub fn render(state: &ClusterState) -> String {
    let mut out = Exposition::new();
    out.family("sluice_taskmanagers", "gauge", "Registered TaskManagers.")
        .sample(&[], state.resources.task_managers().count() as f64);
    let mut slots = out.family(
        "sluice_slots",
        "gauge",
        "Task slots, by whether they are free.",
    );
    slots.sample(&[("status", "total")], state.resources.total_slots() as f64);
    slots.sample(
        &[("status", "available")],
        state.resources.free_slots() as f64,
    );
    {
        let mut family = out.family("sluice_jobs", "gauge", "Jobs, by state.");
        for job_state in [
            JobState::Created,
            JobState::Running,
            JobState::Restarting,
            JobState::Failing,
            JobState::Cancelling,
            JobState::Finished,
            JobState::Failed,
            JobState::Cancelled,
        ] {
            let count = state.jobs.values().filter(|j| j.state == job_state).count();
            family.sample(&[("state", job_state.as_str())], count as f64);
        }
    }
    let jobs: Vec<_> = state.jobs.values().collect();
    let mut per_job =
        |name: &str,
         kind: &str,
         help: &str,
         value: &dyn Fn(&crate::job_master::JobMaster) -> Option<f64>| {
            let mut family = out.family(name, kind, help);
            for job in &jobs {
                if let Some(v) = value(job) {
                    family.sample(&[("job_id", &job.id.0), ("job_name", &job.graph.name)], v);
                }
            }
        };
    per_job(
        "sluice_job_restarts_total",
        "counter",
        "Restarts of the job after a failure.",
        &|job| Some(job.restarts.len() as f64),
    );
    per_job(
        "sluice_job_attempt",
        "gauge",
        "The job's current execution attempt.",
        &|job| Some(f64::from(job.attempt)),
    );
    per_job(
        "sluice_job_checkpoints_completed_total",
        "counter",
        "Checkpoints (and savepoints) of the job that completed.",
        &|job| job.checkpoints.as_ref().map(|c| c.completed as f64),
    );
    per_job(
        "sluice_job_checkpoints_failed_total",
        "counter",
        "Checkpoints of the job that failed (declined, timed out or not written).",
        &|job| job.checkpoints.as_ref().map(|c| c.failed as f64),
    );
    per_job(
        "sluice_job_last_checkpoint_duration_seconds",
        "gauge",
        "Duration of the job's latest completed checkpoint, trigger to completion.",
        &|job| {
            job.checkpoints
                .as_ref()
                .and_then(|c| c.latest_completed.as_ref())
                .map(|r| r.duration_ms as f64 / 1000.0)
        },
    );
    per_job(
        "sluice_job_last_checkpoint_size_bytes",
        "gauge",
        "State size of the job's latest completed checkpoint.",
        &|job| {
            job.checkpoints
                .as_ref()
                .and_then(|c| c.latest_completed.as_ref())
                .map(|r| r.state_size as f64)
        },
    );
    per_job(
        "sluice_job_last_checkpoint_alignment_seconds",
        "gauge",
        "The longest barrier alignment of any task in the job's latest completed checkpoint.",
        &|job| {
            job.checkpoints
                .as_ref()
                .and_then(|c| c.latest_completed.as_ref())
                .map(|r| r.alignment_ms as f64 / 1000.0)
        },
    );
    // Every task of the current attempts that has reported: live while it runs, its final
    // reading once it ended.
    let names: Vec<Vec<String>> = jobs
        .iter()
        .map(|job| {
            (0..job.execution.chains.len())
                .map(|chain| job.execution.chain_name(&job.graph, chain))
                .collect()
        })
        .collect();
    let tasks: Vec<NamedTask<'_>> = jobs
        .iter()
        .zip(&names)
        .flat_map(|(job, names)| {
            job.tasks.iter().filter_map(move |task| {
                task.live.as_ref().map(|live| NamedTask {
                    job_id: &job.id.0,
                    task: &names[task.chain],
                    sample: &live.latest,
                })
            })
        })
        .collect();
    write_tasks(&mut out, &tasks, now_ms() as i64);
    out.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_carry_help_and_type() {
        let text = render(&ClusterState::default());
        assert!(text.starts_with("# HELP sluice_taskmanagers "), "{text}");
        assert!(text.contains("# TYPE sluice_jobs gauge\n"), "{text}");
        assert!(
            text.contains("sluice_slots{status=\"available\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("sluice_jobs{state=\"RUNNING\"} 0\n"),
            "{text}"
        );
    }
}
