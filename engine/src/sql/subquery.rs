//! Subqueries in `WHERE` and `HAVING`, decorrelated into joins (batch mode).
//!
//! Each conjunct of the predicate that is a subquery becomes a subquery join
//! ([`JoinKind::Subquery`](crate::graph::JoinKind)) of the stream so far (left) with the
//! planned subquery (right):
//! - `[NOT] EXISTS (…)` → a semi (anti) join on the correlation keys;
//! - `x [NOT] IN (SELECT v …)` → a semi join on `x = v` and the correlation keys; `NOT IN` is
//!   a null-aware anti join (uncorrelated only) at parallelism 1;
//! - a scalar subquery anywhere in a conjunct → a single join (at most one right row per left
//!   row) that adds the subquery's value as a column; the conjunct then reads that column.
//!   Correlated: the subquery's aggregates are grouped by its correlation keys, and a bare
//!   `COUNT` gets 0 back for left rows without partners (the COUNT bug).
//!
//! A correlated scalar subquery with an aggregate first semi-joins its rows with the outer
//! rows' first correlation key (a "magic set"), so that it aggregates only the groups some
//! outer row asks for.
//!
//! Correlation: a name inside the subquery that its own `FROM` tables (catalog tables) do not
//! have but the outer `FROM` does is an outer reference. A subquery conjunct `inner = outer`
//! (an outer column) is a join key; other conjuncts with outer references form the residual
//! predicate of a semi or anti join, evaluated on the matched pairs. The inner expressions the
//! join reads are projected by the subquery under fresh `$sq<n>_…` names; the helper columns
//! are projected away after the filter.
//!
//! Called by the planner where it applies `WHERE` and `HAVING` ([`Planner::filter_predicate`]).

use arrow::datatypes::SchemaRef;
use sqlparser::ast::{
    BinaryOperator, Expr as SqlExpr, FunctionArg, FunctionArgExpr, FunctionArguments, GroupByExpr,
    Ident, InTarget, Query, Select, SelectItem, SetExpr, TableFactor,
};
use sqlparser::dialect::GenericDialect;
use sqlparser::parser::Parser;

use super::{Planner, collect_aggregates, object_name, split_conjuncts, widen_keys};
use crate::api::DataStream;
use crate::element::ROW_KIND_COLUMN;
use crate::expr::{Expr, Function, ScalarValue, call, col};
use crate::graph::SubqueryJoinType;
use crate::sql::catalog::Relation;
use crate::sql::expr::{self as sql_expr, QualifiedColumn, Scope, resolve_name};
use crate::{Error, Result};

/// What a subquery's `WHERE` splits into against the outer query.
struct Correlation {
    /// Conjuncts on the subquery's own columns: its `WHERE`.
    local: Vec<SqlExpr>,
    /// `outer column = inner expression` conjuncts: the join keys.
    keys: Vec<(String, SqlExpr)>,
    /// Other conjuncts with outer references, rewritten to the columns of the join's pairs.
    residual: Vec<SqlExpr>,
    /// The inner expressions the residual reads, with the names the subquery projects them as.
    residual_inputs: Vec<(String, SqlExpr)>,
}

/// The column names the subquery's own `FROM` provides, when all of them are known.
struct InnerNames {
    qualifiers: Vec<String>,
    columns: Vec<String>,
}

fn not_supported(what: &str, subquery: &str) -> Error {
    Error::expr(format!("not supported yet: {what} (subquery {subquery})"))
}

/// Whether `expr` holds a subquery (not looking inside nested subqueries' own predicates).
fn has_subquery(expr: &SqlExpr) -> bool {
    let mut found = false;
    let mut probe = expr.clone();
    visit(&mut probe, &mut |e| {
        if matches!(
            e,
            SqlExpr::Subquery(_)
                | SqlExpr::Exists { .. }
                | SqlExpr::In {
                    target: InTarget::Subquery(_),
                    ..
                }
        ) {
            found = true;
        }
    });
    found
}

