//! `ORDER BY`, `OFFSET` and `LIMIT` / `FETCH FIRST n ROWS ONLY` of a query.
//!
//! An `ORDER BY` item is, as in Flink, an ordinal of the select list (`ORDER BY 2`), the alias
//! or name of an output column, or any expression over the `FROM` clause (also one not in the
//! select list). The latter is computed as a hidden column of the projection, sorted on, and
//! dropped by the sort itself. Over a `UNION` or `VALUES`, only output columns and ordinals
//! may be used.
//!
//! Batch mode sorts with [`DataStream::sort`] (a local sort or top-K per subtask, then one
//! final merge). Streaming mode takes a `LIMIT` without `ORDER BY` (the first rows to arrive;
//! the result stays insert-only) and an `ORDER BY` that starts with an ascending time attribute
//! (an event-time sort, emitting rows as the watermark passes them); it rejects, as Flink does,
//! an `ORDER BY` without `LIMIT` whose first key is not an ascending time attribute. An
//! `ORDER BY … LIMIT` in streaming mode is a global Top-N with an updating result.

use sqlparser::ast::{
    Expr as SqlExpr, Ident, LimitClause, OrderByExpr, OrderByKind, OrderBySort, Query, SelectItem,
    SetExpr, Spanned, Value,
};

use super::{Planner, Rel, has_row_kind, unsupported};
use crate::api::DataStream;
use crate::element::ROW_KIND_COLUMN;
use crate::expr::{Expr, col, lit};
use crate::graph::{RankOrder, RankStrategy, SortKey};
use crate::sql::catalog::Relation;
use crate::{Error, Result};

/// The prefix of hidden sort columns added to a select list.
const HIDDEN_PREFIX: &str = "$order";
/// The constant partition column of a streaming `ORDER BY … LIMIT` (a global Top-N).
const TOP_N_PARTITION: &str = "$order_partition";
/// The rank column of a streaming Top-N with an `OFFSET`.
const TOP_N_RANK: &str = "$order_rank";

/// How an `ORDER BY` item names its column before the query is planned.
enum Target {
    /// 1-based position in the output.
    Ordinal(usize, Box<SqlExpr>),
    /// An output column's name.
    Name(String),
}

/// An error at an expression's position (`line l, column c`).
fn at(expr: &impl Spanned, message: String) -> Error {
    let start = expr.span().start;
    if start.line == 0 {
        return Error::expr(message);
    }
    Error::sql(
        format!("line {}, column {}", start.line, start.column),
        message,
    )
}

/// A non-negative integer literal of `LIMIT`, `OFFSET` or `FETCH`.
fn count(expr: &SqlExpr, clause: &str) -> Result<u64> {
    match expr {
        SqlExpr::Value(v) => match &v.value {
            Value::Number(n, _) => n.parse::<u64>().ok(),
            _ => None,
        },
        _ => None,
    }
    .ok_or_else(|| {
        at(
            expr,
            format!("{clause} expects a non-negative integer literal, found '{expr}'"),
        )
    })
}

