//! Keyed aggregation over an updating input: the input's `_row_kind` column says, row by row,
//! whether a value is added (`+I`, `+U`) or retracted (`-U`, `-D`).
//!
//! COUNT, SUM and AVG retract arithmetically. MIN and MAX cannot (the retracted value may be
//! the current extreme), so they keep a per-group multiset of the values with their
//! multiplicities — Flink's MinWithRetract / MaxWithRetract — and answer with its first or last
//! entry. COUNT(DISTINCT) keeps a multiset too. FIRST_VALUE / LAST_VALUE over retractions are
//! refused.
//!
//! Every group also counts its live rows. When that count drops to zero the group is dead: its
//! accumulators are reset and a changelog emits `-D` with the last result (as Flink's
//! GroupAggFunction does). A retraction reaching a dead group is ignored, as Flink ignores it.
//!
//! Snapshots hold the live groups only, in the operator's `groups` table: `key_group`, `key`,
//! `rows` (the group's live rows) and each accumulator's state columns `acc<i>_<j>`. COUNT keeps
//! its count, SUM and AVG their sum (`Decimal128(38, 0)` for exact integer sums, else
//! `Float64`; AVG of a DECIMAL its exact sum at the input's scale) and count of non-null values; MIN, MAX and COUNT(DISTINCT) their multiset as one
//! `List<Struct<value, count>>` column, the values in the input's type.
//!
//! The per-batch work is one typed loop per accumulator over `(group, sign, value)`; the
//! multisets convert a batch's values to their key type once per batch.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Decimal128Array, Float64Array, Int8Array, Int64Array,
    ListArray, StringArray, StructArray, UInt64Array,
};
use arrow::buffer::OffsetBuffer;
use arrow::compute::cast;
use arrow::datatypes::*;
use arrow::record_batch::RecordBatch;

use super::accumulators::DecimalAvg;
use super::{KeyedAggregate, Output};
use crate::element::{ROW_KIND_COLUMN, RowKind};
use crate::graph::{AggregateCall, AggregateFunction, EmitMode};
use crate::{Error, Result};

/// An accumulator that also retracts: `signs[i]` is `+1` (add) or `-1` (retract) for row `i`.
pub(crate) trait RetractAccumulator: Send {
    /// Grows the state to `groups` groups (new groups start empty).
    fn resize(&mut self, groups: usize);
    /// Adds or retracts `values` (None for COUNT(*)) row by row.
    fn update(&mut self, groups: &[u32], signs: &[i64], values: Option<&ArrayRef>) -> Result<()>;
    /// Returns `groups` to the empty state.
    fn reset(&mut self, groups: &[u32]);
    /// The current results of `groups`, in that order.
    fn evaluate(&self, groups: &[u32]) -> Result<ArrayRef>;
    /// Heap bytes held by the state (multisets are estimated per entry).
    fn allocated_bytes(&self) -> usize;
    /// The state of `groups` as columns, for snapshots (called with no groups to learn the
    /// number of columns).
    fn state(&self, groups: &[u32]) -> Result<Vec<ArrayRef>>;
    /// Sets the state of `groups[i]` from row `i` of `state` (columns as
    /// [`RetractAccumulator::state`] produced them). The groups exist (`resize` was called).
    fn restore_state(&mut self, groups: &[u32], state: &[ArrayRef]) -> Result<()>;
}

/// The retracting side of a [`KeyedAggregate`]: its accumulators and the live rows per group.
pub(crate) struct Retracting {
    row_kind: usize,
    accumulators: Vec<Box<dyn RetractAccumulator>>,
    rows: Vec<i64>,
    signs: Vec<i64>,
}

impl Retracting {
    /// The retracting state for `calls` over `input`, or `None` when the input has no
    /// `_row_kind` column (it only inserts).
    pub(crate) fn for_input(calls: &[AggregateCall], input: &Schema) -> Result<Option<Self>> {
        let Ok(row_kind) = input.index_of(ROW_KIND_COLUMN) else {
            return Ok(None);
        };
        let accumulators = calls
            .iter()
            .map(|call| {
                let input_type = match &call.input {
                    Some(name) => Some(
                        input
                            .field_with_name(name)
                            .map_err(|_| Error::expr(format!("unknown aggregate column '{name}'")))?
                            .data_type(),
                    ),
                    None => None,
                };
                let result = call.function.result_type(input_type)?;
                new_retract_accumulator(call.function, input_type, &result)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(Retracting {
            row_kind,
            accumulators,
            rows: Vec::new(),
            signs: Vec::new(),
        }))
    }

    pub(crate) fn allocated_bytes(&self) -> usize {
        self.rows.capacity() * 8
            + self
                .accumulators
                .iter()
                .map(|a| a.allocated_bytes())
                .sum::<usize>()
    }

    /// Grows the state to `groups` groups (new groups start empty, with no live rows).
    pub(crate) fn resize(&mut self, groups: usize) {
        self.rows.resize(groups, 0);
        for acc in &mut self.accumulators {
            acc.resize(groups);
        }
    }

    /// Groups with at least one live row, in group order.
    pub(crate) fn live_groups(&self) -> Vec<u32> {
        (0..self.rows.len() as u32)
            .filter(|&g| self.rows[g as usize] > 0)
            .collect()
    }

    pub(crate) fn evaluate(&self, groups: &[u32]) -> Result<Vec<ArrayRef>> {
        self.accumulators
            .iter()
            .map(|acc| acc.evaluate(groups))
            .collect()
    }

    /// Whether group `g` has live rows (a dead group is left out of snapshots).
    pub(crate) fn is_live(&self, g: u32) -> bool {
        self.rows.get(g as usize).is_some_and(|&rows| rows > 0)
    }

    /// The snapshot columns of `groups` after `key_group` and `key`: `rows`, then each
    /// accumulator's state columns, with their names.
    pub(crate) fn state(&self, groups: &[u32]) -> Result<Vec<(String, ArrayRef)>> {
        let rows = Int64Array::from_iter_values(groups.iter().map(|&g| self.rows[g as usize]));
        let mut columns = vec![("rows".to_string(), Arc::new(rows) as ArrayRef)];
        for (i, acc) in self.accumulators.iter().enumerate() {
            for (j, column) in acc.state(groups)?.into_iter().enumerate() {
                columns.push((format!("acc{i}_{j}"), column));
            }
        }
        Ok(columns)
    }

    /// The number of snapshot columns [`Retracting::state`] writes.
    pub(crate) fn state_width(&self) -> Result<usize> {
        Ok(1 + self
            .accumulators
            .iter()
            .map(|acc| acc.state(&[]).map(|columns| columns.len()))
            .sum::<Result<usize>>()?)
    }

    /// Sets the state of `groups[i]` from row `i` of `columns` (as [`Retracting::state`] wrote
    /// them), after growing the state to `group_count` groups.
    pub(crate) fn restore(
        &mut self,
        groups: &[u32],
        group_count: usize,
        columns: &[ArrayRef],
    ) -> Result<()> {
        let rows = columns
            .first()
            .and_then(|c| c.as_primitive_opt::<Int64Type>())
            .filter(|c| c.len() == groups.len() && c.null_count() == 0)
            .ok_or_else(|| bad_state("live row count"))?;
        self.rows.resize(group_count, 0);
        for (&g, &n) in groups.iter().zip(rows.values()) {
            self.rows[g as usize] = n;
        }
        let mut column = 1;
        for acc in &mut self.accumulators {
            let width = acc.state(&[])?.len();
            let state = columns
                .get(column..column + width)
                .ok_or_else(|| bad_state("accumulator"))?;
            acc.resize(group_count);
            acc.restore_state(groups, state)?;
            column += width;
        }
        Ok(())
    }
}

fn bad_state(what: &str) -> Error {
    Error::data(
        "aggregate snapshot",
        format!("the retracting {what} state columns have unexpected types or lengths"),
    )
}

/// State column `i` as `Int64` of `len` rows without NULLs.
fn int64_state<'a>(
    state: &'a [ArrayRef],
    i: usize,
    len: usize,
    what: &str,
) -> Result<&'a Int64Array> {
    state
        .get(i)
        .and_then(|c| c.as_primitive_opt::<Int64Type>())
        .filter(|c| c.len() == len && c.null_count() == 0)
        .ok_or_else(|| bad_state(what))
}

