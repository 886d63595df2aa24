//! The JobGraph: what a client builds and submits.
//!
//! A JobGraph is a DAG. Vertices are operator descriptions — a serialisable [`OperatorSpec`],
//! the declared output schema, a parallelism and a max parallelism (the number of key groups).
//! Edges connect an upstream vertex to one input of a downstream vertex and say how records are
//! partitioned between their subtasks ([`Partitioning`]).
//!
//! A graph is only ever handed out validated: [`JobGraph::new`] (and the builder's `build`)
//! checks for cycles, dangling edges, schema mismatches, unknown key columns, forward edges
//! between unequal parallelism and expressions that do not type-check, and names the vertex and
//! column in every error. It round-trips through JSON ([`JobGraph::to_json`] /
//! [`JobGraph::from_json`]) so a client can build it and a JobManager can run it.

pub mod estimate;
pub(crate) mod join;
mod lookup_join;
mod partitioning;
mod rank;
mod sort;
mod spec;
mod validate;
mod window;

pub use join::{JoinKind, JoinSpec, JoinType, RIGHT_DUPLICATE_SUFFIX, SubqueryJoinType};
pub use lookup_join::LookupJoinSpec;
pub(crate) use lookup_join::common_key_type as lookup_join_key_type;
pub use partitioning::Partitioning;
pub use rank::{RankOrder, RankSpec, RankStrategy, RankWindow, WINDOW_TIME_COLUMN};
pub use sort::{SortKey, SortSpec};
pub use spec::{
    AggregateCall, AggregateFunction, AggregatePhase, EmitMode, KeyedAggregateSpec, OperatorSpec,
    describe_columns, partial_state_column,
};
pub use window::{
    WINDOW_END_COLUMN, WINDOW_START_COLUMN, WindowAggregateSpec, WindowKind, WindowTime,
    window_bound_type,
};

use arrow::datatypes::SchemaRef;
use serde::{Deserialize, Serialize};

use crate::ids::VertexId;
use crate::{Error, Result};

/// The default number of key groups, as Flink's default for small parallelism.
pub const DEFAULT_MAX_PARALLELISM: u32 = 128;

/// One operator of the graph.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Vertex {
    pub id: VertexId,
    /// A name unique within the graph, used in errors, metrics and the dashboard.
    pub name: String,
    pub operator: OperatorSpec,
    pub output_schema: SchemaRef,
    pub parallelism: u32,
    /// The number of key groups keyed state is split into; the upper bound for rescaling.
    pub max_parallelism: u32,
    /// A batch join's input to read to its end before the other: the one estimated smaller
    /// ([`estimate`]), so that the join builds it and streams the other instead of holding
    /// both. A preference only: the runtime follows it without checkpoints and where no
    /// operator feeds both inputs ([`estimate::read_first_allowed`]); finished blocking
    /// partitions are read smallest first by their real sizes instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_first: Option<u32>,
}

/// A connection from the output of `source` to input `input_index` of `target`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Edge {
    pub source: VertexId,
    pub target: VertexId,
    /// Which input of the target this edge feeds (0 for single-input operators; 0 and 1 for a
    /// join). Several edges may feed the same input (a union of streams).
    pub input_index: u32,
    pub partitioning: Partitioning,
}

/// Whether batch aggregations run in two phases (Flink's `table.optimizer.agg-phase-strategy`,
/// see [`AggregatePhase`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AggregatePhaseStrategy {
    /// Two phases where the input runs in parallel and every function merges.
    #[default]
    Auto,
    /// Always one phase.
    OnePhase,
    /// Two phases wherever every function merges, even over an input of parallelism 1.
    TwoPhase,
}

impl AggregatePhaseStrategy {
    /// The strategy named `name` (`AUTO`, `ONE_PHASE`, `TWO_PHASE`), in any case.
    pub fn parse(name: &str) -> Option<Self> {
        match name.to_ascii_uppercase().as_str() {
            "AUTO" => Some(AggregatePhaseStrategy::Auto),
            "ONE_PHASE" => Some(AggregatePhaseStrategy::OnePhase),
            "TWO_PHASE" => Some(AggregatePhaseStrategy::TwoPhase),
            _ => None,
        }
    }
}

/// How the exchanges of a bounded job move data (Flink's `execution.batch-shuffle-mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BatchShuffleMode {
    /// Producer and consumer of every exchange run at once and rows stream between them: the
    /// only mode of a streaming job.
    #[default]
    AllExchangesPipelined,
    /// Every exchange is materialised: its producers write their whole output to files before
    /// its consumers start. The job runs stage by stage, and a failed stage runs again from
    /// its inputs' files instead of restarting the whole job.
    AllExchangesBlocking,
}

