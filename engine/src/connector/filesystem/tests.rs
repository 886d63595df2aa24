//! End-to-end tests of the filesystem connector: sinks write real files into a temporary
//! directory and sources read them back through the same entry points the runtime uses.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use arrow::array::{
    ArrayRef, BooleanArray, Date32Array, Decimal128Array, Float64Array, Int8Array, Int32Array,
    Int64Array, StringArray, TimestampMillisecondArray,
};
use arrow::compute::concat_batches;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;

use super::{FileFormat, FileSinkSpec, FileSourceSpec};
use crate::Error;
use crate::connector::{SourcePoll, SourceReader};
use crate::element::ROW_KIND_COLUMN;
use crate::ids::{CheckpointId, SubtaskIndex};
use crate::operator::OperatorContext;
use crate::state::KeyGroupRange;

fn options(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn path_str(path: &Path) -> Result<String> {
    Ok(path.to_str().context("temp path is UTF-8")?.to_owned())
}

/// A table with every type the csv format reads, NULLs, and strings that need quoting.
fn typed_batch(with_string_nulls: bool) -> Result<RecordBatch> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
        Field::new("price", DataType::Decimal128(10, 2), true),
        Field::new("qty", DataType::Int32, true),
        Field::new("small", DataType::Int8, true),
        Field::new("ok", DataType::Boolean, true),
        Field::new("day", DataType::Date32, true),
        Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), true),
        Field::new("score", DataType::Float64, true),
    ]));
    let names = if with_string_nulls {
        vec![
            Some("plain"),
            Some("with, comma"),
            None,
            Some("say \"hi\""),
            Some("two\nlines"),
            Some(""),
        ]
    } else {
        vec![
            Some("plain"),
            Some("with, comma"),
            Some("semi;colon"),
            Some("say \"hi\""),
            Some("two\r\nlines"),
            Some("ünïcödé"),
        ]
    };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(vec![1, 2, 3, 4, 5, 6])),
        Arc::new(StringArray::from(names)),
        Arc::new(
            Decimal128Array::from(vec![
                Some(1050),
                None,
                Some(-3),
                Some(0),
                Some(99_999),
                None,
            ])
            .with_precision_and_scale(10, 2)?,
        ),
        Arc::new(Int32Array::from(vec![
            Some(1),
            Some(-2),
            None,
            Some(i32::MAX),
            Some(0),
            None,
        ])),
        Arc::new(Int8Array::from(vec![
            Some(-128),
            Some(127),
            None,
            Some(0),
            Some(1),
            None,
        ])),
        Arc::new(BooleanArray::from(vec![
            Some(true),
            Some(false),
            None,
            Some(true),
            None,
            Some(false),
        ])),
        Arc::new(Date32Array::from(vec![
            Some(0),
            Some(19_782),
            None,
            Some(-1),
            Some(11_017),
            None,
        ])),
        Arc::new(TimestampMillisecondArray::from(vec![
            Some(0),
            Some(1_709_210_096_789),
            None,
            Some(-1),
            Some(1_500),
            None,
        ])),
        Arc::new(Float64Array::from(vec![
            Some(0.1),
            Some(-2.5e10),
            None,
            Some(1.0 / 3.0),
            Some(0.0),
            None,
        ])),
    ];
    Ok(RecordBatch::try_new(schema, columns)?)
}

fn context(schema: SchemaRef, subtask: u32, parallelism: u32) -> OperatorContext {
    OperatorContext {
        incremental_checkpoints: false,
        checkpointing: false,
        memory: crate::spill::MemoryBudget::default(),
        vertex: "sink".into(),
        subtask: SubtaskIndex(subtask),
        parallelism,
        max_parallelism: 128,
        key_groups: KeyGroupRange::for_subtask(128, parallelism, subtask),
        input_schemas: vec![schema.clone()],
        output_schema: schema,
    }
}

/// Writes `batches` through a sink of `subtask` and finishes it.
fn write_part(spec: &FileSinkSpec, batches: &[RecordBatch], subtask: u32) -> Result<()> {
    let first = batches.first().context("at least one batch")?;
    let mut sink = spec.create_sink()?;
    sink.open(&context(first.schema(), subtask, subtask + 1))?;
    for batch in batches {
        sink.write(batch)?;
    }
    sink.finish()?;
    Ok(())
}

/// Drains one reader, checking every batch respects `batch_size`.
fn drain(reader: &mut dyn SourceReader, batch_size: usize) -> crate::Result<Vec<RecordBatch>> {
    let mut batches = Vec::new();
    loop {
        match reader.poll_next()? {
            SourcePoll::Batch(batch) => {
                assert!(batch.num_rows() > 0 && batch.num_rows() <= batch_size);
                batches.push(batch);
            }
            SourcePoll::Exhausted => return Ok(batches),
            SourcePoll::Pending | SourcePoll::Idle => {}
        }
    }
}

