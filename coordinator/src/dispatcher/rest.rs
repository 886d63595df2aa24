//! The REST API of the Dispatcher (axum, JSON), shaped like Flink's: the same paths, field
//! names and state names, so tools written against Flink's REST API read it.
//!
//! ```text
//! GET   /overview              cluster summary
//! GET   /metrics               Prometheus text exposition (cluster, jobs, checkpoints)
//! GET   /taskmanagers          registered TaskManagers
//! GET   /jobs                  ids and states
//! GET   /jobs/overview         one line per job (name, state, times, task counts)
//! GET   /jobs/{id}             a job: vertices with their subtasks (state, host, metrics)
//! POST  /jobs                  submit: JobGraph JSON or Flink SQL text → {"jobid": ..}
//! PATCH /jobs/{id}?mode=cancel cancel a job
//! GET   /jobs/{id}/checkpoints checkpoint statistics: counts, latest, history
//! POST  /jobs/{id}/savepoints  {"target-directory": .., "cancel-job": bool} → {"request-id": ..}
//!                              (no target: the job's checkpoint directory)
//! GET   /jobs/{id}/savepoints/{trigger}  the savepoint request's status and location
//! GET   /jobs/{id}/plan        the job's chains and the exchanges between them (Flink's plan)
//! GET   /taskmanagers/{id}     one TaskManager, with the job and subtasks in each slot
//! GET   /                      the web dashboard (index.html); its files under /web/{file}
//! ```
//!
//! Errors answer `{"errors": ["..."]}` with 400 (bad input), 404 (unknown job, TaskManager or
//! dashboard file), 409 (the job already ended), 413 (body over
//! `rest.server.max-content-length`) or 503 (not enough slots).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sluice_engine::checkpoint::StatePath;
use sluice_engine::graph::{OperatorSpec, Partitioning};
use sluice_engine::ids::JobId;
use sluice_engine::runtime::{ExecutionState, now_ms};

use super::{Cluster, ClusterState, SavepointError, SubmitError};
use crate::job_master::checkpoints::SavepointStatus;
use crate::job_master::{JobMaster, JobState, TaskRecord};
use crate::resource_manager::{TaskManagerId, TaskManagerRecord};
use crate::task_metrics::{LiveTaskMetrics, TaskRates};
use sluice_engine::runtime::TaskSample;

/// The router over `cluster`, with the request body limit applied.
pub fn router(cluster: Arc<Cluster>) -> Router {
    let limit = cluster.config.max_content_length;
    Router::new()
        .route("/overview", get(overview))
        .route("/metrics", get(metrics))
        .route("/taskmanagers", get(task_managers))
        .route("/jobs", get(jobs).post(submit))
        .route("/jobs/overview", get(jobs_overview))
        .route("/jobs/{id}", get(job).patch(patch_job))
        .route("/jobs/{id}/checkpoints", get(checkpoints))
        .route("/jobs/{id}/savepoints", axum::routing::post(savepoint))
        .route("/jobs/{id}/savepoints/{trigger}", get(savepoint_status))
        .route("/jobs/{id}/plan", get(plan))
        .route("/taskmanagers/{id}", get(task_manager))
        .route("/", get(dashboard_index))
        .route("/web/{file}", get(dashboard_file))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(cluster)
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "errors": [message.into()] }))).into_response()
}

