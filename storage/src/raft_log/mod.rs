//! The raft log store: raft-rs's `Storage` on LMDB, plus an in-memory twin.
//!
//! What one member keeps for raft, and how it flows:
//! 1. At start the node opens [`LmdbLogStore`] (its own LMDB environment,
//!    default flags, so every commit is fsynced). A fresh member
//!    ([`LogStore::is_empty`]) is bootstrapped with [`LogStore::found`] and
//!    the founding `ConfState` (the log starts after a committed founding
//!    point, index 1, term 1), or, when it joins an existing cluster, with
//!    [`LogStore::initialize`] and no configuration at all: it learns the
//!    configuration from the snapshot the leader must send it.
//! 2. The raft actor builds a `RawNode` over a clone of the store. raft-rs
//!    reads it through `raft::Storage` (`initial_state`, `entries`, `term`,
//!    `first_index`, `last_index`, `snapshot`); each read opens its own short
//!    read txn and drops it before returning, so the raft thread never pins
//!    old pages while the log writer thread commits.
//! 3. For every Ready the log writer calls [`LogStore::write`] with one
//!    [`LogWrite`]: snapshot (installed first), entries (conflicting suffix
//!    replaced), hard state and the LightReady commit index, all in ONE
//!    fsynced write txn. Writing entries and hard state separately lets a
//!    crash leave a hard state whose commit lies beyond the local log, which
//!    raft-rs refuses at the next start ("commit ... is out of range").
//! 4. When raft-rs asks `snapshot()` for a follower and the stored one is
//!    missing or predates the follower's membership, the store answers
//!    `SnapshotTemporarilyUnavailable` (raft-rs retries later) and raises
//!    [`LogStore::take_image_wanted`]; the node writes an image at once.
//!    After a state-machine snapshot the node calls [`LogStore::set_snapshot`]
//!    (what `snapshot()` serves to lagging followers) and then
//!    [`LogStore::compact`]; the term of the last discarded entry is kept so
//!    `term(first_index - 1)` keeps matching (raft-rs `Storage::term` docs).
//! 5. Conf changes are persisted with [`LogStore::set_conf_state`] when
//!    applied, so `initial_state()` returns the current membership.
//!
//! Both stores share the validation rules in `plan`; one conformance suite
//! (`conformance.rs`) runs against both, plus a randomized differential test
//! and a real single-node `RawNode` over LMDB (`raw_node_tests.rs`).

mod codec;
mod lmdb;
mod mem;
mod plan;

#[cfg(test)]
mod conformance;
#[cfg(test)]
mod raw_node_tests;

use raft::eraftpb::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};

use crate::StorageError;

pub use lmdb::LmdbLogStore;
pub use mem::MemLogStore;
pub use plan::FOUNDING_INDEX;

/// What one Ready persists, in ONE atomic write txn (snapshot first, then
/// entries, then hard state, then the commit index).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogWrite {
    /// Installed first: drops every entry, sets the first index to
    /// `index + 1`, keeps `(index, term)` for matching, takes the snapshot's
    /// conf state, raises `hard_state.term` to the snapshot term and sets
    /// `hard_state.commit` to its index. The snapshot (with its data) also
    /// becomes the one `snapshot()` returns. Fails with `SnapshotOutOfDate`
    /// when its index is below the first index.
    pub snapshot: Option<Snapshot>,
    /// Appended; stored entries with an index >= the first new index are
    /// replaced (conflict truncation). Entries already compacted are skipped
    /// (they are committed, so they match). Must be contiguous and must not
    /// leave a gap after the last index.
    pub entries: Vec<Entry>,
    /// Replaces the stored hard state.
    pub hard_state: Option<HardState>,
    /// LightReady commit index: updates `hard_state.commit` only.
    pub commit: Option<u64>,
}

impl LogWrite {
    /// True when the write carries nothing to persist.
    pub fn is_empty(&self) -> bool {
        self.snapshot.is_none()
            && self.entries.is_empty()
            && self.hard_state.is_none()
            && self.commit.is_none()
    }
}

/// A raft log store: raft-rs reads it through `raft::Storage`, the log writer
/// changes it through these methods. Clones share one store; every write is
/// atomic and durable when it returns `Ok`. Any error is fatal to the caller
/// (stop the member, recover from disk and peers).
pub trait LogStore: raft::Storage + Clone + Send + Sync + 'static {
    /// Persists one Ready atomically (LMDB: one fsynced write txn). See
    /// [`LogWrite`] for the order and the rules.
    fn write(&self, w: &LogWrite) -> Result<(), StorageError>;

    /// Persists the conf state produced by applying a conf change.
    fn set_conf_state(&self, cs: &ConfState) -> Result<(), StorageError>;

    /// Discards entries before `compact_index`, keeping the term of
    /// `compact_index - 1` for matching. A no-op when `compact_index <=
    /// first_index()`; an error when it is beyond `last_index() + 1`.
    ///
    /// Never discards an entry the stored snapshot does not cover: a follower
    /// that needs a discarded entry is sent the snapshot, so compaction stops
    /// at `snapshot index + 1` (with a warning) when asked to go further. Call
    /// [`LogStore::set_snapshot`] first.
    fn compact(&self, compact_index: u64) -> Result<(), StorageError>;

    /// Remembers the latest state-machine snapshot (metadata + opaque data)
    /// that `snapshot()` returns. A snapshot older than the stored one is
    /// ignored (the stored one stays the latest).
    fn set_snapshot(&self, snap: &Snapshot) -> Result<(), StorageError>;

    /// The persisted hard state.
    fn hard_state(&self) -> HardState;

    /// The persisted conf state.
    fn conf_state(&self) -> ConfState;

    /// Metadata of the stored snapshot, if any (tells how far the log may be
    /// compacted).
    fn snapshot_metadata(&self) -> Option<SnapshotMetadata>;

    /// True when nothing was ever written (fresh member): the caller
    /// bootstraps it with [`LogStore::initialize`].
    fn is_empty(&self) -> bool;

    /// Bootstraps a fresh member with a conf state; the log stays at index 0
    /// (like `MemStorage::new_with_conf_state`). A member joining an existing
    /// cluster starts this way with an empty conf state and learns the
    /// configuration from the leader's snapshot. Fails when the store is not
    /// empty.
    fn initialize(&self, cs: &ConfState) -> Result<(), StorageError>;

    /// Bootstraps a founding member of a new cluster: the founding conf
    /// state, with the log starting after a committed founding point at
    /// index 1, term 1 (as etcd's founders start at term 1 with their
    /// founding conf changes committed). Nothing at or below that point can
    /// be sent to a member added later, so it is always sent a snapshot,
    /// which carries the configuration. Fails when the store is not empty.
    fn found(&self, cs: &ConfState) -> Result<(), StorageError>;

    /// True (once) when raft asked `snapshot()` for one the store did not
    /// have: none yet, or one whose configuration does not name the
    /// receiver (a member added after it). The node then writes a new image.
    fn take_image_wanted(&self) -> bool;
}

/// Turns a store failure into what raft-rs expects from `raft::Storage`:
/// raft's own errors pass through, anything else becomes `Store(Other)`.
fn to_raft_error(e: StorageError) -> raft::Error {
    match e {
        StorageError::Raft(e) => e,
        other => raft::Error::Store(raft::StorageError::Other(Box::new(other))),
    }
}
