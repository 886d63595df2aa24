//! [`Expr`] → [`PhysicalExpr`]: name lookup, type checking, coercion and function lookup.
//!
//! Everything that depends on the schema is decided here, once per operator instance:
//! columns become indices, implicit conversions become explicit cast nodes (a cast of a literal
//! is folded into a new literal right away), `BETWEEN`, simple `CASE`, `IF`, `MOD` and
//! `NOT IN` are rewritten to the nodes that evaluate them, and each kernel's output type is
//! computed — for Arrow kernels by running the kernel on empty arrays of the operand types,
//! so the resolved type is exactly what evaluation produces and unsupported combinations fail
//! here rather than on the first batch.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, StringArray, new_empty_array};
use arrow::compute::kernels::{cast, cmp, numeric, temporal};
use arrow::datatypes::{DataType, Int64Type, Schema, TimeUnit};

use super::coercion::{self, is_integer, is_numeric, is_string};
use super::function::{DateField, Function, closest};
use super::kernels::{Kernel, date_field_supported};
use super::physical::{ArithOp, CmpOp, Kind, PhysicalExpr, ScalarArray};
use super::{BinaryOp, Expr};
use crate::{Error, Result};

mod text_time;

pub(super) fn resolve(expr: &Expr, schema: &Schema) -> Result<PhysicalExpr> {
    Resolver { schema }.resolve(expr)
}

struct Resolver<'a> {
    schema: &'a Schema,
}

/// How an operand is named in a type error: `Utf8 'channel'` for a column, `Int64` for a
/// literal, `Int64 (a + b)` otherwise.
fn describe(e: &Expr, t: &DataType) -> String {
    match e {
        Expr::Column(name) => format!("{t} '{name}'"),
        Expr::Literal(_) => format!("{t}"),
        other => format!("{t} ({other})"),
    }
}

fn literal(array: ArrayRef, display: String) -> PhysicalExpr {
    // `logical_null_count`: a `NullArray` has no null buffer but is all nulls.
    let nullable = array.logical_null_count() > 0;
    let t = array.data_type().clone();
    PhysicalExpr::new(Kind::Literal(ScalarArray::new(array)), t, nullable, display)
}

fn is_literal(e: &PhysicalExpr) -> bool {
    matches!(e.kind(), Kind::Literal(_))
}

/// The value of an integer literal node.
fn literal_i64(e: &PhysicalExpr) -> Option<i64> {
    let Kind::Literal(s) = e.kind() else {
        return None;
    };
    let a = cast::cast(s.array(), &DataType::Int64).ok()?;
    let a = a.as_primitive::<Int64Type>();
    a.is_valid(0).then(|| a.value(0))
}

/// The value of a string literal node.
fn literal_str(e: &PhysicalExpr) -> Option<String> {
    let Kind::Literal(s) = e.kind() else {
        return None;
    };
    let a = s.array().as_string_opt::<i32>()?;
    a.is_valid(0).then(|| a.value(0).to_owned())
}

fn check_arity(func: Function, args: &[Expr], min: usize, max: usize) -> Result<()> {
    if args.len() < min || args.len() > max {
        let expected = if min == max {
            format!("{min}")
        } else if max == usize::MAX {
            format!("at least {min}")
        } else {
            format!("{min} to {max}")
        };
        return Err(Error::expr(format!(
            "{func} takes {expected} argument(s), got {}",
            args.len()
        )));
    }
    Ok(())
}

