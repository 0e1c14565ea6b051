//! Seeded random KV operations for the differential test.
//!
//! 1. [`Generator::new`] takes a seed; [`Generator::next_op`] draws the next
//!    [`Op`] (Put, Range, DeleteRange, Txn, Compact, or a bad input) over a
//!    small key space of 20 keys with shared prefixes and `\x00`/`\xff` bytes,
//!    so ranges, deletes and txn compares hit the same keys again and again.
//! 2. [`Op::execute`] sends the op over a `KvClient` and returns an
//!    [`Outcome`]: the response, or the error as (gRPC code, message).
//! 3. [`Outcome::scrub`] zeroes the header fields that legitimately differ
//!    between two servers (`cluster_id`, `member_id`, `raft_term`) in every
//!    header, nested txn responses included; everything else is compared.
//! 4. [`Generator::observe`] feeds the reference server's outcome back (the
//!    current and compacted revisions), so later ops aim at past, compacted
//!    and future revisions. Because both servers must answer identically, the
//!    op sequence is the same for both as long as they agree.

use proto::etcdserverpb::compare::{CompareTarget, TargetUnion};
use proto::etcdserverpb::kv_client::KvClient;
use proto::etcdserverpb::request_op::Request as ReqOp;
use proto::etcdserverpb::response_op::Response as RespOp;
use proto::etcdserverpb::{
    CompactionRequest, CompactionResponse, Compare, DeleteRangeRequest, DeleteRangeResponse,
    PutRequest, PutResponse, RangeRequest, RangeResponse, RequestOp, ResponseHeader, TxnRequest,
    TxnResponse,
};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use tonic::transport::Channel;

use crate::show;

/// The key space: shared prefixes, and keys with `\x00` / `\xff` bytes that
/// sit at the edges of prefix and from-key ranges.
pub const KEYS: [&[u8]; 20] = [
    b"a",
    b"a/",
    b"a/1",
    b"a/2",
    b"a/b",
    b"a/b/c",
    b"ab",
    b"b",
    b"b\x00",
    b"b\x00\x00",
    b"b\xff",
    b"b\xff\xff",
    b"ba",
    b"c",
    b"c/1",
    b"c\xff",
    b"\x00",
    b"\x01",
    b"\xff",
    b"\xff\xff",
];

/// A value just over etcd's default 1.5 MiB request limit, under the 2 MiB
/// gRPC limit: the server must answer "request is too large".
pub const OVERSIZED_VALUE_LEN: usize = 1_600_000;

/// etcd's default `--max-txn-ops`.
pub const MAX_TXN_OPS: usize = 128;

/// One KV request.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Put(PutRequest),
    Range(RangeRequest),
    Delete(DeleteRangeRequest),
    Txn(TxnRequest),
    Compact(CompactionRequest),
}

/// One KV response.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Put(PutResponse),
    Range(RangeResponse),
    Delete(DeleteRangeResponse),
    Txn(TxnResponse),
    Compact(CompactionResponse),
}

/// A gRPC error as clients see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcError {
    pub code: tonic::Code,
    pub message: String,
}

impl From<tonic::Status> for RpcError {
    fn from(status: tonic::Status) -> Self {
        RpcError {
            code: status.code(),
            message: status.message().to_string(),
        }
    }
}

/// What one op returned.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome(pub Result<Reply, RpcError>);

impl Op {
    /// Sends the op and returns its outcome.
    pub async fn execute(&self, kv: &mut KvClient<Channel>) -> Outcome {
        let result = match self {
            Op::Put(r) => kv.put(r.clone()).await.map(|x| Reply::Put(x.into_inner())),
            Op::Range(r) => kv
                .range(r.clone())
                .await
                .map(|x| Reply::Range(x.into_inner())),
            Op::Delete(r) => kv
                .delete_range(r.clone())
                .await
                .map(|x| Reply::Delete(x.into_inner())),
            Op::Txn(r) => kv.txn(r.clone()).await.map(|x| Reply::Txn(x.into_inner())),
            Op::Compact(r) => kv.compact(*r).await.map(|x| Reply::Compact(x.into_inner())),
        };
        Outcome(result.map_err(RpcError::from))
    }

    /// A readable one-line description (long values abbreviated).
    pub fn describe(&self) -> String {
        match self {
            Op::Put(r) => show::put_request(r),
            Op::Range(r) => show::range_request(r),
            Op::Delete(r) => show::delete_request(r),
            Op::Txn(r) => show::txn_request(r),
            Op::Compact(r) => show::compact_request(r),
        }
    }
}

