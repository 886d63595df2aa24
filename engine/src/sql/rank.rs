//! Flink's Top-N pattern → a rank operator:
//!
//! ```sql
//! SELECT … FROM (
//!   SELECT …, ROW_NUMBER() OVER (PARTITION BY k… ORDER BY c [ASC|DESC] [NULLS FIRST|LAST], …) AS rn
//!   FROM …
//! ) WHERE rn <= N        -- also rn < N, rn = 1, N >= rn, N > rn; other conjuncts filter after
//! ```
//!
//! The inner query is planned without its `ROW_NUMBER` item and with its partition and order
//! expressions as hidden `$rank_*` columns; the stream is hash-partitioned on the partition
//! columns (a constant without `PARTITION BY`) and ranked; the outer select list projects
//! (`*` leaves out the hidden columns). What the rank emits (see `RankStrategy`):
//! - batch mode: the final top N per partition at end of input;
//! - streaming, partitioned by `window_start` and `window_end` (a window aggregation's output):
//!   a window Top-N, final rows per window once the watermark passes the window end;
//! - streaming, `rn = 1` ordered by one TIMESTAMP column and `rn` not selected: a
//!   deduplication (keep first for `ASC`, last for `DESC`), `+I` then `-U`/`+U`;
//! - otherwise a streaming Top-N changelog.
//!
//! `ROW_NUMBER` elsewhere, `RANK`, `DENSE_RANK` and aggregates with `OVER` report "… is not
//! supported yet" at their line and column.

use arrow::datatypes::DataType;
use sqlparser::ast::{
    BinaryOperator, Expr as SqlExpr, Function, FunctionArguments, GroupByExpr, Ident, OrderBySort,
    Query, Select, SelectItem, SetExpr, Spanned, TableFactor, Value, WindowType,
};

use super::{Planner, Rel, split_conjuncts};
use crate::api::DataStream;
use crate::element::ROW_KIND_COLUMN;
use crate::expr::{Expr, ScalarValue, col};
use crate::graph::{RankOrder, RankStrategy, RankWindow, WINDOW_END_COLUMN, WINDOW_START_COLUMN};
use crate::sql::expr::{self as sql_expr, Scope, function_name};
use crate::{Error, Result};

/// "`feature` is not supported yet", at the function's place in the script.
fn not_supported_at(function: &Function, feature: &str) -> Error {
    let start = function.span().start;
    Error::sql(
        format!("line {}, column {}", start.line, start.column),
        format!("{feature} is not supported yet"),
    )
}

/// The first function with an `OVER` clause in `expr`.
fn find_over(expr: &SqlExpr) -> Option<&Function> {
    match expr {
        SqlExpr::Function(function) if function.over.is_some() => Some(function),
        SqlExpr::Function(function) => match &function.args {
            FunctionArguments::List(list) => list.args.iter().find_map(|arg| {
                let text = match arg {
                    sqlparser::ast::FunctionArg::Named { arg, .. }
                    | sqlparser::ast::FunctionArg::ExprNamed { arg, .. }
                    | sqlparser::ast::FunctionArg::Unnamed(arg) => arg,
                };
                match text {
                    sqlparser::ast::FunctionArgExpr::Expr(e) => find_over(e),
                    _ => None,
                }
            }),
            _ => None,
        },
        SqlExpr::BinaryOp { left, right, .. } => find_over(left).or_else(|| find_over(right)),
        SqlExpr::UnaryOp { expr, .. }
        | SqlExpr::Nested(expr)
        | SqlExpr::Cast { expr, .. }
        | SqlExpr::IsNull(expr)
        | SqlExpr::IsNotNull(expr) => find_over(expr),
        _ => None,
    }
}

fn item_expr(item: &SelectItem) -> Option<&SqlExpr> {
    match item {
        SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => Some(e),
        _ => None,
    }
}

