//! The tumbling window join (inner): rows with equal keys whose event times fall in the same
//! window `[start, start + size)` join. Flink SQL's window join over `TUMBLE`.
//!
//! Rows are buffered per (key id, window start) in a slot holding one `Vec<RowRef>` per side.
//! Slots are indexed by window start in a `BTreeMap`, so a watermark pops exactly the windows it
//! closes: a window fires once the watermark reaches `start + size - 1` (its last
//! millisecond). Firing emits the cross product of the slot's two row lists and releases the
//! rows; the slot is reused for later windows. A row whose window has already fired is late:
//! counted in `late_records_dropped` and dropped.
//!
//! Snapshots hold each side's buffered rows with their key groups and the watermark (see
//! [`super::checkpoint`]); a restore buffers the rows again into their windows.

use std::collections::BTreeMap;

use arrow::record_batch::RecordBatch;
use hashbrown::HashMap;

use super::checkpoint;
use super::{BatchStore, EMIT_BATCH_ROWS, JoinKeys, OutputShape, RowRef, event_times, usable_rows};
use crate::element::Watermark;
use crate::ids::CheckpointId;
use crate::operator::aggregate::GroupTable;
use crate::operator::{Operator, OperatorContext, Output};
use crate::runtime::OperatorMetrics;
use crate::state::{KeyGroupOwnership, StateSnapshot};
use crate::{Error, Result};

/// The rows of one key in one window.
#[derive(Default)]
struct WindowSlot {
    rows: [Vec<RowRef>; 2],
    key: u32,
}

pub(crate) struct WindowJoin {
    keys: JoinKeys,
    time_columns: [usize; 2],
    size: i64,
    stores: [BatchStore; 2],
    /// (key id, window start) → slot.
    slot_of: HashMap<(u32, i64), u32>,
    slots: Vec<WindowSlot>,
    free_slots: Vec<u32>,
    /// Window start → the slots of that window, for firing in time order.
    pending: BTreeMap<i64, Vec<u32>>,
    watermark: i64,
    late: u64,
    shape: OutputShape,
    ownership: Option<KeyGroupOwnership>,
    times: Vec<i64>,
    pairs: [Vec<RowRef>; 2],
}

impl WindowJoin {
    pub(super) fn new(
        keys: JoinKeys,
        time_columns: [usize; 2],
        size: i64,
        shape: OutputShape,
    ) -> Self {
        WindowJoin {
            keys,
            time_columns,
            size,
            stores: [BatchStore::default(), BatchStore::default()],
            slot_of: HashMap::new(),
            slots: Vec::new(),
            free_slots: Vec::new(),
            pending: BTreeMap::new(),
            watermark: i64::MIN,
            late: 0,
            shape,
            ownership: None,
            times: Vec::new(),
            pairs: [Vec::new(), Vec::new()],
        }
    }

    /// Emits and drops every window whose last millisecond is at or below the watermark.
    fn fire(&mut self, out: &mut Output) -> Result<()> {
        let WindowJoin {
            stores,
            slot_of,
            slots,
            free_slots,
            pending,
            watermark,
            shape,
            pairs,
            size,
            ..
        } = self;
        while let Some(entry) = pending.first_entry() {
            if entry.key().saturating_add(*size - 1) > *watermark {
                break;
            }
            let start = *entry.key();
            let fired = entry.remove();
            for &slot in &fired {
                let WindowSlot { rows, key } = &mut slots[slot as usize];
                for &l in &rows[0] {
                    for &r in &rows[1] {
                        pairs[0].push(l);
                        pairs[1].push(r);
                    }
                    if pairs[0].len() >= EMIT_BATCH_ROWS {
                        flush(stores, pairs, shape, out)?;
                    }
                }
                flush(stores, pairs, shape, out)?;
                for (store, list) in stores.iter_mut().zip(rows.iter_mut()) {
                    for &row in list.iter() {
                        store.release(row);
                    }
                    list.clear();
                }
                slot_of.remove(&(*key, start));
                free_slots.push(slot);
            }
        }
        if pending.is_empty() && self.keys.len() > 0 {
            // No window is open: no key id is referenced, so the key table can start over.
            self.keys.table = GroupTable::default();
        }
        Ok(())
    }
}

