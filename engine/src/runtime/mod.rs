//! The task runtime: turns a JobGraph into running tasks on slot threads.
//!
//! [`LocalRuntime`] is the embedded mini-cluster: one process, N slots (one pinned thread each,
//! default one per core), in-process channels between slots. The multi-process cluster reuses
//! the same pieces — [`ExecutionGraph`], tasks, slots — with an [`exchange::ExchangeFactory`]
//! that reaches other TaskManagers.

mod checkpointing;
mod control;
mod deploy;
pub mod exchange;
mod execution_graph;
mod interrupt;
mod live;
mod result;
mod slice_checkpoints;
mod slot;
mod stages;
mod task;

pub use control::{SavepointTrigger, request_savepoint};
pub use deploy::{
    CancelHandle, DeployedJob, ExecutionState, JobSlice, TaskEvent, TaskListener, now_ms,
};
pub use execution_graph::{Chain, ExecutionGraph, TaskPlacement};
pub use interrupt::CancelRequest;
pub use live::{JobObserver, LiveMetrics, LiveTask, Observer, TaskSample};
pub use result::{CheckpointStats, JobResult, VertexMetrics};
pub use slice_checkpoints::{
    CheckpointEvent, CheckpointListener, SliceCheckpointHandle, SliceCheckpointing,
};
pub use task::OperatorMetrics;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use crate::checkpoint::{
    CheckpointConfig, CheckpointStorage, RestartStrategy, RestoredCheckpoint, StatePath,
    StateStores, TaskKey,
};
use crate::connector::{CollectedResults, SinkResources};
use crate::graph::{BatchShuffleMode, JobGraph, OperatorSpec};
use crate::ids::{JobId, SlotId, SubtaskIndex};
use crate::operator::{OperatorContext, OperatorRegistry, Output};
use crate::state::KeyGroupRange;
use crate::{Error, Result};
use checkpointing::{CheckpointReport, CheckpointSignals, CheckpointThread, SavepointRequest};
use exchange::{ChannelId, ExchangeFactory, LocalExchange, OutputPartitioner, SlotWaker};
use slot::{JobControl, SlotReport};
use task::{
    ChainedOperator, GateChannel, InputGate, OutputEdge, PendingChannel, SourceInput, Task,
    TaskInput,
};

/// Settings of the local runtime.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Number of slots (worker threads). Default: the number of cores.
    pub slots: usize,
    /// Capacity of each in-process channel, in elements (batches). Default 4.
    pub channel_capacity: usize,
    /// Target rows per batch produced by sources. Default 8192.
    pub batch_size: usize,
    /// Pin each slot thread to a core. Default true.
    pub pin_threads: bool,
    /// An input channel without elements for this long is idle and no longer holds back the
    /// watermark (Flink's `table.exec.source.idle-timeout`). Default: never idle.
    pub idle_timeout: Option<Duration>,
    /// Periodic aligned checkpoints (`execution.checkpointing.*`). Default: off.
    pub checkpointing: Option<CheckpointConfig>,
    /// What a failure does (`restart-strategy.*`). Default: fail the job.
    pub restart_strategy: RestartStrategy,
    /// A savepoint or retained checkpoint directory (holding `_metadata`; local or on an
    /// object store) that the job's first attempt restores from (Flink's `--fromSavepoint`).
    /// Default: start empty.
    pub initial_restore: Option<StatePath>,
    /// The stores checkpoints, savepoints and restores may use: the local file system, and
    /// object stores when the process registered them (with their `s3.*` settings).
    /// Default: local only.
    pub state_stores: StateStores,
    /// Serve job control (savepoints) on a Unix socket `<dir>/<job-id>.sock` while a job
    /// runs; see [`SavepointTrigger`]. Default: off.
    pub control_dir: Option<PathBuf>,
    /// Cancels the running job when requested (the client's Ctrl-C). Default: none.
    pub cancel_request: Option<CancelRequest>,
    /// Sees every job [`LocalRuntime::execute`] runs start and end. Default: none.
    pub observer: Option<Observer>,
    /// Managed memory of all slots together (`taskmanager.memory.managed.size`): each slot
    /// gets an equal part, split evenly among the job's memory-consuming operators (batch
    /// joins, sorts, aggregations), which spill beyond their share. Default: 40% of the
    /// machine's physical memory, as Flink's `taskmanager.memory.managed.fraction`.
    pub managed_memory: u64,
    /// Where operators spill (`io.tmp.dirs`). Default: the system's temporary directory.
    pub spill_dir: PathBuf,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            slots: std::thread::available_parallelism().map_or(1, |n| n.get()),
            channel_capacity: 4,
            batch_size: 8192,
            pin_threads: true,
            idle_timeout: None,
            checkpointing: None,
            restart_strategy: RestartStrategy::None,
            initial_restore: None,
            state_stores: StateStores::default(),
            control_dir: None,
            cancel_request: None,
            observer: None,
            managed_memory: default_managed_memory(),
            spill_dir: std::env::temp_dir(),
        }
    }
}

