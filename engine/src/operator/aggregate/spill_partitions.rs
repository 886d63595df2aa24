//! The spilling of a batch aggregation over its memory budget: which rows it writes, to which
//! partition file, and when it gives up partitioning. The operator's module docs describe the
//! whole algorithm; [`super::KeyedAggregate`] drives this module.
//!
//! Invariants: a key goes to the same partition at a given level whatever batch its rows
//! arrive in (the partition is a function of the key's hash and the level only), and a
//! level's partitions are split with a seed no other level uses, so a partition that
//! overflows again spreads its keys over new partitions.

use std::sync::Arc;

use arrow::array::ArrayRef;
use arrow::datatypes::{Schema, SchemaRef};
use arrow::record_batch::RecordBatch;

use super::table::{NO_GROUP, hash_word};
use crate::graph::KeyedAggregateSpec;
use crate::ids::SubtaskIndex;
use crate::spill::{MemoryBudget, SKIP_ROW, SpillFile, SpillWriter, gather_partitions};
use crate::state::hash_columns;
use crate::{Error, Result};

/// Partitions per level: each gets about 1/16 of the spilled keys, so three levels split
/// them 4096 ways while a pass keeps only 16 files (and their write buffers; see
/// [`crate::spill`]) open. A compromise between open files and levels, not tuned by a
/// benchmark.
pub(super) const PARTITIONS: usize = 16;

/// The level whose passes no longer freeze: over the budget they finish in memory (with a
/// warning). Reached only when the keys of a partition do not spread (a budget too small
/// for even a handful of groups, or groups whose states alone outgrow it).
pub(super) const MAX_LEVEL: u32 = 4;

/// What a spilled row keeps, and the aggregation that reads it back.
pub(super) struct SpillLayout {
    /// The aggregation over the spilled rows: the operator's, without its default group (a
    /// pass over a partition only sees rows that exist).
    pub(super) spec: KeyedAggregateSpec,
    /// Input columns a spilled row keeps: the keys and the aggregates' inputs, in input order.
    projection: Vec<usize>,
    /// Their schema: the input of the passes over the partitions.
    pub(super) schema: SchemaRef,
}

impl SpillLayout {
    /// The layout of an aggregation with these key and aggregate input columns of `input`.
    pub(super) fn new(
        spec: &KeyedAggregateSpec,
        input: &Schema,
        key_indices: &[usize],
        inputs: &[Option<usize>],
    ) -> Result<Self> {
        let mut projection: Vec<usize> = key_indices
            .iter()
            .copied()
            .chain(inputs.iter().flatten().copied())
            .collect();
        projection.sort_unstable();
        projection.dedup();
        let schema = input
            .project(&projection)
            .map_err(|e| Error::arrow("aggregate spill schema", e))?;
        Ok(SpillLayout {
            spec: KeyedAggregateSpec {
                default_group: None,
                ..spec.clone()
            },
            projection,
            schema: Arc::new(schema),
        })
    }
}

/// The spilling state of one pass of a batch aggregation: the operator's own input (level 0)
/// or one partition file of the level above.
pub(super) struct Spilling {
    budget: MemoryBudget,
    vertex: String,
    subtask: SubtaskIndex,
    layout: Arc<SpillLayout>,
    level: u32,
    /// Set when the groups are frozen.
    partitions: Option<SpillPartitions>,
    /// Bytes of finished spill files: this pass's and those of the passes over them.
    finished_bytes: u64,
    /// The pass is at [`MAX_LEVEL`], over its budget, and has said so.
    warned: bool,
    /// The deepest level of a pass so far, this one's or one below it.
    deepest: u32,
    /// [`MAX_LEVEL`] and [`REPLAY_BATCH_ROWS`], lowered by tests to reach deep levels with
    /// little data.
    max_level: u32,
    replay_rows: usize,
}

/// Rows per batch a pass over a partition file takes: spilled batches are small (one slice
/// per partition of an input batch), so they are coalesced to the operator's emitted batch
/// size.
const REPLAY_BATCH_ROWS: usize = super::EMIT_BATCH_ROWS;

impl Spilling {
    /// The spilling state of the operator's own input.
    pub(super) fn new(
        budget: MemoryBudget,
        vertex: String,
        subtask: SubtaskIndex,
        layout: Arc<SpillLayout>,
    ) -> Self {
        Spilling {
            budget,
            vertex,
            subtask,
            layout,
            level: 0,
            partitions: None,
            finished_bytes: 0,
            warned: false,
            deepest: 0,
            max_level: MAX_LEVEL,
            replay_rows: REPLAY_BATCH_ROWS,
        }
    }

