//! The regular (unbounded) join: every pair of rows with equal keys, inner or outer, emitted as
//! a changelog with a leading `_row_kind` column.
//!
//! Both sides keep all their rows (per key id, a `Vec<RowRef>`). A batch from one side probes
//! the other side's rows of each key and emits `+I (left, right)` per match, then stores its
//! own rows. There is no state TTL yet, so state grows with the input.
//!
//! Outer joins follow Flink's changelog: a row of a preserved side without a partner emits
//! `+I` padded with NULLs; when its first partner arrives, the operator emits `-D` of that
//! padded row and then `+I` of the joined row. Each stored row of a preserved side carries a
//! `matched` flag so the retraction happens exactly once (with insert-only inputs a row never
//! loses its partners). Within one output step all retractions come first, so folding the
//! changelog in order never retracts a row it has not seen.
//!
//! Snapshots hold each side's rows with their key groups and, on preserved sides, the matched
//! flags (see [`super::checkpoint`]).
//! An inner join also takes updating inputs (a `_row_kind` column on either side), as Flink
//! does: the column is dropped on arrival; a `+I`/`+U` row is stored and joined as above, a
//! `-U`/`-D` row removes one stored row with equal values from its side (found by a hash of
//! the whole row, then compared exactly) and emits `-D` of each pair it was part of. Rows are
//! handled in arrival order: a batch that mixes both kinds is emitted in runs, so a pair is
//! never retracted before it was inserted. A retraction of a row that is not stored (it was
//! never inserted) is ignored, as Flink ignores it. Outer joins over updating inputs are
//! refused at planning.

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::Int8Type;
use arrow::record_batch::RecordBatch;

use super::checkpoint::{self, RestoredRows};
use super::{BatchStore, JoinKeys, Matches, OutputShape, RowRef};
use crate::element::RowKind;
use crate::graph::JoinType;
use crate::ids::CheckpointId;
use crate::operator::{Operator, OperatorContext, Output};
use crate::runtime::OperatorMetrics;
use crate::state::{KeyGroupOwnership, StateSnapshot, hash_columns};
use crate::{Error, Result};

pub(crate) struct RegularJoin {
    keys: JoinKeys,
    join_type: JoinType,
    stores: [BatchStore; 2],
    /// Stored rows per side, per key id.
    rows: [Vec<Vec<RowRef>>; 2],
    shape: OutputShape,
    ownership: Option<KeyGroupOwnership>,
    /// Per side, the index of the input's `_row_kind` column (an updating input).
    row_kinds: [Option<usize>; 2],
    /// Per side and key id, the hash of each stored row's values, parallel to `rows`; only
    /// kept for updating inputs, whose retractions look rows up by value.
    hashes: [Vec<Vec<u64>>; 2],
    // Scratch reused across batches.
    matches: Matches,
    unmatched: Vec<u32>,
    retracted: Vec<RowRef>,
    row_hashes: Vec<u64>,
}

impl RegularJoin {
    pub(super) fn new(
        keys: JoinKeys,
        join_type: JoinType,
        shape: OutputShape,
        row_kinds: [Option<usize>; 2],
    ) -> Self {
        RegularJoin {
            keys,
            join_type,
            stores: [BatchStore::default(), BatchStore::default()],
            rows: [Vec::new(), Vec::new()],
            shape,
            ownership: None,
            row_kinds,
            hashes: [Vec::new(), Vec::new()],
            matches: Matches::default(),
            unmatched: Vec::new(),
            retracted: Vec::new(),
            row_hashes: Vec::new(),
        }
    }

