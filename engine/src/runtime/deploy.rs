//! Deployment of part of a job: the tasks one TaskManager hosts.
//!
//! In a cluster the JobMaster builds the job's [`ExecutionGraph`] for the slots it was offered
//! and sends each TaskManager the placements it hosts. The TaskManager calls
//! [`LocalRuntime::deploy`] with those placements, an [`ExchangeFactory`] (in-process queues, or
//! one that reaches other TaskManagers) and a [`TaskListener`] through which every task state
//! transition goes back to the JobMaster. The engine knows nothing of the RPC behind the
//! listener.
//!
//! A deployed slice runs without the local checkpoint thread and without restarts: in a
//! cluster both belong to the JobMaster. [`LocalRuntime::deploy_checkpointed`] lets the slice
//! take part in checkpoints the JobMaster coordinates (see [`super::slice_checkpoints`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::info;

use super::exchange::{ExchangeFactory, SlotWaker};
use super::live::{LiveMetrics, TaskSample};
use super::slice_checkpoints::{SliceCheckpointHandle, SliceCheckpointing, SliceWriter};
use super::slot::{self, JobControl};
use super::task::{OperatorMetrics, Task};
use super::{ExecutionGraph, JobEnvironment, LocalRuntime, Restore, TaskPlacement, build_task};
use crate::checkpoint::TaskKey;
use crate::connector::SinkResources;
use crate::graph::JobGraph;
use crate::ids::{JobId, SlotId};
use crate::{Error, Result};

/// The life cycle of a task (an execution attempt of one subtask), as Flink's
/// `ExecutionState`: Created → Scheduled → Deploying → Initializing → Running → Finished, with
/// Cancelling → Cancelled and Failed. The JobMaster records the first three; the runtime
/// reports the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ExecutionState {
    Created,
    Scheduled,
    Deploying,
    Initializing,
    Running,
    Finished,
    Cancelling,
    Cancelled,
    Failed,
}

impl ExecutionState {
    /// Every state, in life-cycle order.
    pub const ALL: [ExecutionState; 9] = [
        ExecutionState::Created,
        ExecutionState::Scheduled,
        ExecutionState::Deploying,
        ExecutionState::Initializing,
        ExecutionState::Running,
        ExecutionState::Finished,
        ExecutionState::Cancelling,
        ExecutionState::Cancelled,
        ExecutionState::Failed,
    ];

    /// Flink's upper-case name ("RUNNING").
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutionState::Created => "CREATED",
            ExecutionState::Scheduled => "SCHEDULED",
            ExecutionState::Deploying => "DEPLOYING",
            ExecutionState::Initializing => "INITIALIZING",
            ExecutionState::Running => "RUNNING",
            ExecutionState::Finished => "FINISHED",
            ExecutionState::Cancelling => "CANCELING",
            ExecutionState::Cancelled => "CANCELED",
            ExecutionState::Failed => "FAILED",
        }
    }

    /// The state named `name` (as [`ExecutionState::as_str`] writes it).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// Finished, Cancelled or Failed: the task will not change state again.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            ExecutionState::Finished | ExecutionState::Cancelled | ExecutionState::Failed
        )
    }
}

impl std::fmt::Display for ExecutionState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One state transition of a deployed task.
#[derive(Debug, Clone)]
pub struct TaskEvent {
    /// The task: its chain in the ExecutionGraph and its subtask.
    pub placement: TaskPlacement,
    pub state: ExecutionState,
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// Why the task failed (for [`ExecutionState::Failed`]).
    pub failure: Option<String>,
    /// Whether that failure may go away on a restart ([`Error::is_retryable`]): a lost peer
    /// may, a malformed row or a bad plan will not.
    pub retryable: bool,
    /// The chain's operator metrics, when the task has ended.
    pub metrics: Vec<(String, OperatorMetrics)>,
    /// The task's final live-metrics reading, when it has ended.
    pub sample: Option<TaskSample>,
}

/// Receives the state transitions of deployed tasks.
///
/// Called on the slot threads, in each task's transition order. An implementation must return
/// promptly (hand the event to another thread); it may block briefly on a bounded queue, which
/// stalls only the calling slot.
pub trait TaskListener: Send + Sync {
    fn on_task_event(&self, event: TaskEvent);
}

/// The listener and identities of one slot's tasks (same order as the slot's task list).
pub(crate) struct SlotListener {
    pub listener: Arc<dyn TaskListener>,
    pub placements: Vec<TaskPlacement>,
}

