//! Checkpoints in the local runtime: the checkpoint thread and what tasks share with it.
//!
//! One thread per job attempt runs the [`CheckpointCoordinator`] and writes state files. Tasks
//! reach it through a bounded channel: on an aligned barrier a task hands over its operators'
//! snapshots (Arrow batches, cheap to move) and its source position; the thread writes them
//! as files (off the slot thread) and feeds the ack into the coordinator. Triggers travel the
//! other way as an atomic "latest triggered checkpoint" that source tasks look at before each
//! poll, and completions as an atomic "latest completed checkpoint" that every task looks at
//! before each step (sinks commit then).
//!
//! Savepoints ([`SavepointRequest`]) take the same path with a barrier of the savepoint kind;
//! when every task acknowledged, the thread moves the state files into a self-contained
//! savepoint directory. A savepoint commits nothing, unless the job stops with it: then the
//! tasks are told it completed (sinks commit up to it), and the job is cancelled once every
//! task has heard.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use tracing::{info, warn};

use super::slot::JobControl;
use crate::checkpoint::{
    CheckpointConfig, CheckpointCoordinator, CheckpointStorage, CoordinatorAction,
    CoordinatorEvent, StatePath, SubtaskSnapshot, TaskKey,
};
use crate::element::{CheckpointBarrier, SnapshotKind};
use crate::ids::CheckpointId;

/// Snapshots waiting to be written, at most (then tasks wait: backpressure from storage).
const WRITE_QUEUE: usize = 64;

/// How often the coordinator looks at the clock at most.
const TICK: Duration = Duration::from_millis(5);

/// What a task sends to the checkpoint thread.
#[derive(Debug)]
pub(crate) enum CheckpointMessage {
    Snapshot {
        checkpoint: CheckpointId,
        task: TaskKey,
        parts: Vec<SubtaskSnapshot>,
        /// How long the task's barrier alignment took.
        alignment: std::time::Duration,
    },
    Finished {
        task: TaskKey,
    },
}

/// A request for a savepoint of the running job.
#[derive(Debug)]
pub(crate) struct SavepointRequest {
    /// Where the savepoint directory goes.
    pub root: StatePath,
    /// Stop the job after the savepoint (Flink's stop-with-savepoint).
    pub stop: bool,
    pub reply: Sender<crate::Result<StatePath>>,
}

/// Shared between the checkpoint thread and the tasks of one attempt.
#[derive(Debug)]
pub(crate) struct CheckpointSignals {
    triggered: AtomicU64,
    triggered_at_ms: AtomicI64,
    /// Whether the latest triggered barrier is a savepoint's.
    triggered_savepoint: AtomicBool,
    completed: AtomicU64,
    /// The savepoint the job stops with (0: none), and how many tasks have been told that it
    /// completed.
    stop_savepoint: AtomicU64,
    stop_notified: AtomicUsize,
    sender: Sender<CheckpointMessage>,
}

impl CheckpointSignals {
    /// Signals for tasks whose checkpoints are coordinated elsewhere (a deployed slice of a
    /// cluster job): snapshots go to `sender`, triggers and completions arrive through
    /// [`CheckpointSignals::trigger`] and [`CheckpointSignals::complete`].
    pub(crate) fn new(sender: Sender<CheckpointMessage>, last_completed: u64) -> Self {
        CheckpointSignals {
            triggered: AtomicU64::new(last_completed),
            triggered_at_ms: AtomicI64::new(0),
            triggered_savepoint: AtomicBool::new(false),
            completed: AtomicU64::new(last_completed),
            stop_savepoint: AtomicU64::new(0),
            stop_notified: AtomicUsize::new(0),
            sender,
        }
    }

    /// Source tasks inject `barrier` before their next batch (callers wake the slots).
    pub(crate) fn trigger(&self, barrier: CheckpointBarrier) {
        self.triggered_at_ms
            .store(barrier.timestamp_ms, Ordering::Release);
        self.triggered_savepoint
            .store(barrier.kind == SnapshotKind::Savepoint, Ordering::Release);
        self.triggered.fetch_max(barrier.id.0, Ordering::AcqRel);
    }

