//! The async shell around each job's checkpoints: the timer that ticks the coordinator, the
//! acknowledgements TaskManagers send, savepoint requests, and the RPCs the coordinator asks
//! for (trigger at the TaskManagers hosting sources, completion notices to every TaskManager
//! of the job). Decisions are made under the cluster lock; RPCs run after it is released.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

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
            let work = {
                let mut state = self.lock();
                let Some(job) = state.jobs.get_mut(&id) else {
                    return;
                };
                if job.state.is_terminal() || job.state == JobState::Cancelling {
                    if job.state.is_terminal()
                        && let Some(checkpoints) = &mut job.checkpoints
                    {
                        checkpoints.job_ended();
                    }
                    if job.state.is_terminal() {
                        return;
                    }
                    continue;
                }
                // Not while the job restarts: the new attempt's tasks must all run first.
                let running = job.state == JobState::Running
                    && job.tasks.iter().all(|t| t.state == ExecutionState::Running);
                match &mut job.checkpoints {
                    Some(checkpoints) if running => checkpoints.tick(),
                    Some(_) => Vec::new(),
                    None => return,
                }
            };
            self.perform_checkpoint_work(&id, work).await;
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
                Some(states) => checkpoints.acknowledge(checkpoint, task, states),
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
        target: Option<PathBuf>,
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

    /// Performs what the checkpoint coordinator asked for.
    pub(super) async fn perform_checkpoint_work(
        self: &Arc<Self>,
        id: &JobId,
        work: Vec<CheckpointWork>,
    ) {
        for item in work {
            match item {
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
                CheckpointWork::Commit { checkpoint } => {
                    if let Err(error) = self.commit_checkpoint(id, checkpoint).await {
                        warn!(job_id = %id, checkpoint_id = checkpoint.0, %error, "checkpoint not committed: its pointer in etcd did not move, so it does not count and no sink commits it");
                        continue;
                    }
                    Box::pin(self.perform_checkpoint_work(
                        id,
                        vec![CheckpointWork::NotifyComplete { checkpoint }],
                    ))
                    .await;
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

    /// Moves job `id`'s checkpoint pointer in etcd to `checkpoint` (fenced by this leader's
    /// epoch), then drops the checkpoints beyond the retained number.
    async fn commit_checkpoint(
        &self,
        id: &JobId,
        checkpoint: CheckpointId,
    ) -> Result<(), crate::ha::store::FencedError> {
        let Some(store) = &self.ha else {
            return Ok(());
        };
        store.commit_checkpoint(id, checkpoint).await?;
        let storage = {
            let mut state = self.lock();
            state
                .jobs
                .get_mut(id)
                .and_then(|job| job.checkpoints.as_mut())
                .map(|c| {
                    c.committed(checkpoint);
                    c.storage().clone()
                })
        };
        if let Some(storage) = storage {
            let retained = tokio::task::spawn_blocking(move || storage.retain()).await;
            if let Ok(Err(error)) = retained {
                warn!(job_id = %id, %error, "removing checkpoints beyond the retained number failed");
            }
        }
        Ok(())
    }

    /// RPC addresses of the TaskManagers of job `id` (only those hosting sources when
    /// `sources`).
    fn addresses(&self, id: &JobId, sources: bool) -> Vec<(TaskManagerId, String)> {
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
