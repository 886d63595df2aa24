//! The `datagen` source: Flink's data generator connector for any schema.
//!
//! Options are Flink's (`number-of-rows`, `rows-per-second`, `fields.<f>.kind` = random |
//! sequence, `min`, `max`, `length`, `start`, `end`, `null-rate`); they are validated when the
//! graph is built, so a bad option fails before anything runs. `rows-per-second` is enforced
//! here: a reader that is ahead of its share of the rate returns `Pending`.
//!
//! Rows are dealt over [`SPLITS`] splits, a number that does not depend on the parallelism
//! (sequences are split into contiguous ranges, as Flink does; unbounded rows go round-robin),
//! and subtask `i` of `p` reads the splits `s` with `s % p == i`: bounded splits one after
//! another in split order, unbounded ones a batch each in turn. A reader of every split
//! (parallelism 1) of a bounded table fills its batches across splits, whose rows are
//! contiguous, so its batches are those of a single unsplit generator. The read position holds the
//! rows produced by each split, so a checkpoint taken at one parallelism restores at any other.

use std::collections::BTreeMap;
use std::time::Instant;

use arrow::compute::concat_batches;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};
use sluice_datasets::datagen::{DatagenConfig, DatagenGenerator};

use super::{SourcePoll, SourceReader};
use crate::{Error, Result};

/// A `datagen` table: its schema and its `WITH` options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatagenSource {
    pub schema: SchemaRef,
    pub options: BTreeMap<String, String>,
}

impl DatagenSource {
    pub fn new(schema: SchemaRef, options: BTreeMap<String, String>) -> Self {
        DatagenSource { schema, options }
    }

    /// The validated generator configuration.
    pub fn config(&self) -> Result<DatagenConfig> {
        DatagenConfig::from_options(self.schema.clone(), &self.options).map_err(|e| Error::Config {
            key: "datagen".into(),
            value: String::new(),
            message: e.to_string(),
        })
    }

    fn generator(&self, split: u32) -> Result<DatagenGenerator> {
        DatagenGenerator::new(&self.config()?, split, SPLITS).map_err(|e| Error::Config {
            key: "datagen".into(),
            value: String::new(),
            message: e.to_string(),
        })
    }

    pub(crate) fn reader(
        &self,
        subtask: u32,
        parallelism: u32,
        batch_size: usize,
    ) -> Result<DatagenReader> {
        let config = self.config()?;
        let splits = (0..SPLITS)
            .filter(|s| s % parallelism.max(1) == subtask)
            .map(|s| Ok((s, self.generator(s)?)))
            .collect::<Result<Vec<_>>>()?;
        let (base, extra) = (
            config.rows_per_second() / u64::from(SPLITS),
            config.rows_per_second() % u64::from(SPLITS),
        );
        let rows_per_second = splits
            .iter()
            .map(|(s, _)| base + u64::from(u64::from(*s) < extra))
            .sum::<u64>()
            .max(1);
        Ok(DatagenReader {
            bounded: config.total_rows().is_some(),
            contiguous: config.total_rows().is_some() && parallelism <= 1,
            splits,
            current: 0,
            source: self.clone(),
            batch_size,
            rows_per_second,
            started: None,
            produced: 0,
        })
    }
}

/// Number of splits of a `datagen` table, whatever the parallelism.
pub const SPLITS: u32 = 128;

pub(crate) struct DatagenReader {
    /// This reader's splits and their generators.
    splits: Vec<(u32, DatagenGenerator)>,
    /// Index into `splits` of the split read next.
    current: usize,
    bounded: bool,
    /// Bounded and owning every split: consecutive splits continue each other's rows.
    contiguous: bool,
    source: DatagenSource,
    batch_size: usize,
    /// This reader's share of `rows-per-second`.
    rows_per_second: u64,
    /// When the rate limit's clock started (the first poll, or the restore).
    started: Option<Instant>,
    /// Rows produced since `started`.
    produced: u64,
}

