//! The JobManager process (`sluice jobmanager`): the Dispatcher's REST API, the
//! ResourceManager and JobMaster RPC services, and the heartbeat monitor, on one tokio runtime.
//!
//! It prints `rpc listening on ADDR` and `rest listening on ADDR` on stdout once bound (port 0
//! picks a free port), and shuts down cleanly on SIGTERM or SIGINT.
//!
//! [`run_application`] is the application cluster (`sluice application`): the same JobManager
//! dedicated to one job, which it submits once TaskManagers offer enough slots and which it
//! outlives only until the job ends.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_engine::ids::JobId;
use sluice_engine::runtime::now_ms;
use tonic::{Request, Response, Status};
use tracing::{info, warn};

use crate::dispatcher::{Cluster, JobManagerConfig, PlannedJob, SubmitError, rest};
use crate::job_master::{self, JobState};
use crate::resource_manager::{SlotOffer, TaskManagerId};
use crate::rpc::proto;
use crate::rpc::proto::job_master_server::{JobMaster, JobMasterServer};
use crate::rpc::proto::resource_manager_server::{ResourceManager, ResourceManagerServer};

/// Where the JobManager listens.
#[derive(Debug, Clone)]
pub struct JobManagerAddresses {
    pub rpc: SocketAddr,
    pub rest: SocketAddr,
}

/// The ResourceManager RPC service over the cluster state.
struct ResourceManagerService {
    cluster: Arc<Cluster>,
}

#[tonic::async_trait]
impl ResourceManager for ResourceManagerService {
    async fn register_task_manager(
        &self,
        request: Request<proto::RegisterTaskManagerRequest>,
    ) -> Result<Response<proto::RegisterTaskManagerResponse>, Status> {
        let r = request.into_inner();
        if r.slots == 0 {
            return Err(Status::invalid_argument(
                "a TaskManager needs at least one slot",
            ));
        }
        let id = TaskManagerId(r.task_manager_id.clone());
        self.cluster.lock().resources.register(
            SlotOffer {
                id: id.clone(),
                rpc_address: r.rpc_address.clone(),
                data_port: r.data_port,
                hostname: r.hostname,
                slots: r.slots as usize,
            },
            Instant::now(),
            now_ms(),
        );
        info!(task_manager = %id, address = %r.rpc_address, slots = r.slots, "TaskManager registered");
        Ok(Response::new(proto::RegisterTaskManagerResponse {
            registration_id: format!("{}@{}", id, now_ms()),
            heartbeat_interval_ms: self.cluster.config.heartbeat_interval.as_millis() as u64,
        }))
    }

    async fn heartbeat(
        &self,
        request: Request<proto::HeartbeatRequest>,
    ) -> Result<Response<proto::HeartbeatResponse>, Status> {
        let r = request.into_inner();
        let known = self.cluster.lock().resources.heartbeat(
            &TaskManagerId(r.task_manager_id),
            Instant::now(),
            now_ms(),
        );
        Ok(Response::new(proto::HeartbeatResponse { known }))
    }

    async fn disconnect_task_manager(
        &self,
        request: Request<proto::DisconnectTaskManagerRequest>,
    ) -> Result<Response<proto::DisconnectTaskManagerResponse>, Status> {
        let r = request.into_inner();
        self.cluster
            .disconnect(&TaskManagerId(r.task_manager_id), &r.reason)
            .await;
        Ok(Response::new(proto::DisconnectTaskManagerResponse {}))
    }
}

/// The JobMaster RPC service: task state reports of every job.
struct JobMasterService {
    cluster: Arc<Cluster>,
}

#[tonic::async_trait]
impl JobMaster for JobMasterService {
    async fn update_task_state(
        &self,
        request: Request<proto::UpdateTaskStateRequest>,
    ) -> Result<Response<proto::UpdateTaskStateResponse>, Status> {
        self.cluster.task_state(request.into_inner()).await?;
        Ok(Response::new(proto::UpdateTaskStateResponse {}))
    }

    async fn acknowledge_checkpoint(
        &self,
        request: Request<proto::AcknowledgeCheckpointRequest>,
    ) -> Result<Response<proto::AcknowledgeCheckpointResponse>, Status> {
        self.cluster
            .acknowledge_checkpoint(request.into_inner())
            .await?;
        Ok(Response::new(proto::AcknowledgeCheckpointResponse {}))
    }
}

/// Runs the JobManager until `shutdown` resolves. `on_bound` sees the bound addresses.
pub async fn run(
    config: JobManagerConfig,
    rpc: SocketAddr,
    rest: SocketAddr,
    on_bound: impl FnOnce(&JobManagerAddresses),
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve(config, rpc, rest, |bound, _| on_bound(bound), shutdown).await
}

