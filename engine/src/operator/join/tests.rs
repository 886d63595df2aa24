//! Unit tests of the join operators driven directly: state cleanup of the interval join and
//! the changelog of a left outer join.

use std::sync::Arc;

use arrow::array::{Array, AsArray, Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Int8Type, Int64Type, Schema, SchemaRef};

use super::{IntervalJoin, JoinKeys, OutputShape, RegularJoin};
use crate::element::{StreamElement, Watermark};
use crate::graph::{JoinKind, JoinSpec, JoinType};
use crate::operator::{Operator, Output};

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("k", DataType::Int64, true),
        Field::new("t", DataType::Int64, false),
    ]))
}

fn batch(rows: &[(Option<i64>, i64)]) -> RecordBatch {
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(rows.iter().map(|r| r.0).collect::<Int64Array>()),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
        ],
    )
    .expect("valid batch")
}

fn shape(kind: JoinKind) -> (JoinKeys, OutputShape) {
    let spec = JoinSpec {
        left_keys: vec!["k".into()],
        right_keys: vec!["k".into()],
        kind,
    };
    let output = spec
        .output_schema(&schema(), &schema())
        .expect("valid spec");
    let keys = JoinKeys::try_new([vec![0], vec![0]], &schema()).expect("key encoding");
    (
        keys,
        OutputShape {
            schema: output,
            inputs: [schema(), schema()],
        },
    )
}

fn rows_out(out: &mut Output) -> usize {
    out.drain()
        .iter()
        .map(|e| match e {
            StreamElement::Batch(b) => b.num_rows(),
            StreamElement::Watermark(_) | StreamElement::Barrier(_) | StreamElement::EndOfInput => {
                0
            }
        })
        .sum()
}

#[test]
fn interval_join_drops_rows_that_can_no_longer_match() {
    let kind = JoinKind::Interval {
        left_time: "t".into(),
        right_time: "t".into(),
        lower_ms: -10,
        upper_ms: 5,
    };
    let (keys, shape) = shape(kind);
    let mut join = IntervalJoin::new(keys, [1, 1], -10, 5, shape);
    let mut out = Output::default();
    // 2000 keys, times 0..2000 on both sides.
    for chunk in 0..20 {
        let rows: Vec<_> = (0..100)
            .map(|i| (Some(chunk * 100 + i), chunk * 100 + i))
            .collect();
        join.process_batch(0, batch(&rows), &mut out).unwrap();
        let rows: Vec<_> = (0..100)
            .map(|i| (Some(chunk * 100 + i), chunk * 100 + i + 3))
            .collect();
        join.process_batch(1, batch(&rows), &mut out).unwrap();
    }
    // Each left row l (time t) meets right row with time t + 3: l.t in [r.t - 10, r.t + 5].
    assert_eq!(rows_out(&mut out), 2000);
    assert_eq!(join.state_rows(), 4000);
    // Cleanup is amortised: at 500 the wholly expired batches hold under a quarter of the
    // state, so nothing is swept yet; at 1500 they hold more, and the sweep is exact: left rows
    // at or below 1500 - 10 and right rows at or below 1500 - 5 are gone.
    join.process_watermark(Watermark(500), &mut out).unwrap();
    assert_eq!(join.state_rows(), 4000);
    join.process_watermark(Watermark(1500), &mut out).unwrap();
    let left_kept = (0..2000).filter(|t| *t > 1490).count();
    let right_kept = (0..2000).filter(|t| t + 3 > 1495).count();
    assert_eq!(join.state_rows(), left_kept + right_kept);
    // A late row is dropped without output.
    join.process_batch(1, batch(&[(Some(700), 400)]), &mut out)
        .unwrap();
    assert_eq!(rows_out(&mut out), 0);
    join.process_watermark(Watermark(5000), &mut out).unwrap();
    assert_eq!(join.state_rows(), 0);
    assert!(join.key_table_len() < 2000, "key table compacted");
    let mut metrics = crate::runtime::OperatorMetrics::default();
    join.report_metrics(&mut metrics);
    assert_eq!(metrics.late_records_dropped, 1);
    assert_eq!(metrics.state_keys, 0);
}

