//! Tests of expression resolution and evaluation: every construct with nulls, error messages,
//! three-valued logic, serde, and a property test against a row-at-a-time reference.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Date32Array, Decimal128Array, Float64Array, Int32Array,
    Int64Array, RecordBatch, StringArray, TimestampMillisecondArray,
};
use arrow::datatypes::{
    DataType, Date32Type, Decimal128Type, Field, Float64Type, Int32Type, Int64Type, Schema,
    TimeUnit, TimestampMillisecondType,
};

use super::physical::Kind;
use super::*;

/// 2024-03-15T13:45:30.250Z (a Friday) and 1969-12-31T23:59:59.500Z.
const TS: i64 = 1_710_510_330_250;

fn batch() -> RecordBatch {
    let schema = Schema::new(vec![
        Field::new("a", DataType::Int64, true),
        Field::new("b", DataType::Int32, true),
        Field::new("f", DataType::Float64, true),
        Field::new("s", DataType::Utf8, true),
        Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), true),
        Field::new("d", DataType::Date32, true),
        Field::new("dec", DataType::Decimal128(10, 2), true),
        Field::new("flag", DataType::Boolean, true),
    ]);
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(vec![
            Some(1),
            Some(2),
            None,
            Some(4),
            Some(-5),
        ])),
        Arc::new(Int32Array::from(vec![
            Some(10),
            Some(0),
            Some(3),
            None,
            Some(2),
        ])),
        Arc::new(Float64Array::from(vec![
            Some(1.5),
            None,
            Some(-2.0),
            Some(0.0),
            Some(3.25),
        ])),
        Arc::new(StringArray::from(vec![
            Some("Hello"),
            None,
            Some("wÖrld"),
            Some("  pad  "),
            Some("abc%"),
        ])),
        Arc::new(TimestampMillisecondArray::from(vec![
            Some(TS),
            Some(-500),
            None,
            Some(0),
            Some(TS + 1),
        ])),
        Arc::new(Date32Array::from(vec![
            Some(19_797),
            Some(0),
            None,
            Some(-1),
            Some(19_783),
        ])),
        Arc::new(
            Decimal128Array::from(vec![Some(125), Some(-250), None, Some(1), Some(100)])
                .with_precision_and_scale(10, 2)
                .unwrap(),
        ),
        Arc::new(BooleanArray::from(vec![
            Some(true),
            Some(false),
            None,
            Some(true),
            None,
        ])),
    ];
    RecordBatch::try_new(Arc::new(schema), columns).unwrap()
}

fn eval(e: Expr) -> ArrayRef {
    let b = batch();
    let p = e
        .resolve(&b.schema())
        .unwrap_or_else(|err| panic!("resolve {e}: {err}"));
    let out = p
        .evaluate(&b)
        .unwrap_or_else(|err| panic!("evaluate {e}: {err}"));
    assert_eq!(out.len(), b.num_rows(), "{e}");
    assert_eq!(out.data_type(), p.data_type(), "{e}");
    if !p.nullable() {
        assert_eq!(out.null_count(), 0, "{e} is declared non-nullable");
    }
    out
}

fn eval_err(e: Expr) -> String {
    let b = batch();
    match e.resolve(&b.schema()).and_then(|p| p.evaluate(&b)) {
        Ok(out) => panic!("{e} should fail, got {out:?}"),
        Err(err) => err.to_string(),
    }
}

fn resolve_err(e: Expr) -> String {
    match e.resolve(&batch().schema()) {
        Ok(p) => panic!("{e} should not resolve, got {p:?}"),
        Err(err) => err.to_string(),
    }
}

fn i64s(a: &ArrayRef) -> Vec<Option<i64>> {
    a.as_primitive::<Int64Type>().iter().collect()
}
fn i32s(a: &ArrayRef) -> Vec<Option<i32>> {
    a.as_primitive::<Int32Type>().iter().collect()
}
fn f64s(a: &ArrayRef) -> Vec<Option<f64>> {
    a.as_primitive::<Float64Type>().iter().collect()
}
fn bools(a: &ArrayRef) -> Vec<Option<bool>> {
    a.as_boolean().iter().collect()
}
fn strs(a: &ArrayRef) -> Vec<Option<&str>> {
    a.as_string::<i32>().iter().collect()
}
fn ts_ms(a: &ArrayRef) -> Vec<Option<i64>> {
    a.as_primitive::<TimestampMillisecondType>()
        .iter()
        .collect()
}

#[test]
fn columns_and_literals() {
    assert_eq!(
        i64s(&eval(col("a"))),
        vec![Some(1), Some(2), None, Some(4), Some(-5)]
    );
    assert_eq!(i64s(&eval(lit(7_i64))), vec![Some(7); 5]);
    assert_eq!(strs(&eval(lit("x"))), vec![Some("x"); 5]);
    let nulls = eval(lit(ScalarValue::Null));
    assert_eq!(nulls.logical_null_count(), 5);
    let dec = eval(lit(ScalarValue::Decimal128 {
        value: 314,
        precision: 3,
        scale: 2,
    }));
    assert_eq!(dec.data_type(), &DataType::Decimal128(3, 2));
    let ts = eval(lit(ScalarValue::Timestamp {
        value: 5,
        unit: TimeUnit::Millisecond,
        tz: Some("UTC".into()),
    }));
    assert_eq!(
        ts.data_type(),
        &DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
    );
    for v in [
        ScalarValue::Boolean(true),
        ScalarValue::Int8(1),
        ScalarValue::Int16(1),
        ScalarValue::Int32(1),
        ScalarValue::UInt8(1),
        ScalarValue::UInt16(1),
        ScalarValue::UInt32(1),
        ScalarValue::UInt64(1),
        ScalarValue::Float32(1.0),
        ScalarValue::Date32(3),
        ScalarValue::IntervalYearMonth(2),
        ScalarValue::IntervalDayTime { days: 1, millis: 2 },
        ScalarValue::IntervalMonthDayNano {
            months: 1,
            days: 2,
            nanos: 3,
        },
    ] {
        assert_eq!(eval(lit(v.clone())).data_type(), &v.data_type());
    }
    assert_eq!(
        col("a").add(col("b")).gt(col("f")).columns(),
        vec!["a", "b", "f"]
    );
}

