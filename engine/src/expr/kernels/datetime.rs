//! Date and time kernels with Flink's semantics: `DATE_FORMAT`, `TO_DATE`, `TIMESTAMPADD`,
//! `TIMESTAMPDIFF`.
//!
//! Patterns are Java `SimpleDateFormat` patterns (`yyyy-MM-dd HH:mm:ss.SSS`), parsed once when
//! the expression is resolved into a [`DatePattern`]. Timestamps are read as wall-clock values
//! (a `TIMESTAMP_LTZ` in the session time zone, which is UTC). Formatting writes straight into
//! one string builder per batch.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, Date32Array, Int32Builder, PrimitiveArray, StringArray, StringBuilder,
};
use arrow::datatypes::{
    ArrowPrimitiveType, DataType, Date32Type, TimeUnit, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType,
};
use arrow::error::ArrowError;

use super::temporal::{civil_from_days, days_from_civil, ticks_per_second};
use super::{IntArg, Value};

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
/// Day names from Thursday, 1970-01-01 (day 0).
const WEEKDAYS: [&str; 7] = [
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
];

/// One element of a date pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// A pattern letter repeated `width` times.
    Field(char, usize),
    Literal(String),
}

/// A parsed Java `SimpleDateFormat` pattern. Supported letters: `y` (year), `M` (month;
/// `MMM` / `MMMM` for names), `d` (day of month), `D` (day of year), `E` (day name), `H` (hour
/// 0-23), `h` (hour 1-12), `a` (AM/PM), `m` (minute), `s` (second), `S` (millisecond). Text in
/// single quotes is literal (`''` is a quote).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DatePattern {
    tokens: Vec<Token>,
}

