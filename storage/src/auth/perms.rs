//! Key-range permissions merged per user, checked as etcd 3.4's
//! `range_perm_cache.go` checks them, with its `adt` interval tree.
//!
//! 1. Every permission of every role a user holds (roles in the user's
//!    order, permissions in the role's) is inserted into a read tree and/or
//!    a write tree: a single key `k` is `[k, k\0)`; a range is
//!    `[key, range_end)`; a range end of `\0` (etcd's "from key") or an
//!    empty end means "past every key".
//! 2. A single-key request is allowed when some interval holds the key.
//! 3. A range request `[key, end)` is allowed when the intervals the tree's
//!    traversal visits for it, in order of their starts, leave no gap and
//!    cover it from `key` to `end`.
//!
//! The tree is etcd's: a red-black tree on interval starts (Cormen et al.,
//! chapter 13) augmented with each subtree's largest end (chapter 14.3),
//! its rotations and its max maintenance (which stops climbing at the first
//! unchanged max), built in the same insertion order. For a well-formed
//! range the traversal visits exactly the overlapping intervals; for a
//! range whose end is not after its key, which intervals it reaches depends
//! on the tree's shape, and etcd's answer with it. Reproducing the tree is
//! what makes those answers the same.

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

    /// etcd's `Interval.Compare`: -1 when `self` lies before `other`, 1
    /// when it starts at or after `other`'s end, 0 when they overlap.
    fn compare(&self, other: &Interval) -> i8 {
        use std::cmp::Ordering::*;
        if self.begin.cmp(&other.begin) == Less && self.end.cmp(&other.begin) != Greater {
            return -1;
        }
        if self.begin.cmp(&other.end) != Less {
            return 1;
        }
        0
    }
}

/// The sentinel's index in [`Tree::nodes`] (etcd's `sentinel` node: black,
/// never a real interval).
const NIL: usize = 0;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Node {
    interval: Interval,
    /// The largest end in this node's subtree (as etcd maintains it).
    max: Bound,
    left: usize,
    right: usize,
    parent: usize,
    red: bool,
}

/// etcd's `adt.IntervalTree`, insert-only, over an arena of nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Tree {
    nodes: Vec<Node>,
    root: usize,
}

impl Default for Tree {
    fn default() -> Tree {
        let sentinel = Node {
            interval: Interval::point(&[]),
            max: Bound::Infinite,
            left: NIL,
            right: NIL,
            parent: NIL,
            red: false,
        };
        Tree {
            nodes: vec![sentinel],
            root: NIL,
        }
    }
}

impl Tree {
    fn insert(&mut self, interval: Interval) {
        let z = self.nodes.len();
        self.nodes.push(Node {
            max: interval.end.clone(),
            interval,
            left: NIL,
            right: NIL,
            parent: NIL,
            red: true,
        });
        let (mut y, mut x) = (NIL, self.root);
        while x != NIL {
            y = x;
            x = if self.goes_left(z, x) {
                self.nodes[x].left
            } else {
                self.nodes[x].right
            };
        }
        self.nodes[z].parent = y;
        if y == NIL {
            self.root = z;
        } else {
            if self.goes_left(z, y) {
                self.nodes[y].left = z;
            } else {
                self.nodes[y].right = z;
            }
            self.update_max(y);
        }
        self.insert_fixup(z);
    }

    fn goes_left(&self, z: usize, x: usize) -> bool {
        let (z, x) = (&self.nodes[z].interval.begin, &self.nodes[x].interval.begin);
        z.cmp(x) == std::cmp::Ordering::Less
    }

    fn red(&self, x: usize) -> bool {
        x != NIL && self.nodes[x].red
    }

    /// Recomputes `max` from `x` up, stopping at the first node whose max
    /// did not change (etcd's `updateMax`).
    fn update_max(&mut self, mut x: usize) {
        use std::cmp::Ordering::Greater;
        while x != NIL {
            let node = &self.nodes[x];
            let mut max = node.interval.end.clone();
            for child in [node.left, node.right] {
                if child != NIL && self.nodes[child].max.cmp(&max) == Greater {
                    max = self.nodes[child].max.clone();
                }
            }
            if self.nodes[x].max == max {
                break;
            }
            self.nodes[x].max = max;
            x = self.nodes[x].parent;
        }
    }

