//! A bounded source over batches held in the JobGraph itself.
//!
//! In the graph's JSON the batches travel as an Arrow IPC stream, so a graph with a memory
//! source can still be sent to a JobManager. Subtask `i` of `n` reads batches `i, i+n, …`.

use arrow::datatypes::SchemaRef;
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use arrow::record_batch::RecordBatch;
use serde::ser::SerializeStruct;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{SourcePoll, SourceReader};
use crate::{Error, Result};

/// Batches to replay as a source.
#[derive(Debug, Clone, PartialEq)]
pub struct MemorySource {
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
}

impl MemorySource {
    /// All batches must have `schema`.
    pub fn new(schema: SchemaRef, batches: Vec<RecordBatch>) -> Result<Self> {
        if let Some(bad) = batches
            .iter()
            .position(|b| b.schema().fields() != schema.fields())
        {
            return Err(Error::plan(
                "memory source",
                format!("batch {bad} does not have the declared schema"),
            ));
        }
        Ok(MemorySource { schema, batches })
    }

    /// The rows it holds.
    pub(crate) fn rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }

    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    pub(crate) fn reader(&self, subtask: u32, parallelism: u32) -> MemoryReader {
        let batches = self
            .batches
            .iter()
            .skip(subtask as usize)
            .step_by(parallelism as usize)
            .filter(|b| b.num_rows() > 0)
            .cloned()
            .collect();
        MemoryReader { batches, next: 0 }
    }
}

pub(crate) struct MemoryReader {
    batches: Vec<RecordBatch>,
    next: usize,
}

impl SourceReader for MemoryReader {
    fn poll_next(&mut self) -> Result<SourcePoll> {
        match self.batches.get(self.next) {
            Some(batch) => {
                self.next += 1;
                Ok(SourcePoll::Batch(batch.clone()))
            }
            None => Ok(SourcePoll::Exhausted),
        }
    }

    fn position(&self) -> serde_json::Value {
        serde_json::json!({ "next_batch": self.next })
    }

    fn restore(&mut self, position: &serde_json::Value) -> Result<()> {
        let next = position
            .get("next_batch")
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| Error::Internal(format!("bad memory source position {position}")))?;
        self.next = next as usize;
        Ok(())
    }
}

impl Serialize for MemorySource {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut bytes = Vec::new();
        let mut writer =
            StreamWriter::try_new(&mut bytes, &self.schema).map_err(serde::ser::Error::custom)?;
        for batch in &self.batches {
            writer.write(batch).map_err(serde::ser::Error::custom)?;
        }
        writer.finish().map_err(serde::ser::Error::custom)?;
        drop(writer);
        let mut hex = String::with_capacity(bytes.len() * 2);
        for byte in bytes {
            use std::fmt::Write as _;
            let _ = write!(hex, "{byte:02x}");
        }
        let mut state = serializer.serialize_struct("MemorySource", 1)?;
        state.serialize_field("ipc_stream_hex", &hex)?;
        state.end()
    }
}

impl<'de> Deserialize<'de> for MemorySource {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Raw {
            ipc_stream_hex: String,
        }
        let raw = Raw::deserialize(deserializer)?;
        let hex = raw.ipc_stream_hex.as_bytes();
        if hex.len() % 2 != 0 {
            return Err(serde::de::Error::custom("odd length of ipc_stream_hex"));
        }
        let bytes = hex
            .chunks(2)
            .map(|pair| {
                std::str::from_utf8(pair)
                    .ok()
                    .and_then(|s| u8::from_str_radix(s, 16).ok())
                    .ok_or_else(|| serde::de::Error::custom("ipc_stream_hex is not hex"))
            })
            .collect::<Result<Vec<u8>, D::Error>>()?;
        let reader =
            StreamReader::try_new(bytes.as_slice(), None).map_err(serde::de::Error::custom)?;
        let schema = reader.schema();
        let batches = reader
            .collect::<Result<Vec<_>, _>>()
            .map_err(serde::de::Error::custom)?;
        Ok(MemorySource { schema, batches })
    }
}