/// State column `i` as `Float64` of `len` rows without NULLs.
fn float64_state<'a>(
    state: &'a [ArrayRef],
    i: usize,
    len: usize,
    what: &str,
) -> Result<&'a Float64Array> {
    state
        .get(i)
        .and_then(|c| c.as_primitive_opt::<Float64Type>())
        .filter(|c| c.len() == len && c.null_count() == 0)
        .ok_or_else(|| bad_state(what))
}

/// `values[g]` for `groups`, as an array without NULLs.
fn gather_i64(values: &[i64], groups: &[u32]) -> ArrayRef {
    Arc::new(Int64Array::from_iter_values(
        groups.iter().map(|&g| values[g as usize]),
    ))
}

fn gather_f64(values: &[f64], groups: &[u32]) -> ArrayRef {
    Arc::new(Float64Array::from_iter_values(
        groups.iter().map(|&g| values[g as usize]),
    ))
}

/// Sets `target[groups[i]]` to `values[i]`.
fn scatter<T: Copy>(target: &mut [T], groups: &[u32], values: &[T]) {
    for (&g, &v) in groups.iter().zip(values) {
        target[g as usize] = v;
    }
}

impl KeyedAggregate {
    /// `process_batch` over an updating input; `self.group_ids` holds the batch's groups.
    pub(super) fn process_retracting(
        &mut self,
        batch: &RecordBatch,
        out: &mut Output,
    ) -> Result<()> {
        let group_count = self.groups.len();
        let Some(state) = self.retracting.as_mut() else {
            return Err(Error::Internal(
                "retracting aggregate path without retracting state".into(),
            ));
        };
        let kinds = batch
            .column(state.row_kind)
            .as_primitive_opt::<Int8Type>()
            .ok_or_else(|| Error::data("aggregate input", "the _row_kind column is not Int8"))?;
        state.signs.clear();
        for (i, &k) in kinds.values().iter().enumerate() {
            state.signs.push(match RowKind::from_i8(k) {
                Some(RowKind::Insert | RowKind::UpdateAfter) => 1,
                Some(RowKind::UpdateBefore | RowKind::Delete) => -1,
                None => {
                    return Err(Error::data(
                        "aggregate input",
                        format!("row {i} has an unknown _row_kind {k}"),
                    ));
                }
            });
        }
        state.rows.resize(group_count, 0);
        let changelog = self.emit == EmitMode::Changelog;

        // The groups this batch touches and which of them are live before it.
        self.touched.collect(&self.group_ids, group_count);
        let touched = self.touched.groups().to_vec();
        let was_live: Vec<u32> = touched
            .iter()
            .copied()
            .filter(|&g| state.rows[g as usize] > 0)
            .collect();
        let old = if changelog && !was_live.is_empty() {
            Some(state.evaluate(&was_live)?)
        } else {
            None
        };

        // A retraction that reaches a dead group is dropped (there is nothing to retract).
        // Within one batch a group may be inserted and then retracted, so liveness is tracked
        // row by row.
        for (&g, sign) in self.group_ids.iter().zip(state.signs.iter_mut()) {
            let rows = &mut state.rows[g as usize];
            if *sign < 0 && *rows <= 0 {
                *sign = 0;
            } else {
                *rows += *sign;
            }
        }
        for (acc, input) in state.accumulators.iter_mut().zip(&self.inputs) {
            acc.resize(group_count);
            acc.update(
                &self.group_ids,
                &state.signs,
                input.map(|i| batch.column(i)),
            )?;
        }
        let died: Vec<u32> = was_live
            .iter()
            .copied()
            .filter(|&g| state.rows[g as usize] <= 0)
            .collect();
        let live_now: Vec<u32> = touched
            .iter()
            .copied()
            .filter(|&g| state.rows[g as usize] > 0)
            .collect();
        for acc in &mut state.accumulators {
            acc.reset(&died);
        }
        if !changelog {
            return Ok(());
        }
        if let Some(old) = old {
            let kinds: Int8Array = was_live
                .iter()
                .map(|&g| {
                    Some(if state.rows[g as usize] > 0 {
                        RowKind::UpdateBefore
                    } else {
                        RowKind::Delete
                    } as i8)
                })
                .collect();
            let batch = self.result_batch(Some(kinds), &was_live, old)?;
            out.push_batch(batch);
        }
        if !live_now.is_empty() {
            let state = self.retracting.as_ref().expect("checked above");
            let values = state.evaluate(&live_now)?;
            let was_set: hashbrown::HashSet<u32> = was_live.iter().copied().collect();
            let was = |g: u32| was_set.contains(&g);
            let kinds: Int8Array = live_now
                .iter()
                .map(|&g| {
                    Some(if was(g) {
                        RowKind::UpdateAfter
                    } else {
                        RowKind::Insert
                    } as i8)
                })
                .collect();
            out.push_batch(self.result_batch(Some(kinds), &live_now, values)?);
        }
        Ok(())
    }
}

