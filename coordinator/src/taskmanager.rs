//! The TaskManager process (`sluice taskmanager`): offers its slots to the ResourceManager,
//! heartbeats, and runs the tasks JobMasters deploy to it on the engine's runtime.
//!
//! It serves the TaskExecutor RPC service and its data exchange endpoint (an Arrow Flight
//! [`ExchangeServer`]), prints `rpc listening on ADDR` and `data listening on ADDR` once both
//! are bound, registers with the data port (retrying until the JobManager answers), then
//! heartbeats every interval; a JobManager that
//! no longer knows it (it timed out, or the JobManager restarted) makes it register again.
//! Each deployed job slice exchanges data through a [`FlightExchange`] built from the
//! deployment's task locations (in-process queues between its own tasks, Flight streams to
//! the other TaskManagers' tasks), and reports its task state transitions to its JobMaster
//! through a bounded queue drained by one forwarding task per job; a checkpointed job's slice
//! writes its state files into the shared checkpoint directory and acknowledges through
//! [`crate::checkpoint`]. SIGTERM/SIGINT cancel the hosted
//! tasks, wait for them, and leave the cluster with `DisconnectTaskManager`.
//!
//! Deployed operators are built-in ones or named user functions: [`run_with_functions`] starts
//! a TaskManager that knows the functions a user binary registers (see `docs/user-code.md`);
//! a deployment naming a function this TaskManager lacks is refused, naming the function.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use sluice_engine::api::UserFunctions;
use sluice_engine::checkpoint::{CheckpointStorage, StatePath, StateStores};
use sluice_engine::graph::JobGraph;
use sluice_engine::ids::{AttemptNumber, CheckpointId, JobId, SlotId, SubtaskIndex};
use sluice_engine::operator::OperatorRegistry;
use sluice_engine::runtime::{
    CancelHandle, ExecutionGraph, JobEnvironment, JobSlice, LiveMetrics, LocalRuntime, Restore,
    RuntimeConfig, SliceCheckpointHandle, TaskEvent, TaskListener, TaskPlacement, now_ms,
};
use sluice_flight::{ExchangeConfig, ExchangeServer, FlightExchange, TaskManagerId};
use tonic::{Request, Response, Status};
use tracing::{info, warn};

use crate::ha::{self, HaConfig};
use crate::rpc::proto;
use crate::rpc::proto::resource_manager_client::ResourceManagerClient;
use crate::rpc::proto::task_executor_server::{TaskExecutor, TaskExecutorServer};
use crate::rpc::{JobMasterCaller, endpoint_uri, status};
use crate::{prometheus, task_metrics};

/// Settings of a TaskManager.
#[derive(Debug, Clone)]
pub struct TaskManagerConfig {
    /// host:port of the JobManager's RPC service (without high availability).
    pub jobmanager: String,
    /// High availability: the leading JobManager is found, and followed, in etcd; `jobmanager`
    /// is not used then.
    pub ha: Option<HaConfig>,
    /// Slots (worker threads) offered.
    pub slots: u32,
    /// Where the TaskExecutor service listens (port 0: any free port); its address is what
    /// the JobManager is told.
    pub rpc: SocketAddr,
    /// Port of the data exchange (Flight) endpoint, on the host of `rpc` (0: any free port);
    /// the bound port is reported at registration.
    pub data_port: u16,
    /// Heartbeat interval; default: what the JobManager asks for at registration.
    pub heartbeat_interval: Option<Duration>,
    /// Rows per source batch; default 8192.
    pub batch_size: Option<usize>,
    /// The data exchange's credits per channel and compression (its in-process queues take
    /// the runtime's channel capacity).
    pub exchange: ExchangeConfig,
    /// Port of the sink-table Flight service, on the host of `rpc` (0: any free port).
    pub flight_port: u16,
    /// Port of the Prometheus `/metrics` endpoint, on the host of `rpc` (0: any free port).
    pub metrics_port: u16,
    /// Bearer token the sink-table Flight service requires (`None`: open).
    pub flight_token: Option<String>,
    /// The stores state files go to and restores read from: local directories, and object
    /// stores with this TaskManager's own `s3.*` settings (`-D`, else `AWS_*` variables;
    /// deployments carry only the checkpoint URL, never credentials).
    pub stores: StateStores,
    /// Managed memory of the whole TaskManager (`taskmanager.memory.managed.size`), split
    /// evenly among its slots; default: the engine's (40% of physical memory).
    pub managed_memory: Option<u64>,
    /// Where operators spill (`io.tmp.dirs`); default: the system's temporary directory.
    pub spill_dir: Option<std::path::PathBuf>,
}

/// Where a TaskManager's services listen.
#[derive(Debug, Clone, Copy)]
pub struct TaskManagerAddresses {
    /// The TaskExecutor RPC service.
    pub rpc: SocketAddr,
    /// The data exchange (Flight) endpoint.
    pub data: SocketAddr,
    /// The sink-table Flight service.
    pub flight: SocketAddr,
    /// The Prometheus `/metrics` endpoint.
    pub metrics: SocketAddr,
}

