//! The in-memory twin of [`LmdbLogStore`](super::LmdbLogStore): the same rules
//! (`plan`), no disk. For tests of the layers above and for the conformance
//! suite that pins both stores to one behaviour.
//!
//! 1. One `RwLock` guards the state, the entries and the snapshot; clones
//!    share it.
//! 2. A change is planned against the current state first, then applied, so a
//!    refused write changes nothing (the twin of an aborted LMDB txn).
//! 3. `raft::Storage` reads take the read lock only for the call.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use raft::eraftpb::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use raft::{GetEntriesContext, RaftState, Storage};

use super::plan::{self, LogState, TermAt};
use super::{LogStore, LogWrite};
use crate::StorageError;

/// An in-memory [`LogStore`]; clones share one log.
#[derive(Clone, Default)]
pub struct MemLogStore {
    core: Arc<RwLock<MemCore>>,
    image_wanted: Arc<AtomicBool>,
}

#[derive(Default)]
struct MemCore {
    state: LogState,
    /// `entries[i]` has index `state.bounds.first_index() + i`.
    entries: VecDeque<Entry>,
    snapshot: Option<Snapshot>,
}

impl MemCore {
    /// Position of a stored index in `entries` (caller checked the bounds).
    fn offset(&self, index: u64) -> usize {
        usize::try_from(index - self.state.bounds.first_index()).expect("log offset fits usize")
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        match plan::term_at(self.state.bounds, idx)? {
            TermAt::Known(term) => Ok(term),
            TermAt::Stored => Ok(self.entries[self.offset(idx)].term),
        }
    }
}

impl MemLogStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn read(&self) -> RwLockReadGuard<'_, MemCore> {
        self.core.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock(&self) -> RwLockWriteGuard<'_, MemCore> {
        self.core.write().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Storage for MemLogStore {
    fn initial_state(&self) -> raft::Result<RaftState> {
        let core = self.read();
        Ok(RaftState::new(
            core.state.hard_state.clone(),
            core.state.conf_state.clone(),
        ))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        let core = self.read();
        plan::check_entries_range(core.state.bounds, low, high)?;
        let range = core.offset(low)..core.offset(high);
        plan::page(core.entries.range(range).cloned().map(Ok), max_size.into())
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        self.read().term(idx)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.read().state.bounds.first_index())
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.read().state.bounds.last_index)
    }

    fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<Snapshot> {
        let found = plan::snapshot_for(self.read().snapshot.clone(), request_index, to);
        if found.is_err() {
            self.image_wanted.store(true, Ordering::Release);
        }
        found
    }
}

impl LogStore for MemLogStore {
    fn write(&self, w: &LogWrite) -> Result<(), StorageError> {
        let mut core = self.lock();
        let plan = plan::plan_write(w, &core.state)?;
        if plan.is_noop() {
            return Ok(());
        }
        if let Some(snap) = plan.install {
            core.entries.clear();
            core.snapshot = Some(snap.clone());
        }
        if let Some(first) = plan.append.first() {
            let keep = usize::try_from(first.index - plan.next.bounds.first_index())
                .expect("log offset fits usize");
            core.entries.truncate(keep);
            core.entries.extend(plan.append.iter().cloned());
        }
        core.state = plan.next;
        Ok(())
    }

    fn set_conf_state(&self, cs: &ConfState) -> Result<(), StorageError> {
        let mut core = self.lock();
        core.state.conf_state = cs.clone();
        core.state.written = true;
        Ok(())
    }

    fn compact(&self, compact_index: u64) -> Result<(), StorageError> {
        let mut core = self.lock();
        let Some(compact_index) = plan::plan_compact(&core.state, compact_index)? else {
            return Ok(());
        };
        let term = core.term(compact_index - 1)?;
        let drop = core.offset(compact_index);
        core.entries.drain(..drop);
        core.state.bounds.truncated_index = compact_index - 1;
        core.state.bounds.truncated_term = term;
        Ok(())
    }

    fn set_snapshot(&self, snap: &Snapshot) -> Result<(), StorageError> {
        let mut core = self.lock();
        if plan::replaces_snapshot(&core.state, snap) {
            core.snapshot = Some(snap.clone());
            core.state.snapshot = Some(snap.get_metadata().clone());
            core.state.written = true;
        }
        Ok(())
    }

    fn hard_state(&self) -> HardState {
        self.read().state.hard_state.clone()
    }

    fn conf_state(&self) -> ConfState {
        self.read().state.conf_state.clone()
    }

    fn snapshot_metadata(&self) -> Option<SnapshotMetadata> {
        self.read().state.snapshot.clone()
    }

    fn is_empty(&self) -> bool {
        !self.read().state.written
    }

    fn initialize(&self, cs: &ConfState) -> Result<(), StorageError> {
        let mut core = self.lock();
        plan::check_initialize(&core.state)?;
        core.state.conf_state = cs.clone();
        core.state.written = true;
        Ok(())
    }

    fn found(&self, cs: &ConfState) -> Result<(), StorageError> {
        let mut core = self.lock();
        core.state = plan::founding_state(&core.state, cs)?;
        Ok(())
    }

    fn take_image_wanted(&self) -> bool {
        self.image_wanted.swap(false, Ordering::AcqRel)
    }
}
