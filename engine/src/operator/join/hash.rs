//! The batch hash join: inner, left, right and full outer joins of bounded inputs, emitting
//! final rows (no `_row_kind`).
//!
//! Both inputs are held until they end. Then the smaller side (in bytes) is built into a hash
//! table and the larger side probes it, batch by batch: the build side's rows are grouped per
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

use arrow::array::{ArrayRef, UInt32Array};
use arrow::compute::{concat_batches, take};
use arrow::record_batch::RecordBatch;
use tracing::warn;

use super::{EMIT_BATCH_ROWS, JoinKeys, OutputShape};
use crate::graph::JoinType;
use crate::ids::CheckpointId;
use crate::operator::{Operator, OperatorContext, Output};
use crate::runtime::OperatorMetrics;
use crate::spill::{MemoryBudget, SpillFile, SpillWriter, batches_memory};
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
    /// Scratch: key hashes and partition order of one batch.
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
            hashes: Vec::new(),
        }
    }

    fn keys(&self) -> Result<JoinKeys> {
        JoinKeys::try_new(self.key_columns.clone(), &self.shape.inputs[0])
    }

    /// Opens `PARTITIONS` spill files per side and moves the held batches into them.
    fn start_spilling(&mut self) -> Result<()> {
        let mut writers: [Vec<SpillWriter>; 2] = [Vec::new(), Vec::new()];
        for (side, files) in writers.iter_mut().enumerate() {
            for partition in 0..PARTITIONS {
                files.push(self.budget.spill_writer(
                    &format!("{} side {side} partition {partition}", self.vertex),
                    &self.shape.inputs[side],
                )?);
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

    /// Joins the held batches, the smaller side built.
    fn join_held(&mut self, out: &mut Output) -> Result<()> {
        let [left, right] = std::mem::take(&mut self.held);
        self.held_bytes = 0;
        let build_side = usize::from(batches_memory(&right) > batches_memory(&left));
        let (build, probe) = if build_side == 1 {
            (right, left)
        } else {
            (left, right)
        };
        let mut probe = probe.into_iter().map(Ok);
        self.join_pair(build_side, build, &mut probe, out)
    }

    /// Joins one pair of spilled partitions at partitioning `level` (1 for the first files).
    fn join_files(&mut self, files: [SpillFile; 2], level: usize, out: &mut Output) -> Result<()> {
        if files.iter().all(|f| f.rows() == 0) {
            return Ok(());
        }
        let build_side = usize::from(files[1].bytes() < files[0].bytes());
        let build_bytes = files[build_side].bytes() as usize;
        if self.budget.exceeded_by(build_bytes) && files[build_side].rows() > 1 {
            if level < MAX_LEVELS {
                return self.repartition(files, level, out);
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
        let mut probe = files[1 - build_side].read()?;
        self.join_pair(build_side, build, &mut probe, out)
    }

    /// Splits a pair of partitions into `PARTITIONS` pairs by other hash bits and joins each.
    fn repartition(&mut self, files: [SpillFile; 2], level: usize, out: &mut Output) -> Result<()> {
        let mut parts: [Vec<SpillFile>; 2] = [Vec::new(), Vec::new()];
        for (side, file) in files.iter().enumerate() {
            let mut writers = Vec::with_capacity(PARTITIONS);
            for partition in 0..PARTITIONS {
                writers.push(self.budget.spill_writer(
                    &format!(
                        "{} side {side} level {level} partition {partition}",
                        self.vertex
                    ),
                    &self.shape.inputs[side],
                )?);
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
        for pair in left.into_iter().zip(right) {
            self.join_files([pair.0, pair.1], level + 1, out)?;
        }
        Ok(())
    }

    /// Builds a hash table over `build` (rows of input `build_side`) and probes it with each
    /// batch of `probe` (the other input), emitting joined rows and, for preserved sides,
    /// unmatched rows padded with NULLs.
    fn join_pair(
        &self,
        build_side: usize,
        build: Vec<RecordBatch>,
        probe: &mut dyn Iterator<Item = Result<RecordBatch>>,
        out: &mut Output,
    ) -> Result<()> {
        let probe_side = 1 - build_side;
        let build = {
            let one = concat_batches(&self.shape.inputs[build_side], &build)
                .map_err(|e| Error::arrow("hash join build side", e))?;
            drop(build);
            one
        };
        let mut keys = self.keys()?;
        let table = BuildTable::new(&mut keys, build_side, &build)?;
        let keep_probe = self.join_type.preserves(probe_side);
        let keep_build = self.join_type.preserves(build_side);
        let mut build_matched = if keep_build {
            vec![false; build.num_rows()]
        } else {
            Vec::new()
        };
        let mut probe_rows: Vec<u32> = Vec::with_capacity(EMIT_BATCH_ROWS);
        let mut build_rows: Vec<Option<u32>> = Vec::with_capacity(EMIT_BATCH_ROWS);
        for batch in probe {
            let batch = batch?;
            let valid = keys.intern(probe_side, &batch)?;
            for (row, &key) in keys.ids.iter().enumerate() {
                let partners = if valid.as_ref().is_none_or(|v| v.is_valid(row)) {
                    table.partners(key)
                } else {
                    &[]
                };
                if partners.is_empty() {
                    if keep_probe {
                        probe_rows.push(row as u32);
                        build_rows.push(None);
                    }
                } else {
                    for &partner in partners {
                        probe_rows.push(row as u32);
                        build_rows.push(Some(partner));
                        if keep_build {
                            build_matched[partner as usize] = true;
                        }
                    }
                }
                if probe_rows.len() >= EMIT_BATCH_ROWS {
                    self.emit(out, build_side, &batch, &build, &probe_rows, &build_rows)?;
                    probe_rows.clear();
                    build_rows.clear();
                }
            }
            self.emit(out, build_side, &batch, &build, &probe_rows, &build_rows)?;
            probe_rows.clear();
            build_rows.clear();
        }
        if keep_build {
            let unmatched: Vec<u32> = build_matched
                .iter()
                .enumerate()
                .filter(|(_, m)| !**m)
                .map(|(row, _)| row as u32)
                .collect();
            for chunk in unmatched.chunks(EMIT_BATCH_ROWS) {
                let built = OutputShape::take(&build, chunk)?;
                let nulls = self.shape.nulls(probe_side, chunk.len());
                let (left, right) = if build_side == 0 {
                    (built, nulls)
                } else {
                    (nulls, built)
                };
                self.shape.emit(out, None, left, right)?;
            }
        }
        Ok(())
    }

    /// Emits the pairs (`probe_rows[i]` of `probe`, `build_rows[i]` of `build`), a `None`
    /// build row gathering NULLs.
    fn emit(
        &self,
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
        self.shape.emit(out, None, left, right)
    }
}

/// The build side's rows grouped by key id: the rows of key `k` are
/// `positions[offsets[k]..offsets[k + 1]]`; rows with a NULL key are in no group.
struct BuildTable {
    offsets: Vec<u32>,
    positions: Vec<u32>,
}

impl BuildTable {
    fn new(keys: &mut JoinKeys, side: usize, build: &RecordBatch) -> Result<Self> {
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
        let mut cursor = offsets.clone();
        let mut positions = vec![0u32; offsets[key_count] as usize];
        for (row, &key) in keys.ids.iter().enumerate() {
            if is_valid(row) {
                let slot = &mut cursor[key as usize];
                positions[*slot as usize] = row as u32;
                *slot += 1;
            }
        }
        Ok(BuildTable { offsets, positions })
    }

    /// The build rows with key id `key` (ids interned after the build have none).
    fn partners(&self, key: u32) -> &[u32] {
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
    let partitions = writers.len();
    let bits = partitions.trailing_zeros();
    let mix = LEVEL_MIX[level.min(MAX_LEVELS - 1)];
    let partition_of = |hash: u64| (hash.wrapping_mul(mix) >> (64 - bits)) as usize;
    let mut counts = vec![0u32; partitions + 1];
    for &hash in hashes.iter() {
        counts[partition_of(hash) + 1] += 1;
    }
    for p in 0..partitions {
        counts[p + 1] += counts[p];
    }
    let mut cursor = counts.clone();
    let mut order = vec![0u32; batch.num_rows()];
    for (row, &hash) in hashes.iter().enumerate() {
        let slot = &mut cursor[partition_of(hash)];
        order[*slot as usize] = row as u32;
        *slot += 1;
    }
    let ordered = arrow::compute::take_record_batch(batch, &UInt32Array::from(order))
        .map_err(|e| Error::arrow("hash join partitioning", e))?;
    for (partition, writer) in writers.iter_mut().enumerate() {
        let (start, end) = (counts[partition] as usize, counts[partition + 1] as usize);
        if end > start {
            writer.write(&ordered.slice(start, end - start))?;
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

    fn process_batch(&mut self, input: usize, batch: RecordBatch, _out: &mut Output) -> Result<()> {
        let side = input.min(1);
        if let Some(writers) = &mut self.spilled {
            return partition_into(
                &self.key_columns[side],
                &batch,
                0,
                &mut writers[side],
                &mut self.hashes,
            );
        }
        self.held_bytes += batch.get_array_memory_size();
        self.held[side].push(batch);
        if self.budget.exceeded_by(self.held_bytes) {
            self.start_spilling()?;
        }
        Ok(())
    }

    fn snapshot(&mut self, checkpoint: CheckpointId) -> Result<StateSnapshot> {
        if self.spilled.is_none() && self.held.iter().all(Vec::is_empty) {
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

    fn finish(&mut self, out: &mut Output) -> Result<()> {
        let Some(writers) = self.spilled.take() else {
            return self.join_held(out);
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
            self.join_files([l, r], 1, out)?;
        }
        Ok(())
    }

    fn report_metrics(&self, metrics: &mut OperatorMetrics) {
        metrics.spilled_bytes = self.spilled_bytes;
        metrics.state_bytes = self.held_bytes as u64;
    }
}
