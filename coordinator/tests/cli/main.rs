//! The `sluice` executable as a user meets it: real processes, real files, exit codes and
//! messages. Bad input must exit non-zero with a message naming the place, never panic.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema};
use sluice_datasets::nexmark::{NexmarkConfig, NexmarkTable};
use sluice_engine::api::StreamEnvironment;
use sluice_engine::connector::{FileFormat, FileSourceSpec, NexmarkSource, SinkSpec, SourceSpec};
use sluice_engine::expr::{col, lit};

#[allow(
    dead_code,
    reason = "the harness is shared by the coordinator's tests; each uses part of it"
)]
#[path = "../support/moto.rs"]
mod moto;
mod s3;
mod spill;

fn sluice(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .env("SLUICE_LOG", "warn")
        .output()
        .expect("the sluice binary runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Asserts a clean failure: non-zero exit, no panic, and every `needle` in the message.
fn assert_fails_with(output: &Output, needles: &[&str]) {
    let message = stderr(output);
    assert!(
        !output.status.success(),
        "expected failure, got success: {message}"
    );
    assert!(
        !message.contains("panicked"),
        "panic instead of an error: {message}"
    );
    for needle in needles {
        assert!(
            message.contains(needle),
            "'{needle}' missing from: {message}"
        );
    }
}

fn csv_graph(dir: &Path, input: &Path) -> std::path::PathBuf {
    let schema = Arc::new(Schema::new(vec![
        Field::new("auction", DataType::Int64, false),
        Field::new("price", DataType::Int64, false),
    ]));
    let env = StreamEnvironment::new("csv");
    env.source(
        "bids",
        SourceSpec::Filesystem(FileSourceSpec {
            path: input.to_string_lossy().into_owned(),
            format: FileFormat::Csv,
            schema,
            options: BTreeMap::new(),
            partition_keys: Vec::new(),
            predicate: None,
            dictionaries: false,
        }),
    )
    .unwrap()
    .filter(col("price").gt(lit(10i64)))
    .unwrap()
    .sink("out", SinkSpec::Blackhole)
    .unwrap();
    let (graph, _) = env.build().unwrap();
    let path = dir.join("graph.json");
    std::fs::write(&path, graph.to_json().unwrap()).unwrap();
    path
}

#[test]
fn nexmark_q1_runs_and_reports_its_operators() {
    let output = sluice(&[
        "nexmark", "--query", "q1", "--events", "100000", "--slots", "2",
    ]);
    let message = stderr(&output);
    assert!(output.status.success(), "{message}");
    assert!(message.contains("bid (Source)"), "{message}");
    assert!(
        message.contains("92000"),
        "bids of 100000 events: {message}"
    );
    assert!(message.contains("M events/s"), "{message}");
}

#[test]
fn a_csv_job_graph_runs_from_json() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("bids.csv");
    std::fs::write(&input, "1,5\n2,50\n3,500\n").unwrap();
    let graph = csv_graph(dir.path(), &input);
    let output = sluice(&["run", graph.to_str().unwrap()]);
    let message = stderr(&output);
    assert!(output.status.success(), "{message}");
    assert!(message.contains("Filter (Filter)"), "{message}");
}

#[test]
fn a_missing_input_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let graph = csv_graph(dir.path(), &dir.path().join("missing.csv"));
    let output = sluice(&["run", graph.to_str().unwrap()]);
    assert_fails_with(&output, &["missing.csv", "No such file", "bids"]);
}

#[test]
fn a_malformed_csv_row_is_named_by_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("bids.csv");
    std::fs::write(&input, "1,5\n2,50\n3,abc\n4,7\n").unwrap();
    let graph = csv_graph(dir.path(), &input);
    let output = sluice(&["run", graph.to_str().unwrap()]);
    assert_fails_with(&output, &["bids.csv", "line 3", "column 'price'", "abc"]);
}

