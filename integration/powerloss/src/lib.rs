//! An `LD_PRELOAD` shim that lets the power-loss test undo every write a
//! file received since its last completed fsync, as a power cut would.
//!
//! 1. Configuration comes from the environment, read at the first call:
//!    `OXCD_POWERLOSS_DIR` (an absolute, canonical directory; only regular
//!    files under it are watched) and `OXCD_POWERLOSS_JOURNAL` (where the undo
//!    journals go; it must lie outside the watched directory). Without both,
//!    every call goes straight to libc.
//! 2. Before a change to a watched file — `write`, `writev`, `pwrite`,
//!    `pwrite64`, `pwritev`, `pwritev64`, `copy_file_range` into it,
//!    `ftruncate`, `ftruncate64` — the bytes it is about to overwrite and the
//!    file's length are appended to that file's undo journal
//!    `<journal>/<dev>-<ino>.undo`; only then is libc called. A write through
//!    a descriptor opened `O_DSYNC` or `O_SYNC` is durable once it returns:
//!    it is journaled as a durable range instead, which the rollback keeps.
//! 3. A completed `fsync` or `fdatasync` of a watched file, through any
//!    descriptor of its inode, empties its journal: all before it is durable.
//!    A journal left by an earlier process (not rolled back) is appended to.
//! 4. After `kill -9`, `integration::power_loss` applies each journal
//!    backwards, leaving every file as a power cut at that moment could.
//!
//! What oxcd calls on its data files was checked with strace: `pwrite64`,
//! `lseek` + `writev` and `fdatasync` on the LMDB files, `pwrite64` on the
//! raft log's `O_DSYNC` meta descriptor, `write` and `fsync` on snapshot
//! images and `identity.json`, `ftruncate` of `lock.mdb`; `fs::copy` (a
//! follower installing a snapshot) uses `copy_file_range`. Not watched,
//! because nothing in oxcd uses them on its data files: `pwritev2`,
//! `fallocate`, writes through `mmap` (LMDB runs without `MDB_WRITEMAP`),
//! truncation by `open(O_TRUNC)`, `sync`/`syncfs` (which would make the
//! rollback lose more than a power cut, never less), `sync_file_range`
//! (never durable on its own, so ignoring it is exact).
//!
//! Rules the code keeps:
//! - the caller sees libc's result and `errno`, always: a journaling failure
//!   is printed on stderr and appended to `<journal>/ERRORS` (the rollback
//!   refuses to run then), never returned;
//! - the shim's own I/O (journal writes through `std`) goes straight to libc:
//!   a thread-local flag marks a thread that is inside the shim;
//! - one mutex per watched inode is held from journaling a change through the
//!   libc call (and across an fsync and the journal truncation after it), so
//!   a journal lists changes in the order the file saw them;
//! - each watched inode keeps a read descriptor open in the shim, to read old
//!   bytes even through write-only descriptors; it also keeps the inode
//!   number from being reused while the process lives, so `<dev>-<ino>`
//!   names one file.
//!
//! Journal format (all integers little-endian), read back by
//! `integration/src/power_loss.rs`: empty, or a header `OXPLUNDO`, `dev: u64`,
//! `ino: u64`, `path_len: u32`, the path as first seen; then records `tag:
//! u8` (1 undo, 2 durable), `offset: u64`, `len: u64` (the range the change
//! may alter), `old_len: u64` (the file length before it), `count: u64`, and
//! `count` old bytes (the file's bytes from `offset`, as many as existed
//! within `len`; none for a durable record). A record cut short by the kill
//! is ignored by the reader: its change had not started.

// The workspace denies unsafe code; an LD_PRELOAD shim is nothing but
// exported C functions forwarding raw pointers to libc. Every unsafe block
// says why it is sound (enforced below).
#![allow(unsafe_code)]
#![deny(clippy::undocumented_unsafe_blocks)]

use std::cell::Cell;
use std::collections::BTreeMap;
use std::ffi::CStr;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::PathBuf;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use libc::{c_int, c_uint, c_void, iovec, off_t, size_t, ssize_t};

const MAGIC: &[u8; 8] = b"OXPLUNDO";
const TAG_UNDO: u8 = 1;
const TAG_DURABLE: u8 = 2;

type Key = (u64, u64);

/// Every watched inode seen so far, by (device, inode).
static FILES: Mutex<BTreeMap<Key, Arc<Mutex<Journal>>>> = Mutex::new(BTreeMap::new());
static CONFIG: OnceLock<Option<Config>> = OnceLock::new();

