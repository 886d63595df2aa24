//! The interactive SQL client: `sluice sql` without `-f`, like Flink's SQL client.
//!
//! On a terminal it prompts (`sluice> `, `     > ` while a statement is open), edits lines and
//! keeps a history with rustyline; piped input is read without prompts. Every complete statement
//! (ended by a `;` outside quotes and comments) runs at once on one [`Session`], so tables and
//! settings persist. Results print as `sluice sql -f` prints them; an error prints as
//! `error: …` and the client goes on. An `INSERT` runs at once as its own job, unless it is inside
//! `BEGIN STATEMENT SET; … END;`. `quit;`, `exit;`, `\q` and end of input end the client.
//! Ctrl-C at the prompt drops the statement being typed; while a job runs it cancels the job.
//!
//! An init script (`sluice sql -i FILE`, Flink's `sql-client.sh -i`) runs first on the same
//! session, for the script or the interactive client; it holds only `SET` and DDL.

use std::io::{BufRead, IsTerminal as _, Write};
use std::path::{Path, PathBuf};

use sluice_engine::runtime::CancelRequest;
use sluice_engine::sql::parser::{ParsedStatement, parse_script};
use sluice_engine::sql::{Outcome, Session};
use sqlparser::ast::Statement as SqlStatement;

const PROMPT: &str = "sluice> ";
const CONTINUATION: &str = "     > ";

/// Prints an outcome as `sluice sql -f` does: a job's per-operator result to stderr, every other
/// result (a table, a changelog, text) to `stdout`.
pub fn print_outcome(outcome: &Outcome, stdout: &mut dyn Write) -> sluice_engine::Result<()> {
    match outcome {
        Outcome::Job(result) => {
            eprint!("{result}");
            let source_rows: u64 = result
                .vertices
                .iter()
                .filter(|v| v.kind == "Source")
                .map(|v| v.metrics.records_out)
                .sum();
            let seconds = result.wall_time.as_secs_f64();
            eprintln!(
                "{source_rows} source rows in {seconds:.3} s: {:.2} M rows/s, peak memory \
                 {:.1} MiB",
                source_rows as f64 / seconds.max(1e-9) / 1e6,
                crate::task_metrics::peak_resident_memory_bytes() as f64 / f64::from(1 << 20)
            );
        }
        other => {
            let text = other.render()?;
            stdout
                .write_all(text.as_bytes())
                .and_then(|()| stdout.flush())
                .map_err(|e| sluice_engine::Error::io("write", "<stdout>", e))?;
        }
    }
    Ok(())
}

/// Runs the init script `path` on `session`, as Flink's SQL client runs `-i FILE` before
/// anything else: its `SET`, `CREATE` (tables, views, functions), `DROP`, `ALTER` and `USE`
/// statements configure the session, and any other statement (a query, an `INSERT`, a
/// statement set) is an error naming the file and its place, raised before any statement runs.
pub fn run_init_script(session: &mut Session, path: &Path) -> anyhow::Result<()> {
    let script = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("read init script '{}': {e}", path.display()))?;
    let statements = parse_script(&script)
        .map_err(|e| anyhow::anyhow!("init script '{}': {e}", path.display()))?;
    for located in &statements {
        let allowed = match &located.statement {
            ParsedStatement::Set { .. } => true,
            ParsedStatement::BeginStatementSet | ParsedStatement::EndStatementSet => false,
            ParsedStatement::Sql { statement, .. } => match statement.as_ref() {
                SqlStatement::CreateTable(create) => create.query.is_none(),
                SqlStatement::CreateView(_)
                | SqlStatement::CreateFunction(_)
                | SqlStatement::Drop { .. }
                | SqlStatement::DropFunction(_)
                | SqlStatement::AlterTable(_)
                | SqlStatement::Use(_)
                | SqlStatement::Set(_) => true,
                _ => false,
            },
        };
        if !allowed {
            anyhow::bail!(
                "init script '{}', {}: only SET and DDL statements (CREATE, DROP, ALTER, USE) \
                 may initialise the session; run queries and INSERTs with -f or in the client",
                path.display(),
                located.position
            );
        }
    }
    session
        .run_script(&script, &mut |outcome| {
            print_outcome(&outcome, &mut std::io::stdout().lock())
        })
        .map_err(|e| anyhow::anyhow!("init script '{}': {e}", path.display()))
}

/// Where the lexer is inside the statement being typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lex {
    Code,
    SingleQuote,
    DoubleQuote,
    Backtick,
    LineComment,
    BlockComment,
}

/// A complete statement and where it starts in the input (1-based line and column).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// The statement, trimmed, with its `;` if it had one.
    pub text: String,
    pub line: usize,
    pub column: usize,
}

