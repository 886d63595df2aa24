//! Leader election on one etcd key (see the module docs of [`super`]).

use tracing::{debug, info};

use super::etcd::{Etcd, EtcdError, KeepAlive, pb};
use super::{HaConfig, LeaderInfo, LeaderRecord};

/// This JobManager's leadership: held while its lease lives.
#[derive(Debug)]
pub struct Leadership {
    /// The leader key's create revision: larger than every earlier leader's.
    pub epoch: u64,
    pub lease: KeepAlive,
}

impl Leadership {
    /// Resolves when the leadership is lost (the lease expired or could not be renewed in
    /// time).
    pub async fn lost(&self) {
        self.lease.lost().await
    }

    /// Gives the leadership up: revokes the lease, which deletes the leader key, so a standby
    /// takes over at once instead of after the lease's time to live.
    pub async fn resign(self, etcd: &Etcd) -> Result<(), EtcdError> {
        etcd.revoke(self.lease.id).await
    }
}

/// Campaigns until this JobManager leads (`record` says where it serves), telling
/// `on_leader` of each other leader it waits behind. Fails only when etcd fails; the caller
/// retries.
pub async fn campaign(
    etcd: &Etcd,
    config: &HaConfig,
    record: &LeaderRecord,
    mut on_leader: impl FnMut(&LeaderInfo),
) -> Result<Leadership, EtcdError> {
    let key = config.leader_key();
    let value = serde_json::to_vec(record).expect("a leader record serialises");
    loop {
        let lease_id = etcd.grant(config.lease_ttl).await?;
        let lease = etcd.keep_alive(lease_id, config.lease_ttl);
        loop {
            if lease.is_lost() {
                // Waited so long the lease went (etcd was away): start with a new one.
                break;
            }
            let txn = pb::TxnRequest {
                compare: vec![pb::Compare {
                    result: pb::compare::CompareResult::Equal as i32,
                    target: pb::compare::CompareTarget::Create as i32,
                    key: key.as_bytes().to_vec(),
                    target_union: Some(pb::compare::TargetUnion::CreateRevision(0)),
                }],
                success: vec![pb::RequestOp {
                    request: Some(pb::request_op::Request::RequestPut(pb::PutRequest {
                        key: key.as_bytes().to_vec(),
                        value: value.clone(),
                        lease: lease_id,
                    })),
                }],
                failure: vec![pb::RequestOp {
                    request: Some(pb::request_op::Request::RequestRange(pb::RangeRequest {
                        key: key.as_bytes().to_vec(),
                        ..Default::default()
                    })),
                }],
            };
            let response = etcd.txn(&format!("campaign for {key}"), txn).await?;
            if response.succeeded {
                let epoch = response.header.map_or(0, |h| h.revision);
                info!(epoch, lease = lease_id, "elected leader");
                return Ok(Leadership {
                    epoch: u64::try_from(epoch).unwrap_or(0),
                    lease,
                });
            }
            let current = response
                .responses
                .into_iter()
                .find_map(|r| match r.response {
                    Some(pb::response_op::Response::ResponseRange(range)) => {
                        range.kvs.into_iter().next()
                    }
                    _ => None,
                });
            let Some(current) = current else {
                // Deleted between the compare and the read: try again.
                continue;
            };
            if let Some(leader) = LeaderInfo::from_kv(&current) {
                on_leader(&leader);
            }
            // Wait for the key's deletion (or for this lease to go).
            let mut events = etcd.watch(&key, false, current.mod_revision + 1).await?;
            tokio::select! {
                _ = async {
                    while let Some(event) = events.recv().await {
                        if event.r#type == pb::event::EventType::Delete as i32 {
                            debug!("the leader key was deleted");
                            return;
                        }
                    }
                } => {}
                () = lease.lost() => {}
            }
        }
    }
}
