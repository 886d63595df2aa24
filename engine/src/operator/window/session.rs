//! Session windows: per key, a window `[first record, last record + gap)` that grows while
//! records keep arriving within `gap` of it and merges with its neighbour when a record
//! bridges two sessions (windows that touch merge, as Flink's `TimeWindow::intersects`).
//!
//! Per batch, a row-at-a-time loop (no dynamic calls, no allocation except for a new session)
//! finds each row's session in its key's short list of open sessions and yields its
//! accumulator slot; sessions merged during the batch redirect their slots to the surviving
//! one, whose state absorbs theirs (`GroupSlots::merge`) before the accumulators fold the whole
//! batch in one typed loop each. Open sessions are indexed by end so a watermark fires exactly
//! the sessions whose `end - 1` it reached.
//!
//! Snapshots write table `sessions` (one row per open or retained session: key group, key,
//! `start`, `end`, `fired` and the accumulators' state) and the firing progress (see
//! [`super::checkpoint`]); a restore re-creates the sessions and their indexes.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Int64Array};
use arrow::datatypes::{Int64Type, SchemaRef};
use arrow::record_batch::RecordBatch;

use super::checkpoint::{self, KEY_COLUMNS, KeyGroupCache};
use super::{GroupSlots, TimeSource, WindowKeys, emit_rows, wall_clock_ms};
use crate::element::Watermark;
use crate::ids::CheckpointId;
use crate::operator::{Operator, OperatorContext, Output};
use crate::runtime::OperatorMetrics;
use crate::state::{ChangeTracker, KeyGroupOwnership, SnapshotTable, StateSnapshot, TouchedIds};
use crate::{Error, Result};

/// Name of the snapshot table of sessions.
const SESSIONS_TABLE: &str = "sessions";

#[derive(Debug, Clone, Copy)]
struct Session {
    start: i64,
    end: i64,
    slot: u32,
    /// Fired and kept only for late records within the allowed lateness.
    fired: bool,
}

pub(crate) struct SessionWindowAggregate {
    gap: i64,
    time: TimeSource,
    allowed_lateness: i64,
    keys: WindowKeys,
    slots: GroupSlots,
    /// Open sessions of each key id, sorted by start, not overlapping.
    sessions: Vec<Vec<Session>>,
    /// (end, key, start) of every session not yet fired.
    pending: BTreeSet<(i64, u32, i64)>,
    /// (end, key, start) of fired sessions kept for their allowed lateness.
    retained: BTreeSet<(i64, u32, i64)>,
    progress: i64,
    trash: u32,
    late_records_dropped: u64,
    output_schema: SchemaRef,
    ownership: Option<KeyGroupOwnership>,
    key_group_cache: KeyGroupCache,
    ahead: checkpoint::Ahead,
    /// Incremental checkpoints: the slices changed since the last completed checkpoint, and
    /// the keys whose sessions changed since the last snapshot.
    changes: Option<ChangeTracker>,
    touched_keys: TouchedIds,
    times: Vec<i64>,
    key_ids: Vec<u32>,
    row_slots: Vec<u32>,
}

impl SessionWindowAggregate {
    pub(crate) fn new(
        gap: i64,
        time: TimeSource,
        allowed_lateness: i64,
        keys: WindowKeys,
        mut slots: GroupSlots,
        output_schema: SchemaRef,
    ) -> Self {
        let trash = slots.alloc();
        let allowed_lateness = if time.is_event_time() {
            allowed_lateness.max(0)
        } else {
            0
        };
        SessionWindowAggregate {
            gap,
            time,
            allowed_lateness,
            keys,
            slots,
            sessions: Vec::new(),
            pending: BTreeSet::new(),
            retained: BTreeSet::new(),
            progress: Watermark::MIN.0,
            trash,
            late_records_dropped: 0,
            output_schema,
            ownership: None,
            key_group_cache: KeyGroupCache::default(),
            ahead: checkpoint::Ahead::default(),
            changes: None,
            touched_keys: TouchedIds::default(),
            times: Vec::new(),
            key_ids: Vec::new(),
            row_slots: Vec::new(),
        }
    }

    /// Records that the sessions of `key` changed (incremental checkpoints only).
    fn changed(&mut self, key: u32) {
        if self
            .changes
            .as_ref()
            .is_some_and(ChangeTracker::is_incremental)
        {
            self.touched_keys.mark(key);
        }
    }

