//! `DECIMAL` addition, subtraction and multiplication without a per-row overflow check.
//!
//! Arrow's decimal kernels check every sum and product for `i128` overflow, and the checked
//! `i128` multiplication costs several times the multiplication itself (on TPC-H Q1 the checked
//! kernels of `l_extendedprice * (1 - l_discount) * (1 + l_tax)` took a fifth of the run). Here
//! one pass over each operand finds its largest magnitude; when those bounds prove that no row
//! can overflow, a plain wrapping loop computes exactly the values Arrow would, with the same
//! result type and nulls. When they do not (or for division, remainder and `Decimal256`), the
//! caller runs Arrow's checked kernel, which reports the overflow.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Decimal128Array};
use arrow::datatypes::{DataType, Decimal128Type};

use crate::expr::physical::{ArithOp, Value};

/// Largest precision of `Decimal128`.
const MAX_PRECISION: u8 = 38;

/// `l op r` for two `Decimal128` operands, at least one of them a column, when no row can
/// overflow and the result type Arrow gives the operation is `out`; `None` when the caller has
/// to run Arrow's checked kernel instead.
pub(crate) fn decimal_arithmetic(
    op: ArithOp,
    l: &Value,
    r: &Value,
    out: &DataType,
) -> Option<ArrayRef> {
    let (&DataType::Decimal128(p1, s1), &DataType::Decimal128(p2, s2)) =
        (l.array().data_type(), r.array().data_type())
    else {
        return None;
    };
    if l.is_scalar() && r.is_scalar() {
        return None;
    }
    let (lhs, rhs) = (Operand::of(l)?, Operand::of(r)?);
    // Arrow's result types (Hive's rules), and the powers of ten that align the scales of a
    // sum.
    let (result, l_mul, r_mul) = match op {
        ArithOp::Add | ArithOp::Sub => {
            let scale = s1.max(s2);
            let int_digits = (i16::from(p1) - i16::from(s1)).max(i16::from(p2) - i16::from(s2));
            let precision = (i16::from(scale) + int_digits + 1).min(i16::from(MAX_PRECISION));
            let l_mul =
                10i128.checked_pow(u32::try_from(i16::from(scale) - i16::from(s1)).ok()?)?;
            let r_mul =
                10i128.checked_pow(u32::try_from(i16::from(scale) - i16::from(s2)).ok()?)?;
            (
                DataType::Decimal128(u8::try_from(precision).ok()?, scale),
                l_mul,
                r_mul,
            )
        }
        ArithOp::Mul => {
            let scale = i8::try_from(i16::from(s1) + i16::from(s2)).ok()?;
            if scale > MAX_PRECISION as i8 {
                return None;
            }
            let precision = p1.saturating_add(p2).saturating_add(1).min(MAX_PRECISION);
            (DataType::Decimal128(precision, scale), 1, 1)
        }
        ArithOp::Div | ArithOp::Rem => return None,
    };
    if &result != out {
        return None;
    }
    // |l * l_mul ± r * r_mul| and |l * r| are at most these bounds, computed without overflow.
    let l_bound = lhs.max_abs().checked_mul(l_mul.unsigned_abs())?;
    let r_bound = rhs.max_abs().checked_mul(r_mul.unsigned_abs())?;
    let bound = match op {
        ArithOp::Add | ArithOp::Sub => l_bound.checked_add(r_bound)?,
        ArithOp::Mul => l_bound.checked_mul(r_bound)?,
        ArithOp::Div | ArithOp::Rem => return None,
    };
    if bound > i128::MAX.unsigned_abs() {
        return None;
    }
    // A literal is scaled once here, so the loop multiplies only columns.
    let (lhs, l_mul) = lhs.scaled(l_mul);
    let (rhs, r_mul) = rhs.scaled(r_mul);
    let array = match op {
        ArithOp::Add if l_mul == 1 && r_mul == 1 => apply(&lhs, &rhs, i128::wrapping_add),
        ArithOp::Sub if l_mul == 1 && r_mul == 1 => apply(&lhs, &rhs, i128::wrapping_sub),
        ArithOp::Add => apply(&lhs, &rhs, |a, b| {
            a.wrapping_mul(l_mul).wrapping_add(b.wrapping_mul(r_mul))
        }),
        ArithOp::Sub => apply(&lhs, &rhs, |a, b| {
            a.wrapping_mul(l_mul).wrapping_sub(b.wrapping_mul(r_mul))
        }),
        ArithOp::Mul => apply(&lhs, &rhs, i128::wrapping_mul),
        ArithOp::Div | ArithOp::Rem => return None,
    }?;
    Some(Arc::new(array.with_data_type(result)))
}

/// One side of the operation.
enum Operand<'a> {
    Column(&'a Decimal128Array),
    /// A non-null literal.
    Scalar(i128),
}

