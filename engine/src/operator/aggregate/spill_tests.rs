//! The batch aggregation over a memory budget: spilling must not change the result.
//!
//! Each test runs one operator over many batches of many distinct keys under a tiny budget and
//! compares its rows (in any order) with an unlimited run or with a row-at-a-time model.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray,
};
use arrow::datatypes::{DataType, Field, Float64Type, Int64Type, Schema, SchemaRef};
use arrow::util::display::array_value_to_string;
use proptest::prelude::*;

use super::KeyedAggregate;
use super::spill_partitions::MAX_LEVEL;
use crate::Error;
use crate::element::StreamElement;
use crate::expr::ScalarValue;
use crate::graph::{
    AggregateCall, AggregateFunction, AggregatePhase, EmitMode, KeyedAggregateSpec,
};
use crate::ids::{CheckpointId, SubtaskIndex};
use crate::operator::{Operator, OperatorContext, Output};
use crate::runtime::OperatorMetrics;
use crate::spill::MemoryBudget;
use crate::state::KeyGroupRange;

const MAX_PARALLELISM: u32 = 128;
const TINY_BUDGET: usize = 32 * 1024;

fn call(function: AggregateFunction, input: Option<&str>, output: &str) -> AggregateCall {
    AggregateCall {
        function,
        input: input.map(str::to_string),
        output: output.into(),
    }
}

/// `id BIGINT, name VARCHAR (with NULLs), v BIGINT (with NULLs), d INT, tag VARCHAR, noise
/// DOUBLE` (read by no aggregate, so never spilled).
fn input_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
        Field::new("v", DataType::Int64, true),
        Field::new("d", DataType::Int32, false),
        Field::new("tag", DataType::Utf8, false),
        Field::new("noise", DataType::Float64, false),
    ]))
}

fn spec(keys: &[&str]) -> KeyedAggregateSpec {
    use AggregateFunction::*;
    KeyedAggregateSpec {
        keys: keys.iter().map(|k| k.to_string()).collect(),
        aggregates: vec![
            call(Count, None, "n"),
            call(Sum, Some("v"), "sum_v"),
            call(Min, Some("v"), "min_v"),
            call(Max, Some("v"), "max_v"),
            call(Avg, Some("v"), "avg_v"),
            call(CountDistinct, Some("d"), "distinct_d"),
            call(Min, Some("tag"), "min_tag"),
            call(LastValue, Some("tag"), "last_tag"),
        ],
        emit: EmitMode::Final,
        default_group: None,
        phase: Default::default(),
    }
}

/// A seeded xorshift64*: the same batches on every run.
struct Rng(u64);

impl Rng {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % bound
    }
}

/// `batches` batches of `rows` rows over `keys` distinct ids (and names derived from them).
fn batches(seed: u64, batches: usize, rows: usize, keys: u64) -> Vec<RecordBatch> {
    let mut rng = Rng(seed);
    (0..batches)
        .map(|_| {
            let ids: Vec<i64> = (0..rows).map(|_| rng.below(keys) as i64).collect();
            let names: StringArray = ids
                .iter()
                .map(|&id| (id % 23 != 0).then(|| format!("name-{}", id % 5000)))
                .collect();
            let v: Int64Array = (0..rows)
                .map(|_| (rng.below(10) != 0).then(|| rng.below(2000) as i64 - 1000))
                .collect();
            let d: Int32Array = (0..rows).map(|_| rng.below(7) as i32).collect();
            let tag: StringArray = (0..rows)
                .map(|_| Some(format!("tag-{}", rng.below(100))))
                .collect();
            let noise: Float64Array = (0..rows).map(|i| i as f64).collect();
            RecordBatch::try_new(
                input_schema(),
                vec![
                    Arc::new(Int64Array::from(ids)),
                    Arc::new(names),
                    Arc::new(v),
                    Arc::new(d),
                    Arc::new(tag),
                    Arc::new(noise),
                ],
            )
            .expect("valid batch")
        })
        .collect()
}

