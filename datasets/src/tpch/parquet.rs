//! Writes a TPC-H data set as Parquet files, and the SQL script that declares its tables.
//!
//! Layout: `<dir>/<table>/part-<i>.parquet` for every table (`nation` and `region` only have
//! `part-0`), so a table's `'path'` is always its directory whatever the number of parts, and
//! `<dir>/tables.sql`, Flink DDL declaring the eight tables over those directories. A file is
//! written under a hidden name (`.part-<i>.parquet.inprogress`, which the filesystem source
//! skips) and renamed when complete; `tables.sql` is written last, so its presence means the
//! data set is complete.
//!
//! Parts are generated in parallel, one `(table, part)` at a time per thread. The rows of a
//! table do not depend on the number of parts (`tpchgen` splits a table into disjoint ranges)
//! and the bytes of a file depend only on the scale factor, its part, the number of parts and
//! the writer options, so the same options give the same files.
//!
//! String columns are written as `Utf8` (Flink's `STRING`) rather than `tpchgen-arrow`'s
//! `Utf8View`, so a reader declaring `STRING` needs no cast. Money columns stay
//! `DECIMAL(15, 2)` and dates `DATE`, the specification's types.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use arrow::array::{ArrayRef, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use super::{TpchBatches, TpchTable};
use crate::error::{Error, Result};

/// The name of the DDL script written next to the tables.
pub const TABLES_SQL: &str = "tables.sql";

/// The compression codec of the written Parquet files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParquetCompression {
    /// No compression.
    Uncompressed,
    /// Snappy: fast to write and read (the default).
    Snappy,
    /// Zstandard at the given level (1–22): smaller files, slower to write.
    Zstd(i32),
}

impl std::str::FromStr for ParquetCompression {
    type Err = Error;

    /// `none`, `snappy`, `zstd` (level 3) or `zstd:<level>`.
    fn from_str(s: &str) -> Result<Self> {
        let lower = s.to_ascii_lowercase();
        match lower.as_str() {
            "none" | "uncompressed" => Ok(ParquetCompression::Uncompressed),
            "snappy" => Ok(ParquetCompression::Snappy),
            "zstd" => Ok(ParquetCompression::Zstd(3)),
            _ => match lower.strip_prefix("zstd:").map(str::parse::<i32>) {
                Some(Ok(level)) if (1..=22).contains(&level) => Ok(ParquetCompression::Zstd(level)),
                _ => Err(Error::invalid_option(
                    "compression",
                    s,
                    "is not one of none, snappy, zstd, zstd:<level 1-22>",
                )),
            },
        }
    }
}

/// How [`write_parquet`] splits and encodes the tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParquetOptions {
    /// Files per table (`nation` and `region` always have one). Default 4.
    pub parts: u32,
    /// Maximum rows per row group; the filesystem source reads one row group per split, so
    /// this bounds the work of one split. Default 131 072 (46 row groups in SF1's
    /// `lineitem`).
    pub row_group_rows: usize,
    /// The compression codec. Default Snappy.
    pub compression: ParquetCompression,
    /// Threads generating parts at the same time. Default: the available cores.
    pub threads: usize,
}

