//! The bounded Parquet source reader.
//!
//! Every row group of every file is one split, so a single large file still spreads over all
//! subtasks. When the reader is created, each file's footer is read once
//! ([`ArrowReaderMetadata`]) and checked against the declared schema: every declared column must
//! exist in the file (by name; the file may have more columns, which are not read) and its type
//! must be the declared one or safely castable to it (see [`cast_target`]). A missing column or
//! a type mismatch fails the job before it runs, naming the file, the column and both types.
//!
//! Reading uses the synchronous [`ParquetRecordBatchReaderBuilder`] with the declared columns
//! projected and `batch_size` rows per batch, over a read-only mapping of the file
//! ([`map_file`]): column chunks are slices of the page cache, not copies into fresh heap
//! memory (which the kernel zeroes first). A poll returns one batch.
//!
//! With a pushed predicate ([`super::FileSourceSpec::predicate`]), the footers are read with
//! their page index, and [`PruningPredicate`] decides from the statistics which row groups
//! and pages may hold a row that passes it: a row group that cannot is a split done from the
//! start, never opened, and one where some pages cannot is read with a [`RowSelection`] of
//! the others (the reader then skips those pages without decoding them). Both are decided
//! when the reader is created, the same way every time for the same files and predicate.
//!
//! Position: per split, named `<path>#<row group>`, done or the number of its rows already
//! returned (see [`super::split_position`]), so a checkpoint restores at any parallelism;
//! restoring skips those rows with the reader's row offset, which counts the rows of the
//! split's selection, as the returned rows were.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::ArrayRef;
use arrow::compute::{CastOptions, cast_with_options};
use arrow::datatypes::{DataType, FieldRef, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReader,
    ParquetRecordBatchReaderBuilder, RowSelection,
};
use parquet::basic::{Encoding, PageType};
use parquet::file::metadata::PageIndexPolicy;
use tracing::debug;

use super::parquet_pruning::PruningPredicate;
use super::split::assign;
use super::split_position::{self, SplitProgress};
use crate::connector::{SourcePoll, SourceReader};
use crate::expr::Expr;
use crate::{Error, Result};

/// One file: its footer and how to turn its batches into the declared schema.
struct ParquetFile {
    path: PathBuf,
    metadata: ArrowReaderMetadata,
    projection: ProjectionMask,
    /// For each declared column: its index in a projected batch, and the type to cast to if the
    /// file's type differs.
    columns: Vec<(usize, Option<DataType>)>,
    /// The schema of the batches read from it: the declared one, with the `STRING` columns
    /// read as dictionaries (see [`dictionary_columns`]) typed as such.
    schema: SchemaRef,
}

/// A row group of a file.
struct ParquetSplit {
    file: Arc<ParquetFile>,
    row_group: usize,
    /// What the pushed predicate leaves of it to read.
    pruning: Pruning,
}

/// The rows of a split that the pushed predicate leaves to read.
enum Pruning {
    /// All of them (no predicate, or the statistics cannot rule any out).
    Nothing,
    /// The rows of the pages that may hold a passing row.
    Pages(RowSelection),
    /// None: no row can pass, the split is done without being read.
    Whole,
}

impl ParquetSplit {
    /// The split's name in the source position.
    fn key(&self) -> String {
        format!(
            "{}#{}",
            split_position::file_key(&self.file.path),
            self.row_group
        )
    }
}

pub(crate) struct ParquetSourceReader {
    splits: Vec<ParquetSplit>,
    /// Index into `splits` of the split being read (or to open next).
    split: usize,
    /// Rows of the current split already returned.
    rows: usize,
    /// Per split: the rows to skip when it is opened, or done.
    progress: Vec<SplitProgress<usize>>,
    open: Option<ParquetRecordBatchReader>,
    batch_size: usize,
}

