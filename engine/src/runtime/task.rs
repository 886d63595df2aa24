//! A task: one parallel instance of a chain, driven by its slot thread.
//!
//! The chain driver takes one element at a time from the task's input — a source reader, or
//! the input gate over its channels — and pushes it through the chained operators as direct
//! calls. Before any operator sees them, the gate takes the minimum watermark over all input
//! channels and aligns checkpoint barriers. What the last operator emits goes to the
//! partitioners of the chain's outgoing edges and into channels.
//!
//! Nothing here blocks. A full channel keeps the element in the channel's pending queue and
//! the task stops taking input until the queue drains — that is how backpressure reaches the
//! sources, and why at most one input element's worth of output waits per task.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::Array;
use arrow::record_batch::RecordBatch;

use super::checkpointing::{CheckpointMessage, CheckpointSignals};
use super::live::{LiveTask, TaskCounters};
use crate::checkpoint::{BarrierAligner, SubtaskSnapshot, TaskKey};
use crate::connector::{SourcePoll, SourceReader};
use crate::element::{StreamElement, Watermark};
use crate::ids::CheckpointId;
use crate::operator::{Operator, OperatorContext, Output};
use crate::runtime::exchange::{InputChannel, OutputChannel, OutputPartitioner};
use crate::state::StateSnapshot;
use crate::time::{SourceWatermarks, WatermarkTracker};
use crate::{Error, Result};

/// Per-operator counters of one subtask. Plain integers: only the slot thread writes them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct OperatorMetrics {
    pub records_in: u64,
    pub records_out: u64,
    pub batches_in: u64,
    pub batches_out: u64,
    /// Malformed input rows skipped under an opt-in skip policy (sources).
    pub skipped_records: u64,
    /// Records that arrived after their window closed (past the allowed lateness) and were
    /// dropped or sent to a side output — counted, never merged silently.
    pub late_records_dropped: u64,
    /// Bytes of keyed state held at the end of the job (or at the last report).
    pub state_bytes: u64,
    /// Keys (groups) in keyed state.
    pub state_keys: u64,
    /// Bytes written to spill files (operators over their memory budget).
    pub spilled_bytes: u64,
}

/// How often operators see the wall clock when nothing else happens: the resolution of
/// processing-time timers and windows.
const PROCESSING_TIME_TICK: Duration = Duration::from_millis(10);

/// What one call to [`Task::step`] achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Work was done; call again.
    Progress,
    /// Nothing to do until a channel or the source has something.
    Idle,
    /// Nothing to do until a full output channel makes room.
    Backpressured,
    /// The task has sent end-of-input downstream and is done.
    Finished,
}

pub(crate) struct ChainedOperator {
    pub name: String,
    pub operator: Box<dyn Operator>,
    pub context: OperatorContext,
    pub metrics: OperatorMetrics,
    pub output: Output,
    /// State to load after `open` (a restarted job).
    pub restore: Option<StateSnapshot>,
    /// The operator emitted the final watermark ([`Watermark::MAX`]) before its input ended;
    /// it goes downstream after what `finish` and `finish_more` emit, so rows a batch operator emits at the
    /// end (a hash join, an aggregation) are not late for the event-time operators after it.
    pub held_final_watermark: bool,
}

pub(crate) struct SourceInput {
    pub name: String,
    pub reader: Box<dyn SourceReader>,
    pub metrics: OperatorMetrics,
    pub watermarks: Option<SourceWatermarks>,
}

pub(crate) struct GateChannel {
    pub channel: Box<dyn InputChannel>,
    pub input_index: usize,
    pub ended: bool,
}

pub(crate) struct InputGate {
    pub channels: Vec<GateChannel>,
    watermarks: WatermarkTracker,
    aligner: BarrierAligner,
    next: usize,
    live: usize,
    /// A channel silent this long is idle and stops holding the watermark back.
    idle_timeout: Option<Duration>,
    last_active: Vec<Instant>,
    next_idle_check: Instant,
    /// The input read to its end before any other is read: the smallest, when every channel
    /// reads a finished (blocking) partition, else the plan's choice; a join builds its hash
    /// table from it.
    first: Option<usize>,
}

