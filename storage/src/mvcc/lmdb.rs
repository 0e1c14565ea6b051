//! The LMDB (heed 0.23) backend of the MVCC store: its own environment with
//! three named databases.
//!
//! 1. `records`: 16-byte big-endian revision -> record (flags byte +
//!    `mvccpb.KeyValue`). User keys are never LMDB keys: etcd keys may be up
//!    to 1.5 MiB, LMDB keys at most 511 bytes.
//! 2. `meta`: `applied_index`, `current_revision`,
//!    `scheduled_compact_revision`, `finished_compact_revision` (8 bytes BE),
//!    and `auth`: the auth store, one encoded `AuthState`.
//! 3. `leases`: lease id (8 bytes BE) -> granted TTL (8 bytes BE).
//! 4. `members`: member id (8 bytes BE) -> encoded `etcdserverpb::Member`.
//! 5. `alarms`: member id (8 bytes BE) + alarm type (4 bytes BE) -> empty.
//!
//! Durability: by default every commit fsyncs data and meta pages (full
//! ACID), so the applied index on disk never runs behind what was
//! acknowledged. [`LmdbOptions::no_meta_sync`] opens the env with
//! `MDB_NOMETASYNC` instead: atomicity, consistency and isolation are kept
//! but a system crash may undo the last commit; that is safe only because the
//! raft log replays every entry after the durable applied index, and only if
//! the raft log is never compacted past it. It is off unless asked for.
//!
//! Reads use `read_txn_without_tls` (a read txn is `Send` and any number may
//! be open per thread); every read txn lives for one store call only, since a
//! long-lived reader pins freed pages and makes the file grow.

use std::path::{Path, PathBuf};

use heed::types::Bytes;
use heed::{CommitOrAbort, Database, Env, EnvFlags, EnvOpenOptions, PutFlags, RoTxn, WithoutTls};

use super::backend::{
    BackendReader, Lease, Meta, MvccBackend, ScanFn, WriteBatch, decode_i64, encode_i64,
};
use super::revision::Revision;
use crate::error::StorageError;

const META_APPLIED_INDEX: &[u8] = b"applied_index";
const META_CURRENT_REVISION: &[u8] = b"current_revision";
const META_SCHEDULED_COMPACT: &[u8] = b"scheduled_compact_revision";
const META_FINISHED_COMPACT: &[u8] = b"finished_compact_revision";
const META_AUTH: &[u8] = b"auth";

/// Map sizes are rounded up to this (a multiple of every common page size).
const MAP_ALIGN: usize = 64 * 1024;

type Table = Database<'static, Bytes, Bytes>;

/// How to open the LMDB environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LmdbOptions {
    /// The memory map size: the largest the database file may grow.
    pub map_size: usize,
    /// LMDB reader slots (concurrent read txns).
    pub max_readers: u32,
    /// Skip the meta-page fsync on commit (see the module doc).
    pub no_meta_sync: bool,
}

impl LmdbOptions {
    pub fn new(map_size: usize) -> Self {
        Self {
            map_size,
            max_readers: 126,
            no_meta_sync: false,
        }
    }
}

/// The MVCC store's LMDB environment.
pub struct LmdbBackend {
    env: Env<WithoutTls>,
    records: Table,
    meta: Table,
    leases: Table,
    members: Table,
    alarms: Table,
    map_size: usize,
}

/// The five tables' handles, as a reader needs them.
#[derive(Clone, Copy)]
struct Tables {
    records: Table,
    meta: Table,
    leases: Table,
    members: Table,
    alarms: Table,
}

impl std::fmt::Debug for LmdbBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LmdbBackend")
            .field("path", &self.env.path())
            .finish()
    }
}