thread_local! {
    /// Set while this thread runs shim code (step 2 of the module rules).
    static INSIDE: Cell<bool> = const { Cell::new(false) };
}

/// Step 1 of the module doc.
struct Config {
    dir: PathBuf,
    journal: PathBuf,
}

fn config() -> Option<&'static Config> {
    CONFIG
        .get_or_init(|| {
            let dir = std::env::var_os("OXCD_POWERLOSS_DIR")?;
            let journal = std::env::var_os("OXCD_POWERLOSS_JOURNAL")?;
            let config = Config {
                dir: dir.into(),
                journal: journal.into(),
            };
            if let Err(e) = std::fs::create_dir_all(&config.journal) {
                report(&config, &format!("cannot create the journal dir: {e}"));
            }
            Some(config)
        })
        .as_ref()
}

/// Marks the thread as inside the shim until dropped; `None` if it already
/// is (or its thread-locals are gone), and then the call goes straight on.
struct Inside;

impl Inside {
    fn enter() -> Option<Inside> {
        let entered = INSIDE.try_with(|inside| !inside.replace(true)).ok()?;
        entered.then_some(Inside)
    }
}

impl Drop for Inside {
    fn drop(&mut self) {
        let _ = INSIDE.try_with(|inside| inside.set(false));
    }
}

/// A journaling failure: on stderr and in `<journal>/ERRORS`.
fn report(config: &Config, message: &str) {
    eprintln!("oxcd powerloss shim: {message}");
    let errors = OpenOptions::new()
        .create(true)
        .append(true)
        .open(config.journal.join("ERRORS"));
    if let Ok(mut file) = errors {
        let _ = writeln!(file, "{message}");
    }
}

fn errno() -> c_int {
    // SAFETY: glibc's per-thread errno slot, always valid on this thread.
    unsafe { *libc::__errno_location() }
}

fn set_errno(value: c_int) {
    // SAFETY: as in `errno`.
    unsafe { *libc::__errno_location() = value }
}

