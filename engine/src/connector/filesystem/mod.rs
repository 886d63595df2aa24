//! The `filesystem` connector: bounded CSV, JSON and Parquet sources over a file or a directory of
//! files, and a sink writing part files into a directory.
//!
//! Module map and data flow:
//! - [`split`]: finds the files under the source's path (recursively, skipping hidden files,
//!   sorted) and assigns splits to subtasks round-robin by split index.
//! - `csv` + `csv_column`: the CSV reader (one file per split); records are read into reused
//!   buffers and turned into typed columns a batch at a time.
//! - `parquet`: the Parquet reader (one row group per split), projecting and casting to the
//!   declared schema.
//! - `parquet_pruning`: which row groups and pages a pushed predicate rules out, from the
//!   files' statistics and page index.
//! - `sink`: one part file per subtask, written under a hidden in-progress name and renamed
//!   when the input ends.
//! - `options`: the `csv.*` format options shared by source and sink.
//! - `partition`: `PARTITIONED BY` directories (`path/dt=…/part-…`): splitting written rows
//!   by partition, and the partition columns of read rows from their file's path.
//! - `json`: the `json` format (newline-delimited objects): its options, reader and writer.
//!
//! Everything that can be checked before the job runs is checked when the reader or sink is
//! created: the options, the declared column types, the existence of the path and (for
//! Parquet) every file's footer against the declared schema.

mod csv;
mod csv_column;
mod json;
mod options;
mod parquet;
mod parquet_pruning;
mod partition;
mod sink;
pub(crate) mod split;
mod split_position;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::PathBuf;

use arrow::datatypes::SchemaRef;
use serde::{Deserialize, Serialize};

pub(crate) use parquet_pruning::is_prunable;

use super::{Sink, SourceReader};
use crate::Result;
use crate::expr::Expr;

/// A file format of the filesystem connector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileFormat {
    Csv,
    Parquet,
    /// Newline-delimited JSON objects (Flink's `json` format).
    Json,
}

/// A bounded file source: `path` is a file or a directory whose files are all read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileSourceSpec {
    pub path: String,
    pub format: FileFormat,
    pub schema: SchemaRef,
    /// Format options with Flink's names (`csv.field-delimiter`, `csv.ignore-parse-errors`, …).
    pub options: BTreeMap<String, String>,
    /// `PARTITIONED BY` columns (part of `schema`), read from `k=v` directory names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partition_keys: Vec<String>,
    /// Conjuncts of the filter that reads this source (Parquet only; the SQL planner pushes
    /// them): the reader skips the row groups and pages whose statistics prove that no row
    /// passes. Only an optimization: the filter still runs, rows of the groups read are not
    /// filtered here, and a conjunct the statistics cannot decide prunes nothing. A graph
    /// whose source with a predicate feeds anything but filters applying it is rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predicate: Option<Expr>,
    /// Read the `STRING` columns that the files keep dictionary-encoded, with dictionaries
    /// small next to their data, as Arrow dictionaries (Parquet, tables without partition
    /// columns). Set by the SQL planner where a filter alone reads the source, chained to it:
    /// the filter evaluates a conjunct of one such column once per dictionary value and
    /// decodes the strings of the rows it keeps only ([`crate::operator::filter`]); no other
    /// operator sees a dictionary. The JobGraph's validation checks that only filters read a
    /// source that sets it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dictionaries: bool,
}

/// A file sink writing into the directory `path`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileSinkSpec {
    pub path: String,
    pub format: FileFormat,
    pub options: BTreeMap<String, String>,
    /// `PARTITIONED BY` columns: rows go to `path/k=v/…` directories, without these columns.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partition_keys: Vec<String>,
    /// `INSERT OVERWRITE`: a stamp unique to the job; the written parts replace the table's
    /// files (see the sink's `with_overwrite`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overwrite: Option<String>,
}

impl FileSourceSpec {
    /// How many rows the files hold, where their metadata says (Parquet footers); for the
    /// planner's size estimates.
    pub(crate) fn estimated_rows(&self) -> Option<u64> {
        match self.format {
            FileFormat::Parquet => parquet::file_rows(&self.path),
            FileFormat::Csv | FileFormat::Json => None,
        }
    }

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
        if !self.partition_keys.is_empty() {
            return self.create_partitioned_reader(files, subtask, parallelism, batch_size);
        }
        self.create_file_reader(self.schema.clone(), files, subtask, parallelism, batch_size)
    }

    /// A reader of the data columns over the files of `subtask`; the partition columns come
    /// from each file's path.
    fn create_partitioned_reader(
        &self,
        files: Vec<PathBuf>,
        subtask: u32,
        parallelism: u32,
        batch_size: usize,
    ) -> Result<Box<dyn SourceReader>> {
        let (keys, data) = partition::split_columns(&self.schema, &self.partition_keys)?;
        let data_schema = std::sync::Arc::new(
            self.schema
                .project(&data)
                .map_err(|e| crate::Error::arrow("partitioned source schema", e))?,
        );
        // The inner reader numbers its splits; `split_files` names the file of each.
        let (inner, split_files): (Box<dyn SourceReader>, Vec<PathBuf>) = match self.format {
            FileFormat::Parquet => {
                // The partition columns join the data columns in the declared types.
                let reader = parquet::ParquetSourceReader::try_new(
                    data_schema,
                    &files,
                    subtask,
                    parallelism,
                    batch_size,
                    self.predicate.as_ref(),
                    false,
                )?;
                let paths = reader.split_paths();
                (Box::new(reader), paths)
            }
            FileFormat::Csv | FileFormat::Json => {
                // This subtask's files, as the inner reader's only ones (subtask 0 of 1).
                let mine = split::assign(files, subtask, parallelism)?;
                let reader =
                    self.create_file_reader(data_schema, mine.clone(), 0, 1, batch_size)?;
                (reader, mine)
            }
        };
        Ok(Box::new(partition::PartitionedReader::new(
            inner,
            split_files,
            self.schema.clone(),
            keys,
            data,
        )))
    }

    fn create_file_reader(
        &self,
        schema: SchemaRef,
        files: Vec<PathBuf>,
        subtask: u32,
        parallelism: u32,
        batch_size: usize,
    ) -> Result<Box<dyn SourceReader>> {
        match self.format {
            FileFormat::Csv => {
                let options = options::CsvOptions::parse(&self.options)?;
                let files = split::assign(files, subtask, parallelism)?;
                let reader = csv::CsvSourceReader::try_new(schema, options, files, batch_size)?;
                Ok(Box::new(reader))
            }
            FileFormat::Json => {
                let options = json::JsonOptions::parse(&self.options)?;
                let files = split::assign(files, subtask, parallelism)?;
                let reader = json::JsonSourceReader::try_new(schema, options, files, batch_size)?;
                Ok(Box::new(reader))
            }
            FileFormat::Parquet => {
                let reader = parquet::ParquetSourceReader::try_new(
                    schema,
                    &files,
                    subtask,
                    parallelism,
                    batch_size,
                    self.predicate.as_ref(),
                    self.dictionaries,
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
            FileFormat::Parquet | FileFormat::Json => options::CsvOptions::default(),
        };
        let json = match self.format {
            FileFormat::Json => json::JsonOptions::parse(&self.options)?,
            FileFormat::Csv | FileFormat::Parquet => json::JsonOptions::default(),
        };
        Ok(Box::new(
            sink::FileSink::new(PathBuf::from(&self.path), self.format, csv)
                .with_json(json)
                .with_partition_keys(self.partition_keys.clone())
                .with_overwrite(self.overwrite.clone()),
        ))
    }
}
