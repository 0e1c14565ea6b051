//! The raft actor: owns the `RawNode` and the waiter registry.
//!
//! Flow of one client write:
//! 1. `Propose` arrives from the gRPC facade; [`core::RaftCore`] assigns the
//!    request id, proposes, and keeps the reply under that id.
//! 2. The actor runs the Ready loop (`Poll`, coalesced so that a burst of
//!    proposals in the mailbox becomes one Ready): the write goes to the
//!    [`LogWriter`](crate::log_writer::LogWriter); its answer is `Persisted`.
//! 3. Committed entries go to the [`ApplyActor`](crate::apply::ApplyActor)
//!    with the replies of the proposals they carry; its answer reports the
//!    applied index back (`Applied`), which drives backpressure and status.
//!
//! Linearizable reads: `ReadIndex` queues the read; one raft ReadIndex serves
//! every read waiting at that moment; the read state goes to the apply actor,
//! which serves the batch once it has applied up to the read index.
//!
//! Supervision: a `Kill` stops the actor; `stopping` fails every proposal
//! and read in flight with `etcdserver: server stopped` (a retryable
//! `Unavailable`: a failed proposal may still commit, as after any
//! timeout). `restarting` then waits until the log writer and the apply
//! actor have handled everything sent to them ([`Barrier`]: writes whose
//! answer died with the old incarnation are skipped, so the log holds
//! exactly what was made durable), and builds a new `RawNode` from the
//! durable log, applied up to the apply actor's index ([`Rebuild`]). The
//! member comes back as a follower; if it led, the cluster elects again.
//! Committed entries the apply actor skipped are handed out again by the
//! new node. A panic stops the member.
//!
//! The actor ticks raft every `--heartbeat-interval`. Messages between actors
//! that must not be lost (`Append`, `Committed`, `ReadReady`) use
//! [`Mailbox::deliver`]; their number is bounded by the core (one `Append` in
//! flight; committed entries bounded by the apply-lag check on proposals).

pub mod core;
pub mod guard;
pub mod ids;
pub mod logger;
#[cfg(test)]
mod sim_tests;

use std::time::Duration;

use actix::prelude::*;
use storage::raft_log::LmdbLogStore;

use self::core::{Output, RaftCore};
use crate::Mailbox;
use crate::apply::ApplyActor;
use crate::log_writer::LogWriter;
use crate::messages::{
    Append, ApplyReport, Barrier, Committed, GetStatus, InstallSnapshot, Kill, MemberTable,
    Outbound, Propose, ProposeMemberChange, ReadIndex, ReadReady, ReportSnapshot,
    ReportUnreachable, SaveConfState, SaveSnapshot, Step, StoreCheckpoint, SyncPeers, TakeImage,
    TransferLeader,
};
use crate::metrics::ActorProbe;

/// How long a removed member keeps running before it exits (etcd waits a
/// second too), so that the others learn the removal was committed.
const REMOVED_STOP_DELAY: Duration = Duration::from_secs(1);

/// Mailbox capacity of the raft actor for client requests.
pub const RAFT_MAILBOX: usize = 4096;

/// How long a restarting raft actor waits for the log writer and the apply
/// actor to drain.
const BARRIER_TIMEOUT: Duration = Duration::from_secs(60);

/// Builds a new core from the durable log, applied up to the checkpoint's
/// index, with raft's configuration as of it.
pub type Rebuild =
    Box<dyn FnMut(&StoreCheckpoint) -> Result<RaftCore<LmdbLogStore>, String> + Send>;

/// Runs the Ready loop once the mailbox burst has been taken in.
#[derive(Message)]
#[rtype(result = "()")]
struct Poll;

/// The raft actor shell.
pub struct RaftActor {
    core: RaftCore<LmdbLogStore>,
    log_writer: Mailbox<LogWriter>,
    apply: Mailbox<ApplyActor>,
    transport: Option<Recipient<Outbound>>,
    /// Where member table changes go (the peer transport follows them).
    peer_sync: Option<Recipient<SyncPeers>>,
    probe: ActorProbe,
    etcd: crate::EtcdMetrics,
    last_leader: u64,
    tick: Duration,
    poll_scheduled: bool,
    campaign_at_start: bool,
    /// Where term and leader are posted for the facade.
    board: std::sync::Arc<crate::board::Board>,
    /// How a restart builds the new core.
    rebuild: Option<Rebuild>,
    /// Proposals the cores before the current one failed (a restart
    /// starts the core's count over).
    failed_before: u64,
    /// The log writer runs on this actor's thread (see
    /// [`RaftActor::with_log_writer_beside`]).
    log_writer_beside: bool,
    /// A snapshot from the leader is being installed by the apply actor.
    installing: bool,
}

