//! Criterion benchmarks of the stateful hot paths: hopping-window aggregation (slice updates
//! plus firing as the watermark advances), keyed state updates through the state backend, and
//! the source's watermark generation. Seeded Nexmark bids, one event per millisecond of event
//! time. Run: `cargo bench -p sluice-bench --bench stateful`.

use std::hint::black_box;
use std::time::Duration;

use arrow::array::ArrayRef;
use arrow::datatypes::{DataType, Int64Type};
use arrow::record_batch::RecordBatch;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use sluice_datasets::nexmark::{NexmarkConfig, NexmarkGenerator, NexmarkTable};
use sluice_engine::connector::SinkResources;
use sluice_engine::element::Watermark;
use sluice_engine::graph::{
    AggregateCall, AggregateFunction, OperatorSpec, WindowAggregateSpec, WindowKind, WindowTime,
};
use sluice_engine::ids::SubtaskIndex;
use sluice_engine::operator::{OperatorContext, OperatorRegistry, Output};
use sluice_engine::state::{KeyGroupRange, KeyedStateBackend};
use sluice_engine::time::{SourceWatermarks, WatermarkStrategy, max_millis};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const BATCHES: usize = 40;
const ROWS: usize = 8192;

/// 40 batches of 8192 bids, auction and dateTime only, 1 ms of event time per event.
fn bids() -> Vec<RecordBatch> {
    let config = NexmarkConfig::default()
        .with_seed(42)
        .with_first_event_rate(1000)
        .with_events(None);
    let mut generator = NexmarkGenerator::new(config, 0, None)
        .expect("valid config")
        .with_tables(&[NexmarkTable::Bid]);
    (0..BATCHES)
        .map(|_| {
            let batch = generator
                .next_table_batch(NexmarkTable::Bid, ROWS)
                .expect("generates")
                .expect("unbounded");
            let schema = batch.schema();
            batch
                .project(&[
                    schema.index_of("auction").unwrap(),
                    schema.index_of("dateTime").unwrap(),
                ])
                .expect("columns exist")
        })
        .collect()
}

fn hopping_window(c: &mut Criterion) {
    let batches = bids();
    let schema = batches[0].schema();
    let spec = OperatorSpec::WindowAggregate(WindowAggregateSpec {
        keys: vec!["auction".into()],
        time: WindowTime::EventTime {
            column: "dateTime".into(),
        },
        window: WindowKind::hopping(10_000, 2_000),
        aggregates: vec![AggregateCall {
            function: AggregateFunction::Count,
            input: None,
            output: "bids".into(),
        }],
        allowed_lateness_ms: 0,
    });
    let output_schema = spec
        .output_schema(std::slice::from_ref(&schema))
        .expect("valid spec")
        .expect("derived schema");
    let ctx = OperatorContext {
        incremental_checkpoints: false,
        checkpointing: false,
        memory: sluice_engine::spill::MemoryBudget::default(),
        vertex: "HopCount".into(),
        subtask: SubtaskIndex(0),
        parallelism: 1,
        max_parallelism: 128,
        key_groups: KeyGroupRange::for_subtask(128, 1, 0),
        input_schemas: vec![schema.clone()],
        output_schema,
    };
    let registry = OperatorRegistry::default();
    let mut group = c.benchmark_group("stateful");
    group.throughput(Throughput::Elements((BATCHES * ROWS) as u64));
    group.bench_function("hopping_window_count_10s_2s", |b| {
        b.iter_batched(
            || {
                let mut operator = registry
                    .build(&spec, &ctx, &SinkResources::default())
                    .expect("builds");
                operator.open(&ctx).expect("opens");
                operator
            },
            |mut operator| {
                let mut out = Output::default();
                for batch in &batches {
                    let watermark = max_millis(batch.column(1).as_ref()).expect("times") - 1_000;
                    operator
                        .process_batch(0, batch.clone(), &mut out)
                        .expect("aggregates");
                    operator
                        .process_watermark(Watermark(watermark), &mut out)
                        .expect("fires");
                    out.clear();
                }
                black_box(operator)
            },
            BatchSize::LargeInput,
        )
    });

    group.bench_function("keyed_value_state_sum_per_auction", |b| {
        b.iter_batched(
            || {
                let mut backend = KeyedStateBackend::try_new(
                    &[DataType::Int64],
                    128,
                    KeyGroupRange::for_subtask(128, 1, 0),
                )
                .expect("backend");
                let state = backend
                    .column_state::<Int64Type>("count", 0)
                    .expect("registers");
                (backend, state, Vec::new())
            },
            |(mut backend, state, mut ids)| {
                for batch in &batches {
                    let keys: Vec<ArrayRef> = vec![batch.column(0).clone()];
                    backend.key_ids_for(&keys, &mut ids).expect("keys");
                    let column = backend.column_mut(&state);
                    for id in &ids {
                        column[id.index()] += 1;
                    }
                }
                black_box(backend)
            },
            BatchSize::LargeInput,
        )
    });

    group.bench_function("source_watermarks", |b| {
        let mut watermarks = SourceWatermarks::new(WatermarkStrategy::bounded_out_of_orderness(
            "dateTime",
            Duration::from_secs(4),
        ));
        b.iter(|| {
            for batch in &batches {
                black_box(watermarks.on_batch(0, batch).expect("event times"));
            }
        })
    });
    group.finish();
}

criterion_group!(benches, hopping_window);
criterion_main!(benches);
