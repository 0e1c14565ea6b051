//! [`MvccStore`]: the MVCC key-value store over any [`MvccBackend`].
//!
//! 1. `open` rebuilds the in-memory [`State`] from the backend: meta (applied
//!    index, revision, compaction), the lease table, and the key index plus
//!    the lease attachments from one scan of the records in revision order
//!    (etcd's `store.restore`). There is no compaction to resume: a
//!    compaction deletes its records in the same commit that records it.
//! 2. `apply_batch` applies committed raft entries in order, skipping those
//!    at or below the applied index, into one [`WriteBatch`] that also
//!    carries the new applied index, then commits it once (a
//!    [`super::Batched`] backend holds it with others and writes them
//!    together; `flush` writes them now). If the commit
//!    fails, the in-memory state is rebuilt from what is committed and the
//!    error is returned (fatal to the member: the entries are re-applied
//!    from the raft log after restart).
//! 3. Reads (`range`, `txn_read_only`, `hash_kv`, `events`) open one backend
//!    reader for the call and drop it before returning.

use std::path::Path;

use proto::Message as _;
use proto::etcdserverpb::{Member, RangeRequest, RangeResponse, TxnRequest, TxnResponse};
use proto::internal::InternalRequest;
use proto::mvccpb::event::EventType;
use proto::mvccpb::{Event, KeyValue};

use super::apply::{Applied, Applier};
use super::backend::{BackendReader, Lease, MvccBackend, WriteBatch, decode_record, split_record};
use super::batched::{BatchLimits, Batched};
use super::hash::Crc32c;
use super::lmdb::{LmdbBackend, LmdbOptions};
use super::mem::MemBackend;
use super::range;
use super::revision::Revision;
use super::state::State;
use super::txn::{is_txn_read_only, read_only_txn};
use super::view::{Fault, ReadView, View};
use crate::error::{EtcdError, StorageError};

/// A storage failure seen by a read, told to the client in etcd's words:
/// out of LMDB reader slots is "too many requests", anything else means the
/// store is damaged.
fn read_failure(fault: Fault) -> EtcdError {
    match fault {
        Fault::Client(e) => e,
        Fault::Storage(StorageError::Lmdb(heed::Error::Mdb(heed::MdbError::ReadersFull))) => {
            tracing::warn!("mvcc read refused: no free LMDB reader slot");
            EtcdError::TooManyRequests
        }
        Fault::Storage(e) => {
            tracing::error!(error = %e, "mvcc read failed");
            EtcdError::Corrupt
        }
    }
}

/// The MVCC key-value store.
pub struct MvccStore<B: MvccBackend> {
    backend: B,
    state: State,
    /// Set when a failed commit could not be followed by a rebuild: the
    /// in-memory state can no longer be trusted.
    poisoned: bool,
}

impl<B: MvccBackend> std::fmt::Debug for MvccStore<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MvccStore")
            .field("current_revision", &self.state.current_rev)
            .field("compact_revision", &self.state.compact_rev)
            .field("applied_index", &self.state.applied_index)
            .field("keys", &self.state.index.len())
            .finish()
    }
}

impl MvccStore<LmdbBackend> {
    /// Opens (or creates) the store in directory `dir` with the given LMDB
    /// map size, fully durable commits.
    pub fn open(dir: &Path, map_size: usize) -> Result<Self, StorageError> {
        Self::open_with(dir, &LmdbOptions::new(map_size))
    }

    /// Opens the store with explicit LMDB options.
    pub fn open_with(dir: &Path, options: &LmdbOptions) -> Result<Self, StorageError> {
        Self::with_backend(LmdbBackend::open(dir, options)?)
    }
}

impl MvccStore<Batched<LmdbBackend>> {
    /// Opens the store with explicit LMDB options, its commits batched
    /// within `limits` (etcd's backend batch interval and limit).
    pub fn open_batched(
        dir: &Path,
        options: &LmdbOptions,
        limits: BatchLimits,
    ) -> Result<Self, StorageError> {
        Self::with_backend(Batched::new(LmdbBackend::open(dir, options)?, limits))
    }
}

impl MvccStore<MemBackend> {
    /// An empty store in memory.
    pub fn in_memory() -> Self {
        Self {
            backend: MemBackend::new(),
            state: State::empty(),
            poisoned: false,
        }
    }
}

