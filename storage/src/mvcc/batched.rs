//! Batched backend commits: etcd's backend batch interval
//! (`--backend-batch-interval`, `--backend-batch-limit`) for any
//! [`MvccBackend`].
//!
//! 1. [`Batched::commit`] merges the apply batch into one pending
//!    [`WriteBatch`] in memory instead of committing it: new records are
//!    appended (revisions only grow), deletions cancel pending records or
//!    are remembered for the stored ones, lease/member/alarm changes
//!    overwrite earlier ones, the meta values are the newest.
//! 2. The pending batch is written to the inner backend in one commit (one
//!    LMDB txn, one fsync) by [`MvccBackend::flush`]. The owner decides
//!    when: [`MvccBackend::flush_due`] says whether the oldest pending change
//!    is older than the interval, the pending records pass the record or
//!    byte limit, or a compaction deleted records; the apply actor asks after
//!    every batch and on a timer, so an idle store is written within an
//!    interval. Images (snapshots, backups, defragmentation) and close flush
//!    first.
//! 3. Readers see the committed state with the pending batch laid over it
//!    ([`BatchedReader`]), so nothing reads stale data between flushes.
//! 4. The bytes in use (what the quota is checked against) are the inner
//!    backend's plus what the pending records will take once written
//!    ([`MvccBackend::record_footprint`]).
//!
//! Why this is safe: every entry is durable in the raft log before it is
//! applied, and the applied index travels in the same pending batch as the
//! changes it made. A crash before a flush loses the pending batch and the
//! applied index together; at restart raft replays those entries. The raft
//! log is only compacted after a snapshot image, which flushes first, so the
//! entries to replay are always still there.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use super::backend::{BackendReader, Lease, Meta, MvccBackend, ScanFn, WriteBatch};
use super::revision::Revision;
use crate::error::StorageError;

/// When pending commits are written: etcd's defaults are 100 ms and 10,000
/// operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    /// Pending changes are written once the oldest is this old (zero: every
    /// commit is written at once).
    pub interval: Duration,
    /// ... or once this many records are pending.
    pub max_records: usize,
    /// ... or once the pending records hold this many bytes.
    pub max_bytes: usize,
}

impl Default for BatchLimits {
    fn default() -> Self {
        Self {
            interval: Duration::from_millis(100),
            max_records: 10_000,
            max_bytes: 32 << 20,
        }
    }
}

/// Changes merged since the last write to the inner backend.
#[derive(Debug, Default)]
struct Pending {
    /// Records, lease/member/alarm changes and meta; `batch.deleted` stays
    /// empty until the flush (deletions live in `deleted`).
    batch: WriteBatch,
    /// Stored records to delete.
    deleted: BTreeSet<Revision>,
    /// Bytes the pending records will take once written.
    bytes: usize,
    /// When the oldest pending change was merged (`None`: nothing pending).
    since: Option<Instant>,
}

impl Pending {
    /// Merges `batch`; `footprint` tells the bytes a record will take once
    /// written.
    fn merge(&mut self, batch: WriteBatch, footprint: impl Fn(usize) -> usize) {
        let WriteBatch {
            mut records,
            deleted,
            leases,
            members,
            alarms,
            auth,
            meta,
        } = batch;
        for rev in deleted {
            match self.batch.records.remove(&rev) {
                Some(record) => self.bytes -= footprint(record.len()),
                None => {
                    self.deleted.insert(rev);
                }
            }
        }
        self.bytes += records.values().map(|r| footprint(r.len())).sum::<usize>();
        self.batch.records.append(&mut records);
        self.batch.leases.extend(leases);
        self.batch.members.extend(members);
        self.batch.alarms.extend(alarms);
        if auth.is_some() {
            self.batch.auth = auth;
        }
        self.batch.meta = meta;
        self.since.get_or_insert_with(Instant::now);
    }

    fn take(&mut self) -> WriteBatch {
        let mut batch = std::mem::take(&mut self.batch);
        batch.deleted = std::mem::take(&mut self.deleted).into_iter().collect();
        self.bytes = 0;
        self.since = None;
        batch
    }
}

/// A backend whose commits are held in memory and written in batches (see
/// the module doc).
pub struct Batched<B: MvccBackend> {
    inner: B,
    pending: Pending,
    limits: BatchLimits,
}

impl<B: MvccBackend> std::fmt::Debug for Batched<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batched")
            .field("limits", &self.limits)
            .field("pending_records", &self.pending.batch.records.len())
            .field("pending_bytes", &self.pending.bytes)
            .finish()
    }
}

impl<B: MvccBackend> Batched<B> {
    pub fn new(inner: B, limits: BatchLimits) -> Self {
        Self {
            inner,
            pending: Pending::default(),
            limits,
        }
    }

    /// Whether the pending changes should be written now. Deletions
    /// (compaction) are written at once: until they are, the bytes in use
    /// (the quota's measure) would still count what they free.
    fn over_limits(&self) -> bool {
        let p = &self.pending;
        p.since.is_some_and(|t| t.elapsed() >= self.limits.interval)
            || p.batch.records.len() >= self.limits.max_records
            || p.bytes >= self.limits.max_bytes
            || !p.deleted.is_empty()
    }
}

