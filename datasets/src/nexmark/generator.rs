//! [`NexmarkGenerator`]: turns a range of event numbers into Arrow batches.
//!
//! Each event draws its random values from its own [`SplitMix64`] slot keyed
//! by `(seed, event number)` (fewer than [`crate::random::SLOT_DRAWS`] draws;
//! long strings fork), and its timestamp and ids are functions of the
//! event number alone, so the rows do not depend on how the event range is
//! split into generators or batches. Columns are filled directly in `Vec`s,
//! one loop per table per block segment; tables that are not requested are
//! skipped without drawing their random numbers.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch};
use arrow::datatypes::{Int64Type, TimestampMillisecondType};

use super::config::{NexmarkConfig, NexmarkSplit, NexmarkSplitSet};
use super::model::{
    AUCTION_PROPORTION, BID_PROPORTION, BLOCK_EVENTS, FIRST_AUCTION_ID, FIRST_CATEGORY_ID,
    FIRST_PERSON_ID, NUM_CATEGORIES, PERSON_PROPORTION, Timeline, hot_base0_auction_id,
    hot_base0_bidder_id, hot_base0_seller_id, last_base0_auction_id, last_base0_person_id,
    next_base0_auction_id, next_base0_person_id, table_range_in_block,
};
use super::schema::NexmarkTable;
use super::vocabulary::{
    CITIES, ChannelTable, FIRST_NAMES, LAST_NAMES, STATES, next_price, push_extra, push_letters,
    push_random_text,
};
use crate::column::{StringColumn, primitive};
use crate::error::{Error, Result};
use crate::random::{SplitMix64, stream_key};

/// Stream tag of the per-event randomness.
const EVENT_STREAM: u64 = 0x6e65_786d_6172_6b00;

/// The batches produced by one [`NexmarkGenerator::next_batches`] call.
///
/// A table that was requested always has a batch, possibly with zero rows; a
/// table that was not requested is `None`.
#[derive(Debug, Clone)]
pub struct NexmarkBatches {
    /// Rows of the `person` table.
    pub person: Option<RecordBatch>,
    /// Rows of the `auction` table.
    pub auction: Option<RecordBatch>,
    /// Rows of the `bid` table.
    pub bid: Option<RecordBatch>,
    /// Number of events (of all kinds) consumed.
    pub events: u64,
}

impl NexmarkBatches {
    /// The batch of `table`, if that table was requested.
    pub fn get(&self, table: NexmarkTable) -> Option<&RecordBatch> {
        match table {
            NexmarkTable::Person => self.person.as_ref(),
            NexmarkTable::Auction => self.auction.as_ref(),
            NexmarkTable::Bid => self.bid.as_ref(),
        }
    }
}

/// Generates the Nexmark events of one [`NexmarkSplit`] as Arrow batches.
///
/// Event `n` is a person, an auction or a bid by the rule `n % 50` (one
/// person, three auctions, 46 bids per block). Its `dateTime` is
/// `base_time_ms + floor(n * 1000 / first_event_rate)` milliseconds, so with
/// the default 10 M events/s, 10 000 consecutive events share a millisecond.
///
/// ```
/// use sluice_datasets::nexmark::{NexmarkConfig, NexmarkGenerator, NexmarkTable};
///
/// let config = NexmarkConfig::default().with_events(Some(1000));
/// let mut generator = NexmarkGenerator::new(config, 0, Some(1000))?;
/// let bids = generator.next_table_batch(NexmarkTable::Bid, 500)?.expect("events left");
/// assert_eq!(bids.num_rows(), 500);
/// # Ok::<(), sluice_datasets::Error>(())
/// ```
#[derive(Debug)]
pub struct NexmarkGenerator {
    config: NexmarkConfig,
    split: NexmarkSplit,
    tables: [bool; 3],
    timeline: Timeline,
    channels: ChannelTable,
    event_key: u64,
    /// Events until the auctions alive now have all been replaced, which sets
    /// the span of auction expiry times.
    horizon_events: u64,
    /// Reading a set of splits ([`NexmarkGenerator::from_split_set`]): for each of the
    /// `count` splits, the first event it still owes, or `u64::MAX` if it is not in the set.
    /// `split` then only carries the cursor (`next_event`) and the end.
    split_set: Option<Vec<u64>>,
    /// Events at or after this one wait ([`NexmarkGenerator::set_pause_at`]).
    pause_at: u64,
}

impl NexmarkGenerator {
    /// A generator of every event in `first_event..end_event` (`None` = unbounded),
    /// producing all three tables. `config.events` is not consulted.
    pub fn new(config: NexmarkConfig, first_event: u64, end_event: Option<u64>) -> Result<Self> {
        Self::from_split(config, NexmarkSplit::range(first_event, end_event))
    }

