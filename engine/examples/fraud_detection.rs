//! Fraud detection with a keyed process function (Flink's fraud-detection walkthrough, in
//! event time).
//!
//! ```text
//! cargo run --release -p sluice-engine --example fraud_detection -- [--transactions N] [--parallelism P]
//! ```
//!
//! A small transaction (< 1.00) followed by a large one (> 500.00) on the same account within
//! one minute raises an alert `(account_id, small_ts, large_ts, amount)`. Per account the
//! detector keeps two `ValueState<i64>`s: the small transaction's time (its presence is the
//! flag) and the cleanup timer's time; an event-time timer one minute after the small
//! transaction clears the flag. The rule also compares the two event times, so the result does
//! not depend on where batch boundaries and watermarks fall.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{AsArray, Float64Array, Int64Array, RecordBatch, TimestampMillisecondArray};
use arrow::datatypes::{
    DataType, Field, Float64Type, Int64Type, Schema, SchemaRef, TimeUnit, TimestampMillisecondType,
};
use sluice_engine::api::{Collector, KeyedProcessFunction, ProcessContext, StreamEnvironment};
use sluice_engine::connector::{MemorySource, SourceSpec};
use sluice_engine::state::{KeyId, ValueState};
use sluice_engine::time::{Timer, WatermarkStrategy};
use sluice_engine::{Error, Result};

#[cfg(not(test))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SMALL_AMOUNT: f64 = 1.00;
const LARGE_AMOUNT: f64 = 500.00;
const ONE_MINUTE_MS: i64 = 60_000;

/// One transaction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Transaction {
    pub account_id: i64,
    pub amount: f64,
    pub ts: i64,
}

/// One alert: `(account_id, small_ts, large_ts, amount of the large transaction)`.
pub type Alert = (i64, i64, i64, f64);

pub fn transaction_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("account_id", DataType::Int64, false),
        Field::new("amount", DataType::Float64, false),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            false,
        ),
    ]))
}

pub fn alert_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("account_id", DataType::Int64, false),
        Field::new(
            "small_ts",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            false,
        ),
        Field::new(
            "large_ts",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            false,
        ),
        Field::new("amount", DataType::Float64, false),
    ]))
}

/// `count` transactions over `accounts` accounts in event-time order, from a seeded LCG:
/// about 6 % small, 6 % large, gaps of 0–3 s between transactions.
pub fn transactions(count: usize, accounts: i64, seed: u64) -> Vec<Transaction> {
    let mut state = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    let mut next = move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        state >> 33
    };
    let mut ts = 1_700_000_000_000i64;
    (0..count)
        .map(|_| {
            ts += (next() % 3_000) as i64;
            let account_id = (next() % accounts as u64) as i64;
            let cents = match next() % 100 {
                0..6 => 1 + next() % 99,
                6..12 => 50_001 + next() % 50_000,
                _ => 100 + next() % 49_900,
            };
            Transaction {
                account_id,
                amount: cents as f64 / 100.0,
                ts,
            }
        })
        .collect()
}

/// Cuts transactions into batches of `batch_size` rows.
pub fn transaction_batches(rows: &[Transaction], batch_size: usize) -> Result<Vec<RecordBatch>> {
    rows.chunks(batch_size.max(1))
        .map(|chunk| {
            RecordBatch::try_new(
                transaction_schema(),
                vec![
                    Arc::new(Int64Array::from_iter_values(
                        chunk.iter().map(|t| t.account_id),
                    )),
                    Arc::new(Float64Array::from_iter_values(
                        chunk.iter().map(|t| t.amount),
                    )),
                    Arc::new(TimestampMillisecondArray::from_iter_values(
                        chunk.iter().map(|t| t.ts),
                    )),
                ],
            )
            .map_err(|e| Error::arrow("transaction batch", e))
        })
        .collect()
}

/// The rule, row by row: the reference the process function is tested against.
pub fn reference_alerts(rows: &[Transaction]) -> Vec<Alert> {
    let mut small_since: HashMap<i64, i64> = HashMap::new();
    let mut alerts = Vec::new();
    for t in rows {
        if let Some(small_ts) = small_since.remove(&t.account_id)
            && t.amount > LARGE_AMOUNT
            && t.ts - small_ts < ONE_MINUTE_MS
        {
            alerts.push((t.account_id, small_ts, t.ts, t.amount));
        }
        if t.amount < SMALL_AMOUNT {
            small_since.insert(t.account_id, t.ts);
        }
    }
    alerts
}

/// The state handles, registered in `open`.
#[derive(Debug, Clone, Copy)]
struct Handles {
    /// Time of the last small transaction; set = the flag is raised.
    small_ts: ValueState<i64>,
    /// Time of the pending cleanup timer.
    timer: ValueState<i64>,
}

/// The fraud detector: one instance per subtask.
#[derive(Debug, Default)]
pub struct FraudDetector {
    handles: Option<Handles>,
}

impl FraudDetector {
    fn handles(&self) -> Result<Handles> {
        self.handles
            .ok_or_else(|| Error::Internal("fraud detector used before open".into()))
    }

    /// Clears the flag of `key` and deletes its timer.
    fn clean_up(handles: Handles, key: KeyId, ctx: &mut ProcessContext) {
        if let Some(timer) = ctx.state_mut().clear_value(&handles.timer, key) {
            ctx.delete_event_time_timer(key, timer);
        }
        ctx.state_mut().clear_value(&handles.small_ts, key);
    }
}