    fn is_expired(&self, end: i64) -> bool {
        self.is_expired_at(end, self.progress)
    }

    /// Whether a session ending at `end` is too late to change for a key whose sessions fired
    /// up to `progress`.
    fn is_expired_at(&self, end: i64, progress: i64) -> bool {
        (end - 1).saturating_add(self.allowed_lateness) <= progress
    }

    /// How far the sessions of `key` have fired: the operator's progress, unless the key's key
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

    fn unindex(&mut self, key: u32, session: &Session) {
        let entry = (session.end, key, session.start);
        if session.fired {
            self.retained.remove(&entry);
        } else {
            self.pending.remove(&entry);
        }
    }

    fn index(&mut self, key: u32, session: &Session) {
        let entry = (session.end, key, session.start);
        if session.fired {
            self.retained.insert(entry);
        } else {
            self.pending.insert(entry);
        }
    }

    /// Puts the row at time `t` of `key` into a session; returns its slot, or `None` when the
    /// row is late. Merged-away slots are recorded in `redirects` (old slot → surviving slot and
    /// the merged-away session's start).
    fn assign(
        &mut self,
        key: u32,
        t: i64,
        redirects: &mut HashMap<u32, (u32, i64)>,
        touched: &mut Vec<(u32, i64)>,
    ) -> Option<u32> {
        let end = t.saturating_add(self.gap);
        let list = &self.sessions[key as usize];
        // Sessions that touch [t, end]: a contiguous run, as sessions do not overlap.
        let first = list.partition_point(|s| s.end < t);
        let count = list[first..].iter().take_while(|s| s.start <= end).count();
        let progress = self.progress_of(key);
        if count == 0 {
            if self.time.is_event_time() && self.is_expired_at(end, progress) {
                return None;
            }
            let session = Session {
                start: t,
                end,
                slot: self.slots.alloc(),
                fired: false,
            };
            self.sessions[key as usize].insert(first, session);
            self.index(key, &session);
            return Some(session.slot);
        }
        let merged: Vec<Session> = self.sessions[key as usize]
            .drain(first..first + count)
            .collect();
        let mut survivor = merged[0];
        self.unindex(key, &survivor);
        survivor.start = survivor.start.min(t);
        survivor.end = merged[count - 1].end.max(end);
        for other in &merged[1..] {
            self.unindex(key, other);
            redirects.insert(other.slot, (survivor.slot, other.start));
        }
        // A fired session that grows past the watermark is pending again; one that stays
        // behind it fires again after this batch with its updated result.
        survivor.fired = survivor.fired && survivor.end - 1 <= progress;
        if survivor.end - 1 <= progress {
            survivor.fired = true;
            touched.push((key, survivor.start));
        }
        self.sessions[key as usize].insert(first, survivor);
        self.index(key, &survivor);
        Some(survivor.slot)
    }

    /// Fires the sessions whose end - 1 the progress has reached; frees expired ones.
    fn advance(&mut self, to: i64, out: &mut Output) -> Result<()> {
        if to <= self.progress {
            return Ok(());
        }
        self.progress = to;
        let mut due: Vec<(u32, i64)> = Vec::new();
        while let Some(&(end, key, start)) = self.pending.first() {
            if end - 1 > to {
                break;
            }
            self.pending.pop_first();
            if let Some(s) = self.session_mut(key, start) {
                s.fired = true;
            }
            self.retained.insert((end, key, start));
            due.push((key, start));
            self.changed(key);
        }
        self.emit(&due, out)?;
        let mut freed = Vec::new();
        while let Some(&(end, key, start)) = self.retained.first() {
            if !self.is_expired(end) {
                break;
            }
            self.retained.pop_first();
            self.changed(key);
            let list = &mut self.sessions[key as usize];
            if let Some(i) = list.iter().position(|s| s.start == start) {
                freed.push(list.remove(i).slot);
            }
        }
        self.slots.release(&freed);
        self.ahead.catch_up(self.progress);
        Ok(())
    }

