//! `flight-exchange`: throughput of one remote exchange channel between two processes on
//! loopback.
//!
//! This process is the sending TaskManager; it re-executes itself with the hidden
//! `flight-exchange-receive` subcommand as the receiving TaskManager. Both run a real
//! [`ExchangeServer`] and a [`FlightExchange`], the code path of a TaskManager's remote
//! channels: IPC encoding (optionally compressed), one `DoExchange` stream, credits, decoding
//! and the consumer's bounded queue. The producer and the consumer are plain threads standing
//! in for slot threads.
//!
//! The measured interval starts when the receiver takes a watermark the sender puts in-band
//! after a warm-up, and ends when it takes end-of-input. Bytes counted are the Arrow buffer
//! bytes (values, offsets and validity) of the batches the receiver took out of its channel,
//! so compression makes the wire smaller but does not inflate the figure.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use arrow::array::{ArrayData, ArrayRef, Float64Array, Int64Array, TimestampMillisecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};
use sluice_datasets::nexmark::{NexmarkConfig, NexmarkGenerator, NexmarkTable};
use sluice_engine::element::{StreamElement, Watermark};
use sluice_engine::ids::{AttemptNumber, JobId, SubtaskIndex, VertexId};
use sluice_engine::runtime::exchange::{ChannelId, ExchangeFactory, OutputChannel, SlotWaker};
use sluice_flight::codec::Compression;
use sluice_flight::{
    ExchangeConfig, ExchangePlacement, ExchangeServer, FlightExchange, TaskManagerId,
};

use super::{Machine, machine};

/// Distinct batches the sender cycles through (generated before the measurement).
const POOL: usize = 16;
/// How long a blocked producer or an idle consumer parks before looking again; a credit or an
/// element wakes it sooner.
const PARK: Duration = Duration::from_millis(20);

/// Options of `flight-exchange`.
#[derive(clap::Args)]
pub struct SendOptions {
    /// Measured seconds per run (after the warm-up).
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Seconds sent before the measurement starts.
    #[arg(long, default_value_t = 1.0)]
    warmup_seconds: f64,
    /// IPC compression, comma-separated for several runs: none, lz4, zstd.
    #[arg(long, default_value = "none")]
    codec: String,
    /// Rows per batch.
    #[arg(long, default_value_t = 8192)]
    batch_rows: usize,
    /// Credits per channel (elements the receiver buffers).
    #[arg(long, default_value_t = 8)]
    credits: u32,
    /// Batches sent, comma-separated for several runs: `fixed` (four fixed-width columns:
    /// two int64, a float64 and a millisecond timestamp) or `bid` (Nexmark bids, with strings).
    #[arg(long, default_value = "fixed,bid")]
    data: String,
    /// Where the JSON report goes.
    #[arg(long, default_value = "bench-results/flight-exchange.json")]
    output: PathBuf,
}

/// Options of the hidden receiving side.
#[derive(clap::Args)]
pub struct ReceiveOptions {
    #[arg(long, default_value_t = 8)]
    credits: u32,
}

/// What the receiver measured, sent to the sender as one JSON line.
#[derive(Serialize, Deserialize)]
struct Received {
    batches: u64,
    rows: u64,
    /// Arrow buffer bytes of the batches taken out of the channel.
    bytes: u64,
    seconds: f64,
}

#[derive(Serialize)]
struct Run {
    data: String,
    codec: String,
    batch_rows: usize,
    credits: u32,
    /// Arrow buffer bytes of one batch, averaged over the pool.
    batch_bytes: u64,
    batches: u64,
    rows: u64,
    bytes: u64,
    seconds: f64,
    gb_per_second: f64,
    rows_per_second: f64,
    /// Load average (1 min) when the run ended: the machine is shared.
    load_average: f64,
}

#[derive(Serialize)]
struct Report {
    machine: Machine,
    streams: u32,
    runs: Vec<Run>,
}

const JOB: &str = "f1e0f1e0f1e0f1e0f1e0f1e0f1e0f1e0";

fn tm(name: &str) -> TaskManagerId {
    TaskManagerId(name.to_string())
}

const CHANNEL: ChannelId = ChannelId {
    edge: 0,
    from: SubtaskIndex(0),
    to: SubtaskIndex(0),
};

