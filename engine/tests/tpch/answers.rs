//! Checks a query's result against a reference answer: a CSV file with a header, as
//! `datasets/tpch/duckdb_answers.py` writes them (`<dir>/qNN.csv`, and `<dir>/types.csv` giving
//! the reference engine's type of every column, one line `qNN,TYPE,TYPE,…` per query).
//!
//! Rules, per value (an empty CSV field is NULL):
//! - a column the reference computed in floating point (`DOUBLE`, `FLOAT`, `REAL`) matches
//!   within a relative 1e-9, widened by half a unit of the last digit when our column is a
//!   `DECIMAL` (an average or quotient our engine keeps at a fixed scale);
//! - a `DECIMAL` or integer column matches by exact value (`1.50` equals `1.5`, never `1.49`);
//! - anything else (strings, dates) matches by its text.
//!
//! Rows are compared in order when the query orders its output, else as sorted multisets.
//! Column names are not compared: engines name unnamed expressions differently.
//!
//! Used by the TPC-H tests; include it with `#[path]` where another test needs it.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result, bail, ensure};
use arrow::array::RecordBatch;
use arrow::datatypes::DataType;
use arrow::util::display::{ArrayFormatter, FormatOptions};

/// A reference answer.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The reference's column names (shown in mismatch reports).
    pub columns: Vec<String>,
    /// The reference's column types, as it names them (`DECIMAL(38,2)`, `DOUBLE`, …).
    pub types: Vec<String>,
    pub rows: Vec<Vec<Option<String>>>,
}

impl Answer {
    /// Reads `<dir>/<query>.csv` and the query's line of `<dir>/types.csv`.
    pub fn read(dir: &Path, query: &str) -> Result<Answer> {
        let path = dir.join(format!("{query}.csv"));
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .from_path(&path)
            .with_context(|| format!("open answer '{}'", path.display()))?;
        let columns: Vec<String> = reader
            .headers()
            .with_context(|| format!("header of '{}'", path.display()))?
            .iter()
            .map(str::to_string)
            .collect();
        let mut rows = Vec::new();
        for (line, record) in reader.records().enumerate() {
            let record =
                record.with_context(|| format!("'{}', record {}", path.display(), line + 1))?;
            rows.push(
                record
                    .iter()
                    .map(|v| (!v.is_empty()).then(|| v.to_string()))
                    .collect(),
            );
        }

        let types_path = dir.join("types.csv");
        let mut types_reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_path(&types_path)
            .with_context(|| format!("open '{}'", types_path.display()))?;
        let mut types = None;
        for record in types_reader.records() {
            let record = record.with_context(|| format!("read '{}'", types_path.display()))?;
            if record.get(0) == Some(query) {
                types = Some(
                    record
                        .iter()
                        .skip(1)
                        .map(str::to_string)
                        .collect::<Vec<_>>(),
                );
            }
        }
        let types =
            types.with_context(|| format!("{query} missing from '{}'", types_path.display()))?;
        ensure!(
            types.len() == columns.len(),
            "'{}' gives {query} {} types for {} columns",
            types_path.display(),
            types.len(),
            columns.len()
        );
        Ok(Answer {
            columns,
            types,
            rows,
        })
    }

    fn is_floating(&self, column: usize) -> bool {
        self.types.get(column).is_some_and(|t| {
            let t = t.to_ascii_uppercase();
            t == "DOUBLE" || t == "FLOAT" || t == "REAL"
        })
    }

    fn is_exact_number(&self, column: usize) -> bool {
        self.types.get(column).is_some_and(|t| {
            let t = t.to_ascii_uppercase();
            // DECIMAL(p,s), INTEGER and the …INT family (TINYINT … HUGEINT, UBIGINT).
            t.starts_with("DECIMAL") || t.ends_with("INT") || t == "INTEGER"
        })
    }
}

/// One value of our result: its text (None for NULL) and the decimal scale of its column.
#[derive(Debug, Clone, PartialEq)]
struct Value {
    text: Option<String>,
    decimal_scale: Option<i8>,
}

/// The rows of `batches` as text, with each column's decimal scale.
fn result_rows(batches: &[RecordBatch]) -> Result<Vec<Vec<Value>>> {
    let options = FormatOptions::default();
    let mut rows = Vec::new();
    for batch in batches {
        let scales: Vec<Option<i8>> = batch
            .schema()
            .fields()
            .iter()
            .map(|f| match f.data_type() {
                DataType::Decimal128(_, s) | DataType::Decimal256(_, s) => Some(*s),
                _ => None,
            })
            .collect();
        let formatters = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<Result<Vec<_>, _>>()?;
        for row in 0..batch.num_rows() {
            rows.push(
                batch
                    .columns()
                    .iter()
                    .zip(&formatters)
                    .zip(&scales)
                    .map(|((column, formatter), scale)| Value {
                        text: (!column.is_null(row)).then(|| formatter.value(row).to_string()),
                        decimal_scale: *scale,
                    })
                    .collect(),
            );
        }
    }
    Ok(rows)
}

