//! The `json` format of the filesystem connector: newline-delimited JSON objects, as Flink's.
//!
//! Reading: each file is one split. A poll reads up to `batch_size` non-blank lines into one
//! buffer and decodes them with arrow-json's decoder in one go. Only when that fails are the
//! lines decoded one by one, to name the file and 1-based line of the malformed one (the job
//! fails) or, with `json.ignore-parse-errors`, to drop it (counted in
//! [`SourceReader::skipped_records`], logged when the count reaches a power of two).
//! `json.fail-on-missing-field` checks that every declared column is present in every object
//! (opt-in: it parses each line once more). Fields the table does not declare are ignored.
//! Timestamps are read in both the SQL (`2024-01-01 12:00:00.000`) and the ISO-8601
//! (`2024-01-01T12:00:00.000`) forms.
//!
//! Writing: one object per line, NULL fields written as `null`; timestamps in the form chosen
//! by `json.timestamp-format.standard` (`SQL`, the default, or `ISO-8601`).
//!
//! Position: per file (split), named by its path, done or the byte offset of the next unread
//! line and its line number (see [`super::split_position`]), so a checkpoint restores at any
//! parallelism.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::PathBuf;

use arrow::datatypes::SchemaRef;
use arrow::json::reader::Decoder;
use arrow::json::writer::LineDelimited;
use arrow::json::{ReaderBuilder, Writer, WriterBuilder};
use arrow::record_batch::RecordBatch;
use tracing::warn;

use super::split_position::{self, SplitProgress};
use crate::connector::{SourcePoll, SourceReader};
use crate::{Error, Result};

const IGNORE_PARSE_ERRORS: &str = "json.ignore-parse-errors";
const FAIL_ON_MISSING_FIELD: &str = "json.fail-on-missing-field";
const TIMESTAMP_FORMAT: &str = "json.timestamp-format.standard";
const IGNORE_NULL_FIELDS: &str = "json.encode.ignore-null-fields";
const MAP_NULL_KEY_MODE: &str = "json.map-null-key.mode";
const MAP_NULL_KEY_LITERAL: &str = "json.map-null-key.literal";
const DECIMAL_PLAIN: &str = "json.encode.decimal-as-plain-number";

const KNOWN_KEYS: [&str; 7] = [
    IGNORE_PARSE_ERRORS,
    FAIL_ON_MISSING_FIELD,
    TIMESTAMP_FORMAT,
    IGNORE_NULL_FIELDS,
    MAP_NULL_KEY_MODE,
    MAP_NULL_KEY_LITERAL,
    DECIMAL_PLAIN,
];

/// Read buffer per open file.
const READ_BUFFER_BYTES: usize = 256 * 1024;

/// How timestamps are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimestampStandard {
    /// `2024-01-01 12:00:00.000`.
    Sql,
    /// `2024-01-01T12:00:00.000`.
    Iso8601,
}

/// The resolved options of the `json` format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JsonOptions {
    /// `json.ignore-parse-errors`: skip (and count) malformed lines. Default false.
    pub ignore_parse_errors: bool,
    /// `json.fail-on-missing-field`: a declared field missing from an object is an error.
    /// Default false (the column is NULL).
    pub fail_on_missing_field: bool,
    /// `json.timestamp-format.standard`: `SQL` (default) or `ISO-8601`.
    pub timestamp_standard: TimestampStandard,
    /// `json.encode.ignore-null-fields`: leave NULL fields out of written objects. Default
    /// false.
    pub ignore_null_fields: bool,
}

impl Default for JsonOptions {
    fn default() -> Self {
        JsonOptions {
            ignore_parse_errors: false,
            fail_on_missing_field: false,
            timestamp_standard: TimestampStandard::Sql,
            ignore_null_fields: false,
        }
    }
}

