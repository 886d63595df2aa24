//! The upsert sink: applies a changelog by primary key and keeps the resulting table.
//!
//! For every row of the input, `+I` and `+U` put the row under its key (replacing what was
//! there), `-D` removes the key, and `-U` is ignored — the `+U` that follows it carries the new
//! version, as Flink's upsert sinks do. Insert-only input (no `_row_kind` column) is upserted
//! row by row. At end of input the table is handed to the job's collected results under the
//! sink's name; the same table is what the Flight sink tables serve (a later issue).
//!
//! Keys are row-encoded once per batch and interned in a dense key table; a key's current row
//! is stored row-encoded in a reusable buffer, so an update does not allocate once the key's
//! buffer is large enough.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{Int8Type, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use arrow::row::{RowConverter, SortField};

use super::{CollectedResults, Sink};
use crate::element::{ROW_KIND_COLUMN, RowKind};
use crate::operator::GroupTable;
use crate::operator::OperatorContext;
use crate::{Error, Result};

/// A table materialised from a changelog by primary key.
pub struct UpsertTable {
    /// Schema of the stored rows (the input without `_row_kind`).
    schema: SchemaRef,
    key_indices: Vec<usize>,
    value_indices: Vec<usize>,
    kind_index: Option<usize>,
    keys: RowConverter,
    values: RowConverter,
    table: GroupTable,
    /// The current row of each key id, row-encoded; `None` when deleted.
    rows: Vec<Option<Vec<u8>>>,
    live: usize,
    key_ids: Vec<u32>,
}

