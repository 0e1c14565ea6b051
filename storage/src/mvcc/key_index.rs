//! The in-memory key index: user key -> the revisions of that key, as etcd's
//! `mvcc/key_index.go` and `mvcc/index.go`.
//!
//! 1. A [`KeyIndex`] holds *generations*: a generation starts with the put
//!    that created the key and ends with the tombstone that deleted it; the
//!    last generation is open (empty once the key is deleted).
//! 2. `get(at)` finds the generation alive at `at` and, inside it, the newest
//!    revision `<= at`; the version is counted from the generation's end.
//! 3. `compact(at)` drops every revision `<= at` except the newest one of each
//!    key (and drops even that one when it is a tombstone); it reports the
//!    revisions it kept (`available`) and those it dropped, so the store can
//!    delete exactly the dropped records.
//! 4. [`TreeIndex`] orders the keys (a `BTreeMap`), so a point lookup is
//!    O(log n) and a range visits only the keys inside it.
//! 5. `undo_put` / `undo_tombstone` are the exact inverses of `put` /
//!    `tombstone`, used to roll back a txn that fails half-way.

use std::collections::{BTreeMap, HashSet};
use std::ops::Bound;

use super::revision::Revision;

/// One life of a key: from its creation to its tombstone (if any).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Generation {
    /// Number of puts in this generation (the tombstone counts too, as in etcd).
    ver: i64,
    created: Revision,
    revs: Vec<Revision>,
}

impl Generation {
    fn is_empty(&self) -> bool {
        self.revs.is_empty()
    }

    /// etcd's `generation.walk`: visits revisions newest first and returns the
    /// index of the first one for which `keep_walking` is false.
    fn walk(&self, mut keep_walking: impl FnMut(Revision) -> bool) -> Option<usize> {
        (0..self.revs.len())
            .rev()
            .find(|&i| !keep_walking(self.revs[i]))
    }
}

/// All revisions of one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyIndex {
    modified: Revision,
    generations: Vec<Generation>,
}

/// What `get` returns: the revision holding the key's value at the asked
/// revision, its creation revision and its version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KeyAt {
    pub modified: Revision,
    pub created: Revision,
    pub version: i64,
}

impl KeyIndex {
    fn new() -> Self {
        Self {
            modified: Revision::default(),
            generations: vec![Generation::default()],
        }
    }

    /// A key whose oldest surviving record is `modified` (rebuild after a
    /// compaction removed its history): etcd's `keyIndex.restore`.
    fn restored(created: Revision, modified: Revision, version: i64) -> Self {
        Self {
            modified,
            generations: vec![Generation {
                ver: version,
                created,
                revs: vec![modified],
            }],
        }
    }

    fn is_empty(&self) -> bool {
        self.generations.len() == 1 && self.generations[0].is_empty()
    }

    /// True while the key exists (its newest generation has not ended).
    fn is_alive(&self) -> bool {
        self.generations.last().is_some_and(|g| !g.is_empty())
    }

    /// The newest revision of the key (a tombstone when it is deleted).
    pub(crate) fn modified(&self) -> Revision {
        self.modified
    }

    fn put(&mut self, rev: Revision) {
        debug_assert!(rev > self.modified, "put {rev} not after {}", self.modified);
        if self.generations.is_empty() {
            self.generations.push(Generation::default());
        }
        let g = self
            .generations
            .last_mut()
            .expect("a key index has a generation");
        if g.revs.is_empty() {
            g.created = rev;
        }
        g.revs.push(rev);
        g.ver += 1;
        self.modified = rev;
    }

    /// Ends the current generation; false if the key is already deleted.
    fn tombstone(&mut self, rev: Revision) -> bool {
        if self.generations.last().is_none_or(Generation::is_empty) {
            return false;
        }
        self.put(rev);
        self.generations.push(Generation::default());
        true
    }

    fn undo_put(&mut self, previous_modified: Revision) {
        if let Some(g) = self.generations.last_mut() {
            g.revs.pop();
            g.ver -= 1;
            if g.revs.is_empty() {
                g.created = Revision::default();
                g.ver = 0;
            }
        }
        self.modified = previous_modified;
    }

