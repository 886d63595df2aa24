//! The `datagen` source: Flink's data generator connector for any schema.
//!
//! Options are Flink's (`number-of-rows`, `rows-per-second`, `fields.<f>.kind` = random |
//! sequence, `min`, `max`, `length`, `start`, `end`, `null-rate`); they are validated when the
//! graph is built, so a bad option fails before anything runs. Rows are shared over subtasks as
//! Flink does (sequences split into contiguous ranges). `rows-per-second` is enforced here: a
//! reader that is ahead of its share of the rate returns `Pending`.

use std::collections::BTreeMap;
use std::time::Instant;

use arrow::datatypes::SchemaRef;
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

    fn generator(&self, subtask: u32, parallelism: u32) -> Result<DatagenGenerator> {
        DatagenGenerator::new(&self.config()?, subtask, parallelism).map_err(|e| Error::Config {
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
        Ok(DatagenReader {
            generator: self.generator(subtask, parallelism)?,
            source: self.clone(),
            subtask,
            parallelism,
            batch_size,
            started: None,
        })
    }
}

pub(crate) struct DatagenReader {
    generator: DatagenGenerator,
    source: DatagenSource,
    subtask: u32,
    parallelism: u32,
    batch_size: usize,
    /// When the rate limit's clock started. After a restore it is set back by the time the
    /// restored rows took at the configured rate, so the rate holds from the restore on.
    started: Option<Instant>,
}

impl SourceReader for DatagenReader {
    fn poll_next(&mut self) -> Result<SourcePoll> {
        if self.generator.is_exhausted() {
            return Ok(SourcePoll::Exhausted);
        }
        let started = *self.started.get_or_insert_with(Instant::now);
        let due = self
            .generator
            .rows_due(started.elapsed())
            .min(self.batch_size as u64);
        if due == 0 {
            return Ok(SourcePoll::Pending);
        }
        let rows = due as usize;
        let batch = self
            .generator
            .next_batch(rows)
            .map_err(|e| Error::data("datagen source", e.to_string()))?;
        Ok(match batch {
            Some(batch) if batch.num_rows() > 0 => SourcePoll::Batch(batch),
            Some(_) => SourcePoll::Pending,
            None => SourcePoll::Exhausted,
        })
    }

    fn position(&self) -> serde_json::Value {
        serde_json::json!({ "rows_produced": self.generator.rows_produced() })
    }

    fn restore(&mut self, position: &serde_json::Value) -> Result<()> {
        let rows = position
            .get("rows_produced")
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| Error::Internal(format!("bad datagen position {position}")))?;
        let fresh = self.source.generator(self.subtask, self.parallelism)?;
        self.generator = fresh.with_rows_produced(rows);
        let rate = (self.source.config()?.rows_per_second() / u64::from(self.parallelism)).max(1);
        let behind = std::time::Duration::from_secs_f64(rows as f64 / rate as f64);
        self.started = Some(
            Instant::now()
                .checked_sub(behind)
                .unwrap_or_else(Instant::now),
        );
        Ok(())
    }
}
