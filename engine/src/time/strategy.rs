//! Watermark generation at the source: the bounded-out-of-orderness strategy.
//!
//! After every batch the source task takes the batch's maximum event time (one arrow `max`
//! kernel over the timestamp column) and emits `max_seen - out_of_orderness - 1` when that
//! advances the watermark, exactly as Flink's `BoundedOutOfOrdernessWatermarks`. Event times
//! are read in milliseconds from a TIMESTAMP column of any unit or from a BIGINT column of
//! epoch milliseconds.

use std::time::Duration;

use arrow::array::{Array, AsArray};
use arrow::compute::max;
use arrow::datatypes::*;
use arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};

use crate::element::Watermark;
use crate::{Error, Result};

/// How a source derives watermarks from an event-time column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatermarkStrategy {
    /// The event-time column: TIMESTAMP of any unit, or BIGINT epoch milliseconds.
    pub column: String,
    /// How far behind the largest event time seen the watermark stays, in milliseconds.
    pub max_out_of_orderness_ms: i64,
}

impl WatermarkStrategy {
    pub fn bounded_out_of_orderness(column: impl Into<String>, delay: Duration) -> Self {
        WatermarkStrategy {
            column: column.into(),
            max_out_of_orderness_ms: delay.as_millis() as i64,
        }
    }

    /// Checks the column exists and has an event-time type.
    pub fn validate(&self, schema: &Schema) -> Result<()> {
        let field = schema.field_with_name(&self.column).map_err(|_| {
            Error::expr(format!(
                "watermark column '{}' does not exist (available: {})",
                self.column,
                crate::graph::describe_columns(schema)
            ))
        })?;
        match field.data_type() {
            DataType::Timestamp(_, _) | DataType::Int64 => Ok(()),
            other => Err(Error::expr(format!(
                "watermark column '{}' must be TIMESTAMP or BIGINT milliseconds, found {other}",
                self.column
            ))),
        }
    }
}

/// The watermark generator of one source subtask.
#[derive(Debug, Clone)]
pub struct WatermarkGenerator {
    strategy: WatermarkStrategy,
    max_seen: Option<i64>,
    emitted: Watermark,
}

impl WatermarkGenerator {
    pub fn new(strategy: WatermarkStrategy) -> Self {
        WatermarkGenerator {
            strategy,
            max_seen: None,
            emitted: Watermark::MIN,
        }
    }

    /// Observes a batch; returns a watermark to emit after it, if the watermark advanced.
    pub fn on_batch(&mut self, batch: &RecordBatch) -> Result<Option<Watermark>> {
        let column = batch.column_by_name(&self.strategy.column).ok_or_else(|| {
            Error::Internal(format!(
                "watermark column '{}' missing from a batch",
                self.strategy.column
            ))
        })?;
        let Some(batch_max) = max_millis(column.as_ref()) else {
            return Ok(None);
        };
        let max_seen = self.max_seen.map_or(batch_max, |m| m.max(batch_max));
        self.max_seen = Some(max_seen);
        let candidate = Watermark(
            max_seen
                .saturating_sub(self.strategy.max_out_of_orderness_ms)
                .saturating_sub(1),
        );
        if candidate > self.emitted {
            self.emitted = candidate;
            Ok(Some(candidate))
        } else {
            Ok(None)
        }
    }

    /// The last watermark emitted.
    pub fn current(&self) -> Watermark {
        self.emitted
    }
}

/// The watermarks of one source subtask: a generator per split (the reader's current one),
/// combined so that the subtask's watermark never goes backwards when a new split starts.
#[derive(Debug, Clone)]
pub struct SourceWatermarks {
    strategy: WatermarkStrategy,
    split: usize,
    generator: WatermarkGenerator,
    emitted: Watermark,
}

impl SourceWatermarks {
    pub fn new(strategy: WatermarkStrategy) -> Self {
        SourceWatermarks {
            generator: WatermarkGenerator::new(strategy.clone()),
            strategy,
            split: 0,
            emitted: Watermark::MIN,
        }
    }

    /// Observes a batch of `split`; returns a watermark to emit after it, if one advanced.
    pub fn on_batch(&mut self, split: usize, batch: &RecordBatch) -> Result<Option<Watermark>> {
        if split != self.split {
            // The reader moved on: the previous split is finished and no longer holds back.
            self.split = split;
            self.generator = WatermarkGenerator::new(self.strategy.clone());
        }
        match self.generator.on_batch(batch)? {
            Some(watermark) if watermark > self.emitted => {
                self.emitted = watermark;
                Ok(Some(watermark))
            }
            _ => Ok(None),
        }
    }
}

/// The largest non-null event time of `array` in epoch milliseconds.
pub fn max_millis(array: &dyn Array) -> Option<i64> {
    match array.data_type() {
        DataType::Timestamp(TimeUnit::Second, _) => {
            max(array.as_primitive::<TimestampSecondType>()).map(|v| v.saturating_mul(1000))
        }
        DataType::Timestamp(TimeUnit::Millisecond, _) => {
            max(array.as_primitive::<TimestampMillisecondType>())
        }
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            max(array.as_primitive::<TimestampMicrosecondType>()).map(|v| v.div_euclid(1000))
        }
        DataType::Timestamp(TimeUnit::Nanosecond, _) => {
            max(array.as_primitive::<TimestampNanosecondType>()).map(|v| v.div_euclid(1_000_000))
        }
        DataType::Int64 => max(array.as_primitive::<Int64Type>()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::TimestampMillisecondArray;

    use super::*;

    fn batch(times: &[i64]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            false,
        )]));
        RecordBatch::try_new(
            schema,
            vec![Arc::new(TimestampMillisecondArray::from(times.to_vec()))],
        )
        .unwrap()
    }

    #[test]
    fn follows_the_maximum_minus_the_bound_and_never_goes_back() {
        let mut generator = WatermarkGenerator::new(WatermarkStrategy::bounded_out_of_orderness(
            "ts",
            Duration::from_secs(4),
        ));
        assert_eq!(
            generator
                .on_batch(&batch(&[10_000, 12_000, 11_000]))
                .unwrap(),
            Some(Watermark(7_999))
        );
        assert_eq!(generator.on_batch(&batch(&[9_000])).unwrap(), None);
        assert_eq!(
            generator.on_batch(&batch(&[20_000])).unwrap(),
            Some(Watermark(15_999))
        );
        assert_eq!(generator.current(), Watermark(15_999));
    }
}
