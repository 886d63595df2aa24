//! Live metrics of running tasks, readable while the job runs.
//!
//! The slot thread is the only writer: it keeps plain counters while it works and publishes
//! them into a task's [`LiveTask`] cell (relaxed atomic stores) every [`PUBLISH_INTERVAL`].
//! Readers — the TaskManager's heartbeat and `/metrics`, the CLI's progress bar — take a
//! [`TaskSample`] at any time without stopping the task. Nothing on the per-batch path
//! touches an atomic, a lock or the allocator.
//!
//! Time is split the way Flink splits it: a task is *busy* while a call into it did work,
//! *backpressured* while it holds output that a full channel refuses, and *idle* otherwise
//! (waiting for input, or for the slot thread while another task runs).

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::task::OperatorMetrics;

/// How often a slot thread publishes its tasks' counters.
pub(crate) const PUBLISH_INTERVAL: Duration = Duration::from_millis(200);

/// The published counters of one operator of a task.
#[derive(Debug, Default)]
struct LiveOperator {
    name: String,
    records_in: AtomicU64,
    records_out: AtomicU64,
    batches_in: AtomicU64,
    batches_out: AtomicU64,
    skipped_records: AtomicU64,
    late_records_dropped: AtomicU64,
    state_bytes: AtomicU64,
    state_keys: AtomicU64,
    spilled_bytes: AtomicU64,
}

impl LiveOperator {
    fn store(&self, m: &OperatorMetrics) {
        self.records_in.store(m.records_in, Ordering::Relaxed);
        self.records_out.store(m.records_out, Ordering::Relaxed);
        self.batches_in.store(m.batches_in, Ordering::Relaxed);
        self.batches_out.store(m.batches_out, Ordering::Relaxed);
        self.skipped_records
            .store(m.skipped_records, Ordering::Relaxed);
        self.late_records_dropped
            .store(m.late_records_dropped, Ordering::Relaxed);
        self.state_bytes.store(m.state_bytes, Ordering::Relaxed);
        self.state_keys.store(m.state_keys, Ordering::Relaxed);
        self.spilled_bytes.store(m.spilled_bytes, Ordering::Relaxed);
    }

    fn load(&self) -> OperatorMetrics {
        OperatorMetrics {
            records_in: self.records_in.load(Ordering::Relaxed),
            records_out: self.records_out.load(Ordering::Relaxed),
            batches_in: self.batches_in.load(Ordering::Relaxed),
            batches_out: self.batches_out.load(Ordering::Relaxed),
            skipped_records: self.skipped_records.load(Ordering::Relaxed),
            late_records_dropped: self.late_records_dropped.load(Ordering::Relaxed),
            state_bytes: self.state_bytes.load(Ordering::Relaxed),
            state_keys: self.state_keys.load(Ordering::Relaxed),
            spilled_bytes: self.spilled_bytes.load(Ordering::Relaxed),
        }
    }
}

/// The published metrics of one running subtask.
#[derive(Debug)]
pub struct LiveTask {
    chain: usize,
    subtask: u32,
    /// Whether the chain starts with a source (its records in are the rows it read).
    source: bool,
    /// The chain's source (if it has one) first, then its operators.
    operators: Box<[LiveOperator]>,
    busy_ns: AtomicU64,
    backpressured_ns: AtomicU64,
    /// Wall time since the task started, as of the last publication.
    elapsed_ns: AtomicU64,
    /// The task's input watermark (`i64::MIN` before the first).
    watermark: AtomicI64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    records_in: AtomicU64,
    records_out: AtomicU64,
    /// Rows the chain's source will read in all, when it knows (0 when not, or no source).
    source_total: AtomicU64,
}

/// A reading of one task's metrics.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TaskSample {
    /// The task's chain in the ExecutionGraph.
    pub chain: usize,
    pub subtask: u32,
    /// Whether the chain starts with a source: its `records_in` are the rows the source read.
    pub source: bool,
    /// Per operator of the chain, source first.
    pub operators: Vec<(String, OperatorMetrics)>,
    /// Time the task spent working, backpressured (output refused by a full channel), and
    /// neither, since it started.
    pub busy: Duration,
    pub backpressured: Duration,
    pub idle: Duration,
    /// The watermark the task's input has reached; `None` before the first.
    pub watermark: Option<i64>,
    /// Rows and Arrow in-memory bytes that entered the task (from its source, or from its
    /// input channels) and that it sent to its output channels.
    pub records_in: u64,
    pub records_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Rows the task's source will read in all, when the source knows in advance.
    pub source_total: Option<u64>,
}