/// Reads `spec` with all subtasks of `parallelism`; returns each subtask's batches.
fn read_subtasks(
    spec: &FileSourceSpec,
    parallelism: u32,
    batch_size: usize,
) -> crate::Result<Vec<Vec<RecordBatch>>> {
    (0..parallelism)
        .map(|subtask| {
            let mut reader = spec.create_reader(subtask, parallelism, batch_size)?;
            drain(reader.as_mut(), batch_size)
        })
        .collect()
}

fn read_all(spec: &FileSourceSpec, batch_size: usize) -> Result<RecordBatch> {
    let batches: Vec<_> = read_subtasks(spec, 1, batch_size)?.concat();
    Ok(concat_batches(&spec.schema, &batches)?)
}

/// Every row as text, sorted: a multiset of rows.
fn sorted_rows(batches: &[RecordBatch]) -> Result<Vec<String>> {
    let options = FormatOptions::default().with_null("NULL");
    let mut rows = Vec::new();
    for batch in batches {
        let formatters = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<Result<Vec<_>, _>>()?;
        for row in 0..batch.num_rows() {
            let cells: Vec<String> = formatters
                .iter()
                .map(|f| f.value(row).to_string())
                .collect();
            rows.push(cells.join("|"));
        }
    }
    rows.sort();
    Ok(rows)
}

fn csv_source(path: String, schema: SchemaRef, pairs: &[(&str, &str)]) -> FileSourceSpec {
    FileSourceSpec {
        path,
        format: FileFormat::Csv,
        schema,
        options: options(pairs),
        partition_keys: Vec::new(),
        predicate: None,
        dictionaries: false,
    }
}

fn simple_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
        Field::new("price", DataType::Int64, true),
    ]))
}

fn expect_err<T>(result: crate::Result<T>) -> Result<Error> {
    match result {
        Ok(_) => bail!("expected an error"),
        Err(err) => Ok(err),
    }
}

/// Polls `reader` until it fails.
fn first_error(reader: &mut dyn SourceReader) -> Result<Error> {
    loop {
        match reader.poll_next() {
            Ok(SourcePoll::Exhausted) => bail!("reader ended without an error"),
            Ok(_) => {}
            Err(err) => return Ok(err),
        }
    }
}

#[test]
fn csv_round_trip_preserves_quotes_commas_newlines_and_nulls() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let input = typed_batch(false)?;
    let out = path_str(&dir.path().join("out"))?;
    let sink = FileSinkSpec {
        path: out.clone(),
        format: FileFormat::Csv,
        options: BTreeMap::new(),
        partition_keys: Vec::new(),
        overwrite: None,
    };
    // Two batches, to check the part file keeps appending.
    write_part(&sink, &[input.slice(0, 2), input.slice(2, 4)], 0)?;
    assert!(dir.path().join("out/part-0-0.csv").is_file());
    let source = csv_source(out, input.schema(), &[]);
    assert_eq!(read_all(&source, 4)?, input);
    Ok(())
}

#[test]
fn csv_round_trip_with_null_literal_header_and_delimiter() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let input = typed_batch(true)?;
    let out = path_str(&dir.path().join("out"))?;
    let pairs = [
        ("csv.null-literal", "\\N"),
        ("csv.header", "true"),
        ("csv.field-delimiter", ";"),
    ];
    let sink = FileSinkSpec {
        path: out.clone(),
        format: FileFormat::Csv,
        options: options(&pairs),
        partition_keys: Vec::new(),
        overwrite: None,
    };
    write_part(&sink, std::slice::from_ref(&input), 3)?;
    let text = fs::read_to_string(dir.path().join("out/part-3-0.csv"))?;
    let header = text.lines().next().context("a header line")?;
    assert_eq!(header, "id;name;price;qty;small;ok;day;ts;score");
    assert!(
        text.contains(
            "2;with, comma;\\N;-2;127;false;2024-02-29;2024-02-29 12:34:56.789;-25000000000.0\n"
        ),
        "{text}"
    );
    assert!(text.contains("\\N"));
    let source = csv_source(out, input.schema(), &pairs);
    assert_eq!(read_all(&source, 100)?, input);
    Ok(())
}

