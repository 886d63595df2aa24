//! The Nexmark queries on the DataStream API, as the CLI, the throughput harness and the
//! examples run them.
//!
//! - `q0`: pass-through of every bid.
//! - `q1`: currency conversion, `price * 908 / 1000` (Nexmark's dollar-to-euro rate 0.908).
//! - `q2`: selection, bids whose `auction % 123 = 0`.
//! - `count`: bids per auction, `COUNT(*)` keyed by `auction` (final at end of input).
//! - `hop`: bids per auction in hopping event-time windows of 10 s sliding by 2 s (the
//!   shape of Nexmark q5's first step), watermark 1 s behind `dateTime`.
//! - `join`: each bid with its auction when the bid comes within 10 s of the auction
//!   (an interval join of two Nexmark sources on `auction = id`).
//!
//! [`NexmarkQuery::configure`] sets the generator's event-time pace a query is meant for.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use sluice_datasets::nexmark::{NexmarkConfig, NexmarkTable};

use super::StreamEnvironment;
use crate::connector::{NexmarkSource, SinkSpec, SourceSpec};
use crate::expr::{col, lit};
use crate::graph::{AggregateCall, AggregateFunction, WindowKind, WindowTime};
use crate::time::WatermarkStrategy;
use crate::{Error, Result};

/// The Nexmark queries Sluice implements on the DataStream API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NexmarkQuery {
    Q0,
    Q1,
    Q2,
    /// Keyed count per auction.
    Count,
    /// Hopping-window count per auction.
    Hop,
    /// Interval join of bids with their auctions.
    Join,
}

impl NexmarkQuery {
    pub const ALL: [NexmarkQuery; 6] = [
        NexmarkQuery::Q0,
        NexmarkQuery::Q1,
        NexmarkQuery::Q2,
        NexmarkQuery::Count,
        NexmarkQuery::Hop,
        NexmarkQuery::Join,
    ];

    /// Adapts the generator to the query: windowed queries get one event per millisecond of
    /// event time (as the Flink comparison workloads advance `date_time` 1 ms per row), so
    /// 10 M events span about 2.8 hours of windows; the others keep the generator's defaults.
    pub fn configure(self, config: NexmarkConfig) -> NexmarkConfig {
        match self {
            NexmarkQuery::Hop => config.with_first_event_rate(1000),
            NexmarkQuery::Q0
            | NexmarkQuery::Q1
            | NexmarkQuery::Q2
            | NexmarkQuery::Count
            | NexmarkQuery::Join => config,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            NexmarkQuery::Q0 => "q0",
            NexmarkQuery::Q1 => "q1",
            NexmarkQuery::Q2 => "q2",
            NexmarkQuery::Count => "count",
            NexmarkQuery::Hop => "hop",
            NexmarkQuery::Join => "join",
        }
    }
}

impl fmt::Display for NexmarkQuery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for NexmarkQuery {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        NexmarkQuery::ALL
            .into_iter()
            .find(|q| q.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| Error::Config {
                key: "query".into(),
                value: s.into(),
                message: "unknown Nexmark query; expected one of q0, q1, q2, count, hop, join"
                    .into(),
            })
    }
}

/// Adds `query` over the Nexmark generator to `env`, writing into `sink`.
pub fn add_query(
    env: &StreamEnvironment,
    query: NexmarkQuery,
    config: NexmarkConfig,
    sink: SinkSpec,
) -> Result<()> {
    let source = |name: &str, table: NexmarkTable| {
        env.source_with_watermarks(
            name,
            SourceSpec::Nexmark(NexmarkSource::new(table, config.clone())),
            WatermarkStrategy::bounded_out_of_orderness("dateTime", Duration::from_secs(1)),
        )
    };
    let plain_bids = || {
        env.source(
            "bid",
            SourceSpec::Nexmark(NexmarkSource::new(NexmarkTable::Bid, config.clone())),
        )
    };
    let result = match query {
        NexmarkQuery::Q0 => {
            plain_bids()?.select(&["auction", "bidder", "price", "dateTime", "extra"])?
        }
        NexmarkQuery::Q1 => plain_bids()?.project([
            ("auction", col("auction")),
            ("bidder", col("bidder")),
            ("price", col("price").mul(lit(908i64)).div(lit(1000i64))),
            ("dateTime", col("dateTime")),
            ("extra", col("extra")),
        ])?,
        NexmarkQuery::Q2 => plain_bids()?
            .filter(col("auction").modulo(lit(123i64)).eq(lit(0i64)))?
            .select(&["auction", "price"])?,
        // Only the key crosses the exchange, as a planner's projection push-down would do.
        NexmarkQuery::Count => plain_bids()?
            .select(&["auction"])?
            .key_by(["auction"])
            .count("bids")?,
        NexmarkQuery::Hop => source("bid", NexmarkTable::Bid)?
            .select(&["auction", "dateTime"])?
            .key_by(["auction"])
            .window(
                WindowKind::hopping(10_000, 2_000),
                WindowTime::EventTime {
                    column: "dateTime".into(),
                },
            )
            .aggregate(vec![AggregateCall {
                function: AggregateFunction::Count,
                input: None,
                output: "bids".into(),
            }])?,
        NexmarkQuery::Join => {
            let bids = source("bid", NexmarkTable::Bid)?
                .select(&["auction", "bidder", "price", "dateTime"])?;
            let auctions = source("auction", NexmarkTable::Auction)?
                .select(&["id", "seller", "category", "dateTime"])?;
            bids.join(&auctions, ["auction"], ["id"])
                .interval("dateTime", "dateTime", 0, 10_000)?
        }
    };
    result.sink("sink", sink)
}
