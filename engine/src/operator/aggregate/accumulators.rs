//! Vectorized accumulators: the state of every group of one aggregate call in columnar vectors.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Decimal128Array, Float64Array, Int64Array,
    PrimitiveArray, StringArray,
};
use arrow::buffer::{BooleanBuffer, NullBuffer};
use arrow::compute::cast;
use arrow::datatypes::*;
use arrow::row::{RowConverter, SortField};
use hashbrown::HashSet;

use super::bitset::GroupBits;
use crate::graph::{AggregateCall, AggregateFunction};
use crate::{Error, Result};

/// A vectorized accumulator: state for every group in columnar vectors.
///
/// The window operators also merge groups (slices into a window, sessions into one) and
/// recycle freed group slots, hence `merge` and `reset`.
pub(crate) trait Accumulator: Send {
    /// Grows the state to `groups` groups (new groups start empty).
    fn resize(&mut self, groups: usize);
    /// Folds `values` (None for COUNT(*)) into the groups named row by row in `groups`.
    fn update(&mut self, groups: &[u32], values: Option<&ArrayRef>) -> Result<()>;
    /// Folds the state of group `sources[i]` into group `targets[i]`, in order (so the
    /// earlier-merged source counts as earlier for FIRST_VALUE / LAST_VALUE). The slices have
    /// equal length (the caller checks).
    fn merge(&mut self, sources: &[u32], targets: &[u32]);
    /// Returns `groups` to the empty state, so their slots can be reused.
    fn reset(&mut self, groups: &[u32]);
    /// The current results of `groups`, in that order.
    fn evaluate(&self, groups: &[u32]) -> Result<ArrayRef>;
    /// Heap bytes held by the state.
    fn allocated_bytes(&self) -> usize;
    /// The state of `groups` as columns, for snapshots (called with no groups to learn the
    /// number of columns). The default refuses: the function does not checkpoint yet.
    fn state(&self, groups: &[u32]) -> Result<Vec<ArrayRef>> {
        let _ = groups;
        Err(unsupported_checkpoint())
    }
    /// Sets the state of `groups[i]` from row `i` of `state` (columns as [`Accumulator::state`]
    /// produced them). The groups exist (`resize` was called).
    fn restore_state(&mut self, groups: &[u32], state: &[ArrayRef]) -> Result<()> {
        let _ = (groups, state);
        Err(unsupported_checkpoint())
    }
}

/// The results of `groups` as one array: `value(g)` where `valid(g)`, NULL elsewhere. Values
/// and validity are written as two flat buffers (no per-row `Option` through a builder): the
/// changelog of an updating aggregate evaluates every touched group twice per batch.
fn gather<T: ArrowPrimitiveType>(
    groups: &[u32],
    value: impl Fn(usize) -> T::Native,
    valid: impl Fn(usize) -> bool,
    data_type: &DataType,
) -> PrimitiveArray<T> {
    let values: Vec<T::Native> = groups.iter().map(|&g| value(g as usize)).collect();
    let validity = BooleanBuffer::collect_bool(groups.len(), |i| valid(groups[i] as usize));
    let nulls = Some(NullBuffer::new(validity)).filter(|n| n.null_count() > 0);
    PrimitiveArray::<T>::new(values.into(), nulls).with_data_type(data_type.clone())
}

/// Most groups [`add_by_group`] spreads over lanes.
const LANE_GROUPS: usize = 256;

/// `targets[groups[i]] += value(i)` for every row, with `add`. With few groups consecutive
/// rows often hit the same group, and each addition waits for the store of the one before
/// (TPC-H Q1's four groups: a few cycles per row per aggregate). There, rows take turns among
/// four lanes of partial sums in `scratch`, whose chains run side by side, and the lanes are
/// added to the targets at the end. Wrapping additions are associative and commutative, so
/// the result is the same.
#[inline]
fn add_by_group<N: Copy + Default>(
    targets: &mut [N],
    groups: &[u32],
    value: impl Fn(usize) -> N,
    add: impl Fn(N, N) -> N,
    scratch: &mut Vec<N>,
) {
    let count = targets.len();
    if count > LANE_GROUPS || groups.len() < 4 * count {
        for (i, &g) in groups.iter().enumerate() {
            targets[g as usize] = add(targets[g as usize], value(i));
        }
        return;
    }
    scratch.clear();
    scratch.resize(4 * count, N::default());
    let (first, rest) = scratch.split_at_mut(count);
    let (second, rest) = rest.split_at_mut(count);
    let (third, fourth) = rest.split_at_mut(count);
    let mut chunks = groups.chunks_exact(4);
    for (chunk, g) in chunks.by_ref().enumerate() {
        let i = 4 * chunk;
        first[g[0] as usize] = add(first[g[0] as usize], value(i));
        second[g[1] as usize] = add(second[g[1] as usize], value(i + 1));
        third[g[2] as usize] = add(third[g[2] as usize], value(i + 2));
        fourth[g[3] as usize] = add(fourth[g[3] as usize], value(i + 3));
    }
    let done = groups.len() - chunks.remainder().len();
    for (j, &g) in chunks.remainder().iter().enumerate() {
        first[g as usize] = add(first[g as usize], value(done + j));
    }
    for (g, target) in targets.iter_mut().enumerate() {
        let lanes = add(add(first[g], second[g]), add(third[g], fourth[g]));
        *target = add(*target, lanes);
    }
}

fn unsupported_checkpoint() -> Error {
    Error::plan(
        "aggregate",
        "checkpoints of this aggregate function are not supported yet (COUNT, SUM and AVG are)",
    )
}

fn bad_state(function: &str) -> Error {
    Error::data(
        "aggregate snapshot",
        format!("the {function} state columns have unexpected types or lengths"),
    )
}

/// Accumulators, one per aggregate call, and the input column each reads (`None` for
/// `COUNT(*)`).
pub(crate) type Accumulators = (Vec<Box<dyn Accumulator>>, Vec<Option<usize>>);

/// One accumulator per aggregate call, with the input column each reads, resolved against
/// `input`.
pub(crate) fn accumulators_for(calls: &[AggregateCall], input: &Schema) -> Result<Accumulators> {
    let mut accumulators = Vec::with_capacity(calls.len());
    let mut inputs = Vec::with_capacity(calls.len());
    for call in calls {
        let column = match &call.input {
            Some(name) => Some(
                input
                    .index_of(name)
                    .map_err(|_| Error::expr(format!("unknown aggregate column '{name}'")))?,
            ),
            None => None,
        };
        let input_type = column.map(|i| input.field(i).data_type());
        let result_type = call.function.result_type(input_type)?;
        accumulators.push(new_accumulator(call.function, input_type, &result_type)?);
        inputs.push(column);
    }
    Ok((accumulators, inputs))
}