impl DatePattern {
    pub(crate) fn parse(pattern: &str) -> Result<DatePattern, String> {
        let mut tokens: Vec<Token> = Vec::new();
        let mut literal = String::new();
        let mut chars = pattern.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '\'' {
                if chars.peek() == Some(&'\'') {
                    chars.next();
                    literal.push('\'');
                    continue;
                }
                loop {
                    match chars.next() {
                        None => return Err(format!("unterminated quote in pattern '{pattern}'")),
                        Some('\'') if chars.peek() == Some(&'\'') => {
                            chars.next();
                            literal.push('\'');
                        }
                        Some('\'') => break,
                        Some(q) => literal.push(q),
                    }
                }
            } else if c.is_ascii_alphabetic() {
                if !"yMdDEHhamsS".contains(c) {
                    return Err(format!(
                        "unsupported letter '{c}' in date pattern '{pattern}' (supported: y M d \
                         D E H h a m s S)"
                    ));
                }
                if !literal.is_empty() {
                    tokens.push(Token::Literal(std::mem::take(&mut literal)));
                }
                let mut width = 1;
                while chars.peek() == Some(&c) {
                    chars.next();
                    width += 1;
                }
                tokens.push(Token::Field(c, width));
            } else {
                literal.push(c);
            }
        }
        if !literal.is_empty() {
            tokens.push(Token::Literal(literal));
        }
        Ok(DatePattern { tokens })
    }

    /// Writes the wall-clock time `ms` (milliseconds since the epoch) in this pattern.
    fn write(&self, ms: i64, out: &mut impl std::fmt::Write) -> std::fmt::Result {
        let days = ms.div_euclid(86_400_000);
        let in_day = ms.rem_euclid(86_400_000);
        let (year, month, day) = civil_from_days(days);
        let (hour, minute) = (in_day / 3_600_000, in_day / 60_000 % 60);
        let (second, milli) = (in_day / 1_000 % 60, in_day % 1_000);
        for token in &self.tokens {
            match token {
                Token::Literal(text) => out.write_str(text)?,
                Token::Field(c, w) => {
                    let w = *w;
                    match c {
                        'y' if w == 2 => write!(out, "{:02}", year.rem_euclid(100))?,
                        'y' => write!(out, "{year:0w$}")?,
                        'M' if w >= 4 => out.write_str(MONTHS[month as usize - 1])?,
                        'M' if w == 3 => out.write_str(&MONTHS[month as usize - 1][..3])?,
                        'M' => write!(out, "{month:0w$}")?,
                        'd' => write!(out, "{day:0w$}")?,
                        'D' => {
                            let doy = days - days_from_civil(year, 1, 1) + 1;
                            write!(out, "{doy:0w$}")?
                        }
                        'E' => {
                            let name = WEEKDAYS[days.rem_euclid(7) as usize];
                            out.write_str(if w >= 4 { name } else { &name[..3] })?
                        }
                        'H' => write!(out, "{hour:0w$}")?,
                        'h' => write!(out, "{:0w$}", (hour + 11) % 12 + 1)?,
                        'a' => out.write_str(if hour < 12 { "AM" } else { "PM" })?,
                        'm' => write!(out, "{minute:0w$}")?,
                        's' => write!(out, "{second:0w$}")?,
                        // `S` is a count of milliseconds (Java's meaning), zero-padded.
                        _ => write!(out, "{milli:0w$}")?,
                    }
                }
            }
        }
        Ok(())
    }

    /// Parses `text` as a date in this pattern; `None` if it does not match or is no date.
    fn parse_date(&self, text: &str) -> Option<i32> {
        let ms = self.parse_millis(text)?;
        i32::try_from(ms.div_euclid(86_400_000)).ok()
    }

    /// Parses `text` as a wall-clock time in this pattern (epoch milliseconds); `None` if it
    /// does not match or is no valid date and time. Fields the pattern lacks take their
    /// smallest value (1970-01-01 00:00:00.000).
    fn parse_millis(&self, text: &str) -> Option<i64> {
        let (mut year, mut month, mut day) = (1970_i64, 1_u32, 1_u32);
        let (mut hour, mut minute, mut second, mut milli) = (0_i64, 0_i64, 0_i64, 0_i64);
        let mut pm: Option<bool> = None;
        let mut rest = text;
        for (i, token) in self.tokens.iter().enumerate() {
            match token {
                Token::Literal(l) => rest = rest.strip_prefix(l.as_str())?,
                Token::Field('a', _) => {
                    let upper = rest.get(..2)?.to_ascii_uppercase();
                    pm = Some(match upper.as_str() {
                        "AM" => false,
                        "PM" => true,
                        _ => return None,
                    });
                    rest = &rest[2..];
                }
                Token::Field(c, w) => {
                    let next_is_field = matches!(self.tokens.get(i + 1), Some(Token::Field(..)));
                    let natural = match c {
                        'y' => 4,
                        'S' | 'D' => 3,
                        _ => 2,
                    };
                    let max = if next_is_field { *w } else { natural.max(*w) };
                    let digits = rest
                        .bytes()
                        .take(max)
                        .take_while(u8::is_ascii_digit)
                        .count();
                    if digits == 0 {
                        return None;
                    }
                    let value: i64 = rest[..digits].parse().ok()?;
                    rest = &rest[digits..];
                    match c {
                        'y' => year = if *w == 2 { 2000 + value } else { value },
                        'M' => month = u32::try_from(value).ok()?,
                        'd' => day = u32::try_from(value).ok()?,
                        'H' => hour = value,
                        'h' => hour = value % 12,
                        'm' => minute = value,
                        's' => second = value,
                        'S' => milli = value,
                        // Day of year and day names are not read back.
                        _ => return None,
                    }
                }
            }
        }
        if pm == Some(true) {
            hour += 12;
        }
        if !rest.is_empty()
            || !(1..=12).contains(&month)
            || day < 1
            || day > month_days(year, month)
            || !(0..24).contains(&hour)
            || !(0..60).contains(&minute)
            || !(0..60).contains(&second)
            || !(0..1000).contains(&milli)
        {
            return None;
        }
        days_from_civil(year, month, day)
            .checked_mul(86_400_000)?
            .checked_add(((hour * 60 + minute) * 60 + second) * 1_000 + milli)
    }
}

