//! Rank: Top-N and deduplication per partition (`ROW_NUMBER() OVER (PARTITION BY … ORDER BY …)`
//! filtered to `rn <= N`), as Flink's Top-N, Deduplication, Window Top-N and Window
//! Deduplication. Configured by a [`RankSpec`]; the input is hash-partitioned on the partition
//! keys, so each partition lives on one subtask.
//!
//! State: per partition a [`TopBuffer`] of at most N rows sorted by their `arrow-row` encoded
//! sort key (so comparing two rows is one byte-slice comparison, whatever the ORDER BY), each
//! with the whole row encoded for output and an arrival number for ties. Partitions are dense
//! indices from a `GroupTable` over the encoded partition keys; a window rank keeps one such
//! set per window and drops it when the window fires.
//!
//! Per batch: partition keys and sort keys are encoded once for the whole batch; a first pass
//! finds each row's partition and drops rows that cannot enter its top N as it stood before
//! the batch (the common case once a partition is full); only the surviving rows are
//! `take`n and row-encoded, then offered in arrival order.
//!
//! Emission by [`RankStrategy`]:
//! - `Changelog`: after each batch, per changed partition, the difference between its top rows
//!   before and after the batch. Without a row number, rows that left are `-D` and rows that
//!   entered `+I`; with a row number, each rank whose row changed is `-U` old / `+U` new and a
//!   newly filled rank `+I` (Flink emits the same rows per record; per batch the intermediate
//!   states within one batch are folded, as Flink's mini-batch mode does).
//! - `Deduplicate`: `+I` for a key's first row, `-U`/`+U` when a later batch replaces it.
//! - `Final`: append-only; at end of input, or for a window rank per window once the
//!   watermark reaches `window_end - 1` (rows of windows already fired are late: counted and
//!   dropped). A window rank reads each row's window from its window columns, or assigns the
//!   windows itself from a time column (tumbling, hopping, cumulating: a row joins every
//!   window that contains it) and appends `window_start`, `window_end`, `window_time`.
//!
//! Snapshots hold one `ranks` table: `key_group: UInt32`, `key: Binary` (encoded partition
//! keys), `sort: Binary`, `row: Binary`, `seq: UInt64`, `window_end: Int64`, `window_start:
//! Int64` (0 without a window), one row per kept row in rank order, so a
//! restore at another parallelism keeps the partitions of the key groups it owns.

mod buffer;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, BooleanArray, Int8Array, Int64Array,
    TimestampMillisecondArray, UInt32Array, UInt64Array,
};
use arrow::compute::SortOptions;
use arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef, TimeUnit, UInt32Type};
use arrow::record_batch::RecordBatch;
use arrow::row::{RowConverter, Rows, SortField};

use super::{Operator, OperatorContext, Output};
use crate::element::{RowKind, Watermark};
use crate::graph::{RankSpec, RankStrategy, RankWindow};
use crate::ids::CheckpointId;
use crate::operator::window::SliceAssigner;
use crate::runtime::OperatorMetrics;
use crate::state::{KeyGroupRange, SnapshotTable, StateSnapshot, hash_columns, key_group_of_hash};
use crate::{Error, Result};

use buffer::{Entry, PartitionSet, Ties, TopBuffer};

/// Name of the rank's snapshot table.
const RANKS_TABLE: &str = "ranks";

/// Rows per emitted batch of final results.
const EMIT_BATCH_ROWS: usize = 8192;

/// Evicted entries kept for reuse of their allocations.
const SPARE_ENTRIES: usize = 1024;

/// The key of a window's partition set: (end, start) so windows fire in end order. Without a
/// window there is one set, under `(0, 0)`.
type WindowKey = (i64, i64);

/// Where a row to emit lives at the end of a batch.
#[derive(Clone, Copy)]
enum Kept {
    Entry(u32, usize),
    Evicted(u32, usize),
}

