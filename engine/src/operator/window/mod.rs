//! Window aggregation (Flink's window TVF aggregation): per key and time window, vectorized.
//!
//! - [`assigner`] maps times to *slices* and slices to windows for tumbling, hopping and
//!   cumulating windows; [`slices`] keeps one partial aggregate per (key, slice) and merges the
//!   slices of a window when it fires, so a record is never copied once per window.
//! - [`session`] keeps per-key session windows that merge when a record bridges them.
//! - This module holds what both share: key interning ([`WindowKeys`], the keyed aggregate's
//!   row-encoded `GroupTable`), accumulator slots with a free list ([`GroupSlots`], the keyed
//!   aggregate's accumulators plus `merge`/`reset`), event-time extraction and the output row.
//! - [`checkpoint`] holds the snapshot tables both write (window contents by key group, and
//!   the firing progress).
//!
//! Firing: event-time windows fire when the watermark reaches `window_end - 1` (the largest
//! time inside the window), before the watermark is forwarded. Processing-time windows fire
//! when the wall clock, read at every batch and watermark, passes `window_end - 1`; bounded
//! input fires everything at `finish`.
//!
//! Lateness (event time): a record is late when every window it belongs to satisfies
//! `window_end - 1 + allowed_lateness <= watermark`; it is counted in `late_records_dropped` and
//! dropped. A record for a window that has fired but is within the allowed lateness updates the
//! window's state, and the window fires again for that key with the full updated result: a
//! plain row with the same schema (no `_row_kind` column; as Flink's DataStream window
//! operator, not a `-U/+U` retraction). A window's state is freed once the watermark passes
//! `window_end - 1 + allowed_lateness`.

mod assigner;
mod checkpoint;
mod session;
mod slices;

pub(crate) use assigner::SliceAssigner;

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, TimestampMillisecondArray};
use arrow::datatypes::*;
use arrow::record_batch::RecordBatch;
use arrow::row::{RowConverter, SortField};

use super::Operator;
use super::aggregate::{Accumulator, GroupTable, accumulators_for};
use crate::graph::{AggregateCall, WindowAggregateSpec, WindowTime};
use crate::{Error, Result};

/// Rows per emitted result batch (larger windows are emitted as zero-copy slices).
const EMIT_BATCH_ROWS: usize = 8192;

/// Builds the window operator for `spec` over `input`.
pub(crate) fn build(
    spec: &WindowAggregateSpec,
    input: &Schema,
    output_schema: SchemaRef,
) -> Result<Box<dyn Operator>> {
    let time = TimeSource::try_new(&spec.time, input)?;
    let keys = WindowKeys::try_new(&spec.keys, input)?;
    let slots = GroupSlots::try_new(&spec.aggregates, input)?;
    Ok(match assigner::SliceAssigner::try_new(&spec.window)? {
        Some(assigner) => Box::new(slices::SliceWindowAggregate::new(
            assigner,
            time,
            spec.allowed_lateness_ms,
            keys,
            slots,
            output_schema,
        )),
        None => {
            let crate::graph::WindowKind::Session { gap_ms } = spec.window else {
                return Err(Error::Internal("non-session window without slices".into()));
            };
            Box::new(session::SessionWindowAggregate::new(
                gap_ms,
                time,
                spec.allowed_lateness_ms,
                keys,
                slots,
                output_schema,
            ))
        }
    })
}

/// Where a record's time comes from.
#[derive(Debug, Clone)]
pub(crate) enum TimeSource {
    /// The event-time column's index and name.
    Event {
        column: usize,
        name: String,
    },
    Processing,
}

impl TimeSource {
    fn try_new(time: &WindowTime, input: &Schema) -> Result<Self> {
        Ok(match time {
            WindowTime::EventTime { column } => TimeSource::Event {
                column: input
                    .index_of(column)
                    .map_err(|_| Error::expr(format!("unknown window time column '{column}'")))?,
                name: column.clone(),
            },
            WindowTime::ProcessingTime => TimeSource::Processing,
        })
    }

    pub(crate) fn is_event_time(&self) -> bool {
        matches!(self, TimeSource::Event { .. })
    }

