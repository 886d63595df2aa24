//! Batch jobs with blocking exchanges: stage-by-stage execution and per-stage failover.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::Int64Type;
use sluice_engine::Error;
use sluice_engine::api::StreamEnvironment;
use sluice_engine::checkpoint::RestartStrategy;
use sluice_engine::graph::BatchShuffleMode;
use sluice_engine::runtime::{JobEnvironment, LocalRuntime, RuntimeConfig};

use crate::{key_value_batches, key_value_schema};

const ROWS: i64 = 50_000;

/// Partitions stay in memory, unless `to_files` leaves them no memory.
fn runtime(spill_dir: &std::path::Path, restarts: u32, to_files: bool) -> LocalRuntime {
    let strategy = if restarts == 0 {
        RestartStrategy::None
    } else {
        RestartStrategy::FixedDelay {
            attempts: restarts,
            delay: Duration::from_millis(5),
        }
    };
    LocalRuntime::new(
        RuntimeConfig::default()
            .with_slots(2)
            .with_pinning(false)
            // Small channels: a pipelined consumer would start long before its producer ends.
            .with_channel_capacity(2)
            .with_spill_dir(spill_dir)
            .with_managed_memory(if to_files { 0 } else { 1 << 30 })
            .with_restart_strategy(strategy),
    )
}

/// What the job's two stages saw.
#[derive(Default)]
struct Probes {
    /// Rows the first stage (source and `Scan`) passed on, over all its runs.
    scanned: AtomicU64,
    /// What `Scan` had passed on when the second stage saw its first batch.
    scanned_at_first_consumed: AtomicU64,
    consumed_any: AtomicBool,
    /// Set once the second stage has failed (when asked to fail once).
    failed: AtomicBool,
}

/// rows → Scan → (rebalance exchange) → Consume → collect "out", at parallelism 2.
fn job(mode: BatchShuffleMode, probes: &Arc<Probes>, fail_once: bool) -> StreamEnvironment {
    let env = StreamEnvironment::new("staged")
        .with_parallelism(2)
        .with_shuffle_mode(mode);
    let rows: Vec<(i64, Option<i64>)> = (0..ROWS).map(|i| (i % 7, Some(i))).collect();
    let scan = probes.clone();
    let consume = probes.clone();
    env.from_batches("rows", key_value_schema(), key_value_batches(&rows, 100))
        .unwrap()
        .map_batches("Scan", key_value_schema(), move |batch: &RecordBatch| {
            scan.scanned
                .fetch_add(batch.num_rows() as u64, Ordering::AcqRel);
            Ok(batch.clone())
        })
        .unwrap()
        .rebalance()
        .unwrap()
        .map_batches("Consume", key_value_schema(), move |batch: &RecordBatch| {
            if !consume.consumed_any.swap(true, Ordering::AcqRel) {
                consume
                    .scanned_at_first_consumed
                    .store(consume.scanned.load(Ordering::Acquire), Ordering::Release);
            }
            if fail_once && !consume.failed.swap(true, Ordering::AcqRel) {
                return Err(Error::Unavailable {
                    what: "test operator Consume".into(),
                    message: "injected failure".into(),
                });
            }
            Ok(batch.clone())
        })
        .unwrap()
        .collect("out")
        .unwrap();
    env
}

/// The `v` values of the collected rows, with how often each arrived.
fn values(batches: &[RecordBatch]) -> BTreeMap<i64, u32> {
    let mut seen = BTreeMap::new();
    for batch in batches {
        let column = batch
            .column_by_name("v")
            .unwrap()
            .as_primitive::<Int64Type>();
        for value in column.iter().flatten() {
            *seen.entry(value).or_insert(0) += 1;
        }
    }
    seen
}

fn every_row_once() -> BTreeMap<i64, u32> {
    (0..ROWS).map(|v| (v, 1)).collect()
}

fn files_in(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir).unwrap().count()
}

#[test]
fn a_blocking_exchange_starts_its_consumer_after_its_producer_ended() {
    let dir = tempfile::tempdir().unwrap();
    let probes = Arc::new(Probes::default());
    let output = job(BatchShuffleMode::AllExchangesBlocking, &probes, false)
        .execute_on(&runtime(dir.path(), 0, true))
        .unwrap();
    assert_eq!(values(&output.collected.batches("out")), every_row_once());
    assert_eq!(
        probes.scanned_at_first_consumed.load(Ordering::Acquire),
        ROWS as u64,
        "the consuming stage started only after the whole input was scanned"
    );
    assert_eq!(output.result.restarts, 0);
    assert_eq!(
        files_in(dir.path()),
        0,
        "the exchange's files go with the job"
    );
}

