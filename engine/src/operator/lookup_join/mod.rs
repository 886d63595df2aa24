//! Lookup join: the input (probe side) joined with a bounded table held in memory.
//!
//! At `open` the operator reads the whole table through its source's reader (as subtask 0 of
//! 1: every subtask holds all of it, so the operator chains to its input and its result does
//! not depend on the parallelism), casts the key columns to the join's key types and indexes
//! them ([`table::LookupIndex`]). Each input batch is then probed as a whole: the probe keys are
//! evaluated and looked up into one group per row, the (input row, table row) pairs are
//! collected into two index vectors, and the output is one `take` per column of each side
//! (the input side is passed through untouched when every row matched exactly once, the
//! common case of enrichment by a unique key).
//!
//! A `condition` is evaluated on the joined candidate rows; for a left join an input row
//! whose candidates all fail it (or that has none) is emitted once with NULLs, in input order.
//! The operator keeps no checkpointed state: a restored job loads the table again when it
//! opens, as Flink's lookup join does (Flink reloads a filesystem table after a TTL; here it is
//! read once per run).

mod table;

use arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch, UInt32Array, new_null_array};
use arrow::buffer::{BooleanBuffer, NullBuffer, ScalarBuffer};
use arrow::compute::{cast, concat_batches, filter_record_batch, take};
use arrow::datatypes::{DataType, SchemaRef};

use self::table::{LookupIndex, NO_MATCH};
use super::{Operator, OperatorContext, Output};
use crate::connector::{SourcePoll, SourceSpec};
use crate::expr::PhysicalExpr;
use crate::graph::{JoinType, LookupJoinSpec};
use crate::runtime::OperatorMetrics;
use crate::{Error, Result};

/// Rows per batch while the table is read.
const LOAD_BATCH_ROWS: usize = 8192;

/// The lookup table once loaded: its rows and their key index.
struct Loaded {
    columns: Vec<ArrayRef>,
    index: LookupIndex,
}

pub struct LookupJoin {
    table: String,
    source: SourceSpec,
    lookup_keys: Vec<usize>,
    key_types: Vec<DataType>,
    probe_keys: Vec<PhysicalExpr>,
    left: bool,
    condition: Option<PhysicalExpr>,
    output_schema: SchemaRef,
    loaded: Option<Loaded>,
    /// Per-batch buffers, reused.
    groups: Vec<u32>,
    probe_rows: Vec<u32>,
    table_rows: Vec<u32>,
}

impl LookupJoin {
    /// Checks `spec` against the input schema; the table is read in [`Operator::open`].
    pub fn try_new(spec: &LookupJoinSpec, input: &SchemaRef, output: SchemaRef) -> Result<Self> {
        let table_schema = spec.table_schema()?;
        let key_types = spec.key_types(input)?;
        let probe_keys = spec
            .probe_keys
            .iter()
            .map(|e| e.resolve(input))
            .collect::<Result<Vec<_>>>()?;
        let lookup_keys = spec
            .lookup_keys
            .iter()
            .map(|k| {
                table_schema
                    .index_of(k)
                    .map_err(|e| Error::arrow("lookup join key", e))
            })
            .collect::<Result<Vec<_>>>()?;
        let condition = spec
            .condition
            .as_ref()
            .map(|c| c.resolve(&output))
            .transpose()?;
        Ok(LookupJoin {
            table: spec.table.clone(),
            source: spec.source.clone(),
            lookup_keys,
            key_types,
            probe_keys,
            left: spec.join_type == JoinType::Left,
            condition,
            output_schema: output,
            loaded: None,
            groups: Vec::new(),
            probe_rows: Vec::new(),
            table_rows: Vec::new(),
        })
    }

    fn key_error(&self, e: arrow::error::ArrowError) -> Error {
        Error::arrow(format!("lookup join key of table '{}'", self.table), e)
    }

    /// Reads the whole table and indexes it.
    fn load(&self) -> Result<Loaded> {
        let source = match &self.source {
            // The rate limit paces a stream; a lookup table is read at once (its rows do not
            // depend on the rate).
            SourceSpec::Datagen(datagen) => {
                let mut datagen = datagen.clone();
                datagen
                    .options
                    .insert("rows-per-second".into(), u32::MAX.to_string());
                SourceSpec::Datagen(datagen)
            }
            other => other.clone(),
        };
        let schema = source.schema()?;
        let mut reader = source.create_reader(0, 1, LOAD_BATCH_ROWS)?;
        let mut batches = Vec::new();
        loop {
            match reader.poll_next()? {
                SourcePoll::Batch(batch) => batches.push(batch),
                SourcePoll::Pending | SourcePoll::Idle => std::thread::yield_now(),
                SourcePoll::Exhausted => break,
            }
        }
        let all = concat_batches(&schema, &batches)
            .map_err(|e| Error::arrow(format!("lookup table '{}'", self.table), e))?;
        let keys = self
            .lookup_keys
            .iter()
            .zip(&self.key_types)
            .map(|(&i, to)| cast(all.column(i), to).map_err(|e| self.key_error(e)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Loaded {
            columns: all.columns().to_vec(),
            index: LookupIndex::build(&keys)?,
        })
    }

    /// The joined batch of the pairs `probe_rows` × `table_rows` (a table row of `NO_MATCH`
    /// gives NULLs); `identity` when the pairs are exactly the input rows in order.
    fn joined(
        &self,
        batch: &RecordBatch,
        probe_rows: &[u32],
        table_rows: &[u32],
        identity: bool,
    ) -> Result<RecordBatch> {
        let loaded = self.loaded.as_ref().expect("opened before processing");
        let arrow_err = |e| Error::arrow(format!("lookup join with '{}'", self.table), e);
        let mut columns = Vec::with_capacity(self.output_schema.fields().len());
        if identity {
            columns.extend(batch.columns().iter().cloned());
        } else {
            let indices = UInt32Array::from(probe_rows.to_vec());
            for column in batch.columns() {
                columns.push(take(column.as_ref(), &indices, None).map_err(arrow_err)?);
            }
        }
        let misses = table_rows.iter().filter(|&&r| r == NO_MATCH).count();
        let table_fields = &self.output_schema.fields()[batch.num_columns()..];
        if misses == table_rows.len() {
            for field in table_fields {
                columns.push(new_null_array(field.data_type(), table_rows.len()));
            }
        } else {
            let values: ScalarBuffer<u32> = if misses == 0 {
                table_rows.to_vec().into()
            } else {
                table_rows
                    .iter()
                    .map(|&r| if r == NO_MATCH { 0 } else { r })
                    .collect()
            };
            let nulls = (misses > 0).then(|| {
                NullBuffer::new(BooleanBuffer::collect_bool(table_rows.len(), |i| {
                    table_rows[i] != NO_MATCH
                }))
            });
            let indices = UInt32Array::new(values, nulls);
            for column in &loaded.columns {
                columns.push(take(column.as_ref(), &indices, None).map_err(arrow_err)?);
            }
        }
        RecordBatch::try_new(self.output_schema.clone(), columns).map_err(arrow_err)
    }
}

impl Operator for LookupJoin {
    fn open(&mut self, _ctx: &OperatorContext) -> Result<()> {
        self.loaded = Some(self.load()?);
        Ok(())
    }

