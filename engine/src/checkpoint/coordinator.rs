//! The checkpoint coordinator as a pure state machine: an event in, a list of actions out.
//!
//! It lives in the engine (not in `sluice-coordinator`) because the engine's local runtime
//! drives it and dependencies point coordinator → engine only; the cluster's JobMaster will
//! wrap this same type in its async shell. The machine never touches a clock, a file or a
//! thread: times arrive in the events, and the shell performs the actions (inject barriers,
//! write `_metadata`, notify tasks, delete an aborted checkpoint's files).
//!
//! One checkpoint is in flight at a time. A checkpoint completes when every expected task has
//! acknowledged it; a decline or the timeout aborts it. Once any task has finished (bounded
//! input), no further checkpoints are triggered, as in Flink before FLIP-147: a finished task
//! can no longer take a barrier.

use std::collections::BTreeSet;
use std::time::Duration;

use super::config::CheckpointConfig;
use super::metadata::{CheckpointMetadata, METADATA_VERSION, OperatorState};
use crate::ids::CheckpointId;

/// A task of the job: the index of its chain and its subtask.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TaskKey {
    pub chain: usize,
    pub subtask: u32,
}

/// What happened.
#[derive(Debug, Clone)]
pub enum CoordinatorEvent {
    /// Time passed: `now_ms` on a monotonic clock, `wall_ms` since the epoch.
    Tick { now_ms: u64, wall_ms: i64 },
    /// A task snapshotted `checkpoint` and its state files are written.
    Ack {
        checkpoint: CheckpointId,
        task: TaskKey,
        states: Vec<OperatorState>,
    },
    /// A task could not snapshot `checkpoint` (or writing its files failed).
    Decline {
        checkpoint: CheckpointId,
        task: TaskKey,
        reason: String,
    },
    /// A task reached the end of its input.
    TaskFinished { task: TaskKey },
    /// Someone asked for a savepoint: it is triggered as soon as no checkpoint is in flight.
    TriggerSavepoint { now_ms: u64, wall_ms: i64 },
}

/// What the shell must do.
#[derive(Debug, Clone, PartialEq)]
pub enum CoordinatorAction {
    /// Inject a barrier of `checkpoint` at every source task.
    InjectBarrier {
        checkpoint: CheckpointId,
        timestamp_ms: i64,
    },
    /// Every task acknowledged: write the metadata (last), then tell the tasks.
    Complete { metadata: CheckpointMetadata },
    /// Inject a barrier of the savepoint `checkpoint` at every source task.
    InjectSavepointBarrier {
        checkpoint: CheckpointId,
        timestamp_ms: i64,
    },
    /// Every task acknowledged the savepoint: write it to its own directory. Savepoints do not
    /// commit side effects (as in Flink) and are not retained checkpoints.
    CompleteSavepoint { metadata: CheckpointMetadata },
    /// The savepoint asked for cannot be taken.
    DeclineSavepoint { reason: String },
    /// More consecutive checkpoints failed than tolerated: fail the job.
    FailJob { reason: String },
    /// Give the checkpoint up and delete what it wrote.
    Abort {
        checkpoint: CheckpointId,
        reason: String,
    },
}

#[derive(Debug)]
struct Pending {
    id: CheckpointId,
    started_ms: u64,
    timestamp_ms: i64,
    acked: BTreeSet<TaskKey>,
    states: Vec<OperatorState>,
    savepoint: bool,
}

