//! The lookup join against a row-at-a-time model: every input row in order, with every table
//! row of an equal (non-NULL) key in table order that passes the condition, or once with
//! NULLs for a left join. The result must not depend on how the input is cut into batches.

use std::sync::Arc;

use arrow::array::{Array, AsArray, Int32Array, Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Int32Type, Int64Type, Schema, SchemaRef};
use proptest::prelude::*;

use super::LookupJoin;
use crate::connector::{MemorySource, SourceSpec};
use crate::element::StreamElement;
use crate::expr::{Expr, col};
use crate::graph::{JoinType, LookupJoinSpec};
use crate::ids::SubtaskIndex;
use crate::operator::{Operator, OperatorContext, Output};
use crate::state::KeyGroupRange;

/// Table rows (k INT, v BIGINT).
type TableRow = (Option<i32>, i64);
/// Input rows (k BIGINT, x BIGINT).
type InputRow = (Option<i64>, i64);
/// Output rows: input k, x, table k, v.
type OutRow = (Option<i64>, i64, Option<i32>, Option<i64>);

fn input_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("k", DataType::Int64, true),
        Field::new("x", DataType::Int64, false),
    ]))
}

fn table_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("k", DataType::Int32, true),
        Field::new("v", DataType::Int64, false),
    ]))
}

fn input_batch(rows: &[InputRow]) -> RecordBatch {
    RecordBatch::try_new(
        input_schema(),
        vec![
            Arc::new(rows.iter().map(|r| r.0).collect::<Int64Array>()),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
        ],
    )
    .expect("valid batch")
}

/// The table as a memory source, cut into batches of three rows.
fn table_source(rows: &[TableRow]) -> SourceSpec {
    let batches = rows
        .chunks(3)
        .map(|chunk| {
            RecordBatch::try_new(
                table_schema(),
                vec![
                    Arc::new(chunk.iter().map(|r| r.0).collect::<Int32Array>()),
                    Arc::new(Int64Array::from_iter_values(chunk.iter().map(|r| r.1))),
                ],
            )
            .expect("valid batch")
        })
        .collect();
    SourceSpec::Memory(MemorySource::new(table_schema(), batches).expect("memory source"))
}

fn spec(table: &[TableRow], join_type: JoinType, condition: Option<Expr>) -> LookupJoinSpec {
    LookupJoinSpec {
        table: "dim".into(),
        source: table_source(table),
        probe_keys: vec![col("k")],
        lookup_keys: vec!["k".into()],
        join_type,
        lookup_columns: vec!["k_right".into(), "v".into()],
        condition,
    }
}

fn run(spec: &LookupJoinSpec, batches: &[Vec<InputRow>]) -> Vec<OutRow> {
    let output = spec.output_schema(&input_schema()).expect("valid spec");
    let mut join = LookupJoin::try_new(spec, &input_schema(), output.clone()).expect("operator");
    let ctx = OperatorContext {
        vertex: "LookupJoin".into(),
        subtask: SubtaskIndex(0),
        parallelism: 1,
        max_parallelism: 128,
        key_groups: KeyGroupRange::for_subtask(128, 1, 0),
        input_schemas: vec![input_schema()],
        output_schema: output,
        incremental_checkpoints: false,
        checkpointing: false,
        memory: crate::spill::MemoryBudget::default(),
    };
    join.open(&ctx).expect("open");
    let mut out = Output::default();
    for rows in batches.iter().filter(|b| !b.is_empty()) {
        join.process_batch(0, input_batch(rows), &mut out)
            .expect("process");
    }
    let mut rows = Vec::new();
    for element in out.drain() {
        let batch = match element {
            StreamElement::Batch(batch) => batch,
            StreamElement::Watermark(_) | StreamElement::Barrier(_) | StreamElement::EndOfInput => {
                continue;
            }
        };
        let k = batch.column(0).as_primitive::<Int64Type>();
        let x = batch.column(1).as_primitive::<Int64Type>();
        let tk = batch.column(2).as_primitive::<Int32Type>();
        let v = batch.column(3).as_primitive::<Int64Type>();
        let get64 = |a: &arrow::array::Int64Array, i: usize| a.is_valid(i).then(|| a.value(i));
        for i in 0..batch.num_rows() {
            rows.push((
                get64(k, i),
                x.value(i),
                tk.is_valid(i).then(|| tk.value(i)),
                get64(v, i),
            ));
        }
    }
    rows
}

