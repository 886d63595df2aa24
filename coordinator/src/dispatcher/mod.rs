//! The Dispatcher: accepts jobs, starts a JobMaster for each, and answers the REST API.
//!
//! [`Cluster`] is the JobManager's shared state: the [`ResourceManager`] and the jobs'
//! [`JobMaster`]s behind one lock, which is never held across an `.await` (the state machines
//! decide under the lock; the RPCs they ask for run after it is released). Submission: plan
//! the job (SQL text is planned exactly as `sluice sql -f` plans it), build its ExecutionGraph,
//! allocate one slot per parallel slice (on as few TaskManagers as have the slots), and deploy
//! each TaskManager's share with a `SubmitTask` RPC that locates every task of the job, so the
//! TaskManagers' exchanges connect channels across them.

mod checkpoints;
pub mod metrics;
pub mod rest;

pub use checkpoints::SavepointError;
use checkpoints::checkpoint_tick;

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use std::future::Future;
use std::pin::Pin;

use sluice_engine::checkpoint::{
    CheckpointConfig, RestartStrategy, StatePath, StateStores, TaskKey,
};
use sluice_engine::graph::JobGraph;
use sluice_engine::ids::CheckpointId;
use sluice_engine::ids::{JobId, SubtaskIndex};
use sluice_engine::runtime::{ExecutionState, now_ms};
use tracing::{info, warn};

use crate::ha::HaStore;
use crate::ha::store::{FencedError, JobEnd, JobRecord};
use crate::job_master::checkpoints::{CheckpointWork, JobCheckpoints, SavepointStatus};
use crate::job_master::{Action, JobMaster, JobState, TaskReport};
use crate::resource_manager::{AllocatedSlot, ResourceManager, TaskManagerId};
use crate::rpc::proto;
use crate::rpc::proto::task_executor_client::TaskExecutorClient;

/// Settings of the JobManager.
#[derive(Debug, Clone)]
pub struct JobManagerConfig {
    /// How often TaskManagers send heartbeats (`heartbeat.interval`); default 10 s.
    pub heartbeat_interval: Duration,
    /// A TaskManager silent for this long is lost (`heartbeat.timeout`); default 50 s.
    pub heartbeat_timeout: Duration,
    /// Largest REST request body, in bytes (`rest.server.max-content-length`); default 100 MiB.
    pub max_content_length: usize,
    /// Default parallelism of SQL jobs (`parallelism.default`); default 1.
    pub parallelism: u32,
    /// `execution.checkpointing.*` and `restart-strategy.*` options (`-D`) every job starts
    /// with; a job's `SET` statements override them.
    pub checkpoint_options: Vec<(String, String)>,
    /// How long a job (or a restarted attempt) waits for enough free slots before it fails
    /// (`slot.request.timeout`); default 5 min, as Flink's.
    pub slot_request_timeout: Duration,
    /// High availability through etcd (`--ha etcd`); `None`: this JobManager always leads.
    pub ha: Option<crate::ha::HaConfig>,
    /// Port of the sink-table Flight service (`--flight-port`; 0: any free port), which lists
    /// the jobs' `'connector' = 'flight'` tables with one endpoint per TaskManager partition;
    /// `None`: not served.
    pub flight_port: Option<u16>,
    /// Bearer token that Flight service requires (`None`: open).
    pub flight_token: Option<String>,
    /// The stores the JobMaster writes `_metadata` and savepoints to: local directories, and
    /// object stores with the JobManager's own `s3.*` settings (`-D`, else `AWS_*`
    /// variables). Default: local directories only.
    pub stores: StateStores,
}

impl Default for JobManagerConfig {
    fn default() -> Self {
        JobManagerConfig {
            heartbeat_interval: Duration::from_secs(10),
            heartbeat_timeout: Duration::from_secs(50),
            max_content_length: 104_857_600,
            parallelism: 1,
            checkpoint_options: Vec::new(),
            slot_request_timeout: Duration::from_secs(300),
            ha: None,
            flight_port: None,
            flight_token: None,
            stores: StateStores::default(),
        }
    }
}

/// Why a submission was refused.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The job itself is wrong (SQL, plan, JSON): the client must fix it.
    #[error("{0}")]
    Invalid(String),
    /// The cluster cannot run it now (not enough slots): the client may retry later.
    #[error("{0}")]
    Unavailable(String),
}

/// A job as planned from a submission, ready for [`Cluster::submit`].
#[derive(Debug, Clone)]
pub struct PlannedJob {
    pub graph: JobGraph,
    pub checkpointing: Option<CheckpointConfig>,
    pub restart_strategy: RestartStrategy,
}

/// How often a job waiting for slots looks again.
const SLOT_POLL: Duration = Duration::from_millis(100);

/// The jobs and the registry of TaskManagers.
#[derive(Debug, Default)]
pub struct ClusterState {
    pub resources: ResourceManager,
    pub jobs: BTreeMap<JobId, JobMaster>,
}

