//! A client of etcd's v3 gRPC API, over the declarations in `proto/etcd.proto`: key-value
//! reads and writes, transactions, leases kept alive in the background, and watches.
//!
//! It connects to the first endpoint of the list that answers; a call that fails with the
//! connection gone reconnects on the next call (to the first endpoint that answers then), so a
//! member of a multi-node etcd cluster going away is survived.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tonic::transport::{Channel, Endpoint};
use tracing::{debug, warn};

/// Messages and clients generated from `proto/etcd.proto`.
pub mod pb {
    tonic::include_proto!("etcdserverpb");
}

use pb::kv_client::KvClient;
use pb::lease_client::LeaseClient;
use pb::watch_client::WatchClient;

/// How long connecting to one endpoint may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one unary call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Why an etcd call failed: names the endpoints and the operation.
#[derive(Debug, Clone, thiserror::Error)]
#[error("etcd at {endpoints}: {operation}: {message}")]
pub struct EtcdError {
    pub endpoints: String,
    pub operation: String,
    pub message: String,
}

/// A connection to an etcd cluster. Cheap to clone (the clones share the connection).
#[derive(Debug, Clone)]
pub struct Etcd {
    endpoints: Arc<Vec<String>>,
    channel: Arc<Mutex<Option<Channel>>>,
}

impl Etcd {
    /// Connects to the first of `endpoints` (`http://host:port`, or `host:port`) that answers.
    pub async fn connect(endpoints: &[String]) -> Result<Etcd, EtcdError> {
        let etcd = Etcd {
            endpoints: Arc::new(
                endpoints
                    .iter()
                    .map(|e| crate::rpc::endpoint_uri(e))
                    .collect(),
            ),
            channel: Arc::new(Mutex::new(None)),
        };
        if etcd.endpoints.is_empty() {
            return Err(etcd.error("connect", "no endpoint given (--etcd-endpoints)"));
        }
        etcd.channel().await?;
        Ok(etcd)
    }

    /// The endpoints, comma-separated, for messages.
    pub fn endpoints(&self) -> String {
        self.endpoints.join(",")
    }

    fn error(&self, operation: &str, message: impl std::fmt::Display) -> EtcdError {
        EtcdError {
            endpoints: self.endpoints(),
            operation: operation.to_string(),
            message: message.to_string(),
        }
    }

