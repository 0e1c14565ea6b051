//! `v3electionpb.Election`: Campaign, Proclaim, Leader, Observe and Resign,
//! as etcd's server runs them (its concurrency election, see
//! [`crate::concurrency`]).
//!
//! 1. `Campaign` creates `<name>/<lease hex>` with the value on the lease
//!    (or finds it, and proclaims the new value when it differs), then
//!    waits until every key created before it is gone: it leads. The
//!    answer's leader key (name, key, create revision, lease) is what
//!    Proclaim and Resign take.
//! 2. `Proclaim` puts a new value if the key's create revision is still the
//!    leader key's; otherwise `election: not leader`.
//! 3. `Leader` reads the first-created key under `<name>/`, or answers
//!    `election: no leader`.
//! 4. `Observe` streams the leader: the first-created key (or, when there
//!    is none, the first one put), then every change of its value, and
//!    when it goes, the next leader, in order.
//! 5. `Resign` deletes the key if its create revision is still the leader
//!    key's.

use std::pin::Pin;

use futures::Stream;
use proto::etcdserverpb::ResponseHeader;
use proto::mvccpb::event::EventType;
use proto::v3electionpb::election_server::Election;
use proto::v3electionpb::{
    CampaignRequest, CampaignResponse, LeaderKey, LeaderRequest, LeaderResponse, ProclaimRequest,
    ProclaimResponse, ResignRequest, ResignResponse,
};
use storage::EtcdError;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status};

use crate::concurrency::{self, Abandon, InternalWatch};
use crate::errors::{to_status, to_status_via_client};
use crate::handle::NodeHandle;

/// The Election service.
pub struct ElectionService {
    node: NodeHandle,
}

impl ElectionService {
    pub fn new(node: NodeHandle) -> Self {
        Self { node }
    }

    /// The node acting as the caller (its auth token).
    async fn caller(&self, metadata: &tonic::metadata::MetadataMap) -> Result<NodeHandle, Status> {
        let who = self.node.who(metadata).await.map_err(|e| to_status(&e))?;
        Ok(self.node.acting_as(who))
    }
}

/// etcd's answer for an error of the election recipe: `Unknown` with etcd's
/// text ([`crate::errors::to_status_via_client`]).
fn status(e: EtcdError) -> Status {
    to_status_via_client(&e)
}

/// Step 4: sends the leader and its changes to `tx` until the client goes.
async fn observe(
    node: NodeHandle,
    name: Vec<u8>,
    tx: mpsc::Sender<Result<LeaderResponse, Status>>,
) -> Result<(), EtcdError> {
    let prefix = concurrency::prefix(&name);
    loop {
        let (first, header) = concurrency::first_created(&node, &prefix).await?;
        let (leader, mut header) = match first {
            Some(kv) => (kv, header),
            None => {
                // Wait for the first key put under the prefix.
                let mut watch = InternalWatch::open(&node).await?;
                let end = concurrency::prefix_end(&prefix);
                watch.create(&prefix, &end, header.revision).await?;
                let mut found = None;
                while found.is_none() {
                    let response = watch.next().await.ok_or(EtcdError::Stopped)?;
                    let mut h = response.header.unwrap_or_default();
                    if let Some(kv) = response
                        .events
                        .into_iter()
                        .find(|e| e.r#type == EventType::Put as i32)
                        .and_then(|e| e.kv)
                    {
                        h.revision = kv.mod_revision;
                        found = Some((kv, h));
                    }
                }
                found.expect("set by the loop")
            }
        };
        let from = header.revision + 1;
        if tx
            .send(Ok(LeaderResponse {
                header: Some(header),
                kv: Some(leader.clone()),
            }))
            .await
            .is_err()
        {
            return Ok(());
        }
        let mut watch = InternalWatch::open(&node).await?;
        watch.create(&leader.key, &[], from).await?;
        'leader: loop {
            let response = watch.next().await.ok_or(EtcdError::Stopped)?;
            if response.canceled {
                break;
            }
            header = response.header.unwrap_or_default();
            for event in response.events {
                if event.r#type == EventType::Delete as i32 {
                    break 'leader;
                }
                let sent = tx
                    .send(Ok(LeaderResponse {
                        header: Some(header),
                        kv: event.kv,
                    }))
                    .await;
                if sent.is_err() {
                    return Ok(());
                }
            }
        }
    }
}