/// Emits the gathered pairs and clears them.
fn flush(
    stores: &mut [BatchStore; 2],
    pairs: &mut [Vec<RowRef>; 2],
    shape: &OutputShape,
    out: &mut Output,
) -> Result<()> {
    if pairs[0].is_empty() {
        return Ok(());
    }
    let [left_store, right_store] = stores;
    let left = left_store.gather(&pairs[0])?;
    let right = right_store.gather(&pairs[1])?;
    shape.emit(out, None, left, right)?;
    pairs[0].clear();
    pairs[1].clear();
    Ok(())
}

impl Operator for WindowJoin {
    fn open(&mut self, ctx: &OperatorContext) -> Result<()> {
        self.ownership = Some(checkpoint::ownership(ctx));
        Ok(())
    }

    fn snapshot(&mut self, _checkpoint: CheckpointId) -> Result<StateSnapshot> {
        let own = checkpoint::required(self.ownership, "snapshotted")?;
        let mut tables = (0..2)
            .map(|side| {
                checkpoint::side_table(
                    side,
                    &mut self.stores[side],
                    self.slots.iter().flat_map(|s| s.rows[side].iter().copied()),
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
        if self.watermark != i64::MIN || !self.pending.is_empty() {
            return Err(Error::Internal(
                "window join restored after it processed elements".into(),
            ));
        }
        // Buffering the rows as new input rebuilds their windows; at the initial watermark no
        // row is late and nothing fires.
        let mut out = Output::default();
        for side in 0..2 {
            let schema = self.shape.inputs[side].clone();
            for rows in checkpoint::restored_side(snapshot, side, &schema, false, own)? {
                self.process_batch(side, rows.batch, &mut out)?;
            }
        }
        if let Some((watermark, late)) = checkpoint::restored_progress(snapshot)? {
            self.watermark = watermark;
            self.late = late;
        }
        Ok(())
    }

    fn process_batch(&mut self, input: usize, batch: RecordBatch, out: &mut Output) -> Result<()> {
        let _ = out;
        let side = input.min(1);
        let valid = self.keys.intern(side, &batch)?;
        let time_column = batch.column(self.time_columns[side]);
        let valid = usable_rows(valid, Some(time_column.as_ref()));
        event_times(time_column.as_ref(), &mut self.times)?;
        let batch_id = self.stores[side].next_id()?;
        let mut stored = 0usize;
        for (row, (&key, &time)) in self.keys.ids.iter().zip(&self.times).enumerate() {
            if valid.as_ref().is_some_and(|v| v.is_null(row)) {
                continue;
            }
            let start = time - time.rem_euclid(self.size);
            if start.saturating_add(self.size - 1) <= self.watermark {
                self.late += 1;
                continue;
            }
            let slot = match self.slot_of.get(&(key, start)) {
                Some(&slot) => slot,
                None => {
                    let slot = match self.free_slots.pop() {
                        Some(slot) => slot,
                        None => {
                            self.slots.push(WindowSlot::default());
                            (self.slots.len() - 1) as u32
                        }
                    };
                    self.slots[slot as usize].key = key;
                    self.slot_of.insert((key, start), slot);
                    self.pending.entry(start).or_default().push(slot);
                    slot
                }
            };
            self.slots[slot as usize].rows[side].push(RowRef {
                batch: batch_id,
                row: row as u32,
            });
            stored += 1;
        }
        if stored > 0 {
            let times = std::mem::take(&mut self.times);
            self.stores[side].push(batch, times, Vec::new(), stored);
        }
        Ok(())
    }

    fn process_watermark(&mut self, watermark: Watermark, out: &mut Output) -> Result<()> {
        self.watermark = self.watermark.max(watermark.0);
        self.fire(out)?;
        out.push_watermark(watermark);
        Ok(())
    }

    fn finish(&mut self, out: &mut Output) -> Result<()> {
        // Bounded input ends with Watermark::MAX, which fired everything; this covers inputs
        // that end without one.
        self.watermark = i64::MAX;
        self.fire(out)
    }

    fn report_metrics(&self, metrics: &mut OperatorMetrics) {
        metrics.late_records_dropped = self.late;
        metrics.state_keys = self.slot_of.len() as u64;
        let slots: usize = self
            .slots
            .iter()
            .flat_map(|s| s.rows.iter())
            .map(|l| l.capacity() * std::mem::size_of::<RowRef>())
            .sum();
        metrics.state_bytes = (self
            .stores
            .iter()
            .map(BatchStore::allocated_bytes)
            .sum::<usize>()
            + slots
            + self.slot_of.capacity() * std::mem::size_of::<((u32, i64), u32)>()
            + self.keys.table.allocated_bytes()) as u64;
    }
}
