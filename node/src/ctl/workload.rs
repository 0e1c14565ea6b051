//! Workload generation for `oxcdctl bench`: which request number `i` is.
//!
//! 1. [`Plan::new`] validates a workload's options as etcd's benchmark does
//!    (positive totals and key space, `--txn-ops` no larger than the key
//!    space) and also checks that the largest key fits `--key-size`.
//! 2. Values are random bytes drawn once from the seed; every request of
//!    the run carries the same value, as in etcd's benchmark.
//! 3. [`Plan::request`] builds request `i` from `i` and the seed alone, so
//!    the key sequence is the same however the workers interleave.
//! 4. Keys use etcd's encoding ([`encode_key`]): the key index written with
//!    Go's `binary.PutVarint` into a zeroed `--key-size` buffer. A put with
//!    `--prefix` writes readable keys instead ([`prefixed_key`]): the prefix
//!    and the index in zero-padded decimal, so keys sort in index order, as
//!    Kubernetes' `/registry/<resource>/<namespace>/<name>` keys sort by name.
//!    Sequential puts start at `--seq-start`, so consecutive runs can fill a
//!    key space slice by slice without writing a key twice.
//! 5. A mixed request draws once from (seed, `i`) ([`draw`]): the draw picks
//!    the key, as for random puts, and a second hash of it picks a range or a
//!    put ([`is_read`]), so the mix too depends on the seed alone.

use proto::etcdserverpb::{PutRequest, RangeRequest, RequestOp, TxnRequest, request_op};
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

use super::CtlError;
use super::bench_args::{Consistency, MixedArgs, Workload};

/// One request of a workload.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Put(PutRequest),
    Range(RangeRequest),
    Txn(TxnRequest),
}

impl Op {
    /// Sends the request and discards the response.
    pub async fn send(self, kv: &mut super::client::Kv) -> Result<(), tonic::Status> {
        match self {
            Op::Put(r) => kv.put(r).await.map(drop),
            Op::Range(r) => kv.range(r).await.map(drop),
            Op::Txn(r) => kv.txn(r).await.map(drop),
        }
    }
}

/// A workload with its generated value: builds request `i` on demand.
#[derive(Debug, Clone)]
pub enum Plan {
    Put {
        keys: KeyForm,
        key_space_size: u64,
        /// The first key index when keys are sequential; `None`: random keys.
        seq_start: Option<u64>,
        value: Vec<u8>,
        seed: u64,
    },
    Range(RangeRequest),
    Txn {
        key_size: usize,
        key_space_size: u64,
        txn_ops: u64,
        value: Vec<u8>,
    },
    Mixed {
        key_size: usize,
        key_space_size: u64,
        read_ratio: f64,
        serializable: bool,
        value: Vec<u8>,
        seed: u64,
    },
}

