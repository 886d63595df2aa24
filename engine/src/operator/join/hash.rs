//! The batch hash join: inner, left, right and full outer joins of bounded inputs, emitting
//! final rows (no `_row_kind`).
//!
//! Both inputs are held. When one input ends while the other goes on (and nothing has
//! spilled), the ended side is built into a hash table at once and the other side's rows are
//! probed as they arrive, never held. When both end together, the smaller side (in bytes) is
//! built and the larger side probes it, batch by batch. The build side's rows are grouped per
//! key id ([`JoinKeys`] interns the row-encoded keys of both sides into one dense id space) in
//! one offsets/positions pair, and each probe batch yields (probe row, build row) pairs that
//! one `take` per column turns into output, [`EMIT_BATCH_ROWS`] pairs at a time.
//!
//! Outer joins: a preserved probe side emits its unmatched rows in the same pass (a NULL
//! build index gathers NULLs); a preserved build side keeps one matched flag per build row
//! and emits its unmatched rows, padded with NULLs, after the last probe batch. Rows with a
//! NULL key match nothing.
//!
//! Memory: the operator holds at most its [`MemoryBudget`]. When the held batches outgrow it,
//! both sides are hash-partitioned on their keys into [`PARTITIONS`] spill files each (Arrow
//! IPC, [`crate::spill`]) and every later batch goes straight to its partitions. At the end
//! each pair of partitions is joined on its own, the smaller one built in memory and the
//! larger one streamed from its file; a pair whose smaller side still does not fit is
//! partitioned again with other hash bits, up to [`MAX_LEVELS`] deep (beyond that, a single
//! key has more rows than the budget, and the pair is joined in memory with a warning).
//! Partitioning uses bits of the key hash that the exchange's key groups do not.

use std::collections::VecDeque;

use arrow::array::{ArrayRef, UInt32Array};
use arrow::compute::{concat_batches, take};
use arrow::record_batch::RecordBatch;
use tracing::warn;

use super::{EMIT_BATCH_ROWS, JoinKeys, OutputShape};
use crate::element::Watermark;
use crate::graph::JoinType;
use crate::ids::CheckpointId;
use crate::operator::{Operator, OperatorContext, Output};
use crate::runtime::OperatorMetrics;
use crate::spill::{
    MemoryBudget, SpillFile, SpillReader, SpillWriter, batch_memory, batches_memory,
    gather_partitions,
};
use crate::state::{StateSnapshot, hash_columns};
use crate::{Error, Result};

/// Spill partitions per side and level.
const PARTITIONS: usize = 32;

/// Partitioning levels before a pair of partitions is joined in memory regardless.
const MAX_LEVELS: usize = 4;

/// Per level, the multiplier that mixes a key hash before its top bits pick a partition.
const LEVEL_MIX: [u64; MAX_LEVELS] = [
    0x9E37_79B9_7F4A_7C15,
    0xC2B2_AE3D_27D4_EB4F,
    0x1656_67B1_9E37_79F9,
    0xD6E8_FEB8_6659_FD93,
];

pub(crate) struct HashJoin {
    /// Key columns per side, and the left schema (to make a fresh [`JoinKeys`] per pair).
    key_columns: [Vec<usize>; 2],
    join_type: JoinType,
    shape: OutputShape,
    vertex: String,
    budget: MemoryBudget,
    /// Batches held per side while nothing has spilled.
    held: [Vec<RecordBatch>; 2],
    held_bytes: usize,
    /// Once spilled: the open partition files per side.
    spilled: Option<[Vec<SpillWriter>; 2]>,
    spilled_bytes: u64,
    /// Rows each partition file gathers before writing them as one batch.
    coalesce_rows: usize,
    /// At the end: the spilled pairs of partitions still to join, with their level.
    pairs: VecDeque<([SpillFile; 2], usize)>,
    /// At the end: the pair being joined.
    probing: Option<Probing>,
    /// Scratch: key hashes of one batch.
    hashes: Vec<u64>,
}

impl HashJoin {
    pub(super) fn new(
        key_columns: [Vec<usize>; 2],
        join_type: JoinType,
        shape: OutputShape,
    ) -> Self {
        HashJoin {
            key_columns,
            join_type,
            shape,
            vertex: "HashJoin".into(),
            budget: MemoryBudget::unlimited(),
            held: [Vec::new(), Vec::new()],
            held_bytes: 0,
            spilled: None,
            spilled_bytes: 0,
            coalesce_rows: EMIT_BATCH_ROWS,
            pairs: VecDeque::new(),
            probing: None,
            hashes: Vec::new(),
        }
    }

