//! Flink's `datagen` connector: random and sequence columns for any schema.
//!
//! The SQL `WITH` options are parsed into a validated [`DatagenConfig`]
//! ([`DatagenConfig::from_options`]); each source subtask then builds a
//! [`DatagenGenerator`] for its share and pulls batches.
//!
//! Options (Flink's keys, plus `seed` and `reference-time`, which Flink lacks
//! because its generator is not reproducible):
//!
//! | key | meaning | default |
//! |---|---|---|
//! | `connector` | must be `datagen` | – |
//! | `number-of-rows` | total rows over all subtasks | unbounded |
//! | `rows-per-second` | rate limit over all subtasks, enforced by the caller ([`DatagenGenerator::rows_due`]) | 10000 |
//! | `seed` | seed of all random values | 0 |
//! | `reference-time` | "now" for random `DATE`/`TIMESTAMP` values, ms since the epoch | 1704067200000 (2024-01-01) |
//! | `fields.<f>.kind` | `random` or `sequence` | `random` |
//! | `fields.<f>.min` / `.max` | range of random numbers (inclusive) | the type's range |
//! | `fields.<f>.length` | length of random strings | 100 |
//! | `fields.<f>.start` / `.end` | range of a sequence (inclusive), both required | – |
//! | `fields.<f>.null-rate` | share of nulls, 0.0–1.0 | 0.0 |
//! | `fields.<f>.max-past` | random `DATE`/`TIMESTAMP` values lie in `[reference-time - max-past, reference-time]`; `"5 min"`, `"10 s"`, `"2 d"` or plain ms | 0 |
//!
//! Supported types: `BOOLEAN`, `TINYINT`–`BIGINT`, `FLOAT`, `DOUBLE`,
//! `DECIMAL(p, s)` (`Decimal128`), `STRING` (`Utf8`), `DATE` (`Date32`) and
//! `TIMESTAMP(3)` (`Timestamp(Millisecond, _)`). Sequences are supported for
//! integers, and for floats and strings with integer `start`/`end` (a string
//! sequence holds the number as text). Random strings are hex digits, as in
//! Flink.
//!
//! Rows are numbered globally. With a row bound (`number-of-rows` or a
//! sequence, whose length `end - start + 1` bounds the rows as in Flink; the
//! smallest bound wins) subtask `i` of `p` gets a contiguous range of rows,
//! the first `total % p` subtasks one more, so sequences are partitioned as
//! in Flink. Without a bound, subtask `i` produces rows `i, i + p, i + 2p, …`.
//! Every value is a pure function of `(seed, field, global row)`, so the
//! concatenation of the subtasks' output equals a single subtask's output.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{ArrayRef, BooleanArray, RecordBatch, RecordBatchOptions};
use arrow::buffer::{BooleanBuffer, NullBuffer};
use arrow::datatypes::{
    DataType, Date32Type, Decimal128Type, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type,
    Int64Type, SchemaRef, TimeUnit, TimestampMillisecondType,
};

use crate::column::{StringColumn, primitive};
use crate::error::{Error, Result};
use crate::random::{SplitMix64, below, hash_at, mix64, stream_key, unit_f64};

/// Default of `rows-per-second`, as in Flink.
const DEFAULT_ROWS_PER_SECOND: u64 = 10_000;
/// Default of `fields.<f>.length`, as in Flink.
const DEFAULT_STRING_LENGTH: usize = 100;
/// Default of `reference-time`: 2024-01-01T00:00:00Z.
const DEFAULT_REFERENCE_TIME_MS: i64 = 1_704_067_200_000;
/// Longest random string accepted (bytes).
const MAX_STRING_LENGTH: usize = 1 << 20;
const MS_PER_DAY: i64 = 86_400_000;

const GLOBAL_KEYS: &[&str] = &[
    "connector",
    "number-of-rows",
    "rows-per-second",
    "seed",
    "reference-time",
];
const FIELD_KEYS: &[&str] = &[
    "kind",
    "min",
    "max",
    "length",
    "start",
    "end",
    "null-rate",
    "max-past",
];

/// A validated `datagen` configuration for one table.
#[derive(Debug, Clone)]
pub struct DatagenConfig {
    schema: SchemaRef,
    total_rows: Option<u64>,
    rows_per_second: u64,
    seed: u64,
    columns: Vec<ColumnSpec>,
}

/// How one column's values are made.
#[derive(Debug, Clone)]
struct ColumnSpec {
    values: Values,
    /// Rows with `hash < null_threshold` are null; `None` = never null.
    null_threshold: Option<u64>,
    value_key: u64,
    null_key: u64,
}

#[derive(Debug, Clone, Copy)]
enum IntWidth {
    I8,
    I16,
    I32,
    I64,
}

impl IntWidth {
    fn range(self) -> (i64, i64) {
        match self {
            IntWidth::I8 => (i8::MIN.into(), i8::MAX.into()),
            IntWidth::I16 => (i16::MIN.into(), i16::MAX.into()),
            IntWidth::I32 => (i32::MIN.into(), i32::MAX.into()),
            IntWidth::I64 => (i64::MIN, i64::MAX),
        }
    }
}

#[derive(Debug, Clone)]
enum Values {
    Boolean,
    RandomInt {
        width: IntWidth,
        min: i64,
        max: i64,
    },
    SequenceInt {
        width: IntWidth,
        start: i64,
    },
    RandomFloat {
        single: bool,
        min: f64,
        max: f64,
    },
    SequenceFloat {
        single: bool,
        start: f64,
    },
    RandomDecimal {
        precision: u8,
        scale: i8,
        min: i128,
        max: i128,
    },
    RandomString {
        length: usize,
    },
    SequenceString {
        start: i64,
    },
    RandomDate {
        reference_day: i32,
        max_past_days: u64,
    },
    RandomTimestamp {
        timezone: Option<Arc<str>>,
        reference_ms: i64,
        max_past_ms: u64,
    },
}