impl Outcome {
    /// Zeroes `cluster_id`, `member_id` and `raft_term` in every header.
    pub fn scrub(mut self) -> Outcome {
        if let Ok(reply) = &mut self.0 {
            match reply {
                Reply::Put(r) => scrub_header(&mut r.header),
                Reply::Range(r) => scrub_header(&mut r.header),
                Reply::Delete(r) => scrub_header(&mut r.header),
                Reply::Txn(r) => scrub_txn(r),
                Reply::Compact(r) => scrub_header(&mut r.header),
            }
        }
        self
    }

    /// A readable one-line description.
    pub fn describe(&self) -> String {
        match &self.0 {
            Ok(Reply::Put(r)) => show::put_response(r),
            Ok(Reply::Range(r)) => show::range_response(r),
            Ok(Reply::Delete(r)) => show::delete_response(r),
            Ok(Reply::Txn(r)) => show::txn_response(r),
            Ok(Reply::Compact(r)) => format!("CompactResp{{{}}}", show::header(&r.header)),
            Err(e) => format!("Error({:?}, {:?})", e.code, e.message),
        }
    }

    /// The header revision of a successful reply.
    pub fn revision(&self) -> Option<i64> {
        let header = match self.0.as_ref().ok()? {
            Reply::Put(r) => r.header,
            Reply::Range(r) => r.header,
            Reply::Delete(r) => r.header,
            Reply::Txn(r) => r.header,
            Reply::Compact(r) => r.header,
        };
        header.map(|h| h.revision)
    }
}

fn scrub_header(header: &mut Option<ResponseHeader>) {
    if let Some(h) = header {
        h.cluster_id = 0;
        h.member_id = 0;
        h.raft_term = 0;
    }
}

fn scrub_txn(txn: &mut TxnResponse) {
    scrub_header(&mut txn.header);
    for op in &mut txn.responses {
        match &mut op.response {
            Some(RespOp::ResponseRange(r)) => scrub_header(&mut r.header),
            Some(RespOp::ResponsePut(r)) => scrub_header(&mut r.header),
            Some(RespOp::ResponseDeleteRange(r)) => scrub_header(&mut r.header),
            Some(RespOp::ResponseTxn(r)) => scrub_txn(r),
            None => {}
        }
    }
}

/// The key that ends the range of all keys with prefix `key` (clientv3's
/// `GetPrefixRangeEnd`): strip trailing `0xff`, add one to the last byte; if
/// every byte is `0xff`, the from-key end `"\x00"`.
pub fn prefix_end(key: &[u8]) -> Vec<u8> {
    let mut end = key.to_vec();
    while let Some(&last) = end.last() {
        if last < 0xff {
            let n = end.len();
            end[n - 1] = last + 1;
            return end;
        }
        end.pop();
    }
    vec![0]
}

/// Draws ops from a seeded RNG, tracking revisions seen on the reference.
pub struct Generator {
    rng: StdRng,
    current_revision: i64,
    compact_revision: i64,
    value_counter: u64,
}

impl Generator {
    /// A generator for a fresh store (revision 1, nothing compacted).
    pub fn new(seed: u64) -> Self {
        Generator {
            rng: StdRng::seed_from_u64(seed),
            current_revision: 1,
            compact_revision: 0,
            value_counter: 0,
        }
    }

    /// The store revision last observed.
    pub fn current_revision(&self) -> i64 {
        self.current_revision
    }

    /// The compaction revision last applied successfully.
    pub fn compact_revision(&self) -> i64 {
        self.compact_revision
    }

    /// Records the reference server's outcome for `op`.
    pub fn observe(&mut self, op: &Op, outcome: &Outcome) {
        if let Some(rev) = outcome.revision() {
            self.current_revision = self.current_revision.max(rev);
        }
        if let (Op::Compact(c), Ok(_)) = (op, &outcome.0) {
            self.compact_revision = self.compact_revision.max(c.revision);
        }
    }

    /// The next op.
    pub fn next_op(&mut self) -> Op {
        match self.rng.gen_range(0..100) {
            0..=29 => Op::Put(self.put()),
            30..=56 => Op::Range(self.range()),
            57..=65 => Op::Delete(self.delete()),
            66..=91 => Op::Txn(self.top_txn()),
            92..=94 => Op::Compact(self.compaction()),
            _ => self.bad_input(),
        }
    }