/// [`run`], with `on_bound` also handed the cluster state, for a driver running in the same
/// process (the application cluster).
async fn serve(
    config: JobManagerConfig,
    rpc: SocketAddr,
    rest: SocketAddr,
    on_bound: impl FnOnce(&JobManagerAddresses, &Arc<Cluster>),
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let rpc_listener = tokio::net::TcpListener::bind(rpc)
        .await
        .map_err(|e| std::io::Error::other(format!("bind rpc address {rpc}: {e}")))?;
    let rest_listener = tokio::net::TcpListener::bind(rest)
        .await
        .map_err(|e| std::io::Error::other(format!("bind rest address {rest}: {e}")))?;
    let addresses = JobManagerAddresses {
        rpc: rpc_listener.local_addr()?,
        rest: rest_listener.local_addr()?,
    };
    let cluster = Arc::new(Cluster::new(config, addresses.rpc.to_string()));
    on_bound(&addresses, &cluster);

    let (stop, _) = tokio::sync::broadcast::channel::<()>(1);
    let rpc_server = {
        let mut stopped = stop.subscribe();
        tonic::transport::Server::builder()
            .add_service(ResourceManagerServer::new(ResourceManagerService {
                cluster: cluster.clone(),
            }))
            .add_service(JobMasterServer::new(JobMasterService {
                cluster: cluster.clone(),
            }))
            .serve_with_incoming_shutdown(
                tonic::transport::server::TcpIncoming::from(rpc_listener),
                async move {
                    let _ = stopped.recv().await;
                },
            )
    };
    let rest_server = {
        let mut stopped = stop.subscribe();
        axum::serve(rest_listener, rest::router(cluster.clone())).with_graceful_shutdown(
            async move {
                let _ = stopped.recv().await;
            },
        )
    };
    let monitor = {
        let cluster = cluster.clone();
        let mut stopped = stop.subscribe();
        // Checks a few times per timeout, so a lost TaskManager goes within ~1.25 timeouts.
        let period =
            (cluster.config.heartbeat_timeout / 4).max(std::time::Duration::from_millis(20));
        async move {
            let mut ticks = tokio::time::interval(period);
            loop {
                tokio::select! {
                    _ = ticks.tick() => cluster.expire_task_managers().await,
                    _ = stopped.recv() => break,
                }
            }
        }
    };
    let signal = {
        let stop = stop.clone();
        async move {
            shutdown.await;
            info!("shutting down");
            let _ = stop.send(());
        }
    };
    let (rpc_result, rest_result, (), ()) = tokio::join!(rpc_server, rest_server, monitor, signal);
    rpc_result.map_err(|e| std::io::Error::other(format!("rpc server: {e}")))?;
    rest_result.map_err(|e| std::io::Error::other(format!("rest server: {e}")))?;
    info!("jobmanager stopped");
    Ok(())
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
pub async fn termination_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Settings of an application cluster beyond the JobManager's.
#[derive(Debug, Clone)]
pub struct ApplicationConfig {
    /// How long to wait for TaskManagers to offer the slots the job needs
    /// (`slot.request.timeout`, as Flink's); default 5 min.
    pub slot_request_timeout: Duration,
}

impl Default for ApplicationConfig {
    fn default() -> Self {
        ApplicationConfig {
            slot_request_timeout: Duration::from_secs(300),
        }
    }
}

/// What an application cluster reports while it runs.
#[derive(Debug, Clone)]
pub enum ApplicationEvent {
    /// Fewer slots are free than the job needs; reported once, when the wait starts.
    WaitingForSlots { needed: usize, available: usize },
    /// The job was submitted.
    Submitted(JobId),
}

/// How the application's job ended.
#[derive(Debug, Clone)]
pub struct ApplicationOutcome {
    pub job_id: JobId,
    pub name: String,
    /// FINISHED, FAILED or CANCELED.
    pub state: JobState,
    /// Why the job failed, when it did.
    pub failure: Option<String>,
    /// From submission (deployment included) to the end, in milliseconds.
    pub duration_ms: u64,
}

/// Why an application cluster ended without its job ending.
#[derive(Debug, thiserror::Error)]
pub enum ApplicationError {
    /// A server could not start or failed (a port in use, say).
    #[error("jobmanager: {0}")]
    Server(#[from] std::io::Error),
    /// TaskManagers did not offer enough slots in time: start more of them, or with more
    /// slots, or lower the job's parallelism.
    #[error(
        "job '{name}' needs {needed} slot(s) but only {available} were free after waiting \
         {} s for TaskManagers (slot.request.timeout)",
        waited.as_secs_f64()
    )]
    NoSlots {
        name: String,
        needed: usize,
        available: usize,
        waited: Duration,
    },
    /// The Dispatcher refused the job.
    #[error("submit job '{name}': {source}")]
    Submit {
        name: String,
        #[source]
        source: SubmitError,
    },
    /// SIGTERM or SIGINT arrived before the job ended; the job was cancelled.
    #[error("interrupted: the application cluster stopped and cancelled its job")]
    Interrupted,
}

/// How often the application driver looks at the ResourceManager's free slots and at its
/// job's state. The Dispatcher has no notification of either; both change on the scale of
/// heartbeats and task life cycles (hundreds of ms and more), so 100 ms adds little.
const APPLICATION_POLL: Duration = Duration::from_millis(100);

