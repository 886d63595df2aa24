//! User code on a cluster: TaskManagers started from a user binary (the `user_functions`
//! example) run its named functions; a job submitted through the remote environment uses
//! them; a TaskManager from the plain `sluice` binary refuses the job, naming the function.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use super::{Process, get, jobmanager, output_rows, start_program, taskmanager, wait_for};

/// The `user_functions` example, built once per test process (integration tests only get the
/// package's binaries built for them, not its examples).
pub(crate) fn user_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let mut build = Command::new(env!("CARGO"));
        build.args([
            "build",
            "-p",
            "sluice-coordinator",
            "--example",
            "user_functions",
        ]);
        if !cfg!(debug_assertions) {
            build.arg("--release");
        }
        let status = build.status().expect("run cargo");
        assert!(
            status.success(),
            "building the user_functions example failed"
        );
        // The test runs as `<target>/<profile>/deps/cluster-<hash>`.
        let exe = std::env::current_exe().expect("the test binary's path");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("the test binary is in <profile>/deps");
        profile_dir.join("examples").join("user_functions")
    })
}

/// Starts the user binary's TaskManager: returns it and its RPC address.
pub(crate) fn user_taskmanager(
    dir: &Path,
    name: &str,
    jobmanager_rpc: &str,
    extra: &[&str],
) -> (Process, String) {
    let mut args = vec![
        "taskmanager",
        "--jobmanager",
        jobmanager_rpc,
        "--slots",
        "1",
        "--rpc-port",
        "0",
        "--data-port",
        "0",
    ];
    args.extend_from_slice(extra);
    let (process, mut addresses) = start_program(user_binary(), dir, name, &args, &["rpc", "data"]);
    (process, addresses.swap_remove(0))
}

/// Runs the user binary as a client (`scale`, `slow-sink`).
pub(crate) fn user_client(args: &[&str]) -> std::process::Output {
    Command::new(user_binary())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run the user binary")
}

fn write_numbers(dir: &Path) -> PathBuf {
    let input = dir.join("numbers.csv");
    let text: String = (0..500).map(|id| format!("{id},{}\n", id * 10)).collect();
    std::fs::write(&input, text).unwrap();
    input
}

#[test]
fn a_user_function_runs_on_taskmanagers_started_from_the_user_binary() {
    let dir = tempfile::tempdir().unwrap();
    let input = write_numbers(dir.path());
    let out = dir.path().join("out");
    let (jm, rpc, rest) = jobmanager(dir.path(), &[]);
    let (tm1, _) = user_taskmanager(dir.path(), "tm1", &rpc, &[]);
    let (tm2, _) = user_taskmanager(dir.path(), "tm2", &rpc, &[]);
    wait_for("two TaskManagers", &[&jm], || {
        (get(&rest, "/overview")["slots-total"] == 2).then_some(())
    });

    // Parallelism 2 over two one-slot TaskManagers: the function runs in both processes.
    let output = user_client(&[
        "scale",
        "--jobmanager",
        &format!("http://{rest}"),
        "--input",
        input.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--factor",
        "3",
        "--parallelism",
        "2",
    ]);
    assert!(
        output.status.success(),
        "the job failed: {}\n{}\n{}\n{}",
        String::from_utf8_lossy(&output.stderr),
        jm.log(),
        tm1.log(),
        tm2.log()
    );
    let id = String::from_utf8(output.stdout).unwrap().trim().to_string();
    assert_eq!(id.len(), 32, "the job id is printed: '{id}'");
    let job = get(&rest, &format!("/jobs/{id}"));
    assert_eq!(job["state"], "FINISHED", "{job}");
    let mut hosts: Vec<&str> = job["vertices"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|v| v["subtasks"].as_array().unwrap())
        .map(|s| s["taskmanager-id"].as_str().unwrap())
        .collect();
    hosts.sort_unstable();
    hosts.dedup();
    assert_eq!(hosts.len(), 2, "both TaskManagers ran tasks: {job}");

    let mut expected: Vec<String> = (0..500).map(|id| format!("{id},{}", id * 30)).collect();
    expected.sort();
    assert_eq!(output_rows(&out), expected);
}

#[test]
fn a_taskmanager_without_the_function_fails_the_job_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let input = write_numbers(dir.path());
    let (jm, rpc, rest) = jobmanager(dir.path(), &[]);
    let (tm, tm_address, _) = taskmanager(dir.path(), "plain", &rpc, 1);
    wait_for("the TaskManager", &[&jm], || {
        (get(&rest, "/overview")["slots-total"] == 1).then_some(())
    });

    let output = user_client(&[
        "scale",
        "--jobmanager",
        &format!("http://{rest}"),
        "--input",
        input.to_str().unwrap(),
        "--output",
        dir.path().join("out").to_str().unwrap(),
        "--parallelism",
        "1",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "the job must fail: {stderr}");
    assert!(
        stderr.contains("does not have the user function(s) 'scale'"),
        "the error names the function: {stderr}\n{}",
        tm.log()
    );
    assert!(
        stderr.contains(&tm_address),
        "the error names the TaskManager ({tm_address}): {stderr}"
    );
    let id = String::from_utf8(output.stdout).unwrap().trim().to_string();
    let job = get(&rest, &format!("/jobs/{id}"));
    assert_eq!(job["state"], "FAILED", "{job}");
    assert!(
        job["failure-cause"]
            .as_str()
            .is_some_and(|cause| cause.contains("'scale'")),
        "{job}"
    );
}
