//! Joins through the DataStream API on the local runtime, against nested-loop references, at
//! several parallelisms and batch sizes: interval, tumbling window, regular inner and outer
//! (changelog folded), and a two-input user operator through `connect`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Array, ArrayRef, AsArray, Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Int8Type, Int64Type, Schema, SchemaRef};
use sluice_engine::api::{DataStream, StreamEnvironment};
use sluice_engine::connector::{MemorySource, SourceSpec};
use sluice_engine::element::{ROW_KIND_COLUMN, RowKind};
use sluice_engine::graph::JoinType;
use sluice_engine::operator::{Operator, OperatorContext, Output};
use sluice_engine::time::WatermarkStrategy;

use crate::runtime;

/// One input row: key (NULL allowed), event time in ms, and a unique id.
#[derive(Debug, Clone, Copy)]
struct Row {
    key: Option<i64>,
    time: i64,
    id: i64,
}

fn schema(id: &str) -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("k", DataType::Int64, true),
        Field::new("t", DataType::Int64, false),
        Field::new(id, DataType::Int64, false),
    ]))
}

/// Rows in rising time with up to 30 ms of disorder; keys in `0..keys`, some NULL.
fn rows(seed: u64, count: usize, keys: i64, id_base: i64, nulls: bool) -> Vec<Row> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) as i64
    };
    (0..count)
        .map(|i| {
            let key = next() % keys;
            let null = nulls && next() % 17 == 0;
            Row {
                key: (!null).then_some(key),
                time: i as i64 * 7 + next() % 30,
                id: id_base + i as i64,
            }
        })
        .collect()
}

fn batches(rows: &[Row], id: &str, batch_size: usize) -> Vec<RecordBatch> {
    rows.chunks(batch_size)
        .map(|chunk| {
            let columns: Vec<ArrayRef> = vec![
                Arc::new(chunk.iter().map(|r| r.key).collect::<Int64Array>()),
                Arc::new(Int64Array::from_iter_values(chunk.iter().map(|r| r.time))),
                Arc::new(Int64Array::from_iter_values(chunk.iter().map(|r| r.id))),
            ];
            RecordBatch::try_new(schema(id), columns).expect("valid batch")
        })
        .collect()
}

fn source(env: &StreamEnvironment, name: &str, id: &str, rows: &[Row], size: usize) -> DataStream {
    let spec = SourceSpec::Memory(MemorySource::new(schema(id), batches(rows, id, size)).unwrap());
    env.source_with_watermarks(
        name,
        spec,
        WatermarkStrategy::bounded_out_of_orderness("t", Duration::from_millis(100)),
    )
    .unwrap()
}

/// A multiset of (left id, right id) result rows.
type Results = BTreeMap<(Option<i64>, Option<i64>), i64>;

fn add(results: &mut Results, row: (Option<i64>, Option<i64>), delta: i64) {
    let count = results.entry(row).or_insert(0);
    *count += delta;
    if *count == 0 {
        results.remove(&row);
    }
}

/// Folds result batches (a changelog when `_row_kind` is present) into a multiset.
fn fold(batches: &[RecordBatch]) -> Results {
    let mut results = Results::new();
    for batch in batches {
        let schema = batch.schema();
        let column = |name: &str| batch.column(schema.index_of(name).unwrap()).clone();
        let a = column("a");
        let a = a.as_primitive::<Int64Type>();
        let b = column("b");
        let b = b.as_primitive::<Int64Type>();
        let kinds = schema
            .index_of(ROW_KIND_COLUMN)
            .ok()
            .map(|i| batch.column(i).as_primitive::<Int8Type>().clone());
        for i in 0..batch.num_rows() {
            let row = (
                a.is_valid(i).then(|| a.value(i)),
                b.is_valid(i).then(|| b.value(i)),
            );
            let kind = kinds
                .as_ref()
                .map_or(RowKind::Insert, |k| RowKind::from_i8(k.value(i)).unwrap());
            match kind {
                RowKind::Insert | RowKind::UpdateAfter => add(&mut results, row, 1),
                RowKind::Delete | RowKind::UpdateBefore => {
                    assert!(results.contains_key(&row), "retraction of unseen {row:?}");
                    add(&mut results, row, -1);
                }
            }
        }
    }
    results
}

