//! [`SinkTableServer`]: a gRPC server of its own for the [`SinkTableService`], independent of
//! a TaskManager's exchange server (its own port, its own connections), run on the caller's
//! tokio runtime until a shutdown future completes.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tracing::info;

use super::{SinkTableCatalog, SinkTableService};
use crate::{Error, Result};

/// HTTP/2 windows of the server's connections. `DoGet` responses are bounded by the
/// client's windows; these bound the (small) requests, and match the exchange's settings so
/// one process does not tune the same transport two ways.
const STREAM_WINDOW: u32 = 8 << 20;
const CONNECTION_WINDOW: u32 = 32 << 20;

/// A bound sink-table Flight server, not yet serving.
///
/// ```no_run
/// # use std::sync::Arc;
/// # use sluice_flight::sink_table::{SinkTableCatalog, SinkTableServer, SinkTableService};
/// # async fn run(catalog: Arc<dyn SinkTableCatalog>) -> sluice_flight::Result<()> {
/// let server = SinkTableServer::bind("127.0.0.1:0".parse().unwrap(), SinkTableService::new(catalog)).await?;
/// println!("serving sink tables on grpc://{}", server.address());
/// server.serve(async { tokio::signal::ctrl_c().await.ok(); }).await
/// # }
/// ```
#[derive(Debug)]
pub struct SinkTableServer {
    listener: TcpListener,
    address: SocketAddr,
    service: SinkTableService,
}

impl SinkTableServer {
    /// Binds `address` (port 0 picks a free port; see [`SinkTableServer::address`]).
    pub async fn bind(address: SocketAddr, service: SinkTableService) -> Result<Self> {
        let listener = TcpListener::bind(address).await.map_err(|e| Error::Serve {
            address: address.to_string(),
            message: format!("cannot bind: {e}"),
        })?;
        Self::from_listener(listener, service)
    }

    /// Serves on a listener the caller bound.
    pub fn from_listener(listener: TcpListener, service: SinkTableService) -> Result<Self> {
        let address = listener.local_addr().map_err(|e| Error::Serve {
            address: "a bound listener".into(),
            message: e.to_string(),
        })?;
        Ok(SinkTableServer {
            listener,
            address,
            service,
        })
    }

    /// The address the server listens on.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Serves until `shutdown` completes, then stops accepting calls and waits for the calls
    /// in progress to end.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future closes the listener and every connection at once.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send) -> Result<()> {
        let SinkTableServer {
            listener,
            address,
            service,
        } = self;
        info!(
            address = %address,
            token = service.requires_token(),
            "sink-table Flight service started"
        );
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        Server::builder()
            .initial_stream_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .add_service(service.into_server())
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await
            .map_err(|e| Error::Serve {
                address: address.to_string(),
                message: e.to_string(),
            })?;
        info!(address = %address, "sink-table Flight service stopped");
        Ok(())
    }
}

/// Serves `catalog` on `listener` until `shutdown` completes: Arrow Flight and Flight SQL,
/// requiring `authorization: Bearer <token>` when `token` is `Some`. The bound address is
/// `listener.local_addr()`, and is logged.
pub async fn serve(
    catalog: Arc<dyn SinkTableCatalog>,
    listener: TcpListener,
    token: Option<String>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<()> {
    let service = SinkTableService::new(catalog).with_token(token);
    SinkTableServer::from_listener(listener, service)?
        .serve(shutdown)
        .await
}
