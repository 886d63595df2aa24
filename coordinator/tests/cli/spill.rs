//! Batch operators over a deliberately small managed memory: they spill to disk, the answer
//! is the same as in memory, and the process's peak resident memory (`VmHWM`, which the CLI
//! prints after the job) stays near the budget above what reading the same input takes.
//!
//! The jobs run with mimalloc returning freed pages at once (`MIMALLOC_PURGE_DELAY=0`,
//! `MIMALLOC_PURGE_DECOMMITS=1`): by default it keeps them mapped for reuse, so resident
//! memory would count every page ever touched, not what the operators hold.

use std::path::Path;
use std::process::{Command, Output};

use super::stderr;

/// Runs `sluice sql -f script` with freed memory returned at once.
fn sluice_sql(script: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["sql", "-f", script.to_str().unwrap()])
        .env("SLUICE_LOG", "warn")
        .env("MIMALLOC_PURGE_DELAY", "0")
        .env("MIMALLOC_PURGE_DECOMMITS", "1")
        .output()
        .expect("the sluice binary runs")
}

/// Rows per side of the join: enough that holding both sides (with their 200-byte strings)
/// takes far more than the budget.
const ROWS: u64 = 400_000;

/// A join of two datagen tables: `a.k` = 1..ROWS, `b.k` = ROWS/2+1..ROWS/2+ROWS, so the
/// upper half of `a` matches; every row carries a 200-character string. Without `join`, the
/// same tables are only read (a union into the same aggregates): the baseline.
fn script(dir: &Path, budget: Option<&str>, join: bool) -> String {
    let half = ROWS / 2;
    let budget = budget
        .map(|b| format!("SET 'taskmanager.memory.managed.size' = '{b}';\n"))
        .unwrap_or_default();
    format!(
        "SET 'execution.runtime-mode' = 'batch';
SET 'parallelism.default' = '1';
SET 'io.tmp.dirs' = '{spill}';
{budget}
CREATE TABLE a (k BIGINT, v BIGINT, pad STRING) WITH (
  'connector' = 'datagen', 'number-of-rows' = '{ROWS}', 'rows-per-second' = '1000000000',
  'fields.k.kind' = 'sequence', 'fields.k.start' = '1', 'fields.k.end' = '{ROWS}',
  'fields.v.kind' = 'sequence', 'fields.v.start' = '1', 'fields.v.end' = '{ROWS}',
  'fields.pad.length' = '200');
CREATE TABLE b (k BIGINT, w BIGINT, pad STRING) WITH (
  'connector' = 'datagen', 'number-of-rows' = '{ROWS}', 'rows-per-second' = '1000000000',
  'fields.k.kind' = 'sequence', 'fields.k.start' = '{b_start}', 'fields.k.end' = '{b_end}',
  'fields.w.kind' = 'sequence', 'fields.w.start' = '{b_start}', 'fields.w.end' = '{b_end}',
  'fields.pad.length' = '200');
CREATE TABLE result (n BIGINT, s BIGINT, l INT) WITH (
  'connector' = 'filesystem', 'path' = '{out}', 'format' = 'csv');
INSERT INTO result
{query};
",
        spill = dir.join("spill").display(),
        out = dir
            .join(format!("out-{}-{join}", budget.is_empty()))
            .display(),
        query = if join {
            "SELECT COUNT(*) AS n, SUM(a.v + b.w) AS s, \
             MIN(CHAR_LENGTH(a.pad) + CHAR_LENGTH(b.pad)) AS l FROM a JOIN b ON a.k = b.k"
        } else {
            "SELECT COUNT(*), SUM(v), MIN(CHAR_LENGTH(pad)) FROM \
             (SELECT v, pad FROM a UNION ALL SELECT w AS v, pad FROM b)"
        },
        b_start = half + 1,
        b_end = half + ROWS,
    )
}

fn run(dir: &Path, budget: Option<&str>, join: bool) -> Output {
    let path = dir.join(format!("join-{}-{join}.sql", budget.unwrap_or("unlimited")));
    std::fs::write(&path, script(dir, budget, join)).unwrap();
    sluice_sql(&path)
}

/// The rows the job wrote (CSV part files under `out`).
fn rows(out: &Path) -> String {
    let mut rows = String::new();
    for entry in std::fs::read_dir(out).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            rows.push_str(&std::fs::read_to_string(path).unwrap());
        }
    }
    rows
}

/// The peak memory the CLI printed after the job, in MiB.
fn peak_mib(message: &str) -> f64 {
    let at = message
        .find("peak memory ")
        .unwrap_or_else(|| panic!("no peak memory in: {message}"));
    message[at + "peak memory ".len()..]
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unreadable peak memory in: {message}"))
}

/// The join's answer, and the peak memory (MiB) of only reading its input.
fn join_answer_and_baseline(dir: &Path) -> (String, f64) {
    let half = ROWS / 2;
    // Matches: k = half+1..=ROWS, each with v = w = k.
    let sum: u64 = (half + 1..=ROWS).map(|k| 2 * k).sum();
    let read_only = run(dir, None, false);
    let message = stderr(&read_only);
    assert!(read_only.status.success(), "{message}");
    (format!("{half},{sum},400"), peak_mib(&message))
}

