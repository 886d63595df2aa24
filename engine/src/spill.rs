//! Managed memory and spilling: the share of `taskmanager.memory.managed.size` one operator
//! instance may hold, and the Arrow IPC files it writes what does not fit to.
//!
//! Flink gives each slot an equal part of a TaskManager's managed memory and splits a slot's
//! part among the memory-consuming operators of the job (hash joins, sorts, aggregations); so
//! does Sluice. An operator measures the batches and tables it holds itself and compares them
//! with [`MemoryBudget::limit`]; there is no allocator-level enforcement, so the budget bounds
//! what an operator keeps, not every transient buffer of a kernel call.
//!
//! A spill file is an Arrow IPC stream in the directory of `io.tmp.dirs`, written through a
//! buffered writer, read back batch by batch, and deleted when its [`SpillFile`] is dropped
//! (also when the job fails).

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};

use arrow::datatypes::SchemaRef;
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use arrow::record_batch::RecordBatch;
use tempfile::TempPath;

use crate::{Error, Result};

/// The write buffer of each open spill file: small, as a partitioning operator keeps dozens
/// of files open at once.
pub const WRITE_BUFFER_BYTES: usize = 64 << 10;

/// The read buffer of each spill file being read back.
pub const READ_BUFFER_BYTES: usize = 256 << 10;

/// How much memory one operator instance may hold, and where it spills the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryBudget {
    /// Bytes this instance may hold; `None`: no limit (nothing spills).
    limit: Option<usize>,
    dir: PathBuf,
}

impl Default for MemoryBudget {
    fn default() -> Self {
        MemoryBudget::unlimited()
    }
}

impl MemoryBudget {
    /// A budget that never asks to spill (tests, operators outside a job).
    pub fn unlimited() -> Self {
        MemoryBudget {
            limit: None,
            dir: std::env::temp_dir(),
        }
    }

    /// A budget of `bytes`, spilling into `dir`.
    pub fn new(bytes: usize, dir: impl Into<PathBuf>) -> Self {
        MemoryBudget {
            limit: Some(bytes.max(1)),
            dir: dir.into(),
        }
    }

    /// The bytes this instance may hold, if limited.
    pub fn limit(&self) -> Option<usize> {
        self.limit
    }

    /// Whether holding `bytes` is more than the budget allows.
    pub fn exceeded_by(&self, bytes: usize) -> bool {
        self.limit.is_some_and(|limit| bytes > limit)
    }

    /// The directory spill files go to.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Starts a new spill file for batches of `schema`; `what` names the operator and the
    /// purpose in error messages and in the file's name.
    pub fn spill_writer(&self, what: &str, schema: &SchemaRef) -> Result<SpillWriter> {
        SpillWriter::create(&self.dir, what, schema)
    }
}

/// Parses a memory size as Flink writes it: a number with an optional unit, `b`, `k`/`kb`,
/// `m`/`mb`, `g`/`gb`, `t`/`tb` (binary multiples, any case, spaces allowed); no unit means
/// bytes.
pub fn parse_memory_size(value: &str) -> std::result::Result<u64, String> {
    let text = value.trim().to_ascii_lowercase();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("'{value}' is no memory size (expected e.g. 64mb, 1g, 4096)"))?;
    let shift = match unit.trim() {
        "" | "b" | "bytes" => 0,
        "k" | "kb" | "kibibytes" => 10,
        "m" | "mb" | "mebibytes" => 20,
        "g" | "gb" | "gibibytes" => 30,
        "t" | "tb" | "tebibytes" => 40,
        other => {
            return Err(format!(
                "'{value}': unknown unit '{other}' (expected b, kb, mb, gb or tb)"
            ));
        }
    };
    number
        .checked_mul(1 << shift)
        .ok_or_else(|| format!("'{value}' is too large"))
}

/// An open spill file being written.
pub struct SpillWriter {
    what: String,
    writer: StreamWriter<BufWriter<File>>,
    path: TempPath,
    rows: usize,
    batches: usize,
    /// Batches smaller than this many rows are gathered and written as one (0: never).
    coalesce: usize,
    pending: Vec<RecordBatch>,
    pending_rows: usize,
}

