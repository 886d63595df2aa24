//! Implicit type coercion rules, decided once in [`resolve`](super::resolve).
//!
//! Each function answers "to which type(s) must the operands be cast" or `None` when the
//! combination is not allowed; the caller turns `None` into an error naming both types.

use arrow::datatypes::{DataType, TimeUnit};

/// Largest decimal precision we produce for `Decimal128`.
const MAX_PRECISION: u8 = 38;

/// The decimal precision that holds every value of an integer type.
fn integer_digits(t: &DataType) -> Option<u8> {
    Some(match t {
        DataType::Int8 | DataType::UInt8 => 3,
        DataType::Int16 | DataType::UInt16 => 5,
        DataType::Int32 | DataType::UInt32 => 10,
        DataType::Int64 => 19,
        DataType::UInt64 => 20,
        _ => return None,
    })
}

fn is_signed_int(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64
    )
}

fn is_unsigned_int(t: &DataType) -> bool {
    matches!(
        t,
        DataType::UInt8 | DataType::UInt16 | DataType::UInt32 | DataType::UInt64
    )
}

pub(crate) fn is_integer(t: &DataType) -> bool {
    is_signed_int(t) || is_unsigned_int(t)
}

fn is_float(t: &DataType) -> bool {
    matches!(t, DataType::Float16 | DataType::Float32 | DataType::Float64)
}

fn decimal_parts(t: &DataType) -> Option<(u8, i8)> {
    match t {
        DataType::Decimal32(p, s)
        | DataType::Decimal64(p, s)
        | DataType::Decimal128(p, s)
        | DataType::Decimal256(p, s) => Some((*p, *s)),
        _ => None,
    }
}

pub(crate) fn is_decimal(t: &DataType) -> bool {
    decimal_parts(t).is_some()
}

pub(crate) fn is_numeric(t: &DataType) -> bool {
    is_integer(t) || is_float(t) || is_decimal(t)
}

pub(crate) fn is_string(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

pub(crate) fn is_temporal(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Date32 | DataType::Date64 | DataType::Timestamp(_, _)
    )
}

fn int_width(t: &DataType) -> u8 {
    match t {
        DataType::Int8 | DataType::UInt8 => 8,
        DataType::Int16 | DataType::UInt16 => 16,
        DataType::Int32 | DataType::UInt32 => 32,
        _ => 64,
    }
}

fn signed_of_width(w: u8) -> DataType {
    match w {
        8 => DataType::Int8,
        16 => DataType::Int16,
        32 => DataType::Int32,
        _ => DataType::Int64,
    }
}

fn unsigned_of_width(w: u8) -> DataType {
    match w {
        8 => DataType::UInt8,
        16 => DataType::UInt16,
        32 => DataType::UInt32,
        _ => DataType::UInt64,
    }
}

/// The common type of two integer types.
fn common_integer(l: &DataType, r: &DataType) -> DataType {
    let (wl, wr) = (int_width(l), int_width(r));
    match (is_signed_int(l), is_signed_int(r)) {
        (true, true) => signed_of_width(wl.max(wr)),
        (false, false) => unsigned_of_width(wl.max(wr)),
        // A signed type strictly wider than the unsigned one holds both; otherwise the next
        // wider signed type, saturating at Int64 (UInt64 values above i64::MAX then fail to cast).
        (true, false) => signed_of_width(if wl > wr { wl } else { (wr * 2).min(64) }),
        (false, true) => signed_of_width(if wr > wl { wr } else { (wl * 2).min(64) }),
    }
}

/// The Decimal128 form of an integer or decimal type (`None` for anything else).
fn as_decimal(t: &DataType) -> Option<(u8, i8)> {
    decimal_parts(t).or_else(|| integer_digits(t).map(|p| (p, 0)))
}

/// A decimal type that holds every value of both decimal types exactly.
fn decimal_union(l: (u8, i8), r: (u8, i8)) -> DataType {
    let scale = l.1.max(r.1);
    let int_digits = (i16::from(l.0) - i16::from(l.1)).max(i16::from(r.0) - i16::from(r.1));
    let precision = (int_digits + i16::from(scale)).clamp(1, i16::from(MAX_PRECISION));
    DataType::Decimal128(precision as u8, scale)
}

/// Operand types for `+ - * / %` on two numeric types; each side keeps its own decimal
/// precision and scale because the decimal kernels compute the result type from both.
pub(crate) fn arithmetic(l: &DataType, r: &DataType) -> Option<(DataType, DataType)> {
    if !is_numeric(l) || !is_numeric(r) {
        return None;
    }
    if is_integer(l) && is_integer(r) {
        let t = common_integer(l, r);
        return Some((t.clone(), t));
    }
    if is_float(l) || is_float(r) {
        let t = if *l == DataType::Float32 && *r == DataType::Float32 {
            DataType::Float32
        } else {
            DataType::Float64
        };
        return Some((t.clone(), t));
    }
    if matches!(l, DataType::Decimal256(_, _)) || matches!(r, DataType::Decimal256(_, _)) {
        let (lp, ls) = as_decimal(l)?;
        let (rp, rs) = as_decimal(r)?;
        return Some((DataType::Decimal256(lp, ls), DataType::Decimal256(rp, rs)));
    }
    let (lp, ls) = as_decimal(l)?;
    let (rp, rs) = as_decimal(r)?;
    Some((DataType::Decimal128(lp, ls), DataType::Decimal128(rp, rs)))
}