impl InputGate {
    /// A gate over `channels`. `read_first` is an input to read to its end before the others
    /// (the plan's choice for a batch join); when every channel reads a finished partition,
    /// the smallest input by bytes is read first instead.
    pub fn new(
        channels: Vec<GateChannel>,
        idle_timeout: Option<Duration>,
        read_first: Option<usize>,
    ) -> Self {
        let n = channels.len();
        let first = smallest_materialized_input(&channels).or(read_first.filter(|&input| {
            // An input no channel feeds has nothing to wait for.
            channels.iter().any(|c| c.input_index == input)
        }));
        InputGate {
            first,
            channels,
            watermarks: WatermarkTracker::new(n),
            aligner: BarrierAligner::new(n),
            next: 0,
            live: n,
            idle_timeout,
            last_active: vec![Instant::now(); n],
            next_idle_check: Instant::now(),
        }
    }

    /// Marks channels idle that have been silent past the timeout; returns a watermark the
    /// exclusion released, if any. Looks at the clock at most every quarter timeout.
    fn detect_idle(&mut self) -> Option<Watermark> {
        let timeout = self.idle_timeout?;
        let now = Instant::now();
        if now < self.next_idle_check {
            return None;
        }
        self.next_idle_check = now + timeout / 4;
        let mut released = None;
        for index in 0..self.channels.len() {
            if !self.channels[index].ended
                && !self.watermarks.is_idle(index)
                && now.duration_since(self.last_active[index]) >= timeout
                && let Some(watermark) = self.watermarks.set_idle(index, true)
            {
                released = Some(watermark);
            }
        }
        released
    }
}

pub(crate) enum TaskInput {
    Source(SourceInput),
    Gate(InputGate),
}

pub(crate) struct OutputEdge {
    pub partitioner: OutputPartitioner,
    pub channels: Vec<PendingChannel>,
}

pub(crate) struct PendingChannel {
    pub channel: Box<dyn OutputChannel>,
    pub pending: VecDeque<StreamElement>,
}

impl PendingChannel {
    pub fn new(channel: Box<dyn OutputChannel>) -> Self {
        PendingChannel {
            channel,
            pending: VecDeque::new(),
        }
    }

    fn send(&mut self, element: StreamElement) -> Result<()> {
        if self.pending.is_empty() {
            if let Some(rejected) = self.channel.try_send(element)? {
                self.pending.push_back(rejected);
            }
        } else {
            self.pending.push_back(element);
        }
        Ok(())
    }

    /// Sends what is pending; returns how many elements went out.
    fn flush(&mut self) -> Result<usize> {
        let mut sent = 0;
        while let Some(element) = self.pending.pop_front() {
            if let Some(rejected) = self.channel.try_send(element)? {
                self.pending.push_front(rejected);
                break;
            }
            sent += 1;
        }
        Ok(sent)
    }
}

pub(crate) struct Task {
    /// "vertex -> vertex" for logs.
    pub name: String,
    pub subtask: u32,
    pub input: TaskInput,
    pub operators: Vec<ChainedOperator>,
    pub outputs: Vec<OutputEdge>,
    /// The operator currently being called, for naming it when it panics.
    pub active: usize,
    input_done: bool,
    /// The operator whose input has ended and whose final output is still being emitted,
    /// one [`Operator::finish_more`] call per step; the operators after it see the end of
    /// input once it is done.
    finishing: Option<usize>,
    scratch: Vec<(usize, RecordBatch)>,
    /// When the operators next see the wall clock ([`Operator::on_processing_time`]).
    next_tick: Instant,
    checkpoints: Option<TaskCheckpoints>,
    /// The slot thread's counters of this task, published to `live` now and then.
    pub counters: TaskCounters,
    live: Arc<LiveTask>,
    /// Reused by [`Task::publish`].
    published: Vec<OperatorMetrics>,
}