#[test]
fn a_type_mismatch_in_an_expression_is_named() {
    let env = StreamEnvironment::new("types");
    env.source(
        "bid",
        SourceSpec::Nexmark(NexmarkSource::new(
            NexmarkTable::Bid,
            NexmarkConfig::default().with_events(Some(10)),
        )),
    )
    .unwrap()
    .filter(col("price").add(lit(1i64)).gt(lit(0i64)))
    .unwrap()
    .sink("out", SinkSpec::Blackhole)
    .unwrap();
    let (graph, _) = env.build().unwrap();
    // A client that sends `url + 1`: the JobManager must reject it when the graph arrives.
    let json = graph.to_json().unwrap();
    let broken = json.replacen("\"Column\": \"price\"", "\"Column\": \"url\"", 1);
    assert_ne!(
        json, broken,
        "the predicate's column reference was not found in {json}"
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("graph.json");
    std::fs::write(&path, broken).unwrap();
    let output = sluice(&["run", path.to_str().unwrap()]);
    assert_fails_with(&output, &["vertex 'Filter'", "url"]);
}

#[test]
fn an_unknown_query_is_a_clear_error() {
    let output = sluice(&["nexmark", "--query", "q99"]);
    assert_fails_with(&output, &["q99", "q0, q1, q2, count"]);
}

#[test]
fn the_print_sink_writes_flink_style_rows() {
    let output = sluice(&[
        "nexmark", "--query", "q2", "--events", "20000", "--sink", "print", "--slots", "1",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let first = stdout.lines().next().expect("q2 selects some bids");
    assert!(first.starts_with("+I["), "{first}");
    assert!(
        stdout
            .lines()
            .all(|l| l.starts_with("+I[") && l.ends_with(']'))
    );
}

/// A bench script (`nexmark-like/q5like.sql` shape, fewer rows): datagen with a computed rowtime
/// and watermark, a hopping window TVF aggregation, a blackhole sink, at parallelism 2.
#[test]
fn a_sql_script_with_a_window_tvf_runs_at_parallelism_two() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("q5like.sql");
    std::fs::write(
        &script,
        "SET 'execution.runtime-mode' = 'streaming';
CREATE TABLE bid (
  auction BIGINT, price BIGINT, seq BIGINT,
  date_time AS TO_TIMESTAMP_LTZ(seq, 3),
  WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND
) WITH (
  'connector' = 'datagen', 'number-of-rows' = '20000', 'rows-per-second' = '1000000000',
  'fields.auction.kind' = 'random', 'fields.auction.min' = '1000', 'fields.auction.max' = '1099',
  'fields.price.kind' = 'random', 'fields.price.min' = '1', 'fields.price.max' = '100',
  'fields.seq.kind' = 'sequence', 'fields.seq.start' = '1', 'fields.seq.end' = '20000'
);
CREATE TABLE q5like_sink (
  auction BIGINT, num BIGINT, window_start TIMESTAMP(3), window_end TIMESTAMP(3)
) WITH ('connector' = 'blackhole');
INSERT INTO q5like_sink
SELECT auction, COUNT(*) AS num, window_start, window_end
FROM TABLE(HOP(TABLE bid, DESCRIPTOR(date_time), INTERVAL '2' SECOND, INTERVAL '10' SECOND))
GROUP BY auction, window_start, window_end;
",
    )
    .unwrap();
    let output = sluice(&["sql", "-f", script.to_str().unwrap(), "--parallelism", "2"]);
    let err = stderr(&output);
    assert!(output.status.success(), "{err}");
    assert!(err.contains("WindowAggregate"), "{err}");
    assert!(err.contains("20000 source rows"), "{err}");
}

#[test]
fn a_sql_error_names_line_and_table() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("bad.sql");
    std::fs::write(
        &script,
        "SET 'execution.runtime-mode' = 'batch';\nSELECT * FROM bids;\n",
    )
    .unwrap();
    let output = sluice(&["sql", "-f", script.to_str().unwrap()]);
    assert_fails_with(
        &output,
        &["line 2, column 1", "unknown table or view 'bids'"],
    );
}

/// `sluice sql` without `-f`, with `script` piped to its stdin.
fn sluice_sql_client(script: &str, extra_env: &[(&str, &str)]) -> Output {
    use std::io::Write as _;
    use std::process::Stdio;

    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("sql")
        .env("SLUICE_LOG", "warn")
        .envs(extra_env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the sluice binary runs");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(script.as_bytes()).unwrap();
    drop(stdin);
    child.wait_with_output().unwrap()
}

/// A batch-mode CREATE TABLE over a small CSV file in `dir`.
fn bids_table(dir: &Path) -> String {
    let input = dir.join("bids.csv");
    std::fs::write(&input, "1,5\n2,50\n3,500\n").unwrap();
    format!(
        "SET 'execution.runtime-mode' = 'batch';
CREATE TABLE bids (auction BIGINT, price BIGINT)
  WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'csv');
",
        input.display()
    )
}

#[test]
fn the_sql_client_prints_a_sorted_select_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let script = format!(
        "{}SET 'parallelism.default' = '2';
SELECT auction, price FROM bids ORDER BY price DESC LIMIT 2;
SELECT auction FROM bids ORDER BY auction;
",
        bids_table(dir.path())
    );
    let output = sluice_sql_client(&script, &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let rows: Vec<String> = stdout
        .lines()
        .filter(|l| l.starts_with("| ") && !l.contains("auction"))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(
        rows,
        vec!["| 3 | 500 |", "| 2 | 50 |", "| 1 |", "| 2 |", "| 3 |"],
        "{stdout}"
    );
}

#[test]
fn the_sql_client_runs_piped_statements_past_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let script = format!(
        "{}SELECT auction FROM bids WHERE price > 10;
SELECT * FROM nope;
SELECT SUM(price) AS total -- a comment; not the end
  FROM bids; SELECT 'a;b' AS s FROM bids WHERE auction = 1;
",
        bids_table(dir.path())
    );
    let output = sluice_sql_client(&script, &[]);
    assert_fails_with(
        &output,
        &[
            "line 5, column 1",
            "unknown table or view 'nope'",
            "1 statement failed",
        ],
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("| 3       |"), "{stdout}");
    assert!(stdout.contains("555"), "SUM after the error: {stdout}");
    assert!(stdout.contains("a;b"), "{stdout}");
    assert!(
        !stdout.contains("sluice>"),
        "no prompt on piped input: {stdout}"
    );
}