/// Runs an application cluster: a JobManager (as [`run`]) that waits until its TaskManagers
/// offer the slots `job` needs, submits it, and returns how it ended once it is FINISHED,
/// FAILED or CANCELED (the servers stop then). `job` is planned by the caller, so a bad script
/// fails before any port is bound. `shutdown` (SIGTERM, SIGINT) cancels the job and ends with
/// [`ApplicationError::Interrupted`].
///
/// TaskManagers are not told to stop: like a session cluster's after its JobManager went, they
/// keep retrying to register until they are stopped themselves.
#[expect(
    clippy::too_many_arguments,
    reason = "the JobManager's arguments plus the job and its two callbacks; a struct would only rename them"
)]
pub async fn run_application(
    config: JobManagerConfig,
    application: ApplicationConfig,
    job: PlannedJob,
    rpc: SocketAddr,
    rest: SocketAddr,
    on_bound: impl FnOnce(&JobManagerAddresses),
    mut on_event: impl FnMut(ApplicationEvent),
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<ApplicationOutcome, ApplicationError> {
    let (cluster_tx, cluster_rx) = tokio::sync::oneshot::channel::<Arc<Cluster>>();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = serve(
        config,
        rpc,
        rest,
        move |bound, cluster| {
            on_bound(bound);
            let _ = cluster_tx.send(cluster.clone());
        },
        async move {
            let _ = stop_rx.await;
        },
    );
    let driver = async move {
        // No cluster: the servers failed to start, and `server` returns why.
        let cluster = cluster_rx.await.ok()?;
        let outcome = tokio::select! {
            outcome = drive_application(&cluster, application, job, &mut on_event) => outcome,
            () = shutdown => {
                cancel_all(&cluster).await;
                Err(ApplicationError::Interrupted)
            }
        };
        let _ = stop_tx.send(());
        Some(outcome)
    };
    let (served, driven) = tokio::join!(server, driver);
    served?;
    match driven {
        Some(outcome) => outcome,
        None => Err(ApplicationError::Server(std::io::Error::other(
            "the servers stopped before the job was submitted",
        ))),
    }
}

/// Waits for slots, submits the job and waits for its end.
async fn drive_application(
    cluster: &Arc<Cluster>,
    application: ApplicationConfig,
    planned: PlannedJob,
    on_event: &mut impl FnMut(ApplicationEvent),
) -> Result<ApplicationOutcome, ApplicationError> {
    let graph = &planned.graph;
    let name = graph.name.clone();
    // As the Dispatcher counts them, so the wait ends exactly when a submission can succeed.
    let needed =
        job_master::JobMaster::new(JobId(String::new()), graph.clone(), now_ms()).slots_needed();
    let started = Instant::now();
    let mut announced = false;
    let (id, submitted) = loop {
        let available = cluster.lock().resources.free_slots();
        if available >= needed {
            let submitted = now_ms();
            // Should the slots go between the look and the allocation (a job submitted over
            // REST), the Dispatcher waits for them up to the same slot.request.timeout.
            match cluster.submit(planned.clone()) {
                Ok(id) => break (id, submitted),
                Err(source) => return Err(ApplicationError::Submit { name, source }),
            }
        } else if !announced {
            info!(name = %name, needed, available, "waiting for slots");
            on_event(ApplicationEvent::WaitingForSlots { needed, available });
            announced = true;
        }
        if started.elapsed() >= application.slot_request_timeout {
            return Err(ApplicationError::NoSlots {
                name,
                needed,
                available,
                waited: started.elapsed(),
            });
        }
        tokio::time::sleep(APPLICATION_POLL).await;
    };
    info!(job_id = %id, name = %name, "application job submitted");
    on_event(ApplicationEvent::Submitted(id.clone()));
    let mut ticks = tokio::time::interval(APPLICATION_POLL);
    loop {
        ticks.tick().await;
        let state = cluster.lock();
        let Some(job) = state.jobs.get(&id) else {
            // The Dispatcher never forgets a job it accepted; this is a bug.
            return Err(ApplicationError::Server(std::io::Error::other(format!(
                "job {id} vanished from the Dispatcher (a bug)"
            ))));
        };
        if job.state.is_terminal() {
            info!(job_id = %id, state = %job.state, "application job ended");
            return Ok(ApplicationOutcome {
                job_id: id.clone(),
                name,
                state: job.state,
                failure: job.failure.clone(),
                duration_ms: now_ms().saturating_sub(submitted),
            });
        }
    }
}

/// Cancels every job that has not ended (an application cluster runs one, but the REST API
/// accepts more).
async fn cancel_all(cluster: &Arc<Cluster>) {
    let running: Vec<JobId> = cluster
        .lock()
        .jobs
        .values()
        .filter(|j| !j.state.is_terminal())
        .map(|j| j.id.clone())
        .collect();
    for id in running {
        if let Err(error) = cluster.cancel(&id).await {
            warn!(job_id = %id, %error, "cancelling the application's job failed");
        }
    }
}
