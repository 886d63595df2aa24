//! The cluster exchange: the engine's [`ExchangeFactory`] over Arrow Flight.
//!
//! Every TaskManager process runs one [`ExchangeServer`]: a Flight server (tonic) on a tokio
//! runtime that the server owns, holding the receiving ends of every remote channel into the
//! process. A job attempt's [`FlightExchange`] creates channel ends: when both ends of a
//! channel are hosted by this TaskManager it is the engine's in-process [`LocalExchange`]
//! queue; when the other end is elsewhere it is a Flight stream.
//!
//! ## One `DoExchange` stream per remote channel
//!
//! A producer opens one `DoExchange` call per remote channel; the first message names the
//! channel ([`ChannelTicket`](crate::ChannelTicket)). The calls of one peer share one HTTP/2
//! connection (one tonic `Channel` per peer address), so there is still a single TCP
//! connection per pair of TaskManagers. One stream per channel, rather than multiplexing
//! channels inside one stream per peer, keeps ordering, flow control and failure per channel
//! (HTTP/2 already multiplexes streams) and needs no demultiplexing on the receiver.
//!
//! ## Credit-based flow control
//!
//! The receiver grants *credits* in the response direction of the call: one credit is room for
//! one element in the receiving end's bounded queue. It grants the queue's capacity when the
//! stream opens and one more credit for each element the consuming task takes out. The
//! producer's `try_send` spends a credit per element; without credit it hands the element
//! back (the channel is full), exactly as a full in-process queue does, so the engine's
//! backpressure works unchanged and reaches the sources. A credit arriving wakes the producing
//! slot.
//!
//! Because a producer never sends more than the receiver has room for, the receiver's network
//! task can always read every message off the connection at once. A consumer that stops
//! reading one channel (barrier alignment blocks a channel until the barrier arrived on all
//! inputs) therefore never stalls the shared HTTP/2 connection, and the other channels
//! — which must deliver their barriers for the alignment to finish — keep flowing.
//!
//! ## Threads
//!
//! Slot threads only touch lock-free queues and atomics: a producer pushes into an unbounded
//! (but credit-bounded) tokio queue and reads a credit counter; a consumer pops from a bounded
//! crossbeam queue and bumps a released-credit counter. Encoding, decoding and the network run
//! on the server's runtime. Maps guarded by a `Mutex` are touched only while channels are set
//! up.
//!
//! ## Failures
//!
//! A peer that cannot be reached, or whose connection breaks, fails the channel: the
//! producer's `try_send` (or the consumer's `try_recv`) returns
//! [`Error::Unavailable`](sluice_engine::Error::Unavailable) naming the peer's address, and
//! the waiting slot is woken so it sees the error instead of waiting for ever. HTTP/2
//! keep-alive pings detect a silent peer.

mod inbound;
mod metrics;
mod outbound;
mod request;
mod server;

pub use metrics::ExchangeMetrics;
pub use server::ExchangeServer;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use sluice_engine::graph::JobGraph;
use sluice_engine::ids::{AttemptNumber, JobId, SubtaskIndex, VertexId};
use sluice_engine::runtime::exchange::{
    ChannelId, ExchangeFactory, InputChannel, LocalExchange, OutputChannel, SlotWaker,
};

use crate::codec::Compression;
use crate::ticket::{ChannelTicket, TaskManagerId};
use crate::{Error, Result};

/// Settings of a TaskManager's exchange.
#[derive(Debug, Clone)]
pub struct ExchangeConfig {
    /// Credits per remote channel: how many elements the receiving end buffers (Flink's
    /// `taskmanager.network.memory.buffers-per-channel`). Default 8.
    pub credits_per_channel: u32,
    /// IPC compression of batches sent to other TaskManagers. Default none.
    pub compression: Compression,
    /// Capacity of in-process channels, in elements. Default 4 (the local runtime's default).
    pub local_capacity: usize,
    /// Threads of the exchange's network runtime. Default 2.
    pub io_threads: usize,
    /// The largest Flight message accepted, in bytes. Default 256 MiB.
    pub max_message_bytes: usize,
    /// Interval of HTTP/2 keep-alive pings; a peer that does not answer within the same time
    /// again is considered dead. Default 10 s.
    pub keep_alive: Duration,
}

impl Default for ExchangeConfig {
    fn default() -> Self {
        ExchangeConfig {
            credits_per_channel: 8,
            compression: Compression::None,
            local_capacity: 4,
            io_threads: 2,
            max_message_bytes: 256 << 20,
            keep_alive: Duration::from_secs(10),
        }
    }
}

impl ExchangeConfig {
    pub fn with_credits_per_channel(mut self, credits: u32) -> Self {
        self.credits_per_channel = credits.max(1);
        self
    }

    pub fn with_compression(mut self, compression: Compression) -> Self {
        self.compression = compression;
        self
    }

    pub fn with_local_capacity(mut self, elements: usize) -> Self {
        self.local_capacity = elements.max(1);
        self
    }
}

