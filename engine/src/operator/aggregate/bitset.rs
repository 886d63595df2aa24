//! One bit per group: which groups hold a value (an accumulator's validity) or belong to a
//! set (the groups of one batch). 1 M groups take 128 KiB, which stays in cache next to the
//! accumulators' value vectors (an `Option<i64>` per group doubled them to 16 bytes).

/// A growable bit per group, all clear when added.
#[derive(Default, Clone)]
pub(crate) struct GroupBits {
    words: Vec<u64>,
}

impl GroupBits {
    /// Makes room for `groups` bits; added bits are clear. Never shrinks.
    #[inline]
    pub(crate) fn grow(&mut self, groups: usize) {
        let words = groups.div_ceil(64);
        if words > self.words.len() {
            self.words.resize(words, 0);
        }
    }

    #[inline]
    pub(crate) fn get(&self, group: usize) -> bool {
        self.words[group / 64] & (1 << (group % 64)) != 0
    }

    #[inline]
    pub(crate) fn set(&mut self, group: usize) {
        self.words[group / 64] |= 1 << (group % 64);
    }

    #[inline]
    pub(crate) fn clear(&mut self, group: usize) {
        self.words[group / 64] &= !(1 << (group % 64));
    }

    /// Sets the bit of `group` and returns whether it was clear.
    #[inline]
    pub(crate) fn insert(&mut self, group: usize) -> bool {
        let (word, mask) = (&mut self.words[group / 64], 1 << (group % 64));
        let was_clear = *word & mask == 0;
        *word |= mask;
        was_clear
    }

    pub(crate) fn allocated_bytes(&self) -> usize {
        self.words.capacity() * std::mem::size_of::<u64>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_set_clear_and_grow() {
        let mut bits = GroupBits::default();
        bits.grow(65);
        assert!(!bits.get(0) && !bits.get(64));
        assert!(bits.insert(64));
        assert!(!bits.insert(64));
        bits.set(3);
        assert!(bits.get(3) && bits.get(64) && !bits.get(63));
        bits.clear(64);
        assert!(!bits.get(64));
        bits.grow(200);
        bits.grow(10);
        assert!(bits.get(3) && !bits.get(199));
    }
}