/// A task's side of checkpointing.
pub(crate) struct TaskCheckpoints {
    key: TaskKey,
    signals: Arc<CheckpointSignals>,
    /// The latest checkpoint this (source) task injected.
    injected: u64,
    /// The latest completion the operators were told about.
    notified: u64,
    /// Snapshots taken for the barrier passing through the chain, not yet handed over.
    barrier: Option<CheckpointId>,
    parts: Vec<SubtaskSnapshot>,
    /// How long the input's barrier alignment for that barrier took (zero for a source).
    alignment: Duration,
    finished_sent: bool,
}

impl Task {
    pub fn new(
        name: String,
        chain: usize,
        subtask: u32,
        input: TaskInput,
        operators: Vec<ChainedOperator>,
        outputs: Vec<OutputEdge>,
    ) -> Self {
        let mut names = Vec::with_capacity(operators.len() + 1);
        if let TaskInput::Source(source) = &input {
            names.push(source.name.clone());
        }
        names.extend(operators.iter().map(|op| op.name.clone()));
        let source = matches!(input, TaskInput::Source(_));
        Task {
            live: LiveTask::new(chain, subtask, source, names),
            counters: TaskCounters::default(),
            published: Vec::new(),
            name,
            subtask,
            input,
            operators,
            outputs,
            active: 0,
            input_done: false,
            finishing: None,
            scratch: Vec::new(),
            next_tick: Instant::now(),
            checkpoints: None,
        }
    }

    /// Takes part in checkpoints as task `key`.
    pub fn with_checkpoints(mut self, key: TaskKey, signals: Arc<CheckpointSignals>) -> Self {
        let completed = signals.completed();
        self.checkpoints = Some(TaskCheckpoints {
            key,
            signals,
            injected: completed,
            notified: completed,
            barrier: None,
            parts: Vec::new(),
            alignment: Duration::ZERO,
            finished_sent: false,
        });
        self
    }

    /// Tells the operators about a newly completed checkpoint (sinks commit).
    fn notify_completed(&mut self) -> Result<()> {
        let Some(cp) = &mut self.checkpoints else {
            return Ok(());
        };
        let completed = cp.signals.completed();
        if completed <= cp.notified {
            return Ok(());
        }
        cp.notified = completed;
        for (index, op) in self.operators.iter_mut().enumerate() {
            self.active = index;
            op.operator
                .notify_checkpoint_complete(CheckpointId(completed))
                .map_err(|e| Error::Task {
                    operator: op.name.clone(),
                    subtask: self.subtask,
                    source: Box::new(e),
                })?;
        }
        cp.signals.notified(completed);
        Ok(())
    }

    /// A source task injects a newly triggered barrier before its next batch, recording the
    /// reader's position. Returns whether it did.
    fn inject_barrier(&mut self) -> Result<bool> {
        let (Some(cp), TaskInput::Source(source)) = (&mut self.checkpoints, &self.input) else {
            return Ok(false);
        };
        let Some(barrier) = cp.signals.triggered().filter(|b| b.id.0 > cp.injected) else {
            return Ok(false);
        };
        cp.injected = barrier.id.0;
        cp.barrier = Some(barrier.id);
        cp.parts.push(SubtaskSnapshot {
            vertex: source.name.clone(),
            subtask: self.subtask,
            source_position: Some(source.reader.position()),
            state: StateSnapshot::default(),
        });
        self.push(0, 0, StreamElement::Barrier(barrier))?;
        self.hand_over_snapshots();
        Ok(true)
    }

    /// Sends the snapshots of the barrier that just passed through the chain.
    fn hand_over_snapshots(&mut self) {
        let Some(cp) = &mut self.checkpoints else {
            return;
        };
        if let Some(checkpoint) = cp.barrier.take() {
            let parts = std::mem::take(&mut cp.parts);
            cp.signals.send(CheckpointMessage::Snapshot {
                checkpoint,
                task: cp.key,
                parts,
                alignment: std::mem::take(&mut cp.alignment),
            });
        }
    }

    /// Tells the checkpoint coordinator, once, that this task is done.
    fn report_finished(&mut self) {
        if let Some(cp) = &mut self.checkpoints
            && !cp.finished_sent
        {
            cp.finished_sent = true;
            cp.signals
                .send(CheckpointMessage::Finished { task: cp.key });
        }
    }

