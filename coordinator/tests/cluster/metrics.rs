//! `GET /metrics` on the JobManager: a Prometheus text exposition that Prometheus' own Python
//! parser (prometheus_client, in the environment `ci/install-deps.sh` makes) reads, with values
//! that move while a checkpointed job runs.

use std::io::Write;

use super::sink_tables::python;
use super::*;

/// The exposition's samples, parsed by prometheus_client: `(name, labels, value)`.
fn scrape(address: &str) -> Vec<(String, Value, f64)> {
    let response = request(address, "GET", "/metrics", None).unwrap();
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

/// The sum of family `name`'s samples with label `label`.
fn total(samples: &[(String, Value, f64)], name: &str, label: (&str, &str)) -> f64 {
    samples
        .iter()
        .filter(|(n, labels, _)| n == name && labels[label.0] == label.1)
        .map(|(_, _, v)| v)
        .sum()
}

/// A TaskManager with one slot: returns it and its `/metrics` address.
fn metered_taskmanager(dir: &Path, name: &str, rpc: &str) -> (Process, String) {
    let (process, addresses) = start(
        dir,
        name,
        &[
            "taskmanager",
            "--jobmanager",
            rpc,
            "--slots",
            "1",
            "--rpc-port",
            "0",
            "--data-port",
            "0",
        ],
        &["rpc", "data", "flight", "metrics"],
    );
    (process, addresses[3].clone())
}

#[test]
fn metrics_parse_as_prometheus_text_and_move_while_a_job_runs() {
    let dir = tempfile::tempdir().unwrap();
    let (jm, rpc, rest) = jobmanager(dir.path(), &[]);
    let (tm, tm_metrics) = metered_taskmanager(dir.path(), "tm1", &rpc);
    let (tm2, tm2_metrics) = metered_taskmanager(dir.path(), "tm2", &rpc);
    wait_for("two TaskManagers", &[&jm], || {
        (get(&rest, "/overview")["taskmanagers"] == 2).then_some(())
    });
    let idle = scrape(&rest);
    assert!(
        idle.iter()
            .any(|(n, _, v)| n == "sluice_taskmanagers" && *v == 2.0),
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
    // Live task metrics, on the JobManager and on each TaskManager, move while the job runs.
    let records = |samples: &[(String, Value, f64)]| {
        total(samples, "sluice_task_records_in_total", ("job_id", &id))
    };
    for address in [&rest, &tm_metrics, &tm2_metrics] {
        let before = wait_for("task metrics", &[&jm, &tm, &tm2], || {
            let n = records(&scrape(address));
            (n > 0.0).then_some(n)
        });
        let samples = wait_for("task metrics to move", &[&jm, &tm, &tm2], || {
            let samples = scrape(address);
            (records(&samples) > before).then_some(samples)
        });
        assert!(
            total(&samples, "sluice_task_busy_seconds_total", ("job_id", &id)) > 0.0,
            "{address}: {samples:?}"
        );
        assert!(
            value(
                &samples,
                "sluice_task_watermark_lag_seconds",
                ("job_id", &id)
            )
            .is_some(),
            "{address}: {samples:?}"
        );
        assert!(
            total(&samples, "sluice_operator_state_bytes", ("job_id", &id)) > 0.0,
            "{address}: the window operator's state: {samples:?}"
        );
    }
    // Every metric the Grafana dashboard queries is exported.
    let mut families = std::collections::BTreeSet::new();
    for address in [&rest, &tm_metrics] {
        let text = request(address, "GET", "/metrics", None).unwrap().body;
        families.extend(
            text.lines()
                .filter_map(|l| l.strip_prefix("# TYPE "))
                .filter_map(|l| l.split(' ').next())
                .map(str::to_string),
        );
    }
    let dashboard = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/grafana/sluice-dashboard.json"),
    )
    .unwrap();
    let dashboard: Value = serde_json::from_str(&dashboard).unwrap();
    let mut queried = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap();
            for name in expr
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| w.starts_with("sluice_"))
            {
                queried += 1;
                assert!(
                    families.contains(name),
                    "the dashboard's panel '{}' queries {name}, which no /metrics exports",
                    panel["title"]
                );
            }
        }
    }
    assert!(queried > 20, "{queried}");

    // Each TaskManager's exchange sent batches to the other's half of the hash partitioning.
    for address in [&tm_metrics, &tm2_metrics] {
        wait_for("exchange traffic", &[&jm, &tm, &tm2], || {
            let samples = scrape(address);
            let memory = samples
                .iter()
                .find(|(n, _, _)| n == "sluice_taskmanager_memory_rss_bytes")?;
            assert!(memory.2 > 0.0);
            let sent = samples
                .iter()
                .find(|(n, _, _)| n == "sluice_taskmanager_network_sent_bytes_total")?;
            (sent.2 > 0.0).then_some(())
        });
    }
    // The REST API shows the same per vertex: records, rates, the watermark.
    let vertices = wait_for("vertex metrics with rates", &[&jm, &tm, &tm2], || {
        let job = get(&rest, &format!("/jobs/{id}"));
        let vertices = job["vertices"].as_array()?.clone();
        let moving = vertices.iter().all(|v| {
            v["metrics"]["read-records-per-second"]
                .as_f64()
                .unwrap_or(0.0)
                > 0.0
                && v["metrics"]["watermark"].is_i64()
        });
        moving.then_some(vertices)
    });
    for vertex in &vertices {
        let m = &vertex["metrics"];
        assert!(m["read-records"].as_u64().unwrap() > 0, "{vertex}");
        let ratio = m["busy-ratio"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&ratio), "{vertex}");
        assert!(m["watermark-lag-ms"].as_i64().unwrap() >= 0, "{vertex}");
    }
    let taskmanagers = get(&rest, "/taskmanagers");
    for tm in taskmanagers["taskmanagers"].as_array().unwrap() {
        assert!(
            tm["metrics"]["memory-rss-bytes"].as_u64().unwrap() > 0,
            "{tm}"
        );
        assert!(tm["metricsPort"].as_u64().unwrap() > 0, "{tm}");
    }

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
    let samples = scrape(&rest);
    assert!(
        value(
            &samples,
            "sluice_job_last_checkpoint_alignment_seconds",
            ("job_id", &id)
        )
        .is_some_and(|s| s >= 0.0),
        "{samples:?}"
    );
    let checkpoints = get(&rest, &format!("/jobs/{id}/checkpoints"));
    assert!(
        checkpoints["latest"]["completed"]["alignment_duration"].is_u64(),
        "{checkpoints}"
    );

    wait_for("the job to finish", &[&jm, &tm, &tm2], || {
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