/// How long a registration or heartbeat call may take before it counts as failed.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Events queued per job before the slot threads wait for the forwarder.
const EVENT_QUEUE: usize = 1024;

/// A job slice running here.
struct HostedJob {
    /// The execution attempt the slice belongs to.
    attempt: AttemptNumber,
    /// The epoch of the leader that deployed it.
    epoch: u64,
    /// Set once its tasks have all stopped (its last reports may still be on their way).
    stopped: Arc<std::sync::atomic::AtomicBool>,
    cancel: CancelHandle,
    /// This TaskManager's slots the slice runs in.
    slots: Vec<u32>,
    /// Triggers checkpoints at the slice's sources; `None` when the job does not checkpoint.
    checkpoints: Option<SliceCheckpointHandle>,
    /// The slice's tasks' live metrics, and the name of each chain of the job.
    live: LiveMetrics,
    chain_names: Arc<Vec<String>>,
}

#[derive(Clone)]
struct TaskExecutorService {
    id: TaskManagerId,
    config: TaskManagerConfig,
    exchange: Arc<ExchangeServer>,
    jobs: Arc<Mutex<HashMap<JobId, HostedJob>>>,
    /// The named user functions of this binary, which deployed `User` vertices are built from.
    functions: UserFunctions,
    /// The highest leader epoch seen; calls with a lower one come from a deposed leader.
    fence: Arc<AtomicU64>,
    /// Calls refused because their epoch was lower than `fence`.
    stale_rejected: Arc<AtomicU64>,
    /// The `'connector' = 'flight'` tables of the job slices here, served over Flight.
    sink_tables: crate::sink_tables::TaskManagerSinkCatalog,
    /// Port of the sink-table Flight service.
    flight_port: u16,
    /// Port of the `/metrics` endpoint.
    metrics_port: u16,
}

impl TaskExecutorService {
    fn jobs(&self) -> MutexGuard<'_, HashMap<JobId, HostedJob>> {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The leader epoch a call carries (0 without high availability), refused when a newer
    /// leader has been seen: the caller was deposed.
    fn check_epoch<T>(&self, request: &Request<T>, call: &str) -> Result<u64, Status> {
        let epoch = match request.metadata().get(ha::EPOCH_HEADER) {
            None => 0,
            Some(value) => value
                .to_str()
                .ok()
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or_else(|| {
                    Status::invalid_argument(format!("{call}: malformed {}", ha::EPOCH_HEADER))
                })?,
        };
        let highest = self.fence.fetch_max(epoch, Ordering::SeqCst);
        if epoch < highest {
            let rejected = self.stale_rejected.fetch_add(1, Ordering::SeqCst) + 1;
            warn!(
                call,
                epoch,
                leader_epoch = highest,
                rejected,
                "rejected a call from a deposed leader (stale epoch)"
            );
            return Err(Status::failed_precondition(format!(
                "{call}: stale leader epoch {epoch}; the current leader's epoch is {highest}"
            )));
        }
        Ok(epoch)
    }

    /// The checkpoint handle of a hosted job.
    fn checkpoint_handle(&self, job_id: &JobId) -> Result<SliceCheckpointHandle, Status> {
        match self.jobs().get(job_id) {
            None => Err(Status::not_found(format!(
                "job {job_id} has no tasks on this TaskManager"
            ))),
            Some(job) => job.checkpoints.clone().ok_or_else(|| {
                Status::failed_precondition(format!(
                    "job {job_id} was deployed without checkpoints"
                ))
            }),
        }
    }

    /// This TaskManager's metrics and every hosted task's live reading, for a heartbeat.
    fn metrics_report(&self) -> (proto::TaskManagerMetrics, Vec<proto::TaskMetrics>) {
        let exchange = self.exchange.metrics();
        let own = proto::TaskManagerMetrics {
            memory_rss_bytes: task_metrics::resident_memory_bytes(),
            network_bytes_sent: exchange.bytes_sent,
            network_bytes_received: exchange.bytes_received,
            network_messages_sent: exchange.messages_sent,
            network_messages_received: exchange.messages_received,
            network_credits_granted: exchange.credits_granted,
            network_credit_stalls: exchange.credit_stalls,
        };
        let hosted: Vec<(JobId, AttemptNumber, LiveMetrics)> = self
            .jobs()
            .iter()
            .map(|(id, job)| (id.clone(), job.attempt, job.live.clone()))
            .collect();
        let tasks = hosted
            .iter()
            .flat_map(|(id, attempt, live)| {
                live.sample()
                    .into_iter()
                    .map(|s| task_metrics::sample_to_proto(&id.0, attempt.0, &s))
            })
            .collect();
        (own, tasks)
    }