/// The error for an `OVER` function outside the Top-N pattern.
fn over_error(function: &Function) -> Error {
    let name = function_name(function);
    let feature = match name.as_str() {
        "ROW_NUMBER" => "ROW_NUMBER() without a filter on it in an enclosing query (SELECT … \
                         FROM (SELECT …, ROW_NUMBER() OVER (…) AS rn FROM …) WHERE rn <= N)"
            .to_string(),
        "RANK" | "DENSE_RANK" => format!("{name}() (only ROW_NUMBER() in a Top-N query)"),
        _ => format!("{name}(…) OVER (…) (OVER aggregates)"),
    };
    not_supported_at(function, &feature)
}

/// The `FROM (subquery)` of `select` when it is its only relation.
fn single_subquery(select: &Select) -> Option<&Query> {
    match select.from.as_slice() {
        [only] if only.joins.is_empty() => match &only.relation {
            TableFactor::Derived {
                lateral: false,
                subquery,
                ..
            } => Some(subquery),
            _ => None,
        },
        _ => None,
    }
}

fn is_name(e: &SqlExpr, name: &str) -> bool {
    match e {
        SqlExpr::Identifier(ident) => ident.value.eq_ignore_ascii_case(name),
        SqlExpr::CompoundIdentifier(parts) => parts
            .last()
            .is_some_and(|p| p.value.eq_ignore_ascii_case(name)),
        SqlExpr::Nested(inner) => is_name(inner, name),
        _ => false,
    }
}

fn integer(e: &SqlExpr) -> Option<i64> {
    match e {
        SqlExpr::Value(v) => match &v.value {
            Value::Number(n, _) => n.parse().ok(),
            _ => None,
        },
        SqlExpr::Nested(inner) => integer(inner),
        _ => None,
    }
}

/// The limit N a conjunct puts on the row number `rn`, if it is a bound on it.
fn rank_bound(e: &SqlExpr, rn: &str, function: &Function) -> Result<Option<i64>> {
    let SqlExpr::BinaryOp { left, op, right } = e else {
        return Ok(None);
    };
    // Normalise to `rn <op> n`.
    let (op, n) = if is_name(left, rn)
        && let Some(n) = integer(right)
    {
        (op.clone(), n)
    } else if is_name(right, rn)
        && let Some(n) = integer(left)
    {
        let flipped = match op {
            BinaryOperator::GtEq => BinaryOperator::LtEq,
            BinaryOperator::Gt => BinaryOperator::Lt,
            BinaryOperator::LtEq => BinaryOperator::GtEq,
            BinaryOperator::Lt => BinaryOperator::Gt,
            other => other.clone(),
        };
        (flipped, n)
    } else {
        return Ok(None);
    };
    match op {
        BinaryOperator::LtEq => Ok(Some(n)),
        BinaryOperator::Lt => Ok(Some(n - 1)),
        BinaryOperator::Eq if n == 1 => Ok(Some(1)),
        _ => Err(not_supported_at(
            function,
            &format!("the filter '{e}' on ROW_NUMBER() (only {rn} <= N, {rn} < N and {rn} = 1)"),
        )),
    }
}

/// The inner query's output column that `e` already is: a plain column name that the inner
/// select list passes through unchanged (by name or with `*`).
fn passed_through(e: &SqlExpr, inner: &Select) -> Option<String> {
    let SqlExpr::Identifier(ident) = e else {
        return None;
    };
    let mut items = inner
        .projection
        .iter()
        .filter(|item| item_expr(item).and_then(find_over).is_none());
    let star = matches!(
        (items.next(), items.next()),
        (Some(SelectItem::Wildcard(_)), None)
    ) && matches!(inner.from.as_slice(), [only] if only.joins.is_empty())
        && group_by_is_empty(inner);
    let listed = inner.projection.iter().any(|item| {
        matches!(item, SelectItem::UnnamedExpr(SqlExpr::Identifier(i)) if i.value == ident.value)
    });
    (star || listed).then(|| ident.value.clone())
}