fn placement(receiver_address: &str) -> ExchangePlacement {
    ExchangePlacement::from_edges(vec![(VertexId(0), VertexId(1))])
        .with_subtask(VertexId(0), SubtaskIndex(0), tm("sender"))
        .with_subtask(VertexId(1), SubtaskIndex(0), tm("receiver"))
        .with_task_manager(tm("receiver"), receiver_address)
}

/// Bytes of the Arrow buffers (values, offsets, validity, children) of `batch`.
pub(super) fn buffer_bytes(batch: &RecordBatch) -> u64 {
    fn data_bytes(data: &ArrayData) -> u64 {
        let buffers: usize = data.buffers().iter().map(|b| b.len()).sum();
        let nulls = data.nulls().map_or(0, |n| n.buffer().len());
        (buffers + nulls) as u64 + data.child_data().iter().map(data_bytes).sum::<u64>()
    }
    batch
        .columns()
        .iter()
        .map(|c| data_bytes(&c.to_data()))
        .sum()
}

pub(super) fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(f64::NAN)
}

pub(super) fn fixed_batches(rows: usize) -> anyhow::Result<Vec<RecordBatch>> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("auction", DataType::Int64, false),
        Field::new("bidder", DataType::Int64, false),
        Field::new("price", DataType::Float64, false),
        Field::new(
            "date_time",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            false,
        ),
    ]));
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..POOL)
        .map(|_| {
            let columns: Vec<ArrayRef> = vec![
                Arc::new(Int64Array::from_iter_values(
                    (0..rows).map(|_| 1000 + (next() % 10_000) as i64),
                )),
                Arc::new(Int64Array::from_iter_values(
                    (0..rows).map(|_| (next() % 100_000) as i64),
                )),
                Arc::new(Float64Array::from_iter_values(
                    (0..rows).map(|_| (next() % 1_000_000) as f64 / 100.0),
                )),
                Arc::new(TimestampMillisecondArray::from_iter_values(
                    (0..rows as i64).map(|i| 1_700_000_000_000 + i),
                )),
            ];
            Ok(RecordBatch::try_new(schema.clone(), columns)?)
        })
        .collect()
}

pub(super) fn bid_batches(rows: usize) -> anyhow::Result<Vec<RecordBatch>> {
    let mut generator = NexmarkGenerator::new(NexmarkConfig::default(), 0, None)?;
    (0..POOL)
        .map(|_| {
            generator
                .next_table_batch(NexmarkTable::Bid, rows)?
                .context("the unbounded generator ended")
        })
        .collect()
}

fn parse_codec(name: &str) -> anyhow::Result<Compression> {
    Ok(Compression::parse(name)?)
}

/// The receiving process: serves, prints its address, receives one channel until end-of-input
/// and prints what it measured.
pub fn receive(options: ReceiveOptions) -> anyhow::Result<()> {
    let config = ExchangeConfig::default().with_credits_per_channel(options.credits);
    let server = ExchangeServer::start("127.0.0.1:0", config)?;
    let address = server.address().to_string();
    let exchange = FlightExchange::new(
        server.clone(),
        JobId(JOB.into()),
        AttemptNumber(0),
        tm("receiver"),
        placement(&address),
    );
    let waker = SlotWaker::new();
    waker.bind_current();
    let mut input = exchange.input(CHANNEL, &waker)?;
    {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "address {address}")?;
        stdout.flush()?;
    }
    let mut measuring: Option<Instant> = None;
    let mut received = Received {
        batches: 0,
        rows: 0,
        bytes: 0,
        seconds: 0.0,
    };
    loop {
        match input.try_recv()? {
            Some(StreamElement::Batch(batch)) => {
                if measuring.is_some() {
                    received.batches += 1;
                    received.rows += batch.num_rows() as u64;
                    received.bytes += buffer_bytes(&batch);
                }
            }
            Some(StreamElement::Watermark(_)) => {
                measuring.get_or_insert_with(Instant::now);
            }
            Some(StreamElement::Barrier(_)) => {}
            Some(StreamElement::EndOfInput) => break,
            None => std::thread::park_timeout(PARK),
        }
    }
    received.seconds = measuring.map_or(0.0, |start| start.elapsed().as_secs_f64());
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{}", serde_json::to_string(&received)?)?;
    stdout.flush()?;
    Ok(())
}

