//! `sluice-bench tpch`: TPC-H queries of `examples/tpch/` in batch mode through the SQL
//! session (in process, embedded local mode) over Parquet files from `sluice_datasets::tpch`.
//!
//! The data directory (default `datasets/tpch-sf<sf>`, the generator's default) is generated
//! first when it lacks the `tables.sql` the generator writes last. Each timed run is a fresh
//! session: the tables' DDL, planning, reading the Parquet footers, the job, and collecting the
//! result, as `sluice sql -i <data>/tables.sql -f <query>` would do without process start.
//! Reported: best and median wall seconds over `--repeat` runs, the result's rows, the load
//! average before the runs.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use serde::Serialize;
use sluice_datasets::tpch::{ParquetOptions, TABLES_SQL, create_tables_sql, write_parquet};
use sluice_engine::runtime::RuntimeConfig;
use sluice_engine::sql::{Outcome, Session, SessionConfig};

use super::flight_exchange::load_average;
use super::{Machine, machine};

#[derive(clap::Args)]
pub struct Options {
    /// Scale factor of the data.
    #[arg(long, default_value_t = 1.0)]
    sf: f64,
    /// q1 … q22 (or q01 …), a comma-separated list, or all.
    #[arg(long, default_value = "q1")]
    query: String,
    /// The data directory (default `datasets/tpch-sf<sf>`); generated if it lacks `tables.sql`.
    #[arg(long)]
    data: Option<PathBuf>,
    /// The directory of the query files.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/tpch"))]
    queries: PathBuf,
    #[arg(long, default_value_t = 1)]
    parallelism: u32,
    /// Timed runs per query; the best and the median are reported.
    #[arg(long, default_value_t = 3)]
    repeat: u32,
    /// Print each query's result (of the last run).
    #[arg(long)]
    print: bool,
    /// Where the JSON report goes.
    #[arg(long, default_value = "bench-results/tpch.json")]
    output: PathBuf,
}

#[derive(Serialize)]
struct Run {
    query: String,
    scale_factor: f64,
    parallelism: u32,
    /// None when the query failed (see `error`).
    best_seconds: Option<f64>,
    median_seconds: Option<f64>,
    output_rows: usize,
    /// The 1-minute load average just before the query's runs (the machines are shared).
    load_average: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Serialize)]
struct Report {
    machine: Machine,
    data: String,
    peak_rss_bytes: u64,
    runs: Vec<Run>,
}

/// `q1`, `q01`, `Q1` or `1` → `q01`.
fn query_name(text: &str) -> anyhow::Result<String> {
    let digits = text.trim().trim_start_matches(['q', 'Q']);
    match digits.parse::<u32>() {
        Ok(number @ 1..=22) => Ok(format!("q{number:02}")),
        _ => bail!("--query {text}: expected q1 … q22 or all"),
    }
}

fn ensure_data(dir: &Path, sf: f64) -> anyhow::Result<()> {
    if dir.join(TABLES_SQL).is_file() {
        return Ok(());
    }
    println!("generating TPC-H SF {sf} into {}", dir.display());
    let start = Instant::now();
    write_parquet(dir, sf, &ParquetOptions::default())
        .with_context(|| format!("generate TPC-H SF {sf} into '{}'", dir.display()))?;
    println!("generated in {:.2} s", start.elapsed().as_secs_f64());
    Ok(())
}

/// One run: a fresh session, the DDL, the query. Returns the wall time and the result.
fn run_once(ddl: &str, text: &str, parallelism: u32) -> anyhow::Result<(f64, Option<Outcome>)> {
    let start = Instant::now();
    let mut session = Session::new(SessionConfig {
        parallelism,
        runtime: RuntimeConfig::default().with_slots(parallelism as usize),
        ..Default::default()
    });
    session.execute(ddl).context("create the TPC-H tables")?;
    let outcomes = session.execute(text)?;
    let seconds = start.elapsed().as_secs_f64();
    let result = outcomes
        .into_iter()
        .rev()
        .find(|o| matches!(o, Outcome::Table { .. } | Outcome::Changelog { .. }));
    Ok((seconds, result))
}

pub fn run(options: Options) -> anyhow::Result<()> {
    let data = options
        .data
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("datasets/tpch-sf{}", options.sf)));
    ensure_data(&data, options.sf)?;
    let absolute = std::fs::canonicalize(&data)
        .with_context(|| format!("data directory '{}'", data.display()))?;
    let ddl = create_tables_sql(&absolute);
    let queries: Vec<String> = if options.query == "all" {
        (1..=22).map(|n| format!("q{n:02}")).collect()
    } else {
        options
            .query
            .split(',')
            .map(query_name)
            .collect::<anyhow::Result<_>>()?
    };

    let mut runs = Vec::new();
    for query in queries {
        let path = options.queries.join(format!("{query}.sql"));
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("read query '{}'", path.display()))?;
        let load = load_average();
        match time_query(&ddl, &text, &options) {
            Ok((best, median, result)) => {
                let output_rows = match &result {
                    Some(outcome) => outcome.rows()?.len(),
                    None => 0,
                };
                println!(
                    "tpch {query} sf={} p={}: best {best:.3} s, median {median:.3} s, {output_rows} rows (load {load:.2})",
                    options.sf, options.parallelism
                );
                if options.print
                    && let Some(outcome) = &result
                {
                    print!("{}", outcome.render()?);
                }
                runs.push(Run {
                    query,
                    scale_factor: options.sf,
                    parallelism: options.parallelism,
                    best_seconds: Some(best),
                    median_seconds: Some(median),
                    output_rows,
                    load_average: load,
                    error: None,
                });
            }
            Err(error) => {
                // The other queries still run; the command fails at the end.
                println!("tpch {query} sf={}: failed: {error:#}", options.sf);
                runs.push(Run {
                    query,
                    scale_factor: options.sf,
                    parallelism: options.parallelism,
                    best_seconds: None,
                    median_seconds: None,
                    output_rows: 0,
                    load_average: load,
                    error: Some(format!("{error:#}")),
                });
            }
        }
    }
    let failed: Vec<&str> = runs
        .iter()
        .filter(|run| run.error.is_some())
        .map(|run| run.query.as_str())
        .collect();
    let failed = failed.join(", ");
    let report = Report {
        machine: machine(),
        data: absolute.display().to_string(),
        peak_rss_bytes: super::kib(super::proc_value("/proc/self/status", "VmHWM")),
        runs,
    };
    super::write_report(&options.output, &report)?;
    println!("report written to {}", options.output.display());
    if !failed.is_empty() {
        bail!("TPC-H queries failed: {failed}");
    }
    Ok(())
}

/// Runs a query `--repeat` times; returns the best and median seconds and the last result.
fn time_query(
    ddl: &str,
    text: &str,
    options: &Options,
) -> anyhow::Result<(f64, f64, Option<Outcome>)> {
    let mut times = Vec::new();
    let mut result = None;
    for _ in 0..options.repeat.max(1) {
        let (seconds, outcome) = run_once(ddl, text, options.parallelism)?;
        times.push(seconds);
        result = outcome;
    }
    times.sort_by(f64::total_cmp);
    Ok((times[0], times[times.len() / 2], result))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_names_are_normalised() {
        assert_eq!(query_name("q1").ok().as_deref(), Some("q01"));
        assert_eq!(query_name("Q22").ok().as_deref(), Some("q22"));
        assert_eq!(query_name("6").ok().as_deref(), Some("q06"));
        assert!(query_name("q23").is_err());
        assert!(query_name("x").is_err());
    }
}
