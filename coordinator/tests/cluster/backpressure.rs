//! Backpressure across TaskManagers: a slow sink in one process must slow the source in the
//! other down, instead of letting either process buffer what the sink has not taken yet.
//!
//! Two one-slot TaskManagers from the user binary. The job (`user_functions slow-sink`) reads
//! about 2 GB of Nexmark bids (1 KB of `extra` each) in one source subtask and rebalances them
//! over two subtasks of the `throttle` user function: subtask 0 shares the source's slot, and
//! subtask 1 runs on the other TaskManager, sleeping on every batch, so every other batch the
//! source emits crosses the Arrow Flight exchange to a consumer far slower than the generator.
//! While the slow subtask makes progress, both processes' resident memory must stay far below
//! the data volume.

use std::time::{Duration, Instant};

use super::user_code::{user_client, user_taskmanager};
use super::{Process, get, jobmanager, wait_for};

/// Resident memory either TaskManager may reach, far below the ~2 GB the source generates.
const RSS_BOUND: u64 = 300 * 1024 * 1024;

/// Rows the slow subtask must have taken before the test ends (~150 MB of bids, which takes
/// the throttled job several seconds, while the generator alone makes that in well under one).
const PROGRESS_ROWS: u64 = 150_000;

fn resident_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: u64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// The TaskManager id of `subtask` in the vertex (chain) whose name contains `name`.
fn host_of(job: &serde_json::Value, name: &str, subtask: u64) -> Option<String> {
    job["vertices"]
        .as_array()?
        .iter()
        .find(|v| v["name"].as_str().is_some_and(|n| n.contains(name)))?["subtasks"]
        .as_array()?
        .iter()
        .find(|s| s["subtask"] == subtask)?["taskmanager-id"]
        .as_str()
        .map(str::to_string)
}

#[test]
fn a_slow_sink_on_one_taskmanager_keeps_the_other_taskmanagers_memory_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let progress = dir.path().join("progress");
    std::fs::create_dir(&progress).unwrap();
    let (jm, rpc, rest) = jobmanager(dir.path(), &[]);
    // 1024-row batches of ~1 KB rows: about 1 MB per batch; 4 credits per remote channel.
    let extra = [
        "--batch-size",
        "1024",
        "-D",
        "taskmanager.network.memory.buffers-per-channel=4",
    ];
    let (tm_a, tm_a_rpc) = user_taskmanager(dir.path(), "tm-a", &rpc, &extra);
    let (tm_b, tm_b_rpc) = user_taskmanager(dir.path(), "tm-b", &rpc, &extra);
    wait_for("two TaskManagers", &[&jm], || {
        (get(&rest, "/overview")["slots-total"] == 2).then_some(())
    });

    let output = user_client(&[
        "slow-sink",
        "--jobmanager",
        &format!("http://{rest}"),
        "--events",
        "2000000",
        "--extra-bytes",
        "1000",
        "--delay-ms",
        "25",
        "--slow-subtask",
        "1",
        "--progress-dir",
        progress.to_str().unwrap(),
    ]);
    assert!(
        output.status.success(),
        "submit failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let id = String::from_utf8(output.stdout).unwrap().trim().to_string();
    let logs: [&Process; 3] = [&jm, &tm_a, &tm_b];

    // The source and the slow subtask run in different processes.
    let job = wait_for("every task to run", &logs, || {
        let job = get(&rest, &format!("/jobs/{id}"));
        assert_ne!(job["state"], "FAILED", "{job}");
        let running = job["vertices"]
            .as_array()?
            .iter()
            .all(|v| v["tasks"]["RUNNING"] == v["parallelism"]);
        running.then_some(job)
    });
    let source_tm = host_of(&job, "bid", 0).expect("the source's TaskManager");
    let slow_tm = host_of(&job, "throttle", 1).expect("the slow subtask's TaskManager");
    assert_ne!(
        source_tm, slow_tm,
        "source and slow sink share a process: {job}"
    );
    let pid_of = |tm: &str| {
        [(&tm_a, &tm_a_rpc), (&tm_b, &tm_b_rpc)]
            .into_iter()
            .find(|(_, rpc)| tm.starts_with(rpc.as_str()))
            .map(|(p, _)| p.child.id())
            .expect("a TaskManager id starts with its RPC address")
    };
    let (source_pid, slow_pid) = (pid_of(&source_tm), pid_of(&slow_tm));

    // Sample both processes until the slow subtask has taken enough rows.
    let rows = || -> u64 {
        std::fs::read_to_string(progress.join("rows"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    };
    let start = Instant::now();
    let (mut source_peak, mut slow_peak) = (0, 0);
    let mut samples = 0;
    loop {
        source_peak = source_peak.max(resident_bytes(source_pid).unwrap_or(0));
        slow_peak = slow_peak.max(resident_bytes(slow_pid).unwrap_or(0));
        samples += 1;
        assert!(
            source_peak < RSS_BOUND && slow_peak < RSS_BOUND,
            "resident memory grew past {} MB: source TaskManager {} MB, slow TaskManager {} MB \
             after {:?} and {} rows",
            RSS_BOUND >> 20,
            source_peak >> 20,
            slow_peak >> 20,
            start.elapsed(),
            rows()
        );
        if rows() >= PROGRESS_ROWS {
            break;
        }
        let job = get(&rest, &format!("/jobs/{id}"));
        assert_eq!(job["state"], "RUNNING", "the job stopped early: {job}");
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the slow sink made too little progress: {} rows in {:?}",
            rows(),
            start.elapsed()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let elapsed = start.elapsed();
    eprintln!(
        "backpressure: {} rows at the slow subtask in {elapsed:?}; peak RSS source TaskManager \
         {} MB, slow TaskManager {} MB ({samples} samples)",
        rows(),
        source_peak >> 20,
        slow_peak >> 20,
    );
    // The job is still running (the source has far more to send): cancel it.
    let response = sluice_coordinator::rest_client::request(
        &rest,
        "PATCH",
        &format!("/jobs/{id}?mode=cancel"),
        None,
    )
    .unwrap();
    assert_eq!(response.status, 202, "{}", response.body);
    wait_for("the job to be cancelled", &logs, || {
        (get(&rest, &format!("/jobs/{id}"))["state"] == "CANCELED").then_some(())
    });
}