fn fstat(fd: c_int) -> std::io::Result<libc::stat> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `st` is writable memory of the right size for fstat.
    if unsafe { libc::fstat(fd, st.as_mut_ptr()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fstat succeeded, so it filled `st`.
    Ok(unsafe { st.assume_init() })
}

/// A change about to be made to a file (step 2).
#[derive(Debug, Clone, Copy)]
enum Change {
    /// `len` bytes written at `at`, or at the descriptor's offset (the end
    /// of the file for `O_APPEND`) when `None`.
    Write { at: Option<i64>, len: u64 },
    /// The file cut or extended to `to` bytes.
    Truncate { to: i64 },
}

/// One watched inode's undo journal.
struct Journal {
    key: Key,
    /// The path the inode had when first seen (the header's, for people).
    path: PathBuf,
    /// The journal file, opened at the first record.
    file: Option<File>,
    /// The watched file itself, read-only, to read old bytes.
    reader: Option<File>,
    /// The journal's length (0: empty, not even a header).
    end: u64,
}

impl Journal {
    fn new(key: Key, path: PathBuf) -> Self {
        Journal {
            key,
            path,
            file: None,
            reader: None,
            end: 0,
        }
    }

    /// Appends the record that undoes `change` about to go through `fd`.
    fn record(&mut self, config: &Config, fd: c_int, change: Change) -> std::io::Result<()> {
        let size = fstat(fd)?.st_size as u64;
        // SAFETY: F_GETFL reads the descriptor's flags and touches no memory.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
        if flags < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let (offset, len, durable) = match change {
            Change::Write { at, len } => {
                let offset = match at {
                    Some(at) => at,
                    None if flags & libc::O_APPEND != 0 => size as i64,
                    // SAFETY: lseek to the current offset moves nothing.
                    None => unsafe { libc::lseek(fd, 0, libc::SEEK_CUR) },
                };
                // O_SYNC includes the O_DSYNC bit on Linux.
                (offset, len, flags & libc::O_DSYNC != 0)
            }
            Change::Truncate { to } => (
                to.min(size as i64),
                (to.max(0) as u64).abs_diff(size),
                false,
            ),
        };
        // A negative offset fails in libc and changes nothing.
        let Ok(offset) = u64::try_from(offset) else {
            return Ok(());
        };
        if len == 0 {
            return Ok(());
        }
        let old = if durable {
            Vec::new()
        } else {
            let existing = len.min(size.saturating_sub(offset));
            let mut old = vec![0u8; existing as usize];
            self.reader(fd)?.read_exact_at(&mut old, offset)?;
            old
        };
        let mut record = Vec::with_capacity(33 + old.len());
        record.push(if durable { TAG_DURABLE } else { TAG_UNDO });
        for n in [offset, len, size, old.len() as u64] {
            record.extend_from_slice(&n.to_le_bytes());
        }
        record.extend_from_slice(&old);
        self.append(config, &record)
    }

    fn reader(&mut self, fd: c_int) -> std::io::Result<&File> {
        let reader = match self.reader.take() {
            Some(reader) => reader,
            None => File::open(format!("/proc/self/fd/{fd}"))?,
        };
        Ok(self.reader.insert(reader))
    }

    fn append(&mut self, config: &Config, record: &[u8]) -> std::io::Result<()> {
        let file = match self.file.take() {
            Some(file) => file,
            None => {
                // An earlier process's records, if the journal was not
                // rolled back since, stay: they are older changes.
                let (dev, ino) = self.key;
                let file = OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .custom_flags(libc::O_CLOEXEC)
                    .open(config.journal.join(format!("{dev}-{ino}.undo")))?;
                self.end = file.metadata()?.len();
                file
            }
        };
        let file = self.file.insert(file);
        if self.end == 0 {
            let (dev, ino) = self.key;
            let path = self.path.as_os_str().as_bytes();
            let mut header = MAGIC.to_vec();
            header.extend_from_slice(&dev.to_le_bytes());
            header.extend_from_slice(&ino.to_le_bytes());
            header.extend_from_slice(&(path.len() as u32).to_le_bytes());
            header.extend_from_slice(path);
            file.write_all_at(&header, 0)?;
            self.end = header.len() as u64;
        }
        file.write_all_at(record, self.end)?;
        self.end += record.len() as u64;
        Ok(())
    }

    /// Step 3: everything journaled so far is durable; the journal is
    /// emptied (the next record writes a new header).
    fn clear(&mut self) -> std::io::Result<()> {
        if let Some(file) = &self.file
            && self.end > 0
        {
            file.set_len(0)?;
            self.end = 0;
        }
        Ok(())
    }
}

/// The journal of the file `fd` refers to, if it is a watched one.
fn watched(config: &Config, fd: c_int) -> Option<Arc<Mutex<Journal>>> {
    let st = fstat(fd).ok()?;
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return None;
    }
    let path = std::fs::read_link(format!("/proc/self/fd/{fd}")).ok()?;
    if !path.starts_with(&config.dir) {
        return None;
    }
    let mut files = FILES.lock().unwrap_or_else(PoisonError::into_inner);
    let key = (st.st_dev, st.st_ino);
    let journal = files
        .entry(key)
        .or_insert_with(|| Arc::new(Mutex::new(Journal::new(key, path))));
    Some(journal.clone())
}

/// Step 2: journals `change` of `fd`, then makes it with `real`, holding the
/// file's lock throughout.
fn change<R>(fd: c_int, change: Change, real: impl FnOnce() -> R) -> R {
    let Some(_inside) = Inside::enter() else {
        return real();
    };
    let Some((config, journal)) = config().and_then(|c| Some((c, watched(c, fd)?))) else {
        return real();
    };
    let saved = errno();
    let mut journal = journal.lock().unwrap_or_else(PoisonError::into_inner);
    if let Err(e) = journal.record(config, fd, change) {
        report(
            config,
            &format!(
                "cannot journal {change:?} of {}: {e}",
                journal.path.display()
            ),
        );
    }
    set_errno(saved);
    real()
}

/// Step 3: makes the fsync with `real`, then empties the file's journal if
/// it succeeded.
fn synced(fd: c_int, real: impl FnOnce() -> c_int) -> c_int {
    let Some(_inside) = Inside::enter() else {
        return real();
    };
    let Some((config, journal)) = config().and_then(|c| Some((c, watched(c, fd)?))) else {
        return real();
    };
    let mut journal = journal.lock().unwrap_or_else(PoisonError::into_inner);
    let result = real();
    if result == 0 {
        let saved = errno();
        if let Err(e) = journal.clear() {
            report(
                config,
                &format!(
                    "cannot empty the journal of {}: {e}",
                    journal.path.display()
                ),
            );
        }
        set_errno(saved);
    }
    result
}