#[test]
fn arithmetic_with_nulls_and_coercion() {
    let sum = eval(col("a").add(col("b")));
    assert_eq!(sum.data_type(), &DataType::Int64);
    assert_eq!(i64s(&sum), vec![Some(11), Some(2), None, None, Some(-3)]);
    assert_eq!(
        i64s(&eval(col("a").sub(lit(1_i32)))),
        vec![Some(0), Some(1), None, Some(3), Some(-6)]
    );
    let prod = eval(col("a").mul(col("f")));
    assert_eq!(prod.data_type(), &DataType::Float64);
    assert_eq!(
        f64s(&prod),
        vec![Some(1.5), None, None, Some(0.0), Some(-16.25)]
    );
    assert_eq!(
        i64s(&eval(col("a").div(lit(2_i64)))),
        vec![Some(0), Some(1), None, Some(2), Some(-2)]
    );
    assert_eq!(
        i64s(&eval(col("a").modulo(lit(3_i64)))),
        vec![Some(1), Some(2), None, Some(1), Some(-2)]
    );
    assert_eq!(
        i64s(&eval(col("a").negate())),
        vec![Some(-1), Some(-2), None, Some(-4), Some(5)]
    );
    // Float division by zero follows IEEE 754.
    assert_eq!(f64s(&eval(col("f").div(lit(0.0))))[0], Some(f64::INFINITY));
    // NULL arithmetic takes the other side's type.
    let n = eval(col("a").add(lit(ScalarValue::Null)));
    assert_eq!(n.data_type(), &DataType::Int64);
    assert_eq!(n.null_count(), 5);
    // std::ops work too.
    assert_eq!(
        i64s(&eval(col("a") * lit(2_i64) - lit(1_i64))),
        vec![Some(1), Some(3), None, Some(7), Some(-11)]
    );
}

#[test]
fn division_by_zero_and_overflow_are_errors() {
    let err = eval_err(col("a").div(col("b")));
    assert!(err.contains("(a / b)"), "{err}");
    assert!(err.to_lowercase().contains("divide by zero"), "{err}");
    let err = eval_err(col("a").modulo(lit(0_i64)));
    assert!(err.contains("(a % 0)"), "{err}");
    let err = eval_err(lit(i64::MAX).add(col("a")));
    assert!(err.to_lowercase().contains("overflow"), "{err}");
    let err = eval_err(lit(i64::MIN).negate().add(col("a")));
    assert!(err.to_lowercase().contains("overflow"), "{err}");
}

#[test]
fn decimal_arithmetic() {
    let sum = eval(col("dec").add(col("a")));
    assert_eq!(sum.data_type(), &DataType::Decimal128(22, 2));
    let v: Vec<Option<i128>> = sum.as_primitive::<Decimal128Type>().iter().collect();
    assert_eq!(v, vec![Some(225), Some(-50), None, Some(401), Some(-400)]);
    let prod = eval(col("dec").mul(col("dec")));
    assert_eq!(prod.data_type(), &DataType::Decimal128(21, 4));
    let v: Vec<Option<i128>> = prod.as_primitive::<Decimal128Type>().iter().collect();
    assert_eq!(v[0], Some(15_625));
    let quot = eval(col("dec").div(lit(2_i64)));
    assert_eq!(quot.data_type(), &DataType::Decimal128(14, 6));
    let v: Vec<Option<i128>> = quot.as_primitive::<Decimal128Type>().iter().collect();
    assert_eq!(v[0], Some(625_000));
    // Decimal with float is computed in Float64.
    let f = eval(col("dec").add(col("f")));
    assert_eq!(f64s(&f)[0], Some(2.75));
    let err = eval_err(col("dec").div(lit(0_i64)));
    assert!(err.to_lowercase().contains("divide by zero"), "{err}");
}

#[test]
fn comparisons_across_types() {
    assert_eq!(
        bools(&eval(col("a").gt(lit(1_i64)))),
        vec![Some(false), Some(true), None, Some(true), Some(false)]
    );
    assert_eq!(
        bools(&eval(col("a").lt_eq(col("f")))),
        vec![Some(true), None, None, Some(false), Some(true)]
    );
    assert_eq!(
        bools(&eval(col("dec").gt_eq(lit(1_i32)))),
        vec![Some(true), Some(false), None, Some(false), Some(true)]
    );
    assert_eq!(
        bools(&eval(col("s").eq(lit("Hello")))),
        vec![Some(true), None, Some(false), Some(false), Some(false)]
    );
    assert_eq!(
        bools(&eval(col("s").not_eq(lit("Hello")))),
        vec![Some(false), None, Some(true), Some(true), Some(true)]
    );
    // A string literal against a timestamp is cast once, at resolve.
    assert_eq!(
        bools(&eval(col("ts").gt(lit("2024-01-01 00:00:00")))),
        vec![Some(true), Some(false), None, Some(false), Some(true)]
    );
    // Date vs timestamp compares as timestamps.
    assert_eq!(
        bools(&eval(col("d").lt(col("ts")))),
        vec![Some(true), Some(false), None, Some(true), Some(true)]
    );
    // Literal against literal stays scalar until the end.
    assert_eq!(bools(&eval(lit(1_i32).lt(lit(2.5)))), vec![Some(true); 5]);
    let err = resolve_err(col("ts").gt(col("a")).and(lit(true)));
    assert!(
        err.contains("cannot compare Timestamp(ms) 'ts' and Int64 'a' with '>'"),
        "{err}"
    );
    // The implicit cast of a string column fails on the first bad value, naming it.
    let err = eval_err(col("s").lt(col("d").cast(DataType::Int32)));
    assert!(err.contains("Hello"), "{err}");
}