/// The context of subtask 0 of 1 with `memory`.
pub(super) fn context(
    input: &SchemaRef,
    output: &SchemaRef,
    memory: MemoryBudget,
) -> OperatorContext {
    OperatorContext {
        vertex: "GroupAggregate".into(),
        subtask: SubtaskIndex(0),
        parallelism: 1,
        max_parallelism: MAX_PARALLELISM,
        key_groups: KeyGroupRange::for_subtask(MAX_PARALLELISM, 1, 0),
        input_schemas: vec![input.clone()],
        output_schema: output.clone(),
        incremental_checkpoints: false,
        checkpointing: false,
        memory,
    }
}

/// One run's result: its rows (each rendered column by column), sorted, and what it reported.
struct Run {
    rows: Vec<Vec<String>>,
    spilled_bytes: u64,
    deepest_level: u32,
}

/// Opens the operator with `memory` (and, if given, lower spilling limits: the last level and
/// the rows per replayed batch), feeds it `input` and finishes it.
fn run(
    spec: &KeyedAggregateSpec,
    input: &[RecordBatch],
    memory: MemoryBudget,
    limits: Option<(u32, usize)>,
) -> Run {
    let schema = input_schema();
    let output = spec.output_schema(&schema).expect("valid spec");
    let mut aggregate = KeyedAggregate::try_new(spec, &schema, output.clone()).expect("operator");
    aggregate
        .open(&context(&schema, &output, memory))
        .expect("open");
    if let (Some((max_level, replay_rows)), Some(spilling)) = (limits, &mut aggregate.spilling) {
        spilling.set_limits(max_level, replay_rows);
    }
    let mut out = Output::default();
    let mut rows = Vec::new();
    let mut collect = |out: &mut Output| {
        for element in out.drain() {
            let StreamElement::Batch(batch) = element else {
                continue;
            };
            assert_eq!(batch.schema(), output);
            for i in 0..batch.num_rows() {
                rows.push(
                    batch
                        .columns()
                        .iter()
                        .map(|c| array_value_to_string(c, i).expect("displayable"))
                        .collect::<Vec<_>>(),
                );
            }
        }
    };
    for batch in input {
        aggregate
            .process_batch(0, batch.clone(), &mut out)
            .expect("batch");
        collect(&mut out);
    }
    aggregate.finish(&mut out).expect("finish");
    while aggregate.finish_more(&mut out).expect("finish") {}
    collect(&mut out);
    let mut metrics = OperatorMetrics::default();
    aggregate.report_metrics(&mut metrics);
    rows.sort();
    Run {
        rows,
        spilled_bytes: metrics.spilled_bytes,
        deepest_level: aggregate.deepest_spill_level(),
    }
}

/// Runs one phase of a two-phase aggregation over `input` (of schema `schema`) and returns
/// what it emitted, in order, and how many bytes it spilled.
fn run_phase(
    spec: &KeyedAggregateSpec,
    schema: &SchemaRef,
    input: &[RecordBatch],
    memory: MemoryBudget,
    partial_max_groups: usize,
) -> (Vec<RecordBatch>, u64) {
    let output = spec.output_schema(schema).expect("valid spec");
    let mut aggregate = KeyedAggregate::try_new(spec, schema, output.clone()).expect("operator");
    aggregate.partial_max_groups = partial_max_groups;
    aggregate
        .open(&context(schema, &output, memory))
        .expect("open");
    let mut out = Output::default();
    for batch in input {
        aggregate
            .process_batch(0, batch.clone(), &mut out)
            .expect("batch");
    }
    aggregate.finish(&mut out).expect("finish");
    while aggregate.finish_more(&mut out).expect("finish") {}
    let mut metrics = OperatorMetrics::default();
    aggregate.report_metrics(&mut metrics);
    let batches = out
        .drain()
        .into_iter()
        .filter_map(|element| match element {
            StreamElement::Batch(batch) => {
                assert_eq!(batch.schema(), output);
                Some(batch)
            }
            _ => None,
        })
        .collect();
    (batches, metrics.spilled_bytes)
}

