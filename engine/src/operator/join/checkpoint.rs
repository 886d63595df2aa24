//! Snapshots of the join operators, as columnar tables.
//!
//! Each input side is one table (`left`, `right`) of the rows the join state still holds, in
//! arrival order: `key_group: UInt32`, for the preserved sides of an outer regular join
//! `matched: Boolean` (whether the row has found a partner), then the input's own columns.
//! The rows are cut from the stored batches with one `filter` per batch (a batch whose rows are
//! all held is passed on without a copy), so the snapshot on the slot thread costs a mask per
//! stored batch; key groups are hashed once per stored batch, by the first snapshot that holds
//! it. The checkpoint thread writes the tables.
//!
//! A restore keeps the rows of the key groups its subtask owns and stores them again without
//! probing (they have been joined before the checkpoint). A `progress` table holds the
//! watermark of the time-bounded joins and their late-row count; a restore that gathers
//! several old subtasks takes the smallest watermark, so no row is taken as expired or late
//! that one of them still kept.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Int64Array, UInt64Array};
use arrow::compute::filter_record_batch;
use arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef, UInt32Type, UInt64Type};
use arrow::record_batch::RecordBatch;

use super::{BatchStore, RowRef};
use crate::operator::OperatorContext;
use crate::state::{KeyGroupOwnership, SnapshotTable, StateSnapshot, hash_columns};
use crate::{Error, Result};

/// Table names of the two sides' rows.
pub(super) const SIDE_TABLES: [&str; 2] = ["left", "right"];

/// Name of the table with the watermark and late-row count.
const PROGRESS_TABLE: &str = "progress";

/// The key groups of a join opened with `ctx`.
pub(super) fn ownership(ctx: &OperatorContext) -> KeyGroupOwnership {
    KeyGroupOwnership {
        range: ctx.key_groups,
        max_parallelism: ctx.max_parallelism,
    }
}

/// The ownership of a join asked to snapshot or restore before `open`: a bug.
pub(super) fn required(
    ownership: Option<KeyGroupOwnership>,
    what: &str,
) -> Result<KeyGroupOwnership> {
    ownership.ok_or_else(|| Error::Internal(format!("join {what} before open")))
}

/// The snapshot table of one side: the rows of `store` that `held` refers to (each once), in
/// arrival order, with their key groups (hashed from `key_columns`) and, when `with_matched`,
/// their matched flags.
pub(super) fn side_table(
    side: usize,
    store: &mut BatchStore,
    held: impl Iterator<Item = RowRef>,
    key_columns: &[usize],
    with_matched: bool,
    own: KeyGroupOwnership,
) -> Result<SnapshotTable> {
    // One mask per stored batch, by deque position.
    let mut masks: Vec<Vec<bool>> = store
        .batches
        .iter()
        .map(|b| {
            b.as_ref()
                .map_or_else(Vec::new, |b| vec![false; b.batch.num_rows()])
        })
        .collect();
    for row in held {
        let position = row.batch.wrapping_sub(store.first) as usize;
        let flag = masks
            .get_mut(position)
            .and_then(|m| m.get_mut(row.row as usize))
            .ok_or_else(|| {
                Error::Internal(format!("join state refers to freed batch {}", row.batch))
            })?;
        *flag = true;
    }
    let mut batches = Vec::new();
    let mut hashes = Vec::new();
    for (stored, mask) in store.batches.iter_mut().zip(masks) {
        let Some(stored) = stored else { continue };
        if !mask.contains(&true) {
            continue;
        }
        let key_groups = match &stored.key_groups {
            Some(key_groups) => key_groups.clone(),
            None => {
                // Once per stored batch: later snapshots reuse it.
                let keys: Vec<ArrayRef> = key_columns
                    .iter()
                    .map(|&i| stored.batch.column(i).clone())
                    .collect();
                hash_columns(&keys, &mut hashes)?;
                let key_groups: ArrayRef = Arc::new(own.key_groups(&hashes));
                stored.key_groups = Some(key_groups.clone());
                key_groups
            }
        };
        let mask = BooleanArray::from(mask);
        let rows = filter_record_batch(&stored.batch, &mask)
            .map_err(|e| Error::arrow("join snapshot", e))?;
        let key_groups = arrow::compute::filter(key_groups.as_ref(), &mask)
            .map_err(|e| Error::arrow("join snapshot", e))?;
        let mut fields = vec![Field::new("key_group", DataType::UInt32, false)];
        let mut columns: Vec<ArrayRef> = vec![key_groups];
        if with_matched {
            let matched: BooleanArray = stored
                .matched
                .iter()
                .zip(mask.values().iter())
                .filter(|&(_, held)| held)
                .map(|(&flag, _)| Some(flag))
                .collect();
            if matched.len() != rows.num_rows() {
                return Err(Error::Internal(format!(
                    "join state keeps {} matched flags for {} rows",
                    stored.matched.len(),
                    stored.batch.num_rows()
                )));
            }
            fields.push(Field::new("matched", DataType::Boolean, false));
            columns.push(Arc::new(matched));
        }
        fields.extend(rows.schema().fields().iter().map(|f| f.as_ref().clone()));
        columns.extend(rows.columns().iter().cloned());
        batches.push(
            RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
                .map_err(|e| Error::arrow("join snapshot", e))?,
        );
    }
    Ok(SnapshotTable {
        slices: None,
        name: SIDE_TABLES[side].into(),
        batches,
    })
}

