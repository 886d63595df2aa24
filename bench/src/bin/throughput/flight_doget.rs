//! `flight-doget`: how fast a Flight client reads a sink table from the sink-table service over
//! loopback.
//!
//! The process holds one in-memory table of `--rows` rows in batches of `--batch-rows`, split
//! into `--partitions` partitions, serves it with a real [`SinkTableServer`] and reads it with
//! arrow-flight's `FlightClient` on the same runtime: `GetFlightInfo`, then one `DoGet` per
//! endpoint, all endpoints at once. With `--query` each run also reads the table through a
//! Flight SQL statement (parse, plan, filter on the server). The table's batches cycle through
//! a pool of 16 distinct batches that share their buffers, as a sink table's scan does: what
//! is measured is encoding, the transport and decoding, not generation.
//!
//! Bytes counted are the Arrow buffer bytes of the batches the client decoded (what it
//! receives, not the IPC framing).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use arrow_flight::sql::client::FlightSqlServiceClient;
use arrow_flight::{FlightClient, FlightDescriptor, FlightInfo};
use futures::TryStreamExt;
use serde::Serialize;
use sluice_flight::sink_table::{
    PartitionLocation, ScanError, SinkTableCatalog, SinkTableInfo, SinkTableServer,
    SinkTableService,
};
use tokio::task::JoinSet;
use tonic::transport::{Channel, Endpoint};

use super::flight_exchange::{bid_batches, buffer_bytes, fixed_batches, load_average};
use super::{Machine, machine};

/// The client's HTTP/2 windows: `DoGet` streams are bounded by what the receiver admits
/// in flight; the defaults (64 KiB) stall a 2 MiB message several times per message.
const STREAM_WINDOW: u32 = 8 << 20;
const CONNECTION_WINDOW: u32 = 32 << 20;

const TABLE: &str = "bench";

/// Options of `flight-doget`.
#[derive(clap::Args)]
pub struct Options {
    /// Rows of the table.
    #[arg(long, default_value_t = 10_000_000)]
    rows: usize,
    /// Rows per batch of the table.
    #[arg(long, default_value_t = 8192)]
    batch_rows: usize,
    /// Partitions (endpoints, read concurrently).
    #[arg(long, default_value_t = 1)]
    partitions: u32,
    /// Rows of the table, comma-separated for several runs: `fixed` (two int64, a float64 and
    /// a millisecond timestamp) or `bid` (Nexmark bids, with strings).
    #[arg(long, default_value = "fixed,bid")]
    data: String,
    /// A Flight SQL statement over table `bench` also read in each run, e.g.
    /// "SELECT * FROM bench WHERE price > 5000".
    #[arg(long)]
    query: Option<String>,
    /// Client connections: endpoints are read over them round-robin (HTTP/2 multiplexes the
    /// streams of one connection over one socket).
    #[arg(long, default_value_t = 1)]
    connections: u32,
    /// The service's largest `DoGet` message in bytes.
    #[arg(long, default_value_t = 2 << 20)]
    max_message_bytes: usize,
    /// Runs per measurement; the best is reported (machines here are shared and noisy).
    #[arg(long, default_value_t = 3)]
    repeat: u32,
    /// Where the JSON report goes.
    #[arg(long, default_value = "bench-results/flight-doget.json")]
    output: PathBuf,
}

/// One table, split into partitions, all served by this process.
struct BenchCatalog {
    schema: SchemaRef,
    partitions: Vec<Vec<RecordBatch>>,
    rows: u64,
}

impl SinkTableCatalog for BenchCatalog {
    fn tables(&self) -> Vec<SinkTableInfo> {
        vec![SinkTableInfo {
            name: TABLE.into(),
            schema: self.schema.clone(),
            job_id: "bench".into(),
            job_state: "FINISHED".into(),
            primary_key: Vec::new(),
            rows: Some(self.rows),
            partitions: (0..self.partitions.len() as u32)
                .map(|p| PartitionLocation {
                    partition: Some(p),
                    location: None,
                })
                .collect(),
        }]
    }

    fn scan(
        &self,
        table: &str,
        partition: Option<u32>,
    ) -> Result<(SchemaRef, Vec<RecordBatch>), ScanError> {
        if table != TABLE {
            return Err(ScanError::NotFound(table.into()));
        }
        let batches = match partition {
            None => self.partitions.concat(),
            Some(p) => self
                .partitions
                .get(p as usize)
                .cloned()
                .ok_or_else(|| ScanError::Failed(format!("no partition {p}")))?,
        };
        Ok((self.schema.clone(), batches))
    }
}

/// The table: `rows` rows cycling through `pool`, dealt round-robin to `partitions`.
fn catalog(pool: &[RecordBatch], rows: usize, partitions: u32) -> BenchCatalog {
    let batch_rows = pool[0].num_rows();
    let mut table = vec![Vec::new(); partitions.max(1) as usize];
    let mut left = rows;
    let mut index = 0;
    while left > 0 {
        let batch = &pool[index % pool.len()];
        let batch = if left < batch_rows {
            batch.slice(0, left)
        } else {
            batch.clone()
        };
        left -= batch.num_rows();
        let count = table.len();
        table[index % count].push(batch);
        index += 1;
    }
    BenchCatalog {
        schema: pool[0].schema(),
        partitions: table,
        rows: rows as u64,
    }
}

#[derive(Default)]
struct Received {
    batches: u64,
    rows: u64,
    bytes: u64,
}