impl ParquetSourceReader {
    /// Reads the footers of `files`, validates them against `schema` and keeps the row groups
    /// of `subtask`, pruned with `predicate` (conjuncts of a filter on the rows read, which it
    /// may use in part or not at all). With `dictionaries`, the `STRING` columns that a file
    /// keeps in small dictionaries are read as Arrow dictionaries (see
    /// [`super::FileSourceSpec::dictionaries`]).
    pub(crate) fn try_new(
        schema: SchemaRef,
        files: &[PathBuf],
        subtask: u32,
        parallelism: u32,
        batch_size: usize,
        predicate: Option<&Expr>,
        dictionaries: bool,
    ) -> Result<Self> {
        let pruning = predicate.and_then(|p| PruningPredicate::try_new(p, &schema));
        let mut splits = Vec::new();
        for path in files {
            let file = Arc::new(inspect(path, &schema, pruning.is_some(), dictionaries)?);
            let row_groups = file.metadata.metadata().num_row_groups();
            let keep = match &pruning {
                Some(pruning) => pruning.row_groups(&file.metadata),
                None => vec![true; row_groups],
            };
            splits.extend((0..row_groups).map(|row_group| ParquetSplit {
                file: Arc::clone(&file),
                row_group,
                pruning: if keep.get(row_group).copied().unwrap_or(true) {
                    Pruning::Nothing
                } else {
                    Pruning::Whole
                },
            }));
        }
        let mut splits = assign(splits, subtask, parallelism)?;
        if let Some(pruning) = &pruning {
            for split in &mut splits {
                if !matches!(split.pruning, Pruning::Nothing) {
                    continue;
                }
                if let Some(selection) = pruning.pages(&split.file.metadata, split.row_group) {
                    split.pruning = if selection.selects_any() {
                        Pruning::Pages(selection)
                    } else {
                        Pruning::Whole
                    };
                }
            }
            debug!(
                splits = splits.len(),
                skipped = splits
                    .iter()
                    .filter(|s| matches!(s.pruning, Pruning::Whole))
                    .count(),
                with_pages_skipped = splits
                    .iter()
                    .filter(|s| matches!(s.pruning, Pruning::Pages(_)))
                    .count(),
                "parquet row groups pruned"
            );
        }
        let progress: Vec<SplitProgress<usize>> = splits.iter().map(initial_progress).collect();
        let split = split_position::next_unread(&progress, 0);
        Ok(ParquetSourceReader {
            progress,
            splits,
            split,
            rows: 0,
            open: None,
            batch_size: batch_size.max(1),
        })
    }

    /// The rows of `splits[split]` to skip when it is opened.
    fn start_of_split(&self) -> usize {
        match self.progress.get(self.split) {
            Some(SplitProgress::At(rows)) => *rows,
            Some(SplitProgress::Done) | None => 0,
        }
    }

    /// The file of each split (row group), in split order.
    pub(crate) fn split_paths(&self) -> Vec<PathBuf> {
        self.splits.iter().map(|s| s.file.path.clone()).collect()
    }

    fn open_current(&mut self) -> Result<()> {
        let Some(split) = self.splits.get(self.split) else {
            return Ok(());
        };
        let path = &split.file.path;
        let handle = File::open(path).map_err(|e| Error::io("read", path, e))?;
        let mapped = map_file(&handle).map_err(|e| Error::io("map", path, e))?;
        let mut builder =
            ParquetRecordBatchReaderBuilder::new_with_metadata(mapped, split.file.metadata.clone())
                .with_row_groups(vec![split.row_group])
                .with_projection(split.file.projection.clone())
                .with_batch_size(self.batch_size);
        if let Pruning::Pages(selection) = &split.pruning {
            builder = builder.with_row_selection(selection.clone());
        }
        // The offset counts selected rows, as `rows` does.
        if self.rows > 0 {
            builder = builder.with_offset(self.rows);
        }
        let reader = builder.build().map_err(|source| Error::Parquet {
            context: format!("read parquet file '{}'", path.display()),
            source,
        })?;
        self.open = Some(reader);
        Ok(())
    }

