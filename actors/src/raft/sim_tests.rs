//! Deterministic tests of [`RaftCore`] without actix: three cores over
//! in-memory log stores, messages routed by hand, persistence completed at
//! once, committed entries "applied" by answering their waiters.

use std::collections::VecDeque;

use proto::internal::{InternalRequest, internal_request};
use raft::eraftpb::{ConfState, Message};
use raft::{RawNode, StateRole};
use storage::EtcdError;
use storage::mvcc::ApplyResponse;
use storage::raft_log::{LogStore, MemLogStore};
use tokio::sync::oneshot;

use super::core::{CoreConfig, Output, RaftCore};
use super::guard::{PeerGuard, RefusedMessages};
use super::ids::IdGen;
use super::logger::raft_logger;
use crate::messages::{PendingRead, ReadRequest, ReadResponse};

/// Ticks a request may wait before `request timed out` (five election
/// timeouts).
const REQUEST_TIMEOUT_TICKS: u64 = 50;

struct Sim {
    nodes: Vec<(u64, RaftCore<MemLogStore>, MemLogStore)>,
    /// Messages in flight: (to, message).
    wire: VecDeque<Message>,
    /// Members that are cut off (drop everything to and from them).
    isolated: Vec<u64>,
    applied: Vec<Vec<u64>>,
}

fn put(key: &str) -> InternalRequest {
    InternalRequest {
        id: 0,
        request: Some(internal_request::Request::Put(
            proto::etcdserverpb::PutRequest {
                key: key.as_bytes().to_vec(),
                value: b"v".to_vec(),
                ..Default::default()
            },
        )),
        ..Default::default()
    }
}

impl Sim {
    fn new(n: u64) -> Self {
        let voters: Vec<u64> = (1..=n).collect();
        let nodes = voters
            .iter()
            .map(|&id| {
                let store = MemLogStore::new();
                store
                    .initialize(&ConfState {
                        voters: voters.clone(),
                        ..Default::default()
                    })
                    .unwrap();
                let config = raft::Config {
                    id,
                    election_tick: 10,
                    heartbeat_tick: 1,
                    check_quorum: true,
                    pre_vote: true,
                    ..Default::default()
                };
                let node = RawNode::new(&config, store.clone(), &raft_logger()).unwrap();
                let core = RaftCore::new(
                    node,
                    CoreConfig {
                        id,
                        max_request_bytes: 1 << 20,
                        request_timeout_ticks: REQUEST_TIMEOUT_TICKS,
                        max_apply_lag: 5_000,
                        read_retry_ticks: 5,
                        catch_up_entries: 100,
                    },
                    IdGen::new(id, 1_000 * id),
                    0,
                    PeerGuard::new(None, RefusedMessages::unregistered()),
                );
                (id, core, store)
            })
            .collect();
        Self {
            nodes,
            wire: VecDeque::new(),
            isolated: Vec::new(),
            applied: vec![Vec::new(); n as usize],
        }
    }

    /// Dispatches what node `i` produced: writes persist at once, messages
    /// go on the wire, committed entries are applied and their waiters
    /// answered.
    fn dispatch(&mut self, i: usize, mut out: Output) {
        loop {
            self.wire.extend(out.messages.drain(..));
            for batch in out.reads.drain(..) {
                // The read index never runs ahead of what this member has
                // committed; answer with an empty range.
                assert!(batch.index <= self.nodes[i].1.raw().raft.raft_log.committed);
                for r in batch.reads {
                    let _ = r.reply.send(Ok(ReadResponse::Range(Default::default())));
                }
            }
            for batch in out.committed.drain(..) {
                for e in &batch.entries {
                    if !e.get_data().is_empty() {
                        self.applied[i].push(e.get_index());
                    }
                }
                for (_, reply) in batch.waiters {
                    let _ = reply.send(Ok(ApplyResponse::Empty));
                }
            }
            let Some((number, write)) = out.write.take() else {
                break;
            };
            let (_, core, store) = &mut self.nodes[i];
            store.write(&write).unwrap();
            let mut next = Output::default();
            core.on_persisted(number, &mut next);
            core.poll(&mut next);
            out = next;
        }
    }