/// The options of one field, as written.
#[derive(Default)]
struct FieldOptions<'a> {
    kind: Option<&'a str>,
    min: Option<&'a str>,
    max: Option<&'a str>,
    length: Option<&'a str>,
    start: Option<&'a str>,
    end: Option<&'a str>,
    null_rate: Option<&'a str>,
    max_past: Option<&'a str>,
}

impl DatagenConfig {
    /// Parses and validates the `WITH` options of a `datagen` table with
    /// `schema`. Errors name the offending key and value.
    ///
    /// ```
    /// use std::collections::BTreeMap;
    /// use std::sync::Arc;
    /// use arrow::datatypes::{DataType, Field, Schema};
    /// use sluice_datasets::datagen::{DatagenConfig, DatagenGenerator};
    ///
    /// let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
    /// let options = BTreeMap::from([
    ///     ("fields.id.kind".to_string(), "sequence".to_string()),
    ///     ("fields.id.start".to_string(), "1".to_string()),
    ///     ("fields.id.end".to_string(), "10".to_string()),
    /// ]);
    /// let config = DatagenConfig::from_options(schema, &options)?;
    /// assert_eq!(config.total_rows(), Some(10));
    /// let mut generator = DatagenGenerator::new(&config, 0, 1)?;
    /// assert_eq!(generator.next_batch(100)?.map(|b| b.num_rows()), Some(10));
    /// # Ok::<(), sluice_datasets::Error>(())
    /// ```
    pub fn from_options(schema: SchemaRef, options: &BTreeMap<String, String>) -> Result<Self> {
        let mut number_of_rows = None;
        let mut rows_per_second = DEFAULT_ROWS_PER_SECOND;
        let mut seed = 0;
        let mut reference_ms = DEFAULT_REFERENCE_TIME_MS;
        let mut field_options: Vec<FieldOptions<'_>> = schema
            .fields()
            .iter()
            .map(|_| FieldOptions::default())
            .collect();

        for (key, value) in options {
            if let Some(rest) = key.strip_prefix("fields.") {
                let Some((field, option)) = rest.rsplit_once('.') else {
                    return Err(unknown_key(key, &[]));
                };
                let Some(index) = schema.fields().iter().position(|f| f.name() == field) else {
                    return Err(Error::UnknownField {
                        field: field.to_string(),
                        key: key.clone(),
                    });
                };
                let slot = &mut field_options[index];
                let value = Some(value.as_str());
                match option {
                    "kind" => slot.kind = value,
                    "min" => slot.min = value,
                    "max" => slot.max = value,
                    "length" => slot.length = value,
                    "start" => slot.start = value,
                    "end" => slot.end = value,
                    "null-rate" => slot.null_rate = value,
                    "max-past" => slot.max_past = value,
                    _ => {
                        let valid: Vec<String> = FIELD_KEYS
                            .iter()
                            .map(|k| format!("fields.{field}.{k}"))
                            .collect();
                        return Err(unknown_key(key, &valid));
                    }
                }
                continue;
            }
            match key.as_str() {
                "connector" => {
                    if value != "datagen" {
                        return Err(Error::invalid_option(key, value, "is not 'datagen'"));
                    }
                }
                "number-of-rows" => number_of_rows = Some(parse_u64(key, value)?),
                "rows-per-second" => {
                    rows_per_second = parse_u64(key, value)?;
                    if rows_per_second == 0 {
                        return Err(Error::invalid_option(key, value, "must be at least 1"));
                    }
                }
                "seed" => seed = parse_u64(key, value)?,
                "reference-time" => reference_ms = parse_i64(key, value)?,
                _ => {
                    let valid: Vec<String> = GLOBAL_KEYS.iter().map(|k| k.to_string()).collect();
                    return Err(unknown_key(key, &valid));
                }
            }
        }

        let mut total_rows = number_of_rows;
        let mut columns = Vec::with_capacity(schema.fields().len());
        for (index, (field, opts)) in schema.fields().iter().zip(&field_options).enumerate() {
            let spec = FieldParser {
                name: field.name(),
                data_type: field.data_type(),
                opts,
                reference_ms,
            };
            let (values, sequence_len) = spec.values()?;
            if let Some(len) = sequence_len {
                total_rows = Some(total_rows.map_or(len, |rows| rows.min(len)));
            }
            let null_threshold = spec.null_threshold()?;
            if null_threshold.is_some() && !field.is_nullable() {
                return Err(Error::invalid_option(
                    spec.key("null-rate"),
                    opts.null_rate.unwrap_or_default(),
                    "is not allowed: the field is NOT NULL",
                ));
            }
            let index = index as u64;
            columns.push(ColumnSpec {
                values,
                null_threshold,
                value_key: stream_key(seed, 2 * index),
                null_key: stream_key(seed, 2 * index + 1),
            });
        }
        Ok(Self {
            schema,
            total_rows,
            rows_per_second,
            seed,
            columns,
        })
    }

    /// The schema of the generated batches.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Total rows over all subtasks: the smaller of `number-of-rows` and the
    /// length of every sequence; `None` when unbounded.
    pub fn total_rows(&self) -> Option<u64> {
        self.total_rows
    }

    /// The `rows-per-second` limit over all subtasks.
    pub fn rows_per_second(&self) -> u64 {
        self.rows_per_second
    }

