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
use crate::ha::{LeaderInfo, LeaderRecord};
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
    /// The sink-table Flight service, when served (`--flight-port`).
    pub flight: Option<SocketAddr>,
}

/// What this JobManager is now. Without high availability it always leads; with it, it is a
/// standby (or still electing) until etcd elects it, and each term of leadership has its own
/// [`Cluster`] state.
#[derive(Clone)]
enum Role {
    /// No leader is known yet: connecting to etcd, campaigning, or taking over.
    Electing(String),
    /// Another JobManager leads.
    Standby(LeaderInfo),
    /// This one leads; `rest` is the REST API over its cluster state.
    Leader {
        cluster: Arc<Cluster>,
        rest: axum::Router,
    },
}

/// The current role, shared by the RPC services, the REST API and the election.
struct Roles {
    role: std::sync::RwLock<Role>,
}

impl Roles {
    fn new(role: Role) -> Arc<Roles> {
        Arc::new(Roles {
            role: std::sync::RwLock::new(role),
        })
    }

    fn set(&self, role: Role) {
        *self.role.write().unwrap_or_else(|p| p.into_inner()) = role;
    }

    fn get(&self) -> Role {
        self.role.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The cluster state when this JobManager leads; otherwise the error a caller gets,
    /// naming the leader when one is known.
    fn leader(&self) -> Result<Arc<Cluster>, Status> {
        match self.get() {
            Role::Leader { cluster, .. } => Ok(cluster),
            Role::Standby(leader) => Err(Status::unavailable(format!(
                "this JobManager is a standby; the leader is at {} (epoch {})",
                leader.record.rpc, leader.epoch
            ))),
            Role::Electing(why) => Err(Status::unavailable(format!(
                "no leading JobManager yet: {why}"
            ))),
        }
    }
}

/// The ResourceManager RPC service over the cluster state.
struct ResourceManagerService {
    roles: Arc<Roles>,
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
        let cluster = self.roles.leader()?;
        cluster.lock().resources.register(
            SlotOffer {
                id: id.clone(),
                rpc_address: r.rpc_address.clone(),
                data_port: r.data_port,
                flight_port: r.flight_port,
                hostname: r.hostname,
                hardware: crate::resource_manager::Hardware {
                    metrics_port: r.metrics_port,
                    cpu_cores: r.cpu_cores,
                    physical_memory_bytes: r.physical_memory_bytes,
                },
                slots: r.slots as usize,
            },
            Instant::now(),
            now_ms(),
        );
        info!(task_manager = %id, address = %r.rpc_address, slots = r.slots, "TaskManager registered");
        Ok(Response::new(proto::RegisterTaskManagerResponse {
            registration_id: format!("{}@{}", id, now_ms()),
            heartbeat_interval_ms: cluster.config.heartbeat_interval.as_millis() as u64,
        }))
    }

    async fn heartbeat(
        &self,
        request: Request<proto::HeartbeatRequest>,
    ) -> Result<Response<proto::HeartbeatResponse>, Status> {
        let r = request.into_inner();
        let id = TaskManagerId(r.task_manager_id);
        let (now, at_ms) = (Instant::now(), now_ms());
        let cluster = self.roles.leader()?;
        let mut state = cluster.lock();
        let known = state.resources.heartbeat(&id, now, at_ms);
        if known {
            if let Some(m) = r.metrics {
                state.resources.record_load(
                    &id,
                    crate::resource_manager::TaskManagerMetrics {
                        memory_rss_bytes: m.memory_rss_bytes,
                        network_bytes_sent: m.network_bytes_sent,
                        network_bytes_received: m.network_bytes_received,
                        network_credit_stalls: m.network_credit_stalls,
                    },
                    now,
                );
            }
            for task in r.tasks {
                let job_id = JobId(task.job_id.clone());
                let attempt = task.attempt;
                if let Some(job) = state.jobs.get_mut(&job_id) {
                    job.task_metrics(attempt, crate::task_metrics::sample_from_proto(task), at_ms);
                }
            }
        }
        Ok(Response::new(proto::HeartbeatResponse { known }))
    }

