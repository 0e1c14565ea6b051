//! The byte layout of bbolt pages (see the [module docs](super) for the
//! format): constants, the meta, and views and builders of branch and leaf
//! pages, shared by the reader and the writer.

use super::MetaProblem;

/// The marker of a bbolt meta page.
pub const MAGIC: u32 = 0xED0C_DAED;
/// The only data format version bbolt has written since 2014.
pub const VERSION: u32 = 2;
/// `id: u64, flags: u16, count: u16, overflow: u32`.
pub const PAGE_HEADER_SIZE: usize = 16;
/// `flags: u32, pos: u32, ksize: u32, vsize: u32`.
pub const LEAF_ELEMENT_SIZE: usize = 16;
/// `pos: u32, ksize: u32, pgid: u64`.
pub const BRANCH_ELEMENT_SIZE: usize = 16;
/// `root: u64, sequence: u64`, at the start of every bucket value.
pub const BUCKET_HEADER_SIZE: usize = 16;
/// The meta fields that the checksum covers (everything before it).
pub const META_CHECKED_SIZE: usize = 56;
/// The meta fields including the checksum.
pub const META_SIZE: usize = 64;

/// Page flag: a branch page of some bucket's tree.
pub const BRANCH_PAGE: u16 = 0x01;
/// Page flag: a leaf page of some bucket's tree.
pub const LEAF_PAGE: u16 = 0x02;
/// Page flag: one of the two meta pages.
pub const META_PAGE: u16 = 0x04;
/// Page flag: the freelist.
pub const FREELIST_PAGE: u16 = 0x10;
/// Leaf element flag: the value is a bucket (header, maybe an inline page).
pub const BUCKET_LEAF: u32 = 0x01;

/// The meta's freelist id when the freelist is not written to the file.
pub const NO_FREELIST: u64 = u64::MAX;
/// bbolt's largest key.
pub const MAX_KEY_SIZE: usize = 32_768;
/// bbolt's largest value.
pub const MAX_VALUE_SIZE: usize = (1 << 31) - 2;
/// bbolt's most elements on one page (`count` is a `u16`, 0xFFFF excluded).
pub const MAX_ELEMENTS: usize = 0xFFFE;

/// The 64-bit FNV-1a hash, bbolt's meta checksum.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.iter().fold(OFFSET_BASIS, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(PRIME)
    })
}

pub(crate) fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

pub(crate) fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(b)
}

pub(crate) fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(b)
}

/// The 16 bytes at the start of every page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageHeader {
    pub id: u64,
    pub flags: u16,
    pub count: u16,
    pub overflow: u32,
}

impl PageHeader {
    /// Reads a header from the first 16 bytes of `bytes` (which must hold them).
    pub fn parse(bytes: &[u8]) -> Self {
        PageHeader {
            id: u64_at(bytes, 0),
            flags: u16_at(bytes, 8),
            count: u16_at(bytes, 10),
            overflow: u32_at(bytes, 12),
        }
    }

    /// Writes the header into the first 16 bytes of `out`.
    pub fn encode(&self, out: &mut [u8]) {
        out[0..8].copy_from_slice(&self.id.to_le_bytes());
        out[8..10].copy_from_slice(&self.flags.to_le_bytes());
        out[10..12].copy_from_slice(&self.count.to_le_bytes());
        out[12..16].copy_from_slice(&self.overflow.to_le_bytes());
    }
}

/// A bucket's header: where its tree starts (0: inline) and its sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BucketHeader {
    pub root: u64,
    pub sequence: u64,
}

impl BucketHeader {
    /// Reads the header at the start of a bucket value (at least 16 bytes).
    pub fn parse(value: &[u8]) -> Self {
        BucketHeader {
            root: u64_at(value, 0),
            sequence: u64_at(value, 8),
        }
    }

    /// The 16 bytes that open a bucket value.
    pub fn encode(&self) -> [u8; BUCKET_HEADER_SIZE] {
        let mut out = [0u8; BUCKET_HEADER_SIZE];
        out[0..8].copy_from_slice(&self.root.to_le_bytes());
        out[8..16].copy_from_slice(&self.sequence.to_le_bytes());
        out
    }
}

/// The meta fields of a valid meta page (magic, version and checksum are
/// implied: [`Meta::decode`] checks them, [`Meta::encode_page`] writes them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    pub page_size: u32,
    pub flags: u32,
    /// The root bucket, whose leaves name the top-level buckets.
    pub root: BucketHeader,
    /// The freelist's page, or [`NO_FREELIST`].
    pub freelist: u64,
    /// The high-water mark: every page in use has a smaller id.
    pub pgid: u64,
    pub txid: u64,
}