fn kleene(v: Option<bool>) -> Expr {
    match v {
        Some(b) => lit(b),
        None => lit(ScalarValue::Null).cast(DataType::Boolean),
    }
}

#[test]
fn three_valued_logic_tables() {
    let vals = [Some(true), Some(false), None];
    let schema = Schema::new(vec![
        Field::new("p", DataType::Boolean, true),
        Field::new("q", DataType::Boolean, true),
    ]);
    let (mut ps, mut qs) = (Vec::new(), Vec::new());
    for p in vals {
        for q in vals {
            ps.push(p);
            qs.push(q);
        }
    }
    let b = RecordBatch::try_new(
        Arc::new(schema),
        vec![
            Arc::new(BooleanArray::from(ps.clone())),
            Arc::new(BooleanArray::from(qs.clone())),
        ],
    )
    .unwrap();
    let run = |e: Expr| -> Vec<Option<bool>> {
        let out = e.resolve(&b.schema()).unwrap().evaluate(&b).unwrap();
        out.as_boolean().iter().collect()
    };
    let and_expected: Vec<Option<bool>> = ps
        .iter()
        .zip(&qs)
        .map(|(p, q)| match (p, q) {
            (Some(false), _) | (_, Some(false)) => Some(false),
            (Some(true), Some(true)) => Some(true),
            _ => None,
        })
        .collect();
    let or_expected: Vec<Option<bool>> = ps
        .iter()
        .zip(&qs)
        .map(|(p, q)| match (p, q) {
            (Some(true), _) | (_, Some(true)) => Some(true),
            (Some(false), Some(false)) => Some(false),
            _ => None,
        })
        .collect();
    assert_eq!(run(col("p").and(col("q"))), and_expected);
    assert_eq!(run(col("p").or(col("q"))), or_expected);
    assert_eq!(
        run(col("p").not()),
        ps.iter().map(|p| p.map(|v| !v)).collect::<Vec<_>>()
    );
    // The same tables with literal operands (the scalar path).
    for (i, (p, q)) in ps.iter().zip(&qs).enumerate() {
        assert_eq!(run(kleene(*p).and(kleene(*q)))[0], and_expected[i]);
        assert_eq!(run(kleene(*p).or(kleene(*q)))[0], or_expected[i]);
        assert_eq!(run(col("p").and(kleene(*q)))[i], and_expected[i]);
        assert_eq!(run(kleene(*p).or(col("q")))[i], or_expected[i]);
    }
    // Untyped NULL works as a Boolean operand.
    assert_eq!(run(lit(ScalarValue::Null).or(lit(true)))[0], Some(true));
}

#[test]
fn null_tests_in_and_between() {
    assert_eq!(
        bools(&eval(col("a").is_null())),
        vec![
            Some(false),
            Some(false),
            Some(true),
            Some(false),
            Some(false)
        ]
    );
    assert_eq!(
        bools(&eval(col("a").is_not_null())),
        vec![Some(true), Some(true), Some(false), Some(true), Some(true)]
    );
    assert_eq!(
        bools(&eval(col("a").in_list(vec![lit(1_i64), lit(4_i32)], false))),
        vec![Some(true), Some(false), None, Some(true), Some(false)]
    );
    // x IN (1, NULL) is NULL when not found; NOT IN likewise.
    let with_null = vec![lit(1_i64), lit(ScalarValue::Null)];
    assert_eq!(
        bools(&eval(col("a").in_list(with_null.clone(), false))),
        vec![Some(true), None, None, None, None]
    );
    assert_eq!(
        bools(&eval(col("a").in_list(with_null, true))),
        vec![Some(false), None, None, None, None]
    );
    assert_eq!(
        bools(&eval(col("a").in_list(vec![col("b"), lit(2.0)], true))),
        vec![Some(true), Some(false), None, None, Some(true)]
    );
    assert_eq!(
        bools(&eval(col("a").between(lit(1_i64), lit(3_i64)))),
        vec![Some(true), Some(true), None, Some(false), Some(false)]
    );
    assert_eq!(
        bools(&eval(col("a").not_between(lit(1_i64), col("b")))),
        vec![Some(false), Some(true), None, None, Some(true)]
    );
    let err = resolve_err(col("a").in_list(vec![], false));
    assert!(err.contains("empty"), "{err}");
}

