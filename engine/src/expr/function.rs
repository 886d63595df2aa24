//! The closed set of scalar functions an [`Expr`](super::Expr) may call.
//!
//! Functions are an enum rather than a name looked up at run time: the SQL planner maps a name to
//! a [`Function`] with [`Function::from_name`] (case-insensitive, with a "did you mean" suggestion
//! for typos), the JobGraph stores the enum, and [`Expr::resolve`](super::Expr::resolve) checks
//! arity and argument types once.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// A known scalar function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Function {
    /// `LOWER(s)`.
    Lower,
    /// `UPPER(s)`.
    Upper,
    /// `SUBSTRING(s, start [, len])`: 1-based, in characters, SQL-standard window semantics.
    Substring,
    /// `CONCAT(s1, s2, ...)`: `NULL` if any argument is `NULL` (as Flink).
    Concat,
    /// `CONCAT_WS(sep, s1, ...)`: skips `NULL` arguments; `NULL` if `sep` is `NULL`.
    ConcatWs,
    /// `CHAR_LENGTH(s)` / `CHARACTER_LENGTH(s)`: length in characters.
    CharLength,
    /// `TRIM(s [, chars])` (`BOTH`); `chars` defaults to a space.
    Trim,
    /// `LTRIM(s [, chars])` (`LEADING`).
    Ltrim,
    /// `RTRIM(s [, chars])` (`TRAILING`).
    Rtrim,
    /// `REPLACE(s, from, to)`.
    Replace,
    /// `POSITION(needle IN haystack)` as `position(needle, haystack)`: 1-based character index,
    /// 0 when absent.
    Position,
    /// `COALESCE(a, b, ...)`.
    Coalesce,
    /// `NULLIF(a, b)`: `NULL` where `a = b`, else `a`. Both are coerced to their comparison
    /// type, which is also the result type.
    NullIf,
    /// `IF(cond, then, else)`.
    If,
    /// `ABS(x)`.
    Abs,
    /// `MOD(a, b)`, the same as `a % b`.
    Mod,
    /// `FLOOR(x)` for numbers (for timestamps see [`Expr::FloorTime`](super::Expr::FloorTime)).
    Floor,
    /// `CEIL(x)` / `CEILING(x)` for numbers.
    Ceil,
    /// `ROUND(x [, digits])`, half away from zero; `digits` must be a literal.
    Round,
    /// `TO_TIMESTAMP_LTZ(epoch, precision)`: `precision` is a literal 0 (seconds) or 3
    /// (milliseconds); the result is `Timestamp(Millisecond, "UTC")`.
    ToTimestampLtz,
    /// `COUNT_CHAR(s, c)`: how many times the character `c` occurs in `s` (BIGINT). The Java
    /// UDF `CountChar` of the Nexmark project, which query 14 registers, built in.
    CountChar,
    /// `PROCTIME()`: the wall clock when a batch is evaluated, `Timestamp(ms, "UTC")` (Flink's
    /// `TIMESTAMP_LTZ(3) *PROCTIME*`). A window TVF over such a column is a processing-time
    /// window.
    Proctime,
    /// `DATE_FORMAT(ts, pattern)`: a timestamp (or a string holding one) formatted with a
    /// literal Java `SimpleDateFormat` pattern.
    DateFormat,
    /// `TO_DATE(s [, pattern])`: a string parsed as a DATE (default `yyyy-MM-dd`); NULL when
    /// it does not match.
    ToDate,
    /// `TO_TIMESTAMP(s [, pattern])`: a string parsed as TIMESTAMP(3) (default
    /// `yyyy-MM-dd HH:mm:ss`); NULL when it does not match.
    ToTimestamp,
    /// `REGEXP_EXTRACT(s, regex [, group])`; the pattern must be a literal.
    RegexpExtract,
    /// `REGEXP_REPLACE(s, regex, replacement)`; the pattern must be a literal.
    RegexpReplace,
    /// `REGEXP(s, regex)`: whether a substring matches; the pattern must be a literal.
    Regexp,
    /// `SPLIT_INDEX(s, sep, index)`: 0-based piece, NULL when out of range.
    SplitIndex,
    /// `INITCAP(s)`.
    Initcap,
    /// `LPAD(s, len, pad)`.
    Lpad,
    /// `RPAD(s, len, pad)`.
    Rpad,
    /// `TIMESTAMPADD(unit, n, ts)`; the SQL layer passes the unit as a string literal.
    TimestampAdd,
    /// `TIMESTAMPDIFF(unit, a, b)`: whole units from `a` to `b`, as INT.
    TimestampDiff,
}

