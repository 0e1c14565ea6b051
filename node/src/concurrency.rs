//! Locks and elections on the KV store, as etcd's server runs them (its
//! `clientv3/concurrency` recipes, used by the `v3lock` and `v3election`
//! services), over this member's own facade: replicated txns, linearizable
//! ranges and an internal watch stream on the watch hub.
//!
//! 1. A contender's key is `<name>/<lease id in hex>`, created with a txn
//!    only if absent (`create_revision == 0`) and attached to the caller's
//!    lease; its create revision orders the contenders.
//! 2. The first-created key under `<name>/` holds the lock or leads.
//! 3. A contender waits ([`wait_deletes`]) until no key under `<name>/`
//!    was created before its own: repeatedly the last-created such key is
//!    read, and its deletion watched for, from the revision of that read.
//! 4. A waiting request whose client goes away removes its key, as etcd's
//!    does.
//! 5. A request naming no lease gets one of its own ([`session_lease`]):
//!    etcd's servers open a `concurrency` session for every Lock, Campaign,
//!    Proclaim and Resign, which grants a lease of [`SESSION_TTL`] seconds
//!    when the request names none, and orphan it at once (nobody keeps it
//!    alive), so such a lock or leadership ends a minute later.

use actors::messages::{CloseStream, CreateWatch, OpenStream, ReadRequest, ReadResponse};
use proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use proto::etcdserverpb::request_op::Request as Op;
use proto::etcdserverpb::{
    Compare, DeleteRangeRequest, PutRequest, RangeRequest, RangeResponse, RequestOp,
    ResponseHeader, TxnRequest, TxnResponse, WatchCreateRequest, WatchResponse,
};
use proto::internal::internal_request::Request as Replicated;
use proto::mvccpb::KeyValue;
use proto::mvccpb::event::EventType;
use storage::EtcdError;
use storage::mvcc::ApplyResponse;
use tokio::sync::mpsc;

use crate::handle::NodeHandle;

/// The TTL of the lease etcd's `concurrency.NewSession` grants
/// (`defaultSessionTTL`).
pub const SESSION_TTL: i64 = 60;

/// The lease a Lock or Campaign runs on: the caller's, or (lease 0) a new
/// one of [`SESSION_TTL`] seconds that no one keeps alive, as etcd's servers
/// grant it through an orphaned session.
pub async fn session_lease(node: &NodeHandle, lease: i64) -> Result<i64, EtcdError> {
    if lease != 0 {
        return Ok(lease);
    }
    let grant = proto::etcdserverpb::LeaseGrantRequest {
        ttl: SESSION_TTL.max(node.limits.min_lease_ttl),
        id: node.next_lease_id(),
    };
    node.check_quota(crate::handle::LEASE_OVERHEAD).await?;
    match node.write(Replicated::LeaseGrant(grant)).await? {
        ApplyResponse::LeaseGrant(granted) if !granted.error.is_empty() => {
            Err(EtcdError::Backend(granted.error))
        }
        ApplyResponse::LeaseGrant(granted) => Ok(granted.id),
        _ => Err(EtcdError::Stopped),
    }
}

/// `<name>/`: the prefix every contender's key lives under.
pub fn prefix(name: &[u8]) -> Vec<u8> {
    let mut p = name.to_vec();
    p.push(b'/');
    p
}

/// `<prefix><lease in hex>`: a contender's key.
pub fn contender_key(prefix: &[u8], lease: i64) -> Vec<u8> {
    let mut k = prefix.to_vec();
    k.extend_from_slice(format!("{lease:x}").as_bytes());
    k
}

/// The end of the range holding every key under `prefix` (etcd's
/// `GetPrefixRangeEnd`; `"\0"`, every key, when no end exists).
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

fn create_revision_is(key: &[u8], revision: i64) -> Compare {
    Compare {
        result: CompareResult::Equal as i32,
        target: CompareTarget::Create as i32,
        key: key.to_vec(),
        target_union: Some(TargetUnion::CreateRevision(revision)),
        ..Default::default()
    }
}

fn op(request: Op) -> RequestOp {
    RequestOp {
        request: Some(request),
    }
}

