//! The joins decorrelated subqueries become: semi (`EXISTS`, `IN`), anti (`NOT EXISTS`),
//! null-aware anti (`NOT IN`) and single (scalar subqueries). Each emits a left row at most
//! once.
//!
//! Batch mode only: both inputs are buffered until they end; [`Operator::finish`] then
//! builds a hash table over the right rows (key ids from [`JoinKeys`], rows grouped per key
//! id in one offsets/positions pair, no per-key allocation) and probes it with each left
//! batch, emitting the left rows selected by one boolean mask per batch (`filter`), or for a
//! single join, the left columns with the right columns gathered by one `take`.
//!
//! A residual predicate (a non-equality correlation, `l2.l_suppkey <> l1.l_suppkey`) is
//! evaluated on the candidate pairs of a left batch, in chunks of [`EMIT_BATCH_ROWS`] pairs:
//! one `take` per column and one vectorized evaluation per chunk; a left row is matched when
//! one of its pairs passes.
//!
//! NULL keys: a left row with a NULL key has no partner (so an anti join emits it); a
//! null-aware anti join (`NOT IN`) emits no row at all when the right side holds a NULL key,
//! and never a left row with a NULL key unless the right side is empty. The planner runs the
//! null-aware anti join at parallelism 1, so "the right side" is all of it.

use arrow::array::{Array, ArrayRef, BooleanArray, UInt32Array};
use arrow::compute::{concat_batches, filter_record_batch, take};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;

use super::hash::BuildTable;
use super::{EMIT_BATCH_ROWS, JoinKeys};
use crate::element::Watermark;
use crate::expr::PhysicalExpr;
use crate::graph::SubqueryJoinType;
use crate::ids::CheckpointId;
use crate::operator::{Operator, Output};
use crate::state::StateSnapshot;
use crate::{Error, Result};

pub(crate) struct SubqueryJoin {
    keys: JoinKeys,
    join_type: SubqueryJoinType,
    residual: Option<PhysicalExpr>,
    /// The subquery as written, for error messages.
    subquery: String,
    /// Output schema; for the residual, the schema of a (left, right) pair.
    schema: SchemaRef,
    pair_schema: SchemaRef,
    right_schema: SchemaRef,
    /// Input batches per side, held until both inputs end.
    buffered: [Vec<RecordBatch>; 2],
}

/// The right rows, and their hash table.
struct BuildSide {
    batch: RecordBatch,
    table: BuildTable,
}

impl BuildSide {
    /// The right rows with key id `key`.
    fn partners(&self, key: u32) -> &[u32] {
        self.table.partners(key)
    }
}

impl SubqueryJoin {
    pub(super) fn new(
        keys: JoinKeys,
        join_type: SubqueryJoinType,
        residual: Option<PhysicalExpr>,
        subquery: String,
        schemas: [SchemaRef; 3],
    ) -> Self {
        let [schema, pair_schema, right_schema] = schemas;
        SubqueryJoin {
            keys,
            join_type,
            residual,
            subquery,
            schema,
            pair_schema,
            right_schema,
            buffered: [Vec::new(), Vec::new()],
        }
    }

    fn build(&mut self) -> Result<BuildSide> {
        let batches = std::mem::take(&mut self.buffered[1]);
        let batch = concat_batches(&self.right_schema, &batches)
            .map_err(|e| Error::arrow("subquery join build side", e))?;
        drop(batches);
        let table = BuildTable::new(&mut self.keys, 1, &batch)?;
        Ok(BuildSide { batch, table })
    }

    /// Per row of `batch`, whether it has a partner that also meets the residual predicate.
    fn matched(&mut self, build: &BuildSide, batch: &RecordBatch) -> Result<Vec<bool>> {
        let valid = self.keys.lookup(0, batch)?;
        let is_valid = |row: usize| valid.as_ref().is_none_or(|v| v.is_valid(row));
        let Some(residual) = &self.residual else {
            return Ok(self
                .keys
                .ids
                .iter()
                .enumerate()
                .map(|(row, &key)| is_valid(row) && !build.partners(key).is_empty())
                .collect());
        };
        let mut matched = vec![false; batch.num_rows()];
        let (mut mine, mut theirs) = (Vec::new(), Vec::new());
        let mut check = |mine: &mut Vec<u32>, theirs: &mut Vec<u32>| -> Result<()> {
            let pairs = self.pairs(batch, &build.batch, mine, theirs)?;
            let mask = residual.evaluate_predicate(&pairs)?;
            for (i, &row) in mine.iter().enumerate() {
                if mask.value(i) && mask.is_valid(i) {
                    matched[row as usize] = true;
                }
            }
            mine.clear();
            theirs.clear();
            Ok(())
        };
        for (row, &key) in self.keys.ids.iter().enumerate() {
            if !is_valid(row) {
                continue;
            }
            for &partner in build.partners(key) {
                mine.push(row as u32);
                theirs.push(partner);
            }
            if mine.len() >= EMIT_BATCH_ROWS {
                check(&mut mine, &mut theirs)?;
            }
        }
        if !mine.is_empty() {
            check(&mut mine, &mut theirs)?;
        }
        Ok(matched)
    }

