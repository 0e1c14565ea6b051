//! Which watchers an event's key concerns: the hub's index of watchers by
//! the key range they watch, so that matching an event costs one lookup per
//! distinct range that could hold the key, never a loop over every watcher.
//!
//! 1. A single-key watcher sits in a hash map under its key.
//! 2. A range watcher sits under its range's start and end; watchers of the
//!    same range share one entry (a thousand watchers on one prefix cost
//!    one comparison per event, as etcd's watcher groups do).
//! 3. [`WatcherIndex::matching`] visits the single-key entry for the key,
//!    then, for each distinct start at or below the key, the ends above it
//!    (one ordered-map range per start).
//!
//! The cost per event is O(log n) plus the number of distinct range starts
//! at or below the key; prefix watches (what Kubernetes and most clients
//! use) have few distinct starts.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;

/// One watcher: its stream and its id on that stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WatcherRef {
    pub stream: u64,
    pub id: i64,
}

/// What a watcher watches, as etcd's watch create request says it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KeyRange {
    /// Exactly one key.
    Key(Vec<u8>),
    /// `start <= key < end`; `end: None` means no upper bound (`range_end`
    /// of `"\0"`).
    Range {
        start: Vec<u8>,
        end: Option<Vec<u8>>,
    },
}

impl KeyRange {
    /// The range of a create request: an empty key is `"\0"`; an empty
    /// `range_end` is the key alone; `"\0"` is every key from `key` on.
    pub fn of(key: &[u8], range_end: &[u8]) -> KeyRange {
        let start = if key.is_empty() {
            vec![0]
        } else {
            key.to_vec()
        };
        match range_end {
            [] => KeyRange::Key(start),
            [0] => KeyRange::Range { start, end: None },
            end => KeyRange::Range {
                start,
                end: Some(end.to_vec()),
            },
        }
    }

    /// Whether `key` is in the range.
    pub fn contains(&self, key: &[u8]) -> bool {
        match self {
            KeyRange::Key(k) => k.as_slice() == key,
            KeyRange::Range { start, end } => {
                start.as_slice() <= key && end.as_ref().is_none_or(|e| key < e.as_slice())
            }
        }
    }
}

/// The end of a range in the index: a key, or unbounded (sorts last).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum End {
    Key(Vec<u8>),
    Unbounded,
}

/// Watchers by key range.
#[derive(Debug, Default)]
pub struct WatcherIndex {
    keys: HashMap<Vec<u8>, BTreeSet<WatcherRef>>,
    ranges: BTreeMap<Vec<u8>, BTreeMap<End, BTreeSet<WatcherRef>>>,
    len: usize,
}

impl WatcherIndex {
    /// Watchers in the index.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn insert(&mut self, range: &KeyRange, w: WatcherRef) {
        let added = match range {
            KeyRange::Key(k) => self.keys.entry(k.clone()).or_default().insert(w),
            KeyRange::Range { start, end } => self
                .ranges
                .entry(start.clone())
                .or_default()
                .entry(end_of(end))
                .or_default()
                .insert(w),
        };
        if added {
            self.len += 1;
        }
    }

    pub fn remove(&mut self, range: &KeyRange, w: WatcherRef) {
        let removed = match range {
            KeyRange::Key(k) => match self.keys.get_mut(k) {
                Some(set) => {
                    let removed = set.remove(&w);
                    if set.is_empty() {
                        self.keys.remove(k);
                    }
                    removed
                }
                None => false,
            },
            KeyRange::Range { start, end } => match self.ranges.get_mut(start) {
                Some(ends) => {
                    let end = end_of(end);
                    let removed = ends.get_mut(&end).is_some_and(|set| set.remove(&w));
                    if ends.get(&end).is_some_and(BTreeSet::is_empty) {
                        ends.remove(&end);
                    }
                    if ends.is_empty() {
                        self.ranges.remove(start);
                    }
                    removed
                }
                None => false,
            },
        };
        if removed {
            self.len -= 1;
        }
    }

    /// Calls `f` for every watcher whose range holds `key`.
    pub fn matching(&self, key: &[u8], mut f: impl FnMut(WatcherRef)) {
        if let Some(set) = self.keys.get(key) {
            set.iter().copied().for_each(&mut f);
        }
        let above = (Bound::Excluded(End::Key(key.to_vec())), Bound::Unbounded);
        for (_, ends) in self
            .ranges
            .range::<[u8], _>((Bound::Unbounded, Bound::Included(key)))
        {
            for (_, set) in ends.range(above.clone()) {
                set.iter().copied().for_each(&mut f);
            }
        }
    }
}

