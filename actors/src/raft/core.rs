//! The raft actor's logic, with no actix and no clock of its own: the shell
//! feeds it ticks and messages and dispatches the [`Output`] it returns.
//!
//! The Ready loop follows raft-rs's documented order (crate docs, "Processing
//! the Ready State"), with the fsync on the log writer's thread:
//! 1. `ready()` is taken only when no earlier Ready is still being persisted.
//!    A Ready with a write is held until the log writer reports it durable,
//!    and only then advanced (`advance_append`): raft-rs must not be stepped
//!    between `ready()` and its advance, and it reads advanced entries back
//!    from storage, which has them only after the write. Inputs that arrive
//!    meanwhile (proposals, peer messages, ticks) are queued and fed to raft
//!    right after the advance, so one fsync covers many proposals (group
//!    commit).
//! 2. `take_messages()` are sent at once: raft-rs puts only messages that are
//!    safe before local persistence there (a leader's appends; Raft thesis
//!    §10.2.1: the leader may write its log in parallel with replicating it,
//!    because it counts itself in the quorum only after its own fsync).
//! 3. A snapshot, new entries and the hard state go to the log writer as one
//!    `LogWrite` (one fsynced LMDB txn), with the snapshot first.
//! 4. Committed entries go to the apply actor together with the waiters of the
//!    proposals they carry (matched by request id, never by order).
//! 5. `take_persisted_messages()` (votes, append responses) are held until the
//!    log writer reports the write durable (`on_persisted`); sending them
//!    earlier could lose a vote or an acknowledged entry on power loss
//!    (etcd-io/etcd#12589).
//! 6. The LightReady of the advance is handled the same way; conf changes
//!    among committed entries are applied to raft only after the advance.
//!    A Ready with nothing to persist is advanced at once.
//!
//! Peer messages pass [`PeerGuard`](super::guard::PeerGuard) right before
//! they are stepped: one raft-rs would panic on, or one that would persist a
//! snapshot without its image, is refused and counted, never stepped.
//!
//! Snapshots: when the apply actor reports a new image, the core builds the
//! raft `Snapshot` (index, term, the conf state in force at that index, and
//! the image descriptor as data) for the log writer to store before it
//! compacts the log. A snapshot arriving from the leader is persisted first;
//! only once the log writer reports it durable does the apply actor swap in
//! the image, before any entry that follows it.
//!
//! The commit index alone is not fsynced on every change: a member restarts
//! from the applied index recorded in the MVCC store, and the bootstrap raises
//! the stored commit to it (every applied entry was committed).

use std::collections::{HashMap, VecDeque};

use proto::Message as _;
use proto::internal::InternalRequest;
use proto::internal::SnapshotDescriptor;
use proto::internal::{MemberChange, internal_request, member_change};
use raft::RawNode;
use raft::eraftpb::{ConfChange, ConfChangeType, ConfState, Entry, EntryType, Message, Snapshot};
use storage::EtcdError;
use storage::raft_log::{LogStore, LogWrite};

use super::guard::PeerGuard;
use super::ids::IdGen;
use crate::messages::{
    CommittedBatch, PendingRead, RaftStatus, ReadBatch, TransferReply, WriteReply,
};

/// Ticks between two requests for an image while raft keeps needing one.
const IMAGE_RETRY_TICKS: u64 = 50;

/// Static settings of the raft core.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    pub id: u64,
    /// etcd's `--max-request-bytes`: an encoded request envelope above this is
    /// refused with `etcdserver: request is too large`.
    pub max_request_bytes: usize,
    /// Ticks a proposal or read may wait before `etcdserver: request timed out`.
    pub request_timeout_ticks: u64,
    /// committed - applied above this refuses new proposals with
    /// `etcdserver: too many requests` (etcd: 5000).
    pub max_apply_lag: u64,
    /// Ticks after which an unanswered ReadIndex is sent again with a fresh
    /// context (raft-rs drops it silently when the leader has not committed
    /// in its term or a follower knows no leader; etcd retries after 500 ms).
    pub read_retry_ticks: u64,
    /// Entries kept in the log behind a snapshot, so that a slightly lagging
    /// follower catches up from the log instead of a whole image.
    pub catch_up_entries: u64,
}

