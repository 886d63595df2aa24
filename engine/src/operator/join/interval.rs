//! The interval join (Flink's `IntervalJoinOperator`, inner): a left row `l` and a right row
//! `r` with equal keys join when `r.time + lower <= l.time <= r.time + upper`.
//!
//! Each side keeps its rows per key id (a `Vec<RowRef>` per key). A batch from one side probes
//! the other side's rows of the same key and emits the matches at once, then stores its own
//! rows. Results therefore do not wait for the watermark.
//!
//! Cleanup: after watermark `wm` every later row has a time above `wm`. A later right row can
//! still match a left row only if `l.time - lower > wm`, and a later left row a right row only
//! if `r.time + upper > wm`; rows at or below these bounds are dropped. A row that arrives at or
//! below the watermark is late: it is counted in `late_records_dropped` and dropped, as Flink
//! does. To keep cleanup cheap, a sweep over the state runs only once the batches that are
//! wholly expired hold at least a quarter of the stored rows, so every row is visited a
//! constant number of times on average; a sweep then drops every expired row, and compacts
//! the key table when most keys have no rows left.
//!
//! Snapshots hold each side's rows with their key groups and the watermark (see
//! [`super::checkpoint`]); the time bounds come from the plan.

use arrow::record_batch::RecordBatch;

use super::checkpoint::{self, RestoredRows};
use super::{BatchStore, JoinKeys, Matches, OutputShape, RowRef, event_times, usable_rows};
use crate::Result;
use crate::element::Watermark;
use crate::ids::CheckpointId;
use crate::operator::aggregate::GroupTable;
use crate::operator::{Operator, OperatorContext, Output};
use crate::runtime::OperatorMetrics;
use crate::state::{KeyGroupOwnership, StateSnapshot};

/// Key tables with fewer entries are never compacted (the rebuild would cost more than the
/// memory it frees).
const MIN_KEYS_TO_COMPACT: usize = 1024;

/// One input's state.
#[derive(Default)]
struct Side {
    store: BatchStore,
    /// Stored rows per key id.
    rows: Vec<Vec<RowRef>>,
}

pub(crate) struct IntervalJoin {
    keys: JoinKeys,
    time_columns: [usize; 2],
    lower: i64,
    upper: i64,
    sides: [Side; 2],
    watermark: i64,
    late: u64,
    shape: OutputShape,
    ownership: Option<KeyGroupOwnership>,
    // Scratch reused across batches.
    times: Vec<i64>,
    matches: Matches,
}

impl IntervalJoin {
    pub(super) fn new(
        keys: JoinKeys,
        time_columns: [usize; 2],
        lower: i64,
        upper: i64,
        shape: OutputShape,
    ) -> Self {
        IntervalJoin {
            keys,
            time_columns,
            lower,
            upper,
            sides: [Side::default(), Side::default()],
            watermark: i64::MIN,
            late: 0,
            shape,
            ownership: None,
            times: Vec::new(),
            matches: Matches::default(),
        }
    }

    /// Rows of `side` with a time at or below this can no longer match anything.
    fn expiry_bound(&self, side: usize) -> i64 {
        if side == 0 {
            self.watermark.saturating_add(self.lower)
        } else {
            self.watermark.saturating_sub(self.upper)
        }
    }

    /// The range of the other side's times that a row of `side` at `time` joins.
    fn partner_range(&self, side: usize, time: i64) -> (i64, i64) {
        if side == 0 {
            (
                time.saturating_sub(self.upper),
                time.saturating_sub(self.lower),
            )
        } else {
            (
                time.saturating_add(self.lower),
                time.saturating_add(self.upper),
            )
        }
    }

    /// Rows held in state, both sides.
    fn stored_rows(&self) -> usize {
        self.sides.iter().map(|s| s.store.live_rows).sum()
    }

    /// Drops every stored row at or below its side's expiry bound.
    fn sweep(&mut self) {
        for side in 0..2 {
            let bound = self.expiry_bound(side);
            let Side { store, rows } = &mut self.sides[side];
            for list in rows.iter_mut() {
                list.retain(|&row| {
                    let keep = store.time(row) > bound;
                    if !keep {
                        store.release(row);
                    }
                    keep
                });
                if list.is_empty() && list.capacity() > 0 {
                    *list = Vec::new();
                }
            }
        }
        let live_keys = self.live_keys();
        if self.keys.len() >= MIN_KEYS_TO_COMPACT && live_keys * 2 < self.keys.len() {
            self.compact_keys();
        }
    }

    fn live_keys(&self) -> usize {
        (0..self.keys.len())
            .filter(|&k| {
                self.sides
                    .iter()
                    .any(|s| s.rows.get(k).is_some_and(|l| !l.is_empty()))
            })
            .count()
    }

    /// Rebuilds the key table with only the keys that still have rows.
    fn compact_keys(&mut self) {
        let mut table = GroupTable::default();
        let mut rows: [Vec<Vec<RowRef>>; 2] = [Vec::new(), Vec::new()];
        for key in 0..self.keys.len() {
            let live = self
                .sides
                .iter()
                .any(|s| s.rows.get(key).is_some_and(|l| !l.is_empty()));
            if !live {
                continue;
            }
            let id = table.intern_one(self.keys.table.key(key as u32)) as usize;
            for (side, new_rows) in rows.iter_mut().enumerate() {
                new_rows.resize_with(id + 1, Vec::new);
                if let Some(list) = self.sides[side].rows.get_mut(key) {
                    new_rows[id] = std::mem::take(list);
                }
            }
        }
        self.keys.table = table;
        for (side, new_rows) in rows.into_iter().enumerate() {
            self.sides[side].rows = new_rows;
        }
    }
}