#[tonic::async_trait]
impl Election for ElectionService {
    async fn campaign(
        &self,
        request: Request<CampaignRequest>,
    ) -> Result<Response<CampaignResponse>, Status> {
        let node = &self.caller(request.metadata()).await?;
        let req = request.into_inner();
        let lease = concurrency::session_lease(node, req.lease)
            .await
            .map_err(status)?;
        let prefix = concurrency::prefix(&req.name);
        let key = concurrency::contender_key(&prefix, lease);
        // The answer's header is the creating txn's, even when the value is
        // then proclaimed (etcd's `Campaign` keeps `resp.Header`).
        let (rev, header, existing) = concurrency::create_contender(node, &key, &req.value, lease)
            .await
            .map_err(status)?;
        let abandon = Abandon::new(node, &key, rev);
        if existing.is_some_and(|v| v != req.value) {
            let (still, _) = concurrency::put_if_created_at(node, &key, rev, &req.value, lease)
                .await
                .map_err(status)?;
            if !still {
                return Err(status(EtcdError::ElectionNotLeader));
            }
        }
        concurrency::wait_deletes(node, &prefix, rev - 1)
            .await
            .map_err(status)?;
        abandon.keep();
        Ok(Response::new(CampaignResponse {
            header: Some(header),
            leader: Some(LeaderKey {
                name: req.name,
                key,
                rev,
                lease,
            }),
        }))
    }

    async fn proclaim(
        &self,
        request: Request<ProclaimRequest>,
    ) -> Result<Response<ProclaimResponse>, Status> {
        let node = self.caller(request.metadata()).await?;
        let req = request.into_inner();
        let leader = req
            .leader
            .ok_or_else(|| status(EtcdError::MissingLeaderKey))?;
        // etcd opens a session on the leader's lease first (a new one when
        // it names none) and proclaims with that session's lease.
        let lease = concurrency::session_lease(&node, leader.lease)
            .await
            .map_err(status)?;
        // etcd's txn on the leader key refuses an empty key.
        if leader.key.is_empty() {
            return Err(status(EtcdError::EmptyKey));
        }
        let (still, header) =
            concurrency::put_if_created_at(&node, &leader.key, leader.rev, &req.value, lease)
                .await
                .map_err(status)?;
        if !still {
            return Err(status(EtcdError::ElectionNotLeader));
        }
        Ok(Response::new(ProclaimResponse {
            header: Some(header),
        }))
    }

    async fn leader(
        &self,
        request: Request<LeaderRequest>,
    ) -> Result<Response<LeaderResponse>, Status> {
        let node = self.caller(request.metadata()).await?;
        let req = request.into_inner();
        let prefix = concurrency::prefix(&req.name);
        let (first, header) = concurrency::first_created(&node, &prefix)
            .await
            .map_err(status)?;
        let kv = first.ok_or_else(|| status(EtcdError::ElectionNoLeader))?;
        Ok(Response::new(LeaderResponse {
            header: Some(header),
            kv: Some(kv),
        }))
    }

    type ObserveStream =
        Pin<Box<dyn Stream<Item = Result<LeaderResponse, Status>> + Send + 'static>>;

    async fn observe(
        &self,
        request: Request<LeaderRequest>,
    ) -> Result<Response<Self::ObserveStream>, Status> {
        let node = self.caller(request.metadata()).await?;
        let name = request.into_inner().name;
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(async move {
            if let Err(e) = observe(node, name, tx.clone()).await {
                let _ = tx.send(Err(status(e))).await;
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn resign(
        &self,
        request: Request<ResignRequest>,
    ) -> Result<Response<ResignResponse>, Status> {
        let node = self.caller(request.metadata()).await?;
        let req = request.into_inner();
        let leader = req
            .leader
            .ok_or_else(|| status(EtcdError::MissingLeaderKey))?;
        // etcd opens a session here too: a leader key naming no lease gets
        // one granted, unused.
        concurrency::session_lease(&node, leader.lease)
            .await
            .map_err(status)?;
        if leader.key.is_empty() {
            return Err(status(EtcdError::EmptyKey));
        }
        let header: ResponseHeader =
            concurrency::delete_if_created_at(&node, &leader.key, leader.rev)
                .await
                .map_err(status)?;
        Ok(Response::new(ResignResponse {
            header: Some(header),
        }))
    }
}
