//! Identifier newtypes passed between modules (never a bare integer or string).

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident($inner:ty)) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub $inner);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }
    };
}

id_type!(
    /// A vertex of a JobGraph: its index in the graph's vertex list.
    VertexId(u32)
);
id_type!(
    /// One parallel instance of a vertex, `0..parallelism`.
    SubtaskIndex(u32)
);
id_type!(
    /// How many times a subtask has been (re)started.
    AttemptNumber(u32)
);
id_type!(
    /// A checkpoint, increasing from 1 within a job.
    CheckpointId(u64)
);
id_type!(
    /// A key group, `0..max_parallelism`: the unit in which keyed state is partitioned and moved.
    KeyGroup(u32)
);
id_type!(
    /// A slot of a TaskManager (one pinned worker thread).
    SlotId(u32)
);

/// A job, unique within a cluster: 32 lowercase hex digits, as Flink's job ids.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(pub String);

impl JobId {
    /// A fresh id from the clock and the process id (unique enough for a cluster's lifetime).
    pub fn generate() -> Self {
        use std::time::{SystemTime, UNIX_EPOCH};
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let seed = nanos ^ (u128::from(std::process::id()) << 64);
        let hi = xxhash_rust::xxh3::xxh3_64(&seed.to_le_bytes());
        let lo = xxhash_rust::xxh3::xxh3_64(&hi.to_le_bytes());
        JobId(format!("{hi:016x}{lo:016x}"))
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
