//! Pruning of Parquet row groups and pages with a pushed predicate.
//!
//! The SQL planner hands a Parquet source the conjuncts of the filter that follows it (see
//! [`super::FileSourceSpec::predicate`]). A conjunct the reader can use compares one column
//! with constants: `c <op> v` (`=`, `<>`, `<`, `<=`, `>`, `>=`, either way round), `c BETWEEN
//! v AND w`, `c IN (v, …)`, `c IS NULL` and `c IS NOT NULL`, where a constant is a literal or
//! casts and arithmetic of literals. For each such conjunct, [`PruningPredicate`] builds an
//! expression over a column's statistics (`min`, `max`, `nulls`, `rows` per row group or per
//! page) that is FALSE only where no row can pass the conjunct, e.g. `c = v` becomes
//! `nulls < rows AND min <= v AND max >= v`. It runs through the engine's own expression
//! evaluator over the statistics arrays that arrow's [`StatisticsConverter`] extracts, one
//! vectorized evaluation per file (row groups) or per row group (pages).
//!
//! Why this is exact about what it keeps: the statistics expression compares `min` and `max`
//! with the same operands, so with the same implicit casts, as the filter compares the
//! column. Where the cast applied to the column preserves order (integer widening, integers
//! or decimals to wider decimals or to `DOUBLE`, dates to timestamps, …), the cast of `min`
//! and `max` bound the cast values of the column, so a FALSE over the bounds is FALSE for
//! every row. A conjunct whose column cast does not preserve order (a string column compared
//! with a number is cast row by row), a column of floating-point numbers (NaN and signed zeros
//! sort outside the statistics' bounds under Arrow's total order), or statistics whose order
//! the file does not define (legacy byte-array statistics) prune nothing. An unknown statistic
//! is NULL, so it keeps the row group, as does any error while evaluating.
//!
//! Called by the Parquet reader ([`super::parquet`]) when it is created; the planner asks
//! [`is_prunable`] which conjuncts to push.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch, UInt64Array};
use arrow::compute::{CastOptions, cast_with_options, nullif};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::arrow_reader::statistics::StatisticsConverter;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, RowSelection, RowSelector};
use parquet::basic::{ColumnOrder, SortOrder, Type as PhysicalType};
use parquet::file::metadata::ParquetMetaData;

use crate::expr::{BinaryOp, CmpOp, Expr, PhysicalExpr, ScalarValue, coercion, col};

/// The columns of a statistics batch: one row per row group or per page.
const MIN: &str = "min";
const MAX: &str = "max";
const NULLS: &str = "nulls";
const ROWS: &str = "rows";

/// What a usable conjunct says about its column.
#[derive(Debug, Clone, PartialEq)]
enum Bound {
    /// `column <op> value` (the column on the left).
    Compare {
        op: CmpOp,
        value: Expr,
    },
    /// `column BETWEEN low AND high`.
    Between {
        low: Expr,
        high: Expr,
    },
    /// `column IN (values)`, compared as the list's common type.
    In {
        values: Vec<Expr>,
        common: DataType,
    },
    IsNull,
    IsNotNull,
}

/// A usable conjunct: a column and what the conjunct bounds it by.
#[derive(Debug, Clone, PartialEq)]
struct Term {
    column: String,
    bound: Bound,
}

/// The pushed predicate as the reader applies it: per column, the statistics expression of
/// that column's conjuncts.
pub(crate) struct PruningPredicate {
    columns: Vec<ColumnPruning>,
}

struct ColumnPruning {
    /// The declared column.
    name: String,
    /// Its declared type, the type of `min` and `max` in the statistics batch.
    data_type: DataType,
    schema: SchemaRef,
    /// Over the statistics batch: FALSE where no row can pass, TRUE or NULL otherwise.
    may_pass: PhysicalExpr,
}

/// Whether the reader can prune `schema`'s rows with `conjunct` (the planner pushes only such
/// conjuncts).
pub(crate) fn is_prunable(conjunct: &Expr, schema: &Schema) -> bool {
    Term::parse(conjunct, schema).is_some_and(|term| term.statistics_expr(schema).is_some())
}

