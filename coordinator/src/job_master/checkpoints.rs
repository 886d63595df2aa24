//! Checkpoints of a cluster job: the engine's [`CheckpointCoordinator`] state machine, its
//! storage in the shared checkpoint directory, savepoint requests and the statistics the REST
//! API reports.
//!
//! [`JobCheckpoints`] turns the coordinator's actions into [`CheckpointWork`] for the
//! dispatcher's async shell (trigger RPCs to the TaskManagers hosting sources, completion
//! notices to every TaskManager of the job, cancelling the job after a savepoint with
//! `cancel-job`, and the storage operations). Storage is I/O (a disk, or requests to an object
//! store), so it never runs under the cluster lock: writing a completed checkpoint's
//! `_metadata` ([`CheckpointWork::Persist`]), writing a savepoint
//! ([`CheckpointWork::WriteSavepoint`]) and deleting aborted checkpoints are work the shell
//! performs off the async runtime, one at a time per job (its [`JobCheckpoints::storage_lane`]),
//! and reports back ([`JobCheckpoints::persisted`], [`JobCheckpoints::savepoint_written`]).
//! While a checkpoint is being persisted no new one is triggered, so checkpoints complete in
//! order and retention never races a newer checkpoint's files.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sluice_engine::checkpoint::{
    CheckpointConfig, CheckpointCoordinator, CheckpointMetadata, CheckpointStorage,
    CoordinatorAction, CoordinatorEvent, OperatorState, StatePath, StateStores, TaskKey,
};
use sluice_engine::ids::{CheckpointId, JobId};
use sluice_engine::runtime::now_ms;
use tracing::{info, warn};

/// Entries kept in the checkpoint history.
const HISTORY: usize = 10;

/// What the shell must do for a job's checkpoints (after releasing the lock).
#[derive(Debug, Clone, PartialEq)]
pub enum CheckpointWork {
    /// Send TriggerCheckpoint to the TaskManagers hosting the job's sources.
    Trigger {
        checkpoint: CheckpointId,
        timestamp_ms: i64,
        savepoint: bool,
    },
    /// Send NotifyCheckpointComplete to every TaskManager of the job.
    NotifyComplete { checkpoint: CheckpointId },
    /// A savepoint with `cancel-job` completed: cancel the job.
    CancelJob,
    /// More consecutive checkpoints failed than tolerated: fail the job.
    FailJob { reason: String },
    /// Every task acknowledged `metadata`'s checkpoint: publish its `_metadata` and apply
    /// retention, then report with [`JobCheckpoints::persisted`].
    Persist { metadata: Box<CheckpointMetadata> },
    /// Every task acknowledged the savepoint `metadata`: write it under `root`, then report
    /// with [`JobCheckpoints::savepoint_written`].
    WriteSavepoint {
        metadata: Box<CheckpointMetadata>,
        root: StatePath,
    },
    /// Delete the files of a checkpoint that will not complete.
    Discard { checkpoint: CheckpointId },
    /// The job ended: delete every checkpoint directory without `_metadata`.
    DiscardIncomplete,
}

/// One checkpoint or savepoint, as the REST API reports it.
#[derive(Debug, Clone)]
pub struct CheckpointRecord {
    pub id: CheckpointId,
    pub savepoint: bool,
    /// COMPLETED or FAILED (IN_PROGRESS is the pending one, not recorded).
    pub status: &'static str,
    pub trigger_timestamp_ms: i64,
    pub latest_ack_timestamp_ms: i64,
    pub duration_ms: u64,
    pub state_size: u64,
    /// The longest barrier alignment of any task (0 for a checkpoint of sources only).
    pub alignment_ms: u64,
    pub acknowledged: usize,
    pub external_path: Option<StatePath>,
    pub failure: Option<String>,
}

