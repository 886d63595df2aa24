//! Restoring a job that reads files at another parallelism: a keyed count over CSV, JSON and
//! Parquet files (several files, several row groups) is cancelled after a checkpoint taken
//! mid-way through the input, restored from that checkpoint at another parallelism, and its
//! committed output equals a run without interruption: every file split resumed exactly once,
//! at its byte offset or row, whichever old subtask had read it.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use sluice_engine::Error;
use sluice_engine::api::StreamEnvironment;
use sluice_engine::checkpoint::{CheckpointConfig, CheckpointStorage};
use sluice_engine::connector::{FileFormat, FileSinkSpec, FileSourceSpec, SinkSpec, SourceSpec};
use sluice_engine::runtime::{JobEnvironment, LocalRuntime, RuntimeConfig};

use super::rescale::{committed_rows, newest_completed_checkpoint};

/// Rows of each input file: unequal, so subtasks progress unevenly.
const FILE_ROWS: [i64; 5] = [9_000, 4_000, 12_000, 2_500, 7_500];
/// Rows per Parquet row group (each row group is a split).
const ROW_GROUP_ROWS: usize = 2_000;

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("k", DataType::Int64, false),
        Field::new("v", DataType::Int64, false),
    ]))
}

/// Writes the input files into `dir` in `format`; row `i` overall is `(i % 997, i)`.
fn write_input(dir: &Path, format: FileFormat) {
    std::fs::create_dir_all(dir).unwrap();
    let mut first = 0;
    for (n, &rows) in FILE_ROWS.iter().enumerate() {
        let values: Vec<i64> = (first..first + rows).collect();
        first += rows;
        let path = dir.join(format!("part-{n}"));
        match format {
            FileFormat::Csv => {
                let text: String = values
                    .iter()
                    .map(|i| format!("{},{i}\n", i % 997))
                    .collect();
                std::fs::write(path, text).unwrap();
            }
            FileFormat::Json => {
                let text: String = values
                    .iter()
                    .map(|i| format!("{{\"k\": {}, \"v\": {i}}}\n", i % 997))
                    .collect();
                std::fs::write(path, text).unwrap();
            }
            FileFormat::Parquet => {
                let batch = RecordBatch::try_new(
                    schema(),
                    vec![
                        Arc::new(Int64Array::from_iter_values(values.iter().map(|i| i % 997))),
                        Arc::new(Int64Array::from(values)),
                    ],
                )
                .unwrap();
                let properties = WriterProperties::builder()
                    .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
                    .build();
                let file = std::fs::File::create(path).unwrap();
                let mut writer = ArrowWriter::try_new(file, schema(), Some(properties)).unwrap();
                writer.write(&batch).unwrap();
                writer.close().unwrap();
            }
        }
    }
}

/// Files in `input` → a slow pass-through (so checkpoints come mid-way) → count per `k` →
/// CSV files in `out`, at `parallelism`.
fn job(
    input: &Path,
    format: FileFormat,
    parallelism: u32,
    out: &Path,
) -> (sluice_engine::graph::JobGraph, JobEnvironment) {
    let env = StreamEnvironment::new("file-count").with_parallelism(parallelism);
    let source = FileSourceSpec {
        path: input.to_string_lossy().into_owned(),
        format,
        schema: schema(),
        options: BTreeMap::new(),
        partition_keys: Vec::new(),
        predicate: None,
        dictionaries: false,
    };
    env.source("files", SourceSpec::Filesystem(source))
        .unwrap()
        .map_batches("Slow", schema(), |batch: &RecordBatch| {
            // 350 batches: 1.4 s at parallelism 1, time for three checkpoints when loaded.
            std::thread::sleep(Duration::from_millis(4));
            Ok(batch.clone())
        })
        .unwrap()
        .key_by(["k"])
        .count("n")
        .unwrap()
        .sink(
            "out",
            SinkSpec::Filesystem(FileSinkSpec {
                path: out.to_string_lossy().into_owned(),
                format: FileFormat::Csv,
                options: BTreeMap::new(),
                partition_keys: Vec::new(),
                overwrite: None,
            }),
        )
        .unwrap();
    let (graph, registry) = env.build().unwrap();
    (
        graph,
        JobEnvironment {
            registry,
            collected: Default::default(),
            sink_tables: Default::default(),
        },
    )
}

