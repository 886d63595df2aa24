//! Window aggregation through the DataStream API on the local runtime: tumbling, hopping,
//! cumulating and session windows against a naive row-at-a-time reference (every window of
//! every record) at several parallelisms and batch sizes with out-of-order input; exact late
//! record counts; allowed lateness re-firing; processing time and global windows.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Array, ArrayRef, AsArray, Int64Array, RecordBatch, TimestampMillisecondArray};
use arrow::datatypes::{
    DataType, Field, Int64Type, Schema, SchemaRef, TimeUnit, TimestampMillisecondType,
};
use proptest::prelude::*;
use sluice_engine::api::{LocalJobOutput, StreamEnvironment};
use sluice_engine::connector::{MemorySource, SourceSpec};
use sluice_engine::graph::{AggregateCall, AggregateFunction, WindowKind, WindowTime};
use sluice_engine::time::WatermarkStrategy;

use crate::runtime;

/// Out-of-orderness bound of the generated input and of the watermark strategy, ms.
const BOUND_MS: i64 = 40;

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("k", DataType::Int64, false),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            false,
        ),
        Field::new("v", DataType::Int64, true),
    ]))
}

type Row = (i64, i64, Option<i64>);

fn batches(rows: &[Row], batch_size: usize) -> Vec<RecordBatch> {
    rows.chunks(batch_size.max(1))
        .map(|chunk| {
            let k: ArrayRef = Arc::new(Int64Array::from_iter_values(chunk.iter().map(|r| r.0)));
            let ts: ArrayRef = Arc::new(TimestampMillisecondArray::from_iter_values(
                chunk.iter().map(|r| r.1),
            ));
            let v: ArrayRef = Arc::new(chunk.iter().map(|r| r.2).collect::<Int64Array>());
            RecordBatch::try_new(schema(), vec![k, ts, v]).expect("valid batch")
        })
        .collect()
}

fn calls() -> Vec<AggregateCall> {
    let call = |function, input: Option<&str>, output: &str| AggregateCall {
        function,
        input: input.map(str::to_string),
        output: output.to_string(),
    };
    vec![
        call(AggregateFunction::Count, None, "n"),
        call(AggregateFunction::Sum, Some("v"), "sum"),
        call(AggregateFunction::Min, Some("v"), "min"),
        call(AggregateFunction::Max, Some("v"), "max"),
        call(AggregateFunction::CountDistinct, Some("v"), "distinct"),
    ]
}

/// COUNT(*), SUM(v), MIN(v), MAX(v), COUNT(DISTINCT v).
type Aggs = (i64, Option<i64>, Option<i64>, Option<i64>, i64);
/// (key, window start, window end) → aggregates.
type Results = BTreeMap<(i64, i64, i64), Aggs>;

fn aggregate(values: &[Option<i64>]) -> Aggs {
    let present: Vec<i64> = values.iter().flatten().copied().collect();
    let mut distinct = present.clone();
    distinct.sort_unstable();
    distinct.dedup();
    (
        values.len() as i64,
        (!present.is_empty()).then(|| present.iter().sum()),
        present.iter().min().copied(),
        present.iter().max().copied(),
        distinct.len() as i64,
    )
}

/// Every window `[start, end)` of `kind` that contains `t`, by brute force over window ends.
fn windows_of(kind: &WindowKind, t: i64) -> Vec<(i64, i64)> {
    let (stride, span) = match *kind {
        WindowKind::Tumbling { size_ms, .. } => (size_ms, size_ms),
        WindowKind::Hopping {
            size_ms, slide_ms, ..
        } => (slide_ms, size_ms),
        WindowKind::Cumulating {
            max_size_ms,
            step_ms,
            ..
        } => (step_ms, max_size_ms),
        WindowKind::Session { .. } => unreachable!("sessions have their own reference"),
    };
    let mut out = Vec::new();
    let mut end = t - t.rem_euclid(stride);
    while end <= t + span + stride {
        let start = match *kind {
            WindowKind::Cumulating { max_size_ms, .. } => {
                let s = end - stride;
                s - s.rem_euclid(max_size_ms)
            }
            _ => end - span,
        };
        if start <= t && t < end {
            out.push((start, end));
        }
        end += stride;
    }
    out
}

