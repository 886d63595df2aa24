//! Window joins in SQL: a join of two window TVF results on their window bounds.
//!
//! Flink plans `… JOIN … ON l.window_start = r.window_start AND l.window_end = r.window_end
//! [AND keys]` between two window aggregations (or window TVFs) with the same windows as a
//! window join: each window's rows are joined once, when the watermark passes its end, and
//! then dropped, so the state holds open windows only (a regular join would keep every row
//! forever).
//!
//! The planner records the window bound columns each windowed aggregation outputs (under the
//! name the select list gives them, e.g. `window_start AS starttime`) as [`WindowBound`]s.
//! [`window_join_time`] looks for a start pair and an end pair among a join's equality keys:
//! when both sides' columns are bounds of the same tumbling windows, the join becomes the
//! engine's tumbling window join over the `window_start` columns (all rows of one window share
//! its start, so they fall in the same join window; the equality keys still include the
//! bounds, so pairs never cross windows). An aggregation emits a window's rows before it
//! forwards the watermark that closed the window, so the rows reach the join before the
//! watermark that fires them. Other windows (hopping, cumulating, session) stay regular joins.

use arrow::datatypes::Schema;

use crate::graph::{WINDOW_END_COLUMN, WINDOW_START_COLUMN, WindowKind};

/// Which bound of a window a column holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Bound {
    Start,
    End,
}

/// An output column of a windowed aggregation that holds a window bound.
#[derive(Debug, Clone)]
pub(super) struct WindowBound {
    pub column: String,
    pub bound: Bound,
    pub window: WindowKind,
}

/// The bound a select item projects, if it is `window_start` or `window_end` (aliased or not):
/// `(output name, bound)`.
pub(super) fn projected_bound(item: &sqlparser::ast::SelectItem) -> Option<(String, Bound)> {
    use sqlparser::ast::{Expr, SelectItem};
    let (expr, name) = match item {
        SelectItem::UnnamedExpr(expr) => (expr, None),
        SelectItem::ExprWithAlias { expr, alias } => (expr, Some(alias.value.clone())),
        _ => return None,
    };
    let column = match expr {
        Expr::Identifier(ident) => ident.value.clone(),
        Expr::CompoundIdentifier(parts) => parts.last()?.value.clone(),
        _ => return None,
    };
    let bound = match column.as_str() {
        WINDOW_START_COLUMN => Bound::Start,
        WINDOW_END_COLUMN => Bound::End,
        _ => return None,
    };
    Some((name.unwrap_or(column), bound))
}

/// For a join with equality keys `left_keys[i] = right_keys[i]`: the time columns (left,
/// right) and window size of a tumbling window join, when a key pair joins the window starts
/// and another the window ends of the same tumbling windows on both sides.
pub(super) fn window_join_time(
    bounds: &[WindowBound],
    left: &Schema,
    right: &Schema,
    left_keys: &[String],
    right_keys: &[String],
) -> Option<(String, String, i64)> {
    // Bounds are recorded by name: a name recorded with different windows is ambiguous.
    let bound_of = |column: &str, schema: &Schema| {
        schema.field_with_name(column).ok()?;
        let mut named = bounds.iter().filter(|b| b.column == column);
        let first = named.next()?;
        named
            .all(|b| b.bound == first.bound && b.window == first.window)
            .then_some(first)
    };
    let mut start: Option<(String, String, i64)> = None;
    let mut has_end = false;
    for (l, r) in left_keys.iter().zip(right_keys) {
        let (Some(lb), Some(rb)) = (bound_of(l, left), bound_of(r, right)) else {
            continue;
        };
        let WindowKind::Tumbling { size_ms, offset_ms } = lb.window else {
            continue;
        };
        if lb.bound != rb.bound
            || rb.window
                != (WindowKind::Tumbling {
                    size_ms,
                    offset_ms,
                })
            // The join's windows start at multiples of the size.
            || offset_ms != 0
        {
            continue;
        }
        match lb.bound {
            Bound::Start => start = Some((l.clone(), r.clone(), size_ms)),
            Bound::End => has_end = true,
        }
    }
    start.filter(|_| has_end)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::datatypes::{DataType, Field, TimeUnit};

    use super::*;

    fn schema(names: &[&str]) -> Arc<Schema> {
        Arc::new(Schema::new(
            names
                .iter()
                .map(|n| Field::new(*n, DataType::Timestamp(TimeUnit::Millisecond, None), true))
                .collect::<Vec<_>>(),
        ))
    }

    fn bound(column: &str, bound: Bound, size_ms: i64) -> WindowBound {
        WindowBound {
            column: column.into(),
            bound,
            window: WindowKind::Tumbling {
                size_ms,
                offset_ms: 0,
            },
        }
    }

    #[test]
    fn a_start_and_an_end_pair_of_equal_tumbling_windows_make_a_window_join() {
        let bounds = [
            bound("starttime", Bound::Start, 10_000),
            bound("endtime", Bound::End, 10_000),
            bound("s2", Bound::Start, 10_000),
            bound("e2", Bound::End, 10_000),
        ];
        let (left, right) = (
            schema(&["id", "starttime", "endtime"]),
            schema(&["s2", "e2"]),
        );
        let keys = |l: &[&str], r: &[&str]| {
            window_join_time(
                &bounds,
                &left,
                &right,
                &l.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
                &r.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            )
        };
        assert_eq!(
            keys(&["id", "starttime", "endtime"], &["s2", "s2", "e2"]),
            Some(("starttime".into(), "s2".into(), 10_000))
        );
        // Without the end pair, or start joined with end, it is no window join.
        assert_eq!(keys(&["starttime"], &["s2"]), None);
        assert_eq!(keys(&["starttime", "endtime"], &["e2", "s2"]), None);
    }

    #[test]
    fn different_windows_stay_a_regular_join() {
        let bounds = [
            bound("s1", Bound::Start, 10_000),
            bound("e1", Bound::End, 10_000),
            bound("s2", Bound::Start, 5_000),
            bound("e2", Bound::End, 5_000),
        ];
        let keys = |l: &[&str], r: &[&str]| -> (Vec<String>, Vec<String>) {
            (
                l.iter().map(|s| s.to_string()).collect(),
                r.iter().map(|s| s.to_string()).collect(),
            )
        };
        let (l, r) = keys(&["s1", "e1"], &["s2", "e2"]);
        assert_eq!(
            window_join_time(
                &bounds,
                &schema(&["s1", "e1"]),
                &schema(&["s2", "e2"]),
                &l,
                &r
            ),
            None
        );
    }
}