    /// The cell this task publishes its metrics to.
    pub fn live(&self) -> Arc<LiveTask> {
        Arc::clone(&self.live)
    }

    /// Publishes the task's counters and its operators' metrics (state size included).
    pub fn publish(&mut self, now: Instant) {
        self.counters.settle(now);
        self.published.clear();
        if let TaskInput::Source(source) = &self.input {
            self.published.push(source.metrics);
        }
        for op in &self.operators {
            let mut metrics = op.metrics;
            op.operator.report_metrics(&mut metrics);
            self.published.push(metrics);
        }
        self.live.publish(&self.counters, &self.published);
    }

    /// The name of the operator that was running (for panics), or the source's.
    pub fn active_operator(&self) -> &str {
        match (&self.input, self.operators.get(self.active)) {
            (_, Some(op)) => &op.name,
            (TaskInput::Source(source), None) => &source.name,
            (TaskInput::Gate(_), None) => &self.name,
        }
    }

    pub fn open(&mut self) -> Result<()> {
        for (index, op) in self.operators.iter_mut().enumerate() {
            self.active = index;
            op.operator.open(&op.context).map_err(|e| Error::Task {
                operator: op.name.clone(),
                subtask: self.subtask,
                source: Box::new(e),
            })?;
            if let Some(snapshot) = op.restore.take() {
                op.operator.restore(&snapshot).map_err(|e| Error::Task {
                    operator: op.name.clone(),
                    subtask: self.subtask,
                    source: Box::new(e),
                })?;
            }
        }
        // After the restore: what is left to read from the restored position.
        if let TaskInput::Source(source) = &self.input {
            self.counters.source_total = source.reader.remaining_records();
        }
        self.counters.started = Instant::now();
        Ok(())
    }

    /// Closes every operator; the first error is returned after all were closed.
    pub fn close(&mut self) -> Result<()> {
        let mut first = None;
        for op in &mut self.operators {
            if let Err(e) = op.operator.close()
                && first.is_none()
            {
                first = Some(Error::Task {
                    operator: op.name.clone(),
                    subtask: self.subtask,
                    source: Box::new(e),
                });
            }
        }
        first.map_or(Ok(()), Err)
    }

    fn has_pending(&self) -> bool {
        self.outputs
            .iter()
            .any(|edge| edge.channels.iter().any(|c| !c.pending.is_empty()))
    }

    /// Does one unit of work: flush pending output, or take one input element through the chain.
    pub fn step(&mut self) -> Result<Step> {
        if self.has_pending() {
            let mut sent = 0;
            for edge in &mut self.outputs {
                for channel in &mut edge.channels {
                    sent += channel.flush()?;
                }
            }
            if self.has_pending() {
                return Ok(if sent > 0 {
                    Step::Progress
                } else {
                    Step::Backpressured
                });
            }
        }
        if let Some(level) = self.finishing {
            self.finish_step(level)?;
            return Ok(Step::Progress);
        }
        if self.input_done {
            self.report_finished();
            return Ok(Step::Finished);
        }
        self.notify_completed()?;
        if self.inject_barrier()? {
            return Ok(Step::Progress);
        }
        let now = Instant::now();
        if now >= self.next_tick {
            self.next_tick = now + PROCESSING_TIME_TICK;
            self.tick()?;
        }
        let delivered = match &mut self.input {
            TaskInput::Source(source) => match source.reader.poll_next()? {
                SourcePoll::Batch(batch) => {
                    source.metrics.records_out += batch.num_rows() as u64;
                    source.metrics.batches_out += 1;
                    self.counters.records_in += batch.num_rows() as u64;
                    self.counters.bytes_in += batch_bytes(&batch);
                    let watermark = match &mut source.watermarks {
                        Some(watermarks) => {
                            watermarks.on_batch(source.reader.current_split(), &batch)?
                        }
                        None => None,
                    };
                    let mut elements = vec![StreamElement::Batch(batch)];
                    elements.extend(watermark.map(StreamElement::Watermark));
                    elements
                }
                SourcePoll::Pending | SourcePoll::Idle => return Ok(Step::Idle),
                SourcePoll::Exhausted => {
                    source.metrics.skipped_records = source.reader.skipped_records();
                    self.input_done = true;
                    // End of bounded input: every window may fire.
                    vec![
                        StreamElement::Watermark(Watermark::MAX),
                        StreamElement::EndOfInput,
                    ]
                }
            },
            TaskInput::Gate(gate) => match next_from_gate(gate)? {
                Some((input, elements, input_ended)) => {
                    if elements
                        .iter()
                        .any(|e| matches!(e, StreamElement::EndOfInput))
                    {
                        self.input_done = true;
                    }
                    if let Some(cp) = &mut self.checkpoints
                        && elements
                            .iter()
                            .any(|e| matches!(e, StreamElement::Barrier(_)))
                    {
                        cp.alignment = gate.aligner.last_alignment();
                    }
                    for element in elements {
                        if let StreamElement::Batch(batch) = &element {
                            self.counters.records_in += batch.num_rows() as u64;
                            self.counters.bytes_in += batch_bytes(batch);
                        }
                        self.push(0, input, element)?;
                    }
                    if input_ended {
                        self.end_input(input)?;
                    }
                    self.hand_over_snapshots();
                    return Ok(Step::Progress);
                }
                None => return Ok(Step::Idle),
            },
        };
        for element in delivered {
            self.push(0, 0, element)?;
        }
        Ok(Step::Progress)
    }

