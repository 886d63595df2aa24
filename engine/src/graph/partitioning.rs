//! How an edge distributes records between the subtasks of its two vertices.

use serde::{Deserialize, Serialize};

/// The partitioning of an edge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Partitioning {
    /// Subtask i sends to subtask i. Requires equal parallelism; such edges are chained.
    Forward,
    /// Rows are hashed on the key columns into key groups (`0..max_parallelism` of the target),
    /// and each key group belongs to one target subtask.
    Hash { keys: Vec<String> },
    /// Whole batches go round-robin to the target subtasks.
    Rebalance,
    /// Every batch goes to every target subtask.
    Broadcast,
}

impl Partitioning {
    pub fn hash<S: Into<String>>(keys: impl IntoIterator<Item = S>) -> Self {
        Partitioning::Hash {
            keys: keys.into_iter().map(Into::into).collect(),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Partitioning::Forward => "FORWARD",
            Partitioning::Hash { .. } => "HASH",
            Partitioning::Rebalance => "REBALANCE",
            Partitioning::Broadcast => "BROADCAST",
        }
    }
}