/// The Prometheus text exposition ([`super::metrics`]).
async fn metrics(State(cluster): State<Arc<Cluster>>) -> Response {
    let text = super::metrics::render(&cluster.lock());
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

async fn overview(State(cluster): State<Arc<Cluster>>) -> Json<Value> {
    let state = cluster.lock();
    let count = |s: JobState| state.jobs.values().filter(|j| j.state == s).count();
    let running = state
        .jobs
        .values()
        .filter(|j| !j.state.is_terminal())
        .count();
    Json(json!({
        "taskmanagers": state.resources.task_managers().count(),
        "slots-total": state.resources.total_slots(),
        "slots-available": state.resources.free_slots(),
        "jobs-running": running,
        "jobs-finished": count(JobState::Finished),
        "jobs-cancelled": count(JobState::Cancelled),
        "jobs-failed": count(JobState::Failed),
        "sluice-version": env!("CARGO_PKG_VERSION"),
    }))
}

async fn task_managers(State(cluster): State<Arc<Cluster>>) -> Json<Value> {
    let state = cluster.lock();
    let now = Instant::now();
    let list: Vec<Value> = state
        .resources
        .task_managers()
        .map(|r| task_manager_summary(r, now))
        .collect();
    Json(json!({ "taskmanagers": list }))
}

/// A TaskManager as `/taskmanagers` lists it: addresses, slots, heartbeat, its machine and
/// what its latest heartbeat reported (memory, exchange traffic and rates).
fn task_manager_summary(r: &TaskManagerRecord, now: Instant) -> Value {
    json!({
        "id": r.id.0,
        "path": r.rpc_address,
        "host": r.hostname,
        "dataPort": r.data_port,
        "flightPort": r.flight_port,
        "metricsPort": r.hardware.metrics_port,
        "slotsNumber": r.slots.len(),
        "freeSlots": r.free_slots(),
        "timeSinceConnection": now.saturating_duration_since(r.registered_at).as_millis() as u64,
        "timeSinceLastHeartbeat": now.saturating_duration_since(r.last_heartbeat).as_millis() as u64,
        "lastHeartbeat": r.last_heartbeat_ms,
        "hardware": {
            "cpuCores": r.hardware.cpu_cores,
            "physicalMemory": r.hardware.physical_memory_bytes,
        },
        "metrics": r.load.as_ref().map(|load| json!({
            "memory-rss-bytes": load.latest.memory_rss_bytes,
            "network-bytes-in": load.latest.network_bytes_received,
            "network-bytes-out": load.latest.network_bytes_sent,
            "network-bytes-in-per-second": load.bytes_received_per_second,
            "network-bytes-out-per-second": load.bytes_sent_per_second,
            "network-credit-stalls": load.latest.network_credit_stalls,
        })),
    })
}

async fn jobs(State(cluster): State<Arc<Cluster>>) -> Json<Value> {
    let state = cluster.lock();
    let list: Vec<Value> = state
        .jobs
        .values()
        .map(|j| json!({ "id": j.id.0, "status": j.state.as_str() }))
        .collect();
    Json(json!({ "jobs": list }))
}

/// Start, end (-1 while running) and duration of a job, as Flink writes them.
fn job_times(job: &JobMaster, now: u64) -> (u64, i64, u64) {
    let start = job.timestamps.first().map_or(0, |(_, t)| *t);
    let end = job
        .state
        .is_terminal()
        .then(|| job.timestamps.last().map_or(0, |(_, t)| *t));
    let duration = end.unwrap_or(now).saturating_sub(start);
    (start, end.map_or(-1, |e| e as i64), duration)
}

fn counts(job: &JobMaster, chain: Option<usize>) -> Value {
    let counts: BTreeMap<&str, usize> = job
        .task_counts(chain)
        .into_iter()
        .map(|(state, n)| (state.as_str(), n))
        .collect();
    json!(counts)
}

async fn jobs_overview(State(cluster): State<Arc<Cluster>>) -> Json<Value> {
    let state = cluster.lock();
    let now = now_ms();
    let list: Vec<Value> = state
        .jobs
        .values()
        .map(|j| {
            let (start, end, duration) = job_times(j, now);
            json!({
                "jid": j.id.0,
                "name": j.graph.name,
                "state": j.state.as_str(),
                "start-time": start,
                "end-time": end,
                "duration": duration,
                "tasks": counts(j, None),
            })
        })
        .collect();
    Json(json!({ "jobs": list }))
}

async fn job(State(cluster): State<Arc<Cluster>>, Path(id): Path<String>) -> Response {
    let state = cluster.lock();
    let Some(job) = state.jobs.get(&JobId(id.clone())) else {
        return error(StatusCode::NOT_FOUND, format!("no job {id}"));
    };
    let now = now_ms();
    let (start, end, duration) = job_times(job, now);
    let vertices: Vec<Value> = job
        .vertices()
        .into_iter()
        .map(|(chain, name, parallelism)| {
            let subtasks: Vec<Value> = job
                .tasks
                .iter()
                .filter(|t| t.chain == chain)
                .map(|t| {
                    // Earlier attempts of the same subtask, oldest first (after failovers).
                    let prior: Vec<Value> = job
                        .prior_attempts
                        .iter()
                        .filter_map(|tasks| {
                            tasks
                                .iter()
                                .find(|p| p.chain == t.chain && p.subtask == t.subtask)
                        })
                        .map(subtask_json)
                        .collect();
                    let mut subtask = subtask_json(t);
                    subtask["prior-attempts"] = json!(prior);
                    subtask
                })
                .collect();
            let vertex_state = vertex_state(job, chain);
            json!({
                "id": chain,
                "name": name,
                "parallelism": parallelism,
                "status": vertex_state,
                "tasks": counts(job, Some(chain)),
                "subtasks": subtasks,
                "metrics": vertex_metrics(job.tasks.iter().filter(|t| t.chain == chain), now),
            })
        })
        .collect();
    let timestamps: BTreeMap<&str, u64> = job
        .timestamps
        .iter()
        .map(|(state, at)| (state.as_str(), *at))
        .collect();
    Json(json!({
        "jid": job.id.0,
        "name": job.graph.name,
        "state": job.state.as_str(),
        "start-time": start,
        "end-time": end,
        "duration": duration,
        "now": now,
        "timestamps": timestamps,
        "failure-cause": job.failure,
        "attempt": job.attempt,
        "restarts": job.restarts.iter().map(|(at, failure)| json!({
            "timestamp": at,
            "failure": failure,
        })).collect::<Vec<_>>(),
        "restored-checkpoint": job.restored_from.as_ref().map(|(id, path)| json!({
            "id": id.0,
            "external_path": path.to_string(),
        })),
        "vertices": vertices,
        "status-counts": counts(job, None),
    }))
    .into_response()
}

/// A vertex's live metrics over its subtasks (`None` until a TaskManager has reported one):
/// records and bytes summed, rates summed over the running subtasks, busy and backpressured
/// as the highest subtask's share (as Flink shows them), idle as the mean, the watermark as
/// the lowest (`null` while a subtask has none).
fn vertex_metrics<'a>(tasks: impl Iterator<Item = &'a TaskRecord>, now: u64) -> Value {
    let tasks: Vec<&TaskRecord> = tasks.collect();
    let live: Vec<(&TaskRecord, &LiveTaskMetrics)> = tasks
        .iter()
        .filter_map(|t| t.live.as_ref().map(|l| (*t, l)))
        .collect();
    if live.is_empty() {
        return Value::Null;
    }
    let running: Vec<&LiveTaskMetrics> = live
        .iter()
        .filter(|(t, _)| !t.state.is_terminal())
        .map(|(_, l)| *l)
        .collect();
    let sum = |f: fn(&TaskSample) -> u64| live.iter().map(|(_, l)| f(&l.latest)).sum::<u64>();
    let rate = |f: fn(&TaskRates) -> f64| running.iter().map(|l| f(&l.rates)).sum::<f64>();
    let max = |f: fn(&TaskRates) -> f64| running.iter().map(|l| f(&l.rates)).fold(0.0, f64::max);
    let idle = if running.is_empty() {
        0.0
    } else {
        rate(|r| r.idle_ratio) / running.len() as f64
    };
    let watermark = if live.len() == tasks.len() {
        live.iter()
            .map(|(_, l)| l.latest.watermark)
            .collect::<Option<Vec<i64>>>()
            .and_then(|w| w.into_iter().min())
    } else {
        None
    };
    let lag = watermark
        .filter(|w| *w != i64::MAX)
        .map(|w| (now as i64).saturating_sub(w).max(0));
    let operators = |f: fn(&sluice_engine::runtime::OperatorMetrics) -> u64| {
        live.iter()
            .flat_map(|(_, l)| l.latest.operators.iter().map(move |(_, m)| f(m)))
            .sum::<u64>()
    };
    json!({
        "read-records": sum(|s| s.records_in),
        "write-records": sum(|s| s.records_out),
        "read-bytes": sum(|s| s.bytes_in),
        "write-bytes": sum(|s| s.bytes_out),
        "read-records-per-second": rate(|r| r.records_in_per_second),
        "write-records-per-second": rate(|r| r.records_out_per_second),
        "read-bytes-per-second": rate(|r| r.bytes_in_per_second),
        "write-bytes-per-second": rate(|r| r.bytes_out_per_second),
        "busy-ratio": max(|r| r.busy_ratio),
        "backpressure-ratio": max(|r| r.backpressured_ratio),
        "idle-ratio": idle,
        "watermark": watermark.filter(|w| *w != i64::MAX),
        "watermark-lag-ms": lag,
        "state-bytes": operators(|m| m.state_bytes),
        "late-records-dropped": operators(|m| m.late_records_dropped),
        "skipped-records": operators(|m| m.skipped_records),
        "source-total-records": live
            .iter()
            .map(|(_, l)| l.latest.source_total)
            .sum::<Option<u64>>(),
    })
}

