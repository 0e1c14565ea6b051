//! `etcdserverpb.Lease`: grant, revoke, keep-alive, time-to-live and the
//! lease list, with etcd 3.4's answers.
//!
//! 1. `LeaseGrant` raises a TTL below etcd's minimum (1.5 election
//!    timeouts), picks a cluster-unique positive id when the client names
//!    none, checks the quota (etcd charges 64 bytes) and replicates the
//!    grant; the store refuses a TTL above 9e9 s and an id in use.
//! 2. `LeaseRevoke` replicates the revoke; the store deletes every attached
//!    key in one revision (watchers see the deletes).
//! 3. `LeaseKeepAlive` answers each request on the stream with the lease's
//!    TTL (0 for an unknown lease). The leader's lessor answers; on a
//!    follower the request is forwarded to the leader's client URL, as
//!    etcd forwards it.
//! 4. `LeaseTimeToLive` takes the remaining TTL from the leader's lessor
//!    (forwarded there from a follower) and the granted TTL and keys from
//!    the store; an unknown lease gets TTL -1.
//! 5. `LeaseLeases` lists the store's leases (any member).

use std::pin::Pin;
use std::time::Duration;

use futures::{Stream, StreamExt};
use proto::etcdserverpb::lease_client::LeaseClient;
use proto::etcdserverpb::lease_server::Lease;
use proto::etcdserverpb::{
    LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveRequest, LeaseKeepAliveResponse,
    LeaseLeasesRequest, LeaseLeasesResponse, LeaseRevokeRequest, LeaseRevokeResponse, LeaseStatus,
    LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
};
use proto::internal::internal_request::Request as Replicated;
use storage::EtcdError;
use storage::mvcc::ApplyResponse;
use tonic::{Request, Response, Status, Streaming};

use actors::messages::{ReadRequest, ReadResponse};

use crate::errors::{reply, to_status};
use crate::handle::{LEASE_OVERHEAD, NodeHandle};

/// The Lease service.
pub struct LeaseService {
    node: NodeHandle,
}

impl LeaseService {
    pub fn new(node: NodeHandle) -> Self {
        Self { node }
    }
}

/// How long a keep-alive or time-to-live waits for a leader (an election,
/// a lessor taking over) before it fails; etcd waits too rather than end
/// the client's stream.
const LEADER_WAIT: Duration = Duration::from_secs(3);
/// Pause between two tries while waiting for a leader.
const RETRY: Duration = Duration::from_millis(10);
/// Keep-alives of one stream worked on at once (answered in order).
const KEEP_ALIVES_IN_FLIGHT: usize = 64;

/// Where a lease request that only the leader's lessor answers goes.
enum Answerer {
    /// This member leads and its lessor has taken over.
    Here,
    /// Another member leads: forward to it.
    Leader(tonic::transport::Channel),
}

/// Waits (bounded) until the request can be answered here or forwarded. A
/// member that leads but whose lessor has not taken over yet (it does
/// within a tick) waits rather than forward to itself.
async fn answerer(node: &NodeHandle) -> Result<Answerer, Status> {
    let deadline = tokio::time::Instant::now() + LEADER_WAIT;
    loop {
        let error = match node.is_leader().await {
            Ok(true) => match node.lessor_primary().await {
                Ok(true) => return Ok(Answerer::Here),
                Ok(false) => EtcdError::NotLeader,
                Err(e) => e,
            },
            Ok(false) => match node.leader_channel().await {
                Ok(channel) => return Ok(Answerer::Leader(channel)),
                Err(e) => e,
            },
            Err(e) => e,
        };
        if tokio::time::Instant::now() >= deadline {
            return Err(to_status(&error));
        }
        tokio::time::sleep(RETRY).await;
    }
}

/// The first try of a keep-alive, already sent to the lessor with others
/// of its stream (`None`: not sent).
type FirstTry = Option<Result<tokio::sync::oneshot::Receiver<Result<i64, EtcdError>>, EtcdError>>;

