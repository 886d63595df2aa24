//! The Nexmark event model: which kind each event number is, how ids derive
//! from event numbers, and the event-time clock.
//!
//! Events are numbered 0, 1, 2, … and come in blocks of 50: in each block the
//! first event is a person, the next three are auctions and the remaining 46
//! are bids (shares 2 % / 6 % / 92 %). Person and auction ids are dense
//! counters over the persons and auctions seen so far, offset by 1000, so an
//! event can name the people and auctions that exist at its position without
//! any state. This follows the generator model of the Nexmark benchmark
//! (Tucker et al., "NEXMark – A Benchmark for Queries over Data Streams") as
//! used by Beam and Flink.

use super::schema::NexmarkTable;
use crate::random::SplitMix64;

/// Persons per block.
pub(crate) const PERSON_PROPORTION: u64 = 1;
/// Auctions per block.
pub(crate) const AUCTION_PROPORTION: u64 = 3;
/// Bids per block.
pub(crate) const BID_PROPORTION: u64 = 46;
/// Events per block; the unit in which event numbers are dealt to subtasks.
pub(crate) const BLOCK_EVENTS: u64 = PERSON_PROPORTION + AUCTION_PROPORTION + BID_PROPORTION;
/// Offset of the first auction within a block.
pub(crate) const FIRST_AUCTION_OFFSET: u64 = PERSON_PROPORTION;
/// Offset of the first bid within a block.
pub(crate) const FIRST_BID_OFFSET: u64 = PERSON_PROPORTION + AUCTION_PROPORTION;

/// Id of the first person.
pub(crate) const FIRST_PERSON_ID: i64 = 1000;
/// Id of the first auction.
pub(crate) const FIRST_AUCTION_ID: i64 = 1000;
/// Id of the first category.
pub(crate) const FIRST_CATEGORY_ID: i64 = 10;
/// Number of categories.
pub(crate) const NUM_CATEGORIES: u64 = 5;
/// Random person ids may reach this far past the newest person.
const PERSON_ID_LEAD: u64 = 10;
/// Random auction ids may reach this far past the newest auction.
const AUCTION_ID_LEAD: u64 = 10;
/// Hot auctions are the newest multiple of this.
const HOT_AUCTION_GROUP: i64 = 100;
/// Hot bidders are the newest multiple of this, plus one.
const HOT_BIDDER_GROUP: i64 = 100;
/// Hot sellers are the newest multiple of this.
const HOT_SELLER_GROUP: i64 = 100;

/// The table event number `n` belongs to.
pub(crate) fn event_table(n: u64) -> NexmarkTable {
    let offset = n % BLOCK_EVENTS;
    if offset < FIRST_AUCTION_OFFSET {
        NexmarkTable::Person
    } else if offset < FIRST_BID_OFFSET {
        NexmarkTable::Auction
    } else {
        NexmarkTable::Bid
    }
}

/// The event numbers of `table` within the block starting at `block_start`,
/// as a half-open range.
pub(crate) fn table_range_in_block(table: NexmarkTable, block_start: u64) -> (u64, u64) {
    match table {
        NexmarkTable::Person => (block_start, block_start + FIRST_AUCTION_OFFSET),
        NexmarkTable::Auction => (
            block_start + FIRST_AUCTION_OFFSET,
            block_start + FIRST_BID_OFFSET,
        ),
        NexmarkTable::Bid => (block_start + FIRST_BID_OFFSET, block_start + BLOCK_EVENTS),
    }
}

/// Zero-based id of the newest person at or before event `n`.
#[inline(always)]
pub(crate) fn last_base0_person_id(n: u64) -> i64 {
    // Every block starts with its persons, so the newest person is the
    // block's last one (or an earlier one while its persons are still coming).
    let block = n / BLOCK_EVENTS;
    let offset = n % BLOCK_EVENTS;
    #[expect(
        clippy::unnecessary_min_or_max,
        reason = "general in PERSON_PROPORTION; a no-op only while it is 1"
    )]
    let offset = offset.min(PERSON_PROPORTION - 1);
    (block * PERSON_PROPORTION + offset) as i64
}

/// Zero-based id of the newest auction at or before event `n` (`-1` before the first).
#[inline(always)]
pub(crate) fn last_base0_auction_id(n: u64) -> i64 {
    let block = (n / BLOCK_EVENTS) as i64;
    let offset = n % BLOCK_EVENTS;
    let (block, offset) = if offset < FIRST_AUCTION_OFFSET {
        (block - 1, AUCTION_PROPORTION - 1)
    } else if offset >= FIRST_BID_OFFSET {
        (block, AUCTION_PROPORTION - 1)
    } else {
        (block, offset - FIRST_AUCTION_OFFSET)
    };
    block * AUCTION_PROPORTION as i64 + offset as i64
}

/// A random zero-based id among the active people at event `n`.
#[inline(always)]
pub(crate) fn next_base0_person_id(n: u64, active_people: u64, rng: &mut SplitMix64) -> i64 {
    let num_people = last_base0_person_id(n) as u64 + 1;
    let active = num_people.min(active_people);
    (num_people - active + rng.next_below(active + PERSON_ID_LEAD)) as i64
}