/// What the shell must do after a call into the core.
#[derive(Debug, Default)]
pub struct Output {
    /// Raft messages for peers.
    pub messages: Vec<Message>,
    /// A write for the log writer, tagged with its Ready number.
    pub write: Option<(u64, LogWrite)>,
    /// Committed entries for the apply actor.
    pub committed: Vec<CommittedBatch>,
    /// Reads for the apply actor.
    pub reads: Vec<ReadBatch>,
    /// A conf state that changed on apply of a conf change (to persist).
    pub conf_state: Option<raft::eraftpb::ConfState>,
    /// A snapshot received from the leader, now durable in the raft log:
    /// the apply actor must install its image before applying anything
    /// after it.
    pub install: Option<SnapshotDescriptor>,
    /// A raft snapshot for a new local image, and the index below which the
    /// log may be compacted.
    pub save_snapshot: Option<(Snapshot, u64)>,
    /// Raft needs a snapshot that is not there (a member joined): the apply
    /// actor should write an image now.
    pub want_image: bool,
}

impl Output {
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
            && self.write.is_none()
            && self.committed.is_empty()
            && self.reads.is_empty()
            && self.conf_state.is_none()
            && self.install.is_none()
            && self.save_snapshot.is_none()
            && !self.want_image
    }
}

struct Waiting {
    reply: WriteReply,
    deadline: u64,
}

struct ParkedProposal {
    request: InternalRequest,
    reply: WriteReply,
    deadline: u64,
}

/// An input that reached the core while a Ready was being persisted; raft
/// takes it right after that Ready is advanced.
enum Deferred {
    Propose {
        id: u64,
        data: Vec<u8>,
        /// Set for a membership change that travels as a conf change
        /// (its context is `data`).
        conf: Option<ConfChange>,
        reply: WriteReply,
        deadline: u64,
    },
    Step(Message),
    Tick,
    Unreachable(u64),
    SnapshotStatus(u64, raft::SnapshotStatus),
    TransferLeader(u64),
}

struct ReadsInFlight {
    reads: Vec<PendingRead>,
    deadline: u64,
    /// When the current ReadIndex attempt went out.
    issued: u64,
}

/// The raft actor's state.
pub struct RaftCore<S: LogStore> {
    node: RawNode<S>,
    config: CoreConfig,
    ids: IdGen,
    now: u64,
    waiters: HashMap<u64, Waiting>,
    parked: Vec<ParkedProposal>,
    /// Reads waiting for the next ReadIndex, with their deadlines.
    pending_reads: Vec<(PendingRead, u64)>,
    reads_in_flight: HashMap<Vec<u8>, ReadsInFlight>,
    read_ctx: u64,
    /// The Ready whose write is with the log writer, with the messages that
    /// may leave only once it is durable.
    unpersisted: Option<(raft::Ready, Vec<Message>)>,
    deferred: VecDeque<Deferred>,
    /// True between `ready()` and its advance: raft must not be touched.
    in_ready: bool,
    /// Conf changes the apply actor accepted, applied to raft between
    /// Readys.
    conf_changes: Vec<(u64, ConfChange)>,
    /// Index of the last conf-change entry handed to the apply actor: until
    /// `applied` reaches it, the next membership change waits in
    /// `conf_queue` (one change at a time, each applied before the next).
    last_conf_entry: u64,
    conf_queue: VecDeque<Deferred>,
    /// Tick at which an image was last asked for (see `Output::want_image`).
    image_asked: Option<u64>,
    hard_state: raft::eraftpb::HardState,
    leader: u64,
    applied: u64,
    /// Conf states by the index that brought them in (newest last), to put
    /// the right one into a snapshot taken at an older index.
    conf_history: Vec<(u64, ConfState)>,
    /// MoveLeader requests: (target, reply, deadline tick).
    transfers: Vec<(u64, TransferReply, u64)>,
    /// A received snapshot waiting for its Ready to be durable.
    pending_install: Option<(u64, SnapshotDescriptor)>,
    /// Admission of peer messages.
    guard: PeerGuard,
    /// Proposals that failed after admission (etcd's
    /// `proposals_failed_total`: refused by raft, timed out, or cut off by
    /// a leader change).
    proposals_failed: u64,
}

