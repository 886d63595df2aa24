//! The JobManager process (`sluice jobmanager`): the Dispatcher's REST API, the
//! ResourceManager and JobMaster RPC services, and the heartbeat monitor, on one tokio runtime.
//!
//! It prints `rpc listening on ADDR` and `rest listening on ADDR` on stdout once bound (port 0
//! picks a free port), and shuts down cleanly on SIGTERM or SIGINT.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use sluice_engine::runtime::now_ms;
use tonic::{Request, Response, Status};
use tracing::info;

use crate::dispatcher::{Cluster, JobManagerConfig, rest};
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
    on_bound(&addresses);

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