#[test]
fn the_sql_client_stops_at_quit_and_runs_an_insert_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let script = format!(
        "{}CREATE TABLE sink (auction BIGINT) WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'csv');
INSERT INTO sink SELECT auction FROM bids WHERE price > 10;
SELECT COUNT(*) AS n FROM bids;
quit;
SELECT * FROM nope;
",
        bids_table(dir.path()),
        out.display()
    );
    let output = sluice_sql_client(&script, &[]);
    let err = stderr(&output);
    assert!(output.status.success(), "{err}");
    assert!(
        err.contains("3 source rows"),
        "the INSERT ran as its own job: {err}"
    );
    assert!(!err.contains("nope"), "statements after quit; ran: {err}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("| 3 |"), "{stdout}");

    let output = sluice_sql_client("SELECT * FROM nope;\n\\q\nSELECT * FROM other;\n", &[]);
    assert_fails_with(&output, &["'nope'"]);
    assert!(!stderr(&output).contains("other"), "{}", stderr(&output));
}

#[test]
fn the_sql_client_runs_a_statement_set_as_one_job_after_a_failed_insert() {
    let dir = tempfile::tempdir().unwrap();
    let sink = |name: &str| {
        format!(
            "CREATE TABLE {name} (auction BIGINT) WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'csv');\n",
            dir.path().join(name).display()
        )
    };
    let script = format!(
        "{}{}{}INSERT INTO a SELECT nocol FROM bids;
BEGIN STATEMENT SET;
INSERT INTO a SELECT auction FROM bids;
INSERT INTO b SELECT auction + 1 FROM bids;
END;
",
        bids_table(dir.path()),
        sink("a"),
        sink("b")
    );
    let output = sluice_sql_client(&script, &[]);
    assert_fails_with(
        &output,
        &["line 6, column 30", "nocol", "1 statement failed"],
    );
    let err = stderr(&output);
    assert_eq!(err.matches("Job '").count(), 1, "{err}");
    assert_eq!(
        err.matches("(Source)").count(),
        2,
        "the failed INSERT left no source behind: {err}"
    );
    assert!(err.contains("6 source rows"), "{err}");
}

