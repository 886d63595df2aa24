//! Top-N and deduplication on the DataStream API: `key_by(partition keys).rank(…)` (see
//! [`RankSpec`]). The partition keys are the `key_by` keys; the stream is hash-partitioned on
//! them.
//!
//! ```
//! use sluice_engine::api::StreamEnvironment;
//! use sluice_engine::graph::{RankOrder, RankStrategy};
//! # use std::sync::Arc;
//! # use arrow::array::{Int64Array, RecordBatch};
//! # use arrow::datatypes::{DataType, Field, Schema};
//! # let schema = Arc::new(Schema::new(vec![
//! #     Field::new("k", DataType::Int64, false),
//! #     Field::new("v", DataType::Int64, false),
//! # ]));
//! # let batch = RecordBatch::try_new(schema.clone(), vec![
//! #     Arc::new(Int64Array::from(vec![1, 1, 1, 2])),
//! #     Arc::new(Int64Array::from(vec![5, 9, 7, 1])),
//! # ]).unwrap();
//! let env = StreamEnvironment::new("top2");
//! env.from_batches("events", schema, vec![batch])?
//!     .key_by(["k"])
//!     .rank(vec![RankOrder::desc("v")], 2, Some("rn"), RankStrategy::Final, None)?
//!     .collect("out")?;
//! let result = env.execute_local()?;
//! assert_eq!(result.collected.batches("out").iter().map(|b| b.num_rows()).sum::<usize>(), 3);
//! # Ok::<(), sluice_engine::Error>(())
//! ```

use super::{DataStream, KeyedStream};
use crate::Result;
use crate::graph::{OperatorSpec, Partitioning, RankOrder, RankSpec, RankStrategy, RankWindow};

impl KeyedStream {
    /// Keeps the first `limit` rows per key in `order` (see [`RankStrategy`] for what is
    /// emitted when); `rank_column` names the emitted row number, `window` makes it a window
    /// rank.
    pub fn rank(
        &self,
        order: Vec<RankOrder>,
        limit: u64,
        rank_column: Option<&str>,
        strategy: RankStrategy,
        window: Option<RankWindow>,
    ) -> Result<DataStream> {
        let spec = RankSpec {
            partition_keys: self.keys.clone(),
            order_by: order,
            limit,
            rank_column: rank_column.map(str::to_string),
            strategy,
            window,
        };
        let operator = OperatorSpec::Rank(spec);
        let schema = self.stream.derive("Rank", &operator)?;
        let env = &self.stream.env;
        let id = env.add_vertex(
            "Rank",
            operator,
            schema,
            env.parallelism,
            &[(
                self.stream.vertex,
                0,
                Some(Partitioning::Hash {
                    keys: self.keys.clone(),
                }),
            )],
        )?;
        Ok(env.stream(id))
    }
}
