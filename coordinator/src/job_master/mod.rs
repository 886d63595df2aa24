//! The JobMaster: one per job. It holds the job's ExecutionGraph and the state of every task,
//! and decides what happens next when a task reports, a TaskManager is lost or a user cancels.
//!
//! A pure state machine: each event goes in with its timestamp and comes back as a list of
//! [`Action`]s (cancel the job's tasks on these TaskManagers, release the job's slots) that the
//! dispatcher's async shell performs. Every task state transition is recorded with its time.
//!
//! Job states follow Flink's `JobStatus`: CREATED → RUNNING → FINISHED, with FAILING → FAILED
//! and CANCELLING → CANCELED. The job ends when every task has ended: FINISHED when all
//! finished, FAILED when any failed, CANCELED after a cancellation.
//!
//! Failover: when a task fails with a failure a restart may cure (a lost TaskManager or peer,
//! not a malformed row) and the job's restart strategy allows another attempt, the job goes
//! RESTARTING instead of FAILING: the other tasks are cancelled, and once all have stopped the
//! shell waits the strategy's delay, allocates slots again (the lost TaskManager's are gone)
//! and deploys a new execution attempt that resumes from the latest completed checkpoint.
//! Each attempt's tasks keep their own history; reports of an older attempt are ignored.

pub mod checkpoints;

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use sluice_engine::checkpoint::{RestartStrategy, TaskKey};
use sluice_engine::graph::{JobGraph, OperatorSpec};
use sluice_engine::ids::{JobId, SlotId, SubtaskIndex};
use sluice_engine::runtime::{ExecutionGraph, ExecutionState, OperatorMetrics};

use crate::resource_manager::{AllocatedSlot, TaskManagerId};

/// A job's state, as Flink's `JobStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum JobState {
    Created,
    Running,
    Failing,
    Restarting,
    Failed,
    Cancelling,
    #[serde(rename = "CANCELED")]
    Cancelled,
    Finished,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Created => "CREATED",
            JobState::Running => "RUNNING",
            JobState::Failing => "FAILING",
            JobState::Restarting => "RESTARTING",
            JobState::Failed => "FAILED",
            JobState::Cancelling => "CANCELLING",
            JobState::Cancelled => "CANCELED",
            JobState::Finished => "FINISHED",
        }
    }

    /// FINISHED, FAILED or CANCELED.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobState::Finished | JobState::Failed | JobState::Cancelled
        )
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the shell must do after an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Cancel the job's tasks on these TaskManagers.
    CancelTasks(Vec<TaskManagerId>),
    /// The job has ended: give its slots back to the ResourceManager.
    ReleaseSlots,
    /// Every task of the failed attempt has stopped: give the slots back, wait `delay`, then
    /// schedule attempt `attempt`.
    Restart {
        attempt: u32,
        delay: std::time::Duration,
    },
}

/// One task (a chain's subtask) and its history.
#[derive(Debug, Clone)]
pub struct TaskRecord {
    /// The execution attempt this record belongs to (0 for the first).
    pub attempt: u32,
    pub chain: usize,
    pub subtask: SubtaskIndex,
    /// Slot in the job's ExecutionGraph.
    pub slot: SlotId,
    pub task_manager: Option<TaskManagerId>,
    /// The TaskManager's address ("host:port"), once scheduled.
    pub host: String,
    pub state: ExecutionState,
    /// Every state entered, with its time (milliseconds since the Unix epoch).
    pub transitions: Vec<(ExecutionState, u64)>,
    pub failure: Option<String>,
    /// Per operator of the chain, reported when the task ended.
    pub metrics: Vec<(String, OperatorMetrics)>,
    /// The task's live metrics: what its TaskManager's heartbeats carried, then its final
    /// reading once it ended.
    pub live: Option<crate::task_metrics::LiveTaskMetrics>,
}

impl TaskRecord {
    fn enter(&mut self, state: ExecutionState, at_ms: u64) {
        self.state = state;
        self.transitions.push((state, at_ms));
    }

    /// When the task entered `state`, if it did.
    pub fn entered(&self, state: ExecutionState) -> Option<u64> {
        self.transitions
            .iter()
            .find(|(s, _)| *s == state)
            .map(|(_, t)| *t)
    }
}

