//! oxcd persistence on LMDB (through `heed`): synchronous, no actix, no tokio.
//!
//! Two LMDB environments per member:
//! 1. [`raft_log`]: the raft log (entries, hard state, conf state, snapshot
//!    metadata). It implements `raft::Storage`; every write txn is fsynced
//!    because anything acknowledged to a peer must survive a crash.
//! 2. [`mvcc`]: the MVCC key-value store. Records are keyed by revision
//!    (main, sub), never by user key (LMDB keys are at most 511 bytes, etcd keys
//!    up to the request limit); the key index lives in memory and is rebuilt at
//!    start, as etcd does. The applied raft index is written in the same write
//!    txn as the changes it covers, so every entry is applied exactly once.
//!
//! Both stores sit behind traits with an in-memory twin; one conformance suite
//! runs against both.
//!
//! Beside them, [`bbolt`] reads and writes bbolt files (the format of etcd's
//! backend) and [`etcd_snapshot`] maps the MVCC store to and from etcd 3.4's
//! backend layout in one: etcd's snapshot format.

pub mod auth;
pub mod bbolt;
pub mod error;
pub mod etcd_snapshot;
pub mod mvcc;
pub mod raft_log;
pub mod snap;

pub use error::{EtcdError, StorageError};
