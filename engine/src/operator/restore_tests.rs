//! Snapshot → restore → continue of the stateful operators (window and keyed aggregation,
//! joins), driven directly: a run cut by a snapshot, restored into fresh subtasks at the same
//! or another parallelism, must emit exactly the rows of an uninterrupted run.
//!
//! At a cut just before a watermark, the first old subtask gets that watermark before the
//! snapshot and the others do not (subtasks of one operator snapshot at different watermarks),
//! so a restore at another parallelism gathers state of different progress.
//!
//! Snapshots pass through an Arrow IPC file in memory, as the checkpoint writer stores them,
//! and a restore at another parallelism gets the tables of every old subtask (as
//! `RestoredCheckpoint::operator_state` gathers them); rows are routed to subtasks by key group
//! as the hash partitioner does.

use std::collections::BTreeMap;
use std::io::Cursor;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Int64Array, RecordBatch, StringArray};
use arrow::compute::filter_record_batch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::ipc::reader::FileReader;
use arrow::ipc::writer::FileWriter;
use arrow::util::display::array_value_to_string;
use proptest::prelude::*;

use super::{Operator, OperatorContext, Output};
use crate::element::{StreamElement, Watermark};
use crate::graph::{
    AggregateCall, AggregateFunction, EmitMode, JoinKind, JoinSpec, JoinType, KeyedAggregateSpec,
    WindowAggregateSpec, WindowKind, WindowTime,
};
use crate::ids::{CheckpointId, SubtaskIndex};
use crate::state::{
    KeyGroupRange, SnapshotTable, StateSnapshot, hash_columns, key_group_of_hash,
    subtask_for_key_group,
};

const MAX_PARALLELISM: u32 = 128;

/// One input element of a script.
#[derive(Debug, Clone)]
enum Step {
    Batch(usize, RecordBatch),
    Watermark(i64),
}

/// Builds one subtask of the operator under test.
type Build = Box<dyn Fn(&OperatorContext) -> Box<dyn Operator>>;

/// How to build one subtask of the operator under test, and its key columns per input.
struct Subject {
    inputs: Vec<SchemaRef>,
    output: SchemaRef,
    keys: Vec<Vec<usize>>,
    build: Build,
}

impl Subject {
    fn open(&self, parallelism: u32) -> Vec<Box<dyn Operator>> {
        (0..parallelism)
            .map(|subtask| {
                let ctx = OperatorContext {
                    incremental_checkpoints: false,
                    checkpointing: false,
                    memory: crate::spill::MemoryBudget::default(),
                    vertex: "under test".into(),
                    subtask: SubtaskIndex(subtask),
                    parallelism,
                    max_parallelism: MAX_PARALLELISM,
                    key_groups: KeyGroupRange::for_subtask(MAX_PARALLELISM, parallelism, subtask),
                    input_schemas: self.inputs.clone(),
                    output_schema: self.output.clone(),
                };
                let mut op = (self.build)(&ctx);
                op.open(&ctx).expect("open");
                op
            })
            .collect()
    }

    /// Feeds `steps` to the subtasks (rows to the owner of their key group, watermarks to
    /// all) and appends their output rows to `rows`.
    fn run(&self, ops: &mut [Box<dyn Operator>], steps: &[Step], rows: &mut Vec<String>) {
        let parallelism = ops.len() as u32;
        let mut out = Output::default();
        for step in steps {
            match step {
                Step::Batch(input, batch) => {
                    for (subtask, part) in route(batch, &self.keys[*input], parallelism) {
                        ops[subtask]
                            .process_batch(*input, part, &mut out)
                            .expect("process batch");
                        collect(&mut out, rows);
                    }
                }
                Step::Watermark(t) => {
                    for op in ops.iter_mut() {
                        op.process_watermark(Watermark(*t), &mut out)
                            .expect("process watermark");
                        collect(&mut out, rows);
                    }
                }
            }
        }
    }