impl PruningPredicate {
    /// The usable conjuncts of `predicate` over `schema` (the declared columns); `None` when
    /// there are none.
    pub(crate) fn try_new(predicate: &Expr, schema: &Schema) -> Option<Self> {
        let mut by_column: BTreeMap<String, (DataType, Vec<Expr>)> = BTreeMap::new();
        for conjunct in predicate.conjuncts() {
            let Some(term) = Term::parse(conjunct, schema) else {
                continue;
            };
            let Some((data_type, may_pass)) = term.statistics_expr(schema) else {
                continue;
            };
            by_column
                .entry(term.column)
                .or_insert_with(|| (data_type, Vec::new()))
                .1
                .push(may_pass);
        }
        let columns: Vec<ColumnPruning> = by_column
            .into_iter()
            .filter_map(|(name, (data_type, exprs))| {
                let schema = Arc::new(statistics_schema(&data_type));
                let may_pass = exprs.into_iter().reduce(Expr::and)?.resolve(&schema).ok()?;
                Some(ColumnPruning {
                    name,
                    data_type,
                    schema,
                    may_pass,
                })
            })
            .collect();
        (!columns.is_empty()).then_some(PruningPredicate { columns })
    }

    /// Per row group of the file: whether a row of it may pass (`false`: skip it).
    pub(crate) fn row_groups(&self, metadata: &ArrowReaderMetadata) -> Vec<bool> {
        let count = metadata.metadata().num_row_groups();
        let mut keep = vec![true; count];
        for column in &self.columns {
            let Some(passes) = column
                .row_group_statistics(metadata)
                .and_then(|batch| column.evaluate(&batch))
                .filter(|passes| passes.len() == count)
            else {
                continue;
            };
            for (keep, passes) in keep.iter_mut().zip(passes) {
                *keep &= passes;
            }
        }
        keep
    }

    /// The rows of `row_group` on pages that may hold a passing row, from the page index;
    /// `None` when the file has no page index for the predicate's columns or every page may.
    pub(crate) fn pages(
        &self,
        metadata: &ArrowReaderMetadata,
        row_group: usize,
    ) -> Option<RowSelection> {
        let selection = self
            .columns
            .iter()
            .filter_map(|column| column.page_selection(metadata, row_group))
            .reduce(|a, b| a.intersection(&b))?;
        (selection.skipped_row_count() > 0).then_some(selection)
    }
}

impl ColumnPruning {
    /// `min`, `max` and null counts of every row group of the file, and their row counts.
    fn row_group_statistics(&self, metadata: &ArrowReaderMetadata) -> Option<RecordBatch> {
        let parquet = metadata.metadata();
        let converter =
            StatisticsConverter::try_new(&self.name, metadata.schema(), metadata.parquet_schema())
                .ok()?
                .with_missing_null_counts_as_zero(false);
        let leaf = converter.parquet_column_index()?;
        let groups = parquet.row_groups();
        let nulls = converter.row_group_null_counts(groups).ok()?;
        let rows: UInt64Array = groups
            .iter()
            .map(|g| u64::try_from(g.num_rows()).ok())
            .collect();
        let (min, max) = if has_ordered_statistics(parquet, leaf) {
            let (min, max) = (
                converter.row_group_mins(groups).ok()?,
                converter.row_group_maxes(groups).ok()?,
            );
            // Byte arrays with only the deprecated `min`/`max` fields were compared as signed
            // bytes by old writers: not bounds under the byte order Arrow compares by.
            let deprecated: BooleanArray = groups
                .iter()
                .map(|g| {
                    Some(
                        is_byte_array(parquet, leaf)
                            && g.column(leaf)
                                .statistics()
                                .is_some_and(|s| s.is_min_max_deprecated()),
                    )
                })
                .collect();
            (
                nullif(&min, &deprecated).ok()?,
                nullif(&max, &deprecated).ok()?,
            )
        } else {
            let unknown = arrow::array::new_null_array(&self.data_type, groups.len());
            (Arc::clone(&unknown), unknown)
        };
        self.statistics_batch(min, max, nulls, rows)
    }

