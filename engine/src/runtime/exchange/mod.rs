//! The exchange: moves stream elements between subtasks that are not chained.
//!
//! Every pair (upstream subtask, downstream subtask) of a non-forward edge — and the one pair
//! of a forward edge that is not chained — is a *channel*. A channel carries elements in order
//! and is bounded, so a slow consumer stops its producer (backpressure) instead of growing
//! memory. Channels are never blocking on the slot thread: a full channel hands the element
//! back and the task retries after the consumer has made room; both ends wake the other's
//! slot thread through a [`SlotWaker`].
//!
//! [`ExchangeFactory`] is the seam for remote peers: the local factory here makes in-process
//! queues; the Flight exchange implements the same traits for subtasks on other TaskManagers.

mod blocking;
mod local;
mod partitioner;

pub use blocking::BlockingExchange;
pub use local::LocalExchange;
pub use partitioner::{HashPartitioner, OutputPartitioner};

use std::sync::Arc;
use std::thread::Thread;

use crate::Result;
use crate::element::StreamElement;
use crate::ids::SubtaskIndex;

/// Identifies one channel of a job: edge index in the JobGraph, and its two ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelId {
    pub edge: u32,
    pub from: SubtaskIndex,
    pub to: SubtaskIndex,
}

/// Wakes a slot thread that may be parked waiting for work.
#[derive(Debug, Clone)]
pub struct SlotWaker {
    thread: Arc<std::sync::OnceLock<Thread>>,
}

impl SlotWaker {
    /// A waker whose thread is set later, when the slot thread starts.
    pub fn new() -> Self {
        SlotWaker {
            thread: Arc::new(std::sync::OnceLock::new()),
        }
    }

    /// Binds the waker to the calling thread. Called once by the slot thread.
    pub fn bind_current(&self) {
        let _ = self.thread.set(std::thread::current());
    }

    /// Cheap when the thread is not parked (one atomic operation).
    pub fn wake(&self) {
        if let Some(thread) = self.thread.get() {
            thread.unpark();
        }
    }
}

impl Default for SlotWaker {
    fn default() -> Self {
        Self::new()
    }
}

/// The sending end of a channel, owned by the producing task.
pub trait OutputChannel: Send {
    /// Offers `element`. Returns `Ok(None)` when accepted, `Ok(Some(element))` when the channel
    /// is full (the caller keeps it and retries after a wake-up), and `Err` when the receiver
    /// is gone. Never blocks.
    fn try_send(&mut self, element: StreamElement) -> Result<Option<StreamElement>>;
}

/// The receiving end of a channel, owned by the consuming task.
pub trait InputChannel: Send {
    /// Takes the next element if one is there. `Err` when the sender vanished without sending
    /// end-of-input (its task failed). Never blocks.
    fn try_recv(&mut self) -> Result<Option<StreamElement>>;

    /// The size on disk of everything the channel will deliver, when the channel reads a
    /// finished (blocking) partition; `None` for a channel fed while it is read.
    fn materialized_bytes(&self) -> Option<u64> {
        None
    }
}

/// Creates the ends of channels. The runtime asks for every channel end it hosts; a factory
/// for a multi-process cluster connects ends that live in different processes.
pub trait ExchangeFactory: Send + Sync {
    /// The producer's end. `producer` wakes the producing slot when space frees up.
    fn output(&self, id: ChannelId, producer: &SlotWaker) -> Result<Box<dyn OutputChannel>>;

    /// The consumer's end. `consumer` wakes the consuming slot when an element arrives.
    fn input(&self, id: ChannelId, consumer: &SlotWaker) -> Result<Box<dyn InputChannel>>;
}
