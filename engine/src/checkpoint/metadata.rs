//! The `_metadata` file of a completed checkpoint (JSON).
//!
//! It names every state file of the checkpoint with its xxh3-64 checksum and size, and holds
//! the small state inline: source read positions (the reader's own JSON) and sinks'
//! pre-commit data (hex). It is written last, through a temporary file and an atomic rename,
//! so a checkpoint directory without `_metadata` is an incomplete checkpoint and is ignored.

use serde::{Deserialize, Serialize};

use crate::ids::CheckpointId;
use crate::state::KeyGroupRange;

/// Version of the metadata layout; a reader refuses versions it does not know.
pub const METADATA_VERSION: u32 = 1;

/// File name of the metadata inside `chk-<n>/`.
pub const METADATA_FILE: &str = "_metadata";

/// Everything needed to restore a job from one checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMetadata {
    pub version: u32,
    pub job_id: String,
    pub checkpoint_id: CheckpointId,
    /// When the checkpoint was triggered, milliseconds since the epoch.
    pub trigger_timestamp_ms: i64,
    /// When the last task acknowledged it.
    pub completed_timestamp_ms: i64,
    /// One entry per (vertex, subtask) that had a source or an operator in the checkpoint.
    pub operators: Vec<OperatorState>,
}

impl CheckpointMetadata {
    /// Total bytes of the state files.
    pub fn state_bytes(&self) -> u64 {
        self.operators
            .iter()
            .flat_map(|o| &o.files)
            .map(|f| f.bytes)
            .sum()
    }
}

/// The state of one subtask of one vertex.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OperatorState {
    pub vertex: String,
    pub subtask: u32,
    /// For keyed operators, the key groups the files cover.
    pub key_groups: Option<KeyGroupRange>,
    /// A source's read position ([`crate::connector::SourceReader::position`]).
    pub source_position: Option<serde_json::Value>,
    /// A sink's pre-commit data, hex-encoded.
    pub sink_pre_commit: Option<String>,
    pub files: Vec<StateFile>,
}

/// One state table of one subtask, stored as an Arrow IPC file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateFile {
    /// The state table's name ([`crate::state::SnapshotTable::name`]).
    pub table: String,
    /// Path relative to the checkpoint directory.
    pub path: String,
    /// xxh3-64 of the file's bytes, as 16 hex digits.
    pub checksum: String,
    pub bytes: u64,
    pub rows: u64,
}

pub(crate) fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn from_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips() {
        let bytes = vec![0, 1, 0xab, 0xff];
        assert_eq!(from_hex(&to_hex(&bytes)), Some(bytes));
        assert_eq!(from_hex("abc"), None);
        assert_eq!(from_hex("zz"), None);
    }
}