#[test]
fn a_join_over_a_small_memory_budget_spills_and_stays_near_it() {
    let dir = tempfile::tempdir().unwrap();
    let (expected, baseline) = join_answer_and_baseline(dir.path());

    let in_memory = run(dir.path(), None, true);
    let message = stderr(&in_memory);
    assert!(in_memory.status.success(), "{message}");
    let stdout = rows(&dir.path().join("out-true-true"));
    assert!(stdout.contains(&expected), "{stdout}");
    assert!(!message.contains("spilled"), "{message}");
    let unlimited = peak_mib(&message) - baseline;

    let spilled = run(dir.path(), Some("24mb"), true);
    let message = stderr(&spilled);
    assert!(spilled.status.success(), "{message}");
    let stdout = rows(&dir.path().join("out-false-true"));
    assert!(
        stdout.contains(&expected),
        "same answer as in memory: {stdout}"
    );
    assert!(message.contains("spilled to disk"), "{message}");
    let budgeted = peak_mib(&message) - baseline;
    eprintln!(
        "peak memory above reading the input ({baseline:.1} MiB): {unlimited:.1} MiB in \
         memory, {budgeted:.1} MiB with a 24 MiB budget"
    );
    // Above the budget: the partition files' write buffers, the batch being partitioned and
    // the hash table of one partition pair.
    assert!(
        budgeted < 2.0 * 24.0,
        "{budgeted:.1} MiB above the baseline with a 24 MiB budget ({unlimited:.1} MiB in \
         memory)"
    );
    assert!(
        unlimited > 4.0 * budgeted.max(1.0),
        "holding both inputs ({unlimited:.1} MiB) is no test of the budget ({budgeted:.1} MiB)"
    );
    let left_over = std::fs::read_dir(dir.path().join("spill")).unwrap().count();
    assert_eq!(left_over, 0, "spill files are deleted after the job");
}

#[test]
fn a_join_with_blocking_exchanges_runs_stage_by_stage_within_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    let (expected, baseline) = join_answer_and_baseline(dir.path());

    // Both scans write their whole output (about 90 MiB each) before the join starts:
    // partitions past half the budget go to files in io.tmp.dirs.
    let path = dir.path().join("blocking.sql");
    let text = script(dir.path(), Some("24mb"), true).replace(
        "SET 'execution.runtime-mode' = 'batch';",
        "SET 'execution.runtime-mode' = 'batch';\n\
         SET 'execution.batch-shuffle-mode' = 'ALL_EXCHANGES_BLOCKING';",
    );
    std::fs::write(&path, text).unwrap();
    let blocking = sluice_sql(&path);
    let message = stderr(&blocking);
    assert!(blocking.status.success(), "{message}");
    let stdout = rows(&dir.path().join("out-false-true"));
    assert!(stdout.contains(&expected), "same answer: {stdout}");
    assert!(message.contains("spilled to disk"), "{message}");
    let above = peak_mib(&message) - baseline;
    eprintln!("blocking exchanges: peak memory {above:.1} MiB above reading the input");
    // The budget (24 MiB for the operators, 12 MiB for the exchange) and the batches in
    // flight between a partition file and the join.
    assert!(
        above < 2.0 * (24.0 + 12.0),
        "{above:.1} MiB above the baseline with a 24 MiB budget"
    );
    let left_over = std::fs::read_dir(dir.path().join("spill")).unwrap().count();
    assert_eq!(
        left_over, 0,
        "exchange and spill files are deleted after the job"
    );
}

#[test]
fn a_sort_over_a_small_memory_budget_spills_and_orders_every_row() {
    let dir = tempfile::tempdir().unwrap();
    let count = ROWS / 2;
    let script = |order_by: &str, out: &Path| {
        format!(
            "SET 'execution.runtime-mode' = 'batch';
SET 'parallelism.default' = '1';
SET 'io.tmp.dirs' = '{spill}';
SET 'taskmanager.memory.managed.size' = '16mb';
CREATE TABLE a (k BIGINT, pad STRING) WITH (
  'connector' = 'datagen', 'number-of-rows' = '{count}', 'rows-per-second' = '1000000000',
  'fields.k.kind' = 'sequence', 'fields.k.start' = '1', 'fields.k.end' = '{count}',
  'fields.pad.length' = '100');
CREATE TABLE sorted (pad STRING, k BIGINT) WITH (
  'connector' = 'filesystem', 'path' = '{out}', 'format' = 'csv');
INSERT INTO sorted SELECT pad, k FROM a {order_by};
",
            spill = dir.path().join("spill").display(),
            out = out.display(),
        )
    };
    // The baseline: the same rows copied unsorted.
    let path = dir.path().join("copy.sql");
    std::fs::write(&path, script("", &dir.path().join("copied"))).unwrap();
    let output = sluice_sql(&path);
    let message = stderr(&output);
    assert!(output.status.success(), "{message}");
    let baseline = peak_mib(&message);

    let out = dir.path().join("sorted");
    let path = dir.path().join("sort.sql");
    std::fs::write(&path, script("ORDER BY pad, k", &out)).unwrap();
    let output = sluice_sql(&path);
    let message = stderr(&output);
    assert!(output.status.success(), "{message}");
    assert!(message.contains("spilled to disk"), "{message}");
    let budgeted = peak_mib(&message) - baseline;
    eprintln!("peak memory of the sort above copying ({baseline:.1} MiB): {budgeted:.1} MiB");
    assert!(
        budgeted < 2.0 * 16.0,
        "{budgeted:.1} MiB above the baseline with a 16 MiB budget"
    );
    let written = rows(&out);
    let lines: Vec<&str> = written.lines().collect();
    assert_eq!(lines.len() as u64, count, "every row once");
    let mut keys: Vec<u64> = lines
        .iter()
        .map(|l| l.rsplit(',').next().unwrap().parse().unwrap())
        .collect();
    assert!(
        lines.windows(2).all(|w| w[0] <= w[1]),
        "rows are in order of their strings"
    );
    keys.sort_unstable();
    assert!(keys.iter().copied().eq(1..=count), "each key exactly once");
    assert_eq!(
        std::fs::read_dir(dir.path().join("spill")).unwrap().count(),
        0
    );
}