#[test]
fn left_outer_join_retracts_the_padded_row_when_a_partner_arrives() {
    let (keys, shape) = shape(JoinKind::Regular {
        join_type: JoinType::Left,
    });
    let mut join = RegularJoin::new(keys, JoinType::Left, shape, [None, None]);
    let mut out = Output::default();
    join.process_batch(0, batch(&[(Some(1), 10), (None, 11)]), &mut out)
        .unwrap();
    join.process_batch(
        1,
        batch(&[(Some(1), 20), (Some(1), 21), (Some(2), 22)]),
        &mut out,
    )
    .unwrap();
    let mut changes = Vec::new();
    for element in out.drain() {
        let StreamElement::Batch(b) = element else {
            continue;
        };
        let kinds = b.column(0).as_primitive::<Int8Type>();
        let lt = b.column(2).as_primitive::<Int64Type>();
        let rt = b.column(4).as_primitive::<Int64Type>();
        for i in 0..b.num_rows() {
            let kind = crate::element::RowKind::from_i8(kinds.value(i)).unwrap();
            changes.push((
                kind.short_string(),
                lt.is_valid(i).then(|| lt.value(i)),
                rt.is_valid(i).then(|| rt.value(i)),
            ));
        }
    }
    assert_eq!(
        changes,
        [
            ("+I", Some(10), None),
            ("+I", Some(11), None),
            ("-D", Some(10), None),
            ("+I", Some(10), Some(20)),
            ("+I", Some(10), Some(21)),
        ]
    );
}

/// A right-side batch of an updating input: `_row_kind`, `k`, `t`.
fn updating_batch(rows: &[(i8, i64, i64)]) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new(crate::element::ROW_KIND_COLUMN, DataType::Int8, false),
        Field::new("k", DataType::Int64, true),
        Field::new("t", DataType::Int64, false),
    ]));
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(arrow::array::Int8Array::from_iter_values(
                rows.iter().map(|r| r.0),
            )),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.2))),
        ],
    )
    .expect("valid batch")
}

fn changes(out: &mut Output) -> Vec<(&'static str, i64, i64)> {
    let mut changes = Vec::new();
    for element in out.drain() {
        let StreamElement::Batch(b) = element else {
            continue;
        };
        let kinds = b.column(0).as_primitive::<Int8Type>();
        let lt = b.column(2).as_primitive::<Int64Type>();
        let rt = b.column(4).as_primitive::<Int64Type>();
        for i in 0..b.num_rows() {
            let kind = crate::element::RowKind::from_i8(kinds.value(i)).unwrap();
            changes.push((kind.short_string(), lt.value(i), rt.value(i)));
        }
    }
    changes
}

#[test]
fn inner_join_applies_retractions_of_an_updating_input() {
    let (keys, shape) = shape(JoinKind::Regular {
        join_type: JoinType::Inner,
    });
    let mut join = RegularJoin::new(keys, JoinType::Inner, shape, [None, Some(0)]);
    let mut out = Output::default();
    join.process_batch(0, batch(&[(Some(1), 10), (Some(1), 11)]), &mut out)
        .unwrap();
    // +I 20, then in one batch: -U 20, +U 21, and a retraction of a row never stored.
    join.process_batch(1, updating_batch(&[(0, 1, 20)]), &mut out)
        .unwrap();
    join.process_batch(
        1,
        updating_batch(&[(1, 1, 20), (2, 1, 21), (3, 1, 99)]),
        &mut out,
    )
    .unwrap();
    // A left row arriving now only sees the live right row.
    join.process_batch(0, batch(&[(Some(1), 12)]), &mut out)
        .unwrap();
    // Insert and retract within one batch: both pairs, in order.
    join.process_batch(1, updating_batch(&[(0, 1, 30), (3, 1, 30)]), &mut out)
        .unwrap();
    assert_eq!(
        changes(&mut out),
        [
            ("+I", 10, 20),
            ("+I", 11, 20),
            ("-D", 10, 20),
            ("-D", 11, 20),
            ("+I", 10, 21),
            ("+I", 11, 21),
            ("+I", 12, 21),
            ("+I", 10, 30),
            ("+I", 11, 30),
            ("+I", 12, 30),
            ("-D", 10, 30),
            ("-D", 11, 30),
            ("-D", 12, 30),
        ]
    );
    let mut metrics = crate::runtime::OperatorMetrics::default();
    join.report_metrics(&mut metrics);
    assert_eq!(metrics.state_keys, 1);
}