impl Meta {
    /// Decodes the meta of a meta page (`page` holds at least the header and
    /// the 64 meta bytes), checking magic, version and checksum as bbolt does.
    pub fn decode(page: &[u8]) -> Result<Meta, MetaProblem> {
        let m = page
            .get(PAGE_HEADER_SIZE..PAGE_HEADER_SIZE + META_SIZE)
            .ok_or(MetaProblem::Missing)?;
        let magic = u32_at(m, 0);
        if magic != MAGIC {
            return Err(MetaProblem::BadMagic(magic));
        }
        let version = u32_at(m, 4);
        if version != VERSION {
            return Err(MetaProblem::BadVersion(version));
        }
        let stored = u64_at(m, META_CHECKED_SIZE);
        let computed = fnv1a64(&m[..META_CHECKED_SIZE]);
        if stored != computed {
            return Err(MetaProblem::BadChecksum { stored, computed });
        }
        Ok(Meta {
            page_size: u32_at(m, 8),
            flags: u32_at(m, 12),
            root: BucketHeader::parse(&m[16..32]),
            freelist: u64_at(m, 32),
            pgid: u64_at(m, 40),
            txid: u64_at(m, 48),
        })
    }

    /// A whole meta page (`page_size` bytes) for page `txid % 2`.
    pub fn encode_page(&self) -> Vec<u8> {
        let mut page = vec![0u8; self.page_size as usize];
        PageHeader {
            id: self.txid % 2,
            flags: META_PAGE,
            count: 0,
            overflow: 0,
        }
        .encode(&mut page);
        let m = &mut page[PAGE_HEADER_SIZE..PAGE_HEADER_SIZE + META_SIZE];
        m[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        m[4..8].copy_from_slice(&VERSION.to_le_bytes());
        m[8..12].copy_from_slice(&self.page_size.to_le_bytes());
        m[12..16].copy_from_slice(&self.flags.to_le_bytes());
        m[16..32].copy_from_slice(&self.root.encode());
        m[32..40].copy_from_slice(&self.freelist.to_le_bytes());
        m[40..48].copy_from_slice(&self.pgid.to_le_bytes());
        m[48..56].copy_from_slice(&self.txid.to_le_bytes());
        let checksum = fnv1a64(&m[..META_CHECKED_SIZE]);
        m[56..64].copy_from_slice(&checksum.to_le_bytes());
        page
    }
}

/// One entry of a leaf page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeafElement<'a> {
    pub flags: u32,
    pub key: &'a [u8],
    pub value: &'a [u8],
}

/// One entry of a branch page: the first key of child page `pgid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BranchElement<'a> {
    pub key: &'a [u8],
    pub pgid: u64,
}

/// A branch or leaf page (or an inline bucket's page) over its bytes, with
/// every offset checked against them.
#[derive(Debug, Clone, Copy)]
pub struct NodePage<'a> {
    pub header: PageHeader,
    bytes: &'a [u8],
}

impl<'a> NodePage<'a> {
    /// Views `bytes` (the whole page, overflow included) as a branch or leaf
    /// page; the error says what is wrong.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, String> {
        if bytes.len() < PAGE_HEADER_SIZE {
            return Err(format!("{} bytes cannot hold a page header", bytes.len()));
        }
        let header = PageHeader::parse(bytes);
        if header.flags != BRANCH_PAGE && header.flags != LEAF_PAGE {
            return Err(format!(
                "flags {:#06x}, expected a branch (0x01) or leaf (0x02) page",
                header.flags
            ));
        }
        let elements_end = PAGE_HEADER_SIZE + usize::from(header.count) * LEAF_ELEMENT_SIZE;
        if elements_end > bytes.len() {
            return Err(format!(
                "{} elements do not fit in {} bytes",
                header.count,
                bytes.len()
            ));
        }
        Ok(NodePage { header, bytes })
    }

    pub fn is_leaf(&self) -> bool {
        self.header.flags == LEAF_PAGE
    }

    pub fn len(&self) -> usize {
        usize::from(self.header.count)
    }

    pub fn is_empty(&self) -> bool {
        self.header.count == 0
    }

    fn slice(&self, element: usize, pos: u32, len: usize) -> Result<&'a [u8], String> {
        let start = element + pos as usize;
        self.bytes
            .get(start..start.saturating_add(len))
            .ok_or_else(|| {
                format!(
                    "element at byte {element} points past the page ({} bytes)",
                    self.bytes.len()
                )
            })
    }

    /// The `i`th leaf element (`i < len()`, on a leaf page).
    pub fn leaf(&self, i: usize) -> Result<LeafElement<'a>, String> {
        let at = PAGE_HEADER_SIZE + i * LEAF_ELEMENT_SIZE;
        let e = &self.bytes[at..at + LEAF_ELEMENT_SIZE];
        let (flags, pos, ksize, vsize) = (u32_at(e, 0), u32_at(e, 4), u32_at(e, 8), u32_at(e, 12));
        let both = self.slice(at, pos, ksize as usize + vsize as usize)?;
        let (key, value) = both.split_at(ksize as usize);
        Ok(LeafElement { flags, key, value })
    }

    /// The `i`th branch element (`i < len()`, on a branch page).
    pub fn branch(&self, i: usize) -> Result<BranchElement<'a>, String> {
        let at = PAGE_HEADER_SIZE + i * BRANCH_ELEMENT_SIZE;
        let e = &self.bytes[at..at + BRANCH_ELEMENT_SIZE];
        let (pos, ksize, pgid) = (u32_at(e, 0), u32_at(e, 4), u64_at(e, 8));
        let key = self.slice(at, pos, ksize as usize)?;
        Ok(BranchElement { key, pgid })
    }
}

