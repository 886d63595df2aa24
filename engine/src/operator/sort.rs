//! Sort: `ORDER BY … [OFFSET n] [LIMIT m]` over a bounded input, and plain `LIMIT`.
//!
//! - With keys and no fetch (a full sort), the operator buffers its input and, at end of input,
//!   sorts it with arrow's `lexsort_to_indices` (multi-column, per-key direction and NULL order),
//!   skips the offset and emits the rest in slices. In a job it keeps within its share of the
//!   managed memory by spilling sorted runs to disk (see *Spilling* below).
//! - With keys and a fetch (top-K), it never holds more than about twice `offset + fetch`
//!   rows plus one batch: whenever the buffer outgrows that bound it is merged down to the
//!   `offset + fetch` best rows (`lexsort_to_indices` with a limit, then one `take`).
//! - Without keys it is a plain limit: rows pass through as they come, the first `offset` are
//!   skipped, and everything after `fetch` rows is dropped. It buffers nothing, so it works on
//!   unbounded streams too.
//!
//! - As an event-time sort (streaming `ORDER BY rowtime`), it buffers rows until a watermark
//!   passes them, then emits them sorted; a row at or behind the current watermark is late and
//!   dropped (counted in the late-records metric).
//!
//! # Spilling
//!
//! A full sort takes its budget from [`OperatorContext::memory`] when it opens
//! ([`crate::spill`]). It measures the rows it buffers (for a slice, only the bytes of the
//! slice) and, once they exceed the budget, sorts them into a *run*, writes the run to a spill
//! file in batches of 8192 rows and frees the buffer.
//!
//! At end of input, a sort that never spilled takes the in-memory path above. Otherwise the
//! rows still buffered are sorted into a last run, and all runs are merged into the output:
//! the merge holds one batch of each run, encodes that batch's sort keys in arrow's row format
//! (whose bytes compare as the keys do, per-key direction and NULL order included), picks the
//! next row with a binary heap of the runs' current rows, and gathers output batches of 8192
//! rows with `interleave`. The offset is skipped and the output columns chosen as in memory.
//! The order equals the in-memory sort's on the keys; rows with equal keys may come in another
//! order.
//!
//! One merge reads at most 64 runs, and fewer when one batch of each would not fit the budget
//! (a run is reckoned at its file reader's buffer plus twice its average batch in the file, for
//! the batch and its encoded keys), but always at least two. With more runs than that, merges
//! of the oldest runs into new spill files come first, until one final merge can take the rest.
//! The last run stays in memory only when it fits in the budget beside one batch of every
//! spilled run; otherwise it is spilled too. A spill file is deleted once merged, and every
//! file is deleted when the operator is dropped or closed. The sizes of all spill files
//! written, intermediate merges included, are the operator's spilled bytes.
//!
//! Keys the row format cannot encode are not spilled: such a sort holds its whole input in
//! memory whatever the budget, and logs a warning when it opens.
//!
//! Buffered rows and the limit's counters are part of the operator's snapshot. A snapshot of a
//! sort that has spilled reads its runs back and holds their rows as well (unsorted, like the
//! buffer); a restored sort buffers them again and spills as its budget requires.