/// A task's state report, as a TaskManager sends it.
#[derive(Debug, Clone)]
pub struct TaskReport {
    pub attempt: u32,
    pub chain: usize,
    pub subtask: SubtaskIndex,
    pub state: ExecutionState,
    /// When the task entered `state` (milliseconds since the Unix epoch).
    pub at_ms: u64,
    pub failure: Option<String>,
    /// Whether a restart may cure the failure.
    pub retryable: bool,
    /// The chain's operator metrics, when the task has ended.
    pub metrics: Vec<(String, OperatorMetrics)>,
    /// The task's final live-metrics reading, when it has ended.
    pub sample: Option<sluice_engine::runtime::TaskSample>,
}

/// One job and its tasks.
#[derive(Debug)]
pub struct JobMaster {
    pub id: JobId,
    pub graph: JobGraph,
    pub execution: ExecutionGraph,
    pub state: JobState,
    /// Every job state entered, with its time.
    pub timestamps: Vec<(JobState, u64)>,
    pub failure: Option<String>,
    /// In ExecutionGraph placement order.
    pub tasks: Vec<TaskRecord>,
    /// The job's checkpoints, when it runs with checkpointing.
    pub checkpoints: Option<checkpoints::JobCheckpoints>,
    /// How failed attempts are restarted.
    pub restart_strategy: RestartStrategy,
    /// The current execution attempt (0 for the first).
    pub attempt: u32,
    /// The tasks of earlier attempts, oldest first.
    pub prior_attempts: Vec<Vec<TaskRecord>>,
    /// The failures that restarted the job, with their time, oldest first.
    pub restarts: Vec<(u64, String)>,
    /// The checkpoint the current attempt resumed from (id and directory).
    pub restored_from: Option<(
        sluice_engine::ids::CheckpointId,
        sluice_engine::checkpoint::StatePath,
    )>,
}

impl JobMaster {
    /// A new job: its ExecutionGraph uses one slot per parallel slice (slot sharing), so it
    /// needs as many slots as its largest parallelism.
    pub fn new(id: JobId, graph: JobGraph, now_ms: u64) -> Self {
        let slots = graph
            .vertices()
            .iter()
            .map(|v| v.parallelism)
            .max()
            .unwrap_or(1);
        // The cluster's exchange is Flight streams between running tasks: a batch job's
        // blocking exchanges run pipelined here, and the whole job restarts on a failure.
        if graph.shuffle_mode() != sluice_engine::graph::BatchShuffleMode::AllExchangesPipelined {
            tracing::info!(job_id = %id, mode = graph.shuffle_mode().as_str(), "the cluster runs the job's exchanges pipelined");
        }
        let execution = ExecutionGraph::new(&graph, slots);
        let tasks = new_tasks(&execution, 0, now_ms);
        JobMaster {
            id,
            graph,
            execution,
            state: JobState::Created,
            timestamps: vec![(JobState::Created, now_ms)],
            failure: None,
            tasks,
            checkpoints: None,
            restart_strategy: RestartStrategy::None,
            attempt: 0,
            prior_attempts: Vec::new(),
            restarts: Vec::new(),
            restored_from: None,
        }
    }

    /// A job a new leader takes over (high availability): it starts over as attempt
    /// `attempt` (the stopped attempts ran under the previous leader), in RESTARTING until
    /// its tasks are scheduled.
    pub fn taken_over(
        id: JobId,
        graph: JobGraph,
        submitted_ms: u64,
        attempt: u32,
        now_ms: u64,
    ) -> Self {
        let mut job = JobMaster::new(id, graph, submitted_ms);
        job.attempt = attempt;
        job.tasks = new_tasks(&job.execution, attempt, now_ms);
        job.state = JobState::Restarting;
        job.timestamps.push((JobState::Restarting, now_ms));
        // Not counted in `restarts`: a change of leader does not use the restart strategy's
        // attempts up.
        job
    }

    /// A job that ended under a previous leader, as etcd recorded its end.
    pub fn ended(
        id: JobId,
        graph: JobGraph,
        submitted_ms: u64,
        end: &crate::ha::store::JobEnd,
    ) -> Self {
        let mut job = JobMaster::new(id, graph, submitted_ms);
        let state = match end.state.as_str() {
            "FINISHED" => JobState::Finished,
            "CANCELED" => JobState::Cancelled,
            _ => JobState::Failed,
        };
        job.state = state;
        job.timestamps.push((state, end.end_ms));
        job.failure = end.failure.clone();
        job
    }