#[test]
fn case_expressions() {
    // A division by zero in a branch the row does not take is not an error.
    let safe_div = case_when(
        vec![(col("b").eq(lit(0_i32)), lit(0_i64))],
        Some(col("a").div(col("b"))),
    );
    assert_eq!(
        i64s(&eval(safe_div)),
        vec![Some(0), Some(0), None, None, Some(-2)]
    );
    // Conditions after a taken branch are not evaluated for that row either.
    let guarded = case_when(
        vec![
            (col("b").eq(lit(0_i32)), lit(-1_i64)),
            (col("a").div(col("b")).gt(lit(0_i64)), lit(1_i64)),
        ],
        None,
    );
    assert_eq!(i64s(&eval(guarded)), vec![None, Some(-1), None, None, None]);
    // Result type coercion: Int64 and Float64 branches make Float64; no ELSE gives NULL.
    let mixed = eval(case_when(
        vec![(col("a").gt(lit(1_i64)), col("a")), (col("flag"), col("f"))],
        None,
    ));
    assert_eq!(mixed.data_type(), &DataType::Float64);
    assert_eq!(
        f64s(&mixed),
        vec![Some(1.5), Some(2.0), None, Some(4.0), None]
    );
    // Simple CASE.
    let simple = eval(simple_case(
        col("b"),
        vec![(lit(10_i32), lit("ten")), (lit(0_i32), lit("zero"))],
        Some(lit("other")),
    ));
    assert_eq!(
        strs(&simple),
        vec![
            Some("ten"),
            Some("zero"),
            Some("other"),
            Some("other"),
            Some("other")
        ]
    );
    let err = resolve_err(case_when(vec![(col("flag"), lit("x"))], Some(lit(1_i64))));
    assert!(err.contains("incompatible types"), "{err}");
    let err = resolve_err(case_when(vec![(col("a"), lit(1_i64))], None));
    assert!(err.contains("Boolean") && err.contains("'a'"), "{err}");
    // IF is a two-branch CASE.
    assert_eq!(
        i64s(&eval(call(
            Function::If,
            vec![col("flag"), col("a"), lit(0_i64)]
        ))),
        vec![Some(1), Some(0), Some(0), Some(4), Some(0)]
    );
}

#[test]
fn casts() {
    let s = eval(col("a").cast(DataType::Utf8));
    assert_eq!(
        strs(&s),
        vec![Some("1"), Some("2"), None, Some("4"), Some("-5")]
    );
    let back = eval(col("a").cast(DataType::Utf8).cast(DataType::Int32));
    assert_eq!(i32s(&back), vec![Some(1), Some(2), None, Some(4), Some(-5)]);
    let err = eval_err(col("s").cast(DataType::Int64));
    assert!(err.contains("Hello"), "the bad value is named: {err}");
    assert!(err.contains("CAST(s AS Int64)"), "{err}");
    assert_eq!(
        i64s(&eval(col("s").try_cast(DataType::Int64))),
        vec![None; 5]
    );
    let dec = eval(col("f").cast(DataType::Decimal128(10, 1)));
    assert_eq!(dec.data_type(), &DataType::Decimal128(10, 1));
    let ts =
        eval(lit("2024-03-15 13:45:30.250").cast(DataType::Timestamp(TimeUnit::Millisecond, None)));
    assert_eq!(ts_ms(&ts)[0], Some(TS));
    let date = eval(lit("2024-03-15").cast(DataType::Date32));
    let v: Vec<Option<i32>> = date.as_primitive::<Date32Type>().iter().collect();
    assert_eq!(v[0], Some(19_797));
    assert_eq!(
        bools(&eval(lit("true").cast(DataType::Boolean)))[0],
        Some(true)
    );
    // A literal that cannot be cast fails at resolve.
    let err = resolve_err(lit("nope").cast(DataType::Int32));
    assert!(err.contains("nope"), "{err}");
    let err = resolve_err(col("flag").cast(DataType::Interval(
        arrow::datatypes::IntervalUnit::MonthDayNano,
    )));
    assert!(err.contains("cannot cast"), "{err}");
}

#[test]
fn string_functions() {
    assert_eq!(
        strs(&eval(call(Function::Lower, vec![col("s")]))),
        vec![
            Some("hello"),
            None,
            Some("wörld"),
            Some("  pad  "),
            Some("abc%")
        ]
    );
    assert_eq!(
        strs(&eval(call(Function::Upper, vec![col("s")]))),
        vec![
            Some("HELLO"),
            None,
            Some("WÖRLD"),
            Some("  PAD  "),
            Some("ABC%")
        ]
    );
    assert_eq!(
        strs(&eval(call(Function::Lower, vec![lit("ABC")]))),
        vec![Some("abc"); 5]
    );
    assert_eq!(
        i32s(&eval(call(Function::CharLength, vec![col("s")]))),
        vec![Some(5), None, Some(5), Some(7), Some(4)]
    );
    let sub = |args: Vec<Expr>| {
        strs(&eval(call(Function::Substring, args)))
            .into_iter()
            .map(|s| s.map(str::to_owned))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        sub(vec![col("s"), lit(2_i64), lit(3_i64)])[..3],
        [Some("ell".to_owned()), None, Some("Örl".to_owned())]
    );
    assert_eq!(
        sub(vec![lit("hello"), lit(0_i64), lit(3_i64)])[0],
        Some("he".into())
    );
    assert_eq!(
        sub(vec![lit("hello"), lit(-5_i64), lit(3_i64)])[0],
        Some("".into())
    );
    assert_eq!(sub(vec![lit("hello"), lit(4_i64)])[0], Some("lo".into()));
    assert_eq!(sub(vec![lit("hello"), lit(9_i64)])[0], Some("".into()));
    assert_eq!(sub(vec![col("s"), col("b")])[4], Some("bc%".into()));
    assert_eq!(sub(vec![col("s"), col("b")])[3], None);
    let err = eval_err(call(
        Function::Substring,
        vec![col("s"), lit(1_i64), lit(-1_i64)],
    ));
    assert!(err.contains("negative substring length"), "{err}");

    assert_eq!(
        strs(&eval(call(
            Function::Concat,
            vec![col("s"), lit("!"), col("a")]
        ))),
        vec![
            Some("Hello!1"),
            None,
            None,
            Some("  pad  !4"),
            Some("abc%!-5")
        ]
    );
    assert_eq!(
        strs(&eval(call(
            Function::ConcatWs,
            vec![lit("-"), col("s"), col("a")]
        ))),
        vec![
            Some("Hello-1"),
            Some("2"),
            Some("wÖrld"),
            Some("  pad  -4"),
            Some("abc%--5")
        ]
    );
    assert_eq!(
        strs(&eval(call(Function::Trim, vec![col("s")])))[3],
        Some("pad")
    );
    assert_eq!(
        strs(&eval(call(Function::Ltrim, vec![col("s")])))[3],
        Some("pad  ")
    );
    assert_eq!(
        strs(&eval(call(Function::Rtrim, vec![col("s")])))[3],
        Some("  pad")
    );
    assert_eq!(
        strs(&eval(call(Function::Trim, vec![lit("xxhixyx"), lit("xy")])))[0],
        Some("hi")
    );
    assert_eq!(
        strs(&eval(call(
            Function::Replace,
            vec![col("s"), lit("l"), lit("L")]
        ))),
        vec![
            Some("HeLLo"),
            None,
            Some("wÖrLd"),
            Some("  pad  "),
            Some("abc%")
        ]
    );
    assert_eq!(
        i32s(&eval(call(Function::Position, vec![lit("r"), col("s")]))),
        vec![Some(0), None, Some(3), Some(0), Some(0)]
    );
}