/// Calls `f` on every node of `expr`, children first; does not enter subqueries.
fn visit(expr: &mut SqlExpr, f: &mut dyn FnMut(&mut SqlExpr)) {
    match expr {
        SqlExpr::BinaryOp { left, right, .. } => {
            visit(left, f);
            visit(right, f);
        }
        SqlExpr::UnaryOp { expr: e, .. }
        | SqlExpr::Nested(e)
        | SqlExpr::IsNull(e)
        | SqlExpr::IsNotNull(e)
        | SqlExpr::Cast { expr: e, .. }
        | SqlExpr::Extract { expr: e, .. } => visit(e, f),
        SqlExpr::Between {
            expr: e, low, high, ..
        } => {
            visit(e, f);
            visit(low, f);
            visit(high, f);
        }
        SqlExpr::Like {
            expr: e, pattern, ..
        }
        | SqlExpr::ILike {
            expr: e, pattern, ..
        } => {
            visit(e, f);
            visit(pattern, f);
        }
        SqlExpr::In {
            expr: e, target, ..
        } => {
            visit(e, f);
            if let InTarget::List(list) = target {
                list.iter_mut().for_each(|e| visit(e, f));
            }
        }
        SqlExpr::Substring {
            expr: e,
            substring_from,
            substring_for,
            ..
        } => {
            visit(e, f);
            for e in [substring_from, substring_for].into_iter().flatten() {
                visit(e, f);
            }
        }
        SqlExpr::Case {
            operand,
            conditions,
            else_result,
            ..
        } => {
            for e in [operand, else_result].into_iter().flatten() {
                visit(e, f);
            }
            for when in conditions {
                visit(&mut when.condition, f);
                visit(&mut when.result, f);
            }
        }
        SqlExpr::Function(function) => {
            if let FunctionArguments::List(list) = &mut function.args {
                for arg in &mut list.args {
                    match arg {
                        FunctionArg::Unnamed(FunctionArgExpr::Expr(e))
                        | FunctionArg::Named {
                            arg: FunctionArgExpr::Expr(e),
                            ..
                        }
                        | FunctionArg::ExprNamed {
                            arg: FunctionArgExpr::Expr(e),
                            ..
                        } => visit(e, f),
                        _ => {}
                    }
                }
            }
        }
        _ => {}
    }
    f(expr);
}

fn and_all(conjuncts: Vec<SqlExpr>) -> Option<SqlExpr> {
    conjuncts.into_iter().reduce(|l, r| SqlExpr::BinaryOp {
        left: Box::new(l),
        op: BinaryOperator::And,
        right: Box::new(r),
    })
}

fn alias(expr: SqlExpr, name: &str) -> SelectItem {
    SelectItem::ExprWithAlias {
        expr,
        alias: Ident::new(name),
    }
}

/// A name `$sq<n>` no column of `schema` starts with.
fn fresh_prefix(schema: &SchemaRef) -> String {
    (0..)
        .map(|n| format!("$sq{n}"))
        .find(|p| !schema.fields().iter().any(|f| f.name().starts_with(p)))
        .unwrap_or_default()
}

/// The subquery's `SELECT`, refusing shapes the decorrelation does not handle.
fn plain_select<'q>(query: &'q Query, text: &str) -> Result<&'q Select> {
    if query.order_by.is_some() || query.limit_clause.is_some() || query.fetch.is_some() {
        return Err(not_supported("ORDER BY or LIMIT in a subquery", text));
    }
    match query.body.as_ref() {
        SetExpr::Select(select) => Ok(select),
        other => Err(not_supported(
            &format!("a subquery that is not a SELECT ('{other}')"),
            text,
        )),
    }
}

/// The one expression a scalar or `IN` subquery selects.
fn selected_value(select: &Select, text: &str) -> Result<SqlExpr> {
    match select.projection.as_slice() {
        [SelectItem::UnnamedExpr(e)] | [SelectItem::ExprWithAlias { expr: e, .. }] => Ok(e.clone()),
        _ => Err(Error::expr(format!(
            "a scalar or IN subquery must select exactly one column: {text}"
        ))),
    }
}

