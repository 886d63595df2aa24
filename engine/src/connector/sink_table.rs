//! Sink tables: the `'connector' = 'flight'` sink keeps its rows in memory as Arrow batches,
//! where the Flight service (`sluice_flight::sink_table`) serves them to any Flight client.
//!
//! A table is **append-only**, or **upsert** by its primary key: then the input changelog is
//! applied ([`UpsertTable`]) and readers see each key's current row. Each subtask of the sink
//! owns one partition of the table.
//!
//! **Consistency.** When the job checkpoints, readers see the table as of its latest completed
//! checkpoint, never rows a failure would retract: a subtask buffers what it receives, stages
//! the buffer under the checkpoint id at the barrier (pre-commit), and the staged batches
//! become visible when the checkpoint completes (commit; an upsert table applies them then).
//! On restore, the restored checkpoint's staged data is committed and later staged data
//! dropped, so the replay adds each row once. Without checkpoints every batch is visible as
//! soon as the sink has it.
//!
//! **Size bound.** `sink.max-bytes` (a memory size: `64mb`, `1 gb`, …) bounds the memory a
//! table's visible and staged batches take; a write beyond it fails the job with an error
//! naming the table, its size and the option.
//!
//! The shared state is behind one lock taken once per batch (without checkpoints) or once per
//! checkpoint (with them), never per row; readers take it only to clone the batch list (the
//! batches share their buffers).

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use arrow::datatypes::{Schema, SchemaRef};
use arrow::record_batch::RecordBatch;

use super::Sink;
use super::upsert::UpsertTable;
use crate::element::ROW_KIND_COLUMN;
use crate::ids::CheckpointId;
use crate::operator::OperatorContext;
use crate::{Error, Result};

/// The sink tables of one job, shared by its sink subtasks and the Flight service.
#[derive(Debug, Clone, Default)]
pub struct SinkTables {
    inner: Arc<RwLock<BTreeMap<String, TableState>>>,
}

/// What a reader learns about a table.
#[derive(Debug, Clone)]
pub struct SinkTableDescription {
    pub name: String,
    pub schema: SchemaRef,
    pub primary_key: Vec<String>,
    /// Visible rows over all partitions.
    pub rows: u64,
    /// Partition ids (the sink's subtask indices).
    pub partitions: Vec<u32>,
}

struct TableState {
    /// The rows' schema (the input's without `_row_kind`).
    schema: SchemaRef,
    primary_key: Vec<String>,
    max_bytes: Option<u64>,
    partitions: BTreeMap<u32, Partition>,
}

impl std::fmt::Debug for TableState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableState")
            .field("primary_key", &self.primary_key)
            .field("partitions", &self.partitions.len())
            .finish()
    }
}

/// One subtask's share of a table.
struct Partition {
    visible: Visible,
    /// Pre-committed batches (the input as it arrived), by checkpoint.
    staged: BTreeMap<CheckpointId, Vec<RecordBatch>>,
    staged_bytes: u64,
}

enum Visible {
    Append {
        batches: Vec<RecordBatch>,
        bytes: u64,
    },
    /// The current rows by key, and a materialised copy readers share until the next change.
    Upsert {
        table: Box<UpsertTable>,
        snapshot: Option<RecordBatch>,
        /// The sink's input schema (with `_row_kind`), to start the table over.
        input: SchemaRef,
    },
}

impl Visible {
    fn bytes(&self) -> u64 {
        match self {
            Visible::Append { bytes, .. } => *bytes,
            Visible::Upsert { table, .. } => table.allocated_bytes() as u64,
        }
    }

    fn rows(&self) -> u64 {
        match self {
            Visible::Append { batches, .. } => batches.iter().map(|b| b.num_rows() as u64).sum(),
            Visible::Upsert { table, .. } => table.len() as u64,
        }
    }

    fn apply(&mut self, batch: RecordBatch) -> Result<()> {
        match self {
            Visible::Append { batches, bytes } => {
                *bytes += batch.get_array_memory_size() as u64;
                batches.push(batch);
            }
            Visible::Upsert {
                table, snapshot, ..
            } => {
                table.apply(&batch)?;
                *snapshot = None;
            }
        }
        Ok(())
    }
}

impl Partition {
    fn bytes(&self) -> u64 {
        self.visible.bytes() + self.staged_bytes
    }
}

