//! Messages to the peer transport: raft's messages for peers (from the raft
//! actor) and the member table to follow (from the raft actor). The transport's own wiring and
//! link messages stay in `transport::messages`.

use actix::Message;

/// Raft messages leaving this member, for the peer transport.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Outbound {
    pub messages: Vec<raft::eraftpb::Message>,
}

/// The member table changed (from the raft actor, after the apply actor
/// applied a membership change or installed a snapshot): the transport keeps
/// a link to every other member listed, restarts a link whose URLs changed,
/// and drops the peers no longer listed.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SyncPeers {
    pub peers: Vec<(u64, Vec<String>)>,
}