    fn keys(&self) -> Result<JoinKeys> {
        JoinKeys::try_new(self.key_columns.clone(), &self.shape.inputs[0])
    }

    /// Opens `PARTITIONS` spill files per side and moves the held batches into them.
    fn start_spilling(&mut self) -> Result<()> {
        // Each partition file gathers its slices into batches of `coalesce_rows`; the slices
        // pending over all files (and the batches they keep alive) stay within a quarter of
        // the budget.
        let held_rows: usize = self.held.iter().flatten().map(RecordBatch::num_rows).sum();
        let row_bytes = (self.held_bytes / held_rows.max(1)).max(1);
        let limit = self.budget.limit().unwrap_or(usize::MAX);
        self.coalesce_rows = (limit / (4 * PARTITIONS * row_bytes)).clamp(256, EMIT_BATCH_ROWS);
        let mut writers: [Vec<SpillWriter>; 2] = [Vec::new(), Vec::new()];
        for (side, files) in writers.iter_mut().enumerate() {
            for partition in 0..PARTITIONS {
                files.push(
                    self.budget
                        .spill_writer(
                            &format!("{} side {side} partition {partition}", self.vertex),
                            &self.shape.inputs[side],
                        )?
                        .coalescing(self.coalesce_rows),
                );
            }
        }
        let held = std::mem::take(&mut self.held);
        self.held_bytes = 0;
        for (side, batches) in held.into_iter().enumerate() {
            for batch in batches {
                partition_into(
                    &self.key_columns[side],
                    &batch,
                    0,
                    &mut writers[side],
                    &mut self.hashes,
                )?;
            }
        }
        self.spilled = Some(writers);
        Ok(())
    }

    /// The next step of the end: probes one batch of the pair being joined, or finishes that
    /// pair, or prepares the next pair (building its smaller side, or splitting it again).
    /// Returns false once every pair is joined.
    fn step(&mut self, out: &mut Output) -> Result<bool> {
        if let Some(probing) = &mut self.probing {
            match probing.probe.next() {
                Some(batch) => {
                    let batch = batch?;
                    probing.probe_batch(&self.shape, self.join_type, &batch, out)?;
                }
                None => {
                    let probing = self.probing.take().expect("probing");
                    probing.emit_unmatched(&self.shape, self.join_type, out)?;
                }
            }
            return Ok(true);
        }
        let Some((files, level)) = self.pairs.pop_front() else {
            return Ok(false);
        };
        if files.iter().all(|f| f.rows() == 0) {
            return Ok(true);
        }
        let build_side = usize::from(files[1].bytes() < files[0].bytes());
        let build_bytes = usize::try_from(files[build_side].bytes()).unwrap_or(usize::MAX);
        if self.budget.exceeded_by(build_bytes) && files[build_side].rows() > 1 {
            if level < MAX_LEVELS {
                self.repartition(files, level)?;
                return Ok(true);
            }
            warn!(
                vertex = %self.vertex,
                rows = files[build_side].rows(),
                bytes = build_bytes,
                budget = ?self.budget.limit(),
                "a hash join partition exceeds the memory budget after {MAX_LEVELS} levels of \
                 partitioning (a key with very many rows); joining it in memory"
            );
        }
        let build = files[build_side].read_all()?;
        let [left, right] = files;
        let probe_file = if build_side == 0 { right } else { left };
        let probe = SpilledBatches {
            reader: probe_file.read()?,
            _file: probe_file,
        };
        self.probing = Some(Probing::new(self, build_side, build, Box::new(probe))?);
        Ok(true)
    }

    /// Splits a pair of partitions into `PARTITIONS` pairs by the hash bits of `level` and
    /// queues them first.
    fn repartition(&mut self, files: [SpillFile; 2], level: usize) -> Result<()> {
        let mut parts: [Vec<SpillFile>; 2] = [Vec::new(), Vec::new()];
        for (side, file) in files.iter().enumerate() {
            let mut writers = Vec::with_capacity(PARTITIONS);
            for partition in 0..PARTITIONS {
                writers.push(
                    self.budget
                        .spill_writer(
                            &format!(
                                "{} side {side} level {level} partition {partition}",
                                self.vertex
                            ),
                            &self.shape.inputs[side],
                        )?
                        .coalescing(self.coalesce_rows),
                );
            }
            for batch in file.read()? {
                partition_into(
                    &self.key_columns[side],
                    &batch?,
                    level,
                    &mut writers,
                    &mut self.hashes,
                )?;
            }
            for writer in writers {
                let file = writer.finish()?;
                self.spilled_bytes += file.bytes();
                parts[side].push(file);
            }
        }
        drop(files);
        let [left, right] = parts;
        for pair in left.into_iter().zip(right).rev() {
            self.pairs.push_front(([pair.0, pair.1], level + 1));
        }
        Ok(())
    }
}