/// Where one element's key (and value) sit in a [`NodeBuilder`]'s data.
#[derive(Debug, Clone, Copy)]
struct Pending {
    data_at: usize,
    ksize: u32,
    /// Leaf: the value's size. Branch: unused.
    vsize: u32,
    /// Leaf: element flags. Branch: unused.
    flags: u32,
    /// Branch: the child page. Leaf: unused.
    pgid: u64,
}

/// Gathers the elements of one branch or leaf page, in key order, and
/// encodes the page once it is full. Keys and values are kept packed in one
/// buffer, as they will sit on the page.
#[derive(Debug)]
pub struct NodeBuilder {
    leaf: bool,
    elements: Vec<Pending>,
    data: Vec<u8>,
}

impl NodeBuilder {
    pub fn new(leaf: bool) -> Self {
        NodeBuilder {
            leaf,
            elements: Vec::new(),
            data: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.elements.len()
    }

    pub fn is_empty(&self) -> bool {
        self.elements.is_empty()
    }

    /// The page's size in bytes: header, elements, keys and values.
    pub fn size(&self) -> usize {
        PAGE_HEADER_SIZE + self.elements.len() * LEAF_ELEMENT_SIZE + self.data.len()
    }

    /// What one more element with this key and value would add to
    /// [`size`](Self::size).
    pub fn element_size(key: &[u8], value: &[u8]) -> usize {
        LEAF_ELEMENT_SIZE + key.len() + value.len()
    }

    /// The smallest key (the first pushed); `None` when empty.
    pub fn first_key(&self) -> Option<&[u8]> {
        self.elements
            .first()
            .map(|e| &self.data[e.data_at..e.data_at + e.ksize as usize])
    }

    /// The largest key (the last pushed); `None` when empty.
    pub fn last_key(&self) -> Option<&[u8]> {
        self.elements
            .last()
            .map(|e| &self.data[e.data_at..e.data_at + e.ksize as usize])
    }

    /// Appends a leaf element; keys must come in increasing order.
    pub fn push_leaf(&mut self, key: &[u8], value: &[u8], flags: u32) {
        debug_assert!(self.leaf);
        self.elements.push(Pending {
            data_at: self.data.len(),
            ksize: key.len() as u32,
            vsize: value.len() as u32,
            flags,
            pgid: 0,
        });
        self.data.extend_from_slice(key);
        self.data.extend_from_slice(value);
    }

    /// Appends a branch element pointing at child page `pgid`.
    pub fn push_branch(&mut self, key: &[u8], pgid: u64) {
        debug_assert!(!self.leaf);
        self.elements.push(Pending {
            data_at: self.data.len(),
            ksize: key.len() as u32,
            vsize: 0,
            flags: 0,
            pgid,
        });
        self.data.extend_from_slice(key);
    }

    /// Encodes the page with id `id` into `out` (cleared first), padded to
    /// whole pages of `page_size` bytes with `overflow` set accordingly, or,
    /// with `page_size == 0`, unpadded (an inline bucket's page).
    pub fn encode(&self, id: u64, page_size: usize, out: &mut Vec<u8>) {
        let size = self.size();
        let pages = if page_size == 0 {
            1
        } else {
            size.div_ceil(page_size).max(1)
        };
        out.clear();
        out.resize(
            if page_size == 0 {
                size
            } else {
                pages * page_size
            },
            0,
        );
        PageHeader {
            id,
            flags: if self.leaf { LEAF_PAGE } else { BRANCH_PAGE },
            count: self.elements.len() as u16,
            overflow: (pages - 1) as u32,
        }
        .encode(out);
        let data_start = PAGE_HEADER_SIZE + self.elements.len() * LEAF_ELEMENT_SIZE;
        for (i, e) in self.elements.iter().enumerate() {
            let at = PAGE_HEADER_SIZE + i * LEAF_ELEMENT_SIZE;
            let pos = (data_start + e.data_at - at) as u32;
            let el = &mut out[at..at + LEAF_ELEMENT_SIZE];
            if self.leaf {
                el[0..4].copy_from_slice(&e.flags.to_le_bytes());
                el[4..8].copy_from_slice(&pos.to_le_bytes());
                el[8..12].copy_from_slice(&e.ksize.to_le_bytes());
                el[12..16].copy_from_slice(&e.vsize.to_le_bytes());
            } else {
                el[0..4].copy_from_slice(&pos.to_le_bytes());
                el[4..8].copy_from_slice(&e.ksize.to_le_bytes());
                el[8..16].copy_from_slice(&e.pgid.to_le_bytes());
            }
        }
        out[data_start..data_start + self.data.len()].copy_from_slice(&self.data);
    }

    /// Empties the builder, keeping its buffers.
    pub fn clear(&mut self) {
        self.elements.clear();
        self.data.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bbolt_fnv1a64_matches_reference_vectors() {
        // Vectors from the FNV reference (draft-eastlake-fnv).
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn bbolt_meta_round_trips_and_rejects_damage() {
        let meta = Meta {
            page_size: 4096,
            flags: 0,
            root: BucketHeader {
                root: 3,
                sequence: 0,
            },
            freelist: 2,
            pgid: 4,
            txid: 7,
        };
        let page = meta.encode_page();
        assert_eq!(PageHeader::parse(&page).id, 1);
        assert_eq!(Meta::decode(&page), Ok(meta));

        let mut bad = page.clone();
        bad[PAGE_HEADER_SIZE + 40] ^= 1;
        assert!(matches!(
            Meta::decode(&bad),
            Err(MetaProblem::BadChecksum { .. })
        ));
        let mut bad = page.clone();
        bad[PAGE_HEADER_SIZE + 4] = 1;
        assert_eq!(Meta::decode(&bad), Err(MetaProblem::BadVersion(1)));
        let mut bad = page;
        bad[PAGE_HEADER_SIZE] = 0;
        assert!(matches!(Meta::decode(&bad), Err(MetaProblem::BadMagic(_))));
        assert_eq!(Meta::decode(&[0u8; 40]), Err(MetaProblem::Missing));
    }

    #[test]
    fn bbolt_node_builder_encodes_what_node_page_reads() {
        let mut leaf = NodeBuilder::new(true);
        leaf.push_leaf(b"a", b"one", 0);
        leaf.push_leaf(b"bb", b"", BUCKET_LEAF);
        leaf.push_leaf(b"ccc", &[7u8; 5000], 0);
        let mut out = Vec::new();
        leaf.encode(9, 4096, &mut out);
        assert_eq!(out.len(), 8192);
        let page = NodePage::parse(&out).unwrap();
        assert_eq!(page.header.id, 9);
        assert_eq!(page.header.overflow, 1);
        assert!(page.is_leaf());
        let e: Vec<_> = (0..page.len()).map(|i| page.leaf(i).unwrap()).collect();
        assert_eq!(
            (e[0].key, e[0].value, e[0].flags),
            (&b"a"[..], &b"one"[..], 0)
        );
        assert_eq!((e[1].key, e[1].flags), (&b"bb"[..], BUCKET_LEAF));
        assert_eq!(e[2].value.len(), 5000);

        let mut branch = NodeBuilder::new(false);
        branch.push_branch(b"a", 5);
        branch.push_branch(b"m", 6);
        branch.encode(0, 0, &mut out);
        assert_eq!(out.len(), branch.size());
        let page = NodePage::parse(&out).unwrap();
        assert!(!page.is_leaf());
        assert_eq!(
            page.branch(1).unwrap(),
            BranchElement { key: b"m", pgid: 6 }
        );
    }

    #[test]
    fn bbolt_node_page_refuses_out_of_bounds_elements() {
        let mut leaf = NodeBuilder::new(true);
        leaf.push_leaf(b"key", b"value", 0);
        let mut out = Vec::new();
        leaf.encode(0, 0, &mut out);
        // vsize larger than the page.
        out[PAGE_HEADER_SIZE + 12..PAGE_HEADER_SIZE + 16].copy_from_slice(&999u32.to_le_bytes());
        let page = NodePage::parse(&out).unwrap();
        assert!(page.leaf(0).unwrap_err().contains("points past the page"));
        // count larger than the page can hold.
        out[10..12].copy_from_slice(&500u16.to_le_bytes());
        assert!(NodePage::parse(&out).unwrap_err().contains("do not fit"));
        out[8..10].copy_from_slice(&FREELIST_PAGE.to_le_bytes());
        assert!(NodePage::parse(&out).unwrap_err().contains("flags 0x0010"));
    }
}