fn new_retract_accumulator(
    function: AggregateFunction,
    input: Option<&DataType>,
    result: &DataType,
) -> Result<Box<dyn RetractAccumulator>> {
    use DataType::*;
    let refuse = |what: &str| {
        Err(Error::expr(format!(
            "{}({what}) over an updating input is not supported yet",
            function.name()
        )))
    };
    Ok(match (function, input) {
        (AggregateFunction::Count, input) => Box::new(RetractCount {
            counts: Vec::new(),
            star: input.is_none(),
        }),
        (_, None) => return refuse("*"),
        (AggregateFunction::Sum, Some(input)) => match result {
            Float64 => Box::new(RetractSum::Float {
                sums: Vec::new(),
                counts: Vec::new(),
            }),
            Int64 | UInt64 | Decimal128(_, _) if !matches!(input, Float32 | Float64) => {
                Box::new(RetractSum::Int {
                    sums: Vec::new(),
                    counts: Vec::new(),
                    result: result.clone(),
                })
            }
            other => return refuse(&other.to_string()),
        },
        (AggregateFunction::Avg, Some(Decimal128(_, scale))) => {
            Box::new(DecimalAvg::try_new(*scale, result)?)
        }
        (AggregateFunction::Avg, Some(_)) => Box::new(RetractAvg {
            sums: Vec::new(),
            counts: Vec::new(),
        }),
        (AggregateFunction::Min | AggregateFunction::Max, Some(input)) => {
            let is_min = function == AggregateFunction::Min;
            match input {
                Float32 | Float64 => Box::new(Multiset::<u64>::new(
                    is_min,
                    input.clone(),
                    float_keys,
                    float_array,
                )),
                Utf8 => Box::new(Multiset::<String>::new(
                    is_min,
                    input.clone(),
                    string_keys,
                    string_array,
                )),
                Int8
                | Int16
                | Int32
                | Int64
                | UInt8
                | UInt16
                | UInt32
                | UInt64
                | Date32
                | Timestamp(_, _)
                | Decimal128(_, _)
                | Boolean => Box::new(Multiset::<i128>::new(
                    is_min,
                    input.clone(),
                    integer_keys,
                    integer_array,
                )),
                other => return refuse(&other.to_string()),
            }
        }
        (AggregateFunction::CountDistinct, Some(input)) => match input {
            Float32 | Float64 => Box::new(Multiset::<u64>::distinct(
                input.clone(),
                float_keys,
                float_array,
            )),
            Utf8 => Box::new(Multiset::<String>::distinct(
                input.clone(),
                string_keys,
                string_array,
            )),
            Int8
            | Int16
            | Int32
            | Int64
            | UInt8
            | UInt16
            | UInt32
            | UInt64
            | Date32
            | Timestamp(_, _)
            | Decimal128(_, _)
            | Boolean => Box::new(Multiset::<i128>::distinct(
                input.clone(),
                integer_keys,
                integer_array,
            )),
            other => return refuse(&other.to_string()),
        },
        (AggregateFunction::FirstValue | AggregateFunction::LastValue, Some(input)) => {
            return refuse(&input.to_string());
        }
    })
}

/// COUNT(*) counts rows, COUNT(x) non-null values.
struct RetractCount {
    counts: Vec<i64>,
    star: bool,
}

impl RetractAccumulator for RetractCount {
    fn resize(&mut self, groups: usize) {
        self.counts.resize(groups, 0);
    }

    fn update(&mut self, groups: &[u32], signs: &[i64], values: Option<&ArrayRef>) -> Result<()> {
        match values.filter(|_| !self.star) {
            Some(values) if values.null_count() > 0 => {
                for (i, (&g, &s)) in groups.iter().zip(signs).enumerate() {
                    if values.is_valid(i) {
                        self.counts[g as usize] += s;
                    }
                }
            }
            _ => {
                for (&g, &s) in groups.iter().zip(signs) {
                    self.counts[g as usize] += s;
                }
            }
        }
        Ok(())
    }

    fn reset(&mut self, groups: &[u32]) {
        for &g in groups {
            self.counts[g as usize] = 0;
        }
    }

    fn evaluate(&self, groups: &[u32]) -> Result<ArrayRef> {
        Ok(Arc::new(Int64Array::from_iter_values(
            groups.iter().map(|&g| self.counts[g as usize]),
        )))
    }

    fn allocated_bytes(&self) -> usize {
        self.counts.capacity() * 8
    }

    fn state(&self, groups: &[u32]) -> Result<Vec<ArrayRef>> {
        Ok(vec![gather_i64(&self.counts, groups)])
    }

    fn restore_state(&mut self, groups: &[u32], state: &[ArrayRef]) -> Result<()> {
        let counts = int64_state(state, 0, groups.len(), "COUNT")?;
        scatter(&mut self.counts, groups, counts.values());
        Ok(())
    }
}

/// SUM with the count of non-null values (a group whose values were all retracted is NULL).
enum RetractSum {
    /// Integer and decimal inputs, summed exactly in `i128`.
    Int {
        sums: Vec<i128>,
        counts: Vec<i64>,
        result: DataType,
    },
    Float {
        sums: Vec<f64>,
        counts: Vec<i64>,
    },
}

/// Integer-like values as `i128` (decimals by their unscaled value).
fn integer_values(values: &ArrayRef) -> Result<Vec<i128>> {
    Ok(match values.data_type() {
        DataType::Decimal128(_, _) => values
            .as_primitive::<Decimal128Type>()
            .values()
            .iter()
            .copied()
            .collect(),
        DataType::UInt64 => values
            .as_primitive::<UInt64Type>()
            .values()
            .iter()
            .map(|&v| i128::from(v))
            .collect(),
        DataType::Boolean => {
            let values = values.as_boolean();
            (0..values.len())
                .map(|i| i128::from(values.value(i)))
                .collect()
        }
        _ => {
            let values =
                cast(values, &DataType::Int64).map_err(|e| Error::arrow("SUM input", e))?;
            values
                .as_primitive::<Int64Type>()
                .values()
                .iter()
                .map(|&v| i128::from(v))
                .collect()
        }
    })
}

