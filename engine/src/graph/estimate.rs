//! Row count estimates for the inputs of batch joins, from what is known before a job runs:
//! the row counts in Parquet footers and the shape of the operators above them.
//!
//! A join that reads the input estimated smaller to its end first builds that side and
//! streams the other, holding one side instead of both ([`super::Vertex::read_first`]). The
//! estimates only choose an order, never an answer, so they are deliberately simple:
//! - a filter keeps a fixed fraction per predicate shape (`=` a literal or `LIKE` a tenth, a
//!   range a third, `AND` multiplies, `OR` adds);
//! - an inner join of a table with a smaller one (a fact with its dimension, `lineitem` with
//!   `supplier`) keeps the larger side's rows times the fraction of the smaller table that its
//!   filters left: each row of the larger side has one partner in the whole smaller table;
//! - a semi or anti join keeps half its left rows, a scalar subquery join all of them, and a
//!   grouping a quarter of its input (one row without `GROUP BY`).
//!
//! Each estimate carries the size of the largest table it was drawn from (`base`), which is
//! what the join rule compares.

use std::collections::HashMap;

use super::{JobGraph, JoinKind, OperatorSpec, SubqueryJoinType, Vertex};
use crate::expr::{BinaryOp, Expr};
use crate::graph::{Edge, JoinType};
use crate::ids::VertexId;

/// An estimate of the rows a vertex emits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RowEstimate {
    pub rows: f64,
    /// Rows of the largest table this stream reads from.
    pub base: f64,
}

impl RowEstimate {
    fn scaled(self, fraction: f64) -> RowEstimate {
        RowEstimate {
            rows: self.rows * fraction,
            base: self.base,
        }
    }
}

/// The estimated output of `vertex` in a graph under construction (`vertices`, `edges`);
/// `None` where a source's size is unknown or an operator has no rule. `memo` keeps the
/// estimates of the vertices visited, so that a footer is read once per graph.
pub fn estimate_rows(
    vertices: &[Vertex],
    edges: &[Edge],
    vertex: VertexId,
    memo: &mut HashMap<VertexId, Option<RowEstimate>>,
) -> Option<RowEstimate> {
    if let Some(known) = memo.get(&vertex) {
        return *known;
    }
    let estimate = estimate_vertex(vertices, edges, vertex, memo);
    memo.insert(vertex, estimate);
    estimate
}

fn estimate_vertex(
    vertices: &[Vertex],
    edges: &[Edge],
    vertex: VertexId,
    memo: &mut HashMap<VertexId, Option<RowEstimate>>,
) -> Option<RowEstimate> {
    let sources = |index: u32| -> Vec<VertexId> {
        edges
            .iter()
            .filter(|e| e.target == vertex && e.input_index == index)
            .map(|e| e.source)
            .collect()
    };
    let mut one_input = |index: u32| -> Option<RowEstimate> {
        let mut total: Option<RowEstimate> = None;
        for source in sources(index) {
            let e = estimate_rows(vertices, edges, source, memo)?;
            total = Some(match total {
                None => e,
                Some(t) => RowEstimate {
                    rows: t.rows + e.rows,
                    base: t.base.max(e.base),
                },
            });
        }
        total
    };
    let v = vertices.get(vertex.0 as usize)?;
    match &v.operator {
        OperatorSpec::Source { connector, .. } => {
            // A pushed predicate is applied by the filter above it, and estimated there.
            let rows = connector.estimated_rows()? as f64;
            Some(RowEstimate { rows, base: rows })
        }
        OperatorSpec::Filter { predicate } => Some(one_input(0)?.scaled(selectivity(predicate))),
        OperatorSpec::Project { .. } | OperatorSpec::Union => one_input(0),
        OperatorSpec::Sort(sort) => {
            let input = one_input(0)?;
            Some(match sort.fetch {
                Some(fetch) => RowEstimate {
                    rows: input.rows.min(fetch as f64),
                    base: input.base,
                },
                None => input,
            })
        }
        OperatorSpec::KeyedAggregate(spec) => {
            let input = one_input(0)?;
            // A partial phase is counted as keeping its rows, so that the final phase after
            // it estimates what a single phase would.
            Some(if spec.phase == super::AggregatePhase::Partial {
                input
            } else if spec.default_group.is_some() {
                RowEstimate {
                    rows: 1.0,
                    base: input.base,
                }
            } else {
                input.scaled(0.25)
            })
        }
        OperatorSpec::Join(spec) => {
            let left = one_input(0)?;
            let right = one_input(1)?;
            match &spec.kind {
                JoinKind::Hash { join_type } => Some(inner_join(left, right, *join_type)),
                JoinKind::Subquery { join_type, .. } => Some(match join_type {
                    SubqueryJoinType::Single => left,
                    SubqueryJoinType::Semi
                    | SubqueryJoinType::Anti
                    | SubqueryJoinType::NullAwareAnti => left.scaled(0.5),
                }),
                _ => None,
            }
        }
        _ => None,
    }
}

