//! The SQL the sink-table service answers: one sink table, read as it is now.
//!
//! ```text
//! SELECT * | column [AS alias], … FROM [sluice.][default.]table [WHERE predicate] [LIMIT n]
//! ```
//!
//! [`parse_select`] checks a statement against that shape and keeps its parts;
//! [`SelectQuery::plan`] resolves them against the table's schema (projection indices, the
//! predicate as the engine's vectorized [`PhysicalExpr`]); a [`Scan`] runs the plan over the
//! table's batches one batch at a time. Without a predicate a batch is projected and sliced,
//! never copied; with one, the selected rows of each batch are appended to a coalescer so the
//! client does not get a stream of tiny batches. `LIMIT` counts rows of one scan, that is of
//! one endpoint (partition) of the statement.
//!
//! [`like_matches`] is SQL `LIKE` matching for the name patterns of the catalog commands.

use std::sync::Arc;

use arrow::compute::BatchCoalescer;
use arrow::datatypes::{DataType, Schema, SchemaRef};
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use sluice_engine::expr::PhysicalExpr;
use sluice_engine::sql::expr::{Scope, convert};
use sqlparser::ast::{
    Expr as SqlExpr, GroupByExpr, LimitClause, ObjectName, ObjectNamePart, Query, Select,
    SelectItem, SetExpr, Statement, TableFactor, Value, WildcardAdditionalOptions,
};
use sqlparser::dialect::GenericDialect;
use sqlparser::parser::Parser;

use super::{CATALOG_NAME, SCHEMA_NAME};
use crate::{Error, Result};

/// What the service supports, quoted in every "not supported" error.
pub(crate) const SUPPORTED: &str = "the sink-table service supports `SELECT * | column [AS alias], … FROM table [WHERE predicate] [LIMIT n]`";

/// Rows per batch a filtering scan sends: the engine's usual batch size, large enough that
/// per-batch overheads (IPC headers, one gRPC message) vanish against the rows.
const FILTERED_BATCH_ROWS: usize = 8192;

/// A column of the result: a table column, optionally renamed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OutputColumn {
    /// The column as the statement names it (matched like the engine matches columns: exactly,
    /// else case-insensitively when that is unique).
    pub column: String,
    /// `AS alias`.
    pub alias: Option<String>,
}

/// A statement of the supported shape, not yet checked against a table.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SelectQuery {
    /// The statement as the client sent it (trimmed), for error messages.
    pub statement: String,
    /// The table's name (the last part of a qualified name).
    pub table: String,
    /// The selected columns; `None` for `*`.
    pub columns: Option<Vec<OutputColumn>>,
    /// `WHERE`.
    pub predicate: Option<SqlExpr>,
    /// `LIMIT`, per scan.
    pub limit: Option<u64>,
}

fn query_error(statement: &str, message: impl Into<String>) -> Error {
    Error::Query {
        statement: statement.trim().to_string(),
        message: message.into(),
    }
}

fn unsupported(statement: &str, what: &str) -> Error {
    query_error(statement, format!("{what} is not supported; {SUPPORTED}"))
}

/// Parses `sql` and checks that it has the supported shape.
pub(crate) fn parse_select(sql: &str) -> Result<SelectQuery> {
    let statements = Parser::parse_sql(&GenericDialect {}, sql)
        .map_err(|e| query_error(sql, format!("cannot parse it: {e}; {SUPPORTED}")))?;
    let query = match statements.as_slice() {
        [Statement::Query(query)] => query,
        [] => return Err(query_error(sql, format!("no statement; {SUPPORTED}"))),
        [_] => return Err(unsupported(sql, "a statement other than SELECT")),
        _ => return Err(unsupported(sql, "more than one statement")),
    };
    let limit = check_query(sql, query)?;
    let select = match query.body.as_ref() {
        SetExpr::Select(select) => select,
        SetExpr::Query(_) => return Err(unsupported(sql, "a parenthesized query")),
        SetExpr::SetOperation { .. } => return Err(unsupported(sql, "UNION/INTERSECT/EXCEPT")),
        SetExpr::Values(_) => return Err(unsupported(sql, "VALUES")),
        _ => return Err(unsupported(sql, "this kind of query")),
    };
    check_select(sql, select)?;
    let table = table_name(sql, select)?;
    let columns = projection(sql, &select.projection)?;
    if let Some(predicate) = &select.selection {
        // Converting now reports unsupported expressions before any table is looked at.
        convert(predicate, &Scope::default())
            .map_err(|e| query_error(sql, format!("WHERE {predicate}: {e}")))?;
    }
    Ok(SelectQuery {
        statement: sql.trim().to_string(),
        table,
        columns,
        predicate: select.selection.clone(),
        limit,
    })
}

