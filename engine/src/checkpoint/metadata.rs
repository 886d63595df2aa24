//! The `_metadata` file of a completed checkpoint (JSON).
//!
//! It names every state file of the checkpoint with its xxh3-64 checksum and size, and holds
//! the small state inline: source read positions (the reader's own JSON) and sinks'
//! pre-commit data (hex). It is written last and atomically (a temporary file renamed into
//! place on a local disk, a single PUT on an object store), so a checkpoint directory without
//! `_metadata` is an incomplete checkpoint and is ignored.

use serde::{Deserialize, Serialize};

use crate::ids::CheckpointId;
use crate::state::KeyGroupRange;

/// Version of the metadata layout; a reader refuses versions it does not know. Version 2
/// added files shared between checkpoints ([`StateFile::shared`]); version 1 files read as
/// version 2 files without shared files.
pub const METADATA_VERSION: u32 = 2;

/// Oldest metadata version a reader accepts.
pub const OLDEST_METADATA_VERSION: u32 = 1;

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
    /// Bytes of the state files this checkpoint wrote itself; the rest of
    /// [`CheckpointMetadata::state_bytes`] is in files of earlier checkpoints it references.
    pub fn written_bytes(&self) -> u64 {
        self.written_files().map(|f| f.bytes).sum()
    }

    /// The state files this checkpoint wrote itself (not referenced from an earlier one).
    pub fn written_files(&self) -> impl Iterator<Item = &StateFile> {
        self.operators
            .iter()
            .flat_map(|o| &o.files)
            .filter(|f| !f.shared || shared_file_checkpoint(&f.path) == Some(self.checkpoint_id))
    }

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

/// One state table of one subtask, or one key-group slice of it, stored as an Arrow IPC file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateFile {
    /// The state table's name ([`crate::state::SnapshotTable::name`]).
    pub table: String,
    /// Path relative to the checkpoint directory, or for a shared file relative to the job
    /// directory (`shared/<name>`).
    pub path: String,
    /// The file is in the job's `shared/` directory and may be referenced by several
    /// checkpoints (an incremental checkpoint's key-group slice); it is deleted once no
    /// retained checkpoint references it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub shared: bool,
    /// The key groups of the slice the file holds (incremental checkpoints); `None`: all of
    /// the subtask's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_groups: Option<KeyGroupRange>,
    /// xxh3-64 of the file's bytes, as 16 hex digits.
    pub checksum: String,
    pub bytes: u64,
    pub rows: u64,
}

/// The checkpoint that wrote the shared file named `path` (`…-chk<n>.arrow`).
pub(crate) fn shared_file_checkpoint(path: &str) -> Option<CheckpointId> {
    let stem = path.strip_suffix(".arrow")?;
    let (_, id) = stem.rsplit_once("-chk")?;
    id.parse().ok().map(CheckpointId)
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
    fn shared_file_names_carry_their_checkpoint() {
        assert_eq!(
            shared_file_checkpoint("shared/agg-0-groups-0a1b2c3d-kg4-5-chk12.arrow"),
            Some(CheckpointId(12))
        );
        assert_eq!(shared_file_checkpoint("agg-0-groups-0a1b2c3d.arrow"), None);
    }

    #[test]
    fn hex_round_trips() {
        let bytes = vec![0, 1, 0xab, 0xff];
        assert_eq!(from_hex(&to_hex(&bytes)), Some(bytes));
        assert_eq!(from_hex("abc"), None);
        assert_eq!(from_hex("zz"), None);
    }
}