    /// Restarts failed attempts as `strategy` allows.
    pub fn with_restart_strategy(mut self, strategy: RestartStrategy) -> Self {
        self.restart_strategy = strategy;
        self
    }

    /// Every task, as the checkpoint coordinator names them.
    pub fn task_keys(&self) -> Vec<TaskKey> {
        self.tasks
            .iter()
            .map(|t| TaskKey {
                chain: t.chain,
                subtask: t.subtask.0,
            })
            .collect()
    }

    /// The TaskManagers hosting tasks whose chain starts at a source (where checkpoints are
    /// triggered).
    pub fn source_task_managers(&self) -> BTreeSet<TaskManagerId> {
        self.tasks
            .iter()
            .filter(|t| {
                let head = self.execution.chains[t.chain].vertices[0];
                matches!(
                    self.graph.vertex(head).operator,
                    OperatorSpec::Source { .. }
                )
            })
            .filter_map(|t| t.task_manager.clone())
            .collect()
    }

    /// Slots the job needs.
    pub fn slots_needed(&self) -> usize {
        self.execution.slots as usize
    }

    fn enter(&mut self, state: JobState, at_ms: u64) {
        if self.state != state {
            self.state = state;
            self.timestamps.push((state, at_ms));
        }
    }

    /// When the job entered `state`, if it did.
    pub fn entered(&self, state: JobState) -> Option<u64> {
        self.timestamps
            .iter()
            .find(|(s, _)| *s == state)
            .map(|(_, t)| *t)
    }

    /// Slots were allocated: slot `i` of the ExecutionGraph is `slots[i]` on the TaskManager
    /// at `hosts[i]`. The job is RUNNING and its tasks SCHEDULED. After a restart this is the
    /// new attempt's scheduling.
    pub fn schedule(&mut self, slots: &[AllocatedSlot], hosts: &[String], now_ms: u64) {
        for task in &mut self.tasks {
            let index = task.slot.0 as usize;
            task.task_manager = Some(slots[index].task_manager.clone());
            task.host = hosts[index].clone();
            task.enter(ExecutionState::Scheduled, now_ms);
        }
        self.enter(JobState::Running, now_ms);
    }

    /// The TaskManagers the job's tasks were scheduled on.
    pub fn task_managers(&self) -> BTreeSet<TaskManagerId> {
        self.tasks
            .iter()
            .filter_map(|t| t.task_manager.clone())
            .collect()
    }

    /// The deployment to `task_manager` is being sent: its tasks are DEPLOYING.
    pub fn deploying(&mut self, task_manager: &TaskManagerId, now_ms: u64) {
        for task in &mut self.tasks {
            if task.task_manager.as_ref() == Some(task_manager)
                && task.state == ExecutionState::Scheduled
            {
                task.enter(ExecutionState::Deploying, now_ms);
            }
        }
    }

    /// The deployment to `task_manager` was never sent (an earlier one failed): its tasks are
    /// cancelled without asking it.
    pub fn withdraw(&mut self, task_manager: &TaskManagerId, now_ms: u64) {
        for task in &mut self.tasks {
            if task.task_manager.as_ref() == Some(task_manager)
                && matches!(
                    task.state,
                    ExecutionState::Scheduled | ExecutionState::Deploying
                )
            {
                task.enter(ExecutionState::Cancelled, now_ms);
            }
        }
    }

    /// A live-metrics reading of a task of attempt `attempt`, from its TaskManager's
    /// heartbeat. Readings of another attempt, or of a task that has ended (its final reading
    /// came with its last state), are ignored.
    pub fn task_metrics(
        &mut self,
        attempt: u32,
        sample: sluice_engine::runtime::TaskSample,
        now_ms: u64,
    ) {
        if attempt != self.attempt {
            return;
        }
        if let Some(task) = self
            .tasks
            .iter_mut()
            .find(|t| t.chain == sample.chain && t.subtask.0 == sample.subtask)
            .filter(|t| !t.state.is_terminal())
        {
            task.live
                .get_or_insert_with(Default::default)
                .update(sample, now_ms);
        }
    }

