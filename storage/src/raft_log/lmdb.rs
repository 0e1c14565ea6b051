//! The raft log on LMDB (heed 0.23), in its own environment.
//!
//! 1. [`LmdbLogStore::open`] creates the directory and opens the environment
//!    with default flags, so every commit fsyncs data and meta pages
//!    (anything acknowledged to a peer, a vote or an append, must survive a
//!    power loss),
//!    and with read txns without TLS, so a read txn may be opened on any
//!    thread. It clears reader slots left by a crashed process, creates the
//!    two databases and loads the in-memory mirror.
//! 2. Databases: `entries` maps the index (8 bytes big-endian) to the
//!    protobuf `Entry`; `meta` holds `hard_state`, `conf_state`, `truncated`
//!    (index and term of the last discarded entry), `snapshot_meta` and
//!    `snapshot_data` (see `codec`).
//! 3. Every change (`write`, `set_conf_state`, `compact`, `set_snapshot`,
//!    `initialize`) holds the writer mutex, reads the current state inside
//!    its own write txn, checks it with `plan`, applies it and commits
//!    (fsync); only then is the mirror replaced. Any error drops the txn
//!    (abort): nothing is half written, and the caller treats it as fatal.
//! 4. `raft::Storage` reads open a short read txn each, read from LMDB (the
//!    truth) and drop it before returning: the raft thread never pins pages
//!    while the log writer thread commits.
//! 5. `hard_state()`, `conf_state()`, `snapshot_metadata()` and `is_empty()`
//!    answer from the mirror, which always equals the last committed state.

use std::convert::Infallible;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use heed::byteorder::BigEndian;
use heed::types::{Bytes, Str, U64};
use heed::{CommitOrAbort, Database, Env, EnvOpenOptions, RoTxn, RwTxn, WithoutTls};
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use raft::{GetEntriesContext, RaftState, Storage};

use super::codec::{decode, decode_entry, decode_point, encode, encode_point, entry_term};
use super::plan::{self, LogBounds, LogState, TermAt};
use super::{LogStore, LogWrite, to_raft_error};
use crate::StorageError;

const ENTRIES_DB: &str = "entries";
const META_DB: &str = "meta";

const HARD_STATE: &str = "hard_state";
const CONF_STATE: &str = "conf_state";
const TRUNCATED: &str = "truncated";
const SNAPSHOT_META: &str = "snapshot_meta";
const SNAPSHOT_DATA: &str = "snapshot_data";

/// The raft log of one member on LMDB. Clones share one environment (LMDB
/// allows one open per path and process; a second `open` of the same
/// directory fails with `EnvAlreadyOpened` until every clone is dropped).
#[derive(Clone)]
pub struct LmdbLogStore {
    inner: Arc<Inner>,
}

struct Inner {
    env: Env<WithoutTls>,
    entries: Database<'static, U64<BigEndian>, Bytes>,
    meta: Database<'static, Str, Bytes>,
    /// Serializes changes so the mirror is replaced in commit order.
    writer: Mutex<()>,
    /// The last committed state (see module docs, step 5).
    mirror: RwLock<LogState>,
    /// Set when raft asked for a snapshot that is not there (see
    /// [`LogStore::take_image_wanted`]).
    image_wanted: AtomicBool,
}

