//! Key groups: the unit in which keyed state is partitioned, owned and moved.
//!
//! `key group = hash(key) mod max_parallelism`; a subtask owns the contiguous range of key
//! groups given by Flink's formulas, so the same key always lands on the same subtask for a
//! given parallelism, and a restore at another parallelism only moves whole key groups.
//!
//! Hashes are computed column by column for a whole batch with typed loops, never with a
//! per-row dynamic call, and are stable across processes and platforms (no random seed): two
//! TaskManagers must agree on where a key lives.

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray};
use arrow::datatypes::*;
use arrow::row::{RowConverter, SortField};
use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_64;

use crate::{Error, Result};

/// A contiguous range of key groups, `start..end` (end exclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct KeyGroupRange {
    pub start: u32,
    pub end: u32,
}

impl KeyGroupRange {
    /// The key groups owned by `subtask` of `parallelism` (Flink's
    /// `computeKeyGroupRangeForOperatorIndex`).
    pub fn for_subtask(max_parallelism: u32, parallelism: u32, subtask: u32) -> Self {
        let (max, par, index) = (
            u64::from(max_parallelism),
            u64::from(parallelism),
            u64::from(subtask),
        );
        let start = (index * max).div_ceil(par);
        let end = ((index + 1) * max).div_ceil(par);
        KeyGroupRange {
            start: start as u32,
            end: end as u32,
        }
    }

    pub fn contains(&self, key_group: u32) -> bool {
        (self.start..self.end).contains(&key_group)
    }

    pub fn len(&self) -> u32 {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }
}

/// The key groups one subtask of a keyed operator owns, with the max parallelism its key
/// groups are computed with (both from the operator's context): what a snapshot tags its rows
/// with and what a restore filters them by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyGroupOwnership {
    pub range: KeyGroupRange,
    pub max_parallelism: u32,
}

impl KeyGroupOwnership {
    /// The key group of each row hash in `hashes`.
    pub fn key_groups(&self, hashes: &[u64]) -> arrow::array::UInt32Array {
        hashes
            .iter()
            .map(|&h| key_group_of_hash(h, self.max_parallelism))
            .collect::<Vec<_>>()
            .into()
    }
}

/// The subtask that owns `key_group` (Flink's `computeOperatorIndexForKeyGroup`).
#[inline]
pub fn subtask_for_key_group(key_group: u32, max_parallelism: u32, parallelism: u32) -> u32 {
    (u64::from(key_group) * u64::from(parallelism) / u64::from(max_parallelism)) as u32
}

/// The key group of a row hash.
#[inline]
pub fn key_group_of_hash(hash: u64, max_parallelism: u32) -> u32 {
    (hash % u64::from(max_parallelism)) as u32
}

const SEED: u64 = 0x9E37_79B9_7F4A_7C15;
const NULL_HASH: u64 = 0x5851_F42D_4C95_7F2D;

/// Murmur3's 64-bit finaliser: spreads every input bit over the low bits used by `mod`.
#[inline]
fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^= k >> 33;
    k
}

#[inline]
fn combine(acc: u64, value: u64) -> u64 {
    fmix64(acc.rotate_left(23) ^ value.wrapping_add(SEED))
}

/// Hashes the rows of `columns` (all of equal length) into `hashes`, which is cleared and
/// filled with one hash per row. NULL hashes to a constant, so NULL keys group together.
pub fn hash_columns(columns: &[ArrayRef], hashes: &mut Vec<u64>) -> Result<()> {
    let rows = columns.first().map_or(0, |c| c.len());
    hashes.clear();
    hashes.resize(rows, SEED);
    for column in columns {
        hash_column(column, hashes)?;
    }
    Ok(())
}

fn hash_primitive<T: ArrowPrimitiveType>(
    array: &dyn Array,
    hashes: &mut [u64],
    to_u64: impl Fn(T::Native) -> u64,
) {
    let array = array.as_primitive::<T>();
    let values = array.values();
    if array.null_count() == 0 {
        for (h, v) in hashes.iter_mut().zip(values.iter()) {
            *h = combine(*h, to_u64(*v));
        }
    } else {
        for (i, (h, v)) in hashes.iter_mut().zip(values.iter()).enumerate() {
            let value = if array.is_null(i) {
                NULL_HASH
            } else {
                to_u64(*v)
            };
            *h = combine(*h, value);
        }
    }
}

fn hash_bytes<'a>(values: impl Iterator<Item = Option<&'a [u8]>>, hashes: &mut [u64]) {
    for (h, v) in hashes.iter_mut().zip(values) {
        let value = match v {
            Some(bytes) => xxh3_64(bytes),
            None => NULL_HASH,
        };
        *h = combine(*h, value);
    }
}