impl JsonOptions {
    /// Resolves the `json.*` keys of `options`; other keys are ignored.
    pub(crate) fn parse(options: &BTreeMap<String, String>) -> Result<Self> {
        let mut resolved = JsonOptions::default();
        let bad = |key: &str, value: &str, message: &str| Error::Config {
            key: key.to_string(),
            value: value.to_string(),
            message: message.to_string(),
        };
        let boolean = |key: &str, value: &str| match value.to_ascii_lowercase().as_str() {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(bad(key, value, "expected true or false")),
        };
        for (key, value) in options.iter().filter(|(k, _)| k.starts_with("json.")) {
            match key.as_str() {
                IGNORE_PARSE_ERRORS => resolved.ignore_parse_errors = boolean(key, value)?,
                FAIL_ON_MISSING_FIELD => resolved.fail_on_missing_field = boolean(key, value)?,
                IGNORE_NULL_FIELDS => resolved.ignore_null_fields = boolean(key, value)?,
                TIMESTAMP_FORMAT => {
                    resolved.timestamp_standard = match value.to_ascii_uppercase().as_str() {
                        "SQL" => TimestampStandard::Sql,
                        "ISO-8601" => TimestampStandard::Iso8601,
                        _ => return Err(bad(key, value, "expected 'SQL' or 'ISO-8601'")),
                    }
                }
                // Maps are not a supported column type yet, and decimals are always written
                // as plain numbers: accepted, no effect.
                MAP_NULL_KEY_MODE | MAP_NULL_KEY_LITERAL | DECIMAL_PLAIN => {}
                _ => {
                    let hint = match crate::expr::closest(key, KNOWN_KEYS.iter().copied()) {
                        Some(best) => format!("unknown json option (did you mean '{best}'?)"),
                        None => format!("unknown json option (known: {})", KNOWN_KEYS.join(", ")),
                    };
                    return Err(bad(key, value, &hint));
                }
            }
        }
        if resolved.ignore_parse_errors && resolved.fail_on_missing_field {
            return Err(bad(
                FAIL_ON_MISSING_FIELD,
                "true",
                "json.fail-on-missing-field and json.ignore-parse-errors cannot both be true",
            ));
        }
        Ok(resolved)
    }

    /// A line-delimited writer with these options.
    pub(crate) fn writer(&self, file: File) -> Writer<File, LineDelimited> {
        let separator = match self.timestamp_standard {
            TimestampStandard::Sql => ' ',
            TimestampStandard::Iso8601 => 'T',
        };
        WriterBuilder::new()
            .with_explicit_nulls(!self.ignore_null_fields)
            .with_timestamp_format(format!("%Y-%m-%d{separator}%H:%M:%S%.3f"))
            .with_timestamp_tz_format(format!("%Y-%m-%d{separator}%H:%M:%S%.3fZ"))
            .with_date_format("%Y-%m-%d".into())
            .build::<_, LineDelimited>(file)
    }
}

pub(crate) struct JsonSourceReader {
    schema: SchemaRef,
    options: JsonOptions,
    files: Vec<PathBuf>,
    /// Index into `files` of the file being read (or to open next).
    file: usize,
    /// Byte offset and 1-based line number of the next unread line of `files[file]`.
    byte: u64,
    line: u64,
    /// Per file: the byte offset and line where reading starts when it is opened, or done.
    progress: Vec<SplitProgress<(u64, u64)>>,
    /// Rows skipped as malformed, per file.
    skipped_in: Vec<u64>,
    open: Option<BufReader<File>>,
    batch_size: usize,
    decoder: Decoder,
    /// The lines of the current batch, each ended by `\n`, and where each starts.
    chunk: Vec<u8>,
    lines: Vec<(u64, usize)>,
    line_buffer: Vec<u8>,
    skipped: u64,
    batch_file: usize,
}

impl JsonSourceReader {
    pub(crate) fn try_new(
        schema: SchemaRef,
        options: JsonOptions,
        files: Vec<PathBuf>,
        batch_size: usize,
    ) -> Result<Self> {
        let batch_size = batch_size.max(1);
        let decoder = Self::decoder(&schema, batch_size)?;
        Ok(JsonSourceReader {
            schema,
            options,
            progress: vec![SplitProgress::At((0, 1)); files.len()],
            skipped_in: vec![0; files.len()],
            files,
            file: 0,
            byte: 0,
            line: 1,
            open: None,
            batch_size,
            decoder,
            chunk: Vec::new(),
            lines: Vec::new(),
            line_buffer: Vec::new(),
            skipped: 0,
            batch_file: 0,
        })
    }

    fn decoder(schema: &SchemaRef, batch_size: usize) -> Result<Decoder> {
        ReaderBuilder::new(schema.clone())
            .with_batch_size(batch_size)
            .build_decoder()
            .map_err(|e| Error::arrow("create the json decoder", e))
    }

