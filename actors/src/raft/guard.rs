//! Admission of peer messages: what raft-rs would act on blindly is checked
//! here first, so that no message from the network can end the process or
//! leave a durable state that a restart cannot read.
//!
//! raft-rs trusts its peers: a heartbeat whose commit index lies past the
//! log's end, or an append whose entries are not contiguous, panics inside
//! raft-rs (`commit_to`, `maybe_append`); a `MsgSnapshot` is persisted by
//! the Ready loop before anyone looks at its data, and a snapshot whose
//! image never arrived leaves a raft log that every restart fails to open.
//! Each message is checked, right before it is stepped (so against the log
//! as raft will see it), in this order:
//!
//! 1. It is addressed to this member, from another one, and is not one of
//!    raft-rs's local messages (`MsgHup`, `MsgBeat`, `MsgUnreachable`,
//!    `MsgSnapStatus`, `MsgCheckQuorum`): those never travel between peers.
//! 2. Its sender is in this member's configuration (when it knows one: a
//!    member joining with an empty log accepts its first leader).
//! 3. A `MsgHeartbeat` commits no further than this member's last index (the
//!    leader sends `min(match, commit)`, never more).
//! 4. A `MsgAppend` carries contiguous entries right after `index`, with
//!    terms that never decrease and never exceed the message's term.
//! 5. A non-rejecting `MsgAppendResponse` acknowledges no index past this
//!    member's log (a follower acknowledges only what it was sent).
//! 6. A `MsgSnapshot` carries a [`SnapshotDescriptor`] for the snapshot's own
//!    index, and that image is complete in the snapshot directory (the peer
//!    server writes and verifies it before handing the message to raft).
//!
//! A refused message is dropped, logged and counted in
//! `oxcd_peer_messages_refused_total{reason}`; raft goes on as if it had been
//! lost on the wire. This is a guard against buggy and stray peers, not a
//! defence against a malicious one: a forged message with a valid shape and
//! a higher term can still disturb a term or an election, and peer
//! authentication (mutual TLS on the peer port) is what keeps strangers out.

use proto::Message as _;
use proto::internal::SnapshotDescriptor;
use raft::RawNode;
use raft::eraftpb::{Message, MessageType};
use storage::raft_log::LogStore;
use storage::snap::SnapDir;

/// Why a peer message was refused; the metric's `reason` label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Addressed to another member, or claiming to come from this one.
    Misaddressed,
    /// A message raft-rs generates for itself.
    LocalOnly,
    /// From a member outside this member's configuration.
    UnknownSender,
    /// A heartbeat committing past this member's log.
    CommitBeyondLog,
    /// An append whose entries do not follow `index` one by one.
    MalformedAppend,
    /// An append response acknowledging entries this member does not have.
    AckBeyondLog,
    /// A snapshot without a valid image descriptor, or whose image is not here.
    BadSnapshot,
    /// A snapshot on the stream (snapshots travel only on the `Snapshot` RPC).
    SnapshotOnStream,
    /// Bytes that are not a raft message.
    Undecodable,
}

impl Refusal {
    /// The metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::Misaddressed => "misaddressed",
            Refusal::LocalOnly => "local_only",
            Refusal::UnknownSender => "unknown_sender",
            Refusal::CommitBeyondLog => "commit_beyond_log",
            Refusal::MalformedAppend => "malformed_append",
            Refusal::AckBeyondLog => "ack_beyond_log",
            Refusal::BadSnapshot => "bad_snapshot",
            Refusal::SnapshotOnStream => "snapshot_on_stream",
            Refusal::Undecodable => "undecodable",
        }
    }
}

/// Counts refused peer messages by reason. Cheap to clone.
#[derive(Clone)]
pub struct RefusedMessages(prometheus::IntCounterVec);

impl RefusedMessages {
    /// Creates the counter and registers it in `registry`.
    pub fn new(registry: &prometheus::Registry) -> prometheus::Result<Self> {
        let this = Self::unregistered();
        registry.register(Box::new(this.0.clone()))?;
        Ok(this)
    }