impl RetractAccumulator for RetractSum {
    fn resize(&mut self, groups: usize) {
        match self {
            RetractSum::Int { sums, counts, .. } => {
                sums.resize(groups, 0);
                counts.resize(groups, 0);
            }
            RetractSum::Float { sums, counts } => {
                sums.resize(groups, 0.0);
                counts.resize(groups, 0);
            }
        }
    }

    fn update(&mut self, groups: &[u32], signs: &[i64], values: Option<&ArrayRef>) -> Result<()> {
        let values = values.ok_or_else(|| Error::Internal("SUM without input".into()))?;
        match self {
            RetractSum::Int { sums, counts, .. } => {
                let ints = integer_values(values)?;
                for (i, ((&g, &s), &v)) in groups.iter().zip(signs).zip(&ints).enumerate() {
                    if values.is_valid(i) {
                        sums[g as usize] += i128::from(s) * v;
                        counts[g as usize] += s;
                    }
                }
            }
            RetractSum::Float { sums, counts } => {
                let floats =
                    cast(values, &DataType::Float64).map_err(|e| Error::arrow("SUM input", e))?;
                let floats = floats.as_primitive::<Float64Type>();
                for (i, ((&g, &s), &v)) in groups.iter().zip(signs).zip(floats.values()).enumerate()
                {
                    if floats.is_valid(i) {
                        sums[g as usize] += s as f64 * v;
                        counts[g as usize] += s;
                    }
                }
            }
        }
        Ok(())
    }

    fn reset(&mut self, groups: &[u32]) {
        for &g in groups {
            match self {
                RetractSum::Int { sums, counts, .. } => {
                    sums[g as usize] = 0;
                    counts[g as usize] = 0;
                }
                RetractSum::Float { sums, counts } => {
                    sums[g as usize] = 0.0;
                    counts[g as usize] = 0;
                }
            }
        }
    }

    fn evaluate(&self, groups: &[u32]) -> Result<ArrayRef> {
        Ok(match self {
            RetractSum::Int {
                sums,
                counts,
                result,
            } => {
                let value = |g: u32| (counts[g as usize] > 0).then_some(sums[g as usize]);
                match result {
                    DataType::Int64 => Arc::new(
                        groups
                            .iter()
                            .map(|&g| value(g).map(|v| v as i64))
                            .collect::<Int64Array>(),
                    ),
                    DataType::UInt64 => Arc::new(
                        groups
                            .iter()
                            .map(|&g| value(g).map(|v| v as u64))
                            .collect::<UInt64Array>(),
                    ),
                    DataType::Decimal128(precision, scale) => Arc::new(
                        groups
                            .iter()
                            .map(|&g| value(g))
                            .collect::<Decimal128Array>()
                            .with_precision_and_scale(*precision, *scale)
                            .map_err(|e| Error::arrow("SUM result", e))?,
                    ),
                    other => return Err(Error::Internal(format!("retracting SUM of {other}"))),
                }
            }
            RetractSum::Float { sums, counts } => Arc::new(
                groups
                    .iter()
                    .map(|&g| (counts[g as usize] > 0).then_some(sums[g as usize]))
                    .collect::<Float64Array>(),
            ),
        })
    }

    fn allocated_bytes(&self) -> usize {
        match self {
            RetractSum::Int { sums, counts, .. } => sums.capacity() * 16 + counts.capacity() * 8,
            RetractSum::Float { sums, counts } => sums.capacity() * 8 + counts.capacity() * 8,
        }
    }

    /// The sum (`Decimal128(38, 0)` for an exact integer sum, else `Float64`) and the count of
    /// non-null values.
    fn state(&self, groups: &[u32]) -> Result<Vec<ArrayRef>> {
        Ok(match self {
            RetractSum::Int { sums, counts, .. } => {
                let sums =
                    Decimal128Array::from_iter_values(groups.iter().map(|&g| sums[g as usize]))
                        .with_precision_and_scale(38, 0)
                        .map_err(|e| Error::arrow("SUM state", e))?;
                vec![Arc::new(sums), gather_i64(counts, groups)]
            }
            RetractSum::Float { sums, counts } => {
                vec![gather_f64(sums, groups), gather_i64(counts, groups)]
            }
        })
    }

    fn restore_state(&mut self, groups: &[u32], state: &[ArrayRef]) -> Result<()> {
        let len = groups.len();
        match self {
            RetractSum::Int { sums, counts, .. } => {
                let restored = state
                    .first()
                    .and_then(|c| c.as_primitive_opt::<Decimal128Type>())
                    .filter(|c| c.len() == len && c.null_count() == 0)
                    .ok_or_else(|| bad_state("SUM"))?;
                scatter(sums, groups, restored.values());
                scatter(counts, groups, int64_state(state, 1, len, "SUM")?.values());
            }
            RetractSum::Float { sums, counts } => {
                scatter(sums, groups, float64_state(state, 0, len, "SUM")?.values());
                scatter(counts, groups, int64_state(state, 1, len, "SUM")?.values());
            }
        }
        Ok(())
    }
}

/// AVG as a sum and a count of non-null values (a `Float64` result, as the insert-only AVG).
struct RetractAvg {
    sums: Vec<f64>,
    counts: Vec<i64>,
}

impl RetractAccumulator for RetractAvg {
    fn resize(&mut self, groups: usize) {
        self.sums.resize(groups, 0.0);
        self.counts.resize(groups, 0);
    }

    fn update(&mut self, groups: &[u32], signs: &[i64], values: Option<&ArrayRef>) -> Result<()> {
        let values = values.ok_or_else(|| Error::Internal("AVG without input".into()))?;
        let values = cast(values, &DataType::Float64).map_err(|e| Error::arrow("AVG input", e))?;
        let values = values.as_primitive::<Float64Type>();
        for (i, ((&g, &s), &v)) in groups.iter().zip(signs).zip(values.values()).enumerate() {
            if values.is_valid(i) {
                self.sums[g as usize] += s as f64 * v;
                self.counts[g as usize] += s;
            }
        }
        Ok(())
    }