/// The rows of an equi-join: the larger table's side, cut by the fraction of the smaller
/// table that survived its filters; outer joins keep at least their preserved sides.
fn inner_join(left: RowEstimate, right: RowEstimate, join_type: JoinType) -> RowEstimate {
    let (fact, dimension) = if left.base >= right.base {
        (left, right)
    } else {
        (right, left)
    };
    let fraction = if dimension.base > 0.0 {
        (dimension.rows / dimension.base).min(1.0)
    } else {
        0.0
    };
    let mut rows = fact.rows * fraction;
    if join_type.preserves(0) {
        rows = rows.max(left.rows);
    }
    if join_type.preserves(1) {
        rows = rows.max(right.rows);
    }
    RowEstimate {
        rows,
        base: fact.base,
    }
}

/// The fraction of rows a predicate keeps, by its shape.
fn selectivity(predicate: &Expr) -> f64 {
    match predicate {
        Expr::Binary { left, op, right } => match op {
            BinaryOp::And => selectivity(left) * selectivity(right),
            BinaryOp::Or => (selectivity(left) + selectivity(right)).min(1.0),
            BinaryOp::Eq if is_constant(left) || is_constant(right) => 0.1,
            BinaryOp::Eq => 0.5,
            BinaryOp::NotEq => 0.9,
            BinaryOp::Lt | BinaryOp::LtEq | BinaryOp::Gt | BinaryOp::GtEq
                if is_constant(left) || is_constant(right) =>
            {
                1.0 / 3.0
            }
            _ => 0.5,
        },
        Expr::Not(inner) => 1.0 - selectivity(inner),
        Expr::IsNull(_) => 0.1,
        Expr::IsNotNull(_) => 0.9,
        Expr::InList { list, negated, .. } => {
            let kept = (0.1 * list.len() as f64).min(0.5);
            if *negated { 1.0 - kept } else { kept }
        }
        Expr::Between { negated, .. } => {
            if *negated {
                0.75
            } else {
                0.25
            }
        }
        // A pattern names a few words of free text (`'%green%'` keeps 5 % of TPC-H's
        // parts, `'forest%'` 1 %).
        Expr::Like { negated, .. } => {
            if *negated {
                0.9
            } else {
                0.1
            }
        }
        _ => 0.5,
    }
}

/// An expression over no column (`DATE '1994-01-01' + INTERVAL '1' YEAR`).
fn is_constant(expr: &Expr) -> bool {
    match expr {
        Expr::Column(_) => false,
        Expr::Literal(_) => true,
        Expr::Binary { left, right, .. } => is_constant(left) && is_constant(right),
        Expr::Cast { expr, .. } | Expr::TryCast { expr, .. } | Expr::Negative(expr) => {
            is_constant(expr)
        }
        _ => false,
    }
}