    /// An updating input's batch (its `_row_kind` column already dropped): rows are stored or
    /// removed in order, pairs emitted as `+I` or `-D` in runs of one kind.
    fn process_updating(
        &mut self,
        side: usize,
        kinds: &[i8],
        batch: RecordBatch,
        out: &mut Output,
    ) -> Result<()> {
        if self.join_type != JoinType::Inner {
            return Err(Error::Internal(
                "an outer join over an updating input passed planning".into(),
            ));
        }
        let other = 1 - side;
        let valid = self.keys.intern(side, &batch)?;
        let key_count = self.keys.len();
        for rows in &mut self.rows {
            rows.resize_with(key_count, Vec::new);
        }
        for hashes in &mut self.hashes {
            hashes.resize_with(key_count, Vec::new);
        }
        hash_columns(batch.columns(), &mut self.row_hashes)?;
        let batch_id = self.stores[side].next_id()?;
        let mut stored = 0usize;
        let mut run_kind = RowKind::Insert;
        self.matches.clear();
        for (row, &row_kind) in kinds.iter().enumerate().take(batch.num_rows()) {
            if valid.as_ref().is_some_and(|v| v.is_null(row)) {
                continue;
            }
            let key = self.keys.ids[row] as usize;
            let retract = match RowKind::from_i8(row_kind) {
                Some(RowKind::Insert | RowKind::UpdateAfter) => false,
                Some(RowKind::UpdateBefore | RowKind::Delete) => true,
                None => {
                    return Err(Error::data(
                        "join input",
                        format!("row {row} has an unknown _row_kind {row_kind}"),
                    ));
                }
            };
            let kind = if retract {
                RowKind::Delete
            } else {
                RowKind::Insert
            };
            if kind != run_kind {
                self.flush(side, &batch, run_kind, out)?;
                run_kind = kind;
            }
            let hash = self.row_hashes[row];
            if retract {
                let Some(position) = self.find_stored(side, key, hash, &batch, row, batch_id)?
                else {
                    continue;
                };
                let removed = self.rows[side][key].swap_remove(position);
                self.hashes[side][key].swap_remove(position);
                if removed.batch == batch_id {
                    stored -= 1;
                } else {
                    self.stores[side].release(removed);
                }
            } else {
                self.rows[side][key].push(RowRef {
                    batch: batch_id,
                    row: row as u32,
                });
                self.hashes[side][key].push(hash);
                stored += 1;
            }
            for &partner in &self.rows[other][key] {
                self.matches.push(row as u32, partner);
            }
        }
        self.flush(side, &batch, run_kind, out)?;
        if stored > 0 {
            self.stores[side].push(batch, Vec::new(), Vec::new(), stored);
        }
        Ok(())
    }

    /// Emits the pending pairs of one run as `kind`.
    fn flush(
        &mut self,
        side: usize,
        batch: &RecordBatch,
        kind: RowKind,
        out: &mut Output,
    ) -> Result<()> {
        if self.matches.incoming.is_empty() {
            return Ok(());
        }
        let [left_store, right_store] = &mut self.stores;
        let theirs = if side == 0 { right_store } else { left_store };
        self.shape
            .emit_pairs(out, Some(kind), (side, batch), theirs, &self.matches)?;
        self.matches.clear();
        Ok(())
    }

    /// The position in `rows[side][key]` of a stored row equal to row `row` of `batch`.
    fn find_stored(
        &mut self,
        side: usize,
        key: usize,
        hash: u64,
        batch: &RecordBatch,
        row: usize,
        batch_id: u32,
    ) -> Result<Option<usize>> {
        for position in 0..self.rows[side][key].len() {
            if self.hashes[side][key][position] != hash {
                continue;
            }
            let candidate = self.rows[side][key][position];
            let columns: Vec<ArrayRef> = if candidate.batch == batch_id {
                batch
                    .columns()
                    .iter()
                    .map(|c| c.slice(candidate.row as usize, 1))
                    .collect()
            } else {
                self.stores[side].gather(&[candidate])?
            };
            let equal = columns
                .iter()
                .zip(batch.columns())
                .all(|(stored, incoming)| stored.to_data() == incoming.slice(row, 1).to_data());
            if equal {
                return Ok(Some(position));
            }
        }
        Ok(None)
    }
}

impl RegularJoin {
    /// Stores restored rows of `side` as they were, without probing the other side.
    fn store_restored(&mut self, side: usize, restored: RestoredRows) -> Result<()> {
        let RestoredRows { batch, matched } = restored;
        self.keys.intern(side, &batch)?;
        let key_count = self.keys.len();
        for rows in &mut self.rows {
            rows.resize_with(key_count, Vec::new);
        }
        let batch_id = self.stores[side].next_id()?;
        for (row, &key) in self.keys.ids.iter().enumerate() {
            self.rows[side][key as usize].push(RowRef {
                batch: batch_id,
                row: row as u32,
            });
        }
        if self.row_kinds[side].is_some() {
            // An updating side finds rows to retract by the hash of their values.
            for hashes in &mut self.hashes {
                hashes.resize_with(key_count, Vec::new);
            }
            hash_columns(batch.columns(), &mut self.row_hashes)?;
            for (&key, &hash) in self.keys.ids.iter().zip(&self.row_hashes) {
                self.hashes[side][key as usize].push(hash);
            }
        }
        let rows = batch.num_rows();
        self.stores[side].push(batch, Vec::new(), matched.unwrap_or_default(), rows);
        Ok(())
    }
}

impl Operator for RegularJoin {
    fn open(&mut self, ctx: &OperatorContext) -> Result<()> {
        self.ownership = Some(checkpoint::ownership(ctx));
        Ok(())
    }

