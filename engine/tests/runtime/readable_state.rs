//! Checkpoint state files are plain Arrow IPC files that outside tools read: a keyed count over
//! an unbounded `datagen` table is cancelled after a few checkpoints, and a Python script
//! (`engine/tests/python/read_state.py`) opens the count's state files with pyarrow and checks
//! their schema, their rows against `_metadata`, and the counts against the rows the source had
//! produced when that checkpoint was taken (regenerated here from the checkpointed positions).
//!
//! The interpreter is `$SLUICE_PYTHON`, the virtual environment that `ci/install-deps.sh`
//! makes (`ci/test.sh` exports it). Without it the test fails and says so: it never passes
//! without having read the files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{AsArray, Int64Array};
use arrow::datatypes::{DataType, Field, Int64Type, Schema};
use arrow_row::{RowConverter, SortField};
use sluice_datasets::datagen::DatagenGenerator;
use sluice_engine::Error;
use sluice_engine::api::StreamEnvironment;
use sluice_engine::checkpoint::{CheckpointConfig, CheckpointStorage};
use sluice_engine::connector::{DatagenSource, SinkSpec, SourceSpec};
use sluice_engine::runtime::{JobEnvironment, LocalRuntime, RuntimeConfig};

use super::rescale::newest_completed_checkpoint;

/// Splits of a `datagen` table (`sluice_engine::connector` deals rows over this many).
const DATAGEN_SPLITS: u32 = 128;

/// The Python interpreter with pyarrow; fails the test with what to do when it is not set.
fn python() -> PathBuf {
    match std::env::var_os("SLUICE_PYTHON") {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => panic!(
            "SLUICE_PYTHON is not set: this test reads checkpoint files with pyarrow. Run \
             ci/install-deps.sh, then export SLUICE_PYTHON=/var/tmp/sluice-venv/bin/python \
             (or $SLUICE_VENV/bin/python); ci/test.sh does both"
        ),
    }
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/read_state.py")
}

/// An unbounded table `(k BIGINT)` with `k` in 0..=9.
fn source() -> DatagenSource {
    let schema = Arc::new(Schema::new(vec![Field::new("k", DataType::Int64, true)]));
    let options = [
        ("rows-per-second", "100000"),
        ("fields.k.min", "0"),
        ("fields.k.max", "9"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    DatagenSource::new(schema, options)
}

/// Counts per key of the rows the source produced before `checkpoint`: each split's rows up
/// to its checkpointed position, generated again.
fn counts_at(checkpoint: &Path, source: &DatagenSource) -> BTreeMap<i64, i64> {
    let restored = CheckpointStorage::load_dir(checkpoint).unwrap();
    let config = source.config().unwrap();
    let mut counts = BTreeMap::new();
    let mut splits = 0;
    for position in restored
        .states
        .iter()
        .filter_map(|s| s.source_position.as_ref())
    {
        for (split, rows) in position["splits"].as_object().unwrap() {
            splits += 1;
            let split: u32 = split.parse().unwrap();
            let mut left = rows.as_u64().unwrap() as usize;
            let mut generator = DatagenGenerator::new(&config, split, DATAGEN_SPLITS).unwrap();
            while left > 0 {
                let batch = generator.next_batch(left).unwrap().unwrap();
                left -= batch.num_rows();
                for k in batch.column(0).as_primitive::<Int64Type>().iter() {
                    *counts.entry(k.unwrap()).or_insert(0) += 1;
                }
            }
        }
    }
    assert_eq!(splits, DATAGEN_SPLITS, "a position per split");
    counts
}

/// The key as the state file stores it: its row encoding, as hex.
fn encoded_keys(keys: &[i64]) -> Vec<String> {
    let converter = RowConverter::new(vec![SortField::new(DataType::Int64)]).unwrap();
    let column = Arc::new(Int64Array::from(keys.to_vec()));
    let rows = converter.convert_columns(&[column]).unwrap();
    rows.iter()
        .map(|row| {
            row.as_ref()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        })
        .collect()
}

#[test]
fn keyed_state_files_read_with_pyarrow() {
    let python = python();
    let dir = tempfile::tempdir().unwrap();
    let checkpoints = dir.path().join("checkpoints");
    let source = source();
    let env = StreamEnvironment::new("readable-state").with_parallelism(2);
    env.source("rows", SourceSpec::Datagen(source.clone()))
        .unwrap()
        .key_by(["k"])
        .count("n")
        .unwrap()
        .sink("discard", SinkSpec::Blackhole)
        .unwrap();
    let (graph, registry) = env.build().unwrap();
    let job = JobEnvironment {
        registry,
        collected: Default::default(),
        sink_tables: Default::default(),
    };
    let runtime = LocalRuntime::new(
        RuntimeConfig::default()
            .with_slots(2)
            .with_pinning(false)
            .with_batch_size(500)
            .with_checkpointing(Some(CheckpointConfig::new(
                Duration::from_millis(30),
                &checkpoints,
            ))),
    );
    let handle = runtime.submit(&graph, &job).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let checkpoint = loop {
        if let Some(chk) = newest_completed_checkpoint(&checkpoints)
            && chk.ends_with("chk-3")
        {
            break chk;
        }
        assert!(Instant::now() < deadline, "no third checkpoint completed");
        std::thread::sleep(Duration::from_millis(2));
    };
    handle.cancel();
    assert!(matches!(handle.wait(), Err(Error::Cancelled)));

    let counts = counts_at(&checkpoint, &source);
    let rows: i64 = counts.values().sum();
    assert!(rows > 0, "the source produced rows before the checkpoint");
    let keys: Vec<i64> = counts.keys().copied().collect();
    let expected: serde_json::Map<String, serde_json::Value> = encoded_keys(&keys)
        .into_iter()
        .zip(counts.values())
        .map(|(key, &n)| (key, n.into()))
        .collect();
    let expected_path = dir.path().join("expected.json");
    std::fs::write(
        &expected_path,
        serde_json::json!({ "table": "groups", "value_column": "acc0_0", "counts": expected })
            .to_string(),
    )
    .unwrap();

    let output = Command::new(&python)
        .arg(script())
        .arg(&checkpoint)
        .arg(&expected_path)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {} ({e}); run ci/install-deps.sh",
                python.display()
            )
        });
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}{stderr}");
    let summary: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(summary["files"], 2, "one state file per subtask: {summary}");
    assert_eq!(summary["keys"], keys.len(), "{summary}");
    assert_eq!(summary["rows"], rows, "{summary}");
}