mod subquery {
    //! The subquery joins against a nested-loop model, over random keys (with NULLs), a
    //! random residual threshold and random batch boundaries.

    use proptest::prelude::*;

    use super::*;
    use arrow::array::ArrayRef;

    use crate::expr::col;
    use crate::graph::SubqueryJoinType;
    use crate::graph::join::pair_schema;
    use crate::operator::OperatorContext;
    use crate::operator::join::SubqueryJoin;
    use crate::spill::MemoryBudget;

    type Row = (Option<i64>, i64);

    /// The rows `join_type` emits for `left` (as left row indices; for a single join, with
    /// the partner's index), row at a time. The residual is `t_right > t + shift`.
    fn model(
        join_type: SubqueryJoinType,
        left: &[Row],
        right: &[Row],
        shift: Option<i64>,
    ) -> Option<Vec<(usize, Option<usize>)>> {
        let partners = |l: &Row| -> Vec<usize> {
            right
                .iter()
                .enumerate()
                .filter(|(_, r)| l.0.is_some() && l.0 == r.0 && shift.is_none_or(|s| r.1 > l.1 + s))
                .map(|(i, _)| i)
                .collect()
        };
        let mut out = Vec::new();
        for (i, l) in left.iter().enumerate() {
            let found = partners(l);
            match join_type {
                SubqueryJoinType::Semi if !found.is_empty() => out.push((i, None)),
                SubqueryJoinType::Anti if found.is_empty() => out.push((i, None)),
                SubqueryJoinType::NullAwareAnti => {
                    let emit = right.is_empty()
                        || (!right.iter().any(|r| r.0.is_none())
                            && l.0.is_some()
                            && found.is_empty());
                    if emit {
                        out.push((i, None));
                    }
                }
                SubqueryJoinType::Single => match found.as_slice() {
                    [] => out.push((i, None)),
                    [one] => out.push((i, Some(*one))),
                    _ => return None,
                },
                SubqueryJoinType::Semi | SubqueryJoinType::Anti => {}
            }
        }
        Some(out)
    }

    /// How the two inputs arrive.
    #[derive(Debug, Clone, Copy)]
    enum Arrival {
        /// The right input ends before the first left row: every left row probes at once.
        RightFirst,
        /// Batch for batch; the input that runs out first ends on its own.
        Interleaved,
        /// The left input ends before the first right row: semi and anti joins build the
        /// left side and the right rows mark it.
        LeftFirst,
    }