impl<B: MvccBackend> MvccStore<B> {
    /// Builds the store over `backend`, rebuilding the in-memory state.
    pub fn with_backend(backend: B) -> Result<Self, StorageError> {
        let state = State::load(&backend.reader()?)?;
        Ok(Self {
            backend,
            state,
            poisoned: false,
        })
    }

    /// The store revision: 1 when empty, the first write gets 2.
    pub fn current_revision(&self) -> i64 {
        self.state.current_rev
    }

    /// Keys alive at the current revision (etcd's `keys_total`).
    pub fn key_count(&self) -> usize {
        self.state.index.alive()
    }

    /// The compacted revision, 0 if never compacted.
    pub fn compact_revision(&self) -> i64 {
        self.state.compact_rev.max(0)
    }

    /// The last raft index applied (persisted with the changes it made).
    pub fn applied_index(&self) -> u64 {
        self.state.applied_index
    }

    /// Physical size in bytes. An `Err` means the size could not be
    /// measured (it is never reported as 0: the quota check relies on it).
    pub fn db_size(&self) -> Result<i64, StorageError> {
        self.backend.size()
    }

    /// Bytes holding live data (what the quota is checked against); an `Err`
    /// as for [`MvccStore::db_size`].
    pub fn db_size_in_use(&self) -> Result<i64, StorageError> {
        self.backend.size_in_use()
    }

    fn check_usable(&self) -> Result<(), StorageError> {
        if self.poisoned {
            return Err(StorageError::Corrupt(
                "mvcc store unusable after a failed commit; reopen it".into(),
            ));
        }
        Ok(())
    }

    /// Runs `f` on a read view of the committed state.
    fn read<T>(
        &self,
        f: impl FnOnce(&ReadView<'_, B::Reader<'_>>) -> Result<T, Fault>,
    ) -> Result<T, EtcdError> {
        self.check_usable().map_err(|e| read_failure(e.into()))?;
        let reader = self.backend.reader().map_err(|e| read_failure(e.into()))?;
        let view = ReadView {
            state: &self.state,
            reader: &reader,
        };
        f(&view).map_err(read_failure)
    }

    /// Range with every option; `header.revision` is the current revision,
    /// also for a read at a past revision.
    pub fn range(&self, req: &RangeRequest) -> Result<RangeResponse, EtcdError> {
        self.read(|view| range::range(view, req))
    }

    /// A txn whose ops are all ranges (see [`is_txn_read_only`]), served
    /// without raft with the same semantics as when applied.
    ///
    /// # Panics
    /// If the txn has an op that is not a Range: the caller must send those
    /// through raft.
    pub fn txn_read_only(&self, req: &TxnRequest) -> Result<TxnResponse, EtcdError> {
        assert!(
            is_txn_read_only(req),
            "txn_read_only called with a txn that writes"
        );
        self.read(|view| read_only_txn(view, req))
    }

    /// Applies committed raft entries in one backend commit. `None` entries
    /// (empty and conf-change entries) only advance the applied index.
    /// Entries at or below [`applied_index`](Self::applied_index) are skipped
    /// and get no `Applied`. An `Err` is a storage failure, fatal to the
    /// member; client errors are in each `Applied::result`.
    pub fn apply_batch(
        &mut self,
        entries: &[(u64, Option<&InternalRequest>)],
    ) -> Result<Vec<Applied>, StorageError> {
        let mut out = Vec::new();
        self.apply_batch_with(entries, |applied, _| out = applied)?;
        Ok(out)
    }

