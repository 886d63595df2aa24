//! Measures Nexmark generation speed on one core.
//!
//! `cargo run --release -p sluice-datasets --example nexmark_speed [events]`

use std::time::Instant;

use sluice_datasets::nexmark::{NexmarkConfig, NexmarkGenerator, NexmarkTable};

fn main() -> anyhow::Result<()> {
    let events: u64 = match std::env::args().nth(1) {
        Some(arg) => arg.parse()?,
        None => 50_000_000,
    };
    let config = NexmarkConfig::default().with_events(Some(events));

    let mut generator = NexmarkGenerator::new(config.clone(), 0, Some(events))?;
    let start = Instant::now();
    let mut rows = 0;
    while let Some(batch) = generator.next_table_batch(NexmarkTable::Bid, 8192)? {
        rows += batch.num_rows();
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "bid only:   {rows} rows in {secs:.3} s = {:.1} M rows/s",
        rows as f64 / secs / 1e6
    );

    let mut generator = NexmarkGenerator::new(config, 0, Some(events))?;
    let start = Instant::now();
    let mut rows = 0;
    while let Some(out) = generator.next_batches(8192)? {
        rows += out.events;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "all tables: {rows} events in {secs:.3} s = {:.1} M events/s",
        rows as f64 / secs / 1e6
    );
    Ok(())
}
