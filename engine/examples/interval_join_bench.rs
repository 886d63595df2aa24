//! A rough interval-join throughput check: Nexmark bids joined with the auction they bid on,
//! when the bid comes within 10 s after the auction's creation.
//!
//! ```text
//! cargo run --release -p sluice-engine --example interval_join_bench -- --events 2000000 [--parallelism 2]
//! ```
//!
//! `bids.join(auctions, [auction], [id]).interval(dateTime, dateTime, 0, 10_000)`; prints the
//! input events per second (bids plus auctions over wall time), the result rows and the
//! join's state at the end.

use std::time::Duration;

use sluice_datasets::nexmark::{NexmarkConfig, NexmarkTable};
use sluice_engine::api::StreamEnvironment;
use sluice_engine::connector::{NexmarkSource, SinkSpec, SourceSpec};
use sluice_engine::time::WatermarkStrategy;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let mut events = 2_000_000u64;
    let mut parallelism = 1u32;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .ok_or_else(|| anyhow::anyhow!("{flag} needs a value"))?;
        match flag.as_str() {
            "--events" => events = value.parse()?,
            "--parallelism" => parallelism = value.parse()?,
            other => anyhow::bail!("unknown flag {other}; use --events, --parallelism"),
        }
    }
    let env = StreamEnvironment::new("interval-join-bench").with_parallelism(parallelism);
    let config = NexmarkConfig::default().with_events(Some(events));
    let source = |name: &str, table| {
        env.source_with_watermarks(
            name,
            SourceSpec::Nexmark(NexmarkSource::new(table, config.clone())),
            WatermarkStrategy::bounded_out_of_orderness("dateTime", Duration::from_secs(1)),
        )
    };
    let bids = source("bids", NexmarkTable::Bid)?;
    let auctions = source("auctions", NexmarkTable::Auction)?;
    bids.join(&auctions, ["auction"], ["id"])
        .interval("dateTime", "dateTime", 0, 10_000)?
        .sink("blackhole", SinkSpec::Blackhole)?;
    let output = env.execute_local()?;
    let result = &output.result;
    let input: u64 = ["bids", "auctions"]
        .iter()
        .filter_map(|name| result.vertex(name))
        .map(|v| v.metrics.records_out)
        .sum();
    let seconds = result.wall_time.as_secs_f64();
    println!("{result}");
    if let Some(join) = result.vertex("IntervalJoin") {
        println!(
            "join: {} results, {} late, state at end {} keys / {} bytes",
            join.metrics.records_out,
            join.metrics.late_records_dropped,
            join.metrics.state_keys,
            join.metrics.state_bytes
        );
    }
    println!(
        "{input} input events in {seconds:.3} s: {:.0} events/s",
        input as f64 / seconds
    );
    Ok(())
}