    async fn disconnect_task_manager(
        &self,
        request: Request<proto::DisconnectTaskManagerRequest>,
    ) -> Result<Response<proto::DisconnectTaskManagerResponse>, Status> {
        let r = request.into_inner();
        self.roles
            .leader()?
            .disconnect(&TaskManagerId(r.task_manager_id), &r.reason)
            .await;
        Ok(Response::new(proto::DisconnectTaskManagerResponse {}))
    }
}

/// The JobMaster RPC service: task state reports of every job.
struct JobMasterService {
    roles: Arc<Roles>,
}

#[tonic::async_trait]
impl JobMaster for JobMasterService {
    async fn update_task_state(
        &self,
        request: Request<proto::UpdateTaskStateRequest>,
    ) -> Result<Response<proto::UpdateTaskStateResponse>, Status> {
        self.roles
            .leader()?
            .task_state(request.into_inner())
            .await?;
        Ok(Response::new(proto::UpdateTaskStateResponse {}))
    }

    async fn acknowledge_checkpoint(
        &self,
        request: Request<proto::AcknowledgeCheckpointRequest>,
    ) -> Result<Response<proto::AcknowledgeCheckpointResponse>, Status> {
        self.roles
            .leader()?
            .acknowledge_checkpoint(request.into_inner())
            .await?;
        Ok(Response::new(proto::AcknowledgeCheckpointResponse {}))
    }
}

/// Runs the JobManager until `shutdown` resolves. `on_bound` sees the bound addresses. With
/// `config.ha` set it campaigns for leadership through etcd and serves as a standby until
/// elected (see [`crate::ha`]).
pub async fn run(
    config: JobManagerConfig,
    rpc: SocketAddr,
    rest: SocketAddr,
    on_bound: impl FnOnce(&JobManagerAddresses),
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    match config.ha.clone() {
        None => serve(config, rpc, rest, |bound, _| on_bound(bound), shutdown).await,
        Some(ha) => {
            let (rpc_listener, rest_listener, mut addresses) = bind(rpc, rest).await?;
            let roles = Roles::new(Role::Electing("connecting to etcd".into()));
            let flight = bind_flight(&config, addresses.rpc, &roles).await?;
            addresses.flight = flight.as_ref().map(|f| f.address());
            on_bound(&addresses);
            let elect = {
                let roles = roles.clone();
                move |stopped| elect(ha, config, addresses, roles, stopped)
            };
            serve_roles(rpc_listener, rest_listener, flight, roles, elect, shutdown).await
        }
    }
}

/// Binds both listeners.
async fn bind(
    rpc: SocketAddr,
    rest: SocketAddr,
) -> std::io::Result<(
    tokio::net::TcpListener,
    tokio::net::TcpListener,
    JobManagerAddresses,
)> {
    let rpc_listener = tokio::net::TcpListener::bind(rpc)
        .await
        .map_err(|e| std::io::Error::other(format!("bind rpc address {rpc}: {e}")))?;
    let rest_listener = tokio::net::TcpListener::bind(rest)
        .await
        .map_err(|e| std::io::Error::other(format!("bind rest address {rest}: {e}")))?;
    let addresses = JobManagerAddresses {
        rpc: rpc_listener.local_addr()?,
        rest: rest_listener.local_addr()?,
        flight: None,
    };
    Ok((rpc_listener, rest_listener, addresses))
}

/// Binds the sink-table Flight service when `config` asks for it, on the RPC address's host:
/// its catalog is the leading term's jobs (nothing while this JobManager does not lead).
async fn bind_flight(
    config: &JobManagerConfig,
    rpc: SocketAddr,
    roles: &Arc<Roles>,
) -> std::io::Result<Option<sluice_flight::sink_table::SinkTableServer>> {
    let Some(port) = config.flight_port else {
        return Ok(None);
    };
    let catalog = {
        let roles = roles.clone();
        crate::sink_tables::ClusterSinkCatalog::new(move || match roles.get() {
            Role::Leader { cluster, .. } => Some(cluster),
            _ => None,
        })
    };
    let address = SocketAddr::new(rpc.ip(), port);
    let service = sluice_flight::sink_table::SinkTableService::new(Arc::new(catalog))
        .with_token(config.flight_token.clone());
    sluice_flight::sink_table::SinkTableServer::bind(address, service)
        .await
        .map(Some)
        .map_err(|e| std::io::Error::other(format!("sink-table Flight service on {address}: {e}")))
}