/// The probe side of a spilled pair: its batches, read back one at a time, and the file,
/// deleted when they are all read.
struct SpilledBatches {
    reader: SpillReader,
    _file: SpillFile,
}

impl Iterator for SpilledBatches {
    type Item = Result<RecordBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        self.reader.next()
    }
}

/// One pair being joined: the built side's rows and hash table, and the probe side's batches
/// still to come.
struct Probing {
    build_side: usize,
    build: RecordBatch,
    keys: JoinKeys,
    table: BuildTable,
    /// Per build row, whether it found a partner (only when the build side is preserved).
    matched: Vec<bool>,
    probe: Box<dyn Iterator<Item = Result<RecordBatch>> + Send>,
    // Scratch: the pairs of one output chunk.
    probe_rows: Vec<u32>,
    build_rows: Vec<Option<u32>>,
}

impl Probing {
    fn new(
        join: &HashJoin,
        build_side: usize,
        build: Vec<RecordBatch>,
        probe: Box<dyn Iterator<Item = Result<RecordBatch>> + Send>,
    ) -> Result<Self> {
        let build = {
            let one = concat_batches(&join.shape.inputs[build_side], &build)
                .map_err(|e| Error::arrow("hash join build side", e))?;
            drop(build);
            one
        };
        let mut keys = join.keys()?;
        let table = BuildTable::new(&mut keys, build_side, &build)?;
        let matched = if join.join_type.preserves(build_side) {
            vec![false; build.num_rows()]
        } else {
            Vec::new()
        };
        Ok(Probing {
            build_side,
            build,
            keys,
            table,
            matched,
            probe,
            probe_rows: Vec::with_capacity(EMIT_BATCH_ROWS),
            build_rows: Vec::with_capacity(EMIT_BATCH_ROWS),
        })
    }

    /// Joins one probe batch: matches, and for a preserved probe side the rows without one.
    fn probe_batch(
        &mut self,
        shape: &OutputShape,
        join_type: JoinType,
        batch: &RecordBatch,
        out: &mut Output,
    ) -> Result<()> {
        let probe_side = 1 - self.build_side;
        let keep_probe = join_type.preserves(probe_side);
        let keep_build = join_type.preserves(self.build_side);
        let valid = self.keys.lookup(probe_side, batch)?;
        // Taken for the loop, which flushes (borrowing `self`) as it goes; given back after.
        let ids = std::mem::take(&mut self.keys.ids);
        for (row, &key) in ids.iter().enumerate() {
            let partners = if valid.as_ref().is_none_or(|v| v.is_valid(row)) {
                self.table.partners(key)
            } else {
                &[]
            };
            if partners.is_empty() {
                if keep_probe {
                    self.probe_rows.push(row as u32);
                    self.build_rows.push(None);
                }
            } else {
                for &partner in partners {
                    self.probe_rows.push(row as u32);
                    self.build_rows.push(Some(partner));
                    if keep_build {
                        self.matched[partner as usize] = true;
                    }
                }
            }
            if self.probe_rows.len() >= EMIT_BATCH_ROWS {
                self.flush(shape, batch, out)?;
            }
        }
        self.keys.ids = ids;
        self.flush(shape, batch, out)
    }

    /// Emits the pairs gathered so far of `batch` with the built rows, and forgets them.
    fn flush(&mut self, shape: &OutputShape, batch: &RecordBatch, out: &mut Output) -> Result<()> {
        emit_pairs(
            shape,
            out,
            self.build_side,
            batch,
            &self.build,
            &self.probe_rows,
            &self.build_rows,
        )?;
        self.probe_rows.clear();
        self.build_rows.clear();
        Ok(())
    }