impl<S: LogStore> RaftCore<S> {
    pub fn new(
        node: RawNode<S>,
        config: CoreConfig,
        ids: IdGen,
        applied: u64,
        guard: PeerGuard,
    ) -> Self {
        let hard_state = node.raft.hard_state();
        // The stored conf state is the one as of `applied` (the node sets
        // it from the member table at start; later changes replay).
        let conf_history = vec![(applied, node.store().conf_state())];
        Self {
            node,
            config,
            ids,
            now: 0,
            waiters: HashMap::new(),
            parked: Vec::new(),
            pending_reads: Vec::new(),
            reads_in_flight: HashMap::new(),
            read_ctx: 0,
            unpersisted: None,
            deferred: VecDeque::new(),
            in_ready: false,
            conf_changes: Vec::new(),
            last_conf_entry: 0,
            conf_queue: VecDeque::new(),
            image_asked: None,
            hard_state,
            leader: raft::INVALID_ID,
            applied,
            conf_history,
            pending_install: None,
            guard,
            transfers: Vec::new(),
            proposals_failed: 0,
        }
    }

    /// Starts an election at once (a single-member cluster need not wait for
    /// its election timeout).
    pub fn campaign(&mut self) -> Result<(), raft::Error> {
        self.node.campaign()
    }

    pub fn status(&self) -> RaftStatus {
        RaftStatus {
            id: self.config.id,
            leader: self.leader,
            term: self.hard_state.term.max(self.node.raft.term),
            commit: self.node.raft.raft_log.committed,
            applied: self.applied,
            is_learner: self
                .node
                .raft
                .prs()
                .conf()
                .learners()
                .contains(&self.config.id),
        }
    }

    /// Proposals waiting to be committed: proposed to raft, or parked until
    /// a leader is known (etcd's `proposals_pending`).
    pub fn proposals_pending(&self) -> usize {
        self.waiters.len() + self.parked.len()
    }

    /// Proposals failed so far (see the field).
    pub fn proposals_failed(&self) -> u64 {
        self.proposals_failed
    }

    /// Proposes `request`; its reply is answered on apply, on failure, or
    /// on timeout.
    pub fn propose(&mut self, mut request: InternalRequest, reply: WriteReply) {
        let committed = self.node.raft.raft_log.committed;
        if committed.saturating_sub(self.applied) > self.config.max_apply_lag {
            let _ = reply.send(Err(EtcdError::TooManyRequests));
            return;
        }
        request.id = self.ids.next_id();
        let data = request.encode_to_vec();
        if data.len() > self.config.max_request_bytes {
            let _ = reply.send(Err(EtcdError::RequestTooLarge));
            return;
        }
        let deadline = self.now + self.config.request_timeout_ticks;
        if self.leader == raft::INVALID_ID {
            self.parked.push(ParkedProposal {
                request,
                reply,
                deadline,
            });
            return;
        }
        let conf = conf_change_for(&request, &data);
        self.input(Deferred::Propose {
            id: request.id,
            data,
            conf,
            reply,
            deadline,
        });
    }

    /// A membership change: a learner promotion is checked here, where the
    /// leader sees how far the learner has come (etcd's `isLearnerReady`:
    /// its match at least 90 % of the leader's); a follower answers
    /// `NotLeader` and the node forwards the promotion to the leader.
    pub fn propose_member_change(&mut self, change: MemberChange, reply: WriteReply) {
        if change.kind == member_change::Kind::Promote as i32 {
            let id = change.member.as_ref().map_or(0, |m| m.id);
            if let Err(e) = self.learner_ready(id) {
                let _ = reply.send(Err(e));
                return;
            }
        }
        let request = InternalRequest {
            id: 0,
            request: Some(internal_request::Request::MemberChange(change)),
            ..Default::default()
        };
        self.propose(request, reply);
    }

    fn learner_ready(&self, id: u64) -> Result<(), EtcdError> {
        if self.leader != self.config.id {
            return Err(EtcdError::NotLeader);
        }
        let prs = self.node.raft.prs();
        if !prs.conf().learners().contains(&id) {
            // Not a learner of the configuration: the apply refuses it with
            // the member table's verdict (not found, or not a learner).
            return Ok(());
        }
        let leader_match = prs.get(self.config.id).map_or(0, |p| p.matched);
        let learner_match = prs.get(id).map_or(0, |p| p.matched);
        if (learner_match as f64) < (leader_match as f64) * 0.9 {
            return Err(EtcdError::LearnerNotReady);
        }
        Ok(())
    }

    /// Whether a Ready is out (being handled or persisted): raft takes no
    /// input until it is advanced.
    fn busy(&self) -> bool {
        self.in_ready || self.unpersisted.is_some()
    }

