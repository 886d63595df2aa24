//! The cluster CLI with real processes: `sluice application` (a JobManager dedicated to one
//! job, ending with it) and `sluice savepoint` / `sluice stop` over the REST API.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Instant;

use super::{
    DEADLINE, Process, get, job_state, jobmanager, output_rows, sluice, submit, taskmanager,
    wait_for, write_input,
};

/// A started `sluice application` with stdout and stderr in files, so it may print for as
/// long as it runs (a pipe nobody reads would fail its writes).
struct Application {
    process: Process,
    stdout: PathBuf,
}

impl Application {
    fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    /// The address printed after `{prefix} listening on `.
    fn address(&self, prefix: &str) -> String {
        let needle = format!("{prefix} listening on ");
        wait_for(&format!("the {prefix} address"), &[&self.process], || {
            self.stdout()
                .lines()
                .find_map(|line| line.strip_prefix(&needle).map(str::to_string))
        })
    }

    /// Waits for the process to exit; returns its exit status.
    fn exit(&mut self, logs: &[&Process]) -> std::process::ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.process.child.try_wait().unwrap() {
                return status;
            }
            if start.elapsed() > DEADLINE {
                let mut logs: Vec<String> = logs.iter().map(|p| p.log()).collect();
                logs.push(self.process.log());
                panic!("the application did not exit\n{}", logs.join("\n----\n"));
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

fn application(dir: &Path, script: &Path, extra: &[&str]) -> Application {
    let stdout = dir.join("application.out");
    let stderr = dir.join("application.log");
    let mut args = vec![
        "application",
        script.to_str().unwrap(),
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
    let child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(&args)
        .env("SLUICE_LOG", "info")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout).unwrap())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .expect("start sluice application");
    Application {
        process: Process { child, stderr },
        stdout,
    }
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The directory `sluice savepoint` / `sluice stop` printed.
fn savepoint_path(output: &Output) -> PathBuf {
    assert!(
        output.status.success(),
        "savepoint failed: {}",
        stderr(output)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let path = stdout
        .lines()
        .find_map(|line| line.strip_prefix("Savepoint completed. Path: "))
        .unwrap_or_else(|| panic!("no savepoint path in '{stdout}'"));
    PathBuf::from(path)
}

#[test]
fn application_mode_waits_for_slots_runs_its_bounded_job_and_exits_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let input = write_input(dir.path());
    let out = dir.path().join("out");
    let script = dir.path().join("job.sql");
    std::fs::write(
        &script,
        format!(
            "SET 'execution.runtime-mode' = 'batch';
SET 'parallelism.default' = '2';
CREATE TABLE src (id BIGINT, name STRING)
  WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'csv');
CREATE TABLE sink (name STRING, n BIGINT)
  WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'csv');
INSERT INTO sink SELECT name, COUNT(*) FROM src GROUP BY name;
",
            input.display(),
            out.display()
        ),
    )
    .unwrap();
    let mut app = application(dir.path(), &script, &[]);
    let rpc = app.address("rpc");
    wait_for("the wait for slots to be reported", &[&app.process], || {
        app.process
            .log()
            .contains("Waiting for TaskManagers to offer 2 slot(s) (0 free now)")
            .then_some(())
    });
    let (tm, _, _) = taskmanager(dir.path(), "tm", &rpc, 2);
    let status = app.exit(&[&tm]);
    let stdout = app.stdout();
    assert!(
        status.success(),
        "{status}: {stdout}\n{}",
        app.process.log()
    );
    let id = stdout
        .lines()
        .find_map(|line| line.strip_prefix("Job has been submitted with JobID "))
        .unwrap_or_else(|| panic!("no job id in '{stdout}'"));
    assert_eq!(id.len(), 32, "{id}");
    assert!(
        stdout.contains(&format!("({id}) finished in ")),
        "the final status is printed: {stdout}"
    );
    assert_eq!(output_rows(&out), ["a,334", "b,333", "c,333"]);
}

#[test]
fn application_mode_fails_at_once_on_a_bad_script_and_after_the_slot_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.sql");
    std::fs::write(&bad, "INSERT INTO nowhere SELECT 1;\n").unwrap();
    let output = sluice(&[
        "application",
        bad.to_str().unwrap(),
        "--rpc-port",
        "0",
        "--rest-port",
        "0",
    ]);
    let message = stderr(&output);
    assert!(!output.status.success(), "{message}");
    assert!(message.contains("nowhere"), "the SQL error: {message}");
    assert!(
        !String::from_utf8_lossy(&output.stdout).contains("listening"),
        "nothing started"
    );

    // A good script with no TaskManager to run it.
    let endless = dir.path().join("endless.sql");
    std::fs::write(
        &endless,
        "CREATE TABLE t (x BIGINT) WITH ('connector' = 'datagen');
CREATE TABLE s (x BIGINT) WITH ('connector' = 'blackhole');
INSERT INTO s SELECT x FROM t;
",
    )
    .unwrap();
    let output = sluice(&[
        "application",
        endless.to_str().unwrap(),
        "--rpc-port",
        "0",
        "--rest-port",
        "0",
        "-D",
        "slot.request.timeout=300ms",
    ]);
    let message = stderr(&output);
    assert!(!output.status.success(), "{message}");
    assert!(
        message.contains("needs 1 slot(s) but only 0 were free")
            && message.contains("slot.request.timeout"),
        "{message}"
    );
}

