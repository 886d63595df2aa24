//! Typed column builders filled from CSV fields, one column of a whole batch at a time.
//!
//! The CSV reader collects a batch of raw records first; then, for each declared column, one
//! [`ColumnBuilder::fill`] call matches on the column's type once and runs a monomorphised loop
//! over the rows, so there is no per-row dynamic dispatch and no per-row allocation. A field
//! that cannot be parsed is reported as a [`Rejected`] (row, column, reason): under the default
//! policy the caller turns the first one into an error naming file, line and column; under the
//! skip policy the row is marked in [`Rejects`] and later filtered out of every column.
//!
//! Text rules (Flink's `csv` format): numbers, booleans, dates and timestamps are trimmed of
//! ASCII whitespace and an empty field is NULL; a string field is taken verbatim and is NULL only
//! when it equals `csv.null-literal`. Booleans are `true`/`false` in any case, dates
//! `YYYY-MM-DD`, timestamps `YYYY-MM-DD HH:MM:SS[.fffffffff]` (or with `T`), truncated to
//! milliseconds.

use std::sync::Arc;

use ::csv::ByteRecord;
use arrow::array::{
    ArrayRef, BooleanBuilder, Date32Builder, Decimal128Builder, Float32Builder, Float64Builder,
    Int8Builder, Int16Builder, Int32Builder, Int64Builder, PrimitiveBuilder, StringBuilder,
    TimestampMillisecondBuilder, UInt8Builder, UInt16Builder, UInt32Builder, UInt64Builder,
};
use arrow::compute::kernels::cast_utils::parse_decimal;
use arrow::datatypes::{ArrowPrimitiveType, DataType, Decimal128Type, Field, TimeUnit};

use crate::{Error, Result};

/// Why a field was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RejectReason {
    /// The text is not a value of the column's type.
    Unparsable,
    /// An empty field or the null literal in a NOT NULL column.
    NullInNotNull,
    /// A string field is not valid UTF-8.
    InvalidUtf8,
    /// The record has more or fewer fields than the schema has columns.
    WrongFieldCount,
}

/// A rejected field: the row within the batch, the column index and the reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Rejected {
    pub row: usize,
    pub column: usize,
    pub reason: RejectReason,
}

/// Rows rejected so far in the current batch (skip policy only).
#[derive(Debug, Default)]
pub(super) struct Rejects {
    /// `bad[row]` is true when the row is dropped from the batch.
    pub bad: Vec<bool>,
    /// How many entries of `bad` are true.
    pub count: usize,
    /// The first rejection of the batch, for the log.
    pub first: Option<Rejected>,
}

impl Rejects {
    /// Clears the marks and sizes them for `rows` rows.
    pub fn reset(&mut self, rows: usize) {
        self.bad.clear();
        self.bad.resize(rows, false);
        self.count = 0;
        self.first = None;
    }

    pub fn reject(&mut self, rejected: Rejected) {
        if let Some(bad) = self.bad.get_mut(rejected.row)
            && !*bad
        {
            *bad = true;
            self.count += 1;
        }
        self.first.get_or_insert(rejected);
    }

    fn is_bad(&self, row: usize) -> bool {
        self.bad.get(row).copied().unwrap_or(false)
    }
}

/// How the fields of one column are read.
#[derive(Debug, Clone, Copy)]
pub(super) struct FieldRules<'a> {
    /// `csv.null-literal`, if set.
    pub null_literal: Option<&'a [u8]>,
    /// Whether the declared column accepts NULL.
    pub nullable: bool,
    /// Skip policy: reject the row instead of failing.
    pub skip: bool,
}

/// A builder for one declared column, typed by the column's Arrow type.
#[derive(Debug)]
pub(super) enum ColumnBuilder {
    Int8(Int8Builder),
    Int16(Int16Builder),
    Int32(Int32Builder),
    Int64(Int64Builder),
    UInt8(UInt8Builder),
    UInt16(UInt16Builder),
    UInt32(UInt32Builder),
    UInt64(UInt64Builder),
    Float32(Float32Builder),
    Float64(Float64Builder),
    Boolean(BooleanBuilder),
    Utf8(StringBuilder),
    Date32(Date32Builder),
    TimestampMillis(TimestampMillisecondBuilder),
    Decimal128 {
        builder: Decimal128Builder,
        precision: u8,
        scale: i8,
    },
}