/// Rejects the clauses of `query` outside the supported shape; returns its `LIMIT`.
fn check_query(sql: &str, query: &Query) -> Result<Option<u64>> {
    if query.with.is_some() {
        return Err(unsupported(sql, "WITH"));
    }
    if query.order_by.is_some() {
        return Err(unsupported(sql, "ORDER BY"));
    }
    if query.fetch.is_some() {
        return Err(unsupported(sql, "FETCH"));
    }
    if !query.locks.is_empty() || query.for_clause.is_some() {
        return Err(unsupported(sql, "FOR …"));
    }
    if query.settings.is_some() || query.format_clause.is_some() {
        return Err(unsupported(sql, "SETTINGS/FORMAT"));
    }
    if !query.pipe_operators.is_empty() {
        return Err(unsupported(sql, "a pipe operator"));
    }
    match &query.limit_clause {
        None => Ok(None),
        Some(LimitClause::OffsetCommaLimit { .. }) => Err(unsupported(sql, "OFFSET")),
        Some(LimitClause::LimitOffset {
            limit,
            offset,
            limit_by,
        }) => {
            if offset.is_some() {
                return Err(unsupported(sql, "OFFSET"));
            }
            if !limit_by.is_empty() {
                return Err(unsupported(sql, "LIMIT … BY"));
            }
            limit.as_ref().map(|l| limit_value(sql, l)).transpose()
        }
    }
}

fn limit_value(sql: &str, limit: &SqlExpr) -> Result<u64> {
    if let SqlExpr::Value(value) = limit
        && let Value::Number(n, _) = &value.value
        && let Ok(n) = n.parse::<u64>()
    {
        return Ok(n);
    }
    Err(query_error(
        sql,
        format!("LIMIT {limit}: the limit must be a non-negative integer literal"),
    ))
}

/// Rejects the clauses of `select` outside the supported shape.
fn check_select(sql: &str, select: &Select) -> Result<()> {
    let rejected = [
        (select.distinct.is_some(), "DISTINCT"),
        (select.top.is_some(), "TOP"),
        (select.into.is_some(), "SELECT … INTO"),
        (select.exclude.is_some(), "EXCLUDE"),
        (select.select_modifiers.is_some(), "a SELECT modifier"),
        (!select.lateral_views.is_empty(), "LATERAL VIEW"),
        (select.prewhere.is_some(), "PREWHERE"),
        (!select.connect_by.is_empty(), "CONNECT BY"),
        (
            match &select.group_by {
                GroupByExpr::All(_) => true,
                GroupByExpr::Expressions(exprs, modifiers) => {
                    !exprs.is_empty() || !modifiers.is_empty()
                }
            },
            "GROUP BY",
        ),
        (
            !select.cluster_by.is_empty()
                || !select.distribute_by.is_empty()
                || !select.sort_by.is_empty(),
            "CLUSTER/DISTRIBUTE/SORT BY",
        ),
        (select.having.is_some(), "HAVING"),
        (!select.named_window.is_empty(), "WINDOW"),
        (select.qualify.is_some(), "QUALIFY"),
        (select.value_table_mode.is_some(), "SELECT AS STRUCT/VALUE"),
    ];
    match rejected.iter().find(|(present, _)| *present) {
        Some((_, what)) => Err(unsupported(sql, what)),
        None => Ok(()),
    }
}

