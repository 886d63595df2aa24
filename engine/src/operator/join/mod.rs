//! Two-input join operators: regular (changelog, inner and outer), interval and tumbling
//! window joins on equal keys.
//!
//! Input 0 is the left side, input 1 the right; both arrive hash-partitioned on their keys, so
//! a subtask sees every row of the keys it owns. The three operators share the same state
//! layout, kept columnar:
//!
//! - [`JoinKeys`] row-encodes the key columns of a batch once (`arrow-row`) and maps each row
//!   to a dense key id in one [`GroupTable`] shared by both sides, so equal keys from the left
//!   and the right get the same id.
//! - [`BatchStore`] keeps the input batches of one side whole, in arrival order, each with
//!   its rows' event times and a count of rows still referenced. A row of state is a
//!   [`RowRef`] (batch id, row): no per-row allocation. A batch is freed once none of its rows
//!   is referenced.
//! - Results are gathered with `take` on the incoming batch and `interleave` over the stored
//!   batches of the other side, one kernel call per column per output chunk.
//!
//! - [`checkpoint`] snapshots the held rows of each side as columnar tables by key group.
//!
//! Rows with a NULL key never match (SQL semantics); an outer join still emits them padded
//! with NULLs. Rows with a NULL event time are dropped by the time-bounded joins.
//!
//! Called by the operator registry (`build`) for [`OperatorSpec::Join`](crate::graph::OperatorSpec).

mod checkpoint;
mod hash;
mod interval;
mod regular;
mod subquery;
mod window;

use std::collections::VecDeque;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Int8Array, UInt32Array, new_null_array};
use arrow::buffer::NullBuffer;
use arrow::compute::{interleave, take};
use arrow::datatypes::{
    DataType, Int64Type, SchemaRef, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType,
};
use arrow::record_batch::RecordBatch;
use arrow::row::{RowConverter, SortField};

use super::aggregate::GroupTable;
use super::{Operator, OperatorContext, Output};
use crate::element::{ROW_KIND_COLUMN, RowKind};
use crate::graph::{JoinKind, JoinSpec};
use crate::{Error, Result};

pub(crate) use hash::HashJoin;
pub(crate) use interval::IntervalJoin;
pub(crate) use regular::RegularJoin;
pub(crate) use subquery::SubqueryJoin;
pub(crate) use window::WindowJoin;

/// Rows per emitted batch: large enough to amortise per-batch costs downstream, small enough
/// to bound the memory of one `interleave`. Same as the aggregation's emit size.
const EMIT_BATCH_ROWS: usize = 8192;

/// Builds the join operator of `spec` for one subtask.
pub(crate) fn build(spec: &JoinSpec, ctx: &OperatorContext) -> Result<Box<dyn Operator>> {
    let [left, right] = ctx.input_schemas.as_slice() else {
        return Err(Error::plan(
            &ctx.vertex,
            format!(
                "a join takes 2 inputs, but {} are connected",
                ctx.input_schemas.len()
            ),
        ));
    };
    // An updating input's `_row_kind` column is dropped on arrival (see `regular`): the
    // operator works on the other columns.
    let row_kinds = [left, right].map(|schema| schema.index_of(ROW_KIND_COLUMN).ok());
    let without_row_kind = |schema: &SchemaRef| -> SchemaRef {
        match schema.index_of(ROW_KIND_COLUMN) {
            Ok(index) => {
                let mut fields = schema.fields().to_vec();
                fields.remove(index);
                Arc::new(arrow::datatypes::Schema::new(fields))
            }
            Err(_) => schema.clone(),
        }
    };
    let (left, right) = (&without_row_kind(left), &without_row_kind(right));
    let resolved = spec.resolve(left, right).map_err(|e| match e {
        Error::Expression { message } => Error::plan(&ctx.vertex, message),
        other => other,
    })?;
    let keys = JoinKeys::try_new(resolved.keys, left)?;
    let shape = OutputShape {
        schema: ctx.output_schema.clone(),
        inputs: [left.clone(), right.clone()],
    };
    let times = || {
        resolved
            .times
            .ok_or_else(|| Error::Internal("time-bounded join without time columns".into()))
    };
    Ok(match &spec.kind {
        JoinKind::Regular { join_type } => {
            Box::new(RegularJoin::new(keys, *join_type, shape, row_kinds))
        }
        JoinKind::Hash { join_type } => {
            Box::new(HashJoin::new(keys.columns.clone(), *join_type, shape))
        }
        JoinKind::Interval {
            lower_ms, upper_ms, ..
        } => Box::new(IntervalJoin::new(
            keys,
            times()?,
            *lower_ms,
            *upper_ms,
            shape,
        )),
        JoinKind::Window { size_ms, .. } => {
            Box::new(WindowJoin::new(keys, times()?, *size_ms, shape))
        }
        JoinKind::Subquery {
            join_type,
            residual,
            subquery,
        } => {
            let pairs = crate::graph::join::pair_schema(left, right)?;
            let residual = residual
                .as_ref()
                .map(|r| r.resolve(&pairs))
                .transpose()
                .map_err(|e| match e {
                    Error::Expression { message } => Error::plan(&ctx.vertex, message),
                    other => other,
                })?;
            Box::new(SubqueryJoin::new(
                keys,
                *join_type,
                residual,
                subquery.clone(),
                [ctx.output_schema.clone(), pairs, right.clone()],
            ))
        }
    })
}

