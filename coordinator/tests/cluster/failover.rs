//! The distributed cluster's end-to-end checks on a Nexmark hopping-window aggregation at
//! parallelism 4, on one JobManager and two TaskManagers with two slots each (real processes
//! on loopback, submitted with `sluice submit`):
//! - the output equals the local mode's (`sluice sql -f`);
//! - `kill -9` of one TaskManager mid-job, with a replacement started, restarts the job from
//!   its latest completed checkpoint and ends in the same output, exactly once; the REST API
//!   shows the failover in the task states. The same with the checkpoints in an S3 bucket
//!   (a real S3-compatible server, moto), the JobManager and every TaskManager given the S3
//!   settings with `-D`.

use super::*;

/// Bids in every run: `EVENTS` Nexmark events (92 % of them bids), spaced `RATE` per second of
/// event time.
const EVENTS: u64 = 400_000;
const RATE: u64 = 40_000;

/// The hopping-window job: bids per auction in 2 s windows sliding by 500 ms, with the highest
/// price, into CSV files under `out`. `paced`: the source emits in wall time at `RATE` (so a
/// run lasts `EVENTS / RATE` seconds and can be interrupted); the event times, and so the
/// result, are the same either way. `checkpoint_dir`: checkpoints every 300 ms there (a
/// directory or an `s3://` URL), with a fixed-delay restart strategy.
pub(super) fn hop_script(
    path: &Path,
    out: &Path,
    paced: bool,
    checkpoint_dir: Option<&str>,
) -> std::path::PathBuf {
    let mut script = String::from("SET 'parallelism.default' = '4';\n");
    if let Some(dir) = checkpoint_dir {
        script.push_str(&format!(
            "SET 'execution.checkpointing.interval' = '300ms';
SET 'execution.checkpointing.dir' = '{dir}';
SET 'restart-strategy.type' = 'fixed-delay';
SET 'restart-strategy.fixed-delay.attempts' = '3';
SET 'restart-strategy.fixed-delay.delay' = '200ms';
"
        ));
    }
    script.push_str(&format!(
        "CREATE TABLE bid (
    auction  BIGINT,
    bidder  BIGINT,
    price  BIGINT,
    channel  VARCHAR,
    url  VARCHAR,
    dateTime  TIMESTAMP(3),
    extra  VARCHAR,
    WATERMARK FOR dateTime AS dateTime - INTERVAL '4' SECOND
) WITH ('connector' = 'nexmark', 'table' = 'bid', 'events' = '{EVENTS}', 'rate' = '{RATE}',
        'rate.limited' = '{paced}');
CREATE TABLE hot_auctions (
    auction  BIGINT,
    window_start  TIMESTAMP(3),
    window_end  TIMESTAMP(3),
    bids  BIGINT,
    max_price  BIGINT
) WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'csv');
INSERT INTO hot_auctions
SELECT auction, window_start, window_end, COUNT(*), MAX(price)
FROM TABLE(HOP(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '500' MILLISECOND, INTERVAL '2' SECOND))
GROUP BY auction, window_start, window_end;
",
        out.display()
    ));
    std::fs::write(path, script).unwrap();
    path.to_path_buf()
}

