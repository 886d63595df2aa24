//! Local mode (`sluice sql -f`) with checkpoints and savepoints on `s3://`, against a real
//! S3-compatible server (moto): a job is killed with SIGKILL mid-way, resumed from its newest
//! completed (incremental) checkpoint in the bucket, stopped with a savepoint into the
//! bucket, and resumed from that savepoint to its end. The committed rows equal a run without
//! failures: none lost, none twice.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use sluice_coordinator::checkpoint::s3::state_stores;
use sluice_engine::checkpoint::{CheckpointStorage, S3Config, StatePath};
use sluice_engine::ids::JobId;

use super::moto::{ACCESS_KEY, Moto, SECRET_KEY};
use super::*;

/// How long a job may take to reach a state the test waits for.
const DEADLINE: Duration = Duration::from_secs(60);

/// The windowed count, with the S3 store's endpoint set in the script (`SET`); credentials
/// come from the `AWS_*` environment of the process.
fn s3_script(out: &Path, endpoint: &str) -> String {
    format!(
        "SET 's3.endpoint' = '{endpoint}';\nSET 's3.path.style.access' = 'true';\n{}",
        windowed_bids_script(out, true)
    )
}

/// `sluice ARGS` with the moto credentials in its environment.
fn sluice_s3(tmp: &Path, args: &[&str]) -> Command {
    let mut command = sluice_in(tmp, args);
    command
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY);
    command
}