    fn process_batch(&mut self, _input: usize, batch: RecordBatch, out: &mut Output) -> Result<()> {
        let rows = batch.num_rows();
        let keys = self
            .probe_keys
            .iter()
            .zip(&self.key_types)
            .map(|(e, to)| {
                let key = e.evaluate(&batch)?;
                if key.data_type() == to {
                    Ok(key)
                } else {
                    cast(&key, to).map_err(|e| self.key_error(e))
                }
            })
            .collect::<Result<Vec<_>>>()?;
        let Some(loaded) = &self.loaded else {
            return Err(Error::Internal(format!(
                "lookup join with '{}' got a batch before it was opened (a bug)",
                self.table
            )));
        };
        let mut groups = std::mem::take(&mut self.groups);
        let mut probe_rows = std::mem::take(&mut self.probe_rows);
        let mut table_rows = std::mem::take(&mut self.table_rows);
        loaded.index.probe(&keys, &mut groups)?;
        probe_rows.clear();
        table_rows.clear();
        // Pairs in input order; without a condition, a left join's misses take their place
        // among them right away.
        let pad_now = self.left && self.condition.is_none();
        let mut identity = true;
        for (i, &group) in groups.iter().enumerate() {
            if group == NO_MATCH {
                if pad_now {
                    probe_rows.push(i as u32);
                    table_rows.push(NO_MATCH);
                } else {
                    identity = false;
                }
                continue;
            }
            let matched = loaded.index.rows_of(group);
            identity &= matched.len() == 1;
            for &r in matched {
                probe_rows.push(i as u32);
                table_rows.push(r);
            }
        }
        let result = (|| {
            let joined = self.joined(&batch, &probe_rows, &table_rows, identity)?;
            let Some(condition) = &self.condition else {
                out.push_batch(joined);
                return Ok(());
            };
            let mask = condition.evaluate_predicate(&joined)?;
            if !self.left {
                let kept = filter_record_batch(&joined, &mask)
                    .map_err(|e| Error::arrow("lookup join condition", e))?;
                out.push_batch(kept);
                return Ok(());
            }
            let padded = pad_left(rows, &probe_rows, &table_rows, &mask);
            let in_order = padded.0.len() == rows
                && padded.0.iter().enumerate().all(|(i, &p)| p as usize == i);
            out.push_batch(self.joined(&batch, &padded.0, &padded.1, in_order)?);
            Ok(())
        })();
        self.groups = groups;
        self.probe_rows = probe_rows;
        self.table_rows = table_rows;
        result
    }

    fn report_metrics(&self, metrics: &mut OperatorMetrics) {
        if let Some(loaded) = &self.loaded {
            let columns: usize = loaded
                .columns
                .iter()
                .map(|c| c.get_array_memory_size())
                .sum();
            metrics.state_bytes = (columns + loaded.index.allocated_bytes()) as u64;
            metrics.state_keys = loaded.index.groups() as u64;
        }
    }
}

/// The pairs of a left join after its condition: the pairs that passed `mask`, and for every
/// input row with none of them, the row with `NO_MATCH`, in input order.
fn pad_left(
    rows: usize,
    probe_rows: &[u32],
    table_rows: &[u32],
    mask: &BooleanArray,
) -> (Vec<u32>, Vec<u32>) {
    let passed = |k: usize| mask.is_valid(k) && mask.value(k);
    let mut out = (
        Vec::with_capacity(probe_rows.len().max(rows)),
        Vec::with_capacity(probe_rows.len().max(rows)),
    );
    let mut k = 0;
    for row in 0..rows as u32 {
        let mut any = false;
        while k < probe_rows.len() && probe_rows[k] == row {
            if passed(k) {
                out.0.push(row);
                out.1.push(table_rows[k]);
                any = true;
            }
            k += 1;
        }
        if !any {
            out.0.push(row);
            out.1.push(NO_MATCH);
        }
    }
    out
}

#[cfg(test)]
mod tests;
