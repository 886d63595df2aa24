//! Lookup joins: `s JOIN t FOR SYSTEM_TIME AS OF s.proc_time [AS d] ON s.k = d.k [AND …]`
//! (also `LEFT JOIN`) → a [`LookupJoinSpec`] chained to the left input.
//!
//! Flink's processing-time temporal join: every input row is joined with the rows the table
//! has when the row is processed. The table must be a catalog table with a bounded source
//! (filesystem; also datagen with `number-of-rows`), which each subtask loads whole when it
//! starts. The `AS OF` operand must be a processing-time attribute of the input (a
//! `PROCTIME()` column); an event-time attribute would ask for a temporal join against a
//! versioned table, which is refused as not supported yet.
//!
//! The `ON` condition's conjuncts `<expression over the input> = <column of the table>` are
//! the lookup keys (types are widened as for other joins; a key expression such as
//! `MOD(s.auction, 10000)` is evaluated per batch); at least one is required. The other
//! conjuncts are the join's condition, evaluated on the joined rows, as Flink does: for a left
//! join, a row without a match that passes them is padded with NULLs.
//!
//! Errors carry the line and column of the clause, the key or the condition at fault.

use sqlparser::ast::{BinaryOperator, Expr as SqlExpr, Spanned, TableFactor, TableVersion};

use super::{FromRel, Planner, at, object_name, split_conjuncts};
use crate::expr::{Expr, Function};
use crate::graph::{JoinType, LookupJoinSpec, RIGHT_DUPLICATE_SUFFIX};
use crate::sql::catalog::{Relation, Table};
use crate::sql::connector;
use crate::sql::expr::{self as sql_expr, QualifiedColumn, Scope, resolve_name};
use crate::{Error, Result};

/// The `FOR SYSTEM_TIME AS OF` operand of a joined table, if it has one.
pub(super) fn system_time(factor: &TableFactor) -> Option<&SqlExpr> {
    match factor {
        TableFactor::Table {
            version: Some(TableVersion::ForSystemTimeAsOf(expr)),
            ..
        } => Some(expr),
        _ => None,
    }
}

/// The error for a `FOR SYSTEM_TIME AS OF` table outside a join.
pub(super) fn misplaced(factor: &TableFactor) -> Option<Error> {
    let expr = system_time(factor)?;
    Some(located(
        expr,
        "FOR SYSTEM_TIME AS OF needs a join: use `FROM s JOIN t FOR SYSTEM_TIME AS OF \
         s.proc_time ON …`",
    ))
}

/// The columns of `table` computed as `PROCTIME()`: processing-time attributes.
pub(super) fn proctime_columns(table: &Table) -> impl Iterator<Item = String> + '_ {
    table.columns.iter().filter_map(|c| match &c.computed {
        Some(Expr::Function {
            func: Function::Proctime,
            ..
        }) => Some(c.name.clone()),
        _ => None,
    })
}

fn located(expr: &SqlExpr, message: impl Into<String>) -> Error {
    let start = expr.span().start;
    Error::sql(
        format!("line {}, column {}", start.line, start.column),
        message,
    )
}

/// A bare (possibly qualified, possibly parenthesised) column reference.
fn column_parts(e: &SqlExpr) -> Option<&[sqlparser::ast::Ident]> {
    match e {
        SqlExpr::Identifier(ident) => Some(std::slice::from_ref(ident)),
        SqlExpr::CompoundIdentifier(parts) => Some(parts),
        SqlExpr::Nested(inner) => column_parts(inner),
        _ => None,
    }
}

