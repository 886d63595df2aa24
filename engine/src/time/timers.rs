//! Per-key timers of one operator subtask: event time and processing time.
//!
//! A timer is a (timestamp, key id) pair in one of two [`TimeDomain`]s. Timers are kept in
//! ordered sets, so registering the same key and timestamp twice keeps one timer (it fires
//! once), and due timers come out in timestamp order (ties by key id, i.e. by first
//! appearance of the key). Event-time timers are due when the watermark reaches their
//! timestamp (`timestamp <= watermark`, as in Flink); processing-time timers when the wall
//! clock does. The owning operator asks for due timers in `process_watermark` (before it
//! forwards the watermark) and whenever it checks the clock.
//!
//! Timers are part of the operator's snapshot: a `timers` table with `key_group`, `key`
//! (row-encoded), `timestamp` and `domain` (0 = event time, 1 = processing time), restored
//! per owned key-group range like keyed state.

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow::array::{Array, AsArray, BinaryArray, Int64Array, UInt8Array, UInt32Array};
use arrow::datatypes::{DataType, Field, Schema, UInt8Type};
use arrow::record_batch::RecordBatch;

use crate::element::Watermark;
use crate::state::{KeyGroupRange, KeyId, KeyTable, SnapshotTable, snapshot_columns};
use crate::{Error, Result};

/// The name of the timers table in an operator snapshot.
pub const TIMERS_TABLE: &str = "timers";

/// Which clock a timer follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TimeDomain {
    /// Fires when the watermark reaches the timestamp.
    EventTime,
    /// Fires when the wall clock (milliseconds since the epoch) reaches the timestamp.
    ProcessingTime,
}

impl TimeDomain {
    fn code(self) -> u8 {
        match self {
            TimeDomain::EventTime => 0,
            TimeDomain::ProcessingTime => 1,
        }
    }
}

/// A due timer, handed to the code that registered it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timer {
    pub timestamp: i64,
    pub key: KeyId,
    pub domain: TimeDomain,
}

/// Bytes per timer in a `BTreeSet<(i64, KeyId)>`: the element plus about half again for the
/// B-tree's node overhead (nodes hold up to 11 elements and are at least half full).
const BYTES_PER_TIMER: usize = 3 * std::mem::size_of::<(i64, KeyId)>() / 2;

/// The timers of one operator subtask. Not shared between threads.
#[derive(Debug, Default)]
pub struct TimerService {
    event: BTreeSet<(i64, KeyId)>,
    processing: BTreeSet<(i64, KeyId)>,
    watermark: Option<Watermark>,
}

impl TimerService {
    pub fn new() -> Self {
        TimerService::default()
    }

    fn set(&mut self, domain: TimeDomain) -> &mut BTreeSet<(i64, KeyId)> {
        match domain {
            TimeDomain::EventTime => &mut self.event,
            TimeDomain::ProcessingTime => &mut self.processing,
        }
    }

    /// Registers a timer; `false` if the same key already had one at `timestamp`.
    pub fn register(&mut self, domain: TimeDomain, key: KeyId, timestamp: i64) -> bool {
        self.set(domain).insert((timestamp, key))
    }

    /// Deletes a timer; `false` if there was none.
    pub fn delete(&mut self, domain: TimeDomain, key: KeyId, timestamp: i64) -> bool {
        self.set(domain).remove(&(timestamp, key))
    }

    pub fn register_event_time_timer(&mut self, key: KeyId, timestamp: i64) -> bool {
        self.register(TimeDomain::EventTime, key, timestamp)
    }

    pub fn register_processing_time_timer(&mut self, key: KeyId, timestamp: i64) -> bool {
        self.register(TimeDomain::ProcessingTime, key, timestamp)
    }

    pub fn delete_event_time_timer(&mut self, key: KeyId, timestamp: i64) -> bool {
        self.delete(TimeDomain::EventTime, key, timestamp)
    }

