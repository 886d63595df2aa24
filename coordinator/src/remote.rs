//! The remote environment: runs a DataStream program's job on a running cluster.
//!
//! [`RemoteEnvironment`] builds the program's [`StreamEnvironment`] into a JobGraph, sends it
//! as JSON to the JobManager's REST API (`POST /jobs`) and follows the job through
//! `GET /jobs/{id}`. Only the graph travels: built-in operators run on any TaskManager, and
//! named user functions ([`UserFunctions`](sluice_engine::api::UserFunctions)) run on
//! TaskManagers started from a binary that registers them (see `docs/user-code.md`). Closures
//! given to `map_batches`/`transform`/`process` exist only in the submitting program, so a
//! graph holding one is refused here, before anything is sent.
//!
//! The calls are blocking (one HTTP request each, [`crate::rest_client`]); a program calls
//! them from its own thread, never from an async runtime's.

use std::time::{Duration, Instant};

use sluice_engine::api::StreamEnvironment;
use sluice_engine::graph::JobGraph;
use sluice_engine::ids::JobId;

use crate::rest_client::{RestError, request};

/// What submitting or following a job can fail with.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// The program's graph is invalid.
    #[error("build the job: {0}")]
    Build(#[source] sluice_engine::Error),
    /// The graph runs a closure, which exists only in this program.
    #[error(
        "vertex '{vertex}' runs a closure that exists only in the submitting program; a cluster \
         runs built-in operators and named user functions: register it with \
         `UserFunctions` and apply it with `DataStream::user_function`"
    )]
    Closure { vertex: String },
    /// The JobManager could not be reached or answered malformed HTTP.
    #[error(transparent)]
    Rest(#[from] RestError),
    /// The JobManager refused the request (4xx: fix the job; 503: retry later).
    #[error("{action}: {message} (HTTP {status})")]
    Rejected {
        action: String,
        status: u16,
        message: String,
    },
    /// The JobManager answered something this client does not understand (a bug on one side).
    #[error("{action}: unexpected answer from the JobManager: {body}")]
    Unexpected { action: String, body: String },
    /// The job had not ended when the wait gave up.
    #[error("job {job_id} had not ended after {waited:?} (state {state})")]
    Timeout {
        job_id: JobId,
        waited: Duration,
        state: String,
    },
}

/// A job's state as the JobManager reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobStatus {
    pub job_id: JobId,
    /// Flink's job status name: CREATED, RUNNING, FAILING, FAILED, CANCELLING, CANCELED,
    /// FINISHED.
    pub state: String,
    /// Why the job failed, when it did.
    pub failure: Option<String>,
}

impl JobStatus {
    /// FINISHED, FAILED or CANCELED: the job will not change any more.
    pub fn is_terminal(&self) -> bool {
        matches!(self.state.as_str(), "FINISHED" | "FAILED" | "CANCELED")
    }
}

/// A cluster to run jobs on, by its JobManager's REST address.
///
/// ```no_run
/// use sluice_coordinator::remote::RemoteEnvironment;
/// use sluice_engine::api::StreamEnvironment;
/// # fn build(env: &StreamEnvironment) {}
/// let env = StreamEnvironment::new("my-job").with_parallelism(2);
/// build(&env);
/// let cluster = RemoteEnvironment::new("http://127.0.0.1:8081");
/// let job_id = cluster.submit(&env)?;
/// let status = cluster.wait(&job_id, std::time::Duration::from_secs(600))?;
/// assert_eq!(status.state, "FINISHED");
/// # Ok::<(), sluice_coordinator::remote::RemoteError>(())
/// ```
#[derive(Debug, Clone)]
pub struct RemoteEnvironment {
    url: String,
    poll_interval: Duration,
}

impl RemoteEnvironment {
    /// The cluster whose JobManager's REST API listens at `url` ("http://host:port").
    pub fn new(url: impl Into<String>) -> Self {
        RemoteEnvironment {
            url: url.into(),
            poll_interval: Duration::from_millis(200),
        }
    }

    /// How often [`RemoteEnvironment::wait`] asks for the job's state; default 200 ms.
    pub fn with_poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// Builds `env`'s job and submits it; returns the job id once the JobManager has deployed
    /// it (a deployment failure shows as a FAILED job, not as an error here).
    pub fn submit(&self, env: &StreamEnvironment) -> Result<JobId, RemoteError> {
        let (graph, _registry) = env.build().map_err(RemoteError::Build)?;
        self.submit_graph(&graph)
    }

    /// Submits a JobGraph.
    pub fn submit_graph(&self, graph: &JobGraph) -> Result<JobId, RemoteError> {
        if let Some(vertex) = graph.closure_vertex() {
            return Err(RemoteError::Closure {
                vertex: vertex.name.clone(),
            });
        }
        let json = graph.to_json().map_err(RemoteError::Build)?;
        let action = format!("submit job '{}' to {}", graph.name, self.url);
        let response = request(
            &self.url,
            "POST",
            "/jobs",
            Some(("application/json", json.as_bytes())),
        )?;
        if response.status != 202 {
            return Err(RemoteError::Rejected {
                action,
                status: response.status,
                message: response.error_message(),
            });
        }
        response
            .json()
            .ok()
            .and_then(|v| v["jobid"].as_str().map(|id| JobId(id.to_string())))
            .ok_or(RemoteError::Unexpected {
                action,
                body: response.body,
            })
    }

    /// The job's current state.
    pub fn status(&self, job_id: &JobId) -> Result<JobStatus, RemoteError> {
        let action = format!("get job {job_id} from {}", self.url);
        let response = request(&self.url, "GET", &format!("/jobs/{job_id}"), None)?;
        if response.status != 200 {
            return Err(RemoteError::Rejected {
                action,
                status: response.status,
                message: response.error_message(),
            });
        }
        let json = response.json().ok();
        let state = json
            .as_ref()
            .and_then(|v| v["state"].as_str().map(str::to_string));
        let Some(state) = state else {
            return Err(RemoteError::Unexpected {
                action,
                body: response.body,
            });
        };
        let failure = json
            .as_ref()
            .and_then(|v| v["failure-cause"].as_str().map(str::to_string));
        Ok(JobStatus {
            job_id: job_id.clone(),
            state,
            failure,
        })
    }

    /// Polls the job's state until it ends (FINISHED, FAILED or CANCELED) or `timeout` passes.
    pub fn wait(&self, job_id: &JobId, timeout: Duration) -> Result<JobStatus, RemoteError> {
        let start = Instant::now();
        loop {
            let status = self.status(job_id)?;
            if status.is_terminal() {
                return Ok(status);
            }
            if start.elapsed() >= timeout {
                return Err(RemoteError::Timeout {
                    job_id: job_id.clone(),
                    waited: start.elapsed(),
                    state: status.state,
                });
            }
            std::thread::sleep(self.poll_interval);
        }
    }

    /// Asks the JobManager to cancel the job (it ends as CANCELED; [`RemoteEnvironment::wait`]
    /// sees that).
    pub fn cancel(&self, job_id: &JobId) -> Result<(), RemoteError> {
        let response = request(
            &self.url,
            "PATCH",
            &format!("/jobs/{job_id}?mode=cancel"),
            None,
        )?;
        if response.status != 202 {
            return Err(RemoteError::Rejected {
                action: format!("cancel job {job_id} on {}", self.url),
                status: response.status,
                message: response.error_message(),
            });
        }
        Ok(())
    }
}