    fn finish(&self, ops: &mut [Box<dyn Operator>], rows: &mut Vec<String>) {
        let mut out = Output::default();
        for op in ops.iter_mut() {
            op.process_watermark(Watermark::MAX, &mut out)
                .expect("final watermark");
            op.finish(&mut out).expect("finish");
            collect(&mut out, rows);
        }
    }

    /// The sorted output of an uninterrupted run at parallelism 1.
    fn uninterrupted(&self, steps: &[Step]) -> Vec<String> {
        let mut ops = self.open(1);
        let mut rows = Vec::new();
        self.run(&mut ops, steps, &mut rows);
        self.finish(&mut ops, &mut rows);
        rows.sort();
        rows
    }

    /// The sorted output of a run at parallelism `before` for `steps[..cut]`, snapshotted,
    /// restored into fresh subtasks at parallelism `after`, which process the rest.
    fn restored(&self, steps: &[Step], cut: usize, before: u32, after: u32) -> Vec<String> {
        let mut ops = self.open(before);
        let mut rows = Vec::new();
        // An earlier snapshot, discarded: whatever it caches must not leak into the next one.
        self.run(&mut ops, &steps[..cut / 2], &mut rows);
        for op in ops.iter_mut() {
            op.snapshot(CheckpointId(1)).expect("snapshot");
        }
        self.run(&mut ops, &steps[cut / 2..cut], &mut rows);
        if let Some(Step::Watermark(t)) = steps.get(cut)
            && before > 1
        {
            // Subtask 0 is a watermark ahead of the others at the snapshot (its input delivered
            // it sooner); the restored subtasks get it again.
            let mut out = Output::default();
            ops[0]
                .process_watermark(Watermark(*t), &mut out)
                .expect("process watermark");
            collect(&mut out, &mut rows);
        }
        let snapshots: Vec<StateSnapshot> = ops
            .iter_mut()
            .map(|op| through_ipc(op.snapshot(CheckpointId(2)).expect("snapshot")))
            .collect();
        drop(ops);
        let mut ops = self.open(after);
        for (subtask, op) in ops.iter_mut().enumerate() {
            let owned = KeyGroupRange::for_subtask(MAX_PARALLELISM, after, subtask as u32);
            op.restore(&gather(&snapshots, owned)).expect("restore");
        }
        self.run(&mut ops, &steps[cut..], &mut rows);
        self.finish(&mut ops, &mut rows);
        rows.sort();
        rows
    }
}

/// Splits `batch` by the subtask that owns each row's key group.
fn route(batch: &RecordBatch, keys: &[usize], parallelism: u32) -> Vec<(usize, RecordBatch)> {
    let columns: Vec<ArrayRef> = keys.iter().map(|&i| batch.column(i).clone()).collect();
    let mut hashes = Vec::new();
    hash_columns(&columns, &mut hashes).expect("hash keys");
    let owners: Vec<u32> = hashes
        .iter()
        .map(|&h| {
            subtask_for_key_group(
                key_group_of_hash(h, MAX_PARALLELISM),
                MAX_PARALLELISM,
                parallelism,
            )
        })
        .collect();
    (0..parallelism)
        .filter_map(|subtask| {
            let mask: BooleanArray = owners.iter().map(|&o| Some(o == subtask)).collect();
            let part = filter_record_batch(batch, &mask).expect("filter");
            (part.num_rows() > 0).then_some((subtask as usize, part))
        })
        .collect()
}

/// Formats every output row. Floating-point results (retracting sums of squares) are
/// rounded to 9 decimals: a restore at another parallelism folds the same rows in another
/// order, which may change the last bits.
fn collect(out: &mut Output, rows: &mut Vec<String>) {
    let cell = |c: &arrow::array::ArrayRef, row: usize| match c.data_type() {
        arrow::datatypes::DataType::Float64 if c.is_valid(row) => {
            let v = c.as_primitive::<arrow::datatypes::Float64Type>().value(row);
            format!("{v:.9}")
        }
        _ => array_value_to_string(c, row).expect("format"),
    };
    for element in out.drain() {
        match element {
            StreamElement::Batch(batch) => {
                for row in 0..batch.num_rows() {
                    let cells: Vec<String> = batch.columns().iter().map(|c| cell(c, row)).collect();
                    rows.push(cells.join("|"));
                }
            }
            StreamElement::Watermark(_) | StreamElement::Barrier(_) | StreamElement::EndOfInput => {
            }
        }
    }
}

