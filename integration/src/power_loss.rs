//! Power-loss simulation: the test side of the `powerloss` `LD_PRELOAD` shim
//! (`integration/powerloss`; its module doc has the journal format).
//!
//! 1. [`shim_library`] builds the shim (`cargo build -q -p powerloss`, once
//!    per test process; cargo rebuilds only what changed) and returns the
//!    path of `libpowerloss.so`.
//! 2. [`PowerCut::new`] makes an empty journal directory, outside the data
//!    dir, for one server's data dir; [`PowerCut::env`] is what that server
//!    needs to run under the shim (`LD_PRELOAD` and the shim's two
//!    variables), for [`crate::Server::set_env`] or
//!    [`crate::cluster::Cluster::set_env`]. The shim then journals, before
//!    each write to a file under the data dir, the bytes and length it
//!    replaces, and empties a file's journal when an fsync of it completes.
//! 3. The test kills the server with SIGKILL at a moment of its choosing.
//! 4. [`PowerCut::roll_back`] applies every journal backwards: for each file
//!    (found by device and inode under the data dir, so a rename since does
//!    not matter) it restores the bytes and the length each journaled change
//!    replaced, newest change first, except the ranges written through an
//!    `O_DSYNC` descriptor, which were durable when written. Each file is
//!    then as it was at its last completed fsync, plus its durable writes:
//!    what a power cut at the kill could have left. The journals are removed,
//!    so the next start under the shim journals afresh.
//! 5. [`mvcc_state`] reads the applied index and revision of a data dir's
//!    MVCC store (from a copy), so a test can show what a rollback took away.
//!
//! What it models, and what it does not:
//! - It models the worst case for data: every write since the last fsync
//!   lost, none kept. That is the case that matters for acknowledged writes:
//!   anything acknowledged must have been fsynced. A real power cut may also
//!   keep any subset of those writes, or tear a page; that LMDB survives
//!   those outcomes (it fsyncs data pages before writing the meta page that
//!   points at them) is LMDB's ordering argument, not tested here.
//! - Directory entries are not journaled: file creations, renames and
//!   unlinks stay as the process left them, where a real power cut may undo
//!   any that were not followed by an fsync of the directory. oxcd fsyncs
//!   the directory after each rename it relies on (snapshot images,
//!   `identity.json`). A journaled file that the process deleted is reported
//!   as gone and not restored.
//! - Not journaled at all (see the shim's doc; oxcd does not use them on its
//!   data files): truncation by `open(O_TRUNC)`, `fallocate`, `pwritev2`,
//!   writes through `mmap`.
//! - Only a process run under the shim is journaled: what an earlier
//!   process wrote without it and never fsynced counts as durable.
//! - The shim needs a dynamically linked server: it journals nothing in
//!   etcd (Go calls the kernel directly), so these tests run oxcd only.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::ops::Range;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use tempfile::TempDir;

use crate::HarnessError;
use crate::binaries::{cargo, workspace_target_dir};
use crate::server::Env;

/// What builds the shim.
const SHIM_BUILD: [&str; 4] = ["build", "-q", "-p", "powerloss"];
/// The shim's file name in the target dir's `debug/`.
const SHIM_FILE: &str = "libpowerloss.so";
/// The file in which the shim reports writes it could not journal.
const SHIM_ERRORS: &str = "ERRORS";
const MAGIC: &[u8; 8] = b"OXPLUNDO";
const TAG_UNDO: u8 = 1;
const TAG_DURABLE: u8 = 2;
/// The MVCC store's LMDB file, relative to a data dir.
const MVCC_FILE: &str = "member/kv/data.mdb";
/// Map size for opening a copy of the MVCC store (virtual; files are small).
const MVCC_MAP_BYTES: usize = 1 << 30;

/// Step 1: the shim library, built if its sources changed.
pub fn shim_library() -> Result<PathBuf, HarnessError> {
    static OUTCOME: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    const REASON: &str = "the power-loss shim is brought up to date on every test run";
    OUTCOME
        .get_or_init(|| {
            let target = workspace_target_dir();
            cargo(&target, &SHIM_BUILD, REASON)?;
            Ok(target.join("debug").join(SHIM_FILE))
        })
        .clone()
        .map_err(|status| HarnessError::BuildFailed {
            command: SHIM_BUILD.join(" "),
            reason: REASON.to_string(),
            status,
        })
}

