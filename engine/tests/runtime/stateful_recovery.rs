//! Recovery of window aggregation, join and updating aggregation state: a job over Nexmark
//! fails once mid-way, restarts from the latest completed checkpoint (window contents, join
//! rows, retracting aggregates and progress restored from the state files) and ends with exactly the output of a run without failure:
//! no result row lost, none emitted twice.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::Int8Type;
use arrow::util::display::array_value_to_string;
use sluice_datasets::nexmark::{NexmarkConfig, NexmarkTable};
use sluice_engine::Error;
use sluice_engine::api::{DataStream, StreamEnvironment};
use sluice_engine::checkpoint::{CheckpointConfig, CheckpointStorage, RestartStrategy};
use sluice_engine::connector::{NexmarkSource, SourceSpec};
use sluice_engine::graph::{
    AggregateCall, AggregateFunction, EmitMode, JoinType, WindowKind, WindowTime,
};
use sluice_engine::runtime::{JobResult, LocalRuntime, RuntimeConfig};
use sluice_engine::time::WatermarkStrategy;

const EVENTS: u64 = 120_000;
/// The failure comes after this many rows through `FailOnce` and a completed checkpoint.
const FAIL_AFTER: u64 = 40_000;

/// The failure to inject: a flag set once it fired, and the checkpoint directory.
type Failure = Option<(Arc<AtomicBool>, PathBuf)>;

/// Whether some completed checkpoint (a `_metadata` file) exists under `dir`.
fn has_completed_checkpoint(dir: &Path) -> bool {
    let Ok(jobs) = std::fs::read_dir(dir) else {
        return false;
    };
    jobs.flatten().any(|job| {
        std::fs::read_dir(job.path()).is_ok_and(|chks| {
            chks.flatten()
                .any(|chk| chk.path().join("_metadata").is_file())
        })
    })
}

/// A Nexmark table at 10 000 events per second of event time (so 12 s of it), with
/// watermarks on `dateTime`.
fn nexmark(env: &StreamEnvironment, name: &str, table: NexmarkTable) -> DataStream {
    let config = NexmarkConfig::default()
        .with_seed(7)
        .with_events(Some(EVENTS))
        .with_first_event_rate(10_000);
    env.source_with_watermarks(
        name,
        SourceSpec::Nexmark(NexmarkSource::new(table, config)),
        WatermarkStrategy::bounded_out_of_orderness("dateTime", Duration::from_millis(200)),
    )
    .unwrap()
}

/// Passes batches on; with a failure to inject, fails once (retryably) after `FAIL_AFTER`
/// rows and a completed checkpoint, and slows the first attempt so checkpoints complete.
fn fail_once(stream: &DataStream, table: NexmarkTable, failure: Failure) -> DataStream {
    let seen = Arc::new(AtomicU64::new(0));
    stream
        .map_batches("FailOnce", table.schema(), move |batch: &RecordBatch| {
            if let Some((failed, dir)) = &failure
                && !failed.load(Ordering::Acquire)
            {
                std::thread::sleep(Duration::from_millis(1));
                let total = seen.fetch_add(batch.num_rows() as u64, Ordering::AcqRel);
                if total >= FAIL_AFTER
                    && has_completed_checkpoint(dir)
                    && !failed.swap(true, Ordering::AcqRel)
                {
                    return Err(Error::Unavailable {
                        what: "test operator FailOnce".into(),
                        message: "injected failure".into(),
                    });
                }
            }
            Ok(batch.clone())
        })
        .unwrap()
}

fn runtime(checkpointing: Option<CheckpointConfig>) -> LocalRuntime {
    LocalRuntime::new(
        RuntimeConfig::default()
            .with_slots(2)
            .with_pinning(false)
            .with_batch_size(200)
            .with_checkpointing(checkpointing)
            .with_restart_strategy(RestartStrategy::FixedDelay {
                attempts: 1,
                delay: Duration::from_millis(10),
            }),
    )
}

/// Output rows as text (every column but `_row_kind`) with their multiplicity: +1 per insert
/// or update-after, -1 per retraction.
type Rows = BTreeMap<String, i64>;

fn fold(batches: &[RecordBatch]) -> Rows {
    let mut rows = Rows::new();
    for batch in batches {
        let kinds = batch
            .column_by_name("_row_kind")
            .map(|c| c.as_primitive::<Int8Type>().clone());
        let columns: Vec<usize> = (0..batch.num_columns())
            .filter(|&i| batch.schema().field(i).name() != "_row_kind")
            .collect();
        for row in 0..batch.num_rows() {
            let text: Vec<String> = columns
                .iter()
                .map(|&c| array_value_to_string(batch.column(c), row).unwrap())
                .collect();
            // Row kinds: 0 +I, 1 -U, 2 +U, 3 -D.
            let delta = match kinds.as_ref().map(|k| k.value(row)) {
                None | Some(0) | Some(2) => 1,
                Some(_) => -1,
            };
            let count = rows.entry(text.join("|")).or_insert(0);
            *count += delta;
            if *count == 0 {
                rows.remove(&text.join("|"));
            }
        }
    }
    rows
}