/// One attempt of a subtask, in Flink's shape: state, host, timestamps per state, metrics.
fn subtask_json(t: &TaskRecord) -> Value {
    let start = t
        .entered(ExecutionState::Deploying)
        .map_or(-1, |t| t as i64);
    let end = t
        .state
        .is_terminal()
        .then(|| t.transitions.last().map_or(0, |(_, at)| *at));
    let metrics: BTreeMap<&str, Value> = t
        .metrics
        .iter()
        .map(|(operator, m)| {
            (
                operator.as_str(),
                json!({
                    "read-records": m.records_in,
                    "write-records": m.records_out,
                    "read-batches": m.batches_in,
                    "write-batches": m.batches_out,
                }),
            )
        })
        .collect();
    let timestamps: BTreeMap<&str, u64> = t
        .transitions
        .iter()
        .map(|(state, at)| (state.as_str(), *at))
        .collect();
    json!({
        "subtask": t.subtask.0,
        "status": t.state.as_str(),
        "attempt": t.attempt,
        "host": t.host,
        "taskmanager-id": t.task_manager.as_ref().map(|tm| tm.0.clone()),
        "slot": t.slot.0,
        "start-time": start,
        "end-time": end.map_or(-1, |e| e as i64),
        "timestamps": timestamps,
        "failure-cause": t.failure,
        "metrics": metrics,
        "task-metrics": t.live.as_ref().map(|l| json!({
            "read-records": l.latest.records_in,
            "write-records": l.latest.records_out,
            "read-bytes": l.latest.bytes_in,
            "write-bytes": l.latest.bytes_out,
            "busy-ms": l.latest.busy.as_millis() as u64,
            "backpressured-ms": l.latest.backpressured.as_millis() as u64,
            "idle-ms": l.latest.idle.as_millis() as u64,
            "busy-ratio": l.rates.busy_ratio,
            "backpressure-ratio": l.rates.backpressured_ratio,
            "idle-ratio": l.rates.idle_ratio,
            "read-records-per-second": l.rates.records_in_per_second,
            "write-records-per-second": l.rates.records_out_per_second,
            "watermark": l.latest.watermark.filter(|w| *w != i64::MAX),
            "reported-at": l.at_ms,
        })),
    })
}

