//! The snapshot directory (`member/snap/`): state-machine images that raft
//! snapshots refer to.
//!
//! 1. The apply actor writes an image of the MVCC store with
//!    [`SnapDir::create`]: copied to a temp file, fsynced, renamed to
//!    `<index>.snap` (16 hex digits), directory fsynced.
//! 2. A raft `Snapshot` carries a [`proto::internal::SnapshotDescriptor`]
//!    (index, size, SHA-256) in its data; the image itself travels beside
//!    raft, in chunks, over the peer transport.
//! 3. A receiving member writes chunks with [`SnapDir::receiver`] into a
//!    `.snap.recv` file of its own, and checks size and SHA-256 before the
//!    image gets its final name. A receive that ends early (the stream broke,
//!    a chunk was refused) removes its file when the receiver is dropped.
//! 4. Installing an image replaces the MVCC store's `data.mdb`
//!    ([`install_image`]): the image is copied beside the old file, fsynced,
//!    then renamed over it, so a crash leaves the old or the new store.
//! 5. Old images are pruned, keeping the newest few ([`SnapDir::prune`]).
//!    Pruning touches finished images only: the peer server may be writing a
//!    `.snap.recv` at any moment, and only the receiver knows when it is done.
//! 6. Temp files that a crash left behind (`.snap.tmp`, `.snap.recv`, the
//!    `backup-*` directories of `Maintenance.Snapshot` streams, and the
//!    `backup-*.image` files of older versions) are removed once at start,
//!    before anything can write one ([`SnapDir::clear_leftovers`]).

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use proto::internal::SnapshotDescriptor;
use sha2::{Digest, Sha256};

use crate::StorageError;

/// How many images [`SnapDir::prune`] keeps. Each is a full copy of the
/// store (etcd's 5 `.snap` files are small: it builds what it sends a
/// follower from its live database), so as few as is safe: the newest, and
/// the one before it, which raft may still name as its snapshot until it has
/// recorded the newest (a transfer already under way keeps its open file).
pub const KEEP_IMAGES: usize = 2;

/// The directory of state-machine images.
#[derive(Debug, Clone)]
pub struct SnapDir {
    dir: PathBuf,
    /// Numbers the receives, so two receives of the same image (a sender
    /// retrying while the first stream is still open) never share a file.
    receives: Arc<AtomicU64>,
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
            receives: Arc::new(AtomicU64::new(0)),
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

    /// Starts receiving the image described by `d`, into a file of its own.
    pub fn receiver(&self, d: &SnapshotDescriptor) -> Result<SnapReceiver, StorageError> {
        let n = self.receives.fetch_add(1, Ordering::Relaxed);
        let tmp = self.dir.join(format!("{:016x}-{n}.snap.recv", d.index));
        let file = File::options().write(true).create_new(true).open(&tmp)?;
        Ok(SnapReceiver {
            file,
            tmp,
            dest: self.path(d.index),
            dir: self.dir.clone(),
            expected: d.clone(),
            hasher: Sha256::new(),
            written: 0,
            finished: false,
        })
    }

    /// Removes the temp files a crash left behind: images half written
    /// (`.snap.tmp`), half received (`.snap.recv`) or written for a
    /// `Maintenance.Snapshot` stream (`backup-*`). Call it once at
    /// start, before the peer server or the apply actor can write one: later,
    /// any such file may belong to a transfer in progress.
    pub fn clear_leftovers(&self) -> Result<(), StorageError> {
        for entry in fs::read_dir(&self.dir)? {
            let path = entry?.path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            let leftover = name.ends_with(".snap.tmp")
                || name.ends_with(".snap.recv")
                || name.starts_with("backup-");
            if leftover {
                tracing::info!(path = %path.display(), "removing a leftover snapshot temp file");
                if path.is_dir() {
                    fs::remove_dir_all(&path)?;
                } else {
                    fs::remove_file(&path)?;
                }
            }
        }
        Ok(())
    }