#[test]
fn like_patterns() {
    assert_eq!(
        bools(&eval(col("s").like(lit("%l%")))),
        vec![Some(true), None, Some(true), Some(false), Some(false)]
    );
    assert_eq!(
        bools(&eval(col("s").not_like(lit("_e%")))),
        vec![Some(false), None, Some(true), Some(true), Some(true)]
    );
    assert_eq!(
        bools(&eval(col("s").like_with(
            lit("abc!%"),
            Some('!'),
            false,
            false
        )))[4],
        Some(true)
    );
    assert_eq!(
        bools(&eval(col("s").like_with(
            lit("abc!%"),
            Some('!'),
            false,
            false
        )))[0],
        Some(false)
    );
    assert_eq!(
        bools(&eval(col("s").like_with(lit("hello"), None, false, true)))[0],
        Some(true)
    );
    let err = resolve_err(col("s").like_with(col("s"), Some('!'), false, false));
    assert!(err.contains("literal pattern"), "{err}");
    let err = resolve_err(col("a").like(lit("1%")));
    assert!(err.contains("Int64 'a'"), "{err}");
}

#[test]
fn temporal_functions() {
    let ex = |f: DateField| i64s(&eval(extract(f, col("ts"))));
    assert_eq!(
        ex(DateField::Year),
        vec![Some(2024), Some(1969), None, Some(1970), Some(2024)]
    );
    assert_eq!(ex(DateField::Month)[0], Some(3));
    assert_eq!(ex(DateField::Day)[0], Some(15));
    assert_eq!(ex(DateField::Hour)[0], Some(13));
    assert_eq!(ex(DateField::Minute)[0], Some(45));
    assert_eq!(ex(DateField::Second)[..2], [Some(30), Some(59)]);
    assert_eq!(ex(DateField::DayOfWeek)[0], Some(6));
    assert_eq!(ex(DateField::DayOfYear)[0], Some(75));
    assert_eq!(ex(DateField::Week)[0], Some(11));
    assert_eq!(ex(DateField::Quarter)[0], Some(1));
    assert_eq!(ex(DateField::Epoch)[..2], [Some(1_710_510_330), Some(-1)]);
    assert_eq!(
        i64s(&eval(extract(DateField::Year, col("d")))),
        vec![Some(2024), Some(1970), None, Some(1969), Some(2024)]
    );
    assert_eq!(
        i64s(&eval(extract(DateField::Epoch, col("d"))))[3],
        Some(-86_400)
    );
    // A DATE is midnight.
    assert_eq!(i64s(&eval(extract(DateField::Hour, col("d"))))[0], Some(0));
    let err = resolve_err(extract(DateField::Year, col("s")));
    assert!(err.contains("Utf8 's'"), "{err}");

    let fl = |u: TimeUnitField| ts_ms(&eval(col("ts").floor_to(u)));
    assert_eq!(
        fl(TimeUnitField::Second)[..2],
        [Some(1_710_510_330_000), Some(-1_000)]
    );
    assert_eq!(fl(TimeUnitField::Minute)[0], Some(1_710_510_300_000));
    assert_eq!(fl(TimeUnitField::Hour)[0], Some(1_710_507_600_000));
    assert_eq!(
        fl(TimeUnitField::Day)[..2],
        [Some(1_710_460_800_000), Some(-86_400_000)]
    );
    assert_eq!(fl(TimeUnitField::Week)[0], Some(1_710_115_200_000));
    assert_eq!(fl(TimeUnitField::Month)[0], Some(1_709_251_200_000));
    assert_eq!(fl(TimeUnitField::Quarter)[0], Some(1_704_067_200_000));
    assert_eq!(fl(TimeUnitField::Year)[0], Some(1_704_067_200_000));
    assert_eq!(fl(TimeUnitField::Year)[2], None);
    let d = eval(col("d").floor_to(TimeUnitField::Month));
    let v: Vec<Option<i32>> = d.as_primitive::<Date32Type>().iter().collect();
    assert_eq!(
        v,
        vec![Some(19_783), Some(0), None, Some(-31), Some(19_783)]
    );
    // Timestamps with a zone keep it.
    let utc = eval(
        call(Function::ToTimestampLtz, vec![col("a"), lit(0_i32)]).floor_to(TimeUnitField::Minute),
    );
    assert_eq!(
        utc.data_type(),
        &DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
    );
    assert_eq!(
        ts_ms(&utc),
        vec![Some(0), Some(0), None, Some(0), Some(-60_000)]
    );
    assert_eq!(
        ts_ms(&eval(call(
            Function::ToTimestampLtz,
            vec![col("a"), lit(3_i32)]
        ))),
        vec![Some(1), Some(2), None, Some(4), Some(-5)]
    );
    let err = resolve_err(call(Function::ToTimestampLtz, vec![col("a"), lit(6_i32)]));
    assert!(err.contains("precision"), "{err}");
    // Timestamp arithmetic with intervals.
    let plus = eval(col("ts").add(lit(ScalarValue::IntervalDayTime { days: 1, millis: 0 })));
    assert_eq!(ts_ms(&plus)[3], Some(86_400_000));
}

