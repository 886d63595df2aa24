//! The description of a rank operator: `ROW_NUMBER() OVER (PARTITION BY … ORDER BY …)` with a
//! filter `rn <= N`, i.e. Flink's Top-N, Deduplication, Window Top-N and Window Deduplication.
//!
//! The input must be hash-partitioned on [`RankSpec::partition_keys`]. The output has the input
//! columns in order, then the row number (`BIGINT`) when [`RankSpec::rank_column`] is set; a
//! streaming, non-windowed rank puts a leading `_row_kind` column in front (a changelog).

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use serde::{Deserialize, Serialize};

use super::spec::lookup;
use super::{
    Edge, OperatorSpec, Partitioning, Vertex, WINDOW_END_COLUMN, WINDOW_START_COLUMN, WindowKind,
    window_bound_type,
};

/// The column a window rank that assigns windows adds after `window_end`: the window's last
/// millisecond (Flink's `window_time`).
pub const WINDOW_TIME_COLUMN: &str = "window_time";
use crate::element::ROW_KIND_COLUMN;
use crate::{Error, Result};

/// One `ORDER BY` column of a rank.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RankOrder {
    pub column: String,
    /// `DESC` (default `ASC`).
    pub descending: bool,
    /// `NULLS FIRST`; Flink's default is NULLS FIRST for ASC and NULLS LAST for DESC.
    pub nulls_first: bool,
}

impl RankOrder {
    /// `column ASC` with Flink's default null order.
    pub fn asc(column: impl Into<String>) -> Self {
        RankOrder {
            column: column.into(),
            descending: false,
            nulls_first: true,
        }
    }

    /// `column DESC` with Flink's default null order.
    pub fn desc(column: impl Into<String>) -> Self {
        RankOrder {
            column: column.into(),
            descending: true,
            nulls_first: false,
        }
    }
}

/// What a rank keeps per partition and how its results leave the operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RankStrategy {
    /// Streaming Top-N: a changelog (`_row_kind`) whenever the top rows change. Without a row
    /// number an entering row is `+I` and the row it pushes out `-D`; with a row number every
    /// rank whose row changed is `-U` (old row) / `+U` (new row), a new rank `+I`.
    Changelog,
    /// Streaming deduplication (`rn = 1` over a time attribute, no row number): one row per
    /// key; `+I` for the first, then `-U`/`+U` when it is replaced. Ordered `ASC` it keeps the
    /// earliest row (ties: the first to arrive), `DESC` the latest (ties: the last to arrive).
    Deduplicate,
    /// The final top rows per partition, append-only: at end of input (batch mode), or per
    /// window when the watermark passes its end (window Top-N / deduplication, see
    /// [`RankSpec::window`]).
    Final,
}

/// The windows of a window Top-N: rows are ranked per window and emitted once the watermark
/// passes the window's end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "source", rename_all = "snake_case")]
pub enum RankWindow {
    /// The input carries its windows (a window aggregation's output): both columns are
    /// TIMESTAMP(3) partition keys.
    Columns {
        start_column: String,
        end_column: String,
    },
    /// The rank assigns windows itself (a window TVF right before it, as Flink's window Top-N
    /// after a windowing TVF): each row belongs to the windows of `kind` that contain its
    /// `time_column`, and the output gets `window_start`, `window_end` and `window_time`
    /// after the input columns. The partition keys do not name the window columns.
    Assign {
        kind: WindowKind,
        time_column: String,
    },
}

impl RankWindow {
    /// The window of a window aggregation's output columns.
    pub fn columns(start: impl Into<String>, end: impl Into<String>) -> Self {
        RankWindow::Columns {
            start_column: start.into(),
            end_column: end.into(),
        }
    }
}

/// The configuration of a rank operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RankSpec {
    /// `PARTITION BY` columns (may be empty: one partition); with a window they include the
    /// window's start and end columns.
    pub partition_keys: Vec<String>,
    /// `ORDER BY` columns, most significant first; rows equal on all of them keep their
    /// arrival order.
    pub order_by: Vec<RankOrder>,
    /// N of `rn <= N`: how many rows each partition keeps (at least 1).
    pub limit: u64,
    /// The name of the emitted row-number column, or `None` when the query drops it.
    pub rank_column: Option<String>,
    pub strategy: RankStrategy,
    /// Set for window Top-N / window deduplication (strategy `Final`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<RankWindow>,
}

impl RankSpec {
    /// Whether the output is a changelog with a leading `_row_kind` column.
    pub fn is_changelog(&self) -> bool {
        self.strategy != RankStrategy::Final
    }

