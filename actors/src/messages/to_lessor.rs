//! Messages to the lessor: keep-alives and time-to-live questions from the
//! gRPC facade, lease changes from the apply actor.

use actix::Message;
use storage::EtcdError;
use storage::mvcc::Lease;
use tokio::sync::oneshot;

/// `LeaseKeepAlive` for one lease: answered with its TTL (0: no such lease),
/// or `NotLeader` on a member that does not lead.
#[derive(Message)]
#[rtype(result = "()")]
pub struct KeepAlive {
    pub id: i64,
    pub reply: oneshot::Sender<Result<i64, EtcdError>>,
}

/// Keep-alives that arrived together on one stream: one mailbox message,
/// each answered on its own reply as [`KeepAlive`] is.
#[derive(Message)]
#[rtype(result = "()")]
pub struct KeepAlives(pub Vec<KeepAlive>);

/// The remaining and granted TTL of a lease, on the leader (`None`: unknown
/// lease, or this member does not lead).
#[derive(Message)]
#[rtype(result = "Option<(i64, i64)>")]
pub struct TimeToLive {
    pub id: i64,
}

/// Whether the lessor acts as the leader's now.
#[derive(Message)]
#[rtype(result = "bool")]
pub struct IsPrimary;

/// A change to the store's leases, as applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseChange {
    Granted { id: i64, ttl: i64 },
    Revoked { id: i64 },
    Checkpointed { id: i64, remaining_ttl: i64 },
}

/// Lease changes of one applied batch, in log order.
#[derive(Message)]
#[rtype(result = "()")]
pub struct LeasesChanged {
    pub changes: Vec<LeaseChange>,
}

/// The store was replaced (snapshot install): these are its leases now.
#[derive(Message)]
#[rtype(result = "()")]
pub struct LeasesReplaced {
    pub leases: Vec<(i64, Lease)>,
}