    /// A generator of the events of `split`, starting at `split.next_event`;
    /// see [`NexmarkConfig::split`].
    pub fn from_split(config: NexmarkConfig, split: NexmarkSplit) -> Result<Self> {
        config.validate()?;
        split.validate()?;
        Ok(Self {
            timeline: Timeline::new(config.base_time_ms, config.first_event_rate),
            channels: ChannelTable::new(config.seed),
            event_key: stream_key(config.seed, EVENT_STREAM),
            horizon_events: config.num_in_flight_auctions * BLOCK_EVENTS / AUCTION_PROPORTION,
            tables: [true; 3],
            config,
            split,
            split_set: None,
            pause_at: u64::MAX,
        })
    }

    /// A generator of the events of several splits of [`NexmarkSplitSet::count`] splits, read
    /// as one stream in event order: event `n` belongs to split `(n / 50) % count`. Each split
    /// resumes at its own position, so positions taken by readers at one parallelism can be
    /// regrouped at any other ([`NexmarkGenerator::split_positions`]).
    pub fn from_split_set(config: NexmarkConfig, set: &NexmarkSplitSet) -> Result<Self> {
        set.validate()?;
        let mut next = vec![u64::MAX; set.count as usize];
        for (&split, &position) in &set.positions {
            next[split as usize] = position;
        }
        let cursor = set.positions.values().copied().min().unwrap_or(0);
        let mut generator = Self::from_split(config, NexmarkSplit::range(cursor, set.end_event))?;
        if set.positions.is_empty() {
            // Nothing to read: an empty range.
            generator.split.end_event = Some(cursor);
        }
        generator.split_set = Some(next);
        Ok(generator)
    }

    /// With a split set: the position of every split in it (the first event it has not
    /// produced yet).
    pub fn split_positions(&self) -> Vec<(u32, u64)> {
        let Some(next) = &self.split_set else {
            return Vec::new();
        };
        let end = self.split.end_event.unwrap_or(u64::MAX);
        next.iter()
            .enumerate()
            .filter(|(_, n)| **n != u64::MAX)
            .map(|(split, &n)| (split as u32, n.max(self.split.next_event.min(end))))
            .collect()
    }

    /// Holds back events numbered `event` and later (a wall-clock rate limit); batches end
    /// there until the pause moves. `None` lifts it.
    pub fn set_pause_at(&mut self, event: Option<u64>) {
        self.pause_at = event.unwrap_or(u64::MAX);
    }

    /// The next event this generator would produce (its cursor in the event stream).
    pub fn next_event(&self) -> u64 {
        self.next_owned_event(self.split.next_event)
    }

    /// Restricts [`NexmarkGenerator::next_batches`] to `tables`; the others
    /// come back as `None` and cost nothing. Event numbers are consumed the
    /// same way, so the rows of a table do not depend on this choice.
    pub fn with_tables(mut self, tables: &[NexmarkTable]) -> Self {
        self.tables = [false; 3];
        for &table in tables {
            self.tables[table_index(table)] = true;
        }
        self
    }

    /// The configuration.
    pub fn config(&self) -> &NexmarkConfig {
        &self.config
    }

    /// The current position: a generator built from it continues exactly here.
    pub fn split(&self) -> NexmarkSplit {
        self.split
    }

    /// Whether every event of the split has been produced.
    pub fn is_exhausted(&self) -> bool {
        let next = self.next_owned_event(self.split.next_event);
        self.split.end_event.is_some_and(|end| next >= end)
    }

    /// Consumes up to `max_events` events of the split and returns their rows,
    /// one batch per requested table; `None` once the split is exhausted.
    pub fn next_batches(&mut self, max_events: usize) -> Result<Option<NexmarkBatches>> {
        if self.is_exhausted() {
            return Ok(None);
        }
        let max_events = max_events as u64;
        let mut columns = Columns::new(self.tables, max_events, &self.config);
        let events = self.fill(&mut columns, max_events, None);
        let [person, auction, bid] = columns.finish()?;
        Ok(Some(NexmarkBatches {
            person,
            auction,
            bid,
            events,
        }))
    }