    /// Fills `out` with each row's time in epoch milliseconds: the event time, or `now` for
    /// processing time. A NULL event time is a data error (Flink rejects it too).
    pub(crate) fn times(&self, batch: &RecordBatch, now: i64, out: &mut Vec<i64>) -> Result<()> {
        out.clear();
        let TimeSource::Event { column, name } = self else {
            out.resize(batch.num_rows(), now);
            return Ok(());
        };
        let array = batch.column(*column);
        if array.null_count() > 0 {
            return Err(Error::data(
                format!("window time column '{name}'"),
                "NULL event time",
            ));
        }
        fn scaled<T: ArrowPrimitiveType<Native = i64>>(
            array: &ArrayRef,
            out: &mut Vec<i64>,
            to_millis: impl Fn(i64) -> i64,
        ) {
            out.extend(
                array
                    .as_primitive::<T>()
                    .values()
                    .iter()
                    .map(|&v| to_millis(v)),
            );
        }
        match array.data_type() {
            DataType::Timestamp(TimeUnit::Second, _) => {
                scaled::<TimestampSecondType>(array, out, |v| v.saturating_mul(1000))
            }
            DataType::Timestamp(TimeUnit::Millisecond, _) => {
                scaled::<TimestampMillisecondType>(array, out, |v| v)
            }
            DataType::Timestamp(TimeUnit::Microsecond, _) => {
                scaled::<TimestampMicrosecondType>(array, out, |v| v.div_euclid(1000))
            }
            DataType::Timestamp(TimeUnit::Nanosecond, _) => {
                scaled::<TimestampNanosecondType>(array, out, |v| v.div_euclid(1_000_000))
            }
            DataType::Int64 => scaled::<Int64Type>(array, out, |v| v),
            other => {
                return Err(Error::expr(format!(
                    "window time column '{name}' must be TIMESTAMP or BIGINT, found {other}"
                )));
            }
        }
        Ok(())
    }
}

/// The wall clock in epoch milliseconds (processing-time windows).
pub(crate) fn wall_clock_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Dense key ids for the grouping columns (row-encoded, as the keyed aggregate). With no
/// grouping columns every row has key 0 (a global window).
pub(crate) struct WindowKeys {
    indices: Vec<usize>,
    /// `None` for a global window.
    converter: Option<RowConverter>,
    table: GroupTable,
}

impl WindowKeys {
    fn try_new(keys: &[String], input: &Schema) -> Result<Self> {
        let indices = keys
            .iter()
            .map(|k| {
                input
                    .index_of(k)
                    .map_err(|_| Error::expr(format!("unknown key column '{k}'")))
            })
            .collect::<Result<Vec<_>>>()?;
        let converter = if indices.is_empty() {
            None
        } else {
            let fields = indices
                .iter()
                .map(|&i| SortField::new(input.field(i).data_type().clone()))
                .collect();
            Some(RowConverter::new(fields).map_err(|e| Error::arrow("window key encoding", e))?)
        };
        let types: Vec<&DataType> = indices
            .iter()
            .map(|&i| input.field(i).data_type())
            .collect();
        Ok(WindowKeys {
            indices,
            converter,
            table: GroupTable::for_key_types(&types),
        })
    }

    /// Fills `out` with the key id of every row of `batch`.
    pub(crate) fn intern(&mut self, batch: &RecordBatch, out: &mut Vec<u32>) -> Result<()> {
        let Some(converter) = &self.converter else {
            out.clear();
            out.resize(batch.num_rows(), 0);
            return Ok(());
        };
        let columns: Vec<ArrayRef> = self
            .indices
            .iter()
            .map(|&i| batch.column(i).clone())
            .collect();
        self.table.intern_columns(converter, &columns, out)
    }

    /// Number of key ids handed out.
    pub(crate) fn len(&self) -> usize {
        if self.converter.is_some() {
            self.table.len()
        } else {
            1
        }
    }

    fn allocated_bytes(&self) -> usize {
        self.table.allocated_bytes()
    }

    /// The key columns of `keys`, in that order.
    fn decode(&self, keys: &[u32]) -> Result<Vec<ArrayRef>> {
        let Some(converter) = &self.converter else {
            return Ok(Vec::new());
        };
        self.table.decode_keys(converter, keys)
    }
}