impl Statement {
    /// The text padded to its place in the input, so that error positions name the input's line
    /// and column.
    pub fn in_place(&self) -> String {
        let mut text = "\n".repeat(self.line - 1);
        text.extend(std::iter::repeat_n(' ', self.column - 1));
        text.push_str(&self.text);
        text
    }
}

/// Cuts input lines into statements at each `;` outside quotes and comments.
#[derive(Debug)]
pub struct StatementSplitter {
    buffer: String,
    /// Byte offset up to which `buffer` has been lexed.
    scanned: usize,
    lex: Lex,
    /// Where the open statement's first token starts in `buffer`; `None` while it has only
    /// whitespace and comments (a leading comment is not part of the statement).
    content_start: Option<usize>,
    /// The input line and column of `buffer`'s first byte (1-based).
    line: usize,
    column: usize,
}

impl Default for StatementSplitter {
    fn default() -> Self {
        StatementSplitter {
            buffer: String::new(),
            scanned: 0,
            lex: Lex::Code,
            content_start: None,
            line: 1,
            column: 1,
        }
    }
}

impl StatementSplitter {
    /// Adds one line and returns the statements it completes (each with its `;`).
    pub fn push_line(&mut self, line: &str) -> Vec<Statement> {
        self.buffer.push_str(line);
        self.buffer.push('\n');
        let mut complete = Vec::new();
        let mut start = 0;
        let (mut lex, mut content) = (self.lex, self.content_start);
        let bytes = self.buffer.as_bytes();
        let mut i = self.scanned;
        while i < bytes.len() {
            let c = bytes[i];
            let next = bytes.get(i + 1).copied();
            match lex {
                Lex::Code => match c {
                    b'\'' => {
                        lex = Lex::SingleQuote;
                        content.get_or_insert(i);
                    }
                    b'"' => {
                        lex = Lex::DoubleQuote;
                        content.get_or_insert(i);
                    }
                    b'`' => {
                        lex = Lex::Backtick;
                        content.get_or_insert(i);
                    }
                    b'-' if next == Some(b'-') => {
                        lex = Lex::LineComment;
                        i += 1;
                    }
                    b'/' if next == Some(b'*') => {
                        lex = Lex::BlockComment;
                        i += 1;
                    }
                    b';' => {
                        if let Some(first) = content.take() {
                            complete.push(self.statement(first, i + 1));
                        }
                        start = i + 1;
                    }
                    c if c.is_ascii_whitespace() => {}
                    _ => {
                        content.get_or_insert(i);
                    }
                },
                Lex::SingleQuote if c == b'\'' => lex = Lex::Code,
                Lex::DoubleQuote if c == b'"' => lex = Lex::Code,
                Lex::Backtick if c == b'`' => lex = Lex::Code,
                Lex::LineComment if c == b'\n' => lex = Lex::Code,
                Lex::BlockComment if c == b'*' && next == Some(b'/') => {
                    lex = Lex::Code;
                    i += 1;
                }
                _ => {}
            }
            i += 1;
        }
        self.lex = lex;
        let consumed = if content.is_none() && lex == Lex::Code {
            self.buffer.len()
        } else {
            start
        };
        self.content_start = content.map(|first| first - consumed);
        (self.line, self.column) = self.position(consumed);
        self.buffer.drain(..consumed);
        self.scanned = self.buffer.len();
        complete
    }

    /// The statement in `buffer[first..end]`, located.
    fn statement(&self, first: usize, end: usize) -> Statement {
        let (line, column) = self.position(first);
        Statement {
            text: self.buffer[first..end].trim_end().to_string(),
            line,
            column,
        }
    }

    /// The input line and column of `buffer[offset]`.
    fn position(&self, offset: usize) -> (usize, usize) {
        let before = &self.buffer[..offset];
        match before.rfind('\n') {
            Some(i) => (
                self.line + before.matches('\n').count(),
                before[i + 1..].chars().count() + 1,
            ),
            None => (self.line, self.column + before.chars().count()),
        }
    }

    /// Whether a statement (or a quote or block comment) is open.
    pub fn is_open(&self) -> bool {
        self.content_start.is_some() || !matches!(self.lex, Lex::Code | Lex::LineComment)
    }

    /// Drops the open statement (Ctrl-C).
    pub fn clear(&mut self) {
        let (line, column) = self.position(self.buffer.len());
        *self = StatementSplitter {
            line,
            column,
            ..StatementSplitter::default()
        };
    }

