//! The filesystem sink: one part file per subtask in the directory `path`.
//!
//! Subtask `i` writes `part-<i>-0.csv` (or `.parquet`). While it writes, the file is named
//! `.part-<i>-0.csv.inprogress`; the leading dot hides it from readers (the file source skips
//! hidden files), and [`Sink::finish`] closes it, syncs it to disk and renames it to its final
//! name, so a reader never sees a partial part. A subtask that receives no rows writes no file.
//! A re-run into the same directory replaces the parts of the same subtask indices.
//!
//! Checkpoints: `pre_commit` flushes everything written so far to the in-progress file (a
//! Parquet row group is closed) and syncs it, and returns the in-progress file's path. `commit`
//! does nothing yet: the data becomes visible only at `finish`, which suits bounded jobs; rolling
//! parts on checkpoints (Flink's exactly-once file sink) would rename in `commit`.
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
use std::path::PathBuf;

use arrow::csv::{QuoteStyle, WriterBuilder};
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use super::FileFormat;
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
    vertex: String,
    subtask: u32,
    part: Option<PartFile>,
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
}

impl FileSink {
    pub(crate) fn new(dir: PathBuf, format: FileFormat, csv: CsvOptions) -> Self {
        FileSink {
            dir,
            format,
            csv,
            vertex: "filesystem sink".into(),
            subtask: 0,
            part: None,
        }
    }

    fn extension(&self) -> &'static str {
        match self.format {
            FileFormat::Csv => "csv",
            FileFormat::Parquet => "parquet",
        }
    }

    /// Creates the in-progress part file for batches of `batch`'s schema.
    fn start_part(&self, batch: &RecordBatch) -> Result<PartFile> {
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
        let name = format!("part-{}-0.{}", self.subtask, self.extension());
        let in_progress = self.dir.join(format!(".{name}.inprogress"));
        let final_path = self.dir.join(name);
        let file = File::create(&in_progress).map_err(|e| Error::io("create", &in_progress, e))?;
        let sync_handle = file
            .try_clone()
            .map_err(|e| Error::io("open", &in_progress, e))?;
        let writer = match self.format {
            FileFormat::Csv => PartWriter::Csv(Box::new(self.csv_writer(file))),
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
        }
    }

    /// Pushes everything written so far into the file and syncs it.
    fn flush(&mut self) -> Result<()> {
        match &mut self.writer {
            // The arrow CSV writer hands every batch to the file as it is written.
            PartWriter::Csv(_) => {}
            PartWriter::Parquet(writer) => {
                writer.flush().map_err(|source| Error::Parquet {
                    context: format!("flush '{}'", self.in_progress.display()),
                    source,
                })?;
                writer
                    .sync()
                    .map_err(|e| Error::io("write", &self.in_progress, e))?;
            }
        }
        self.sync_handle
            .sync_data()
            .map_err(|e| Error::io("sync", &self.in_progress, e))
    }

    /// Closes the file, syncs it and renames it to its final name.
    fn finish(self) -> Result<()> {
        match self.writer {
            PartWriter::Csv(writer) => drop(writer.into_inner()),
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
        fs::rename(&self.in_progress, &self.final_path)
            .map_err(|e| Error::io("rename", &self.in_progress, e))
    }
}

impl Sink for FileSink {
    fn open(&mut self, ctx: &OperatorContext) -> Result<()> {
        self.vertex.clone_from(&ctx.vertex);
        self.subtask = ctx.subtask.0;
        fs::create_dir_all(&self.dir).map_err(|e| Error::io("create directory", &self.dir, e))
    }

    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        if self.part.is_none() {
            self.part = Some(self.start_part(batch)?);
        }
        match &mut self.part {
            Some(part) => part.write(batch),
            None => Err(Error::Internal("file sink part was not created".into())),
        }
    }

    /// Flushes and syncs the in-progress file; returns its path (empty if nothing was written).
    fn pre_commit(&mut self, _checkpoint: CheckpointId) -> Result<Vec<u8>> {
        match &mut self.part {
            Some(part) => {
                part.flush()?;
                Ok(part.in_progress.to_string_lossy().into_owned().into_bytes())
            }
            None => Ok(Vec::new()),
        }
    }

    /// Nothing to do yet: parts become visible at `finish` (see the module docs).
    fn commit(&mut self, _checkpoint: CheckpointId, _pending: &[u8]) -> Result<()> {
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        match self.part.take() {
            Some(part) => part.finish(),
            None => Ok(()),
        }
    }
}