impl TableState {
    fn bytes(&self) -> u64 {
        self.partitions.values().map(Partition::bytes).sum()
    }

    /// Fails when `adding` more bytes would take the table past its bound.
    fn check_room(&self, name: &str, adding: u64) -> Result<()> {
        let Some(limit) = self.max_bytes else {
            return Ok(());
        };
        let used = self.bytes();
        if used + adding > limit {
            return Err(Error::data(
                format!("sink table '{name}'"),
                format!(
                    "it would hold {} bytes, over its bound 'sink.max-bytes' = {limit} bytes; \
                     raise the bound, or keep fewer rows (an upsert table keeps one per key)",
                    used + adding
                ),
            ));
        }
        Ok(())
    }

    fn partition(&mut self, subtask: u32) -> &mut Partition {
        self.partitions
            .get_mut(&subtask)
            .expect("the sink registered its partition at open")
    }
}

impl SinkTables {
    pub fn new() -> Self {
        SinkTables::default()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, TableState>> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, TableState>> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Every table, in name order.
    pub fn describe(&self) -> Vec<SinkTableDescription> {
        self.read()
            .iter()
            .map(|(name, table)| SinkTableDescription {
                name: name.clone(),
                schema: table.schema.clone(),
                primary_key: table.primary_key.clone(),
                rows: table.partitions.values().map(|p| p.visible.rows()).sum(),
                partitions: table.partitions.keys().copied().collect(),
            })
            .collect()
    }

    /// The visible rows of `name`: of one partition, or (`None`) of all. `None` when there is
    /// no such table (or partition).
    pub fn scan(
        &self,
        name: &str,
        partition: Option<u32>,
    ) -> Result<Option<(SchemaRef, Vec<RecordBatch>)>> {
        // Readers share the read lock with each other; only an upsert table changed since its
        // last read takes the write lock, to materialise its rows once for every reader after.
        if let Some(found) = visible_rows(&self.read(), name, partition) {
            return Ok(found);
        }
        let mut tables = self.write();
        if let Some(table) = tables.get_mut(name) {
            for (id, part) in table.partitions.iter_mut() {
                if partition.is_some_and(|p| p != *id) {
                    continue;
                }
                if let Visible::Upsert {
                    table, snapshot, ..
                } = &mut part.visible
                    && snapshot.is_none()
                {
                    *snapshot = Some(table.to_batch()?);
                }
            }
        }
        Ok(visible_rows(&tables, name, partition)
            .expect("every upsert snapshot was materialised under the write lock"))
    }

    /// Registers partition `subtask` of table `name` (created on first use); `true` when the
    /// partition is new here. Fails when the table exists with another schema or key.
    fn open(
        &self,
        name: &str,
        subtask: u32,
        input: &Schema,
        primary_key: &[String],
        max_bytes: Option<u64>,
    ) -> Result<bool> {
        let upsert = if primary_key.is_empty() {
            if input.index_of(ROW_KIND_COLUMN).is_ok() {
                return Err(Error::expr(format!(
                    "sink table '{name}' is append-only but its input is a changelog (updates \
                     and deletes); declare a PRIMARY KEY so the table is upserted"
                )));
            }
            None
        } else {
            Some(UpsertTable::try_new(input, primary_key)?)
        };
        let schema = match &upsert {
            Some(table) => table.schema(),
            None => Arc::new(input.clone()),
        };
        let mut tables = self.write();
        let table = tables
            .entry(name.to_string())
            .or_insert_with(|| TableState {
                schema: schema.clone(),
                primary_key: primary_key.to_vec(),
                max_bytes,
                partitions: BTreeMap::new(),
            });
        if table.schema.fields() != schema.fields() || table.primary_key != primary_key {
            return Err(Error::expr(format!(
                "sink table '{name}' is written by two sinks with different schemas or keys"
            )));
        }
        let visible = match upsert {
            Some(table) => Visible::Upsert {
                table: Box::new(table),
                snapshot: None,
                input: Arc::new(input.clone()),
            },
            None => Visible::Append {
                batches: Vec::new(),
                bytes: 0,
            },
        };
        // A restarted attempt (or a later job writing the same table, as INSERTs into one table
        // add up) finds the partition there and goes on with it.
        let fresh = !table.partitions.contains_key(&subtask);
        table.partitions.entry(subtask).or_insert(Partition {
            visible,
            staged: BTreeMap::new(),
            staged_bytes: 0,
        });
        Ok(fresh)
    }

    /// The rows of partition `subtask` as of `checkpoint` (what is visible, and what is staged
    /// up to it), as batches of the sink's input schema: for a checkpoint, so a restore on
    /// another process rebuilds the partition. An upsert table's rows carry `+I`.
    fn snapshot_rows(
        &self,
        name: &str,
        subtask: u32,
        checkpoint: CheckpointId,
    ) -> Result<Vec<RecordBatch>> {
        let tables = self.read();
        let table = tables.get(name).expect("registered at open");
        let part = &table.partitions[&subtask];
        let mut rows = match &part.visible {
            Visible::Append { batches, .. } => batches.clone(),
            Visible::Upsert { table, input, .. } => {
                let current = table.to_batch()?;
                let columns = input
                    .fields()
                    .iter()
                    .map(|field| match current.column_by_name(field.name()) {
                        Some(column) => Ok(column.clone()),
                        None if field.name() == ROW_KIND_COLUMN => {
                            Ok(Arc::new(arrow::array::Int8Array::from(vec![
                                0i8;
                                current.num_rows()
                            ])) as arrow::array::ArrayRef)
                        }
                        None => Err(Error::Internal(format!(
                            "sink table '{name}': column '{}' missing from its rows",
                            field.name()
                        ))),
                    })
                    .collect::<Result<Vec<_>>>()?;
                vec![
                    RecordBatch::try_new(input.clone(), columns)
                        .map_err(|e| Error::arrow("sink table snapshot", e))?,
                ]
            }
        };
        for (_, batches) in part.staged.range(..=checkpoint) {
            rows.extend(batches.iter().cloned());
        }
        Ok(rows)
    }

    /// Replaces partition `subtask` with `rows` (from [`SinkTables::snapshot_rows`] of the
    /// checkpoint a restarted job resumes from).
    fn restore_rows(&self, name: &str, subtask: u32, rows: &[RecordBatch]) -> Result<()> {
        let mut tables = self.write();
        let table = tables.get_mut(name).expect("registered at open");
        let primary_key = table.primary_key.clone();
        let part = table.partition(subtask);
        part.staged.clear();
        part.staged_bytes = 0;
        match &mut part.visible {
            Visible::Append { batches, bytes } => {
                *batches = rows.iter().filter(|b| b.num_rows() > 0).cloned().collect();
                *bytes = batches
                    .iter()
                    .map(|b| b.get_array_memory_size() as u64)
                    .sum();
            }
            Visible::Upsert {
                table,
                snapshot,
                input,
            } => {
                let mut fresh = UpsertTable::try_new(input, &primary_key)?;
                for batch in rows {
                    fresh.apply(batch)?;
                }
                **table = fresh;
                *snapshot = None;
            }
        }
        Ok(())
    }

    /// Makes `batches` visible in partition `subtask` at once.
    fn publish(&self, name: &str, subtask: u32, batches: Vec<RecordBatch>) -> Result<()> {
        let mut tables = self.write();
        let table = tables.get_mut(name).expect("registered at open");
        let adding = batches
            .iter()
            .map(|b| b.get_array_memory_size() as u64)
            .sum();
        if matches!(table.partition(subtask).visible, Visible::Append { .. }) {
            table.check_room(name, adding)?;
        }
        let part = table.partition(subtask);
        for batch in batches {
            part.visible.apply(batch)?;
        }
        table.check_room(name, 0)
    }

    /// Stages `batches` of partition `subtask` under `checkpoint`.
    fn stage(
        &self,
        name: &str,
        subtask: u32,
        checkpoint: CheckpointId,
        batches: Vec<RecordBatch>,
    ) -> Result<()> {
        let mut tables = self.write();
        let table = tables.get_mut(name).expect("registered at open");
        let adding = batches
            .iter()
            .map(|b| b.get_array_memory_size() as u64)
            .sum();
        table.check_room(name, adding)?;
        let part = table.partition(subtask);
        part.staged_bytes += adding;
        part.staged.entry(checkpoint).or_default().extend(batches);
        Ok(())
    }

    /// Makes what partition `subtask` staged up to `checkpoint` visible.
    fn commit(&self, name: &str, subtask: u32, checkpoint: CheckpointId) -> Result<()> {
        let mut tables = self.write();
        let table = tables.get_mut(name).expect("registered at open");
        let part = table.partition(subtask);
        let later = part
            .staged
            .split_off(&CheckpointId(checkpoint.0.saturating_add(1)));
        let done = std::mem::replace(&mut part.staged, later);
        for batches in done.into_values() {
            for batch in batches {
                part.staged_bytes = part
                    .staged_bytes
                    .saturating_sub(batch.get_array_memory_size() as u64);
                part.visible.apply(batch)?;
            }
        }
        Ok(())
    }

    /// A restarted subtask resumes from `checkpoint` (or from the beginning): what it staged up
    /// to the checkpoint becomes visible, later staged data goes (the replay brings it again),
    /// and, starting from the beginning, the partition is emptied.
    fn recover(&self, name: &str, subtask: u32, checkpoint: Option<CheckpointId>) -> Result<()> {
        let Some(checkpoint) = checkpoint else {
            return self.restore_rows(name, subtask, &[]);
        };
        self.commit(name, subtask, checkpoint)?;
        let mut tables = self.write();
        let part = tables
            .get_mut(name)
            .expect("registered at open")
            .partition(subtask);
        part.staged.clear();
        part.staged_bytes = 0;
        Ok(())
    }

    pub(crate) fn sink(
        &self,
        name: &str,
        primary_key: &[String],
        max_bytes: Option<u64>,
    ) -> FlightSink {
        FlightSink {
            tables: self.clone(),
            name: name.to_string(),
            primary_key: primary_key.to_vec(),
            max_bytes,
            subtask: 0,
            exactly_once: false,
            buffer: Vec::new(),
            fresh: false,
            restored: None,
            input: Arc::new(Schema::empty()),
        }
    }
}

/// The name of a Flight sink's state table in a checkpoint: its partition's rows.
const ROWS_TABLE: &str = "rows";

/// The visible rows of `name` (one partition, or all), as [`SinkTables::scan`] returns them;
/// `None` when an upsert partition's rows have to be materialised first.
fn visible_rows(
    tables: &BTreeMap<String, TableState>,
    name: &str,
    partition: Option<u32>,
) -> Option<Option<(SchemaRef, Vec<RecordBatch>)>> {
    let Some(table) = tables.get(name) else {
        return Some(None);
    };
    if partition.is_some_and(|p| !table.partitions.contains_key(&p)) {
        return Some(None);
    }
    let mut batches = Vec::new();
    for (id, part) in &table.partitions {
        if partition.is_some_and(|p| p != *id) {
            continue;
        }
        match &part.visible {
            Visible::Append {
                batches: visible, ..
            } => batches.extend(visible.iter().cloned()),
            Visible::Upsert { snapshot, .. } => {
                let rows = snapshot.as_ref()?;
                if rows.num_rows() > 0 {
                    batches.push(rows.clone());
                }
            }
        }
    }
    Some(Some((table.schema.clone(), batches)))
}

/// The sink of a `'connector' = 'flight'` table.
pub(crate) struct FlightSink {
    tables: SinkTables,
    name: String,
    primary_key: Vec<String>,
    max_bytes: Option<u64>,
    subtask: u32,
    /// The job checkpoints: batches wait for the checkpoint that covers them.
    exactly_once: bool,
    /// Received since the last barrier (exactly-once only).
    buffer: Vec<RecordBatch>,
    /// The partition was new in this process when the sink opened (a restart elsewhere, or a
    /// new process): a restore rebuilds it from the checkpoint's rows.
    fresh: bool,
    /// The partition's rows in the checkpoint being restored.
    restored: Option<Vec<RecordBatch>>,
    input: SchemaRef,
}

impl Sink for FlightSink {
    fn open(&mut self, ctx: &OperatorContext) -> Result<()> {
        self.subtask = ctx.subtask.0;
        self.exactly_once = ctx.checkpointing;
        let input = ctx
            .input_schemas
            .first()
            .cloned()
            .unwrap_or_else(|| Arc::new(Schema::empty()));
        self.input = input.clone();
        self.fresh = self.tables.open(
            &self.name,
            self.subtask,
            &input,
            &self.primary_key,
            self.max_bytes,
        )?;
        Ok(())
    }