    /// The open statement without its `;`, at end of input.
    pub fn take_rest(&mut self) -> Option<Statement> {
        let rest = self
            .content_start
            .map(|first| self.statement(first, self.buffer.len()));
        self.clear();
        rest
    }
}

/// Whether the client goes on after a statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Control {
    Continue,
    Quit,
}

/// One [`Session`] and the client's view of it.
struct Client {
    session: Session,
    /// Made by Ctrl-C while a job runs (see [`crate::interrupt`]); cleared per statement.
    cancel: CancelRequest,
    /// Inside `BEGIN STATEMENT SET; … END;`: INSERTs wait for `END`.
    in_statement_set: bool,
    failures: usize,
    /// Errors name the line and column in the whole input (piped input, like a script file)
    /// rather than in the statement (typed input).
    in_place: bool,
}

impl Client {
    fn run(&mut self, statement: &Statement) -> Control {
        let words: Vec<String> = statement
            .text
            .trim_end_matches(';')
            .split_whitespace()
            .take(3)
            .map(str::to_ascii_uppercase)
            .collect();
        let words: Vec<&str> = words.iter().map(String::as_str).collect();
        match words.as_slice() {
            ["QUIT" | "EXIT"] => return Control::Quit,
            ["BEGIN" | "EXECUTE", "STATEMENT", "SET"] => self.in_statement_set = true,
            ["END", ..] => self.in_statement_set = false,
            _ => {}
        }
        let in_place = self.in_place;
        let place = |text: &str| {
            let mut statement = statement.clone();
            statement.text = text.to_string();
            if in_place {
                statement.in_place()
            } else {
                statement.text
            }
        };
        // A failed INSERT leaves what it planned in the session's pending job, which the next
        // INSERT would join; planning it first on its own (EXPLAIN) keeps the pending job clean.
        let checked = match words.first() {
            Some(&"INSERT") => self
                .session
                .execute(&place(&format!("EXPLAIN {}", statement.text)))
                .map(drop),
            _ => Ok(()),
        };
        self.cancel.clear();
        if let Err(error) = checked.and_then(|()| self.execute(&place(&statement.text))) {
            // A job cancelled by Ctrl-C is reported as such, and the client goes on.
            match crate::interrupt::cancelled_message(&error, &self.cancel) {
                Some(message) => eprintln!("{message}"),
                None => eprintln!("error: {error}"),
            }
            self.failures += 1;
        }
        Control::Continue
    }

    fn execute(&mut self, statement: &str) -> sluice_engine::Result<()> {
        // stdout is locked per outcome, never while a job runs: a `print` sink writes to it
        // from the slot threads.
        for outcome in self.session.execute(statement)? {
            if matches!(outcome, Outcome::Pending) && !self.in_statement_set {
                if let Some(job) = self.session.finish()? {
                    print_outcome(&job, &mut std::io::stdout().lock())?;
                }
            } else {
                print_outcome(&outcome, &mut std::io::stdout().lock())?;
            }
        }
        Ok(())
    }

    /// Runs the statements one line completes; `\q` on a line of its own quits.
    fn run_line(&mut self, splitter: &mut StatementSplitter, line: &str) -> Control {
        if !splitter.is_open() && matches!(line.trim(), "\\q" | "\\q;") {
            return Control::Quit;
        }
        for statement in splitter.push_line(line) {
            if self.run(&statement) == Control::Quit {
                return Control::Quit;
            }
        }
        Control::Continue
    }

    /// At end of input: runs a last statement without `;`, reports an unclosed statement set.
    fn end(&mut self, splitter: &mut StatementSplitter) {
        if let Some(rest) = splitter.take_rest() {
            self.run(&rest);
        }
        if self.in_statement_set {
            eprintln!("error: the statement set was not closed with END; its INSERTs did not run");
            self.failures += 1;
        }
    }
}

/// Runs the client on stdin: interactive on a terminal, else statement by statement without
/// prompts. Piped input fails (after running every statement) if any statement failed. Ctrl-C
/// while a job runs cancels that job (`Job <id> cancelled`) and the client goes on.
pub fn run(session: Session, cancel: CancelRequest) -> anyhow::Result<()> {
    let terminal = std::io::stdin().is_terminal();
    let mut client = Client {
        session,
        cancel,
        in_statement_set: false,
        failures: 0,
        in_place: !terminal,
    };
    if terminal {
        return run_terminal(&mut client);
    }
    let mut splitter = StatementSplitter::default();
    for line in std::io::stdin().lock().lines() {
        let line = line.map_err(|e| anyhow::anyhow!("read <stdin>: {e}"))?;
        if client.run_line(&mut splitter, &line) == Control::Quit {
            splitter.clear();
            break;
        }
    }
    client.end(&mut splitter);
    match client.failures {
        0 => Ok(()),
        1 => anyhow::bail!("1 statement failed"),
        n => anyhow::bail!("{n} statements failed"),
    }
}

