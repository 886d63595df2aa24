//! A TaskManager's Flight server: receives the remote channels into the process and owns the
//! runtime that does the exchange's network I/O.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use arrow_flight::{
    Action, ActionType, Criteria, Empty, FlightData, FlightDescriptor, FlightInfo,
    HandshakeRequest, HandshakeResponse, PollInfo, PutResult, SchemaResult, Ticket,
};
use futures::Stream;
use futures::stream::BoxStream;
use sluice_engine::ids::{AttemptNumber, JobId};
use sluice_engine::runtime::exchange::SlotWaker;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Endpoint, Server};
use tonic::{Request, Response, Status, Streaming};
use tracing::{debug, warn};

use super::ExchangeConfig;
use super::inbound::{CreditStream, FlightInput, Inbound, InboundRegistry};
use super::metrics::{ExchangeCounters, ExchangeMetrics, message_bytes};
use super::outbound::{self, FlightOutput};
use crate::codec::{ElementDecoder, parse_open};
use crate::ticket::ChannelTicket;
use crate::{Error, Result};

/// HTTP/2 flow-control windows. The credits bound what is in flight per channel; the windows
/// only need to be large enough not to throttle a few batches of a few MB in flight.
const STREAM_WINDOW: u32 = 8 << 20;
const CONNECTION_WINDOW: u32 = 32 << 20;

/// The largest HTTP/2 frame a peer may send us. The default, 16 KiB, cuts a 256 KiB batch into
/// 16 frames, each a separate write on the sender and a separate chunk for the gRPC decoder on
/// the receiver; 1 MiB frames carry a typical batch in one (`sluice-bench flight-exchange`).
const MAX_FRAME_SIZE: u32 = 1 << 20;

/// A TaskManager's exchange endpoint: the Flight server holding the receiving ends of remote
/// channels, the clients towards other TaskManagers and the runtime they run on. Dropping the
/// last handle stops the runtime, which closes every connection (peers see their channels
/// fail).
pub struct ExchangeServer {
    address: SocketAddr,
    config: ExchangeConfig,
    registry: Arc<InboundRegistry>,
    counters: Arc<ExchangeCounters>,
    /// One channel (one HTTP/2 connection) per peer address; touched only at channel setup.
    clients: Mutex<HashMap<String, Channel>>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl ExchangeServer {
    /// Starts serving on `address` (`host:port`; port 0 picks a free port, see
    /// [`ExchangeServer::address`]).
    pub fn start(address: &str, config: ExchangeConfig) -> Result<Arc<Self>> {
        let serve_error = |message: String| Error::Serve {
            address: address.to_string(),
            message,
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(config.io_threads.max(1))
            .thread_name("sluice-exchange")
            .enable_all()
            .build()
            .map_err(|e| serve_error(format!("cannot start the network runtime: {e}")))?;
        let listener = std::net::TcpListener::bind(address)
            .map_err(|e| serve_error(format!("cannot bind: {e}")))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| serve_error(e.to_string()))?;
        let bound = listener
            .local_addr()
            .map_err(|e| serve_error(e.to_string()))?;
        let registry = Arc::new(InboundRegistry::new(config.credits_per_channel.max(1)));
        let counters = Arc::new(ExchangeCounters::default());
        let service = FlightServiceServer::new(ExchangeService {
            registry: registry.clone(),
            counters: counters.clone(),
        })
        .max_decoding_message_size(config.max_message_bytes)
        .max_encoding_message_size(config.max_message_bytes);
        let listener = {
            // Entering (unlike blocking on) the runtime is allowed inside other async code.
            let _guard = runtime.enter();
            tokio::net::TcpListener::from_std(listener).map_err(|e| serve_error(e.to_string()))?
        };
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        let server = Server::builder()
            .initial_stream_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .max_frame_size(MAX_FRAME_SIZE)
            .http2_keepalive_interval(Some(config.keep_alive))
            .http2_keepalive_timeout(Some(config.keep_alive))
            .add_service(service)
            .serve_with_incoming(incoming);
        runtime.spawn(async move {
            if let Err(e) = server.await {
                warn!(address = %bound, error = %e, "exchange Flight server stopped");
            }
        });
        debug!(address = %bound, "exchange Flight server started");
        Ok(Arc::new(ExchangeServer {
            address: bound,
            config,
            registry,
            counters,
            clients: Mutex::new(HashMap::new()),
            runtime: Some(runtime),
        }))
    }

    /// The address the server listens on.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub fn config(&self) -> &ExchangeConfig {
        &self.config
    }

