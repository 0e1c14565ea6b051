//! A real single-node `raft::RawNode` over the LMDB log store, restarted.
//!
//! 1. Bootstrap a fresh store with voters `[1]`, build a `RawNode` (pre_vote
//!    and check_quorum on, as etcd runs), campaign, drive the Ready loop
//!    until it leads.
//! 2. Propose 100 entries, each through the Ready loop in raft-rs's order:
//!    apply committed entries, persist snapshot + entries + hard state in one
//!    `write`, advance, persist the LightReady commit index before applying
//!    its entries, `advance_apply`.
//! 3. Drop the node and every store clone, reopen the directory, build a new
//!    `RawNode` with `Config.applied` = last applied: commit, last index and
//!    entries are what was persisted, nothing is delivered twice, and the
//!    node can lead and commit again.

use std::time::{Duration, Instant};

use raft::eraftpb::{ConfState, EntryType};
use raft::{Config, GetEntriesContext, RawNode, StateRole, Storage};

use super::{LmdbLogStore, LogStore, LogWrite};

const MAP_SIZE: usize = 64 << 20;
const PROPOSALS: u64 = 100;

/// What the "state machine" saw, and what persisting cost.
#[derive(Default)]
struct Driver {
    applied: u64,
    applied_data: Vec<Vec<u8>>,
    writes: u32,
    write_time: Duration,
}

impl Driver {
    fn apply(&mut self, entries: Vec<raft::eraftpb::Entry>) {
        for e in entries {
            assert_eq!(
                e.index,
                self.applied + 1,
                "entries are applied once, in order"
            );
            self.applied = e.index;
            if e.get_entry_type() == EntryType::EntryNormal && !e.data.is_empty() {
                self.applied_data.push(e.data.to_vec());
            }
        }
    }

    fn persist(&mut self, store: &LmdbLogStore, write: &LogWrite) {
        if write.is_empty() {
            return;
        }
        let started = Instant::now();
        store.write(write).expect("persist Ready");
        self.write_time += started.elapsed();
        self.writes += 1;
    }

    /// Handles one Ready; false when there was none.
    fn handle_ready(&mut self, node: &mut RawNode<LmdbLogStore>, store: &LmdbLogStore) -> bool {
        if !node.has_ready() {
            return false;
        }
        let mut rd = node.ready();
        assert!(
            rd.messages().is_empty(),
            "a single node has no peer to send to"
        );
        let snapshot = (!rd.snapshot().is_empty()).then(|| rd.snapshot().clone());
        self.apply(rd.take_committed_entries());
        let write = LogWrite {
            snapshot,
            entries: rd.take_entries(),
            hard_state: rd.hs().cloned(),
            commit: None,
        };
        self.persist(store, &write);
        assert!(rd.take_persisted_messages().is_empty());
        let mut light = node.advance(rd);
        if let Some(commit) = light.commit_index() {
            self.persist(
                store,
                &LogWrite {
                    commit: Some(commit),
                    ..Default::default()
                },
            );
        }
        assert!(light.take_messages().is_empty());
        self.apply(light.take_committed_entries());
        node.advance_apply();
        true
    }

    /// Runs the Ready loop until raft has nothing more to do (bounded).
    fn settle(&mut self, node: &mut RawNode<LmdbLogStore>, store: &LmdbLogStore) {
        for _ in 0..16 {
            if !self.handle_ready(node, store) {
                return;
            }
        }
        panic!("raft still has a Ready after 16 rounds");
    }
}

fn config(applied: u64) -> Config {
    let config = Config {
        id: 1,
        election_tick: 10,
        heartbeat_tick: 1,
        pre_vote: true,
        check_quorum: true,
        applied,
        max_size_per_msg: 1 << 20,
        max_inflight_msgs: 256,
        ..Default::default()
    };
    config.validate().expect("valid raft config");
    config
}

fn logger() -> slog::Logger {
    slog::Logger::root(slog::Discard, slog::o!())
}