/// `SLUICE_HISTORY`, else `$HOME/.sluice_history`, else no history file.
fn history_path() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("SLUICE_HISTORY") {
        return Some(PathBuf::from(path));
    }
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".sluice_history"))
}

fn run_terminal(client: &mut Client) -> anyhow::Result<()> {
    use rustyline::error::ReadlineError;

    let mut editor = rustyline::DefaultEditor::new()
        .map_err(|e| anyhow::anyhow!("open the line editor: {e}"))?;
    let history = history_path();
    if let Some(path) = &history {
        // A missing history file is the first run.
        let _ = editor.load_history(path);
    }
    println!("Sluice SQL client. End statements with ';'. quit; or Ctrl-D leaves.");
    let mut splitter = StatementSplitter::default();
    loop {
        let prompt = if splitter.is_open() {
            CONTINUATION
        } else {
            PROMPT
        };
        match editor.readline(prompt) {
            Ok(line) => {
                if !line.trim().is_empty() {
                    let _ = editor.add_history_entry(line.as_str());
                }
                let control = client.run_line(&mut splitter, &line);
                if let Some(path) = &history
                    && let Err(e) = editor.save_history(path)
                {
                    eprintln!("warning: history not saved to '{}': {e}", path.display());
                }
                if control == Control::Quit {
                    return Ok(());
                }
            }
            Err(ReadlineError::Interrupted) => splitter.clear(),
            // Like Flink's client, Ctrl-D drops a statement not ended with `;`.
            Err(ReadlineError::Eof) => {
                splitter.clear();
                break;
            }
            Err(e) => anyhow::bail!("read a line: {e}"),
        }
    }
    client.end(&mut splitter);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(lines: &[&str]) -> (Vec<String>, StatementSplitter) {
        let mut splitter = StatementSplitter::default();
        let statements = lines
            .iter()
            .flat_map(|l| splitter.push_line(l))
            .map(|s| s.text)
            .collect();
        (statements, splitter)
    }

    #[test]
    fn semicolons_in_quotes_and_comments_do_not_end_a_statement() {
        let (statements, splitter) = split(&[
            "SELECT 'a;b', \"c;d\" -- e;f",
            "/* g; */ FROM t; SELECT 1;  ;",
        ]);
        assert_eq!(
            statements,
            [
                "SELECT 'a;b', \"c;d\" -- e;f\n/* g; */ FROM t;",
                "SELECT 1;"
            ]
        );
        assert!(!splitter.is_open());
    }

    #[test]
    fn an_open_statement_continues_and_ctrl_c_clears_it() {
        let (statements, mut splitter) = split(&["SELECT *", "FROM t"]);
        assert!(statements.is_empty());
        assert!(splitter.is_open());
        splitter.clear();
        assert!(!splitter.is_open());
        assert_eq!(splitter.push_line("SELECT 2;")[0].text, "SELECT 2;");
        let (_, mut splitter) = split(&["SELECT 'it''s", "still open"]);
        assert!(splitter.is_open());
        assert_eq!(
            splitter.take_rest().map(|s| s.text).as_deref(),
            Some("SELECT 'it''s\nstill open")
        );
        let (_, splitter) = split(&["-- just a comment"]);
        assert!(!splitter.is_open());
    }

    #[test]
    fn statements_know_their_line_and_column() {
        let mut splitter = StatementSplitter::default();
        assert!(splitter.push_line("-- header").is_empty());
        assert!(splitter.push_line("").is_empty());
        let first = splitter.push_line("SET 'a' = 'b';  SELECT").remove(0);
        assert_eq!((first.line, first.column), (3, 1));
        let second = splitter.push_line("  1;").remove(0);
        assert_eq!((second.line, second.column), (3, 17));
        assert_eq!(second.in_place(), "\n\n                SELECT\n  1;");
        splitter.push_line("SELECT 'x");
        splitter.clear();
        let third = splitter.push_line(" SELECT 2;").remove(0);
        assert_eq!((third.line, third.column), (6, 2));
    }

    #[test]
    fn a_leading_comment_is_not_part_of_the_statement() {
        let mut splitter = StatementSplitter::default();
        assert!(splitter.push_line("-- load the sink").is_empty());
        let insert = splitter
            .push_line("/* x */ INSERT INTO t SELECT 1;")
            .remove(0);
        assert_eq!(insert.text, "INSERT INTO t SELECT 1;");
        assert_eq!((insert.line, insert.column), (2, 9));
    }
}