impl UpsertTable {
    /// A table for input `schema` (which may carry a `_row_kind` column) keyed by `primary_key`.
    pub fn try_new(schema: &Schema, primary_key: &[String]) -> Result<Self> {
        if primary_key.is_empty() {
            return Err(Error::expr("an upsert table needs a primary key"));
        }
        let kind_index = schema.index_of(ROW_KIND_COLUMN).ok();
        let value_indices: Vec<usize> = (0..schema.fields().len())
            .filter(|&i| Some(i) != kind_index)
            .collect();
        let key_indices = primary_key
            .iter()
            .map(|k| {
                schema.index_of(k).map_err(|_| {
                    Error::expr(format!(
                        "primary key column '{k}' does not exist (available: {})",
                        crate::graph::describe_columns(schema)
                    ))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let field_of = |i: &usize| SortField::new(schema.field(*i).data_type().clone());
        let keys = RowConverter::new(key_indices.iter().map(field_of).collect())
            .map_err(|e| Error::arrow("primary key encoding", e))?;
        let values = RowConverter::new(value_indices.iter().map(field_of).collect())
            .map_err(|e| Error::arrow("upsert row encoding", e))?;
        let stored = Schema::new(
            value_indices
                .iter()
                .map(|&i| schema.field(i).clone())
                .collect::<Vec<_>>(),
        );
        Ok(UpsertTable {
            schema: Arc::new(stored),
            key_indices,
            value_indices,
            kind_index,
            keys,
            values,
            table: GroupTable::default(),
            rows: Vec::new(),
            live: 0,
            key_ids: Vec::new(),
        })
    }

    /// Applies one batch of the changelog, in row order.
    pub fn apply(&mut self, batch: &RecordBatch) -> Result<()> {
        let key_columns: Vec<ArrayRef> = self
            .key_indices
            .iter()
            .map(|&i| batch.column(i).clone())
            .collect();
        let value_columns: Vec<ArrayRef> = self
            .value_indices
            .iter()
            .map(|&i| batch.column(i).clone())
            .collect();
        let keys = self
            .keys
            .convert_columns(&key_columns)
            .map_err(|e| Error::arrow("primary key encoding", e))?;
        let values = self
            .values
            .convert_columns(&value_columns)
            .map_err(|e| Error::arrow("upsert row encoding", e))?;
        self.table.intern(&keys, &mut self.key_ids);
        self.rows.resize(self.table.len(), None);
        let kinds = self
            .kind_index
            .map(|i| batch.column(i).as_primitive::<Int8Type>().clone());
        for (row, &key) in self.key_ids.iter().enumerate() {
            let kind = match &kinds {
                Some(kinds) if kinds.is_valid(row) => RowKind::from_i8(kinds.value(row))
                    .ok_or_else(|| {
                        Error::data(
                            "upsert sink",
                            format!("invalid row kind {} in row {row}", kinds.value(row)),
                        )
                    })?,
                _ => RowKind::Insert,
            };
            let slot = &mut self.rows[key as usize];
            match kind {
                RowKind::Insert | RowKind::UpdateAfter => {
                    if slot.is_none() {
                        self.live += 1;
                    }
                    let buffer = slot.get_or_insert_with(Vec::new);
                    buffer.clear();
                    buffer.extend_from_slice(values.row(row).as_ref());
                }
                RowKind::Delete => {
                    if slot.take().is_some() {
                        self.live -= 1;
                    }
                }
                RowKind::UpdateBefore => {}
            }
        }
        Ok(())
    }

    /// The number of keys currently in the table.
    pub fn len(&self) -> usize {
        self.live
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// The schema of the materialised rows (the input without `_row_kind`).
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// The current contents, in first-insertion order of the keys.
    pub fn to_batch(&self) -> Result<RecordBatch> {
        let parser = self.values.parser();
        let rows = self.rows.iter().flatten().map(|bytes| parser.parse(bytes));
        let columns = self
            .values
            .convert_rows(rows)
            .map_err(|e| Error::arrow("upsert row decoding", e))?;
        RecordBatch::try_new(self.schema.clone(), columns)
            .map_err(|e| Error::arrow("upsert table", e))
    }

    /// Approximate heap bytes held.
    pub fn allocated_bytes(&self) -> usize {
        self.table.allocated_bytes()
            + self.rows.capacity() * std::mem::size_of::<Option<Vec<u8>>>()
            + self.rows.iter().flatten().map(Vec::capacity).sum::<usize>()
    }
}

/// A sink that materialises its input by primary key into the job's collected results.
pub(crate) struct UpsertSink {
    name: String,
    primary_key: Vec<String>,
    subtask: u32,
    table: Option<UpsertTable>,
    results: CollectedResults,
}

impl UpsertSink {
    pub(crate) fn new(name: &str, primary_key: &[String], results: CollectedResults) -> Self {
        UpsertSink {
            name: name.to_string(),
            primary_key: primary_key.to_vec(),
            subtask: 0,
            table: None,
            results,
        }
    }
}

impl Sink for UpsertSink {
    fn open(&mut self, ctx: &OperatorContext) -> Result<()> {
        self.subtask = ctx.subtask.0;
        let input = ctx
            .input_schemas
            .first()
            .ok_or_else(|| Error::Internal("upsert sink without an input".into()))?;
        self.table = Some(UpsertTable::try_new(input, &self.primary_key)?);
        Ok(())
    }

    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        match &mut self.table {
            Some(table) => table.apply(batch),
            None => Err(Error::Internal("upsert sink written before open".into())),
        }
    }

    /// The table lives in memory and is not in the checkpoint yet: resuming from a checkpoint
    /// would lose the rows before it, so it fails instead. A restart from the beginning is fine.
    fn recover(&mut self, restored: Option<(crate::ids::CheckpointId, &[u8])>) -> Result<()> {
        match restored {
            None => Ok(()),
            Some((checkpoint, _)) => Err(crate::Error::plan(
                format!("upsert sink '{}'", self.name),
                format!(
                    "cannot resume from checkpoint {checkpoint}: the upsert sink keeps its table \
                     in memory and does not snapshot it yet"
                ),
            )),
        }
    }

    fn finish(&mut self) -> Result<()> {
        if let Some(table) = &self.table {
            self.results
                .put(&self.name, self.subtask, table.to_batch()?);
        }
        Ok(())
    }
}