/// Power cuts of one data dir (steps 2 and 4 of the module doc).
#[derive(Debug)]
pub struct PowerCut {
    data_dir: PathBuf,
    journal: TempDir,
    library: PathBuf,
}

impl PowerCut {
    /// Prepares power cuts of `data_dir`, which must exist; builds the shim
    /// first if needed.
    pub fn new(data_dir: &Path) -> Result<PowerCut, HarnessError> {
        let library = shim_library()?;
        Ok(PowerCut {
            // The shim compares the kernel's (canonical) paths with it.
            data_dir: data_dir.canonicalize()?,
            journal: tempfile::Builder::new()
                .prefix("oxcd-powerloss-journal-")
                .tempdir()?,
            library,
        })
    }

    /// The data dir, canonical.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The environment that runs a server under the shim.
    pub fn env(&self) -> Env {
        vec![
            ("LD_PRELOAD".into(), self.library.clone().into()),
            ("OXCD_POWERLOSS_DIR".into(), self.data_dir.clone().into()),
            (
                "OXCD_POWERLOSS_JOURNAL".into(),
                OsString::from(self.journal.path()),
            ),
        ]
    }

    /// Step 4: undoes every journaled write, once the process is dead.
    pub fn roll_back(&self) -> Result<Rollback, HarnessError> {
        roll_back(self.journal.path(), &self.data_dir)
    }
}

/// What [`PowerCut::roll_back`] did to one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRollback {
    /// The file, relative to the data dir; for a file that is gone, the path
    /// the shim first saw it at.
    pub path: PathBuf,
    /// Whether the file was still there (a gone file is left alone).
    pub found: bool,
    /// Changes undone (writes, truncations).
    pub undone: usize,
    /// Durable (`O_DSYNC`) writes kept.
    pub kept: usize,
    /// Bytes written back.
    pub bytes: u64,
    /// The file's length before and after the rollback.
    pub len: (u64, u64),
}

/// What [`PowerCut::roll_back`] did, per file with a non-empty journal.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rollback {
    pub files: Vec<FileRollback>,
}

impl Rollback {
    /// The rollback of the file at `path` (relative to the data dir).
    pub fn file(&self, path: &str) -> Option<&FileRollback> {
        self.files.iter().find(|f| f.path == Path::new(path))
    }

    /// Changes undone in the file at `path` (0 if it had none).
    pub fn undone_in(&self, path: &str) -> usize {
        self.file(path).map_or(0, |f| f.undone)
    }
}

impl fmt::Display for Rollback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.files.is_empty() {
            return write!(f, "nothing to undo");
        }
        let files: Vec<String> = self
            .files
            .iter()
            .map(|r| {
                let gone = if r.found { "" } else { " (gone, left alone)" };
                format!(
                    "{}{gone}: {} undone ({} bytes), {} durable kept, {} -> {} bytes",
                    r.path.display(),
                    r.undone,
                    r.bytes,
                    r.kept,
                    r.len.0,
                    r.len.1
                )
            })
            .collect();
        write!(f, "{}", files.join("; "))
    }
}

/// The MVCC store's state as stored on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MvccState {
    pub applied_index: u64,
    pub revision: i64,
}

/// Step 5: the MVCC store of `data_dir` (whose server is not running), read
/// from a copy so that the original stays untouched.
pub fn mvcc_state(data_dir: &Path) -> Result<MvccState, HarnessError> {
    let scratch = tempfile::tempdir()?;
    std::fs::copy(data_dir.join(MVCC_FILE), scratch.path().join("data.mdb"))?;
    let store = storage::mvcc::MvccStore::open(scratch.path(), MVCC_MAP_BYTES)?;
    Ok(MvccState {
        applied_index: store.applied_index(),
        revision: store.current_revision(),
    })
}

/// One journaled change (the shim's record format).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Record {
    /// A change of `len` bytes from `offset`; the file was `old_len` long
    /// and held `old` from `offset` (as much of the range as existed).
    Undo {
        offset: u64,
        len: u64,
        old_len: u64,
        old: Vec<u8>,
    },
    /// A write through an `O_DSYNC` descriptor: durable, never undone.
    Durable { offset: u64, len: u64 },
}

/// One file's journal.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Journal {
    dev: u64,
    ino: u64,
    path: PathBuf,
    records: Vec<Record>,
}

/// Reads fields off the front of a journal.
struct Fields<'a>(&'a [u8]);