    fn insert_fixup(&mut self, mut z: usize) {
        while self.red(self.nodes[z].parent) {
            let p = self.nodes[z].parent;
            let g = self.nodes[p].parent;
            if p == self.nodes[g].left {
                let y = self.nodes[g].right;
                if self.red(y) {
                    self.nodes[y].red = false;
                    self.nodes[p].red = false;
                    self.nodes[g].red = true;
                    z = g;
                } else {
                    if z == self.nodes[p].right {
                        z = p;
                        self.rotate_left(z);
                    }
                    let p = self.nodes[z].parent;
                    let g = self.nodes[p].parent;
                    self.nodes[p].red = false;
                    self.nodes[g].red = true;
                    self.rotate_right(g);
                }
            } else {
                let y = self.nodes[g].left;
                if self.red(y) {
                    self.nodes[y].red = false;
                    self.nodes[p].red = false;
                    self.nodes[g].red = true;
                    z = g;
                } else {
                    if z == self.nodes[p].left {
                        z = p;
                        self.rotate_right(z);
                    }
                    let p = self.nodes[z].parent;
                    let g = self.nodes[p].parent;
                    self.nodes[p].red = false;
                    self.nodes[g].red = true;
                    self.rotate_left(g);
                }
            }
        }
        let root = self.root;
        self.nodes[root].red = false;
    }

    fn rotate_left(&mut self, x: usize) {
        let y = self.nodes[x].right;
        if y == NIL {
            return;
        }
        let y_left = self.nodes[y].left;
        self.nodes[x].right = y_left;
        if y_left != NIL {
            self.nodes[y_left].parent = x;
        }
        self.update_max(x);
        self.replace_parent(x, y);
        self.nodes[y].left = x;
        self.update_max(y);
    }

    fn rotate_right(&mut self, x: usize) {
        let y = self.nodes[x].left;
        if y == NIL {
            return;
        }
        let y_right = self.nodes[y].right;
        self.nodes[x].left = y_right;
        if y_right != NIL {
            self.nodes[y_right].parent = x;
        }
        self.update_max(x);
        self.replace_parent(x, y);
        self.nodes[y].right = x;
        self.update_max(y);
    }

    /// Puts `y` where `x` hangs (etcd's `replaceParent`).
    fn replace_parent(&mut self, x: usize, y: usize) {
        let parent = self.nodes[x].parent;
        self.nodes[y].parent = parent;
        if parent == NIL {
            self.root = y;
        } else {
            if x == self.nodes[parent].left {
                self.nodes[parent].left = y;
            } else {
                self.nodes[parent].right = y;
            }
            self.update_max(parent);
        }
        self.nodes[x].parent = y;
    }

    /// Whether some interval overlaps `point` (etcd's `Intersects`).
    fn intersects(&self, point: &Interval) -> bool {
        let mut x = self.root;
        while x != NIL && point.compare(&self.nodes[x].interval) != 0 {
            let left = self.nodes[x].left;
            x = if left != NIL
                && self.nodes[left].max.cmp(&point.begin) == std::cmp::Ordering::Greater
            {
                left
            } else {
                self.nodes[x].right
            };
        }
        x != NIL
    }

