//! Aligned checkpoints and recovery: a keyed count over Nexmark bids fails once mid-way,
//! restarts from the latest completed checkpoint and ends with exactly the result of a run
//! without failure (no bid lost, none counted twice).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::Int64Type;
use sluice_datasets::nexmark::{NexmarkConfig, NexmarkTable};
use sluice_engine::Error;
use sluice_engine::api::StreamEnvironment;
use sluice_engine::checkpoint::{CheckpointConfig, CheckpointStorage, RestartStrategy};
use sluice_engine::connector::{NexmarkSource, SourceSpec};
use sluice_engine::runtime::{JobResult, LocalRuntime, RuntimeConfig};

const EVENTS: u64 = 200_000;
/// The failure comes after this many bids (of about 184 000) and after a completed checkpoint.
const FAIL_AFTER: u64 = 60_000;

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

/// Counts bids per auction; with `failure`, an operator after the source fails once (a
/// retryable error) after `FAIL_AFTER` bids and a completed checkpoint in `dir`.
fn run(
    runtime: &LocalRuntime,
    failure: Option<(Arc<AtomicBool>, &Path)>,
) -> (JobResult, BTreeMap<i64, i64>) {
    let env = StreamEnvironment::new("checkpointed-count").with_parallelism(2);
    let config = NexmarkConfig::default()
        .with_seed(11)
        .with_events(Some(EVENTS));
    let bids = env
        .source(
            "bids",
            SourceSpec::Nexmark(NexmarkSource::new(NexmarkTable::Bid, config.clone())),
        )
        .unwrap();
    let schema = NexmarkTable::Bid.schema();
    let seen = Arc::new(AtomicU64::new(0));
    let failure = failure.map(|(flag, dir)| (flag, dir.to_path_buf()));
    bids.map_batches("FailOnce", schema, move |batch: &RecordBatch| {
        if let Some((failed, dir)) = &failure
            && !failed.load(Ordering::Acquire)
        {
            // Slow the first attempt down so checkpoints complete before the failure.
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
    .key_by(["auction"])
    .count("n")
    .unwrap()
    .collect("out")
    .unwrap();
    let output = env.execute_on(runtime).unwrap();
    let mut counts = BTreeMap::new();
    for batch in output.collected.batches("out") {
        let auction = batch
            .column_by_name("auction")
            .unwrap()
            .as_primitive::<Int64Type>();
        let n = batch
            .column_by_name("n")
            .unwrap()
            .as_primitive::<Int64Type>();
        for i in 0..batch.num_rows() {
            assert!(
                counts.insert(auction.value(i), n.value(i)).is_none(),
                "auction {} emitted twice",
                auction.value(i)
            );
        }
    }
    (output.result, counts)
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

#[test]
fn keyed_count_recovers_from_a_failure_exactly_once() {
    let (_, expected) = run(&runtime(None), None);
    let bids: i64 = expected.values().sum();
    assert!(bids > 100_000, "{bids} bids");

    let dir = tempfile::tempdir().unwrap();
    let config = CheckpointConfig::new(Duration::from_millis(50), dir.path()).with_num_retained(2);
    let failed = Arc::new(AtomicBool::new(false));
    let (result, counts) = run(&runtime(Some(config)), Some((failed.clone(), dir.path())));

    assert!(failed.load(Ordering::Acquire), "the failure was injected");
    assert_eq!(result.restarts, 1);
    let restored = result
        .restored_from
        .expect("restored from a checkpoint, not from scratch");
    assert!(result.checkpoints_completed >= 1);
    let counted: i64 = counts.values().sum();
    assert_eq!(
        counted,
        bids,
        "bids lost ({}) or counted twice",
        bids - counted
    );
    assert_eq!(counts, expected);

    // The retained checkpoints are on disk, with the aggregate's state files.
    let storage = CheckpointStorage::new(dir.path(), &result.job_id, 2);
    let retained = storage.completed_ids().unwrap();
    assert!(!retained.is_empty() && retained.len() <= 2, "{retained:?}");
    let latest = storage.load_latest().unwrap().unwrap();
    assert!(latest.checkpoint_id() >= restored);
    assert!(
        latest
            .metadata
            .operators
            .iter()
            .any(|o| o.source_position.is_some())
    );
    assert!(
        latest
            .metadata
            .operators
            .iter()
            .any(|o| !o.files.is_empty())
    );
    if let Some(last) = result.last_checkpoint {
        eprintln!(
            "checkpoints completed: {}, restored from {restored}, last: {} in {:?}, {} bytes",
            result.checkpoints_completed, last.id, last.duration, last.state_bytes
        );
    }
}