    /// After the last probe batch: the build rows without a partner, padded with NULLs, when
    /// the build side is preserved.
    fn emit_unmatched(
        self,
        shape: &OutputShape,
        join_type: JoinType,
        out: &mut Output,
    ) -> Result<()> {
        if !join_type.preserves(self.build_side) {
            return Ok(());
        }
        let unmatched: Vec<u32> = self
            .matched
            .iter()
            .enumerate()
            .filter(|(_, m)| !**m)
            .map(|(row, _)| row as u32)
            .collect();
        for chunk in unmatched.chunks(EMIT_BATCH_ROWS) {
            let built = OutputShape::take(&self.build, chunk)?;
            let nulls = shape.nulls(1 - self.build_side, chunk.len());
            let (left, right) = if self.build_side == 0 {
                (built, nulls)
            } else {
                (nulls, built)
            };
            shape.emit(out, None, left, right)?;
        }
        Ok(())
    }
}

/// Emits the pairs (`probe_rows[i]` of `probe`, `build_rows[i]` of `build`), a `None`
/// build row gathering NULLs.
fn emit_pairs(
    shape: &OutputShape,
    out: &mut Output,
    build_side: usize,
    probe: &RecordBatch,
    build: &RecordBatch,
    probe_rows: &[u32],
    build_rows: &[Option<u32>],
) -> Result<()> {
    if probe_rows.is_empty() {
        return Ok(());
    }
    let probed = OutputShape::take(probe, probe_rows)?;
    let indices = UInt32Array::from_iter(build_rows.iter().copied());
    let built = build
        .columns()
        .iter()
        .map(|c| take(c.as_ref(), &indices, None).map_err(|e| Error::arrow("join output", e)))
        .collect::<Result<Vec<ArrayRef>>>()?;
    let (left, right) = if build_side == 0 {
        (built, probed)
    } else {
        (probed, built)
    };
    shape.emit(out, None, left, right)
}

/// The build side's rows grouped by key id: the rows of key `k` are
/// `positions[offsets[k]..offsets[k + 1]]`; rows with a NULL key are in no group.
pub(super) struct BuildTable {
    offsets: Vec<u32>,
    positions: Vec<u32>,
    /// Some build row has a NULL key (what `NOT IN` needs to know).
    pub(super) has_null_key: bool,
}

impl BuildTable {
    pub(super) fn new(keys: &mut JoinKeys, side: usize, build: &RecordBatch) -> Result<Self> {
        let valid = keys.intern(side, build)?;
        let key_count = keys.len();
        let is_valid = |row: usize| valid.as_ref().is_none_or(|v| v.is_valid(row));
        let mut offsets = vec![0u32; key_count + 1];
        for (row, &key) in keys.ids.iter().enumerate() {
            if is_valid(row) {
                offsets[key as usize + 1] += 1;
            }
        }
        for k in 0..key_count {
            offsets[k + 1] += offsets[k];
        }
        // The probe side looks up, never inserts.
        keys.table.build_filter();
        let mut cursor = offsets.clone();
        let mut positions = vec![0u32; offsets[key_count] as usize];
        for (row, &key) in keys.ids.iter().enumerate() {
            if is_valid(row) {
                let slot = &mut cursor[key as usize];
                positions[*slot as usize] = row as u32;
                *slot += 1;
            }
        }
        Ok(BuildTable {
            offsets,
            positions,
            has_null_key: valid.is_some_and(|v| v.null_count() > 0),
        })
    }

    /// The build rows with key id `key` (ids interned after the build have none).
    pub(super) fn partners(&self, key: u32) -> &[u32] {
        let key = key as usize;
        if key + 1 >= self.offsets.len() {
            return &[];
        }
        &self.positions[self.offsets[key] as usize..self.offsets[key + 1] as usize]
    }
}

/// Writes the rows of `batch` to `writers`, each row to the partition its key hash picks at
/// `level`: one `take` orders the batch by partition, and each partition gets one slice.
fn partition_into(
    key_columns: &[usize],
    batch: &RecordBatch,
    level: usize,
    writers: &mut [SpillWriter],
    hashes: &mut Vec<u64>,
) -> Result<()> {
    let keys: Vec<ArrayRef> = key_columns
        .iter()
        .map(|&i| batch.column(i).clone())
        .collect();
    hash_columns(&keys, hashes)?;
    let bits = writers.len().trailing_zeros();
    let mix = LEVEL_MIX[level.min(MAX_LEVELS - 1)];
    let partition: Vec<u32> = hashes
        .iter()
        .map(|&hash| (hash.wrapping_mul(mix) >> (64 - bits)) as u32)
        .collect();
    let (gathered, starts) = gather_partitions(batch, &partition, writers.len())?;
    for (p, writer) in writers.iter_mut().enumerate() {
        if starts[p + 1] > starts[p] {
            writer.write(&gathered.slice(starts[p], starts[p + 1] - starts[p]))?;
        }
    }
    Ok(())
}

