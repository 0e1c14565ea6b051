//! Writing a bbolt file: [`BoltStreamWriter`] streams sorted pairs bucket by
//! bucket; [`BoltWriter`] collects pairs in any order and streams them.
//!
//! 1. [`BoltStreamWriter::create`] reserves pages 0 and 1 for the metas
//!    (zeros for now) and writes an empty freelist as page 2.
//! 2. Each bucket's pairs fill leaf pages up to `page_size * fill_percent`
//!    bytes; a full leaf is written at once as the next page (with overflow
//!    pages when one value is bigger than a page), and only its first key and
//!    page id are kept. A pair that does not fit starts a new leaf.
//! 3. When the bucket ends, branch pages are built bottom-up over the kept
//!    first keys (each branch page holds at least two children, so every
//!    level at least halves) until one root remains. A bucket whose pairs fit
//!    one leaf of at most `page_size / 4` bytes is inlined into its value
//!    instead, as bbolt does.
//! 4. [`BoltStreamWriter::finish`] writes the root bucket's tree (bucket
//!    names to bucket values, in name order), then both metas (txid 0 on page
//!    0, txid 1 on page 1, both naming the same tree), and syncs. The metas
//!    go last: a file cut short by a crash has no valid meta and is refused.
//!
//! Pages are numbered in the order they are written, so the file is written
//! front to back through one buffer; memory holds the current leaf, one
//! first key per leaf of the current bucket, and the bucket values.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::Path;

use super::BoltError;
use super::format::{
    BRANCH_ELEMENT_SIZE, BUCKET_HEADER_SIZE, BUCKET_LEAF, BucketHeader, FREELIST_PAGE,
    MAX_ELEMENTS, MAX_KEY_SIZE, MAX_VALUE_SIZE, Meta, NodeBuilder, PageHeader,
};

/// The page holding the (always empty) freelist.
const FREELIST_PGID: u64 = 2;

/// How the writer lays out pages.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WriterConfig {
    /// Bytes per page: a power of two from 1 KiB to 16 MiB. bbolt on
    /// Linux/amd64 uses 4096, the default.
    pub page_size: u32,
    /// How full a leaf or branch page gets before the next one starts, from
    /// 0.1 to 1.0. The default 0.9 is what etcd uses for its `key` bucket,
    /// whose revisions only ever grow (bbolt's own default, 0.5, leaves room
    /// for inserts in the middle).
    pub fill_percent: f64,
}

impl Default for WriterConfig {
    fn default() -> Self {
        WriterConfig {
            page_size: 4096,
            fill_percent: 0.9,
        }
    }
}

impl WriterConfig {
    fn check(&self) -> Result<(), BoltError> {
        let size = self.page_size;
        if !size.is_power_of_two() || !(1024..=1 << 24).contains(&size) {
            return Err(BoltError::InvalidConfig(format!(
                "page size {size} is not a power of two between 1 KiB and 16 MiB"
            )));
        }
        if !(0.1..=1.0).contains(&self.fill_percent) {
            return Err(BoltError::InvalidConfig(format!(
                "fill percent {} is outside 0.1..=1.0",
                self.fill_percent
            )));
        }
        Ok(())
    }

    /// The most bytes a page gets before the next one starts.
    fn threshold(&self) -> usize {
        (f64::from(self.page_size) * self.fill_percent) as usize
    }
}

/// What a finished file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteSummary {
    /// Pages in the file (the meta's high-water mark).
    pub pages: u64,
    /// The file's size: `pages * page_size`.
    pub bytes: u64,
    pub buckets: usize,
    /// Pairs in all buckets.
    pub keys: u64,
}

/// Writes pages one after another, numbering them as it goes.
#[derive(Debug)]
struct PageSink {
    out: BufWriter<File>,
    page_size: usize,
    next_pgid: u64,
    buf: Vec<u8>,
}

impl PageSink {
    /// Writes `node` as the next page(s); returns its page id.
    fn write_node(&mut self, node: &NodeBuilder) -> Result<u64, BoltError> {
        let pgid = self.next_pgid;
        node.encode(pgid, self.page_size, &mut self.buf);
        self.out.write_all(&self.buf)?;
        self.next_pgid += (self.buf.len() / self.page_size) as u64;
        Ok(pgid)
    }
}

