//! The hash table of the group table's words and packed paths: 64- or 128-bit keys to group
//! indices.
//!
//! Open addressing with linear probing, split into [`PARTS`] partitions chosen by the top
//! bits of the hash. Each slot holds the word and its group inline (16 bytes), so a lookup
//! reads one cache line where hashbrown read a control byte and then a bucket elsewhere; a
//! batch's slots are prefetched a few rows ahead ([`WordTable::prefetch`]), which overlaps
//! the cache misses of a table much larger than the cache.
//!
//! A partition grows alone, doubling when three quarters full. On a 1 M-key aggregation a
//! single table doubled to 32 MiB: every doubling rehashed the whole table out of cache and
//! faulted in (zeroed) a fresh block twice the size, about a fifth of the run. Partitions are
//! 1/256 of that: a rehash stays in cache and the blocks freed by one partition's growth are
//! reused by the next.

/// Number of partitions (a power of two); the top `PART_BITS` bits of a hash choose one.
const PART_BITS: u32 = 8;
const PARTS: usize = 1 << PART_BITS;

/// Slots of a partition when first used.
const INITIAL_SLOTS: usize = 16;

/// `(word, group + 1)`; a zero group marks an empty slot.
type Slot<W> = (W, u64);

/// A map from words (`u64` or `u128`) to group indices; see the module docs.
pub(crate) struct WordTable<W = u64> {
    /// Empty until the first insert, then [`PARTS`] partitions.
    parts: Vec<Part<W>>,
    /// The slots of all partitions.
    slots: usize,
}

impl<W> Default for WordTable<W> {
    fn default() -> Self {
        WordTable {
            parts: Vec::new(),
            slots: 0,
        }
    }
}

/// Largest table, in slot bytes, that lookups expect to find in the cache: they then skip the
/// prefetch (a join's small build side probed by millions of rows).
const CACHED_BYTES: usize = 256 << 10;

struct Part<W> {
    /// A power of two in length.
    slots: Vec<Slot<W>>,
    len: usize,
}

impl<W: Copy + Eq + Default> Part<W> {
    fn new() -> Self {
        Part {
            slots: vec![(W::default(), 0); INITIAL_SLOTS],
            len: 0,
        }
    }

    /// The slot of `word` (hashed to `hash`), or the empty slot where it belongs.
    #[inline]
    fn probe(&self, hash: u64, word: W) -> usize {
        let mask = self.slots.len() - 1;
        let mut i = hash as usize & mask;
        loop {
            let (w, g) = self.slots[i];
            if g == 0 || w == word {
                return i;
            }
            i = (i + 1) & mask;
        }
    }

    fn grow(&mut self, hash_of: impl Fn(W) -> u64) {
        let doubled = vec![(W::default(), 0); self.slots.len() * 2];
        let old = std::mem::replace(&mut self.slots, doubled);
        for slot in old.into_iter().filter(|s| s.1 != 0) {
            let i = self.probe(hash_of(slot.0), slot.0);
            self.slots[i] = slot;
        }
    }
}

impl<W: Copy + Eq + Default> WordTable<W> {
    #[inline]
    fn part_of(hash: u64) -> usize {
        (hash >> (64 - PART_BITS)) as usize
    }

    /// The group of `word` (hashed to `hash` by `hash_of`), or `None` after inserting it
    /// with group `next`.
    #[inline]
    pub(crate) fn get_or_insert(
        &mut self,
        hash: u64,
        word: W,
        next: u32,
        hash_of: impl Fn(W) -> u64,
    ) -> Option<u32> {
        if self.parts.is_empty() {
            self.parts = (0..PARTS).map(|_| Part::new()).collect();
            self.slots = PARTS * INITIAL_SLOTS;
        }
        let part = &mut self.parts[Self::part_of(hash)];
        let mut i = part.probe(hash, word);
        let (_, g) = part.slots[i];
        if g != 0 {
            return Some((g - 1) as u32);
        }
        if (part.len + 1) * 4 > part.slots.len() * 3 {
            self.slots += part.slots.len();
            part.grow(hash_of);
            i = part.probe(hash, word);
        }
        part.slots[i] = (word, u64::from(next) + 1);
        part.len += 1;
        None
    }