    fn key(&mut self) -> Vec<u8> {
        KEYS.choose(&mut self.rng)
            .map(|k| k.to_vec())
            .unwrap_or_else(|| b"a".to_vec())
    }

    fn value(&mut self) -> Vec<u8> {
        match self.rng.gen_range(0..10) {
            0 => Vec::new(),
            1..=3 => format!("v{}", self.rng.gen_range(0..4)).into_bytes(),
            _ => {
                self.value_counter += 1;
                format!("val-{}", self.value_counter).into_bytes()
            }
        }
    }

    /// A key and a range end in one of the forms clients send.
    fn key_range(&mut self) -> (Vec<u8>, Vec<u8>) {
        let key = self.key();
        let end = match self.rng.gen_range(0..10) {
            0..=3 => Vec::new(),
            4..=5 => prefix_end(&key),
            6 => vec![0],
            7 => return (vec![0], vec![0]),
            8 => key.clone(),
            _ => self.key(),
        };
        (key, end)
    }

    fn revision_choice(&mut self) -> i64 {
        let current = self.current_revision;
        let compacted = self.compact_revision;
        match self.rng.gen_range(0..20) {
            0..=9 => 0,
            10..=12 => self.rng.gen_range(compacted.max(1)..=current),
            13 => self.rng.gen_range(1..=current),
            14 => compacted - 1,
            15 => compacted,
            16 => current,
            17 => current + 1,
            18 => current + self.rng.gen_range(2..100),
            _ => -self.rng.gen_range(1..5),
        }
    }

    fn put(&mut self) -> PutRequest {
        let mut put = PutRequest {
            key: self.key(),
            value: self.value(),
            lease: 0,
            prev_kv: self.rng.gen_bool(0.5),
            ignore_value: false,
            ignore_lease: false,
        };
        match self.rng.gen_range(0..20) {
            0..=1 => {
                put.ignore_value = true;
                if self.rng.gen_bool(0.7) {
                    put.value.clear();
                }
            }
            2..=3 => put.ignore_lease = true,
            4 => {
                put.ignore_value = true;
                put.ignore_lease = true;
                put.value.clear();
            }
            _ => {}
        }
        put
    }

    fn range(&mut self) -> RangeRequest {
        let (key, range_end) = self.key_range();
        let mut range = RangeRequest {
            key,
            range_end,
            serializable: self.rng.gen_bool(0.5),
            revision: self.revision_choice(),
            ..Default::default()
        };
        if self.rng.gen_bool(0.3) {
            range.limit = match self.rng.gen_range(0..6) {
                0 => -1,
                1 => i64::MAX,
                _ => self.rng.gen_range(1..5),
            };
        }
        if self.rng.gen_bool(0.35) {
            range.sort_order = self.rng.gen_range(0..3);
            range.sort_target = self.rng.gen_range(0..5);
        }
        range.keys_only = self.rng.gen_bool(0.15);
        range.count_only = self.rng.gen_bool(0.1);
        let current = self.current_revision;
        if self.rng.gen_bool(0.1) {
            range.min_mod_revision = self.rng.gen_range(0..=current + 1);
        }
        if self.rng.gen_bool(0.1) {
            range.max_mod_revision = self.rng.gen_range(0..=current + 1);
        }
        if self.rng.gen_bool(0.1) {
            range.min_create_revision = self.rng.gen_range(0..=current + 1);
        }
        if self.rng.gen_bool(0.1) {
            range.max_create_revision = self.rng.gen_range(0..=current + 1);
        }
        range
    }

    fn delete(&mut self) -> DeleteRangeRequest {
        let key = self.key();
        let range_end = match self.rng.gen_range(0..20) {
            0..=8 => Vec::new(),
            9..=13 => prefix_end(&key),
            14..=15 => vec![0],
            16 => return self.delete_all(),
            _ => self.key(),
        };
        DeleteRangeRequest {
            key,
            range_end,
            prev_kv: self.rng.gen_bool(0.5),
        }
    }

    fn delete_all(&mut self) -> DeleteRangeRequest {
        DeleteRangeRequest {
            key: vec![0],
            range_end: vec![0],
            prev_kv: self.rng.gen_bool(0.5),
        }
    }

