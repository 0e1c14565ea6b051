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

use futures::{Stream, StreamExt};
use proto::etcdserverpb::lease_client::LeaseClient;
use proto::etcdserverpb::lease_server::Lease;
use proto::etcdserverpb::{
    LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveRequest, LeaseKeepAliveResponse,
    LeaseLeasesRequest, LeaseLeasesResponse, LeaseRevokeRequest, LeaseRevokeResponse, LeaseStatus,
    LeaseTimeToLiveRequest, LeaseTimeToLiveResponse, ResponseHeader,
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

/// Step 3: one keep-alive, answered here or by the leader.
async fn keep_alive(node: &NodeHandle, id: i64) -> Result<LeaseKeepAliveResponse, Status> {
    match node.keep_alive(id).await {
        Ok(ttl) => {
            let header = node.header(true).await.map_err(|e| to_status(&e))?;
            Ok(LeaseKeepAliveResponse {
                header: Some(header),
                id,
                ttl,
            })
        }
        Err(EtcdError::NotLeader) => forward_keep_alive(node, id).await,
        Err(e) => Err(to_status(&e)),
    }
}

async fn forward_keep_alive(node: &NodeHandle, id: i64) -> Result<LeaseKeepAliveResponse, Status> {
    let channel = node.leader_channel().await.map_err(|e| to_status(&e))?;
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

#[tonic::async_trait]
impl Lease for LeaseService {
    async fn lease_grant(
        &self,
        request: Request<LeaseGrantRequest>,
    ) -> Result<Response<LeaseGrantResponse>, Status> {
        let mut req = request.into_inner();
        req.ttl = req.ttl.max(self.node.limits.min_lease_ttl);
        if req.id == 0 {
            req.id = self.node.next_lease_id();
        }
        self.node
            .check_quota(LEASE_OVERHEAD)
            .await
            .map_err(|e| to_status(&e))?;
        reply!(
            self.node.write(Replicated::LeaseGrant(req)).await,
            ApplyResponse::LeaseGrant
        )
    }

    async fn lease_revoke(
        &self,
        request: Request<LeaseRevokeRequest>,
    ) -> Result<Response<LeaseRevokeResponse>, Status> {
        let req = request.into_inner();
        reply!(
            self.node.write(Replicated::LeaseRevoke(req)).await,
            ApplyResponse::LeaseRevoke
        )
    }

    type LeaseKeepAliveStream =
        Pin<Box<dyn Stream<Item = Result<LeaseKeepAliveResponse, Status>> + Send + 'static>>;

    async fn lease_keep_alive(
        &self,
        request: Request<Streaming<LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        let node = self.node.clone();
        let requests = request.into_inner();
        // One answer per request, in order; an error ends the stream (the
        // client opens a new one, as with etcd).
        let answers = requests.then(move |request| {
            let node = node.clone();
            async move { keep_alive(&node, request?.id).await }
        });
        Ok(Response::new(Box::pin(answers)))
    }

    async fn lease_time_to_live(
        &self,
        request: Request<LeaseTimeToLiveRequest>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        let req = request.into_inner();
        let leader = self.node.is_leader().await.map_err(|e| to_status(&e))?;
        if !leader {
            let channel = self
                .node
                .leader_channel()
                .await
                .map_err(|e| to_status(&e))?;
            return LeaseClient::new(channel).lease_time_to_live(req).await;
        }
        let remaining = self
            .node
            .time_to_live(req.id)
            .await
            .map_err(|e| to_status(&e))?;
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
            // etcd answers an unknown lease with TTL -1 and a bare header.
            _ => LeaseTimeToLiveResponse {
                header: Some(ResponseHeader::default()),
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