    /// The seed of all random values.
    pub fn seed(&self) -> u64 {
        self.seed
    }
}

/// Validates the options of one field.
struct FieldParser<'a> {
    name: &'a str,
    data_type: &'a DataType,
    opts: &'a FieldOptions<'a>,
    reference_ms: i64,
}

impl FieldParser<'_> {
    fn key(&self, option: &str) -> String {
        format!("fields.{}.{option}", self.name)
    }

    fn reject(&self, option: &str, value: Option<&str>, why: &str) -> Result<()> {
        match value {
            Some(value) => Err(Error::invalid_option(self.key(option), value, why)),
            None => Ok(()),
        }
    }

    fn require<'v>(&self, option: &str, value: Option<&'v str>) -> Result<&'v str> {
        value.ok_or_else(|| Error::MissingOption {
            key: self.key(option),
            reason: "for a sequence field".to_string(),
        })
    }

    fn null_threshold(&self) -> Result<Option<u64>> {
        let Some(value) = self.opts.null_rate else {
            return Ok(None);
        };
        let key = self.key("null-rate");
        let rate: f64 = value
            .trim()
            .parse()
            .map_err(|_| Error::invalid_option(&key, value, "is not a number"))?;
        if !(0.0..=1.0).contains(&rate) {
            return Err(Error::invalid_option(
                &key,
                value,
                "is not within 0.0..=1.0",
            ));
        }
        // The float-to-int cast saturates, so a rate of 1.0 maps to u64::MAX.
        Ok((rate > 0.0).then_some((rate * 18_446_744_073_709_551_616.0) as u64))
    }

    /// The value generator and, for a sequence, its length.
    fn values(&self) -> Result<(Values, Option<u64>)> {
        let opts = self.opts;
        let sequence = match opts.kind.map(str::trim) {
            None | Some("random") => false,
            Some("sequence") => true,
            Some(other) => {
                return Err(Error::invalid_option(
                    self.key("kind"),
                    other,
                    "is not a kind (random, sequence)",
                ));
            }
        };
        let type_name = self.data_type.to_string();
        let not_for_type = format!("is not valid for a field of type {type_name}");
        if sequence {
            for (option, value) in [
                ("min", opts.min),
                ("max", opts.max),
                ("length", opts.length),
                ("max-past", opts.max_past),
            ] {
                self.reject(option, value, "is not valid for a sequence field")?;
            }
            return self.sequence_values();
        }
        for (option, value) in [("start", opts.start), ("end", opts.end)] {
            self.reject(option, value, "is only valid for a sequence field")?;
        }
        let is_string = matches!(self.data_type, DataType::Utf8);
        let is_time = matches!(self.data_type, DataType::Date32 | DataType::Timestamp(..));
        if !is_string {
            self.reject("length", opts.length, &not_for_type)?;
        }
        if !is_time {
            self.reject("max-past", opts.max_past, &not_for_type)?;
        }
        if is_string || is_time || matches!(self.data_type, DataType::Boolean) {
            self.reject("min", opts.min, &not_for_type)?;
            self.reject("max", opts.max, &not_for_type)?;
        }
        let values = match self.data_type {
            DataType::Boolean => Values::Boolean,
            DataType::Int8 => self.random_int(IntWidth::I8)?,
            DataType::Int16 => self.random_int(IntWidth::I16)?,
            DataType::Int32 => self.random_int(IntWidth::I32)?,
            DataType::Int64 => self.random_int(IntWidth::I64)?,
            DataType::Float32 => self.random_float(true)?,
            DataType::Float64 => self.random_float(false)?,
            DataType::Decimal128(precision, scale) => self.random_decimal(*precision, *scale)?,
            DataType::Utf8 => {
                let length = match opts.length {
                    None => DEFAULT_STRING_LENGTH,
                    Some(value) => {
                        let length = parse_u64(&self.key("length"), value)? as usize;
                        if length > MAX_STRING_LENGTH {
                            return Err(Error::invalid_option(
                                self.key("length"),
                                value,
                                format!("exceeds the maximum of {MAX_STRING_LENGTH}"),
                            ));
                        }
                        length
                    }
                };
                Values::RandomString { length }
            }
            DataType::Date32 => {
                let max_past_days = self.max_past_ms()? / MS_PER_DAY as u64;
                Values::RandomDate {
                    reference_day: self.reference_ms.div_euclid(MS_PER_DAY) as i32,
                    max_past_days,
                }
            }
            DataType::Timestamp(TimeUnit::Millisecond, timezone) => Values::RandomTimestamp {
                timezone: timezone.clone(),
                reference_ms: self.reference_ms,
                max_past_ms: self.max_past_ms()?,
            },
            _ => return Err(self.unsupported()),
        };
        Ok((values, None))
    }

    fn unsupported(&self) -> Error {
        Error::UnsupportedType {
            field: self.name.to_string(),
            data_type: self.data_type.clone(),
        }
    }

    fn sequence_values(&self) -> Result<(Values, Option<u64>)> {
        let start_text = self.require("start", self.opts.start)?;
        let end_text = self.require("end", self.opts.end)?;
        let (start_key, end_key) = (self.key("start"), self.key("end"));
        let (values, start, end) = match self.data_type {
            DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 => {
                let width = match self.data_type {
                    DataType::Int8 => IntWidth::I8,
                    DataType::Int16 => IntWidth::I16,
                    DataType::Int32 => IntWidth::I32,
                    _ => IntWidth::I64,
                };
                let start = self.int_in_range(&start_key, start_text, width)?;
                let end = self.int_in_range(&end_key, end_text, width)?;
                (Values::SequenceInt { width, start }, start, end)
            }
            DataType::Float32 | DataType::Float64 | DataType::Utf8 => {
                // Float and string sequences count in whole steps from an integer start.
                let start = parse_i64(&start_key, start_text)?;
                let end = parse_i64(&end_key, end_text)?;
                let values = match self.data_type {
                    DataType::Utf8 => Values::SequenceString { start },
                    other => Values::SequenceFloat {
                        single: matches!(other, DataType::Float32),
                        start: start as f64,
                    },
                };
                (values, start, end)
            }
            DataType::Boolean
            | DataType::Decimal128(..)
            | DataType::Date32
            | DataType::Timestamp(..) => {
                return Err(Error::invalid_option(
                    self.key("kind"),
                    "sequence",
                    format!("is not supported for type {}", self.data_type),
                ));
            }
            _ => return Err(self.unsupported()),
        };
        if end < start {
            return Err(Error::invalid_option(
                end_key,
                end_text,
                format!("is less than fields.{}.start = {start}", self.name),
            ));
        }
        let len = (i128::from(end) - i128::from(start) + 1).min(i128::from(u64::MAX)) as u64;
        Ok((values, Some(len)))
    }

    fn int_in_range(&self, key: &str, value: &str, width: IntWidth) -> Result<i64> {
        let parsed = parse_i64(key, value)?;
        let (lo, hi) = width.range();
        if parsed < lo || parsed > hi {
            return Err(Error::invalid_option(
                key,
                value,
                format!("is out of range for {} ({lo}..={hi})", self.data_type),
            ));
        }
        Ok(parsed)
    }

    fn random_int(&self, width: IntWidth) -> Result<Values> {
        let (lo, hi) = width.range();
        let min = match self.opts.min {
            Some(v) => self.int_in_range(&self.key("min"), v, width)?,
            None => lo,
        };
        let max = match self.opts.max {
            Some(v) => self.int_in_range(&self.key("max"), v, width)?,
            None => hi,
        };
        self.check_order(min > max)?;
        Ok(Values::RandomInt { width, min, max })
    }

    fn random_float(&self, single: bool) -> Result<Values> {
        // Flink's defaults: the smallest positive to the largest finite value.
        let (lo, hi) = if single {
            (f64::from(f32::MIN_POSITIVE), f64::from(f32::MAX))
        } else {
            (f64::MIN_POSITIVE, f64::MAX)
        };
        let parse = |option: &str, value: Option<&str>, default: f64| -> Result<f64> {
            let Some(value) = value else {
                return Ok(default);
            };
            let key = self.key(option);
            let parsed: f64 = value
                .trim()
                .parse()
                .map_err(|_| Error::invalid_option(&key, value, "is not a number"))?;
            let limit = if single {
                f64::from(f32::MAX)
            } else {
                f64::MAX
            };
            if !parsed.is_finite() || parsed.abs() > limit {
                return Err(Error::invalid_option(
                    &key,
                    value,
                    format!("is not a finite {}", self.data_type),
                ));
            }
            Ok(parsed)
        };
        let min = parse("min", self.opts.min, lo)?;
        let max = parse("max", self.opts.max, hi)?;
        self.check_order(min > max)?;
        Ok(Values::RandomFloat { single, min, max })
    }

    fn random_decimal(&self, precision: u8, scale: i8) -> Result<Values> {
        if precision > 38 || scale < 0 || scale as u8 > precision {
            return Err(self.unsupported());
        }
        let limit = 10i128.pow(u32::from(precision)) - 1;
        let parse = |option: &str, value: Option<&str>, default: i128| -> Result<i128> {
            let Some(value) = value else {
                return Ok(default);
            };
            let key = self.key(option);
            let unscaled = parse_decimal(value, scale as u32)
                .ok_or_else(|| Error::invalid_option(&key, value, "is not a number"))?
                .ok_or_else(|| {
                    Error::invalid_option(
                        &key,
                        value,
                        format!("has more than {scale} fractional digits"),
                    )
                })?;
            if unscaled.abs() > limit {
                return Err(Error::invalid_option(
                    &key,
                    value,
                    format!("does not fit {}", self.data_type),
                ));
            }
            Ok(unscaled)
        };
        let min = parse("min", self.opts.min, -limit)?;
        let max = parse("max", self.opts.max, limit)?;
        self.check_order(min > max)?;
        Ok(Values::RandomDecimal {
            precision,
            scale,
            min,
            max,
        })
    }

    fn check_order(&self, inverted: bool) -> Result<()> {
        if inverted {
            return Err(Error::invalid_option(
                self.key("min"),
                self.opts.min.unwrap_or_default(),
                format!(
                    "is greater than fields.{}.max = {}",
                    self.name,
                    self.opts.max.unwrap_or("the type's maximum")
                ),
            ));
        }
        Ok(())
    }

    fn max_past_ms(&self) -> Result<u64> {
        match self.opts.max_past {
            None => Ok(0),
            Some(value) => parse_duration_ms(&self.key("max-past"), value),
        }
    }
}