/// A private tmux server (its own socket), killed when the test ends.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn run(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("tmux runs")
    }

    /// Types `text` and Enter. A `;` goes as a hex key: tmux reads a trailing `;` as its own
    /// command separator.
    fn type_line(&self, text: &str) {
        for (i, part) in text.split(';').enumerate() {
            if i > 0 {
                self.run(&["send-keys", "-H", "3b"]);
            }
            if !part.is_empty() {
                self.run(&["send-keys", "-l", part]);
            }
        }
        self.run(&["send-keys", "Enter"]);
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.run(&["capture-pane", "-p"]).stdout).into_owned()
    }

    /// Waits until the screen shows `needle` `times` times (tmux drops trailing spaces).
    fn wait_for(&self, needle: &str, times: usize) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let screen = self.screen();
            if screen.matches(needle).count() >= times {
                return screen;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "'{needle}' ×{times} never appeared on:\n{screen}"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

/// The client on a real terminal (tmux): prompts, continuation, an error that does not end the
/// session, Ctrl-C clearing the input, `quit;`, and the history file.
#[test]
fn the_sql_client_on_a_terminal() {
    if Command::new("tmux").arg("-V").output().is_err() {
        eprintln!("skipped: tmux is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let history = dir.path().join("history");
    let tmux = Tmux {
        socket: format!("sluice-cli-test-{}", std::process::id()),
    };
    let command = format!(
        "env SLUICE_LOG=warn SLUICE_HISTORY='{}' '{}' sql",
        history.display(),
        env!("CARGO_BIN_EXE_sluice")
    );
    let started = tmux.run(&["new-session", "-d", "-x", "250", "-y", "50", &command]);
    assert!(started.status.success(), "{}", stderr(&started));
    // Each line waits for its prompt: keys typed while a statement runs may be lost.
    let table = bids_table(dir.path());
    let lines: Vec<&str> = table.lines().collect();
    tmux.wait_for("sluice>", 1);
    tmux.type_line(lines[0]);
    tmux.wait_for("sluice>", 2);
    tmux.type_line(lines[1]);
    tmux.wait_for("\n     >", 1);
    tmux.type_line(lines[2]);
    tmux.wait_for("sluice>", 3);
    tmux.type_line("SELECT * FROM nope;");
    tmux.wait_for("unknown table or view 'nope'", 1);
    tmux.wait_for("sluice>", 4);
    tmux.run(&["send-keys", "-l", "SELECT half"]);
    tmux.run(&["send-keys", "C-c"]);
    tmux.wait_for("sluice>", 5);
    tmux.type_line("SELECT COUNT(*) AS n FROM bids;");
    tmux.wait_for("| 3 |", 1);
    let screen = tmux.wait_for("sluice>", 6);
    // Had Ctrl-C kept `SELECT half`, the COUNT would have joined it and failed.
    assert_eq!(screen.matches("error:").count(), 1, "{screen}");
    tmux.type_line("quit;");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while tmux.run(&["has-session"]).status.success() {
        assert!(
            std::time::Instant::now() < deadline,
            "quit; did not end the client:\n{}",
            tmux.screen()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let history = std::fs::read_to_string(&history).unwrap();
    assert!(
        history.contains("SELECT COUNT(*) AS n FROM bids;"),
        "{history}"
    );
}

#[test]
fn dash_d_sets_an_option_before_the_script() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("count.sql");
    std::fs::write(
        &script,
        "CREATE TABLE t (n BIGINT) WITH (
  'connector' = 'datagen', 'number-of-rows' = '10',
  'fields.n.kind' = 'sequence', 'fields.n.start' = '1', 'fields.n.end' = '10'
);
SELECT COUNT(*) AS c, SUM(n) AS s FROM t;
",
    )
    .unwrap();
    let path = script.to_str().unwrap();
    // Streaming (the default): the count is an updating result, printed as a changelog.
    let streaming = sluice(&["sql", "-f", path]);
    let out = String::from_utf8_lossy(&streaming.stdout).into_owned();
    assert!(streaming.status.success(), "{}", stderr(&streaming));
    assert!(out.contains("+I[10, 55]"), "a changelog: {out}");
    // Batch through -D: one final row.
    let batch = sluice(&["sql", "-f", path, "-D", "execution.runtime-mode=batch"]);
    let out = String::from_utf8_lossy(&batch.stdout).into_owned();
    assert!(batch.status.success(), "{}", stderr(&batch));
    assert!(!out.contains("+I"), "a table, not a changelog: {out}");
    assert!(out.contains("55"), "{out}");

    let bad = sluice(&["sql", "-f", path, "-D", "execution.runtime-mode=sideways"]);
    assert_fails_with(&bad, &["-D execution.runtime-mode=sideways", "streaming"]);
    let malformed = sluice(&["sql", "-f", path, "-D", "parallelism.default"]);
    assert_fails_with(&malformed, &["KEY=VALUE"]);
}

#[test]
fn an_init_script_declares_the_tables_of_a_tpch_query() {
    let dir = tempfile::tempdir().unwrap();
    let options = sluice_datasets::tpch::ParquetOptions::default().with_parts(1);
    sluice_datasets::tpch::write_parquet(dir.path(), 0.01, &options).unwrap();
    let init = dir.path().join(sluice_datasets::tpch::TABLES_SQL);
    let query = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/tpch/q06.sql");
    let output = sluice(&["sql", "-i", init.to_str().unwrap(), "-f", query]);
    assert!(output.status.success(), "{}", stderr(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    // DuckDB's answer on the same files (examples/tpch/answers/sf0.01/q06.csv).
    assert!(stdout.contains("| 1193053.2253 |"), "{stdout}");
}

#[test]
fn an_init_script_with_a_query_is_refused_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let init = dir.path().join("init.sql");
    std::fs::write(
        &init,
        "SET 'execution.runtime-mode' = 'batch';\nSELECT 1 AS one;\n",
    )
    .unwrap();
    let script = dir.path().join("main.sql");
    std::fs::write(&script, "SELECT 2 AS two;\n").unwrap();
    let output = sluice(&[
        "sql",
        "-i",
        init.to_str().unwrap(),
        "-f",
        script.to_str().unwrap(),
    ]);
    assert_fails_with(&output, &["init.sql", "line 2, column 1", "SET and DDL"]);
    assert!(
        output.stdout.is_empty(),
        "nothing runs: {:?}",
        output.stdout
    );

    let missing = sluice(&[
        "sql",
        "-i",
        "no-such-init.sql",
        "-f",
        script.to_str().unwrap(),
    ]);
    assert_fails_with(&missing, &["no-such-init.sql"]);
}

/// A TUMBLE count over the rate-limited Nexmark bids into CSV files under `out`.
fn windowed_bids_script(out: &Path, rate_limited: bool) -> String {
    format!(
        "CREATE TABLE bid (
  auction BIGINT, bidder BIGINT, price BIGINT, channel STRING, url STRING,
  dateTime TIMESTAMP(3), extra STRING,
  WATERMARK FOR dateTime AS dateTime - INTERVAL '1' SECOND
) WITH (
  'connector' = 'nexmark', 'table' = 'bid', 'events' = '500000', 'rate' = '100000',
  'rate.limited' = '{rate_limited}', 'seed' = '9'
);
CREATE TABLE sink (
  auction BIGINT, num BIGINT, window_start TIMESTAMP(3), window_end TIMESTAMP(3)
) WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'csv');
INSERT INTO sink
SELECT auction, COUNT(*) AS num, window_start, window_end
FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '1' SECOND))
GROUP BY auction, window_start, window_end;
",
        out.display()
    )
}