    fn reset(&mut self, groups: &[u32]) {
        for &g in groups {
            self.sums[g as usize] = 0.0;
            self.counts[g as usize] = 0;
        }
    }

    fn evaluate(&self, groups: &[u32]) -> Result<ArrayRef> {
        Ok(Arc::new(
            groups
                .iter()
                .map(|&g| {
                    let count = self.counts[g as usize];
                    (count > 0).then(|| self.sums[g as usize] / count as f64)
                })
                .collect::<Float64Array>(),
        ))
    }

    fn allocated_bytes(&self) -> usize {
        self.sums.capacity() * 8 + self.counts.capacity() * 8
    }

    fn state(&self, groups: &[u32]) -> Result<Vec<ArrayRef>> {
        Ok(vec![
            gather_f64(&self.sums, groups),
            gather_i64(&self.counts, groups),
        ])
    }

    fn restore_state(&mut self, groups: &[u32], state: &[ArrayRef]) -> Result<()> {
        let len = groups.len();
        scatter(
            &mut self.sums,
            groups,
            float64_state(state, 0, len, "AVG")?.values(),
        );
        scatter(
            &mut self.counts,
            groups,
            int64_state(state, 1, len, "AVG")?.values(),
        );
        Ok(())
    }
}

impl RetractAccumulator for DecimalAvg {
    fn resize(&mut self, groups: usize) {
        self.resize_groups(groups);
    }

    fn update(&mut self, groups: &[u32], signs: &[i64], values: Option<&ArrayRef>) -> Result<()> {
        self.add(groups, Some(signs), values)
    }

    fn reset(&mut self, groups: &[u32]) {
        self.clear(groups);
    }

    fn evaluate(&self, groups: &[u32]) -> Result<ArrayRef> {
        self.averages(groups)
    }

    fn allocated_bytes(&self) -> usize {
        self.heap_bytes()
    }

    fn state(&self, groups: &[u32]) -> Result<Vec<ArrayRef>> {
        self.state_columns(groups)
    }

    fn restore_state(&mut self, groups: &[u32], state: &[ArrayRef]) -> Result<()> {
        self.restore_columns(groups, state)
    }
}

/// A batch's values as multiset keys (`None` for NULL), once per batch.
type KeysOf<K> = fn(&ArrayRef) -> Result<Vec<Option<K>>>;
/// Multiset keys back to an array of the input type.
type ArrayOf<K> = fn(Vec<Option<K>>, &DataType) -> Result<ArrayRef>;

/// A per-group multiset of values with multiplicities: MIN / MAX with retraction (its first or
/// last entry) and COUNT(DISTINCT) with retraction (its number of entries).
struct Multiset<K: Ord + Clone + Send> {
    sets: Vec<BTreeMap<K, i64>>,
    /// `Some(true)` MIN, `Some(false)` MAX, `None` COUNT(DISTINCT).
    min: Option<bool>,
    input: DataType,
    keys_of: KeysOf<K>,
    array_of: ArrayOf<K>,
    entries: usize,
}

impl<K: Ord + Clone + Send> Multiset<K> {
    fn new(is_min: bool, input: DataType, keys_of: KeysOf<K>, array_of: ArrayOf<K>) -> Self {
        Multiset {
            sets: Vec::new(),
            min: Some(is_min),
            input,
            keys_of,
            array_of,
            entries: 0,
        }
    }

    fn distinct(input: DataType, keys_of: KeysOf<K>, array_of: ArrayOf<K>) -> Self {
        Multiset {
            sets: Vec::new(),
            min: None,
            input,
            keys_of,
            array_of,
            entries: 0,
        }
    }
}

impl<K: Ord + Clone + Send> RetractAccumulator for Multiset<K> {
    fn resize(&mut self, groups: usize) {
        self.sets.resize_with(groups, BTreeMap::new);
    }

    fn update(&mut self, groups: &[u32], signs: &[i64], values: Option<&ArrayRef>) -> Result<()> {
        let values = values.ok_or_else(|| Error::Internal("MIN/MAX without input".into()))?;
        let keys = (self.keys_of)(values)?;
        for ((&g, &s), key) in groups.iter().zip(signs).zip(keys) {
            let Some(key) = key else { continue };
            let set = &mut self.sets[g as usize];
            if s > 0 {
                let count = set.entry(key).or_insert(0);
                if *count == 0 {
                    self.entries += 1;
                }
                *count += s;
            } else if s < 0
                && let Some(count) = set.get_mut(&key)
            {
                // Retracting a value that is not there (it was never added) changes nothing.
                *count += s;
                if *count <= 0 {
                    set.remove(&key);
                    self.entries -= 1;
                }
            }
        }
        Ok(())
    }

    fn reset(&mut self, groups: &[u32]) {
        for &g in groups {
            let set = std::mem::take(&mut self.sets[g as usize]);
            self.entries -= set.len();
        }
    }

    fn evaluate(&self, groups: &[u32]) -> Result<ArrayRef> {
        match self.min {
            Some(is_min) => {
                let keys = groups
                    .iter()
                    .map(|&g| {
                        let set = &self.sets[g as usize];
                        let entry = if is_min {
                            set.first_key_value()
                        } else {
                            set.last_key_value()
                        };
                        entry.map(|(k, _)| k.clone())
                    })
                    .collect();
                (self.array_of)(keys, &self.input)
            }
            None => Ok(Arc::new(Int64Array::from_iter_values(
                groups.iter().map(|&g| self.sets[g as usize].len() as i64),
            ))),
        }
    }

    fn allocated_bytes(&self) -> usize {
        // A B-tree entry: the key, the count and about a node slot's overhead.
        self.sets.capacity() * std::mem::size_of::<BTreeMap<K, i64>>()
            + self.entries * (std::mem::size_of::<K>() + 8 + 16)
    }

