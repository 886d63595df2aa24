//! Function kernels Arrow does not provide (or provides without SQL semantics).
//!
//! Every kernel works on whole columns. Arguments that may be literals are read through
//! [`StrArg`] / [`IntArg`], so a literal argument (a `Scalar`) is not expanded to the batch
//! length; the per-row work is a `match` on a two-variant enum and a write into one output
//! builder, never a dynamic call or an allocation per row. [`resolve`](super::resolve) casts
//! arguments to the types a kernel expects (Utf8, Int64) before it gets here.

mod datetime;
mod decimal;
mod like;
mod math;
mod string;
mod temporal;
mod text;

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Int64Array, StringArray};
use arrow::datatypes::{DataType, Int64Type};
use arrow::error::ArrowError;

use super::function::{DateField, TimeUnitField};
use super::physical::Value;

pub(crate) use datetime::{DatePattern, TimestampUnit};
pub(crate) use decimal::decimal_arithmetic;
pub(crate) use like::Pieces as LikePieces;
pub(crate) use temporal::date_field_supported;
pub(crate) use text::{CompiledRegex, RegexOp};

/// A kernel chosen by `resolve`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Kernel {
    Lower,
    Upper,
    Substring,
    Concat,
    ConcatWs,
    CharLength,
    Trim {
        leading: bool,
        trailing: bool,
    },
    Replace,
    Position,
    CountChar,
    /// The wall clock (`PROCTIME()`), one value per batch.
    Proctime,
    Abs,
    Floor,
    Ceil,
    Round {
        digits: i32,
    },
    /// Epoch (Int64) times `multiplier` milliseconds → `Timestamp(ms, "UTC")`.
    ToTimestampLtz {
        multiplier: i64,
    },
    Extract(DateField),
    FloorTime(TimeUnitField),
    /// `REGEXP_EXTRACT`, `REGEXP_REPLACE`, `REGEXP` with a pattern compiled once.
    Regex(RegexOp, CompiledRegex),
    /// `SPLIT_INDEX(s, sep, index)`.
    SplitIndex,
    /// `INITCAP(s)`.
    Initcap,
    /// `LPAD` / `RPAD(s, len, pad)`.
    Pad {
        left: bool,
    },
    /// `DATE_FORMAT(ts, pattern)`: a timestamp (ms, optionally UTC) formatted with a Java
    /// `SimpleDateFormat` pattern.
    DateFormat(Arc<DatePattern>),
    /// `TO_DATE(s [, pattern])`.
    ToDate(Option<Arc<DatePattern>>),
    /// `TO_TIMESTAMP(s, pattern)` (without a pattern the SQL layer casts).
    ToTimestamp(Arc<DatePattern>),
    /// `TIMESTAMPADD(unit, n, ts)`.
    TimestampAdd(TimestampUnit),
    /// `TIMESTAMPDIFF(unit, a, b)`.
    TimestampDiff(TimestampUnit),
}

impl Kernel {
    /// `false` for kernels that cannot fail on any input.
    pub(crate) fn may_fail(&self) -> bool {
        !matches!(
            self,
            Kernel::Lower
                | Kernel::Upper
                | Kernel::CharLength
                | Kernel::Trim { .. }
                | Kernel::Position
                | Kernel::CountChar
                | Kernel::Proctime
                | Kernel::Initcap
                | Kernel::SplitIndex
        )
    }