    /// A counter that is not exported (tests).
    pub fn unregistered() -> Self {
        let counter = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "oxcd_peer_messages_refused_total",
                "Peer messages refused before reaching raft, by reason.",
            ),
            &["reason"],
        )
        .expect("static metric definition");
        Self(counter)
    }

    /// Logs and counts one refusal.
    pub fn refuse(&self, refusal: &Refusal, message: &Message) {
        tracing::warn!(
            reason = refusal.reason(),
            msg_type = ?message.get_msg_type(),
            from = %format!("{:x}", message.from),
            to = %format!("{:x}", message.to),
            term = message.term,
            index = message.index,
            commit = message.commit,
            "refused a peer message"
        );
        self.inc(refusal);
    }

    /// Counts one refusal that has no decoded message to log (the caller
    /// logs it).
    pub fn inc(&self, refusal: &Refusal) {
        self.0.with_label_values(&[refusal.reason()]).inc();
    }

    /// How many messages were refused for `reason` (tests).
    pub fn count(&self, refusal: &Refusal) -> u64 {
        self.0.with_label_values(&[refusal.reason()]).get()
    }
}

/// The checks of the module docs, for one member.
#[derive(Clone)]
pub struct PeerGuard {
    /// Where received snapshot images are; `None` when the member has no
    /// snapshot directory (simulations), which refuses every snapshot image
    /// check.
    images: Option<SnapDir>,
    refused: RefusedMessages,
}

impl PeerGuard {
    pub fn new(images: Option<SnapDir>, refused: RefusedMessages) -> Self {
        Self { images, refused }
    }

    /// The refusal counter.
    pub fn refused(&self) -> &RefusedMessages {
        &self.refused
    }

    /// Checks `m` against `node` as it is now; counts and logs a refusal.
    pub fn admit<S: LogStore>(&self, node: &RawNode<S>, m: &Message) -> bool {
        match check(node, m, self.images.as_ref()) {
            Ok(()) => true,
            Err(refusal) => {
                self.refused.refuse(&refusal, m);
                false
            }
        }
    }
}

/// The checks themselves (steps 1-6 of the module docs).
pub fn check<S: LogStore>(
    node: &RawNode<S>,
    m: &Message,
    images: Option<&SnapDir>,
) -> Result<(), Refusal> {
    let local = node.raft.id;
    if m.to != local || m.from == local || m.from == 0 {
        return Err(Refusal::Misaddressed);
    }
    let kind = m.get_msg_type();
    if matches!(
        kind,
        MessageType::MsgHup
            | MessageType::MsgBeat
            | MessageType::MsgUnreachable
            | MessageType::MsgSnapStatus
            | MessageType::MsgCheckQuorum
    ) {
        return Err(Refusal::LocalOnly);
    }
    let prs = node.raft.prs();
    if prs.iter().len() > 0 && prs.get(m.from).is_none() {
        return Err(Refusal::UnknownSender);
    }
    let last_index = node.raft.raft_log.last_index();
    match kind {
        MessageType::MsgHeartbeat if m.commit > last_index => Err(Refusal::CommitBeyondLog),
        MessageType::MsgAppend => check_append(m),
        MessageType::MsgAppendResponse if !m.reject && m.index > last_index => {
            Err(Refusal::AckBeyondLog)
        }
        MessageType::MsgSnapshot => check_snapshot(m, images),
        _ => Ok(()),
    }
}

fn check_append(m: &Message) -> Result<(), Refusal> {
    let mut previous_term = 0;
    for (i, entry) in m.get_entries().iter().enumerate() {
        let contiguous = m.index.checked_add(1 + i as u64) == Some(entry.index);
        if !contiguous || entry.term < previous_term || entry.term > m.term {
            return Err(Refusal::MalformedAppend);
        }
        previous_term = entry.term;
    }
    Ok(())
}

