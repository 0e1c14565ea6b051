//! `v3lockpb.Lock`: Lock and Unlock, as etcd's server runs them (its
//! concurrency mutex, see [`crate::concurrency`]).
//!
//! 1. `Lock` creates `<name>/<lease hex>` on the caller's lease (or, with
//!    none, a 60-second lease of its own, as etcd's orphaned session) (a txn,
//!    only if absent), then returns at once if it is the first-created key under
//!    `<name>/`, else once every key created before it is gone. The answer
//!    names the key; the lock is held while the key exists (until Unlock,
//!    or until the lease expires).
//! 2. A `Lock` whose client goes away while waiting deletes its key.
//! 3. `Unlock` deletes the key (an empty key is refused, as etcd's client
//!    refuses it).
//!
//! Errors of the recipe go out as etcd's do: `Unknown` with etcd's text
//! ([`to_status_via_client`](crate::errors::to_status_via_client)).

use proto::v3lockpb::lock_server::Lock;
use proto::v3lockpb::{LockRequest, LockResponse, UnlockRequest, UnlockResponse};
use tonic::{Request, Response, Status};

use crate::concurrency::{self, Abandon};
use crate::errors::{to_status, to_status_via_client};
use crate::handle::NodeHandle;

/// The Lock service.
pub struct LockService {
    node: NodeHandle,
}

impl LockService {
    pub fn new(node: NodeHandle) -> Self {
        Self { node }
    }

    /// The node acting as the caller (its auth token).
    async fn caller(&self, metadata: &tonic::metadata::MetadataMap) -> Result<NodeHandle, Status> {
        let who = self.node.who(metadata).await.map_err(|e| to_status(&e))?;
        Ok(self.node.acting_as(who))
    }
}

#[tonic::async_trait]
impl Lock for LockService {
    async fn lock(&self, request: Request<LockRequest>) -> Result<Response<LockResponse>, Status> {
        let node = &self.caller(request.metadata()).await?;
        let req = request.into_inner();
        let lease = concurrency::session_lease(node, req.lease)
            .await
            .map_err(|e| to_status_via_client(&e))?;
        let prefix = concurrency::prefix(&req.name);
        let key = concurrency::contender_key(&prefix, lease);
        let (my_rev, header, _) = concurrency::create_contender(node, &key, b"", lease)
            .await
            .map_err(|e| to_status_via_client(&e))?;
        let abandon = Abandon::new(node, &key, my_rev);
        let (owner, _) = concurrency::first_created(node, &prefix)
            .await
            .map_err(|e| to_status_via_client(&e))?;
        let header = if owner.is_none_or(|o| o.create_revision == my_rev) {
            header
        } else {
            concurrency::wait_deletes(node, &prefix, my_rev - 1)
                .await
                .map_err(|e| to_status_via_client(&e))?
        };
        abandon.keep();
        Ok(Response::new(LockResponse {
            header: Some(header),
            key,
        }))
    }

    async fn unlock(
        &self,
        request: Request<UnlockRequest>,
    ) -> Result<Response<UnlockResponse>, Status> {
        let node = self.caller(request.metadata()).await?;
        let req = request.into_inner();
        if req.key.is_empty() {
            return Err(to_status_via_client(&storage::EtcdError::EmptyKey));
        }
        let header = concurrency::delete(&node, &req.key)
            .await
            .map_err(|e| to_status_via_client(&e))?;
        Ok(Response::new(UnlockResponse {
            header: Some(header),
        }))
    }
}
