//! `GET /metrics` on the JobManager: a Prometheus text exposition that Prometheus' own Python
//! parser (prometheus_client, in the environment `ci/install-deps.sh` makes) reads, with values
//! that move while a checkpointed job runs.

use std::io::Write;

use super::sink_tables::python;
use super::*;

/// The exposition's samples, parsed by prometheus_client: `(name, labels, value)`.
fn scrape(rest: &str) -> Vec<(String, Value, f64)> {
    let response = request(rest, "GET", "/metrics", None).unwrap();
    assert_eq!(response.status, 200, "{}", response.body);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/parse_metrics.py");
    let mut child = Command::new(python())
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(response.body.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "the exposition does not parse: {}\n{}",
        String::from_utf8_lossy(&output.stderr),
        response.body
    );
    let samples: Vec<(String, Value, f64)> = serde_json::from_slice(&output.stdout).unwrap();
    samples
}

fn value(samples: &[(String, Value, f64)], name: &str, label: (&str, &str)) -> Option<f64> {
    samples
        .iter()
        .find(|(n, labels, _)| n == name && labels[label.0] == label.1)
        .map(|(_, _, v)| *v)
}

#[test]
fn metrics_parse_as_prometheus_text_and_move_while_a_job_runs() {
    let dir = tempfile::tempdir().unwrap();
    let (jm, rpc, rest) = jobmanager(dir.path(), &[]);
    let (tm, _, _) = taskmanager(dir.path(), "tm1", &rpc, 2);
    wait_for("a TaskManager", &[&jm], || {
        (get(&rest, "/overview")["taskmanagers"] == 1).then_some(())
    });
    let idle = scrape(&rest);
    assert!(
        idle.iter()
            .any(|(n, _, v)| n == "sluice_taskmanagers" && *v == 1.0),
        "{idle:?}"
    );
    assert_eq!(
        value(&idle, "sluice_slots", ("status", "available")),
        Some(2.0)
    );

    let out = dir.path().join("reference");
    let script = super::sink_tables::script(dir.path(), &out);
    let id = submit(&rest, &script);
    let first = wait_for("a completed checkpoint in /metrics", &[&jm, &tm], || {
        let samples = scrape(&rest);
        let completed = value(
            &samples,
            "sluice_job_checkpoints_completed_total",
            ("job_id", &id),
        )?;
        (completed >= 1.0).then_some(completed)
    });
    let later = wait_for("more completed checkpoints", &[&jm, &tm], || {
        let samples = scrape(&rest);
        assert_eq!(
            value(&samples, "sluice_jobs", ("state", "RUNNING")),
            Some(1.0)
        );
        assert_eq!(
            value(&samples, "sluice_slots", ("status", "available")),
            Some(0.0)
        );
        let completed = value(
            &samples,
            "sluice_job_checkpoints_completed_total",
            ("job_id", &id),
        )?;
        (completed > first).then_some(completed)
    });
    assert!(later > first);

    wait_for("the job to finish", &[&jm, &tm], || {
        (job_state(&rest, &id) == "FINISHED").then_some(())
    });
    let ended = scrape(&rest);
    assert_eq!(
        value(&ended, "sluice_jobs", ("state", "FINISHED")),
        Some(1.0)
    );
    let sink_in: f64 = ended
        .iter()
        .filter(|(n, labels, _)| {
            n == "sluice_operator_records_in_total"
                && labels["operator"]
                    .as_str()
                    .is_some_and(|o| o.contains("reference"))
        })
        .map(|(_, _, v)| v)
        .sum();
    assert!(sink_in > 1000.0, "the sink's records in: {sink_in}");
}
