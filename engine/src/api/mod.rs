//! The DataStream API: build a JobGraph fluently in Rust.
//!
//! ```
//! use sluice_engine::api::StreamEnvironment;
//! use sluice_engine::graph::AggregateFunction;
//! # use std::sync::Arc;
//! # use arrow::array::{Int64Array, RecordBatch};
//! # use arrow::datatypes::{DataType, Field, Schema};
//! # let schema = Arc::new(Schema::new(vec![Field::new("k", DataType::Int64, false)]));
//! # let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(vec![1, 2, 1]))]).unwrap();
//! let env = StreamEnvironment::new("example").with_parallelism(2);
//! env.from_batches("numbers", schema, vec![batch])?
//!     .key_by(["k"])
//!     .count("n")?
//!     .collect("out")?;
//! let result = env.execute_local()?;
//! assert_eq!(result.collected.batches("out").iter().map(|b| b.num_rows()).sum::<usize>(), 2);
//! # Ok::<(), sluice_engine::Error>(())
//! ```
//!
//! Every call validates what it can at once (unknown columns, type errors) and names the
//! vertex; [`StreamEnvironment::build`] validates the whole graph again. Operators run with
//! the environment's parallelism unless [`DataStream::parallelism`] sets another; edges between
//! equal parallelism are forward (and chained), others rebalance, as in Flink.

mod batch_fn;
mod join;
mod lookup_join;
pub mod nexmark;
mod process;
mod rank;
mod sort;
mod window;

pub use batch_fn::{BatchFn, BatchFunction};
pub use join::{ConnectedStreams, JoinBuilder};
pub use process::{
    Collector, KeyedProcessFunction, OutputTag, ProcessContext, ProcessOperator, ProcessStreams,
    SIDE_OUTPUT_METADATA_KEY,
};
pub use window::WindowedStream;

pub use crate::operator::{MissingFunction, UserFunctionFactory, UserFunctions};

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;

use crate::connector::{CollectedResults, MemorySource, SinkSpec, SourceSpec};
use crate::expr::{Expr, ScalarValue};
use crate::graph::{
    AggregateCall, AggregateFunction, AggregatePhase, BatchShuffleMode, DEFAULT_MAX_PARALLELISM,
    Edge, EmitMode, JobGraph, KeyedAggregateSpec, OperatorSpec, Partitioning, Vertex,
};
use crate::ids::VertexId;
use crate::operator::{Operator, OperatorContext, OperatorFactory, OperatorRegistry};
use crate::runtime::{JobEnvironment, JobResult, LocalRuntime, RuntimeConfig};
use crate::{Error, Result};

#[derive(Default)]
struct Builder {
    vertices: Vec<Vertex>,
    edges: Vec<Edge>,
    names: HashSet<String>,
    registry: OperatorRegistry,
    /// Row estimates of vertices asked for so far (a vertex never changes what it reads).
    estimates: HashMap<VertexId, Option<crate::graph::estimate::RowEstimate>>,
}

/// Where a job is assembled. Cheap to clone; clones share the graph under construction.
#[derive(Clone)]
pub struct StreamEnvironment {
    name: String,
    parallelism: u32,
    max_parallelism: u32,
    shuffle_mode: BatchShuffleMode,
    builder: Rc<RefCell<Builder>>,
}

/// The output of one operator, to which further operators attach.
#[derive(Clone)]
pub struct DataStream {
    env: StreamEnvironment,
    vertex: VertexId,
}

/// A stream partitioned by key columns: what keyed operators consume.
#[derive(Clone)]
pub struct KeyedStream {
    stream: DataStream,
    keys: Vec<String>,
}

/// A finished job run on the local runtime, with what its collecting sinks gathered.
#[derive(Debug)]
pub struct LocalJobOutput {
    pub result: JobResult,
    pub collected: CollectedResults,
    /// The job's Flight sink tables ([`DataStream::sink_to_flight`]), as they ended.
    pub sink_tables: crate::connector::SinkTables,
}

impl StreamEnvironment {
    pub fn new(name: impl Into<String>) -> Self {
        StreamEnvironment {
            name: name.into(),
            parallelism: 1,
            max_parallelism: DEFAULT_MAX_PARALLELISM,
            shuffle_mode: BatchShuffleMode::default(),
            builder: Rc::default(),
        }
    }