impl LmdbLogStore {
    /// Opens (or creates) the log in `dir`. `map_size` is the most the file
    /// may grow to and must be a multiple of the OS page size (any multiple
    /// of 1 MiB is).
    pub fn open(dir: &Path, map_size: usize) -> Result<Self, StorageError> {
        std::fs::create_dir_all(dir)?;
        let env = open_env(dir, map_size)?;
        let stale = env.clear_stale_readers()?;
        if stale > 0 {
            tracing::info!(
                "raft log: cleared {stale} stale LMDB readers in {}",
                dir.display()
            );
        }
        let wtxn = env.write_txn()?;
        let opened = env.create_databases_and_commit(wtxn, |dbo, wtxn| -> heed::Result<_> {
            let entries = dbo.create_database(wtxn, Some(ENTRIES_DB))?;
            let meta = dbo.create_database(wtxn, Some(META_DB))?;
            Ok(CommitOrAbort::<_, Infallible>::Commit((entries, meta)))
        })?;
        let (entries, meta) = match opened {
            CommitOrAbort::Commit(dbs) => dbs,
            CommitOrAbort::Abort(never) => match never {},
        };
        let inner = Inner {
            env,
            entries,
            meta,
            writer: Mutex::new(()),
            mirror: RwLock::new(LogState::default()),
            image_wanted: AtomicBool::new(false),
        };
        let state = inner.load_state(&*inner.env.read_txn()?)?;
        tracing::debug!(
            "raft log: opened {} (entries ({}, {}], commit {})",
            dir.display(),
            state.bounds.truncated_index,
            state.bounds.last_index,
            state.hard_state.commit
        );
        inner.set_mirror(state);
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// The directory this log lives in.
    pub fn path(&self) -> &Path {
        self.inner.env.path()
    }

    fn mirror<T>(&self, read: impl FnOnce(&LogState) -> T) -> T {
        read(
            &self
                .inner
                .mirror
                .read()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }

    /// Runs `read` in a read txn of its own, dropped before returning (module
    /// docs, step 4); errors become what raft-rs expects.
    fn read<T>(
        &self,
        read: impl FnOnce(&Inner, &RoTxn) -> Result<T, StorageError>,
    ) -> raft::Result<T> {
        let inner = &*self.inner;
        let txn = inner.env.read_txn().map_err(|e| to_raft_error(e.into()))?;
        read(inner, &txn).map_err(to_raft_error)
    }

    /// Runs `change` in one write txn under the writer mutex: it gets the
    /// current state and returns the state after the change, or `None` to
    /// abort without writing. The txn commits (fsync) before the mirror is
    /// replaced.
    fn change<F>(&self, change: F) -> Result<(), StorageError>
    where
        F: FnOnce(&Inner, &mut RwTxn<'_>, LogState) -> Result<Option<LogState>, StorageError>,
    {
        let inner = &*self.inner;
        let _writer = inner.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let mut wtxn = inner.env.write_txn()?;
        let state = inner.load_state(&wtxn)?;
        let Some(next) = change(inner, &mut wtxn, state)? else {
            return Ok(());
        };
        wtxn.commit()?;
        inner.set_mirror(next);
        Ok(())
    }
}

/// Opens the environment with default (durable) flags.
#[allow(unsafe_code)]
fn open_env(dir: &Path, map_size: usize) -> heed::Result<Env<WithoutTls>> {
    let mut options = EnvOpenOptions::new().read_txn_without_tls();
    options.map_size(map_size).max_dbs(2);
    // SAFETY: LMDB memory-maps data.mdb; that is sound as long as nothing
    // modifies the file outside LMDB. The directory belongs to this store,
    // heed refuses a second open of the same path in this process
    // (EnvAlreadyOpened), and the flags are LMDB's defaults (locking and
    // fsync on).
    unsafe { options.open(dir) }
}

impl Inner {
    fn set_mirror(&self, state: LogState) {
        *self.mirror.write().unwrap_or_else(PoisonError::into_inner) = state;
    }

    fn get_meta<M: protobuf::Message>(
        &self,
        txn: &RoTxn,
        key: &str,
    ) -> Result<Option<M>, StorageError> {
        self.meta
            .get(txn, key)?
            .map(|bytes| decode(key, bytes))
            .transpose()
    }

    fn put_meta<M: protobuf::Message>(
        &self,
        txn: &mut RwTxn,
        key: &str,
        m: &M,
    ) -> Result<(), StorageError> {
        Ok(self.meta.put(txn, key, &encode(m)?)?)
    }

    fn load_bounds(&self, txn: &RoTxn) -> Result<LogBounds, StorageError> {
        let (truncated_index, truncated_term) = match self.meta.get(txn, TRUNCATED)? {
            Some(bytes) => decode_point(bytes)?,
            None => (0, 0),
        };
        let last_index = match self.entries.last(txn)? {
            Some((index, _)) => index,
            None => truncated_index,
        };
        Ok(LogBounds {
            truncated_index,
            truncated_term,
            last_index,
        })
    }

    /// The whole committed state, with a consistency check of the bounds.
    fn load_state(&self, txn: &RoTxn) -> Result<LogState, StorageError> {
        let bounds = self.load_bounds(txn)?;
        if let Some((first, _)) = self.entries.first(txn)?
            && first != bounds.first_index()
        {
            return Err(StorageError::Corrupt(format!(
                "raft log starts at {first} but the truncation point is {}",
                bounds.truncated_index
            )));
        }
        Ok(LogState {
            hard_state: self.get_meta(txn, HARD_STATE)?.unwrap_or_default(),
            conf_state: self.get_meta(txn, CONF_STATE)?.unwrap_or_default(),
            bounds,
            snapshot: self.get_meta(txn, SNAPSHOT_META)?,
            written: !self.meta.is_empty(txn)? || !self.entries.is_empty(txn)?,
        })
    }

    fn term(&self, txn: &RoTxn, bounds: LogBounds, idx: u64) -> Result<u64, StorageError> {
        match plan::term_at(bounds, idx)? {
            TermAt::Known(term) => Ok(term),
            TermAt::Stored => match self.entries.get(txn, &idx)? {
                Some(bytes) => entry_term(idx, bytes),
                None => Err(StorageError::Corrupt(format!("raft entry {idx} missing"))),
            },
        }
    }

    fn load_snapshot(&self, txn: &RoTxn) -> Result<Option<Snapshot>, StorageError> {
        let Some(meta) = self.get_meta::<SnapshotMetadata>(txn, SNAPSHOT_META)? else {
            return Ok(None);
        };
        let mut snap = Snapshot::default();
        snap.set_metadata(meta);
        if let Some(data) = self.meta.get(txn, SNAPSHOT_DATA)? {
            snap.data = data.to_vec().into();
        }
        Ok(Some(snap))
    }

    fn put_snapshot(&self, txn: &mut RwTxn, snap: &Snapshot) -> Result<(), StorageError> {
        self.put_meta(txn, SNAPSHOT_META, snap.get_metadata())?;
        Ok(self.meta.put(txn, SNAPSHOT_DATA, &snap.data)?)
    }

    /// Reads `[low, high)`, checking every key is the next index.
    fn entries(
        &self,
        txn: &RoTxn,
        low: u64,
        high: u64,
        max_size: Option<u64>,
    ) -> Result<Vec<Entry>, StorageError> {
        let mut expected = low;
        let stored = self.entries.range(txn, &(low..high))?.map(|item| {
            let (index, bytes) = item?;
            if index != expected {
                return Err(StorageError::Corrupt(format!(
                    "raft entry {expected} missing (next stored is {index})"
                )));
            }
            expected += 1;
            decode_entry(index, bytes)
        });
        let page = plan::page(stored, max_size)?;
        if page.is_empty() && low < high {
            return Err(StorageError::Corrupt(format!(
                "raft entries [{low}, {high}) missing"
            )));
        }
        Ok(page)
    }
}

impl Storage for LmdbLogStore {
    fn initial_state(&self) -> raft::Result<RaftState> {
        self.read(|inner, txn| {
            let state = inner.load_state(txn)?;
            Ok(RaftState::new(state.hard_state, state.conf_state))
        })
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        self.read(|inner, txn| {
            plan::check_entries_range(inner.load_bounds(txn)?, low, high)?;
            inner.entries(txn, low, high, max_size.into())
        })
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        self.read(|inner, txn| inner.term(txn, inner.load_bounds(txn)?, idx))
    }

    fn first_index(&self) -> raft::Result<u64> {
        self.read(|inner, txn| Ok(inner.load_bounds(txn)?.first_index()))
    }

    fn last_index(&self) -> raft::Result<u64> {
        self.read(|inner, txn| Ok(inner.load_bounds(txn)?.last_index))
    }

    fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<Snapshot> {
        let found = self.read(|inner, txn| {
            Ok(plan::snapshot_for(
                inner.load_snapshot(txn)?,
                request_index,
                to,
            )?)
        });
        if found.is_err() {
            self.inner.image_wanted.store(true, Ordering::Release);
        }
        found
    }
}

impl LogStore for LmdbLogStore {
    fn write(&self, w: &LogWrite) -> Result<(), StorageError> {
        self.change(|inner, txn, state| {
            let plan = plan::plan_write(w, &state)?;
            if plan.is_noop() {
                return Ok(None);
            }
            if let Some(snap) = plan.install {
                let bounds = plan.next.bounds;
                inner.entries.clear(txn)?;
                inner.meta.put(
                    txn,
                    TRUNCATED,
                    &encode_point(bounds.truncated_index, bounds.truncated_term),
                )?;
                inner.put_meta(txn, CONF_STATE, &plan.next.conf_state)?;
                inner.put_snapshot(txn, snap)?;
            }
            if let Some(last) = plan.append.last() {
                inner.entries.delete_range(txn, &(last.index + 1..))?;
                for e in plan.append {
                    inner.entries.put(txn, &e.index, &encode(e)?)?;
                }
            }
            if let Some(hs) = &plan.hard_state {
                inner.put_meta(txn, HARD_STATE, hs)?;
            }
            Ok(Some(plan.next))
        })
    }

    fn set_conf_state(&self, cs: &ConfState) -> Result<(), StorageError> {
        self.change(|inner, txn, mut state| {
            inner.put_meta(txn, CONF_STATE, cs)?;
            state.conf_state = cs.clone();
            state.written = true;
            Ok(Some(state))
        })
    }

    fn compact(&self, compact_index: u64) -> Result<(), StorageError> {
        self.change(|inner, txn, mut state| {
            let Some(compact_index) = plan::plan_compact(&state, compact_index)? else {
                return Ok(None);
            };
            let term = inner.term(txn, state.bounds, compact_index - 1)?;
            inner.entries.delete_range(txn, &(..compact_index))?;
            inner
                .meta
                .put(txn, TRUNCATED, &encode_point(compact_index - 1, term))?;
            state.bounds.truncated_index = compact_index - 1;
            state.bounds.truncated_term = term;
            Ok(Some(state))
        })
    }

    fn set_snapshot(&self, snap: &Snapshot) -> Result<(), StorageError> {
        self.change(|inner, txn, mut state| {
            if !plan::replaces_snapshot(&state, snap) {
                return Ok(None);
            }
            inner.put_snapshot(txn, snap)?;
            state.snapshot = Some(snap.get_metadata().clone());
            state.written = true;
            Ok(Some(state))
        })
    }

    fn hard_state(&self) -> HardState {
        self.mirror(|s| s.hard_state.clone())
    }

    fn conf_state(&self) -> ConfState {
        self.mirror(|s| s.conf_state.clone())
    }

    fn snapshot_metadata(&self) -> Option<SnapshotMetadata> {
        self.mirror(|s| s.snapshot.clone())
    }

    fn is_empty(&self) -> bool {
        self.mirror(|s| !s.written)
    }

    fn initialize(&self, cs: &ConfState) -> Result<(), StorageError> {
        self.change(|inner, txn, mut state| {
            plan::check_initialize(&state)?;
            inner.put_meta(txn, CONF_STATE, cs)?;
            state.conf_state = cs.clone();
            state.written = true;
            Ok(Some(state))
        })
    }

    fn found(&self, cs: &ConfState) -> Result<(), StorageError> {
        self.change(|inner, txn, state| {
            let next = plan::founding_state(&state, cs)?;
            let point = next.bounds;
            inner.put_meta(txn, CONF_STATE, cs)?;
            inner.put_meta(txn, HARD_STATE, &next.hard_state)?;
            inner.meta.put(
                txn,
                TRUNCATED,
                &encode_point(point.truncated_index, point.truncated_term),
            )?;
            Ok(Some(next))
        })
    }

    fn take_image_wanted(&self) -> bool {
        self.inner.image_wanted.swap(false, Ordering::AcqRel)
    }
}

#[cfg(test)]
mod tests {
    use raft::eraftpb::Entry;

    use super::*;
    use crate::raft_log::conformance::observe;

    fn is_map_full(e: &StorageError) -> bool {
        matches!(
            e,
            StorageError::Lmdb(heed::Error::Mdb(heed::MdbError::MapFull))
        )
    }

    #[test]
    fn one_open_per_directory_until_every_clone_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let store = LmdbLogStore::open(dir.path(), 1 << 20).unwrap();
        let clone = store.clone();
        let again = LmdbLogStore::open(dir.path(), 1 << 20);
        assert!(matches!(
            again,
            Err(StorageError::Lmdb(heed::Error::EnvAlreadyOpened))
        ));
        drop(store);
        assert!(
            LmdbLogStore::open(dir.path(), 1 << 20).is_err(),
            "a clone still holds the env"
        );
        drop(clone);
        assert!(LmdbLogStore::open(dir.path(), 1 << 20).unwrap().is_empty());
    }

    #[test]
    fn map_full_write_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let store = LmdbLogStore::open(dir.path(), 1 << 20).unwrap();
        let big = |index: u64| Entry {
            index,
            term: 1,
            data: vec![0xab; 64 << 10].into(),
            ..Default::default()
        };
        let mut failed = None;
        for batch in 0..64u64 {
            let before = observe(&store);
            let entries: Vec<Entry> = (batch * 4 + 1..=batch * 4 + 4).map(big).collect();
            let hard_state = HardState {
                term: 1,
                vote: 1,
                commit: batch * 4 + 4,
                ..Default::default()
            };
            match store.write(&LogWrite {
                entries,
                hard_state: Some(hard_state),
                ..Default::default()
            }) {
                Ok(()) => continue,
                Err(e) => {
                    assert!(is_map_full(&e), "unexpected error {e}");
                    failed = Some((batch, before));
                    break;
                }
            }
        }
        let (batch, before) = failed.expect("a 1 MiB map fills up within 64 batches of 256 KiB");
        assert!(batch > 0, "at least one batch fits");
        // Neither the entries nor the hard state of the failed write landed.
        assert_eq!(observe(&store), before);
        // The env is still usable, and the reopened log is the same.
        store
            .write(&LogWrite {
                commit: Some(batch * 4 - 1),
                ..Default::default()
            })
            .unwrap();
        let after = observe(&store);
        assert_eq!(store.hard_state().commit, batch * 4 - 1);
        let dir_path = store.path().to_owned();
        drop(store);
        let store = LmdbLogStore::open(&dir_path, 1 << 20).unwrap();
        assert_eq!(observe(&store), after);
    }
}