fn with_body(query: &Query, select: Select) -> Query {
    Query {
        body: Box::new(SetExpr::Select(Box::new(select))),
        ..query.clone()
    }
}

/// `stream` with a constant key column `name` (for an uncorrelated subquery, every left row
/// meets the one right row; for a cross join, every row meets every row).
pub(super) fn with_constant(stream: &DataStream, name: &str) -> Result<DataStream> {
    let mut columns: Vec<(String, Expr)> = stream
        .schema()
        .fields()
        .iter()
        .map(|f| (f.name().clone(), col(f.name())))
        .collect();
    columns.push((name.to_string(), Expr::Literal(ScalarValue::Int32(1))));
    stream.project(columns)
}

impl Planner<'_> {
    /// Filters `stream` by `predicate` (WHERE or HAVING), planning its subqueries as joins.
    /// `substitutions` and `names` resolve the predicate's names as the caller's scope does;
    /// `outer` names the columns a correlated subquery may reference (empty: none).
    pub(super) fn filter_predicate(
        &mut self,
        stream: DataStream,
        predicate: &SqlExpr,
        substitutions: &[(SqlExpr, String)],
        names: &[QualifiedColumn],
        outer: &[QualifiedColumn],
    ) -> Result<DataStream> {
        // A predicate without subqueries filters (and pushes down into the scans).
        let plain_filter = |stream: &DataStream, predicate: &SqlExpr| {
            let scope = Scope {
                substitutions,
                names,
            };
            super::predicate_pushdown::filter(stream, sql_expr::convert(predicate, &scope)?)
        };
        let mut conjuncts = Vec::new();
        split_conjuncts(predicate, &mut conjuncts);
        if !conjuncts.iter().any(has_subquery) {
            return plain_filter(&stream, predicate);
        }
        let columns: Vec<String> = stream
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        // Conjuncts without a subquery filter the rows before any subquery join sees them: a
        // join then builds or probes only the rows that can pass (TPC-H Q4's date range over
        // `orders` before its `EXISTS`).
        let (plain, conjuncts): (Vec<SqlExpr>, Vec<SqlExpr>) =
            conjuncts.into_iter().partition(|c| !has_subquery(c));
        let mut stream = stream;
        if let Some(plain) = and_all(plain) {
            stream = plain_filter(&stream, &plain)?;
        }
        let mut substitutions = substitutions.to_vec();
        let mut rest = Vec::new();
        for conjunct in conjuncts {
            match &conjunct {
                SqlExpr::Exists { subquery, negated } => {
                    let text = format!("{}EXISTS ({subquery})", if *negated { "NOT " } else { "" });
                    stream = self.semi_join(stream, subquery, None, *negated, outer, &text)?;
                }
                SqlExpr::In {
                    expr,
                    target: InTarget::Subquery(subquery),
                    negated,
                    ..
                } => {
                    let text = conjunct.to_string();
                    stream =
                        self.semi_join(stream, subquery, Some(expr), *negated, outer, &text)?;
                }
                // A scalar subquery somewhere in the conjunct.
                other => {
                    let mut probe = other.clone();
                    let mut scalars = Vec::new();
                    let mut nested = false;
                    visit(&mut probe, &mut |e| match e {
                        SqlExpr::Subquery(q) => scalars.push(q.clone()),
                        SqlExpr::Exists { .. } | SqlExpr::In { .. } => nested = true,
                        _ => {}
                    });
                    if nested {
                        return Err(not_supported(
                            "EXISTS or IN inside OR, NOT or another expression; use it as a \
                             condition of its own",
                            &other.to_string(),
                        ));
                    }
                    for query in scalars {
                        let (joined, column) = self.scalar_join(stream, &query, outer)?;
                        stream = joined;
                        substitutions.push((SqlExpr::Subquery(query), column));
                    }
                    rest.push(conjunct);
                }
            }
        }
        if let Some(rest) = and_all(rest) {
            let scope = Scope {
                substitutions: &substitutions,
                names,
            };
            stream = stream.filter(sql_expr::convert(&rest, &scope)?)?;
        }
        if stream.schema().fields().len() != columns.len() {
            stream = stream.project(columns.iter().map(|c| (c.clone(), col(c))))?;
        }
        Ok(stream)
    }

    /// Whether `query` reads a stream bound by name (`Planner::bound`): a magic set, which
    /// filters wherever it is applied first.
    pub(super) fn reads_bound(&self, query: &Query) -> bool {
        let SetExpr::Select(select) = query.body.as_ref() else {
            return false;
        };
        matches!(select.from.as_slice(), [item] if item.joins.is_empty()
            && matches!(&item.relation, TableFactor::Table { name, .. }
                if self.bound.iter().any(|(n, _)| *n == object_name(name))))
    }

    /// Whether `query` is a plain `SELECT` whose `WHERE` references none of `outer`.
    pub(super) fn is_uncorrelated(&self, query: &Query, outer: &[QualifiedColumn]) -> bool {
        let text = query.to_string();
        let Ok(select) = plain_select(query, &text) else {
            return false;
        };
        self.correlate(select, outer, "", &text)
            .is_ok_and(|c| c.keys.is_empty() && c.residual.is_empty())
    }

    fn refuse_streaming(&self, text: &str) -> Result<()> {
        if self.streaming {
            return Err(Error::expr(format!(
                "not supported yet in streaming mode: the subquery {text}; run it in batch mode \
                 (SET 'execution.runtime-mode' = 'batch')"
            )));
        }
        Ok(())
    }

    /// `[NOT] EXISTS (query)` or `value [NOT] IN (query)` as a semi or anti join.
    fn semi_join(
        &mut self,
        stream: DataStream,
        query: &Query,
        value: Option<&SqlExpr>,
        negated: bool,
        outer: &[QualifiedColumn],
        text: &str,
    ) -> Result<DataStream> {
        self.refuse_streaming(text)?;
        let select = plain_select(query, text)?;
        let prefix = fresh_prefix(&stream.schema());
        let correlation = self.correlate(select, outer, &prefix, text)?;
        let correlated = !correlation.keys.is_empty() || !correlation.residual.is_empty();
        let aggregating = !matches!(&select.group_by, GroupByExpr::Expressions(e, _) if e.is_empty())
            || select.having.is_some()
            || select.projection.iter().any(|item| {
                let mut found = Vec::new();
                if let SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } = item
                {
                    collect_aggregates(e, &mut found);
                }
                !found.is_empty()
            });
        if correlated && aggregating {
            return Err(not_supported(
                "a correlated EXISTS or IN subquery with GROUP BY or aggregates",
                text,
            ));
        }
        let (mut left_keys, mut right_keys, mut projection) = (Vec::new(), Vec::new(), Vec::new());
        if let Some(value) = value {
            let name = format!("{prefix}_v");
            left_keys.push(self.outer_column(value, outer, &stream.schema(), text)?);
            projection.push(alias(selected_value(select, text)?, &name));
            right_keys.push(name);
        }
        for (i, (outer_column, inner)) in correlation.keys.iter().enumerate() {
            let name = format!("{prefix}_k{i}");
            left_keys.push(outer_column.clone());
            projection.push(alias(inner.clone(), &name));
            right_keys.push(name);
        }
        for (name, inner) in &correlation.residual_inputs {
            projection.push(alias(inner.clone(), name));
        }
        let join_type = match (value.is_some(), negated) {
            (_, false) => SubqueryJoinType::Semi,
            (false, true) => SubqueryJoinType::Anti,
            (true, true) if correlated => {
                return Err(not_supported("a correlated NOT IN subquery", text));
            }
            (true, true) => SubqueryJoinType::NullAwareAnti,
        };
        let constant = format!("{prefix}_one");
        let mut inner = select.clone();
        if projection.is_empty() {
            // Only the existence of a row matters.
            projection.push(alias(
                SqlExpr::value(sqlparser::ast::Value::Number("1".into(), false)),
                &constant,
            ));
        }
        inner.projection = projection;
        inner.selection = and_all(correlation.local);
        let right = self.plan_query(&with_body(query, inner))?;
        let mut right = self.settle(right)?;
        let mut left = stream;
        if left_keys.is_empty() {
            // Uncorrelated EXISTS, or only a residual: every left row meets every right row.
            left = with_constant(&left, &constant)?;
            right = with_constant(&right, &constant)?;
            left_keys.push(constant.clone());
            right_keys.push(constant);
        }
        let residual = match and_all(correlation.residual) {
            Some(residual) => Some(sql_expr::convert(&residual, &Scope::default())?),
            None => None,
        };
        let (left, right) = widen_keys(&left, &right, &left_keys, &right_keys)?;
        let joined = left
            .join(&right, left_keys, right_keys)
            .subquery(join_type, residual, text)?;
        let joined = if join_type == SubqueryJoinType::NullAwareAnti {
            // Whether the right side holds a NULL, or anything, is a property of all of it.
            joined.parallelism(1)?
        } else {
            joined
        };
        Ok(joined)
    }

    /// A scalar subquery as a single join; returns the joined stream and the value's column.
    fn scalar_join(
        &mut self,
        stream: DataStream,
        query: &Query,
        outer: &[QualifiedColumn],
    ) -> Result<(DataStream, String)> {
        let text = format!("({query})");
        self.refuse_streaming(&text)?;
        let select = plain_select(query, &text)?;
        let value = selected_value(select, &text)?;
        let prefix = fresh_prefix(&stream.schema());
        let mut correlation = self.correlate(select, outer, &prefix, &text)?;
        if !correlation.residual.is_empty() {
            return Err(not_supported(
                "a scalar subquery correlated by other than equality conditions",
                &text,
            ));
        }
        let mut aggregates = Vec::new();
        collect_aggregates(&value, &mut aggregates);
        let value_column = format!("{prefix}_v");
        let mut inner = select.clone();
        let mut projection = vec![alias(value.clone(), &value_column)];
        let mut left_keys = Vec::new();
        let mut right_keys = Vec::new();
        let mut count_default = false;
        if !correlation.keys.is_empty() {
            let grouped =
                !matches!(&select.group_by, GroupByExpr::Expressions(e, _) if e.is_empty());
            if grouped || select.having.is_some() {
                return Err(not_supported(
                    "a correlated scalar subquery with GROUP BY or HAVING",
                    &text,
                ));
            }
            let counts = aggregates
                .iter()
                .any(|f| sql_expr::function_name(f) == "COUNT");
            // A left row without partners gets NULL from the single join, where COUNT over
            // no rows is 0 (the "COUNT bug"): a bare COUNT gets 0 back below; COUNT inside
            // an expression would need that expression over no rows.
            count_default = matches!(&value, SqlExpr::Function(f)
                if sql_expr::function_name(f) == "COUNT");
            if counts && !count_default {
                return Err(not_supported(
                    "COUNT inside an expression in a correlated scalar subquery",
                    &text,
                ));
            }
            let mut group_by = Vec::new();
            for (i, (outer_column, inner_expr)) in correlation.keys.iter().enumerate() {
                let name = format!("{prefix}_k{i}");
                projection.push(alias(inner_expr.clone(), &name));
                group_by.push(inner_expr.clone());
                left_keys.push(outer_column.clone());
                right_keys.push(name);
            }
            if !aggregates.is_empty() {
                inner.group_by = GroupByExpr::Expressions(group_by, Vec::new());
            }
        }
        inner.projection = projection;
        // A correlated aggregate is needed only for the outer rows' keys: the subquery's rows
        // are semi-joined with the outer rows' first key before they are grouped (a "magic
        // set", as DuckDB's delim join). TPC-H Q17 then averages the line items of its 200
        // parts instead of all 200 000, Q20 sums those of its forest parts, and Q2 joins only
        // the part-supplies of its parts with their suppliers.
        let magic = match correlation.keys.first() {
            Some((outer_column, inner_expr)) if !aggregates.is_empty() => {
                let relation = format!("{prefix}_outer");
                let column = format!("{prefix}_m");
                let keys = stream.project([(column.clone(), col(outer_column))])?;
                let sql = format!("{inner_expr} IN (SELECT \"{column}\" FROM \"{relation}\")");
                let condition = Parser::new(&GenericDialect {})
                    .try_with_sql(&sql)
                    .and_then(|mut p| p.parse_expr())
                    .map_err(|e| Error::Internal(format!("magic set condition {sql}: {e}")))?;
                correlation.local.push(condition);
                Some((relation, keys))
            }
            _ => None,
        };
        inner.selection = and_all(correlation.local);
        let depth = self.bound.len();
        self.bound.extend(magic);
        let right = self.plan_query(&with_body(query, inner));
        self.bound.truncate(depth);
        let mut right = self.settle(right?)?;
        let mut left = stream;
        if left_keys.is_empty() {
            let constant = format!("{prefix}_one");
            left = with_constant(&left, &constant)?;
            right = with_constant(&right, &constant)?;
            left_keys.push(constant.clone());
            right_keys.push(constant);
        }
        let (left, right) = widen_keys(&left, &right, &left_keys, &right_keys)?;
        let joined = left.join(&right, left_keys, right_keys).subquery(
            SubqueryJoinType::Single,
            None,
            &text,
        )?;
        let joined = if count_default {
            let columns: Vec<(String, Expr)> = joined
                .schema()
                .fields()
                .iter()
                .map(|f| {
                    let column = col(f.name());
                    let expr = if *f.name() == value_column {
                        call(
                            Function::Coalesce,
                            vec![column, Expr::Literal(ScalarValue::Int64(0))],
                        )
                    } else {
                        column
                    };
                    (f.name().clone(), expr)
                })
                .collect();
            joined.project(columns)?
        } else {
            joined
        };
        Ok((joined, value_column))
    }

    /// The column of the outer stream that `expr` (a name) is.
    fn outer_column(
        &self,
        expr: &SqlExpr,
        outer: &[QualifiedColumn],
        schema: &SchemaRef,
        text: &str,
    ) -> Result<String> {
        let parts: &[Ident] = match expr {
            SqlExpr::Identifier(ident) => std::slice::from_ref(ident),
            SqlExpr::CompoundIdentifier(parts) => parts,
            SqlExpr::Nested(inner) => return self.outer_column(inner, outer, schema, text),
            other => {
                return Err(not_supported(
                    &format!("IN with an expression ('{other}') on its left; compare a column"),
                    text,
                ));
            }
        };
        if let Some(column) = resolve_name(parts, outer)? {
            return Ok(column);
        }
        let name = parts.last().map(|p| p.value.clone()).unwrap_or_default();
        match schema.index_of(&name) {
            Ok(_) if name != ROW_KIND_COLUMN => Ok(name),
            _ => Err(Error::expr(format!(
                "unknown column '{name}' on the left of {text} (available: {})",
                crate::graph::describe_columns(schema)
            ))),
        }
    }

    /// The column names of the subquery's own `FROM`, if it reads catalog tables only.
    fn inner_names(&self, select: &Select) -> Option<InnerNames> {
        let mut names = InnerNames {
            qualifiers: Vec::new(),
            columns: Vec::new(),
        };
        for item in &select.from {
            let factors =
                std::iter::once(&item.relation).chain(item.joins.iter().map(|j| &j.relation));
            for factor in factors {
                let TableFactor::Table { name, alias, .. } = factor else {
                    return None;
                };
                let table = object_name(name);
                if self.ctes.iter().any(|(n, _)| *n == table) {
                    return None;
                }
                let Ok(Relation::Table(t)) = self.catalog.relation(&table) else {
                    return None;
                };
                names
                    .columns
                    .extend(t.columns.iter().map(|c| c.name.clone()));
                names
                    .qualifiers
                    .push(alias.as_ref().map_or(table, |a| a.name.value.clone()));
            }
        }
        Some(names)
    }

    /// Splits the subquery's `WHERE` into its own conditions, join keys and the residual.
    fn correlate(
        &self,
        select: &Select,
        outer: &[QualifiedColumn],
        prefix: &str,
        text: &str,
    ) -> Result<Correlation> {
        let mut conjuncts = Vec::new();
        if let Some(selection) = &select.selection {
            split_conjuncts(selection, &mut conjuncts);
        }
        let mut correlation = Correlation {
            local: Vec::new(),
            keys: Vec::new(),
            residual: Vec::new(),
            residual_inputs: Vec::new(),
        };
        let Some(inner) = self.inner_names(select).filter(|_| !outer.is_empty()) else {
            correlation.local = conjuncts;
            return Ok(correlation);
        };
        // The outer column a name refers to, or `None` for an inner (or unknown) name.
        let outer_ref = |e: &SqlExpr| -> Option<String> {
            let parts: &[Ident] = match e {
                SqlExpr::Identifier(ident) => std::slice::from_ref(ident),
                SqlExpr::CompoundIdentifier(parts) => parts,
                _ => return None,
            };
            let inner_name = match parts {
                [name] => inner
                    .columns
                    .iter()
                    .any(|c| c.eq_ignore_ascii_case(&name.value)),
                [.., qualifier, _] => inner
                    .qualifiers
                    .iter()
                    .any(|q| q.eq_ignore_ascii_case(&qualifier.value)),
                [] => true,
            };
            if inner_name {
                return None;
            }
            resolve_name(parts, outer).ok().flatten()
        };
        let references_outer = |e: &SqlExpr| {
            let mut found = false;
            visit(&mut e.clone(), &mut |n| found |= outer_ref(n).is_some());
            found
        };
        for conjunct in conjuncts {
            if !references_outer(&conjunct) {
                correlation.local.push(conjunct);
                continue;
            }
            if let SqlExpr::BinaryOp {
                left,
                op: BinaryOperator::Eq,
                right,
            } = &conjunct
            {
                let key = match (outer_ref(left), outer_ref(right)) {
                    (Some(column), None) if !references_outer(right) => Some((column, right)),
                    (None, Some(column)) if !references_outer(left) => Some((column, left)),
                    _ => None,
                };
                if let Some((column, inner_expr)) = key {
                    correlation.keys.push((column, (**inner_expr).clone()));
                    continue;
                }
            }
            // A residual: outer names → their columns, inner names → projected helpers.
            let mut rewritten = conjunct.clone();
            let mut failed = None;
            visit(&mut rewritten, &mut |n| {
                if !matches!(n, SqlExpr::Identifier(_) | SqlExpr::CompoundIdentifier(_)) {
                    return;
                }
                let column = match outer_ref(n) {
                    Some(column) => column,
                    None => {
                        let existing = correlation
                            .residual_inputs
                            .iter()
                            .find(|(_, e)| e == n)
                            .map(|(name, _)| name.clone());
                        existing.unwrap_or_else(|| {
                            let name = format!("{prefix}_r{}", correlation.residual_inputs.len());
                            correlation.residual_inputs.push((name.clone(), n.clone()));
                            name
                        })
                    }
                };
                if column.contains('.') {
                    failed = Some(column.clone());
                }
                *n = SqlExpr::Identifier(Ident::new(column));
            });
            if let Some(column) = failed {
                return Err(not_supported(
                    &format!("a correlated condition on column '{column}'"),
                    text,
                ));
            }
            correlation.residual.push(rewritten);
        }
        Ok(correlation)
    }
}