/// A vertex's state from its subtasks', as Flink aggregates them: the earliest state any
/// subtask is in, except that one failed subtask makes the vertex FAILED.
fn vertex_state(job: &JobMaster, chain: usize) -> &'static str {
    let states = job
        .tasks
        .iter()
        .filter(|t| t.chain == chain)
        .map(|t| t.state);
    if states.clone().any(|s| s == ExecutionState::Failed) {
        return ExecutionState::Failed.as_str();
    }
    states.min().map_or("CREATED", ExecutionState::as_str)
}

async fn submit(State(cluster): State<Arc<Cluster>>, body: String) -> Response {
    let planner = cluster.clone();
    let planned = tokio::task::spawn_blocking(move || planner.plan(&body)).await;
    let planned = match planned {
        Ok(Ok(planned)) => planned,
        Ok(Err(e)) => return submit_error(e),
        Err(e) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("planning the job panicked (a bug): {e}"),
            );
        }
    };
    match cluster.submit(planned).await {
        Ok(id) => (
            StatusCode::ACCEPTED,
            Json(json!({ "jobid": id.0, "jobUrl": format!("/jobs/{}", id.0) })),
        )
            .into_response(),
        Err(e) => submit_error(e),
    }
}

fn submit_error(error: SubmitError) -> Response {
    let status = match error {
        SubmitError::Invalid(_) => StatusCode::BAD_REQUEST,
        SubmitError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    self::error(status, error.to_string())
}

/// Checkpoint statistics in Flink's shape. A job without checkpointing reports zeros and no
/// history, as Flink does.
async fn checkpoints(State(cluster): State<Arc<Cluster>>, Path(id): Path<String>) -> Response {
    let state = cluster.lock();
    let Some(job) = state.jobs.get(&JobId(id.clone())) else {
        return error(StatusCode::NOT_FOUND, format!("no job {id}"));
    };
    let Some(c) = &job.checkpoints else {
        return Json(json!({
            "counts": { "restored": 0, "total": 0, "in_progress": 0, "completed": 0, "failed": 0 },
            "latest": { "completed": null, "savepoint": null, "failed": null, "restored": null },
            "history": [],
        }))
        .into_response();
    };
    let tasks = c.task_count();
    let in_progress = c.in_progress();
    let mut history: Vec<Value> = Vec::new();
    if let Some((checkpoint, acknowledged)) = in_progress {
        history.push(json!({
            "@class": "in_progress",
            "id": checkpoint.0,
            "status": "IN_PROGRESS",
            "num_subtasks": tasks,
            "num_acknowledged_subtasks": acknowledged,
        }));
    }
    history.extend(c.history.iter().map(|r| r.to_json(tasks)));
    let completed: Vec<u64> = c
        .history
        .iter()
        .filter(|r| r.status == "COMPLETED")
        .map(|r| r.duration_ms)
        .collect();
    let sizes: Vec<u64> = c
        .history
        .iter()
        .filter(|r| r.status == "COMPLETED")
        .map(|r| r.state_size)
        .collect();
    let stats = |values: &[u64]| {
        let n = values.len().max(1) as u64;
        json!({
            "min": values.iter().min().copied().unwrap_or(0),
            "max": values.iter().max().copied().unwrap_or(0),
            "avg": values.iter().sum::<u64>() / n,
        })
    };
    let in_progress = u64::from(in_progress.is_some());
    Json(json!({
        "counts": {
            "restored": 0,
            "total": c.completed + c.failed + in_progress,
            "in_progress": in_progress,
            "completed": c.completed,
            "failed": c.failed,
        },
        "summary": {
            "end_to_end_duration": stats(&completed),
            "state_size": stats(&sizes),
        },
        "latest": {
            "completed": c.latest_completed.as_ref().map(|r| r.to_json(tasks)),
            "savepoint": c.latest_savepoint.as_ref().map(|r| r.to_json(tasks)),
            "failed": c.latest_failed.as_ref().map(|r| r.to_json(tasks)),
            "restored": null,
        },
        "history": history,
    }))
    .into_response()
}

/// Flink's savepoint trigger body.
#[derive(Deserialize, Default)]
struct SavepointBody {
    #[serde(rename = "target-directory")]
    target_directory: Option<String>,
    #[serde(rename = "cancel-job", default)]
    cancel_job: bool,
}

async fn savepoint(
    State(cluster): State<Arc<Cluster>>,
    Path(id): Path<String>,
    body: String,
) -> Response {
    let body: SavepointBody = if body.trim().is_empty() {
        SavepointBody::default()
    } else {
        match serde_json::from_str(&body) {
            Ok(body) => body,
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "savepoint request body: {e} (expected {{\"target-directory\": \"..\", \"cancel-job\": false}})"
                    ),
                );
            }
        }
    };
    // Without a target the savepoint goes into the job's checkpoint directory, as a local
    // job's does.
    let target = match body.target_directory.filter(|t| !t.is_empty()) {
        None => None,
        Some(text) => match StatePath::parse(&text) {
            Ok(target) => Some(target),
            Err(message) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("savepoint request: target-directory '{text}': {message}"),
                );
            }
        },
    };
    if let Some(target) = target
        .as_ref()
        .filter(|t| t.as_local().is_some_and(|p| !p.is_absolute()))
    {
        return error(
            StatusCode::BAD_REQUEST,
            format!(
                "savepoint request: target-directory '{target}' must be an absolute path or an \
                 s3:// URL (every process of the cluster must see it)"
            ),
        );
    }
    match cluster.trigger_savepoint(&JobId(id.clone()), target, body.cancel_job) {
        Ok(trigger) => {
            (StatusCode::ACCEPTED, Json(json!({ "request-id": trigger }))).into_response()
        }
        Err(e @ SavepointError::UnknownJob(_)) => error(StatusCode::NOT_FOUND, e.to_string()),
        Err(e @ SavepointError::Refused(_)) => error(StatusCode::CONFLICT, e.to_string()),
    }
}