pub struct Rank {
    partition_indices: Vec<usize>,
    order_indices: Vec<usize>,
    /// Where each row's windows come from (window ranks only).
    window: Option<WindowSource>,
    key_converter: RowConverter,
    sort_converter: RowConverter,
    row_converter: RowConverter,
    limit: usize,
    strategy: RankStrategy,
    ties: Ties,
    emit_rank: bool,
    output_schema: SchemaRef,
    sets: BTreeMap<WindowKey, PartitionSet>,
    next_seq: u64,
    watermark: i64,
    late_records: u64,
    key_groups: Option<(KeyGroupRange, u32)>,
    // Per-batch scratch.
    batch_number: u64,
    changed: Vec<u32>,
    candidates: Vec<(u32, u32, WindowKey)>,
    row_windows: Vec<(u32, WindowKey)>,
    spare: Vec<Entry>,
    scratch: ChangeScratch,
}

/// Buffers of [`Rank::emit_changes`], kept across batches.
#[derive(Default)]
struct ChangeScratch {
    emitted: Vec<(Kept, RowKind, i64)>,
    old: Vec<Kept>,
    arrived: Vec<(u64, usize)>,
    evicted: Vec<usize>,
}

#[derive(Clone, Copy)]
enum WindowSource {
    /// The input's window start and end columns.
    Columns { start: usize, end: usize },
    /// The windows that contain the input's time column.
    Assign {
        assigner: SliceAssigner,
        time: usize,
    },
}

fn converter(fields: Vec<SortField>, what: &str) -> Result<RowConverter> {
    RowConverter::new(fields).map_err(|e| Error::arrow(what.to_string(), e))
}

/// Window bounds as milliseconds: `TIMESTAMP(3)` or `BIGINT`.
fn millis(column: &ArrayRef, name: &str) -> Result<ArrayRef> {
    match column.data_type() {
        DataType::Int64 => Ok(column.clone()),
        DataType::Timestamp(TimeUnit::Millisecond, _) => {
            arrow::compute::cast(column, &DataType::Int64)
                .map_err(|e| Error::arrow(format!("window rank column '{name}'"), e))
        }
        other => Err(Error::expr(format!(
            "window rank: window column '{name}' must be TIMESTAMP(3) or BIGINT milliseconds, \
             found {other}"
        ))),
    }
}

impl Rank {
    pub fn try_new(spec: &RankSpec, input: &Schema, output_schema: SchemaRef) -> Result<Self> {
        spec.output_schema(input)?;
        if spec.partition_keys.is_empty() {
            return Err(Error::expr(
                "a rank needs at least one partition key (a global rank partitions by a \
                 constant)",
            ));
        }
        let index = |name: &str| {
            input
                .index_of(name)
                .map_err(|_| Error::expr(format!("rank: unknown column '{name}'")))
        };
        let partition_indices = spec
            .partition_keys
            .iter()
            .map(|k| index(k))
            .collect::<Result<Vec<_>>>()?;
        let order_indices = spec
            .order_by
            .iter()
            .map(|o| index(&o.column))
            .collect::<Result<Vec<_>>>()?;
        let window = match &spec.window {
            Some(RankWindow::Columns {
                start_column,
                end_column,
            }) => Some(WindowSource::Columns {
                start: index(start_column)?,
                end: index(end_column)?,
            }),
            Some(RankWindow::Assign { kind, time_column }) => {
                let assigner = SliceAssigner::try_new(kind)?.ok_or_else(|| {
                    Error::expr("a window rank over SESSION windows is not supported yet")
                })?;
                Some(WindowSource::Assign {
                    assigner,
                    time: index(time_column)?,
                })
            }
            None => None,
        };
        let key_converter = converter(
            partition_indices
                .iter()
                .map(|&i| SortField::new(input.field(i).data_type().clone()))
                .collect(),
            "rank partition key encoding",
        )?;
        let sort_converter = converter(
            spec.order_by
                .iter()
                .zip(&order_indices)
                .map(|(o, &i)| {
                    SortField::new_with_options(
                        input.field(i).data_type().clone(),
                        SortOptions {
                            descending: o.descending,
                            nulls_first: o.nulls_first,
                        },
                    )
                })
                .collect(),
            "rank sort key encoding",
        )?;
        let row_converter = converter(
            input
                .fields()
                .iter()
                .map(|f| SortField::new(f.data_type().clone()))
                .collect(),
            "rank row encoding",
        )?;
        let ties = if spec.strategy == RankStrategy::Deduplicate && spec.order_by[0].descending {
            Ties::NewestFirst
        } else {
            Ties::OldestFirst
        };
        let limit = usize::try_from(spec.limit)
            .map_err(|_| Error::expr(format!("rank limit {} is too large", spec.limit)))?;
        Ok(Rank {
            partition_indices,
            order_indices,
            window,
            key_converter,
            sort_converter,
            row_converter,
            limit,
            strategy: spec.strategy,
            ties,
            emit_rank: spec.rank_column.is_some(),
            output_schema,
            sets: BTreeMap::new(),
            next_seq: 0,
            watermark: i64::MIN,
            late_records: 0,
            key_groups: None,
            batch_number: 0,
            changed: Vec::new(),
            candidates: Vec::new(),
            row_windows: Vec::new(),
            spare: Vec::new(),
            scratch: ChangeScratch::default(),
        })
    }

