//! SQL golden files: every `*.slt` file next to this runner, in sqllogictest format, runs in a
//! fresh session with its own scratch directory (`__TMP__` in the file text).
//!
//! Records (separated by blank lines, `#` starts a comment line):
//! - `statement ok` / `statement error <substring>` followed by SQL; pending `INSERT`s run
//!   right after the statement (as the end of a script would);
//! - `query <types> [rowsort]`, SQL, `----`, expected rows (values separated by one space,
//!   `NULL` for null; a changelog row starts with its kind, e.g. `+I`);
//! - `file <path>` followed by lines written to that file (for CSV inputs).

use std::path::Path;

use anyhow::{Context, Result, bail};
use sluice_engine::sql::{Session, SessionConfig};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn run_file(path: &Path) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let text = std::fs::read_to_string(path)?.replace("__TMP__", &dir.path().to_string_lossy());
    let mut session = Session::new(SessionConfig {
        parallelism: 2,
        runtime: sluice_engine::runtime::RuntimeConfig::default().with_slots(2),
    });
    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim_end();
        if line.is_empty() || line.starts_with('#') {
            i += 1;
            continue;
        }
        let header = line;
        let header_line = i + 1;
        i += 1;
        let mut body = Vec::new();
        while i < lines.len() && !lines[i].trim().is_empty() && lines[i].trim() != "----" {
            body.push(lines[i]);
            i += 1;
        }
        let mut expected = Vec::new();
        if i < lines.len() && lines[i].trim() == "----" {
            i += 1;
            while i < lines.len() && !lines[i].trim().is_empty() {
                expected.push(lines[i].trim().to_string());
                i += 1;
            }
        }
        let sql = body.join("\n");
        let at = || format!("{}:{header_line}", path.display());
        let words: Vec<&str> = header.split_whitespace().collect();
        match words.as_slice() {
            ["file", target] => {
                if let Some(parent) = Path::new(target).parent() {
                    std::fs::create_dir_all(parent).with_context(at)?;
                }
                std::fs::write(target, format!("{}\n", body.join("\n"))).with_context(at)?;
            }
            ["statement", "ok"] => {
                session.execute(&sql).with_context(at)?;
                session.finish().with_context(at)?;
            }
            ["statement", "error", ..] => {
                let wanted = header
                    .split_once("error")
                    .map(|(_, rest)| rest.trim())
                    .unwrap_or_default();
                let result = session.execute(&sql).and_then(|_| session.finish());
                match result {
                    Ok(_) => bail!("{}: expected an error containing '{wanted}'", at()),
                    Err(e) if e.to_string().contains(wanted) => {}
                    Err(e) => bail!(
                        "{}: expected an error containing '{wanted}', got: {e}",
                        at()
                    ),
                }
            }
            ["query", _types, rest @ ..] => {
                let outcomes = session.execute(&sql).with_context(at)?;
                let last = outcomes.last().context("no result")?;
                let mut rows: Vec<String> = last
                    .rows()
                    .with_context(at)?
                    .into_iter()
                    .map(|r| r.join(" "))
                    .collect();
                if rest.contains(&"rowsort") {
                    rows.sort();
                    expected.sort();
                }
                if rows != expected {
                    bail!(
                        "{}: query result differs\n--- expected\n{}\n--- actual\n{}",
                        at(),
                        expected.join("\n"),
                        rows.join("\n")
                    );
                }
            }
            _ => bail!("{}: unknown record '{header}'", at()),
        }
    }
    Ok(())
}

#[test]
fn sql_golden_files() -> Result<()> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sql");
    let mut files: Vec<_> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .slt files in {}", dir.display());
    let mut failures = Vec::new();
    for file in &files {
        if let Err(e) = run_file(file) {
            failures.push(format!("{e:#}"));
        }
    }
    if !failures.is_empty() {
        bail!(
            "{} of {} files failed:\n{}",
            failures.len(),
            files.len(),
            failures.join("\n\n")
        );
    }
    Ok(())
}