    /// Feeds the inputs queued while raft was busy, then starts a ReadIndex
    /// for reads that waited.
    fn drain_deferred(&mut self) {
        while !self.busy() {
            let Some(input) = self.deferred.pop_front() else {
                break;
            };
            self.input(input);
        }
        if self.reads_in_flight.is_empty() {
            self.issue_read_index();
        }
    }

    /// Feeds `input` to raft now, or after the Ready being persisted.
    fn input(&mut self, input: Deferred) {
        if self.busy() {
            self.deferred.push_back(input);
            return;
        }
        match input {
            Deferred::Propose {
                id,
                data,
                conf: Some(cc),
                reply,
                deadline,
            } => {
                if !self.conf_settled() {
                    self.conf_queue.push_back(Deferred::Propose {
                        id,
                        data,
                        conf: Some(cc),
                        reply,
                        deadline,
                    });
                    return;
                }
                self.submit_conf_change(id, cc, reply, deadline)
            }
            Deferred::Propose {
                id,
                data,
                conf: None,
                reply,
                deadline,
            } => self.submit(id, data, reply, deadline),
            Deferred::Step(message) => {
                // Checked now, against the log raft steps it into.
                if !self.guard.admit(&self.node, &message) {
                    return;
                }
                if let Err(e) = self.node.step(message) {
                    tracing::debug!(error = %e, "raft step refused a message");
                }
            }
            Deferred::Tick => {
                self.node.tick();
            }
            Deferred::Unreachable(id) => self.node.report_unreachable(id),
            Deferred::SnapshotStatus(id, status) => self.node.report_snapshot(id, status),
            Deferred::TransferLeader(target) => self.node.transfer_leader(target),
        }
    }

    fn submit_conf_change(&mut self, id: u64, cc: ConfChange, reply: WriteReply, deadline: u64) {
        match self.node.propose_conf_change(id.to_be_bytes().to_vec(), cc) {
            Ok(()) => {
                self.waiters.insert(id, Waiting { reply, deadline });
            }
            Err(raft::Error::ProposalDropped) => {
                self.proposals_failed += 1;
                let _ = reply.send(Err(EtcdError::LeaderChanged));
            }
            Err(e) => {
                tracing::warn!(error = %e, "conf change refused by raft");
                self.proposals_failed += 1;
                let _ = reply.send(Err(EtcdError::Stopped));
            }
        }
    }

    fn submit(&mut self, id: u64, data: Vec<u8>, reply: WriteReply, deadline: u64) {
        match self.node.propose(id.to_be_bytes().to_vec(), data) {
            Ok(()) => {
                self.waiters.insert(id, Waiting { reply, deadline });
            }
            Err(raft::Error::ProposalDropped) => {
                self.proposals_failed += 1;
                let _ = reply.send(Err(EtcdError::LeaderChanged));
            }
            Err(e) => {
                tracing::warn!(error = %e, "proposal refused by raft");
                self.proposals_failed += 1;
                let _ = reply.send(Err(EtcdError::Stopped));
            }
        }
    }

    /// etcd's MoveLeader: only the leader may hand leadership over, and only
    /// to a voter; the answer comes once `target` leads, or after the
    /// request timeout with etcd's "leader transfer took too long".
    pub fn transfer_leader(&mut self, target: u64, reply: TransferReply) {
        if self.leader != self.config.id {
            let _ = reply.send(Err(EtcdError::NotLeader));
            return;
        }
        if target == self.config.id {
            let _ = reply.send(Ok(()));
            return;
        }
        if !self
            .node
            .raft
            .prs()
            .conf()
            .to_conf_state()
            .voters
            .contains(&target)
        {
            let _ = reply.send(Err(EtcdError::BadLeaderTransferee));
            return;
        }
        let deadline = self.now + self.config.request_timeout_ticks;
        self.transfers.push((target, reply, deadline));
        self.input(Deferred::TransferLeader(target));
    }

    /// Queues a linearizable read; reads that arrive while a ReadIndex is in
    /// flight share the next one.
    pub fn read_index(&mut self, read: PendingRead) {
        let deadline = self.now + self.config.request_timeout_ticks;
        self.pending_reads.push((read, deadline));
        if self.reads_in_flight.is_empty() {
            self.issue_read_index();
        }
    }