    /// Returns up to `max_rows` rows of `table` only, consuming events until
    /// that many rows are produced or the split ends; `None` once the split is
    /// exhausted. This is the fast path for sources that read one table.
    pub fn next_table_batch(
        &mut self,
        table: NexmarkTable,
        max_rows: usize,
    ) -> Result<Option<RecordBatch>> {
        if self.is_exhausted() {
            return Ok(None);
        }
        let mut tables = [false; 3];
        tables[table_index(table)] = true;
        let share = match table {
            NexmarkTable::Person => PERSON_PROPORTION,
            NexmarkTable::Auction => AUCTION_PROPORTION,
            NexmarkTable::Bid => BID_PROPORTION,
        };
        let estimated_events = max_rows as u64 * BLOCK_EVENTS / share + BLOCK_EVENTS;
        let mut columns = Columns::new(tables, estimated_events, &self.config);
        self.fill(&mut columns, u64::MAX, Some((table, max_rows as u64)));
        let [person, auction, bid] = columns.finish()?;
        let batch = match table {
            NexmarkTable::Person => person,
            NexmarkTable::Auction => auction,
            NexmarkTable::Bid => bid,
        };
        batch.map(Some).ok_or_else(|| Error::Internal {
            what: format!("no nexmark {table} batch was built"),
        })
    }

    /// The first event at or after `n` that the split owns (ignoring the end).
    fn next_owned_event(&self, n: u64) -> u64 {
        if let Some(next) = &self.split_set {
            return next_in_set(next, n, self.split.end_event.unwrap_or(u64::MAX));
        }
        let parallelism = u64::from(self.split.parallelism);
        let block = n / BLOCK_EVENTS;
        let skip =
            (u64::from(self.split.subtask) + parallelism - block % parallelism) % parallelism;
        if skip == 0 {
            n
        } else {
            (block + skip) * BLOCK_EVENTS
        }
    }

    /// Generates events into `columns` until `max_events` events are consumed,
    /// the row limit of one table is reached, or the split ends. Returns the
    /// number of events consumed.
    fn fill(
        &mut self,
        columns: &mut Columns,
        max_events: u64,
        mut row_limit: Option<(NexmarkTable, u64)>,
    ) -> u64 {
        let end = self
            .split
            .end_event
            .unwrap_or(u64::MAX)
            .min(self.pause_at.max(self.split.next_event));
        let mut consumed = 0;
        while consumed < max_events {
            let n = self.next_owned_event(self.split.next_event);
            if n >= end {
                self.split.next_event = n.min(end);
                break;
            }
            let block_start = n - n % BLOCK_EVENTS;
            let mut segment_end = (block_start + BLOCK_EVENTS)
                .min(end)
                .min(n.saturating_add(max_events - consumed));
            if let Some((table, rows_left)) = row_limit.as_mut() {
                if *rows_left == 0 {
                    self.split.next_event = n;
                    break;
                }
                let (lo, hi) = table_range_in_block(*table, block_start);
                let (lo, hi) = (lo.max(n), hi.min(segment_end));
                if hi > lo {
                    if hi - lo > *rows_left {
                        segment_end = lo + *rows_left;
                    }
                    *rows_left -= segment_end.min(hi) - lo;
                }
            }
            for table in NexmarkTable::ALL {
                if !columns.wants(table) {
                    continue;
                }
                let (lo, hi) = table_range_in_block(table, block_start);
                let (lo, hi) = (lo.max(n), hi.min(segment_end));
                if lo < hi {
                    match table {
                        NexmarkTable::Person => self.persons(columns.person_mut(), lo, hi),
                        NexmarkTable::Auction => self.auctions(columns.auction_mut(), lo, hi),
                        NexmarkTable::Bid => self.bids(columns.bid_mut(), lo, hi),
                    }
                }
            }
            consumed += segment_end - n;
            self.split.next_event = segment_end;
        }
        consumed
    }

    fn persons(&self, cols: Option<&mut PersonColumns>, lo: u64, hi: u64) {
        let Some(cols) = cols else { return };
        let mut time = self.timeline.cursor(lo);
        for n in lo..hi {
            let mut rng = SplitMix64::slot(self.event_key, n);
            cols.id.push(last_base0_person_id(n) + FIRST_PERSON_ID);

            let buf = cols.name.buffer();
            buf.extend_from_slice(pick(FIRST_NAMES, &mut rng).as_bytes());
            buf.push(b' ');
            buf.extend_from_slice(pick(LAST_NAMES, &mut rng).as_bytes());
            cols.name.end_value();

            let buf = cols.email.buffer();
            let user_len = 3 + rng.next_below(6) as usize;
            push_letters(buf, &mut rng, user_len);
            buf.push(b'@');
            push_letters(buf, &mut rng, 5);
            buf.extend_from_slice(b".com");
            cols.email.end_value();

            let buf = cols.credit_card.buffer();
            for group in 0..4 {
                if group > 0 {
                    buf.push(b' ');
                }
                let digits = rng.next_below(10_000);
                buf.extend_from_slice(&[
                    b'0' + (digits / 1000) as u8,
                    b'0' + (digits / 100 % 10) as u8,
                    b'0' + (digits / 10 % 10) as u8,
                    b'0' + (digits % 10) as u8,
                ]);
            }
            cols.credit_card.end_value();

            cols.city.push(pick(CITIES, &mut rng).as_bytes());
            cols.state.push(pick(STATES, &mut rng).as_bytes());
            cols.date_time.push(time.millis);
            time.advance();
            push_extra(
                cols.extra.buffer(),
                &mut rng,
                self.config.person_extra_avg_len,
            );
            cols.extra.end_value();
        }
    }

