//! The regular (unbounded) join: every pair of rows with equal keys, inner or outer, emitted as
//! a changelog with a leading `_row_kind` column. Inputs are insert-only.
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

use arrow::record_batch::RecordBatch;

use super::checkpoint::{self, RestoredRows};
use super::{BatchStore, JoinKeys, Matches, OutputShape, RowRef};
use crate::Result;
use crate::element::RowKind;
use crate::graph::JoinType;
use crate::ids::CheckpointId;
use crate::operator::{Operator, OperatorContext, Output};
use crate::runtime::OperatorMetrics;
use crate::state::{KeyGroupOwnership, StateSnapshot};

pub(crate) struct RegularJoin {
    keys: JoinKeys,
    join_type: JoinType,
    stores: [BatchStore; 2],
    /// Stored rows per side, per key id.
    rows: [Vec<Vec<RowRef>>; 2],
    shape: OutputShape,
    ownership: Option<KeyGroupOwnership>,
    // Scratch reused across batches.
    matches: Matches,
    unmatched: Vec<u32>,
    retracted: Vec<RowRef>,
}

impl RegularJoin {
    pub(super) fn new(keys: JoinKeys, join_type: JoinType, shape: OutputShape) -> Self {
        RegularJoin {
            keys,
            join_type,
            stores: [BatchStore::default(), BatchStore::default()],
            rows: [Vec::new(), Vec::new()],
            shape,
            ownership: None,
            matches: Matches::default(),
            unmatched: Vec::new(),
            retracted: Vec::new(),
        }
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