/// A random zero-based id among the in-flight auctions at event `n`.
#[inline(always)]
pub(crate) fn next_base0_auction_id(n: u64, in_flight: u64, rng: &mut SplitMix64) -> i64 {
    let max_auction = last_base0_auction_id(n).max(0);
    let min_auction = (max_auction - in_flight as i64).max(0);
    min_auction + rng.next_below((max_auction - min_auction) as u64 + 1 + AUCTION_ID_LEAD) as i64
}

/// The hot auction (zero-based) at event `n`.
#[inline(always)]
pub(crate) fn hot_base0_auction_id(n: u64) -> i64 {
    (last_base0_auction_id(n).max(0) / HOT_AUCTION_GROUP) * HOT_AUCTION_GROUP
}

/// The hot bidder (zero-based) at event `n`.
#[inline(always)]
pub(crate) fn hot_base0_bidder_id(n: u64) -> i64 {
    (last_base0_person_id(n) / HOT_BIDDER_GROUP) * HOT_BIDDER_GROUP + 1
}

/// The hot seller (zero-based) at event `n`.
#[inline(always)]
pub(crate) fn hot_base0_seller_id(n: u64) -> i64 {
    (last_base0_person_id(n) / HOT_SELLER_GROUP) * HOT_SELLER_GROUP
}

/// Event time: event `n` happens at `base_ms + floor(n * 1000 / rate)` ms.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeline {
    base_ms: i64,
    rate: u64,
    step_ms: u64,
    step_rem: u64,
}

impl Timeline {
    /// A clock starting at `base_ms` that runs `rate` (> 0) events per second.
    pub(crate) fn new(base_ms: i64, rate: u64) -> Self {
        Self {
            base_ms,
            rate,
            step_ms: 1000 / rate,
            step_rem: 1000 % rate,
        }
    }

    /// The timestamp of event `n`, in ms.
    pub(crate) fn timestamp(&self, n: u64) -> i64 {
        self.cursor(n).millis
    }

    /// A cursor at event `n` that steps to later events without division.
    #[inline]
    pub(crate) fn cursor(&self, n: u64) -> TimeCursor {
        let scaled = u128::from(n) * 1000;
        let rate = u128::from(self.rate);
        TimeCursor {
            millis: self.base_ms.wrapping_add((scaled / rate) as i64),
            rem: (scaled % rate) as u64,
            step_ms: self.step_ms as i64,
            step_rem: self.step_rem,
            rate: self.rate,
        }
    }
}

/// The event time of one event, advanced one event at a time.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TimeCursor {
    /// Timestamp of the current event in ms.
    pub(crate) millis: i64,
    rem: u64,
    step_ms: i64,
    step_rem: u64,
    rate: u64,
}

impl TimeCursor {
    /// Moves to the next event number.
    #[inline(always)]
    pub(crate) fn advance(&mut self) {
        self.millis += self.step_ms;
        self.rem += self.step_rem;
        if self.rem >= self.rate {
            self.rem -= self.rate;
            self.millis += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_follow_the_block_layout() {
        assert_eq!(event_table(0), NexmarkTable::Person);
        assert_eq!(event_table(1), NexmarkTable::Auction);
        assert_eq!(event_table(3), NexmarkTable::Auction);
        assert_eq!(event_table(4), NexmarkTable::Bid);
        assert_eq!(event_table(49), NexmarkTable::Bid);
        assert_eq!(event_table(50), NexmarkTable::Person);
        for table in NexmarkTable::ALL {
            let (lo, hi) = table_range_in_block(table, 100);
            assert!((lo..hi).all(|n| event_table(n) == table));
        }
    }

    #[test]
    fn ids_count_persons_and_auctions() {
        // Event 0 is person 0, events 1..4 are auctions 0..3, event 50 is person 1.
        assert_eq!(last_base0_person_id(0), 0);
        assert_eq!(last_base0_person_id(49), 0);
        assert_eq!(last_base0_person_id(50), 1);
        assert_eq!(last_base0_auction_id(0), -1);
        assert_eq!(last_base0_auction_id(1), 0);
        assert_eq!(last_base0_auction_id(3), 2);
        assert_eq!(last_base0_auction_id(10), 2);
        assert_eq!(last_base0_auction_id(50), 2);
        assert_eq!(last_base0_auction_id(51), 3);
    }

    #[test]
    fn random_ids_stay_near_the_present() {
        let mut rng = SplitMix64::new(3);
        for n in [10u64, 5_000, 1_000_000] {
            for _ in 0..100 {
                let person = next_base0_person_id(n, 1000, &mut rng);
                assert!(person <= last_base0_person_id(n) + PERSON_ID_LEAD as i64);
                assert!(person >= last_base0_person_id(n) + 1 - 1000);
                let auction = next_base0_auction_id(n, 100, &mut rng);
                assert!(auction <= last_base0_auction_id(n) + AUCTION_ID_LEAD as i64);
                assert!(auction >= last_base0_auction_id(n) - 100);
            }
        }
    }

    #[test]
    fn cursor_matches_direct_timestamps() {
        for rate in [1, 3, 7, 1000, 10_000_000] {
            let timeline = Timeline::new(17, rate);
            let mut cursor = timeline.cursor(12_345);
            for n in 12_345..12_345 + 5000 {
                assert_eq!(
                    cursor.millis,
                    timeline.timestamp(n),
                    "rate {rate} event {n}"
                );
                cursor.advance();
            }
        }
        assert_eq!(Timeline::new(0, 10_000_000).timestamp(10_000_000), 1000);
    }
}