/// The first-created (or, `last`, the last-created) key under `prefix`,
/// created at or below `max_create_revision` when that is not 0.
fn by_create(prefix: &[u8], last: bool, max_create_revision: i64) -> RangeRequest {
    RangeRequest {
        key: prefix.to_vec(),
        range_end: prefix_end(prefix),
        limit: 1,
        sort_order: if last {
            SortOrder::Descend
        } else {
            SortOrder::Ascend
        } as i32,
        sort_target: SortTarget::Create as i32,
        max_create_revision,
        ..Default::default()
    }
}

pub async fn txn(node: &NodeHandle, txn: TxnRequest) -> Result<TxnResponse, EtcdError> {
    match node.write(Replicated::Txn(txn)).await? {
        ApplyResponse::Txn(t) => Ok(t),
        _ => Err(EtcdError::Stopped),
    }
}

pub async fn range(node: &NodeHandle, range: RangeRequest) -> Result<RangeResponse, EtcdError> {
    match node.read(ReadRequest::Range(range), true).await? {
        ReadResponse::Range(r) => Ok(r),
        _ => Err(EtcdError::Stopped),
    }
}

/// The first-created key under `prefix`, with the read's header.
pub async fn first_created(
    node: &NodeHandle,
    prefix: &[u8],
) -> Result<(Option<KeyValue>, ResponseHeader), EtcdError> {
    let r = range(node, by_create(prefix, false, 0)).await?;
    Ok((r.kvs.into_iter().next(), r.header.unwrap_or_default()))
}

/// Step 1: creates `key` with `value` on `lease` unless it exists. Returns
/// the key's create revision, the txn's header, and the value it held
/// before when it existed already.
pub async fn create_contender(
    node: &NodeHandle,
    key: &[u8],
    value: &[u8],
    lease: i64,
) -> Result<(i64, ResponseHeader, Option<Vec<u8>>), EtcdError> {
    let resp = txn(
        node,
        TxnRequest {
            compare: vec![create_revision_is(key, 0)],
            success: vec![op(Op::RequestPut(PutRequest {
                key: key.to_vec(),
                value: value.to_vec(),
                lease,
                ..Default::default()
            }))],
            failure: vec![op(Op::RequestRange(RangeRequest {
                key: key.to_vec(),
                ..Default::default()
            }))],
        },
    )
    .await?;
    let header = resp.header.unwrap_or_default();
    if resp.succeeded {
        return Ok((header.revision, header, None));
    }
    let existing = resp
        .responses
        .into_iter()
        .find_map(|r| match r.response {
            Some(proto::etcdserverpb::response_op::Response::ResponseRange(r)) => {
                r.kvs.into_iter().next()
            }
            _ => None,
        })
        .ok_or(EtcdError::KeyNotFound)?;
    Ok((existing.create_revision, header, Some(existing.value)))
}

/// Runs `then` if `key`'s create revision is still `revision` (the caller
/// still holds the key); whether it ran, and the txn's header.
async fn if_created_at(
    node: &NodeHandle,
    key: &[u8],
    revision: i64,
    then: Op,
) -> Result<(bool, ResponseHeader), EtcdError> {
    let resp = txn(
        node,
        TxnRequest {
            compare: vec![create_revision_is(key, revision)],
            success: vec![op(then)],
            failure: vec![],
        },
    )
    .await?;
    Ok((resp.succeeded, resp.header.unwrap_or_default()))
}

/// Puts `value` on `key` if its create revision is still `revision`;
/// false when it is not (the key was deleted or recreated).
pub async fn put_if_created_at(
    node: &NodeHandle,
    key: &[u8],
    revision: i64,
    value: &[u8],
    lease: i64,
) -> Result<(bool, ResponseHeader), EtcdError> {
    let put = Op::RequestPut(PutRequest {
        key: key.to_vec(),
        value: value.to_vec(),
        lease,
        ..Default::default()
    });
    if_created_at(node, key, revision, put).await
}

/// Deletes `key` if its create revision is still `revision`.
pub async fn delete_if_created_at(
    node: &NodeHandle,
    key: &[u8],
    revision: i64,
) -> Result<ResponseHeader, EtcdError> {
    let delete = Op::RequestDeleteRange(DeleteRangeRequest {
        key: key.to_vec(),
        ..Default::default()
    });
    Ok(if_created_at(node, key, revision, delete).await?.1)
}

/// Deletes `key` (unlock).
pub async fn delete(node: &NodeHandle, key: &[u8]) -> Result<ResponseHeader, EtcdError> {
    match node
        .write(Replicated::DeleteRange(DeleteRangeRequest {
            key: key.to_vec(),
            ..Default::default()
        }))
        .await?
    {
        ApplyResponse::DeleteRange(d) => Ok(d.header.unwrap_or_default()),
        _ => Err(EtcdError::Stopped),
    }
}