/// Writes every table as an Arrow IPC file and reads it back, as a checkpoint does.
fn through_ipc(snapshot: StateSnapshot) -> StateSnapshot {
    let tables = snapshot
        .tables
        .into_iter()
        .map(|table| {
            let Some(first) = table.batches.first() else {
                return table;
            };
            let mut buffer = Vec::new();
            let mut writer = FileWriter::try_new(&mut buffer, &first.schema()).expect("writer");
            for batch in &table.batches {
                writer.write(batch).expect("write");
            }
            writer.finish().expect("finish");
            drop(writer);
            let batches = FileReader::try_new(Cursor::new(buffer), None)
                .expect("reader")
                .collect::<Result<Vec<_>, _>>()
                .expect("read");
            SnapshotTable {
                slices: None,
                name: table.name,
                batches,
            }
        })
        .collect();
    StateSnapshot { tables, ..snapshot }
}

/// The tables of every old subtask whose key groups overlap `owned`, merged by name.
fn gather(snapshots: &[StateSnapshot], owned: KeyGroupRange) -> StateSnapshot {
    let mut tables: BTreeMap<String, SnapshotTable> = BTreeMap::new();
    for snapshot in snapshots {
        let range = snapshot.key_groups.expect("keyed snapshot");
        if range.end <= owned.start || range.start >= owned.end {
            continue;
        }
        for table in &snapshot.tables {
            tables
                .entry(table.name.clone())
                .or_insert_with(|| SnapshotTable {
                    slices: None,
                    name: table.name.clone(),
                    batches: Vec::new(),
                })
                .batches
                .extend(table.batches.iter().cloned());
        }
    }
    StateSnapshot {
        key_groups: Some(owned),
        tables: tables.into_values().collect(),
        sink_pre_commit: None,
    }
}

/// Runs `steps` cut at `cut` with parallelism changes 1→1, 1→2, 2→1 and 2→3, each compared
/// with the uninterrupted run.
fn check_restores(subject: &Subject, steps: &[Step], cut: usize) -> Result<(), TestCaseError> {
    let expected = subject.uninterrupted(steps);
    for (before, after) in [(1, 1), (1, 2), (2, 1), (2, 3)] {
        let restored = subject.restored(steps, cut, before, after);
        prop_assert_eq!(
            &restored,
            &expected,
            "cut at step {} of {}, parallelism {} -> {}",
            cut,
            steps.len(),
            before,
            after
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Window aggregation.

/// Window input: key, event time (ms), a nullable number, a string and a boolean.
fn window_input() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("k", DataType::Int64, false),
        Field::new("t", DataType::Int64, false),
        Field::new("v", DataType::Int64, true),
        Field::new("s", DataType::Utf8, false),
        Field::new("b", DataType::Boolean, false),
    ]))
}

/// One row of window input: key, time, value.
type WindowRow = (i64, i64, Option<i64>);

fn window_batch(rows: &[WindowRow]) -> RecordBatch {
    RecordBatch::try_new(
        window_input(),
        vec![
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
            Arc::new(rows.iter().map(|r| r.2).collect::<Int64Array>()),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| format!("s{}", (r.1 * 7 + r.0) % 13)),
            )),
            Arc::new(BooleanArray::from_iter(
                rows.iter().map(|r| Some(r.2.unwrap_or(0) % 3 == 0)),
            )),
        ],
    )
    .expect("window batch")
}

