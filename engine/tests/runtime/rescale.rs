//! Restoring a checkpoint at another parallelism: a keyed count over a generator source (Nexmark
//! bids, `datagen` rows) into a filesystem sink is stopped after a checkpoint, restored from that
//! checkpoint's directory at another parallelism, and its committed output equals a run
//! without interruption exactly (nothing lost, nothing twice).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::datatypes::{DataType, Field, Schema};
use sluice_datasets::nexmark::{NexmarkConfig, NexmarkTable};
use sluice_engine::Error;
use sluice_engine::api::StreamEnvironment;
use sluice_engine::checkpoint::{CheckpointConfig, CheckpointStorage};
use sluice_engine::connector::{
    DatagenSource, FileFormat, FileSinkSpec, NexmarkSource, SinkSpec, SourceSpec,
};
use sluice_engine::runtime::{JobEnvironment, LocalRuntime, RuntimeConfig};

fn nexmark_bids() -> (SourceSpec, &'static str) {
    let config = NexmarkConfig::default()
        .with_seed(5)
        .with_events(Some(300_000))
        // Two seconds of input: time for three checkpoints (the first incremental one writes
        // a file per key group) on a loaded 2-core machine.
        .with_first_event_rate(150_000);
    (
        SourceSpec::Nexmark(NexmarkSource::new(NexmarkTable::Bid, config).with_rate_limit(true)),
        "auction",
    )
}

