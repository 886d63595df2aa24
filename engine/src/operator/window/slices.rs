//! The sliced window aggregation (tumbling, hopping, cumulating): one partial aggregate per
//! (key, slice), merged into window results when a window fires.
//!
//! Per batch: the times become slice ends (one arithmetic loop), the keys become key ids
//! (row-encoded, interned), each (key id, slice end) pair is looked up in a hash table that
//! yields its accumulator slot, and then every accumulator runs one typed loop over the batch.
//! Late rows go to a scratch slot that is cleared after the batch, so the accumulators never
//! see a filtered copy of the batch.
//!
//! Firing a window merges the slots of its slices (in slice order) into one scratch slot per
//! key, evaluates them and frees the scratch slots; a window of one slice (tumbling windows,
//! the first step of a cumulating window) is evaluated directly. A slice's slots are freed when
//! the last window containing it is past its allowed lateness.
//!
//! Snapshots write table `slices` (one row per (key, slice): key group, key, `slice_end` and
//! the accumulators' state, in slice order) and the firing progress (see [`super::checkpoint`]);
//! a restore re-creates the pairs in the same order and resumes from that progress.

use std::collections::BTreeMap;

use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, Int64Array};
use arrow::datatypes::{Int64Type, SchemaRef};
use arrow::record_batch::RecordBatch;
use hashbrown::HashTable;

use super::assigner::SliceAssigner;
use super::checkpoint::{self, KEY_COLUMNS, KeyGroupCache};
use super::{GroupSlots, TimeSource, WindowKeys, emit_rows, wall_clock_ms};
use crate::element::Watermark;
use crate::ids::CheckpointId;
use crate::operator::{Operator, OperatorContext, Output};
use crate::runtime::OperatorMetrics;
use crate::state::{ChangeTracker, KeyGroupOwnership, SnapshotTable, StateSnapshot, TouchedIds};
use crate::{Error, Result};

/// Name of the snapshot table of (key, slice) pairs.
const SLICES_TABLE: &str = "slices";

/// No scratch slot assigned to a key yet.
const NO_SLOT: u32 = u32::MAX;

/// One (key, slice) of the pair table.
#[derive(Debug, Clone, Copy)]
struct Pair {
    key: u32,
    slice_end: i64,
    slot: u32,
}