    fn compare(&mut self) -> Compare {
        let (key, range_end) = if self.rng.gen_bool(0.2) {
            let key = self.key();
            let end = if self.rng.gen_bool(0.7) {
                prefix_end(&key)
            } else {
                vec![0]
            };
            (key, end)
        } else {
            (self.key(), Vec::new())
        };
        let target = self.rng.gen_range(0..5);
        let current = self.current_revision;
        let union = if self.rng.gen_bool(0.1) {
            None
        } else {
            Some(match CompareTarget::try_from(target) {
                Ok(CompareTarget::Version) => TargetUnion::Version(self.rng.gen_range(0..4)),
                Ok(CompareTarget::Create) => {
                    TargetUnion::CreateRevision(self.rng.gen_range(0..=current + 1))
                }
                Ok(CompareTarget::Mod) => {
                    TargetUnion::ModRevision(self.rng.gen_range(0..=current + 1))
                }
                Ok(CompareTarget::Value) => TargetUnion::Value(self.value()),
                Ok(CompareTarget::Lease) | Err(_) => TargetUnion::Lease(self.rng.gen_range(0..2)),
            })
        };
        Compare {
            result: self.rng.gen_range(0..4),
            target,
            key,
            range_end,
            target_union: union,
        }
    }

    fn request_op(&mut self, depth: u32) -> RequestOp {
        let request = match self.rng.gen_range(0..10) {
            0..=2 => ReqOp::RequestRange(self.range()),
            3..=6 => ReqOp::RequestPut(self.put()),
            7..=8 => ReqOp::RequestDeleteRange(self.delete()),
            _ if depth < 2 => ReqOp::RequestTxn(self.txn(depth + 1)),
            _ => ReqOp::RequestRange(self.range()),
        };
        RequestOp {
            request: Some(request),
        }
    }

    /// A top-level txn that etcd 3.4 can apply without crashing (see
    /// [`avoid_etcd_ignore_after_delete_panic`]).
    fn top_txn(&mut self) -> TxnRequest {
        let mut txn = self.txn(0);
        avoid_etcd_ignore_after_delete_panic(&mut txn);
        txn
    }

    fn txn(&mut self, depth: u32) -> TxnRequest {
        let compares = self.rng.gen_range(0..4);
        let success = self.rng.gen_range(0..4);
        let failure = self.rng.gen_range(0..4);
        TxnRequest {
            compare: (0..compares).map(|_| self.compare()).collect(),
            success: (0..success).map(|_| self.request_op(depth)).collect(),
            failure: (0..failure).map(|_| self.request_op(depth)).collect(),
        }
    }

    fn compaction(&mut self) -> CompactionRequest {
        let current = self.current_revision;
        let compacted = self.compact_revision;
        let revision = match self.rng.gen_range(0..10) {
            0..=4 if compacted < current => {
                // Keep some history behind the newest revision.
                let low = compacted + 1;
                let high = (current - self.rng.gen_range(5..40)).max(low);
                self.rng.gen_range(low..=high)
            }
            5..=6 if compacted > 0 => self.rng.gen_range(1..=compacted),
            7..=8 => current + self.rng.gen_range(1..5),
            _ => current,
        };
        CompactionRequest {
            revision,
            physical: self.rng.gen_bool(0.5),
        }
    }

    fn bad_input(&mut self) -> Op {
        match self.rng.gen_range(0..10) {
            0 => Op::Put(PutRequest {
                key: Vec::new(),
                value: self.value(),
                ..Default::default()
            }),
            1 => Op::Range(RangeRequest {
                key: Vec::new(),
                range_end: if self.rng.gen_bool(0.5) {
                    vec![0]
                } else {
                    Vec::new()
                },
                ..Default::default()
            }),
            2 => Op::Delete(DeleteRangeRequest {
                key: Vec::new(),
                ..Default::default()
            }),
            3 => Op::Put(PutRequest {
                key: self.key(),
                value: vec![b'x'; OVERSIZED_VALUE_LEN],
                ..Default::default()
            }),
            4 => Op::Txn(self.too_many_ops()),
            5 => Op::Put(PutRequest {
                key: self.key(),
                value: self.value(),
                lease: self.rng.gen_range(1..1_000_000),
                ..Default::default()
            }),
            6 => Op::Put(PutRequest {
                key: self.key(),
                value: b"provided".to_vec(),
                ignore_value: true,
                ..Default::default()
            }),
            7 => Op::Put(PutRequest {
                key: self.key(),
                lease: self.rng.gen_range(1..1_000_000),
                ignore_lease: true,
                ..Default::default()
            }),
            8 => {
                let mut txn = self.top_txn();
                txn.success.push(RequestOp { request: None });
                txn.failure.push(RequestOp { request: None });
                Op::Txn(txn)
            }
            _ => {
                let mut txn = self.top_txn();
                let mut compare = self.compare();
                compare.key.clear();
                txn.compare.push(compare);
                Op::Txn(txn)
            }
        }
    }

