//! Conformance suite: one set of checks, run against both log stores.
//!
//! 1. A [`Harness`] opens a fresh store and reopens one (LMDB: drop every
//!    clone, open the same directory again; memory: the same store, there is
//!    no disk to lose).
//! 2. Each check is a generic function over the harness; `conformance!`
//!    instantiates it once per store (`lmdb_store::*`, `mem_store::*`).
//! 3. A seeded random differential run drives both stores with the same
//!    operations and compares everything observable after each one.

use std::path::PathBuf;
use std::sync::Barrier;
use std::sync::atomic::{AtomicBool, Ordering};

use raft::eraftpb::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use raft::util::limit_size;
use raft::{GetEntriesContext, Storage};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tempfile::TempDir;

use super::{LmdbLogStore, LogStore, LogWrite, MemLogStore};
use crate::StorageError;

const MAP_SIZE: usize = 64 << 20;

pub(super) trait Harness {
    type Store: LogStore;
    /// A fresh, empty store.
    fn fresh(&mut self) -> Self::Store;
    /// Closes `store` (every clone must be dropped by then) and opens it again.
    fn reopen(&mut self, store: Self::Store) -> Self::Store;
}

pub(super) struct LmdbHarness {
    root: TempDir,
    opened: usize,
}

impl LmdbHarness {
    pub(super) fn new() -> Self {
        Self {
            root: tempfile::tempdir().expect("temp dir"),
            opened: 0,
        }
    }
}

impl Harness for LmdbHarness {
    type Store = LmdbLogStore;

    fn fresh(&mut self) -> LmdbLogStore {
        self.opened += 1;
        let dir = self.root.path().join(format!("log-{}", self.opened));
        LmdbLogStore::open(&dir, MAP_SIZE).expect("open fresh LMDB log")
    }

    fn reopen(&mut self, store: LmdbLogStore) -> LmdbLogStore {
        let dir: PathBuf = store.path().to_owned();
        drop(store);
        LmdbLogStore::open(&dir, MAP_SIZE).expect("reopen LMDB log")
    }
}

#[derive(Default)]
pub(super) struct MemHarness;

impl Harness for MemHarness {
    type Store = MemLogStore;

    fn fresh(&mut self) -> MemLogStore {
        MemLogStore::new()
    }

    fn reopen(&mut self, store: MemLogStore) -> MemLogStore {
        store
    }
}