/// Where a finished bucket's tree starts.
enum TreeRoot {
    /// The tree's root page.
    Page(u64),
    /// The whole tree is this one (inline) leaf page.
    Inline(Vec<u8>),
}

/// One bucket's B+tree under construction (steps 2 and 3).
#[derive(Debug)]
struct TreeBuilder {
    threshold: usize,
    leaf: NodeBuilder,
    /// First key and page id of every leaf written so far.
    leaves: Vec<(Vec<u8>, u64)>,
}

impl TreeBuilder {
    fn new(threshold: usize) -> Self {
        TreeBuilder {
            threshold,
            leaf: NodeBuilder::new(true),
            leaves: Vec::new(),
        }
    }

    /// The largest key pushed so far.
    fn last_key(&self) -> Option<&[u8]> {
        self.leaf
            .last_key()
            .or_else(|| self.leaves.last().map(|(k, _)| k.as_slice()))
    }

    /// Adds a pair with a key above every key so far.
    fn push(
        &mut self,
        sink: &mut PageSink,
        key: &[u8],
        value: &[u8],
        flags: u32,
    ) -> Result<(), BoltError> {
        let grown = self.leaf.size() + NodeBuilder::element_size(key, value);
        if !self.leaf.is_empty() && (grown > self.threshold || self.leaf.len() >= MAX_ELEMENTS) {
            self.flush_leaf(sink)?;
        }
        self.leaf.push_leaf(key, value, flags);
        Ok(())
    }

    fn flush_leaf(&mut self, sink: &mut PageSink) -> Result<(), BoltError> {
        let pgid = sink.write_node(&self.leaf)?;
        let first = self.leaf.first_key().unwrap_or_default().to_vec();
        self.leaves.push((first, pgid));
        self.leaf.clear();
        Ok(())
    }

    /// Ends a bucket's tree: returns it as an inline page when it is one
    /// leaf of at most a quarter page, else writes it ([`finish_pages`]).
    ///
    /// [`finish_pages`]: Self::finish_pages
    fn finish_bucket(&mut self, sink: &mut PageSink) -> Result<TreeRoot, BoltError> {
        if self.leaves.is_empty() && self.leaf.size() <= sink.page_size / 4 {
            let mut page = Vec::new();
            self.leaf.encode(0, 0, &mut page);
            return Ok(TreeRoot::Inline(page));
        }
        Ok(TreeRoot::Page(self.finish_pages(sink)?))
    }

    /// Ends the tree on pages: writes its last leaf (maybe empty, as the root
    /// bucket of a file without buckets) and its branch levels; returns the
    /// root page.
    fn finish_pages(&mut self, sink: &mut PageSink) -> Result<u64, BoltError> {
        if self.leaves.is_empty() {
            return sink.write_node(&self.leaf);
        }
        if !self.leaf.is_empty() {
            self.flush_leaf(sink)?;
        }
        let mut level = std::mem::take(&mut self.leaves);
        let mut node = NodeBuilder::new(false);
        while level.len() > 1 {
            let mut parents = Vec::with_capacity(level.len() / 2 + 1);
            for (key, pgid) in &level {
                let grown = node.size() + BRANCH_ELEMENT_SIZE + key.len();
                let full = grown > self.threshold || node.len() >= MAX_ELEMENTS;
                if node.len() >= 2 && full {
                    let id = sink.write_node(&node)?;
                    parents.push((node.first_key().unwrap_or_default().to_vec(), id));
                    node.clear();
                }
                node.push_branch(key, *pgid);
            }
            let id = sink.write_node(&node)?;
            parents.push((node.first_key().unwrap_or_default().to_vec(), id));
            node.clear();
            level = parents;
        }
        Ok(level[0].1)
    }
}

