//! The in-memory twin of [`LmdbBackend`](super::LmdbBackend): the same tables
//! as `BTreeMap`s, for tests and for the conformance suite.
//!
//! 1. `commit` applies a [`WriteBatch`] in one step (nothing can fail half-way).
//! 2. Sizes are estimates: `size_in_use` counts key and value bytes plus a
//!    fixed per-entry overhead; `size` is its high-water mark, since a real
//!    database file does not shrink either.
//! 3. `copy_to_file` writes a real LMDB image, so a snapshot taken from the
//!    twin opens as an `LmdbBackend` store.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;

use super::backend::{BackendReader, Lease, Meta, MvccBackend, ScanFn, WriteBatch};
use super::lmdb::write_image;
use super::revision::{REVISION_BYTES, Revision};
use crate::error::StorageError;

/// Bytes counted per stored entry besides its key and value (a B-tree node
/// header's worth, roughly LMDB's).
const ENTRY_OVERHEAD: usize = 16;
/// Bytes counted for an empty store (LMDB's two meta pages and a root).
const BASE_SIZE: usize = 3 * 4096;

/// In-memory MVCC backend.
#[derive(Debug, Clone)]
pub struct MemBackend {
    records: BTreeMap<Revision, Vec<u8>>,
    leases: BTreeMap<i64, Lease>,
    members: BTreeMap<u64, Vec<u8>>,
    alarms: std::collections::BTreeSet<(u64, i32)>,
    auth: Option<Vec<u8>>,
    meta: Meta,
    in_use: usize,
    high_water: usize,
}

impl Default for MemBackend {
    fn default() -> Self {
        Self {
            records: BTreeMap::new(),
            leases: BTreeMap::new(),
            members: BTreeMap::new(),
            alarms: std::collections::BTreeSet::new(),
            auth: None,
            meta: Meta::default(),
            in_use: BASE_SIZE,
            high_water: BASE_SIZE,
        }
    }
}

impl MemBackend {
    pub fn new() -> Self {
        Self::default()
    }

    fn record_size(value: &[u8]) -> usize {
        REVISION_BYTES + value.len() + ENTRY_OVERHEAD
    }
}

/// A copy of a [`MemBackend`], read as it was when copied.
#[derive(Debug)]
struct MemSnapshot(MemBackend);

impl BackendReader for MemSnapshot {
    fn meta(&self) -> Result<Meta, StorageError> {
        MemReader { backend: &self.0 }.meta()
    }
    fn leases(&self) -> Result<Vec<(i64, Lease)>, StorageError> {
        MemReader { backend: &self.0 }.leases()
    }
    fn members(&self) -> Result<Vec<(u64, Vec<u8>)>, StorageError> {
        MemReader { backend: &self.0 }.members()
    }
    fn alarms(&self) -> Result<Vec<(u64, i32)>, StorageError> {
        MemReader { backend: &self.0 }.alarms()
    }
    fn auth(&self) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.0.auth.clone())
    }
    fn record(&self, rev: Revision) -> Result<Option<&[u8]>, StorageError> {
        Ok(self.0.records.get(&rev).map(Vec::as_slice))
    }
    fn scan(&self, from: Revision, f: &mut super::backend::ScanFn<'_>) -> Result<(), StorageError> {
        MemReader { backend: &self.0 }.scan(from, f)
    }
}

/// A read view of a [`MemBackend`]: a plain borrow.
#[derive(Debug)]
pub struct MemReader<'a> {
    backend: &'a MemBackend,
}