/// The job's rows as local mode computes them (the reference), sorted.
pub(super) fn local_rows(dir: &Path) -> Vec<String> {
    let out = dir.join("local-out");
    let script = hop_script(&dir.join("local.sql"), &out, false, None);
    let run = sluice(&["sql", "-f", script.to_str().unwrap()]);
    assert!(
        run.status.success(),
        "local run failed: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    let rows = output_rows(&out);
    assert!(rows.len() > 1000, "the reference has rows: {}", rows.len());
    rows
}

/// Waits until job `id` has ended, which must be FINISHED.
fn wait_finished(rest: &str, id: &str, logs: &[&Process]) {
    wait_for("the job to finish", logs, || {
        match job_state(rest, id).as_str() {
            "FINISHED" => Some(()),
            "FAILED" | "CANCELED" => panic!(
                "job ended as {}: {}",
                job_state(rest, id),
                get(rest, &format!("/jobs/{id}"))
            ),
            _ => None,
        }
    });
}

#[test]
fn a_hopping_window_job_at_parallelism_4_on_two_task_managers_equals_local_mode() {
    let dir = tempfile::tempdir().unwrap();
    let (jm, rpc, rest) = jobmanager(dir.path(), &[]);
    let (tm1, tm1_address, _) = taskmanager(dir.path(), "tm1", &rpc, 2);
    let (tm2, tm2_address, _) = taskmanager(dir.path(), "tm2", &rpc, 2);
    wait_for("two TaskManagers", &[&jm], || {
        (get(&rest, "/overview")["slots-total"] == 4).then_some(())
    });
    let out = dir.path().join("cluster-out");
    let script = hop_script(&dir.path().join("job.sql"), &out, false, None);
    let id = submit(&rest, &script);
    wait_finished(&rest, &id, &[&jm, &tm1, &tm2]);

    let expected = local_rows(dir.path());
    let rows = output_rows(&out);
    assert_eq!(rows.len(), expected.len());
    assert!(
        rows == expected,
        "the cluster's rows differ from local mode's"
    );

    // Every vertex ran two subtasks on each TaskManager.
    let job = get(&rest, &format!("/jobs/{id}"));
    let mut both = vec![
        tm1_address.clone(),
        tm1_address,
        tm2_address.clone(),
        tm2_address,
    ];
    both.sort();
    for hosts in subtask_hosts(&job) {
        assert_eq!(hosts, both, "{job}");
    }
}

#[test]
fn a_killed_task_manager_fails_over_to_a_replacement_with_exactly_once_output() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoints = dir.path().join("checkpoints");
    kill_and_fail_over(dir.path(), &checkpoints.display().to_string(), &[]);
    assert!(checkpoints.is_dir());
}

#[test]
fn a_killed_task_manager_fails_over_from_checkpoints_in_an_s3_bucket() {
    let dir = tempfile::tempdir().unwrap();
    let moto = moto::Moto::start(dir.path());
    moto.create_bucket("sluice");
    let options: Vec<String> = moto
        .options()
        .into_iter()
        .flat_map(|option| ["-D".to_string(), option])
        .collect();
    let options: Vec<&str> = options.iter().map(String::as_str).collect();
    let (id, job) = kill_and_fail_over(dir.path(), "s3://sluice/checkpoints", &options);
    let restored = job["restored-checkpoint"]["external_path"]
        .as_str()
        .unwrap();
    assert!(
        restored.starts_with(&format!("s3://sluice/checkpoints/{id}/chk-")),
        "{job}"
    );
    // The retained checkpoint is in the bucket, complete and intact.
    let stores =
        sluice_coordinator::checkpoint::s3::state_stores(sluice_engine::checkpoint::S3Config {
            endpoint: Some(moto.endpoint()),
            access_key: Some(moto::ACCESS_KEY.into()),
            secret_key: Some(moto::SECRET_KEY.into()),
            region: None,
            path_style_access: Some(true),
        });
    let storage = sluice_engine::checkpoint::CheckpointStorage::open(
        &stores,
        &sluice_engine::checkpoint::StatePath::parse("s3://sluice/checkpoints").unwrap(),
        &sluice_engine::ids::JobId(id),
        1,
    )
    .unwrap();
    let latest = storage
        .load_latest()
        .unwrap()
        .expect("a retained checkpoint");
    assert!(!latest.metadata.operators.is_empty());
}