/// Writes a bbolt file bucket by bucket, each bucket's pairs in increasing
/// key order, without holding more than the current page in memory.
///
/// ```no_run
/// # use storage::bbolt::write::{BoltStreamWriter, WriterConfig};
/// let mut w = BoltStreamWriter::create("/tmp/x.db", WriterConfig::default())?;
/// let mut b = w.bucket(b"meta")?;
/// b.put(b"consistent_index", &7u64.to_be_bytes())?;
/// b.finish()?;
/// w.finish()?;
/// # Ok::<(), storage::bbolt::BoltError>(())
/// ```
#[derive(Debug)]
pub struct BoltStreamWriter {
    config: WriterConfig,
    sink: PageSink,
    /// Finished buckets: name to bucket value.
    buckets: BTreeMap<Vec<u8>, Vec<u8>>,
    keys: u64,
    /// A bucket dropped before its `finish()`.
    unfinished: Option<Vec<u8>>,
}

impl BoltStreamWriter {
    /// Creates (or truncates) the file at `path` (step 1).
    pub fn create(path: impl AsRef<Path>, config: WriterConfig) -> Result<Self, BoltError> {
        config.check()?;
        let page_size = config.page_size as usize;
        let mut out = BufWriter::with_capacity(1 << 20, File::create(path.as_ref())?);
        out.write_all(&vec![0u8; 2 * page_size])?;
        let mut freelist = vec![0u8; page_size];
        PageHeader {
            id: FREELIST_PGID,
            flags: FREELIST_PAGE,
            count: 0,
            overflow: 0,
        }
        .encode(&mut freelist);
        out.write_all(&freelist)?;
        Ok(BoltStreamWriter {
            config,
            sink: PageSink {
                out,
                page_size,
                next_pgid: FREELIST_PGID + 1,
                buf: Vec::new(),
            },
            buckets: BTreeMap::new(),
            keys: 0,
            unfinished: None,
        })
    }

    /// Starts top-level bucket `name`; its pairs follow through the returned
    /// [`BucketWriter`], which must be [finished](BucketWriter::finish).
    pub fn bucket(&mut self, name: &[u8]) -> Result<BucketWriter<'_>, BoltError> {
        check_key(b"", name)?;
        if self.buckets.contains_key(name) {
            return Err(BoltError::DuplicateBucket(name.to_vec()));
        }
        let threshold = self.config.threshold();
        Ok(BucketWriter {
            writer: self,
            name: name.to_vec(),
            tree: TreeBuilder::new(threshold),
            keys: 0,
            finished: false,
        })
    }

    /// Writes the root bucket and the metas, and syncs the file (step 4).
    pub fn finish(mut self) -> Result<WriteSummary, BoltError> {
        if let Some(name) = self.unfinished.take() {
            return Err(BoltError::BucketNotFinished(name));
        }
        let mut root = TreeBuilder::new(self.config.threshold());
        for (name, value) in &self.buckets {
            root.push(&mut self.sink, name, value, BUCKET_LEAF)?;
        }
        let root_pgid = root.finish_pages(&mut self.sink)?;
        let pages = self.sink.next_pgid;
        let mut out = self.sink.out;
        out.seek(SeekFrom::Start(0))?;
        for txid in 0..2 {
            let meta = Meta {
                page_size: self.config.page_size,
                flags: 0,
                root: BucketHeader {
                    root: root_pgid,
                    sequence: 0,
                },
                freelist: FREELIST_PGID,
                pgid: pages,
                txid,
            };
            out.write_all(&meta.encode_page())?;
        }
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        Ok(WriteSummary {
            pages,
            bytes: pages * u64::from(self.config.page_size),
            buckets: self.buckets.len(),
            keys: self.keys,
        })
    }
}

/// Receives one bucket's pairs for a [`BoltStreamWriter`].
#[derive(Debug)]
pub struct BucketWriter<'a> {
    writer: &'a mut BoltStreamWriter,
    name: Vec<u8>,
    tree: TreeBuilder,
    keys: u64,
    finished: bool,
}

