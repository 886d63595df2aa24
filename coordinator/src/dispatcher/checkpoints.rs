//! The async shell around each job's checkpoints: the timer that ticks the coordinator, the
//! acknowledgements TaskManagers send, savepoint requests, and the RPCs the coordinator asks
//! for (trigger at the TaskManagers hosting sources, completion notices to every TaskManager
//! of the job) and the storage operations (writing `_metadata` and savepoints, deleting
//! aborted checkpoints). Decisions are made under the cluster lock; RPCs and storage I/O run
//! after it is released, storage on blocking threads, one operation at a time per job.

use std::sync::Arc;
use std::time::Duration;

use sluice_engine::checkpoint::CheckpointStorage;
use tracing::warn;

use super::*;

/// How often a job's checkpoint coordinator looks at the clock: often enough for its
/// interval, at most every 100 ms.
pub(super) fn checkpoint_tick(interval: Duration) -> Duration {
    (interval / 4).clamp(Duration::from_millis(5), Duration::from_millis(100))
}

/// Why a savepoint request was refused.
#[derive(Debug, thiserror::Error)]
pub enum SavepointError {
    #[error("no job {0}")]
    UnknownJob(JobId),
    /// The job has ended or does not checkpoint.
    #[error("{0}")]
    Refused(String),
}

