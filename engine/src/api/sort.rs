//! `DataStream::sort` and `DataStream::limit`: ORDER BY / OFFSET / LIMIT as two steps.
//!
//! Each subtask of the input first sorts its share (keeping only its top `offset + fetch`
//! rows when there is a fetch), chained to the input; a single-parallelism sort fed by a
//! rebalance edge then merges the shares, applies the offset and the fetch. The result has
//! parallelism 1, and a sink attached to it keeps parallelism 1 so the order survives.

use super::DataStream;
use crate::graph::{OperatorSpec, Partitioning, SortKey, SortSpec};
use crate::{Error, Result};

impl DataStream {
    /// Sorts by `keys`, skips `offset` rows and keeps `fetch` rows (all when `None`). Without
    /// keys, the first rows in arrival order are kept (a limit). Only the columns in `output`
    /// are emitted (all when `None`). The result runs at parallelism 1.
    pub fn sort(
        &self,
        keys: Vec<SortKey>,
        offset: u64,
        fetch: Option<u64>,
        output: Option<Vec<String>>,
    ) -> Result<DataStream> {
        let input = self.schema();
        let parallelism = self.env.builder.borrow().vertices[self.vertex.0 as usize].parallelism;
        let final_spec = SortSpec {
            keys: keys.clone(),
            offset,
            fetch,
            output,
            event_time: false,
        };
        let schema = final_spec.output_schema(&input).map_err(|e| match e {
            Error::Expression { message } => Error::plan("Sort", message),
            other => other,
        })?;
        let mut upstream = self.vertex;
        let local_useful = parallelism > 1 && (!keys.is_empty() || fetch.is_some());
        if local_useful {
            let local = SortSpec {
                keys,
                offset: 0,
                fetch: final_spec.kept_rows(),
                output: None,
                event_time: false,
            };
            upstream = self.env.add_vertex(
                "LocalSort",
                OperatorSpec::Sort(local),
                input,
                parallelism,
                &[(self.vertex, 0, Some(Partitioning::Forward))],
            )?;
        }
        let id = self.env.add_vertex(
            "Sort",
            OperatorSpec::Sort(final_spec),
            schema,
            1,
            &[(upstream, 0, None)],
        )?;
        Ok(self.env.stream(id))
    }

    /// Sorts an unbounded stream on event time (Flink's temporal sort): `keys` start with an
    /// ascending TIMESTAMP column; rows are emitted, sorted, once the watermark passes them, by
    /// one subtask. Rows behind the watermark are dropped as late.
    pub fn sort_by_event_time(
        &self,
        keys: Vec<SortKey>,
        output: Option<Vec<String>>,
    ) -> Result<DataStream> {
        let spec = SortSpec {
            keys,
            offset: 0,
            fetch: None,
            output,
            event_time: true,
        };
        let schema = spec.output_schema(&self.schema()).map_err(|e| match e {
            Error::Expression { message } => Error::plan("Sort", message),
            other => other,
        })?;
        let id = self.env.add_vertex(
            "Sort",
            OperatorSpec::Sort(spec),
            schema,
            1,
            &[(self.vertex, 0, None)],
        )?;
        Ok(self.env.stream(id))
    }

    /// Whether this stream is the output of a single-parallelism sort: what follows keeps
    /// parallelism 1, or the order would be lost.
    pub(super) fn is_ordered(&self) -> bool {
        let builder = self.env.builder.borrow();
        let vertex = &builder.vertices[self.vertex.0 as usize];
        matches!(vertex.operator, OperatorSpec::Sort(_)) && vertex.parallelism == 1
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{AsArray, Int64Array, RecordBatch};
    use arrow::datatypes::{DataType, Field, Int64Type, Schema};

    use crate::api::StreamEnvironment;
    use crate::graph::SortKey;

    #[test]
    fn parallel_top_k_equals_the_sequential_one() {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
        let batches: Vec<RecordBatch> = (0..8)
            .map(|b| {
                let values: Vec<i64> = (0..50).map(|i| (i * 37 + b * 11) % 101).collect();
                RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(values))])
                    .unwrap()
            })
            .collect();
        let mut all: Vec<i64> = batches
            .iter()
            .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
            .collect();
        all.sort_unstable_by(|a, b| b.cmp(a));
        let want: Vec<i64> = all.into_iter().skip(3).take(10).collect();
        for parallelism in [1, 3] {
            let env = StreamEnvironment::new("sort").with_parallelism(parallelism);
            env.from_batches("numbers", schema.clone(), batches.clone())
                .unwrap()
                .sort(vec![SortKey::new("v", true)], 3, Some(10), None)
                .unwrap()
                .collect("out")
                .unwrap();
            let output = env.execute_local().unwrap();
            let got: Vec<i64> = output
                .collected
                .batches("out")
                .iter()
                .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
                .collect();
            assert_eq!(got, want, "parallelism {parallelism}");
        }
    }
}