    fn issue_read_index(&mut self) {
        if self.pending_reads.is_empty() || self.leader == raft::INVALID_ID || self.busy() {
            return;
        }
        let pending = std::mem::take(&mut self.pending_reads);
        let deadline = pending.iter().map(|(_, d)| *d).min().unwrap_or(self.now);
        let reads = pending.into_iter().map(|(r, _)| r).collect();
        self.send_read_index(ReadsInFlight {
            reads,
            deadline,
            issued: self.now,
        });
    }

    fn send_read_index(&mut self, mut batch: ReadsInFlight) {
        // A fresh context for every attempt (etcd PR #21399): a late answer
        // to an abandoned attempt must never release a newer batch.
        self.read_ctx += 1;
        let ctx = [self.ids.prefix().to_be_bytes(), self.read_ctx.to_be_bytes()].concat();
        batch.issued = self.now;
        self.reads_in_flight.insert(ctx.clone(), batch);
        self.node.read_index(ctx);
    }

    /// Sends again the ReadIndex attempts that got no answer in time.
    fn retry_read_index(&mut self) {
        if self.leader == raft::INVALID_ID || self.busy() {
            return;
        }
        let now = self.now;
        let stale: Vec<Vec<u8>> = self
            .reads_in_flight
            .iter()
            .filter(|(_, b)| now.saturating_sub(b.issued) >= self.config.read_retry_ticks)
            .map(|(ctx, _)| ctx.clone())
            .collect();
        for ctx in stale {
            if let Some(batch) = self.reads_in_flight.remove(&ctx) {
                self.send_read_index(batch);
            }
        }
    }

    /// Feeds a message from a peer.
    pub fn step(&mut self, message: Message) {
        self.input(Deferred::Step(message));
    }

