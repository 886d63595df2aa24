//! Criterion benchmark of one remote exchange channel: two TaskManagers' Flight exchanges in
//! one process on loopback TCP, a producer thread and a consumer thread, 8192-row batches of
//! four columns (bid-like with a string column, or four fixed-width columns), without and with
//! LZ4 or ZSTD IPC compression. Reports the time per batch (batches/s is its inverse) and
//! bytes/s of the batch's Arrow buffers (values, offsets, validity).
//! Run: `cargo bench -p sluice-bench --bench exchange`. The two-process figure comes from
//! `sluice-bench flight-exchange`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arrow::array::{ArrayData, Float64Array, Int64Array, StringArray, TimestampMillisecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::record_batch::RecordBatch;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sluice_engine::element::StreamElement;
use sluice_engine::ids::{AttemptNumber, JobId, SubtaskIndex, VertexId};
use sluice_engine::runtime::exchange::{ChannelId, ExchangeFactory, SlotWaker};
use sluice_flight::codec::Compression;
use sluice_flight::{
    ExchangeConfig, ExchangePlacement, ExchangeServer, FlightExchange, TaskManagerId,
};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ROWS: usize = 8192;

/// Bid-like columns: auction id, bidder id, price and a channel name.
fn batch() -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("auction", DataType::Int64, false),
        Field::new("bidder", DataType::Int64, false),
        Field::new("price", DataType::Float64, false),
        Field::new("channel", DataType::Utf8, false),
    ]));
    let mut state = 42u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let auctions: Vec<i64> = (0..ROWS).map(|_| 1000 + (next() % 10_000) as i64).collect();
    let bidders: Vec<i64> = (0..ROWS).map(|_| (next() % 100_000) as i64).collect();
    let prices: Vec<f64> = (0..ROWS)
        .map(|_| (next() % 1_000_000) as f64 / 100.0)
        .collect();
    let channels: Vec<String> = (0..ROWS)
        .map(|_| format!("channel-{}", next() % 50))
        .collect();
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from(auctions)),
            Arc::new(Int64Array::from(bidders)),
            Arc::new(Float64Array::from(prices)),
            Arc::new(StringArray::from(channels)),
        ],
    )
    .expect("valid batch")
}

/// Four fixed-width columns: auction id, bidder id, price and event time.
fn fixed_batch() -> RecordBatch {
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
    let mut state = 7u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from_iter_values(
                (0..ROWS).map(|_| 1000 + (next() % 10_000) as i64),
            )),
            Arc::new(Int64Array::from_iter_values(
                (0..ROWS).map(|_| (next() % 100_000) as i64),
            )),
            Arc::new(Float64Array::from_iter_values(
                (0..ROWS).map(|_| (next() % 1_000_000) as f64 / 100.0),
            )),
            Arc::new(TimestampMillisecondArray::from_iter_values(
                (0..ROWS as i64).map(|i| 1_700_000_000_000 + i),
            )),
        ],
    )
    .expect("valid batch")
}

/// Bytes of the Arrow buffers of `batch`: what the exchange moves (the in-memory size would
/// count builder capacity too).
fn buffer_bytes(batch: &RecordBatch) -> u64 {
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

fn tm(name: &str) -> TaskManagerId {
    TaskManagerId(name.to_string())
}

fn remote_channel(c: &mut Criterion, name: &str, compression: Compression, batch: &RecordBatch) {
    let config = ExchangeConfig::default().with_compression(compression);
    let a_server = ExchangeServer::start("127.0.0.1:0", config.clone()).expect("serves");
    let b_server = ExchangeServer::start("127.0.0.1:0", config).expect("serves");
    let placement = ExchangePlacement::from_edges(vec![(VertexId(0), VertexId(1))])
        .with_subtask(VertexId(0), SubtaskIndex(0), tm("a"))
        .with_subtask(VertexId(1), SubtaskIndex(0), tm("b"))
        .with_task_manager(tm("a"), a_server.address().to_string())
        .with_task_manager(tm("b"), b_server.address().to_string());
    let job = JobId("00000000000000000000000000000001".into());
    let a = FlightExchange::new(
        a_server.clone(),
        job.clone(),
        AttemptNumber(0),
        tm("a"),
        placement.clone(),
    );
    let b = FlightExchange::new(b_server.clone(), job, AttemptNumber(0), tm("b"), placement);
    let id = ChannelId {
        edge: 0,
        from: SubtaskIndex(0),
        to: SubtaskIndex(0),
    };

    let received = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let consumer_waker = SlotWaker::new();
    let mut input = b.input(id, &consumer_waker).expect("input");
    let consumer = {
        let received = received.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            consumer_waker.bind_current();
            loop {
                match input.try_recv().expect("receives") {
                    Some(StreamElement::EndOfInput) => return,
                    Some(element) => {
                        drop(element);
                        received.fetch_add(1, Ordering::Release);
                    }
                    None if stop.load(Ordering::Acquire) => return,
                    None => std::thread::park_timeout(Duration::from_millis(5)),
                }
            }
        })
    };

    let producer_waker = SlotWaker::new();
    producer_waker.bind_current();
    let mut output = a.output(id, &producer_waker).expect("output");
    let mut sent = 0u64;

    let mut group = c.benchmark_group("exchange");
    group.throughput(Throughput::Bytes(buffer_bytes(batch)));
    group.bench_function(name, |bencher| {
        bencher.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                let mut element = StreamElement::Batch(batch.clone());
                while let Some(back) = output.try_send(element).expect("sends") {
                    element = back;
                    std::thread::park_timeout(Duration::from_millis(5));
                }
                sent += 1;
            }
            while received.load(Ordering::Acquire) < sent {
                std::thread::yield_now();
            }
            start.elapsed()
        })
    });
    group.finish();

    let mut end = StreamElement::EndOfInput;
    while let Some(back) = output.try_send(end).expect("sends end-of-input") {
        end = back;
        std::thread::park_timeout(Duration::from_millis(5));
    }
    stop.store(true, Ordering::Release);
    consumer.join().expect("consumer finishes");
}

fn exchange(c: &mut Criterion) {
    let batch = batch();
    remote_channel(c, "remote_8192x4_none", Compression::None, &batch);
    remote_channel(c, "remote_8192x4_lz4", Compression::Lz4Frame, &batch);
    remote_channel(c, "remote_8192x4_zstd", Compression::Zstd, &batch);
    let fixed = fixed_batch();
    remote_channel(c, "remote_8192x4_fixed_none", Compression::None, &fixed);
}

criterion_group!(benches, exchange);
criterion_main!(benches);