impl ColumnBuilder {
    /// A builder for `field`, or a plan error if the csv format cannot read its type.
    pub fn try_new(field: &Field, capacity: usize) -> Result<Self> {
        Ok(match field.data_type() {
            DataType::Int8 => ColumnBuilder::Int8(Int8Builder::with_capacity(capacity)),
            DataType::Int16 => ColumnBuilder::Int16(Int16Builder::with_capacity(capacity)),
            DataType::Int32 => ColumnBuilder::Int32(Int32Builder::with_capacity(capacity)),
            DataType::Int64 => ColumnBuilder::Int64(Int64Builder::with_capacity(capacity)),
            DataType::UInt8 => ColumnBuilder::UInt8(UInt8Builder::with_capacity(capacity)),
            DataType::UInt16 => ColumnBuilder::UInt16(UInt16Builder::with_capacity(capacity)),
            DataType::UInt32 => ColumnBuilder::UInt32(UInt32Builder::with_capacity(capacity)),
            DataType::UInt64 => ColumnBuilder::UInt64(UInt64Builder::with_capacity(capacity)),
            DataType::Float32 => ColumnBuilder::Float32(Float32Builder::with_capacity(capacity)),
            DataType::Float64 => ColumnBuilder::Float64(Float64Builder::with_capacity(capacity)),
            DataType::Boolean => ColumnBuilder::Boolean(BooleanBuilder::with_capacity(capacity)),
            DataType::Utf8 => {
                ColumnBuilder::Utf8(StringBuilder::with_capacity(capacity, capacity * 16))
            }
            DataType::Date32 => ColumnBuilder::Date32(Date32Builder::with_capacity(capacity)),
            DataType::Timestamp(TimeUnit::Millisecond, None) => {
                ColumnBuilder::TimestampMillis(TimestampMillisecondBuilder::with_capacity(capacity))
            }
            DataType::Decimal128(precision, scale) => ColumnBuilder::Decimal128 {
                builder: Decimal128Builder::with_capacity(capacity)
                    .with_precision_and_scale(*precision, *scale)
                    .map_err(|e| Error::arrow(format!("column '{}'", field.name()), e))?,
                precision: *precision,
                scale: *scale,
            },
            other => {
                return Err(Error::plan(
                    "filesystem source",
                    format!(
                        "column '{}' has type {other}, which the csv format cannot read",
                        field.name()
                    ),
                ));
            }
        })
    }

    /// Appends field `column` of every record, one value per record. Rows already marked bad
    /// get a placeholder NULL (they are filtered out later). Returns the first rejection unless
    /// `rules.skip`, in which case rejections are recorded in `rejects`.
    pub fn fill(
        &mut self,
        records: &[ByteRecord],
        column: usize,
        rules: FieldRules<'_>,
        rejects: &mut Rejects,
    ) -> Result<(), Rejected> {
        let column = Column {
            records,
            index: column,
            rules,
        };
        match self {
            ColumnBuilder::Int8(b) => column.fill_parsed(b, rejects, |s| s.parse().ok()),
            ColumnBuilder::Int16(b) => column.fill_parsed(b, rejects, |s| s.parse().ok()),
            ColumnBuilder::Int32(b) => column.fill_parsed(b, rejects, |s| s.parse().ok()),
            ColumnBuilder::Int64(b) => column.fill_parsed(b, rejects, |s| s.parse().ok()),
            ColumnBuilder::UInt8(b) => column.fill_parsed(b, rejects, |s| s.parse().ok()),
            ColumnBuilder::UInt16(b) => column.fill_parsed(b, rejects, |s| s.parse().ok()),
            ColumnBuilder::UInt32(b) => column.fill_parsed(b, rejects, |s| s.parse().ok()),
            ColumnBuilder::UInt64(b) => column.fill_parsed(b, rejects, |s| s.parse().ok()),
            ColumnBuilder::Float32(b) => column.fill_parsed(b, rejects, |s| s.parse().ok()),
            ColumnBuilder::Float64(b) => column.fill_parsed(b, rejects, |s| s.parse().ok()),
            ColumnBuilder::Boolean(b) => column.fill_parsed(b, rejects, parse_bool),
            ColumnBuilder::Date32(b) => column.fill_parsed(b, rejects, parse_date),
            ColumnBuilder::TimestampMillis(b) => {
                column.fill_parsed(b, rejects, parse_timestamp_millis)
            }
            ColumnBuilder::Decimal128 {
                builder,
                precision,
                scale,
            } => {
                let (precision, scale) = (*precision, *scale);
                column.fill_parsed(builder, rejects, |s| {
                    parse_decimal::<Decimal128Type>(s, precision, scale).ok()
                })
            }
            ColumnBuilder::Utf8(b) => column.fill_strings(b, rejects),
        }
    }