    /// The (left, right) pairs `mine[i]`, `theirs[i]` as one batch of the pair schema.
    fn pairs(
        &self,
        left: &RecordBatch,
        right: &RecordBatch,
        mine: &[u32],
        theirs: &[u32],
    ) -> Result<RecordBatch> {
        let mine = UInt32Array::from(mine.to_vec());
        let theirs = UInt32Array::from(theirs.to_vec());
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.pair_schema.fields().len());
        for (batch, indices) in [(left, &mine), (right, &theirs)] {
            for column in batch.columns() {
                columns.push(
                    take(column.as_ref(), indices, None)
                        .map_err(|e| Error::arrow("subquery join pairs", e))?,
                );
            }
        }
        RecordBatch::try_new(self.pair_schema.clone(), columns)
            .map_err(|e| Error::arrow("subquery join pairs", e))
    }

    /// Left rows with the columns of their one partner (or NULLs), as a scalar subquery.
    fn single(&mut self, build: &BuildSide, batch: &RecordBatch) -> Result<RecordBatch> {
        let valid = self.keys.lookup(0, batch)?;
        let mut partner: Vec<Option<u32>> = Vec::with_capacity(batch.num_rows());
        for (row, &key) in self.keys.ids.iter().enumerate() {
            if valid.as_ref().is_some_and(|v| v.is_null(row)) {
                partner.push(None);
                continue;
            }
            match build.partners(key) {
                [] => partner.push(None),
                [one] => partner.push(Some(*one)),
                [_, _, ..] => {
                    return Err(Error::data(
                        "scalar subquery",
                        format!(
                            "the subquery returned more than one row for a row of the outer \
                             query: {}",
                            self.subquery
                        ),
                    ));
                }
            }
        }
        let indices = UInt32Array::from(partner);
        let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
        for column in build.batch.columns() {
            columns.push(
                take(column.as_ref(), &indices, None)
                    .map_err(|e| Error::arrow("subquery join output", e))?,
            );
        }
        RecordBatch::try_new(self.schema.clone(), columns)
            .map_err(|e| Error::arrow("subquery join output", e))
    }
}

impl Operator for SubqueryJoin {
    fn process_batch(&mut self, input: usize, batch: RecordBatch, _out: &mut Output) -> Result<()> {
        self.buffered[input.min(1)].push(batch);
        Ok(())
    }

    /// Every row leaves at the end: only the final watermark goes on (after them).
    fn process_watermark(&mut self, watermark: Watermark, out: &mut Output) -> Result<()> {
        if watermark == Watermark::MAX {
            out.push_watermark(watermark);
        }
        Ok(())
    }

    fn snapshot(&mut self, checkpoint: CheckpointId) -> Result<StateSnapshot> {
        if self.buffered.iter().all(Vec::is_empty) {
            return Ok(StateSnapshot::default());
        }
        Err(Error::plan(
            "subquery join",
            format!(
                "checkpoint {checkpoint:?} reached a subquery join holding rows; subquery \
                 joins run in batch mode, without checkpoints ({})",
                self.subquery
            ),
        ))
    }

    fn finish(&mut self, out: &mut Output) -> Result<()> {
        let build = self.build()?;
        let right_empty = build.batch.num_rows() == 0;
        for batch in std::mem::take(&mut self.buffered[0]) {
            let keep: Vec<bool> = match self.join_type {
                SubqueryJoinType::Single => {
                    let output = self.single(&build, &batch)?;
                    out.push_batch(output);
                    continue;
                }
                SubqueryJoinType::Semi => self.matched(&build, &batch)?,
                SubqueryJoinType::Anti => {
                    let mut matched = self.matched(&build, &batch)?;
                    matched.iter_mut().for_each(|m| *m = !*m);
                    matched
                }
                SubqueryJoinType::NullAwareAnti if right_empty => vec![true; batch.num_rows()],
                SubqueryJoinType::NullAwareAnti if build.table.has_null_key => {
                    vec![false; batch.num_rows()]
                }
                SubqueryJoinType::NullAwareAnti => {
                    // `matched` is false for a NULL key too, which NOT IN does not emit.
                    let mut matched = self.matched(&build, &batch)?;
                    let key = batch.column(self.keys.columns[0][0]);
                    let nulls = key.logical_nulls();
                    for (row, m) in matched.iter_mut().enumerate() {
                        *m = !*m && nulls.as_ref().is_none_or(|n| n.is_valid(row));
                    }
                    matched
                }
            };
            let output = filter_record_batch(&batch, &BooleanArray::from(keep))
                .map_err(|e| Error::arrow("subquery join output", e))?;
            if output.num_rows() > 0 {
                out.push_batch(output);
            }
        }
        Ok(())
    }
}