    /// One `List<Struct<value, count>>` column: each group's values (in the input's type) in
    /// order, with their multiplicities.
    fn state(&self, groups: &[u32]) -> Result<Vec<ArrayRef>> {
        let entries: usize = groups.iter().map(|&g| self.sets[g as usize].len()).sum();
        let mut offsets = Vec::with_capacity(groups.len() + 1);
        offsets.push(0_i32);
        let mut keys = Vec::with_capacity(entries);
        let mut counts = Vec::with_capacity(entries);
        for &g in groups {
            for (key, &count) in &self.sets[g as usize] {
                keys.push(Some(key.clone()));
                counts.push(count);
            }
            let end = i32::try_from(keys.len()).map_err(|_| {
                Error::data("aggregate snapshot", "a multiset state over 2^31 entries")
            })?;
            offsets.push(end);
        }
        let values = (self.array_of)(keys, &self.input)?;
        let fields = multiset_fields(&self.input);
        let entries = StructArray::try_new(
            fields.clone(),
            vec![values, Arc::new(Int64Array::from(counts))],
            None,
        )
        .map_err(|e| Error::arrow("multiset state", e))?;
        let lists = ListArray::try_new(
            Arc::new(Field::new("item", DataType::Struct(fields), false)),
            OffsetBuffer::new(offsets.into()),
            Arc::new(entries),
            None,
        )
        .map_err(|e| Error::arrow("multiset state", e))?;
        Ok(vec![Arc::new(lists)])
    }

    fn restore_state(&mut self, groups: &[u32], state: &[ArrayRef]) -> Result<()> {
        let what = if self.min.is_some() {
            "MIN/MAX"
        } else {
            "COUNT DISTINCT"
        };
        let lists = state
            .first()
            .and_then(|c| c.as_list_opt::<i32>())
            .filter(|c| c.len() == groups.len())
            .ok_or_else(|| bad_state(what))?;
        let entries = lists
            .values()
            .as_struct_opt()
            .filter(|s| s.num_columns() == 2 && s.column(0).data_type() == &self.input)
            .ok_or_else(|| bad_state(what))?;
        let mut keys = (self.keys_of)(entries.column(0))?;
        let counts = entries
            .column(1)
            .as_primitive_opt::<Int64Type>()
            .filter(|c| c.null_count() == 0)
            .ok_or_else(|| bad_state(what))?;
        let offsets = lists.value_offsets();
        for (i, &g) in groups.iter().enumerate() {
            let set = &mut self.sets[g as usize];
            self.entries -= set.len();
            set.clear();
            let range = offsets[i] as usize..offsets[i + 1] as usize;
            for (key, &count) in keys[range.clone()].iter_mut().zip(&counts.values()[range]) {
                match key.take() {
                    Some(key) if count > 0 => set.insert(key, count),
                    _ => return Err(bad_state(what)),
                };
            }
            self.entries += set.len();
        }
        Ok(())
    }
}

/// The fields of a multiset entry: the value and its multiplicity.
fn multiset_fields(input: &DataType) -> Fields {
    Fields::from(vec![
        Field::new("value", input.clone(), false),
        Field::new("count", DataType::Int64, false),
    ])
}

fn integer_keys(values: &ArrayRef) -> Result<Vec<Option<i128>>> {
    let ints = match values.data_type() {
        DataType::Decimal128(_, _) | DataType::UInt64 | DataType::Boolean => {
            integer_values(values)?
        }
        _ => {
            // Dates and timestamps by their integer representation.
            let raw =
                cast(values, &DataType::Int64).map_err(|e| Error::arrow("MIN/MAX input", e))?;
            raw.as_primitive::<Int64Type>()
                .values()
                .iter()
                .map(|&v| i128::from(v))
                .collect()
        }
    };
    Ok(ints
        .into_iter()
        .enumerate()
        .map(|(i, v)| values.is_valid(i).then_some(v))
        .collect())
}

fn integer_array(keys: Vec<Option<i128>>, data_type: &DataType) -> Result<ArrayRef> {
    let array: ArrayRef = match data_type {
        DataType::Decimal128(precision, scale) => Arc::new(
            keys.into_iter()
                .collect::<Decimal128Array>()
                .with_precision_and_scale(*precision, *scale)
                .map_err(|e| Error::arrow("MIN/MAX result", e))?,
        ),
        DataType::UInt64 => Arc::new(
            keys.into_iter()
                .map(|k| k.map(|v| v as u64))
                .collect::<UInt64Array>(),
        ),
        DataType::Boolean => Arc::new(
            keys.into_iter()
                .map(|k| k.map(|v| v != 0))
                .collect::<BooleanArray>(),
        ),
        DataType::Timestamp(_, _) | DataType::Date32 => {
            let ints: Int64Array = keys.into_iter().map(|k| k.map(|v| v as i64)).collect();
            let as_int = match data_type {
                DataType::Date32 => cast(&(Arc::new(ints) as ArrayRef), &DataType::Int32)
                    .map_err(|e| Error::arrow("MIN/MAX result", e))?,
                _ => Arc::new(ints),
            };
            let data = as_int
                .to_data()
                .into_builder()
                .data_type(data_type.clone())
                .build()
                .map_err(|e| Error::arrow("MIN/MAX result", e))?;
            arrow::array::make_array(data)
        }
        _ => {
            let ints: Int64Array = keys.into_iter().map(|k| k.map(|v| v as i64)).collect();
            cast(&(Arc::new(ints) as ArrayRef), data_type)
                .map_err(|e| Error::arrow("MIN/MAX result", e))?
        }
    };
    Ok(array)
}

/// Floats ordered by IEEE total order, as sortable bits.
fn float_keys(values: &ArrayRef) -> Result<Vec<Option<u64>>> {
    let floats = cast(values, &DataType::Float64).map_err(|e| Error::arrow("MIN/MAX input", e))?;
    let floats = floats.as_primitive::<Float64Type>();
    Ok(floats
        .iter()
        .map(|v| {
            v.map(|f| {
                let bits = f.to_bits();
                if bits >> 63 == 1 {
                    !bits
                } else {
                    bits | (1 << 63)
                }
            })
        })
        .collect())
}

fn float_array(keys: Vec<Option<u64>>, data_type: &DataType) -> Result<ArrayRef> {
    let floats: Float64Array = keys
        .into_iter()
        .map(|k| {
            k.map(|bits| {
                let bits = if bits >> 63 == 1 {
                    bits & !(1 << 63)
                } else {
                    !bits
                };
                f64::from_bits(bits)
            })
        })
        .collect();
    cast(&(Arc::new(floats) as ArrayRef), data_type).map_err(|e| Error::arrow("MIN/MAX result", e))
}

fn string_keys(values: &ArrayRef) -> Result<Vec<Option<String>>> {
    let strings = values
        .as_string_opt::<i32>()
        .ok_or_else(|| Error::Internal("string MIN/MAX over a non-Utf8 column".into()))?;
    Ok(strings.iter().map(|v| v.map(str::to_string)).collect())
}

