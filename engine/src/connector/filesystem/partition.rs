//! Partitioned directories (`PARTITIONED BY (dt, hm)`), laid out as Flink does:
//! `path/dt=2024-01-01/hm=10/part-…`. Partition columns are not stored in the files; their
//! values are in the directory names, escaped like Flink (`%2F` for `/`, …), a NULL or empty
//! value as `__DEFAULT_PARTITION__`.
//!
//! - Writing: [`split_by_partition`] cuts a batch into one slice per partition (arrow's
//!   `partition` kernel over the partition columns, after a `lexsort` only when the batch holds
//!   several partitions) and names each slice's directory.
//! - Reading: [`PartitionedReader`] wraps the reader of the data columns and appends the
//!   partition columns of the file each batch came from, parsed from its path.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringArray, UInt32Array, new_null_array};
use arrow::compute::{SortColumn, lexsort_to_indices, take, take_record_batch};
use arrow::datatypes::{Schema, SchemaRef};
use arrow::util::display::{ArrayFormatter, FormatOptions};

use crate::connector::{SourcePoll, SourceReader};
use crate::{Error, Result};

/// Flink's name for a NULL partition value (`partition.default-name`).
pub(crate) const DEFAULT_PARTITION: &str = "__DEFAULT_PARTITION__";

/// The characters Flink escapes in partition values.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '"' | '#' | '%' | '\'' | '*' | '/' | ':' | '=' | '?' | '\\' | '{' | '[' | ']' | '^'
        )
}

fn escape(value: &str, out: &mut String) {
    for c in value.chars() {
        if needs_escape(c) {
            let mut bytes = [0; 4];
            for b in c.encode_utf8(&mut bytes).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        } else {
            out.push(c);
        }
    }
}