/// Every aggregate function, over every kind of accumulator state.
fn all_aggregates() -> Vec<AggregateCall> {
    use AggregateFunction::*;
    let call = |function, input: Option<&str>, output: &str| AggregateCall {
        function,
        input: input.map(str::to_owned),
        output: output.to_owned(),
    };
    vec![
        call(Count, None, "n"),
        call(Count, Some("v"), "nv"),
        call(Sum, Some("v"), "sum_v"),
        call(Avg, Some("v"), "avg_v"),
        call(Min, Some("v"), "min_v"),
        call(Max, Some("v"), "max_v"),
        call(CountDistinct, Some("v"), "distinct_v"),
        call(FirstValue, Some("v"), "first_v"),
        call(LastValue, Some("v"), "last_v"),
        call(Min, Some("s"), "min_s"),
        call(Max, Some("s"), "max_s"),
        call(FirstValue, Some("s"), "first_s"),
        call(LastValue, Some("s"), "last_s"),
        call(Min, Some("b"), "min_b"),
        call(Max, Some("b"), "max_b"),
    ]
}

fn window_subject(window: WindowKind, allowed_lateness_ms: i64, global: bool) -> Subject {
    let spec = WindowAggregateSpec {
        keys: if global { vec![] } else { vec!["k".into()] },
        time: WindowTime::EventTime { column: "t".into() },
        window,
        aggregates: all_aggregates(),
        allowed_lateness_ms,
    };
    let input = window_input();
    let output = spec.output_schema(&input).expect("valid window spec");
    Subject {
        inputs: vec![input],
        output,
        // Routing by `k` (a global window runs as one subtask, where routing is moot).
        keys: vec![vec![0]],
        build: Box::new(move |ctx| {
            super::window::build(&spec, &ctx.input_schemas[0], ctx.output_schema.clone())
                .expect("build window operator")
        }),
    }
}

/// A script of window input: batches of rows whose times wander forward with some disorder,
/// and rising watermarks between them (rows may be late).
fn window_steps() -> impl Strategy<Value = Vec<Step>> {
    let row = (0i64..6, 0i64..40, prop::option::weighted(0.9, -50i64..50));
    let batch = prop::collection::vec(row, 1..12);
    prop::collection::vec((batch, 0i64..25, any::<bool>()), 1..12).prop_map(|parts| {
        let mut steps = Vec::new();
        let mut base = 0i64;
        for (rows, advance, watermark) in parts {
            let rows: Vec<WindowRow> = rows
                .into_iter()
                .map(|(k, dt, v)| (k, base + dt - 10, v))
                .collect();
            steps.push(Step::Batch(0, window_batch(&rows)));
            base += advance;
            if watermark {
                steps.push(Step::Watermark(base - 5));
            }
        }
        steps
    })
}

