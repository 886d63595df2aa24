//! A user binary: registers its own functions, runs TaskManagers that know them, and submits
//! jobs that use them to a running cluster.
//!
//! ```text
//! sluice jobmanager --rest-port 8081 --rpc-port 6123 &
//! cargo run -p sluice-coordinator --example user_functions -- taskmanager --jobmanager 127.0.0.1:6123 &
//! cargo run -p sluice-coordinator --example user_functions -- scale \
//!     --jobmanager http://127.0.0.1:8081 --input in.csv --output out --factor 3
//! ```
//!
//! `scale` reads a CSV file of `(id BIGINT, x BIGINT)`, multiplies `x` by the factor in the
//! user function `scale` and writes CSV files into the output directory. `slow-sink` submits a
//! Nexmark bid stream into `throttle`, a function that sleeps on every batch of one subtask
//! (what the cross-TaskManager backpressure test runs). See `docs/user-code.md`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};
use clap::{Parser, Subcommand};
use serde_json::{Value, json};
use sluice_coordinator::cli::TaskManagerArgs;
use sluice_coordinator::remote::RemoteEnvironment;
use sluice_datasets::nexmark::{NexmarkConfig, NexmarkTable};
use sluice_engine::api::{StreamEnvironment, UserFunctions};
use sluice_engine::connector::{
    FileFormat, FileSinkSpec, FileSourceSpec, NexmarkSource, SinkSpec, SourceSpec,
};
use sluice_engine::operator::{Operator, OperatorContext, Output};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The functions this binary registers. Every binary that runs a job's TaskManagers must
/// register the job's functions under the same names.
fn functions() -> UserFunctions {
    UserFunctions::new()
        .map_batches("scale", |config: &Value| {
            let column = config["column"].as_str().unwrap_or("x").to_string();
            let factor = config["factor"].as_i64().ok_or_else(|| {
                sluice_engine::Error::plan("scale", "config needs an integer 'factor'")
            })?;
            Ok(move |batch: &RecordBatch| scale(batch, &column, factor))
        })
        .register_operator("throttle", throttle)
}

/// Multiplies the Int64 column `column` by `factor` (one kernel call per batch).
fn scale(batch: &RecordBatch, column: &str, factor: i64) -> sluice_engine::Result<RecordBatch> {
    let index = batch
        .schema()
        .index_of(column)
        .map_err(|e| sluice_engine::Error::plan("scale", e.to_string()))?;
    let scaled =
        arrow::compute::kernels::numeric::mul(batch.column(index), &Int64Array::new_scalar(factor))
            .map_err(|e| sluice_engine::Error::plan("scale", e.to_string()))?;
    let mut columns = batch.columns().to_vec();
    columns[index] = scaled;
    RecordBatch::try_new(batch.schema(), columns)
        .map_err(|e| sluice_engine::Error::plan("scale", e.to_string()))
}

/// Drops every batch; subtask `subtask` of the config first sleeps `delay-ms` per batch and
/// writes how many rows it has seen to `progress-dir/rows` (so a test can watch it progress).
fn throttle(config: &Value, ctx: &OperatorContext) -> sluice_engine::Result<Box<dyn Operator>> {
    Ok(Box::new(Throttle {
        slow: config["subtask"].as_u64() == Some(u64::from(ctx.subtask.0)),
        delay: Duration::from_millis(config["delay-ms"].as_u64().unwrap_or(10)),
        progress: config["progress-dir"]
            .as_str()
            .map(|dir| PathBuf::from(dir).join("rows")),
        rows: 0,
    }))
}

struct Throttle {
    slow: bool,
    delay: Duration,
    progress: Option<PathBuf>,
    rows: usize,
}

impl Operator for Throttle {
    fn process_batch(
        &mut self,
        _input: usize,
        batch: RecordBatch,
        _out: &mut Output,
    ) -> sluice_engine::Result<()> {
        if !self.slow {
            return Ok(());
        }
        std::thread::sleep(self.delay);
        self.rows += batch.num_rows();
        if let Some(progress) = &self.progress {
            std::fs::write(progress, self.rows.to_string()).map_err(|e| {
                sluice_engine::Error::plan("throttle", format!("progress file: {e}"))
            })?;
        }
        Ok(())
    }
}

