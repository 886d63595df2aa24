//! Nexmark generator settings and the split of the event stream over subtasks.
//!
//! A [`NexmarkConfig`] fixes the content of every event: event `n` depends only
//! on the config and `n`. A [`NexmarkSplit`] says which event numbers one
//! generator produces and where it resumes, so it doubles as the checkpointed
//! position of a parallel source.

use serde::{Deserialize, Serialize};

use super::model::BLOCK_EVENTS;
use crate::error::{Error, Result};

/// Settings of the Nexmark generator; the defaults follow the Flink Nexmark
/// benchmark, except that `extra` padding defaults to empty for throughput.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct NexmarkConfig {
    /// Seed of all randomness. Default `0`.
    pub seed: u64,
    /// Total number of events (all three kinds) over all subtasks; `None` is
    /// unbounded. Used by [`NexmarkConfig::split`]. Default 100 000 000.
    pub events: Option<u64>,
    /// Event rate in events per second of event time over all subtasks; sets
    /// the inter-event delay of `date_time`. Default 10 000 000.
    pub first_event_rate: u64,
    /// `date_time` of event 0, in milliseconds since the Unix epoch.
    /// Default 1 704 067 200 000 (2024-01-01T00:00:00Z).
    pub base_time_ms: i64,
    /// One in `hot_auction_ratio` bids goes to a random in-flight auction; the
    /// others go to the current "hot" auction. Default 2 (half of the bids are hot).
    pub hot_auction_ratio: u32,
    /// One in `hot_bidder_ratio` bids comes from a random active person; the
    /// others come from the current "hot" bidder. Default 4.
    pub hot_bidder_ratio: u32,
    /// One in `hot_seller_ratio` auctions is sold by a random active person; the
    /// others by the current "hot" seller. Default 4.
    pub hot_seller_ratio: u32,
    /// Number of recent people that bid and sell. Default 1000.
    pub num_active_people: u64,
    /// Number of recent auctions that receive bids. Default 100.
    pub num_in_flight_auctions: u64,
    /// Average length in bytes of `person.extra` (uniform within ±20 %). Default 0.
    pub person_extra_avg_len: u32,
    /// Average length in bytes of `auction.extra` (uniform within ±20 %). Default 0.
    pub auction_extra_avg_len: u32,
    /// Average length in bytes of `bid.extra` (uniform within ±20 %). Default 0.
    pub bid_extra_avg_len: u32,
}

impl Default for NexmarkConfig {
    fn default() -> Self {
        Self {
            seed: 0,
            events: Some(100_000_000),
            first_event_rate: 10_000_000,
            base_time_ms: 1_704_067_200_000,
            hot_auction_ratio: 2,
            hot_bidder_ratio: 4,
            hot_seller_ratio: 4,
            num_active_people: 1000,
            num_in_flight_auctions: 100,
            person_extra_avg_len: 0,
            auction_extra_avg_len: 0,
            bid_extra_avg_len: 0,
        }
    }
}

impl NexmarkConfig {
    /// Sets the seed.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Sets the total number of events (`None` = unbounded).
    pub fn with_events(mut self, events: Option<u64>) -> Self {
        self.events = events;
        self
    }

    /// Sets the event rate in events per second.
    pub fn with_first_event_rate(mut self, events_per_second: u64) -> Self {
        self.first_event_rate = events_per_second;
        self
    }

    /// Sets the `date_time` of event 0 (ms since the epoch).
    pub fn with_base_time_ms(mut self, base_time_ms: i64) -> Self {
        self.base_time_ms = base_time_ms;
        self
    }

    /// Checks that every setting is in range.
    pub fn validate(&self) -> Result<()> {
        let positive = [
            ("first-event-rate", self.first_event_rate),
            ("hot-auction-ratio", u64::from(self.hot_auction_ratio)),
            ("hot-bidder-ratio", u64::from(self.hot_bidder_ratio)),
            ("hot-seller-ratio", u64::from(self.hot_seller_ratio)),
            ("num-active-people", self.num_active_people),
            ("num-in-flight-auctions", self.num_in_flight_auctions),
        ];
        for (key, value) in positive {
            if value == 0 {
                return Err(Error::invalid_config(format!(
                    "nexmark {key} = 0; it must be at least 1"
                )));
            }
        }
        let limit = 1u32 << 20;
        for (key, value) in [
            ("person-extra-avg-len", self.person_extra_avg_len),
            ("auction-extra-avg-len", self.auction_extra_avg_len),
            ("bid-extra-avg-len", self.bid_extra_avg_len),
        ] {
            if value > limit {
                return Err(Error::invalid_config(format!(
                    "nexmark {key} = {value}; it must be at most {limit}"
                )));
            }
        }
        Ok(())
    }