impl<'a> Operand<'a> {
    /// `None` for a NULL literal (Arrow's kernel then gives a column of nulls).
    fn of(value: &'a Value) -> Option<Operand<'a>> {
        let array = value.array().as_primitive_opt::<Decimal128Type>()?;
        if value.is_scalar() {
            (array.len() == 1 && array.is_valid(0)).then(|| Operand::Scalar(array.value(0)))
        } else {
            Some(Operand::Column(array))
        }
    }

    /// The largest magnitude of the values, nulls' slots included.
    fn max_abs(&self) -> u128 {
        match self {
            Operand::Column(array) => array
                .values()
                .iter()
                .fold(0, |max, v| max.max(v.unsigned_abs())),
            Operand::Scalar(value) => value.unsigned_abs(),
        }
    }

    /// The operand and the factor still to multiply it by: a literal is multiplied by `factor`
    /// here (the caller has checked that the product fits), a column later, row by row.
    fn scaled(self, factor: i128) -> (Operand<'a>, i128) {
        match self {
            Operand::Column(array) => (Operand::Column(array), factor),
            Operand::Scalar(value) => (Operand::Scalar(value.wrapping_mul(factor)), 1),
        }
    }
}

/// `f(l, r)` per row; null where either side is null. `None` when two columns differ in
/// length (the caller's checked kernel then reports it).
fn apply(l: &Operand, r: &Operand, f: impl Fn(i128, i128) -> i128) -> Option<Decimal128Array> {
    match (l, r) {
        (Operand::Column(a), Operand::Column(b)) => arrow::compute::binary(*a, *b, f).ok(),
        (Operand::Column(a), &Operand::Scalar(y)) => Some(a.unary(|x| f(x, y))),
        (&Operand::Scalar(x), Operand::Column(b)) => Some(b.unary(|y| f(x, y))),
        (&Operand::Scalar(x), &Operand::Scalar(y)) => Some(Decimal128Array::from(vec![f(x, y)])),
    }
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::expr::physical::ScalarArray;

    fn column(values: &[Option<i128>], p: u8, s: i8) -> Value {
        let array = Decimal128Array::from(values.to_vec())
            .with_precision_and_scale(p, s)
            .expect("valid decimal type");
        Value::Array(Arc::new(array))
    }

    fn literal(value: Option<i128>, p: u8, s: i8) -> Value {
        let array = Decimal128Array::from(vec![value])
            .with_precision_and_scale(p, s)
            .expect("valid decimal type");
        Value::Scalar(ScalarArray::new(Arc::new(array)))
    }

    /// Arrow's checked kernel on the same operands.
    fn arrow(op: ArithOp, l: &Value, r: &Value) -> Result<ArrayRef, arrow::error::ArrowError> {
        op.arrow_kernel()(l.datum(), r.datum())
    }

    #[test]
    fn equals_arrow_where_no_row_can_overflow() {
        let a = column(&[Some(12_345), None, Some(-99_999_999), Some(0)], 15, 2);
        let b = column(&[Some(7), Some(3), None, Some(-100)], 15, 2);
        let c = column(&[Some(1), Some(-2), Some(3), Some(4)], 10, 0);
        let one = literal(Some(1), 1, 0);
        let rate = literal(Some(-5), 3, 2);
        let pairs = [
            (&a, &b),
            (&a, &c),
            (&c, &a),
            (&one, &a),
            (&a, &one),
            (&rate, &c),
        ];
        for op in [ArithOp::Add, ArithOp::Sub, ArithOp::Mul] {
            for (l, r) in pairs {
                let expected = arrow(op, l, r).expect("no overflow");
                let got = decimal_arithmetic(op, l, r, expected.data_type())
                    .expect("the bounds prove no overflow");
                assert_eq!(got.as_ref(), expected.as_ref(), "{op:?}");
            }
        }
    }

    #[test]
    fn leaves_possible_overflow_and_other_cases_to_arrow() {
        let big = column(&[Some(i128::MAX / 2 + 1), Some(1)], 38, 0);
        let three = column(&[Some(3), Some(3)], 38, 0);
        let out = DataType::Decimal128(38, 0);
        assert!(decimal_arithmetic(ArithOp::Mul, &big, &three, &out).is_none());
        assert!(decimal_arithmetic(ArithOp::Add, &big, &big, &out).is_none());
        // Division, a NULL literal, two literals and a different result type are Arrow's.
        let a = column(&[Some(1)], 10, 2);
        let div = arrow(ArithOp::Div, &a, &a).expect("divides");
        assert!(decimal_arithmetic(ArithOp::Div, &a, &a, div.data_type()).is_none());
        let null = literal(None, 10, 2);
        assert!(decimal_arithmetic(ArithOp::Add, &a, &null, &out).is_none());
        let one = literal(Some(1), 10, 2);
        assert!(
            decimal_arithmetic(ArithOp::Add, &one, &one, &DataType::Decimal128(11, 2)).is_none()
        );
        assert!(decimal_arithmetic(ArithOp::Add, &a, &a, &DataType::Decimal128(38, 2)).is_none());
    }
}
