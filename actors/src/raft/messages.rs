//! Messages of the raft actor, and the reply types that travel with client
//! requests from the gRPC facade through raft to the apply actor.

use actix::Message;
use proto::etcdserverpb::{
    HashKvRequest, HashKvResponse, RangeRequest, RangeResponse, TxnRequest, TxnResponse,
};
use proto::internal::InternalRequest;
use raft::eraftpb;
use storage::EtcdError;
use storage::mvcc::ApplyResponse;
use tokio::sync::oneshot;

/// Where the result of a replicated request goes once it is applied.
pub type WriteReply = oneshot::Sender<Result<ApplyResponse, EtcdError>>;

/// A read served from the MVCC store.
#[derive(Debug, Clone)]
pub enum ReadRequest {
    Range(RangeRequest),
    /// A txn whose operations are all ranges (etcd serves those without raft).
    Txn(TxnRequest),
    /// `Maintenance.HashKV`: the hash of the key space up to a revision.
    HashKv(HashKvRequest),
    /// `Cluster.MemberList`: the member table.
    MemberList,
    /// `Maintenance.Hash`: the hash of the whole store.
    Hash,
}

/// The answer to a [`ReadRequest`].
#[derive(Debug, Clone)]
pub enum ReadResponse {
    Range(RangeResponse),
    Txn(TxnResponse),
    HashKv(HashKvResponse),
    MemberList(Vec<proto::etcdserverpb::Member>),
    Hash(proto::etcdserverpb::HashResponse),
}

/// Where the result of a read goes.
pub type ReadReply = oneshot::Sender<Result<ReadResponse, EtcdError>>;

/// A read waiting to be served, with its reply channel.
#[derive(Debug)]
pub struct PendingRead {
    pub request: ReadRequest,
    pub reply: ReadReply,
}

/// Propose a replicated request. The raft actor assigns the request id,
/// registers `reply` under it, and hands it to the apply actor together with
/// the committed entry that carries that id.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Propose {
    pub request: InternalRequest,
    pub reply: WriteReply,
}

/// A linearizable read: served once the applied index reaches a read index
/// obtained from raft after this message arrived.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ReadIndex {
    pub read: PendingRead,
}

/// A raft message from a peer.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Step {
    pub message: eraftpb::Message,
}

/// A snapshot of the raft actor's view, for `Maintenance.Status`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RaftStatus {
    pub id: u64,
    /// 0 when no leader is known.
    pub leader: u64,
    pub term: u64,
    pub commit: u64,
    pub applied: u64,
    pub is_learner: bool,
}

/// Ask for [`RaftStatus`].
#[derive(Message)]
#[rtype(result = "RaftStatus")]
pub struct GetStatus;

/// The transport could not deliver to peer `id` (raft-rs then probes it
/// more slowly instead of streaming appends into the void).
#[derive(Message)]
#[rtype(result = "()")]
pub struct ReportUnreachable {
    pub id: u64,
}

/// Outcome of streaming a snapshot to peer `id`; raft-rs needs it to resume
/// replication to that peer.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ReportSnapshot {
    pub id: u64,
    pub status: raft::SnapshotStatus,
}

/// `Maintenance.MoveLeader`: hand leadership to `target`; answered once it
/// leads, or with etcd's error.
#[derive(Message)]
#[rtype(result = "()")]
pub struct TransferLeader {
    pub target: u64,
    pub reply: oneshot::Sender<Result<(), EtcdError>>,
}