#[test]
fn single_node_raft_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("raft");

    // 1. Bootstrap and elect.
    let started = Instant::now();
    let store = LmdbLogStore::open(&path, MAP_SIZE).unwrap();
    assert!(store.is_empty());
    store
        .initialize(&ConfState {
            voters: vec![1],
            ..Default::default()
        })
        .unwrap();
    let mut node = RawNode::new(&config(0), store.clone(), &logger()).unwrap();
    let opened = started.elapsed();
    let mut driver = Driver::default();
    let started = Instant::now();
    node.campaign().unwrap();
    driver.settle(&mut node, &store);
    assert_eq!(node.raft.state, StateRole::Leader);
    let elected = started.elapsed();
    let first_term = node.raft.term;

    // 2. 100 proposals, each through the Ready loop.
    let started = Instant::now();
    let writes_before = driver.writes;
    for i in 0..PROPOSALS {
        node.propose(vec![], format!("put k{i}").into_bytes())
            .unwrap();
        driver.settle(&mut node, &store);
    }
    let proposed = started.elapsed();
    let proposal_writes = driver.writes - writes_before;
    assert_eq!(driver.applied_data.len() as u64, PROPOSALS);
    let last = PROPOSALS + 1; // the leader's empty entry, then the proposals
    assert_eq!(driver.applied, last);
    assert_eq!(store.last_index().unwrap(), last);
    assert_eq!(store.hard_state().commit, last);
    assert_eq!(store.hard_state().term, first_term);
    let before = store
        .entries(1, last + 1, None, GetEntriesContext::empty(false))
        .unwrap();

    // 3. Drop everything, reopen, restart raft from the applied index.
    drop(node);
    drop(store);
    let started = Instant::now();
    let store = LmdbLogStore::open(&path, MAP_SIZE).unwrap();
    let reopened = started.elapsed();
    assert!(!store.is_empty());
    let state = store.initial_state().unwrap();
    assert_eq!(state.hard_state.commit, last);
    assert_eq!(state.hard_state.term, first_term);
    assert_eq!(state.hard_state.vote, 1);
    assert_eq!(state.conf_state.voters, vec![1]);
    assert_eq!(
        store
            .entries(1, last + 1, None, GetEntriesContext::empty(false))
            .unwrap(),
        before
    );
    let data: Vec<Vec<u8>> = before
        .iter()
        .filter(|e| !e.data.is_empty())
        .map(|e| e.data.to_vec())
        .collect();
    assert_eq!(data, driver.applied_data);

    let started = Instant::now();
    let mut node = RawNode::new(&config(driver.applied), store.clone(), &logger()).unwrap();
    assert_eq!(node.raft.raft_log.committed, last);
    assert_eq!(node.raft.raft_log.applied(), last);
    assert_eq!(node.raft.raft_log.last_index(), last);
    // Nothing is delivered again (Driver::apply asserts the order).
    driver.settle(&mut node, &store);
    assert_eq!(driver.applied, last);
    node.campaign().unwrap();
    driver.settle(&mut node, &store);
    assert_eq!(node.raft.state, StateRole::Leader);
    assert!(node.raft.term > first_term);
    node.propose(vec![], b"after restart".to_vec()).unwrap();
    driver.settle(&mut node, &store);
    let restarted = started.elapsed();
    assert_eq!(driver.applied, last + 2);
    assert_eq!(driver.applied_data.last().unwrap(), b"after restart");
    assert_eq!(store.hard_state().commit, last + 2);

    println!(
        "single-node raft on LMDB: open+bootstrap {opened:?}, election {elected:?}, \
         {PROPOSALS} proposals {proposed:?} ({:?}/proposal, {proposal_writes} fsynced writes), \
         all writes {} in {:?} ({:?}/write), reopen {reopened:?}, restart+elect+propose {restarted:?}",
        proposed / PROPOSALS as u32,
        driver.writes,
        driver.write_time,
        driver.write_time / driver.writes.max(1),
    );
}