    /// Deletes all but the newest [`KEEP_IMAGES`] images; never the image for
    /// `keep`. Nothing else is touched: a `.snap.recv` may be an image the
    /// peer server is receiving right now (leftovers of a crash go at start,
    /// with [`SnapDir::clear_leftovers`]).
    pub fn prune(&self, keep: u64) -> Result<(), StorageError> {
        let mut images: Vec<(u64, PathBuf)> = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let path = entry?.path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_string();
            if let Some(index) = name
                .strip_suffix(".snap")
                .and_then(|hex| u64::from_str_radix(hex, 16).ok())
            {
                images.push((index, path));
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

/// An image being received in chunks. Dropped before [`finish`] succeeds,
/// it removes its partial file.
///
/// [`finish`]: SnapReceiver::finish
pub struct SnapReceiver {
    file: File,
    tmp: PathBuf,
    dest: PathBuf,
    dir: PathBuf,
    expected: SnapshotDescriptor,
    hasher: Sha256,
    written: u64,
    /// Set once the file has its final name.
    finished: bool,
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
    pub fn finish(mut self) -> Result<PathBuf, StorageError> {
        let digest = self.hasher.finalize_reset().to_vec();
        if self.written != self.expected.size || digest != self.expected.sha256 {
            return Err(StorageError::Corrupt(format!(
                "snapshot {:016x}: received {} bytes with a different checksum than announced",
                self.expected.index, self.written
            )));
        }
        self.file.sync_all()?;
        fs::rename(&self.tmp, &self.dest)?;
        self.finished = true;
        sync_dir(&self.dir)?;
        Ok(self.dest.clone())
    }
}

impl Drop for SnapReceiver {
    fn drop(&mut self) {
        if !self.finished
            && let Err(e) = fs::remove_file(&self.tmp)
        {
            tracing::warn!(path = %self.tmp.display(), error = %e, "partial snapshot image not removed");
        }
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
    fn prune_leaves_an_image_being_received() {
        let a = tempfile::tempdir().unwrap();
        let dir = SnapDir::open(a.path()).unwrap();
        let body = b"an image arriving in two chunks";
        let d = SnapshotDescriptor {
            index: 9,
            size: body.len() as u64,
            sha256: Sha256::digest(body).to_vec(),
        };
        let mut r = dir.receiver(&d).unwrap();
        r.write(0, &body[..10]).unwrap();
        // The apply actor takes its own snapshot meanwhile and prunes.
        for i in 1..=5u64 {
            dir.create(i, |p| Ok(fs::write(p, [i as u8])?)).unwrap();
        }
        dir.prune(5).unwrap();
        r.write(10, &body[10..]).unwrap();
        let path = r.finish().unwrap();
        assert_eq!(fs::read(path).unwrap(), body);
        assert!(dir.has(&d));
    }

    fn file_names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn an_unfinished_receive_removes_its_file_and_two_receives_do_not_mix() {
        let a = tempfile::tempdir().unwrap();
        let dir = SnapDir::open(a.path()).unwrap();
        let body = b"abcd";
        let d = SnapshotDescriptor {
            index: 3,
            size: 4,
            sha256: Sha256::digest(body).to_vec(),
        };
        let mut broken = dir.clone().receiver(&d).unwrap();
        broken.write(0, b"ab").unwrap();
        let mut retry = dir.receiver(&d).unwrap();
        retry.write(0, body).unwrap();
        assert_eq!(file_names(a.path()).len(), 2, "one file per receive");
        drop(broken);
        retry.finish().unwrap();
        assert_eq!(file_names(a.path()), vec![format!("{:016x}.snap", 3)]);
        assert!(dir.has(&d));

        let mut refused = dir.receiver(&d).unwrap();
        refused.write(0, b"abce").unwrap();
        assert!(refused.finish().is_err());
        assert_eq!(file_names(a.path()), vec![format!("{:016x}.snap", 3)]);
    }

    #[test]
    fn leftovers_of_a_crash_go_at_start() {
        let a = tempfile::tempdir().unwrap();
        let dir = SnapDir::open(a.path()).unwrap();
        dir.create(1, |p| Ok(fs::write(p, b"x")?)).unwrap();
        for name in [
            "0000000000000002.snap.tmp",
            "0000000000000003-0.snap.recv",
            "backup-7.image",
        ] {
            fs::write(a.path().join(name), b"partial").unwrap();
        }
        fs::create_dir(a.path().join("backup-8")).unwrap();
        fs::write(a.path().join("backup-8").join("etcd.db"), b"partial").unwrap();
        dir.clear_leftovers().unwrap();
        assert_eq!(file_names(a.path()), vec![format!("{:016x}.snap", 1)]);
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
        assert_eq!(left, vec![false, false, false, false, true, true]);
    }
}
