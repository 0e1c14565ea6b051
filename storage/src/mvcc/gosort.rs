//! Go's `sort.Sort` (Go 1.19, pattern-defeating quicksort), reproduced so
//! that Range results sorted by a non-unique target (VERSION, CREATE, MOD,
//! VALUE) come back in exactly the order etcd 3.4 returns: the Debian etcd
//! 3.4.23 build uses Go 1.19, whose `sort.Sort` is unstable but
//! deterministic. Ties then land where etcd puts them, so clients that
//! compare listings byte for byte see no difference.
//!
//! The algorithm follows Go's `sort/zsortinterface.go` step for step,
//! including its quirks (the shift loop of `partial_insertion_sort` runs
//! down to index 1 rather than `a + 1`; `break_patterns` seeds its xorshift
//! with the length).
//!
//! The test `matches_go_sort_sort_on_ties` holds the port to Go's own output:
//! `testdata/gosort/vectors.txt`, recorded by a Go 1.19 program beside it
//! (its README says how to regenerate them).

/// Sorts `v` the way Go's `sort.Sort` does with `less` as `Less(i, j)`.
pub fn go_sort_by<T>(v: &mut [T], less: impl Fn(&T, &T) -> bool) {
    let n = v.len();
    if n <= 1 {
        return;
    }
    let mut s = Sorter { v, less };
    let limit = bits_len(n);
    s.pdqsort(0, n, limit);
}

fn bits_len(n: usize) -> usize {
    (usize::BITS - n.leading_zeros()) as usize
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Hint {
    Unknown,
    Increasing,
    Decreasing,
}

struct Sorter<'a, T, F> {
    v: &'a mut [T],
    less: F,
}

