//! Live task metrics on their way from TaskManagers to the JobManager: the wire forms of the
//! engine's [`TaskSample`] and [`OperatorMetrics`], the rates and time ratios the JobManager
//! derives from two readings, and the process's resident memory.

use std::time::Duration;

use sluice_engine::runtime::{OperatorMetrics, TaskSample, proc_kilobytes};

use crate::rpc::proto;

/// The wire form of one operator's metrics.
#[must_use]
pub fn operator_to_proto(operator: String, m: &OperatorMetrics) -> proto::OperatorMetrics {
    proto::OperatorMetrics {
        operator,
        records_in: m.records_in,
        records_out: m.records_out,
        batches_in: m.batches_in,
        batches_out: m.batches_out,
        late_records_dropped: m.late_records_dropped,
        state_bytes: m.state_bytes,
        skipped_records: m.skipped_records,
        state_keys: m.state_keys,
        spilled_bytes: m.spilled_bytes,
    }
}

/// One operator's metrics from the wire.
#[must_use]
pub fn operator_from_proto(m: proto::OperatorMetrics) -> (String, OperatorMetrics) {
    (
        m.operator,
        OperatorMetrics {
            records_in: m.records_in,
            records_out: m.records_out,
            batches_in: m.batches_in,
            batches_out: m.batches_out,
            skipped_records: m.skipped_records,
            late_records_dropped: m.late_records_dropped,
            state_bytes: m.state_bytes,
            state_keys: m.state_keys,
            spilled_bytes: m.spilled_bytes,
        },
    )
}

/// The wire form of a task's reading.
#[must_use]
pub fn sample_to_proto(job_id: &str, attempt: u32, sample: &TaskSample) -> proto::TaskMetrics {
    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    proto::TaskMetrics {
        job_id: job_id.to_string(),
        attempt,
        chain: sample.chain as u32,
        subtask: sample.subtask,
        source: sample.source,
        operators: sample
            .operators
            .iter()
            .map(|(name, m)| operator_to_proto(name.clone(), m))
            .collect(),
        busy_ms: ms(sample.busy),
        backpressured_ms: ms(sample.backpressured),
        idle_ms: ms(sample.idle),
        watermark: sample.watermark,
        records_in: sample.records_in,
        records_out: sample.records_out,
        bytes_in: sample.bytes_in,
        bytes_out: sample.bytes_out,
        source_total: sample.source_total,
    }
}

/// A task's reading from the wire.
#[must_use]
pub fn sample_from_proto(m: proto::TaskMetrics) -> TaskSample {
    TaskSample {
        chain: m.chain as usize,
        subtask: m.subtask,
        source: m.source,
        operators: m.operators.into_iter().map(operator_from_proto).collect(),
        busy: Duration::from_millis(m.busy_ms),
        backpressured: Duration::from_millis(m.backpressured_ms),
        idle: Duration::from_millis(m.idle_ms),
        watermark: m.watermark,
        records_in: m.records_in,
        records_out: m.records_out,
        bytes_in: m.bytes_in,
        bytes_out: m.bytes_out,
        source_total: m.source_total,
    }
}

/// What a task did per second between two readings, and how it spent that time.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TaskRates {
    pub records_in_per_second: f64,
    pub records_out_per_second: f64,
    pub bytes_in_per_second: f64,
    pub bytes_out_per_second: f64,
    /// Shares of the task's time, each 0..=1.
    pub busy_ratio: f64,
    pub backpressured_ratio: f64,
    pub idle_ratio: f64,
}

impl TaskRates {
    /// The rates between `before` and `after` of the same task. The task's own clock (its
    /// busy + backpressured + idle time) measures the interval, so a late heartbeat does not
    /// inflate a rate. `None` when no time passed.
    #[must_use]
    pub fn between(before: &TaskSample, after: &TaskSample) -> Option<TaskRates> {
        let elapsed = |s: &TaskSample| s.busy + s.backpressured + s.idle;
        let interval = elapsed(after).checked_sub(elapsed(before))?.as_secs_f64();
        if interval <= 0.0 {
            return None;
        }
        let per_second = |a: u64, b: u64| a.saturating_sub(b) as f64 / interval;
        let share = |a: Duration, b: Duration| {
            (a.saturating_sub(b).as_secs_f64() / interval).clamp(0.0, 1.0)
        };
        Some(TaskRates {
            records_in_per_second: per_second(after.records_in, before.records_in),
            records_out_per_second: per_second(after.records_out, before.records_out),
            bytes_in_per_second: per_second(after.bytes_in, before.bytes_in),
            bytes_out_per_second: per_second(after.bytes_out, before.bytes_out),
            busy_ratio: share(after.busy, before.busy),
            backpressured_ratio: share(after.backpressured, before.backpressured),
            idle_ratio: share(after.idle, before.idle),
        })
    }
}