/// One row of stored state: a batch of a [`BatchStore`] and a row in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RowRef {
    batch: u32,
    row: u32,
}

/// Maps the key columns of either side to dense key ids shared by both sides.
struct JoinKeys {
    columns: [Vec<usize>; 2],
    converter: RowConverter,
    table: GroupTable,
    /// Key id per row of the last interned batch.
    ids: Vec<u32>,
}

impl JoinKeys {
    fn try_new(columns: [Vec<usize>; 2], left: &arrow::datatypes::Schema) -> Result<Self> {
        let types: Vec<&DataType> = columns[0]
            .iter()
            .map(|&i| left.field(i).data_type())
            .collect();
        let fields = types.iter().map(|&t| SortField::new(t.clone())).collect();
        let converter =
            RowConverter::new(fields).map_err(|e| Error::arrow("join key encoding", e))?;
        Ok(JoinKeys {
            columns,
            converter,
            // One integer-like key column takes the table's word path: no row encoding.
            table: GroupTable::for_key_types(&types),
            ids: Vec::new(),
        })
    }

    /// Fills `self.ids` with the key id of every row of `batch` (from input `side`) and returns
    /// which rows have a non-NULL key (`None`: all of them).
    fn intern(&mut self, side: usize, batch: &RecordBatch) -> Result<Option<NullBuffer>> {
        let columns = self.key_columns(side, batch);
        self.table
            .intern_columns(&self.converter, &columns, &mut self.ids)?;
        Ok(Self::valid(&columns))
    }

    /// Like [`JoinKeys::intern`], but a key not interned before gets
    /// `NO_GROUP` (`u32::MAX`) instead of a new id: a probe that must not grow the
    /// table.
    fn lookup(&mut self, side: usize, batch: &RecordBatch) -> Result<Option<NullBuffer>> {
        let columns = self.key_columns(side, batch);
        self.table
            .lookup_columns(&self.converter, &columns, &mut self.ids)?;
        Ok(Self::valid(&columns))
    }

    fn key_columns(&self, side: usize, batch: &RecordBatch) -> Vec<ArrayRef> {
        self.columns[side]
            .iter()
            .map(|&i| batch.column(i).clone())
            .collect()
    }

    /// Which rows of the key `columns` have no NULL key column (`None`: all of them).
    fn valid(columns: &[ArrayRef]) -> Option<NullBuffer> {
        let mut valid: Option<NullBuffer> = None;
        for column in columns {
            if column.null_count() > 0 {
                valid = NullBuffer::union(valid.as_ref(), column.logical_nulls().as_ref());
            }
        }
        valid
    }

    fn len(&self) -> usize {
        self.table.len()
    }
}

/// Reads an event-time column (TIMESTAMP of any unit or BIGINT milliseconds) as epoch
/// milliseconds into `out`; NULL rows get an arbitrary value (callers check validity).
fn event_times(column: &dyn Array, out: &mut Vec<i64>) -> Result<()> {
    out.clear();
    match column.data_type() {
        DataType::Timestamp(TimeUnit::Second, _) => out.extend(
            column
                .as_primitive::<TimestampSecondType>()
                .values()
                .iter()
                .map(|v| v.saturating_mul(1000)),
        ),
        DataType::Timestamp(TimeUnit::Millisecond, _) => {
            out.extend_from_slice(column.as_primitive::<TimestampMillisecondType>().values())
        }
        DataType::Timestamp(TimeUnit::Microsecond, _) => out.extend(
            column
                .as_primitive::<TimestampMicrosecondType>()
                .values()
                .iter()
                .map(|v| v.div_euclid(1000)),
        ),
        DataType::Timestamp(TimeUnit::Nanosecond, _) => out.extend(
            column
                .as_primitive::<TimestampNanosecondType>()
                .values()
                .iter()
                .map(|v| v.div_euclid(1_000_000)),
        ),
        DataType::Int64 => out.extend_from_slice(column.as_primitive::<Int64Type>().values()),
        other => {
            return Err(Error::Internal(format!(
                "join time column of type {other} passed validation"
            )));
        }
    }
    Ok(())
}