#[test]
fn parquet_round_trip() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let input = typed_batch(true)?;
    let out = path_str(&dir.path().join("out"))?;
    let sink = FileSinkSpec {
        path: out.clone(),
        format: FileFormat::Parquet,
        options: BTreeMap::new(),
        partition_keys: Vec::new(),
        overwrite: None,
    };
    write_part(&sink, &[input.slice(0, 3), input.slice(3, 3)], 1)?;
    assert!(dir.path().join("out/part-1-0.parquet").is_file());
    let source = FileSourceSpec {
        path: out,
        format: FileFormat::Parquet,
        schema: input.schema(),
        options: BTreeMap::new(),
        partition_keys: Vec::new(),
        predicate: None,
        dictionaries: false,
    };
    assert_eq!(read_all(&source, 4)?, input);
    Ok(())
}

#[test]
fn directory_gives_the_same_rows_at_parallelism_1_and_3() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let root = dir.path();
    fs::create_dir_all(root.join("nested"))?;
    let mut expected = 0;
    for file in 0..5 {
        let mut text = String::new();
        for row in 0..(file * 3 + 1) {
            text.push_str(&format!("{file}{row},\"n, {row}\",{}\n", row * 10));
            expected += 1;
        }
        let name = if file % 2 == 0 {
            format!("f{file}.csv")
        } else {
            format!("nested/f{file}.csv")
        };
        fs::write(root.join(name), text)?;
    }
    // Hidden files would be malformed if they were read.
    fs::write(root.join("_SUCCESS"), "not,a,number\n")?;
    fs::write(root.join(".part-9-0.csv.inprogress"), "garbage\n")?;

    let source = csv_source(path_str(root)?, simple_schema(), &[]);
    let serial = read_subtasks(&source, 1, 4)?;
    let parallel = read_subtasks(&source, 3, 4)?;
    assert!(
        parallel.iter().all(|batches| !batches.is_empty()),
        "every subtask gets a file"
    );
    let serial_rows = sorted_rows(&serial.concat())?;
    assert_eq!(serial_rows.len(), expected);
    assert_eq!(serial_rows, sorted_rows(&parallel.concat())?);
    Ok(())
}

#[test]
fn parquet_row_groups_spread_over_subtasks() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("extra", DataType::Utf8, true),
    ]));
    let ids: Vec<i64> = (0..100).collect();
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from(ids)),
            Arc::new(StringArray::from(vec!["x"; 100])),
        ],
    )?;
    let properties = WriterProperties::builder()
        .set_max_row_group_row_count(Some(10))
        .build();
    let file = fs::File::create(dir.path().join("big.parquet"))?;
    let mut writer = ArrowWriter::try_new(file, schema, Some(properties))?;
    writer.write(&batch)?;
    writer.close()?;

    // Only `id` is declared: the extra column is not read.
    let declared = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
    let source = FileSourceSpec {
        path: path_str(dir.path())?,
        format: FileFormat::Parquet,
        schema: declared,
        options: BTreeMap::new(),
        partition_keys: Vec::new(),
        predicate: None,
        dictionaries: false,
    };
    let parallel = read_subtasks(&source, 3, 7)?;
    for batches in &parallel {
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        assert!(
            rows >= 30,
            "each subtask reads 3 or 4 row groups, got {rows} rows"
        );
    }
    assert_eq!(
        sorted_rows(&parallel.concat())?,
        sorted_rows(&read_subtasks(&source, 1, 7)?.concat())?
    );
    Ok(())
}

/// Four row groups of 100 rows (ids 0-399 in order) in pages of 10 rows.
fn write_ids(path: &Path) -> Result<SchemaRef> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
    ]));
    let names: Vec<String> = (0..400).map(|i| format!("n{i:03}")).collect();
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from_iter_values(0..400)),
            Arc::new(StringArray::from_iter_values(names)),
        ],
    )?;
    let properties = WriterProperties::builder()
        .set_max_row_group_row_count(Some(100))
        .set_data_page_row_count_limit(10)
        .set_write_batch_size(10)
        .build();
    let mut writer =
        ArrowWriter::try_new(fs::File::create(path)?, schema.clone(), Some(properties))?;
    writer.write(&batch)?;
    writer.close()?;
    Ok(schema)
}