pub(crate) fn new_accumulator(
    function: AggregateFunction,
    input: Option<&DataType>,
    result: &DataType,
) -> Result<Box<dyn Accumulator>> {
    use DataType::*;
    Ok(match (function, input) {
        (AggregateFunction::Count, None) => Box::new(Count {
            counts: Vec::new(),
            star: true,
            scratch: Vec::new(),
        }),
        (AggregateFunction::Count, Some(_)) => Box::new(Count {
            counts: Vec::new(),
            star: false,
            scratch: Vec::new(),
        }),
        (_, None) => {
            return Err(Error::expr(format!(
                "{}(*) is not defined",
                function.name()
            )));
        }
        (AggregateFunction::Sum, Some(_)) => match result {
            Int64 => Box::new(Sum::<Int64Type>::new(result.clone())),
            UInt64 => Box::new(Sum::<UInt64Type>::new(result.clone())),
            Float64 => Box::new(Sum::<Float64Type>::new(result.clone())),
            Decimal128(_, _) => Box::new(Sum::<Decimal128Type>::new(result.clone())),
            other => return Err(Error::Internal(format!("SUM result type {other}"))),
        },
        (AggregateFunction::CountDistinct, Some(input)) => Box::new(CountDistinct::try_new(input)?),
        (AggregateFunction::FirstValue | AggregateFunction::LastValue, Some(input)) => {
            let last = function == AggregateFunction::LastValue;
            macro_rules! positional {
                ($t:ty) => {
                    Box::new(Positional::<$t>::new(input.clone(), last))
                };
            }
            match input {
                Int8 => positional!(Int8Type),
                Int16 => positional!(Int16Type),
                Int32 => positional!(Int32Type),
                Int64 => positional!(Int64Type),
                UInt8 => positional!(UInt8Type),
                UInt16 => positional!(UInt16Type),
                UInt32 => positional!(UInt32Type),
                UInt64 => positional!(UInt64Type),
                Float32 => positional!(Float32Type),
                Float64 => positional!(Float64Type),
                Date32 => positional!(Date32Type),
                Decimal128(_, _) => positional!(Decimal128Type),
                Timestamp(TimeUnit::Second, _) => positional!(TimestampSecondType),
                Timestamp(TimeUnit::Millisecond, _) => positional!(TimestampMillisecondType),
                Timestamp(TimeUnit::Microsecond, _) => positional!(TimestampMicrosecondType),
                Timestamp(TimeUnit::Nanosecond, _) => positional!(TimestampNanosecondType),
                Utf8 => Box::new(StringPositional {
                    values: StringSlots::default(),
                    last,
                }),
                other => {
                    return Err(Error::expr(format!(
                        "{} is not defined for type {other}",
                        function.name()
                    )));
                }
            }
        }
        (AggregateFunction::Avg, Some(Decimal128(_, scale))) => {
            Box::new(DecimalAvg::try_new(*scale, result)?)
        }
        (AggregateFunction::Avg, Some(_)) => Box::new(Avg {
            sums: Vec::new(),
            counts: Vec::new(),
        }),
        (AggregateFunction::Min | AggregateFunction::Max, Some(input)) => {
            let is_min = function == AggregateFunction::Min;
            macro_rules! extreme {
                ($t:ty) => {
                    Box::new(Extreme::<$t>::new(input.clone(), is_min))
                };
            }
            match input {
                Int8 => extreme!(Int8Type),
                Int16 => extreme!(Int16Type),
                Int32 => extreme!(Int32Type),
                Int64 => extreme!(Int64Type),
                UInt8 => extreme!(UInt8Type),
                UInt16 => extreme!(UInt16Type),
                UInt32 => extreme!(UInt32Type),
                UInt64 => extreme!(UInt64Type),
                Float32 => extreme!(Float32Type),
                Float64 => extreme!(Float64Type),
                Date32 => extreme!(Date32Type),
                Decimal128(_, _) => extreme!(Decimal128Type),
                Timestamp(TimeUnit::Second, _) => extreme!(TimestampSecondType),
                Timestamp(TimeUnit::Millisecond, _) => extreme!(TimestampMillisecondType),
                Timestamp(TimeUnit::Microsecond, _) => extreme!(TimestampMicrosecondType),
                Timestamp(TimeUnit::Nanosecond, _) => extreme!(TimestampNanosecondType),
                Utf8 => Box::new(StringExtreme {
                    values: StringSlots::default(),
                    is_min,
                }),
                Boolean => Box::new(BoolExtreme {
                    values: Vec::new(),
                    is_min,
                }),
                other => {
                    return Err(Error::expr(format!(
                        "{} is not defined for type {other}",
                        function.name()
                    )));
                }
            }
        }
    })
}

struct Count {
    counts: Vec<i64>,
    star: bool,
    /// Lanes for [`add_by_group`].
    scratch: Vec<i64>,
}

impl Accumulator for Count {
    fn allocated_bytes(&self) -> usize {
        self.counts.capacity() * 8
    }

    fn resize(&mut self, groups: usize) {
        self.counts.resize(groups, 0);
    }

    fn update(&mut self, groups: &[u32], values: Option<&ArrayRef>) -> Result<()> {
        match values.filter(|v| !self.star && v.null_count() > 0) {
            Some(values) => {
                let nulls = values.logical_nulls();
                for (i, &g) in groups.iter().enumerate() {
                    if nulls.as_ref().is_none_or(|n| n.is_valid(i)) {
                        self.counts[g as usize] += 1;
                    }
                }
            }
            None => add_by_group(
                &mut self.counts,
                groups,
                |_| 1,
                i64::wrapping_add,
                &mut self.scratch,
            ),
        }
        Ok(())
    }

    fn merge(&mut self, sources: &[u32], targets: &[u32]) {
        for (&s, &t) in sources.iter().zip(targets) {
            self.counts[t as usize] += self.counts[s as usize];
        }
    }

    fn reset(&mut self, groups: &[u32]) {
        for &g in groups {
            self.counts[g as usize] = 0;
        }
    }

    fn evaluate(&self, groups: &[u32]) -> Result<ArrayRef> {
        let values: Int64Array = groups
            .iter()
            .map(|&g| self.counts[g as usize])
            .collect::<Vec<_>>()
            .into();
        Ok(Arc::new(values))
    }

    fn state(&self, groups: &[u32]) -> Result<Vec<ArrayRef>> {
        Ok(vec![self.evaluate(groups)?])
    }

    fn restore_state(&mut self, groups: &[u32], state: &[ArrayRef]) -> Result<()> {
        let counts = state
            .first()
            .and_then(|c| c.as_primitive_opt::<Int64Type>())
            .filter(|c| c.len() == groups.len())
            .ok_or_else(|| bad_state("COUNT"))?;
        for (&g, &count) in groups.iter().zip(counts.values().iter()) {
            self.counts[g as usize] = count;
        }
        Ok(())
    }
}

/// Values are cast to the result type once per batch, then summed with wrapping arithmetic
/// (Flink's SUM of BIGINT wraps on overflow too).
struct Sum<T: ArrowPrimitiveType> {
    sums: Vec<T::Native>,
    seen: Vec<bool>,
    result: DataType,
    /// Lanes for [`add_by_group`].
    scratch: Vec<T::Native>,
}

impl<T: ArrowPrimitiveType> Sum<T> {
    fn new(result: DataType) -> Self {
        Sum {
            sums: Vec::new(),
            seen: Vec::new(),
            result,
            scratch: Vec::new(),
        }
    }
}

