//! Draws a result table as `arrow::util::pretty` does, without building a `comfy-table`.
//!
//! The SQL client prints every row a query returns. `comfy-table` builds a cell object for each
//! value and measures it by Unicode width; on TPC-H Q16's 18 314 rows that took 7% of the
//! whole query. Here each value is written once into one buffer, and a column is as wide as its
//! longest value. That is only the same as `comfy-table`'s width for printable ASCII, so a
//! table with anything else in a name or a value (a line break, a tab, a multi-byte
//! character) is drawn by `arrow::util::pretty` as before.

use std::fmt::Write;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow::util::display::{ArrayFormatter, FormatOptions};

use crate::{Error, Result};

/// The table of `batches` (with `schema`'s column names when there is no batch), as
/// `arrow::util::pretty::pretty_format_batches` draws it; without a trailing line break.
pub(crate) fn table(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<String> {
    match ascii_table(schema, batches)? {
        Some(table) => Ok(table),
        None => pretty(schema, batches),
    }
}

fn pretty(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<String> {
    let shown = if batches.is_empty() {
        arrow::util::pretty::pretty_format_batches(&[RecordBatch::new_empty(schema.clone())])
    } else {
        arrow::util::pretty::pretty_format_batches(batches)
    };
    Ok(shown
        .map_err(|e| Error::arrow("format a result", e))?
        .to_string())
}

/// Printable ASCII: one column of width per byte.
fn is_plain(text: &str) -> bool {
    text.bytes().all(|b| (0x20..0x7f).contains(&b))
}

/// The table, or `None` when a name or value is not printable ASCII (or there are no columns).
fn ascii_table(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<Option<String>> {
    // As `pretty`: the first batch's names, error text in place of a value that fails.
    let schema = batches
        .first()
        .map_or_else(|| schema.clone(), |b| b.schema());
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    if names.is_empty() || !names.iter().all(|n| is_plain(n)) {
        return Ok(None);
    }
    let options = FormatOptions::default().with_display_error(true);
    // A column is at least one character wide, as in `comfy-table`.
    let mut widths: Vec<usize> = names.iter().map(|n| n.len().max(1)).collect();
    let mut values = String::new();
    let mut ends: Vec<usize> = Vec::new();
    for batch in batches {
        if batch.num_columns() != names.len() {
            return Ok(None);
        }
        let formatters = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::arrow("format a result", e))?;
        for row in 0..batch.num_rows() {
            for (formatter, width) in formatters.iter().zip(&mut widths) {
                let start = values.len();
                let _ = write!(values, "{}", formatter.value(row));
                let value = &values[start..];
                if !is_plain(value) {
                    return Ok(None);
                }
                *width = (*width).max(value.len());
                ends.push(values.len());
            }
        }
    }
    let mut border = String::from("+");
    for width in &widths {
        border.extend(std::iter::repeat_n('-', width + 2));
        border.push('+');
    }
    let rows = ends.len() / names.len();
    let mut out = String::with_capacity((rows + 4) * (border.len() + 1));
    let line = |out: &mut String, cells: &mut dyn Iterator<Item = &str>| {
        out.push('|');
        for (cell, width) in cells.zip(&widths) {
            let _ = write!(out, " {cell:<width$} |");
        }
        out.push('\n');
    };
    out.push_str(&border);
    out.push('\n');
    line(&mut out, &mut names.iter().copied());
    out.push_str(&border);
    out.push('\n');
    let mut start = 0;
    for row in ends.chunks(names.len()) {
        let mut cells = row.iter().map(|&end| {
            let cell = &values[start..end];
            start = end;
            cell
        });
        line(&mut out, &mut cells);
    }
    // Closes the rows, or follows the header's border alone when there are none.
    out.push_str(&border);
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{ArrayRef, Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use proptest::prelude::*;

    use super::*;

    fn schema(names: &[String]) -> SchemaRef {
        Arc::new(Schema::new(
            names
                .iter()
                .enumerate()
                .map(|(i, n)| {
                    let data_type = if i % 2 == 0 {
                        DataType::Utf8
                    } else {
                        DataType::Int64
                    };
                    Field::new(n, data_type, true)
                })
                .collect::<Vec<_>>(),
        ))
    }

    fn batch(schema: &SchemaRef, rows: &[Vec<Option<String>>]) -> RecordBatch {
        let columns: Vec<ArrayRef> = (0..schema.fields().len())
            .map(|c| -> ArrayRef {
                let cells = rows.iter().map(|r| r[c].clone());
                if c % 2 == 0 {
                    Arc::new(StringArray::from_iter(cells))
                } else {
                    Arc::new(Int64Array::from_iter(
                        cells.map(|v| v.map(|v| v.len() as i64 * 1_000_003 - 7)),
                    ))
                }
            })
            .collect();
        RecordBatch::try_new(schema.clone(), columns).unwrap()
    }

    proptest! {
        /// The table is `pretty`'s, character for character: ASCII values of any width
        /// (empty included), NULLs, no rows or several batches, and values it leaves to
        /// `pretty` (line breaks, multi-byte characters).
        #[test]
        fn draws_what_pretty_draws(
            names in proptest::collection::vec("[a-z_]{0,6}", 1..4),
            batches in proptest::collection::vec(
                proptest::collection::vec(
                    proptest::collection::vec(
                        proptest::option::of("[ -~]{0,9}|é|a\nb"),
                        4,
                    ),
                    0..5,
                ),
                0..3,
            ),
        ) {
            let schema = schema(&names);
            let columns = names.len();
            let batches: Vec<RecordBatch> = batches
                .iter()
                .map(|rows| {
                    let rows: Vec<Vec<Option<String>>> =
                        rows.iter().map(|r| r[..columns].to_vec()).collect();
                    batch(&schema, &rows)
                })
                .collect();
            prop_assert_eq!(table(&schema, &batches).unwrap(), pretty(&schema, &batches).unwrap());
        }
    }
}