/// With `dictionaries`, a string column with a small dictionary comes back as a dictionary and
/// one with a string per row as plain strings; the values are those read without it.
#[test]
fn parquet_reads_small_dictionary_strings_as_dictionaries() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let schema = Arc::new(Schema::new(vec![
        Field::new("mode", DataType::Utf8, true),
        Field::new("comment", DataType::Utf8, true),
    ]));
    const MODES: [&str; 7] = ["AIR", "FOB", "MAIL", "RAIL", "REG AIR", "SHIP", "TRUCK"];
    // Row groups large enough that the dictionary is small next to the keys.
    let rows = 8000;
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from_iter(
                (0..rows).map(|i| (i % 11 != 0).then(|| MODES[i * 3 % MODES.len()])),
            )),
            Arc::new(StringArray::from_iter_values(
                (0..rows).map(|i| format!("a comment that differs by row {i}")),
            )),
        ],
    )?;
    let properties = WriterProperties::builder()
        .set_max_row_group_row_count(Some(2000))
        .set_dictionary_page_size_limit(1024)
        .build();
    let mut writer = ArrowWriter::try_new(
        fs::File::create(dir.path().join("modes.parquet"))?,
        schema.clone(),
        Some(properties),
    )?;
    writer.write(&batch)?;
    writer.close()?;
    let plain = FileSourceSpec {
        path: path_str(dir.path())?,
        format: FileFormat::Parquet,
        schema: schema.clone(),
        options: BTreeMap::new(),
        partition_keys: Vec::new(),
        predicate: None,
        dictionaries: false,
    };
    let with_dictionaries = FileSourceSpec {
        dictionaries: true,
        ..plain.clone()
    };
    let batches = read_subtasks(&with_dictionaries, 1, 128)?.concat();
    for batch in &batches {
        assert!(
            matches!(batch.column(0).data_type(), DataType::Dictionary(..)),
            "{}",
            batch.column(0).data_type()
        );
        assert_eq!(batch.column(1).data_type(), &DataType::Utf8);
    }
    let decoded: Vec<RecordBatch> = batches
        .iter()
        .map(|b| {
            let mode = arrow::compute::cast(b.column(0), &DataType::Utf8)?;
            Ok(RecordBatch::try_new(
                schema.clone(),
                vec![mode, b.column(1).clone()],
            )?)
        })
        .collect::<Result<_>>()?;
    assert_eq!(concat_batches(&schema, &decoded)?, batch);
    let plain = read_all(&plain, 128)?;
    assert_eq!(plain.column(0).data_type(), &DataType::Utf8);
    assert_eq!(plain, batch);
    Ok(())
}

/// The rows of `batches` that pass `predicate`.
fn passing(batches: &[RecordBatch], predicate: &crate::expr::Expr) -> Result<Vec<String>> {
    let mut kept = Vec::new();
    for batch in batches {
        let mask = predicate
            .resolve(&batch.schema())?
            .evaluate_predicate(batch)?;
        kept.push(arrow::compute::filter_record_batch(batch, &mask)?);
    }
    sorted_rows(&kept)
}

#[test]
fn parquet_predicate_skips_row_groups_and_pages() -> Result<()> {
    use crate::expr::{col, lit};
    let dir = tempfile::tempdir()?;
    let schema = write_ids(&dir.path().join("ids.parquet"))?;
    let predicate = col("id")
        .gt_eq(lit(250_i64))
        .and(col("id").lt(lit(265_i64)));
    let whole = FileSourceSpec {
        path: path_str(dir.path())?,
        format: FileFormat::Parquet,
        schema,
        options: BTreeMap::new(),
        partition_keys: Vec::new(),
        predicate: None,
        dictionaries: false,
    };
    let pruned = FileSourceSpec {
        predicate: Some(predicate.clone()),
        ..whole.clone()
    };
    let expected = passing(&read_subtasks(&whole, 1, 7)?.concat(), &predicate)?;
    assert_eq!(expected.len(), 15);
    for parallelism in [1, 3] {
        let batches = read_subtasks(&pruned, parallelism, 7)?.concat();
        // Only the pages of ids 250-259 and 260-269 of one row group are read.
        let read: usize = batches.iter().map(RecordBatch::num_rows).sum();
        assert_eq!(read, 20, "parallelism {parallelism}");
        assert_eq!(passing(&batches, &predicate)?, expected);
    }
    let reader = pruned.create_reader(0, 1, 7)?;
    assert_eq!(reader.remaining_records(), Some(20));

    // Skipped row groups are done in the position, and a restored reader resumes inside the
    // selection of the row group that is read.
    let mut first = pruned.create_reader(0, 1, 7)?;
    let SourcePoll::Batch(head) = first.poll_next()? else {
        bail!("expected a batch");
    };
    let position = first.position();
    let splits = position["splits"]
        .as_object()
        .context("per-split positions")?;
    assert_eq!(splits.len(), 4);
    let done = splits.values().filter(|s| s["done"] == true).count();
    assert_eq!(done, 3, "{position}");
    let mut second = pruned.create_reader(0, 1, 7)?;
    second.restore(&position)?;
    let mut batches = vec![head];
    batches.extend(drain(second.as_mut(), 7)?);
    assert_eq!(
        sorted_rows(&batches)?,
        sorted_rows(&read_subtasks(&pruned, 1, 7)?.concat())?
    );
    Ok(())
}