impl<T: ArrowPrimitiveType> Accumulator for Sum<T>
where
    T::Native: std::ops::Add<Output = T::Native> + ArrowNativeTypeOp,
{
    fn allocated_bytes(&self) -> usize {
        self.sums.capacity() * std::mem::size_of::<T::Native>() + self.seen.capacity()
    }

    fn resize(&mut self, groups: usize) {
        self.sums.resize(groups, T::Native::ZERO);
        self.seen.resize(groups, false);
    }

    fn update(&mut self, groups: &[u32], values: Option<&ArrayRef>) -> Result<()> {
        let values = values.ok_or_else(|| Error::Internal("SUM without input".into()))?;
        // A decimal of the result's scale is summed as it is: widening its precision changes
        // only the type, and the cast would copy every value.
        let values = if same_scale_decimal(values.data_type(), &self.result) {
            Arc::clone(values)
        } else {
            cast(values, &self.result).map_err(|e| Error::arrow("SUM input", e))?
        };
        let values = values.as_primitive::<T>();
        let raw = values.values();
        if values.null_count() == 0 && self.sums.len() <= LANE_GROUPS && raw.len() == groups.len() {
            add_by_group(
                &mut self.sums,
                groups,
                |i| raw[i],
                T::Native::add_wrapping,
                &mut self.scratch,
            );
            // Few groups: once all have values, no row needs marking.
            if self.seen.contains(&false) {
                for &g in groups {
                    self.seen[g as usize] = true;
                }
            }
        } else if values.null_count() == 0 {
            for (&g, &v) in groups.iter().zip(raw.iter()) {
                let g = g as usize;
                self.sums[g] = self.sums[g].add_wrapping(v);
                self.seen[g] = true;
            }
        } else {
            for (i, (&g, &v)) in groups.iter().zip(raw.iter()).enumerate() {
                if values.is_valid(i) {
                    let g = g as usize;
                    self.sums[g] = self.sums[g].add_wrapping(v);
                    self.seen[g] = true;
                }
            }
        }
        Ok(())
    }

    fn merge(&mut self, sources: &[u32], targets: &[u32]) {
        for (&s, &t) in sources.iter().zip(targets) {
            let (s, t) = (s as usize, t as usize);
            if self.seen[s] {
                self.sums[t] = self.sums[t].add_wrapping(self.sums[s]);
                self.seen[t] = true;
            }
        }
    }

    fn reset(&mut self, groups: &[u32]) {
        for &g in groups {
            self.sums[g as usize] = T::Native::ZERO;
            self.seen[g as usize] = false;
        }
    }

    fn evaluate(&self, groups: &[u32]) -> Result<ArrayRef> {
        let array = gather::<T>(groups, |g| self.sums[g], |g| self.seen[g], &self.result);
        Ok(Arc::new(array))
    }

    fn state(&self, groups: &[u32]) -> Result<Vec<ArrayRef>> {
        Ok(vec![self.evaluate(groups)?])
    }

    fn restore_state(&mut self, groups: &[u32], state: &[ArrayRef]) -> Result<()> {
        let sums = state
            .first()
            .and_then(|c| c.as_primitive_opt::<T>())
            .filter(|c| c.len() == groups.len())
            .ok_or_else(|| bad_state("SUM"))?;
        for (i, &g) in groups.iter().enumerate() {
            let g = g as usize;
            self.seen[g] = sums.is_valid(i);
            self.sums[g] = if sums.is_valid(i) {
                sums.value(i)
            } else {
                T::Native::ZERO
            };
        }
        Ok(())
    }
}

/// `true` when `from` and `to` are both `Decimal128`, or both `Decimal256`, of the same scale
/// with `to` at least as precise: their values are the same integers.
fn same_scale_decimal(from: &DataType, to: &DataType) -> bool {
    match (from, to) {
        (DataType::Decimal128(p1, s1), DataType::Decimal128(p2, s2))
        | (DataType::Decimal256(p1, s1), DataType::Decimal256(p2, s2)) => s1 == s2 && p1 <= p2,
        _ => false,
    }
}

struct Avg {
    sums: Vec<f64>,
    counts: Vec<i64>,
}

impl Accumulator for Avg {
    fn allocated_bytes(&self) -> usize {
        self.sums.capacity() * 8 + self.counts.capacity() * 8
    }

    fn resize(&mut self, groups: usize) {
        self.sums.resize(groups, 0.0);
        self.counts.resize(groups, 0);
    }

    fn update(&mut self, groups: &[u32], values: Option<&ArrayRef>) -> Result<()> {
        let values = values.ok_or_else(|| Error::Internal("AVG without input".into()))?;
        let values = cast(values, &DataType::Float64).map_err(|e| Error::arrow("AVG input", e))?;
        let values = values.as_primitive::<Float64Type>();
        for (i, (&g, &v)) in groups.iter().zip(values.values().iter()).enumerate() {
            if values.is_valid(i) {
                self.sums[g as usize] += v;
                self.counts[g as usize] += 1;
            }
        }
        Ok(())
    }

    fn merge(&mut self, sources: &[u32], targets: &[u32]) {
        for (&s, &t) in sources.iter().zip(targets) {
            self.sums[t as usize] += self.sums[s as usize];
            self.counts[t as usize] += self.counts[s as usize];
        }
    }

    fn reset(&mut self, groups: &[u32]) {
        for &g in groups {
            self.sums[g as usize] = 0.0;
            self.counts[g as usize] = 0;
        }
    }

    fn evaluate(&self, groups: &[u32]) -> Result<ArrayRef> {
        let array = gather::<Float64Type>(
            groups,
            |g| match self.counts[g] {
                0 => 0.0,
                count => self.sums[g] / count as f64,
            },
            |g| self.counts[g] > 0,
            &DataType::Float64,
        );
        Ok(Arc::new(array))
    }

    fn state(&self, groups: &[u32]) -> Result<Vec<ArrayRef>> {
        let sums: Float64Array = groups
            .iter()
            .map(|&g| self.sums[g as usize])
            .collect::<Vec<_>>()
            .into();
        let counts: Int64Array = groups
            .iter()
            .map(|&g| self.counts[g as usize])
            .collect::<Vec<_>>()
            .into();
        Ok(vec![Arc::new(sums), Arc::new(counts)])
    }

    fn restore_state(&mut self, groups: &[u32], state: &[ArrayRef]) -> Result<()> {
        let (Some(sums), Some(counts)) = (
            state
                .first()
                .and_then(|c| c.as_primitive_opt::<Float64Type>()),
            state.get(1).and_then(|c| c.as_primitive_opt::<Int64Type>()),
        ) else {
            return Err(bad_state("AVG"));
        };
        if sums.len() != groups.len() || counts.len() != groups.len() {
            return Err(bad_state("AVG"));
        }
        for (i, &g) in groups.iter().enumerate() {
            self.sums[g as usize] = sums.value(i);
            self.counts[g as usize] = counts.value(i);
        }
        Ok(())
    }
}

/// AVG of a DECIMAL column, exact: a sum in `i128` at the input's scale and a count of
/// non-null values per group. The result is `DECIMAL(38, max(s, 6))` (Flink's type: the
/// `DECIMAL(38, s)` sum divided by the `BIGINT` count), the quotient rounded half away from
/// zero as Flink's decimal division rounds. The retracting aggregation uses it too (a sign
/// per row; see `retract.rs`).
pub(super) struct DecimalAvg {
    pub(super) sums: Vec<i128>,
    pub(super) counts: Vec<i64>,
    /// The input's scale (the scale of `sums`).
    pub(super) scale: i8,
    /// `10^(result scale - input scale)`: lifts a sum to the result's scale.
    factor: i128,
    result: DataType,
    /// Lanes for [`add_by_group`].
    sum_lanes: Vec<i128>,
    count_lanes: Vec<i64>,
}