    /// This TaskManager's exchange traffic so far.
    pub fn metrics(&self) -> ExchangeMetrics {
        self.counters.read()
    }

    fn runtime(&self) -> &tokio::runtime::Runtime {
        self.runtime
            .as_ref()
            .expect("the runtime is only taken when the server is dropped")
    }

    fn client(&self, address: &str) -> Result<Channel> {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(client) = clients.get(address) {
            return Ok(client.clone());
        }
        let endpoint = Endpoint::from_shared(format!("http://{address}"))
            .map_err(|e| Error::Config {
                key: "TaskManager Flight address".into(),
                value: address.to_string(),
                message: e.to_string(),
            })?
            .tcp_nodelay(true)
            .connect_timeout(self.config.keep_alive)
            .initial_stream_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .max_frame_size(MAX_FRAME_SIZE)
            .http2_keep_alive_interval(self.config.keep_alive)
            .keep_alive_timeout(self.config.keep_alive)
            .keep_alive_while_idle(true);
        // A lazy channel connects on first use, on the runtime (the guard makes it the
        // current one for the channel's background task).
        let _guard = self.runtime().enter();
        let client = endpoint.connect_lazy();
        clients.insert(address.to_string(), client.clone());
        Ok(client)
    }

    /// The sending end of a channel to the TaskManager at `address`.
    pub(super) fn open_output(
        &self,
        ticket: ChannelTicket,
        address: &str,
        producer: SlotWaker,
    ) -> Result<FlightOutput> {
        let client = self.client(address)?;
        outbound::open(
            self.runtime().handle(),
            client,
            ticket,
            address,
            producer,
            outbound::ProducerSide {
                address: self.address.to_string(),
                compression: self.config.compression,
                counters: self.counters.clone(),
            },
        )
    }

    /// The tasks of attempt `attempt` of `job` on this TaskManager have ended (finished,
    /// failed or cancelled): their half-open receiving ends are failed (the producers see the
    /// channel fail) and streams opening for the attempt later are refused, so nothing of the
    /// attempt stays buffered here. Returns how many receiving ends were failed.
    pub fn release_job(&self, job: &JobId, attempt: AttemptNumber) -> usize {
        self.registry.release_job(job, attempt)
    }

    /// The receiving end of a channel whose producer is on another TaskManager.
    pub(super) fn open_input(
        &self,
        ticket: ChannelTicket,
        consumer: SlotWaker,
    ) -> Result<FlightInput> {
        self.registry.open_consumer(&ticket, consumer)
    }
}

impl Drop for ExchangeServer {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            // Drops every task, hence every connection, without waiting (safe inside async
            // code too).
            runtime.shutdown_background();
        }
    }
}

/// The Flight service: only `DoExchange` (one call per incoming channel) is served.
struct ExchangeService {
    registry: Arc<InboundRegistry>,
    counters: Arc<ExchangeCounters>,
}

