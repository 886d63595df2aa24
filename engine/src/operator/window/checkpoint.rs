//! Snapshots of the window operators, as columnar tables.
//!
//! Each operator writes one keyed table of its window contents, one row per (key, slice) or
//! per session: `key_group: UInt32`, `key: Binary` (the row-encoded grouping key, empty for a
//! global window), the operator's own columns (slice end; session start, end and fired flag)
//! and the accumulators' state columns. A restore keeps the rows of the key groups its subtask
//! owns, so it works at another parallelism.
//!
//! A second table, `progress`, holds one row per snapshotting subtask: how far windows have
//! fired (the watermark, or the clock for processing time) and the late records dropped. A
//! restore that gathers several old subtasks takes the smallest progress: no window that one
//! of them had not fired yet is taken as fired. (A window that a faster old subtask had fired
//! and still keeps for its allowed lateness or for a later overlapping window may then fire
//! once more after a restore at another parallelism; at the same parallelism the restore is
//! exact.)
//!
//! The snapshot runs on the slot thread between the barrier and its forwarding, so it only
//! builds arrays from the state vectors (key groups are computed once per key id and cached);
//! the checkpoint thread writes them.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, BooleanArray, Int64Array, UInt32Array, UInt64Array,
};
use arrow::compute::filter_record_batch;
use arrow::datatypes::{DataType, Field, Int64Type, Schema, UInt32Type, UInt64Type};
use arrow::record_batch::RecordBatch;

use super::{GroupSlots, WindowKeys};
use crate::operator::OperatorContext;
use crate::state::{KeyGroupOwnership, KeyGroupRange, SnapshotTable, StateSnapshot, hash_columns};
use crate::{Error, Result};

/// Name of the table with the operators' progress.
pub(super) const PROGRESS_TABLE: &str = "progress";

/// Columns before the operator's own ones: `key_group`, `key`.
pub(super) const KEY_COLUMNS: usize = 2;

/// The key groups of an operator opened with `ctx`.
pub(super) fn ownership(ctx: &OperatorContext) -> KeyGroupOwnership {
    KeyGroupOwnership {
        range: ctx.key_groups,
        max_parallelism: ctx.max_parallelism,
    }
}

/// The ownership of an operator asked to snapshot or restore before `open`: a bug.
pub(super) fn required(
    ownership: Option<KeyGroupOwnership>,
    what: &str,
) -> Result<KeyGroupOwnership> {
    ownership.ok_or_else(|| Error::Internal(format!("window aggregate {what} before open")))
}

/// The key group of every key id of a [`WindowKeys`], computed by the snapshots and cached:
/// key ids are never reused, so each key is decoded and hashed once.
#[derive(Debug, Default)]
pub(super) struct KeyGroupCache {
    groups: Vec<u32>,
}

impl KeyGroupCache {
    /// Keys decoded and hashed per step.
    const CHUNK: u32 = 1 << 16;

    /// The key group of each of `ids` (a global window puts every key in the first owned key
    /// group).
    pub fn key_groups(
        &mut self,
        keys: &WindowKeys,
        ids: &[u32],
        own: KeyGroupOwnership,
    ) -> Result<UInt32Array> {
        if keys.converter.is_none() {
            return Ok(UInt32Array::from_value(own.range.start, ids.len()));
        }
        let total = keys.table.len() as u32;
        let mut hashes = Vec::new();
        while (self.groups.len() as u32) < total {
            let from = self.groups.len() as u32;
            let new: Vec<u32> = (from..total.min(from + Self::CHUNK)).collect();
            hash_columns(&keys.decode(&new)?, &mut hashes)?;
            self.groups.extend(own.key_groups(&hashes).values().iter());
        }
        Ok(ids
            .iter()
            .map(|&k| self.groups[k as usize])
            .collect::<Vec<_>>()
            .into())
    }

    pub fn allocated_bytes(&self) -> usize {
        self.groups.capacity() * std::mem::size_of::<u32>()
    }
}

impl WindowKeys {
    /// The row-encoded bytes of `keys` (empty for a global window).
    pub(super) fn key_bytes(&self, keys: &[u32]) -> ArrayRef {
        if self.converter.is_none() {
            return Arc::new(BinaryArray::from_iter_values(keys.iter().map(|_| b"")));
        }
        Arc::new(BinaryArray::from_iter_values(
            keys.iter().map(|&k| self.table.key(k)),
        ))
    }

    /// The key id of row-encoded `bytes`, added if new.
    pub(super) fn intern_bytes(&mut self, bytes: &[u8]) -> u32 {
        if self.converter.is_none() {
            0
        } else {
            self.table.intern_one(bytes)
        }
    }
}

impl GroupSlots {
    /// Number of state columns all accumulators write together.
    pub(super) fn state_width(&self) -> Result<usize> {
        self.accumulators
            .iter()
            .map(|acc| acc.state(&[]).map(|columns| columns.len()))
            .sum()
    }

    /// The accumulators' state of `slots`, their columns one after the other.
    pub(super) fn state(&mut self, slots: &[u32]) -> Result<Vec<ArrayRef>> {
        self.ensure_sized();
        let mut columns = Vec::new();
        for acc in &self.accumulators {
            columns.extend(acc.state(slots)?);
        }
        Ok(columns)
    }

