//! The joins decorrelated subqueries become: semi (`EXISTS`, `IN`), anti (`NOT EXISTS`),
//! null-aware anti (`NOT IN`) and single (scalar subqueries). Each emits a left row at most
//! once.
//!
//! Batch mode only. The side whose input ends first is built into a hash table (key ids from
//! [`JoinKeys`], rows grouped per key id in one offsets/positions pair, no per-key
//! allocation), and the other side streams through it:
//! - **The right (subquery) input ends first:** each left batch probes the right rows and
//!   the left rows it selects leave at once, by one boolean mask per batch (`filter`), or for
//!   a single join, with the right columns gathered by one `take`. Left rows that arrived
//!   earlier are held, and past the operator's memory budget they go to a spill file; they
//!   are probed at the end, a batch per [`Operator::finish_more`] step.
//! - **The left input ends first** (semi and anti joins, when its rows are held in memory):
//!   the left rows are built, and each right batch marks the left rows it matches; the right
//!   rows are never held. At the end the left rows leave as their marks select them. A
//!   `WHERE EXISTS` over a large table (TPC-H Q4, Q21, Q22) thus holds the outer query's few
//!   rows instead of the subquery's many. Single joins always build the right side: a left
//!   row must see all its partners to fail on a second one.
//!
//! A residual predicate (a non-equality correlation, `l2.l_suppkey <> l1.l_suppkey`) is
//! evaluated on candidate pairs, in chunks of [`EMIT_BATCH_ROWS`] pairs: one `take` per
//! column and one vectorized evaluation per chunk; a left row is matched when one of its
//! pairs passes (when marking, pairs of left rows already marked are skipped).
//!
//! NULL keys: a left row with a NULL key has no partner (so an anti join emits it); a
//! null-aware anti join (`NOT IN`) emits no row at all when the right side holds a NULL key,
//! and never a left row with a NULL key unless the right side is empty. The planner runs the
//! null-aware anti join at parallelism 1, so "the right side" is all of it.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, UInt32Array};
use arrow::buffer::NullBuffer;
use arrow::compute::{concat_batches, filter_record_batch, take};
use arrow::datatypes::{Schema, SchemaRef};
use arrow::record_batch::RecordBatch;

use super::hash::BuildTable;
use super::{EMIT_BATCH_ROWS, JoinKeys};
use crate::element::Watermark;
use crate::expr::PhysicalExpr;
use crate::graph::SubqueryJoinType;
use crate::ids::CheckpointId;
use crate::operator::{Operator, OperatorContext, OperatorMetrics, Output};
use crate::spill::{MemoryBudget, SpillWriter, batch_memory};
use crate::state::StateSnapshot;
use crate::{Error, Result};

/// Left batches still to probe at the end: held ones, then spilled ones.
type Pending = Box<dyn Iterator<Item = Result<RecordBatch>> + Send>;

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
    /// Right batches, held until the right input ends.
    right: Vec<RecordBatch>,
    /// Left batches that came while the right input went on, within the budget.
    left: Vec<RecordBatch>,
    /// Left batches past the budget, while the right input goes on.
    left_spill: Option<SpillWriter>,
    /// The right rows' hash table, once the right input has ended first.
    build: Option<BuildSide>,
    /// The left rows' hash table and marks, once the left input has ended first.
    marking: Option<MarkedLeft>,
    /// After the end: the left batches still to probe.
    pending: Option<Pending>,
    budget: MemoryBudget,
    /// Bytes of `left` and `right`.
    held_bytes: usize,
    spilled_bytes: u64,
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

/// The left rows built when the left input ended first, with what the right rows streamed
/// past them so far have shown.
struct MarkedLeft {
    batch: RecordBatch,
    table: BuildTable,
    /// Which left rows have a key (`None`: all of them).
    valid: Option<NullBuffer>,
    /// Per left row: some right row matched it (and passed the residual).
    marked: Vec<bool>,
    /// What the right rows streamed past so far have shown.
    right: RightSeen,
}

/// What a null-aware anti join (`NOT IN`) needs to know of the whole right side: whether it
/// has rows (over none it keeps every row) and whether one has a NULL key (then it keeps none).
#[derive(Clone, Copy, Default)]
struct RightSeen {
    rows: bool,
    null_key: bool,
}