    /// Lets every operator of the chain act on the wall clock; what they emit flows on.
    fn tick(&mut self) -> Result<()> {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        for level in 0..self.operators.len() {
            self.call(level, |op, out| op.on_processing_time(now_ms, out))?;
        }
        Ok(())
    }

    /// Pushes `element` into operator `level` of the chain (or to the outputs past the end).
    fn push(&mut self, level: usize, input: usize, element: StreamElement) -> Result<()> {
        if level == 0
            && let StreamElement::Watermark(watermark) = &element
        {
            self.counters.watermark = watermark.0;
        }
        if level == self.operators.len() {
            return self.emit(element);
        }
        self.active = level;
        let subtask = self.subtask;
        let op = &mut self.operators[level];
        let mut out = std::mem::take(&mut op.output);
        let result = match element {
            StreamElement::Batch(batch) => {
                op.metrics.records_in += batch.num_rows() as u64;
                op.metrics.batches_in += 1;
                op.operator.process_batch(input, batch, &mut out)
            }
            StreamElement::Watermark(watermark) => {
                op.operator.process_watermark(watermark, &mut out)
            }
            StreamElement::Barrier(barrier) => op.operator.snapshot(barrier.id).map(|snapshot| {
                // The snapshot goes to the checkpoint thread once the barrier has passed the
                // whole chain; the barrier moves on so downstream operators snapshot the same
                // cut.
                if let Some(cp) = &mut self.checkpoints {
                    cp.barrier = Some(barrier.id);
                    cp.parts.push(SubtaskSnapshot {
                        vertex: op.name.clone(),
                        subtask,
                        source_position: None,
                        state: snapshot,
                    });
                }
                out.push_barrier(barrier);
            }),
            // The end of input goes on once `finish_more` has nothing more (`finish_step`).
            StreamElement::EndOfInput => {
                self.finishing = Some(level);
                op.operator.finish(&mut out)
            }
        };
        result.map_err(|e| Error::Task {
            operator: op.name.clone(),
            subtask,
            source: Box::new(e),
        })?;
        self.forward(level, out)
    }

    /// Sends what the operator at `level` emitted into `out` down the chain, counting its
    /// batches and holding back the final watermark (see [`ChainedOperator`]).
    fn forward(&mut self, level: usize, mut out: Output) -> Result<()> {
        let op = &mut self.operators[level];
        let mut elements = out.take();
        for produced in &elements {
            if let StreamElement::Batch(batch) = produced {
                op.metrics.records_out += batch.num_rows() as u64;
                op.metrics.batches_out += 1;
            }
        }
        let held = elements.len();
        elements.retain(|e| !matches!(e, StreamElement::Watermark(w) if *w == Watermark::MAX));
        op.held_final_watermark |= elements.len() < held;
        op.output = out;
        for produced in elements.drain(..) {
            self.push(level + 1, 0, produced)?;
        }
        self.operators[level].output.recycle(elements);
        Ok(())
    }

