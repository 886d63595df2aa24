//! The three Nexmark tables and their Arrow schemas, matching the column
//! names and types of Flink's Nexmark DDL (`TIMESTAMP(3)` is
//! `Timestamp(Millisecond, None)`, `STRING` is `Utf8`).

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, LazyLock};

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// One of the three Nexmark tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NexmarkTable {
    /// People registering to buy or sell (2 % of events).
    Person,
    /// Items put up for auction (6 % of events).
    Auction,
    /// Bids on auctions (92 % of events).
    Bid,
}

impl NexmarkTable {
    /// All tables, in event-block order.
    pub const ALL: [NexmarkTable; 3] = [
        NexmarkTable::Person,
        NexmarkTable::Auction,
        NexmarkTable::Bid,
    ];

    /// The table name as used in SQL (`person`, `auction`, `bid`).
    pub fn name(self) -> &'static str {
        match self {
            NexmarkTable::Person => "person",
            NexmarkTable::Auction => "auction",
            NexmarkTable::Bid => "bid",
        }
    }

    /// The Arrow schema of the table's batches.
    pub fn schema(self) -> SchemaRef {
        match self {
            NexmarkTable::Person => Arc::clone(&PERSON_SCHEMA),
            NexmarkTable::Auction => Arc::clone(&AUCTION_SCHEMA),
            NexmarkTable::Bid => Arc::clone(&BID_SCHEMA),
        }
    }
}

impl fmt::Display for NexmarkTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for NexmarkTable {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "person" => Ok(NexmarkTable::Person),
            "auction" => Ok(NexmarkTable::Auction),
            "bid" => Ok(NexmarkTable::Bid),
            _ => Err(Error::invalid_option(
                "table",
                s,
                "is not a Nexmark table (person, auction, bid)",
            )),
        }
    }
}

fn timestamp() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, None)
}

static PERSON_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, true),
        Field::new("name", DataType::Utf8, true),
        Field::new("emailAddress", DataType::Utf8, true),
        Field::new("creditCard", DataType::Utf8, true),
        Field::new("city", DataType::Utf8, true),
        Field::new("state", DataType::Utf8, true),
        Field::new("dateTime", timestamp(), true),
        Field::new("extra", DataType::Utf8, true),
    ]))
});

static AUCTION_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, true),
        Field::new("itemName", DataType::Utf8, true),
        Field::new("description", DataType::Utf8, true),
        Field::new("initialBid", DataType::Int64, true),
        Field::new("reserve", DataType::Int64, true),
        Field::new("dateTime", timestamp(), true),
        Field::new("expires", timestamp(), true),
        Field::new("seller", DataType::Int64, true),
        Field::new("category", DataType::Int64, true),
        Field::new("extra", DataType::Utf8, true),
    ]))
});

static BID_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("auction", DataType::Int64, true),
        Field::new("bidder", DataType::Int64, true),
        Field::new("price", DataType::Int64, true),
        Field::new("channel", DataType::Utf8, true),
        Field::new("url", DataType::Utf8, true),
        Field::new("dateTime", timestamp(), true),
        Field::new("extra", DataType::Utf8, true),
    ]))
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() -> Result<()> {
        for table in NexmarkTable::ALL {
            assert_eq!(table.name().parse::<NexmarkTable>()?, table);
        }
        assert!("bids".parse::<NexmarkTable>().is_err());
        Ok(())
    }

    #[test]
    fn schemas_have_flink_columns() {
        assert_eq!(NexmarkTable::Person.schema().fields().len(), 8);
        assert_eq!(NexmarkTable::Auction.schema().fields().len(), 10);
        let bid = NexmarkTable::Bid.schema();
        let names: Vec<_> = bid.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(
            names,
            [
                "auction", "bidder", "price", "channel", "url", "dateTime", "extra"
            ]
        );
    }
}