impl Operator for HashJoin {
    fn open(&mut self, ctx: &OperatorContext) -> Result<()> {
        self.vertex = ctx.vertex.clone();
        self.budget = ctx.memory.clone();
        Ok(())
    }

    fn process_batch(&mut self, input: usize, batch: RecordBatch, out: &mut Output) -> Result<()> {
        let side = input.min(1);
        if let Some(probing) = &mut self.probing {
            // The build side ended first (`end_input`): the other side's rows are probed as
            // they come.
            if side == probing.build_side {
                return Err(Error::Internal(format!(
                    "{}: a row of input {side} arrived after that input ended",
                    self.vertex
                )));
            }
            return probing.probe_batch(&self.shape, self.join_type, &batch, out);
        }
        if let Some(writers) = &mut self.spilled {
            return partition_into(
                &self.key_columns[side],
                &batch,
                0,
                &mut writers[side],
                &mut self.hashes,
            );
        }
        self.held_bytes += batch_memory(&batch);
        self.held[side].push(batch);
        if self.budget.exceeded_by(self.held_bytes) {
            self.start_spilling()?;
        }
        Ok(())
    }

    /// Every row leaves at the end: only the final watermark goes on (after them), so no
    /// event-time operator downstream sees its rows as late.
    fn process_watermark(&mut self, watermark: Watermark, out: &mut Output) -> Result<()> {
        if watermark == Watermark::MAX {
            out.push_watermark(watermark);
        }
        Ok(())
    }

    /// One input ended while the other goes on: unless the join has spilled, the ended side
    /// (held whole, so within the budget) is built now, the other side's held rows are
    /// probed, and its later rows are probed as they come, never held.
    fn end_input(&mut self, input: usize, out: &mut Output) -> Result<()> {
        let side = input.min(1);
        if self.spilled.is_some() || self.probing.is_some() {
            return Ok(());
        }
        let build = std::mem::take(&mut self.held[side]);
        let pending = std::mem::take(&mut self.held[1 - side]);
        self.held_bytes = batches_memory(&build);
        let mut probing = Probing::new(self, side, build, Box::new(std::iter::empty()))?;
        for batch in pending {
            probing.probe_batch(&self.shape, self.join_type, &batch, out)?;
        }
        self.probing = Some(probing);
        Ok(())
    }

    fn snapshot(&mut self, checkpoint: CheckpointId) -> Result<StateSnapshot> {
        if self.spilled.is_none() && self.probing.is_none() && self.held.iter().all(Vec::is_empty) {
            return Ok(StateSnapshot::default());
        }
        Err(Error::plan(
            &self.vertex,
            format!(
                "checkpoint {checkpoint:?} reached a batch hash join holding rows; batch joins \
                 run in batch mode, without checkpoints"
            ),
        ))
    }

    fn finish(&mut self, _out: &mut Output) -> Result<()> {
        if self.probing.is_some() {
            // Streaming since one input ended: what is left are the unmatched build rows.
            return Ok(());
        }
        let Some(writers) = self.spilled.take() else {
            // Nothing spilled: one pair, the held batches, the smaller side built.
            let [left, right] = std::mem::take(&mut self.held);
            self.held_bytes = 0;
            let build_side = usize::from(batches_memory(&right) > batches_memory(&left));
            let (build, probe) = if build_side == 1 {
                (right, left)
            } else {
                (left, right)
            };
            self.probing = Some(Probing::new(
                self,
                build_side,
                build,
                Box::new(probe.into_iter().map(Ok)),
            )?);
            return Ok(());
        };
        let mut files: [Vec<SpillFile>; 2] = [Vec::new(), Vec::new()];
        for (side, writers) in writers.into_iter().enumerate() {
            for writer in writers {
                let file = writer.finish()?;
                self.spilled_bytes += file.bytes();
                files[side].push(file);
            }
        }
        let [left, right] = files;
        for (l, r) in left.into_iter().zip(right) {
            self.pairs.push_back(([l, r], 1));
        }
        Ok(())
    }

    fn finish_more(&mut self, out: &mut Output) -> Result<bool> {
        self.step(out)
    }

    fn report_metrics(&self, metrics: &mut OperatorMetrics) {
        metrics.spilled_bytes = self.spilled_bytes;
        metrics.state_bytes = self.held_bytes as u64;
    }
}