/// The one table of `FROM`, with its catalog and schema qualifiers checked.
fn table_name(sql: &str, select: &Select) -> Result<String> {
    let relation = match select.from.as_slice() {
        [] => return Err(query_error(sql, format!("no FROM table; {SUPPORTED}"))),
        [one] if one.joins.is_empty() => &one.relation,
        [_] => return Err(unsupported(sql, "a join")),
        _ => return Err(unsupported(sql, "more than one FROM table")),
    };
    let name = match relation {
        TableFactor::Table {
            name,
            args: None,
            with_hints,
            version: None,
            partitions,
            sample: None,
            ..
        } if with_hints.is_empty() && partitions.is_empty() => name,
        TableFactor::Table { .. } => {
            return Err(unsupported(
                sql,
                "a table function, hint, time travel, partition or sample",
            ));
        }
        TableFactor::Derived { .. } => return Err(unsupported(sql, "a subquery in FROM")),
        _ => return Err(unsupported(sql, "this kind of FROM item")),
    };
    let parts = name_parts(sql, name)?;
    let qualifier_error = |qualifier: &str, expected: &str, kind: &str| {
        query_error(
            sql,
            format!("unknown {kind} '{qualifier}' in '{name}' (the only {kind} is '{expected}')"),
        )
    };
    match parts.as_slice() {
        [table] => Ok(table.clone()),
        [schema, table] => {
            if !schema.eq_ignore_ascii_case(SCHEMA_NAME) {
                return Err(qualifier_error(schema, SCHEMA_NAME, "schema"));
            }
            Ok(table.clone())
        }
        [catalog, schema, table] => {
            if !catalog.eq_ignore_ascii_case(CATALOG_NAME) {
                return Err(qualifier_error(catalog, CATALOG_NAME, "catalog"));
            }
            if !schema.eq_ignore_ascii_case(SCHEMA_NAME) {
                return Err(qualifier_error(schema, SCHEMA_NAME, "schema"));
            }
            Ok(table.clone())
        }
        _ => Err(query_error(
            sql,
            format!("table name '{name}' has too many parts (at most catalog.schema.table)"),
        )),
    }
}

fn name_parts(sql: &str, name: &ObjectName) -> Result<Vec<String>> {
    name.0
        .iter()
        .map(|part| match part {
            ObjectNamePart::Identifier(ident) => Ok(ident.value.clone()),
            ObjectNamePart::Function(_) => Err(unsupported(sql, "a function in a table name")),
        })
        .collect()
}

/// The selected columns; `None` for `*` (or `t.*`).
fn projection(sql: &str, items: &[SelectItem]) -> Result<Option<Vec<OutputColumn>>> {
    let plain_wildcard = |options: &WildcardAdditionalOptions| {
        options.opt_ilike.is_none()
            && options.opt_exclude.is_none()
            && options.opt_except.is_none()
            && options.opt_replace.is_none()
            && options.opt_rename.is_none()
            && options.opt_alias.is_none()
    };
    if let [SelectItem::Wildcard(options) | SelectItem::QualifiedWildcard(_, options)] = items {
        return if plain_wildcard(options) {
            Ok(None)
        } else {
            Err(unsupported(
                sql,
                "'*' with EXCLUDE/EXCEPT/REPLACE/RENAME/ILIKE",
            ))
        };
    }
    let column = |expr: &SqlExpr| match expr {
        SqlExpr::Identifier(ident) => Ok(ident.value.clone()),
        SqlExpr::CompoundIdentifier(parts) => match parts.last() {
            Some(last) => Ok(last.value.clone()),
            None => Err(query_error(sql, "an empty column name")),
        },
        other => Err(unsupported(
            sql,
            &format!("selecting the expression '{other}' (only columns can be selected)"),
        )),
    };
    items
        .iter()
        .map(|item| match item {
            SelectItem::UnnamedExpr(expr) => Ok(OutputColumn {
                column: column(expr)?,
                alias: None,
            }),
            SelectItem::ExprWithAlias { expr, alias } => Ok(OutputColumn {
                column: column(expr)?,
                alias: Some(alias.value.clone()),
            }),
            SelectItem::ExprWithAliases { .. } => Err(unsupported(sql, "several aliases")),
            SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..) => {
                Err(unsupported(sql, "'*' together with other columns"))
            }
        })
        .collect::<Result<Vec<_>>>()
        .map(Some)
}

/// Parses a predicate written back by [`SelectQuery::predicate_text`] (a statement ticket).
pub(crate) fn parse_predicate(statement: &str, text: &str) -> Result<SqlExpr> {
    Parser::new(&GenericDialect {})
        .try_with_sql(text)
        .and_then(|mut parser| parser.parse_expr())
        .map_err(|e| query_error(statement, format!("cannot parse WHERE {text}: {e}")))
}

/// The index of the field of `schema` named `name`: the exact name, else the only
/// case-insensitive match (the engine's rule for columns).
pub(crate) fn find_name<'a>(
    names: impl Iterator<Item = &'a str> + Clone,
    name: &str,
) -> Option<usize> {
    names.clone().position(|n| n == name).or_else(|| {
        let mut matches = names
            .enumerate()
            .filter(|(_, n)| n.eq_ignore_ascii_case(name));
        match (matches.next(), matches.next()) {
            (Some((i, _)), None) => Some(i),
            _ => None,
        }
    })
}