/// Step 3: one keep-alive, answered here or by the leader; the header is
/// this member's, as etcd fills it.
async fn keep_alive(
    node: &NodeHandle,
    id: i64,
    mut first: FirstTry,
) -> Result<LeaseKeepAliveResponse, Status> {
    let deadline = tokio::time::Instant::now() + LEADER_WAIT;
    let ttl = loop {
        let answer = match first.take() {
            Some(Ok(receiver)) => receiver.await.unwrap_or(Err(EtcdError::Stopped)),
            Some(Err(e)) => Err(e),
            None => node.keep_alive(id).await,
        };
        match answer {
            Ok(ttl) => break ttl,
            Err(EtcdError::NotLeader) => {}
            Err(e) => return Err(to_status(&e)),
        }
        if let Answerer::Leader(channel) = answerer(node).await? {
            let forwarded = async {
                let request = LeaseKeepAliveRequest { id };
                let mut answers = LeaseClient::new(channel)
                    .lease_keep_alive(futures::stream::iter([request]))
                    .await?
                    .into_inner();
                answers
                    .message()
                    .await?
                    .ok_or_else(|| to_status(&EtcdError::LeaderChanged))
            }
            .await;
            match forwarded {
                Ok(answer) => break answer.ttl,
                Err(status) if tokio::time::Instant::now() >= deadline => return Err(status),
                Err(_) => {}
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(to_status(&EtcdError::NoLeader));
        }
        tokio::time::sleep(RETRY).await;
    };
    let header = node.header(true).await.map_err(|e| to_status(&e))?;
    Ok(LeaseKeepAliveResponse {
        header: Some(header),
        id,
        ttl,
    })
}

#[tonic::async_trait]
impl Lease for LeaseService {
    async fn lease_grant(
        &self,
        request: Request<LeaseGrantRequest>,
    ) -> Result<Response<LeaseGrantResponse>, Status> {
        let token = crate::handle::token(request.metadata());
        let mut req = request.into_inner();
        req.ttl = req.ttl.max(self.node.limits.min_lease_ttl);
        if req.id == 0 {
            req.id = self.node.next_lease_id();
        }
        self.node
            .check_quota(LEASE_OVERHEAD)
            .await
            .map_err(|e| to_status(&e))?;
        let who = self
            .node
            .who_is(token.as_deref())
            .await
            .map_err(|e| to_status(&e))?;
        reply!(
            self.node.write_as(Replicated::LeaseGrant(req), &who).await,
            ApplyResponse::LeaseGrant
        )
    }

    async fn lease_revoke(
        &self,
        request: Request<LeaseRevokeRequest>,
    ) -> Result<Response<LeaseRevokeResponse>, Status> {
        let who = self
            .node
            .who(request.metadata())
            .await
            .map_err(|e| to_status(&e))?;
        let req = request.into_inner();
        reply!(
            self.node.write_as(Replicated::LeaseRevoke(req), &who).await,
            ApplyResponse::LeaseRevoke
        )
    }

    type LeaseKeepAliveStream =
        Pin<Box<dyn Stream<Item = Result<LeaseKeepAliveResponse, Status>> + Send + 'static>>;

    async fn lease_keep_alive(
        &self,
        request: Request<Streaming<LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        // Behind an `Arc`: the stream clones it twice per request, and a
        // `NodeHandle` clone counts dozens of references.
        let node = std::sync::Arc::new(self.node.clone());
        let requests = request.into_inner();
        // One answer per request, in order, up to KEEP_ALIVES_IN_FLIGHT
        // worked on at once (one waiting for a reset checkpoint does not
        // hold up the rest); an error ends the stream (the client opens a
        // new one, as with etcd).
        // The requests that arrived together go to the lessor in one
        // message (one thread hand-off for the lot, not one each).
        let answers = requests
            .ready_chunks(KEEP_ALIVES_IN_FLIGHT)
            .flat_map(move |chunk| {
                let ids: Vec<i64> = chunk.iter().flatten().map(|r| r.id).collect();
                let mut sent = match node.keep_alives(&ids) {
                    Ok(receivers) => receivers.into_iter().map(Ok).collect::<Vec<_>>(),
                    Err(e) => ids.iter().map(|_| Err(e.clone())).collect(),
                }
                .into_iter();
                let node = node.clone();
                futures::stream::iter(chunk.into_iter().map(move |request| {
                    let node = node.clone();
                    let first = request.map(|r| (r.id, sent.next()));
                    async move {
                        let (id, first) = first?;
                        keep_alive(&node, id, first).await
                    }
                }))
            })
            .buffered(KEEP_ALIVES_IN_FLIGHT);
        Ok(Response::new(Box::pin(answers)))
    }

    async fn lease_time_to_live(
        &self,
        request: Request<LeaseTimeToLiveRequest>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        let req = request.into_inner();
        let node = &self.node;
        if let Answerer::Leader(channel) = answerer(node).await? {
            let mut answer = LeaseClient::new(channel)
                .lease_time_to_live(req)
                .await?
                .into_inner();
            answer.header = Some(node.header(true).await.map_err(|e| to_status(&e))?);
            return Ok(Response::new(answer));
        }
        let remaining = node.time_to_live(req.id).await.map_err(|e| to_status(&e))?;
        let stored = self
            .node
            .read(ReadRequest::Lease { id: req.id }, false)
            .await
            .map_err(|e| to_status(&e))?;
        let ReadResponse::Lease(stored, header) = stored else {
            return Err(crate::errors::mismatched_response());
        };
        let response = match (remaining, stored) {
            (Some((ttl, granted)), Some((_, keys))) => LeaseTimeToLiveResponse {
                header: Some(header),
                id: req.id,
                ttl,
                granted_ttl: granted,
                keys: if req.keys { keys } else { Vec::new() },
            },
            // etcd answers an unknown lease with TTL -1.
            _ => LeaseTimeToLiveResponse {
                header: Some(node.header(true).await.map_err(|e| to_status(&e))?),
                id: req.id,
                ttl: -1,
                ..Default::default()
            },
        };
        Ok(Response::new(response))
    }

    async fn lease_leases(
        &self,
        _: Request<LeaseLeasesRequest>,
    ) -> Result<Response<LeaseLeasesResponse>, Status> {
        match self.node.read(ReadRequest::Leases, false).await {
            Ok(ReadResponse::Leases(ids, header)) => Ok(Response::new(LeaseLeasesResponse {
                header: Some(header),
                leases: ids.into_iter().map(|id| LeaseStatus { id }).collect(),
            })),
            Ok(_) => Err(crate::errors::mismatched_response()),
            Err(e) => Err(to_status(&e)),
        }
    }
}
