//! Keyed aggregation (GROUP BY): a hash table from row-encoded keys to dense group indices,
//! and one vectorized accumulator per aggregate that updates whole columns at a time.
//!
//! Per batch: the key columns are row-encoded once (`arrow-row`), each row is looked up in the
//! table (new groups append their key bytes to one contiguous buffer: no allocation per row or
//! per group), which yields a `group index` per row; then every accumulator runs one typed loop
//! over `(group index, value)`. One dynamic call per accumulator per batch, none per row.
//!
//! Snapshots hold one `groups` table: `key_group: UInt32`, `key: Binary` (the row-encoded
//! key) and each accumulator's state columns (`acc<i>_<j>`), so a restore at another
//! parallelism keeps the groups of the key groups it owns. Every built-in aggregate function
//! snapshots its state (COUNT DISTINCT as a list of its row-encoded values); over an updating
//! input the table holds the live groups with their retracting state (see [`retract`]).
//!
//! With incremental checkpoints the operator marks the groups each batch touches (one bit per
//! group) and a snapshot holds only the groups of key-group slices changed since the last
//! completed checkpoint ([`ChangeTracker`]); each group's key group is computed once, at the
//! first snapshot after the group appeared.
//!
//! Over an updating input (a `_row_kind` column) the operator retracts: see [`retract`].
//!
//! Emission follows [`EmitMode`]: `Final` emits one row per group at end of input; `Changelog`
//! emits, after each batch, `+I` for groups seen for the first time and `-U`/`+U` pairs for
//! groups whose result changed, in a leading `_row_kind` column.
//!
//! # Spilling
//!
//! A final aggregation over an insert-only input (the batch case) keeps its groups within its
//! memory budget ([`OperatorContext::memory`], a share of the managed memory) by hybrid hash
//! aggregation:
//!
//! 1. After every batch the operator compares the bytes its groups hold (key bytes, hash
//!    table and accumulator states, each kept as a running total so the check costs no pass
//!    over the groups) with the budget. Over it, the groups are *frozen*: every later batch is
//!    looked up without inserting. Rows of existing groups are aggregated as before; rows of
//!    new keys are written, with only the key columns and the aggregates' inputs, to one of 16
//!    partition files (Arrow IPC, [`crate::spill`]) chosen by the key's hash mixed with a seed
//!    of the level. A key with a group never reaches a file, and all rows of a key without one
//!    reach the same file in input order: every group is emitted exactly once, and
//!    FIRST_VALUE / LAST_VALUE see the rows in input order.
//! 2. At end of input the operator emits its groups and frees them. Then each partition file
//!    is aggregated in turn by a fresh pass under the same budget (its small batches
//!    coalesced to 8192 rows), which emits its groups; the file is deleted once read. A pass
//!    over the budget freezes and partitions its new keys again, with the next level's seed.
//!    At level 4 (16⁴ partitions deep) a pass no longer freezes: it finishes in memory and
//!    warns, since its keys do not spread (a budget too small for a few groups, or groups
//!    whose own states outgrow it).
//!
//! Every row is written at most once per level and no accumulator merges partial states, so
//! every aggregate function spills, COUNT DISTINCT included. The keys seen first never leave
//! memory.
//!
//! The budget does not bound: one batch's new groups (they enter before the check); the
//! growth of a frozen group's own state (COUNT DISTINCT sets, MIN/MAX strings); the write
//! buffers of the 16 open files; and the results, which leave through [`Output`] in one piece
//! at end of input. `spilled_bytes` counts the sizes of finished files and, for files still
//! being written, the Arrow memory size of the rows written to them.
//!
//! Changelog emission and retracting aggregations are streaming and never spill. A snapshot
//! holds the groups in memory as above until rows have been spilled; after that it fails
//! with [`Error::Unsupported`] naming the operator, as it would have to hold the spilled rows.

mod accumulators;
mod bitset;
mod key_filter;
mod retract;
mod spill_partitions;
#[cfg(test)]
mod spill_tests;
mod table;
mod touched;
mod word_table;

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BinaryArray, BooleanArray, Int8Array, UInt32Array};
use arrow::buffer::BooleanBuffer;
use arrow::compute::FilterBuilder;
use arrow::datatypes::*;
use arrow::record_batch::RecordBatch;
use arrow::row::{RowConverter, SortField};

use super::{Operator, OperatorContext, Output};
use crate::element::{RowKind, Watermark};
use crate::expr::ScalarValue;
use crate::graph::{
    AggregateCall, AggregatePhase, EmitMode, KeyedAggregateSpec, partial_state_column,
};
use crate::ids::CheckpointId;
use crate::runtime::OperatorMetrics;
use crate::state::{
    ChangeTracker, KeyGroupOwnership, KeyGroupRange, SnapshotTable, StateSnapshot, TouchedIds,
    hash_columns, key_group_of_hash,
};
use crate::{Error, Result};
use spill_partitions::{SpillLayout, Spilling};
use table::NO_GROUP;

use accumulators::new_accumulator;
pub(crate) use accumulators::{Accumulator, accumulators_for};
pub(crate) use table::GroupTable;

/// Name of the aggregate's snapshot table.
const GROUPS_TABLE: &str = "groups";

/// Rows per emitted batch of final results.
const EMIT_BATCH_ROWS: usize = 8192;

/// Groups a partial aggregation holds before it emits them and starts over: enough to fold
/// the repeats of a key that recurs nearby, few enough for its table to stay in the cache.
const PARTIAL_MAX_GROUPS: usize = 1 << 16;