/// Which rows of a batch can join: non-NULL key and (for time-bounded joins) non-NULL time.
fn usable_rows(keys: Option<NullBuffer>, time: Option<&dyn Array>) -> Option<NullBuffer> {
    match time {
        Some(time) if time.null_count() > 0 => {
            NullBuffer::union(keys.as_ref(), time.logical_nulls().as_ref())
        }
        _ => keys,
    }
}

struct StoredBatch {
    batch: RecordBatch,
    /// Event time (ms) per row; empty for the regular join.
    times: Vec<i64>,
    /// Per row, whether it has found a partner; only kept by the outer sides of a regular join.
    matched: Vec<bool>,
    /// Rows still referenced from the join state; the batch is freed at zero.
    live: usize,
    /// The largest event time among the referenced rows (time-bounded joins).
    max_time: i64,
    /// The key group of every row, computed by the first snapshot that holds the batch.
    key_groups: Option<ArrayRef>,
}

/// The stored batches of one join input, in arrival order. Batch ids are absolute and never
/// reused; freed batches at the front are popped so the deque only spans live ones.
#[derive(Default)]
struct BatchStore {
    /// Id of `batches[0]`.
    first: u32,
    batches: VecDeque<Option<StoredBatch>>,
    live_rows: usize,
    /// Scratch of [`BatchStore::gather`]: deque position → array slot.
    slot_of: Vec<usize>,
    used: Vec<usize>,
    indices: Vec<(usize, usize)>,
}

impl BatchStore {
    /// The id the next pushed batch will get.
    fn next_id(&self) -> Result<u32> {
        u32::try_from(self.batches.len())
            .ok()
            .and_then(|n| self.first.checked_add(n))
            .ok_or_else(|| Error::Internal("join state ran out of batch ids".into()))
    }

    /// Keeps `batch` with `live` referenced rows (callers only push when `live > 0`).
    fn push(&mut self, batch: RecordBatch, times: Vec<i64>, matched: Vec<bool>, live: usize) {
        let max_time = times.iter().copied().max().unwrap_or(i64::MIN);
        self.live_rows += live;
        self.batches.push_back(Some(StoredBatch {
            batch,
            times,
            matched,
            live,
            max_time,
            key_groups: None,
        }));
    }

    fn get(&self, batch: u32) -> Option<&StoredBatch> {
        self.batches
            .get(batch.wrapping_sub(self.first) as usize)
            .and_then(Option::as_ref)
    }

    fn get_mut(&mut self, batch: u32) -> Option<&mut StoredBatch> {
        self.batches
            .get_mut(batch.wrapping_sub(self.first) as usize)
            .and_then(Option::as_mut)
    }

    /// The event time of a stored row.
    fn time(&self, row: RowRef) -> i64 {
        self.get(row.batch)
            .and_then(|b| b.times.get(row.row as usize).copied())
            .unwrap_or(i64::MIN)
    }

    /// Marks a stored row as matched; returns whether it was unmatched before.
    fn mark_matched(&mut self, row: RowRef) -> bool {
        match self
            .get_mut(row.batch)
            .and_then(|b| b.matched.get_mut(row.row as usize))
        {
            Some(flag) => !std::mem::replace(flag, true),
            None => false,
        }
    }

    /// Drops one reference to a row of `batch`; frees the batch when none is left.
    fn release(&mut self, row: RowRef) {
        self.live_rows = self.live_rows.saturating_sub(1);
        let position = row.batch.wrapping_sub(self.first) as usize;
        if let Some(slot) = self.batches.get_mut(position)
            && let Some(stored) = slot
        {
            stored.live = stored.live.saturating_sub(1);
            if stored.live == 0 {
                *slot = None;
            }
        }
        while matches!(self.batches.front(), Some(None)) {
            self.batches.pop_front();
            self.first = self.first.wrapping_add(1);
        }
    }

    /// Rows in stored batches whose every referenced row has an event time at or below
    /// `bound`: a cheap lower estimate of what a cleanup at `bound` frees.
    fn expired_estimate(&self, bound: i64) -> usize {
        self.batches
            .iter()
            .flatten()
            .filter(|b| b.max_time <= bound)
            .map(|b| b.live)
            .sum()
    }

    fn clear(&mut self) {
        self.batches.clear();
        self.first = 0;
        self.live_rows = 0;
    }

    fn allocated_bytes(&self) -> usize {
        self.batches
            .iter()
            .flatten()
            .map(|b| {
                b.batch.get_array_memory_size()
                    + b.times.capacity() * std::mem::size_of::<i64>()
                    + b.matched.capacity()
            })
            .sum::<usize>()
            + self.batches.capacity() * std::mem::size_of::<Option<StoredBatch>>()
    }

