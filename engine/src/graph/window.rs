//! The description of a window aggregation ([`WindowAggregateSpec`]): which windows, on which
//! time, which aggregates, and how long a fired window still accepts late records.
//!
//! The output schema is the keys, `window_start` and `window_end` (`TIMESTAMP(3)`, that is
//! `Timestamp(Millisecond, None)`), then one column per aggregate, as Flink's window TVF
//! aggregation. The operator lives in `operator::window`.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use serde::{Deserialize, Serialize};

use super::spec::{AggregateCall, lookup};
use crate::{Error, Result};

/// The name of the window start column of a window aggregation's output.
pub const WINDOW_START_COLUMN: &str = "window_start";
/// The name of the window end column (exclusive) of a window aggregation's output.
pub const WINDOW_END_COLUMN: &str = "window_end";

/// Which clock assigns records to windows and fires them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WindowTime {
    /// The record's time in `column` (TIMESTAMP of any unit, or BIGINT epoch milliseconds);
    /// windows fire when the watermark passes their end.
    EventTime { column: String },
    /// The wall clock when the record arrives at the operator; windows fire by the wall clock
    /// and, for bounded input, all at end of input.
    ProcessingTime,
}

/// The shape of the windows. Sizes in milliseconds; `offset_ms` shifts the window alignment
/// (windows start at `offset + k * size` rather than `k * size`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WindowKind {
    /// Fixed-size, non-overlapping windows.
    Tumbling {
        size_ms: i64,
        #[serde(default)]
        offset_ms: i64,
    },
    /// Fixed-size windows starting every `slide_ms` (Flink's HOP / sliding windows).
    Hopping {
        size_ms: i64,
        slide_ms: i64,
        #[serde(default)]
        offset_ms: i64,
    },
    /// Windows that start every `max_size_ms` and grow by `step_ms` up to `max_size_ms`
    /// (Flink's CUMULATE). `max_size_ms` must be a multiple of `step_ms`.
    Cumulating {
        max_size_ms: i64,
        step_ms: i64,
        #[serde(default)]
        offset_ms: i64,
    },
    /// Per key, records closer than `gap_ms` (inclusive) share a window that ends `gap_ms`
    /// after its last record.
    Session { gap_ms: i64 },
}

impl WindowKind {
    /// Tumbling windows of `size_ms`.
    pub fn tumbling(size_ms: i64) -> Self {
        WindowKind::Tumbling {
            size_ms,
            offset_ms: 0,
        }
    }

    /// Hopping windows of `size_ms` every `slide_ms`.
    pub fn hopping(size_ms: i64, slide_ms: i64) -> Self {
        WindowKind::Hopping {
            size_ms,
            slide_ms,
            offset_ms: 0,
        }
    }

    /// Cumulating windows growing by `step_ms` up to `max_size_ms`.
    pub fn cumulating(max_size_ms: i64, step_ms: i64) -> Self {
        WindowKind::Cumulating {
            max_size_ms,
            step_ms,
            offset_ms: 0,
        }
    }

    /// Session windows closing after `gap_ms` without records.
    pub fn session(gap_ms: i64) -> Self {
        WindowKind::Session { gap_ms }
    }

    /// Checks sizes are positive and fit together.
    pub fn validate(&self) -> Result<()> {
        let positive = |name: &str, value: i64| {
            if value > 0 {
                Ok(())
            } else {
                Err(Error::expr(format!(
                    "window {name} must be positive, found {value} ms"
                )))
            }
        };
        match *self {
            WindowKind::Tumbling { size_ms, .. } => positive("size", size_ms),
            WindowKind::Hopping {
                size_ms, slide_ms, ..
            } => {
                positive("size", size_ms)?;
                positive("slide", slide_ms)
            }
            WindowKind::Cumulating {
                max_size_ms,
                step_ms,
                ..
            } => {
                positive("max size", max_size_ms)?;
                positive("step", step_ms)?;
                if max_size_ms % step_ms != 0 {
                    return Err(Error::expr(format!(
                        "cumulating window max size {max_size_ms} ms is not a multiple of its step {step_ms} ms"
                    )));
                }
                Ok(())
            }
            WindowKind::Session { gap_ms } => positive("gap", gap_ms),
        }
    }
}

/// The configuration of a window aggregation; the input must be hash-partitioned on `keys`
/// (or gathered into one subtask when `keys` is empty: a global window).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowAggregateSpec {
    /// Grouping columns; they come first in the output, in this order. Empty: one group.
    pub keys: Vec<String>,
    pub time: WindowTime,
    pub window: WindowKind,
    pub aggregates: Vec<AggregateCall>,
    /// How long after a window fired a late record still updates it (and the window fires
    /// again with the full updated result), in milliseconds. Event time only. Default 0.
    #[serde(default)]
    pub allowed_lateness_ms: i64,
}

/// The type of `window_start` and `window_end`: TIMESTAMP(3).
pub fn window_bound_type() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, None)
}

impl WindowAggregateSpec {
    pub fn output_schema(&self, input: &Schema) -> Result<SchemaRef> {
        self.window.validate()?;
        if self.allowed_lateness_ms < 0 {
            return Err(Error::expr(format!(
                "allowed lateness must not be negative, found {} ms",
                self.allowed_lateness_ms
            )));
        }
        if let WindowTime::EventTime { column } = &self.time {
            match lookup(input, column)?.data_type() {
                DataType::Timestamp(_, _) | DataType::Int64 => {}
                other => {
                    return Err(Error::expr(format!(
                        "window time column '{column}' must be TIMESTAMP or BIGINT milliseconds, found {other}"
                    )));
                }
            }
        }
        let mut fields = Vec::with_capacity(self.keys.len() + self.aggregates.len() + 2);
        for key in &self.keys {
            fields.push(lookup(input, key)?.clone());
        }
        fields.push(Field::new(WINDOW_START_COLUMN, window_bound_type(), false));
        fields.push(Field::new(WINDOW_END_COLUMN, window_bound_type(), false));
        for call in &self.aggregates {
            let input_type = match &call.input {
                Some(column) => Some(lookup(input, column)?.data_type()),
                None => None,
            };
            let result = call.function.result_type(input_type).map_err(|e| match e {
                Error::Expression { message } => Error::expr(format!(
                    "aggregate '{}' on column '{}': {message}",
                    call.output,
                    call.input.as_deref().unwrap_or("*")
                )),
                other => other,
            })?;
            fields.push(Field::new(
                &call.output,
                result,
                call.function.is_nullable(),
            ));
        }
        Ok(Arc::new(Schema::new(fields)))
    }
}