#[test]
fn conditional_and_numeric_functions() {
    assert_eq!(
        i64s(&eval(call(
            Function::Coalesce,
            vec![col("a"), col("b"), lit(0_i32)]
        ))),
        vec![Some(1), Some(2), Some(3), Some(4), Some(-5)]
    );
    assert_eq!(
        f64s(&eval(call(Function::Coalesce, vec![col("f"), col("a")]))),
        vec![Some(1.5), Some(2.0), Some(-2.0), Some(0.0), Some(3.25)]
    );
    assert_eq!(
        i64s(&eval(call(
            Function::Coalesce,
            vec![lit(ScalarValue::Null), col("a")]
        ))),
        vec![Some(1), Some(2), None, Some(4), Some(-5)]
    );
    assert_eq!(
        i64s(&eval(call(Function::NullIf, vec![col("a"), lit(2_i64)]))),
        vec![Some(1), None, None, Some(4), Some(-5)]
    );
    assert_eq!(
        i64s(&eval(call(Function::Abs, vec![col("a")]))),
        vec![Some(1), Some(2), None, Some(4), Some(5)]
    );
    let err = eval_err(call(
        Function::Abs,
        vec![lit(i64::MIN).add(col("a").mul(lit(0_i64)))],
    ));
    assert!(err.to_lowercase().contains("overflow"), "{err}");
    assert_eq!(
        i64s(&eval(call(Function::Mod, vec![col("a"), lit(2_i64)]))),
        vec![Some(1), Some(0), None, Some(0), Some(-1)]
    );
    assert_eq!(
        f64s(&eval(call(Function::Floor, vec![col("f")]))),
        vec![Some(1.0), None, Some(-2.0), Some(0.0), Some(3.0)]
    );
    assert_eq!(
        f64s(&eval(call(Function::Ceil, vec![col("f")]))),
        vec![Some(2.0), None, Some(-2.0), Some(0.0), Some(4.0)]
    );
    assert_eq!(
        f64s(&eval(call(Function::Round, vec![col("f"), lit(1_i32)]))),
        vec![Some(1.5), None, Some(-2.0), Some(0.0), Some(3.3)]
    );
    let fl = eval(call(Function::Floor, vec![col("dec")]));
    assert_eq!(fl.data_type(), &DataType::Decimal128(9, 0));
    let v: Vec<Option<i128>> = fl.as_primitive::<Decimal128Type>().iter().collect();
    assert_eq!(v, vec![Some(1), Some(-3), None, Some(0), Some(1)]);
    let ce = eval(call(Function::Ceil, vec![col("dec")]));
    let v: Vec<Option<i128>> = ce.as_primitive::<Decimal128Type>().iter().collect();
    assert_eq!(v, vec![Some(2), Some(-2), None, Some(1), Some(1)]);
    let r = eval(call(Function::Round, vec![col("dec"), lit(1_i32)]));
    assert_eq!(r.data_type(), &DataType::Decimal128(10, 1));
    let v: Vec<Option<i128>> = r.as_primitive::<Decimal128Type>().iter().collect();
    assert_eq!(v, vec![Some(13), Some(-25), None, Some(0), Some(10)]);
    assert_eq!(
        i64s(&eval(call(
            Function::Round,
            vec![lit(1_250_i64), lit(-2_i32)]
        )))[0],
        Some(1_300)
    );
    let err = resolve_err(call(Function::Abs, vec![col("s")]));
    assert!(
        err.contains("ABS needs a numeric argument, got Utf8 's'"),
        "{err}"
    );
    let err = resolve_err(call(Function::Lower, vec![col("s"), col("s")]));
    assert!(err.contains("LOWER takes 1 argument(s), got 2"), "{err}");
}

#[test]
fn error_messages_name_columns_and_operators() {
    let schema = Schema::new(vec![
        Field::new("auction", DataType::Int64, false),
        Field::new("bidder", DataType::Int64, false),
        Field::new("price", DataType::Int64, false),
        Field::new("channel", DataType::Utf8, true),
    ]);
    let err = col("pricee").resolve(&schema).unwrap_err().to_string();
    assert!(
        err.contains("unknown column 'pricee' (available: auction, bidder, price, channel)"),
        "{err}"
    );
    assert!(err.contains("did you mean 'price'"), "{err}");
    let err = col("channel")
        .add(lit(1_i64))
        .resolve(&schema)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("cannot apply '+' to Utf8 'channel' and Int64"),
        "{err}"
    );
    let err = col("price")
        .gt(lit(1_i64))
        .and(col("price"))
        .resolve(&schema)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("'AND'") && err.contains("Int64 'price'"),
        "{err}"
    );
    let err = col("channel")
        .negate()
        .resolve(&schema)
        .unwrap_err()
        .to_string();
    assert!(err.contains("cannot negate Utf8 'channel'"), "{err}");
    assert!(matches!(
        col("x").resolve(&schema),
        Err(crate::Error::Expression { .. })
    ));
    // Column names are matched case-insensitively when unambiguous.
    assert!(col("PRICE").resolve(&schema).is_ok());
}