fn window_kinds() -> impl Strategy<Value = WindowKind> {
    prop_oneof![
        (1i64..20).prop_map(WindowKind::tumbling),
        (1i64..6, 1i64..4).prop_map(|(slides, slide)| WindowKind::hopping(slides * slide, slide)),
        (1i64..6, 1i64..5).prop_map(|(steps, step)| WindowKind::cumulating(steps * step, step)),
        (1i64..15).prop_map(WindowKind::session),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Snapshot at a random point, restore (also at another parallelism) and continue: the
    /// output equals the uninterrupted run, for every window kind and aggregate function.
    #[test]
    fn window_aggregate_restores_where_it_left_off(
        window in window_kinds(),
        lateness in prop_oneof![Just(0i64), 0i64..20],
        steps in window_steps(),
        cut in any::<prop::sample::Index>(),
    ) {
        let subject = window_subject(window, lateness, false);
        let cut = cut.index(steps.len() + 1);
        check_restores(&subject, &steps, cut)?;
    }
}

#[test]
fn global_window_restores_at_parallelism_one() {
    let steps = vec![
        Step::Batch(
            0,
            window_batch(&[(1, 1, Some(1)), (2, 3, Some(2)), (3, 12, None)]),
        ),
        Step::Watermark(9),
        Step::Batch(0, window_batch(&[(1, 14, Some(5)), (2, 25, Some(6))])),
    ];
    for window in [WindowKind::tumbling(10), WindowKind::session(5)] {
        let subject = window_subject(window, 0, true);
        let expected = subject.uninterrupted(&steps);
        assert!(!expected.is_empty());
        for cut in 0..=steps.len() {
            assert_eq!(subject.restored(&steps, cut, 1, 1), expected, "cut {cut}");
        }
    }
}

#[test]
fn window_snapshot_tags_rows_with_their_key_groups() {
    let subject = window_subject(WindowKind::tumbling(10), 0, false);
    let mut ops = subject.open(1);
    let rows: Vec<WindowRow> = (0..50).map(|k| (k, k % 10, Some(k))).collect();
    subject.run(
        &mut ops,
        &[Step::Batch(0, window_batch(&rows))],
        &mut Vec::new(),
    );
    let snapshot = ops[0].snapshot(CheckpointId(1)).expect("snapshot");
    let slices = snapshot
        .tables
        .iter()
        .find(|t| t.name == "slices")
        .expect("slices table");
    let batch = &slices.batches[0];
    assert_eq!(batch.num_rows(), 50);
    // Restored into two subtasks, each keeps exactly the keys routed to it.
    let mut ops = subject.open(2);
    let mut kept = 0;
    for (subtask, op) in ops.iter_mut().enumerate() {
        let owned = KeyGroupRange::for_subtask(MAX_PARALLELISM, 2, subtask as u32);
        op.restore(&gather(std::slice::from_ref(&snapshot), owned))
            .expect("restore");
        let mut out = Output::default();
        op.finish(&mut out).expect("finish");
        let mut emitted = Vec::new();
        collect(&mut out, &mut emitted);
        for row in &emitted {
            let key: i64 = row.split('|').next().unwrap().parse().unwrap();
            let batch = window_batch(&[(key, 0, None)]);
            assert_eq!(route(&batch, &[0], 2)[0].0, subtask, "key {key}");
        }
        kept += emitted.len();
    }
    assert_eq!(kept, 50);
}

#[test]
fn window_restore_rejects_a_malformed_table() {
    let subject = window_subject(WindowKind::tumbling(10), 0, false);
    let mut ops = subject.open(1);
    let bogus = RecordBatch::try_new(
        Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)])),
        vec![Arc::new(Int64Array::from(vec![1]))],
    )
    .unwrap();
    let snapshot = StateSnapshot {
        key_groups: Some(KeyGroupRange::for_subtask(MAX_PARALLELISM, 1, 0)),
        tables: vec![SnapshotTable {
            slices: None,
            name: "slices".into(),
            batches: vec![bogus],
        }],
        sink_pre_commit: None,
    };
    let err = ops[0].restore(&snapshot).unwrap_err().to_string();
    assert!(err.contains("slices"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Joins.

/// Join input (both sides): key (nullable), event time, payload.
fn join_input() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("k", DataType::Int64, true),
        Field::new("t", DataType::Int64, false),
        Field::new("p", DataType::Utf8, false),
    ]))
}

fn join_batch(rows: &[(Option<i64>, i64)], tag: &str) -> RecordBatch {
    RecordBatch::try_new(
        join_input(),
        vec![
            Arc::new(rows.iter().map(|r| r.0).collect::<Int64Array>()),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
            Arc::new(StringArray::from_iter_values(
                rows.iter()
                    .enumerate()
                    .map(|(i, r)| format!("{tag}{i}@{}", r.1)),
            )),
        ],
    )
    .expect("join batch")
}

fn join_subject(kind: JoinKind) -> Subject {
    let spec = JoinSpec {
        left_keys: vec!["k".into()],
        right_keys: vec!["k".into()],
        kind,
    };
    let output = spec
        .output_schema(&join_input(), &join_input())
        .expect("valid join spec");
    Subject {
        inputs: vec![join_input(), join_input()],
        output,
        keys: vec![vec![0], vec![0]],
        build: Box::new(move |ctx| super::join::build(&spec, ctx).expect("build join")),
    }
}