/// Nested-loop reference: every matching pair, plus unmatched rows of preserved sides.
fn reference(
    left: &[Row],
    right: &[Row],
    matches: impl Fn(&Row, &Row) -> bool,
    preserve: [bool; 2],
) -> Results {
    let mut results = Results::new();
    let mut right_matched = vec![false; right.len()];
    for l in left {
        let mut matched = false;
        for (j, r) in right.iter().enumerate() {
            if l.key.is_some() && l.key == r.key && matches(l, r) {
                add(&mut results, (Some(l.id), Some(r.id)), 1);
                matched = true;
                right_matched[j] = true;
            }
        }
        if !matched && preserve[0] {
            add(&mut results, (Some(l.id), None), 1);
        }
    }
    if preserve[1] {
        for (r, matched) in right.iter().zip(right_matched) {
            if !matched {
                add(&mut results, (None, Some(r.id)), 1);
            }
        }
    }
    results
}

fn inputs() -> (Vec<Row>, Vec<Row>) {
    (rows(1, 600, 12, 0, true), rows(2, 500, 12, 10_000, true))
}

const PARALLELISMS: [u32; 3] = [1, 2, 4];
const BATCH_SIZES: [usize; 3] = [1, 13, 4096];

#[test]
fn interval_join_equals_the_nested_loop_reference() {
    let (left, right) = inputs();
    let (lower, upper) = (-40, 25);
    let expected = reference(
        &left,
        &right,
        |l, r| r.time + lower <= l.time && l.time <= r.time + upper,
        [false, false],
    );
    assert!(expected.len() > 100, "the test joins something");
    for parallelism in PARALLELISMS {
        for batch_size in BATCH_SIZES {
            let env = StreamEnvironment::new("interval").with_parallelism(parallelism);
            let l = source(&env, "left", "a", &left, batch_size);
            let r = source(&env, "right", "b", &right, batch_size);
            l.join(&r, ["k"], ["k"])
                .interval("t", "t", lower, upper)
                .unwrap()
                .collect("out")
                .unwrap();
            let output = env.execute_on(&runtime(parallelism as usize)).unwrap();
            let actual = fold(&output.collected.batches("out"));
            assert_eq!(
                actual, expected,
                "parallelism {parallelism}, batch {batch_size}"
            );
            let join = output.result.vertex("IntervalJoin").expect("join vertex");
            assert_eq!(join.metrics.late_records_dropped, 0);
            // The final watermark cleared the state; only empty containers remain (their
            // capacity follows the peak number of batches held, which with one-row batches
            // depends on how the two sources interleave).
            assert_eq!(join.metrics.state_keys, 0);
            assert!(join.metrics.state_bytes < 160 * 1024, "{:?}", join.metrics);
        }
    }
}

#[test]
fn tumbling_window_join_equals_the_nested_loop_reference() {
    let (left, right) = inputs();
    let size = 50;
    let expected = reference(
        &left,
        &right,
        |l, r| l.time.div_euclid(size) == r.time.div_euclid(size),
        [false, false],
    );
    assert!(expected.len() > 100, "the test joins something");
    for parallelism in PARALLELISMS {
        for batch_size in BATCH_SIZES {
            let env = StreamEnvironment::new("window").with_parallelism(parallelism);
            let l = source(&env, "left", "a", &left, batch_size);
            let r = source(&env, "right", "b", &right, batch_size);
            l.join(&r, ["k"], ["k"])
                .tumbling_window("t", "t", size)
                .unwrap()
                .collect("out")
                .unwrap();
            let output = env.execute_on(&runtime(parallelism as usize)).unwrap();
            let actual = fold(&output.collected.batches("out"));
            assert_eq!(
                actual, expected,
                "parallelism {parallelism}, batch {batch_size}"
            );
            let join = output.result.vertex("WindowJoin").expect("join vertex");
            assert_eq!(join.metrics.late_records_dropped, 0);
            assert_eq!(join.metrics.state_keys, 0);
        }
    }
}

#[test]
fn regular_joins_fold_to_the_nested_loop_reference() {
    let (left, right) = inputs();
    // Fewer rows: the regular join's result grows with the square of rows per key.
    let (left, right) = (&left[..200], &right[..150]);
    for (join_type, preserve) in [
        (JoinType::Inner, [false, false]),
        (JoinType::Left, [true, false]),
        (JoinType::Right, [false, true]),
        (JoinType::Full, [true, true]),
    ] {
        let expected = reference(left, right, |_, _| true, preserve);
        for parallelism in PARALLELISMS {
            for batch_size in BATCH_SIZES {
                let env = StreamEnvironment::new("regular").with_parallelism(parallelism);
                let l = env
                    .from_batches("left", schema("a"), batches(left, "a", batch_size))
                    .unwrap();
                let r = env
                    .from_batches("right", schema("b"), batches(right, "b", batch_size))
                    .unwrap();
                l.join(&r, ["k"], ["k"])
                    .regular(join_type)
                    .unwrap()
                    .collect("out")
                    .unwrap();
                let output = env.execute_on(&runtime(parallelism as usize)).unwrap();
                let actual = fold(&output.collected.batches("out"));
                assert_eq!(
                    actual, expected,
                    "{join_type:?}, parallelism {parallelism}, batch {batch_size}"
                );
            }
        }
    }
}