    /// Number of partitions (over all open windows) with kept rows.
    pub fn partition_count(&self) -> usize {
        self.sets.values().map(|s| s.buffers.len()).sum()
    }

    fn is_changelog(&self) -> bool {
        self.strategy != RankStrategy::Final
    }

    fn recycle(&mut self, mut entry: Entry) {
        if self.spare.len() < SPARE_ENTRIES {
            entry.sort.clear();
            entry.row.clear();
            self.spare.push(entry);
        }
    }

    /// Builds an output batch from encoded rows, their kinds (changelog only) and ranks.
    fn output_batch<'r>(
        &self,
        rows: impl Iterator<Item = &'r [u8]>,
        kinds: Option<Int8Array>,
        ranks: Int64Array,
        window: WindowKey,
    ) -> Result<RecordBatch> {
        let parser = self.row_converter.parser();
        let values = self
            .row_converter
            .convert_rows(rows.map(|bytes| parser.parse(bytes)))
            .map_err(|e| Error::arrow("rank row decoding", e))?;
        let mut columns = Vec::with_capacity(self.output_schema.fields().len());
        if let Some(kinds) = kinds {
            columns.push(Arc::new(kinds) as ArrayRef);
        }
        columns.extend(values);
        if let Some(WindowSource::Assign { .. }) = self.window {
            // window_start, window_end, window_time: the same for every row of the batch.
            let (end, start) = window;
            let rows = ranks.len();
            for value in [start, end, end - 1] {
                columns.push(Arc::new(TimestampMillisecondArray::from_value(value, rows)));
            }
        }
        if self.emit_rank {
            columns.push(Arc::new(ranks));
        }
        RecordBatch::try_new(self.output_schema.clone(), columns)
            .map_err(|e| Error::arrow("rank output", e))
    }

    /// Emits every kept row of `set`, partition by partition in rank order (append-only).
    fn emit_final(&self, window: WindowKey, set: &PartitionSet, out: &mut Output) -> Result<()> {
        let mut rows: Vec<&[u8]> = Vec::new();
        let mut ranks: Vec<i64> = Vec::new();
        for buffer in &set.buffers {
            for (rank, entry) in buffer.entries.iter().enumerate() {
                rows.push(&entry.row);
                ranks.push(rank as i64 + 1);
                if rows.len() == EMIT_BATCH_ROWS {
                    let batch = self.output_batch(
                        rows.drain(..),
                        None,
                        Int64Array::from(std::mem::take(&mut ranks)),
                        window,
                    )?;
                    out.push_batch(batch);
                }
            }
        }
        if !rows.is_empty() {
            out.push_batch(self.output_batch(
                rows.into_iter(),
                None,
                Int64Array::from(ranks),
                window,
            )?);
        }
        Ok(())
    }

    /// Fires (emits and drops) the windows whose end is at or below `watermark + 1`.
    fn fire_windows(&mut self, watermark: i64, out: &mut Output) -> Result<()> {
        while let Some(entry) = self.sets.first_entry() {
            let key = *entry.key();
            if key.0.saturating_sub(1) > watermark {
                break;
            }
            let set = entry.remove();
            self.emit_final(key, &set, out)?;
        }
        Ok(())
    }

    /// The changelog of the partitions changed by the batch whose first row got `first_seq`.
    fn emit_changes(&mut self, first_seq: u64, out: &mut Output) -> Result<()> {
        let Some(set) = self.sets.get(&(0, 0)) else {
            return Ok(());
        };
        let mut scratch = std::mem::take(&mut self.scratch);
        let ChangeScratch {
            emitted,
            old,
            arrived,
            evicted,
        } = &mut scratch;
        emitted.clear();
        for &p in &self.changed {
            let buffer = &set.buffers[p as usize];
            let is_old = |e: &Entry| e.seq < first_seq;
            if !self.emit_rank {
                let gone = buffer
                    .evicted
                    .iter()
                    .enumerate()
                    .map(|(i, _)| Kept::Evicted(p, i));
                // Entering rows in arrival order, as Flink emits them record by record.
                arrived.clear();
                arrived.extend(
                    buffer
                        .entries
                        .iter()
                        .enumerate()
                        .filter(|(_, e)| !is_old(e))
                        .map(|(i, e)| (e.seq, i)),
                );
                arrived.sort_unstable();
                let came = arrived.iter().map(|&(_, i)| Kept::Entry(p, i));
                if self.strategy == RankStrategy::Deduplicate {
                    // One row per key: a replacement is an update.
                    let replaced = !buffer.evicted.is_empty();
                    emitted.extend(gone.map(|k| (k, RowKind::UpdateBefore, 1)));
                    let kind = if replaced {
                        RowKind::UpdateAfter
                    } else {
                        RowKind::Insert
                    };
                    emitted.extend(came.map(|k| (k, kind, 1)));
                } else {
                    emitted.extend(gone.map(|k| (k, RowKind::Delete, 0)));
                    emitted.extend(came.map(|k| (k, RowKind::Insert, 0)));
                }
                continue;
            }
            // With row numbers: compare the rows rank by rank.
            old.clear();
            let mut kept_old = buffer
                .entries
                .iter()
                .enumerate()
                .filter(|(_, e)| is_old(e))
                .peekable();
            evicted.clear();
            evicted.extend(0..buffer.evicted.len());
            evicted.sort_by(|&a, &b| self.ties.compare(&buffer.evicted[a], &buffer.evicted[b]));
            let mut evicted = evicted.iter().copied().peekable();
            loop {
                let next = match (kept_old.peek(), evicted.peek()) {
                    (Some((i, e)), Some(&j)) => {
                        if self.ties.compare(e, &buffer.evicted[j]).is_le() {
                            Kept::Entry(p, *i)
                        } else {
                            Kept::Evicted(p, j)
                        }
                    }
                    (Some((i, _)), None) => Kept::Entry(p, *i),
                    (None, Some(&j)) => Kept::Evicted(p, j),
                    (None, None) => break,
                };
                match next {
                    Kept::Entry(..) => {
                        kept_old.next();
                    }
                    Kept::Evicted(..) => {
                        evicted.next();
                    }
                }
                old.push(next);
            }
            let seq_of = |k: &Kept| match *k {
                Kept::Entry(_, i) => buffer.entries[i].seq,
                Kept::Evicted(_, i) => buffer.evicted[i].seq,
            };
            for rank in 0..old.len().max(buffer.entries.len()) {
                let now = (rank < buffer.entries.len()).then_some(Kept::Entry(p, rank));
                let number = rank as i64 + 1;
                match (old.get(rank), now) {
                    (Some(o), Some(n)) if seq_of(o) == seq_of(&n) => {}
                    (Some(&o), Some(n)) => {
                        emitted.push((o, RowKind::UpdateBefore, number));
                        emitted.push((n, RowKind::UpdateAfter, number));
                    }
                    (None, Some(n)) => emitted.push((n, RowKind::Insert, number)),
                    (Some(&o), None) => emitted.push((o, RowKind::Delete, number)),
                    (None, None) => {}
                }
            }
        }
        if !emitted.is_empty() {
            let bytes = |k: &Kept| -> &[u8] {
                match *k {
                    Kept::Entry(p, i) => &set.buffers[p as usize].entries[i].row,
                    Kept::Evicted(p, i) => &set.buffers[p as usize].evicted[i].row,
                }
            };
            let kinds: Int8Array = emitted.iter().map(|(_, k, _)| Some(*k as i8)).collect();
            let ranks: Int64Array = emitted.iter().map(|(_, _, r)| Some(*r)).collect();
            let batch = self.output_batch(
                emitted.iter().map(|(k, _, _)| bytes(k)),
                Some(kinds),
                ranks,
                (0, 0),
            )?;
            out.push_batch(batch);
        }
        self.scratch = scratch;
        // The evicted rows have been reported: reuse their allocations.
        let Rank {
            sets,
            changed,
            spare,
            ..
        } = self;
        if let Some(set) = sets.get_mut(&(0, 0)) {
            for &p in changed.iter() {
                for mut entry in set.buffers[p as usize].evicted.drain(..) {
                    if spare.len() < SPARE_ENTRIES {
                        entry.sort.clear();
                        entry.row.clear();
                        spare.push(entry);
                    }
                }
            }
        }
        Ok(())
    }

    /// Key groups of encoded partition keys (hashed as the input exchange hashes them).
    fn key_groups_of(&self, keys: &[&[u8]], max_parallelism: u32) -> Result<Vec<u32>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let parser = self.key_converter.parser();
        let columns = self
            .key_converter
            .convert_rows(keys.iter().map(|k| parser.parse(k)))
            .map_err(|e| Error::arrow("rank partition key decoding", e))?;
        let mut hashes = Vec::with_capacity(keys.len());
        hash_columns(&columns, &mut hashes)?;
        Ok(hashes
            .iter()
            .map(|&h| key_group_of_hash(h, max_parallelism))
            .collect())
    }
}