    /// The connected channel, connecting (to the first endpoint that answers) when there is
    /// none.
    async fn channel(&self) -> Result<Channel, EtcdError> {
        if let Some(channel) = self
            .channel
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            return Ok(channel);
        }
        let mut errors = Vec::new();
        for uri in self.endpoints.iter() {
            let endpoint = Endpoint::from_shared(uri.clone())
                .map_err(|e| self.error("connect", format!("endpoint {uri}: {e}")))?
                .connect_timeout(CONNECT_TIMEOUT)
                .timeout(CALL_TIMEOUT)
                .tcp_nodelay(true);
            match endpoint.connect().await {
                Ok(channel) => {
                    debug!(endpoint = %uri, "connected to etcd");
                    *self.channel.lock().unwrap_or_else(|p| p.into_inner()) = Some(channel.clone());
                    return Ok(channel);
                }
                Err(e) => errors.push(format!("{uri}: {}", transport_message(&e))),
            }
        }
        Err(self.error("connect", errors.join("; ")))
    }

    /// Forgets the connection after a transport failure, so the next call connects again.
    fn reset(&self, status: &tonic::Status) {
        if matches!(
            status.code(),
            tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled
        ) {
            *self.channel.lock().unwrap_or_else(|p| p.into_inner()) = None;
        }
    }

    fn failed(&self, operation: &str, status: tonic::Status) -> EtcdError {
        self.reset(&status);
        self.error(operation, status.message())
    }

    /// The value of `key`, with its revisions; `None` when it does not exist.
    pub async fn get(&self, key: &str) -> Result<Option<pb::KeyValue>, EtcdError> {
        Ok(self.get_at(key).await?.0)
    }

    /// [`Etcd::get`], with the store's revision the read saw: a watch from the revision after
    /// it misses no change.
    pub async fn get_at(&self, key: &str) -> Result<(Option<pb::KeyValue>, i64), EtcdError> {
        let operation = format!("get {key}");
        let mut kv = KvClient::new(self.channel().await?);
        let response = kv
            .range(pb::RangeRequest {
                key: key.as_bytes().to_vec(),
                ..Default::default()
            })
            .await
            .map_err(|s| self.failed(&operation, s))?
            .into_inner();
        let revision = response.header.map_or(0, |h| h.revision);
        Ok((response.kvs.into_iter().next(), revision))
    }

    /// Every key under `prefix`, in key order.
    pub async fn get_prefix(&self, prefix: &str) -> Result<Vec<pb::KeyValue>, EtcdError> {
        let operation = format!("get {prefix}*");
        let mut kv = KvClient::new(self.channel().await?);
        let response = kv
            .range(pb::RangeRequest {
                key: prefix.as_bytes().to_vec(),
                range_end: prefix_end(prefix.as_bytes()),
                ..Default::default()
            })
            .await
            .map_err(|s| self.failed(&operation, s))?;
        Ok(response.into_inner().kvs)
    }

    /// Puts `value` at `key` unconditionally (attached to `lease` when not 0).
    pub async fn put(&self, key: &str, value: Vec<u8>, lease: i64) -> Result<(), EtcdError> {
        let operation = format!("put {key}");
        let mut kv = KvClient::new(self.channel().await?);
        kv.put(pb::PutRequest {
            key: key.as_bytes().to_vec(),
            value,
            lease,
        })
        .await
        .map_err(|s| self.failed(&operation, s))?;
        Ok(())
    }

    /// Runs a transaction; `what` names it in errors.
    pub async fn txn(&self, what: &str, txn: pb::TxnRequest) -> Result<pb::TxnResponse, EtcdError> {
        let mut kv = KvClient::new(self.channel().await?);
        let response = kv.txn(txn).await.map_err(|s| self.failed(what, s))?;
        Ok(response.into_inner())
    }

    /// Grants a lease of `ttl` (rounded up to whole seconds, at least 1); returns its id.
    pub async fn grant(&self, ttl: Duration) -> Result<i64, EtcdError> {
        let seconds = ttl_seconds(ttl);
        let mut lease = LeaseClient::new(self.channel().await?);
        let response = lease
            .lease_grant(pb::LeaseGrantRequest {
                ttl: seconds,
                id: 0,
            })
            .await
            .map_err(|s| self.failed("grant a lease", s))?
            .into_inner();
        if !response.error.is_empty() {
            return Err(self.error("grant a lease", response.error));
        }
        Ok(response.id)
    }

    /// Revokes a lease: etcd deletes the keys attached to it at once.
    pub async fn revoke(&self, id: i64) -> Result<(), EtcdError> {
        let mut lease = LeaseClient::new(self.channel().await?);
        lease
            .lease_revoke(pb::LeaseRevokeRequest { id })
            .await
            .map_err(|s| self.failed("revoke a lease", s))?;
        Ok(())
    }

    /// Keeps lease `id` (granted with `ttl`) alive in the background, renewing it every third
    /// of its time to live. The returned handle's [`KeepAlive::lost`] turns true, for good,
    /// once the lease can no longer be vouched for: etcd said it expired, or no renewal was
    /// confirmed within the time to live (etcd unreachable, or this process was paused; the
    /// check runs on this process's monotonic clock, which keeps counting while it is
    /// stopped).
    pub fn keep_alive(&self, id: i64, ttl: Duration) -> KeepAlive {
        let ttl = Duration::from_secs(ttl_seconds(ttl) as u64);
        let (lost_tx, lost) = watch::channel(false);
        let etcd = self.clone();
        let confirmed = Arc::new(Mutex::new(Instant::now()));
        let guard = LeaseGuard {
            confirmed: confirmed.clone(),
            ttl,
            lost: lost.clone(),
        };
        let task = tokio::spawn(async move {
            let period = (ttl / 3).max(Duration::from_millis(100));
            let renew = {
                let etcd = etcd.clone();
                let confirmed = confirmed.clone();
                async move {
                    loop {
                        match etcd.keep_alive_stream(id, period, &confirmed).await {
                            Ok(reason) => return reason,
                            Err(error) => {
                                warn!(lease = id, %error, "keeping the lease alive failed; retrying");
                                tokio::time::sleep(period / 2).await;
                            }
                        }
                    }
                }
            };
            let deadline = {
                let confirmed = confirmed.clone();
                async move {
                    let mut ticks = tokio::time::interval(Duration::from_millis(50));
                    loop {
                        ticks.tick().await;
                        let last = *confirmed.lock().unwrap_or_else(|p| p.into_inner());
                        if last.elapsed() >= ttl {
                            return format!(
                                "no renewal confirmed for {} ms (time to live {} s)",
                                last.elapsed().as_millis(),
                                ttl.as_secs()
                            );
                        }
                    }
                }
            };
            let reason = tokio::select! {
                reason = renew => reason,
                reason = deadline => reason,
            };
            warn!(lease = id, %reason, "lease lost");
            let _ = lost_tx.send(true);
        });
        KeepAlive {
            id,
            lost,
            guard,
            task,
        }
    }

    /// One keep-alive stream: renews every `period` until etcd says the lease expired
    /// (returned as the reason) or the stream fails (the error).
    async fn keep_alive_stream(
        &self,
        id: i64,
        period: Duration,
        confirmed: &Mutex<Instant>,
    ) -> Result<String, EtcdError> {
        let mut lease = LeaseClient::new(self.channel().await?);
        let (requests, receiver) = mpsc::channel(4);
        // The first renewal goes out with the call: etcd answers the call (its response
        // headers) only once it has a message to answer.
        let mut sent = Instant::now();
        requests
            .send(pb::LeaseKeepAliveRequest { id })
            .await
            .map_err(|_| self.error("keep a lease alive", "the stream closed"))?;
        let mut responses = lease
            .lease_keep_alive(tokio_stream_from(receiver))
            .await
            .map_err(|s| self.failed("keep a lease alive", s))?
            .into_inner();
        loop {
            match responses.message().await {
                Ok(Some(response)) if response.ttl <= 0 => {
                    return Ok(format!("etcd says lease {id:x} has expired"));
                }
                Ok(Some(_)) => {
                    // Vouches for the lease from when the renewal was sent.
                    let mut last = confirmed.lock().unwrap_or_else(|p| p.into_inner());
                    *last = (*last).max(sent);
                }
                Ok(None) => return Err(self.error("keep a lease alive", "the stream ended")),
                Err(status) => return Err(self.failed("keep a lease alive", status)),
            }
            tokio::time::sleep(period).await;
            sent = Instant::now();
            if requests
                .send(pb::LeaseKeepAliveRequest { id })
                .await
                .is_err()
            {
                return Err(self.error("keep a lease alive", "the stream closed"));
            }
        }
    }

    /// Watches `key` (or every key under it when `prefix`) from revision `from` (0: from
    /// now). The events arrive on the returned receiver, which ends when the watch fails.
    pub async fn watch(
        &self,
        key: &str,
        prefix: bool,
        from: i64,
    ) -> Result<mpsc::Receiver<pb::Event>, EtcdError> {
        let operation = format!("watch {key}");
        let mut client = WatchClient::new(self.channel().await?);
        let (requests, receiver) = mpsc::channel(1);
        let create = pb::WatchRequest {
            request_union: Some(pb::watch_request::RequestUnion::CreateRequest(
                pb::WatchCreateRequest {
                    key: key.as_bytes().to_vec(),
                    range_end: if prefix {
                        prefix_end(key.as_bytes())
                    } else {
                        Vec::new()
                    },
                    start_revision: from,
                },
            )),
        };
        requests
            .send(create)
            .await
            .map_err(|_| self.error(&operation, "the request stream closed"))?;
        let mut responses = client
            .watch(tokio_stream_from(receiver))
            .await
            .map_err(|s| self.failed(&operation, s))?
            .into_inner();
        let (events, out) = mpsc::channel(64);
        let etcd = self.clone();
        tokio::spawn(async move {
            // The request side stays open as long as the watch runs.
            let _requests = requests;
            loop {
                match responses.message().await {
                    Ok(Some(response)) => {
                        if response.canceled {
                            warn!(operation, reason = %response.cancel_reason, "etcd cancelled the watch");
                            return;
                        }
                        for event in response.events {
                            if events.send(event).await.is_err() {
                                return;
                            }
                        }
                    }
                    Ok(None) => return,
                    Err(status) => {
                        etcd.reset(&status);
                        debug!(operation, error = %status.message(), "watch ended");
                        return;
                    }
                }
            }
        });
        Ok(out)
    }
}

