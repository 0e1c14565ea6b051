//! etcd's snapshot format: the MVCC store as etcd 3.4's backend lays it out
//! in a bbolt file, both ways.
//!
//! etcd's buckets, and what oxcd puts in (or takes from) each:
//! 1. `key`: every MVCC record, keyed by its revision as 17 bytes (main
//!    revision big-endian, `_`, sub revision big-endian), plus a trailing
//!    `t` for a tombstone; the value is the `mvccpb.KeyValue` (a tombstone's
//!    holds only the key).
//! 2. `meta`: `consistent_index` (the applied raft index, 8 bytes
//!    big-endian), and once compacted `scheduledCompactRev` and
//!    `finishedCompactRev` (a revision in the 17-byte form, sub 0).
//! 3. `lease`: lease id (8 bytes big-endian) to `leasepb.Lease` (id, TTL,
//!    remaining TTL).
//! 4. `members`: the member id in lowercase hex to etcd's member JSON
//!    (`id`, `peerURLs`, `isLearner`, `name`, `clientURLs`);
//!    `members_removed`: a removed id to `removed`.
//! 5. `cluster`: `clusterVersion` = `3.4.0`; `alarm`: an encoded
//!    `AlarmMember` per active alarm, with an empty value.
//! 6. `auth`: `authEnabled` (one byte, 1 when on) and `authRevision`
//!    (8 bytes big-endian); `authUsers`: user name to `authpb.User`;
//!    `authRoles`: role name to `authpb.Role`. An import takes them too:
//!    users, roles and passwords (bcrypt hashes, as etcd keeps them) carry
//!    over.
//!
//! [`export`] writes such a file from a consistent read view of the store
//! (a detached LMDB read txn: the apply thread goes on meanwhile), one
//! bucket after the other, streaming, and gives up when told to. [`import`] reads one (from real etcd,
//! or from oxcd) into an empty store: records, leases, revision and
//! compaction point; members and alarms are left to the caller (a restore
//! founds a new cluster).

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use proto::Message as _;
use proto::etcdserverpb::{AlarmMember, Member};
use proto::leasepb;

use crate::bbolt::read::BoltFile;
use crate::bbolt::write::{BoltStreamWriter, WriterConfig};
use crate::error::StorageError;
use crate::mvcc::{BackendReader, Lease, Meta, MvccBackend, Revision, WriteBatch, split_record};

/// Records per write batch while importing.
const IMPORT_BATCH: usize = 10_000;

/// The cluster version etcd 3.4 records.
const CLUSTER_VERSION: &[u8] = b"3.4.0";

/// What an export or import carried.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnapshotSummary {
    /// The newest revision in the `key` bucket (0: none).
    pub revision: i64,
    /// Records in the `key` bucket (revisions, tombstones included).
    pub records: u64,
    pub leases: u64,
    /// The compacted revision (-1: never compacted).
    pub compact_revision: i64,
    /// The applied raft index the file records.
    pub consistent_index: u64,
}

/// etcd's 17-byte revision key (18 with the tombstone mark).
pub fn revision_key(rev: Revision, tombstone: bool) -> Vec<u8> {
    let mut key = Vec::with_capacity(18);
    key.extend_from_slice(&(rev.main as u64).to_be_bytes());
    key.push(b'_');
    key.extend_from_slice(&(rev.sub as u64).to_be_bytes());
    if tombstone {
        key.push(b't');
    }
    key
}

/// The revision of an etcd `key` bucket key, and whether it marks a
/// tombstone.
pub fn parse_revision_key(key: &[u8]) -> Result<(Revision, bool), StorageError> {
    let bad = || StorageError::Corrupt(format!("etcd revision key of {} bytes", key.len()));
    if !(key.len() == 17 || key.len() == 18 && key[17] == b't') || key[8] != b'_' {
        return Err(bad());
    }
    let main = u64::from_be_bytes(key[..8].try_into().map_err(|_| bad())?) as i64;
    let sub = u64::from_be_bytes(key[9..17].try_into().map_err(|_| bad())?) as i64;
    Ok((Revision { main, sub }, key.len() == 18))
}