#[test]
fn malformed_csv_row_names_file_line_and_column() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("x.csv");
    fs::write(&file, "1,a,10\n2,b,20\n3,c,abc\n4,d,40\n")?;
    let source = csv_source(path_str(&file)?, simple_schema(), &[]);
    let mut reader = source.create_reader(0, 1, 2)?;
    let err = first_error(reader.as_mut())?;
    assert!(matches!(err, Error::Data { .. }));
    assert_eq!(
        err.to_string(),
        format!(
            "malformed data in file '{}' line 3 column 'price': cannot parse 'abc' as BIGINT",
            file.display()
        )
    );
    Ok(())
}

#[test]
fn wrong_field_count_and_not_null_are_malformed() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("short.csv");
    fs::write(&file, "1,a,10\n2,b\n")?;
    let source = csv_source(path_str(&file)?, simple_schema(), &[]);
    let err = first_error(source.create_reader(0, 1, 10)?.as_mut())?;
    let message = err.to_string();
    assert!(message.contains("short.csv' line 2"), "{message}");
    assert!(message.contains("expected 3 fields, found 2"), "{message}");

    fs::write(&file, "1,a,10\n,b,20\n")?;
    let err = first_error(source.create_reader(0, 1, 10)?.as_mut())?;
    let message = err.to_string();
    assert!(
        message.contains("line 2 column 'id': NULL in NOT NULL column of type BIGINT"),
        "{message}"
    );
    Ok(())
}

#[test]
fn ignore_parse_errors_skips_and_counts_bad_rows() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("x.csv");
    fs::write(
        &file,
        "1,a,10\n2,b,20\n3,c,abc\n4,d,40\n5,e\n6,f,60\n,g,70\n8,h,80\n",
    )?;
    let source = csv_source(
        path_str(&file)?,
        simple_schema(),
        &[("csv.ignore-parse-errors", "true")],
    );
    for batch_size in [1, 3, 100] {
        let mut reader = source.create_reader(0, 1, batch_size)?;
        let batches = drain(reader.as_mut(), batch_size)?;
        let ids = concat_batches(&source.schema, &batches)?;
        let ids = ids
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .context("id column")?;
        assert_eq!(ids.values().to_vec(), vec![1, 2, 4, 6, 8]);
        assert_eq!(reader.skipped_records(), 3, "batch size {batch_size}");
    }
    Ok(())
}

#[test]
fn missing_path_fails_when_the_reader_is_created() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let missing = dir.path().join("data/in.csv");
    let source = csv_source(path_str(&missing)?, simple_schema(), &[]);
    let err = expect_err(source.create_reader(0, 1, 10))?;
    assert!(matches!(err, Error::Io { .. }));
    let message = err.to_string();
    assert!(
        message.starts_with(&format!(
            "read '{}': No such file or directory",
            missing.display()
        )),
        "{message}"
    );
    Ok(())
}

#[test]
fn header_is_skipped_and_counted_in_line_numbers() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("h.csv");
    fs::write(&file, "id,name,price\n1,a,10\n2,b,x\n")?;
    let with_header = csv_source(path_str(&file)?, simple_schema(), &[("csv.header", "true")]);
    let err = first_error(with_header.create_reader(0, 1, 10)?.as_mut())?;
    assert!(err.to_string().contains("line 3 column 'price'"), "{err}");

    fs::write(&file, "id,name,price\n1,a,10\n2,b,20\n")?;
    assert_eq!(read_all(&with_header, 10)?.num_rows(), 2);
    // Without the option the header is a malformed row.
    let without = csv_source(path_str(&file)?, simple_schema(), &[]);
    let err = first_error(without.create_reader(0, 1, 10)?.as_mut())?;
    assert!(err.to_string().contains("line 1 column 'id'"), "{err}");
    Ok(())
}

#[test]
fn comments_are_skipped_and_counted_in_line_numbers() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("c.csv");
    fs::write(&file, "# a comment\n1,a,10\n\n# another\r\n2,b,bad\n")?;
    let source = csv_source(
        path_str(&file)?,
        simple_schema(),
        &[("csv.allow-comments", "true")],
    );
    let err = first_error(source.create_reader(0, 1, 10)?.as_mut())?;
    assert!(err.to_string().contains("line 5 column 'price'"), "{err}");
    Ok(())
}

#[test]
fn quoted_fields_and_escapes() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("q.csv");
    fs::write(&file, "1,'it''s; fine',2\n3,'a \\' b',4\n")?;
    let source = csv_source(
        path_str(&file)?,
        simple_schema(),
        &[("csv.quote-character", "'"), ("csv.escape-character", "\\")],
    );
    let batch = read_all(&source, 10)?;
    let names = batch
        .column(1)
        .as_any()
        .downcast_ref::<StringArray>()
        .context("name column")?;
    assert_eq!(names.value(0), "it's; fine");
    assert_eq!(names.value(1), "a ' b");
    Ok(())
}