    fn auctions(&self, cols: Option<&mut AuctionColumns>, lo: u64, hi: u64) {
        let Some(cols) = cols else { return };
        let config = &self.config;
        for n in lo..hi {
            let mut rng = SplitMix64::slot(self.event_key, n);
            cols.id.push(last_base0_auction_id(n) + FIRST_AUCTION_ID);
            let seller = if rng.next_below(u64::from(config.hot_seller_ratio)) > 0 {
                hot_base0_seller_id(n)
            } else {
                next_base0_person_id(n, config.num_active_people, &mut rng)
            };
            cols.seller.push(seller + FIRST_PERSON_ID);
            cols.category
                .push(FIRST_CATEGORY_ID + rng.next_below(NUM_CATEGORIES) as i64);
            let initial_bid = next_price(&mut rng);
            cols.initial_bid.push(initial_bid);
            cols.reserve.push(initial_bid + next_price(&mut rng));

            let date_time = self.timeline.timestamp(n);
            let horizon = self
                .timeline
                .timestamp(n.saturating_add(self.horizon_events))
                - date_time;
            let length = 1 + rng.next_below((2 * horizon).max(1) as u64) as i64;
            cols.date_time.push(date_time);
            cols.expires.push(date_time + length);

            push_random_text(cols.item_name.buffer(), &mut rng, 3, 20);
            cols.item_name.end_value();
            push_random_text(cols.description.buffer(), &mut rng, 3, 100);
            cols.description.end_value();
            push_extra(cols.extra.buffer(), &mut rng, config.auction_extra_avg_len);
            cols.extra.end_value();
        }
    }

    fn bids(&self, cols: Option<&mut BidColumns>, lo: u64, hi: u64) {
        let Some(cols) = cols else { return };
        let hot_auction_ratio = u64::from(self.config.hot_auction_ratio);
        let hot_bidder_ratio = u64::from(self.config.hot_bidder_ratio);
        let in_flight = self.config.num_in_flight_auctions;
        let active_people = self.config.num_active_people;
        let extra_len = self.config.bid_extra_avg_len;
        let mut time = self.timeline.cursor(lo);
        for n in lo..hi {
            let mut rng = SplitMix64::slot(self.event_key, n);
            let auction = if rng.next_below(hot_auction_ratio) > 0 {
                hot_base0_auction_id(n)
            } else {
                next_base0_auction_id(n, in_flight, &mut rng)
            };
            cols.auction.push(auction + FIRST_AUCTION_ID);
            let bidder = if rng.next_below(hot_bidder_ratio) > 0 {
                hot_base0_bidder_id(n)
            } else {
                next_base0_person_id(n, active_people, &mut rng)
            };
            cols.bidder.push(bidder + FIRST_PERSON_ID);
            cols.price.push(next_price(&mut rng));
            let channel = ChannelTable::pick(&mut rng);
            self.channels
                .push(channel, cols.channel.buffer(), cols.url.buffer());
            cols.channel.end_value();
            cols.url.end_value();
            cols.date_time.push(time.millis);
            time.advance();
            push_extra(cols.extra.buffer(), &mut rng, extra_len);
            cols.extra.end_value();
        }
    }
}

fn table_index(table: NexmarkTable) -> usize {
    match table {
        NexmarkTable::Person => 0,
        NexmarkTable::Auction => 1,
        NexmarkTable::Bid => 2,
    }
}

#[inline(always)]
/// The first event at or after `n` (and before `end`, else `end`) of a split in the set
/// `next` (per split: the first event it owes, `u64::MAX` if not in the set).
fn next_in_set(next: &[u64], mut n: u64, end: u64) -> u64 {
    let count = next.len() as u64;
    while n < end {
        let block = n / BLOCK_EVENTS;
        let owes = next[(block % count) as usize];
        let block_end = (block + 1) * BLOCK_EVENTS;
        if owes < block_end {
            return n.max(owes);
        }
        n = block_end;
    }
    end
}