impl<'a> Fields<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    /// One record; `None` at the end or for a record the kill cut short
    /// (its change had not started: the shim writes a record first).
    fn record(&mut self) -> Option<Result<Record, String>> {
        let tag = self.take(1)?[0];
        let (offset, len, old_len, count) = (self.u64()?, self.u64()?, self.u64()?, self.u64()?);
        if count > len {
            return Some(Err(format!(
                "a record holds {count} old bytes for a change of {len}"
            )));
        }
        let old = self.take(usize::try_from(count).ok()?)?.to_vec();
        Some(match tag {
            TAG_UNDO => Ok(Record::Undo {
                offset,
                len,
                old_len,
                old,
            }),
            TAG_DURABLE => Ok(Record::Durable { offset, len }),
            other => Err(format!("unknown record tag {other}")),
        })
    }
}

fn parse(bytes: &[u8]) -> Result<Journal, String> {
    let mut fields = Fields(bytes);
    if fields.take(MAGIC.len()) != Some(MAGIC.as_slice()) {
        return Err("not a power-loss journal (no OXPLUNDO header)".to_string());
    }
    let header = (|| {
        let (dev, ino) = (fields.u64()?, fields.u64()?);
        let path_len = usize::try_from(fields.u32()?).ok()?;
        let path = PathBuf::from(std::ffi::OsStr::from_bytes(fields.take(path_len)?));
        Some((dev, ino, path))
    })();
    let (dev, ino, path) = header.ok_or("the header is cut short")?;
    let mut records = Vec::new();
    while let Some(record) = fields.record() {
        records.push(record?);
    }
    Ok(Journal {
        dev,
        ino,
        path,
        records,
    })
}

/// Counts from [`undo`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Undone {
    undone: usize,
    kept: usize,
    bytes: u64,
}

/// Applies `records` to `file` newest first (step 4 of the module doc).
/// Ranges written durably stay as they are, and the file never gets shorter
/// than their end.
fn undo(file: &File, records: &[Record]) -> io::Result<Undone> {
    let mut durable: Vec<Range<u64>> = Vec::new();
    let mut counts = Undone::default();
    for record in records.iter().rev() {
        match record {
            Record::Durable { offset, len } => {
                durable.push(*offset..offset.saturating_add(*len));
                counts.kept += 1;
            }
            Record::Undo {
                offset,
                len,
                old_len,
                old,
            } => {
                let floor = durable.iter().map(|r| r.end).max().unwrap_or(0);
                let new_len = (*old_len).max(floor);
                file.set_len(new_len)?;
                // The range as it was: the old bytes, then (only where a
                // durable write keeps the file longer than it was) zeros.
                let end = offset.saturating_add(*len).min(new_len);
                let mut before = old.clone();
                before.resize(end.saturating_sub(*offset) as usize, 0);
                for piece in outside(*offset..end, &durable) {
                    let from = (piece.start - offset) as usize;
                    let to = (piece.end - offset) as usize;
                    file.write_all_at(&before[from..to], piece.start)?;
                    counts.bytes += piece.end - piece.start;
                }
                counts.undone += 1;
            }
        }
    }
    Ok(counts)
}

/// The parts of `range` outside every range in `holes`.
fn outside(range: Range<u64>, holes: &[Range<u64>]) -> Vec<Range<u64>> {
    let mut parts = vec![range];
    for hole in holes {
        parts = parts
            .into_iter()
            .flat_map(|p| {
                [p.start..p.end.min(hole.start), p.start.max(hole.end)..p.end]
                    .into_iter()
                    .filter(|r| r.start < r.end)
            })
            .collect();
    }
    parts
}

/// Every regular file under `dir`, by (device, inode).
fn files_by_inode(dir: &Path) -> io::Result<HashMap<(u64, u64), PathBuf>> {
    let mut found = HashMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            let meta = std::fs::symlink_metadata(&path)?;
            if meta.is_dir() {
                pending.push(path);
            } else if meta.is_file() {
                found.insert((meta.dev(), meta.ino()), path);
            }
        }
    }
    Ok(found)
}