impl Plan {
    /// Checks `workload`'s options and builds its plan; values are random
    /// bytes drawn from `seed`, as etcd's benchmark uses random values.
    pub fn new(workload: &Workload, seed: u64) -> Result<Self, CtlError> {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut random_bytes = |len: usize| {
            let mut v = vec![0u8; len];
            rng.fill_bytes(&mut v);
            v
        };
        match workload {
            Workload::Put(a) => {
                check_positive("--total", a.total)?;
                let keys = match &a.prefix {
                    Some(prefix) => {
                        check_positive("--key-space-size", a.key_space_size)?;
                        KeyForm::Prefixed {
                            prefix: prefix.clone().into_bytes(),
                            width: decimal_width(a.key_space_size - 1),
                        }
                    }
                    None => {
                        check_keys(a.key_size, a.key_space_size)?;
                        KeyForm::Varint {
                            key_size: a.key_size,
                        }
                    }
                };
                if a.seq_start > 0 && !a.sequential_keys {
                    return Err(CtlError::InvalidArgument(
                        "--seq-start needs --sequential-keys".into(),
                    ));
                }
                if a.seq_start >= a.key_space_size {
                    return Err(CtlError::InvalidArgument(format!(
                        "expected --seq-start below --key-space-size, got seq-start({}) key-space-size({})",
                        a.seq_start, a.key_space_size
                    )));
                }
                Ok(Plan::Put {
                    keys,
                    key_space_size: a.key_space_size,
                    seq_start: a.sequential_keys.then_some(a.seq_start),
                    value: random_bytes(a.val_size),
                    seed,
                })
            }
            Workload::Range(a) => {
                check_positive("--total", a.total)?;
                if a.key.is_empty() {
                    return Err(CtlError::InvalidArgument(
                        "range key must not be empty".into(),
                    ));
                }
                if a.limit < 0 {
                    return Err(CtlError::InvalidArgument(format!(
                        "expected non-negative --limit, got ({})",
                        a.limit
                    )));
                }
                Ok(Plan::Range(RangeRequest {
                    key: a.key.clone().into_bytes(),
                    range_end: a.end.clone().unwrap_or_default().into_bytes(),
                    limit: a.limit,
                    serializable: a.consistency == Consistency::Serializable,
                    count_only: a.count_only,
                    ..Default::default()
                }))
            }
            Workload::Txn(a) => {
                check_positive("--total", a.total)?;
                check_positive("--txn-ops", a.txn_ops)?;
                check_keys(a.key_size, a.key_space_size)?;
                if a.txn_ops > a.key_space_size {
                    return Err(CtlError::InvalidArgument(format!(
                        "expected --txn-ops no larger than --key-space-size, got txn-ops({}) key-space-size({})",
                        a.txn_ops, a.key_space_size
                    )));
                }
                Ok(Plan::Txn {
                    key_size: a.key_size,
                    key_space_size: a.key_space_size,
                    txn_ops: a.txn_ops,
                    value: random_bytes(a.val_size),
                })
            }
            Workload::Mixed(a) => {
                check_positive("--total", a.total)?;
                check_keys(a.key_size, a.key_space_size)?;
                if !(0.0..=1.0).contains(&a.read_ratio) {
                    return Err(CtlError::InvalidArgument(format!(
                        "expected --read-ratio between 0 and 1, got ({})",
                        a.read_ratio
                    )));
                }
                Ok(Plan::Mixed {
                    key_size: a.key_size,
                    key_space_size: a.key_space_size,
                    read_ratio: a.read_ratio,
                    serializable: a.consistency == Consistency::Serializable,
                    value: random_bytes(a.val_size),
                    seed,
                })
            }
        }
    }

    /// Request number `i`. Put keys are `(seq-start + i) % key-space-size`
    /// with `--sequential-keys`, otherwise a hash of (seed, i) in the key space;
    /// txn `i` puts the `txn-ops` consecutive keys after `i * txn-ops`
    /// (distinct within one txn, as etcd rejects duplicate keys); mixed `i`
    /// is a range or a put of the key a random put `i` would write.
    pub fn request(&self, i: u64) -> Op {
        match self {
            Plan::Put {
                keys,
                key_space_size,
                seq_start,
                value,
                seed,
            } => {
                let idx = match seq_start {
                    // In u128: start and i are each below 2^64, their sum is not.
                    Some(start) => {
                        ((u128::from(*start) + u128::from(i)) % u128::from(*key_space_size)) as u64
                    }
                    None => draw(*seed, i) % key_space_size,
                };
                Op::Put(PutRequest {
                    key: keys.key(idx),
                    value: value.clone(),
                    ..Default::default()
                })
            }
            Plan::Range(r) => Op::Range(r.clone()),
            Plan::Txn {
                key_size,
                key_space_size,
                txn_ops,
                value,
            } => {
                let success = (0..*txn_ops)
                    .map(|j| RequestOp {
                        request: Some(request_op::Request::RequestPut(PutRequest {
                            key: encode_key(
                                i.wrapping_mul(*txn_ops).wrapping_add(j) % key_space_size,
                                *key_size,
                            ),
                            value: value.clone(),
                            ..Default::default()
                        })),
                    })
                    .collect();
                Op::Txn(TxnRequest {
                    success,
                    ..Default::default()
                })
            }
            Plan::Mixed {
                key_size,
                key_space_size,
                read_ratio,
                serializable,
                value,
                seed,
            } => {
                let d = draw(*seed, i);
                let key = encode_key(d % key_space_size, *key_size);
                if is_read(*read_ratio, splitmix64(d)) {
                    Op::Range(RangeRequest {
                        key,
                        serializable: *serializable,
                        ..Default::default()
                    })
                } else {
                    Op::Put(PutRequest {
                        key,
                        value: value.clone(),
                        ..Default::default()
                    })
                }
            }
        }
    }