    /// The intervals etcd's `Visit` reaches for `query`, in its order.
    fn visit<'t>(&'t self, x: usize, query: &Interval, out: &mut Vec<&'t Interval>) {
        if x == NIL {
            return;
        }
        let node = &self.nodes[x];
        match query.compare(&node.interval) {
            -1 => self.visit(node.left, query, out),
            1 => {
                let reach = Interval {
                    begin: node.interval.begin.clone(),
                    end: node.max.clone(),
                };
                if reach.compare(query) == 0 {
                    self.visit(node.left, query, out);
                    self.visit(node.right, query, out);
                }
            }
            _ => {
                self.visit(node.left, query, out);
                out.push(&node.interval);
                self.visit(node.right, query, out);
            }
        }
    }

    /// Whether the visited intervals cover `query` without a gap (etcd's
    /// `Contains`).
    fn contains(&self, query: &Interval) -> bool {
        use std::cmp::Ordering::*;
        let mut visited = Vec::new();
        self.visit(self.root, query, &mut visited);
        let Some(first) = visited.first() else {
            return false;
        };
        let (begin, mut end) = (&first.begin, &first.end);
        for interval in &visited[1..] {
            if end.cmp(&interval.begin) == Less {
                return false;
            }
            if interval.end.cmp(end) == Greater {
                end = &interval.end;
            }
        }
        end.cmp(&query.end) != Less && begin.cmp(&query.begin) != Greater
    }
}

/// A user's merged permissions (etcd's `unifiedRangePermissions`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserPerms {
    read: Tree,
    write: Tree,
}

impl UserPerms {
    /// Merges the permissions of a user's roles, in the order given (the
    /// user's roles in order, each role's permissions in order).
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
                Ok(PermType::Read) => merged.read.insert(interval),
                Ok(PermType::Write) => merged.write.insert(interval),
                Ok(PermType::Readwrite) => {
                    merged.read.insert(interval.clone());
                    merged.write.insert(interval);
                }
                Err(_) => {}
            }
        }
        merged
    }

    /// Whether the user may read (`write == false`) or write the key, or the
    /// range `[key, range_end)` when `range_end` is not empty (`\0`: every
    /// key from `key` on).
    pub fn allows(&self, key: &[u8], range_end: &[u8], write: bool) -> bool {
        let tree = if write { &self.write } else { &self.read };
        if range_end.is_empty() {
            return tree.intersects(&Interval::point(key));
        }
        let end: &[u8] = if range_end == [0] { &[] } else { range_end };
        tree.contains(&Interval::new(key, end))
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
    fn inverted_ranges_follow_the_trees_shape_as_etcds() {
        // etcd 3.4.23 refuses [e1, a) and [b, b) but allows [e1, e),
        // [c1, a), [a1, a) and [c, a) for READ on [a,b), [c,d), [e,f)
        // (found by the differential test, checked with etcdctl).
        let p = UserPerms::merge(&[
            perm(PermType::Read, b"a", b"b"),
            perm(PermType::Read, b"c", b"d"),
            perm(PermType::Read, b"e", b"f"),
        ]);
        assert!(!p.allows(b"e1", b"a", false));
        assert!(p.allows(b"e1", b"e", false));
        assert!(p.allows(b"c1", b"a", false));
        assert!(p.allows(b"a1", b"a", false));
        assert!(!p.allows(b"b", b"b", false));
        assert!(p.allows(b"c", b"a", false));
        assert!(p.allows(b"e1", b"", false));
    }

    #[test]
    fn the_tree_stays_balanced_with_sorted_inserts() {
        let perms: Vec<Permission> = (0..64u8)
            .map(|i| perm(PermType::Read, &[b'a', i], &[b'a', i, 1]))
            .collect();
        let p = UserPerms::merge(&perms);
        fn height(t: &Tree, x: usize) -> usize {
            if x == NIL {
                0
            } else {
                1 + height(t, t.nodes[x].left).max(height(t, t.nodes[x].right))
            }
        }
        assert!(height(&p.read, p.read.root) <= 12);
        assert!(p.allows(&[b'a', 7], &[b'a', 7, 1], false));
        assert!(!p.allows(&[b'a', 7], &[b'a', 8], false));
    }

    #[test]
    fn a_point_permission_covers_a_one_key_range() {
        let p = UserPerms::merge(&[perm(PermType::Read, b"k", b"")]);
        assert!(p.allows(b"k", b"k\0", false));
        assert!(!p.allows(b"k", b"l", false));
    }
}