fn end_of(end: &Option<Vec<u8>>) -> End {
    match end {
        Some(e) => End::Key(e.clone()),
        None => End::Unbounded,
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;

    fn w(id: i64) -> WatcherRef {
        WatcherRef { stream: 1, id }
    }

    fn matches(index: &WatcherIndex, key: &[u8]) -> Vec<i64> {
        let mut out = Vec::new();
        index.matching(key, |r| out.push(r.id));
        out.sort();
        out
    }

    #[test]
    fn ranges_follow_etcds_create_request_rules() {
        assert_eq!(KeyRange::of(b"", b""), KeyRange::Key(vec![0]));
        assert_eq!(KeyRange::of(b"a", b""), KeyRange::Key(b"a".to_vec()));
        assert!(KeyRange::of(b"a", b"\0").contains(b"zzz"));
        assert!(!KeyRange::of(b"b", b"\0").contains(b"a"));
        let r = KeyRange::of(b"a", b"c");
        assert!(r.contains(b"a") && r.contains(b"bz") && !r.contains(b"c"));
    }

    #[test]
    fn keys_ranges_and_open_ranges_match_and_unmatch() {
        let mut index = WatcherIndex::default();
        index.insert(&KeyRange::of(b"foo", b""), w(1));
        index.insert(&KeyRange::of(b"fo", b"fp"), w(2));
        index.insert(&KeyRange::of(b"fo", b"fp"), w(3));
        index.insert(&KeyRange::of(b"a", b"\0"), w(4));
        index.insert(&KeyRange::of(b"g", b"h"), w(5));
        assert_eq!(index.len(), 5);
        assert_eq!(matches(&index, b"foo"), vec![1, 2, 3, 4]);
        assert_eq!(matches(&index, b"fop"), vec![2, 3, 4]);
        assert_eq!(matches(&index, b"fp"), vec![4]);
        assert_eq!(matches(&index, b"g"), vec![4, 5]);
        assert_eq!(matches(&index, b"0"), Vec::<i64>::new());
        index.remove(&KeyRange::of(b"fo", b"fp"), w(2));
        index.remove(&KeyRange::of(b"foo", b""), w(1));
        index.remove(&KeyRange::of(b"foo", b""), w(1));
        assert_eq!(index.len(), 3);
        assert_eq!(matches(&index, b"foo"), vec![3, 4]);
    }

    /// The index agrees with checking every watcher's range, on random
    /// ranges, keys, inserts and removals.
    #[test]
    fn matching_equals_the_brute_force_answer() {
        let seed: u64 = rand::random();
        println!("index seed: {seed}");
        let mut rng = StdRng::seed_from_u64(seed);
        let key = |rng: &mut StdRng| -> Vec<u8> {
            (0..rng.gen_range(0..4))
                .map(|_| rng.gen_range(b'a'..b'f'))
                .collect()
        };
        let mut index = WatcherIndex::default();
        let mut all: Vec<(KeyRange, WatcherRef)> = Vec::new();
        for step in 0..2_000i64 {
            if !all.is_empty() && rng.gen_bool(0.3) {
                let (range, r) = all.swap_remove(rng.gen_range(0..all.len()));
                index.remove(&range, r);
            } else {
                let end = match rng.gen_range(0..3) {
                    0 => Vec::new(),
                    1 => vec![0],
                    _ => key(&mut rng),
                };
                let range = KeyRange::of(&key(&mut rng), &end);
                index.insert(&range, w(step));
                all.push((range, w(step)));
            }
            let probe = key(&mut rng);
            let mut expected: Vec<i64> = all
                .iter()
                .filter(|(range, _)| range.contains(&probe))
                .map(|(_, r)| r.id)
                .collect();
            expected.sort();
            assert_eq!(
                matches(&index, &probe),
                expected,
                "step {step}, key {probe:?}"
            );
            assert_eq!(index.len(), all.len());
        }
    }
}
