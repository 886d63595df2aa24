use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, AsArray, Int64Array, TimestampMillisecondArray};
use arrow::datatypes::{DataType, Field, Int8Type, Int64Type, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use proptest::prelude::*;

use super::Rank;
use crate::element::{StreamElement, Watermark};
use crate::graph::{RankOrder, RankSpec, RankStrategy, RankWindow};
use crate::ids::{CheckpointId, SubtaskIndex};
use crate::operator::{Operator, OperatorContext, Output};
use crate::state::{KeyGroupRange, StateSnapshot};

/// `(k, v, id)`: partition key, sort value (nullable), a unique id.
type Row = (i64, Option<i64>, i64);

fn input_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("k", DataType::Int64, false),
        Field::new("v", DataType::Int64, true),
        Field::new("id", DataType::Int64, false),
    ]))
}

fn batch(rows: &[Row]) -> RecordBatch {
    RecordBatch::try_new(
        input_schema(),
        vec![
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
            Arc::new(Int64Array::from_iter(rows.iter().map(|r| r.1))),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.2))),
        ],
    )
    .unwrap()
}

fn spec(limit: u64, order: RankOrder, rank: bool, strategy: RankStrategy) -> RankSpec {
    RankSpec {
        partition_keys: vec!["k".into()],
        order_by: vec![order],
        limit,
        rank_column: rank.then(|| "rn".to_string()),
        strategy,
        window: None,
    }
}

fn context(input: SchemaRef, output: SchemaRef, subtask: u32, parallelism: u32) -> OperatorContext {
    OperatorContext {
        incremental_checkpoints: false,
        checkpointing: false,
        memory: crate::spill::MemoryBudget::default(),
        vertex: "rank".into(),
        subtask: SubtaskIndex(subtask),
        parallelism,
        max_parallelism: 128,
        key_groups: KeyGroupRange::for_subtask(128, parallelism, subtask),
        input_schemas: vec![input],
        output_schema: output,
    }
}

fn open(spec: &RankSpec, subtask: u32, parallelism: u32) -> Rank {
    let input = input_schema();
    let output = spec.output_schema(&input).unwrap();
    let mut rank = Rank::try_new(spec, &input, output.clone()).unwrap();
    rank.open(&context(input, output, subtask, parallelism))
        .unwrap();
    rank
}

/// One output row: kind (`+I`…, empty when append-only), k, v, id, rank (0 without).
type OutRow = (String, i64, Option<i64>, i64, i64);

fn rows_of(output: &mut Output) -> Vec<OutRow> {
    let mut rows = Vec::new();
    for element in output.drain() {
        let StreamElement::Batch(batch) = element else {
            continue;
        };
        let changelog = batch.schema().field(0).name() == "_row_kind";
        let base = usize::from(changelog);
        let int = |i: usize| batch.column(i).as_primitive::<Int64Type>().clone();
        let (k, v, id) = (int(base), int(base + 1), int(base + 2));
        let rank = (batch.num_columns() > base + 3).then(|| int(base + 3));
        for row in 0..batch.num_rows() {
            let kind = if changelog {
                let kind = batch.column(0).as_primitive::<Int8Type>().value(row);
                crate::element::RowKind::from_i8(kind)
                    .unwrap()
                    .short_string()
                    .to_string()
            } else {
                String::new()
            };
            rows.push((
                kind,
                k.value(row),
                v.is_valid(row).then(|| v.value(row)),
                id.value(row),
                rank.as_ref().map_or(0, |r| r.value(row)),
            ));
        }
    }
    rows
}

fn feed(rank: &mut Rank, batches: &[&[Row]]) -> Vec<OutRow> {
    let mut out = Output::default();
    for rows in batches {
        rank.process_batch(0, batch(rows), &mut out).unwrap();
    }
    rank.finish(&mut out).unwrap();
    rows_of(&mut out)
}

fn kinds_and_ids(rows: &[OutRow]) -> Vec<(String, i64, i64)> {
    rows.iter()
        .map(|(kind, _, _, id, rank)| (kind.clone(), *id, *rank))
        .collect()
}

fn s(kind: &str, id: i64, rank: i64) -> (String, i64, i64) {
    (kind.to_string(), id, rank)
}

