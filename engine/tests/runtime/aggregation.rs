use std::collections::BTreeMap;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Float64Type, Int8Type, Int64Type};
use proptest::prelude::*;
use sluice_engine::api::StreamEnvironment;
use sluice_engine::element::{ROW_KIND_COLUMN, RowKind};
use sluice_engine::graph::{AggregateCall, AggregateFunction, EmitMode};

use crate::{key_value_batches, key_value_schema, runtime};

/// COUNT(*), COUNT(v), SUM(v), MIN(v), MAX(v), AVG(v) per key.
#[derive(Debug, Clone, PartialEq)]
struct Expected {
    count_star: i64,
    count: i64,
    sum: Option<i64>,
    min: Option<i64>,
    max: Option<i64>,
    avg: Option<f64>,
}

fn reference(rows: &[(i64, Option<i64>)]) -> BTreeMap<i64, Expected> {
    let mut out: BTreeMap<i64, Expected> = BTreeMap::new();
    for &(k, v) in rows {
        let e = out.entry(k).or_insert(Expected {
            count_star: 0,
            count: 0,
            sum: None,
            min: None,
            max: None,
            avg: None,
        });
        e.count_star += 1;
        if let Some(v) = v {
            e.count += 1;
            e.sum = Some(e.sum.unwrap_or(0) + v);
            e.min = Some(e.min.map_or(v, |m| m.min(v)));
            e.max = Some(e.max.map_or(v, |m| m.max(v)));
        }
    }
    for e in out.values_mut() {
        e.avg = e.sum.map(|s| s as f64 / e.count as f64);
    }
    out
}

fn calls() -> Vec<AggregateCall> {
    let call = |function, input: Option<&str>, output: &str| AggregateCall {
        function,
        input: input.map(str::to_string),
        output: output.to_string(),
    };
    vec![
        call(AggregateFunction::Count, None, "count_star"),
        call(AggregateFunction::Count, Some("v"), "count"),
        call(AggregateFunction::Sum, Some("v"), "sum"),
        call(AggregateFunction::Min, Some("v"), "min"),
        call(AggregateFunction::Max, Some("v"), "max"),
        call(AggregateFunction::Avg, Some("v"), "avg"),
    ]
}

/// Folds result rows (final, or a changelog applied in order) into a map by key.
fn fold_results(batches: &[RecordBatch]) -> BTreeMap<i64, Expected> {
    let mut out = BTreeMap::new();
    for batch in batches {
        let schema = batch.schema();
        let kinds = schema
            .index_of(ROW_KIND_COLUMN)
            .ok()
            .map(|i| batch.column(i).as_primitive::<Int8Type>().clone());
        let column = |name: &str| {
            batch
                .column(schema.index_of(name).expect("column exists"))
                .clone()
        };
        let keys = column("k");
        let keys = keys.as_primitive::<Int64Type>();
        let ints = |name: &str| column(name).as_primitive::<Int64Type>().clone();
        let (count_star, count, sum, min, max) = (
            ints("count_star"),
            ints("count"),
            ints("sum"),
            ints("min"),
            ints("max"),
        );
        let avg = column("avg").as_primitive::<Float64Type>().clone();
        let opt = |a: &arrow::array::Int64Array, i: usize| a.is_valid(i).then(|| a.value(i));
        for i in 0..batch.num_rows() {
            let kind = kinds.as_ref().map_or(RowKind::Insert, |k| {
                RowKind::from_i8(k.value(i)).expect("valid kind")
            });
            let key = keys.value(i);
            match kind {
                RowKind::Insert | RowKind::UpdateAfter => {
                    out.insert(
                        key,
                        Expected {
                            count_star: count_star.value(i),
                            count: count.value(i),
                            sum: opt(&sum, i),
                            min: opt(&min, i),
                            max: opt(&max, i),
                            avg: avg.is_valid(i).then(|| avg.value(i)),
                        },
                    );
                }
                RowKind::UpdateBefore | RowKind::Delete => {
                    assert!(
                        out.remove(&key).is_some(),
                        "retraction of unknown key {key}"
                    );
                }
            }
        }
    }
    out
}

fn run(
    rows: &[(i64, Option<i64>)],
    parallelism: u32,
    batch_size: usize,
    emit: EmitMode,
) -> BTreeMap<i64, Expected> {
    let env = StreamEnvironment::new("agg").with_parallelism(parallelism);
    env.from_batches(
        "rows",
        key_value_schema(),
        key_value_batches(rows, batch_size),
    )
    .unwrap()
    .key_by(["k"])
    .aggregate(calls(), emit)
    .unwrap()
    .collect("out")
    .unwrap();
    let output = env.execute_on(&runtime(parallelism as usize)).unwrap();
    fold_results(&output.collected.batches("out"))
}