fn month_days(year: i64, month: u32) -> u32 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Milliseconds of wall-clock time of every row of a timestamp or date column.
fn millis(a: &ArrayRef) -> Result<PrimitiveArray<TimestampMillisecondType>, ArrowError> {
    fn scaled<T: ArrowPrimitiveType<Native = i64>>(
        a: &dyn Array,
        per_second: i64,
    ) -> PrimitiveArray<TimestampMillisecondType> {
        let a = a.as_primitive::<T>();
        if per_second >= 1_000 {
            let k = per_second / 1_000;
            a.unary(|v| v.div_euclid(k))
        } else {
            a.unary(|v| v.saturating_mul(1_000 / per_second))
        }
    }
    Ok(match a.data_type() {
        DataType::Date32 => a
            .as_primitive::<Date32Type>()
            .unary(|d| i64::from(d) * 86_400_000),
        DataType::Timestamp(unit, _) => {
            let k = ticks_per_second(*unit);
            match unit {
                TimeUnit::Second => scaled::<TimestampSecondType>(a, k),
                TimeUnit::Millisecond => scaled::<TimestampMillisecondType>(a, k),
                TimeUnit::Microsecond => scaled::<TimestampMicrosecondType>(a, k),
                TimeUnit::Nanosecond => scaled::<TimestampNanosecondType>(a, k),
            }
        }
        other => {
            return Err(ArrowError::InvalidArgumentError(format!(
                "expected a DATE or TIMESTAMP, found {other}"
            )));
        }
    })
}

/// `DATE_FORMAT(ts, pattern)`.
pub(super) fn date_format(a: &ArrayRef, pattern: &DatePattern) -> Result<ArrayRef, ArrowError> {
    let ms = millis(a)?;
    let mut b = StringBuilder::with_capacity(ms.len(), ms.len() * 20);
    for v in ms.iter() {
        match v {
            Some(v) => {
                pattern
                    .write(v, &mut b)
                    .map_err(|_| ArrowError::ComputeError("DATE_FORMAT: write failed".into()))?;
                b.append_value("");
            }
            None => b.append_null(),
        }
    }
    Ok(Arc::new(b.finish()))
}

/// `TO_DATE(s [, pattern])`: NULL where `s` does not match (default `yyyy-MM-dd`).
pub(super) fn to_date(a: &StringArray, pattern: Option<&DatePattern>) -> Date32Array {
    let default;
    let pattern = match pattern {
        Some(p) => p,
        None => {
            default = DatePattern::parse("yyyy-MM-dd").expect("the default pattern parses");
            &default
        }
    };
    a.iter()
        .map(|v| v.and_then(|s| pattern.parse_date(s.trim())))
        .collect()
}

/// `TO_TIMESTAMP(s, pattern)`: TIMESTAMP(3); NULL where `s` does not match.
pub(super) fn to_timestamp(
    a: &StringArray,
    pattern: &DatePattern,
) -> PrimitiveArray<TimestampMillisecondType> {
    a.iter()
        .map(|v| v.and_then(|s| pattern.parse_millis(s.trim())))
        .collect()
}

/// The unit of `TIMESTAMPADD` / `TIMESTAMPDIFF`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimestampUnit {
    Second,
    Minute,
    Hour,
    Day,
    Week,
    Month,
    Quarter,
    Year,
}

impl TimestampUnit {
    pub(crate) fn from_name(name: &str) -> Option<TimestampUnit> {
        let name = name.to_ascii_uppercase();
        let name = name.strip_prefix("SQL_TSI_").unwrap_or(&name);
        Some(match name {
            "SECOND" => TimestampUnit::Second,
            "MINUTE" => TimestampUnit::Minute,
            "HOUR" => TimestampUnit::Hour,
            "DAY" => TimestampUnit::Day,
            "WEEK" => TimestampUnit::Week,
            "MONTH" => TimestampUnit::Month,
            "QUARTER" => TimestampUnit::Quarter,
            "YEAR" => TimestampUnit::Year,
            _ => return None,
        })
    }

