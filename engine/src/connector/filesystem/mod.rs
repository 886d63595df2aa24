//! The `filesystem` connector: bounded CSV and Parquet sources over a file or a directory of
//! files, and a sink writing part files into a directory.
//!
//! Module map and data flow:
//! - [`split`]: finds the files under the source's path (recursively, skipping hidden files,
//!   sorted) and assigns splits to subtasks round-robin by split index.
//! - `csv` + `csv_column`: the CSV reader (one file per split); records are read into reused
//!   buffers and turned into typed columns a batch at a time.
//! - `parquet`: the Parquet reader (one row group per split), projecting and casting to the
//!   declared schema.
//! - `sink`: one part file per subtask, written under a hidden in-progress name and renamed
//!   when the input ends.
//! - `options`: the `csv.*` format options shared by source and sink.
//!
//! Everything that can be checked before the job runs is checked when the reader or sink is
//! created: the options, the declared column types, the existence of the path and (for
//! Parquet) every file's footer against the declared schema.

mod csv;
mod csv_column;
mod options;
mod parquet;
mod sink;
pub(crate) mod split;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::PathBuf;

use arrow::datatypes::SchemaRef;
use serde::{Deserialize, Serialize};

use super::{Sink, SourceReader};
use crate::Result;

/// A file format of the filesystem connector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileFormat {
    Csv,
    Parquet,
}

/// A bounded file source: `path` is a file or a directory whose files are all read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileSourceSpec {
    pub path: String,
    pub format: FileFormat,
    pub schema: SchemaRef,
    /// Format options with Flink's names (`csv.field-delimiter`, `csv.ignore-parse-errors`, …).
    pub options: BTreeMap<String, String>,
}

/// A file sink writing into the directory `path`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileSinkSpec {
    pub path: String,
    pub format: FileFormat,
    pub options: BTreeMap<String, String>,
}

impl FileSourceSpec {
    /// The reader of `subtask` out of `parallelism`. Fails (without reading any data) if the
    /// options are invalid, the path is missing, a declared type is unsupported or, for
    /// Parquet, a file does not match the declared schema.
    pub(crate) fn create_reader(
        &self,
        subtask: u32,
        parallelism: u32,
        batch_size: usize,
    ) -> Result<Box<dyn SourceReader>> {
        let files = split::discover_files(&self.path)?;
        match self.format {
            FileFormat::Csv => {
                let options = options::CsvOptions::parse(&self.options)?;
                let files = split::assign(files, subtask, parallelism)?;
                let reader =
                    csv::CsvSourceReader::try_new(self.schema.clone(), options, files, batch_size)?;
                Ok(Box::new(reader))
            }
            FileFormat::Parquet => {
                let reader = parquet::ParquetSourceReader::try_new(
                    self.schema.clone(),
                    &files,
                    subtask,
                    parallelism,
                    batch_size,
                )?;
                Ok(Box::new(reader))
            }
        }
    }
}

impl FileSinkSpec {
    /// A sink for one subtask; the directory is created when the sink is opened.
    pub(crate) fn create_sink(&self) -> Result<Box<dyn Sink>> {
        let csv = match self.format {
            FileFormat::Csv => options::CsvOptions::parse(&self.options)?,
            FileFormat::Parquet => options::CsvOptions::default(),
        };
        Ok(Box::new(sink::FileSink::new(
            PathBuf::from(&self.path),
            self.format,
            csv,
        )))
    }
}