/// The JobManager's shared state: under high availability, of one term of leadership (a
/// JobManager elected again starts a new one).
#[derive(Debug)]
pub struct Cluster {
    state: Mutex<ClusterState>,
    pub config: JobManagerConfig,
    /// host:port of the JobMaster service, which TaskManagers report task states to.
    pub rpc_address: String,
    pub started_ms: u64,
    /// The leader epoch carried by every call to a TaskManager (0 without high availability).
    pub epoch: u64,
    /// Where jobs and checkpoint pointers are kept under high availability.
    pub ha: Option<HaStore>,
    /// Set when this term of leadership ended: background work stops.
    deposed: AtomicBool,
    /// Under high availability: whether the leader's lease is still vouched for; once it is
    /// not, this term does no more work.
    lease: Option<crate::ha::etcd::LeaseGuard>,
    /// Jobs whose end is recorded in etcd.
    ends_recorded: Mutex<HashSet<JobId>>,
}

impl Cluster {
    pub fn new(config: JobManagerConfig, rpc_address: String) -> Self {
        Cluster {
            state: Mutex::new(ClusterState::default()),
            config,
            rpc_address,
            started_ms: now_ms(),
            epoch: 0,
            ha: None,
            deposed: AtomicBool::new(false),
            lease: None,
            ends_recorded: Mutex::new(HashSet::new()),
        }
    }

    /// A leader's cluster state under high availability: jobs are kept in `store`, and calls
    /// to TaskManagers carry its epoch.
    pub fn with_ha(mut self, store: HaStore, lease: crate::ha::etcd::LeaseGuard) -> Self {
        self.epoch = store.epoch;
        self.ha = Some(store);
        self.lease = Some(lease);
        self
    }

    /// Whether this term of leadership has ended, or its lease can no longer be vouched for.
    pub fn is_deposed(&self) -> bool {
        self.deposed.load(Ordering::SeqCst) || self.lease.as_ref().is_some_and(|l| !l.vouched())
    }

    /// The state, for a short, non-async critical section.
    pub fn lock(&self) -> MutexGuard<'_, ClusterState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Plans SQL text (or reads JobGraph JSON) into a JobGraph, with its checkpoint and
    /// restart settings (the JobManager's `-D` options, overridden by the script's `SET`s).
    pub fn plan(&self, body: &str) -> Result<PlannedJob, SubmitError> {
        let trimmed = body.trim_start();
        let options = &self.config.checkpoint_options;
        if trimmed.starts_with('{') {
            let graph = JobGraph::from_json(trimmed)
                .map_err(|e| SubmitError::Invalid(format!("JobGraph JSON: {e}")))?;
            if let Some(vertex) = graph.closure_vertex() {
                return Err(SubmitError::Invalid(format!(
                    "vertex '{}' runs a closure that exists only in the submitting program; a \
                     cluster runs built-in operators and named user functions (see \
                     docs/user-code.md)",
                    vertex.name
                )));
            }
            let pairs = || options.iter().map(|(k, v)| (k.as_str(), v.as_str()));
            let checkpointing = CheckpointConfig::from_options(pairs())
                .map_err(|e| SubmitError::Invalid(e.to_string()))?;
            let restart_strategy = RestartStrategy::from_options(pairs())
                .map_err(|e| SubmitError::Invalid(e.to_string()))?;
            return Ok(PlannedJob {
                graph,
                checkpointing,
                restart_strategy,
            });
        }
        let mut session = sluice_engine::sql::Session::new(sluice_engine::sql::SessionConfig {
            parallelism: self.config.parallelism,
            ..Default::default()
        });
        for (key, value) in options {
            session
                .set_option(key, value)
                .map_err(|e| SubmitError::Invalid(format!("-D {key}={value}: {e}")))?;
        }
        let (graph, registry) = session
            .plan_job(body)
            .map_err(|e| SubmitError::Invalid(e.to_string()))?;
        if !session.s3_config().is_empty() {
            // The JobManager and every TaskManager open the store with their own settings; a
            // job's credentials would have to travel to them.
            return Err(SubmitError::Invalid(
                "s3.* settings belong to the cluster's processes, not to a job: pass them with \
                 -D to sluice jobmanager and every sluice taskmanager (or set the AWS_* \
                 environment variables there)"
                    .into(),
            ));
        }
        if let Some(path) = session.restore_path() {
            return Err(SubmitError::Invalid(format!(
                "execution.savepoint.path = '{path}': a cluster job cannot start from a savepoint \
                 yet; restore it in local mode (sluice sql -f SCRIPT -s PATH)"
            )));
        }
        if !registry.is_empty() {
            return Err(SubmitError::Invalid(
                "the job uses operators that exist only in the submitting program; a cluster \
                 runs built-in operators and named user functions (see docs/user-code.md)"
                    .into(),
            ));
        }
        let checkpointing = session
            .checkpoint_config()
            .map_err(|e| SubmitError::Invalid(e.to_string()))?;
        let restart_strategy = session
            .restart_strategy()
            .map_err(|e| SubmitError::Invalid(e.to_string()))?;
        Ok(PlannedJob {
            graph,
            checkpointing,
            restart_strategy,
        })
    }