    /// Like [`MvccStore::apply_batch`], but hands the results to
    /// `before_commit` once every entry is applied in memory and before the
    /// backend commit. The apply actor answers clients there: the entries
    /// are already durable in the raft log, so a failed commit (fatal to the
    /// member) re-applies them, with the same results, after restart; and
    /// nothing can read the store between the answer and the commit (the
    /// apply actor is its only user).
    pub fn apply_batch_with(
        &mut self,
        entries: &[(u64, Option<&InternalRequest>)],
        before_commit: impl FnOnce(Vec<Applied>, &crate::auth::AuthStore),
    ) -> Result<(), StorageError> {
        self.check_usable()?;
        let mut batch = WriteBatch::default();
        let mut applied = Vec::new();
        let outcome = (|| -> Result<(), StorageError> {
            let reader = self.backend.reader()?;
            let mut applier = Applier {
                state: &mut self.state,
                reader: &reader,
                batch: &mut batch,
            };
            for (index, request) in entries {
                if *index <= applier.state.applied_index {
                    continue;
                }
                applied.push(applier.apply(*index, *request)?);
                applier.state.applied_index = *index;
            }
            Ok(())
        })();
        let outcome = outcome.and_then(|()| {
            if applied.is_empty() {
                return Ok(());
            }
            before_commit(applied, &self.state.auth);
            batch.meta = self.state.meta();
            self.backend.commit(batch)
        });
        match outcome {
            Ok(()) => Ok(()),
            Err(e) => {
                self.recover_after_failure();
                Err(e)
            }
        }
    }

    /// After a failed batch: forget the uncommitted changes by rebuilding the
    /// in-memory state from the backend, or poison the store.
    fn recover_after_failure(&mut self) {
        let reloaded = self
            .backend
            .reader()
            .and_then(|reader| State::load(&reader));
        match reloaded {
            Ok(state) => self.state = state,
            Err(e) => {
                tracing::error!(error = %e, "mvcc state rebuild after a failed commit failed");
                self.poisoned = true;
            }
        }
    }

    /// Users, roles, permissions and whether auth is on.
    pub fn auth(&self) -> &crate::auth::AuthStore {
        &self.state.auth
    }

    /// Active alarms: (member id, `AlarmType` value), ascending.
    pub fn alarms(&self) -> Vec<(u64, i32)> {
        self.state.alarms.iter().copied().collect()
    }

    /// The cluster's members, ascending by id.
    pub fn members(&self) -> Vec<Member> {
        self.state.members.values().cloned().collect()
    }

    /// Raft's configuration as of the applied index, from the member table
    /// (which changes in step with it): voters and learners, ascending.
    pub fn voters_and_learners(&self) -> (Vec<u64>, Vec<u64>) {
        let (learners, voters): (Vec<&Member>, Vec<&Member>) =
            self.state.members.values().partition(|m| m.is_learner);
        (
            voters.iter().map(|m| m.id).collect(),
            learners.iter().map(|m| m.id).collect(),
        )
    }

    /// Ids of the members removed from the cluster, ascending.
    pub fn removed_members(&self) -> Vec<u64> {
        self.state.removed_members.iter().copied().collect()
    }

    /// Prepares a restored image to found a new cluster (etcdctl's
    /// `snapshot restore`): the applied index goes back to 0 (the new
    /// cluster's raft log starts empty, so its entries must all apply), and
    /// the old cluster's members and alarms go (member ids change; the new
    /// members are recorded at the first start). Keys, revisions and leases
    /// stay.
    pub fn reset_for_restore(&mut self) -> Result<(), StorageError> {
        self.check_usable()?;
        let mut batch = WriteBatch::default();
        for id in self
            .state
            .members
            .keys()
            .chain(self.state.removed_members.iter())
        {
            batch.members.insert(*id, None);
        }
        for alarm in &self.state.alarms {
            batch.alarms.insert(*alarm, false);
        }
        self.state.applied_index = 0;
        batch.meta = self.state.meta();
        self.backend.commit(batch)?;
        self.state.members.clear();
        self.state.removed_members.clear();
        self.state.alarms.clear();
        Ok(())
    }

    /// Records the founding members (from `--initial-cluster`) when the
    /// store has none yet, as applied at `founding_index` (the raft log's
    /// founding point: the first entry the store applies is the next one).
    /// Every founding member derives the same list from the same flags, so
    /// this needs no raft round; members then publish their names and
    /// client URLs through raft (`MemberAttributes`).
    pub fn init_members(
        &mut self,
        members: &[Member],
        founding_index: u64,
    ) -> Result<(), StorageError> {
        self.check_usable()?;
        if !self.state.members.is_empty() {
            return Ok(());
        }
        self.state.applied_index = self.state.applied_index.max(founding_index);
        let mut batch = WriteBatch {
            meta: self.state.meta(),
            ..Default::default()
        };
        for m in members {
            batch.members.insert(m.id, Some(m.encode_to_vec()));
        }
        self.backend.commit(batch)?;
        for m in members {
            self.state.members.insert(m.id, m.clone());
        }
        Ok(())
    }

