//! Stage-by-stage execution of a batch job whose exchanges are blocking.
//!
//! One scheduler thread runs the job: it starts every stage whose input stages have finished
//! (several at once when they are independent, e.g. the scans feeding a join), each on its own
//! slot threads, and waits for stages to end. A stage's producers write their blocking
//! partitions to files ([`BlockingExchange`]), so its consumers can start after it, read the
//! smaller input first, and run again after a failure.
//!
//! Failover is per stage (Flink's region failover): when a task fails with a retryable error
//! and the restart strategy allows another attempt, only the failed stage is rebuilt and run
//! again, from its inputs' partitions, with every operator restored with nothing, so sinks
//! discard what the failed run staged. Stages that finished keep their output; stages running
//! beside it go on. Each stage run has its own [`JobControl`], so one stage's failure does not
//! cancel the others; the job's control cancels them all.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use tracing::{info, warn};

use super::exchange::{
    BlockingExchange, ChannelId, ExchangeFactory, InputChannel, LocalExchange, OutputChannel,
    SlotWaker,
};
use super::live::{LiveMetrics, LiveTask};
use super::slot::{JobControl, SlotReport};
use super::task::Task;
use super::{ExecutionGraph, JobEnvironment, Restore, RuntimeConfig, build_task, start_slots};
use crate::checkpoint::RestartStrategy;
use crate::connector::SinkResources;
use crate::graph::JobGraph;
use crate::ids::JobId;
use crate::{Error, Result};

/// How often the scheduler looks at the job's control (for a cancellation) while it waits.
const POLL: Duration = Duration::from_millis(20);

/// Stage restarts so far, readable while the job runs.
pub(super) type StageRestarts = Arc<AtomicU32>;

/// Starts the scheduler thread of a staged job. Its report holds the metrics of every task's
/// last (successful) run.
pub(super) fn start(
    config: &RuntimeConfig,
    graph: &JobGraph,
    env: &JobEnvironment,
    job_id: &JobId,
    execution: ExecutionGraph,
    control: Arc<JobControl>,
    live: LiveMetrics,
) -> Result<(JoinHandle<SlotReport>, StageRestarts)> {
    let restarts = StageRestarts::default();
    let scheduler = Scheduler {
        config: config.clone(),
        graph: graph.clone(),
        env: env.clone(),
        job_id: job_id.clone(),
        upstream: (0..execution.chains.len())
            .map(|chain| execution.upstream_stages(graph, chain))
            .collect(),
        execution: Arc::new(execution),
        blocking: Arc::new(BlockingExchange::new(
            config.spill_dir.clone(),
            config.batch_size,
            exchange_memory(config),
        )),
        control,
        live,
        restarts: restarts.clone(),
    };
    let thread = std::thread::Builder::new()
        .name("sluice-stages".into())
        .spawn(move || scheduler.run())
        .map_err(|e| Error::io("start the stage scheduler", "sluice-stages", e))?;
    Ok((thread, restarts))
}

struct Scheduler {
    config: RuntimeConfig,
    graph: JobGraph,
    env: JobEnvironment,
    job_id: JobId,
    execution: Arc<ExecutionGraph>,
    /// Per stage (chain): the stages it reads from.
    upstream: Vec<Vec<usize>>,
    blocking: Arc<BlockingExchange>,
    /// The job's control: cancelling it cancels every stage; the job's failure goes here.
    control: Arc<JobControl>,
    live: LiveMetrics,
    restarts: StageRestarts,
}

enum Stage {
    Waiting,
    Running(StageRun),
    Done,
}

/// One run of a stage's tasks.
struct StageRun {
    control: Arc<JobControl>,
    threads: Vec<JoinHandle<SlotReport>>,
    /// Slot threads that have not ended yet.
    running: usize,
    live: Vec<Arc<LiveTask>>,
}

