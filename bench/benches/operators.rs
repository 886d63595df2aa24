//! Criterion benchmarks of the operator hot paths on seeded Nexmark bids: filter, project,
//! hash partitioning and keyed aggregation; and decimal arithmetic on seeded TPC-H-like prices. Throughput is reported in elements (rows) per
//! second. Run: `cargo bench -p sluice-bench --bench operators`.

use std::hint::black_box;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, Decimal128Array, DictionaryArray, Int32Array, Int64Array, StringArray,
};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use criterion::{Bencher, Criterion, Throughput, criterion_group, criterion_main};
use sluice_datasets::nexmark::{NexmarkConfig, NexmarkGenerator, NexmarkTable};
use sluice_engine::expr::{col, lit};
use sluice_engine::graph::{AggregateCall, AggregateFunction, EmitMode, KeyedAggregateSpec};
use sluice_engine::operator::{Filter, KeyedAggregate, Operator, Output, Project};
use sluice_engine::runtime::exchange::HashPartitioner;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ROWS: usize = 8192;

fn bids() -> RecordBatch {
    let config = NexmarkConfig::default()
        .with_seed(42)
        .with_events(Some(1_000_000));
    let mut generator = NexmarkGenerator::new(config, 0, Some(1_000_000))
        .expect("valid config")
        .with_tables(&[NexmarkTable::Bid]);
    generator
        .next_table_batch(NexmarkTable::Bid, ROWS)
        .expect("generates")
        .expect("has rows")
}

/// `ROWS` rows of DECIMAL(15, 2) prices, discounts and taxes from a fixed linear
/// congruential sequence.
fn decimals() -> RecordBatch {
    let mut state = 42u64;
    let mut next = |bound: u64| {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        i128::from((state >> 33) % bound)
    };
    let column = |values: Vec<i128>| -> arrow::array::ArrayRef {
        Arc::new(
            Decimal128Array::from(values)
                .with_precision_and_scale(15, 2)
                .expect("valid decimal type"),
        )
    };
    let price = column((0..ROWS).map(|_| 90_000 + next(10_000_000)).collect());
    let discount = column((0..ROWS).map(|_| next(11)).collect());
    let tax = column((0..ROWS).map(|_| next(9)).collect());
    RecordBatch::try_from_iter([("price", price), ("discount", discount), ("tax", tax)])
        .expect("equal lengths")
}

/// `ROWS` rows of a ship mode (seven values, cycling) and a row number: once as plain strings,
/// once with the modes as a dictionary.
fn ship_modes() -> (RecordBatch, RecordBatch) {
    const MODES: [&str; 7] = ["AIR", "FOB", "MAIL", "RAIL", "REG AIR", "SHIP", "TRUCK"];
    let keys = Int32Array::from_iter_values((0..ROWS).map(|i| (i * 5 % MODES.len()) as i32));
    let dictionary = DictionaryArray::new(keys, Arc::new(StringArray::from(MODES.to_vec())));
    let plain = arrow::compute::cast(&dictionary, &DataType::Utf8).expect("decodes");
    let row = Arc::new(Int64Array::from_iter_values(0..ROWS as i64)) as ArrayRef;
    let schema = Arc::new(Schema::new(vec![
        Field::new("mode", DataType::Utf8, true),
        Field::new("row", DataType::Int64, false),
    ]));
    let plain =
        RecordBatch::try_new(Arc::clone(&schema), vec![plain, Arc::clone(&row)]).expect("matches");
    let dictionary_schema = Arc::new(Schema::new(vec![
        Field::new("mode", dictionary.data_type().clone(), true),
        Field::new("row", DataType::Int64, false),
    ]));
    let dictionary =
        RecordBatch::try_new(dictionary_schema, vec![Arc::new(dictionary), row]).expect("matches");
    (plain, dictionary)
}

/// Times `filter` on `batch`, its output dropped each time.
/// Times `operator` (a filter or a projection) on `batch`, its output dropped each time.
fn process_each(b: &mut Bencher<'_>, operator: &mut dyn Operator, batch: &RecordBatch) {
    let mut out = Output::default();
    b.iter(|| {
        operator
            .process_batch(0, batch.clone(), &mut out)
            .expect("processes");
        black_box(&mut out).clear();
    })
}