macro_rules! conformance {
    ($($check:ident),* $(,)?) => {
        mod lmdb_store {
            $(#[test] fn $check() { super::$check(&mut super::LmdbHarness::new()) })*
        }
        mod mem_store {
            $(#[test] fn $check() { super::$check(&mut super::MemHarness) })*
        }
    };
}

conformance!(
    fresh_store,
    initialize_bootstraps_once,
    founding_starts_after_index_one,
    append_and_read_ranges,
    conflict_truncation,
    write_is_atomic,
    compaction_keeps_boundary_term,
    snapshot_install_resets_log,
    stored_snapshot_and_request_index,
    reopen_restores_everything,
    max_size_paging,
    reads_while_writing,
);

// ---------------------------------------------------------------- helpers

pub(super) fn ent(index: u64, term: u64) -> Entry {
    Entry {
        index,
        term,
        data: format!("{index}@{term}").into_bytes().into(),
        ..Default::default()
    }
}

/// Entries `indexes` all at `term`.
fn ents(indexes: std::ops::RangeInclusive<u64>, term: u64) -> Vec<Entry> {
    indexes.map(|i| ent(i, term)).collect()
}

fn hs(term: u64, vote: u64, commit: u64) -> HardState {
    HardState {
        term,
        vote,
        commit,
        ..Default::default()
    }
}

fn voters(ids: &[u64]) -> ConfState {
    ConfState {
        voters: ids.to_vec(),
        ..Default::default()
    }
}

fn snap(index: u64, term: u64, cs: ConfState, data: &[u8]) -> Snapshot {
    let mut s = Snapshot {
        data: data.to_vec().into(),
        ..Default::default()
    };
    let meta = s.mut_metadata();
    meta.index = index;
    meta.term = term;
    meta.set_conf_state(cs);
    s
}

fn append<S: LogStore>(store: &S, entries: Vec<Entry>) -> Result<(), StorageError> {
    store.write(&LogWrite {
        entries,
        ..Default::default()
    })
}

fn ctx() -> GetEntriesContext {
    GetEntriesContext::empty(false)
}

/// `(index, term)` of every entry the store returns for `[low, high)`.
fn read<S: LogStore>(
    store: &S,
    low: u64,
    high: u64,
    max: Option<u64>,
) -> raft::Result<Vec<(u64, u64)>> {
    let got = store.entries(low, high, max, ctx())?;
    Ok(got.iter().map(|e| (e.index, e.term)).collect())
}

fn pairs(entries: &[Entry]) -> Vec<(u64, u64)> {
    entries.iter().map(|e| (e.index, e.term)).collect()
}

fn store_err(e: raft::StorageError) -> raft::Error {
    raft::Error::Store(e)
}

fn is_out_of_date(r: &Result<(), StorageError>) -> bool {
    matches!(
        r,
        Err(StorageError::Raft(raft::Error::Store(
            raft::StorageError::SnapshotOutOfDate
        )))
    )
}

/// Everything a caller can observe about a store.
#[derive(Debug, PartialEq)]
pub(super) struct Observed {
    initial_hard_state: HardState,
    initial_conf_state: ConfState,
    hard_state: HardState,
    conf_state: ConfState,
    first: u64,
    last: u64,
    boundary_term: u64,
    entries: Vec<Entry>,
    snapshot: Option<Snapshot>,
    snapshot_metadata: Option<SnapshotMetadata>,
    is_empty: bool,
}

pub(super) fn observe<S: LogStore>(store: &S) -> Observed {
    let initial = store.initial_state().expect("initial_state");
    let first = store.first_index().expect("first_index");
    let last = store.last_index().expect("last_index");
    Observed {
        initial_hard_state: initial.hard_state,
        initial_conf_state: initial.conf_state,
        hard_state: store.hard_state(),
        conf_state: store.conf_state(),
        first,
        last,
        boundary_term: store.term(first - 1).expect("term(first_index - 1)"),
        entries: store
            .entries(first, last + 1, None, ctx())
            .expect("all entries"),
        snapshot: store.snapshot(0, 0).ok(),
        snapshot_metadata: store.snapshot_metadata(),
        is_empty: store.is_empty(),
    }
}

// ----------------------------------------------------------------- checks

fn fresh_store<H: Harness>(h: &mut H) {
    let store = h.fresh();
    assert!(store.is_empty());
    assert_eq!(store.first_index().unwrap(), 1);
    assert_eq!(store.last_index().unwrap(), 0);
    assert_eq!(store.term(0).unwrap(), 0);
    assert_eq!(
        store.term(1),
        Err(store_err(raft::StorageError::Unavailable))
    );
    assert_eq!(read(&store, 1, 1, None).unwrap(), vec![]);
    assert_eq!(
        read(&store, 1, 2, None),
        Err(store_err(raft::StorageError::Unavailable))
    );
    let initial = store.initial_state().unwrap();
    assert!(!initial.initialized());
    assert_eq!(initial.hard_state, HardState::default());
    assert_eq!(
        store.snapshot(0, 2),
        Err(store_err(
            raft::StorageError::SnapshotTemporarilyUnavailable
        ))
    );
    assert_eq!(store.snapshot_metadata(), None);
    // An empty write is not a write: the member is still fresh.
    store.write(&LogWrite::default()).unwrap();
    assert!(store.is_empty());
}

fn initialize_bootstraps_once<H: Harness>(h: &mut H) {
    let store = h.fresh();
    store.initialize(&voters(&[1, 2, 3])).unwrap();
    assert!(!store.is_empty());
    assert_eq!(store.conf_state(), voters(&[1, 2, 3]));
    let initial = store.initial_state().unwrap();
    assert!(initial.initialized());
    assert_eq!(initial.conf_state, voters(&[1, 2, 3]));
    assert_eq!(initial.hard_state, HardState::default());
    assert_eq!(
        (store.first_index().unwrap(), store.last_index().unwrap()),
        (1, 0)
    );
    assert!(
        store.initialize(&voters(&[1])).is_err(),
        "second initialize"
    );
    assert_eq!(store.conf_state(), voters(&[1, 2, 3]));

    let written = h.fresh();
    append(&written, ents(1..=1, 1)).unwrap();
    assert!(!written.is_empty());
    assert!(
        written.initialize(&voters(&[1])).is_err(),
        "initialize after a write"
    );
}

fn founding_starts_after_index_one<H: Harness>(h: &mut H) {
    let store = h.fresh();
    store.found(&voters(&[1, 2, 3])).unwrap();
    let check = |store: &H::Store| {
        assert!(!store.is_empty());
        let initial = store.initial_state().unwrap();
        assert_eq!(initial.conf_state, voters(&[1, 2, 3]));
        assert_eq!(initial.hard_state, hs(1, 0, 1));
        assert_eq!(
            (store.first_index().unwrap(), store.last_index().unwrap()),
            (2, 1)
        );
        assert_eq!(store.term(1).unwrap(), 1);
        // Nothing at or below the founding point can be read: a joiner is
        // sent a snapshot, never the log from its start.
        assert!(read(store, 1, 2, None).is_err());
    };
    check(&store);
    let store = h.reopen(store);
    check(&store);
    assert!(store.found(&voters(&[1])).is_err(), "found twice");
    assert!(
        store.initialize(&voters(&[1])).is_err(),
        "initialize after found"
    );
    append(&store, ents(2..=3, 2)).unwrap();
    assert_eq!(store.last_index().unwrap(), 3);
}

fn append_and_read_ranges<H: Harness>(h: &mut H) {
    let store = h.fresh();
    let mut log = ents(1..=3, 1);
    log.extend(ents(4..=10, 2));
    append(&store, log.clone()).unwrap();
    assert_eq!(
        (store.first_index().unwrap(), store.last_index().unwrap()),
        (1, 10)
    );

    type Want = Result<std::ops::Range<u64>, raft::StorageError>;
    let term_of = |i: u64| if i <= 3 { 1 } else { 2 };
    let cases: Vec<(u64, u64, Want)> = vec![
        (1, 11, Ok(1..11)),
        (3, 7, Ok(3..7)),
        (5, 5, Ok(5..5)),
        (10, 11, Ok(10..11)),
        (11, 11, Ok(11..11)),
        (0, 5, Err(raft::StorageError::Compacted)),
        (1, 12, Err(raft::StorageError::Unavailable)),
        (12, 13, Err(raft::StorageError::Unavailable)),
    ];
    for (low, high, want) in cases {
        let got = read(&store, low, high, None);
        let want = want
            .map(|r| r.map(|i| (i, term_of(i))).collect::<Vec<_>>())
            .map_err(store_err);
        assert_eq!(got, want, "entries({low}, {high})");
    }
    assert!(store.entries(7, 5, None, ctx()).is_err(), "low > high");
    assert_eq!(
        store.entries(1, 11, None, ctx()).unwrap(),
        log,
        "entries round-trip byte for byte"
    );

    let terms: Vec<(u64, Result<u64, raft::StorageError>)> = vec![
        (0, Ok(0)),
        (1, Ok(1)),
        (3, Ok(1)),
        (4, Ok(2)),
        (10, Ok(2)),
        (11, Err(raft::StorageError::Unavailable)),
    ];
    for (idx, want) in terms {
        assert_eq!(store.term(idx), want.map_err(store_err), "term({idx})");
    }
}

fn conflict_truncation<H: Harness>(h: &mut H) {
    // (appended entries, expected log afterwards; None = refused, log unchanged)
    let base = ents(1..=5, 1);
    let cases: Vec<(Vec<Entry>, Option<Vec<Entry>>)> = vec![
        (
            ents(6..=7, 2),
            Some([ents(1..=5, 1), ents(6..=7, 2)].concat()),
        ),
        (
            ents(3..=4, 2),
            Some([ents(1..=2, 1), ents(3..=4, 2)].concat()),
        ),
        (ents(1..=1, 3), Some(ents(1..=1, 3))),
        (
            ents(5..=8, 2),
            Some([ents(1..=4, 1), ents(5..=8, 2)].concat()),
        ),
        (ents(2..=5, 1), Some(ents(1..=5, 1))),
        (vec![], Some(ents(1..=5, 1))),
        (ents(7..=8, 2), None),
        (vec![ent(6, 2), ent(8, 2)], None),
    ];
    for (appended, want) in cases {
        let store = h.fresh();
        append(&store, base.clone()).unwrap();
        let shown = pairs(&appended);
        let result = append(&store, appended);
        let want = match want {
            Some(want) => {
                result.unwrap_or_else(|e| panic!("append {shown:?}: {e}"));
                want
            }
            None => {
                assert!(result.is_err(), "append {shown:?} accepted");
                base.clone()
            }
        };
        let last = want.last().map_or(0, |e| e.index);
        assert_eq!(store.last_index().unwrap(), last, "append {shown:?}");
        assert_eq!(
            store.entries(1, last + 1, None, ctx()).unwrap(),
            want,
            "append {shown:?}"
        );
        assert_eq!(
            store.term(last + 1),
            Err(store_err(raft::StorageError::Unavailable))
        );
    }
}

fn write_is_atomic<H: Harness>(h: &mut H) {
    let store = h.fresh();
    store.initialize(&voters(&[1])).unwrap();

    // Entries and hard state land together.
    store
        .write(&LogWrite {
            entries: ents(1..=3, 1),
            hard_state: Some(hs(1, 1, 1)),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(store.hard_state(), hs(1, 1, 1));
    assert_eq!(store.initial_state().unwrap().hard_state, hs(1, 1, 1));
    assert_eq!(store.last_index().unwrap(), 3);

    // A refused write changes nothing: commit beyond the resulting last index.
    let before = observe(&store);
    let refused = LogWrite {
        entries: ents(4..=5, 1),
        hard_state: Some(hs(1, 1, 9)),
        ..Default::default()
    };
    assert!(store.write(&refused).is_err());
    assert_eq!(observe(&store), before);
    // ... or a snapshot that is out of date, with entries and hard state.
    let stale = LogWrite {
        snapshot: Some(snap(0, 0, voters(&[1]), b"")),
        entries: ents(4..=5, 1),
        hard_state: Some(hs(2, 1, 5)),
        commit: None,
    };
    assert!(is_out_of_date(&store.write(&stale)));
    assert_eq!(observe(&store), before);

    // The LightReady commit updates the commit index only.
    store
        .write(&LogWrite {
            commit: Some(3),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(store.hard_state(), hs(1, 1, 3));
    // With a new hard state in the same write, the commit index wins.
    store
        .write(&LogWrite {
            entries: ents(4..=4, 2),
            hard_state: Some(hs(2, 0, 3)),
            commit: Some(4),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(store.hard_state(), hs(2, 0, 4));
    assert_eq!(store.initial_state().unwrap().hard_state, hs(2, 0, 4));
    assert_eq!(store.conf_state(), voters(&[1]));
}

fn compaction_keeps_boundary_term<H: Harness>(h: &mut H) {
    let store = h.fresh();
    append(&store, [ents(1..=5, 1), ents(6..=10, 2)].concat()).unwrap();

    // Without a snapshot nothing may be discarded.
    store.compact(5).unwrap();
    assert_eq!(store.first_index().unwrap(), 1);
    // Compaction stops at what the snapshot covers.
    store
        .set_snapshot(&snap(4, 1, voters(&[1]), b"at 4"))
        .unwrap();
    store.compact(8).unwrap();
    assert_eq!(
        (store.first_index().unwrap(), store.term(4).unwrap()),
        (5, 1)
    );
    store
        .set_snapshot(&snap(10, 2, voters(&[1]), b"at 10"))
        .unwrap();

    // (compact_index, first_index afterwards, term(first - 1)); None = refused
    let steps: Vec<(u64, Option<(u64, u64)>)> = vec![
        (3, Some((5, 1))),
        (5, Some((5, 1))),
        (6, Some((6, 1))),
        (7, Some((7, 2))),
        (12, None),
        (11, Some((11, 2))),
        (11, Some((11, 2))),
    ];
    for (compact_index, want) in steps {
        let result = store.compact(compact_index);
        let first = store.first_index().unwrap();
        match want {
            Some((want_first, want_term)) => {
                result.unwrap();
                assert_eq!(first, want_first, "compact({compact_index})");
                assert_eq!(
                    store.term(first - 1).unwrap(),
                    want_term,
                    "compact({compact_index})"
                );
            }
            None => assert!(result.is_err(), "compact({compact_index}) accepted"),
        }
        assert_eq!(store.last_index().unwrap(), 10);
        if first > 1 {
            assert_eq!(
                store.term(first - 2),
                Err(store_err(raft::StorageError::Compacted))
            );
            assert_eq!(
                read(&store, first - 1, 11, None),
                Err(store_err(raft::StorageError::Compacted))
            );
        }
        let rest = read(&store, first, 11, None).unwrap();
        assert_eq!(rest.first().map(|e| e.0).unwrap_or(11), first);
    }
    // Everything compacted: the log continues after the boundary.
    assert_eq!(read(&store, 11, 11, None).unwrap(), vec![]);
    append(&store, ents(11..=12, 3)).unwrap();
    assert_eq!(read(&store, 11, 13, None).unwrap(), vec![(11, 3), (12, 3)]);
    assert!(
        append(&store, ents(9..=9, 2)).is_ok(),
        "compacted entries are skipped"
    );
    assert_eq!(read(&store, 11, 13, None).unwrap(), vec![(11, 3), (12, 3)]);
}

fn snapshot_install_resets_log<H: Harness>(h: &mut H) {
    let store = h.fresh();
    store.initialize(&voters(&[1])).unwrap();
    store
        .write(&LogWrite {
            entries: ents(1..=10, 2),
            hard_state: Some(hs(2, 1, 8)),
            ..Default::default()
        })
        .unwrap();

    let installed = snap(20, 3, voters(&[1, 2, 3]), b"state at 20");
    store
        .write(&LogWrite {
            snapshot: Some(installed.clone()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(
        (store.first_index().unwrap(), store.last_index().unwrap()),
        (21, 20)
    );
    assert_eq!(store.term(20).unwrap(), 3);
    assert_eq!(
        store.term(19),
        Err(store_err(raft::StorageError::Compacted))
    );
    assert_eq!(read(&store, 21, 21, None).unwrap(), vec![]);
    assert_eq!(
        read(&store, 10, 21, None),
        Err(store_err(raft::StorageError::Compacted))
    );
    assert_eq!(store.hard_state(), hs(3, 1, 20));
    assert_eq!(store.conf_state(), voters(&[1, 2, 3]));
    assert_eq!(
        store.initial_state().unwrap().conf_state,
        voters(&[1, 2, 3])
    );
    assert_eq!(store.snapshot(0, 2).unwrap(), installed);
    assert_eq!(store.snapshot(20, 2).unwrap(), installed);
    assert_eq!(
        store.snapshot_metadata(),
        Some(installed.get_metadata().clone())
    );

    // Snapshot, entries and hard state in one write: snapshot first.
    let next = snap(30, 4, voters(&[1, 2]), b"state at 30");
    store
        .write(&LogWrite {
            snapshot: Some(next.clone()),
            entries: ents(31..=32, 4),
            hard_state: Some(hs(4, 2, 31)),
            commit: None,
        })
        .unwrap();
    assert_eq!(
        (store.first_index().unwrap(), store.last_index().unwrap()),
        (31, 32)
    );
    assert_eq!((store.term(30).unwrap(), store.term(32).unwrap()), (4, 4));
    assert_eq!(store.hard_state(), hs(4, 2, 31));
    assert_eq!(store.snapshot(0, 2).unwrap(), next);

    // Older than the first index: refused, nothing changes.
    let before = observe(&store);
    for stale in [29, 30] {
        let w = LogWrite {
            snapshot: Some(snap(stale, 4, voters(&[1]), b"")),
            ..Default::default()
        };
        assert!(is_out_of_date(&store.write(&w)), "snapshot at {stale}");
    }
    assert_eq!(observe(&store), before);

    // Inside the log: every entry goes, as raft's restore does.
    let store = h.fresh();
    append(&store, ents(1..=10, 1)).unwrap();
    store
        .write(&LogWrite {
            snapshot: Some(snap(5, 1, voters(&[1]), b"")),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(
        (store.first_index().unwrap(), store.last_index().unwrap()),
        (6, 5)
    );
    assert_eq!(store.hard_state().commit, 5);
}

fn stored_snapshot_and_request_index<H: Harness>(h: &mut H) {
    let store = h.fresh();
    append(&store, ents(1..=10, 1)).unwrap();
    let unavailable = Err(store_err(
        raft::StorageError::SnapshotTemporarilyUnavailable,
    ));
    assert!(!store.take_image_wanted());
    assert_eq!(store.snapshot(0, 2), unavailable);
    assert!(store.take_image_wanted(), "a missing snapshot asks for one");
    assert!(!store.take_image_wanted(), "once");

    let at5 = snap(5, 1, voters(&[1, 2]), b"five");
    store.set_snapshot(&at5).unwrap();
    // (request_index, served?)
    for (request_index, served) in [(0, true), (3, true), (5, true), (6, false)] {
        let got = store.snapshot(request_index, 2);
        if served {
            assert_eq!(got.unwrap(), at5, "request {request_index}");
        } else {
            assert_eq!(got, unavailable, "request {request_index}");
        }
    }
    // Setting the snapshot touches neither the log nor the conf state.
    assert_eq!(
        (store.first_index().unwrap(), store.last_index().unwrap()),
        (1, 10)
    );
    assert_eq!(store.conf_state(), ConfState::default());

    store
        .set_snapshot(&snap(4, 1, voters(&[1]), b"older"))
        .unwrap();
    assert_eq!(
        store.snapshot(0, 2).unwrap(),
        at5,
        "an older snapshot is ignored"
    );
    let at7 = snap(7, 1, voters(&[1, 2, 3]), b"seven");
    store.set_snapshot(&at7).unwrap();
    assert_eq!(store.snapshot(6, 2).unwrap(), at7);
    // A member added after the snapshot cannot restore it (raft-rs refuses
    // a configuration without the receiver): unavailable, and asked for.
    assert_eq!(store.snapshot(0, 4), unavailable);
    assert!(store.take_image_wanted());
    let mut with_learner = voters(&[1, 2, 3]);
    with_learner.learners = vec![4];
    let at8 = snap(8, 1, with_learner, b"eight");
    store.set_snapshot(&at8).unwrap();
    assert_eq!(store.snapshot(0, 4).unwrap(), at8);
    assert_eq!(store.snapshot_metadata(), Some(at8.get_metadata().clone()));
    // A record without data (the log compacted with no image taken) is
    // where the log starts, but nothing to send: unavailable, and asked for.
    let record = snap(9, 1, voters(&[1, 2, 3]), b"");
    store.set_snapshot(&record).unwrap();
    assert_eq!(
        store.snapshot_metadata(),
        Some(record.get_metadata().clone())
    );
    assert_eq!(store.snapshot(0, 2), unavailable);
    assert!(store.take_image_wanted());
    let at9 = snap(9, 1, voters(&[1, 2, 3]), b"nine");
    store.set_snapshot(&at9).unwrap();
    assert_eq!(
        store.snapshot(0, 2).unwrap(),
        at9,
        "an image at the record's index"
    );
}

fn reopen_restores_everything<H: Harness>(h: &mut H) {
    let store = h.fresh();
    store.initialize(&voters(&[1, 2, 3])).unwrap();
    store
        .write(&LogWrite {
            entries: ents(1..=20, 1),
            hard_state: Some(hs(1, 2, 15)),
            ..Default::default()
        })
        .unwrap();
    store.set_conf_state(&voters(&[1, 2, 3, 4])).unwrap();
    store
        .set_snapshot(&snap(12, 1, voters(&[1, 2, 3, 4]), b"kv at 12"))
        .unwrap();
    store.compact(10).unwrap();
    store
        .write(&LogWrite {
            entries: ents(18..=22, 2),
            commit: Some(18),
            ..Default::default()
        })
        .unwrap();
    let clone = store.clone();
    let before = observe(&clone);
    assert_eq!(
        (before.first, before.last, before.boundary_term),
        (10, 22, 1)
    );
    drop(clone);

    let store = h.reopen(store);
    assert_eq!(observe(&store), before);
    // Still writable after the reopen.
    append(&store, ents(23..=23, 2)).unwrap();
    assert_eq!(store.last_index().unwrap(), 23);
    let store = h.reopen(store);
    assert_eq!(store.last_index().unwrap(), 23);
    assert_eq!(store.hard_state(), hs(1, 2, 18));
}

fn max_size_paging<H: Harness>(h: &mut H) {
    let store = h.fresh();
    let log: Vec<Entry> = (1..=20u64)
        .map(|i| Entry {
            index: i,
            term: 1,
            data: vec![i as u8; (i * 37 % 200) as usize].into(),
            ..Default::default()
        })
        .collect();
    append(&store, log.clone()).unwrap();
    let total: u64 = log
        .iter()
        .map(|e| u64::from(protobuf::Message::compute_size(e)))
        .sum();
    let sizes = (0..=total + 1)
        .step_by(7)
        .chain([1, total - 1, total, raft::NO_LIMIT]);
    for (low, high) in [(1, 21), (5, 12), (20, 21)] {
        for max in sizes.clone() {
            let mut want = log[(low - 1) as usize..(high - 1) as usize].to_vec();
            limit_size(&mut want, Some(max));
            let got = store.entries(low, high, max, ctx()).unwrap();
            assert!(!got.is_empty(), "at least one entry for max_size {max}");
            assert_eq!(got, want, "entries({low}, {high}, {max})");
        }
        let all = store.entries(low, high, None, ctx()).unwrap();
        assert_eq!(all.len() as u64, high - low);
    }
}

fn reads_while_writing<H: Harness>(h: &mut H) {
    let store = h.fresh();
    store.initialize(&voters(&[1])).unwrap();
    let done = AtomicBool::new(false);
    let started = Barrier::new(2);
    std::thread::scope(|scope| {
        let reader = store.clone();
        let (done, started) = (&done, &started);
        let reads = scope.spawn(move || {
            started.wait();
            let mut rounds = 0u64;
            loop {
                // The round that starts after `done` sees the final log.
                let finished = done.load(Ordering::Acquire);
                rounds += 1;
                let first = reader.first_index().unwrap();
                let last = reader.last_index().unwrap();
                assert!(first <= last + 1, "first {first} last {last}");
                match reader.entries(first, last + 1, None, ctx()) {
                    Ok(got) => {
                        for (i, e) in got.iter().enumerate() {
                            assert_eq!(e.index, first + i as u64);
                            assert_eq!(e.term, e.index / 10 + 1);
                        }
                    }
                    // A compaction committed between the two calls.
                    Err(e) => assert_eq!(e, store_err(raft::StorageError::Compacted)),
                }
                let hs = reader.hard_state();
                assert!(hs.commit <= reader.last_index().unwrap());
                if finished {
                    assert_eq!((first, last, hs.commit), (195, 200, 200));
                    return rounds;
                }
            }
        });
        started.wait();
        for batch in 0..40u64 {
            let first = batch * 5 + 1;
            let entries: Vec<Entry> = (first..first + 5).map(|i| ent(i, i / 10 + 1)).collect();
            let last = first + 4;
            store
                .write(&LogWrite {
                    entries,
                    hard_state: Some(hs(last / 10 + 1, 1, last)),
                    ..Default::default()
                })
                .unwrap();
            if batch % 10 == 9 {
                store
                    .set_snapshot(&snap(last, store.term(last).unwrap(), voters(&[1]), b""))
                    .unwrap();
                store.compact(last - 5).unwrap();
            }
        }
        done.store(true, Ordering::Release);
        let rounds = reads.join().expect("reader thread");
        println!("reads_while_writing: {rounds} read rounds during 40 writes");
    });
    assert_eq!(store.last_index().unwrap(), 200);
    assert_eq!(store.first_index().unwrap(), 195);
}

// ---------------------------------------------------- differential (random)

/// One random operation, valid most of the time.
#[derive(Debug, Clone)]
enum Op {
    Write(LogWrite),
    Compact(u64),
    SetSnapshot(Snapshot),
    SetConfState(ConfState),
}

fn random_op(rng: &mut StdRng, at: &Observed, term: &mut u64) -> Op {
    let (first, last) = (at.first, at.last);
    let commit = at.hard_state.commit;
    match rng.gen_range(0..100) {
        0..=54 => {
            if rng.gen_bool(0.2) {
                *term += 1;
            }
            // Mostly append at the end; sometimes overwrite a suffix, skip
            // into the compacted prefix, or leave a gap (refused).
            let start = match rng.gen_range(0..10) {
                0..=5 => last + 1,
                6..=7 => rng.gen_range(commit.max(first - 1) + 1..=last + 1),
                8 => first.saturating_sub(2).max(1),
                _ => last + 2,
            };
            let n = rng.gen_range(0..6);
            let entries: Vec<Entry> = (start..start + n).map(|i| ent(i, *term)).collect();
            let new_last = if n == 0 || start + n - 1 < first {
                last
            } else {
                start + n - 1
            };
            let hard_state = rng.gen_bool(0.5).then(|| {
                hs(
                    *term,
                    rng.gen_range(0..4),
                    rng.gen_range(commit..=new_last.max(commit)),
                )
            });
            let commit = rng.gen_bool(0.2).then(|| rng.gen_range(0..=new_last + 1));
            Op::Write(LogWrite {
                entries,
                hard_state,
                commit,
                ..Default::default()
            })
        }
        55..=69 => Op::Compact(rng.gen_range(0..=last + 2)),
        70..=84 => {
            let index = rng.gen_range(first - 1..=last);
            let t = if index + 1 == first {
                at.boundary_term
            } else {
                at.entries[(index - first) as usize].term
            };
            Op::SetSnapshot(snap(index, t, voters(&[1, 2]), &index.to_be_bytes()))
        }
        85..=91 => Op::SetConfState(voters(&[1, rng.gen_range(2..5)])),
        _ => {
            *term += 1;
            let index = rng.gen_range(last.saturating_sub(3)..=last + 5);
            let install = snap(index, *term, voters(&[1, 2, 3]), b"installed");
            let entries = if rng.gen_bool(0.5) {
                ents(index + 1..=index + 2, *term)
            } else {
                vec![]
            };
            Op::Write(LogWrite {
                snapshot: Some(install),
                entries,
                ..Default::default()
            })
        }
    }
}

fn run_op<S: LogStore>(store: &S, op: &Op) -> Result<(), StorageError> {
    match op {
        Op::Write(w) => store.write(w),
        Op::Compact(i) => store.compact(*i),
        Op::SetSnapshot(s) => store.set_snapshot(s),
        Op::SetConfState(cs) => store.set_conf_state(cs),
    }
}

#[test]
fn lmdb_and_mem_agree_on_random_operations() {
    let seed = std::env::var("RAFT_LOG_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::thread_rng().r#gen::<u64>());
    println!("lmdb_and_mem_agree_on_random_operations: seed {seed} (set RAFT_LOG_SEED to replay)");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut lmdb_harness = LmdbHarness::new();
    let mut lmdb = lmdb_harness.fresh();
    let mem = MemLogStore::new();
    lmdb.initialize(&voters(&[1])).unwrap();
    mem.initialize(&voters(&[1])).unwrap();
    let mut term = 1;
    let (mut accepted, mut refused) = (0, 0);
    for step in 0..300 {
        let at = observe(&mem);
        let op = random_op(&mut rng, &at, &mut term);
        let on_lmdb = run_op(&lmdb, &op);
        let on_mem = run_op(&mem, &op);
        assert_eq!(
            on_lmdb.is_ok(),
            on_mem.is_ok(),
            "step {step} seed {seed}: {op:?}: lmdb {on_lmdb:?} mem {on_mem:?}"
        );
        if on_mem.is_ok() {
            accepted += 1
        } else {
            refused += 1
        }
        if step % 50 == 49 {
            lmdb = lmdb_harness.reopen(lmdb);
        }
        assert_eq!(
            observe(&lmdb),
            observe(&mem),
            "step {step} seed {seed}: after {op:?}"
        );
    }
    println!("lmdb_and_mem_agree_on_random_operations: {accepted} accepted, {refused} refused");
    assert!(
        accepted > refused,
        "the generator should mostly produce valid operations"
    );
}