impl CheckpointRecord {
    /// Flink's checkpoint statistics entry.
    pub fn to_json(&self, tasks: usize) -> Value {
        json!({
            "@class": self.status.to_ascii_lowercase(),
            "id": self.id.0,
            "status": self.status,
            "is_savepoint": self.savepoint,
            "checkpoint_type": if self.savepoint { "SAVEPOINT" } else { "CHECKPOINT" },
            "trigger_timestamp": self.trigger_timestamp_ms,
            "latest_ack_timestamp": self.latest_ack_timestamp_ms,
            "state_size": self.state_size,
            "checkpointed_size": self.state_size,
            "end_to_end_duration": self.duration_ms,
            "alignment_duration": self.alignment_ms,
            "num_subtasks": tasks,
            "num_acknowledged_subtasks": self.acknowledged,
            "external_path": self.external_path.as_ref().map(|p| p.to_string()),
            "discarded": false,
            "failure_message": self.failure,
        })
    }
}

/// The state of a savepoint request (Flink's asynchronous operation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SavepointStatus {
    InProgress,
    Completed(StatePath),
    Failed(String),
}

#[derive(Debug)]
struct SavepointRequest {
    trigger: String,
    root: StatePath,
    cancel_job: bool,
    /// The savepoint's id once triggered.
    checkpoint: Option<CheckpointId>,
}

/// The checkpoints of one job.
#[derive(Debug)]
pub struct JobCheckpoints {
    pub config: CheckpointConfig,
    coordinator: CheckpointCoordinator,
    storage: CheckpointStorage,
    /// The coordinator's monotonic clock starts here.
    epoch: Instant,
    task_count: usize,
    /// The pending checkpoint: its id, when it was triggered, acknowledgements so far.
    pending: Option<(CheckpointId, Instant, usize)>,
    /// The longest barrier alignment a task reported for the pending checkpoint.
    pending_alignment: Duration,
    /// The pending checkpoint (or savepoint) whose files the shell is writing: every task
    /// acknowledged it, and nothing new is triggered until the shell reports.
    persisting: Option<CheckpointId>,
    /// Storage operations of this job run one at a time, in the order they were handed out.
    lane: Arc<tokio::sync::Mutex<()>>,
    pub completed: u64,
    pub failed: u64,
    pub latest_completed: Option<CheckpointRecord>,
    pub latest_savepoint: Option<CheckpointRecord>,
    pub latest_failed: Option<CheckpointRecord>,
    /// Newest first.
    pub history: VecDeque<CheckpointRecord>,
    waiting: VecDeque<SavepointRequest>,
    savepoint: Option<SavepointRequest>,
    savepoints: BTreeMap<String, SavepointStatus>,
    /// The newest checkpoint id handed out (ids of a restarted job continue after it, so no
    /// directory of an aborted checkpoint is reused).
    last_triggered: Option<CheckpointId>,
    /// Under high availability: a checkpoint completes only when its pointer in etcd moved.
    fenced: bool,
    /// The newest checkpoint whose pointer moved in etcd (fenced only).
    committed: Option<CheckpointId>,
}

/// What a restart may resume from, read outside the cluster lock ([`Restorable::load`]).
#[derive(Debug, Clone)]
pub struct Restorable {
    storage: CheckpointStorage,
    /// `Some`: only checkpoints up to the one committed in etcd (`Some(None)`: none yet).
    newest: Option<Option<CheckpointId>>,
}

impl Restorable {
    pub fn storage(&self) -> &CheckpointStorage {
        &self.storage
    }

    /// Removes the checkpoints left incomplete, then returns the id of the newest restorable
    /// checkpoint whose files are intact (every file is read and its checksum verified; a
    /// damaged one falls back to the one before). Storage I/O: run it off the async runtime.
    pub fn load(&self) -> sluice_engine::Result<Option<CheckpointId>> {
        self.storage.discard_incomplete();
        let restored = match self.newest {
            None => self.storage.load_latest()?,
            Some(None) => None,
            Some(Some(newest)) => self.storage.load_latest_up_to(newest)?,
        };
        Ok(restored.map(|c| c.checkpoint_id()))
    }
}