impl LiveTask {
    pub(crate) fn new(
        chain: usize,
        subtask: u32,
        source: bool,
        operators: Vec<String>,
    ) -> Arc<Self> {
        Arc::new(LiveTask {
            chain,
            subtask,
            source,
            operators: operators
                .into_iter()
                .map(|name| LiveOperator {
                    name,
                    ..LiveOperator::default()
                })
                .collect(),
            busy_ns: AtomicU64::new(0),
            backpressured_ns: AtomicU64::new(0),
            elapsed_ns: AtomicU64::new(0),
            watermark: AtomicI64::new(i64::MIN),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            records_in: AtomicU64::new(0),
            records_out: AtomicU64::new(0),
            source_total: AtomicU64::new(0),
        })
    }

    /// Publishes what the slot thread counted.
    pub(crate) fn publish(&self, counters: &TaskCounters, operators: &[OperatorMetrics]) {
        for (cell, metrics) in self.operators.iter().zip(operators) {
            cell.store(metrics);
        }
        let ns = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.busy_ns.store(ns(counters.busy), Ordering::Relaxed);
        self.backpressured_ns
            .store(ns(counters.backpressured), Ordering::Relaxed);
        self.elapsed_ns
            .store(ns(counters.started.elapsed()), Ordering::Relaxed);
        self.watermark.store(counters.watermark, Ordering::Relaxed);
        self.bytes_in.store(counters.bytes_in, Ordering::Relaxed);
        self.bytes_out.store(counters.bytes_out, Ordering::Relaxed);
        self.records_in
            .store(counters.records_in, Ordering::Relaxed);
        self.records_out
            .store(counters.records_out, Ordering::Relaxed);
        self.source_total
            .store(counters.source_total.unwrap_or(0), Ordering::Relaxed);
    }

    /// What was last published.
    #[must_use]
    pub fn sample(&self) -> TaskSample {
        let busy = Duration::from_nanos(self.busy_ns.load(Ordering::Relaxed));
        let backpressured = Duration::from_nanos(self.backpressured_ns.load(Ordering::Relaxed));
        let elapsed = Duration::from_nanos(self.elapsed_ns.load(Ordering::Relaxed));
        let watermark = self.watermark.load(Ordering::Relaxed);
        let source_total = self.source_total.load(Ordering::Relaxed);
        TaskSample {
            chain: self.chain,
            subtask: self.subtask,
            source: self.source,
            operators: self
                .operators
                .iter()
                .map(|op| (op.name.clone(), op.load()))
                .collect(),
            busy,
            backpressured,
            idle: elapsed.saturating_sub(busy + backpressured),
            watermark: (watermark != i64::MIN).then_some(watermark),
            records_in: self.records_in.load(Ordering::Relaxed),
            records_out: self.records_out.load(Ordering::Relaxed),
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            bytes_out: self.bytes_out.load(Ordering::Relaxed),
            source_total: (source_total > 0).then_some(source_total),
        }
    }
}

/// The slot thread's own counters of a task: plain values, published now and then.
#[derive(Debug)]
pub(crate) struct TaskCounters {
    pub started: Instant,
    pub busy: Duration,
    pub backpressured: Duration,
    /// Since when the task has been holding output a full channel refuses.
    pub blocked_since: Option<Instant>,
    pub watermark: i64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub records_in: u64,
    pub records_out: u64,
    pub source_total: Option<u64>,
}

impl Default for TaskCounters {
    fn default() -> Self {
        TaskCounters {
            started: Instant::now(),
            busy: Duration::ZERO,
            backpressured: Duration::ZERO,
            blocked_since: None,
            watermark: i64::MIN,
            bytes_in: 0,
            bytes_out: 0,
            records_in: 0,
            records_out: 0,
            source_total: None,
        }
    }
}