/// etcd's member JSON (its `membership.Member` marshalled).
fn member_json(m: &Member) -> Vec<u8> {
    let mut object = serde_json::Map::new();
    object.insert("id".into(), serde_json::Value::from(m.id));
    object.insert(
        "peerURLs".into(),
        serde_json::Value::from(m.peer_ur_ls.clone()),
    );
    if m.is_learner {
        object.insert("isLearner".into(), serde_json::Value::Bool(true));
    }
    if !m.name.is_empty() {
        object.insert("name".into(), serde_json::Value::from(m.name.clone()));
    }
    if !m.client_ur_ls.is_empty() {
        object.insert(
            "clientURLs".into(),
            serde_json::Value::from(m.client_ur_ls.clone()),
        );
    }
    serde_json::to_vec(&serde_json::Value::Object(object)).expect("JSON of plain values")
}

/// The `auth`, `authRoles` and `authUsers` buckets (written in name order,
/// as the stream writer wants them).
fn export_auth(reader: &dyn BackendReader, out: &mut BoltStreamWriter) -> Result<(), StorageError> {
    let auth = crate::auth::AuthStore::decode(reader.auth()?.as_deref())
        .map_err(|e| StorageError::Corrupt(format!("auth state: {e}")))?
        .to_state();
    {
        let mut bucket = out.bucket(b"auth")?;
        bucket.put(b"authEnabled", &[u8::from(auth.enabled)])?;
        bucket.put(b"authRevision", &auth.revision.to_be_bytes())?;
        bucket.finish()?;
    }
    {
        let mut bucket = out.bucket(b"authRoles")?;
        for role in &auth.roles {
            bucket.put(&role.name, &role.encode_to_vec())?;
        }
        bucket.finish()?;
    }
    let mut bucket = out.bucket(b"authUsers")?;
    for user in &auth.users {
        bucket.put(&user.name, &user.encode_to_vec())?;
    }
    bucket.finish()?;
    Ok(())
}

/// The auth store held by an etcd backend file's auth buckets (`None` when
/// it has none).
fn import_auth(
    file: &BoltFile,
    has: &dyn Fn(&[u8]) -> bool,
) -> Result<Option<Vec<u8>>, StorageError> {
    if !has(b"auth") {
        return Ok(None);
    }
    let mut state = proto::internal::AuthState::default();
    file.for_each(b"auth", |key, value| -> Result<bool, StorageError> {
        match key {
            b"authEnabled" => state.enabled = value == [1],
            b"authRevision" if value.len() == 8 => {
                state.revision = u64::from_be_bytes(value.try_into().expect("8 bytes"));
            }
            _ => {}
        }
        Ok(true)
    })?;
    let corrupt = |what: &str, e: proto::prost::DecodeError| {
        StorageError::Corrupt(format!("etcd {what} record: {e}"))
    };
    if has(b"authUsers") {
        file.for_each(b"authUsers", |_, value| -> Result<bool, StorageError> {
            let user = proto::authpb::User::decode(value).map_err(|e| corrupt("user", e))?;
            state.users.push(user);
            Ok(true)
        })?;
    }
    if has(b"authRoles") {
        file.for_each(b"authRoles", |_, value| -> Result<bool, StorageError> {
            let role = proto::authpb::Role::decode(value).map_err(|e| corrupt("role", e))?;
            state.roles.push(role);
            Ok(true)
        })?;
    }
    Ok(Some(crate::auth::AuthStore::from_state(state).encode()))
}