/// Runs `build` without failure, then with a failure and checkpoints; checks that the job
/// restarted from a checkpoint that holds `vertex`'s state and that the outputs are equal.
fn recovers_exactly_once(
    job: &str,
    vertex: &str,
    build: impl Fn(&StreamEnvironment, Failure),
) -> Rows {
    recovers_exactly_once_with(job, vertex, false, build)
}

/// [`recovers_exactly_once`], with incremental checkpoints on or off; on, the operator's
/// keyed state must be in shared key-group slice files.
fn recovers_exactly_once_with(
    job: &str,
    vertex: &str,
    incremental: bool,
    build: impl Fn(&StreamEnvironment, Failure),
) -> Rows {
    let run = |runtime: &LocalRuntime, failure: Failure| -> (JobResult, Rows) {
        let env = StreamEnvironment::new(job).with_parallelism(2);
        build(&env, failure);
        let output = env.execute_on(runtime).unwrap();
        (output.result, fold(&output.collected.batches("out")))
    };
    let (_, expected) = run(&runtime(None), None);
    assert!(expected.values().all(|&n| n > 0), "negative multiplicity");

    let dir = tempfile::tempdir().unwrap();
    let config = CheckpointConfig::new(Duration::from_millis(50), dir.path())
        .with_num_retained(2)
        .with_incremental(incremental);
    let failed = Arc::new(AtomicBool::new(false));
    let (result, actual) = run(
        &runtime(Some(config)),
        Some((failed.clone(), dir.path().to_path_buf())),
    );
    assert!(failed.load(Ordering::Acquire), "the failure was injected");
    assert_eq!(result.restarts, 1);
    let restored = result
        .restored_from
        .expect("restored from a checkpoint, not from scratch");
    assert!(result.checkpoints_completed >= 1);

    let lost: Vec<_> = expected
        .iter()
        .filter(|(row, n)| actual.get(*row).is_none_or(|m| m < n))
        .take(5)
        .collect();
    let extra: Vec<_> = actual
        .iter()
        .filter(|(row, n)| expected.get(*row).is_none_or(|m| m < n))
        .take(5)
        .collect();
    assert!(
        lost.is_empty() && extra.is_empty(),
        "{job}: rows lost {lost:?}, rows duplicated or wrong {extra:?}"
    );
    assert_eq!(actual, expected);

    // The checkpoint restored from holds the operator's state files.
    let storage = CheckpointStorage::new(dir.path(), &result.job_id, 2);
    let latest = storage.load_latest().unwrap().unwrap();
    assert!(latest.checkpoint_id() >= restored);
    assert!(
        latest
            .metadata
            .operators
            .iter()
            .any(|o| o.vertex.contains(vertex) && !o.files.is_empty()),
        "no state files of {vertex}: {:?}",
        latest
            .metadata
            .operators
            .iter()
            .map(|o| &o.vertex)
            .collect::<Vec<_>>()
    );
    if incremental {
        assert!(
            latest
                .metadata
                .operators
                .iter()
                .filter(|o| o.vertex.contains(vertex))
                .flat_map(|o| &o.files)
                .any(|f| f.shared && f.key_groups.is_some()),
            "no shared slice files of {vertex}"
        );
    }
    expected
}

#[test]
fn window_aggregation_recovers_from_a_failure_exactly_once() {
    let rows = recovers_exactly_once("windowed-bids", "windows", hopping_windows);
    assert!(rows.len() > 1_000, "{} window results", rows.len());
}

#[test]
fn window_aggregation_recovers_from_incremental_checkpoints() {
    let rows = recovers_exactly_once_with("windowed-bids", "windows", true, hopping_windows);
    assert!(rows.len() > 1_000, "{} window results", rows.len());
}

/// Hopping windows over bids per auction, with several aggregates.
fn hopping_windows(env: &StreamEnvironment, failure: Failure) {
    let bids = nexmark(env, "bids", NexmarkTable::Bid);
    let call = |function, input: Option<&str>, output: &str| AggregateCall {
        function,
        input: input.map(str::to_string),
        output: output.to_string(),
    };
    fail_once(&bids, NexmarkTable::Bid, failure)
        .key_by(["auction"])
        .window(
            WindowKind::hopping(2_000, 500),
            WindowTime::EventTime {
                column: "dateTime".into(),
            },
        )
        .aggregate(vec![
            call(AggregateFunction::Count, None, "n"),
            call(AggregateFunction::Sum, Some("price"), "total"),
            call(AggregateFunction::Max, Some("price"), "max_price"),
            call(AggregateFunction::Min, Some("channel"), "min_channel"),
            call(AggregateFunction::CountDistinct, Some("bidder"), "bidders"),
        ])
        .unwrap()
        .name("windows")
        .unwrap()
        .collect("out")
        .unwrap();
}