/// The naive model: every record into every window it belongs to; sessions by sorting.
fn reference(kind: &WindowKind, rows: &[Row]) -> Results {
    let mut members: BTreeMap<(i64, i64, i64), Vec<Option<i64>>> = BTreeMap::new();
    if let WindowKind::Session { gap_ms } = *kind {
        let mut by_key: BTreeMap<i64, Vec<(i64, Option<i64>)>> = BTreeMap::new();
        for &(k, t, v) in rows {
            by_key.entry(k).or_default().push((t, v));
        }
        for (k, mut events) in by_key {
            events.sort_by_key(|e| e.0);
            let mut current: Option<(i64, i64, Vec<Option<i64>>)> = None;
            for (t, v) in events {
                match &mut current {
                    Some((_, end, values)) if t <= *end => {
                        *end = (*end).max(t + gap_ms);
                        values.push(v);
                    }
                    _ => {
                        if let Some((s, e, values)) = current.take() {
                            members.insert((k, s, e), values);
                        }
                        current = Some((t, t + gap_ms, vec![v]));
                    }
                }
            }
            if let Some((s, e, values)) = current {
                members.insert((k, s, e), values);
            }
        }
    } else {
        for &(k, t, v) in rows {
            for (s, e) in windows_of(kind, t) {
                members.entry((k, s, e)).or_default().push(v);
            }
        }
    }
    members
        .into_iter()
        .map(|(window, values)| (window, aggregate(&values)))
        .collect()
}

/// Result rows by (key, start, end); a later row for the same window replaces an earlier one
/// (allowed-lateness updates).
fn fold(batches: &[RecordBatch], keyed: bool) -> Results {
    let mut out = Results::new();
    for batch in batches {
        let column = |name: &str| batch.column_by_name(name).expect("column").clone();
        let ints = |name: &str| column(name).as_primitive::<Int64Type>().clone();
        let times = |name: &str| {
            column(name)
                .as_primitive::<TimestampMillisecondType>()
                .clone()
        };
        let (starts, ends) = (times("window_start"), times("window_end"));
        let (n, sum, min, max, distinct) = (
            ints("n"),
            ints("sum"),
            ints("min"),
            ints("max"),
            ints("distinct"),
        );
        let opt = |a: &Int64Array, i: usize| a.is_valid(i).then(|| a.value(i));
        for i in 0..batch.num_rows() {
            let k = if keyed { ints("k").value(i) } else { 0 };
            out.insert(
                (k, starts.value(i), ends.value(i)),
                (
                    n.value(i),
                    opt(&sum, i),
                    opt(&min, i),
                    opt(&max, i),
                    distinct.value(i),
                ),
            );
        }
    }
    out
}

fn run_job(
    kind: &WindowKind,
    rows: &[Row],
    parallelism: u32,
    batch_size: usize,
    lateness_ms: i64,
    bound_ms: u64,
) -> LocalJobOutput {
    let env = StreamEnvironment::new("windows").with_parallelism(parallelism);
    let source =
        SourceSpec::Memory(MemorySource::new(schema(), batches(rows, batch_size)).unwrap());
    env.source_with_watermarks(
        "events",
        source,
        WatermarkStrategy::bounded_out_of_orderness("ts", Duration::from_millis(bound_ms)),
    )
    .unwrap()
    .key_by(["k"])
    .window(
        kind.clone(),
        WindowTime::EventTime {
            column: "ts".into(),
        },
    )
    .allowed_lateness(lateness_ms)
    .aggregate(calls())
    .unwrap()
    .name("windows")
    .unwrap()
    .collect("out")
    .unwrap();
    env.execute_on(&runtime(parallelism as usize)).unwrap()
}

fn kinds() -> Vec<WindowKind> {
    vec![
        WindowKind::tumbling(100),
        WindowKind::hopping(100, 40),
        WindowKind::hopping(90, 30),
        WindowKind::cumulating(120, 40),
        WindowKind::session(25),
    ]
}