/// Runs the paced hopping-window job checkpointing into `checkpoints` on a JobManager and
/// two TaskManagers (all given `options`), kills one TaskManager with SIGKILL once a checkpoint
/// completed, starts a replacement, and checks the job restores from the checkpoint with the
/// rows of a failure-free run. Returns the job id and its final REST view.
fn kill_and_fail_over(dir: &Path, checkpoints: &str, options: &[&str]) -> (String, Value) {
    // Heartbeats time out long after the test's deadline: the loss is noticed through the data
    // exchange and the failed cancel call, as it would be in production before the timeout.
    let mut jm_options = vec!["-D", "heartbeat.timeout=300s"];
    jm_options.extend_from_slice(options);
    let (jm, rpc, rest) = jobmanager(dir, &jm_options);
    let (tm1, tm1_address, _) = taskmanager_with(dir, "tm1", &rpc, 2, options);
    let (mut tm2, tm2_address, _) = taskmanager_with(dir, "tm2", &rpc, 2, options);
    wait_for("two TaskManagers", &[&jm], || {
        (get(&rest, "/overview")["slots-total"] == 4).then_some(())
    });
    let out = dir.join("cluster-out");
    let script = hop_script(&dir.join("job.sql"), &out, true, Some(checkpoints));
    let id = submit(&rest, &script);

    // Mid-job: running, with a checkpoint completed (it may still be deploying at first).
    wait_for("a completed checkpoint", &[&jm, &tm1, &tm2], || {
        let state = job_state(&rest, &id);
        if state == "CREATED" {
            return None;
        }
        assert_eq!(
            state, "RUNNING",
            "the job must still run when tm2 is killed"
        );
        let stats = get(&rest, &format!("/jobs/{id}/checkpoints"));
        (stats["counts"]["completed"].as_u64() >= Some(1)).then_some(())
    });
    let killed_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    tm2.child.kill().unwrap();
    tm2.child.wait().unwrap();
    let (tm3, tm3_address, _) = taskmanager_with(dir, "tm3", &rpc, 2, options);
    wait_finished(&rest, &id, &[&jm, &tm1, &tm3]);

    // Exactly once: the same rows as a failure-free run, none lost, none twice.
    let expected = local_rows(dir);
    let rows = output_rows(&out);
    assert_eq!(rows.len(), expected.len(), "rows lost or duplicated");
    assert!(rows == expected, "the rows differ from a failure-free run");

    // The REST API shows the failover: a restart, the attempt that ran on tm2 FAILED or
    // CANCELED, and attempt 1 FINISHED on tm1 and tm3, resumed from a checkpoint.
    let job = get(&rest, &format!("/jobs/{id}"));
    let restarts = job["restarts"].as_array().unwrap();
    assert!(!restarts.is_empty(), "{job}");
    assert!(job["timestamps"]["RESTARTING"].is_u64(), "{job}");
    assert!(
        job["restored-checkpoint"]["id"].as_u64() >= Some(1),
        "{job}"
    );
    let mut on_tm2 = 0;
    for vertex in job["vertices"].as_array().unwrap() {
        for subtask in vertex["subtasks"].as_array().unwrap() {
            assert_eq!(subtask["status"], "FINISHED", "{subtask}");
            assert!(subtask["attempt"].as_u64() >= Some(1), "{subtask}");
            let host = subtask["host"].as_str().unwrap();
            assert!(host == tm1_address || host == tm3_address, "{subtask}");
            let first = &subtask["prior-attempts"][0];
            assert_eq!(first["attempt"], 0, "{subtask}");
            assert!(
                first["status"] == "FAILED" || first["status"] == "CANCELED",
                "{subtask}"
            );
            assert!(first["timestamps"]["RUNNING"].is_u64(), "{subtask}");
            if first["host"] == tm2_address.as_str() {
                on_tm2 += 1;
                assert_eq!(first["status"], "FAILED", "{subtask}");
            }
        }
    }
    assert!(on_tm2 > 0, "tm2 ran subtasks of the first attempt: {job}");
    // For the record (not a timing assertion): kill → every subtask of the new attempt RUNNING.
    let running_again = job["vertices"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|v| v["subtasks"].as_array().unwrap())
        .filter_map(|s| s["timestamps"]["RUNNING"].as_u64())
        .max()
        .unwrap();
    eprintln!(
        "failover: kill -9 to the new attempt running in {} ms",
        running_again.saturating_sub(killed_ms)
    );
    assert_eq!(get(&rest, "/overview")["slots-available"], 4);
    (id, job)
}