    /// Tells the chain's first operator that its input `input` has ended while others go on.
    fn end_input(&mut self, input: usize) -> Result<()> {
        if self.operators.is_empty() {
            return Ok(());
        }
        self.call(0, |op, out| op.end_input(input, out))
    }

    /// Calls the operator at `level` with its output, naming it in a failure, and sends on
    /// what it emitted.
    fn call<T>(
        &mut self,
        level: usize,
        f: impl FnOnce(&mut dyn Operator, &mut Output) -> Result<T>,
    ) -> Result<T> {
        self.active = level;
        let subtask = self.subtask;
        let op = &mut self.operators[level];
        let mut out = std::mem::take(&mut op.output);
        let value = f(op.operator.as_mut(), &mut out).map_err(|e| Error::Task {
            operator: op.name.clone(),
            subtask,
            source: Box::new(e),
        })?;
        self.forward(level, out)?;
        Ok(value)
    }

    /// Lets the operator at `level`, whose input has ended, emit the next part of its final
    /// output and sends it down the chain; once it has nothing more, the end of input (after
    /// the final watermark it held back) goes to the next operator.
    fn finish_step(&mut self, level: usize) -> Result<()> {
        let more = self.call(level, |op, out| op.finish_more(out))?;
        if !more {
            self.finishing = None;
            if std::mem::take(&mut self.operators[level].held_final_watermark) {
                self.push(level + 1, 0, StreamElement::Watermark(Watermark::MAX))?;
            }
            self.push(level + 1, 0, StreamElement::EndOfInput)?;
        }
        Ok(())
    }

    /// Sends a chain output to every outgoing edge.
    fn emit(&mut self, element: StreamElement) -> Result<()> {
        match element {
            StreamElement::Batch(batch) => {
                if !self.outputs.is_empty() {
                    self.counters.records_out += batch.num_rows() as u64;
                    self.counters.bytes_out += batch_bytes(&batch);
                }
                for edge in &mut self.outputs {
                    let channels = edge.channels.len();
                    edge.partitioner
                        .partition(&batch, channels, &mut self.scratch)?;
                    for (channel, piece) in self.scratch.drain(..) {
                        edge.channels[channel].send(StreamElement::Batch(piece))?;
                    }
                }
            }
            control @ (StreamElement::Watermark(_)
            | StreamElement::Barrier(_)
            | StreamElement::EndOfInput) => {
                for edge in &mut self.outputs {
                    for channel in &mut edge.channels {
                        channel.send(control.clone())?;
                    }
                }
            }
        }
        Ok(())
    }

    /// The per-operator metrics of this task, source first.
    pub fn metrics(&self) -> Vec<(String, OperatorMetrics)> {
        let mut all = Vec::with_capacity(self.operators.len() + 1);
        if let TaskInput::Source(source) = &self.input {
            all.push((source.name.clone(), source.metrics));
        }
        all.extend(self.operators.iter().map(|op| {
            let mut metrics = op.metrics;
            op.operator.report_metrics(&mut metrics);
            (op.name.clone(), metrics)
        }));
        all
    }
}

/// A batch's size as the task metrics count it: the bytes of its rows in Arrow memory (of a
/// slice, only the slice's part; spare buffer capacity is not counted).
fn batch_bytes(batch: &RecordBatch) -> u64 {
    batch
        .columns()
        .iter()
        .map(|column| {
            let data = column.to_data();
            data.get_slice_memory_size()
                .unwrap_or_else(|_| column.get_array_memory_size()) as u64
        })
        .sum()
}