#[test]
fn predicates_treat_null_as_false() {
    let b = batch();
    let p = col("a").gt(lit(1_i64)).resolve(&b.schema()).unwrap();
    let mask = p.evaluate_predicate(&b).unwrap();
    assert_eq!(mask.null_count(), 0);
    assert_eq!(
        mask.iter().collect::<Vec<_>>(),
        vec![
            Some(false),
            Some(true),
            Some(false),
            Some(true),
            Some(false)
        ]
    );
    let all = lit(true)
        .resolve(&b.schema())
        .unwrap()
        .evaluate_predicate(&b)
        .unwrap();
    assert_eq!(all.true_count(), 5);
    let not_bool = col("a").resolve(&b.schema()).unwrap();
    assert!(not_bool.evaluate_predicate(&b).is_err());
    // A physical expression is cheap to clone and shareable across threads.
    fn assert_send_sync<T: Send + Sync + Clone + std::fmt::Debug>() {}
    assert_send_sync::<PhysicalExpr>();
}

#[test]
fn serde_round_trip() {
    let e = case_when(
        vec![
            (
                col("a")
                    .add(lit(1_i64))
                    .gt(col("b").cast(DataType::Int64))
                    .and(col("s").like_with(lit("x!%"), Some('!'), true, false)),
                call(Function::Concat, vec![col("s"), lit("y")]),
            ),
            (
                col("ts").gt(lit(ScalarValue::Timestamp {
                    value: TS,
                    unit: TimeUnit::Millisecond,
                    tz: Some("UTC".into()),
                })),
                extract(DateField::Year, col("ts")).cast(DataType::Utf8),
            ),
        ],
        Some(
            col("dec")
                .in_list(
                    vec![lit(ScalarValue::Decimal128 {
                        value: i128::from(i64::MAX) * 1_000,
                        precision: 38,
                        scale: 2,
                    })],
                    true,
                )
                .try_cast(DataType::Utf8),
        ),
    )
    .is_not_null()
    .or(col("ts")
        .floor_to(TimeUnitField::Hour)
        .between(lit(0_i64), lit(1_i64)));
    let json = serde_json::to_string(&e).unwrap();
    let back: Expr = serde_json::from_str(&json).unwrap();
    assert_eq!(back, e);
    assert_eq!(back.to_string(), e.to_string());
}

mod property {
    use proptest::prelude::*;

    use super::*;

    fn int_batch(rows: &[(Option<i64>, Option<i64>)]) -> RecordBatch {
        let schema = Schema::new(vec![
            Field::new("x", DataType::Int64, true),
            Field::new("y", DataType::Int64, true),
        ]);
        let x: Int64Array = rows.iter().map(|r| r.0).collect();
        let y: Int64Array = rows.iter().map(|r| r.1).collect();
        RecordBatch::try_new(Arc::new(schema), vec![Arc::new(x), Arc::new(y)]).unwrap()
    }

    fn float_batch(rows: &[(Option<f64>, Option<f64>)]) -> RecordBatch {
        let schema = Schema::new(vec![
            Field::new("x", DataType::Float64, true),
            Field::new("y", DataType::Float64, true),
        ]);
        let x: Float64Array = rows.iter().map(|r| r.0).collect();
        let y: Float64Array = rows.iter().map(|r| r.1).collect();
        RecordBatch::try_new(Arc::new(schema), vec![Arc::new(x), Arc::new(y)]).unwrap()
    }

    fn run(e: &Expr, b: &RecordBatch) -> ArrayRef {
        e.resolve(&b.schema()).unwrap().evaluate(b).unwrap()
    }

    fn and3(a: Option<bool>, b: Option<bool>) -> Option<bool> {
        match (a, b) {
            (Some(false), _) | (_, Some(false)) => Some(false),
            (Some(true), Some(true)) => Some(true),
            _ => None,
        }
    }

    fn or3(a: Option<bool>, b: Option<bool>) -> Option<bool> {
        match (a, b) {
            (Some(true), _) | (_, Some(true)) => Some(true),
            (Some(false), Some(false)) => Some(false),
            _ => None,
        }
    }

    fn lift<T: Copy, U>(a: Option<T>, b: Option<T>, f: impl Fn(T, T) -> U) -> Option<U> {
        Some(f(a?, b?))
    }

