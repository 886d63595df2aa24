//! Filter: keeps the rows whose predicate is TRUE (NULL and FALSE are dropped, as in SQL).
//!
//! A filter right after a Parquet source may receive `STRING` columns as dictionaries
//! ([`FileSourceSpec::dictionaries`]). It then works in three steps:
//! 1. each conjunct that reads one dictionary column alone (and cannot fail) is evaluated on
//!    the dictionary's values, once per dictionary (the reader shares one between the batches
//!    of a row group), and a row passes where its key's value does: TPC-H Q12's
//!    `l_shipmode IN ('MAIL', 'SHIP')` compares seven strings, not six million;
//! 2. the rows they keep are taken and their dictionaries decoded into plain strings, so only
//!    the strings of kept rows are copied;
//! 3. the other conjuncts run on what is left, as without dictionaries.
//!
//! The output has the declared schema: no operator after a filter sees a dictionary.
//!
//! [`FileSourceSpec::dictionaries`]: crate::connector::FileSourceSpec::dictionaries

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, DictionaryArray, RecordBatch, RecordBatchOptions,
    StringArray, new_null_array,
};
use arrow::buffer::{BooleanBuffer, OffsetBuffer};
use arrow::compute::kernels::concat::concat;
use arrow::compute::{cast, filter_record_batch};
use arrow::datatypes::{DataType, Int32Type, Schema, SchemaRef};

use super::{Operator, Output};
use crate::expr::PhysicalExpr;
use crate::{Error, Result};

pub struct Filter {
    predicate: PhysicalExpr,
    /// The input's declared schema, which is also the output's.
    schema: SchemaRef,
    /// The conjuncts of the predicate, with the column of those that read one column alone
    /// and cannot fail (candidates for evaluation on dictionary values).
    conjuncts: Vec<(PhysicalExpr, Option<usize>)>,
    /// Per conjunct: the dictionary values it was last evaluated on, and which of them pass
    /// (one more entry at the end: a NULL).
    passing: Vec<Option<(ArrayRef, BooleanBuffer)>>,
    /// The input schema with every column nullable: that of the batches of dictionary values
    /// (NULL placeholders in the columns a conjunct does not read).
    values_schema: SchemaRef,
}

impl Filter {
    /// `predicate` must be resolved against the input `schema` and be BOOLEAN.
    pub fn new(predicate: PhysicalExpr, schema: SchemaRef) -> Self {
        let conjuncts: Vec<(PhysicalExpr, Option<usize>)> = predicate
            .conjuncts()
            .into_iter()
            .map(|conjunct| {
                let single = match conjunct.columns()[..] {
                    [column] if !conjunct.may_fail() => Some(column),
                    _ => None,
                };
                (conjunct.clone(), single)
            })
            .collect();
        let values_schema = Arc::new(Schema::new(
            schema
                .fields()
                .iter()
                .map(|f| f.as_ref().clone().with_nullable(true))
                .collect::<Vec<_>>(),
        ));
        Filter {
            passing: vec![None; conjuncts.len()],
            conjuncts,
            predicate,
            schema,
            values_schema,
        }
    }

    /// The dictionary path; see the module docs.
    fn process_dictionaries(&mut self, batch: RecordBatch, out: &mut Output) -> Result<()> {
        let rows = batch.num_rows();
        let mut keep: Option<BooleanBuffer> = None;
        let mut rest = Vec::new();
        for index in 0..self.conjuncts.len() {
            let single = self.conjuncts[index].1;
            let Some((column, dictionary)) = single.and_then(|column| {
                let dictionary = batch.column(column).as_dictionary_opt::<Int32Type>()?;
                Some((column, dictionary))
            }) else {
                rest.push(index);
                continue;
            };
            let passing = self.passing_values(index, column, dictionary.values())?;
            let null_slot = dictionary.values().len();
            let keys = dictionary.keys();
            let passes = match keys.nulls() {
                None => {
                    BooleanBuffer::collect_bool(rows, |row| passing.value(keys.value(row) as usize))
                }
                Some(nulls) => BooleanBuffer::collect_bool(rows, |row| {
                    passing.value(if nulls.is_valid(row) {
                        keys.value(row) as usize
                    } else {
                        null_slot
                    })
                }),
            };
            and_into(&mut keep, passes);
        }
        let mut batch = batch;
        if let Some(keep) = keep {
            match keep.count_set_bits() {
                0 => return Ok(()),
                kept if kept < rows => {
                    batch = filter_record_batch(&batch, &BooleanArray::new(keep, None))
                        .map_err(|e| Error::arrow("filter", e))?;
                }
                _ => {}
            }
        }
        let batch = self.decode(&batch)?;
        if rest.is_empty() {
            out.push_batch(batch);
            return Ok(());
        }
        let mut mask = None;
        for index in rest {
            // NULL is already false in a predicate's mask.
            let passes = self.conjuncts[index].0.evaluate_predicate(&batch)?;
            and_into(&mut mask, passes.values().clone());
        }
        match mask {
            Some(mask) => push_selected(batch, &BooleanArray::new(mask, None), out),
            None => {
                out.push_batch(batch);
                Ok(())
            }
        }
    }