/// Which input of the two-input `vertex` to read to its end first, where the runtime may:
/// only in batch mode without checkpoints (the caller's check), and only when no operator
/// feeds both inputs, so that holding one input back cannot hold back the other.
pub fn read_first_allowed(graph: &JobGraph, vertex: VertexId) -> Option<u32> {
    let first = graph.vertex(vertex).read_first?;
    let upstream = |input: u32| {
        let mut seen = std::collections::BTreeSet::new();
        let mut stack: Vec<VertexId> = graph
            .edges()
            .iter()
            .filter(|e| e.target == vertex && e.input_index == input)
            .map(|e| e.source)
            .collect();
        while let Some(v) = stack.pop() {
            if seen.insert(v) {
                stack.extend(
                    graph
                        .edges()
                        .iter()
                        .filter(|e| e.target == v)
                        .map(|e| e.source),
                );
            }
        }
        seen
    };
    let (left, right) = (upstream(0), upstream(1));
    left.is_disjoint(&right).then_some(first)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::{col, lit};

    fn est(rows: f64, base: f64) -> RowEstimate {
        RowEstimate { rows, base }
    }

    #[test]
    fn a_fact_joined_with_a_filtered_dimension_keeps_the_dimensions_fraction() {
        // lineitem (6 M) with suppliers of one nation (400 of 10 000).
        let joined = inner_join(est(6e6, 6e6), est(400.0, 1e4), JoinType::Inner);
        assert_eq!(joined, est(240_000.0, 6e6));
        // Either side may be the fact.
        let joined = inner_join(est(400.0, 1e4), est(6e6, 6e6), JoinType::Inner);
        assert_eq!(joined, est(240_000.0, 6e6));
        // A preserved side keeps its rows.
        let joined = inner_join(est(6e6, 6e6), est(400.0, 1e4), JoinType::Right);
        assert_eq!(joined.rows, 240_000.0);
        let joined = inner_join(est(10.0, 6e6), est(400.0, 1e4), JoinType::Right);
        assert_eq!(joined.rows, 400.0);
    }

    /// Two scans joined, then joined again with one of them: the second join's inputs share
    /// a scan, so holding one back could starve the other, and the plan's order is ignored.
    #[test]
    fn an_order_is_followed_only_where_no_operator_feeds_both_inputs() {
        use crate::api::StreamEnvironment;
        use crate::connector::SourceSpec;
        use arrow::array::Int64Array;
        use arrow::datatypes::{DataType, Field, Schema};
        use arrow::record_batch::RecordBatch;
        use std::sync::Arc;

        let env = StreamEnvironment::new("estimates");
        let table = |name: &str, rows: i64| {
            let schema = Arc::new(Schema::new(vec![Field::new(name, DataType::Int64, false)]));
            let batch = RecordBatch::try_new(
                schema.clone(),
                vec![Arc::new(Int64Array::from_iter_values(0..rows))],
            )
            .unwrap();
            let source = crate::connector::MemorySource::new(schema, vec![batch]).unwrap();
            env.source(name, SourceSpec::Memory(source)).unwrap()
        };
        let (big, small) = (table("a", 1000), table("b", 10));
        let joined = big
            .join(&small, ["a"], ["b"])
            .hash(JoinType::Inner)
            .unwrap();
        let again = joined
            .join(&small, ["a"], ["b"])
            .hash(JoinType::Inner)
            .unwrap();
        let (graph, _) = env.build().unwrap();
        let first = graph
            .vertices()
            .iter()
            .find(|v| v.name == joined.vertex_name());
        let second = graph
            .vertices()
            .iter()
            .find(|v| v.name == again.vertex_name());
        let (first, second) = (first.unwrap(), second.unwrap());
        // Both joins would read the 10-row side first.
        assert_eq!((first.read_first, second.read_first), (Some(1), Some(1)));
        assert_eq!(read_first_allowed(&graph, first.id), Some(1));
        assert_eq!(read_first_allowed(&graph, second.id), None);
    }

    #[test]
    fn predicates_keep_fractions_by_shape() {
        let eq = col("a").eq(lit("x"));
        assert_eq!(selectivity(&eq), 0.1);
        let range = col("d").gt_eq(lit(3i64)).and(col("d").lt(lit(9i64)));
        assert!((selectivity(&range) - 1.0 / 9.0).abs() < 1e-12);
        assert_eq!(selectivity(&col("a").lt(col("b"))), 0.5);
        let either = col("a").eq(lit("x")).or(col("a").eq(lit("y")));
        assert!((selectivity(&either) - 0.2).abs() < 1e-12);
    }
}
