//! `VALUES (…), (…)` as a bounded source, and column aliases of derived tables
//! (`(VALUES …) AS t(x, y)`, `(SELECT …) AS t(a, b)`).
//!
//! Each row's expressions are evaluated once, at planning time, on a one-row batch without
//! columns (literals, casts, arithmetic on literals). A column's type is the common type of
//! its rows, as Flink infers it: `1` is INT, `1.5` is DECIMAL(2, 1), INT and DECIMAL mix to a
//! DECIMAL, strings are STRING. A `NULL` takes the type of the other rows; a column of untyped
//! `NULL`s only is an error (write `CAST(NULL AS type)`). Columns are named `EXPR$0`,
//! `EXPR$1`, … unless an alias names them.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, RecordBatchOptions};
use arrow::datatypes::{DataType, Field, Schema};
use sqlparser::ast::{Spanned, TableAlias, Values};

use super::{Planner, Rel};
use crate::api::DataStream;
use crate::element::ROW_KIND_COLUMN;
use crate::expr::coercion::common_type;
use crate::expr::col;
use crate::sql::expr::{self as sql_expr, Scope};
use crate::sql::types::sql_name;
use crate::{Error, Result};

/// An error at a node's position.
fn at(node: &impl Spanned, message: String) -> Error {
    let start = node.span().start;
    if start.line == 0 {
        return Error::expr(message);
    }
    Error::sql(
        format!("line {}, column {}", start.line, start.column),
        message,
    )
}

impl Planner<'_> {
    pub(super) fn plan_values(&mut self, values: &Values) -> Result<Rel> {
        let Some(first) = values.rows.first() else {
            return Err(Error::expr("VALUES without rows"));
        };
        let width = first.content.len();
        let empty = Arc::new(Schema::empty());
        let one_row = RecordBatch::try_new_with_options(
            empty.clone(),
            Vec::new(),
            &RecordBatchOptions::new().with_row_count(Some(1)),
        )
        .map_err(|e| Error::arrow("VALUES", e))?;
        // columns[c][r]: the value of column c in row r, as a one-element array.
        let mut columns: Vec<Vec<ArrayRef>> = vec![Vec::with_capacity(values.rows.len()); width];
        for (r, row) in values.rows.iter().enumerate() {
            if row.content.len() != width {
                return Err(at(
                    &row.content
                        .first()
                        .cloned()
                        .unwrap_or(sqlparser::ast::Expr::Value(
                            sqlparser::ast::Value::Null.into(),
                        )),
                    format!(
                        "VALUES row {} has {} values, but the first row has {width}",
                        r + 1,
                        row.content.len()
                    ),
                ));
            }
            for (c, expr) in row.content.iter().enumerate() {
                let converted = sql_expr::convert(expr, &Scope::default())?;
                let value = converted
                    .resolve(&empty)
                    .and_then(|physical| physical.evaluate(&one_row))
                    .map_err(|e| {
                        at(
                            expr,
                            format!("VALUES expects constant values, found '{expr}': {e}"),
                        )
                    })?;
                columns[c].push(value);
            }
        }
        let mut fields = Vec::with_capacity(width);
        let mut arrays = Vec::with_capacity(width);
        for (c, rows) in columns.iter().enumerate() {
            let mut data_type = DataType::Null;
            for (r, value) in rows.iter().enumerate() {
                data_type = common_type(&data_type, value.data_type()).ok_or_else(|| {
                    at(
                        &values.rows[r].content[c],
                        format!(
                            "VALUES column {} mixes {} and {}",
                            c + 1,
                            sql_name(&data_type),
                            sql_name(value.data_type())
                        ),
                    )
                })?;
            }
            if data_type == DataType::Null {
                return Err(at(
                    &values.rows[0].content[c],
                    format!(
                        "VALUES column {} has only untyped NULLs (use CAST(NULL AS <type>))",
                        c + 1
                    ),
                ));
            }
            let cast = rows
                .iter()
                .map(|v| arrow::compute::cast(v, &data_type).map_err(|e| Error::arrow("VALUES", e)))
                .collect::<Result<Vec<_>>>()?;
            let refs: Vec<&dyn arrow::array::Array> = cast.iter().map(|a| a.as_ref()).collect();
            let array = arrow::compute::concat(&refs).map_err(|e| Error::arrow("VALUES", e))?;
            fields.push(Field::new(
                format!("EXPR${c}"),
                data_type,
                array.null_count() > 0,
            ));
            arrays.push(array);
        }
        let schema = Arc::new(Schema::new(fields));
        let batch =
            RecordBatch::try_new(schema.clone(), arrays).map_err(|e| Error::arrow("VALUES", e))?;
        Ok(Rel {
            stream: self.env.from_batches("Values", schema, vec![batch])?,
            window: None,
        })
    }
}

impl Planner<'_> {
    /// `SELECT <constants> [WHERE …]`: the select list over one row without columns.
    pub(super) fn plan_select_without_from(
        &mut self,
        select: &sqlparser::ast::Select,
    ) -> Result<Rel> {
        let has_groups = !matches!(&select.group_by, sqlparser::ast::GroupByExpr::Expressions(e, _) if e.is_empty());
        if has_groups || select.having.is_some() {
            return Err(Error::expr("GROUP BY and HAVING need a FROM clause"));
        }
        // One row of a hidden column (`$` columns are not part of `*`).
        let schema = Arc::new(Schema::new(vec![Field::new(
            "$row",
            DataType::Int32,
            false,
        )]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(arrow::array::Int32Array::from(vec![0]))],
        )
        .map_err(|e| Error::arrow("SELECT without FROM", e))?;
        let mut stream = self.env.from_batches("Values", schema, vec![batch])?;
        if let Some(predicate) = &select.selection {
            stream = stream.filter(sql_expr::convert(predicate, &Scope::default())?)?;
        }
        let stream = self.project_items(&stream, &select.projection, &[], &[])?;
        Ok(Rel {
            stream,
            window: None,
        })
    }
}

/// Renames a derived table's columns to its alias's column list (`AS t(a, b)`).
pub(super) fn rename_columns(stream: DataStream, alias: Option<&TableAlias>) -> Result<DataStream> {
    let Some(alias) = alias.filter(|a| !a.columns.is_empty()) else {
        return Ok(stream);
    };
    let schema = stream.schema();
    let fields: Vec<&Arc<Field>> = schema
        .fields()
        .iter()
        .filter(|f| f.name() != ROW_KIND_COLUMN)
        .collect();
    if fields.len() != alias.columns.len() {
        let start = alias.name.span.start;
        return Err(Error::sql(
            format!("line {}, column {}", start.line, start.column),
            format!(
                "'{}' names {} columns, but its query has {} ({})",
                alias.name.value,
                alias.columns.len(),
                fields.len(),
                fields
                    .iter()
                    .map(|f| f.name().as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    let mut columns = Vec::with_capacity(schema.fields().len());
    if schema.index_of(ROW_KIND_COLUMN).is_ok() {
        columns.push((ROW_KIND_COLUMN.to_string(), col(ROW_KIND_COLUMN)));
    }
    for (field, name) in fields.iter().zip(&alias.columns) {
        columns.push((name.name.value.clone(), col(field.name())));
    }
    stream.project(columns)
}
