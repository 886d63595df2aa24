//! The hash table from row-encoded keys to dense group indices.
//!
//! Three lookup paths share one numbering of groups and one buffer of row-encoded key bytes:
//! - **rows**: any key columns, row-encoded by `arrow-row` per batch and hashed with xxh3;
//! - **packed**: several integer-like columns, or short strings, whose values fit one 128-bit
//!   word together ([`PackedLayout`]: TPC-H Q1's two one-letter flags, Q3's order key, date
//!   and priority, Q9's part and supplier keys). The batch is packed column by column into
//!   words, which are hashed and compared as integers; only the rows that add a group are
//!   row-encoded (in one call), for their key bytes. The first key that does not fit (a
//!   NULL, a longer string) moves the table to the rows path for good; a lookup's key that
//!   does not fit has no group;
//! - **words**: a single integer-like key column (BIGINT, INT, DATE, TIMESTAMP, …). Each value
//!   becomes a 64-bit word equal to its row encoding read big-endian, hashed with two
//!   multiplications and compared as one integer; the batch is never row-encoded and an entry
//!   takes 16 bytes instead of 32. Only a new group writes its row bytes (built from the
//!   word), so [`GroupTable::key`] and the operators' key decoding work the same on both paths.
//!   On a 1 M-key aggregation the rows path spent a third of the operator in row encoding,
//!   xxh3 and the larger table's page faults.

use arrow::array::{Array, ArrayData, ArrayRef, AsArray, UInt32Array, make_array};
use arrow::buffer::{BooleanBuffer, Buffer, NullBuffer};
use arrow::compute::take;
use arrow::datatypes::DataType;
use arrow::row::{RowConverter, Rows};
use hashbrown::HashTable;
use xxhash_rust::xxh3::xxh3_64;

use super::key_filter::{self, KeyFilter};
use super::word_table::WordTable;
use crate::{Error, Result};

/// How many rows ahead the words path prefetches a row's hash table slot: enough to cover a
/// memory access with the lookups in between (a lookup that hits the cache takes a few ns).
const PREFETCH_AHEAD: usize = 8;

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
    /// Set when the key is one integer-like column: the words path.
    word_key: Option<WordKey>,
    /// The key column's type on the words path.
    word_type: Option<DataType>,
    words: WordTable,
    /// Set while the key fits the packed path.
    packed: Option<PackedLayout>,
    packed_words: WordTable<u128>,
    /// A batch's packed keys (on the packed path) or words (on the words path), their hashes,
    /// and the rows that do not fit the packed path (reused buffers).
    packed_keys: Vec<u128>,
    batch_words: Vec<u64>,
    hashes: Vec<u64>,
    misfits: Vec<u32>,
    /// The rows of a batch that added a group on the packed path.
    new_rows: Vec<u32>,
    /// The group of the NULL key on the words path.
    null_group: Option<u32>,
    /// Built by [`GroupTable::build_filter`] for lookups; dropped by any insert, and by
    /// lookups that mostly find their key (the filter then only adds a memory access).
    filter: Option<KeyFilter>,
    /// Lookups made, and how many found nothing, since the filter was built.
    filter_lookups: usize,
    filter_misses: usize,
    /// The rows of a batch the filter let through, for the second pass of a lookup.
    candidates: Vec<Candidate>,
}

/// A row the key filter does not rule out: its index in the batch, word and hash.
#[derive(Clone, Copy)]
struct Candidate {
    row: u32,
    word: u64,
    hash: u64,
}

/// A single integer-like key column: its value width in bytes and whether the row encoding
/// flips the sign bit (signed types).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct WordKey {
    width: usize,
    signed: bool,
}

impl WordKey {
    fn of(data_type: &DataType) -> Option<WordKey> {
        use DataType::*;
        let (width, signed) = match data_type {
            Int8 => (1, true),
            Int16 => (2, true),
            Int32 | Date32 | Time32(_) => (4, true),
            Int64 | Date64 | Time64(_) | Timestamp(_, _) | Duration(_) => (8, true),
            UInt8 => (1, false),
            UInt16 => (2, false),
            UInt32 => (4, false),
            UInt64 => (8, false),
            _ => return None,
        };
        Some(WordKey { width, signed })
    }
}