/// Where the subtasks of a job run: which TaskManager hosts each (vertex, subtask), and the
/// Flight address of each TaskManager. Built by the coordinator when it deploys a job.
#[derive(Debug, Clone, Default)]
pub struct ExchangePlacement {
    /// (source vertex, target vertex) of each edge, by edge index.
    edges: Vec<(VertexId, VertexId)>,
    hosts: HashMap<(VertexId, SubtaskIndex), TaskManagerId>,
    addresses: HashMap<TaskManagerId, String>,
}

impl ExchangePlacement {
    /// A placement for the edges of `graph`, with no subtask placed yet.
    pub fn for_graph(graph: &JobGraph) -> Self {
        Self::from_edges(graph.edges().iter().map(|e| (e.source, e.target)).collect())
    }

    /// A placement for edges given as (source vertex, target vertex), by edge index.
    pub fn from_edges(edges: Vec<(VertexId, VertexId)>) -> Self {
        ExchangePlacement {
            edges,
            ..Default::default()
        }
    }

    /// Places `subtask` of `vertex` (of every vertex chained with it: give each) on `host`.
    pub fn with_subtask(
        mut self,
        vertex: VertexId,
        subtask: SubtaskIndex,
        host: TaskManagerId,
    ) -> Self {
        self.hosts.insert((vertex, subtask), host);
        self
    }

    /// The Flight address (`host:port`) of a TaskManager.
    pub fn with_task_manager(mut self, id: TaskManagerId, address: impl Into<String>) -> Self {
        self.addresses.insert(id, address.into());
        self
    }

    /// The TaskManagers hosting the producing and the consuming end of `id`.
    fn ends(&self, id: ChannelId) -> Result<(&TaskManagerId, &TaskManagerId)> {
        let &(source, target) = self.edges.get(id.edge as usize).ok_or_else(|| {
            Error::Internal(format!(
                "channel {id:?} names edge {} but the placement knows {} edges",
                id.edge,
                self.edges.len()
            ))
        })?;
        let host = |vertex: VertexId, subtask: SubtaskIndex| {
            self.hosts.get(&(vertex, subtask)).ok_or_else(|| {
                Error::Internal(format!(
                    "no TaskManager is placed for subtask {subtask} of vertex {vertex}"
                ))
            })
        };
        Ok((host(source, id.from)?, host(target, id.to)?))
    }

    fn address(&self, id: &TaskManagerId) -> Result<&str> {
        self.addresses
            .get(id)
            .map(String::as_str)
            .ok_or_else(|| Error::Internal(format!("no Flight address for TaskManager {id}")))
    }
}

/// The exchange of one job attempt on one TaskManager: in-process queues between local
/// subtasks, Flight streams to and from subtasks on other TaskManagers.
pub struct FlightExchange {
    server: Arc<ExchangeServer>,
    job: JobId,
    attempt: AttemptNumber,
    this: TaskManagerId,
    placement: ExchangePlacement,
    local: LocalExchange,
}

impl FlightExchange {
    /// The exchange of attempt `attempt` of job `job` on TaskManager `this`, whose remote
    /// channels are received by `server`.
    pub fn new(
        server: Arc<ExchangeServer>,
        job: JobId,
        attempt: AttemptNumber,
        this: TaskManagerId,
        placement: ExchangePlacement,
    ) -> Self {
        let local = LocalExchange::new(server.config().local_capacity);
        FlightExchange {
            server,
            job,
            attempt,
            this,
            placement,
            local,
        }
    }

    fn ticket(&self, channel: ChannelId) -> ChannelTicket {
        ChannelTicket {
            job: self.job.clone(),
            attempt: self.attempt,
            channel,
        }
    }
}

impl ExchangeFactory for FlightExchange {
    fn output(
        &self,
        id: ChannelId,
        producer: &SlotWaker,
    ) -> sluice_engine::Result<Box<dyn OutputChannel>> {
        let (from, to) = self.placement.ends(id)?;
        if *from != self.this {
            return Err(Error::Internal(format!(
                "TaskManager {} asked for the output of channel {id:?}, which TaskManager {from} hosts",
                self.this
            ))
            .into());
        }
        if *to == self.this {
            return self.local.output(id, producer);
        }
        let address = self.placement.address(to)?;
        Ok(Box::new(self.server.open_output(
            self.ticket(id),
            address,
            producer.clone(),
        )?))
    }

    fn input(
        &self,
        id: ChannelId,
        consumer: &SlotWaker,
    ) -> sluice_engine::Result<Box<dyn InputChannel>> {
        let (from, to) = self.placement.ends(id)?;
        if *to != self.this {
            return Err(Error::Internal(format!(
                "TaskManager {} asked for the input of channel {id:?}, which TaskManager {to} hosts",
                self.this
            ))
            .into());
        }
        if *from == self.this {
            return self.local.input(id, consumer);
        }
        Ok(Box::new(
            self.server.open_input(self.ticket(id), consumer.clone())?,
        ))
    }
}