    fn undo_tombstone(&mut self, previous_modified: Revision) {
        self.generations.pop();
        self.undo_put(previous_modified);
    }

    /// etcd's `findGeneration`: the generation alive at `rev`.
    fn find_generation(&self, rev: i64) -> Option<&Generation> {
        let last = self.generations.len() - 1;
        for (i, g) in self.generations.iter().enumerate().rev() {
            if g.revs.is_empty() {
                continue;
            }
            if i != last && g.revs[g.revs.len() - 1].main <= rev {
                // The key was deleted at or before `rev`.
                return None;
            }
            if g.revs[0].main <= rev {
                return Some(g);
            }
        }
        None
    }

    pub(crate) fn get(&self, at: i64) -> Option<KeyAt> {
        let g = self.find_generation(at)?;
        let n = g.walk(|rev| rev.main > at)?;
        Some(KeyAt {
            modified: g.revs[n],
            created: g.created,
            version: g.ver - (g.revs.len() - n - 1) as i64,
        })
    }

    /// etcd's `doCompact`: the generation holding `at` (or the first created
    /// after it) and, inside it, the index of the newest revision `<= at`,
    /// which is added to `available`.
    fn do_compact(&self, at: i64, available: &mut HashSet<Revision>) -> (usize, Option<usize>) {
        let mut gen_idx = 0;
        while gen_idx < self.generations.len() - 1 {
            let g = &self.generations[gen_idx];
            if g.revs[g.revs.len() - 1].main > at {
                break;
            }
            gen_idx += 1;
        }
        let rev_index = self.generations[gen_idx].walk(|rev| {
            if rev.main <= at {
                available.insert(rev);
                false
            } else {
                true
            }
        });
        (gen_idx, rev_index)
    }

    fn compact(&mut self, at: i64, available: &mut HashSet<Revision>, dropped: &mut Vec<Revision>) {
        let (mut gen_idx, rev_index) = self.do_compact(at, available);
        let last = self.generations.len() - 1;
        let g = &mut self.generations[gen_idx];
        if !g.is_empty() {
            if let Some(ri) = rev_index {
                dropped.extend(g.revs.drain(..ri));
            }
            // A generation reduced to its tombstone is over: drop it whole.
            if g.revs.len() == 1 && gen_idx != last {
                available.remove(&g.revs[0]);
                gen_idx += 1;
            }
        }
        for g in self.generations.drain(..gen_idx) {
            dropped.extend(g.revs);
        }
    }

    fn keep(&self, at: i64, available: &mut HashSet<Revision>) {
        if self.is_empty() {
            return;
        }
        let (gen_idx, rev_index) = self.do_compact(at, available);
        let g = &self.generations[gen_idx];
        if !g.is_empty()
            && rev_index == Some(g.revs.len() - 1)
            && gen_idx != self.generations.len() - 1
        {
            available.remove(&g.revs[g.revs.len() - 1]);
        }
    }

    /// Every revision this key still has, oldest first.
    pub(crate) fn revisions(&self) -> impl Iterator<Item = Revision> + '_ {
        self.generations.iter().flat_map(|g| g.revs.iter().copied())
    }
}

