//! The filesystem sink: part files per subtask in the directory `path` (with `PARTITIONED BY`
//! columns, in each partition directory `path/k=v/…`, see [`super::partition`]), exactly once.
//!
//! Subtask `i` writes `part-<i>-<c>.csv` (or `.json`, `.parquet`), where `c` is the checkpoint
//! after whose barrier the file's rows came (0 before the first checkpoint, so a job without
//! checkpoints writes one `part-<i>-0.csv`). While it writes, the file is named
//! `.part-<i>-<c>.csv.inprogress`; the leading dot hides it from readers (the file source
//! skips hidden files). A subtask that receives no rows writes no file. A re-run into the same
//! directory replaces the parts of the same names.
//!
//! Checkpoints (two-phase commit, as Flink's file sink): on a barrier `pre_commit` closes every
//! in-progress file, syncs it and returns its names; the next rows go to new files. `commit`
//! (when the checkpoint completed) renames them to their final names; it is idempotent. At the
//! end of input the last files are closed and renamed at once. A job restored from checkpoint
//! `c` first cleans the directory (and its partition directories) up for the subtask indices
//! it now owns (old index `j` belongs to new subtask `j % parallelism`): parts that started
//! before `c` were all finished by barrier `c` and are committed if a crash left them hidden;
//! parts that started at `c` or later hold rows the restored job produces again and are
//! deleted, visible or not.
//!
//! CSV output follows Flink's `csv` format: no header unless `csv.header` is true, fields quoted
//! only when they contain the delimiter, the quote or a line break (a quote inside is doubled,
//! or escaped with `csv.escape-character`), NULL as an empty field or `csv.null-literal`, dates
//! as `YYYY-MM-DD` and timestamps as `YYYY-MM-DD HH:MM:SS.fff`. Parquet output is
//! ZSTD-compressed.
//!
//! The sink accepts only insert-only streams: a batch with a `_row_kind` column (a changelog)
//! fails at the first write, since files cannot retract rows.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use arrow::csv::{QuoteStyle, WriterBuilder};
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use super::FileFormat;
use super::json::JsonOptions;
use super::options::CsvOptions;
use crate::connector::Sink;
use crate::element::ROW_KIND_COLUMN;
use crate::ids::CheckpointId;
use crate::operator::OperatorContext;
use crate::{Error, Result};

pub(crate) struct FileSink {
    dir: PathBuf,
    format: FileFormat,
    csv: CsvOptions,
    json: JsonOptions,
    vertex: String,
    subtask: u32,
    parallelism: u32,
    /// The checkpoint whose barrier came last (or that the job restored from): names the
    /// next part files.
    epoch: u64,
    part: Option<PartFile>,
    /// `PARTITIONED BY` columns; empty for an unpartitioned directory.
    partition_keys: Vec<String>,
    /// The open part of each partition directory (relative to `dir`).
    partitions: std::collections::BTreeMap<String, PartFile>,
    /// Indices of the partition and the data columns, known at the first batch.
    layout: Option<(Vec<usize>, Vec<usize>)>,
    /// `INSERT OVERWRITE`: the job's stamp, put in the names of the parts it writes.
    overwrite: Option<String>,
}

/// The open in-progress part file.
struct PartFile {
    in_progress: PathBuf,
    final_path: PathBuf,
    /// A second handle on the file, to sync it while the writer owns the first.
    sync_handle: File,
    writer: PartWriter,
}

/// Boxed: both writers are large and a sink holds one for its whole life.
enum PartWriter {
    Csv(Box<arrow::csv::Writer<File>>),
    Parquet(Box<ArrowWriter<File>>),
    Json(Box<arrow::json::LineDelimitedWriter<File>>),
}

impl FileSink {
    pub(crate) fn new(dir: PathBuf, format: FileFormat, csv: CsvOptions) -> Self {
        FileSink {
            dir,
            format,
            csv,
            json: JsonOptions::default(),
            vertex: "filesystem sink".into(),
            subtask: 0,
            parallelism: 1,
            epoch: 0,
            part: None,
            partition_keys: Vec::new(),
            partitions: std::collections::BTreeMap::new(),
            layout: None,
            overwrite: None,
        }
    }