/// Accumulator state in numbered slots, one slot per (key, slice) or per session, with a free
/// list so slots of fired windows are reused instead of growing the vectors forever.
pub(crate) struct GroupSlots {
    accumulators: Vec<Box<dyn Accumulator>>,
    /// Input column of each accumulator (None for COUNT(*)).
    inputs: Vec<Option<usize>>,
    /// Slots handed out so far (live or free).
    len: usize,
    /// Slots the accumulators have been grown to.
    sized: usize,
    free: Vec<u32>,
}

impl GroupSlots {
    fn try_new(calls: &[AggregateCall], input: &Schema) -> Result<Self> {
        let (accumulators, inputs) = accumulators_for(calls, input)?;
        Ok(GroupSlots {
            accumulators,
            inputs,
            len: 0,
            sized: 0,
            free: Vec::new(),
        })
    }

    /// An empty slot.
    pub(crate) fn alloc(&mut self) -> u32 {
        self.free.pop().unwrap_or_else(|| {
            self.len += 1;
            (self.len - 1) as u32
        })
    }

    fn ensure_sized(&mut self) {
        if self.sized < self.len {
            for acc in &mut self.accumulators {
                acc.resize(self.len);
            }
            self.sized = self.len;
        }
    }

    /// Folds row `i` of `batch` into slot `slots[i]`: one typed loop per accumulator.
    pub(crate) fn update(&mut self, slots: &[u32], batch: &RecordBatch) -> Result<()> {
        if slots.len() != batch.num_rows() {
            return Err(Error::Internal(format!(
                "{} slots for a batch of {} rows",
                slots.len(),
                batch.num_rows()
            )));
        }
        self.ensure_sized();
        for (acc, input) in self.accumulators.iter_mut().zip(&self.inputs) {
            acc.update(slots, input.map(|i| batch.column(i)))?;
        }
        Ok(())
    }

    /// Folds slot `sources[i]` into slot `targets[i]`, in order.
    pub(crate) fn merge(&mut self, sources: &[u32], targets: &[u32]) -> Result<()> {
        if sources.len() != targets.len() {
            return Err(Error::Internal(format!(
                "merging {} slots into {}",
                sources.len(),
                targets.len()
            )));
        }
        self.ensure_sized();
        for acc in &mut self.accumulators {
            acc.merge(sources, targets);
        }
        Ok(())
    }

    /// Empties `slots` and keeps them allocated.
    pub(crate) fn clear(&mut self, slots: &[u32]) {
        self.ensure_sized();
        for acc in &mut self.accumulators {
            acc.reset(slots);
        }
    }

    /// Empties `slots` and returns them to the free list.
    pub(crate) fn release(&mut self, slots: &[u32]) {
        self.clear(slots);
        self.free.extend_from_slice(slots);
    }

    /// The results of `slots`, one array per aggregate.
    pub(crate) fn evaluate(&mut self, slots: &[u32]) -> Result<Vec<ArrayRef>> {
        self.ensure_sized();
        self.accumulators
            .iter()
            .map(|acc| acc.evaluate(slots))
            .collect()
    }

    fn allocated_bytes(&self) -> usize {
        self.accumulators
            .iter()
            .map(|a| a.allocated_bytes())
            .sum::<usize>()
            + self.free.capacity() * std::mem::size_of::<u32>()
    }
}

/// Appends the result rows of windows to `out`: keys, `window_start`, `window_end`, then the
/// aggregates, cut into batches of at most [`EMIT_BATCH_ROWS`] rows.
pub(crate) fn emit_rows(
    schema: &SchemaRef,
    keys: Vec<ArrayRef>,
    starts: Vec<i64>,
    ends: Vec<i64>,
    values: Vec<ArrayRef>,
    out: &mut super::Output,
) -> Result<()> {
    let mut columns = keys;
    columns.push(Arc::new(TimestampMillisecondArray::from(starts)));
    columns.push(Arc::new(TimestampMillisecondArray::from(ends)));
    columns.extend(values);
    let batch = RecordBatch::try_new(schema.clone(), columns)
        .map_err(|e| Error::arrow("window aggregate output", e))?;
    for slice in super::slices(batch, EMIT_BATCH_ROWS) {
        out.push_batch(slice);
    }
    Ok(())
}