    /// Starts a planned job: registers it (CREATED) and returns its id at once; its slots are
    /// requested and its tasks deployed in the background (see [`Cluster::run_attempt`]).
    /// Under high availability the job is first stored in etcd (so a new leader resumes it),
    /// and refused when this JobManager no longer leads.
    pub async fn submit(self: &Arc<Self>, planned: PlannedJob) -> Result<JobId, SubmitError> {
        let PlannedJob {
            graph,
            checkpointing,
            restart_strategy,
        } = planned;
        let graph_json = graph
            .to_json()
            .map_err(|e| SubmitError::Invalid(format!("JobGraph: {e}")))?;
        let id = JobId::generate();
        let submitted_ms = now_ms();
        if let Some(store) = &self.ha {
            let record = JobRecord {
                id: id.0.clone(),
                graph: graph_json,
                checkpointing: checkpointing.clone(),
                restart_strategy,
                submitted_ms,
                attempt: 0,
                end: None,
            };
            store
                .put_job(&record)
                .await
                .map_err(|e| SubmitError::Unavailable(format!("storing the job in etcd: {e}")))?;
        }
        let mut job =
            JobMaster::new(id.clone(), graph, submitted_ms).with_restart_strategy(restart_strategy);
        let tick = checkpointing.as_ref().map(|c| checkpoint_tick(c.interval));
        if let Some(config) = checkpointing {
            let checkpoints =
                JobCheckpoints::new(&id, config, job.task_keys(), &self.config.stores)
                    .map_err(|e| SubmitError::Invalid(e.to_string()))?
                    .with_fencing(self.ha.is_some());
            job.checkpoints = Some(checkpoints);
        }
        info!(job_id = %id, name = %job.graph.name, slots = job.slots_needed(), "job submitted");
        self.lock().jobs.insert(id.clone(), job);
        if let Some(tick) = tick {
            tokio::spawn(self.clone().run_checkpoint_timer(id.clone(), tick));
        }
        tokio::spawn(self.clone().run_attempt(id.clone(), 0, None));
        Ok(id)
    }

    /// Runs attempt `attempt` of job `id`: requests its slots from the ResourceManager,
    /// waiting up to `slot.request.timeout` for TaskManagers to offer enough (the job fails
    /// after that), then deploys each TaskManager's share with a `SubmitTask` RPC that locates
    /// every task of the job, so the TaskManagers' exchanges connect channels across them.
    /// A restarted attempt resumes from `restore` (the checkpoint directory).
    async fn run_attempt(self: Arc<Self>, id: JobId, attempt: u32, restore: Option<StatePath>) {
        let deadline = Instant::now() + self.config.slot_request_timeout;
        let mut waiting_logged = false;
        let AttemptPlan {
            per_task_manager: deployments,
            locations,
            graph_json,
            checkpoint_dir,
            checkpoint_incremental,
        } = loop {
            if self.is_deposed() {
                return;
            }
            {
                let mut state = self.lock();
                let Some(job) = state.jobs.get(&id) else {
                    return;
                };
                if job.attempt != attempt || job.state.is_terminal() {
                    return;
                }
                let needed = job.slots_needed();
                match state.resources.allocate(&id, needed) {
                    Ok(slots) => {
                        let plan = schedule(&mut state, &id, &slots);
                        break plan;
                    }
                    Err(error) if Instant::now() >= deadline => {
                        let reason = format!(
                            "{error}; no TaskManager offered them within slot.request.timeout ({} ms)",
                            self.config.slot_request_timeout.as_millis()
                        );
                        warn!(job_id = %id, attempt, %reason, "job failed: not enough slots");
                        let actions = match state.jobs.get_mut(&id) {
                            Some(job) => job.fail(&reason, now_ms()),
                            None => Vec::new(),
                        };
                        apply_local(&mut state, &id, actions);
                        return;
                    }
                    Err(error) => {
                        if !waiting_logged {
                            info!(job_id = %id, attempt, needed, %error, "waiting for slots");
                            waiting_logged = true;
                        }
                    }
                }
            }
            tokio::time::sleep(SLOT_POLL).await;
        };
        let execution_slots = deployments
            .values()
            .flat_map(|(_, tasks)| tasks.iter().map(|t| t.slot + 1))
            .max()
            .unwrap_or(1);
        let restore_checkpoint = restore.map(|p| p.to_string()).unwrap_or_default();
        let order: Vec<TaskManagerId> = deployments.keys().cloned().collect();
        for (sent, (tm, (address, tasks))) in deployments.into_iter().enumerate() {
            let request = proto::SubmitTaskRequest {
                job_id: id.0.clone(),
                job_graph_json: graph_json.clone(),
                execution_slots,
                tasks,
                job_master_address: self.rpc_address.clone(),
                attempt,
                locations: locations.clone(),
                checkpoint_dir: checkpoint_dir.clone(),
                checkpoint_incremental,
                restore_checkpoint: restore_checkpoint.clone(),
            };
            let result = call_task_executor(&address, self.epoch, |mut c| async move {
                c.submit_task(request).await
            })
            .await;
            if let Err(error) = result {
                warn!(job_id = %id, attempt, task_manager = %tm, %error, "deployment failed");
                let work = {
                    let mut state = self.lock();
                    let reason =
                        format!("deploying to TaskManager {tm} ({address}) failed: {error}");
                    let current = state.jobs.get_mut(&id).filter(|job| job.attempt == attempt);
                    match (current, &error) {
                        (Some(job), CallError::Refused(_)) => {
                            for unsent in &order[sent + 1..] {
                                job.withdraw(unsent, now_ms());
                            }
                            let actions = job.deployment_refused(&tm, &reason, now_ms());
                            vec![(id.clone(), apply_local(&mut state, &id, actions))]
                        }
                        (None, CallError::Refused(_)) => Vec::new(),
                        (current, CallError::Unreachable(_)) => {
                            if let Some(job) = current {
                                for unsent in &order[sent + 1..] {
                                    job.withdraw(unsent, now_ms());
                                }
                            }
                            // A TaskManager that cannot be reached is written off; it
                            // registers again with its next heartbeat if it is still alive.
                            state.resources.remove(&tm);
                            self.lose(&mut state, &tm, &reason)
                        }
                    }
                };
                for (job, actions) in work {
                    self.perform(&job, actions).await;
                }
                break;
            }
        }
    }