#[test]
fn a_pipelined_exchange_runs_producer_and_consumer_at_once() {
    // The counterpart of the test above: it shows that test can tell the two modes apart.
    let dir = tempfile::tempdir().unwrap();
    let probes = Arc::new(Probes::default());
    let output = job(BatchShuffleMode::AllExchangesPipelined, &probes, false)
        .execute_on(&runtime(dir.path(), 0, false))
        .unwrap();
    assert_eq!(values(&output.collected.batches("out")), every_row_once());
    assert!(
        probes.scanned_at_first_consumed.load(Ordering::Acquire) < ROWS as u64,
        "with channels of two batches the consumer starts before the scan ends"
    );
}

#[test]
fn a_failed_stage_runs_again_from_its_inputs_without_rerunning_the_stage_before() {
    for to_files in [false, true] {
        failed_stage_runs_again(to_files);
    }
}

fn failed_stage_runs_again(to_files: bool) {
    let dir = tempfile::tempdir().unwrap();
    let probes = Arc::new(Probes::default());
    let output = job(BatchShuffleMode::AllExchangesBlocking, &probes, true)
        .execute_on(&runtime(dir.path(), 1, to_files))
        .unwrap();
    assert!(
        probes.failed.load(Ordering::Acquire),
        "the failure was injected"
    );
    assert_eq!(output.result.restarts, 1);
    assert_eq!(
        values(&output.collected.batches("out")),
        every_row_once(),
        "the failed run's output was discarded and the rerun delivered every row once"
    );
    assert_eq!(
        probes.scanned.load(Ordering::Acquire),
        ROWS as u64,
        "the scanning stage ran once: the rerun read its materialised output"
    );
    let consumed: u64 = output
        .result
        .vertices
        .iter()
        .filter(|v| v.name == "Consume")
        .map(|v| v.metrics.records_in)
        .sum();
    assert_eq!(
        consumed, ROWS as u64,
        "metrics are those of the successful run"
    );
    assert_eq!(files_in(dir.path()), 0);
}

#[test]
fn without_restarts_left_a_failed_stage_fails_the_job_with_its_error() {
    let dir = tempfile::tempdir().unwrap();
    let probes = Arc::new(Probes::default());
    let error = job(BatchShuffleMode::AllExchangesBlocking, &probes, true)
        .execute_on(&runtime(dir.path(), 0, false))
        .unwrap_err();
    let message = error.to_string();
    assert!(message.contains("Consume"), "{message}");
    assert!(message.contains("injected failure"), "{message}");
    assert_eq!(files_in(dir.path()), 0);
}

#[test]
fn cancelling_a_staged_job_stops_its_running_stage() {
    let dir = tempfile::tempdir().unwrap();
    let env = StreamEnvironment::new("slow")
        .with_parallelism(2)
        .with_shuffle_mode(BatchShuffleMode::AllExchangesBlocking);
    let rows: Vec<(i64, Option<i64>)> = (0..ROWS).map(|i| (i % 7, Some(i))).collect();
    let consumed = Arc::new(AtomicU64::new(0));
    let counter = consumed.clone();
    env.from_batches("rows", key_value_schema(), key_value_batches(&rows, 100))
        .unwrap()
        .rebalance()
        .unwrap()
        .map_batches("Slow", key_value_schema(), move |batch: &RecordBatch| {
            counter.fetch_add(1, Ordering::AcqRel);
            std::thread::sleep(Duration::from_millis(20));
            Ok(batch.clone())
        })
        .unwrap()
        .collect("out")
        .unwrap();
    let (graph, registry) = env.build().unwrap();
    let job = JobEnvironment {
        registry,
        ..Default::default()
    };
    let handle = runtime(dir.path(), 0, true).submit(&graph, &job).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while consumed.load(Ordering::Acquire) == 0 {
        assert!(Instant::now() < deadline, "the second stage never started");
        std::thread::sleep(Duration::from_millis(5));
    }
    let cancelled_at = Instant::now();
    handle.cancel();
    assert!(matches!(handle.wait(), Err(Error::Cancelled)));
    // 500 batches of 20 ms each would take 10 s over two slots.
    assert!(
        consumed.load(Ordering::Acquire) < 400,
        "the stage went on after the cancellation"
    );
    eprintln!("cancelled in {:?}", cancelled_at.elapsed());
    assert_eq!(
        files_in(dir.path()),
        0,
        "the exchange's files go with the job"
    );
}