    /// The byte offset and line where `files[file]` is to be read from when it is opened.
    fn start_of_file(&self) -> (u64, u64) {
        match self.progress.get(self.file) {
            Some(SplitProgress::At(start)) => *start,
            Some(SplitProgress::Done) | None => (0, 1),
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

    fn open_current(&mut self) -> Result<()> {
        let path = self.path().to_path_buf();
        let mut file = File::open(&path).map_err(|e| Error::io("read", &path, e))?;
        if self.byte > 0 {
            file.seek(SeekFrom::Start(self.byte))
                .map_err(|e| Error::io("seek", &path, e))?;
        }
        self.open = Some(BufReader::with_capacity(READ_BUFFER_BYTES, file));
        Ok(())
    }

    /// Reads up to `batch_size` non-blank lines into `chunk`; returns whether the file ended.
    fn read_lines(&mut self) -> Result<bool> {
        self.chunk.clear();
        self.lines.clear();
        let path = self.path().to_path_buf();
        let Some(reader) = self.open.as_mut() else {
            return Ok(true);
        };
        while self.lines.len() < self.batch_size {
            self.line_buffer.clear();
            let read = reader
                .read_until(b'\n', &mut self.line_buffer)
                .map_err(|e| Error::io("read", &path, e))?;
            if read == 0 {
                return Ok(true);
            }
            let line = self.line;
            self.line += 1;
            self.byte += read as u64;
            let content = self.line_buffer.trim_ascii();
            if content.is_empty() {
                continue;
            }
            self.lines.push((line, self.chunk.len()));
            self.chunk.extend_from_slice(content);
            self.chunk.push(b'\n');
        }
        Ok(false)
    }

    /// The text of line `i` of the chunk (without its newline).
    fn line_text(&self, i: usize) -> &[u8] {
        let start = self.lines[i].1;
        let end = self
            .lines
            .get(i + 1)
            .map_or(self.chunk.len(), |(_, next)| *next);
        &self.chunk[start..end - 1]
    }

    /// Decodes `bytes` (whole lines) into one batch.
    fn decode(&mut self, bytes: &[u8]) -> std::result::Result<Option<RecordBatch>, String> {
        let mut at = 0;
        while at < bytes.len() {
            let used = self
                .decoder
                .decode(&bytes[at..])
                .map_err(|e| e.to_string())?;
            if used == 0 {
                break;
            }
            at += used;
        }
        self.decoder.flush().map_err(|e| e.to_string())
    }

    /// The first declared field missing from line `i`, if any.
    fn missing_field(&self, i: usize) -> std::result::Result<Option<String>, String> {
        let object: BTreeMap<String, serde::de::IgnoredAny> =
            serde_json::from_slice(self.line_text(i)).map_err(|e| e.to_string())?;
        Ok(self
            .schema
            .fields()
            .iter()
            .find(|f| !object.contains_key(f.name()))
            .map(|f| f.name().clone()))
    }

    /// Decodes the chunk; on failure, line by line to find (or skip) the bad lines.
    fn build_batch(&mut self) -> Result<Option<RecordBatch>> {
        if self.options.fail_on_missing_field {
            for i in 0..self.lines.len() {
                let missing = self
                    .missing_field(i)
                    .map_err(|message| Error::data(self.location(self.lines[i].0), message))?;
                if let Some(field) = missing {
                    return Err(Error::data(
                        self.location(self.lines[i].0),
                        format!("field '{field}' is missing (json.fail-on-missing-field is true)"),
                    ));
                }
            }
        }
        let chunk = std::mem::take(&mut self.chunk);
        let whole = self.decode(&chunk);
        self.chunk = chunk;
        match whole {
            Ok(batch) => return Ok(batch),
            // The decoder's state is unknown after an error: start afresh.
            Err(_) => self.decoder = Self::decoder(&self.schema, self.batch_size)?,
        }
        let mut good = Vec::new();
        let mut rejected = 0;
        for i in 0..self.lines.len() {
            let mut line = self.line_text(i).to_vec();
            line.push(b'\n');
            match self.decode(&line) {
                Ok(Some(batch)) => good.push(batch),
                Ok(None) => {}
                Err(message) => {
                    let error = Error::data(self.location(self.lines[i].0), message);
                    if !self.options.ignore_parse_errors {
                        return Err(error);
                    }
                    self.decoder = Self::decoder(&self.schema, self.batch_size)?;
                    rejected += 1;
                    let before = self.skipped;
                    self.skipped += 1;
                    self.skipped_in[self.file] += 1;
                    if before == 0 || self.skipped.ilog2() > before.ilog2() {
                        warn!(
                            skipped = self.skipped,
                            error = %error,
                            "skipping malformed json lines (json.ignore-parse-errors)"
                        );
                    }
                }
            }
        }
        if rejected == self.lines.len() {
            return Ok(None);
        }
        arrow::compute::concat_batches(&self.schema, &good)
            .map(Some)
            .map_err(|e| Error::arrow(format!("build batch from '{}'", self.path().display()), e))
    }
}

impl SourceReader for JsonSourceReader {
    fn poll_next(&mut self) -> Result<SourcePoll> {
        loop {
            if self.open.is_none() {
                if self.file >= self.files.len() {
                    return Ok(SourcePoll::Exhausted);
                }
                self.open_current()?;
            }
            let at_end = self.read_lines()?;
            let batch = if self.lines.is_empty() {
                None
            } else {
                self.build_batch()?
            };
            self.batch_file = self.file;
            if at_end {
                self.open = None;
                self.progress[self.file] = SplitProgress::Done;
                self.file = split_position::next_unread(&self.progress, self.file + 1);
                (self.byte, self.line) = self.start_of_file();
            }
            if let Some(batch) = batch.filter(|b| b.num_rows() > 0) {
                return Ok(SourcePoll::Batch(batch));
            }
        }
    }

    fn position(&self) -> serde_json::Value {
        let at = |(byte, line): (u64, u64)| serde_json::json!({ "byte": byte, "line": line });
        split_position::encode(self.files.iter().enumerate().map(|(i, path)| {
            let progress = match self.progress[i] {
                SplitProgress::At(_) if i == self.file => Some(at((self.byte, self.line))),
                SplitProgress::At(start) => Some(at(start)),
                SplitProgress::Done => None,
            };
            (split_position::file_key(path), progress, self.skipped_in[i])
        }))
    }

    fn restore(&mut self, position: &serde_json::Value) -> Result<()> {
        for (i, path) in self.files.iter().enumerate() {
            let (progress, skipped) =
                split_position::decode(position, "json", &split_position::file_key(path), |f| {
                    let field = |name: &str| f.get(name).and_then(serde_json::Value::as_u64);
                    Some((field("byte")?, field("line")?))
                })?;
            self.progress[i] = progress;
            self.skipped_in[i] = skipped;
        }
        self.skipped = self.skipped_in.iter().sum();
        self.file = split_position::next_unread(&self.progress, 0);
        (self.byte, self.line) = self.start_of_file();
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::AsArray;
    use arrow::datatypes::{DataType, Field, Int64Type, Schema};

    use super::*;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int64, true),
            Field::new("b", DataType::Utf8, true),
        ]))
    }

    fn read_all(text: &str, options: JsonOptions, batch_size: usize) -> Result<Vec<RecordBatch>> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.json");
        std::fs::write(&path, text).unwrap();
        let mut reader = JsonSourceReader::try_new(schema(), options, vec![path], batch_size)?;
        let mut out = Vec::new();
        loop {
            match reader.poll_next()? {
                SourcePoll::Batch(b) => out.push(b),
                SourcePoll::Exhausted => return Ok(out),
                SourcePoll::Pending | SourcePoll::Idle => {}
            }
        }
    }

    #[test]
    fn reads_lines_in_batches() {
        let text = "{\"a\": 1, \"b\": \"x\"}\n\n{\"a\": 2, \"extra\": true}\n{\"b\": \"z\"}\n";
        let batches = read_all(text, JsonOptions::default(), 2).unwrap();
        let a: Vec<Option<i64>> = batches
            .iter()
            .flat_map(|b| {
                b.column(0)
                    .as_primitive::<Int64Type>()
                    .iter()
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(a, vec![Some(1), Some(2), None]);
    }

    #[test]
    fn a_malformed_line_names_file_and_line() {
        let text = "{\"a\": 1}\n\n{\"a\": oops}\n";
        let err = read_all(text, JsonOptions::default(), 10)
            .unwrap_err()
            .to_string();
        assert!(err.contains("in.json' line 3"), "{err}");
        let options = JsonOptions {
            ignore_parse_errors: true,
            ..JsonOptions::default()
        };
        let batches = read_all(text, options, 10).unwrap();
        assert_eq!(batches.iter().map(RecordBatch::num_rows).sum::<usize>(), 1);
    }

    #[test]
    fn missing_fields_fail_when_asked() {
        let options = JsonOptions {
            fail_on_missing_field: true,
            ..JsonOptions::default()
        };
        let err = read_all("{\"a\": 1, \"b\": null}\n{\"a\": 2}\n", options, 10)
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2"), "{err}");
        assert!(err.contains("field 'b' is missing"), "{err}");
    }

    #[test]
    fn options_are_checked() {
        let options = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>()
        };
        let err = JsonOptions::parse(&options(&[("json.ignore-parse-error", "true")]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("did you mean 'json.ignore-parse-errors'"),
            "{err}"
        );
        let err = JsonOptions::parse(&options(&[
            ("json.ignore-parse-errors", "true"),
            ("json.fail-on-missing-field", "true"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(err.contains("cannot both be true"), "{err}");
        let parsed =
            JsonOptions::parse(&options(&[("json.timestamp-format.standard", "ISO-8601")]))
                .unwrap();
        assert_eq!(parsed.timestamp_standard, TimestampStandard::Iso8601);
    }
}
