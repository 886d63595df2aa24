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

    /// How many of the events `from..end` are of this table and belong to split `split` of
    /// `splits` (the stream is dealt over the splits in blocks: block `b` goes to split
    /// `b % splits`). Closed form, for progress reports.
    pub fn events_in_split(self, splits: u32, split: u32, from: u64, end: u64) -> u64 {
        let (start, stop) = model::table_range_in_block(self, 0);
        let splits = u64::from(splits.max(1));
        let split = u64::from(split);
        // This table's events of the split among events 0..x.
        let before = |x: u64| {
            let (blocks, rest) = (x / model::BLOCK_EVENTS, x % model::BLOCK_EVENTS);
            let owned = blocks / splits + u64::from(split < blocks % splits);
            let partial = if blocks % splits == split {
                rest.min(stop).saturating_sub(start)
            } else {
                0
            };
            owned * (stop - start) + partial
        };
        before(end).saturating_sub(before(from.min(end)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_in_split_counts_what_the_blocks_hold() {
        let cases = [
            (1, 0, 0, 1_000),
            (3, 1, 17, 2_345),
            (128, 5, 0, 100_000),
            (4, 3, 999, 999),
        ];
        for table in [
            NexmarkTable::Person,
            NexmarkTable::Auction,
            NexmarkTable::Bid,
        ] {
            for (splits, split, from, end) in cases {
                let expected = (from..end)
                    .filter(|&n| (n / model::BLOCK_EVENTS) % u64::from(splits) == u64::from(split))
                    .filter(|&n| NexmarkTable::of_event(n) == table)
                    .count() as u64;
                assert_eq!(
                    table.events_in_split(splits, split, from, end),
                    expected,
                    "{table:?} {splits} {split} {from}..{end}"
                );
            }
        }
    }
}
