//! Request checks the gRPC facade runs before proposing, as etcd's
//! `etcdserver/api/v3rpc/key.go`; pure functions of the request.
//!
//! 1. Range, Put, DeleteRange: the key must not be empty; Put also refuses a
//!    value with `ignore_value` and a lease with `ignore_lease`.
//! 2. Txn (`checkTxnRequest`): the largest of compares, success ops and
//!    failure ops must not exceed `max_txn_ops`; a nested txn gets what is
//!    left of the budget; every compare key must be non-empty; every op is
//!    checked as above, and an op with nothing set is `key not found`.
//! 3. Then `checkIntervals` on each branch: inside one branch (nested txns
//!    included) a key may be put once, and not inside a delete range of that
//!    branch; the two branches of a nested txn may put the same key. Delete
//!    ranges are taken literally, so a `range_end` of `"\0"` (from-key) is an
//!    empty interval here, exactly as in etcd.

use std::collections::HashSet;

use proto::etcdserverpb::request_op::Request;
use proto::etcdserverpb::{DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest};

use crate::error::EtcdError;

/// Checks a Range request.
pub fn range(req: &RangeRequest) -> Result<(), EtcdError> {
    if req.key.is_empty() {
        return Err(EtcdError::EmptyKey);
    }
    Ok(())
}

/// Checks a Put request.
pub fn put(req: &PutRequest) -> Result<(), EtcdError> {
    if req.key.is_empty() {
        return Err(EtcdError::EmptyKey);
    }
    if req.ignore_value && !req.value.is_empty() {
        return Err(EtcdError::ValueProvided);
    }
    if req.ignore_lease && req.lease != 0 {
        return Err(EtcdError::LeaseProvided);
    }
    Ok(())
}

/// Checks a DeleteRange request.
pub fn delete_range(req: &DeleteRangeRequest) -> Result<(), EtcdError> {
    if req.key.is_empty() {
        return Err(EtcdError::EmptyKey);
    }
    Ok(())
}

/// Checks a Txn request: op counts, empty keys, then the duplicate-key rule.
pub fn txn(req: &TxnRequest, max_txn_ops: usize) -> Result<(), EtcdError> {
    check_txn(req, i64::try_from(max_txn_ops).unwrap_or(i64::MAX))?;
    // Checked after the request, so a huge request fails cheaply first.
    check_intervals(&req.success)?;
    check_intervals(&req.failure)?;
    Ok(())
}

fn check_txn(req: &TxnRequest, max_txn_ops: i64) -> Result<(), EtcdError> {
    let ops = req
        .compare
        .len()
        .max(req.success.len())
        .max(req.failure.len()) as i64;
    if ops > max_txn_ops {
        return Err(EtcdError::TooManyOps);
    }
    if req.compare.iter().any(|c| c.key.is_empty()) {
        return Err(EtcdError::EmptyKey);
    }
    for op in req.success.iter().chain(&req.failure) {
        check_op(op, max_txn_ops - ops)?;
    }
    Ok(())
}

fn check_op(op: &RequestOp, max_txn_ops: i64) -> Result<(), EtcdError> {
    match &op.request {
        Some(Request::RequestRange(r)) => range(r),
        Some(Request::RequestPut(p)) => put(p),
        Some(Request::RequestDeleteRange(d)) => delete_range(d),
        Some(Request::RequestTxn(t)) => check_txn(t, max_txn_ops),
        None => Err(EtcdError::KeyNotFound),
    }
}

/// Delete ranges of a branch, as half-open byte intervals.
#[derive(Debug, Default)]
struct Deletes(Vec<(Vec<u8>, Vec<u8>)>);

impl Deletes {
    fn insert(&mut self, req: &DeleteRangeRequest) {
        let end = if req.range_end.is_empty() {
            // A single key: the point interval [key, key + "\0").
            let mut end = req.key.clone();
            end.push(0);
            end
        } else {
            req.range_end.clone()
        };
        self.0.push((req.key.clone(), end));
    }

    fn contains(&self, key: &[u8]) -> bool {
        self.0
            .iter()
            .any(|(begin, end)| begin.as_slice() <= key && key < end.as_slice())
    }

    fn absorb(&mut self, other: Deletes) {
        self.0.extend(other.0);
    }
}