impl RaftActor {
    pub fn new(
        core: RaftCore<LmdbLogStore>,
        log_writer: Mailbox<LogWriter>,
        apply: Mailbox<ApplyActor>,
        probe: ActorProbe,
        etcd: crate::EtcdMetrics,
        tick: Duration,
        campaign_at_start: bool,
    ) -> Self {
        Self {
            core,
            log_writer,
            apply,
            transport: None,
            peer_sync: None,
            probe,
            etcd,
            last_leader: 0,
            tick,
            poll_scheduled: false,
            campaign_at_start,
            board: crate::board::Board::new(0, 0),
            rebuild: None,
            failed_before: 0,
            log_writer_beside: false,
            installing: false,
        }
    }

    /// Says that the log writer was started on this actor's thread. A
    /// restart then does not wait for it: it cannot be in the middle of a
    /// write while this thread restarts raft, and the writes still queued
    /// for it lost their answers with the old incarnation, so it skips them.
    /// (Waiting would never end: the log writer runs only once this thread
    /// is free.)
    pub fn with_log_writer_beside(mut self) -> Self {
        self.log_writer_beside = true;
        self
    }

    /// How a restart builds the new core (without it, a stopped raft actor
    /// stops the member).
    pub fn with_rebuild(mut self, rebuild: Rebuild) -> Self {
        self.rebuild = Some(rebuild);
        self
    }

    /// Posts term and leader on `board` after every Ready (for the
    /// facade's response headers).
    pub fn with_board(mut self, board: std::sync::Arc<crate::board::Board>) -> Self {
        self.board = board;
        self
    }

    /// Refreshes etcd's server gauges from the core (every tick).
    fn report(&mut self) {
        let status = self.core.status();
        self.etcd.has_leader.set(i64::from(status.leader != 0));
        self.etcd
            .is_leader
            .set(i64::from(status.leader == status.id));
        if status.leader != 0 && status.leader != self.last_leader {
            self.etcd.leader_changes.inc();
        }
        self.last_leader = status.leader;
        self.etcd.proposals_committed.set(status.commit as i64);
        self.etcd.proposals_applied.set(status.applied as i64);
        self.etcd
            .proposals_pending
            .set(self.core.proposals_pending() as i64);
        let failed = self.failed_before + self.core.proposals_failed();
        self.etcd
            .proposals_failed
            .inc_by(failed.saturating_sub(self.etcd.proposals_failed.get()));
    }

    fn schedule_poll(&mut self, ctx: &mut Context<Self>) {
        if !self.poll_scheduled {
            self.poll_scheduled = true;
            ctx.notify(Poll);
        }
    }

    fn dispatch(&mut self, out: Output, ctx: &mut Context<Self>) {
        let status = self.core.status();
        self.board.post_raft(status.term, status.leader);
        // The install goes before any committed batch: entries after a
        // snapshot apply on top of its image (the apply mailbox is FIFO).
        if let Some(descriptor) = out.install {
            self.installing = true;
            let request = self.apply.deliver(InstallSnapshot { descriptor });
            ctx.spawn(request.into_actor(self).map(|res, act, ctx| match res {
                Ok((applied, members)) => {
                    act.installing = false;
                    act.board.post_learner(act.core.status().is_learner);
                    act.core.on_applied(applied);
                    act.members_changed(members, ctx);
                    act.schedule_poll(ctx);
                }
                Err(_) => crate::fatal("apply actor stopped during a snapshot install"),
            }));
        }
        // A member that is a learner by a snapshot's configuration says so
        // (Status, the learner gate) once the snapshot's data is installed:
        // before, its reads would find an empty store.
        if !self.installing && !self.core.snapshot_pending() {
            self.board.post_learner(status.is_learner);
        }
        if let Some((snapshot, compact_to)) = out.save_snapshot {
            let request = self.log_writer.deliver(SaveSnapshot {
                snapshot,
                compact_to,
            });
            ctx.spawn(request.into_actor(self).map(|res, _, _| {
                if res.is_err() {
                    crate::fatal("log writer stopped while saving a snapshot");
                }
            }));
        }
        if !out.messages.is_empty() {
            match &self.transport {
                Some(t) => {
                    if t.try_send(Outbound {
                        messages: out.messages,
                    })
                    .is_err()
                    {
                        tracing::warn!(
                            "peer transport mailbox full; raft messages dropped (raft retries)"
                        );
                    }
                }
                None => tracing::warn!(
                    count = out.messages.len(),
                    "raft messages for peers but no peer transport is running"
                ),
            }
        }
        if let Some(cs) = out.conf_state {
            let request = self.log_writer.deliver(SaveConfState { conf_state: cs });
            ctx.spawn(request.into_actor(self).map(|res, _, _| {
                if res.is_err() {
                    crate::fatal("log writer stopped while saving the conf state");
                }
            }));
        }
        if let Some((number, write)) = out.write {
            let request = self.log_writer.deliver(Append { number, write });
            ctx.spawn(
                request
                    .into_actor(self)
                    .map(move |res, act, ctx| match res {
                        Ok(()) => act.persisted(number, ctx),
                        Err(_) => crate::fatal("log writer stopped with a write in flight"),
                    }),
            );
        }
        for batch in out.committed {
            let request = self.apply.deliver(Committed { batch });
            ctx.spawn(request.into_actor(self).map(|res, act, ctx| match res {
                Ok(report) => act.applied(report, ctx),
                Err(_) => crate::fatal("apply actor stopped with committed entries in flight"),
            }));
        }
        if out.want_image {
            let request = self.apply.deliver(TakeImage);
            ctx.spawn(request.into_actor(self).map(|res, act, ctx| match res {
                Ok(report) => act.applied(report, ctx),
                Err(_) => crate::fatal("apply actor stopped while writing an image"),
            }));
        }
        for batch in out.reads {
            let request = self.apply.deliver(ReadReady { batch });
            ctx.spawn(request.into_actor(self).map(|res, _, _| {
                if res.is_err() {
                    crate::fatal("apply actor stopped with reads in flight");
                }
            }));
        }
    }