    fn snapshot_tables(
        &mut self,
        checkpoint: CheckpointId,
    ) -> Result<Vec<crate::state::SnapshotTable>> {
        if !self.exactly_once {
            return Ok(Vec::new());
        }
        let mut rows = self
            .tables
            .snapshot_rows(&self.name, self.subtask, checkpoint)?;
        if rows.is_empty() {
            // A state file needs a schema.
            rows.push(RecordBatch::new_empty(self.input.clone()));
        }
        Ok(vec![crate::state::SnapshotTable::new(ROWS_TABLE, rows)])
    }

    fn restore_tables(&mut self, tables: &[crate::state::SnapshotTable]) -> Result<()> {
        self.restored = tables
            .iter()
            .find(|t| t.name == ROWS_TABLE)
            .map(|t| t.batches.clone());
        Ok(())
    }

    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        if self.exactly_once {
            self.buffer.push(batch.clone());
            Ok(())
        } else {
            self.tables
                .publish(&self.name, self.subtask, vec![batch.clone()])
        }
    }

    fn pre_commit(&mut self, checkpoint: CheckpointId) -> Result<Vec<u8>> {
        let batches = std::mem::take(&mut self.buffer);
        self.tables
            .stage(&self.name, self.subtask, checkpoint, batches)?;
        Ok(Vec::new())
    }