/// Rewrites a LIKE pattern with a custom escape character to Arrow's backslash escapes.
fn translate_escape(pattern: &str, escape: char) -> Result<String> {
    let mut out = String::with_capacity(pattern.len() + 4);
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if c == escape {
            match chars.next() {
                Some(next) => {
                    out.push('\\');
                    out.push(next);
                }
                None => {
                    return Err(Error::expr(format!(
                        "LIKE pattern '{pattern}' ends with the escape character '{escape}'"
                    )));
                }
            }
        } else if c == '\\' {
            out.push_str("\\\\");
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

impl Resolver<'_> {
    fn resolve(&self, e: &Expr) -> Result<PhysicalExpr> {
        let display = e.to_string();
        match e {
            Expr::Column(name) => self.column(name, display),
            Expr::Literal(v) => Ok(literal(v.to_array()?, display)),
            Expr::Binary { left, op, right } => self.binary(left, *op, right, display),
            Expr::Negative(inner) => {
                let c = self.resolve(inner)?;
                let t = c.data_type().clone();
                let out = numeric::neg(new_empty_array(&t).as_ref())
                    .map_err(|_| Error::expr(format!("cannot negate {}", describe(inner, &t))))?;
                let nullable = c.nullable();
                Ok(PhysicalExpr::new(
                    Kind::Negative(c),
                    out.data_type().clone(),
                    nullable,
                    display,
                ))
            }
            Expr::Not(inner) => {
                let c = self.boolean_operand(inner, "NOT")?;
                let nullable = c.nullable();
                Ok(PhysicalExpr::new(
                    Kind::Not(c),
                    DataType::Boolean,
                    nullable,
                    display,
                ))
            }
            Expr::IsNull(inner) => {
                let c = self.resolve(inner)?;
                Ok(PhysicalExpr::new(
                    Kind::IsNull(c),
                    DataType::Boolean,
                    false,
                    display,
                ))
            }
            Expr::IsNotNull(inner) => {
                let c = self.resolve(inner)?;
                Ok(PhysicalExpr::new(
                    Kind::IsNotNull(c),
                    DataType::Boolean,
                    false,
                    display,
                ))
            }
            Expr::InList {
                expr,
                list,
                negated,
            } => self.in_list(expr, list, *negated, display),
            Expr::Between {
                expr,
                low,
                high,
                negated,
            } => {
                let range = Expr::clone(expr)
                    .gt_eq(Expr::clone(low))
                    .and(Expr::clone(expr).lt_eq(Expr::clone(high)));
                let range = if *negated { range.not() } else { range };
                let resolved = self.resolve(&range)?;
                Ok(self.renamed(resolved, display))
            }
            Expr::Like {
                expr,
                pattern,
                escape,
                negated,
                case_insensitive,
            } => self.like(expr, pattern, *escape, *negated, *case_insensitive, display),
            Expr::Case {
                operand,
                when_then,
                else_expr,
            } => self.case(operand.as_deref(), when_then, else_expr.as_deref(), display),
            Expr::Cast { expr, data_type } => self.explicit_cast(expr, data_type, false, display),
            Expr::TryCast { expr, data_type } => self.explicit_cast(expr, data_type, true, display),
            Expr::Extract { field, expr } => self.extract(*field, expr, display),
            Expr::FloorTime { expr, unit } => {
                let c = self.temporal_operand(expr, &format!("FLOOR(.. TO {unit})"))?;
                let (t, nullable) = (c.data_type().clone(), c.nullable());
                Ok(PhysicalExpr::new(
                    Kind::Call {
                        kernel: Kernel::FloorTime(*unit),
                        args: vec![c],
                    },
                    t,
                    nullable,
                    display,
                ))
            }
            Expr::Function { func, args } => self.function(*func, args, display),
        }
    }

    /// Rebuilds `e` with another display text (for rewritten expressions such as BETWEEN).
    fn renamed(&self, e: PhysicalExpr, display: String) -> PhysicalExpr {
        match e.kind() {
            Kind::Not(inner) => PhysicalExpr::new(
                Kind::Not(inner.clone()),
                e.data_type().clone(),
                e.nullable(),
                display,
            ),
            Kind::And(l, r) => PhysicalExpr::new(
                Kind::And(l.clone(), r.clone()),
                e.data_type().clone(),
                e.nullable(),
                display,
            ),
            _ => e,
        }
    }

    fn column(&self, name: &str, display: String) -> Result<PhysicalExpr> {
        let fields = self.schema.fields();
        let index = fields.iter().position(|f| f.name() == name).or_else(|| {
            let mut ci = fields
                .iter()
                .enumerate()
                .filter(|(_, f)| f.name().eq_ignore_ascii_case(name));
            match (ci.next(), ci.next()) {
                (Some((i, _)), None) => Some(i),
                _ => None,
            }
        });
        let Some(index) = index else {
            let names: Vec<&str> = fields.iter().map(|f| f.name().as_str()).collect();
            let hint = closest(&name.to_ascii_lowercase(), names.iter().copied())
                .map(|c| format!("; did you mean '{c}'?"))
                .unwrap_or_default();
            return Err(Error::expr(format!(
                "unknown column '{name}' (available: {}){hint}",
                names.join(", ")
            )));
        };
        let field = &fields[index];
        Ok(PhysicalExpr::new(
            Kind::Column(index),
            field.data_type().clone(),
            field.is_nullable(),
            display,
        ))
    }

    /// Casts `e` to `to` for an implicit conversion; literals are converted now.
    fn coerce(&self, e: PhysicalExpr, to: &DataType) -> Result<PhysicalExpr> {
        if e.data_type() == to {
            return Ok(e);
        }
        self.cast_node(e, to, false, None)
    }

    fn cast_node(
        &self,
        e: PhysicalExpr,
        to: &DataType,
        safe: bool,
        display: Option<String>,
    ) -> Result<PhysicalExpr> {
        let display = display.unwrap_or_else(|| e.display().to_owned());
        if !cast::can_cast_types(e.data_type(), to) {
            return Err(Error::expr(format!(
                "cannot cast {} '{}' to {to}",
                e.data_type(),
                e.display()
            )));
        }
        if let Kind::Literal(s) = e.kind() {
            let options = cast::CastOptions {
                safe,
                ..Default::default()
            };
            let folded = cast::cast_with_options(s.array(), to, &options).map_err(|err| {
                Error::arrow(format!("cannot cast literal {} to {to}", e.display()), err)
            })?;
            return Ok(literal(folded, display));
        }
        let nullable = e.nullable() || safe;
        Ok(PhysicalExpr::new(
            Kind::Cast { expr: e, safe },
            to.clone(),
            nullable,
            display,
        ))
    }

    fn explicit_cast(
        &self,
        inner: &Expr,
        to: &DataType,
        safe: bool,
        display: String,
    ) -> Result<PhysicalExpr> {
        let c = self.resolve(inner)?;
        if !cast::can_cast_types(c.data_type(), to) {
            return Err(Error::expr(format!(
                "cannot cast {} to {to}",
                describe(inner, c.data_type())
            )));
        }
        if c.data_type() == to {
            return Ok(c);
        }
        self.cast_node(c, to, safe, Some(display))
    }

    fn boolean_operand(&self, e: &Expr, op: &str) -> Result<PhysicalExpr> {
        let c = self.resolve(e)?;
        match c.data_type() {
            DataType::Boolean => Ok(c),
            DataType::Null => self.coerce(c, &DataType::Boolean),
            other => Err(Error::expr(format!(
                "{op} needs a Boolean operand, got {}",
                describe(e, other)
            ))),
        }
    }

    fn string_operand(&self, e: &Expr, what: &str) -> Result<PhysicalExpr> {
        let c = self.resolve(e)?;
        match c.data_type() {
            DataType::Utf8 => Ok(c),
            t if is_string(t) || *t == DataType::Null => self.coerce(c, &DataType::Utf8),
            other => Err(Error::expr(format!(
                "{what} needs a string argument, got {}",
                describe(e, other)
            ))),
        }
    }

    fn int_operand(&self, e: &Expr, what: &str) -> Result<PhysicalExpr> {
        let c = self.resolve(e)?;
        match c.data_type() {
            DataType::Int64 => Ok(c),
            t if is_integer(t) || *t == DataType::Null => self.coerce(c, &DataType::Int64),
            other => Err(Error::expr(format!(
                "{what} needs an integer argument, got {}",
                describe(e, other)
            ))),
        }
    }

    fn temporal_operand(&self, e: &Expr, what: &str) -> Result<PhysicalExpr> {
        let c = self.resolve(e)?;
        match c.data_type() {
            t if date_field_supported(t) => Ok(c),
            DataType::Date64 => self.coerce(c, &DataType::Timestamp(TimeUnit::Millisecond, None)),
            other => Err(Error::expr(format!(
                "{what} needs a DATE or TIMESTAMP argument, got {}",
                describe(e, other)
            ))),
        }
    }

    fn binary(
        &self,
        left: &Expr,
        op: BinaryOp,
        right: &Expr,
        display: String,
    ) -> Result<PhysicalExpr> {
        match op {
            BinaryOp::And | BinaryOp::Or => {
                let what = format!("'{}'", op.symbol());
                let l = self.boolean_operand(left, &what)?;
                let r = self.boolean_operand(right, &what)?;
                let nullable = l.nullable() || r.nullable();
                let kind = if op == BinaryOp::And {
                    Kind::And(l, r)
                } else {
                    Kind::Or(l, r)
                };
                Ok(PhysicalExpr::new(
                    kind,
                    DataType::Boolean,
                    nullable,
                    display,
                ))
            }
            BinaryOp::Eq
            | BinaryOp::NotEq
            | BinaryOp::Lt
            | BinaryOp::LtEq
            | BinaryOp::Gt
            | BinaryOp::GtEq => {
                let cmp_op = CmpOp::of(op)
                    .ok_or_else(|| Error::Internal(format!("{op:?} is no comparison")))?;
                let (l, r) = (self.resolve(left)?, self.resolve(right)?);
                let (l, r) = self.comparable(left, l, right, r, op.symbol())?;
                let nullable = l.nullable() || r.nullable();
                Ok(PhysicalExpr::new(
                    Kind::Compare {
                        op: cmp_op,
                        left: l,
                        right: r,
                    },
                    DataType::Boolean,
                    nullable,
                    display,
                ))
            }
            BinaryOp::Plus
            | BinaryOp::Minus
            | BinaryOp::Multiply
            | BinaryOp::Divide
            | BinaryOp::Modulo => {
                let arith = match op {
                    BinaryOp::Plus => ArithOp::Add,
                    BinaryOp::Minus => ArithOp::Sub,
                    BinaryOp::Multiply => ArithOp::Mul,
                    BinaryOp::Divide => ArithOp::Div,
                    _ => ArithOp::Rem,
                };
                self.arithmetic(left, arith, op, right, display)
            }
        }
    }

    /// Casts both sides of a comparison to their common type.
    fn comparable(
        &self,
        left: &Expr,
        l: PhysicalExpr,
        right: &Expr,
        r: PhysicalExpr,
        symbol: &str,
    ) -> Result<(PhysicalExpr, PhysicalExpr)> {
        let (lt, rt) = (l.data_type().clone(), r.data_type().clone());
        let mismatch = || {
            Error::expr(format!(
                "cannot compare {} and {} with '{symbol}'",
                describe(left, &lt),
                describe(right, &rt)
            ))
        };
        let t = match coercion::comparison(&lt, &rt) {
            // Two untyped NULLs compare as booleans (the result is NULL either way).
            Some(DataType::Null) => DataType::Boolean,
            // A string literal takes the column's string type (Utf8View, LargeUtf8), so the
            // column is not converted on every batch.
            Some(_) if is_string(&lt) && is_string(&rt) && is_literal(&r) => lt.clone(),
            Some(_) if is_string(&lt) && is_string(&rt) && is_literal(&l) => rt.clone(),
            Some(t) => t,
            None => return Err(mismatch()),
        };
        let probe = new_empty_array(&t);
        cmp::eq(&probe, &probe).map_err(|_| mismatch())?;
        Ok((self.coerce(l, &t)?, self.coerce(r, &t)?))
    }

    fn arithmetic(
        &self,
        left: &Expr,
        op: ArithOp,
        bop: BinaryOp,
        right: &Expr,
        display: String,
    ) -> Result<PhysicalExpr> {
        let (mut l, mut r) = (self.resolve(left)?, self.resolve(right)?);
        let (lt, rt) = (l.data_type().clone(), r.data_type().clone());
        let mismatch = || {
            Error::expr(format!(
                "cannot apply '{}' to {} and {}",
                bop.symbol(),
                describe(left, &lt),
                describe(right, &rt)
            ))
        };
        // An untyped NULL takes the other side's type.
        match (&lt, &rt) {
            (DataType::Null, DataType::Null) => {
                l = self.coerce(l, &DataType::Int64)?;
                r = self.coerce(r, &DataType::Int64)?;
            }
            (DataType::Null, t) => l = self.coerce(l, t)?,
            (t, DataType::Null) => r = self.coerce(r, t)?,
            _ => {}
        }
        if let Some((tl, tr)) = coercion::arithmetic(l.data_type(), r.data_type()) {
            l = self.coerce(l, &tl)?;
            r = self.coerce(r, &tr)?;
        } else if is_numeric(l.data_type()) != is_numeric(r.data_type())
            && !matches!(l.data_type(), DataType::Interval(_))
            && !matches!(r.data_type(), DataType::Interval(_))
        {
            return Err(mismatch());
        }
        let (pl, pr) = (
            new_empty_array(l.data_type()),
            new_empty_array(r.data_type()),
        );
        let probe = match op {
            ArithOp::Add => numeric::add(&pl, &pr),
            ArithOp::Sub => numeric::sub(&pl, &pr),
            ArithOp::Mul => numeric::mul(&pl, &pr),
            ArithOp::Div => numeric::div(&pl, &pr),
            ArithOp::Rem => numeric::rem(&pl, &pr),
        };
        let out = match probe {
            Ok(out) => out.data_type().clone(),
            Err(e) if is_numeric(l.data_type()) => {
                return Err(Error::expr(format!("{}: {e}", mismatch())));
            }
            Err(_) => return Err(mismatch()),
        };
        let nullable = l.nullable() || r.nullable();
        Ok(PhysicalExpr::new(
            Kind::Arithmetic {
                op,
                left: l,
                right: r,
            },
            out,
            nullable,
            display,
        ))
    }

    fn in_list(
        &self,
        expr: &Expr,
        list: &[Expr],
        negated: bool,
        display: String,
    ) -> Result<PhysicalExpr> {
        if list.is_empty() {
            return Err(Error::expr(format!("IN list of '{expr}' is empty")));
        }
        let probe = self.resolve(expr)?;
        let items = list
            .iter()
            .map(|e| self.resolve(e))
            .collect::<Result<Vec<_>>>()?;
        let mut t = probe.data_type().clone();
        for (item, e) in items.iter().zip(list) {
            t = coercion::comparison(&t, item.data_type()).ok_or_else(|| {
                Error::expr(format!(
                    "cannot compare {} with IN list item {}",
                    describe(expr, probe.data_type()),
                    describe(e, item.data_type())
                ))
            })?;
        }
        if t == DataType::Null {
            t = DataType::Boolean;
        }
        let nullable = probe.nullable() || items.iter().any(PhysicalExpr::nullable);
        let probe = self.coerce(probe, &t)?;
        let items = items
            .into_iter()
            .map(|i| self.coerce(i, &t))
            .collect::<Result<Vec<_>>>()?;
        let node = PhysicalExpr::new(
            Kind::InList {
                expr: probe,
                list: items,
            },
            DataType::Boolean,
            nullable,
            display.clone(),
        );
        Ok(if negated {
            PhysicalExpr::new(Kind::Not(node), DataType::Boolean, nullable, display)
        } else {
            node
        })
    }

    fn like(
        &self,
        expr: &Expr,
        pattern: &Expr,
        escape: Option<char>,
        negated: bool,
        case_insensitive: bool,
        display: String,
    ) -> Result<PhysicalExpr> {
        let s = self.resolve(expr)?;
        if !is_string(s.data_type()) && s.data_type() != &DataType::Null {
            return Err(Error::expr(format!(
                "LIKE needs a string argument, got {}",
                describe(expr, s.data_type())
            )));
        }
        // Arrow's LIKE takes every string type; keep the column's and convert the pattern.
        let s = if s.data_type() == &DataType::Null {
            self.coerce(s, &DataType::Utf8)?
        } else {
            s
        };
        let mut p = self.string_operand(pattern, "LIKE")?;
        if let Some(esc) = escape.filter(|c| *c != '\\') {
            let Some(text) = literal_str(&p) else {
                return Err(Error::expr(format!(
                    "LIKE ... ESCAPE needs a literal pattern, got '{pattern}'"
                )));
            };
            let translated = translate_escape(&text, esc)?;
            p = literal(
                Arc::new(StringArray::from(vec![translated.as_str()])),
                p.display().to_owned(),
            );
        }
        let p = self.coerce(p, s.data_type())?;
        let nullable = s.nullable() || p.nullable();
        Ok(PhysicalExpr::new(
            Kind::Like {
                expr: s,
                pattern: p,
                negated,
                case_insensitive,
            },
            DataType::Boolean,
            nullable,
            display,
        ))
    }

    fn case(
        &self,
        operand: Option<&Expr>,
        when_then: &[(Expr, Expr)],
        else_expr: Option<&Expr>,
        display: String,
    ) -> Result<PhysicalExpr> {
        if when_then.is_empty() {
            return Err(Error::expr("CASE needs at least one WHEN"));
        }
        let mut conds = Vec::with_capacity(when_then.len());
        let mut values = Vec::with_capacity(when_then.len());
        for (when, then) in when_then {
            let cond = match operand {
                Some(o) => self.resolve(&Expr::clone(o).eq(when.clone()))?,
                None => self.boolean_operand(when, "CASE WHEN")?,
            };
            conds.push(cond);
            values.push((then, self.resolve(then)?));
        }
        let els = else_expr
            .map(|e| Ok::<_, Error>((e, self.resolve(e)?)))
            .transpose()?;
        let mut t = DataType::Null;
        for (e, v) in values.iter().chain(els.iter()) {
            t = coercion::common_type(&t, v.data_type()).ok_or_else(|| {
                Error::expr(format!(
                    "CASE branches have incompatible types: {t} and {}",
                    describe(e, v.data_type())
                ))
            })?;
        }
        let nullable = els.as_ref().is_none_or(|(_, v)| v.nullable())
            || values.iter().any(|(_, v)| v.nullable());
        let branches = conds
            .into_iter()
            .zip(values)
            .map(|(c, (_, v))| Ok((c, self.coerce(v, &t)?)))
            .collect::<Result<Vec<_>>>()?;
        let else_expr = els.map(|(_, v)| self.coerce(v, &t)).transpose()?;
        Ok(PhysicalExpr::new(
            Kind::Case {
                branches,
                else_expr,
            },
            t,
            nullable,
            display,
        ))
    }

    fn extract(&self, field: DateField, expr: &Expr, display: String) -> Result<PhysicalExpr> {
        let c = self.temporal_operand(expr, &format!("EXTRACT({field})"))?;
        if field != DateField::Epoch {
            // date_part decides which fields a type has (no HOUR of a DATE).
            let probe = new_empty_array(c.data_type());
            let part = match field {
                DateField::Hour => temporal::DatePart::Hour,
                DateField::Minute => temporal::DatePart::Minute,
                DateField::Second => temporal::DatePart::Second,
                _ => temporal::DatePart::Day,
            };
            temporal::date_part(&probe, part).map_err(|_| {
                Error::expr(format!(
                    "cannot EXTRACT({field}) from {}",
                    describe(expr, c.data_type())
                ))
            })?;
        }
        let nullable = c.nullable();
        Ok(PhysicalExpr::new(
            Kind::Call {
                kernel: Kernel::Extract(field),
                args: vec![c],
            },
            DataType::Int64,
            nullable,
            display,
        ))
    }

    fn call(
        &self,
        kernel: Kernel,
        args: Vec<PhysicalExpr>,
        t: DataType,
        display: String,
    ) -> PhysicalExpr {
        let nullable = args.iter().any(PhysicalExpr::nullable);
        PhysicalExpr::new(Kind::Call { kernel, args }, t, nullable, display)
    }

    fn function(&self, func: Function, args: &[Expr], display: String) -> Result<PhysicalExpr> {
        let name = func.name();
        match func {
            Function::DateFormat
            | Function::ToDate
            | Function::ToTimestamp
            | Function::RegexpExtract
            | Function::RegexpReplace
            | Function::Regexp
            | Function::SplitIndex
            | Function::Initcap
            | Function::Lpad
            | Function::Rpad
            | Function::TimestampAdd
            | Function::TimestampDiff => self.text_time_function(func, args, display),
            Function::Lower | Function::Upper | Function::CharLength => {
                check_arity(func, args, 1, 1)?;
                let s = self.string_operand(&args[0], name)?;
                let (kernel, t) = match func {
                    Function::Lower => (Kernel::Lower, DataType::Utf8),
                    Function::Upper => (Kernel::Upper, DataType::Utf8),
                    _ => (Kernel::CharLength, DataType::Int32),
                };
                Ok(self.call(kernel, vec![s], t, display))
            }
            Function::Substring => {
                check_arity(func, args, 2, 3)?;
                let mut a = vec![self.string_operand(&args[0], name)?];
                for e in &args[1..] {
                    a.push(self.int_operand(e, name)?);
                }
                Ok(self.call(Kernel::Substring, a, DataType::Utf8, display))
            }
            Function::Concat | Function::ConcatWs => {
                let min = if func == Function::Concat { 1 } else { 2 };
                check_arity(func, args, min, usize::MAX)?;
                let mut a = Vec::with_capacity(args.len());
                for e in args {
                    let c = self.resolve(e)?;
                    a.push(if c.data_type() == &DataType::Utf8 {
                        c
                    } else {
                        self.cast_node(c, &DataType::Utf8, false, None)?
                    });
                }
                if func == Function::Concat {
                    Ok(self.call(Kernel::Concat, a, DataType::Utf8, display))
                } else {
                    let nullable = a[0].nullable();
                    Ok(PhysicalExpr::new(
                        Kind::Call {
                            kernel: Kernel::ConcatWs,
                            args: a,
                        },
                        DataType::Utf8,
                        nullable,
                        display,
                    ))
                }
            }
            Function::Trim | Function::Ltrim | Function::Rtrim => {
                check_arity(func, args, 1, 2)?;
                let a = args
                    .iter()
                    .map(|e| self.string_operand(e, name))
                    .collect::<Result<Vec<_>>>()?;
                let kernel = Kernel::Trim {
                    leading: func != Function::Rtrim,
                    trailing: func != Function::Ltrim,
                };
                Ok(self.call(kernel, a, DataType::Utf8, display))
            }
            Function::Proctime => {
                check_arity(func, args, 0, 0)?;
                Ok(self.call(
                    Kernel::Proctime,
                    Vec::new(),
                    DataType::Timestamp(
                        arrow::datatypes::TimeUnit::Millisecond,
                        Some("UTC".into()),
                    ),
                    display,
                ))
            }
            Function::CountChar => {
                check_arity(func, args, 2, 2)?;
                let a = args
                    .iter()
                    .map(|e| self.string_operand(e, name))
                    .collect::<Result<Vec<_>>>()?;
                Ok(self.call(Kernel::CountChar, a, DataType::Int64, display))
            }
            Function::Replace | Function::Position => {
                let (n, kernel, t) = if func == Function::Replace {
                    (3, Kernel::Replace, DataType::Utf8)
                } else {
                    (2, Kernel::Position, DataType::Int32)
                };
                check_arity(func, args, n, n)?;
                let a = args
                    .iter()
                    .map(|e| self.string_operand(e, name))
                    .collect::<Result<Vec<_>>>()?;
                Ok(self.call(kernel, a, t, display))
            }
            Function::Coalesce => {
                check_arity(func, args, 1, usize::MAX)?;
                let a = args
                    .iter()
                    .map(|e| self.resolve(e))
                    .collect::<Result<Vec<_>>>()?;
                let mut t = DataType::Null;
                for (c, e) in a.iter().zip(args) {
                    t = coercion::common_type(&t, c.data_type()).ok_or_else(|| {
                        Error::expr(format!(
                            "COALESCE arguments have incompatible types: {t} and {}",
                            describe(e, c.data_type())
                        ))
                    })?;
                }
                let nullable = a.iter().all(PhysicalExpr::nullable);
                let a = a
                    .into_iter()
                    .map(|c| self.coerce(c, &t))
                    .collect::<Result<Vec<_>>>()?;
                Ok(PhysicalExpr::new(Kind::Coalesce(a), t, nullable, display))
            }
            Function::NullIf => {
                check_arity(func, args, 2, 2)?;
                let (a, b) = (self.resolve(&args[0])?, self.resolve(&args[1])?);
                let (a, b) = self.comparable(&args[0], a, &args[1], b, "NULLIF")?;
                let t = a.data_type().clone();
                Ok(PhysicalExpr::new(Kind::NullIf(a, b), t, true, display))
            }
            Function::If => {
                check_arity(func, args, 3, 3)?;
                let case = super::case_when(
                    vec![(args[0].clone(), args[1].clone())],
                    Some(args[2].clone()),
                );
                let resolved = self.resolve(&case)?;
                Ok(self.renamed_case(resolved, display))
            }
            Function::Mod => {
                check_arity(func, args, 2, 2)?;
                self.arithmetic(&args[0], ArithOp::Rem, BinaryOp::Modulo, &args[1], display)
            }
            Function::Abs => {
                check_arity(func, args, 1, 1)?;
                let c = self.numeric_operand(&args[0], name)?;
                let t = c.data_type().clone();
                Ok(self.call(Kernel::Abs, vec![c], t, display))
            }
            Function::Floor | Function::Ceil => {
                check_arity(func, args, 1, 1)?;
                let c = self.numeric_operand(&args[0], name)?;
                let t = match c.data_type() {
                    DataType::Decimal128(p, s) if *s > 0 => DataType::Decimal128(
                        (i16::from(*p) - i16::from(*s) + 1).clamp(1, 38) as u8,
                        0,
                    ),
                    t => t.clone(),
                };
                let kernel = if func == Function::Floor {
                    Kernel::Floor
                } else {
                    Kernel::Ceil
                };
                Ok(self.call(kernel, vec![c], t, display))
            }
            Function::Round => {
                check_arity(func, args, 1, 2)?;
                let mut c = self.numeric_operand(&args[0], name)?;
                let digits = match args.get(1) {
                    None => 0,
                    Some(d) => {
                        let d = self.resolve(d)?;
                        literal_i64(&d)
                            .and_then(|v| i32::try_from(v).ok())
                            .filter(|v| v.abs() <= 38)
                            .ok_or_else(|| {
                                Error::expr(format!(
                                    "ROUND digits must be an integer literal in -38..=38, got '{}'",
                                    d.display()
                                ))
                            })?
                    }
                };
                let t = match c.data_type() {
                    DataType::Decimal128(p, s) if i32::from(*s) > digits => {
                        if digits < 0 {
                            return Err(Error::expr(
                                "ROUND of a DECIMAL needs digits >= 0".to_owned(),
                            ));
                        }
                        let p = (i32::from(*p) - i32::from(*s) + digits + 1).clamp(1, 38);
                        DataType::Decimal128(p as u8, digits as i8)
                    }
                    t if is_integer(t) && digits < 0 => {
                        c = self.coerce(c, &DataType::Int64)?;
                        DataType::Int64
                    }
                    t => t.clone(),
                };
                Ok(self.call(Kernel::Round { digits }, vec![c], t, display))
            }
            Function::ToTimestampLtz => {
                check_arity(func, args, 1, 2)?;
                let epoch = self.int_operand(&args[0], name)?;
                let precision = match args.get(1) {
                    None => 3,
                    Some(p) => literal_i64(&self.resolve(p)?).unwrap_or(-1),
                };
                let multiplier = match precision {
                    0 => 1_000,
                    3 => 1,
                    _ => {
                        return Err(Error::expr(
                            "TO_TIMESTAMP_LTZ precision must be the literal 0 or 3",
                        ));
                    }
                };
                Ok(self.call(
                    Kernel::ToTimestampLtz { multiplier },
                    vec![epoch],
                    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
                    display,
                ))
            }
        }
    }

    fn renamed_case(&self, e: PhysicalExpr, display: String) -> PhysicalExpr {
        match e.kind() {
            Kind::Case {
                branches,
                else_expr,
            } => PhysicalExpr::new(
                Kind::Case {
                    branches: branches.clone(),
                    else_expr: else_expr.clone(),
                },
                e.data_type().clone(),
                e.nullable(),
                display,
            ),
            _ => e,
        }
    }

    fn numeric_operand(&self, e: &Expr, what: &str) -> Result<PhysicalExpr> {
        let c = self.resolve(e)?;
        match c.data_type() {
            DataType::Null => self.coerce(c, &DataType::Int64),
            DataType::Float16 => self.coerce(c, &DataType::Float32),
            DataType::Decimal32(p, s) | DataType::Decimal64(p, s) => {
                let t = DataType::Decimal128(*p, *s);
                self.coerce(c, &t)
            }
            t if is_integer(t)
                || matches!(
                    t,
                    DataType::Float32 | DataType::Float64 | DataType::Decimal128(_, _)
                ) =>
            {
                Ok(c)
            }
            other => Err(Error::expr(format!(
                "{what} needs a numeric argument, got {}",
                describe(e, other)
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::ScalarValue;

    #[test]
    fn escape_translation() {
        assert_eq!(translate_escape("a!%b", '!').unwrap(), "a\\%b");
        assert_eq!(translate_escape("a\\b", '!').unwrap(), "a\\\\b");
        assert!(translate_escape("ab!", '!').is_err());
    }

    #[test]
    fn scalar_value_literal_types() {
        let v = ScalarValue::Decimal128 {
            value: 125,
            precision: 5,
            scale: 2,
        };
        assert_eq!(v.to_string(), "1.25");
        assert_eq!(
            v.to_array().unwrap().data_type(),
            &DataType::Decimal128(5, 2)
        );
    }
}