    /// Milliseconds of a fixed-length unit; `None` for months, quarters and years.
    fn fixed_millis(self) -> Option<i64> {
        Some(match self {
            TimestampUnit::Second => 1_000,
            TimestampUnit::Minute => 60_000,
            TimestampUnit::Hour => 3_600_000,
            TimestampUnit::Day => 86_400_000,
            TimestampUnit::Week => 7 * 86_400_000,
            TimestampUnit::Month | TimestampUnit::Quarter | TimestampUnit::Year => return None,
        })
    }

    fn months(self) -> i64 {
        match self {
            TimestampUnit::Quarter => 3,
            TimestampUnit::Year => 12,
            _ => 1,
        }
    }
}

/// `ms` plus `months` calendar months (the day is clamped to the target month's length).
fn add_months(ms: i64, months: i64) -> Option<i64> {
    let days = ms.div_euclid(86_400_000);
    let in_day = ms.rem_euclid(86_400_000);
    let (y, m, d) = civil_from_days(days);
    let total = y
        .checked_mul(12)?
        .checked_add(i64::from(m) - 1)?
        .checked_add(months)?;
    let (ny, nm) = (total.div_euclid(12), (total.rem_euclid(12) + 1) as u32);
    let nd = d.min(month_days(ny, nm));
    days_from_civil(ny, nm, nd)
        .checked_mul(86_400_000)?
        .checked_add(in_day)
}

fn overflow(what: &str) -> ArrowError {
    ArrowError::ArithmeticOverflow(format!("{what} is out of range"))
}

/// `TIMESTAMPADD(unit, n, ts)`; the result has the type of `ts` (a DATE stays a DATE).
pub(super) fn timestamp_add(
    unit: TimestampUnit,
    n: &IntArg<'_>,
    ts: &Value,
    rows: usize,
) -> Result<ArrayRef, ArrowError> {
    let input = ts.array();
    let ms = millis(input)?;
    let scalar = ts.is_scalar();
    let mut out: Vec<Option<i64>> = Vec::with_capacity(rows);
    for i in 0..rows {
        let at = if scalar { 0 } else { i };
        let v = ms.is_valid(at).then(|| ms.value(at));
        let shifted = match (v, n.get(i)) {
            (Some(v), Some(k)) => Some(match unit.fixed_millis() {
                Some(unit_ms) => k
                    .checked_mul(unit_ms)
                    .and_then(|d| v.checked_add(d))
                    .ok_or_else(|| overflow("TIMESTAMPADD"))?,
                None => k
                    .checked_mul(unit.months())
                    .and_then(|m| add_months(v, m))
                    .ok_or_else(|| overflow("TIMESTAMPADD"))?,
            }),
            _ => None,
        };
        out.push(shifted);
    }
    let millis = PrimitiveArray::<TimestampMillisecondType>::from(out);
    let result: ArrayRef = match input.data_type() {
        DataType::Date32 => {
            Arc::new(millis.unary::<_, Date32Type>(|v| v.div_euclid(86_400_000) as i32))
        }
        other => arrow::compute::cast(&(Arc::new(millis) as ArrayRef), &strip_tz(other))
            .and_then(|a| arrow::compute::cast(&a, other))?,
    };
    Ok(result)
}

/// The same timestamp type without a time zone (the wall-clock values are cast between
/// units; a zone is put back afterwards without shifting).
fn strip_tz(t: &DataType) -> DataType {
    match t {
        DataType::Timestamp(unit, _) => DataType::Timestamp(*unit, None),
        other => other.clone(),
    }
}