/// Batches for both sides with rising times (some disorder, some NULL keys, some late rows)
/// and watermarks.
fn join_steps() -> impl Strategy<Value = Vec<Step>> {
    let row = (prop::option::weighted(0.9, 0i64..6), 0i64..30);
    let batch = (0usize..2, prop::collection::vec(row, 1..10));
    prop::collection::vec((batch, 0i64..20, any::<bool>()), 1..14).prop_map(|parts| {
        let mut steps = Vec::new();
        let mut base = 0i64;
        for (n, ((side, rows), advance, watermark)) in parts.into_iter().enumerate() {
            let rows: Vec<(Option<i64>, i64)> =
                rows.into_iter().map(|(k, dt)| (k, base + dt - 5)).collect();
            let tag = format!("{}{n}.", if side == 0 { "L" } else { "R" });
            steps.push(Step::Batch(side, join_batch(&rows, &tag)));
            base += advance;
            if watermark {
                steps.push(Step::Watermark(base - 1));
            }
        }
        steps
    })
}

fn join_kinds() -> impl Strategy<Value = JoinKind> {
    prop_oneof![
        prop_oneof![
            Just(JoinType::Inner),
            Just(JoinType::Left),
            Just(JoinType::Right),
            Just(JoinType::Full)
        ]
        .prop_map(|join_type| JoinKind::Regular { join_type }),
        (-15i64..5, 0i64..15).prop_map(|(lower, width)| JoinKind::Interval {
            left_time: "t".into(),
            right_time: "t".into(),
            lower_ms: lower,
            upper_ms: lower + width,
        }),
        (1i64..25).prop_map(|size_ms| JoinKind::Window {
            left_time: "t".into(),
            right_time: "t".into(),
            size_ms,
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Snapshot at a random point, restore (also at another parallelism) and continue: the
    /// output (for the regular join, its changelog) equals the uninterrupted run.
    #[test]
    fn join_restores_where_it_left_off(
        kind in join_kinds(),
        steps in join_steps(),
        cut in any::<prop::sample::Index>(),
    ) {
        let subject = join_subject(kind);
        let cut = cut.index(steps.len() + 1);
        check_restores(&subject, &steps, cut)?;
    }
}

#[test]
fn outer_join_restores_matched_flags() {
    // A left row without partner is emitted padded; after the restore its first partner
    // retracts the padded row exactly once.
    let subject = join_subject(JoinKind::Regular {
        join_type: JoinType::Full,
    });
    let steps = vec![
        Step::Batch(0, join_batch(&[(Some(1), 0), (Some(2), 0)], "L")),
        Step::Batch(1, join_batch(&[(Some(2), 0)], "R")),
        Step::Batch(1, join_batch(&[(Some(1), 0), (Some(2), 0)], "S")),
    ];
    let expected = subject.uninterrupted(&steps);
    let deletes = expected.iter().filter(|r| r.starts_with("3|")).count();
    assert_eq!(deletes, 2, "{expected:?}");
    for (before, after) in [(1, 1), (1, 2), (2, 1)] {
        assert_eq!(subject.restored(&steps, 2, before, after), expected);
    }
}

// ---------------------------------------------------------------------------------------------
// Keyed (non-windowed) aggregation.

fn keyed_aggregate_subject(emit: EmitMode) -> Subject {
    let spec = KeyedAggregateSpec {
        keys: vec!["k".into()],
        aggregates: all_aggregates(),
        emit,
        default_group: None,
        phase: Default::default(),
    };
    let input = window_input();
    let output = spec.output_schema(&input).expect("valid aggregate spec");
    Subject {
        inputs: vec![input],
        output,
        keys: vec![vec![0]],
        build: Box::new(move |ctx| {
            Box::new(
                super::KeyedAggregate::try_new(
                    &spec,
                    &ctx.input_schemas[0],
                    ctx.output_schema.clone(),
                )
                .expect("build keyed aggregate"),
            )
        }),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Snapshot at a random point, restore (also at another parallelism) and continue: the
    /// output (the changelog, or the final rows) equals the uninterrupted run, for every
    /// aggregate function.
    #[test]
    fn keyed_aggregate_restores_where_it_left_off(
        changelog in any::<bool>(),
        steps in window_steps(),
        cut in any::<prop::sample::Index>(),
    ) {
        let emit = if changelog { EmitMode::Changelog } else { EmitMode::Final };
        let subject = keyed_aggregate_subject(emit);
        let cut = cut.index(steps.len() + 1);
        check_restores(&subject, &steps, cut)?;
    }
}

// ---------------------------------------------------------------------------------------------
// Keyed aggregation over an updating input (retracting accumulators).

/// Updating input: row kind, key, a nullable number, a nullable float and a string.
fn updating_input() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new(crate::element::ROW_KIND_COLUMN, DataType::Int8, false),
        Field::new("k", DataType::Int64, false),
        Field::new("v", DataType::Int64, true),
        Field::new("f", DataType::Float64, true),
        Field::new("s", DataType::Utf8, false),
    ]))
}