fn string_array(keys: Vec<Option<String>>, _data_type: &DataType) -> Result<ArrayRef> {
    Ok(Arc::new(keys.into_iter().collect::<StringArray>()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signs(kinds: &[i64]) -> Vec<i64> {
        kinds.to_vec()
    }

    #[test]
    fn max_with_retract_falls_back_to_the_next_value() {
        let mut max = new_retract_accumulator(
            AggregateFunction::Max,
            Some(&DataType::Int64),
            &DataType::Int64,
        )
        .unwrap();
        max.resize(1);
        let values: ArrayRef = Arc::new(Int64Array::from(vec![5, 9, 9, 7]));
        max.update(&[0, 0, 0, 0], &signs(&[1, 1, 1, 1]), Some(&values))
            .unwrap();
        let retract: ArrayRef = Arc::new(Int64Array::from(vec![9]));
        max.update(&[0], &signs(&[-1]), Some(&retract)).unwrap();
        let result = max.evaluate(&[0]).unwrap();
        assert_eq!(result.as_primitive::<Int64Type>().value(0), 9);
        max.update(&[0], &signs(&[-1]), Some(&retract)).unwrap();
        let result = max.evaluate(&[0]).unwrap();
        assert_eq!(result.as_primitive::<Int64Type>().value(0), 7);
    }

    #[test]
    fn min_with_retract_keeps_timestamps() {
        let ts = DataType::Timestamp(TimeUnit::Millisecond, None);
        let mut min = new_retract_accumulator(AggregateFunction::Min, Some(&ts), &ts).unwrap();
        min.resize(2);
        let values: ArrayRef = Arc::new(arrow::array::TimestampMillisecondArray::from(vec![
            30, 10, 20,
        ]));
        min.update(&[0, 0, 1], &signs(&[1, 1, 1]), Some(&values))
            .unwrap();
        let retract: ArrayRef = Arc::new(arrow::array::TimestampMillisecondArray::from(vec![10]));
        min.update(&[0], &signs(&[-1]), Some(&retract)).unwrap();
        let result = min.evaluate(&[0, 1]).unwrap();
        assert_eq!(result.data_type(), &ts);
        let result = result.as_primitive::<TimestampMillisecondType>();
        assert_eq!((result.value(0), result.value(1)), (30, 20));
    }

    #[test]
    fn decimal_avg_retracts_exactly() {
        let input = DataType::Decimal128(15, 2);
        let result = DataType::Decimal128(38, 6);
        let values: ArrayRef = Arc::new(
            Decimal128Array::from(vec![Some(100), Some(250), None, Some(250)])
                .with_precision_and_scale(15, 2)
                .expect("valid decimal type"),
        );
        let mut avg = new_retract_accumulator(AggregateFunction::Avg, Some(&input), &result)
            .expect("AVG of DECIMAL retracts");
        avg.resize(1);
        // +1.00, +2.50, +NULL, -2.50 → 1.00; then retracting 1.00 leaves no value.
        avg.update(&[0, 0, 0, 0], &[1, 1, 1, -1], Some(&values))
            .expect("update");
        let out = avg.evaluate(&[0]).expect("evaluate");
        assert_eq!(out.data_type(), &result);
        assert_eq!(out.as_primitive::<Decimal128Type>().value(0), 1_000_000);
        avg.update(&[0], &[-1], Some(&values.slice(0, 1)))
            .expect("retract");
        assert!(avg.evaluate(&[0]).expect("evaluate").is_null(0));
    }

    #[test]
    fn sum_avg_and_count_retract_to_null_and_zero() {
        let values: ArrayRef = Arc::new(Int64Array::from(vec![Some(4), None, Some(6)]));
        let mut sum = new_retract_accumulator(
            AggregateFunction::Sum,
            Some(&DataType::Int64),
            &DataType::Int64,
        )
        .unwrap();
        let mut avg = new_retract_accumulator(
            AggregateFunction::Avg,
            Some(&DataType::Int64),
            &DataType::Float64,
        )
        .unwrap();
        let mut count = new_retract_accumulator(
            AggregateFunction::Count,
            Some(&DataType::Int64),
            &DataType::Int64,
        )
        .unwrap();
        for acc in [&mut sum, &mut avg, &mut count] {
            acc.resize(1);
            acc.update(&[0, 0, 0], &[1, 1, 1], Some(&values)).unwrap();
        }
        assert_eq!(
            sum.evaluate(&[0])
                .unwrap()
                .as_primitive::<Int64Type>()
                .value(0),
            10
        );
        assert_eq!(
            avg.evaluate(&[0])
                .unwrap()
                .as_primitive::<Float64Type>()
                .value(0),
            5.0
        );
        assert_eq!(
            count
                .evaluate(&[0])
                .unwrap()
                .as_primitive::<Int64Type>()
                .value(0),
            2
        );
        for acc in [&mut sum, &mut avg, &mut count] {
            acc.update(&[0, 0, 0], &[-1, -1, -1], Some(&values))
                .unwrap();
        }
        assert!(sum.evaluate(&[0]).unwrap().is_null(0));
        assert!(avg.evaluate(&[0]).unwrap().is_null(0));
        assert_eq!(
            count
                .evaluate(&[0])
                .unwrap()
                .as_primitive::<Int64Type>()
                .value(0),
            0
        );
    }

    #[test]
    fn count_distinct_with_retract_counts_live_values() {
        let mut distinct = new_retract_accumulator(
            AggregateFunction::CountDistinct,
            Some(&DataType::Utf8),
            &DataType::Int64,
        )
        .unwrap();
        distinct.resize(1);
        let values: ArrayRef = Arc::new(StringArray::from(vec!["a", "b", "a"]));
        distinct
            .update(&[0, 0, 0], &[1, 1, 1], Some(&values))
            .unwrap();
        let a: ArrayRef = Arc::new(StringArray::from(vec!["a", "b"]));
        distinct.update(&[0, 0], &[-1, -1], Some(&a)).unwrap();
        let result = distinct.evaluate(&[0]).unwrap();
        assert_eq!(result.as_primitive::<Int64Type>().value(0), 1);
    }

    mod operator {
        //! The retracting aggregate against a row-at-a-time model: any valid changelog, cut
        //! into batches anywhere, folds to the model's result.

        use std::collections::BTreeMap;

        use arrow::array::{Float64Array, Int8Array, Int64Array};
        use arrow::datatypes::{Field, Schema};
        use proptest::prelude::*;

        use super::super::super::{KeyedAggregate, Operator, Output};
        use super::*;
        use crate::element::StreamElement;
        use crate::graph::KeyedAggregateSpec;

        type Row = (i64, Option<i64>);

        /// `(key, value, retract)` steps: a retraction removes the `pick`-th live row.
        fn changelog(steps: &[(i64, Option<i64>, bool, usize)]) -> Vec<(i8, Row)> {
            let mut live: Vec<Row> = Vec::new();
            let mut out = Vec::new();
            for &(k, v, retract, pick) in steps {
                if retract && !live.is_empty() {
                    let row = live.remove(pick % live.len());
                    out.push((if pick % 2 == 0 { 1 } else { 3 }, row));
                } else {
                    live.push((k, v));
                    out.push((if pick % 2 == 0 { 0 } else { 2 }, (k, v)));
                }
            }
            out
        }

        fn spec() -> KeyedAggregateSpec {
            let call = |function, input: Option<&str>, output: &str| AggregateCall {
                function,
                input: input.map(str::to_string),
                output: output.into(),
            };
            KeyedAggregateSpec {
                keys: vec!["k".into()],
                aggregates: vec![
                    call(AggregateFunction::Count, None, "n"),
                    call(AggregateFunction::Sum, Some("v"), "sum"),
                    call(AggregateFunction::Min, Some("v"), "min"),
                    call(AggregateFunction::Max, Some("v"), "max"),
                    call(AggregateFunction::Avg, Some("v"), "avg"),
                    call(AggregateFunction::CountDistinct, Some("v"), "distinct"),
                ],
                emit: EmitMode::Changelog,
                default_group: None,
                phase: Default::default(),
            }
        }

        type Result5 = (i64, Option<i64>, Option<i64>, Option<i64>, Option<i64>, i64);

        fn model(rows: &[(i8, Row)]) -> BTreeMap<i64, Result5> {
            let mut live: BTreeMap<i64, Vec<Option<i64>>> = BTreeMap::new();
            for &(kind, (k, v)) in rows {
                let values = live.entry(k).or_default();
                if kind == 0 || kind == 2 {
                    values.push(v);
                } else {
                    let at = values
                        .iter()
                        .position(|x| *x == v)
                        .expect("valid changelog");
                    values.remove(at);
                }
            }
            live.into_iter()
                .filter(|(_, values)| !values.is_empty())
                .map(|(k, values)| {
                    let present: Vec<i64> = values.iter().flatten().copied().collect();
                    let sum = (!present.is_empty()).then(|| present.iter().sum::<i64>());
                    let avg = sum.map(|s| s * 1000 / present.len() as i64);
                    let distinct = present.iter().collect::<std::collections::BTreeSet<_>>();
                    (
                        k,
                        (
                            values.len() as i64,
                            sum,
                            present.iter().min().copied(),
                            present.iter().max().copied(),
                            avg,
                            distinct.len() as i64,
                        ),
                    )
                })
                .collect()
        }

        proptest! {
            #[test]
            fn folds_to_the_model(
                steps in proptest::collection::vec(
                    (0_i64..4, proptest::option::of(-20_i64..20), any::<bool>(), 0_usize..64),
                    0..120,
                ),
                cuts in proptest::collection::vec(1_usize..20, 1..10),
            ) {
                let rows = changelog(&steps);
                let input = Schema::new(vec![
                    Field::new(ROW_KIND_COLUMN, DataType::Int8, false),
                    Field::new("k", DataType::Int64, true),
                    Field::new("v", DataType::Int64, true),
                ]);
                let spec = spec();
                let output = spec.output_schema(&input).unwrap();
                let mut aggregate = KeyedAggregate::try_new(&spec, &input, output).unwrap();
                let mut out = Output::default();
                let (mut start, mut cut) = (0, 0);
                while start < rows.len() {
                    let end = (start + cuts[cut % cuts.len()]).min(rows.len());
                    cut += 1;
                    let chunk = &rows[start..end];
                    let batch = RecordBatch::try_new(
                        Arc::new(input.clone()),
                        vec![
                            Arc::new(Int8Array::from_iter_values(chunk.iter().map(|r| r.0))),
                            Arc::new(Int64Array::from_iter_values(chunk.iter().map(|r| r.1.0))),
                            Arc::new(chunk.iter().map(|r| r.1.1).collect::<Int64Array>()),
                        ],
                    )
                    .unwrap();
                    aggregate.process_batch(0, batch, &mut out).unwrap();
                    start = end;
                }
                // Fold the output changelog.
                let mut folded: BTreeMap<i64, Result5> = BTreeMap::new();
                for element in out.drain() {
                    let StreamElement::Batch(b) = element else { continue };
                    let kinds = b.column(0).as_primitive::<Int8Type>();
                    let int = |c: usize, i: usize| {
                        let a = b.column(c).as_primitive::<Int64Type>();
                        a.is_valid(i).then(|| a.value(i))
                    };
                    let avg = b.column(6).as_any().downcast_ref::<Float64Array>().unwrap();
                    for i in 0..b.num_rows() {
                        let key = int(1, i).unwrap();
                        let row = (
                            int(2, i).unwrap(),
                            int(3, i),
                            int(4, i),
                            int(5, i),
                            avg.is_valid(i).then(|| (avg.value(i) * 1000.0).trunc() as i64),
                            int(7, i).unwrap(),
                        );
                        match kinds.value(i) {
                            0 | 2 => {
                                prop_assert!(folded.insert(key, row).is_none(), "double insert");
                            }
                            _ => {
                                let before = folded.remove(&key);
                                prop_assert_eq!(before, Some(row), "retracted another row");
                            }
                        }
                    }
                }
                let expected = model(&rows);
                // AVG compared in thousandths; float division may round the last one.
                prop_assert_eq!(folded.len(), expected.len());
                for (k, e) in &expected {
                    let a = folded[k];
                    prop_assert_eq!((a.0, a.1, a.2, a.3, a.5), (e.0, e.1, e.2, e.3, e.5));
                    prop_assert!(
                        match (a.4, e.4) {
                            (Some(x), Some(y)) => (x - y).abs() <= 1,
                            (x, y) => x == y,
                        },
                        "avg {:?} vs {:?}", a.4, e.4
                    );
                }
            }
        }
    }
}