fn parse_u64(key: &str, value: &str) -> Result<u64> {
    value
        .trim()
        .parse()
        .map_err(|_| Error::invalid_option(key, value, "is not a non-negative integer"))
}

fn parse_i64(key: &str, value: &str) -> Result<i64> {
    value
        .trim()
        .parse()
        .map_err(|_| Error::invalid_option(key, value, "is not an integer"))
}

/// Parses a decimal literal into an unscaled integer with `scale` fractional
/// digits. `None` if it is not a number, `Some(None)` if it has too many
/// fractional digits.
fn parse_decimal(text: &str, scale: u32) -> Option<Option<i128>> {
    let text = text.trim();
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    if whole.is_empty() && fraction.is_empty()
        || !whole
            .bytes()
            .chain(fraction.bytes())
            .all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let fraction = fraction.trim_end_matches('0');
    if fraction.len() > scale as usize {
        return Some(None);
    }
    let mut value: i128 = 0;
    let padded = fraction
        .bytes()
        .chain(std::iter::repeat(b'0'))
        .take(scale as usize);
    for b in whole.bytes().chain(padded) {
        value = value.checked_mul(10)?.checked_add(i128::from(b - b'0'))?;
    }
    Some(Some(if negative { -value } else { value }))
}

/// Parses a duration such as `"10 s"`, `"5min"`, `"2 d"` or `"1500"` (ms).
fn parse_duration_ms(key: &str, value: &str) -> Result<u64> {
    let text = value.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let bad = || {
        Error::invalid_option(
            key,
            value,
            "is not a duration (a number with unit ms, s, min, h or d)",
        )
    };
    let number: u64 = number.parse().map_err(|_| bad())?;
    let factor = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "ms" | "milli" | "millis" | "millisecond" | "milliseconds" => 1,
        "s" | "sec" | "secs" | "second" | "seconds" => 1000,
        "min" | "mins" | "minute" | "minutes" => 60_000,
        "h" | "hour" | "hours" => 3_600_000,
        "d" | "day" | "days" => 86_400_000,
        _ => return Err(bad()),
    };
    number.checked_mul(factor).ok_or_else(bad)
}