/// Of two or more inputs whose channels all read finished partitions, the one with the fewest
/// bytes; `None` when any channel is fed while it is read, or for one input.
fn smallest_materialized_input(channels: &[GateChannel]) -> Option<usize> {
    let mut bytes: BTreeMap<usize, u64> = BTreeMap::new();
    for channel in channels {
        *bytes.entry(channel.input_index).or_default() += channel.channel.materialized_bytes()?;
    }
    if bytes.len() < 2 {
        return None;
    }
    bytes
        .into_iter()
        .min_by_key(|&(input, bytes)| (bytes, input))
        .map(|(input, _)| input)
}

/// Takes the next element from the gate, round-robin over channels that are neither ended nor
/// blocked by barrier alignment. Returns the input index and what the chain should see (a data
/// batch, or the combined watermark / aligned barrier / end-of-input it resulted in).
/// The next elements from the gate, with the input they came from and whether that input
/// has now ended while others go on.
fn next_from_gate(gate: &mut InputGate) -> Result<Option<(usize, Vec<StreamElement>, bool)>> {
    // Idleness is checked even while other channels deliver: a busy channel must not keep an
    // idle one from being excluded.
    if let Some(watermark) = gate.detect_idle() {
        return Ok(Some((0, vec![StreamElement::Watermark(watermark)], false)));
    }
    let n = gate.channels.len();
    for offset in 0..n {
        let index = (gate.next + offset) % n;
        let channel = &mut gate.channels[index];
        if channel.ended
            || gate.aligner.is_blocked(index)
            || gate.first.is_some_and(|first| first != channel.input_index)
        {
            continue;
        }
        let Some(element) = channel.channel.try_recv()? else {
            continue;
        };
        gate.next = (index + 1) % n;
        let input = channel.input_index;
        let mut out = Vec::with_capacity(1);
        let mut input_ended = false;
        if gate.idle_timeout.is_some() {
            gate.last_active[index] = Instant::now();
            if gate.watermarks.is_idle(index) {
                // Back from idleness: it holds the watermark again (which never goes back).
                gate.watermarks.set_idle(index, false);
            }
        }
        match element {
            StreamElement::Batch(batch) => out.push(StreamElement::Batch(batch)),
            StreamElement::Watermark(watermark) => {
                if let Some(combined) = gate.watermarks.update(index, watermark) {
                    out.push(StreamElement::Watermark(combined));
                }
            }
            StreamElement::Barrier(barrier) => {
                if let Some(aligned) = gate.aligner.on_barrier(index, barrier) {
                    out.push(StreamElement::Barrier(aligned));
                }
            }
            StreamElement::EndOfInput => {
                channel.ended = true;
                gate.live -= 1;
                if let Some(combined) = gate.watermarks.end(index) {
                    out.push(StreamElement::Watermark(combined));
                }
                if let Some(aligned) = gate.aligner.on_end(index) {
                    out.push(StreamElement::Barrier(aligned));
                }
                if gate.live == 0 {
                    out.push(StreamElement::EndOfInput);
                } else {
                    input_ended = gate
                        .channels
                        .iter()
                        .filter(|c| c.input_index == input)
                        .all(|c| c.ended);
                    if input_ended && gate.first == Some(input) {
                        gate.first = None;
                    }
                }
            }
        }
        return Ok(Some((input, out, input_ended)));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;
    use crate::ids::SubtaskIndex;
    use crate::runtime::exchange::{BlockingExchange, ChannelId, ExchangeFactory, SlotWaker};

    /// A finished blocking partition on edge `edge` holding `rows` rows in one batch.
    fn partition(exchange: &BlockingExchange, edge: u32, rows: i64) -> ChannelId {
        let id = ChannelId {
            edge,
            from: SubtaskIndex(0),
            to: SubtaskIndex(0),
        };
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        let batch = RecordBatch::try_new(
            schema,
            vec![Arc::new(Int64Array::from_iter_values(0..rows))],
        )
        .unwrap();
        let mut output = exchange.output(id, &SlotWaker::new()).unwrap();
        output.try_send(StreamElement::Batch(batch)).unwrap();
        output.try_send(StreamElement::EndOfInput).unwrap();
        id
    }

    #[test]
    fn a_gate_over_finished_partitions_reads_the_smallest_input_to_its_end_first() {
        let dir = tempfile::tempdir().unwrap();
        let exchange = BlockingExchange::new(dir.path(), 0, 0);
        // Input 0 (two channels) is larger than input 1 (one channel).
        let inputs = [(0, 1_000), (0, 2_000), (1, 100)];
        let channels = inputs
            .iter()
            .enumerate()
            .map(|(edge, &(input_index, rows))| GateChannel {
                channel: exchange
                    .input(partition(&exchange, edge as u32, rows), &SlotWaker::new())
                    .unwrap(),
                input_index,
                ended: false,
            })
            .collect();
        let mut gate = InputGate::new(channels, None, None);
        let mut order = Vec::new();
        while let Some((input, elements, input_ended)) = next_from_gate(&mut gate).unwrap() {
            for element in elements {
                if let StreamElement::Batch(batch) = element {
                    order.push((input, batch.num_rows()));
                }
            }
            if input_ended {
                order.push((input, 0));
            }
        }
        assert_eq!(order[..2], [(1, 100), (1, 0)], "{order:?}");
        let mut rest = order[2..].to_vec();
        rest.sort_unstable();
        assert_eq!(rest, [(0, 1_000), (0, 2_000)]);
    }

    #[test]
    fn a_gate_reads_the_planned_input_to_its_end_before_the_other() {
        let local = crate::runtime::exchange::LocalExchange::new(8);
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        let batch = |rows: i64| {
            StreamElement::Batch(
                RecordBatch::try_new(
                    schema.clone(),
                    vec![Arc::new(Int64Array::from_iter_values(0..rows))],
                )
                .unwrap(),
            )
        };
        let mut channels = Vec::new();
        let mut outputs = Vec::new();
        for input_index in [0, 1] {
            let id = ChannelId {
                edge: input_index as u32,
                from: SubtaskIndex(0),
                to: SubtaskIndex(0),
            };
            channels.push(GateChannel {
                channel: local.input(id, &SlotWaker::new()).unwrap(),
                input_index,
                ended: false,
            });
            outputs.push(local.output(id, &SlotWaker::new()).unwrap());
        }
        // Input 0 has rows waiting; input 1, the planned first, has one batch but no end yet.
        assert!(outputs[0].try_send(batch(10)).unwrap().is_none());
        assert!(outputs[1].try_send(batch(20)).unwrap().is_none());
        let mut gate = InputGate::new(channels, None, Some(1));
        let (input, _, ended) = next_from_gate(&mut gate).unwrap().unwrap();
        assert_eq!((input, ended), (1, false));
        // Input 0 waits while input 1 goes on.
        assert!(next_from_gate(&mut gate).unwrap().is_none());
        assert!(
            outputs[1]
                .try_send(StreamElement::EndOfInput)
                .unwrap()
                .is_none()
        );
        let (input, _, ended) = next_from_gate(&mut gate).unwrap().unwrap();
        assert_eq!((input, ended), (1, true));
        let (input, elements, _) = next_from_gate(&mut gate).unwrap().unwrap();
        assert_eq!(input, 0);
        assert!(matches!(&elements[..], [StreamElement::Batch(b)] if b.num_rows() == 10));
    }

    #[test]
    fn a_gate_with_a_channel_fed_while_read_selects_no_input() {
        let dir = tempfile::tempdir().unwrap();
        let blocking = BlockingExchange::new(dir.path(), 0, 0);
        let local = crate::runtime::exchange::LocalExchange::new(4);
        let pipelined = ChannelId {
            edge: 9,
            from: SubtaskIndex(0),
            to: SubtaskIndex(0),
        };
        let channels = vec![
            GateChannel {
                channel: blocking
                    .input(partition(&blocking, 0, 10), &SlotWaker::new())
                    .unwrap(),
                input_index: 0,
                ended: false,
            },
            GateChannel {
                channel: local.input(pipelined, &SlotWaker::new()).unwrap(),
                input_index: 1,
                ended: false,
            },
        ];
        assert_eq!(smallest_materialized_input(&channels), None);
    }
}