    /// Restarts job `id` as attempt `attempt` after `delay`: the new attempt resumes from the
    /// latest completed checkpoint (or from the beginning when none completed yet).
    async fn restart(self: Arc<Self>, id: JobId, attempt: u32, delay: Duration) {
        tokio::time::sleep(delay).await;
        let storage = {
            let mut state = self.lock();
            let Some(job) = state.jobs.get_mut(&id) else {
                return;
            };
            if self.is_deposed() || !job.begin_attempt(attempt, now_ms()) {
                return;
            }
            job.checkpoints
                .as_ref()
                .map(|c| (c.restorable(), c.storage_lane()))
        };
        if let Err(error) = self.record_attempt(&id, attempt).await {
            warn!(job_id = %id, attempt, %error, "not restarting: the attempt could not be recorded in etcd");
            return;
        }
        // The old attempt's tasks have all stopped: checkpoints they left incomplete go, then
        // every state file of the newest restorable checkpoint is verified (an unreadable one
        // falls back to the one before; under high availability only committed ones count).
        // Storage I/O, so off the async runtime, outside the lock and in the job's storage
        // lane (after a `_metadata` write still in flight).
        let latest = match storage {
            Some((restorable, lane)) => {
                let _turn = lane.lock_owned().await;
                tokio::task::spawn_blocking(move || restorable.load())
                    .await
                    .unwrap_or_else(|e| {
                        Err(sluice_engine::Error::Internal(format!(
                            "reading the latest checkpoint panicked: {e}"
                        )))
                    })
            }
            None => Ok(None),
        };
        let restore = {
            let mut state = self.lock();
            let Some(job) = state.jobs.get_mut(&id) else {
                return;
            };
            if job.attempt != attempt || job.state != JobState::Restarting {
                // Cancelled (or failed) while the checkpoint was read.
                return;
            }
            match latest {
                Ok(latest) => {
                    let tasks = job.task_keys();
                    let restored = job
                        .checkpoints
                        .as_mut()
                        .and_then(|c| c.restart(&id, tasks, latest));
                    job.restored_from = restored.clone();
                    info!(job_id = %id, attempt, checkpoint_id = restored.as_ref().map(|(c, _)| c.0), "restarting job");
                    restored.map(|(_, path)| path)
                }
                Err(error) => {
                    let reason = format!("restarting from the latest checkpoint: {error}");
                    warn!(job_id = %id, attempt, %reason, "job failed");
                    let actions = job.fail(&reason, now_ms());
                    apply_local(&mut state, &id, actions);
                    return;
                }
            }
        };
        self.run_attempt(id, attempt, restore).await;
    }

    /// Under high availability: records in etcd that attempt `attempt` of job `id` starts,
    /// so a new leader starts a later one. Fails when this JobManager no longer leads.
    async fn record_attempt(&self, id: &JobId, attempt: u32) -> Result<(), FencedError> {
        let Some(store) = &self.ha else {
            return Ok(());
        };
        let record = {
            let state = self.lock();
            let Some(job) = state.jobs.get(id) else {
                return Ok(());
            };
            job_record(job)
        };
        let mut record = record;
        record.attempt = attempt;
        store.put_job(&record).await
    }

    /// Under high availability: records in etcd the end of every job that ended and whose end
    /// is not recorded yet, so a new leader does not resume it.
    pub async fn record_ends(&self) {
        let Some(store) = &self.ha else {
            return;
        };
        let ended: Vec<JobRecord> = {
            let state = self.lock();
            let recorded = self.ends_recorded.lock().unwrap_or_else(|p| p.into_inner());
            state
                .jobs
                .values()
                .filter(|job| job.state.is_terminal() && !recorded.contains(&job.id))
                .map(job_record)
                .collect()
        };
        for record in ended {
            match store.put_job(&record).await {
                Ok(()) => {
                    self.ends_recorded
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(JobId(record.id.clone()));
                }
                Err(error) => {
                    warn!(job_id = %record.id, %error, "recording the job's end in etcd failed");
                    return;
                }
            }
        }
    }