    fn snapshot(&mut self, _checkpoint: CheckpointId) -> Result<StateSnapshot> {
        let own = checkpoint::required(self.ownership, "snapshotted")?;
        let tables = (0..2)
            .map(|side| {
                checkpoint::side_table(
                    side,
                    &mut self.stores[side],
                    self.rows[side].iter().flatten().copied(),
                    &self.keys.columns[side],
                    self.join_type.preserves(side),
                    own,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(StateSnapshot {
            key_groups: Some(own.range),
            tables,
            sink_pre_commit: None,
        })
    }

    fn restore(&mut self, snapshot: &StateSnapshot) -> Result<()> {
        let own = checkpoint::required(self.ownership, "restored")?;
        for side in 0..2 {
            let schema = self.shape.inputs[side].clone();
            let preserves = self.join_type.preserves(side);
            for rows in checkpoint::restored_side(snapshot, side, &schema, preserves, own)? {
                self.store_restored(side, rows)?;
            }
        }
        Ok(())
    }

    fn process_batch(&mut self, input: usize, batch: RecordBatch, out: &mut Output) -> Result<()> {
        let side = input.min(1);
        if let Some(index) = self.row_kinds[side] {
            let kinds = batch
                .column(index)
                .as_primitive_opt::<Int8Type>()
                .ok_or_else(|| Error::data("join input", "the _row_kind column is not Int8"))?
                .clone();
            let mut batch = batch;
            batch.remove_column(index);
            return self.process_updating(side, kinds.values(), batch, out);
        }
        let other = 1 - side;
        let valid = self.keys.intern(side, &batch)?;
        let key_count = self.keys.len();
        for rows in &mut self.rows {
            rows.resize_with(key_count, Vec::new);
        }
        let preserve_mine = self.join_type.preserves(side);
        let preserve_theirs = self.join_type.preserves(other);
        let batch_id = self.stores[side].next_id()?;
        let mut matched_flags = Vec::new();
        if preserve_mine {
            matched_flags.reserve_exact(batch.num_rows());
        }
        self.matches.clear();
        self.unmatched.clear();
        self.retracted.clear();
        let mut stored = 0usize;
        for (row, &key) in self.keys.ids.iter().enumerate() {
            if valid.as_ref().is_some_and(|v| v.is_null(row)) {
                // A NULL key never matches and need not be stored.
                if preserve_mine {
                    self.unmatched.push(row as u32);
                    matched_flags.push(false);
                }
                continue;
            }
            let partners = &self.rows[other][key as usize];
            if partners.is_empty() {
                if preserve_mine {
                    self.unmatched.push(row as u32);
                }
            } else {
                for &partner in partners {
                    self.matches.push(row as u32, partner);
                    if preserve_theirs && self.stores[other].mark_matched(partner) {
                        self.retracted.push(partner);
                    }
                }
            }
            if preserve_mine {
                matched_flags.push(!partners.is_empty());
            }
            self.rows[side][key as usize].push(RowRef {
                batch: batch_id,
                row: row as u32,
            });
            stored += 1;
        }

        let [left_store, right_store] = &mut self.stores;
        let theirs = if side == 0 { right_store } else { left_store };
        if !self.retracted.is_empty() {
            let padded = self.shape.nulls(side, self.retracted.len());
            for chunk in self.retracted.chunks(super::EMIT_BATCH_ROWS) {
                let retracted = theirs.gather(chunk)?;
                let padded = padded
                    .iter()
                    .map(|c| c.slice(0, chunk.len()))
                    .collect::<Vec<_>>();
                let (left, right) = if side == 0 {
                    (padded, retracted)
                } else {
                    (retracted, padded)
                };
                self.shape.emit(out, Some(RowKind::Delete), left, right)?;
            }
        }
        self.shape.emit_pairs(
            out,
            Some(RowKind::Insert),
            (side, &batch),
            theirs,
            &self.matches,
        )?;
        for chunk in self.unmatched.chunks(super::EMIT_BATCH_ROWS) {
            let mine = OutputShape::take(&batch, chunk)?;
            let padded = self.shape.nulls(other, chunk.len());
            let (left, right) = if side == 0 {
                (mine, padded)
            } else {
                (padded, mine)
            };
            self.shape.emit(out, Some(RowKind::Insert), left, right)?;
        }
        if stored > 0 {
            self.stores[side].push(batch, Vec::new(), matched_flags, stored);
        }
        Ok(())
    }

    fn report_metrics(&self, metrics: &mut OperatorMetrics) {
        metrics.state_keys = (0..self.keys.len())
            .filter(|&k| {
                self.rows
                    .iter()
                    .any(|r| r.get(k).is_some_and(|l| !l.is_empty()))
            })
            .count() as u64;
        let lists: usize = self
            .rows
            .iter()
            .flatten()
            .map(|l| l.capacity() * std::mem::size_of::<RowRef>())
            .sum();
        metrics.state_bytes = (self
            .stores
            .iter()
            .map(BatchStore::allocated_bytes)
            .sum::<usize>()
            + lists
            + self.keys.table.allocated_bytes()) as u64;
    }
}