/// [`run`] without high availability, with `on_bound` also handed the cluster state, for a
/// driver running in the same process (the application cluster).
async fn serve(
    config: JobManagerConfig,
    rpc: SocketAddr,
    rest: SocketAddr,
    on_bound: impl FnOnce(&JobManagerAddresses, &Arc<Cluster>),
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (rpc_listener, rest_listener, mut addresses) = bind(rpc, rest).await?;
    let cluster = Arc::new(Cluster::new(config.clone(), addresses.rpc.to_string()));
    let roles = Roles::new(Role::Leader {
        cluster: cluster.clone(),
        rest: rest::router(cluster.clone()),
    });
    let flight = bind_flight(&config, addresses.rpc, &roles).await?;
    addresses.flight = flight.as_ref().map(|f| f.address());
    on_bound(&addresses, &cluster);
    let monitor = move |stopped| async move {
        lead(&cluster, stopped, std::future::pending()).await;
    };
    serve_roles(
        rpc_listener,
        rest_listener,
        flight,
        roles,
        monitor,
        shutdown,
    )
    .await
}

/// Serves the RPC services and the REST API for whatever role `roles` holds, runs `control`
/// (the leader's periodic work, or the election) beside them, and stops all on `shutdown`.
async fn serve_roles<C, F>(
    rpc_listener: tokio::net::TcpListener,
    rest_listener: tokio::net::TcpListener,
    flight: Option<sluice_flight::sink_table::SinkTableServer>,
    roles: Arc<Roles>,
    control: C,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()>
where
    C: FnOnce(tokio::sync::broadcast::Receiver<()>) -> F,
    F: std::future::Future<Output = ()>,
{
    let (stop, _) = tokio::sync::broadcast::channel::<()>(1);
    let rpc_server = {
        let mut stopped = stop.subscribe();
        tonic::transport::Server::builder()
            .add_service(ResourceManagerServer::new(ResourceManagerService {
                roles: roles.clone(),
            }))
            .add_service(JobMasterServer::new(JobMasterService {
                roles: roles.clone(),
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
        let router = axum::Router::new()
            .fallback(route_rest)
            .with_state(roles.clone());
        axum::serve(rest_listener, router).with_graceful_shutdown(async move {
            let _ = stopped.recv().await;
        })
    };
    let control = control(stop.subscribe());
    let flight_server = {
        let mut stopped = stop.subscribe();
        async move {
            if let Some(flight) = flight {
                let stopped = async move {
                    let _ = stopped.recv().await;
                };
                if let Err(error) = flight.serve(stopped).await {
                    warn!(%error, "the sink-table Flight service failed");
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
    let (rpc_result, rest_result, (), (), ()) =
        tokio::join!(rpc_server, rest_server, control, signal, flight_server);
    rpc_result.map_err(|e| std::io::Error::other(format!("rpc server: {e}")))?;
    rest_result.map_err(|e| std::io::Error::other(format!("rest server: {e}")))?;
    info!("jobmanager stopped");
    Ok(())
}

/// Every REST request: answered by the leader's API when this JobManager leads; a standby
/// redirects it to the leader (307, so the method and body are kept, with the leader's
/// address in the body too); while no leader is known, 503.
async fn route_rest(
    axum::extract::State(roles): axum::extract::State<Arc<Roles>>,
    request: axum::extract::Request,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    use tower::ServiceExt;
    match roles.get() {
        Role::Leader { rest, .. } => match rest.oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        },
        Role::Standby(leader) => {
            let path = request
                .uri()
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_string();
            let location = format!("{}{path}", leader.record.rest.trim_end_matches('/'));
            (
                axum::http::StatusCode::TEMPORARY_REDIRECT,
                [(axum::http::header::LOCATION, location.clone())],
                axum::Json(serde_json::json!({
                    "errors": [format!("this JobManager is a standby; the leader is at {}", leader.record.rest)],
                    "leader": leader.record.rest,
                    "leader-epoch": leader.epoch,
                })),
            )
                .into_response()
        }
        Role::Electing(why) => (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({
                "errors": [format!("no leading JobManager yet: {why}")],
            })),
        )
            .into_response(),
    }
}

/// The leader's periodic work until `stopped` fires or `lost` resolves: TaskManagers whose
/// heartbeats stopped are removed, and (under high availability) ended jobs are recorded in
/// etcd.
async fn lead(
    cluster: &Arc<Cluster>,
    mut stopped: tokio::sync::broadcast::Receiver<()>,
    lost: impl std::future::Future<Output = ()>,
) -> bool {
    // Checks a few times per timeout, so a lost TaskManager goes within ~1.25 timeouts.
    let period = (cluster.config.heartbeat_timeout / 4).max(Duration::from_millis(20));
    let mut ticks = tokio::time::interval(period);
    tokio::pin!(lost);
    loop {
        tokio::select! {
            _ = ticks.tick() => {
                if cluster.is_deposed() {
                    // The lease went while this process could not renew it (paused, cut
                    // off): nothing more is done in this term.
                    return true;
                }
                cluster.expire_task_managers().await;
                cluster.record_ends().await;
            }
            _ = stopped.recv() => return false,
            () = &mut lost => return true,
        }
    }
}

/// The election loop of a JobManager under high availability: connects to etcd (retrying,
/// with the error logged, while it is unreachable), campaigns, and while it leads, runs a
/// term: takes the stored jobs over and serves until the lease is lost (it steps down: its
/// jobs are suspended and it campaigns again) or the process stops (it resigns, so a
/// standby takes over at once).
async fn elect(
    ha: crate::ha::HaConfig,
    config: JobManagerConfig,
    addresses: JobManagerAddresses,
    roles: Arc<Roles>,
    mut stopped: tokio::sync::broadcast::Receiver<()>,
) {
    let ha = Arc::new(ha);
    let record = LeaderRecord {
        rpc: addresses.rpc.to_string(),
        rest: format!("http://{}", addresses.rest),
    };
    loop {
        let Some(etcd) = crate::ha::connect_with_retry(&ha, "jobmanager", &mut stopped).await
        else {
            return;
        };
        roles.set(Role::Electing("campaigning for leadership".into()));
        let campaign = crate::ha::campaign(&etcd, &ha, &record, |leader| {
            info!(leader = %leader.record.rest, epoch = leader.epoch, "standing by");
            roles.set(Role::Standby(leader.clone()));
        });
        let leadership = tokio::select! {
            result = campaign => result,
            _ = stopped.recv() => return,
        };
        let leadership = match leadership {
            Ok(leadership) => leadership,
            Err(error) => {
                warn!(%error, "campaign failed; retrying");
                roles.set(Role::Electing(format!("etcd: {error}")));
                tokio::select! {
                    _ = tokio::time::sleep(ha.retry_delay) => continue,
                    _ = stopped.recv() => return,
                }
            }
        };
        let epoch = leadership.epoch;
        roles.set(Role::Electing(format!(
            "taking over as leader (epoch {epoch})"
        )));
        let store = crate::ha::HaStore::new(etcd.clone(), ha.clone(), epoch);
        let cluster = Arc::new(
            Cluster::new(config.clone(), record.rpc.clone())
                .with_ha(store, leadership.lease.guard()),
        );
        match cluster.recover().await {
            Ok(resumed) => info!(epoch, resumed, "leading"),
            Err(error) => {
                warn!(epoch, %error, "taking over the stored jobs failed; resigning");
                cluster.suspend().await;
                let _ = leadership.resign(&etcd).await;
                continue;
            }
        }
        roles.set(Role::Leader {
            cluster: cluster.clone(),
            rest: rest::router(cluster.clone()),
        });
        let lost = lead(&cluster, stopped.resubscribe(), leadership.lost()).await;
        if lost {
            warn!(
                epoch,
                "leadership lost (the lease expired or could not be renewed in time); stepping down"
            );
            roles.set(Role::Electing(format!("leadership of epoch {epoch} lost")));
            cluster.suspend().await;
            continue;
        }
        // Shutting down: hand over at once.
        roles.set(Role::Electing("shutting down".into()));
        cluster.suspend().await;
        if let Err(error) = leadership.resign(&etcd).await {
            warn!(%error, "resigning the leadership failed; a standby takes over when the lease expires");
        } else {
            info!(epoch, "resigned the leadership");
        }
        return;
    }
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
            match cluster.submit(planned.clone()).await {
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