    /// Lowers [`MAX_LEVEL`] and [`REPLAY_BATCH_ROWS`] for this pass and those below it.
    #[cfg(test)]
    pub(super) fn set_limits(&mut self, max_level: u32, replay_rows: usize) {
        self.max_level = max_level;
        self.replay_rows = replay_rows;
    }

    /// Rows per batch a pass over one of this pass's partitions takes.
    pub(super) fn replay_rows(&self) -> usize {
        self.replay_rows
    }

    /// The spilling state of a pass over one of this pass's partitions, whose rows it keeps
    /// as `layout` says.
    pub(super) fn next_level(&self, layout: Arc<SpillLayout>) -> Self {
        Spilling {
            budget: self.budget.clone(),
            vertex: self.vertex.clone(),
            subtask: self.subtask,
            layout,
            level: self.level + 1,
            partitions: None,
            finished_bytes: 0,
            warned: false,
            deepest: self.level + 1,
            max_level: self.max_level,
            replay_rows: self.replay_rows,
        }
    }

    pub(super) fn layout(&self) -> &Arc<SpillLayout> {
        &self.layout
    }

    /// The pass is over the operator's own input (level 0).
    pub(super) fn is_operator_input(&self) -> bool {
        self.level == 0
    }

    /// The groups are frozen: rows of new keys are spilled.
    pub(super) fn is_frozen(&self) -> bool {
        self.partitions.is_some()
    }

    /// Rows were written to disk (by this pass or below it).
    pub(super) fn has_spilled(&self) -> bool {
        self.finished_bytes > 0 || self.partitions.as_ref().is_some_and(|p| p.rows > 0)
    }

    /// Bytes spilled so far: the sizes of the finished files, and the Arrow memory size of
    /// the rows written to files still open.
    pub(super) fn spilled_bytes(&self) -> u64 {
        self.finished_bytes + self.partitions.as_ref().map_or(0, |p| p.written)
    }

    /// The deepest level a pass reached.
    #[cfg(test)]
    pub(super) fn deepest_level(&self) -> u32 {
        self.deepest
    }

    /// Logs the end of the operator's spilling, once every partition is aggregated.
    pub(super) fn log_finished(&self) {
        tracing::debug!(
            vertex = %self.vertex,
            subtask = self.subtask.0,
            spilled_bytes = self.spilled_bytes(),
            deepest_level = self.deepest,
            "aggregation's spilled partitions aggregated"
        );
    }

    /// Counts the spilled bytes and the depth of a finished pass over one of this pass's
    /// partitions.
    pub(super) fn absorb(&mut self, pass: &Spilling) {
        self.finished_bytes += pass.spilled_bytes();
        self.deepest = self.deepest.max(pass.deepest);
    }

    /// Why a snapshot after spilling fails: it would have to hold the spilled rows.
    pub(super) fn checkpoint_refused(&self) -> Error {
        Error::unsupported(format!(
            "a checkpoint of aggregation '{}' (subtask {}) after it spilled rows to disk (over \
             its memory budget of {} bytes; raise taskmanager.memory.managed.size)",
            self.vertex,
            self.subtask,
            self.budget.limit().unwrap_or(usize::MAX),
        ))
    }

    /// Describes the pass in errors and file names.
    fn what(&self) -> String {
        format!(
            "aggregate {} subtask {} level {}",
            self.vertex, self.subtask, self.level
        )
    }

    /// Freezes the groups if the pass holds more than its budget (`bytes` in `groups`
    /// groups); at the last level ([`MAX_LEVEL`]) it warns instead, once.
    pub(super) fn check(&mut self, bytes: usize, groups: usize) {
        if self.is_frozen() || !self.budget.exceeded_by(bytes) {
            return;
        }
        let limit = self.budget.limit().unwrap_or(usize::MAX);
        if self.level < self.max_level {
            tracing::debug!(
                vertex = %self.vertex,
                subtask = self.subtask.0,
                level = self.level,
                groups,
                bytes,
                limit,
                "aggregation over its memory budget: rows of new keys are spilled"
            );
            self.partitions = Some(SpillPartitions::new(self.level));
        } else if !self.warned {
            self.warned = true;
            tracing::warn!(
                vertex = %self.vertex,
                subtask = self.subtask.0,
                level = self.level,
                groups,
                bytes,
                limit,
                "aggregation partition still over its memory budget after the last level of \
                 spilling: it finishes in memory"
            );
        }
    }