    /// A task of attempt `report.attempt` reported a new state. Reports of an earlier attempt
    /// are ignored (they arrive late, from tasks the restart already wrote off).
    pub fn task_state(&mut self, report: TaskReport, now_ms: u64) -> Result<Vec<Action>, String> {
        let TaskReport {
            attempt,
            chain,
            subtask,
            state,
            at_ms,
            failure,
            retryable,
            metrics,
            sample,
        } = report;
        if attempt != self.attempt {
            return Ok(Vec::new());
        }
        let task = self
            .tasks
            .iter_mut()
            .find(|t| t.chain == chain && t.subtask == subtask)
            .ok_or_else(|| {
                format!(
                    "job {} has no task (chain {chain}, subtask {subtask})",
                    self.id
                )
            })?;
        if task.state.is_terminal() {
            // A late report (a task that ended as its TaskManager was declared lost).
            return Ok(Vec::new());
        }
        task.enter(state, at_ms);
        if state.is_terminal() {
            task.metrics = metrics;
            if let Some(sample) = sample {
                task.live
                    .get_or_insert_with(Default::default)
                    .update(sample, now_ms);
            }
        }
        let mut actions = Vec::new();
        if state == ExecutionState::Failed {
            task.failure = failure.clone();
            let reason = failure.unwrap_or_else(|| "the task failed".into());
            actions.extend(self.task_failed(reason, retryable, now_ms));
        }
        actions.extend(self.end_if_done(now_ms));
        Ok(actions)
    }

    /// A task of the current attempt failed: the job restarts when the failure is retryable
    /// and the strategy allows another attempt, and fails otherwise. Nothing changes when the
    /// job is already stopping.
    fn task_failed(&mut self, reason: String, retryable: bool, now_ms: u64) -> Vec<Action> {
        if matches!(
            self.state,
            JobState::Failing | JobState::Cancelling | JobState::Restarting
        ) || self.state.is_terminal()
        {
            return Vec::new();
        }
        let restarts_left = match self.restart_strategy {
            RestartStrategy::FixedDelay { attempts, .. } => (self.restarts.len() as u32) < attempts,
            RestartStrategy::None => false,
        };
        if retryable && restarts_left {
            self.restarts.push((now_ms, reason));
            self.stop(JobState::Restarting, now_ms)
        } else {
            self.failure = Some(reason);
            self.stop(JobState::Failing, now_ms)
        }
    }

    /// A TaskManager is gone: its unfinished tasks failed (or were cancelled, when the job was
    /// being cancelled anyway) and the job restarts or fails.
    pub fn task_manager_lost(
        &mut self,
        task_manager: &TaskManagerId,
        reason: &str,
        now_ms: u64,
    ) -> Vec<Action> {
        self.tasks_failed_on(task_manager, reason, true, now_ms)
    }

    /// `task_manager` refused the deployment of its tasks (it lacks a user function, it cannot
    /// read the checkpoint): they failed, and no restart onto the same TaskManagers would cure
    /// that, so the job fails.
    pub fn deployment_refused(
        &mut self,
        task_manager: &TaskManagerId,
        reason: &str,
        now_ms: u64,
    ) -> Vec<Action> {
        self.tasks_failed_on(task_manager, reason, false, now_ms)
    }

    fn tasks_failed_on(
        &mut self,
        task_manager: &TaskManagerId,
        reason: &str,
        retryable: bool,
        now_ms: u64,
    ) -> Vec<Action> {
        let mut lost_any = false;
        let cancelling = self.state == JobState::Cancelling;
        for task in &mut self.tasks {
            if task.task_manager.as_ref() == Some(task_manager) && !task.state.is_terminal() {
                lost_any = true;
                if cancelling {
                    task.enter(ExecutionState::Cancelled, now_ms);
                } else {
                    task.failure = Some(reason.to_string());
                    task.enter(ExecutionState::Failed, now_ms);
                }
            }
        }
        if !lost_any {
            return Vec::new();
        }
        let mut actions = self.task_failed(reason.to_string(), retryable, now_ms);
        actions.extend(self.end_if_done(now_ms));
        actions
    }

