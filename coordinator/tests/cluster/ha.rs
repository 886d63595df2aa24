//! High availability with a real etcd (Debian's `etcd-server`, which `ci/install-deps.sh`
//! installs) on loopback, JobManagers and TaskManagers as processes:
//! - `kill -9` of the leading JobManager during a checkpointed hopping-window job, five times
//!   in a row: each time a standby takes over, and the output equals a failure-free run;
//! - a leader paused with SIGSTOP past its lease steps down when it runs again, and its calls
//!   are refused for their stale epoch;
//! - a JobManager and a TaskManager started while etcd is unreachable say so, keep retrying,
//!   and join once etcd is up.

use std::net::TcpListener;
use std::process::Child;

use sluice_coordinator::rest_client::request_once;

use super::failover::{hop_script, local_rows};
use super::*;

/// A leader's lease lives this long after its last renewal (etcd's minimum is about 2 s).
const LEASE_TTL: &str = "high-availability.etcd.lease-ttl=2s";

/// A free loopback port (bound, then released for the process that uses it).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An etcd server on loopback with its data in `dir`; killed when dropped.
struct Etcd {
    process: Process,
    endpoint: String,
}

fn etcd_binary() -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("etcd"))
            .find(|path| path.is_file())
    });
    found.expect(
        "the etcd server is not installed: ci/install-deps.sh installs Debian's etcd-server",
    )
}

