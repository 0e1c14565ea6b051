//! Txn evaluation that happens before any write, as etcd's
//! `applierV3backend.Txn`.
//!
//! 1. `compare_to_path` evaluates the compares of the txn and of every nested
//!    txn on the taken branches, all against the state *before* the txn (so
//!    a nested compare does not see the outer txn's writes), and lists the
//!    outcomes in pre-order.
//! 2. `check_requests` walks the taken branches along that path: first every
//!    put (unknown lease, `ignore_*` on an absent key), then every range
//!    (future or compacted revision), still against the state before the
//!    txn. Any error fails the whole txn before it changes anything.
//! 3. Execution (in `apply`) then follows the same path.
//! 4. A txn whose ops are all ranges is served here without raft
//!    ([`read_only_txn`]), along the same path.
//!
//! A compare reads every key of its range (`range_end` conventions as Range):
//! all must satisfy it; an absent key compares as a zero KeyValue, except
//! that a VALUE compare on absent keys is false.

use std::cmp::Ordering;

use proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use proto::etcdserverpb::request_op::Request;
use proto::etcdserverpb::response_op::Response;
use proto::etcdserverpb::{
    Compare, PutRequest, RangeRequest, RequestOp, ResponseHeader, ResponseOp, TxnRequest,
    TxnResponse,
};
use proto::mvccpb::KeyValue;

use super::key_index::KeyRange;
use super::range::{self, RangeOptions, range_keys};
use super::view::{Fault, View};
use crate::error::EtcdError;

/// etcd's `isTxnReadonly`: every op of both branches is a Range (a nested txn
/// makes the txn a write).
pub fn is_txn_read_only(txn: &TxnRequest) -> bool {
    txn.success
        .iter()
        .chain(&txn.failure)
        .all(|op| matches!(op.request, Some(Request::RequestRange(_))))
}

fn compare_kv(c: &Compare, kv: &KeyValue) -> bool {
    let ordering = match CompareTarget::try_from(c.target) {
        Ok(CompareTarget::Value) => {
            let want: &[u8] = match &c.target_union {
                Some(TargetUnion::Value(v)) => v,
                _ => &[],
            };
            kv.value.as_slice().cmp(want)
        }
        Ok(CompareTarget::Create) => {
            let want = match c.target_union {
                Some(TargetUnion::CreateRevision(v)) => v,
                _ => 0,
            };
            kv.create_revision.cmp(&want)
        }
        Ok(CompareTarget::Mod) => {
            let want = match c.target_union {
                Some(TargetUnion::ModRevision(v)) => v,
                _ => 0,
            };
            kv.mod_revision.cmp(&want)
        }
        Ok(CompareTarget::Version) => {
            let want = match c.target_union {
                Some(TargetUnion::Version(v)) => v,
                _ => 0,
            };
            kv.version.cmp(&want)
        }
        Ok(CompareTarget::Lease) => {
            let want = match c.target_union {
                Some(TargetUnion::Lease(v)) => v,
                _ => 0,
            };
            kv.lease.cmp(&want)
        }
        // An unknown target compares as equal, as etcd's zero `result`.
        Err(_) => Ordering::Equal,
    };
    match CompareResult::try_from(c.result) {
        Ok(CompareResult::Equal) => ordering == Ordering::Equal,
        Ok(CompareResult::NotEqual) => ordering != Ordering::Equal,
        Ok(CompareResult::Greater) => ordering == Ordering::Greater,
        Ok(CompareResult::Less) => ordering == Ordering::Less,
        Err(_) => true,
    }
}

/// etcd's `applyCompare`.
pub(crate) fn apply_compare(view: &impl View, c: &Compare) -> Result<bool, Fault> {
    let rr = match range_keys(
        view,
        KeyRange::new(&c.key, &c.range_end),
        RangeOptions::default(),
    ) {
        Ok(rr) => rr,
        Err(Fault::Client(_)) => return Ok(false),
        Err(storage) => return Err(storage),
    };
    if rr.kvs.is_empty() {
        if c.target == CompareTarget::Value as i32 {
            // No way to tell a missing value from an empty one: always false.
            return Ok(false);
        }
        return Ok(compare_kv(c, &KeyValue::default()));
    }
    Ok(rr.kvs.iter().all(|kv| compare_kv(c, kv)))
}

/// The branch each txn on the taken path takes, in pre-order (etcd's
/// `compareToPath`).
pub(crate) fn compare_to_path(view: &impl View, txn: &TxnRequest) -> Result<Vec<bool>, Fault> {
    let mut path = Vec::new();
    push_path(view, txn, &mut path)?;
    Ok(path)
}

fn push_path(view: &impl View, txn: &TxnRequest, path: &mut Vec<bool>) -> Result<(), Fault> {
    let mut succeeded = true;
    for c in &txn.compare {
        if !apply_compare(view, c)? {
            succeeded = false;
            break;
        }
    }
    path.push(succeeded);
    for op in branch(txn, succeeded) {
        if let Some(Request::RequestTxn(nested)) = &op.request {
            push_path(view, nested, path)?;
        }
    }
    Ok(())
}

/// The ops of the branch a txn takes.
pub(crate) fn branch(txn: &TxnRequest, succeeded: bool) -> &[RequestOp] {
    if succeeded {
        &txn.success
    } else {
        &txn.failure
    }
}

/// A check run on each non-txn op of the taken branches.
pub(crate) type CheckFn<V> = fn(&V, &RequestOp) -> Result<(), Fault>;