impl Scheduler {
    fn run(self) -> SlotReport {
        let count = self.execution.chains.len();
        let mut stages: Vec<Stage> = (0..count).map(|_| Stage::Waiting).collect();
        let mut report = SlotReport::new();
        let mut finished_live: Vec<Arc<LiveTask>> = Vec::new();
        let (ended_tx, ended_rx) = crossbeam_channel::unbounded();
        loop {
            if self.control.is_cancelled() {
                self.stop_all(&mut stages);
                break;
            }
            let mut started = false;
            for stage in 0..count {
                let ready = matches!(stages[stage], Stage::Waiting)
                    && self.upstream[stage]
                        .iter()
                        .all(|&up| matches!(stages[up], Stage::Done));
                if !ready {
                    continue;
                }
                match self.start_stage(stage, None, &ended_tx) {
                    Ok(run) => stages[stage] = Stage::Running(run),
                    Err(error) => {
                        self.control.fail(error);
                        break;
                    }
                }
                started = true;
            }
            if started {
                self.publish_live(&stages, &finished_live);
            }
            if stages.iter().all(|s| matches!(s, Stage::Done)) {
                break;
            }
            let Some(stage) = wait_for_end(&ended_rx) else {
                continue;
            };
            let Stage::Running(run) = &mut stages[stage] else {
                continue;
            };
            run.running -= 1;
            if run.running > 0 {
                continue;
            }
            let Stage::Running(run) = std::mem::replace(&mut stages[stage], Stage::Waiting) else {
                unreachable!("matched above");
            };
            let StageRun {
                control,
                threads,
                live,
                ..
            } = run;
            let (reports, panicked) = join_all(threads);
            let failure = control.take_failure().or_else(|| {
                panicked.then(|| Error::Internal("a slot thread panicked outside a task".into()))
            });
            match failure {
                None if control.is_cancelled() => {
                    // Stopped without a failure of its own: only the job stops a stage, so
                    // the job stops here too (the loop ends at the top).
                    stages[stage] = Stage::Done;
                    self.control.cancel();
                }
                None => {
                    report.extend(reports);
                    finished_live.extend(live);
                    stages[stage] = Stage::Done;
                    info!(job_id = %self.job_id, stage = %self.execution.chain_name(&self.graph, stage), "stage finished");
                }
                Some(failure) => match self.may_restart(&failure) {
                    Some(delay) => {
                        let attempt = self.restarts.fetch_add(1, Ordering::AcqRel) + 1;
                        warn!(job_id = %self.job_id, stage = %self.execution.chain_name(&self.graph, stage), error = %failure, attempt, delay_ms = delay.as_millis() as u64, "stage failed; running it again from its inputs");
                        std::thread::sleep(delay);
                        match self.start_stage(stage, Some(Restore { checkpoint: None }), &ended_tx)
                        {
                            Ok(run) => stages[stage] = Stage::Running(run),
                            Err(error) => self.control.fail(error),
                        }
                        self.publish_live(&stages, &finished_live);
                    }
                    None => self.control.fail(failure),
                },
            }
        }
        report
    }

    /// The delay before running a failed stage again, if the restart strategy allows it.
    fn may_restart(&self, failure: &Error) -> Option<Duration> {
        if !failure.is_retryable() || self.control.is_cancelled() {
            return None;
        }
        match self.config.restart_strategy {
            RestartStrategy::FixedDelay { attempts, delay }
                if self.restarts.load(Ordering::Acquire) < attempts =>
            {
                Some(delay)
            }
            _ => None,
        }
    }

