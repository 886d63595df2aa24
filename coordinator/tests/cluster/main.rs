//! The cluster with real processes on loopback: a `sluice jobmanager` and `sluice taskmanager`s
//! on OS-chosen ports (each prints its bound address, which the test reads), driven through
//! the REST API and the CLI (`sluice submit`, `sluice list`, `sluice cancel`).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use sluice_coordinator::rest_client::{RestResponse, request};

mod backpressure;
mod cli;
mod dashboard;
mod failover;
mod flight;
mod ha;
mod metrics;
#[allow(
    dead_code,
    reason = "the harness is shared by the coordinator's tests; each uses part of it"
)]
#[path = "../support/moto.rs"]
mod moto;
#[allow(
    dead_code,
    reason = "the harness is shared by the coordinator's tests; each uses part of it"
)]
#[path = "../support/sink_tables.rs"]
mod sink_tables;
mod user_code;

/// How long any awaited condition may take.
const DEADLINE: Duration = Duration::from_secs(60);

/// A child process killed when dropped, with its stderr in a file.
struct Process {
    child: Child,
    stderr: PathBuf,
}

impl Process {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `sluice ARGS` and returns it with the addresses it printed for each `prefixes`
/// entry ("rpc", "rest"), in order.
fn start(dir: &Path, name: &str, args: &[&str], prefixes: &[&str]) -> (Process, Vec<String>) {
    start_program(
        Path::new(env!("CARGO_BIN_EXE_sluice")),
        dir,
        name,
        args,
        prefixes,
    )
}

/// [`start`] for another program than `sluice` (a user binary built with the coordinator's
/// CLI, which prints the same lines).
fn start_program(
    program: &Path,
    dir: &Path,
    name: &str,
    args: &[&str],
    prefixes: &[&str],
) -> (Process, Vec<String>) {
    let stderr = dir.join(format!("{name}.log"));
    let mut child = Command::new(program)
        .args(args)
        .env("SLUICE_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .expect("start sluice");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let mut addresses = Vec::new();
    for prefix in prefixes {
        let line = lines
            .next()
            .unwrap_or_else(|| panic!("{name} ended before printing its {prefix} address"))
            .unwrap();
        let address = line
            .strip_prefix(&format!("{prefix} listening on "))
            .unwrap_or_else(|| panic!("{name}: unexpected line '{line}'"));
        addresses.push(address.to_string());
    }
    (Process { child, stderr }, addresses)
}

/// A JobManager with fast heartbeats: returns it, its RPC and its REST address.
fn jobmanager(dir: &Path, extra: &[&str]) -> (Process, String, String) {
    let mut args = vec![
        "jobmanager",
        "--rpc-port",
        "0",
        "--rest-port",
        "0",
        "-D",
        "heartbeat.interval=100ms",
        "-D",
        "heartbeat.timeout=2s",
    ];
    args.extend_from_slice(extra);
    let (process, addresses) = start(dir, "jobmanager", &args, &["rpc", "rest"]);
    (process, addresses[0].clone(), addresses[1].clone())
}

/// A TaskManager: returns it, its RPC and its data (Flight) address.
fn taskmanager(
    dir: &Path,
    name: &str,
    jobmanager_rpc: &str,
    slots: u32,
) -> (Process, String, String) {
    taskmanager_with(dir, name, jobmanager_rpc, slots, &[])
}

fn taskmanager_with(
    dir: &Path,
    name: &str,
    jobmanager_rpc: &str,
    slots: u32,
    extra: &[&str],
) -> (Process, String, String) {
    let slots = slots.to_string();
    let mut args = vec![
        "taskmanager",
        "--jobmanager",
        jobmanager_rpc,
        "--slots",
        &slots,
        "--rpc-port",
        "0",
        "--data-port",
        "0",
    ];
    args.extend_from_slice(extra);
    let (process, addresses) = start(dir, name, &args, &["rpc", "data"]);
    (process, addresses[0].clone(), addresses[1].clone())
}

fn get(rest: &str, path: &str) -> Value {
    let response = request(rest, "GET", path, None).unwrap();
    assert_eq!(response.status, 200, "GET {path}: {}", response.body);
    response.json().unwrap()
}

/// Polls `check` until it returns `Some`, failing with `what` and the logs at the deadline.
fn wait_for<T>(what: &str, logs: &[&Process], mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        if start.elapsed() > DEADLINE {
            let logs: Vec<String> = logs.iter().map(|p| p.log()).collect();
            panic!("timed out waiting for {what}\n{}", logs.join("\n----\n"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn sluice(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run sluice")
}

#[test]
fn taskmanagers_register_and_a_killed_one_is_removed_after_the_heartbeat_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let (jm, rpc, rest) = jobmanager(dir.path(), &[]);
    let (mut tm1, tm1_address, _) = taskmanager(dir.path(), "tm1", &rpc, 2);
    let (mut tm2, tm2_address, _) = taskmanager(dir.path(), "tm2", &rpc, 1);

    let overview = wait_for("two TaskManagers", &[&jm], || {
        let overview = get(&rest, "/overview");
        (overview["taskmanagers"] == 2).then_some(overview)
    });
    assert_eq!(overview["slots-total"], 3);
    assert_eq!(overview["slots-available"], 3);
    assert_eq!(overview["jobs-running"], 0);
    assert_eq!(overview["sluice-version"], env!("CARGO_PKG_VERSION"));
    let list = get(&rest, "/taskmanagers");
    let mut paths: Vec<String> = list["taskmanagers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|tm| format!("{} {}", tm["path"].as_str().unwrap(), tm["slotsNumber"]))
        .collect();
    paths.sort();
    let mut expected = vec![format!("{tm1_address} 2"), format!("{tm2_address} 1")];
    expected.sort();
    assert_eq!(paths, expected);

    // Heartbeats keep both registered well past the timeout.
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(get(&rest, "/overview")["taskmanagers"], 2, "{}", jm.log());

    // A job without exchanges (source and sink chained) spans both TaskManagers, one slot
    // per parallel slice.
    let script = dir.path().join("endless.sql");
    std::fs::write(
        &script,
        "SET 'parallelism.default' = '3';
CREATE TABLE t (x BIGINT) WITH ('connector' = 'datagen', 'rows-per-second' = '1000');
CREATE TABLE s (x BIGINT) WITH ('connector' = 'blackhole');
INSERT INTO s SELECT x FROM t;
",
    )
    .unwrap();
    let id = submit(&rest, &script);
    let job = wait_for("every subtask to run", &[&jm], || {
        let job = get(&rest, &format!("/jobs/{id}"));
        (job["vertices"][0]["tasks"]["RUNNING"] == 3).then_some(job)
    });
    let mut hosts: Vec<&str> = job["vertices"][0]["subtasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["host"].as_str().unwrap())
        .collect();
    hosts.sort();
    let mut expected = vec![
        tm1_address.as_str(),
        tm1_address.as_str(),
        tm2_address.as_str(),
    ];
    expected.sort();
    assert_eq!(hosts, expected);
    assert_eq!(get(&rest, "/overview")["slots-available"], 0);

    tm2.child.kill().unwrap(); // SIGKILL: no goodbye, only silence.
    tm2.child.wait().unwrap();
    let overview = wait_for("the killed TaskManager to be removed", &[&jm], || {
        let overview = get(&rest, "/overview");
        (overview["taskmanagers"] == 1).then_some(overview)
    });
    assert_eq!(overview["slots-total"], 2);
    let log = jm.log();
    assert!(
        log.contains("TaskManager lost") && log.contains(&tm2_address),
        "the loss is logged with the TaskManager's address:\n{log}"
    );
    let list = get(&rest, "/taskmanagers");
    assert_eq!(list["taskmanagers"][0]["path"], tm1_address.as_str());

    // The job fails: the lost subtask FAILED, the others cancelled, the slots freed.
    wait_for("the job to fail", &[&jm], || {
        (job_state(&rest, &id) == "FAILED").then_some(())
    });
    let job = get(&rest, &format!("/jobs/{id}"));
    assert!(
        job["failure-cause"].as_str().unwrap().contains("lost"),
        "{job}"
    );
    for subtask in job["vertices"][0]["subtasks"].as_array().unwrap() {
        let expected = if subtask["host"] == tm2_address.as_str() {
            "FAILED"
        } else {
            "CANCELED"
        };
        assert_eq!(subtask["status"], expected, "{subtask}");
    }
    assert_eq!(get(&rest, "/overview")["slots-available"], 2);
    assert_eq!(get(&rest, "/overview")["jobs-failed"], 1);

    // SIGTERM: the TaskManager leaves at once and exits cleanly.
    let term = Command::new("kill")
        .args(["-TERM", &tm1.child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let status = wait_for("the TaskManager to exit", &[&jm], || {
        tm1.child.try_wait().unwrap()
    });
    assert!(status.success(), "exit status {status}: {}", tm1.log());
    assert_eq!(get(&rest, "/overview")["taskmanagers"], 0, "{}", jm.log());
    assert!(jm.log().contains("TaskManager disconnected"));
}

fn write_input(dir: &Path) -> PathBuf {
    let input = dir.join("in.csv");
    let mut text = String::new();
    for id in 0..1000 {
        text.push_str(&format!("{id},{}\n", ["a", "b", "c"][id % 3]));
    }
    std::fs::write(&input, text).unwrap();
    input
}

/// The rows of every visible file under `dir`, sorted.
fn output_rows(dir: &Path) -> Vec<String> {
    let mut rows = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
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

fn submit(rest: &str, script: &Path) -> String {
    let output = sluice(&[
        "submit",
        script.to_str().unwrap(),
        "--jobmanager",
        &format!("http://{rest}"),
    ]);
    assert!(
        output.status.success(),
        "submit failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let id = String::from_utf8(output.stdout).unwrap().trim().to_string();
    assert_eq!(id.len(), 32, "a job id is printed: '{id}'");
    id
}

fn job_state(rest: &str, id: &str) -> String {
    get(rest, &format!("/jobs/{id}"))["state"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn a_bounded_sql_job_runs_to_finished_with_every_task_transition_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let input = write_input(dir.path());
    let out = dir.path().join("out");
    let (jm, rpc, rest) = jobmanager(dir.path(), &[]);
    let (tm, tm_address, _) = taskmanager(dir.path(), "tm", &rpc, 2);
    wait_for("the TaskManager", &[&jm], || {
        (get(&rest, "/overview")["slots-total"] == 2).then_some(())
    });

    // A keyed aggregation at parallelism 2: a hash exchange between the two slots' slices.
    let script = dir.path().join("job.sql");
    std::fs::write(
        &script,
        format!(
            "SET 'execution.runtime-mode' = 'batch';
SET 'parallelism.default' = '2';
CREATE TABLE src (id BIGINT, name STRING)
  WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'csv');
CREATE TABLE sink (name STRING, n BIGINT, total BIGINT)
  WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'csv');
INSERT INTO sink SELECT name, COUNT(*), SUM(id) FROM src WHERE id >= 10 GROUP BY name;
",
            input.display(),
            out.display()
        ),
    )
    .unwrap();
    let id = submit(&rest, &script);
    wait_for("the job to finish", &[&jm, &tm], || {
        match job_state(&rest, &id).as_str() {
            "FINISHED" => Some(()),
            "FAILED" | "CANCELED" => panic!(
                "job ended as {}: {}",
                job_state(&rest, &id),
                get(&rest, &format!("/jobs/{id}"))
            ),
            _ => None,
        }
    });

    let mut expected = Vec::new();
    for (index, name) in ["a", "b", "c"].iter().enumerate() {
        let ids: Vec<u64> = (10..1000).filter(|i| i % 3 == index as u64).collect();
        expected.push(format!("{name},{},{}", ids.len(), ids.iter().sum::<u64>()));
    }
    assert_eq!(output_rows(&out), expected);

    let job = get(&rest, &format!("/jobs/{id}"));
    assert!(job["timestamps"]["RUNNING"].is_u64());
    assert!(job["timestamps"]["FINISHED"].as_u64() >= job["timestamps"]["RUNNING"].as_u64());
    let vertices = job["vertices"].as_array().unwrap();
    assert!(vertices.len() >= 2, "source and aggregation chains: {job}");
    let mut records_written = 0;
    for vertex in vertices {
        assert_eq!(vertex["status"], "FINISHED", "{vertex}");
        let subtasks = vertex["subtasks"].as_array().unwrap();
        assert_eq!(
            subtasks.len() as u64,
            vertex["parallelism"].as_u64().unwrap()
        );
        for subtask in subtasks {
            assert_eq!(subtask["status"], "FINISHED");
            assert_eq!(subtask["host"], tm_address.as_str());
            let times = &subtask["timestamps"];
            let order = [
                "CREATED",
                "SCHEDULED",
                "DEPLOYING",
                "INITIALIZING",
                "RUNNING",
                "FINISHED",
            ];
            let mut last = 0;
            for state in order {
                let at = times[state]
                    .as_u64()
                    .unwrap_or_else(|| panic!("no {state} time in {subtask}"));
                assert!(at >= last, "{state} before the previous state: {subtask}");
                last = at;
            }
            if let Some(sink) = subtask["metrics"].get("sink") {
                records_written += sink["read-records"].as_u64().unwrap();
            }
        }
    }
    assert_eq!(
        records_written, 3,
        "the sink's subtasks read the three groups: {job}"
    );

    let overview = get(&rest, "/overview");
    assert_eq!(overview["jobs-finished"], 1);
    assert_eq!(overview["slots-available"], 2, "slots are released");

    let listed = sluice(&["list", "--jobmanager", &format!("http://{rest}")]);
    let listed = String::from_utf8(listed.stdout).unwrap();
    assert!(
        listed.contains(&format!("{id} : FINISHED")),
        "sluice list shows the job: {listed}"
    );

    // A JobGraph as JSON (here Nexmark q1 over 20 000 events, parallelism 2).
    let graph = sluice(&[
        "nexmark",
        "--query",
        "q1",
        "--events",
        "20000",
        "--parallelism",
        "2",
        "--print-graph",
    ]);
    assert!(graph.status.success());
    let graph_file = dir.path().join("q1.json");
    std::fs::write(&graph_file, &graph.stdout).unwrap();
    let id = submit(&rest, &graph_file);
    wait_for("the JSON job to finish", &[&jm, &tm], || {
        (job_state(&rest, &id) == "FINISHED").then_some(())
    });
    let job = get(&rest, &format!("/jobs/{id}"));
    let source_records: u64 = job["vertices"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|v| v["subtasks"].as_array().unwrap())
        .filter_map(|s| {
            s["metrics"]
                .as_object()
                .unwrap()
                .iter()
                .find(|(name, _)| name.contains("bid") || name.contains("nexmark"))
                .map(|(_, m)| m["write-records"].as_u64().unwrap())
        })
        .sum();
    assert!(
        source_records > 0,
        "the source's records are counted: {job}"
    );
}

#[test]
fn rest_api_rejects_bad_submissions_and_cancels_a_running_job() {
    let dir = tempfile::tempdir().unwrap();
    let (jm, rpc, rest) = jobmanager(
        dir.path(),
        &[
            "-D",
            "rest.server.max-content-length=4096",
            "-D",
            "slot.request.timeout=1s",
        ],
    );
    let (tm, _, _) = taskmanager(dir.path(), "tm", &rpc, 1);
    wait_for("the TaskManager", &[&jm], || {
        (get(&rest, "/overview")["slots-total"] == 1).then_some(())
    });

    let post = |body: &str| -> RestResponse {
        request(
            &rest,
            "POST",
            "/jobs",
            Some(("text/plain", body.as_bytes())),
        )
        .unwrap()
    };
    let too_big = post(&"-- padding\n".repeat(1000));
    assert_eq!(too_big.status, 413, "{}", too_big.body);
    let bad_sql = post(
        "CREATE TABLE t (x INT) WITH ('connector' = 'datagen');\nINSERT INTO nowhere SELECT x FROM t;",
    );
    assert_eq!(bad_sql.status, 400, "{}", bad_sql.body);
    assert!(
        bad_sql.error_message().contains("line 2"),
        "{}",
        bad_sql.body
    );
    let select = post("CREATE TABLE t (x INT) WITH ('connector' = 'datagen');\nSELECT x FROM t;");
    assert_eq!(select.status, 400);
    assert!(
        select.error_message().contains("INSERT INTO"),
        "{}",
        select.body
    );
    let too_wide = post(
        "SET 'parallelism.default' = '3';\nCREATE TABLE t (x INT) WITH ('connector' = 'datagen');\nCREATE TABLE s (x INT) WITH ('connector' = 'blackhole');\nINSERT INTO s SELECT x FROM t;",
    );
    // As in Flink, the job waits for slots up to slot.request.timeout, then fails.
    assert_eq!(too_wide.status, 202, "{}", too_wide.body);
    let too_wide = too_wide.json().unwrap()["jobid"]
        .as_str()
        .unwrap()
        .to_string();
    wait_for("the too-wide job to fail", &[&jm], || {
        (job_state(&rest, &too_wide) == "FAILED").then_some(())
    });
    let job = get(&rest, &format!("/jobs/{too_wide}"));
    let cause = job["failure-cause"].as_str().unwrap();
    assert!(
        cause.contains("3 slots") && cause.contains("slot.request.timeout"),
        "{job}"
    );
    let unknown = request(&rest, "GET", "/jobs/0123", None).unwrap();
    assert_eq!(unknown.status, 404);

    // A job whose input has a bad row fails, and says where.
    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "1,a\n2,b\nthree,c\n").unwrap();
    let script = dir.path().join("bad.sql");
    std::fs::write(
        &script,
        format!(
            "CREATE TABLE src (id BIGINT, name STRING)
  WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'csv');
CREATE TABLE s (id BIGINT, name STRING) WITH ('connector' = 'blackhole');
INSERT INTO s SELECT id, name FROM src;
",
            bad.display()
        ),
    )
    .unwrap();
    let id = submit(&rest, &script);
    wait_for("the job to fail", &[&jm, &tm], || {
        (job_state(&rest, &id) == "FAILED").then_some(())
    });
    let job = get(&rest, &format!("/jobs/{id}"));
    let cause = job["failure-cause"].as_str().unwrap();
    assert!(cause.contains("bad.csv"), "the cause names the file: {job}");
    let subtask = &job["vertices"][0]["subtasks"][0];
    assert_eq!(subtask["status"], "FAILED");
    assert!(subtask["timestamps"]["FAILED"].is_u64(), "{subtask}");
    assert_eq!(get(&rest, "/overview")["slots-available"], 1);

    // An unbounded job runs until cancelled.
    let script = dir.path().join("endless.sql");
    std::fs::write(
        &script,
        "CREATE TABLE t (x BIGINT) WITH ('connector' = 'datagen', 'rows-per-second' = '1000');
CREATE TABLE s (x BIGINT) WITH ('connector' = 'blackhole');
INSERT INTO s SELECT x FROM t;
",
    )
    .unwrap();
    let id = submit(&rest, &script);
    wait_for("the job's task to run", &[&jm, &tm], || {
        let job = get(&rest, &format!("/jobs/{id}"));
        (job["vertices"][0]["subtasks"][0]["status"] == "RUNNING").then_some(())
    });
    assert_eq!(get(&rest, "/overview")["slots-available"], 0);
    let cancelled = sluice(&["cancel", &id, "--jobmanager", &format!("http://{rest}")]);
    assert!(
        cancelled.status.success(),
        "{}",
        String::from_utf8_lossy(&cancelled.stderr)
    );
    wait_for("the job to be cancelled", &[&jm, &tm], || {
        (job_state(&rest, &id) == "CANCELED").then_some(())
    });
    let job = get(&rest, &format!("/jobs/{id}"));
    let subtask = &job["vertices"][0]["subtasks"][0];
    assert_eq!(subtask["status"], "CANCELED");
    assert!(subtask["timestamps"]["CANCELING"].is_u64(), "{subtask}");
    assert_eq!(get(&rest, "/overview")["slots-available"], 1);
    let again = request(&rest, "PATCH", &format!("/jobs/{id}?mode=cancel"), None).unwrap();
    assert_eq!(again.status, 409);
    let stop = request(&rest, "PATCH", &format!("/jobs/{id}?mode=stop"), None).unwrap();
    assert_eq!(stop.status, 400, "{}", stop.body);
    let checkpoints = get(&rest, &format!("/jobs/{id}/checkpoints"));
    assert_eq!(checkpoints["counts"]["completed"], 0);
    let savepoint = request(
        &rest,
        "POST",
        &format!("/jobs/{id}/savepoints"),
        Some((
            "application/json",
            br#"{"target-directory": "/tmp/savepoints"}"#,
        )),
    )
    .unwrap();
    assert_eq!(savepoint.status, 409, "{}", savepoint.body);
    assert!(
        savepoint.error_message().contains("already ended"),
        "{}",
        savepoint.body
    );
}

/// `chk-<n>` directories under `job_dir` with a `_metadata` file, and the state files the
/// newest one lists.
fn completed_checkpoints(job_dir: &Path) -> (Vec<u64>, Vec<String>) {
    let mut ids: Vec<u64> = std::fs::read_dir(job_dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let id = name.strip_prefix("chk-")?.parse::<u64>().ok()?;
            entry.path().join("_metadata").is_file().then_some(id)
        })
        .collect();
    ids.sort_unstable();
    let files = ids
        .last()
        .map(|id| metadata_files(&job_dir.join(format!("chk-{id}"))))
        .unwrap_or_default();
    (ids, files)
}

/// The state file paths a checkpoint's or savepoint's `_metadata` lists.
fn metadata_files(dir: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(dir.join("_metadata")).unwrap();
    let metadata: Value = serde_json::from_str(&text).unwrap();
    metadata["operators"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|o| o["files"].as_array().unwrap().iter())
        .map(|f| f["path"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_checkpointed_job_completes_checkpoints_and_takes_a_savepoint_over_rest() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoints = dir.path().join("checkpoints");
    let savepoints = dir.path().join("savepoints");
    let out = dir.path().join("out");
    // The directory comes from the jobmanager's -D, the interval from the job's SET.
    let checkpoint_dir = format!("execution.checkpointing.dir={}", checkpoints.display());
    let (jm, rpc, rest) = jobmanager(dir.path(), &["-D", &checkpoint_dir]);
    let (tm, _, _) = taskmanager(dir.path(), "tm", &rpc, 2);
    wait_for("the TaskManager", &[&jm], || {
        (get(&rest, "/overview")["slots-total"] == 2).then_some(())
    });
    let script = dir.path().join("windows.sql");
    std::fs::write(
        &script,
        format!(
            "SET 'execution.checkpointing.interval' = '200ms';
SET 'parallelism.default' = '2';
CREATE TABLE bids (
  auction BIGINT, price BIGINT, seq BIGINT,
  date_time AS TO_TIMESTAMP_LTZ(seq, 3),
  WATERMARK FOR date_time AS date_time - INTERVAL '1' SECOND
) WITH (
  'connector' = 'datagen', 'rows-per-second' = '5000',
  'fields.auction.kind' = 'random', 'fields.auction.min' = '1', 'fields.auction.max' = '50',
  'fields.price.kind' = 'random', 'fields.price.min' = '1', 'fields.price.max' = '100',
  'fields.seq.kind' = 'sequence', 'fields.seq.start' = '1', 'fields.seq.end' = '1000000000'
);
CREATE TABLE totals (
  auction BIGINT, num BIGINT, total BIGINT, window_start TIMESTAMP(3), window_end TIMESTAMP(3)
) WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'csv');
INSERT INTO totals
SELECT auction, COUNT(*) AS num, SUM(price) AS total, window_start, window_end
FROM TABLE(TUMBLE(TABLE bids, DESCRIPTOR(date_time), INTERVAL '1' SECOND))
GROUP BY auction, window_start, window_end;
",
            out.display()
        ),
    )
    .unwrap();
    let id = submit(&rest, &script);

    let stats = wait_for("two completed checkpoints", &[&jm, &tm], || {
        let stats = get(&rest, &format!("/jobs/{id}/checkpoints"));
        (stats["counts"]["completed"].as_u64().unwrap_or(0) >= 2).then_some(stats)
    });
    assert_eq!(job_state(&rest, &id), "RUNNING");
    let latest = &stats["latest"]["completed"];
    let latest_id = latest["id"].as_u64().unwrap();
    assert!(latest_id >= 2, "{stats}");
    assert_eq!(latest["status"], "COMPLETED");
    assert!(latest["end_to_end_duration"].is_u64(), "{stats}");
    assert!(latest["state_size"].as_u64().unwrap() > 0, "{stats}");
    assert_eq!(
        latest["num_acknowledged_subtasks"], latest["num_subtasks"],
        "{stats}"
    );
    let job_dir = checkpoints.join(&id);
    let (completed, files) = completed_checkpoints(&job_dir);
    assert!(
        completed.contains(&latest_id) || completed.iter().any(|c| *c > latest_id),
        "{completed:?}"
    );
    assert!(
        !files.is_empty(),
        "the newest checkpoint lists its state files"
    );
    let newest = job_dir.join(format!("chk-{}", completed.last().unwrap()));
    for file in &files {
        assert!(
            newest.join(file).is_file() || job_dir.join(file).is_file(),
            "{file} exists"
        );
    }
    // Sinks commit on completed checkpoints: windows reach the output directory.
    wait_for("committed output", &[&jm, &tm], || {
        (out.is_dir() && !output_rows(&out).is_empty()).then_some(())
    });

    // A savepoint over REST, as Flink's asynchronous operation.
    let body = serde_json::json!({
        "target-directory": savepoints.display().to_string(),
        "cancel-job": false,
    })
    .to_string();
    let response = request(
        &rest,
        "POST",
        &format!("/jobs/{id}/savepoints"),
        Some(("application/json", body.as_bytes())),
    )
    .unwrap();
    assert_eq!(response.status, 202, "{}", response.body);
    let trigger = response.json().unwrap()["request-id"]
        .as_str()
        .unwrap()
        .to_string();
    let location = wait_for("the savepoint", &[&jm, &tm], || {
        let status = get(&rest, &format!("/jobs/{id}/savepoints/{trigger}"));
        if status["status"]["id"] != "COMPLETED" {
            return None;
        }
        let location = status["operation"]["location"].as_str();
        assert!(location.is_some(), "the savepoint succeeded: {status}");
        location.map(PathBuf::from)
    });
    assert!(location.starts_with(&savepoints), "{}", location.display());
    assert!(!metadata_files(&location).is_empty());
    let stats = get(&rest, &format!("/jobs/{id}/checkpoints"));
    assert_eq!(
        stats["latest"]["savepoint"]["external_path"],
        location.display().to_string(),
        "{stats}"
    );
    assert_eq!(job_state(&rest, &id), "RUNNING", "the job goes on");

    // Bad savepoint requests say what is wrong.
    let relative = request(
        &rest,
        "POST",
        &format!("/jobs/{id}/savepoints"),
        Some((
            "application/json",
            br#"{"target-directory": "relative/dir"}"#,
        )),
    )
    .unwrap();
    assert_eq!(relative.status, 400, "{}", relative.body);
    let unknown = request(&rest, "GET", &format!("/jobs/{id}/savepoints/nope"), None).unwrap();
    assert_eq!(unknown.status, 404);

    // A savepoint with cancel-job: the job stops once it is taken.
    let body = serde_json::json!({
        "target-directory": savepoints.display().to_string(),
        "cancel-job": true,
    })
    .to_string();
    let response = request(
        &rest,
        "POST",
        &format!("/jobs/{id}/savepoints"),
        Some(("application/json", body.as_bytes())),
    )
    .unwrap();
    assert_eq!(response.status, 202, "{}", response.body);
    let trigger = response.json().unwrap()["request-id"]
        .as_str()
        .unwrap()
        .to_string();
    wait_for("the job to be cancelled", &[&jm, &tm], || {
        (job_state(&rest, &id) == "CANCELED").then_some(())
    });
    let status = get(&rest, &format!("/jobs/{id}/savepoints/{trigger}"));
    let last = PathBuf::from(status["operation"]["location"].as_str().unwrap());
    assert_ne!(last, location);
    assert!(!metadata_files(&last).is_empty());
}

/// The TaskManager address (`path`) of every subtask of every vertex of a job, per vertex.
fn subtask_hosts(job: &Value) -> Vec<Vec<String>> {
    job["vertices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|vertex| {
            let mut hosts: Vec<String> = vertex["subtasks"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["host"].as_str().unwrap().to_string())
                .collect();
            hosts.sort();
            hosts
        })
        .collect()
}

#[test]
fn a_job_exchanges_data_across_two_task_managers_and_fails_when_one_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let input = write_input(dir.path());
    let out = dir.path().join("out");
    // Heartbeats time out long after the test's deadline: the killed TaskManager's loss must be
    // noticed through the data exchange.
    let (jm, rpc, rest) = jobmanager(dir.path(), &["-D", "heartbeat.timeout=300s"]);
    // Compressed batches and few credits per channel: backpressure across the network.
    let network = [
        "-D",
        "taskmanager.network.compression.codec=LZ4",
        "-D",
        "taskmanager.network.memory.buffers-per-channel=2",
    ];
    let (tm1, tm1_address, _) = taskmanager_with(dir.path(), "tm1", &rpc, 1, &network);
    let (mut tm2, tm2_address, tm2_data) = taskmanager_with(dir.path(), "tm2", &rpc, 1, &network);
    wait_for("two TaskManagers", &[&jm], || {
        (get(&rest, "/overview")["slots-total"] == 2).then_some(())
    });
    let mut both = vec![tm1_address.clone(), tm2_address.clone()];
    both.sort();

    // A keyed aggregation at parallelism 2 on two one-slot TaskManagers: each runs one slice,
    // and the hash exchange between the source and the aggregation crosses them.
    let script = dir.path().join("job.sql");
    std::fs::write(
        &script,
        format!(
            "SET 'execution.runtime-mode' = 'batch';
SET 'parallelism.default' = '2';
CREATE TABLE src (id BIGINT, name STRING)
  WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'csv');
CREATE TABLE sink (name STRING, n BIGINT, total BIGINT)
  WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'csv');
INSERT INTO sink SELECT name, COUNT(*), SUM(id) FROM src WHERE id >= 10 GROUP BY name;
",
            input.display(),
            out.display()
        ),
    )
    .unwrap();
    let id = submit(&rest, &script);
    wait_for(
        "the job to finish",
        &[&jm, &tm1, &tm2],
        || match job_state(&rest, &id).as_str() {
            "FINISHED" => Some(()),
            "FAILED" | "CANCELED" => panic!(
                "job ended as {}: {}\n{}\n----\n{}",
                job_state(&rest, &id),
                get(&rest, &format!("/jobs/{id}")),
                tm1.log(),
                tm2.log()
            ),
            _ => None,
        },
    );
    let mut expected = Vec::new();
    for (index, name) in ["a", "b", "c"].iter().enumerate() {
        let ids: Vec<u64> = (10..1000).filter(|i| i % 3 == index as u64).collect();
        expected.push(format!("{name},{},{}", ids.len(), ids.iter().sum::<u64>()));
    }
    assert_eq!(output_rows(&out), expected);
    let job = get(&rest, &format!("/jobs/{id}"));
    let hosts = subtask_hosts(&job);
    assert!(hosts.len() >= 2, "source and aggregation chains: {job}");
    for vertex in &hosts {
        assert_eq!(
            vertex, &both,
            "one subtask of each vertex per TaskManager: {job}"
        );
    }
    assert_eq!(get(&rest, "/overview")["slots-available"], 2);

    // An unbounded keyed aggregation across both; killing one TaskManager (no goodbye) fails
    // the job through the other's exchange, which names the lost peer, not after a hang.
    let script = dir.path().join("endless.sql");
    std::fs::write(
        &script,
        "SET 'parallelism.default' = '2';
CREATE TABLE t (k BIGINT, v BIGINT) WITH ('connector' = 'datagen', 'rows-per-second' = '2000',
  'fields.k.min' = '0', 'fields.k.max' = '99');
CREATE TABLE s (k BIGINT, n BIGINT) WITH ('connector' = 'blackhole');
INSERT INTO s SELECT k, COUNT(*) FROM t GROUP BY k;
",
    )
    .unwrap();
    let id = submit(&rest, &script);
    wait_for(
        "every subtask to run on both TaskManagers",
        &[&jm, &tm1, &tm2],
        || {
            let job = get(&rest, &format!("/jobs/{id}"));
            let running = job["vertices"]
                .as_array()
                .unwrap()
                .iter()
                .all(|v| v["tasks"]["RUNNING"] == 2);
            (running && subtask_hosts(&job).iter().all(|h| h == &both)).then_some(())
        },
    );
    // Let batches cross the exchange before the kill.
    std::thread::sleep(Duration::from_millis(300));
    tm2.child.kill().unwrap();
    tm2.child.wait().unwrap();
    wait_for("the job to fail", &[&jm, &tm1], || {
        (job_state(&rest, &id) == "FAILED").then_some(())
    });
    let job = get(&rest, &format!("/jobs/{id}"));
    let cause = job["failure-cause"].as_str().unwrap();
    assert!(
        cause.contains(&tm2_data),
        "the failure names the killed TaskManager's data address {tm2_data}: {job}"
    );
    for subtask in job["vertices"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|v| v["subtasks"].as_array().unwrap())
    {
        let status = subtask["status"].as_str().unwrap();
        assert!(
            status == "FAILED" || status == "CANCELED",
            "every subtask ended: {subtask}"
        );
    }
    // Its heartbeats have not timed out yet, but the failed cancel call wrote it off, so no
    // job is scheduled onto it; the survivor's slot is released.
    let overview = get(&rest, "/overview");
    assert_eq!(overview["taskmanagers"], 1, "{overview}");
    assert_eq!(
        overview["slots-available"], 1,
        "slots are released: {overview}"
    );
}