impl JobCheckpoints {
    /// Checkpoints of job `id` with `tasks`, into `<config.dir>/<id>/` on the store of
    /// `stores` that holds it (an error when that store cannot be opened).
    pub fn new(
        id: &JobId,
        config: CheckpointConfig,
        tasks: Vec<TaskKey>,
        stores: &StateStores,
    ) -> sluice_engine::Result<Self> {
        let storage = CheckpointStorage::open(stores, &config.dir, id, config.num_retained)?
            .with_incremental(config.incremental);
        let task_count = tasks.len();
        Ok(JobCheckpoints {
            coordinator: CheckpointCoordinator::new(id.0.clone(), &config, tasks, None),
            config,
            storage,
            epoch: Instant::now(),
            task_count,
            pending: None,
            pending_alignment: Duration::ZERO,
            completed: 0,
            failed: 0,
            latest_completed: None,
            latest_savepoint: None,
            latest_failed: None,
            history: VecDeque::new(),
            waiting: VecDeque::new(),
            savepoint: None,
            savepoints: BTreeMap::new(),
            last_triggered: None,
            fenced: false,
            committed: None,
            persisting: None,
            lane: Arc::new(tokio::sync::Mutex::new(())),
        })
    }

    /// Under high availability: completions wait for the pointer in etcd (the shell moves it
    /// before it reports [`JobCheckpoints::persisted`]), and restarts resume only from a
    /// committed checkpoint.
    pub fn with_fencing(mut self, fenced: bool) -> Self {
        self.fenced = fenced;
        self
    }

    /// A job taken over from a previous leader: `committed` is the checkpoint etcd's pointer
    /// names, and checkpoint ids continue after `newest_written` (the newest directory any
    /// leader wrote), so none is reused.
    pub fn taken_over(
        &mut self,
        committed: Option<CheckpointId>,
        newest_written: Option<CheckpointId>,
    ) {
        self.committed = committed;
        self.last_triggered = self.last_triggered.max(newest_written).max(committed);
    }

    /// What a restart may resume from.
    pub fn restorable(&self) -> Restorable {
        Restorable {
            storage: self.storage.clone(),
            newest: self.fenced.then_some(self.committed),
        }
    }

    /// Held while one of this job's storage operations runs (see the module docs).
    pub fn storage_lane(&self) -> Arc<tokio::sync::Mutex<()>> {
        self.lane.clone()
    }

    pub fn task_count(&self) -> usize {
        self.task_count
    }

    /// The checkpoint in flight and its acknowledgements so far.
    pub fn in_progress(&self) -> Option<(CheckpointId, usize)> {
        self.pending.map(|(id, _, acked)| (id, acked))
    }

    fn now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Time passed: maybe trigger a checkpoint (or a waiting savepoint), or time one out.
    /// Nothing happens while a completed checkpoint is being persisted.
    pub fn tick(&mut self) -> Vec<CheckpointWork> {
        if self.persisting.is_some() {
            return Vec::new();
        }
        if self.savepoint.is_none()
            && let Some(request) = self.waiting.pop_front()
        {
            self.savepoint = Some(request);
            let event = CoordinatorEvent::TriggerSavepoint {
                now_ms: self.now(),
                wall_ms: now_ms() as i64,
            };
            let actions = self.coordinator.handle(event);
            return self.perform(actions);
        }
        let event = CoordinatorEvent::Tick {
            now_ms: self.now(),
            wall_ms: now_ms() as i64,
        };
        let actions = self.coordinator.handle(event);
        self.perform(actions)
    }

    /// A task reports how long its barrier alignment for `checkpoint` took.
    pub fn record_alignment(&mut self, checkpoint: CheckpointId, alignment: Duration) {
        if self.pending.is_some_and(|(id, _, _)| id == checkpoint) {
            self.pending_alignment = self.pending_alignment.max(alignment);
        }
    }

    /// A task acknowledged `checkpoint` with the metadata entries of its state files.
    pub fn acknowledge(
        &mut self,
        checkpoint: CheckpointId,
        task: TaskKey,
        states: Vec<OperatorState>,
    ) -> Vec<CheckpointWork> {
        if let Some((id, _, acked)) = &mut self.pending
            && *id == checkpoint
        {
            *acked += 1;
        }
        let actions = self.coordinator.handle(CoordinatorEvent::Ack {
            checkpoint,
            task,
            states,
        });
        self.perform(actions)
    }

