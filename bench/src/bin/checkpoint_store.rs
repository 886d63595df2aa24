//! Time to write and complete a checkpoint, and to restore it, on a local directory and on an
//! S3-compatible store: one subtask's state table of `--mb` MB (an Arrow IPC file, one PUT)
//! plus `_metadata` and retention (`num-retained` 1, so each completion also deletes the
//! previous checkpoint), `--iterations` times; then `load_latest` (GET and checksum).
//!
//! ```text
//! # an S3-compatible server, e.g. moto from the test venv, with a bucket:
//! /var/tmp/sluice-venv/bin/moto_server -H 127.0.0.1 -p 5000 &
//! curl -X PUT http://127.0.0.1:5000/bench
//! cargo run --release -p sluice-bench --bin checkpoint-store -- --endpoint http://127.0.0.1:5000 --bucket bench --mb 64
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};
use clap::Parser;
use sluice_engine::checkpoint::metadata::METADATA_VERSION;
use sluice_engine::checkpoint::{
    CheckpointMetadata, CheckpointStorage, S3Config, StatePath, StateStores, SubtaskSnapshot,
};
use sluice_engine::ids::{CheckpointId, JobId};
use sluice_engine::state::{SnapshotTable, StateSnapshot};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(about = "Checkpoint write/complete/restore time: local directory vs S3")]
struct Args {
    /// The S3-compatible server, http(s)://host:port (path-style requests).
    #[arg(long)]
    endpoint: String,
    /// An existing bucket on it.
    #[arg(long)]
    bucket: String,
    /// Size of the state table, in MB.
    #[arg(long, default_value_t = 64)]
    mb: usize,
    /// Checkpoints written and completed per store.
    #[arg(long, default_value_t = 5)]
    iterations: u64,
}

/// One subtask's snapshot holding `mb` MB of Int64 values.
fn snapshot(mb: usize) -> SubtaskSnapshot {
    let rows = mb * 1024 * 1024 / 8;
    let schema = Arc::new(Schema::new(vec![Field::new(
        "value",
        DataType::Int64,
        false,
    )]));
    let values = Int64Array::from_iter_values(
        (0..rows as u64).map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15) as i64),
    );
    let batch = RecordBatch::try_new(schema, vec![Arc::new(values)]).expect("one column");
    SubtaskSnapshot {
        vertex: "bench".into(),
        subtask: 0,
        source_position: None,
        state: StateSnapshot {
            key_groups: None,
            tables: vec![SnapshotTable {
                name: "values".into(),
                batches: vec![batch],
                slices: None,
            }],
            sink_pre_commit: None,
        },
    }
}

/// Median write+complete time over the iterations, and the restore time.
fn measure(
    stores: &StateStores,
    root: &StatePath,
    snapshot: &SubtaskSnapshot,
    iterations: u64,
) -> anyhow::Result<(Duration, Duration)> {
    let job = JobId::generate();
    let storage = CheckpointStorage::open(stores, root, &job, 1)?;
    let mut times = Vec::new();
    for id in 1..=iterations {
        let started = Instant::now();
        let id = CheckpointId(id);
        let state = storage.write_subtask(id, snapshot)?;
        storage.complete(&CheckpointMetadata {
            version: METADATA_VERSION,
            job_id: job.0.clone(),
            checkpoint_id: id,
            trigger_timestamp_ms: 0,
            completed_timestamp_ms: 0,
            operators: vec![state],
        })?;
        times.push(started.elapsed());
    }
    times.sort();
    let started = Instant::now();
    let restored = storage.load_latest()?;
    let restore = started.elapsed();
    anyhow::ensure!(
        restored.is_some_and(|r| r.checkpoint_id() == CheckpointId(iterations)),
        "the newest checkpoint restores"
    );
    storage.store().delete_dir(storage.job_dir())?;
    Ok((times[times.len() / 2], restore))
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.iterations > 0, "--iterations must be at least 1");
    let snapshot = snapshot(args.mb);
    let local_dir = std::env::temp_dir().join(format!("sluice-checkpoint-bench-{}", args.mb));
    let s3 = S3Config {
        endpoint: Some(args.endpoint.clone()),
        path_style_access: Some(true),
        access_key: Some(std::env::var("AWS_ACCESS_KEY_ID").unwrap_or_else(|_| "bench".into())),
        secret_key: Some(std::env::var("AWS_SECRET_ACCESS_KEY").unwrap_or_else(|_| "bench".into())),
        region: None,
    };
    let stores = sluice_coordinator::checkpoint::s3::state_stores(s3);
    let targets = [
        ("local", StatePath::from(local_dir.clone())),
        (
            "s3",
            StatePath::parse(&format!("s3://{}/checkpoint-bench", args.bucket))
                .map_err(anyhow::Error::msg)?,
        ),
    ];
    let mut results = Vec::new();
    for (name, root) in targets {
        let (complete, restore) = measure(&stores, &root, &snapshot, args.iterations)?;
        let mb_per_s = |d: Duration| args.mb as f64 / d.as_secs_f64();
        println!(
            "{name:>5}: {} MB checkpoint written and completed in {:.1} ms ({:.0} MB/s, median \
             of {}); restored in {:.1} ms ({:.0} MB/s)",
            args.mb,
            complete.as_secs_f64() * 1e3,
            mb_per_s(complete),
            args.iterations,
            restore.as_secs_f64() * 1e3,
            mb_per_s(restore),
        );
        results.push(serde_json::json!({
            "store": name,
            "mb": args.mb,
            "complete_ms": complete.as_secs_f64() * 1e3,
            "restore_ms": restore.as_secs_f64() * 1e3,
        }));
    }
    let _ = std::fs::remove_dir_all(&local_dir);
    println!("{}", serde_json::Value::Array(results));
    Ok(())
}