impl DatagenReader {
    /// Up to `rows` rows from the current split and the ones after it.
    fn next_contiguous(&mut self, rows: usize) -> Result<Option<RecordBatch>> {
        let mut parts = Vec::new();
        let mut left = rows;
        while left > 0 && self.current < self.splits.len() {
            let (_, generator) = &mut self.splits[self.current];
            match generator
                .next_batch(left)
                .map_err(|e| Error::data("datagen source", e.to_string()))?
            {
                Some(batch) if batch.num_rows() > 0 => {
                    left -= batch.num_rows();
                    parts.push(batch);
                }
                _ => self.current += 1,
            }
        }
        match parts.len() {
            0 => Ok(None),
            1 => Ok(parts.pop()),
            _ => concat_batches(&parts[0].schema(), &parts)
                .map(Some)
                .map_err(|e| Error::arrow("datagen source", e)),
        }
    }
}

impl SourceReader for DatagenReader {
    fn poll_next(&mut self) -> Result<SourcePoll> {
        while self
            .splits
            .get(self.current)
            .is_some_and(|(_, g)| g.is_exhausted())
            && self.bounded
        {
            self.current += 1;
        }
        if self.current >= self.splits.len() {
            return Ok(SourcePoll::Exhausted);
        }
        let started = *self.started.get_or_insert_with(Instant::now);
        let allowed = u128::from(self.rows_per_second) * started.elapsed().as_millis() / 1000;
        let due = u64::try_from(allowed)
            .unwrap_or(u64::MAX)
            .saturating_sub(self.produced)
            .min(self.batch_size as u64);
        if due == 0 {
            return Ok(SourcePoll::Pending);
        }
        let batch = if self.contiguous {
            self.next_contiguous(due as usize)?
        } else {
            let (_, generator) = &mut self.splits[self.current];
            generator
                .next_batch(due as usize)
                .map_err(|e| Error::data("datagen source", e.to_string()))?
        };
        if !self.bounded {
            self.current = (self.current + 1) % self.splits.len();
        }
        Ok(match batch {
            Some(batch) if batch.num_rows() > 0 => {
                self.produced += batch.num_rows() as u64;
                SourcePoll::Batch(batch)
            }
            _ => SourcePoll::Pending,
        })
    }

    /// `{"splits": {"<split>": <rows produced>, …}}`.
    fn position(&self) -> serde_json::Value {
        let splits: serde_json::Map<String, serde_json::Value> = self
            .splits
            .iter()
            .map(|(split, g)| (split.to_string(), g.rows_produced().into()))
            .collect();
        serde_json::json!({ "splits": splits })
    }

    /// Takes the positions of this reader's splits from `position`, which may hold the splits
    /// of every subtask of an earlier run at any parallelism.
    fn restore(&mut self, position: &serde_json::Value) -> Result<()> {
        let positions = position
            .get("splits")
            .and_then(serde_json::Value::as_object)
            .ok_or_else(|| Error::Internal(format!("bad datagen position {position}")))?;
        for (split, generator) in &mut self.splits {
            let rows = positions
                .get(&split.to_string())
                .and_then(serde_json::Value::as_u64)
                .ok_or_else(|| {
                    Error::Internal(format!(
                        "the checkpoint holds no position of datagen split {split}"
                    ))
                })?;
            *generator = self.source.generator(*split)?.with_rows_produced(rows);
        }
        self.current = 0;
        self.started = Some(Instant::now());
        self.produced = 0;
        Ok(())
    }

    /// Bounded splits are read one after another (as one when contiguous): a new split starts a new watermark
    /// generator. Unbounded splits are interleaved row-wise and read as one stream.
    fn remaining_records(&self) -> Option<u64> {
        if !self.bounded {
            return None;
        }
        self.splits.iter().try_fold(0u64, |sum, (_, generator)| {
            let total = generator.total_rows()?;
            Some(sum + total.saturating_sub(generator.rows_produced()))
        })
    }

    fn current_split(&self) -> usize {
        if self.bounded && !self.contiguous {
            self.current
        } else {
            0
        }
    }
}
