//! The MVCC key-value store, faithful to etcd 3.4's `mvcc` package and its
//! `applierV3backend`, persisted in its own LMDB environment.
//!
//! How a write flows:
//! 1. The gRPC facade checks the request with [`validate`] (etcd's
//!    `v3rpc/key.go`) and proposes it through raft.
//! 2. The apply actor hands committed entries to [`MvccStore::apply_batch`].
//!    Each request runs at the current revision `R`; its changes get
//!    revision `R + 1` with sub-revisions `0, 1, ...` (a request that changes
//!    nothing does not bump the revision).
//! 3. A change writes a record keyed by its revision (never by user key:
//!    etcd keys may be 1.5 MiB, LMDB keys 511 bytes), updates the in-memory
//!    key index (generations per key, as etcd's `keyIndex`) and the lease
//!    attachments, and is recorded as an `mvccpb.Event` (what an etcd
//!    watcher would receive).
//! 4. The whole batch, with the applied raft index and the current and
//!    compacted revisions, is committed in one backend write: an entry is
//!    applied exactly once across crashes. On disk, [`Batched`] holds
//!    commits for up to etcd's backend batch interval and writes them in
//!    one LMDB txn (one fsync); the raft log replays what a crash loses.
//! 5. Each entry's [`Applied`] carries its response (or client error) and its
//!    events. Nothing consumes the events yet: there is no Watch service and
//!    no watch hub. They, and [`MvccStore::events`] (past events read back
//!    from the records), are what one would be built on.
//!
//! How a read flows:
//! 1. [`MvccStore::range`] / [`MvccStore::txn_read_only`] look keys up in the
//!    key index (O(log n) for one key) and load the records they point at
//!    through a backend reader that lives for that one call.
//! 2. Response headers carry only `revision`; the facade fills the rest.
//!
//! At open, the key index and lease attachments are rebuilt by one scan of
//! the records in revision order (etcd's `store.restore`).
//!
//! Storage sits behind [`MvccBackend`]: [`LmdbBackend`] (heed), the
//! in-memory [`MemBackend`], and [`Batched`] over either; one conformance
//! suite runs against them. The
//! LMDB durability choice is documented in [`lmdb`].

mod apply;
mod auth_apply;
mod backend;
mod batched;
pub mod gosort;
mod hash;
mod key_index;
pub mod lmdb;
mod mem;
mod members;
mod range;
mod revision;
mod state;
mod store;
mod txn;
pub mod validate;
mod view;

#[cfg(test)]
mod conformance;

pub use apply::{Applied, ApplyResponse, MAX_LEASE_TTL};
pub use auth_apply::check_txn;
pub use backend::{
    BackendReader, DetachedReader, Lease, Meta, MvccBackend, RECORD_TOMBSTONE, ScanFn, WriteBatch,
    decode_record, encode_record, split_record,
};
pub use batched::{BatchLimits, Batched, BatchedReader};
pub use lmdb::{LmdbBackend, LmdbOptions, LmdbReader, write_image};
pub use mem::{MemBackend, MemReader};
pub use revision::Revision;
pub use store::MvccStore;
pub use txn::is_txn_read_only;