/// 40% of the physical memory (`/proc/meminfo`), or 1 GiB where that cannot be read.
fn default_managed_memory() -> u64 {
    match proc_kilobytes("/proc/meminfo", "MemTotal:") {
        0 => 1 << 30,
        total => total / 10 * 4,
    }
}

/// A `KEY: N kB` line of a `/proc` file (`/proc/meminfo`, `/proc/self/status`), in bytes;
/// 0 where it cannot be read.
pub fn proc_kilobytes(path: &str, key: &str) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|line| line.strip_prefix(key))
                .and_then(|rest| {
                    rest.trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<u64>()
                        .ok()
                })
        })
        .map_or(0, |kb| kb * 1024)
}

impl RuntimeConfig {
    pub fn with_slots(mut self, slots: usize) -> Self {
        self.slots = slots.max(1);
        self
    }

    pub fn with_batch_size(mut self, rows: usize) -> Self {
        self.batch_size = rows.max(1);
        self
    }

    pub fn with_channel_capacity(mut self, elements: usize) -> Self {
        self.channel_capacity = elements.max(1);
        self
    }

    pub fn with_pinning(mut self, pin: bool) -> Self {
        self.pin_threads = pin;
        self
    }

    pub fn with_checkpointing(mut self, config: Option<CheckpointConfig>) -> Self {
        self.checkpointing = config;
        self
    }

    pub fn with_restart_strategy(mut self, strategy: RestartStrategy) -> Self {
        self.restart_strategy = strategy;
        self
    }

    /// Restores the job's first attempt from the savepoint or completed checkpoint in `dir`.
    pub fn with_initial_restore(mut self, dir: Option<impl Into<StatePath>>) -> Self {
        self.initial_restore = dir.map(Into::into);
        self
    }

    /// Checkpoints, savepoints and restores reach the stores of `stores`.
    pub fn with_state_stores(mut self, stores: StateStores) -> Self {
        self.state_stores = stores;
        self
    }

    /// Serves savepoint requests for running jobs on `<dir>/<job-id>.sock`.
    pub fn with_control_dir(mut self, dir: Option<PathBuf>) -> Self {
        self.control_dir = dir;
        self
    }

    /// Cancels the running job when `request` is made.
    pub fn with_cancel_request(mut self, request: Option<CancelRequest>) -> Self {
        self.cancel_request = request;
        self
    }

    pub fn with_observer(mut self, observer: Option<Arc<dyn JobObserver>>) -> Self {
        self.observer = observer.map(Observer);
        self
    }

    /// Managed memory of all slots together; see [`RuntimeConfig::managed_memory`].
    pub fn with_managed_memory(mut self, bytes: u64) -> Self {
        self.managed_memory = bytes;
        self
    }

    /// Operators spill into `dir`.
    pub fn with_spill_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.spill_dir = dir.into();
        self
    }

    /// The memory budget of one instance of a memory-consuming operator in a job with
    /// `consumers` of them: an equal part of one slot's managed memory.
    pub fn operator_memory(&self, consumers: usize) -> crate::spill::MemoryBudget {
        let per_slot = self.managed_memory / self.slots.max(1) as u64;
        let share = per_slot / consumers.max(1) as u64;
        crate::spill::MemoryBudget::new(
            usize::try_from(share).unwrap_or(usize::MAX),
            self.spill_dir.clone(),
        )
    }

    pub fn with_idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.idle_timeout = timeout.filter(|t| !t.is_zero());
        self
    }
}