    /// A txn with `MAX_TXN_OPS + 1` entries in one of its three lists.
    fn too_many_ops(&mut self) -> TxnRequest {
        let n = MAX_TXN_OPS + 1;
        let mut txn = TxnRequest::default();
        match self.rng.gen_range(0..3) {
            0 => txn.compare = (0..n).map(|_| self.compare()).collect(),
            1 => {
                txn.success = (0..n)
                    .map(|_| RequestOp {
                        request: Some(ReqOp::RequestRange(self.range())),
                    })
                    .collect()
            }
            _ => {
                txn.failure = (0..n)
                    .map(|i| RequestOp {
                        request: Some(ReqOp::RequestPut(PutRequest {
                            key: format!("many/{i}").into_bytes(),
                            ..Default::default()
                        })),
                    })
                    .collect()
            }
        }
        txn
    }
}

/// etcd 3.4.23 panics ("unexpected error during txn: etcdserver: key not
/// found") when a txn deletes a key with a from-key delete (`range_end` =
/// `"\x00"`, which its duplicate-key check does not see as overlapping) and
/// then puts that key with `ignore_value` or `ignore_lease`: the put passed
/// the pre-apply check while the key existed, and fails during apply. Such a
/// txn cannot be compared, so txns holding a from-key delete anywhere get
/// plain puts instead.
pub fn avoid_etcd_ignore_after_delete_panic(txn: &mut TxnRequest) {
    if has_from_key_delete(txn) {
        clear_ignore_flags(txn);
    }
}

fn has_from_key_delete(txn: &TxnRequest) -> bool {
    txn.success
        .iter()
        .chain(&txn.failure)
        .any(|op| match &op.request {
            Some(ReqOp::RequestDeleteRange(d)) => d.range_end == [0],
            Some(ReqOp::RequestTxn(t)) => has_from_key_delete(t),
            _ => false,
        })
}