impl Default for ParquetOptions {
    fn default() -> Self {
        ParquetOptions {
            parts: 4,
            row_group_rows: 128 * 1024,
            compression: ParquetCompression::Snappy,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}

impl ParquetOptions {
    /// With `parts` files per table.
    pub fn with_parts(mut self, parts: u32) -> Self {
        self.parts = parts;
        self
    }

    /// With at most `rows` rows per row group.
    pub fn with_row_group_rows(mut self, rows: usize) -> Self {
        self.row_group_rows = rows;
        self
    }

    /// With the given compression codec.
    pub fn with_compression(mut self, compression: ParquetCompression) -> Self {
        self.compression = compression;
        self
    }

    /// With `threads` generating threads.
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.threads = threads;
        self
    }

    fn validate(&self) -> Result<()> {
        if self.parts == 0 {
            return Err(Error::invalid_config(
                "tpch parts = 0; it must be at least 1",
            ));
        }
        if self.row_group_rows == 0 {
            return Err(Error::invalid_config(
                "tpch row group rows = 0; it must be at least 1",
            ));
        }
        Ok(())
    }

    fn writer_properties(&self) -> WriterProperties {
        let compression = match self.compression {
            ParquetCompression::Uncompressed => Compression::UNCOMPRESSED,
            ParquetCompression::Snappy => Compression::SNAPPY,
            // The level was checked when parsed; an out-of-range one falls back to the default.
            ParquetCompression::Zstd(level) => {
                Compression::ZSTD(ZstdLevel::try_new(level).unwrap_or_default())
            }
        };
        WriterProperties::builder()
            .set_compression(compression)
            .set_max_row_group_row_count(Some(self.row_group_rows))
            .build()
    }
}

/// Writes all eight tables at `scale_factor` into `dir` (created if missing), then
/// `dir/tables.sql`, and returns the Parquet files written.
///
/// Part files left in a table's directory by an earlier run with more parts are removed, so
/// the directory holds exactly the table.
pub fn write_parquet(
    dir: &Path,
    scale_factor: f64,
    options: &ParquetOptions,
) -> Result<Vec<PathBuf>> {
    options.validate()?;
    // Checks the scale factor before anything is written.
    TpchBatches::new(TpchTable::Region, scale_factor, 0, options.parts)?;
    create_dir(dir)?;
    let mut jobs = Vec::new();
    for table in TpchTable::ALL {
        let table_dir = dir.join(table.name());
        create_dir(&table_dir)?;
        let table_parts = if table.is_fixed_size() {
            1
        } else {
            options.parts
        };
        remove_stale_parts(&table_dir, table_parts)?;
        for part in 0..table_parts {
            let path = table_dir.join(format!("part-{part}.parquet"));
            jobs.push((table, part, path));
        }
    }
    // Largest tables first, so the threads finish together.
    jobs.sort_by_key(|(table, part, _)| (std::cmp::Reverse(*table), *part));

    let properties = options.writer_properties();
    let next = AtomicUsize::new(0);
    let worker = || -> Result<()> {
        loop {
            let index = next.fetch_add(1, Ordering::Relaxed);
            let Some((table, part, path)) = jobs.get(index) else {
                return Ok(());
            };
            let written = TpchBatches::new(*table, scale_factor, *part, options.parts)
                .and_then(|batches| write_part(path, batches, &properties));
            if written.is_err() {
                // The other threads stop at their next part.
                next.store(jobs.len(), Ordering::Relaxed);
            }
            written?;
        }
    };
    std::thread::scope(|scope| {
        let threads: Vec<_> = (0..options.threads.clamp(1, jobs.len().max(1)))
            .map(|_| scope.spawn(worker))
            .collect();
        threads
            .into_iter()
            .map(|thread| {
                thread.join().unwrap_or_else(|_| {
                    Err(Error::Internal {
                        what: "a tpch generating thread panicked".into(),
                    })
                })
            })
            .collect::<Vec<Result<()>>>()
            .into_iter()
            .collect::<Result<()>>()
    })?;

    let absolute = fs::canonicalize(dir).map_err(|source| Error::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let script = dir.join(TABLES_SQL);
    fs::write(&script, create_tables_sql(&absolute)).map_err(|source| Error::Io {
        path: script.clone(),
        source,
    })?;
    let mut written: Vec<PathBuf> = jobs.into_iter().map(|(_, _, path)| path).collect();
    written.sort();
    Ok(written)
}

/// Flink DDL declaring the eight tables as `filesystem` Parquet tables over
/// `<dir>/<table>` (the layout [`write_parquet`] writes), one `CREATE TABLE` per table.
///
/// ```
/// let ddl = sluice_datasets::tpch::create_tables_sql(std::path::Path::new("/data/tpch-sf1"));
/// assert!(ddl.contains("CREATE TABLE lineitem ("));
/// assert!(ddl.contains("'path' = '/data/tpch-sf1/lineitem'"));
/// assert!(ddl.contains("l_extendedprice DECIMAL(15, 2)"));
/// ```
pub fn create_tables_sql(dir: &Path) -> String {
    let mut sql = String::from(
        "-- The TPC-H tables, as written by `sluice-datasets tpch`.\n\
         -- Use as an init script: sluice sql -i <this file> -f examples/tpch/q01.sql\n",
    );
    for table in TpchTable::ALL {
        let schema = table.schema();
        let width = schema
            .fields()
            .iter()
            .map(|f| f.name().len())
            .max()
            .unwrap_or(0);
        sql.push_str(&format!("\nCREATE TABLE {} (\n", table.name()));
        let columns: Vec<String> = schema
            .fields()
            .iter()
            .map(|field| {
                format!(
                    "    {:width$} {}",
                    field.name(),
                    sql_type(field.data_type())
                )
            })
            .collect();
        sql.push_str(&columns.join(",\n"));
        let path = dir.join(table.name()).to_string_lossy().replace('\'', "''");
        sql.push_str(&format!(
            "\n) WITH (\n    'connector' = 'filesystem',\n    'path' = '{path}',\n    'format' = 'parquet'\n);\n"
        ));
    }
    sql
}

/// The Flink SQL type of a generated column.
fn sql_type(data_type: &DataType) -> String {
    match data_type {
        DataType::Int32 => "INT".into(),
        DataType::Int64 => "BIGINT".into(),
        DataType::Decimal128(precision, scale) => format!("DECIMAL({precision}, {scale})"),
        DataType::Date32 => "DATE".into(),
        DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8 => "STRING".into(),
        // tpchgen-arrow produces only the types above; show anything new as Arrow names it.
        other => other.to_string(),
    }
}

fn create_dir(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).map_err(|source| Error::Io {
        path: dir.to_path_buf(),
        source,
    })
}

/// Removes `part-<i>.parquet` files with `i >= parts` from `table_dir`.
fn remove_stale_parts(table_dir: &Path, parts: u32) -> Result<()> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Io { path, source }
    };
    for entry in fs::read_dir(table_dir).map_err(io(table_dir))? {
        let path = entry.map_err(io(table_dir))?.path();
        let index = path
            .file_name()
            .and_then(|name| name.to_str())
            .and_then(|name| name.strip_prefix("part-"))
            .and_then(|rest| rest.strip_suffix(".parquet"))
            .and_then(|index| index.parse::<u32>().ok());
        if index.is_some_and(|index| index >= parts) {
            fs::remove_file(&path).map_err(io(&path))?;
        }
    }
    Ok(())
}

