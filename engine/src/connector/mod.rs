//! Sources and sinks.
//!
//! A source is split-based and non-blocking: each subtask gets a [`SourceReader`] for its share
//! of the splits, and the slot thread polls it; a poll returns a batch, `Pending` (nothing yet,
//! e.g. rate-limited), `Idle` (this reader has no data for now; for watermark idleness) or
//! `Exhausted`. A reader reports its position for checkpoints and can be restored to one.
//!
//! A sink receives whole batches ([`Sink::write`]); on a checkpoint barrier it pre-commits
//! (its result goes into the checkpoint) and it commits when the checkpoint completes.
//! `commit` and `abort` are idempotent.
//!
//! [`SourceSpec`] and [`SinkSpec`] are the serialisable descriptions that live in a JobGraph.

mod blackhole;
mod collect;
mod datagen;
pub mod filesystem;
mod memory;
mod nexmark;
mod print;
pub mod sink_table;
mod text;
mod upsert;

pub use collect::CollectedResults;
pub use datagen::DatagenSource;
pub use filesystem::{FileFormat, FileSinkSpec, FileSourceSpec};
pub use memory::MemorySource;
pub use nexmark::NexmarkSource;
pub use print::PrintSink;
pub use sink_table::{SinkTableDescription, SinkTables};
pub use text::{LINE_COLUMN, TextFileSource};
pub use upsert::UpsertTable;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};

use crate::Result;
use crate::ids::CheckpointId;
use crate::operator::OperatorContext;

/// The result of polling a source reader.
#[derive(Debug)]
pub enum SourcePoll {
    /// A non-empty batch.
    Batch(RecordBatch),
    /// Nothing now; poll again soon (the reader is rate-limited or waiting for data).
    Pending,
    /// Nothing for a while; downstream may exclude this reader from watermarks after the idle
    /// timeout.
    Idle,
    /// No more data, ever (bounded input).
    Exhausted,
}

/// One subtask's reader over its splits.
///
/// Runs on the slot thread: `poll_next` must not block for long (read one batch's worth of
/// data and return). Errors name the source, file and place.
pub trait SourceReader: Send {
    fn poll_next(&mut self) -> Result<SourcePoll>;

    /// The read position, stored in checkpoints.
    fn position(&self) -> serde_json::Value;

    /// Moves to a position taken by [`SourceReader::position`] of the same spec and subtask.
    fn restore(&mut self, position: &serde_json::Value) -> Result<()>;

    /// Rows skipped under an opt-in skip policy (malformed input).
    fn skipped_records(&self) -> u64 {
        0
    }

    /// The split (index among this reader's splits) the last batch came from. Readers read
    /// their splits one after another and a batch never spans two splits; the source task
    /// keeps a watermark generator per split and starts a fresh one when the split changes.
    /// Readers with a single split keep the default.
    fn current_split(&self) -> usize {
        0
    }

    /// Rows this reader has still to read, when it knows without reading them (a bounded
    /// generator, Parquet footers); `None` for unbounded or unknown input. Progress reports
    /// use it.
    fn remaining_records(&self) -> Option<u64> {
        None
    }
}

/// A sink. Runs on the slot thread of its subtask.
pub trait Sink: Send {
    fn open(&mut self, ctx: &OperatorContext) -> Result<()> {
        let _ = ctx;
        Ok(())
    }

    fn write(&mut self, batch: &RecordBatch) -> Result<()>;

    /// Flushes what was written before the barrier of `checkpoint` and returns what is needed
    /// to commit it later (e.g. names of in-progress files), stored in the checkpoint.
    fn pre_commit(&mut self, checkpoint: CheckpointId) -> Result<Vec<u8>> {
        let _ = checkpoint;
        Ok(Vec::new())
    }

    /// Makes the data of `checkpoint` visible. Idempotent.
    fn commit(&mut self, checkpoint: CheckpointId, pending: &[u8]) -> Result<()> {
        let _ = (checkpoint, pending);
        Ok(())
    }