    /// A task declined `checkpoint`.
    pub fn decline(
        &mut self,
        checkpoint: CheckpointId,
        task: TaskKey,
        reason: String,
    ) -> Vec<CheckpointWork> {
        let actions = self.coordinator.handle(CoordinatorEvent::Decline {
            checkpoint,
            task,
            reason,
        });
        self.perform(actions)
    }

    /// A task finished: no further checkpoints (the pending one is aborted).
    pub fn task_finished(&mut self, task: TaskKey) -> Vec<CheckpointWork> {
        let actions = self
            .coordinator
            .handle(CoordinatorEvent::TaskFinished { task });
        self.perform(actions)
    }

    /// Asks for a savepoint into `root`; returns its trigger id.
    pub fn request_savepoint(&mut self, root: StatePath, cancel_job: bool) -> String {
        let trigger = JobId::generate().0;
        self.savepoints
            .insert(trigger.clone(), SavepointStatus::InProgress);
        self.waiting.push_back(SavepointRequest {
            trigger: trigger.clone(),
            root,
            cancel_job,
            checkpoint: None,
        });
        trigger
    }

    /// The status of the savepoint request `trigger`.
    pub fn savepoint_status(&self, trigger: &str) -> Option<&SavepointStatus> {
        self.savepoints.get(trigger)
    }

    /// The job ended: nothing pending will complete. Fails open savepoint requests; the work
    /// returned removes unfinished checkpoint directories.
    pub fn job_ended(&mut self) -> Vec<CheckpointWork> {
        self.abandon("the job ended before the savepoint completed");
        vec![CheckpointWork::DiscardIncomplete]
    }

    /// The job's checkpoint storage (cloned to read checkpoints outside the cluster lock).
    pub fn storage(&self) -> &CheckpointStorage {
        &self.storage
    }

    /// The job restarts after a failure, its tasks all stopped: the pending checkpoint is
    /// abandoned, open savepoint requests fail, and a new coordinator continues after every id
    /// handed out so far. `latest` is the newest completed checkpoint whose files are intact
    /// (the caller removed incomplete checkpoints and verified it with
    /// [`CheckpointStorage::load_latest`], as local mode does, in the storage lane), which the
    /// new attempt resumes from; returned with its directory. `None`: no checkpoint completed
    /// yet and the job starts over from the beginning.
    pub fn restart(
        &mut self,
        job_id: &JobId,
        tasks: Vec<TaskKey>,
        latest: Option<CheckpointId>,
    ) -> Option<(CheckpointId, StatePath)> {
        self.abandon("the job failed before the savepoint completed");
        let resume_after = self.last_triggered.max(latest);
        self.coordinator =
            CheckpointCoordinator::new(job_id.0.clone(), &self.config, tasks, resume_after);
        latest.map(|id| (id, self.storage.checkpoint_dir(id)))
    }

    fn abandon(&mut self, why: &str) {
        self.pending = None;
        // A result the shell reports for it later is stale and ignored.
        self.persisting = None;
        let open: Vec<SavepointRequest> = self
            .savepoint
            .take()
            .into_iter()
            .chain(self.waiting.drain(..))
            .collect();
        for request in open {
            self.savepoints
                .insert(request.trigger, SavepointStatus::Failed(why.into()));
        }
    }

    fn record(&mut self, record: CheckpointRecord) {
        match record.status {
            "COMPLETED" if record.savepoint => self.latest_savepoint = Some(record.clone()),
            "COMPLETED" => self.latest_completed = Some(record.clone()),
            _ => self.latest_failed = Some(record.clone()),
        }
        self.history.push_front(record);
        self.history.truncate(HISTORY);
    }

    fn finish_savepoint(&mut self, status: SavepointStatus) -> Option<SavepointRequest> {
        let request = self.savepoint.take()?;
        self.savepoints.insert(request.trigger.clone(), status);
        Some(request)
    }

