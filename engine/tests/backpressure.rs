//! A slow sink must slow the source down instead of letting memory grow.
//!
//! The job generates about 1.5 GB of bids (1 KB of `extra` per row) into a sink that sleeps on
//! every batch. With bounded channels the source can only run a few batches ahead, so the
//! process's resident memory stays far below the data volume. This is its own test binary so
//! no other test shares the process whose memory is measured.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use arrow::array::RecordBatch;
use sluice_datasets::nexmark::{NexmarkConfig, NexmarkTable};
use sluice_engine::api::StreamEnvironment;
use sluice_engine::connector::{NexmarkSource, SourceSpec};
use sluice_engine::runtime::{LocalRuntime, RuntimeConfig};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("procfs is mounted");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("VmRSS is reported");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("VmRSS has a number");
    kib * 1024
}

#[test]
fn slow_sink_keeps_resident_memory_bounded() {
    const EVENTS: u64 = 1_600_000;
    let mut config = NexmarkConfig::default().with_events(Some(EVENTS));
    config.bid_extra_avg_len = 1000;
    let env = StreamEnvironment::new("slow-sink").with_parallelism(1);
    let bytes_seen = Arc::new(AtomicU64::new(0));
    let seen = bytes_seen.clone();
    let bids = env
        .source(
            "bid",
            SourceSpec::Nexmark(NexmarkSource::new(NexmarkTable::Bid, config)),
        )
        .unwrap();
    let schema = bids.schema();
    bids.rebalance()
        .unwrap()
        .map_batches("SlowSink", schema, move |batch: &RecordBatch| {
            seen.fetch_add(batch.get_array_memory_size() as u64, Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(2));
            Ok(batch.slice(0, 0))
        })
        .unwrap()
        .sink("discard", sluice_engine::connector::SinkSpec::Blackhole)
        .unwrap();

    let baseline = resident_bytes();
    let done = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(baseline));
    let sampler = {
        let (done, peak) = (done.clone(), peak.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(resident_bytes(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    // Two slots so source and sink run on different threads and the source could race ahead.
    let runtime = LocalRuntime::new(
        RuntimeConfig::default()
            .with_slots(2)
            .with_batch_size(1024)
            .with_channel_capacity(4)
            .with_pinning(false),
    );
    let output = env.execute_on(&runtime).unwrap();
    done.store(true, Ordering::Relaxed);
    sampler.join().unwrap();

    let data = bytes_seen.load(Ordering::Relaxed);
    let growth = peak.load(Ordering::Relaxed).saturating_sub(baseline);
    let rows = output.result.vertex("SlowSink").unwrap().metrics.records_in;
    eprintln!(
        "slow sink: {} MB flowed, resident memory grew by {} MB (peak over baseline)",
        data >> 20,
        growth >> 20
    );
    assert!(rows > 1_400_000, "the job read {rows} bids");
    assert!(
        data > 1_000_000_000,
        "only {data} bytes flowed; the test needs more to mean anything"
    );
    assert!(
        growth < 256 * 1024 * 1024,
        "resident memory grew by {} MB while {} MB flowed through a slow sink",
        growth >> 20,
        data >> 20
    );
}