/// [`PowerCut::roll_back`] of the journals in `journal_dir` onto the files
/// under `data_dir`.
fn roll_back(journal_dir: &Path, data_dir: &Path) -> Result<Rollback, HarnessError> {
    let errors = journal_dir.join(SHIM_ERRORS);
    if let Ok(text) = std::fs::read_to_string(&errors) {
        return Err(HarnessError::Journal {
            path: errors,
            reason: format!("the shim could not journal every write: {text}"),
        });
    }
    let files = files_by_inode(data_dir)?;
    let mut journals: Vec<PathBuf> = std::fs::read_dir(journal_dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<io::Result<_>>()?;
    journals.retain(|p| p.extension().is_some_and(|e| e == "undo"));
    let mut rollback = Rollback::default();
    for path in journals {
        let bytes = std::fs::read(&path)?;
        if bytes.is_empty() {
            // Emptied by an fsync: nothing to undo.
            std::fs::remove_file(&path)?;
            continue;
        }
        let journal = parse(&bytes).map_err(|reason| HarnessError::Journal {
            path: path.clone(),
            reason,
        })?;
        if journal.records.is_empty() {
            std::fs::remove_file(&path)?;
            continue;
        }
        let done = match files.get(&(journal.dev, journal.ino)) {
            None => FileRollback {
                path: journal.path.clone(),
                found: false,
                undone: 0,
                kept: 0,
                bytes: 0,
                len: (0, 0),
            },
            Some(target) => {
                let file = OpenOptions::new().write(true).open(target)?;
                let before = file.metadata()?.len();
                let counts = undo(&file, &journal.records).map_err(|e| HarnessError::Journal {
                    path: path.clone(),
                    reason: format!("undoing it on {}: {e}", target.display()),
                })?;
                FileRollback {
                    path: target
                        .strip_prefix(data_dir)
                        .unwrap_or(target)
                        .to_path_buf(),
                    found: true,
                    undone: counts.undone,
                    kept: counts.kept,
                    bytes: counts.bytes,
                    len: (before, file.metadata()?.len()),
                }
            }
        };
        rollback.files.push(done);
        std::fs::remove_file(&path)?;
    }
    rollback.files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(rollback)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shim's encoding (integration/powerloss/src/lib.rs), for tests.
    fn encode(journal: &Journal) -> Vec<u8> {
        let path = journal.path.as_os_str().as_bytes();
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&journal.dev.to_le_bytes());
        out.extend_from_slice(&journal.ino.to_le_bytes());
        out.extend_from_slice(&(path.len() as u32).to_le_bytes());
        out.extend_from_slice(path);
        for record in &journal.records {
            let (tag, offset, len, old_len, old) = match record {
                Record::Undo {
                    offset,
                    len,
                    old_len,
                    old,
                } => (TAG_UNDO, *offset, *len, *old_len, old.as_slice()),
                Record::Durable { offset, len } => (TAG_DURABLE, *offset, *len, 0, &[][..]),
            };
            out.push(tag);
            for n in [offset, len, old_len, old.len() as u64] {
                out.extend_from_slice(&n.to_le_bytes());
            }
            out.extend_from_slice(old);
        }
        out
    }

    fn undo_record(offset: u64, len: u64, old_len: u64, old: &[u8]) -> Record {
        Record::Undo {
            offset,
            len,
            old_len,
            old: old.to_vec(),
        }
    }

    /// A file holding `content`, in its own temp dir.
    fn file_with(content: &[u8]) -> (TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, content).unwrap();
        (dir, path)
    }

    fn apply(path: &Path, records: &[Record]) -> (Undone, Vec<u8>) {
        let file = OpenOptions::new().write(true).open(path).unwrap();
        let counts = undo(&file, records).unwrap();
        (counts, std::fs::read(path).unwrap())
    }

    #[test]
    fn a_journal_round_trips_and_a_record_cut_short_is_dropped() {
        let journal = Journal {
            dev: 7,
            ino: 42,
            path: PathBuf::from("/data/member/kv/data.mdb"),
            records: vec![
                undo_record(4096, 8192, 4096, b""),
                Record::Durable { offset: 0, len: 4 },
                undo_record(2, 3, 10, b"abc"),
            ],
        };
        let bytes = encode(&journal);
        assert_eq!(parse(&bytes).unwrap(), journal);
        for cut in 1..=(1 + 4 * 8 + 3) {
            let parsed = parse(&bytes[..bytes.len() - cut]).unwrap();
            assert_eq!(parsed.records, journal.records[..2], "cut {cut}");
        }
        assert!(parse(b"OXPLUND").is_err());
        assert!(parse(&bytes[..MAGIC.len() + 10]).is_err());
        let mut bad = bytes.clone();
        let last = bytes.len() - (1 + 4 * 8 + 3);
        bad[last] = 9;
        assert!(parse(&bad).unwrap_err().contains("tag 9"));
    }

    #[test]
    fn writes_are_undone_newest_first_and_lengths_restored() {
        // "hello" was fsynced; then "HE" at 0, "LLO!!" at 2 (extending the
        // file to 7), then a cut to 6.
        let (_dir, path) = file_with(b"HELLO!");
        let records = [
            undo_record(0, 2, 5, b"he"),
            undo_record(2, 5, 5, b"llo"),
            undo_record(6, 1, 7, b"!"),
        ];
        let (counts, content) = apply(&path, &records);
        assert_eq!(content, b"hello");
        assert_eq!(
            counts,
            Undone {
                undone: 3,
                kept: 0,
                bytes: 2 + 3 + 1
            }
        );
    }

    #[test]
    fn a_durable_write_survives_the_undo_of_older_writes_under_it() {
        // "abcdef" fsynced; "XXXX" at 1 (not synced); "YY" at 2 through an
        // O_DSYNC descriptor; "Z" at 3 (not synced).
        let (_dir, path) = file_with(b"aXYZXf");
        let records = [
            undo_record(1, 4, 6, b"bcde"),
            Record::Durable { offset: 2, len: 2 },
            undo_record(3, 1, 6, b"Y"),
        ];
        let (counts, content) = apply(&path, &records);
        assert_eq!(content, b"abYYef");
        assert_eq!(counts.undone, 2);
        assert_eq!(counts.kept, 1);
    }

    #[test]
    fn a_durable_write_past_the_old_end_keeps_the_file_that_long() {
        // "ab" fsynced; "cd" appended (not synced), then "ef" at 4 durably.
        let (_dir, path) = file_with(b"abcdef");
        let records = [
            undo_record(2, 2, 2, b""),
            Record::Durable { offset: 4, len: 2 },
        ];
        let (_, content) = apply(&path, &records);
        assert_eq!(content, b"ab\0\0ef");
    }

    #[test]
    fn the_parts_outside_holes() {
        assert_eq!(outside(0..10, &[]), vec![0..10]);
        assert_eq!(outside(0..10, &[2..4, 6..7]), vec![0..2, 4..6, 7..10]);
        assert_eq!(outside(0..10, &[0..4, 4..10]), Vec::<Range<u64>>::new());
        assert_eq!(outside(5..10, &[0..6, 9..20]), vec![6..9]);
    }

    #[test]
    fn a_rollback_finds_files_by_inode_and_reports_gone_ones() {
        let data = tempfile::tempdir().unwrap();
        let journals = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(data.path().join("member")).unwrap();
        let renamed = data.path().join("member/new-name");
        std::fs::write(&renamed, b"NEW").unwrap();
        let meta = std::fs::metadata(&renamed).unwrap();
        let write = |name: &str, journal: Journal| {
            std::fs::write(journals.path().join(name), encode(&journal)).unwrap()
        };
        write(
            "a.undo",
            Journal {
                dev: meta.dev(),
                ino: meta.ino(),
                path: data.path().join("member/old-name"),
                records: vec![undo_record(0, 3, 3, b"old")],
            },
        );
        write(
            "b.undo",
            Journal {
                dev: meta.dev(),
                ino: u64::MAX,
                path: data.path().join("member/deleted"),
                records: vec![undo_record(0, 1, 0, b"")],
            },
        );
        // Emptied by an fsync.
        std::fs::write(journals.path().join("c.undo"), b"").unwrap();
        let rollback = roll_back(journals.path(), data.path()).unwrap();
        assert_eq!(std::fs::read(&renamed).unwrap(), b"old");
        assert_eq!(rollback.undone_in("member/new-name"), 1);
        assert_eq!(rollback.files.len(), 2);
        assert!(rollback.files.iter().any(|f| !f.found));
        assert!(rollback.to_string().contains("gone"), "{rollback}");
        assert_eq!(std::fs::read_dir(journals.path()).unwrap().count(), 0);
        let again = roll_back(journals.path(), data.path()).unwrap();
        assert_eq!(again, Rollback::default());
    }

    #[test]
    fn a_rollback_refuses_when_the_shim_reported_an_error() {
        let data = tempfile::tempdir().unwrap();
        let journals = tempfile::tempdir().unwrap();
        std::fs::write(journals.path().join(SHIM_ERRORS), "cannot journal\n").unwrap();
        let err = roll_back(journals.path(), data.path()).unwrap_err();
        assert!(err.to_string().contains("cannot journal"), "{err}");
    }
}
