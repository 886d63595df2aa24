//! Counters of a TaskManager's exchange traffic, for its metrics.
//!
//! Updated on the server's network tasks (one relaxed add per Flight message) and by producers
//! that find no credit; read by the TaskManager's heartbeat and `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering};

use arrow_flight::FlightData;

/// The live counters, shared by the server and its channels.
#[derive(Debug, Default)]
pub(super) struct ExchangeCounters {
    bytes_sent: AtomicU64,
    bytes_received: AtomicU64,
    messages_sent: AtomicU64,
    messages_received: AtomicU64,
    credits_granted: AtomicU64,
    credit_stalls: AtomicU64,
}

/// A reading of a TaskManager's exchange counters (totals since it started).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExchangeMetrics {
    /// Bytes of Flight messages (header and body) this TaskManager sent to its peers.
    pub bytes_sent: u64,
    /// Bytes of Flight messages it received from its peers.
    pub bytes_received: u64,
    pub messages_sent: u64,
    pub messages_received: u64,
    /// Credits its producers were granted by the receivers (room for one element each).
    pub credits_granted: u64,
    /// Times one of its producers had an element to send and no credit: the receiver was full.
    pub credit_stalls: u64,
}

/// The bytes a Flight message takes on the wire, less framing.
pub(super) fn message_bytes(data: &FlightData) -> u64 {
    (data.data_header.len() + data.data_body.len() + data.app_metadata.len()) as u64
}

impl ExchangeCounters {
    pub fn sent(&self, bytes: u64) {
        self.bytes_sent.fetch_add(bytes, Ordering::Relaxed);
        self.messages_sent.fetch_add(1, Ordering::Relaxed);
    }

    pub fn received(&self, bytes: u64) {
        self.bytes_received.fetch_add(bytes, Ordering::Relaxed);
        self.messages_received.fetch_add(1, Ordering::Relaxed);
    }

    pub fn granted(&self, credits: u32) {
        self.credits_granted
            .fetch_add(u64::from(credits), Ordering::Relaxed);
    }

    pub fn stalled(&self) {
        self.credit_stalls.fetch_add(1, Ordering::Relaxed);
    }

    pub fn read(&self) -> ExchangeMetrics {
        ExchangeMetrics {
            bytes_sent: self.bytes_sent.load(Ordering::Relaxed),
            bytes_received: self.bytes_received.load(Ordering::Relaxed),
            messages_sent: self.messages_sent.load(Ordering::Relaxed),
            messages_received: self.messages_received.load(Ordering::Relaxed),
            credits_granted: self.credits_granted.load(Ordering::Relaxed),
            credit_stalls: self.credit_stalls.load(Ordering::Relaxed),
        }
    }
}