fn pick(list: &'static [&'static str], rng: &mut SplitMix64) -> &'static str {
    list[rng.next_below(list.len() as u64) as usize]
}

/// Column buffers of the requested tables for one call.
struct Columns {
    person: Option<PersonColumns>,
    auction: Option<AuctionColumns>,
    bid: Option<BidColumns>,
}

impl Columns {
    fn new(tables: [bool; 3], events: u64, config: &NexmarkConfig) -> Self {
        // Capacity hints only; cap them so a huge `max_events` cannot over-allocate.
        let events = events.min(1 << 20);
        let rows = |share: u64| (events * share / BLOCK_EVENTS + share) as usize;
        Self {
            person: tables[0]
                .then(|| PersonColumns::new(rows(PERSON_PROPORTION), config.person_extra_avg_len)),
            auction: tables[1].then(|| {
                AuctionColumns::new(rows(AUCTION_PROPORTION), config.auction_extra_avg_len)
            }),
            bid: tables[2].then(|| BidColumns::new(rows(BID_PROPORTION), config.bid_extra_avg_len)),
        }
    }

    fn wants(&self, table: NexmarkTable) -> bool {
        match table {
            NexmarkTable::Person => self.person.is_some(),
            NexmarkTable::Auction => self.auction.is_some(),
            NexmarkTable::Bid => self.bid.is_some(),
        }
    }

    fn person_mut(&mut self) -> Option<&mut PersonColumns> {
        self.person.as_mut()
    }

    fn auction_mut(&mut self) -> Option<&mut AuctionColumns> {
        self.auction.as_mut()
    }

    fn bid_mut(&mut self) -> Option<&mut BidColumns> {
        self.bid.as_mut()
    }

    fn finish(self) -> Result<[Option<RecordBatch>; 3]> {
        Ok([
            self.person.map(PersonColumns::finish).transpose()?,
            self.auction.map(AuctionColumns::finish).transpose()?,
            self.bid.map(BidColumns::finish).transpose()?,
        ])
    }
}

fn int64(values: Vec<i64>) -> ArrayRef {
    Arc::new(primitive::<Int64Type>(values, None))
}

fn timestamps(values: Vec<i64>) -> ArrayRef {
    Arc::new(primitive::<TimestampMillisecondType>(values, None))
}

fn batch(table: NexmarkTable, columns: Vec<ArrayRef>) -> Result<RecordBatch> {
    RecordBatch::try_new(table.schema(), columns)
        .map_err(Error::arrow(format!("nexmark {table} batch")))
}

struct PersonColumns {
    id: Vec<i64>,
    name: StringColumn,
    email: StringColumn,
    credit_card: StringColumn,
    city: StringColumn,
    state: StringColumn,
    date_time: Vec<i64>,
    extra: StringColumn,
}

impl PersonColumns {
    fn new(rows: usize, extra_len: u32) -> Self {
        Self {
            id: Vec::with_capacity(rows),
            name: StringColumn::with_capacity(rows, 16),
            email: StringColumn::with_capacity(rows, 20),
            credit_card: StringColumn::with_capacity(rows, 19),
            city: StringColumn::with_capacity(rows, 10),
            state: StringColumn::with_capacity(rows, 2),
            date_time: Vec::with_capacity(rows),
            extra: StringColumn::with_capacity(rows, extra_len as usize * 6 / 5),
        }
    }

    fn finish(self) -> Result<RecordBatch> {
        let what = "nexmark person column";
        batch(
            NexmarkTable::Person,
            vec![
                int64(self.id),
                self.name.finish(None, what)?,
                self.email.finish(None, what)?,
                self.credit_card.finish(None, what)?,
                self.city.finish(None, what)?,
                self.state.finish(None, what)?,
                timestamps(self.date_time),
                self.extra.finish(None, what)?,
            ],
        )
    }
}

struct AuctionColumns {
    id: Vec<i64>,
    item_name: StringColumn,
    description: StringColumn,
    initial_bid: Vec<i64>,
    reserve: Vec<i64>,
    date_time: Vec<i64>,
    expires: Vec<i64>,
    seller: Vec<i64>,
    category: Vec<i64>,
    extra: StringColumn,
}

impl AuctionColumns {
    fn new(rows: usize, extra_len: u32) -> Self {
        Self {
            id: Vec::with_capacity(rows),
            item_name: StringColumn::with_capacity(rows, 12),
            description: StringColumn::with_capacity(rows, 52),
            initial_bid: Vec::with_capacity(rows),
            reserve: Vec::with_capacity(rows),
            date_time: Vec::with_capacity(rows),
            expires: Vec::with_capacity(rows),
            seller: Vec::with_capacity(rows),
            category: Vec::with_capacity(rows),
            extra: StringColumn::with_capacity(rows, extra_len as usize * 6 / 5),
        }
    }