/// Trigger, ack, complete, abort.
#[derive(Debug)]
pub struct CheckpointCoordinator {
    job_id: String,
    interval_ms: u64,
    timeout_ms: u64,
    min_pause_ms: u64,
    tasks: BTreeSet<TaskKey>,
    next_id: u64,
    pending: Option<Pending>,
    last_trigger_ms: Option<u64>,
    last_end_ms: Option<u64>,
    any_finished: bool,
    completed: u64,
    savepoint_requested: bool,
    tolerable_failures: Option<u32>,
    consecutive_failures: u32,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl CheckpointCoordinator {
    /// A coordinator for a job with `tasks`; ids continue after `last_completed` (a restored
    /// job never reuses a completed checkpoint's id).
    pub fn new(
        job_id: impl Into<String>,
        config: &CheckpointConfig,
        tasks: impl IntoIterator<Item = TaskKey>,
        last_completed: Option<CheckpointId>,
    ) -> Self {
        CheckpointCoordinator {
            job_id: job_id.into(),
            interval_ms: millis(config.interval).max(1),
            timeout_ms: millis(config.timeout),
            min_pause_ms: millis(config.min_pause),
            tasks: tasks.into_iter().collect(),
            next_id: last_completed.map_or(1, |id| id.0 + 1),
            pending: None,
            last_trigger_ms: None,
            last_end_ms: None,
            any_finished: false,
            completed: 0,
            savepoint_requested: false,
            tolerable_failures: config.tolerable_failures,
            consecutive_failures: 0,
        }
    }

    /// The checkpoint in flight, if any.
    pub fn pending(&self) -> Option<CheckpointId> {
        self.pending.as_ref().map(|p| p.id)
    }

    /// Checkpoints completed by this coordinator.
    pub fn completed_count(&self) -> u64 {
        self.completed
    }

    pub fn handle(&mut self, event: CoordinatorEvent) -> Vec<CoordinatorAction> {
        match event {
            CoordinatorEvent::Tick { now_ms, wall_ms } => self.on_tick(now_ms, wall_ms),
            CoordinatorEvent::Ack {
                checkpoint,
                task,
                states,
            } => self.on_ack(checkpoint, task, states),
            CoordinatorEvent::Decline {
                checkpoint,
                task,
                reason,
            } => match &self.pending {
                Some(p) if p.id == checkpoint => self.fail_pending(format!(
                    "declined by chain {} subtask {}: {reason}",
                    task.chain, task.subtask
                )),
                _ => Vec::new(),
            },
            CoordinatorEvent::TriggerSavepoint { now_ms, wall_ms } => {
                self.savepoint_requested = true;
                self.on_tick(now_ms, wall_ms)
            }
            CoordinatorEvent::TaskFinished { task } => {
                self.any_finished = true;
                if self.pending.is_some() {
                    self.abort(format!(
                        "chain {} subtask {} finished before acknowledging",
                        task.chain, task.subtask
                    ))
                } else {
                    Vec::new()
                }
            }
        }
    }

    fn on_tick(&mut self, now_ms: u64, wall_ms: i64) -> Vec<CoordinatorAction> {
        if let Some(pending) = &self.pending {
            if now_ms.saturating_sub(pending.started_ms) >= self.timeout_ms {
                let reason = format!("not completed within {} ms", self.timeout_ms);
                self.last_end_ms = Some(now_ms);
                return self.fail_pending(reason);
            }
            return Vec::new();
        }
        if self.savepoint_requested && (self.any_finished || self.tasks.is_empty()) {
            self.savepoint_requested = false;
            return vec![CoordinatorAction::DeclineSavepoint {
                reason: "tasks of the job have finished; a savepoint needs every task running"
                    .into(),
            }];
        }
        if self.any_finished || self.tasks.is_empty() {
            return Vec::new();
        }
        if self.savepoint_requested {
            self.savepoint_requested = false;
            let id = self.start_pending(now_ms, wall_ms, true);
            return vec![CoordinatorAction::InjectSavepointBarrier {
                checkpoint: id,
                timestamp_ms: wall_ms,
            }];
        }
        let interval_due = self
            .last_trigger_ms
            .is_none_or(|t| now_ms.saturating_sub(t) >= self.interval_ms);
        let pause_over = self
            .last_end_ms
            .is_none_or(|t| now_ms.saturating_sub(t) >= self.min_pause_ms);
        if !(interval_due && pause_over) {
            return Vec::new();
        }
        self.last_trigger_ms = Some(now_ms);
        let id = self.start_pending(now_ms, wall_ms, false);
        vec![CoordinatorAction::InjectBarrier {
            checkpoint: id,
            timestamp_ms: wall_ms,
        }]
    }

    fn start_pending(&mut self, now_ms: u64, wall_ms: i64, savepoint: bool) -> CheckpointId {
        let id = CheckpointId(self.next_id);
        self.next_id += 1;
        self.pending = Some(Pending {
            id,
            started_ms: now_ms,
            timestamp_ms: wall_ms,
            acked: BTreeSet::new(),
            states: Vec::new(),
            savepoint,
        });
        id
    }

    fn on_ack(
        &mut self,
        checkpoint: CheckpointId,
        task: TaskKey,
        states: Vec<OperatorState>,
    ) -> Vec<CoordinatorAction> {
        let Some(pending) = self.pending.as_mut().filter(|p| p.id == checkpoint) else {
            // A late ack of an aborted checkpoint.
            return Vec::new();
        };
        if !self.tasks.contains(&task) || !pending.acked.insert(task) {
            return Vec::new();
        }
        pending.states.extend(states);
        if pending.acked.len() < self.tasks.len() {
            return Vec::new();
        }
        let Some(done) = self.pending.take() else {
            return Vec::new();
        };
        let mut operators = done.states;
        operators.sort_by(|a, b| (&a.vertex, a.subtask).cmp(&(&b.vertex, b.subtask)));
        let metadata = CheckpointMetadata {
            version: METADATA_VERSION,
            job_id: self.job_id.clone(),
            checkpoint_id: done.id,
            trigger_timestamp_ms: done.timestamp_ms,
            completed_timestamp_ms: 0,
            operators,
        };
        if done.savepoint {
            return vec![CoordinatorAction::CompleteSavepoint { metadata }];
        }
        self.completed += 1;
        self.consecutive_failures = 0;
        vec![CoordinatorAction::Complete { metadata }]
    }

    /// Records when the shell finished a checkpoint (completion written or abort done), for
    /// `min-pause`.
    pub fn ended_at(&mut self, now_ms: u64) {
        self.last_end_ms = Some(now_ms);
    }

    /// A completed checkpoint's metadata could not be written: one more failed checkpoint.
    pub fn record_failure(&mut self, reason: &str) -> Vec<CoordinatorAction> {
        self.completed = self.completed.saturating_sub(1);
        self.count_failure(reason)
    }

    /// Aborts the pending checkpoint for a failure of its own (declined, timed out); this
    /// counts against the tolerated failures, savepoints excepted.
    fn fail_pending(&mut self, reason: String) -> Vec<CoordinatorAction> {
        let savepoint = self.pending.as_ref().is_some_and(|p| p.savepoint);
        let mut actions = self.abort(reason.clone());
        if !savepoint {
            actions.extend(self.count_failure(&reason));
        }
        actions
    }

    fn count_failure(&mut self, reason: &str) -> Vec<CoordinatorAction> {
        self.consecutive_failures += 1;
        match self.tolerable_failures {
            Some(tolerable) if self.consecutive_failures > tolerable => {
                vec![CoordinatorAction::FailJob {
                    reason: format!(
                        "{} consecutive checkpoints failed, more than \
                         execution.checkpointing.tolerable-failed-checkpoints = {tolerable}; \
                         the last: {reason}",
                        self.consecutive_failures
                    ),
                }]
            }
            _ => Vec::new(),
        }
    }

    fn abort(&mut self, reason: String) -> Vec<CoordinatorAction> {
        match self.pending.take() {
            Some(p) => vec![CoordinatorAction::Abort {
                checkpoint: p.id,
                reason,
            }],
            None => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn coordinator(tasks: u32) -> CheckpointCoordinator {
        let config =
            CheckpointConfig::new(Duration::from_millis(100), std::path::Path::new("/unused"))
                .with_timeout(Duration::from_millis(1000))
                .with_min_pause(Duration::from_millis(20));
        CheckpointCoordinator::new(
            "job",
            &config,
            (0..tasks).map(|subtask| TaskKey { chain: 0, subtask }),
            None,
        )
    }

    fn tick(c: &mut CheckpointCoordinator, now_ms: u64) -> Vec<CoordinatorAction> {
        c.handle(CoordinatorEvent::Tick {
            now_ms,
            wall_ms: now_ms as i64,
        })
    }

    fn ack(c: &mut CheckpointCoordinator, id: u64, subtask: u32) -> Vec<CoordinatorAction> {
        c.handle(CoordinatorEvent::Ack {
            checkpoint: CheckpointId(id),
            task: TaskKey { chain: 0, subtask },
            states: Vec::new(),
        })
    }

    #[test]
    fn trigger_then_all_acks_complete() {
        let mut c = coordinator(2);
        assert_eq!(
            tick(&mut c, 0),
            vec![CoordinatorAction::InjectBarrier {
                checkpoint: CheckpointId(1),
                timestamp_ms: 0
            }]
        );
        // In flight: no second trigger.
        assert!(tick(&mut c, 500).is_empty());
        assert!(ack(&mut c, 1, 0).is_empty());
        // A duplicate ack changes nothing.
        assert!(ack(&mut c, 1, 0).is_empty());
        let actions = ack(&mut c, 1, 1);
        assert!(matches!(
            &actions[..],
            [CoordinatorAction::Complete { metadata }] if metadata.checkpoint_id == CheckpointId(1)
        ));
        assert_eq!(c.completed_count(), 1);
        c.ended_at(510);
        // min-pause holds the next trigger back; then ids go on.
        assert!(tick(&mut c, 520).is_empty());
        assert!(matches!(
            &tick(&mut c, 600)[..],
            [CoordinatorAction::InjectBarrier {
                checkpoint: CheckpointId(2),
                ..
            }]
        ));
    }

    #[test]
    fn decline_aborts() {
        let mut c = coordinator(2);
        tick(&mut c, 0);
        ack(&mut c, 1, 0);
        let actions = c.handle(CoordinatorEvent::Decline {
            checkpoint: CheckpointId(1),
            task: TaskKey {
                chain: 0,
                subtask: 1,
            },
            reason: "disk full".into(),
        });
        assert!(matches!(
            &actions[..],
            [CoordinatorAction::Abort { checkpoint: CheckpointId(1), reason }] if reason.contains("disk full")
        ));
        assert_eq!(c.pending(), None);
        // A late ack of the aborted checkpoint is ignored.
        assert!(ack(&mut c, 1, 1).is_empty());
    }

    #[test]
    fn timeout_aborts_and_the_next_checkpoint_follows() {
        let mut c = coordinator(2);
        tick(&mut c, 0);
        ack(&mut c, 1, 0);
        assert!(tick(&mut c, 999).is_empty());
        assert!(matches!(
            &tick(&mut c, 1000)[..],
            [CoordinatorAction::Abort {
                checkpoint: CheckpointId(1),
                ..
            }]
        ));
        assert!(tick(&mut c, 1010).is_empty(), "min-pause after the abort");
        assert!(matches!(
            &tick(&mut c, 1100)[..],
            [CoordinatorAction::InjectBarrier {
                checkpoint: CheckpointId(2),
                ..
            }]
        ));
    }

    #[test]
    fn finished_task_stops_checkpointing() {
        let mut c = coordinator(2);
        tick(&mut c, 0);
        let actions = c.handle(CoordinatorEvent::TaskFinished {
            task: TaskKey {
                chain: 0,
                subtask: 0,
            },
        });
        assert!(matches!(&actions[..], [CoordinatorAction::Abort { .. }]));
        assert!(tick(&mut c, 10_000).is_empty());
    }

    #[test]
    fn ids_continue_after_a_restored_checkpoint() {
        let config =
            CheckpointConfig::new(Duration::from_millis(100), std::path::Path::new("/unused"));
        let mut c = CheckpointCoordinator::new(
            "job",
            &config,
            [TaskKey {
                chain: 0,
                subtask: 0,
            }],
            Some(CheckpointId(7)),
        );
        assert!(matches!(
            &tick(&mut c, 0)[..],
            [CoordinatorAction::InjectBarrier {
                checkpoint: CheckpointId(8),
                ..
            }]
        ));
    }

    #[test]
    fn savepoint_waits_for_the_checkpoint_in_flight_and_shares_ids() {
        let mut c = coordinator(1);
        tick(&mut c, 0);
        // Asked while checkpoint 1 is in flight: it waits.
        assert!(
            c.handle(CoordinatorEvent::TriggerSavepoint {
                now_ms: 5,
                wall_ms: 5
            })
            .is_empty()
        );
        assert!(matches!(
            &ack(&mut c, 1, 0)[..],
            [CoordinatorAction::Complete { .. }]
        ));
        c.ended_at(6);
        // Next tick: the savepoint goes first, whatever the interval and pause.
        assert_eq!(
            tick(&mut c, 7),
            vec![CoordinatorAction::InjectSavepointBarrier {
                checkpoint: CheckpointId(2),
                timestamp_ms: 7
            }]
        );
        let actions = ack(&mut c, 2, 0);
        assert!(matches!(
            &actions[..],
            [CoordinatorAction::CompleteSavepoint { metadata }] if metadata.checkpoint_id == CheckpointId(2)
        ));
        // A savepoint is not a completed checkpoint.
        assert_eq!(c.completed_count(), 1);
    }

    #[test]
    fn savepoint_after_a_task_finished_is_declined() {
        let mut c = coordinator(2);
        c.handle(CoordinatorEvent::TaskFinished {
            task: TaskKey {
                chain: 0,
                subtask: 1,
            },
        });
        assert!(matches!(
            &c.handle(CoordinatorEvent::TriggerSavepoint {
                now_ms: 1,
                wall_ms: 1
            })[..],
            [CoordinatorAction::DeclineSavepoint { .. }]
        ));
    }

    fn decline(c: &mut CheckpointCoordinator, id: u64) -> Vec<CoordinatorAction> {
        c.handle(CoordinatorEvent::Decline {
            checkpoint: CheckpointId(id),
            task: TaskKey {
                chain: 0,
                subtask: 0,
            },
            reason: "disk full".into(),
        })
    }

    #[test]
    fn more_consecutive_failures_than_tolerated_fail_the_job() {
        let config =
            CheckpointConfig::new(Duration::from_millis(10), std::path::Path::new("/unused"))
                .with_tolerable_failures(Some(1));
        let mut c = CheckpointCoordinator::new(
            "job",
            &config,
            [TaskKey {
                chain: 0,
                subtask: 0,
            }],
            None,
        );
        tick(&mut c, 0);
        assert!(matches!(
            &decline(&mut c, 1)[..],
            [CoordinatorAction::Abort { .. }]
        ));
        // A completed checkpoint resets the count.
        tick(&mut c, 100);
        assert!(matches!(
            &ack(&mut c, 2, 0)[..],
            [CoordinatorAction::Complete { .. }]
        ));
        tick(&mut c, 200);
        assert_eq!(decline(&mut c, 3).len(), 1);
        tick(&mut c, 300);
        let actions = decline(&mut c, 4);
        assert!(
            matches!(
                &actions[..],
                [CoordinatorAction::Abort { .. }, CoordinatorAction::FailJob { reason }]
                    if reason.contains("2 consecutive") && reason.contains("disk full")
            ),
            "{actions:?}"
        );
    }
}