    /// The pages of `row_group` that may hold a passing row, as a selection of its rows.
    fn page_selection(
        &self,
        metadata: &ArrowReaderMetadata,
        row_group: usize,
    ) -> Option<RowSelection> {
        let groups = [row_group];
        let parquet = metadata.metadata();
        let index = parquet.page_index()?.as_ref();
        let converter =
            StatisticsConverter::try_new(&self.name, metadata.schema(), metadata.parquet_schema())
                .ok()?
                .with_missing_null_counts_as_zero(false);
        let leaf = converter.parquet_column_index()?;
        let rows = converter
            .data_page_row_counts(index, parquet.row_groups(), &groups)
            .ok()??;
        let group_rows = u64::try_from(parquet.row_group(row_group).num_rows()).ok()?;
        // Page boundaries are needed to select rows: without every row count, no selection.
        if rows.is_empty()
            || rows.null_count() > 0
            || rows.values().iter().sum::<u64>() != group_rows
        {
            return None;
        }
        let nulls = converter.data_page_null_counts(index, &groups).ok()?;
        let (min, max) = if has_ordered_statistics(parquet, leaf) {
            (
                converter.data_page_mins(index, &groups).ok()?,
                converter.data_page_maxes(index, &groups).ok()?,
            )
        } else {
            let unknown = arrow::array::new_null_array(&self.data_type, rows.len());
            (Arc::clone(&unknown), unknown)
        };
        if min.len() != rows.len() || max.len() != rows.len() || nulls.len() != rows.len() {
            return None;
        }
        let passes = self.evaluate(&self.statistics_batch(min, max, nulls, rows.clone())?)?;
        if passes.len() != rows.len() {
            return None;
        }
        let mut selectors: Vec<RowSelector> = Vec::new();
        for (page_rows, keep) in rows.values().iter().zip(passes) {
            let page_rows = usize::try_from(*page_rows).ok()?;
            match selectors.last_mut() {
                Some(last) if last.skip != keep => last.row_count += page_rows,
                _ => selectors.push(if keep {
                    RowSelector::select(page_rows)
                } else {
                    RowSelector::skip(page_rows)
                }),
            }
        }
        Some(RowSelection::from(selectors))
    }

    /// The statistics batch of this column: `min` and `max` cast to the declared type (as the
    /// reader casts the column's values), `nulls` and `rows`. `None` when a cast fails.
    fn statistics_batch(
        &self,
        min: ArrayRef,
        max: ArrayRef,
        nulls: UInt64Array,
        rows: UInt64Array,
    ) -> Option<RecordBatch> {
        let options = CastOptions {
            safe: false,
            ..CastOptions::default()
        };
        let declared = |array: ArrayRef| -> Option<ArrayRef> {
            if array.data_type() == &self.data_type {
                Some(array)
            } else {
                cast_with_options(&array, &self.data_type, &options).ok()
            }
        };
        RecordBatch::try_new(
            Arc::clone(&self.schema),
            vec![
                declared(min)?,
                declared(max)?,
                Arc::new(nulls),
                Arc::new(rows),
            ],
        )
        .ok()
    }

    /// Per statistics row: whether a row may pass (NULL, unknown, counts as may).
    fn evaluate(&self, batch: &RecordBatch) -> Option<Vec<bool>> {
        let result = self.may_pass.evaluate(batch).ok()?;
        let result = result.as_boolean_opt()?;
        Some(
            (0..result.len())
                .map(|i| result.is_null(i) || result.value(i))
                .collect(),
        )
    }
}