impl KeyedProcessFunction for FraudDetector {
    fn open(&mut self, ctx: &mut ProcessContext) -> Result<()> {
        self.handles = Some(Handles {
            small_ts: ctx.value_state("small-ts")?,
            timer: ctx.value_state("timer")?,
        });
        Ok(())
    }

    fn process_batch(
        &mut self,
        batch: &RecordBatch,
        keys: &[KeyId],
        ctx: &mut ProcessContext,
        out: &mut Collector,
    ) -> Result<()> {
        let handles = self.handles()?;
        let accounts = batch.column(0).as_primitive::<Int64Type>();
        let amounts = batch.column(1).as_primitive::<Float64Type>();
        let times = batch.column(2).as_primitive::<TimestampMillisecondType>();
        let (mut account_ids, mut small_times, mut large_times, mut large_amounts) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (row, &key) in keys.iter().enumerate() {
            let (amount, ts) = (amounts.value(row), times.value(row));
            if let Some(&small_ts) = ctx.state().value(&handles.small_ts, key) {
                if amount > LARGE_AMOUNT && ts - small_ts < ONE_MINUTE_MS {
                    account_ids.push(accounts.value(row));
                    small_times.push(small_ts);
                    large_times.push(ts);
                    large_amounts.push(amount);
                }
                Self::clean_up(handles, key, ctx);
            }
            if amount < SMALL_AMOUNT {
                let timer = ts + ONE_MINUTE_MS;
                ctx.state_mut().set_value(&handles.small_ts, key, ts);
                ctx.state_mut().set_value(&handles.timer, key, timer);
                ctx.register_event_time_timer(key, timer);
            }
        }
        if account_ids.is_empty() {
            return Ok(());
        }
        let alerts = RecordBatch::try_new(
            alert_schema(),
            vec![
                Arc::new(Int64Array::from(account_ids)),
                Arc::new(TimestampMillisecondArray::from(small_times)),
                Arc::new(TimestampMillisecondArray::from(large_times)),
                Arc::new(Float64Array::from(large_amounts)),
            ],
        )
        .map_err(|e| Error::arrow("fraud alerts", e))?;
        out.emit(alerts)
    }

    fn on_timer(
        &mut self,
        timer: Timer,
        ctx: &mut ProcessContext,
        _out: &mut Collector,
    ) -> Result<()> {
        // A minute passed without a large transaction: lower the flag.
        Self::clean_up(self.handles()?, timer.key, ctx);
        Ok(())
    }
}

/// Builds the job: transactions (one source subtask, so each account's order is kept) →
/// key by account → fraud detector at `parallelism` → collected as `alerts`.
pub fn build_job(
    rows: &[Transaction],
    batch_size: usize,
    parallelism: u32,
) -> Result<StreamEnvironment> {
    let env = StreamEnvironment::new("fraud-detection").with_parallelism(parallelism);
    let source = SourceSpec::Memory(MemorySource::new(
        transaction_schema(),
        transaction_batches(rows, batch_size)?,
    )?);
    env.source_with_watermarks(
        "transactions",
        source,
        WatermarkStrategy::bounded_out_of_orderness("ts", Duration::from_secs(1)),
    )?
    .parallelism(1)?
    .key_by(["account_id"])
    .process("FraudDetector", alert_schema(), FraudDetector::default)?
    .collect("alerts")?;
    Ok(env)
}

/// The alerts of collected batches, sorted.
pub fn alerts_of(batches: &[RecordBatch]) -> Vec<Alert> {
    let mut alerts = Vec::new();
    for batch in batches {
        let accounts = batch.column(0).as_primitive::<Int64Type>();
        let small = batch.column(1).as_primitive::<TimestampMillisecondType>();
        let large = batch.column(2).as_primitive::<TimestampMillisecondType>();
        let amounts = batch.column(3).as_primitive::<Float64Type>();
        alerts.extend((0..batch.num_rows()).map(|i| {
            (
                accounts.value(i),
                small.value(i),
                large.value(i),
                amounts.value(i),
            )
        }));
    }
    alerts.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    alerts
}

fn main() -> anyhow::Result<()> {
    let mut count = 200_000usize;
    let mut parallelism = 2u32;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args
            .next()
            .ok_or_else(|| anyhow::anyhow!("{arg} needs a value"))?;
        match arg.as_str() {
            "--transactions" => count = value.parse()?,
            "--parallelism" => parallelism = value.parse()?,
            other => anyhow::bail!("unknown option {other}"),
        }
    }
    let rows = transactions(count, 1_000, 42);
    let env = build_job(&rows, 4096, parallelism)?;
    let output = env.execute_local()?;
    let alerts = alerts_of(&output.collected.batches("alerts"));
    for (account, small_ts, large_ts, amount) in alerts.iter().take(20) {
        println!(
            "ALERT account {account}: {:.2} at {large_ts} after a small transaction at {small_ts} ({} s earlier)",
            amount,
            (large_ts - small_ts) / 1000
        );
    }
    if alerts.len() > 20 {
        println!("... and {} more", alerts.len() - 20);
    }
    let detector = output
        .result
        .vertex("FraudDetector")
        .ok_or_else(|| anyhow::anyhow!("no FraudDetector metrics"))?;
    println!(
        "{} transactions, {} alerts (reference: {}), {} accounts in state, {} state bytes ({:.1} per key), {:.3} s",
        rows.len(),
        alerts.len(),
        reference_alerts(&rows).len(),
        detector.metrics.state_keys,
        detector.metrics.state_bytes,
        detector.metrics.state_bytes as f64 / detector.metrics.state_keys.max(1) as f64,
        output.result.wall_time.as_secs_f64()
    );
    Ok(())
}