impl<B: MvccBackend> MvccBackend for Batched<B> {
    type Reader<'a> = BatchedReader<'a, B::Reader<'a>>;

    fn detached_reader(&mut self) -> Result<super::backend::DetachedReader, StorageError> {
        self.flush()?;
        self.inner.detached_reader()
    }

    fn reader(&self) -> Result<Self::Reader<'_>, StorageError> {
        Ok(BatchedReader {
            base: self.inner.reader()?,
            pending: &self.pending,
        })
    }

    fn commit(&mut self, batch: WriteBatch) -> Result<(), StorageError> {
        let inner = &self.inner;
        self.pending.merge(batch, |len| inner.record_footprint(len));
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StorageError> {
        if self.pending.since.is_none() {
            return Ok(());
        }
        // On failure the pending changes are gone: the store rebuilds its
        // memory from what is committed (and the member restarts and
        // replays them from the raft log).
        self.inner.commit(self.pending.take())
    }

    fn flush_due(&self) -> bool {
        self.pending.since.is_some() && self.over_limits()
    }

    fn size(&self) -> Result<i64, StorageError> {
        Ok(self.inner.size()?.max(self.size_in_use()?))
    }

    fn size_in_use(&self) -> Result<i64, StorageError> {
        Ok(self.inner.size_in_use()? + self.pending.bytes as i64)
    }

    fn copy_to_file(&self, path: &Path) -> Result<(), StorageError> {
        if self.pending.since.is_some() {
            return Err(StorageError::Corrupt(
                "an image of a store with unwritten commits; flush first".into(),
            ));
        }
        self.inner.copy_to_file(path)
    }

    fn close(mut self) {
        if let Err(e) = self.flush() {
            tracing::error!(error = %e, "writing pending mvcc commits at close failed; raft replays them");
        }
        self.inner.close();
    }
}

/// The committed state with the pending changes laid over it.
pub struct BatchedReader<'a, R> {
    base: R,
    pending: &'a Pending,
}

impl<R: BackendReader> BatchedReader<'_, R> {
    fn overlay<K: Ord + Copy, V: Clone, C>(
        stored: Vec<(K, V)>,
        changes: &BTreeMap<K, C>,
        change: impl Fn(&C) -> Option<V>,
    ) -> Vec<(K, V)> {
        let mut all: BTreeMap<K, V> = stored.into_iter().collect();
        for (k, c) in changes {
            match change(c) {
                Some(v) => all.insert(*k, v),
                None => all.remove(k),
            };
        }
        all.into_iter().collect()
    }
}

impl<R: BackendReader> BackendReader for BatchedReader<'_, R> {
    fn meta(&self) -> Result<Meta, StorageError> {
        match self.pending.since {
            Some(_) => Ok(self.pending.batch.meta),
            None => self.base.meta(),
        }
    }

    fn leases(&self) -> Result<Vec<(i64, Lease)>, StorageError> {
        Ok(Self::overlay(
            self.base.leases()?,
            &self.pending.batch.leases,
            |c| *c,
        ))
    }

    fn members(&self) -> Result<Vec<(u64, Vec<u8>)>, StorageError> {
        Ok(Self::overlay(
            self.base.members()?,
            &self.pending.batch.members,
            Clone::clone,
        ))
    }

    fn alarms(&self) -> Result<Vec<(u64, i32)>, StorageError> {
        let stored = self.base.alarms()?.into_iter().map(|a| (a, ())).collect();
        let all = Self::overlay(stored, &self.pending.batch.alarms, |raised| {
            raised.then_some(())
        });
        Ok(all.into_iter().map(|(a, ())| a).collect())
    }

    fn auth(&self) -> Result<Option<Vec<u8>>, StorageError> {
        match &self.pending.batch.auth {
            Some(auth) => Ok(Some(auth.clone())),
            None => self.base.auth(),
        }
    }

    fn record(&self, rev: Revision) -> Result<Option<&[u8]>, StorageError> {
        if let Some(record) = self.pending.batch.records.get(&rev) {
            return Ok(Some(record));
        }
        if self.pending.deleted.contains(&rev) {
            return Ok(None);
        }
        self.base.record(rev)
    }

    fn scan(&self, from: Revision, f: &mut ScanFn<'_>) -> Result<(), StorageError> {
        // Pending records are newer than every stored one (revisions only
        // grow), so the stored ones come first.
        let mut go_on = true;
        self.base.scan(from, &mut |rev, bytes| {
            if self.pending.deleted.contains(&rev) {
                return Ok(true);
            }
            go_on = f(rev, bytes)?;
            Ok(go_on)
        })?;
        if !go_on {
            return Ok(());
        }
        for (rev, bytes) in self.pending.batch.records.range(from..) {
            if !f(*rev, bytes)? {
                break;
            }
        }
        Ok(())
    }
}