impl Planner<'_> {
    /// Joins `left` with the table of `factor` (which carries `FOR SYSTEM_TIME AS OF
    /// as_of`) on `condition`.
    pub(super) fn lookup_join(
        &mut self,
        left: FromRel,
        factor: &TableFactor,
        as_of: &SqlExpr,
        join_type: JoinType,
        condition: &SqlExpr,
    ) -> Result<FromRel> {
        if !matches!(join_type, JoinType::Inner | JoinType::Left) {
            return Err(located(
                as_of,
                format!(
                    "a lookup join (FOR SYSTEM_TIME AS OF) is an inner or LEFT join, not a \
                     {join_type:?} join"
                ),
            ));
        }
        if left.window.is_some() {
            return Err(located(
                as_of,
                "a lookup join of a window TVF is not supported",
            ));
        }
        self.check_time_attribute(&left, as_of)?;
        let TableFactor::Table { name, alias, .. } = factor else {
            return Err(located(
                as_of,
                "FOR SYSTEM_TIME AS OF must follow a table name",
            ));
        };
        let table_name = object_name(name);
        let name_at = |message: String| {
            let start = name.span().start;
            Error::sql(
                format!("line {}, column {}", start.line, start.column),
                message,
            )
        };
        let table = match self.catalog.relation(&table_name) {
            _ if self.ctes.iter().any(|(n, _)| *n == table_name) => {
                return Err(name_at(format!(
                    "lookup table '{table_name}' is a WITH query; a lookup join needs a table \
                     (filesystem, or datagen with 'number-of-rows')"
                )));
            }
            Ok(Relation::Table(table)) => table,
            Ok(Relation::View(_)) => {
                return Err(name_at(format!(
                    "lookup table '{table_name}' is a view; a lookup join needs a table \
                     (filesystem, or datagen with 'number-of-rows')"
                )));
            }
            Err(e) => return Err(name_at(e.to_string())),
        };
        if table.has_computed_columns() {
            return Err(name_at(format!(
                "lookup table '{table_name}' has computed columns, which a lookup join does \
                 not support yet"
            )));
        }
        let source = connector::source_spec(table).map_err(|e| name_at(e.to_string()))?;
        let table_schema = source.schema()?;

        // The table's columns as the join outputs them.
        let left_schema = left.stream.schema();
        let qualifier = alias
            .as_ref()
            .map_or_else(|| table_name.clone(), |a| a.name.value.clone());
        let mut names = left.names.clone();
        let mut lookup_columns = Vec::with_capacity(table_schema.fields().len());
        for field in table_schema.fields() {
            let taken =
                |n: &str| left_schema.index_of(n).is_ok() || lookup_columns.iter().any(|c| c == n);
            let mut column = field.name().clone();
            if taken(&column) {
                let suffixed = format!("{column}{RIGHT_DUPLICATE_SUFFIX}");
                column = std::iter::once(suffixed.clone())
                    .chain((0..).map(|n| format!("{suffixed}{n}")))
                    .find(|c| !taken(c))
                    .expect("a free name exists");
            }
            names.push(QualifiedColumn {
                qualifier: qualifier.clone(),
                name: field.name().clone(),
                column: column.clone(),
            });
            lookup_columns.push(column);
        }
        let scope = Scope {
            names: &names,
            ..Scope::default()
        };
        let table_column = |e: &SqlExpr| -> Result<Option<usize>> {
            let Some(parts) = column_parts(e) else {
                return Ok(None);
            };
            let column = resolve_name(parts, &names).map_err(|err| at(err, e))?;
            Ok(column.and_then(|c| lookup_columns.iter().position(|l| *l == c)))
        };
        let is_input = |expr: &Expr| {
            expr.columns()
                .iter()
                .all(|c| left_schema.index_of(c).is_ok())
        };

        let mut conjuncts = Vec::new();
        split_conjuncts(condition, &mut conjuncts);
        let (mut probe_keys, mut lookup_keys) = (Vec::new(), Vec::new());
        let mut rest: Option<Expr> = None;
        for conjunct in &conjuncts {
            if let SqlExpr::BinaryOp {
                left: a,
                op: BinaryOperator::Eq,
                right: b,
            } = conjunct
            {
                let key = match (table_column(a)?, table_column(b)?) {
                    (Some(column), None) => Some((column, b)),
                    (None, Some(column)) => Some((column, a)),
                    _ => None,
                };
                if let Some((column, other)) = key {
                    let probe = sql_expr::convert(other, &scope).map_err(|err| at(err, other))?;
                    if is_input(&probe) && !probe.columns().is_empty() {
                        let probe_type = probe
                            .resolve(&left_schema)
                            .map_err(|err| at(err, other))?
                            .data_type()
                            .clone();
                        let key_type = table_schema.field(column).data_type();
                        if crate::graph::lookup_join_key_type(&probe_type, key_type).is_none() {
                            return Err(located(
                                conjunct,
                                format!(
                                    "lookup key {other} is {probe_type} but {qualifier}.{} is \
                                     {key_type}; cast one side so that they can be compared",
                                    table_schema.field(column).name()
                                ),
                            ));
                        }
                        probe_keys.push(probe);
                        lookup_keys.push(table_schema.field(column).name().clone());
                        continue;
                    }
                }
            }
            let converted = sql_expr::convert(conjunct, &scope).map_err(|err| at(err, conjunct))?;
            rest = Some(match rest {
                Some(r) => r.and(converted),
                None => converted,
            });
        }
        if probe_keys.is_empty() {
            return Err(located(
                condition,
                format!(
                    "a lookup join needs an equality between a column of '{table_name}' and an \
                     expression over the input (e.g. ON s.k = {qualifier}.k)"
                ),
            ));
        }
        let spec = LookupJoinSpec {
            table: table_name,
            source,
            probe_keys,
            lookup_keys,
            join_type,
            lookup_columns,
            condition: rest,
        };
        // What the spec rejects (an unbounded table, …) is reported at the table's name;
        // a condition that does not type-check, at the condition.
        let mut unconditioned = spec.clone();
        unconditioned.condition = None;
        let joined = unconditioned
            .output_schema(&left_schema)
            .map_err(|err| match err {
                Error::Expression { message } => name_at(message),
                other => other,
            })?;
        if let Some(condition_expr) = &spec.condition {
            let resolved = condition_expr
                .resolve(&joined)
                .map_err(|err| at(err, condition))?;
            if resolved.data_type() != &arrow::datatypes::DataType::Boolean {
                return Err(located(
                    condition,
                    format!(
                        "the join condition must be BOOLEAN, found {}",
                        resolved.data_type()
                    ),
                ));
            }
        }
        let stream = left.stream.lookup_join(spec)?;
        Ok(FromRel {
            stream,
            window: None,
            names,
            rowtimes: left.rowtimes,
        })
    }

    /// `as_of` must name a processing-time attribute of the input.
    fn check_time_attribute(&self, left: &FromRel, as_of: &SqlExpr) -> Result<()> {
        let Some(parts) = column_parts(as_of) else {
            return Err(located(
                as_of,
                "FOR SYSTEM_TIME AS OF expects a time attribute column of the input",
            ));
        };
        let column = resolve_name(parts, &left.names)
            .map_err(|err| at(err, as_of))?
            .unwrap_or_else(|| parts.last().map(|p| p.value.clone()).unwrap_or_default());
        if left.rowtimes.contains(&column) {
            return Err(located(
                as_of,
                format!(
                    "'{as_of}' is an event-time attribute: an event-time temporal join against \
                     a versioned table is not supported yet (join AS OF a processing-time \
                     attribute, a PROCTIME() column, for a lookup join)"
                ),
            ));
        }
        if !self.proctime_columns.contains(&column) {
            return Err(located(
                as_of,
                format!(
                    "'{as_of}' is not a processing-time attribute; a lookup join needs FOR \
                     SYSTEM_TIME AS OF a PROCTIME() column of the input (event-time temporal \
                     joins against versioned tables are not supported yet)"
                ),
            ));
        }
        Ok(())
    }
}
