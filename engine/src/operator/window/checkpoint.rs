//! Snapshots of the window operators, as columnar tables.
//!
//! Each operator writes one keyed table of its window contents, one row per (key, slice) or
//! per session: `key_group: UInt32`, `key: Binary` (the row-encoded grouping key, empty for a
//! global window), the operator's own columns (slice end; session start, end and fired flag)
//! and the accumulators' state columns. A restore keeps the rows of the key groups its subtask
//! owns, so it works at another parallelism.
//!
//! A second table, `progress`, holds how far windows have fired (the watermark, or the clock
//! for processing time) per range of key groups, and the late records dropped. A restore that
//! gathers old subtasks with different progress resumes from the smallest and remembers the
//! key groups that were further ([`Ahead`]), so no window fires twice and no row is taken that
//! its old subtask had dropped as late: the restore is exact at any parallelism.
//!
//! The snapshot runs on the slot thread between the barrier and its forwarding, so it only
//! builds arrays from the state vectors (key groups are computed once per key id and cached);
//! the checkpoint thread writes them.

use std::collections::HashMap;
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
        self.update(keys, own)?;
        Ok(ids
            .iter()
            .map(|&k| self.groups[k as usize])
            .collect::<Vec<_>>()
            .into())
    }

    /// Computes the key groups of the key ids handed out since the last call.
    pub fn update(&mut self, keys: &WindowKeys, own: KeyGroupOwnership) -> Result<()> {
        if keys.converter.is_none() {
            return Ok(());
        }
        let total = keys.table.len() as u32;
        let mut hashes = Vec::new();
        while (self.groups.len() as u32) < total {
            let from = self.groups.len() as u32;
            let new: Vec<u32> = (from..total.min(from + Self::CHUNK)).collect();
            hash_columns(&keys.decode(&new)?, &mut hashes)?;
            self.groups.extend(own.key_groups(&hashes).values().iter());
        }
        Ok(())
    }

    /// The key group of key id `key` (after [`KeyGroupCache::update`]; a global window's key
    /// is in the first owned key group).
    pub fn get(&self, key: u32, own: KeyGroupOwnership) -> u32 {
        self.groups
            .get(key as usize)
            .copied()
            .unwrap_or(own.range.start)
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

/// Key groups whose windows had fired further than the operator's progress when they were
/// restored: after a restore at another parallelism that gathered old subtasks with different
/// watermarks, the operator resumes from the smallest, and each key group of a faster old
/// subtask keeps that subtask's progress here, so its windows neither fire twice nor take rows
/// its old subtask dropped as late. Empty in every other case, and emptied as the progress
/// catches up (usually with the first watermarks after the restore).
#[derive(Debug, Default)]
pub(super) struct Ahead {
    /// Key group → the progress its windows have fired up to (above the operator's).
    fired: HashMap<u32, i64>,
}

impl Ahead {
    pub fn is_empty(&self) -> bool {
        self.fired.is_empty()
    }

    /// How far the windows of `key_group` have fired, given the operator's `progress`.
    pub fn progress_of(&self, key_group: u32, progress: i64) -> i64 {
        self.fired
            .get(&key_group)
            .map_or(progress, |&fired| fired.max(progress))
    }

    /// How far the windows of `key_group` had fired, when that is above the operator's
    /// progress at the restore.
    pub fn fired(&self, key_group: u32) -> Option<i64> {
        self.fired.get(&key_group).copied()
    }

    /// Forgets the key groups the operator's `progress` has caught up with.
    pub fn catch_up(&mut self, progress: i64) {
        if !self.fired.is_empty() {
            self.fired.retain(|_, fired| *fired > progress);
        }
    }
}

/// The `progress` table of one subtask: a row for its key groups with its progress and late
/// records, and a row per key group still [`Ahead`] of it.
/// How far the windows of `key` have fired: `progress`, unless the key's key group was
/// further along before a restore. `cache` must know `key` when `ahead` is not empty.
pub(super) fn key_progress(
    ahead: &Ahead,
    ownership: Option<KeyGroupOwnership>,
    cache: &KeyGroupCache,
    key: u32,
    progress: i64,
) -> i64 {
    match ownership.filter(|_| !ahead.is_empty()) {
        Some(own) => ahead.progress_of(cache.get(key, own), progress),
        None => progress,
    }
}

pub(super) fn progress_table(
    own: KeyGroupOwnership,
    progress: i64,
    late_records_dropped: u64,
    ahead: &Ahead,
) -> Result<SnapshotTable> {
    let mut ranges = vec![(
        own.range.start,
        own.range.end,
        progress,
        late_records_dropped,
    )];
    let mut ahead: Vec<(u32, i64)> = ahead.fired.iter().map(|(&g, &p)| (g, p)).collect();
    ahead.sort_unstable();
    ranges.extend(ahead.into_iter().map(|(g, p)| (g, g + 1, p, 0)));
    let schema = Schema::new(vec![
        Field::new("key_group_start", DataType::UInt32, false),
        Field::new("key_group_end", DataType::UInt32, false),
        Field::new("progress", DataType::Int64, false),
        Field::new("late_records_dropped", DataType::UInt64, false),
    ]);
    let batch = RecordBatch::try_new(
        Arc::new(schema),
        vec![
            Arc::new(UInt32Array::from_iter_values(ranges.iter().map(|r| r.0))),
            Arc::new(UInt32Array::from_iter_values(ranges.iter().map(|r| r.1))),
            Arc::new(Int64Array::from_iter_values(ranges.iter().map(|r| r.2))),
            Arc::new(UInt64Array::from_iter_values(ranges.iter().map(|r| r.3))),
        ],
    )
    .map_err(|e| Error::arrow("window aggregate snapshot", e))?;
    Ok(SnapshotTable {
        slices: None,
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

/// Where a restored operator resumes.
#[derive(Debug)]
pub(super) struct RestoredProgress {
    /// The smallest progress of the owned key groups.
    pub progress: i64,
    pub late_records_dropped: u64,
    /// The owned key groups that had fired further.
    pub ahead: Ahead,
}

/// The progress of the `owned` key groups in `snapshot` (each key group's is the largest of the
/// rows covering it, all written by the one old subtask that owned it); `None` when the
/// snapshot holds no progress (a fresh start).
pub(super) fn restored_progress(
    snapshot: &StateSnapshot,
    owned: KeyGroupRange,
) -> Result<Option<RestoredProgress>> {
    let expected = "key_group_start: UInt32, key_group_end: UInt32, progress: Int64, \
                    late_records_dropped: UInt64, without NULLs";
    let mut rows: Vec<(u32, u32, i64)> = Vec::new();
    let mut late_records_dropped = 0u64;
    for table in snapshot.tables.iter().filter(|t| t.name == PROGRESS_TABLE) {
        for batch in &table.batches {
            let column = |name: &str| {
                batch
                    .column_by_name(name)
                    .filter(|c| c.null_count() == 0)
                    .ok_or_else(|| bad(PROGRESS_TABLE, expected))
            };
            let starts = column("key_group_start")?
                .as_primitive_opt::<UInt32Type>()
                .ok_or_else(|| bad(PROGRESS_TABLE, expected))?;
            let ends = column("key_group_end")?
                .as_primitive_opt::<UInt32Type>()
                .ok_or_else(|| bad(PROGRESS_TABLE, expected))?;
            let progress = column("progress")?
                .as_primitive_opt::<Int64Type>()
                .ok_or_else(|| bad(PROGRESS_TABLE, expected))?;
            let late = column("late_records_dropped")?
                .as_primitive_opt::<UInt64Type>()
                .ok_or_else(|| bad(PROGRESS_TABLE, expected))?;
            for i in 0..batch.num_rows() {
                let (start, end) = (starts.value(i), ends.value(i));
                if start < owned.end && end > owned.start {
                    rows.push((start, end, progress.value(i)));
                    late_records_dropped = late_records_dropped.saturating_add(late.value(i));
                }
            }
        }
    }
    if rows.is_empty() {
        return Ok(None);
    }
    let fired: Vec<(u32, i64)> = (owned.start..owned.end)
        .filter_map(|g| {
            rows.iter()
                .filter(|&&(start, end, _)| start <= g && g < end)
                .map(|&(_, _, p)| p)
                .max()
                .map(|p| (g, p))
        })
        .collect();
    let progress = fired.iter().map(|&(_, p)| p).min().unwrap_or(i64::MIN);
    let ahead = Ahead {
        fired: fired.into_iter().filter(|&(_, p)| p > progress).collect(),
    };
    Ok(Some(RestoredProgress {
        progress,
        late_records_dropped,
        ahead,
    }))
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