/// Rows of one side restored from a snapshot: the input's columns and, when the table has
/// them, the matched flags.
pub(super) struct RestoredRows {
    pub batch: RecordBatch,
    pub matched: Option<Vec<bool>>,
}

/// The restored rows of `side` in the owned key groups, as batches of the input's `schema`.
pub(super) fn restored_side(
    snapshot: &StateSnapshot,
    side: usize,
    schema: &SchemaRef,
    with_matched: bool,
    own: KeyGroupOwnership,
) -> Result<Vec<RestoredRows>> {
    let name = SIDE_TABLES[side];
    let prefix = 1 + usize::from(with_matched);
    let bad = |why: String| Error::data(format!("join snapshot table '{name}'"), why);
    let mut restored = Vec::new();
    for table in snapshot.tables.iter().filter(|t| t.name == name) {
        for batch in &table.batches {
            if batch.num_columns() != prefix + schema.fields().len() {
                return Err(bad(format!(
                    "{} columns, expected {} (key_group{}, then the input's {})",
                    batch.num_columns(),
                    prefix + schema.fields().len(),
                    if with_matched { ", matched" } else { "" },
                    schema.fields().len()
                )));
            }
            let key_groups = batch
                .column(0)
                .as_primitive_opt::<UInt32Type>()
                .ok_or_else(|| bad("column key_group is not UInt32".into()))?;
            let mask: BooleanArray = key_groups
                .values()
                .iter()
                .map(|&kg| Some(own.range.contains(kg)))
                .collect();
            let kept =
                filter_record_batch(batch, &mask).map_err(|e| Error::arrow("join restore", e))?;
            if kept.num_rows() == 0 {
                continue;
            }
            let matched = if with_matched {
                let flags = kept
                    .column(1)
                    .as_boolean_opt()
                    .ok_or_else(|| bad("column matched is not Boolean".into()))?;
                Some(flags.iter().map(|f| f.unwrap_or(false)).collect())
            } else {
                None
            };
            let batch = RecordBatch::try_new(schema.clone(), kept.columns()[prefix..].to_vec())
                .map_err(|e| bad(format!("the input's columns do not fit its schema: {e}")))?;
            restored.push(RestoredRows { batch, matched });
        }
    }
    Ok(restored)
}

/// The `progress` table of a time-bounded join.
pub(super) fn progress_table(watermark: i64, late: u64) -> Result<SnapshotTable> {
    let schema = Schema::new(vec![
        Field::new("watermark", DataType::Int64, false),
        Field::new("late_records_dropped", DataType::UInt64, false),
    ]);
    let batch = RecordBatch::try_new(
        Arc::new(schema),
        vec![
            Arc::new(Int64Array::from(vec![watermark])),
            Arc::new(UInt64Array::from(vec![late])),
        ],
    )
    .map_err(|e| Error::arrow("join snapshot", e))?;
    Ok(SnapshotTable {
        slices: None,
        name: PROGRESS_TABLE.into(),
        batches: vec![batch],
    })
}

/// The watermark to resume from (the smallest gathered) and the late rows dropped so far;
/// `None` when the snapshot has no progress.
pub(super) fn restored_progress(snapshot: &StateSnapshot) -> Result<Option<(i64, u64)>> {
    let bad = || {
        Error::data(
            "join snapshot table 'progress'",
            "expected columns watermark: Int64, late_records_dropped: UInt64",
        )
    };
    let mut restored: Option<(i64, u64)> = None;
    for table in snapshot.tables.iter().filter(|t| t.name == PROGRESS_TABLE) {
        for batch in &table.batches {
            let watermarks = batch
                .column_by_name("watermark")
                .and_then(|c| c.as_primitive_opt::<Int64Type>())
                .ok_or_else(bad)?;
            let late = batch
                .column_by_name("late_records_dropped")
                .and_then(|c| c.as_primitive_opt::<UInt64Type>())
                .ok_or_else(bad)?;
            if watermarks.null_count() > 0 || late.null_count() > 0 {
                return Err(bad());
            }
            for (&w, &l) in watermarks.values().iter().zip(late.values().iter()) {
                restored = Some(match restored {
                    None => (w, l),
                    Some((v, m)) => (v.min(w), m.saturating_add(l)),
                });
            }
        }
    }
    Ok(restored)
}