fn clear_ignore_flags(txn: &mut TxnRequest) {
    for op in txn.success.iter_mut().chain(txn.failure.iter_mut()) {
        match &mut op.request {
            Some(ReqOp::RequestPut(p)) => {
                p.ignore_value = false;
                p.ignore_lease = false;
            }
            Some(ReqOp::RequestTxn(t)) => clear_ignore_flags(t),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_follows_clientv3() {
        assert_eq!(prefix_end(b"aa"), b"ab".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
        assert_eq!(prefix_end(b"\x00"), vec![1]);
    }

    #[test]
    fn the_same_seed_gives_the_same_ops() {
        let mut a = Generator::new(7);
        let mut b = Generator::new(7);
        for _ in 0..500 {
            assert_eq!(a.next_op(), b.next_op());
        }
    }

    #[test]
    fn a_long_run_draws_every_kind_of_op() {
        let mut g = Generator::new(42);
        let (mut puts, mut ranges, mut deletes, mut txns, mut compacts) = (0, 0, 0, 0, 0);
        let mut nested = 0;
        let mut oversized = 0;
        let mut too_many = 0;
        for _ in 0..3000 {
            match g.next_op() {
                Op::Put(p) => {
                    puts += 1;
                    if p.value.len() == OVERSIZED_VALUE_LEN {
                        oversized += 1;
                    }
                }
                Op::Range(_) => ranges += 1,
                Op::Delete(_) => deletes += 1,
                Op::Txn(t) => {
                    txns += 1;
                    let ops = t.success.iter().chain(&t.failure);
                    if ops
                        .clone()
                        .any(|o| matches!(o.request, Some(ReqOp::RequestTxn(_))))
                    {
                        nested += 1;
                    }
                    let longest = t.compare.len().max(t.success.len()).max(t.failure.len());
                    if longest > MAX_TXN_OPS {
                        too_many += 1;
                    }
                }
                Op::Compact(_) => compacts += 1,
            }
        }
        for (name, n) in [
            ("puts", puts),
            ("ranges", ranges),
            ("deletes", deletes),
            ("txns", txns),
            ("compacts", compacts),
            ("nested txns", nested),
            ("oversized puts", oversized),
            ("too-many-ops txns", too_many),
        ] {
            assert!(n > 0, "no {name} in 3000 ops");
        }
    }

    #[test]
    fn observe_tracks_revisions_from_the_reference() {
        let mut g = Generator::new(1);
        let put = Op::Put(PutRequest::default());
        let reply = Outcome(Ok(Reply::Put(PutResponse {
            header: Some(ResponseHeader {
                revision: 9,
                ..Default::default()
            }),
            prev_kv: None,
        })));
        g.observe(&put, &reply);
        assert_eq!(g.current_revision(), 9);
        let compact = Op::Compact(CompactionRequest {
            revision: 5,
            physical: false,
        });
        let ok = Outcome(Ok(Reply::Compact(CompactionResponse {
            header: Some(ResponseHeader {
                revision: 9,
                ..Default::default()
            }),
        })));
        g.observe(&compact, &ok);
        assert_eq!(g.compact_revision(), 5);
        let failed = Outcome(Err(RpcError {
            code: tonic::Code::OutOfRange,
            message: "etcdserver: mvcc: required revision is a future revision".into(),
        }));
        g.observe(
            &Op::Compact(CompactionRequest {
                revision: 50,
                physical: false,
            }),
            &failed,
        );
        assert_eq!(g.compact_revision(), 5);
    }

    #[test]
    fn scrub_clears_ids_in_nested_headers_but_keeps_revisions() {
        let header = Some(ResponseHeader {
            cluster_id: 1,
            member_id: 2,
            revision: 3,
            raft_term: 4,
        });
        let inner = TxnResponse {
            header,
            succeeded: true,
            responses: vec![proto::etcdserverpb::ResponseOp {
                response: Some(RespOp::ResponsePut(PutResponse {
                    header,
                    prev_kv: None,
                })),
            }],
        };
        let outer = TxnResponse {
            header,
            succeeded: false,
            responses: vec![proto::etcdserverpb::ResponseOp {
                response: Some(RespOp::ResponseTxn(inner)),
            }],
        };
        let scrubbed = Outcome(Ok(Reply::Txn(outer))).scrub();
        let clean = Some(ResponseHeader {
            revision: 3,
            ..Default::default()
        });
        let Ok(Reply::Txn(t)) = &scrubbed.0 else {
            panic!("not a txn: {scrubbed:?}");
        };
        assert_eq!(t.header, clean);
        let Some(RespOp::ResponseTxn(inner)) = &t.responses[0].response else {
            panic!("not nested");
        };
        assert_eq!(inner.header, clean);
        let Some(RespOp::ResponsePut(p)) = &inner.responses[0].response else {
            panic!("not a put");
        };
        assert_eq!(p.header, clean);
        assert_eq!(scrubbed.revision(), Some(3));
    }

    #[test]
    fn txns_never_mix_from_key_deletes_with_ignore_puts() {
        fn ops(t: &TxnRequest) -> Vec<&RequestOp> {
            let mut all = Vec::new();
            for op in t.success.iter().chain(&t.failure) {
                all.push(op);
                if let Some(ReqOp::RequestTxn(inner)) = &op.request {
                    all.extend(ops(inner));
                }
            }
            all
        }
        let mut g = Generator::new(3);
        let mut guarded = 0;
        for _ in 0..5000 {
            if let Op::Txn(t) = g.next_op() {
                let all = ops(&t);
                let from_key = all.iter().any(|op| {
                    matches!(&op.request, Some(ReqOp::RequestDeleteRange(d)) if d.range_end == [0])
                });
                let ignore = all.iter().any(|op| {
                    matches!(&op.request, Some(ReqOp::RequestPut(p)) if p.ignore_value || p.ignore_lease)
                });
                assert!(!(from_key && ignore), "{}", show::txn_request(&t));
                if from_key {
                    guarded += 1;
                }
            }
        }
        assert!(guarded > 0, "no txn with a from-key delete was drawn");
    }

    #[test]
    fn describe_abbreviates_huge_values() {
        let op = Op::Put(PutRequest {
            key: b"k".to_vec(),
            value: vec![b'x'; OVERSIZED_VALUE_LEN],
            ..Default::default()
        });
        let text = op.describe();
        assert!(text.len() < 1000, "{}", text.len());
        assert!(text.contains("(1600000 bytes)"), "{text}");
    }
}
