//! The `filesystem` connector: bounded CSV and Parquet sources over a file or a directory of
//! files, and a sink writing part files into a directory.

use std::collections::BTreeMap;

use arrow::datatypes::SchemaRef;
use serde::{Deserialize, Serialize};

use super::{Sink, SourceReader};
use crate::{Error, Result};

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
    pub(crate) fn create_reader(
        &self,
        _subtask: u32,
        _parallelism: u32,
        _batch_size: usize,
    ) -> Result<Box<dyn SourceReader>> {
        Err(Error::Internal("filesystem source is being written".into()))
    }
}

impl FileSinkSpec {
    pub(crate) fn create_sink(&self) -> Result<Box<dyn Sink>> {
        Err(Error::Internal("filesystem sink is being written".into()))
    }
}
