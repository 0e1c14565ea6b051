//! The storage seam under the MVCC store: what a backend must do, and the
//! record and batch formats every backend shares.
//!
//! 1. The store reads through a short-lived [`BackendReader`] (one LMDB read
//!    txn per call, never kept across calls): point gets of records by
//!    revision, ordered scans (rebuild, hash, events read back), meta, leases.
//! 2. Everything one `apply_batch` call changes is collected in one
//!    [`WriteBatch`] (new records, deleted records, lease changes, and the
//!    meta values including the applied raft index) and handed to
//!    [`MvccBackend::commit`], which applies it atomically: all or nothing
//!    ([`super::Batched`] holds commits in memory and writes them together).
//! 3. A record is one byte of flags ([`RECORD_TOMBSTONE`]) followed by the
//!    protobuf `mvccpb.KeyValue`, byte-identical to etcd's key-bucket value
//!    (a tombstone's KeyValue carries only the key, as in etcd).

use std::collections::BTreeMap;
use std::path::Path;

use proto::Message as _;
use proto::mvccpb::KeyValue;

use super::revision::Revision;
use crate::error::StorageError;

/// Flag bit of a record's first byte: the record is a deletion marker.
pub const RECORD_TOMBSTONE: u8 = 1;

/// Persisted bookkeeping of the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    /// The last raft index whose entry is reflected in the store.
    pub applied_index: u64,
    /// The store revision (1 for an empty store).
    pub current_revision: i64,
    /// The compaction asked for last (-1: never). etcd's key; always equal
    /// to `finished_compact_revision` here, since a compaction deletes its
    /// records in the commit that records it.
    pub scheduled_compact_revision: i64,
    /// The compaction whose records are physically gone (-1: never).
    pub finished_compact_revision: i64,
}

impl Default for Meta {
    fn default() -> Self {
        Self {
            applied_index: 0,
            current_revision: 1,
            scheduled_compact_revision: -1,
            finished_compact_revision: -1,
        }
    }
}

/// Everything one apply batch changes, committed atomically.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct WriteBatch {
    /// New records (encoded with [`encode_record`]), keyed by revision; every
    /// revision is above all revisions already stored.
    pub records: BTreeMap<Revision, Vec<u8>>,
    /// Stored records to delete (compaction), ascending.
    pub deleted: Vec<Revision>,
    /// Lease table changes: `Some(lease)` grants or checkpoints, `None`
    /// revokes.
    pub leases: BTreeMap<i64, Option<Lease>>,
    /// Member table changes: `Some(encoded etcdserverpb::Member)` sets,
    /// `None` removes.
    pub members: BTreeMap<u64, Option<Vec<u8>>>,
    /// Alarm changes, keyed by (member id, `AlarmType` value): `true` raises,
    /// `false` clears.
    pub alarms: BTreeMap<(u64, i32), bool>,
    /// The auth store after the batch (an encoded `AuthState`), if the batch
    /// changed it.
    pub auth: Option<Vec<u8>>,
    /// The meta values after the batch.
    pub meta: Meta,
}

impl WriteBatch {
    /// Deletes a record, whether it is stored already or only in this batch.
    pub(crate) fn delete(&mut self, rev: Revision) {
        if self.records.remove(&rev).is_none() {
            self.deleted.push(rev);
        }
    }
}

/// The visitor of [`BackendReader::scan`]: gets each record, returns
/// whether to go on.
pub type ScanFn<'f> = dyn FnMut(Revision, &[u8]) -> Result<bool, StorageError> + 'f;

/// A consistent read view of the committed state; dropped at the end of the
/// call that opened it.
pub trait BackendReader {
    fn meta(&self) -> Result<Meta, StorageError>;
    /// Every lease, ascending by id.
    fn leases(&self) -> Result<Vec<(i64, Lease)>, StorageError>;
    /// Every member: (id, encoded `etcdserverpb::Member`), ascending by id.
    fn members(&self) -> Result<Vec<(u64, Vec<u8>)>, StorageError>;
    /// Every active alarm: (member id, `AlarmType` value), ascending.
    fn alarms(&self) -> Result<Vec<(u64, i32)>, StorageError>;
    /// The auth store's record (an encoded `AuthState`); `None` if never
    /// written.
    fn auth(&self) -> Result<Option<Vec<u8>>, StorageError>;
    /// The encoded record at `rev`, if stored.
    fn record(&self, rev: Revision) -> Result<Option<&[u8]>, StorageError>;
    /// Visits the records at or after `from` in revision order until `f`
    /// returns `Ok(false)`.
    fn scan(&self, from: Revision, f: &mut ScanFn<'_>) -> Result<(), StorageError>;
}

/// A read view that owns its snapshot ([`MvccBackend::detached_reader`]).
pub type DetachedReader = Box<dyn BackendReader + Send>;

/// Durable storage for the MVCC store.
pub trait MvccBackend: Send + 'static {
    type Reader<'a>: BackendReader
    where
        Self: 'a;