fn check_snapshot(m: &Message, images: Option<&SnapDir>) -> Result<(), Refusal> {
    let snapshot = m.get_snapshot();
    let index = snapshot.get_metadata().index;
    let descriptor =
        SnapshotDescriptor::decode(snapshot.get_data()).map_err(|_| Refusal::BadSnapshot)?;
    let present = images.is_some_and(|dir| dir.has(&descriptor));
    if index == 0 || descriptor.index != index || !present {
        return Err(Refusal::BadSnapshot);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::panic::{AssertUnwindSafe, catch_unwind};

    use raft::eraftpb::{ConfState, Entry, Snapshot};
    use storage::raft_log::MemLogStore;

    use super::*;
    use crate::raft::logger::raft_logger;

    const LOCAL: u64 = 1;
    const LEADER: u64 = 2;
    const TERM: u64 = 3;

    /// Member 1 of {1, 2, 3}, a follower of 2 in term 3, with entries 1..=5
    /// of which 3 are committed.
    fn follower() -> RawNode<MemLogStore> {
        let store = MemLogStore::new();
        store
            .initialize(&ConfState {
                voters: vec![1, 2, 3],
                ..Default::default()
            })
            .unwrap();
        let config = raft::Config {
            id: LOCAL,
            election_tick: 10,
            heartbeat_tick: 1,
            ..Default::default()
        };
        let mut node = RawNode::new(&config, store, &raft_logger()).unwrap();
        let mut append = message(MessageType::MsgAppend, 0);
        append.log_term = 0;
        append.commit = 3;
        append.set_entries(entries(1, 5).into());
        node.step(append).unwrap();
        assert_eq!(node.raft.raft_log.last_index(), 5);
        assert_eq!(node.raft.raft_log.committed, 3);
        node
    }

    fn entries(from: u64, to: u64) -> Vec<Entry> {
        (from..=to)
            .map(|index| Entry {
                index,
                term: TERM,
                ..Default::default()
            })
            .collect()
    }

    fn message(kind: MessageType, index: u64) -> Message {
        let mut m = Message::default();
        m.set_msg_type(kind);
        m.from = LEADER;
        m.to = LOCAL;
        m.term = TERM;
        m.index = index;
        m.log_term = TERM;
        m
    }

    fn snapshot_message(index: u64, data: Vec<u8>) -> Message {
        let mut snap = Snapshot::default();
        snap.set_data(data.into());
        snap.mut_metadata().index = index;
        snap.mut_metadata().term = TERM;
        snap.mut_metadata().set_conf_state(ConfState {
            voters: vec![1, 2, 3],
            ..Default::default()
        });
        let mut m = message(MessageType::MsgSnapshot, 0);
        m.set_snapshot(snap);
        m
    }

    fn images() -> (tempfile::TempDir, SnapDir) {
        let dir = tempfile::tempdir().unwrap();
        let snap_dir = SnapDir::open(dir.path()).unwrap();
        (dir, snap_dir)
    }

    #[test]
    fn what_a_leader_sends_is_admitted() {
        let node = follower();
        let mut append = message(MessageType::MsgAppend, 5);
        append.commit = 5;
        append.set_entries(entries(6, 8).into());
        assert_eq!(check(&node, &append, None), Ok(()));
        let mut heartbeat = message(MessageType::MsgHeartbeat, 0);
        heartbeat.commit = 5;
        assert_eq!(check(&node, &heartbeat, None), Ok(()));
        let vote = message(MessageType::MsgRequestPreVote, 5);
        assert_eq!(check(&node, &vote, None), Ok(()));
        let mut rejected = message(MessageType::MsgAppendResponse, 1_000);
        rejected.reject = true;
        assert_eq!(check(&node, &rejected, None), Ok(()));
    }

    #[test]
    fn misaddressed_local_and_unknown_messages_are_refused() {
        let node = follower();
        let mut to_other = message(MessageType::MsgHeartbeat, 0);
        to_other.to = 3;
        assert_eq!(check(&node, &to_other, None), Err(Refusal::Misaddressed));
        let mut from_self = message(MessageType::MsgHeartbeat, 0);
        from_self.from = LOCAL;
        assert_eq!(check(&node, &from_self, None), Err(Refusal::Misaddressed));
        for kind in [
            MessageType::MsgHup,
            MessageType::MsgBeat,
            MessageType::MsgUnreachable,
            MessageType::MsgSnapStatus,
            MessageType::MsgCheckQuorum,
        ] {
            assert_eq!(
                check(&node, &message(kind, 0), None),
                Err(Refusal::LocalOnly)
            );
        }
        let mut stranger = message(MessageType::MsgHeartbeat, 0);
        stranger.from = 9;
        assert_eq!(check(&node, &stranger, None), Err(Refusal::UnknownSender));
    }

    #[test]
    fn a_heartbeat_past_the_log_is_refused() {
        let node = follower();
        let mut heartbeat = message(MessageType::MsgHeartbeat, 0);
        heartbeat.commit = 6;
        assert_eq!(
            check(&node, &heartbeat, None),
            Err(Refusal::CommitBeyondLog)
        );
    }

    #[test]
    fn appends_must_be_contiguous_and_term_ordered() {
        let node = follower();
        let mut gap = message(MessageType::MsgAppend, 5);
        let mut ents = entries(6, 7);
        ents.push(Entry {
            index: 20,
            term: TERM,
            ..Default::default()
        });
        gap.set_entries(ents.into());
        assert_eq!(check(&node, &gap, None), Err(Refusal::MalformedAppend));
        let mut future_term = message(MessageType::MsgAppend, 5);
        let mut ents = entries(6, 6);
        ents[0].term = TERM + 1;
        future_term.set_entries(ents.into());
        assert_eq!(
            check(&node, &future_term, None),
            Err(Refusal::MalformedAppend)
        );
        let mut backwards = message(MessageType::MsgAppend, 5);
        let mut ents = entries(6, 7);
        ents[1].term = TERM - 1;
        backwards.set_entries(ents.into());
        assert_eq!(
            check(&node, &backwards, None),
            Err(Refusal::MalformedAppend)
        );
    }

    #[test]
    fn an_ack_past_the_log_is_refused() {
        let node = follower();
        let ack = message(MessageType::MsgAppendResponse, 6);
        assert_eq!(check(&node, &ack, None), Err(Refusal::AckBeyondLog));
    }

    #[test]
    fn a_snapshot_needs_a_descriptor_for_its_index_and_the_image() {
        let node = follower();
        let (_tmp, dir) = images();
        let garbage = snapshot_message(10, b"not a descriptor \xff\xff".to_vec());
        assert_eq!(
            check(&node, &garbage, Some(&dir)),
            Err(Refusal::BadSnapshot)
        );
        let d = dir
            .create(10, |path| {
                std::fs::write(path, b"image").map_err(storage::StorageError::from)
            })
            .unwrap();
        let mut other_index = d.clone();
        other_index.index = 9;
        let mismatched = snapshot_message(10, other_index.encode_to_vec());
        assert_eq!(
            check(&node, &mismatched, Some(&dir)),
            Err(Refusal::BadSnapshot)
        );
        let mut absent = d.clone();
        absent.index = 11;
        let no_image = snapshot_message(11, absent.encode_to_vec());
        assert_eq!(
            check(&node, &no_image, Some(&dir)),
            Err(Refusal::BadSnapshot)
        );
        let good = snapshot_message(10, d.encode_to_vec());
        assert_eq!(check(&node, &good, Some(&dir)), Ok(()));
        assert_eq!(check(&node, &good, None), Err(Refusal::BadSnapshot));
    }

    #[test]
    fn an_append_far_past_the_log_is_admitted_and_rejected_by_raft() {
        let mut node = follower();
        let mut far = message(MessageType::MsgAppend, 1_000_000);
        far.commit = 1_000_002;
        far.set_entries(entries(1_000_001, 1_000_002).into());
        assert_eq!(check(&node, &far, None), Ok(()));
        node.step(far).unwrap();
        assert_eq!(node.raft.raft_log.last_index(), 5);
        assert_eq!(node.raft.raft_log.committed, 3);
        let reply = node.raft.msgs.last().expect("a reply");
        assert_eq!(reply.get_msg_type(), MessageType::MsgAppendResponse);
        assert!(reply.reject, "the append is rejected: {reply:?}");
    }

    /// Why the guard exists: raft-rs panics on a heartbeat past the log (a
    /// panic ends an oxcd member), and takes an append with a gap into its
    /// log, where the entries no longer sit at their own indexes.
    #[test]
    fn raft_rs_breaks_on_what_the_guard_refuses() {
        let mut heartbeat = message(MessageType::MsgHeartbeat, 0);
        heartbeat.commit = 1_000;
        let node = follower();
        assert!(check(&node, &heartbeat, None).is_err());
        let mut node = AssertUnwindSafe(node);
        let stepped = catch_unwind(move || node.step(heartbeat));
        assert!(
            stepped.is_err(),
            "raft-rs took the heartbeat without panicking"
        );

        let mut gap = message(MessageType::MsgAppend, 5);
        let mut ents = entries(6, 6);
        ents.push(Entry {
            index: 20,
            term: TERM,
            ..Default::default()
        });
        gap.set_entries(ents.into());
        let mut node = follower();
        assert!(check(&node, &gap, None).is_err());
        node.step(gap).unwrap();
        let last = node
            .raft
            .raft_log
            .unstable_entries()
            .last()
            .map(|e| e.index);
        assert_eq!(node.raft.raft_log.last_index(), 7);
        assert_eq!(last, Some(20), "entry 20 now sits at index 7");
    }

    #[test]
    fn refusals_are_counted_by_reason() {
        let node = follower();
        let guard = PeerGuard::new(None, RefusedMessages::unregistered());
        let mut heartbeat = message(MessageType::MsgHeartbeat, 0);
        heartbeat.commit = 6;
        assert!(!guard.admit(&node, &heartbeat));
        assert!(!guard.admit(&node, &heartbeat));
        heartbeat.commit = 5;
        assert!(guard.admit(&node, &heartbeat));
        assert_eq!(guard.refused().count(&Refusal::CommitBeyondLog), 2);
        assert_eq!(guard.refused().count(&Refusal::Misaddressed), 0);
    }
}