/// Every function with the names it answers to (first name is canonical).
const NAMES: &[(Function, &[&str])] = &[
    (Function::Lower, &["lower", "lcase"]),
    (Function::Upper, &["upper", "ucase"]),
    (Function::Substring, &["substring", "substr"]),
    (Function::Concat, &["concat"]),
    (Function::ConcatWs, &["concat_ws"]),
    (
        Function::CharLength,
        &["char_length", "character_length", "length"],
    ),
    (Function::Trim, &["trim", "btrim"]),
    (Function::Ltrim, &["ltrim"]),
    (Function::Rtrim, &["rtrim"]),
    (Function::Replace, &["replace"]),
    (Function::Position, &["position", "locate_in"]),
    (Function::Coalesce, &["coalesce"]),
    (Function::NullIf, &["nullif"]),
    (Function::If, &["if"]),
    (Function::Abs, &["abs"]),
    (Function::Mod, &["mod"]),
    (Function::Floor, &["floor"]),
    (Function::Ceil, &["ceil", "ceiling"]),
    (Function::Round, &["round"]),
    (Function::ToTimestampLtz, &["to_timestamp_ltz"]),
    (Function::CountChar, &["count_char"]),
    (Function::Proctime, &["proctime"]),
    (Function::DateFormat, &["date_format"]),
    (Function::ToDate, &["to_date"]),
    (Function::ToTimestamp, &["to_timestamp"]),
    (Function::RegexpExtract, &["regexp_extract"]),
    (Function::RegexpReplace, &["regexp_replace"]),
    (Function::Regexp, &["regexp"]),
    (Function::SplitIndex, &["split_index"]),
    (Function::Initcap, &["initcap"]),
    (Function::Lpad, &["lpad"]),
    (Function::Rpad, &["rpad"]),
    (Function::TimestampAdd, &["timestampadd"]),
    (Function::TimestampDiff, &["timestampdiff"]),
];

impl Function {
    /// Looks a function up by SQL name, ignoring case. An unknown name is an error that suggests
    /// the closest known name: "unknown function 'lowr' (did you mean 'lower'?)".
    pub fn from_name(name: &str) -> Result<Function> {
        let lower = name.to_ascii_lowercase();
        for (func, names) in NAMES {
            if names.contains(&lower.as_str()) {
                return Ok(*func);
            }
        }
        let all = NAMES.iter().flat_map(|(_, names)| names.iter().copied());
        Err(Error::expr(match closest(&lower, all) {
            Some(best) => format!("unknown function '{name}' (did you mean '{best}'?)"),
            None => format!("unknown function '{name}'"),
        }))
    }

    /// The canonical SQL name, upper case.
    pub fn name(self) -> &'static str {
        match self {
            Function::Lower => "LOWER",
            Function::Upper => "UPPER",
            Function::Substring => "SUBSTRING",
            Function::Concat => "CONCAT",
            Function::ConcatWs => "CONCAT_WS",
            Function::CharLength => "CHAR_LENGTH",
            Function::Trim => "TRIM",
            Function::Ltrim => "LTRIM",
            Function::Rtrim => "RTRIM",
            Function::Replace => "REPLACE",
            Function::Position => "POSITION",
            Function::Coalesce => "COALESCE",
            Function::NullIf => "NULLIF",
            Function::If => "IF",
            Function::Abs => "ABS",
            Function::Mod => "MOD",
            Function::Floor => "FLOOR",
            Function::Ceil => "CEIL",
            Function::Round => "ROUND",
            Function::ToTimestampLtz => "TO_TIMESTAMP_LTZ",
            Function::CountChar => "COUNT_CHAR",
            Function::Proctime => "PROCTIME",
            Function::DateFormat => "DATE_FORMAT",
            Function::ToDate => "TO_DATE",
            Function::ToTimestamp => "TO_TIMESTAMP",
            Function::RegexpExtract => "REGEXP_EXTRACT",
            Function::RegexpReplace => "REGEXP_REPLACE",
            Function::Regexp => "REGEXP",
            Function::SplitIndex => "SPLIT_INDEX",
            Function::Initcap => "INITCAP",
            Function::Lpad => "LPAD",
            Function::Rpad => "RPAD",
            Function::TimestampAdd => "TIMESTAMPADD",
            Function::TimestampDiff => "TIMESTAMPDIFF",
        }
    }
}