/// etcd's `checkIntervals`: returns the keys put and the ranges deleted by
/// `ops` (nested txns included).
fn check_intervals(ops: &[RequestOp]) -> Result<(HashSet<Vec<u8>>, Deletes), EtcdError> {
    let mut dels = Deletes::default();
    for op in ops {
        if let Some(Request::RequestDeleteRange(d)) = &op.request {
            dels.insert(d);
        }
    }

    let mut puts: HashSet<Vec<u8>> = HashSet::new();
    for op in ops {
        let Some(Request::RequestTxn(nested)) = &op.request else {
            continue;
        };
        let (puts_then, dels_then) = check_intervals(&nested.success)?;
        let (puts_else, dels_else) = check_intervals(&nested.failure)?;
        for key in &puts_then {
            if puts.contains(key) || dels.contains(key) {
                return Err(EtcdError::DuplicateKey);
            }
            puts.insert(key.clone());
        }
        for key in puts_else {
            // Then and else exclude each other: the same key in both is fine.
            if (puts.contains(&key) && !puts_then.contains(&key)) || dels.contains(&key) {
                return Err(EtcdError::DuplicateKey);
            }
            puts.insert(key);
        }
        dels.absorb(dels_then);
        dels.absorb(dels_else);
    }

    for op in ops {
        let Some(Request::RequestPut(p)) = &op.request else {
            continue;
        };
        if puts.contains(&p.key) || dels.contains(&p.key) {
            return Err(EtcdError::DuplicateKey);
        }
        puts.insert(p.key.clone());
    }
    Ok((puts, dels))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::etcdserverpb::Compare;

    fn put_op(key: &str) -> RequestOp {
        RequestOp {
            request: Some(Request::RequestPut(PutRequest {
                key: key.as_bytes().to_vec(),
                ..Default::default()
            })),
        }
    }

    fn del_op(key: &str, end: &str) -> RequestOp {
        RequestOp {
            request: Some(Request::RequestDeleteRange(DeleteRangeRequest {
                key: key.as_bytes().to_vec(),
                range_end: end.as_bytes().to_vec(),
                prev_kv: false,
            })),
        }
    }

    fn range_op(key: &str) -> RequestOp {
        RequestOp {
            request: Some(Request::RequestRange(RangeRequest {
                key: key.as_bytes().to_vec(),
                ..Default::default()
            })),
        }
    }

    fn txn_op(success: Vec<RequestOp>, failure: Vec<RequestOp>) -> RequestOp {
        RequestOp {
            request: Some(Request::RequestTxn(txn_req(vec![], success, failure))),
        }
    }

    fn txn_req(
        compare: Vec<Compare>,
        success: Vec<RequestOp>,
        failure: Vec<RequestOp>,
    ) -> TxnRequest {
        TxnRequest {
            compare,
            success,
            failure,
        }
    }

    fn compare(key: &str) -> Compare {
        Compare {
            key: key.as_bytes().to_vec(),
            ..Default::default()
        }
    }

    #[test]
    fn single_requests() {
        let cases: Vec<(Result<(), EtcdError>, Result<(), EtcdError>)> = vec![
            (range(&RangeRequest::default()), Err(EtcdError::EmptyKey)),
            (
                range(&RangeRequest {
                    key: b"a".to_vec(),
                    ..Default::default()
                }),
                Ok(()),
            ),
            (put(&PutRequest::default()), Err(EtcdError::EmptyKey)),
            (
                put(&PutRequest {
                    key: b"a".to_vec(),
                    value: b"v".to_vec(),
                    ignore_value: true,
                    ..Default::default()
                }),
                Err(EtcdError::ValueProvided),
            ),
            (
                put(&PutRequest {
                    key: b"a".to_vec(),
                    lease: 5,
                    ignore_lease: true,
                    ..Default::default()
                }),
                Err(EtcdError::LeaseProvided),
            ),
            (
                put(&PutRequest {
                    key: b"a".to_vec(),
                    ignore_value: true,
                    ignore_lease: true,
                    ..Default::default()
                }),
                Ok(()),
            ),
            (
                delete_range(&DeleteRangeRequest::default()),
                Err(EtcdError::EmptyKey),
            ),
            (
                delete_range(&DeleteRangeRequest {
                    key: b"a".to_vec(),
                    ..Default::default()
                }),
                Ok(()),
            ),
        ];
        for (i, (got, want)) in cases.into_iter().enumerate() {
            assert_eq!(got, want, "case {i}");
        }
    }

    #[test]
    fn txn_table() {
        let many = |n: usize| (0..n).map(|i| put_op(&format!("k{i}"))).collect::<Vec<_>>();
        let nested = |n: usize| (0..n).map(|i| put_op(&format!("n{i}"))).collect::<Vec<_>>();
        let cases: Vec<(&str, TxnRequest, Result<(), EtcdError>)> = vec![
            ("empty txn", txn_req(vec![], vec![], vec![]), Ok(())),
            ("128 ops", txn_req(vec![], many(128), vec![]), Ok(())),
            (
                "129 success ops",
                txn_req(vec![], many(129), vec![]),
                Err(EtcdError::TooManyOps),
            ),
            (
                "129 failure ops",
                txn_req(vec![], vec![], many(129)),
                Err(EtcdError::TooManyOps),
            ),
            (
                "129 compares",
                txn_req(
                    (0..129).map(|i| compare(&format!("c{i}"))).collect(),
                    vec![],
                    vec![],
                ),
                Err(EtcdError::TooManyOps),
            ),
            (
                "nested txn uses the remaining budget",
                txn_req(
                    vec![],
                    {
                        let mut ops = many(100);
                        ops.push(txn_op(nested(29), vec![]));
                        ops
                    },
                    vec![],
                ),
                Err(EtcdError::TooManyOps),
            ),
            (
                "nested txn within the budget",
                txn_req(
                    vec![],
                    {
                        let mut ops = many(100);
                        ops.push(txn_op(nested(27), vec![]));
                        ops
                    },
                    vec![],
                ),
                Ok(()),
            ),
            (
                "empty compare key",
                txn_req(vec![compare("")], vec![], vec![]),
                Err(EtcdError::EmptyKey),
            ),
            (
                "empty op",
                txn_req(vec![], vec![RequestOp { request: None }], vec![]),
                Err(EtcdError::KeyNotFound),
            ),
            (
                "empty range key",
                txn_req(vec![], vec![range_op("")], vec![]),
                Err(EtcdError::EmptyKey),
            ),
            (
                "put put same key",
                txn_req(vec![], vec![put_op("a"), put_op("a")], vec![]),
                Err(EtcdError::DuplicateKey),
            ),
            (
                "same key in both branches",
                txn_req(vec![], vec![put_op("a")], vec![put_op("a")]),
                Ok(()),
            ),
            (
                "put inside delete",
                txn_req(vec![], vec![del_op("a", "c"), put_op("b")], vec![]),
                Err(EtcdError::DuplicateKey),
            ),
            (
                "put at delete end",
                txn_req(vec![], vec![del_op("a", "c"), put_op("c")], vec![]),
                Ok(()),
            ),
            (
                "put of deleted key",
                txn_req(vec![], vec![put_op("a"), del_op("a", "")], vec![]),
                Err(EtcdError::DuplicateKey),
            ),
            (
                "from-key delete is literal",
                txn_req(vec![], vec![put_op("b"), del_op("a", "\0")], vec![]),
                Ok(()),
            ),
            (
                "delete all is literal",
                txn_req(vec![], vec![put_op("b"), del_op("\0", "\0")], vec![]),
                Ok(()),
            ),
            (
                "overlapping deletes",
                txn_req(vec![], vec![del_op("a", "c"), del_op("b", "d")], vec![]),
                Ok(()),
            ),
            (
                "nested put vs outer put",
                txn_req(
                    vec![],
                    vec![put_op("a"), txn_op(vec![put_op("a")], vec![])],
                    vec![],
                ),
                Err(EtcdError::DuplicateKey),
            ),
            (
                "nested then/else same key",
                txn_req(
                    vec![],
                    vec![txn_op(vec![put_op("a")], vec![put_op("a")])],
                    vec![],
                ),
                Ok(()),
            ),
            (
                "two nested txns put the same key",
                txn_req(
                    vec![],
                    vec![
                        txn_op(vec![put_op("a")], vec![]),
                        txn_op(vec![], vec![put_op("a")]),
                    ],
                    vec![],
                ),
                Err(EtcdError::DuplicateKey),
            ),
            (
                "nested delete vs outer put",
                txn_req(
                    vec![],
                    vec![put_op("b"), txn_op(vec![del_op("a", "c")], vec![])],
                    vec![],
                ),
                Err(EtcdError::DuplicateKey),
            ),
            (
                "outer delete vs nested put",
                txn_req(
                    vec![],
                    vec![del_op("a", "c"), txn_op(vec![], vec![put_op("b")])],
                    vec![],
                ),
                Err(EtcdError::DuplicateKey),
            ),
            (
                "nested dup inside a nested branch",
                txn_req(
                    vec![],
                    vec![txn_op(vec![put_op("x"), put_op("x")], vec![])],
                    vec![],
                ),
                Err(EtcdError::DuplicateKey),
            ),
        ];
        for (name, req, want) in cases {
            assert_eq!(txn(&req, 128), want, "{name}");
        }
    }
}