/// The types of the partial state columns of `call` over a column of type `input` (`None`
/// for `COUNT(*)`): those of its accumulator's snapshot state.
pub(crate) fn partial_state_types(
    call: &AggregateCall,
    input: Option<&DataType>,
) -> Result<Vec<DataType>> {
    let result = call.function.result_type(input)?;
    let accumulator = new_accumulator(call.function, input, &result)?;
    Ok(accumulator
        .state(&[])?
        .iter()
        .map(|c| c.data_type().clone())
        .collect())
}

/// Folds partial states into `groups`: row `i` of the `state` columns into group `groups[i]`
/// (of `group_count` groups). The states are restored into scratch groups past the end, merged,
/// and the scratch groups dropped again.
fn merge_states(
    accumulator: &mut dyn Accumulator,
    groups: &[u32],
    group_count: usize,
    state: &[ArrayRef],
    scratch: &mut Vec<u32>,
) -> Result<()> {
    scratch.clear();
    scratch.extend(group_count as u32..(group_count + groups.len()) as u32);
    accumulator.resize(group_count + groups.len());
    accumulator.restore_state(scratch, state)?;
    accumulator.merge(scratch, groups);
    accumulator.reset(scratch);
    accumulator.resize(group_count);
    Ok(())
}

pub struct KeyedAggregate {
    key_indices: Vec<usize>,
    converter: RowConverter,
    groups: GroupTable,
    accumulators: Vec<Box<dyn Accumulator>>,
    /// Input column of each accumulator (None for COUNT(*)); none in a final phase.
    inputs: Vec<Option<usize>>,
    phase: AggregatePhase,
    /// In a final phase, each accumulator's partial state columns.
    state_inputs: Vec<Vec<usize>>,
    /// Scratch group indices for merging partial states.
    scratch: Vec<u32>,
    /// A partial phase emits its groups and starts over when it holds this many.
    partial_max_groups: usize,
    emit: EmitMode,
    output_schema: SchemaRef,
    // Scratch buffers reused across batches.
    group_ids: Vec<u32>,
    /// For changelog emission: the groups the current batch touches.
    touched: touched::TouchedGroups,
    /// The owned key groups and the max parallelism, from `open`.
    key_groups: Option<(KeyGroupRange, u32)>,
    /// The key columns (one row each) of the group that exists without input, for an
    /// aggregation without GROUP BY (see [`KeyedAggregateSpec::default_group`]).
    default_group: Option<Vec<ArrayRef>>,
    /// Over an updating input (a `_row_kind` column): the retracting accumulators.
    retracting: Option<retract::Retracting>,
    /// The key group of each group, filled in by snapshots for groups added since the last.
    group_key_groups: Vec<u32>,
    /// Incremental checkpoints: the slices changed since the last completed checkpoint, and
    /// one bit per group touched since the last snapshot.
    changes: Option<ChangeTracker>,
    dirty: TouchedIds,
    /// For a final, insert-only aggregation: what its rows keep when spilled.
    spill_layout: Option<Arc<SpillLayout>>,
    /// Set by `open` for a final, insert-only aggregation with a limited memory budget.
    spilling: Option<Spilling>,
    /// At the end of a frozen aggregation: the partition files still to aggregate.
    partitions: std::collections::VecDeque<crate::spill::SpillFile>,
}