    /// The Prometheus exposition of this TaskManager: its hosted tasks, data exchange and
    /// memory.
    fn render_metrics(&self) -> String {
        let hosted: Vec<(JobId, Arc<Vec<String>>, LiveMetrics)> = self
            .jobs()
            .iter()
            .map(|(id, job)| (id.clone(), job.chain_names.clone(), job.live.clone()))
            .collect();
        let samples: Vec<(usize, sluice_engine::runtime::TaskSample)> = hosted
            .iter()
            .enumerate()
            .flat_map(|(i, (_, _, live))| live.sample().into_iter().map(move |s| (i, s)))
            .collect();
        let named: Vec<prometheus::NamedTask<'_>> = samples
            .iter()
            .map(|(i, sample)| prometheus::NamedTask {
                job_id: &hosted[*i].0.0,
                task: hosted[*i]
                    .1
                    .get(sample.chain)
                    .map_or("unknown chain", String::as_str),
                sample,
            })
            .collect();
        let mut exposition = prometheus::Exposition::new();
        let id = [("taskmanager_id", self.id.0.as_str())];
        let exchange = self.exchange.metrics();
        let own: [(&str, &str, &str, f64); 7] = [
            (
                "sluice_taskmanager_memory_rss_bytes",
                "gauge",
                "Resident memory of the TaskManager process.",
                task_metrics::resident_memory_bytes() as f64,
            ),
            (
                "sluice_taskmanager_network_sent_bytes_total",
                "counter",
                "Bytes the data exchange (Arrow Flight) sent to other TaskManagers.",
                exchange.bytes_sent as f64,
            ),
            (
                "sluice_taskmanager_network_received_bytes_total",
                "counter",
                "Bytes the data exchange received from other TaskManagers.",
                exchange.bytes_received as f64,
            ),
            (
                "sluice_taskmanager_network_sent_messages_total",
                "counter",
                "Flight messages the data exchange sent.",
                exchange.messages_sent as f64,
            ),
            (
                "sluice_taskmanager_network_received_messages_total",
                "counter",
                "Flight messages the data exchange received.",
                exchange.messages_received as f64,
            ),
            (
                "sluice_taskmanager_network_credits_granted_total",
                "counter",
                "Credits (room for one element each) receivers granted this TaskManager's producers.",
                exchange.credits_granted as f64,
            ),
            (
                "sluice_taskmanager_network_credit_stalls_total",
                "counter",
                "Times a producer here had an element to send and no credit (the receiver was full).",
                exchange.credit_stalls as f64,
            ),
        ];
        for (name, kind, help, value) in own {
            exposition.family(name, kind, help).sample(&id, value);
        }
        exposition
            .family(
                "sluice_taskmanager_slots",
                "gauge",
                "Task slots of the TaskManager, by whether a job uses them.",
            )
            .sample(&[id[0], ("status", "total")], f64::from(self.config.slots));
        prometheus::write_tasks(&mut exposition, &named, now_ms() as i64);
        exposition.finish()
    }

    fn slot_report(&self) -> Vec<proto::SlotStatus> {
        let jobs = self.jobs();
        (0..self.config.slots)
            .map(|slot| proto::SlotStatus {
                slot,
                job_id: jobs
                    .iter()
                    .find(|(_, job)| job.slots.contains(&slot))
                    .map(|(id, _)| id.0.clone())
                    .unwrap_or_default(),
            })
            .collect()
    }
}

/// Hands task events to the job's forwarder (called on slot threads, never on tokio's).
struct ForwardingListener {
    job_id: JobId,
    attempt: AttemptNumber,
    task_manager_id: TaskManagerId,
    sender: tokio::sync::mpsc::Sender<proto::UpdateTaskStateRequest>,
}

impl TaskListener for ForwardingListener {
    fn on_task_event(&self, event: TaskEvent) {
        let report = proto::UpdateTaskStateRequest {
            job_id: self.job_id.0.clone(),
            task_manager_id: self.task_manager_id.0.clone(),
            chain: event.placement.chain as u32,
            subtask: event.placement.subtask.0,
            attempt: self.attempt.0,
            state: event.state.as_str().to_string(),
            timestamp_ms: event.timestamp_ms,
            failure: event.failure.unwrap_or_default(),
            retryable: event.retryable,
            metrics: event
                .metrics
                .into_iter()
                .map(|(operator, m)| task_metrics::operator_to_proto(operator, &m))
                .collect(),
            final_metrics: event
                .sample
                .map(|s| task_metrics::sample_to_proto(&self.job_id.0, self.attempt.0, &s)),
        };
        if self.sender.blocking_send(report).is_err() {
            warn!(job_id = %self.job_id, "task state report dropped: the forwarder has stopped");
        }
    }
}