    /// Reorders and casts a projected batch into the declared schema.
    fn adapt(&self, batch: &RecordBatch, file: &ParquetFile) -> Result<RecordBatch> {
        let context = || format!("read parquet file '{}'", file.path.display());
        let options = CastOptions {
            safe: false,
            ..CastOptions::default()
        };
        let mut arrays: Vec<ArrayRef> = Vec::with_capacity(file.columns.len());
        for (index, cast_to) in &file.columns {
            let array = batch.columns().get(*index).ok_or_else(|| {
                Error::Internal(format!(
                    "projected batch of '{}' lacks column {index}",
                    file.path.display()
                ))
            })?;
            arrays.push(match cast_to {
                None => Arc::clone(array),
                Some(to) => cast_with_options(array, to, &options)
                    .map_err(|e| Error::arrow(context(), e))?,
            });
        }
        RecordBatch::try_new(Arc::clone(&file.schema), arrays)
            .map_err(|e| Error::arrow(context(), e))
    }
}

impl SourceReader for ParquetSourceReader {
    /// From the footers: the rows of the row groups not read yet, less what the current one
    /// has given.
    fn remaining_records(&self) -> Option<u64> {
        let rows = |split: &ParquetSplit| match &split.pruning {
            Pruning::Nothing => {
                let groups = split.file.metadata.metadata().row_groups();
                groups
                    .get(split.row_group)
                    .map_or(0, |g| g.num_rows().max(0) as u64)
            }
            Pruning::Pages(selection) => selection.row_count() as u64,
            Pruning::Whole => 0,
        };
        let mut left = 0u64;
        for (index, split) in self.splits.iter().enumerate().skip(self.split) {
            left += match self.progress.get(index) {
                Some(SplitProgress::Done) => 0,
                Some(SplitProgress::At(at)) if index != self.split => {
                    rows(split).saturating_sub(*at as u64)
                }
                _ if index == self.split => rows(split).saturating_sub(self.rows as u64),
                _ => rows(split),
            };
        }
        Some(left)
    }

    fn poll_next(&mut self) -> Result<SourcePoll> {
        loop {
            let Some(split) = self.splits.get(self.split) else {
                return Ok(SourcePoll::Exhausted);
            };
            let file = Arc::clone(&split.file);
            if self.open.is_none() {
                self.open_current()?;
            }
            let next = self.open.as_mut().and_then(Iterator::next);
            match next {
                Some(Ok(batch)) => {
                    self.rows += batch.num_rows();
                    if batch.num_rows() > 0 {
                        return self.adapt(&batch, &file).map(SourcePoll::Batch);
                    }
                }
                Some(Err(e)) => {
                    return Err(Error::arrow(
                        format!("read parquet file '{}'", file.path.display()),
                        e,
                    ));
                }
                None => {
                    self.open = None;
                    self.progress[self.split] = SplitProgress::Done;
                    self.split = split_position::next_unread(&self.progress, self.split + 1);
                    self.rows = self.start_of_split();
                }
            }
        }
    }

    fn current_split(&self) -> usize {
        self.split
    }

    fn position(&self) -> serde_json::Value {
        split_position::encode(self.splits.iter().enumerate().map(|(i, split)| {
            let rows = match self.progress[i] {
                SplitProgress::At(_) if i == self.split => Some(self.rows),
                SplitProgress::At(rows) => Some(rows),
                SplitProgress::Done => None,
            };
            (
                split.key(),
                rows.map(|rows| serde_json::json!({ "rows": rows })),
                0,
            )
        }))
    }

    fn restore(&mut self, position: &serde_json::Value) -> Result<()> {
        for (i, split) in self.splits.iter().enumerate() {
            let (progress, _) = split_position::decode(position, "parquet", &split.key(), |f| {
                f.get("rows")
                    .and_then(serde_json::Value::as_u64)
                    .map(|rows| rows as usize)
            })?;
            // A pruned split is done whatever the checkpoint says: it has no row to read.
            self.progress[i] = match split.pruning {
                Pruning::Whole => SplitProgress::Done,
                Pruning::Nothing | Pruning::Pages(_) => progress,
            };
        }
        self.split = split_position::next_unread(&self.progress, 0);
        self.rows = self.start_of_split();
        self.open = None;
        Ok(())
    }
}

