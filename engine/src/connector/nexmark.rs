//! The `nexmark` source: one Nexmark table (person, auction or bid) generated on the fly.
//!
//! The event stream is dealt over [`SPLITS`] splits in blocks of 50 events (block `b` belongs
//! to split `b % SPLITS`), a number that does not depend on the parallelism; subtask `i` of `p`
//! reads the splits `s` with `s % p == i` as one stream in event order, so event time never goes
//! back within a subtask. The read position is the next event of each split, so a checkpoint
//! taken at one parallelism restores at any other: each subtask takes the positions of its
//! splits. Any parallelism yields exactly the rows of a single generator (see
//! `sluice_datasets::nexmark`).
//!
//! With `rate.limited`, events come out in wall time at the configured event rate (`rate`
//! events per second over all subtasks, the same rate that spaces their timestamps), as
//! Flink's Nexmark source does; otherwise as fast as the job takes them.

use std::collections::BTreeMap;
use std::time::Instant;

use arrow::datatypes::SchemaRef;
use serde::{Deserialize, Serialize};
use sluice_datasets::nexmark::{NexmarkConfig, NexmarkGenerator, NexmarkSplitSet, NexmarkTable};

use super::{SourcePoll, SourceReader};
use crate::{Error, Result};

/// Reads one table of the Nexmark generator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NexmarkSource {
    pub table: NexmarkTable,
    pub config: NexmarkConfig,
    /// Produce events in wall time at `config.first_event_rate` events per second.
    #[serde(default)]
    pub rate_limited: bool,
}

/// Number of splits of the event stream, whatever the parallelism (at most this many subtasks
/// read; more get no split and end at once).
pub const SPLITS: u32 = 128;

impl NexmarkSource {
    pub fn new(table: NexmarkTable, config: NexmarkConfig) -> Self {
        NexmarkSource {
            table,
            config,
            rate_limited: false,
        }
    }

    /// Paces events in wall time at the event rate.
    pub fn with_rate_limit(mut self, limited: bool) -> Self {
        self.rate_limited = limited;
        self
    }

    pub fn schema(&self) -> SchemaRef {
        self.table.schema()
    }

    pub(crate) fn reader(
        &self,
        subtask: u32,
        parallelism: u32,
        batch_size: usize,
    ) -> Result<NexmarkReader> {
        self.config.validate().map_err(datasets_error)?;
        let splits = (0..SPLITS)
            .filter(|s| s % parallelism.max(1) == subtask)
            .map(|s| (s, 0))
            .collect();
        Ok(NexmarkReader {
            generator: self.generator(splits)?,
            source: self.clone(),
            subtask,
            batch_size,
            pace: None,
        })
    }

    fn generator(&self, positions: BTreeMap<u32, u64>) -> Result<NexmarkGenerator> {
        let set = NexmarkSplitSet {
            count: SPLITS,
            positions,
            end_event: self.config.events,
        };
        Ok(NexmarkGenerator::from_split_set(self.config.clone(), &set)
            .map_err(datasets_error)?
            .with_tables(&[self.table]))
    }
}

fn datasets_error(error: sluice_datasets::Error) -> Error {
    Error::Config {
        key: "nexmark".into(),
        value: String::new(),
        message: error.to_string(),
    }
}

pub(crate) struct NexmarkReader {
    generator: NexmarkGenerator,
    source: NexmarkSource,
    subtask: u32,
    batch_size: usize,
    /// With a rate limit: when pacing started and the event the stream was at then.
    pace: Option<(Instant, u64)>,
}

impl NexmarkReader {
    /// With a rate limit, holds back the events whose time has not come yet in wall time.
    fn pace(&mut self) {
        if !self.source.rate_limited {
            return;
        }
        let (started, first) = *self
            .pace
            .get_or_insert_with(|| (Instant::now(), self.generator.next_event()));
        // Events are released in 10 ms steps, so batches are not needlessly small.
        let elapsed_ms = started.elapsed().as_millis() / 10 * 10;
        let due = elapsed_ms * u128::from(self.source.config.first_event_rate) / 1000;
        let due = u64::try_from(due).unwrap_or(u64::MAX);
        self.generator
            .set_pause_at(Some(first.saturating_add(due).saturating_add(1)));
    }
}

impl SourceReader for NexmarkReader {
    fn poll_next(&mut self) -> Result<SourcePoll> {
        self.pace();
        match self
            .generator
            .next_table_batch(self.source.table, self.batch_size)
            .map_err(datasets_error)?
        {
            Some(batch) if batch.num_rows() > 0 => Ok(SourcePoll::Batch(batch)),
            // The tail of a split may hold events of other tables only; a rate limit may hold
            // the next events back.
            Some(_) => Ok(if self.generator.is_exhausted() {
                SourcePoll::Exhausted
            } else {
                SourcePoll::Pending
            }),
            None => Ok(SourcePoll::Exhausted),
        }
    }

    fn remaining_records(&self) -> Option<u64> {
        let end = self.source.config.events?;
        Some(
            self.generator
                .split_positions()
                .into_iter()
                .map(|(split, next)| self.source.table.events_in_split(SPLITS, split, next, end))
                .sum(),
        )
    }

    /// `{"splits": {"<split>": <next event>, …}}`.
    fn position(&self) -> serde_json::Value {
        let splits: serde_json::Map<String, serde_json::Value> = self
            .generator
            .split_positions()
            .into_iter()
            .map(|(split, next)| (split.to_string(), next.into()))
            .collect();
        serde_json::json!({ "splits": splits })
    }

    /// Takes the positions of this reader's splits from `position`, which may hold the splits
    /// of every subtask of an earlier run at any parallelism.
    fn restore(&mut self, position: &serde_json::Value) -> Result<()> {
        let splits = position
            .get("splits")
            .and_then(serde_json::Value::as_object)
            .ok_or_else(|| Error::Internal(format!("bad nexmark position {position}")))?;
        let mut positions = BTreeMap::new();
        for (split, _) in self.generator.split_positions() {
            let next = splits
                .get(&split.to_string())
                .and_then(serde_json::Value::as_u64)
                .ok_or_else(|| {
                    Error::Internal(format!(
                        "the checkpoint holds no position of nexmark split {split} \
                         (subtask {})",
                        self.subtask
                    ))
                })?;
            positions.insert(split, next);
        }
        self.generator = self.source.generator(positions)?;
        self.pace = None;
        Ok(())
    }
}