/// Whether `expr` names the column `name` anywhere (a conservative textual check).
fn mentions(expr: &SqlExpr, name: &str) -> bool {
    expr.to_string()
        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .any(|word| word.eq_ignore_ascii_case(name))
}

impl Planner<'_> {
    /// Plans `select` as the outer query of a Top-N, or returns `None` when it is not one.
    /// An `OVER` function in `select`'s own list is an error.
    pub(super) fn plan_rank(&mut self, select: &Select) -> Result<Option<Rel>> {
        if let Some(function) = select
            .projection
            .iter()
            .filter_map(item_expr)
            .find_map(find_over)
        {
            return Err(over_error(function));
        }
        let Some(query) = single_subquery(select) else {
            return Ok(None);
        };
        if query.with.is_some()
            || query.order_by.is_some()
            || query.limit_clause.is_some()
            || query.fetch.is_some()
        {
            return Ok(None);
        }
        let SetExpr::Select(inner) = query.body.as_ref() else {
            return Ok(None);
        };
        let Some((index, function, rn)) =
            inner
                .projection
                .iter()
                .enumerate()
                .find_map(|(i, item)| match item {
                    SelectItem::ExprWithAlias {
                        expr: SqlExpr::Function(f),
                        alias,
                    } if f.over.is_some() && function_name(f) == "ROW_NUMBER" => {
                        Some((i, f, alias.value.clone()))
                    }
                    _ => None,
                })
        else {
            return Ok(None);
        };

        // The bound on rn in the outer WHERE; the other conjuncts filter the rank's output.
        let mut conjuncts = Vec::new();
        if let Some(selection) = &select.selection {
            split_conjuncts(selection, &mut conjuncts);
        }
        let mut limit: Option<i64> = None;
        let mut rest = Vec::new();
        for conjunct in conjuncts {
            match rank_bound(&conjunct, &rn, function)? {
                Some(n) => limit = Some(limit.map_or(n, |l| l.min(n))),
                None => rest.push(conjunct),
            }
        }
        let Some(limit) = limit else {
            return Err(over_error(function));
        };
        if limit < 1 {
            return Err(not_supported_at(
                function,
                &format!("a Top-N that keeps no rows ({rn} <= {limit})"),
            ));
        }
        let has_args = match &function.args {
            FunctionArguments::List(list) => !list.args.is_empty(),
            FunctionArguments::None => false,
            FunctionArguments::Subquery(_) => true,
        };
        if has_args {
            return Err(not_supported_at(function, "ROW_NUMBER with arguments"));
        }
        let Some(WindowType::WindowSpec(window)) = &function.over else {
            return Err(not_supported_at(function, "a named window in OVER"));
        };
        if window.window_frame.is_some() {
            return Err(not_supported_at(
                function,
                "a window frame for ROW_NUMBER()",
            ));
        }
        if window.order_by.is_empty() {
            return Err(not_supported_at(
                function,
                "ROW_NUMBER() without ORDER BY in OVER",
            ));
        }
        if !group_by_is_empty(select) || select.having.is_some() || select.distinct.is_some() {
            return Err(not_supported_at(
                function,
                "aggregating or DISTINCT over the result of a Top-N",
            ));
        }

        let wants_rn = select.projection.iter().any(|item| match item {
            SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..) => true,
            other => item_expr(other).is_some_and(|e| mentions(e, &rn)),
        }) || rest.iter().any(|e| mentions(e, &rn));
        if let [only] = inner.from.as_slice()
            && only.joins.is_empty()
            && matches!(only.relation, TableFactor::TableFunction { .. })
            && group_by_is_empty(inner)
        {
            let ranked =
                self.plan_window_tvf_rank(inner, index, function, &rn, limit as u64, wants_rn)?;
            return self.finish_rank(ranked, select, rest).map(Some);
        }

        // The inner query without ROW_NUMBER, plus the partition and order columns.
        let mut planned = (**inner).clone();
        planned.projection.remove(index);
        let mut partition_keys = Vec::new();
        let mut window_columns = (None, None);
        let hidden = |name: String, expr: SqlExpr| SelectItem::ExprWithAlias {
            expr,
            alias: Ident::new(name),
        };
        // A column of the inner output is used as it is; another expression becomes a hidden
        // column.
        let mut column_for = |prefix: &str, i: usize, e: &SqlExpr| {
            passed_through(e, inner).unwrap_or_else(|| {
                let name = format!("$rank_{prefix}{i}");
                planned.projection.push(hidden(name.clone(), e.clone()));
                name
            })
        };
        for (i, e) in window.partition_by.iter().enumerate() {
            let name = column_for("p", i, e);
            if is_name(e, WINDOW_START_COLUMN) {
                window_columns.0 = Some(name.clone());
            } else if is_name(e, WINDOW_END_COLUMN) {
                window_columns.1 = Some(name.clone());
            }
            if !partition_keys.contains(&name) {
                partition_keys.push(name);
            }
        }
        if partition_keys.is_empty() {
            // A global Top-N: one partition.
            let zero = SqlExpr::Value(Value::Number("0".into(), false).into());
            partition_keys.push(column_for("p", 0, &zero));
        }
        let mut order = Vec::new();
        for (i, o) in window.order_by.iter().enumerate() {
            let descending = match &o.options.sort {
                None | Some(OrderBySort::Asc) => false,
                Some(OrderBySort::Desc) => true,
                Some(OrderBySort::Using(_)) => {
                    return Err(not_supported_at(function, "ORDER BY … USING in OVER"));
                }
            };
            let name = column_for("o", i, &o.expr);
            order.push(RankOrder {
                column: name,
                descending,
                // Flink: NULLS FIRST for ASC, NULLS LAST for DESC unless stated.
                nulls_first: o.options.nulls_first.unwrap_or(!descending),
            });
        }
        let rel = self.plan_select(&planned)?;
        let input = self.settle(rel)?;
        let schema = input.schema();
        if schema.index_of(ROW_KIND_COLUMN).is_ok() {
            return Err(not_supported_at(
                function,
                "ROW_NUMBER() over an updating input (an aggregation or outer join)",
            ));
        }

        let is_timestamp = |column: &str| {
            schema
                .field_with_name(column)
                .is_ok_and(|f| matches!(f.data_type(), DataType::Timestamp(_, _)))
        };
        let window = match window_columns {
            (Some(start), Some(end)) if self.streaming => Some(RankWindow::columns(start, end)),
            _ => None,
        };
        let strategy = if !self.streaming || window.is_some() {
            RankStrategy::Final
        } else if limit == 1 && !wants_rn && order.len() == 1 && is_timestamp(&order[0].column) {
            RankStrategy::Deduplicate
        } else {
            RankStrategy::Changelog
        };
        let ranked = input.key_by(partition_keys).rank(
            order,
            limit as u64,
            wants_rn.then_some(rn.as_str()),
            strategy,
            window,
        )?;
        self.finish_rank(ranked, select, rest).map(Some)
    }

    /// The outer query over a rank's output: the other conditions of its `WHERE`, then its
    /// select list.
    fn finish_rank(
        &mut self,
        ranked: DataStream,
        select: &Select,
        rest: Vec<SqlExpr>,
    ) -> Result<Rel> {
        let mut stream = ranked;
        if let Some(predicate) = rest.into_iter().reduce(|l, r| SqlExpr::BinaryOp {
            left: Box::new(l),
            op: BinaryOperator::And,
            right: Box::new(r),
        }) {
            stream = stream.filter(sql_expr::convert(&predicate, &Scope::default())?)?;
        }
        let stream = self.project_items(&stream, &select.projection, &[], &[])?;
        Ok(Rel {
            stream,
            window: None,
        })
    }

    /// A Top-N right after a window TVF (`FROM TABLE(TUMBLE(…))` without GROUP BY): the rank
    /// assigns the windows itself and adds `window_start`, `window_end` and `window_time`; the
    /// inner select list then projects its output. Partition and order columns are plain
    /// columns of the table (and `window_start`, `window_end`, both required).
    fn plan_window_tvf_rank(
        &mut self,
        inner: &Select,
        index: usize,
        function: &Function,
        rn: &str,
        limit: u64,
        wants_rn: bool,
    ) -> Result<DataStream> {
        let Some(WindowType::WindowSpec(window)) = &function.over else {
            return Err(not_supported_at(function, "a named window in OVER"));
        };
        let factor = &inner.from[0].relation;
        let rel = self.plan_table_factor(factor)?;
        let Some(tvf) = rel.window else {
            return Err(not_supported_at(
                function,
                "this table function before a Top-N",
            ));
        };
        if tvf.processing_time {
            return Err(not_supported_at(
                function,
                "window Top-N over a processing-time (PROCTIME()) window",
            ));
        }
        let mut stream = rel.stream;
        if let Some(predicate) = &inner.selection {
            stream = stream.filter(sql_expr::convert(predicate, &Scope::default())?)?;
        }
        let schema = stream.schema();
        let plain = |e: &SqlExpr, what: &str| -> Result<String> {
            match e {
                SqlExpr::Identifier(ident) if schema.index_of(&ident.value).is_ok() => {
                    Ok(ident.value.clone())
                }
                other => Err(not_supported_at(
                    function,
                    &format!(
                        "{what} '{other}' in a Top-N over a window TVF (only columns of the \
                         table, and window_start, window_end)"
                    ),
                )),
            }
        };
        let (mut has_start, mut has_end) = (false, false);
        let mut keys = Vec::new();
        for e in &window.partition_by {
            if is_name(e, WINDOW_START_COLUMN) {
                has_start = true;
            } else if is_name(e, WINDOW_END_COLUMN) {
                has_end = true;
            } else {
                keys.push(plain(e, "PARTITION BY")?);
            }
        }
        if !(has_start && has_end) {
            return Err(not_supported_at(
                function,
                "a Top-N over a window TVF that does not PARTITION BY window_start, window_end",
            ));
        }
        let mut order = Vec::new();
        for o in &window.order_by {
            let descending = matches!(o.options.sort, Some(OrderBySort::Desc));
            if matches!(o.options.sort, Some(OrderBySort::Using(_))) {
                return Err(not_supported_at(function, "ORDER BY … USING in OVER"));
            }
            order.push(RankOrder {
                column: plain(&o.expr, "ORDER BY")?,
                descending,
                nulls_first: o.options.nulls_first.unwrap_or(!descending),
            });
        }
        if keys.is_empty() {
            // One partition per window.
            let mut columns: Vec<(String, Expr)> = schema
                .fields()
                .iter()
                .map(|f| (f.name().clone(), col(f.name())))
                .collect();
            columns.push(("$rank_p0".into(), Expr::Literal(ScalarValue::Int32(0))));
            stream = stream.project(columns)?;
            keys.push("$rank_p0".into());
        }
        let ranked = stream.key_by(keys).rank(
            order,
            limit,
            wants_rn.then_some(rn),
            RankStrategy::Final,
            Some(RankWindow::Assign {
                kind: tvf.kind,
                time_column: tvf.time_column,
            }),
        )?;
        // The inner select list over the rank's output (`*` includes the row number).
        let mut items = inner.projection.clone();
        items.remove(index);
        let has_star = items.iter().any(|i| {
            matches!(
                i,
                SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..)
            )
        });
        if wants_rn && !has_star {
            items.push(SelectItem::UnnamedExpr(SqlExpr::Identifier(Ident::new(rn))));
        }
        self.project_items(&ranked, &items, &[], &[])
    }
}

fn group_by_is_empty(select: &Select) -> bool {
    matches!(&select.group_by, GroupByExpr::Expressions(exprs, _) if exprs.is_empty())
}