/// A 64-bit mix (murmur3's finalizer): every input bit reaches the high bits the word table
/// uses for its partition and the low bits it uses for the slot.
#[inline]
pub(super) fn hash_word(word: u64) -> u64 {
    let mut h = word ^ (word >> 33);
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// What [`GroupTable::lookup_columns`] gives a row whose key has no group. Never a group
/// index: the table would need 2^32 groups.
pub(crate) const NO_GROUP: u32 = u32::MAX;

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
    /// A table for keys of these column types: the words path for one integer-like column,
    /// the rows path otherwise.
    pub(crate) fn for_key_types(types: &[&DataType]) -> Self {
        let word_key = match types {
            [only] => WordKey::of(only),
            _ => None,
        };
        GroupTable {
            word_key,
            word_type: word_key.map(|_| types[0].clone()),
            packed: word_key
                .is_none()
                .then(|| PackedLayout::of(types))
                .flatten(),
            ..GroupTable::default()
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.key_offsets.len()
    }

    /// Builds a filter that lookups ask before the table, for a table done growing whose
    /// lookups often find nothing (a join's build side). Tables that fit the cache get none.
    /// The next insert drops it.
    pub(crate) fn build_filter(&mut self) {
        self.filter_lookups = 0;
        self.filter_misses = 0;
        self.filter = (self.len() >= key_filter::MIN_KEYS).then(|| {
            if self.word_key.is_some() {
                KeyFilter::new(self.len(), self.words.words().map(hash_word))
            } else if self.packed.is_some() {
                KeyFilter::new(self.len(), self.packed_words.words().map(hash_packed))
            } else {
                KeyFilter::new(self.len(), self.table.iter().map(|e| e.hash))
            }
        });
    }

    /// Whether a key with this hash may have a group (no filter: maybe).
    #[inline]
    fn may_contain(&self, hash: u64) -> bool {
        self.filter.as_ref().is_none_or(|f| f.may_contain(hash))
    }

    pub(crate) fn allocated_bytes(&self) -> usize {
        self.filter.as_ref().map_or(0, KeyFilter::allocated_bytes)
            + self.candidates.capacity() * std::mem::size_of::<Candidate>()
            + self.table.capacity() * std::mem::size_of::<Entry>()
            + self.words.allocated_bytes()
            + self.packed_words.allocated_bytes()
            + self.packed_keys.capacity() * std::mem::size_of::<u128>()
            + (self.batch_words.capacity() + self.hashes.capacity()) * std::mem::size_of::<u64>()
            + (self.misfits.capacity() + self.new_rows.capacity()) * std::mem::size_of::<u32>()
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

    /// The key columns of `groups`, in that order, decoded with `converter` (the converter
    /// that encodes them); on the words path read straight from the key bytes.
    pub(crate) fn decode_keys(
        &self,
        converter: &RowConverter,
        groups: &[u32],
    ) -> Result<Vec<ArrayRef>> {
        if let (Some(key), Some(data_type)) = (self.word_key, &self.word_type) {
            return Ok(vec![self.decode_words(key, data_type, groups)?]);
        }
        let parser = converter.parser();
        let rows = groups.iter().map(|&g| parser.parse(self.key(g)));
        converter
            .convert_rows(rows)
            .map_err(|e| Error::arrow("group key decoding", e))
    }

    fn decode_words(&self, key: WordKey, data_type: &DataType, groups: &[u32]) -> Result<ArrayRef> {
        let flip = if key.signed {
            1u64 << (key.width * 8 - 1)
        } else {
            0
        };
        let word = |g: u32| {
            let start = self.key_offsets[g as usize] + 1;
            let mut bytes = [0u8; 8];
            bytes[8 - key.width..].copy_from_slice(&self.key_bytes[start..start + key.width]);
            u64::from_be_bytes(bytes) ^ flip
        };
        let values = match key.width {
            1 => Buffer::from_vec(groups.iter().map(|&g| word(g) as u8).collect::<Vec<_>>()),
            2 => Buffer::from_vec(groups.iter().map(|&g| word(g) as u16).collect::<Vec<_>>()),
            4 => Buffer::from_vec(groups.iter().map(|&g| word(g) as u32).collect::<Vec<_>>()),
            _ => Buffer::from_vec(groups.iter().map(|&g| word(g)).collect::<Vec<_>>()),
        };
        let nulls = self.null_group.and_then(|null| {
            let valid = BooleanBuffer::collect_bool(groups.len(), |i| groups[i] != null);
            Some(NullBuffer::new(valid)).filter(|n| n.null_count() > 0)
        });
        let data = ArrayData::builder(data_type.clone())
            .len(groups.len())
            .add_buffer(values)
            .nulls(nulls)
            .build()
            .map_err(|e| Error::arrow("group key decoding", e))?;
        Ok(make_array(data))
    }

    /// Fills `out` with the group index of every row of the key `columns` (as `converter`
    /// encodes them), adding new groups as needed.
    pub(crate) fn intern_columns(
        &mut self,
        converter: &RowConverter,
        columns: &[ArrayRef],
        out: &mut Vec<u32>,
    ) -> Result<()> {
        self.filter = None;
        if let (Some(key), [column]) = (self.word_key, columns)
            && WordKey::of(column.data_type()) == Some(key)
        {
            self.intern_word_column(key, column.as_ref(), out);
            return Ok(());
        }
        if self.packed.is_some() {
            if self.intern_packed(converter, columns, out)? {
                return Ok(());
            }
            self.leave_packed();
        }
        let rows = converter
            .convert_columns(columns)
            .map_err(|e| Error::arrow("group key encoding", e))?;
        self.intern(&rows, out);
        Ok(())
    }

    /// Fills `out` with the group index of every row of the key `columns` (as `converter`
    /// encodes them), or [`NO_GROUP`] where the key has none; adds no group. The aggregation
    /// uses it once its groups are frozen (see the spilling section of the module docs).
    pub(crate) fn lookup_columns(
        &mut self,
        converter: &RowConverter,
        columns: &[ArrayRef],
        out: &mut Vec<u32>,
    ) -> Result<()> {
        out.clear();
        if let (Some(key), [column]) = (self.word_key, columns)
            && WordKey::of(column.data_type()) == Some(key)
        {
            self.lookup_word_column(key, column.as_ref(), out);
        } else if self.packed.is_some() {
            self.lookup_packed(columns, out);
        } else {
            let rows = converter
                .convert_columns(columns)
                .map_err(|e| Error::arrow("group key encoding", e))?;
            out.reserve(rows.num_rows());
            for row in rows.iter() {
                out.push(self.lookup_one(row.as_ref()).unwrap_or(NO_GROUP));
            }
        }
        self.judge_filter(out);
        Ok(())
    }

    /// Drops the filter once lookups show that most keys are found: a foreign key probing
    /// its dimension (every line item has its order) gains nothing from it.
    fn judge_filter(&mut self, groups: &[u32]) {
        if self.filter.is_none() {
            return;
        }
        self.filter_lookups += groups.len();
        self.filter_misses += groups.iter().filter(|&&g| g == NO_GROUP).count();
        if self.filter_lookups >= key_filter::MIN_KEYS
            && self.filter_misses * 4 < self.filter_lookups
        {
            self.filter = None;
        }
    }

    fn lookup_word_column(&mut self, key: WordKey, column: &dyn Array, out: &mut Vec<u32>) {
        let data = column.to_data();
        let nulls = column.logical_nulls();
        out.reserve(column.len());
        let flip = |bits: u32| if key.signed { 1u64 << (bits - 1) } else { 0 };
        match key.width {
            1 => {
                let f = flip(8);
                self.lookup_words(data.buffer::<u8>(0), nulls, |v| u64::from(v) ^ f, out)
            }
            2 => {
                let f = flip(16);
                self.lookup_words(data.buffer::<u16>(0), nulls, |v| u64::from(v) ^ f, out)
            }
            4 => {
                let f = flip(32);
                self.lookup_words(data.buffer::<u32>(0), nulls, |v| u64::from(v) ^ f, out)
            }
            _ => {
                let f = flip(64);
                self.lookup_words(data.buffer::<u64>(0), nulls, |v| v ^ f, out)
            }
        }
    }

    /// Looks up every row's word, hashing each row once. Without a key filter, the batch's
    /// hashes are computed first, then one pass looks the rows up, prefetching each row's
    /// slot a few rows ahead unless the table stays in the cache. With one, two passes: the
    /// first hashes every row and asks the filter, keeping the rows it does not rule out; the
    /// second probes only those, prefetching ahead among them (TPC-H Q8's line items probing
    /// 1 300 parts).
    #[inline]
    fn lookup_words<T: Copy>(
        &mut self,
        values: &[T],
        nulls: Option<NullBuffer>,
        to_word: impl Fn(T) -> u64,
        out: &mut Vec<u32>,
    ) {
        let nulls = nulls.filter(|n| n.null_count() > 0);
        let null_group = self.null_group.unwrap_or(NO_GROUP);
        let Some(filter) = &self.filter else {
            self.load_words(values, to_word);
            let words = &self.batch_words;
            let found = |i: usize| self.words.get(self.hashes[i], words[i]).unwrap_or(NO_GROUP);
            // Row `i + PREFETCH_AHEAD`'s slot is prefetched while row `i` is looked up, unless
            // the table stays in the cache.
            let prefetch = !self.words.is_cached();
            if nulls.is_none() && !prefetch {
                // The branch-free loop of a small build side probed by many rows (Q17: 2%).
                out.extend((0..words.len()).map(found));
                return;
            }
            for i in 0..words.len() {
                if prefetch && let Some(&ahead) = self.hashes.get(i + PREFETCH_AHEAD) {
                    self.words.prefetch(ahead);
                }
                out.push(if nulls.as_ref().is_none_or(|n| n.is_valid(i)) {
                    found(i)
                } else {
                    null_group
                });
            }
            return;
        };
        let candidates = &mut self.candidates;
        candidates.clear();
        out.reserve(values.len());
        for (i, &v) in values.iter().enumerate() {
            if nulls.as_ref().is_none_or(|n| n.is_valid(i)) {
                let word = to_word(v);
                let hash = hash_word(word);
                if filter.may_contain(hash) {
                    candidates.push(Candidate {
                        row: i as u32,
                        word,
                        hash,
                    });
                }
                out.push(NO_GROUP);
            } else {
                out.push(null_group);
            }
        }
        for (j, candidate) in candidates.iter().enumerate() {
            if let Some(ahead) = candidates.get(j + PREFETCH_AHEAD) {
                self.words.prefetch(ahead.hash);
            }
            if let Some(group) = self.words.get(candidate.hash, candidate.word) {
                out[candidate.row as usize] = group;
            }
        }
    }

    /// The group index of one row-encoded key, if it has one. Not on the packed path.
    fn lookup_one(&self, bytes: &[u8]) -> Option<u32> {
        debug_assert!(
            self.packed.is_none(),
            "a row-encoded lookup on the packed path"
        );
        if let Some(key) = self.word_key
            && bytes.len() == 1 + key.width
        {
            return if bytes[0] == 0 {
                self.null_group
            } else {
                let mut word = [0u8; 8];
                word[8 - key.width..].copy_from_slice(&bytes[1..]);
                let word = u64::from_be_bytes(word);
                let hash = hash_word(word);
                self.may_contain(hash)
                    .then(|| self.words.get(hash, word))
                    .flatten()
            };
        }
        let probe = Probe::new(bytes);
        if !self.may_contain(probe.hash) {
            return None;
        }
        find(&self.table, &self.key_bytes, &self.key_offsets, &probe)
    }

    fn intern_word_column(&mut self, key: WordKey, column: &dyn Array, out: &mut Vec<u32>) {
        let data = column.to_data();
        let nulls = column.logical_nulls();
        out.clear();
        out.reserve(column.len());
        // The sign flip of arrow-row's integer encoding, in the value's own width.
        let flip = |bits: u32| if key.signed { 1u64 << (bits - 1) } else { 0 };
        match key.width {
            1 => {
                let f = flip(8);
                self.words_loop(key, data.buffer::<u8>(0), nulls, |v| u64::from(v) ^ f, out)
            }
            2 => {
                let f = flip(16);
                self.words_loop(key, data.buffer::<u16>(0), nulls, |v| u64::from(v) ^ f, out)
            }
            4 => {
                let f = flip(32);
                self.words_loop(key, data.buffer::<u32>(0), nulls, |v| u64::from(v) ^ f, out)
            }
            _ => {
                let f = flip(64);
                self.words_loop(key, data.buffer::<u64>(0), nulls, |v| v ^ f, out)
            }
        }
    }

    #[inline]
    fn words_loop<T: Copy>(
        &mut self,
        key: WordKey,
        values: &[T],
        nulls: Option<NullBuffer>,
        to_word: impl Fn(T) -> u64,
        out: &mut Vec<u32>,
    ) {
        self.load_words(values, to_word);
        let (words, hashes) = (
            std::mem::take(&mut self.batch_words),
            std::mem::take(&mut self.hashes),
        );
        // As in `lookup_words`; a table that outgrows the cache during the batch is
        // prefetched from the next batch on.
        let nulls = nulls.filter(|n| n.null_count() > 0);
        let prefetch = !self.words.is_cached();
        for (i, (&word, &hash)) in words.iter().zip(&hashes).enumerate() {
            if prefetch && let Some(&ahead) = hashes.get(i + PREFETCH_AHEAD) {
                self.words.prefetch(ahead);
            }
            out.push(if nulls.as_ref().is_none_or(|n| n.is_valid(i)) {
                self.intern_word(key, word, hash)
            } else {
                self.intern_null_word(key)
            });
        }
        (self.batch_words, self.hashes) = (words, hashes);
    }

    /// Fills the batch's words and their hashes.
    #[inline]
    fn load_words<T: Copy>(&mut self, values: &[T], to_word: impl Fn(T) -> u64) {
        self.batch_words.clear();
        self.batch_words.extend(values.iter().map(|&v| to_word(v)));
        self.hashes.clear();
        self.hashes
            .extend(self.batch_words.iter().map(|&w| hash_word(w)));
    }

    #[inline]
    fn intern_word(&mut self, key: WordKey, word: u64, hash: u64) -> u32 {
        let group = self.key_offsets.len() as u32;
        if let Some(existing) = self.words.get_or_insert(hash, word, group, hash_word) {
            return existing;
        }
        self.key_offsets.push(self.key_bytes.len());
        // arrow-row: a validity byte (1 = valid), then the value big-endian.
        self.key_bytes.push(1);
        self.key_bytes
            .extend_from_slice(&word.to_be_bytes()[8 - key.width..]);
        group
    }

    fn intern_null_word(&mut self, key: WordKey) -> u32 {
        if let Some(group) = self.null_group {
            return group;
        }
        let group = self.key_offsets.len() as u32;
        self.key_offsets.push(self.key_bytes.len());
        // arrow-row: a NULL is the null sentinel (0 for NULLS FIRST) and zeroed value bytes.
        self.key_bytes
            .resize(self.key_bytes.len() + 1 + key.width, 0);
        self.null_group = Some(group);
        group
    }

    /// The group index of one row-encoded key, added if new. A table on the packed path
    /// moves to the rows path first (only restores intern single keys).
    pub(crate) fn intern_one(&mut self, bytes: &[u8]) -> u32 {
        self.filter = None;
        if self.packed.is_some() {
            self.leave_packed();
        }
        if let Some(key) = self.word_key
            && bytes.len() == 1 + key.width
        {
            return if bytes[0] == 0 {
                self.intern_null_word(key)
            } else {
                let mut word = [0u8; 8];
                word[8 - key.width..].copy_from_slice(&bytes[1..]);
                let word = u64::from_be_bytes(word);
                self.intern_word(key, word, hash_word(word))
            };
        }
        let probe = Probe::new(bytes);
        if let Some(g) = find(&self.table, &self.key_bytes, &self.key_offsets, &probe) {
            return g;
        }
        let g = self.key_offsets.len() as u32;
        self.key_offsets.push(self.key_bytes.len());
        self.key_bytes.extend_from_slice(bytes);
        insert_entry(&mut self.table, &probe, g);
        g
    }

    /// Packs the key `columns` of a batch into `packed_keys`, noting in `misfits` the rows
    /// whose key does not fit the layout (a row may be noted more than once).
    fn pack(&mut self, columns: &[ArrayRef]) {
        let rows = columns.first().map_or(0, |c| c.len());
        self.packed_keys.clear();
        self.packed_keys.resize(rows, 0);
        self.misfits.clear();
        let Some(layout) = &self.packed else {
            return;
        };
        for (place, column) in layout.columns.iter().zip(columns) {
            place.pack(column.as_ref(), &mut self.packed_keys, &mut self.misfits);
        }
        self.hashes.clear();
        self.hashes
            .extend(self.packed_keys.iter().map(|&k| hash_packed(k)));
    }

    /// Interns a batch on the packed path; `false` (nothing interned) when a key does not
    /// fit.
    fn intern_packed(
        &mut self,
        converter: &RowConverter,
        columns: &[ArrayRef],
        out: &mut Vec<u32>,
    ) -> Result<bool> {
        let fits = self.packed.as_ref().is_some_and(|l| l.accepts(columns));
        if !fits {
            return Ok(false);
        }
        self.pack(columns);
        if !self.misfits.is_empty() {
            return Ok(false);
        }
        out.clear();
        out.reserve(self.packed_keys.len());
        self.new_rows.clear();
        let first_new = self.key_offsets.len() as u32;
        for (i, (&key, &hash)) in self.packed_keys.iter().zip(&self.hashes).enumerate() {
            if let Some(&ahead) = self.hashes.get(i + PREFETCH_AHEAD) {
                self.packed_words.prefetch(ahead);
            }
            let next = first_new + self.new_rows.len() as u32;
            match self
                .packed_words
                .get_or_insert(hash, key, next, hash_packed)
            {
                Some(group) => out.push(group),
                None => {
                    self.new_rows.push(i as u32);
                    out.push(next);
                }
            }
        }
        if !self.new_rows.is_empty() {
            // The new groups' key bytes, in group order: their rows, row-encoded in one call.
            let indices = UInt32Array::from_iter_values(self.new_rows.iter().copied());
            let taken = columns
                .iter()
                .map(|c| take(c.as_ref(), &indices, None))
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| Error::arrow("group key encoding", e))?;
            let rows = converter
                .convert_columns(&taken)
                .map_err(|e| Error::arrow("group key encoding", e))?;
            for row in rows.iter() {
                self.key_offsets.push(self.key_bytes.len());
                self.key_bytes.extend_from_slice(row.as_ref());
            }
        }
        Ok(true)
    }

    /// Looks up a batch on the packed path: a key that does not fit has no group.
    fn lookup_packed(&mut self, columns: &[ArrayRef], out: &mut Vec<u32>) {
        let rows = columns.first().map_or(0, |c| c.len());
        if !self.packed.as_ref().is_some_and(|l| l.accepts(columns)) {
            out.resize(rows, NO_GROUP);
            return;
        }
        self.pack(columns);
        out.reserve(rows);
        for (i, (&key, &hash)) in self.packed_keys.iter().zip(&self.hashes).enumerate() {
            if let Some(&ahead) = self.hashes.get(i + PREFETCH_AHEAD) {
                self.packed_words.prefetch(ahead);
            }
            out.push(if self.may_contain(hash) {
                self.packed_words.get(hash, key).unwrap_or(NO_GROUP)
            } else {
                NO_GROUP
            });
        }
        for &row in &self.misfits {
            out[row as usize] = NO_GROUP;
        }
    }

    /// Moves the table from the packed path to the rows path, which takes any key.
    fn leave_packed(&mut self) {
        if self.packed.take().is_none() {
            return;
        }
        self.packed_words = WordTable::default();
        self.filter = None;
        let total = self.key_bytes.len();
        let ends = self.key_offsets.iter().skip(1).chain([&total]);
        for (group, (&start, &end)) in self.key_offsets.iter().zip(ends).enumerate() {
            let probe = Probe::new(&self.key_bytes[start..end]);
            insert_entry(&mut self.table, &probe, group as u32);
        }
    }
}

/// Adds `group` to the rows path's `table` under `probe`'s key.
fn insert_entry(table: &mut HashTable<Entry>, probe: &Probe<'_>, group: u32) {
    let entry = Entry {
        hash: probe.hash,
        group,
        // Long keys are compared in the key buffer; their length byte is unused.
        len: probe.bytes.len().min(INLINE_KEY) as u8,
        inline: probe.inline,
    };
    table.insert_unique(probe.hash, entry, |e| e.hash);
}

/// The hash of a packed key: both halves mixed with [`hash_word`].
#[inline]
fn hash_packed(key: u128) -> u64 {
    hash_word(key as u64 ^ hash_word((key >> 64) as u64))
}

/// Bytes of a packed key.
const PACKED_BYTES: usize = 16;

/// Where each key column goes in a packed key. Integer-like values take their width; the
/// strings share the rest equally, each a length byte (length + 1) and up to `cap` bytes.
/// Distinct keys that fit pack to distinct words. A key with a NULL does not fit.
#[derive(Clone, Debug, PartialEq)]
struct PackedLayout {
    columns: Vec<PackedColumn>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum PackedColumn {
    /// An integer-like value of `width` bytes at byte `at`.
    Int { width: usize, at: usize },
    /// A `STRING` of at most `cap` bytes: its length + 1 at byte `at`, its bytes after.
    Str { cap: usize, at: usize },
}

impl PackedLayout {
    /// The layout for keys of `types`, if they can fit: only integer-like and `STRING`
    /// columns, and at least one byte for each string.
    fn of(types: &[&DataType]) -> Option<PackedLayout> {
        if types.is_empty() {
            return None;
        }
        let mut int_bytes = 0;
        let mut strings = 0;
        for data_type in types {
            match (WordKey::of(data_type), data_type) {
                (Some(key), _) => int_bytes += key.width,
                (None, DataType::Utf8) => strings += 1,
                _ => return None,
            }
        }
        let room = PACKED_BYTES.checked_sub(int_bytes)?;
        let cap = match strings {
            0 => 0,
            n => (room / n).checked_sub(1).filter(|&cap| cap > 0)?,
        };
        let mut at = 0;
        let columns = types
            .iter()
            .map(|data_type| {
                let column = match WordKey::of(data_type) {
                    Some(key) => PackedColumn::Int {
                        width: key.width,
                        at,
                    },
                    None => PackedColumn::Str { cap, at },
                };
                at += match column {
                    PackedColumn::Int { width, .. } => width,
                    PackedColumn::Str { cap, .. } => 1 + cap,
                };
                column
            })
            .collect();
        Some(PackedLayout { columns })
    }

    /// Whether `columns` have the types of the layout.
    fn accepts(&self, columns: &[ArrayRef]) -> bool {
        columns.len() == self.columns.len()
            && self.columns.iter().zip(columns).all(|(place, column)| {
                match (place, column.data_type()) {
                    (PackedColumn::Int { width, .. }, t) => {
                        WordKey::of(t).is_some_and(|k| k.width == *width)
                    }
                    (PackedColumn::Str { .. }, t) => *t == DataType::Utf8,
                }
            })
    }
}

impl PackedColumn {
    /// Ors `column`'s values into their place in `keys`; rows that do not fit go to
    /// `misfits`.
    fn pack(self, column: &dyn Array, keys: &mut [u128], misfits: &mut Vec<u32>) {
        if let Some(nulls) = column.logical_nulls().filter(|n| n.null_count() > 0) {
            misfits.extend(
                nulls
                    .iter()
                    .enumerate()
                    .filter(|(_, v)| !v)
                    .map(|(i, _)| i as u32),
            );
        }
        match self {
            PackedColumn::Int { width, at } => {
                let data = column.to_data();
                let shift = 8 * at as u32;
                match width {
                    1 => or_values(keys, data.buffer::<u8>(0), shift),
                    2 => or_values(keys, data.buffer::<u16>(0), shift),
                    4 => or_values(keys, data.buffer::<u32>(0), shift),
                    _ => or_values(keys, data.buffer::<u64>(0), shift),
                }
            }
            PackedColumn::Str { cap, at } => {
                let strings = column.as_string::<i32>();
                let offsets = strings.value_offsets();
                let bytes = strings.value_data();
                let shift = 8 * at as u32;
                if cap < 8 {
                    pack_short_strings(offsets, bytes, cap, shift, keys, misfits);
                    return;
                }
                for (i, key) in keys.iter_mut().enumerate() {
                    let start = offsets[i] as usize;
                    let len = offsets[i + 1] as usize - start;
                    if len > cap {
                        misfits.push(i as u32);
                        continue;
                    }
                    // The string's bytes, read as one little-endian word where 16 bytes
                    // follow its start and masked to its length (`len` < 16).
                    let value = match bytes.get(start..start + PACKED_BYTES) {
                        Some(window) => {
                            let word = u128::from_le_bytes(window.try_into().unwrap_or_default());
                            word & ((1u128 << (8 * len)) - 1)
                        }
                        None => {
                            let mut word = [0u8; PACKED_BYTES];
                            word[..len].copy_from_slice(&bytes[start..start + len]);
                            u128::from_le_bytes(word)
                        }
                    };
                    *key |= ((value << 8) | (len as u128 + 1)) << shift;
                }
            }
        }
    }
}

/// [`PackedColumn::pack`] for strings of at most seven bytes, whose place (length byte and
/// bytes) fits one 64-bit word: the same packing in 64-bit arithmetic, each string read as
/// one 8-byte load where eight bytes follow its start.
#[inline]
fn pack_short_strings(
    offsets: &[i32],
    bytes: &[u8],
    cap: usize,
    shift: u32,
    keys: &mut [u128],
    misfits: &mut Vec<u32>,
) {
    for (i, (key, ends)) in keys.iter_mut().zip(offsets.windows(2)).enumerate() {
        let start = ends[0] as usize;
        let len = (ends[1] - ends[0]) as usize;
        if len > cap {
            misfits.push(i as u32);
            continue;
        }
        let value = match bytes.get(start..start + 8) {
            Some(window) => {
                let word = u64::from_le_bytes(window.try_into().unwrap_or_default());
                word & ((1u64 << (8 * len)) - 1)
            }
            None => {
                let mut word = [0u8; 8];
                word[..len].copy_from_slice(&bytes[start..start + len]);
                u64::from_le_bytes(word)
            }
        };
        *key |= u128::from((value << 8) | (len as u64 + 1)) << shift;
    }
}

/// Ors each value, `shift` bits up, into its row's key.
#[inline]
fn or_values<T: Copy + Into<u128>>(keys: &mut [u128], values: &[T], shift: u32) {
    for (key, &value) in keys.iter_mut().zip(values) {
        *key |= value.into() << shift;
    }
}

/// A row-encoded key prepared for the rows path: its hash and, if short, its inline copy.
struct Probe<'a> {
    bytes: &'a [u8],
    hash: u64,
    inline: [u8; INLINE_KEY],
}

impl<'a> Probe<'a> {
    #[inline]
    fn new(bytes: &'a [u8]) -> Self {
        let mut inline = [0u8; INLINE_KEY];
        if bytes.len() <= INLINE_KEY {
            inline[..bytes.len()].copy_from_slice(bytes);
        }
        Probe {
            bytes,
            hash: xxh3_64(bytes),
            inline,
        }
    }
}

/// The group of `probe`'s key in the rows path's `table`, whose long keys are compared in
/// `key_bytes` at `key_offsets`.
#[inline]
fn find(
    table: &HashTable<Entry>,
    key_bytes: &[u8],
    key_offsets: &[usize],
    probe: &Probe<'_>,
) -> Option<u32> {
    let bytes = probe.bytes;
    let short = bytes.len() <= INLINE_KEY;
    let key_of = |g: u32| {
        let start = key_offsets[g as usize];
        let end = key_offsets
            .get(g as usize + 1)
            .copied()
            .unwrap_or(key_bytes.len());
        &key_bytes[start..end]
    };
    table
        .find(probe.hash, |entry| {
            entry.hash == probe.hash
                && if short {
                    usize::from(entry.len) == bytes.len() && entry.inline == probe.inline
                } else {
                    same_key(key_of(entry.group), bytes)
                }
        })
        .map(|entry| entry.group)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int8Array, Int32Array, Int64Array, TimestampMillisecondArray, UInt16Array};
    use arrow::row::SortField;
    use proptest::prelude::*;

    use super::*;

    /// Interns `column` on both paths and checks they agree: the same group numbering and,
    /// for every group, the key bytes arrow-row would have produced.
    fn check_paths_agree(column: ArrayRef) {
        let converter =
            RowConverter::new(vec![SortField::new(column.data_type().clone())]).unwrap();
        let mut words = GroupTable::for_key_types(&[column.data_type()]);
        assert!(
            words.word_key.is_some(),
            "{} takes the words path",
            column.data_type()
        );
        let mut rows = GroupTable::default();
        let (mut by_words, mut by_rows) = (Vec::new(), Vec::new());
        words
            .intern_columns(&converter, std::slice::from_ref(&column), &mut by_words)
            .unwrap();
        rows.intern_columns(&converter, std::slice::from_ref(&column), &mut by_rows)
            .unwrap();
        assert_eq!(by_words, by_rows);
        assert_eq!(words.len(), rows.len());
        for g in 0..words.len() as u32 {
            assert_eq!(words.key(g), rows.key(g), "key bytes of group {g}");
            // A row-encoded key (a restore, a join) finds the group the words path made.
            assert_eq!(words.intern_one(rows.key(g)), g);
        }
        assert_eq!(words.len(), rows.len(), "no group added by intern_one");
        let all: Vec<u32> = (0..words.len() as u32).rev().collect();
        assert_eq!(
            words.decode_keys(&converter, &all).unwrap(),
            rows.decode_keys(&converter, &all).unwrap(),
            "decoded keys"
        );
    }

    #[test]
    fn word_keys_encode_as_arrow_row_does() {
        check_paths_agree(Arc::new(Int64Array::from(vec![
            Some(0),
            Some(-1),
            Some(i64::MIN),
            Some(i64::MAX),
            None,
            Some(7),
            Some(-1),
            None,
            Some(0),
        ])));
        check_paths_agree(Arc::new(Int32Array::from(vec![
            Some(5),
            None,
            Some(i32::MIN),
            Some(5),
        ])));
        check_paths_agree(Arc::new(Int8Array::from(vec![-128, 127, 0, -1, 0])));
        check_paths_agree(Arc::new(UInt16Array::from(vec![65535, 0, 1, 0])));
        check_paths_agree(Arc::new(TimestampMillisecondArray::from(vec![
            1_700_000_000_000,
            -5,
            1_700_000_000_000,
        ])));
    }

    #[test]
    fn a_sliced_column_reads_its_own_values() {
        let column = Int64Array::from(vec![1, 2, 3, 4, 5, 6]);
        check_paths_agree(Arc::new(column.slice(2, 3)));
    }

    #[test]
    fn other_keys_take_the_rows_path() {
        assert!(
            GroupTable::for_key_types(&[&DataType::Utf8])
                .word_key
                .is_none()
        );
        assert!(
            GroupTable::for_key_types(&[&DataType::Float64])
                .word_key
                .is_none()
        );
        assert!(
            GroupTable::for_key_types(&[&DataType::Int64, &DataType::Int64])
                .word_key
                .is_none()
        );
    }

    /// Looks `probe` up in `table` and checks the answer against `known`, the group of each
    /// key interned so far; the table gains no group.
    fn check_lookup(
        table: &mut GroupTable,
        converter: &RowConverter,
        probe: &ArrayRef,
        known: &std::collections::HashMap<Option<String>, u32>,
    ) {
        let before = table.len();
        let mut found = Vec::new();
        table
            .lookup_columns(converter, std::slice::from_ref(probe), &mut found)
            .unwrap();
        assert_eq!(found.len(), probe.len());
        for (i, &g) in found.iter().enumerate() {
            let key = probe
                .is_valid(i)
                .then(|| arrow::util::display::array_value_to_string(probe, i).unwrap());
            assert_eq!(g, known.get(&key).copied().unwrap_or(NO_GROUP), "row {i}");
        }
        assert_eq!(table.len(), before, "a lookup adds no group");
    }

    /// A words table too large to stay in the cache is interned and looked up with
    /// prefetching; a small one without. Both find every key, in every batch position.
    #[test]
    fn large_and_small_word_tables_find_their_keys() {
        for count in [100i64, 60_000] {
            let converter = RowConverter::new(vec![SortField::new(DataType::Int64)]).unwrap();
            let mut table = GroupTable::for_key_types(&[&DataType::Int64]);
            let keys: ArrayRef = Arc::new(Int64Array::from_iter_values(
                (0..count).map(|k| k * 7919 - 12_345),
            ));
            let mut groups = Vec::new();
            table
                .intern_columns(&converter, std::slice::from_ref(&keys), &mut groups)
                .unwrap();
            assert_eq!(groups, (0..count as u32).collect::<Vec<_>>());
            assert_eq!(table.words.is_cached(), count < 1000, "{count} keys");
            // Again: every key is found, and interning adds none.
            table
                .intern_columns(&converter, std::slice::from_ref(&keys), &mut groups)
                .unwrap();
            assert_eq!(groups, (0..count as u32).collect::<Vec<_>>());
            // Lookups of present, absent and NULL keys, without a key filter.
            let probe: ArrayRef =
                Arc::new(Int64Array::from_iter((0..count).map(|k| match k % 3 {
                    0 => Some(k * 7919 - 12_345),
                    1 => Some(k * 7919 - 12_344),
                    _ => None,
                })));
            let mut found = Vec::new();
            table
                .lookup_columns(&converter, std::slice::from_ref(&probe), &mut found)
                .unwrap();
            let expected: Vec<u32> = (0..count as u32)
                .map(|k| if k % 3 == 0 { k } else { NO_GROUP })
                .collect();
            assert_eq!(found, expected);
            assert_eq!(table.len(), count as usize);
        }
    }

    #[test]
    fn lookups_find_interned_keys_and_add_none() {
        let int_keys: ArrayRef = Arc::new(Int64Array::from(vec![Some(3), None, Some(-7), Some(3)]));
        let int_probe: ArrayRef = Arc::new(Int64Array::from(vec![
            Some(-7),
            Some(4),
            None,
            Some(3),
            Some(0),
        ]));
        let str_keys: ArrayRef = Arc::new(arrow::array::StringArray::from(vec![
            Some("a"),
            Some("a long key beyond the inline bytes"),
            None,
        ]));
        let str_probe: ArrayRef = Arc::new(arrow::array::StringArray::from(vec![
            Some("b"),
            None,
            Some("a long key beyond the inline bytes"),
            Some("a long key beyond the inline bytez"),
            Some("a"),
        ]));
        for (keys, probe) in [(int_keys, int_probe), (str_keys, str_probe)] {
            let data_type = keys.data_type().clone();
            let converter = RowConverter::new(vec![SortField::new(data_type.clone())]).unwrap();
            for mut table in [
                GroupTable::for_key_types(&[&data_type]),
                GroupTable::default(),
            ] {
                // An empty table finds nothing.
                check_lookup(&mut table, &converter, &probe, &Default::default());
                let mut groups = Vec::new();
                table
                    .intern_columns(&converter, std::slice::from_ref(&keys), &mut groups)
                    .unwrap();
                let known = groups
                    .iter()
                    .enumerate()
                    .map(|(i, &g)| {
                        let key = keys.is_valid(i).then(|| {
                            arrow::util::display::array_value_to_string(&keys, i).unwrap()
                        });
                        (key, g)
                    })
                    .collect();
                check_lookup(&mut table, &converter, &probe, &known);
                for g in 0..table.len() as u32 {
                    assert_eq!(table.lookup_one(table.key(g)), Some(g));
                }
            }
        }
    }

    /// With the key filter built, both paths find every key and nothing else; the filter
    /// stays while lookups mostly miss and goes once they mostly hit.
    #[test]
    fn the_key_filter_changes_no_answer_and_goes_when_lookups_hit() {
        let keys: ArrayRef = Arc::new(Int64Array::from_iter_values((0..10_000).map(|k| k * 3)));
        let other: ArrayRef = Arc::new(Int64Array::from_iter_values(0..10_000));
        let misses: ArrayRef =
            Arc::new(Int64Array::from_iter_values((0..8_192).map(|k| k * 3 + 1)));
        let hits: ArrayRef = Arc::new(Int64Array::from_iter_values((0..8_192).map(|k| k * 3)));
        for columns in [vec![keys.clone()], vec![keys.clone(), other.clone()]] {
            let types: Vec<&DataType> = columns.iter().map(|c| c.data_type()).collect();
            let fields = types.iter().map(|&t| SortField::new(t.clone())).collect();
            let converter = RowConverter::new(fields).unwrap();
            let mut table = GroupTable::for_key_types(&types);
            let mut groups = Vec::new();
            table
                .intern_columns(&converter, &columns, &mut groups)
                .unwrap();
            table.build_filter();
            assert!(table.filter.is_some());
            let probe = |first: &ArrayRef| -> Vec<ArrayRef> {
                let mut probe = vec![first.clone()];
                if columns.len() == 2 {
                    // The second column of the interned keys is the row number: k / 3.
                    let k =
                        arrow::array::AsArray::as_primitive::<arrow::datatypes::Int64Type>(first);
                    probe.push(Arc::new(Int64Array::from_iter_values(
                        k.values().iter().map(|v| v / 3),
                    )));
                }
                probe
            };
            let mut found = Vec::new();
            table
                .lookup_columns(&converter, &probe(&misses), &mut found)
                .unwrap();
            assert!(found.iter().all(|&g| g == NO_GROUP));
            assert!(table.filter.is_some(), "misses keep the filter");
            // Once hits outnumber misses three to one (counted since the filter was built),
            // it goes; the answers are the same with and without it.
            for _ in 0..4 {
                table
                    .lookup_columns(&converter, &probe(&hits), &mut found)
                    .unwrap();
                assert_eq!(found, (0..8_192).collect::<Vec<u32>>());
            }
            assert!(table.filter.is_none(), "hits drop the filter");
        }
    }

    #[test]
    fn packed_layouts_give_ints_their_width_and_strings_the_rest() {
        use PackedColumn::*;
        let layout = |types: &[&DataType]| PackedLayout::of(types).map(|l| l.columns);
        assert_eq!(
            layout(&[&DataType::Utf8, &DataType::Utf8]),
            Some(vec![Str { cap: 7, at: 0 }, Str { cap: 7, at: 8 }])
        );
        assert_eq!(
            layout(&[&DataType::Int64, &DataType::Date32, &DataType::Int32]),
            Some(vec![
                Int { width: 8, at: 0 },
                Int { width: 4, at: 8 },
                Int { width: 4, at: 12 }
            ])
        );
        assert_eq!(
            layout(&[&DataType::Utf8]),
            Some(vec![Str { cap: 15, at: 0 }])
        );
        assert_eq!(
            layout(&[&DataType::Int64, &DataType::Int64, &DataType::Int8]),
            None
        );
        assert_eq!(layout(&[&DataType::Int64, &DataType::Float64]), None);
        assert_eq!(
            layout(&[&DataType::Int64, &DataType::Int32, &DataType::Utf8]),
            Some(vec![
                Int { width: 8, at: 0 },
                Int { width: 4, at: 8 },
                Str { cap: 3, at: 12 }
            ])
        );
        assert_eq!(layout(&[]), None);
        assert!(
            GroupTable::for_key_types(&[&DataType::Int64])
                .packed
                .is_none()
        );
    }

    /// A key of an integer, a string and a small integer, as proptest draws its rows.
    type KeyRow = (Option<i64>, Option<String>, i16);

    fn key_columns(rows: &[KeyRow]) -> Vec<ArrayRef> {
        vec![
            Arc::new(Int64Array::from_iter(rows.iter().map(|r| r.0))),
            Arc::new(arrow::array::StringArray::from_iter(
                rows.iter().map(|r| r.1.clone()),
            )),
            Arc::new(arrow::array::Int16Array::from_iter_values(
                rows.iter().map(|r| r.2),
            )),
        ]
    }

    fn key_row() -> impl Strategy<Value = KeyRow> {
        (
            proptest::option::weighted(0.98, -3i64..3),
            // Mostly strings that fit (up to 5 bytes here), some that do not, a few NULLs.
            proptest::option::weighted(0.98, "[ab]{0,3}|[ab]{4,6}|é"),
            -2i16..2,
        )
    }

    proptest! {
        /// The packed path numbers groups as the rows path does, keeps the same key bytes,
        /// and answers lookups alike, before and after a key that does not fit moves it to
        /// the rows path.
        #[test]
        fn packed_and_rows_paths_agree(
            batches in proptest::collection::vec(proptest::collection::vec(key_row(), 0..60), 1..5),
            probe in proptest::collection::vec(key_row(), 0..60),
            fits_first in any::<bool>(),
        ) {
            let types = [DataType::Int64, DataType::Utf8, DataType::Int16];
            let type_refs: Vec<&DataType> = types.iter().collect();
            let converter = RowConverter::new(
                types.iter().map(|t| SortField::new(t.clone())).collect(),
            ).unwrap();
            let mut packed = GroupTable::for_key_types(&type_refs);
            prop_assert!(packed.packed.is_some());
            let mut rows = GroupTable::default();
            let probe = key_columns(&probe);
            for (n, batch) in batches.iter().enumerate() {
                // Optionally one batch that fits all through first, to exercise the move of
                // groups already made.
                let batch: Vec<KeyRow> = if fits_first && n == 0 {
                    batch.iter().map(|(a, s, c)| (a.or(Some(0)), Some(s.clone().unwrap_or_default().chars().take(3).collect()), *c)).filter(|r| r.1.as_ref().is_some_and(|s: &String| s.len() <= 3)).collect()
                } else {
                    batch.clone()
                };
                let columns = key_columns(&batch);
                let (mut a, mut b) = (Vec::new(), Vec::new());
                packed.intern_columns(&converter, &columns, &mut a).unwrap();
                rows.intern_columns(&converter, &columns, &mut b).unwrap();
                prop_assert_eq!(a, b);
                let (mut a, mut b) = (Vec::new(), Vec::new());
                packed.lookup_columns(&converter, &probe, &mut a).unwrap();
                rows.lookup_columns(&converter, &probe, &mut b).unwrap();
                prop_assert_eq!(a, b);
            }
            prop_assert_eq!(packed.len(), rows.len());
            for g in 0..packed.len() as u32 {
                prop_assert_eq!(packed.key(g), rows.key(g));
            }
        }
    }

    proptest! {
        #[test]
        fn both_paths_number_groups_alike(
            batches in proptest::collection::vec(
                proptest::collection::vec(proptest::option::weighted(0.9, -50i64..50), 0..200),
                1..5,
            )
        ) {
            let converter = RowConverter::new(vec![SortField::new(DataType::Int64)]).unwrap();
            let mut words = GroupTable::for_key_types(&[&DataType::Int64]);
            let mut rows = GroupTable::default();
            for batch in batches {
                let column: ArrayRef = Arc::new(Int64Array::from(batch));
                let (mut a, mut b) = (Vec::new(), Vec::new());
                words.intern_columns(&converter, std::slice::from_ref(&column), &mut a).unwrap();
                rows.intern_columns(&converter, std::slice::from_ref(&column), &mut b).unwrap();
                prop_assert_eq!(a, b);
            }
            for g in 0..words.len() as u32 {
                prop_assert_eq!(words.key(g), rows.key(g));
            }
        }
    }
}