    /// This term of leadership ended: background work stops, and the tasks of every running
    /// job are cancelled (Flink's JobMaster suspends its jobs when it loses leadership). The
    /// cancel calls carry this term's epoch, so TaskManagers that already follow a newer
    /// leader refuse them; the jobs themselves stay in etcd for the next leader.
    pub async fn suspend(self: &Arc<Self>) {
        self.deposed.store(true, Ordering::SeqCst);
        let running: Vec<JobId> = {
            let state = self.lock();
            state
                .jobs
                .values()
                .filter(|job| !job.state.is_terminal())
                .map(|job| job.id.clone())
                .collect()
        };
        for id in running {
            for (_, address) in self.addresses(&id, false) {
                let request = proto::CancelTaskRequest {
                    job_id: id.0.clone(),
                };
                match call_task_executor(&address, self.epoch, |mut c| async move {
                    c.cancel_task(request).await
                })
                .await
                {
                    Ok(_) => info!(job_id = %id, %address, "suspended: tasks cancelled"),
                    Err(error) => {
                        info!(job_id = %id, %address, %error, "suspending: the TaskManager refused or could not be reached")
                    }
                }
            }
        }
    }

    /// A new leader takes over the jobs stored in etcd: an ended one is listed as it ended;
    /// every other one resumes, as its next execution attempt, from the latest checkpoint its
    /// pointer names (every file verified; without a pointer, from the beginning).
    pub async fn recover(self: &Arc<Self>) -> Result<usize, crate::ha::EtcdError> {
        let Some(store) = &self.ha else {
            return Ok(0);
        };
        let mut resumed = 0;
        for (record, pointer) in store.jobs().await? {
            let id = JobId(record.id.clone());
            let graph = match JobGraph::from_json(&record.graph) {
                Ok(graph) => graph,
                Err(error) => {
                    warn!(job_id = %id, %error, "the stored JobGraph does not parse; the job is skipped");
                    continue;
                }
            };
            if let Some(end) = &record.end {
                let job = JobMaster::ended(id.clone(), graph, record.submitted_ms, end);
                self.ends_recorded
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(id.clone());
                self.lock().jobs.insert(id, job);
                continue;
            }
            let attempt = record.attempt + 1;
            let mut job =
                JobMaster::taken_over(id.clone(), graph, record.submitted_ms, attempt, now_ms())
                    .with_restart_strategy(record.restart_strategy);
            let mut restore = None;
            if let Some(config) = record.checkpointing.clone() {
                let mut checkpoints =
                    match JobCheckpoints::new(&id, config, job.task_keys(), &self.config.stores) {
                        Ok(checkpoints) => checkpoints.with_fencing(true),
                        Err(error) => {
                            let reason =
                                format!("taking over: opening its checkpoint storage: {error}");
                            warn!(job_id = %id, %reason, "job failed");
                            job.fail(&reason, now_ms());
                            self.lock().jobs.insert(id, job);
                            continue;
                        }
                    };
                let storage = checkpoints.storage().clone();
                let newest_written = tokio::task::spawn_blocking(move || {
                    storage.completed_ids().map(|ids| ids.last().copied())
                })
                .await
                .unwrap_or_else(|e| Err(sluice_engine::Error::Internal(e.to_string())));
                let newest_written = match newest_written {
                    Ok(newest) => newest,
                    Err(error) => {
                        warn!(job_id = %id, %error, "listing the job's checkpoints failed");
                        None
                    }
                };
                checkpoints.taken_over(pointer.map(|p| p.id()), newest_written);
                let restorable = checkpoints.restorable();
                let latest = tokio::task::spawn_blocking(move || restorable.load())
                    .await
                    .unwrap_or_else(|e| Err(sluice_engine::Error::Internal(e.to_string())));
                match latest {
                    Ok(latest) => {
                        let tasks = job.task_keys();
                        restore = checkpoints.restart(&id, tasks, latest);
                        job.restored_from = restore.clone();
                    }
                    Err(error) => {
                        let reason = format!("taking over: reading the latest checkpoint: {error}");
                        warn!(job_id = %id, %reason, "job failed");
                        job.checkpoints = Some(checkpoints);
                        job.fail(&reason, now_ms());
                        self.lock().jobs.insert(id, job);
                        continue;
                    }
                }
                job.checkpoints = Some(checkpoints);
            }
            let mut stored = record.clone();
            stored.attempt = attempt;
            if let Err(error) = store.put_job(&stored).await {
                warn!(job_id = %id, %error, "taking over the job failed");
                return Ok(resumed);
            }
            info!(job_id = %id, attempt, checkpoint_id = restore.as_ref().map(|(c, _)| c.0), "job taken over; resuming");
            let tick = job
                .checkpoints
                .as_ref()
                .map(|c| checkpoint_tick(c.config.interval));
            self.lock().jobs.insert(id.clone(), job);
            if let Some(tick) = tick {
                tokio::spawn(self.clone().run_checkpoint_timer(id.clone(), tick));
            }
            tokio::spawn(
                self.clone()
                    .run_attempt(id, attempt, restore.map(|(_, p)| p)),
            );
            resumed += 1;
        }
        Ok(resumed)
    }