    /// `INSERT OVERWRITE`: parts are named `part-<stamp>-<subtask>-0.<ext>`, and at `finish`,
    /// once they are in place, every other visible file and directory of the table's directory
    /// (unpartitioned) or of each partition directory this subtask wrote to (partitioned: only
    /// the partitions that receive rows are replaced, as Flink's dynamic overwrite) is removed.
    /// Every subtask of the job uses the same stamp, so none removes another's new parts.
    pub(crate) fn with_overwrite(mut self, stamp: Option<String>) -> Self {
        self.overwrite = stamp;
        self
    }

    /// Removes what an `INSERT OVERWRITE` replaces in `dir`: visible entries without the
    /// job's stamp (hidden ones, e.g. other subtasks' in-progress parts, stay).
    fn remove_replaced(&self, dir: &std::path::Path, stamp: &str, directories: bool) -> Result<()> {
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io("list directory", dir, e)),
        };
        let own = format!("part-{stamp}-");
        for entry in entries {
            let entry = entry.map_err(|e| Error::io("list directory", dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || name.starts_with('_') || name.starts_with(&own) {
                continue;
            }
            let path = entry.path();
            let kind = entry.file_type().map_err(|e| Error::io("read", &path, e))?;
            let removed = if kind.is_dir() {
                if !directories {
                    continue;
                }
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
            match removed {
                Ok(()) => {}
                // Another subtask of the job removed it first.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("remove", &path, e)),
            }
        }
        Ok(())
    }

    /// Writes rows into `dir/k1=v1/k2=v2/` directories by the values of `keys`, without those
    /// columns (see [`super::partition`]).
    pub(crate) fn with_partition_keys(mut self, keys: Vec<String>) -> Self {
        self.partition_keys = keys;
        self
    }

    fn write_partitioned(&mut self, batch: &RecordBatch) -> Result<()> {
        if self.layout.is_none() {
            self.layout = Some(super::partition::split_columns(
                &batch.schema(),
                &self.partition_keys,
            )?);
        }
        let (keys, data) = self.layout.as_ref().expect("set above");
        let slices = super::partition::split_by_partition(batch, keys, data, &self.partition_keys)?;
        for (relative, slice) in slices {
            if !self.partitions.contains_key(&relative) {
                let dir = self.dir.join(&relative);
                fs::create_dir_all(&dir).map_err(|e| Error::io("create directory", &dir, e))?;
                let part = self.start_part_in(&dir, &slice)?;
                self.partitions.insert(relative.clone(), part);
            }
            if let Some(part) = self.partitions.get_mut(&relative) {
                part.write(&slice)?;
            }
        }
        Ok(())
    }

    /// The options of the `json` format (when it is the format).
    pub(crate) fn with_json(mut self, json: JsonOptions) -> Self {
        self.json = json;
        self
    }

    /// After a restore from checkpoint `restored` (`None`: from the beginning): in `dir` and
    /// its partition directories, commits the parts of this subtask's old indices that started
    /// before it and deletes the others (see the module docs).
    fn clean_up(&self, dir: &Path, restored: Option<u64>) -> Result<()> {
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io("list", dir, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| Error::io("list", dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            let kind = entry.file_type().map_err(|e| Error::io("read", &path, e))?;
            if kind.is_dir() {
                if !self.partition_keys.is_empty() && !name.starts_with(['.', '_']) {
                    self.clean_up(&path, restored)?;
                }
                continue;
            }
            let Some((hidden, subtask, start)) = parse_part_name(&name, self.extension()) else {
                continue;
            };
            if subtask % self.parallelism != self.subtask {
                continue;
            }
            if restored.is_some_and(|c| start < c) {
                if hidden {
                    let final_path =
                        dir.join(format!("part-{subtask}-{start}.{}", self.extension()));
                    fs::rename(&path, &final_path).map_err(|e| Error::io("rename", &path, e))?;
                }
            } else {
                fs::remove_file(&path).map_err(|e| Error::io("remove", &path, e))?;
            }
        }
        Ok(())
    }

    fn extension(&self) -> &'static str {
        match self.format {
            FileFormat::Csv => "csv",
            FileFormat::Parquet => "parquet",
            FileFormat::Json => "json",
        }
    }

    /// Creates the in-progress part file for batches of `batch`'s schema.
    fn start_part(&self, batch: &RecordBatch) -> Result<PartFile> {
        self.start_part_in(&self.dir, batch)
    }

    /// Creates the in-progress part file in `dir`.
    fn start_part_in(&self, dir: &std::path::Path, batch: &RecordBatch) -> Result<PartFile> {
        if batch.schema().index_of(ROW_KIND_COLUMN).is_ok() {
            return Err(Error::plan(
                self.vertex.clone(),
                format!(
                    "the filesystem sink accepts only insert-only input; its input is a \
                     changelog (it has a '{ROW_KIND_COLUMN}' column) and the sink doesn't \
                     support consuming update changes"
                ),
            ));
        }
        let name = match &self.overwrite {
            Some(stamp) => format!("part-{stamp}-{}-0.{}", self.subtask, self.extension()),
            None => format!("part-{}-{}.{}", self.subtask, self.epoch, self.extension()),
        };
        let in_progress = dir.join(format!(".{name}.inprogress"));
        let final_path = dir.join(name);
        let file = File::create(&in_progress).map_err(|e| Error::io("create", &in_progress, e))?;
        let sync_handle = file
            .try_clone()
            .map_err(|e| Error::io("open", &in_progress, e))?;
        let writer = match self.format {
            FileFormat::Csv => PartWriter::Csv(Box::new(self.csv_writer(file))),
            FileFormat::Json => PartWriter::Json(Box::new(self.json.writer(file))),
            FileFormat::Parquet => {
                let properties = WriterProperties::builder()
                    .set_compression(Compression::ZSTD(ZstdLevel::default()))
                    .build();
                let writer = ArrowWriter::try_new(file, batch.schema(), Some(properties)).map_err(
                    |source| Error::Parquet {
                        context: format!("create parquet file '{}'", in_progress.display()),
                        source,
                    },
                )?;
                PartWriter::Parquet(Box::new(writer))
            }
        };
        Ok(PartFile {
            in_progress,
            final_path,
            sync_handle,
            writer,
        })
    }

    fn csv_writer(&self, file: File) -> arrow::csv::Writer<File> {
        let mut builder = WriterBuilder::new()
            .with_header(self.csv.header)
            .with_delimiter(self.csv.field_delimiter)
            .with_date_format("%Y-%m-%d".into())
            .with_datetime_format("%Y-%m-%d %H:%M:%S%.3f".into())
            .with_timestamp_format("%Y-%m-%d %H:%M:%S%.3f".into());
        builder = match self.csv.quote_character {
            Some(quote) => builder.with_quote(quote),
            None => builder.with_quote_style(QuoteStyle::Never),
        };
        if let Some(escape) = self.csv.escape_character {
            builder = builder.with_escape(escape).with_double_quote(false);
        }
        if let Some(null) = &self.csv.null_literal {
            builder = builder.with_null(null.clone());
        }
        builder.build(file)
    }
}

impl PartFile {
    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        match &mut self.writer {
            PartWriter::Csv(writer) => writer
                .write(batch)
                .map_err(|e| Error::arrow(format!("write '{}'", self.in_progress.display()), e)),
            PartWriter::Parquet(writer) => writer.write(batch).map_err(|source| Error::Parquet {
                context: format!("write '{}'", self.in_progress.display()),
                source,
            }),
            PartWriter::Json(writer) => writer
                .write(batch)
                .map_err(|e| Error::arrow(format!("write '{}'", self.in_progress.display()), e)),
        }
    }

    /// Closes the file and syncs it; returns its in-progress and final paths.
    fn close(self) -> Result<(PathBuf, PathBuf)> {
        match self.writer {
            PartWriter::Csv(writer) => drop(writer.into_inner()),
            PartWriter::Json(mut writer) => {
                writer.finish().map_err(|e| {
                    Error::arrow(format!("close '{}'", self.in_progress.display()), e)
                })?;
                drop(writer.into_inner());
            }
            PartWriter::Parquet(writer) => {
                writer.close().map_err(|source| Error::Parquet {
                    context: format!("close '{}'", self.in_progress.display()),
                    source,
                })?;
            }
        }
        self.sync_handle
            .sync_all()
            .map_err(|e| Error::io("sync", &self.in_progress, e))?;
        Ok((self.in_progress, self.final_path))
    }

    /// Closes the file, syncs it and renames it to its final name.
    fn finish(self) -> Result<()> {
        let (in_progress, final_path) = self.close()?;
        fs::rename(&in_progress, &final_path).map_err(|e| Error::io("rename", &in_progress, e))
    }
}