#[test]
fn top_n_without_row_number_inserts_and_deletes() {
    let mut rank = open(
        &spec(2, RankOrder::desc("v"), false, RankStrategy::Changelog),
        0,
        1,
    );
    let out = feed(
        &mut rank,
        &[
            &[(1, Some(10), 1), (1, Some(20), 2)],
            &[(1, Some(5), 3)],
            &[(1, Some(30), 4), (2, Some(1), 5)],
        ],
    );
    assert_eq!(
        kinds_and_ids(&out),
        [
            s("+I", 1, 0),
            s("+I", 2, 0),
            // 5 does not make the top 2: nothing.
            s("-D", 1, 0),
            s("+I", 4, 0),
            s("+I", 5, 0),
        ]
    );
}

#[test]
fn top_n_with_row_number_updates_shifted_ranks() {
    let mut rank = open(
        &spec(3, RankOrder::desc("v"), true, RankStrategy::Changelog),
        0,
        1,
    );
    let out = feed(
        &mut rank,
        &[&[(1, Some(10), 1), (1, Some(20), 2)], &[(1, Some(15), 3)]],
    );
    assert_eq!(
        kinds_and_ids(&out),
        [
            s("+I", 2, 1),
            s("+I", 1, 2),
            // 15 goes to rank 2; 10 moves to rank 3.
            s("-U", 1, 2),
            s("+U", 3, 2),
            s("+I", 1, 3),
        ]
    );
}

#[test]
fn deduplication_keeps_first_or_last() {
    let batches: &[&[Row]] = &[
        &[(1, Some(100), 1), (2, Some(100), 2), (1, Some(101), 3)],
        &[(1, Some(102), 4)],
        &[(1, Some(102), 5)],
    ];
    let mut first = open(
        &spec(1, RankOrder::asc("v"), false, RankStrategy::Deduplicate),
        0,
        1,
    );
    assert_eq!(
        kinds_and_ids(&feed(&mut first, batches)),
        [s("+I", 1, 0), s("+I", 2, 0)]
    );
    let mut last = open(
        &spec(1, RankOrder::desc("v"), false, RankStrategy::Deduplicate),
        0,
        1,
    );
    assert_eq!(
        kinds_and_ids(&feed(&mut last, batches)),
        [
            s("+I", 3, 0),
            s("+I", 2, 0),
            s("-U", 3, 0),
            s("+U", 4, 0),
            // An equal time: the later row replaces the kept one.
            s("-U", 4, 0),
            s("+U", 5, 0),
        ]
    );
}

#[test]
fn final_strategy_emits_at_end_of_input() {
    let mut rank = open(
        &spec(2, RankOrder::asc("v"), true, RankStrategy::Final),
        0,
        1,
    );
    let mut out = Output::default();
    rank.process_batch(
        0,
        batch(&[(1, Some(3), 1), (1, None, 2), (1, Some(1), 3)]),
        &mut out,
    )
    .unwrap();
    assert!(out.is_empty());
    rank.finish(&mut out).unwrap();
    // ASC puts NULLS FIRST by default.
    assert_eq!(
        kinds_and_ids(&rows_of(&mut out)),
        [s("", 2, 1), s("", 3, 2)]
    );
}

fn window_schema() -> SchemaRef {
    let ts = DataType::Timestamp(TimeUnit::Millisecond, None);
    Arc::new(Schema::new(vec![
        Field::new("window_start", ts.clone(), false),
        Field::new("window_end", ts, false),
        Field::new("k", DataType::Int64, false),
        Field::new("v", DataType::Int64, false),
    ]))
}

fn window_batch(rows: &[(i64, i64, i64)]) -> RecordBatch {
    RecordBatch::try_new(
        window_schema(),
        vec![
            Arc::new(TimestampMillisecondArray::from_iter_values(
                rows.iter().map(|r| r.0),
            )),
            Arc::new(TimestampMillisecondArray::from_iter_values(
                rows.iter().map(|r| r.0 + 10),
            )),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.2))),
        ],
    )
    .unwrap()
}