    fn commit(&mut self, checkpoint: CheckpointId, _pending: &[u8]) -> Result<()> {
        self.tables.commit(&self.name, self.subtask, checkpoint)
    }

    fn recover(&mut self, restored: Option<(CheckpointId, &[u8])>) -> Result<()> {
        match (restored, self.restored.take()) {
            // Nothing of the partition is in this process: the checkpoint's rows are it.
            (Some(_), Some(rows)) if self.fresh => {
                self.tables.restore_rows(&self.name, self.subtask, &rows)
            }
            (restored, _) => {
                self.tables
                    .recover(&self.name, self.subtask, restored.map(|(id, _)| id))
            }
        }
    }

    fn abort(&mut self, _checkpoint: CheckpointId, _pending: &[u8]) -> Result<()> {
        // Staged data of an aborted checkpoint stays staged: the next completed checkpoint
        // covers it (it arrived before that checkpoint's barrier too).
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        let batches = std::mem::take(&mut self.buffer);
        let mut tables = self.tables.write();
        let table = tables.get_mut(&self.name).expect("registered at open");
        let part = table.partition(self.subtask);
        let staged = std::mem::take(&mut part.staged);
        part.staged_bytes = 0;
        drop(tables);
        let all: Vec<RecordBatch> = staged.into_values().flatten().chain(batches).collect();
        self.tables.publish(&self.name, self.subtask, all)
    }
}

