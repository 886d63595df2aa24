//! Window aggregation on the DataStream API: `key_by(..).window(kind, time)` (or
//! `window_all` for one global window per time window) then `.aggregate(calls)`.
//!
//! ```
//! use sluice_engine::api::StreamEnvironment;
//! use sluice_engine::graph::{AggregateCall, AggregateFunction, WindowKind, WindowTime};
//! # use std::sync::Arc;
//! # use arrow::array::{Int64Array, RecordBatch, TimestampMillisecondArray};
//! # use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
//! # let schema = Arc::new(Schema::new(vec![
//! #     Field::new("k", DataType::Int64, false),
//! #     Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), false),
//! # ]));
//! # let batch = RecordBatch::try_new(schema.clone(), vec![
//! #     Arc::new(Int64Array::from(vec![1, 2, 1])),
//! #     Arc::new(TimestampMillisecondArray::from(vec![1_000, 2_000, 12_000])),
//! # ]).unwrap();
//! let env = StreamEnvironment::new("windows");
//! env.from_batches("events", schema, vec![batch])?
//!     .key_by(["k"])
//!     .window(WindowKind::tumbling(10_000), WindowTime::EventTime { column: "ts".into() })
//!     .aggregate(vec![AggregateCall {
//!         function: AggregateFunction::Count,
//!         input: None,
//!         output: "n".into(),
//!     }])?
//!     .collect("out")?;
//! let result = env.execute_local()?;
//! assert_eq!(result.collected.batches("out").iter().map(|b| b.num_rows()).sum::<usize>(), 3);
//! # Ok::<(), sluice_engine::Error>(())
//! ```

use super::{DataStream, KeyedStream};
use crate::graph::{
    AggregateCall, OperatorSpec, Partitioning, WindowAggregateSpec, WindowKind, WindowTime,
};
use crate::{Error, Result};

/// A keyed (or global) stream cut into time windows, waiting for its aggregates.
#[derive(Clone)]
pub struct WindowedStream {
    stream: DataStream,
    /// Empty for `window_all`.
    keys: Vec<String>,
    window: WindowKind,
    time: WindowTime,
    allowed_lateness_ms: i64,
}

impl KeyedStream {
    /// Windows per key (Flink's `keyBy(..).window(..)` / window TVF with `GROUP BY` keys).
    pub fn window(&self, window: WindowKind, time: WindowTime) -> WindowedStream {
        WindowedStream {
            stream: self.stream.clone(),
            keys: self.keys.clone(),
            window,
            time,
            allowed_lateness_ms: 0,
        }
    }
}

impl DataStream {
    /// One window per time window over the whole stream (Flink's `windowAll`); the
    /// aggregation runs in a single subtask.
    pub fn window_all(&self, window: WindowKind, time: WindowTime) -> WindowedStream {
        WindowedStream {
            stream: self.clone(),
            keys: Vec::new(),
            window,
            time,
            allowed_lateness_ms: 0,
        }
    }
}

impl WindowedStream {
    /// How long after a window fired late records still update it (event time only); each
    /// update fires the window again for that key with the full result. Default 0.
    pub fn allowed_lateness(mut self, ms: i64) -> Self {
        self.allowed_lateness_ms = ms;
        self
    }

    /// Aggregates every window. Output: keys, `window_start`, `window_end`, then one column
    /// per aggregate.
    pub fn aggregate(&self, aggregates: Vec<AggregateCall>) -> Result<DataStream> {
        let spec = WindowAggregateSpec {
            keys: self.keys.clone(),
            time: self.time.clone(),
            window: self.window.clone(),
            aggregates,
            allowed_lateness_ms: self.allowed_lateness_ms,
        };
        let operator = OperatorSpec::WindowAggregate(spec);
        let schema = self.stream.derive("WindowAggregate", &operator)?;
        let env = &self.stream.env;
        let (parallelism, partitioning) = if self.keys.is_empty() {
            (1, Partitioning::Rebalance)
        } else {
            (
                env.parallelism,
                Partitioning::Hash {
                    keys: self.keys.clone(),
                },
            )
        };
        let id = env
            .add_vertex(
                "WindowAggregate",
                operator,
                schema,
                parallelism,
                &[(self.stream.vertex, 0, Some(partitioning))],
            )
            .map_err(|e| match e {
                Error::Expression { message } => Error::plan("WindowAggregate", message),
                other => other,
            })?;
        Ok(env.stream(id))
    }
}