#[test]
fn window_rank_fires_when_the_watermark_passes_the_window_end() {
    let spec = RankSpec {
        partition_keys: vec!["window_start".into(), "window_end".into()],
        order_by: vec![RankOrder::desc("v")],
        limit: 1,
        rank_column: Some("rn".into()),
        strategy: RankStrategy::Final,
        window: Some(RankWindow::columns("window_start", "window_end")),
    };
    let input = window_schema();
    let output = spec.output_schema(&input).unwrap();
    let mut rank = Rank::try_new(&spec, &input, output.clone()).unwrap();
    rank.open(&context(input, output, 0, 1)).unwrap();
    let mut out = Output::default();
    rank.process_batch(
        0,
        window_batch(&[(0, 1, 5), (0, 2, 7), (10, 3, 1), (0, 4, 6)]),
        &mut out,
    )
    .unwrap();
    assert!(out.is_empty());
    rank.process_watermark(Watermark(8), &mut out).unwrap();
    assert_eq!(out.drain().len(), 1, "only the watermark");
    rank.process_watermark(Watermark(9), &mut out).unwrap();
    let elements = out.drain();
    let StreamElement::Batch(fired) = &elements[0] else {
        panic!("expected the window's rows first, got {elements:?}");
    };
    let k = fired.column(2).as_primitive::<Int64Type>();
    assert_eq!((fired.num_rows(), k.value(0)), (1, 2));
    assert!(matches!(
        elements[1],
        StreamElement::Watermark(Watermark(9))
    ));
    // A row of the fired window is late; the open window fires at end of input.
    rank.process_batch(0, window_batch(&[(0, 9, 99)]), &mut out)
        .unwrap();
    rank.finish(&mut out).unwrap();
    let elements = out.drain();
    assert_eq!(elements.len(), 1);
    let StreamElement::Batch(last) = &elements[0] else {
        panic!("expected a batch");
    };
    assert_eq!(last.column(2).as_primitive::<Int64Type>().value(0), 3);
    assert_eq!(rank.late_records, 1);
}

/// The top rows of each partition: what a sorted scan of all rows keeps.
fn reference(rows: &[Row], limit: usize, order: &RankOrder) -> Vec<(i64, Option<i64>, i64, i64)> {
    let mut by_key: BTreeMap<i64, Vec<Row>> = BTreeMap::new();
    for row in rows {
        by_key.entry(row.0).or_default().push(*row);
    }
    let compare = |a: &Option<i64>, b: &Option<i64>| match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) if order.nulls_first => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) if order.nulls_first => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(x), Some(y)) if order.descending => y.cmp(x),
        (Some(x), Some(y)) => x.cmp(y),
    };
    let mut top = Vec::new();
    for (_, mut partition) in by_key {
        partition.sort_by(|a, b| compare(&a.1, &b.1)); // stable: arrival order on ties
        for (i, row) in partition.into_iter().take(limit).enumerate() {
            top.push((row.0, row.1, row.2, i as i64 + 1));
        }
    }
    top.sort();
    top
}

/// Applies a changelog to a multiset of `(k, v, id, rank)`.
fn materialize(changes: &[OutRow], with_rank: bool) -> Vec<(i64, Option<i64>, i64, i64)> {
    let mut rows: Vec<(i64, Option<i64>, i64, i64)> = Vec::new();
    for (kind, k, v, id, rank) in changes {
        let row = (*k, *v, *id, *rank);
        match kind.as_str() {
            "+I" | "+U" | "" => rows.push(row),
            _ => {
                let at = rows
                    .iter()
                    .position(|r| *r == row)
                    .unwrap_or_else(|| panic!("retraction of a row never emitted: {row:?}"));
                rows.swap_remove(at);
            }
        }
    }
    if !with_rank {
        // Without row numbers, the reference's ranks are dropped.
        rows.iter_mut().for_each(|r| r.3 = 0);
    }
    rows.sort();
    rows
}

