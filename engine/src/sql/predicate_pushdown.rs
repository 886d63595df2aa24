//! Predicate push-down into Parquet scans: where the planner filters a table's rows right
//! after its source, the conjuncts of the filter that compare one of the table's columns with
//! constants also go into the source's spec ([`FileSourceSpec::predicate`]), so that the
//! Parquet reader skips the row groups and pages whose statistics rule them out.
//!
//! The filter stays: pruning reads less, it never decides which rows pass. A conjunct is
//! pushed only when the reader can prune with it ([`is_prunable`]) and names no partition
//! column (those are not in the files). Only a source that no other operator reads gets a
//! predicate; the JobGraph's validation checks that the filters after it apply it. A source
//! that generates watermarks gets none: its watermarks follow the rows it reads, filtered
//! out or not, and fewer rows read would move them (and so which rows are late).
//!
//! Such a source also reads its small-dictionary `STRING` columns as dictionaries
//! ([`FileSourceSpec::dictionaries`]), which the filter evaluates and decodes.
//!
//! Called by the planner wherever it filters a relation: the `WHERE` of a single table and the
//! conditions it pushes to one relation of a join.
//!
//! [`FileSourceSpec::predicate`]: crate::connector::FileSourceSpec::predicate

use crate::Result;
use crate::api::DataStream;
use crate::connector::filesystem::is_prunable;
use crate::connector::{FileFormat, SourceSpec};
use crate::expr::Expr;

/// `stream` filtered by `predicate`; when `stream` is a Parquet source that nothing reads yet,
/// the source gets the conjuncts of `predicate` it can prune with.
pub(super) fn filter(stream: &DataStream, predicate: Expr) -> Result<DataStream> {
    stream.update_unread_source(|spec, watermark| {
        let SourceSpec::Filesystem(spec) = spec else {
            return;
        };
        if spec.format != FileFormat::Parquet || watermark.is_some() {
            return;
        }
        // The filter, the only reader, decodes the dictionaries of the rows it keeps.
        spec.dictionaries = spec.partition_keys.is_empty();
        let pushed = predicate
            .conjuncts()
            .into_iter()
            .filter(|c| {
                is_prunable(c, &spec.schema)
                    && c.columns().iter().all(|c| !spec.partition_keys.contains(c))
            })
            .cloned()
            .reduce(Expr::and);
        if let Some(pushed) = pushed {
            spec.predicate = Some(match spec.predicate.take() {
                Some(earlier) => earlier.and(pushed),
                None => pushed,
            });
        }
    });
    stream.filter(predicate)
}

#[cfg(test)]
mod tests {
    use std::fs::File;
    use std::path::Path;
    use std::sync::Arc;