impl IntervalJoin {
    /// Stores restored rows of `side` as they were, without probing the other side.
    fn store_restored(&mut self, side: usize, restored: RestoredRows) -> Result<()> {
        let batch = restored.batch;
        self.keys.intern(side, &batch)?;
        let mut times = Vec::with_capacity(batch.num_rows());
        event_times(batch.column(self.time_columns[side]).as_ref(), &mut times)?;
        let key_count = self.keys.len();
        for s in &mut self.sides {
            s.rows.resize_with(key_count, Vec::new);
        }
        let batch_id = self.sides[side].store.next_id()?;
        for (row, &key) in self.keys.ids.iter().enumerate() {
            self.sides[side].rows[key as usize].push(RowRef {
                batch: batch_id,
                row: row as u32,
            });
        }
        let rows = batch.num_rows();
        self.sides[side].store.push(batch, times, Vec::new(), rows);
        Ok(())
    }
}

impl Operator for IntervalJoin {
    fn open(&mut self, ctx: &OperatorContext) -> Result<()> {
        self.ownership = Some(checkpoint::ownership(ctx));
        Ok(())
    }

    fn snapshot(&mut self, _checkpoint: CheckpointId) -> Result<StateSnapshot> {
        let own = checkpoint::required(self.ownership, "snapshotted")?;
        let mut tables = (0..2)
            .map(|side| {
                let Side { store, rows } = &mut self.sides[side];
                checkpoint::side_table(
                    side,
                    store,
                    rows.iter().flatten().copied(),
                    &self.keys.columns[side],
                    false,
                    own,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        tables.push(checkpoint::progress_table(self.watermark, self.late)?);
        Ok(StateSnapshot {
            key_groups: Some(own.range),
            tables,
            sink_pre_commit: None,
        })
    }

    fn restore(&mut self, snapshot: &StateSnapshot) -> Result<()> {
        let own = checkpoint::required(self.ownership, "restored")?;
        if let Some((watermark, late)) = checkpoint::restored_progress(snapshot)? {
            self.watermark = watermark;
            self.late = late;
        }
        for side in 0..2 {
            let schema = self.shape.inputs[side].clone();
            for rows in checkpoint::restored_side(snapshot, side, &schema, false, own)? {
                self.store_restored(side, rows)?;
            }
        }
        Ok(())
    }

    fn process_batch(&mut self, input: usize, batch: RecordBatch, out: &mut Output) -> Result<()> {
        let side = input.min(1);
        let other = 1 - side;
        let valid = self.keys.intern(side, &batch)?;
        let time_column = batch.column(self.time_columns[side]);
        let valid = usable_rows(valid, Some(time_column.as_ref()));
        event_times(time_column.as_ref(), &mut self.times)?;
        let key_count = self.keys.len();
        for s in &mut self.sides {
            s.rows.resize_with(key_count, Vec::new);
        }
        let bound = self.expiry_bound(side);
        let batch_id = self.sides[side].store.next_id()?;
        self.matches.clear();
        let mut stored = 0usize;
        let mut late = 0u64;
        for (row, (&key, &time)) in self.keys.ids.iter().zip(&self.times).enumerate() {
            if valid.as_ref().is_some_and(|v| v.is_null(row)) {
                continue;
            }
            if time <= self.watermark {
                late += 1;
                continue;
            }
            let (low, high) = self.partner_range(side, time);
            let theirs = &self.sides[other];
            for &candidate in &theirs.rows[key as usize] {
                let t = theirs.store.time(candidate);
                if t >= low && t <= high {
                    self.matches.push(row as u32, candidate);
                }
            }
            if time > bound {
                self.sides[side].rows[key as usize].push(RowRef {
                    batch: batch_id,
                    row: row as u32,
                });
                stored += 1;
            }
        }
        self.late += late;
        let [left, right] = &mut self.sides;
        let theirs = if side == 0 { right } else { left };
        self.shape
            .emit_pairs(out, None, (side, &batch), &mut theirs.store, &self.matches)?;
        if stored > 0 {
            let times = std::mem::take(&mut self.times);
            self.sides[side]
                .store
                .push(batch, times, Vec::new(), stored);
        }
        Ok(())
    }

    fn process_watermark(&mut self, watermark: Watermark, out: &mut Output) -> Result<()> {
        self.watermark = self.watermark.max(watermark.0);
        if watermark == Watermark::MAX {
            for side in &mut self.sides {
                side.store.clear();
                side.rows.clear();
            }
            self.keys.table = GroupTable::default();
        } else {
            let expired: usize = (0..2)
                .map(|s| self.sides[s].store.expired_estimate(self.expiry_bound(s)))
                .sum();
            if expired > 0 && expired * 4 >= self.stored_rows() {
                self.sweep();
            }
        }
        out.push_watermark(watermark);
        Ok(())
    }

    fn report_metrics(&self, metrics: &mut OperatorMetrics) {
        metrics.late_records_dropped = self.late;
        metrics.state_keys = self.live_keys() as u64;
        let lists: usize = self
            .sides
            .iter()
            .flat_map(|s| s.rows.iter())
            .map(|l| l.capacity() * std::mem::size_of::<RowRef>())
            .sum();
        metrics.state_bytes = (self
            .sides
            .iter()
            .map(|s| s.store.allocated_bytes())
            .sum::<usize>()
            + lists
            + self.keys.table.allocated_bytes()) as u64;
    }
}

#[cfg(test)]
impl IntervalJoin {
    /// Rows held in state (tests of cleanup).
    pub(super) fn state_rows(&self) -> usize {
        self.stored_rows()
    }

    /// Entries of the key table (tests of compaction).
    pub(super) fn key_table_len(&self) -> usize {
        self.keys.len()
    }
}