/// Opens (creating if needed) the environment in `dir`.
#[allow(unsafe_code)]
fn open_env(dir: &Path, options: &LmdbOptions) -> Result<(Env<WithoutTls>, usize), StorageError> {
    let map_size = options.map_size.div_ceil(MAP_ALIGN).max(1) * MAP_ALIGN;
    let mut builder = EnvOpenOptions::new().read_txn_without_tls();
    builder
        .map_size(map_size)
        .max_dbs(5)
        .max_readers(options.max_readers);
    if options.no_meta_sync {
        // SAFETY: MDB_NOMETASYNC keeps the database consistent (copy-on-write
        // pages, the older meta page stays valid); it only allows the last
        // commit to be lost on a system crash, which the raft log replay
        // covers (module doc).
        unsafe {
            builder.flags(EnvFlags::NO_META_SYNC);
        }
    }
    // SAFETY: the environment is opened once per directory in this process
    // (heed refuses a second open of the same path), it is not on a network
    // filesystem by deployment contract, and no other process maps it
    // without the same flags.
    let env = unsafe { builder.open(dir)? };
    Ok((env, map_size))
}

impl LmdbBackend {
    /// Opens or creates the environment in directory `dir`.
    pub fn open(dir: &Path, options: &LmdbOptions) -> Result<Self, StorageError> {
        std::fs::create_dir_all(dir)?;
        let (env, map_size) = open_env(dir, options)?;
        // Reader slots left behind by a crashed process pin old pages.
        let stale = env.clear_stale_readers()?;
        if stale > 0 {
            tracing::info!(stale, path = %dir.display(), "cleared stale LMDB readers");
        }
        let wtxn = env.write_txn()?;
        let (records, meta, leases, members, alarms) = env
            .create_databases_and_commit(wtxn, |dbo, wtxn| -> Result<_, heed::Error> {
                let records = dbo.create_database::<Bytes, Bytes>(wtxn, Some("records"))?;
                let meta = dbo.create_database::<Bytes, Bytes>(wtxn, Some("meta"))?;
                let leases = dbo.create_database::<Bytes, Bytes>(wtxn, Some("leases"))?;
                let members = dbo.create_database::<Bytes, Bytes>(wtxn, Some("members"))?;
                let alarms = dbo.create_database::<Bytes, Bytes>(wtxn, Some("alarms"))?;
                Ok(CommitOrAbort::<_, ()>::Commit((
                    records, meta, leases, members, alarms,
                )))
            })?
            .unwrap_commit();
        Ok(Self {
            env,
            records,
            meta,
            leases,
            members,
            alarms,
            map_size,
        })
    }

    fn tables(&self) -> Tables {
        Tables {
            records: self.records,
            meta: self.meta,
            leases: self.leases,
            members: self.members,
            alarms: self.alarms,
        }
    }

    /// The map size in effect (the file's upper bound).
    pub fn map_size(&self) -> usize {
        self.map_size
    }

    /// The environment directory.
    pub fn path(&self) -> &Path {
        self.env.path()
    }
}

/// A read txn over the tables. `LmdbReader<'static>` (from
/// [`MvccBackend::detached_reader`]) owns its txn and may move to another
/// thread while writes go on.
pub struct LmdbReader<'a> {
    txn: RoTxn<'a, WithoutTls>,
    tables: Tables,
}

impl std::fmt::Debug for LmdbReader<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LmdbReader")
            .field("txn_id", &self.txn.id())
            .finish()
    }
}

impl LmdbReader<'_> {
    fn meta_i64(&self, key: &[u8]) -> Result<Option<i64>, StorageError> {
        match self.tables.meta.get(&self.txn, key)? {
            Some(v) => Ok(Some(decode_i64(v, "meta value")?)),
            None => Ok(None),
        }
    }
}