impl TaskCounters {
    /// Accounts one call into the task that ran from `start` to `end`: busy when it did
    /// work, the start of a backpressured stretch when it could only wait for a full
    /// channel.
    pub fn account(&mut self, start: Instant, end: Instant, progressed: bool, blocked: bool) {
        if progressed {
            self.busy += end.saturating_duration_since(start);
        }
        match (self.blocked_since, blocked) {
            (None, true) => self.blocked_since = Some(start),
            (Some(since), false) => {
                self.backpressured += start.saturating_duration_since(since);
                self.blocked_since = None;
            }
            _ => {}
        }
    }

    /// Counts a backpressured stretch still going on up to `now`, so a task stuck behind a
    /// full channel shows it before the channel drains.
    pub fn settle(&mut self, now: Instant) {
        if let Some(since) = self.blocked_since {
            self.backpressured += now.saturating_duration_since(since);
            self.blocked_since = Some(now);
        }
    }
}

/// Told when a job of the local runtime starts and ends, with the job's live metrics: a
/// progress display, for one.
pub trait JobObserver: Send + Sync {
    fn job_started(&self, name: &str, metrics: LiveMetrics);
    fn job_ended(&self, name: &str);
}

/// A [`JobObserver`] in a [`super::RuntimeConfig`].
#[derive(Clone)]
pub struct Observer(pub Arc<dyn JobObserver>);

impl std::fmt::Debug for Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Observer")
    }
}

/// The live metrics of every task of a job (or of a job's slice in this process). Clones
/// share the task list, which a restarted job replaces with its new attempt's tasks; the
/// lock is taken by readers and at a restart, never by the tasks.
#[derive(Debug, Default, Clone)]
pub struct LiveMetrics {
    tasks: Arc<Mutex<Vec<Arc<LiveTask>>>>,
}

impl LiveMetrics {
    pub(crate) fn new(tasks: Vec<Arc<LiveTask>>) -> Self {
        LiveMetrics {
            tasks: Arc::new(Mutex::new(tasks)),
        }
    }

    /// Points every clone at the tasks of a new attempt.
    pub(crate) fn replace(&self, tasks: Vec<Arc<LiveTask>>) {
        *self.tasks.lock().unwrap_or_else(|p| p.into_inner()) = tasks;
    }

    /// A reading of every task.
    #[must_use]
    pub fn sample(&self) -> Vec<TaskSample> {
        let tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner()).clone();
        tasks.iter().map(|t| t.sample()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_splits_into_busy_backpressured_and_idle() {
        let base = Instant::now();
        let at = |ms: u64| base + Duration::from_millis(ms);
        let mut counters = TaskCounters {
            started: base,
            ..TaskCounters::default()
        };
        counters.account(at(0), at(10), true, false);
        // Output refused from 10 ms until the channel drains at 40 ms.
        counters.account(at(10), at(11), false, true);
        counters.account(at(20), at(21), false, true);
        counters.account(at(40), at(45), true, false);
        // Refused again from 50 ms; a publication at 70 ms counts the stretch so far.
        counters.account(at(50), at(51), false, true);
        counters.settle(at(70));
        assert_eq!(counters.busy, Duration::from_millis(15));
        assert_eq!(counters.backpressured, Duration::from_millis(50));
        counters.account(at(80), at(81), false, false);
        assert_eq!(counters.backpressured, Duration::from_millis(60));
    }

    #[test]
    fn a_sample_reads_what_was_published() {
        let task = LiveTask::new(2, 1, true, vec!["source".into(), "filter".into()]);
        assert_eq!(task.sample().watermark, None);
        let counters = TaskCounters {
            watermark: 1_000,
            records_in: 7,
            bytes_out: 64,
            source_total: Some(100),
            ..TaskCounters::default()
        };
        let metrics = [
            OperatorMetrics {
                records_out: 7,
                ..OperatorMetrics::default()
            },
            OperatorMetrics {
                records_in: 7,
                records_out: 3,
                ..OperatorMetrics::default()
            },
        ];
        task.publish(&counters, &metrics);
        let sample = task.sample();
        assert_eq!((sample.chain, sample.subtask, sample.source), (2, 1, true));
        assert_eq!(sample.watermark, Some(1_000));
        assert_eq!(sample.records_in, 7);
        assert_eq!(sample.bytes_out, 64);
        assert_eq!(sample.source_total, Some(100));
        assert_eq!(sample.operators[1], ("filter".to_string(), metrics[1]));
    }
}