/// Writes the store seen by `reader` to `path` as etcd's backend file;
/// stops with an error as soon as `cancel` is raised (the store is about to
/// be replaced: the reader must go).
pub fn export(
    reader: &dyn BackendReader,
    path: &Path,
    cancel: &AtomicBool,
) -> Result<SnapshotSummary, StorageError> {
    let meta = reader.meta()?;
    let mut summary = SnapshotSummary {
        compact_revision: meta.finished_compact_revision,
        consistent_index: meta.applied_index,
        ..Default::default()
    };
    let mut out = BoltStreamWriter::create(path, WriterConfig::default())?;
    export_auth(reader, &mut out)?;
    {
        let mut bucket = out.bucket(b"key")?;
        let mut failed = None;
        reader.scan(Revision::default(), &mut |rev, bytes| {
            if cancel.load(Ordering::Relaxed) {
                return Err(StorageError::Corrupt(
                    "snapshot cancelled: the store is being replaced".into(),
                ));
            }
            let (tombstone, kv) = split_record(bytes)?;
            if let Err(e) = bucket.put(&revision_key(rev, tombstone), kv) {
                failed = Some(e);
                return Ok(false);
            }
            summary.records += 1;
            summary.revision = rev.main;
            Ok(true)
        })?;
        if let Some(e) = failed {
            return Err(e.into());
        }
        bucket.finish()?;
    }
    {
        let mut bucket = out.bucket(b"meta")?;
        bucket.put(b"consistent_index", &meta.applied_index.to_be_bytes())?;
        if meta.finished_compact_revision > 0 {
            let rev = |main| revision_key(Revision { main, sub: 0 }, false);
            bucket.put(b"finishedCompactRev", &rev(meta.finished_compact_revision))?;
            bucket.put(
                b"scheduledCompactRev",
                &rev(meta.scheduled_compact_revision),
            )?;
        }
        bucket.finish()?;
    }
    {
        let mut bucket = out.bucket(b"lease")?;
        for (id, lease) in reader.leases()? {
            let record = leasepb::Lease {
                id,
                ttl: lease.ttl,
                remaining_ttl: lease.remaining_ttl,
            };
            bucket.put(&(id as u64).to_be_bytes(), &record.encode_to_vec())?;
            summary.leases += 1;
        }
        bucket.finish()?;
    }
    let mut members = Vec::new();
    let mut removed = Vec::new();
    for (id, bytes) in reader.members()? {
        if bytes.is_empty() {
            removed.push(id);
        } else {
            let member = Member::decode(bytes.as_slice())
                .map_err(|e| StorageError::Corrupt(format!("member {id:x}: {e}")))?;
            members.push(member);
        }
    }
    // bbolt keys sort as bytes: hex ids are not in numeric order.
    let mut member_rows: Vec<(String, Vec<u8>)> = members
        .iter()
        .map(|m| (format!("{:x}", m.id), member_json(m)))
        .collect();
    member_rows.sort();
    {
        let mut bucket = out.bucket(b"members")?;
        for (key, value) in &member_rows {
            bucket.put(key.as_bytes(), value)?;
        }
        bucket.finish()?;
    }
    let mut removed_rows: Vec<String> = removed.iter().map(|id| format!("{id:x}")).collect();
    removed_rows.sort();
    {
        let mut bucket = out.bucket(b"members_removed")?;
        for key in &removed_rows {
            bucket.put(key.as_bytes(), b"removed")?;
        }
        bucket.finish()?;
    }
    {
        let mut bucket = out.bucket(b"cluster")?;
        bucket.put(b"clusterVersion", CLUSTER_VERSION)?;
        bucket.finish()?;
    }
    {
        let mut rows: Vec<Vec<u8>> = reader
            .alarms()?
            .into_iter()
            .map(|(member_id, alarm)| AlarmMember { member_id, alarm }.encode_to_vec())
            .collect();
        rows.sort();
        let mut bucket = out.bucket(b"alarm")?;
        for key in &rows {
            bucket.put(key, b"")?;
        }
        bucket.finish()?;
    }
    out.finish()?;
    Ok(summary)
}