    /// The job fails for good (checkpoints failed beyond the tolerated number, no slots in
    /// time, an unreadable checkpoint to restart from): the tasks still running are cancelled,
    /// those not yet deployed at once.
    pub fn fail(&mut self, reason: &str, now_ms: u64) -> Vec<Action> {
        let mut actions = Vec::new();
        if !self.state.is_terminal() && self.state != JobState::Failing {
            self.failure = Some(reason.to_string());
            actions.extend(self.stop(JobState::Failing, now_ms));
        }
        actions.extend(self.end_if_done(now_ms));
        actions
    }

    /// Starts attempt `attempt` (asked for by [`Action::Restart`]): the stopped attempt's tasks
    /// go to the history and new ones are CREATED. `false` when the job has meanwhile ended or
    /// another attempt started (the restart is stale).
    pub fn begin_attempt(&mut self, attempt: u32, now_ms: u64) -> bool {
        if self.state != JobState::Restarting || attempt != self.attempt + 1 {
            return false;
        }
        self.attempt = attempt;
        let fresh = new_tasks(&self.execution, attempt, now_ms);
        let stopped = std::mem::replace(&mut self.tasks, fresh);
        self.prior_attempts.push(stopped);
        true
    }

    /// The user cancels the job. `false` when it had already ended.
    pub fn cancel(&mut self, now_ms: u64) -> (bool, Vec<Action>) {
        if self.state.is_terminal() {
            return (false, Vec::new());
        }
        let mut actions = self.stop(JobState::Cancelling, now_ms);
        actions.extend(self.end_if_done(now_ms));
        (true, actions)
    }

    /// Moves the job to `state` (FAILING, RESTARTING or CANCELLING): tasks not yet deployed
    /// are cancelled at once, deployed ones are asked to cancel.
    fn stop(&mut self, state: JobState, now_ms: u64) -> Vec<Action> {
        self.enter(state, now_ms);
        let mut targets = BTreeSet::new();
        for task in &mut self.tasks {
            match task.state {
                ExecutionState::Created | ExecutionState::Scheduled => {
                    task.enter(ExecutionState::Cancelled, now_ms)
                }
                ExecutionState::Deploying
                | ExecutionState::Initializing
                | ExecutionState::Running => {
                    task.enter(ExecutionState::Cancelling, now_ms);
                    if let Some(tm) = &task.task_manager {
                        targets.insert(tm.clone());
                    }
                }
                ExecutionState::Cancelling
                | ExecutionState::Finished
                | ExecutionState::Cancelled
                | ExecutionState::Failed => {}
            }
        }
        if targets.is_empty() {
            Vec::new()
        } else {
            vec![Action::CancelTasks(targets.into_iter().collect())]
        }
    }

    /// Ends the job once every task has ended.
    fn end_if_done(&mut self, now_ms: u64) -> Vec<Action> {
        if self.state.is_terminal() || !self.tasks.iter().all(|t| t.state.is_terminal()) {
            return Vec::new();
        }
        if self.state == JobState::Restarting {
            let delay = match self.restart_strategy {
                RestartStrategy::FixedDelay { delay, .. } => delay,
                RestartStrategy::None => std::time::Duration::ZERO,
            };
            return vec![Action::Restart {
                attempt: self.attempt + 1,
                delay,
            }];
        }
        let end = match self.state {
            JobState::Cancelling => JobState::Cancelled,
            JobState::Failing => JobState::Failed,
            _ if self.tasks.iter().any(|t| t.state == ExecutionState::Failed) => JobState::Failed,
            _ if self
                .tasks
                .iter()
                .all(|t| t.state == ExecutionState::Finished) =>
            {
                JobState::Finished
            }
            _ => JobState::Cancelled,
        };
        self.enter(end, now_ms);
        vec![Action::ReleaseSlots]
    }

    /// Per chain (Flink's job vertex): its name and parallelism.
    pub fn vertices(&self) -> Vec<(usize, String, u32)> {
        (0..self.execution.chains.len())
            .map(|chain| {
                (
                    chain,
                    self.execution.chain_name(&self.graph, chain),
                    self.execution.chains[chain].parallelism,
                )
            })
            .collect()
    }