    /// Opens a read view of the committed state.
    fn reader(&self) -> Result<Self::Reader<'_>, StorageError>;
    /// A read view of everything committed so far (pending commits written
    /// first) that owns its snapshot: it may move to another thread and
    /// live while writes go on (a long export, such as a snapshot file).
    /// While one lives, [`MvccBackend::close`] waits for it.
    fn detached_reader(&mut self) -> Result<DetachedReader, StorageError>;
    /// Applies `batch` atomically (and durably, for a persistent backend,
    /// once [`MvccBackend::flush`] returns).
    fn commit(&mut self, batch: WriteBatch) -> Result<(), StorageError>;
    /// Writes every commit so far to disk (a backend that batches commits,
    /// [`super::Batched`], writes its pending ones now).
    fn flush(&mut self) -> Result<(), StorageError> {
        Ok(())
    }
    /// Whether pending commits are due to be written ([`super::Batched`]'s
    /// interval has passed).
    fn flush_due(&self) -> bool {
        false
    }
    /// Physical size in bytes (the LMDB file size). An `Err` is a failure
    /// to measure, never reported as a size: the quota check relies on it.
    fn size(&self) -> Result<i64, StorageError>;
    /// Bytes holding live data (an `Err` as for [`MvccBackend::size`]).
    fn size_in_use(&self) -> Result<i64, StorageError>;
    /// The bytes an encoded record of `len` bytes will hold once written,
    /// as [`MvccBackend::size_in_use`] counts them (for the size of commits
    /// not written yet).
    fn record_footprint(&self, len: usize) -> usize {
        len
    }
    /// Writes a consistent, compacted LMDB image of the committed state to
    /// `path` (a file); `LmdbBackend` can open a directory holding it as
    /// `data.mdb`.
    fn copy_to_file(&self, path: &Path) -> Result<(), StorageError>;
    /// Closes the backend and waits until its files may be replaced or
    /// reopened (installing a snapshot).
    fn close(self)
    where
        Self: Sized,
    {
    }
}

/// Encodes a record: flags byte, then the KeyValue.
pub fn encode_record(kv: &KeyValue, tombstone: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + kv.encoded_len());
    out.push(if tombstone { RECORD_TOMBSTONE } else { 0 });
    kv.encode(&mut out).expect("a Vec grows as needed");
    out
}

/// Splits a record into (tombstone flag, KeyValue bytes).
pub fn split_record(bytes: &[u8]) -> Result<(bool, &[u8]), StorageError> {
    match bytes.split_first() {
        Some((flags, kv)) => Ok((flags & RECORD_TOMBSTONE != 0, kv)),
        None => Err(StorageError::Corrupt("empty mvcc record".into())),
    }
}

/// Decodes a record into (tombstone flag, KeyValue).
pub fn decode_record(bytes: &[u8]) -> Result<(bool, KeyValue), StorageError> {
    let (tombstone, kv) = split_record(bytes)?;
    let kv = KeyValue::decode(kv)
        .map_err(|e| StorageError::Corrupt(format!("undecodable mvcc record: {e}")))?;
    Ok((tombstone, kv))
}

/// A lease as stored: its granted TTL and the remaining TTL its last
/// checkpoint recorded (0: none since the grant or the last renewal, so the
/// whole TTL), both in seconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Lease {
    pub ttl: i64,
    pub remaining_ttl: i64,
}

impl Lease {
    /// A lease just granted.
    pub fn granted(ttl: i64) -> Lease {
        Lease {
            ttl,
            remaining_ttl: 0,
        }
    }

    /// 16 bytes: TTL then remaining TTL, big endian.
    pub(crate) fn encode(&self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&self.ttl.to_be_bytes());
        out[8..].copy_from_slice(&self.remaining_ttl.to_be_bytes());
        out
    }

    /// Reads [`Lease::encode`]'s bytes, or the 8-byte TTL of stores written
    /// before checkpoints were kept.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Lease, StorageError> {
        match bytes.len() {
            8 => Ok(Lease::granted(decode_i64(bytes, "lease ttl")?)),
            16 => Ok(Lease {
                ttl: decode_i64(&bytes[..8], "lease ttl")?,
                remaining_ttl: decode_i64(&bytes[8..], "lease remaining ttl")?,
            }),
            n => Err(StorageError::Corrupt(format!(
                "lease: expected 8 or 16 bytes, got {n}"
            ))),
        }
    }
}

/// Encodes an i64 meta or lease value.
pub(crate) fn encode_i64(v: i64) -> [u8; 8] {
    v.to_be_bytes()
}

/// Decodes an i64 meta or lease value.
pub(crate) fn decode_i64(bytes: &[u8], what: &str) -> Result<i64, StorageError> {
    let arr: [u8; 8] = bytes.try_into().map_err(|_| {
        StorageError::Corrupt(format!("{what}: expected 8 bytes, got {}", bytes.len()))
    })?;
    Ok(i64::from_be_bytes(arr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trip() {
        let kv = KeyValue {
            key: b"k".to_vec(),
            create_revision: 2,
            mod_revision: 3,
            version: 2,
            value: b"v".to_vec(),
            lease: 7,
        };
        for tomb in [false, true] {
            let bytes = encode_record(&kv, tomb);
            assert_eq!(decode_record(&bytes).unwrap(), (tomb, kv.clone()));
            assert_eq!(
                split_record(&bytes).unwrap().1,
                kv.encode_to_vec().as_slice()
            );
        }
        assert!(decode_record(&[]).is_err());
        assert!(decode_record(&[0, 0xff]).is_err());
    }

    #[test]
    fn batch_delete_of_pending_record_cancels_it() {
        let mut batch = WriteBatch::default();
        batch.records.insert(Revision::new(5, 0), vec![0]);
        batch.delete(Revision::new(5, 0));
        batch.delete(Revision::new(2, 0));
        assert!(batch.records.is_empty());
        assert_eq!(batch.deleted, vec![Revision::new(2, 0)]);
    }

    #[test]
    fn i64_codec() {
        assert_eq!(decode_i64(&encode_i64(-5), "x").unwrap(), -5);
        assert!(decode_i64(&[1, 2], "x").is_err());
    }
}
