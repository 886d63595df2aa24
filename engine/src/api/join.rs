//! Two-input streams in the DataStream API: joins and connected streams (co-process).
//!
//! ```
//! use sluice_engine::api::StreamEnvironment;
//! use sluice_engine::graph::JoinType;
//! # use std::sync::Arc;
//! # use arrow::array::{Int64Array, RecordBatch};
//! # use arrow::datatypes::{DataType, Field, Schema};
//! # let schema = Arc::new(Schema::new(vec![Field::new("k", DataType::Int64, false)]));
//! # let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(vec![1, 2]))]).unwrap();
//! let env = StreamEnvironment::new("join").with_parallelism(2);
//! let left = env.from_batches("left", schema.clone(), vec![batch.clone()])?;
//! let right = env.from_batches("right", schema, vec![batch])?;
//! // Output columns: _row_kind, k, k_right.
//! left.join(&right, ["k"], ["k"]).regular(JoinType::Inner)?.collect("out")?;
//! let rows: usize = env.execute_local()?.collected.batches("out").iter().map(|b| b.num_rows()).sum();
//! assert_eq!(rows, 2);
//! # Ok::<(), sluice_engine::Error>(())
//! ```
//!
//! Both inputs are hash-partitioned on their keys, so the join runs at the environment's
//! parallelism with each key on one subtask. Column naming and the changelog of regular joins
//! are described in [`crate::graph::JoinSpec`]'s module.

use arrow::datatypes::SchemaRef;

use super::DataStream;
use crate::expr::Expr;
use crate::graph::{JoinKind, JoinSpec, JoinType, OperatorSpec, Partitioning, SubqueryJoinType};
use crate::operator::OperatorFactory;
use crate::{Error, Result};

use std::sync::Arc;

/// A join of two streams on equal keys, waiting for its kind
/// ([`DataStream::join`]).
#[must_use = "a join builder does nothing until a join kind is chosen"]
pub struct JoinBuilder {
    left: DataStream,
    right: DataStream,
    left_keys: Vec<String>,
    right_keys: Vec<String>,
}

/// Two streams feeding one user operator as inputs 0 and 1 ([`DataStream::connect`]).
#[must_use = "connected streams do nothing until `process` is called"]
pub struct ConnectedStreams {
    left: DataStream,
    right: DataStream,
    left_keys: Vec<String>,
    right_keys: Vec<String>,
}

impl DataStream {
    /// Joins this stream (left, input 0) with `other` (right, input 1) where `left_keys`
    /// equal `right_keys` pairwise; choose the kind on the returned builder.
    pub fn join<L, R>(
        &self,
        other: &DataStream,
        left_keys: impl IntoIterator<Item = L>,
        right_keys: impl IntoIterator<Item = R>,
    ) -> JoinBuilder
    where
        L: Into<String>,
        R: Into<String>,
    {
        JoinBuilder {
            left: self.clone(),
            right: other.clone(),
            left_keys: left_keys.into_iter().map(Into::into).collect(),
            right_keys: right_keys.into_iter().map(Into::into).collect(),
        }
    }

    /// Connects this stream (input 0) with `other` (input 1) for a two-input user operator
    /// (Flink's `connect` + `CoProcessFunction`). With keys, each side is hash-partitioned on
    /// its keys (so equal keys meet on one subtask); with no keys, edges are forward at equal
    /// parallelism and rebalance otherwise.
    pub fn connect<L, R>(
        &self,
        other: &DataStream,
        left_keys: impl IntoIterator<Item = L>,
        right_keys: impl IntoIterator<Item = R>,
    ) -> ConnectedStreams
    where
        L: Into<String>,
        R: Into<String>,
    {
        ConnectedStreams {
            left: self.clone(),
            right: other.clone(),
            left_keys: left_keys.into_iter().map(Into::into).collect(),
            right_keys: right_keys.into_iter().map(Into::into).collect(),
        }
    }
}

impl JoinBuilder {
    /// An interval join (inner): `left_time BETWEEN right_time + lower_ms AND right_time +
    /// upper_ms`. Both inputs need watermarks for state to be cleaned up.
    pub fn interval(
        self,
        left_time: &str,
        right_time: &str,
        lower_ms: i64,
        upper_ms: i64,
    ) -> Result<DataStream> {
        self.build(JoinKind::Interval {
            left_time: left_time.to_string(),
            right_time: right_time.to_string(),
            lower_ms,
            upper_ms,
        })
    }

    /// A tumbling window join (inner) with windows of `size_ms`; results come when the
    /// watermark passes a window's end.
    pub fn tumbling_window(
        self,
        left_time: &str,
        right_time: &str,
        size_ms: i64,
    ) -> Result<DataStream> {
        self.build(JoinKind::Window {
            left_time: left_time.to_string(),
            right_time: right_time.to_string(),
            size_ms,
        })
    }

    /// A regular join emitting a changelog (`_row_kind` first).
    pub fn regular(self, join_type: JoinType) -> Result<DataStream> {
        self.build(JoinKind::Regular { join_type })
    }

    /// The batch hash join: final rows (no `_row_kind`) after both inputs end, spilling
    /// beyond its managed memory. Bounded inputs only.
    pub fn hash(self, join_type: JoinType) -> Result<DataStream> {
        self.build(JoinKind::Hash { join_type })
    }