    /// A task's state report from a TaskManager.
    pub async fn task_state(
        self: &Arc<Self>,
        report: proto::UpdateTaskStateRequest,
    ) -> Result<(), tonic::Status> {
        let id = JobId(report.job_id.clone());
        let state = ExecutionState::from_name(&report.state).ok_or_else(|| {
            tonic::Status::invalid_argument(format!("unknown task state '{}'", report.state))
        })?;
        let metrics = report
            .metrics
            .into_iter()
            .map(crate::task_metrics::operator_from_proto)
            .collect();
        let sample = report
            .final_metrics
            .map(crate::task_metrics::sample_from_proto);
        let failure = (!report.failure.is_empty()).then_some(report.failure);
        let task_report = TaskReport {
            attempt: report.attempt,
            chain: report.chain as usize,
            subtask: SubtaskIndex(report.subtask),
            state,
            at_ms: report.timestamp_ms,
            failure,
            retryable: report.retryable,
            metrics,
            sample,
        };
        let actions = {
            let mut state_guard = self.lock();
            let job = state_guard
                .jobs
                .get_mut(&id)
                .ok_or_else(|| tonic::Status::not_found(format!("no job {id}")))?;
            let before = job.state;
            let current = report.attempt == job.attempt;
            let actions = job
                .task_state(task_report, now_ms())
                .map_err(tonic::Status::invalid_argument)?;
            if job.state != before && !job.state.is_terminal() {
                info!(job_id = %id, state = %job.state, "job state changed");
            }
            let ended = job.state.is_terminal();
            let work = match &mut job.checkpoints {
                Some(checkpoints) if ended => checkpoints.job_ended(),
                Some(checkpoints) if current && state == ExecutionState::Finished => checkpoints
                    .task_finished(TaskKey {
                        chain: report.chain as usize,
                        subtask: report.subtask,
                    }),
                _ => Vec::new(),
            };
            (apply_local(&mut state_guard, &id, actions), work)
        };
        let (actions, work) = actions;
        self.perform(&id, actions).await;
        self.perform_checkpoint_work(&id, work).await;
        self.record_ends().await;
        Ok(())
    }

    /// Cancels a job. `Ok(false)` when it had already ended; `Err` when it is unknown.
    pub async fn cancel(self: &Arc<Self>, id: &JobId) -> Result<bool, String> {
        let (cancelled, actions) = {
            let mut state = self.lock();
            let job = state
                .jobs
                .get_mut(id)
                .ok_or_else(|| format!("no job {id}"))?;
            let (cancelled, actions) = job.cancel(now_ms());
            (cancelled, apply_local(&mut state, id, actions))
        };
        if cancelled {
            info!(job_id = %id, "job cancelling");
        }
        self.perform(id, actions).await;
        Ok(cancelled)
    }

    /// Removes TaskManagers whose heartbeats stopped and fails their jobs.
    pub async fn expire_task_managers(self: &Arc<Self>) {
        let timeout = self.config.heartbeat_timeout;
        let mut work = Vec::new();
        {
            let mut state = self.lock();
            let lost = state.resources.expire(Instant::now(), timeout);
            for record in lost {
                warn!(
                    task_manager = %record.id,
                    address = %record.rpc_address,
                    timeout_ms = timeout.as_millis() as u64,
                    "TaskManager lost: no heartbeat within heartbeat.timeout; removed"
                );
                let reason = format!(
                    "TaskManager {} ({}) lost: no heartbeat for {} ms",
                    record.id,
                    record.rpc_address,
                    timeout.as_millis()
                );
                work.extend(self.lose(&mut state, &record.id, &reason));
            }
        }
        for (id, actions) in work {
            self.perform(&id, actions).await;
        }
    }

    /// A TaskManager left cleanly.
    pub async fn disconnect(self: &Arc<Self>, tm: &TaskManagerId, reason: &str) -> bool {
        let work = {
            let mut state = self.lock();
            let Some(record) = state.resources.remove(tm) else {
                return false;
            };
            info!(task_manager = %record.id, reason, "TaskManager disconnected");
            let why = format!("TaskManager {tm} disconnected: {reason}");
            self.lose(&mut state, tm, &why)
        };
        for (id, actions) in work {
            self.perform(&id, actions).await;
        }
        true
    }