    /// One logical clock tick: drives elections and heartbeats, and times out
    /// requests that waited too long.
    pub fn tick(&mut self) {
        self.now += 1;
        self.input(Deferred::Tick);
        let now = self.now;
        let expired: Vec<u64> = self
            .waiters
            .iter()
            .filter(|(_, w)| w.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            if let Some(w) = self.waiters.remove(&id) {
                self.proposals_failed += 1;
                let _ = w.reply.send(Err(EtcdError::Timeout));
            }
        }
        let (keep, expired): (Vec<_>, Vec<_>) = std::mem::take(&mut self.parked)
            .into_iter()
            .partition(|p| p.deadline > now);
        self.parked = keep;
        for p in expired {
            self.proposals_failed += 1;
            let _ = p.reply.send(Err(EtcdError::Timeout));
        }
        let expired: Vec<Vec<u8>> = self
            .reads_in_flight
            .iter()
            .filter(|(_, r)| r.deadline <= now)
            .map(|(ctx, _)| ctx.clone())
            .collect();
        for ctx in expired {
            if let Some(batch) = self.reads_in_flight.remove(&ctx) {
                fail_reads(batch.reads, EtcdError::Timeout);
            }
        }
        let (keep, expired): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending_reads)
            .into_iter()
            .partition(|(_, deadline)| *deadline > now);
        self.pending_reads = keep;
        fail_reads(
            expired.into_iter().map(|(r, _)| r).collect(),
            EtcdError::Timeout,
        );
        let (keep, expired): (Vec<_>, Vec<_>) = std::mem::take(&mut self.transfers)
            .into_iter()
            .partition(|(_, _, d)| *d > now);
        self.transfers = keep;
        for (_, reply, _) in expired {
            let _ = reply.send(Err(EtcdError::LeaderTransferTimeout));
        }
        let (keep, expired): (VecDeque<_>, VecDeque<_>) = std::mem::take(&mut self.conf_queue)
            .into_iter()
            .partition(|d| !matches!(d, Deferred::Propose { deadline, .. } if *deadline <= now));
        self.conf_queue = keep;
        for d in expired {
            if let Deferred::Propose { reply, .. } = d {
                self.proposals_failed += 1;
                let _ = reply.send(Err(EtcdError::Timeout));
            }
        }
        self.retry_read_index();
        if self.reads_in_flight.is_empty() {
            self.issue_read_index();
        }
    }

    /// The apply actor reports progress.
    pub fn on_applied(&mut self, index: u64) {
        self.applied = self.applied.max(index);
    }

    /// The apply actor accepted these membership changes (by raft index):
    /// they reach raft's configuration between Readys, then the next queued
    /// membership change may go.
    pub fn on_conf_changes_applied(&mut self, changes: Vec<(u64, ConfChange)>, out: &mut Output) {
        self.conf_changes.extend(changes);
        if !self.busy() {
            self.apply_conf_changes(out);
        }
        self.release_conf_queue();
    }

    /// True when no membership change is between proposal and its
    /// application to raft's configuration, as far as this member sees.
    fn conf_settled(&self) -> bool {
        let raft = &self.node.raft;
        self.conf_changes.is_empty()
            && self.last_conf_entry <= self.applied
            && raft.pending_conf_index <= raft.raft_log.applied
    }

    /// Lets the next queued membership change go once the previous one
    /// settled.
    fn release_conf_queue(&mut self) {
        if !self.busy()
            && self.conf_settled()
            && let Some(next) = self.conf_queue.pop_front()
        {
            self.input(next);
        }
    }

    /// The log writer made Ready `number` durable: advance it, then feed
    /// raft what arrived meanwhile.
    pub fn on_persisted(&mut self, number: u64, out: &mut Output) {
        let Some((rd, persisted)) = self.unpersisted.take_if(|(rd, _)| rd.number() <= number)
        else {
            return;
        };
        out.messages.extend(persisted);
        let mut light = self.node.advance_append(rd);
        self.after_advance(&mut light, out);
        if self
            .pending_install
            .as_ref()
            .is_some_and(|(n, _)| *n <= number)
        {
            out.install = self.pending_install.take().map(|(_, d)| d);
        }
        while self.unpersisted.is_none() {
            let Some(input) = self.deferred.pop_front() else {
                break;
            };
            self.input(input);
        }
        if self.reads_in_flight.is_empty() {
            self.issue_read_index();
        }
    }

    fn after_advance(&mut self, light: &mut raft::LightReady, out: &mut Output) {
        if let Some(commit) = light.commit_index() {
            self.hard_state.commit = commit;
        }
        out.messages.extend(light.take_messages());
        let committed = light.take_committed_entries();
        self.hand_over(committed, out);
        self.apply_conf_changes(out);
        self.node.advance_apply();
        self.release_conf_queue();
    }

    /// Runs the Ready loop as far as it can go without waiting for the log
    /// writer (see the module docs for the order).
    pub fn poll(&mut self, out: &mut Output) {
        self.ask_for_image(out);
        // A Ready with nothing to persist is advanced at once, which may
        // produce another; a Ready with a write stops the loop until
        // `on_persisted`. Bounded: each round consumes raft state.
        for _ in 0..64 {
            if self.unpersisted.is_some() || !self.node.has_ready() {
                return;
            }
            let mut rd = self.node.ready();
            self.in_ready = true;
            if let Some(ss) = rd.ss() {
                self.on_soft_state(ss.leader_id);
            }
            out.messages.extend(rd.take_messages());
            let snapshot = (!rd.snapshot().is_empty()).then(|| rd.snapshot().clone());
            // Committed entries in a Ready are already durable here: hand
            // them to apply now (conf changes reach raft after the advance).
            let committed = rd.take_committed_entries();
            self.hand_over(committed, out);
            let read_states = rd.take_read_states();
            self.release_reads(read_states, out);
            if let Some(hs) = rd.hs() {
                self.hard_state = hs.clone();
            }
            let persisted = rd.take_persisted_messages();
            if rd.must_sync() || snapshot.is_some() || !rd.entries().is_empty() {
                let number = rd.number();
                if let Some(snap) = &snapshot {
                    self.on_snapshot_received(number, snap);
                }
                let entries = rd.take_entries();
                out.write = Some((
                    number,
                    LogWrite {
                        snapshot,
                        entries,
                        hard_state: Some(self.hard_state.clone()),
                        commit: None,
                    },
                ));
                self.unpersisted = Some((rd, persisted));
                self.in_ready = false;
                return;
            }
            out.messages.extend(persisted);
            let mut light = self.node.advance_append(rd);
            self.in_ready = false;
            self.after_advance(&mut light, out);
            self.drain_deferred();
        }
    }

    fn on_soft_state(&mut self, leader: u64) {
        if leader == self.leader {
            return;
        }
        let term = self.node.raft.term;
        if leader == raft::INVALID_ID {
            tracing::info!(
                "raft.node: {:x} lost leader {:x} at term {term}",
                self.config.id,
                self.leader
            );
        } else if self.leader == raft::INVALID_ID {
            tracing::info!(
                "raft.node: {:x} elected leader {leader:x} at term {term}",
                self.config.id
            );
        } else {
            tracing::info!(
                "raft.node: {:x} changed leader from {:x} to {leader:x} at term {term}",
                self.config.id,
                self.leader
            );
        }
        let had_leader = self.leader != raft::INVALID_ID;
        self.leader = leader;
        let (done, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.transfers)
            .into_iter()
            .partition(|(t, _, _)| *t == leader);
        self.transfers = waiting;
        for (_, reply, _) in done {
            let _ = reply.send(Ok(()));
        }
        if had_leader {
            // Proposals and reads of the old leadership may never complete:
            // fail them with a retryable error instead of letting them hang
            // (etcd PR #21375 for reads). A failed write may still have been
            // committed; clients treat it as "maybe applied".
            for (_, w) in self.waiters.drain() {
                self.proposals_failed += 1;
                let _ = w.reply.send(Err(EtcdError::LeaderChanged));
            }
            for (_, batch) in self.reads_in_flight.drain() {
                fail_reads(batch.reads, EtcdError::LeaderChanged);
            }
        }
        if leader != raft::INVALID_ID {
            for p in std::mem::take(&mut self.parked) {
                let data = p.request.encode_to_vec();
                let conf = conf_change_for(&p.request, &data);
                self.input(Deferred::Propose {
                    id: p.request.id,
                    data,
                    conf,
                    reply: p.reply,
                    deadline: p.deadline,
                });
            }
            self.issue_read_index();
        }
    }

    fn hand_over(&mut self, entries: Vec<Entry>, out: &mut Output) {
        if entries.is_empty() {
            return;
        }
        let mut batch = CommittedBatch {
            term: self.node.raft.term,
            ..Default::default()
        };
        for entry in &entries {
            if matches!(
                entry.get_entry_type(),
                EntryType::EntryConfChange | EntryType::EntryConfChangeV2
            ) {
                self.last_conf_entry = self.last_conf_entry.max(entry.get_index());
            }
            if let Ok(ctx) = <[u8; 8]>::try_from(entry.get_context()) {
                let id = u64::from_be_bytes(ctx);
                if let Some(w) = self.waiters.remove(&id) {
                    batch.waiters.push((id, w.reply));
                }
            }
        }
        batch.entries = entries;
        out.committed.push(batch);
    }

    /// Applies accepted conf changes to raft (only between Readys).
    fn apply_conf_changes(&mut self, out: &mut Output) {
        for (index, cc) in std::mem::take(&mut self.conf_changes) {
            match self.node.apply_conf_change(&cc) {
                Ok(cs) => {
                    tracing::info!(index, change = ?cc.get_change_type(), node = %format!("{:x}", cc.node_id), "configuration changed");
                    self.conf_history.push((index, cs.clone()));
                    out.conf_state = Some(cs);
                }
                Err(e) => tracing::error!(index, error = %e, "conf change refused by raft"),
            }
        }
    }

    fn release_reads(&mut self, states: Vec<raft::ReadState>, out: &mut Output) {
        let mut released = false;
        for state in states {
            if let Some(batch) = self.reads_in_flight.remove(&state.request_ctx) {
                released = true;
                out.reads.push(ReadBatch {
                    index: state.index,
                    reads: batch.reads,
                    term: self.node.raft.term,
                });
            }
        }
        if released && self.reads_in_flight.is_empty() {
            self.issue_read_index();
        }
    }

    fn on_snapshot_received(&mut self, number: u64, snap: &Snapshot) {
        let meta = snap.get_metadata();
        self.conf_history = vec![(meta.index, meta.get_conf_state().clone())];
        match SnapshotDescriptor::decode(snap.get_data()) {
            Ok(d) => self.pending_install = Some((number, d)),
            // The guard admits no snapshot without a descriptor, so this is
            // a local bug, not a peer's doing.
            Err(e) => crate::fatal(&format!(
                "snapshot {} carries no image descriptor: {e}",
                meta.index
            )),
        }
    }

    /// Raft asked its store for a snapshot it did not have (a member was
    /// added since the last image): ask the apply actor for an image, at
    /// most once per [`IMAGE_RETRY_TICKS`] while none arrives.
    fn ask_for_image(&mut self, out: &mut Output) {
        if !self.node.store().take_image_wanted() {
            return;
        }
        if self
            .image_asked
            .is_some_and(|at| self.now.saturating_sub(at) < IMAGE_RETRY_TICKS)
        {
            return;
        }
        self.image_asked = Some(self.now);
        out.want_image = true;
    }

    /// True while a snapshot received from the leader waits to be made
    /// durable before the apply actor installs it.
    pub fn snapshot_pending(&self) -> bool {
        self.pending_install.is_some()
    }

    /// The apply actor wrote a new image, or made its store durable at a
    /// snapshot record's index (a descriptor without hash): build the raft
    /// snapshot for it, with the descriptor as data, or no data for a
    /// record (the log store never sends a snapshot without data, and asks
    /// for an image instead).
    pub fn on_snapshot_taken(&mut self, d: SnapshotDescriptor, out: &mut Output) {
        if !d.sha256.is_empty() {
            self.image_asked = None;
        }
        let index = d.index;
        let term = match self.node.raft.raft_log.term(index) {
            Ok(t) => t,
            Err(e) => {
                // The log moved past this index already (a newer snapshot
                // was installed): the image is simply not used.
                tracing::warn!(index, error = %e, "snapshot image older than the log; not recorded");
                return;
            }
        };
        let conf = self
            .conf_history
            .iter()
            .rev()
            .find(|(i, _)| *i <= index)
            .map(|(_, cs)| cs.clone())
            .unwrap_or_else(|| self.node.store().conf_state());
        let mut snap = Snapshot::default();
        if !d.sha256.is_empty() {
            snap.set_data(d.encode_to_vec().into());
        }
        let meta = snap.mut_metadata();
        meta.index = index;
        meta.term = term;
        meta.set_conf_state(conf);
        let keep_from = self
            .conf_history
            .iter()
            .rposition(|(i, _)| *i <= index)
            .unwrap_or(0);
        self.conf_history.drain(..keep_from);
        let compact_to = index.saturating_sub(self.config.catch_up_entries).max(1);
        out.save_snapshot = Some((snap, compact_to));
    }

    /// Fails everything still waiting (shutdown).
    pub fn shutdown(&mut self) {
        for (_, w) in self.waiters.drain() {
            let _ = w.reply.send(Err(EtcdError::Stopped));
        }
        for p in self.parked.drain(..) {
            let _ = p.reply.send(Err(EtcdError::Stopped));
        }
        for input in self.deferred.drain(..).chain(self.conf_queue.drain(..)) {
            if let Deferred::Propose { reply, .. } = input {
                let _ = reply.send(Err(EtcdError::Stopped));
            }
        }
        for (_, batch) in self.reads_in_flight.drain() {
            fail_reads(batch.reads, EtcdError::Stopped);
        }
        let pending = std::mem::take(&mut self.pending_reads);
        fail_reads(
            pending.into_iter().map(|(r, _)| r).collect(),
            EtcdError::Stopped,
        );
    }

    pub fn raw(&self) -> &RawNode<S> {
        &self.node
    }

    /// Reports a peer unreachable (transport failures).
    pub fn report_unreachable(&mut self, id: u64) {
        self.input(Deferred::Unreachable(id));
    }

    /// Reports the outcome of sending a snapshot to `id`.
    pub fn report_snapshot(&mut self, id: u64, status: raft::SnapshotStatus) {
        self.input(Deferred::SnapshotStatus(id, status));
    }
}

/// The raft conf change that carries `request` (encoded as `data`), for a
/// membership change that alters raft's configuration; `None` for every
/// other request (a member update is a plain entry).
fn conf_change_for(request: &InternalRequest, data: &[u8]) -> Option<ConfChange> {
    use member_change::Kind;
    let Some(internal_request::Request::MemberChange(change)) = &request.request else {
        return None;
    };
    let change_type = match Kind::try_from(change.kind).ok()? {
        Kind::Add | Kind::Promote => ConfChangeType::AddNode,
        Kind::AddLearner => ConfChangeType::AddLearnerNode,
        Kind::Remove => ConfChangeType::RemoveNode,
        Kind::Update => return None,
    };
    let mut cc = ConfChange::default();
    cc.set_change_type(change_type);
    cc.node_id = change.member.as_ref().map_or(0, |m| m.id);
    cc.context = data.to_vec().into();
    Some(cc)
}

fn fail_reads(reads: Vec<PendingRead>, error: EtcdError) {
    for r in reads {
        let _ = r.reply.send(Err(error.clone()));
    }
}