    /// Which of `values` (and, last, a NULL) pass conjunct `index`, which reads `column` alone,
    /// from the cache when these are the values it last saw.
    fn passing_values(
        &mut self,
        index: usize,
        column: usize,
        values: &ArrayRef,
    ) -> Result<BooleanBuffer> {
        if let Some((seen, passing)) = &self.passing[index]
            && Arc::ptr_eq(seen, values)
        {
            return Ok(passing.clone());
        }
        let conjunct = &self.conjuncts[index].0;
        let with_null = concat(&[values.as_ref(), &new_null_array(values.data_type(), 1)])
            .map_err(|e| Error::arrow("filter on dictionary values", e))?;
        // The conjunct reads only `column`: the others are NULL placeholders of its length.
        let columns: Vec<ArrayRef> = self
            .schema
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| {
                if i == column {
                    Arc::clone(&with_null)
                } else {
                    new_null_array(f.data_type(), with_null.len())
                }
            })
            .collect();
        let values_batch = RecordBatch::try_new_with_options(
            Arc::clone(&self.values_schema),
            columns,
            &RecordBatchOptions::new().with_row_count(Some(with_null.len())),
        )
        .map_err(|e| Error::arrow("filter on dictionary values", e))?;
        let passing = conjunct.evaluate_predicate(&values_batch)?.values().clone();
        self.passing[index] = Some((Arc::clone(values), passing.clone()));
        Ok(passing)
    }

    /// `batch` with its dictionary columns decoded into the declared types.
    fn decode(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        let columns = batch
            .columns()
            .iter()
            .zip(self.schema.fields())
            .map(|(column, field)| {
                if matches!(column.data_type(), DataType::Dictionary(..)) {
                    let short = (*field.data_type() == DataType::Utf8)
                        .then(|| column.as_dictionary_opt::<Int32Type>())
                        .flatten()
                        .and_then(decode_short_strings);
                    match short {
                        Some(decoded) => Ok(decoded),
                        None => {
                            cast(column, field.data_type()).map_err(|e| Error::arrow("filter", e))
                        }
                    }
                } else {
                    Ok(Arc::clone(column))
                }
            })
            .collect::<Result<Vec<_>>>()?;
        RecordBatch::try_new_with_options(
            Arc::clone(&self.schema),
            columns,
            &RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
        )
        .map_err(|e| Error::arrow("filter", e))
    }
}

/// Longest dictionary value [`decode_short_strings`] takes: one word.
const SHORT_STRING: usize = 8;

