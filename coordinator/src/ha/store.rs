//! What etcd holds for a leader to take over: submitted jobs and each job's latest completed
//! checkpoint. Every write is a transaction fenced by the writer's epoch: it applies only
//! while the leader key's create revision is that epoch, i.e. while the writer still leads.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use sluice_engine::checkpoint::{CheckpointConfig, RestartStrategy};
use sluice_engine::ids::{CheckpointId, JobId};
use tracing::warn;

use super::HaConfig;
use super::etcd::{Etcd, EtcdError, pb};

/// A submitted job as etcd keeps it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobRecord {
    pub id: String,
    /// The JobGraph as JSON (`JobGraph::to_json`).
    pub graph: String,
    pub checkpointing: Option<CheckpointConfig>,
    pub restart_strategy: RestartStrategy,
    pub submitted_ms: u64,
    /// The newest execution attempt started; a new leader starts the next one.
    pub attempt: u32,
    /// How the job ended (FINISHED, FAILED, CANCELED), once it has: it is not resumed then.
    pub end: Option<JobEnd>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobEnd {
    pub state: String,
    pub failure: Option<String>,
    pub end_ms: u64,
}

/// A job's latest completed checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointPointer {
    pub checkpoint_id: u64,
}

impl CheckpointPointer {
    pub fn id(&self) -> CheckpointId {
        CheckpointId(self.checkpoint_id)
    }
}

/// Why a fenced write did not apply.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FencedError {
    /// The leader key's epoch is no longer the writer's: another JobManager leads.
    #[error("this JobManager is no longer the leader (its epoch {0} was superseded)")]
    Deposed(u64),
    #[error(transparent)]
    Etcd(#[from] EtcdError),
}

/// The leader's view of the HA store, fenced by its epoch.
#[derive(Debug, Clone)]
pub struct HaStore {
    etcd: Etcd,
    config: Arc<HaConfig>,
    pub epoch: u64,
    /// Writes refused because the epoch was superseded.
    pub rejected: Arc<AtomicU64>,
}

impl HaStore {
    pub fn new(etcd: Etcd, config: Arc<HaConfig>, epoch: u64) -> Self {
        HaStore {
            etcd,
            config,
            epoch,
            rejected: Arc::new(AtomicU64::new(0)),
        }
    }

    fn job_key(&self, id: &JobId) -> String {
        format!("{}jobs/{}", self.config.prefix(), id.0)
    }

    fn checkpoint_key(&self, id: &JobId) -> String {
        format!("{}checkpoints/{}", self.config.prefix(), id.0)
    }

    /// Puts `value` at `key` if this leader still leads.
    async fn fenced_put(&self, what: &str, key: String, value: Vec<u8>) -> Result<(), FencedError> {
        let leader_key = self.config.leader_key();
        let txn = pb::TxnRequest {
            compare: vec![pb::Compare {
                result: pb::compare::CompareResult::Equal as i32,
                target: pb::compare::CompareTarget::Create as i32,
                key: leader_key.into_bytes(),
                target_union: Some(pb::compare::TargetUnion::CreateRevision(
                    i64::try_from(self.epoch).unwrap_or(i64::MAX),
                )),
            }],
            success: vec![pb::RequestOp {
                request: Some(pb::request_op::Request::RequestPut(pb::PutRequest {
                    key: key.into_bytes(),
                    value,
                    lease: 0,
                })),
            }],
            failure: Vec::new(),
        };
        let response = self.etcd.txn(what, txn).await?;
        if response.succeeded {
            Ok(())
        } else {
            let rejected = self.rejected.fetch_add(1, Ordering::Relaxed) + 1;
            warn!(
                epoch = self.epoch,
                what, rejected, "write refused: a newer leader's epoch fences this JobManager out"
            );
            Err(FencedError::Deposed(self.epoch))
        }
    }

    /// Stores (or updates) a job.
    pub async fn put_job(&self, record: &JobRecord) -> Result<(), FencedError> {
        let id = JobId(record.id.clone());
        let value = serde_json::to_vec(record).expect("a job record serialises");
        self.fenced_put(
            &format!("store job {}", record.id),
            self.job_key(&id),
            value,
        )
        .await
    }

    /// Moves job `id`'s checkpoint pointer to `checkpoint`.
    pub async fn commit_checkpoint(
        &self,
        id: &JobId,
        checkpoint: CheckpointId,
    ) -> Result<(), FencedError> {
        let value = serde_json::to_vec(&CheckpointPointer {
            checkpoint_id: checkpoint.0,
        })
        .expect("a checkpoint pointer serialises");
        self.fenced_put(
            &format!("commit checkpoint {} of job {id}", checkpoint.0),
            self.checkpoint_key(id),
            value,
        )
        .await
    }

    /// Every stored job with its checkpoint pointer. A record that does not parse is skipped
    /// with a warning naming its key.
    pub async fn jobs(&self) -> Result<Vec<(JobRecord, Option<CheckpointPointer>)>, EtcdError> {
        let jobs_prefix = format!("{}jobs/", self.config.prefix());
        let pointers_prefix = format!("{}checkpoints/", self.config.prefix());
        let pointers: std::collections::HashMap<String, CheckpointPointer> = self
            .etcd
            .get_prefix(&pointers_prefix)
            .await?
            .into_iter()
            .filter_map(|kv| {
                let key = String::from_utf8_lossy(&kv.key).to_string();
                let id = key.strip_prefix(&pointers_prefix)?.to_string();
                match serde_json::from_slice(&kv.value) {
                    Ok(pointer) => Some((id, pointer)),
                    Err(error) => {
                        warn!(key, %error, "unreadable checkpoint pointer in etcd; ignored");
                        None
                    }
                }
            })
            .collect();
        let mut jobs = Vec::new();
        for kv in self.etcd.get_prefix(&jobs_prefix).await? {
            let key = String::from_utf8_lossy(&kv.key).to_string();
            match serde_json::from_slice::<JobRecord>(&kv.value) {
                Ok(record) => {
                    let pointer = pointers.get(&record.id).copied();
                    jobs.push((record, pointer));
                }
                Err(error) => warn!(key, %error, "unreadable job record in etcd; skipped"),
            }
        }
        Ok(jobs)
    }
}