/// Where a split starts: at its first row, or done when the predicate pruned all of it.
fn initial_progress(split: &ParquetSplit) -> SplitProgress<usize> {
    match split.pruning {
        Pruning::Whole => SplitProgress::Done,
        Pruning::Nothing | Pruning::Pages(_) => SplitProgress::At(0),
    }
}

/// Reads the footer of `path` (with the page index, where the file has one, when
/// `page_index`) and maps the declared columns onto the file's columns; with `dictionaries`,
/// those of [`dictionary_columns`] are read as dictionaries.
fn inspect(
    path: &Path,
    schema: &SchemaRef,
    page_index: bool,
    dictionaries: bool,
) -> Result<ParquetFile> {
    let handle = File::open(path).map_err(|e| Error::io("read", path, e))?;
    let options = if page_index {
        ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Optional)
    } else {
        ArrowReaderOptions::default()
    };
    let metadata =
        ArrowReaderMetadata::load(&handle, options.clone()).map_err(|source| Error::Parquet {
            context: format!("read parquet footer of '{}'", path.display()),
            source,
        })?;
    let as_dictionaries = if dictionaries {
        dictionary_columns(&metadata, schema)
    } else {
        Vec::new()
    };
    let metadata = decode_strings_as_declared(metadata, schema, options, &as_dictionaries);
    let file_schema = Arc::clone(metadata.schema());
    let mut batch_fields: Vec<FieldRef> = schema.fields().iter().cloned().collect();
    let location = || format!("file '{}'", path.display());

    // Root indices of the declared columns in the file, and the casts they need.
    let mut roots = Vec::with_capacity(schema.fields().len());
    let mut casts = Vec::with_capacity(schema.fields().len());
    for (index, field) in schema.fields().iter().enumerate() {
        let Ok(root) = file_schema.index_of(field.name()) else {
            return Err(Error::data(
                location(),
                format!(
                    "column '{}' of the declared schema is missing",
                    field.name()
                ),
            ));
        };
        let file_type = file_schema.field(root).data_type();
        if file_type == &string_dictionary() && as_dictionaries.contains(field.name()) {
            batch_fields[index] =
                Arc::new(field.as_ref().clone().with_data_type(string_dictionary()));
            roots.push(root);
            casts.push(None);
            continue;
        }
        let cast = cast_target(file_type, field.data_type()).map_err(|()| {
            Error::data(
                format!("{} column '{}'", location(), field.name()),
                format!(
                    "the file has type {file_type}, which cannot be read as the declared type {}",
                    field.data_type()
                ),
            )
        })?;
        roots.push(root);
        casts.push(cast);
    }

    // A projected batch holds the selected root columns in file order.
    let mut selected = roots.clone();
    selected.sort_unstable();
    selected.dedup();
    let columns = roots
        .iter()
        .zip(casts)
        .map(|(root, cast)| (selected.partition_point(|r| r < root), cast))
        .collect();
    let projection = ProjectionMask::roots(metadata.parquet_schema(), selected.iter().copied());
    Ok(ParquetFile {
        path: path.to_path_buf(),
        metadata,
        projection,
        columns,
        schema: Arc::new(Schema::new_with_metadata(
            batch_fields,
            schema.metadata().clone(),
        )),
    })
}

/// The type a `STRING` column read as a dictionary has.
fn string_dictionary() -> DataType {
    DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8))
}