impl BackendReader for LmdbReader<'_> {
    fn meta(&self) -> Result<Meta, StorageError> {
        let default = Meta::default();
        Ok(Meta {
            applied_index: self
                .meta_i64(META_APPLIED_INDEX)?
                .map_or(default.applied_index, |v| v as u64),
            current_revision: self
                .meta_i64(META_CURRENT_REVISION)?
                .unwrap_or(default.current_revision),
            scheduled_compact_revision: self
                .meta_i64(META_SCHEDULED_COMPACT)?
                .unwrap_or(default.scheduled_compact_revision),
            finished_compact_revision: self
                .meta_i64(META_FINISHED_COMPACT)?
                .unwrap_or(default.finished_compact_revision),
        })
    }

    fn leases(&self) -> Result<Vec<(i64, Lease)>, StorageError> {
        let mut out = Vec::new();
        for item in self.tables.leases.iter(&self.txn)? {
            let (id, lease) = item?;
            out.push((decode_i64(id, "lease id")?, Lease::decode(lease)?));
        }
        out.sort_unstable_by_key(|(id, _)| *id);
        Ok(out)
    }

    fn members(&self) -> Result<Vec<(u64, Vec<u8>)>, StorageError> {
        let mut out = Vec::new();
        for item in self.tables.members.iter(&self.txn)? {
            let (id, member) = item?;
            out.push((decode_i64(id, "member id")? as u64, member.to_vec()));
        }
        Ok(out)
    }

    fn alarms(&self) -> Result<Vec<(u64, i32)>, StorageError> {
        let mut out = Vec::new();
        for item in self.tables.alarms.iter(&self.txn)? {
            let (key, _) = item?;
            out.push(decode_alarm_key(key)?);
        }
        Ok(out)
    }

    fn auth(&self) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self
            .tables
            .meta
            .get(&self.txn, META_AUTH)?
            .map(<[u8]>::to_vec))
    }

    fn record(&self, rev: Revision) -> Result<Option<&[u8]>, StorageError> {
        Ok(self.tables.records.get(&self.txn, &rev.to_bytes())?)
    }

    fn scan(&self, from: Revision, f: &mut ScanFn<'_>) -> Result<(), StorageError> {
        let start = from.to_bytes();
        let bounds = (
            std::ops::Bound::Included(&start[..]),
            std::ops::Bound::Unbounded,
        );
        for item in self.tables.records.range(&self.txn, &bounds)? {
            let (key, value) = item?;
            let rev = Revision::from_bytes(key).ok_or_else(|| {
                StorageError::Corrupt(format!("bad record key of {} bytes", key.len()))
            })?;
            if !f(rev, value)? {
                break;
            }
        }
        Ok(())
    }
}

impl MvccBackend for LmdbBackend {
    type Reader<'a> = LmdbReader<'a>;

    fn detached_reader(&mut self) -> Result<super::backend::DetachedReader, StorageError> {
        Ok(Box::new(LmdbReader {
            txn: self.env.clone().static_read_txn()?,
            tables: self.tables(),
        }))
    }