#[derive(Serialize)]
struct Run {
    data: String,
    /// `doget` (plain Flight) or the Flight SQL statement.
    read: String,
    rows_in_table: usize,
    batch_rows: usize,
    partitions: u32,
    connections: u32,
    max_message_bytes: usize,
    batches: u64,
    rows: u64,
    bytes: u64,
    best_seconds: f64,
    median_seconds: f64,
    rows_per_second: f64,
    mb_per_second: f64,
    /// Load average (1 min) when the runs ended: the machine is shared.
    load_average: f64,
}

#[derive(Serialize)]
struct Report {
    machine: Machine,
    runs: Vec<Run>,
}

async fn connect(address: SocketAddr) -> anyhow::Result<Channel> {
    Ok(Endpoint::from_shared(format!("http://{address}"))?
        .tcp_nodelay(true)
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .connect_timeout(Duration::from_secs(10))
        .connect()
        .await?)
}

/// Reads every endpoint of `info` at once.
async fn read_endpoints(channels: &[Channel], info: &FlightInfo) -> anyhow::Result<Received> {
    let mut readers = JoinSet::new();
    for (endpoint, channel) in info.endpoint.iter().zip(channels.iter().cycle()) {
        let ticket = endpoint
            .ticket
            .clone()
            .context("an endpoint without a ticket")?;
        let mut client = FlightClient::new(channel.clone());
        readers.spawn(async move {
            let mut stream = client.do_get(ticket).await?;
            let mut received = Received::default();
            while let Some(batch) = stream.try_next().await? {
                received.batches += 1;
                received.rows += batch.num_rows() as u64;
                received.bytes += buffer_bytes(&batch);
            }
            anyhow::Ok(received)
        });
    }
    let mut total = Received::default();
    while let Some(received) = readers.join_next().await {
        let received = received??;
        total.batches += received.batches;
        total.rows += received.rows;
        total.bytes += received.bytes;
    }
    Ok(total)
}

async fn read_once(
    channels: &[Channel],
    query: Option<&str>,
) -> anyhow::Result<(Duration, Received)> {
    let channel = &channels[0];
    let start = Instant::now();
    let info = match query {
        None => {
            FlightClient::new(channel.clone())
                .get_flight_info(FlightDescriptor::new_path(vec![TABLE.into()]))
                .await?
        }
        Some(sql) => {
            FlightSqlServiceClient::new(channel.clone())
                .execute(sql.to_string(), None)
                .await?
        }
    };
    let received = read_endpoints(channels, &info).await?;
    Ok((start.elapsed(), received))
}

async fn measure(options: &Options, data: &str, pool: &[RecordBatch]) -> anyhow::Result<Vec<Run>> {
    let catalog = Arc::new(catalog(pool, options.rows, options.partitions));
    let service = SinkTableService::new(catalog).with_max_message_bytes(options.max_message_bytes);
    let server = SinkTableServer::bind("127.0.0.1:0".parse()?, service).await?;
    let address = server.address();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let mut serving = JoinSet::new();
    serving.spawn(server.serve(async {
        stopped.await.ok();
    }));
    let mut channels = Vec::new();
    for _ in 0..options.connections.max(1) {
        channels.push(connect(address).await?);
    }

    let mut reads = vec![None];
    reads.extend(options.query.as_deref().map(Some));
    let mut runs = Vec::new();
    for query in reads {
        let mut times = Vec::new();
        let mut received = Received::default();
        for _ in 0..options.repeat.max(1) {
            let (time, got) = read_once(&channels, query).await?;
            times.push(time.as_secs_f64());
            received = got;
        }
        times.sort_by(f64::total_cmp);
        let best = times[0];
        let median = times[times.len() / 2];
        let read = query.unwrap_or("doget").to_string();
        let run = Run {
            data: data.to_string(),
            read,
            rows_in_table: options.rows,
            batch_rows: options.batch_rows,
            partitions: options.partitions,
            connections: options.connections.max(1),
            max_message_bytes: options.max_message_bytes,
            batches: received.batches,
            rows: received.rows,
            bytes: received.bytes,
            best_seconds: best,
            median_seconds: median,
            rows_per_second: received.rows as f64 / best,
            mb_per_second: received.bytes as f64 / best / 1e6,
            load_average: load_average(),
        };
        println!(
            "flight-doget {data:<5} {:<40} rows={} partitions={} connections={}: best {best:.3} s, median {median:.3} s, {:.2} M rows/s, {:.0} MB/s ({} batches, {:.1} MB)",
            run.read,
            run.rows,
            run.partitions,
            run.connections,
            run.rows_per_second / 1e6,
            run.mb_per_second,
            run.batches,
            run.bytes as f64 / 1e6,
        );
        runs.push(run);
    }
    stop.send(()).ok();
    if let Some(served) = serving.join_next().await {
        served??;
    }
    Ok(runs)
}

pub fn run(options: Options) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(machine().cores.max(1))
        .enable_all()
        .build()?;
    let mut runs = Vec::new();
    for data in options.data.split(',').map(str::trim) {
        let pool = match data {
            "fixed" => fixed_batches(options.batch_rows)?,
            "bid" => bid_batches(options.batch_rows)?,
            other => anyhow::bail!("unknown --data '{other}' (fixed or bid)"),
        };
        runs.extend(runtime.block_on(measure(&options, data, &pool))?);
    }
    let report = Report {
        machine: machine(),
        runs,
    };
    super::write_report(&options.output, &report)?;
    println!("wrote {}", options.output.display());
    Ok(())
}
