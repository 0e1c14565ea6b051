//! The snapshot directory (`member/snap/`): state-machine images that raft
//! snapshots refer to.
//!
//! 1. The apply actor writes an image of the MVCC store with
//!    [`SnapDir::create`]: copied to a temp file, fsynced, renamed to
//!    `<index>.snap` (16 hex digits), directory fsynced.
//! 2. A raft `Snapshot` carries a [`proto::internal::SnapshotDescriptor`]
//!    (index, size, SHA-256) in its data; the image itself travels beside
//!    raft, in chunks, over the peer transport.
//! 3. A receiving member writes chunks with [`SnapDir::receiver`], which
//!    checks size and SHA-256 before the image gets its final name.
//! 4. Installing an image replaces the MVCC store's `data.mdb`
//!    ([`install_image`]): the image is copied beside the old file, fsynced,
//!    then renamed over it, so a crash leaves the old or the new store.
//! 5. Old images are pruned, keeping the newest few.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use proto::internal::SnapshotDescriptor;
use sha2::{Digest, Sha256};

use crate::StorageError;

/// How many images [`SnapDir::prune`] keeps (etcd keeps 5 snap files).
pub const KEEP_IMAGES: usize = 3;

/// The directory of state-machine images.
#[derive(Debug, Clone)]
pub struct SnapDir {
    dir: PathBuf,
}

fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir)?.sync_all()?;
    Ok(())
}

fn sha256_file(path: &Path) -> Result<(u64, Vec<u8>), StorageError> {
    let mut f = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        hasher.update(&buf[..n]);
    }
    Ok((size, hasher.finalize().to_vec()))
}

impl SnapDir {
    /// Opens (creating) the directory.
    pub fn open(dir: &Path) -> Result<Self, StorageError> {
        fs::create_dir_all(dir)?;
        Ok(Self {
            dir: dir.to_path_buf(),
        })
    }

    /// Where the image for raft index `index` lives.
    pub fn path(&self, index: u64) -> PathBuf {
        self.dir.join(format!("{index:016x}.snap"))
    }

    /// Writes an image with `write` (given a temp path) and names it for
    /// `index`; returns its descriptor.
    pub fn create(
        &self,
        index: u64,
        write: impl FnOnce(&Path) -> Result<(), StorageError>,
    ) -> Result<SnapshotDescriptor, StorageError> {
        let tmp = self.dir.join(format!("{index:016x}.snap.tmp"));
        let _ = fs::remove_file(&tmp);
        write(&tmp)?;
        File::open(&tmp)?.sync_all()?;
        let (size, sha256) = sha256_file(&tmp)?;
        fs::rename(&tmp, self.path(index))?;
        sync_dir(&self.dir)?;
        Ok(SnapshotDescriptor {
            index,
            size,
            sha256,
        })
    }

    /// Whether the image described by `d` is here, complete.
    pub fn has(&self, d: &SnapshotDescriptor) -> bool {
        fs::metadata(self.path(d.index)).is_ok_and(|m| m.len() == d.size)
    }

    /// Starts receiving the image described by `d`.
    pub fn receiver(&self, d: &SnapshotDescriptor) -> Result<SnapReceiver, StorageError> {
        let tmp = self.dir.join(format!("{:016x}.snap.recv", d.index));
        let file = File::create(&tmp)?;
        Ok(SnapReceiver {
            file,
            tmp,
            dest: self.path(d.index),
            dir: self.dir.clone(),
            expected: d.clone(),
            hasher: Sha256::new(),
            written: 0,
        })
    }

    /// Removes `backup-*.image` files a crash left behind (images written
    /// for `Maintenance.Snapshot` streams); called once at start.
    pub fn clear_backups(&self) -> Result<(), StorageError> {
        for entry in fs::read_dir(&self.dir)? {
            let path = entry?.path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            if name.starts_with("backup-") && name.ends_with(".image") {
                fs::remove_file(&path)?;
            }
        }
        Ok(())
    }

