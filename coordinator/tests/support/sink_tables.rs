//! Reading sink tables as users do, for the tests: the Python client
//! (`tests/python/sink_table_client.py`, pyarrow's Flight client and ADBC's Flight SQL driver,
//! run by `$SLUICE_PYTHON` from the environment `ci/install-deps.sh` makes), and comparing
//! what it read with a CSV reference of the same job.
//!
//! Shared by the coordinator's test binaries (`#[path]` includes).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

pub fn python() -> PathBuf {
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
pub fn client(mode: &str, uri: &str, table: &str, token: &str) -> Value {
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

/// `(auction, bids, max_price)` of every row, counted: what a reader saw, comparable with the
/// CSV reference whatever each prints timestamps as.
pub type Counted = BTreeMap<(String, String, String), usize>;

pub fn count_rows(rows: &Value) -> Counted {
    let mut counted = Counted::new();
    for row in rows.as_array().unwrap() {
        let cell = |i: usize| row[i].as_str().unwrap_or("").to_string();
        *counted.entry((cell(0), cell(2), cell(3))).or_default() += 1;
    }
    counted
}

pub fn csv_rows(dir: &Path) -> Counted {
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
pub fn contained(part: &Counted, whole: &Counted) -> bool {
    part.iter()
        .all(|(row, n)| whole.get(row).is_some_and(|m| m >= n))
}

/// The checkpointed hopping-window aggregation of bids, into Flight table `hot` and CSV
/// files under `out` (one job, so both get the same rows).
pub fn script(dir: &Path, out: &Path) -> PathBuf {
    script_with(dir, out, "")
}

/// [`script`] with `settings` (more `SET` statements) first.
pub fn script_with(dir: &Path, out: &Path, settings: &str) -> PathBuf {
    let path = dir.join("job.sql");
    std::fs::write(
        &path,
        format!(
            "{settings}SET 'parallelism.default' = '2';
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