#[test]
fn unknown_csv_option_is_a_config_error() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("x.csv");
    fs::write(&file, "1,a,10\n")?;
    let source = csv_source(
        path_str(&file)?,
        simple_schema(),
        &[("csv.field-delimiter", ";"), ("csv.quote-char", "'")],
    );
    let err = expect_err(source.create_reader(0, 1, 10))?;
    assert!(
        matches!(&err, Error::Config { key, .. } if key == "csv.quote-char"),
        "{err}"
    );
    assert!(err.to_string().contains("csv.quote-character"), "{err}");

    let sink = FileSinkSpec {
        path: path_str(&dir.path().join("out"))?,
        format: FileFormat::Csv,
        options: options(&[("csv.headers", "true")]),
        partition_keys: Vec::new(),
        overwrite: None,
    };
    let err = expect_err(sink.create_sink())?;
    assert!(matches!(err, Error::Config { .. }), "{err}");
    Ok(())
}

#[test]
fn csv_position_restore_resumes_after_the_last_batch() -> Result<()> {
    let dir = tempfile::tempdir()?;
    for (name, first) in [("a.csv", 0), ("b.csv", 100)] {
        let text: String = (first..first + 5)
            .map(|i| format!("{i},\"n\n{i}\",{i}\n"))
            .collect();
        fs::write(dir.path().join(name), format!("id,name,price\n{text}"))?;
    }
    let source = csv_source(
        path_str(dir.path())?,
        simple_schema(),
        &[("csv.header", "true")],
    );
    let full = read_all(&source, 2)?;
    assert_eq!(full.num_rows(), 10);

    // Stop after every possible number of batches and resume in a fresh reader.
    for stop_after in 0..6 {
        let mut first = source.create_reader(0, 1, 2)?;
        let mut batches = Vec::new();
        for _ in 0..stop_after {
            if let SourcePoll::Batch(batch) = first.poll_next()? {
                batches.push(batch);
            }
        }
        let position = first.position();
        let mut second = source.create_reader(0, 1, 2)?;
        second.restore(&position)?;
        batches.extend(drain(second.as_mut(), 2)?);
        assert_eq!(
            concat_batches(&source.schema, &batches)?,
            full,
            "stopped after {stop_after} batches at {position}"
        );
    }
    Ok(())
}

#[test]
fn parquet_position_restore_resumes_after_the_last_batch() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let input = typed_batch(true)?;
    let sink = FileSinkSpec {
        path: path_str(dir.path())?,
        format: FileFormat::Parquet,
        options: BTreeMap::new(),
        partition_keys: Vec::new(),
        overwrite: None,
    };
    write_part(&sink, std::slice::from_ref(&input), 0)?;
    let source = FileSourceSpec {
        path: path_str(dir.path())?,
        format: FileFormat::Parquet,
        schema: input.schema(),
        options: BTreeMap::new(),
        partition_keys: Vec::new(),
        predicate: None,
        dictionaries: false,
    };
    let mut first = source.create_reader(0, 1, 4)?;
    let SourcePoll::Batch(head) = first.poll_next()? else {
        bail!("expected a batch");
    };
    let mut second = source.create_reader(0, 1, 4)?;
    second.restore(&first.position())?;
    let mut batches = vec![head];
    batches.extend(drain(second.as_mut(), 4)?);
    assert_eq!(concat_batches(&source.schema, &batches)?, input);
    Ok(())
}