    fn perform(&mut self, actions: Vec<CoordinatorAction>) -> Vec<CheckpointWork> {
        let mut work = Vec::new();
        for action in actions {
            match action {
                CoordinatorAction::InjectBarrier {
                    checkpoint,
                    timestamp_ms,
                } => {
                    self.pending = Some((checkpoint, Instant::now(), 0));
                    self.pending_alignment = Duration::ZERO;
                    self.last_triggered = Some(checkpoint);
                    work.push(CheckpointWork::Trigger {
                        checkpoint,
                        timestamp_ms,
                        savepoint: false,
                    });
                }
                CoordinatorAction::InjectSavepointBarrier {
                    checkpoint,
                    timestamp_ms,
                } => {
                    if let Some(request) = &mut self.savepoint {
                        request.checkpoint = Some(checkpoint);
                    }
                    self.pending = Some((checkpoint, Instant::now(), 0));
                    self.pending_alignment = Duration::ZERO;
                    self.last_triggered = Some(checkpoint);
                    work.push(CheckpointWork::Trigger {
                        checkpoint,
                        timestamp_ms,
                        savepoint: true,
                    });
                }
                CoordinatorAction::Complete { mut metadata } => {
                    metadata.completed_timestamp_ms = now_ms() as i64;
                    self.persisting = Some(metadata.checkpoint_id);
                    work.push(CheckpointWork::Persist {
                        metadata: Box::new(metadata),
                    });
                }
                CoordinatorAction::CompleteSavepoint { mut metadata } => {
                    metadata.completed_timestamp_ms = now_ms() as i64;
                    let id = metadata.checkpoint_id;
                    match self.savepoint.as_ref().map(|r| r.root.clone()) {
                        Some(root) => {
                            self.persisting = Some(id);
                            work.push(CheckpointWork::WriteSavepoint {
                                metadata: Box::new(metadata),
                                root,
                            });
                        }
                        None => {
                            work.push(CheckpointWork::Discard { checkpoint: id });
                            self.pending = None;
                            self.coordinator.ended_at(self.now());
                        }
                    }
                }
                CoordinatorAction::DeclineSavepoint { reason } => {
                    self.finish_savepoint(SavepointStatus::Failed(reason));
                }
                CoordinatorAction::Abort { checkpoint, reason } => {
                    warn!(job_id = %self.storage.job_id(), checkpoint_id = checkpoint.0, %reason, "checkpoint aborted");
                    let savepoint = self
                        .savepoint
                        .as_ref()
                        .is_some_and(|r| r.checkpoint == Some(checkpoint));
                    if savepoint {
                        self.finish_savepoint(SavepointStatus::Failed(format!(
                            "savepoint {} aborted: {reason}",
                            checkpoint.0
                        )));
                    }
                    self.fail_record(checkpoint, savepoint, reason);
                    work.push(CheckpointWork::Discard { checkpoint });
                    self.pending = None;
                    self.coordinator.ended_at(self.now());
                }
                CoordinatorAction::FailJob { reason } => {
                    warn!(job_id = %self.storage.job_id(), %reason, "too many failed checkpoints; failing the job");
                    work.push(CheckpointWork::FailJob { reason });
                }
            }
        }
        work
    }

    /// The shell persisted checkpoint `metadata` (its `_metadata` is published) or failed to.
    /// A result for a checkpoint no longer pending (the job restarted or ended meanwhile)
    /// changes nothing.
    pub fn persisted(
        &mut self,
        metadata: &CheckpointMetadata,
        result: sluice_engine::Result<()>,
    ) -> Vec<CheckpointWork> {
        let id = metadata.checkpoint_id;
        if self.persisting != Some(id) {
            return Vec::new();
        }
        self.persisting = None;
        let mut work = Vec::new();
        match result {
            Ok(()) => {
                if self.fenced {
                    self.committed = self.committed.max(Some(id));
                }
                let record = self.completed_record(metadata, false, None);
                info!(job_id = %self.storage.job_id(), checkpoint_id = id.0, duration_ms = record.duration_ms, state_bytes = record.state_size, "checkpoint completed");
                self.completed += 1;
                self.record(record);
                work.push(CheckpointWork::NotifyComplete { checkpoint: id });
            }
            Err(error) => {
                warn!(job_id = %self.storage.job_id(), checkpoint_id = id.0, %error, "checkpoint metadata could not be written");
                work.push(CheckpointWork::Discard { checkpoint: id });
                self.fail_record(id, false, error.to_string());
                let actions = self.coordinator.record_failure(&error.to_string());
                work.extend(self.perform(actions));
            }
        }
        self.pending = None;
        self.coordinator.ended_at(self.now());
        work
    }