/// Reads etcd's backend file at `path` into `backend`, which must be empty:
/// every record, every lease, the revision and the compaction point (the
/// applied index is left at 0: the store founds a new raft log).
pub fn import<B: MvccBackend>(
    path: &Path,
    backend: &mut B,
) -> Result<SnapshotSummary, StorageError> {
    let file = BoltFile::open(path)?;
    let mut summary = SnapshotSummary {
        compact_revision: -1,
        ..Default::default()
    };
    let buckets = file.buckets();
    let has = |name: &[u8]| buckets.iter().any(|b| b == name);
    if !has(b"key") || !has(b"meta") {
        return Err(StorageError::Corrupt(format!(
            "{}: not an etcd backend file (no `key` or `meta` bucket)",
            path.display()
        )));
    }
    file.for_each(b"meta", |key, value| -> Result<bool, StorageError> {
        match key {
            b"consistent_index" if value.len() == 8 => {
                summary.consistent_index = u64::from_be_bytes(value.try_into().expect("8 bytes"));
            }
            b"finishedCompactRev" => {
                summary.compact_revision = parse_revision_key(value)?.0.main;
            }
            _ => {}
        }
        Ok(true)
    })?;
    let mut meta = Meta {
        applied_index: 0,
        current_revision: 1,
        scheduled_compact_revision: summary.compact_revision,
        finished_compact_revision: summary.compact_revision,
    };
    let mut batch = WriteBatch::default();
    file.for_each(b"key", |key, value| -> Result<bool, StorageError> {
        let (rev, tombstone) = parse_revision_key(key)?;
        let mut record = Vec::with_capacity(1 + value.len());
        record.push(if tombstone {
            crate::mvcc::RECORD_TOMBSTONE
        } else {
            0
        });
        record.extend_from_slice(value);
        batch.records.insert(rev, record);
        summary.records += 1;
        summary.revision = summary.revision.max(rev.main);
        if batch.records.len() >= IMPORT_BATCH {
            meta.current_revision = summary.revision;
            batch.meta = meta;
            backend.commit(std::mem::take(&mut batch))?;
        }
        Ok(true)
    })?;
    if has(b"lease") {
        file.for_each(b"lease", |_, value| -> Result<bool, StorageError> {
            let lease = leasepb::Lease::decode(value)
                .map_err(|e| StorageError::Corrupt(format!("etcd lease record: {e}")))?;
            batch.leases.insert(
                lease.id,
                Some(Lease {
                    ttl: lease.ttl,
                    remaining_ttl: lease.remaining_ttl,
                }),
            );
            summary.leases += 1;
            Ok(true)
        })?;
    }
    batch.auth = import_auth(&file, &has)?;
    meta.current_revision = summary.revision.max(summary.compact_revision).max(1);
    batch.meta = meta;
    backend.commit(batch)?;
    backend.flush()?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mvcc::{LmdbBackend, LmdbOptions, MemBackend, encode_record};
    use proto::mvccpb::KeyValue;

    #[test]
    fn revision_keys_round_trip_as_etcd_lays_them_out() {
        let rev = Revision { main: 5, sub: 2 };
        let key = revision_key(rev, false);
        assert_eq!(key.len(), 17);
        assert_eq!(&key[..8], &5u64.to_be_bytes());
        assert_eq!(key[8], b'_');
        assert_eq!(parse_revision_key(&key).unwrap(), (rev, false));
        let tomb = revision_key(rev, true);
        assert_eq!(tomb.last(), Some(&b't'));
        assert_eq!(parse_revision_key(&tomb).unwrap(), (rev, true));
        assert!(parse_revision_key(b"short").is_err());
    }

    #[test]
    fn export_then_import_keeps_records_leases_and_compaction() {
        let dir = tempfile::tempdir().unwrap();
        let mut source = MemBackend::default();
        let mut batch = WriteBatch::default();
        for main in 2..=40i64 {
            let kv = KeyValue {
                key: format!("k{}", main % 7).into_bytes(),
                value: vec![b'v'; (main as usize) * 100],
                create_revision: main,
                mod_revision: main,
                version: 1,
                lease: 0,
            };
            batch.records.insert(
                Revision { main, sub: 0 },
                encode_record(&kv, main % 11 == 0),
            );
        }
        batch.leases.insert(
            9,
            Some(Lease {
                ttl: 60,
                remaining_ttl: 30,
            }),
        );
        batch.meta = Meta {
            applied_index: 77,
            current_revision: 40,
            scheduled_compact_revision: 12,
            finished_compact_revision: 12,
        };
        source.commit(batch).unwrap();
        let file = dir.path().join("db");
        let written = export(&source.reader().unwrap(), &file, &AtomicBool::new(false)).unwrap();
        assert_eq!(written.records, 39);
        assert_eq!(written.revision, 40);

        let cancelled = export(
            &source.reader().unwrap(),
            &dir.path().join("x"),
            &AtomicBool::new(true),
        );
        assert!(cancelled.is_err(), "a raised cancel flag stops the export");

        let mut target =
            LmdbBackend::open(&dir.path().join("kv"), &LmdbOptions::new(64 << 20)).unwrap();
        let read = import(&file, &mut target).unwrap();
        assert_eq!(
            read,
            SnapshotSummary {
                consistent_index: 77,
                ..written
            }
        );
        let reader = target.reader().unwrap();
        let mut seen = 0;
        let source_reader = source.reader().unwrap();
        reader
            .scan(Revision::default(), &mut |rev, bytes| {
                assert_eq!(source_reader.record(rev).unwrap(), Some(bytes));
                seen += 1;
                Ok(true)
            })
            .unwrap();
        assert_eq!(seen, 39);
        assert_eq!(
            reader.leases().unwrap(),
            vec![(
                9,
                Lease {
                    ttl: 60,
                    remaining_ttl: 30
                }
            )]
        );
        let meta = reader.meta().unwrap();
        assert_eq!(
            (
                meta.current_revision,
                meta.finished_compact_revision,
                meta.applied_index
            ),
            (40, 12, 0)
        );
    }
}
