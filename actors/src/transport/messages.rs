//! The transport's own messages: its wiring to raft and its link tasks'
//! reports. What other actors send it (`Outbound`, `SyncPeers`)
//! lives in [`crate::messages::to_transport`].

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

/// A peer link's report (from the link task to its actor).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct LinkEvent {
    pub peer: u64,
    pub link: u64,
    pub report: LinkReport,
}