impl Operator for Rank {
    fn open(&mut self, ctx: &OperatorContext) -> Result<()> {
        self.key_groups = Some((ctx.key_groups, ctx.max_parallelism));
        Ok(())
    }

    fn process_batch(&mut self, _input: usize, batch: RecordBatch, out: &mut Output) -> Result<()> {
        let columns = |indices: &[usize]| -> Vec<ArrayRef> {
            indices.iter().map(|&i| batch.column(i).clone()).collect()
        };
        let keys: Rows = self
            .key_converter
            .convert_columns(&columns(&self.partition_indices))
            .map_err(|e| Error::arrow("rank partition key encoding", e))?;
        let sorts: Rows = self
            .sort_converter
            .convert_columns(&columns(&self.order_indices))
            .map_err(|e| Error::arrow("rank sort key encoding", e))?;
        // Each row's windows (one per row without a window).
        self.row_windows.clear();
        match self.window {
            None => self
                .row_windows
                .extend((0..batch.num_rows() as u32).map(|row| (row, (0, 0)))),
            Some(WindowSource::Columns { start, end }) => {
                let starts = millis(batch.column(start), "window start")?;
                let ends = millis(batch.column(end), "window end")?;
                let (starts, ends) = (
                    starts.as_primitive::<Int64Type>(),
                    ends.as_primitive::<Int64Type>(),
                );
                for row in 0..batch.num_rows() {
                    let key = (ends.value(row), starts.value(row));
                    if ends.is_null(row) || key.0.saturating_sub(1) <= self.watermark {
                        self.late_records += 1;
                    } else {
                        self.row_windows.push((row as u32, key));
                    }
                }
            }
            Some(WindowSource::Assign { assigner, time }) => {
                let times = millis(batch.column(time), "window time")?;
                let times = times.as_primitive::<Int64Type>();
                for row in 0..batch.num_rows() {
                    let before = self.row_windows.len();
                    if times.is_valid(row) {
                        for end in assigner.window_ends(assigner.slice_end(times.value(row))) {
                            if end.saturating_sub(1) > self.watermark {
                                self.row_windows
                                    .push((row as u32, (end, assigner.window_start(end))));
                            }
                        }
                    }
                    if self.row_windows.len() == before {
                        self.late_records += 1;
                    }
                }
            }
        }

        // Pass 1: each row's partition; drop rows that cannot enter their top N.
        self.candidates.clear();
        let mut window_key: WindowKey = (0, 0);
        let mut set = None;
        for &(row, key) in &self.row_windows {
            if set.is_none() || key != window_key {
                window_key = key;
                set = Some(self.sets.entry(window_key).or_default());
            }
            let set = set.as_mut().expect("set above");
            let row = row as usize;
            let p = set.partition(keys.row(row).as_ref());
            if set.buffers[p as usize].admits(sorts.row(row).as_ref(), self.limit, self.ties) {
                self.candidates.push((row as u32, p, window_key));
            }
        }
        if self.candidates.is_empty() {
            return Ok(());
        }

        // Pass 2: encode the surviving rows and offer them in arrival order.
        let indices = UInt32Array::from_iter_values(self.candidates.iter().map(|c| c.0));
        let taken = arrow::compute::take_record_batch(&batch, &indices)
            .map_err(|e| Error::arrow("rank candidate rows", e))?;
        let rows = self
            .row_converter
            .convert_columns(taken.columns())
            .map_err(|e| Error::arrow("rank row encoding", e))?;
        self.batch_number += 1;
        self.changed.clear();
        let first_seq = self.next_seq;
        let changelog = self.is_changelog();
        let candidates = std::mem::take(&mut self.candidates);
        for (i, &(row, p, window_key)) in candidates.iter().enumerate() {
            let sort = sorts.row(row as usize);
            let mut entry = self.spare.pop().unwrap_or_default();
            entry.sort.extend_from_slice(sort.as_ref());
            entry.row.extend_from_slice(rows.row(i).as_ref());
            entry.seq = self.next_seq;
            self.next_seq += 1;
            let set = self
                .sets
                .get_mut(&window_key)
                .expect("pass 1 created the candidate's window");
            let buffer: &mut TopBuffer = &mut set.buffers[p as usize];
            let pushed_out = buffer.offer(entry, self.limit, self.ties);
            let entered = pushed_out
                .as_ref()
                .is_none_or(|e| e.seq != self.next_seq - 1);
            if entered && changelog && buffer.changed_in != self.batch_number {
                buffer.changed_in = self.batch_number;
                self.changed.push(p);
            }
            if let Some(e) = pushed_out {
                if changelog && e.seq < first_seq {
                    buffer.evicted.push(e);
                } else {
                    self.recycle(e);
                }
            }
        }
        self.candidates = candidates;
        if changelog {
            self.emit_changes(first_seq, out)?;
        }
        Ok(())
    }

