//! The bounded CSV source reader: this subtask's files, one batch per poll.
//!
//! Each file is one split. A poll reads up to `batch_size` records of the current file into a
//! reused buffer of [`ByteRecord`]s (the `csv` crate does the quoting, escapes and comments),
//! checks each record's field count, then builds the batch column by column with
//! [`ColumnBuilder`]. A batch never spans two files, so the last batch of a file may be short.
//!
//! Malformed rows (wrong field count, unparsable value, NULL in a NOT NULL column) fail the job
//! with an [`Error::Data`] naming the file, the 1-based line where the record starts and the
//! column. With `csv.ignore-parse-errors` they are dropped instead, counted in
//! [`SourceReader::skipped_records`] and logged at a decaying rate (when the count reaches a
//! power of two), never per row.
//!
//! Position: per file (split), named by its path, done or the `csv` crate's position of the
//! next unread record (byte offset, line and record number), see [`super::split_position`].
//! Restoring seeks to that byte offset, so no rows are re-read, whichever subtask read the
//! file before; it assumes the files have not changed since the checkpoint.

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::PathBuf;

use ::csv::{ByteRecord, Position, Reader, ReaderBuilder};
use arrow::array::{ArrayRef, BooleanArray};
use arrow::compute::filter;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use tracing::warn;

use super::csv_column::sql_type_name;
use super::csv_column::{ColumnBuilder, FieldRules, RejectReason, Rejected, Rejects};
use super::options::CsvOptions;
use super::split_position::{self, SplitProgress};
use crate::connector::{SourcePoll, SourceReader};
use crate::{Error, Result};

/// Read buffer of the `csv` crate; large enough that a batch is a handful of `read` calls.
const READ_BUFFER_BYTES: usize = 256 * 1024;

pub(crate) struct CsvSourceReader {
    schema: SchemaRef,
    options: CsvOptions,
    files: Vec<PathBuf>,
    /// Index into `files` of the file being read (or to open next).
    file: usize,
    /// Where the next unread record of `files[file]` starts.
    resume: Position,
    /// Per file: where reading starts when it is opened, or done. For `files[file]` it is where
    /// the file was opened; `resume` has moved on since.
    progress: Vec<SplitProgress<Position>>,
    /// Rows skipped as malformed, per file.
    skipped_in: Vec<u64>,
    open: Option<Reader<File>>,
    batch_size: usize,
    /// Reused record buffers; the first `filled` of them hold the current batch.
    records: Vec<ByteRecord>,
    columns: Vec<ColumnBuilder>,
    rejects: Rejects,
    skipped: u64,
    /// The file the last returned batch came from.
    batch_file: usize,
}

impl CsvSourceReader {
    pub(crate) fn try_new(
        schema: SchemaRef,
        options: CsvOptions,
        files: Vec<PathBuf>,
        batch_size: usize,
    ) -> Result<Self> {
        let batch_size = batch_size.max(1);
        let columns = schema
            .fields()
            .iter()
            .map(|field| ColumnBuilder::try_new(field, batch_size))
            .collect::<Result<Vec<_>>>()?;
        Ok(CsvSourceReader {
            schema,
            options,
            progress: vec![SplitProgress::At(Position::new()); files.len()],
            skipped_in: vec![0; files.len()],
            files,
            file: 0,
            resume: Position::new(),
            open: None,
            batch_size,
            records: Vec::new(),
            columns,
            rejects: Rejects::default(),
            skipped: 0,
            batch_file: 0,
        })
    }

    /// Where `files[file]` is to be read from when it is opened.
    fn start_of_file(&self) -> Position {
        match self.progress.get(self.file) {
            Some(SplitProgress::At(start)) => start.clone(),
            Some(SplitProgress::Done) | None => Position::new(),
        }
    }

    fn path(&self) -> &std::path::Path {
        self.files
            .get(self.file)
            .map_or(std::path::Path::new(""), PathBuf::as_path)
    }

    fn location(&self, line: u64) -> String {
        format!("file '{}' line {line}", self.path().display())
    }

    fn csv_error(&self, err: ::csv::Error) -> Error {
        let line = err.position().map_or(self.resume.line(), Position::line);
        let message = err.to_string();
        match err.into_kind() {
            ::csv::ErrorKind::Io(source) => Error::io("read", self.path(), source),
            _ => Error::data(self.location(line), message),
        }
    }

