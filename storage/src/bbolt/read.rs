//! Reading a bbolt file: [`BoltFile`].
//!
//! 1. [`BoltFile::open`] reads meta page 0 and learns the page size from it;
//!    if page 0 is damaged, it looks for meta page 1 at every page size bbolt
//!    supports (1 KiB to 16 MiB), as bbolt does.
//! 2. It decodes both metas (magic, version, FNV-1a checksum) and keeps the
//!    valid one with the highest txid; with none valid, the error names what
//!    is wrong with each.
//! 3. It checks that the file holds every page below the meta's high-water
//!    mark (a trailing etcd snapshot hash is allowed), then reads the root
//!    bucket's tree and keeps the top-level buckets' names and headers
//!    (inline buckets with their page).
//! 4. [`BoltFile::for_each`] walks one bucket's tree depth-first, reading
//!    pages on demand with positioned reads (nothing is mapped or loaded
//!    whole), checking every page's id, type and bounds and that keys rise.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::BoltError;
use super::format::{
    BUCKET_HEADER_SIZE, BUCKET_LEAF, BucketHeader, LEAF_PAGE, Meta, NO_FREELIST, NodePage,
    PAGE_HEADER_SIZE, PageHeader,
};

/// bbolt looks for the second meta page at these page sizes (1 KiB << i).
const PAGE_SIZE_SHIFTS: std::ops::RangeInclusive<u32> = 0..=14;
/// The bytes of a meta page that hold its header and fields.
const META_PAGE_PREFIX: usize = PAGE_HEADER_SIZE + super::format::META_SIZE;
/// Deeper trees than this mean a page refers back to an ancestor.
const MAX_DEPTH: usize = 64;

/// A top-level bucket as the root bucket's leaf names it.
#[derive(Debug, Clone)]
struct TopBucket {
    name: Vec<u8>,
    header: BucketHeader,
    /// The bucket's page when it is inline (`header.root == 0`).
    inline: Option<Vec<u8>>,
}

/// An open bbolt file: its chosen meta and its top-level buckets.
#[derive(Debug)]
pub struct BoltFile {
    file: File,
    meta: Meta,
    buckets: Vec<TopBucket>,
}

/// Where a walk over a tree's leaves stands.
enum Walk {
    Continue,
    Stop,
}

impl BoltFile {
    /// Opens and validates a bbolt file (steps 1 to 3 of the module docs).
    pub fn open(path: impl AsRef<Path>) -> Result<Self, BoltError> {
        let file = File::open(path.as_ref())?;
        let len = file.metadata()?.len();
        let meta = choose_meta(&file, len)?;

        let page_size = u64::from(meta.page_size);
        let needed = meta.pgid.checked_mul(page_size).ok_or_else(|| {
            BoltError::BadMeta(format!("high-water mark {} overflows", meta.pgid))
        })?;
        if needed > len {
            return Err(BoltError::Truncated {
                pages: meta.pgid,
                page_size: meta.page_size,
                needed,
                len,
            });
        }
        if meta.root.root < 2 || meta.root.root >= meta.pgid {
            return Err(BoltError::BadMeta(format!(
                "root bucket page {} outside pages 2..{}",
                meta.root.root, meta.pgid
            )));
        }
        if meta.freelist != NO_FREELIST && (meta.freelist < 2 || meta.freelist >= meta.pgid) {
            return Err(BoltError::BadMeta(format!(
                "freelist page {} outside pages 2..{}",
                meta.freelist, meta.pgid
            )));
        }

        let mut bolt = BoltFile {
            file,
            meta,
            buckets: Vec::new(),
        };
        let mut buckets = Vec::new();
        bolt.walk(
            meta.root.root,
            0,
            &mut None,
            &mut |pgid, flags, key, value| {
                if flags & BUCKET_LEAF == 0 {
                    return Err(corrupt(
                        pgid,
                        format!(
                            "root bucket holds a plain key {:?}",
                            String::from_utf8_lossy(key)
                        ),
                    ));
                }
                buckets.push(top_bucket(pgid, key, value)?);
                Ok(Walk::Continue)
            },
        )?;
        bolt.buckets = buckets;
        Ok(bolt)
    }

    /// The meta this file was opened with.
    pub fn meta(&self) -> &Meta {
        &self.meta
    }

    /// The names of the top-level buckets, in bbolt's (byte) order.
    pub fn buckets(&self) -> Vec<Vec<u8>> {
        self.buckets.iter().map(|b| b.name.clone()).collect()
    }