/// The declared `STRING` columns worth reading as dictionaries: in every row group the file
/// stores the column with a dictionary page at most an eighth the size of its column chunk,
/// and (where the footer says) every data page dictionary-encoded. On TPC-H's files that picks
/// the flags, modes and types (`l_shipmode`: 69 bytes of dictionary for 43 KB of data), and
/// leaves comments and names, whose dictionaries fill up and fall back to plain pages.
fn dictionary_columns(metadata: &ArrowReaderMetadata, schema: &SchemaRef) -> Vec<String> {
    let parquet = metadata.metadata();
    let descriptor = parquet.file_metadata().schema_descr();
    let mut picked = Vec::new();
    for (root, field) in metadata.schema().fields().iter().enumerate() {
        let declared = schema.field_with_name(field.name()).ok();
        if declared.is_none_or(|f| f.data_type() != &DataType::Utf8) {
            continue;
        }
        let leaves: Vec<usize> = (0..descriptor.num_columns())
            .filter(|&leaf| descriptor.get_column_root_idx(leaf) == root)
            .collect();
        let [leaf] = leaves[..] else {
            continue;
        };
        let small = parquet.row_groups().iter().all(|group| {
            let chunk = group.column(leaf);
            let Some(dictionary) = chunk.dictionary_page_offset() else {
                return false;
            };
            let dictionary_bytes = chunk.data_page_offset().saturating_sub(dictionary);
            // Data pages in plain encoding: the dictionary filled up part-way.
            let plain_pages = match (
                chunk.page_encoding_stats(),
                chunk.page_encoding_stats_mask(),
            ) {
                (Some(stats), _) => stats.iter().any(|s| {
                    matches!(s.page_type, PageType::DATA_PAGE | PageType::DATA_PAGE_V2)
                        && s.encoding == Encoding::PLAIN
                }),
                (None, Some(mask)) => mask.is_set(Encoding::PLAIN),
                (None, None) => false,
            };
            !plain_pages && dictionary_bytes * 8 <= chunk.compressed_size()
        });
        if small {
            picked.push(field.name().clone());
        }
    }
    picked
}

/// Has the reader decode string columns the file's Arrow schema stores as view, large or
/// dictionary strings straight into `STRING` where that is the declared type, and the
/// columns of `as_dictionaries` into dictionaries of `STRING`.
///
/// The embedded schema is only a hint: Parquet stores all of them as the same byte arrays, and
/// building the declared type while decoding saves a cast of every batch (on TPC-H Q1 the
/// `Utf8View` to `Utf8` cast of the two group keys took 4% of the run). Should the reader refuse
/// the hint, the file is read with its own schema and its columns are cast as before.
fn decode_strings_as_declared(
    metadata: ArrowReaderMetadata,
    schema: &SchemaRef,
    options: ArrowReaderOptions,
    as_dictionaries: &[String],
) -> ArrowReaderMetadata {
    let file_schema = metadata.schema();
    let mut changed = false;
    let fields: Vec<FieldRef> = file_schema
        .fields()
        .iter()
        .map(|field| {
            let declared = schema.field_with_name(field.name()).ok();
            if as_dictionaries.contains(field.name()) {
                changed |= field.data_type() != &string_dictionary();
                Arc::new(field.as_ref().clone().with_data_type(string_dictionary()))
            } else if declared.is_some_and(|f| f.data_type() == &DataType::Utf8)
                && is_other_string(field.data_type())
            {
                changed = true;
                Arc::new(field.as_ref().clone().with_data_type(DataType::Utf8))
            } else {
                Arc::clone(field)
            }
        })
        .collect();
    if !changed {
        return metadata;
    }
    let hint = Arc::new(Schema::new_with_metadata(
        fields,
        file_schema.metadata().clone(),
    ));
    ArrowReaderMetadata::try_new(Arc::clone(metadata.metadata()), options.with_schema(hint))
        .unwrap_or(metadata)
}

/// A string type other than `STRING` that Parquet byte arrays may be decoded to.
fn is_other_string(data_type: &DataType) -> bool {
    match data_type {
        DataType::LargeUtf8 | DataType::Utf8View => true,
        DataType::Dictionary(_, values) => {
            matches!(
                values.as_ref(),
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
            )
        }
        _ => false,
    }
}

