//! The apply actor's logic, without actix: applies committed entries to the
//! MVCC store and answers waiters and reads.
//!
//! 1. `apply` decodes every committed entry's request envelope and applies the
//!    whole batch in one MVCC write txn (`MvccStore::apply_batch`), which also
//!    records the applied index: an entry is applied exactly once across
//!    crashes.
//! 2. Each result goes to the waiter registered under the entry's request id
//!    (only on the member that proposed it), with the response header filled.
//! 3. Linearizable reads wait in `waiting_reads` until the applied index
//!    reaches their read index, then are served from a fresh read txn.

use std::collections::{BTreeMap, HashMap};

use proto::Message as _;
use proto::etcdserverpb::ResponseHeader;
use proto::internal::InternalRequest;
use raft::eraftpb::EntryType;
use storage::mvcc::{ApplyResponse, MvccBackend, MvccStore};
use storage::{EtcdError, StorageError};

use crate::raft::core::{CommittedBatch, ReadBatch};
use crate::raft::{PendingRead, ReadRequest, ReadResponse};

/// The ids every response header carries.
#[derive(Debug, Clone, Copy)]
pub struct HeaderInfo {
    pub cluster_id: u64,
    pub member_id: u64,
}

/// What `Maintenance.Status` needs from the store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStatus {
    pub revision: i64,
    pub compact_revision: i64,
    pub applied_index: u64,
    pub db_size: i64,
    pub db_size_in_use: i64,
    pub raft_term: u64,
}

/// The apply actor's state.
pub struct ApplyCore<B: MvccBackend> {
    store: MvccStore<B>,
    header: HeaderInfo,
    term: u64,
    waiting_reads: BTreeMap<u64, Vec<PendingRead>>,
}

impl<B: MvccBackend> ApplyCore<B> {
    pub fn new(store: MvccStore<B>, header: HeaderInfo) -> Self {
        Self {
            store,
            header,
            term: 0,
            waiting_reads: BTreeMap::new(),
        }
    }

    pub fn applied_index(&self) -> u64 {
        self.store.applied_index()
    }

    pub fn status(&self) -> StoreStatus {
        StoreStatus {
            revision: self.store.current_revision(),
            compact_revision: self.store.compact_revision(),
            applied_index: self.store.applied_index(),
            db_size: self.store.db_size(),
            db_size_in_use: self.store.db_size_in_use(),
            raft_term: self.term,
        }
    }

    /// Applies one committed batch; returns the applied index. An `Err` is a
    /// storage failure and fatal to the member.
    pub fn apply(&mut self, batch: CommittedBatch) -> Result<u64, StorageError> {
        self.term = self.term.max(batch.term);
        let requests: Vec<(u64, Option<InternalRequest>)> = batch
            .entries
            .iter()
            .map(|e| {
                let request = (e.get_entry_type() == EntryType::EntryNormal
                    && !e.get_data().is_empty())
                .then(|| InternalRequest::decode(e.get_data()))
                .and_then(|r| match r {
                    Ok(r) => Some(r),
                    Err(err) => {
                        // Every member decodes the same bytes the same way,
                        // so skipping keeps members identical; it can only
                        // come from a bug, so say so loudly.
                        tracing::error!(index = e.get_index(), error = %err, "undecodable entry skipped");
                        None
                    }
                });
                (e.get_index(), request)
            })
            .collect();
        let refs: Vec<(u64, Option<&InternalRequest>)> =
            requests.iter().map(|(i, r)| (*i, r.as_ref())).collect();
        let applied = self.store.apply_batch(&refs)?;
        let mut waiters: HashMap<u64, _> = batch.waiters.into_iter().collect();
        for result in applied {
            if let Some(reply) = waiters.remove(&result.id) {
                let answer = result.result.map(|mut r| {
                    self.fill(&mut r);
                    r
                });
                let _ = reply.send(answer);
            }
        }
        // A waiter whose entry is not in the batch cannot be answered from
        // it (its entry was replaced by a newer leader): say so.
        for (_, reply) in waiters {
            let _ = reply.send(Err(EtcdError::LeaderChanged));
        }
        self.serve_ready_reads();
        Ok(self.store.applied_index())
    }

    /// A read index arrived for a batch of reads.
    pub fn read_ready(&mut self, batch: ReadBatch) {
        self.term = self.term.max(batch.term);
        self.waiting_reads
            .entry(batch.index)
            .or_default()
            .extend(batch.reads);
        self.serve_ready_reads();
    }

    /// Serves a read at once (serializable reads).
    pub fn serve(&self, read: PendingRead) {
        let answer = self.read(&read.request);
        let _ = read.reply.send(answer);
    }

    fn read(&self, request: &ReadRequest) -> Result<ReadResponse, EtcdError> {
        match request {
            ReadRequest::Range(r) => self.store.range(r).map(|mut resp| {
                resp.header = Some(self.header(resp.header.as_ref()));
                ReadResponse::Range(resp)
            }),
            ReadRequest::Txn(t) => self.store.txn_read_only(t).map(|mut resp| {
                resp.header = Some(self.header(resp.header.as_ref()));
                ReadResponse::Txn(resp)
            }),
        }
    }

    fn serve_ready_reads(&mut self) {
        let applied = self.store.applied_index();
        while let Some(entry) = self.waiting_reads.first_entry() {
            if *entry.key() > applied {
                break;
            }
            for read in entry.remove() {
                self.serve(read);
            }
        }
    }

    fn header(&self, from_store: Option<&ResponseHeader>) -> ResponseHeader {
        let revision = from_store.map(|h| h.revision).filter(|r| *r != 0);
        ResponseHeader {
            cluster_id: self.header.cluster_id,
            member_id: self.header.member_id,
            revision: revision.unwrap_or_else(|| self.store.current_revision()),
            raft_term: self.term,
        }
    }

    fn fill(&self, response: &mut ApplyResponse) {
        let slot = match response {
            ApplyResponse::Put(r) => &mut r.header,
            ApplyResponse::DeleteRange(r) => &mut r.header,
            ApplyResponse::Txn(r) => &mut r.header,
            ApplyResponse::Compaction(r) => &mut r.header,
            ApplyResponse::LeaseGrant(r) => &mut r.header,
            ApplyResponse::LeaseRevoke(r) => &mut r.header,
            ApplyResponse::Empty => return,
        };
        *slot = Some(self.header(slot.as_ref()));
    }

    /// Fails every waiting read (shutdown).
    pub fn shutdown(&mut self) {
        for (_, reads) in std::mem::take(&mut self.waiting_reads) {
            for r in reads {
                let _ = r.reply.send(Err(EtcdError::Stopped));
            }
        }
    }
}
