//! Nexmark q1 and the keyed count through the runtime, against a row-at-a-time reference over
//! the generator's rows, at parallelism 1, 2, 4 and source batch sizes 1, 7, 8192.

use std::collections::BTreeMap;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Int64Type, TimestampMillisecondType};
use sluice_datasets::nexmark::{NexmarkConfig, NexmarkGenerator, NexmarkTable};
use sluice_engine::api::StreamEnvironment;
use sluice_engine::api::nexmark::{NexmarkQuery, add_query};
use sluice_engine::connector::SinkSpec;
use sluice_engine::runtime::{LocalRuntime, RuntimeConfig};

const EVENTS: u64 = 3_000;

type Q1Row = (i64, i64, i64, i64, String);

fn config() -> NexmarkConfig {
    NexmarkConfig::default()
        .with_seed(7)
        .with_events(Some(EVENTS))
}

/// Every bid of the generator, row by row.
fn reference_bids() -> Vec<Q1Row> {
    let mut generator = NexmarkGenerator::new(config(), 0, Some(EVENTS))
        .unwrap()
        .with_tables(&[NexmarkTable::Bid]);
    let mut rows = Vec::new();
    while let Some(batch) = generator.next_table_batch(NexmarkTable::Bid, 1000).unwrap() {
        rows.extend(q1_rows(&batch, false));
    }
    rows
}

/// The rows of a bid-shaped batch; `converted` says whether `price` is already converted.
fn q1_rows(batch: &RecordBatch, converted: bool) -> Vec<Q1Row> {
    let int = |name: &str| {
        batch
            .column_by_name(name)
            .unwrap()
            .as_primitive::<Int64Type>()
            .clone()
    };
    let (auction, bidder, price) = (int("auction"), int("bidder"), int("price"));
    let time = batch
        .column_by_name("dateTime")
        .unwrap()
        .as_primitive::<TimestampMillisecondType>()
        .clone();
    let extra = batch
        .column_by_name("extra")
        .unwrap()
        .as_string::<i32>()
        .clone();
    (0..batch.num_rows())
        .map(|i| {
            let p = price.value(i);
            (
                auction.value(i),
                bidder.value(i),
                if converted { p } else { p * 908 / 1000 },
                time.value(i),
                extra.value(i).to_string(),
            )
        })
        .collect()
}

fn run(query: NexmarkQuery, parallelism: u32, batch_size: usize) -> Vec<RecordBatch> {
    let env = StreamEnvironment::new("nexmark").with_parallelism(parallelism);
    add_query(
        &env,
        query,
        config(),
        SinkSpec::Collect { name: "out".into() },
    )
    .unwrap();
    let runtime = LocalRuntime::new(
        RuntimeConfig::default()
            .with_slots(parallelism as usize)
            .with_batch_size(batch_size)
            .with_pinning(false),
    );
    env.execute_on(&runtime).unwrap().collected.batches("out")
}

#[test]
fn q1_equals_the_row_at_a_time_reference() {
    let mut expected = reference_bids();
    expected.sort();
    assert!(expected.len() > 2_500);
    for parallelism in [1, 2, 4] {
        for batch_size in [1, 7, 8192] {
            let mut actual: Vec<Q1Row> = run(NexmarkQuery::Q1, parallelism, batch_size)
                .iter()
                .flat_map(|b| q1_rows(b, true))
                .collect();
            actual.sort();
            assert_eq!(
                actual, expected,
                "parallelism {parallelism}, batch size {batch_size}"
            );
        }
    }
}

#[test]
fn keyed_count_equals_the_reference() {
    let mut expected: BTreeMap<i64, i64> = BTreeMap::new();
    for row in reference_bids() {
        *expected.entry(row.0).or_default() += 1;
    }
    for parallelism in [1, 2, 4] {
        for batch_size in [1, 7, 8192] {
            let mut actual = BTreeMap::new();
            for batch in run(NexmarkQuery::Count, parallelism, batch_size) {
                let keys = batch.column(0).as_primitive::<Int64Type>();
                let counts = batch.column(1).as_primitive::<Int64Type>();
                for i in 0..batch.num_rows() {
                    assert!(keys.is_valid(i));
                    assert!(
                        actual.insert(keys.value(i), counts.value(i)).is_none(),
                        "key twice"
                    );
                }
            }
            assert_eq!(
                actual, expected,
                "parallelism {parallelism}, batch size {batch_size}"
            );
        }
    }
}

#[test]
fn q2_keeps_exactly_the_selected_auctions() {
    let expected: Vec<(i64, i64)> = {
        let mut rows: Vec<_> = reference_bids()
            .into_iter()
            .filter(|r| r.0 % 123 == 0)
            .map(|r| (r.0, r.2))
            .collect();
        rows.sort();
        rows
    };
    // Prices in the reference are converted; q2 keeps the raw price, so compare auctions only.
    for parallelism in [1, 2] {
        let mut auctions: Vec<i64> = run(NexmarkQuery::Q2, parallelism, 7)
            .iter()
            .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
            .collect();
        auctions.sort();
        assert_eq!(auctions, expected.iter().map(|r| r.0).collect::<Vec<_>>());
    }
}