/// A memory size option (`sink.max-bytes`): bytes, or a number with `b`, `kb`, `mb`, `gb`
/// (powers of 1024; case and spaces ignored).
pub fn parse_memory_size(key: &str, value: &str) -> Result<u64> {
    let text = value.trim().to_ascii_lowercase().replace(' ', "");
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let factor: u64 = match unit {
        "" | "b" | "bytes" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => 0,
    };
    number
        .parse::<u64>()
        .ok()
        .filter(|_| factor > 0)
        .and_then(|n| n.checked_mul(factor))
        .ok_or_else(|| Error::Config {
            key: key.to_string(),
            value: value.to_string(),
            message: "expected a memory size (e.g. 512mb, 2gb, 1048576)".into(),
        })
}

#[cfg(test)]
mod tests {
    use arrow::array::{Int8Array, Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field};

    use super::*;
    use crate::ids::SubtaskIndex;
    use crate::state::KeyGroupRange;

    fn context(input: SchemaRef, subtask: u32, checkpointing: bool) -> OperatorContext {
        OperatorContext {
            vertex: "sink".into(),
            subtask: SubtaskIndex(subtask),
            parallelism: 2,
            max_parallelism: 128,
            key_groups: KeyGroupRange::for_subtask(128, 2, subtask),
            input_schemas: vec![input.clone()],
            output_schema: input,
            incremental_checkpoints: false,
            checkpointing,
            memory: crate::spill::MemoryBudget::default(),
        }
    }

