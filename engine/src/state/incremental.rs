//! Change tracking for incremental checkpoints.
//!
//! A keyed table is written as one file per **key-group slice**: slice `i` covers key groups
//! `i * width .. (i + 1) * width` (cut to the subtask's range), with `width` chosen so that a
//! job has at most [`MAX_SLICES`] slices per table ([`slice_width`]; one key group per slice
//! at the default max parallelism of 128). A slice none of whose keys changed since the last
//! completed checkpoint is not written again: the new checkpoint references the file that
//! checkpoint holds for it.
//!
//! Operators record what they change in whatever form is cheapest for them (a bit per dense
//! key id, or the key group of a batch's rows) and hand the changed slices to a
//! [`ChangeTracker`] when they snapshot. The tracker knows the *base*: the newest completed
//! checkpoint this operator instance snapshotted (learnt from
//! [`crate::operator::Operator::notify_checkpoint_complete`]). Slices changed since the base
//! are the union of what changed before each snapshot taken after it (snapshots whose
//! checkpoint was aborted or has not completed yet included), so an aborted checkpoint never
//! loses a change. A fresh or restored operator has no base: its first snapshot is full.
//!
//! The base is the newest completed checkpoint, which retention always keeps: a task is told
//! of a completion before it handles the next barrier. Should a base be gone nevertheless,
//! the storage refuses the snapshot (the checkpoint is declined), and the next one builds on a
//! newer base.

use crate::ids::CheckpointId;

use super::{KeyGroupOwnership, KeyGroupRange};

/// Most slices a keyed table is cut into over all key groups: bounds the file count per
/// table and checkpoint (one file per key group at the default max parallelism of 128).
pub const MAX_SLICES: u32 = 128;

/// Key groups per slice for `max_parallelism` key groups.
pub fn slice_width(max_parallelism: u32) -> u32 {
    max_parallelism.div_ceil(MAX_SLICES).max(1)
}

/// The key groups of slice `index` within `range`, for slices of `width` key groups (empty
/// when the slice lies outside `range`).
pub fn slice_range(index: u32, width: u32, range: KeyGroupRange) -> KeyGroupRange {
    let start = (index * width).max(range.start);
    let end = ((index + 1) * width).min(range.end).max(start);
    KeyGroupRange { start, end }
}

/// The slice indices that overlap `range`.
pub fn slices_of(range: KeyGroupRange, width: u32) -> std::ops::Range<u32> {
    if range.is_empty() {
        return 0..0;
    }
    range.start / width..(range.end - 1) / width + 1
}

/// A set of slice indices (a bitset).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SliceSet {
    words: Vec<u64>,
}

impl SliceSet {
    pub fn insert(&mut self, slice: u32) {
        let word = (slice / 64) as usize;
        if word >= self.words.len() {
            self.words.resize(word + 1, 0);
        }
        self.words[word] |= 1 << (slice % 64);
    }

    pub fn contains(&self, slice: u32) -> bool {
        self.words
            .get((slice / 64) as usize)
            .is_some_and(|w| w & (1 << (slice % 64)) != 0)
    }

    pub fn union_with(&mut self, other: &SliceSet) {
        if other.words.len() > self.words.len() {
            self.words.resize(other.words.len(), 0);
        }
        for (word, &bits) in self.words.iter_mut().zip(&other.words) {
            *word |= bits;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.words.iter().all(|&w| w == 0)
    }

    pub fn len(&self) -> usize {
        self.words.iter().map(|w| w.count_ones() as usize).sum()
    }
}

/// One bit per dense id (an aggregate's group, a window operator's key) changed since the
/// last snapshot: what operators mark per batch, without allocating per row.
#[derive(Debug, Clone, Default)]
pub struct TouchedIds {
    words: Vec<u64>,
}

impl TouchedIds {
    /// Marks every id of `ids` (one batch's rows).
    #[inline]
    pub fn mark_all(&mut self, ids: &[u32]) {
        for &id in ids {
            self.mark(id);
        }
    }

    #[inline]
    pub fn mark(&mut self, id: u32) {
        let word = (id / 64) as usize;
        if word >= self.words.len() {
            self.words.resize(word + 1, 0);
        }
        self.words[word] |= 1 << (id % 64);
    }

