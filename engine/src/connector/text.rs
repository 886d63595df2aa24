//! A bounded source of text lines (the DataStream API's `read_text_file`): one `line` column,
//! one row per line, from a file or from every file of a directory.
//!
//! Each file is a split; subtask `i` of `n` reads the files whose index mod `n` is `i`. Lines
//! end at `\n` (a trailing `\r` is removed). A line that is not UTF-8 fails the job with the
//! file and line number.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::sync::Arc;

use arrow::array::StringBuilder;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};

use super::filesystem::split;
use super::{SourcePoll, SourceReader};
use crate::{Error, Result};

/// The name of the text source's only column.
pub const LINE_COLUMN: &str = "line";

/// Reads lines of text files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextFileSource {
    pub path: String,
}

impl TextFileSource {
    pub fn new(path: impl Into<String>) -> Self {
        TextFileSource { path: path.into() }
    }

    pub fn schema(&self) -> SchemaRef {
        Arc::new(Schema::new(vec![Field::new(
            LINE_COLUMN,
            DataType::Utf8,
            false,
        )]))
    }

    pub(crate) fn reader(
        &self,
        subtask: u32,
        parallelism: u32,
        batch_size: usize,
    ) -> Result<TextReader> {
        let files = split::assign(split::discover_files(&self.path)?, subtask, parallelism)?;
        Ok(TextReader {
            schema: self.schema(),
            files,
            current: None,
            file_index: 0,
            line_number: 0,
            batch_size,
            line: Vec::new(),
        })
    }
}

pub(crate) struct TextReader {
    schema: SchemaRef,
    files: Vec<PathBuf>,
    current: Option<BufReader<File>>,
    file_index: usize,
    line_number: u64,
    batch_size: usize,
    line: Vec<u8>,
}

impl SourceReader for TextReader {
    fn poll_next(&mut self) -> Result<SourcePoll> {
        let mut lines = StringBuilder::with_capacity(self.batch_size, self.batch_size * 64);
        let mut rows = 0;
        while rows < self.batch_size {
            let Some(path) = self.files.get(self.file_index) else {
                break;
            };
            if self.current.is_none() {
                let file = File::open(path).map_err(|e| Error::io("read", path, e))?;
                self.current = Some(BufReader::with_capacity(1 << 16, file));
                self.line_number = 0;
            }
            let reader = self.current.as_mut().expect("opened above");
            self.line.clear();
            let read = reader
                .read_until(b'\n', &mut self.line)
                .map_err(|e| Error::io("read", path, e))?;
            if read == 0 {
                self.current = None;
                self.file_index += 1;
                continue;
            }
            self.line_number += 1;
            let mut bytes = self.line.as_slice();
            if let Some(stripped) = bytes.strip_suffix(b"\n") {
                bytes = stripped;
            }
            if let Some(stripped) = bytes.strip_suffix(b"\r") {
                bytes = stripped;
            }
            let text = std::str::from_utf8(bytes).map_err(|e| {
                Error::data(
                    format!("file '{}' line {}", path.display(), self.line_number),
                    format!("not valid UTF-8 at byte {}", e.valid_up_to()),
                )
            })?;
            lines.append_value(text);
            rows += 1;
        }
        if rows == 0 {
            return Ok(SourcePoll::Exhausted);
        }
        let batch = RecordBatch::try_new(self.schema.clone(), vec![Arc::new(lines.finish())])
            .map_err(|e| Error::arrow("text source", e))?;
        Ok(SourcePoll::Batch(batch))
    }

    fn position(&self) -> serde_json::Value {
        serde_json::json!({ "file": self.file_index, "line": self.line_number })
    }

    fn restore(&mut self, position: &serde_json::Value) -> Result<()> {
        let field = |name: &str| {
            position
                .get(name)
                .and_then(serde_json::Value::as_u64)
                .ok_or_else(|| Error::Internal(format!("bad text source position {position}")))
        };
        self.file_index = field("file")? as usize;
        let skip = field("line")?;
        self.current = None;
        if let Some(path) = self.files.get(self.file_index) {
            let file = File::open(path).map_err(|e| Error::io("read", path, e))?;
            let mut reader = BufReader::new(file);
            for _ in 0..skip {
                self.line.clear();
                reader
                    .read_until(b'\n', &mut self.line)
                    .map_err(|e| Error::io("read", path, e))?;
            }
            self.current = Some(reader);
        }
        self.line_number = skip;
        Ok(())
    }
}