    /// Fails the tasks of every job on a TaskManager that is gone.
    fn lose(
        &self,
        state: &mut ClusterState,
        tm: &TaskManagerId,
        reason: &str,
    ) -> Vec<(JobId, Vec<Action>)> {
        let ids: Vec<JobId> = state
            .jobs
            .iter()
            .filter(|(_, job)| !job.state.is_terminal() && job.task_managers().contains(tm))
            .map(|(id, _)| id.clone())
            .collect();
        let mut work = Vec::new();
        for id in ids {
            let actions = match state.jobs.get_mut(&id) {
                Some(job) => job.task_manager_lost(tm, reason, now_ms()),
                None => continue,
            };
            work.push((id.clone(), apply_local(state, &id, actions)));
        }
        work
    }

    /// Performs the actions that need RPCs or timers (after the lock is released). Boxed: a
    /// failed cancel call loses a TaskManager, whose other jobs' actions it performs in turn.
    fn perform<'a>(
        self: &'a Arc<Self>,
        id: &'a JobId,
        actions: Vec<Action>,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        Box::pin(async move { self.perform_actions(id, actions).await })
    }

    async fn perform_actions(self: &Arc<Self>, id: &JobId, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::CancelTasks(tms) => {
                    let addresses: Vec<(TaskManagerId, String)> = {
                        let state = self.lock();
                        tms.iter()
                            .filter_map(|tm| {
                                state
                                    .resources
                                    .get(tm)
                                    .map(|r| (tm.clone(), r.rpc_address.clone()))
                            })
                            .collect()
                    };
                    for (tm, address) in addresses {
                        let request = proto::CancelTaskRequest {
                            job_id: id.0.clone(),
                        };
                        let result = call_task_executor(&address, self.epoch, |mut c| async move {
                            c.cancel_task(request).await
                        })
                        .await;
                        if let Err(error) = result {
                            warn!(job_id = %id, task_manager = %tm, %error, "cancelling tasks failed");
                            // As Flink's JobMaster does when a cancel call fails: the tasks
                            // there can no longer be reached, so they end now rather than
                            // when the TaskManager's heartbeats time out.
                            let reason = format!(
                                "cancelling the tasks on TaskManager {tm} ({address}) failed: \
                                 {error}"
                            );
                            // It is written off in the ResourceManager too (it registers again
                            // with its next heartbeat if it is alive), so no restart is
                            // scheduled onto it; other jobs there restart or fail.
                            let work = {
                                let mut state = self.lock();
                                state.resources.remove(&tm);
                                self.lose(&mut state, &tm, &reason)
                            };
                            for (job, actions) in work {
                                self.perform(&job, actions).await;
                            }
                        }
                    }
                }
                Action::Restart { attempt, delay } => {
                    tokio::spawn(self.clone().restart(id.clone(), attempt, delay));
                }
                Action::ReleaseSlots => {}
            }
        }
    }
}

/// A job as etcd keeps it.
fn job_record(job: &JobMaster) -> JobRecord {
    JobRecord {
        id: job.id.0.clone(),
        graph: job
            .graph
            .to_json()
            .expect("the JobGraph was serialised when it was submitted"),
        checkpointing: job.checkpoints.as_ref().map(|c| c.config.clone()),
        restart_strategy: job.restart_strategy,
        submitted_ms: job.entered(JobState::Created).unwrap_or_default(),
        attempt: job.attempt,
        end: job.state.is_terminal().then(|| JobEnd {
            state: job.state.as_str().to_string(),
            failure: job.failure.clone(),
            end_ms: job.entered(job.state).unwrap_or_default(),
        }),
    }
}

/// Under the lock: places the job's current attempt on `slots` (slot `i` of its
/// ExecutionGraph on `slots[i]`), marks its tasks SCHEDULED and DEPLOYING, and returns what
/// each TaskManager is sent, every task's location, the JobGraph JSON and the checkpoint
/// settings.
fn schedule(state: &mut ClusterState, id: &JobId, slots: &[AllocatedSlot]) -> AttemptPlan {
    let hosts: Vec<String> = slots
        .iter()
        .map(|s| {
            state
                .resources
                .get(&s.task_manager)
                .map(|r| r.rpc_address.clone())
                .unwrap_or_default()
        })
        .collect();
    let data_addresses: Vec<String> = slots
        .iter()
        .map(|s| {
            state
                .resources
                .get(&s.task_manager)
                .filter(|r| r.data_port != 0)
                .map(|r| data_address(&r.rpc_address, r.data_port))
                .unwrap_or_default()
        })
        .collect();
    let job = state
        .jobs
        .get_mut(id)
        .expect("the caller found the job under the same lock");
    job.schedule(slots, &hosts, now_ms());
    let mut per_tm: BTreeMap<TaskManagerId, (String, Vec<proto::TaskDeployment>)> = BTreeMap::new();
    for placement in &job.execution.tasks {
        let index = placement.slot.0 as usize;
        let slot = &slots[index];
        per_tm
            .entry(slot.task_manager.clone())
            .or_insert_with(|| (hosts[index].clone(), Vec::new()))
            .1
            .push(proto::TaskDeployment {
                chain: placement.chain as u32,
                subtask: placement.subtask.0,
                slot: placement.slot.0,
                task_manager_slot: slot.slot.0,
            });
    }
    for tm in per_tm.keys() {
        job.deploying(tm, now_ms());
    }
    let locations = job
        .execution
        .tasks
        .iter()
        .map(|p| {
            let index = p.slot.0 as usize;
            proto::TaskLocation {
                chain: p.chain as u32,
                subtask: p.subtask.0,
                task_manager_id: slots[index].task_manager.0.clone(),
                data_address: data_addresses[index].clone(),
            }
        })
        .collect();
    let graph_json = job
        .graph
        .to_json()
        .expect("the JobGraph was serialised when it was submitted");
    let (checkpoint_dir, checkpoint_incremental) = job
        .checkpoints
        .as_ref()
        .map_or((String::new(), false), |c| {
            (c.config.dir.to_string(), c.config.incremental)
        });
    info!(job_id = %id, attempt = job.attempt, slots = slots.len(), task_managers = per_tm.len(), "job scheduled");
    AttemptPlan {
        per_task_manager: per_tm,
        locations,
        graph_json,
        checkpoint_dir,
        checkpoint_incremental,
    }
}