    /// The group of `word` (hashed to `hash`), if it has one; inserts nothing.
    #[inline]
    pub(crate) fn get(&self, hash: u64, word: W) -> Option<u32> {
        let part = self.parts.get(Self::part_of(hash))?;
        let (_, g) = part.slots[part.probe(hash, word)];
        (g != 0).then(|| (g - 1) as u32)
    }

    /// Whether the table is small enough to stay in the cache, where prefetching its slots
    /// only costs instructions.
    #[inline]
    pub(crate) fn is_cached(&self) -> bool {
        self.slots * std::mem::size_of::<Slot<W>>() <= CACHED_BYTES
    }

    /// Starts loading the slot `hash` probes first into the cache.
    #[inline]
    pub(crate) fn prefetch(&self, hash: u64) {
        if let Some(part) = self.parts.get(Self::part_of(hash)) {
            let slot = part
                .slots
                .as_ptr()
                .wrapping_add(hash as usize & (part.slots.len() - 1));
            prefetch_read(slot.cast());
        }
    }

    /// Every word in the table.
    pub(crate) fn words(&self) -> impl Iterator<Item = W> + '_ {
        self.parts
            .iter()
            .flat_map(|p| p.slots.iter().filter(|s| s.1 != 0).map(|s| s.0))
    }

    pub(crate) fn allocated_bytes(&self) -> usize {
        self.parts.capacity() * std::mem::size_of::<Part<W>>()
            + self.slots * std::mem::size_of::<Slot<W>>()
    }
}

/// A hint to load the cache line at `ptr`; it never faults, whatever `ptr` is.
#[inline(always)]
fn prefetch_read(ptr: *const i8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint: it reads nothing the program sees and does not fault on
    // any address. SSE is part of the x86-64 baseline.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(ptr);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = ptr;
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    /// A deliberately poor hash: collisions and long probe runs in few partitions.
    fn clustered(word: u64) -> u64 {
        (word % 3) << 62 | (word % 7)
    }

    fn good(word: u64) -> u64 {
        word.wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }

    proptest! {
        #[test]
        fn finds_what_it_inserted(
            words in proptest::collection::vec(any::<u64>(), 0..3000),
            absent in proptest::collection::vec(any::<u64>(), 0..100),
            poor in any::<bool>(),
        ) {
            let hash_of = if poor { clustered } else { good };
            let mut table = WordTable::default();
            let mut model = HashMap::new();
            for w in words {
                let next = model.len() as u32;
                table.prefetch(hash_of(w));
                let got = table.get_or_insert(hash_of(w), w, next, hash_of);
                prop_assert_eq!(got, model.get(&w).copied());
                model.entry(w).or_insert(next);
            }
            for (&w, &g) in &model {
                prop_assert_eq!(table.get(hash_of(w), w), Some(g));
                prop_assert_eq!(table.get_or_insert(hash_of(w), w, u32::MAX, hash_of), Some(g));
            }
            for w in absent {
                if !model.contains_key(&w) {
                    prop_assert_eq!(table.get(hash_of(w), w), None);
                }
            }
        }
    }

    #[test]
    fn zero_and_max_words_are_keys_like_any_other() {
        let mut table = WordTable::default();
        assert_eq!(table.get_or_insert(good(0), 0, 0, good), None);
        assert_eq!(table.get_or_insert(good(u64::MAX), u64::MAX, 1, good), None);
        assert_eq!(table.get_or_insert(good(0), 0, 2, good), Some(0));
        assert_eq!(
            table.get_or_insert(good(u64::MAX), u64::MAX, 2, good),
            Some(1)
        );
    }
}