    /// A restarted job resumes from `restored` (the checkpoint and this subtask's pre-commit
    /// data in it), or from the beginning (`None`). Commits what the checkpoint pre-committed
    /// (its completion may not have reached the failed attempt) and discards anything staged
    /// after it. The default commits.
    fn recover(&mut self, restored: Option<(CheckpointId, &[u8])>) -> Result<()> {
        match restored {
            Some((checkpoint, pending)) => self.commit(checkpoint, pending),
            None => Ok(()),
        }
    }

    /// State the sink keeps in a checkpoint beside its pre-commit (written as state files):
    /// called right after `pre_commit(checkpoint)`. The default keeps none.
    fn snapshot_tables(
        &mut self,
        checkpoint: CheckpointId,
    ) -> Result<Vec<crate::state::SnapshotTable>> {
        let _ = checkpoint;
        Ok(Vec::new())
    }

    /// The tables [`Sink::snapshot_tables`] put into the checkpoint a restarted job resumes
    /// from; called before [`Sink::recover`]. The default ignores them.
    fn restore_tables(&mut self, tables: &[crate::state::SnapshotTable]) -> Result<()> {
        let _ = tables;
        Ok(())
    }

    /// Discards pre-committed data of a failed checkpoint. Idempotent.
    fn abort(&mut self, checkpoint: CheckpointId, pending: &[u8]) -> Result<()> {
        let _ = (checkpoint, pending);
        Ok(())
    }

    /// End of input: flush and finalise everything.
    fn finish(&mut self) -> Result<()>;
}

/// Where a source reads from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "connector", rename_all = "snake_case")]
pub enum SourceSpec {
    /// Files in a path (a file or a directory of files), bounded.
    Filesystem(FileSourceSpec),
    /// Batches held in the graph itself (tests, small lookup data).
    Memory(MemorySource),
    /// Lines of text files, one `line` column.
    TextFile(TextFileSource),
    /// One table of the Nexmark benchmark's generator.
    Nexmark(NexmarkSource),
    /// Flink's `datagen` connector.
    Datagen(DatagenSource),
}

impl SourceSpec {
    /// How many rows a bounded source produces, where it is known before reading (Parquet
    /// footers, batches held in the graph); for the planner's size estimates.
    pub fn estimated_rows(&self) -> Option<u64> {
        match self {
            SourceSpec::Filesystem(spec) => spec.estimated_rows(),
            SourceSpec::Memory(spec) => Some(spec.rows() as u64),
            SourceSpec::TextFile(_) | SourceSpec::Nexmark(_) | SourceSpec::Datagen(_) => None,
        }
    }

    /// The schema of the rows this source produces.
    pub fn schema(&self) -> Result<SchemaRef> {
        match self {
            SourceSpec::Filesystem(spec) => Ok(spec.schema.clone()),
            SourceSpec::Memory(spec) => Ok(spec.schema()),
            SourceSpec::TextFile(spec) => Ok(spec.schema()),
            SourceSpec::Nexmark(spec) => Ok(spec.schema()),
            SourceSpec::Datagen(spec) => {
                spec.config()?;
                Ok(spec.schema.clone())
            }
        }
    }

    /// A reader for `subtask` of `parallelism`, producing batches of at most `batch_size` rows.
    pub fn create_reader(
        &self,
        subtask: u32,
        parallelism: u32,
        batch_size: usize,
    ) -> Result<Box<dyn SourceReader>> {
        match self {
            SourceSpec::Filesystem(spec) => spec.create_reader(subtask, parallelism, batch_size),
            SourceSpec::Memory(spec) => Ok(Box::new(spec.reader(subtask, parallelism))),
            SourceSpec::TextFile(spec) => {
                Ok(Box::new(spec.reader(subtask, parallelism, batch_size)?))
            }
            SourceSpec::Nexmark(spec) => {
                Ok(Box::new(spec.reader(subtask, parallelism, batch_size)?))
            }
            SourceSpec::Datagen(spec) => {
                Ok(Box::new(spec.reader(subtask, parallelism, batch_size)?))
            }
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            SourceSpec::Filesystem(_) => "filesystem",
            SourceSpec::Memory(_) => "memory",
            SourceSpec::TextFile(_) => "text-file",
            SourceSpec::Nexmark(_) => "nexmark",
            SourceSpec::Datagen(_) => "datagen",
        }
    }
}