    fn process_watermark(&mut self, watermark: Watermark, out: &mut Output) -> Result<()> {
        if self.window.is_some() && watermark.0 > self.watermark {
            self.watermark = watermark.0;
            self.fire_windows(watermark.0, out)?;
        }
        out.push_watermark(watermark);
        Ok(())
    }

    fn finish(&mut self, out: &mut Output) -> Result<()> {
        if self.strategy == RankStrategy::Final {
            // Batch results, and windows that no watermark closed (end of bounded input).
            for (key, set) in std::mem::take(&mut self.sets) {
                self.emit_final(key, &set, out)?;
            }
        }
        Ok(())
    }

    fn snapshot(&mut self, _checkpoint: CheckpointId) -> Result<StateSnapshot> {
        let (range, max_parallelism) = self
            .key_groups
            .ok_or_else(|| Error::Internal("rank snapshotted before open".into()))?;
        let mut keys: Vec<&[u8]> = Vec::new();
        let mut sorts: Vec<&[u8]> = Vec::new();
        let mut rows: Vec<&[u8]> = Vec::new();
        let mut seqs: Vec<u64> = Vec::new();
        let mut windows: Vec<WindowKey> = Vec::new();
        for (&window, set) in &self.sets {
            for (p, buffer) in set.buffers.iter().enumerate() {
                let key = set.table.key(p as u32);
                for entry in &buffer.entries {
                    keys.push(key);
                    sorts.push(&entry.sort);
                    rows.push(&entry.row);
                    seqs.push(entry.seq);
                    windows.push(window);
                }
            }
        }
        let key_groups = UInt32Array::from(self.key_groups_of(&keys, max_parallelism)?);
        let schema = Schema::new(vec![
            Field::new("key_group", DataType::UInt32, false),
            Field::new("key", DataType::Binary, false),
            Field::new("sort", DataType::Binary, false),
            Field::new("row", DataType::Binary, false),
            Field::new("seq", DataType::UInt64, false),
            Field::new("window_end", DataType::Int64, false),
            Field::new("window_start", DataType::Int64, false),
        ]);
        let columns: Vec<ArrayRef> = vec![
            Arc::new(key_groups),
            Arc::new(BinaryArray::from_iter_values(keys)),
            Arc::new(BinaryArray::from_iter_values(sorts)),
            Arc::new(BinaryArray::from_iter_values(rows)),
            Arc::new(UInt64Array::from(seqs)),
            Arc::new(Int64Array::from_iter_values(windows.iter().map(|w| w.0))),
            Arc::new(Int64Array::from_iter_values(windows.iter().map(|w| w.1))),
        ];
        let batch = RecordBatch::try_new(Arc::new(schema), columns)
            .map_err(|e| Error::arrow("rank snapshot", e))?;
        Ok(StateSnapshot {
            key_groups: Some(range),
            tables: vec![SnapshotTable {
                slices: None,
                name: RANKS_TABLE.into(),
                batches: vec![batch],
            }],
            sink_pre_commit: None,
        })
    }

