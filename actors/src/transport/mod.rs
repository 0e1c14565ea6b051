//! The peer transport: raft messages out to the other members.
//!
//! Flow of one Ready's messages:
//! 1. The raft actor sends [`Outbound`] (through a `Recipient`, with
//!    `try_send`: when this mailbox is full the messages are dropped and
//!    raft retransmits).
//! 2. [`core::TransportCore`] groups them by peer into bounded queues and
//!    cuts the queues into byte-bounded `RaftBatch`es; a `MsgSnapshot` is
//!    set aside for the `Snapshot` RPC.
//! 3. Each peer's link task ([`link`]) writes its batches, in order, to one
//!    long-lived `Peer.Stream` call, reconnecting with a jittered backoff;
//!    it answers every batch, which lets the next one go.
//! 4. A snapshot send streams the image named in the message
//!    (`snap_dir.path(index)`) in chunks through `Peer.Snapshot`.
//! 5. Failures come back as `ReportUnreachable` (once per failure episode;
//!    one found before raft is connected is kept and reported on `ConnectRaft`)
//!    and snapshot outcomes as `ReportSnapshot` to the raft actor, through
//!    the [`RaftInbox`] given by [`ConnectRaft`].
//!
//! The receiving side (the `Peer` gRPC service) lives in the node crate and
//! uses [`wire`] and [`RaftInbox`] too.
//!
//! The chaos API's link faults ([`Faults::link`]) apply to each batch right
//! before it goes to its link task: dropped (as a lost batch, which raft
//! survives), or handed over after a delay. Snapshot sends to a peer cut
//! off fail at once.
//!
//! Supervision: after a `Kill` or a panic the transport restarts every link
//! under a new epoch ([`TransportCore::restart`]); nothing it holds is
//! durable, and raft resends what was lost.
//!
//! The actor runs on its own arbiter. It has no [`crate::Mailbox`] wrapper:
//! raft reaches it through a `Recipient<Outbound>`, its link tasks through
//! a weak recipient, so handlers time themselves with `probe.timing`.

pub mod core;
pub mod inbox;
mod link;
pub mod messages;
pub mod metrics;
pub mod wire;

use std::collections::{BTreeSet, HashMap, VecDeque};

use actix::prelude::*;
use proto::internal::RaftBatch;
use storage::snap::SnapDir;
use tokio::sync::mpsc;

use self::core::{Effect, LinkReport, TransportCore};
pub use self::inbox::RaftInbox;
use self::link::{LinkSpec, SnapshotSpec, run_link, send_snapshot};
pub use self::messages::ConnectRaft;
use self::messages::LinkEvent;
use self::metrics::DropReason;
pub use self::metrics::TransportMetrics;
use crate::Mailbox;
use crate::chaos::{Direction, Faults, LinkVerdict};
use crate::messages::{Kill, Outbound, SyncPeers};
use crate::metrics::ActorProbe;
use crate::raft::RaftActor;

/// Mailbox capacity of the transport actor.
pub const TRANSPORT_MAILBOX: usize = 1024;

/// The transport actor shell.
pub struct TransportActor<R: RaftInbox = Mailbox<RaftActor>> {
    core: TransportCore,
    snap_dir: SnapDir,
    probe: ActorProbe,
    raft: Option<R>,
    links: HashMap<u64, mpsc::Sender<RaftBatch>>,
    /// Peers found unreachable before raft was connected: the core reports
    /// once per failure episode, so these are replayed on `ConnectRaft`.
    unreported: BTreeSet<u64>,
    /// Where peer connectivity is posted (for membership checks).
    board: Option<std::sync::Arc<crate::board::Board>>,
    faults: std::sync::Arc<Faults>,
}

impl<R: RaftInbox> TransportActor<R> {
    /// `snap_dir` is where the images named by outgoing snapshots live.
    pub fn new(core: TransportCore, snap_dir: SnapDir, probe: ActorProbe) -> Self {
        Self {
            core,
            snap_dir,
            probe,
            raft: None,
            links: HashMap::new(),
            unreported: BTreeSet::new(),
            board: None,
            faults: std::sync::Arc::default(),
        }
    }

    /// Applies the chaos API's link faults from `faults`.
    pub fn with_faults(mut self, faults: std::sync::Arc<Faults>) -> Self {
        self.faults = faults;
        self
    }

    /// Hands `batch` to the link task of `peer`; a refusal (the task
    /// ended) counts as a discarded batch.
    fn hand_to_link(
        &mut self,
        peer: u64,
        link: u64,
        batch: RaftBatch,
        effects: &mut VecDeque<Effect>,
    ) {
        let messages = batch.messages.len();
        let taken = self
            .links
            .get(&peer)
            .is_some_and(|tx| tx.try_send(batch).is_ok());
        if !taken {
            // Only a link task that ended can refuse: the core never hands
            // out more batches than the channel holds.
            let mut more = Vec::new();
            let report = LinkReport::Discarded { messages };
            self.core.on_link_report(peer, link, report, &mut more);
            effects.extend(more);
        }
    }

    /// Posts peer connectivity on `board`.
    pub fn with_board(mut self, board: std::sync::Arc<crate::board::Board>) -> Self {
        self.board = Some(board);
        self
    }