/// `TIMESTAMPDIFF(unit, a, b)`: whole units from `a` to `b` (negative when `b` is earlier).
pub(super) fn timestamp_diff(
    unit: TimestampUnit,
    a: &Value,
    b: &Value,
    rows: usize,
) -> Result<ArrayRef, ArrowError> {
    let (am, bm) = (millis(a.array())?, millis(b.array())?);
    let get = |array: &PrimitiveArray<TimestampMillisecondType>, scalar: bool, i: usize| {
        let i = if scalar { 0 } else { i };
        array.is_valid(i).then(|| array.value(i))
    };
    let mut out = Int32Builder::with_capacity(rows);
    for i in 0..rows {
        let (Some(x), Some(y)) = (get(&am, a.is_scalar(), i), get(&bm, b.is_scalar(), i)) else {
            out.append_null();
            continue;
        };
        let diff = match unit.fixed_millis() {
            Some(unit_ms) => (y - x) / unit_ms,
            None => {
                let months = |ms: i64| {
                    let (yy, mm, _) = civil_from_days(ms.div_euclid(86_400_000));
                    yy * 12 + i64::from(mm) - 1
                };
                let mut whole = months(y) - months(x);
                // A month counts only once its day and time are reached.
                if whole > 0 && add_months(x, whole).is_some_and(|end| end > y) {
                    whole -= 1;
                } else if whole < 0 && add_months(x, whole).is_some_and(|end| end < y) {
                    whole += 1;
                }
                whole / unit.months()
            }
        };
        out.append_value(i32::try_from(diff).map_err(|_| overflow("TIMESTAMPDIFF"))?);
    }
    Ok(Arc::new(out.finish()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn format(pattern: &str, ms: i64) -> String {
        let mut s = String::new();
        DatePattern::parse(pattern)
            .unwrap()
            .write(ms, &mut s)
            .unwrap();
        s
    }

    #[test]
    fn formats_java_patterns() {
        // 2024-03-05 14:07:09.042 UTC, a Tuesday.
        let ms = days_from_civil(2024, 3, 5) * 86_400_000 + 14 * 3_600_000 + 7 * 60_000 + 9_042;
        assert_eq!(
            format("yyyy-MM-dd HH:mm:ss.SSS", ms),
            "2024-03-05 14:07:09.042"
        );
        assert_eq!(format("yy/M/d h a", ms), "24/3/5 2 PM");
        assert_eq!(
            format("EEE, MMM d ''yy 'at' HH", ms),
            "Tue, Mar 5 '24 at 14"
        );
        assert_eq!(format("D", ms), "65");
        assert!(DatePattern::parse("yyyy-QQ").is_err());
        assert!(DatePattern::parse("'open").is_err());
        // Before the epoch.
        assert_eq!(format("yyyy-MM-dd HH:mm", -60_000), "1969-12-31 23:59");
    }

    #[test]
    fn parses_timestamps() {
        let p = DatePattern::parse("yyyy-MM-dd HH:mm:ss.SSS").unwrap();
        let day = days_from_civil(2024, 3, 5) * 86_400_000;
        assert_eq!(
            p.parse_millis("2024-03-05 14:07:09.042"),
            Some(day + 14 * 3_600_000 + 7 * 60_000 + 9_042)
        );
        assert_eq!(p.parse_millis("2024-03-05 24:00:00.000"), None);
        let p = DatePattern::parse("dd/MM/yy hh:mm a").unwrap();
        assert_eq!(
            p.parse_millis("05/03/24 02:07 PM"),
            Some(day + 14 * 3_600_000 + 7 * 60_000)
        );
    }

    #[test]
    fn parses_dates() {
        let p = DatePattern::parse("yyyyMMdd").unwrap();
        assert_eq!(
            p.parse_date("20240229"),
            Some(days_from_civil(2024, 2, 29) as i32)
        );
        assert_eq!(p.parse_date("20230229"), None);
        let p = DatePattern::parse("dd/MM/yyyy").unwrap();
        assert_eq!(
            p.parse_date("5/1/2024"),
            Some(days_from_civil(2024, 1, 5) as i32)
        );
        assert_eq!(p.parse_date("5/1/2024x"), None);
    }

    #[test]
    fn month_arithmetic_clamps_days() {
        let jan31 = days_from_civil(2024, 1, 31) * 86_400_000;
        assert_eq!(
            add_months(jan31, 1),
            Some(days_from_civil(2024, 2, 29) * 86_400_000)
        );
        assert_eq!(
            add_months(jan31, -2),
            Some(days_from_civil(2023, 11, 30) * 86_400_000)
        );
    }
}
