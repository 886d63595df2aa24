//! Flink SQL types → Arrow types.
//!
//! The mapping reads the type as `sqlparser` prints it, so Flink-only spellings it keeps as
//! custom types (`STRING`, `TIMESTAMP_LTZ(3)`) are handled the same way as standard ones.
//! `TIMESTAMP(p)` is `Timestamp(Millisecond, None)` and `TIMESTAMP_LTZ(p)` is
//! `Timestamp(Millisecond, Some("UTC"))` (an instant, shown in UTC): Sluice keeps event time
//! in milliseconds whatever the declared precision, as Flink's rowtime does.

use arrow::datatypes::{DataType, TimeUnit};
use sqlparser::ast::DataType as SqlType;

use crate::{Error, Result};

/// The Arrow type of a SQL type.
pub fn to_arrow(sql: &SqlType) -> Result<DataType> {
    parse_type_name(&sql.to_string())
}

/// The Arrow type of a SQL type name such as `BIGINT` or `DECIMAL(10, 2)`.
pub fn parse_type_name(text: &str) -> Result<DataType> {
    let upper = text.trim().to_ascii_uppercase();
    let upper = upper.strip_suffix(" NOT NULL").unwrap_or(&upper).trim();
    let (base, args) = match upper.find('(') {
        Some(open) => {
            let close = upper.rfind(')').unwrap_or(upper.len());
            let args: Vec<&str> = upper[open + 1..close.max(open + 1)]
                .split(',')
                .map(str::trim)
                .filter(|a| !a.is_empty())
                .collect();
            (upper[..open].trim(), args)
        }
        None => (upper, Vec::new()),
    };
    let unsupported = || Error::expr(format!("type '{text}' is not supported yet"));
    Ok(match base {
        "BOOLEAN" | "BOOL" => DataType::Boolean,
        "TINYINT" => DataType::Int8,
        "SMALLINT" => DataType::Int16,
        "INT" | "INTEGER" => DataType::Int32,
        "BIGINT" => DataType::Int64,
        "FLOAT" | "REAL" => DataType::Float32,
        "DOUBLE" | "DOUBLE PRECISION" => DataType::Float64,
        "STRING" | "VARCHAR" | "CHAR" | "TEXT" | "CHARACTER VARYING" => DataType::Utf8,
        "DATE" => DataType::Date32,
        "DECIMAL" | "NUMERIC" | "DEC" => {
            let parse = |s: &str| s.parse::<u8>().map_err(|_| unsupported());
            let precision = args.first().map(|p| parse(p)).transpose()?.unwrap_or(10);
            let scale = args.get(1).map(|s| parse(s)).transpose()?.unwrap_or(0);
            if precision == 0 || precision > 38 || scale > precision {
                return Err(Error::expr(format!(
                    "type '{text}': precision must be 1..=38 and scale at most the precision"
                )));
            }
            DataType::Decimal128(precision, scale as i8)
        }
        "TIMESTAMP" | "TIMESTAMP WITHOUT TIME ZONE" => {
            DataType::Timestamp(TimeUnit::Millisecond, None)
        }
        "TIMESTAMP_LTZ" | "TIMESTAMP WITH LOCAL TIME ZONE" | "TIMESTAMP WITH TIME ZONE" => {
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
        }
        _ => {
            // `TIMESTAMP(3) WITH LOCAL TIME ZONE` and similar.
            if upper.starts_with("TIMESTAMP") && upper.contains("LOCAL TIME ZONE") {
                DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
            } else if upper.starts_with("TIMESTAMP") && !upper.contains("ZONE") {
                DataType::Timestamp(TimeUnit::Millisecond, None)
            } else if upper.starts_with("VARCHAR") || upper.starts_with("CHAR") {
                DataType::Utf8
            } else {
                return Err(unsupported());
            }
        }
    })
}

/// The Flink SQL name of an Arrow type (DESCRIBE, error messages).
pub fn sql_name(data_type: &DataType) -> String {
    match data_type {
        DataType::Boolean => "BOOLEAN".into(),
        DataType::Int8 => "TINYINT".into(),
        DataType::Int16 => "SMALLINT".into(),
        DataType::Int32 => "INT".into(),
        DataType::Int64 => "BIGINT".into(),
        DataType::Float32 => "FLOAT".into(),
        DataType::Float64 => "DOUBLE".into(),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "STRING".into(),
        DataType::Date32 => "DATE".into(),
        DataType::Decimal128(p, s) => format!("DECIMAL({p}, {s})"),
        DataType::Timestamp(_, None) => "TIMESTAMP(3)".into(),
        DataType::Timestamp(_, Some(_)) => "TIMESTAMP_LTZ(3)".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flink_types_map_to_arrow() {
        assert_eq!(parse_type_name("BIGINT").unwrap(), DataType::Int64);
        assert_eq!(parse_type_name("STRING").unwrap(), DataType::Utf8);
        assert_eq!(
            parse_type_name("DECIMAL(24, 3)").unwrap(),
            DataType::Decimal128(24, 3)
        );
        assert_eq!(
            parse_type_name("TIMESTAMP_LTZ(3)").unwrap(),
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
        );
        assert_eq!(
            parse_type_name("TIMESTAMP(3)").unwrap(),
            DataType::Timestamp(TimeUnit::Millisecond, None)
        );
        assert!(parse_type_name("MAP<STRING, INT>").is_err());
    }
}
