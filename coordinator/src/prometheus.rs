//! The Prometheus text exposition format (version 0.0.4), written by the JobManager's and the
//! TaskManagers' `GET /metrics`. Names follow Prometheus conventions: `sluice_` prefix, base
//! units (seconds, bytes), `_total` on counters.

use std::fmt::Write;

use sluice_engine::runtime::TaskSample;

/// The content type of the exposition.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// An exposition being written.
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
}

/// One metric family: its `# HELP` and `# TYPE` lines, then its samples.
pub struct Family<'a> {
    out: &'a mut String,
    name: &'a str,
}

impl Exposition {
    #[must_use]
    pub fn new() -> Self {
        Exposition::default()
    }

    /// Starts family `name` of `kind` (`counter` or `gauge`).
    pub fn family<'a>(&'a mut self, name: &'a str, kind: &str, help: &str) -> Family<'a> {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
        Family {
            out: &mut self.out,
            name,
        }
    }

    #[must_use]
    pub fn finish(self) -> String {
        self.out
    }
}

impl Family<'_> {
    pub fn sample(&mut self, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(self.name);
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
#[must_use]
pub fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// One task's reading, named for the exposition.
pub struct NamedTask<'a> {
    pub job_id: &'a str,
    /// The task's chain, as `a -> b`.
    pub task: &'a str,
    pub sample: &'a TaskSample,
}

/// The task and operator families of `tasks`: records and bytes in and out, busy /
/// backpressured / idle time, watermark and its lag behind `now_ms`, state size, late and
/// skipped records.
pub fn write_tasks(exposition: &mut Exposition, tasks: &[NamedTask<'_>], now_ms: i64) {
    let subtasks: Vec<String> = tasks.iter().map(|t| t.sample.subtask.to_string()).collect();
    let task_labels = |i: usize| {
        [
            ("job_id", tasks[i].job_id),
            ("task", tasks[i].task),
            ("subtask", subtasks[i].as_str()),
        ]
    };
    type TaskValue = fn(&TaskSample) -> Option<f64>;
    let task_families: [(&str, &str, &str, TaskValue); 9] = [
        (
            "sluice_task_records_in_total",
            "counter",
            "Records that entered the task (read by its source, or from its input channels).",
            |s| Some(s.records_in as f64),
        ),
        (
            "sluice_task_records_out_total",
            "counter",
            "Records the task sent to its output channels.",
            |s| Some(s.records_out as f64),
        ),
        (
            "sluice_task_bytes_in_total",
            "counter",
            "Arrow in-memory bytes of the batches that entered the task.",
            |s| Some(s.bytes_in as f64),
        ),
        (
            "sluice_task_bytes_out_total",
            "counter",
            "Arrow in-memory bytes of the batches the task sent to its output channels.",
            |s| Some(s.bytes_out as f64),
        ),
        (
            "sluice_task_busy_seconds_total",
            "counter",
            "Time the task spent working.",
            |s| Some(s.busy.as_secs_f64()),
        ),
        (
            "sluice_task_backpressured_seconds_total",
            "counter",
            "Time the task held output that a full channel refused.",
            |s| Some(s.backpressured.as_secs_f64()),
        ),
        (
            "sluice_task_idle_seconds_total",
            "counter",
            "Time the task waited for input.",
            |s| Some(s.idle.as_secs_f64()),
        ),
        (
            "sluice_task_watermark_milliseconds",
            "gauge",
            "The event-time watermark the task's input has reached (ms since the epoch).",
            |s| s.watermark.filter(|w| *w != i64::MAX).map(|w| w as f64),
        ),
        (
            "sluice_task_source_remaining_records",
            "gauge",
            "Records the task's bounded source has still to read, when it knows.",
            |s| {
                let read = s.operators.first().map_or(0, |(_, m)| m.records_out);
                s.source_total
                    .map(|total| total.saturating_sub(read) as f64)
            },
        ),
    ];
    for (name, kind, help, value) in task_families {
        let mut family = exposition.family(name, kind, help);
        for (i, task) in tasks.iter().enumerate() {
            if let Some(v) = value(task.sample) {
                family.sample(&task_labels(i), v);
            }
        }
    }
    {
        let mut family = exposition.family(
            "sluice_task_watermark_lag_seconds",
            "gauge",
            "How far the task's watermark is behind the wall clock.",
        );
        for (i, task) in tasks.iter().enumerate() {
            if let Some(w) = task.sample.watermark.filter(|w| *w != i64::MAX) {
                family.sample(
                    &task_labels(i),
                    (now_ms.saturating_sub(w)).max(0) as f64 / 1000.0,
                );
            }
        }
    }
    type OperatorValue = fn(&sluice_engine::runtime::OperatorMetrics) -> u64;
    let operator_families: [(&str, &str, &str, OperatorValue); 7] = [
        (
            "sluice_operator_records_in_total",
            "counter",
            "Records an operator took in.",
            |m| m.records_in,
        ),
        (
            "sluice_operator_records_out_total",
            "counter",
            "Records an operator emitted.",
            |m| m.records_out,
        ),
        (
            "sluice_operator_state_bytes",
            "gauge",
            "Bytes of keyed state an operator holds.",
            |m| m.state_bytes,
        ),
        (
            "sluice_operator_state_keys",
            "gauge",
            "Keys (groups) in an operator's keyed state.",
            |m| m.state_keys,
        ),
        (
            "sluice_operator_spilled_bytes_total",
            "counter",
            "Bytes an operator wrote to spill files beyond its managed memory.",
            |m| m.spilled_bytes,
        ),
        (
            "sluice_operator_late_records_dropped_total",
            "counter",
            "Records that arrived after their window closed (past the allowed lateness).",
            |m| m.late_records_dropped,
        ),
        (
            "sluice_operator_skipped_records_total",
            "counter",
            "Malformed input rows a source skipped under its skip policy.",
            |m| m.skipped_records,
        ),
    ];
    for (name, kind, help, value) in operator_families {
        let mut family = exposition.family(name, kind, help);
        for (i, task) in tasks.iter().enumerate() {
            for (operator, metrics) in &task.sample.operators {
                family.sample(
                    &[
                        ("job_id", task.job_id),
                        ("operator", operator),
                        ("subtask", subtasks[i].as_str()),
                    ],
                    value(metrics) as f64,
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped_and_families_carry_help_and_type() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        let mut exposition = Exposition::new();
        exposition
            .family("sluice_x_total", "counter", "An x.")
            .sample(&[("k", "v\"")], 2.0);
        assert_eq!(
            exposition.finish(),
            "# HELP sluice_x_total An x.\n# TYPE sluice_x_total counter\nsluice_x_total{k=\"v\\\"\"} 2\n"
        );
    }

    #[test]
    fn tasks_are_written_with_their_lag() {
        let sample = TaskSample {
            subtask: 1,
            watermark: Some(9_000),
            operators: vec![("source".into(), Default::default())],
            ..TaskSample::default()
        };
        let mut exposition = Exposition::new();
        write_tasks(
            &mut exposition,
            &[NamedTask {
                job_id: "j",
                task: "source -> sink",
                sample: &sample,
            }],
            10_500,
        );
        let text = exposition.finish();
        assert!(
            text.contains(
                "sluice_task_watermark_lag_seconds{job_id=\"j\",task=\"source -> sink\",subtask=\"1\"} 1.5\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("sluice_operator_records_in_total{job_id=\"j\",operator=\"source\",subtask=\"1\"} 0\n"),
            "{text}"
        );
    }
}