    /// The default parallelism of every operator.
    pub fn with_parallelism(mut self, parallelism: u32) -> Self {
        self.parallelism = parallelism.max(1);
        self
    }

    /// The number of key groups (upper bound of parallelism for keyed operators).
    pub fn with_max_parallelism(mut self, max_parallelism: u32) -> Self {
        self.max_parallelism = max_parallelism.max(1);
        self
    }

    /// How the job's exchanges move data. Blocking exchanges need bounded input: every
    /// source must end.
    pub fn with_shuffle_mode(mut self, mode: BatchShuffleMode) -> Self {
        self.shuffle_mode = mode;
        self
    }

    pub fn parallelism(&self) -> u32 {
        self.parallelism
    }

    /// Makes the named user functions of `functions` available to local execution
    /// ([`StreamEnvironment::execute_local`]). A cluster does not need them here: its
    /// TaskManagers' binaries register them.
    pub fn with_user_functions(self, functions: &UserFunctions) -> Self {
        self.builder
            .borrow_mut()
            .registry
            .add_user_functions(functions);
        self
    }

    /// Adds a source.
    pub fn source(&self, name: &str, spec: SourceSpec) -> Result<DataStream> {
        let schema = spec.schema()?;
        let vertex = self.add_vertex(
            name,
            OperatorSpec::Source {
                connector: spec,
                watermark: None,
            },
            schema,
            self.parallelism,
            &[],
        )?;
        Ok(self.stream(vertex))
    }

    /// Adds a source that emits watermarks with `strategy` (bounded out-of-orderness on an
    /// event-time column).
    pub fn source_with_watermarks(
        &self,
        name: &str,
        spec: SourceSpec,
        strategy: crate::time::WatermarkStrategy,
    ) -> Result<DataStream> {
        let schema = spec.schema()?;
        let operator = OperatorSpec::Source {
            connector: spec,
            watermark: Some(strategy),
        };
        operator.output_schema(&[]).map_err(|e| match e {
            Error::Expression { message } => Error::plan(name, message),
            other => other,
        })?;
        let vertex = self.add_vertex(name, operator, schema, self.parallelism, &[])?;
        Ok(self.stream(vertex))
    }

    /// A bounded source over batches in memory (spread over the source's subtasks).
    pub fn from_batches(
        &self,
        name: &str,
        schema: SchemaRef,
        batches: Vec<RecordBatch>,
    ) -> Result<DataStream> {
        self.source(
            name,
            SourceSpec::Memory(MemorySource::new(schema, batches)?),
        )
    }

    /// Reads the lines of a text file, or of every file in a directory (one `line` column).
    pub fn read_text_file(&self, path: &str) -> Result<DataStream> {
        self.source(
            "TextFile",
            SourceSpec::TextFile(crate::connector::TextFileSource::new(path)),
        )
    }

    /// Validates the graph and returns it with the factories of its custom operators.
    pub fn build(&self) -> Result<(JobGraph, OperatorRegistry)> {
        let builder = self.builder.borrow();
        let graph = JobGraph::new(&self.name, builder.vertices.clone(), builder.edges.clone())?
            .with_shuffle_mode(self.shuffle_mode);
        Ok((graph, builder.registry.clone()))
    }

    /// Builds the graph and runs it to completion on a local runtime with one slot per core.
    pub fn execute_local(&self) -> Result<LocalJobOutput> {
        self.execute_on(&LocalRuntime::new(RuntimeConfig::default()))
    }

    /// Builds the graph and runs it to completion on `runtime`.
    pub fn execute_on(&self, runtime: &LocalRuntime) -> Result<LocalJobOutput> {
        self.execute_with(runtime, crate::connector::SinkTables::default())
    }

    /// [`StreamEnvironment::execute_on`], with the Flight sink tables kept in `sink_tables`
    /// (which a Flight service may be serving while the job runs).
    pub fn execute_with(
        &self,
        runtime: &LocalRuntime,
        sink_tables: crate::connector::SinkTables,
    ) -> Result<LocalJobOutput> {
        let (graph, registry) = self.build()?;
        let env = JobEnvironment {
            registry,
            collected: CollectedResults::default(),
            sink_tables,
        };
        let result = runtime.execute(&graph, &env)?;
        Ok(LocalJobOutput {
            result,
            collected: env.collected,
            sink_tables: env.sink_tables,
        })
    }