impl DecimalAvg {
    pub(super) fn try_new(scale: i8, result: &DataType) -> Result<Self> {
        let DataType::Decimal128(_, result_scale) = result else {
            return Err(Error::Internal(format!(
                "AVG of DECIMAL with result type {result} (a bug: the result is a DECIMAL)"
            )));
        };
        let factor = u32::try_from(i32::from(*result_scale) - i32::from(scale))
            .ok()
            .and_then(|exp| 10i128.checked_pow(exp))
            .ok_or_else(|| {
                Error::Internal(format!(
                    "AVG of DECIMAL: result scale {result_scale} below the input's {scale} \
                     (a bug)"
                ))
            })?;
        Ok(DecimalAvg {
            sums: Vec::new(),
            counts: Vec::new(),
            scale,
            factor,
            result: result.clone(),
            sum_lanes: Vec::new(),
            count_lanes: Vec::new(),
        })
    }

    pub(super) fn resize_groups(&mut self, groups: usize) {
        self.sums.resize(groups, 0);
        self.counts.resize(groups, 0);
    }

    /// Adds row `i` of `values` to `groups[i]`, times `signs[i]` when given (a retraction is
    /// `-1`).
    pub(super) fn add(
        &mut self,
        groups: &[u32],
        signs: Option<&[i64]>,
        values: Option<&ArrayRef>,
    ) -> Result<()> {
        let values = values.ok_or_else(|| Error::Internal("AVG without input".into()))?;
        let values = values.as_primitive_opt::<Decimal128Type>().ok_or_else(|| {
            Error::Internal(format!(
                "AVG of DECIMAL got a {} column (a bug)",
                values.data_type()
            ))
        })?;
        if groups.len() != values.len() || signs.is_some_and(|s| s.len() != groups.len()) {
            return Err(Error::Internal(
                "AVG of DECIMAL: groups, signs and values differ in length (a bug)".into(),
            ));
        }
        let raw = values.values();
        let nulls = values.nulls().filter(|n| n.null_count() > 0);
        if nulls.is_none() && signs.is_none() && self.sums.len() > LANE_GROUPS {
            // The common case, without the per-row null test and sign; one pass for both
            // vectors, as the groups are many and each is likely a cache miss.
            for (&g, &v) in groups.iter().zip(raw.iter()) {
                let g = g as usize;
                self.sums[g] = self.sums[g].wrapping_add(v);
                self.counts[g] += 1;
            }
            return Ok(());
        }
        if nulls.is_none() && signs.is_none() {
            // The same over few groups, in lanes.
            add_by_group(
                &mut self.sums,
                groups,
                |i| raw[i],
                i128::wrapping_add,
                &mut self.sum_lanes,
            );
            add_by_group(
                &mut self.counts,
                groups,
                |_| 1,
                i64::wrapping_add,
                &mut self.count_lanes,
            );
            return Ok(());
        }
        for i in 0..groups.len() {
            if nulls.is_some_and(|n| n.is_null(i)) {
                continue;
            }
            let g = groups[i] as usize;
            let sign = signs.map_or(1, |s| s[i]);
            self.sums[g] = self.sums[g].wrapping_add(i128::from(sign).wrapping_mul(raw[i]));
            self.counts[g] += sign;
        }
        Ok(())
    }

    pub(super) fn clear(&mut self, groups: &[u32]) {
        for &g in groups {
            self.sums[g as usize] = 0;
            self.counts[g as usize] = 0;
        }
    }

    /// The averages of `groups` (NULL where a group has no values).
    pub(super) fn averages(&self, groups: &[u32]) -> Result<ArrayRef> {
        let mut values = Vec::with_capacity(groups.len());
        for &g in groups {
            let (sum, count) = (self.sums[g as usize], self.counts[g as usize]);
            values.push(if count > 0 {
                let lifted = sum.checked_mul(self.factor).ok_or_else(|| {
                    Error::data(
                        "AVG",
                        format!(
                            "the sum {sum} (scale {}) overflows {} when averaged",
                            self.scale, self.result
                        ),
                    )
                })?;
                divide_rounding_half_away(lifted, i128::from(count))
            } else {
                0
            });
        }
        let validity =
            BooleanBuffer::collect_bool(groups.len(), |i| self.counts[groups[i] as usize] > 0);
        let nulls = Some(NullBuffer::new(validity)).filter(|n| n.null_count() > 0);
        Ok(Arc::new(
            Decimal128Array::new(values.into(), nulls).with_data_type(self.result.clone()),
        ))
    }

    /// The state columns: the sums as `DECIMAL(38, input scale)`, the counts as `BIGINT`.
    pub(super) fn state_columns(&self, groups: &[u32]) -> Result<Vec<ArrayRef>> {
        let sums = Decimal128Array::from_iter_values(groups.iter().map(|&g| self.sums[g as usize]))
            .with_precision_and_scale(38, self.scale)
            .map_err(|e| Error::arrow("AVG state", e))?;
        let counts = Int64Array::from_iter_values(groups.iter().map(|&g| self.counts[g as usize]));
        Ok(vec![Arc::new(sums), Arc::new(counts)])
    }

    pub(super) fn restore_columns(&mut self, groups: &[u32], state: &[ArrayRef]) -> Result<()> {
        let (Some(sums), Some(counts)) = (
            state
                .first()
                .and_then(|c| c.as_primitive_opt::<Decimal128Type>()),
            state.get(1).and_then(|c| c.as_primitive_opt::<Int64Type>()),
        ) else {
            return Err(bad_state("AVG"));
        };
        if sums.len() != groups.len() || counts.len() != groups.len() {
            return Err(bad_state("AVG"));
        }
        for (i, &g) in groups.iter().enumerate() {
            self.sums[g as usize] = sums.value(i);
            self.counts[g as usize] = counts.value(i);
        }
        Ok(())
    }

    pub(super) fn heap_bytes(&self) -> usize {
        self.sums.capacity() * 16 + self.counts.capacity() * 8
    }
}

/// `n / d` rounded to the nearest integer, ties away from zero (`d > 0`).
fn divide_rounding_half_away(n: i128, d: i128) -> i128 {
    let (q, r) = (n / d, n % d);
    if r.unsigned_abs() * 2 >= d.unsigned_abs() {
        q + n.signum()
    } else {
        q
    }
}

impl Accumulator for DecimalAvg {
    fn resize(&mut self, groups: usize) {
        self.resize_groups(groups);
    }

    fn update(&mut self, groups: &[u32], values: Option<&ArrayRef>) -> Result<()> {
        self.add(groups, None, values)
    }