    fn restore(&mut self, snapshot: &StateSnapshot) -> Result<()> {
        let (owned, _) = self
            .key_groups
            .ok_or_else(|| Error::Internal("rank restored before open".into()))?;
        let bad = || {
            Error::data(
                "rank snapshot",
                "expected columns key_group, key, sort, row, seq, window_end and window_start",
            )
        };
        for table in snapshot.tables.iter().filter(|t| t.name == RANKS_TABLE) {
            for batch in &table.batches {
                if batch.num_columns() != 7 {
                    return Err(bad());
                }
                let key_groups = batch
                    .column(0)
                    .as_primitive_opt::<UInt32Type>()
                    .ok_or_else(bad)?;
                let mask: BooleanArray = key_groups
                    .values()
                    .iter()
                    .map(|&kg| Some(owned.contains(kg)))
                    .collect();
                let kept = arrow::compute::filter_record_batch(batch, &mask)
                    .map_err(|e| Error::arrow("rank restore", e))?;
                let binary = |i: usize| kept.column(i).as_binary_opt::<i32>().ok_or_else(bad);
                let (keys, sorts, rows) = (binary(1)?, binary(2)?, binary(3)?);
                let seqs = kept
                    .column(4)
                    .as_primitive_opt::<arrow::datatypes::UInt64Type>()
                    .ok_or_else(bad)?;
                if keys.null_count() + sorts.null_count() + rows.null_count() > 0 {
                    return Err(bad());
                }
                let window_column = |i: usize| {
                    kept.column(i)
                        .as_primitive_opt::<Int64Type>()
                        .ok_or_else(bad)
                };
                let (ends, starts) = (window_column(5)?, window_column(6)?);
                let key_list: Vec<&[u8]> = keys.iter().flatten().collect();
                for (i, key) in key_list.iter().enumerate() {
                    let window = (ends.value(i), starts.value(i));
                    let set = self.sets.entry(window).or_default();
                    let p = set.partition(key);
                    let seq = seqs.value(i);
                    set.buffers[p as usize].entries.push(Entry {
                        sort: sorts.value(i).to_vec(),
                        row: rows.value(i).to_vec(),
                        seq,
                    });
                    self.next_seq = self.next_seq.max(seq + 1);
                }
            }
        }
        // Snapshot rows come in rank order per partition; sort anyway so a hand-made or
        // merged snapshot cannot break the buffers' invariant.
        let ties = self.ties;
        for set in self.sets.values_mut() {
            for buffer in &mut set.buffers {
                buffer.entries.sort_by(|a, b| ties.compare(a, b));
                buffer.entries.truncate(self.limit);
            }
        }
        Ok(())
    }

    fn report_metrics(&self, metrics: &mut OperatorMetrics) {
        metrics.late_records_dropped = self.late_records;
        metrics.state_keys = self.partition_count() as u64;
        metrics.state_bytes = self
            .sets
            .values()
            .map(PartitionSet::allocated_bytes)
            .sum::<usize>() as u64;
    }
}