impl Term {
    /// `conjunct` as a term over a column of `schema`, when its shape and its types allow
    /// pruning (see the module documentation).
    fn parse(conjunct: &Expr, schema: &Schema) -> Option<Term> {
        let column_type = |name: &str| schema.field_with_name(name).ok().map(Field::data_type);
        let (column, bound) = match conjunct {
            Expr::Binary { left, op, right } => {
                let op = CmpOp::of(*op)?;
                let (column, value, op) = match (left.as_ref(), right.as_ref()) {
                    (Expr::Column(c), value) if is_constant(value) => (c, value, op),
                    (value, Expr::Column(c)) if is_constant(value) => (c, value, op.flipped()),
                    _ => return None,
                };
                ordered_comparison(column_type(column)?, value)?;
                (
                    column,
                    Bound::Compare {
                        op,
                        value: value.clone(),
                    },
                )
            }
            Expr::Between {
                expr,
                low,
                high,
                negated: false,
            } => {
                let Expr::Column(column) = expr.as_ref() else {
                    return None;
                };
                if !is_constant(low) || !is_constant(high) {
                    return None;
                }
                let data_type = column_type(column)?;
                ordered_comparison(data_type, low)?;
                ordered_comparison(data_type, high)?;
                (
                    column,
                    Bound::Between {
                        low: (**low).clone(),
                        high: (**high).clone(),
                    },
                )
            }
            Expr::InList {
                expr,
                list,
                negated: false,
            } => {
                let Expr::Column(column) = expr.as_ref() else {
                    return None;
                };
                if list.is_empty() || !list.iter().all(is_constant) {
                    return None;
                }
                // The common type of the probe and the items, as the filter's IN finds it.
                let data_type = column_type(column)?;
                let mut common = data_type.clone();
                for item in list {
                    common = coercion::comparison(&common, &constant_type(item)?)?;
                }
                if !preserves_order(data_type, &common) {
                    return None;
                }
                (
                    column,
                    Bound::In {
                        values: list.clone(),
                        common,
                    },
                )
            }
            Expr::IsNull(inner) => match inner.as_ref() {
                Expr::Column(column) => (column, Bound::IsNull),
                _ => return None,
            },
            Expr::IsNotNull(inner) => match inner.as_ref() {
                Expr::Column(column) => (column, Bound::IsNotNull),
                _ => return None,
            },
            _ => return None,
        };
        column_type(column)?;
        Some(Term {
            column: column.clone(),
            bound,
        })
    }

    /// The type of the term's column and its statistics expression, when the evaluator
    /// accepts it (which `parse` makes sure of: a term it rejects prunes nothing).
    fn statistics_expr(&self, schema: &Schema) -> Option<(DataType, Expr)> {
        let data_type = schema.field_with_name(&self.column).ok()?.data_type();
        let may_pass = self.may_pass();
        may_pass.resolve(&statistics_schema(data_type)).ok()?;
        Some((data_type.clone(), may_pass))
    }

    /// The statistics expression of this term: FALSE only where no row can pass.
    fn may_pass(&self) -> Expr {
        let (min, max) = (col(MIN), col(MAX));
        // Some value is not NULL (an all-NULL group passes no comparison).
        let has_values = || col(NULLS).lt(col(ROWS));
        match &self.bound {
            Bound::Compare { op, value } => {
                let v = value.clone();
                let bound = match op {
                    CmpOp::Eq => min.lt_eq(v.clone()).and(max.gt_eq(v)),
                    // All values equal `v`: none differs from it.
                    CmpOp::NotEq => min.eq(v.clone()).and(max.eq(v)).not(),
                    CmpOp::Lt => min.lt(v),
                    CmpOp::LtEq => min.lt_eq(v),
                    CmpOp::Gt => max.gt(v),
                    CmpOp::GtEq => max.gt_eq(v),
                };
                has_values().and(bound)
            }
            Bound::Between { low, high } => {
                has_values().and(max.gt_eq(low.clone()).and(min.lt_eq(high.clone())))
            }
            Bound::In { values, common } => {
                let any = values
                    .iter()
                    .map(|v| {
                        let v = v.clone().cast(common.clone());
                        min.clone()
                            .cast(common.clone())
                            .lt_eq(v.clone())
                            .and(max.clone().cast(common.clone()).gt_eq(v))
                    })
                    .reduce(Expr::or)
                    .unwrap_or(Expr::Literal(ScalarValue::Boolean(true)));
                has_values().and(any)
            }
            Bound::IsNull => col(NULLS).gt(Expr::Literal(ScalarValue::UInt64(0))),
            Bound::IsNotNull => has_values(),
        }
    }
}

/// A value that is the same for every row: literals, and casts and arithmetic of them (no
/// function, so nothing that differs between the reader and the filter).
fn is_constant(e: &Expr) -> bool {
    match e {
        Expr::Literal(_) => true,
        Expr::Cast { expr, .. } | Expr::TryCast { expr, .. } | Expr::Negative(expr) => {
            is_constant(expr)
        }
        Expr::Binary {
            left,
            op: BinaryOp::Plus | BinaryOp::Minus | BinaryOp::Multiply | BinaryOp::Divide,
            right,
        } => is_constant(left) && is_constant(right),
        _ => false,
    }
}

/// The type of a constant; `None` when it does not resolve.
fn constant_type(e: &Expr) -> Option<DataType> {
    e.resolve(&Schema::empty())
        .ok()
        .map(|p| p.data_type().clone())
}