impl Sink for FileSink {
    fn open(&mut self, ctx: &OperatorContext) -> Result<()> {
        self.vertex.clone_from(&ctx.vertex);
        self.subtask = ctx.subtask.0;
        self.parallelism = ctx.parallelism.max(1);
        fs::create_dir_all(&self.dir).map_err(|e| Error::io("create directory", &self.dir, e))
    }

    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        if !self.partition_keys.is_empty() {
            if batch.schema().index_of(ROW_KIND_COLUMN).is_ok() {
                // The same insert-only check as an unpartitioned part's.
                self.start_part(batch)?;
            }
            return self.write_partitioned(batch);
        }
        if self.part.is_none() {
            self.part = Some(self.start_part(batch)?);
        }
        match &mut self.part {
            Some(part) => part.write(batch),
            None => Err(Error::Internal("file sink part was not created".into())),
        }
    }

    /// Closes and syncs the in-progress files; returns a line `<in-progress path>\t<final
    /// path>` per closed file (nothing if nothing was written since the last barrier).
    fn pre_commit(&mut self, checkpoint: CheckpointId) -> Result<Vec<u8>> {
        self.epoch = checkpoint.0;
        let mut pending = String::new();
        let parts = self
            .part
            .take()
            .into_iter()
            .chain(std::mem::take(&mut self.partitions).into_values());
        for part in parts {
            let (in_progress, final_path) = part.close()?;
            pending.push_str(&format!(
                "{}\t{}\n",
                in_progress.display(),
                final_path.display()
            ));
        }
        Ok(pending.into_bytes())
    }

    /// Renames the pre-committed files to their final names; a file is done already if only
    /// its final name exists.
    fn commit(&mut self, _checkpoint: CheckpointId, pending: &[u8]) -> Result<()> {
        let text = String::from_utf8_lossy(pending);
        for line in text.lines() {
            let Some((in_progress, final_path)) = line.split_once('\t') else {
                continue;
            };
            let (in_progress, final_path) = (PathBuf::from(in_progress), PathBuf::from(final_path));
            match fs::rename(&in_progress, &final_path) {
                Ok(()) => {}
                Err(_) if final_path.is_file() => {}
                Err(e) => return Err(Error::io("commit part file", &in_progress, e)),
            }
        }
        Ok(())
    }

    fn recover(&mut self, restored: Option<(CheckpointId, &[u8])>) -> Result<()> {
        let checkpoint = restored.map(|(c, _)| c.0);
        self.epoch = checkpoint.unwrap_or(0);
        self.clean_up(&self.dir, checkpoint)
    }

    fn finish(&mut self) -> Result<()> {
        let written: Vec<String> = self.partitions.keys().cloned().collect();
        for part in std::mem::take(&mut self.partitions).into_values() {
            part.finish()?;
        }
        if let Some(part) = self.part.take() {
            part.finish()?;
        }
        if let Some(stamp) = &self.overwrite {
            if self.partition_keys.is_empty() {
                self.remove_replaced(&self.dir, stamp, true)?;
            } else {
                for relative in &written {
                    self.remove_replaced(&self.dir.join(relative), stamp, false)?;
                }
            }
        }
        Ok(())
    }
}