#[test]
fn session_windows_recover_from_a_failure_exactly_once() {
    let rows = recovers_exactly_once("sessions", "sessions", sessions);
    assert!(rows.len() > 1_000, "{} sessions", rows.len());
}

#[test]
fn session_windows_recover_from_incremental_checkpoints() {
    let rows = recovers_exactly_once_with("sessions", "sessions", true, sessions);
    assert!(rows.len() > 1_000, "{} sessions", rows.len());
}

/// Session windows over bids per bidder.
fn sessions(env: &StreamEnvironment, failure: Failure) {
    let bids = nexmark(env, "bids", NexmarkTable::Bid);
    fail_once(&bids, NexmarkTable::Bid, failure)
        .key_by(["bidder"])
        .window(
            WindowKind::session(300),
            WindowTime::EventTime {
                column: "dateTime".into(),
            },
        )
        .aggregate(vec![AggregateCall {
            function: AggregateFunction::Count,
            input: None,
            output: "n".into(),
        }])
        .unwrap()
        .name("sessions")
        .unwrap()
        .collect("out")
        .unwrap();
}

#[test]
fn outer_join_recovers_from_a_failure_exactly_once() {
    let rows = recovers_exactly_once("bids-with-auctions", "Join", |env, failure| {
        let bids = nexmark(env, "bids", NexmarkTable::Bid);
        let auctions = nexmark(env, "auctions", NexmarkTable::Auction);
        fail_once(&bids, NexmarkTable::Bid, failure)
            .join(&auctions, ["auction"], ["id"])
            .regular(JoinType::Left)
            .unwrap()
            .collect("out")
            .unwrap();
    });
    assert!(rows.len() > 10_000, "{} joined rows", rows.len());
}

#[test]
fn interval_join_recovers_from_a_failure_exactly_once() {
    let rows = recovers_exactly_once("bids-near-auctions", "Join", |env, failure| {
        let bids = nexmark(env, "bids", NexmarkTable::Bid);
        let auctions = nexmark(env, "auctions", NexmarkTable::Auction);
        fail_once(&bids, NexmarkTable::Bid, failure)
            .join(&auctions, ["auction"], ["id"])
            .interval("dateTime", "dateTime", 0, 2_000)
            .unwrap()
            .collect("out")
            .unwrap();
    });
    assert!(rows.len() > 1_000, "{} joined rows", rows.len());
}

#[test]
fn aggregation_over_an_updating_input_recovers_from_a_failure_exactly_once() {
    let rows = recovers_exactly_once("auction-summary", "per-auction", aggregate_of_aggregate);
    assert!(rows.len() > 1_000, "{} auctions", rows.len());
}

#[test]
fn aggregation_over_an_updating_input_recovers_from_incremental_checkpoints() {
    let rows = recovers_exactly_once_with(
        "auction-summary",
        "per-auction",
        true,
        aggregate_of_aggregate,
    );
    assert!(rows.len() > 1_000, "{} auctions", rows.len());
}

/// As SQL: `SELECT auction, COUNT(*), SUM(top), MIN(top), MAX(top), AVG(top),
/// COUNT(DISTINCT bids), MIN(channel), MAX(channel) FROM (SELECT auction, bidder, MAX(price) AS
/// top, COUNT(*) AS bids, MAX(channel) AS channel FROM bid GROUP BY auction, bidder) GROUP BY
/// auction`: the outer aggregate retracts the inner one's updates, with every retracting
/// function's state.
fn aggregate_of_aggregate(env: &StreamEnvironment, failure: Failure) {
    let bids = nexmark(env, "bids", NexmarkTable::Bid);
    let call = |function, input: Option<&str>, output: &str| AggregateCall {
        function,
        input: input.map(str::to_string),
        output: output.to_string(),
    };
    fail_once(&bids, NexmarkTable::Bid, failure)
        .key_by(["auction", "bidder"])
        .aggregate(
            vec![
                call(AggregateFunction::Max, Some("price"), "top"),
                call(AggregateFunction::Count, None, "bids"),
                call(AggregateFunction::Max, Some("channel"), "channel"),
            ],
            EmitMode::Changelog,
        )
        .unwrap()
        .key_by(["auction"])
        .aggregate(
            vec![
                call(AggregateFunction::Count, None, "bidders"),
                call(AggregateFunction::Sum, Some("top"), "sum_top"),
                call(AggregateFunction::Min, Some("top"), "min_top"),
                call(AggregateFunction::Max, Some("top"), "max_top"),
                call(AggregateFunction::Avg, Some("top"), "avg_top"),
                call(AggregateFunction::CountDistinct, Some("bids"), "bid_counts"),
                call(AggregateFunction::Min, Some("channel"), "min_channel"),
                call(AggregateFunction::Max, Some("channel"), "max_channel"),
            ],
            EmitMode::Changelog,
        )
        .unwrap()
        .name("per-auction")
        .unwrap()
        .collect("out")
        .unwrap();
}
