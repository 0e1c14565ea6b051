//! Key-range permissions merged per user, checked as etcd's
//! `range_perm_cache.go` and `adt` interval tree check them.
//!
//! 1. Every permission of every role a user holds becomes an interval of
//!    keys: a single key `k` is `[k, k\0)`; a range is `[key, range_end)`;
//!    a range end of `\0` (etcd's "from key") or an empty end of an interval
//!    means "up to the end of the key space".
//! 2. A single-key request is allowed when some interval holds the key.
//! 3. A range request `[key, end)` is allowed when the intervals that
//!    overlap it, taken in order of their starts, leave no gap and cover it
//!    from `key` to `end`.

use proto::authpb::Permission;
use proto::authpb::permission::Type as PermType;

/// One end of an interval: a key, or past every key.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Bound {
    Key(Vec<u8>),
    Infinite,
}

impl Bound {
    /// etcd's `BytesAffineComparable`: an empty slice is past every key.
    fn of(bytes: &[u8]) -> Bound {
        if bytes.is_empty() {
            Bound::Infinite
        } else {
            Bound::Key(bytes.to_vec())
        }
    }

    fn cmp(&self, other: &Bound) -> std::cmp::Ordering {
        use std::cmp::Ordering;
        match (self, other) {
            (Bound::Infinite, Bound::Infinite) => Ordering::Equal,
            (Bound::Infinite, Bound::Key(_)) => Ordering::Greater,
            (Bound::Key(_), Bound::Infinite) => Ordering::Less,
            (Bound::Key(a), Bound::Key(b)) => a.cmp(b),
        }
    }
}

/// A half-open interval of keys.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Interval {
    begin: Bound,
    end: Bound,
}

impl Interval {
    fn new(begin: &[u8], end: &[u8]) -> Interval {
        Interval {
            begin: Bound::of(begin),
            end: Bound::of(end),
        }
    }

    fn point(key: &[u8]) -> Interval {
        let mut end = key.to_vec();
        end.push(0);
        Interval {
            begin: Bound::of(key),
            end: Bound::Key(end),
        }
    }

    /// Whether the two intervals share a key (etcd's `Interval.Compare`
    /// answering 0).
    fn overlaps(&self, other: &Interval) -> bool {
        use std::cmp::Ordering::*;
        let before = self.begin.cmp(&other.begin) == Less && self.end.cmp(&other.begin) != Greater;
        let after = self.begin.cmp(&other.end) != Less;
        !before && !after
    }
}

/// A user's merged permissions (etcd's `unifiedRangePermissions`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserPerms {
    read: Vec<Interval>,
    write: Vec<Interval>,
}

impl UserPerms {
    /// Merges the permissions of a user's roles.
    pub fn merge<'a>(perms: impl IntoIterator<Item = &'a Permission>) -> UserPerms {
        let mut merged = UserPerms::default();
        for perm in perms {
            let interval = if perm.range_end.is_empty() {
                Interval::point(&perm.key)
            } else if perm.range_end == [0] {
                Interval::new(&perm.key, &[])
            } else {
                Interval::new(&perm.key, &perm.range_end)
            };
            match PermType::try_from(perm.perm_type) {
                Ok(PermType::Read) => merged.read.push(interval),
                Ok(PermType::Write) => merged.write.push(interval),
                Ok(PermType::Readwrite) => {
                    merged.read.push(interval.clone());
                    merged.write.push(interval);
                }
                Err(_) => {}
            }
        }
        for list in [&mut merged.read, &mut merged.write] {
            list.sort_by(|a, b| a.begin.cmp(&b.begin).then(a.end.cmp(&b.end)));
        }
        merged
    }

    /// Whether the user may read (`write == false`) or write the key, or the
    /// range `[key, range_end)` when `range_end` is not empty (`\0`: every
    /// key from `key` on).
    pub fn allows(&self, key: &[u8], range_end: &[u8], write: bool) -> bool {
        let list = if write { &self.write } else { &self.read };
        if range_end.is_empty() {
            let point = Interval::point(key);
            return list.iter().any(|i| i.overlaps(&point));
        }
        let end: &[u8] = if range_end == [0] { &[] } else { range_end };
        contains(list, &Interval::new(key, end))
    }
}

/// etcd's `intervalTree.Contains`: the intervals overlapping `query`, in
/// order of their starts, are contiguous and reach from its begin to its
/// end.
fn contains(sorted: &[Interval], query: &Interval) -> bool {
    use std::cmp::Ordering::*;
    let mut covered: Option<(&Bound, &Bound)> = None;
    for interval in sorted.iter().filter(|i| query.overlaps(i)) {
        covered = match covered {
            None => Some((&interval.begin, &interval.end)),
            Some((begin, end)) => {
                if end.cmp(&interval.begin) == Less {
                    return false;
                }
                let end = if interval.end.cmp(end) == Greater {
                    &interval.end
                } else {
                    end
                };
                Some((begin, end))
            }
        };
    }
    match covered {
        None => false,
        Some((begin, end)) => end.cmp(&query.end) != Less && begin.cmp(&query.begin) != Greater,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn perm(t: PermType, key: &[u8], end: &[u8]) -> Permission {
        Permission {
            perm_type: t as i32,
            key: key.to_vec(),
            range_end: end.to_vec(),
        }
    }

    #[test]
    fn single_keys_need_an_interval_holding_them() {
        let p = UserPerms::merge(&[
            perm(PermType::Read, b"a", b"c"),
            perm(PermType::Write, b"x", b""),
        ]);
        assert!(p.allows(b"a", b"", false));
        assert!(p.allows(b"b\xff", b"", false));
        assert!(!p.allows(b"c", b"", false));
        assert!(!p.allows(b"a", b"", true));
        assert!(p.allows(b"x", b"", true));
        assert!(!p.allows(b"x\0", b"", true));
        assert!(!p.allows(b"x", b"", false));
    }

    #[test]
    fn ranges_need_contiguous_cover() {
        let p = UserPerms::merge(&[
            perm(PermType::Readwrite, b"a", b"c"),
            perm(PermType::Read, b"c", b"e"),
            perm(PermType::Read, b"f", b"g"),
        ]);
        assert!(p.allows(b"a", b"e", false));
        assert!(p.allows(b"b", b"d", false));
        assert!(!p.allows(b"a", b"g", false));
        assert!(!p.allows(b"a", b"e", true));
        assert!(p.allows(b"a", b"c", true));
        assert!(!p.allows(b"a", b"\0", false));
    }

    #[test]
    fn from_key_permissions_reach_the_end() {
        let p = UserPerms::merge(&[perm(PermType::Read, b"m", b"\0")]);
        assert!(p.allows(b"m", b"\0", false));
        assert!(p.allows(b"n", b"z", false));
        assert!(p.allows(b"\xff\xff", b"", false));
        assert!(!p.allows(b"l", b"\0", false));
    }

    #[test]
    fn a_point_permission_covers_a_one_key_range() {
        let p = UserPerms::merge(&[perm(PermType::Read, b"k", b"")]);
        assert!(p.allows(b"k", b"k\0", false));
        assert!(!p.allows(b"k", b"l", false));
    }
}