/// A lease kept alive in the background; dropping it stops the renewals (the lease then
/// expires after its time to live, unless revoked first).
#[derive(Debug)]
pub struct KeepAlive {
    pub id: i64,
    lost: watch::Receiver<bool>,
    guard: LeaseGuard,
    task: tokio::task::JoinHandle<()>,
}

/// Answers, without waiting for the background task, whether a lease is still vouched for.
#[derive(Debug, Clone)]
pub struct LeaseGuard {
    /// When the newest confirmed renewal was sent.
    confirmed: Arc<Mutex<Instant>>,
    ttl: Duration,
    lost: watch::Receiver<bool>,
}

impl LeaseGuard {
    /// Whether the lease certainly still lives: not lost, and a renewal sent less than its
    /// time to live ago was confirmed (etcd counts from when it received that renewal, which
    /// is later). A process that was paused finds this false the moment it runs again,
    /// before any timer of its own fires.
    pub fn vouched(&self) -> bool {
        !*self.lost.borrow()
            && self
                .confirmed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .elapsed()
                < self.ttl
    }
}

impl KeepAlive {
    /// A guard that tells whether the lease is still vouched for.
    pub fn guard(&self) -> LeaseGuard {
        self.guard.clone()
    }

    /// Resolves once the lease is lost (at once if it already is).
    pub async fn lost(&self) {
        let mut lost = self.lost.clone();
        let _ = lost.wait_for(|lost| *lost).await;
    }