    fn poll_all(&mut self) {
        for i in 0..self.nodes.len() {
            let mut out = Output::default();
            self.nodes[i].1.poll(&mut out);
            self.dispatch(i, out);
        }
    }

    fn deliver(&mut self) {
        for _ in 0..10_000 {
            let Some(m) = self.wire.pop_front() else {
                return;
            };
            if self.isolated.contains(&m.to) || self.isolated.contains(&m.from) {
                continue;
            }
            let i = self
                .nodes
                .iter()
                .position(|(id, _, _)| *id == m.to)
                .unwrap();
            self.nodes[i].1.step(m);
            let mut out = Output::default();
            self.nodes[i].1.poll(&mut out);
            self.dispatch(i, out);
        }
        panic!("messages never settled");
    }

    fn tick(&mut self) {
        for i in 0..self.nodes.len() {
            self.nodes[i].1.tick();
        }
        self.poll_all();
        self.deliver();
    }

    fn leaders(&self) -> Vec<u64> {
        self.nodes
            .iter()
            .filter(|(id, core, _)| {
                !self.isolated.contains(id) && core.raw().raft.state == StateRole::Leader
            })
            .map(|(id, _, _)| *id)
            .collect()
    }

    fn run_until(&mut self, max_ticks: usize, mut done: impl FnMut(&Self) -> bool) -> usize {
        for t in 0..max_ticks {
            if done(self) {
                return t;
            }
            self.tick();
        }
        panic!("condition not reached in {max_ticks} ticks");
    }
}

#[test]
fn three_members_elect_one_leader_and_commit_through_a_follower() {
    let mut sim = Sim::new(3);
    sim.run_until(100, |s| s.leaders().len() == 1);
    let leader = sim.leaders()[0];
    let follower = sim
        .nodes
        .iter()
        .position(|(id, _, _)| *id != leader)
        .unwrap();
    let (tx, mut rx) = oneshot::channel();
    sim.nodes[follower].1.propose(put("a"), tx);
    sim.poll_all();
    sim.deliver();
    sim.run_until(20, |_| {
        matches!(rx.try_recv(), Ok(Ok(ApplyResponse::Empty)))
    });
    // Every member applied the same entries in the same order.
    sim.run_until(20, |s| {
        s.applied
            .iter()
            .all(|a| a == &s.applied[0] && !a.is_empty())
    });
}

#[test]
fn a_deposed_leaders_proposals_fail_with_a_retryable_error() {
    let mut sim = Sim::new(3);
    sim.run_until(100, |s| s.leaders().len() == 1);
    let old = sim.leaders()[0];
    let i = sim.nodes.iter().position(|(id, _, _)| *id == old).unwrap();
    sim.isolated.push(old);
    let (tx, mut rx) = oneshot::channel();
    sim.nodes[i].1.propose(put("lost"), tx);
    sim.poll_all();
    sim.deliver();
    // The isolated leader steps down (check quorum, after an election
    // timeout) and fails its in-flight proposal with the retryable
    // `leader changed` at once, long before the request timeout could
    // answer it with `request timed out`.
    let mut got = None;
    let ticks = sim.run_until(REQUEST_TIMEOUT_TICKS as usize, |_| match rx.try_recv() {
        Ok(r) => {
            got = Some(r);
            true
        }
        Err(_) => false,
    });
    assert!(
        matches!(got, Some(Err(EtcdError::LeaderChanged))),
        "{got:?} after {ticks} ticks"
    );
    assert!(
        (ticks as u64) < REQUEST_TIMEOUT_TICKS / 2,
        "answered after {ticks} ticks: by the timeout, not the step-down"
    );
    // The others elect a new leader meanwhile.
    sim.run_until(200, |s| s.leaders().len() == 1 && s.leaders()[0] != old);
}