impl SelectQuery {
    /// The predicate as SQL text, for a statement ticket; [`parse_predicate`] reads it back.
    pub(crate) fn predicate_text(&self) -> Option<String> {
        self.predicate.as_ref().map(ToString::to_string)
    }

    /// Resolves the statement against the schema of its table.
    pub(crate) fn plan(&self, table_schema: &SchemaRef) -> Result<ScanPlan> {
        let projection = match &self.columns {
            None => None,
            Some(columns) => {
                let names = table_schema.fields().iter().map(|f| f.name().as_str());
                let mut indices = Vec::with_capacity(columns.len());
                let mut fields = Vec::with_capacity(columns.len());
                for output in columns {
                    let index = find_name(names.clone(), &output.column).ok_or_else(|| {
                        query_error(
                            &self.statement,
                            format!(
                                "unknown column '{}' in table '{}' (available: {})",
                                output.column,
                                self.table,
                                names.clone().collect::<Vec<_>>().join(", ")
                            ),
                        )
                    })?;
                    let field = table_schema.field(index);
                    fields.push(match &output.alias {
                        Some(alias) => Arc::new(field.clone().with_name(alias)),
                        None => Arc::new(field.clone()),
                    });
                    indices.push(index);
                }
                Some((
                    indices,
                    Arc::new(Schema::new_with_metadata(
                        fields,
                        table_schema.metadata().clone(),
                    )),
                ))
            }
        };
        let predicate = match &self.predicate {
            None => None,
            Some(sql) => {
                let expr = convert(sql, &Scope::default())
                    .and_then(|e| e.resolve(table_schema))
                    .map_err(|e| query_error(&self.statement, format!("WHERE {sql}: {e}")))?;
                if !matches!(expr.data_type(), DataType::Boolean | DataType::Null) {
                    return Err(query_error(
                        &self.statement,
                        format!(
                            "WHERE {sql}: the predicate is {}, not BOOLEAN",
                            expr.data_type()
                        ),
                    ));
                }
                Some(expr)
            }
        };
        let (projection, schema) = match projection {
            Some((indices, schema)) => (Some(indices), schema),
            None => (None, table_schema.clone()),
        };
        Ok(ScanPlan {
            statement: self.statement.clone(),
            predicate,
            projection,
            schema,
            limit: self.limit,
        })
    }
}

/// A statement resolved against its table's schema.
#[derive(Debug)]
pub(crate) struct ScanPlan {
    statement: String,
    predicate: Option<PhysicalExpr>,
    /// Indices of the output columns in the table; `None`: every column.
    projection: Option<Vec<usize>>,
    /// The schema of the result.
    schema: SchemaRef,
    limit: Option<u64>,
}

impl ScanPlan {
    /// The plan of a whole table (`SELECT * FROM table`).
    pub(crate) fn all(table_schema: SchemaRef) -> Self {
        ScanPlan {
            statement: String::new(),
            predicate: None,
            projection: None,
            schema: table_schema,
            limit: None,
        }
    }

    /// The schema of the result.
    pub(crate) fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// `true` when the plan passes every row through (no predicate, no limit): the row count
    /// of the result is then the table's.
    pub(crate) fn keeps_every_row(&self) -> bool {
        self.predicate.is_none() && self.limit.is_none()
    }

    /// Runs the plan over `batches` (of the table's schema), lazily.
    pub(crate) fn scan(self, batches: Vec<RecordBatch>) -> Scan {
        let coalescer = self
            .predicate
            .as_ref()
            .map(|_| BatchCoalescer::new(self.schema.clone(), FILTERED_BATCH_ROWS));
        Scan {
            remaining: self.limit,
            plan: self,
            input: batches.into_iter(),
            coalescer,
            input_done: false,
        }
    }

    fn error(&self, message: impl Into<String>) -> Error {
        query_error(&self.statement, message)
    }

    /// The output columns of `batch`, sharing its buffers.
    fn project(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        let columns = match &self.projection {
            None => return Ok(batch.clone()),
            Some(indices) => indices.iter().map(|&i| batch.column(i).clone()).collect(),
        };
        let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
        RecordBatch::try_new_with_options(self.schema.clone(), columns, &options)
            .map_err(|e| self.error(format!("projecting a batch: {e}")))
    }
}