    /// Calls `f(key, value)` for every key of top-level bucket `bucket`, in
    /// key order, until `f` returns `Ok(false)` or an error. A nested bucket
    /// inside it is an error ([`BoltError::NestedBucket`]).
    pub fn for_each<E, F>(&self, bucket: &[u8], mut f: F) -> Result<(), E>
    where
        E: From<BoltError>,
        F: FnMut(&[u8], &[u8]) -> Result<bool, E>,
    {
        let top = self
            .buckets
            .iter()
            .find(|b| b.name == bucket)
            .ok_or_else(|| BoltError::BucketNotFound(bucket.to_vec()))?;
        // The caller's error travels out of the walk (which speaks BoltError)
        // in this slot.
        let mut failed: Option<E> = None;
        let mut visit = |_pgid: u64, flags: u32, key: &[u8], value: &[u8]| {
            if flags & BUCKET_LEAF != 0 {
                return Err(BoltError::NestedBucket {
                    bucket: bucket.to_vec(),
                    key: key.to_vec(),
                });
            }
            match f(key, value) {
                Ok(true) => Ok(Walk::Continue),
                Ok(false) => Ok(Walk::Stop),
                Err(e) => {
                    failed = Some(e);
                    Ok(Walk::Stop)
                }
            }
        };
        let mut last_key = None;
        let walked = match &top.inline {
            Some(page) => walk_leaf(0, page, &mut last_key, &mut visit),
            None => self.walk(top.header.root, 0, &mut last_key, &mut visit),
        };
        walked?;
        match failed {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Reads page `pgid` with its overflow pages, checking its header id.
    fn read_page(&self, pgid: u64) -> Result<Vec<u8>, BoltError> {
        let page_size = self.meta.page_size as usize;
        if pgid < 2 || pgid >= self.meta.pgid {
            return Err(corrupt(
                pgid,
                format!(
                    "referenced, but outside the data pages 2..{}",
                    self.meta.pgid
                ),
            ));
        }
        let mut page = vec![0u8; page_size];
        self.file
            .read_exact_at(&mut page, pgid * u64::from(self.meta.page_size))?;
        let header = PageHeader::parse(&page);
        if header.id != pgid {
            return Err(corrupt(pgid, format!("its header says page {}", header.id)));
        }
        if header.overflow > 0 {
            let last = pgid + u64::from(header.overflow);
            if last >= self.meta.pgid {
                return Err(corrupt(
                    pgid,
                    format!(
                        "{} overflow pages run past the high-water mark {}",
                        header.overflow, self.meta.pgid
                    ),
                ));
            }
            page.resize((header.overflow as usize + 1) * page_size, 0);
            self.file.read_exact_at(
                &mut page[page_size..],
                (pgid + 1) * u64::from(self.meta.page_size),
            )?;
        }
        Ok(page)
    }

    /// Visits the leaf elements under page `pgid` in key order.
    fn walk<V>(
        &self,
        pgid: u64,
        depth: usize,
        last_key: &mut Option<Vec<u8>>,
        visit: &mut V,
    ) -> Result<Walk, BoltError>
    where
        V: FnMut(u64, u32, &[u8], &[u8]) -> Result<Walk, BoltError>,
    {
        if depth > MAX_DEPTH {
            return Err(corrupt(
                pgid,
                format!("tree deeper than {MAX_DEPTH} levels (a cycle?)"),
            ));
        }
        let bytes = self.read_page(pgid)?;
        let page = NodePage::parse(&bytes).map_err(|reason| corrupt(pgid, reason))?;
        if page.is_leaf() {
            return walk_leaf(pgid, &bytes, last_key, visit);
        }
        if page.is_empty() {
            return Err(corrupt(pgid, "empty branch page".to_string()));
        }
        for i in 0..page.len() {
            let child = page.branch(i).map_err(|reason| corrupt(pgid, reason))?;
            if let Walk::Stop = self.walk(child.pgid, depth + 1, last_key, visit)? {
                return Ok(Walk::Stop);
            }
        }
        Ok(Walk::Continue)
    }
}

/// Visits the elements of one leaf page (a file page or an inline bucket's
/// page), checking that keys rise strictly from `last_key` on.
fn walk_leaf<V>(
    pgid: u64,
    bytes: &[u8],
    last_key: &mut Option<Vec<u8>>,
    visit: &mut V,
) -> Result<Walk, BoltError>
where
    V: FnMut(u64, u32, &[u8], &[u8]) -> Result<Walk, BoltError>,
{
    let page = NodePage::parse(bytes).map_err(|reason| corrupt(pgid, reason))?;
    if !page.is_leaf() {
        return Err(corrupt(
            pgid,
            "an inline bucket's page is not a leaf".to_string(),
        ));
    }
    for i in 0..page.len() {
        let e = page.leaf(i).map_err(|reason| corrupt(pgid, reason))?;
        if e.key.is_empty() {
            return Err(corrupt(pgid, format!("element {i} has an empty key")));
        }
        if last_key.as_deref().is_some_and(|last| last >= e.key) {
            return Err(corrupt(
                pgid,
                format!("key {:?} is out of order", String::from_utf8_lossy(e.key)),
            ));
        }
        let last = last_key.get_or_insert_with(Vec::new);
        last.clear();
        last.extend_from_slice(e.key);
        if let Walk::Stop = visit(pgid, e.flags, e.key, e.value)? {
            return Ok(Walk::Stop);
        }
    }
    Ok(Walk::Continue)
}

/// Decodes a top-level bucket's value found on root-bucket page `pgid`.
fn top_bucket(pgid: u64, name: &[u8], value: &[u8]) -> Result<TopBucket, BoltError> {
    if value.len() < BUCKET_HEADER_SIZE {
        return Err(corrupt(
            pgid,
            format!(
                "bucket {:?} has a {}-byte value, shorter than a bucket header",
                String::from_utf8_lossy(name),
                value.len()
            ),
        ));
    }
    let header = BucketHeader::parse(value);
    let inline = if header.root == 0 {
        let page = &value[BUCKET_HEADER_SIZE..];
        let ok = page.len() >= PAGE_HEADER_SIZE && PageHeader::parse(page).flags == LEAF_PAGE;
        if !ok {
            return Err(corrupt(
                pgid,
                format!(
                    "inline bucket {:?} does not hold a leaf page",
                    String::from_utf8_lossy(name)
                ),
            ));
        }
        Some(page.to_vec())
    } else {
        None
    };
    Ok(TopBucket {
        name: name.to_vec(),
        header,
        inline,
    })
}

fn corrupt(pgid: u64, reason: String) -> BoltError {
    BoltError::CorruptPage { pgid, reason }
}

/// Reads `len` bytes at `offset`, or fewer when the file ends first.
fn read_upto(file: &File, offset: u64, len: usize) -> Result<Vec<u8>, BoltError> {
    let mut buf = vec![0u8; len];
    let mut got = 0;
    while got < len {
        match file.read_at(&mut buf[got..], offset + got as u64)? {
            0 => break,
            n => got += n,
        }
    }
    buf.truncate(got);
    Ok(buf)
}

/// Steps 1 and 2: the valid meta with the highest txid.
fn choose_meta(file: &File, len: u64) -> Result<Meta, BoltError> {
    let first = read_upto(file, 0, META_PAGE_PREFIX)?;
    if first.len() < META_PAGE_PREFIX {
        return Err(BoltError::TooShort { len });
    }
    let meta0 = Meta::decode(&first);
    let page_size = match &meta0 {
        Ok(m) => Some(m.page_size),
        Err(_) => PAGE_SIZE_SHIFTS.map(|i| 1024u32 << i).find(|&size| {
            read_upto(file, u64::from(size), META_PAGE_PREFIX)
                .ok()
                .and_then(|page| Meta::decode(&page).ok())
                .is_some_and(|m| m.page_size == size)
        }),
    };
    // Without a page size from either meta, report what is at the usual
    // place of meta 1 (bbolt's default page size on Linux/amd64).
    let meta1_at = u64::from(page_size.unwrap_or(4096));
    let meta1 = Meta::decode(&read_upto(file, meta1_at, META_PAGE_PREFIX)?);
    let meta = match (meta0, meta1) {
        (Ok(a), Ok(b)) => {
            if b.txid > a.txid {
                b
            } else {
                a
            }
        }
        (Ok(m), Err(_)) | (Err(_), Ok(m)) => m,
        (Err(meta0), Err(meta1)) => return Err(BoltError::NoValidMeta { meta0, meta1 }),
    };
    let size = meta.page_size;
    if !size.is_power_of_two() || !(512..=1 << 24).contains(&size) {
        return Err(BoltError::BadMeta(format!(
            "page size {size} is not a power of two between 512 and 16 MiB"
        )));
    }
    if len < 2 * u64::from(size) {
        return Err(BoltError::TooShort { len });
    }
    Ok(meta)
}