fn operators(c: &mut Criterion) {
    let batch = bids();
    let schema = batch.schema();
    let mut group = c.benchmark_group("operators");
    group.throughput(Throughput::Elements(batch.num_rows() as u64));

    let predicate = col("auction")
        .modulo(lit(123i64))
        .eq(lit(0i64))
        .resolve(&schema)
        .expect("resolves");
    let mut filter = Filter::new(predicate, schema.clone());
    group.bench_function("filter_mod_auction", |b| {
        process_each(b, &mut filter, &batch)
    });

    // A filter on a string column with seven values, as TPC-H's `l_shipmode IN ('MAIL',
    // 'SHIP')`: on plain strings, and on the dictionary a Parquet source hands it.
    let (plain, dictionary) = ship_modes();
    let modes = plain.schema();
    let predicate = col("mode")
        .in_list(vec![lit("MAIL"), lit("SHIP")], false)
        .resolve(&modes)
        .expect("resolves");
    for (name, input) in [
        ("filter_in_strings", &plain),
        ("filter_in_dictionary", &dictionary),
    ] {
        let mut filter = Filter::new(predicate.clone(), Arc::clone(&modes));
        group.bench_function(name, |b| process_each(b, &mut filter, input));
    }

    let exprs = vec![
        col("auction").resolve(&schema).expect("resolves"),
        col("bidder").resolve(&schema).expect("resolves"),
        col("price")
            .mul(lit(908i64))
            .div(lit(1000i64))
            .resolve(&schema)
            .expect("resolves"),
        col("dateTime").resolve(&schema).expect("resolves"),
    ];
    let fields: Vec<_> = ["auction", "bidder", "price", "dateTime"]
        .iter()
        .zip(&exprs)
        .map(|(name, e)| arrow::datatypes::Field::new(*name, e.data_type().clone(), e.nullable()))
        .collect();
    let mut project = Project::new(exprs, Arc::new(arrow::datatypes::Schema::new(fields)));
    group.bench_function("project_price_arithmetic", |b| {
        process_each(b, &mut project, &batch)
    });

    // TPC-H's `price * (1 - discount) * (1 + tax)` on DECIMAL(15, 2) columns.
    let prices = decimals();
    let decimal_schema = prices.schema();
    let exprs = vec![
        col("price")
            .mul(lit(1i64).sub(col("discount")))
            .mul(lit(1i64).add(col("tax")))
            .resolve(&decimal_schema)
            .expect("resolves"),
    ];
    let fields = vec![arrow::datatypes::Field::new(
        "charge",
        exprs[0].data_type().clone(),
        exprs[0].nullable(),
    )];
    let mut project = Project::new(exprs, Arc::new(arrow::datatypes::Schema::new(fields)));
    group.bench_function("project_decimal_arithmetic", |b| {
        process_each(b, &mut project, &prices)
    });

    // TPC-H Q1's two products, the second extending the first: the shared product is computed
    // once per batch.
    let net = col("price").mul(lit(1i64).sub(col("discount")));
    let columns = vec![
        ("net".to_string(), net.clone()),
        ("charge".to_string(), net.mul(lit(1i64).add(col("tax")))),
    ];
    let fields: Vec<_> = columns
        .iter()
        .map(|(name, e)| {
            let resolved = e.resolve(&decimal_schema).expect("resolves");
            arrow::datatypes::Field::new(name, resolved.data_type().clone(), resolved.nullable())
        })
        .collect();
    let mut project = Project::try_new(
        &columns,
        &decimal_schema,
        Arc::new(arrow::datatypes::Schema::new(fields)),
    )
    .expect("projects");
    group.bench_function("project_shared_decimal_product", |b| {
        process_each(b, &mut project, &prices)
    });

    for parallelism in [2u32, 8] {
        let mut partitioner =
            HashPartitioner::try_new(&["auction".to_string()], &schema, 128, parallelism)
                .expect("keys exist");
        group.bench_function(format!("hash_partition_auction_p{parallelism}"), |b| {
            let mut pieces = Vec::new();
            b.iter(|| {
                partitioner
                    .partition(&batch, &mut pieces)
                    .expect("partitions");
                black_box(&mut pieces).clear();
            })
        });
    }

    let spec = KeyedAggregateSpec {
        keys: vec!["auction".into()],
        aggregates: vec![
            AggregateCall {
                function: AggregateFunction::Count,
                input: None,
                output: "n".into(),
            },
            AggregateCall {
                function: AggregateFunction::Sum,
                input: Some("price".into()),
                output: "total".into(),
            },
            AggregateCall {
                function: AggregateFunction::Max,
                input: Some("price".into()),
                output: "max_price".into(),
            },
        ],
        emit: EmitMode::Final,
        default_group: None,
        phase: Default::default(),
    };
    let output_schema = spec.output_schema(&schema).expect("valid aggregate");
    let mut aggregate = KeyedAggregate::try_new(&spec, &schema, output_schema).expect("builds");
    group.bench_function("keyed_aggregate_count_sum_max", |b| {
        let mut out = Output::default();
        b.iter(|| {
            aggregate
                .process_batch(0, batch.clone(), &mut out)
                .expect("aggregates")
        })
    });
    group.finish();
}

criterion_group!(benches, operators);
criterion_main!(benches);