fn hash_column(column: &ArrayRef, hashes: &mut [u64]) -> Result<()> {
    let array = column.as_ref();
    match array.data_type() {
        DataType::Int8 => hash_primitive::<Int8Type>(array, hashes, |v| v as i64 as u64),
        DataType::Int16 => hash_primitive::<Int16Type>(array, hashes, |v| v as i64 as u64),
        DataType::Int32 => hash_primitive::<Int32Type>(array, hashes, |v| v as i64 as u64),
        DataType::Int64 => hash_primitive::<Int64Type>(array, hashes, |v| v as u64),
        DataType::UInt8 => hash_primitive::<UInt8Type>(array, hashes, u64::from),
        DataType::UInt16 => hash_primitive::<UInt16Type>(array, hashes, u64::from),
        DataType::UInt32 => hash_primitive::<UInt32Type>(array, hashes, u64::from),
        DataType::UInt64 => hash_primitive::<UInt64Type>(array, hashes, |v| v),
        DataType::Float32 => {
            hash_primitive::<Float32Type>(array, hashes, |v| u64::from(v.to_bits()))
        }
        DataType::Float64 => hash_primitive::<Float64Type>(array, hashes, |v| v.to_bits()),
        DataType::Date32 => hash_primitive::<Date32Type>(array, hashes, |v| v as i64 as u64),
        DataType::Date64 => hash_primitive::<Date64Type>(array, hashes, |v| v as u64),
        DataType::Timestamp(TimeUnit::Second, _) => {
            hash_primitive::<TimestampSecondType>(array, hashes, |v| v as u64)
        }
        DataType::Timestamp(TimeUnit::Millisecond, _) => {
            hash_primitive::<TimestampMillisecondType>(array, hashes, |v| v as u64)
        }
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            hash_primitive::<TimestampMicrosecondType>(array, hashes, |v| v as u64)
        }
        DataType::Timestamp(TimeUnit::Nanosecond, _) => {
            hash_primitive::<TimestampNanosecondType>(array, hashes, |v| v as u64)
        }
        DataType::Decimal128(_, _) => hash_primitive::<Decimal128Type>(array, hashes, |v| {
            (v as u64) ^ ((v >> 64) as u64).rotate_left(32)
        }),
        DataType::Boolean => {
            let array: &BooleanArray = array.as_boolean();
            for (i, h) in hashes.iter_mut().enumerate() {
                let value = if array.is_null(i) {
                    NULL_HASH
                } else {
                    u64::from(array.value(i))
                };
                *h = combine(*h, value);
            }
        }
        DataType::Utf8 => hash_bytes(
            array
                .as_string::<i32>()
                .iter()
                .map(|v| v.map(str::as_bytes)),
            hashes,
        ),
        DataType::LargeUtf8 => hash_bytes(
            array
                .as_string::<i64>()
                .iter()
                .map(|v| v.map(str::as_bytes)),
            hashes,
        ),
        DataType::Utf8View => hash_bytes(
            array.as_string_view().iter().map(|v| v.map(str::as_bytes)),
            hashes,
        ),
        DataType::Binary => hash_bytes(array.as_binary::<i32>().iter(), hashes),
        DataType::LargeBinary => hash_bytes(array.as_binary::<i64>().iter(), hashes),
        other => {
            // Any other type: hash its row encoding, which is canonical for equal values.
            let converter = RowConverter::new(vec![SortField::new(other.clone())])
                .map_err(|e| Error::arrow("hash key column", e))?;
            let rows = converter
                .convert_columns(std::slice::from_ref(column))
                .map_err(|e| Error::arrow("hash key column", e))?;
            for (i, h) in hashes.iter_mut().enumerate() {
                let value = if column.is_null(i) {
                    NULL_HASH
                } else {
                    xxh3_64(rows.row(i).as_ref())
                };
                *h = combine(*h, value);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use std::sync::Arc;

    #[test]
    fn ranges_cover_all_key_groups_exactly_once() {
        for max in [1u32, 7, 128, 1000] {
            for par in 1..=max.min(9) {
                let mut next = 0;
                for subtask in 0..par {
                    let range = KeyGroupRange::for_subtask(max, par, subtask);
                    assert_eq!(range.start, next);
                    for kg in range.start..range.end {
                        assert_eq!(subtask_for_key_group(kg, max, par), subtask);
                    }
                    next = range.end;
                }
                assert_eq!(next, max);
            }
        }
    }

    #[test]
    fn equal_keys_hash_equal_and_nulls_group() {
        let ints: ArrayRef = Arc::new(Int64Array::from(vec![
            Some(1),
            Some(2),
            Some(1),
            None,
            None,
        ]));
        let strs: ArrayRef = Arc::new(StringArray::from(vec![
            Some("a"),
            Some("a"),
            Some("a"),
            None,
            None,
        ]));
        let mut hashes = Vec::new();
        hash_columns(&[ints, strs], &mut hashes).unwrap();
        assert_eq!(hashes[0], hashes[2]);
        assert_ne!(hashes[0], hashes[1]);
        assert_eq!(hashes[3], hashes[4]);
    }

    #[test]
    fn hashes_are_stable_across_runs() {
        // Pinned values: a change here moves keys between subtasks and breaks restores of
        // existing checkpoints, so it must be deliberate.
        let ints: ArrayRef = Arc::new(Int64Array::from(vec![42]));
        let mut hashes = Vec::new();
        hash_columns(&[ints], &mut hashes).unwrap();
        assert_eq!(hashes[0], combine(SEED, 42));
    }

    #[test]
    fn key_groups_spread_evenly() {
        let ints: ArrayRef = Arc::new(Int64Array::from_iter_values(0..128_000));
        let mut hashes = Vec::new();
        hash_columns(&[ints], &mut hashes).unwrap();
        let mut counts = [0u32; 128];
        for h in hashes {
            counts[key_group_of_hash(h, 128) as usize] += 1;
        }
        assert!(
            counts.iter().all(|&c| (800..1200).contains(&c)),
            "{counts:?}"
        );
    }
}