/// What a job needs besides its graph: factories for custom operators and per-job sink
/// resources (collected results).
#[derive(Debug, Clone, Default)]
pub struct JobEnvironment {
    pub registry: OperatorRegistry,
    pub collected: CollectedResults,
    /// The job's `'connector' = 'flight'` sink tables, which a Flight service serves.
    pub sink_tables: crate::connector::SinkTables,
}

/// The embedded mini-cluster.
#[derive(Debug, Clone, Default)]
pub struct LocalRuntime {
    config: RuntimeConfig,
}

/// A running job. Dropping it does not stop the job; call [`JobHandle::cancel`].
///
/// With a restart strategy, [`JobHandle::wait`] also restarts the job after a retryable
/// failure: it stops every task, rebuilds the job from its graph, restores every operator and
/// source from the latest completed checkpoint (or starts over without one) and goes on.
pub struct JobHandle {
    job_id: JobId,
    name: String,
    started: Instant,
    /// The control of the running attempt (replaced on restart).
    control: Arc<Mutex<Arc<JobControl>>>,
    cancelled: Arc<AtomicBool>,
    attempt: Attempt,
    /// The running attempt's task metrics.
    live: LiveMetrics,
    graph: JobGraph,
    config: RuntimeConfig,
    env: JobEnvironment,
    storage: Option<CheckpointStorage>,
    /// The savepoint the job started from, if any: restarts before the job's own first
    /// completed checkpoint go back to it.
    initial: Option<RestoredCheckpoint>,
    savepoints: SavepointTrigger,
    savepoint_requests: crossbeam_channel::Receiver<SavepointRequest>,
    /// The job-control socket, removed when the handle goes.
    _control: Option<control::ControlServer>,
    /// Cancels the job on a [`CancelRequest`]; stops when the handle goes.
    _cancel_watcher: Option<interrupt::CancelWatcher>,
}

/// One run of the job's tasks, from start or from a checkpoint.
struct Attempt {
    control: Arc<JobControl>,
    /// The slot threads, or the one stage scheduler thread of a staged batch job.
    threads: Vec<JoinHandle<SlotReport>>,
    checkpoints: Option<CheckpointThread>,
    /// A staged batch job's stage restarts; `None` when every task runs at once.
    stage_restarts: Option<stages::StageRestarts>,
}

impl LocalRuntime {
    pub fn new(config: RuntimeConfig) -> Self {
        LocalRuntime { config }
    }

    pub fn config(&self) -> &RuntimeConfig {
        &self.config
    }

    /// Runs a bounded job to its end and returns its result, or the first failure.
    pub fn execute(&self, graph: &JobGraph, env: &JobEnvironment) -> Result<JobResult> {
        let handle = self.submit(graph, env)?;
        let Some(Observer(observer)) = &self.config.observer else {
            return handle.wait();
        };
        observer.job_started(&graph.name, handle.live_metrics());
        let result = handle.wait();
        observer.job_ended(&graph.name);
        result
    }

