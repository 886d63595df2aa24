//! Criterion benchmarks of the keyed aggregation's group table and update path, shaped like
//! the `agg` workload (`/work/shared/bench/nexmark-like/agg.sql`): a non-windowed GROUP BY on
//! a BIGINT key drawn uniformly from 1 M values, COUNT(*) and MAX(price), 8192 rows per batch.
//!
//! - `growing_*`: a fresh operator per iteration takes 64 batches (524 k rows, about 410 k
//!   groups): the table and the accumulators grow, as at the start of a job;
//! - `warm_*`: an operator that already holds all 1 M groups keeps taking batches: lookups
//!   and updates on a state much larger than the cache;
//! - `finish_*`: a fresh operator, opened as a batch job opens it, takes the 64 batches and
//!   emits its results, once without a memory limit and once with a 4 MiB budget, over which
//!   it freezes its groups and spills the rows of new keys to partition files in the system's
//!   temporary directory, then aggregates them at the end.
//!
//! `changelog` emits `-U`/`+U`/`+I` after every batch (the streaming job), `final` only
//! updates (the batch job).
//!
//! `flags_two_string_keys_count_max_final`: TPC-H Q1's grouping, two one-letter `STRING`
//! keys (3 × 2 values, 4 of them drawn) over the same 64 batches: the packed path of the
//! group table, where each key is one 128-bit word.
//!
//! Run: `cargo bench -p sluice-bench --bench aggregate`.

use std::hint::black_box;
use std::sync::Arc;

use arrow::array::{Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use sluice_engine::graph::{AggregateCall, AggregateFunction, EmitMode, KeyedAggregateSpec};
use sluice_engine::ids::SubtaskIndex;
use sluice_engine::operator::{KeyedAggregate, Operator, OperatorContext, Output};
use sluice_engine::spill::MemoryBudget;
use sluice_engine::state::KeyGroupRange;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ROWS: usize = 8192;
const BATCHES: usize = 64;
const KEYS: u64 = 1_000_000;

/// A seeded xorshift64* stream: the same batches on every run and machine.
struct Rng(u64);

impl Rng {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % bound
    }
}

/// `count` batches of (auction, price), auction uniform in 1000..1001000 as in agg.sql.
fn bids(rng: &mut Rng, count: usize) -> Vec<RecordBatch> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("auction", DataType::Int64, false),
        Field::new("price", DataType::Int64, false),
    ]));
    (0..count)
        .map(|_| {
            let auction: Int64Array = (0..ROWS)
                .map(|_| 1000 + rng.below(KEYS) as i64)
                .collect::<Vec<_>>()
                .into();
            let price: Int64Array = (0..ROWS)
                .map(|_| 1 + rng.below(100_000) as i64)
                .collect::<Vec<_>>()
                .into();
            RecordBatch::try_new(schema.clone(), vec![Arc::new(auction), Arc::new(price)])
                .expect("valid batch")
        })
        .collect()
}

/// `count` batches of (returnflag, linestatus, price) in TPC-H Q1's proportions.
fn flagged(rng: &mut Rng, count: usize) -> Vec<RecordBatch> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("returnflag", DataType::Utf8, false),
        Field::new("linestatus", DataType::Utf8, false),
        Field::new("price", DataType::Int64, false),
    ]));
    const PAIRS: [(&str, &str); 4] = [("A", "F"), ("N", "F"), ("N", "O"), ("R", "F")];
    (0..count)
        .map(|_| {
            let pairs: Vec<(&str, &str)> =
                (0..ROWS).map(|_| PAIRS[rng.below(4) as usize]).collect();
            let flag: StringArray = pairs.iter().map(|p| Some(p.0)).collect();
            let status: StringArray = pairs.iter().map(|p| Some(p.1)).collect();
            let price: Int64Array = (0..ROWS)
                .map(|_| 1 + rng.below(100_000) as i64)
                .collect::<Vec<_>>()
                .into();
            RecordBatch::try_new(
                schema.clone(),
                vec![Arc::new(flag), Arc::new(status), Arc::new(price)],
            )
            .expect("valid batch")
        })
        .collect()
}

fn spec(emit: EmitMode) -> KeyedAggregateSpec {
    spec_by(&["auction"], emit)
}

fn spec_by(keys: &[&str], emit: EmitMode) -> KeyedAggregateSpec {
    KeyedAggregateSpec {
        keys: keys.iter().map(|k| k.to_string()).collect(),
        aggregates: vec![
            AggregateCall {
                function: AggregateFunction::Count,
                input: None,
                output: "num".into(),
            },
            AggregateCall {
                function: AggregateFunction::Max,
                input: Some("price".into()),
                output: "maxprice".into(),
            },
        ],
        emit,
        default_group: None,
        phase: Default::default(),
    }
}

fn operator(schema: &Schema, emit: EmitMode) -> KeyedAggregate {
    let spec = spec(emit);
    let output_schema = spec.output_schema(schema).expect("valid aggregate");
    KeyedAggregate::try_new(&spec, schema, output_schema).expect("builds")
}

