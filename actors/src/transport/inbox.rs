//! Where peer traffic meets raft: the transport reports to it, the peer
//! server steps received messages into it. [`Mailbox<RaftActor>`] is the
//! real one; tests substitute a recorder.

use std::future::Future;

use raft::SnapshotStatus;
use raft::eraftpb::Message;

use crate::Mailbox;
use crate::messages::{ReportSnapshot, ReportUnreachable, Step};
use crate::raft::RaftActor;

/// The raft side of the peer transport.
pub trait RaftInbox: Clone + Send + Sync + Unpin + 'static {
    /// Steps a peer's message now; `false` when raft's mailbox is full or
    /// raft stopped (the message is dropped: raft retransmits).
    fn try_step(&self, message: Message) -> bool;

    /// Steps a message that must not be lost (a `MsgSnapshot` whose image
    /// has arrived), waiting for room; `false` when raft stopped.
    fn deliver_step(&self, message: Message) -> impl Future<Output = bool> + Send + 'static;

    /// Peer `id` could not be reached (best effort: a lost report only
    /// delays raft's switch to probing).
    fn report_unreachable(&self, id: u64);

    /// How a snapshot send to `id` ended; waits for room, since raft-rs
    /// keeps the peer paused until it hears it.
    fn report_snapshot(
        &self,
        id: u64,
        status: SnapshotStatus,
    ) -> impl Future<Output = bool> + Send + 'static;
}

impl RaftInbox for Mailbox<RaftActor> {
    fn try_step(&self, message: Message) -> bool {
        self.try_send(Step { message }).is_ok()
    }

    fn deliver_step(&self, message: Message) -> impl Future<Output = bool> + Send + 'static {
        let raft = self.clone();
        async move { raft.deliver(Step { message }).await.is_ok() }
    }

    fn report_unreachable(&self, id: u64) {
        if self.try_send(ReportUnreachable { id }).is_err() {
            tracing::debug!(peer = %format!("{id:x}"), "raft mailbox full; unreachable report dropped");
        }
    }

    fn report_snapshot(
        &self,
        id: u64,
        status: SnapshotStatus,
    ) -> impl Future<Output = bool> + Send + 'static {
        let raft = self.clone();
        async move { raft.deliver(ReportSnapshot { id, status }).await.is_ok() }
    }
}