    fn dispatch(&mut self, effects: Vec<Effect>, ctx: &mut Context<Self>) {
        let mut effects = VecDeque::from(effects);
        while let Some(effect) = effects.pop_front() {
            match effect {
                Effect::StartLink {
                    peer,
                    link,
                    urls,
                    seed,
                } => {
                    let (tx, rx) = mpsc::channel(self.core.config().max_batches_in_flight.max(1));
                    self.links.insert(peer, tx);
                    let spec = LinkSpec {
                        peer,
                        link,
                        urls,
                        seed,
                        config: self.core.config().clone(),
                        metrics: self.core.metrics().link(peer),
                    };
                    actix::spawn(run_link(spec, rx, ctx.address().downgrade().recipient()));
                }
                Effect::StopLink { peer } => {
                    self.links.remove(&peer);
                }
                Effect::Send { peer, link, batch } => {
                    match self.faults.link(peer, Direction::Outbound) {
                        LinkVerdict::Pass => self.hand_to_link(peer, link, batch, &mut effects),
                        LinkVerdict::Drop => {
                            let messages = batch.messages.len();
                            self.core
                                .metrics()
                                .dropped(peer, DropReason::Chaos, messages);
                            let mut more = Vec::new();
                            let report = LinkReport::Discarded { messages: 0 };
                            self.core.on_link_report(peer, link, report, &mut more);
                            effects.extend(more);
                        }
                        LinkVerdict::Delay(delay) => {
                            ctx.run_later(delay, move |act, ctx| {
                                let mut effects = VecDeque::new();
                                act.hand_to_link(peer, link, batch, &mut effects);
                                act.dispatch(effects.into(), ctx);
                            });
                        }
                    }
                }
                Effect::SendSnapshot { peer, link, .. }
                    if self.faults.link(peer, Direction::Outbound) == LinkVerdict::Drop =>
                {
                    let mut more = Vec::new();
                    let result = Err("cut off by the chaos API".to_string());
                    self.core.on_snapshot_done(peer, link, result, &mut more);
                    effects.extend(more);
                }
                Effect::SendSnapshot {
                    peer,
                    link,
                    urls,
                    message,
                    descriptor,
                } => {
                    let spec = SnapshotSpec {
                        urls,
                        cluster_id: self.core.cluster_id(),
                        message,
                        path: self.snap_dir.path(descriptor.index),
                        descriptor,
                        config: self.core.config().clone(),
                    };
                    ctx.spawn(
                        send_snapshot(spec)
                            .into_actor(self)
                            .map(move |result, act, ctx| {
                                let _timer = act.probe.timing("SnapshotDone");
                                let mut out = Vec::new();
                                act.core.on_snapshot_done(peer, link, result, &mut out);
                                act.dispatch(out, ctx);
                            }),
                    );
                }
                Effect::Connectivity { peer, connected } => {
                    if let Some(board) = &self.board {
                        board.post_connectivity(peer, connected.then(std::time::Instant::now));
                    }
                }
                Effect::Removed { peer } => {
                    tracing::error!(peer = %format!("{peer:x}"), "a peer says this member was removed");
                    crate::stop_removed();
                }
                Effect::ReportUnreachable { peer } => match &self.raft {
                    Some(raft) => raft.report_unreachable(peer),
                    None => {
                        self.unreported.insert(peer);
                    }
                },
                Effect::ReportSnapshot { peer, status } => match &self.raft {
                    Some(raft) => {
                        let report = raft.report_snapshot(peer, status);
                        actix::spawn(async move {
                            if !report.await {
                                tracing::warn!(peer = %format!("{peer:x}"), "raft stopped; snapshot report lost");
                            }
                        });
                    }
                    None => {
                        tracing::warn!(peer = %format!("{peer:x}"), "no raft connected; snapshot report dropped")
                    }
                },
            }
        }
    }
}

impl<R: RaftInbox> Actor for TransportActor<R> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(TRANSPORT_MAILBOX);
        let mut out = Vec::new();
        self.core.start(&mut out);
        self.dispatch(out, ctx);
    }
}

impl<R: RaftInbox> Supervised for TransportActor<R> {
    fn restarting(&mut self, ctx: &mut Context<Self>) {
        // Dropping the senders ends the old link tasks.
        self.links.clear();
        let mut out = Vec::new();
        self.core.restart(&mut out);
        self.dispatch(out, ctx);
    }
}

impl<R: RaftInbox> Handler<Kill> for TransportActor<R> {
    type Result = ();

    fn handle(&mut self, _: Kill, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

impl<R: RaftInbox> Handler<Outbound> for TransportActor<R> {
    type Result = ();

    fn handle(&mut self, msg: Outbound, ctx: &mut Context<Self>) {
        let _timer = self.probe.timing("Outbound");
        let mut out = Vec::new();
        self.core.outbound(msg.messages, &mut out);
        self.dispatch(out, ctx);
    }
}

impl<R: RaftInbox> Handler<ConnectRaft<R>> for TransportActor<R> {
    type Result = ();

    fn handle(&mut self, msg: ConnectRaft<R>, _: &mut Context<Self>) {
        let _timer = self.probe.timing("ConnectRaft");
        for peer in std::mem::take(&mut self.unreported) {
            msg.raft.report_unreachable(peer);
        }
        self.raft = Some(msg.raft);
    }
}

impl<R: RaftInbox> Handler<SyncPeers> for TransportActor<R> {
    type Result = ();

    fn handle(&mut self, msg: SyncPeers, ctx: &mut Context<Self>) {
        let _timer = self.probe.timing("SyncPeers");
        let mut out = Vec::new();
        self.core.sync_peers(msg.peers, &mut out);
        self.dispatch(out, ctx);
    }
}

impl<R: RaftInbox> Handler<LinkEvent> for TransportActor<R> {
    type Result = ();

    fn handle(&mut self, msg: LinkEvent, ctx: &mut Context<Self>) {
        let _timer = self.probe.timing("LinkEvent");
        let mut out = Vec::new();
        self.core
            .on_link_report(msg.peer, msg.link, msg.report, &mut out);
        self.dispatch(out, ctx);
    }
}