fn unescape(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        if bytes[i] == b'%'
            && let Some(b) = hex
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The indices of `keys` in `schema`, and of the other (data) columns.
pub(crate) fn split_columns(schema: &Schema, keys: &[String]) -> Result<(Vec<usize>, Vec<usize>)> {
    let key_indices = keys
        .iter()
        .map(|k| {
            schema.index_of(k).map_err(|_| {
                Error::expr(format!(
                    "unknown partition column '{k}' (columns: {})",
                    crate::graph::describe_columns(schema)
                ))
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let data = (0..schema.fields().len())
        .filter(|i| !key_indices.contains(i))
        .collect::<Vec<_>>();
    if data.is_empty() {
        return Err(Error::expr(
            "a partitioned table needs at least one column that is not a partition column",
        ));
    }
    Ok((key_indices, data))
}

/// The batch's rows grouped by partition: `(relative directory, data columns)` per partition.
pub(crate) fn split_by_partition(
    batch: &RecordBatch,
    keys: &[usize],
    data: &[usize],
    names: &[String],
) -> Result<Vec<(String, RecordBatch)>> {
    let err = |e| Error::arrow("split a batch by partition", e);
    let key_columns =
        |b: &RecordBatch| -> Vec<ArrayRef> { keys.iter().map(|&i| b.column(i).clone()).collect() };
    let mut ranges = arrow::compute::partition(&key_columns(batch))
        .map_err(err)?
        .ranges();
    let sorted;
    let source = if ranges.len() > 1 {
        let columns: Vec<SortColumn> = key_columns(batch)
            .into_iter()
            .map(|values| SortColumn {
                values,
                options: None,
            })
            .collect();
        let indices = lexsort_to_indices(&columns, None).map_err(err)?;
        sorted = take_record_batch(batch, &indices).map_err(err)?;
        ranges = arrow::compute::partition(&key_columns(&sorted))
            .map_err(err)?
            .ranges();
        &sorted
    } else {
        batch
    };
    let options = FormatOptions::default()
        .with_timestamp_format(Some("%Y-%m-%d %H:%M:%S%.f"))
        .with_null(DEFAULT_PARTITION);
    let source_keys = key_columns(source);
    let formatters = source_keys
        .iter()
        .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).map_err(err))
        .collect::<Result<Vec<_>>>()?;
    let mut out = Vec::with_capacity(ranges.len());
    for range in ranges {
        let mut dir = String::new();
        for (name, formatter) in names.iter().zip(&formatters) {
            if !dir.is_empty() {
                dir.push('/');
            }
            dir.push_str(name);
            dir.push('=');
            let value = formatter.value(range.start).to_string();
            if value.is_empty() {
                dir.push_str(DEFAULT_PARTITION);
            } else {
                escape(&value, &mut dir);
            }
        }
        let slice = source.slice(range.start, range.end - range.start);
        out.push((dir, slice.project(data).map_err(err)?));
    }
    Ok(out)
}

/// Wraps the reader of a partitioned directory's data columns and appends the partition
/// columns parsed from the path of each batch's file.
pub(crate) struct PartitionedReader {
    inner: Box<dyn SourceReader>,
    /// The files of this reader, as the inner reader numbers its splits.
    files: Vec<PathBuf>,
    schema: SchemaRef,
    keys: Vec<usize>,
    data: Vec<usize>,
    /// The one-element partition values of the file read last.
    cached: Option<(usize, Vec<ArrayRef>)>,
}

impl PartitionedReader {
    pub(crate) fn new(
        inner: Box<dyn SourceReader>,
        files: Vec<PathBuf>,
        schema: SchemaRef,
        keys: Vec<usize>,
        data: Vec<usize>,
    ) -> Self {
        PartitionedReader {
            inner,
            files,
            schema,
            keys,
            data,
            cached: None,
        }
    }

    /// The partition values of `file` as one-element arrays of the key columns' types.
    fn values(&self, file: &Path) -> Result<Vec<ArrayRef>> {
        let text = file.to_string_lossy();
        self.keys
            .iter()
            .map(|&k| {
                let field = self.schema.field(k);
                let prefix = format!("{}=", field.name());
                let raw = text
                    .split(['/', '\\'])
                    .rev()
                    .find_map(|part| part.strip_prefix(prefix.as_str()))
                    .ok_or_else(|| {
                        Error::data(
                            format!("file '{}'", file.display()),
                            format!(
                                "the path has no '{}' directory for partition column '{}'",
                                prefix,
                                field.name()
                            ),
                        )
                    })?;
                if raw == DEFAULT_PARTITION {
                    return Ok(new_null_array(field.data_type(), 1));
                }
                let value: ArrayRef = Arc::new(StringArray::from(vec![unescape(raw)]));
                arrow::compute::cast_with_options(
                    &value,
                    field.data_type(),
                    &arrow::compute::CastOptions {
                        safe: false,
                        ..Default::default()
                    },
                )
                .map_err(|e| {
                    Error::data(
                        format!("file '{}'", file.display()),
                        format!("partition value '{raw}' of column '{}': {e}", field.name()),
                    )
                })
            })
            .collect()
    }
}

impl SourceReader for PartitionedReader {
    fn poll_next(&mut self) -> Result<SourcePoll> {
        let batch = match self.inner.poll_next()? {
            SourcePoll::Batch(batch) => batch,
            other => return Ok(other),
        };
        let split = self.inner.current_split();
        if self.cached.as_ref().is_none_or(|(f, _)| *f != split) {
            let file = self.files.get(split).ok_or_else(|| {
                Error::Internal(format!("partitioned source: no file for split {split}"))
            })?;
            self.cached = Some((split, self.values(file)?));
        }
        let values = self.cached.as_ref().map(|(_, v)| v).expect("cached above");
        let repeat = UInt32Array::from(vec![0; batch.num_rows()]);
        let mut columns: Vec<Option<ArrayRef>> = vec![None; self.schema.fields().len()];
        for (j, &d) in self.data.iter().enumerate() {
            columns[d] = Some(batch.column(j).clone());
        }
        for (value, &k) in values.iter().zip(&self.keys) {
            columns[k] = Some(
                take(value.as_ref(), &repeat, None)
                    .map_err(|e| Error::arrow("partition column", e))?,
            );
        }
        let columns = columns
            .into_iter()
            .map(|c| c.ok_or_else(|| Error::Internal("partitioned source: column gap".into())))
            .collect::<Result<Vec<_>>>()?;
        RecordBatch::try_new(self.schema.clone(), columns)
            .map(SourcePoll::Batch)
            .map_err(|e| Error::arrow("partitioned source batch", e))
    }

    fn position(&self) -> serde_json::Value {
        self.inner.position()
    }

    fn restore(&mut self, position: &serde_json::Value) -> Result<()> {
        self.cached = None;
        self.inner.restore(position)
    }

    fn skipped_records(&self) -> u64 {
        self.inner.skipped_records()
    }

    fn current_split(&self) -> usize {
        self.inner.current_split()
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Array, AsArray, Int32Array};
    use arrow::datatypes::{DataType, Field};

    use super::*;

    #[test]
    fn escaping_round_trips() {
        let mut out = String::new();
        escape("a/b=c:d%é", &mut out);
        assert_eq!(out, "a%2Fb%3Dc%3Ad%25é");
        assert_eq!(unescape(&out), "a/b=c:d%é");
    }

    #[test]
    fn splits_rows_by_partition() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("v", DataType::Int32, false),
            Field::new("dt", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int32Array::from(vec![1, 2, 3, 4])),
                Arc::new(StringArray::from(vec![
                    Some("b"),
                    Some("a/x"),
                    None,
                    Some("b"),
                ])),
            ],
        )
        .unwrap();
        let (keys, data) = split_columns(&schema, &["dt".to_string()]).unwrap();
        let parts = split_by_partition(&batch, &keys, &data, &["dt".to_string()]).unwrap();
        let summary: Vec<(String, Vec<i32>)> = parts
            .iter()
            .map(|(dir, b)| {
                assert_eq!(b.num_columns(), 1);
                (
                    dir.clone(),
                    b.column(0)
                        .as_primitive::<arrow::datatypes::Int32Type>()
                        .values()
                        .to_vec(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                (format!("dt={DEFAULT_PARTITION}"), vec![3]),
                ("dt=a%2Fx".to_string(), vec![2]),
                ("dt=b".to_string(), vec![1, 4]),
            ]
        );
        assert!(split_columns(&schema, &["nope".to_string()]).is_err());
        let only_keys = Schema::new(vec![Field::new("dt", DataType::Utf8, true)]);
        assert!(split_columns(&only_keys, &["dt".to_string()]).is_err());
        assert_eq!(new_null_array(&DataType::Utf8, 1).null_count(), 1);
    }
}