    /// The slices of the marked ids (`key_group_of` gives an id's key group), clearing the
    /// marks.
    pub fn take_slices(
        &mut self,
        tracker: &ChangeTracker,
        key_group_of: impl Fn(u32) -> u32,
    ) -> SliceSet {
        let mut slices = SliceSet::default();
        for (index, word) in self.words.iter_mut().enumerate() {
            let mut bits = std::mem::take(word);
            while bits != 0 {
                let id = index as u32 * 64 + bits.trailing_zeros();
                slices.insert(tracker.slice_of(key_group_of(id)));
                bits &= bits - 1;
            }
        }
        slices
    }

    pub fn clear(&mut self) {
        self.words.clear();
    }

    pub fn allocated_bytes(&self) -> usize {
        self.words.capacity() * std::mem::size_of::<u64>()
    }
}

/// How a keyed [`super::SnapshotTable`] is cut into slices for an incremental checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSlices {
    /// Key groups per slice ([`slice_width`]).
    pub width: u32,
    /// The completed checkpoint that holds the unchanged slices; `None`: the table's batches
    /// hold every slice.
    pub base: Option<CheckpointId>,
    /// Slices (indices, see [`slice_range`]) whose rows are not in the table's batches: they
    /// did not change since `base`, whose files for them the checkpoint references.
    pub unchanged: Vec<u32>,
}

/// Which slices one snapshot writes ([`ChangeTracker::snapshot`]).
#[derive(Debug, Clone)]
pub struct SliceSelection {
    width: u32,
    range: KeyGroupRange,
    /// `None`: a full snapshot (no base, or incremental checkpoints are off).
    base: Option<CheckpointId>,
    changed: SliceSet,
    incremental: bool,
}

impl SliceSelection {
    /// Whether rows of `key_group` belong in the snapshot's batches.
    #[inline]
    pub fn includes(&self, key_group: u32) -> bool {
        self.base.is_none() || self.changed.contains(key_group / self.width)
    }

    /// Whether every row belongs in the snapshot's batches.
    pub fn is_full(&self) -> bool {
        self.base.is_none()
    }

    /// The slicing to attach to the snapshot's keyed tables; `None` when incremental
    /// checkpoints are off (the table is written as one file).
    pub fn table_slices(&self) -> Option<TableSlices> {
        if !self.incremental {
            return None;
        }
        let unchanged = match self.base {
            Some(_) => slices_of(self.range, self.width)
                .filter(|&s| !self.changed.contains(s))
                .collect(),
            None => Vec::new(),
        };
        Some(TableSlices {
            width: self.width,
            base: self.base,
            unchanged,
        })
    }
}

/// The slices changed since the last completed checkpoint, for one keyed operator instance.
#[derive(Debug, Clone)]
pub struct ChangeTracker {
    incremental: bool,
    range: KeyGroupRange,
    width: u32,
    /// Snapshots taken after `base`, with what changed before each.
    pending: Vec<(CheckpointId, SliceSet)>,
    base: Option<CheckpointId>,
}

impl ChangeTracker {
    /// A tracker for an operator owning `own`; with `incremental` off every snapshot is full.
    pub fn new(own: KeyGroupOwnership, incremental: bool) -> Self {
        ChangeTracker {
            incremental,
            range: own.range,
            width: slice_width(own.max_parallelism),
            pending: Vec::new(),
            base: None,
        }
    }

    /// Whether the operator needs to record what it changes at all.
    pub fn is_incremental(&self) -> bool {
        self.incremental
    }

    /// Key groups per slice.
    pub fn slice_width(&self) -> u32 {
        self.width
    }

    /// The slice of `key_group`.
    #[inline]
    pub fn slice_of(&self, key_group: u32) -> u32 {
        key_group / self.width
    }

    /// Starts the snapshot for `checkpoint`, given the slices changed since the previous
    /// snapshot; returns which slices it writes.
    pub fn snapshot(&mut self, checkpoint: CheckpointId, dirty: SliceSet) -> SliceSelection {
        let mut changed = dirty.clone();
        for (_, earlier) in &self.pending {
            changed.union_with(earlier);
        }
        if self.incremental {
            self.pending.push((checkpoint, dirty));
        }
        SliceSelection {
            width: self.width,
            range: self.range,
            base: if self.incremental { self.base } else { None },
            changed,
            incremental: self.incremental,
        }
    }