/// Flink's asynchronous-operation shape: `{"status": {"id": IN_PROGRESS|COMPLETED},
/// "operation": {"location": ..} | {"failure-cause": {..}}}`.
async fn savepoint_status(
    State(cluster): State<Arc<Cluster>>,
    Path((id, trigger)): Path<(String, String)>,
) -> Response {
    match cluster.savepoint_status(&JobId(id.clone()), &trigger) {
        Err(e) => error(StatusCode::NOT_FOUND, e.to_string()),
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            format!("job {id} has no savepoint request {trigger}"),
        ),
        Ok(Some(SavepointStatus::InProgress)) => {
            Json(json!({ "status": { "id": "IN_PROGRESS" }, "operation": null })).into_response()
        }
        Ok(Some(SavepointStatus::Completed(path))) => Json(json!({
            "status": { "id": "COMPLETED" },
            "operation": { "location": path.to_string() },
        }))
        .into_response(),
        Ok(Some(SavepointStatus::Failed(reason))) => Json(json!({
            "status": { "id": "COMPLETED" },
            "operation": { "failure-cause": { "class": "SavepointFailure", "stack-trace": reason.clone(), "serialized-throwable": null, "message": reason } },
        }))
        .into_response(),
    }
}

#[derive(Deserialize, Serialize)]
struct PatchQuery {
    mode: Option<String>,
}

async fn patch_job(
    State(cluster): State<Arc<Cluster>>,
    Path(id): Path<String>,
    Query(query): Query<PatchQuery>,
) -> Response {
    match query.mode.as_deref() {
        Some("cancel") | None => {}
        Some(other) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("mode '{other}' is not supported (supported: cancel)"),
            );
        }
    }
    match cluster.cancel(&JobId(id.clone())).await {
        Ok(true) => (StatusCode::ACCEPTED, Json(json!({}))).into_response(),
        Ok(false) => error(StatusCode::CONFLICT, format!("job {id} has already ended")),
        Err(message) => error(StatusCode::NOT_FOUND, message),
    }
}

