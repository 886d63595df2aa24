//! SQL expressions (`sqlparser`'s `Expr`) → the engine's logical [`Expr`].
//!
//! Function names go through [`Function::from_name`] (Flink's built-ins, case-insensitive,
//! with "did you mean"). Type checking is not done here: the planner resolves every
//! expression against its input schema when it adds the operator, and the resolver's errors
//! name the expression. The planner can ask for sub-expressions to be replaced by columns
//! ([`Scope::substitutions`]): that is how aggregate calls and `GROUP BY` expressions become
//! references to the aggregation's output columns.

use sqlparser::ast::{
    BinaryOperator, CastKind, CeilFloorKind, Expr as SqlExpr, FunctionArg, FunctionArgExpr,
    FunctionArguments, Interval, UnaryOperator, Value,
};

use super::types;
use crate::expr::{BinaryOp, DateField, Expr, Function, ScalarValue, TimeUnitField, col};
use crate::{Error, Result};

/// What a conversion may replace by column references.
#[derive(Default)]
pub struct Scope<'a> {
    /// Sub-expressions (compared structurally) that are columns of the input.
    pub substitutions: &'a [(SqlExpr, String)],
    /// Qualified column names of a join's output; empty outside joins (then a qualifier is
    /// ignored and the last part of a name is the column).
    pub names: &'a [QualifiedColumn],
}

/// A column of a join's input as queries name it (`qualifier.name`) and the column it is in
/// the join's output.
#[derive(Debug, Clone, PartialEq)]
pub struct QualifiedColumn {
    /// The table name or alias.
    pub qualifier: String,
    /// The column name in its table.
    pub name: String,
    /// The output column (a right duplicate carries `RIGHT_DUPLICATE_SUFFIX`).
    pub column: String,
}