    fn stream(&self, vertex: VertexId) -> DataStream {
        DataStream {
            env: self.clone(),
            vertex,
        }
    }

    fn unique_name(builder: &Builder, base: &str) -> String {
        if !builder.names.contains(base) {
            return base.to_string();
        }
        (2..)
            .map(|n| format!("{base}-{n}"))
            .find(|candidate| !builder.names.contains(candidate))
            .expect("an unused name exists")
    }

    /// Adds a vertex fed by `inputs` (upstream vertex, input index, partitioning or `None`
    /// for the default: forward at equal parallelism, else rebalance).
    fn add_vertex(
        &self,
        name: &str,
        operator: OperatorSpec,
        output_schema: SchemaRef,
        parallelism: u32,
        inputs: &[(VertexId, u32, Option<Partitioning>)],
    ) -> Result<VertexId> {
        let mut builder = self.builder.borrow_mut();
        let name = Self::unique_name(&builder, name);
        let id = VertexId(builder.vertices.len() as u32);
        for &(source, input_index, ref partitioning) in inputs {
            let upstream = &builder.vertices[source.0 as usize];
            let partitioning =
                partitioning
                    .clone()
                    .unwrap_or(if upstream.parallelism == parallelism {
                        Partitioning::Forward
                    } else {
                        Partitioning::Rebalance
                    });
            builder.edges.push(Edge {
                source,
                target: id,
                input_index,
                partitioning,
            });
        }
        let max_parallelism = self.max_parallelism.max(parallelism);
        builder.names.insert(name.clone());
        builder.vertices.push(Vertex {
            id,
            name,
            operator,
            output_schema,
            parallelism,
            max_parallelism,
            read_first: None,
        });
        Ok(id)
    }
}

impl DataStream {
    /// The rows this stream is estimated to carry, from the Parquet footers of the tables it
    /// reads and the operators in between ([`crate::graph::estimate`]); `None` when unknown.
    pub fn estimated_rows(&self) -> Option<crate::graph::estimate::RowEstimate> {
        let mut builder = self.env.builder.borrow_mut();
        let Builder {
            vertices,
            edges,
            estimates,
            ..
        } = &mut *builder;
        crate::graph::estimate::estimate_rows(vertices, edges, self.vertex, estimates)
    }

    /// The schema of this stream's rows.
    pub fn schema(&self) -> SchemaRef {
        self.env.builder.borrow().vertices[self.vertex.0 as usize]
            .output_schema
            .clone()
    }

    /// The parallelism of the vertex producing this stream.
    pub fn vertex_parallelism(&self) -> u32 {
        self.env.builder.borrow().vertices[self.vertex.0 as usize].parallelism
    }

    pub fn vertex_name(&self) -> String {
        self.env.builder.borrow().vertices[self.vertex.0 as usize]
            .name
            .clone()
    }

    /// Sets the parallelism of the operator that produces this stream.
    pub fn parallelism(self, parallelism: u32) -> Result<Self> {
        let parallelism = parallelism.max(1);
        let mut builder = self.env.builder.borrow_mut();
        let Builder {
            vertices, edges, ..
        } = &mut *builder;
        let vertex = &mut vertices[self.vertex.0 as usize];
        vertex.parallelism = parallelism;
        vertex.max_parallelism = vertex.max_parallelism.max(parallelism);
        for edge in edges.iter_mut().filter(|e| e.target == self.vertex) {
            if edge.partitioning == Partitioning::Forward
                && vertices[edge.source.0 as usize].parallelism != parallelism
            {
                edge.partitioning = Partitioning::Rebalance;
            }
        }
        drop(builder);
        Ok(self)
    }

    /// Renames the operator that produces this stream.
    pub fn name(self, name: &str) -> Result<Self> {
        let mut builder = self.env.builder.borrow_mut();
        if builder.names.contains(name) {
            return Err(Error::plan(name, "another operator already has this name"));
        }
        let old = std::mem::replace(
            &mut builder.vertices[self.vertex.0 as usize].name,
            name.to_string(),
        );
        builder.names.remove(&old);
        builder.names.insert(name.to_string());
        drop(builder);
        Ok(self)
    }

