//! Flight sink tables as users read them: `sluice sql -f SCRIPT --flight-port 0` runs a
//! checkpointed Nexmark aggregation into a `'connector' = 'flight'` table (and, in the same
//! job, into CSV files as the reference), and real Flight clients read it — pyarrow's
//! `FlightClient` and ADBC's Flight SQL driver, in the Python environment
//! `ci/install-deps.sh` makes (`$SLUICE_PYTHON`) — while the job runs and after it ended.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

mod failures;

const TOKEN: &str = "s3cret-token";

fn python() -> PathBuf {
    match std::env::var_os("SLUICE_PYTHON") {
        Some(python) => PathBuf::from(python),
        None => panic!(
            "SLUICE_PYTHON is not set: this test reads sink tables with pyarrow and ADBC. Run \
             ci/install-deps.sh, then export SLUICE_PYTHON=/var/tmp/sluice-venv/bin/python \
             (ci/test.sh does both)"
        ),
    }
}

/// Runs the Python client in `mode`; its JSON answer.
fn client(mode: &str, uri: &str, table: &str, token: &str) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/sink_table_client.py");
    let output = Command::new(python())
        .arg(script)
        .args([mode, uri, table, token])
        .output()
        .expect("run the Python client");
    assert!(
        output.status.success(),
        "{mode} client failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("the client prints JSON")
}

/// The checkpointed hopping-window aggregation of bids, into Flight table `hot` and CSV
/// files under `out` (one job, so both get the same rows).
fn script(dir: &Path, out: &Path) -> PathBuf {
    let path = dir.join("job.sql");
    std::fs::write(
        &path,
        format!(
            "SET 'parallelism.default' = '2';
SET 'execution.checkpointing.interval' = '200ms';
SET 'execution.checkpointing.dir' = '{}';
CREATE TABLE bid (
    auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, url VARCHAR,
    dateTime TIMESTAMP(3), extra VARCHAR,
    WATERMARK FOR dateTime AS dateTime - INTERVAL '1' SECOND
) WITH ('connector' = 'nexmark', 'table' = 'bid', 'events' = '150000', 'rate' = '30000',
        'rate.limited' = 'true');
CREATE TABLE hot (auction BIGINT, window_start TIMESTAMP(3), bids BIGINT, max_price BIGINT)
    WITH ('connector' = 'flight');
CREATE TABLE reference (auction BIGINT, window_start TIMESTAMP(3), bids BIGINT, max_price BIGINT)
    WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'csv');
CREATE VIEW windows AS
SELECT auction, window_start, COUNT(*) AS bids, MAX(price) AS max_price
FROM TABLE(HOP(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '500' MILLISECOND, INTERVAL '2' SECOND))
GROUP BY auction, window_start, window_end;
BEGIN STATEMENT SET;
INSERT INTO hot SELECT * FROM windows;
INSERT INTO reference SELECT * FROM windows;
END;
",
            dir.join("checkpoints").display(),
            out.display()
        ),
    )
    .unwrap();
    path
}

/// `(auction, bids, max_price)` of every row, counted: what a reader saw, comparable with the
/// CSV reference whatever each prints timestamps as.
type Counted = BTreeMap<(String, String, String), usize>;

fn count_rows(rows: &Value) -> Counted {
    let mut counted = Counted::new();
    for row in rows.as_array().unwrap() {
        let cell = |i: usize| row[i].as_str().unwrap_or("").to_string();
        *counted.entry((cell(0), cell(2), cell(3))).or_default() += 1;
    }
    counted
}

fn csv_rows(dir: &Path) -> Counted {
    let mut counted = Counted::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || name.starts_with('_') {
            continue;
        }
        for line in std::fs::read_to_string(entry.path()).unwrap().lines() {
            let cells: Vec<&str> = line.split(',').collect();
            *counted
                .entry((cells[0].into(), cells[2].into(), cells[3].into()))
                .or_default() += 1;
        }
    }
    counted
}

/// Whether every row of `part` is in `whole` at least as often.
fn contained(part: &Counted, whole: &Counted) -> bool {
    part.iter()
        .all(|(row, n)| whole.get(row).is_some_and(|m| m >= n))
}

struct Served {
    child: Child,
    uri: String,
    stderr: std::sync::mpsc::Receiver<String>,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `sluice sql -f SCRIPT --flight-port 0 ARGS` and waits for its Flight address.
fn serve(script: &Path, args: &[&str]) -> Served {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["sql", "-f", script.to_str().unwrap(), "--flight-port", "0"])
        .args(args)
        .env("SLUICE_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start sluice sql");
    let (lines, stderr) = std::sync::mpsc::channel();
    let pipe = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                return;
            }
        }
    });
    // Killed on drop from here on, whatever the checks below do.
    let mut served = Served {
        child,
        uri: String::new(),
        stderr,
    };
    let started = Instant::now();
    while served.uri.is_empty() {
        let line = served
            .stderr
            .recv_timeout(Duration::from_secs(60))
            .expect("sluice sql printed its Flight address");
        if let Some(address) = line.strip_prefix("flight listening on ") {
            served.uri = format!("grpc://{}", address.trim());
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no Flight address"
        );
    }
    served
}

/// Waits until the job ended: the line saying the tables stay served.
fn wait_ended(served: &Served) -> Vec<String> {
    let mut seen = Vec::new();
    loop {
        let line = served
            .stderr
            .recv_timeout(Duration::from_secs(120))
            .unwrap_or_else(|_| panic!("the job did not end; stderr so far:\n{}", seen.join("\n")));
        if line.contains("until interrupted") {
            return seen;
        }
        seen.push(line);
    }
}

#[test]
fn pyarrow_and_adbc_read_a_running_aggregations_sink_table_with_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("reference");
    let script = script(dir.path(), &out);
    let served = serve(&script, &["--flight-token", TOKEN]);

    // While the job runs: what a reader sees is part of the final result.
    let running = client("pyarrow", &served.uri, "hot", TOKEN);
    assert_eq!(running["listed"], serde_json::json!(["hot"]), "{running}");
    assert_eq!(
        running["schema"],
        serde_json::json!(["auction", "window_start", "bids", "max_price"])
    );
    let early = count_rows(&running["rows"]);

    let log = wait_ended(&served);
    let expected = csv_rows(&out);
    assert!(
        expected.values().sum::<usize>() > 1000,
        "{}",
        log.join("\n")
    );
    assert!(
        contained(&early, &expected),
        "a running read showed rows the result lacks"
    );

    // After the end: both clients read exactly the result; the table stays served.
    let finished = client("pyarrow", &served.uri, "hot", TOKEN);
    assert_eq!(count_rows(&finished["rows"]), expected);
    assert_eq!(
        finished["total_records"].as_u64(),
        Some(expected.values().sum::<usize>() as u64)
    );
    let adbc = client("adbc", &served.uri, "hot", TOKEN);
    assert_eq!(adbc["listed"], serde_json::json!(["hot"]), "{adbc}");
    assert_eq!(count_rows(&adbc["rows"]), expected);

    // Calls without the token, or with a wrong one, are refused; the Basic handshake with it
    // gives the bearer header.
    let auth = client("auth", &served.uri, "hot", TOKEN);
    assert_eq!(auth["missing"], true, "{auth}");
    assert_eq!(auth["wrong"], true, "{auth}");
    assert_eq!(auth["list_missing"], true, "{auth}");
    assert_eq!(auth["bearer"], true, "{auth}");
    assert_eq!(
        auth["handshake_rows"].as_u64(),
        Some(expected.values().sum::<usize>() as u64)
    );
}