    /// Sets the state of `slots` from `columns` (as [`GroupSlots::state`] wrote them).
    pub(super) fn restore_state(&mut self, slots: &[u32], columns: &[ArrayRef]) -> Result<()> {
        self.ensure_sized();
        let mut next = 0;
        for acc in &mut self.accumulators {
            let width = acc.state(&[])?.len();
            let Some(state) = columns.get(next..next + width) else {
                return Err(Error::data(
                    "window aggregate snapshot",
                    format!(
                        "{} state columns, too few for the aggregates",
                        columns.len()
                    ),
                ));
            };
            acc.restore_state(slots, state)?;
            next += width;
        }
        Ok(())
    }
}

/// A keyed state batch: `key_group`, `key`, then `own` columns, then the accumulators' state
/// columns (`acc<i>`).
pub(super) fn state_batch(
    key_groups: UInt32Array,
    keys: ArrayRef,
    own: Vec<(&str, ArrayRef)>,
    accumulators: Vec<ArrayRef>,
) -> Result<RecordBatch> {
    let mut fields = vec![
        Field::new("key_group", DataType::UInt32, false),
        Field::new("key", DataType::Binary, false),
    ];
    let mut columns: Vec<ArrayRef> = vec![Arc::new(key_groups), keys];
    for (name, column) in own {
        fields.push(Field::new(name, column.data_type().clone(), false));
        columns.push(column);
    }
    for (i, column) in accumulators.into_iter().enumerate() {
        fields.push(Field::new(
            format!("acc{i}"),
            column.data_type().clone(),
            true,
        ));
        columns.push(column);
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
        .map_err(|e| Error::arrow("window aggregate snapshot", e))
}

/// The `progress` table of one subtask.
pub(super) fn progress_table(progress: i64, late_records_dropped: u64) -> Result<SnapshotTable> {
    let schema = Schema::new(vec![
        Field::new("progress", DataType::Int64, false),
        Field::new("late_records_dropped", DataType::UInt64, false),
    ]);
    let batch = RecordBatch::try_new(
        Arc::new(schema),
        vec![
            Arc::new(Int64Array::from(vec![progress])),
            Arc::new(UInt64Array::from(vec![late_records_dropped])),
        ],
    )
    .map_err(|e| Error::arrow("window aggregate snapshot", e))?;
    Ok(SnapshotTable {
        name: PROGRESS_TABLE.into(),
        batches: vec![batch],
    })
}

fn bad(table: &str, expected: &str) -> Error {
    Error::data(
        format!("window aggregate snapshot table '{table}'"),
        format!("expected columns {expected}"),
    )
}

/// The progress to resume from (the smallest of the gathered subtasks') and the late records
/// they dropped; `None` when the snapshot holds no progress (a fresh start).
pub(super) fn restored_progress(snapshot: &StateSnapshot) -> Result<Option<(i64, u64)>> {
    let mut restored: Option<(i64, u64)> = None;
    for table in snapshot.tables.iter().filter(|t| t.name == PROGRESS_TABLE) {
        for batch in &table.batches {
            let expected = "progress: Int64, late_records_dropped: UInt64";
            let (Some(progress), Some(late)) = (
                batch.column_by_name("progress"),
                batch.column_by_name("late_records_dropped"),
            ) else {
                return Err(bad(PROGRESS_TABLE, expected));
            };
            let progress = progress
                .as_primitive_opt::<Int64Type>()
                .ok_or_else(|| bad(PROGRESS_TABLE, expected))?;
            let late = late
                .as_primitive_opt::<UInt64Type>()
                .ok_or_else(|| bad(PROGRESS_TABLE, expected))?;
            for (&p, &l) in progress.values().iter().zip(late.values().iter()) {
                restored = Some(match restored {
                    None => (p, l),
                    Some((q, m)) => (q.min(p), m.saturating_add(l)),
                });
            }
        }
    }
    Ok(restored)
}

/// The batches of keyed table `name` cut down to the rows of the `owned` key groups; each has
/// at least `KEY_COLUMNS + own_columns + state_width` columns, the first two typed as written.
pub(super) fn owned_rows(
    snapshot: &StateSnapshot,
    name: &str,
    owned: KeyGroupRange,
    columns: usize,
) -> Result<Vec<RecordBatch>> {
    let expected = format!("key_group: UInt32, key: Binary and {columns} more");
    let mut kept = Vec::new();
    for table in snapshot.tables.iter().filter(|t| t.name == name) {
        for batch in &table.batches {
            if batch.num_columns() != KEY_COLUMNS + columns
                || batch.column(1).as_binary_opt::<i32>().is_none()
            {
                return Err(bad(name, &expected));
            }
            let key_groups = batch
                .column(0)
                .as_primitive_opt::<UInt32Type>()
                .ok_or_else(|| bad(name, &expected))?;
            let mask: BooleanArray = key_groups
                .values()
                .iter()
                .map(|&kg| Some(owned.contains(kg)))
                .collect();
            let batch = filter_record_batch(batch, &mask)
                .map_err(|e| Error::arrow("window aggregate restore", e))?;
            if batch.num_rows() > 0 {
                kept.push(batch);
            }
        }
    }
    Ok(kept)
}

/// Column `index` of a restored batch as `T`, or a data error naming `table` and `column`.
pub(super) fn typed_column<'a, T: arrow::datatypes::ArrowPrimitiveType>(
    batch: &'a RecordBatch,
    index: usize,
    table: &str,
    column: &str,
) -> Result<&'a arrow::array::PrimitiveArray<T>> {
    batch
        .column(index)
        .as_primitive_opt::<T>()
        .filter(|c| c.null_count() == 0)
        .ok_or_else(|| {
            bad(
                table,
                &format!("{column} of type {} without NULLs", T::DATA_TYPE),
            )
        })
}
