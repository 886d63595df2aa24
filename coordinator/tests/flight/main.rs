//! Flight sink tables as users read them: `sluice sql -f SCRIPT --flight-port 0` runs a
//! checkpointed Nexmark aggregation into a `'connector' = 'flight'` table (and, in the same
//! job, into CSV files as the reference), and real Flight clients read it — pyarrow's
//! `FlightClient` and ADBC's Flight SQL driver, in the Python environment
//! `ci/install-deps.sh` makes (`$SLUICE_PYTHON`) — while the job runs and after it ended.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod failures;
#[path = "../support/sink_tables.rs"]
mod sink_tables;

use sink_tables::{client, contained, count_rows, csv_rows, script};

const TOKEN: &str = "s3cret-token";

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