fn run_split(spec: &RankSpec, batches: &[Vec<Row>], snapshot_after: Option<usize>) -> Vec<OutRow> {
    let mut all = Vec::new();
    let mut rank = open(spec, 0, 1);
    let mut out = Output::default();
    for (i, rows) in batches.iter().enumerate() {
        rank.process_batch(0, batch(rows), &mut out).unwrap();
        if snapshot_after == Some(i) {
            // Restore at parallelism 2: each subtask keeps its key groups.
            let snapshot: StateSnapshot = rank.snapshot(CheckpointId(1)).unwrap();
            all.extend(rows_of(&mut out));
            let mut restored: Vec<Rank> = (0..2).map(|s| open(spec, s, 2)).collect();
            for r in &mut restored {
                r.restore(&snapshot).unwrap();
            }
            // Route the remaining rows as the exchange would.
            let rest = &batches[i + 1..];
            for part in rest {
                let b = batch(part);
                let mut hashes = Vec::new();
                crate::state::hash_columns(&[b.column(0).clone()], &mut hashes).unwrap();
                for (s, r) in restored.iter_mut().enumerate() {
                    let mine: Vec<Row> = part
                        .iter()
                        .zip(&hashes)
                        .filter(|(_, h)| {
                            KeyGroupRange::for_subtask(128, 2, s as u32)
                                .contains(crate::state::key_group_of_hash(**h, 128))
                        })
                        .map(|(row, _)| *row)
                        .collect();
                    if !mine.is_empty() {
                        r.process_batch(0, batch(&mine), &mut out).unwrap();
                    }
                }
            }
            for r in &mut restored {
                r.finish(&mut out).unwrap();
            }
            all.extend(rows_of(&mut out));
            return all;
        }
    }
    rank.finish(&mut out).unwrap();
    all.extend(rows_of(&mut out));
    all
}

fn rows_strategy() -> impl Strategy<Value = Vec<Vec<Row>>> {
    prop::collection::vec(
        prop::collection::vec((0i64..4, prop::option::weighted(0.9, 0i64..8)), 1..12),
        1..8,
    )
    .prop_map(|batches| {
        let mut id = 0;
        batches
            .into_iter()
            .map(|rows| {
                rows.into_iter()
                    .map(|(k, v)| {
                        id += 1;
                        (k, v, id)
                    })
                    .collect()
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn changelog_and_final_match_sort_then_take(
        batches in rows_strategy(),
        limit in 1u64..4,
        descending: bool,
        nulls_first: bool,
        with_rank: bool,
        snapshot_at in prop::option::of(0usize..8),
    ) {
        let order = RankOrder { column: "v".into(), descending, nulls_first };
        let all: Vec<Row> = batches.iter().flatten().copied().collect();
        let mut expected = reference(&all, limit as usize, &order);
        if !with_rank {
            expected.iter_mut().for_each(|r| r.3 = 0);
            expected.sort();
        }
        let snapshot_after = snapshot_at.filter(|&i| i < batches.len());
        for strategy in [RankStrategy::Changelog, RankStrategy::Final] {
            let spec = spec(limit, order.clone(), with_rank, strategy);
            let out = run_split(&spec, &batches, snapshot_after);
            prop_assert_eq!(materialize(&out, with_rank), expected.clone(), "{:?}", strategy);
        }
    }

    #[test]
    fn deduplication_matches_first_and_last(
        batches in rows_strategy(),
        descending: bool,
        snapshot_at in prop::option::of(0usize..8),
    ) {
        // Time values without NULLs, as a time attribute has none.
        let batches: Vec<Vec<Row>> = batches
            .into_iter()
            .map(|b| b.into_iter().map(|(k, v, id)| (k, Some(v.unwrap_or(3)), id)).collect())
            .collect();
        let order = if descending { RankOrder::desc("v") } else { RankOrder::asc("v") };
        let all: Vec<Row> = batches.iter().flatten().copied().collect();
        // Keep-last prefers the later arrival on ties: reverse arrival before a stable sort.
        let expected = if descending {
            let reversed: Vec<Row> = all.iter().rev().copied().collect();
            reference(&reversed, 1, &order)
        } else {
            reference(&all, 1, &order)
        };
        let expected: Vec<_> = expected.into_iter().map(|(k, v, id, _)| (k, v, id, 0)).collect();
        let spec = spec(1, order, false, RankStrategy::Deduplicate);
        let out = run_split(&spec, &batches, snapshot_at.filter(|&i| i < batches.len()));
        // Only `+I` for a key's first row, `-U`/`+U` pairs afterwards.
        prop_assert!(out.iter().all(|r| r.0 != "-D"));
        prop_assert_eq!(materialize(&out, false), expected);
    }
}

fn event_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("k", DataType::Int64, false),
        Field::new("v", DataType::Int64, false),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            false,
        ),
    ]))
}

