//! Revisions: the MVCC store's logical clock, as in etcd's `mvcc/revision.go`.
//!
//! 1. Every modifying request gets one *main* revision; each change inside it
//!    (a put or a tombstone) gets the next *sub* revision, starting at 0.
//! 2. Records are keyed by the 16-byte big-endian form (main, then sub), so
//!    the byte order of LMDB keys is the revision order.
//! 3. `HashKV` hashes etcd's own bucket key form (main, `_`, sub, and a `t`
//!    suffix for tombstones), so a hash computed here matches etcd's for the
//!    same history.

use std::fmt;

/// The length of a revision encoded as a record key.
pub const REVISION_BYTES: usize = 16;

/// One point in the MVCC history: `main` is the store revision a request
/// produced, `sub` the index of the change inside that request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Revision {
    pub main: i64,
    pub sub: i64,
}

impl Revision {
    pub const fn new(main: i64, sub: i64) -> Self {
        Self { main, sub }
    }

    /// The record key: main then sub, each 8 bytes big-endian.
    pub fn to_bytes(self) -> [u8; REVISION_BYTES] {
        let mut out = [0u8; REVISION_BYTES];
        out[..8].copy_from_slice(&self.main.to_be_bytes());
        out[8..].copy_from_slice(&self.sub.to_be_bytes());
        out
    }

    /// Decodes a record key; `None` if it is not 16 bytes long.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let bytes: &[u8; REVISION_BYTES] = bytes.try_into().ok()?;
        let (main, sub) = bytes.split_at(8);
        Some(Self {
            main: i64::from_be_bytes(main.try_into().ok()?),
            sub: i64::from_be_bytes(sub.try_into().ok()?),
        })
    }

    /// etcd's key-bucket key for this revision (`revToBytes` plus
    /// `appendMarkTombstone`): used only to hash exactly what etcd hashes.
    pub fn etcd_bucket_key(self, tombstone: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(18);
        out.extend_from_slice(&self.main.to_be_bytes());
        out.push(b'_');
        out.extend_from_slice(&self.sub.to_be_bytes());
        if tombstone {
            out.push(b't');
        }
        out
    }
}

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.main, self.sub)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_order_is_revision_order() {
        let revs = [
            Revision::new(1, 0),
            Revision::new(1, 1),
            Revision::new(1, 255),
            Revision::new(1, 256),
            Revision::new(2, 0),
            Revision::new(256, 0),
            Revision::new(i64::MAX, i64::MAX),
        ];
        for pair in revs.windows(2) {
            assert!(pair[0] < pair[1]);
            assert!(
                pair[0].to_bytes() < pair[1].to_bytes(),
                "{} vs {}",
                pair[0],
                pair[1]
            );
        }
    }

    #[test]
    fn round_trip_and_bad_length() {
        let rev = Revision::new(123_456_789, 42);
        assert_eq!(Revision::from_bytes(&rev.to_bytes()), Some(rev));
        assert_eq!(Revision::from_bytes(&[0u8; 15]), None);
        assert_eq!(Revision::from_bytes(&[0u8; 17]), None);
    }

    #[test]
    fn etcd_bucket_key_layout() {
        let key = Revision::new(2, 1).etcd_bucket_key(false);
        assert_eq!(key, [0, 0, 0, 0, 0, 0, 0, 2, b'_', 0, 0, 0, 0, 0, 0, 0, 1]);
        let tomb = Revision::new(2, 1).etcd_bucket_key(true);
        assert_eq!(tomb.len(), 18);
        assert_eq!(tomb[17], b't');
    }
}