/// etcd's `checkRequests`: runs `check` on every op of the taken branches;
/// returns how many path entries the txn used.
pub(crate) fn check_requests<V: View>(
    view: &V,
    txn: &TxnRequest,
    path: &[bool],
    check: CheckFn<V>,
) -> Result<usize, Fault> {
    let mut used = 1;
    for op in branch(txn, path[0]) {
        if let Some(Request::RequestTxn(nested)) = &op.request {
            used += check_requests(view, nested, &path[used..], check)?;
            continue;
        }
        check(view, op)?;
    }
    Ok(used)
}

/// etcd's `checkRequestPut`.
pub(crate) fn check_put<V: View>(view: &V, op: &RequestOp) -> Result<(), Fault> {
    let Some(Request::RequestPut(req)) = &op.request else {
        return Ok(());
    };
    check_put_request(view, req)
}

fn check_put_request(view: &impl View, req: &PutRequest) -> Result<(), Fault> {
    if req.ignore_value || req.ignore_lease {
        let rr = range_keys(view, KeyRange::Key(&req.key), RangeOptions::default())?;
        if rr.kvs.is_empty() {
            return Err(EtcdError::KeyNotFound.into());
        }
    }
    if req.lease != 0 && !view.lease_exists(req.lease) {
        return Err(EtcdError::LeaseNotFound.into());
    }
    Ok(())
}

/// etcd's `checkRequestRange`. Note the quirk kept from etcd: a negative
/// revision below the compacted revision (-1 when never compacted) is
/// `Compacted`, though a plain Range treats it as "latest".
pub(crate) fn check_range<V: View>(view: &V, op: &RequestOp) -> Result<(), Fault> {
    let Some(Request::RequestRange(req)) = &op.request else {
        return Ok(());
    };
    check_range_request(view, req)
}

fn check_range_request(view: &impl View, req: &RangeRequest) -> Result<(), Fault> {
    match req.revision {
        0 => Ok(()),
        r if r > view.rev() => Err(EtcdError::FutureRev.into()),
        r if r < view.first_rev() => Err(EtcdError::Compacted.into()),
        _ => Ok(()),
    }
}

/// Serves a read-only txn (every op a Range) from `view`, as etcd serves it
/// without raft.
pub(crate) fn read_only_txn(view: &impl View, req: &TxnRequest) -> Result<TxnResponse, Fault> {
    let path = compare_to_path(view, req)?;
    check_requests(view, req, &path, check_range)?;
    let mut responses = Vec::new();
    for op in branch(req, path[0]) {
        let response = match &op.request {
            Some(Request::RequestRange(r)) => Some(Response::ResponseRange(range::range(view, r)?)),
            _ => None,
        };
        responses.push(ResponseOp { response });
    }
    Ok(TxnResponse {
        header: Some(ResponseHeader {
            revision: view.rev(),
            ..Default::default()
        }),
        succeeded: path[0],
        responses,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmp(target: CompareTarget, result: CompareResult, union: Option<TargetUnion>) -> Compare {
        Compare {
            result: result as i32,
            target: target as i32,
            key: b"k".to_vec(),
            range_end: vec![],
            target_union: union,
        }
    }

    #[test]
    fn compare_kv_table() {
        let kv = KeyValue {
            key: b"k".to_vec(),
            create_revision: 5,
            mod_revision: 7,
            version: 3,
            value: b"m".to_vec(),
            lease: 9,
        };
        use CompareResult::*;
        use CompareTarget::*;
        let table = [
            (cmp(Version, Equal, Some(TargetUnion::Version(3))), true),
            (cmp(Version, Greater, Some(TargetUnion::Version(2))), true),
            (cmp(Version, Less, Some(TargetUnion::Version(3))), false),
            (
                cmp(Create, Equal, Some(TargetUnion::CreateRevision(5))),
                true,
            ),
            (cmp(Mod, NotEqual, Some(TargetUnion::ModRevision(7))), false),
            (cmp(Mod, Less, Some(TargetUnion::ModRevision(8))), true),
            (
                cmp(Value, Equal, Some(TargetUnion::Value(b"m".to_vec()))),
                true,
            ),
            (
                cmp(Value, Greater, Some(TargetUnion::Value(b"a".to_vec()))),
                true,
            ),
            (
                cmp(Value, Less, Some(TargetUnion::Value(b"z".to_vec()))),
                true,
            ),
            (cmp(Lease, Equal, Some(TargetUnion::Lease(9))), true),
            // A union of the wrong kind compares against zero.
            (cmp(Mod, Greater, Some(TargetUnion::Version(100))), true),
            (cmp(Version, Greater, None), true),
            (cmp(Value, Greater, None), true),
        ];
        for (i, (c, want)) in table.iter().enumerate() {
            assert_eq!(compare_kv(c, &kv), *want, "case {i}: {c:?}");
        }
    }

    #[test]
    fn read_only_detection() {
        let range = RequestOp {
            request: Some(Request::RequestRange(RangeRequest::default())),
        };
        let put = RequestOp {
            request: Some(Request::RequestPut(PutRequest::default())),
        };
        let nested = RequestOp {
            request: Some(Request::RequestTxn(TxnRequest::default())),
        };
        let txn = |s: Vec<RequestOp>, f: Vec<RequestOp>| TxnRequest {
            compare: vec![],
            success: s,
            failure: f,
        };
        assert!(is_txn_read_only(&txn(vec![], vec![])));
        assert!(is_txn_read_only(&txn(
            vec![range.clone()],
            vec![range.clone()]
        )));
        assert!(!is_txn_read_only(&txn(vec![range.clone()], vec![put])));
        assert!(!is_txn_read_only(&txn(vec![nested], vec![])));
        assert!(!is_txn_read_only(&txn(
            vec![RequestOp { request: None }],
            vec![]
        )));
    }
}