    /// The shell wrote the savepoint `metadata` into its directory, or failed to. Stale
    /// results change nothing (see [`JobCheckpoints::persisted`]).
    pub fn savepoint_written(
        &mut self,
        metadata: &CheckpointMetadata,
        result: sluice_engine::Result<StatePath>,
    ) -> Vec<CheckpointWork> {
        let id = metadata.checkpoint_id;
        if self.persisting != Some(id) {
            return Vec::new();
        }
        self.persisting = None;
        let mut work = Vec::new();
        match result {
            Ok(path) => {
                info!(job_id = %self.storage.job_id(), checkpoint_id = id.0, path = %path, "savepoint completed");
                let record = self.completed_record(metadata, true, Some(path.clone()));
                self.completed += 1;
                self.record(record);
                let request = self.finish_savepoint(SavepointStatus::Completed(path));
                if request.is_some_and(|r| r.cancel_job) {
                    // Sinks commit up to the savepoint before the job stops.
                    work.push(CheckpointWork::NotifyComplete { checkpoint: id });
                    work.push(CheckpointWork::CancelJob);
                }
            }
            Err(error) => {
                warn!(job_id = %self.storage.job_id(), checkpoint_id = id.0, %error, "savepoint could not be written");
                self.fail_record(id, true, error.to_string());
                self.finish_savepoint(SavepointStatus::Failed(error.to_string()));
            }
        }
        self.pending = None;
        self.coordinator.ended_at(self.now());
        work
    }

    fn completed_record(
        &self,
        metadata: &CheckpointMetadata,
        savepoint: bool,
        path: Option<StatePath>,
    ) -> CheckpointRecord {
        let duration_ms = self
            .pending
            .map_or(0, |(_, started, _)| started.elapsed().as_millis() as u64);
        CheckpointRecord {
            id: metadata.checkpoint_id,
            savepoint,
            status: "COMPLETED",
            trigger_timestamp_ms: metadata.trigger_timestamp_ms,
            latest_ack_timestamp_ms: metadata.completed_timestamp_ms,
            duration_ms,
            state_size: metadata.state_bytes(),
            alignment_ms: self.pending_alignment.as_millis() as u64,
            acknowledged: self.task_count,
            external_path: Some(
                path.unwrap_or_else(|| self.storage.checkpoint_dir(metadata.checkpoint_id)),
            ),
            failure: None,
        }
    }