    /// Frees the retained sessions of key groups that are [`checkpoint::Ahead`] and past their
    /// allowed lateness there (their old subtask had freed them).
    fn free_expired_ahead(&mut self) {
        if self.ahead.is_empty() {
            return;
        }
        let expired: Vec<(i64, u32, i64)> = self
            .retained
            .iter()
            .copied()
            .filter(|&(end, key, _)| self.is_expired_at(end, self.progress_of(key)))
            .collect();
        let mut freed = Vec::with_capacity(expired.len());
        for entry @ (_, key, start) in expired {
            self.retained.remove(&entry);
            self.changed(key);
            let list = &mut self.sessions[key as usize];
            if let Some(i) = list.iter().position(|s| s.start == start) {
                freed.push(list.remove(i).slot);
            }
        }
        self.slots.release(&freed);
    }

    fn session_mut(&mut self, key: u32, start: i64) -> Option<&mut Session> {
        self.sessions[key as usize]
            .iter_mut()
            .find(|s| s.start == start)
    }

    /// Emits the current result of the sessions `(key, start)`.
    fn emit(&mut self, sessions: &[(u32, i64)], out: &mut Output) -> Result<()> {
        if sessions.is_empty() {
            return Ok(());
        }
        let mut keys = Vec::with_capacity(sessions.len());
        let mut starts = Vec::with_capacity(sessions.len());
        let mut ends = Vec::with_capacity(sessions.len());
        let mut slots = Vec::with_capacity(sessions.len());
        for &(key, start) in sessions {
            let session = self.sessions[key as usize]
                .iter()
                .find(|s| s.start == start)
                .ok_or_else(|| Error::Internal(format!("session of key {key} at {start} lost")))?;
            keys.push(key);
            starts.push(session.start);
            ends.push(session.end);
            slots.push(session.slot);
        }
        let values = self.slots.evaluate(&slots)?;
        emit_rows(
            &self.output_schema,
            self.keys.decode(&keys)?,
            starts,
            ends,
            values,
            out,
        )
    }
}

/// Follows redirects to the surviving slot.
fn resolve(redirects: &HashMap<u32, (u32, i64)>, mut slot: u32) -> u32 {
    while let Some(&(next, _)) = redirects.get(&slot) {
        slot = next;
    }
    slot
}