impl SlotListener {
    /// Reports task `index` entering `state`.
    pub fn report(
        &self,
        index: usize,
        state: ExecutionState,
        failure: Option<&Error>,
        metrics: Vec<(String, OperatorMetrics)>,
        sample: Option<TaskSample>,
    ) {
        self.listener.on_task_event(TaskEvent {
            placement: self.placements[index],
            state,
            timestamp_ms: now_ms(),
            failure: failure.map(|e| e.to_string()),
            retryable: failure.is_some_and(Error::is_retryable),
            metrics,
            sample,
        });
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The tasks of a job that run in this process. Dropping it does not stop them; call
/// [`DeployedJob::cancel`], then [`DeployedJob::join`].
pub struct DeployedJob {
    job_id: JobId,
    control: Arc<JobControl>,
    threads: Vec<JoinHandle<slot::SlotReport>>,
    checkpoints: Option<(SliceWriter, SliceCheckpointHandle)>,
    live: LiveMetrics,
}

impl DeployedJob {
    pub fn job_id(&self) -> &JobId {
        &self.job_id
    }

    /// Asks every hosted task to stop; they report [`ExecutionState::Cancelled`].
    pub fn cancel(&self) {
        self.control.cancel();
    }

    /// A handle that cancels these tasks from another thread while [`DeployedJob::join`]
    /// waits.
    pub fn cancel_handle(&self) -> CancelHandle {
        CancelHandle {
            control: self.control.clone(),
        }
    }

    /// Triggers checkpoints at the slice's sources and reports completions to its tasks;
    /// `None` when the slice was deployed without checkpoints.
    pub fn checkpoint_handle(&self) -> Option<SliceCheckpointHandle> {
        self.checkpoints.as_ref().map(|(_, handle)| handle.clone())
    }

    /// The hosted tasks' metrics, readable while they run.
    pub fn live_metrics(&self) -> LiveMetrics {
        self.live.clone()
    }

    /// Whether every slot thread has ended.
    pub fn is_finished(&self) -> bool {
        self.threads.iter().all(|t| t.is_finished())
    }

    /// Waits for every slot thread. `Err` with the first task failure, [`Error::Cancelled`]
    /// after a cancellation.
    pub fn join(self) -> Result<()> {
        let mut panicked = false;
        for thread in self.threads {
            panicked |= thread.join().is_err();
        }
        if let Some((writer, _)) = self.checkpoints {
            writer.stop();
        }
        if panicked {
            return Err(Error::Internal(
                "a slot thread panicked outside a task".into(),
            ));
        }
        if let Some(failure) = self.control.take_failure() {
            return Err(failure);
        }
        if self.control.is_cancelled() {
            return Err(Error::Cancelled);
        }
        Ok(())
    }
}

/// The part of a job one process runs.
#[derive(Clone, Copy)]
pub struct JobSlice<'a> {
    pub job_id: &'a JobId,
    pub graph: &'a JobGraph,
    pub env: &'a JobEnvironment,
    /// The whole job's ExecutionGraph, as the JobMaster built it.
    pub execution: &'a ExecutionGraph,
    /// The placements (a subset of `execution.tasks`) that run here.
    pub hosted: &'a [TaskPlacement],
    /// `Some` for a restarted attempt: what its operators and sources resume from.
    pub restore: Option<Restore<'a>>,
}

/// Cancels the tasks of a [`DeployedJob`]; cheap to clone.
#[derive(Clone)]
pub struct CancelHandle {
    control: Arc<JobControl>,
}

impl CancelHandle {
    /// Asks every hosted task to stop; they report [`ExecutionState::Cancelled`].
    pub fn cancel(&self) {
        self.control.cancel();
    }
}

impl LocalRuntime {
    /// Starts the tasks of the slice (the placements of its ExecutionGraph listed in
    /// `hosted`), one thread per distinct slot among them, and returns at once.
    ///
    /// Channels come from `exchange`, which must connect every channel end hosted here with
    /// its peer wherever that runs. Each task reports Initializing, Running and its end
    /// (Finished, Cancelled or Failed, with its metrics) to `listener`. A failing task cancels
    /// the other hosted tasks; tasks elsewhere are the caller's to cancel.
    pub fn deploy(
        &self,
        slice: JobSlice<'_>,
        exchange: Arc<dyn ExchangeFactory>,
        listener: Arc<dyn TaskListener>,
    ) -> Result<DeployedJob> {
        self.deploy_checkpointed(slice, exchange, listener, None)
    }