    /// The values appended since the last call, as an array; the builder is reset.
    pub fn finish(&mut self) -> ArrayRef {
        match self {
            ColumnBuilder::Int8(b) => Arc::new(b.finish()),
            ColumnBuilder::Int16(b) => Arc::new(b.finish()),
            ColumnBuilder::Int32(b) => Arc::new(b.finish()),
            ColumnBuilder::Int64(b) => Arc::new(b.finish()),
            ColumnBuilder::UInt8(b) => Arc::new(b.finish()),
            ColumnBuilder::UInt16(b) => Arc::new(b.finish()),
            ColumnBuilder::UInt32(b) => Arc::new(b.finish()),
            ColumnBuilder::UInt64(b) => Arc::new(b.finish()),
            ColumnBuilder::Float32(b) => Arc::new(b.finish()),
            ColumnBuilder::Float64(b) => Arc::new(b.finish()),
            ColumnBuilder::Boolean(b) => Arc::new(b.finish()),
            ColumnBuilder::Utf8(b) => Arc::new(b.finish()),
            ColumnBuilder::Date32(b) => Arc::new(b.finish()),
            ColumnBuilder::TimestampMillis(b) => Arc::new(b.finish()),
            ColumnBuilder::Decimal128 { builder, .. } => Arc::new(builder.finish()),
        }
    }
}

/// A builder that takes a parsed value or a NULL.
trait Append {
    type Value;
    fn append_value(&mut self, value: Self::Value);
    fn append_null(&mut self);
}

impl<T: ArrowPrimitiveType> Append for PrimitiveBuilder<T> {
    type Value = T::Native;
    fn append_value(&mut self, value: T::Native) {
        PrimitiveBuilder::append_value(self, value);
    }
    fn append_null(&mut self) {
        PrimitiveBuilder::append_null(self);
    }
}

impl Append for BooleanBuilder {
    type Value = bool;
    fn append_value(&mut self, value: bool) {
        BooleanBuilder::append_value(self, value);
    }
    fn append_null(&mut self) {
        BooleanBuilder::append_null(self);
    }
}

/// One column of a batch of records.
struct Column<'a> {
    records: &'a [ByteRecord],
    index: usize,
    rules: FieldRules<'a>,
}

impl Column<'_> {
    fn field<'r>(&self, record: &'r ByteRecord) -> &'r [u8] {
        // The reader checked every record's field count before filling columns.
        record.get(self.index).unwrap_or_default()
    }

    fn reject(
        &self,
        row: usize,
        reason: RejectReason,
        rejects: &mut Rejects,
    ) -> Result<(), Rejected> {
        let rejected = Rejected {
            row,
            column: self.index,
            reason,
        };
        if self.rules.skip {
            rejects.reject(rejected);
            Ok(())
        } else {
            Err(rejected)
        }
    }

    /// Non-string columns: trim, treat empty (or the null literal) as NULL, else parse.
    fn fill_parsed<B: Append>(
        &self,
        builder: &mut B,
        rejects: &mut Rejects,
        parse: impl Fn(&str) -> Option<B::Value>,
    ) -> Result<(), Rejected> {
        for (row, record) in self.records.iter().enumerate() {
            if rejects.is_bad(row) {
                builder.append_null();
                continue;
            }
            let raw = self.field(record);
            let text = raw.trim_ascii();
            let reason = if text.is_empty() || self.rules.null_literal == Some(raw) {
                if self.rules.nullable {
                    builder.append_null();
                    continue;
                }
                RejectReason::NullInNotNull
            } else {
                match std::str::from_utf8(text).ok().and_then(&parse) {
                    Some(value) => {
                        builder.append_value(value);
                        continue;
                    }
                    None => RejectReason::Unparsable,
                }
            };
            builder.append_null();
            self.reject(row, reason, rejects)?;
        }
        Ok(())
    }

    /// String columns: verbatim, NULL only when equal to the null literal.
    fn fill_strings(
        &self,
        builder: &mut StringBuilder,
        rejects: &mut Rejects,
    ) -> Result<(), Rejected> {
        for (row, record) in self.records.iter().enumerate() {
            if rejects.is_bad(row) {
                builder.append_null();
                continue;
            }
            let raw = self.field(record);
            let reason = if self.rules.null_literal == Some(raw) {
                if self.rules.nullable {
                    builder.append_null();
                    continue;
                }
                RejectReason::NullInNotNull
            } else {
                match std::str::from_utf8(raw) {
                    Ok(text) => {
                        builder.append_value(text);
                        continue;
                    }
                    Err(_) => RejectReason::InvalidUtf8,
                }
            };
            builder.append_null();
            self.reject(row, reason, rejects)?;
        }
        Ok(())
    }
}