/// Reads a channel's messages into its receiving end until end-of-input or a failure.
async fn receive(
    mut messages: Streaming<FlightData>,
    inbound: Arc<Inbound>,
    counters: Arc<ExchangeCounters>,
) {
    let mut decoder = ElementDecoder::new(inbound.describe());
    loop {
        match messages.message().await {
            Ok(Some(data)) => match decoder.decode(counted(&counters, data)) {
                Ok(Some(element)) => {
                    let end = matches!(element, sluice_engine::element::StreamElement::EndOfInput);
                    if let Err(e) = inbound.push(element) {
                        inbound.fail(e.to_string());
                        return;
                    }
                    if end {
                        return;
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    inbound.fail(e.to_string());
                    return;
                }
            },
            Ok(None) => {
                inbound.fail("the producer closed its stream without end-of-input".into());
                return;
            }
            Err(status) => {
                inbound.fail(format!("the stream broke: {}", status.message()));
                return;
            }
        }
    }
}

/// Counts a received message.
fn counted(counters: &ExchangeCounters, data: FlightData) -> FlightData {
    counters.received(message_bytes(&data));
    data
}

type BoxedStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

fn not_served<T>(method: &str) -> Result<T, Status> {
    Err(Status::unimplemented(format!(
        "{method} is not served by a TaskManager's exchange endpoint"
    )))
}

#[tonic::async_trait]
impl FlightService for ExchangeService {
    type HandshakeStream = BoxedStream<HandshakeResponse>;
    type ListFlightsStream = BoxedStream<FlightInfo>;
    type DoGetStream = BoxedStream<FlightData>;
    type DoPutStream = BoxedStream<PutResult>;
    type DoExchangeStream = BoxStream<'static, Result<FlightData, Status>>;
    type DoActionStream = BoxedStream<arrow_flight::Result>;
    type ListActionsStream = BoxedStream<ActionType>;

    async fn do_exchange(
        &self,
        request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoExchangeStream>, Status> {
        let peer = request
            .remote_addr()
            .map_or_else(|| "an unknown address".to_string(), |a| a.to_string());
        let mut messages = request.into_inner();
        let first = messages
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("an exchange stream without messages"))?;
        let (ticket, producer) =
            parse_open(&first, &format!("stream from {peer}")).map_err(|e| e.to_status())?;
        // The producer's Flight address names it better than the connection's client port.
        let peer = if producer.is_empty() { peer } else { producer };
        let inbound = self
            .registry
            .open_stream(&ticket, &peer)
            .map_err(|e| e.to_status())?;
        debug!(channel = %ticket, peer = %peer, "exchange channel opened");
        tokio::spawn(receive(messages, inbound.clone(), self.counters.clone()));
        Ok(Response::new(Box::pin(CreditStream::new(inbound))))
    }

    async fn handshake(
        &self,
        _request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Self::HandshakeStream>, Status> {
        not_served("Handshake")
    }

    async fn list_flights(
        &self,
        _request: Request<Criteria>,
    ) -> Result<Response<Self::ListFlightsStream>, Status> {
        not_served("ListFlights")
    }

    async fn get_flight_info(
        &self,
        _request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        not_served("GetFlightInfo")
    }

    async fn poll_flight_info(
        &self,
        _request: Request<FlightDescriptor>,
    ) -> Result<Response<PollInfo>, Status> {
        not_served("PollFlightInfo")
    }

    async fn get_schema(
        &self,
        _request: Request<FlightDescriptor>,
    ) -> Result<Response<SchemaResult>, Status> {
        not_served("GetSchema")
    }

    async fn do_get(
        &self,
        _request: Request<Ticket>,
    ) -> Result<Response<Self::DoGetStream>, Status> {
        not_served("DoGet")
    }

    async fn do_put(
        &self,
        _request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoPutStream>, Status> {
        not_served("DoPut")
    }

    async fn do_action(
        &self,
        _request: Request<Action>,
    ) -> Result<Response<Self::DoActionStream>, Status> {
        not_served("DoAction")
    }

    async fn list_actions(
        &self,
        _request: Request<Empty>,
    ) -> Result<Response<Self::ListActionsStream>, Status> {
        not_served("ListActions")
    }
}
