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
            // Slower once the narrow phase began, so that three of its checkpoints complete
            // before the input ends even on a loaded machine.
            let narrowing = narrow_mark.load(Ordering::Acquire) != u64::MAX;
            std::thread::sleep(Duration::from_millis(if narrowing { 5 } else { 2 }));
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
    let (written, all) = slice_files(&metadata[0]);
    assert_eq!(written, all, "the first checkpoint is full");
    // The checkpoint restored from is in the narrow phase: it writes at most the slices of
    // the two keys and references the others, far fewer files and bytes than the largest
    // checkpoint before it.
    let at = ids.iter().position(|&id| id == restored).unwrap();
    assert!(at >= 1, "restored from the first checkpoint");
    let last = &metadata[at];
    let (written, all) = slice_files(last);
    assert!(
        written <= 2 && all > 20,
        "{written} of {all} slice files written"
    );
    let largest = metadata[..at]
        .iter()
        .max_by_key(|m| m.written_bytes())
        .unwrap();
    assert!(slice_files(largest).0 > 20 && written < slice_files(largest).0);
    assert!(last.written_bytes() * 10 < largest.written_bytes());
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

/// Checkpoint size and time of a keyed SUM/COUNT over a million keys, then rounds in which a
/// few keys change, full against incremental. Prints its numbers; run it in release:
/// `cargo test --release -p sluice-engine --test runtime -- --ignored million_keys --nocapture`.
#[test]
#[ignore = "a measurement, run by hand in release mode"]
fn checkpoint_size_with_a_million_keys() {
    use arrow::datatypes::{DataType, Field, Schema};
    use sluice_engine::checkpoint::SubtaskSnapshot;
    use sluice_engine::checkpoint::metadata::METADATA_VERSION;
    use sluice_engine::graph::{AggregateCall, AggregateFunction, EmitMode, KeyedAggregateSpec};
    use sluice_engine::ids::{CheckpointId, JobId, SubtaskIndex};
    use sluice_engine::operator::{KeyedAggregate, Operator, OperatorContext, Output};
    use sluice_engine::state::KeyGroupRange;
    use std::time::Instant;

    const KEYS: i64 = 1_000_000;
    const BATCH: i64 = 8_192;
    let input = Arc::new(Schema::new(vec![
        Field::new("k", DataType::Int64, false),
        Field::new("v", DataType::Int64, false),
    ]));
    let spec = KeyedAggregateSpec {
        keys: vec!["k".into()],
        aggregates: vec![
            AggregateCall {
                function: AggregateFunction::Sum,
                input: Some("v".into()),
                output: "s".into(),
            },
            AggregateCall {
                function: AggregateFunction::Count,
                input: None,
                output: "n".into(),
            },
        ],
        emit: EmitMode::Final,
        default_group: None,
        phase: Default::default(),
    };
    let batch = |keys: Vec<i64>| {
        let values = Int64Array::from_iter_values(keys.iter().map(|k| k % 7));
        RecordBatch::try_new(
            input.clone(),
            vec![Arc::new(Int64Array::from(keys)), Arc::new(values)],
        )
        .unwrap()
    };
    for changed_keys in [10i64, 100, 1_000] {
        for incremental in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let storage = CheckpointStorage::new(dir.path(), &JobId("measure".into()), 1)
                .with_incremental(incremental);
            let output = spec.output_schema(&input).unwrap();
            let mut aggregate = KeyedAggregate::try_new(&spec, &input, output.clone()).unwrap();
            aggregate
                .open(&OperatorContext {
                    vertex: "agg".into(),
                    subtask: SubtaskIndex(0),
                    parallelism: 1,
                    max_parallelism: 128,
                    key_groups: KeyGroupRange::for_subtask(128, 1, 0),
                    input_schemas: vec![input.clone()],
                    output_schema: output,
                    incremental_checkpoints: incremental,
                    checkpointing: true,
                    memory: sluice_engine::spill::MemoryBudget::default(),
                })
                .unwrap();
            let mut out = Output::default();
            let mut start = 0;
            while start < KEYS {
                let end = (start + BATCH).min(KEYS);
                aggregate
                    .process_batch(0, batch((start..end).collect()), &mut out)
                    .unwrap();
                start = end;
            }
            let mut line = Vec::new();
            for round in 1..=4u64 {
                if round > 1 {
                    // A few keys change, spread over the key space.
                    let step = KEYS / changed_keys;
                    let keys = (0..changed_keys)
                        .map(|i| (i * step + round as i64 * 7919) % KEYS)
                        .collect();
                    aggregate.process_batch(0, batch(keys), &mut out).unwrap();
                }
                let id = CheckpointId(round);
                let started = Instant::now();
                let state = aggregate.snapshot(id).unwrap();
                let snapshot_time = started.elapsed();
                let written = storage
                    .write_subtask(
                        id,
                        &SubtaskSnapshot {
                            vertex: "agg".into(),
                            subtask: 0,
                            source_position: None,
                            state,
                        },
                    )
                    .unwrap();
                let metadata = CheckpointMetadata {
                    version: METADATA_VERSION,
                    job_id: "measure".into(),
                    checkpoint_id: id,
                    trigger_timestamp_ms: 0,
                    completed_timestamp_ms: 0,
                    operators: vec![written],
                };
                storage.complete(&metadata).unwrap();
                let total_time = started.elapsed();
                aggregate.notify_checkpoint_complete(id).unwrap();
                line.push(format!(
                    "chk {round}: {} files / {} KiB written (of {} KiB), snapshot {:?}, total {:?}",
                    metadata.written_files().count(),
                    metadata.written_bytes() / 1024,
                    metadata.state_bytes() / 1024,
                    snapshot_time,
                    total_time
                ));
            }
            let started = Instant::now();
            let restored = storage.load_latest().unwrap().unwrap();
            let rows: usize = restored.states[0].state.tables[0]
                .batches
                .iter()
                .map(RecordBatch::num_rows)
                .sum();
            assert_eq!(rows as i64, KEYS);
            eprintln!(
                "{} keys changed per round, {}:\n  {}\n  restore of the last: {:?}",
                changed_keys,
                if incremental { "incremental" } else { "full" },
                line.join("\n  "),
                started.elapsed()
            );
        }
    }
}