/// A dictionary of `STRING`s none longer than [`SHORT_STRING`] bytes (TPC-H's flags, modes
/// and priorities), decoded into plain strings: each value is kept as one word, and each
/// row copies those eight bytes and keeps its length. Arrow's `take` copies every string
/// with a call to `memcpy`, which for one-byte flags was 5 % of TPC-H Q1. `None` for other
/// dictionaries (longer values, other value types).
fn decode_short_strings(dictionary: &DictionaryArray<Int32Type>) -> Option<ArrayRef> {
    let values = dictionary.values().as_string_opt::<i32>()?;
    let words = (0..values.len())
        .map(|i| {
            let value = values.value(i).as_bytes();
            let mut word = [0u8; SHORT_STRING];
            word.get_mut(..value.len())?.copy_from_slice(value);
            Some((word, value.len()))
        })
        .collect::<Option<Vec<_>>>()?;
    let keys = dictionary.keys().values();
    let nulls = dictionary.logical_nulls().filter(|n| n.null_count() > 0);
    let longest = words.iter().map(|(_, len)| *len).max().unwrap_or(0);
    let mut data: Vec<u8> = Vec::with_capacity(keys.len() * longest + SHORT_STRING);
    let mut offsets: Vec<i32> = Vec::with_capacity(keys.len() + 1);
    offsets.push(0);
    for (row, &key) in keys.iter().enumerate() {
        let valid = nulls.as_ref().is_none_or(|n| n.is_valid(row));
        let (word, len) = match usize::try_from(key).ok().and_then(|k| words.get(k)) {
            Some(&entry) if valid => entry,
            _ => ([0; SHORT_STRING], 0),
        };
        data.extend_from_slice(&word);
        data.truncate(data.len() - SHORT_STRING + len);
        offsets.push(i32::try_from(data.len()).ok()?);
    }
    let strings =
        StringArray::try_new(OffsetBuffer::new(offsets.into()), data.into(), nulls).ok()?;
    Some(Arc::new(strings))
}

/// `kept` AND `passes` (just `passes` for the first mask).
fn and_into(kept: &mut Option<BooleanBuffer>, passes: BooleanBuffer) {
    *kept = Some(match kept.take() {
        Some(kept) => &kept & &passes,
        None => passes,
    });
}

/// Pushes the rows of `batch` that `mask` selects, if any.
fn push_selected(batch: RecordBatch, mask: &BooleanArray, out: &mut Output) -> Result<()> {
    let selected = mask.true_count();
    if selected == batch.num_rows() {
        out.push_batch(batch);
    } else if selected > 0 {
        let filtered = filter_record_batch(&batch, mask).map_err(|e| Error::arrow("filter", e))?;
        out.push_batch(filtered);
    }
    Ok(())
}

