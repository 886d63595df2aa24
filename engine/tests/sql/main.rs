//! SQL golden files: every `*.slt` file next to this runner, in the sqllogictest format, run by
//! the `sqllogictest` crate as one test (a libtest-mimic trial) per file. `cargo test -p
//! sluice-engine --test sql joins` runs `joins.slt` only; a failure names the file and line of
//! the record. `cargo test -p sluice-engine --test sql -- [FILTER] --complete` rewrites the
//! expected rows and errors of the files with the actual ones (review the diff).
//!
//! Each file runs in a fresh [`Session`] (parallelism 2, 2 slots) and has its own scratch
//! directory, `$__TEST_DIR__`, substituted in SQL and `system` commands after `control
//! substitution on`. The substitution also reads `$NAME` as an environment variable and `\` as
//! an escape, so a record holding a literal `$` or `\` sits between `control substitution off`
//! and `control substitution on`.
//!
//! The records in use:
//! - `statement ok` / `statement error <regex>` followed by SQL; the regex is searched in the
//!   error message. Pending `INSERT`s run right after every record (as at the end of a script);
//! - `query <types> [rowsort]`, SQL, `----`, expected rows: one letter per column (`I`, `R`, `T`,
//!   or another letter; only their number is checked), values separated by one space, `NULL`
//!   for null, timestamps as `2024-01-01T10:00:00.250`; a changelog row starts with its kind
//!   (`+I`, `-U`, `+U`, `-D`) as its first column; `DESCRIBE`/`EXPLAIN` text gives one row per
//!   line. With `rowsort` the actual rows are sorted and the expected rows are written sorted;
//! - `system ok` followed by a bash command, e.g. a heredoc that writes an input file:
//!   `cat > "$__TEST_DIR__/in.csv" <<'EOF'`, its lines, `EOF` (a blank line ends a record).

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;

use arrow::datatypes::{DataType, Schema};
use sluice_engine::Error;
use sluice_engine::element::ROW_KIND_COLUMN;
use sluice_engine::runtime::RuntimeConfig;
use sluice_engine::sql::{Outcome, Session, SessionConfig};
use sqllogictest::harness::{Arguments, Failed, Trial};
use sqllogictest::{ColumnType, DB, DBOutput, Runner};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A SQL session as the sqllogictest runner sees it. The runner wants a `Send` database and
/// [`Session`] is not one (its pending statement set is single-threaded), so the session lives
/// on a thread of its own and runs one record's SQL per request.
struct GoldenSession {
    requests: Option<mpsc::Sender<String>>,
    replies: mpsc::Receiver<Result<DBOutput<ColumnLetter>, Error>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl GoldenSession {
    fn new() -> Self {
        let (requests, incoming) = mpsc::channel::<String>();
        let (reply, replies) = mpsc::channel();
        let thread = thread::spawn(move || {
            let mut session = Session::new(SessionConfig {
                parallelism: 2,
                runtime: RuntimeConfig::default().with_slots(2),
                ..Default::default()
            });
            for sql in incoming {
                if reply.send(run_record(&mut session, &sql)).is_err() {
                    break;
                }
            }
        });
        GoldenSession {
            requests: Some(requests),
            replies,
            thread: Some(thread),
        }
    }

    /// Ends the session's thread; returns its panic message if it panicked.
    fn stop(&mut self) -> Option<String> {
        self.requests = None;
        let panic = self.thread.take()?.join().err()?;
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned());
        Some(message.unwrap_or_else(|| "a non-string payload".to_string()))
    }
}

impl DB for GoldenSession {
    type Error = Error;
    type ColumnType = ColumnLetter;

    fn run(&mut self, sql: &str) -> Result<DBOutput<ColumnLetter>, Error> {
        let sent = self
            .requests
            .as_ref()
            .is_some_and(|r| r.send(sql.to_string()).is_ok());
        if let Some(reply) = sent.then(|| self.replies.recv().ok()).flatten() {
            return reply;
        }
        Err(Error::Internal(self.stop().map_or_else(
            || "the session thread stopped".to_string(),
            |why| format!("the session thread panicked: {why}"),
        )))
    }

    fn shutdown(&mut self) {
        if let Some(why) = self.stop() {
            panic!("the session thread panicked: {why}");
        }
    }

    fn engine_name(&self) -> &str {
        "sluice"
    }
}

impl Drop for GoldenSession {
    fn drop(&mut self) {
        if !thread::panicking() {
            self.shutdown();
        }
    }
}