    /// Whether the lease is lost.
    pub fn is_lost(&self) -> bool {
        *self.lost.borrow()
    }
}

impl Drop for KeepAlive {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The end of the key range holding every key that starts with `prefix`: the prefix with its
/// last byte below 0xff incremented (etcd's convention).
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Every byte was 0xff: to the end of the key space.
    vec![0]
}

fn ttl_seconds(ttl: Duration) -> i64 {
    (ttl.as_millis().div_ceil(1000) as i64).max(1)
}

/// The message of a transport error with its causes (tonic's own says only "transport
/// error").
fn transport_message(error: &tonic::transport::Error) -> String {
    let mut message = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

/// A stream of the messages sent on `receiver`, for a client-streaming call.
fn tokio_stream_from<T: Send + 'static>(
    mut receiver: mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> + Send + 'static {
    futures::stream::poll_fn(move |cx| receiver.poll_recv(cx))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_increments_the_last_byte_that_can_be() {
        assert_eq!(prefix_end(b"/sluice/a/"), b"/sluice/a0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
    }

    #[test]
    fn time_to_live_rounds_up_to_whole_seconds() {
        assert_eq!(ttl_seconds(Duration::from_millis(1)), 1);
        assert_eq!(ttl_seconds(Duration::from_millis(2000)), 2);
        assert_eq!(ttl_seconds(Duration::from_millis(2001)), 3);
    }
}