/// Which keys a request names, from its `key` and `range_end` (etcd's
/// conventions, `mkGteRange` included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyRange<'a> {
    /// `range_end` empty: the single key.
    Key(&'a [u8]),
    /// `range_end == "\0"`: every key `>= key`.
    From(&'a [u8]),
    /// Every key in `[key, end)`; empty when `end <= key`.
    Between(&'a [u8], &'a [u8]),
}

impl<'a> KeyRange<'a> {
    pub(crate) fn new(key: &'a [u8], range_end: &'a [u8]) -> Self {
        match range_end {
            [] => Self::Key(key),
            [0] => Self::From(key),
            end => Self::Between(key, end),
        }
    }
}

/// The ordered key index.
#[derive(Debug, Default, Clone)]
pub(crate) struct TreeIndex {
    keys: BTreeMap<Vec<u8>, KeyIndex>,
    /// Keys alive at the newest revision, kept by every change below
    /// (etcd's `keys_total` gauge).
    alive: usize,
}

impl TreeIndex {
    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    /// Keys alive at the newest revision.
    pub(crate) fn alive(&self) -> usize {
        self.alive
    }

    /// Runs `change` on `key`'s index and keeps [`TreeIndex::alive`].
    fn change<T>(&mut self, key: &[u8], change: impl FnOnce(&mut KeyIndex) -> T) -> Option<T> {
        let ki = self.keys.get_mut(key)?;
        let before = ki.is_alive();
        let out = change(ki);
        match (before, ki.is_alive()) {
            (false, true) => self.alive += 1,
            (true, false) => self.alive -= 1,
            _ => {}
        }
        Some(out)
    }

    pub(crate) fn key_index(&self, key: &[u8]) -> Option<&KeyIndex> {
        self.keys.get(key)
    }

    pub(crate) fn get(&self, key: &[u8], at: i64) -> Option<KeyAt> {
        self.keys.get(key)?.get(at)
    }

    /// Visits, in key order, every key of `range` alive at `at`.
    pub(crate) fn visit(&self, range: KeyRange<'_>, at: i64, mut f: impl FnMut(&[u8], KeyAt)) {
        let bounds: (Bound<&[u8]>, Bound<&[u8]>) = match range {
            KeyRange::Key(key) => {
                if let Some(found) = self.get(key, at) {
                    f(key, found);
                }
                return;
            }
            KeyRange::From(key) => (Bound::Included(key), Bound::Unbounded),
            KeyRange::Between(key, end) if end <= key => return,
            KeyRange::Between(key, end) => (Bound::Included(key), Bound::Excluded(end)),
        };
        for (key, ki) in self.keys.range::<[u8], _>(bounds) {
            if let Some(found) = ki.get(at) {
                f(key, found);
            }
        }
    }

    /// Records a put of `key` at `rev`.
    pub(crate) fn put(&mut self, key: &[u8], rev: Revision) {
        if self.change(key, |ki| ki.put(rev)).is_none() {
            let mut ki = KeyIndex::new();
            ki.put(rev);
            self.keys.insert(key.to_vec(), ki);
            self.alive += 1;
        }
    }

    /// Records a deletion; false if the key is absent or already deleted.
    pub(crate) fn tombstone(&mut self, key: &[u8], rev: Revision) -> bool {
        self.change(key, |ki| ki.tombstone(rev)).unwrap_or(false)
    }

    pub(crate) fn undo_put(&mut self, key: &[u8], previous_modified: Revision) {
        let emptied = self.change(key, |ki| {
            ki.undo_put(previous_modified);
            ki.is_empty()
        });
        if emptied == Some(true) {
            self.keys.remove(key);
        }
    }

    pub(crate) fn undo_tombstone(&mut self, key: &[u8], previous_modified: Revision) {
        self.change(key, |ki| ki.undo_tombstone(previous_modified));
    }

    /// Rebuild step for one record, fed in revision order (etcd's
    /// `restoreChunk`): a put extends (or starts) the key, a tombstone ends it.
    pub(crate) fn restore(
        &mut self,
        key: &[u8],
        rev: Revision,
        tombstone: bool,
        created: i64,
        version: i64,
    ) {
        let known = self.change(key, |ki| {
            if tombstone {
                ki.tombstone(rev);
            } else {
                ki.put(rev);
            }
        });
        // A tombstone whose puts were compacted away carries nothing.
        if known.is_none() && !tombstone {
            let ki = KeyIndex::restored(Revision::new(created, 0), rev, version);
            self.keys.insert(key.to_vec(), ki);
            self.alive += 1;
        }
    }

    /// Compacts every key at `at`; returns the revisions kept at or below `at`
    /// and the revisions dropped (whose records must be deleted).
    pub(crate) fn compact(&mut self, at: i64) -> (HashSet<Revision>, Vec<Revision>) {
        let mut available = HashSet::new();
        let mut dropped = Vec::new();
        self.keys.retain(|_, ki| {
            ki.compact(at, &mut available, &mut dropped);
            !ki.is_empty()
        });
        dropped.sort_unstable();
        (available, dropped)
    }

    /// The revisions a compaction at `at` would keep (etcd's `Keep`).
    pub(crate) fn keep(&self, at: i64) -> HashSet<Revision> {
        let mut available = HashSet::new();
        for ki in self.keys.values() {
            ki.keep(at, &mut available);
        }
        available
    }

    /// Every (key, key index), in key order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&[u8], &KeyIndex)> {
        self.keys.iter().map(|(k, ki)| (k.as_slice(), ki))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rev(main: i64) -> Revision {
        Revision::new(main, 0)
    }

    /// etcd's key_index_test fixture: puts at 2, 4, 6(tomb), 8, 10, 12(tomb),
    /// 14, 14.1, 16(tomb).
    fn fixture() -> KeyIndex {
        let mut ki = KeyIndex::new();
        ki.put(rev(2));
        ki.put(rev(4));
        assert!(ki.tombstone(rev(6)));
        ki.put(rev(8));
        ki.put(rev(10));
        assert!(ki.tombstone(rev(12)));
        ki.put(rev(14));
        ki.put(Revision::new(14, 1));
        assert!(ki.tombstone(rev(16)));
        ki
    }

    #[test]
    fn get_follows_generations() {
        let ki = fixture();
        // (at, expected modified main, created main, version)
        type Row = (i64, Option<(Revision, i64, i64)>);
        let table: &[Row] = &[
            (17, None),
            (16, None),
            (15, Some((Revision::new(14, 1), 14, 2))),
            (14, Some((Revision::new(14, 1), 14, 2))),
            (13, None),
            (12, None),
            (11, Some((rev(10), 8, 2))),
            (10, Some((rev(10), 8, 2))),
            (9, Some((rev(8), 8, 1))),
            (8, Some((rev(8), 8, 1))),
            (7, None),
            (6, None),
            (5, Some((rev(4), 2, 2))),
            (4, Some((rev(4), 2, 2))),
            (3, Some((rev(2), 2, 1))),
            (2, Some((rev(2), 2, 1))),
            (1, None),
            (0, None),
        ];
        for &(at, want) in table {
            let got = ki.get(at).map(|k| (k.modified, k.created.main, k.version));
            assert_eq!(got, want, "get({at})");
        }
    }

    #[test]
    fn tombstone_on_deleted_key_fails() {
        let mut ki = KeyIndex::new();
        ki.put(rev(2));
        assert!(ki.tombstone(rev(3)));
        assert!(!ki.tombstone(rev(4)));
    }

    #[test]
    fn compact_table_matches_etcd() {
        // (compact at, remaining revisions, available)
        let table: &[(i64, &[i64], &[i64])] = &[
            (1, &[2, 4, 6, 8, 10, 12, 14, 14, 16], &[]),
            (2, &[2, 4, 6, 8, 10, 12, 14, 14, 16], &[2]),
            (3, &[2, 4, 6, 8, 10, 12, 14, 14, 16], &[2]),
            (4, &[4, 6, 8, 10, 12, 14, 14, 16], &[4]),
            (5, &[4, 6, 8, 10, 12, 14, 14, 16], &[4]),
            (6, &[8, 10, 12, 14, 14, 16], &[]),
            (7, &[8, 10, 12, 14, 14, 16], &[]),
            (8, &[8, 10, 12, 14, 14, 16], &[8]),
            (10, &[10, 12, 14, 14, 16], &[10]),
            (12, &[14, 14, 16], &[]),
            (14, &[14, 16], &[14]),
            (16, &[], &[]),
        ];
        for &(at, remaining, avail) in table {
            let mut ki = fixture();
            let mut available = HashSet::new();
            let mut dropped = Vec::new();
            ki.compact(at, &mut available, &mut dropped);
            let left: Vec<i64> = ki.revisions().map(|r| r.main).collect();
            assert_eq!(left, remaining, "compact({at}) remaining");
            let mut got: Vec<i64> = available.iter().map(|r| r.main).collect();
            got.sort_unstable();
            assert_eq!(got, avail, "compact({at}) available");
            // Dropped and remaining partition the original revisions.
            let mut all: Vec<Revision> = dropped.clone();
            all.extend(ki.revisions());
            all.sort_unstable();
            assert_eq!(
                all,
                fixture().revisions().collect::<Vec<_>>(),
                "compact({at}) partition"
            );
            // keep() on a fresh fixture agrees with compact()'s available set.
            let mut kept = HashSet::new();
            fixture().keep(at, &mut kept);
            assert_eq!(kept, available, "keep({at})");
        }
    }

    #[test]
    fn alive_counts_keys_at_the_newest_revision() {
        let mut tree = TreeIndex::default();
        tree.put(b"a", rev(2));
        tree.put(b"b", rev(3));
        tree.put(b"a", rev(4));
        assert_eq!(tree.alive(), 2);
        assert!(tree.tombstone(b"a", rev(5)));
        assert!(!tree.tombstone(b"a", rev(6)));
        assert_eq!(tree.alive(), 1);
        tree.undo_tombstone(b"a", rev(4));
        assert_eq!(tree.alive(), 2);
        tree.put(b"c", rev(6));
        tree.undo_put(b"c", Revision::default());
        assert_eq!(tree.alive(), 2);
        tree.compact(6);
        assert_eq!(tree.alive(), 2);
        let mut restored = TreeIndex::default();
        restored.restore(b"a", rev(2), false, 2, 1);
        restored.restore(b"b", rev(3), false, 3, 1);
        restored.restore(b"a", rev(4), true, 0, 0);
        restored.restore(b"gone", rev(5), true, 0, 0);
        assert_eq!(restored.alive(), 1);
    }

    #[test]
    fn undo_restores_exact_state() {
        let mut tree = TreeIndex::default();
        tree.put(b"a", rev(2));
        let before = tree.clone();
        let prev = tree.key_index(b"a").map(KeyIndex::modified).unwrap();
        tree.put(b"a", rev(3));
        tree.undo_put(b"a", prev);
        assert_eq!(tree.key_index(b"a"), before.key_index(b"a"));

        assert!(tree.tombstone(b"a", rev(3)));
        tree.undo_tombstone(b"a", prev);
        assert_eq!(tree.key_index(b"a"), before.key_index(b"a"));

        tree.put(b"new", rev(4));
        tree.undo_put(b"new", Revision::default());
        assert!(tree.key_index(b"new").is_none());
    }

    #[test]
    fn visit_honours_range_conventions() {
        let mut tree = TreeIndex::default();
        for (i, k) in [&b"a"[..], b"ab", b"b", b"c"].iter().enumerate() {
            tree.put(k, rev(i as i64 + 2));
        }
        let keys = |range: KeyRange<'_>| {
            let mut out = Vec::new();
            tree.visit(range, 10, |k, _| out.push(k.to_vec()));
            out
        };
        assert_eq!(keys(KeyRange::new(b"a", b"")), vec![b"a".to_vec()]);
        assert_eq!(
            keys(KeyRange::new(b"a", b"b")),
            vec![b"a".to_vec(), b"ab".to_vec()]
        );
        assert_eq!(
            keys(KeyRange::new(b"b", b"\0")),
            vec![b"b".to_vec(), b"c".to_vec()]
        );
        assert_eq!(keys(KeyRange::new(b"\0", b"\0")).len(), 4);
        assert!(keys(KeyRange::new(b"c", b"a")).is_empty());
        assert!(keys(KeyRange::new(b"c", b"c")).is_empty());
        assert!(keys(KeyRange::new(b"zz", b"")).is_empty());
    }

    #[test]
    fn restore_rebuilds_versions_after_compaction() {
        let mut tree = TreeIndex::default();
        // The oldest surviving record is version 5 created at 3.
        tree.restore(b"k", rev(9), false, 3, 5);
        tree.restore(b"k", rev(10), false, 3, 6);
        tree.restore(b"k", rev(11), true, 0, 0);
        tree.restore(b"k", rev(12), false, 12, 1);
        tree.restore(b"gone", rev(13), true, 0, 0);
        let at = |r| tree.get(b"k", r).map(|k| (k.created.main, k.version));
        assert_eq!(at(9), Some((3, 5)));
        assert_eq!(at(10), Some((3, 6)));
        assert_eq!(at(11), None);
        assert_eq!(at(12), Some((12, 1)));
        assert!(tree.key_index(b"gone").is_none());
    }
}
