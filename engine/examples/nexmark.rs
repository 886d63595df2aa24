//! Nexmark q0 / q1 / q2 over the generator, on the DataStream API, printing a sample of the
//! results and the job's metrics.
//!
//! ```text
//! cargo run --release -p sluice-engine --example nexmark -- --query q2 --events 1000000 [--parallelism 2]
//! ```
//!
//! The queries themselves are in `sluice_engine::api::nexmark` (shared with the `sluice` CLI
//! and the throughput harness); q2 reads, for instance:
//!
//! ```text
//! bids.filter(col("auction").modulo(lit(123i64)).eq(lit(0i64)))?
//!     .select(&["auction", "price"])?
//! ```

use arrow::util::pretty::pretty_format_batches;
use sluice_datasets::nexmark::NexmarkConfig;
use sluice_engine::api::StreamEnvironment;
use sluice_engine::api::nexmark::{NexmarkQuery, add_query};
use sluice_engine::connector::SinkSpec;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let mut query = NexmarkQuery::Q1;
    let mut events = 1_000_000u64;
    let mut parallelism = 1u32;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .ok_or_else(|| anyhow::anyhow!("{flag} needs a value"))?;
        match flag.as_str() {
            "--query" => query = value.parse()?,
            "--events" => events = value.parse()?,
            "--parallelism" => parallelism = value.parse()?,
            other => anyhow::bail!("unknown flag {other}; use --query, --events, --parallelism"),
        }
    }
    let env = StreamEnvironment::new(format!("nexmark-{query}")).with_parallelism(parallelism);
    let config = NexmarkConfig::default().with_events(Some(events));
    add_query(
        &env,
        query,
        config,
        SinkSpec::Collect {
            name: "results".into(),
        },
    )?;
    let output = env.execute_local()?;
    let batches = output.collected.batches("results");
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    let sample: Vec<_> = batches
        .iter()
        .take(1)
        .map(|b| b.slice(0, b.num_rows().min(10)))
        .collect();
    println!("{}", pretty_format_batches(&sample)?);
    println!("{rows} result rows");
    eprint!("{}", output.result);
    Ok(())
}