/// `Some` when comparing a column of `column` type with `value` casts the column in an
/// order-preserving way.
fn ordered_comparison(column: &DataType, value: &Expr) -> Option<()> {
    let common = coercion::comparison(column, &constant_type(value)?)?;
    preserves_order(column, &common).then_some(())
}

/// Whether casting `from` to `to` keeps the order of values (`a <= b` ⇒ `cast(a) <=
/// cast(b)`), so that the cast bounds of a column bound its cast values. Floating-point
/// columns never qualify (see the module documentation).
fn preserves_order(from: &DataType, to: &DataType) -> bool {
    use DataType::{Date32, Date64, Decimal128, Float64, LargeUtf8, Timestamp, Utf8, Utf8View};
    let integer = |t: &DataType| coercion::is_integer(t);
    match (from, to) {
        (Float64 | DataType::Float32 | DataType::Float16, _) => false,
        _ if from == to => true,
        (f, t) if integer(f) && integer(t) => true,
        (f, Decimal128(_, _) | Float64) if integer(f) => true,
        (Decimal128(_, from_scale), Decimal128(_, to_scale)) => to_scale >= from_scale,
        (Decimal128(_, _), Float64) => true,
        (Date32, Date64 | Timestamp(_, None)) => true,
        (Timestamp(_, from_zone), Timestamp(_, to_zone)) => from_zone == to_zone,
        (Utf8 | LargeUtf8 | Utf8View, Utf8 | LargeUtf8 | Utf8View) => true,
        _ => false,
    }
}

/// Whether the min/max statistics of leaf column `leaf` are bounds in the order Arrow
/// compares by: the file defines the column's order (parquet-format 2.4 and later), or the
/// column is a signed integer, which legacy writers also compared as signed.
fn has_ordered_statistics(parquet: &ParquetMetaData, leaf: usize) -> bool {
    let column = parquet.file_metadata().schema_descr().column(leaf);
    match parquet.file_metadata().column_order(leaf) {
        ColumnOrder::TYPE_DEFINED_ORDER(SortOrder::SIGNED | SortOrder::UNSIGNED) => true,
        ColumnOrder::UNDEFINED => {
            matches!(
                column.physical_type(),
                PhysicalType::INT32 | PhysicalType::INT64
            ) && column.sort_order() == SortOrder::SIGNED
        }
        _ => false,
    }
}

fn is_byte_array(parquet: &ParquetMetaData, leaf: usize) -> bool {
    matches!(
        parquet
            .file_metadata()
            .schema_descr()
            .column(leaf)
            .physical_type(),
        PhysicalType::BYTE_ARRAY | PhysicalType::FIXED_LEN_BYTE_ARRAY
    )
}

/// The schema of a statistics batch of a column of type `data_type`.
fn statistics_schema(data_type: &DataType) -> Schema {
    Schema::new(vec![
        Field::new(MIN, data_type.clone(), true),
        Field::new(MAX, data_type.clone(), true),
        Field::new(NULLS, DataType::UInt64, true),
        Field::new(ROWS, DataType::UInt64, true),
    ])
}

#[cfg(test)]
mod tests {
    use std::fs::File;
    use std::path::Path;

    use arrow::array::{
        Date32Array, Decimal128Array, DictionaryArray, Float64Array, Int32Array, Int64Array,
        StringArray,
    };
    use arrow::datatypes::Int32Type;
    use parquet::arrow::ArrowWriter;
    use parquet::arrow::arrow_reader::ArrowReaderOptions;
    use parquet::file::metadata::PageIndexPolicy;
    use parquet::file::properties::{EnabledStatistics, WriterProperties};

    use super::*;
    use crate::expr::lit;