impl KeyedAggregate {
    pub fn try_new(
        spec: &KeyedAggregateSpec,
        input: &Schema,
        output_schema: SchemaRef,
    ) -> Result<Self> {
        let key_indices = spec
            .keys
            .iter()
            .map(|k| {
                input
                    .index_of(k)
                    .map_err(|_| Error::expr(format!("unknown key column '{k}'")))
            })
            .collect::<Result<Vec<_>>>()?;
        let sort_fields = key_indices
            .iter()
            .map(|&i| SortField::new(input.field(i).data_type().clone()))
            .collect();
        let converter =
            RowConverter::new(sort_fields).map_err(|e| Error::arrow("group key encoding", e))?;
        let retracting = retract::Retracting::for_input(&spec.aggregates, input)?;
        let mut state_inputs = Vec::new();
        let (accumulators, inputs) = if let AggregatePhase::Final { input_types } = &spec.phase {
            if retracting.is_some() || input_types.len() != spec.aggregates.len() {
                return Err(Error::plan(
                    "KeyedAggregate",
                    "a final aggregation needs the insert-only rows of its partial phase",
                ));
            }
            let mut accumulators = Vec::with_capacity(input_types.len());
            for (call, input_type) in spec.aggregates.iter().zip(input_types) {
                let result = call.function.result_type(input_type.as_ref())?;
                let accumulator = new_accumulator(call.function, input_type.as_ref(), &result)?;
                let columns = (0..accumulator.state(&[])?.len())
                    .map(|j| {
                        let name = partial_state_column(&call.output, j);
                        input.index_of(&name).map_err(|_| {
                            Error::expr(format!(
                                "final aggregation: no partial state column '{name}'"
                            ))
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                accumulators.push(accumulator);
                state_inputs.push(columns);
            }
            (accumulators, vec![None; spec.aggregates.len()])
        } else if retracting.is_some() {
            // The insert-only accumulators stay empty; only the input columns are used.
            let inputs = spec
                .aggregates
                .iter()
                .map(|call| {
                    call.input
                        .as_ref()
                        .and_then(|name| input.index_of(name).ok())
                })
                .collect::<Vec<_>>();
            (Vec::new(), inputs)
        } else {
            accumulators_for(&spec.aggregates, input)?
        };
        let key_types: Vec<&DataType> = key_indices
            .iter()
            .map(|&i| input.field(i).data_type())
            .collect();
        let groups = GroupTable::for_key_types(&key_types);
        let default_group = match &spec.default_group {
            Some(values) => Some(default_group_keys(values, &key_types)?),
            None => None,
        };
        let spill_layout = if spec.emit == EmitMode::Final
            && retracting.is_none()
            && spec.phase != AggregatePhase::Partial
        {
            // A final phase keeps its partial state columns.
            let kept: Vec<Option<usize>> = inputs
                .iter()
                .copied()
                .chain(state_inputs.iter().flatten().map(|&i| Some(i)))
                .collect();
            Some(Arc::new(SpillLayout::new(
                spec,
                input,
                &key_indices,
                &kept,
            )?))
        } else {
            None
        };
        Ok(KeyedAggregate {
            key_indices,
            converter,
            groups,
            accumulators,
            inputs,
            phase: spec.phase.clone(),
            state_inputs,
            scratch: Vec::new(),
            partial_max_groups: PARTIAL_MAX_GROUPS,
            emit: spec.emit,
            output_schema,
            group_ids: Vec::new(),
            touched: touched::TouchedGroups::default(),
            key_groups: None,
            default_group,
            retracting,
            group_key_groups: Vec::new(),
            changes: None,
            dirty: TouchedIds::default(),
            spill_layout,
            spilling: None,
            partitions: std::collections::VecDeque::new(),
        })
    }

    /// Number of distinct groups so far (held in memory).
    pub fn group_count(&self) -> usize {
        self.groups.len()
    }

    /// Bytes the groups hold: keys, hash table and accumulator states. Cheap (no pass over
    /// the groups): it is checked after every batch against the memory budget.
    fn memory_bytes(&self) -> usize {
        self.groups.allocated_bytes()
            + self
                .accumulators
                .iter()
                .map(|a| a.allocated_bytes())
                .sum::<usize>()
            + self.group_ids.capacity() * std::mem::size_of::<u32>()
    }

    /// Freezes the groups if they hold more than the memory budget.
    fn check_memory(&mut self) {
        let bytes = self.memory_bytes();
        if let Some(spilling) = &mut self.spilling {
            spilling.check(bytes, self.groups.len());
        }
    }

    /// A batch of a frozen aggregation: rows of existing groups are aggregated, the others
    /// spilled.
    fn process_frozen(&mut self, batch: &RecordBatch) -> Result<()> {
        let keys: Vec<ArrayRef> = self
            .key_indices
            .iter()
            .map(|&i| batch.column(i).clone())
            .collect();
        self.groups
            .lookup_columns(&self.converter, &keys, &mut self.group_ids)?;
        let kept = self.group_ids.iter().filter(|&&g| g != NO_GROUP).count();
        let spilling = self.spilling.as_mut().ok_or_else(|| {
            Error::Internal("keyed aggregate: frozen groups without spilling".into())
        })?;
        if kept < self.group_ids.len() {
            spilling.spill(batch, &keys, &self.group_ids)?;
        }
        if kept == 0 {
            return Ok(());
        }
        // The input columns of the kept rows; one filter per column read.
        let needed: Vec<usize> = self
            .inputs
            .iter()
            .flatten()
            .chain(self.state_inputs.iter().flatten())
            .copied()
            .collect();
        let mut values: Vec<Option<ArrayRef>> = vec![None; batch.num_columns()];
        if kept < self.group_ids.len() {
            let ids = &self.group_ids;
            let mask = BooleanBuffer::collect_bool(ids.len(), |i| ids[i] != NO_GROUP);
            let predicate = FilterBuilder::new(&BooleanArray::new(mask, None))
                .optimize()
                .build();
            for &i in &needed {
                if values[i].is_none() {
                    values[i] = Some(
                        predicate
                            .filter(batch.column(i))
                            .map_err(|e| Error::arrow("aggregate input of kept rows", e))?,
                    );
                }
            }
            self.group_ids.retain(|&g| g != NO_GROUP);
        } else {
            for &i in &needed {
                values[i] = Some(batch.column(i).clone());
            }
        }
        if self
            .changes
            .as_ref()
            .is_some_and(ChangeTracker::is_incremental)
        {
            self.dirty.mark_all(&self.group_ids);
        }
        self.fold(|i| values[i].clone())
    }

    /// Folds the rows of `self.group_ids` into their groups: their aggregates' input columns,
    /// or in a final phase their partial states, read through `column` by input index.
    fn fold(&mut self, column: impl Fn(usize) -> Option<ArrayRef>) -> Result<()> {
        let group_count = self.groups.len();
        if matches!(self.phase, AggregatePhase::Final { .. }) {
            for (acc, columns) in self.accumulators.iter_mut().zip(&self.state_inputs) {
                let state = columns
                    .iter()
                    .map(|&i| {
                        column(i).ok_or_else(|| {
                            Error::Internal("final aggregation: a state column is missing".into())
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                merge_states(
                    acc.as_mut(),
                    &self.group_ids,
                    group_count,
                    &state,
                    &mut self.scratch,
                )?;
            }
            return Ok(());
        }
        for (acc, input) in self.accumulators.iter_mut().zip(&self.inputs) {
            acc.resize(group_count);
            acc.update(&self.group_ids, input.and_then(&column).as_ref())?;
        }
        Ok(())
    }

    /// Emits every group of a partial phase, keys and partial states, and starts over empty.
    fn flush_partial(&mut self, out: &mut Output) -> Result<()> {
        let total = self.groups.len() as u32;
        let mut start = 0;
        while start < total {
            let end = (start + EMIT_BATCH_ROWS as u32).min(total);
            let groups: Vec<u32> = (start..end).collect();
            let mut columns = self.key_columns(&groups)?;
            for acc in &self.accumulators {
                columns.extend(acc.state(&groups)?);
            }
            out.push_batch(
                RecordBatch::try_new(self.output_schema.clone(), columns)
                    .map_err(|e| Error::arrow("partial aggregate output", e))?,
            );
            start = end;
        }
        // Reset before truncating: some accumulators keep per-group bits that only grow.
        let all: Vec<u32> = (0..total).collect();
        for acc in &mut self.accumulators {
            acc.reset(&all);
            acc.resize(0);
        }
        let key_types: Vec<&DataType> = self.output_schema.fields()[..self.key_indices.len()]
            .iter()
            .map(|f| f.data_type())
            .collect();
        self.groups = GroupTable::for_key_types(&key_types);
        Ok(())
    }

    /// At end of input of a frozen aggregation, after its groups were emitted: frees them and
    /// queues the partition files, which [`Operator::finish_more`] aggregates one per call.
    fn finish_partitions(&mut self) -> Result<()> {
        let Some(spilling) = &mut self.spilling else {
            return Ok(());
        };
        let files = spilling.finish_partitions()?;
        if files.is_empty() {
            return Ok(());
        }
        self.groups = GroupTable::default();
        self.accumulators.clear();
        self.group_ids = Vec::new();
        self.group_key_groups = Vec::new();
        self.dirty.clear();
        self.partitions = files.into();
        Ok(())
    }

    /// Aggregates the next partition file in a pass of its own, which may spill again, and
    /// emits its groups; returns false when no file is left.
    fn finish_next_partition(&mut self, out: &mut Output) -> Result<bool> {
        let Some(file) = self.partitions.pop_front() else {
            if let Some(spilling) = self.spilling.as_ref().filter(|s| s.is_operator_input()) {
                spilling.log_finished();
            }
            return Ok(false);
        };
        let Some(spilling) = &self.spilling else {
            return Ok(false);
        };
        let layout = spilling.layout().clone();
        let mut pass =
            KeyedAggregate::try_new(&layout.spec, &layout.schema, self.output_schema.clone())?;
        pass.key_groups = self.key_groups;
        // The pass's own layout: its input is already projected.
        let pass_layout = pass.spill_layout.clone().ok_or_else(|| {
            Error::Internal("keyed aggregate: a pass over spilled rows cannot spill".into())
        })?;
        pass.spilling = Some(spilling.next_level(pass_layout));
        let replay_rows = spilling.replay_rows();
        let mut pending = Vec::new();
        let mut rows = 0;
        for batch in file.read()? {
            let batch = batch?;
            rows += batch.num_rows();
            pending.push(batch);
            if rows >= replay_rows {
                pass.process_coalesced(&layout.schema, &mut pending, out)?;
                rows = 0;
            }
        }
        pass.process_coalesced(&layout.schema, &mut pending, out)?;
        // The file is read: delete it before the pass's own partitions are written.
        drop(file);
        pass.finish(out)?;
        while pass.finish_more(out)? {}
        if let (Some(spilling), Some(done)) = (&mut self.spilling, &pass.spilling) {
            spilling.absorb(done);
        }
        Ok(true)
    }

    /// Processes the batches of `pending` as one, and empties it.
    fn process_coalesced(
        &mut self,
        schema: &SchemaRef,
        pending: &mut Vec<RecordBatch>,
        out: &mut Output,
    ) -> Result<()> {
        let batch = match pending.len() {
            0 => return Ok(()),
            1 => pending.pop().expect("one pending batch"),
            _ => arrow::compute::concat_batches(schema, pending.iter())
                .map_err(|e| Error::arrow("aggregate spilled rows", e))?,
        };
        pending.clear();
        self.process_batch(0, batch, out)
    }

    /// The deepest level of spilling reached: 0 when nothing spilled or the partitions
    /// fitted in memory, `n` when a partition of level `n - 1` spilled again.
    #[cfg(test)]
    fn deepest_spill_level(&self) -> u32 {
        self.spilling.as_ref().map_or(0, Spilling::deepest_level)
    }

    fn key_columns(&self, groups: &[u32]) -> Result<Vec<ArrayRef>> {
        self.groups.decode_keys(&self.converter, groups)
    }

    fn result_batch(
        &self,
        kinds: Option<Int8Array>,
        groups: &[u32],
        values: Vec<ArrayRef>,
    ) -> Result<RecordBatch> {
        let mut columns = Vec::with_capacity(self.output_schema.fields().len());
        if let Some(kinds) = kinds {
            columns.push(Arc::new(kinds) as ArrayRef);
        }
        columns.extend(self.key_columns(groups)?);
        columns.extend(values);
        RecordBatch::try_new(self.output_schema.clone(), columns)
            .map_err(|e| Error::arrow("aggregate output", e))
    }

    /// The key columns of `groups`, whose keys are at `rows` of the batch's key columns
    /// `keys`: taken from the batch (which is in cache) rather than decoded from the group
    /// table (whose key bytes are scattered over the whole state). A key column whose type
    /// differs from the output's is decoded.
    fn touched_keys(
        &self,
        keys: &[ArrayRef],
        rows: &[u32],
        groups: &[u32],
    ) -> Result<Vec<ArrayRef>> {
        let output_keys = &self.output_schema.fields()[1..=keys.len()];
        if keys
            .iter()
            .zip(output_keys)
            .any(|(key, field)| key.data_type() != field.data_type())
        {
            return self.key_columns(groups);
        }
        let rows = UInt32Array::from(rows.to_vec());
        keys.iter()
            .map(|key| {
                arrow::compute::take(key.as_ref(), &rows, None)
                    .map_err(|e| Error::arrow("aggregate output keys", e))
            })
            .collect()
    }

    /// A changelog batch: the row kinds, the key columns and the results.
    fn changelog_batch(
        &self,
        kinds: Int8Array,
        keys: Vec<ArrayRef>,
        values: Vec<ArrayRef>,
    ) -> Result<RecordBatch> {
        let mut columns = Vec::with_capacity(self.output_schema.fields().len());
        columns.push(Arc::new(kinds) as ArrayRef);
        columns.extend(keys);
        columns.extend(values);
        RecordBatch::try_new(self.output_schema.clone(), columns)
            .map_err(|e| Error::arrow("aggregate output", e))
    }

    /// The default group (see [`KeyedAggregateSpec::default_group`]), created empty if need
    /// be, when the aggregation has one and this subtask owns its key group; else `None`.
    fn owned_default_group(&mut self) -> Result<Option<u32>> {
        let Some(keys) = &self.default_group else {
            return Ok(None);
        };
        let (range, max_parallelism) = self
            .key_groups
            .ok_or_else(|| Error::Internal("keyed aggregate finished before open".into()))?;
        let mut hashes = Vec::with_capacity(1);
        hash_columns(keys, &mut hashes)?;
        let owned = hashes
            .first()
            .is_some_and(|&h| range.contains(key_group_of_hash(h, max_parallelism)));
        if !owned {
            return Ok(None);
        }
        let mut ids = Vec::with_capacity(1);
        self.groups
            .intern_columns(&self.converter, keys, &mut ids)?;
        let group = *ids.first().ok_or_else(|| {
            Error::Internal("keyed aggregate: interning the default group gave no group".into())
        })?;
        let count = self.groups.len();
        for acc in &mut self.accumulators {
            acc.resize(count);
        }
        if let Some(retracting) = &mut self.retracting {
            retracting.resize(count);
        }
        Ok(Some(group))
    }

    fn evaluate(&self, groups: &[u32]) -> Result<Vec<ArrayRef>> {
        if let Some(retracting) = &self.retracting {
            return retracting.evaluate(groups);
        }
        self.accumulators
            .iter()
            .map(|acc| acc.evaluate(groups))
            .collect()
    }
}

impl Operator for KeyedAggregate {
    /// A final aggregation emits every row at the end: only the final watermark goes on
    /// (after them), so no event-time operator downstream sees its rows as late.
    fn process_watermark(&mut self, watermark: Watermark, out: &mut Output) -> Result<()> {
        if self.emit == EmitMode::Changelog || watermark == Watermark::MAX {
            out.push_watermark(watermark);
        }
        Ok(())
    }

    fn open(&mut self, ctx: &OperatorContext) -> Result<()> {
        self.key_groups = Some((ctx.key_groups, ctx.max_parallelism));
        if let Some(layout) = &self.spill_layout
            && ctx.memory.limit().is_some()
        {
            self.spilling = Some(Spilling::new(
                ctx.memory.clone(),
                ctx.vertex.clone(),
                ctx.subtask,
                layout.clone(),
            ));
        }
        self.changes = Some(ChangeTracker::new(
            KeyGroupOwnership {
                range: ctx.key_groups,
                max_parallelism: ctx.max_parallelism,
            },
            ctx.incremental_checkpoints,
        ));
        Ok(())
    }

    fn notify_checkpoint_complete(&mut self, checkpoint: CheckpointId) -> Result<()> {
        if let Some(changes) = &mut self.changes {
            changes.notify_complete(checkpoint);
        }
        Ok(())
    }

    fn snapshot(&mut self, checkpoint: CheckpointId) -> Result<StateSnapshot> {
        if self.phase == AggregatePhase::Partial {
            // Its groups are not partitioned by key: they belong to no key group.
            return Err(Error::unsupported(
                "checkpoints of a partial aggregation (batch mode plans them; set \
                 'table.optimizer.agg-phase-strategy' = 'ONE_PHASE' to checkpoint)",
            ));
        }
        if let Some(spilling) = self.spilling.as_ref().filter(|s| s.has_spilled()) {
            return Err(spilling.checkpoint_refused());
        }
        let (range, max_parallelism) = self
            .key_groups
            .ok_or_else(|| Error::Internal("keyed aggregate snapshotted before open".into()))?;
        // Key groups of the groups added since the last snapshot: decoded and hashed once.
        let known = self.group_key_groups.len() as u32;
        if known < self.groups.len() as u32 {
            let added: Vec<u32> = (known..self.groups.len() as u32).collect();
            let keys = self.key_columns(&added)?;
            let mut hashes = Vec::with_capacity(added.len());
            hash_columns(&keys, &mut hashes)?;
            self.group_key_groups.extend(
                hashes
                    .iter()
                    .map(|&h| key_group_of_hash(h, max_parallelism)),
            );
        }
        let changes = self
            .changes
            .as_mut()
            .ok_or_else(|| Error::Internal("keyed aggregate snapshotted before open".into()))?;
        let cache = &self.group_key_groups;
        let dirty = self
            .dirty
            .take_slices(changes, |group| cache[group as usize]);
        let selection = changes.snapshot(checkpoint, dirty);
        let mut groups: Vec<u32> = if selection.is_full() {
            (0..self.groups.len() as u32).collect()
        } else {
            (0..self.groups.len() as u32)
                .filter(|&g| selection.includes(self.group_key_groups[g as usize]))
                .collect()
        };
        if let Some(retracting) = &self.retracting {
            // A dead group has no state; its slice, if it died since the base, is rewritten.
            groups.retain(|&g| retracting.is_live(g));
        }
        let key_groups = UInt32Array::from_iter_values(
            groups.iter().map(|&g| self.group_key_groups[g as usize]),
        );
        let key_bytes = BinaryArray::from_iter_values(groups.iter().map(|&g| self.groups.key(g)));
        let mut fields = vec![
            Field::new("key_group", DataType::UInt32, false),
            Field::new("key", DataType::Binary, false),
        ];
        let mut columns: Vec<ArrayRef> = vec![Arc::new(key_groups), Arc::new(key_bytes)];
        if let Some(retracting) = &self.retracting {
            for (name, column) in retracting.state(&groups)? {
                fields.push(Field::new(name, column.data_type().clone(), true));
                columns.push(column);
            }
        }
        for (i, acc) in self.accumulators.iter().enumerate() {
            for (j, column) in acc.state(&groups)?.into_iter().enumerate() {
                fields.push(Field::new(
                    format!("acc{i}_{j}"),
                    column.data_type().clone(),
                    true,
                ));
                columns.push(column);
            }
        }
        let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
            .map_err(|e| Error::arrow("keyed aggregate snapshot", e))?;
        Ok(StateSnapshot {
            key_groups: Some(range),
            tables: vec![SnapshotTable {
                slices: selection.table_slices(),
                name: GROUPS_TABLE.into(),
                batches: vec![batch],
            }],
            sink_pre_commit: None,
        })
    }

    fn restore(&mut self, snapshot: &StateSnapshot) -> Result<()> {
        let (owned, _) = self
            .key_groups
            .ok_or_else(|| Error::Internal("keyed aggregate restored before open".into()))?;
        if let Some(changes) = &mut self.changes {
            changes.reset();
        }
        self.dirty.clear();
        let widths = self
            .accumulators
            .iter()
            .map(|acc| acc.state(&[]).map(|columns| columns.len()))
            .collect::<Result<Vec<_>>>()?;
        let retracting_width = match &self.retracting {
            Some(retracting) => retracting.state_width()?,
            None => 0,
        };
        let bad = || {
            Error::data(
                "keyed aggregate snapshot",
                "expected columns key_group, key and the accumulators' state",
            )
        };
        for table in snapshot.tables.iter().filter(|t| t.name == GROUPS_TABLE) {
            for batch in &table.batches {
                if batch.num_columns() != 2 + retracting_width + widths.iter().sum::<usize>() {
                    return Err(bad());
                }
                let key_groups = batch
                    .column(0)
                    .as_primitive_opt::<UInt32Type>()
                    .ok_or_else(bad)?;
                let mask: BooleanArray = key_groups
                    .values()
                    .iter()
                    .map(|&kg| Some(owned.contains(kg)))
                    .collect();
                let kept = arrow::compute::filter_record_batch(batch, &mask)
                    .map_err(|e| Error::arrow("keyed aggregate restore", e))?;
                let keys = kept.column(1).as_binary_opt::<i32>().ok_or_else(bad)?;
                let groups: Vec<u32> = keys
                    .iter()
                    .flatten()
                    .map(|k| self.groups.intern_one(k))
                    .collect();
                if groups.len() != kept.num_rows() {
                    return Err(bad());
                }
                let count = self.groups.len();
                if let Some(retracting) = &mut self.retracting {
                    retracting.restore(&groups, count, &kept.columns()[2..])?;
                }
                let mut column = 2 + retracting_width;
                for (acc, &width) in self.accumulators.iter_mut().zip(&widths) {
                    acc.resize(count);
                    acc.restore_state(&groups, &kept.columns()[column..column + width])?;
                    column += width;
                }
            }
        }
        self.check_memory();
        Ok(())
    }

    fn process_batch(&mut self, _input: usize, batch: RecordBatch, out: &mut Output) -> Result<()> {
        if self.spilling.as_ref().is_some_and(Spilling::is_frozen) {
            return self.process_frozen(&batch);
        }
        let keys: Vec<ArrayRef> = self
            .key_indices
            .iter()
            .map(|&i| batch.column(i).clone())
            .collect();
        let existing_before = self.groups.len() as u32;
        if let [key] = keys.as_slice()
            && is_constant(key.as_ref())
        {
            // One key for the whole batch (the constant key of an aggregation without GROUP
            // BY): interned once.
            self.groups
                .intern_columns(&self.converter, &[key.slice(0, 1)], &mut self.group_ids)?;
            let group = self.group_ids[0];
            self.group_ids.resize(batch.num_rows(), group);
        } else {
            self.groups
                .intern_columns(&self.converter, &keys, &mut self.group_ids)?;
        }
        if self
            .changes
            .as_ref()
            .is_some_and(ChangeTracker::is_incremental)
        {
            self.dirty.mark_all(&self.group_ids);
        }
        if self.retracting.is_some() {
            return self.process_retracting(&batch, out);
        }
        let group_count = self.groups.len();

        if self.emit == EmitMode::Final {
            self.fold(|i| Some(batch.column(i).clone()))?;
            if self.spilling.is_some() {
                self.check_memory();
            }
            if self.phase == AggregatePhase::Partial && group_count >= self.partial_max_groups {
                self.flush_partial(out)?;
            }
            return Ok(());
        }

        // Changelog: the groups this batch touches, and the results of the existing ones
        // before it.
        self.touched.collect(&self.group_ids, group_count);
        let (existing, existing_rows): (Vec<u32>, Vec<u32>) = self
            .touched
            .groups()
            .iter()
            .zip(self.touched.first_rows())
            .filter(|&(&g, _)| g < existing_before)
            .unzip();
        let old = if existing.is_empty() {
            None
        } else {
            Some(self.evaluate(&existing)?)
        };
        for (acc, input) in self.accumulators.iter_mut().zip(&self.inputs) {
            acc.resize(group_count);
            acc.update(&self.group_ids, input.map(|i| batch.column(i)))?;
        }
        if let Some(old) = old {
            let kinds = Int8Array::from_value(RowKind::UpdateBefore as i8, existing.len());
            let keys = self.touched_keys(&keys, &existing_rows, &existing)?;
            out.push_batch(self.changelog_batch(kinds, keys, old)?);
        }
        let touched = self.touched.groups();
        let kinds = Int8Array::from_iter_values(touched.iter().map(|&g| {
            if g < existing_before {
                RowKind::UpdateAfter as i8
            } else {
                RowKind::Insert as i8
            }
        }));
        let new = self.evaluate(touched)?;
        let keys = self.touched_keys(&keys, self.touched.first_rows(), touched)?;
        out.push_batch(self.changelog_batch(kinds, keys, new)?);
        Ok(())
    }

    fn report_metrics(&self, metrics: &mut OperatorMetrics) {
        metrics.state_keys = self.groups.len() as u64;
        metrics.state_bytes = (self.groups.allocated_bytes()
            + self
                .accumulators
                .iter()
                .map(|a| a.allocated_bytes())
                .sum::<usize>()
            + self.touched.allocated_bytes()
            + self.dirty.allocated_bytes()
            + self.group_key_groups.capacity() * std::mem::size_of::<u32>()
            + self
                .retracting
                .as_ref()
                .map_or(0, retract::Retracting::allocated_bytes))
            as u64;
        metrics.spilled_bytes = self.spilling.as_ref().map_or(0, Spilling::spilled_bytes);
    }

    fn finish(&mut self, out: &mut Output) -> Result<()> {
        if self.emit == EmitMode::Final
            && let Some(retracting) = &self.retracting
        {
            let mut live = retracting.live_groups();
            if live.is_empty()
                && let Some(group) = self.owned_default_group()?
            {
                live.push(group);
            }
            for groups in live.chunks(EMIT_BATCH_ROWS) {
                let values = self.evaluate(groups)?;
                out.push_batch(self.result_batch(None, groups, values)?);
            }
            return Ok(());
        }
        if self.phase == AggregatePhase::Partial {
            return self.flush_partial(out);
        }
        if self.emit == EmitMode::Final {
            if self.groups.len() == 0 {
                self.owned_default_group()?;
            }
            let total = self.groups.len() as u32;
            let mut start = 0;
            while start < total {
                let end = (start + EMIT_BATCH_ROWS as u32).min(total);
                let groups: Vec<u32> = (start..end).collect();
                let values = self.evaluate(&groups)?;
                out.push_batch(self.result_batch(None, &groups, values)?);
                start = end;
            }
            self.finish_partitions()?;
        }
        Ok(())
    }

    fn finish_more(&mut self, out: &mut Output) -> Result<bool> {
        self.finish_next_partition(out)
    }
}

/// Whether `column` holds one non-null integer in every row (and at least one row). Stops at
/// the first row that differs, so a column that varies costs a few comparisons.
fn is_constant(column: &dyn Array) -> bool {
    fn same<T: ArrowPrimitiveType>(column: &dyn Array) -> Option<bool> {
        let values = column.as_primitive_opt::<T>()?.values();
        let first = values.first()?;
        Some(values.iter().all(|v| v == first))
    }
    if column.is_empty() || column.null_count() > 0 {
        return false;
    }
    match column.data_type() {
        DataType::Int32 => same::<Int32Type>(column),
        DataType::Int64 => same::<Int64Type>(column),
        _ => None,
    }
    .unwrap_or(false)
}

/// The key columns of the default group: each value as a one-row array of its key column's
/// type.
fn default_group_keys(values: &[ScalarValue], key_types: &[&DataType]) -> Result<Vec<ArrayRef>> {
    if values.len() != key_types.len() {
        return Err(Error::plan(
            "KeyedAggregate",
            format!(
                "the default group has {} key values for {} key columns",
                values.len(),
                key_types.len()
            ),
        ));
    }
    values
        .iter()
        .zip(key_types)
        .map(|(value, &data_type)| {
            let array = value.to_array()?;
            arrow::compute::cast(&array, data_type)
                .map_err(|e| Error::arrow("aggregate default group key", e))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use arrow::array::Int32Array;

    use super::*;
    use crate::element::StreamElement;
    use crate::graph::{AggregateCall, AggregateFunction};
    use crate::ids::SubtaskIndex;

    const MAX_PARALLELISM: u32 = 128;

    fn input() -> Schema {
        Schema::new(vec![
            Field::new("$global", DataType::Int32, false),
            Field::new("v", DataType::Int64, true),
        ])
    }

    fn global_spec(emit: EmitMode) -> KeyedAggregateSpec {
        let call = |function, input: Option<&str>, output: &str| AggregateCall {
            function,
            input: input.map(str::to_string),
            output: output.into(),
        };
        KeyedAggregateSpec {
            keys: vec!["$global".into()],
            aggregates: vec![
                call(AggregateFunction::Count, None, "n"),
                call(AggregateFunction::Sum, Some("v"), "sum"),
                call(AggregateFunction::Max, Some("v"), "max"),
            ],
            emit,
            default_group: Some(vec![ScalarValue::Int32(0)]),
            phase: Default::default(),
        }
    }

    /// Runs one aggregate per subtask over `batches` routed by key group (as the hash exchange
    /// does) and returns every row emitted as `(n, sum, max)`.
    fn run(
        spec: &KeyedAggregateSpec,
        parallelism: u32,
        values: &[i64],
    ) -> Vec<(i64, Option<i64>, Option<i64>)> {
        let input = input();
        let output = spec.output_schema(&input).expect("valid spec");
        let mut rows = Vec::new();
        for subtask in 0..parallelism {
            let range = KeyGroupRange::for_subtask(MAX_PARALLELISM, parallelism, subtask);
            let mut aggregate =
                KeyedAggregate::try_new(spec, &input, output.clone()).expect("operator");
            aggregate
                .open(&OperatorContext {
                    vertex: "KeyedAggregate".into(),
                    subtask: SubtaskIndex(subtask),
                    parallelism,
                    max_parallelism: MAX_PARALLELISM,
                    key_groups: range,
                    input_schemas: vec![Arc::new(input.clone())],
                    output_schema: output.clone(),
                    incremental_checkpoints: false,
                    checkpointing: false,
                    memory: crate::spill::MemoryBudget::default(),
                })
                .expect("open");
            let mut out = Output::default();
            let keys: ArrayRef = Arc::new(Int32Array::from(vec![0; values.len()]));
            let mut hashes = Vec::new();
            hash_columns(std::slice::from_ref(&keys), &mut hashes).expect("hash");
            let owned = hashes
                .first()
                .is_some_and(|&h| range.contains(key_group_of_hash(h, MAX_PARALLELISM)));
            if owned {
                let batch = RecordBatch::try_new(
                    Arc::new(input.clone()),
                    vec![
                        keys,
                        Arc::new(arrow::array::Int64Array::from(values.to_vec())),
                    ],
                )
                .expect("batch");
                aggregate.process_batch(0, batch, &mut out).expect("batch");
            }
            aggregate.finish(&mut out).expect("finish");
            while aggregate.finish_more(&mut out).expect("finish") {}
            for element in out.drain() {
                let StreamElement::Batch(batch) = element else {
                    continue;
                };
                let n = batch
                    .column_by_name("n")
                    .expect("n")
                    .as_primitive::<Int64Type>();
                let sum = batch.column_by_name("sum").expect("sum");
                let max = batch.column_by_name("max").expect("max");
                let (sum, max) = (
                    sum.as_primitive::<Int64Type>(),
                    max.as_primitive::<Int64Type>(),
                );
                for i in 0..batch.num_rows() {
                    let at = |a: &arrow::array::Int64Array| a.is_valid(i).then(|| a.value(i));
                    rows.push((n.value(i), at(sum), at(max)));
                }
            }
        }
        rows
    }

    /// Batches whose key is one value throughout take the constant path; the groups are
    /// those of interning every row.
    #[test]
    fn constant_key_batches_join_the_groups_of_varying_ones() {
        let input = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, true),
            Field::new("v", DataType::Int64, true),
        ]));
        let spec = KeyedAggregateSpec {
            keys: vec!["k".into()],
            default_group: None,
            ..global_spec(EmitMode::Final)
        };
        let output = spec.output_schema(&input).expect("valid spec");
        let mut aggregate = KeyedAggregate::try_new(&spec, &input, output.clone()).unwrap();
        aggregate
            .open(&super::spill_tests::context(
                &input,
                &output,
                crate::spill::MemoryBudget::default(),
            ))
            .unwrap();
        let mut out = Output::default();
        let batches: [&[Option<i64>]; 5] = [
            &[Some(5), Some(5), Some(5)],
            &[Some(5), Some(6), Some(5)],
            &[Some(6), Some(6)],
            &[None, None],
            &[Some(7)],
        ];
        for keys in batches {
            let batch = RecordBatch::try_new(
                input.clone(),
                vec![
                    Arc::new(arrow::array::Int64Array::from(keys.to_vec())),
                    Arc::new(arrow::array::Int64Array::from(vec![1; keys.len()])),
                ],
            )
            .unwrap();
            assert_eq!(
                is_constant(batch.column(0).as_ref()),
                keys.iter().all(|k| *k == keys[0] && k.is_some())
            );
            aggregate.process_batch(0, batch, &mut out).unwrap();
        }
        aggregate.finish(&mut out).unwrap();
        let mut rows = Vec::new();
        for element in out.drain() {
            let StreamElement::Batch(batch) = element else {
                continue;
            };
            let keys = batch.column(0).as_primitive::<Int64Type>();
            let counts = batch
                .column_by_name("n")
                .unwrap()
                .as_primitive::<Int64Type>();
            for i in 0..batch.num_rows() {
                rows.push((keys.is_valid(i).then(|| keys.value(i)), counts.value(i)));
            }
        }
        rows.sort();
        assert_eq!(
            rows,
            vec![(None, 2), (Some(5), 5), (Some(6), 3), (Some(7), 1)]
        );
    }

    #[test]
    fn global_aggregate_over_no_rows_emits_one_row_once() {
        for parallelism in [1, 2, 4] {
            let rows = run(&global_spec(EmitMode::Final), parallelism, &[]);
            assert_eq!(rows, vec![(0, None, None)], "parallelism {parallelism}");
        }
    }

    #[test]
    fn global_aggregate_with_rows_emits_only_their_group() {
        for parallelism in [1, 3] {
            let rows = run(&global_spec(EmitMode::Final), parallelism, &[4, 7]);
            assert_eq!(
                rows,
                vec![(2, Some(11), Some(7))],
                "parallelism {parallelism}"
            );
        }
    }

    #[test]
    fn changelog_global_aggregate_over_no_rows_emits_nothing() {
        assert!(run(&global_spec(EmitMode::Changelog), 2, &[]).is_empty());
    }

    #[test]
    fn grouped_aggregate_over_no_rows_emits_nothing() {
        let spec = KeyedAggregateSpec {
            default_group: None,
            phase: Default::default(),
            ..global_spec(EmitMode::Final)
        };
        assert!(run(&spec, 2, &[]).is_empty());
    }
}
