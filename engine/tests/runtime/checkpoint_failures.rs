//! Failed checkpoints: while the checkpoint directory cannot be written, each checkpoint fails
//! on its own and the job goes on; more consecutive failures than
//! `execution.checkpointing.tolerable-failed-checkpoints` fail the job.

use std::path::Path;
use std::time::Duration;

use sluice_datasets::nexmark::{NexmarkConfig, NexmarkTable};
use sluice_engine::api::StreamEnvironment;
use sluice_engine::checkpoint::CheckpointConfig;
use sluice_engine::connector::{NexmarkSource, SourceSpec};
use sluice_engine::runtime::{JobEnvironment, LocalRuntime, RuntimeConfig};

/// A keyed count over 1.5 s of rate-limited bids, checkpointing every 20 ms into `root`.
fn submit(
    root: &Path,
    tolerable: Option<u32>,
) -> (sluice_engine::runtime::JobHandle, JobEnvironment) {
    let config = NexmarkConfig::default()
        .with_seed(1)
        .with_events(Some(150_000))
        .with_first_event_rate(100_000);
    let env = StreamEnvironment::new("unwritable").with_parallelism(2);
    env.source(
        "bids",
        SourceSpec::Nexmark(NexmarkSource::new(NexmarkTable::Bid, config).with_rate_limit(true)),
    )
    .unwrap()
    .key_by(["auction"])
    .count("n")
    .unwrap()
    .collect("out")
    .unwrap();
    let (graph, registry) = env.build().unwrap();
    let job_env = JobEnvironment {
        registry,
        collected: Default::default(),
        sink_tables: Default::default(),
    };
    let checkpoints =
        CheckpointConfig::new(Duration::from_millis(20), root).with_tolerable_failures(tolerable);
    let runtime = LocalRuntime::new(
        RuntimeConfig::default()
            .with_slots(2)
            .with_pinning(false)
            .with_batch_size(500)
            .with_checkpointing(Some(checkpoints)),
    );
    (runtime.submit(&graph, &job_env).unwrap(), job_env)
}

/// `root` is a regular file, so no checkpoint directory can be created under it.
fn make_unwritable(root: &Path) {
    std::fs::write(root, b"not a directory").unwrap();
}

#[test]
fn failed_checkpoints_are_tolerated_and_checkpointing_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("checkpoints");
    make_unwritable(&root);
    let (handle, env) = submit(&root, Some(1000));
    std::thread::sleep(Duration::from_millis(300));
    std::fs::remove_file(&root).unwrap();
    let result = handle.wait().unwrap();
    assert!(result.checkpoints_completed >= 1, "{result}");
    let bids: i64 = env
        .collected
        .batches("out")
        .iter()
        .map(|b| {
            arrow::compute::sum(
                b.column_by_name("n")
                    .unwrap()
                    .as_any()
                    .downcast_ref::<arrow::array::Int64Array>()
                    .unwrap(),
            )
            .unwrap_or(0)
        })
        .sum();
    assert_eq!(bids, 138_000, "every bid counted once");
    // What failed checkpoints wrote is gone: every checkpoint directory left is complete.
    for job in std::fs::read_dir(&root).unwrap().flatten() {
        for chk in std::fs::read_dir(job.path()).unwrap().flatten() {
            assert!(
                chk.path().join("_metadata").is_file(),
                "{} is incomplete",
                chk.path().display()
            );
        }
    }
}

#[test]
fn more_failed_checkpoints_than_tolerated_fail_the_job() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("checkpoints");
    make_unwritable(&root);
    let (handle, _env) = submit(&root, Some(2));
    let error = handle.wait().unwrap_err().to_string();
    assert!(
        error.contains("3 consecutive checkpoints failed")
            && error.contains("tolerable-failed-checkpoints = 2")
            && error.contains("checkpoints"),
        "{error}"
    );
}
