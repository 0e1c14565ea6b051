// Command gosort prints how Go's sort.Sort orders ties, as test vectors for
// storage/src/mvcc/gosort.rs (see README.md beside this file).
//
//  1. Each case builds n (key, tag) pairs: tag = position, key from a
//     pattern with many ties, driven by a 64-bit LCG that the Rust test
//     implements identically.
//  2. The pairs are sorted with sort.Sort by key only (ascending), and with
//     sort.Sort(sort.Reverse(...)) (descending), as etcd sorts Range results.
//  3. One line per (case, order): pattern, n, seed, order, the FNV-1a 64 hash
//     of the resulting tags, and the tags themselves when n <= 100.
package main

import (
	"fmt"
	"runtime"
	"sort"
	"strings"
)

type pair struct {
	key int64
	tag uint32
}

type byKey []pair

func (p byKey) Len() int           { return len(p) }
func (p byKey) Less(i, j int) bool { return p[i].key < p[j].key }
func (p byKey) Swap(i, j int)      { p[i], p[j] = p[j], p[i] }

// lcg is Knuth's MMIX generator; next returns the high 31 bits.
type lcg uint64

func (r *lcg) next() uint64 {
	*r = *r*6364136223846793005 + 1442695040888963407
	return uint64(*r) >> 33
}

func keys(pattern string, n int, seed uint64) []int64 {
	rng := lcg(seed)
	out := make([]int64, n)
	for i := range out {
		switch pattern {
		case "random":
			out[i] = int64(rng.next() % uint64(n))
		case "few":
			out[i] = int64(rng.next() % 4)
		case "equal":
			out[i] = 0
		case "sorted":
			out[i] = int64(i / 4)
		case "reversed":
			out[i] = int64((n - 1 - i) / 4)
		case "sawtooth":
			out[i] = int64(i % 10)
		case "pipe":
			m := i
			if n-1-i < m {
				m = n - 1 - i
			}
			out[i] = int64(m / 2)
		case "nearly":
			out[i] = int64(i / 2)
		default:
			panic(pattern)
		}
	}
	if pattern == "nearly" {
		for s := 0; s < n/20+1; s++ {
			a, b := rng.next()%uint64(n), rng.next()%uint64(n)
			out[a], out[b] = out[b], out[a]
		}
	}
	return out
}

func fnv64(tags []uint32) uint64 {
	h := uint64(0xcbf29ce484222325)
	for _, t := range tags {
		for k := 0; k < 4; k++ {
			h ^= uint64(byte(t >> (8 * k)))
			h *= 0x100000001b3
		}
	}
	return h
}

func main() {
	fmt.Printf("# Go %s sort.Sort on (key, tag) pairs by key; see README.md\n", runtime.Version())
	fmt.Println("# pattern n seed order fnv1a64(tags) tags(n<=100, else -)")
	patterns := []string{"random", "few", "equal", "sorted", "reversed", "sawtooth", "pipe", "nearly"}
	sizes := []int{13, 20, 49, 50, 51, 100, 257, 1000, 5000}
	for _, pattern := range patterns {
		for _, n := range sizes {
			for _, seed := range []uint64{1, 2} {
				if seed == 2 && pattern != "random" && pattern != "few" && pattern != "nearly" {
					continue
				}
				ks := keys(pattern, n, seed)
				for _, order := range []string{"asc", "desc"} {
					data := make(byKey, n)
					for i, k := range ks {
						data[i] = pair{key: k, tag: uint32(i)}
					}
					if order == "asc" {
						sort.Sort(data)
					} else {
						sort.Sort(sort.Reverse(data))
					}
					tags := make([]uint32, n)
					for i, p := range data {
						tags[i] = p.tag
					}
					listed := "-"
					if n <= 100 {
						parts := make([]string, n)
						for i, t := range tags {
							parts[i] = fmt.Sprint(t)
						}
						listed = strings.Join(parts, ",")
					}
					fmt.Printf("%s %d %d %s %016x %s\n", pattern, n, seed, order, fnv64(tags), listed)
				}
			}
		}
	}
}