impl<T, F: Fn(&T, &T) -> bool> Sorter<'_, T, F> {
    fn lt(&self, i: usize, j: usize) -> bool {
        (self.less)(&self.v[i], &self.v[j])
    }

    fn swap(&mut self, i: usize, j: usize) {
        self.v.swap(i, j);
    }

    fn insertion_sort(&mut self, a: usize, b: usize) {
        for i in a + 1..b {
            let mut j = i;
            while j > a && self.lt(j, j - 1) {
                self.swap(j, j - 1);
                j -= 1;
            }
        }
    }

    fn sift_down(&mut self, lo: usize, hi: usize, first: usize) {
        let mut root = lo;
        loop {
            let mut child = 2 * root + 1;
            if child >= hi {
                return;
            }
            if child + 1 < hi && self.lt(first + child, first + child + 1) {
                child += 1;
            }
            if !self.lt(first + root, first + child) {
                return;
            }
            self.swap(first + root, first + child);
            root = child;
        }
    }

    fn heap_sort(&mut self, a: usize, b: usize) {
        let first = a;
        let hi = b - a;
        for i in (0..=(hi - 1) / 2).rev() {
            self.sift_down(i, hi, first);
        }
        for i in (0..hi).rev() {
            self.swap(first, first + i);
            self.sift_down(0, i, first);
        }
    }

    fn pdqsort(&mut self, mut a: usize, mut b: usize, mut limit: usize) {
        const MAX_INSERTION: usize = 12;
        let mut was_balanced = true;
        let mut was_partitioned = true;
        loop {
            let length = b - a;
            if length <= MAX_INSERTION {
                self.insertion_sort(a, b);
                return;
            }
            if limit == 0 {
                self.heap_sort(a, b);
                return;
            }
            if !was_balanced {
                self.break_patterns(a, b);
                limit -= 1;
            }
            let (mut pivot, mut hint) = self.choose_pivot(a, b);
            if hint == Hint::Decreasing {
                self.reverse_range(a, b);
                pivot = (b - 1) - (pivot - a);
                hint = Hint::Increasing;
            }
            if was_balanced
                && was_partitioned
                && hint == Hint::Increasing
                && self.partial_insertion_sort(a, b)
            {
                return;
            }
            if a > 0 && !self.lt(a - 1, pivot) {
                a = self.partition_equal(a, b, pivot);
                continue;
            }
            let (mid, already) = self.partition(a, b, pivot);
            was_partitioned = already;
            let (left, right) = (mid - a, b - mid);
            let threshold = length / 8;
            if left < right {
                was_balanced = left >= threshold;
                self.pdqsort(a, mid, limit);
                a = mid + 1;
            } else {
                was_balanced = right >= threshold;
                self.pdqsort(mid + 1, b, limit);
                b = mid;
            }
        }
    }

    // Indices are kept as isize where Go lets `j` run below `a`.
    fn partition(&mut self, a: usize, b: usize, pivot: usize) -> (usize, bool) {
        self.swap(a, pivot);
        let (mut i, mut j) = (a as isize + 1, b as isize - 1);
        while i <= j && self.lt(i as usize, a) {
            i += 1;
        }
        while i <= j && !self.lt(j as usize, a) {
            j -= 1;
        }
        if i > j {
            self.swap(j as usize, a);
            return (j as usize, true);
        }
        self.swap(i as usize, j as usize);
        i += 1;
        j -= 1;
        loop {
            while i <= j && self.lt(i as usize, a) {
                i += 1;
            }
            while i <= j && !self.lt(j as usize, a) {
                j -= 1;
            }
            if i > j {
                break;
            }
            self.swap(i as usize, j as usize);
            i += 1;
            j -= 1;
        }
        self.swap(j as usize, a);
        (j as usize, false)
    }

    fn partition_equal(&mut self, a: usize, b: usize, pivot: usize) -> usize {
        self.swap(a, pivot);
        let (mut i, mut j) = (a as isize + 1, b as isize - 1);
        loop {
            while i <= j && !self.lt(a, i as usize) {
                i += 1;
            }
            while i <= j && self.lt(a, j as usize) {
                j -= 1;
            }
            if i > j {
                break;
            }
            self.swap(i as usize, j as usize);
            i += 1;
            j -= 1;
        }
        i as usize
    }

    fn partial_insertion_sort(&mut self, a: usize, b: usize) -> bool {
        const MAX_STEPS: usize = 5;
        const SHORTEST_SHIFTING: usize = 50;
        let mut i = a + 1;
        for _ in 0..MAX_STEPS {
            while i < b && !self.lt(i, i - 1) {
                i += 1;
            }
            if i == b {
                return true;
            }
            if b - a < SHORTEST_SHIFTING {
                return false;
            }
            self.swap(i, i - 1);
            if i - a >= 2 {
                let mut j = i - 1;
                while j >= 1 {
                    if !self.lt(j, j - 1) {
                        break;
                    }
                    self.swap(j, j - 1);
                    j -= 1;
                }
            }
            if b - i >= 2 {
                for j in i + 1..b {
                    if !self.lt(j, j - 1) {
                        break;
                    }
                    self.swap(j, j - 1);
                }
            }
        }
        false
    }

    fn break_patterns(&mut self, a: usize, b: usize) {
        let length = b - a;
        if length >= 8 {
            let mut random = length as u64;
            let modulus = 1usize << bits_len(length);
            let start = a + (length / 4) * 2 - 1;
            for idx in start..=a + (length / 4) * 2 + 1 {
                random ^= random << 13;
                random ^= random >> 17;
                random ^= random << 5;
                let mut other = (random as usize) & (modulus - 1);
                if other >= length {
                    other -= length;
                }
                self.swap(idx, a + other);
            }
        }
    }

    fn choose_pivot(&mut self, a: usize, b: usize) -> (usize, Hint) {
        const SHORTEST_NINTHER: usize = 50;
        const MAX_SWAPS: usize = 4 * 3;
        let l = b - a;
        let mut swaps = 0;
        let mut i = a + l / 4;
        let mut j = a + l / 4 * 2;
        let mut k = a + l / 4 * 3;
        if l >= 8 {
            if l >= SHORTEST_NINTHER {
                i = self.median(i - 1, i, i + 1, &mut swaps);
                j = self.median(j - 1, j, j + 1, &mut swaps);
                k = self.median(k - 1, k, k + 1, &mut swaps);
            }
            j = self.median(i, j, k, &mut swaps);
        }
        match swaps {
            0 => (j, Hint::Increasing),
            MAX_SWAPS => (j, Hint::Decreasing),
            _ => (j, Hint::Unknown),
        }
    }

    fn order2(&self, a: usize, b: usize, swaps: &mut usize) -> (usize, usize) {
        if self.lt(b, a) {
            *swaps += 1;
            (b, a)
        } else {
            (a, b)
        }
    }

    fn median(&self, a: usize, b: usize, c: usize, swaps: &mut usize) -> usize {
        let (a, b) = self.order2(a, b, swaps);
        let (b, _c) = self.order2(b, c, swaps);
        let (_a, b) = self.order2(a, b, swaps);
        b
    }

    fn reverse_range(&mut self, a: usize, b: usize) {
        let (mut i, mut j) = (a, b - 1);
        while i < j {
            self.swap(i, j);
            i += 1;
            j -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorts_like_any_sort_on_distinct_values() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for n in [0usize, 1, 2, 7, 12, 13, 49, 50, 51, 200, 1000] {
            let mut v: Vec<u64> = (0..n)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed
                })
                .collect();
            let mut want = v.clone();
            want.sort_unstable();
            go_sort_by(&mut v, |a, b| a < b);
            assert_eq!(v, want, "n = {n}");
        }
    }

    #[test]
    fn descending_and_patterned_inputs_sort() {
        let mut v: Vec<u32> = (0..500).rev().collect();
        go_sort_by(&mut v, |a, b| a < b);
        assert!(v.windows(2).all(|w| w[0] <= w[1]));
        let mut v: Vec<u32> = (0..500).map(|i| (i * 7919) % 13).collect();
        go_sort_by(&mut v, |a, b| a < b);
        assert!(v.windows(2).all(|w| w[0] <= w[1]));
    }

    /// Knuth's MMIX LCG, exactly as `testdata/gosort/main.go` writes it.
    struct Lcg(u64);

    impl Lcg {
        fn next(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            self.0 >> 33
        }
    }

    /// The keys of one case, as `keys` in `testdata/gosort/main.go`.
    fn keys(pattern: &str, n: usize, seed: u64) -> Vec<i64> {
        let mut rng = Lcg(seed);
        let mut out: Vec<i64> = (0..n)
            .map(|i| match pattern {
                "random" => (rng.next() % n as u64) as i64,
                "few" => (rng.next() % 4) as i64,
                "equal" => 0,
                "sorted" => (i / 4) as i64,
                "reversed" => ((n - 1 - i) / 4) as i64,
                "sawtooth" => (i % 10) as i64,
                "pipe" => (i.min(n - 1 - i) / 2) as i64,
                "nearly" => (i / 2) as i64,
                other => panic!("unknown pattern {other}"),
            })
            .collect();
        if pattern == "nearly" {
            for _ in 0..n / 20 + 1 {
                let (a, b) = (rng.next() % n as u64, rng.next() % n as u64);
                out.swap(a as usize, b as usize);
            }
        }
        out
    }

    /// FNV-1a 64 over the tags as little-endian u32s, as `fnv64` in Go.
    fn fnv64(tags: &[u32]) -> u64 {
        let mut h = 0xcbf2_9ce4_8422_2325u64;
        for byte in tags.iter().flat_map(|t| t.to_le_bytes()) {
            h ^= u64::from(byte);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        h
    }

    /// Go's own output (`testdata/gosort/vectors.txt`, made by Go 1.19's
    /// `sort.Sort`): every case must come out in exactly Go's tie order.
    #[test]
    fn matches_go_sort_sort_on_ties() {
        let vectors = include_str!("testdata/gosort/vectors.txt");
        let mut cases = 0;
        for line in vectors.lines().filter(|l| !l.starts_with('#')) {
            let fields: Vec<&str> = line.split(' ').collect();
            let [pattern, n, seed, order, hash, listed] = fields[..] else {
                panic!("bad vector line: {line}");
            };
            let n: usize = n.parse().unwrap();
            let seed: u64 = seed.parse().unwrap();
            let want_hash = u64::from_str_radix(hash, 16).unwrap();
            let mut v: Vec<(i64, u32)> = keys(pattern, n, seed).into_iter().zip(0u32..).collect();
            match order {
                "asc" => go_sort_by(&mut v, |a, b| a.0 < b.0),
                "desc" => go_sort_by(&mut v, |a, b| b.0 < a.0),
                other => panic!("unknown order {other}"),
            }
            let tags: Vec<u32> = v.iter().map(|(_, t)| *t).collect();
            let case = format!("{pattern} n={n} seed={seed} {order}");
            if listed != "-" {
                let want: Vec<u32> = listed.split(',').map(|t| t.parse().unwrap()).collect();
                assert_eq!(tags, want, "{case}");
            }
            assert_eq!(
                fnv64(&tags),
                want_hash,
                "{case}: tag order differs from Go's"
            );
            cases += 1;
        }
        assert_eq!(cases, 198, "every recorded case was checked");
    }

    #[test]
    fn ties_in_short_inputs_keep_their_order_as_go_does() {
        // Go's insertion sort (n <= 12) is stable.
        let mut v = vec![(1, 'a'), (0, 'b'), (1, 'c'), (0, 'd')];
        go_sort_by(&mut v, |a, b| a.0 < b.0);
        assert_eq!(v, vec![(0, 'b'), (0, 'd'), (1, 'a'), (1, 'c')]);
    }
}