    /// The columns of the stored `rows`, in order: one `interleave` per column over the
    /// batches the rows reference.
    fn gather(&mut self, rows: &[RowRef]) -> Result<Vec<ArrayRef>> {
        self.slot_of.clear();
        self.slot_of.resize(self.batches.len(), usize::MAX);
        self.used.clear();
        self.indices.clear();
        for row in rows {
            let position = row.batch.wrapping_sub(self.first) as usize;
            let slot = self.slot_of.get_mut(position).ok_or_else(|| {
                Error::Internal(format!("join state refers to freed batch {}", row.batch))
            })?;
            if *slot == usize::MAX {
                *slot = self.used.len();
                self.used.push(position);
            }
            self.indices.push((*slot, row.row as usize));
        }
        let batches: Vec<&RecordBatch> = self
            .used
            .iter()
            .map(|&p| {
                self.batches
                    .get(p)
                    .and_then(Option::as_ref)
                    .map(|b| &b.batch)
                    .ok_or_else(|| Error::Internal("join state refers to a freed batch".into()))
            })
            .collect::<Result<_>>()?;
        let Some(first) = batches.first() else {
            return Err(Error::Internal("gathering no rows from join state".into()));
        };
        (0..first.num_columns())
            .map(|c| {
                let arrays: Vec<&dyn Array> =
                    batches.iter().map(|b| b.column(c).as_ref()).collect();
                interleave(&arrays, &self.indices).map_err(|e| Error::arrow("join output", e))
            })
            .collect()
    }
}

/// Joined pairs found for one incoming batch: row `incoming[i]` of the batch with the stored
/// row `stored[i]` of the other side. Pushed together, so the two stay the same length.
#[derive(Default)]
struct Matches {
    incoming: Vec<u32>,
    stored: Vec<RowRef>,
}

impl Matches {
    fn push(&mut self, incoming: u32, stored: RowRef) {
        self.incoming.push(incoming);
        self.stored.push(stored);
    }

    fn clear(&mut self) {
        self.incoming.clear();
        self.stored.clear();
    }
}

/// The output schema and the input schemas (for NULL padding) of a join.
struct OutputShape {
    schema: SchemaRef,
    inputs: [SchemaRef; 2],
}

impl OutputShape {
    /// Columns of input `side` gathered by `take` from `batch`.
    fn take(batch: &RecordBatch, indices: &[u32]) -> Result<Vec<ArrayRef>> {
        let indices = UInt32Array::from(indices.to_vec());
        batch
            .columns()
            .iter()
            .map(|c| take(c.as_ref(), &indices, None).map_err(|e| Error::arrow("join output", e)))
            .collect()
    }

    /// All-NULL columns of input `side`, `rows` long.
    fn nulls(&self, side: usize, rows: usize) -> Vec<ArrayRef> {
        self.inputs[side]
            .fields()
            .iter()
            .map(|f| new_null_array(f.data_type(), rows))
            .collect()
    }

    /// Emits left columns then right columns, after a `_row_kind` column when `kind` is set.
    fn emit(
        &self,
        out: &mut Output,
        kind: Option<RowKind>,
        left: Vec<ArrayRef>,
        right: Vec<ArrayRef>,
    ) -> Result<()> {
        let rows = left.first().or(right.first()).map_or(0, |c| c.len());
        if rows == 0 {
            return Ok(());
        }
        let mut columns = Vec::with_capacity(self.schema.fields().len());
        if let Some(kind) = kind {
            columns.push(Arc::new(Int8Array::from_value(kind as i8, rows)) as ArrayRef);
        }
        columns.extend(left);
        columns.extend(right);
        let batch = RecordBatch::try_new(self.schema.clone(), columns)
            .map_err(|e| Error::arrow("join output", e))?;
        out.push_batch(batch);
        Ok(())
    }

    /// Emits `matches` (rows of `batch` from input `side` with stored rows of the other
    /// input, held in `other`) in chunks of [`EMIT_BATCH_ROWS`].
    fn emit_pairs(
        &self,
        out: &mut Output,
        kind: Option<RowKind>,
        (side, batch): (usize, &RecordBatch),
        other: &mut BatchStore,
        matches: &Matches,
    ) -> Result<()> {
        for (mine, theirs) in matches
            .incoming
            .chunks(EMIT_BATCH_ROWS)
            .zip(matches.stored.chunks(EMIT_BATCH_ROWS))
        {
            let mine = Self::take(batch, mine)?;
            let theirs = other.gather(theirs)?;
            let (left, right) = if side == 0 {
                (mine, theirs)
            } else {
                (theirs, mine)
            };
            self.emit(out, kind, left, right)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