    fn then(&self, name: &str, operator: OperatorSpec, schema: SchemaRef) -> Result<DataStream> {
        let id = self.env.add_vertex(
            name,
            operator,
            schema,
            self.env.parallelism,
            &[(self.vertex, 0, None)],
        )?;
        Ok(self.env.stream(id))
    }

    /// Changes the spec of the source that produces this stream, if it is a source that no
    /// operator reads yet, and says whether it did; `update` also sees the source's watermark
    /// strategy. The SQL planner hands a source the predicate of the filter it is about to
    /// add this way.
    pub(crate) fn update_unread_source(
        &self,
        update: impl FnOnce(&mut SourceSpec, Option<&crate::time::WatermarkStrategy>),
    ) -> bool {
        let mut builder = self.env.builder.borrow_mut();
        if builder.edges.iter().any(|e| e.source == self.vertex) {
            return false;
        }
        let OperatorSpec::Source {
            connector,
            watermark,
        } = &mut builder.vertices[self.vertex.0 as usize].operator
        else {
            return false;
        };
        update(connector, watermark.as_ref());
        true
    }

    /// Keeps rows where `predicate` is TRUE.
    pub fn filter(&self, predicate: Expr) -> Result<DataStream> {
        let operator = OperatorSpec::Filter { predicate };
        let schema = self.derive("Filter", &operator)?;
        self.then("Filter", operator, schema)
    }

    /// Computes named columns from expressions.
    pub fn project<S: Into<String>>(
        &self,
        columns: impl IntoIterator<Item = (S, Expr)>,
    ) -> Result<DataStream> {
        let operator = OperatorSpec::Project {
            columns: columns.into_iter().map(|(n, e)| (n.into(), e)).collect(),
            watermark: None,
        };
        let schema = self.derive("Project", &operator)?;
        self.then("Project", operator, schema)
    }

    /// Computes named columns and emits watermarks from one of them with `strategy` (Flink's
    /// watermark assigner after computed columns: the SQL planner uses it when a table's
    /// rowtime column is computed). Upstream watermarks other than the final one are dropped.
    pub fn project_with_watermarks<S: Into<String>>(
        &self,
        columns: impl IntoIterator<Item = (S, Expr)>,
        strategy: crate::time::WatermarkStrategy,
    ) -> Result<DataStream> {
        let operator = OperatorSpec::Project {
            columns: columns.into_iter().map(|(n, e)| (n.into(), e)).collect(),
            watermark: Some(strategy),
        };
        let schema = self.derive("WatermarkAssigner", &operator)?;
        self.then("WatermarkAssigner", operator, schema)
    }

    /// Keeps the named columns, in this order.
    pub fn select(&self, columns: &[&str]) -> Result<DataStream> {
        self.project(columns.iter().map(|&c| (c, crate::expr::col(c))))
    }

    /// Applies `function` to every batch. `schema` is the schema of what it returns; the
    /// function runs on slot threads, once per batch.
    pub fn map_batches<F>(&self, name: &str, schema: SchemaRef, function: F) -> Result<DataStream>
    where
        F: Fn(&RecordBatch) -> Result<RecordBatch> + Send + Sync + 'static,
    {
        let function: BatchFunction = Arc::new(function);
        self.transform(
            name,
            schema,
            Arc::new(move |_ctx: &OperatorContext| {
                Ok(Box::new(BatchFn::new(function.clone())) as Box<dyn Operator>)
            }),
        )
    }

    /// Adds a user operator (Flink's `DataStream#transform`): `factory` creates one instance
    /// per subtask; `schema` is what it emits. The operator is registered under its vertex
    /// name, which is what a process running the graph looks it up by.
    pub fn transform(
        &self,
        name: &str,
        schema: SchemaRef,
        factory: Arc<dyn OperatorFactory>,
    ) -> Result<DataStream> {
        let id = self.env.add_vertex(
            name,
            OperatorSpec::Custom {
                name: String::new(),
            },
            schema,
            self.env.parallelism,
            &[(self.vertex, 0, None)],
        )?;
        let mut builder = self.env.builder.borrow_mut();
        let vertex_name = builder.vertices[id.0 as usize].name.clone();
        builder.vertices[id.0 as usize].operator = OperatorSpec::Custom {
            name: vertex_name.clone(),
        };
        builder.registry.register(vertex_name, factory);
        drop(builder);
        Ok(self.env.stream(id))
    }