fn events(rows: &[(i64, i64, i64)]) -> RecordBatch {
    RecordBatch::try_new(
        event_schema(),
        vec![
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
            Arc::new(TimestampMillisecondArray::from_iter_values(
                rows.iter().map(|r| r.2),
            )),
        ],
    )
    .unwrap()
}

/// `(window_start, window_end, window_time, k, v, rn)` of every emitted row, sorted.
fn window_rows(output: &mut Output) -> Vec<[i64; 6]> {
    let mut rows = Vec::new();
    for element in output.drain() {
        let StreamElement::Batch(batch) = element else {
            continue;
        };
        let value = |name: &str, row: usize| {
            let column = batch.column_by_name(name).unwrap();
            match column.as_primitive_opt::<Int64Type>() {
                Some(values) => values.value(row),
                None => column
                    .as_primitive::<arrow::datatypes::TimestampMillisecondType>()
                    .value(row),
            }
        };
        for row in 0..batch.num_rows() {
            rows.push(
                ["window_start", "window_end", "window_time", "k", "v", "rn"]
                    .map(|name| value(name, row)),
            );
        }
    }
    rows.sort();
    rows
}

#[test]
fn assigned_hopping_windows_rank_each_row_in_every_window_and_restore() {
    let spec = RankSpec {
        partition_keys: vec!["k".into()],
        order_by: vec![RankOrder::desc("v")],
        limit: 1,
        rank_column: Some("rn".into()),
        strategy: RankStrategy::Final,
        window: Some(RankWindow::Assign {
            kind: crate::graph::WindowKind::Hopping {
                size_ms: 10,
                slide_ms: 5,
                offset_ms: 0,
            },
            time_column: "ts".into(),
        }),
    };
    let input = event_schema();
    let output = spec.output_schema(&input).unwrap();
    let build = |subtask: u32, parallelism: u32| {
        let mut rank = Rank::try_new(&spec, &input, output.clone()).unwrap();
        rank.open(&context(
            input.clone(),
            output.clone(),
            subtask,
            parallelism,
        ))
        .unwrap();
        rank
    };
    let first = events(&[(1, 5, 1), (1, 9, 6), (2, 3, 7)]);
    let second = events(&[(1, 7, 8), (2, 4, 12)]);

    // Uninterrupted.
    let mut rank = build(0, 1);
    let mut out = Output::default();
    rank.process_batch(0, first.clone(), &mut out).unwrap();
    rank.process_batch(0, second.clone(), &mut out).unwrap();
    rank.process_watermark(Watermark(9), &mut out).unwrap();
    let early = window_rows(&mut out);
    // Only [-5, 5) and [0, 10) have closed at watermark 9.
    assert_eq!(
        early,
        [
            [-5, 5, 4, 1, 5, 1],
            [0, 10, 9, 1, 9, 1],
            [0, 10, 9, 2, 3, 1]
        ]
    );
    rank.finish(&mut out).unwrap();
    let mut expected = early;
    expected.extend(window_rows(&mut out));
    expected.sort();

    // Snapshot after the first batch, restored at parallelism 2.
    let mut rank = build(0, 1);
    rank.process_batch(0, first, &mut out).unwrap();
    let snapshot = rank.snapshot(CheckpointId(7)).unwrap();
    let mut restored: Vec<Rank> = (0..2).map(|s| build(s, 2)).collect();
    for r in &mut restored {
        r.restore(&snapshot).unwrap();
        // Each subtask gets the whole second batch: rows of keys it does not own would not
        // reach it through the exchange, so only feed keys of owned key groups.
        let mut hashes = Vec::new();
        crate::state::hash_columns(&[second.column(0).clone()], &mut hashes).unwrap();
        let owned: Vec<u32> = (0..second.num_rows() as u32)
            .filter(|&i| {
                r.key_groups
                    .unwrap()
                    .0
                    .contains(crate::state::key_group_of_hash(hashes[i as usize], 128))
            })
            .collect();
        let mine =
            arrow::compute::take_record_batch(&second, &arrow::array::UInt32Array::from(owned))
                .unwrap();
        if mine.num_rows() > 0 {
            r.process_batch(0, mine, &mut out).unwrap();
        }
        r.process_watermark(Watermark(9), &mut out).unwrap();
        r.finish(&mut out).unwrap();
    }
    assert_eq!(window_rows(&mut out), expected);
    assert_eq!(expected.len(), 6);
}