    fn rows_schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
        ]))
    }

    fn rows(ids: &[i64]) -> RecordBatch {
        let names: Vec<String> = ids.iter().map(|i| format!("n{i}")).collect();
        RecordBatch::try_new(
            rows_schema(),
            vec![
                Arc::new(Int64Array::from(ids.to_vec())),
                Arc::new(StringArray::from(names)),
            ],
        )
        .unwrap()
    }

    /// `rows_schema` with a `_row_kind` column: an upsert table's input.
    fn changelog_schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
            Field::new(ROW_KIND_COLUMN, DataType::Int8, false),
        ]))
    }

    /// Changes of rows `ids` with row kinds `kinds` (0 +I, 3 -D).
    fn changes(ids: &[i64], kinds: &[i8]) -> RecordBatch {
        let names: Vec<String> = ids.iter().map(|i| format!("v{i}")).collect();
        RecordBatch::try_new(
            changelog_schema(),
            vec![
                Arc::new(Int64Array::from(ids.to_vec())),
                Arc::new(StringArray::from(names)),
                Arc::new(Int8Array::from(kinds.to_vec())),
            ],
        )
        .unwrap()
    }

    fn ids(tables: &SinkTables, name: &str, partition: Option<u32>) -> Vec<i64> {
        let (_, batches) = tables.scan(name, partition).unwrap().unwrap();
        let mut ids: Vec<i64> = batches
            .iter()
            .flat_map(|b| {
                b.column(0)
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .unwrap()
                    .values()
                    .to_vec()
            })
            .collect();
        ids.sort_unstable();
        ids
    }

    #[test]
    fn without_checkpoints_rows_are_visible_as_they_arrive() {
        let tables = SinkTables::new();
        let mut sink = tables.sink("t", &[], None);
        sink.open(&context(rows_schema(), 0, false)).unwrap();
        sink.write(&rows(&[1, 2])).unwrap();
        assert_eq!(ids(&tables, "t", None), vec![1, 2]);
        sink.write(&rows(&[3])).unwrap();
        sink.finish().unwrap();
        assert_eq!(ids(&tables, "t", Some(0)), vec![1, 2, 3]);
        let described = tables.describe();
        assert_eq!(described[0].rows, 3);
        assert_eq!(described[0].partitions, vec![0]);
        assert!(tables.scan("other", None).unwrap().is_none());
        assert!(tables.scan("t", Some(7)).unwrap().is_none());
    }

    #[test]
    fn with_checkpoints_readers_see_only_completed_checkpoints_and_a_restore_replays_once() {
        let tables = SinkTables::new();
        let mut sink = tables.sink("t", &[], None);
        sink.open(&context(rows_schema(), 1, true)).unwrap();
        sink.write(&rows(&[1])).unwrap();
        assert_eq!(
            ids(&tables, "t", None),
            Vec::<i64>::new(),
            "nothing before a checkpoint"
        );
        sink.pre_commit(CheckpointId(1)).unwrap();
        sink.write(&rows(&[2])).unwrap();
        sink.pre_commit(CheckpointId(2)).unwrap();
        assert_eq!(
            ids(&tables, "t", None),
            Vec::<i64>::new(),
            "staged, not committed"
        );
        sink.commit(CheckpointId(1), &[]).unwrap();
        assert_eq!(ids(&tables, "t", None), vec![1]);

        // The attempt fails before checkpoint 2 completes; a new one restores checkpoint 1
        // and replays row 2 (and more).
        let mut restarted = tables.sink("t", &[], None);
        restarted.open(&context(rows_schema(), 1, true)).unwrap();
        restarted.recover(Some((CheckpointId(1), &[]))).unwrap();
        assert_eq!(
            ids(&tables, "t", None),
            vec![1],
            "checkpoint 2's staged rows are gone"
        );
        restarted.write(&rows(&[2, 3])).unwrap();
        restarted.finish().unwrap();
        assert_eq!(ids(&tables, "t", None), vec![1, 2, 3]);

        // Restarting from the beginning starts the partition over.
        let mut again = tables.sink("t", &[], None);
        again.open(&context(rows_schema(), 1, true)).unwrap();
        again.recover(None).unwrap();
        assert_eq!(ids(&tables, "t", None), Vec::<i64>::new());
    }

    #[test]
    fn an_upsert_table_applies_the_changelog_at_commit() {
        let schema = changelog_schema();
        let tables = SinkTables::new();
        let mut sink = tables.sink("u", &["id".to_string()], None);
        sink.open(&context(schema.clone(), 0, true)).unwrap();
        // +I 1, +I 2, then -D 1.
        sink.write(&changes(&[1, 2], &[0, 0])).unwrap();
        sink.pre_commit(CheckpointId(1)).unwrap();
        sink.write(&changes(&[1], &[3])).unwrap();
        sink.pre_commit(CheckpointId(2)).unwrap();
        sink.commit(CheckpointId(1), &[]).unwrap();
        assert_eq!(ids(&tables, "u", None), vec![1, 2]);
        sink.commit(CheckpointId(2), &[]).unwrap();
        assert_eq!(ids(&tables, "u", None), vec![2]);
        let (served, _) = tables.scan("u", None).unwrap().unwrap();
        assert!(
            served.index_of(ROW_KIND_COLUMN).is_err(),
            "readers get rows, not changes"
        );
    }

    #[test]
    fn an_append_table_refuses_a_changelog_and_the_size_bound_is_enforced() {
        let changelog = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new(ROW_KIND_COLUMN, DataType::Int8, false),
        ]));
        let tables = SinkTables::new();
        let error = tables
            .sink("c", &[], None)
            .open(&context(changelog, 0, false))
            .unwrap_err()
            .to_string();
        assert!(error.contains("PRIMARY KEY"), "{error}");

        let one = rows(&[1, 2, 3]).get_array_memory_size() as u64;
        let mut sink = tables.sink("small", &[], Some(one + one / 2));
        sink.open(&context(rows_schema(), 0, false)).unwrap();
        sink.write(&rows(&[1, 2, 3])).unwrap();
        let error = sink.write(&rows(&[4, 5, 6])).unwrap_err().to_string();
        assert!(
            error.contains("sink table 'small'") && error.contains("sink.max-bytes"),
            "{error}"
        );
        assert_eq!(
            ids(&tables, "small", None),
            vec![1, 2, 3],
            "the refused batch is not visible"
        );
    }

    #[test]
    fn a_partition_restored_in_another_process_comes_back_from_the_checkpoint_rows() {
        let schema = changelog_schema();
        for key in [Vec::new(), vec!["id".to_string()]] {
            let input = if key.is_empty() {
                rows_schema()
            } else {
                schema.clone()
            };
            let batch = |ids: &[i64]| {
                if key.is_empty() {
                    rows(ids)
                } else {
                    changes(ids, &vec![0; ids.len()])
                }
            };
            let here = SinkTables::new();
            let mut sink = here.sink("t", &key, None);
            sink.open(&context(input.clone(), 0, true)).unwrap();
            sink.write(&batch(&[1, 2])).unwrap();
            sink.pre_commit(CheckpointId(1)).unwrap();
            sink.commit(CheckpointId(1), &[]).unwrap();
            sink.write(&batch(&[3])).unwrap();
            sink.pre_commit(CheckpointId(2)).unwrap();
            let state = sink.snapshot_tables(CheckpointId(2)).unwrap();
            sink.write(&batch(&[4])).unwrap();
            sink.pre_commit(CheckpointId(3)).unwrap();

            // Another process restores checkpoint 2: rows 1-3, not 4.
            let elsewhere = SinkTables::new();
            let mut restored = elsewhere.sink("t", &key, None);
            restored.open(&context(input.clone(), 0, true)).unwrap();
            restored.restore_tables(&state).unwrap();
            restored.recover(Some((CheckpointId(2), &[]))).unwrap();
            assert_eq!(ids(&elsewhere, "t", None), vec![1, 2, 3], "key {key:?}");
        }
    }

    #[test]
    fn memory_sizes_parse_with_units() {
        assert_eq!(parse_memory_size("k", "1048576").unwrap(), 1 << 20);
        assert_eq!(parse_memory_size("k", "64mb").unwrap(), 64 << 20);
        assert_eq!(parse_memory_size("k", "2 GB").unwrap(), 2 << 30);
        assert!(parse_memory_size("k", "lots").is_err());
        assert!(parse_memory_size("k", "5 parsecs").is_err());
    }
}
