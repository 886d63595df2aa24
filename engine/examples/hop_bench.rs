//! Rough throughput of a hopping-window count per auction (10 s windows every 2 s) over
//! Nexmark bids, event time on `dateTime`, into a blackhole sink.
//!
//! ```text
//! cargo run --release -p sluice-engine --example hop_bench -- --events 10000000 [--parallelism 1] [--rate 100000]
//! ```
//!
//! `--rate` is the generator's events per second of event time (so 10 M events at 100 000/s
//! span 100 s: about 50 window ends per key).

use std::time::{Duration, Instant};

use sluice_datasets::nexmark::{NexmarkConfig, NexmarkTable};
use sluice_engine::api::StreamEnvironment;
use sluice_engine::connector::{NexmarkSource, SinkSpec, SourceSpec};
use sluice_engine::graph::{AggregateCall, AggregateFunction, WindowKind, WindowTime};
use sluice_engine::time::WatermarkStrategy;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let mut events = 10_000_000u64;
    let mut parallelism = 1u32;
    let mut rate = 100_000u64;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .ok_or_else(|| anyhow::anyhow!("{flag} needs a value"))?;
        match flag.as_str() {
            "--events" => events = value.parse()?,
            "--parallelism" => parallelism = value.parse()?,
            "--rate" => rate = value.parse()?,
            other => anyhow::bail!("unknown flag {other}; use --events, --parallelism, --rate"),
        }
    }
    let env = StreamEnvironment::new("hop-bench").with_parallelism(parallelism);
    let config = NexmarkConfig::default()
        .with_events(Some(events))
        .with_first_event_rate(rate);
    env.source_with_watermarks(
        "bids",
        SourceSpec::Nexmark(NexmarkSource::new(NexmarkTable::Bid, config)),
        WatermarkStrategy::bounded_out_of_orderness("dateTime", Duration::from_secs(1)),
    )?
    .key_by(["auction"])
    .window(
        WindowKind::hopping(10_000, 2_000),
        WindowTime::EventTime {
            column: "dateTime".into(),
        },
    )
    .aggregate(vec![AggregateCall {
        function: AggregateFunction::Count,
        input: None,
        output: "bids".into(),
    }])?
    .name("HopCount")?
    .sink("Blackhole", SinkSpec::Blackhole)?;
    let started = Instant::now();
    let output = env.execute_local()?;
    let elapsed = started.elapsed().as_secs_f64();
    let bids = output
        .result
        .vertex("bids")
        .map_or(0, |v| v.metrics.records_out);
    let window = output.result.vertex("HopCount").map(|v| v.metrics);
    println!(
        "{bids} bids in {elapsed:.2} s: {:.0} bids/s ({:.0} events/s); window rows out: {}, late: {}",
        bids as f64 / elapsed,
        events as f64 / elapsed,
        window.map_or(0, |m| m.records_out),
        window.map_or(0, |m| m.late_records_dropped),
    );
    Ok(())
}
