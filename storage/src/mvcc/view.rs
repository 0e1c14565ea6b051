//! What a read sees: the key index plus a way to load a record by revision.
//!
//! 1. [`ReadView`] serves `range` and read-only txns from the committed state
//!    (a backend reader opened for the one call).
//! 2. The write path (`apply::WriteTxn`) implements the same [`View`] over the
//!    batch being built, so ranges and compares inside a txn see the txn's
//!    earlier writes, as etcd's `storeTxnWrite.Range` does.
//! 3. [`Fault`] separates a client's error (answered in `Applied.result`)
//!    from a storage failure (fatal to the member).

use proto::mvccpb::KeyValue;

use super::backend::{BackendReader, decode_record};
use super::key_index::TreeIndex;
use super::revision::Revision;
use super::state::State;
use crate::error::{EtcdError, StorageError};

/// A failed request: the client's mistake, or a broken store.
#[derive(Debug)]
pub(crate) enum Fault {
    Client(EtcdError),
    Storage(StorageError),
}

impl From<EtcdError> for Fault {
    fn from(e: EtcdError) -> Self {
        Self::Client(e)
    }
}

impl From<StorageError> for Fault {
    fn from(e: StorageError) -> Self {
        Self::Storage(e)
    }
}

/// A consistent view of the store for reads.
pub(crate) trait View {
    fn index(&self) -> &TreeIndex;
    /// The revision reads see as current (etcd's `TxnRead.Rev`).
    fn rev(&self) -> i64;
    /// The compacted revision, -1 if never compacted (etcd's `FirstRev`).
    fn first_rev(&self) -> i64;
    /// The KeyValue stored at `rev`, which the index says exists.
    fn load(&self, rev: Revision) -> Result<KeyValue, Fault>;
    fn lease_exists(&self, id: i64) -> bool;
}

/// Decodes a record that the index points at.
pub(crate) fn load_record(bytes: Option<&[u8]>, rev: Revision) -> Result<KeyValue, Fault> {
    let bytes = bytes.ok_or_else(|| {
        StorageError::Corrupt(format!("key index points at missing record {rev}"))
    })?;
    let (_, kv) = decode_record(bytes)?;
    Ok(kv)
}

/// The committed state, read through one backend reader.
pub(crate) struct ReadView<'a, R: BackendReader + ?Sized> {
    pub state: &'a State,
    pub reader: &'a R,
}

impl<R: BackendReader + ?Sized> View for ReadView<'_, R> {
    fn index(&self) -> &TreeIndex {
        &self.state.index
    }

    fn rev(&self) -> i64 {
        self.state.current_rev
    }

    fn first_rev(&self) -> i64 {
        self.state.compact_rev
    }

    fn load(&self, rev: Revision) -> Result<KeyValue, Fault> {
        load_record(self.reader.record(rev)?, rev)
    }

    fn lease_exists(&self, id: i64) -> bool {
        self.state.leases.contains_key(&id)
    }
}