/// Step 3: waits until no key under `prefix` was created at or below
/// `max_create_revision`; returns the header of the last read.
pub async fn wait_deletes(
    node: &NodeHandle,
    prefix: &[u8],
    max_create_revision: i64,
) -> Result<ResponseHeader, EtcdError> {
    loop {
        let r = range(node, by_create(prefix, true, max_create_revision.max(1))).await?;
        let header = r.header.unwrap_or_default();
        let Some(last) = r.kvs.into_iter().next() else {
            return Ok(header);
        };
        let mut watch = InternalWatch::open(node).await?;
        watch.create(&last.key, &[], header.revision).await?;
        loop {
            let response = watch.next().await.ok_or(EtcdError::Stopped)?;
            if response.canceled {
                break;
            }
            if response
                .events
                .iter()
                .any(|e| e.r#type == EventType::Delete as i32)
            {
                break;
            }
        }
    }
}

/// A watch stream of this member's own, on the watch hub. Dropping it
/// closes the stream there.
pub struct InternalWatch {
    node: NodeHandle,
    stream: u64,
    responses: mpsc::Receiver<WatchResponse>,
}

impl InternalWatch {
    pub async fn open(node: &NodeHandle) -> Result<InternalWatch, EtcdError> {
        let (tx, responses) = mpsc::channel(actors::watch::STREAM_BUFFER);
        let stream = node
            .watch
            .hub
            .request(OpenStream { responses: tx })
            .map_err(|_| EtcdError::TooManyRequests)?
            .await
            .map_err(|_| EtcdError::Stopped)?;
        Ok(InternalWatch {
            node: node.clone(),
            stream,
            responses,
        })
    }

    /// Watches `key` (to `range_end`, etcd's conventions) from `start`.
    pub async fn create(
        &mut self,
        key: &[u8],
        range_end: &[u8],
        start: i64,
    ) -> Result<(), EtcdError> {
        let request = WatchCreateRequest {
            key: key.to_vec(),
            range_end: range_end.to_vec(),
            start_revision: start,
            ..Default::default()
        };
        self.node
            .watch
            .hub
            .deliver(CreateWatch {
                stream: self.stream,
                request,
            })
            .await
            .map_err(|_| EtcdError::Stopped)?;
        // The `created` answer.
        self.responses.recv().await.ok_or(EtcdError::Stopped)?;
        Ok(())
    }

    /// The next response; `None` once the hub closed the stream.
    pub async fn next(&mut self) -> Option<WatchResponse> {
        let response = self.responses.recv().await?;
        self.node
            .watch
            .pending_events
            .sub(response.events.len() as i64);
        Some(response)
    }
}

impl Drop for InternalWatch {
    fn drop(&mut self) {
        let hub = self.node.watch.hub.clone();
        let stream = self.stream;
        tokio::spawn(async move {
            let _ = hub.deliver(CloseStream { stream }).await;
        });
    }
}

/// Step 4: deletes a contender's key when dropped before [`Abandon::keep`]
/// (the request failed, or its client went away while it waited).
pub struct Abandon {
    node: NodeHandle,
    key: Vec<u8>,
    revision: i64,
    armed: bool,
}

impl Abandon {
    pub fn new(node: &NodeHandle, key: &[u8], revision: i64) -> Abandon {
        Abandon {
            node: node.clone(),
            key: key.to_vec(),
            revision,
            armed: true,
        }
    }

    /// The key stays: the lock is held, or the campaign won.
    pub fn keep(mut self) {
        self.armed = false;
    }
}

impl Drop for Abandon {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (node, key, revision) = (
            self.node.clone(),
            std::mem::take(&mut self.key),
            self.revision,
        );
        tokio::spawn(async move {
            if let Err(e) = delete_if_created_at(&node, &key, revision).await {
                tracing::warn!(key = %String::from_utf8_lossy(&key), error = %e, "could not remove an abandoned contender's key");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_etcds_rules() {
        assert_eq!(prefix_end(b"a/"), b"a0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
        assert_eq!(prefix(b"lock"), b"lock/".to_vec());
        assert_eq!(contender_key(b"lock/", 0x694d), b"lock/694d".to_vec());
    }
}