/// The web dashboard's files, built into the binary: name, content type, contents. A
/// single-page app of plain HTML, CSS and JavaScript modules (no build step) that reads the
/// REST API above.
const DASHBOARD_FILES: &[(&str, &str, &str)] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_str!("web/index.html"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("web/style.css"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("web/app.js"),
    ),
    (
        "api.js",
        "text/javascript; charset=utf-8",
        include_str!("web/api.js"),
    ),
    (
        "format.js",
        "text/javascript; charset=utf-8",
        include_str!("web/format.js"),
    ),
    (
        "graph.js",
        "text/javascript; charset=utf-8",
        include_str!("web/graph.js"),
    ),
    (
        "pages.js",
        "text/javascript; charset=utf-8",
        include_str!("web/pages.js"),
    ),
    (
        "job.js",
        "text/javascript; charset=utf-8",
        include_str!("web/job.js"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_str!("web/favicon.svg"),
    ),
];

/// One of [`DASHBOARD_FILES`], or 404 naming the files there are.
fn dashboard_response(name: &str) -> Response {
    match DASHBOARD_FILES.iter().find(|(file, _, _)| *file == name) {
        Some((_, content_type, body)) => (
            [
                (axum::http::header::CONTENT_TYPE, *content_type),
                // The files change only with the binary; revalidating is cheap on loopback and
                // keeps a browser from running an old script against a new API.
                (axum::http::header::CACHE_CONTROL, "no-cache"),
            ],
            *body,
        )
            .into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            format!(
                "the dashboard has no file '{name}' (it has: {})",
                DASHBOARD_FILES
                    .iter()
                    .map(|(file, _, _)| *file)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ),
    }
}

async fn dashboard_index() -> Response {
    dashboard_response("index.html")
}

async fn dashboard_file(Path(file): Path<String>) -> Response {
    dashboard_response(&file)
}

/// `GET /jobs/{id}/plan`: the job's plan in Flink's shape.
async fn plan(State(cluster): State<Arc<Cluster>>, Path(id): Path<String>) -> Response {
    let state = cluster.lock();
    let Some(job) = state.jobs.get(&JobId(id.clone())) else {
        return error(StatusCode::NOT_FOUND, format!("no job {id}"));
    };
    Json(plan_json(job)).into_response()
}

/// The job's plan as Flink's `/jobs/{id}/plan` writes it: one node per chain of the
/// ExecutionGraph (the vertices `/jobs/{id}` lists, with the same ids), and per node the
/// exchanges that feed it, with their partitioning as Flink's ship strategy. Edges inside a
/// chain are direct calls and are not listed. The runtime mode is not recorded in the JobGraph,
/// so the plan has no `type`.
fn plan_json(job: &JobMaster) -> Value {
    let graph = &job.graph;
    let execution = &job.execution;
    let nodes: Vec<Value> = execution
        .chains
        .iter()
        .enumerate()
        .map(|(chain, members)| {
            let vertices = members.vertices.iter().map(|&v| graph.vertex(v));
            let operator = vertices
                .clone()
                .map(|v| v.name.as_str())
                .collect::<Vec<_>>()
                .join(" -> ");
            let description = vertices
                .map(|v| match &v.operator {
                    OperatorSpec::Source { connector, .. } => {
                        format!("Source: {} ({})", v.name, connector.name())
                    }
                    OperatorSpec::Sink { connector } => {
                        format!("Sink: {} ({})", v.name, connector.name())
                    }
                    // Planned operators are named after their kind ("Project-2").
                    operator if v.name.starts_with(operator.kind_name()) => v.name.clone(),
                    operator => format!("{}: {}", operator.kind_name(), v.name),
                })
                .collect::<Vec<_>>()
                .join(" -> ");
            let inputs: Vec<Value> = execution
                .exchange_edges
                .iter()
                .filter_map(|&edge| graph.edges().get(edge))
                .filter(|edge| execution.chain_of.get(edge.target.0 as usize) == Some(&chain))
                .enumerate()
                .map(|(num, edge)| {
                    let mut input = json!({
                        "num": num,
                        "id": execution.chain_of.get(edge.source.0 as usize),
                        "ship_strategy": edge.partitioning.name(),
                        "exchange": "pipelined_bounded",
                        "input_index": edge.input_index,
                    });
                    if let Partitioning::Hash { keys } = &edge.partitioning {
                        input["keys"] = json!(keys);
                    }
                    input
                })
                .collect();
            let mut node = json!({
                "id": chain,
                "parallelism": members.parallelism,
                "operator": operator,
                "operator_strategy": "",
                "description": description,
            });
            // Flink leaves `inputs` out of a node without any (a source).
            if !inputs.is_empty() {
                node["inputs"] = json!(inputs);
            }
            node
        })
        .collect();
    json!({
        "plan": {
            "jid": job.id.0,
            "name": graph.name,
            "nodes": nodes,
        }
    })
}

/// `GET /taskmanagers/{id}`: one TaskManager and its slots.
async fn task_manager(State(cluster): State<Arc<Cluster>>, Path(id): Path<String>) -> Response {
    let state = cluster.lock();
    let Some(record) = state.resources.get(&TaskManagerId(id.clone())) else {
        return error(
            StatusCode::NOT_FOUND,
            format!("no TaskManager {id} is registered"),
        );
    };
    Json(task_manager_json(&state, record, Instant::now())).into_response()
}

/// A TaskManager's details in the shape of `/taskmanagers` entries, with `slots`: per slot,
/// whether it is free, the job holding it and the subtasks that job runs there.
fn task_manager_json(state: &ClusterState, record: &TaskManagerRecord, now: Instant) -> Value {
    let slots: Vec<Value> = record
        .slots
        .iter()
        .enumerate()
        .map(|(index, holder)| {
            let Some(job_id) = holder else {
                return json!({ "index": index, "free": true, "jobid": null, "tasks": [] });
            };
            let job = state.jobs.get(job_id);
            let tasks: Vec<Value> = job
                .map(|job| {
                    slot_tasks(job, record, index)
                        .into_iter()
                        .map(|t| {
                            json!({
                                "vertex": t.chain,
                                "vertex-name": job.execution.chain_name(&job.graph, t.chain),
                                "subtask": t.subtask.0,
                                "attempt": t.attempt,
                                "status": t.state.as_str(),
                            })
                        })
                        .collect()
                })
                .unwrap_or_default();
            json!({
                "index": index,
                "free": false,
                "jobid": job_id.0,
                "job-name": job.map(|j| j.graph.name.as_str()),
                "tasks": tasks,
            })
        })
        .collect();
    let mut json = task_manager_summary(record, now);
    json["slots"] = json!(slots);
    json
}

/// The current attempt's tasks of `job` in slot `index` of the TaskManager `record`.
///
/// The JobMaster records each task's TaskManager and its slot in the job's ExecutionGraph, not
/// the TaskManager's slot. The ResourceManager hands a job a TaskManager's free slots in
/// ascending order and the scheduler places ExecutionGraph slot `i` on the `i`-th slot handed
/// out, so on one TaskManager the job's ExecutionGraph slots, ascending, occupy the slots it
/// holds there, ascending. When the two counts differ (the job is between attempts) no task is
/// named rather than a wrong one.
fn slot_tasks<'a>(
    job: &'a JobMaster,
    record: &TaskManagerRecord,
    index: usize,
) -> Vec<&'a TaskRecord> {
    let held: Vec<usize> = record
        .slots
        .iter()
        .enumerate()
        .filter(|(_, holder)| holder.as_ref() == Some(&job.id))
        .map(|(i, _)| i)
        .collect();
    let here = |t: &&TaskRecord| t.task_manager.as_ref() == Some(&record.id);
    let execution_slots: BTreeSet<u32> = job.tasks.iter().filter(here).map(|t| t.slot.0).collect();
    if execution_slots.len() != held.len() {
        return Vec::new();
    }
    let Some(position) = held.iter().position(|&i| i == index) else {
        return Vec::new();
    };
    let Some(&slot) = execution_slots.iter().nth(position) else {
        return Vec::new();
    };
    job.tasks
        .iter()
        .filter(here)
        .filter(|t| t.slot.0 == slot)
        .collect()
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use axum::body::Body;
    use axum::http::Request;
    use sluice_engine::ids::SlotId;
    use tower::ServiceExt;

    use super::*;
    use crate::dispatcher::JobManagerConfig;
    use crate::resource_manager::{AllocatedSlot, SlotOffer};

    /// Nexmark bids counted per auction in tumbling windows, at parallelism 2: the source chain
    /// and the window aggregation's chain, joined by a hash exchange on the auction.
    const WINDOW_JOB: &str = "
