//! Messages to the raft actor: client writes and linearizable reads from
//! the gRPC facade, peer messages and link reports from the transport.

use super::requests::{PendingRead, TransferReply, WriteReply};
use actix::Message;
use proto::internal::InternalRequest;
use raft::eraftpb;

/// Propose a replicated request. The raft actor assigns the request id,
/// registers `reply` under it, and hands it to the apply actor together with
/// the committed entry that carries that id.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Propose {
    pub request: InternalRequest,
    pub reply: WriteReply,
}

/// A membership change from the Cluster service: proposed as a raft conf
/// change (or, for a peer URL update, a plain entry); answered with the
/// member table once applied, or with etcd's error.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ProposeMemberChange {
    pub change: proto::internal::MemberChange,
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
    pub reply: TransferReply,
}