    /// Runs the operator with `left` and `right` cut into batches of `chunk` rows, arriving
    /// as `arrival` says, with `budget` bytes of memory (left rows past it spill). The left
    /// input is (k, index, threshold = t + shift) so the output names its rows; the right
    /// input's `t` is its row index, so a single join's partner is named by it.
    fn run(
        join_type: SubqueryJoinType,
        left: &[Row],
        right: &[Row],
        shift: Option<i64>,
        chunk: usize,
        arrival: Arrival,
        budget: Option<usize>,
    ) -> crate::Result<Vec<(usize, Option<usize>)>> {
        let left_schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, true),
            Field::new("t", DataType::Int64, false),
            Field::new("threshold", DataType::Int64, false),
        ]));
        let residual = shift.map(|_| col("t_right").gt(col("threshold")));
        let spec = JoinSpec {
            left_keys: vec!["k".into()],
            right_keys: vec!["k".into()],
            kind: JoinKind::Subquery {
                join_type,
                residual: residual.clone(),
                subquery: "(SELECT k FROM r)".into(),
            },
        };
        let output = spec.output_schema(&left_schema, &schema())?;
        let pairs = pair_schema(&left_schema, &schema())?;
        let keys = JoinKeys::try_new([vec![0], vec![0]], &left_schema)?;
        let residual = residual.map(|r| r.resolve(&pairs)).transpose()?;
        let mut join = SubqueryJoin::new(
            keys,
            join_type,
            residual,
            "(SELECT k FROM r)".into(),
            [output.clone(), pairs, schema()],
        );
        let dir = tempfile::tempdir().expect("temp dir");
        join.open(&OperatorContext {
            vertex: "SubqueryJoin".into(),
            subtask: crate::ids::SubtaskIndex(0),
            parallelism: 1,
            max_parallelism: 128,
            key_groups: crate::state::KeyGroupRange::for_subtask(128, 1, 0),
            input_schemas: vec![left_schema.clone(), schema()],
            output_schema: output,
            incremental_checkpoints: false,
            checkpointing: false,
            memory: budget.map_or_else(MemoryBudget::unlimited, |b| {
                MemoryBudget::new(b, dir.path())
            }),
        })?;
        let mut out = Output::default();
        let right_batches: Vec<RecordBatch> = right
            .chunks(chunk)
            .enumerate()
            .map(|(n, rows)| {
                let rows: Vec<Row> = rows
                    .iter()
                    .enumerate()
                    .map(|(i, r)| (r.0, (n * chunk + i) as i64))
                    .collect();
                batch(&rows)
            })
            .collect();
        let left_batches: Vec<RecordBatch> = left
            .chunks(chunk)
            .enumerate()
            .map(|(n, rows)| {
                let columns: Vec<ArrayRef> = vec![
                    Arc::new(rows.iter().map(|r| r.0).collect::<Int64Array>()),
                    Arc::new(Int64Array::from_iter_values(
                        (0..rows.len()).map(|i| (n * chunk + i) as i64),
                    )),
                    Arc::new(Int64Array::from_iter_values(
                        rows.iter().map(|r| r.1 + shift.unwrap_or(0)),
                    )),
                ];
                RecordBatch::try_new(left_schema.clone(), columns).expect("valid batch")
            })
            .collect();
        match arrival {
            // One input to its end, then the other: as a gate reading `first` first tells it.
            Arrival::RightFirst | Arrival::LeftFirst => {
                let first = usize::from(matches!(arrival, Arrival::RightFirst));
                let mut sides = [left_batches, right_batches];
                for side in [first, 1 - first] {
                    for b in std::mem::take(&mut sides[side]) {
                        join.process_batch(side, b, &mut out)?;
                    }
                    if side == first {
                        join.end_input(side, &mut out)?;
                    }
                }
            }
            Arrival::Interleaved => {
                let mut sides = [left_batches.into_iter(), right_batches.into_iter()];
                let mut ended = [false, false];
                loop {
                    let next = [sides[0].next(), sides[1].next()];
                    if next.iter().all(Option::is_none) {
                        break;
                    }
                    for (side, b) in next.into_iter().enumerate() {
                        match b {
                            Some(b) => join.process_batch(side, b, &mut out)?,
                            // As a gate tells it: an input that runs out while the other
                            // still has rows ends on its own.
                            None if !ended[side] => {
                                ended[side] = true;
                                join.end_input(side, &mut out)?;
                            }
                            None => {}
                        }
                    }
                }
            }
        }
        join.finish(&mut out)?;
        while join.finish_more(&mut out)? {}
        assert_eq!(
            std::fs::read_dir(dir.path()).expect("spill dir").count(),
            0,
            "spill files are deleted"
        );
        let mut rows = Vec::new();
        for element in out.drain() {
            let StreamElement::Batch(b) = element else {
                continue;
            };
            let index = b.column(1).as_primitive::<Int64Type>();
            // A single join's last column is the partner's `t_right`: its index.
            let partner = b.column(b.num_columns() - 1).as_primitive::<Int64Type>();
            for i in 0..b.num_rows() {
                let p = (join_type == SubqueryJoinType::Single && partner.is_valid(i))
                    .then(|| partner.value(i) as usize);
                rows.push((index.value(i) as usize, p));
            }
        }
        rows.sort();
        Ok(rows)
    }

    fn rows(max: usize) -> impl Strategy<Value = Vec<Row>> {
        prop::collection::vec((prop::option::weighted(0.9, 0..6i64), 0..20i64), 0..max)
    }

    fn join_type() -> impl Strategy<Value = SubqueryJoinType> {
        prop_oneof![
            Just(SubqueryJoinType::Semi),
            Just(SubqueryJoinType::Anti),
            Just(SubqueryJoinType::NullAwareAnti),
            Just(SubqueryJoinType::Single),
        ]
    }

    proptest! {
        #[test]
        fn subquery_joins_match_a_nested_loop(
            join_type in join_type(),
            left in rows(40),
            right in rows(12),
            shift in prop::option::of(-5..5i64),
            chunk in 1..16usize,
            arrival in prop_oneof![
                Just(Arrival::RightFirst),
                Just(Arrival::Interleaved),
                Just(Arrival::LeftFirst),
            ],
            budget in prop::option::of(1usize..2048),
        ) {
            let shift = shift.filter(|_| {
                matches!(join_type, SubqueryJoinType::Semi | SubqueryJoinType::Anti)
            });
            // The model sees the right side as the operator does: `t` is the row index.
            let right: Vec<Row> = right.iter().enumerate().map(|(i, r)| (r.0, i as i64)).collect();
            let expected = model(join_type, &left, &right, shift);
            let actual = run(join_type, &left, &right, shift, chunk, arrival, budget);
            match expected {
                Some(expected) => prop_assert_eq!(actual.expect("join runs"), expected),
                None => {
                    let err = actual.expect_err("a second partner fails").to_string();
                    prop_assert!(err.contains("more than one row"), "{}", err);
                    prop_assert!(err.contains("(SELECT k FROM r)"), "{}", err);
                }
            }
        }
    }

    #[test]
    fn null_aware_anti_join_over_a_null_emits_nothing() {
        let right = [(Some(1), 0), (None, 1)];
        let left = [(Some(2), 0), (None, 1)];
        for arrival in [
            Arrival::Interleaved,
            Arrival::LeftFirst,
            Arrival::RightFirst,
        ] {
            let run = |join_type| run(join_type, &left, &right, None, 4, arrival, None).unwrap();
            let rows = run(SubqueryJoinType::NullAwareAnti);
            assert!(rows.is_empty(), "{arrival:?}: {rows:?}");
            let rows = run(SubqueryJoinType::Anti);
            assert_eq!(rows, [(0, None), (1, None)], "{arrival:?}");
        }
    }
}