    /// Every lease, ascending by id.
    pub fn leases(&self) -> Vec<(i64, Lease)> {
        self.state
            .leases
            .iter()
            .map(|(id, lease)| (*id, *lease))
            .collect()
    }

    /// Lease `id`, if it exists.
    pub fn lease(&self, id: i64) -> Option<Lease> {
        self.state.leases.get(&id).copied()
    }

    /// The keys attached to lease `id`, sorted.
    pub fn lease_keys(&self, id: i64) -> Vec<Vec<u8>> {
        self.state
            .lease_keys
            .get(&id)
            .map(|k| k.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// etcd's `Maintenance.Hash`: CRC-32C over the whole store (every table,
    /// in key order), leaving out the applied index as etcd leaves out its
    /// consistent index, so members holding the same replicated state hash
    /// alike.
    pub fn hash(&self) -> Result<u32, StorageError> {
        self.check_usable()?;
        let reader = self.backend.reader()?;
        let mut h = super::hash::Crc32c::new();
        h.update(b"key");
        reader.scan(Revision::default(), &mut |rev, bytes| {
            h.update(&rev.to_bytes());
            h.update(bytes);
            Ok(true)
        })?;
        h.update(b"lease");
        for (id, lease) in reader.leases()? {
            h.update(&id.to_be_bytes());
            h.update(&lease.encode());
        }
        h.update(b"members");
        for (id, member) in reader.members()? {
            h.update(&id.to_be_bytes());
            h.update(&member);
        }
        h.update(b"alarm");
        for (member, alarm) in reader.alarms()? {
            h.update(&member.to_be_bytes());
            h.update(&alarm.to_be_bytes());
        }
        h.update(b"auth");
        if let Some(auth) = reader.auth()? {
            h.update(&auth);
        }
        h.update(b"meta");
        let meta = reader.meta()?;
        for value in [
            meta.current_revision,
            meta.scheduled_compact_revision,
            meta.finished_compact_revision,
        ] {
            h.update(&value.to_be_bytes());
        }
        Ok(h.finish())
    }

    /// Closes the store; its files may then be replaced (snapshot install)
    /// and reopened.
    pub fn close(self) {
        self.backend.close();
    }

    /// Writes a consistent, compacted LMDB image of the store to the file
    /// `path` (a snapshot), after writing any pending commits; a directory
    /// holding it as `data.mdb` opens with [`MvccStore::open`].
    pub fn copy_to_file(&mut self, path: &Path) -> Result<(), StorageError> {
        self.flush()?;
        self.backend.copy_to_file(path)
    }

    /// A read view of the whole store that owns its snapshot, for a long
    /// export on another thread while applying goes on (pending commits are
    /// written first; closing the store waits until the view is dropped).
    pub fn detached_reader(&mut self) -> Result<super::DetachedReader, StorageError> {
        self.check_usable()?;
        self.flush()?;
        self.backend.detached_reader()
    }

    /// Writes the backend's pending commits to disk (see
    /// [`super::Batched`]). On failure the in-memory state is rebuilt from
    /// what is committed, as after a failed apply.
    pub fn flush(&mut self) -> Result<(), StorageError> {
        self.check_usable()?;
        let flushed = self.backend.flush();
        if flushed.is_err() {
            self.recover_after_failure();
        }
        flushed
    }

    /// Whether the backend holds commits its batch interval says to write.
    pub fn flush_due(&self) -> bool {
        self.backend.flush_due()
    }

    /// [`MvccStore::flush`] if the backend's batch interval has passed.
    pub fn flush_if_due(&mut self) -> Result<(), StorageError> {
        if self.flush_due() {
            self.flush()?;
        }
        Ok(())
    }

    /// etcd's `HashKV` (`store.HashByRev`): CRC-32C over etcd's key-bucket
    /// name and every (revision key, KeyValue) up to `rev` (0 = current),
    /// skipping records a compaction at `rev` would drop at or below the
    /// compacted revision. Returns (hash, current revision, compacted
    /// revision, -1 if never compacted).
    pub fn hash_kv(&self, rev: i64) -> Result<(u32, i64, i64), EtcdError> {
        let (current, compacted) = (self.state.current_rev, self.state.compact_rev);
        if rev > 0 && rev <= compacted {
            return Err(EtcdError::Compacted);
        }
        if rev > 0 && rev > current {
            return Err(EtcdError::FutureRev);
        }
        let rev = if rev == 0 { current } else { rev };
        let keep = self.state.index.keep(rev);
        let hash = self.read(|view| {
            let mut crc = Crc32c::new();
            crc.update(b"key");
            view.reader.scan(Revision::default(), &mut |r, bytes| {
                if r.main > rev {
                    return Ok(false);
                }
                if r.main <= compacted && !keep.is_empty() && !keep.contains(&r) {
                    return Ok(true);
                }
                let (tombstone, kv) = split_record(bytes)?;
                crc.update(&r.etcd_bucket_key(tombstone));
                crc.update(kv);
                Ok(true)
            })?;
            Ok(crc.finish())
        })?;
        Ok((hash, current, compacted))
    }

    /// The events of revisions `from..=to` (main revisions), read back from
    /// the records in revision order, as a watcher that fell behind needs
    /// them; `prev_kv` is filled when asked (the key at `mod_revision - 1`,
    /// if still readable). `from` below the compacted revision is
    /// `Compacted`.
    pub fn events(&self, from: i64, to: i64, with_prev_kv: bool) -> Result<Vec<Event>, EtcdError> {
        self.events_window(from, to, usize::MAX, with_prev_kv)
            .map(|(events, _)| events)
    }

    /// Like [`MvccStore::events`], but stops after the first revision at
    /// which the events read so far exceed `max_bytes` (keys and values):
    /// a revision is never cut. Returns the events and the last revision
    /// they cover (`to`, or less when the budget ran out).
    pub fn events_window(
        &self,
        from: i64,
        to: i64,
        max_bytes: usize,
        with_prev_kv: bool,
    ) -> Result<(Vec<Event>, i64), EtcdError> {
        if from < self.state.compact_rev {
            return Err(EtcdError::Compacted);
        }
        self.read(|view| {
            let mut raw: Vec<(Revision, bool, KeyValue)> = Vec::new();
            let mut bytes = 0usize;
            let mut last = to;
            view.reader
                .scan(Revision::new(from.max(0), 0), &mut |r, record| {
                    if r.main > to {
                        return Ok(false);
                    }
                    if bytes > max_bytes
                        && raw.last().is_some_and(|(prev, _, _)| prev.main != r.main)
                    {
                        last = r.main - 1;
                        return Ok(false);
                    }
                    let (tombstone, kv) = decode_record(record)?;
                    bytes = bytes.saturating_add(kv.key.len() + kv.value.len());
                    raw.push((r, tombstone, kv));
                    Ok(true)
                })?;
            let mut events = Vec::with_capacity(raw.len());
            for (r, tombstone, mut kv) in raw {
                let prev_kv = if with_prev_kv {
                    match view.index().get(&kv.key, r.main - 1) {
                        Some(at) if r.main > view.first_rev() => Some(view.load(at.modified)?),
                        _ => None,
                    }
                } else {
                    None
                };
                let kind = if tombstone {
                    kv.mod_revision = r.main;
                    EventType::Delete
                } else {
                    EventType::Put
                };
                events.push(Event {
                    r#type: kind as i32,
                    kv: Some(kv),
                    prev_kv,
                });
            }
            Ok((events, last))
        })
    }

    /// Checks that the key index and the stored records agree exactly (every
    /// indexed revision stored, nothing else stored). For tests and
    /// diagnostics: it scans the whole store.
    pub fn verify_index(&self) -> Result<(), StorageError> {
        let mut indexed: Vec<Revision> = self
            .state
            .index
            .iter()
            .flat_map(|(_, ki)| ki.revisions().collect::<Vec<_>>())
            .collect();
        indexed.sort_unstable();
        let reader = self.backend.reader()?;
        let mut stored = Vec::new();
        reader.scan(Revision::default(), &mut |r, _| {
            stored.push(r);
            Ok(true)
        })?;
        if indexed != stored {
            return Err(StorageError::Corrupt(format!(
                "key index has {} revisions, store has {}",
                indexed.len(),
                stored.len()
            )));
        }
        Ok(())
    }
}
