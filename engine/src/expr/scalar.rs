//! Literal values of expressions.
//!
//! A [`ScalarValue`] is the serialisable form of one SQL literal: it lives in the logical
//! [`Expr`](super::Expr) tree (and so in the JobGraph JSON). [`Expr::resolve`](super::Expr::resolve)
//! turns it into a one-element Arrow array wrapped in [`arrow::array::Scalar`] exactly once, so
//! evaluation never touches a `ScalarValue` again.

use std::fmt;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Date32Array, Decimal128Array, Float32Array, Float64Array, Int8Array,
    Int16Array, Int32Array, Int64Array, IntervalDayTimeArray, IntervalMonthDayNanoArray,
    IntervalYearMonthArray, StringArray, TimestampMicrosecondArray, TimestampMillisecondArray,
    TimestampNanosecondArray, TimestampSecondArray, UInt8Array, UInt16Array, UInt32Array,
    UInt64Array, new_null_array,
};
use arrow::datatypes::{DataType, IntervalDayTime, IntervalMonthDayNano, IntervalUnit, TimeUnit};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// One literal value. `Null` is the untyped SQL `NULL`; it takes the type its context asks for
/// (wrap it in a cast to give it one explicitly).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ScalarValue {
    /// The untyped SQL `NULL`.
    Null,
    /// `TRUE` / `FALSE`.
    Boolean(bool),
    /// `TINYINT`.
    Int8(i8),
    /// `SMALLINT`.
    Int16(i16),
    /// `INT`.
    Int32(i32),
    /// `BIGINT`.
    Int64(i64),
    /// Unsigned 8-bit integer.
    UInt8(u8),
    /// Unsigned 16-bit integer.
    UInt16(u16),
    /// Unsigned 32-bit integer.
    UInt32(u32),
    /// Unsigned 64-bit integer.
    UInt64(u64),
    /// `FLOAT`.
    Float32(f32),
    /// `DOUBLE`.
    Float64(f64),
    /// `VARCHAR` / `STRING`.
    Utf8(String),
    /// `DECIMAL(precision, scale)`; `value` is the unscaled integer (`1.25` at scale 2 is `125`).
    Decimal128 {
        /// Unscaled value; a string in JSON, which has no 128-bit integers (and whose
        /// tagged enums cannot buffer one).
        #[serde(with = "i128_text")]
        value: i128,
        /// Total number of decimal digits, 1..=38.
        precision: u8,
        /// Digits after the decimal point.
        scale: i8,
    },
    /// `DATE`, as days since 1970-01-01.
    Date32(i32),
    /// `TIMESTAMP` / `TIMESTAMP_LTZ`: `value` units since the Unix epoch.
    Timestamp {
        /// Ticks since 1970-01-01T00:00:00 UTC.
        value: i64,
        /// The tick length.
        unit: TimeUnit,
        /// Time zone (`Some("UTC")` for `TIMESTAMP_LTZ`), `None` for a zone-less timestamp.
        tz: Option<String>,
    },
    /// `INTERVAL '…' YEAR TO MONTH`, in months.
    IntervalYearMonth(i32),
    /// `INTERVAL '…' DAY TO SECOND` with millisecond precision.
    IntervalDayTime {
        /// Whole days.
        days: i32,
        /// Milliseconds on top of the days.
        millis: i32,
    },
    /// A general interval of months, days and nanoseconds.
    IntervalMonthDayNano {
        /// Whole months.
        months: i32,
        /// Whole days.
        days: i32,
        /// Nanoseconds on top of the days.
        nanos: i64,
    },
}