/// Where a sink writes to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "connector", rename_all = "snake_case")]
pub enum SinkSpec {
    /// Prints rows to standard output (or error) as Flink's `print` connector does.
    Print {
        /// `print-identifier`: a prefix for every line.
        identifier: Option<String>,
        /// `standard-error`: print to stderr instead of stdout.
        standard_error: bool,
    },
    /// Discards everything (for throughput measurements).
    Blackhole,
    /// Writes files into a directory.
    Filesystem(FileSinkSpec),
    /// Keeps the batches in memory under `name` for the caller to read after the job
    /// ([`CollectedResults`]). For tests and examples.
    Collect { name: String },
    /// Applies the input changelog by `primary_key` and hands the resulting table to the
    /// collected results under `name` at end of input ([`UpsertTable`]).
    Upsert {
        name: String,
        primary_key: Vec<String>,
    },
    /// Keeps the rows in memory as sink table `name` for Arrow Flight clients
    /// ([`sink_table`]): append-only, or upserted by `primary_key` when it is not empty;
    /// bounded by `max_bytes` when set.
    Flight {
        name: String,
        #[serde(default)]
        primary_key: Vec<String>,
        #[serde(default)]
        max_bytes: Option<u64>,
    },
}

/// Shared, per-job resources sinks may need.
#[derive(Debug, Clone, Default)]
pub struct SinkResources {
    pub collected: CollectedResults,
    pub sink_tables: SinkTables,
}

impl SinkSpec {
    pub fn create_sink(&self, resources: &SinkResources) -> Result<Box<dyn Sink>> {
        Ok(match self {
            SinkSpec::Print {
                identifier,
                standard_error,
            } => Box::new(PrintSink::new(identifier.clone(), *standard_error)),
            SinkSpec::Blackhole => Box::new(blackhole::BlackholeSink),
            SinkSpec::Filesystem(spec) => spec.create_sink()?,
            SinkSpec::Collect { name } => Box::new(resources.collected.sink(name)),
            SinkSpec::Upsert { name, primary_key } => Box::new(upsert::UpsertSink::new(
                name,
                primary_key,
                resources.collected.clone(),
            )),
            SinkSpec::Flight {
                name,
                primary_key,
                max_bytes,
            } => Box::new(resources.sink_tables.sink(name, primary_key, *max_bytes)),
        })
    }

    pub fn name(&self) -> &'static str {
        match self {
            SinkSpec::Print { .. } => "print",
            SinkSpec::Blackhole => "blackhole",
            SinkSpec::Filesystem(_) => "filesystem",
            SinkSpec::Collect { .. } => "collect",
            SinkSpec::Upsert { .. } => "upsert",
            SinkSpec::Flight { .. } => "flight",
        }
    }

    /// Whether the sink accepts a changelog (rows with a `_row_kind` other than `+I`). Sinks
    /// that do not are rejected at graph build when their input is updating.
    pub fn accepts_updates(&self) -> bool {
        match self {
            SinkSpec::Print { .. }
            | SinkSpec::Blackhole
            | SinkSpec::Collect { .. }
            | SinkSpec::Upsert { .. } => true,
            SinkSpec::Flight { primary_key, .. } => !primary_key.is_empty(),
            SinkSpec::Filesystem(_) => false,
        }
    }

    /// Checks the sink against its input schema.
    pub fn validate(&self, input: &arrow::datatypes::Schema) -> Result<()> {
        if input.index_of(crate::element::ROW_KIND_COLUMN).is_ok() && !self.accepts_updates() {
            return Err(crate::Error::expr(format!(
                "the {} sink accepts only insert-only input, but its input is a changelog \
                 (it carries updates and deletes, e.g. from a non-windowed aggregation or a \
                 regular join); write it to an upsert sink with a primary key instead",
                self.name()
            )));
        }
        match self {
            SinkSpec::Upsert { primary_key, .. } => {
                UpsertTable::try_new(input, primary_key)?;
            }
            SinkSpec::Flight { primary_key, .. } if !primary_key.is_empty() => {
                UpsertTable::try_new(input, primary_key)?;
            }
            _ => {}
        }
        Ok(())
    }
}