#[test]
fn savepoint_and_stop_over_rest_print_the_path_and_name_what_went_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoints = dir.path().join("checkpoints");
    let savepoints = dir.path().join("savepoints");
    let checkpoint_dir = format!("execution.checkpointing.dir={}", checkpoints.display());
    let (jm, rpc, rest) = jobmanager(dir.path(), &["-D", &checkpoint_dir]);
    let (tm, _, _) = taskmanager(dir.path(), "tm", &rpc, 1);
    wait_for("the TaskManager", &[&jm], || {
        (get(&rest, "/overview")["slots-total"] == 1).then_some(())
    });
    let script = dir.path().join("counts.sql");
    std::fs::write(
        &script,
        "SET 'execution.checkpointing.interval' = '200ms';
CREATE TABLE t (k BIGINT, v BIGINT) WITH (
  'connector' = 'datagen', 'rows-per-second' = '2000',
  'fields.k.kind' = 'random', 'fields.k.min' = '1', 'fields.k.max' = '20'
);
CREATE TABLE s (k BIGINT, n BIGINT) WITH ('connector' = 'blackhole');
INSERT INTO s SELECT k, COUNT(*) FROM t GROUP BY k;
",
    )
    .unwrap();
    let id = submit(&rest, &script);
    wait_for("a completed checkpoint", &[&jm, &tm], || {
        let stats = get(&rest, &format!("/jobs/{id}/checkpoints"));
        (stats["counts"]["completed"].as_u64().unwrap_or(0) >= 1).then_some(())
    });
    let url = format!("http://{rest}");

    let taken = sluice(&[
        "savepoint",
        &id,
        savepoints.to_str().unwrap(),
        "--jobmanager",
        &url,
    ]);
    let path = savepoint_path(&taken);
    assert!(path.starts_with(&savepoints), "{}", path.display());
    assert!(path.join("_metadata").is_file(), "{}", path.display());
    assert_eq!(job_state(&rest, &id), "RUNNING", "the job goes on");

    // Without a target directory: the job's checkpoint directory.
    let default = sluice(&["savepoint", &id, "--jobmanager", &url]);
    let default = savepoint_path(&default);
    assert!(default.starts_with(&checkpoints), "{}", default.display());
    assert!(default.join("_metadata").is_file(), "{}", default.display());

    let stopped = sluice(&[
        "stop",
        &id,
        "--savepointPath",
        savepoints.to_str().unwrap(),
        "--jobmanager",
        &url,
    ]);
    let last = savepoint_path(&stopped);
    assert_ne!(last, path);
    assert!(last.join("_metadata").is_file(), "{}", last.display());
    wait_for("the job to stop", &[&jm, &tm], || {
        (job_state(&rest, &id) == "CANCELED").then_some(())
    });

    // An ended job, an unknown job, an unreachable JobManager: non-zero, with the reason.
    let ended = sluice(&[
        "savepoint",
        &id,
        savepoints.to_str().unwrap(),
        "--jobmanager",
        &url,
    ]);
    assert!(!ended.status.success());
    assert!(
        stderr(&ended).contains("already ended") && stderr(&ended).contains("HTTP 409"),
        "{}",
        stderr(&ended)
    );
    let unknown_id = "0123456789abcdef0123456789abcdef";
    let unknown = sluice(&[
        "savepoint",
        unknown_id,
        savepoints.to_str().unwrap(),
        "--jobmanager",
        &url,
    ]);
    assert!(!unknown.status.success());
    assert!(
        stderr(&unknown).contains(&format!("no job {unknown_id}"))
            && stderr(&unknown).contains("HTTP 404"),
        "{}",
        stderr(&unknown)
    );
    drop(jm);
    let unreachable = sluice(&[
        "savepoint",
        &id,
        savepoints.to_str().unwrap(),
        "--jobmanager",
        &url,
    ]);
    assert!(!unreachable.status.success());
    assert!(
        stderr(&unreachable).contains(&format!("connect to {url}/jobs/{id}/savepoints")),
        "{}",
        stderr(&unreachable)
    );
}

#[test]
fn application_mode_exits_non_zero_with_the_failure_when_its_job_fails() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.csv");
    std::fs::write(&input, "1,a\nnot-a-number,b\n").unwrap();
    let script = dir.path().join("job.sql");
    std::fs::write(
        &script,
        format!(
            "CREATE TABLE src (id BIGINT, name STRING)
  WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'csv');
CREATE TABLE sink (id BIGINT, name STRING) WITH ('connector' = 'blackhole');
INSERT INTO sink SELECT id, name FROM src;
",
            input.display()
        ),
    )
    .unwrap();
    let mut app = application(dir.path(), &script, &[]);
    let rpc = app.address("rpc");
    let (tm, _, _) = taskmanager(dir.path(), "tm", &rpc, 1);
    let status = app.exit(&[&tm]);
    let log = app.process.log();
    assert!(!status.success(), "{}\n{log}", app.stdout());
    assert!(log.contains("ended as FAILED"), "{log}");
    assert!(log.contains("in.csv"), "the failure names the file: {log}");
}