    /// Splits the events `0..events` over `parallelism` subtasks.
    ///
    /// Events are dealt in blocks of 50 consecutive event numbers (one
    /// person, three auctions, 46 bids): block `b` belongs to subtask
    /// `b % parallelism`. Every subtask thus sees all three event kinds in
    /// their usual shares and event time advancing at the same pace, which
    /// keeps watermarks of parallel sources aligned. The union of the splits
    /// is exactly `0..events`.
    pub fn split(&self, parallelism: u32) -> Result<Vec<NexmarkSplit>> {
        self.validate()?;
        if parallelism == 0 {
            return Err(Error::invalid_config(
                "nexmark parallelism = 0; it must be at least 1",
            ));
        }
        Ok((0..parallelism)
            .map(|subtask| NexmarkSplit {
                subtask,
                parallelism,
                next_event: 0,
                end_event: self.events,
            })
            .collect())
    }
}

/// The events one generator owns, and its position among them.
///
/// The generator produces the event numbers `n` in `next_event..end_event`
/// whose block `n / 50` satisfies `block % parallelism == subtask`. Taking
/// [`super::NexmarkGenerator::split`] after any batch and building a new
/// generator from it resumes exactly where the first one stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NexmarkSplit {
    /// Index of this split, `0..parallelism`.
    pub subtask: u32,
    /// Number of splits the event stream is dealt over.
    pub parallelism: u32,
    /// First event number not yet produced (need not belong to this split).
    pub next_event: u64,
    /// End of the event range (exclusive); `None` is unbounded.
    pub end_event: Option<u64>,
}

impl NexmarkSplit {
    /// A split owning every event of `first_event..end_event`.
    pub fn range(first_event: u64, end_event: Option<u64>) -> Self {
        Self {
            subtask: 0,
            parallelism: 1,
            next_event: first_event,
            end_event,
        }
    }

    /// Whether event `n` belongs to this split (ignoring the range).
    pub fn owns(&self, n: u64) -> bool {
        (n / BLOCK_EVENTS) % u64::from(self.parallelism) == u64::from(self.subtask)
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if self.parallelism == 0 || self.subtask >= self.parallelism {
            return Err(Error::invalid_config(format!(
                "nexmark split subtask = {}, parallelism = {}; need 0 <= subtask < parallelism",
                self.subtask, self.parallelism
            )));
        }
        Ok(())
    }
}

/// Several splits out of `count`, each with its position: what one reader of a rescalable
/// source owns. Event `n` belongs to split `(n / 50) % count`; the number of splits does not
/// depend on the parallelism, so positions can be regrouped when it changes.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct NexmarkSplitSet {
    /// Number of splits the event stream is dealt over.
    pub count: u32,
    /// Split index → first event number not yet produced.
    pub positions: std::collections::BTreeMap<u32, u64>,
    /// End of the event range (exclusive); `None` is unbounded.
    pub end_event: Option<u64>,
}

impl NexmarkSplitSet {
    pub(crate) fn validate(&self) -> Result<()> {
        if self.count == 0 {
            return Err(Error::invalid_config("nexmark split count = 0"));
        }
        if let Some((&split, _)) = self.positions.range(self.count..).next() {
            return Err(Error::invalid_config(format!(
                "nexmark split {split} of {}; need split < count",
                self.count
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_covers_every_event_once() -> Result<()> {
        let config = NexmarkConfig::default().with_events(Some(1000));
        for parallelism in 1..=4 {
            let splits = config.split(parallelism)?;
            for n in 0..1000 {
                assert_eq!(splits.iter().filter(|s| s.owns(n)).count(), 1);
            }
        }
        Ok(())
    }

    #[test]
    fn invalid_settings_are_rejected() {
        let config = NexmarkConfig {
            hot_auction_ratio: 0,
            ..NexmarkConfig::default()
        };
        let err = config.validate().expect_err("ratio 0 is invalid");
        assert!(err.to_string().contains("hot-auction-ratio"), "{err}");
        assert!(NexmarkConfig::default().split(0).is_err());
    }

    #[test]
    fn config_serde_uses_defaults() -> Result<(), serde_json::Error> {
        let config: NexmarkConfig = serde_json::from_str(r#"{"seed": 5}"#)?;
        assert_eq!(config, NexmarkConfig::default().with_seed(5));
        Ok(())
    }
}
