//! Date and timestamp kernels: EXTRACT (on top of Arrow's `date_part`), FLOOR(ts TO unit) and
//! TO_TIMESTAMP_LTZ. Timestamps are read in UTC; calendar arithmetic uses the proleptic
//! Gregorian day-number conversions below.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, Int64Array, PrimitiveArray, TimestampMillisecondArray,
};
use arrow::compute::DatePart;
use arrow::compute::kernels::{cast, temporal};
use arrow::datatypes::{
    ArrowPrimitiveType, DataType, Date32Type, Int64Type, TimeUnit, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType,
};
use arrow::error::ArrowError;

use crate::expr::function::{DateField, TimeUnitField};

/// Whether EXTRACT / FLOOR accept `t`.
pub(crate) fn date_field_supported(t: &DataType) -> bool {
    matches!(t, DataType::Date32 | DataType::Timestamp(_, _))
}

pub(super) fn ticks_per_second(unit: TimeUnit) -> i64 {
    match unit {
        TimeUnit::Second => 1,
        TimeUnit::Millisecond => 1_000,
        TimeUnit::Microsecond => 1_000_000,
        TimeUnit::Nanosecond => 1_000_000_000,
    }
}

/// `EXTRACT(field FROM a)` as Int64.
pub(super) fn extract(a: &ArrayRef, field: DateField) -> Result<ArrayRef, ArrowError> {
    let part = match field {
        DateField::Year => DatePart::Year,
        DateField::Quarter => DatePart::Quarter,
        DateField::Month => DatePart::Month,
        DateField::Week => DatePart::Week,
        DateField::Day => DatePart::Day,
        DateField::DayOfWeek => DatePart::DayOfWeekSunday1,
        DateField::DayOfYear => DatePart::DayOfYear,
        DateField::Hour => DatePart::Hour,
        DateField::Minute => DatePart::Minute,
        DateField::Second => DatePart::Second,
        DateField::Epoch => return epoch(a).map(|e| Arc::new(e) as ArrayRef),
    };
    let parts = temporal::date_part(a, part)?;
    cast::cast(&parts, &DataType::Int64)
}

/// Whole seconds since the epoch, floored.
fn epoch(a: &ArrayRef) -> Result<Int64Array, ArrowError> {
    fn secs<T: ArrowPrimitiveType<Native = i64>>(a: &dyn Array, per_second: i64) -> Int64Array {
        a.as_primitive::<T>()
            .unary(|v: i64| v.div_euclid(per_second))
    }
    Ok(match a.data_type() {
        DataType::Date32 => a
            .as_primitive::<Date32Type>()
            .unary(|d: i32| i64::from(d) * 86_400),
        DataType::Timestamp(unit, _) => {
            let k = ticks_per_second(*unit);
            match unit {
                TimeUnit::Second => secs::<TimestampSecondType>(a, k),
                TimeUnit::Millisecond => secs::<TimestampMillisecondType>(a, k),
                TimeUnit::Microsecond => secs::<TimestampMicrosecondType>(a, k),
                TimeUnit::Nanosecond => secs::<TimestampNanosecondType>(a, k),
            }
        }
        other => {
            return Err(ArrowError::InvalidArgumentError(format!(
                "EXTRACT(EPOCH) is not defined for {other}"
            )));
        }
    })
}

/// Days since 1970-01-01 of the civil date `(y, m, d)`.
pub(super) fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date `(y, m, d)` of a day number.
pub(super) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Floors a day number to the start of `unit` (units of a day or less leave it unchanged).
fn floor_days(days: i64, unit: TimeUnitField) -> i64 {
    match unit {
        TimeUnitField::Second
        | TimeUnitField::Minute
        | TimeUnitField::Hour
        | TimeUnitField::Day => days,
        // 1970-01-01 was a Thursday: (days + 3) mod 7 is 0 on Mondays.
        TimeUnitField::Week => days - (days + 3).rem_euclid(7),
        TimeUnitField::Month | TimeUnitField::Quarter | TimeUnitField::Year => {
            let (y, m, _) = civil_from_days(days);
            let m = match unit {
                TimeUnitField::Month => m,
                TimeUnitField::Quarter => (m - 1) / 3 * 3 + 1,
                _ => 1,
            };
            days_from_civil(y, m, 1)
        }
    }
}