/// Sends a job's task reports to its JobMaster in order, retrying a report a few times when
/// the JobMaster cannot be reached.
async fn forward_reports(
    job_id: JobId,
    address: String,
    mut reports: tokio::sync::mpsc::Receiver<proto::UpdateTaskStateRequest>,
) {
    let mut job_master = JobMasterCaller::new(address);
    while let Some(report) = reports.recv().await {
        let sent = job_master
            .call(
                5,
                Duration::from_millis(200),
                |mut client| {
                    let report = report.clone();
                    async move { client.update_task_state(report).await.map(drop) }
                },
                |error, attempts| {
                    warn!(job_id = %job_id, %error, attempts, "task state report failed; retrying");
                },
            )
            .await;
        if let Err(error) = sent {
            warn!(job_id = %job_id, %error, state = %report.state, "task state report lost");
        }
    }
}

#[tonic::async_trait]
impl TaskExecutor for TaskExecutorService {
    async fn submit_task(
        &self,
        request: Request<proto::SubmitTaskRequest>,
    ) -> Result<Response<proto::SubmitTaskResponse>, Status> {
        let epoch = self.check_epoch(&request, "deploy")?;
        let r = request.into_inner();
        let job_id = JobId(r.job_id.clone());
        let attempt = AttemptNumber(r.attempt);
        if let Some(hosted) = self.jobs().get(&job_id)
            && hosted.epoch >= epoch
            && hosted.attempt >= attempt
        {
            return Err(Status::already_exists(format!(
                "job {job_id} already runs attempt {} on this TaskManager",
                hosted.attempt.0
            )));
        }
        let graph = JobGraph::from_json(&r.job_graph_json).map_err(|e| status(&e))?;
        let missing = self.functions.missing(&graph);
        if !missing.is_empty() {
            let missing: Vec<String> = missing.iter().map(ToString::to_string).collect();
            return Err(Status::failed_precondition(format!(
                "TaskManager {} cannot run job {job_id}: it does not have the user function(s) \
                 {}; start the TaskManagers from a binary that registers them (its functions: \
                 {:?})",
                self.id,
                missing.join(", "),
                self.functions.names().collect::<Vec<_>>()
            )));
        }
        let execution = ExecutionGraph::new(&graph, r.execution_slots);
        let hosted: Vec<TaskPlacement> = r
            .tasks
            .iter()
            .map(|t| TaskPlacement {
                chain: t.chain as usize,
                subtask: SubtaskIndex(t.subtask),
                slot: SlotId(t.slot),
            })
            .collect();
        let mut local_slots: Vec<u32> = r.tasks.iter().map(|t| t.task_manager_slot).collect();
        local_slots.sort_unstable();
        local_slots.dedup();
        if let Some(slot) = local_slots.iter().find(|s| **s >= self.config.slots) {
            return Err(Status::invalid_argument(format!(
                "slot {slot} does not exist (this TaskManager has {})",
                self.config.slots
            )));
        }
        if r.locations.len() != execution.tasks.len() {
            return Err(Status::invalid_argument(format!(
                "the deployment locates {} tasks but the job has {}",
                r.locations.len(),
                execution.tasks.len()
            )));
        }
        let placement = crate::exchange::placement(&graph, &execution, &r.locations)
            .map_err(|e| Status::invalid_argument(format!("deployment of job {job_id}: {e}")))?;
        // A restarted attempt resumes from the checkpoint the JobMaster names (every state
        // file's checksum is verified as it is read), or from nothing.
        let location = |text: &str| {
            StatePath::parse(text).map_err(|message| {
                Status::invalid_argument(format!(
                    "deployment of job {job_id}: checkpoint location '{text}': {message}"
                ))
            })
        };
        let restored = if r.restore_checkpoint.is_empty() {
            None
        } else {
            let dir = location(&r.restore_checkpoint)?;
            let stores = self.config.stores.clone();
            let loaded =
                tokio::task::spawn_blocking(move || CheckpointStorage::load_from(&stores, &dir))
                    .await;
            match loaded {
                Ok(Ok(restored)) => Some(restored),
                Ok(Err(error)) => {
                    return Err(Status::failed_precondition(format!(
                        "job {job_id} attempt {}: restoring checkpoint {}: {error}",
                        attempt.0, r.restore_checkpoint
                    )));
                }
                Err(error) => return Err(Status::internal(error.to_string())),
            }
        };
        let restore = (attempt.0 > 0).then_some(Restore {
            checkpoint: restored.as_ref(),
        });
        let exchange = FlightExchange::new(
            self.exchange.clone(),
            job_id.clone(),
            attempt,
            self.id.clone(),
            placement,
        );

        let (sender, receiver) = tokio::sync::mpsc::channel(EVENT_QUEUE);
        let listener = Arc::new(ForwardingListener {
            job_id: job_id.clone(),
            attempt,
            task_manager_id: self.id.clone(),
            sender,
        });
        let mut runtime_config = RuntimeConfig::default()
            .with_slots(local_slots.len())
            // Several TaskManagers may share a machine: the OS places the slot threads.
            .with_pinning(false);
        if let Some(rows) = self.config.batch_size {
            runtime_config = runtime_config.with_batch_size(rows);
        }
        // The slice runs in some of this TaskManager's slots: it gets their part of the
        // managed memory.
        let managed = self
            .config
            .managed_memory
            .unwrap_or(runtime_config.managed_memory);
        runtime_config = runtime_config.with_managed_memory(
            managed / u64::from(self.config.slots.max(1)) * local_slots.len() as u64,
        );
        if let Some(dir) = &self.config.spill_dir {
            runtime_config = runtime_config.with_spill_dir(dir.clone());
        }
        let runtime = LocalRuntime::new(runtime_config.clone());
        let checkpointing = if r.checkpoint_dir.is_empty() {
            None
        } else {
            Some(
                crate::checkpoint::slice_checkpointing(
                    &job_id,
                    &self.config.stores,
                    &location(&r.checkpoint_dir)?,
                    r.checkpoint_incremental,
                    r.job_master_address.clone(),
                    restored.as_ref().map(|c| c.checkpoint_id()),
                )
                .map_err(|e| status(&e))?,
            )
        };
        let deployed = runtime
            .deploy_checkpointed(
                JobSlice {
                    job_id: &job_id,
                    graph: &graph,
                    env: &JobEnvironment {
                        registry: OperatorRegistry::with_user_functions(self.functions.clone()),
                        sink_tables: self.sink_tables.tables_of(&job_id.0),
                        ..Default::default()
                    },
                    execution: &execution,
                    hosted: &hosted,
                    restore,
                },
                Arc::new(exchange),
                listener,
                checkpointing,
            )
            .map_err(|e| status(&e))?;
        info!(job_id = %job_id, attempt = attempt.0, tasks = hosted.len(), restored_from = restored.as_ref().map(|c| c.checkpoint_id().0), "tasks deployed");
        let chain_names = Arc::new(
            (0..execution.chains.len())
                .map(|chain| execution.chain_name(&graph, chain))
                .collect(),
        );
        let stopped = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let replaced = self.jobs().insert(
            job_id.clone(),
            HostedJob {
                attempt,
                epoch,
                stopped: stopped.clone(),
                cancel: deployed.cancel_handle(),
                slots: local_slots,
                checkpoints: deployed.checkpoint_handle(),
                live: deployed.live_metrics(),
                chain_names,
            },
        );
        if let Some(earlier) = replaced {
            // The JobMaster deploys a new attempt once the old one's tasks all ended; an old
            // slice still winding down here is stopped.
            earlier.cancel.cancel();
        }
        let forwarder = tokio::spawn(forward_reports(
            job_id.clone(),
            r.job_master_address,
            receiver,
        ));
        let jobs = self.jobs.clone();
        let exchange_server = self.exchange.clone();
        let sink_tables = self.sink_tables.clone();
        // Owns the slice until it ends: waits for its slot threads, then for its last reports.
        tokio::spawn(async move {
            let ended = tokio::task::spawn_blocking(move || deployed.join()).await;
            stopped.store(true, Ordering::SeqCst);
            let released = exchange_server.release_job(&job_id, attempt);
            if released > 0 {
                info!(job_id = %job_id, channels = released, "half-open exchange channels released");
            }
            let state = match ended {
                Ok(Ok(())) => {
                    info!(job_id = %job_id, "tasks finished");
                    "FINISHED"
                }
                Ok(Err(sluice_engine::Error::Cancelled)) => {
                    info!(job_id = %job_id, "tasks cancelled");
                    "CANCELED"
                }
                Ok(Err(error)) => {
                    warn!(job_id = %job_id, %error, "tasks failed");
                    "FAILED"
                }
                Err(error) => {
                    warn!(job_id = %job_id, %error, "task waiter panicked");
                    "FAILED"
                }
            };
            sink_tables.set_state(&job_id.0, state);
            let _ = forwarder.await;
            let mut jobs = jobs.lock().unwrap_or_else(|p| p.into_inner());
            if jobs
                .get(&job_id)
                .is_some_and(|j| j.attempt == attempt && j.epoch == epoch)
            {
                jobs.remove(&job_id);
            }
        });
        Ok(Response::new(proto::SubmitTaskResponse {}))
    }