/// One row of updating input: kind, key, value (the float and the string derive from it).
type UpdatingRow = (i8, i64, Option<i64>);

fn updating_batch(rows: &[UpdatingRow]) -> RecordBatch {
    RecordBatch::try_new(
        updating_input(),
        vec![
            Arc::new(arrow::array::Int8Array::from_iter_values(
                rows.iter().map(|r| r.0),
            )),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
            Arc::new(rows.iter().map(|r| r.2).collect::<Int64Array>()),
            Arc::new(
                rows.iter()
                    .map(|r| r.2.map(|v| v as f64 / 4.0 + 0.1))
                    .collect::<arrow::array::Float64Array>(),
            ),
            Arc::new(StringArray::from_iter_values(
                rows.iter()
                    .map(|r| format!("s{}", r.2.unwrap_or(-1).rem_euclid(7))),
            )),
        ],
    )
    .expect("updating batch")
}

/// Every aggregate function that retracts, over every kind of retracting state: counts, exact
/// and float sums, and multisets of integers, floats and strings.
fn retracting_aggregates() -> Vec<AggregateCall> {
    use AggregateFunction::*;
    let call = |function, input: Option<&str>, output: &str| AggregateCall {
        function,
        input: input.map(str::to_owned),
        output: output.to_owned(),
    };
    vec![
        call(Count, None, "n"),
        call(Count, Some("v"), "nv"),
        call(Sum, Some("v"), "sum_v"),
        call(Sum, Some("f"), "sum_f"),
        call(Avg, Some("v"), "avg_v"),
        call(Avg, Some("f"), "avg_f"),
        call(Min, Some("v"), "min_v"),
        call(Max, Some("v"), "max_v"),
        call(Min, Some("f"), "min_f"),
        call(Max, Some("f"), "max_f"),
        call(Min, Some("s"), "min_s"),
        call(Max, Some("s"), "max_s"),
        call(CountDistinct, Some("v"), "distinct_v"),
        call(CountDistinct, Some("f"), "distinct_f"),
        call(CountDistinct, Some("s"), "distinct_s"),
    ]
}

fn retracting_aggregate_subject(emit: EmitMode) -> Subject {
    let spec = KeyedAggregateSpec {
        keys: vec!["k".into()],
        aggregates: retracting_aggregates(),
        emit,
        default_group: None,
        phase: Default::default(),
    };
    let input = updating_input();
    let output = spec.output_schema(&input).expect("valid aggregate spec");
    Subject {
        inputs: vec![input],
        output,
        keys: vec![vec![1]],
        build: Box::new(move |ctx| {
            Box::new(
                super::KeyedAggregate::try_new(
                    &spec,
                    &ctx.input_schemas[0],
                    ctx.output_schema.clone(),
                )
                .expect("build keyed aggregate"),
            )
        }),
    }
}

