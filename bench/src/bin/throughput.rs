//! The throughput harness (`sluice-bench`): runs a job on the embedded local mode and reports
//! events/s, events/s per core, wall time and peak RSS, as text and as JSON.
//!
//! ```text
//! cargo run --release -p sluice-bench -- nexmark --query q1 --events 10000000 --parallelism 2
//! ```
//!
//! `tpch` runs TPC-H queries in batch mode over Parquet files (generated first if missing):
//!
//! ```text
//! cargo run --release -p sluice-bench -- tpch --sf 1 --query q1,q6
//! ```
//!
//! `flight-exchange` measures one remote exchange channel between two processes on loopback:
//!
//! ```text
//! cargo run --release -p sluice-bench -- flight-exchange --seconds 10 --codec none,lz4,zstd
//! ```
//!
//! `flight-doget` measures a Flight client reading a sink table from the sink-table service:
//!
//! ```text
//! cargo run --release -p sluice-bench -- flight-doget --rows 10000000 --query "SELECT * FROM bench WHERE price > 5000"
//! ```

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use serde::Serialize;
use sluice_coordinator::local::{LocalOptions, run_job};
use sluice_datasets::nexmark::NexmarkConfig;
use sluice_engine::api::StreamEnvironment;
use sluice_engine::api::nexmark::{NexmarkQuery, add_query};
use sluice_engine::connector::SinkSpec;
use sluice_engine::runtime::JobEnvironment;

#[path = "throughput/flight_doget.rs"]
mod flight_doget;
#[path = "throughput/flight_exchange.rs"]
mod flight_exchange;
#[path = "throughput/tpch.rs"]
mod tpch;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "sluice-bench", about = "Sluice throughput harness")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Nexmark queries over the generator into a blackhole sink.
    Nexmark {
        /// q0, q1, q2, count, hop, join, or all.
        #[arg(long, default_value = "q1")]
        query: String,
        #[arg(long, default_value_t = 10_000_000)]
        events: u64,
        #[arg(long, default_value_t = 1)]
        parallelism: u32,
        /// Runs per query; the best is reported (machines here are shared and noisy).
        #[arg(long, default_value_t = 3)]
        repeat: u32,
        #[arg(long)]
        batch_size: Option<usize>,
        /// Where the JSON report goes.
        #[arg(long, default_value = "bench-results/nexmark.json")]
        output: PathBuf,
    },
    /// TPC-H queries of `examples/tpch/` in batch mode over generated Parquet files.
    Tpch(tpch::Options),
    /// Arrow Flight exchange throughput of one channel between two processes on loopback.
    FlightExchange(flight_exchange::SendOptions),
    /// Reading a sink table from the sink-table Flight service on loopback (DoGet, and a
    /// Flight SQL statement with --query).
    FlightDoget(flight_doget::Options),
    /// The receiving process of `flight-exchange` (started by it).
    #[command(hide = true)]
    FlightExchangeReceive(flight_exchange::ReceiveOptions),
}

#[derive(Serialize)]
struct Run {
    query: String,
    events: u64,
    parallelism: u32,
    best_seconds: f64,
    median_seconds: f64,
    events_per_second: f64,
    events_per_second_per_core: f64,
    output_rows: u64,
}

#[derive(Serialize)]
struct Report {
    machine: Machine,
    peak_rss_bytes: u64,
    runs: Vec<Run>,
}

#[derive(Serialize)]
struct Machine {
    cores: usize,
    cpu: String,
    memory_bytes: u64,
    os: String,
}

fn proc_value(file: &str, key: &str) -> Option<String> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
}

fn kib(value: Option<String>) -> u64 {
    value
        .and_then(|v| {
            v.split_whitespace()
                .next()
                .and_then(|n| n.parse::<u64>().ok())
        })
        .map_or(0, |k| k * 1024)
}

fn machine() -> Machine {
    Machine {
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        cpu: proc_value("/proc/cpuinfo", "model name").unwrap_or_else(|| "unknown".into()),
        memory_bytes: kib(proc_value("/proc/meminfo", "MemTotal")),
        os: std::env::consts::OS.to_string(),
    }
}

fn nexmark_once(
    query: NexmarkQuery,
    events: u64,
    parallelism: u32,
    batch_size: Option<usize>,
) -> anyhow::Result<(Duration, u64)> {
    let env = StreamEnvironment::new(format!("nexmark-{query}")).with_parallelism(parallelism);
    let config = query.configure(NexmarkConfig::default().with_events(Some(events)));
    add_query(&env, query, config, SinkSpec::Blackhole)?;
    let (graph, registry) = env.build()?;
    let job_env = JobEnvironment {
        registry,
        ..Default::default()
    };
    let options = LocalOptions {
        slots: Some(parallelism as usize),
        batch_size,
    };
    let result = run_job(&graph, &job_env, &options)?;
    let output_rows = result.vertex("sink").map_or(0, |v| v.metrics.records_in);
    Ok((result.wall_time, output_rows))
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Tpch(options) => tpch::run(options),
        Command::FlightExchange(options) => flight_exchange::run(options),
        Command::FlightDoget(options) => flight_doget::run(options),
        Command::FlightExchangeReceive(options) => flight_exchange::receive(options),
        Command::Nexmark {
            query,
            events,
            parallelism,
            repeat,
            batch_size,
            output,
        } => {
            let queries: Vec<NexmarkQuery> = if query == "all" {
                NexmarkQuery::ALL.to_vec()
            } else {
                query.split(',').map(str::parse).collect::<Result<_, _>>()?
            };
            let cores_used = parallelism.min(machine().cores as u32).max(1);
            let mut runs = Vec::new();
            for query in queries {
                let mut times = Vec::new();
                let mut output_rows = 0;
                for _ in 0..repeat.max(1) {
                    let (time, rows) = nexmark_once(query, events, parallelism, batch_size)?;
                    times.push(time.as_secs_f64());
                    output_rows = rows;
                }
                times.sort_by(f64::total_cmp);
                let best = times[0];
                let median = times[times.len() / 2];
                let rate = events as f64 / best;
                println!(
                    "nexmark {query:<5} p={parallelism} events={events}: best {best:.3} s, median {median:.3} s, {:.2} M events/s, {:.2} M events/s per core, {output_rows} output rows",
                    rate / 1e6,
                    rate / f64::from(cores_used) / 1e6
                );
                runs.push(Run {
                    query: query.to_string(),
                    events,
                    parallelism,
                    best_seconds: best,
                    median_seconds: median,
                    events_per_second: rate,
                    events_per_second_per_core: rate / f64::from(cores_used),
                    output_rows,
                });
            }
            let report = Report {
                machine: machine(),
                peak_rss_bytes: kib(proc_value("/proc/self/status", "VmHWM")),
                runs,
            };
            write_report(&output, &report)?;
            println!("report written to {}", output.display());
            Ok(())
        }
    }
}

/// Writes `report` as pretty JSON to `path`, creating its directory.
fn write_report(path: &std::path::Path, report: &impl Serialize) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("create '{}'", dir.display()))?;
    }
    std::fs::write(path, serde_json::to_string_pretty(report)?)
        .with_context(|| format!("write '{}'", path.display()))
}