    /// Checks the spec against its input and derives the output schema.
    pub fn output_schema(&self, input: &Schema) -> Result<SchemaRef> {
        if self.limit == 0 {
            return Err(Error::expr(
                "rank limit must be at least 1 (rn <= N, N >= 1)",
            ));
        }
        if input.index_of(ROW_KIND_COLUMN).is_ok() {
            return Err(Error::expr(
                "a rank (ROW_NUMBER) over an updating input is not supported yet",
            ));
        }
        if self.partition_keys.is_empty() {
            return Err(Error::expr(
                "a rank needs at least one partition key (a global rank partitions by a \
                 constant)",
            ));
        }
        if self.order_by.is_empty() {
            return Err(Error::expr("a rank needs at least one ORDER BY column"));
        }
        for key in &self.partition_keys {
            lookup(input, key)?;
        }
        for order in &self.order_by {
            lookup(input, &order.column)?;
        }
        if self.strategy == RankStrategy::Deduplicate
            && (self.limit != 1 || self.rank_column.is_some() || self.order_by.len() != 1)
        {
            return Err(Error::expr(
                "deduplication keeps one row (rn = 1) ordered by one time column, without \
                 emitting the row number",
            ));
        }
        if let Some(window) = &self.window {
            if self.strategy != RankStrategy::Final {
                return Err(Error::expr("a window rank emits final rows only"));
            }
            let columns = match window {
                RankWindow::Columns {
                    start_column,
                    end_column,
                } => {
                    for column in [start_column, end_column] {
                        if !self.partition_keys.contains(column) {
                            return Err(Error::expr(format!(
                                "window rank: window column '{column}' must be a partition key"
                            )));
                        }
                    }
                    vec![start_column]
                        .into_iter()
                        .chain([end_column])
                        .collect::<Vec<_>>()
                }
                RankWindow::Assign { kind, time_column } => {
                    if matches!(kind, WindowKind::Session { .. }) {
                        return Err(Error::expr(
                            "a window rank over SESSION windows is not supported yet",
                        ));
                    }
                    kind.validate()?;
                    for column in [WINDOW_START_COLUMN, WINDOW_END_COLUMN, WINDOW_TIME_COLUMN] {
                        if input.index_of(column).is_ok() {
                            return Err(Error::expr(format!(
                                "window rank: the input already has a column '{column}'"
                            )));
                        }
                    }
                    vec![time_column]
                }
            };
            for column in columns {
                match lookup(input, column)?.data_type() {
                    DataType::Timestamp(TimeUnit::Millisecond, _) | DataType::Int64 => {}
                    other => {
                        return Err(Error::expr(format!(
                            "window rank: column '{column}' must be TIMESTAMP(3) or BIGINT \
                             milliseconds, found {other}"
                        )));
                    }
                }
            }
        }
        let mut fields = Vec::with_capacity(input.fields().len() + 2);
        if self.is_changelog() {
            fields.push(Field::new(ROW_KIND_COLUMN, DataType::Int8, false));
        }
        fields.extend(input.fields().iter().map(|f| f.as_ref().clone()));
        if let Some(RankWindow::Assign { .. }) = &self.window {
            for column in [WINDOW_START_COLUMN, WINDOW_END_COLUMN, WINDOW_TIME_COLUMN] {
                fields.push(Field::new(column, window_bound_type(), false));
            }
        }
        if let Some(name) = &self.rank_column {
            if input.index_of(name).is_ok() {
                return Err(Error::expr(format!(
                    "rank column '{name}' clashes with an input column"
                )));
            }
            fields.push(Field::new(name, DataType::Int64, false));
        }
        Ok(Arc::new(Schema::new(fields)))
    }

    /// A one-line description for plans.
    pub fn describe(&self) -> String {
        let order: Vec<String> = self
            .order_by
            .iter()
            .map(|o| {
                format!(
                    "{} {} NULLS {}",
                    o.column,
                    if o.descending { "DESC" } else { "ASC" },
                    if o.nulls_first { "FIRST" } else { "LAST" }
                )
            })
            .collect();
        let strategy = match (&self.strategy, &self.window) {
            (RankStrategy::Changelog, _) => "changelog".to_string(),
            (RankStrategy::Deduplicate, _) => "deduplicate".to_string(),
            (RankStrategy::Final, None) => "final".to_string(),
            (RankStrategy::Final, Some(RankWindow::Columns { .. })) => "window".to_string(),
            (RankStrategy::Final, Some(RankWindow::Assign { kind, time_column })) => {
                format!("window={kind:?} time={time_column}")
            }
        };
        format!(
            "partition=[{}] order=[{}] rn<={} rank_column={} {strategy}",
            self.partition_keys.join(", "),
            order.join(", "),
            self.limit,
            self.rank_column.as_deref().unwrap_or("-"),
        )
    }
}