    async fn cancel_task(
        &self,
        request: Request<proto::CancelTaskRequest>,
    ) -> Result<Response<proto::CancelTaskResponse>, Status> {
        self.check_epoch(&request, "cancel")?;
        let job_id = JobId(request.into_inner().job_id);
        let found = match self.jobs().get(&job_id) {
            Some(job) => {
                job.cancel.cancel();
                true
            }
            None => false,
        };
        info!(job_id = %job_id, found, "cancel requested");
        Ok(Response::new(proto::CancelTaskResponse { found }))
    }

    async fn trigger_checkpoint(
        &self,
        request: Request<proto::TriggerCheckpointRequest>,
    ) -> Result<Response<proto::TriggerCheckpointResponse>, Status> {
        self.check_epoch(&request, "trigger checkpoint")?;
        let r = request.into_inner();
        let handle = self.checkpoint_handle(&JobId(r.job_id))?;
        handle.trigger(
            CheckpointId(r.checkpoint_id),
            i64::try_from(r.timestamp_ms).unwrap_or(i64::MAX),
            r.savepoint,
        );
        Ok(Response::new(proto::TriggerCheckpointResponse {}))
    }

    async fn notify_checkpoint_complete(
        &self,
        request: Request<proto::NotifyCheckpointCompleteRequest>,
    ) -> Result<Response<proto::NotifyCheckpointCompleteResponse>, Status> {
        self.check_epoch(&request, "notify checkpoint complete")?;
        let r = request.into_inner();
        let handle = self.checkpoint_handle(&JobId(r.job_id))?;
        handle.notify_complete(CheckpointId(r.checkpoint_id));
        Ok(Response::new(proto::NotifyCheckpointCompleteResponse {}))
    }
}