    /// Writes the rows of `batch` whose group is [`NO_GROUP`] in `groups` (one entry per row)
    /// to their partitions. `keys` are the batch's key columns. The groups are frozen.
    pub(super) fn spill(
        &mut self,
        batch: &RecordBatch,
        keys: &[ArrayRef],
        groups: &[u32],
    ) -> Result<()> {
        let what = self.what();
        let Spilling {
            budget,
            layout,
            partitions,
            ..
        } = self;
        let partitions = partitions.as_mut().ok_or_else(|| {
            Error::Internal(format!("{what}: rows spilled before the groups froze"))
        })?;
        partitions.write(budget, layout, &what, batch, keys, groups)
    }

    /// Closes the partition files, if any, for reading; the pass writes no more.
    pub(super) fn finish_partitions(&mut self) -> Result<Vec<SpillFile>> {
        let Some(partitions) = self.partitions.take() else {
            return Ok(Vec::new());
        };
        let mut files = Vec::with_capacity(PARTITIONS);
        for writer in partitions.writers.into_iter().flatten() {
            let file = writer.finish()?;
            self.finished_bytes += file.bytes();
            files.push(file);
        }
        Ok(files)
    }
}

/// The partition files of one frozen pass, created when their first row comes.
struct SpillPartitions {
    writers: Vec<Option<SpillWriter>>,
    seed: u64,
    /// Rows written, and their Arrow memory size.
    rows: u64,
    written: u64,
    /// Scratch: the hashes of a batch's keys.
    hashes: Vec<u64>,
}

impl SpillPartitions {
    fn new(level: u32) -> Self {
        SpillPartitions {
            writers: (0..PARTITIONS).map(|_| None).collect(),
            // A different odd multiplier of the golden ratio per level.
            seed: (u64::from(level) * 2 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15),
            rows: 0,
            written: 0,
            hashes: Vec::new(),
        }
    }

    /// The partition of a key whose [`hash_columns`] hash is `hash`. The hash is mixed with
    /// the level's seed first: the hash itself also picks the key group (`hash % max
    /// parallelism`), so a subtask's keys share its low bits.
    #[inline]
    fn partition_of(&self, hash: u64) -> usize {
        (hash_word(hash ^ self.seed) >> (64 - PARTITIONS.trailing_zeros())) as usize
    }

    fn write(
        &mut self,
        budget: &MemoryBudget,
        layout: &SpillLayout,
        what: &str,
        batch: &RecordBatch,
        keys: &[ArrayRef],
        groups: &[u32],
    ) -> Result<()> {
        hash_columns(keys, &mut self.hashes)?;
        let partition: Vec<u32> = groups
            .iter()
            .zip(&self.hashes)
            .map(|(&g, &h)| {
                if g == NO_GROUP {
                    self.partition_of(h) as u32
                } else {
                    SKIP_ROW
                }
            })
            .collect();
        let columns = batch
            .project(&layout.projection)
            .map_err(|e| Error::arrow(format!("{what}: project spilled rows"), e))?;
        let (taken, starts) = gather_partitions(&columns, &partition, PARTITIONS)?;
        let spilled = starts[PARTITIONS];
        if spilled == 0 {
            return Ok(());
        }
        for p in 0..PARTITIONS {
            let (start, end) = (starts[p], starts[p + 1]);
            if start == end {
                continue;
            }
            let writer = &mut self.writers[p];
            if writer.is_none() {
                *writer =
                    Some(budget.spill_writer(&format!("{what} partition {p}"), &layout.schema)?);
            }
            if let Some(writer) = writer {
                writer.write(&taken.slice(start, end - start))?;
            }
        }
        self.rows += spilled as u64;
        self.written += taken.get_array_memory_size() as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_split_a_partition_anew() {
        let levels: Vec<SpillPartitions> = (0..=MAX_LEVEL).map(SpillPartitions::new).collect();
        // Keys of one subtask at max parallelism 128: hashes that agree in their low 7 bits.
        let hashes: Vec<u64> = (0..20_000u64).map(|i| hash_word(i) << 7 | 5).collect();
        for level in &levels {
            let mut sizes = [0usize; PARTITIONS];
            for &h in &hashes {
                sizes[level.partition_of(h)] += 1;
            }
            for size in sizes {
                assert!((1000..1500).contains(&size), "{sizes:?}");
            }
        }
        // The keys of one partition at level 0 spread over all partitions at level 1.
        let first: Vec<u64> = hashes
            .iter()
            .copied()
            .filter(|&h| levels[0].partition_of(h) == 0)
            .collect();
        let mut sizes = [0usize; PARTITIONS];
        for &h in &first {
            sizes[levels[1].partition_of(h)] += 1;
        }
        assert!(
            sizes.iter().all(|&s| s > first.len() / PARTITIONS / 2),
            "{sizes:?}"
        );
    }
}