impl fmt::Display for Function {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A field of `EXTRACT(field FROM x)`. All results are `BIGINT` (Int64), as in Flink.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DateField {
    /// Calendar year.
    Year,
    /// 1..=4.
    Quarter,
    /// 1..=12.
    Month,
    /// ISO-8601 week of the year, 1..=53.
    Week,
    /// Day of the month, 1..=31.
    Day,
    /// Day of the week, 1 = Sunday ..= 7 = Saturday (Flink / Calcite convention).
    DayOfWeek,
    /// Day of the year, 1..=366.
    DayOfYear,
    /// 0..=23.
    Hour,
    /// 0..=59.
    Minute,
    /// Whole seconds of the minute, 0..=59.
    Second,
    /// Whole seconds since 1970-01-01T00:00:00 UTC (floored).
    Epoch,
}

impl DateField {
    /// Parses `YEAR`, `DOW`, … ignoring case.
    pub fn from_name(name: &str) -> Result<DateField> {
        Ok(match name.to_ascii_lowercase().as_str() {
            "year" => DateField::Year,
            "quarter" => DateField::Quarter,
            "month" => DateField::Month,
            "week" => DateField::Week,
            "day" => DateField::Day,
            "dow" | "dayofweek" => DateField::DayOfWeek,
            "doy" | "dayofyear" => DateField::DayOfYear,
            "hour" => DateField::Hour,
            "minute" => DateField::Minute,
            "second" => DateField::Second,
            "epoch" => DateField::Epoch,
            _ => {
                return Err(Error::expr(format!(
                    "unknown EXTRACT field '{name}' (expected one of YEAR, QUARTER, MONTH, WEEK, \
                     DAY, DOW, DOY, HOUR, MINUTE, SECOND, EPOCH)"
                )));
            }
        })
    }
}

impl fmt::Display for DateField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DateField::Year => "YEAR",
            DateField::Quarter => "QUARTER",
            DateField::Month => "MONTH",
            DateField::Week => "WEEK",
            DateField::Day => "DAY",
            DateField::DayOfWeek => "DOW",
            DateField::DayOfYear => "DOY",
            DateField::Hour => "HOUR",
            DateField::Minute => "MINUTE",
            DateField::Second => "SECOND",
            DateField::Epoch => "EPOCH",
        })
    }
}

/// The unit of `FLOOR(ts TO unit)` (a `date_trunc`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TimeUnitField {
    /// Whole seconds.
    Second,
    /// Whole minutes.
    Minute,
    /// Whole hours.
    Hour,
    /// Midnight.
    Day,
    /// Monday midnight (ISO week).
    Week,
    /// First day of the month.
    Month,
    /// First day of the quarter.
    Quarter,
    /// January 1st.
    Year,
}

impl TimeUnitField {
    /// Parses `SECOND`, `DAY`, … ignoring case.
    pub fn from_name(name: &str) -> Result<TimeUnitField> {
        Ok(match name.to_ascii_lowercase().as_str() {
            "second" => TimeUnitField::Second,
            "minute" => TimeUnitField::Minute,
            "hour" => TimeUnitField::Hour,
            "day" => TimeUnitField::Day,
            "week" => TimeUnitField::Week,
            "month" => TimeUnitField::Month,
            "quarter" => TimeUnitField::Quarter,
            "year" => TimeUnitField::Year,
            _ => {
                return Err(Error::expr(format!(
                    "unknown time unit '{name}' (expected one of SECOND, MINUTE, HOUR, DAY, \
                     WEEK, MONTH, QUARTER, YEAR)"
                )));
            }
        })
    }
}

impl fmt::Display for TimeUnitField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TimeUnitField::Second => "SECOND",
            TimeUnitField::Minute => "MINUTE",
            TimeUnitField::Hour => "HOUR",
            TimeUnitField::Day => "DAY",
            TimeUnitField::Week => "WEEK",
            TimeUnitField::Month => "MONTH",
            TimeUnitField::Quarter => "QUARTER",
            TimeUnitField::Year => "YEAR",
        })
    }
}

/// The candidate closest to `name` by edit distance, if it is close enough to be a typo.
pub(crate) fn closest<'a>(
    name: &str,
    candidates: impl Iterator<Item = &'a str>,
) -> Option<&'a str> {
    let limit = (name.chars().count() / 3).max(1);
    candidates
        .map(|c| (edit_distance(name, &c.to_ascii_lowercase()), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Levenshtein distance over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_is_case_insensitive_and_suggests() {
        assert_eq!(Function::from_name("LoWeR").unwrap(), Function::Lower);
        assert_eq!(
            Function::from_name("character_length").unwrap(),
            Function::CharLength
        );
        let err = Function::from_name("lowr").unwrap_err().to_string();
        assert!(err.contains("unknown function 'lowr'"), "{err}");
        assert!(err.contains("did you mean 'lower'"), "{err}");
        let err = Function::from_name("frobnicate").unwrap_err().to_string();
        assert!(!err.contains("did you mean"), "{err}");
    }

    #[test]
    fn date_fields_parse() {
        assert_eq!(DateField::from_name("dow").unwrap(), DateField::DayOfWeek);
        assert!(DateField::from_name("fortnight").is_err());
        assert_eq!(
            TimeUnitField::from_name("Hour").unwrap(),
            TimeUnitField::Hour
        );
    }
}