/// The JobManager a TaskManager reports to: its RPC address and leader epoch (0 without high
/// availability).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Leader {
    rpc: String,
    epoch: u64,
}

/// Registers with the ResourceManager of `leader`, retrying until it answers; returns the
/// heartbeat interval it asks for. `None` when `stop` fired or the leader changed first.
async fn register(
    service: &TaskExecutorService,
    leader: &Leader,
    address: &str,
    stop: &mut tokio::sync::broadcast::Receiver<()>,
    changed: &mut tokio::sync::watch::Receiver<Option<Leader>>,
) -> Option<Duration> {
    let mut warned = false;
    loop {
        let attempt = tokio::time::timeout(CALL_TIMEOUT, async {
            let mut client = ResourceManagerClient::connect(endpoint_uri(&leader.rpc))
                .await
                .map_err(|e| e.to_string())?;
            client
                .register_task_manager(proto::RegisterTaskManagerRequest {
                    task_manager_id: service.id.0.clone(),
                    rpc_address: address.to_string(),
                    data_port: u32::from(service.exchange.address().port()),
                    flight_port: u32::from(service.flight_port),
                    metrics_port: u32::from(service.metrics_port),
                    cpu_cores: std::thread::available_parallelism().map_or(0, |n| n.get() as u32),
                    physical_memory_bytes: task_metrics::physical_memory_bytes(),
                    slots: service.config.slots,
                    hostname: hostname(),
                })
                .await
                .map_err(|e| e.message().to_string())
        });
        let attempt = tokio::select! {
            attempt = attempt => attempt
                .unwrap_or_else(|_| Err(format!("no answer within {} s", CALL_TIMEOUT.as_secs()))),
            _ = stop.recv() => return None,
            _ = changed.changed() => return None,
        };
        match attempt {
            Ok(response) => {
                let response = response.into_inner();
                info!(jobmanager = %leader.rpc, epoch = leader.epoch, task_manager = %service.id, "registered");
                return Some(Duration::from_millis(response.heartbeat_interval_ms.max(1)));
            }
            Err(error) => {
                if !warned {
                    warn!(jobmanager = %leader.rpc, %error, "registration failed; retrying");
                    warned = true;
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    _ = stop.recv() => return None,
                    _ = changed.changed() => return None,
                }
            }
        }
    }
}

/// Follows the leader key in etcd: publishes the leader it names (reconnecting and reading
/// it again whenever the watch breaks) until `stop` fires. Between leaders (the key deleted)
/// the last one stays published: its tasks keep running until a new leader appears.
async fn follow_leader(
    config: HaConfig,
    leader: tokio::sync::watch::Sender<Option<Leader>>,
    mut stop: tokio::sync::broadcast::Receiver<()>,
) {
    let key = config.leader_key();
    loop {
        let Some(etcd) = ha::connect_with_retry(&config, "taskmanager", &mut stop).await else {
            return;
        };
        let watched = async {
            let (current, revision) = etcd.get_at(&key).await?;
            let from = revision + 1;
            if let Some(info) = current.as_ref().and_then(ha::LeaderInfo::from_kv) {
                publish(&leader, &info);
            } else {
                info!(cluster_id = %config.cluster_id, "no leading jobmanager yet; waiting for one");
            }
            let mut events = etcd.watch(&key, false, from).await?;
            while let Some(event) = events.recv().await {
                if event.r#type == ha::etcd::pb::event::EventType::Put as i32
                    && let Some(info) = event.kv.as_ref().and_then(ha::LeaderInfo::from_kv)
                {
                    publish(&leader, &info);
                }
            }
            Ok::<(), ha::EtcdError>(())
        };
        tokio::select! {
            result = watched => {
                if let Err(error) = result {
                    warn!(%error, "following the leader in etcd failed; reconnecting");
                }
                tokio::select! {
                    _ = tokio::time::sleep(config.retry_delay) => {}
                    _ = stop.recv() => return,
                }
            }
            _ = stop.recv() => return,
        }
    }
}

