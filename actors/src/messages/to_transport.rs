//! Messages to the peer transport: raft's messages for peers (from the raft
//! actor) and peer changes (from the node). The transport's own wiring and
//! link messages stay in `transport::messages`.

use actix::Message;

/// Raft messages leaving this member, for the peer transport.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Outbound {
    pub messages: Vec<raft::eraftpb::Message>,
}

/// Adds a peer, or changes its URLs (its stream is reopened).
#[derive(Message)]
#[rtype(result = "()")]
pub struct AddPeer {
    pub id: u64,
    pub urls: Vec<String>,
}

/// Removes a peer: its queue is dropped and its stream closed.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RemovePeer {
    pub id: u64,
}
