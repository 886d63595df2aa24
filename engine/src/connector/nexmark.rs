//! The `nexmark` source: one Nexmark table (person, auction or bid) generated on the fly.
//!
//! The event stream is dealt over the source's subtasks in blocks of 50 events, so any
//! parallelism yields exactly the rows of a single generator (see `sluice_datasets::nexmark`).
//! The read position is the generator's split, so a restore resumes at the next event.

use arrow::datatypes::SchemaRef;
use serde::{Deserialize, Serialize};
use sluice_datasets::nexmark::{NexmarkConfig, NexmarkGenerator, NexmarkSplit, NexmarkTable};

use super::{SourcePoll, SourceReader};
use crate::{Error, Result};

/// Reads one table of the Nexmark generator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NexmarkSource {
    pub table: NexmarkTable,
    pub config: NexmarkConfig,
}

impl NexmarkSource {
    pub fn new(table: NexmarkTable, config: NexmarkConfig) -> Self {
        NexmarkSource { table, config }
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
        let splits = self.config.split(parallelism).map_err(datasets_error)?;
        let split = splits.get(subtask as usize).copied().ok_or_else(|| {
            Error::Internal(format!(
                "no nexmark split for subtask {subtask} of {parallelism}"
            ))
        })?;
        Ok(NexmarkReader {
            generator: self.generator(split)?,
            source: self.clone(),
            batch_size,
        })
    }

    fn generator(&self, split: NexmarkSplit) -> Result<NexmarkGenerator> {
        Ok(NexmarkGenerator::from_split(self.config.clone(), split)
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
    batch_size: usize,
}

impl SourceReader for NexmarkReader {
    fn poll_next(&mut self) -> Result<SourcePoll> {
        match self
            .generator
            .next_table_batch(self.source.table, self.batch_size)
            .map_err(datasets_error)?
        {
            Some(batch) if batch.num_rows() > 0 => Ok(SourcePoll::Batch(batch)),
            // The tail of a split may hold events of other tables only.
            Some(_) => Ok(if self.generator.is_exhausted() {
                SourcePoll::Exhausted
            } else {
                SourcePoll::Pending
            }),
            None => Ok(SourcePoll::Exhausted),
        }
    }

    fn position(&self) -> serde_json::Value {
        serde_json::to_value(self.generator.split()).unwrap_or(serde_json::Value::Null)
    }

    fn restore(&mut self, position: &serde_json::Value) -> Result<()> {
        let split: NexmarkSplit = serde_json::from_value(position.clone())
            .map_err(|e| Error::Internal(format!("bad nexmark position {position}: {e}")))?;
        self.generator = self.source.generator(split)?;
        Ok(())
    }
}