    fn fail_record(&mut self, id: CheckpointId, savepoint: bool, reason: String) {
        self.failed += 1;
        let (started, acknowledged) = self
            .pending
            .map_or((None, 0), |(_, started, acked)| (Some(started), acked));
        let record = CheckpointRecord {
            id,
            savepoint,
            status: "FAILED",
            trigger_timestamp_ms: 0,
            latest_ack_timestamp_ms: now_ms() as i64,
            duration_ms: started.map_or(0, |s| s.elapsed().as_millis() as u64),
            state_size: 0,
            alignment_ms: self.pending_alignment.as_millis() as u64,
            acknowledged,
            external_path: None,
            failure: Some(reason),
        };
        self.record(record);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn tasks() -> Vec<TaskKey> {
        (0..2)
            .map(|subtask| TaskKey { chain: 0, subtask })
            .collect()
    }

    /// Performs the storage work as the dispatcher's shell does (here synchronously) and
    /// returns the rest.
    fn perform_storage(
        checkpoints: &mut JobCheckpoints,
        work: Vec<CheckpointWork>,
    ) -> Vec<CheckpointWork> {
        let mut rest = Vec::new();
        for item in work {
            let storage = checkpoints.storage().clone();
            let more = match item {
                CheckpointWork::Persist { metadata } => {
                    let result = storage.complete(&metadata);
                    checkpoints.persisted(&metadata, result)
                }
                CheckpointWork::WriteSavepoint { metadata, root } => {
                    let result = storage.write_savepoint(&metadata, &root);
                    checkpoints.savepoint_written(&metadata, result)
                }
                CheckpointWork::Discard { checkpoint } => {
                    storage.discard(checkpoint);
                    Vec::new()
                }
                CheckpointWork::DiscardIncomplete => {
                    storage.discard_incomplete();
                    Vec::new()
                }
                other => vec![other],
            };
            rest.extend(more);
        }
        rest
    }

    fn checkpoints(id: &JobId, config: CheckpointConfig) -> JobCheckpoints {
        JobCheckpoints::new(id, config, tasks(), &StateStores::default()).unwrap()
    }

    fn ack_all(checkpoints: &mut JobCheckpoints, id: CheckpointId) -> Vec<CheckpointWork> {
        let mut work = Vec::new();
        for task in tasks() {
            let states = vec![OperatorState {
                vertex: "src".into(),
                subtask: task.subtask,
                key_groups: None,
                source_position: Some(json!({ "offset": 7 })),
                sink_pre_commit: None,
                files: Vec::new(),
            }];
            let acked = checkpoints.acknowledge(id, task, states);
            work.extend(perform_storage(checkpoints, acked));
        }
        work
    }

    #[test]
    fn checkpoints_complete_when_every_task_acknowledged_and_savepoints_report_their_location() {
        let dir = tempfile::tempdir().unwrap();
        let id = JobId("job".into());
        let config = CheckpointConfig::new(Duration::from_millis(1), dir.path());
        let mut checkpoints = checkpoints(&id, config);

        let work = checkpoints.tick();
        let [
            CheckpointWork::Trigger {
                checkpoint,
                savepoint: false,
                ..
            },
        ] = work.as_slice()
        else {
            panic!("a checkpoint is triggered: {work:?}");
        };
        let first = *checkpoint;
        assert_eq!(checkpoints.in_progress(), Some((first, 0)));
        assert!(checkpoints.tick().is_empty(), "one checkpoint at a time");
        let work = ack_all(&mut checkpoints, first);
        assert_eq!(
            work,
            vec![CheckpointWork::NotifyComplete { checkpoint: first }]
        );
        assert!(dir.path().join("job/chk-1/_metadata").is_file());
        assert_eq!(checkpoints.completed, 1);
        assert_eq!(checkpoints.latest_completed.as_ref().unwrap().id, first);

        let root = dir.path().join("savepoints");
        let trigger = checkpoints.request_savepoint(StatePath::from(root.as_path()), false);
        assert_eq!(
            checkpoints.savepoint_status(&trigger),
            Some(&SavepointStatus::InProgress)
        );
        std::thread::sleep(Duration::from_millis(2));
        let work = checkpoints.tick();
        let [
            CheckpointWork::Trigger {
                checkpoint,
                savepoint: true,
                ..
            },
        ] = work.as_slice()
        else {
            panic!("the savepoint is triggered: {work:?}");
        };
        let work = ack_all(&mut checkpoints, *checkpoint);
        assert!(work.is_empty(), "a savepoint commits nothing: {work:?}");
        let Some(SavepointStatus::Completed(path)) = checkpoints.savepoint_status(&trigger) else {
            panic!("the savepoint completed");
        };
        let path = path.as_local().unwrap();
        assert!(path.starts_with(&root) && path.join("_metadata").is_file());

        // A request still waiting when the job ends fails.
        let waiting = checkpoints.request_savepoint(StatePath::from(root.as_path()), true);
        assert_eq!(
            checkpoints.job_ended(),
            vec![CheckpointWork::DiscardIncomplete]
        );
        assert!(matches!(
            checkpoints.savepoint_status(&waiting),
            Some(SavepointStatus::Failed(_))
        ));
    }

    #[test]
    fn a_decline_aborts_the_checkpoint_and_counts_as_failed() {
        let dir = tempfile::tempdir().unwrap();
        let config = CheckpointConfig::new(Duration::from_millis(1), dir.path());
        let mut checkpoints = checkpoints(&JobId("job".into()), config);
        let work = checkpoints.tick();
        let [CheckpointWork::Trigger { checkpoint, .. }] = work.as_slice() else {
            panic!("{work:?}");
        };
        let checkpoint = *checkpoint;
        let work = checkpoints.decline(checkpoint, tasks()[1], "disk full".into());
        assert_eq!(work, vec![CheckpointWork::Discard { checkpoint }]);
        assert_eq!(checkpoints.failed, 1);
        assert_eq!(checkpoints.in_progress(), None);
        let failed = checkpoints.latest_failed.as_ref().unwrap();
        assert!(failed.failure.as_deref().unwrap().contains("disk full"));
    }

    #[test]
    fn failures_beyond_the_tolerated_number_fail_the_job() {
        let dir = tempfile::tempdir().unwrap();
        let config = CheckpointConfig::new(Duration::from_millis(1), dir.path())
            .with_tolerable_failures(Some(0));
        let mut checkpoints = checkpoints(&JobId("job".into()), config);
        let work = checkpoints.tick();
        let [CheckpointWork::Trigger { checkpoint, .. }] = work.as_slice() else {
            panic!("{work:?}");
        };
        let work = checkpoints.decline(*checkpoint, tasks()[0], "disk full".into());
        assert!(
            work.iter().any(
                |w| matches!(w, CheckpointWork::FailJob { reason } if reason.contains("disk full"))
            ),
            "{work:?}"
        );
    }

    #[test]
    fn nothing_is_triggered_while_a_checkpoint_is_persisted_and_stale_results_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let config = CheckpointConfig::new(Duration::from_millis(1), dir.path());
        let id = JobId("job".into());
        let mut checkpoints = checkpoints(&id, config);
        let complete = |checkpoints: &mut JobCheckpoints| {
            let work = checkpoints.tick();
            let [CheckpointWork::Trigger { checkpoint, .. }] = work.as_slice() else {
                panic!("{work:?}");
            };
            let checkpoint = *checkpoint;
            let mut work = Vec::new();
            for task in tasks() {
                work.extend(checkpoints.acknowledge(checkpoint, task, Vec::new()));
            }
            let [CheckpointWork::Persist { metadata }] = work.as_slice() else {
                panic!("the metadata is the shell's to write: {work:?}");
            };
            metadata.clone()
        };
        let first = complete(&mut checkpoints);
        std::thread::sleep(Duration::from_millis(2));
        assert!(checkpoints.tick().is_empty(), "nothing while persisting");
        let work = checkpoints.persisted(&first, Ok(()));
        assert_eq!(
            work,
            vec![CheckpointWork::NotifyComplete {
                checkpoint: first.checkpoint_id
            }]
        );
        assert_eq!(checkpoints.completed, 1);
        // The job restarts while the second checkpoint's metadata is being written: its
        // result comes too late and changes nothing.
        std::thread::sleep(Duration::from_millis(2));
        let second = complete(&mut checkpoints);
        assert_eq!(
            checkpoints
                .restart(&id, tasks(), Some(first.checkpoint_id))
                .map(|(c, _)| c),
            Some(first.checkpoint_id)
        );
        assert!(checkpoints.persisted(&second, Ok(())).is_empty());
        assert_eq!(checkpoints.completed, 1);
        // A failed write counts as a failed checkpoint and deletes its files.
        std::thread::sleep(Duration::from_millis(2));
        let third = complete(&mut checkpoints);
        let failure = sluice_engine::Error::Storage {
            operation: "PUT",
            location: "s3://b/chk".into(),
            message: "connection refused".into(),
            retryable: true,
        };
        let work = checkpoints.persisted(&third, Err(failure));
        assert_eq!(
            work,
            vec![CheckpointWork::Discard {
                checkpoint: third.checkpoint_id
            }]
        );
        assert_eq!(checkpoints.failed, 1);
        std::thread::sleep(Duration::from_millis(2));
        assert!(
            !checkpoints.tick().is_empty(),
            "the next checkpoint is triggered"
        );
    }
}
