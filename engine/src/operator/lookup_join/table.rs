//! The lookup table's index: key → the table rows with that key.
//!
//! Built once from the key columns of the whole table (already cast to the join's key types),
//! then only read. Keys get dense group numbers; the table rows of group `g` are
//! `rows[starts[g]..starts[g + 1]]`, in table order, so duplicate keys yield their rows in the
//! order the table has them. Two key paths, as the aggregation's group table has:
//! - **words**: one integer-like key column, read as `i64` values and hashed with a 64-bit mix;
//!   nothing is encoded per row;
//! - **rows**: any other keys, row-encoded with `arrow-row` once per batch and hashed with xxh3.
//!
//! A key with a NULL in any of its columns is not indexed and finds nothing (SQL equality).

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::buffer::NullBuffer;
use arrow::compute::cast;
use arrow::datatypes::{DataType, Int64Type};
use arrow::row::{RowConverter, SortField};
use hashbrown::HashTable;
use xxhash_rust::xxh3::xxh3_64;

use crate::{Error, Result};

/// The group of a probe row without a match.
pub(crate) const NO_MATCH: u32 = u32::MAX;

/// A 64-bit finalizer (murmur3's): spreads every input bit over the hash, whose high bits
/// hashbrown uses as tags and low bits as bucket index.
#[inline]
fn mix(word: u64) -> u64 {
    let mut h = word ^ (word >> 33);
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// Whether one key column of this type takes the words path (its values fit an `i64`).
fn is_word_type(data_type: &DataType) -> bool {
    use DataType::*;
    matches!(
        data_type,
        Int8 | Int16
            | Int32
            | Int64
            | UInt8
            | UInt16
            | UInt32
            | Date32
            | Date64
            | Time32(_)
            | Time64(_)
            | Timestamp(_, _)
            | Duration(_)
    )
}

enum KeyIndex {
    Words(HashTable<(i64, u32)>),
    Rows {
        converter: RowConverter,
        /// (hash, group).
        table: HashTable<(u64, u32)>,
        /// The key bytes of group `g`: `bytes[offsets[g]..offsets[g + 1]]`.
        bytes: Vec<u8>,
        offsets: Vec<usize>,
    },
}

pub(crate) struct LookupIndex {
    keys: KeyIndex,
    starts: Vec<u32>,
    rows: Vec<u32>,
}

/// Rows whose key has no NULL in any column.
fn valid_keys(columns: &[ArrayRef]) -> Option<NullBuffer> {
    columns
        .iter()
        .fold(None, |acc, c| {
            NullBuffer::union(acc.as_ref(), c.logical_nulls().as_ref())
        })
        .filter(|n| n.null_count() > 0)
}

fn words(column: &ArrayRef) -> Result<ArrayRef> {
    cast(column, &DataType::Int64).map_err(|e| Error::arrow("lookup join key", e))
}

impl LookupIndex {
    /// Indexes the table rows by the key `columns` (one array per key, all of the table's
    /// length).
    pub(crate) fn build(columns: &[ArrayRef]) -> Result<Self> {
        let len = columns.first().map_or(0, |c| c.len());
        let valid = valid_keys(columns);
        let is_valid = |i: usize| valid.as_ref().is_none_or(|n| n.is_valid(i));
        let mut group_of = Vec::with_capacity(len);
        let keys = match columns {
            [only] if is_word_type(only.data_type()) => {
                let values = words(only)?;
                let values = values.as_primitive::<Int64Type>().values();
                let mut table: HashTable<(i64, u32)> = HashTable::with_capacity(len);
                for (i, &v) in values.iter().enumerate() {
                    if !is_valid(i) {
                        group_of.push(NO_MATCH);
                        continue;
                    }
                    let hash = mix(v as u64);
                    let next = table.len() as u32;
                    let entry = table
                        .entry(hash, |e| e.0 == v, |e| mix(e.0 as u64))
                        .or_insert((v, next));
                    group_of.push(entry.get().1);
                }
                KeyIndex::Words(table)
            }
            _ => {
                let converter = RowConverter::new(
                    columns
                        .iter()
                        .map(|c| SortField::new(c.data_type().clone()))
                        .collect(),
                )
                .map_err(|e| Error::arrow("lookup join key", e))?;
                let encoded = converter
                    .convert_columns(columns)
                    .map_err(|e| Error::arrow("lookup join key", e))?;
                let mut table: HashTable<(u64, u32)> = HashTable::with_capacity(len);
                let (mut bytes, mut offsets) = (Vec::new(), vec![0usize]);
                for (i, row) in encoded.iter().enumerate() {
                    if !is_valid(i) {
                        group_of.push(NO_MATCH);
                        continue;
                    }
                    let key = row.as_ref();
                    let hash = xxh3_64(key);
                    let found = table
                        .find(hash, |&(h, g)| {
                            h == hash && &bytes[offsets[g as usize]..offsets[g as usize + 1]] == key
                        })
                        .map(|&(_, g)| g);
                    let group = match found {
                        Some(g) => g,
                        None => {
                            let g = table.len() as u32;
                            bytes.extend_from_slice(key);
                            offsets.push(bytes.len());
                            table.insert_unique(hash, (hash, g), |e| e.0);
                            g
                        }
                    };
                    group_of.push(group);
                }
                KeyIndex::Rows {
                    converter,
                    table,
                    bytes,
                    offsets,
                }
            }
        };
        let groups = match &keys {
            KeyIndex::Words(t) => t.len(),
            KeyIndex::Rows { table, .. } => table.len(),
        };
        // Counting sort of the rows by group, stable: each group's rows in table order.
        let mut starts = vec![0u32; groups + 1];
        for &g in &group_of {
            if g != NO_MATCH {
                starts[g as usize + 1] += 1;
            }
        }
        for g in 0..groups {
            starts[g + 1] += starts[g];
        }
        let mut next = starts.clone();
        let mut rows = vec![0u32; starts[groups] as usize];
        for (row, &g) in group_of.iter().enumerate() {
            if g != NO_MATCH {
                rows[next[g as usize] as usize] = row as u32;
                next[g as usize] += 1;
            }
        }
        Ok(LookupIndex { keys, starts, rows })
    }

    /// The table rows of `group`.
    #[inline]
    pub(crate) fn rows_of(&self, group: u32) -> &[u32] {
        let g = group as usize;
        &self.rows[self.starts[g] as usize..self.starts[g + 1] as usize]
    }

    /// Number of distinct keys.
    pub(crate) fn groups(&self) -> usize {
        self.starts.len() - 1
    }

    /// Bytes held by the index (not the table's columns).
    pub(crate) fn allocated_bytes(&self) -> usize {
        let keys = match &self.keys {
            KeyIndex::Words(t) => t.capacity() * std::mem::size_of::<(i64, u32)>(),
            KeyIndex::Rows {
                table,
                bytes,
                offsets,
                ..
            } => {
                table.capacity() * std::mem::size_of::<(u64, u32)>()
                    + bytes.capacity()
                    + offsets.capacity() * std::mem::size_of::<usize>()
            }
        };
        keys + (self.starts.capacity() + self.rows.capacity()) * 4
    }

    /// Fills `out` with the group of every probe row ([`NO_MATCH`] for none), for key
    /// `columns` of the same types as the table's.
    pub(crate) fn probe(&self, columns: &[ArrayRef], out: &mut Vec<u32>) -> Result<()> {
        out.clear();
        let len = columns.first().map_or(0, |c| c.len());
        out.reserve(len);
        let valid = valid_keys(columns);
        match (&self.keys, columns) {
            (KeyIndex::Words(table), [only]) => {
                let values = words(only)?;
                let values = values.as_primitive::<Int64Type>().values();
                let find = |v: i64| {
                    table
                        .find(mix(v as u64), |e| e.0 == v)
                        .map_or(NO_MATCH, |e| e.1)
                };
                match valid {
                    None => out.extend(values.iter().map(|&v| find(v))),
                    Some(valid) => out.extend(
                        values
                            .iter()
                            .enumerate()
                            .map(|(i, &v)| if valid.is_valid(i) { find(v) } else { NO_MATCH }),
                    ),
                }
            }
            (
                KeyIndex::Rows {
                    converter,
                    table,
                    bytes,
                    offsets,
                },
                _,
            ) => {
                let encoded = converter
                    .convert_columns(columns)
                    .map_err(|e| Error::arrow("lookup join key", e))?;
                for (i, row) in encoded.iter().enumerate() {
                    if valid.as_ref().is_some_and(|n| n.is_null(i)) {
                        out.push(NO_MATCH);
                        continue;
                    }
                    let key = row.as_ref();
                    let hash = xxh3_64(key);
                    let group = table
                        .find(hash, |&(h, g)| {
                            h == hash && &bytes[offsets[g as usize]..offsets[g as usize + 1]] == key
                        })
                        .map_or(NO_MATCH, |&(_, g)| g);
                    out.push(group);
                }
            }
            (KeyIndex::Words(_), _) => {
                return Err(Error::Internal(format!(
                    "lookup join probed a one-column key index with {} key columns (a bug)",
                    columns.len()
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{
        Date32Array, Int32Array, Int64Array, StringArray, TimestampMillisecondArray,
    };

    use super::*;

    fn matches(index: &LookupIndex, probe: &[ArrayRef]) -> Vec<Vec<u32>> {
        let mut groups = Vec::new();
        index.probe(probe, &mut groups).unwrap();
        groups
            .iter()
            .map(|&g| {
                if g == NO_MATCH {
                    Vec::new()
                } else {
                    index.rows_of(g).to_vec()
                }
            })
            .collect()
    }

    #[test]
    fn one_integer_key_finds_every_row_with_it() {
        let table: ArrayRef = Arc::new(Int64Array::from(vec![
            Some(1),
            Some(2),
            None,
            Some(1),
            Some(-7),
        ]));
        let index = LookupIndex::build(&[table]).unwrap();
        assert_eq!(index.groups(), 3);
        let probe: ArrayRef = Arc::new(Int64Array::from(vec![Some(1), None, Some(3), Some(-7)]));
        assert_eq!(
            matches(&index, &[probe]),
            vec![vec![0, 3], vec![], vec![], vec![4]]
        );
    }

    #[test]
    fn dates_and_timestamps_take_the_words_path() {
        let dates: ArrayRef = Arc::new(Date32Array::from(vec![19_000, 19_001, 19_000]));
        let index = LookupIndex::build(&[dates]).unwrap();
        assert!(matches!(index.keys, KeyIndex::Words(_)));
        let probe: ArrayRef = Arc::new(Date32Array::from(vec![19_000, 5]));
        assert_eq!(matches(&index, &[probe]), vec![vec![0, 2], vec![]]);
        let times: ArrayRef =
            Arc::new(TimestampMillisecondArray::from(vec![-1, 1_700_000_000_000]));
        let index = LookupIndex::build(&[times]).unwrap();
        let probe: ArrayRef =
            Arc::new(TimestampMillisecondArray::from(vec![1_700_000_000_000, -1]));
        assert_eq!(matches(&index, &[probe]), vec![vec![1], vec![0]]);
    }

    #[test]
    fn composite_and_string_keys_take_the_rows_path() {
        let a: ArrayRef = Arc::new(StringArray::from(vec![
            Some("x"),
            Some("y"),
            Some("x"),
            None,
        ]));
        let b: ArrayRef = Arc::new(Int32Array::from(vec![1, 1, 1, 1]));
        let index = LookupIndex::build(&[a, b]).unwrap();
        let pa: ArrayRef = Arc::new(StringArray::from(vec![Some("x"), None, Some("y")]));
        let pb: ArrayRef = Arc::new(Int32Array::from(vec![1, 1, 2]));
        assert_eq!(matches(&index, &[pa, pb]), vec![vec![0, 2], vec![], vec![]]);
    }
}
