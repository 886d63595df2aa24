//! Splits a chain's output batches among the channels of an outgoing edge.
//!
//! Hash partitioning works on the whole batch: hash the key columns (typed loops), map each
//! hash to its key group and the key group to its target subtask, bucket the row indices per
//! target with a counting sort, then one `take` per target that has rows. A batch whose rows
//! all go to one target is forwarded as it is.

use std::sync::Arc;

use arrow::array::{ArrayRef, UInt32Array};
use arrow::compute::take_record_batch;
use arrow::datatypes::Schema;
use arrow::record_batch::RecordBatch;

use crate::graph::Partitioning;
use crate::state::{hash_columns, key_group_of_hash, subtask_for_key_group};
use crate::{Error, Result};

/// Partitions by the hash of key columns, through key groups.
#[derive(Debug)]
pub struct HashPartitioner {
    key_indices: Vec<usize>,
    max_parallelism: u32,
    parallelism: u32,
    hashes: Vec<u64>,
    targets: Vec<u32>,
    counts: Vec<u32>,
    offsets: Vec<u32>,
    sorted: Vec<u32>,
}

impl HashPartitioner {
    pub fn try_new(
        keys: &[String],
        schema: &Schema,
        max_parallelism: u32,
        parallelism: u32,
    ) -> Result<Self> {
        let key_indices = keys
            .iter()
            .map(|k| {
                schema.index_of(k).map_err(|_| {
                    Error::Internal(format!("hash key '{k}' not in the edge's schema"))
                })
            })
            .collect::<Result<_>>()?;
        Ok(HashPartitioner {
            key_indices,
            max_parallelism,
            parallelism,
            hashes: Vec::new(),
            targets: Vec::new(),
            counts: Vec::new(),
            offsets: Vec::new(),
            sorted: Vec::new(),
        })
    }

    /// Appends `(target, batch)` pieces of `batch` to `out`.
    pub fn partition(
        &mut self,
        batch: &RecordBatch,
        out: &mut Vec<(usize, RecordBatch)>,
    ) -> Result<()> {
        if self.parallelism == 1 {
            out.push((0, batch.clone()));
            return Ok(());
        }
        let rows = batch.num_rows();
        let keys: Vec<ArrayRef> = self
            .key_indices
            .iter()
            .map(|&i| batch.column(i).clone())
            .collect();
        hash_columns(&keys, &mut self.hashes)?;
        let parallelism = self.parallelism as usize;
        self.counts.clear();
        self.counts.resize(parallelism, 0);
        self.targets.clear();
        self.targets.reserve(rows);
        for &hash in &self.hashes {
            let key_group = key_group_of_hash(hash, self.max_parallelism);
            let target = subtask_for_key_group(key_group, self.max_parallelism, self.parallelism);
            self.counts[target as usize] += 1;
            self.targets.push(target);
        }
        if let Some(only) = self.counts.iter().position(|&c| c as usize == rows) {
            out.push((only, batch.clone()));
            return Ok(());
        }
        // Counting sort of row indices by target.
        self.offsets.clear();
        let mut running = 0;
        for &count in &self.counts {
            self.offsets.push(running);
            running += count;
        }
        self.sorted.clear();
        self.sorted.resize(rows, 0);
        for (row, &target) in self.targets.iter().enumerate() {
            let slot = &mut self.offsets[target as usize];
            self.sorted[*slot as usize] = row as u32;
            *slot += 1;
        }
        let mut start = 0usize;
        for (target, &count) in self.counts.iter().enumerate() {
            let end = start + count as usize;
            if count > 0 {
                let indices = UInt32Array::from(self.sorted[start..end].to_vec());
                let piece = take_record_batch(batch, &indices)
                    .map_err(|e| Error::arrow("hash partition", e))?;
                out.push((target, piece));
            }
            start = end;
        }
        Ok(())
    }
}

/// How one outgoing edge of a task distributes batches over its channels.
#[derive(Debug)]
pub enum OutputPartitioner {
    /// Exactly one channel.
    Forward,
    Rebalance {
        next: usize,
    },
    Broadcast,
    Hash(HashPartitioner),
}

impl OutputPartitioner {
    pub fn try_new(
        partitioning: &Partitioning,
        schema: &Arc<Schema>,
        target_max_parallelism: u32,
        target_parallelism: u32,
        subtask: u32,
    ) -> Result<Self> {
        Ok(match partitioning {
            Partitioning::Forward => OutputPartitioner::Forward,
            // Start at a different channel per producer so producers do not move in lockstep.
            Partitioning::Rebalance => OutputPartitioner::Rebalance {
                next: subtask as usize % target_parallelism as usize,
            },
            Partitioning::Broadcast => OutputPartitioner::Broadcast,
            Partitioning::Hash { keys } => OutputPartitioner::Hash(HashPartitioner::try_new(
                keys,
                schema,
                target_max_parallelism,
                target_parallelism,
            )?),
        })
    }

    /// Appends `(channel, batch)` pieces to `out`; `channels` is the edge's channel count.
    pub fn partition(
        &mut self,
        batch: &RecordBatch,
        channels: usize,
        out: &mut Vec<(usize, RecordBatch)>,
    ) -> Result<()> {
        match self {
            OutputPartitioner::Forward => out.push((0, batch.clone())),
            OutputPartitioner::Rebalance { next } => {
                out.push((*next, batch.clone()));
                *next = (*next + 1) % channels;
            }
            OutputPartitioner::Broadcast => {
                out.extend((0..channels).map(|c| (c, batch.clone())));
            }
            OutputPartitioner::Hash(hash) => hash.partition(batch, out)?,
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{AsArray, Int64Array};
    use arrow::datatypes::{DataType, Field, Int64Type};

    #[test]
    fn hash_partition_keeps_every_row_and_routes_keys_consistently() {
        let schema = Arc::new(Schema::new(vec![Field::new("k", DataType::Int64, false)]));
        let keys: Vec<i64> = (0..1000).map(|i| i % 37).collect();
        let batch =
            RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(keys))]).unwrap();
        let mut partitioner = HashPartitioner::try_new(&["k".into()], &schema, 128, 4).unwrap();
        let mut out = Vec::new();
        partitioner.partition(&batch, &mut out).unwrap();
        let total: usize = out.iter().map(|(_, b)| b.num_rows()).sum();
        assert_eq!(total, 1000);
        let mut owner = std::collections::HashMap::new();
        for (target, piece) in &out {
            for &k in piece.column(0).as_primitive::<Int64Type>().values() {
                assert_eq!(
                    *owner.entry(k).or_insert(*target),
                    *target,
                    "key {k} on two targets"
                );
            }
        }
        assert!(out.len() > 1);
    }
}