    fn merge(&mut self, sources: &[u32], targets: &[u32]) {
        for (&s, &t) in sources.iter().zip(targets) {
            self.sums[t as usize] = self.sums[t as usize].wrapping_add(self.sums[s as usize]);
            self.counts[t as usize] += self.counts[s as usize];
        }
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

/// MIN / MAX of a primitive column: the extreme of each group in a flat vector plus one
/// validity bit per group (8 bytes and a bit per group where `Option<T>` took 16). An empty
/// group holds the identity of its comparison (the largest value in arrow's total order for
/// MIN, the smallest for MAX), so the update loop compares without testing validity.
struct Extreme<T: ArrowPrimitiveType> {
    values: Vec<T::Native>,
    seen: GroupBits,
    data_type: DataType,
    is_min: bool,
}

impl<T: ArrowPrimitiveType> Extreme<T> {
    fn new(data_type: DataType, is_min: bool) -> Self {
        Extreme {
            values: Vec::new(),
            seen: GroupBits::default(),
            data_type,
            is_min,
        }
    }

    fn identity(&self) -> T::Native {
        if self.is_min {
            T::Native::MAX_TOTAL_ORDER
        } else {
            T::Native::MIN_TOTAL_ORDER
        }
    }

    /// Folds `v` into group `g`, which exists.
    #[inline]
    fn fold(&mut self, g: usize, v: T::Native) {
        let current = &mut self.values[g];
        let replace = if self.is_min {
            v.is_lt(*current)
        } else {
            v.is_gt(*current)
        };
        if replace {
            *current = v;
        }
        self.seen.set(g);
    }
}

impl<T: ArrowPrimitiveType> Accumulator for Extreme<T> {
    fn allocated_bytes(&self) -> usize {
        self.values.capacity() * std::mem::size_of::<T::Native>() + self.seen.allocated_bytes()
    }

    fn state(&self, groups: &[u32]) -> Result<Vec<ArrayRef>> {
        Ok(vec![self.evaluate(groups)?])
    }

    fn restore_state(&mut self, groups: &[u32], state: &[ArrayRef]) -> Result<()> {
        let column = state
            .first()
            .and_then(|c| c.as_primitive_opt::<T>())
            .filter(|c| c.len() == groups.len())
            .ok_or_else(|| bad_state("MIN/MAX"))?;
        let identity = self.identity();
        for (&g, value) in groups.iter().zip(column.iter()) {
            let g = g as usize;
            match value {
                Some(v) => {
                    self.values[g] = v;
                    self.seen.set(g);
                }
                None => {
                    self.values[g] = identity;
                    self.seen.clear(g);
                }
            }
        }
        Ok(())
    }

    fn resize(&mut self, groups: usize) {
        let identity = self.identity();
        self.values.resize(groups, identity);
        self.seen.grow(groups);
    }

    fn update(&mut self, groups: &[u32], values: Option<&ArrayRef>) -> Result<()> {
        let values = values.ok_or_else(|| Error::Internal("MIN/MAX without input".into()))?;
        let values = values.as_primitive::<T>();
        let raw = values.values();
        match values.nulls().filter(|n| n.null_count() > 0) {
            None => {
                // Monomorphised per direction: the comparison is not re-decided per row.
                if self.is_min {
                    for (&g, &v) in groups.iter().zip(raw.iter()) {
                        let g = g as usize;
                        if v.is_lt(self.values[g]) {
                            self.values[g] = v;
                        }
                        self.seen.set(g);
                    }
                } else {
                    for (&g, &v) in groups.iter().zip(raw.iter()) {
                        let g = g as usize;
                        if v.is_gt(self.values[g]) {
                            self.values[g] = v;
                        }
                        self.seen.set(g);
                    }
                }
            }
            Some(nulls) => {
                for (i, (&g, &v)) in groups.iter().zip(raw.iter()).enumerate() {
                    if nulls.is_valid(i) {
                        self.fold(g as usize, v);
                    }
                }
            }
        }
        Ok(())
    }

    fn merge(&mut self, sources: &[u32], targets: &[u32]) {
        for (&s, &t) in sources.iter().zip(targets) {
            let s = s as usize;
            if self.seen.get(s) {
                let v = self.values[s];
                self.fold(t as usize, v);
            }
        }
    }

    fn reset(&mut self, groups: &[u32]) {
        let identity = self.identity();
        for &g in groups {
            self.values[g as usize] = identity;
            self.seen.clear(g as usize);
        }
    }

    fn evaluate(&self, groups: &[u32]) -> Result<ArrayRef> {
        let array = gather::<T>(
            groups,
            |g| self.values[g],
            |g| self.seen.get(g),
            &self.data_type,
        );
        Ok(Arc::new(array))
    }
}

/// Sets `values[groups[i]]` from row `i` of the first state column (a primitive array, NULL
/// for an empty slot): the restore of the one-column primitive accumulators.
fn restore_primitive_slots<T: ArrowPrimitiveType>(
    values: &mut [Option<T::Native>],
    groups: &[u32],
    state: &[ArrayRef],
    function: &str,
) -> Result<()> {
    let column = state
        .first()
        .and_then(|c| c.as_primitive_opt::<T>())
        .filter(|c| c.len() == groups.len())
        .ok_or_else(|| bad_state(function))?;
    for (&g, value) in groups.iter().zip(column.iter()) {
        values[g as usize] = value;
    }
    Ok(())
}

/// One optional string per group, with the bytes of all the strings' buffers kept as a
/// running total: [`Accumulator::allocated_bytes`] is read after every batch (the batch
/// aggregation checks its memory budget), where summing the strings would cost a pass over
/// every group.
#[derive(Default)]
struct StringSlots {
    values: Vec<Option<String>>,
    /// Sum of the capacities of the strings in `values`.
    heap: usize,
}

impl StringSlots {
    fn allocated_bytes(&self) -> usize {
        self.values.capacity() * std::mem::size_of::<Option<String>>() + self.heap
    }

    fn resize(&mut self, groups: usize) {
        if groups < self.values.len() {
            let dropped: usize = self.values[groups..]
                .iter()
                .flatten()
                .map(String::capacity)
                .sum();
            self.heap -= dropped;
        }
        self.values.resize(groups, None);
    }

    fn get(&self, group: usize) -> Option<&str> {
        self.values[group].as_deref()
    }

    /// Sets the slot of `group` to `value`, reusing its buffer.
    fn set(&mut self, group: usize, value: &str) {
        let slot = self.values[group].get_or_insert_with(String::new);
        let before = slot.capacity();
        slot.clear();
        slot.push_str(value);
        // A cleared buffer keeps its capacity, so it only grows.
        self.heap += slot.capacity() - before;
    }

    /// Sets the slot of `target` to the value of `source` (which is not `target`).
    fn copy(&mut self, source: usize, target: usize) {
        match self.values[source].take() {
            Some(value) => {
                self.set(target, &value);
                // Put back as it was: the running total is unchanged.
                self.values[source] = Some(value);
            }
            None => self.clear(target),
        }
    }

    fn clear(&mut self, group: usize) {
        if let Some(old) = self.values[group].take() {
            self.heap -= old.capacity();
        }
    }

    /// The slots of `groups`, in that order, as a column.
    fn array(&self, groups: &[u32]) -> ArrayRef {
        let array: StringArray = groups.iter().map(|&g| self.get(g as usize)).collect();
        Arc::new(array)
    }

    /// Sets the slots of `groups` from the first column of `state` (as [`StringSlots::array`]
    /// wrote it).
    fn restore(&mut self, groups: &[u32], state: &[ArrayRef], function: &str) -> Result<()> {
        let column = state
            .first()
            .and_then(|c| c.as_string_opt::<i32>())
            .filter(|c| c.len() == groups.len())
            .ok_or_else(|| bad_state(function))?;
        for (&g, value) in groups.iter().zip(column.iter()) {
            match value {
                Some(value) => self.set(g as usize, value),
                None => self.clear(g as usize),
            }
        }
        Ok(())
    }
}

struct StringExtreme {
    values: StringSlots,
    is_min: bool,
}

impl StringExtreme {
    /// Whether `v` replaces the current extreme `current`.
    fn replaces(&self, v: &str, current: Option<&str>) -> bool {
        match current {
            None => true,
            Some(current) if self.is_min => v < current,
            Some(current) => v > current,
        }
    }
}

impl Accumulator for StringExtreme {
    fn allocated_bytes(&self) -> usize {
        self.values.allocated_bytes()
    }

    fn resize(&mut self, groups: usize) {
        self.values.resize(groups);
    }

    fn update(&mut self, groups: &[u32], values: Option<&ArrayRef>) -> Result<()> {
        let values = values.ok_or_else(|| Error::Internal("MIN/MAX without input".into()))?;
        let values = values.as_string::<i32>();
        for (&g, v) in groups.iter().zip(values.iter()) {
            let Some(v) = v else { continue };
            if self.replaces(v, self.values.get(g as usize)) {
                // Allocates only when the extreme grows past its buffer, not per row.
                self.values.set(g as usize, v);
            }
        }
        Ok(())
    }

    fn merge(&mut self, sources: &[u32], targets: &[u32]) {
        for (&s, &t) in sources.iter().zip(targets) {
            let (s, t) = (s as usize, t as usize);
            if s == t {
                continue;
            }
            if let Some(v) = self.values.get(s)
                && self.replaces(v, self.values.get(t))
            {
                self.values.copy(s, t);
            }
        }
    }

    fn reset(&mut self, groups: &[u32]) {
        for &g in groups {
            self.values.clear(g as usize);
        }
    }

    fn evaluate(&self, groups: &[u32]) -> Result<ArrayRef> {
        Ok(self.values.array(groups))
    }

    fn state(&self, groups: &[u32]) -> Result<Vec<ArrayRef>> {
        Ok(vec![self.values.array(groups)])
    }

    fn restore_state(&mut self, groups: &[u32], state: &[ArrayRef]) -> Result<()> {
        self.values.restore(groups, state, "MIN/MAX")
    }
}

struct BoolExtreme {
    values: Vec<Option<bool>>,
    is_min: bool,
}

impl Accumulator for BoolExtreme {
    fn allocated_bytes(&self) -> usize {
        self.values.capacity()
    }

    fn resize(&mut self, groups: usize) {
        self.values.resize(groups, None);
    }

    fn update(&mut self, groups: &[u32], values: Option<&ArrayRef>) -> Result<()> {
        let values = values.ok_or_else(|| Error::Internal("MIN/MAX without input".into()))?;
        let values: &BooleanArray = values.as_boolean();
        for (&g, v) in groups.iter().zip(values.iter()) {
            let Some(v) = v else { continue };
            let slot = &mut self.values[g as usize];
            *slot = Some(match *slot {
                None => v,
                Some(current) if self.is_min => current && v,
                Some(current) => current || v,
            });
        }
        Ok(())
    }

    fn merge(&mut self, sources: &[u32], targets: &[u32]) {
        for (&s, &t) in sources.iter().zip(targets) {
            let Some(v) = self.values[s as usize] else {
                continue;
            };
            let slot = &mut self.values[t as usize];
            *slot = Some(match *slot {
                None => v,
                Some(current) if self.is_min => current && v,
                Some(current) => current || v,
            });
        }
    }

    fn reset(&mut self, groups: &[u32]) {
        for &g in groups {
            self.values[g as usize] = None;
        }
    }

    fn evaluate(&self, groups: &[u32]) -> Result<ArrayRef> {
        let array: BooleanArray = groups.iter().map(|&g| self.values[g as usize]).collect();
        Ok(Arc::new(array))
    }

    fn state(&self, groups: &[u32]) -> Result<Vec<ArrayRef>> {
        Ok(vec![self.evaluate(groups)?])
    }

    fn restore_state(&mut self, groups: &[u32], state: &[ArrayRef]) -> Result<()> {
        let values = state
            .first()
            .and_then(|c| c.as_boolean_opt())
            .filter(|c| c.len() == groups.len())
            .ok_or_else(|| bad_state("MIN/MAX"))?;
        for (&g, value) in groups.iter().zip(values.iter()) {
            self.values[g as usize] = value;
        }
        Ok(())
    }
}

/// COUNT(DISTINCT col): one set of row-encoded values per group. The values of a batch are
/// row-encoded once; a value's bytes are copied only when it is new to its group.
///
/// The bytes of all the sets are kept as a running total (see [`StringSlots`] for why).
struct CountDistinct {
    converter: RowConverter,
    sets: Vec<HashSet<Box<[u8]>>>,
    /// Sum of [`set_bytes`] over `sets`.
    heap: usize,
}

/// The heap bytes of one COUNT DISTINCT set: its slots and its values' bytes.
fn set_bytes(set: &HashSet<Box<[u8]>>) -> usize {
    set.capacity() * std::mem::size_of::<Box<[u8]>>() + set.iter().map(|v| v.len()).sum::<usize>()
}

/// Adds `value` to `set` if new, and to `heap` the bytes that took.
#[inline]
fn insert_distinct(set: &mut HashSet<Box<[u8]>>, heap: &mut usize, value: &[u8]) {
    if !set.contains(value) {
        let before = set.capacity();
        set.insert(value.into());
        *heap += (set.capacity() - before) * std::mem::size_of::<Box<[u8]>>() + value.len();
    }
}

impl CountDistinct {
    fn try_new(input: &DataType) -> Result<Self> {
        let converter = RowConverter::new(vec![SortField::new(input.clone())])
            .map_err(|e| Error::arrow("COUNT DISTINCT value encoding", e))?;
        Ok(CountDistinct {
            converter,
            sets: Vec::new(),
            heap: 0,
        })
    }
}

impl Accumulator for CountDistinct {
    fn allocated_bytes(&self) -> usize {
        self.heap + self.sets.capacity() * std::mem::size_of::<HashSet<Box<[u8]>>>()
    }

    fn resize(&mut self, groups: usize) {
        if groups < self.sets.len() {
            self.heap -= self.sets[groups..].iter().map(set_bytes).sum::<usize>();
        }
        self.sets.resize_with(groups, HashSet::new);
    }

    fn update(&mut self, groups: &[u32], values: Option<&ArrayRef>) -> Result<()> {
        let values =
            values.ok_or_else(|| Error::Internal("COUNT DISTINCT without input".into()))?;
        let rows = self
            .converter
            .convert_columns(std::slice::from_ref(values))
            .map_err(|e| Error::arrow("COUNT DISTINCT value encoding", e))?;
        let nulls = values.logical_nulls();
        for (i, &g) in groups.iter().enumerate() {
            if nulls.as_ref().is_some_and(|n| n.is_null(i)) {
                continue;
            }
            insert_distinct(
                &mut self.sets[g as usize],
                &mut self.heap,
                rows.row(i).as_ref(),
            );
        }
        Ok(())
    }

    fn merge(&mut self, sources: &[u32], targets: &[u32]) {
        for (&s, &t) in sources.iter().zip(targets) {
            if s == t {
                continue;
            }
            let source = std::mem::take(&mut self.sets[s as usize]);
            let target = &mut self.sets[t as usize];
            for value in &source {
                insert_distinct(target, &mut self.heap, value);
            }
            self.sets[s as usize] = source;
        }
    }

    fn reset(&mut self, groups: &[u32]) {
        for &g in groups {
            // Frees the set: a reset slot may stay unused for a long time.
            let old = std::mem::take(&mut self.sets[g as usize]);
            self.heap -= set_bytes(&old);
        }
    }

    fn evaluate(&self, groups: &[u32]) -> Result<ArrayRef> {
        let values: Int64Array = groups
            .iter()
            .map(|&g| self.sets[g as usize].len() as i64)
            .collect::<Vec<_>>()
            .into();
        Ok(Arc::new(values))
    }

    /// One `List<Binary>` column: the row-encoded distinct values of each group.
    fn state(&self, groups: &[u32]) -> Result<Vec<ArrayRef>> {
        let values: usize = groups.iter().map(|&g| self.sets[g as usize].len()).sum();
        let bytes: usize = groups
            .iter()
            .flat_map(|&g| self.sets[g as usize].iter())
            .map(|v| v.len())
            .sum();
        let mut builder = arrow::array::ListBuilder::new(
            arrow::array::BinaryBuilder::with_capacity(values, bytes),
        )
        .with_field(Arc::new(Field::new("item", DataType::Binary, false)));
        for &g in groups {
            for value in &self.sets[g as usize] {
                builder.values().append_value(value);
            }
            builder.append(true);
        }
        Ok(vec![Arc::new(builder.finish())])
    }

    fn restore_state(&mut self, groups: &[u32], state: &[ArrayRef]) -> Result<()> {
        let lists = state
            .first()
            .and_then(|c| c.as_list_opt::<i32>())
            .filter(|c| c.len() == groups.len())
            .ok_or_else(|| bad_state("COUNT DISTINCT"))?;
        let values = lists
            .values()
            .as_binary_opt::<i32>()
            .ok_or_else(|| bad_state("COUNT DISTINCT"))?;
        let offsets = lists.value_offsets();
        for (i, &g) in groups.iter().enumerate() {
            let (start, end) = (offsets[i] as usize, offsets[i + 1] as usize);
            let set = &mut self.sets[g as usize];
            self.heap -= set_bytes(set);
            set.clear();
            set.reserve(end - start);
            for v in start..end {
                set.insert(values.value(v).into());
            }
            self.heap += set_bytes(set);
        }
        Ok(())
    }
}

/// FIRST_VALUE / LAST_VALUE: the first (last) non-null value in processing order; a merge
/// treats the merged-in group as later than the target.
struct Positional<T: ArrowPrimitiveType> {
    values: Vec<Option<T::Native>>,
    data_type: DataType,
    last: bool,
}

impl<T: ArrowPrimitiveType> Positional<T> {
    fn new(data_type: DataType, last: bool) -> Self {
        Positional {
            values: Vec::new(),
            data_type,
            last,
        }
    }
}

impl<T: ArrowPrimitiveType> Accumulator for Positional<T> {
    fn allocated_bytes(&self) -> usize {
        self.values.capacity() * std::mem::size_of::<Option<T::Native>>()
    }

    fn state(&self, groups: &[u32]) -> Result<Vec<ArrayRef>> {
        Ok(vec![self.evaluate(groups)?])
    }

    fn restore_state(&mut self, groups: &[u32], state: &[ArrayRef]) -> Result<()> {
        restore_primitive_slots::<T>(&mut self.values, groups, state, "FIRST_VALUE/LAST_VALUE")
    }

    fn resize(&mut self, groups: usize) {
        self.values.resize(groups, None);
    }

    fn update(&mut self, groups: &[u32], values: Option<&ArrayRef>) -> Result<()> {
        let values =
            values.ok_or_else(|| Error::Internal("FIRST_VALUE/LAST_VALUE without input".into()))?;
        let values = values.as_primitive::<T>();
        let last = self.last;
        for (i, (&g, &v)) in groups.iter().zip(values.values().iter()).enumerate() {
            if values.is_valid(i) {
                let slot = &mut self.values[g as usize];
                if last || slot.is_none() {
                    *slot = Some(v);
                }
            }
        }
        Ok(())
    }

    fn merge(&mut self, sources: &[u32], targets: &[u32]) {
        for (&s, &t) in sources.iter().zip(targets) {
            if let Some(v) = self.values[s as usize] {
                let slot = &mut self.values[t as usize];
                if self.last || slot.is_none() {
                    *slot = Some(v);
                }
            }
        }
    }

    fn reset(&mut self, groups: &[u32]) {
        for &g in groups {
            self.values[g as usize] = None;
        }
    }

    fn evaluate(&self, groups: &[u32]) -> Result<ArrayRef> {
        let array = gather::<T>(
            groups,
            |g| self.values[g].unwrap_or_default(),
            |g| self.values[g].is_some(),
            &self.data_type,
        );
        Ok(Arc::new(array))
    }
}

/// FIRST_VALUE / LAST_VALUE of strings. A slot's buffer is reused when the value changes.
struct StringPositional {
    values: StringSlots,
    last: bool,
}

impl Accumulator for StringPositional {
    fn allocated_bytes(&self) -> usize {
        self.values.allocated_bytes()
    }

    fn resize(&mut self, groups: usize) {
        self.values.resize(groups);
    }

    fn update(&mut self, groups: &[u32], values: Option<&ArrayRef>) -> Result<()> {
        let values =
            values.ok_or_else(|| Error::Internal("FIRST_VALUE/LAST_VALUE without input".into()))?;
        let values = values.as_string::<i32>();
        for (&g, v) in groups.iter().zip(values.iter()) {
            let Some(v) = v else { continue };
            if self.last || self.values.get(g as usize).is_none() {
                self.values.set(g as usize, v);
            }
        }
        Ok(())
    }

    fn merge(&mut self, sources: &[u32], targets: &[u32]) {
        for (&s, &t) in sources.iter().zip(targets) {
            let (s, t) = (s as usize, t as usize);
            if s == t || self.values.get(s).is_none() {
                continue;
            }
            if self.last || self.values.get(t).is_none() {
                self.values.copy(s, t);
            }
        }
    }

    fn reset(&mut self, groups: &[u32]) {
        for &g in groups {
            self.values.clear(g as usize);
        }
    }

    fn evaluate(&self, groups: &[u32]) -> Result<ArrayRef> {
        Ok(self.values.array(groups))
    }

    fn state(&self, groups: &[u32]) -> Result<Vec<ArrayRef>> {
        Ok(vec![self.values.array(groups)])
    }

    fn restore_state(&mut self, groups: &[u32], state: &[ArrayRef]) -> Result<()> {
        self.values.restore(groups, state, "FIRST_VALUE/LAST_VALUE")
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Adding in lanes gives the sums of one addition per row in order, for group counts
        /// on both sides of the lane limit, batches of any length and wrapping sums.
        #[test]
        fn lanes_add_as_one_loop_does(
            count in prop_oneof![1usize..12, (LANE_GROUPS - 2)..(LANE_GROUPS + 3)],
            rows in proptest::collection::vec((any::<u32>(), any::<i64>()), 0..3000),
            start in proptest::collection::vec(any::<i64>(), LANE_GROUPS + 3),
        ) {
            let groups: Vec<u32> = rows.iter().map(|(g, _)| g % count as u32).collect();
            let values: Vec<i64> = rows.iter().map(|(_, v)| *v).collect();
            let mut expected = start[..count].to_vec();
            for (&g, &v) in groups.iter().zip(&values) {
                expected[g as usize] = expected[g as usize].wrapping_add(v);
            }
            let mut got = start[..count].to_vec();
            let mut scratch = vec![7; 3];
            add_by_group(&mut got, &groups, |i| values[i], i64::wrapping_add, &mut scratch);
            prop_assert_eq!(got, expected);
        }
    }

    /// An operation on the state of up to 8 groups (indices taken modulo the group count).
    #[derive(Debug, Clone)]
    enum Op {
        Update(Vec<(u32, Option<String>)>),
        Merge(Vec<(u32, u32)>),
        Reset(Vec<u32>),
        /// The state of the first groups restored into the second.
        Restore(Vec<(u32, u32)>),
        Resize(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        let group = 0u32..8;
        let value = proptest::option::weighted(0.8, "[a-z]{0,40}");
        prop_oneof![
            4 => proptest::collection::vec((group.clone(), value), 0..20).prop_map(Op::Update),
            1 => proptest::collection::vec((group.clone(), group.clone()), 0..6)
                .prop_map(Op::Merge),
            1 => proptest::collection::vec(group.clone(), 0..4).prop_map(Op::Reset),
            1 => proptest::collection::vec((group.clone(), group), 0..4).prop_map(Op::Restore),
            1 => (0usize..9).prop_map(Op::Resize),
        ]
    }

    fn apply(acc: &mut dyn Accumulator, len: &mut usize, op: &Op) {
        if *len == 0 && !matches!(op, Op::Resize(_)) {
            return;
        }
        let n = (*len).max(1) as u32;
        match op {
            Op::Resize(groups) => {
                acc.resize(*groups);
                *len = *groups;
            }
            Op::Update(rows) => {
                let groups: Vec<u32> = rows.iter().map(|(g, _)| g % n).collect();
                let values: ArrayRef = Arc::new(
                    rows.iter()
                        .map(|(_, v)| v.as_deref())
                        .collect::<StringArray>(),
                );
                acc.update(&groups, Some(&values)).expect("update");
            }
            Op::Merge(pairs) => {
                let (sources, targets): (Vec<u32>, Vec<u32>) =
                    pairs.iter().map(|&(s, t)| (s % n, t % n)).unzip();
                acc.merge(&sources, &targets);
            }
            Op::Reset(groups) => {
                let groups: Vec<u32> = groups.iter().map(|g| g % n).collect();
                acc.reset(&groups);
            }
            Op::Restore(pairs) => {
                let (sources, targets): (Vec<u32>, Vec<u32>) =
                    pairs.iter().map(|&(s, t)| (s % n, t % n)).unzip();
                let state = acc.state(&sources).expect("state");
                acc.restore_state(&targets, &state).expect("restore");
            }
        }
    }

    fn recount_slots(slots: &StringSlots) -> usize {
        slots.values.capacity() * std::mem::size_of::<Option<String>>()
            + slots
                .values
                .iter()
                .flatten()
                .map(String::capacity)
                .sum::<usize>()
    }

    proptest! {
        /// The running totals behind the cheap `allocated_bytes` equal a recount.
        #[test]
        fn running_byte_totals_match_a_recount(ops in proptest::collection::vec(op(), 0..40)) {
            let mut min = StringExtreme { values: StringSlots::default(), is_min: true };
            let mut last = StringPositional { values: StringSlots::default(), last: true };
            let mut distinct = CountDistinct::try_new(&DataType::Utf8).expect("accumulator");
            let (mut a, mut b, mut c) = (0, 0, 0);
            for op in &ops {
                apply(&mut min, &mut a, op);
                apply(&mut last, &mut b, op);
                apply(&mut distinct, &mut c, op);
                prop_assert_eq!(min.allocated_bytes(), recount_slots(&min.values));
                prop_assert_eq!(last.allocated_bytes(), recount_slots(&last.values));
                prop_assert_eq!(
                    distinct.allocated_bytes(),
                    distinct.sets.iter().map(set_bytes).sum::<usize>()
                        + distinct.sets.capacity()
                            * std::mem::size_of::<HashSet<Box<[u8]>>>()
                );
            }
        }
    }

    fn decimals(values: &[Option<i128>], scale: i8) -> ArrayRef {
        Arc::new(
            values
                .iter()
                .copied()
                .collect::<Decimal128Array>()
                .with_precision_and_scale(15, scale)
                .expect("valid decimal type"),
        )
    }

    #[test]
    fn decimal_avg_is_exact_at_flinks_scale() {
        let input = DataType::Decimal128(15, 2);
        let result = AggregateFunction::Avg
            .result_type(Some(&input))
            .expect("AVG of DECIMAL");
        assert_eq!(result, DataType::Decimal128(38, 6));
        let mut avg =
            new_accumulator(AggregateFunction::Avg, Some(&input), &result).expect("an accumulator");
        avg.resize(3);
        // Group 0: 1.00, 2.00, 2.00 → 1.666667 (rounded up); group 1: -0.01, -0.02 →
        // -0.015 exactly; group 2: only NULL.
        let values = decimals(
            &[Some(100), Some(-1), Some(200), None, Some(-2), Some(200)],
            2,
        );
        avg.update(&[0, 1, 0, 2, 1, 0], Some(&values))
            .expect("update");
        let out = avg.evaluate(&[0, 1, 2]).expect("evaluate");
        let out = out.as_primitive::<Decimal128Type>();
        assert_eq!(out.data_type(), &result);
        assert_eq!(out.value(0), 1_666_667);
        assert_eq!(out.value(1), -15_000);
        assert!(out.is_null(2));
        // Ties round away from zero.
        assert_eq!(divide_rounding_half_away(5, 2), 3);
        assert_eq!(divide_rounding_half_away(-5, 2), -3);
        assert_eq!(divide_rounding_half_away(-4, 3), -1);
    }

    #[test]
    fn decimal_avg_keeps_a_larger_input_scale_and_restores() {
        let input = DataType::Decimal128(20, 8);
        let result = AggregateFunction::Avg
            .result_type(Some(&input))
            .expect("AVG of DECIMAL");
        assert_eq!(result, DataType::Decimal128(38, 8));
        let mut avg = DecimalAvg::try_new(8, &result).expect("an accumulator");
        Accumulator::resize(&mut avg, 2);
        Accumulator::update(&mut avg, &[0, 0], Some(&decimals(&[Some(1), Some(2)], 8)))
            .expect("update");
        let state = Accumulator::state(&avg, &[0]).expect("state");
        Accumulator::restore_state(&mut avg, &[1], &state).expect("restore");
        let out = Accumulator::evaluate(&avg, &[1]).expect("evaluate");
        // (1 + 2) / 2 = 1.5 units of 1e-8 → 2 (half away from zero).
        assert_eq!(out.as_primitive::<Decimal128Type>().value(0), 2);
    }
}
