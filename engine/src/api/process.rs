//! The ProcessFunction level: keyed functions with state and timers (Flink's
//! `KeyedProcessFunction`), run by a [`ProcessOperator`].
//!
//! The runtime calls the user's [`KeyedProcessFunction`] once per batch, never once per row:
//! per-row work happens in the function's own loop over the batch. Before the call the operator
//! computes the [`KeyId`] of every row (one hash pass and one row encoding per batch) and hands
//! them over as a slice beside the batch; all state ([`ProcessContext::state_mut`]) and timers
//! are addressed by key id. Due timers are handed over in batches too
//! ([`KeyedProcessFunction::on_timers`], which by default calls `on_timer` per timer).
//!
//! **Timers.** Event-time timers fire in `process_watermark`, in timestamp order, after the
//! context's watermark is advanced and before the watermark is forwarded, so timer output
//! precedes the watermark downstream. Timers registered while firing that are already due fire
//! in the same call. Processing-time timers fire when the operator next sees an element (a
//! batch or a watermark) after they are due: the runtime has no idle tick yet. At end of input
//! the remaining event-time timers fire (a bounded source sends `Watermark::MAX` first anyway).
//!
//! **Side outputs.** A [`Collector`] has a main output, whose schema is the operator's output
//! schema, and side outputs named by an [`OutputTag`] with their own schema. Side-output
//! batches travel in the same physical stream as the main output, marked by the schema metadata
//! key [`SIDE_OUTPUT_METADATA_KEY`] = tag name; [`KeyedStream::process_with_side_outputs`]
//! puts a selecting operator after the process operator for the main output and one per tag,
//! chained on forward edges, so every resulting [`DataStream`] carries batches of one schema.
//! Unmarked streams stay unmarked: [`KeyedStream::process`] adds no selector at all.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use arrow::array::ArrayRef;
use arrow::datatypes::{Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{DataStream, KeyedStream};
use crate::element::Watermark;
use crate::graph::{OperatorSpec, Partitioning};
use crate::ids::{CheckpointId, SubtaskIndex};
use crate::operator::{Operator, OperatorContext, OperatorFactory, Output};
use crate::runtime::OperatorMetrics;
use crate::state::{KeyId, KeyedStateBackend, StateSnapshot, ValueState};
use crate::time::{TIMERS_TABLE, TimeDomain, Timer, TimerService};
use crate::{Error, Result};

/// The schema metadata key that marks a side-output batch; its value is the tag name.
pub const SIDE_OUTPUT_METADATA_KEY: &str = "sluice.side_output";

/// Names a side output and fixes its schema (Flink's `OutputTag`).
#[derive(Debug, Clone, PartialEq)]
pub struct OutputTag {
    name: String,
    schema: SchemaRef,
    /// `schema` plus the side-output marker.
    marked: SchemaRef,
}

impl OutputTag {
    pub fn new(name: impl Into<String>, schema: SchemaRef) -> Self {
        let name = name.into();
        let metadata = HashMap::from([(SIDE_OUTPUT_METADATA_KEY.to_string(), name.clone())]);
        let marked = Arc::new(Schema::new(schema.fields().clone()).with_metadata(metadata));
        OutputTag {
            name,
            schema,
            marked,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }
}

/// Where a process function puts its results. Batches are forwarded after each call.
#[derive(Debug)]
pub struct Collector {
    schema: SchemaRef,
    side_outputs: Vec<OutputTag>,
    batches: Vec<RecordBatch>,
}

fn same_fields(expected: &Schema, batch: &RecordBatch) -> bool {
    expected.fields().len() == batch.num_columns()
        && expected
            .fields()
            .iter()
            .zip(batch.schema().fields())
            .all(|(e, f)| e.data_type() == f.data_type())
}

impl Collector {
    fn new(schema: SchemaRef, side_outputs: Vec<OutputTag>) -> Self {
        Collector {
            schema,
            side_outputs,
            batches: Vec::new(),
        }
    }

    /// The main output's schema.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Emits `batch` on the main output. Its columns must have the output schema's types;
    /// it is relabelled with the output schema (names, nullability).
    pub fn emit(&mut self, batch: RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        if !same_fields(&self.schema, &batch) {
            return Err(Error::data(
                "process function output",
                format!(
                    "emitted batch has schema {} but the output schema is {}",
                    batch.schema(),
                    self.schema
                ),
            ));
        }
        let batch = RecordBatch::try_new(self.schema.clone(), batch.columns().to_vec())
            .map_err(|e| Error::arrow("process function output", e))?;
        self.batches.push(batch);
        Ok(())
    }

    /// Emits `batch` on the side output `tag`, which must have been declared with
    /// [`KeyedStream::process_with_side_outputs`].
    pub fn emit_side(&mut self, tag: &OutputTag, batch: RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let Some(declared) = self.side_outputs.iter().find(|t| t.name == tag.name) else {
            return Err(Error::plan(
                tag.name.clone(),
                "side output was not declared for this process function",
            ));
        };
        if !same_fields(&declared.schema, &batch) {
            return Err(Error::data(
                format!("side output '{}'", tag.name),
                format!(
                    "emitted batch has schema {} but the tag's schema is {}",
                    batch.schema(),
                    declared.schema
                ),
            ));
        }
        let batch = RecordBatch::try_new(declared.marked.clone(), batch.columns().to_vec())
            .map_err(|e| Error::arrow(format!("side output '{}'", tag.name), e))?;
        self.batches.push(batch);
        Ok(())
    }

    fn drain_into(&mut self, out: &mut Output) {
        for batch in self.batches.drain(..) {
            out.push_batch(batch);
        }
    }
}

/// What a process function sees of its subtask: keyed state, timers and time.
#[derive(Debug)]
pub struct ProcessContext {
    state: KeyedStateBackend,
    timers: TimerService,
    watermark: Watermark,
    subtask: SubtaskIndex,
    parallelism: u32,
}

impl ProcessContext {
    /// Keyed state of this subtask, for reading.
    pub fn state(&self) -> &KeyedStateBackend {
        &self.state
    }

    /// Keyed state of this subtask: register handles in `open`, then read and write by key id.
    pub fn state_mut(&mut self) -> &mut KeyedStateBackend {
        &mut self.state
    }

    /// Shorthand for registering value state (in `open`).
    pub fn value_state<T>(&mut self, name: &str) -> Result<ValueState<T>>
    where
        T: Clone + Serialize + DeserializeOwned + Send + 'static,
    {
        self.state.value_state(name)
    }

    /// The timer service (registration, deletion, counts).
    pub fn timers_mut(&mut self) -> &mut TimerService {
        &mut self.timers
    }

    /// Fires `on_timer(key, timestamp)` once the watermark reaches `timestamp`. Registering
    /// the same key and timestamp again has no effect.
    pub fn register_event_time_timer(&mut self, key: KeyId, timestamp: i64) {
        self.timers.register_event_time_timer(key, timestamp);
    }

    pub fn delete_event_time_timer(&mut self, key: KeyId, timestamp: i64) {
        self.timers.delete_event_time_timer(key, timestamp);
    }

    /// Fires once the wall clock (ms since the epoch) reaches `timestamp`, at the next element
    /// the operator sees.
    pub fn register_processing_time_timer(&mut self, key: KeyId, timestamp: i64) {
        self.timers.register_processing_time_timer(key, timestamp);
    }

    pub fn delete_processing_time_timer(&mut self, key: KeyId, timestamp: i64) {
        self.timers.delete_processing_time_timer(key, timestamp);
    }

    /// The operator's current event-time watermark (`Watermark::MIN` before the first one).
    pub fn current_watermark(&self) -> Watermark {
        self.watermark
    }

    /// The wall clock in milliseconds since the epoch.
    pub fn current_processing_time(&self) -> i64 {
        now_ms()
    }

    /// The key columns of `keys` (e.g. to emit keys from `on_timer`).
    pub fn key_columns(&self, keys: &[KeyId]) -> Result<Vec<ArrayRef>> {
        self.state.key_columns(keys)
    }

    pub fn subtask(&self) -> SubtaskIndex {
        self.subtask
    }

    pub fn parallelism(&self) -> u32 {
        self.parallelism
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A user function over a keyed stream with keyed state and timers (Flink's
/// `KeyedProcessFunction`). One instance per subtask; all calls come from the subtask's slot
/// thread, one at a time. An `Err` fails the task.
pub trait KeyedProcessFunction: Send {
    /// Registers state handles. Called once before any other call.
    fn open(&mut self, ctx: &mut ProcessContext) -> Result<()> {
        let _ = ctx;
        Ok(())
    }

    /// Processes a batch; `keys[row]` is the key id of each row. Loop over the rows here.
    fn process_batch(
        &mut self,
        batch: &RecordBatch,
        keys: &[KeyId],
        ctx: &mut ProcessContext,
        out: &mut Collector,
    ) -> Result<()>;

    /// Due timers, in timestamp order. The default calls [`Self::on_timer`] for each.
    fn on_timers(
        &mut self,
        timers: &[Timer],
        ctx: &mut ProcessContext,
        out: &mut Collector,
    ) -> Result<()> {
        for &timer in timers {
            self.on_timer(timer, ctx, out)?;
        }
        Ok(())
    }

    /// One due timer of `timer.key`.
    fn on_timer(
        &mut self,
        timer: Timer,
        ctx: &mut ProcessContext,
        out: &mut Collector,
    ) -> Result<()> {
        let _ = (timer, ctx, out);
        Ok(())
    }

    /// End of input, after the remaining event-time timers fired.
    fn finish(&mut self, ctx: &mut ProcessContext, out: &mut Collector) -> Result<()> {
        let _ = (ctx, out);
        Ok(())
    }
}

/// Runs a [`KeyedProcessFunction`] as an engine [`Operator`] on a hash-partitioned input.
pub struct ProcessOperator {
    function: Box<dyn KeyedProcessFunction>,
    keys: Vec<String>,
    key_indices: Vec<usize>,
    context: Option<ProcessContext>,
    collector: Collector,
    key_ids: Vec<KeyId>,
    key_columns: Vec<ArrayRef>,
}

impl ProcessOperator {
    pub fn new(
        function: Box<dyn KeyedProcessFunction>,
        keys: Vec<String>,
        output_schema: SchemaRef,
        side_outputs: Vec<OutputTag>,
    ) -> Self {
        ProcessOperator {
            function,
            keys,
            key_indices: Vec::new(),
            context: None,
            collector: Collector::new(output_schema, side_outputs),
            key_ids: Vec::new(),
            key_columns: Vec::new(),
        }
    }

    /// Loads a snapshot (taken at any parallelism) after `open`: the state handles the
    /// function registered in `open` and the timers of the owned key groups.
    pub fn restore(&mut self, snapshot: &StateSnapshot) -> Result<()> {
        let ctx = self.context.as_mut().ok_or_else(not_open)?;
        let owned = ctx.state.key_groups();
        ctx.state.restore(snapshot, owned)?;
        for table in snapshot.tables.iter().filter(|t| t.name == TIMERS_TABLE) {
            ctx.timers.restore(table, ctx.state.keys_mut(), owned)?;
        }
        Ok(())
    }

    /// Fires event-time timers up to `watermark`, including those registered while firing.
    fn fire_event_timers(&mut self, watermark: Watermark) -> Result<()> {
        let ctx = self.context.as_mut().ok_or_else(not_open)?;
        ctx.watermark = ctx.watermark.max(watermark);
        loop {
            let due = ctx.timers.advance_watermark(watermark);
            if due.is_empty() {
                return Ok(());
            }
            let due: Vec<Timer> = due
                .into_iter()
                .map(|(key, timestamp)| Timer {
                    timestamp,
                    key,
                    domain: TimeDomain::EventTime,
                })
                .collect();
            self.function.on_timers(&due, ctx, &mut self.collector)?;
        }
    }

    fn fire_processing_timers(&mut self) -> Result<()> {
        let ctx = self.context.as_mut().ok_or_else(not_open)?;
        let Some(next) = ctx.timers.next_processing_time() else {
            return Ok(());
        };
        let now = now_ms();
        if next > now {
            return Ok(());
        }
        let due: Vec<Timer> = ctx
            .timers
            .due_processing_timers(now)
            .into_iter()
            .map(|(key, timestamp)| Timer {
                timestamp,
                key,
                domain: TimeDomain::ProcessingTime,
            })
            .collect();
        self.function.on_timers(&due, ctx, &mut self.collector)
    }
}

fn not_open() -> Error {
    Error::Internal("process operator used before open".into())
}

impl Operator for ProcessOperator {
    fn open(&mut self, ctx: &OperatorContext) -> Result<()> {
        let input = ctx
            .input_schemas
            .first()
            .ok_or_else(|| Error::plan(&ctx.vertex, "a process operator needs an input"))?;
        self.key_indices = self
            .keys
            .iter()
            .map(|k| {
                input
                    .index_of(k)
                    .map_err(|_| Error::plan(&ctx.vertex, format!("unknown key column '{k}'")))
            })
            .collect::<Result<_>>()?;
        let key_types: Vec<_> = self
            .key_indices
            .iter()
            .map(|&i| input.field(i).data_type().clone())
            .collect();
        let mut context = ProcessContext {
            state: KeyedStateBackend::try_new(&key_types, ctx.max_parallelism, ctx.key_groups)?
                .with_incremental_checkpoints(ctx.incremental_checkpoints),
            timers: TimerService::new(),
            watermark: Watermark::MIN,
            subtask: ctx.subtask,
            parallelism: ctx.parallelism,
        };
        self.function.open(&mut context)?;
        self.context = Some(context);
        Ok(())
    }

    fn process_batch(&mut self, _input: usize, batch: RecordBatch, out: &mut Output) -> Result<()> {
        let ctx = self.context.as_mut().ok_or_else(not_open)?;
        self.key_columns.clear();
        self.key_columns
            .extend(self.key_indices.iter().map(|&i| batch.column(i).clone()));
        ctx.state
            .key_ids_for(&self.key_columns, &mut self.key_ids)?;
        self.function
            .process_batch(&batch, &self.key_ids, ctx, &mut self.collector)?;
        self.fire_processing_timers()?;
        self.collector.drain_into(out);
        Ok(())
    }

    fn process_watermark(&mut self, watermark: Watermark, out: &mut Output) -> Result<()> {
        self.fire_processing_timers()?;
        self.fire_event_timers(watermark)?;
        self.collector.drain_into(out);
        out.push_watermark(watermark);
        Ok(())
    }

    fn on_processing_time(&mut self, _now_ms: i64, out: &mut Output) -> Result<()> {
        self.fire_processing_timers()?;
        self.collector.drain_into(out);
        Ok(())
    }

    fn restore(&mut self, snapshot: &StateSnapshot) -> Result<()> {
        ProcessOperator::restore(self, snapshot)
    }

    fn notify_checkpoint_complete(&mut self, checkpoint: CheckpointId) -> Result<()> {
        if let Some(ctx) = &mut self.context {
            ctx.state.notify_checkpoint_complete(checkpoint);
        }
        Ok(())
    }

    fn snapshot(&mut self, checkpoint: CheckpointId) -> Result<StateSnapshot> {
        let ctx = self.context.as_mut().ok_or_else(not_open)?;
        let range = ctx.state.key_groups();
        let mut snapshot = ctx.state.snapshot_for(checkpoint)?;
        snapshot
            .tables
            .push(ctx.timers.snapshot(ctx.state.keys(), range)?);
        Ok(snapshot)
    }

    fn finish(&mut self, out: &mut Output) -> Result<()> {
        self.fire_event_timers(Watermark::MAX)?;
        let ctx = self.context.as_mut().ok_or_else(not_open)?;
        self.function.finish(ctx, &mut self.collector)?;
        self.collector.drain_into(out);
        Ok(())
    }

    fn report_metrics(&self, metrics: &mut OperatorMetrics) {
        if let Some(ctx) = &self.context {
            metrics.state_bytes = (ctx.state.state_bytes() + ctx.timers.allocated_bytes()) as u64;
            metrics.state_keys = ctx.state.key_count() as u64;
        }
    }
}

/// Forwards the batches of one output of a process operator: unmarked batches (main output)
/// or those marked with one side-output tag, relabelled with the tag's plain schema.
struct SideOutputSelect {
    tag: Option<OutputTag>,
}

impl Operator for SideOutputSelect {
    fn process_batch(&mut self, _input: usize, batch: RecordBatch, out: &mut Output) -> Result<()> {
        let marker = batch
            .schema()
            .metadata()
            .get(SIDE_OUTPUT_METADATA_KEY)
            .cloned();
        match (&self.tag, marker) {
            (None, None) => out.push_batch(batch),
            (Some(tag), Some(name)) if tag.name == name => {
                let batch = RecordBatch::try_new(tag.schema.clone(), batch.columns().to_vec())
                    .map_err(|e| Error::arrow(format!("side output '{name}'"), e))?;
                out.push_batch(batch);
            }
            (None, Some(_)) | (Some(_), _) => {}
        }
        Ok(())
    }
}

/// The streams of a process operator with side outputs.
#[derive(Clone)]
pub struct ProcessStreams {
    /// The main output.
    pub main: DataStream,
    side: Vec<(OutputTag, DataStream)>,
}

impl ProcessStreams {
    /// The stream of side output `tag` (Flink's `getSideOutput`).
    pub fn side_output(&self, tag: &OutputTag) -> Result<DataStream> {
        self.side
            .iter()
            .find(|(t, _)| t.name == tag.name)
            .map(|(_, s)| s.clone())
            .ok_or_else(|| Error::plan(tag.name.clone(), "no side output with this tag"))
    }
}

impl KeyedStream {
    /// Runs a keyed process function (Flink's `KeyedStream#process`). `factory` creates one
    /// function per subtask; `output_schema` is the schema of what it emits.
    ///
    /// ```
    /// use sluice_engine::api::{Collector, KeyedProcessFunction, ProcessContext, StreamEnvironment};
    /// use sluice_engine::state::{KeyId, ValueState};
    /// # use std::sync::Arc;
    /// # use arrow::array::{AsArray, Int64Array, RecordBatch};
    /// # use arrow::datatypes::{DataType, Field, Int64Type, Schema};
    /// /// Emits each row's running count per key.
    /// #[derive(Default)]
    /// struct RunningCount { count: Option<ValueState<i64>> }
    ///
    /// impl KeyedProcessFunction for RunningCount {
    ///     fn open(&mut self, ctx: &mut ProcessContext) -> sluice_engine::Result<()> {
    ///         self.count = Some(ctx.value_state("count")?);
    ///         Ok(())
    ///     }
    ///     fn process_batch(&mut self, batch: &RecordBatch, keys: &[KeyId],
    ///                      ctx: &mut ProcessContext, out: &mut Collector) -> sluice_engine::Result<()> {
    ///         let state = self.count.expect("opened");
    ///         let mut counts = Vec::with_capacity(keys.len());
    ///         for &key in keys {
    ///             let n = ctx.state().value(&state, key).copied().unwrap_or(0) + 1;
    ///             ctx.state_mut().set_value(&state, key, n);
    ///             counts.push(n);
    ///         }
    ///         out.emit(RecordBatch::try_new(out.schema().clone(), vec![
    ///             batch.column(0).clone(), Arc::new(Int64Array::from(counts))]).unwrap())
    ///     }
    /// }
    ///
    /// # let input = Arc::new(Schema::new(vec![Field::new("k", DataType::Int64, false)]));
    /// # let output = Arc::new(Schema::new(vec![Field::new("k", DataType::Int64, false),
    /// #     Field::new("n", DataType::Int64, false)]));
    /// # let batch = RecordBatch::try_new(input.clone(), vec![Arc::new(Int64Array::from(vec![1, 2, 1]))]).unwrap();
    /// let env = StreamEnvironment::new("running-count").with_parallelism(2);
    /// env.from_batches("numbers", input, vec![batch])?
    ///     .key_by(["k"])
    ///     .process("RunningCount", output, RunningCount::default)?
    ///     .collect("out")?;
    /// let result = env.execute_local()?;
    /// assert_eq!(result.collected.batches("out").iter().map(|b| b.num_rows()).sum::<usize>(), 3);
    /// # Ok::<(), sluice_engine::Error>(())
    /// ```
    pub fn process<F, P>(
        &self,
        name: &str,
        output_schema: SchemaRef,
        factory: F,
    ) -> Result<DataStream>
    where
        F: Fn() -> P + Send + Sync + 'static,
        P: KeyedProcessFunction + 'static,
    {
        self.add_process(name, output_schema, Vec::new(), factory)
    }

    /// Like [`KeyedStream::process`], with side outputs the function may emit to with
    /// [`Collector::emit_side`]. Each output becomes its own stream (see the module docs).
    pub fn process_with_side_outputs<F, P>(
        &self,
        name: &str,
        output_schema: SchemaRef,
        side_outputs: &[OutputTag],
        factory: F,
    ) -> Result<ProcessStreams>
    where
        F: Fn() -> P + Send + Sync + 'static,
        P: KeyedProcessFunction + 'static,
    {
        for (i, tag) in side_outputs.iter().enumerate() {
            if side_outputs[..i].iter().any(|t| t.name == tag.name) {
                return Err(Error::plan(
                    name,
                    format!("side output '{}' declared twice", tag.name),
                ));
            }
        }
        let raw = self.add_process(name, output_schema.clone(), side_outputs.to_vec(), factory)?;
        let base = raw.vertex_name();
        let main = raw.transform(
            &format!("{base}.main"),
            output_schema,
            Arc::new(|_ctx: &OperatorContext| {
                Ok(Box::new(SideOutputSelect { tag: None }) as Box<dyn Operator>)
            }),
        )?;
        let mut side = Vec::with_capacity(side_outputs.len());
        for tag in side_outputs {
            let selected = tag.clone();
            let stream = raw.transform(
                &format!("{base}.{}", tag.name),
                tag.schema.clone(),
                Arc::new(move |_ctx: &OperatorContext| {
                    Ok(Box::new(SideOutputSelect {
                        tag: Some(selected.clone()),
                    }) as Box<dyn Operator>)
                }),
            )?;
            side.push((tag.clone(), stream));
        }
        Ok(ProcessStreams { main, side })
    }

    /// Adds the process vertex on a hash-partitioned edge and registers its factory under the
    /// vertex name (as `DataStream::transform` does for forward edges).
    fn add_process<F, P>(
        &self,
        name: &str,
        output_schema: SchemaRef,
        side_outputs: Vec<OutputTag>,
        factory: F,
    ) -> Result<DataStream>
    where
        F: Fn() -> P + Send + Sync + 'static,
        P: KeyedProcessFunction + 'static,
    {
        let input = self.stream.schema();
        if self.keys.is_empty() {
            return Err(Error::plan(name, "key_by needs at least one key column"));
        }
        for key in &self.keys {
            if input.index_of(key).is_err() {
                return Err(Error::plan(
                    name,
                    format!(
                        "unknown key column '{key}' (available: {})",
                        crate::graph::describe_columns(&input)
                    ),
                ));
            }
        }
        let env = &self.stream.env;
        let id = env.add_vertex(
            name,
            OperatorSpec::Custom {
                name: String::new(),
            },
            output_schema.clone(),
            env.parallelism,
            &[(
                self.stream.vertex,
                0,
                Some(Partitioning::Hash {
                    keys: self.keys.clone(),
                }),
            )],
        )?;
        let keys = self.keys.clone();
        let operator_factory: Arc<dyn OperatorFactory> = Arc::new(move |_ctx: &OperatorContext| {
            Ok(Box::new(ProcessOperator::new(
                Box::new(factory()),
                keys.clone(),
                output_schema.clone(),
                side_outputs.clone(),
            )) as Box<dyn Operator>)
        });
        let mut builder = env.builder.borrow_mut();
        let vertex_name = builder.vertices[id.0 as usize].name.clone();
        builder.vertices[id.0 as usize].operator = OperatorSpec::Custom {
            name: vertex_name.clone(),
        };
        builder.registry.register(vertex_name, operator_factory);
        drop(builder);
        Ok(env.stream(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::KeyGroupRange;
    use arrow::array::{AsArray, Int64Array};
    use arrow::datatypes::{DataType, Field, Int64Type};

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, false),
            Field::new("ts", DataType::Int64, false),
        ]))
    }

    /// Registers an event-time timer at each row's `ts` (twice, to check dedup) and emits
    /// `(key, timestamp)` when it fires.
    struct EchoTimers;

    impl KeyedProcessFunction for EchoTimers {
        fn process_batch(
            &mut self,
            batch: &RecordBatch,
            keys: &[KeyId],
            ctx: &mut ProcessContext,
            _out: &mut Collector,
        ) -> Result<()> {
            let ts = batch.column(1).as_primitive::<Int64Type>();
            for (row, &key) in keys.iter().enumerate() {
                ctx.register_event_time_timer(key, ts.value(row));
                ctx.register_event_time_timer(key, ts.value(row));
            }
            Ok(())
        }

        fn on_timers(
            &mut self,
            timers: &[Timer],
            ctx: &mut ProcessContext,
            out: &mut Collector,
        ) -> Result<()> {
            let keys: Vec<KeyId> = timers.iter().map(|t| t.key).collect();
            let mut columns = ctx.key_columns(&keys)?;
            columns.push(Arc::new(Int64Array::from_iter_values(
                timers.iter().map(|t| t.timestamp),
            )));
            out.emit(RecordBatch::try_new(schema(), columns).map_err(|e| Error::arrow("t", e))?)
        }
    }

    fn operator(range: KeyGroupRange) -> ProcessOperator {
        let mut op = ProcessOperator::new(Box::new(EchoTimers), vec!["k".into()], schema(), vec![]);
        op.open(&OperatorContext {
            incremental_checkpoints: false,
            checkpointing: false,
            memory: crate::spill::MemoryBudget::default(),
            vertex: "echo".into(),
            subtask: SubtaskIndex(0),
            parallelism: 1,
            max_parallelism: 128,
            key_groups: range,
            input_schemas: vec![schema()],
            output_schema: schema(),
        })
        .unwrap();
        op
    }

    fn rows(out: &mut Output) -> Vec<(i64, i64)> {
        let mut rows = Vec::new();
        for element in out.drain() {
            if let crate::element::StreamElement::Batch(b) = element {
                let k = b.column(0).as_primitive::<Int64Type>();
                let t = b.column(1).as_primitive::<Int64Type>();
                rows.extend((0..b.num_rows()).map(|i| (k.value(i), t.value(i))));
            }
        }
        rows
    }

    #[test]
    fn timers_fire_once_in_order_and_survive_a_restore_at_another_range() {
        let full = KeyGroupRange { start: 0, end: 128 };
        let mut op = operator(full);
        let batch = RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(Int64Array::from(vec![1, 2, 1, 3, 2])),
                Arc::new(Int64Array::from(vec![30, 10, 30, 20, 40])),
            ],
        )
        .unwrap();
        let mut out = Output::default();
        op.process_batch(0, batch, &mut out).unwrap();
        op.process_watermark(Watermark(25), &mut out).unwrap();
        assert_eq!(rows(&mut out), vec![(2, 10), (3, 20)]);
        let snapshot = op.snapshot(CheckpointId(1)).unwrap();

        let mut restored = Vec::new();
        for subtask in 0..2 {
            let mut part = operator(KeyGroupRange::for_subtask(128, 2, subtask));
            part.restore(&snapshot).unwrap();
            part.finish(&mut out).unwrap();
            restored.extend(rows(&mut out));
        }
        restored.sort();
        assert_eq!(restored, vec![(1, 30), (2, 40)]);
    }
}