    /// Checkpoint `id` completed: tasks tell their operators (callers wake the slots).
    pub(crate) fn complete(&self, id: CheckpointId) {
        self.completed.fetch_max(id.0, Ordering::AcqRel);
    }

    /// The barrier a source task should inject if it has not injected it yet.
    pub fn triggered(&self) -> Option<CheckpointBarrier> {
        let id = self.triggered.load(Ordering::Acquire);
        (id > 0).then(|| CheckpointBarrier {
            id: CheckpointId(id),
            timestamp_ms: self.triggered_at_ms.load(Ordering::Acquire),
            kind: if self.triggered_savepoint.load(Ordering::Acquire) {
                SnapshotKind::Savepoint
            } else {
                SnapshotKind::Checkpoint
            },
        })
    }

    /// A task has told its operators that checkpoint `completed` completed.
    pub fn notified(&self, completed: u64) {
        if completed == self.stop_savepoint.load(Ordering::Acquire) {
            self.stop_notified.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// The latest completed checkpoint (0: none yet).
    pub fn completed(&self) -> u64 {
        self.completed.load(Ordering::Acquire)
    }

    /// Hands a message to the checkpoint thread; blocks while its queue is full. A closed
    /// channel (the thread ended with the job) drops the message.
    pub fn send(&self, message: CheckpointMessage) {
        let _ = self.sender.send(message);
    }
}

/// What the checkpoint thread reports when it ends.
#[derive(Debug, Clone, Default)]
pub(crate) struct CheckpointReport {
    pub completed: u64,
    pub last: Option<super::CheckpointStats>,
    /// The savepoint the job stopped with (Flink's stop-with-savepoint), if it did.
    pub stopped_with: Option<StatePath>,
}

/// The checkpoint thread of one attempt.
pub(crate) struct CheckpointThread {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<CheckpointReport>,
}

impl CheckpointThread {
    /// Starts the thread; returns it and the signals to give every task.
    pub fn start(
        config: &CheckpointConfig,
        storage: CheckpointStorage,
        tasks: Vec<TaskKey>,
        last_completed: Option<CheckpointId>,
        control: Arc<JobControl>,
        savepoints: Receiver<SavepointRequest>,
    ) -> crate::Result<(CheckpointThread, Arc<CheckpointSignals>)> {
        let (sender, receiver) = crossbeam_channel::bounded(WRITE_QUEUE);
        let signals = Arc::new(CheckpointSignals {
            triggered: AtomicU64::new(0),
            triggered_at_ms: AtomicI64::new(0),
            triggered_savepoint: AtomicBool::new(false),
            completed: AtomicU64::new(last_completed.map_or(0, |id| id.0)),
            stop_savepoint: AtomicU64::new(0),
            stop_notified: AtomicUsize::new(0),
            sender,
        });
        let task_count = tasks.len();
        let coordinator =
            CheckpointCoordinator::new(storage.job_id().0.clone(), config, tasks, last_completed);
        let stop = Arc::new(AtomicBool::new(false));
        let worker = Worker {
            coordinator,
            storage,
            signals: signals.clone(),
            control,
            stop: stop.clone(),
            epoch: Instant::now(),
            started: None,
            report: CheckpointReport::default(),
            savepoints,
            savepoint: None,
            task_count,
        };
        let thread = std::thread::Builder::new()
            .name("sluice-checkpoints".into())
            .spawn(move || worker.run(receiver))
            .map_err(|e| crate::Error::io("start checkpoint thread", "sluice-checkpoints", e))?;
        Ok((CheckpointThread { stop, thread }, signals))
    }

    /// Stops the thread after it has handled what is queued; returns its report.
    pub fn stop(self) -> CheckpointReport {
        self.stop.store(true, Ordering::Release);
        self.thread.join().unwrap_or_default()
    }
}

struct Worker {
    coordinator: CheckpointCoordinator,
    storage: CheckpointStorage,
    signals: Arc<CheckpointSignals>,
    control: Arc<JobControl>,
    stop: Arc<AtomicBool>,
    epoch: Instant,
    /// When the checkpoint in flight was triggered.
    started: Option<Instant>,
    report: CheckpointReport,
    savepoints: Receiver<SavepointRequest>,
    /// The savepoint asked for and, once triggered, its id.
    savepoint: Option<(SavepointRequest, Option<CheckpointId>)>,
    task_count: usize,
}

fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Worker {
    fn run(mut self, receiver: Receiver<CheckpointMessage>) -> CheckpointReport {
        loop {
            let stopping = self.stop.load(Ordering::Acquire) || self.control.is_cancelled();
            match receiver.recv_timeout(TICK) {
                Ok(message) => self.on_message(message),
                Err(RecvTimeoutError::Timeout) if stopping => break,
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            if !stopping {
                self.take_savepoint_request();
                let now_ms = self.epoch.elapsed().as_millis() as u64;
                let actions = self.coordinator.handle(CoordinatorEvent::Tick {
                    now_ms,
                    wall_ms: wall_ms(),
                });
                self.perform(actions);
            }
        }
        // Every task has stopped: a checkpoint still pending will not complete.
        self.storage.discard_incomplete();
        if let Some((request, _)) = self.savepoint.take() {
            let _ = request.reply.send(Err(crate::Error::Cancelled));
        }
        while let Ok(request) = self.savepoints.try_recv() {
            let _ = request.reply.send(Err(crate::Error::Cancelled));
        }
        self.report
    }

    /// Takes a savepoint request, if one waits and none is in progress.
    fn take_savepoint_request(&mut self) {
        if self.savepoint.is_some() {
            return;
        }
        let Ok(request) = self.savepoints.try_recv() else {
            return;
        };
        self.savepoint = Some((request, None));
        let actions = self.coordinator.handle(CoordinatorEvent::TriggerSavepoint {
            now_ms: self.epoch.elapsed().as_millis() as u64,
            wall_ms: wall_ms(),
        });
        self.perform(actions);
    }

    /// Answers the savepoint request in progress.
    fn reply_savepoint(&mut self, result: crate::Result<StatePath>) {
        if let Some((request, _)) = self.savepoint.take() {
            let _ = request.reply.send(result);
        }
    }

    /// Writes a completed savepoint; with stop, commits it and stops the job.
    fn complete_savepoint(&mut self, metadata: crate::checkpoint::CheckpointMetadata) {
        let id = metadata.checkpoint_id;
        let Some((request, _)) = &self.savepoint else {
            self.storage.discard(id);
            return;
        };
        let (root, stop) = (request.root.clone(), request.stop);
        match self.storage.write_savepoint(&metadata, &root) {
            Ok(path) => {
                info!(job_id = %self.storage.job_id(), checkpoint_id = id.0, path = %path, stop, "savepoint completed");
                if stop {
                    self.stop_with(id, path.clone());
                }
                self.reply_savepoint(Ok(path));
            }
            Err(error) => {
                warn!(job_id = %self.storage.job_id(), checkpoint_id = id.0, %error, "savepoint could not be written");
                self.reply_savepoint(Err(error));
            }
        }
    }

    /// Tells every task that savepoint `id` completed (sinks commit), waits until they all
    /// have heard (at most a while), then cancels the job.
    fn stop_with(&mut self, id: CheckpointId, savepoint: StatePath) {
        self.signals.stop_savepoint.store(id.0, Ordering::Release);
        self.signals.completed.store(id.0, Ordering::Release);
        self.control.wake_all();
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.signals.stop_notified.load(Ordering::Acquire) < self.task_count
            && Instant::now() < deadline
            && !self.control.is_cancelled()
        {
            std::thread::sleep(Duration::from_millis(1));
        }
        self.report.stopped_with = Some(savepoint);
        self.control.cancel();
    }

    fn on_message(&mut self, message: CheckpointMessage) {
        let event = match message {
            CheckpointMessage::Snapshot {
                checkpoint,
                task,
                parts,
                alignment: _,
            } => {
                let written: crate::Result<Vec<_>> = parts
                    .iter()
                    .map(|part| self.storage.write_subtask(checkpoint, part))
                    .collect();
                match written {
                    Ok(states) => CoordinatorEvent::Ack {
                        checkpoint,
                        task,
                        states,
                    },
                    Err(error) => CoordinatorEvent::Decline {
                        checkpoint,
                        task,
                        reason: error.to_string(),
                    },
                }
            }
            CheckpointMessage::Finished { task } => CoordinatorEvent::TaskFinished { task },
        };
        let actions = self.coordinator.handle(event);
        self.perform(actions);
    }

    fn perform(&mut self, actions: Vec<CoordinatorAction>) {
        for action in actions {
            match action {
                CoordinatorAction::InjectBarrier {
                    checkpoint,
                    timestamp_ms,
                } => {
                    self.started = Some(Instant::now());
                    self.signals
                        .triggered_at_ms
                        .store(timestamp_ms, Ordering::Release);
                    self.signals
                        .triggered_savepoint
                        .store(false, Ordering::Release);
                    self.signals
                        .triggered
                        .store(checkpoint.0, Ordering::Release);
                    self.control.wake_all();
                }
                CoordinatorAction::Complete { mut metadata } => {
                    metadata.completed_timestamp_ms = wall_ms();
                    let id = metadata.checkpoint_id;
                    let now_ms = self.epoch.elapsed().as_millis() as u64;
                    match self.storage.complete(&metadata) {
                        Ok(()) => {
                            let duration = self.started.map(|s| s.elapsed()).unwrap_or_default();
                            let state_bytes = metadata.state_bytes();
                            info!(
                                job_id = %self.storage.job_id(),
                                checkpoint_id = id.0,
                                duration_ms = duration.as_millis() as u64,
                                state_bytes,
                                written_bytes = metadata.written_bytes(),
                                "checkpoint completed"
                            );
                            self.report.completed += 1;
                            self.report.last = Some(super::CheckpointStats {
                                id,
                                duration,
                                state_bytes,
                            });
                            self.signals.completed.store(id.0, Ordering::Release);
                            self.control.wake_all();
                        }
                        Err(error) => {
                            warn!(job_id = %self.storage.job_id(), checkpoint_id = id.0, %error, "checkpoint metadata could not be written");
                            self.storage.discard(id);
                            let actions = self.coordinator.record_failure(&error.to_string());
                            self.perform(actions);
                        }
                    }
                    self.coordinator.ended_at(now_ms);
                }
                CoordinatorAction::InjectSavepointBarrier {
                    checkpoint,
                    timestamp_ms,
                } => {
                    if let Some((_, triggered)) = &mut self.savepoint {
                        *triggered = Some(checkpoint);
                    }
                    self.started = Some(Instant::now());
                    self.signals
                        .triggered_at_ms
                        .store(timestamp_ms, Ordering::Release);
                    self.signals
                        .triggered_savepoint
                        .store(true, Ordering::Release);
                    self.signals
                        .triggered
                        .store(checkpoint.0, Ordering::Release);
                    self.control.wake_all();
                }
                CoordinatorAction::CompleteSavepoint { metadata } => {
                    self.complete_savepoint(metadata);
                    self.coordinator
                        .ended_at(self.epoch.elapsed().as_millis() as u64);
                }
                CoordinatorAction::FailJob { reason } => {
                    warn!(job_id = %self.storage.job_id(), %reason, "failing the job");
                    self.control.fail(crate::Error::Unavailable {
                        what: "checkpointing".into(),
                        message: reason,
                    });
                }
                CoordinatorAction::DeclineSavepoint { reason } => {
                    self.reply_savepoint(Err(crate::Error::Internal(format!(
                        "savepoint declined: {reason}"
                    ))));
                }
                CoordinatorAction::Abort { checkpoint, reason } => {
                    if self
                        .savepoint
                        .as_ref()
                        .is_some_and(|(_, id)| *id == Some(checkpoint))
                    {
                        self.reply_savepoint(Err(crate::Error::Internal(format!(
                            "savepoint {} aborted: {reason}",
                            checkpoint.0
                        ))));
                    }
                    warn!(job_id = %self.storage.job_id(), checkpoint_id = checkpoint.0, %reason, "checkpoint aborted");
                    self.storage.discard(checkpoint);
                    self.coordinator
                        .ended_at(self.epoch.elapsed().as_millis() as u64);
                }
            }
        }
    }
}