    /// The 1-based line where a record starts. Error path only.
    ///
    /// The `csv` crate stamps a record with the position where it started looking for it, which
    /// is before any blank or comment lines it skipped; this re-reads those few lines of the
    /// file to count them. If the file cannot be re-read the crate's line is used.
    fn record_line(&self, start: Option<&Position>) -> u64 {
        let Some(start) = start else {
            return self.resume.line();
        };
        let mut line = start.line();
        let Ok(mut file) = File::open(self.path()) else {
            return line;
        };
        if file.seek(SeekFrom::Start(start.byte())).is_err() {
            return line;
        }
        let mut text = BufReader::new(file);
        let mut buffer = Vec::new();
        loop {
            buffer.clear();
            match text.read_until(b'\n', &mut buffer) {
                Ok(0) | Err(_) => return line,
                Ok(_) => {}
            }
            let content = buffer.strip_suffix(b"\n").unwrap_or(&buffer);
            let content = content.strip_suffix(b"\r").unwrap_or(content);
            let skipped = content.is_empty()
                || (self.options.allow_comments && content.first() == Some(&b'#'));
            if !skipped {
                return line;
            }
            line += 1;
        }
    }

    /// Opens `files[file]` at `resume`, skipping the header line at the start of a file.
    fn open_current(&mut self) -> Result<()> {
        let path = self.path().to_path_buf();
        let file = File::open(&path).map_err(|e| Error::io("read", &path, e))?;
        let mut builder = ReaderBuilder::new();
        builder
            .has_headers(false)
            .flexible(true)
            .delimiter(self.options.field_delimiter)
            .double_quote(true)
            .escape(self.options.escape_character)
            .buffer_capacity(READ_BUFFER_BYTES);
        match self.options.quote_character {
            Some(quote) => builder.quote(quote),
            None => builder.quoting(false),
        };
        if self.options.allow_comments {
            builder.comment(Some(b'#'));
        }
        let mut reader = builder.from_reader(file);
        if self.resume.record() > 0 {
            reader
                .seek(self.resume.clone())
                .map_err(|e| self.csv_error(e))?;
        } else if self.options.header {
            let mut header = ByteRecord::new();
            reader
                .read_byte_record(&mut header)
                .map_err(|e| self.csv_error(e))?;
        }
        self.open = Some(reader);
        Ok(())
    }

    /// Reads up to `batch_size` records of the open file. Returns how many were read and
    /// whether the file ended. Records with the wrong field count fail here (strict policy) or
    /// are marked in `rejects` (skip policy).
    fn read_records(&mut self) -> Result<(usize, bool)> {
        let Some(reader) = self.open.as_mut() else {
            return Ok((0, true));
        };
        let expected = self.schema.fields().len();
        let mut filled = 0;
        let mut wrong_count = false;
        let mut at_end = false;
        while filled < self.batch_size {
            if filled == self.records.len() {
                self.records.push(ByteRecord::new());
            }
            let record = &mut self.records[filled];
            match reader.read_byte_record(record) {
                Ok(true) => {}
                Ok(false) => {
                    at_end = true;
                    break;
                }
                Err(err) => return Err(self.csv_error(err)),
            }
            if record.len() != expected {
                if !self.options.ignore_parse_errors {
                    let found = record.len();
                    let start = record.position().cloned();
                    return Err(Error::data(
                        self.location(self.record_line(start.as_ref())),
                        format!("expected {expected} fields, found {found}"),
                    ));
                }
                // Marked after the loop, once `rejects` is sized for the batch.
                wrong_count = true;
            }
            filled += 1;
        }
        if !at_end {
            self.resume = reader.position().clone();
        }
        self.rejects.reset(filled);
        if wrong_count {
            for (row, record) in self.records[..filled].iter().enumerate() {
                if record.len() != expected {
                    self.rejects.reject(Rejected {
                        row,
                        column: 0,
                        reason: RejectReason::WrongFieldCount,
                    });
                }
            }
        }
        Ok((filled, at_end))
    }

    /// Builds the batch from the first `filled` records, or `None` if every row was rejected.
    fn build_batch(&mut self, filled: usize) -> Result<Option<RecordBatch>> {
        let records = &self.records[..filled];
        let null_literal = self.options.null_literal.as_deref().map(str::as_bytes);
        for (index, (builder, field)) in self
            .columns
            .iter_mut()
            .zip(self.schema.fields().iter())
            .enumerate()
        {
            let rules = FieldRules {
                null_literal,
                nullable: field.is_nullable(),
                skip: self.options.ignore_parse_errors,
            };
            if let Err(rejected) = builder.fill(records, index, rules, &mut self.rejects) {
                return Err(self.rejection_error(rejected));
            }
        }
        let mut arrays: Vec<ArrayRef> = self.columns.iter_mut().map(|c| c.finish()).collect();
        if self.rejects.count > 0 {
            self.log_rejects();
            self.skipped += self.rejects.count as u64;
            self.skipped_in[self.file] += self.rejects.count as u64;
            if self.rejects.count == filled {
                return Ok(None);
            }
            let keep: BooleanArray = self.rejects.bad.iter().map(|bad| Some(!bad)).collect();
            for array in &mut arrays {
                *array = filter(array.as_ref(), &keep).map_err(|e| {
                    Error::arrow(format!("filter rows of '{}'", self.path().display()), e)
                })?;
            }
        }
        RecordBatch::try_new(self.schema.clone(), arrays)
            .map(Some)
            .map_err(|e| Error::arrow(format!("build batch from '{}'", self.path().display()), e))
    }