    pub fn delete_processing_time_timer(&mut self, key: KeyId, timestamp: i64) -> bool {
        self.delete(TimeDomain::ProcessingTime, key, timestamp)
    }

    /// The last watermark passed to [`TimerService::advance_watermark`].
    pub fn current_watermark(&self) -> Option<Watermark> {
        self.watermark
    }

    /// Removes and returns the event-time timers at or below `watermark`, in timestamp order.
    pub fn advance_watermark(&mut self, watermark: Watermark) -> Vec<(KeyId, i64)> {
        self.watermark = Some(self.watermark.map_or(watermark, |w| w.max(watermark)));
        pop_due(&mut self.event, watermark.0)
    }

    /// Removes and returns the processing-time timers at or below `now_ms`, in order.
    pub fn due_processing_timers(&mut self, now_ms: i64) -> Vec<(KeyId, i64)> {
        pop_due(&mut self.processing, now_ms)
    }

    /// The earliest processing-time timer, if any (when the clock next needs checking).
    pub fn next_processing_time(&self) -> Option<i64> {
        self.processing.first().map(|&(t, _)| t)
    }

    /// Registered timers in both domains.
    pub fn len(&self) -> usize {
        self.event.len() + self.processing.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Approximate heap bytes (see [`BYTES_PER_TIMER`]).
    pub fn allocated_bytes(&self) -> usize {
        self.len() * BYTES_PER_TIMER
    }

    /// The `timers` table for the keys of `range`, with key bytes and groups from `keys`.
    pub fn snapshot(&self, keys: &KeyTable, range: KeyGroupRange) -> Result<SnapshotTable> {
        let timers: Vec<(TimeDomain, i64, KeyId)> = self
            .event
            .iter()
            .map(|&(t, k)| (TimeDomain::EventTime, t, k))
            .chain(
                self.processing
                    .iter()
                    .map(|&(t, k)| (TimeDomain::ProcessingTime, t, k)),
            )
            .filter(|&(_, _, k)| range.contains(keys.key_group(k)))
            .collect();
        let schema = Arc::new(Schema::new(vec![
            Field::new("key_group", DataType::UInt32, false),
            Field::new("key", DataType::Binary, false),
            Field::new("timestamp", DataType::Int64, false),
            Field::new("domain", DataType::UInt8, false),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(UInt32Array::from_iter_values(
                    timers.iter().map(|t| keys.key_group(t.2)),
                )),
                Arc::new(BinaryArray::from_iter_values(
                    timers.iter().map(|t| keys.key(t.2)),
                )),
                Arc::new(Int64Array::from_iter_values(timers.iter().map(|t| t.1))),
                Arc::new(UInt8Array::from_iter_values(
                    timers.iter().map(|t| t.0.code()),
                )),
            ],
        )
        .map_err(|e| Error::arrow("snapshot of timers", e))?;
        Ok(SnapshotTable {
            slices: None,
            name: TIMERS_TABLE.to_string(),
            batches: vec![batch],
        })
    }

    /// Adds the timers of `table` whose key group lies in `owned`, interning their keys.
    pub fn restore(
        &mut self,
        table: &SnapshotTable,
        keys: &mut KeyTable,
        owned: KeyGroupRange,
    ) -> Result<()> {
        for batch in &table.batches {
            let (key_groups, key_bytes, timestamps) = snapshot_columns(&table.name, batch)?;
            let bad = || Error::data("snapshot table 'timers'", "malformed timestamp or domain");
            let timestamps = timestamps.as_primitive_opt::<arrow::datatypes::Int64Type>();
            let domains = batch
                .columns()
                .get(3)
                .and_then(|c| c.as_primitive_opt::<UInt8Type>());
            let (Some(timestamps), Some(domains)) = (timestamps, domains) else {
                return Err(bad());
            };
            for row in 0..batch.num_rows() {
                let key_group = key_groups.value(row);
                if !owned.contains(key_group) {
                    continue;
                }
                let key = keys.intern(key_bytes.value(row), key_group);
                let domain = match domains.value(row) {
                    0 => TimeDomain::EventTime,
                    1 => TimeDomain::ProcessingTime,
                    _ => return Err(bad()),
                };
                if timestamps.is_null(row) {
                    return Err(bad());
                }
                self.register(domain, key, timestamps.value(row));
            }
        }
        Ok(())
    }
}

fn pop_due(timers: &mut BTreeSet<(i64, KeyId)>, up_to: i64) -> Vec<(KeyId, i64)> {
    match up_to.checked_add(1) {
        // Everything from `up_to + 1` on stays; what came before is due, already sorted.
        Some(bound) => {
            let later = timers.split_off(&(bound, KeyId(0)));
            std::mem::replace(timers, later)
                .into_iter()
                .map(|(t, k)| (k, t))
                .collect()
        }
        None => std::mem::take(timers)
            .into_iter()
            .map(|(t, k)| (k, t))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_timers_fire_once_in_timestamp_order() {
        let mut timers = TimerService::new();
        assert!(timers.register_event_time_timer(KeyId(2), 300));
        assert!(timers.register_event_time_timer(KeyId(1), 100));
        assert!(!timers.register_event_time_timer(KeyId(1), 100), "dedup");
        assert!(timers.register_event_time_timer(KeyId(0), 300));
        assert!(timers.register_event_time_timer(KeyId(1), 200));
        assert!(timers.register_event_time_timer(KeyId(3), 500));
        assert_eq!(timers.len(), 5);
        assert_eq!(timers.advance_watermark(Watermark(99)), vec![]);
        assert_eq!(
            timers.advance_watermark(Watermark(300)),
            vec![
                (KeyId(1), 100),
                (KeyId(1), 200),
                (KeyId(0), 300),
                (KeyId(2), 300)
            ]
        );
        assert_eq!(timers.advance_watermark(Watermark(300)), vec![]);
        assert_eq!(
            timers.advance_watermark(Watermark::MAX),
            vec![(KeyId(3), 500)]
        );
        assert!(timers.is_empty());
    }

    #[test]
    fn deleted_timers_do_not_fire_and_domains_are_separate() {
        let mut timers = TimerService::new();
        timers.register_event_time_timer(KeyId(0), 10);
        timers.register_processing_time_timer(KeyId(0), 10);
        assert!(timers.delete_event_time_timer(KeyId(0), 10));
        assert!(!timers.delete_event_time_timer(KeyId(0), 10));
        assert_eq!(timers.advance_watermark(Watermark(1_000)), vec![]);
        assert_eq!(timers.next_processing_time(), Some(10));
        assert_eq!(timers.due_processing_timers(9), vec![]);
        assert_eq!(timers.due_processing_timers(10), vec![(KeyId(0), 10)]);
    }

    #[test]
    fn timers_snapshot_and_restore_by_key_group() {
        let mut keys = KeyTable::default();
        let a = keys.intern(b"a", 3);
        let b = keys.intern(b"b", 70);
        let mut timers = TimerService::new();
        timers.register_event_time_timer(a, 5);
        timers.register_event_time_timer(b, 6);
        timers.register_processing_time_timer(b, 7);
        let table = timers
            .snapshot(&keys, KeyGroupRange { start: 0, end: 128 })
            .unwrap();
        let mut restored_keys = KeyTable::default();
        let mut restored = TimerService::new();
        restored
            .restore(
                &table,
                &mut restored_keys,
                KeyGroupRange {
                    start: 64,
                    end: 128,
                },
            )
            .unwrap();
        assert_eq!(restored_keys.len(), 1);
        assert_eq!(restored_keys.key(KeyId(0)), b"b");
        assert_eq!(
            restored.advance_watermark(Watermark::MAX),
            vec![(KeyId(0), 6)]
        );
        assert_eq!(
            restored.due_processing_timers(i64::MAX),
            vec![(KeyId(0), 7)]
        );
    }
}