/// The JobMaster's view of one task's metrics: the latest reading and the rates since the
/// one before.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LiveTaskMetrics {
    pub latest: TaskSample,
    /// When the latest reading arrived (milliseconds since the Unix epoch).
    pub at_ms: u64,
    pub rates: TaskRates,
}

impl LiveTaskMetrics {
    /// Takes a new reading; the rates move when the task's clock did.
    pub fn update(&mut self, sample: TaskSample, at_ms: u64) {
        if let Some(rates) = TaskRates::between(&self.latest, &sample) {
            self.rates = rates;
        }
        self.latest = sample;
        self.at_ms = at_ms;
    }
}

/// This process's resident memory, `VmRSS` of `/proc/self/status` (0 where that is not
/// available).
#[must_use]
pub fn resident_memory_bytes() -> u64 {
    proc_kilobytes("/proc/self/status", "VmRSS:")
}

/// This process's peak resident memory so far, `VmHWM` of `/proc/self/status` (0 where that
/// is not available).
#[must_use]
pub fn peak_resident_memory_bytes() -> u64 {
    proc_kilobytes("/proc/self/status", "VmHWM:")
}

/// The machine's memory, `MemTotal` of `/proc/meminfo` (0 where that is not available).
#[must_use]
pub fn physical_memory_bytes() -> u64 {
    proc_kilobytes("/proc/meminfo", "MemTotal:")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(busy_ms: u64, bp_ms: u64, idle_ms: u64, records: u64) -> TaskSample {
        TaskSample {
            busy: Duration::from_millis(busy_ms),
            backpressured: Duration::from_millis(bp_ms),
            idle: Duration::from_millis(idle_ms),
            records_in: records,
            records_out: records / 2,
            ..TaskSample::default()
        }
    }

    #[test]
    fn rates_come_from_two_readings_on_the_task_clock() {
        let before = sample(100, 0, 900, 1_000);
        let after = sample(600, 250, 1_150, 3_000);
        let rates = TaskRates::between(&before, &after).unwrap();
        assert!((rates.records_in_per_second - 2_000.0).abs() < 1e-9);
        assert!((rates.records_out_per_second - 1_000.0).abs() < 1e-9);
        assert!((rates.busy_ratio - 0.5).abs() < 1e-9);
        assert!((rates.backpressured_ratio - 0.25).abs() < 1e-9);
        assert!((rates.idle_ratio - 0.25).abs() < 1e-9);
        assert_eq!(TaskRates::between(&after, &after), None);
    }

    #[test]
    fn a_reading_survives_the_wire() {
        let mut original = sample(5, 6, 7, 8);
        original.chain = 3;
        original.subtask = 1;
        original.source = true;
        original.watermark = Some(-5);
        original.source_total = Some(99);
        original.operators = vec![(
            "window".into(),
            OperatorMetrics {
                late_records_dropped: 4,
                state_bytes: 1 << 20,
                ..OperatorMetrics::default()
            },
        )];
        let wire = sample_to_proto("job", 2, &original);
        assert_eq!((wire.job_id.as_str(), wire.attempt), ("job", 2));
        assert_eq!(sample_from_proto(wire), original);
    }

    #[test]
    fn an_update_keeps_the_last_rates_when_the_clock_did_not_move() {
        let mut live = LiveTaskMetrics::default();
        live.update(sample(0, 0, 1_000, 0), 1);
        live.update(sample(1_000, 0, 1_000, 5_000), 2);
        let rates = live.rates;
        live.update(sample(1_000, 0, 1_000, 5_000), 3);
        assert_eq!(live.rates, rates);
        assert_eq!(live.at_ms, 3);
        assert!(resident_memory_bytes() > 0);
        assert!(physical_memory_bytes() > resident_memory_bytes());
    }
}