/// The row-at-a-time model; `condition` over (x, v).
fn model(
    table: &[TableRow],
    input: &[InputRow],
    left: bool,
    condition: Option<fn(i64, i64) -> bool>,
) -> Vec<OutRow> {
    let mut out = Vec::new();
    for &(k, x) in input {
        let mut matched = false;
        for &(tk, v) in table {
            let equal = matches!((k, tk), (Some(a), Some(b)) if a == i64::from(b));
            if equal && condition.is_none_or(|c| c(x, v)) {
                out.push((k, x, tk, Some(v)));
                matched = true;
            }
        }
        if left && !matched {
            out.push((k, x, None, None));
        }
    }
    out
}

#[test]
fn duplicates_nulls_and_misses() {
    let table = [(Some(1), 10), (Some(2), 20), (None, 0), (Some(1), 11)];
    let input = vec![(Some(1), 5), (None, 6), (Some(3), 7), (Some(2), 8)];
    assert_eq!(
        run(
            &spec(&table, JoinType::Inner, None),
            std::slice::from_ref(&input)
        ),
        vec![
            (Some(1), 5, Some(1), Some(10)),
            (Some(1), 5, Some(1), Some(11)),
            (Some(2), 8, Some(2), Some(20)),
        ]
    );
    assert_eq!(
        run(&spec(&table, JoinType::Left, None), &[input]),
        vec![
            (Some(1), 5, Some(1), Some(10)),
            (Some(1), 5, Some(1), Some(11)),
            (None, 6, None, None),
            (Some(3), 7, None, None),
            (Some(2), 8, Some(2), Some(20)),
        ]
    );
}

#[test]
fn an_empty_table_pads_every_row_of_a_left_join() {
    let input = vec![(Some(1), 5), (None, 6)];
    assert_eq!(
        run(
            &spec(&[], JoinType::Left, None),
            std::slice::from_ref(&input)
        ),
        vec![(Some(1), 5, None, None), (None, 6, None, None)]
    );
    assert!(run(&spec(&[], JoinType::Inner, None), &[input]).is_empty());
}

#[test]
fn a_left_join_condition_pads_rows_whose_matches_all_fail_it() {
    let table = [(Some(1), 10), (Some(1), 3), (Some(2), 1)];
    let input = vec![(Some(1), 5), (Some(2), 5), (Some(1), 20)];
    assert_eq!(
        run(
            &spec(&table, JoinType::Left, Some(col("v").gt(col("x")))),
            &[input]
        ),
        vec![
            (Some(1), 5, Some(1), Some(10)),
            (Some(2), 5, None, None),
            (Some(1), 20, None, None),
        ]
    );
}

fn rows_strategy<T: std::fmt::Debug + Clone>(
    item: impl Strategy<Value = T>,
    max: usize,
) -> impl Strategy<Value = Vec<T>> {
    proptest::collection::vec(item, 0..max)
}

proptest! {
    #[test]
    fn matches_the_row_model_whatever_the_batches(
        table in rows_strategy((proptest::option::weighted(0.9, -4i32..8), 0i64..20), 24),
        input in rows_strategy((proptest::option::weighted(0.9, -6i64..10), 0i64..20), 60),
        cuts in proptest::collection::vec(1usize..9, 1..8),
        left in any::<bool>(),
        with_condition in any::<bool>(),
    ) {
        let join_type = if left { JoinType::Left } else { JoinType::Inner };
        let condition = with_condition.then(|| col("v").gt_eq(col("x")));
        let reference: Option<fn(i64, i64) -> bool> =
            if with_condition { Some(|x, v| v >= x) } else { None };
        let expected = model(&table, &input, left, reference);
        // The input cut into batches of the sizes in `cuts`, repeated.
        let mut batches = Vec::new();
        let mut rest = input.as_slice();
        for size in cuts.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (head, tail) = rest.split_at((*size).min(rest.len()));
            batches.push(head.to_vec());
            rest = tail;
        }
        let spec = spec(&table, join_type, condition);
        prop_assert_eq!(run(&spec, &batches), expected.clone());
        prop_assert_eq!(run(&spec, std::slice::from_ref(&input)), expected);
    }
}