impl BackendReader for MemReader<'_> {
    fn meta(&self) -> Result<Meta, StorageError> {
        Ok(self.backend.meta)
    }

    fn leases(&self) -> Result<Vec<(i64, Lease)>, StorageError> {
        Ok(self
            .backend
            .leases
            .iter()
            .map(|(id, lease)| (*id, *lease))
            .collect())
    }

    fn members(&self) -> Result<Vec<(u64, Vec<u8>)>, StorageError> {
        Ok(self
            .backend
            .members
            .iter()
            .map(|(id, m)| (*id, m.clone()))
            .collect())
    }

    fn alarms(&self) -> Result<Vec<(u64, i32)>, StorageError> {
        Ok(self.backend.alarms.iter().copied().collect())
    }

    fn auth(&self) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.backend.auth.clone())
    }

    fn record(&self, rev: Revision) -> Result<Option<&[u8]>, StorageError> {
        Ok(self.backend.records.get(&rev).map(Vec::as_slice))
    }

    fn scan(&self, from: Revision, f: &mut ScanFn<'_>) -> Result<(), StorageError> {
        for (rev, value) in self
            .backend
            .records
            .range((Bound::Included(from), Bound::Unbounded))
        {
            if !f(*rev, value)? {
                break;
            }
        }
        Ok(())
    }
}

impl MvccBackend for MemBackend {
    type Reader<'a> = MemReader<'a>;

    fn detached_reader(&mut self) -> Result<super::backend::DetachedReader, StorageError> {
        Ok(Box::new(MemSnapshot(self.clone())))
    }

    fn reader(&self) -> Result<MemReader<'_>, StorageError> {
        Ok(MemReader { backend: self })
    }

    fn commit(&mut self, batch: WriteBatch) -> Result<(), StorageError> {
        for (rev, value) in &batch.records {
            self.in_use += Self::record_size(value);
            if let Some(old) = self.records.insert(*rev, value.clone()) {
                self.in_use -= Self::record_size(&old);
            }
        }
        for rev in &batch.deleted {
            if let Some(old) = self.records.remove(rev) {
                self.in_use -= Self::record_size(&old);
            }
        }
        for (id, change) in &batch.leases {
            match change {
                Some(lease) => {
                    if self.leases.insert(*id, *lease).is_none() {
                        self.in_use += 16 + ENTRY_OVERHEAD;
                    }
                }
                None => {
                    if self.leases.remove(id).is_some() {
                        self.in_use -= 16 + ENTRY_OVERHEAD;
                    }
                }
            }
        }
        for (id, change) in &batch.members {
            match change {
                Some(member) => {
                    if let Some(old) = self.members.insert(*id, member.clone()) {
                        self.in_use -= old.len() + 8 + ENTRY_OVERHEAD;
                    }
                    self.in_use += member.len() + 8 + ENTRY_OVERHEAD;
                }
                None => {
                    if let Some(old) = self.members.remove(id) {
                        self.in_use -= old.len() + 8 + ENTRY_OVERHEAD;
                    }
                }
            }
        }
        for (alarm, raised) in &batch.alarms {
            if *raised {
                self.alarms.insert(*alarm);
            } else {
                self.alarms.remove(alarm);
            }
        }
        if let Some(auth) = batch.auth {
            self.in_use += auth.len();
            if let Some(old) = self.auth.replace(auth) {
                self.in_use -= old.len();
            }
        }
        self.meta = batch.meta;
        self.high_water = self.high_water.max(self.in_use);
        Ok(())
    }

    fn size(&self) -> Result<i64, StorageError> {
        Ok(self.high_water as i64)
    }

    fn size_in_use(&self) -> Result<i64, StorageError> {
        Ok(self.in_use as i64)
    }

    fn copy_to_file(&self, path: &Path) -> Result<(), StorageError> {
        let bytes: usize = self.records.values().map(|v| v.len() + 64).sum();
        write_image(&self.reader()?, path, 2 * bytes + (64 << 20))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_track_commits() {
        let mut mem = MemBackend::new();
        let empty = mem.size_in_use().unwrap();
        let mut batch = WriteBatch::default();
        batch.records.insert(Revision::new(2, 0), vec![0; 100]);
        batch.leases.insert(7, Some(Lease::granted(10)));
        mem.commit(batch).unwrap();
        let full = mem.size_in_use().unwrap();
        assert!(full > empty + 100);
        let mut batch = WriteBatch {
            deleted: vec![Revision::new(2, 0)],
            ..Default::default()
        };
        batch.leases.insert(7, None);
        mem.commit(batch).unwrap();
        assert_eq!(mem.size_in_use().unwrap(), empty);
        assert_eq!(mem.size().unwrap(), full, "the physical size never shrinks");
    }
}