/// The result of a [`ScanPlan`] over one table's batches: an iterator of non-empty batches.
#[derive(Debug)]
pub(crate) struct Scan {
    plan: ScanPlan,
    input: std::vec::IntoIter<RecordBatch>,
    /// Gathers the selected rows of a filtering scan into full batches.
    coalescer: Option<BatchCoalescer>,
    input_done: bool,
    /// Rows the limit still admits.
    remaining: Option<u64>,
}

impl Scan {
    /// Cuts `batch` to the limit and counts it.
    fn admit(&mut self, batch: RecordBatch) -> RecordBatch {
        match &mut self.remaining {
            None => batch,
            Some(remaining) => {
                let rows = batch
                    .num_rows()
                    .min(usize::try_from(*remaining).unwrap_or(usize::MAX));
                *remaining -= rows as u64;
                if rows < batch.num_rows() {
                    batch.slice(0, rows)
                } else {
                    batch
                }
            }
        }
    }

    fn next_unfiltered(&mut self) -> Option<Result<RecordBatch>> {
        loop {
            let batch = self.input.next()?;
            if batch.num_rows() == 0 {
                continue;
            }
            return Some(self.plan.project(&batch).map(|b| self.admit(b)));
        }
    }

    fn next_filtered(&mut self) -> Option<Result<RecordBatch>> {
        loop {
            let coalescer = self.coalescer.as_mut()?;
            if let Some(batch) = coalescer.next_completed_batch() {
                return Some(Ok(self.admit(batch)));
            }
            if self.input_done {
                return None;
            }
            let Some(batch) = self.input.next() else {
                self.input_done = true;
                if let Err(e) = coalescer.finish_buffered_batch() {
                    return Some(Err(self.plan.error(format!("filtering: {e}"))));
                }
                continue;
            };
            if let Err(e) = self.filter_into_coalescer(&batch) {
                return Some(Err(e));
            }
        }
    }

    fn filter_into_coalescer(&mut self, batch: &RecordBatch) -> Result<()> {
        let (Some(predicate), Some(coalescer)) = (&self.plan.predicate, self.coalescer.as_mut())
        else {
            return Err(Error::Internal(
                "a filtering scan without its predicate or coalescer".into(),
            ));
        };
        let mask = predicate
            .evaluate_predicate(batch)
            .map_err(|e| query_error(&self.plan.statement, e.to_string()))?;
        let projected = self.plan.project(batch)?;
        coalescer
            .push_batch_with_filter(projected, &mask)
            .map_err(|e| query_error(&self.plan.statement, format!("filtering: {e}")))?;
        // Enough rows for the limit: stop reading input and send what is buffered.
        if let Some(remaining) = self.remaining
            && coalescer.get_buffered_rows() as u64 >= remaining
        {
            self.input_done = true;
            coalescer
                .finish_buffered_batch()
                .map_err(|e| query_error(&self.plan.statement, format!("filtering: {e}")))?;
        }
        Ok(())
    }
}

impl Iterator for Scan {
    type Item = Result<RecordBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == Some(0) {
            return None;
        }
        let next = if self.plan.predicate.is_some() {
            self.next_filtered()
        } else {
            self.next_unfiltered()
        };
        if matches!(next, Some(Err(_))) {
            // An error ends the scan.
            self.input_done = true;
            self.input = Vec::new().into_iter();
        }
        next
    }
}

/// `text LIKE pattern` as SQL (and JDBC's metadata calls) define it: `%` matches any run of
/// characters, `_` any one character, `\` makes the next character literal. Case-sensitive.
pub(crate) fn like_matches(pattern: &str, text: &str) -> bool {
    #[derive(Clone, Copy)]
    enum Token {
        Any,
        One,
        Char(char),
    }
    let mut tokens = Vec::with_capacity(pattern.len());
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        tokens.push(match c {
            '%' => Token::Any,
            '_' => Token::One,
            '\\' => Token::Char(chars.next().unwrap_or('\\')),
            c => Token::Char(c),
        });
    }
    let text: Vec<char> = text.chars().collect();
    // Greedy matching with backtracking to the last `%`: linear in practice, at most
    // O(pattern × text) for table names.
    let (mut t, mut p) = (0, 0);
    let mut backtrack: Option<(usize, usize)> = None;
    while t < text.len() {
        match tokens.get(p) {
            Some(Token::Any) => {
                backtrack = Some((p, t));
                p += 1;
            }
            Some(Token::One) => {
                p += 1;
                t += 1;
            }
            Some(Token::Char(c)) if *c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match backtrack {
                Some((star, matched)) => {
                    p = star + 1;
                    t = matched + 1;
                    backtrack = Some((star, matched + 1));
                }
                None => return false,
            },
        }
    }
    tokens[p..].iter().all(|token| matches!(token, Token::Any))
}