/// The committed rows under `dir` (hidden in-progress files are not output), sorted.
fn committed_rows(dir: &Path) -> Vec<String> {
    let mut rows = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let text = std::fs::read_to_string(entry.path()).unwrap();
        rows.extend(text.lines().map(str::to_string));
    }
    rows.sort();
    rows
}

/// `sluice` with `TMPDIR` at `tmp`, where local jobs put their control sockets.
fn sluice_in(tmp: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sluice"));
    command
        .args(args)
        .env("TMPDIR", tmp)
        .env("SLUICE_LOG", "warn");
    command
}

/// Waits for the one job control socket under `tmp` and returns the job id.
fn running_job_id(tmp: &Path, child: &mut std::process::Child) -> String {
    let sockets = tmp.join("sluice");
    for _ in 0..1000 {
        if let Some(id) = std::fs::read_dir(&sockets).ok().and_then(|entries| {
            entries.flatten().find_map(|e| {
                e.file_name()
                    .to_string_lossy()
                    .strip_suffix(".sock")
                    .map(str::to_string)
            })
        }) {
            return id;
        }
        assert!(child.try_wait().unwrap().is_none(), "the job ended early");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("no job control socket under {}", sockets.display());
}

/// The directory in `sluice savepoint`'s `Savepoint completed. Path: <dir>` line.
fn savepoint_path(stdout: &[u8]) -> std::path::PathBuf {
    let stdout = String::from_utf8_lossy(stdout);
    let path = stdout
        .lines()
        .find_map(|line| line.strip_prefix("Savepoint completed. Path: "))
        .unwrap_or_else(|| panic!("no savepoint path in '{stdout}'"));
    std::path::PathBuf::from(path)
}

#[test]
fn savepoint_stop_and_restore_at_another_parallelism_is_exact() {
    let dir = tempfile::tempdir().unwrap();
    let tmp = dir.path().join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let expected_dir = dir.path().join("expected");
    let expected_script = dir.path().join("expected.sql");
    std::fs::write(&expected_script, windowed_bids_script(&expected_dir, false)).unwrap();
    let output = sluice(&["sql", "-f", expected_script.to_str().unwrap()]);
    assert!(output.status.success(), "{}", stderr(&output));
    let expected = committed_rows(&expected_dir);
    assert!(expected.len() > 100, "{} windows", expected.len());

    let out = dir.path().join("out");
    let script = dir.path().join("job.sql");
    std::fs::write(&script, windowed_bids_script(&out, true)).unwrap();
    let checkpoints = dir.path().join("checkpoints");
    let savepoints = dir.path().join("savepoints");
    let checkpoint_dir = format!("execution.checkpointing.dir={}", checkpoints.display());
    let script_path = script.to_str().unwrap();
    let mut job = sluice_in(
        &tmp,
        &[
            "sql",
            "-f",
            script_path,
            "--parallelism",
            "2",
            "-D",
            "execution.checkpointing.interval=300ms",
            "-D",
            &checkpoint_dir,
        ],
    )
    .stderr(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    let job_id = running_job_id(&tmp, &mut job);
    std::thread::sleep(std::time::Duration::from_millis(800));

    // An intermediate savepoint: the job goes on.
    let first = sluice_in(&tmp, &["savepoint", &job_id, savepoints.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(first.status.success(), "{}", stderr(&first));
    let first = savepoint_path(&first.stdout);
    assert!(first.starts_with(&savepoints), "{}", first.display());
    let name = first.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.starts_with(&format!("savepoint-{}-", &job_id[..6])),
        "{name}"
    );
    assert!(first.join("_metadata").is_file());
    assert!(job.try_wait().unwrap().is_none(), "the job goes on");

    // Stop with a savepoint.
    std::thread::sleep(std::time::Duration::from_millis(600));
    let stop = sluice_in(
        &tmp,
        &[
            "savepoint",
            &job_id,
            "--dir",
            savepoints.to_str().unwrap(),
            "--stop",
        ],
    )
    .output()
    .unwrap();
    assert!(stop.status.success(), "{}", stderr(&stop));
    let stopped = savepoint_path(&stop.stdout);
    assert!(stopped.join("_metadata").is_file());
    let job = job.wait_with_output().unwrap();
    assert!(
        job.status.success(),
        "stopped, not failed: {}",
        stderr(&job)
    );
    // Reported as stopped with that savepoint, not as finished (its input did not end).
    let report = stderr(&job);
    assert!(
        report.contains(&format!(
            "({job_id}) stopped with savepoint {}",
            stopped.display()
        )),
        "{report}"
    );
    assert!(!report.contains("finished"), "{report}");
    assert!(!tmp.join("sluice").join(format!("{job_id}.sock")).exists());
    let partial = committed_rows(&out);
    assert!(partial.len() < expected.len(), "stopped mid-way");

    // Savepoints are self-contained: the checkpoint directory may go.
    std::fs::remove_dir_all(&checkpoints).unwrap();
    for (savepoint, parallelism) in [(&stopped, "3"), (&first, "1")] {
        let restored = sluice_in(
            &tmp,
            &[
                "sql",
                "-f",
                script_path,
                "--parallelism",
                parallelism,
                "-s",
                savepoint.to_str().unwrap(),
            ],
        )
        .output()
        .unwrap();
        assert!(restored.status.success(), "{}", stderr(&restored));
        let actual = committed_rows(&out);
        assert_eq!(actual.len(), expected.len(), "from {}", savepoint.display());
        assert!(
            actual == expected,
            "output differs restoring {}",
            savepoint.display()
        );
    }

    // A corrupted state file is named.
    let state = std::fs::read_dir(&first)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "arrow"))
        .unwrap();
    let mut bytes = std::fs::read(&state).unwrap();
    bytes[10] ^= 0x55;
    std::fs::write(&state, bytes).unwrap();
    let corrupted = sluice(&[
        "sql",
        "-f",
        script_path,
        "--from-savepoint",
        first.to_str().unwrap(),
    ]);
    let file_name = state.file_name().unwrap().to_string_lossy().into_owned();
    assert_fails_with(&corrupted, &[&file_name, "corrupted"]);
    let missing = sluice(&["sql", "-f", script_path, "-s", "/nonexistent/chk-3"]);
    assert_fails_with(&missing, &["/nonexistent/chk-3"]);
}

#[test]
fn savepoint_of_an_unknown_job_or_one_without_checkpoints_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let tmp = dir.path().join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let unknown = sluice_in(&tmp, &["savepoint", "0123abcd"])
        .output()
        .unwrap();
    assert_fails_with(&unknown, &["0123abcd.sock"]);

    let script = dir.path().join("job.sql");
    std::fs::write(&script, windowed_bids_script(&dir.path().join("out"), true)).unwrap();
    let mut job = sluice_in(&tmp, &["sql", "-f", script.to_str().unwrap()])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let job_id = running_job_id(&tmp, &mut job);
    let refused = sluice_in(&tmp, &["savepoint", &job_id]).output().unwrap();
    job.kill().unwrap();
    job.wait().unwrap();
    assert_fails_with(&refused, &["without checkpointing"]);
}