    fn rejection_error(&self, rejected: Rejected) -> Error {
        let record = self.records.get(rejected.row);
        let line = self.record_line(record.and_then(ByteRecord::position));
        let Some(field) = self.schema.fields().get(rejected.column) else {
            return Error::data(self.location(line), "malformed row");
        };
        let location = format!("{} column '{}'", self.location(line), field.name());
        let type_name = sql_type_name(field.data_type());
        let found = record.map_or(0, ByteRecord::len);
        match rejected.reason {
            RejectReason::WrongFieldCount => Error::data(
                self.location(line),
                format!(
                    "expected {} fields, found {found}",
                    self.schema.fields().len()
                ),
            ),
            RejectReason::NullInNotNull => Error::data(
                location,
                format!("NULL in NOT NULL column of type {type_name}"),
            ),
            RejectReason::InvalidUtf8 => Error::data(location, "invalid UTF-8"),
            RejectReason::Unparsable => {
                let raw = record
                    .and_then(|r| r.get(rejected.column))
                    .unwrap_or_default();
                let text = String::from_utf8_lossy(raw);
                Error::data(location, format!("cannot parse '{text}' as {type_name}"))
            }
        }
    }

    /// Logs skipped rows when the running count reaches a power of two: the first few are all
    /// visible, a flood of them costs a logarithmic number of lines.
    fn log_rejects(&self) {
        let before = self.skipped;
        let after = before + self.rejects.count as u64;
        let crosses_power_of_two = before == 0 || after.ilog2() > before.ilog2();
        if !crosses_power_of_two {
            return;
        }
        if let Some(first) = self.rejects.first {
            let err = self.rejection_error(first);
            warn!(
                skipped = after,
                error = %err,
                "skipping malformed csv rows (csv.ignore-parse-errors)"
            );
        }
    }
}

impl SourceReader for CsvSourceReader {
    fn poll_next(&mut self) -> Result<SourcePoll> {
        loop {
            if self.open.is_none() {
                if self.file >= self.files.len() {
                    return Ok(SourcePoll::Exhausted);
                }
                self.open_current()?;
            }
            let (filled, at_end) = self.read_records()?;
            let batch = if filled > 0 {
                self.build_batch(filled)?
            } else {
                None
            };
            self.batch_file = self.file;
            if at_end {
                self.open = None;
                self.progress[self.file] = SplitProgress::Done;
                self.file = split_position::next_unread(&self.progress, self.file + 1);
                self.resume = self.start_of_file();
            }
            if let Some(batch) = batch {
                return Ok(SourcePoll::Batch(batch));
            }
        }
    }

    fn position(&self) -> serde_json::Value {
        let at = |p: &Position| serde_json::json!({ "byte": p.byte(), "line": p.line(), "record": p.record() });
        split_position::encode(self.files.iter().enumerate().map(|(i, path)| {
            let progress = match &self.progress[i] {
                SplitProgress::At(_) if i == self.file => Some(at(&self.resume)),
                SplitProgress::At(start) => Some(at(start)),
                SplitProgress::Done => None,
            };
            (split_position::file_key(path), progress, self.skipped_in[i])
        }))
    }

    fn restore(&mut self, position: &serde_json::Value) -> Result<()> {
        for (i, path) in self.files.iter().enumerate() {
            let (progress, skipped) = split_position::decode(
                position,
                "csv",
                &split_position::file_key(path),
                |fields| {
                    let field = |name: &str| fields.get(name).and_then(serde_json::Value::as_u64);
                    let mut at = Position::new();
                    at.set_byte(field("byte")?)
                        .set_line(field("line")?)
                        .set_record(field("record")?);
                    Some(at)
                },
            )?;
            self.progress[i] = progress;
            self.skipped_in[i] = skipped;
        }
        self.skipped = self.skipped_in.iter().sum();
        self.file = split_position::next_unread(&self.progress, 0);
        self.resume = self.start_of_file();
        self.open = None;
        Ok(())
    }

    fn skipped_records(&self) -> u64 {
        self.skipped
    }

    fn current_split(&self) -> usize {
        self.batch_file
    }
}