    proptest! {
        #[test]
        fn int64_matches_row_reference(
            rows in proptest::collection::vec(
                (proptest::option::of(-1_000_i64..1_000), proptest::option::of(-1_000_i64..1_000)),
                0..64,
            ),
            k in -5_i64..5,
        ) {
            let b = int_batch(&rows);
            let x = col("x");
            let y = col("y");
            let ints = |e: Expr| i64s(&run(&e, &b));
            let bools = |e: Expr| bools(&run(&e, &b));

            let expect: Vec<_> = rows.iter().map(|(a, c)| lift(*a, *c, |a, c| a + c)).collect();
            prop_assert_eq!(ints(x.clone().add(y.clone())), expect);
            let expect: Vec<_> = rows.iter().map(|(a, c)| lift(*a, *c, |a, c| a - c)).collect();
            prop_assert_eq!(ints(x.clone().sub(y.clone())), expect);
            let expect: Vec<_> = rows.iter().map(|(a, c)| lift(*a, *c, |a, c| a * c)).collect();
            prop_assert_eq!(ints(x.clone().mul(y.clone())), expect);
            let expect: Vec<_> = rows.iter().map(|(a, _)| a.map(|a| a * k + 1)).collect();
            prop_assert_eq!(ints(x.clone().mul(lit(k)).add(lit(1_i64))), expect);

            let lt: Vec<_> = rows.iter().map(|(a, c)| lift(*a, *c, |a, c| a < c)).collect();
            prop_assert_eq!(bools(x.clone().lt(y.clone())), lt.clone());
            let eq: Vec<_> = rows.iter().map(|(a, c)| lift(*a, *c, |a, c| a == c)).collect();
            prop_assert_eq!(bools(x.clone().eq(y.clone())), eq.clone());
            let gt_k: Vec<_> = rows.iter().map(|(a, _)| a.map(|a| a > k)).collect();
            prop_assert_eq!(bools(x.clone().gt(lit(k))), gt_k.clone());

            let and: Vec<_> = lt.iter().zip(&gt_k).map(|(p, q)| and3(*p, *q)).collect();
            prop_assert_eq!(bools(x.clone().lt(y.clone()).and(x.clone().gt(lit(k)))), and);
            let or: Vec<_> = eq.iter().zip(&gt_k).map(|(p, q)| or3(*p, *q)).collect();
            prop_assert_eq!(bools(x.clone().eq(y.clone()).or(x.clone().gt(lit(k)))), or);
            let null: Vec<_> = rows.iter().map(|(a, _)| Some(a.is_none())).collect();
            prop_assert_eq!(bools(x.clone().is_null()), null);
            let sum_null: Vec<_> = rows
                .iter()
                .map(|(a, c)| Some(lift(*a, *c, |a, c| a + c).is_some()))
                .collect();
            prop_assert_eq!(bools(x.clone().add(y.clone()).is_not_null()), sum_null);

            // Safe division through CASE, against the reference.
            let expect: Vec<_> = rows
                .iter()
                .map(|(a, c)| match (a, c) {
                    (_, Some(0)) => Some(0),
                    (Some(a), Some(c)) => Some(a / c),
                    _ => None,
                })
                .collect();
            let safe = case_when(vec![(y.clone().eq(lit(0_i64)), lit(0_i64))], Some(x.div(y)));
            prop_assert_eq!(ints(safe), expect);
        }

        #[test]
        fn float64_matches_row_reference(
            rows in proptest::collection::vec(
                (proptest::option::of(-1e6_f64..1e6), proptest::option::of(-1e6_f64..1e6)),
                0..64,
            ),
        ) {
            let b = float_batch(&rows);
            let x = col("x");
            let y = col("y");
            let floats = |e: Expr| f64s(&run(&e, &b));
            let bools = |e: Expr| bools(&run(&e, &b));

            let expect: Vec<_> = rows.iter().map(|(a, c)| lift(*a, *c, |a, c| a + c)).collect();
            prop_assert_eq!(floats(x.clone().add(y.clone())), expect);
            let expect: Vec<_> = rows.iter().map(|(a, c)| lift(*a, *c, |a, c| a * c)).collect();
            prop_assert_eq!(floats(x.clone().mul(y.clone())), expect);
            let le: Vec<_> = rows.iter().map(|(a, c)| lift(*a, *c, |a, c| a <= c)).collect();
            prop_assert_eq!(bools(x.clone().lt_eq(y.clone())), le.clone());
            let pos: Vec<_> = rows.iter().map(|(a, _)| a.map(|a| a > 0.0)).collect();
            let or: Vec<_> = le.iter().zip(&pos).map(|(p, q)| or3(*p, *q)).collect();
            prop_assert_eq!(bools(x.clone().lt_eq(y.clone()).or(x.clone().gt(lit(0_i64)))), or);
            let and: Vec<_> = le.iter().zip(&pos).map(|(p, q)| and3(*p, *q)).collect();
            prop_assert_eq!(bools(x.clone().lt_eq(y).and(x.clone().gt(lit(0.0)))), and);
            let null: Vec<_> = rows.iter().map(|(a, _)| Some(a.is_some())).collect();
            prop_assert_eq!(bools(x.is_not_null()), null);
        }
    }
}

#[test]
fn string_views_compare_and_like_without_conversion() {
    let schema = Schema::new(vec![Field::new("v", DataType::Utf8View, true)]);
    let v = arrow::array::StringViewArray::from(vec![Some("apple"), None, Some("banana")]);
    let b = RecordBatch::try_new(Arc::new(schema), vec![Arc::new(v)]).unwrap();
    let p = col("v").eq(lit("apple")).resolve(&b.schema()).unwrap();
    let Kind::Compare { left, .. } = p.kind() else {
        panic!("{p:?}");
    };
    assert!(
        matches!(left.kind(), Kind::Column(_)),
        "no cast of the column"
    );
    let out = p.evaluate(&b).unwrap();
    assert_eq!(bools(&out), vec![Some(true), None, Some(false)]);
    let like = col("v").like(lit("%an%")).resolve(&b.schema()).unwrap();
    assert_eq!(
        bools(&like.evaluate(&b).unwrap()),
        vec![Some(false), None, Some(true)]
    );
    let lower = call(Function::Upper, vec![col("v")])
        .resolve(&b.schema())
        .unwrap();
    assert_eq!(
        strs(&lower.evaluate(&b).unwrap()),
        vec![Some("APPLE"), None, Some("BANANA")]
    );
}