    /// Starts a job and returns at once.
    pub fn submit(&self, graph: &JobGraph, env: &JobEnvironment) -> Result<JobHandle> {
        crate::alloc::tune();
        let job_id = JobId::generate();
        let started = Instant::now();
        let stores = &self.config.state_stores;
        let storage = match &self.config.checkpointing {
            Some(c) => Some(
                CheckpointStorage::open(stores, &c.dir, &job_id, c.num_retained)?
                    .with_incremental(c.incremental),
            ),
            None => None,
        };
        let initial = match &self.config.initial_restore {
            Some(dir) => {
                let restored = CheckpointStorage::load_from(stores, dir)?;
                info!(job_id = %job_id, path = %dir, checkpoint_id = restored.checkpoint_id().0, "restoring job from savepoint");
                Some(restored)
            }
            None => None,
        };
        let (requests, receiver) = crossbeam_channel::unbounded();
        let savepoints = SavepointTrigger::new(
            job_id.clone(),
            self.config.checkpointing.as_ref().map(|c| c.dir.clone()),
            requests,
        );
        let live = LiveMetrics::default();
        let attempt = start_attempt(
            &self.config,
            graph,
            env,
            &job_id,
            storage.as_ref(),
            initial.as_ref().map(|c| Restore {
                checkpoint: Some(c),
            }),
            &receiver,
            &live,
        )?;
        let control_of_attempt = Arc::new(Mutex::new(attempt.control.clone()));
        let cancelled = Arc::new(AtomicBool::new(false));
        let cancel_watcher = match &self.config.cancel_request {
            Some(request) => {
                let (control, cancelled) = (control_of_attempt.clone(), cancelled.clone());
                // Like job control, a convenience: without the watcher the job runs on but
                // cannot be cancelled from outside (its tasks run already; failing here would
                // strand them).
                interrupt::CancelWatcher::start(request, &job_id, move || {
                    cancel_job(&cancelled, &control)
                })
                .inspect_err(|error| {
                    warn!(job_id = %job_id, %error, "no cancel watcher; Ctrl-C cannot cancel the job");
                })
                .ok()
            }
            None => None,
        };
        // After the cancel watcher: once the socket exists, Ctrl-C cancels the job.
        // Job control is a convenience: a job whose socket cannot be opened runs without it.
        let control = self.config.control_dir.as_ref().and_then(|dir| {
            control::ControlServer::start(dir, savepoints.clone())
                .inspect_err(|error| {
                    warn!(job_id = %job_id, %error, "no job control socket; savepoints cannot be requested");
                })
                .ok()
        });
        Ok(JobHandle {
            job_id,
            name: graph.name.clone(),
            started,
            control: control_of_attempt,
            live,
            cancelled,
            attempt,
            graph: graph.clone(),
            config: self.config.clone(),
            env: env.clone(),
            storage,
            initial,
            savepoints,
            savepoint_requests: receiver,
            _control: control,
            _cancel_watcher: cancel_watcher,
        })
    }
}

/// Cancels a job: no restart after this, and every task of the running attempt stops.
fn cancel_job(cancelled: &AtomicBool, control: &Mutex<Arc<JobControl>>) {
    cancelled.store(true, Ordering::Release);
    control.lock().unwrap_or_else(|p| p.into_inner()).cancel();
}