/// A valid changelog cut into batches: each step adds a row (`+I` or `+U`) or retracts the
/// `pick`-th live row (`-U` or `-D`), so groups grow, shrink, die and come back.
fn updating_steps() -> impl Strategy<Value = Vec<Step>> {
    let row = (
        0i64..6,
        prop::option::weighted(0.85, -6i64..6),
        prop::bool::weighted(0.4),
        0usize..64,
    );
    prop::collection::vec(prop::collection::vec(row, 1..10), 1..12).prop_map(|batches| {
        let mut live: Vec<(i64, Option<i64>)> = Vec::new();
        batches
            .into_iter()
            .map(|rows| {
                let rows: Vec<UpdatingRow> = rows
                    .into_iter()
                    .map(|(k, v, retract, pick)| {
                        if retract && !live.is_empty() {
                            let (k, v) = live.remove(pick % live.len());
                            (if pick % 2 == 0 { 1 } else { 3 }, k, v)
                        } else {
                            live.push((k, v));
                            (if pick % 2 == 0 { 0 } else { 2 }, k, v)
                        }
                    })
                    .collect();
                Step::Batch(0, updating_batch(&rows))
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Over an updating input: snapshot at a random point, restore (also at another
    /// parallelism) and continue: the changelog (or the final rows) equals the uninterrupted
    /// run's, for every retracting aggregate function.
    #[test]
    fn retracting_aggregate_restores_where_it_left_off(
        changelog in any::<bool>(),
        steps in updating_steps(),
        cut in any::<prop::sample::Index>(),
    ) {
        let emit = if changelog { EmitMode::Changelog } else { EmitMode::Final };
        let subject = retracting_aggregate_subject(emit);
        let cut = cut.index(steps.len() + 1);
        check_restores(&subject, &steps, cut)?;
    }
}

#[test]
fn retracting_snapshot_holds_live_groups_and_their_multisets() {
    // Key 1 dies before the snapshot; key 2 keeps 5 twice and 7 once.
    let subject = retracting_aggregate_subject(EmitMode::Changelog);
    let mut ops = subject.open(1);
    let steps = vec![
        Step::Batch(
            0,
            updating_batch(&[(0, 1, Some(3)), (0, 2, Some(5)), (0, 2, Some(5))]),
        ),
        Step::Batch(0, updating_batch(&[(3, 1, Some(3)), (0, 2, Some(7))])),
    ];
    subject.run(&mut ops, &steps, &mut Vec::new());
    let snapshot = ops[0].snapshot(CheckpointId(1)).expect("snapshot");
    let batch = &snapshot.tables[0].batches[0];
    assert_eq!(batch.num_rows(), 1, "the dead group is left out");
    let column = |name: &str| batch.column_by_name(name).expect(name).clone();
    assert_eq!(array_value_to_string(&column("rows"), 0).unwrap(), "3");
    // acc6 is MIN(v): its multiset {5: 2, 7: 1}.
    assert_eq!(
        array_value_to_string(&column("acc6_0"), 0).unwrap(),
        "[{value: 5, count: 2}, {value: 7, count: 1}]"
    );
    // acc14 is COUNT(DISTINCT s): strings in their own type.
    assert_eq!(
        array_value_to_string(&column("acc14_0"), 0).unwrap(),
        "[{value: s0, count: 1}, {value: s5, count: 2}]"
    );
}

#[test]
fn retracting_restore_rejects_a_malformed_table() {
    let subject = retracting_aggregate_subject(EmitMode::Changelog);
    let mut ops = subject.open(1);
    subject.run(
        &mut ops,
        &[Step::Batch(0, updating_batch(&[(0, 1, Some(3))]))],
        &mut Vec::new(),
    );
    let mut snapshot = ops[0].snapshot(CheckpointId(1)).expect("snapshot");
    // The live row count as text instead of Int64.
    let batch = &snapshot.tables[0].batches[0];
    let mut columns = batch.columns().to_vec();
    let mut fields: Vec<Field> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    columns[2] = Arc::new(StringArray::from(vec!["1"]));
    fields[2] = Field::new("rows", DataType::Utf8, true);
    snapshot.tables[0].batches[0] =
        RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).expect("batch");
    let mut fresh = subject.open(1);
    let error = fresh[0].restore(&snapshot).expect_err("malformed state");
    assert!(error.to_string().contains("live row count"), "{error}");
}
