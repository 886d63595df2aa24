//! Criterion benchmarks of the operator hot paths on seeded Nexmark bids: filter, project,
//! hash partitioning and keyed aggregation. Throughput is reported in elements (rows) per
//! second. Run: `cargo bench -p sluice-bench --bench operators`.

use std::hint::black_box;
use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
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
    let mut filter = Filter::new(predicate);
    group.bench_function("filter_mod_auction", |b| {
        let mut out = Output::default();
        b.iter(|| {
            filter
                .process_batch(0, batch.clone(), &mut out)
                .expect("filters");
            black_box(&mut out).clear();
        })
    });

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
        let mut out = Output::default();
        b.iter(|| {
            project
                .process_batch(0, batch.clone(), &mut out)
                .expect("projects");
            black_box(&mut out).clear();
        })
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