/// The batch hash join against a nested loop: every join type, with budgets from unlimited
/// to a few bytes (everything spilled, partitions split again).
mod hash_join {
    use arrow::array::ArrayRef;
    use proptest::prelude::*;

    use super::*;
    use crate::operator::OperatorContext;
    use crate::operator::join::HashJoin;
    use crate::runtime::OperatorMetrics;
    use crate::spill::MemoryBudget;

    type Row = (Option<i64>, i64);

    /// (left index, right index) per output row, NULL partners as `None`.
    type Pair = (Option<i64>, Option<i64>);

    fn model(join_type: JoinType, left: &[Row], right: &[Row]) -> Vec<Pair> {
        let mut out = Vec::new();
        let mut right_matched = vec![false; right.len()];
        for l in left {
            let mut found = false;
            for (j, r) in right.iter().enumerate() {
                if l.0.is_some() && l.0 == r.0 {
                    out.push((Some(l.1), Some(r.1)));
                    right_matched[j] = true;
                    found = true;
                }
            }
            if !found && join_type.preserves(0) {
                out.push((Some(l.1), None));
            }
        }
        if join_type.preserves(1) {
            for (j, r) in right.iter().enumerate() {
                if !right_matched[j] {
                    out.push((None, Some(r.1)));
                }
            }
        }
        out.sort();
        out
    }

