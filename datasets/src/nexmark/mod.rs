//! The Nexmark benchmark's event generator (people, auctions, bids).
//!
//! The stream is numbered 0, 1, 2, … and every event is a pure function of
//! the [`NexmarkConfig`] (seed included) and its number. A source subtask
//! builds a [`NexmarkGenerator`] from its [`NexmarkSplit`] (see
//! [`NexmarkConfig::split`]) and pulls [`NexmarkBatches`] (all tables) or one
//! table's batches (`next_table_batch`, the fast path for `bid`). The split's
//! `next_event` is the position to checkpoint.
//!
//! Module map: `model` (event kinds, ids, event time), `vocabulary` (text and
//! prices), `schema` ([`NexmarkTable`] and the Arrow schemas), `config`, and
//! `generator`.

mod config;
mod generator;
mod model;
mod schema;
mod vocabulary;

pub use config::{NexmarkConfig, NexmarkSplit, NexmarkSplitSet};
pub use generator::{NexmarkBatches, NexmarkGenerator};
pub use schema::NexmarkTable;

impl NexmarkTable {
    /// The table event number `n` belongs to: `n % 50` is 0 for a person,
    /// 1–3 for an auction and 4–49 for a bid.
    pub fn of_event(n: u64) -> NexmarkTable {
        model::event_table(n)
    }
}
