//! The JobManager's metrics in the Prometheus text exposition format (`GET /metrics`): the
//! cluster (TaskManagers, slots, jobs by state) and each job (restarts, attempt, checkpoints
//! completed and failed, the latest checkpoint's duration and size, and the records its
//! finished tasks counted). Names follow Prometheus conventions: `sluice_` prefix, base units
//! (seconds, bytes), `_total` on counters.

use std::fmt::Write;

use super::ClusterState;
use crate::job_master::JobState;

/// One metric family: its `# HELP` and `# TYPE` lines, then its samples.
struct Family<'a> {
    out: &'a mut String,
}

impl<'a> Family<'a> {
    fn new(out: &'a mut String, name: &str, kind: &str, help: &str) -> Self {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        Family { out }
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (key, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{key}=\"{}\"", escape(value));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }
}

/// A label value with `\`, `"` and newlines escaped, as the format requires.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The exposition of `state`.
#[must_use]
pub fn render(state: &ClusterState) -> String {
    let mut out = String::new();
    Family::new(
        &mut out,
        "sluice_taskmanagers",
        "gauge",
        "Registered TaskManagers.",
    )
    .sample(
        "sluice_taskmanagers",
        &[],
        state.resources.task_managers().count() as f64,
    );
    let mut slots = Family::new(
        &mut out,
        "sluice_slots",
        "gauge",
        "Task slots, by whether they are free.",
    );
    slots.sample(
        "sluice_slots",
        &[("status", "total")],
        state.resources.total_slots() as f64,
    );
    slots.sample(
        "sluice_slots",
        &[("status", "available")],
        state.resources.free_slots() as f64,
    );
    {
        let mut family = Family::new(&mut out, "sluice_jobs", "gauge", "Jobs, by state.");
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
            family.sample(
                "sluice_jobs",
                &[("state", job_state.as_str())],
                count as f64,
            );
        }
    }
    let jobs: Vec<_> = state.jobs.values().collect();
    let mut per_job =
        |name: &str,
         kind: &str,
         help: &str,
         value: &dyn Fn(&crate::job_master::JobMaster) -> Option<f64>| {
            let mut family = Family::new(&mut out, name, kind, help);
            for job in &jobs {
                if let Some(v) = value(job) {
                    family.sample(
                        name,
                        &[("job_id", &job.id.0), ("job_name", &job.graph.name)],
                        v,
                    );
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
    let mut records =
        |name: &str, help: &str, pick: fn(&sluice_engine::runtime::OperatorMetrics) -> u64| {
            let mut family = Family::new(&mut out, name, "counter", help);
            for job in &jobs {
                for task in &job.tasks {
                    for (operator, metrics) in &task.metrics {
                        let subtask = task.subtask.0.to_string();
                        family.sample(
                            name,
                            &[
                                ("job_id", &job.id.0),
                                ("operator", operator),
                                ("subtask", &subtask),
                            ],
                            pick(metrics) as f64,
                        );
                    }
                }
            }
        };
    records(
        "sluice_operator_records_in_total",
        "Records an operator took in (reported when its task ends).",
        |m| m.records_in,
    );
    records(
        "sluice_operator_records_out_total",
        "Records an operator emitted (reported when its task ends).",
        |m| m.records_out,
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped_and_families_carry_help_and_type() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
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