use std::collections::VecDeque;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Int64Array, RecordBatch};
use arrow::compute::{
    SortColumn, SortOptions, concat_batches, filter_record_batch, interleave_record_batch,
    lexsort_to_indices, take_record_batch,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::row::{RowConverter, Rows, SortField};
use tracing::{debug, warn};

use super::{Operator, OperatorContext, Output};
use crate::element::Watermark;
use crate::graph::SortSpec;
use crate::ids::CheckpointId;
use crate::spill::{MemoryBudget, SpillFile, batch_memory};
use crate::state::{SnapshotTable, StateSnapshot};
use crate::{Error, Result};

/// Rows per emitted batch at the end of a sort (slices of the sorted result), per batch of a
/// spilled run and per batch a merge produces.
const EMIT_ROWS: usize = 8192;

/// Runs one merge reads at most. A merge makes `O(log fan-in)` row comparisons per output row
/// and holds a read buffer and a batch per run; 64 keeps both small while one merge still takes
/// 64 budgets' worth of runs. Flink's `taskmanager.runtime.max-fan` (default 128) bounds the
/// same thing.
const MAX_FAN_IN: usize = 64;

const ROWS_TABLE: &str = "rows";
const PROGRESS_TABLE: &str = "progress";

pub struct Sort {
    keys: Vec<(usize, SortOptions)>,
    offset: usize,
    fetch: Option<usize>,
    /// Output column indices, `None` for all.
    output: Option<Vec<usize>>,
    input_schema: SchemaRef,
    output_schema: SchemaRef,
    buffered: Vec<RecordBatch>,
    buffered_rows: usize,
    /// Bytes the buffer holds ([`batch_memory`]); kept by a full sort only.
    buffered_bytes: usize,
    /// A full sort's budget and spilled runs: `Some` once `open` gave it a limited budget.
    spill: Option<Spill>,
    /// At the end of a spilled sort: the merge of its runs and the rows of the offset still
    /// to skip.
    merging: Option<(Merge, usize)>,
    /// Runs one merge reads at most ([`MAX_FAN_IN`]; lowered by tests).
    max_fan_in: usize,
    /// A top-K buffer is merged down once it holds more than this many rows and twice K.
    compact_at: usize,
    /// Plain limit: rows skipped and emitted so far.
    skipped: usize,
    emitted: usize,
    /// Event-time sort: the index of the time column, the last watermark and the late rows.
    event_time: Option<usize>,
    watermark: i64,
    late: u64,
}

impl Sort {
    pub fn try_new(spec: &SortSpec, input: &SchemaRef, output: SchemaRef) -> Result<Self> {
        let index = |name: &str| {
            input.index_of(name).map_err(|_| {
                Error::expr(format!(
                    "sort: unknown column '{name}' (available: {})",
                    crate::graph::describe_columns(input)
                ))
            })
        };
        let keys = spec
            .keys
            .iter()
            .map(|k| Ok((index(&k.column)?, k.options())))
            .collect::<Result<Vec<_>>>()?;
        let output_indices = spec
            .output
            .as_ref()
            .map(|columns| columns.iter().map(|c| index(c)).collect::<Result<Vec<_>>>())
            .transpose()?;
        let to_usize = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
        Ok(Sort {
            keys,
            offset: to_usize(spec.offset),
            fetch: spec.fetch.map(to_usize),
            output: output_indices,
            input_schema: input.clone(),
            output_schema: output,
            buffered: Vec::new(),
            buffered_rows: 0,
            buffered_bytes: 0,
            spill: None,
            merging: None,
            max_fan_in: MAX_FAN_IN,
            compact_at: EMIT_ROWS,
            skipped: 0,
            emitted: 0,
            event_time: spec
                .event_time
                .then(|| keys_first(&spec.keys).map(index))
                .flatten()
                .transpose()?,
            watermark: i64::MIN,
            late: 0,
        })
    }

    /// The event times of `batch` in epoch milliseconds (nulls stay null).
    fn times(&self, batch: &RecordBatch, column: usize) -> Result<Int64Array> {
        let millis = arrow::compute::cast(
            batch.column(column),
            &DataType::Timestamp(arrow::datatypes::TimeUnit::Millisecond, None),
        )
        .and_then(|t| arrow::compute::cast(&t, &DataType::Int64))
        .map_err(|e| Error::arrow("sort: event time", e))?;
        Ok(millis.as_primitive::<arrow::datatypes::Int64Type>().clone())
    }

    /// Rows of `batch` whose time is at most `watermark` (NULL times count as due).
    fn due(&self, batch: &RecordBatch, column: usize, watermark: i64) -> Result<BooleanArray> {
        let err = |e| Error::arrow("sort: event time", e);
        let times = self.times(batch, column)?;
        let le = arrow::compute::kernels::cmp::lt_eq(&times, &Int64Array::new_scalar(watermark))
            .map_err(err)?;
        let nulls = arrow::compute::is_null(&times).map_err(err)?;
        if times.null_count() == 0 {
            return Ok(le);
        }
        arrow::compute::or(&arrow::compute::prep_null_mask_filter(&le), &nulls).map_err(err)
    }

    /// `offset + fetch`: the leading rows that can ever be emitted.
    fn kept(&self) -> Option<usize> {
        self.fetch.map(|f| f.saturating_add(self.offset))
    }

    fn project(&self, batch: RecordBatch) -> Result<RecordBatch> {
        match &self.output {
            None => Ok(batch),
            Some(indices) => {
                let columns: Vec<ArrayRef> =
                    indices.iter().map(|&i| batch.column(i).clone()).collect();
                RecordBatch::try_new(self.output_schema.clone(), columns)
                    .map_err(|e| Error::arrow("sort output", e))
            }
        }
    }

    /// Sorts the buffer into one batch, keeping at most `limit` leading rows.
    fn sorted(&self, limit: Option<usize>) -> Result<RecordBatch> {
        let all = concat_batches(&self.input_schema, &self.buffered)
            .map_err(|e| Error::arrow("sort: concatenate", e))?;
        let columns: Vec<SortColumn> = self
            .keys
            .iter()
            .map(|&(i, options)| SortColumn {
                values: all.column(i).clone(),
                options: Some(options),
            })
            .collect();
        let limit = limit.filter(|&l| l < all.num_rows());
        let indices = lexsort_to_indices(&columns, limit).map_err(|e| Error::arrow("sort", e))?;
        take_record_batch(&all, &indices).map_err(|e| Error::arrow("sort: take", e))
    }

    /// Merges the buffer down to the `kept` best rows.
    fn compact(&mut self, kept: usize) -> Result<()> {
        let best = self.sorted(Some(kept))?;
        self.buffered_rows = best.num_rows();
        self.buffered = vec![best];
        Ok(())
    }

    /// Keys, no fetch, not event time: the sort that buffers all its input, and may spill.
    fn is_full_sort(&self) -> bool {
        !self.keys.is_empty() && self.fetch.is_none() && self.event_time.is_none()
    }

    /// Adds `batch` to a full sort's buffer, and spills the buffer as a sorted run once it
    /// holds more than the budget.
    fn buffer_full(&mut self, batch: RecordBatch) -> Result<()> {
        self.buffered_bytes += batch_memory(&batch);
        self.buffered_rows += batch.num_rows();
        self.buffered.push(batch);
        if self
            .spill
            .as_ref()
            .is_some_and(|spill| spill.memory.exceeded_by(self.buffered_bytes))
        {
            self.spill_buffer()?;
        }
        Ok(())
    }

    /// Writes the buffer to a spill file as a sorted run and empties it. Only the key columns
    /// are concatenated (to sort them); the rows are gathered from the buffered batches
    /// [`EMIT_ROWS`] at a time, so spilling takes little memory beyond the buffer itself.
    fn spill_buffer(&mut self) -> Result<()> {
        let columns = self
            .keys
            .iter()
            .map(|&(i, options)| {
                let parts: Vec<&dyn Array> =
                    self.buffered.iter().map(|b| b.column(i).as_ref()).collect();
                let values = arrow::compute::concat(&parts)
                    .map_err(|e| Error::arrow("sort: concatenate keys", e))?;
                Ok(SortColumn {
                    values,
                    options: Some(options),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let order = lexsort_to_indices(&columns, None).map_err(|e| Error::arrow("sort", e))?;
        drop(columns);
        let mut starts = Vec::with_capacity(self.buffered.len());
        let mut at = 0;
        for batch in &self.buffered {
            starts.push(at);
            at += batch.num_rows();
        }
        let batches: Vec<&RecordBatch> = self.buffered.iter().collect();
        let mut positions: Vec<(usize, usize)> = Vec::with_capacity(EMIT_ROWS);
        let chunks = order.values().chunks(EMIT_ROWS).map(|chunk| {
            positions.clear();
            positions.extend(chunk.iter().map(|&row| {
                let row = row as usize;
                let batch = starts.partition_point(|&start| start <= row) - 1;
                (batch, row - starts[batch])
            }));
            arrow::compute::interleave_record_batch(&batches, &positions)
                .map_err(|e| Error::arrow("sort: gather a run", e))
        });
        let spill = self.spill.as_mut().expect("a spilling sort");
        let rows = order.len();
        let file = write_spill_file(&spill.memory, "sort run", &self.input_schema, chunks)?;
        spill.add_run(file, rows);
        self.clear_buffer();
        Ok(())
    }

    fn clear_buffer(&mut self) {
        self.buffered.clear();
        self.buffered_rows = 0;
        self.buffered_bytes = 0;
    }

    /// End of input of a full sort that has spilled: starts merging the runs and the buffer;
    /// [`Operator::finish_more`] emits the merged rows a batch at a time.
    fn finish_merged(&mut self) -> Result<()> {
        let last = if self.buffered_rows > 0 {
            Some(self.sorted(None)?)
        } else {
            None
        };
        self.clear_buffer();
        let spill = self
            .spill
            .as_mut()
            .expect("only a sort with spilled runs merges");
        let (runs, last) =
            spill.merge_down(&self.input_schema, &self.keys, last, self.max_fan_in)?;
        let merge = Merge::try_new(spill.converter.clone(), self.keys.clone(), runs, last)?;
        self.merging = Some((merge, self.offset));
        Ok(())
    }

    /// The next merged batch after the offset, projected; `None` once the merge is done.
    fn next_merged(&mut self) -> Result<Option<RecordBatch>> {
        let Some((merge, skip)) = &mut self.merging else {
            return Ok(None);
        };
        for batch in merge.by_ref() {
            let batch = batch?;
            let rows = batch.num_rows();
            if *skip >= rows {
                *skip -= rows;
                continue;
            }
            let batch = batch.slice(*skip, rows - *skip);
            *skip = 0;
            return self.project(batch).map(Some);
        }
        self.merging = None;
        Ok(None)
    }

    fn pass_limit(&mut self, batch: RecordBatch, out: &mut Output) -> Result<()> {
        let mut start = 0;
        if self.skipped < self.offset {
            let skip = (self.offset - self.skipped).min(batch.num_rows());
            self.skipped += skip;
            start = skip;
        }
        let available = batch.num_rows() - start;
        let wanted = match self.fetch {
            Some(fetch) => fetch.saturating_sub(self.emitted).min(available),
            None => available,
        };
        if wanted > 0 {
            self.emitted += wanted;
            let slice = if start == 0 && wanted == batch.num_rows() {
                batch
            } else {
                batch.slice(start, wanted)
            };
            out.push_batch(self.project(slice)?);
        }
        Ok(())
    }
}

/// The first key's column name.
fn keys_first(keys: &[crate::graph::SortKey]) -> Option<&str> {
    keys.first().map(|k| k.column.as_str())
}

impl Operator for Sort {
    fn open(&mut self, ctx: &OperatorContext) -> Result<()> {
        if !self.is_full_sort() || ctx.memory.limit().is_none() {
            return Ok(());
        }
        let fields = self
            .keys
            .iter()
            .map(|&(i, options)| {
                SortField::new_with_options(self.input_schema.field(i).data_type().clone(), options)
            })
            .collect();
        match RowConverter::new(fields) {
            Ok(converter) => {
                self.spill = Some(Spill {
                    vertex: ctx.vertex.clone(),
                    memory: ctx.memory.clone(),
                    converter: Arc::new(converter),
                    runs: Vec::new(),
                    spilled_bytes: 0,
                    merges: 0,
                });
            }
            Err(error) => warn!(
                vertex = %ctx.vertex,
                error = %error,
                "sort keys cannot be spilled; the sort holds its whole input in memory"
            ),
        }
        Ok(())
    }

    fn process_batch(&mut self, _input: usize, batch: RecordBatch, out: &mut Output) -> Result<()> {
        if let Some(column) = self.event_time {
            // Rows at or behind the watermark would come out of order: late, dropped.
            let batch = if self.watermark == i64::MIN {
                batch
            } else {
                let late = self.due(&batch, column, self.watermark)?;
                let late_rows = late.true_count();
                if late_rows == 0 {
                    batch
                } else {
                    self.late += late_rows as u64;
                    let keep = arrow::compute::not(&late)
                        .map_err(|e| Error::arrow("sort: late rows", e))?;
                    filter_record_batch(&batch, &keep)
                        .map_err(|e| Error::arrow("sort: late rows", e))?
                }
            };
            if batch.num_rows() > 0 {
                self.buffered_rows += batch.num_rows();
                self.buffered.push(batch);
            }
            return Ok(());
        }
        if self.keys.is_empty() {
            return self.pass_limit(batch, out);
        }
        if self.is_full_sort() {
            return self.buffer_full(batch);
        }
        let kept = self.kept();
        if kept == Some(0) {
            return Ok(());
        }
        self.buffered_rows += batch.num_rows();
        self.buffered.push(batch);
        if let Some(kept) = kept
            && self.buffered_rows > kept.saturating_mul(2).max(self.compact_at)
        {
            self.compact(kept)?;
        }
        Ok(())
    }

    fn process_watermark(&mut self, watermark: Watermark, out: &mut Output) -> Result<()> {
        // A full sort emits every row at the end: only the final watermark goes on (after
        // them), so no event-time operator downstream sees its rows as late.
        if self.is_full_sort() {
            if watermark == Watermark::MAX {
                out.push_watermark(watermark);
            }
            return Ok(());
        }
        if let Some(column) = self.event_time
            && self.buffered_rows > 0
        {
            let all = concat_batches(&self.input_schema, &self.buffered)
                .map_err(|e| Error::arrow("sort: concatenate", e))?;
            let due = self.due(&all, column, watermark.0)?;
            let ready = filter_record_batch(&all, &due).map_err(|e| Error::arrow("sort", e))?;
            let waiting = filter_record_batch(
                &all,
                &arrow::compute::not(&due).map_err(|e| Error::arrow("sort", e))?,
            )
            .map_err(|e| Error::arrow("sort", e))?;
            self.buffered_rows = waiting.num_rows();
            self.buffered = if waiting.num_rows() > 0 {
                vec![waiting]
            } else {
                Vec::new()
            };
            if ready.num_rows() > 0 {
                let pending = std::mem::replace(&mut self.buffered, vec![ready]);
                let sorted = self.sorted(None)?;
                self.buffered = pending;
                let mut at = 0;
                while at < sorted.num_rows() {
                    let len = EMIT_ROWS.min(sorted.num_rows() - at);
                    out.push_batch(self.project(sorted.slice(at, len))?);
                    at += len;
                }
            }
        }
        self.watermark = self.watermark.max(watermark.0);
        out.push_watermark(watermark);
        Ok(())
    }

    fn report_metrics(&self, metrics: &mut crate::runtime::OperatorMetrics) {
        metrics.late_records_dropped += self.late;
        if let Some(spill) = &self.spill {
            metrics.spilled_bytes += spill.spilled_bytes;
        }
    }

    fn finish(&mut self, out: &mut Output) -> Result<()> {
        if self.keys.is_empty() {
            return Ok(());
        }
        if self
            .spill
            .as_ref()
            .is_some_and(|spill| !spill.runs.is_empty())
        {
            return self.finish_merged();
        }
        if self.buffered_rows == 0 {
            return Ok(());
        }
        let sorted = self.sorted(self.kept())?;
        self.clear_buffer();
        let start = self.offset.min(sorted.num_rows());
        let end = match self.fetch {
            Some(fetch) => start.saturating_add(fetch).min(sorted.num_rows()),
            None => sorted.num_rows(),
        };
        let mut at = start;
        while at < end {
            let len = EMIT_ROWS.min(end - at);
            out.push_batch(self.project(sorted.slice(at, len))?);
            at += len;
        }
        Ok(())
    }

    fn finish_more(&mut self, out: &mut Output) -> Result<bool> {
        match self.next_merged()? {
            Some(batch) => {
                out.push_batch(batch);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn snapshot(&mut self, _checkpoint: CheckpointId) -> Result<StateSnapshot> {
        let progress_schema = Arc::new(Schema::new(vec![
            Field::new("skipped", DataType::Int64, false),
            Field::new("emitted", DataType::Int64, false),
        ]));
        let progress = RecordBatch::try_new(
            progress_schema,
            vec![
                Arc::new(Int64Array::from(vec![self.skipped as i64])),
                Arc::new(Int64Array::from(vec![self.emitted as i64])),
            ],
        )
        .map_err(|e| Error::arrow("sort snapshot", e))?;
        let mut rows = self.buffered.clone();
        if let Some(spill) = &self.spill {
            // Spilled runs are rows of the input like the buffer: the snapshot holds them too.
            for run in &spill.runs {
                for batch in run.read()? {
                    rows.push(batch?);
                }
            }
        }
        Ok(StateSnapshot {
            key_groups: None,
            tables: vec![
                SnapshotTable {
                    slices: None,
                    name: ROWS_TABLE.into(),
                    batches: rows,
                },
                SnapshotTable {
                    slices: None,
                    name: PROGRESS_TABLE.into(),
                    batches: vec![progress],
                },
            ],
            sink_pre_commit: None,
        })
    }

    fn restore(&mut self, snapshot: &StateSnapshot) -> Result<()> {
        for table in &snapshot.tables {
            match table.name.as_str() {
                ROWS_TABLE => {
                    for batch in &table.batches {
                        if batch.schema().fields() != self.input_schema.fields() {
                            return Err(Error::data(
                                "sort snapshot",
                                "buffered rows do not match the input schema",
                            ));
                        }
                        if self.is_full_sort() {
                            self.buffer_full(batch.clone())?;
                        } else {
                            self.buffered_rows += batch.num_rows();
                            self.buffered.push(batch.clone());
                        }
                    }
                }
                PROGRESS_TABLE => {
                    for batch in &table.batches {
                        let value = |i: usize| -> Result<usize> {
                            batch
                                .column(i)
                                .as_any()
                                .downcast_ref::<Int64Array>()
                                .filter(|a| !a.is_empty())
                                .map(|a| a.value(0).max(0) as usize)
                                .ok_or_else(|| {
                                    Error::data("sort snapshot", "expected skipped, emitted")
                                })
                        };
                        if batch.num_columns() != 2 {
                            return Err(Error::data("sort snapshot", "expected skipped, emitted"));
                        }
                        self.skipped += value(0)?;
                        self.emitted += value(1)?;
                    }
                }
                other => {
                    return Err(Error::data(
                        "sort snapshot",
                        format!("unknown table '{other}'"),
                    ));
                }
            }
        }
        Ok(())
    }

    fn close(&mut self) -> Result<()> {
        if let Some(spill) = &mut self.spill {
            // Dropping a spill file deletes it.
            spill.runs.clear();
        }
        Ok(())
    }
}

/// What a full sort needs to spill: its budget, the encoding of its keys for merging, and the
/// sorted runs written so far.
struct Spill {
    /// The vertex, for log fields.
    vertex: String,
    memory: MemoryBudget,
    converter: Arc<RowConverter>,
    /// Sorted runs, oldest first.
    runs: Vec<SpillFile>,
    /// Bytes of all spill files written, runs and intermediate merges.
    spilled_bytes: u64,
    /// Intermediate merges done (merges of runs into a new spill file).
    merges: usize,
}

impl Spill {
    /// Writes the sorted `run` to a spill file in batches of [`EMIT_ROWS`].
    fn write_run(&mut self, schema: &SchemaRef, run: RecordBatch) -> Result<()> {
        let rows = run.num_rows();
        let file = write_spill_file(
            &self.memory,
            "sort run",
            schema,
            super::slices(run, EMIT_ROWS).map(Ok),
        )?;
        self.add_run(file, rows);
        Ok(())
    }

    /// Keeps a written run.
    fn add_run(&mut self, file: SpillFile, rows: usize) {
        self.spilled_bytes += file.bytes();
        debug!(
            vertex = %self.vertex,
            rows,
            bytes = file.bytes(),
            runs = self.runs.len() + 1,
            "sort spilled a run"
        );
        self.runs.push(file);
    }

    /// Merges the oldest runs into new spill files until one merge within the budget can take
    /// the rest; returns what that final merge reads: spilled runs, and the in-memory `last`
    /// run if it still fits beside them (else it is spilled as well).
    fn merge_down(
        &mut self,
        schema: &SchemaRef,
        keys: &[(usize, SortOptions)],
        last: Option<RecordBatch>,
        max_fan_in: usize,
    ) -> Result<(Vec<SpillFile>, Option<RecordBatch>)> {
        let limit = self.memory.limit().unwrap_or(usize::MAX);
        let fan_in =
            |runs: &[SpillFile]| (limit / run_merge_bytes(runs).max(1)).clamp(2, max_fan_in.max(2));
        let last = match last {
            Some(run)
                if self.runs.len() < fan_in(&self.runs)
                    && batch_memory(&run).saturating_add(
                        run_merge_bytes(&self.runs).saturating_mul(self.runs.len()),
                    ) <= limit =>
            {
                Some(run)
            }
            Some(run) => {
                self.write_run(schema, run)?;
                None
            }
            None => None,
        };
        let mut runs: VecDeque<SpillFile> = std::mem::take(&mut self.runs).into();
        loop {
            let fan_in = fan_in(runs.make_contiguous());
            if runs.len() <= fan_in {
                break;
            }
            // Merge just enough runs for the rest to fit one final merge, at most `fan_in`.
            let merged = fan_in.min(runs.len() - fan_in + 1);
            let group: Vec<SpillFile> = runs.drain(..merged).collect();
            let rows: usize = group.iter().map(SpillFile::rows).sum();
            let merge = Merge::try_new(self.converter.clone(), keys.to_vec(), group, None)?;
            let file = write_spill_file(&self.memory, "sort merge", schema, merge)?;
            self.spilled_bytes += file.bytes();
            self.merges += 1;
            debug!(
                vertex = %self.vertex,
                runs = merged,
                rows,
                bytes = file.bytes(),
                "sort merged runs into a new spill file"
            );
            runs.push_back(file);
        }
        Ok((runs.into(), last))
    }
}

/// The memory one merge input takes, for the largest of `runs`: its file reader's buffer, one
/// batch and that batch's encoded keys (reckoned as large as the batch, whose size is its
/// average in the file).
fn run_merge_bytes(runs: &[SpillFile]) -> usize {
    runs.iter()
        .map(|run| {
            let batch = run.bytes().div_ceil(run.batches().max(1) as u64);
            crate::spill::READ_BUFFER_BYTES
                .saturating_add(usize::try_from(batch.saturating_mul(2)).unwrap_or(usize::MAX))
        })
        .max()
        .unwrap_or(0)
}

/// Writes `batches` to a new spill file.
fn write_spill_file(
    memory: &MemoryBudget,
    what: &str,
    schema: &SchemaRef,
    batches: impl IntoIterator<Item = Result<RecordBatch>>,
) -> Result<SpillFile> {
    let mut writer = memory.spill_writer(what, schema)?;
    for batch in batches {
        writer.write(&batch?)?;
    }
    writer.finish()
}

/// A k-way merge of sorted runs into batches of [`EMIT_ROWS`] rows, in key order.
///
/// It holds the current batch of each run with the batch's keys encoded as [`Rows`]; a binary
/// min-heap of run indices, ordered by each run's next row, picks the next output row. The
/// picked positions are gathered into an output batch with one `interleave` per column, so no
/// row is copied or allocated on its own.
struct Merge {
    converter: Arc<RowConverter>,
    keys: Vec<(usize, SortOptions)>,
    cursors: Vec<Cursor>,
    /// Indices into `cursors` of the runs not yet exhausted, a min-heap by next row.
    heap: Vec<usize>,
    /// The batches `pending` points into; every live cursor's current batch is among them.
    batches: Vec<RecordBatch>,
    /// The next output batch: (index into `batches`, row).
    pending: Vec<(usize, usize)>,
}

/// Where a merge stands in one run.
struct Cursor {
    /// The run's spill file, dropped (and so deleted) once read to the end; `None` for the
    /// in-memory run.
    file: Option<SpillFile>,
    batches: Box<dyn Iterator<Item = Result<RecordBatch>> + Send>,
    /// The encoded keys of the current batch.
    rows: Rows,
    /// The current batch's index in `Merge::batches`.
    slot: usize,
    /// The next row of the current batch.
    at: usize,
}

impl Merge {
    fn try_new(
        converter: Arc<RowConverter>,
        keys: Vec<(usize, SortOptions)>,
        files: Vec<SpillFile>,
        last: Option<RecordBatch>,
    ) -> Result<Self> {
        let mut cursors = Vec::with_capacity(files.len() + 1);
        for file in files {
            let batches = Box::new(file.read()?);
            cursors.push(Cursor {
                file: Some(file),
                batches,
                rows: converter.empty_rows(EMIT_ROWS, 0),
                slot: 0,
                at: 0,
            });
        }
        if let Some(last) = last {
            cursors.push(Cursor {
                file: None,
                batches: Box::new(super::slices(last, EMIT_ROWS).map(Ok)),
                rows: converter.empty_rows(EMIT_ROWS, 0),
                slot: 0,
                at: 0,
            });
        }
        let mut merge = Merge {
            converter,
            keys,
            heap: Vec::with_capacity(cursors.len()),
            batches: Vec::with_capacity(cursors.len()),
            pending: Vec::with_capacity(EMIT_ROWS),
            cursors,
        };
        for c in 0..merge.cursors.len() {
            if merge.load(c)? {
                merge.heap.push(c);
            }
        }
        for i in (0..merge.heap.len() / 2).rev() {
            merge.sift_down(i);
        }
        Ok(merge)
    }

    /// Moves cursor `c` to the next non-empty batch of its run; `false` when the run is
    /// exhausted.
    fn load(&mut self, c: usize) -> Result<bool> {
        let cursor = &mut self.cursors[c];
        for batch in cursor.batches.by_ref() {
            let batch = batch?;
            if batch.num_rows() == 0 {
                continue;
            }
            let columns: Vec<ArrayRef> = self
                .keys
                .iter()
                .map(|&(i, _)| batch.column(i).clone())
                .collect();
            cursor.rows.clear();
            self.converter
                .append(&mut cursor.rows, &columns)
                .map_err(|e| Error::arrow("sort merge: encode keys", e))?;
            cursor.at = 0;
            cursor.slot = self.batches.len();
            self.batches.push(batch);
            return Ok(true);
        }
        cursor.file = None;
        Ok(false)
    }

    /// Whether cursor `a`'s next row comes before cursor `b`'s (ties go to the older run).
    fn less(&self, a: usize, b: usize) -> bool {
        let (x, y) = (&self.cursors[a], &self.cursors[b]);
        x.rows.row(x.at).cmp(&y.rows.row(y.at)).then(a.cmp(&b)) == std::cmp::Ordering::Less
    }

    fn sift_down(&mut self, mut i: usize) {
        let n = self.heap.len();
        loop {
            let left = 2 * i + 1;
            if left >= n {
                return;
            }
            let right = left + 1;
            let child = if right < n && self.less(self.heap[right], self.heap[left]) {
                right
            } else {
                left
            };
            if !self.less(self.heap[child], self.heap[i]) {
                return;
            }
            self.heap.swap(i, child);
            i = child;
        }
    }

    fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        while self.pending.len() < EMIT_ROWS
            && let Some(&c) = self.heap.first()
        {
            let cursor = &mut self.cursors[c];
            self.pending.push((cursor.slot, cursor.at));
            cursor.at += 1;
            if cursor.at == cursor.rows.num_rows() && !self.load(c)? {
                self.heap.swap_remove(0);
            }
            self.sift_down(0);
        }
        if self.pending.is_empty() {
            return Ok(None);
        }
        let batches: Vec<&RecordBatch> = self.batches.iter().collect();
        let merged = interleave_record_batch(&batches, &self.pending)
            .map_err(|e| Error::arrow("sort merge: interleave", e))?;
        self.pending.clear();
        // Only the live cursors' current batches are needed from here on.
        let mut current = Vec::with_capacity(self.heap.len());
        for &c in &self.heap {
            let cursor = &mut self.cursors[c];
            current.push(self.batches[cursor.slot].clone());
            cursor.slot = current.len() - 1;
        }
        self.batches = current;
        Ok(Some(merged))
    }
}

impl Iterator for Merge {
    type Item = Result<RecordBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_batch().transpose()
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Array, AsArray, Int32Array, StringArray};
    use arrow::datatypes::Int32Type;
    use proptest::prelude::*;

    use super::*;
    use crate::element::StreamElement;
    use crate::graph::SortKey;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int32, true),
            Field::new("b", DataType::Utf8, true),
        ]))
    }

    fn batch(a: Vec<Option<i32>>, b: Vec<Option<&str>>) -> RecordBatch {
        RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(Int32Array::from(a)),
                Arc::new(StringArray::from(b)),
            ],
        )
        .unwrap()
    }

    fn run(spec: &SortSpec, batches: Vec<RecordBatch>) -> Vec<(Option<i32>, Option<String>)> {
        let output = spec.output_schema(&schema()).unwrap();
        let mut sort = Sort::try_new(spec, &schema(), output).unwrap();
        // Merge the top-K buffer as often as possible, to test the merging.
        sort.compact_at = 1;
        let mut out = Output::default();
        for b in batches {
            sort.process_batch(0, b, &mut out).unwrap();
        }
        sort.finish(&mut out).unwrap();
        while sort.finish_more(&mut out).unwrap() {}
        let mut rows = Vec::new();
        for element in out.drain() {
            let StreamElement::Batch(b) = element else {
                continue;
            };
            let a = b.column(0).as_primitive::<Int32Type>();
            let s = b.column(1).as_string::<i32>();
            for i in 0..b.num_rows() {
                rows.push((
                    a.is_valid(i).then(|| a.value(i)),
                    s.is_valid(i).then(|| s.value(i).to_string()),
                ));
            }
        }
        rows
    }

    fn spec(keys: Vec<SortKey>, offset: u64, fetch: Option<u64>) -> SortSpec {
        SortSpec {
            keys,
            offset,
            fetch,
            output: None,
            event_time: false,
        }
    }

    #[test]
    fn nulls_first_ascending_last_descending() {
        let input = || {
            vec![
                batch(vec![Some(2), None], vec![Some("x"), Some("y")]),
                batch(vec![Some(1)], vec![None]),
            ]
        };
        let asc = run(&spec(vec![SortKey::new("a", false)], 0, None), input());
        assert_eq!(
            asc.iter().map(|r| r.0).collect::<Vec<_>>(),
            vec![None, Some(1), Some(2)]
        );
        let desc = run(&spec(vec![SortKey::new("a", true)], 0, None), input());
        assert_eq!(
            desc.iter().map(|r| r.0).collect::<Vec<_>>(),
            vec![Some(2), Some(1), None]
        );
    }

    #[test]
    fn plain_limit_passes_rows_through() {
        let rows = run(
            &spec(Vec::new(), 1, Some(2)),
            vec![
                batch(vec![Some(1), Some(2)], vec![None, None]),
                batch(vec![Some(3), Some(4)], vec![None, None]),
            ],
        );
        assert_eq!(
            rows.iter().map(|r| r.0).collect::<Vec<_>>(),
            vec![Some(2), Some(3)]
        );
    }

    #[test]
    fn top_k_snapshot_restores_buffer() {
        let s = spec(vec![SortKey::new("a", true)], 0, Some(2));
        let output = s.output_schema(&schema()).unwrap();
        let mut first = Sort::try_new(&s, &schema(), output.clone()).unwrap();
        let mut out = Output::default();
        first
            .process_batch(0, batch(vec![Some(5), Some(9)], vec![None, None]), &mut out)
            .unwrap();
        let snapshot = first.snapshot(CheckpointId(1)).unwrap();
        let mut second = Sort::try_new(&s, &schema(), output).unwrap();
        second.restore(&snapshot).unwrap();
        second
            .process_batch(0, batch(vec![Some(7)], vec![None]), &mut out)
            .unwrap();
        second.finish(&mut out).unwrap();
        while second.finish_more(&mut out).unwrap() {}
        let StreamElement::Batch(b) = &out.drain()[0] else {
            panic!("expected a batch");
        };
        assert_eq!(
            b.column(0).as_primitive::<Int32Type>().values().to_vec(),
            vec![9, 7]
        );
    }

    #[test]
    fn event_time_sort_emits_on_watermarks_and_drops_late_rows() {
        use arrow::array::TimestampMillisecondArray;
        let schema = Arc::new(Schema::new(vec![
            Field::new(
                "ts",
                DataType::Timestamp(arrow::datatypes::TimeUnit::Millisecond, None),
                true,
            ),
            Field::new("v", DataType::Int32, false),
        ]));
        let batch = |ts: Vec<Option<i64>>, v: Vec<i32>| {
            RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(TimestampMillisecondArray::from(ts)),
                    Arc::new(Int32Array::from(v)),
                ],
            )
            .unwrap()
        };
        let spec = SortSpec {
            keys: vec![SortKey::new("ts", false), SortKey::new("v", true)],
            offset: 0,
            fetch: None,
            output: Some(vec!["v".into()]),
            event_time: true,
        };
        let output = spec.output_schema(&schema).unwrap();
        let mut sort = Sort::try_new(&spec, &schema, output).unwrap();
        let mut out = Output::default();
        let values = |out: &mut Output| -> Vec<i32> {
            out.drain()
                .into_iter()
                .filter_map(|e| match e {
                    StreamElement::Batch(b) => {
                        Some(b.column(0).as_primitive::<Int32Type>().values().to_vec())
                    }
                    _ => None,
                })
                .flatten()
                .collect()
        };
        sort.process_batch(
            0,
            batch(vec![Some(30), Some(10), Some(20)], vec![3, 1, 2]),
            &mut out,
        )
        .unwrap();
        sort.process_batch(0, batch(vec![Some(10)], vec![9]), &mut out)
            .unwrap();
        sort.process_watermark(Watermark(20), &mut out).unwrap();
        assert_eq!(values(&mut out), vec![9, 1, 2]);
        // 15 is behind the watermark: late.
        sort.process_batch(0, batch(vec![Some(15), Some(25)], vec![5, 6]), &mut out)
            .unwrap();
        assert_eq!(sort.late, 1);
        sort.process_watermark(Watermark(i64::MAX), &mut out)
            .unwrap();
        assert_eq!(values(&mut out), vec![6, 3]);
        let bad = SortSpec {
            keys: vec![SortKey::new("ts", true)],
            ..spec
        };
        assert!(bad.output_schema(&schema).is_err());
    }

    /// The reference: a stable sort of all rows with the same comparator, then skip/take.
    fn reference(
        rows: &[(Option<i32>, Option<String>)],
        a_desc: bool,
        b_desc: bool,
        nulls_first: bool,
        offset: usize,
        fetch: Option<usize>,
    ) -> Vec<(Option<i32>, Option<String>)> {
        fn cmp<T: Ord>(
            x: &Option<T>,
            y: &Option<T>,
            desc: bool,
            nulls_first: bool,
        ) -> std::cmp::Ordering {
            use std::cmp::Ordering::*;
            match (x, y) {
                (None, None) => Equal,
                (None, Some(_)) => {
                    if nulls_first {
                        Less
                    } else {
                        Greater
                    }
                }
                (Some(_), None) => {
                    if nulls_first {
                        Greater
                    } else {
                        Less
                    }
                }
                (Some(x), Some(y)) => {
                    if desc {
                        y.cmp(x)
                    } else {
                        x.cmp(y)
                    }
                }
            }
        }
        let mut sorted = rows.to_vec();
        sorted.sort_by(|x, y| {
            cmp(&x.0, &y.0, a_desc, nulls_first).then(cmp(&x.1, &y.1, b_desc, nulls_first))
        });
        sorted
            .into_iter()
            .skip(offset)
            .take(fetch.unwrap_or(usize::MAX))
            .collect()
    }

    proptest! {
        #[test]
        fn sorts_like_the_reference(
            rows in proptest::collection::vec(
                (proptest::option::of(0..5i32), proptest::option::of("[a-c]{0,2}")),
                0..60,
            ),
            split in 1usize..20,
            a_desc: bool,
            b_desc: bool,
            nulls_first: bool,
            offset in 0usize..5,
            fetch in proptest::option::of(0usize..10),
        ) {
            let batches: Vec<RecordBatch> = rows
                .chunks(split)
                .map(|chunk| {
                    batch(
                        chunk.iter().map(|r| r.0).collect(),
                        chunk.iter().map(|r| r.1.as_deref()).collect(),
                    )
                })
                .collect();
            let keys = vec![
                SortKey::new("a", a_desc).with_nulls_first(nulls_first),
                SortKey::new("b", b_desc).with_nulls_first(nulls_first),
            ];
            let got = run(&spec(keys, offset as u64, fetch.map(|f| f as u64)), batches);
            let want = reference(&rows, a_desc, b_desc, nulls_first, offset, fetch);
            // Rows equal on both keys are whole rows here, so the order is fully determined.
            prop_assert_eq!(got, want);
        }
    }
}

