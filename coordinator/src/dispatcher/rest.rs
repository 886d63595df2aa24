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
//! ```
//!
//! Errors answer `{"errors": ["..."]}` with 400 (bad input), 404 (unknown job), 409 (the job
//! already ended), 413 (body over `rest.server.max-content-length`) or 503 (not enough slots).

use std::collections::BTreeMap;
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
use sluice_engine::ids::JobId;
use sluice_engine::runtime::{ExecutionState, now_ms};

use super::{Cluster, SavepointError, SubmitError};
use crate::job_master::checkpoints::SavepointStatus;
use crate::job_master::{JobMaster, JobState, TaskRecord};

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
        .map(|r| {
            json!({
                "id": r.id.0,
                "path": r.rpc_address,
                "host": r.hostname,
                "dataPort": r.data_port,
                "flightPort": r.flight_port,
                "slotsNumber": r.slots.len(),
                "freeSlots": r.free_slots(),
                "timeSinceConnection": now.saturating_duration_since(r.registered_at).as_millis() as u64,
                "timeSinceLastHeartbeat": now.saturating_duration_since(r.last_heartbeat).as_millis() as u64,
                "lastHeartbeat": r.last_heartbeat_ms,
            })
        })
        .collect();
    Json(json!({ "taskmanagers": list }))
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