    /// [`LocalRuntime::deploy`], with the tasks taking part in checkpoints coordinated
    /// elsewhere when `checkpointing` is given: [`DeployedJob::checkpoint_handle`] triggers
    /// them, the tasks' state files go to its storage and their acknowledgements to its
    /// listener.
    pub fn deploy_checkpointed(
        &self,
        slice: JobSlice<'_>,
        exchange: Arc<dyn ExchangeFactory>,
        listener: Arc<dyn TaskListener>,
        checkpointing: Option<SliceCheckpointing>,
    ) -> Result<DeployedJob> {
        let JobSlice {
            job_id,
            graph,
            env,
            execution,
            hosted,
            restore,
        } = slice;
        crate::alloc::tune();
        let config = &self.config;
        let mut by_slot: BTreeMap<SlotId, Vec<TaskPlacement>> = BTreeMap::new();
        for placement in hosted {
            let known = execution.tasks.iter().any(|p| {
                p.chain == placement.chain
                    && p.subtask == placement.subtask
                    && p.slot == placement.slot
            });
            if !known {
                return Err(Error::Internal(format!(
                    "task placement (chain {}, subtask {}, slot {}) is not in the execution graph",
                    placement.chain, placement.subtask, placement.slot
                )));
            }
            by_slot.entry(placement.slot).or_default().push(*placement);
        }
        let resources = SinkResources {
            collected: env.collected.clone(),
            sink_tables: env.sink_tables.clone(),
        };
        let control = Arc::new(JobControl::default());
        let checkpoints = checkpointing
            .map(|c| SliceWriter::start(c, control.clone()))
            .transpose()?;
        let mut slots = Vec::with_capacity(by_slot.len());
        for (slot, placements) in by_slot {
            let waker = SlotWaker::new();
            control.add_waker(waker.clone());
            let mut tasks: Vec<Task> = Vec::with_capacity(placements.len());
            for placement in &placements {
                let mut task = build_task(
                    graph,
                    execution,
                    placement.chain,
                    placement.subtask,
                    config,
                    env,
                    &resources,
                    exchange.as_ref(),
                    &waker,
                    restore,
                )?;
                if let Some((_, signals, _)) = &checkpoints {
                    task = task.with_checkpoints(
                        TaskKey {
                            chain: placement.chain,
                            subtask: placement.subtask.0,
                        },
                        signals.clone(),
                    );
                }
                tasks.push(task);
            }
            slots.push((slot, tasks, placements, waker));
        }

        let cores = super::pinned_cores(config);
        let live = LiveMetrics::new(
            slots
                .iter()
                .flat_map(|(_, tasks, _, _)| tasks.iter().map(Task::live))
                .collect(),
        );
        info!(job_id = %job_id, name = %graph.name, tasks = hosted.len(), "job slice deployed");
        let mut threads = Vec::with_capacity(slots.len());
        for (index, (slot, tasks, placements, waker)) in slots.into_iter().enumerate() {
            let control = control.clone();
            let core = (!cores.is_empty()).then(|| cores[index % cores.len()]);
            let listener = SlotListener {
                listener: listener.clone(),
                placements,
            };
            let thread = std::thread::Builder::new()
                .name(format!("sluice-slot-{}", slot.0))
                .spawn(move || slot::run_slot(slot, tasks, control, waker, core, Some(listener)))
                .map_err(|e| Error::io("start slot thread", format!("slot {}", slot.0), e))?;
            threads.push(thread);
        }
        Ok(DeployedJob {
            job_id: job_id.clone(),
            control,
            threads,
            checkpoints: checkpoints.map(|(writer, _, handle)| (writer, handle)),
            live,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;
    use crate::api::StreamEnvironment;
    use crate::runtime::RuntimeConfig;
    use crate::runtime::exchange::LocalExchange;

    #[derive(Default)]
    struct Recorder(Mutex<Vec<TaskEvent>>);

    impl TaskListener for Recorder {
        fn on_task_event(&self, event: TaskEvent) {
            self.0.lock().unwrap().push(event);
        }
    }

    fn graph(parallelism: u32) -> (JobGraph, JobEnvironment) {
        let env = StreamEnvironment::new("deploy").with_parallelism(parallelism);
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        let batch = arrow::record_batch::RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(Int64Array::from_iter_values(0..100))],
        )
        .unwrap();
        env.from_batches("numbers", schema, vec![batch])
            .unwrap()
            .collect("out")
            .unwrap();
        let (graph, registry) = env.build().unwrap();
        (
            graph,
            JobEnvironment {
                registry,
                ..Default::default()
            },
        )
    }

    #[test]
    fn deployed_slice_reports_every_transition_in_order() {
        let (graph, env) = graph(2);
        let execution = ExecutionGraph::new(&graph, 2);
        let runtime = LocalRuntime::new(RuntimeConfig::default().with_pinning(false));
        let recorder = Arc::new(Recorder::default());
        let deployed = runtime
            .deploy(
                JobSlice {
                    job_id: &JobId("test".into()),
                    graph: &graph,
                    env: &env,
                    execution: &execution,
                    hosted: &execution.tasks,
                    restore: None,
                },
                Arc::new(LocalExchange::new(4)),
                recorder.clone(),
            )
            .unwrap();
        let live = deployed.live_metrics();
        deployed.join().unwrap();
        // The live cells hold the final counts once the tasks have ended.
        let samples = live.sample();
        assert_eq!(samples.len(), execution.tasks.len());
        let read: u64 = samples.iter().map(|s| s.records_in).sum();
        assert_eq!(read, 100, "the source reads the 100 rows once");
        let total: u64 = samples.iter().filter_map(|s| s.source_total).sum();
        assert_eq!(total, 0, "an in-memory source does not announce its size");
        for sample in &samples {
            assert!(sample.busy > std::time::Duration::ZERO, "{sample:?}");
        }
        let events = recorder.0.lock().unwrap();
        for placement in &execution.tasks {
            let states: Vec<ExecutionState> = events
                .iter()
                .filter(|e| {
                    e.placement.chain == placement.chain && e.placement.subtask == placement.subtask
                })
                .map(|e| e.state)
                .collect();
            assert_eq!(
                states,
                [
                    ExecutionState::Initializing,
                    ExecutionState::Running,
                    ExecutionState::Finished
                ],
                "{placement:?}"
            );
        }
        let rows: u64 = events
            .iter()
            .filter(|e| e.state == ExecutionState::Finished)
            .flat_map(|e| &e.metrics)
            .filter(|(name, _)| name == "out")
            .map(|(_, m)| m.records_in)
            .sum();
        assert_eq!(rows, 100);
        assert_eq!(
            env.collected
                .batches("out")
                .iter()
                .map(|b| b.num_rows())
                .sum::<usize>(),
            100
        );
    }

    #[test]
    fn placements_outside_the_execution_graph_are_refused() {
        let (graph, env) = graph(1);
        let execution = ExecutionGraph::new(&graph, 1);
        let mut wrong = execution.tasks[0];
        wrong.slot = SlotId(7);
        let error = LocalRuntime::new(RuntimeConfig::default())
            .deploy(
                JobSlice {
                    job_id: &JobId("test".into()),
                    graph: &graph,
                    env: &env,
                    execution: &execution,
                    hosted: &[wrong],
                    restore: None,
                },
                Arc::new(LocalExchange::new(4)),
                Arc::new(Recorder::default()),
            )
            .err()
            .expect("an unknown placement is an error");
        assert!(error.to_string().contains("slot 7"), "{error}");
    }

    #[test]
    fn cancelled_slice_reports_cancelled() {
        let env = StreamEnvironment::new("endless").with_parallelism(1);
        let config = sluice_datasets::nexmark::NexmarkConfig::default().with_events(None);
        crate::api::nexmark::add_query(
            &env,
            crate::api::nexmark::NexmarkQuery::Q0,
            config,
            crate::connector::SinkSpec::Blackhole,
        )
        .unwrap();
        let (graph, registry) = env.build().unwrap();
        let job_env = JobEnvironment {
            registry,
            ..Default::default()
        };
        let execution = ExecutionGraph::new(&graph, 1);
        let recorder = Arc::new(Recorder::default());
        let deployed = LocalRuntime::new(RuntimeConfig::default().with_pinning(false))
            .deploy(
                JobSlice {
                    job_id: &JobId("test".into()),
                    graph: &graph,
                    env: &job_env,
                    execution: &execution,
                    hosted: &execution.tasks,
                    restore: None,
                },
                Arc::new(LocalExchange::new(4)),
                recorder.clone(),
            )
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !recorder
            .0
            .lock()
            .unwrap()
            .iter()
            .any(|e| e.state == ExecutionState::Running)
        {
            assert!(std::time::Instant::now() < deadline, "never running");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        deployed.cancel();
        assert!(matches!(deployed.join(), Err(Error::Cancelled)));
        let events = recorder.0.lock().unwrap();
        assert_eq!(events.last().unwrap().state, ExecutionState::Cancelled);
    }
}