/// Starts etcd serving clients on `port` and waits until it answers.
fn start_etcd(dir: &Path, port: u16) -> Etcd {
    let data = dir.join(format!("etcd-{port}"));
    let client = format!("http://127.0.0.1:{port}");
    let peer = format!("http://127.0.0.1:{}", free_port());
    let stderr = dir.join(format!("etcd-{port}.log"));
    let child = Command::new(etcd_binary())
        .args([
            "--name",
            "sluice-test",
            "--data-dir",
            data.to_str().unwrap(),
            "--listen-client-urls",
            &client,
            "--advertise-client-urls",
            &client,
            "--listen-peer-urls",
            &peer,
            "--initial-advertise-peer-urls",
            &peer,
            "--initial-cluster",
            &format!("sluice-test={peer}"),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .expect("start etcd");
    let etcd = Etcd {
        process: Process { child, stderr },
        endpoint: client,
    };
    wait_for("etcd to answer", &[&etcd.process], || {
        let health = request_once(&etcd.endpoint, "GET", "/health", None).ok()?;
        (health.status == 200 && health.body.contains("true")).then_some(())
    });
    etcd
}

/// A JobManager in HA mode: its process and REST address.
fn ha_jobmanager(dir: &Path, name: &str, endpoint: &str) -> (Process, String) {
    let (process, addresses) = start(
        dir,
        name,
        &[
            "jobmanager",
            "--rpc-port",
            "0",
            "--rest-port",
            "0",
            "--ha",
            "etcd",
            "--etcd-endpoints",
            endpoint,
            "--cluster-id",
            "ha-test",
            "-D",
            LEASE_TTL,
            "-D",
            "high-availability.etcd.retry-delay=200ms",
            "-D",
            "heartbeat.interval=100ms",
            "-D",
            "heartbeat.timeout=2s",
        ],
        &["rpc", "rest"],
    );
    (process, addresses[1].clone())
}

/// A TaskManager in HA mode with `slots` slots.
fn ha_taskmanager(dir: &Path, name: &str, endpoint: &str, slots: u32) -> Process {
    let slots = slots.to_string();
    start(
        dir,
        name,
        &[
            "taskmanager",
            "--ha",
            "etcd",
            "--etcd-endpoints",
            endpoint,
            "--cluster-id",
            "ha-test",
            "--slots",
            &slots,
            "--rpc-port",
            "0",
            "--data-port",
            "0",
            "-D",
            "high-availability.etcd.retry-delay=200ms",
        ],
        &["rpc", "data"],
    )
    .0
}

/// Whether the JobManager at `rest` leads: it answers itself (a standby redirects, 307; one
/// still electing answers 503).
fn leads(rest: &str) -> bool {
    request_once(rest, "GET", "/overview", None).is_ok_and(|r| r.status == 200)
}

/// The index of the leading JobManager among `rests`, waiting for one.
fn leader(rests: &[String], logs: &[&Process]) -> usize {
    wait_for("a leading JobManager", logs, || {
        rests.iter().position(|rest| leads(rest))
    })
}

/// The job as the leader reports it, asked through any JobManager that answers (standbys
/// redirect); `None` while none answers.
fn job_via(rests: &[String], id: &str) -> Option<Value> {
    rests.iter().find_map(|rest| {
        let response = request(rest, "GET", &format!("/jobs/{id}"), None).ok()?;
        (response.status == 200)
            .then(|| response.json().ok())
            .flatten()
    })
}

/// Whether every subtask of `job` is RUNNING in attempt `attempt` or later.
fn running_in(job: &Value, attempt: u64) -> bool {
    job["state"] == "RUNNING"
        && job["attempt"].as_u64() >= Some(attempt)
        && job["vertices"].as_array().is_some_and(|vertices| {
            vertices.iter().all(|v| {
                v["subtasks"]
                    .as_array()
                    .is_some_and(|s| s.iter().all(|t| t["status"] == "RUNNING"))
            })
        })
}

fn completed_checkpoints(rests: &[String], id: &str) -> Option<u64> {
    rests.iter().find_map(|rest| {
        let response = request(rest, "GET", &format!("/jobs/{id}/checkpoints"), None).ok()?;
        (response.status == 200)
            .then(|| response.json().ok())
            .flatten()
            .and_then(|stats| stats["counts"]["completed"].as_u64())
    })
}

/// Waits until job `id` FINISHED (asking `rests`), checks that its output under `out` equals
/// a failure-free run's (none lost, none twice), and returns the job.
fn finished_exactly_once(
    dir: &Path,
    out: &Path,
    rests: &[String],
    id: &str,
    logs: &[&Process],
) -> Value {
    let job = wait_for("the job to finish", logs, || {
        let job = job_via(rests, id)?;
        match job["state"].as_str()? {
            "FINISHED" => Some(job),
            "FAILED" | "CANCELED" => panic!("the job ended as {job}"),
            _ => None,
        }
    });
    let expected = local_rows(dir);
    let rows = output_rows(out);
    assert_eq!(rows.len(), expected.len(), "rows lost or duplicated");
    assert!(rows == expected, "the rows differ from a failure-free run");
    job
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args([format!("-{name}"), child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{name}");
}

fn percentile(sorted: &[u128], p: f64) -> u128 {
    let rank = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[rank]
}

#[test]
fn killing_the_leading_jobmanager_five_times_loses_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = start_etcd(dir.path(), free_port());
    let mut jobmanagers: Vec<(Process, String)> = (0..3)
        .map(|i| ha_jobmanager(dir.path(), &format!("jm{i}"), &etcd.endpoint))
        .collect();
    let tm1 = ha_taskmanager(dir.path(), "tm1", &etcd.endpoint, 2);
    let tm2 = ha_taskmanager(dir.path(), "tm2", &etcd.endpoint, 2);
    let rests = |jms: &[(Process, String)]| jms.iter().map(|(_, r)| r.clone()).collect::<Vec<_>>();
    let first = leader(&rests(&jobmanagers), &[&etcd.process]);
    wait_for("four slots at the leader", &[&tm1, &tm2], || {
        (get(&jobmanagers[first].1, "/overview")["slots-total"] == 4).then_some(())
    });

    let checkpoints = dir.path().join("checkpoints");
    let out = dir.path().join("ha-out");
    let script = hop_script(
        &dir.path().join("job.sql"),
        &out,
        true,
        Some(checkpoints.to_str().unwrap()),
    );
    // Submitted through a standby: it redirects to the leader.
    let standby = (first + 1) % 3;
    let id = submit(&jobmanagers[standby].1, &script);

    let mut failovers = Vec::new();
    for kill in 0..5 {
        let all = rests(&jobmanagers);
        // The job runs under the current leader, which has completed a checkpoint of it.
        let attempt = wait_for("the job running with a checkpoint", &[&tm1, &tm2], || {
            let job = job_via(&all, &id)?;
            assert!(
                !["FINISHED", "FAILED", "CANCELED"].contains(&job["state"].as_str().unwrap()),
                "the job ended before kill {kill}: {job}"
            );
            let attempt = job["attempt"].as_u64()?;
            (running_in(&job, attempt) && completed_checkpoints(&all, &id)? >= 1).then_some(attempt)
        });
        let index = leader(&all, &[]);
        let (mut killed, _) = jobmanagers.remove(index);
        let killed_at = Instant::now();
        killed.child.kill().unwrap();
        killed.child.wait().unwrap();
        // A standby takes over and the job runs again, as a later attempt.
        let all = rests(&jobmanagers);
        let logs: Vec<&Process> = jobmanagers
            .iter()
            .map(|(p, _)| p)
            .chain([&tm1, &tm2])
            .collect();
        wait_for("the job running again under a new leader", &logs, || {
            let job = job_via(&all, &id)?;
            running_in(&job, attempt + 1).then_some(())
        });
        failovers.push(killed_at.elapsed().as_millis());
        // Three JobManagers again.
        jobmanagers.push(ha_jobmanager(
            dir.path(),
            &format!("jm{}", 3 + kill),
            &etcd.endpoint,
        ));
    }

    let all = rests(&jobmanagers);
    let logs: Vec<&Process> = jobmanagers
        .iter()
        .map(|(p, _)| p)
        .chain([&tm1, &tm2])
        .collect();
    let job = finished_exactly_once(dir.path(), &out, &all, &id, &logs);
    assert!(job["attempt"].as_u64() >= Some(5), "{job}");

    let mut sorted = failovers.clone();
    sorted.sort_unstable();
    println!(
        "failover (kill -9 of the leader -> job running again), ms: {failovers:?}; p50 {} max {}",
        percentile(&sorted, 0.5),
        sorted[sorted.len() - 1]
    );
}

#[test]
fn a_leader_paused_past_its_lease_steps_down_and_its_calls_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = start_etcd(dir.path(), free_port());
    let (a, a_rest) = ha_jobmanager(dir.path(), "jm-a", &etcd.endpoint);
    wait_for("jm-a to lead", &[&a], || leads(&a_rest).then_some(()));
    let (b, b_rest) = ha_jobmanager(dir.path(), "jm-b", &etcd.endpoint);
    let tm1 = ha_taskmanager(dir.path(), "tm1", &etcd.endpoint, 2);
    let tm2 = ha_taskmanager(dir.path(), "tm2", &etcd.endpoint, 2);
    wait_for("four slots at jm-a", &[&a, &tm1, &tm2], || {
        (get(&a_rest, "/overview")["slots-total"] == 4).then_some(())
    });
    let both = vec![a_rest.clone(), b_rest.clone()];

    let checkpoints = dir.path().join("checkpoints");
    let out = dir.path().join("ha-out");
    let script = hop_script(
        &dir.path().join("job.sql"),
        &out,
        true,
        Some(checkpoints.to_str().unwrap()),
    );
    let id = submit(&a_rest, &script);
    wait_for("a checkpoint under jm-a", &[&a, &tm1, &tm2], || {
        (completed_checkpoints(&both, &id)? >= 1).then_some(())
    });

    // Paused past its 2 s lease: jm-b takes over and the job runs again there.
    signal(&a.child, "STOP");
    wait_for("jm-b to lead", &[&b], || leads(&b_rest).then_some(()));
    wait_for("the job running under jm-b", &[&b, &tm1, &tm2], || {
        let job = job_via(std::slice::from_ref(&b_rest), &id)?;
        running_in(&job, 1).then_some(())
    });
    signal(&a.child, "CONT");

    // Resumed, jm-a finds its lease gone and steps down; it then redirects to jm-b.
    wait_for("jm-a to step down", &[&a], || {
        a.log().contains("stepping down").then_some(())
    });
    wait_for("jm-a to redirect to jm-b", &[&a], || {
        let response = request_once(&a_rest, "GET", "/overview", None).ok()?;
        (response.status == 307).then_some(response.location)
    });

    // What jm-a sent once it ran again carried its old epoch: the TaskManagers refused it.
    let refused = |p: &Process| {
        p.log()
            .matches("rejected a call from a deposed leader")
            .count()
    };
    let rejected = refused(&tm1) + refused(&tm2);
    let fenced_writes = a.log().matches("write refused").count();
    println!(
        "stale-epoch calls refused by TaskManagers: {rejected}; etcd writes refused: {fenced_writes}"
    );
    assert!(
        rejected >= 1,
        "jm-a's suspend calls reach the TaskManagers and are refused"
    );

    // None of them took effect: the job finishes under jm-b with every row exactly once.
    let job = finished_exactly_once(
        dir.path(),
        &out,
        std::slice::from_ref(&b_rest),
        &id,
        &[&a, &b, &tm1, &tm2],
    );
    assert!(job["attempt"].as_u64() >= Some(1), "{job}");
}

#[test]
fn processes_started_before_etcd_retry_with_a_clear_error_and_join_once_it_is_up() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let (mut jm, rest) = ha_jobmanager(dir.path(), "jm", &endpoint);
    let mut tm = ha_taskmanager(dir.path(), "tm", &endpoint, 1);

    // While etcd is down: both stay up, name the endpoint, and the REST API says why it
    // cannot serve.
    wait_for("the retry message", &[&jm, &tm], || {
        (jm.log().contains("etcd is unreachable; retrying")
            && jm.log().contains(&endpoint)
            && tm.log().contains("etcd is unreachable; retrying"))
        .then_some(())
    });
    let response = request_once(&rest, "GET", "/overview", None).unwrap();
    assert_eq!(response.status, 503, "{}", response.body);
    assert!(
        response
            .error_message()
            .contains("no leading JobManager yet"),
        "{}",
        response.body
    );
    std::thread::sleep(Duration::from_millis(1500));
    assert!(jm.child.try_wait().unwrap().is_none(), "{}", jm.log());
    assert!(tm.child.try_wait().unwrap().is_none(), "{}", tm.log());

    let etcd = start_etcd(dir.path(), port);
    wait_for(
        "the jobmanager to lead with the taskmanager registered",
        &[&jm, &tm, &etcd.process],
        || (leads(&rest) && get(&rest, "/overview")["taskmanagers"] == 1).then_some(()),
    );
}
