//! Flight sink tables on a cluster: a JobManager with `--flight-port` and two TaskManagers of
//! one slot each run the checkpointed aggregation into a `'connector' = 'flight'` table at
//! parallelism 2; pyarrow asks the JobManager, which answers with one endpoint per
//! TaskManager partition, and reads each from its TaskManager, with a bearer token.

use super::sink_tables::{client, count_rows, csv_rows, script, script_with};
use super::*;

const TOKEN: &str = "cluster-token";

/// A JobManager serving sink tables on a free port: it and its RPC, REST and Flight addresses.
fn flight_jobmanager(dir: &Path, extra: &[&str]) -> (Process, Vec<String>) {
    let mut args = vec![
        "jobmanager",
        "--rpc-port",
        "0",
        "--rest-port",
        "0",
        "--flight-port",
        "0",
        "-D",
        "heartbeat.interval=100ms",
    ];
    args.extend_from_slice(extra);
    start(dir, "jobmanager", &args, &["rpc", "rest", "flight"])
}

#[test]
fn the_jobmanager_lists_a_sink_table_with_one_endpoint_per_taskmanager_partition() {
    let dir = tempfile::tempdir().unwrap();
    let (jm, addresses) = flight_jobmanager(
        dir.path(),
        &["--flight-token", TOKEN, "-D", "heartbeat.timeout=2s"],
    );
    let (rpc, rest, flight) = (&addresses[0], &addresses[1], &addresses[2]);
    let token = ["--flight-token", TOKEN];
    let (tm1, _, _) = taskmanager_with(dir.path(), "tm1", rpc, 1, &token);
    let (tm2, _, _) = taskmanager_with(dir.path(), "tm2", rpc, 1, &token);
    wait_for("two TaskManagers", &[&jm], || {
        (get(rest, "/overview")["slots-total"] == 2).then_some(())
    });
    let taskmanagers = get(rest, "/taskmanagers");
    assert!(
        taskmanagers["taskmanagers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|tm| tm["flightPort"].as_u64() > Some(0)),
        "{taskmanagers}"
    );

    let out = dir.path().join("reference");
    let id = submit(rest, &script(dir.path(), &out));
    wait_for(
        "the job to finish",
        &[&jm, &tm1, &tm2],
        || match job_state(rest, &id).as_str() {
            "FINISHED" => Some(()),
            "FAILED" | "CANCELED" => panic!("{}", get(rest, &format!("/jobs/{id}"))),
            _ => None,
        },
    );

    let expected = csv_rows(&out);
    assert!(expected.values().sum::<usize>() > 1000);
    let read = client("pyarrow", &format!("grpc://{flight}"), "hot", TOKEN);
    assert_eq!(read["listed"], serde_json::json!(["hot"]), "{read}");
    assert_eq!(
        read["endpoints"], 2,
        "one endpoint per TaskManager partition: {read}"
    );
    assert_eq!(count_rows(&read["rows"]), expected);

    // Without the token, the JobManager and the TaskManagers refuse; with it (from the
    // handshake) every partition reads.
    let auth = client("auth", &format!("grpc://{flight}"), "hot", TOKEN);
    assert_eq!(auth["missing"], true, "{auth}");
    assert_eq!(auth["wrong"], true, "{auth}");
    assert_eq!(auth["partition_missing"], true, "{auth}");
    assert_eq!(
        auth["handshake_rows"].as_u64(),
        Some(expected.values().sum::<usize>() as u64)
    );
}

#[test]
fn a_killed_taskmanagers_partition_comes_back_from_the_checkpoint_on_its_replacement() {
    let dir = tempfile::tempdir().unwrap();
    // The loss is noticed through the exchange and the failed cancel call.
    let (jm, addresses) = flight_jobmanager(dir.path(), &["-D", "heartbeat.timeout=300s"]);
    let (rpc, rest, flight) = (&addresses[0], &addresses[1], &addresses[2]);
    let (tm1, _, _) = taskmanager(dir.path(), "tm1", rpc, 1);
    let (mut tm2, _, _) = taskmanager(dir.path(), "tm2", rpc, 1);
    wait_for("two TaskManagers", &[&jm], || {
        (get(rest, "/overview")["slots-total"] == 2).then_some(())
    });
    let out = dir.path().join("reference");
    let restart = "SET 'restart-strategy.type' = 'fixed-delay';
SET 'restart-strategy.fixed-delay.attempts' = '3';
SET 'restart-strategy.fixed-delay.delay' = '200ms';
";
    let id = submit(rest, &script_with(dir.path(), &out, restart));
    wait_for("a completed checkpoint", &[&jm, &tm1, &tm2], || {
        let stats = get(rest, &format!("/jobs/{id}/checkpoints"));
        (stats["counts"]["completed"].as_u64() >= Some(2)).then_some(())
    });
    tm2.child.kill().unwrap();
    tm2.child.wait().unwrap();
    let (tm3, _, _) = taskmanager(dir.path(), "tm3", rpc, 1);
    wait_for(
        "the job to finish",
        &[&jm, &tm1, &tm3],
        || match job_state(rest, &id).as_str() {
            "FINISHED" => Some(()),
            "FAILED" | "CANCELED" => panic!("{}", get(rest, &format!("/jobs/{id}"))),
            _ => None,
        },
    );
    let job = get(rest, &format!("/jobs/{id}"));
    assert!(job["attempt"].as_u64() >= Some(1), "{job}");

    // Every row exactly once, though tm2's partition before the checkpoint was only in tm2.
    let expected = csv_rows(&out);
    let read = client("pyarrow", &format!("grpc://{flight}"), "hot", "");
    assert_eq!(read["endpoints"], 2, "{read}");
    assert_eq!(count_rows(&read["rows"]), expected);
}
