//! Measures Nexmark (and, for comparison, datagen) generation speed on one core.
//!
//! `cargo run --release -p sluice-datasets --example nexmark_speed [events]`

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use sluice_datasets::datagen::{DatagenConfig, DatagenGenerator};
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

    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("amount", DataType::Int32, true),
        Field::new("price", DataType::Float64, true),
        Field::new("name", DataType::Utf8, true),
        Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), true),
    ]));
    let options: BTreeMap<String, String> = [
        ("fields.id.kind", "sequence"),
        ("fields.id.start", "1"),
        ("fields.id.end", "20000000"),
        ("fields.amount.null-rate", "0.1"),
        ("fields.name.length", "16"),
        ("fields.ts.max-past", "1 h"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let config = DatagenConfig::from_options(schema, &options)?;
    let mut generator = DatagenGenerator::new(&config, 0, 1)?;
    let start = Instant::now();
    let mut rows = 0;
    while let Some(batch) = generator.next_batch(8192)? {
        rows += batch.num_rows();
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "datagen (5 columns): {rows} rows in {secs:.3} s = {:.1} M rows/s",
        rows as f64 / secs / 1e6
    );
    Ok(())
}