    /// Writes each batch as one row group, in pages of at most `page_rows` rows, and reads
    /// the footer back with its page index.
    fn write(
        path: &Path,
        batches: &[RecordBatch],
        page_rows: usize,
        statistics: EnabledStatistics,
    ) -> anyhow::Result<ArrowReaderMetadata> {
        let properties = WriterProperties::builder()
            .set_data_page_row_count_limit(page_rows)
            .set_write_batch_size(page_rows)
            .set_statistics_enabled(statistics)
            .build();
        let mut writer =
            ArrowWriter::try_new(File::create(path)?, batches[0].schema(), Some(properties))?;
        for batch in batches {
            writer.write(batch)?;
            writer.flush()?;
        }
        writer.close()?;
        let options = ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Optional);
        Ok(ArrowReaderMetadata::load(&File::open(path)?, options)?)
    }

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("price", DataType::Decimal128(10, 2), true),
            Field::new("day", DataType::Date32, true),
            Field::new("name", DataType::Utf8, true),
            Field::new("ratio", DataType::Float64, true),
            Field::new("flag", DataType::Int32, true),
        ]))
    }

    /// Three row groups of ten rows: ids 1-10, 11-20 and 21-30 (every other one NULL in the
    /// last), prices 1.00-30.00, days 0-29 after the epoch, names `a`-`t` then all NULL,
    /// flags all 1, all 2, then both.
    fn three_row_groups(path: &Path) -> anyhow::Result<ArrowReaderMetadata> {
        let group = |g: i64| -> anyhow::Result<RecordBatch> {
            let values: Vec<i64> = (g * 10 + 1..=g * 10 + 10).collect();
            let ids: Int64Array = values
                .iter()
                .map(|&v| (g < 2 || v % 2 == 0).then_some(v))
                .collect();
            let prices =
                Decimal128Array::from_iter_values(values.iter().map(|&v| i128::from(v) * 100))
                    .with_precision_and_scale(10, 2)?;
            let days: Date32Array = values.iter().map(|&v| Some(v as i32 - 1)).collect();
            let names: StringArray = values
                .iter()
                .map(|&v| (g < 2).then(|| char::from(b'a' + (v - 1) as u8).to_string()))
                .collect();
            let ratios: Float64Array = values.iter().map(|&v| Some(v as f64 / 2.0)).collect();
            let flags: Int32Array = values
                .iter()
                .map(|&v| {
                    Some(if g < 2 {
                        g as i32 + 1
                    } else {
                        v as i32 % 2 + 1
                    })
                })
                .collect();
            Ok(RecordBatch::try_new(
                schema(),
                vec![
                    Arc::new(ids),
                    Arc::new(prices),
                    Arc::new(days),
                    Arc::new(names),
                    Arc::new(ratios),
                    Arc::new(flags),
                ],
            )?)
        };
        let batches = [group(0)?, group(1)?, group(2)?];
        write(path, &batches, 1024, EnabledStatistics::Page)
    }

    fn kept(predicate: &Expr, metadata: &ArrowReaderMetadata) -> Vec<bool> {
        let groups = metadata.metadata().num_row_groups();
        PruningPredicate::try_new(predicate, &schema())
            .map_or_else(|| vec![true; groups], |p| p.row_groups(metadata))
    }

    fn date(text: &str) -> Expr {
        lit(text).cast(DataType::Date32)
    }

    fn decimal(value: i128, precision: u8, scale: i8) -> Expr {
        Expr::Literal(ScalarValue::Decimal128 {
            value,
            precision,
            scale,
        })
    }

    #[test]
    fn integer_bounds_prune_row_groups() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let metadata = three_row_groups(&dir.path().join("t.parquet"))?;
        let id = || col("id");
        assert_eq!(kept(&id().eq(lit(15_i64)), &metadata), [false, true, false]);
        assert_eq!(kept(&id().gt(lit(20_i64)), &metadata), [false, false, true]);
        assert_eq!(kept(&id().lt_eq(lit(10)), &metadata), [true, false, false]);
        // The column on the right.
        assert_eq!(kept(&lit(15_i64).lt(id()), &metadata), [false, true, true]);
        assert_eq!(
            kept(&id().between(lit(5_i64), lit(12_i64)), &metadata),
            [true, true, false]
        );
        assert_eq!(
            kept(
                &id().in_list(vec![lit(3_i64), lit(24_i64)], false),
                &metadata
            ),
            [true, false, true]
        );
        // Conjuncts on several columns: each one prunes on its own.
        assert_eq!(
            kept(&id().lt(lit(12_i64)).and(col("flag").eq(lit(2))), &metadata),
            [false, true, false]
        );
        // `<>` prunes a group whose values all equal the constant.
        assert_eq!(
            kept(&col("flag").not_eq(lit(1)), &metadata),
            [false, true, true]
        );
        Ok(())
    }

    #[test]
    fn nulls_prune_by_their_counts() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let metadata = three_row_groups(&dir.path().join("t.parquet"))?;
        assert_eq!(kept(&col("id").is_null(), &metadata), [false, false, true]);
        assert_eq!(
            kept(&col("name").is_null(), &metadata),
            [false, false, true]
        );
        assert_eq!(
            kept(&col("name").is_not_null(), &metadata),
            [true, true, false]
        );
        // An all-NULL group passes no comparison.
        assert_eq!(
            kept(&col("name").eq(lit("m")), &metadata),
            [false, true, false]
        );
        assert_eq!(
            kept(&col("name").not_eq(lit("m")), &metadata),
            [true, true, false]
        );
        // A comparison with NULL is never TRUE, but NULL bounds decide nothing: kept.
        assert_eq!(
            kept(&col("id").eq(Expr::Literal(ScalarValue::Null)), &metadata),
            [true, true, true]
        );
        Ok(())
    }

    #[test]
    fn decimals_dates_and_strings_prune_row_groups() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let metadata = three_row_groups(&dir.path().join("t.parquet"))?;
        // A DECIMAL(10, 2) column against an integer, a decimal of another scale and
        // decimal arithmetic.
        assert_eq!(
            kept(&col("price").lt(lit(5)), &metadata),
            [true, false, false]
        );
        assert_eq!(
            kept(&col("price").gt_eq(decimal(205, 3, 1)), &metadata),
            [false, false, true]
        );
        assert_eq!(
            kept(
                &col("price").between(
                    decimal(6, 3, 2) - decimal(1, 3, 2),
                    decimal(6, 3, 2) + decimal(1, 3, 2)
                ),
                &metadata
            ),
            [false, false, false]
        );
        // 10.50 lies between the first group's maximum and the second's minimum.
        assert_eq!(
            kept(&col("price").eq(decimal(1050, 4, 2)), &metadata),
            [false, false, false]
        );
        assert_eq!(
            kept(&col("price").eq(decimal(1200, 4, 2)), &metadata),
            [false, true, false]
        );
        // DATE literals, a string cast to a date, and date arithmetic.
        assert_eq!(
            kept(&col("day").lt(date("1970-01-05")), &metadata),
            [true, false, false]
        );
        assert_eq!(
            kept(&col("day").gt_eq(lit("1970-01-21")), &metadata),
            [false, false, true]
        );
        let plus_15_days = date("1970-01-01")
            + Expr::Literal(ScalarValue::IntervalDayTime {
                days: 15,
                millis: 0,
            });
        assert_eq!(
            kept(&col("day").lt(plus_15_days), &metadata),
            [true, true, false]
        );
        // Strings compare by bytes.
        assert_eq!(
            kept(&col("name").gt(lit("j")), &metadata),
            [false, true, false]
        );
        assert_eq!(
            kept(
                &col("name").in_list(vec![lit("b"), lit("zz")], false),
                &metadata
            ),
            [true, false, false]
        );
        Ok(())
    }

    #[test]
    fn undecidable_conjuncts_never_prune() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let metadata = three_row_groups(&dir.path().join("t.parquet"))?;
        let schema = schema();
        let undecidable = [
            // Floating-point columns (NaN sorts above the bounds).
            col("ratio").gt(lit(100.0)),
            col("ratio").eq(lit(0.0)),
            // A string column compared with a number is cast row by row.
            col("name").eq(lit(5_i64)),
            // Not a column against constants.
            (col("id") + lit(1_i64)).eq(lit(100_i64)),
            col("id").eq(col("flag")),
            call_upper(col("name")).eq(lit("ZZ")),
            col("name").like(lit("zz%")),
            // Negations.
            col("id").in_list(vec![lit(1_i64)], true),
            col("id").not_between(lit(0_i64), lit(100_i64)),
            col("id").gt(lit(100_i64)).not(),
            // An OR.
            col("id").gt(lit(100_i64)).or(col("id").lt(lit(0_i64))),
            // A column the table lacks.
            col("missing").eq(lit(1)),
        ];
        for predicate in &undecidable {
            assert!(!is_prunable(predicate, &schema), "{predicate}");
            assert_eq!(
                kept(predicate, &metadata),
                [true, true, true],
                "{predicate}"
            );
        }
        // Undecidable conjuncts leave the others their say.
        let mixed = undecidable
            .into_iter()
            .reduce(Expr::and)
            .expect("conjuncts")
            .and(col("id").eq(lit(15_i64)));
        assert_eq!(kept(&mixed, &metadata), [false, true, false]);
        Ok(())
    }

    fn call_upper(e: Expr) -> Expr {
        crate::expr::call(crate::expr::Function::Upper, vec![e])
    }

    #[test]
    fn files_without_statistics_are_read_whole() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("t.parquet");
        let batch = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, true)])),
            vec![Arc::new(Int64Array::from_iter_values(0..100))],
        )?;
        let metadata = write(&path, &[batch], 10, EnabledStatistics::None)?;
        let schema = Schema::new(vec![Field::new("id", DataType::Int64, true)]);
        let pruning =
            PruningPredicate::try_new(&col("id").gt(lit(1000_i64)), &schema).expect("prunable");
        assert_eq!(pruning.row_groups(&metadata), [true]);
        assert!(pruning.pages(&metadata, 0).is_none());
        Ok(())
    }

    #[test]
    fn dictionary_strings_and_narrower_integers_are_cast_to_the_declared_types()
    -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("t.parquet");
        let file_schema = Arc::new(Schema::new(vec![
            Field::new(
                "tag",
                DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
                true,
            ),
            Field::new("n", DataType::Int32, true),
        ]));
        let group = |tags: Vec<&str>, n: Vec<i32>| -> anyhow::Result<RecordBatch> {
            let tags: DictionaryArray<Int32Type> = tags.into_iter().collect();
            Ok(RecordBatch::try_new(
                Arc::clone(&file_schema),
                vec![Arc::new(tags), Arc::new(Int32Array::from(n))],
            )?)
        };
        let batches = [
            group(vec!["apple", "banana", "apple"], vec![1, 2, 3])?,
            group(vec!["cherry", "date", "cherry"], vec![4, 5, 6])?,
        ];
        let metadata = write(&path, &batches, 1024, EnabledStatistics::Page)?;
        let declared = Schema::new(vec![
            Field::new("tag", DataType::Utf8, true),
            Field::new("n", DataType::Int64, true),
        ]);
        let kept = |predicate: Expr| {
            PruningPredicate::try_new(&predicate, &declared)
                .map_or_else(|| vec![true, true], |p| p.row_groups(&metadata))
        };
        assert_eq!(kept(col("tag").eq(lit("date"))), [false, true]);
        assert_eq!(kept(col("tag").lt(lit("b"))), [true, false]);
        assert_eq!(kept(col("n").gt(lit(3_i64))), [false, true]);
        assert_eq!(kept(col("n").eq(lit(7_i64))), [false, false]);
        Ok(())
    }

    #[test]
    fn the_page_index_selects_the_pages_that_may_pass() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("t.parquet");
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, true)]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![Arc::new(Int64Array::from_iter_values(0..100))],
        )?;
        let metadata = write(&path, &[batch], 10, EnabledStatistics::Page)?;
        let pages = |predicate: Expr| {
            PruningPredicate::try_new(&predicate, &schema)
                .expect("prunable")
                .pages(&metadata, 0)
                .map(|s| s.iter().copied().collect::<Vec<_>>())
        };
        assert_eq!(
            pages(col("id").gt_eq(lit(95_i64))),
            Some(vec![RowSelector::skip(90), RowSelector::select(10)])
        );
        assert_eq!(
            pages(col("id").in_list(vec![lit(5_i64), lit(55_i64)], false)),
            Some(vec![
                RowSelector::select(10),
                RowSelector::skip(40),
                RowSelector::select(10),
                RowSelector::skip(40),
            ])
        );
        // Columns intersect: pages 3 and 4 pass one conjunct, pages 4 and 5 the other.
        assert_eq!(
            pages(
                col("id")
                    .between(lit(30_i64), lit(49_i64))
                    .and(col("id").gt_eq(lit(45_i64)))
            ),
            Some(vec![
                RowSelector::skip(40),
                RowSelector::select(10),
                RowSelector::skip(50),
            ])
        );
        // Every page may pass: no selection.
        assert_eq!(pages(col("id").gt_eq(lit(0_i64))), None);
        // No page may: an empty selection (the reader skips the row group).
        let none = pages(col("id").gt(lit(1000_i64))).expect("a selection");
        assert!(none.iter().all(|s| s.skip));
        Ok(())
    }
}