/// A `print` sink writes to stdout from the slot threads while the script (or the client)
/// prints its outcomes there too: neither may hold stdout while a job runs.
#[test]
fn a_print_sink_in_a_script_and_in_the_client_reaches_stdout() {
    let script = "CREATE TABLE t (n BIGINT) WITH (
  'connector' = 'datagen', 'number-of-rows' = '5',
  'fields.n.kind' = 'sequence', 'fields.n.start' = '1', 'fields.n.end' = '5'
);
CREATE TABLE out (n BIGINT, twice BIGINT) WITH ('connector' = 'print');
INSERT INTO out SELECT n, n * 2 FROM t;
";
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("print.sql");
    std::fs::write(&file, script).unwrap();
    let from_file = sluice(&["sql", "-f", file.to_str().unwrap()]);
    let from_client = sluice_sql_client(script, &[]);
    for output in [from_file, from_client] {
        assert!(output.status.success(), "{}", stderr(&output));
        let stdout = String::from_utf8_lossy(&output.stdout);
        for n in 1..=5 {
            assert!(stdout.contains(&format!("+I[{n}, {}]", n * 2)), "{stdout}");
        }
    }
}

/// An unbounded `datagen` table copied into CSV files under `out` (exactly-once: parts are
/// committed only at the end of input or on completed checkpoints, and it has neither).
fn unbounded_copy_script(out: &Path) -> String {
    format!(
        "CREATE TABLE clicks (user_id BIGINT, url STRING) WITH (
  'connector' = 'datagen', 'rows-per-second' = '2000',
  'fields.user_id.min' = '1', 'fields.user_id.max' = '5', 'fields.url.length' = '4'
);
CREATE TABLE copy (user_id BIGINT, url STRING)
  WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'csv');