    /// The apply actor's report: progress, accepted membership changes (for
    /// raft's configuration, then the transport), and a new image.
    fn applied(&mut self, report: ApplyReport, ctx: &mut Context<Self>) {
        self.core.on_applied(report.applied);
        let mut out = Output::default();
        self.core
            .on_conf_changes_applied(report.conf_changes, &mut out);
        if let Some(d) = report.snapshot {
            self.core.on_snapshot_taken(d, &mut out);
        }
        if !out.is_empty() {
            self.dispatch(out, ctx);
        }
        if let Some(members) = report.members {
            self.members_changed(members, ctx);
        }
        self.schedule_poll(ctx);
    }

    /// The member table changed: the transport follows it; a member no
    /// longer in it was removed and stops, as etcd's does, after a short
    /// delay that lets the removal reach the others.
    fn members_changed(&mut self, table: MemberTable, ctx: &mut Context<Self>) {
        let MemberTable { members, removed } = table;
        let id = self.core.status().id;
        if !members.is_empty() && !members.iter().any(|m| m.id == id) {
            tracing::warn!(member = %format!("{id:x}"), "this member was removed; stopping shortly");
            ctx.run_later(REMOVED_STOP_DELAY, |_, _| crate::stop_removed());
        }
        self.board.post_members(members.clone(), removed);
        if let Some(sync) = &self.peer_sync {
            let peers = members.into_iter().map(|m| (m.id, m.peer_ur_ls)).collect();
            if sync.try_send(SyncPeers { peers }).is_err() {
                tracing::error!(
                    "peer transport mailbox full; a member table change was not passed on"
                );
            }
        }
    }

    fn persisted(&mut self, number: u64, ctx: &mut Context<Self>) {
        let _timer = self.probe.timing("Persisted");
        let mut out = Output::default();
        self.core.on_persisted(number, &mut out);
        self.core.poll(&mut out);
        self.dispatch(out, ctx);
    }

    /// Connects the peer transport (multi-member clusters).
    pub fn set_transport(&mut self, transport: Recipient<Outbound>) {
        self.transport = Some(transport);
    }

    /// Connects the transport to member table changes.
    pub fn set_peer_sync(&mut self, sync: Recipient<SyncPeers>) {
        self.peer_sync = Some(sync);
    }
}

impl Actor for RaftActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(self.tick, |act, ctx| {
            let _timer = act.probe.timing("Tick");
            act.core.tick();
            act.report();
            act.schedule_poll(ctx);
        });
        if self.campaign_at_start {
            if let Err(e) = self.core.campaign() {
                tracing::warn!(error = %e, "campaign at start failed");
            }
            self.schedule_poll(ctx);
        }
    }

    fn stopping(&mut self, _: &mut Self::Context) -> Running {
        self.core.shutdown();
        Running::Stop
    }
}