impl Planner<'_> {
    /// Plans `query.body` with its `ORDER BY`, `OFFSET` and `LIMIT`.
    pub(super) fn plan_ordered(&mut self, query: &Query) -> Result<Rel> {
        let (offset, fetch) = Self::offset_fetch(query)?;
        let items: &[OrderByExpr] = match query.order_by.as_ref().map(|o| &o.kind) {
            None => &[],
            Some(OrderByKind::Expressions(items)) => items,
            Some(OrderByKind::All(_)) => return Err(unsupported("ORDER BY ALL")),
        };
        for item in items {
            if item.with_fill.is_some() {
                return Err(at(
                    &item.expr,
                    "ORDER BY … WITH FILL is not supported".into(),
                ));
            }
            if let Some(OrderBySort::Using(_)) = item.options.sort {
                return Err(at(&item.expr, "ORDER BY … USING is not supported".into()));
            }
        }
        // Streaming: an `ORDER BY … LIMIT` is a global Top-N (an updating result, Flink's
        // SortLimit); an `ORDER BY` alone only an event-time sort (Flink's temporal sort).
        let top_n = self.streaming && !items.is_empty() && fetch.is_some();
        let event_time = self.streaming && !items.is_empty() && !top_n;
        if event_time && let Some(error) = self.streaming_order_error(items, offset > 0) {
            return Err(error);
        }
        // Targets of the ORDER BY items, hidden columns added to a SELECT.
        let mut targets = Vec::with_capacity(items.len());
        let mut hidden: Vec<SelectItem> = Vec::new();
        let select = match query.body.as_ref() {
            SetExpr::Select(select) => Some(select.as_ref()),
            _ => None,
        };
        for item in items {
            let target = match (&item.expr, select) {
                (SqlExpr::Value(v), _) if matches!(v.value, Value::Number(..)) => {
                    let n = count(&item.expr, "ORDER BY")?;
                    Target::Ordinal(n as usize, Box::new(item.expr.clone()))
                }
                (SqlExpr::Identifier(ident), Some(select))
                    if output_name(&select.projection, &ident.value).is_some() =>
                {
                    Target::Name(output_name(&select.projection, &ident.value).unwrap_or_default())
                }
                (SqlExpr::Identifier(ident), None) => Target::Name(ident.value.clone()),
                (other, Some(select)) => {
                    if select.distinct.is_some() {
                        return Err(at(
                            other,
                            format!(
                                "ORDER BY expression '{other}' must appear in the select list \
                                 of a SELECT DISTINCT"
                            ),
                        ));
                    }
                    let name = format!("{HIDDEN_PREFIX}{}", hidden.len());
                    hidden.push(SelectItem::ExprWithAlias {
                        expr: other.clone(),
                        alias: Ident::new(&name),
                    });
                    Target::Name(name)
                }
                (other, None) => {
                    return Err(at(
                        other,
                        format!(
                            "ORDER BY expression '{other}' must be a column or an ordinal of \
                             the query's result"
                        ),
                    ));
                }
            };
            targets.push(target);
        }
        let rel = match select {
            Some(select) if !hidden.is_empty() => {
                let mut extended = select.clone();
                extended.projection.extend(hidden.iter().cloned());
                self.plan_select(&extended)?
            }
            _ => self.plan_set_expr(&query.body)?,
        };
        let stream = self.settle(rel)?;
        let schema = stream.schema();
        if has_row_kind(&schema) {
            return Err(unsupported(
                "ORDER BY or LIMIT over an updating result (an outer join or an aggregation \
                 in streaming mode)",
            ));
        }
        let visible: Vec<String> = schema
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .filter(|n| hidden.is_empty() || !n.starts_with(HIDDEN_PREFIX))
            .collect();
        let mut keys = Vec::with_capacity(items.len());
        for (item, target) in items.iter().zip(targets) {
            let column = match target {
                Target::Ordinal(n, expr) => match n.checked_sub(1).and_then(|i| visible.get(i)) {
                    Some(name) => name.clone(),
                    None => {
                        return Err(at(
                            expr.as_ref(),
                            format!(
                                "ORDER BY position {n} is not in the select list (1 to {})",
                                visible.len()
                            ),
                        ));
                    }
                },
                Target::Name(name) => {
                    if schema.index_of(&name).is_err() {
                        return Err(at(
                            &item.expr,
                            format!(
                                "unknown column '{name}' in ORDER BY (available: {})",
                                visible.join(", ")
                            ),
                        ));
                    }
                    name
                }
            };
            let descending = matches!(item.options.sort, Some(OrderBySort::Desc));
            let key = SortKey::new(column, descending);
            keys.push(match item.options.nulls_first {
                Some(first) => key.with_nulls_first(first),
                None => key,
            });
        }
        if top_n {
            let fetch = fetch.unwrap_or(u64::MAX);
            return self.streaming_top_n(stream, keys, offset, fetch, &visible);
        }
        let output = (!hidden.is_empty()).then_some(visible);
        let sorted = if event_time {
            stream.sort_by_event_time(keys, output)?
        } else {
            stream.sort(keys, offset, fetch, output)?
        };
        Ok(Rel {
            stream: sorted,
            window: None,
        })
    }

    /// `OFFSET n`, `LIMIT m`, `FETCH FIRST m ROWS ONLY`.
    fn offset_fetch(query: &Query) -> Result<(u64, Option<u64>)> {
        let (mut offset, mut fetch) = (0, None);
        match &query.limit_clause {
            None => {}
            Some(LimitClause::LimitOffset {
                limit,
                offset: off,
                limit_by,
            }) => {
                if let Some(first) = limit_by.first() {
                    return Err(at(first, "LIMIT … BY is not supported".into()));
                }
                if let Some(limit) = limit {
                    fetch = Some(count(limit, "LIMIT")?);
                }
                if let Some(off) = off {
                    offset = count(&off.value, "OFFSET")?;
                }
            }
            Some(LimitClause::OffsetCommaLimit { offset: off, limit }) => {
                offset = count(off, "OFFSET")?;
                fetch = Some(count(limit, "LIMIT")?);
            }
        }
        if let Some(f) = &query.fetch {
            if f.with_ties || f.percent {
                return Err(unsupported("FETCH … WITH TIES / PERCENT"));
            }
            if fetch.is_some() {
                return Err(Error::expr("a query has either LIMIT or FETCH, not both"));
            }
            fetch = Some(match &f.quantity {
                Some(q) => count(q, "FETCH")?,
                None => 1,
            });
        }
        Ok((offset, fetch))
    }

    /// `ORDER BY keys OFFSET offset LIMIT fetch` in streaming mode: a rank over one partition
    /// keeping the first `offset + fetch` rows, as a changelog (`+I` for a row that enters
    /// the result, `-D` for the one it pushes out). With an offset, the rank numbers are kept
    /// so the first `offset` ranks can be filtered out: every change of a rank's row is then
    /// a `-U`/`+U` pair of that rank, and filtering by rank keeps the changelog consistent.
    fn streaming_top_n(
        &mut self,
        stream: DataStream,
        keys: Vec<SortKey>,
        offset: u64,
        fetch: u64,
        visible: &[String],
    ) -> Result<Rel> {
        if fetch == 0 {
            return Err(Error::expr(
                "LIMIT 0 in streaming mode gives an empty result; remove the query instead",
            ));
        }
        let schema = stream.schema();
        let mut columns: Vec<(String, Expr)> = schema
            .fields()
            .iter()
            .map(|f| (f.name().clone(), col(f.name())))
            .collect();
        columns.push((TOP_N_PARTITION.to_string(), lit(0i32)));
        let order = keys
            .into_iter()
            .map(|k| RankOrder {
                column: k.column,
                descending: k.descending,
                nulls_first: k.nulls_first,
            })
            .collect();
        let limit = offset.checked_add(fetch).ok_or_else(|| {
            Error::expr(format!("OFFSET {offset} + LIMIT {fetch} is out of range"))
        })?;
        let rank_column = (offset > 0).then_some(TOP_N_RANK);
        let mut ranked = stream.project(columns)?.key_by([TOP_N_PARTITION]).rank(
            order,
            limit,
            rank_column,
            RankStrategy::Changelog,
            None,
        )?;
        if offset > 0 {
            ranked = ranked.filter(col(TOP_N_RANK).gt(lit(offset as i64)))?;
        }
        let mut output = vec![ROW_KIND_COLUMN];
        output.extend(visible.iter().map(String::as_str));
        Ok(Rel {
            stream: ranked.select(&output)?,
            window: None,
        })
    }

    /// The error for an `ORDER BY` without `LIMIT` in streaming mode, if any: Flink's for a
    /// first key that is not an ascending time attribute, and for an `OFFSET` alone.
    fn streaming_order_error(&self, items: &[OrderByExpr], limited: bool) -> Option<Error> {
        let first = &items[0];
        let ascending = !matches!(first.options.sort, Some(OrderBySort::Desc));
        let column = match &first.expr {
            SqlExpr::Identifier(ident) => Some(ident.value.clone()),
            SqlExpr::CompoundIdentifier(parts) => parts.last().map(|p| p.value.clone()),
            _ => None,
        };
        let is_time_attribute = column.is_some_and(|c| self.is_time_attribute(&c));
        if !is_time_attribute || !ascending {
            return Some(at(
                &first.expr,
                "Sort on a non-time-attribute field is not supported (in streaming mode, \
                 ORDER BY must start with an ascending time attribute; use batch mode to sort \
                 a bounded table)"
                    .into(),
            ));
        }
        if limited {
            return Some(at(
                &first.expr,
                "OFFSET without LIMIT in streaming mode is not supported (add a LIMIT for a \
                 streaming Top-N)"
                    .into(),
            ));
        }
        None
    }

    /// Whether `column` is an event-time attribute: the watermark column of a catalog table, or
    /// a window TVF's `window_time`.
    fn is_time_attribute(&self, column: &str) -> bool {
        column.eq_ignore_ascii_case("window_time")
            || self.catalog.names().iter().any(|name| {
                matches!(self.catalog.relation(name), Ok(Relation::Table(t))
                    if t.watermark.as_ref().is_some_and(|w| w.column == column))
            })
    }
}

/// The output column an identifier names in a select list: an alias, or an unaliased column
/// of that name.
fn output_name(items: &[SelectItem], name: &str) -> Option<String> {
    items.iter().find_map(|item| match item {
        SelectItem::ExprWithAlias { alias, .. } if alias.value == name => Some(alias.value.clone()),
        SelectItem::UnnamedExpr(SqlExpr::Identifier(ident)) if ident.value == name => {
            Some(ident.value.clone())
        }
        SelectItem::UnnamedExpr(SqlExpr::CompoundIdentifier(parts))
            if parts.last().is_some_and(|p| p.value == name) =>
        {
            Some(name.to_string())
        }
        _ => None,
    })
}