/// A 64-bit mix of (key, slice end) (the finalizer of a multiplicative hash); hashbrown uses the
/// top bits, so they must depend on every input bit.
#[inline]
fn pair_hash(key: u32, slice_end: i64) -> u64 {
    let mut x = (u64::from(key) << 32) ^ (slice_end as u64).rotate_left(23);
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

pub(crate) struct SliceWindowAggregate {
    assigner: SliceAssigner,
    time: TimeSource,
    allowed_lateness: i64,
    keys: WindowKeys,
    slots: GroupSlots,
    pairs: HashTable<Pair>,
    /// Slice end → its (key, slot) pairs, in first-seen order.
    slices: BTreeMap<i64, Vec<(u32, u32)>>,
    /// The watermark (or, for processing time, the clock minus one): every window with
    /// `end - 1 <= progress` has fired.
    progress: i64,
    /// Receives late rows; cleared after every batch.
    trash: u32,
    late_records_dropped: u64,
    output_schema: SchemaRef,
    ownership: Option<KeyGroupOwnership>,
    key_group_cache: KeyGroupCache,
    ahead: checkpoint::Ahead,
    /// Incremental checkpoints: the slices changed since the last completed checkpoint, and
    /// the keys whose pairs changed since the last snapshot.
    changes: Option<ChangeTracker>,
    touched: TouchedIds,
    // Scratch buffers reused across batches.
    times: Vec<i64>,
    key_ids: Vec<u32>,
    row_slots: Vec<u32>,
    scratch_of_key: Vec<u32>,
}

impl SliceWindowAggregate {
    pub(crate) fn new(
        assigner: SliceAssigner,
        time: TimeSource,
        allowed_lateness: i64,
        keys: WindowKeys,
        mut slots: GroupSlots,
        output_schema: SchemaRef,
    ) -> Self {
        let trash = slots.alloc();
        // Lateness only means something against a watermark.
        let allowed_lateness = if time.is_event_time() {
            allowed_lateness.max(0)
        } else {
            0
        };
        SliceWindowAggregate {
            assigner,
            time,
            allowed_lateness,
            keys,
            slots,
            pairs: HashTable::new(),
            slices: BTreeMap::new(),
            progress: Watermark::MIN.0,
            trash,
            late_records_dropped: 0,
            output_schema,
            ownership: None,
            key_group_cache: KeyGroupCache::default(),
            ahead: checkpoint::Ahead::default(),
            changes: None,
            touched: TouchedIds::default(),
            times: Vec::new(),
            key_ids: Vec::new(),
            row_slots: Vec::new(),
            scratch_of_key: Vec::new(),
        }
    }

    /// `window_end - 1 + allowed_lateness <= progress`: too late to change the window.
    fn is_expired(&self, window_end: i64) -> bool {
        self.is_expired_at(window_end, self.progress)
    }

    /// Whether the window is too late to change for a key whose windows fired up to
    /// `progress`.
    fn is_expired_at(&self, window_end: i64, progress: i64) -> bool {
        (window_end - 1).saturating_add(self.allowed_lateness) <= progress
    }

    /// How far the windows of `key` have fired: the operator's progress, unless the key's key
    /// group was further along before a restore (see [`checkpoint::Ahead`]). Callers update
    /// the key-group cache first when `ahead` is not empty.
    fn progress_of(&self, key: u32) -> i64 {
        checkpoint::key_progress(
            &self.ahead,
            self.ownership,
            &self.key_group_cache,
            key,
            self.progress,
        )
    }

    /// Whether the window ending at `end` had fired for `key` before a restore (its key group
    /// is ahead of the operator's progress).
    fn fired_before_restore(&self, key: u32, end: i64) -> bool {
        match self.ownership.filter(|_| !self.ahead.is_empty()) {
            Some(own) => self
                .ahead
                .fired(self.key_group_cache.get(key, own))
                .is_some_and(|fired| end - 1 <= fired),
            None => false,
        }
    }

    /// Brings the key-group cache up to date when some key groups are ahead.
    fn update_ahead_keys(&mut self) -> Result<()> {
        if let Some(own) = self.ownership.filter(|_| !self.ahead.is_empty()) {
            self.key_group_cache.update(&self.keys, own)?;
        }
        Ok(())
    }

    /// The slot of (key, slice end), created on first use.
    fn slot_of(&mut self, key: u32, slice_end: i64) -> u32 {
        let hash = pair_hash(key, slice_end);
        if let Some(pair) = self
            .pairs
            .find(hash, |p| p.key == key && p.slice_end == slice_end)
        {
            return pair.slot;
        }
        let slot = self.slots.alloc();
        self.pairs.insert_unique(
            hash,
            Pair {
                key,
                slice_end,
                slot,
            },
            |p| pair_hash(p.key, p.slice_end),
        );
        self.slices.entry(slice_end).or_default().push((key, slot));
        slot
    }

    /// Advances progress to `to`: fires every window with `end - 1` in `(progress, to]`, in
    /// order of their ends, then frees the slices no window needs any more.
    fn advance(&mut self, to: i64, out: &mut Output) -> Result<()> {
        if to <= self.progress {
            return Ok(());
        }
        let from = self.progress;
        // Slices of windows ending in (from + 1, to + 1] end after from + 1 - max size.
        let lowest = from
            .saturating_add(1)
            .saturating_sub(self.assigner.max_window_size());
        let highest = to.saturating_add(1);
        let mut ends: Vec<i64> = Vec::new();
        for &slice_end in self.slices.range(lowest..=highest).map(|(e, _)| e) {
            ends.extend(
                self.assigner
                    .window_ends(slice_end)
                    .filter(|&e| e - 1 > from && e - 1 <= to),
            );
        }
        ends.sort_unstable();
        ends.dedup();
        self.progress = to;
        self.update_ahead_keys()?;
        for end in ends {
            self.fire(end, None, out)?;
        }
        self.ahead.catch_up(self.progress);
        // Free slices whose last window is past its lateness (last window ends grow with the
        // slice end, so the expired slices are a prefix).
        while let Some((&slice_end, _)) = self.slices.first_key_value() {
            if !self.is_expired(self.assigner.last_window_end(slice_end)) {
                break;
            }
            let Some((_, pairs)) = self.slices.pop_first() else {
                break;
            };
            for &(key, _) in &pairs {
                if self
                    .changes
                    .as_ref()
                    .is_some_and(ChangeTracker::is_incremental)
                {
                    self.touched.mark(key);
                }
                if let Ok(found) = self.pairs.find_entry(pair_hash(key, slice_end), |p| {
                    p.key == key && p.slice_end == slice_end
                }) {
                    found.remove();
                }
            }
            let freed: Vec<u32> = pairs.iter().map(|&(_, slot)| slot).collect();
            self.slots.release(&freed);
        }
        Ok(())
    }

    /// Emits the window ending at `end`: for every key in its slices, or only for `only`.
    fn fire(&mut self, end: i64, only: Option<&[u32]>, out: &mut Output) -> Result<()> {
        let mut keys: Vec<u32> = Vec::new();
        let mut sources: Vec<u32> = Vec::new();
        let mut targets: Vec<u32> = Vec::new();
        let slice_ends: Vec<i64> = self.assigner.slices_of(end).collect();
        let single_slice = slice_ends.len() == 1;
        self.scratch_of_key.resize(self.keys.len(), NO_SLOT);
        for &slice_end in &slice_ends {
            let pairs: Vec<(u32, u32)> = match only {
                None => match self.slices.get(&slice_end) {
                    Some(pairs) => pairs.clone(),
                    None => continue,
                },
                Some(only) => only
                    .iter()
                    .filter_map(|&key| {
                        self.pairs
                            .find(pair_hash(key, slice_end), |p| {
                                p.key == key && p.slice_end == slice_end
                            })
                            .map(|p| (key, p.slot))
                    })
                    .collect(),
            };
            for (key, slot) in pairs {
                if only.is_none() && self.fired_before_restore(key, end) {
                    continue;
                }
                if single_slice {
                    keys.push(key);
                    sources.push(slot);
                    continue;
                }
                let target = &mut self.scratch_of_key[key as usize];
                if *target == NO_SLOT {
                    *target = self.slots.alloc();
                    keys.push(key);
                }
                sources.push(slot);
                targets.push(*target);
            }
        }
        if keys.is_empty() {
            return Ok(());
        }
        let evaluated = if single_slice {
            sources
        } else {
            self.slots.merge(&sources, &targets)?;
            keys.iter()
                .map(|&k| std::mem::replace(&mut self.scratch_of_key[k as usize], NO_SLOT))
                .collect()
        };
        let values = self.slots.evaluate(&evaluated)?;
        if !single_slice {
            self.slots.release(&evaluated);
        }
        let start = self.assigner.window_start(end);
        let rows = keys.len();
        emit_rows(
            &self.output_schema,
            self.keys.decode(&keys)?,
            vec![start; rows],
            vec![end; rows],
            values,
            out,
        )
    }

    /// Fires again, per key, the windows that late rows of the last batch updated.
    fn refire(&mut self, mut touched: Vec<(u32, i64)>, out: &mut Output) -> Result<()> {
        touched.sort_unstable();
        touched.dedup();
        let mut windows: Vec<(i64, u32)> = Vec::new();
        for &(key, slice_end) in &touched {
            let progress = self.progress_of(key);
            for end in self.assigner.window_ends(slice_end) {
                if end - 1 <= progress && !self.is_expired_at(end, progress) {
                    windows.push((end, key));
                }
            }
        }
        windows.sort_unstable();
        windows.dedup();
        let mut rest = windows.as_slice();
        while let Some(&(end, _)) = rest.first() {
            let count = rest.iter().take_while(|w| w.0 == end).count();
            let keys: Vec<u32> = rest[..count].iter().map(|w| w.1).collect();
            self.fire(end, Some(&keys), out)?;
            rest = &rest[count..];
        }
        Ok(())
    }
}

impl Operator for SliceWindowAggregate {
    fn open(&mut self, ctx: &OperatorContext) -> Result<()> {
        let own = checkpoint::ownership(ctx);
        self.ownership = Some(own);
        self.changes = Some(ChangeTracker::new(own, ctx.incremental_checkpoints));
        Ok(())
    }

    fn notify_checkpoint_complete(&mut self, checkpoint: CheckpointId) -> Result<()> {
        if let Some(changes) = &mut self.changes {
            changes.notify_complete(checkpoint);
        }
        Ok(())
    }

    fn snapshot(&mut self, checkpoint: CheckpointId) -> Result<StateSnapshot> {
        let own = checkpoint::required(self.ownership, "snapshotted")?;
        let changes = self
            .changes
            .as_mut()
            .ok_or_else(|| Error::Internal("window aggregate snapshotted before open".into()))?;
        self.key_group_cache.update(&self.keys, own)?;
        let cache = &self.key_group_cache;
        let dirty = self.touched.take_slices(changes, |key| cache.get(key, own));
        let selection = changes.snapshot(checkpoint, dirty);
        let rows = self.pairs.len();
        let mut keys = Vec::with_capacity(rows);
        let mut ends = Vec::with_capacity(rows);
        let mut slots = Vec::with_capacity(rows);
        for (&slice_end, pairs) in &self.slices {
            for &(key, slot) in pairs {
                if !selection.includes(cache.get(key, own)) {
                    continue;
                }
                keys.push(key);
                ends.push(slice_end);
                slots.push(slot);
            }
        }
        let key_groups = self.key_group_cache.key_groups(&self.keys, &keys, own)?;
        let batch = checkpoint::state_batch(
            key_groups,
            self.keys.key_bytes(&keys),
            vec![("slice_end", Arc::new(Int64Array::from(ends)) as ArrayRef)],
            self.slots.state(&slots)?,
        )?;
        Ok(StateSnapshot {
            key_groups: Some(own.range),
            tables: vec![
                SnapshotTable {
                    slices: selection.table_slices(),
                    name: SLICES_TABLE.into(),
                    batches: vec![batch],
                },
                checkpoint::progress_table(
                    own,
                    self.progress,
                    self.late_records_dropped,
                    &self.ahead,
                )?,
            ],
            sink_pre_commit: None,
        })
    }

    fn restore(&mut self, snapshot: &StateSnapshot) -> Result<()> {
        let own = checkpoint::required(self.ownership, "restored")?;
        if let Some(changes) = &mut self.changes {
            changes.reset();
        }
        self.touched.clear();
        if let Some(restored) = checkpoint::restored_progress(snapshot, own.range)? {
            self.progress = restored.progress;
            self.late_records_dropped = restored.late_records_dropped;
            self.ahead = restored.ahead;
        }
        let width = self.slots.state_width()?;
        for batch in checkpoint::owned_rows(snapshot, SLICES_TABLE, own.range, 1 + width)? {
            let keys = batch.column(1).as_binary::<i32>();
            let ends = checkpoint::typed_column::<Int64Type>(
                &batch,
                KEY_COLUMNS,
                SLICES_TABLE,
                "slice_end",
            )?;
            let mut slots = Vec::with_capacity(batch.num_rows());
            for (key, &slice_end) in keys.iter().zip(ends.values().iter()) {
                let key = key.ok_or_else(|| {
                    Error::data("window aggregate snapshot table 'slices'", "NULL key")
                })?;
                let key = self.keys.intern_bytes(key);
                slots.push(self.slot_of(key, slice_end));
            }
            self.slots
                .restore_state(&slots, &batch.columns()[KEY_COLUMNS + 1..])?;
        }
        Ok(())
    }

    fn process_batch(&mut self, _input: usize, batch: RecordBatch, out: &mut Output) -> Result<()> {
        let event_time = self.time.is_event_time();
        let now = if event_time {
            0
        } else {
            let now = wall_clock_ms().max(self.progress.saturating_add(1));
            self.advance(now - 1, out)?;
            now
        };
        let mut times = std::mem::take(&mut self.times);
        let mut key_ids = std::mem::take(&mut self.key_ids);
        let mut row_slots = std::mem::take(&mut self.row_slots);
        self.time.times(&batch, now, &mut times)?;
        self.keys.intern(&batch, &mut key_ids)?;
        if self
            .changes
            .as_ref()
            .is_some_and(ChangeTracker::is_incremental)
        {
            self.touched.mark_all(&key_ids);
        }
        self.update_ahead_keys()?;
        row_slots.clear();
        let mut touched_fired: Vec<(u32, i64)> = Vec::new();
        for (&t, &key) in times.iter().zip(&key_ids) {
            let slice_end = self.assigner.slice_end(t);
            let first = self.assigner.first_window_end(slice_end);
            let last = self.assigner.last_window_end(slice_end);
            if last < first {
                // In the gap between hopping windows (slide > size): in no window at all.
                row_slots.push(self.trash);
                continue;
            }
            let progress = self.progress_of(key);
            if event_time && self.is_expired_at(last, progress) {
                self.late_records_dropped += 1;
                row_slots.push(self.trash);
                continue;
            }
            row_slots.push(self.slot_of(key, slice_end));
            if first - 1 <= progress {
                // A window of this slice has fired: it fires again with this row.
                touched_fired.push((key, slice_end));
            }
        }
        self.slots.update(&row_slots, &batch)?;
        self.slots.clear(&[self.trash]);
        self.times = times;
        self.key_ids = key_ids;
        self.row_slots = row_slots;
        if !touched_fired.is_empty() {
            self.refire(touched_fired, out)?;
        }
        Ok(())
    }

    fn on_processing_time(&mut self, now_ms: i64, out: &mut Output) -> Result<()> {
        if self.time.is_event_time() {
            Ok(())
        } else {
            self.advance(now_ms - 1, out)
        }
    }

    fn process_watermark(&mut self, watermark: Watermark, out: &mut Output) -> Result<()> {
        let to = if self.time.is_event_time() {
            watermark.0
        } else {
            wall_clock_ms() - 1
        };
        self.advance(to, out)?;
        out.push_watermark(watermark);
        Ok(())
    }

    fn finish(&mut self, out: &mut Output) -> Result<()> {
        // Bounded input: every window fires (event time has seen Watermark::MAX already).
        self.advance(Watermark::MAX.0, out)
    }

    fn report_metrics(&self, metrics: &mut OperatorMetrics) {
        metrics.late_records_dropped = self.late_records_dropped;
        metrics.state_keys = self.pairs.len() as u64;
        metrics.state_bytes = (self.keys.allocated_bytes()
            + self.key_group_cache.allocated_bytes()
            + self.touched.allocated_bytes()
            + self.slots.allocated_bytes()
            + self.pairs.capacity() * std::mem::size_of::<Pair>()
            + self
                .slices
                .values()
                .map(|v| v.capacity() * std::mem::size_of::<(u32, u32)>())
                .sum::<usize>()) as u64;
    }
}