    /// Workload name and parameters in flag form, for the JSON summary.
    pub fn describe(&self, workload: &Workload) -> (String, String) {
        match workload {
            Workload::Put(a) => (
                "put".into(),
                format!(
                    "key-size={} val-size={} key-space-size={}{}{}{}",
                    a.key_size,
                    a.val_size,
                    a.key_space_size,
                    if a.sequential_keys {
                        " sequential-keys"
                    } else {
                        ""
                    },
                    if a.seq_start > 0 {
                        format!(" seq-start={}", a.seq_start)
                    } else {
                        String::new()
                    },
                    a.prefix
                        .as_ref()
                        .map(|p| format!(" prefix={p:?}"))
                        .unwrap_or_default()
                ),
            ),
            Workload::Range(a) => (
                "range".into(),
                format!(
                    "key={:?} end={:?} consistency={} limit={} count-only={}",
                    a.key,
                    a.end.clone().unwrap_or_default(),
                    consistency_flag(a.consistency),
                    a.limit,
                    a.count_only
                ),
            ),
            Workload::Txn(a) => (
                "txn".into(),
                format!(
                    "txn-ops={} key-size={} val-size={} key-space-size={}",
                    a.txn_ops, a.key_size, a.val_size, a.key_space_size
                ),
            ),
            Workload::Mixed(MixedArgs {
                read_ratio,
                consistency,
                key_size,
                val_size,
                key_space_size,
                ..
            }) => (
                "mixed".into(),
                format!(
                    "read-ratio={read_ratio} consistency={} key-size={key_size} \
                     val-size={val_size} key-space-size={key_space_size}",
                    consistency_flag(*consistency)
                ),
            ),
        }
    }
}

/// `--consistency`'s value for `c`.
fn consistency_flag(c: Consistency) -> &'static str {
    match c {
        Consistency::Linearizable => "l",
        Consistency::Serializable => "s",
    }
}