/// The output column that `parts` (`name` or `qualifier.name`) names in `names`; `None`
/// when `names` is empty (not over a join).
pub fn resolve_name(
    parts: &[sqlparser::ast::Ident],
    names: &[QualifiedColumn],
) -> Result<Option<String>> {
    if names.is_empty() {
        return Ok(None);
    }
    let available = || {
        names
            .iter()
            .map(|n| format!("{}.{}", n.qualifier, n.name))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match parts {
        [name] => {
            let found: Vec<&QualifiedColumn> = names
                .iter()
                .filter(|n| n.name.eq_ignore_ascii_case(&name.value))
                .collect();
            match found.as_slice() {
                [one] => Ok(Some(one.column.clone())),
                [] => Err(Error::expr(format!(
                    "unknown column '{}' (available: {})",
                    name.value,
                    available()
                ))),
                several => Err(Error::expr(format!(
                    "column '{}' is ambiguous: qualify it as one of {}",
                    name.value,
                    several
                        .iter()
                        .map(|n| format!("{}.{}", n.qualifier, n.name))
                        .collect::<Vec<_>>()
                        .join(", ")
                ))),
            }
        }
        [.., qualifier, name] => {
            if !names
                .iter()
                .any(|n| n.qualifier.eq_ignore_ascii_case(&qualifier.value))
            {
                let mut qualifiers: Vec<&str> =
                    names.iter().map(|n| n.qualifier.as_str()).collect();
                qualifiers.dedup();
                return Err(Error::expr(format!(
                    "unknown table or alias '{}' in '{}.{}' (the query has: {})",
                    qualifier.value,
                    qualifier.value,
                    name.value,
                    qualifiers.join(", ")
                )));
            }
            names
                .iter()
                .find(|n| {
                    n.qualifier.eq_ignore_ascii_case(&qualifier.value)
                        && n.name.eq_ignore_ascii_case(&name.value)
                })
                .map(|n| Some(n.column.clone()))
                .ok_or_else(|| {
                    Error::expr(format!(
                        "unknown column '{}.{}' (available: {})",
                        qualifier.value,
                        name.value,
                        available()
                    ))
                })
        }
        [] => Err(Error::expr("empty identifier")),
    }
}

/// The names of the aggregate functions the planner handles.
pub fn is_aggregate_name(name: &str) -> bool {
    matches!(
        name.to_ascii_uppercase().as_str(),
        "COUNT" | "SUM" | "MIN" | "MAX" | "AVG" | "FIRST_VALUE" | "LAST_VALUE"
    )
}

/// The last part of a function's name, upper case.
pub fn function_name(function: &sqlparser::ast::Function) -> String {
    function
        .name
        .0
        .last()
        .map(|part| match part {
            sqlparser::ast::ObjectNamePart::Identifier(ident) => ident.value.to_ascii_uppercase(),
            other => other.to_string().to_ascii_uppercase(),
        })
        .unwrap_or_default()
}

/// The plain argument expressions of a call (`*` is `None`).
pub fn function_args(function: &sqlparser::ast::Function) -> Result<Vec<Option<&SqlExpr>>> {
    match &function.args {
        FunctionArguments::None => Ok(Vec::new()),
        FunctionArguments::Subquery(_) => Err(not_supported("a subquery as a function argument")),
        FunctionArguments::List(list) => list
            .args
            .iter()
            .map(|arg| match arg {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Ok(Some(e)),
                FunctionArg::Unnamed(FunctionArgExpr::Wildcard) => Ok(None),
                other => Err(not_supported(&format!("function argument '{other}'"))),
            })
            .collect(),
    }
}

pub(crate) fn not_supported(feature: &str) -> Error {
    Error::expr(format!("{feature} is not supported yet"))
}

/// Converts `expr`.
pub fn convert(expr: &SqlExpr, scope: &Scope<'_>) -> Result<Expr> {
    if let Some((_, column)) = scope.substitutions.iter().find(|(e, _)| e == expr) {
        return Ok(col(column));
    }
    let c = |e: &SqlExpr| convert(e, scope);
    let boxed = |e: &SqlExpr| convert(e, scope).map(Box::new);
    Ok(match expr {
        SqlExpr::Identifier(ident) => match resolve_name(std::slice::from_ref(ident), scope.names)?
        {
            Some(column) => col(&column),
            None => col(&ident.value),
        },
        SqlExpr::CompoundIdentifier(parts) if !scope.names.is_empty() => {
            match resolve_name(parts, scope.names)? {
                Some(column) => col(&column),
                None => return Err(Error::expr("empty identifier")),
            }
        }
        SqlExpr::CompoundIdentifier(parts) => match parts.last() {
            Some(last) => col(&last.value),
            None => return Err(Error::expr("empty identifier")),
        },
        SqlExpr::Nested(inner) => c(inner)?,
        SqlExpr::Value(value) => Expr::Literal(literal(&value.value)?),
        SqlExpr::Interval(interval) => Expr::Literal(interval_literal(interval)?),
        SqlExpr::BinaryOp { left, op, right } => {
            let op = match op {
                BinaryOperator::Plus => BinaryOp::Plus,
                BinaryOperator::Minus => BinaryOp::Minus,
                BinaryOperator::Multiply => BinaryOp::Multiply,
                BinaryOperator::Divide => BinaryOp::Divide,
                BinaryOperator::Modulo => BinaryOp::Modulo,
                BinaryOperator::Eq => BinaryOp::Eq,
                BinaryOperator::NotEq => BinaryOp::NotEq,
                BinaryOperator::Lt => BinaryOp::Lt,
                BinaryOperator::LtEq => BinaryOp::LtEq,
                BinaryOperator::Gt => BinaryOp::Gt,
                BinaryOperator::GtEq => BinaryOp::GtEq,
                BinaryOperator::And => BinaryOp::And,
                BinaryOperator::Or => BinaryOp::Or,
                BinaryOperator::StringConcat => {
                    return Ok(Expr::Function {
                        func: Function::Concat,
                        args: vec![c(left)?, c(right)?],
                    });
                }
                other => return Err(not_supported(&format!("operator '{other}'"))),
            };
            Expr::Binary {
                left: boxed(left)?,
                op,
                right: boxed(right)?,
            }
        }
        SqlExpr::UnaryOp { op, expr } => match op {
            UnaryOperator::Minus => match c(expr)? {
                Expr::Literal(v) => match negate_literal(v) {
                    Ok(v) => Expr::Literal(v),
                    Err(v) => Expr::Negative(Box::new(Expr::Literal(v))),
                },
                other => Expr::Negative(Box::new(other)),
            },
            UnaryOperator::Plus => c(expr)?,
            UnaryOperator::Not => Expr::Not(boxed(expr)?),
            other => return Err(not_supported(&format!("operator '{other}'"))),
        },
        SqlExpr::IsNull(e) => Expr::IsNull(boxed(e)?),
        SqlExpr::IsNotNull(e) => Expr::IsNotNull(boxed(e)?),
        SqlExpr::IsTrue(e) => c(e)?.eq(Expr::Literal(ScalarValue::Boolean(true))),
        SqlExpr::IsFalse(e) => c(e)?.eq(Expr::Literal(ScalarValue::Boolean(false))),
        SqlExpr::In {
            expr,
            target,
            negated,
            ..
        } => match target {
            sqlparser::ast::InTarget::List(list) => Expr::InList {
                expr: boxed(expr)?,
                list: list.iter().map(c).collect::<Result<_>>()?,
                negated: *negated,
            },
            _ => return Err(not_supported("IN with a subquery")),
        },
        SqlExpr::Between {
            expr,
            negated,
            low,
            high,
        } => Expr::Between {
            expr: boxed(expr)?,
            low: boxed(low)?,
            high: boxed(high)?,
            negated: *negated,
        },
        SqlExpr::Like {
            negated,
            any: false,
            expr,
            pattern,
            escape_char,
        } => like(
            expr,
            pattern,
            escape_char.as_deref(),
            *negated,
            false,
            scope,
        )?,
        SqlExpr::ILike {
            negated,
            any: false,
            expr,
            pattern,
            escape_char,
        } => like(expr, pattern, escape_char.as_deref(), *negated, true, scope)?,
        SqlExpr::Case {
            operand,
            conditions,
            else_result,
            ..
        } => Expr::Case {
            operand: operand.as_deref().map(boxed).transpose()?,
            when_then: conditions
                .iter()
                .map(|w| Ok((c(&w.condition)?, c(&w.result)?)))
                .collect::<Result<_>>()?,
            else_expr: else_result.as_deref().map(boxed).transpose()?,
        },
        // `TIMESTAMP '2024-01-01 00:00:00'`, `DATE '2024-01-01'`: a cast of the string.
        SqlExpr::TypedString(typed) => {
            let text = match &typed.value.value {
                sqlparser::ast::Value::SingleQuotedString(s) => s.clone(),
                other => return Err(not_supported(&format!("typed literal {other}"))),
            };
            Expr::Cast {
                expr: Box::new(Expr::Literal(ScalarValue::Utf8(text))),
                data_type: types::to_arrow(&typed.data_type)?,
            }
        }
        SqlExpr::Cast {
            kind,
            expr: inner,
            data_type,
            ..
        } => {
            let data_type = types::to_arrow(data_type)?;
            match kind {
                CastKind::TryCast | CastKind::SafeCast => Expr::TryCast {
                    expr: boxed(inner)?,
                    data_type,
                },
                CastKind::Cast | CastKind::DoubleColon => Expr::Cast {
                    expr: boxed(inner)?,
                    data_type,
                },
            }
        }
        SqlExpr::Extract { field, expr, .. } => Expr::Extract {
            field: DateField::from_name(&field.to_string().to_ascii_lowercase())?,
            expr: boxed(expr)?,
        },
        SqlExpr::Floor { expr, field } => convert_floor_ceil(expr, field, scope, true)?,
        SqlExpr::Ceil { expr, field } => convert_floor_ceil(expr, field, scope, false)?,
        SqlExpr::Substring {
            expr,
            substring_from,
            substring_for,
            ..
        } => {
            let mut args = vec![c(expr)?];
            args.push(match substring_from {
                Some(from) => c(from)?,
                None => Expr::Literal(ScalarValue::Int64(1)),
            });
            if let Some(length) = substring_for {
                args.push(c(length)?);
            }
            Expr::Function {
                func: Function::Substring,
                args,
            }
        }
        SqlExpr::Position { expr, r#in } => Expr::Function {
            func: Function::Position,
            args: vec![c(expr)?, c(r#in)?],
        },
        SqlExpr::Trim {
            trim_where,
            trim_what,
            expr,
            trim_characters,
        } => {
            if trim_characters.is_some() {
                return Err(not_supported("TRIM with a character list"));
            }
            let func = match trim_where {
                None | Some(sqlparser::ast::TrimWhereField::Both) => Function::Trim,
                Some(sqlparser::ast::TrimWhereField::Leading) => Function::Ltrim,
                Some(sqlparser::ast::TrimWhereField::Trailing) => Function::Rtrim,
            };
            let mut args = vec![c(expr)?];
            if let Some(what) = trim_what {
                args.push(c(what)?);
            }
            Expr::Function { func, args }
        }
        SqlExpr::Function(function) => {
            let name = function_name(function);
            if is_aggregate_name(&name) {
                return Err(Error::expr(format!(
                    "aggregate function {name} is not allowed here (only in the SELECT list or \
                     HAVING of an aggregating query): {expr}"
                )));
            }
            if function.over.is_some() {
                return Err(not_supported("OVER windows"));
            }
            if function.filter.is_some() {
                return Err(Error::expr(format!(
                    "FILTER (WHERE …) applies to aggregate functions only, not to {name}: {expr}"
                )));
            }
            if let Some(converted) = time_function(&name, function, scope)? {
                return Ok(converted);
            }
            let args = function_args(function)?
                .into_iter()
                .map(|a| match a {
                    Some(e) => c(e),
                    None => Err(Error::expr(format!("'*' is not an argument of {name}"))),
                })
                .collect::<Result<Vec<_>>>()?;
            // Flink's HOUR(t), MINUTE(t), … are EXTRACT(field FROM t).
            if let (
                [arg],
                "YEAR" | "QUARTER" | "MONTH" | "WEEK" | "DAYOFMONTH" | "DAYOFYEAR" | "HOUR"
                | "MINUTE" | "SECOND",
            ) = (args.as_slice(), name.as_str())
            {
                let field = match name.as_str() {
                    "DAYOFMONTH" => "day",
                    "DAYOFYEAR" => "doy",
                    other => other,
                };
                return Ok(Expr::Extract {
                    field: DateField::from_name(&field.to_ascii_lowercase())?,
                    expr: Box::new(arg.clone()),
                });
            }
            Expr::Function {
                func: Function::from_name(&name)?,
                args,
            }
        }
        other => return Err(not_supported(&format!("expression '{other}'"))),
    })
}

/// Flink's date-part functions (`HOUR(ts)`, `DAYOFMONTH(d)`, …) as `EXTRACT`, `FROM_UNIXTIME`
/// as `DATE_FORMAT` of `TO_TIMESTAMP_LTZ`, and the unit of `TIMESTAMPADD` / `TIMESTAMPDIFF` (a
/// bare keyword) as a string literal. `None` for other functions.
fn time_function(
    name: &str,
    function: &sqlparser::ast::Function,
    scope: &Scope<'_>,
) -> Result<Option<Expr>> {
    let field = match name {
        "YEAR" => Some(DateField::Year),
        "QUARTER" => Some(DateField::Quarter),
        "MONTH" => Some(DateField::Month),
        "WEEK" => Some(DateField::Week),
        "DAYOFMONTH" => Some(DateField::Day),
        "DAYOFWEEK" => Some(DateField::DayOfWeek),
        "DAYOFYEAR" => Some(DateField::DayOfYear),
        "HOUR" => Some(DateField::Hour),
        "MINUTE" => Some(DateField::Minute),
        "SECOND" => Some(DateField::Second),
        _ => None,
    };
    let args = function_args(function)?;
    if let Some(field) = field {
        let [Some(arg)] = args.as_slice() else {
            return Err(Error::expr(format!("{name} takes one argument")));
        };
        return Ok(Some(Expr::Extract {
            field,
            expr: Box::new(convert(arg, scope)?),
        }));
    }
    if name == "FROM_UNIXTIME" {
        // FROM_UNIXTIME(seconds [, pattern]) = DATE_FORMAT(TO_TIMESTAMP_LTZ(seconds, 0), pattern)
        let (seconds, pattern) = match args.as_slice() {
            [Some(s)] => (
                s,
                Expr::Literal(ScalarValue::Utf8("yyyy-MM-dd HH:mm:ss".into())),
            ),
            [Some(s), Some(p)] => (s, convert(p, scope)?),
            _ => return Err(Error::expr("FROM_UNIXTIME takes 1 or 2 arguments")),
        };
        let timestamp = Expr::Function {
            func: Function::ToTimestampLtz,
            args: vec![
                convert(seconds, scope)?,
                Expr::Literal(ScalarValue::Int32(0)),
            ],
        };
        return Ok(Some(Expr::Function {
            func: Function::DateFormat,
            args: vec![timestamp, pattern],
        }));
    }
    if name != "TIMESTAMPADD" && name != "TIMESTAMPDIFF" {
        return Ok(None);
    }
    let mut converted = Vec::with_capacity(args.len());
    for (i, arg) in args.iter().enumerate() {
        let Some(arg) = arg else {
            return Err(Error::expr(format!("'*' is not an argument of {name}")));
        };
        converted.push(match (i, arg) {
            (0, SqlExpr::Identifier(unit)) => {
                Expr::Literal(ScalarValue::Utf8(unit.value.to_ascii_uppercase()))
            }
            _ => convert(arg, scope)?,
        });
    }
    Ok(Some(Expr::Function {
        func: Function::from_name(name)?,
        args: converted,
    }))
}

fn like(
    expr: &SqlExpr,
    pattern: &SqlExpr,
    escape: Option<&SqlExpr>,
    negated: bool,
    case_insensitive: bool,
    scope: &Scope<'_>,
) -> Result<Expr> {
    let escape = match escape {
        None => None,
        Some(e) => match convert(e, scope)? {
            Expr::Literal(ScalarValue::Utf8(s)) if s.chars().count() == 1 => s.chars().next(),
            _ => return Err(Error::expr("ESCAPE expects a one-character string")),
        },
    };
    Ok(Expr::Like {
        expr: Box::new(convert(expr, scope)?),
        pattern: Box::new(convert(pattern, scope)?),
        escape,
        negated,
        case_insensitive,
    })
}

fn convert_floor_ceil(
    expr: &SqlExpr,
    field: &CeilFloorKind,
    scope: &Scope<'_>,
    floor: bool,
) -> Result<Expr> {
    let inner = convert(expr, scope)?;
    match field {
        CeilFloorKind::DateTimeField(sqlparser::ast::DateTimeField::NoDateTime) => {
            Ok(Expr::Function {
                func: if floor {
                    Function::Floor
                } else {
                    Function::Ceil
                },
                args: vec![inner],
            })
        }
        CeilFloorKind::DateTimeField(unit) if floor => Ok(Expr::FloorTime {
            expr: Box::new(inner),
            unit: TimeUnitField::from_name(&unit.to_string().to_ascii_lowercase())?,
        }),
        CeilFloorKind::DateTimeField(_) => Err(not_supported("CEIL(x TO unit)")),
        CeilFloorKind::Scale(_) => Err(not_supported("FLOOR/CEIL with a scale")),
    }
}

fn negate_literal(value: ScalarValue) -> std::result::Result<ScalarValue, ScalarValue> {
    Ok(match value {
        ScalarValue::Int32(v) => ScalarValue::Int32(-v),
        ScalarValue::Int64(v) => ScalarValue::Int64(-v),
        ScalarValue::Float64(v) => ScalarValue::Float64(-v),
        ScalarValue::Decimal128 {
            value,
            precision,
            scale,
        } => ScalarValue::Decimal128 {
            value: -value,
            precision,
            scale,
        },
        other => return Err(other),
    })
}

/// A SQL literal: integers are `INT` when they fit (as Flink), else `BIGINT`; numbers with a
/// point are exact decimals (`0.908` is `DECIMAL(4, 3)`); with an exponent, `DOUBLE`.
pub fn literal(value: &Value) -> Result<ScalarValue> {
    Ok(match value {
        Value::Number(text, _) => number_literal(text)?,
        Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => ScalarValue::Utf8(s.clone()),
        Value::Boolean(b) => ScalarValue::Boolean(*b),
        Value::Null => ScalarValue::Null,
        other => return Err(not_supported(&format!("literal {other}"))),
    })
}

fn number_literal(text: &str) -> Result<ScalarValue> {
    let bad = || Error::expr(format!("invalid number literal '{text}'"));
    if text.contains(['e', 'E']) {
        return text
            .parse::<f64>()
            .map(ScalarValue::Float64)
            .map_err(|_| bad());
    }
    if let Some((int, frac)) = text.split_once('.') {
        let digits = format!("{int}{frac}");
        let value: i128 = digits.parse().map_err(|_| bad())?;
        let significant = digits.trim_start_matches('0').len().max(1);
        let scale = frac.len();
        let precision = significant.max(scale).max(1);
        if precision > 38 {
            return text
                .parse::<f64>()
                .map(ScalarValue::Float64)
                .map_err(|_| bad());
        }
        return Ok(ScalarValue::Decimal128 {
            value,
            precision: precision as u8,
            scale: scale as i8,
        });
    }
    let value: i64 = text.parse().map_err(|_| bad())?;
    Ok(match i32::try_from(value) {
        Ok(v) => ScalarValue::Int32(v),
        Err(_) => ScalarValue::Int64(value),
    })
}

/// The length of an `INTERVAL 'n' unit` literal in milliseconds (day-time units only).
pub fn interval_millis(interval: &Interval) -> Result<i64> {
    let text = match interval.value.as_ref() {
        SqlExpr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) => s.clone(),
            Value::Number(n, _) => n.clone(),
            _ => return Err(Error::expr(format!("unsupported interval '{interval}'"))),
        },
        _ => return Err(Error::expr(format!("unsupported interval '{interval}'"))),
    };
    let amount: f64 = text
        .trim()
        .parse()
        .map_err(|_| Error::expr(format!("unsupported interval value '{text}' in {interval}")))?;
    let unit = interval
        .leading_field
        .as_ref()
        .map(|f| f.to_string().to_ascii_uppercase())
        .unwrap_or_else(|| "SECOND".into());
    let unit_ms = match unit.trim_end_matches('S') {
        "MILLISECOND" => 1.0,
        "SECOND" => 1_000.0,
        "MINUTE" => 60_000.0,
        "HOUR" => 3_600_000.0,
        "DAY" => 86_400_000.0,
        _ => {
            return Err(not_supported(&format!(
                "interval unit {unit} (in {interval}; use SECOND, MINUTE, HOUR or DAY)"
            )));
        }
    };
    if interval.last_field.is_some() {
        return Err(not_supported(&format!(
            "interval '{interval}' with a range"
        )));
    }
    Ok((amount * unit_ms).round() as i64)
}

fn interval_literal(interval: &Interval) -> Result<ScalarValue> {
    let unit = interval
        .leading_field
        .as_ref()
        .map(|f| f.to_string().to_ascii_uppercase())
        .unwrap_or_default();
    if matches!(unit.trim_end_matches('S'), "YEAR" | "MONTH") {
        let months = match interval.value.as_ref() {
            SqlExpr::Value(v) => match &v.value {
                Value::SingleQuotedString(s) | Value::Number(s, _) => s.trim().parse::<i32>().ok(),
                _ => None,
            },
            _ => None,
        }
        .ok_or_else(|| Error::expr(format!("unsupported interval '{interval}'")))?;
        let factor = if unit.starts_with("YEAR") { 12 } else { 1 };
        return Ok(ScalarValue::IntervalYearMonth(months * factor));
    }
    let millis = interval_millis(interval)?;
    let days = millis.div_euclid(86_400_000);
    let rest = millis.rem_euclid(86_400_000);
    Ok(ScalarValue::IntervalDayTime {
        days: i32::try_from(days)
            .map_err(|_| Error::expr(format!("interval '{interval}' is too long")))?,
        millis: rest as i32,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_literals_are_exact() {
        assert_eq!(
            number_literal("0.908").unwrap(),
            ScalarValue::Decimal128 {
                value: 908,
                precision: 3,
                scale: 3
            }
        );
        assert_eq!(number_literal("123").unwrap(), ScalarValue::Int32(123));
        assert_eq!(
            number_literal("5000000000").unwrap(),
            ScalarValue::Int64(5_000_000_000)
        );
    }
}