    use arrow::array::{Date32Array, Decimal128Array, Int64Array, RecordBatch, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use parquet::arrow::ArrowWriter;
    use parquet::file::properties::WriterProperties;

    use crate::runtime::{JobResult, RuntimeConfig};
    use crate::sql::{Outcome, Session, SessionConfig};

    const ROWS: i64 = 4_000;
    /// 1994-01-01, in days after the epoch.
    const FIRST_DAY: i64 = 8_766;
    const MODES: [Option<&str>; 5] = [Some("AIR"), Some("SHIP"), Some("RAIL"), Some("TRUCK"), None];
    /// Twenty days from 1994-09-10 (day 252 of the data): ids 2520-2719, inside the sixth row
    /// group (ids 2500-2999), on five of its ten pages.
    const DATE_RANGE: &str =
        "shipdate >= DATE '1994-09-10' AND shipdate < DATE '1994-09-10' + INTERVAL '20' DAY";

    /// Row `i`: 10 shipments a day from 1994-01-01, quantity `i % 50 + 1`, modes in turn (every
    /// fifth NULL); in row groups of 500 rows and pages of 50, with the page index.
    fn write_shipments(path: &Path) -> anyhow::Result<()> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("qty", DataType::Decimal128(10, 2), false),
            Field::new("shipdate", DataType::Date32, false),
            Field::new("mode", DataType::Utf8, true),
        ]));
        let ids = 0..ROWS;
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(Int64Array::from_iter_values(ids.clone())),
                Arc::new(
                    Decimal128Array::from_iter_values(
                        ids.clone().map(|i| i128::from(quantity(i)) * 100),
                    )
                    .with_precision_and_scale(10, 2)?,
                ),
                Arc::new(Date32Array::from_iter_values(
                    ids.clone().map(|i| (FIRST_DAY + i / 10) as i32),
                )),
                Arc::new(StringArray::from_iter(ids.map(mode))),
            ],
        )?;
        let properties = WriterProperties::builder()
            .set_max_row_group_row_count(Some(500))
            .set_data_page_row_count_limit(50)
            .set_write_batch_size(50)
            .build();
        let mut writer = ArrowWriter::try_new(File::create(path)?, schema, Some(properties))?;
        writer.write(&batch)?;
        writer.close()?;
        Ok(())
    }

    fn quantity(i: i64) -> i64 {
        i % 50 + 1
    }

    fn mode(i: i64) -> Option<&'static str> {
        MODES[(i % 5) as usize]
    }

    /// The ids the query's WHERE keeps, worked out row by row.
    fn expected(also: impl Fn(i64) -> bool) -> Vec<String> {
        let start = 9_018 - FIRST_DAY;
        let mut ids: Vec<String> = (0..ROWS)
            .filter(|&i| (start..start + 20).contains(&(i / 10)) && also(i))
            .map(|i| i.to_string())
            .collect();
        ids.sort();
        ids
    }

    fn session(dir: &Path) -> anyhow::Result<Session> {
        write_shipments(&dir.join("shipments.parquet"))?;
        std::fs::write(dir.join("modes.csv"), "AIR,by air\nSHIP,by sea\n")?;
        let mut session = Session::new(SessionConfig {
            parallelism: 2,
            runtime: RuntimeConfig::default().with_slots(2).with_pinning(false),
            ..Default::default()
        });
        let dir = dir.display();
        session.execute(&format!(
            "SET 'execution.runtime-mode' = 'batch';
             CREATE TABLE shipments (id BIGINT, qty DECIMAL(10, 2), shipdate DATE, mode STRING)
             WITH ('connector' = 'filesystem', 'path' = '{dir}/shipments.parquet',
                   'format' = 'parquet');
             CREATE TABLE shipments_whole (
               id BIGINT, qty DECIMAL(10, 2), shipdate DATE, mode STRING, id_again AS id
             ) WITH ('connector' = 'filesystem', 'path' = '{dir}/shipments.parquet',
                     'format' = 'parquet');
             CREATE TABLE modes (mode STRING, label STRING)
             WITH ('connector' = 'filesystem', 'path' = '{dir}/modes.csv', 'format' = 'csv');
             CREATE TABLE ids (id BIGINT) WITH ('connector' = 'blackhole');"
        ))?;
        Ok(session)
    }

    /// The first column of the rows of the last outcome of `sql`, sorted.
    fn first_column(session: &mut Session, sql: &str) -> anyhow::Result<Vec<String>> {
        let outcomes = session.execute(sql)?;
        let last = outcomes
            .last()
            .ok_or_else(|| anyhow::anyhow!("no outcome"))?;
        let mut values: Vec<String> = last
            .rows()?
            .into_iter()
            .filter_map(|row| row.into_iter().next())
            .collect();
        values.sort();
        Ok(values)
    }

    /// Runs `INSERT INTO ids <query>` and returns the rows the source of `table` read.
    fn rows_read(session: &mut Session, table: &str, query: &str) -> anyhow::Result<u64> {
        session.execute(&format!("INSERT INTO ids {query}"))?;
        let Some(Outcome::Job(result)) = session.finish()? else {
            anyhow::bail!("the INSERT ran no job");
        };
        source_records(&result, table)
    }

    fn source_records(result: &JobResult, table: &str) -> anyhow::Result<u64> {
        let source = result
            .vertex(table)
            .ok_or_else(|| anyhow::anyhow!("no source '{table}' in {result}"))?;
        Ok(source.metrics.records_out)
    }

    #[test]
    fn a_selective_where_reads_fewer_rows_and_answers_the_same() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let mut session = session(dir.path())?;
        let query = format!(
            "SELECT id FROM shipments WHERE {DATE_RANGE} AND qty < 25 AND mode IN ('AIR', 'SHIP')"
        );
        let want = expected(|i| quantity(i) < 25 && matches!(mode(i), Some("AIR" | "SHIP")));
        assert!(!want.is_empty());
        assert_eq!(first_column(&mut session, &format!("{query};"))?, want);
        assert_eq!(
            first_column(
                &mut session,
                &format!(
                    "SELECT COUNT(*) FROM shipments WHERE {DATE_RANGE} AND qty < 25 AND mode IN ('AIR', 'SHIP');"
                )
            )?,
            [want.len().to_string()]
        );

        // The same query over a table whose computed column keeps the filter off its source
        // reads every row, and answers the same.
        let unpruned = query.replace("FROM shipments", "FROM shipments_whole");
        assert_eq!(first_column(&mut session, &format!("{unpruned};"))?, want);
        assert_eq!(
            rows_read(&mut session, "shipments_whole", &unpruned)?,
            4_000
        );

        // Without a WHERE every row is read; with it, only pages of one row group.
        assert_eq!(
            rows_read(&mut session, "shipments", "SELECT id FROM shipments")?,
            4_000
        );
        let read = rows_read(&mut session, "shipments", &query)?;
        assert!(
            (want.len() as u64..500).contains(&read),
            "read {read} rows for {} answers",
            want.len()
        );

        let explain = first_column(&mut session, &format!("EXPLAIN {query};"))?;
        let source = explain
            .iter()
            .find(|line| line.contains("Source 'shipments'"))
            .ok_or_else(|| anyhow::anyhow!("no source line in {explain:?}"))?;
        assert!(
            source.contains("predicate=") && source.contains("mode IN"),
            "{source}"
        );
        Ok(())
    }

    #[test]
    fn a_condition_pushed_below_a_join_prunes_its_side() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let mut session = session(dir.path())?;
        let query = format!(
            "SELECT s.id FROM shipments s, modes m WHERE s.mode = m.mode AND s.{DATE_RANGE}"
        );
        let want = expected(|i| matches!(mode(i), Some("AIR" | "SHIP")));
        assert_eq!(first_column(&mut session, &format!("{query};"))?, want);
        let read = rows_read(&mut session, "shipments", &query)?;
        assert!(read < 500, "read {read} rows");
        Ok(())
    }
}
