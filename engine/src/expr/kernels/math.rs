//! Numeric kernels Arrow lacks: ABS, FLOOR, CEIL and ROUND on integers, floats and
//! `Decimal128`. Integer overflow (`ABS(i64::MIN)`) is an error, not a wrap.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, PrimitiveArray};
use arrow::datatypes::{
    ArrowPrimitiveType, DataType, Decimal128Type, Float32Type, Float64Type, Int8Type, Int16Type,
    Int32Type, Int64Type,
};
use arrow::error::ArrowError;

fn overflow(what: &str) -> ArrowError {
    ArrowError::ArithmeticOverflow(format!("{what} overflows"))
}

fn abs_int<T>(a: &dyn Array) -> Result<ArrayRef, ArrowError>
where
    T: ArrowPrimitiveType,
    T::Native: num_like::CheckedAbs,
{
    let out: PrimitiveArray<T> = a
        .as_primitive::<T>()
        .try_unary(|v| num_like::CheckedAbs::checked_abs(v).ok_or_else(|| overflow("ABS")))?;
    Ok(Arc::new(out.with_data_type(a.data_type().clone())))
}

/// Minimal checked-abs abstraction over the signed native types.
mod num_like {
    pub trait CheckedAbs: Sized {
        fn checked_abs(self) -> Option<Self>;
    }
    macro_rules! impl_abs {
        ($($t:ty),*) => {$(impl CheckedAbs for $t {
            fn checked_abs(self) -> Option<Self> {
                <$t>::checked_abs(self)
            }
        })*};
    }
    impl_abs!(i8, i16, i32, i64, i128);
}

/// `ABS(x)`, keeping the type.
pub(super) fn abs(a: &ArrayRef) -> Result<ArrayRef, ArrowError> {
    match a.data_type() {
        DataType::Int8 => abs_int::<Int8Type>(a),
        DataType::Int16 => abs_int::<Int16Type>(a),
        DataType::Int32 => abs_int::<Int32Type>(a),
        DataType::Int64 => abs_int::<Int64Type>(a),
        DataType::Decimal128(_, _) => abs_int::<Decimal128Type>(a),
        DataType::UInt8 | DataType::UInt16 | DataType::UInt32 | DataType::UInt64 => {
            Ok(Arc::clone(a))
        }
        DataType::Float32 => Ok(Arc::new(
            a.as_primitive::<Float32Type>()
                .unary::<_, Float32Type>(f32::abs),
        )),
        DataType::Float64 => Ok(Arc::new(
            a.as_primitive::<Float64Type>()
                .unary::<_, Float64Type>(f64::abs),
        )),
        other => Err(ArrowError::InvalidArgumentError(format!(
            "ABS is not defined for {other}"
        ))),
    }
}

fn pow10(exp: u32) -> Result<i128, ArrowError> {
    10_i128.checked_pow(exp).ok_or_else(|| overflow("10^scale"))
}

/// `FLOOR(x)` (`floor = true`) or `CEIL(x)`; `out` is the resolved result type (a decimal
/// becomes scale 0).
pub(super) fn floor_ceil(
    a: &ArrayRef,
    out: &DataType,
    floor: bool,
) -> Result<ArrayRef, ArrowError> {
    match a.data_type() {
        DataType::Float32 => {
            let f = if floor { f32::floor } else { f32::ceil };
            Ok(Arc::new(
                a.as_primitive::<Float32Type>().unary::<_, Float32Type>(f),
            ))
        }
        DataType::Float64 => {
            let f = if floor { f64::floor } else { f64::ceil };
            Ok(Arc::new(
                a.as_primitive::<Float64Type>().unary::<_, Float64Type>(f),
            ))
        }
        DataType::Decimal128(_, s) if *s > 0 => {
            let k = pow10(u32::from(s.unsigned_abs()))?;
            let res: PrimitiveArray<Decimal128Type> = if floor {
                a.as_primitive::<Decimal128Type>()
                    .unary(|v| v.div_euclid(k))
            } else {
                a.as_primitive::<Decimal128Type>()
                    .unary(|v| -(-v).div_euclid(k))
            };
            Ok(Arc::new(res.with_data_type(out.clone())))
        }
        t if t.is_integer() || matches!(t, DataType::Decimal128(_, _)) => Ok(Arc::clone(a)),
        other => Err(ArrowError::InvalidArgumentError(format!(
            "FLOOR/CEIL is not defined for {other}"
        ))),
    }
}

/// Rounds `v` to a multiple of `k`, half away from zero, and divides by `k`.
fn round_div(v: i128, k: i128) -> i128 {
    let q = v / k;
    let r = v % k;
    if r.abs() * 2 >= k { q + v.signum() } else { q }
}

/// `ROUND(x, digits)`, half away from zero; `out` is the resolved result type.
pub(super) fn round(a: &ArrayRef, out: &DataType, digits: i32) -> Result<ArrayRef, ArrowError> {
    match a.data_type() {
        DataType::Float64 => {
            let f = 10_f64.powi(digits);
            Ok(Arc::new(
                a.as_primitive::<Float64Type>()
                    .unary::<_, Float64Type>(|v| (v * f).round() / f),
            ))
        }
        DataType::Float32 => {
            let f = 10_f32.powi(digits);
            Ok(Arc::new(
                a.as_primitive::<Float32Type>()
                    .unary::<_, Float32Type>(|v| (v * f).round() / f),
            ))
        }
        DataType::Decimal128(_, s) if i32::from(*s) > digits => {
            let k = pow10(u32::try_from(i32::from(*s) - digits).map_err(|_| overflow("ROUND"))?)?;
            let res: PrimitiveArray<Decimal128Type> = a
                .as_primitive::<Decimal128Type>()
                .unary(|v| round_div(v, k));
            Ok(Arc::new(res.with_data_type(out.clone())))
        }
        DataType::Int64 if digits < 0 => {
            let k = pow10(digits.unsigned_abs())?;
            let res: PrimitiveArray<Int64Type> = a.as_primitive::<Int64Type>().try_unary(|v| {
                let r = round_div(i128::from(v), k)
                    .checked_mul(k)
                    .ok_or_else(|| overflow("ROUND"))?;
                i64::try_from(r).map_err(|_| overflow("ROUND"))
            })?;
            Ok(Arc::new(res))
        }
        t if t.is_integer() || matches!(t, DataType::Decimal128(_, _)) => Ok(Arc::clone(a)),
        other => Err(ArrowError::InvalidArgumentError(format!(
            "ROUND is not defined for {other}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_is_half_away_from_zero() {
        assert_eq!(round_div(125, 10), 13);
        assert_eq!(round_div(-125, 10), -13);
        assert_eq!(round_div(124, 10), 12);
        assert_eq!(round_div(-124, 10), -12);
    }
}
