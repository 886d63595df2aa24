//! Checkpoints of a deployed slice, coordinated elsewhere (a cluster job's JobMaster).
//!
//! The slice's tasks take part in checkpoints exactly as in the local runtime: source tasks
//! inject a barrier once it is triggered, every task hands its snapshots over at the aligned
//! barrier, and operators hear about completed checkpoints (sinks commit). What differs is who
//! decides: the caller triggers through a [`SliceCheckpointHandle`] and is told of each task's
//! acknowledgement through a [`CheckpointListener`]. The slice writes its tasks' state files
//! itself (into the checkpoint directory every process sees) on a writer thread, off the slot
//! threads; the acknowledgement carries the metadata entries of the written files, which the
//! coordinator collects into `_metadata`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError};
use tracing::warn;

use super::checkpointing::{CheckpointMessage, CheckpointSignals};
use super::slot::JobControl;
use crate::checkpoint::{CheckpointStorage, OperatorState, TaskKey};
use crate::element::{CheckpointBarrier, SnapshotKind};
use crate::ids::CheckpointId;
use crate::{Error, Result};

/// Snapshots waiting to be written, at most (then tasks wait: backpressure from storage).
const WRITE_QUEUE: usize = 64;

/// How often the writer looks whether the slice has ended.
const POLL: Duration = Duration::from_millis(20);

/// What a task of the slice did with a checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub enum CheckpointEvent {
    /// The task snapshotted `checkpoint` and its state files are written.
    Acknowledged {
        checkpoint: CheckpointId,
        task: TaskKey,
        states: Vec<OperatorState>,
        /// How long the task's barrier alignment took.
        alignment: std::time::Duration,
    },
    /// The task's state files for `checkpoint` could not be written.
    Declined {
        checkpoint: CheckpointId,
        task: TaskKey,
        reason: String,
    },
}

/// Receives the checkpoint acknowledgements of a deployed slice's tasks.
///
/// Called on the slice's writer thread; it may block briefly (on a bounded queue), which
/// delays only the slice's next snapshots.
pub trait CheckpointListener: Send + Sync {
    fn on_checkpoint_event(&self, event: CheckpointEvent);
}

/// How a deployed slice takes part in checkpoints.
#[derive(Clone)]
pub struct SliceCheckpointing {
    /// Where the tasks' state files go: the job's checkpoint directory, shared by every
    /// process of the job.
    pub storage: CheckpointStorage,
    pub listener: Arc<dyn CheckpointListener>,
    /// The latest checkpoint completed before this deployment (ids continue after it).
    pub last_completed: Option<CheckpointId>,
}

/// Triggers checkpoints at the slice's sources and reports completions to its tasks; cheap to
/// clone.
#[derive(Clone)]
pub struct SliceCheckpointHandle {
    signals: Arc<CheckpointSignals>,
    control: Arc<JobControl>,
}

impl std::fmt::Debug for SliceCheckpointHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SliceCheckpointHandle")
            .field("completed", &self.signals.completed())
            .finish()
    }
}

impl SliceCheckpointHandle {
    /// The slice's source tasks inject a barrier of `checkpoint` (a savepoint's when
    /// `savepoint`) before their next batch. An id not above the latest triggered one is
    /// ignored.
    pub fn trigger(&self, checkpoint: CheckpointId, timestamp_ms: i64, savepoint: bool) {
        self.signals.trigger(CheckpointBarrier {
            id: checkpoint,
            timestamp_ms,
            kind: if savepoint {
                SnapshotKind::Savepoint
            } else {
                SnapshotKind::Checkpoint
            },
        });
        self.control.wake_all();
    }

    /// Checkpoint `checkpoint` completed: every task tells its operators (sinks commit).
    pub fn notify_complete(&self, checkpoint: CheckpointId) {
        self.signals.complete(checkpoint);
        self.control.wake_all();
    }
}

/// The writer thread of a slice: writes handed-over snapshots and reports them.
pub(crate) struct SliceWriter {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl SliceWriter {
    /// Starts the writer; returns it, the signals to give every task, and the handle.
    pub fn start(
        checkpointing: SliceCheckpointing,
        control: Arc<JobControl>,
    ) -> Result<(SliceWriter, Arc<CheckpointSignals>, SliceCheckpointHandle)> {
        let (sender, receiver) = crossbeam_channel::bounded(WRITE_QUEUE);
        let last = checkpointing.last_completed.map_or(0, |id| id.0);
        let signals = Arc::new(CheckpointSignals::new(sender, last));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("sluice-slice-checkpoints".into())
                .spawn(move || write_snapshots(&checkpointing, &receiver, &stop))
                .map_err(|e| Error::io("start checkpoint writer", "sluice-slice-checkpoints", e))?
        };
        let handle = SliceCheckpointHandle {
            signals: signals.clone(),
            control,
        };
        Ok((SliceWriter { stop, thread }, signals, handle))
    }

    /// Writes what is still queued, then ends the thread. Call once the slot threads ended.
    pub fn stop(self) {
        self.stop.store(true, Ordering::Release);
        if self.thread.join().is_err() {
            warn!("the checkpoint writer thread panicked");
        }
    }
}