/// `Ok(None)` if a file column of type `from` is read as is, `Ok(Some(to))` if it is cast to the
/// declared type `to` without losing values, `Err(())` if it cannot be read as `to`.
///
/// Safe casts: integer widening (signed to wider signed, unsigned to wider unsigned or signed),
/// integers exactly representable as floats, `FLOAT` to `DOUBLE`, large or view strings and
/// string dictionaries to `STRING`, decimals of the same scale to a larger precision, and
/// timestamps of any unit to the declared unit with the same time zone (a finer unit is
/// truncated: Parquet files often store nanoseconds where the schema declares `TIMESTAMP(3)`).
fn cast_target(from: &DataType, to: &DataType) -> Result<Option<DataType>, ()> {
    use DataType::{
        Dictionary, Float32, Float64, Int8, Int16, Int32, Int64, LargeUtf8, Timestamp, UInt8,
        UInt16, UInt32, UInt64, Utf8, Utf8View,
    };
    if from.equals_datatype(to) {
        return Ok(None);
    }
    let safe = match (from, to) {
        (Int8, Int16 | Int32 | Int64 | Float32 | Float64)
        | (Int16, Int32 | Int64 | Float32 | Float64)
        | (Int32, Int64 | Float64)
        | (UInt8, UInt16 | UInt32 | UInt64 | Int16 | Int32 | Int64 | Float32 | Float64)
        | (UInt16, UInt32 | UInt64 | Int32 | Int64 | Float32 | Float64)
        | (UInt32, UInt64 | Int64 | Float64)
        | (Float32, Float64)
        | (LargeUtf8 | Utf8View, Utf8) => true,
        (Dictionary(_, values), Utf8) => matches!(values.as_ref(), Utf8 | LargeUtf8 | Utf8View),
        (DataType::Decimal128(p1, s1), DataType::Decimal128(p2, s2)) => s1 == s2 && p1 <= p2,
        (Timestamp(_, from_tz), Timestamp(_, to_tz)) => from_tz == to_tz,
        _ => false,
    };
    if safe { Ok(Some(to.clone())) } else { Err(()) }
}

/// The rows of the Parquet files under `path`, from their footers (for the planner's size
/// estimates). `None` when a file cannot be read: the reader reports that, with its name,
/// when the job runs.
pub(crate) fn file_rows(path: &str) -> Option<u64> {
    let mut rows = 0u64;
    for file in super::split::discover_files(path).ok()? {
        let handle = File::open(&file).ok()?;
        let metadata = parquet::file::metadata::ParquetMetaDataReader::new()
            .parse_and_finish(&handle)
            .ok()?;
        rows += u64::try_from(metadata.file_metadata().num_rows()).ok()?;
    }
    Some(rows)
}

/// The whole file as shared bytes backed by a read-only mapping.
fn map_file(file: &File) -> std::io::Result<bytes::Bytes> {
    // SAFETY: the mapping is read-only and private to this reader; Sluice never writes the
    // Parquet files it reads. A file truncated by another process while mapped ends the
    // process with SIGBUS, as it would any reader of a mapped file.
    let map = unsafe { memmap2::Mmap::map(file)? };
    Ok(bytes::Bytes::from_owner(map))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::TimeUnit;

    #[test]
    fn safe_casts() {
        assert_eq!(cast_target(&DataType::Int64, &DataType::Int64), Ok(None));
        assert_eq!(
            cast_target(&DataType::Int32, &DataType::Int64),
            Ok(Some(DataType::Int64))
        );
        assert_eq!(
            cast_target(
                &DataType::Timestamp(TimeUnit::Nanosecond, None),
                &DataType::Timestamp(TimeUnit::Millisecond, None)
            ),
            Ok(Some(DataType::Timestamp(TimeUnit::Millisecond, None)))
        );
        assert!(cast_target(&DataType::Int64, &DataType::Int32).is_err());
        assert!(cast_target(&DataType::Utf8, &DataType::Int64).is_err());
        assert!(cast_target(&DataType::Int64, &DataType::Float64).is_err());
        assert!(cast_target(&DataType::Decimal128(10, 2), &DataType::Decimal128(12, 3)).is_err());
    }
}
