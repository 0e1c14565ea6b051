//! bbolt (boltdb) files, read and written by hand: etcd's snapshot format.
//!
//! `etcdctl snapshot save` stores etcd's backend database, a bbolt file, and
//! `etcdctl snapshot restore` / `snapshot status` open one. No Rust crate
//! reads or writes bbolt, so this module implements the on-disk format
//! directly. It knows only what etcd needs: top-level buckets of plain
//! key/value pairs. [`read::BoltFile`] opens a file and visits its buckets;
//! [`write::BoltWriter`] (collect, then write) and
//! [`write::BoltStreamWriter`] (stream sorted pairs) produce one;
//! [`snapshot`] handles the SHA-256 that etcd appends to a snapshot.
//!
//! # On-disk format
//!
//! Every integer is little-endian (bbolt writes host order; etcd ships for
//! little-endian hosts only, and so does this module).
//!
//! 1. **Pages.** The file is an array of pages of `page_size` bytes (4096 on
//!    Linux/amd64); page `n` starts at byte `n * page_size`. Every page opens
//!    with a 16-byte header: `id: u64` (its own page number), `flags: u16`
//!    (0x01 branch, 0x02 leaf, 0x04 meta, 0x10 freelist), `count: u16` (how
//!    many elements follow) and `overflow: u32`. A page whose content does not
//!    fit in one page spans `overflow + 1` consecutive pages; the pages after
//!    the first carry no header of their own, just the rest of the bytes.
//! 2. **Meta pages** are pages 0 and 1. After the header comes the meta:
//!    `magic: u32` = 0xED0CDAED, `version: u32` = 2, `page_size: u32`,
//!    `flags: u32` (0), the root bucket's header (`root: u64` page id,
//!    `sequence: u64`), `freelist: u64` (page id of the freelist, or
//!    `u64::MAX` when the freelist is not persisted), `pgid: u64` (the
//!    high-water mark: every page in use has an id below it), `txid: u64`,
//!    and `checksum: u64`, the 64-bit FNV-1a hash of the 56 bytes before it.
//!    A commit writes its meta to page `txid % 2`, so the two pages hold the
//!    last two commits; a reader takes the meta with the highest txid among
//!    those whose magic, version and checksum are right.
//! 3. **Freelist page** (flag 0x10): `count` page ids (`u64` each, sorted)
//!    follow the header; these pages are allocated but hold nothing. When
//!    there are 0xFFFF or more, `count` is 0xFFFF and the first `u64` holds
//!    the real count. Every page below the high-water mark is either reachable
//!    (meta, freelist, a page of some bucket's tree) or free; bbolt's
//!    consistency check (run by `etcdctl snapshot status`) insists on it.
//! 4. **Branch pages** (flag 0x01) hold `count` 16-byte elements right after
//!    the header: `pos: u32`, `ksize: u32`, `pgid: u64`. The element's key is
//!    the `ksize` bytes starting `pos` bytes after the element itself (not
//!    after the page start). The key is the smallest key of child page `pgid`;
//!    elements are in key order.
//! 5. **Leaf pages** (flag 0x02) hold `count` 16-byte elements: `flags: u32`
//!    (0x01 when the value is a bucket), `pos: u32`, `ksize: u32`,
//!    `vsize: u32`; the key is at `pos` bytes after the element and the value
//!    directly follows the key. bbolt lays out all elements first, then every
//!    key and value in element order; keys are sorted and unique.
//! 6. **Buckets.** Each bucket is a B+tree of branch and leaf pages. The meta
//!    names the root bucket, whose leaves map each top-level bucket's name to
//!    a bucket value (leaf flag 0x01). A bucket value opens with a 16-byte
//!    bucket header, `root: u64` and `sequence: u64`. With `root != 0`, the
//!    bucket's tree starts at page `root`. With `root == 0` the bucket is
//!    **inline**: the rest of the value is the bucket's single leaf page
//!    (header with id 0, elements, keys, values, no padding). bbolt inlines a
//!    bucket whose one leaf takes at most `page_size / 4` bytes and holds no
//!    sub-bucket. **Nested buckets** are leaf entries with flag 0x01 inside a
//!    bucket, with the same value layout; etcd does not use them.
//! 7. **Overflow.** A node bigger than a page (a leaf with one 1.5 MB etcd
//!    value, say) is written on `ceil(size / page_size)` consecutive pages,
//!    with `overflow` counting the extra ones; its elements and data simply
//!    run on past the first page.
//!
//! # etcd's snapshot file
//!
//! The server's `Snapshot` RPC streams bbolt's `Tx.WriteTo` of its backend:
//! meta page 0 holds the transaction's meta, meta page 1 the same meta with
//! `txid - 1`, then pages 2 up to the high-water mark are copied as they are,
//! so the file is `pgid * page_size` bytes. The server then sends the SHA-256
//! of those bytes, and `etcdctl snapshot save` writes it after them; see
//! [`snapshot`] for how `snapshot restore` recognises it.

pub mod format;
pub mod read;
pub mod snapshot;
pub mod write;

#[cfg(test)]
mod tests;

use thiserror::Error;

/// Why a meta page was not usable.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MetaProblem {
    #[error("the file ends before it")]
    Missing,
    #[error("bad magic {0:#010x} (want 0xed0cdaed: not a bbolt file)")]
    BadMagic(u32),
    #[error("format version {0} (want 2)")]
    BadVersion(u32),
    #[error("checksum {stored:#018x} does not match its fields ({computed:#018x})")]
    BadChecksum { stored: u64, computed: u64 },
}

/// A failure to read or write a bbolt file.
#[derive(Debug, Error)]
pub enum BoltError {
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("bbolt file is {len} bytes, too short to hold its meta pages")]
    TooShort { len: u64 },
    #[error("bbolt file has no valid meta page: meta 0: {meta0}; meta 1: {meta1}")]
    NoValidMeta {
        meta0: MetaProblem,
        meta1: MetaProblem,
    },
    #[error("bbolt meta: {0}")]
    BadMeta(String),
    #[error(
        "bbolt file is truncated: its meta counts {pages} pages of {page_size} bytes \
         ({needed} bytes), the file has {len} bytes"
    )]
    Truncated {
        pages: u64,
        page_size: u32,
        needed: u64,
        len: u64,
    },
    #[error("bbolt page {pgid} is corrupt: {reason}")]
    CorruptPage { pgid: u64, reason: String },
    #[error("bbolt bucket {:?} not found", String::from_utf8_lossy(.0))]
    BucketNotFound(Vec<u8>),
    #[error(
        "bbolt bucket {:?} holds a nested bucket at key {:?} (only plain keys are read)",
        String::from_utf8_lossy(.bucket),
        String::from_utf8_lossy(.key)
    )]
    NestedBucket { bucket: Vec<u8>, key: Vec<u8> },
    #[error("bbolt writer config: {0}")]
    InvalidConfig(String),
    #[error("bbolt bucket {:?}: {reason}", String::from_utf8_lossy(.bucket))]
    InvalidEntry { bucket: Vec<u8>, reason: String },
    #[error("bbolt bucket {:?} is written twice", String::from_utf8_lossy(.0))]
    DuplicateBucket(Vec<u8>),
    #[error("bbolt bucket {:?} was dropped before finish()", String::from_utf8_lossy(.0))]
    BucketNotFinished(Vec<u8>),
    #[error("a {len}-byte file already ends with a snapshot hash (len % 512 == 32)")]
    HashPresent { len: u64 },
    #[error(
        "snapshot hash mismatch: the file's trailing sha256 is {stored}, its content hashes to {computed}"
    )]
    HashMismatch { stored: String, computed: String },
}