impl ScalarValue {
    /// The Arrow type of this literal (`DataType::Null` for `NULL`).
    pub fn data_type(&self) -> DataType {
        match self {
            ScalarValue::Null => DataType::Null,
            ScalarValue::Boolean(_) => DataType::Boolean,
            ScalarValue::Int8(_) => DataType::Int8,
            ScalarValue::Int16(_) => DataType::Int16,
            ScalarValue::Int32(_) => DataType::Int32,
            ScalarValue::Int64(_) => DataType::Int64,
            ScalarValue::UInt8(_) => DataType::UInt8,
            ScalarValue::UInt16(_) => DataType::UInt16,
            ScalarValue::UInt32(_) => DataType::UInt32,
            ScalarValue::UInt64(_) => DataType::UInt64,
            ScalarValue::Float32(_) => DataType::Float32,
            ScalarValue::Float64(_) => DataType::Float64,
            ScalarValue::Utf8(_) => DataType::Utf8,
            ScalarValue::Decimal128 {
                precision, scale, ..
            } => DataType::Decimal128(*precision, *scale),
            ScalarValue::Date32(_) => DataType::Date32,
            ScalarValue::Timestamp { unit, tz, .. } => {
                DataType::Timestamp(*unit, tz.as_deref().map(Arc::from))
            }
            ScalarValue::IntervalYearMonth(_) => DataType::Interval(IntervalUnit::YearMonth),
            ScalarValue::IntervalDayTime { .. } => DataType::Interval(IntervalUnit::DayTime),
            ScalarValue::IntervalMonthDayNano { .. } => {
                DataType::Interval(IntervalUnit::MonthDayNano)
            }
        }
    }

    /// `true` for the SQL `NULL`.
    pub fn is_null(&self) -> bool {
        matches!(self, ScalarValue::Null)
    }

    /// A one-element array holding this value.
    pub(crate) fn to_array(&self) -> Result<ArrayRef> {
        let array: ArrayRef = match self {
            ScalarValue::Null => new_null_array(&DataType::Null, 1),
            ScalarValue::Boolean(v) => Arc::new(BooleanArray::from(vec![*v])),
            ScalarValue::Int8(v) => Arc::new(Int8Array::from(vec![*v])),
            ScalarValue::Int16(v) => Arc::new(Int16Array::from(vec![*v])),
            ScalarValue::Int32(v) => Arc::new(Int32Array::from(vec![*v])),
            ScalarValue::Int64(v) => Arc::new(Int64Array::from(vec![*v])),
            ScalarValue::UInt8(v) => Arc::new(UInt8Array::from(vec![*v])),
            ScalarValue::UInt16(v) => Arc::new(UInt16Array::from(vec![*v])),
            ScalarValue::UInt32(v) => Arc::new(UInt32Array::from(vec![*v])),
            ScalarValue::UInt64(v) => Arc::new(UInt64Array::from(vec![*v])),
            ScalarValue::Float32(v) => Arc::new(Float32Array::from(vec![*v])),
            ScalarValue::Float64(v) => Arc::new(Float64Array::from(vec![*v])),
            ScalarValue::Utf8(v) => Arc::new(StringArray::from(vec![v.as_str()])),
            ScalarValue::Decimal128 {
                value,
                precision,
                scale,
            } => Arc::new(
                Decimal128Array::from(vec![*value])
                    .with_precision_and_scale(*precision, *scale)
                    .map_err(|e| Error::arrow(format!("decimal literal {self}"), e))?,
            ),
            ScalarValue::Date32(v) => Arc::new(Date32Array::from(vec![*v])),
            ScalarValue::Timestamp { value, unit, tz } => {
                let tz = tz.as_deref();
                match unit {
                    TimeUnit::Second => {
                        Arc::new(TimestampSecondArray::from(vec![*value]).with_timezone_opt(tz))
                    }
                    TimeUnit::Millisecond => Arc::new(
                        TimestampMillisecondArray::from(vec![*value]).with_timezone_opt(tz),
                    ),
                    TimeUnit::Microsecond => Arc::new(
                        TimestampMicrosecondArray::from(vec![*value]).with_timezone_opt(tz),
                    ),
                    TimeUnit::Nanosecond => {
                        Arc::new(TimestampNanosecondArray::from(vec![*value]).with_timezone_opt(tz))
                    }
                }
            }
            ScalarValue::IntervalYearMonth(v) => Arc::new(IntervalYearMonthArray::from(vec![*v])),
            ScalarValue::IntervalDayTime { days, millis } => Arc::new(IntervalDayTimeArray::from(
                vec![IntervalDayTime::new(*days, *millis)],
            )),
            ScalarValue::IntervalMonthDayNano {
                months,
                days,
                nanos,
            } => Arc::new(IntervalMonthDayNanoArray::from(vec![
                IntervalMonthDayNano::new(*months, *days, *nanos),
            ])),
        };
        Ok(array)
    }
}