/// libc's function `name` (the next definition after this library's),
/// looked up once into `cache`.
fn next(cache: &AtomicPtr<c_void>, name: &CStr) -> *mut c_void {
    let mut ptr = cache.load(Ordering::Acquire);
    if ptr.is_null() {
        // SAFETY: dlsym with RTLD_NEXT and a NUL-terminated name.
        ptr = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr()) };
        if ptr.is_null() {
            // The program called a function libc does not have: it could
            // not have been linked. Nothing sensible to forward to.
            std::process::abort();
        }
        cache.store(ptr, Ordering::Release);
    }
    ptr
}

/// The real function `$name` with C signature `$ty`.
macro_rules! real {
    ($name:literal as $ty:ty) => {{
        static CACHE: AtomicPtr<c_void> = AtomicPtr::new(std::ptr::null_mut());
        let ptr = next(&CACHE, $name);
        // SAFETY: `ptr` is libc's non-null function `$name`, whose C
        // signature is `$ty`.
        unsafe { std::mem::transmute::<*mut c_void, $ty>(ptr) }
    }};
}

type WriteFn = unsafe extern "C" fn(c_int, *const c_void, size_t) -> ssize_t;
type PwriteFn = unsafe extern "C" fn(c_int, *const c_void, size_t, off_t) -> ssize_t;
type WritevFn = unsafe extern "C" fn(c_int, *const iovec, c_int) -> ssize_t;
type PwritevFn = unsafe extern "C" fn(c_int, *const iovec, c_int, off_t) -> ssize_t;
type CopyFn = unsafe extern "C" fn(c_int, *mut off_t, c_int, *mut off_t, size_t, c_uint) -> ssize_t;
type TruncateFn = unsafe extern "C" fn(c_int, off_t) -> c_int;
type SyncFn = unsafe extern "C" fn(c_int) -> c_int;

/// The bytes `iovcnt` buffers at `iov` hold.
///
/// # Safety
/// `iov` is null or points at `iovcnt` readable `iovec`s.
unsafe fn iov_len(iov: *const iovec, iovcnt: c_int) -> u64 {
    if iov.is_null() || iovcnt <= 0 {
        return 0;
    }
    // SAFETY: the caller's promise above.
    let iovs = unsafe { std::slice::from_raw_parts(iov, iovcnt as usize) };
    iovs.iter().map(|v| v.iov_len as u64).sum()
}

/// libc's `write`, journaled (module doc, step 2).
///
/// # Safety
/// libc's contract for `write`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn write(fd: c_int, buf: *const c_void, count: size_t) -> ssize_t {
    let real = real!(c"write" as WriteFn);
    let len = count as u64;
    // SAFETY: the caller's own arguments, unchanged, to the function it called.
    change(fd, Change::Write { at: None, len }, || unsafe {
        real(fd, buf, count)
    })
}

/// A positioned write of `count` bytes at `offset`, journaled, then done
/// by `real` (libc's `pwrite` or `pwrite64`).
///
/// # Safety
/// libc's contract for `pwrite`, for the caller's arguments.
unsafe fn journaled_pwrite(
    real: PwriteFn,
    fd: c_int,
    buf: *const c_void,
    count: size_t,
    offset: off_t,
) -> ssize_t {
    // SAFETY: the caller's own arguments, unchanged, to the function it called.
    change(
        fd,
        Change::Write {
            at: Some(offset),
            len: count as u64,
        },
        || unsafe { real(fd, buf, count, offset) },
    )
}

/// libc's `pwrite`, journaled (module doc, step 2).
///
/// # Safety
/// libc's contract for `pwrite`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pwrite(
    fd: c_int,
    buf: *const c_void,
    count: size_t,
    offset: off_t,
) -> ssize_t {
    let real = real!(c"pwrite" as PwriteFn);
    // SAFETY: the caller's own arguments, unchanged.
    unsafe { journaled_pwrite(real, fd, buf, count, offset) }
}

/// libc's `pwrite64` (the same as `pwrite` on 64-bit Linux), journaled.
///
/// # Safety
/// libc's contract for `pwrite64`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pwrite64(
    fd: c_int,
    buf: *const c_void,
    count: size_t,
    offset: off_t,
) -> ssize_t {
    let real = real!(c"pwrite64" as PwriteFn);
    // SAFETY: the caller's own arguments, unchanged.
    unsafe { journaled_pwrite(real, fd, buf, count, offset) }
}