/// A rank with more than one subtask must receive each partition on one subtask: its input
/// edge hashes on exactly the partition keys.
pub(super) fn check_input_edge(target: &Vertex, edge: &Edge) -> Result<()> {
    let OperatorSpec::Rank(spec) = &target.operator else {
        return Ok(());
    };
    if target.parallelism == 1 {
        return Ok(());
    }
    let hashed_on_keys = match &edge.partitioning {
        // The same order too: snapshots assign key groups by hashing the keys in spec order.
        Partitioning::Hash { keys } => *keys == spec.partition_keys,
        Partitioning::Forward | Partitioning::Rebalance | Partitioning::Broadcast => false,
    };
    if hashed_on_keys {
        Ok(())
    } else {
        Err(Error::plan(
            &target.name,
            format!(
                "a rank at parallelism {} needs its input hash-partitioned on its partition \
                 keys [{}], found {:?}",
                target.parallelism,
                spec.partition_keys.join(", "),
                edge.partitioning
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> Schema {
        Schema::new(vec![
            Field::new("k", DataType::Int64, false),
            Field::new("v", DataType::Int64, true),
        ])
    }

    fn spec() -> RankSpec {
        RankSpec {
            partition_keys: vec!["k".into()],
            order_by: vec![RankOrder::desc("v")],
            limit: 3,
            rank_column: Some("rn".into()),
            strategy: RankStrategy::Changelog,
            window: None,
        }
    }

    #[test]
    fn changelog_output_has_row_kind_and_rank() {
        let schema = spec().output_schema(&input()).unwrap();
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, ["_row_kind", "k", "v", "rn"]);
    }

    #[test]
    fn bad_specs_name_the_problem() {
        let err = |s: RankSpec| s.output_schema(&input()).unwrap_err().to_string();
        assert!(err(RankSpec { limit: 0, ..spec() }).contains("at least 1"));
        let unknown = RankSpec {
            order_by: vec![RankOrder::asc("w")],
            ..spec()
        };
        assert!(err(unknown).contains("unknown column 'w'"));
        let clash = RankSpec {
            rank_column: Some("v".into()),
            ..spec()
        };
        assert!(err(clash).contains("clashes"));
        let window = RankSpec {
            strategy: RankStrategy::Final,
            window: Some(RankWindow::columns("k", "x")),
            ..spec()
        };
        assert!(err(window).contains("'x' must be a partition key"));
    }

    #[test]
    fn round_trips_through_json() {
        let spec = RankSpec {
            strategy: RankStrategy::Final,
            window: Some(RankWindow::Assign {
                kind: WindowKind::Tumbling {
                    size_ms: 10,
                    offset_ms: 0,
                },
                time_column: "v".into(),
            }),
            ..spec()
        };
        let json = serde_json::to_string(&OperatorSpec::Rank(spec.clone())).unwrap();
        let back: OperatorSpec = serde_json::from_str(&json).unwrap();
        assert_eq!(back, OperatorSpec::Rank(spec.clone()));
        let schema = spec.output_schema(&input()).unwrap();
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(
            names,
            ["k", "v", "window_start", "window_end", "window_time", "rn"]
        );
    }

    #[test]
    fn a_parallel_rank_needs_its_input_hashed_on_the_partition_keys() {
        use crate::connector::{MemorySource, SourceSpec};
        use crate::graph::JobGraph;
        use crate::ids::VertexId;
        let schema = Arc::new(input());
        let vertex = |id: u32, name: &str, operator: OperatorSpec, schema: SchemaRef| Vertex {
            id: VertexId(id),
            name: name.into(),
            operator,
            output_schema: schema,
            parallelism: 2,
            max_parallelism: 128,
            read_first: None,
        };
        let source = OperatorSpec::Source {
            connector: SourceSpec::Memory(MemorySource::new(schema.clone(), vec![]).unwrap()),
            watermark: None,
        };
        let rank_schema = spec().output_schema(&input()).unwrap();
        let graph = |partitioning: Partitioning| {
            JobGraph::new(
                "rank",
                vec![
                    vertex(0, "source", source.clone(), schema.clone()),
                    vertex(1, "rank", OperatorSpec::Rank(spec()), rank_schema.clone()),
                ],
                vec![Edge {
                    source: VertexId(0),
                    target: VertexId(1),
                    input_index: 0,
                    partitioning,
                }],
            )
        };
        assert!(graph(Partitioning::hash(["k"])).is_ok());
        let message = graph(Partitioning::Rebalance).unwrap_err().to_string();
        assert!(
            message.contains("hash-partitioned on its partition keys [k]"),
            "{message}"
        );
    }
}