#[test]
fn proposals_without_a_leader_time_out() {
    let mut sim = Sim::new(3);
    sim.run_until(100, |s| s.leaders().len() == 1);
    let lonely = sim
        .nodes
        .iter()
        .position(|(id, _, _)| !sim.leaders().contains(id))
        .unwrap();
    let lonely_id = sim.nodes[lonely].0;
    // Cut off everyone but the lonely member: it never hears of a leader
    // again.
    sim.isolated = sim
        .nodes
        .iter()
        .map(|(id, _, _)| *id)
        .filter(|id| *id != lonely_id)
        .collect();
    sim.run_until(100, |s| s.nodes[lonely].1.status().leader == 0);
    let (tx, mut rx) = oneshot::channel();
    sim.nodes[lonely].1.propose(put("x"), tx);
    let mut got = None;
    sim.run_until(100, |_| match rx.try_recv() {
        Ok(r) => {
            got = Some(r);
            true
        }
        Err(_) => false,
    });
    assert!(matches!(got, Some(Err(EtcdError::Timeout))), "{got:?}");
}

#[test]
fn linearizable_reads_through_a_follower_and_without_quorum() {
    let mut sim = Sim::new(3);
    sim.run_until(100, |s| s.leaders().len() == 1);
    let leader = sim.leaders()[0];
    let f = sim
        .nodes
        .iter()
        .position(|(id, _, _)| *id != leader)
        .unwrap();
    let read = |sim: &mut Sim, i: usize| {
        let (reply, rx) = oneshot::channel();
        let request = ReadRequest::Range(Default::default());
        sim.nodes[i].1.read_index(PendingRead {
            request,
            auth: Default::default(),
            reply,
        });
        sim.poll_all();
        sim.deliver();
        rx
    };
    let mut rx = read(&mut sim, f);
    sim.run_until(20, |_| matches!(rx.try_recv(), Ok(Ok(_))));

    // Cut the follower off: its read gets no read index, and fails with a
    // timeout in bounded time instead of hanging.
    let f_id = sim.nodes[f].0;
    sim.isolated.push(f_id);
    let mut rx = read(&mut sim, f);
    let mut got = None;
    sim.run_until(120, |_| match rx.try_recv() {
        Ok(r) => {
            got = Some(r);
            true
        }
        Err(_) => false,
    });
    assert!(
        matches!(
            got,
            Some(Err(EtcdError::Timeout | EtcdError::LeaderChanged))
        ),
        "{got:?}"
    );
}

#[test]
fn move_leader_hands_over_and_refuses_bad_requests() {
    let mut sim = Sim::new(3);
    sim.run_until(100, |s| s.leaders().len() == 1);
    let leader = sim.leaders()[0];
    let li = sim
        .nodes
        .iter()
        .position(|(id, _, _)| *id == leader)
        .unwrap();
    let fi = sim
        .nodes
        .iter()
        .position(|(id, _, _)| *id != leader)
        .unwrap();
    let target = sim.nodes[fi].0;

    let (tx, mut rx) = oneshot::channel();
    sim.nodes[fi].1.transfer_leader(leader, tx);
    assert!(matches!(rx.try_recv(), Ok(Err(EtcdError::NotLeader))));
    let (tx, mut rx) = oneshot::channel();
    sim.nodes[li].1.transfer_leader(99, tx);
    assert!(matches!(
        rx.try_recv(),
        Ok(Err(EtcdError::BadLeaderTransferee))
    ));
    let (tx, mut rx) = oneshot::channel();
    sim.nodes[li].1.transfer_leader(leader, tx);
    assert!(matches!(rx.try_recv(), Ok(Ok(()))));

    let (tx, mut rx) = oneshot::channel();
    sim.nodes[li].1.transfer_leader(target, tx);
    sim.poll_all();
    sim.deliver();
    sim.run_until(50, |s| s.leaders() == vec![target]);
    assert!(matches!(rx.try_recv(), Ok(Ok(()))));
}