#[test]
fn parquet_schema_is_checked_and_widened() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let file_schema = Arc::new(Schema::new(vec![
        Field::new("extra", DataType::Utf8, true),
        Field::new("n", DataType::Int32, true),
        Field::new("s", DataType::Utf8, true),
    ]));
    let batch = RecordBatch::try_new(
        file_schema.clone(),
        vec![
            Arc::new(StringArray::from(vec!["e1", "e2"])),
            Arc::new(Int32Array::from(vec![Some(7), None])),
            Arc::new(StringArray::from(vec!["a", "b"])),
        ],
    )?;
    let path = dir.path().join("t.parquet");
    let mut writer = ArrowWriter::try_new(fs::File::create(&path)?, file_schema, None)?;
    writer.write(&batch)?;
    writer.close()?;
    let spec = |fields: Vec<Field>| -> Result<FileSourceSpec> {
        Ok(FileSourceSpec {
            path: path_str(&path)?,
            format: FileFormat::Parquet,
            schema: Arc::new(Schema::new(fields)),
            options: BTreeMap::new(),
            partition_keys: Vec::new(),
            predicate: None,
            dictionaries: false,
        })
    };

    // Declared in another order, INT read as BIGINT, `extra` not declared.
    let widened = spec(vec![
        Field::new("s", DataType::Utf8, true),
        Field::new("n", DataType::Int64, true),
    ])?;
    let read = read_all(&widened, 10)?;
    assert_eq!(
        read.column(1).as_ref(),
        &Int64Array::from(vec![Some(7), None]) as &dyn arrow::array::Array
    );
    assert_eq!(
        read.column(0).as_ref(),
        &StringArray::from(vec!["a", "b"]) as &dyn arrow::array::Array
    );

    let missing = spec(vec![Field::new("price", DataType::Int64, true)])?;
    let err = expect_err(missing.create_reader(0, 1, 10))?;
    let message = err.to_string();
    assert!(
        message.contains("t.parquet") && message.contains("'price'"),
        "{message}"
    );

    let mismatch = spec(vec![Field::new("s", DataType::Int64, true)])?;
    let err = expect_err(mismatch.create_reader(0, 1, 10))?;
    let message = err.to_string();
    assert!(
        message.contains("t.parquet")
            && message.contains("column 's'")
            && message.contains("Utf8")
            && message.contains("Int64"),
        "{message}"
    );
    Ok(())
}

#[test]
fn sink_hides_parts_until_their_checkpoint_completes() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let input = typed_batch(false)?;
    let spec = FileSinkSpec {
        path: path_str(&dir.path().join("out"))?,
        format: FileFormat::Csv,
        options: BTreeMap::new(),
        partition_keys: Vec::new(),
        overwrite: None,
    };
    let mut sink = spec.create_sink()?;
    sink.open(&context(input.schema(), 2, 4))?;
    sink.write(&input)?;
    let pending = sink.pre_commit(CheckpointId(1))?;
    let in_progress = dir.path().join("out/.part-2-0.csv.inprogress");
    let committed = dir.path().join("out/part-2-0.csv");
    assert_eq!(
        String::from_utf8(pending.clone())?,
        format!("{}\t{}\n", path_str(&in_progress)?, path_str(&committed)?)
    );
    assert!(in_progress.is_file());
    assert!(!committed.exists());

    // A reader of the directory sees nothing until the checkpoint completes.
    let source = csv_source(path_str(&dir.path().join("out"))?, input.schema(), &[]);
    assert_eq!(read_all(&source, 10)?.num_rows(), 0);
    sink.commit(CheckpointId(1), &pending)?;
    sink.commit(CheckpointId(1), &pending)?;
    assert!(!in_progress.exists());
    assert_eq!(read_all(&source, 10)?, input);

    // Rows after the barrier go to the next part, visible at the end of input.
    sink.write(&input)?;
    assert!(dir.path().join("out/.part-2-1.csv.inprogress").is_file());
    sink.finish()?;
    assert!(dir.path().join("out/part-2-1.csv").is_file());
    assert_eq!(read_all(&source, 10)?.num_rows(), 2 * input.num_rows());
    Ok(())
}

#[test]
fn restored_sink_commits_earlier_parts_and_drops_later_ones() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("out");
    let input = typed_batch(false)?;
    let spec = FileSinkSpec {
        path: path_str(&out)?,
        format: FileFormat::Csv,
        options: BTreeMap::new(),
        partition_keys: Vec::new(),
        overwrite: None,
    };
    // Four subtasks: each pre-commits part 0 at checkpoint 1 and stages part 1 (a crash
    // before checkpoint 1 completes: nothing was committed).
    for subtask in 0..4 {
        let mut sink = spec.create_sink()?;
        sink.open(&context(input.schema(), subtask, 4))?;
        sink.write(&input)?;
        sink.pre_commit(CheckpointId(1))?;
        sink.write(&input)?;
        sink.pre_commit(CheckpointId(2))?;
    }
    // Restored at parallelism 2 from checkpoint 1: subtask 0 owns old 0 and 2, 1 owns 1 and 3.
    for subtask in 0..2 {
        let mut sink = spec.create_sink()?;
        sink.open(&context(input.schema(), subtask, 2))?;
        sink.recover(Some((CheckpointId(1), &[])))?;
    }
    let mut names: Vec<String> = fs::read_dir(&out)?
        .map(|e| Ok(e?.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_>>()?;
    names.sort();
    assert_eq!(
        names,
        vec![
            "part-0-0.csv",
            "part-1-0.csv",
            "part-2-0.csv",
            "part-3-0.csv"
        ]
    );
    Ok(())
}

#[test]
fn sink_rejects_changelog_input() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new(ROW_KIND_COLUMN, DataType::Int8, false),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from(vec![1])),
            Arc::new(Int8Array::from(vec![0])),
        ],
    )?;
    for format in [FileFormat::Csv, FileFormat::Parquet] {
        let spec = FileSinkSpec {
            path: path_str(dir.path())?,
            format,
            options: BTreeMap::new(),
            partition_keys: Vec::new(),
            overwrite: None,
        };
        let mut sink = spec.create_sink()?;
        sink.open(&context(schema.clone(), 0, 1))?;
        let err = expect_err(sink.write(&batch))?;
        assert!(
            err.to_string()
                .contains("the filesystem sink accepts only insert-only input"),
            "{err}"
        );
    }
    Ok(())
}

