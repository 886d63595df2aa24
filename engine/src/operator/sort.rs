//! Sort: `ORDER BY … [OFFSET n] [LIMIT m]` over a bounded input, and plain `LIMIT`.
//!
//! - With keys and no fetch, the operator buffers its input and, at end of input, sorts it
//!   with arrow's `lexsort_to_indices` (multi-column, per-key direction and NULL order), skips
//!   the offset and emits the rest in slices.
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
//! Buffered rows and the limit's counters are part of the operator's snapshot.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Int64Array, RecordBatch};
use arrow::compute::{
    SortColumn, concat_batches, filter_record_batch, lexsort_to_indices, take_record_batch,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use super::{Operator, Output};
use crate::element::Watermark;
use crate::graph::SortSpec;
use crate::ids::CheckpointId;
use crate::state::{SnapshotTable, StateSnapshot};
use crate::{Error, Result};

/// Rows per emitted batch at the end of a sort (slices of the sorted result).
const EMIT_ROWS: usize = 8192;

const ROWS_TABLE: &str = "rows";
const PROGRESS_TABLE: &str = "progress";

pub struct Sort {
    keys: Vec<(usize, arrow::compute::SortOptions)>,
    offset: usize,
    fetch: Option<usize>,
    /// Output column indices, `None` for all.
    output: Option<Vec<usize>>,
    input_schema: SchemaRef,
    output_schema: SchemaRef,
    buffered: Vec<RecordBatch>,
    buffered_rows: usize,
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
    }

    fn finish(&mut self, out: &mut Output) -> Result<()> {
        if self.keys.is_empty() || self.buffered_rows == 0 {
            return Ok(());
        }
        let sorted = self.sorted(self.kept())?;
        self.buffered.clear();
        self.buffered_rows = 0;
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
        Ok(StateSnapshot {
            key_groups: None,
            tables: vec![
                SnapshotTable {
                    slices: None,
                    name: ROWS_TABLE.into(),
                    batches: self.buffered.clone(),
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
                        self.buffered_rows += batch.num_rows();
                        self.buffered.push(batch.clone());
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