fn overflow() -> ArrowError {
    ArrowError::ArithmeticOverflow("timestamp out of range after FLOOR".into())
}

/// Floors ticks of `per_second` per second to `unit`.
fn floor_ticks(v: i64, per_second: i64, unit: TimeUnitField) -> Result<i64, ArrowError> {
    let step = match unit {
        TimeUnitField::Second => per_second,
        TimeUnitField::Minute => per_second * 60,
        TimeUnitField::Hour => per_second * 3_600,
        TimeUnitField::Day => per_second * 86_400,
        TimeUnitField::Week
        | TimeUnitField::Month
        | TimeUnitField::Quarter
        | TimeUnitField::Year => {
            let per_day = per_second * 86_400;
            return floor_days(v.div_euclid(per_day), unit)
                .checked_mul(per_day)
                .ok_or_else(overflow);
        }
    };
    Ok(v - v.rem_euclid(step))
}

fn floor_ts<T: ArrowPrimitiveType<Native = i64>>(
    a: &dyn Array,
    unit: TimeUnitField,
    per_second: i64,
) -> Result<ArrayRef, ArrowError> {
    let a = a.as_primitive::<T>();
    let out: PrimitiveArray<T> = a.try_unary(|v| floor_ticks(v, per_second, unit))?;
    // `try_unary` builds the default type; keep the input's time zone.
    Ok(Arc::new(out.with_data_type(a.data_type().clone())))
}

/// `FLOOR(a TO unit)`, keeping the type of `a`.
pub(super) fn floor_time(a: &ArrayRef, unit: TimeUnitField) -> Result<ArrayRef, ArrowError> {
    match a.data_type() {
        DataType::Date32 => Ok(Arc::new(
            a.as_primitive::<Date32Type>()
                .try_unary::<_, Date32Type, _>(|d| {
                    i32::try_from(floor_days(i64::from(d), unit)).map_err(|_| overflow())
                })?,
        )),
        DataType::Timestamp(tu, _) => {
            let k = ticks_per_second(*tu);
            match tu {
                TimeUnit::Second => floor_ts::<TimestampSecondType>(a, unit, k),
                TimeUnit::Millisecond => floor_ts::<TimestampMillisecondType>(a, unit, k),
                TimeUnit::Microsecond => floor_ts::<TimestampMicrosecondType>(a, unit, k),
                TimeUnit::Nanosecond => floor_ts::<TimestampNanosecondType>(a, unit, k),
            }
        }
        other => Err(ArrowError::InvalidArgumentError(format!(
            "FLOOR(.. TO {unit}) is not defined for {other}"
        ))),
    }
}

/// `TO_TIMESTAMP_LTZ(epoch, precision)`: `epoch * multiplier` milliseconds, in UTC.
pub(super) fn to_timestamp_ltz(
    epoch: &PrimitiveArray<Int64Type>,
    multiplier: i64,
) -> Result<TimestampMillisecondArray, ArrowError> {
    let ms: PrimitiveArray<TimestampMillisecondType> = epoch.try_unary(|v| {
        v.checked_mul(multiplier).ok_or_else(|| {
            ArrowError::ArithmeticOverflow(format!("epoch {v} out of range for TO_TIMESTAMP_LTZ"))
        })
    })?;
    Ok(ms.with_timezone("UTC"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_round_trip() {
        for days in [
            -800_000_i64,
            -1,
            0,
            1,
            59,
            60,
            365,
            11_016,
            19_723,
            2_932_896,
        ] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days, "{y}-{m}-{d}");
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_783), (2024, 3, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }

    #[test]
    fn floors() {
        // 2024-03-15 (Friday) is day 19_797.
        assert_eq!(floor_days(19_797, TimeUnitField::Month), 19_783);
        assert_eq!(floor_days(19_797, TimeUnitField::Week), 19_793);
        assert_eq!(floor_days(19_797, TimeUnitField::Year), 19_723);
        assert_eq!(floor_days(19_797, TimeUnitField::Quarter), 19_723);
        assert_eq!(
            floor_ticks(-1, 1_000, TimeUnitField::Second).unwrap(),
            -1_000
        );
    }
}
