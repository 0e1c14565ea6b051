//! `etcdserverpb.KV`: validation as etcd's `v3rpc/key.go` does it, then the
//! request goes to raft (writes, linearizable reads) or to the apply actor
//! (serializable reads).

use actors::messages::{ReadRequest, ReadResponse};
use proto::etcdserverpb::kv_server::Kv;
use proto::etcdserverpb::request_op::Request as Op;
use proto::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, TxnRequest, TxnResponse,
};
use proto::internal::internal_request::Request as Replicated;
use storage::mvcc::{ApplyResponse, is_txn_read_only, validate};
use tonic::{Request, Response, Status};

use crate::errors::{reply, to_status};
use crate::handle::{KV_OVERHEAD, NodeHandle, token};

/// The KV service.
pub struct KvService {
    node: NodeHandle,
}

impl KvService {
    pub fn new(node: NodeHandle) -> Self {
        Self { node }
    }

    /// Who makes the request (its auth token), or etcd's error for a bad
    /// token.
    async fn who(&self, token: Option<&str>) -> Result<storage::auth::AuthInfo, Status> {
        self.node.who_is(token).await.map_err(|e| to_status(&e))
    }
}

/// Whether every range of a read-only txn asked for serializable reads
/// (etcd's `isTxnSerializable`).
fn all_serializable(txn: &TxnRequest) -> bool {
    txn.success
        .iter()
        .chain(&txn.failure)
        .all(|op| match &op.request {
            Some(Op::RequestRange(r)) => r.serializable,
            _ => false,
        })
}

/// etcd's `costTxn`: the larger branch's top-level puts.
fn txn_cost(txn: &TxnRequest) -> i64 {
    let branch = |ops: &[proto::etcdserverpb::RequestOp]| -> i64 {
        ops.iter()
            .map(|op| match &op.request {
                Some(Op::RequestPut(p)) => KV_OVERHEAD + (p.key.len() + p.value.len()) as i64,
                _ => 0,
            })
            .sum()
    };
    branch(&txn.success).max(branch(&txn.failure))
}

#[tonic::async_trait]
impl Kv for KvService {
    async fn range(
        &self,
        request: Request<RangeRequest>,
    ) -> Result<Response<RangeResponse>, Status> {
        let token = token(request.metadata());
        let req = request.into_inner();
        validate::range(&req).map_err(|e| to_status(&e))?;
        let linearizable = !req.serializable;
        if linearizable && self.node.is_learner() {
            return Err(to_status(&storage::EtcdError::NotSupportedForLearner));
        }
        let who = self.who(token.as_deref()).await?;
        reply!(
            self.node
                .read_as(ReadRequest::Range(req), linearizable, who)
                .await,
            ReadResponse::Range
        )
    }

    async fn put(&self, request: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        let token = token(request.metadata());
        let req = request.into_inner();
        validate::put(&req).map_err(|e| to_status(&e))?;
        self.node
            .check_quota(KV_OVERHEAD + (req.key.len() + req.value.len()) as i64)
            .await
            .map_err(|e| to_status(&e))?;
        let who = self.who(token.as_deref()).await?;
        reply!(
            self.node.write_as(Replicated::Put(req), &who).await,
            ApplyResponse::Put
        )
    }

    async fn delete_range(
        &self,
        request: Request<DeleteRangeRequest>,
    ) -> Result<Response<DeleteRangeResponse>, Status> {
        let token = token(request.metadata());
        let req = request.into_inner();
        validate::delete_range(&req).map_err(|e| to_status(&e))?;
        let who = self.who(token.as_deref()).await?;
        reply!(
            self.node.write_as(Replicated::DeleteRange(req), &who).await,
            ApplyResponse::DeleteRange
        )
    }

    async fn txn(&self, request: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        let token = token(request.metadata());
        let req = request.into_inner();
        validate::txn(&req, self.node.limits.max_txn_ops).map_err(|e| to_status(&e))?;
        if is_txn_read_only(&req) {
            let linearizable = !all_serializable(&req);
            let who = self.who(token.as_deref()).await?;
            return reply!(
                self.node
                    .read_as(ReadRequest::Txn(req), linearizable, who)
                    .await,
                ReadResponse::Txn
            );
        }
        self.node
            .check_quota(txn_cost(&req))
            .await
            .map_err(|e| to_status(&e))?;
        let who = self.who(token.as_deref()).await?;
        reply!(
            self.node.write_as(Replicated::Txn(req), &who).await,
            ApplyResponse::Txn
        )
    }

    async fn compact(
        &self,
        request: Request<CompactionRequest>,
    ) -> Result<Response<CompactionResponse>, Status> {
        let who = self.who(token(request.metadata()).as_deref()).await?;
        let req = request.into_inner();
        reply!(
            self.node.write_as(Replicated::Compaction(req), &who).await,
            ApplyResponse::Compaction
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::etcdserverpb::RequestOp;

    fn range_op(serializable: bool) -> RequestOp {
        RequestOp {
            request: Some(Op::RequestRange(RangeRequest {
                key: b"a".to_vec(),
                serializable,
                ..Default::default()
            })),
        }
    }

    #[test]
    fn serializable_only_when_every_range_is() {
        let all = TxnRequest {
            success: vec![range_op(true)],
            failure: vec![range_op(true)],
            ..Default::default()
        };
        assert!(all_serializable(&all));
        let mixed = TxnRequest {
            success: vec![range_op(true)],
            failure: vec![range_op(false)],
            ..Default::default()
        };
        assert!(!all_serializable(&mixed));
    }
}