    /// Builds the stage's tasks and starts one thread per slot they occupy.
    fn start_stage(
        &self,
        stage: usize,
        restore: Option<Restore<'_>>,
        ended: &Sender<usize>,
    ) -> Result<StageRun> {
        let execution = &self.execution;
        let slots = execution.slots as usize;
        let control = Arc::new(JobControl::default());
        let wakers: Vec<SlotWaker> = (0..slots).map(|_| SlotWaker::new()).collect();
        for waker in &wakers {
            control.add_waker(waker.clone());
        }
        let exchange = StageExchange {
            blocking: self.blocking.clone(),
            pipelined: LocalExchange::new(self.config.channel_capacity),
            execution: self.execution.clone(),
        };
        let resources = SinkResources {
            collected: self.env.collected.clone(),
            sink_tables: self.env.sink_tables.clone(),
        };
        let mut per_slot: Vec<Vec<Task>> = (0..slots).map(|_| Vec::new()).collect();
        for placement in execution.tasks.iter().filter(|p| p.chain == stage) {
            let slot = placement.slot.0 as usize;
            per_slot[slot].push(build_task(
                &self.graph,
                execution,
                placement.chain,
                placement.subtask,
                &self.config,
                &self.env,
                &resources,
                &exchange,
                &wakers[slot],
                restore,
            )?);
        }
        let live: Vec<Arc<LiveTask>> = per_slot.iter().flatten().map(Task::live).collect();
        let ended = ended.clone();
        let threads = start_slots(&self.config, per_slot, &control, &wakers, move || {
            let _ = ended.send(stage);
        })?;
        Ok(StageRun {
            control,
            running: threads.len(),
            threads,
            live,
        })
    }

    /// Shows the tasks of finished and running stages in the job's live metrics.
    fn publish_live(&self, stages: &[Stage], finished: &[Arc<LiveTask>]) {
        let mut cells = finished.to_vec();
        for stage in stages {
            if let Stage::Running(run) = stage {
                cells.extend(run.live.iter().cloned());
            }
        }
        self.live.replace(cells);
    }

    /// Cancels every running stage and waits for its threads.
    fn stop_all(&self, stages: &mut [Stage]) {
        for stage in stages.iter() {
            if let Stage::Running(run) = stage {
                run.control.cancel();
            }
        }
        for stage in stages.iter_mut() {
            if let Stage::Running(run) = std::mem::replace(stage, Stage::Done) {
                let (_, panicked) = join_all(run.threads);
                if let Some(failure) = run.control.take_failure() {
                    self.control.fail(failure);
                } else if panicked {
                    self.control.fail(Error::Internal(
                        "a slot thread panicked outside a task".into(),
                    ));
                }
            }
        }
    }
}

/// The memory a staged job's partitions may hold before they go to files: half the managed
/// memory, as the partitions are what the job's consumers would otherwise buffer.
fn exchange_memory(config: &RuntimeConfig) -> usize {
    usize::try_from(config.managed_memory / 2).unwrap_or(usize::MAX)
}

/// The next stage one of whose slot threads ended, or `None` after a short wait.
fn wait_for_end(ended: &Receiver<usize>) -> Option<usize> {
    ended.recv_timeout(POLL).ok()
}

fn join_all(threads: Vec<JoinHandle<SlotReport>>) -> (SlotReport, bool) {
    let mut report = SlotReport::new();
    let mut panicked = false;
    for thread in threads {
        match thread.join() {
            Ok(part) => report.extend(part),
            Err(_) => panicked = true,
        }
    }
    (report, panicked)
}

/// The channels of one stage run: blocking edges read and write the job's partitions;
/// the rest (edges inside the stage) are in-process queues made fresh for each run.
struct StageExchange {
    blocking: Arc<BlockingExchange>,
    pipelined: LocalExchange,
    execution: Arc<ExecutionGraph>,
}

impl StageExchange {
    fn is_blocking(&self, id: ChannelId) -> bool {
        self.execution.blocking[id.edge as usize]
    }
}

impl ExchangeFactory for StageExchange {
    fn output(&self, id: ChannelId, producer: &SlotWaker) -> Result<Box<dyn OutputChannel>> {
        if self.is_blocking(id) {
            self.blocking.output(id, producer)
        } else {
            self.pipelined.output(id, producer)
        }
    }

    fn input(&self, id: ChannelId, consumer: &SlotWaker) -> Result<Box<dyn InputChannel>> {
        if self.is_blocking(id) {
            self.blocking.input(id, consumer)
        } else {
            self.pipelined.input(id, consumer)
        }
    }
}