    /// Applies the named user function `function` (see [`UserFunctions`]) with `config`;
    /// `schema` is what it emits. Only the name and the config go into the graph, so the job
    /// can run wherever the function is registered: locally after
    /// [`StreamEnvironment::with_user_functions`], or on a cluster whose TaskManagers run a
    /// binary that registers it. The vertex is named after the function.
    pub fn user_function(
        &self,
        function: &str,
        config: serde_json::Value,
        schema: SchemaRef,
    ) -> Result<DataStream> {
        if function.is_empty() {
            return Err(Error::plan("User", "a user function needs a name"));
        }
        self.then(
            function,
            OperatorSpec::User {
                function: function.to_string(),
                config,
            },
            schema,
        )
    }

    /// Merges this stream with others of the same schema.
    pub fn union(&self, others: &[&DataStream]) -> Result<DataStream> {
        let mut inputs = vec![(self.vertex, 0, None)];
        inputs.extend(others.iter().map(|o| (o.vertex, 0, None)));
        let schema = self.schema();
        let id = self.env.add_vertex(
            "Union",
            OperatorSpec::Union,
            schema,
            self.env.parallelism,
            &inputs,
        )?;
        Ok(self.env.stream(id))
    }

    /// Partitions by the hash of `keys` (through key groups).
    pub fn key_by<S: Into<String>>(&self, keys: impl IntoIterator<Item = S>) -> KeyedStream {
        KeyedStream {
            stream: self.clone(),
            keys: keys.into_iter().map(Into::into).collect(),
        }
    }

    /// Redistributes batches round-robin to the next operator.
    pub fn rebalance(&self) -> Result<DataStream> {
        self.pass_through("Rebalance", Partitioning::Rebalance)
    }

    fn pass_through(&self, name: &str, partitioning: Partitioning) -> Result<DataStream> {
        let schema = self.schema();
        let id = self.env.add_vertex(
            name,
            OperatorSpec::Union,
            schema,
            self.env.parallelism,
            &[(self.vertex, 0, Some(partitioning))],
        )?;
        Ok(self.env.stream(id))
    }

    /// Writes to a sink.
    pub fn sink(&self, name: &str, spec: SinkSpec) -> Result<()> {
        let schema = self.schema();
        spec.validate(&schema).map_err(|e| match e {
            Error::Expression { message } => Error::plan(name, message),
            other => other,
        })?;
        // A sorted stream is written by one subtask, in order.
        let parallelism = if self.is_ordered() {
            1
        } else {
            self.env.parallelism
        };
        self.env.add_vertex(
            name,
            OperatorSpec::Sink { connector: spec },
            schema,
            parallelism,
            &[(self.vertex, 0, None)],
        )?;
        Ok(())
    }

    /// Keeps the output in memory under `name` ([`LocalJobOutput::collected`]).
    pub fn collect(&self, name: &str) -> Result<()> {
        self.sink(
            name,
            SinkSpec::Collect {
                name: name.to_string(),
            },
        )
    }

    /// Keeps the output as Flight sink table `name`, which Arrow Flight clients read while the
    /// job runs ([`crate::connector::sink_table`]): append-only, or upserted by `primary_key`
    /// when it is not empty (the stream may then be a changelog).
    pub fn sink_to_flight(&self, name: &str, primary_key: &[&str]) -> Result<()> {
        self.sink(
            name,
            SinkSpec::Flight {
                name: name.to_string(),
                primary_key: primary_key.iter().map(|k| k.to_string()).collect(),
                max_bytes: None,
            },
        )
    }

    /// Prints every row (Flink's `print` sink).
    pub fn print(&self) -> Result<()> {
        self.sink(
            "Print",
            SinkSpec::Print {
                identifier: None,
                standard_error: false,
            },
        )
    }

    fn derive(&self, name: &str, operator: &OperatorSpec) -> Result<SchemaRef> {
        let input = self.schema();
        operator
            .output_schema(&[input])
            .map_err(|e| match e {
                Error::Expression { message } => Error::plan(name, message),
                other => other,
            })?
            .ok_or_else(|| Error::Internal(format!("{name} has no derived schema")))
    }
}