/// libc's `writev`, journaled.
///
/// # Safety
/// libc's contract for `writev`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn writev(fd: c_int, iov: *const iovec, iovcnt: c_int) -> ssize_t {
    let real = real!(c"writev" as WritevFn);
    // SAFETY: writev's contract: `iov` holds `iovcnt` iovecs.
    let len = unsafe { iov_len(iov, iovcnt) };
    // SAFETY: the caller's own arguments, unchanged, to the function it called.
    change(fd, Change::Write { at: None, len }, || unsafe {
        real(fd, iov, iovcnt)
    })
}

/// libc's `pwritev`, journaled.
///
/// # Safety
/// libc's contract for `pwritev`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pwritev(
    fd: c_int,
    iov: *const iovec,
    iovcnt: c_int,
    offset: off_t,
) -> ssize_t {
    let real = real!(c"pwritev" as PwritevFn);
    // SAFETY: pwritev's contract: `iov` holds `iovcnt` iovecs.
    let len = unsafe { iov_len(iov, iovcnt) };
    let at = Some(offset);
    // SAFETY: the caller's own arguments, unchanged, to the function it called.
    change(fd, Change::Write { at, len }, || unsafe {
        real(fd, iov, iovcnt, offset)
    })
}

/// libc's `pwritev64` (the same as `pwritev` on 64-bit Linux), journaled.
///
/// # Safety
/// libc's contract for `pwritev64`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pwritev64(
    fd: c_int,
    iov: *const iovec,
    iovcnt: c_int,
    offset: off_t,
) -> ssize_t {
    let real = real!(c"pwritev64" as PwritevFn);
    // SAFETY: pwritev64's contract: `iov` holds `iovcnt` iovecs.
    let len = unsafe { iov_len(iov, iovcnt) };
    let at = Some(offset);
    // SAFETY: the caller's own arguments, unchanged, to the function it called.
    change(fd, Change::Write { at, len }, || unsafe {
        real(fd, iov, iovcnt, offset)
    })
}

/// libc's `copy_file_range`, journaled as a write of `len` bytes into
/// `fd_out` (more than it may copy, which only journals unchanged bytes).
///
/// # Safety
/// libc's contract for `copy_file_range`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn copy_file_range(
    fd_in: c_int,
    off_in: *mut off_t,
    fd_out: c_int,
    off_out: *mut off_t,
    len: size_t,
    flags: c_uint,
) -> ssize_t {
    let real = real!(c"copy_file_range" as CopyFn);
    // SAFETY: copy_file_range's contract: `off_out` is null or readable.
    let at = (!off_out.is_null()).then(|| unsafe { *off_out });
    // SAFETY: the caller's own arguments, unchanged, to the function it called.
    change(
        fd_out,
        Change::Write {
            at,
            len: len as u64,
        },
        || unsafe { real(fd_in, off_in, fd_out, off_out, len, flags) },
    )
}

/// libc's `ftruncate`, journaled.
///
/// # Safety
/// libc's contract for `ftruncate`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ftruncate(fd: c_int, length: off_t) -> c_int {
    let real = real!(c"ftruncate" as TruncateFn);
    // SAFETY: the caller's own arguments, unchanged, to the function it called.
    change(fd, Change::Truncate { to: length }, || unsafe {
        real(fd, length)
    })
}

/// libc's `ftruncate64` (the same as `ftruncate` on 64-bit Linux), journaled.
///
/// # Safety
/// libc's contract for `ftruncate64`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ftruncate64(fd: c_int, length: off_t) -> c_int {
    let real = real!(c"ftruncate64" as TruncateFn);
    // SAFETY: the caller's own arguments, unchanged, to the function it called.
    change(fd, Change::Truncate { to: length }, || unsafe {
        real(fd, length)
    })
}

/// libc's `fsync`; success empties the file's journal (module doc, step 3).
///
/// # Safety
/// libc's contract for `fsync` (it has no memory preconditions).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fsync(fd: c_int) -> c_int {
    let real = real!(c"fsync" as SyncFn);
    // SAFETY: the caller's own argument, unchanged, to the function it called.
    synced(fd, || unsafe { real(fd) })
}

/// libc's `fdatasync`; success empties the file's journal (step 3).
///
/// # Safety
/// libc's contract for `fdatasync` (it has no memory preconditions).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fdatasync(fd: c_int) -> c_int {
    let real = real!(c"fdatasync" as SyncFn);
    // SAFETY: the caller's own argument, unchanged, to the function it called.
    synced(fd, || unsafe { real(fd) })
}