#[cfg(test)]
mod tests {
    use arrow::array::{Array, AsArray, Int64Array, StringArray};
    use arrow::datatypes::{Field, Int64Type};

    use super::*;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("x", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
        ]))
    }

    /// `batches` batches of `rows` rows: x = 0, 1, 2, … and name = "n<x>" (null every 4th).
    fn batches(batches: i64, rows: i64) -> Vec<RecordBatch> {
        (0..batches)
            .map(|b| {
                let x: Vec<i64> = (b * rows..(b + 1) * rows).collect();
                let name: StringArray = x
                    .iter()
                    .map(|x| (x % 4 != 3).then(|| format!("n{x}")))
                    .collect();
                RecordBatch::try_new(
                    schema(),
                    vec![Arc::new(Int64Array::from(x)), Arc::new(name)],
                )
                .unwrap()
            })
            .collect()
    }

    fn run(sql: &str, input: Vec<RecordBatch>) -> Result<Vec<RecordBatch>> {
        let query = parse_select(sql)?;
        query.plan(&schema())?.scan(input).collect()
    }

    fn xs(output: &[RecordBatch]) -> Vec<i64> {
        output
            .iter()
            .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
            .collect()
    }

    fn message(result: Result<impl std::fmt::Debug>) -> String {
        result.unwrap_err().to_string()
    }

    #[test]
    fn parses_the_supported_shape() {
        let q = parse_select("SELECT * FROM bids").unwrap();
        assert_eq!(
            (q.table.as_str(), q.columns, q.predicate, q.limit),
            ("bids", None, None, None)
        );

        let q =
            parse_select("  select x, name AS n from sluice.default.\"Bids\" where x > 5 limit 3;")
                .unwrap();
        assert_eq!(q.table, "Bids");
        assert_eq!(
            q.columns.unwrap(),
            vec![
                OutputColumn {
                    column: "x".into(),
                    alias: None
                },
                OutputColumn {
                    column: "name".into(),
                    alias: Some("n".into())
                },
            ]
        );
        assert_eq!(q.predicate.unwrap().to_string(), "x > 5");
        assert_eq!(q.limit, Some(3));
        assert_eq!(
            q.statement,
            "select x, name AS n from sluice.default.\"Bids\" where x > 5 limit 3;"
        );

        assert_eq!(
            parse_select("SELECT t.* FROM DEFAULT.t AS t")
                .unwrap()
                .columns,
            None
        );
        assert_eq!(
            parse_select("SELECT t.x FROM t").unwrap().columns.unwrap()[0].column,
            "x"
        );
        assert_eq!(
            parse_select("SELECT * FROM t LIMIT ALL").unwrap().limit,
            None
        );
        assert_eq!(
            parse_select("SELECT * FROM t LIMIT 0").unwrap().limit,
            Some(0)
        );
    }

    #[test]
    fn rejects_what_is_not_supported_naming_the_statement() {
        for (sql, expected) in [
            ("INSERT INTO t VALUES (1)", "a statement other than SELECT"),
            (
                "SELECT * FROM t; SELECT * FROM u",
                "more than one statement",
            ),
            ("SELECT * FROM t ORDER BY x", "ORDER BY"),
            ("SELECT DISTINCT x FROM t", "DISTINCT"),
            ("SELECT x FROM t GROUP BY x", "GROUP BY"),
            (
                "SELECT count(*) FROM t",
                "selecting the expression 'count(*)'",
            ),
            ("SELECT x + 1 FROM t", "selecting the expression 'x + 1'"),
            ("SELECT *, x FROM t", "'*' together with other columns"),
            ("SELECT * FROM t JOIN u ON t.x = u.x", "a join"),
            ("SELECT * FROM t, u", "more than one FROM table"),
            ("SELECT * FROM (SELECT * FROM t)", "a subquery in FROM"),
            ("SELECT 1", "no FROM table"),
            ("SELECT * FROM t LIMIT 5 OFFSET 2", "OFFSET"),
            ("WITH a AS (SELECT * FROM t) SELECT * FROM a", "WITH"),
            ("SELECT * FROM t UNION SELECT * FROM u", "UNION"),
            ("SELECT * FROM other.t", "unknown schema 'other'"),
            ("SELECT * FROM cat.default.t", "unknown catalog 'cat'"),
            ("SELECT * FROM t LIMIT -1", "non-negative integer literal"),
            ("SELECT * FROM t LIMIT x", "non-negative integer literal"),
            ("SELEKT * FROM t", "cannot parse it"),
            ("", "no statement"),
        ] {
            let error = parse_select(sql).unwrap_err();
            assert!(matches!(error, Error::Query { .. }), "{sql}: {error:?}");
            let text = error.to_string();
            assert!(text.contains(expected), "{sql}: {text}");
            assert!(
                text.contains(&format!("statement '{}'", sql.trim())),
                "{text}"
            );
        }
        // The "not supported" errors say what is.
        assert!(message(parse_select("SELECT * FROM t ORDER BY x")).contains(SUPPORTED));
    }

    #[test]
    fn plan_checks_columns_and_predicate_types_against_the_table() {
        let plan = |sql: &str| parse_select(sql).unwrap().plan(&schema());
        let unknown = message(plan("SELECT y FROM t"));
        assert!(
            unknown.contains("unknown column 'y' in table 't' (available: x, name)"),
            "{unknown}"
        );
        let unknown = message(plan("SELECT * FROM t WHERE pricee > 1"));
        assert!(
            unknown.contains("WHERE pricee > 1") && unknown.contains("pricee"),
            "{unknown}"
        );
        let not_boolean = message(plan("SELECT * FROM t WHERE x + 1"));
        assert!(not_boolean.contains("not BOOLEAN"), "{not_boolean}");
        // Unknown functions are found when parsing, before any table is looked at.
        let function = message(parse_select("SELECT * FROM t WHERE no_such_function(x)"));
        assert!(
            function.contains("statement 'SELECT * FROM t WHERE no_such_function(x)'"),
            "{function}"
        );

        let projected = plan("SELECT NAME AS label, X FROM t").unwrap();
        let fields: Vec<_> = projected
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        assert_eq!(fields, ["label", "x"]);
        assert!(plan("SELECT * FROM t").unwrap().keeps_every_row());
        assert!(!plan("SELECT * FROM t LIMIT 1").unwrap().keeps_every_row());
        assert!(
            !plan("SELECT * FROM t WHERE x > 1")
                .unwrap()
                .keeps_every_row()
        );
    }

    #[test]
    fn scan_without_predicate_shares_buffers() {
        let input = batches(3, 100);
        let output = run("SELECT * FROM t", input.clone()).unwrap();
        assert_eq!(output, input);
        let pointer = |b: &RecordBatch| b.column(0).to_data().buffers()[0].as_ptr();
        assert_eq!(pointer(&output[1]), pointer(&input[1]));

        let projected = run("SELECT name FROM t", input.clone()).unwrap();
        assert_eq!(projected.len(), 3);
        assert!(Arc::ptr_eq(projected[2].column(0), input[2].column(1)));
    }

    #[test]
    fn limit_cuts_the_last_batch_and_stops_reading() {
        let output = run("SELECT * FROM t LIMIT 150", batches(3, 100)).unwrap();
        assert_eq!(
            output.iter().map(RecordBatch::num_rows).collect::<Vec<_>>(),
            [100, 50]
        );
        assert_eq!(xs(&output), (0..150).collect::<Vec<_>>());
        assert!(
            run("SELECT * FROM t LIMIT 0", batches(3, 100))
                .unwrap()
                .is_empty()
        );
        let all = run("SELECT * FROM t LIMIT 1000", batches(3, 100)).unwrap();
        assert_eq!(xs(&all).len(), 300);
    }

    #[test]
    fn predicate_filters_batch_at_a_time_and_coalesces() {
        // 100 batches of 1000 rows; x % 10 = 0 selects 100 rows of each.
        let output = run("SELECT x FROM t WHERE x % 10 = 0", batches(100, 1000)).unwrap();
        assert_eq!(xs(&output), (0..100_000).step_by(10).collect::<Vec<_>>());
        // Gathered into full batches rather than 100 batches of 100 rows.
        assert_eq!(output[0].num_rows(), FILTERED_BATCH_ROWS);
        assert_eq!(output.len(), 2);

        let output = run("SELECT * FROM t WHERE x > 5 LIMIT 3", batches(4, 4)).unwrap();
        assert_eq!(xs(&output), [6, 7, 8]);
        // A NULL comparison is not true.
        let output = run(
            "SELECT * FROM t WHERE name <> 'n0' AND x < 8",
            batches(2, 4),
        )
        .unwrap();
        assert_eq!(xs(&output), [1, 2, 4, 5, 6]);
        let output = run("SELECT name FROM t WHERE name IS NULL", batches(2, 4)).unwrap();
        assert_eq!(output[0].column(0).null_count(), 2);
        assert!(
            run("SELECT * FROM t WHERE x < 0", batches(2, 4))
                .unwrap()
                .is_empty()
        );
        // The same rows whatever the batch boundaries.
        for size in [1, 3, 7, 64] {
            let output = run(
                "SELECT * FROM t WHERE x BETWEEN 10 AND 40 AND x % 3 = 1 LIMIT 7",
                batches(64 / size, size),
            )
            .unwrap();
            assert_eq!(
                xs(&output),
                [10, 13, 16, 19, 22, 25, 28],
                "batch size {size}"
            );
        }
    }

    #[test]
    fn evaluation_errors_end_the_scan_with_the_statement() {
        let mut scan = parse_select("SELECT * FROM t WHERE x / (x - x) > 1")
            .unwrap()
            .plan(&schema())
            .unwrap()
            .scan(batches(2, 4));
        let error = scan.next().unwrap().unwrap_err().to_string();
        assert!(
            error.contains("statement 'SELECT * FROM t WHERE x / (x - x) > 1'"),
            "{error}"
        );
        assert!(scan.next().is_none());
    }

    #[test]
    fn predicate_text_parses_back_to_the_same_expression() {
        for sql in [
            "SELECT * FROM t WHERE x > 5",
            "SELECT * FROM t WHERE name LIKE 'a''b%' OR NOT (x IN (1, 2, 3))",
            "SELECT * FROM t WHERE CAST(x AS VARCHAR) = '3' AND name IS NOT NULL",
        ] {
            let query = parse_select(sql).unwrap();
            let text = query.predicate_text().unwrap();
            let back = parse_predicate(sql, &text).unwrap();
            assert_eq!(back.to_string(), text);
            assert_eq!(Some(back), query.predicate, "{sql}");
        }
        assert!(parse_predicate("s", "x >").is_err());
    }

    #[test]
    fn like_patterns() {
        for (pattern, text, expected) in [
            ("%", "", true),
            ("%", "anything", true),
            ("", "", true),
            ("", "a", false),
            ("bids", "bids", true),
            ("bids", "Bids", false),
            ("bid_", "bids", true),
            ("bid_", "bid", false),
            ("b%s", "bids", true),
            ("b%s", "bidsx", false),
            ("%_%", "", false),
            ("%_%", "x", true),
            ("a%b%c", "aXbYc", true),
            ("a%b%c", "aXcYb", false),
            ("%ab%ab", "abxabyab", true),
            ("q\\_1", "q_1", true),
            ("q\\_1", "qx1", false),
            ("100\\%", "100%", true),
            ("100\\%", "1000", false),
            ("trailing\\", "trailing\\", true),
            ("ü_", "üx", true),
        ] {
            assert_eq!(
                like_matches(pattern, text),
                expected,
                "'{text}' LIKE '{pattern}'"
            );
        }
    }

    #[test]
    fn names_match_exactly_then_case_insensitively_when_unique() {
        let names = ["a", "B", "b2", "C", "c"];
        let find = |name| find_name(names.iter().copied(), name);
        assert_eq!(find("a"), Some(0));
        assert_eq!(find("A"), Some(0));
        assert_eq!(find("b"), Some(1));
        assert_eq!(find("c"), Some(4));
        assert_eq!(find("C"), Some(3));
        // Ambiguous.
        assert_eq!(
            names.iter().filter(|n| n.eq_ignore_ascii_case("c")).count(),
            2
        );
        assert_eq!(find_name(["C", "c"].iter().copied(), "Cc"), None);
        assert_eq!(find_name(["Cc", "cC"].iter().copied(), "cc"), None);
    }
}