/// The SQL name of a type, for error messages (`BIGINT`, `DECIMAL(10, 2)`, …).
pub(super) fn sql_type_name(data_type: &DataType) -> String {
    match data_type {
        DataType::Int8 => "TINYINT".into(),
        DataType::Int16 => "SMALLINT".into(),
        DataType::Int32 => "INT".into(),
        DataType::Int64 => "BIGINT".into(),
        DataType::UInt8 => "TINYINT UNSIGNED".into(),
        DataType::UInt16 => "SMALLINT UNSIGNED".into(),
        DataType::UInt32 => "INT UNSIGNED".into(),
        DataType::UInt64 => "BIGINT UNSIGNED".into(),
        DataType::Float32 => "FLOAT".into(),
        DataType::Float64 => "DOUBLE".into(),
        DataType::Boolean => "BOOLEAN".into(),
        DataType::Utf8 => "STRING".into(),
        DataType::Date32 => "DATE".into(),
        DataType::Timestamp(TimeUnit::Millisecond, None) => "TIMESTAMP(3)".into(),
        DataType::Decimal128(precision, scale) => format!("DECIMAL({precision}, {scale})"),
        other => other.to_string(),
    }
}

fn parse_bool(text: &str) -> Option<bool> {
    if text.eq_ignore_ascii_case("true") {
        Some(true)
    } else if text.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

/// Parses exactly `N` ASCII digits.
fn digits<const N: usize>(bytes: &[u8]) -> Option<u32> {
    if bytes.len() != N {
        return None;
    }
    bytes.iter().try_fold(0u32, |acc, &b| {
        b.is_ascii_digit().then(|| acc * 10 + u32::from(b - b'0'))
    })
}

fn is_leap_year(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (valid month and day).
///
/// Counts in 400-year eras starting on March 1st, which puts the leap day at the end of a
/// counting year so the day-of-year formula needs no leap-year branch.
fn days_since_epoch(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let month_from_march = i64::from((month + 9) % 12);
    let day_of_year = (153 * month_from_march + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    // 719_468 days separate 0000-03-01 (the start of era 0) from 1970-01-01.
    era * 146_097 + day_of_era - 719_468
}

/// `YYYY-MM-DD` as days since the epoch.
fn parse_date_days(bytes: &[u8]) -> Option<i64> {
    if bytes.len() != 10 || bytes[4] != b'-' || bytes[7] != b'-' {
        return None;
    }
    let year = i64::from(digits::<4>(&bytes[0..4])?);
    let month = digits::<2>(&bytes[5..7])?;
    let day = digits::<2>(&bytes[8..10])?;
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    Some(days_since_epoch(year, month, day))
}

pub(super) fn parse_date(text: &str) -> Option<i32> {
    parse_date_days(text.as_bytes()).and_then(|days| i32::try_from(days).ok())
}

/// `YYYY-MM-DD HH:MM:SS[.fffffffff]` (or `T` between date and time) as milliseconds since the
/// epoch; digits beyond milliseconds are truncated.
pub(super) fn parse_timestamp_millis(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    if bytes.len() < 19 || !matches!(bytes[10], b' ' | b'T') {
        return None;
    }
    let days = parse_date_days(&bytes[..10])?;
    let time = &bytes[11..19];
    if time[2] != b':' || time[5] != b':' {
        return None;
    }
    let hour = digits::<2>(&time[0..2])?;
    let minute = digits::<2>(&time[3..5])?;
    let second = digits::<2>(&time[6..8])?;
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let millis = match &bytes[19..] {
        [] => 0,
        [b'.', fraction @ ..] if (1..=9).contains(&fraction.len()) => {
            if !fraction.iter().all(u8::is_ascii_digit) {
                return None;
            }
            fraction
                .iter()
                .chain(std::iter::repeat(&b'0'))
                .take(3)
                .fold(0i64, |acc, &b| acc * 10 + i64::from(b - b'0'))
        }
        _ => return None,
    };
    let seconds = days * 86_400 + i64::from(hour * 3_600 + minute * 60 + second);
    Some(seconds * 1_000 + millis)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::Int64Type;

    #[test]
    fn dates() {
        assert_eq!(parse_date("1970-01-01"), Some(0));
        assert_eq!(parse_date("1970-01-02"), Some(1));
        assert_eq!(parse_date("1969-12-31"), Some(-1));
        assert_eq!(parse_date("2000-03-01"), Some(11_017));
        assert_eq!(parse_date("2024-02-29"), Some(19_782));
        assert_eq!(parse_date("0001-01-01"), Some(-719_162));
        for bad in [
            "2023-02-29",
            "2024-13-01",
            "2024-1-01",
            "2024/01/01",
            "abcd-01-01",
            "",
        ] {
            assert_eq!(parse_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn timestamps() {
        assert_eq!(parse_timestamp_millis("1970-01-01 00:00:00"), Some(0));
        assert_eq!(parse_timestamp_millis("1970-01-01T00:00:01.5"), Some(1_500));
        assert_eq!(
            parse_timestamp_millis("2024-02-29 12:34:56.789123"),
            Some(1_709_210_096_789)
        );
        assert_eq!(parse_timestamp_millis("1969-12-31 23:59:59.999"), Some(-1));
        for bad in [
            "2024-02-29",
            "2024-02-29 24:00:00",
            "2024-02-29 12:34:56.",
            "2024-02-29 12:34:56.1234567890",
            "2024-02-29 12:34:56+01:00",
            "2024-02-29 12-34-56",
        ] {
            assert_eq!(parse_timestamp_millis(bad), None, "{bad}");
        }
    }

    #[test]
    fn fill_marks_bad_rows_under_skip_policy() {
        let records: Vec<ByteRecord> = ["1", " 2 ", "x", "", "NULL"]
            .iter()
            .map(|f| ByteRecord::from(vec![*f]))
            .collect();
        let field = Field::new("n", DataType::Int64, true);
        let mut builder = ColumnBuilder::try_new(&field, 8).expect("supported type");
        let mut rejects = Rejects::default();
        rejects.reset(records.len());
        let rules = FieldRules {
            null_literal: Some(b"NULL"),
            nullable: true,
            skip: true,
        };
        builder
            .fill(&records, 0, rules, &mut rejects)
            .expect("skip policy never fails");
        let array = builder.finish();
        let values = array.as_primitive::<Int64Type>();
        assert_eq!(values.value(0), 1);
        assert_eq!(values.value(1), 2);
        assert!(values.is_null(3) && values.is_null(4));
        assert_eq!(rejects.bad, vec![false, false, true, false, false]);
        assert_eq!(
            rejects.first,
            Some(Rejected {
                row: 2,
                column: 0,
                reason: RejectReason::Unparsable
            })
        );

        let strict = FieldRules {
            skip: false,
            nullable: false,
            ..rules
        };
        rejects.reset(records.len());
        let err = builder
            .fill(&records, 0, strict, &mut rejects)
            .expect_err("strict policy fails");
        assert_eq!(err.row, 2);
        builder.finish();
        let err = builder
            .fill(&records[3..], 0, strict, &mut rejects)
            .expect_err("NULL in NOT NULL");
        assert_eq!(err.reason, RejectReason::NullInNotNull);
    }

    #[test]
    fn unsupported_type_is_a_plan_error() {
        let field = Field::new("t", DataType::Time32(TimeUnit::Second), true);
        let err = ColumnBuilder::try_new(&field, 1).expect_err("unsupported");
        assert!(err.to_string().contains("column 't'"), "{err}");
    }
}
