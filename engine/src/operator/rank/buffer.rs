//! The top rows of one partition: a small vector sorted by the row-encoded sort key.

use std::cmp::Ordering;

use crate::operator::GroupTable;

/// One kept row: its row-encoded sort key (compares bytewise in the rank's order), the whole
/// row encoded for output, and its arrival number (breaks ties between equal sort keys).
#[derive(Debug, Default, Clone)]
pub(super) struct Entry {
    pub(super) sort: Vec<u8>,
    pub(super) row: Vec<u8>,
    pub(super) seq: u64,
}

/// The kept rows of one partition, best first, at most `limit` of them.
#[derive(Debug, Default)]
pub(super) struct TopBuffer {
    pub(super) entries: Vec<Entry>,
    /// Rows pushed out during the current batch that were kept before it (changelog only).
    pub(super) evicted: Vec<Entry>,
    /// The batch number in which this buffer last changed (changelog bookkeeping).
    pub(super) changed_in: u64,
}

/// How rows with equal sort keys are ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ties {
    /// The earlier arrival ranks first (Top-N, keep-first deduplication).
    OldestFirst,
    /// The later arrival ranks first (keep-last deduplication: a new row with the same time
    /// replaces the kept one).
    NewestFirst,
}

impl Ties {
    /// The total order of kept rows: sort key, then arrival.
    pub(super) fn compare(self, a: &Entry, b: &Entry) -> Ordering {
        a.sort.cmp(&b.sort).then_with(|| match self {
            Ties::OldestFirst => a.seq.cmp(&b.seq),
            Ties::NewestFirst => b.seq.cmp(&a.seq),
        })
    }

    /// Whether a new row with sort key `sort` ranks before the kept row `kept`.
    #[inline]
    fn beats(self, sort: &[u8], kept: &[u8]) -> bool {
        match self {
            Ties::OldestFirst => sort < kept,
            Ties::NewestFirst => sort <= kept,
        }
    }
}

impl TopBuffer {
    /// Whether a new row with sort key `sort` would enter a buffer holding `limit` rows.
    #[inline]
    pub(super) fn admits(&self, sort: &[u8], limit: usize, ties: Ties) -> bool {
        self.entries.len() < limit
            || self
                .entries
                .last()
                .is_some_and(|last| ties.beats(sort, &last.sort))
    }

    /// Inserts `entry` at its rank if it makes the top `limit`; returns the row pushed out
    /// (or `entry` itself when rejected).
    pub(super) fn offer(&mut self, entry: Entry, limit: usize, ties: Ties) -> Option<Entry> {
        if !self.admits(&entry.sort, limit, ties) {
            return Some(entry);
        }
        let position = self
            .entries
            .partition_point(|kept| !ties.beats(&entry.sort, &kept.sort));
        self.entries.insert(position, entry);
        if self.entries.len() > limit {
            self.entries.pop()
        } else {
            None
        }
    }

    pub(super) fn allocated_bytes(&self) -> usize {
        self.entries
            .iter()
            .chain(&self.evicted)
            .map(|e| e.sort.capacity() + e.row.capacity() + std::mem::size_of::<Entry>())
            .sum()
    }
}

/// The partitions of one window (or of the whole stream without a window): partition key →
/// dense index → buffer.
#[derive(Default)]
pub(super) struct PartitionSet {
    pub(super) table: GroupTable,
    pub(super) buffers: Vec<TopBuffer>,
}

impl PartitionSet {
    /// The partition index of a row-encoded partition key, added if new.
    pub(super) fn partition(&mut self, key: &[u8]) -> u32 {
        let p = self.table.intern_one(key);
        if p as usize == self.buffers.len() {
            self.buffers.push(TopBuffer::default());
        }
        p
    }

    pub(super) fn allocated_bytes(&self) -> usize {
        self.table.allocated_bytes()
            + self
                .buffers
                .iter()
                .map(TopBuffer::allocated_bytes)
                .sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(sort: u8, seq: u64) -> Entry {
        Entry {
            sort: vec![sort],
            row: vec![],
            seq,
        }
    }

    fn seqs(buffer: &TopBuffer) -> Vec<u64> {
        buffer.entries.iter().map(|e| e.seq).collect()
    }

    #[test]
    fn keeps_the_smallest_keys_with_ties_in_arrival_order() {
        let mut buffer = TopBuffer::default();
        for (sort, seq) in [(5, 0), (3, 1), (5, 2), (1, 3)] {
            buffer.offer(entry(sort, seq), 3, Ties::OldestFirst);
        }
        assert_eq!(seqs(&buffer), [3, 1, 0]);
        // An equal key does not displace the kept one.
        let rejected = buffer.offer(entry(5, 4), 3, Ties::OldestFirst).unwrap();
        assert_eq!(rejected.seq, 4);
        let out = buffer.offer(entry(2, 5), 3, Ties::OldestFirst).unwrap();
        assert_eq!(out.seq, 0);
        assert_eq!(seqs(&buffer), [3, 5, 1]);
    }

    #[test]
    fn newest_first_lets_an_equal_key_replace() {
        let mut buffer = TopBuffer::default();
        buffer.offer(entry(7, 0), 1, Ties::NewestFirst);
        let out = buffer.offer(entry(7, 1), 1, Ties::NewestFirst).unwrap();
        assert_eq!(out.seq, 0);
        assert_eq!(seqs(&buffer), [1]);
        assert!(buffer.offer(entry(8, 2), 1, Ties::NewestFirst).is_some());
    }
}