/// Builds every task (restored from `restored` when given) and starts the slot threads and,
/// with checkpointing on, the checkpoint thread; `live` then shows the new tasks.
///
/// A batch job with blocking exchanges and without checkpoints runs stage by stage instead
/// (see [`stages`]).
#[expect(
    clippy::too_many_arguments,
    reason = "two call sites (start and restart), all job-wide context"
)]
fn start_attempt(
    config: &RuntimeConfig,
    graph: &JobGraph,
    env: &JobEnvironment,
    job_id: &JobId,
    storage: Option<&CheckpointStorage>,
    restored: Option<Restore<'_>>,
    savepoints: &crossbeam_channel::Receiver<SavepointRequest>,
    live: &LiveMetrics,
) -> Result<Attempt> {
    let mut execution = ExecutionGraph::new(graph, config.slots as u32);
    // A job restored from a savepoint resumes its operators' state, which the stages (each
    // started fresh) would not: it runs pipelined.
    if graph.shuffle_mode() == BatchShuffleMode::AllExchangesBlocking
        && config.checkpointing.is_none()
        && restored.is_none()
    {
        // Without exchanges (one chain) there is one stage: it runs as any other job.
        execution = execution.with_blocking_exchanges();
        if execution.is_staged() {
            let control = Arc::new(JobControl::default());
            info!(job_id = %job_id, name = %graph.name, stages = execution.chains.len(), tasks = execution.tasks.len(), "job started, stage by stage");
            let (scheduler, restarts) = stages::start(
                config,
                graph,
                env,
                job_id,
                execution,
                control.clone(),
                live.clone(),
            )?;
            return Ok(Attempt {
                control,
                threads: vec![scheduler],
                checkpoints: None,
                stage_restarts: Some(restarts),
            });
        }
    }
    let exchange = LocalExchange::new(config.channel_capacity);
    let slots = execution.slots as usize;
    let wakers: Vec<SlotWaker> = (0..slots).map(|_| SlotWaker::new()).collect();
    let resources = SinkResources {
        collected: env.collected.clone(),
        sink_tables: env.sink_tables.clone(),
    };
    let control = Arc::new(JobControl::default());
    for waker in &wakers {
        control.add_waker(waker.clone());
    }
    let checkpointing = match (&config.checkpointing, storage) {
        (Some(checkpoint_config), Some(storage)) => {
            let tasks = execution
                .tasks
                .iter()
                .map(|p| TaskKey {
                    chain: p.chain,
                    subtask: p.subtask.0,
                })
                .collect();
            let last = restored
                .and_then(|r| r.checkpoint)
                .map(|c| c.checkpoint_id());
            let (thread, signals) = CheckpointThread::start(
                checkpoint_config,
                storage.clone(),
                tasks,
                last,
                control.clone(),
                savepoints.clone(),
            )?;
            Some((thread, signals))
        }
        _ => None,
    };

    let mut per_slot: Vec<Vec<Task>> = (0..slots).map(|_| Vec::new()).collect();
    for placement in &execution.tasks {
        let waker = &wakers[placement.slot.0 as usize];
        let mut task = build_task(
            graph,
            &execution,
            placement.chain,
            placement.subtask,
            config,
            env,
            &resources,
            &exchange,
            waker,
            restored,
        )?;
        if let Some((_, signals)) = &checkpointing {
            let signals: &Arc<CheckpointSignals> = signals;
            task = task.with_checkpoints(
                TaskKey {
                    chain: placement.chain,
                    subtask: placement.subtask.0,
                },
                signals.clone(),
            );
        }
        per_slot[placement.slot.0 as usize].push(task);
    }

    info!(job_id = %job_id, name = %graph.name, slots, tasks = execution.tasks.len(), "job started");
    live.replace(per_slot.iter().flatten().map(Task::live).collect());
    let threads = start_slots(config, per_slot, &control, &wakers, || {})?;
    Ok(Attempt {
        control,
        threads,
        checkpoints: checkpointing.map(|(thread, _)| thread),
        stage_restarts: None,
    })
}

/// The cores slot threads are pinned to, in slot order (none without pinning).
fn pinned_cores(config: &RuntimeConfig) -> Vec<core_affinity::CoreId> {
    if config.pin_threads {
        core_affinity::get_core_ids().unwrap_or_default()
    } else {
        Vec::new()
    }
}

/// Starts a thread for each slot of `per_slot` that has tasks, pinned to a core when
/// configured; `ended` runs on the thread once its slot has ended.
fn start_slots(
    config: &RuntimeConfig,
    per_slot: Vec<Vec<Task>>,
    control: &Arc<JobControl>,
    wakers: &[SlotWaker],
    ended: impl Fn() + Clone + Send + 'static,
) -> Result<Vec<JoinHandle<SlotReport>>> {
    let cores = pinned_cores(config);
    let mut threads = Vec::with_capacity(per_slot.len());
    for (index, tasks) in per_slot.into_iter().enumerate() {
        if tasks.is_empty() {
            continue;
        }
        let (control, waker, ended) = (control.clone(), wakers[index].clone(), ended.clone());
        let core = (!cores.is_empty()).then(|| cores[index % cores.len()]);
        let thread = std::thread::Builder::new()
            .name(format!("sluice-slot-{index}"))
            .spawn(move || {
                let report =
                    slot::run_slot(SlotId(index as u32), tasks, control, waker, core, None);
                ended();
                report
            })
            .map_err(|e| Error::io("start slot thread", format!("slot {index}"), e))?;
        threads.push(thread);
    }
    Ok(threads)
}

/// What a restarted attempt resumes from: a checkpoint, or the beginning (`None`).
///
/// Every operator of a restored attempt is restored, with its state from the checkpoint or
/// with nothing, so sinks discard what a failed attempt staged after the checkpoint.
#[derive(Clone, Copy)]
pub struct Restore<'a> {
    pub checkpoint: Option<&'a RestoredCheckpoint>,
}