fn write_snapshots(
    checkpointing: &SliceCheckpointing,
    receiver: &Receiver<CheckpointMessage>,
    stop: &AtomicBool,
) {
    loop {
        let stopping = stop.load(Ordering::Acquire);
        match receiver.recv_timeout(POLL) {
            Ok(message) => write_one(checkpointing, message),
            Err(RecvTimeoutError::Timeout) if stopping => return,
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

fn write_one(checkpointing: &SliceCheckpointing, message: CheckpointMessage) {
    let CheckpointMessage::Snapshot {
        checkpoint,
        task,
        parts,
        alignment,
    } = message
    else {
        // The coordinator learns that a task finished from its state report.
        return;
    };
    let written: Result<Vec<OperatorState>> = parts
        .iter()
        .map(|part| checkpointing.storage.write_subtask(checkpoint, part))
        .collect();
    let event = match written {
        Ok(states) => CheckpointEvent::Acknowledged {
            checkpoint,
            task,
            states,
            alignment,
        },
        Err(error) => {
            warn!(job_id = %checkpointing.storage.job_id(), checkpoint_id = checkpoint.0, chain = task.chain, subtask = task.subtask, %error, "state files could not be written");
            CheckpointEvent::Declined {
                checkpoint,
                task,
                reason: error.to_string(),
            }
        }
    };
    checkpointing.listener.on_checkpoint_event(event);
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Instant;

    use super::*;
    use crate::api::StreamEnvironment;
    use crate::ids::JobId;
    use crate::runtime::exchange::LocalExchange;
    use crate::runtime::{
        ExecutionGraph, JobEnvironment, JobSlice, LocalRuntime, RuntimeConfig, TaskEvent,
        TaskListener,
    };

    #[derive(Default)]
    struct Recorder(Mutex<Vec<CheckpointEvent>>);

    impl CheckpointListener for Recorder {
        fn on_checkpoint_event(&self, event: CheckpointEvent) {
            self.0.lock().unwrap().push(event);
        }
    }

    struct Ignore;

    impl TaskListener for Ignore {
        fn on_task_event(&self, _: TaskEvent) {}
    }

    fn acks(recorder: &Recorder, checkpoint: u64) -> Vec<CheckpointEvent> {
        recorder
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|e| match e {
                CheckpointEvent::Acknowledged { checkpoint: c, .. }
                | CheckpointEvent::Declined { checkpoint: c, .. } => c.0 == checkpoint,
            })
            .cloned()
            .collect()
    }

    fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn a_triggered_checkpoint_is_acknowledged_by_every_task_of_the_slice() {
        let env = StreamEnvironment::new("endless").with_parallelism(2);
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
        let execution = ExecutionGraph::new(&graph, 2);
        let dir = tempfile::tempdir().unwrap();
        let job_id = JobId("sliced".into());
        let recorder = Arc::new(Recorder::default());
        let deployed = LocalRuntime::new(RuntimeConfig::default().with_pinning(false))
            .deploy_checkpointed(
                JobSlice {
                    job_id: &job_id,
                    graph: &graph,
                    env: &job_env,
                    execution: &execution,
                    hosted: &execution.tasks,
                    restore: None,
                },
                Arc::new(LocalExchange::new(4)),
                Arc::new(Ignore),
                Some(SliceCheckpointing {
                    storage: CheckpointStorage::new(dir.path(), &job_id, 1),
                    listener: recorder.clone(),
                    last_completed: None,
                }),
            )
            .unwrap();
        let handle = deployed
            .checkpoint_handle()
            .expect("deployed with checkpoints");
        let tasks = execution.tasks.len();

        handle.trigger(CheckpointId(1), 1_000, false);
        wait_for("acknowledgements of checkpoint 1", || {
            acks(&recorder, 1).len() == tasks
        });
        let mut positions = 0;
        let mut acked: Vec<TaskKey> = acks(&recorder, 1)
            .into_iter()
            .map(|e| match e {
                CheckpointEvent::Acknowledged { task, states, .. } => {
                    positions += states
                        .iter()
                        .filter(|s| s.source_position.is_some())
                        .count();
                    task
                }
                CheckpointEvent::Declined { reason, .. } => panic!("declined: {reason}"),
            })
            .collect();
        assert_eq!(positions, 2, "each source subtask records its position");
        acked.sort();
        let mut expected: Vec<TaskKey> = execution
            .tasks
            .iter()
            .map(|p| TaskKey {
                chain: p.chain,
                subtask: p.subtask.0,
            })
            .collect();
        expected.sort();
        assert_eq!(acked, expected, "every task acknowledged once");

        // An id that is not newer is not injected again; the next one is.
        handle.notify_complete(CheckpointId(1));
        handle.trigger(CheckpointId(1), 2_000, false);
        handle.trigger(CheckpointId(2), 3_000, true);
        wait_for("acknowledgements of savepoint 2", || {
            acks(&recorder, 2).len() == tasks
        });
        assert_eq!(acks(&recorder, 1).len(), tasks);

        deployed.cancel();
        assert!(matches!(deployed.join(), Err(Error::Cancelled)));
    }
}