/// Runs the statements of one record, then the pending `INSERT`s; the last statement's rows, if
/// it has any, are the record's result.
fn run_record(session: &mut Session, sql: &str) -> Result<DBOutput<ColumnLetter>, Error> {
    let outcomes = session.execute(sql)?;
    session.finish()?;
    let Some(last) = outcomes.last() else {
        return Ok(DBOutput::StatementComplete(0));
    };
    let types = match last {
        Outcome::Table { schema, .. } | Outcome::Changelog { schema, .. } => column_types(schema),
        Outcome::Text(text) => {
            let width = text.lines().next().map_or(0, |l| l.split('\t').count());
            vec![ColumnLetter::TEXT; width]
        }
        Outcome::Done | Outcome::Pending | Outcome::Job(_) => {
            return Ok(DBOutput::StatementComplete(0));
        }
    };
    Ok(DBOutput::Rows {
        types,
        rows: last.rows()?,
    })
}

/// The letter of a result column in a `query` record's type string: `I` for integers, `R` for
/// floating point and decimals, `T` for text and anything else; the files also use `B` for
/// booleans. Only the number of letters is checked (the files predate any check of the letters),
/// and `--complete` keeps the letters written in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ColumnLetter(char);

impl ColumnLetter {
    const INTEGER: ColumnLetter = ColumnLetter('I');
    const FLOATING_POINT: ColumnLetter = ColumnLetter('R');
    const TEXT: ColumnLetter = ColumnLetter('T');
}

impl ColumnType for ColumnLetter {
    fn from_char(value: char) -> Option<Self> {
        Some(ColumnLetter(value))
    }

    fn to_char(&self) -> char {
        self.0
    }
}

/// The column letters of a result: a changelog's row kind first, as in its rows.
fn column_types(schema: &Schema) -> Vec<ColumnLetter> {
    let kind = schema
        .index_of(ROW_KIND_COLUMN)
        .is_ok()
        .then_some(ColumnLetter::TEXT);
    let values = schema
        .fields()
        .iter()
        .filter(|f| f.name() != ROW_KIND_COLUMN)
        .map(|f| match f.data_type() {
            t if t.is_integer() => ColumnLetter::INTEGER,
            t if t.is_floating() || matches!(t, DataType::Decimal128(..)) => {
                ColumnLetter::FLOATING_POINT
            }
            _ => ColumnLetter::TEXT,
        });
    kind.into_iter().chain(values).collect()
}

#[expect(
    clippy::ptr_arg,
    reason = "the signature of sqllogictest's ColumnTypeValidator"
)]
fn same_column_count(actual: &Vec<ColumnLetter>, expected: &Vec<ColumnLetter>) -> bool {
    actual.len() == expected.len()
}

/// Runs one golden file in a fresh session and scratch directory (the runner's `__TEST_DIR__`,
/// removed when the runner drops). With `complete`, rewrites the file's expected rows and
/// errors with the actual ones instead of checking them.
fn run_file(path: &Path, complete: bool) -> Result<(), Failed> {
    let mut runner = Runner::new(|| async { Ok(GoldenSession::new()) });
    runner.with_column_validator(same_column_count);
    let result = if complete {
        futures::executor::block_on(runner.update_test_file(
            path,
            " ",
            sqllogictest::default_validator,
            sqllogictest::default_normalizer,
            same_column_count,
        ))
        .map_err(|e| Failed::from(format!("{}: {e}", path.display())))
    } else {
        runner
            .run_file(path)
            .map_err(|e| Failed::from(e.display(false).to_string()))
    };
    runner.shutdown();
    result
}

fn golden_files() -> std::io::Result<Vec<PathBuf>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sql");
    let mut files = std::fs::read_dir(&dir)?
        .map(|entry| entry.map(|e| e.path()))
        .filter(|path| {
            path.as_ref()
                .map_or(true, |p| p.extension().is_some_and(|e| e == "slt"))
        })
        .collect::<std::io::Result<Vec<_>>>()?;
    files.sort();
    assert!(!files.is_empty(), "no .slt files in {}", dir.display());
    Ok(files)
}

/// `--complete` rewrites the files (see the module doc); the other arguments are libtest's.
fn main() -> std::io::Result<()> {
    let complete = std::env::args().any(|a| a == "--complete");
    let args = Arguments::from_iter(std::env::args().filter(|a| a != "--complete"));
    let trials = golden_files()?
        .into_iter()
        .map(|path| {
            let name = path
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
            Trial::test(name, move || run_file(&path, complete))
        })
        .collect();
    sqllogictest::harness::run(&args, trials).exit()
}