    /// Deletes all but the newest [`KEEP_IMAGES`] images and any leftover
    /// temp files (`.snap.tmp`, `.snap.recv`); never the image for `keep`.
    /// Other files (e.g. `Maintenance.Snapshot` backups being streamed) are
    /// left alone.
    pub fn prune(&self, keep: u64) -> Result<(), StorageError> {
        let mut images: Vec<(u64, PathBuf)> = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let path = entry?.path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_string();
            if let Some(hex) = name.strip_suffix(".snap") {
                if let Ok(index) = u64::from_str_radix(hex, 16) {
                    images.push((index, path));
                }
            } else if name.ends_with(".snap.tmp") || name.ends_with(".snap.recv") {
                let _ = fs::remove_file(&path);
            }
        }
        images.sort();
        let excess = images.len().saturating_sub(KEEP_IMAGES);
        for (index, path) in images.into_iter().take(excess) {
            if index != keep {
                fs::remove_file(path)?;
            }
        }
        Ok(())
    }
}

/// An image being received in chunks.
pub struct SnapReceiver {
    file: File,
    tmp: PathBuf,
    dest: PathBuf,
    dir: PathBuf,
    expected: SnapshotDescriptor,
    hasher: Sha256,
    written: u64,
}

impl SnapReceiver {
    /// Appends the chunk that starts at `offset`.
    pub fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), StorageError> {
        if offset != self.written || self.written + data.len() as u64 > self.expected.size {
            return Err(StorageError::Corrupt(format!(
                "snapshot chunk at {offset} (len {}) does not follow {} of {} bytes",
                data.len(),
                self.written,
                self.expected.size
            )));
        }
        self.file.write_all(data)?;
        self.hasher.update(data);
        self.written += data.len() as u64;
        Ok(())
    }

    /// Checks size and SHA-256, fsyncs and gives the image its final name.
    pub fn finish(self) -> Result<PathBuf, StorageError> {
        let digest = self.hasher.finalize().to_vec();
        if self.written != self.expected.size || digest != self.expected.sha256 {
            let _ = fs::remove_file(&self.tmp);
            return Err(StorageError::Corrupt(format!(
                "snapshot {:016x}: received {} bytes with a different checksum than announced",
                self.expected.index, self.written
            )));
        }
        self.file.sync_all()?;
        fs::rename(&self.tmp, &self.dest)?;
        sync_dir(&self.dir)?;
        Ok(self.dest)
    }
}

/// Replaces the MVCC store in `store_dir` (closed) with `image`: the image
/// is copied beside the live file, fsynced, and renamed over `data.mdb`;
/// the old lock file goes.
pub fn install_image(store_dir: &Path, image: &Path) -> Result<(), StorageError> {
    let staged = store_dir.join("data.mdb.install");
    fs::copy(image, &staged)?;
    File::open(&staged)?.sync_all()?;
    fs::rename(&staged, store_dir.join("data.mdb"))?;
    let _ = fs::remove_file(store_dir.join("lock.mdb"));
    sync_dir(store_dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_receive_and_verify() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let src = SnapDir::open(a.path()).unwrap();
        let body: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let d = src.create(42, |p| Ok(fs::write(p, &body)?)).unwrap();
        assert!(src.has(&d));
        assert_eq!(d.size, body.len() as u64);

        let dst = SnapDir::open(b.path()).unwrap();
        let mut r = dst.receiver(&d).unwrap();
        for (i, chunk) in body.chunks(32 * 1024).enumerate() {
            r.write((i * 32 * 1024) as u64, chunk).unwrap();
        }
        let path = r.finish().unwrap();
        assert_eq!(fs::read(path).unwrap(), body);
        assert!(dst.has(&d));
    }

    #[test]
    fn corrupt_or_out_of_order_chunks_are_refused() {
        let a = tempfile::tempdir().unwrap();
        let dir = SnapDir::open(a.path()).unwrap();
        let d = SnapshotDescriptor {
            index: 7,
            size: 4,
            sha256: Sha256::digest(b"abcd").to_vec(),
        };
        let mut r = dir.receiver(&d).unwrap();
        assert!(r.write(1, b"b").is_err());
        r.write(0, b"abce").unwrap();
        assert!(r.finish().is_err());
        assert!(!dir.has(&d));
    }

    #[test]
    fn prune_keeps_the_newest() {
        let a = tempfile::tempdir().unwrap();
        let dir = SnapDir::open(a.path()).unwrap();
        for i in 1..=6u64 {
            dir.create(i, |p| Ok(fs::write(p, [i as u8])?)).unwrap();
        }
        dir.prune(6).unwrap();
        let left: Vec<bool> = (1..=6).map(|i| dir.path(i).exists()).collect();
        assert_eq!(left, vec![false, false, false, true, true, true]);
    }
}
