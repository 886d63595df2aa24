//! Incremental checkpoints: a keyed count whose keys, after a warm-up over many auctions,
//! narrow to two keys, so later checkpoints change two key groups only. Those checkpoints
//! write one or two slice files and reference the rest; a failure after them restores from
//! such a checkpoint and ends with exactly the result of a run without failure; the first
//! checkpoint after the restore is full again.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use arrow::array::{ArrayRef, AsArray, Int64Array, RecordBatch};
use arrow::datatypes::{Int64Type, TimestampMillisecondType};
use sluice_datasets::nexmark::{NexmarkConfig, NexmarkTable};
use sluice_engine::Error;
use sluice_engine::api::StreamEnvironment;
use sluice_engine::checkpoint::{
    CheckpointConfig, CheckpointMetadata, CheckpointStorage, RestartStrategy,
};
use sluice_engine::connector::{NexmarkSource, SourceSpec};
use sluice_engine::runtime::{JobResult, LocalRuntime, RuntimeConfig};

const EVENTS: u64 = 100_000;
/// One event per millisecond of event time.
const RATE: u64 = 1_000;
/// Bids of the first events keep their auction; later ones go to two keys.
const WARM_UP_MS: i64 = 15_000;
/// The failure comes after this many bids, once enough checkpoints of the narrow phase
/// completed.
const FAIL_AFTER: u64 = 60_000;

/// The number of completed checkpoints (`_metadata` files) under `dir`.
fn completed_checkpoints(dir: &Path) -> usize {
    let Ok(jobs) = std::fs::read_dir(dir) else {
        return 0;
    };
    jobs.flatten()
        .flat_map(|job| {
            std::fs::read_dir(job.path())
                .into_iter()
                .flatten()
                .flatten()
        })
        .filter(|chk| chk.path().join("_metadata").is_file())
        .count()
}

/// Counts bids per (narrowed) auction. With a checkpoint directory, the first attempt is
/// slowed down and fails once (retryably) after `FAIL_AFTER` bids and three checkpoints
/// completed after the narrow phase began.
fn run(runtime: &LocalRuntime, dir: Option<&Path>) -> (JobResult, BTreeMap<i64, i64>) {
    let env = StreamEnvironment::new("incremental-count").with_parallelism(2);
    let config = NexmarkConfig::default()
        .with_seed(5)
        .with_events(Some(EVENTS))
        .with_first_event_rate(RATE);
    let narrow_from = config.base_time_ms + WARM_UP_MS;
    let bids = env
        .source(
            "bids",
            SourceSpec::Nexmark(NexmarkSource::new(NexmarkTable::Bid, config)),
        )
        .unwrap()
        .parallelism(1)
        .unwrap();
    let schema = NexmarkTable::Bid.schema();
    let failed = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(AtomicU64::new(0));
    let narrow_mark = Arc::new(AtomicU64::new(u64::MAX));
    let dir = dir.map(Path::to_path_buf);
    let auction_index = schema.index_of("auction").unwrap();
    bids.map_batches("Narrow", schema.clone(), move |batch: &RecordBatch| {
        let times = batch
            .column_by_name("dateTime")
            .unwrap()
            .as_primitive::<TimestampMillisecondType>();
        let auctions = batch.column(auction_index).as_primitive::<Int64Type>();
        let narrowed: Int64Array = auctions
            .values()
            .iter()
            .zip(times.values())
            .map(|(&a, &t)| if t < narrow_from { a } else { a % 2 })
            .collect();
        if let Some(dir) = &dir
            && !failed.load(Ordering::Acquire)
        {
            std::thread::sleep(Duration::from_millis(2));
            if times.values().last().is_some_and(|&t| t >= narrow_from) {
                let _ = narrow_mark.compare_exchange(
                    u64::MAX,
                    completed_checkpoints(dir) as u64,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                );
            }
            let total = seen.fetch_add(batch.num_rows() as u64, Ordering::AcqRel);
            let mark = narrow_mark.load(Ordering::Acquire);
            if total >= FAIL_AFTER
                && mark != u64::MAX
                && completed_checkpoints(dir) as u64 >= mark + 3
                && !failed.swap(true, Ordering::AcqRel)
            {
                return Err(Error::Unavailable {
                    what: "test operator Narrow".into(),
                    message: "injected failure".into(),
                });
            }
        }
        let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
        columns[auction_index] = Arc::new(narrowed);
        Ok(RecordBatch::try_new(batch.schema(), columns).unwrap())
    })
    .unwrap()
    .parallelism(1)
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

/// The files of the keyed count's slices in a checkpoint: (written by it, all).
fn slice_files(metadata: &CheckpointMetadata) -> (usize, usize) {
    let sliced = |f: &&sluice_engine::checkpoint::StateFile| f.key_groups.is_some();
    (
        metadata.written_files().filter(sliced).count(),
        metadata
            .operators
            .iter()
            .flat_map(|o| &o.files)
            .filter(sliced)
            .count(),
    )
}

#[test]
fn unchanged_key_groups_are_referenced_and_restore_exactly() {
    let (_, expected) = run(&runtime(None), None);
    assert!(expected.len() > 500, "{} auctions", expected.len());

    let dir = tempfile::tempdir().unwrap();
    let config = CheckpointConfig::new(Duration::from_millis(40), dir.path())
        .with_num_retained(1000)
        .with_incremental(true);
    let (result, counts) = run(&runtime(Some(config)), Some(dir.path()));
    assert_eq!(result.restarts, 1);
    let restored = result.restored_from.expect("restored from a checkpoint");
    assert_eq!(
        counts, expected,
        "restored run differs from the failure-free one"
    );

    let storage = CheckpointStorage::new(dir.path(), &result.job_id, 1000);
    let ids = storage.completed_ids().unwrap();
    let metadata: Vec<CheckpointMetadata> = ids
        .iter()
        .map(|&id| storage.load(id).unwrap().metadata)
        .collect();
    for m in &metadata {
        let (written, all) = slice_files(m);
        eprintln!(
            "checkpoint {}: {written} of {all} slice files written, {} of {} bytes",
            m.checkpoint_id.0,
            m.written_bytes(),
            m.state_bytes()
        );
    }
    // The first checkpoint writes every slice.
    let first = &metadata[0];
    let (written, all) = slice_files(first);
    assert!(all > 20 && written == all, "{written} of {all}");
    // The checkpoint restored from is in the narrow phase: it writes at most the slices of the two keys and references the others.
    let at = ids.iter().position(|&id| id == restored).unwrap();
    assert!(at >= 1, "restored from the first checkpoint");
    let last = &metadata[at];
    let (written, all) = slice_files(last);
    assert!(
        written <= 2 && all > 20,
        "{written} of {all} slice files written"
    );
    assert!(last.written_bytes() < first.written_bytes());
    assert!(last.written_bytes() * 4 < last.state_bytes());
    // After the restore, the first checkpoint is full again.
    if let Some(after) = metadata.iter().find(|m| m.checkpoint_id > restored) {
        let (written, all) = slice_files(after);
        assert_eq!(
            written, all,
            "checkpoint {} after the restore",
            after.checkpoint_id.0
        );
    }
}