/// Partial phases over three parts of the input (each emitting whenever it holds 700
/// groups), then a final phase over all their rows, unlimited and under a tiny budget that
/// makes it spill: the rows a single phase gives, for every key shape and every function
/// that merges (MIN/MAX of strings and AVG's NULLs included).
#[test]
fn two_phases_give_the_rows_of_one_even_when_the_final_one_spills() {
    use AggregateFunction::*;
    let input = batches(0x2fa5e, 45, 400, 9_000);
    for keys in [&["id"][..], &["name"], &["name", "d"]] {
        let single = KeyedAggregateSpec {
            aggregates: vec![
                call(Count, None, "n"),
                call(Count, Some("v"), "n_v"),
                call(Sum, Some("v"), "sum_v"),
                call(Min, Some("v"), "min_v"),
                call(Max, Some("tag"), "max_tag"),
                call(Avg, Some("v"), "avg_v"),
                call(Avg, Some("noise"), "avg_noise"),
            ],
            ..spec(keys)
        };
        let (expected, _) = run_phase(
            &single,
            &input_schema(),
            &input,
            MemoryBudget::unlimited(),
            usize::MAX,
        );
        let partial = KeyedAggregateSpec {
            phase: AggregatePhase::Partial,
            ..single.clone()
        };
        let schema = input_schema();
        let input_types = single
            .aggregates
            .iter()
            .map(|c| {
                c.input
                    .as_ref()
                    .map(|i| schema.field_with_name(i).unwrap().data_type().clone())
            })
            .collect();
        let last = KeyedAggregateSpec {
            phase: AggregatePhase::Final { input_types },
            ..single.clone()
        };
        let mut partial_rows = Vec::new();
        for part in input.chunks(15) {
            let (rows, spilled) =
                run_phase(&partial, &schema, part, MemoryBudget::unlimited(), 700);
            assert_eq!(spilled, 0);
            partial_rows.extend(rows);
        }
        let partial_schema = partial.output_schema(&schema).unwrap();
        let emitted: usize = partial_rows.iter().map(RecordBatch::num_rows).sum();
        assert!(
            emitted > 3 * 700,
            "keys {keys:?}: the partial phases emitted {emitted} rows, so none flushed early"
        );
        let dir = tempfile::tempdir().expect("temporary directory");
        for memory in [
            MemoryBudget::unlimited(),
            MemoryBudget::new(TINY_BUDGET, dir.path().join("spill")),
        ] {
            let limited = memory.limit().is_some();
            let (got, spilled) =
                run_phase(&last, &partial_schema, &partial_rows, memory, usize::MAX);
            assert_eq!(spilled > 0, limited, "keys {keys:?}");
            let rendered = |batches: &[RecordBatch]| {
                let mut rows: Vec<Vec<String>> = batches
                    .iter()
                    .flat_map(|b| {
                        (0..b.num_rows()).map(move |i| {
                            b.columns()
                                .iter()
                                .map(|c| array_value_to_string(c, i).expect("displayable"))
                                .collect()
                        })
                    })
                    .collect();
                rows.sort();
                rows
            };
            assert_eq!(rendered(&got), rendered(&expected), "keys {keys:?}");
        }
    }
}

fn files_in(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |entries| entries.count())
}

/// Every key shape under a tiny budget gives the rows of an unlimited run, exactly once each.
#[test]
fn a_spilling_aggregation_emits_the_rows_of_an_unlimited_one() {
    let input = batches(0x5eed, 60, 500, 12_000);
    for keys in [&["id"][..], &["name"], &["id", "name"], &["name", "d"]] {
        let spec = spec(keys);
        let expected = run(&spec, &input, MemoryBudget::unlimited(), None);
        let dir = tempfile::tempdir().expect("temporary directory");
        let spill_dir = dir.path().join("spill");
        let spilled = run(
            &spec,
            &input,
            MemoryBudget::new(TINY_BUDGET, &spill_dir),
            None,
        );
        assert!(spilled.spilled_bytes > 0, "keys {keys:?} spilled nothing");
        assert!(
            spilled.deepest_level >= 1,
            "keys {keys:?}: no pass over a partition"
        );
        assert_eq!(expected.spilled_bytes, 0);
        assert_eq!(spilled.rows.len(), expected.rows.len(), "keys {keys:?}");
        assert_eq!(spilled.rows, expected.rows, "keys {keys:?}");
        assert_eq!(files_in(&spill_dir), 0, "spill files left behind");
    }
}