impl BatchShuffleMode {
    /// Flink's name of the mode (`ALL_EXCHANGES_BLOCKING`).
    pub fn as_str(self) -> &'static str {
        match self {
            BatchShuffleMode::AllExchangesPipelined => "ALL_EXCHANGES_PIPELINED",
            BatchShuffleMode::AllExchangesBlocking => "ALL_EXCHANGES_BLOCKING",
        }
    }

    /// The mode named `name`, in any case.
    pub fn parse(name: &str) -> Option<Self> {
        [
            BatchShuffleMode::AllExchangesPipelined,
            BatchShuffleMode::AllExchangesBlocking,
        ]
        .into_iter()
        .find(|mode| mode.as_str().eq_ignore_ascii_case(name))
    }
}

/// A validated job graph.
#[derive(Debug, Clone, Serialize)]
pub struct JobGraph {
    pub name: String,
    vertices: Vec<Vertex>,
    edges: Vec<Edge>,
    /// How the job's exchanges move data; blocking only for bounded (batch) jobs.
    shuffle_mode: BatchShuffleMode,
}

impl JobGraph {
    /// Validates and builds a graph. Vertex ids must equal their index in `vertices`.
    pub fn new(name: impl Into<String>, vertices: Vec<Vertex>, edges: Vec<Edge>) -> Result<Self> {
        let graph = JobGraph {
            name: name.into(),
            vertices,
            edges,
            shuffle_mode: BatchShuffleMode::default(),
        };
        validate::validate(&graph)?;
        Ok(graph)
    }

    /// The graph with its exchanges moving data as `mode` says.
    pub fn with_shuffle_mode(mut self, mode: BatchShuffleMode) -> Self {
        self.shuffle_mode = mode;
        self
    }

    pub fn shuffle_mode(&self) -> BatchShuffleMode {
        self.shuffle_mode
    }

    pub fn vertices(&self) -> &[Vertex] {
        &self.vertices
    }

    /// The first vertex that runs a closure of the program that built the graph
    /// ([`OperatorSpec::Custom`]): such a graph runs only in that process, never on a cluster.
    pub fn closure_vertex(&self) -> Option<&Vertex> {
        self.vertices
            .iter()
            .find(|v| matches!(v.operator, OperatorSpec::Custom { .. }))
    }

    pub fn edges(&self) -> &[Edge] {
        &self.edges
    }

    pub fn vertex(&self, id: VertexId) -> &Vertex {
        &self.vertices[id.0 as usize]
    }

    /// Edges entering `id`, ordered by input index.
    pub fn inputs_of(&self, id: VertexId) -> Vec<&Edge> {
        let mut inputs: Vec<&Edge> = self.edges.iter().filter(|e| e.target == id).collect();
        inputs.sort_by_key(|e| e.input_index);
        inputs
    }

    /// Edges leaving `id`.
    pub fn outputs_of(&self, id: VertexId) -> Vec<&Edge> {
        self.edges.iter().filter(|e| e.source == id).collect()
    }

    /// The schemas arriving at each input of `id` (input index → schema).
    pub fn input_schemas(&self, id: VertexId) -> Vec<SchemaRef> {
        let mut schemas: Vec<(u32, SchemaRef)> = self
            .inputs_of(id)
            .into_iter()
            .map(|e| (e.input_index, self.vertex(e.source).output_schema.clone()))
            .collect();
        schemas.dedup_by_key(|(index, _)| *index);
        schemas.into_iter().map(|(_, schema)| schema).collect()
    }

    /// Vertices in an order where every vertex comes after all its inputs.
    pub fn topological_order(&self) -> Vec<VertexId> {
        validate::topological_order(self).expect("a validated graph has no cycles")
    }

    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string_pretty(self).map_err(|e| {
            Error::Internal(format!("job graph '{}' does not serialise: {e}", self.name))
        })
    }

    /// Parses and validates a graph sent by a client.
    pub fn from_json(json: &str) -> Result<Self> {
        #[derive(Deserialize)]
        struct Raw {
            name: String,
            vertices: Vec<Vertex>,
            edges: Vec<Edge>,
            #[serde(default)]
            shuffle_mode: BatchShuffleMode,
        }
        let raw: Raw = serde_json::from_str(json)
            .map_err(|e| Error::plan("<graph>", format!("job graph JSON does not parse: {e}")))?;
        Ok(JobGraph::new(raw.name, raw.vertices, raw.edges)?.with_shuffle_mode(raw.shuffle_mode))
    }
}