impl Attempt {
    /// Waits for every slot thread, then stops the checkpoint thread.
    fn join(
        self,
    ) -> (
        Vec<SlotReport>,
        bool,
        Arc<JobControl>,
        CheckpointReport,
        u32,
    ) {
        let mut reports = Vec::new();
        let mut panicked = false;
        for thread in self.threads {
            match thread.join() {
                Ok(report) => reports.push(report),
                Err(_) => panicked = true,
            }
        }
        let checkpoints = self
            .checkpoints
            .map(CheckpointThread::stop)
            .unwrap_or_default();
        // Read once the scheduler has ended.
        let stage_restarts = self
            .stage_restarts
            .as_ref()
            .map_or(0, |r| r.load(Ordering::Acquire));
        (reports, panicked, self.control, checkpoints, stage_restarts)
    }
}

impl JobHandle {
    pub fn job_id(&self) -> &JobId {
        &self.job_id
    }

    /// Asks every task to stop; [`JobHandle::wait`] then returns [`Error::Cancelled`].
    pub fn cancel(&self) {
        cancel_job(&self.cancelled, &self.control);
    }

    /// Triggers savepoints of this job (also from other threads).
    pub fn savepoint_trigger(&self) -> SavepointTrigger {
        self.savepoints.clone()
    }

    /// The running tasks' metrics, readable from another thread while [`JobHandle::wait`]
    /// runs; after a restart, those of the new attempt.
    pub fn live_metrics(&self) -> LiveMetrics {
        self.live.clone()
    }

    /// Whether every slot thread of the current attempt has ended.
    pub fn is_finished(&self) -> bool {
        self.attempt.threads.iter().all(|t| t.is_finished())
    }

    /// Waits for the job to end, restarting it after retryable failures as the restart
    /// strategy allows.
    pub fn wait(mut self) -> Result<JobResult> {
        let mut restarts = 0u32;
        let mut checkpoints_completed = 0u64;
        let mut last_checkpoint = None;
        let mut restored_from = self.initial.as_ref().map(|c| c.checkpoint_id());
        let mut stopped_with = None;
        let (reports, panicked, control) = loop {
            let staged = self.attempt.stage_restarts.is_some();
            let (reports, panicked, control, checkpoints, stage_restarts) = self.attempt.join();
            restarts += stage_restarts;
            checkpoints_completed += checkpoints.completed;
            last_checkpoint = checkpoints.last.or(last_checkpoint);
            stopped_with = checkpoints.stopped_with.or(stopped_with);
            let Some(failure) = control.take_failure() else {
                break (reports, panicked, control);
            };
            let may_restart = match self.config.restart_strategy {
                RestartStrategy::FixedDelay { attempts, delay } if restarts < attempts => {
                    Some(delay)
                }
                _ => None,
            };
            // A staged job has run its failed stage again as often as the strategy allows.
            let Some(delay) = may_restart.filter(|_| {
                !staged && failure.is_retryable() && !self.cancelled.load(Ordering::Acquire)
            }) else {
                info!(job_id = %self.job_id, error = %failure, "job failed");
                return Err(failure);
            };
            restarts += 1;
            warn!(job_id = %self.job_id, error = %failure, attempt = restarts, delay_ms = delay.as_millis() as u64, "task failed; restarting the job");
            std::thread::sleep(delay);
            let checkpoint = match &self.storage {
                Some(storage) => storage.load_latest()?,
                None => None,
            }
            .or_else(|| self.initial.clone());
            restored_from = checkpoint.as_ref().map(|c| c.checkpoint_id());
            info!(job_id = %self.job_id, checkpoint_id = restored_from.map(|c| c.0), "restoring job");
            self.attempt = start_attempt(
                &self.config,
                &self.graph,
                &self.env,
                &self.job_id,
                self.storage.as_ref(),
                Some(Restore {
                    checkpoint: checkpoint.as_ref(),
                }),
                &self.savepoint_requests,
                &self.live,
            )?;
            *self.control.lock().unwrap_or_else(|p| p.into_inner()) = self.attempt.control.clone();
            if self.cancelled.load(Ordering::Acquire) {
                self.attempt.control.cancel();
            }
        };
        let wall_time = self.started.elapsed();
        if panicked {
            return Err(Error::Internal(
                "a slot thread panicked outside a task".into(),
            ));
        }
        if control.is_cancelled() && stopped_with.is_none() {
            return Err(Error::Cancelled);
        }
        let mut by_vertex: BTreeMap<String, OperatorMetrics> = BTreeMap::new();
        for report in reports {
            for (_subtask, operators) in report {
                for (name, metrics) in operators {
                    let total = by_vertex.entry(name).or_default();
                    total.records_in += metrics.records_in;
                    total.records_out += metrics.records_out;
                    total.batches_in += metrics.batches_in;
                    total.batches_out += metrics.batches_out;
                    total.skipped_records += metrics.skipped_records;
                    total.late_records_dropped += metrics.late_records_dropped;
                    total.state_bytes += metrics.state_bytes;
                    total.state_keys += metrics.state_keys;
                    total.spilled_bytes += metrics.spilled_bytes;
                }
            }
        }
        let vertices = self
            .graph
            .vertices()
            .iter()
            .map(|v| VertexMetrics {
                name: v.name.clone(),
                kind: v.operator.kind_name(),
                parallelism: v.parallelism,
                metrics: by_vertex.get(&v.name).copied().unwrap_or_default(),
            })
            .collect();
        let wall_ms = wall_time.as_millis() as u64;
        match &stopped_with {
            Some(savepoint) => {
                info!(job_id = %self.job_id, wall_ms, savepoint = %savepoint, "job stopped with a savepoint")
            }
            None => info!(job_id = %self.job_id, wall_ms, "job finished"),
        }
        Ok(JobResult {
            job_id: self.job_id,
            name: self.name,
            wall_time,
            vertices,
            restarts,
            restored_from,
            checkpoints_completed,
            last_checkpoint,
            stopped_with,
        })
    }
}