impl fmt::Display for ScalarValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScalarValue::Null => write!(f, "NULL"),
            ScalarValue::Boolean(v) => write!(f, "{}", if *v { "TRUE" } else { "FALSE" }),
            ScalarValue::Int8(v) => write!(f, "{v}"),
            ScalarValue::Int16(v) => write!(f, "{v}"),
            ScalarValue::Int32(v) => write!(f, "{v}"),
            ScalarValue::Int64(v) => write!(f, "{v}"),
            ScalarValue::UInt8(v) => write!(f, "{v}"),
            ScalarValue::UInt16(v) => write!(f, "{v}"),
            ScalarValue::UInt32(v) => write!(f, "{v}"),
            ScalarValue::UInt64(v) => write!(f, "{v}"),
            ScalarValue::Float32(v) => write!(f, "{v}"),
            ScalarValue::Float64(v) => write!(f, "{v}"),
            ScalarValue::Utf8(v) => write!(f, "'{}'", v.replace('\'', "''")),
            ScalarValue::Decimal128 { value, scale, .. } => write_decimal(f, *value, *scale),
            ScalarValue::Date32(v) => write!(f, "DATE({v} days)"),
            ScalarValue::Timestamp { value, unit, .. } => write!(f, "TIMESTAMP({value} {unit:?})"),
            ScalarValue::IntervalYearMonth(v) => write!(f, "INTERVAL '{v}' MONTH"),
            ScalarValue::IntervalDayTime { days, millis } => {
                write!(f, "INTERVAL '{days} days {millis} ms'")
            }
            ScalarValue::IntervalMonthDayNano {
                months,
                days,
                nanos,
            } => write!(f, "INTERVAL '{months} months {days} days {nanos} ns'"),
        }
    }
}

/// An `i128` as its decimal text.
mod i128_text {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &i128, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(value)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i128, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse()
            .map_err(|e| serde::de::Error::custom(format!("decimal value '{text}': {e}")))
    }
}

fn write_decimal(f: &mut fmt::Formatter<'_>, value: i128, scale: i8) -> fmt::Result {
    if scale <= 0 {
        return write!(f, "{value}{}", "0".repeat(scale.unsigned_abs() as usize));
    }
    let scale = scale as usize;
    let digits = value.unsigned_abs().to_string();
    let sign = if value < 0 { "-" } else { "" };
    if digits.len() > scale {
        let (int, frac) = digits.split_at(digits.len() - scale);
        write!(f, "{sign}{int}.{frac}")
    } else {
        write!(f, "{sign}0.{}{digits}", "0".repeat(scale - digits.len()))
    }
}

macro_rules! scalar_from {
    ($($t:ty => $variant:ident),* $(,)?) => {
        $(impl From<$t> for ScalarValue {
            fn from(v: $t) -> Self {
                ScalarValue::$variant(v)
            }
        })*
    };
}

scalar_from!(
    bool => Boolean, i8 => Int8, i16 => Int16, i32 => Int32, i64 => Int64, u8 => UInt8,
    u16 => UInt16, u32 => UInt32, u64 => UInt64, f32 => Float32, f64 => Float64, String => Utf8,
);

impl From<&str> for ScalarValue {
    fn from(v: &str) -> Self {
        ScalarValue::Utf8(v.to_owned())
    }
}

impl<T: Into<ScalarValue>> From<Option<T>> for ScalarValue {
    fn from(v: Option<T>) -> Self {
        v.map_or(ScalarValue::Null, Into::into)
    }
}
