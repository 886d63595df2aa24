//! The Nexmark queries on the DataStream API, as the CLI, the throughput harness and the
//! examples run them.
//!
//! - `q0`: pass-through of every bid.
//! - `q1`: currency conversion, `price * 908 / 1000` (Nexmark's dollar-to-euro rate 0.908).
//! - `q2`: selection, bids whose `auction % 123 = 0`.
//! - `count`: bids per auction, `COUNT(*)` keyed by `auction` (final at end of input).

use std::fmt;
use std::str::FromStr;

use sluice_datasets::nexmark::{NexmarkConfig, NexmarkTable};

use super::StreamEnvironment;
use crate::connector::{NexmarkSource, SinkSpec, SourceSpec};
use crate::expr::{col, lit};
use crate::{Error, Result};

/// The Nexmark queries Sluice implements on the DataStream API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NexmarkQuery {
    Q0,
    Q1,
    Q2,
    /// Keyed count per auction.
    Count,
}

impl NexmarkQuery {
    pub const ALL: [NexmarkQuery; 4] = [
        NexmarkQuery::Q0,
        NexmarkQuery::Q1,
        NexmarkQuery::Q2,
        NexmarkQuery::Count,
    ];

    pub fn name(self) -> &'static str {
        match self {
            NexmarkQuery::Q0 => "q0",
            NexmarkQuery::Q1 => "q1",
            NexmarkQuery::Q2 => "q2",
            NexmarkQuery::Count => "count",
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
                message: "unknown Nexmark query; expected one of q0, q1, q2, count".into(),
            })
    }
}

/// Adds `query` over the generator's bids to `env`, writing into `sink`.
pub fn add_query(
    env: &StreamEnvironment,
    query: NexmarkQuery,
    config: NexmarkConfig,
    sink: SinkSpec,
) -> Result<()> {
    let bids = env.source(
        "bid",
        SourceSpec::Nexmark(NexmarkSource::new(NexmarkTable::Bid, config)),
    )?;
    let result = match query {
        NexmarkQuery::Q0 => bids.select(&["auction", "bidder", "price", "dateTime", "extra"])?,
        NexmarkQuery::Q1 => bids.project([
            ("auction", col("auction")),
            ("bidder", col("bidder")),
            ("price", col("price").mul(lit(908i64)).div(lit(1000i64))),
            ("dateTime", col("dateTime")),
            ("extra", col("extra")),
        ])?,
        NexmarkQuery::Q2 => bids
            .filter(col("auction").modulo(lit(123i64)).eq(lit(0i64)))?
            .select(&["auction", "price"])?,
        // Only the key crosses the exchange, as a planner's projection push-down would do.
        NexmarkQuery::Count => bids
            .select(&["auction"])?
            .key_by(["auction"])
            .count("bids")?,
    };
    result.sink("sink", sink)
}
