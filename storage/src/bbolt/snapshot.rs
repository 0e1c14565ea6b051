//! The SHA-256 that etcd appends to a snapshot file.
//!
//! 1. etcd's `Snapshot` RPC streams the bbolt file (a whole number of pages)
//!    and then the SHA-256 of everything it streamed; `etcdctl snapshot save`
//!    writes both, so the file is the bbolt file plus 32 bytes.
//! 2. `etcdctl snapshot restore` (etcd 3.4, `clientv3/snapshot`) copies the
//!    file, and decides that it carries a hash when its size modulo 512 is
//!    32 ([`split_snapshot_hash`]): a bbolt file alone is a multiple of its
//!    page size, itself a multiple of 512. A file with a hash is cut back to
//!    the bbolt part, and unless `--skip-hash-check` the SHA-256 of that part
//!    must equal the trailing 32 bytes. A file without one (a `db` file copied
//!    out of a data dir) is refused unless `--skip-hash-check`.
//! 3. [`verify_snapshot_hash`] applies that rule to a file;
//!    [`append_snapshot_hash`] makes a written bbolt file a snapshot that
//!    `etcdctl snapshot restore` accepts without `--skip-hash-check`.
//!
//! [`BoltFile::open`](super::read::BoltFile::open) reads a snapshot file with
//! or without its hash: the trailing bytes lie past the last page.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

use super::BoltError;

/// Bytes of the hash etcd appends.
pub const SNAPSHOT_HASH_LEN: u64 = 32;

/// Splits a snapshot file's length into the length of its bbolt part and
/// whether a SHA-256 follows it (etcd's rule: `len % 512 == 32`).
pub fn split_snapshot_hash(file_len: u64) -> (u64, bool) {
    if file_len % 512 == SNAPSHOT_HASH_LEN {
        (file_len - SNAPSHOT_HASH_LEN, true)
    } else {
        (file_len, false)
    }
}

/// What [`verify_snapshot_hash`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotHash {
    /// The file ends with the SHA-256 of the rest, and it matches.
    Verified,
    /// The file carries no hash (etcdctl restores it only with
    /// `--skip-hash-check`).
    Absent,
}

/// Checks a snapshot file's trailing SHA-256 as `etcdctl snapshot restore`
/// does; a hash that does not match is [`BoltError::HashMismatch`].
pub fn verify_snapshot_hash(path: impl AsRef<Path>) -> Result<SnapshotHash, BoltError> {
    let mut file = File::open(path.as_ref())?;
    let (db_len, has_hash) = split_snapshot_hash(file.metadata()?.len());
    if !has_hash {
        return Ok(SnapshotHash::Absent);
    }
    let computed = sha256_prefix(&mut file, db_len)?;
    let mut stored = [0u8; SNAPSHOT_HASH_LEN as usize];
    file.seek(SeekFrom::Start(db_len))?;
    file.read_exact(&mut stored)?;
    if stored[..] != computed[..] {
        return Err(BoltError::HashMismatch {
            stored: hex(&stored),
            computed: hex(&computed),
        });
    }
    Ok(SnapshotHash::Verified)
}

/// Appends the SHA-256 of the file's content to it, as etcd's snapshot
/// stream does, and syncs. The file must not carry a hash already.
pub fn append_snapshot_hash(path: impl AsRef<Path>) -> Result<(), BoltError> {
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path.as_ref())?;
    let len = file.metadata()?.len();
    if split_snapshot_hash(len).1 {
        return Err(BoltError::HashPresent { len });
    }
    let digest = sha256_prefix(&mut file, len)?;
    file.seek(SeekFrom::End(0))?;
    file.write_all(&digest)?;
    file.sync_all()?;
    Ok(())
}

/// The SHA-256 of the file's first `len` bytes.
fn sha256_prefix(file: &mut File, len: u64) -> Result<Vec<u8>, BoltError> {
    file.seek(SeekFrom::Start(0))?;
    let mut hasher = Sha256::new();
    let copied = std::io::copy(&mut file.take(len), &mut HashWriter(&mut hasher))?;
    if copied != len {
        return Err(BoltError::TooShort { len: copied });
    }
    Ok(hasher.finalize().to_vec())
}

/// Feeds `io::copy` into a hasher.
struct HashWriter<'a>(&'a mut Sha256);

impl Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bbolt_snapshot_hash_rule_follows_etcdctl() {
        // (file length, bbolt part, has hash)
        let cases = [
            (0, 0, false),
            (32, 0, true),
            (4096, 4096, false),
            (4096 + 32, 4096, true),
            (20 * 4096 + 32, 20 * 4096, true),
            (4096 + 31, 4096 + 31, false),
            (512 + 32, 512, true),
        ];
        for (len, db, hash) in cases {
            assert_eq!(split_snapshot_hash(len), (db, hash), "length {len}");
        }
    }

    #[test]
    fn bbolt_snapshot_hash_appended_verifies_and_tamper_fails() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("snap.db");
        std::fs::write(&path, vec![7u8; 3 * 4096]).unwrap();
        assert_eq!(verify_snapshot_hash(&path).unwrap(), SnapshotHash::Absent);
        append_snapshot_hash(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 3 * 4096 + 32);
        assert_eq!(verify_snapshot_hash(&path).unwrap(), SnapshotHash::Verified);
        assert!(append_snapshot_hash(&path).is_err());

        let mut bytes = std::fs::read(&path).unwrap();
        bytes[100] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let err = verify_snapshot_hash(&path).unwrap_err();
        assert!(matches!(err, BoltError::HashMismatch { .. }), "{err}");
    }
}