    fn reader(&self) -> Result<LmdbReader<'_>, StorageError> {
        Ok(LmdbReader {
            txn: self.env.read_txn()?,
            tables: self.tables(),
        })
    }

    fn commit(&mut self, batch: WriteBatch) -> Result<(), StorageError> {
        let mut wtxn = self.env.write_txn()?;
        for (rev, value) in &batch.records {
            // Revisions only grow, so every new record goes at the end of the
            // B-tree: APPEND skips the search and fills pages completely.
            self.records
                .put_with_flags(&mut wtxn, PutFlags::APPEND, &rev.to_bytes(), value)?;
        }
        for rev in &batch.deleted {
            self.records.delete(&mut wtxn, &rev.to_bytes())?;
        }
        for (id, change) in &batch.leases {
            match change {
                Some(lease) => self
                    .leases
                    .put(&mut wtxn, &encode_i64(*id), &lease.encode())?,
                None => {
                    self.leases.delete(&mut wtxn, &encode_i64(*id))?;
                }
            }
        }
        for (id, change) in &batch.members {
            let key = encode_i64(*id as i64);
            match change {
                Some(member) => self.members.put(&mut wtxn, &key, member)?,
                None => {
                    self.members.delete(&mut wtxn, &key)?;
                }
            }
        }
        for ((member, alarm), raised) in &batch.alarms {
            let key = encode_alarm_key(*member, *alarm);
            if *raised {
                self.alarms.put(&mut wtxn, &key, &[])?;
            } else {
                self.alarms.delete(&mut wtxn, &key)?;
            }
        }
        if let Some(auth) = &batch.auth {
            self.meta.put(&mut wtxn, META_AUTH, auth)?;
        }
        let meta = &batch.meta;
        let values = [
            (META_APPLIED_INDEX, meta.applied_index as i64),
            (META_CURRENT_REVISION, meta.current_revision),
            (META_SCHEDULED_COMPACT, meta.scheduled_compact_revision),
            (META_FINISHED_COMPACT, meta.finished_compact_revision),
        ];
        for (key, value) in values {
            self.meta.put(&mut wtxn, key, &encode_i64(value))?;
        }
        wtxn.commit()?;
        Ok(())
    }

    fn size(&self) -> Result<i64, StorageError> {
        Ok(self.env.real_disk_size()? as i64)
    }

    fn size_in_use(&self) -> Result<i64, StorageError> {
        let txn = self.env.read_txn()?;
        let main = self.env.unnamed_database_stat();
        let mut bytes = main.non_free_page_size() + 2 * main.page_size as usize;
        for table in [
            &self.records,
            &self.meta,
            &self.leases,
            &self.members,
            &self.alarms,
        ] {
            bytes += table.stat(&txn)?.non_free_page_size();
        }
        Ok(bytes as i64)
    }

    fn record_footprint(&self, len: usize) -> usize {
        // LMDB (4 KiB pages): a node over 2,038 bytes (8-byte node header,
        // 16-byte revision key, the value) goes to its own overflow pages
        // behind a 16-byte page header; a smaller one shares a leaf page
        // (node, key and a 2-byte index slot).
        const PAGE: usize = 4096;
        const NODE_MAX: usize = 2038;
        if 8 + 16 + len > NODE_MAX {
            (16 + len).div_ceil(PAGE) * PAGE
        } else {
            8 + 16 + len + 2
        }
    }

    fn close(self) {
        // heed keeps a process-wide registry of open environments; wait
        // until this one is really closed so the directory can be reopened.
        let closing = self.env.prepare_for_closing();
        closing.wait();
    }

    fn copy_to_file(&self, path: &Path) -> Result<(), StorageError> {
        let file = self
            .env
            .copy_to_path(path, heed::CompactionOption::Enabled)?;
        file.sync_all()?;
        Ok(())
    }
}

fn encode_alarm_key(member: u64, alarm: i32) -> [u8; 12] {
    let mut key = [0u8; 12];
    key[..8].copy_from_slice(&member.to_be_bytes());
    key[8..].copy_from_slice(&alarm.to_be_bytes());
    key
}

fn decode_alarm_key(key: &[u8]) -> Result<(u64, i32), StorageError> {
    let bad = || StorageError::Corrupt(format!("alarm key of {} bytes", key.len()));
    let member = key
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(bad)?;
    let alarm = key
        .get(8..12)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(bad)?;
    Ok((u64::from_be_bytes(member), i32::from_be_bytes(alarm)))
}

/// Writes the committed state seen by `reader` as a fresh LMDB data file at
/// `path`: records in commits of [`IMAGE_BATCH`] (so memory stays small
/// however big the store), then leases, members, alarms and meta. Used for
/// snapshot images taken from a detached reader on another thread, and by
/// backends that are not LMDB themselves. `map_bytes` bounds the file.
pub fn write_image(
    reader: &dyn BackendReader,
    path: &Path,
    map_bytes: usize,
) -> Result<(), StorageError> {
    let scratch = scratch_dir(path);
    if scratch.exists() {
        std::fs::remove_dir_all(&scratch)?;
    }
    let meta = reader.meta()?;
    {
        let mut image = LmdbBackend::open(&scratch, &LmdbOptions::new(map_bytes))?;
        let mut batch = WriteBatch {
            meta,
            ..Default::default()
        };
        let mut failed = None;
        reader.scan(Revision::default(), &mut |rev, value| {
            batch.records.insert(rev, value.to_vec());
            if batch.records.len() >= IMAGE_BATCH {
                let full = std::mem::replace(
                    &mut batch,
                    WriteBatch {
                        meta,
                        ..Default::default()
                    },
                );
                if let Err(e) = image.commit(full) {
                    failed = Some(e);
                    return Ok(false);
                }
            }
            Ok(true)
        })?;
        if let Some(e) = failed {
            return Err(e);
        }
        for (id, lease) in reader.leases()? {
            batch.leases.insert(id, Some(lease));
        }
        for (id, member) in reader.members()? {
            batch.members.insert(id, Some(member));
        }
        for alarm in reader.alarms()? {
            batch.alarms.insert(alarm, true);
        }
        batch.auth = reader.auth()?;
        image.commit(batch)?;
        image.close();
    }
    std::fs::rename(scratch.join("data.mdb"), path)?;
    std::fs::remove_dir_all(&scratch)?;
    Ok(())
}

