//! The distinct groups one batch touches, for changelog emission.
//!
//! A changelog aggregate emits one row per touched group and batch, so it needs the batch's
//! distinct groups in order of first appearance and, for each, the row where it first appears:
//! the output takes its key columns from those rows of the input (`take` on a batch that is in
//! cache) instead of decoding them from the group table, whose key bytes are scattered over
//! the whole state. Membership is one bit per group, 128 KiB for 1 M groups (it stays in
//! cache where a batch number per group, 8 MiB, did not); only the words of the previous
//! batch's groups are cleared.

use super::bitset::GroupBits;

/// The groups of one batch, deduplicated; reused from batch to batch.
#[derive(Default)]
pub(crate) struct TouchedGroups {
    /// Bit `g` is set iff group `g` is in `groups`.
    bits: GroupBits,
    groups: Vec<u32>,
    first_rows: Vec<u32>,
}

impl TouchedGroups {
    /// Replaces the content with the distinct groups of `group_ids` (one per row, each below
    /// `group_count`), in order of first appearance.
    pub(crate) fn collect(&mut self, group_ids: &[u32], group_count: usize) {
        for &g in &self.groups {
            self.bits.clear(g as usize);
        }
        self.groups.clear();
        self.first_rows.clear();
        self.bits.grow(group_count);
        for (row, &g) in group_ids.iter().enumerate() {
            if self.bits.insert(g as usize) {
                self.groups.push(g);
                self.first_rows.push(row as u32);
            }
        }
    }

    /// The distinct groups, in order of first appearance.
    pub(crate) fn groups(&self) -> &[u32] {
        &self.groups
    }

    /// For each of [`TouchedGroups::groups`], the row of the batch where it first appears.
    pub(crate) fn first_rows(&self) -> &[u32] {
        &self.first_rows
    }

    pub(crate) fn allocated_bytes(&self) -> usize {
        self.bits.allocated_bytes()
            + (self.groups.capacity() + self.first_rows.capacity()) * std::mem::size_of::<u32>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinct_groups_in_order_of_first_appearance() {
        let mut touched = TouchedGroups::default();
        touched.collect(&[3, 0, 3, 64, 0, 65], 66);
        assert_eq!(touched.groups(), &[3, 0, 64, 65]);
        assert_eq!(touched.first_rows(), &[0, 1, 3, 5]);
        // The next batch starts empty, also for groups the previous one touched.
        touched.collect(&[65, 1, 1, 3, 130], 131);
        assert_eq!(touched.groups(), &[65, 1, 3, 130]);
        assert_eq!(touched.first_rows(), &[0, 1, 3, 4]);
        touched.collect(&[], 131);
        assert!(touched.groups().is_empty());
        touched.collect(&[0, 0], 131);
        assert_eq!(touched.groups(), &[0]);
    }
}
