//! The TaskManager's side of cluster checkpoints: a deployed slice's acknowledgements go to
//! the JobMaster as `AcknowledgeCheckpoint` RPCs, in order, through a bounded queue drained by
//! one forwarding task per job (the slice's writer thread never waits on the network).
//! [`s3`] is the `s3://` checkpoint store every process of the `sluice` executable registers.

pub mod s3;

use std::sync::Arc;
use std::time::Duration;

use sluice_engine::checkpoint::{CheckpointStorage, StatePath, StateStores};
use sluice_engine::ids::{CheckpointId, JobId};
use sluice_engine::runtime::{CheckpointEvent, CheckpointListener, SliceCheckpointing};
use tokio::sync::mpsc;
use tracing::warn;

use crate::rpc::{JobMasterCaller, proto};

/// Acknowledgements queued per job before the writer thread waits for the forwarder.
const ACK_QUEUE: usize = 256;

/// Hands acknowledgements to the job's forwarder (called on the slice's writer thread).
struct ForwardingAcks {
    job_id: JobId,
    sender: mpsc::Sender<proto::AcknowledgeCheckpointRequest>,
}

impl CheckpointListener for ForwardingAcks {
    fn on_checkpoint_event(&self, event: CheckpointEvent) {
        let request = match event {
            CheckpointEvent::Acknowledged {
                checkpoint,
                task,
                states,
                alignment,
            } => match serde_json::to_string(&states) {
                Ok(json) => proto::AcknowledgeCheckpointRequest {
                    job_id: self.job_id.0.clone(),
                    chain: task.chain as u32,
                    subtask: task.subtask,
                    checkpoint_id: checkpoint.0,
                    snapshot_json: json,
                    decline_reason: String::new(),
                    alignment_duration_ms: u64::try_from(alignment.as_millis()).unwrap_or(u64::MAX),
                },
                Err(error) => proto::AcknowledgeCheckpointRequest {
                    job_id: self.job_id.0.clone(),
                    chain: task.chain as u32,
                    subtask: task.subtask,
                    checkpoint_id: checkpoint.0,
                    snapshot_json: String::new(),
                    decline_reason: format!("state list could not be encoded: {error}"),
                    alignment_duration_ms: 0,
                },
            },
            CheckpointEvent::Declined {
                checkpoint,
                task,
                reason,
            } => proto::AcknowledgeCheckpointRequest {
                job_id: self.job_id.0.clone(),
                chain: task.chain as u32,
                subtask: task.subtask,
                checkpoint_id: checkpoint.0,
                snapshot_json: String::new(),
                decline_reason: reason,
                alignment_duration_ms: 0,
            },
        };
        if self.sender.blocking_send(request).is_err() {
            warn!(job_id = %self.job_id, "checkpoint acknowledgement dropped: the forwarder has stopped");
        }
    }
}

/// How a slice of job `job_id` takes part in checkpoints into the shared directory `dir` (a
/// local directory every process sees, or an object-store URL that `stores` opens), with the
/// forwarding task that sends its acknowledgements to the JobMaster at `job_master`;
/// checkpoint ids continue after `last_completed` (the checkpoint a restarted attempt resumes
/// from). Must be called within a tokio runtime. Fails when `dir`'s store cannot be opened.
pub fn slice_checkpointing(
    job_id: &JobId,
    stores: &StateStores,
    dir: &StatePath,
    incremental: bool,
    job_master: String,
    last_completed: Option<CheckpointId>,
) -> sluice_engine::Result<SliceCheckpointing> {
    let storage = CheckpointStorage::open(stores, dir, job_id, 1)?.with_incremental(incremental);
    let (sender, receiver) = mpsc::channel(ACK_QUEUE);
    tokio::spawn(forward_acks(job_id.clone(), job_master, receiver));
    Ok(SliceCheckpointing {
        storage,
        listener: Arc::new(ForwardingAcks {
            job_id: job_id.clone(),
            sender,
        }),
        last_completed,
    })
}

/// Sends a job's acknowledgements in order, retrying one a few times when the JobMaster
/// cannot be reached (a lost one lets the checkpoint time out).
async fn forward_acks(
    job_id: JobId,
    address: String,
    mut acks: mpsc::Receiver<proto::AcknowledgeCheckpointRequest>,
) {
    let mut job_master = JobMasterCaller::new(address);
    while let Some(ack) = acks.recv().await {
        let sent = job_master
            .call(
                3,
                Duration::from_millis(100),
                |mut client| {
                    let ack = ack.clone();
                    async move { client.acknowledge_checkpoint(ack).await.map(drop) }
                },
                |error, attempts| {
                    warn!(job_id = %job_id, checkpoint_id = ack.checkpoint_id, %error, attempts, "checkpoint acknowledgement failed; retrying");
                },
            )
            .await;
        if let Err(error) = sent {
            warn!(job_id = %job_id, checkpoint_id = ack.checkpoint_id, %error, "checkpoint acknowledgement lost");
        }
    }
}