fn assert_same(actual: &BTreeMap<i64, Expected>, expected: &BTreeMap<i64, Expected>) {
    assert_eq!(actual.len(), expected.len());
    for (key, e) in expected {
        let a = &actual[key];
        assert_eq!(
            (a.count_star, a.count, a.sum, a.min, a.max),
            (e.count_star, e.count, e.sum, e.min, e.max),
            "key {key}"
        );
        match (a.avg, e.avg) {
            (Some(x), Some(y)) => assert!(
                (x - y).abs() <= 1e-9 * y.abs().max(1.0),
                "avg of {key}: {x} vs {y}"
            ),
            (x, y) => assert_eq!(x, y, "avg of key {key}"),
        }
    }
}

fn rows_strategy() -> impl Strategy<Value = Vec<(i64, Option<i64>)>> {
    prop::collection::vec(
        (0i64..50, prop::option::weighted(0.8, -1000i64..1000)),
        0..400,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    #[test]
    fn final_aggregation_equals_reference_at_any_parallelism_and_batch_size(rows in rows_strategy()) {
        let expected = reference(&rows);
        for parallelism in [1, 2, 4] {
            for batch_size in [1, 7, 8192] {
                assert_same(&run(&rows, parallelism, batch_size, EmitMode::Final), &expected);
            }
        }
    }

    #[test]
    fn changelog_aggregation_folds_to_the_reference(rows in rows_strategy()) {
        let expected = reference(&rows);
        for parallelism in [1, 3] {
            for batch_size in [1, 7, 8192] {
                assert_same(&run(&rows, parallelism, batch_size, EmitMode::Changelog), &expected);
            }
        }
    }
}

#[test]
fn changelog_retracts_before_it_updates() {
    let rows = [(1, Some(10)), (1, Some(5)), (2, None)];
    let env = StreamEnvironment::new("changelog");
    env.from_batches("rows", key_value_schema(), key_value_batches(&rows, 1))
        .unwrap()
        .key_by(["k"])
        .aggregate(calls(), EmitMode::Changelog)
        .unwrap()
        .collect("out")
        .unwrap();
    let output = env.execute_on(&runtime(1)).unwrap();
    let kinds: Vec<i8> = output
        .collected
        .batches("out")
        .iter()
        .flat_map(|b| b.column(0).as_primitive::<Int8Type>().values().to_vec())
        .collect();
    let i = RowKind::Insert as i8;
    let (ub, ua) = (RowKind::UpdateBefore as i8, RowKind::UpdateAfter as i8);
    assert_eq!(kinds, vec![i, ub, ua, i]);
}

#[test]
fn an_upsert_sink_materialises_the_changelog_by_key() {
    let rows: Vec<(i64, Option<i64>)> = (0..2000).map(|i| (i % 37, Some(i))).collect();
    for parallelism in [1, 3] {
        let env = StreamEnvironment::new("upsert").with_parallelism(parallelism);
        env.from_batches("rows", key_value_schema(), key_value_batches(&rows, 64))
            .unwrap()
            .key_by(["k"])
            .aggregate(calls(), EmitMode::Changelog)
            .unwrap()
            .sink(
                "table",
                sluice_engine::connector::SinkSpec::Upsert {
                    name: "table".into(),
                    primary_key: vec!["k".into()],
                },
            )
            .unwrap();
        let output = env.execute_on(&runtime(parallelism as usize)).unwrap();
        let table = output.collected.batches("table");
        assert!(
            table
                .iter()
                .all(|b| b.schema().index_of(ROW_KIND_COLUMN).is_err())
        );
        assert_same(&fold_results(&table), &reference(&rows));
        assert_eq!(table.iter().map(|b| b.num_rows()).sum::<usize>(), 37);
    }
}

#[test]
fn a_file_sink_refuses_an_updating_input_when_the_graph_is_built() {
    let env = StreamEnvironment::new("refuse");
    let error = env
        .from_batches(
            "rows",
            key_value_schema(),
            key_value_batches(&[(1, Some(1))], 1),
        )
        .unwrap()
        .key_by(["k"])
        .aggregate(calls(), EmitMode::Changelog)
        .unwrap()
        .sink(
            "files",
            sluice_engine::connector::SinkSpec::Filesystem(
                sluice_engine::connector::FileSinkSpec {
                    path: "/nonexistent".into(),
                    format: sluice_engine::connector::FileFormat::Csv,
                    options: Default::default(),
                    partition_keys: Vec::new(),
                    overwrite: None,
                },
            ),
        )
        .and_then(|()| env.build().map(|_| ()))
        .unwrap_err()
        .to_string();
    assert!(error.contains("vertex 'files'"), "{error}");
    assert!(error.contains("accepts only insert-only input"), "{error}");
}
