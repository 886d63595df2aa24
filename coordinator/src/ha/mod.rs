//! High availability through etcd: JobManagers elect a leader, the leader's **epoch** fences
//! every write of a deposed one, and etcd holds what a new leader needs to take over.
//!
//! ```text
//! /sluice/<cluster-id>/leader                 the leader's addresses, on its lease
//! /sluice/<cluster-id>/jobs/<job-id>          a submitted job: its JobGraph, settings, attempt, end
//! /sluice/<cluster-id>/checkpoints/<job-id>   the job's latest completed checkpoint (id, directory)
//! ```
//!
//! **Election** ([`election`]): every JobManager grants itself a lease and tries to create the
//! leader key on it, in a transaction that succeeds only when the key does not exist. The one
//! that creates it leads; its epoch is the key's create revision, which etcd makes larger for
//! every later leader. The others watch the key and try again when it is deleted: when the
//! leader's lease expires (it died, or was paused or cut off past the lease's time to live) or
//! it resigned.
//!
//! **Fencing**: a leader that was paused does not know it lost the lease until it runs again.
//! So everything it writes is checked against the epoch: every write to etcd is a transaction
//! that compares the leader key's create revision with its epoch (a checkpoint pointer is moved
//! only this way), and every RPC to a TaskManager carries the epoch, which TaskManagers compare
//! with the highest they have seen and refuse when lower.
//!
//! **Takeover**: the new leader reads every job from etcd, resumes each unfinished one from its
//! latest completed checkpoint as a new execution attempt, and serves. TaskManagers watch the
//! leader key: when it names a new leader they cancel the tasks the old one deployed and
//! register with the new one.

pub mod election;
pub mod etcd;
pub mod store;

use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use election::{Leadership, campaign};
pub use etcd::{Etcd, EtcdError};
pub use store::{CheckpointPointer, HaStore, JobRecord};

/// The gRPC metadata key that carries the leader's epoch on every call to a TaskManager.
pub const EPOCH_HEADER: &str = "sluice-leader-epoch";

/// Settings of high availability through etcd (`--ha etcd`).
#[derive(Debug, Clone)]
pub struct HaConfig {
    /// etcd endpoints (`--etcd-endpoints URL[,URL…]`).
    pub endpoints: Vec<String>,
    /// Names this cluster's keys (`--cluster-id`): several clusters can share one etcd.
    pub cluster_id: String,
    /// Time to live of a leader's lease (`high-availability.etcd.lease-ttl`, whole seconds);
    /// a dead leader is replaced after about this long. Default 5 s.
    pub lease_ttl: Duration,
    /// Pause between attempts to reach etcd when it does not answer
    /// (`high-availability.etcd.retry-delay`); default 1 s, doubling up to 10 s.
    pub retry_delay: Duration,
}

impl HaConfig {
    pub fn new(endpoints: Vec<String>, cluster_id: impl Into<String>) -> Self {
        HaConfig {
            endpoints,
            cluster_id: cluster_id.into(),
            lease_ttl: Duration::from_secs(5),
            retry_delay: Duration::from_secs(1),
        }
    }

    /// `/sluice/<cluster-id>/`.
    pub fn prefix(&self) -> String {
        format!("/sluice/{}/", self.cluster_id)
    }

    pub fn leader_key(&self) -> String {
        format!("{}leader", self.prefix())
    }
}

/// What the leader key holds: where the leader serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderRecord {
    /// host:port of its RPC services (ResourceManager, JobMaster).
    pub rpc: String,
    /// `http://host:port` of its REST API.
    pub rest: String,
}

/// The current leader as etcd shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderInfo {
    pub record: LeaderRecord,
    /// The leader key's create revision.
    pub epoch: u64,
}

impl LeaderInfo {
    /// Reads the leader key's value; `None` when it holds something else.
    pub fn from_kv(kv: &etcd::pb::KeyValue) -> Option<LeaderInfo> {
        let record = serde_json::from_slice(&kv.value).ok()?;
        Some(LeaderInfo {
            record,
            epoch: u64::try_from(kv.create_revision).ok()?,
        })
    }
}

/// Reads the current leader; `None` when there is none.
pub async fn current_leader(
    etcd: &Etcd,
    config: &HaConfig,
) -> Result<Option<LeaderInfo>, EtcdError> {
    Ok(etcd
        .get(&config.leader_key())
        .await?
        .as_ref()
        .and_then(LeaderInfo::from_kv))
}

/// Connects to etcd, retrying with a growing pause (logged each time, naming the endpoints)
/// until it answers or `stop` resolves (`None` then).
pub async fn connect_with_retry(
    config: &HaConfig,
    who: &str,
    stop: &mut tokio::sync::broadcast::Receiver<()>,
) -> Option<Etcd> {
    let mut delay = config.retry_delay;
    loop {
        match Etcd::connect(&config.endpoints).await {
            Ok(etcd) => return Some(etcd),
            Err(error) => {
                tracing::error!(%error, retry_in_ms = delay.as_millis() as u64, "{who}: etcd is unreachable; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = stop.recv() => return None,
                }
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }
    }
}