/// `(hidden, subtask, start)` of a part file name of this sink (`part-<i>-<c>.<ext>`, or
/// `.part-<i>-<c>.<ext>.inprogress` while in progress); `None` for any other file.
fn parse_part_name(name: &str, extension: &str) -> Option<(bool, u32, u64)> {
    let (hidden, rest) = match name.strip_prefix('.') {
        Some(rest) => (true, rest.strip_suffix(".inprogress")?),
        None => (false, name),
    };
    let rest = rest
        .strip_prefix("part-")?
        .strip_suffix(extension)?
        .strip_suffix('.')?;
    let (subtask, start) = rest.split_once('-')?;
    Some((hidden, subtask.parse().ok()?, start.parse().ok()?))
}

#[cfg(test)]
mod part_name_tests {
    use super::parse_part_name;

    #[test]
    fn part_names_parse() {
        assert_eq!(
            parse_part_name("part-3-12.csv", "csv"),
            Some((false, 3, 12))
        );
        assert_eq!(
            parse_part_name(".part-0-7.csv.inprogress", "csv"),
            Some((true, 0, 7))
        );
        assert_eq!(parse_part_name("part-0-7.parquet", "csv"), None);
        assert_eq!(parse_part_name("_SUCCESS", "csv"), None);
        assert_eq!(parse_part_name(".part-x-1.csv.inprogress", "csv"), None);
    }
}