/// A number's exact value as text: no sign on zero, no leading zeros, no trailing fraction
/// zeros (`-01.500` → `-1.5`). None if `text` is not a plain decimal number.
fn normalize_decimal(text: &str) -> Option<String> {
    let text = text.trim();
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let (integer, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    if integer.is_empty() && fraction.is_empty()
        || !integer
            .chars()
            .chain(fraction.chars())
            .all(|c| c.is_ascii_digit())
    {
        return None;
    }
    let integer = integer.trim_start_matches('0');
    let fraction = fraction.trim_end_matches('0');
    let mut out = String::new();
    if negative && !(integer.is_empty() && fraction.is_empty()) {
        out.push('-');
    }
    out.push_str(if integer.is_empty() { "0" } else { integer });
    if !fraction.is_empty() {
        out.push('.');
        out.push_str(fraction);
    }
    Some(out)
}

/// Whether our `value` matches the reference's `expected` in column `column`.
fn matches(answer: &Answer, column: usize, expected: Option<&str>, value: &Value) -> bool {
    let (expected, actual) = match (expected, value.text.as_deref()) {
        (None, None) => return true,
        (Some(e), Some(a)) => (e, a),
        _ => return false,
    };
    if answer.is_floating(column) {
        let (Ok(e), Ok(a)) = (expected.parse::<f64>(), actual.parse::<f64>()) else {
            return false;
        };
        let mut tolerance = 1e-9 * e.abs().max(1e-3);
        if let Some(scale) = value.decimal_scale {
            tolerance += 0.5 * 10f64.powi(-i32::from(scale));
        }
        return (e - a).abs() <= tolerance;
    }
    if answer.is_exact_number(column) {
        return normalize_decimal(expected).is_some()
            && normalize_decimal(expected) == normalize_decimal(actual);
    }
    expected == actual
}

/// The sort key of a reference row (numbers normalized, so both sides sort alike).
fn expected_key(row: &[Option<String>]) -> Vec<String> {
    row.iter()
        .map(|v| match v {
            None => "\u{0}NULL".to_string(),
            Some(t) => normalize_decimal(t).unwrap_or_else(|| t.clone()),
        })
        .collect()
}

fn actual_key(row: &[Value]) -> Vec<String> {
    row.iter()
        .map(|v| match &v.text {
            None => "\u{0}NULL".to_string(),
            Some(t) => normalize_decimal(t).unwrap_or_else(|| t.clone()),
        })
        .collect()
}

fn show_row(row: &[Value]) -> String {
    row.iter()
        .map(|v| v.text.as_deref().unwrap_or("NULL"))
        .collect::<Vec<_>>()
        .join(" | ")
}

fn show_expected(row: &[Option<String>]) -> String {
    row.iter()
        .map(|v| v.as_deref().unwrap_or("NULL"))
        .collect::<Vec<_>>()
        .join(" | ")
}

/// Checks `batches` against `answer`; `ordered` compares rows in order (the query has an
/// `ORDER BY`). The error lists the first mismatching rows.
pub fn check(answer: &Answer, batches: &[RecordBatch], ordered: bool) -> Result<()> {
    let mut actual = result_rows(batches)?;
    let mut expected = answer.rows.clone();
    if let Some(row) = actual.first() {
        ensure!(
            row.len() == answer.columns.len(),
            "{} columns, expected {} ({})",
            row.len(),
            answer.columns.len(),
            answer.columns.join(", ")
        );
    }
    if !ordered {
        actual.sort_by_cached_key(|row| actual_key(row));
        expected.sort_by_cached_key(|row| expected_key(row));
    }
    let mut report = String::new();
    let mut mismatches = 0;
    for (index, (want, got)) in expected.iter().zip(&actual).enumerate() {
        let equal = want.len() == got.len()
            && want
                .iter()
                .zip(got)
                .enumerate()
                .all(|(column, (w, g))| matches(answer, column, w.as_deref(), g));
        if !equal {
            mismatches += 1;
            if mismatches <= 5 {
                let _ = writeln!(
                    report,
                    "row {index}:\n  expected {}\n  got      {}",
                    show_expected(want),
                    show_row(got)
                );
            }
        }
    }
    if mismatches == 0 && expected.len() == actual.len() {
        return Ok(());
    }
    let compared = expected.len().min(actual.len());
    let mut summary = Vec::new();
    if expected.len() != actual.len() {
        summary.push(format!(
            "sluice returned {} rows, DuckDB {}",
            actual.len(),
            expected.len()
        ));
        if let Some(row) = expected.get(actual.len()) {
            let _ = writeln!(report, "first missing: {}", show_expected(row));
        }
        if let Some(row) = actual.get(expected.len()) {
            let _ = writeln!(report, "first extra: {}", show_row(row));
        }
    }
    if mismatches > 0 || compared > 0 {
        summary.push(format!(
            "{mismatches} of the {compared} rows compared differ"
        ));
    }
    bail!(
        "{} (columns {}):\n{report}",
        summary.join("; "),
        answer.columns.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_compare_by_value() {
        assert_eq!(normalize_decimal("-01.500").as_deref(), Some("-1.5"));
        assert_eq!(normalize_decimal("-0.00").as_deref(), Some("0"));
        assert_eq!(normalize_decimal("12").as_deref(), Some("12"));
        assert_eq!(normalize_decimal("1e5"), None);
        assert_eq!(normalize_decimal("BUILDING"), None);
    }

    #[test]
    fn a_row_count_difference_names_both_counts() {
        let answer = Answer {
            columns: vec!["avg_yearly".into()],
            types: vec!["DOUBLE".into()],
            rows: vec![vec![None]],
        };
        let error = check(&answer, &[], false).expect_err("0 rows against 1");
        let message = format!("{error:#}");
        assert!(
            message.starts_with("sluice returned 0 rows, DuckDB 1 (columns avg_yearly)"),
            "{message}"
        );
        assert!(message.contains("first missing: NULL"), "{message}");
    }
}