impl SpillWriter {
    /// Starts a new spill file in `dir` for batches of `schema`; `what` names the operator
    /// and the purpose in error messages and in the file's name.
    pub fn create(dir: &Path, what: &str, schema: &SchemaRef) -> Result<SpillWriter> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io("create the spill directory", dir, e))?;
        let prefix: String = what
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .take(40)
            .collect();
        let file = tempfile::Builder::new()
            .prefix(&format!("sluice-spill-{prefix}-"))
            .suffix(".arrows")
            .tempfile_in(dir)
            .map_err(|e| Error::io("create a spill file", dir, e))?;
        let (file, path) = file.into_parts();
        let writer =
            StreamWriter::try_new(BufWriter::with_capacity(WRITE_BUFFER_BYTES, file), schema)
                .map_err(|e| {
                    Error::arrow(format!("{what}: start spill file {}", path.display()), e)
                })?;
        Ok(SpillWriter {
            what: what.to_string(),
            writer,
            path,
            rows: 0,
            batches: 0,
            coalesce: 0,
            pending: Vec::new(),
            pending_rows: 0,
        })
    }

    /// Gathers written batches until they hold `rows` rows and writes them as one: a
    /// partitioning operator writes a small slice of each input batch to each file, and
    /// reading many small batches back costs more than the copy. The pending slices keep
    /// their batches alive until written.
    pub fn coalescing(mut self, rows: usize) -> Self {
        self.coalesce = rows;
        self
    }

    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        if batch.num_rows() < self.coalesce {
            self.pending_rows += batch.num_rows();
            self.pending.push(batch.clone());
            if self.pending_rows >= self.coalesce {
                self.write_pending()?;
            }
            return Ok(());
        }
        self.write_pending()?;
        self.write_batch(batch)
    }

    /// Writes the gathered batches as one.
    pub fn write_pending(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let schema = self.pending[0].schema();
        let one = arrow::compute::concat_batches(&schema, &self.pending)
            .map_err(|e| Error::arrow(format!("{}: gather batches to spill", self.what), e))?;
        self.pending.clear();
        self.pending_rows = 0;
        self.write_batch(&one)
    }

    fn write_batch(&mut self, batch: &RecordBatch) -> Result<()> {
        self.writer.write(batch).map_err(|e| {
            Error::arrow(
                format!("{}: write spill file {}", self.what, self.path.display()),
                e,
            )
        })?;
        self.rows += batch.num_rows();
        self.batches += 1;
        Ok(())
    }

    /// Rows written so far (gathered ones not counted until written).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Batches written so far (gathered ones not counted until written).
    pub fn batches(&self) -> usize {
        self.batches
    }

    /// Closes the file for reading.
    pub fn finish(mut self) -> Result<SpillFile> {
        self.write_pending()?;
        let SpillWriter {
            what,
            writer,
            path,
            rows,
            batches,
            ..
        } = self;
        // `into_inner` writes the end-of-stream marker and flushes the IPC writer.
        let buffered = writer.into_inner().map_err(|e| {
            Error::arrow(format!("{what}: finish spill file {}", path.display()), e)
        })?;
        let file = buffered
            .into_inner()
            .map_err(|e| Error::io("flush a spill file", path.to_path_buf(), e.into_error()))?;
        let bytes = file
            .metadata()
            .map_err(|e| Error::io("read the size of a spill file", path.to_path_buf(), e))?
            .len();
        drop(file);
        Ok(SpillFile {
            what,
            path,
            rows,
            batches,
            bytes,
        })
    }
}

/// A finished spill file; deleted when dropped.
#[derive(Debug)]
pub struct SpillFile {
    what: String,
    path: TempPath,
    rows: usize,
    batches: usize,
    bytes: u64,
}

impl SpillFile {
    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn batches(&self) -> usize {
        self.batches
    }

    /// Size of the file on disk.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Reads the batches back, in the order they were written.
    pub fn read(&self) -> Result<SpillReader> {
        let file = File::open(&self.path)
            .map_err(|e| Error::io("open a spill file", self.path.to_path_buf(), e))?;
        let reader = StreamReader::try_new(BufReader::with_capacity(READ_BUFFER_BYTES, file), None)
            .map_err(|e| {
                Error::arrow(
                    format!("{}: read spill file {}", self.what, self.path.display()),
                    e,
                )
            })?;
        Ok(SpillReader {
            what: self.what.clone(),
            path: self.path.to_path_buf(),
            reader,
        })
    }

    /// Reads every batch back.
    pub fn read_all(&self) -> Result<Vec<RecordBatch>> {
        self.read()?.collect()
    }
}

/// The batches of a [`SpillFile`], one at a time.
pub struct SpillReader {
    what: String,
    path: PathBuf,
    reader: StreamReader<BufReader<File>>,
}

impl Iterator for SpillReader {
    type Item = Result<RecordBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        self.reader.next().map(|batch| {
            batch.map_err(|e| {
                Error::arrow(
                    format!("{}: read spill file {}", self.what, self.path.display()),
                    e,
                )
            })
        })
    }
}

/// The spill directory of Flink's `io.tmp.dirs` (a list separated by `,` or `:`): the first
/// one; `None` when it names none.
pub fn first_tmp_dir(value: &str) -> Option<PathBuf> {
    let first = value.split([',', ':']).next().unwrap_or_default().trim();
    (!first.is_empty()).then(|| PathBuf::from(first))
}