impl Cluster {
    /// Ticks the checkpoint coordinator of job `id` until the job ends. Checkpoints start
    /// once every task is RUNNING.
    pub(super) async fn run_checkpoint_timer(self: Arc<Self>, id: JobId, tick: Duration) {
        let mut ticks = tokio::time::interval(tick);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            if self.is_deposed() {
                return;
            }
            let (work, ended) = {
                let mut state = self.lock();
                let Some(job) = state.jobs.get_mut(&id) else {
                    return;
                };
                if job.state.is_terminal() {
                    match &mut job.checkpoints {
                        Some(checkpoints) => (checkpoints.job_ended(), true),
                        None => return,
                    }
                } else if job.state == JobState::Cancelling {
                    continue;
                } else {
                    // Not while the job restarts: the new attempt's tasks must all run first.
                    let running = job.state == JobState::Running
                        && job.tasks.iter().all(|t| t.state == ExecutionState::Running);
                    match &mut job.checkpoints {
                        Some(checkpoints) if running => (checkpoints.tick(), false),
                        Some(_) => (Vec::new(), false),
                        None => return,
                    }
                }
            };
            self.perform_checkpoint_work(&id, work).await;
            if ended {
                return;
            }
        }
    }

    /// A task's acknowledgement (or decline) of a checkpoint.
    pub async fn acknowledge_checkpoint(
        self: &Arc<Self>,
        ack: proto::AcknowledgeCheckpointRequest,
    ) -> Result<(), tonic::Status> {
        let id = JobId(ack.job_id.clone());
        let task = TaskKey {
            chain: ack.chain as usize,
            subtask: ack.subtask,
        };
        let checkpoint = CheckpointId(ack.checkpoint_id);
        let states = if ack.decline_reason.is_empty() {
            Some(serde_json::from_str(&ack.snapshot_json).map_err(|e| {
                tonic::Status::invalid_argument(format!(
                    "acknowledgement of checkpoint {} by chain {} subtask {}: state list \
                         JSON: {e}",
                    checkpoint.0, task.chain, task.subtask
                ))
            })?)
        } else {
            None
        };
        let work = {
            let mut state = self.lock();
            let job = state
                .jobs
                .get_mut(&id)
                .ok_or_else(|| tonic::Status::not_found(format!("no job {id}")))?;
            if job.state.is_terminal() {
                return Ok(());
            }
            let checkpoints = job.checkpoints.as_mut().ok_or_else(|| {
                tonic::Status::failed_precondition(format!("job {id} does not checkpoint"))
            })?;
            match states {
                Some(states) => {
                    checkpoints.record_alignment(
                        checkpoint,
                        std::time::Duration::from_millis(ack.alignment_duration_ms),
                    );
                    checkpoints.acknowledge(checkpoint, task, states)
                }
                None => checkpoints.decline(checkpoint, task, ack.decline_reason),
            }
        };
        self.perform_checkpoint_work(&id, work).await;
        Ok(())
    }

    /// Asks for a savepoint of job `id` into `target` (default: the job's checkpoint
    /// directory); returns the request's trigger id.
    pub fn trigger_savepoint(
        &self,
        id: &JobId,
        target: Option<StatePath>,
        cancel_job: bool,
    ) -> Result<String, SavepointError> {
        let mut state = self.lock();
        let job = state
            .jobs
            .get_mut(id)
            .ok_or_else(|| SavepointError::UnknownJob(id.clone()))?;
        if job.state.is_terminal() {
            return Err(SavepointError::Refused(format!(
                "job {id} has already ended ({})",
                job.state
            )));
        }
        let checkpoints = job.checkpoints.as_mut().ok_or_else(|| {
            SavepointError::Refused(format!(
                "job {id} runs without checkpointing: set execution.checkpointing.interval and \
                 execution.checkpointing.dir to take savepoints"
            ))
        })?;
        let target = target.unwrap_or_else(|| checkpoints.config.dir.clone());
        Ok(checkpoints.request_savepoint(target, cancel_job))
    }

    /// The status of savepoint request `trigger` of job `id`.
    pub fn savepoint_status(
        &self,
        id: &JobId,
        trigger: &str,
    ) -> Result<Option<SavepointStatus>, SavepointError> {
        let state = self.lock();
        let job = state
            .jobs
            .get(id)
            .ok_or_else(|| SavepointError::UnknownJob(id.clone()))?;
        Ok(job
            .checkpoints
            .as_ref()
            .and_then(|c| c.savepoint_status(trigger).cloned()))
    }

    /// Performs what the checkpoint coordinator asked for. Boxed: a storage operation's
    /// result may ask for more work.
    pub(super) fn perform_checkpoint_work<'a>(
        self: &'a Arc<Self>,
        id: &'a JobId,
        work: Vec<CheckpointWork>,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        Box::pin(async move { self.perform_checkpoint_items(id, work).await })
    }

    /// Runs `operation` on job `id`'s checkpoint storage off the async runtime, in the job's
    /// storage lane (one operation at a time per job, in order); `None` when the job or its
    /// checkpoints are gone.
    async fn in_storage_lane<T: Send + 'static>(
        &self,
        id: &JobId,
        operation: impl FnOnce(&CheckpointStorage) -> T + Send + 'static,
    ) -> Option<T> {
        let (storage, lane) = {
            let state = self.lock();
            let checkpoints = state.jobs.get(id)?.checkpoints.as_ref()?;
            (checkpoints.storage().clone(), checkpoints.storage_lane())
        };
        let _turn = lane.lock_owned().await;
        match tokio::task::spawn_blocking(move || operation(&storage)).await {
            Ok(result) => Some(result),
            Err(error) => {
                warn!(job_id = %id, %error, "a checkpoint storage operation panicked");
                None
            }
        }
    }

    async fn perform_checkpoint_items(self: &Arc<Self>, id: &JobId, work: Vec<CheckpointWork>) {
        for item in work {
            match item {
                CheckpointWork::Persist { metadata } => {
                    let Some(result) = self.persist(id, &metadata).await else {
                        continue;
                    };
                    let more = {
                        let mut state = self.lock();
                        match state.jobs.get_mut(id).and_then(|j| j.checkpoints.as_mut()) {
                            Some(checkpoints) => checkpoints.persisted(&metadata, result),
                            None => Vec::new(),
                        }
                    };
                    self.perform_checkpoint_work(id, more).await;
                }
                CheckpointWork::WriteSavepoint { metadata, root } => {
                    let written = metadata.clone();
                    let Some(result) = self
                        .in_storage_lane(id, move |storage| {
                            storage.write_savepoint(&written, &root)
                        })
                        .await
                    else {
                        continue;
                    };
                    let more = {
                        let mut state = self.lock();
                        match state.jobs.get_mut(id).and_then(|j| j.checkpoints.as_mut()) {
                            Some(checkpoints) => checkpoints.savepoint_written(&metadata, result),
                            None => Vec::new(),
                        }
                    };
                    self.perform_checkpoint_work(id, more).await;
                }
                CheckpointWork::Discard { checkpoint } => {
                    self.in_storage_lane(id, move |storage| storage.discard(checkpoint))
                        .await;
                }
                CheckpointWork::DiscardIncomplete => {
                    self.in_storage_lane(id, CheckpointStorage::discard_incomplete)
                        .await;
                }
                CheckpointWork::Trigger {
                    checkpoint,
                    timestamp_ms,
                    savepoint,
                } => {
                    let request = proto::TriggerCheckpointRequest {
                        job_id: id.0.clone(),
                        checkpoint_id: checkpoint.0,
                        timestamp_ms: timestamp_ms.max(0) as u64,
                        savepoint,
                    };
                    for (tm, address) in self.addresses(id, true) {
                        let request = request.clone();
                        let result = call_task_executor(&address, self.epoch, |mut c| async move {
                            c.trigger_checkpoint(request).await
                        })
                        .await;
                        if let Err(error) = result {
                            // The checkpoint times out; a lost TaskManager fails the job.
                            warn!(job_id = %id, task_manager = %tm, checkpoint_id = checkpoint.0, %error, "triggering a checkpoint failed");
                        }
                    }
                }
                CheckpointWork::NotifyComplete { checkpoint } => {
                    let request = proto::NotifyCheckpointCompleteRequest {
                        job_id: id.0.clone(),
                        checkpoint_id: checkpoint.0,
                    };
                    for (tm, address) in self.addresses(id, false) {
                        let request = request.clone();
                        let result = call_task_executor(&address, self.epoch, |mut c| async move {
                            c.notify_checkpoint_complete(request).await
                        })
                        .await;
                        if let Err(error) = result {
                            warn!(job_id = %id, task_manager = %tm, checkpoint_id = checkpoint.0, %error, "notifying a completed checkpoint failed");
                        }
                    }
                }
                CheckpointWork::FailJob { reason } => {
                    let actions = {
                        let mut state = self.lock();
                        let actions = match state.jobs.get_mut(id) {
                            Some(job) => job.fail(&format!("checkpointing: {reason}"), now_ms()),
                            None => Vec::new(),
                        };
                        apply_local(&mut state, id, actions)
                    };
                    self.perform(id, actions).await;
                }
                CheckpointWork::CancelJob => {
                    if let Err(error) = Box::pin(self.cancel(id)).await {
                        warn!(job_id = %id, %error, "cancelling the job after its savepoint failed");
                    }
                }
            }
        }
    }

    /// Writes checkpoint `metadata`'s `_metadata` and applies retention; `None` when the job
    /// is gone. Under high availability the checkpoint counts only once its pointer in etcd
    /// moved, by a transaction fenced with this leader's epoch: `_metadata` is published
    /// first, the pointer moved next, and only then are older checkpoints deleted, so a
    /// deposed leader neither commits a checkpoint nor deletes the one its successor resumes
    /// from.
    async fn persist(
        &self,
        id: &JobId,
        metadata: &sluice_engine::checkpoint::CheckpointMetadata,
    ) -> Option<sluice_engine::Result<()>> {
        let written = metadata.clone();
        let Some(store) = &self.ha else {
            return self
                .in_storage_lane(id, move |storage| storage.complete(&written))
                .await;
        };
        if let Err(error) = self
            .in_storage_lane(id, move |storage| storage.publish(&written))
            .await?
        {
            return Some(Err(error));
        }
        let checkpoint = metadata.checkpoint_id;
        if let Err(error) = store.commit_checkpoint(id, checkpoint).await {
            warn!(job_id = %id, checkpoint_id = checkpoint.0, %error, "checkpoint not committed: its pointer in etcd did not move, so it does not count and no sink commits it");
            return Some(Err(sluice_engine::Error::Unavailable {
                what: format!("the checkpoint pointer of job {id} in etcd"),
                message: error.to_string(),
            }));
        }
        self.in_storage_lane(id, move |storage| storage.retain())
            .await
    }

    /// RPC addresses of the TaskManagers of job `id` (only those hosting sources when
    /// `sources`).
    pub(super) fn addresses(&self, id: &JobId, sources: bool) -> Vec<(TaskManagerId, String)> {
        let state = self.lock();
        let Some(job) = state.jobs.get(id) else {
            return Vec::new();
        };
        let tms = if sources {
            job.source_task_managers()
        } else {
            job.task_managers()
        };
        tms.into_iter()
            .filter_map(|tm| {
                state
                    .resources
                    .get(&tm)
                    .map(|r| (tm.clone(), r.rpc_address.clone()))
            })
            .collect()
    }
}