#[cfg(test)]
mod spill_tests {
    use std::path::Path;

    use arrow::array::{Float64Array, Int32Array, Int64Array, StringArray};
    use arrow::util::display::array_value_to_string;
    use proptest::prelude::*;

    use super::*;
    use crate::element::StreamElement;
    use crate::graph::SortKey;
    use crate::ids::SubtaskIndex;
    use crate::runtime::OperatorMetrics;
    use crate::state::KeyGroupRange;

    /// A deterministic xorshift generator for test data.
    struct Xorshift(u64);

    impl Xorshift {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n
        }
    }

    /// `id` numbers the rows; the other columns repeat values often, to make ties.
    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("i", DataType::Int64, false),
            Field::new("s", DataType::Utf8, true),
            Field::new("d", DataType::Int32, true),
            Field::new("f", DataType::Float64, true),
        ]))
    }

    fn input(seed: u64, batches: usize, rows: usize) -> Vec<RecordBatch> {
        let mut random = Xorshift(seed);
        let floats = [
            f64::NAN,
            -0.0,
            0.0,
            f64::INFINITY,
            f64::NEG_INFINITY,
            1.5,
            -2.5,
        ];
        (0..batches)
            .map(|b| {
                let ids = (0..rows).map(|r| (b * rows + r) as i64);
                let i: Vec<i64> = (0..rows).map(|_| random.below(1000) as i64 - 500).collect();
                let s: Vec<Option<String>> = (0..rows)
                    .map(|_| {
                        (random.below(8) != 0).then(|| {
                            let len = random.below(6) as usize;
                            (0..len)
                                .map(|_| char::from(b'a' + random.below(4) as u8))
                                .collect()
                        })
                    })
                    .collect();
                let d: Vec<Option<i32>> = (0..rows)
                    .map(|_| (random.below(5) != 0).then(|| random.below(20) as i32))
                    .collect();
                let f: Vec<Option<f64>> = (0..rows)
                    .map(|_| {
                        (random.below(10) != 0)
                            .then(|| floats[random.below(floats.len() as u64) as usize])
                    })
                    .collect();
                RecordBatch::try_new(
                    schema(),
                    vec![
                        Arc::new(Int64Array::from_iter_values(ids)),
                        Arc::new(Int64Array::from(i)),
                        Arc::new(StringArray::from(s)),
                        Arc::new(Int32Array::from(d)),
                        Arc::new(Float64Array::from(f)),
                    ],
                )
                .unwrap()
            })
            .collect()
    }

    fn context(input: SchemaRef, output: SchemaRef, memory: MemoryBudget) -> OperatorContext {
        OperatorContext {
            vertex: "sort".into(),
            subtask: SubtaskIndex(0),
            parallelism: 1,
            max_parallelism: 128,
            key_groups: KeyGroupRange::for_subtask(128, 1, 0),
            input_schemas: vec![input],
            output_schema: output,
            incremental_checkpoints: false,
            checkpointing: false,
            memory,
        }
    }

    fn open(spec: &SortSpec, schema: &SchemaRef, memory: MemoryBudget) -> Sort {
        let output = spec.output_schema(schema).unwrap();
        let mut sort = Sort::try_new(spec, schema, output.clone()).unwrap();
        sort.open(&context(schema.clone(), output, memory)).unwrap();
        sort
    }

    fn batches(out: &mut Output) -> Vec<RecordBatch> {
        out.drain()
            .into_iter()
            .filter_map(|element| match element {
                StreamElement::Batch(batch) => Some(batch),
                _ => None,
            })
            .collect()
    }

    /// Sorts `input` within `memory`; returns the output and the spilled bytes.
    fn sort(
        spec: &SortSpec,
        memory: MemoryBudget,
        input: &[RecordBatch],
    ) -> (Vec<RecordBatch>, u64) {
        let mut sort = open(spec, &schema(), memory);
        let mut out = Output::default();
        for batch in input {
            sort.process_batch(0, batch.clone(), &mut out).unwrap();
        }
        sort.finish(&mut out).unwrap();
        while sort.finish_more(&mut out).unwrap() {}
        let mut metrics = OperatorMetrics::default();
        sort.report_metrics(&mut metrics);
        (batches(&mut out), metrics.spilled_bytes)
    }

    /// One string per row: the values of `columns`, comma-separated.
    fn rows(batches: &[RecordBatch], columns: &[&str]) -> Vec<String> {
        let mut rows = Vec::new();
        for batch in batches {
            let indices: Vec<usize> = columns
                .iter()
                .map(|c| batch.schema().index_of(c).unwrap())
                .collect();
            for row in 0..batch.num_rows() {
                let values: Vec<String> = indices
                    .iter()
                    .map(|&i| array_value_to_string(batch.column(i), row).unwrap())
                    .collect();
                rows.push(values.join(","));
            }
        }
        rows
    }

    fn spill_files(dir: &Path) -> usize {
        std::fs::read_dir(dir).map_or(0, |entries| entries.count())
    }

    #[test]
    fn a_spilling_sort_orders_as_the_in_memory_sort() {
        let input = input(7, 60, 500);
        let cases = [
            (vec![SortKey::new("i", false)], 0, None),
            (vec![SortKey::new("s", false)], 0, None),
            (
                vec![SortKey::new("s", true).with_nulls_first(true)],
                0,
                None,
            ),
            (
                vec![SortKey::new("f", false).with_nulls_first(false)],
                0,
                None,
            ),
            (
                vec![
                    SortKey::new("d", true).with_nulls_first(true),
                    SortKey::new("s", false).with_nulls_first(false),
                    SortKey::new("i", true),
                ],
                0,
                None,
            ),
            // With an offset, ties on the keys could skip other rows: `id` breaks them.
            (
                vec![
                    SortKey::new("s", false),
                    SortKey::new("f", true),
                    SortKey::new("id", false),
                ],
                1234,
                Some(vec!["f".to_string(), "id".into(), "s".into()]),
            ),
        ];
        for (keys, offset, output) in cases {
            let columns: Vec<&str> = keys.iter().map(|k| k.column.as_str()).collect();
            let spec = SortSpec {
                keys: keys.clone(),
                offset,
                fetch: None,
                output: output.clone(),
                event_time: false,
            };
            let dir = tempfile::tempdir().unwrap();
            let (want, unspilled) = sort(&spec, MemoryBudget::unlimited(), &input);
            let (got, spilled) = sort(&spec, MemoryBudget::new(64 * 1024, dir.path()), &input);
            assert_eq!(unspilled, 0);
            assert!(spilled > 0, "{keys:?}: nothing spilled");
            assert_eq!(rows(&got, &columns), rows(&want, &columns), "{keys:?}");
            let all: Vec<&str> = match &output {
                Some(output) => output.iter().map(String::as_str).collect(),
                None => vec!["id", "i", "s", "d", "f"],
            };
            let (mut got_rows, mut want_rows) = (rows(&got, &all), rows(&want, &all));
            got_rows.sort();
            want_rows.sort();
            assert_eq!(got_rows, want_rows, "{keys:?}: other rows");
            assert_eq!(
                got.iter().map(RecordBatch::num_rows).sum::<usize>(),
                60 * 500 - offset as usize
            );
            assert!(got.iter().all(|b| b.num_rows() <= EMIT_ROWS));
            assert_eq!(got[0].schema(), spec.output_schema(&schema()).unwrap());
            assert_eq!(spill_files(dir.path()), 0, "{keys:?}: spill files left");
        }
    }

    #[test]
    fn spill_files_go_when_the_sort_is_dropped_or_closed() {
        let spec = SortSpec {
            keys: vec![SortKey::new("i", false)],
            offset: 0,
            fetch: None,
            output: None,
            event_time: false,
        };
        let dir = tempfile::tempdir().unwrap();
        for close in [false, true] {
            let mut sort = open(&spec, &schema(), MemoryBudget::new(64 * 1024, dir.path()));
            let mut out = Output::default();
            for batch in input(3, 20, 500) {
                sort.process_batch(0, batch, &mut out).unwrap();
            }
            assert!(spill_files(dir.path()) > 0);
            if close {
                sort.close().unwrap();
                assert_eq!(spill_files(dir.path()), 0);
            }
            drop(sort);
            assert_eq!(spill_files(dir.path()), 0);
        }
    }

    #[test]
    fn a_snapshot_after_spilling_holds_every_row() {
        let spec = SortSpec {
            keys: vec![SortKey::new("s", false), SortKey::new("id", true)],
            offset: 0,
            fetch: None,
            output: None,
            event_time: false,
        };
        let input = input(11, 30, 500);
        let (want, _) = sort(&spec, MemoryBudget::unlimited(), &input);
        let dir = tempfile::tempdir().unwrap();
        let memory = MemoryBudget::new(64 * 1024, dir.path());
        let mut first = open(&spec, &schema(), memory.clone());
        let mut out = Output::default();
        for batch in &input[..20] {
            first.process_batch(0, batch.clone(), &mut out).unwrap();
        }
        assert!(!first.spill.as_ref().unwrap().runs.is_empty());
        let snapshot = first.snapshot(CheckpointId(1)).unwrap();
        drop(first);
        let mut second = open(&spec, &schema(), memory);
        second.restore(&snapshot).unwrap();
        assert!(
            !second.spill.as_ref().unwrap().runs.is_empty(),
            "restored rows beyond the budget spill again"
        );
        for batch in &input[20..] {
            second.process_batch(0, batch.clone(), &mut out).unwrap();
        }
        second.finish(&mut out).unwrap();
        while second.finish_more(&mut out).unwrap() {}
        let got = batches(&mut out);
        // `id` is unique: the order is fully determined.
        assert_eq!(rows(&got, &["id", "s"]), rows(&want, &["id", "s"]));
    }

    /// `runs` sorted single-column runs written through `spill`: run `n` holds `n`, `n +
    /// stride`, `n + 2 * stride`, … (`rows` values).
    fn spill_runs(spill: &mut Spill, schema: &SchemaRef, runs: i64, rows: i64, stride: i64) {
        for run in 0..runs {
            let values = (0..rows).map(|r| r * stride + run);
            let batch = RecordBatch::try_new(
                schema.clone(),
                vec![Arc::new(Int64Array::from_iter_values(values))],
            )
            .unwrap();
            spill.write_run(schema, batch).unwrap();
        }
    }

    fn new_spill(memory: MemoryBudget) -> Spill {
        let field = SortField::new_with_options(DataType::Int64, SortOptions::default());
        Spill {
            vertex: "sort".into(),
            memory,
            converter: Arc::new(RowConverter::new(vec![field]).unwrap()),
            runs: Vec::new(),
            spilled_bytes: 0,
            merges: 0,
        }
    }

    /// Merges what `merge_down` left, returning the values.
    fn merge_rest(spill: &Spill, runs: Vec<SpillFile>, last: Option<RecordBatch>) -> Vec<i64> {
        let keys = [(0, SortOptions::default())];
        Merge::try_new(spill.converter.clone(), keys.to_vec(), runs, last)
            .unwrap()
            .flat_map(|batch| {
                batch
                    .unwrap()
                    .column(0)
                    .as_primitive::<arrow::datatypes::Int64Type>()
                    .values()
                    .to_vec()
            })
            .collect()
    }

    #[test]
    fn more_runs_than_the_fan_in_merge_in_passes() {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
        let keys = [(0, SortOptions::default())];
        let dir = tempfile::tempdir().unwrap();
        // A budget large enough that only the fan-in limit of 3 bounds the merges.
        let mut spill = new_spill(MemoryBudget::new(1 << 30, dir.path()));
        spill_runs(&mut spill, &schema, 10, 20_000, 10);
        let written = spill.spilled_bytes;
        let (runs, last) = spill.merge_down(&schema, &keys, None, 3).unwrap();
        assert_eq!((runs.len(), last.is_none()), (3, true));
        // 10 runs → 3 merged (8) → 3 merged (6) → 3 merged (4) → 2 merged (3).
        assert_eq!(spill.merges, 4);
        assert!(spill.spilled_bytes > written);
        assert_eq!(spill_files(dir.path()), 3, "merged runs are deleted");
        assert_eq!(
            merge_rest(&spill, runs, last),
            (0..200_000).collect::<Vec<_>>()
        );
        assert_eq!(spill_files(dir.path()), 0);
    }

    #[test]
    fn the_last_run_stays_in_memory_only_beside_the_spilled_runs_budget() {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
        let keys = [(0, SortOptions::default())];
        let last = |rows: i64| {
            RecordBatch::try_new(
                schema.clone(),
                vec![Arc::new(Int64Array::from_iter_values(
                    (0..rows).map(|r| r * 3 + 2),
                ))],
            )
            .unwrap()
        };
        let dir = tempfile::tempdir().unwrap();
        // Two spilled runs take about 2 MiB in a merge (their read buffers); 4 MiB leaves room
        // for a small last run, not for one of 4 MiB.
        for (rows, in_memory) in [(1000, true), (512 * 1024, false)] {
            let mut spill = new_spill(MemoryBudget::new(4 << 20, dir.path()));
            spill_runs(&mut spill, &schema, 2, rows, 3);
            let (runs, kept) = spill
                .merge_down(&schema, &keys, Some(last(rows)), MAX_FAN_IN)
                .unwrap();
            assert_eq!(kept.is_some(), in_memory, "{rows} rows");
            assert_eq!(runs.len(), if in_memory { 2 } else { 3 });
            assert_eq!(spill.merges, 0);
            let values = merge_rest(&spill, runs, kept);
            assert_eq!(values, (0..rows * 3).collect::<Vec<_>>());
        }
        assert_eq!(spill_files(dir.path()), 0);
    }

    /// The reference: every row sorted on the key tuple with std's sort, then the offset skipped.
    fn reference(
        rows: &[(Option<i64>, Option<String>)],
        keys: &[SortKey],
        offset: usize,
    ) -> Vec<(Option<i64>, Option<String>)> {
        fn cmp<T: Ord>(x: &Option<T>, y: &Option<T>, key: &SortKey) -> std::cmp::Ordering {
            match (x, y) {
                (None, None) => std::cmp::Ordering::Equal,
                (None, Some(_)) if key.nulls_first => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (Some(_), None) if key.nulls_first => std::cmp::Ordering::Greater,
                (Some(_), None) => std::cmp::Ordering::Less,
                (Some(x), Some(y)) if key.descending => y.cmp(x),
                (Some(x), Some(y)) => x.cmp(y),
            }
        }
        let mut sorted = rows.to_vec();
        sorted.sort_by(|x, y| {
            keys.iter()
                .map(|key| match key.column.as_str() {
                    "k" => cmp(&x.0, &y.0, key),
                    _ => cmp(&x.1, &y.1, key),
                })
                .fold(std::cmp::Ordering::Equal, std::cmp::Ordering::then)
        });
        sorted.into_iter().skip(offset).collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn spilling_sorts_like_the_reference(
            rows in proptest::collection::vec(
                (proptest::option::of(-20..20i64), proptest::option::of("[a-d]{0,3}")),
                0..400,
            ),
            split in 1usize..50,
            k_first: bool,
            k_desc: bool,
            s_desc: bool,
            k_nulls_first: bool,
            s_nulls_first: bool,
            offset in 0usize..40,
            budget in 64usize..4_000,
            restore_at in proptest::option::of(0usize..50),
        ) {
            let schema = Arc::new(Schema::new(vec![
                Field::new("k", DataType::Int64, true),
                Field::new("s", DataType::Utf8, true),
            ]));
            let input: Vec<RecordBatch> = rows
                .chunks(split)
                .map(|chunk| {
                    RecordBatch::try_new(
                        schema.clone(),
                        vec![
                            Arc::new(Int64Array::from(chunk.iter().map(|r| r.0).collect::<Vec<_>>())),
                            Arc::new(StringArray::from(
                                chunk.iter().map(|r| r.1.as_deref()).collect::<Vec<_>>(),
                            )),
                        ],
                    )
                    .unwrap()
                })
                .collect();
            let k = SortKey::new("k", k_desc).with_nulls_first(k_nulls_first);
            let s = SortKey::new("s", s_desc).with_nulls_first(s_nulls_first);
            let keys = if k_first { vec![k, s] } else { vec![s, k] };
            let spec = SortSpec {
                keys: keys.clone(),
                offset: offset as u64,
                fetch: None,
                output: None,
                event_time: false,
            };
            let dir = tempfile::tempdir().unwrap();
            let memory = MemoryBudget::new(budget, dir.path());
            let mut sort = open(&spec, &schema, memory.clone());
            let mut out = Output::default();
            for (i, batch) in input.into_iter().enumerate() {
                if restore_at == Some(i) {
                    // Snapshot → restore → continue equals an uninterrupted run.
                    let snapshot = sort.snapshot(CheckpointId(1)).unwrap();
                    sort = open(&spec, &schema, memory.clone());
                    sort.restore(&snapshot).unwrap();
                }
                sort.process_batch(0, batch, &mut out).unwrap();
            }
            sort.finish(&mut out).unwrap();
            while sort.finish_more(&mut out).unwrap() {}
            let mut got = Vec::new();
            for batch in batches(&mut out) {
                let k = batch.column(0).as_primitive::<arrow::datatypes::Int64Type>();
                let s = batch.column(1).as_string::<i32>();
                for i in 0..batch.num_rows() {
                    got.push((
                        k.is_valid(i).then(|| k.value(i)),
                        s.is_valid(i).then(|| s.value(i).to_string()),
                    ));
                }
            }
            // Rows equal on both keys are whole rows, so the order is fully determined.
            prop_assert_eq!(got, reference(&rows, &keys, offset));
            drop(sort);
            prop_assert_eq!(spill_files(dir.path()), 0);
        }
    }
}