fn runtime(config: RuntimeConfig) -> LocalRuntime {
    LocalRuntime::new(
        config
            .with_slots(4)
            .with_pinning(false)
            .with_batch_size(100),
    )
}

/// Per split in the checkpoint's source positions: whether it was read to its end, and whether
/// reading had started.
fn split_progress(checkpoint: &Path) -> Vec<(bool, bool)> {
    let restored = CheckpointStorage::load_dir(checkpoint).unwrap();
    restored
        .states
        .iter()
        .filter_map(|s| s.source_position.as_ref())
        .flat_map(|p| p["splits"].as_object().unwrap().values().cloned())
        .map(|split| {
            let done = split.get("done").is_some();
            let started = done
                || ["byte", "rows"].iter().any(|f| {
                    split
                        .get(*f)
                        .and_then(|v| v.as_u64())
                        .is_some_and(|n| n > 0)
                });
            (done, started)
        })
        .collect()
}

fn restore_at_another_parallelism(format: FileFormat, before: u32, after: u32) {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input");
    write_input(&input, format);

    let expected_dir = dir.path().join("expected");
    let (graph, env) = job(&input, format, 1, &expected_dir);
    runtime(RuntimeConfig::default())
        .execute(&graph, &env)
        .unwrap();
    let expected = committed_rows(&expected_dir);
    assert_eq!(expected.len(), 997, "a count per key");

    let out = dir.path().join("out");
    let checkpoints = dir.path().join("checkpoints");
    let (graph, env) = job(&input, format, before, &out);
    let config = RuntimeConfig::default().with_checkpointing(Some(
        CheckpointConfig::new(Duration::from_millis(30), &checkpoints).with_num_retained(3),
    ));
    let handle = runtime(config).submit(&graph, &env).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
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

    // Mid-way: a position for every split, some read, some not finished.
    let splits = split_progress(&checkpoint);
    let split_count = match format {
        FileFormat::Parquet => FILE_ROWS
            .iter()
            .map(|&rows| (rows as usize).div_ceil(ROW_GROUP_ROWS))
            .sum(),
        FileFormat::Csv | FileFormat::Json => FILE_ROWS.len(),
    };
    assert_eq!(splits.len(), split_count, "a position per split");
    assert!(splits.iter().any(|&(_, started)| started), "{splits:?}");
    assert!(splits.iter().any(|&(done, _)| !done), "{splits:?}");

    let (graph, env) = job(&input, format, after, &out);
    let result = runtime(RuntimeConfig::default().with_initial_restore(Some(checkpoint.clone())))
        .execute(&graph, &env)
        .unwrap();
    assert!(result.restored_from.is_some());
    let actual = committed_rows(&out);
    assert_eq!(actual.len(), expected.len(), "keys lost or emitted twice");
    assert!(
        actual == expected,
        "{format:?} restored {before} -> {after}: counts differ (a split read twice or skipped)"
    );
}

#[test]
fn csv_files_restore_from_parallelism_1_at_3() {
    restore_at_another_parallelism(FileFormat::Csv, 1, 3);
}

#[test]
fn csv_files_restore_from_parallelism_3_at_2() {
    restore_at_another_parallelism(FileFormat::Csv, 3, 2);
}

#[test]
fn json_files_restore_from_parallelism_3_at_2() {
    restore_at_another_parallelism(FileFormat::Json, 3, 2);
}

#[test]
fn parquet_row_groups_restore_from_parallelism_1_at_3() {
    restore_at_another_parallelism(FileFormat::Parquet, 1, 3);
}