fn finer_unit(a: TimeUnit, b: TimeUnit) -> TimeUnit {
    fn rank(u: TimeUnit) -> u8 {
        match u {
            TimeUnit::Second => 0,
            TimeUnit::Millisecond => 1,
            TimeUnit::Microsecond => 2,
            TimeUnit::Nanosecond => 3,
        }
    }
    if rank(a) >= rank(b) { a } else { b }
}

/// The common supertype of two types for CASE, COALESCE, IN and the like: numbers widen,
/// string types unify to Utf8, timestamps to the finer unit, date with timestamp to timestamp,
/// `Null` to anything. Strings do not mix with other types here.
pub(crate) fn common_type(l: &DataType, r: &DataType) -> Option<DataType> {
    if l == r {
        return Some(l.clone());
    }
    match (l, r) {
        (DataType::Null, t) | (t, DataType::Null) => Some(t.clone()),
        _ if is_string(l) && is_string(r) => Some(DataType::Utf8),
        _ if is_integer(l) && is_integer(r) => Some(common_integer(l, r)),
        _ if is_numeric(l) && is_numeric(r) => {
            if is_float(l) || is_float(r) {
                Some(if *l == DataType::Float32 && *r == DataType::Float32 {
                    DataType::Float32
                } else {
                    DataType::Float64
                })
            } else {
                Some(decimal_union(as_decimal(l)?, as_decimal(r)?))
            }
        }
        (DataType::Timestamp(u1, tz1), DataType::Timestamp(u2, tz2)) => Some(DataType::Timestamp(
            finer_unit(*u1, *u2),
            tz1.clone().or_else(|| tz2.clone()),
        )),
        (DataType::Date32 | DataType::Date64, DataType::Timestamp(u, tz))
        | (DataType::Timestamp(u, tz), DataType::Date32 | DataType::Date64) => {
            Some(DataType::Timestamp(*u, tz.clone()))
        }
        (DataType::Date32, DataType::Date64) | (DataType::Date64, DataType::Date32) => {
            Some(DataType::Date64)
        }
        _ => None,
    }
}

/// The type both sides of a comparison are cast to: [`common_type`], plus a string compared
/// with a temporal, numeric or boolean value takes the other side's type.
pub(crate) fn comparison(l: &DataType, r: &DataType) -> Option<DataType> {
    if let Some(t) = common_type(l, r) {
        return Some(t);
    }
    let castable = |t: &DataType| is_temporal(t) || is_numeric(t) || *t == DataType::Boolean;
    if is_string(l) && castable(r) {
        return Some(r.clone());
    }
    if is_string(r) && castable(l) {
        return Some(l.clone());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_widening() {
        assert_eq!(
            arithmetic(&DataType::Int32, &DataType::Int64),
            Some((DataType::Int64, DataType::Int64))
        );
        assert_eq!(
            common_integer(&DataType::Int8, &DataType::UInt8),
            DataType::Int16
        );
        assert_eq!(
            common_integer(&DataType::UInt64, &DataType::Int8),
            DataType::Int64
        );
        assert_eq!(
            arithmetic(&DataType::Int32, &DataType::Float32),
            Some((DataType::Float64, DataType::Float64))
        );
        assert_eq!(arithmetic(&DataType::Utf8, &DataType::Int64), None);
    }

    #[test]
    fn decimal_rules() {
        assert_eq!(
            arithmetic(&DataType::Decimal128(10, 2), &DataType::Int32),
            Some((DataType::Decimal128(10, 2), DataType::Decimal128(10, 0)))
        );
        assert_eq!(
            comparison(&DataType::Decimal128(5, 2), &DataType::Int64),
            Some(DataType::Decimal128(21, 2))
        );
    }

    #[test]
    fn temporal_and_strings() {
        let ms = DataType::Timestamp(TimeUnit::Millisecond, None);
        let us = DataType::Timestamp(TimeUnit::Microsecond, None);
        assert_eq!(comparison(&ms, &us), Some(us.clone()));
        assert_eq!(comparison(&DataType::Utf8, &ms), Some(ms.clone()));
        assert_eq!(comparison(&DataType::Date32, &ms), Some(ms));
        assert_eq!(common_type(&DataType::Utf8, &DataType::Int64), None);
        assert_eq!(
            common_type(&DataType::LargeUtf8, &DataType::Utf8),
            Some(DataType::Utf8)
        );
    }
}