    fn finish(self) -> Result<RecordBatch> {
        let what = "nexmark auction column";
        batch(
            NexmarkTable::Auction,
            vec![
                int64(self.id),
                self.item_name.finish(None, what)?,
                self.description.finish(None, what)?,
                int64(self.initial_bid),
                int64(self.reserve),
                timestamps(self.date_time),
                timestamps(self.expires),
                int64(self.seller),
                int64(self.category),
                self.extra.finish(None, what)?,
            ],
        )
    }
}

struct BidColumns {
    auction: Vec<i64>,
    bidder: Vec<i64>,
    price: Vec<i64>,
    channel: StringColumn,
    url: StringColumn,
    date_time: Vec<i64>,
    extra: StringColumn,
}

impl BidColumns {
    fn new(rows: usize, extra_len: u32) -> Self {
        Self {
            auction: Vec::with_capacity(rows),
            bidder: Vec::with_capacity(rows),
            price: Vec::with_capacity(rows),
            channel: StringColumn::with_capacity(rows, 10),
            url: StringColumn::with_capacity(rows, 72),
            date_time: Vec::with_capacity(rows),
            extra: StringColumn::with_capacity(rows, extra_len as usize * 6 / 5),
        }
    }

    fn finish(self) -> Result<RecordBatch> {
        let what = "nexmark bid column";
        batch(
            NexmarkTable::Bid,
            vec![
                int64(self.auction),
                int64(self.bidder),
                int64(self.price),
                self.channel.finish(None, what)?,
                self.url.finish(None, what)?,
                timestamps(self.date_time),
                self.extra.finish(None, what)?,
            ],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nexmark::model::event_table;
    use anyhow::Result;
    use arrow::array::{Array, AsArray};
    use arrow::compute::concat_batches;
    use std::collections::BTreeMap;

    fn config(events: u64) -> NexmarkConfig {
        NexmarkConfig::default()
            .with_seed(7)
            .with_events(Some(events))
    }

    /// All rows of `table` from `generator`, in `chunk`-event calls.
    fn drain(
        generator: &mut NexmarkGenerator,
        table: NexmarkTable,
        chunk: usize,
    ) -> Result<RecordBatch> {
        let mut batches = Vec::new();
        while let Some(out) = generator.next_batches(chunk)? {
            batches.extend(out.get(table).cloned());
        }
        Ok(concat_batches(&table.schema(), &batches)?)
    }

    fn drain_table(
        generator: &mut NexmarkGenerator,
        table: NexmarkTable,
        rows: usize,
    ) -> Result<RecordBatch> {
        let mut batches = Vec::new();
        while let Some(batch) = generator.next_table_batch(table, rows)? {
            assert!(batch.num_rows() <= rows);
            batches.push(batch);
        }
        Ok(concat_batches(&table.schema(), &batches)?)
    }

    #[test]
    fn shares_are_two_six_ninety_two_percent() -> Result<()> {
        // The kind of an event is a pure function of its number; count 10 M of them.
        let total = 10_000_000u64;
        let mut counts = [0u64; 3];
        for n in 0..total {
            counts[table_index(event_table(n))] += 1;
        }
        let shares = counts.map(|c| c as f64 / total as f64 * 100.0);
        for (share, expected) in shares.iter().zip([2.0, 6.0, 92.0]) {
            assert!((share - expected).abs() <= 0.1, "{shares:?}");
        }
        // And the generator emits exactly those kinds (sample of 100 k events).
        let mut generator = NexmarkGenerator::new(config(100_000), 0, Some(100_000))?;
        let mut rows = [0usize; 3];
        while let Some(out) = generator.next_batches(8192)? {
            for table in NexmarkTable::ALL {
                rows[table_index(table)] += out.get(table).map_or(0, RecordBatch::num_rows);
            }
        }
        assert_eq!(rows, [2_000, 6_000, 92_000]);
        Ok(())
    }

    #[test]
    fn batch_sizes_and_table_selection_do_not_change_rows() -> Result<()> {
        let events = 12_345;
        for table in NexmarkTable::ALL {
            let reference = drain(
                &mut NexmarkGenerator::new(config(events), 0, Some(events))?,
                table,
                1000,
            )?;
            let other = drain(
                &mut NexmarkGenerator::new(config(events), 0, Some(events))?,
                table,
                777,
            )?;
            assert_eq!(reference, other);
            let only =
                NexmarkGenerator::new(config(events), 0, Some(events))?.with_tables(&[table]);
            assert_eq!(reference, drain(&mut { only }, table, 4096)?);
            let mut fast = NexmarkGenerator::new(config(events), 0, Some(events))?;
            assert_eq!(reference, drain_table(&mut fast, table, 333)?);
        }
        Ok(())
    }

    #[test]
    fn parallel_splits_reproduce_the_single_run() -> Result<()> {
        let events = 20_017;
        for table in NexmarkTable::ALL {
            let single = drain(
                &mut NexmarkGenerator::new(config(events), 0, Some(events))?,
                table,
                4096,
            )?;
            for parallelism in 1..=4 {
                let parts = config(events)
                    .split(parallelism)?
                    .into_iter()
                    .map(|split| {
                        let mut generator = NexmarkGenerator::from_split(config(events), split)?;
                        drain_table(&mut generator, table, 1000)
                    })
                    .collect::<Result<Vec<_>>>()?;
                // Reassemble in event order: block b comes from subtask b % parallelism.
                let mut offsets = vec![0usize; parts.len()];
                let mut slices = Vec::new();
                for block in 0..events.div_ceil(BLOCK_EVENTS) {
                    let (lo, hi) = table_range_in_block(table, block * BLOCK_EVENTS);
                    let rows = (hi.min(events).saturating_sub(lo)) as usize;
                    let part = (block % u64::from(parallelism)) as usize;
                    slices.push(parts[part].slice(offsets[part], rows));
                    offsets[part] += rows;
                }
                for (part, offset) in parts.iter().zip(&offsets) {
                    assert_eq!(part.num_rows(), *offset);
                }
                let merged = concat_batches(&table.schema(), &slices)?;
                assert_eq!(merged, single, "{table} at parallelism {parallelism}");
            }
        }
        Ok(())
    }

    /// Sorted rows of `batches`, to compare outputs as multisets.
    fn sorted_rows(batches: &[RecordBatch]) -> Result<Vec<Vec<u8>>> {
        use arrow::row::{RowConverter, SortField};
        let Some(first) = batches.first() else {
            return Ok(Vec::new());
        };
        let converter = RowConverter::new(
            first
                .schema()
                .fields()
                .iter()
                .map(|f| SortField::new(f.data_type().clone()))
                .collect(),
        )?;
        let mut rows = Vec::new();
        for batch in batches {
            let converted = converter.convert_columns(batch.columns())?;
            rows.extend(converted.iter().map(|r| r.as_ref().to_vec()));
        }
        rows.sort();
        Ok(rows)
    }

    fn split_set(
        count: u32,
        positions: &BTreeMap<u32, u64>,
        mine: impl Fn(u32) -> bool,
        events: u64,
    ) -> NexmarkSplitSet {
        NexmarkSplitSet {
            count,
            positions: positions
                .iter()
                .filter(|(s, _)| mine(**s))
                .map(|(s, p)| (*s, *p))
                .collect(),
            end_event: Some(events),
        }
    }

    #[test]
    fn split_sets_regroup_at_another_parallelism() -> Result<()> {
        let events = 20_017;
        let count = 8;
        let table = NexmarkTable::Bid;
        let single = drain_table(
            &mut NexmarkGenerator::new(config(events), 0, Some(events))?,
            table,
            1000,
        )?;
        for (before, after) in [(1u32, 3u32), (4, 2), (3, 8)] {
            let start: BTreeMap<u32, u64> = (0..count).map(|s| (s, 0)).collect();
            let mut batches = Vec::new();
            let mut positions = BTreeMap::new();
            for subtask in 0..before {
                let set = split_set(count, &start, |s| s % before == subtask, events);
                let mut generator =
                    NexmarkGenerator::from_split_set(config(events), &set)?.with_tables(&[table]);
                // Subtasks stop at different points, as at a checkpoint barrier.
                for _ in 0..=subtask {
                    if let Some(batch) = generator.next_table_batch(table, 777)? {
                        batches.push(batch);
                    }
                }
                positions.extend(generator.split_positions());
            }
            assert_eq!(positions.len(), count as usize);
            for subtask in 0..after {
                let set = split_set(count, &positions, |s| s % after == subtask, events);
                let mut generator =
                    NexmarkGenerator::from_split_set(config(events), &set)?.with_tables(&[table]);
                let mut last_time = i64::MIN;
                while let Some(batch) = generator.next_table_batch(table, 500)? {
                    if batch.num_rows() == 0 {
                        break;
                    }
                    let times = batch
                        .column_by_name("dateTime")
                        .expect("bid has date_time")
                        .as_primitive::<arrow::datatypes::TimestampMillisecondType>();
                    assert!(times.value(0) >= last_time, "event time went back");
                    last_time = times.value(times.len() - 1);
                    batches.push(batch);
                }
                assert!(generator.is_exhausted());
            }
            assert_eq!(
                sorted_rows(&batches)?,
                sorted_rows(std::slice::from_ref(&single))?,
                "{before} -> {after}"
            );
        }
        Ok(())
    }

    #[test]
    fn resuming_from_a_split_continues_exactly() -> Result<()> {
        let events = 5_000;
        let split = config(events).split(3)?[1];
        let full = drain(
            &mut NexmarkGenerator::from_split(config(events), split)?,
            NexmarkTable::Bid,
            500,
        )?;
        let mut first = NexmarkGenerator::from_split(config(events), split)?;
        let head = first
            .next_table_batch(NexmarkTable::Bid, 321)?
            .expect("rows left");
        let mut second = NexmarkGenerator::from_split(config(events), first.split())?;
        let tail = drain(&mut second, NexmarkTable::Bid, 500)?;
        let resumed = concat_batches(&NexmarkTable::Bid.schema(), &[head, tail])?;
        assert_eq!(resumed, full);
        Ok(())
    }

    #[test]
    fn generators_can_move_between_threads() {
        fn assert_send<T: Send + 'static>() {}
        assert_send::<NexmarkGenerator>();
        assert_send::<crate::datagen::DatagenGenerator>();
        assert_send::<crate::tpch::TpchBatches>();
    }

    #[test]
    fn different_seeds_give_different_bids() -> Result<()> {
        let mut a = NexmarkGenerator::new(config(1000), 0, Some(1000))?;
        let mut b = NexmarkGenerator::new(config(1000).with_seed(8), 0, Some(1000))?;
        let a = a.next_table_batch(NexmarkTable::Bid, 100)?;
        let b = b.next_table_batch(NexmarkTable::Bid, 100)?;
        assert_ne!(a, b);
        Ok(())
    }

    #[test]
    fn values_follow_the_nexmark_model() -> Result<()> {
        let events = 100_000;
        let mut generator = NexmarkGenerator::new(config(events), 0, Some(events))?;
        let bids = drain_table(&mut generator, NexmarkTable::Bid, 10_000)?;
        let auction = bids.column(0).as_primitive::<Int64Type>();
        let bidder = bids.column(1).as_primitive::<Int64Type>();
        let price = bids.column(2).as_primitive::<Int64Type>();
        let time = bids.column(5).as_primitive::<TimestampMillisecondType>();
        let channel = bids.column(3).as_string::<i32>();
        let mut hot = 0;
        for row in 0..bids.num_rows() {
            assert!(auction.value(row) >= FIRST_AUCTION_ID);
            assert!(bidder.value(row) >= FIRST_PERSON_ID);
            assert!((100..=100_000_000).contains(&price.value(row)));
            if row > 0 {
                assert!(time.value(row) >= time.value(row - 1));
            }
            if auction.value(row) % 100 == 0 {
                hot += 1;
            }
            assert!(!channel.value(row).is_empty());
        }
        // Half of the bids go to a hot auction (plus random hits on multiples of 100).
        let hot_share = f64::from(hot) / bids.num_rows() as f64;
        assert!((0.49..0.53).contains(&hot_share), "{hot_share}");
        // 100 000 events at 10 M/s span 10 ms of event time.
        let base = config(events).base_time_ms;
        assert_eq!(time.value(0), base);
        assert_eq!(time.value(bids.num_rows() - 1), base + 9);
        assert_eq!(time.null_count(), 0);

        let mut generator = NexmarkGenerator::new(config(events), 0, Some(events))?;
        let people = drain_table(&mut generator, NexmarkTable::Person, 500)?;
        let ids = people.column(0).as_primitive::<Int64Type>();
        assert_eq!(ids.value(0), FIRST_PERSON_ID);
        assert_eq!(ids.value(1999), FIRST_PERSON_ID + 1999);
        let cards = people.column(3).as_string::<i32>();
        assert_eq!(cards.value(0).len(), 19);
        Ok(())
    }

    #[test]
    fn extra_padding_has_the_configured_size() -> Result<()> {
        let mut config = config(10_000);
        config.bid_extra_avg_len = 50;
        let mut generator = NexmarkGenerator::new(config, 0, Some(10_000))?;
        let bids = drain_table(&mut generator, NexmarkTable::Bid, 4096)?;
        let extra = bids.column(6).as_string::<i32>();
        let total: usize = (0..extra.len()).map(|i| extra.value(i).len()).sum();
        let avg = total as f64 / extra.len() as f64;
        assert!((48.0..52.0).contains(&avg), "{avg}");
        Ok(())
    }
}