/// Records per commit of [`write_image`].
const IMAGE_BATCH: usize = 10_000;

fn scratch_dir(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".image-tmp");
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mvcc::backend::encode_record;
    use proto::mvccpb::KeyValue;

    fn kv(key: &[u8]) -> Vec<u8> {
        encode_record(
            &KeyValue {
                key: key.to_vec(),
                ..Default::default()
            },
            false,
        )
    }

    #[test]
    fn commit_is_visible_and_persists_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut b = LmdbBackend::open(dir.path(), &LmdbOptions::new(1 << 20)).unwrap();
            let mut batch = WriteBatch::default();
            batch.records.insert(Revision::new(2, 0), kv(b"a"));
            batch.records.insert(Revision::new(2, 1), kv(b"b"));
            batch.leases.insert(9, Some(Lease::granted(30)));
            batch.meta.applied_index = 7;
            batch.meta.current_revision = 2;
            b.commit(batch).unwrap();
            let (size, in_use) = (b.size().unwrap(), b.size_in_use().unwrap());
            assert!(size > 0);
            assert!(in_use > 0 && in_use <= size);
        }
        let b = LmdbBackend::open(dir.path(), &LmdbOptions::new(1 << 20)).unwrap();
        let r = b.reader().unwrap();
        assert_eq!(r.meta().unwrap().applied_index, 7);
        assert_eq!(r.leases().unwrap(), vec![(9, Lease::granted(30))]);
        assert_eq!(
            r.record(Revision::new(2, 1)).unwrap(),
            Some(kv(b"b").as_slice())
        );
        let mut seen = Vec::new();
        r.scan(Revision::new(2, 1), &mut |rev, _| {
            seen.push(rev);
            Ok(true)
        })
        .unwrap();
        assert_eq!(seen, vec![Revision::new(2, 1)]);
    }

    /// Measuring the live bytes needs a read txn; when none can be had (here:
    /// every reader slot taken) the caller gets the error, not 0 bytes (which
    /// would pass any quota check).
    #[test]
    fn a_failing_size_read_is_an_error_not_zero() {
        let dir = tempfile::tempdir().unwrap();
        let options = LmdbOptions {
            max_readers: 1,
            ..LmdbOptions::new(1 << 20)
        };
        let b = LmdbBackend::open(dir.path(), &options).unwrap();
        let only_slot = b.reader().unwrap();
        let got = b.size_in_use();
        assert!(
            matches!(
                got,
                Err(StorageError::Lmdb(heed::Error::Mdb(
                    heed::MdbError::ReadersFull
                )))
            ),
            "{got:?}"
        );
        drop(only_slot);
        assert!(b.size_in_use().unwrap() > 0);
    }

    #[test]
    fn map_full_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = LmdbBackend::open(dir.path(), &LmdbOptions::new(256 * 1024)).unwrap();
        let mut batch = WriteBatch::default();
        for i in 0..64 {
            batch
                .records
                .insert(Revision::new(i + 2, 0), vec![7u8; 16 * 1024]);
        }
        assert!(matches!(b.commit(batch), Err(StorageError::Lmdb(_))));
        // The env stays usable for a small commit.
        let mut small = WriteBatch::default();
        small.records.insert(Revision::new(2, 0), kv(b"a"));
        b.commit(small).unwrap();
    }
}