impl KeyedStream {
    /// Aggregates per key. `Final` emits at end of input; `Changelog` emits updates per batch.
    pub fn aggregate(&self, aggregates: Vec<AggregateCall>, emit: EmitMode) -> Result<DataStream> {
        self.aggregate_spec(KeyedAggregateSpec {
            keys: self.keys.clone(),
            aggregates,
            emit,
            default_group: None,
            phase: Default::default(),
        })
    }

    /// Aggregates over keys that are constants (`key`, one value per key column): the
    /// aggregation of a query without GROUP BY. Like [`KeyedStream::aggregate`], except that
    /// `Final` emission gives one row even when no input arrives (see
    /// [`KeyedAggregateSpec::default_group`]).
    pub fn aggregate_global(
        &self,
        aggregates: Vec<AggregateCall>,
        emit: EmitMode,
        key: Vec<ScalarValue>,
    ) -> Result<DataStream> {
        if key.len() != self.keys.len() {
            return Err(Error::plan(
                "KeyedAggregate",
                format!(
                    "a global aggregation has {} key columns but {} key values",
                    self.keys.len(),
                    key.len()
                ),
            ));
        }
        self.aggregate_spec(KeyedAggregateSpec {
            keys: self.keys.clone(),
            aggregates,
            emit,
            default_group: Some(key),
            phase: Default::default(),
        })
    }

    /// A final aggregation in two phases (batch mode; see [`AggregatePhase`]): a partial
    /// aggregation at the input's parallelism, forward-connected to it, then the hash
    /// exchange, then the final one. `default_group` as in [`KeyedStream::aggregate_global`].
    pub fn aggregate_two_phase(
        &self,
        aggregates: Vec<AggregateCall>,
        default_group: Option<Vec<ScalarValue>>,
    ) -> Result<DataStream> {
        let input = self.stream.schema();
        let input_types = aggregates
            .iter()
            .map(|call| match &call.input {
                Some(column) => input
                    .field_with_name(column)
                    .map(|f| Some(f.data_type().clone()))
                    .map_err(|_| {
                        Error::plan(
                            "KeyedAggregate",
                            format!("unknown aggregate column '{column}'"),
                        )
                    }),
                None => Ok(None),
            })
            .collect::<Result<Vec<_>>>()?;
        let partial = KeyedAggregateSpec {
            keys: self.keys.clone(),
            aggregates: aggregates.clone(),
            emit: EmitMode::Final,
            default_group: None,
            phase: AggregatePhase::Partial,
        };
        let partial_schema = partial.output_schema(&input).map_err(|e| match e {
            Error::Expression { message } => Error::plan("LocalAggregate", message),
            other => other,
        })?;
        let env = &self.stream.env;
        let id = env.add_vertex(
            "LocalAggregate",
            OperatorSpec::KeyedAggregate(partial),
            partial_schema,
            self.stream.vertex_parallelism(),
            &[(self.stream.vertex, 0, Some(Partitioning::Forward))],
        )?;
        let local = KeyedStream {
            stream: env.stream(id),
            keys: self.keys.clone(),
        };
        local.aggregate_spec(KeyedAggregateSpec {
            keys: self.keys.clone(),
            aggregates,
            emit: EmitMode::Final,
            default_group,
            phase: AggregatePhase::Final { input_types },
        })
    }

    fn aggregate_spec(&self, spec: KeyedAggregateSpec) -> Result<DataStream> {
        let input = self.stream.schema();
        let schema = spec.output_schema(&input).map_err(|e| match e {
            Error::Expression { message } => Error::plan("KeyedAggregate", message),
            other => other,
        })?;
        let env = &self.stream.env;
        let id = env.add_vertex(
            "KeyedAggregate",
            OperatorSpec::KeyedAggregate(spec),
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

    /// `COUNT(*)` per key as column `output`, final at end of input.
    pub fn count(&self, output: &str) -> Result<DataStream> {
        self.aggregate(
            vec![AggregateCall {
                function: AggregateFunction::Count,
                input: None,
                output: output.to_string(),
            }],
            EmitMode::Final,
        )
    }
}

/// A one-column Utf8 schema, handy for text pipelines.
pub fn utf8_schema(column: &str) -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new(column, DataType::Utf8, false)]))
}