#[test]
fn join_output_names_and_errors() {
    let env = StreamEnvironment::new("names");
    let l = env.from_batches("left", schema("a"), vec![]).unwrap();
    let r = env.from_batches("right", schema("b"), vec![]).unwrap();
    let joined = l.join(&r, ["k"], ["k"]).regular(JoinType::Left).unwrap();
    let names: Vec<String> = joined
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(
        names,
        ["_row_kind", "k", "t", "a", "k_right", "t_right", "b"]
    );
    let error = l
        .join(&r, ["k"], ["missing"])
        .regular(JoinType::Inner)
        .err()
        .expect("unknown key")
        .to_string();
    assert!(error.contains("'missing'"), "{error}");
    let error = l
        .join(&r, ["k"], ["k"])
        .interval("a", "t", 10, -10)
        .err()
        .expect("empty interval")
        .to_string();
    assert!(error.contains("lower bound 10"), "{error}");
    // An inner regular join takes an updating input (it retracts); an outer one not yet.
    let error = joined
        .join(&r, ["k"], ["k"])
        .regular(JoinType::Left)
        .err()
        .expect("updating input")
        .to_string();
    assert!(
        error.contains("outer join over updating input is not supported yet"),
        "{error}"
    );
}

/// Counts, per key, the rows from each input, and emits (k, left count, right count) at the
/// end: a minimal co-process function.
struct CountBoth {
    counts: BTreeMap<i64, [i64; 2]>,
    schema: SchemaRef,
}

impl Operator for CountBoth {
    fn process_batch(
        &mut self,
        input: usize,
        batch: RecordBatch,
        _out: &mut Output,
    ) -> sluice_engine::Result<()> {
        let keys = batch.column(0).as_primitive::<Int64Type>();
        for key in keys.iter().flatten() {
            self.counts.entry(key).or_default()[input] += 1;
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut Output) -> sluice_engine::Result<()> {
        let keys = Int64Array::from_iter_values(self.counts.keys().copied());
        let left = Int64Array::from_iter_values(self.counts.values().map(|c| c[0]));
        let right = Int64Array::from_iter_values(self.counts.values().map(|c| c[1]));
        let batch = RecordBatch::try_new(
            self.schema.clone(),
            vec![Arc::new(keys), Arc::new(left), Arc::new(right)],
        )
        .expect("valid batch");
        out.push_batch(batch);
        Ok(())
    }
}

#[test]
fn connected_streams_meet_by_key_in_a_two_input_operator() {
    let (left, right) = inputs();
    let mut expected: BTreeMap<i64, [i64; 2]> = BTreeMap::new();
    for (side, rows) in [&left, &right].into_iter().enumerate() {
        for key in rows.iter().filter_map(|r| r.key) {
            expected.entry(key).or_default()[side] += 1;
        }
    }
    let out_schema = Arc::new(Schema::new(vec![
        Field::new("k", DataType::Int64, false),
        Field::new("left", DataType::Int64, false),
        Field::new("right", DataType::Int64, false),
    ]));
    for parallelism in PARALLELISMS {
        let env = StreamEnvironment::new("connect").with_parallelism(parallelism);
        let l = env
            .from_batches("left", schema("a"), batches(&left, "a", 50))
            .unwrap();
        let r = env
            .from_batches("right", schema("b"), batches(&right, "b", 50))
            .unwrap();
        let factory_schema = out_schema.clone();
        l.connect(&r, ["k"], ["k"])
            .process(
                "CountBoth",
                out_schema.clone(),
                Arc::new(move |_ctx: &OperatorContext| {
                    Ok(Box::new(CountBoth {
                        counts: BTreeMap::new(),
                        schema: factory_schema.clone(),
                    }) as Box<dyn Operator>)
                }),
            )
            .unwrap()
            .collect("out")
            .unwrap();
        let output = env.execute_on(&runtime(parallelism as usize)).unwrap();
        let mut actual: BTreeMap<i64, [i64; 2]> = BTreeMap::new();
        for batch in output.collected.batches("out") {
            let column = |i: usize| batch.column(i).as_primitive::<Int64Type>().clone();
            let (k, a, b) = (column(0), column(1), column(2));
            for i in 0..batch.num_rows() {
                // Each key lives on exactly one subtask.
                assert!(
                    actual
                        .insert(k.value(i), [a.value(i), b.value(i)])
                        .is_none()
                );
            }
        }
        assert_eq!(actual, expected, "parallelism {parallelism}");
    }
}