SET 'parallelism.default' = '2';
CREATE TABLE bid (
  auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, url VARCHAR,
  dateTime TIMESTAMP(3), extra VARCHAR,
  WATERMARK FOR dateTime AS dateTime - INTERVAL '4' SECOND
) WITH ('connector' = 'nexmark', 'table' = 'bid', 'events' = '1000');
CREATE TABLE counts (auction BIGINT, bids BIGINT) WITH ('connector' = 'blackhole');
INSERT INTO counts
SELECT auction, COUNT(*) FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '2' SECOND))
GROUP BY auction, window_start, window_end;
";

    fn window_job() -> JobMaster {
        let mut session = sluice_engine::sql::Session::new(sluice_engine::sql::SessionConfig {
            parallelism: 1,
            ..Default::default()
        });
        let (graph, _) = session.plan_job(WINDOW_JOB).unwrap();
        JobMaster::new(JobId("j1".into()), graph, 1)
    }

    #[test]
    fn the_plan_has_a_node_per_chain_and_the_exchanges_between_them() {
        let job = window_job();
        let plan = plan_json(&job);
        let nodes = plan["plan"]["nodes"].as_array().unwrap();
        assert_eq!(plan["plan"]["jid"], "j1");
        assert_eq!(nodes.len(), job.execution.chains.len(), "{plan:#}");
        assert_eq!(nodes.len(), 2, "{plan:#}");
        for (index, node) in nodes.iter().enumerate() {
            assert_eq!(node["id"], index);
            assert_eq!(node["parallelism"], 2);
            assert_eq!(
                node["operator"],
                job.execution.chain_name(&job.graph, index),
                "{plan:#}"
            );
        }
        assert!(
            nodes[0]["description"]
                .as_str()
                .unwrap()
                .contains("(nexmark)"),
            "{plan:#}"
        );
        assert!(nodes[0].get("inputs").is_none(), "a source has no inputs");
        let inputs = nodes[1]["inputs"].as_array().unwrap();
        assert_eq!(inputs.len(), 1, "{plan:#}");
        assert_eq!(inputs[0]["id"], 0);
        assert_eq!(inputs[0]["num"], 0);
        assert_eq!(inputs[0]["ship_strategy"], "HASH");
        assert_eq!(inputs[0]["exchange"], "pipelined_bounded");
        assert_eq!(inputs[0]["keys"], json!(["auction"]), "{plan:#}");
    }

    #[test]
    fn a_task_manager_names_the_job_and_subtasks_in_each_slot() {
        let mut state = ClusterState::default();
        let tm = TaskManagerId("tm-a".into());
        state.resources.register(
            SlotOffer {
                id: tm.clone(),
                rpc_address: "127.0.0.1:7001".into(),
                data_port: 7002,
                flight_port: 0,
                hostname: "localhost".into(),
                hardware: Default::default(),
                slots: 3,
            },
            Instant::now(),
            5,
        );
        let mut job = window_job();
        let slots = state
            .resources
            .allocate(&job.id, job.slots_needed())
            .unwrap();
        assert_eq!(
            slots,
            vec![
                AllocatedSlot {
                    task_manager: tm.clone(),
                    slot: SlotId(0)
                },
                AllocatedSlot {
                    task_manager: tm.clone(),
                    slot: SlotId(1)
                },
            ]
        );
        job.schedule(
            &slots,
            &["127.0.0.1:7001".into(), "127.0.0.1:7001".into()],
            10,
        );
        state.jobs.insert(job.id.clone(), job);

        let record = state.resources.get(&tm).unwrap();
        let json = task_manager_json(&state, record, Instant::now());
        assert_eq!(json["id"], "tm-a");
        assert_eq!(json["slotsNumber"], 3);
        assert_eq!(json["freeSlots"], 1);
        assert_eq!(json["lastHeartbeat"], 5);
        let slots = json["slots"].as_array().unwrap();
        assert_eq!(slots.len(), 3);
        for (index, slot) in slots.iter().take(2).enumerate() {
            assert_eq!(slot["free"], false);
            assert_eq!(slot["jobid"], "j1");
            let tasks = slot["tasks"].as_array().unwrap();
            // Slot sharing: one subtask of each of the two chains.
            assert_eq!(tasks.len(), 2, "{json:#}");
            assert!(tasks.iter().all(|t| t["subtask"] == index), "{json:#}");
            assert!(tasks.iter().all(|t| t["status"] == "SCHEDULED"), "{json:#}");
        }
        assert_eq!(
            slots[2],
            json!({ "index": 2, "free": true, "jobid": null, "tasks": [] })
        );
    }

    async fn get(router: Router, path: &str) -> (StatusCode, String, String) {
        let response = router
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let content_type = response
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (
            status,
            content_type,
            String::from_utf8(body.to_vec()).unwrap(),
        )
    }

    #[tokio::test]
    async fn the_dashboard_is_served_with_its_content_types_and_unknown_ids_are_404() {
        let cluster = Arc::new(Cluster::new(
            JobManagerConfig::default(),
            "127.0.0.1:1".into(),
        ));
        let app = router(cluster);
        let (status, content_type, body) = get(app.clone(), "/").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(content_type, "text/html; charset=utf-8");
        assert!(body.contains("/web/app.js"), "{body}");
        let (status, content_type, _) = get(app.clone(), "/web/app.js").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(content_type, "text/javascript; charset=utf-8");
        let (status, content_type, _) = get(app.clone(), "/web/style.css").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(content_type, "text/css; charset=utf-8");
        let (status, _, body) = get(app.clone(), "/web/missing.js").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(body.contains("no file 'missing.js'"), "{body}");
        let (status, _, body) = get(app.clone(), "/jobs/nope/plan").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body, r#"{"errors":["no job nope"]}"#);
        let (status, _, body) = get(app, "/taskmanagers/nope").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(body.contains("no TaskManager nope"), "{body}");
    }

    /// Every file the page loads (`/web/…` in index.html, `./….js` imports) is served.
    #[test]
    fn every_file_the_dashboard_loads_is_built_in() {
        let served: Vec<&str> = DASHBOARD_FILES.iter().map(|(name, _, _)| *name).collect();
        for (file, _, text) in DASHBOARD_FILES {
            for marker in ["/web/", "from './"] {
                for (at, _) in text.match_indices(marker) {
                    let rest = &text[at + marker.len()..];
                    let end = rest
                        .find(['"', '\''])
                        .expect("a quoted path ends with its quote");
                    let name = &rest[..end];
                    if marker == "/web/" && name.is_empty() {
                        continue;
                    }
                    assert!(
                        served.contains(&name),
                        "{file} loads '{name}', which DASHBOARD_FILES does not list"
                    );
                }
            }
        }
    }
}