/// A partition that holds more than the budget is partitioned again, with another seed.
#[test]
fn a_partition_over_the_budget_spills_again() {
    let input = batches(0x0dd, 80, 1000, 40_000);
    let spec = spec(&["id"]);
    let expected = run(&spec, &input, MemoryBudget::unlimited(), None);
    let dir = tempfile::tempdir().expect("temporary directory");
    let spill_dir = dir.path().join("spill");
    // Replayed in batches of 512 rows, a level-1 partition (about 5 000 rows) overflows.
    let spilled = run(
        &spec,
        &input,
        MemoryBudget::new(TINY_BUDGET, &spill_dir),
        Some((MAX_LEVEL, 512)),
    );
    assert!(
        spilled.deepest_level >= 2,
        "deepest level {}",
        spilled.deepest_level
    );
    assert_eq!(spilled.rows, expected.rows);
    assert_eq!(files_in(&spill_dir), 0, "spill files left behind");
}

/// With the budget too small for any partition, spilling stops at the last level, which
/// finishes in memory.
#[test]
fn the_last_level_finishes_in_memory() {
    let input = batches(0xbad, 20, 200, 3_000);
    let spec = spec(&["id", "name"]);
    let expected = run(&spec, &input, MemoryBudget::unlimited(), None);
    let dir = tempfile::tempdir().expect("temporary directory");
    let spill_dir = dir.path().join("spill");
    let spilled = run(
        &spec,
        &input,
        MemoryBudget::new(1, &spill_dir),
        Some((2, 16)),
    );
    assert_eq!(spilled.deepest_level, 2);
    assert_eq!(spilled.rows, expected.rows);
    assert_eq!(files_in(&spill_dir), 0, "spill files left behind");
}

/// The global aggregate over no rows still emits its one row under a budget.
#[test]
fn a_global_aggregate_over_no_rows_emits_one_row_under_a_budget() {
    let spec = KeyedAggregateSpec {
        keys: vec!["d".into()],
        default_group: Some(vec![ScalarValue::Int32(0)]),
        phase: Default::default(),
        ..spec(&[])
    };
    let dir = tempfile::tempdir().expect("temporary directory");
    let run = run(&spec, &[], MemoryBudget::new(1, dir.path()), None);
    assert_eq!(run.rows.len(), 1);
    assert_eq!(run.rows[0][..3], ["0", "0", ""]);
    assert_eq!(run.spilled_bytes, 0);
}

/// The changelog aggregation is streaming: it ignores the budget.
#[test]
fn a_changelog_aggregation_never_spills() {
    let input = batches(7, 10, 500, 5_000);
    let spec = KeyedAggregateSpec {
        emit: EmitMode::Changelog,
        ..spec(&["id"])
    };
    let dir = tempfile::tempdir().expect("temporary directory");
    let run = run(&spec, &input, MemoryBudget::new(1, dir.path()), None);
    assert_eq!(run.spilled_bytes, 0);
    assert!(!run.rows.is_empty());
}

/// A snapshot holds the groups in memory until something spilled, then refuses, naming the
/// operator.
#[test]
fn a_snapshot_after_spilling_is_refused() {
    let schema = input_schema();
    let spec = spec(&["id"]);
    let output = spec.output_schema(&schema).expect("valid spec");
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut aggregate = KeyedAggregate::try_new(&spec, &schema, output.clone()).expect("operator");
    aggregate
        .open(&context(
            &schema,
            &output,
            MemoryBudget::new(TINY_BUDGET, dir.path()),
        ))
        .expect("open");
    let mut out = Output::default();
    let input = batches(3, 20, 500, 10_000);
    aggregate
        .process_batch(0, input[0].clone(), &mut out)
        .expect("batch");
    aggregate
        .snapshot(CheckpointId(1))
        .expect("a snapshot before spilling");
    for batch in &input[1..] {
        aggregate
            .process_batch(0, batch.clone(), &mut out)
            .expect("batch");
    }
    let err = aggregate
        .snapshot(CheckpointId(2))
        .expect_err("a snapshot after spilling");
    assert!(matches!(err, Error::Unsupported { .. }), "{err}");
    assert!(err.to_string().contains("'GroupAggregate'"), "{err}");
}

/// One result row of the model: COUNT(*), SUM, MIN, MAX, AVG, COUNT(DISTINCT) of `v`.
type ModelRow = (i64, Option<i64>, Option<i64>, Option<i64>, Option<f64>, i64);