impl Operator for Filter {
    fn process_batch(&mut self, _input: usize, batch: RecordBatch, out: &mut Output) -> Result<()> {
        if batch
            .columns()
            .iter()
            .any(|c| matches!(c.data_type(), DataType::Dictionary(..)))
        {
            return self.process_dictionaries(batch, out);
        }
        let mask = self.predicate.evaluate_predicate(&batch)?;
        push_selected(batch, &mask, out)
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{DictionaryArray, Int32Array, Int64Array, StringArray};
    use arrow::datatypes::Field;
    use proptest::prelude::*;

    use super::*;
    use crate::element::StreamElement;
    use crate::expr::{Expr, col, lit};

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("mode", DataType::Utf8, true),
            Field::new("row", DataType::Int64, false),
        ]))
    }

    /// A batch whose `mode` is a dictionary of `values` (NULL where `None`) picked by `keys`
    /// (a NULL key where `None`).
    fn dictionary_batch(values: &[Option<&str>], keys: &[Option<i32>]) -> RecordBatch {
        let dictionary = DictionaryArray::new(
            Int32Array::from(keys.to_vec()),
            Arc::new(StringArray::from(values.to_vec())),
        );
        let rows = Int64Array::from_iter_values(0..keys.len() as i64);
        let schema = Schema::new(vec![
            Field::new("mode", dictionary.data_type().clone(), true),
            Field::new("row", DataType::Int64, false),
        ]);
        RecordBatch::try_new(Arc::new(schema), vec![Arc::new(dictionary), Arc::new(rows)]).unwrap()
    }

    fn run(filter: &mut Filter, batch: RecordBatch) -> Vec<RecordBatch> {
        let mut out = Output::default();
        filter.process_batch(0, batch, &mut out).unwrap();
        out.drain()
            .into_iter()
            .map(|element| match element {
                StreamElement::Batch(batch) => batch,
                other => panic!("unexpected {}", other.kind_name()),
            })
            .collect()
    }

    fn predicates() -> Vec<Expr> {
        vec![
            col("mode").in_list(vec![lit("MAIL"), lit("SHIP")], false),
            col("mode").is_null(),
            col("mode").eq(lit("AIR")).not(),
            col("mode").like(lit("R%")).and(col("row").gt(lit(3i64))),
            col("mode").eq(lit("FOB")).or(col("row").lt(lit(2i64))),
            col("mode").in_list(vec![lit("AIR"), lit("RAIL")], true),
            col("row").gt(lit(4i64)),
        ]
    }

    const MODES: [Option<&str>; 6] = [
        Some("AIR"),
        Some("FOB"),
        Some("MAIL"),
        Some("RAIL"),
        Some("SHIP"),
        None,
    ];

    proptest! {
        /// Short dictionaries decode to the strings `cast` gives, NULL keys and NULL values
        /// included; a dictionary with a longer value is left to `cast`.
        #[test]
        fn short_dictionaries_decode_as_cast_does(
            values in proptest::collection::vec(
                proptest::option::weighted(0.9, "[a-c]{0,9}|é|"), 1..8),
            keys in proptest::collection::vec(proptest::option::weighted(0.9, 0..64i32), 0..100),
        ) {
            let count = values.len() as i32;
            let longest = values.iter().flatten().map(|v| v.len()).max().unwrap_or(0);
            let keys: Int32Array = keys.into_iter().map(|k| k.map(|k| k % count)).collect();
            let dictionary =
                DictionaryArray::<Int32Type>::try_new(keys, Arc::new(StringArray::from(values)))
                    .unwrap();
            let expected = cast(&dictionary, &DataType::Utf8).unwrap();
            match decode_short_strings(&dictionary) {
                Some(decoded) => prop_assert_eq!(decoded.to_data(), expected.to_data()),
                None => prop_assert!(longest > SHORT_STRING),
            }
        }
    }

    proptest! {
        /// Filtering a dictionary batch gives what filtering its decoded strings gives, for
        /// every predicate shape (one column alone, with another column, none), NULL keys
        /// and NULL values included; the output never holds a dictionary.
        #[test]
        fn dictionaries_filter_as_their_strings_do(
            batches in proptest::collection::vec(
                (
                    proptest::sample::subsequence(MODES.to_vec(), 1..=MODES.len()),
                    proptest::collection::vec(any::<Option<u8>>(), 0..40),
                ),
                1..4,
            ),
        ) {
            for predicate in predicates() {
                let resolved = predicate.resolve(&schema()).unwrap();
                let mut on_dictionaries = Filter::new(resolved.clone(), schema());
                let mut on_strings = Filter::new(resolved, schema());
                for (values, keys) in &batches {
                    let keys: Vec<Option<i32>> = keys
                        .iter()
                        .map(|k| k.map(|k| i32::from(k) % values.len() as i32))
                        .collect();
                    let batch = dictionary_batch(values, &keys);
                    let decoded = on_strings.decode(&batch).unwrap();
                    let got = run(&mut on_dictionaries, batch);
                    let expected = run(&mut on_strings, decoded);
                    for batch in &got {
                        prop_assert_eq!(batch.schema(), schema());
                    }
                    let got = arrow::compute::concat_batches(&schema(), &got).unwrap();
                    let expected = arrow::compute::concat_batches(&schema(), &expected).unwrap();
                    prop_assert_eq!(got, expected, "{}", predicate);
                }
            }
        }
    }

    /// A batch with a new dictionary is not judged by the last dictionary's passing values.
    #[test]
    fn each_dictionary_gets_its_own_passing_values() {
        let predicate = col("mode").eq(lit("MAIL")).resolve(&schema()).unwrap();
        let mut filter = Filter::new(predicate, schema());
        let first = run(
            &mut filter,
            dictionary_batch(&[Some("MAIL"), Some("SHIP")], &[Some(0), Some(1)]),
        );
        let second = run(
            &mut filter,
            dictionary_batch(&[Some("SHIP"), Some("MAIL")], &[Some(0), Some(1), Some(1)]),
        );
        let rows = |batches: &[RecordBatch]| -> Vec<i64> {
            batches
                .iter()
                .flat_map(|b| {
                    b.column(1)
                        .as_primitive::<arrow::datatypes::Int64Type>()
                        .values()
                        .to_vec()
                })
                .collect()
        };
        assert_eq!(rows(&first), vec![0]);
        assert_eq!(rows(&second), vec![1, 2]);
    }
}