/// What an attempt's deployment sends: each TaskManager's tasks (with its RPC address), where
/// every task runs, the JobGraph JSON and the checkpoint settings.
struct AttemptPlan {
    per_task_manager: BTreeMap<TaskManagerId, (String, Vec<proto::TaskDeployment>)>,
    locations: Vec<proto::TaskLocation>,
    graph_json: String,
    checkpoint_dir: String,
    checkpoint_incremental: bool,
}

/// host:port of one of a TaskManager's endpoints (data exchange, sink-table Flight service):
/// the host of its RPC address, the endpoint's port.
pub(crate) fn data_address(rpc_address: &str, data_port: u32) -> String {
    let host = rpc_address
        .rsplit_once(':')
        .map_or(rpc_address, |(host, _)| host);
    format!("{host}:{data_port}")
}

/// Performs the actions that need only the state (slot release; the job's end is logged) and
/// returns the rest.
fn apply_local(state: &mut ClusterState, id: &JobId, actions: Vec<Action>) -> Vec<Action> {
    let mut remote = Vec::new();
    for action in actions {
        match action {
            Action::ReleaseSlots => {
                state.resources.release(id);
                if let Some(job) = state.jobs.get(id) {
                    match &job.failure {
                        Some(failure) => {
                            info!(job_id = %id, state = %job.state, failure = %failure, "job ended")
                        }
                        None => info!(job_id = %id, state = %job.state, "job ended"),
                    }
                }
            }
            action @ Action::Restart { .. } => {
                // The new attempt requests its slots afresh (the lost TaskManager's are gone).
                state.resources.release(id);
                remote.push(action);
            }
            action @ Action::CancelTasks(_) => remote.push(action),
        }
    }
    remote
}

/// Why a call to a TaskExecutor failed.
#[derive(Debug, thiserror::Error)]
enum CallError {
    /// The TaskManager could not be reached (connection refused, transport broken): it is
    /// probably gone.
    #[error("{0}")]
    Unreachable(String),
    /// The TaskManager answered with an error: it is there, but cannot do what was asked.
    #[error("{0}")]
    Refused(String),
}

/// Puts the leader's epoch on every call, for the TaskManager's fencing check.
#[derive(Debug, Clone, Copy)]
struct EpochInterceptor(u64);

impl tonic::service::Interceptor for EpochInterceptor {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        request
            .metadata_mut()
            .insert(crate::ha::EPOCH_HEADER, self.0.into());
        Ok(request)
    }
}

/// A TaskExecutor client whose calls carry the leader's epoch.
type TaskExecutorCaller = TaskExecutorClient<
    tonic::service::interceptor::InterceptedService<tonic::transport::Channel, EpochInterceptor>,
>;

/// Connects to the TaskExecutor service at `address` and makes one call on it, carrying the
/// leader epoch `epoch`.
async fn call_task_executor<T, F>(
    address: &str,
    epoch: u64,
    call: impl FnOnce(TaskExecutorCaller) -> F,
) -> Result<T, CallError>
where
    F: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    // Bounded, so a TaskManager that accepts connections but does not answer (a paused
    // process) counts as unreachable instead of holding the JobMaster's work.
    let channel = tonic::transport::Endpoint::from_shared(crate::rpc::endpoint_uri(address))
        .map_err(|e| CallError::Refused(format!("address {address}: {e}")))?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(60))
        .connect()
        .await
        .map_err(|e| CallError::Unreachable(e.to_string()))?;
    let client = TaskExecutorClient::with_interceptor(channel, EpochInterceptor(epoch));
    call(client)
        .await
        .map(tonic::Response::into_inner)
        .map_err(|status| match status.code() {
            tonic::Code::Unavailable | tonic::Code::Cancelled | tonic::Code::DeadlineExceeded => {
                CallError::Unreachable(status.message().to_string())
            }
            _ => CallError::Refused(status.message().to_string()),
        })
}