#[expect(
    clippy::too_many_arguments,
    reason = "one call site, all job-wide context"
)]
fn build_task(
    graph: &JobGraph,
    execution: &ExecutionGraph,
    chain_index: usize,
    subtask: SubtaskIndex,
    config: &RuntimeConfig,
    env: &JobEnvironment,
    resources: &SinkResources,
    exchange: &dyn ExchangeFactory,
    waker: &SlotWaker,
    restored: Option<Restore<'_>>,
) -> Result<Task> {
    let checkpoint = restored.and_then(|r| r.checkpoint);
    let chain = &execution.chains[chain_index];
    let head = graph.vertex(chain.vertices[0]);
    let edges = graph.edges();

    // Input: a source reader, or a gate over every channel into the head.
    let (input, operator_vertices) = match &head.operator {
        OperatorSpec::Source {
            connector,
            watermark,
        } => {
            let mut reader = connector
                .create_reader(subtask.0, head.parallelism, config.batch_size)
                .map_err(|e| Error::Task {
                    operator: head.name.clone(),
                    subtask: subtask.0,
                    source: Box::new(e),
                })?;
            let position = match checkpoint {
                Some(c) => c.source_position_for(&head.name, subtask.0, head.parallelism)?,
                None => None,
            };
            if let Some(position) = &position {
                reader.restore(position).map_err(|e| Error::Task {
                    operator: head.name.clone(),
                    subtask: subtask.0,
                    source: Box::new(e),
                })?;
            }
            let input = TaskInput::Source(SourceInput {
                name: head.name.clone(),
                reader,
                metrics: OperatorMetrics::default(),
                watermarks: watermark.clone().map(crate::time::SourceWatermarks::new),
            });
            (input, &chain.vertices[1..])
        }
        _ => {
            let mut channels = Vec::new();
            for &edge_index in &execution.exchange_edges {
                let edge = &edges[edge_index];
                if edge.target != head.id {
                    continue;
                }
                let upstream = graph.vertex(edge.source);
                for from in peer_subtasks(edge, upstream.parallelism, subtask) {
                    let id = ChannelId {
                        edge: edge_index as u32,
                        from,
                        to: subtask,
                    };
                    channels.push(GateChannel {
                        channel: exchange.input(id, waker)?,
                        input_index: edge.input_index as usize,
                        ended: false,
                    });
                }
            }
            // Without checkpoints a batch join may hold one input back: no barrier has to
            // cross the one it does not read.
            let read_first = if config.checkpointing.is_none() {
                crate::graph::estimate::read_first_allowed(graph, head.id)
            } else {
                None
            };
            (
                TaskInput::Gate(InputGate::new(
                    channels,
                    config.idle_timeout,
                    read_first.map(|input| input as usize),
                )),
                &chain.vertices[..],
            )
        }
    };

    let memory_consumers = graph
        .vertices()
        .iter()
        .filter(|v| v.operator.uses_managed_memory())
        .count();
    let mut operators = Vec::with_capacity(operator_vertices.len());
    for &id in operator_vertices {
        let vertex = graph.vertex(id);
        let context = OperatorContext {
            incremental_checkpoints: config.checkpointing.as_ref().is_some_and(|c| c.incremental),
            checkpointing: config.checkpointing.is_some(),
            vertex: vertex.name.clone(),
            subtask,
            parallelism: vertex.parallelism,
            max_parallelism: vertex.max_parallelism,
            key_groups: KeyGroupRange::for_subtask(
                vertex.max_parallelism,
                vertex.parallelism,
                subtask.0,
            ),
            input_schemas: graph.input_schemas(id),
            output_schema: vertex.output_schema.clone(),
            memory: if vertex.operator.uses_managed_memory() {
                config.operator_memory(memory_consumers)
            } else {
                crate::spill::MemoryBudget::unlimited()
            },
        };
        let operator = env
            .registry
            .build(&vertex.operator, &context, resources)
            .map_err(|e| Error::Task {
                operator: vertex.name.clone(),
                subtask: subtask.0,
                source: Box::new(e),
            })?;
        // A restarted attempt restores every operator: with its state from the checkpoint, or
        // with nothing (so sinks discard what the failed attempt staged).
        let restore = restored.map(|_| {
            checkpoint
                .and_then(|c| c.operator_state(&vertex.name, subtask.0, context.key_groups))
                .unwrap_or_default()
        });
        operators.push(ChainedOperator {
            held_final_watermark: false,
            restore,
            name: vertex.name.clone(),
            operator,
            context,
            metrics: OperatorMetrics::default(),
            output: Output::default(),
        });
    }

    // Outputs: every exchange edge leaving the chain's tail.
    let tail = graph.vertex(*chain.vertices.last().expect("a chain has a vertex"));
    let mut outputs = Vec::new();
    for &edge_index in &execution.exchange_edges {
        let edge = &edges[edge_index];
        if edge.source != tail.id {
            continue;
        }
        let target = graph.vertex(edge.target);
        let partitioner = OutputPartitioner::try_new(
            &edge.partitioning,
            &tail.output_schema,
            target.max_parallelism,
            target.parallelism,
            subtask.0,
        )?;
        let mut channels = Vec::new();
        for to in peer_subtasks(edge, target.parallelism, subtask) {
            let id = ChannelId {
                edge: edge_index as u32,
                from: subtask,
                to,
            };
            channels.push(PendingChannel::new(exchange.output(id, waker)?));
        }
        outputs.push(OutputEdge {
            partitioner,
            channels,
        });
    }

    Ok(Task::new(
        execution.chain_name(graph, chain_index),
        chain_index,
        subtask.0,
        input,
        operators,
        outputs,
    ))
}

/// The subtasks at the other end of `edge` from `subtask`: the same index for a forward edge,
/// all `peer_parallelism` of them otherwise.
fn peer_subtasks(
    edge: &crate::graph::Edge,
    peer_parallelism: u32,
    subtask: SubtaskIndex,
) -> Vec<SubtaskIndex> {
    match edge.partitioning {
        crate::graph::Partitioning::Forward => vec![subtask],
        _ => (0..peer_parallelism).map(SubtaskIndex).collect(),
    }
}