impl Operator for SessionWindowAggregate {
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
        let dirty = self
            .touched_keys
            .take_slices(changes, |key| cache.get(key, own));
        let selection = changes.snapshot(checkpoint, dirty);
        let rows = self.pending.len() + self.retained.len();
        let mut keys = Vec::with_capacity(rows);
        let mut starts = Vec::with_capacity(rows);
        let mut ends = Vec::with_capacity(rows);
        let mut fired = Vec::with_capacity(rows);
        let mut slots = Vec::with_capacity(rows);
        for (key, list) in self.sessions.iter().enumerate() {
            if !selection.includes(cache.get(key as u32, own)) {
                continue;
            }
            for session in list {
                keys.push(key as u32);
                starts.push(session.start);
                ends.push(session.end);
                fired.push(Some(session.fired));
                slots.push(session.slot);
            }
        }
        let key_groups = self.key_group_cache.key_groups(&self.keys, &keys, own)?;
        let batch = checkpoint::state_batch(
            key_groups,
            self.keys.key_bytes(&keys),
            vec![
                ("start", Arc::new(Int64Array::from(starts)) as ArrayRef),
                ("end", Arc::new(Int64Array::from(ends))),
                ("fired", Arc::new(BooleanArray::from(fired))),
            ],
            self.slots.state(&slots)?,
        )?;
        Ok(StateSnapshot {
            key_groups: Some(own.range),
            tables: vec![
                SnapshotTable {
                    slices: selection.table_slices(),
                    name: SESSIONS_TABLE.into(),
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
        if let Some(restored) = checkpoint::restored_progress(snapshot, own.range)? {
            self.progress = restored.progress;
            self.late_records_dropped = restored.late_records_dropped;
            self.ahead = restored.ahead;
        }
        let width = self.slots.state_width()?;
        for batch in checkpoint::owned_rows(snapshot, SESSIONS_TABLE, own.range, 3 + width)? {
            let keys = batch.column(1).as_binary::<i32>();
            let column = |i: usize, name: &str| {
                checkpoint::typed_column::<Int64Type>(&batch, KEY_COLUMNS + i, SESSIONS_TABLE, name)
            };
            let (starts, ends) = (column(0, "start")?, column(1, "end")?);
            let fired = batch
                .column(KEY_COLUMNS + 2)
                .as_boolean_opt()
                .filter(|c| c.null_count() == 0)
                .ok_or_else(|| {
                    Error::data(
                        "window aggregate snapshot table 'sessions'",
                        "expected column fired: Boolean without NULLs",
                    )
                })?;
            let mut slots = Vec::with_capacity(batch.num_rows());
            for (i, key) in keys.iter().enumerate() {
                let key = key.ok_or_else(|| {
                    Error::data("window aggregate snapshot table 'sessions'", "NULL key")
                })?;
                let key = self.keys.intern_bytes(key);
                if self.sessions.len() <= key as usize {
                    self.sessions.resize_with(key as usize + 1, Vec::new);
                }
                let session = Session {
                    start: starts.value(i),
                    end: ends.value(i),
                    slot: self.slots.alloc(),
                    fired: fired.value(i),
                };
                let list = &mut self.sessions[key as usize];
                let at = list.partition_point(|s| s.start < session.start);
                list.insert(at, session);
                self.index(key, &session);
                slots.push(session.slot);
            }
            self.slots
                .restore_state(&slots, &batch.columns()[KEY_COLUMNS + 3..])?;
        }
        if !self.ahead.is_empty() {
            self.key_group_cache.update(&self.keys, own)?;
            self.free_expired_ahead();
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
        if let Some(own) = self.ownership.filter(|_| !self.ahead.is_empty()) {
            self.key_group_cache.update(&self.keys, own)?;
        }
        if self
            .changes
            .as_ref()
            .is_some_and(ChangeTracker::is_incremental)
        {
            self.touched_keys.mark_all(&key_ids);
        }
        if self.sessions.len() < self.keys.len() {
            self.sessions.resize_with(self.keys.len(), Vec::new);
        }
        row_slots.clear();
        let mut redirects: HashMap<u32, (u32, i64)> = HashMap::new();
        let mut touched: Vec<(u32, i64)> = Vec::new();
        for (&t, &key) in times.iter().zip(&key_ids) {
            match self.assign(key, t, &mut redirects, &mut touched) {
                Some(slot) => row_slots.push(slot),
                None => {
                    self.late_records_dropped += 1;
                    row_slots.push(self.trash);
                }
            }
        }
        if !redirects.is_empty() {
            for slot in &mut row_slots {
                *slot = resolve(&redirects, *slot);
            }
            // Merged in the order of their sessions' starts: FIRST_VALUE and LAST_VALUE see a
            // merged-in session as later than the one it joins, so the order must be that of
            // time, not of the map (a restored operator's map iterates differently).
            let mut merged: Vec<(i64, u32)> = redirects
                .iter()
                .map(|(&slot, &(_, start))| (start, slot))
                .collect();
            merged.sort_unstable();
            let sources: Vec<u32> = merged.into_iter().map(|(_, slot)| slot).collect();
            let targets: Vec<u32> = sources.iter().map(|&s| resolve(&redirects, s)).collect();
            self.slots.merge(&sources, &targets)?;
            self.slots.release(&sources);
        }
        self.slots.update(&row_slots, &batch)?;
        self.slots.clear(&[self.trash]);
        self.times = times;
        self.key_ids = key_ids;
        self.row_slots = row_slots;
        if !touched.is_empty() {
            // Sessions updated behind the watermark: fire again (those still open, once).
            touched.sort_unstable();
            touched.dedup();
            touched.retain(|&(key, start)| {
                self.sessions[key as usize]
                    .iter()
                    .any(|s| s.start == start && s.fired)
            });
            self.emit(&touched, out)?;
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
        self.advance(Watermark::MAX.0, out)
    }

    fn report_metrics(&self, metrics: &mut OperatorMetrics) {
        metrics.late_records_dropped = self.late_records_dropped;
        metrics.state_keys = (self.pending.len() + self.retained.len()) as u64;
        metrics.state_bytes = (self.keys.allocated_bytes()
            + self.key_group_cache.allocated_bytes()
            + self.touched_keys.allocated_bytes()
            + self.slots.allocated_bytes()
            + self
                .sessions
                .iter()
                .map(|v| v.capacity() * std::mem::size_of::<Session>())
                .sum::<usize>()
            + (self.pending.len() + self.retained.len()) * 24) as u64;
    }
}
