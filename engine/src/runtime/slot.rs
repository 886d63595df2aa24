//! A slot: one worker thread, pinned to a core, that runs all tasks placed in it.
//!
//! The thread visits its tasks in turn, one step each (cooperative scheduling: a step never
//! blocks). When a full round made no progress it parks until a channel end wakes it, with a
//! short timeout as a safety net for sources that are waiting on the clock. A panic or error in
//! any task is reported to the job's control, which cancels every slot: a failed job stops
//! promptly and never hangs.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::debug;

use super::deploy::{ExecutionState, SlotListener};
use super::exchange::SlotWaker;
use super::live::PUBLISH_INTERVAL;
use super::task::{OperatorMetrics, Step, Task};
use crate::Error;
use crate::ids::SlotId;

/// How long a slot with nothing to do sleeps at most before looking again.
const IDLE_PARK: Duration = Duration::from_millis(1);

/// Shared by all slots of a job: cancellation and the first failure.
#[derive(Debug, Default)]
pub(crate) struct JobControl {
    cancelled: AtomicBool,
    failure: Mutex<Option<Error>>,
    wakers: Mutex<Vec<SlotWaker>>,
}

impl JobControl {
    pub fn add_waker(&self, waker: SlotWaker) {
        self.wakers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(waker);
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Acquire)
    }

    /// Wakes every slot (a checkpoint was triggered or completed).
    pub fn wake_all(&self) {
        for waker in self.wakers.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            waker.wake();
        }
    }

    /// Stops every slot. Off the data path: called once on failure or cancellation.
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::Release);
        for waker in self.wakers.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            waker.wake();
        }
    }

    /// Records `error` if it is the first failure, then cancels the job. Errors after a
    /// cancellation (peers whose channels closed as their slots stopped) are consequences,
    /// not causes, and are dropped.
    pub fn fail(&self, error: Error) {
        {
            let mut failure = self.failure.lock().unwrap_or_else(|p| p.into_inner());
            if failure.is_none() && !self.is_cancelled() {
                *failure = Some(error);
            }
        }
        self.cancel();
    }

    pub fn take_failure(&self) -> Option<Error> {
        self.failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }
}

/// What a slot thread hands back when it ends: every task's operator metrics and subtask.
pub(crate) type SlotReport = Vec<(u32, Vec<(String, OperatorMetrics)>)>;

pub(crate) fn run_slot(
    slot: SlotId,
    mut tasks: Vec<Task>,
    control: Arc<JobControl>,
    waker: SlotWaker,
    core: Option<core_affinity::CoreId>,
    listener: Option<SlotListener>,
) -> SlotReport {
    waker.bind_current();
    if let Some(core) = core {
        core_affinity::set_for_current(core);
    }
    debug!(slot = slot.0, tasks = tasks.len(), "slot started");
    let mut finished = vec![false; tasks.len()];
    let mut failed = vec![false; tasks.len()];
    let report = |index: usize, state, failure: Option<&Error>, task: &mut Task| {
        if let Some(listener) = &listener {
            let (metrics, sample) =
                if state == ExecutionState::Running || state == ExecutionState::Initializing {
                    (Vec::new(), None)
                } else {
                    task.publish(Instant::now());
                    (task.metrics(), Some(task.live().sample()))
                };
            listener.report(index, state, failure, metrics, sample);
        }
    };

    for (index, task) in tasks.iter_mut().enumerate() {
        report(index, ExecutionState::Initializing, None, task);
        match guarded(task, Task::open) {
            Ok(()) => report(index, ExecutionState::Running, None, task),
            Err(error) => {
                failed[index] = true;
                report(index, ExecutionState::Failed, Some(&error), task);
                control.fail(error);
            }
        }
    }

    let mut next_publish = Instant::now();
    while !control.is_cancelled() {
        let mut progressed = false;
        let mut clock = Instant::now();
        for (index, task) in tasks.iter_mut().enumerate() {
            if finished[index] {
                continue;
            }
            let step = guarded(task, Task::step);
            let now = Instant::now();
            let (worked, blocked) = match &step {
                Ok(Step::Progress | Step::Finished) => (true, false),
                Ok(Step::Backpressured) => (false, true),
                Ok(Step::Idle) | Err(_) => (false, false),
            };
            task.counters.account(clock, now, worked, blocked);
            clock = now;
            match step {
                Ok(Step::Progress) => progressed = true,
                Ok(Step::Idle | Step::Backpressured) => {}
                Ok(Step::Finished) => {
                    finished[index] = true;
                    progressed = true;
                    report(index, ExecutionState::Finished, None, task);
                }
                Err(error) => {
                    failed[index] = true;
                    report(index, ExecutionState::Failed, Some(&error), task);
                    control.fail(error);
                    break;
                }
            }
        }
        if finished.iter().all(|&f| f) {
            break;
        }
        if clock >= next_publish {
            next_publish = clock + PUBLISH_INTERVAL;
            for task in &mut tasks {
                task.publish(clock);
            }
        }
        if !progressed {
            std::thread::park_timeout(IDLE_PARK);
        }
    }

    let mut metrics = Vec::with_capacity(tasks.len());
    for (index, task) in tasks.iter_mut().enumerate() {
        if let Err(error) = guarded(task, Task::close) {
            if !failed[index] {
                failed[index] = true;
                report(index, ExecutionState::Failed, Some(&error), task);
            }
            control.fail(error);
        }
        if !finished[index] && !failed[index] {
            report(index, ExecutionState::Cancelled, None, task);
        }
        task.publish(Instant::now());
        metrics.push((task.subtask, task.metrics()));
    }
    debug!(slot = slot.0, "slot finished");
    metrics
}

/// Runs `f` on the task, turning a panic into an error that names the operator and subtask.
fn guarded<T>(task: &mut Task, f: impl FnOnce(&mut Task) -> crate::Result<T>) -> crate::Result<T> {
    match catch_unwind(AssertUnwindSafe(|| f(task))) {
        Ok(result) => result,
        Err(payload) => {
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic payload".to_string());
            Err(Error::Panic {
                operator: task.active_operator().to_string(),
                subtask: task.subtask,
                message,
            })
        }
    }
}