    /// How many tasks are in each state.
    pub fn task_counts(&self, chain: Option<usize>) -> BTreeMap<ExecutionState, usize> {
        let mut counts: BTreeMap<ExecutionState, usize> =
            ExecutionState::ALL.iter().map(|s| (*s, 0)).collect();
        for task in &self.tasks {
            if chain.is_none_or(|c| c == task.chain) {
                *counts.entry(task.state).or_default() += 1;
            }
        }
        counts
    }
}

/// The tasks of a new attempt: one per placement of the ExecutionGraph, CREATED.
fn new_tasks(execution: &ExecutionGraph, attempt: u32, now_ms: u64) -> Vec<TaskRecord> {
    execution
        .tasks
        .iter()
        .map(|p| TaskRecord {
            attempt,
            chain: p.chain,
            subtask: p.subtask,
            slot: p.slot,
            task_manager: None,
            host: String::new(),
            state: ExecutionState::Created,
            transitions: vec![(ExecutionState::Created, now_ms)],
            failure: None,
            metrics: Vec::new(),
            live: None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::datatypes::{DataType, Field, Schema};
    use sluice_engine::api::StreamEnvironment;
    use sluice_engine::connector::SinkSpec;

    use super::*;

    /// source -> sink at parallelism 2: one chain, two tasks.
    fn job() -> JobMaster {
        let env = StreamEnvironment::new("t").with_parallelism(2);
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        env.from_batches("src", schema, vec![])
            .unwrap()
            .sink("sink", SinkSpec::Blackhole)
            .unwrap();
        JobMaster::new(JobId("j".into()), env.build().unwrap().0, 1)
    }

    fn slots(tms: &[&str]) -> (Vec<AllocatedSlot>, Vec<String>) {
        let slots = tms
            .iter()
            .map(|tm| AllocatedSlot {
                task_manager: TaskManagerId(tm.to_string()),
                slot: SlotId(0),
            })
            .collect();
        (slots, tms.iter().map(|tm| format!("{tm}:1")).collect())
    }

    fn task_report(subtask: u32, state: ExecutionState, at: u64) -> TaskReport {
        TaskReport {
            attempt: 0,
            chain: 0,
            subtask: SubtaskIndex(subtask),
            state,
            at_ms: at,
            failure: None,
            retryable: false,
            metrics: Vec::new(),
            sample: None,
        }
    }

    fn report(job: &mut JobMaster, subtask: u32, state: ExecutionState, at: u64) -> Vec<Action> {
        job.task_state(task_report(subtask, state, at), at).unwrap()
    }

    #[test]
    fn job_finishes_when_every_task_finished_with_every_transition_timed() {
        let mut job = job();
        assert_eq!(job.slots_needed(), 2);
        let (s, h) = slots(&["a", "b"]);
        job.schedule(&s, &h, 2);
        assert_eq!(job.state, JobState::Running);
        job.deploying(&TaskManagerId("a".into()), 3);
        job.deploying(&TaskManagerId("b".into()), 3);
        for subtask in 0..2 {
            report(&mut job, subtask, ExecutionState::Initializing, 4);
            report(&mut job, subtask, ExecutionState::Running, 5);
        }
        assert!(report(&mut job, 0, ExecutionState::Finished, 6).is_empty());
        assert_eq!(job.state, JobState::Running);
        assert_eq!(
            report(&mut job, 1, ExecutionState::Finished, 7),
            vec![Action::ReleaseSlots]
        );
        assert_eq!(job.state, JobState::Finished);
        let states: Vec<_> = job.tasks[1].transitions.iter().map(|(s, _)| *s).collect();
        assert_eq!(
            states,
            [
                ExecutionState::Created,
                ExecutionState::Scheduled,
                ExecutionState::Deploying,
                ExecutionState::Initializing,
                ExecutionState::Running,
                ExecutionState::Finished
            ]
        );
        assert_eq!(job.tasks[1].entered(ExecutionState::Finished), Some(7));
        assert_eq!(job.entered(JobState::Finished), Some(7));
    }

    #[test]
    fn a_failed_task_cancels_the_others_and_fails_the_job() {
        let mut job = job();
        let (s, h) = slots(&["a", "b"]);
        job.schedule(&s, &h, 2);
        job.deploying(&TaskManagerId("a".into()), 3);
        job.deploying(&TaskManagerId("b".into()), 3);
        let failed = TaskReport {
            failure: Some("boom".into()),
            ..task_report(0, ExecutionState::Failed, 4)
        };
        let actions = job.task_state(failed, 4).unwrap();
        assert_eq!(
            actions,
            vec![Action::CancelTasks(vec![TaskManagerId("b".into())])]
        );
        assert_eq!(job.state, JobState::Failing);
        assert_eq!(job.tasks[1].state, ExecutionState::Cancelling);
        assert_eq!(
            report(&mut job, 1, ExecutionState::Cancelled, 5),
            vec![Action::ReleaseSlots]
        );
        assert_eq!(job.state, JobState::Failed);
        assert_eq!(job.failure.as_deref(), Some("boom"));
    }

    #[test]
    fn a_lost_task_manager_fails_its_tasks() {
        let mut job = job();
        let (s, h) = slots(&["a", "b"]);
        job.schedule(&s, &h, 2);
        job.deploying(&TaskManagerId("a".into()), 3);
        job.deploying(&TaskManagerId("b".into()), 3);
        let actions = job.task_manager_lost(&TaskManagerId("a".into()), "heartbeat timeout", 9);
        assert_eq!(
            actions,
            vec![Action::CancelTasks(vec![TaskManagerId("b".into())])]
        );
        assert_eq!(job.tasks[0].state, ExecutionState::Failed);
        report(&mut job, 1, ExecutionState::Cancelled, 10);
        assert_eq!(job.state, JobState::Failed);
    }

    #[test]
    fn a_failed_deployment_withdraws_the_unsent_ones_and_fails_the_job() {
        let mut job = job();
        let (s, h) = slots(&["a", "b"]);
        job.schedule(&s, &h, 2);
        job.deploying(&TaskManagerId("a".into()), 3);
        job.deploying(&TaskManagerId("b".into()), 3);
        job.withdraw(&TaskManagerId("b".into()), 4);
        let actions = job.task_manager_lost(&TaskManagerId("a".into()), "unreachable", 4);
        assert_eq!(actions, vec![Action::ReleaseSlots]);
        assert_eq!(job.state, JobState::Failed);
        assert_eq!(job.tasks[0].state, ExecutionState::Failed);
        assert_eq!(job.tasks[1].state, ExecutionState::Cancelled);
    }

    #[test]
    fn cancelling_a_scheduled_job_ends_it_at_once() {
        let mut job = job();
        let (s, h) = slots(&["a", "a"]);
        job.schedule(&s, &h, 2);
        let (cancelled, actions) = job.cancel(3);
        assert!(cancelled);
        assert_eq!(actions, vec![Action::ReleaseSlots]);
        assert_eq!(job.state, JobState::Cancelled);
        assert!(!job.cancel(4).0, "an ended job cannot be cancelled again");
    }

    fn restartable_job(attempts: u32) -> JobMaster {
        job().with_restart_strategy(RestartStrategy::FixedDelay {
            attempts,
            delay: std::time::Duration::from_millis(10),
        })
    }

    fn run_attempt(job: &mut JobMaster, at: u64) {
        let (s, h) = slots(&["a", "b"]);
        job.schedule(&s, &h, at);
        job.deploying(&TaskManagerId("a".into()), at);
        job.deploying(&TaskManagerId("b".into()), at);
        for subtask in 0..2 {
            let running = TaskReport {
                attempt: job.attempt,
                ..task_report(subtask, ExecutionState::Running, at)
            };
            job.task_state(running, at).unwrap();
        }
    }

    #[test]
    fn a_lost_task_manager_restarts_the_job_as_a_new_attempt_keeping_the_old_one() {
        let mut job = restartable_job(3);
        run_attempt(&mut job, 2);
        let actions = job.task_manager_lost(&TaskManagerId("a".into()), "killed", 5);
        assert_eq!(
            actions,
            vec![Action::CancelTasks(vec![TaskManagerId("b".into())])]
        );
        assert_eq!(job.state, JobState::Restarting);
        assert_eq!(job.failure, None, "a restarting job has not failed");
        // The surviving task stops; then the restart is asked for.
        let actions = report(&mut job, 1, ExecutionState::Cancelled, 6);
        assert_eq!(
            actions,
            vec![Action::Restart {
                attempt: 1,
                delay: std::time::Duration::from_millis(10)
            }]
        );
        assert!(job.begin_attempt(1, 7));
        assert!(!job.begin_attempt(1, 7), "a restart is taken once");
        assert_eq!(job.attempt, 1);
        assert_eq!(job.prior_attempts.len(), 1);
        assert_eq!(job.prior_attempts[0][0].state, ExecutionState::Failed);
        assert!(
            job.tasks
                .iter()
                .all(|t| t.state == ExecutionState::Created && t.attempt == 1)
        );
        run_attempt(&mut job, 8);
        assert_eq!(job.state, JobState::Running);
        // A late report of the old attempt changes nothing.
        assert!(report(&mut job, 0, ExecutionState::Failed, 9).is_empty());
        assert_eq!(job.tasks[0].state, ExecutionState::Running);
        for subtask in 0..2 {
            let finished = TaskReport {
                attempt: 1,
                ..task_report(subtask, ExecutionState::Finished, 10)
            };
            job.task_state(finished, 10).unwrap();
        }
        assert_eq!(job.state, JobState::Finished);
        assert_eq!(job.restarts.len(), 1);
        assert_eq!(job.restarts[0].1, "killed");
    }

    #[test]
    fn a_failure_no_restart_cures_or_beyond_the_attempts_fails_the_job() {
        // A malformed row is not retryable.
        let mut job = restartable_job(3);
        run_attempt(&mut job, 2);
        let bad_row = TaskReport {
            failure: Some("malformed row".into()),
            retryable: false,
            ..task_report(0, ExecutionState::Failed, 3)
        };
        job.task_state(bad_row, 3).unwrap();
        assert_eq!(job.state, JobState::Failing);

        // One restart allowed: the second loss fails the job.
        let mut job = restartable_job(1);
        run_attempt(&mut job, 2);
        job.task_manager_lost(&TaskManagerId("a".into()), "first", 3);
        let actions = report(&mut job, 1, ExecutionState::Cancelled, 4);
        assert!(matches!(actions[..], [Action::Restart { attempt: 1, .. }]));
        assert!(job.begin_attempt(1, 5));
        run_attempt(&mut job, 6);
        job.task_manager_lost(&TaskManagerId("b".into()), "second", 7);
        assert_eq!(job.state, JobState::Failing);
        assert_eq!(job.failure.as_deref(), Some("second"));
    }

    #[test]
    fn a_refused_deployment_fails_the_job_even_with_restarts_left() {
        let mut job = restartable_job(3);
        let (s, h) = slots(&["a", "b"]);
        job.schedule(&s, &h, 2);
        job.deploying(&TaskManagerId("a".into()), 2);
        job.deploying(&TaskManagerId("b".into()), 2);
        let actions = job.deployment_refused(&TaskManagerId("a".into()), "no function", 3);
        assert_eq!(
            actions,
            vec![Action::CancelTasks(vec![TaskManagerId("b".into())])]
        );
        assert_eq!(job.state, JobState::Failing);
        assert!(job.restarts.is_empty());
    }

    #[test]
    fn cancelling_a_restarting_job_ends_it_and_the_restart_is_stale() {
        let mut job = restartable_job(3);
        run_attempt(&mut job, 2);
        job.task_manager_lost(&TaskManagerId("a".into()), "killed", 3);
        report(&mut job, 1, ExecutionState::Cancelled, 4);
        let (cancelled, actions) = job.cancel(5);
        assert!(cancelled);
        assert_eq!(actions, vec![Action::ReleaseSlots]);
        assert_eq!(job.state, JobState::Cancelled);
        assert!(!job.begin_attempt(1, 6));
    }

    #[test]
    fn no_slots_in_time_fails_a_waiting_job() {
        let mut job = job();
        let actions = job.fail("not enough slots", 3);
        assert_eq!(actions, vec![Action::ReleaseSlots]);
        assert_eq!(job.state, JobState::Failed);
        assert!(
            job.tasks
                .iter()
                .all(|t| t.state == ExecutionState::Cancelled)
        );
    }

    #[test]
    fn a_report_for_an_unknown_task_is_an_error() {
        let mut job = job();
        let unknown = TaskReport {
            chain: 5,
            ..task_report(0, ExecutionState::Running, 1)
        };
        assert!(job.task_state(unknown, 1).is_err());
    }
}