/// Offers `element` until the channel takes it, parking while it has no credit.
fn send(output: &mut dyn OutputChannel, mut element: StreamElement) -> anyhow::Result<()> {
    while let Some(back) = output.try_send(element)? {
        element = back;
        std::thread::park_timeout(PARK);
    }
    Ok(())
}

fn one_run(
    options: &SendOptions,
    data: &str,
    batches: &[RecordBatch],
    codec: &str,
) -> anyhow::Result<Run> {
    let exe = std::env::current_exe().context("locate this executable")?;
    let mut child = Command::new(exe)
        .args([
            "flight-exchange-receive",
            "--credits",
            &options.credits.to_string(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("start the receiving process")?;
    let stdout = child.stdout.take().context("the receiver's stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let first = lines
        .next()
        .context("the receiver exited before printing its address")??;
    let Some(address) = first.strip_prefix("address ") else {
        bail!("unexpected first line from the receiver: {first}");
    };

    let config = ExchangeConfig::default()
        .with_credits_per_channel(options.credits)
        .with_compression(parse_codec(codec)?);
    let server = ExchangeServer::start("127.0.0.1:0", config)?;
    let exchange = FlightExchange::new(
        server.clone(),
        JobId(JOB.into()),
        AttemptNumber(0),
        tm("sender"),
        placement(address),
    );
    let waker = SlotWaker::new();
    waker.bind_current();
    let mut output = exchange.output(CHANNEL, &waker)?;

    let mut index = 0;
    let mut send_for = |seconds: f64, output: &mut dyn OutputChannel| -> anyhow::Result<()> {
        let end = Instant::now() + Duration::from_secs_f64(seconds);
        while Instant::now() < end {
            send(
                output,
                StreamElement::Batch(batches[index % batches.len()].clone()),
            )?;
            index += 1;
        }
        Ok(())
    };
    send_for(options.warmup_seconds, output.as_mut())?;
    send(output.as_mut(), StreamElement::Watermark(Watermark(0)))?;
    send_for(options.seconds, output.as_mut())?;
    send(output.as_mut(), StreamElement::EndOfInput)?;

    let line = lines
        .next()
        .context("the receiver exited before reporting")??;
    let received: Received =
        serde_json::from_str(&line).with_context(|| format!("the receiver's report: {line}"))?;
    let status = child.wait().context("wait for the receiver")?;
    if !status.success() {
        bail!("the receiving process failed: {status}");
    }
    drop(output);
    drop(exchange);
    drop(server);
    let batch_bytes = batches.iter().map(buffer_bytes).sum::<u64>() / batches.len() as u64;
    Ok(Run {
        data: data.to_string(),
        codec: codec.to_string(),
        batch_rows: options.batch_rows,
        credits: options.credits,
        batch_bytes,
        batches: received.batches,
        rows: received.rows,
        bytes: received.bytes,
        seconds: received.seconds,
        gb_per_second: received.bytes as f64 / received.seconds / 1e9,
        rows_per_second: received.rows as f64 / received.seconds,
        load_average: load_average(),
    })
}

/// The sending process: one run per (data, codec), each against a fresh receiving process.
pub fn run(options: SendOptions) -> anyhow::Result<()> {
    let mut runs = Vec::new();
    for data in options.data.split(',').map(str::trim) {
        let batches = match data {
            "fixed" => fixed_batches(options.batch_rows)?,
            "bid" => bid_batches(options.batch_rows)?,
            other => bail!("unknown --data {other}: expected fixed or bid"),
        };
        for codec in options.codec.split(',').map(str::trim) {
            let run = one_run(&options, data, &batches, codec)?;
            println!(
                "flight-exchange data={:<5} codec={:<4} rows/batch={} credits={}: {:.3} GB/s per stream, {:.2} M rows/s, {} batches of {} KiB in {:.2} s (load {:.2})",
                run.data,
                run.codec,
                run.batch_rows,
                run.credits,
                run.gb_per_second,
                run.rows_per_second / 1e6,
                run.batches,
                run.batch_bytes / 1024,
                run.seconds,
                run.load_average,
            );
            runs.push(run);
        }
    }
    let report = Report {
        machine: machine(),
        streams: 1,
        runs,
    };
    super::write_report(&options.output, &report)?;
    println!("report written to {}", options.output.display());
    Ok(())
}