fn unknown_key(key: &str, valid: &[String]) -> Error {
    let suggestion = valid
        .iter()
        .map(|candidate| (edit_distance(key, candidate), candidate))
        .filter(|(distance, candidate)| *distance <= candidate.len().max(3) / 3)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate.clone());
    Error::UnknownOption {
        key: key.to_string(),
        suggestion,
    }
}

/// Levenshtein distance between two short strings.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        previous = current;
    }
    previous[b.len()]
}

/// Produces one subtask's share of a `datagen` table.
#[derive(Debug)]
pub struct DatagenGenerator {
    config: DatagenConfig,
    /// Global row of local row 0.
    first_row: u64,
    /// Distance between the global rows of consecutive local rows.
    stride: u64,
    /// Rows of this subtask; `None` when unbounded.
    rows: Option<u64>,
    /// Local rows produced so far.
    produced: u64,
    /// This subtask's share of `rows-per-second`.
    rows_per_second: u64,
}

impl DatagenGenerator {
    /// The generator of subtask `subtask` of `parallelism`; see the module
    /// docs for how rows are shared.
    pub fn new(config: &DatagenConfig, subtask: u32, parallelism: u32) -> Result<Self> {
        if parallelism == 0 || subtask >= parallelism {
            return Err(Error::invalid_config(format!(
                "datagen subtask = {subtask}, parallelism = {parallelism}; \
                 need 0 <= subtask < parallelism"
            )));
        }
        let (i, p) = (u64::from(subtask), u64::from(parallelism));
        let (first_row, stride, rows) = match config.total_rows {
            Some(total) => {
                let (base, extra) = (total / p, total % p);
                (
                    i * base + i.min(extra),
                    1,
                    Some(base + u64::from(i < extra)),
                )
            }
            None => (i, p, None),
        };
        let (base, extra) = (config.rows_per_second / p, config.rows_per_second % p);
        Ok(Self {
            config: config.clone(),
            first_row,
            stride,
            rows,
            produced: 0,
            rows_per_second: base + u64::from(i < extra),
        })
    }

    /// Skips to local row `rows_produced`, e.g. when restoring a checkpoint
    /// that recorded [`DatagenGenerator::rows_produced`].
    pub fn with_rows_produced(mut self, rows_produced: u64) -> Self {
        self.produced = self
            .rows
            .map_or(rows_produced, |rows| rows_produced.min(rows));
        self
    }

    /// Rows this generator has produced; its checkpointed position.
    pub fn rows_produced(&self) -> u64 {
        self.produced
    }

    /// Rows this subtask produces in total; `None` when unbounded.
    pub fn total_rows(&self) -> Option<u64> {
        self.rows
    }

    /// Whether every row has been produced.
    pub fn is_exhausted(&self) -> bool {
        self.rows.is_some_and(|rows| self.produced >= rows)
    }

    /// How many more rows the rate limit allows `elapsed` after the source
    /// started: this subtask's share of `rows-per-second` times `elapsed`,
    /// minus the rows already produced.
    pub fn rows_due(&self, elapsed: Duration) -> u64 {
        let allowed = u128::from(self.rows_per_second) * elapsed.as_millis() / 1000;
        u64::try_from(allowed)
            .unwrap_or(u64::MAX)
            .saturating_sub(self.produced)
    }

    /// Produces the next up to `max_rows` rows; `None` once exhausted.
    pub fn next_batch(&mut self, max_rows: usize) -> Result<Option<RecordBatch>> {
        let left = self
            .rows
            .map_or(u64::MAX, |rows| rows - self.produced.min(rows));
        let rows = (max_rows as u64).min(left) as usize;
        if rows == 0 {
            return Ok(if left == 0 {
                None
            } else {
                Some(RecordBatch::new_empty(Arc::clone(&self.config.schema)))
            });
        }
        let first = self.first_row + self.produced * self.stride;
        let range = RowRange {
            first,
            stride: self.stride,
            rows,
        };
        let columns = self
            .config
            .columns
            .iter()
            .zip(self.config.schema.fields())
            .map(|(spec, field)| spec.fill(range, field.name()))
            .collect::<Result<Vec<_>>>()?;
        let options = RecordBatchOptions::new().with_row_count(Some(rows));
        let batch =
            RecordBatch::try_new_with_options(Arc::clone(&self.config.schema), columns, &options)
                .map_err(Error::arrow("datagen batch"))?;
        self.produced += rows as u64;
        Ok(Some(batch))
    }
}

