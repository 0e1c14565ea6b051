//! Client requests and their reply channels: they travel from the gRPC
//! facade through the raft actor (which keeps a write's reply under its
//! request id, and a linearizable read until its read index is known) to
//! the apply actor, which answers them.

use proto::etcdserverpb::{
    HashKvRequest, HashKvResponse, RangeRequest, RangeResponse, TxnRequest, TxnResponse,
};
use storage::EtcdError;
use storage::mvcc::ApplyResponse;
use tokio::sync::oneshot;

/// Where the result of a replicated request goes once it is applied.
pub type WriteReply = oneshot::Sender<Result<ApplyResponse, EtcdError>>;

/// Where the answer to a MoveLeader goes.
pub type TransferReply = oneshot::Sender<Result<(), EtcdError>>;

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
    /// `Lease.LeaseLeases`: every lease id.
    Leases,
    /// A lease's granted TTL and attached keys (`LeaseTimeToLive`).
    Lease {
        id: i64,
    },
}

/// The answer to a [`ReadRequest`].
#[derive(Debug, Clone)]
pub enum ReadResponse {
    Range(RangeResponse),
    Txn(TxnResponse),
    HashKv(HashKvResponse),
    MemberList(Vec<proto::etcdserverpb::Member>),
    Hash(proto::etcdserverpb::HashResponse),
    /// Lease ids, ascending, with the store's response header.
    Leases(Vec<i64>, proto::etcdserverpb::ResponseHeader),
    /// `None` when there is no such lease: (granted TTL, keys, header).
    Lease(
        Option<(i64, Vec<Vec<u8>>)>,
        proto::etcdserverpb::ResponseHeader,
    ),
}

/// Where the result of a read goes.
pub type ReadReply = oneshot::Sender<Result<ReadResponse, EtcdError>>;

/// A read waiting to be served, with its reply channel.
#[derive(Debug)]
pub struct PendingRead {
    pub request: ReadRequest,
    /// Who reads: ranges and txns are checked against the auth store when
    /// they are served.
    pub auth: storage::auth::AuthInfo,
    pub reply: ReadReply,
}