/// The checkpointed run of `script`, restored from `restore` if given.
fn start(tmp: &Path, script: &Path, restore: Option<&str>) -> Child {
    let mut args = vec![
        "sql",
        "-f",
        script.to_str().unwrap(),
        "--parallelism",
        "2",
        "-D",
        "execution.checkpointing.interval=200ms",
        "-D",
        "execution.checkpointing.dir=s3://sluice/checkpoints",
        "-D",
        "execution.checkpointing.incremental=true",
        "-D",
        "execution.checkpointing.num-retained=2",
    ];
    if let Some(path) = restore {
        args.extend(["-s", path]);
    }
    sluice_s3(tmp, &args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn checkpoints_and_savepoints_on_s3_restore_exactly_once_in_local_mode() {
    let dir = tempfile::tempdir().unwrap();
    let moto = Moto::start(dir.path());
    moto.create_bucket("sluice");
    let stores = state_stores(S3Config {
        endpoint: Some(moto.endpoint()),
        access_key: Some(ACCESS_KEY.into()),
        secret_key: Some(SECRET_KEY.into()),
        region: None,
        path_style_access: Some(true),
    });

    let expected_dir = dir.path().join("expected");
    let expected_script = dir.path().join("expected.sql");
    std::fs::write(&expected_script, windowed_bids_script(&expected_dir, false)).unwrap();
    let output = sluice(&["sql", "-f", expected_script.to_str().unwrap()]);
    assert!(output.status.success(), "{}", stderr(&output));
    let expected = committed_rows(&expected_dir);
    assert!(expected.len() > 100, "{} windows", expected.len());

    let out = dir.path().join("out");
    let script = dir.path().join("job.sql");
    std::fs::write(&script, s3_script(&out, &moto.endpoint())).unwrap();

    // 1. Killed once two checkpoints completed in the bucket.
    let tmp = dir.path().join("tmp1");
    std::fs::create_dir_all(&tmp).unwrap();
    let mut first = start(&tmp, &script, None);
    let first_id = running_job_id(&tmp, &mut first);
    let root = StatePath::parse("s3://sluice/checkpoints").unwrap();
    let storage = CheckpointStorage::open(&stores, &root, &JobId(first_id.clone()), 2).unwrap();
    let started = Instant::now();
    let latest = loop {
        let completed = storage.completed_ids().unwrap();
        if completed.len() >= 2 {
            break *completed.last().unwrap();
        }
        assert!(
            first.try_wait().unwrap().is_none(),
            "the job ended before checkpointing"
        );
        assert!(started.elapsed() < DEADLINE, "no checkpoints in the bucket");
        std::thread::sleep(Duration::from_millis(20));
    };
    first.kill().unwrap();
    first.wait().unwrap();
    let restored = storage.load(latest).unwrap();
    assert!(
        restored
            .metadata
            .operators
            .iter()
            .flat_map(|o| &o.files)
            .any(|f| f.shared),
        "incremental checkpoints reference shared slices"
    );
    let checkpoint = storage.checkpoint_dir(latest).to_string();
    assert!(
        checkpoint.starts_with("s3://sluice/checkpoints/"),
        "{checkpoint}"
    );

    // 2. Resumed from the newest completed checkpoint in the bucket (the killed job's newest
    //    may be newer: it completed more while the test looked), then stopped with a
    //    savepoint into the bucket.
    let newest = storage.completed_ids().unwrap();
    let checkpoint = storage.checkpoint_dir(*newest.last().unwrap()).to_string();
    let tmp = dir.path().join("tmp2");
    std::fs::create_dir_all(&tmp).unwrap();
    let mut second = start(&tmp, &script, Some(&checkpoint));
    let second_id = running_job_id(&tmp, &mut second);
    std::thread::sleep(Duration::from_millis(500));
    let stop = sluice_in(
        &tmp,
        &["savepoint", &second_id, "s3://sluice/savepoints", "--stop"],
    )
    .output()
    .unwrap();
    assert!(stop.status.success(), "{}", stderr(&stop));
    let stdout = String::from_utf8_lossy(&stop.stdout).into_owned();
    let savepoint = stdout
        .lines()
        .find_map(|line| line.strip_prefix("Savepoint completed. Path: "))
        .unwrap_or_else(|| panic!("no savepoint path in '{stdout}'"))
        .to_string();
    assert!(
        savepoint.starts_with(&format!(
            "s3://sluice/savepoints/savepoint-{}-",
            &second_id[..6]
        )),
        "{savepoint}"
    );
    let second = second.wait_with_output().unwrap();
    assert!(second.status.success(), "stopped: {}", stderr(&second));
    assert!(
        stderr(&second).contains(&format!("stopped with savepoint {savepoint}")),
        "{}",
        stderr(&second)
    );
    let partial = committed_rows(&out);
    assert!(partial.len() < expected.len(), "stopped mid-way");

    // 3. Savepoints are self-contained: without the checkpoints, the job resumes from the
    //    savepoint in the bucket and finishes.
    storage
        .store()
        .delete_dir(&StatePath::parse("s3://sluice/checkpoints").unwrap())
        .unwrap();
    let tmp = dir.path().join("tmp3");
    std::fs::create_dir_all(&tmp).unwrap();
    let last = sluice_s3(
        &tmp,
        &["sql", "-f", script.to_str().unwrap(), "-s", &savepoint],
    )
    .output()
    .unwrap();
    assert!(last.status.success(), "{}", stderr(&last));
    let actual = committed_rows(&out);
    assert_eq!(actual.len(), expected.len(), "rows lost or duplicated");
    assert!(
        actual == expected,
        "the rows differ from a failure-free run"
    );

    // A restore path with nothing behind it, and a store that cannot be reached, are errors
    // naming the URL (no panic, non-zero exit).
    let missing = sluice_s3(
        &tmp,
        &[
            "sql",
            "-f",
            script.to_str().unwrap(),
            "-s",
            "s3://sluice/none/chk-1",
        ],
    )
    .output()
    .unwrap();
    assert_fails_with(&missing, &["s3://sluice/none/chk-1"]);
    drop(moto);
    let unreachable = sluice_s3(
        &tmp,
        &["sql", "-f", script.to_str().unwrap(), "-s", &savepoint],
    )
    .output()
    .unwrap();
    assert_fails_with(&unreachable, &["checkpoint storage: ", &savepoint]);
}