/// The global rows of one batch: `first + k * stride` for `k < rows`.
#[derive(Debug, Clone, Copy)]
struct RowRange {
    first: u64,
    stride: u64,
    rows: usize,
}

impl RowRange {
    #[inline(always)]
    fn row(&self, k: usize) -> u64 {
        self.first + k as u64 * self.stride
    }

    /// `f(global row)` for every row, in order.
    #[inline(always)]
    fn map<T>(&self, mut f: impl FnMut(u64) -> T) -> Vec<T> {
        (0..self.rows).map(|k| f(self.row(k))).collect()
    }
}

impl ColumnSpec {
    fn fill(&self, range: RowRange, name: &str) -> Result<ArrayRef> {
        let nulls = self.null_threshold.map(|threshold| {
            let valid = BooleanBuffer::collect_bool(range.rows, |k| {
                threshold != u64::MAX && hash_at(self.null_key, range.row(k)) >= threshold
            });
            NullBuffer::new(valid)
        });
        let key = self.value_key;
        let array: ArrayRef = match &self.values {
            Values::Boolean => {
                let values = BooleanBuffer::collect_bool(range.rows, |k| {
                    hash_at(key, range.row(k)) >> 63 == 1
                });
                Arc::new(BooleanArray::new(values, nulls))
            }
            Values::RandomInt { width, min, max } => {
                // The span is at most 2^64; 0 stands for the full 64-bit range.
                let span = (*max as i128 - *min as i128 + 1) as u128;
                let min = *min;
                let draw = move |g: u64| {
                    let bits = hash_at(key, g);
                    if span > u128::from(u64::MAX) {
                        bits as i64
                    } else {
                        min.wrapping_add(below(bits, span as u64) as i64)
                    }
                };
                int_array(*width, range, draw, nulls)
            }
            Values::SequenceInt { width, start } => {
                let start = *start;
                int_array(*width, range, move |g| start.wrapping_add(g as i64), nulls)
            }
            Values::RandomFloat { single, min, max } => {
                let (min, max) = (*min, *max);
                // Interpolating avoids the overflow of `max - min` for the default range.
                let draw = move |g: u64| {
                    let u = unit_f64(hash_at(key, g));
                    (min * (1.0 - u) + max * u).clamp(min, max)
                };
                float_array(*single, range, draw, nulls)
            }
            Values::SequenceFloat { single, start } => {
                let start = *start;
                float_array(*single, range, move |g| start + g as f64, nulls)
            }
            Values::RandomDecimal {
                precision,
                scale,
                min,
                max,
            } => {
                let span = (*max - *min) as u128 + 1;
                let min = *min;
                let values = range.map(|g| {
                    let bits = hash_at(key, g);
                    let wide = (u128::from(bits) << 64) | u128::from(mix64(bits));
                    min + (wide % span) as i128
                });
                let array = primitive::<Decimal128Type>(values, nulls)
                    .with_precision_and_scale(*precision, *scale)
                    .map_err(Error::arrow(format!("datagen column {name}")))?;
                Arc::new(array)
            }
            Values::RandomString { length } => {
                let mut column = StringColumn::with_capacity(range.rows, *length);
                for k in 0..range.rows {
                    let mut rng = SplitMix64::at(key, range.row(k));
                    push_hex(column.buffer(), &mut rng, *length);
                    column.end_value();
                }
                column.finish(nulls, &format!("datagen column {name}"))?
            }
            Values::SequenceString { start } => {
                let mut column = StringColumn::with_capacity(range.rows, 8);
                for k in 0..range.rows {
                    let value = i128::from(*start) + i128::from(range.row(k));
                    push_signed_decimal(column.buffer(), value);
                    column.end_value();
                }
                column.finish(nulls, &format!("datagen column {name}"))?
            }
            Values::RandomDate {
                reference_day,
                max_past_days,
            } => {
                let span = max_past_days + 1;
                let values = range.map(|g| reference_day - below(hash_at(key, g), span) as i32);
                Arc::new(primitive::<Date32Type>(values, nulls))
            }
            Values::RandomTimestamp {
                timezone,
                reference_ms,
                max_past_ms,
            } => {
                let span = max_past_ms.saturating_add(1);
                let values = range.map(|g| reference_ms - below(hash_at(key, g), span) as i64);
                Arc::new(
                    primitive::<TimestampMillisecondType>(values, nulls)
                        .with_timezone_opt(timezone.clone()),
                )
            }
        };
        Ok(array)
    }
}

fn int_array(
    width: IntWidth,
    range: RowRange,
    value: impl Fn(u64) -> i64,
    nulls: Option<NullBuffer>,
) -> ArrayRef {
    // Values lie within the width's range, so the narrowing casts are exact.
    match width {
        IntWidth::I8 => Arc::new(primitive::<Int8Type>(range.map(|g| value(g) as i8), nulls)),
        IntWidth::I16 => Arc::new(primitive::<Int16Type>(
            range.map(|g| value(g) as i16),
            nulls,
        )),
        IntWidth::I32 => Arc::new(primitive::<Int32Type>(
            range.map(|g| value(g) as i32),
            nulls,
        )),
        IntWidth::I64 => Arc::new(primitive::<Int64Type>(range.map(value), nulls)),
    }
}