    /// A join a decorrelated subquery becomes (semi, anti, null-aware anti, single), with an
    /// optional residual predicate over (left, right) pairs; `subquery` names it in errors.
    /// Emits at end of input: batch mode only.
    pub fn subquery(
        self,
        join_type: SubqueryJoinType,
        residual: Option<Expr>,
        subquery: &str,
    ) -> Result<DataStream> {
        self.build(JoinKind::Subquery {
            join_type,
            residual,
            subquery: subquery.to_string(),
        })
    }

    fn build(self, kind: JoinKind) -> Result<DataStream> {
        let spec = JoinSpec {
            left_keys: self.left_keys,
            right_keys: self.right_keys,
            kind,
        };
        let name = spec.kind_name();
        let schema = spec
            .output_schema(&self.left.schema(), &self.right.schema())
            .map_err(|e| match e {
                Error::Expression { message } => Error::plan(name, message),
                other => other,
            })?;
        let env = &self.left.env;
        // A small side goes whole to every subtask; the other stays where it is (forward, or
        // rebalanced between unequal parallelisms). Otherwise both are hash-partitioned.
        let (left, right) = match broadcast_side(&spec.kind, &self.left, &self.right, env) {
            Some(0) => (Some(Partitioning::Broadcast), None),
            Some(_) => (None, Some(Partitioning::Broadcast)),
            None => (
                Some(Partitioning::hash(spec.left_keys.clone())),
                Some(Partitioning::hash(spec.right_keys.clone())),
            ),
        };
        let inputs = [(self.left.vertex, 0, left), (self.right.vertex, 1, right)];
        let read_first = batch_read_first(&spec.kind, &self.left, &self.right);
        let id = env.add_vertex(
            name,
            OperatorSpec::Join(spec),
            schema,
            env.parallelism,
            &inputs,
        )?;
        env.builder.borrow_mut().vertices[id.0 as usize].read_first = read_first;
        Ok(env.stream(id))
    }
}

/// Largest estimated row count of a join input sent whole to every subtask (a broadcast join).
/// Copies of it cost little next to hash-partitioning the other side: TPC-H Q5's line items
/// crossed the exchange three times at parallelism 2, each time to join a few thousand rows.
pub(crate) const BROADCAST_ROWS: f64 = 100_000.0;

/// The input of a batch join to broadcast: one estimated at most [`BROADCAST_ROWS`] rows and
/// smaller than the other, where copies of it give each of its rows to one subtask's answer
/// only. That is any side of an inner join, the side an outer join does not preserve, and the
/// right side of a subquery join (semi, anti and scalar joins keep or fill left rows). `None`
/// at parallelism 1, for other joins, and when a size is unknown.
fn broadcast_side(
    kind: &JoinKind,
    left: &DataStream,
    right: &DataStream,
    env: &super::StreamEnvironment,
) -> Option<u32> {
    if env.parallelism <= 1 {
        return None;
    }
    let (may_left, may_right) = match kind {
        JoinKind::Hash { join_type } => match join_type {
            JoinType::Inner => (true, true),
            JoinType::Left => (false, true),
            JoinType::Right => (true, false),
            JoinType::Full => (false, false),
        },
        JoinKind::Subquery { .. } => (false, true),
        _ => (false, false),
    };
    if !may_left && !may_right {
        return None;
    }
    let left = left.estimated_rows()?.rows;
    let right = right.estimated_rows()?.rows;
    if may_right && right <= BROADCAST_ROWS && (right <= left || !may_left) {
        Some(1)
    } else if may_left && left <= BROADCAST_ROWS && left < right {
        Some(0)
    } else {
        None
    }
}

/// Which input a batch join reads first: a scalar subquery join its right side (it always
/// builds that side), the others the side estimated smaller (`None` when a size is unknown).
fn batch_read_first(kind: &JoinKind, left: &DataStream, right: &DataStream) -> Option<u32> {
    match kind {
        JoinKind::Subquery {
            join_type: SubqueryJoinType::Single,
            ..
        } => Some(1),
        JoinKind::Hash { .. } | JoinKind::Subquery { .. } => {
            let left = left.estimated_rows()?;
            let right = right.estimated_rows()?;
            Some(if right.rows < left.rows { 1 } else { 0 })
        }
        _ => None,
    }
}

impl ConnectedStreams {
    /// Adds the two-input user operator `factory` creates (one instance per subtask);
    /// `process_batch` receives input 0 or 1. `schema` is what it emits. Registered under
    /// its vertex name, as [`DataStream::transform`] does.
    pub fn process(
        self,
        name: &str,
        schema: SchemaRef,
        factory: Arc<dyn OperatorFactory>,
    ) -> Result<DataStream> {
        if self.left_keys.len() != self.right_keys.len() {
            return Err(Error::plan(
                name,
                format!(
                    "connect needs as many left keys ({}) as right keys ({})",
                    self.left_keys.join(", "),
                    self.right_keys.join(", ")
                ),
            ));
        }
        let partitioning = |keys: Vec<String>| (!keys.is_empty()).then(|| Partitioning::hash(keys));
        let inputs = [
            (self.left.vertex, 0, partitioning(self.left_keys)),
            (self.right.vertex, 1, partitioning(self.right_keys)),
        ];
        let env = &self.left.env;
        let id = env.add_vertex(
            name,
            OperatorSpec::Custom {
                name: String::new(),
            },
            schema,
            env.parallelism,
            &inputs,
        )?;
        let mut builder = env.builder.borrow_mut();
        let vertex = &mut builder.vertices[id.0 as usize];
        let vertex_name = vertex.name.clone();
        vertex.operator = OperatorSpec::Custom {
            name: vertex_name.clone(),
        };
        builder.registry.register(vertex_name, factory);
        drop(builder);
        Ok(env.stream(id))
    }
}