/// Rows whose times grow by 10 ms with jitter under [`BOUND_MS`]: out of order, never late.
fn arb_rows() -> impl Strategy<Value = Vec<Row>> {
    prop::collection::vec(
        (
            0i64..5,
            0i64..BOUND_MS,
            prop::option::weighted(0.9, 0i64..6),
        ),
        1..300,
    )
    .prop_map(|raw| {
        raw.into_iter()
            .enumerate()
            .map(|(i, (k, jitter, v))| (k, i as i64 * 10 + jitter - 500, v))
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn windows_match_the_row_at_a_time_reference(
        rows in arb_rows(),
        kind in prop::sample::select(kinds()),
        parallelism in prop::sample::select(vec![1u32, 2, 4]),
        batch_size in 1usize..64,
    ) {
        let output = run_job(&kind, &rows, parallelism, batch_size, 0, BOUND_MS as u64);
        let metrics = output.result.vertex("windows").unwrap().metrics;
        prop_assert_eq!(metrics.late_records_dropped, 0);
        let actual = fold(&output.collected.batches("out"), true);
        prop_assert_eq!(actual, reference(&kind, &rows), "{:?} p={} batch={}", kind, parallelism, batch_size);
    }
}

#[test]
fn every_window_kind_at_every_parallelism_and_batch_size() {
    let rows: Vec<Row> = (0..400i64)
        .map(|i| {
            (
                i % 7,
                i * 7 + (i * 13) % BOUND_MS,
                (i % 5 != 0).then_some(i % 9),
            )
        })
        .collect();
    for kind in kinds() {
        let expected = reference(&kind, &rows);
        for parallelism in [1, 2, 4] {
            for batch_size in [1, 16, 500] {
                let output = run_job(&kind, &rows, parallelism, batch_size, 0, BOUND_MS as u64);
                let actual = fold(&output.collected.batches("out"), true);
                assert_eq!(
                    actual, expected,
                    "{kind:?} p={parallelism} batch={batch_size}"
                );
            }
        }
    }
}

#[test]
fn late_records_beyond_the_allowed_lateness_are_counted_and_dropped() {
    for kind in kinds() {
        // One batch per watermark step at parallelism 1: the watermark after batch 1 is 4999.
        let on_time: Vec<Row> = (0..50).map(|i| (i % 3, i * 100, Some(i))).collect();
        // Three late rows (their every window ended at or before 4999) and one on time.
        let late: Vec<Row> = vec![(0, 100, Some(1)), (1, 200, Some(2)), (2, 300, Some(3))];
        let last: Vec<Row> = vec![(0, 9_000, Some(4))];
        let mut input = batches(&on_time, 1000);
        input.extend(batches(&late, 1000));
        input.extend(batches(&last, 1000));
        let env = StreamEnvironment::new("late").with_parallelism(1);
        let source = SourceSpec::Memory(MemorySource::new(schema(), input).unwrap());
        env.source_with_watermarks(
            "events",
            source,
            WatermarkStrategy::bounded_out_of_orderness("ts", Duration::ZERO),
        )
        .unwrap()
        .key_by(["k"])
        .window(
            kind.clone(),
            WindowTime::EventTime {
                column: "ts".into(),
            },
        )
        .aggregate(calls())
        .unwrap()
        .name("windows")
        .unwrap()
        .collect("out")
        .unwrap();
        let output = env.execute_on(&runtime(1)).unwrap();
        let metrics = output.result.vertex("windows").unwrap().metrics;
        assert_eq!(metrics.late_records_dropped, 3, "{kind:?}");
        let mut kept = on_time.clone();
        kept.extend(&last);
        assert_eq!(
            fold(&output.collected.batches("out"), true),
            reference(&kind, &kept),
            "{kind:?}"
        );
    }
}

#[test]
fn allowed_lateness_fires_the_window_again_with_the_updated_result() {
    let steps: Vec<Vec<Row>> = vec![
        vec![(1, 0, Some(5)), (1, 500, Some(7)), (2, 1_500, Some(1))], // watermark 1499
        vec![(1, 300, Some(9))],                                       // late, within 2 s
        vec![(2, 5_000, Some(1))],                                     // watermark 4999
        vec![(1, 400, Some(11))],                                      // past 999 + 2000
    ];
    let input: Vec<RecordBatch> = steps.iter().flat_map(|s| batches(s, 100)).collect();
    let env = StreamEnvironment::new("lateness").with_parallelism(1);
    let source = SourceSpec::Memory(MemorySource::new(schema(), input).unwrap());
    env.source_with_watermarks(
        "events",
        source,
        WatermarkStrategy::bounded_out_of_orderness("ts", Duration::ZERO),
    )
    .unwrap()
    .key_by(["k"])
    .window(
        WindowKind::tumbling(1_000),
        WindowTime::EventTime {
            column: "ts".into(),
        },
    )
    .allowed_lateness(2_000)
    .aggregate(calls())
    .unwrap()
    .name("windows")
    .unwrap()
    .collect("out")
    .unwrap();
    let output = env.execute_on(&runtime(1)).unwrap();
    assert_eq!(
        output
            .result
            .vertex("windows")
            .unwrap()
            .metrics
            .late_records_dropped,
        1
    );
    // Every emitted row for key 1's window [0, 1000), in order: first 2 rows, then 3.
    let batches = output.collected.batches("out");
    let mut key1_first_window = Vec::new();
    for batch in &batches {
        let k = batch
            .column_by_name("k")
            .unwrap()
            .as_primitive::<Int64Type>();
        let start = batch
            .column_by_name("window_start")
            .unwrap()
            .as_primitive::<TimestampMillisecondType>();
        let n = batch
            .column_by_name("n")
            .unwrap()
            .as_primitive::<Int64Type>();
        let sum = batch
            .column_by_name("sum")
            .unwrap()
            .as_primitive::<Int64Type>();
        for i in 0..batch.num_rows() {
            if k.value(i) == 1 && start.value(i) == 0 {
                key1_first_window.push((n.value(i), sum.value(i)));
            }
        }
    }
    assert_eq!(key1_first_window, vec![(2, 12), (3, 21)]);
}

#[test]
fn processing_time_windows_count_every_row_of_a_bounded_input() {
    let rows: Vec<Row> = (0..1000).map(|i| (i % 4, 0, Some(i))).collect();
    let env = StreamEnvironment::new("proctime").with_parallelism(2);
    env.from_batches("events", schema(), batches(&rows, 64))
        .unwrap()
        .key_by(["k"])
        .window(WindowKind::tumbling(60_000), WindowTime::ProcessingTime)
        .aggregate(calls())
        .unwrap()
        .collect("out")
        .unwrap();
    let output = env.execute_on(&runtime(2)).unwrap();
    let results = fold(&output.collected.batches("out"), true);
    let total: i64 = results.values().map(|a| a.0).sum();
    assert_eq!(total, 1000);
    for ((_, start, end), _) in results {
        assert_eq!(end - start, 60_000);
    }
}

#[test]
fn a_global_window_aggregates_all_keys_together() {
    let rows: Vec<Row> = (0..300i64).map(|i| (i % 5, i * 10, Some(i % 7))).collect();
    let env = StreamEnvironment::new("global").with_parallelism(2);
    let source = SourceSpec::Memory(MemorySource::new(schema(), batches(&rows, 32)).unwrap());
    env.source_with_watermarks(
        "events",
        source,
        WatermarkStrategy::bounded_out_of_orderness("ts", Duration::ZERO),
    )
    .unwrap()
    .window_all(
        WindowKind::hopping(500, 250),
        WindowTime::EventTime {
            column: "ts".into(),
        },
    )
    .aggregate(calls())
    .unwrap()
    .collect("out")
    .unwrap();
    let output = env.execute_on(&runtime(2)).unwrap();
    let global: Vec<Row> = rows.iter().map(|&(_, t, v)| (0, t, v)).collect();
    assert_eq!(
        fold(&output.collected.batches("out"), false),
        reference(&WindowKind::hopping(500, 250), &global)
    );
}