fn float_array(
    single: bool,
    range: RowRange,
    value: impl Fn(u64) -> f64,
    nulls: Option<NullBuffer>,
) -> ArrayRef {
    if single {
        Arc::new(primitive::<Float32Type>(
            range.map(|g| value(g) as f32),
            nulls,
        ))
    } else {
        Arc::new(primitive::<Float64Type>(range.map(value), nulls))
    }
}

/// Appends `len` random lowercase hex digits (16 per random draw).
#[inline]
fn push_hex(buf: &mut Vec<u8>, rng: &mut SplitMix64, len: usize) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut left = len;
    while left > 0 {
        let mut bits = rng.next_u64();
        let take = left.min(16);
        for _ in 0..take {
            buf.push(HEX[(bits & 15) as usize]);
            bits >>= 4;
        }
        left -= take;
    }
}

fn push_signed_decimal(buf: &mut Vec<u8>, value: i128) {
    if value < 0 {
        buf.push(b'-');
    }
    let mut digits = [0u8; 40];
    let mut i = digits.len();
    let mut rest = value.unsigned_abs();
    loop {
        i -= 1;
        digits[i] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    buf.extend_from_slice(&digits[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Result;
    use arrow::array::{Array, AsArray};
    use arrow::compute::concat_batches;
    use arrow::datatypes::{Field, Schema};

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("flag", DataType::Boolean, true),
            Field::new("small", DataType::Int8, true),
            Field::new("price", DataType::Float64, true),
            Field::new("amount", DataType::Decimal128(10, 2), true),
            Field::new("name", DataType::Utf8, true),
            Field::new("day", DataType::Date32, true),
            Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), true),
            Field::new("code", DataType::Utf8, true),
        ]))
    }

    fn options(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn error(pairs: &[(&str, &str)]) -> String {
        match DatagenConfig::from_options(schema(), &options(pairs)) {
            Ok(_) => panic!("options {pairs:?} should be rejected"),
            Err(err) => err.to_string(),
        }
    }

    fn drain(generator: &mut DatagenGenerator, rows: usize) -> Result<Vec<RecordBatch>> {
        let mut batches = Vec::new();
        while let Some(batch) = generator.next_batch(rows)? {
            batches.push(batch);
        }
        Ok(batches)
    }

    #[test]
    fn bad_options_name_key_and_value() {
        assert_eq!(
            error(&[("fields.price.min", "abc")]),
            "fields.price.min = 'abc' is not a number"
        );
        assert_eq!(
            error(&[("fields.nope.min", "1")]),
            "option 'fields.nope.min' refers to unknown field 'nope'"
        );
        assert_eq!(
            error(&[("number-of-row", "10")]),
            "unknown option 'number-of-row' (did you mean 'number-of-rows'?)"
        );
        assert_eq!(
            error(&[("fields.id.lenght", "3")]),
            "unknown option 'fields.id.lenght' (did you mean 'fields.id.length'?)"
        );
        assert!(error(&[("fields.small.max", "300")]).contains("out of range for Int8"));
        assert!(error(&[("fields.id.kind", "sequence")]).contains("fields.id.start"));
        assert!(error(&[("fields.id.kind", "seq")]).contains("'seq' is not a kind"));
        assert!(
            error(&[("fields.id.length", "3")]).contains("not valid for a field of type Int64")
        );
        assert!(error(&[("fields.id.null-rate", "0.5")]).contains("NOT NULL"));
        assert!(error(&[("fields.name.null-rate", "1.5")]).contains("0.0..=1.0"));
        assert!(error(&[("fields.amount.min", "1.234")]).contains("fractional digits"));
        assert!(error(&[("fields.ts.max-past", "5 weeks")]).contains("is not a duration"));
        assert!(
            error(&[("fields.small.min", "5"), ("fields.small.max", "1")]).contains("greater than")
        );
        assert!(error(&[("rows-per-second", "0")]).contains("at least 1"));
        assert!(error(&[("connector", "kafka")]).contains("'kafka' is not 'datagen'"));
        let unsupported = Arc::new(Schema::new(vec![Field::new("b", DataType::Binary, true)]));
        assert!(matches!(
            DatagenConfig::from_options(unsupported, &BTreeMap::new()),
            Err(Error::UnsupportedType { .. })
        ));
    }

    #[test]
    fn sequences_are_partitioned_across_subtasks() -> Result<()> {
        let config = DatagenConfig::from_options(
            schema(),
            &options(&[
                ("fields.id.kind", "sequence"),
                ("fields.id.start", "10"),
                ("fields.id.end", "109"),
                ("fields.code.kind", "sequence"),
                ("fields.code.start", "-5"),
                ("fields.code.end", "1000"),
                ("number-of-rows", "500"),
            ]),
        )?;
        // The shorter sequence bounds the rows.
        assert_eq!(config.total_rows(), Some(100));
        let mut ids = Vec::new();
        for subtask in 0..3 {
            let mut generator = DatagenGenerator::new(&config, subtask, 3)?;
            let batches = drain(&mut generator, 7)?;
            let mine: Vec<i64> = batches
                .iter()
                .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
                .collect();
            // Contiguous, disjoint ranges of 34, 33, 33 values.
            assert_eq!(mine.len(), [34, 33, 33][subtask as usize]);
            assert!(mine.windows(2).all(|w| w[1] == w[0] + 1));
            ids.extend(mine);
        }
        assert_eq!(ids, (10..110).collect::<Vec<_>>());

        let mut single = DatagenGenerator::new(&config, 0, 1)?;
        let batch = single.next_batch(1000)?.expect("rows");
        assert_eq!(batch.column(8).as_string::<i32>().value(0), "-5");
        assert_eq!(batch.column(8).as_string::<i32>().value(99), "94");
        Ok(())
    }

    #[test]
    fn splits_concatenate_to_the_single_run() -> Result<()> {
        let config = DatagenConfig::from_options(
            schema(),
            &options(&[
                ("number-of-rows", "1001"),
                ("fields.name.length", "20"),
                ("fields.name.null-rate", "0.3"),
                ("fields.ts.max-past", "1 h"),
                ("fields.day.max-past", "30 d"),
                ("seed", "42"),
            ]),
        )?;
        let single = concat_batches(
            config.schema(),
            &drain(&mut DatagenGenerator::new(&config, 0, 1)?, 256)?,
        )?;
        assert_eq!(single.num_rows(), 1001);
        for parallelism in 2..=4 {
            let mut parts = Vec::new();
            for subtask in 0..parallelism {
                parts.extend(drain(
                    &mut DatagenGenerator::new(&config, subtask, parallelism)?,
                    100,
                )?);
            }
            assert_eq!(concat_batches(config.schema(), &parts)?, single);
        }
        Ok(())
    }

    #[test]
    fn random_values_respect_ranges_and_null_rate() -> Result<()> {
        let config = DatagenConfig::from_options(
            schema(),
            &options(&[
                ("fields.small.min", "-3"),
                ("fields.small.max", "3"),
                ("fields.price.min", "1.5"),
                ("fields.price.max", "2.5"),
                ("fields.amount.min", "-1.5"),
                ("fields.amount.max", "99.99"),
                ("fields.name.length", "7"),
                ("fields.flag.null-rate", "0.25"),
                ("fields.ts.max-past", "10 s"),
                ("reference-time", "1000000"),
            ]),
        )?;
        assert_eq!(config.total_rows(), None);
        let mut generator = DatagenGenerator::new(&config, 1, 2)?;
        let batch = generator.next_batch(20_000)?.expect("unbounded");
        assert_eq!(batch.num_rows(), 20_000);
        let small = batch.column(2).as_primitive::<Int8Type>();
        assert!(small.values().iter().all(|v| (-3..=3).contains(v)));
        assert!((-3..=3).all(|v| small.values().contains(&v)));
        let price = batch.column(3).as_primitive::<Float64Type>();
        assert!(price.values().iter().all(|v| (1.5..=2.5).contains(v)));
        let amount = batch.column(4).as_primitive::<Decimal128Type>();
        assert!(amount.values().iter().all(|v| (-150..=9999).contains(v)));
        let name = batch.column(5).as_string::<i32>();
        assert!(
            (0..name.len()).all(|i| name.value(i).len() == 7
                && name.value(i).bytes().all(|b| b.is_ascii_hexdigit()))
        );
        let nulls = batch.column(1).null_count() as f64 / 20_000.0;
        assert!((0.23..0.27).contains(&nulls), "{nulls}");
        assert_eq!(batch.column(0).null_count(), 0);
        let ts = batch.column(7).as_primitive::<TimestampMillisecondType>();
        assert!(
            ts.values()
                .iter()
                .all(|v| (990_000..=1_000_000).contains(v))
        );
        Ok(())
    }

    #[test]
    fn full_null_rate_makes_every_value_null() -> Result<()> {
        let config = DatagenConfig::from_options(
            schema(),
            &options(&[("fields.flag.null-rate", "1.0"), ("number-of-rows", "100")]),
        )?;
        let batch = DatagenGenerator::new(&config, 0, 1)?
            .next_batch(100)?
            .expect("rows");
        assert_eq!(batch.column(1).null_count(), 100);
        Ok(())
    }

    #[test]
    fn rate_limit_and_restore() -> Result<()> {
        let config = DatagenConfig::from_options(
            schema(),
            &options(&[("rows-per-second", "1000"), ("number-of-rows", "50")]),
        )?;
        let mut generator = DatagenGenerator::new(&config, 0, 3)?;
        // Subtask 0 of 3 gets 334 rows/s and 17 of the 50 rows.
        assert_eq!(generator.total_rows(), Some(17));
        assert_eq!(generator.rows_due(Duration::from_millis(30)), 10);
        let first = generator.next_batch(10)?.expect("rows");
        assert_eq!(generator.rows_due(Duration::from_millis(30)), 0);
        let rest = drain(&mut generator, 100)?;
        let mut restored = DatagenGenerator::new(&config, 0, 3)?.with_rows_produced(10);
        assert_eq!(drain(&mut restored, 100)?, rest);
        assert_eq!(
            first.num_rows() + rest.iter().map(RecordBatch::num_rows).sum::<usize>(),
            17
        );
        assert!(generator.is_exhausted());
        Ok(())
    }

    #[test]
    fn parsers() {
        assert_eq!(parse_decimal("12.5", 2), Some(Some(1250)));
        assert_eq!(parse_decimal("-0.05", 2), Some(Some(-5)));
        assert_eq!(parse_decimal("7", 0), Some(Some(7)));
        assert_eq!(parse_decimal("1.230", 2), Some(Some(123)));
        assert_eq!(parse_decimal("1.234", 2), Some(None));
        assert_eq!(parse_decimal("x", 2), None);
        assert_eq!(parse_decimal(".", 2), None);
        assert_eq!(parse_duration_ms("k", "5 min").ok(), Some(300_000));
        assert_eq!(parse_duration_ms("k", "250").ok(), Some(250));
        assert_eq!(parse_duration_ms("k", "2d").ok(), Some(172_800_000));
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