/// The random draw of request `i`: a hash of (seed, i), the same however
/// the workers interleave.
fn draw(seed: u64, i: u64) -> u64 {
    splitmix64(seed ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

/// Whether a mixed request with random bits `bits` is a range: its top 53
/// bits, read as a fraction in [0, 1), fall below `read_ratio` (so 0 never
/// reads and 1 always does).
fn is_read(read_ratio: f64, bits: u64) -> bool {
    const UNIT: f64 = (1u64 << 53) as f64;
    ((bits >> 11) as f64 / UNIT) < read_ratio
}

fn check_positive(flag: &str, v: u64) -> Result<(), CtlError> {
    if v == 0 {
        return Err(CtlError::InvalidArgument(format!(
            "expected positive {flag}, got ({v})"
        )));
    }
    Ok(())
}

/// The key space must be non-empty and its largest key must fit in
/// `key_size` bytes of etcd's varint encoding.
fn check_keys(key_size: usize, key_space_size: u64) -> Result<(), CtlError> {
    check_positive("--key-space-size", key_space_size)?;
    let needed = zigzag_varint(key_space_size - 1).len();
    if key_size < needed {
        return Err(CtlError::InvalidArgument(format!(
            "--key-size {key_size} is too small for --key-space-size {key_space_size} (needs at least {needed} bytes)"
        )));
    }
    Ok(())
}

/// How a put's key index becomes its key.
#[derive(Debug, Clone, PartialEq)]
pub enum KeyForm {
    /// etcd's benchmark key ([`encode_key`]) of `key_size` bytes.
    Varint { key_size: usize },
    /// `prefix` and the index in decimal, zero-padded to `width` digits
    /// ([`prefixed_key`]).
    Prefixed { prefix: Vec<u8>, width: usize },
}

impl KeyForm {
    /// The key of index `idx`.
    pub fn key(&self, idx: u64) -> Vec<u8> {
        match self {
            KeyForm::Varint { key_size } => encode_key(idx, *key_size),
            KeyForm::Prefixed { prefix, width } => prefixed_key(prefix, idx, *width),
        }
    }
}

/// `prefix` followed by `idx` in decimal, zero-padded to `width` digits:
/// keys of one width sort in index order.
pub fn prefixed_key(prefix: &[u8], idx: u64, width: usize) -> Vec<u8> {
    let mut key = prefix.to_vec();
    key.extend_from_slice(format!("{idx:0width$}").as_bytes());
    key
}

/// Number of decimal digits of `n` (1 for 0).
fn decimal_width(n: u64) -> usize {
    n.checked_ilog10().map_or(1, |l| l as usize + 1)
}

/// etcd's benchmark key: `binary.PutVarint(k, idx)` into a zeroed
/// `key_size`-byte buffer (zigzag, then base-128 little-endian groups).
pub fn encode_key(idx: u64, key_size: usize) -> Vec<u8> {
    let mut key = vec![0u8; key_size];
    let varint = zigzag_varint(idx);
    let n = varint.len().min(key_size);
    key[..n].copy_from_slice(&varint[..n]);
    key
}

fn zigzag_varint(idx: u64) -> Vec<u8> {
    // Indices stay below 2^63 (the key space is a u64 count of keys that
    // also had to fit a key size), so the shift cannot lose the sign bit.
    let mut v = idx << 1;
    let mut out = Vec::with_capacity(10);
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
    out
}

/// A well-mixed 64-bit hash (SplitMix64's finalizer).
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::ctl::bench_args::{MixedArgs, PutArgs, RangeArgs, TxnArgs};

    fn put_args(total: u64, kss: u64, sequential: bool) -> Workload {
        Workload::Put(PutArgs {
            total,
            key_size: 8,
            val_size: 16,
            key_space_size: kss,
            sequential_keys: sequential,
            seq_start: 0,
            prefix: None,
        })
    }

    fn put_key(op: Op) -> Vec<u8> {
        match op {
            Op::Put(p) => p.key,
            other => panic!("expected a put, got {other:?}"),
        }
    }

    #[test]
    fn keys_use_etcd_zigzag_varint_padded_to_key_size() {
        assert_eq!(encode_key(0, 4), vec![0, 0, 0, 0]);
        assert_eq!(encode_key(1, 4), vec![2, 0, 0, 0]);
        assert_eq!(encode_key(63, 4), vec![126, 0, 0, 0]);
        assert_eq!(encode_key(64, 4), vec![0x80, 1, 0, 0]);
        assert_eq!(encode_key(99_999, 8), vec![0xBE, 0x9A, 0x0C, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn key_size_must_hold_the_key_space() {
        assert!(check_keys(1, 64).is_ok());
        assert!(check_keys(1, 65).is_err());
        assert!(check_keys(3, 100_000).is_ok());
        assert!(check_keys(2, 100_000).is_err());
        assert!(check_keys(8, 0).is_err());
    }

    #[test]
    fn sequential_put_keys_cycle_the_key_space() {
        let plan = Plan::new(&put_args(10, 3, true), 1).expect("valid plan");
        let keys: Vec<Vec<u8>> = (0..6).map(|i| put_key(plan.request(i))).collect();
        let want: Vec<Vec<u8>> = [0, 1, 2, 0, 1, 2]
            .iter()
            .map(|&k| encode_key(k, 8))
            .collect();
        assert_eq!(keys, want);
    }

    #[test]
    fn sequential_slices_from_seq_start_write_each_key_once() {
        // Ten slices of 7 over a space of 70, as SUITE=scale fills the store.
        let mut seen = HashSet::new();
        for slice in 0..10u64 {
            let Workload::Put(mut a) = put_args(7, 70, true) else {
                unreachable!("put_args builds a put")
            };
            a.seq_start = slice * 7;
            let plan = Plan::new(&Workload::Put(a), 1).expect("valid plan");
            for i in 0..7 {
                let key = put_key(plan.request(i));
                assert_eq!(key, encode_key(slice * 7 + i, 8), "slice {slice} put {i}");
                assert!(seen.insert(key), "slice {slice} put {i} wrote a key twice");
            }
        }
        assert_eq!(seen.len(), 70);
        // Past the end of the space the keys wrap around to index 0.
        let Workload::Put(mut a) = put_args(3, 70, true) else {
            unreachable!("put_args builds a put")
        };
        a.seq_start = 69;
        let plan = Plan::new(&Workload::Put(a), 1).expect("valid plan");
        assert_eq!(put_key(plan.request(1)), encode_key(0, 8));
    }

    #[test]
    fn seq_start_must_be_sequential_and_inside_the_key_space() {
        for (sequential, start, kss) in [(false, 1, 10), (true, 10, 10), (true, 11, 10)] {
            let Workload::Put(mut a) = put_args(1, kss, sequential) else {
                unreachable!("put_args builds a put")
            };
            a.seq_start = start;
            assert!(
                matches!(
                    Plan::new(&Workload::Put(a), 0),
                    Err(CtlError::InvalidArgument(_))
                ),
                "sequential {sequential} seq-start {start} key-space-size {kss} accepted"
            );
        }
    }

    #[test]
    fn prefixed_keys_are_zero_padded_decimal_and_sort_by_index() {
        assert_eq!(prefixed_key(b"p/", 42, 5), b"p/00042".to_vec());
        assert_eq!(prefixed_key(b"p/", 123_456, 3), b"p/123456".to_vec());
        assert_eq!(decimal_width(0), 1);
        assert_eq!(decimal_width(9), 1);
        assert_eq!(decimal_width(10), 2);
        assert_eq!(decimal_width(99_999), 5);
        assert_eq!(decimal_width(u64::MAX), 20);

        let Workload::Put(mut a) = put_args(100_000, 100_000, true) else {
            unreachable!("put_args builds a put")
        };
        a.prefix = Some("/registry/pods/ns/pod-".into());
        // --key-size is unused: 8 bytes could not hold these keys.
        a.key_size = 1;
        let plan = Plan::new(&Workload::Put(a), 3).expect("valid plan");
        let keys: Vec<Vec<u8>> = (0..100_000).map(|i| put_key(plan.request(i))).collect();
        assert_eq!(keys[0], b"/registry/pods/ns/pod-00000".to_vec());
        assert_eq!(keys[99_999], b"/registry/pods/ns/pod-99999".to_vec());
        assert!(
            keys.windows(2).all(|w| w[0] < w[1]),
            "keys do not sort in index order"
        );
    }

    #[test]
    fn random_put_keys_are_seeded_and_stay_in_the_key_space() {
        let seed = 42;
        println!("seed {seed}");
        let a = Plan::new(&put_args(1000, 100, false), seed).expect("valid plan");
        let b = Plan::new(&put_args(1000, 100, false), seed).expect("valid plan");
        let space: HashSet<Vec<u8>> = (0..100).map(|k| encode_key(k, 8)).collect();
        let mut seen = HashSet::new();
        for i in 0..1000 {
            let key = put_key(a.request(i));
            assert_eq!(
                key,
                put_key(b.request(i)),
                "request {i} differs for one seed"
            );
            assert!(space.contains(&key), "request {i} left the key space");
            seen.insert(key);
        }
        // 1000 draws over 100 keys miss a given key with probability ~4e-5.
        assert!(seen.len() > 90, "only {} distinct keys", seen.len());
        let Op::Put(p) = a.request(0) else {
            panic!("expected a put");
        };
        assert_eq!(p.value.len(), 16);
    }

    #[test]
    fn txn_puts_distinct_consecutive_keys() {
        let w = Workload::Txn(TxnArgs {
            total: 10,
            txn_ops: 3,
            key_size: 8,
            val_size: 4,
            key_space_size: 5,
        });
        let plan = Plan::new(&w, 9).expect("valid plan");
        let Op::Txn(t) = plan.request(1) else {
            panic!("expected a txn");
        };
        assert!(t.compare.is_empty() && t.failure.is_empty());
        let keys: Vec<Vec<u8>> = t
            .success
            .into_iter()
            .map(|op| match op.request {
                Some(request_op::Request::RequestPut(p)) => p.key,
                other => panic!("expected a put op, got {other:?}"),
            })
            .collect();
        // Request 1 covers indices 3, 4, 5 -> 3, 4, 0 in a space of 5.
        assert_eq!(
            keys,
            vec![encode_key(3, 8), encode_key(4, 8), encode_key(0, 8)]
        );
    }

    #[test]
    fn txn_ops_larger_than_key_space_is_rejected() {
        let w = Workload::Txn(TxnArgs {
            total: 1,
            txn_ops: 4,
            key_size: 8,
            val_size: 4,
            key_space_size: 3,
        });
        assert!(matches!(
            Plan::new(&w, 0),
            Err(CtlError::InvalidArgument(_))
        ));
    }

    #[test]
    fn range_request_carries_the_options() {
        let w = Workload::Range(RangeArgs {
            key: "a".into(),
            end: Some("b".into()),
            consistency: Consistency::Serializable,
            total: 5,
            limit: 10,
            count_only: true,
        });
        let plan = Plan::new(&w, 0).expect("valid plan");
        let want = RangeRequest {
            key: b"a".to_vec(),
            range_end: b"b".to_vec(),
            limit: 10,
            serializable: true,
            count_only: true,
            ..Default::default()
        };
        assert_eq!(plan.request(3), Op::Range(want));
    }

    fn mixed_args(read_ratio: f64, consistency: Consistency, kss: u64) -> Workload {
        Workload::Mixed(MixedArgs {
            read_ratio,
            consistency,
            total: 10,
            key_size: 8,
            val_size: 16,
            key_space_size: kss,
        })
    }

    #[test]
    fn read_choice_follows_the_ratio_at_its_ends() {
        for bits in [0, 1, 1 << 11, u64::MAX / 2, u64::MAX - 1, u64::MAX] {
            assert!(!is_read(0.0, bits), "ratio 0 read for bits {bits:#x}");
            assert!(is_read(1.0, bits), "ratio 1 wrote for bits {bits:#x}");
        }
        // Bits 0 is the fraction 0, u64::MAX the largest fraction below 1.
        assert!(is_read(f64::MIN_POSITIVE, 0));
        assert!(!is_read(0.999_999, u64::MAX));
        // The top half of the bits reads at a ratio above one half only.
        assert!(!is_read(0.5, 1 << 63));
        assert!(is_read(0.5, (1 << 63) - 1));
    }

    #[test]
    fn mixed_requests_are_seeded_and_read_at_the_ratio() {
        let seed = 7;
        println!("seed {seed}");
        let a =
            Plan::new(&mixed_args(0.9, Consistency::Linearizable, 100), seed).expect("valid plan");
        let b =
            Plan::new(&mixed_args(0.9, Consistency::Linearizable, 100), seed).expect("valid plan");
        let space: HashSet<Vec<u8>> = (0..100).map(|k| encode_key(k, 8)).collect();
        let (mut reads, mut puts) = (0u32, 0u32);
        for i in 0..10_000 {
            let op = a.request(i);
            assert_eq!(op, b.request(i), "request {i} differs for one seed");
            match op {
                Op::Range(r) => {
                    assert!(space.contains(&r.key), "range {i} left the key space");
                    assert_eq!(
                        r,
                        RangeRequest {
                            key: r.key.clone(),
                            ..Default::default()
                        },
                        "range {i} is not a linearizable single-key read"
                    );
                    reads += 1;
                }
                Op::Put(p) => {
                    assert!(space.contains(&p.key), "put {i} left the key space");
                    assert_eq!(p.value.len(), 16);
                    puts += 1;
                }
                other => panic!("request {i}: expected a range or a put, got {other:?}"),
            }
        }
        // Binomial(10000, 0.9): the standard deviation is 30 reads, so 8800..9200
        // is more than six of them either side.
        assert!((8800..=9200).contains(&reads), "{reads} reads, {puts} puts");
        assert_eq!(reads + puts, 10_000);
    }

    #[test]
    fn mixed_reads_carry_the_consistency_and_ends_of_the_ratio_hold() {
        let seed = 11;
        println!("seed {seed}");
        let serializable =
            Plan::new(&mixed_args(1.0, Consistency::Serializable, 50), seed).expect("valid plan");
        let writes =
            Plan::new(&mixed_args(0.0, Consistency::Serializable, 50), seed).expect("valid plan");
        for i in 0..200 {
            let Op::Range(r) = serializable.request(i) else {
                panic!("request {i} of an all-read mix is not a range");
            };
            assert!(r.serializable && r.range_end.is_empty());
            // The same draw picks the same key whether it reads or writes.
            assert_eq!(put_key(writes.request(i)), r.key, "request {i}");
        }
    }

    #[test]
    fn read_ratio_outside_zero_to_one_is_rejected() {
        for ratio in [-0.1, 1.5, f64::NAN] {
            assert!(
                matches!(
                    Plan::new(&mixed_args(ratio, Consistency::Linearizable, 10), 0),
                    Err(CtlError::InvalidArgument(_))
                ),
                "ratio {ratio} accepted"
            );
        }
    }
}