fn publish(leader: &tokio::sync::watch::Sender<Option<Leader>>, info: &ha::LeaderInfo) {
    let next = Leader {
        rpc: info.record.rpc.clone(),
        epoch: info.epoch,
    };
    leader.send_if_modified(|current| {
        if current.as_ref().is_some_and(|c| c.epoch >= next.epoch) {
            return false;
        }
        info!(jobmanager = %next.rpc, epoch = next.epoch, "new leading jobmanager");
        *current = Some(next.clone());
        true
    });
}

/// Cancels the tasks deployed by leaders older than `epoch` and waits (up to 10 s) until they
/// have stopped, so their slots are free when this TaskManager registers with the new leader,
/// which resumes their jobs from the latest completed checkpoints.
async fn drop_stale_tasks(service: &TaskExecutorService, epoch: u64) {
    let stale: Vec<JobId> = service
        .jobs()
        .iter()
        .filter(|(_, job)| job.epoch < epoch)
        .map(|(id, job)| {
            job.cancel.cancel();
            id.clone()
        })
        .collect();
    if stale.is_empty() {
        return;
    }
    info!(
        jobs = stale.len(),
        epoch, "cancelling the tasks of the previous leader"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::time::Instant::now() < deadline
        && service
            .jobs()
            .values()
            .any(|job| job.epoch < epoch && !job.stopped.load(Ordering::SeqCst))
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The machine's name, for display.
fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

/// Runs the TaskManager until `shutdown` resolves. `on_bound` sees where its services listen.
/// It runs built-in operators only; see [`run_with_functions`].
pub async fn run(
    config: TaskManagerConfig,
    on_bound: impl FnOnce(&TaskManagerAddresses),
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    run_with_functions(config, UserFunctions::new(), on_bound, shutdown).await
}

/// Runs a TaskManager that can also run the named user functions `functions` (the entry point
/// of a user binary's TaskManager) until `shutdown` resolves.
pub async fn run_with_functions(
    config: TaskManagerConfig,
    functions: UserFunctions,
    on_bound: impl FnOnce(&TaskManagerAddresses),
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(config.rpc)
        .await
        .map_err(|e| std::io::Error::other(format!("bind rpc address {}: {e}", config.rpc)))?;
    let address = listener.local_addr()?;
    let data = SocketAddr::new(config.rpc.ip(), config.data_port);
    let exchange = ExchangeServer::start(
        &data.to_string(),
        config
            .exchange
            .clone()
            .with_local_capacity(RuntimeConfig::default().channel_capacity),
    )
    .map_err(|e| std::io::Error::other(format!("data exchange: {e}")))?;
    let sink_tables = crate::sink_tables::TaskManagerSinkCatalog::default();
    let flight = sluice_flight::sink_table::SinkTableServer::bind(
        SocketAddr::new(config.rpc.ip(), config.flight_port),
        sluice_flight::sink_table::SinkTableService::new(Arc::new(sink_tables.clone()))
            .with_token(config.flight_token.clone()),
    )
    .await
    .map_err(|e| std::io::Error::other(format!("sink-table Flight service: {e}")))?;
    let flight_address = flight.address();
    let metrics_listener =
        tokio::net::TcpListener::bind(SocketAddr::new(config.rpc.ip(), config.metrics_port))
            .await
            .map_err(|e| {
                std::io::Error::other(format!(
                    "bind metrics address {}:{}: {e}",
                    config.rpc.ip(),
                    config.metrics_port
                ))
            })?;
    let metrics_address = metrics_listener.local_addr()?;
    on_bound(&TaskManagerAddresses {
        rpc: address,
        data: exchange.address(),
        flight: flight_address,
        metrics: metrics_address,
    });
    let service = TaskExecutorService {
        id: TaskManagerId(format!("{address}-{}", std::process::id())),
        config,
        exchange,
        jobs: Arc::new(Mutex::new(HashMap::new())),
        functions,
        fence: Arc::new(AtomicU64::new(0)),
        stale_rejected: Arc::new(AtomicU64::new(0)),
        sink_tables,
        flight_port: flight_address.port(),
        metrics_port: metrics_address.port(),
    };
    {
        let service = service.clone();
        let router = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let service = service.clone();
                async move {
                    (
                        [(axum::http::header::CONTENT_TYPE, prometheus::CONTENT_TYPE)],
                        service.render_metrics(),
                    )
                }
            }),
        );
        tokio::spawn(async move {
            if let Err(error) = axum::serve(metrics_listener, router).await {
                warn!(%error, "the metrics endpoint stopped");
            }
        });
    }

    let (stop, _) = tokio::sync::broadcast::channel::<()>(1);
    let server = {
        let mut stopped = stop.subscribe();
        tonic::transport::Server::builder()
            .add_service(TaskExecutorServer::new(service.clone()))
            .serve_with_incoming_shutdown(
                tonic::transport::server::TcpIncoming::from(listener),
                async move {
                    let _ = stopped.recv().await;
                },
            )
    };
    // The JobManager to report to: fixed, or followed in etcd.
    let (leader_tx, leader_rx) = tokio::sync::watch::channel(None);
    let follower = match service.config.ha.clone() {
        Some(ha) => Some(tokio::spawn(follow_leader(ha, leader_tx, stop.subscribe()))),
        None => {
            let _ = leader_tx.send(Some(Leader {
                rpc: service.config.jobmanager.clone(),
                epoch: 0,
            }));
            None
        }
    };
    // Heartbeats stop before the TaskManager says goodbye, so none re-registers it after.
    let (leave, _) = tokio::sync::broadcast::channel::<()>(1);
    let (membership_ended, membership_done) = tokio::sync::oneshot::channel::<()>();
    let membership = {
        let service = service.clone();
        let mut stopped = leave.subscribe();
        let mut changed = leader_rx.clone();
        async move {
            let _ended = membership_ended;
            let address = address.to_string();
            'leaders: loop {
                let current = changed.borrow_and_update().clone();
                let Some(leader) = current else {
                    tokio::select! {
                        result = changed.changed() => if result.is_err() { break; } else { continue; },
                        _ = stopped.recv() => break,
                    }
                };
                if leader.epoch > 0 {
                    service.fence.fetch_max(leader.epoch, Ordering::SeqCst);
                    drop_stale_tasks(&service, leader.epoch).await;
                }
                let Some(asked) =
                    register(&service, &leader, &address, &mut stopped, &mut changed).await
                else {
                    if changed.has_changed().unwrap_or(false) {
                        continue 'leaders;
                    }
                    break;
                };
                let interval = service.config.heartbeat_interval.unwrap_or(asked);
                let mut ticks = tokio::time::interval(interval);
                let mut failing = false;
                loop {
                    tokio::select! {
                        _ = ticks.tick() => {}
                        _ = stopped.recv() => break 'leaders,
                        _ = changed.changed() => continue 'leaders,
                    }
                    let beat = async {
                        let mut client = ResourceManagerClient::connect(endpoint_uri(&leader.rpc))
                            .await
                            .map_err(|e| e.to_string())?;
                        let (metrics, tasks) = service.metrics_report();
                        client
                            .heartbeat(proto::HeartbeatRequest {
                                task_manager_id: service.id.0.clone(),
                                slots: service.slot_report(),
                                metrics: Some(metrics),
                                tasks,
                            })
                            .await
                            .map(|r| r.into_inner().known)
                            .map_err(|e| e.message().to_string())
                    };
                    // A JobManager that accepts connections but does not answer (paused) must
                    // not hold this loop: it has to see a new leader.
                    let beat = tokio::select! {
                        beat = tokio::time::timeout(CALL_TIMEOUT, beat) => beat
                            .unwrap_or_else(|_| Err(format!("no answer within {} s", CALL_TIMEOUT.as_secs()))),
                        _ = stopped.recv() => break 'leaders,
                        _ = changed.changed() => continue 'leaders,
                    };
                    match beat {
                        Ok(true) => {
                            if failing {
                                info!("heartbeats reach the jobmanager again");
                                failing = false;
                            }
                        }
                        Ok(false) => {
                            warn!(
                                "the jobmanager does not know this TaskManager; registering again"
                            );
                            continue 'leaders;
                        }
                        Err(error) => {
                            if !failing {
                                warn!(%error, "heartbeat failed");
                                failing = true;
                            }
                        }
                    }
                }
            }
        }
    };
    let signal = {
        let stop = stop.clone();
        let service = service.clone();
        async move {
            shutdown.await;
            info!("shutting down: cancelling hosted tasks");
            for job in service.jobs().values() {
                job.cancel.cancel();
            }
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            while !service.jobs().is_empty() && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let _ = leave.send(());
            // Resolves when the membership loop has ended (its sender dropped).
            let _ = membership_done.await;
            let leader = leader_rx.borrow().clone();
            let left = async {
                let leader = leader.ok_or_else(|| "no leading jobmanager is known".to_string())?;
                let mut client = ResourceManagerClient::connect(endpoint_uri(&leader.rpc))
                    .await
                    .map_err(|e| e.to_string())?;
                client
                    .disconnect_task_manager(proto::DisconnectTaskManagerRequest {
                        task_manager_id: service.id.0.clone(),
                        reason: "shut down".into(),
                    })
                    .await
                    .map_err(|e| e.message().to_string())
            }
            .await;
            if let Err(error) = left {
                warn!(%error, "could not tell the jobmanager this TaskManager is leaving");
            }
            let _ = stop.send(());
        }
    };
    let flight_server = {
        let mut stopped = stop.subscribe();
        flight.serve(async move {
            let _ = stopped.recv().await;
        })
    };
    let (served, (), (), flight_served) = tokio::join!(server, membership, signal, flight_server);
    if let Err(error) = flight_served {
        warn!(%error, "the sink-table Flight service failed");
    }
    if let Some(follower) = follower {
        follower.abort();
    }
    served.map_err(|e| std::io::Error::other(format!("rpc server: {e}")))?;
    info!("taskmanager stopped");
    Ok(())
}