/// The schema written: `tpchgen-arrow`'s with `Utf8View` columns as `Utf8`.
fn file_schema(schema: &SchemaRef) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|field| match field.data_type() {
            DataType::Utf8View => field.as_ref().clone().with_data_type(DataType::Utf8),
            _ => field.as_ref().clone(),
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

fn to_file_schema(batch: &RecordBatch, schema: &SchemaRef, what: &str) -> Result<RecordBatch> {
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(column, field)| {
            if column.data_type() == field.data_type() {
                Ok(Arc::clone(column))
            } else {
                cast(column, field.data_type()).map_err(Error::arrow(what))
            }
        })
        .collect::<Result<Vec<ArrayRef>>>()?;
    RecordBatch::try_new(Arc::clone(schema), columns).map_err(Error::arrow(what))
}

fn write_part(path: &Path, batches: TpchBatches, properties: &WriterProperties) -> Result<()> {
    let parquet_error = |source| Error::Parquet {
        path: path.to_path_buf(),
        source,
    };
    let file_name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let in_progress = path.with_file_name(format!(".{file_name}.inprogress"));
    let file = File::create(&in_progress).map_err(|source| Error::Io {
        path: in_progress.clone(),
        source,
    })?;
    let what = format!("tpch {} part file {}", batches.table(), path.display());
    let schema = file_schema(&batches.schema());
    let mut writer = ArrowWriter::try_new(file, Arc::clone(&schema), Some(properties.clone()))
        .map_err(parquet_error)?;
    for batch in batches {
        writer
            .write(&to_file_schema(&batch?, &schema, &what)?)
            .map_err(parquet_error)?;
    }
    writer.close().map_err(parquet_error)?;
    fs::rename(&in_progress, path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Result;
    use parquet::file::reader::{FileReader, SerializedFileReader};

    fn row_count(path: &Path) -> Result<i64> {
        let reader = SerializedFileReader::new(File::open(path)?)?;
        Ok(reader.metadata().file_metadata().num_rows())
    }

    fn table_rows(dir: &Path, table: &str) -> Result<i64> {
        let mut rows = 0;
        for entry in fs::read_dir(dir.join(table))? {
            rows += row_count(&entry?.path())?;
        }
        Ok(rows)
    }

    #[test]
    fn writes_every_table_and_the_ddl() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let options = ParquetOptions::default()
            .with_parts(1)
            .with_row_group_rows(4_000);
        let files = write_parquet(dir.path(), 0.01, &options)?;
        assert_eq!(files.len(), 8);
        assert_eq!(row_count(&dir.path().join("nation/part-0.parquet"))?, 25);
        assert_eq!(
            row_count(&dir.path().join("customer/part-0.parquet"))?,
            1_500
        );
        let orders =
            SerializedFileReader::new(File::open(dir.path().join("orders/part-0.parquet"))?)?;
        assert_eq!(orders.metadata().num_row_groups(), 4);
        let ddl = fs::read_to_string(dir.path().join(TABLES_SQL))?;
        assert_eq!(ddl.matches("CREATE TABLE").count(), 8);
        assert!(ddl.contains("o_orderdate     DATE"), "{ddl}");

        // Rewriting with more parts, then fewer, leaves exactly the table.
        write_parquet(dir.path(), 0.01, &options.clone().with_parts(3))?;
        assert_eq!(table_rows(dir.path(), "orders")?, 15_000);
        let parted = write_parquet(dir.path(), 0.01, &options.with_parts(2))?;
        assert_eq!(parted.len(), 2 + 6 * 2);
        assert_eq!(table_rows(dir.path(), "orders")?, 15_000);
        assert_eq!(table_rows(dir.path(), "region")?, 5);
        Ok(())
    }

    #[test]
    fn the_same_options_write_the_same_bytes() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let options = ParquetOptions::default().with_parts(2).with_threads(2);
        let first = write_parquet(&dir.path().join("a"), 0.01, &options)?;
        let second = write_parquet(&dir.path().join("b"), 0.01, &options.with_threads(1))?;
        assert_eq!(first.len(), second.len());
        for (a, b) in first.iter().zip(&second) {
            assert_eq!(fs::read(a)?, fs::read(b)?, "{}", a.display());
        }
        Ok(())
    }

    #[test]
    fn strings_are_written_as_utf8_and_money_as_decimal() {
        let schema = file_schema(&TpchTable::LineItem.schema());
        let field = |name: &str| schema.field_with_name(name).map(|f| f.data_type().clone());
        assert_eq!(field("l_comment").ok(), Some(DataType::Utf8));
        assert_eq!(field("l_discount").ok(), Some(DataType::Decimal128(15, 2)));
        assert_eq!(field("l_shipdate").ok(), Some(DataType::Date32));
    }

    #[test]
    fn bad_options_are_rejected() {
        let dir = Path::new("/nonexistent/never-created");
        let zero_parts = ParquetOptions::default().with_parts(0);
        assert!(write_parquet(dir, 0.01, &zero_parts).is_err());
        assert!(write_parquet(dir, -1.0, &ParquetOptions::default()).is_err());
        assert!("zstd:99".parse::<ParquetCompression>().is_err());
        assert_eq!(
            "ZSTD:5".parse::<ParquetCompression>().ok(),
            Some(ParquetCompression::Zstd(5))
        );
    }
}