INSERT INTO copy SELECT user_id, url FROM clicks;
",
        out.display()
    )
}

/// Sends SIGINT to `child`, as Ctrl-C in its terminal would.
fn interrupt(child: &std::process::Child) {
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -INT {}", child.id());
}

/// Waits until some uncommitted part file exists under `out`: the job has written rows.
fn wait_for_output(out: &Path, child: &mut std::process::Child) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !std::fs::read_dir(out).is_ok_and(|mut entries| entries.next().is_some()) {
        assert!(child.try_wait().unwrap().is_none(), "the job ended early");
        assert!(
            std::time::Instant::now() < deadline,
            "no output within 60 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

#[test]
fn ctrl_c_cancels_the_running_job_of_a_script_with_exit_code_130() {
    let dir = tempfile::tempdir().unwrap();
    let tmp = dir.path().join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let out = dir.path().join("out");
    let script = dir.path().join("copy.sql");
    std::fs::write(&script, unbounded_copy_script(&out)).unwrap();
    let mut job = sluice_in(&tmp, &["sql", "-f", script.to_str().unwrap()])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let job_id = running_job_id(&tmp, &mut job);
    wait_for_output(&out, &mut job);

    interrupt(&job);
    let output = job.wait_with_output().unwrap();
    let message = stderr(&output);
    assert_eq!(output.status.code(), Some(130), "{message}");
    assert!(
        message.contains(&format!("Job {job_id} cancelled")),
        "{message}"
    );
    assert!(!message.contains("panicked"), "{message}");
    // Tasks stopped and the sink committed nothing: no part file has its final name.
    assert!(committed_rows(&out).is_empty(), "partial output committed");
    assert!(!tmp.join("sluice").join(format!("{job_id}.sock")).exists());
}

#[test]
fn ctrl_c_in_the_sql_client_cancels_the_job_and_the_client_goes_on() {
    use std::io::Write as _;

    let dir = tempfile::tempdir().unwrap();
    let tmp = dir.path().join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let out = dir.path().join("out");
    let mut client = sluice_in(&tmp, &["sql"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = client.stdin.take().unwrap();
    stdin
        .write_all(unbounded_copy_script(&out).as_bytes())
        .unwrap();
    let job_id = running_job_id(&tmp, &mut client);
    wait_for_output(&out, &mut client);

    interrupt(&client);
    // The client reads on after the cancelled job.
    stdin.write_all(b"SHOW TABLES;\n").unwrap();
    drop(stdin);
    let output = client.wait_with_output().unwrap();
    let message = stderr(&output);
    assert!(
        message.contains(&format!("Job {job_id} cancelled")),
        "{message}"
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("copy"), "SHOW TABLES ran after: {stdout}");
    // Piped input fails when a statement did (here: the cancelled INSERT), not with 130.
    assert_eq!(output.status.code(), Some(1), "{message}");
    assert!(message.contains("1 statement failed"), "{message}");
    assert!(committed_rows(&out).is_empty(), "partial output committed");
}

/// A bounded job of `rows` rows that takes about `seconds` (a rate-limited datagen source).
fn paced_script(dir: &Path, rows: u64, seconds: u64) -> std::path::PathBuf {
    let path = dir.join("paced.sql");
    std::fs::write(
        &path,
        format!(
            "SET 'parallelism.default' = '2';
CREATE TABLE numbers (n BIGINT) WITH (
    'connector' = 'datagen', 'number-of-rows' = '{rows}', 'rows-per-second' = '{}',
    'fields.n.kind' = 'sequence', 'fields.n.start' = '1', 'fields.n.end' = '{rows}');
CREATE TABLE sink (n BIGINT) WITH ('connector' = 'blackhole');
INSERT INTO sink SELECT n FROM numbers;
",
            rows / seconds
        ),
    )
    .unwrap();
    path
}

#[test]
fn a_bounded_script_reports_progress_in_plain_lines_when_not_on_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let script = paced_script(dir.path(), 40_000, 5);
    let output = sluice(&["sql", "-f", script.to_str().unwrap()]);
    let message = stderr(&output);
    assert!(output.status.success(), "{message}");
    let lines: Vec<&str> = message
        .lines()
        .filter(|l| l.starts_with("progress: "))
        .collect();
    assert!(lines.len() >= 2, "{message}");
    // Rows read of the rows the source announced, rising.
    let read: Vec<u64> = lines
        .iter()
        .map(|l| {
            assert!(l.contains(" of 40000 rows ("), "{l}");
            l["progress: ".len()..]
                .split(' ')
                .next()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    assert!(read.windows(2).all(|w| w[0] <= w[1]), "{lines:?}");
    assert!(read[0] > 0 && *read.last().unwrap() <= 40_000, "{lines:?}");
    assert!(
        !message.contains('\r'),
        "no bar outside a terminal: {message:?}"
    );
}

#[test]
fn a_bounded_script_draws_a_progress_bar_on_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let script = paced_script(dir.path(), 30_000, 3);
    // `script` runs the command on a pseudo-terminal and copies what it writes.
    let command = format!(
        "{} sql -f {}",
        env!("CARGO_BIN_EXE_sluice"),
        script.display()
    );
    let output = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env("SLUICE_LOG", "warn")
        .output()
        .expect("script(1) from util-linux runs");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{text}");
    assert!(
        text.contains("\r\x1b[2K["),
        "a bar redrawn in place: {text:?}"
    );
    assert!(text.contains(" / 30.0 k rows "), "{text:?}");
    assert!(text.contains(" rows/s "), "{text:?}");
    assert!(
        !text.contains("progress: "),
        "no plain lines on a terminal: {text:?}"
    );
}