    /// Runs the operator over `left` and `right` in batches of `chunk` rows, interleaved as
    /// a gate would deliver them; returns the output pairs and the spilled bytes.
    fn run(
        join_type: JoinType,
        left: &[Row],
        right: &[Row],
        chunk: usize,
        budget: MemoryBudget,
    ) -> (Vec<Pair>, u64) {
        let (keys, shape) = shape(JoinKind::Hash { join_type });
        let output = shape.schema.clone();
        let mut join = HashJoin::new(keys.columns.clone(), join_type, shape);
        join.open(&OperatorContext {
            vertex: "HashJoin".into(),
            subtask: crate::ids::SubtaskIndex(0),
            parallelism: 1,
            max_parallelism: 128,
            key_groups: crate::state::KeyGroupRange::for_subtask(128, 1, 0),
            input_schemas: vec![schema(), schema()],
            output_schema: output,
            incremental_checkpoints: false,
            checkpointing: false,
            memory: budget,
        })
        .expect("open");
        let mut out = Output::default();
        let (mut l, mut r) = (
            left.chunks(chunk).peekable(),
            right.chunks(chunk).peekable(),
        );
        // As a gate tells it: an input that ends while the other still has rows ends on its
        // own (the join may start probing); the last one ends with `finish`.
        let mut ended = [false, false];
        loop {
            let (a, b) = (l.next(), r.next());
            if a.is_none() && b.is_none() {
                break;
            }
            for (side, rows) in [(0, a), (1, b)] {
                if let Some(rows) = rows {
                    join.process_batch(side, batch(rows), &mut out)
                        .expect("process");
                }
            }
            let more = [l.peek().is_some(), r.peek().is_some()];
            for side in 0..2 {
                if !more[side] && more[1 - side] && !ended[side] {
                    ended[side] = true;
                    join.end_input(side, &mut out).expect("end of one input");
                }
            }
        }
        join.finish(&mut out).expect("finish");
        while join.finish_more(&mut out).expect("finish") {}
        let mut metrics = OperatorMetrics::default();
        join.report_metrics(&mut metrics);
        let mut pairs = Vec::new();
        for element in out.drain() {
            let StreamElement::Batch(b) = element else {
                continue;
            };
            assert_eq!(b.num_columns(), 4, "no _row_kind in a batch join's output");
            let index = |c: &ArrayRef, i: usize| {
                let c = c.as_primitive::<Int64Type>();
                c.is_valid(i).then(|| c.value(i))
            };
            for i in 0..b.num_rows() {
                pairs.push((index(b.column(1), i), index(b.column(3), i)));
            }
        }
        pairs.sort();
        (pairs, metrics.spilled_bytes)
    }

    fn rows(max: usize) -> impl Strategy<Value = Vec<Row>> {
        prop::collection::vec(prop::option::weighted(0.9, 0..12i64), 0..max).prop_map(|keys| {
            keys.into_iter()
                .enumerate()
                .map(|(i, k)| (k, i as i64))
                .collect()
        })
    }

    fn join_type() -> impl Strategy<Value = JoinType> {
        prop_oneof![
            Just(JoinType::Inner),
            Just(JoinType::Left),
            Just(JoinType::Right),
            Just(JoinType::Full),
        ]
    }

    proptest! {
        #[test]
        fn hash_joins_match_a_nested_loop(
            join_type in join_type(),
            left in rows(60),
            right in rows(60),
            chunk in 1..20usize,
            budget in prop::option::of(1usize..4096),
        ) {
            let dir = tempfile::tempdir().expect("temp dir");
            let budget = budget.map_or_else(MemoryBudget::unlimited, |b| {
                MemoryBudget::new(b, dir.path())
            });
            let (actual, _) = run(join_type, &left, &right, chunk, budget);
            prop_assert_eq!(actual, model(join_type, &left, &right));
            let left_over = std::fs::read_dir(dir.path()).expect("spill dir").count();
            prop_assert_eq!(left_over, 0, "spill files are deleted");
        }
    }

    #[test]
    fn a_join_over_its_budget_spills_and_splits_partitions_again() {
        // 20 000 rows per side (about 320 KiB) over 2 000 keys with an 8 KiB budget: the
        // first spill's partitions (about 10 KiB on disk each) split again.
        let left: Vec<Row> = (0..20_000).map(|i| (Some(i % 2_000), i)).collect();
        let right: Vec<Row> = (0..20_000).map(|i| (Some((i * 7) % 2_500), i)).collect();
        let dir = tempfile::tempdir().expect("temp dir");
        for join_type in [JoinType::Inner, JoinType::Full] {
            let (actual, spilled) = run(
                join_type,
                &left,
                &right,
                1024,
                MemoryBudget::new(8 << 10, dir.path()),
            );
            assert!(spilled > 0, "nothing spilled");
            let (in_memory, none) = run(join_type, &left, &right, 1024, MemoryBudget::unlimited());
            assert_eq!(none, 0);
            assert_eq!(actual.len(), in_memory.len());
            assert_eq!(actual, in_memory, "{join_type:?}");
        }
        assert_eq!(std::fs::read_dir(dir.path()).expect("spill dir").count(), 0);
    }
}