/// The row-at-a-time model: a fold into a BTreeMap per key.
fn model(rows: &[(Option<i64>, Option<i64>)]) -> BTreeMap<Option<i64>, ModelRow> {
    let mut groups: BTreeMap<Option<i64>, (i64, Vec<i64>)> = BTreeMap::new();
    for &(key, value) in rows {
        let group = groups.entry(key).or_default();
        group.0 += 1;
        group.1.extend(value);
    }
    groups
        .into_iter()
        .map(|(key, (count, values))| {
            let sum = (!values.is_empty()).then(|| values.iter().sum::<i64>());
            let avg = sum.map(|s| s as f64 / values.len() as f64);
            let distinct = values.iter().collect::<BTreeSet<_>>().len() as i64;
            let row = (
                count,
                sum,
                values.iter().min().copied(),
                values.iter().max().copied(),
                avg,
                distinct,
            );
            (key, row)
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Any budget, any batch boundaries, any replay batch size: the model's groups.
    #[test]
    fn spilling_matches_a_row_at_a_time_model(
        rows in proptest::collection::vec(
            (
                proptest::option::weighted(0.95, 0i64..400),
                proptest::option::weighted(0.9, -50i64..50),
            ),
            0..3000,
        ),
        batch_rows in 1usize..400,
        budget in prop_oneof![1usize..4096, 4096usize..200_000],
        replay_rows in 8usize..300,
    ) {
        use AggregateFunction::*;
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, true),
            Field::new("v", DataType::Int64, true),
        ]));
        let spec = KeyedAggregateSpec {
            keys: vec!["k".into()],
            aggregates: vec![
                call(Count, None, "n"),
                call(Sum, Some("v"), "sum"),
                call(Min, Some("v"), "min"),
                call(Max, Some("v"), "max"),
                call(Avg, Some("v"), "avg"),
                call(CountDistinct, Some("v"), "distinct"),
            ],
            emit: EmitMode::Final,
            default_group: None,
            phase: Default::default(),
        };
        let output = spec.output_schema(&schema).expect("valid spec");
        let dir = tempfile::tempdir().expect("temporary directory");
        let spill_dir = dir.path().join("spill");
        let mut aggregate =
            KeyedAggregate::try_new(&spec, &schema, output.clone()).expect("operator");
        aggregate
            .open(&context(&schema, &output, MemoryBudget::new(budget, &spill_dir)))
            .expect("open");
        if let Some(spilling) = &mut aggregate.spilling {
            spilling.set_limits(MAX_LEVEL, replay_rows);
        }
        let mut out = Output::default();
        for chunk in rows.chunks(batch_rows) {
            let (keys, values): (Vec<_>, Vec<_>) = chunk.iter().copied().unzip();
            let batch = RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(Int64Array::from(keys)) as ArrayRef,
                    Arc::new(Int64Array::from(values)),
                ],
            )
            .expect("valid batch");
            aggregate.process_batch(0, batch, &mut out).expect("batch");
        }
        aggregate.finish(&mut out).expect("finish");
        while aggregate.finish_more(&mut out).expect("finish") {}
        let mut got = BTreeMap::new();
        for element in out.drain() {
            let StreamElement::Batch(batch) = element else {
                continue;
            };
            let int = |i: usize| batch.column(i).as_primitive::<Int64Type>().clone();
            let (k, n, sum, min, max, distinct) = (int(0), int(1), int(2), int(3), int(4), int(6));
            let avg = batch.column(5).as_primitive::<Float64Type>();
            for i in 0..batch.num_rows() {
                let at = |a: &Int64Array| a.is_valid(i).then(|| a.value(i));
                let row = (
                    n.value(i),
                    at(&sum),
                    at(&min),
                    at(&max),
                    avg.is_valid(i).then(|| avg.value(i)),
                    distinct.value(i),
                );
                prop_assert!(got.insert(at(&k), row).is_none(), "key {:?} emitted twice", at(&k));
            }
        }
        prop_assert_eq!(got, model(&rows));
        prop_assert_eq!(files_in(&spill_dir), 0, "spill files left behind");
    }
}
