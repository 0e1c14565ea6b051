//! Messages of the transport actor. Raft's messages for peers arrive as
//! [`crate::raft::Outbound`].

use actix::Message;

use super::core::LinkReport;
use super::inbox::RaftInbox;
use crate::Mailbox;
use crate::raft::RaftActor;

/// Where the transport sends its reports (`ReportUnreachable`,
/// `ReportSnapshot`). Sent once, right after the raft actor started; until
/// then reports are dropped (nothing was sent yet either).
pub struct ConnectRaft<R: RaftInbox = Mailbox<RaftActor>> {
    pub raft: R,
}

impl<R: RaftInbox> Message for ConnectRaft<R> {
    type Result = ();
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

/// A peer link's report (from the link task to its actor).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct LinkEvent {
    pub peer: u64,
    pub link: u64,
    pub report: LinkReport,
}
