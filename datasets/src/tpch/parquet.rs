//! Writes a TPC-H data set as Parquet files, one table after another.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use super::{TpchBatches, TpchTable};
use crate::error::{Error, Result};

/// Writes all eight tables at `scale_factor` into `dir` (created if missing)
/// and returns the files written.
///
/// With `parts == 1` each table goes to `<dir>/<table>.parquet`; otherwise
/// to `<dir>/<table>/part-<i>.parquet` for `i` in `0..parts` (`nation` and
/// `region` only have `part-0`). Files are Snappy-compressed.
pub fn write_parquet(dir: &Path, scale_factor: f64, parts: u32) -> Result<Vec<PathBuf>> {
    if parts == 0 {
        return Err(Error::invalid_config(
            "tpch parts = 0; it must be at least 1",
        ));
    }
    create_dir(dir)?;
    let mut written = Vec::new();
    for table in TpchTable::ALL {
        if parts == 1 {
            let path = dir.join(format!("{}.parquet", table.name()));
            write_part(&path, TpchBatches::new(table, scale_factor, 0, 1)?)?;
            written.push(path);
            continue;
        }
        let table_dir = dir.join(table.name());
        create_dir(&table_dir)?;
        let table_parts = if table.is_fixed_size() { 1 } else { parts };
        for part in 0..table_parts {
            let path = table_dir.join(format!("part-{part}.parquet"));
            write_part(&path, TpchBatches::new(table, scale_factor, part, parts)?)?;
            written.push(path);
        }
    }
    Ok(written)
}

fn create_dir(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).map_err(|source| Error::Io {
        path: dir.to_path_buf(),
        source,
    })
}

fn write_part(path: &Path, batches: TpchBatches) -> Result<()> {
    let parquet_error = |source| Error::Parquet {
        path: path.to_path_buf(),
        source,
    };
    let file = File::create(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let properties = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    let mut writer =
        ArrowWriter::try_new(file, batches.schema(), Some(properties)).map_err(parquet_error)?;
    for batch in batches {
        writer.write(&batch?).map_err(parquet_error)?;
    }
    writer.close().map_err(parquet_error)?;
    Ok(())
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

    #[test]
    fn writes_every_table() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let files = write_parquet(dir.path(), 0.01, 1)?;
        assert_eq!(files.len(), 8);
        assert_eq!(row_count(&dir.path().join("nation.parquet"))?, 25);
        assert_eq!(row_count(&dir.path().join("customer.parquet"))?, 1_500);

        let parted = write_parquet(&dir.path().join("parted"), 0.01, 2)?;
        assert_eq!(parted.len(), 2 + 6 * 2);
        let orders: i64 = (0..2)
            .map(|i| row_count(&dir.path().join(format!("parted/orders/part-{i}.parquet"))))
            .sum::<Result<i64>>()?;
        assert_eq!(orders, 15_000);
        Ok(())
    }
}