/// The left rows a semi, anti or null-aware anti join keeps, of `rows` rows whose partners
/// `matched` finds (not asked where the right side alone decides); `left_valid` tells which
/// left rows have a key.
fn kept_rows(
    join_type: SubqueryJoinType,
    rows: usize,
    right: RightSeen,
    left_valid: Option<&NullBuffer>,
    matched: impl FnOnce() -> Result<Vec<bool>>,
) -> Result<Vec<bool>> {
    Ok(match join_type {
        SubqueryJoinType::Semi => matched()?,
        SubqueryJoinType::Anti => {
            let mut matched = matched()?;
            matched.iter_mut().for_each(|m| *m = !*m);
            matched
        }
        SubqueryJoinType::NullAwareAnti if !right.rows => vec![true; rows],
        SubqueryJoinType::NullAwareAnti if right.null_key => vec![false; rows],
        SubqueryJoinType::NullAwareAnti => {
            // `matched` is false for a NULL key too, which NOT IN does not emit.
            let mut matched = matched()?;
            for (row, m) in matched.iter_mut().enumerate() {
                *m = !*m && left_valid.is_none_or(|v| v.is_valid(row));
            }
            matched
        }
        SubqueryJoinType::Single => {
            return Err(Error::Internal(
                "a single subquery join selects left rows by their partner, not by a mask".into(),
            ));
        }
    })
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
            right: Vec::new(),
            left: Vec::new(),
            left_spill: None,
            build: None,
            marking: None,
            pending: None,
            budget: MemoryBudget::unlimited(),
            held_bytes: 0,
            spilled_bytes: 0,
        }
    }

    /// Builds the hash table over the right rows (once).
    fn build(&mut self) -> Result<()> {
        if self.build.is_some() {
            return Ok(());
        }
        let batches = std::mem::take(&mut self.right);
        let batch = concat_batches(&self.right_schema, &batches)
            .map_err(|e| Error::arrow("subquery join build side", e))?;
        drop(batches);
        self.held_bytes = self.left.iter().map(batch_memory).sum::<usize>() + batch_memory(&batch);
        let table = BuildTable::new(&mut self.keys, 1, &batch)?;
        self.build = Some(BuildSide { batch, table });
        Ok(())
    }

    /// The left input ended first, with its rows in memory: builds them, and lets the right
    /// rows held so far mark them.
    fn start_marking(&mut self) -> Result<()> {
        let left = std::mem::take(&mut self.left);
        let batch = concat_batches(&self.left_schema(), &left)
            .map_err(|e| Error::arrow("subquery join build side", e))?;
        drop(left);
        let table = BuildTable::new(&mut self.keys, 0, &batch)?;
        let valid = JoinKeys::valid(&self.keys.key_columns(0, &batch));
        self.held_bytes = batch_memory(&batch)
            + batch.num_rows() * (2 * std::mem::size_of::<u32>() + 1)
            + self.right.iter().map(batch_memory).sum::<usize>();
        self.marking = Some(MarkedLeft {
            marked: vec![false; batch.num_rows()],
            batch,
            table,
            valid,
            right: RightSeen::default(),
        });
        for right in std::mem::take(&mut self.right) {
            self.held_bytes -= batch_memory(&right);
            self.mark(&right)?;
        }
        Ok(())
    }

    /// The left schema (the output's leading columns).
    fn left_schema(&self) -> SchemaRef {
        let left_columns = self.pair_schema.fields().len() - self.right_schema.fields().len();
        Arc::new(Schema::new(
            self.pair_schema.fields()[..left_columns].to_vec(),
        ))
    }

    /// Marks the built left rows that the rows of a right batch match.
    fn mark(&mut self, right: &RecordBatch) -> Result<()> {
        let Some(mut marking) = self.marking.take() else {
            return Err(Error::Internal(
                "subquery join marked before its left side was built".into(),
            ));
        };
        let result = self.mark_built(&mut marking, right);
        self.marking = Some(marking);
        result
    }

    fn mark_built(&mut self, marking: &mut MarkedLeft, right: &RecordBatch) -> Result<()> {
        if right.num_rows() == 0 {
            return Ok(());
        }
        marking.right.rows = true;
        let valid = self.keys.lookup(1, right)?;
        if valid.as_ref().is_some_and(|v| v.null_count() > 0) {
            marking.right.null_key = true;
        }
        let is_valid = |row: usize| valid.as_ref().is_none_or(|v| v.is_valid(row));
        let Some(residual) = &self.residual else {
            for (row, &key) in self.keys.ids.iter().enumerate() {
                if is_valid(row) {
                    for &partner in marking.table.partners(key) {
                        marking.marked[partner as usize] = true;
                    }
                }
            }
            return Ok(());
        };
        let (mut mine, mut theirs) = (Vec::new(), Vec::new());
        let check = |marking: &mut MarkedLeft, mine: &mut Vec<u32>, theirs: &mut Vec<u32>| {
            let MarkedLeft { batch, marked, .. } = marking;
            self.mark_passing(residual, [&*batch, right], mine, theirs, marked)
        };
        for (row, &key) in self.keys.ids.iter().enumerate() {
            if !is_valid(row) {
                continue;
            }
            for &partner in marking.table.partners(key) {
                if !marking.marked[partner as usize] {
                    mine.push(partner);
                    theirs.push(row as u32);
                }
            }
            if mine.len() >= EMIT_BATCH_ROWS {
                check(marking, &mut mine, &mut theirs)?;
            }
        }
        if !mine.is_empty() {
            check(marking, &mut mine, &mut theirs)?;
        }
        Ok(())
    }

    /// After both inputs ended: the built left rows that their marks select.
    fn emit_marked(&self, marking: MarkedLeft, out: &mut Output) -> Result<()> {
        let MarkedLeft {
            batch,
            valid,
            marked,
            right,
            ..
        } = marking;
        let keep = kept_rows(
            self.join_type,
            batch.num_rows(),
            right,
            valid.as_ref(),
            || Ok(marked),
        )?;
        let selected = filter_record_batch(&batch, &BooleanArray::from(keep))
            .map_err(|e| Error::arrow("subquery join output", e))?;
        for slice in crate::operator::slices(selected, EMIT_BATCH_ROWS) {
            out.push_batch(slice);
        }
        Ok(())
    }

    /// Holds a left batch that came before the right input ended: in memory within the
    /// budget, past it in the spill file.
    fn hold_left(&mut self, batch: RecordBatch) -> Result<()> {
        if let Some(writer) = &mut self.left_spill {
            return writer.write(&batch);
        }
        self.held_bytes += batch_memory(&batch);
        self.left.push(batch);
        self.spill_left_if_over_budget()
    }

    /// Past the budget, moves the held left rows to a spill file, where later ones follow.
    fn spill_left_if_over_budget(&mut self) -> Result<()> {
        if self.left_spill.is_some()
            || self.left.is_empty()
            || !self.budget.exceeded_by(self.held_bytes)
        {
            return Ok(());
        }
        let mut writer = self
            .budget
            .spill_writer("subquery-join-left", &self.left[0].schema())?;
        for batch in std::mem::take(&mut self.left) {
            self.held_bytes -= batch_memory(&batch);
            writer.write(&batch)?;
        }
        self.left_spill = Some(writer);
        Ok(())
    }

    /// Probes one left batch against the built right rows and emits what it selects.
    fn probe(&mut self, batch: &RecordBatch, out: &mut Output) -> Result<()> {
        let Some(build) = self.build.take() else {
            return Err(Error::Internal(
                "subquery join probed before its right side was built".into(),
            ));
        };
        let result = self.probe_built(&build, batch);
        self.build = Some(build);
        if let Some(output) = result?
            && output.num_rows() > 0
        {
            out.push_batch(output);
        }
        Ok(())
    }

    fn probe_built(
        &mut self,
        build: &BuildSide,
        batch: &RecordBatch,
    ) -> Result<Option<RecordBatch>> {
        if self.join_type == SubqueryJoinType::Single {
            return self.single(build, batch).map(Some);
        }
        let right = RightSeen {
            rows: build.batch.num_rows() > 0,
            null_key: build.table.has_null_key,
        };
        let left_valid = batch.column(self.keys.columns[0][0]).logical_nulls();
        let keep = kept_rows(
            self.join_type,
            batch.num_rows(),
            right,
            left_valid.as_ref(),
            || self.matched(build, batch),
        )?;
        filter_record_batch(batch, &BooleanArray::from(keep))
            .map(Some)
            .map_err(|e| Error::arrow("subquery join output", e))
    }

    /// The held and spilled left batches, to probe at the end.
    fn take_pending(&mut self) -> Result<Pending> {
        let held = std::mem::take(&mut self.left).into_iter().map(Ok);
        let Some(writer) = self.left_spill.take() else {
            return Ok(Box::new(held));
        };
        let file = writer.finish()?;
        self.spilled_bytes += file.bytes();
        let reader = file.read()?;
        // The reader holds the file open; unlinking it now frees the disk once read.
        drop(file);
        Ok(Box::new(held.chain(reader)))
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
        let mut check = |mine: &mut Vec<u32>, theirs: &mut Vec<u32>| {
            self.mark_passing(residual, [batch, &build.batch], mine, theirs, &mut matched)
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

    /// Evaluates the residual on the pairs (left row `mine[i]`, right row `theirs[i]`) of
    /// `batches` and marks the left rows of the pairs that pass in `marks`; empties the pairs.
    fn mark_passing(
        &self,
        residual: &PhysicalExpr,
        [left, right]: [&RecordBatch; 2],
        mine: &mut Vec<u32>,
        theirs: &mut Vec<u32>,
        marks: &mut [bool],
    ) -> Result<()> {
        let pairs = self.pairs(left, right, mine, theirs)?;
        let mask = residual.evaluate_predicate(&pairs)?;
        for (i, &row) in mine.iter().enumerate() {
            if mask.value(i) && mask.is_valid(i) {
                marks[row as usize] = true;
            }
        }
        mine.clear();
        theirs.clear();
        Ok(())
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
    fn open(&mut self, ctx: &OperatorContext) -> Result<()> {
        self.budget = ctx.memory.clone();
        Ok(())
    }

    fn process_batch(&mut self, input: usize, batch: RecordBatch, out: &mut Output) -> Result<()> {
        let ended = if input == 0 {
            self.marking.is_some()
        } else {
            self.build.is_some()
        };
        if ended {
            return Err(Error::Internal(format!(
                "subquery join: a row arrived on input {input} after it ended"
            )));
        }
        if input == 0 {
            if self.build.is_some() {
                return self.probe(&batch, out);
            }
            return self.hold_left(batch);
        }
        if self.marking.is_some() {
            return self.mark(&batch);
        }
        self.held_bytes += batch_memory(&batch);
        self.right.push(batch);
        self.spill_left_if_over_budget()
    }

    /// The first input to end is built now, and the other one's rows that come from now on
    /// stream through it: left rows are probed at once, right rows mark the left rows.
    fn end_input(&mut self, input: usize, _out: &mut Output) -> Result<()> {
        match input {
            1 if self.marking.is_none() => self.build(),
            0 if self.build.is_none() && self.left_spill.is_none() => match self.join_type {
                SubqueryJoinType::Single => Ok(()),
                SubqueryJoinType::Semi
                | SubqueryJoinType::Anti
                | SubqueryJoinType::NullAwareAnti => self.start_marking(),
            },
            _ => Ok(()),
        }
    }

    /// Every row leaves at the end: only the final watermark goes on (after them).
    fn process_watermark(&mut self, watermark: Watermark, out: &mut Output) -> Result<()> {
        if watermark == Watermark::MAX {
            out.push_watermark(watermark);
        }
        Ok(())
    }

    fn snapshot(&mut self, checkpoint: CheckpointId) -> Result<StateSnapshot> {
        if self.left.is_empty()
            && self.right.is_empty()
            && self.left_spill.is_none()
            && self.build.is_none()
            && self.marking.is_none()
        {
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
        if let Some(marking) = self.marking.take() {
            self.held_bytes = 0;
            return self.emit_marked(marking, out);
        }
        self.build()?;
        self.pending = Some(self.take_pending()?);
        Ok(())
    }

    /// Probes one held or spilled left batch per step.
    fn finish_more(&mut self, out: &mut Output) -> Result<bool> {
        let Some(pending) = &mut self.pending else {
            return Ok(false);
        };
        match pending.next() {
            Some(batch) => {
                let batch = batch?;
                self.probe(&batch, out)?;
                Ok(true)
            }
            None => {
                self.pending = None;
                self.build = None;
                self.held_bytes = 0;
                Ok(false)
            }
        }
    }

    fn report_metrics(&self, metrics: &mut OperatorMetrics) {
        metrics.spilled_bytes = self.spilled_bytes;
        metrics.state_bytes = self.held_bytes as u64;
    }
}