/// A job of `source` → `sink` with a forward edge, both at `parallelism`.
fn file_job(
    source: FileSourceSpec,
    sink: FileSinkSpec,
    parallelism: u32,
) -> crate::Result<crate::graph::JobGraph> {
    use crate::connector::{SinkSpec, SourceSpec};
    use crate::graph::{
        DEFAULT_MAX_PARALLELISM, Edge, JobGraph, OperatorSpec, Partitioning, Vertex,
    };
    use crate::ids::VertexId;
    let schema = source.schema.clone();
    let vertex = |id: u32, name: &str, operator: OperatorSpec| Vertex {
        id: VertexId(id),
        name: name.into(),
        operator,
        output_schema: schema.clone(),
        parallelism,
        max_parallelism: DEFAULT_MAX_PARALLELISM,
        read_first: None,
    };
    JobGraph::new(
        "files",
        vec![
            vertex(
                0,
                "source",
                OperatorSpec::Source {
                    connector: SourceSpec::Filesystem(source.clone()),
                    watermark: None,
                },
            ),
            vertex(
                1,
                "sink",
                OperatorSpec::Sink {
                    connector: SinkSpec::Filesystem(sink),
                },
            ),
        ],
        vec![Edge {
            source: VertexId(0),
            target: VertexId(1),
            input_index: 0,
            partitioning: Partitioning::Forward,
        }],
    )
}

#[test]
fn job_converts_a_csv_directory_to_parquet_parts() -> Result<()> {
    use crate::runtime::{JobEnvironment, LocalRuntime, RuntimeConfig};
    let dir = tempfile::tempdir()?;
    let input = dir.path().join("in");
    fs::create_dir_all(&input)?;
    for file in 0..4 {
        let text: String = (0..25)
            .map(|row| format!("{file}{row:02},\"n,{row}\",{row}\n"))
            .collect();
        fs::write(input.join(format!("f{file}.csv")), text)?;
    }
    let source = csv_source(path_str(&input)?, simple_schema(), &[]);
    let output = path_str(&dir.path().join("out"))?;
    let sink = FileSinkSpec {
        path: output.clone(),
        format: FileFormat::Parquet,
        options: BTreeMap::new(),
        partition_keys: Vec::new(),
        overwrite: None,
    };
    let runtime = LocalRuntime::new(RuntimeConfig::default().with_batch_size(16));
    runtime.execute(
        &file_job(source.clone(), sink, 2)?,
        &JobEnvironment::default(),
    )?;

    let mut parts: Vec<_> = fs::read_dir(&output)?
        .map(|entry| entry.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_, _>>()?;
    parts.sort();
    assert_eq!(parts, vec!["part-0-0.parquet", "part-1-0.parquet"]);
    let written = FileSourceSpec {
        path: output,
        format: FileFormat::Parquet,
        schema: simple_schema(),
        options: BTreeMap::new(),
        partition_keys: Vec::new(),
        predicate: None,
        dictionaries: false,
    };
    assert_eq!(
        sorted_rows(&read_subtasks(&written, 1, 100)?.concat())?,
        sorted_rows(&read_subtasks(&source, 1, 100)?.concat())?
    );
    Ok(())
}

#[test]
fn job_with_a_missing_input_fails_with_the_path() -> Result<()> {
    use crate::runtime::{JobEnvironment, LocalRuntime};
    let dir = tempfile::tempdir()?;
    let missing = dir.path().join("data/in.csv");
    let source = csv_source(path_str(&missing)?, simple_schema(), &[]);
    let sink = FileSinkSpec {
        path: path_str(&dir.path().join("out"))?,
        format: FileFormat::Csv,
        options: BTreeMap::new(),
        partition_keys: Vec::new(),
        overwrite: None,
    };
    let result =
        LocalRuntime::default().execute(&file_job(source, sink, 1)?, &JobEnvironment::default());
    let err = expect_err(result)?;
    assert!(
        err.to_string()
            .contains(&format!("read '{}'", missing.display())),
        "{err}"
    );
    Ok(())
}