/// Waits until `mailbox`'s actor has handled everything sent to it before.
fn barrier<A>(mailbox: &Mailbox<A>, who: &str) -> Option<StoreCheckpoint>
where
    A: Actor<Context = Context<A>> + Handler<Barrier>,
{
    let (done, rx) = std::sync::mpsc::sync_channel(1);
    mailbox.post(Barrier { done });
    match rx.recv_timeout(BARRIER_TIMEOUT) {
        Ok(checkpoint) => checkpoint,
        Err(_) => crate::fatal(&format!(
            "the restarting raft actor waited {} s for the {who} in vain",
            BARRIER_TIMEOUT.as_secs()
        )),
    }
}

impl Supervised for RaftActor {
    fn restarting(&mut self, _: &mut Context<Self>) {
        self.poll_scheduled = false;
        let Some(rebuild) = self.rebuild.as_mut() else {
            crate::fatal("the raft actor stopped and has no way to rebuild");
        };
        if !self.log_writer_beside {
            barrier(&self.log_writer, "log writer");
        }
        let Some(checkpoint) = barrier(&self.apply, "apply actor") else {
            crate::fatal("the apply actor answered a barrier without its applied index");
        };
        match rebuild(&checkpoint) {
            Ok(core) => {
                self.failed_before += self.core.proposals_failed();
                self.core = core;
            }
            Err(e) => crate::fatal(&format!("the raft actor cannot be rebuilt: {e}")),
        }
        let status = self.core.status();
        self.board.post_raft(status.term, status.leader);
        tracing::info!(
            applied = checkpoint.applied,
            term = status.term,
            "raft rebuilt from the durable log"
        );
    }
}

impl Handler<Kill> for RaftActor {
    type Result = ();

    fn handle(&mut self, _: Kill, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

impl Handler<Poll> for RaftActor {
    type Result = ();

    fn handle(&mut self, _: Poll, ctx: &mut Context<Self>) {
        let _timer = self.probe.timing("Poll");
        self.poll_scheduled = false;
        let mut out = Output::default();
        self.core.poll(&mut out);
        self.dispatch(out, ctx);
    }
}

impl Handler<Propose> for RaftActor {
    type Result = ();

    fn handle(&mut self, msg: Propose, ctx: &mut Context<Self>) {
        let _timer = self.probe.handling("Propose");
        self.core.propose(msg.request, msg.reply);
        self.schedule_poll(ctx);
    }
}

impl Handler<ProposeMemberChange> for RaftActor {
    type Result = ();

    fn handle(&mut self, msg: ProposeMemberChange, ctx: &mut Context<Self>) {
        let _timer = self.probe.handling("ProposeMemberChange");
        self.core.propose_member_change(msg.change, msg.reply);
        self.schedule_poll(ctx);
    }
}

impl Handler<ReadIndex> for RaftActor {
    type Result = ();

    fn handle(&mut self, msg: ReadIndex, ctx: &mut Context<Self>) {
        let _timer = self.probe.handling("ReadIndex");
        self.core.read_index(msg.read);
        self.schedule_poll(ctx);
    }
}

impl Handler<Step> for RaftActor {
    type Result = ();

    fn handle(&mut self, msg: Step, ctx: &mut Context<Self>) {
        let _timer = self.probe.handling("Step");
        self.core.step(msg.message);
        self.schedule_poll(ctx);
    }
}

impl Handler<GetStatus> for RaftActor {
    type Result = MessageResult<GetStatus>;

    fn handle(&mut self, _: GetStatus, _: &mut Context<Self>) -> Self::Result {
        let _timer = self.probe.handling("GetStatus");
        MessageResult(self.core.status())
    }
}

impl Handler<ReportUnreachable> for RaftActor {
    type Result = ();

    fn handle(&mut self, msg: ReportUnreachable, ctx: &mut Context<Self>) {
        let _timer = self.probe.handling("ReportUnreachable");
        self.core.report_unreachable(msg.id);
        self.schedule_poll(ctx);
    }
}

impl Handler<ReportSnapshot> for RaftActor {
    type Result = ();

    fn handle(&mut self, msg: ReportSnapshot, ctx: &mut Context<Self>) {
        let _timer = self.probe.handling("ReportSnapshot");
        self.core.report_snapshot(msg.id, msg.status);
        self.schedule_poll(ctx);
    }
}

impl Handler<TransferLeader> for RaftActor {
    type Result = ();

    fn handle(&mut self, msg: TransferLeader, ctx: &mut Context<Self>) {
        let _timer = self.probe.handling("TransferLeader");
        self.core.transfer_leader(msg.target, msg.reply);
        self.schedule_poll(ctx);
    }
}