/// What [`gather_partitions`] leaves out.
pub const SKIP_ROW: u32 = u32::MAX;

/// The rows of `batch` gathered partition by partition with one `take` (a counting sort):
/// `partition[i]` is row `i`'s partition below `partitions`, or [`SKIP_ROW`]. Returns the
/// gathered rows and where each partition starts in them: partition `p` is rows
/// `starts[p]..starts[p + 1]`, a zero-copy slice to write to its spill file.
pub fn gather_partitions(
    batch: &RecordBatch,
    partition: &[u32],
    partitions: usize,
) -> Result<(RecordBatch, Vec<usize>)> {
    let mut starts = vec![0usize; partitions + 1];
    for &p in partition.iter().filter(|&&p| p != SKIP_ROW) {
        starts[p as usize + 1] += 1;
    }
    for p in 0..partitions {
        starts[p + 1] += starts[p];
    }
    let mut next = starts.clone();
    let mut order = vec![0u32; starts[partitions]];
    for (row, &p) in partition.iter().enumerate() {
        if p != SKIP_ROW {
            order[next[p as usize]] = row as u32;
            next[p as usize] += 1;
        }
    }
    let gathered =
        arrow::compute::take_record_batch(batch, &arrow::array::UInt32Array::from(order))
            .map_err(|e| Error::arrow("gather rows by spill partition", e))?;
    Ok((gathered, starts))
}

/// The bytes `batch` holds: for each column, the bytes of its slice of the buffers, so that
/// slices of one large batch (as sources, exchanges and sorts emit) are not each counted at
/// the size of the whole.
pub fn batch_memory(batch: &RecordBatch) -> usize {
    batch
        .columns()
        .iter()
        .map(|column| {
            column
                .to_data()
                .get_slice_memory_size()
                .unwrap_or_else(|_| column.get_array_memory_size())
        })
        .sum()
}

/// The bytes `batches` hold ([`batch_memory`] of each).
pub fn batches_memory(batches: &[RecordBatch]) -> usize {
    batches.iter().map(batch_memory).sum()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    #[test]
    fn memory_sizes_parse_as_flink_writes_them() {
        assert_eq!(parse_memory_size("4096"), Ok(4096));
        assert_eq!(parse_memory_size("64mb"), Ok(64 << 20));
        assert_eq!(parse_memory_size("64 MB"), Ok(64 << 20));
        assert_eq!(parse_memory_size("1g"), Ok(1 << 30));
        assert_eq!(parse_memory_size("512k"), Ok(512 << 10));
        assert!(
            parse_memory_size("lots")
                .unwrap_err()
                .contains("no memory size")
        );
        assert!(
            parse_memory_size("3 parsecs")
                .unwrap_err()
                .contains("unknown unit")
        );
        assert!(
            parse_memory_size("99999999999tb")
                .unwrap_err()
                .contains("too large")
        );
    }

    #[test]
    fn a_spill_file_reads_back_what_was_written_and_goes_when_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let budget = MemoryBudget::new(1 << 20, dir.path().join("spill"));
        assert!(budget.exceeded_by(2 << 20));
        assert!(!budget.exceeded_by(1 << 20));
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, false),
            Field::new("s", DataType::Utf8, true),
        ]));
        let batch = |from: i64| {
            RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(Int64Array::from_iter_values(from..from + 3)),
                    Arc::new(StringArray::from(vec![Some("a"), None, Some("c")])),
                ],
            )
            .unwrap()
        };
        let mut writer = budget.spill_writer("join build/side 0", &schema).unwrap();
        writer.write(&batch(0)).unwrap();
        writer.write(&batch(10)).unwrap();
        let file = writer.finish().unwrap();
        assert_eq!((file.rows(), file.batches()), (6, 2));
        assert!(file.bytes() > 0);
        assert_eq!(file.read_all().unwrap(), vec![batch(0), batch(10)]);
        let path = file.path.to_path_buf();
        assert!(path.exists());
        drop(file);
        assert!(!path.exists(), "a dropped spill file is deleted");

        // Coalescing: ten batches of 3 rows written as batches of at least 8.
        let mut writer = budget
            .spill_writer("partition", &schema)
            .unwrap()
            .coalescing(8);
        for i in 0..10 {
            writer.write(&batch(i * 3)).unwrap();
        }
        let file = writer.finish().unwrap();
        assert_eq!((file.rows(), file.batches()), (30, 4));
        let back = file.read_all().unwrap();
        let keys: Vec<i64> = back
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
        let expected: Vec<i64> = (0..10).flat_map(|i| i * 3..i * 3 + 3).collect();
        assert_eq!(keys, expected, "rows in the order written");
    }
}