impl BucketWriter<'_> {
    /// Adds a pair; `key` must be above every key put before.
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), BoltError> {
        self.put_with_flags(key, value, 0)
    }

    /// Adds a leaf element with `flags` (tests write nested buckets with it).
    pub(crate) fn put_with_flags(
        &mut self,
        key: &[u8],
        value: &[u8],
        flags: u32,
    ) -> Result<(), BoltError> {
        check_key(&self.name, key)?;
        if value.len() > MAX_VALUE_SIZE {
            return Err(self.invalid(format!("a {}-byte value is too large", value.len())));
        }
        if self.tree.last_key().is_some_and(|last| last >= key) {
            return Err(self.invalid(format!(
                "key {:?} is not above the key before it (keys must be sorted and unique)",
                String::from_utf8_lossy(key)
            )));
        }
        self.tree.push(&mut self.writer.sink, key, value, flags)?;
        self.keys += 1;
        Ok(())
    }

    /// Ends the bucket (step 3).
    pub fn finish(mut self) -> Result<(), BoltError> {
        let value = match self.tree.finish_bucket(&mut self.writer.sink)? {
            TreeRoot::Inline(page) => {
                let mut value = Vec::with_capacity(BUCKET_HEADER_SIZE + page.len());
                value.extend_from_slice(&BucketHeader::default().encode());
                value.extend_from_slice(&page);
                value
            }
            TreeRoot::Page(root) => BucketHeader { root, sequence: 0 }.encode().to_vec(),
        };
        self.writer.keys += self.keys;
        self.writer
            .buckets
            .insert(std::mem::take(&mut self.name), value);
        // Only now: a bucket whose end failed to write counts as unfinished.
        self.finished = true;
        Ok(())
    }

    fn invalid(&self, reason: String) -> BoltError {
        BoltError::InvalidEntry {
            bucket: self.name.clone(),
            reason,
        }
    }
}

impl Drop for BucketWriter<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.writer
                .unfinished
                .get_or_insert_with(|| self.name.clone());
        }
    }
}

/// Checks a key (or, with an empty `bucket`, a bucket name) against bbolt's
/// limits.
fn check_key(bucket: &[u8], key: &[u8]) -> Result<(), BoltError> {
    let what = if bucket.is_empty() { "name" } else { "key" };
    let reason = if key.is_empty() {
        format!("an empty {what}")
    } else if key.len() > MAX_KEY_SIZE {
        format!("a {}-byte {what} is too large", key.len())
    } else {
        return Ok(());
    };
    Err(BoltError::InvalidEntry {
        bucket: bucket.to_vec(),
        reason,
    })
}

/// One bucket's pairs as [`BoltWriter`] collects them.
type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// Collects top-level buckets and their pairs in any order, then writes them
/// in one go ([`write_to`](Self::write_to)) through a [`BoltStreamWriter`].
#[derive(Debug, Default)]
pub struct BoltWriter {
    config: WriterConfig,
    buckets: BTreeMap<Vec<u8>, Pairs>,
}

impl BoltWriter {
    pub fn new(config: WriterConfig) -> Self {
        BoltWriter {
            config,
            buckets: BTreeMap::new(),
        }
    }

    /// Adds bucket `name` (empty unless pairs are put in it).
    pub fn create_bucket(&mut self, name: &[u8]) {
        self.buckets.entry(name.to_vec()).or_default();
    }

    /// Adds a pair to bucket `bucket`, creating the bucket if needed.
    pub fn put(&mut self, bucket: &[u8], key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        let pair = (key.into(), value.into());
        match self.buckets.get_mut(bucket) {
            Some(pairs) => pairs.push(pair),
            None => {
                self.buckets.insert(bucket.to_vec(), vec![pair]);
            }
        }
    }

    /// Sorts each bucket's pairs and writes the file; a key put twice in one
    /// bucket is an error.
    pub fn write_to(self, path: impl AsRef<Path>) -> Result<WriteSummary, BoltError> {
        let mut out = BoltStreamWriter::create(path, self.config)?;
        for (name, mut pairs) in self.buckets {
            pairs.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            let mut bucket = out.bucket(&name)?;
            for (key, value) in &pairs {
                bucket.put(key, value)?;
            }
            bucket.finish()?;
        }
        out.finish()
    }
}