fn datagen_rows() -> (SourceSpec, &'static str) {
    let schema = Arc::new(Schema::new(vec![
        Field::new("k", DataType::Int64, true),
        Field::new("v", DataType::Int64, true),
    ]));
    let options = [
        ("number-of-rows", "200000"),
        ("rows-per-second", "200000"),
        ("fields.k.min", "0"),
        ("fields.k.max", "4999"),
        ("fields.v.kind", "sequence"),
        ("fields.v.start", "1"),
        ("fields.v.end", "200000"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    (
        SourceSpec::Datagen(DatagenSource::new(schema, options)),
        "k",
    )
}

/// `source` → count per `key` → CSV files in `out`, at `parallelism`.
fn job(
    source: &(SourceSpec, &str),
    parallelism: u32,
    out: &Path,
) -> (JobEnvironment, StreamEnvironment) {
    let env = StreamEnvironment::new("rescaled-count").with_parallelism(parallelism);
    env.source("rows", source.0.clone())
        .unwrap()
        .key_by([source.1])
        .count("n")
        .unwrap()
        .sink(
            "files",
            SinkSpec::Filesystem(FileSinkSpec {
                path: out.to_string_lossy().into_owned(),
                format: FileFormat::Csv,
                options: BTreeMap::new(),
                partition_keys: Vec::new(),
                overwrite: None,
            }),
        )
        .unwrap();
    let (_, registry) = env.build().unwrap();
    (
        JobEnvironment {
            registry,
            collected: Default::default(),
            sink_tables: Default::default(),
        },
        env,
    )
}

fn runtime(config: RuntimeConfig) -> LocalRuntime {
    LocalRuntime::new(
        config
            .with_slots(4)
            .with_pinning(false)
            .with_batch_size(500),
    )
}

/// The committed output rows under `dir` (hidden in-progress files are not output), sorted.
pub fn committed_rows(dir: &Path) -> Vec<String> {
    let mut rows = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || name.starts_with('_') {
            continue;
        }
        let text = std::fs::read_to_string(entry.path()).unwrap();
        rows.extend(text.lines().map(str::to_string));
    }
    rows.sort();
    rows
}

/// The newest checkpoint directory with a `_metadata` file under `root` (all job dirs).
pub fn newest_completed_checkpoint(root: &Path) -> Option<PathBuf> {
    let mut best: Option<(u64, PathBuf)> = None;
    for job in std::fs::read_dir(root).ok()?.flatten() {
        for chk in std::fs::read_dir(job.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = chk.file_name().to_string_lossy().into_owned();
            let Some(id) = name
                .strip_prefix("chk-")
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            if chk.path().join("_metadata").is_file() && best.as_ref().is_none_or(|(b, _)| id > *b)
            {
                best = Some((id, chk.path()));
            }
        }
    }
    best.map(|(_, path)| path)
}

/// Runs at `before` until a checkpoint past the start completes, cancels, restores that
/// checkpoint at `after`, and compares the output with an uninterrupted run.
fn stop_and_restore_at_another_parallelism(source: (SourceSpec, &str), before: u32, after: u32) {
    stop_and_restore_at_another_parallelism_with(source, before, after, false);
}

/// [`stop_and_restore_at_another_parallelism`] with incremental checkpoints on or off.
fn stop_and_restore_at_another_parallelism_with(
    source: (SourceSpec, &str),
    before: u32,
    after: u32,
    incremental: bool,
) {
    let dir = tempfile::tempdir().unwrap();
    let expected_dir = dir.path().join("expected");
    let (env, stream) = job(&source, 1, &expected_dir);
    let (graph, _) = stream.build().unwrap();
    runtime(RuntimeConfig::default())
        .execute(&graph, &env)
        .unwrap();
    let expected = committed_rows(&expected_dir);
    assert!(expected.len() > 100, "{} groups", expected.len());

    let out = dir.path().join("out");
    let checkpoints = dir.path().join("checkpoints");
    let (env, stream) = job(&source, before, &out);
    let (graph, _) = stream.build().unwrap();
    let config = RuntimeConfig::default().with_checkpointing(Some(
        CheckpointConfig::new(Duration::from_millis(30), &checkpoints)
            .with_num_retained(3)
            .with_incremental(incremental),
    ));
    let handle = runtime(config).submit(&graph, &env).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let checkpoint = loop {
        if let Some(chk) = newest_completed_checkpoint(&checkpoints)
            && chk.ends_with("chk-3")
        {
            break chk;
        }
        assert!(Instant::now() < deadline, "no checkpoint completed");
        assert!(
            !handle.is_finished(),
            "the job ended before its third checkpoint"
        );
        std::thread::sleep(Duration::from_millis(2));
    };
    handle.cancel();
    assert!(matches!(handle.wait(), Err(Error::Cancelled)));

    // The checkpoint is mid-stream: some split has moved, and not everything was read.
    let restored = CheckpointStorage::load_dir(&checkpoint).unwrap();
    let positions: Vec<u64> = restored
        .states
        .iter()
        .filter_map(|s| s.source_position.as_ref())
        .flat_map(|p| {
            p["splits"]
                .as_object()
                .unwrap()
                .values()
                .map(|v| v.as_u64().unwrap())
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(positions.len(), 128, "a position per split");
    if incremental {
        let files = || restored.metadata.operators.iter().flat_map(|o| &o.files);
        assert!(files().any(|f| f.shared), "no shared slice files");
    }
    assert!(positions.iter().any(|&p| p > 0), "{positions:?}");

    let (env, stream) = job(&source, after, &out);
    let (graph, _) = stream.build().unwrap();
    let result = runtime(RuntimeConfig::default().with_initial_restore(Some(checkpoint.clone())))
        .execute(&graph, &env)
        .unwrap();
    assert_eq!(result.restored_from, Some(restored.checkpoint_id()));
    let actual = committed_rows(&out);
    assert_eq!(actual.len(), expected.len(), "groups lost or emitted twice");
    assert!(
        actual == expected,
        "restored {before} -> {after}: output differs"
    );
}

#[test]
fn nexmark_count_restores_from_parallelism_1_at_3() {
    stop_and_restore_at_another_parallelism(nexmark_bids(), 1, 3);
}

#[test]
fn datagen_count_restores_from_parallelism_4_at_2() {
    stop_and_restore_at_another_parallelism(datagen_rows(), 4, 2);
}

#[test]
fn nexmark_count_restores_from_parallelism_4_at_2() {
    stop_and_restore_at_another_parallelism(nexmark_bids(), 4, 2);
}

#[test]
fn incremental_checkpoint_restores_from_parallelism_4_at_3() {
    stop_and_restore_at_another_parallelism_with(nexmark_bids(), 4, 3, true);
}

#[test]
fn corrupted_checkpoint_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let checkpoints = dir.path().join("checkpoints");
    let (env, stream) = job(&nexmark_bids(), 2, &out);
    let (graph, _) = stream.build().unwrap();
    let config = RuntimeConfig::default().with_checkpointing(Some(CheckpointConfig::new(
        Duration::from_millis(30),
        &checkpoints,
    )));
    runtime(config).execute(&graph, &env).unwrap();
    let checkpoint = newest_completed_checkpoint(&checkpoints).expect("a completed checkpoint");
    let file = std::fs::read_dir(&checkpoint)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "arrow"))
        .expect("a state file");
    let mut bytes = std::fs::read(&file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&file, bytes).unwrap();
    let restore = runtime(RuntimeConfig::default().with_initial_restore(Some(checkpoint)));
    let error = restore
        .submit(&graph, &env)
        .err()
        .expect("restore fails")
        .to_string();
    let name = file.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        error.contains(&name) && error.contains("corrupted"),
        "{error}"
    );

    let missing = dir.path().join("nowhere");
    let restore = runtime(RuntimeConfig::default().with_initial_restore(Some(missing)));
    let error = restore
        .submit(&graph, &env)
        .err()
        .expect("restore fails")
        .to_string();
    assert!(error.contains("nowhere"), "{error}");
}