/// A final aggregation opened as subtask 0 of 1 with `memory` as its budget.
fn opened(schema: &SchemaRef, memory: MemoryBudget) -> KeyedAggregate {
    let spec = spec(EmitMode::Final);
    let output_schema = spec.output_schema(schema).expect("valid aggregate");
    let mut aggregate =
        KeyedAggregate::try_new(&spec, schema, output_schema.clone()).expect("builds");
    aggregate
        .open(&OperatorContext {
            incremental_checkpoints: false,
            checkpointing: false,
            memory,
            vertex: "GroupAggregate".into(),
            subtask: SubtaskIndex(0),
            parallelism: 1,
            max_parallelism: 128,
            key_groups: KeyGroupRange::for_subtask(128, 1, 0),
            input_schemas: vec![schema.clone()],
            output_schema,
        })
        .expect("opens");
    aggregate
}

/// `aggregate` after taking every batch (its output dropped as it goes).
fn fed(mut aggregate: KeyedAggregate, batches: &[RecordBatch]) -> KeyedAggregate {
    let mut out = Output::default();
    for batch in batches {
        aggregate
            .process_batch(0, batch.clone(), &mut out)
            .expect("aggregates");
        out.clear();
    }
    aggregate
}

fn aggregate(c: &mut Criterion) {
    let mut rng = Rng(0x5eed);
    let batches = bids(&mut rng, BATCHES);
    let schema = batches[0].schema();
    let mut group = c.benchmark_group("aggregate");
    group.sample_size(20);
    group.throughput(Throughput::Elements((BATCHES * ROWS) as u64));

    for (name, emit) in [
        ("changelog", EmitMode::Changelog),
        ("final", EmitMode::Final),
    ] {
        group.bench_function(format!("growing_1m_keys_count_max_{name}"), |b| {
            b.iter_batched(
                || operator(&schema, emit),
                |aggregate| black_box(fed(aggregate, &batches)),
                BatchSize::LargeInput,
            )
        });
    }

    let spill_dir = std::env::temp_dir().join("sluice-bench-aggregate-spill");
    for (name, memory) in [
        ("unlimited", MemoryBudget::unlimited()),
        ("budget_4mib", MemoryBudget::new(4 << 20, &spill_dir)),
    ] {
        group.bench_function(format!("finish_1m_keys_count_max_final_{name}"), |b| {
            b.iter_batched(
                || opened(&schema, memory.clone()),
                |mut aggregate| {
                    let mut out = Output::default();
                    for batch in &batches {
                        aggregate
                            .process_batch(0, batch.clone(), &mut out)
                            .expect("aggregates");
                    }
                    aggregate.finish(&mut out).expect("finishes");
                    while aggregate.finish_more(&mut out).expect("finishes") {}
                    black_box(out.drain().len());
                    aggregate
                },
                BatchSize::LargeInput,
            )
        });
    }

    // Every key once, so the warm operators hold all 1 M groups.
    let schema_ref = schema.clone();
    let all_keys: Vec<RecordBatch> = (0..KEYS as usize)
        .step_by(ROWS)
        .map(|start| {
            let end = (start + ROWS).min(KEYS as usize);
            let auction: Int64Array = (start..end).map(|k| 1000 + k as i64).collect();
            let price: Int64Array = (start..end).map(|k| k as i64 % 100_000).collect();
            RecordBatch::try_new(schema_ref.clone(), vec![Arc::new(auction), Arc::new(price)])
                .expect("valid batch")
        })
        .collect();
    for (name, emit) in [
        ("changelog", EmitMode::Changelog),
        ("final", EmitMode::Final),
    ] {
        let mut aggregate = operator(&schema, emit);
        let mut out = Output::default();
        for batch in &all_keys {
            aggregate
                .process_batch(0, batch.clone(), &mut out)
                .expect("aggregates");
            out.clear();
        }
        assert_eq!(aggregate.group_count(), KEYS as usize);
        group.bench_function(format!("warm_1m_keys_count_max_{name}"), |b| {
            b.iter(|| {
                for batch in &batches {
                    aggregate
                        .process_batch(0, batch.clone(), &mut out)
                        .expect("aggregates");
                    black_box(&mut out).clear();
                }
            })
        });
    }

    let flags = flagged(&mut rng, BATCHES);
    let flags_schema = flags[0].schema();
    let flags_spec = spec_by(&["returnflag", "linestatus"], EmitMode::Final);
    let flags_output = flags_spec
        .output_schema(&flags_schema)
        .expect("valid aggregate");
    group.bench_function("flags_two_string_keys_count_max_final", |b| {
        b.iter_batched(
            || {
                KeyedAggregate::try_new(&flags_spec, &flags_schema, flags_output.clone())
                    .expect("builds")
            },
            |aggregate| black_box(fed(aggregate, &flags)),
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, aggregate);
criterion_main!(benches);