    /// Checkpoint `checkpoint` completed: if this operator snapshotted it, it becomes the base.
    pub fn notify_complete(&mut self, checkpoint: CheckpointId) {
        if self.pending.iter().any(|(id, _)| *id == checkpoint) {
            self.base = Some(checkpoint);
            self.pending.retain(|(id, _)| *id > checkpoint);
        }
    }

    /// The operator's state was replaced (restored): the next snapshot is full.
    pub fn reset(&mut self) {
        self.base = None;
        self.pending.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracker() -> ChangeTracker {
        ChangeTracker::new(
            KeyGroupOwnership {
                range: KeyGroupRange { start: 32, end: 64 },
                max_parallelism: 128,
            },
            true,
        )
    }

    fn set(slices: &[u32]) -> SliceSet {
        let mut set = SliceSet::default();
        for &s in slices {
            set.insert(s);
        }
        set
    }

    #[test]
    fn touched_ids_become_slices() {
        let t = tracker();
        let mut touched = TouchedIds::default();
        touched.mark_all(&[3, 70, 3]);
        let slices = touched.take_slices(&t, |id| 32 + id % 10);
        assert_eq!(slices, set(&[35, 32]));
        assert!(touched.take_slices(&t, |_| 40).is_empty());
    }

    #[test]
    fn slices_cover_the_range() {
        assert_eq!(slice_width(128), 1);
        assert_eq!(slice_width(1000), 8);
        let range = KeyGroupRange { start: 5, end: 21 };
        let slices: Vec<KeyGroupRange> = slices_of(range, 8)
            .map(|s| slice_range(s, 8, range))
            .collect();
        assert_eq!(
            slices,
            vec![
                KeyGroupRange { start: 5, end: 8 },
                KeyGroupRange { start: 8, end: 16 },
                KeyGroupRange { start: 16, end: 21 },
            ]
        );
    }

    #[test]
    fn first_snapshot_is_full_then_only_changes() {
        let mut t = tracker();
        let first = t.snapshot(CheckpointId(1), set(&[40]));
        assert!(first.is_full() && first.includes(33));
        assert_eq!(first.table_slices().unwrap().unchanged, Vec::<u32>::new());
        t.notify_complete(CheckpointId(1));
        let second = t.snapshot(CheckpointId(2), set(&[40, 41]));
        assert!(second.includes(40) && !second.includes(33));
        let slices = second.table_slices().unwrap();
        assert_eq!(slices.base, Some(CheckpointId(1)));
        assert_eq!(slices.unchanged.len(), 30);
    }

    #[test]
    fn changes_of_an_aborted_checkpoint_are_kept() {
        let mut t = tracker();
        t.snapshot(CheckpointId(1), set(&[]));
        t.notify_complete(CheckpointId(1));
        // Checkpoint 2 is aborted: its changes still count against base 1.
        t.snapshot(CheckpointId(2), set(&[35]));
        let third = t.snapshot(CheckpointId(3), set(&[36]));
        assert!(third.includes(35) && third.includes(36) && !third.includes(37));
        t.notify_complete(CheckpointId(3));
        let fourth = t.snapshot(CheckpointId(4), set(&[]));
        assert_eq!(fourth.table_slices().unwrap().base, Some(CheckpointId(3)));
        assert!(!fourth.includes(35));
        // A completion of a checkpoint this operator did not snapshot changes nothing.
        t.notify_complete(CheckpointId(9));
        assert_eq!(
            t.snapshot(CheckpointId(10), set(&[]))
                .table_slices()
                .unwrap()
                .base,
            Some(CheckpointId(3))
        );
        t.reset();
        assert!(t.snapshot(CheckpointId(11), set(&[])).is_full());
    }

    #[test]
    fn without_incremental_every_snapshot_is_full_and_unsliced() {
        let mut t = ChangeTracker::new(
            KeyGroupOwnership {
                range: KeyGroupRange { start: 0, end: 128 },
                max_parallelism: 128,
            },
            false,
        );
        t.snapshot(CheckpointId(1), set(&[]));
        t.notify_complete(CheckpointId(1));
        let second = t.snapshot(CheckpointId(2), set(&[]));
        assert!(second.is_full() && second.table_slices().is_none());
    }
}