    /// Runs the kernel over `args`; `num_rows` is the batch length, `out` the resolved type.
    pub(crate) fn invoke(
        &self,
        args: &[Value],
        num_rows: usize,
        out: &DataType,
    ) -> Result<Value, ArrowError> {
        if *self == Kernel::Proctime {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64);
            let now = arrow::array::TimestampMillisecondArray::from(vec![now]).with_timezone("UTC");
            return Ok(Value::from_result(Arc::new(now), true));
        }
        let all_scalar = args.iter().all(Value::is_scalar);
        let n = if all_scalar { 1 } else { num_rows };
        let first = args
            .first()
            .ok_or_else(|| ArrowError::InvalidArgumentError("missing argument".into()))?
            .array();
        let result: ArrayRef = match self {
            Kernel::Lower => Arc::new(string::lower(first.as_string::<i32>())),
            Kernel::Upper => Arc::new(string::upper(first.as_string::<i32>())),
            Kernel::CharLength => Arc::new(string::char_length(first.as_string::<i32>())),
            Kernel::Substring => {
                let start = IntArg::new(arg(args, 1)?);
                let len = args.get(2).map(IntArg::new);
                Arc::new(string::substring(
                    &StrArg::new(&args[0]),
                    &start,
                    len.as_ref(),
                    n,
                )?)
            }
            Kernel::Concat => {
                let parts: Vec<StrArg<'_>> = args.iter().map(StrArg::new).collect();
                Arc::new(string::concat(&parts, n))
            }
            Kernel::ConcatWs => {
                let sep = StrArg::new(&args[0]);
                let parts: Vec<StrArg<'_>> = args[1..].iter().map(StrArg::new).collect();
                Arc::new(string::concat_ws(&sep, &parts, n))
            }
            Kernel::Trim { leading, trailing } => {
                let chars = args.get(1).map(StrArg::new);
                Arc::new(string::trim(
                    &StrArg::new(&args[0]),
                    chars.as_ref(),
                    *leading,
                    *trailing,
                    n,
                ))
            }
            Kernel::Replace => Arc::new(string::replace(
                &StrArg::new(&args[0]),
                &StrArg::new(arg(args, 1)?),
                &StrArg::new(arg(args, 2)?),
                n,
            )),
            Kernel::Position => Arc::new(string::position(
                &StrArg::new(&args[0]),
                &StrArg::new(arg(args, 1)?),
                n,
            )),
            Kernel::CountChar => Arc::new(string::count_char(
                &StrArg::new(&args[0]),
                &StrArg::new(arg(args, 1)?),
                n,
            )),
            Kernel::Abs => math::abs(first)?,
            Kernel::Floor => math::floor_ceil(first, out, true)?,
            Kernel::Ceil => math::floor_ceil(first, out, false)?,
            Kernel::Round { digits } => math::round(first, out, *digits)?,
            Kernel::ToTimestampLtz { multiplier } => Arc::new(temporal::to_timestamp_ltz(
                first.as_primitive(),
                *multiplier,
            )?),
            Kernel::Proctime => {
                return Err(ArrowError::ComputeError(
                    "PROCTIME is evaluated above".into(),
                ));
            }
            Kernel::Extract(field) => temporal::extract(first, *field)?,
            Kernel::FloorTime(unit) => temporal::floor_time(first, *unit)?,
            Kernel::Regex(op, regex) => text::regex(*op, regex, args, n)?,
            Kernel::SplitIndex => Arc::new(text::split_index(
                &StrArg::new(&args[0]),
                &StrArg::new(arg(args, 1)?),
                &IntArg::new(arg(args, 2)?),
                n,
            )),
            Kernel::Initcap => Arc::new(text::initcap(first.as_string::<i32>())),
            Kernel::Pad { left } => Arc::new(text::pad(
                &StrArg::new(&args[0]),
                &IntArg::new(arg(args, 1)?),
                &StrArg::new(arg(args, 2)?),
                *left,
                n,
            )),
            Kernel::DateFormat(pattern) => datetime::date_format(first, pattern)?,
            Kernel::ToDate(pattern) => Arc::new(datetime::to_date(
                first.as_string::<i32>(),
                pattern.as_deref(),
            )),
            Kernel::ToTimestamp(pattern) => {
                Arc::new(datetime::to_timestamp(first.as_string::<i32>(), pattern))
            }
            Kernel::TimestampAdd(unit) => {
                datetime::timestamp_add(*unit, &IntArg::new(&args[0]), arg(args, 1)?, n)?
            }
            Kernel::TimestampDiff(unit) => {
                datetime::timestamp_diff(*unit, &args[0], arg(args, 1)?, n)?
            }
        };
        Ok(Value::from_result(result, all_scalar))
    }
}

fn arg(args: &[Value], i: usize) -> Result<&Value, ArrowError> {
    args.get(i)
        .ok_or_else(|| ArrowError::InvalidArgumentError(format!("missing argument {}", i + 1)))
}

/// A Utf8 argument: one value for all rows, or a column.
pub(crate) enum StrArg<'a> {
    Scalar(Option<&'a str>),
    Array(&'a StringArray),
}

impl<'a> StrArg<'a> {
    fn new(v: &'a Value) -> Self {
        let a = v.array().as_string::<i32>();
        if v.is_scalar() {
            StrArg::Scalar(a.is_valid(0).then(|| a.value(0)))
        } else {
            StrArg::Array(a)
        }
    }

    #[inline]
    fn get(&self, i: usize) -> Option<&'a str> {
        match self {
            StrArg::Scalar(s) => *s,
            StrArg::Array(a) => a.is_valid(i).then(|| a.value(i)),
        }
    }
}

/// An Int64 argument: one value for all rows, or a column.
pub(crate) enum IntArg<'a> {
    Scalar(Option<i64>),
    Array(&'a Int64Array),
}

impl<'a> IntArg<'a> {
    fn new(v: &'a Value) -> Self {
        let a = v.array().as_primitive::<Int64Type>();
        if v.is_scalar() {
            IntArg::Scalar(a.is_valid(0).then(|| a.value(0)))
        } else {
            IntArg::Array(a)
        }
    }

    #[inline]
    fn get(&self, i: usize) -> Option<i64> {
        match self {
            IntArg::Scalar(s) => *s,
            IntArg::Array(a) => a.is_valid(i).then(|| a.value(i)),
        }
    }
}