#[derive(Parser)]
#[command(
    name = "user_functions",
    about = "A Sluice user binary with its own functions"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs a TaskManager that knows this binary's functions (flags as `sluice taskmanager`).
    Taskmanager(TaskManagerArgs),
    /// Submits `x * factor` over a CSV file of (id, x) and waits for the job to end.
    Scale {
        #[arg(long, default_value = "http://127.0.0.1:8081")]
        jobmanager: String,
        #[arg(long)]
        input: PathBuf,
        #[arg(long)]
        output: PathBuf,
        #[arg(long, default_value_t = 2)]
        factor: i64,
        #[arg(long, default_value_t = 2)]
        parallelism: u32,
    },
    /// Submits Nexmark bids into the `throttle` function behind a rebalance and prints the
    /// job id without waiting.
    SlowSink {
        #[arg(long, default_value = "http://127.0.0.1:8081")]
        jobmanager: String,
        /// Number of generated events.
        #[arg(long, default_value_t = 2_000_000)]
        events: u64,
        /// Average bytes of `extra` per bid.
        #[arg(long, default_value_t = 1000)]
        extra_bytes: u32,
        /// Sleep per batch of the slow subtask, in milliseconds.
        #[arg(long, default_value_t = 20)]
        delay_ms: u64,
        /// The throttle's subtask that sleeps (of 2).
        #[arg(long, default_value_t = 1)]
        slow_subtask: u32,
        /// Where the slow subtask writes its row count.
        #[arg(long)]
        progress_dir: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SLUICE_LOG").unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new("warn,sluice_coordinator=info")
            }),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Taskmanager(args) => args.run(functions())?,
        Command::Scale {
            jobmanager,
            input,
            output,
            factor,
            parallelism,
        } => {
            let schema = Arc::new(Schema::new(vec![
                Field::new("id", DataType::Int64, false),
                Field::new("x", DataType::Int64, false),
            ]));
            let env = StreamEnvironment::new("scale").with_parallelism(parallelism);
            env.source(
                "input",
                SourceSpec::Filesystem(FileSourceSpec {
                    path: input.display().to_string(),
                    format: FileFormat::Csv,
                    schema: schema.clone(),
                    options: BTreeMap::new(),
                    partition_keys: Vec::new(),
                    predicate: None,
                    dictionaries: false,
                }),
            )?
            .user_function("scale", json!({ "column": "x", "factor": factor }), schema)?
            .sink(
                "output",
                SinkSpec::Filesystem(FileSinkSpec {
                    path: output.display().to_string(),
                    format: FileFormat::Csv,
                    options: BTreeMap::new(),
                    partition_keys: Vec::new(),
                    overwrite: None,
                }),
            )?;
            let cluster = RemoteEnvironment::new(jobmanager);
            let job_id = cluster.submit(&env)?;
            println!("{job_id}");
            let status = cluster.wait(&job_id, Duration::from_secs(600))?;
            if status.state != "FINISHED" {
                anyhow::bail!(
                    "job {job_id} ended {}: {}",
                    status.state,
                    status.failure.unwrap_or_default()
                );
            }
        }
        Command::SlowSink {
            jobmanager,
            events,
            extra_bytes,
            delay_ms,
            slow_subtask,
            progress_dir,
        } => {
            let mut config = NexmarkConfig::default().with_events(Some(events));
            config.bid_extra_avg_len = extra_bytes;
            // One source subtask (slot 0) feeding two throttle subtasks (slots 0 and 1)
            // through a rebalance: with one slot per TaskManager, half of the bids cross to
            // the other TaskManager.
            let env = StreamEnvironment::new("slow-sink").with_parallelism(2);
            let bids = env
                .source(
                    "bid",
                    SourceSpec::Nexmark(NexmarkSource::new(NexmarkTable::Bid, config)),
                )?
                .parallelism(1)?;
            let schema = bids.schema();
            let mut throttle_config = json!({ "subtask": slow_subtask, "delay-ms": delay_ms });
            if let Some(dir) = progress_dir {
                throttle_config["progress-dir"] = json!(dir.display().to_string());
            }
            bids.user_function("throttle", throttle_config, schema)?
                .sink("discard", SinkSpec::Blackhole)?;
            let job_id = RemoteEnvironment::new(jobmanager).submit(&env)?;
            println!("{job_id}");
        }
    }
    Ok(())
}
