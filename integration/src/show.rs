//! Readable one-line renderings of KV requests and responses for failure
//! messages (prost's `Debug` prints bytes as number arrays).
//!
//! 1. Bytes print as quoted strings with `\xNN` escapes; values over 64 bytes
//!    are cut to their first 16 bytes plus their length.
//! 2. Requests print only the fields that are set; enums print by name.
//! 3. Responses print every compared field (header revision, kvs, count,
//!    more, succeeded, deleted, prev kvs, nested responses) and the other
//!    header fields only when non-zero.

use std::fmt::Write;

use proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use proto::etcdserverpb::request_op::Request as ReqOp;
use proto::etcdserverpb::response_op::Response as RespOp;
use proto::etcdserverpb::{
    CompactionRequest, Compare, DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse,
    RangeRequest, RangeResponse, RequestOp, ResponseHeader, TxnRequest, TxnResponse,
};
use proto::mvccpb::KeyValue;

/// Longest value printed in full.
const MAX_SHOWN: usize = 64;

/// Bytes as a quoted, escaped string.
pub fn bytes(b: &[u8]) -> String {
    let shown = if b.len() > MAX_SHOWN { &b[..16] } else { b };
    let mut s = String::from("\"");
    for &c in shown {
        match c {
            b'"' => s.push_str("\\\""),
            b'\\' => s.push_str("\\\\"),
            0x20..=0x7e => s.push(c as char),
            _ => {
                let _ = write!(s, "\\x{c:02x}");
            }
        }
    }
    s.push('"');
    if b.len() > MAX_SHOWN {
        let _ = write!(s, "...({} bytes)", b.len());
    }
    s
}

/// A header: the revision, plus any non-zero id or term.
pub fn header(h: &Option<ResponseHeader>) -> String {
    match h {
        None => "no-header".to_string(),
        Some(h) => {
            let mut s = format!("rev={}", h.revision);
            for (name, v) in [
                ("cluster", h.cluster_id),
                ("member", h.member_id),
                ("term", h.raft_term),
            ] {
                if v != 0 {
                    let _ = write!(s, " {name}={v}");
                }
            }
            s
        }
    }
}

/// A key-value with all its fields.
pub fn kv(kv: &KeyValue) -> String {
    format!(
        "{{{} c={} m={} v={} val={} lease={}}}",
        bytes(&kv.key),
        kv.create_revision,
        kv.mod_revision,
        kv.version,
        bytes(&kv.value),
        kv.lease
    )
}

fn kvs(list: &[KeyValue]) -> String {
    let items: Vec<String> = list.iter().map(kv).collect();
    format!("[{}]", items.join(", "))
}

fn key_range(key: &[u8], end: &[u8]) -> String {
    if end.is_empty() {
        bytes(key)
    } else {
        format!("[{}, {})", bytes(key), bytes(end))
    }
}

/// A Range request.
pub fn range_request(r: &RangeRequest) -> String {
    let mut s = format!("Range {}", key_range(&r.key, &r.range_end));
    for (name, v) in [
        ("limit", r.limit),
        ("rev", r.revision),
        ("min_mod", r.min_mod_revision),
        ("max_mod", r.max_mod_revision),
        ("min_create", r.min_create_revision),
        ("max_create", r.max_create_revision),
    ] {
        if v != 0 {
            let _ = write!(s, " {name}={v}");
        }
    }
    if r.sort_order != 0 || r.sort_target != 0 {
        let order = SortOrder::try_from(r.sort_order).map_or("?", |o| o.as_str_name());
        let target = SortTarget::try_from(r.sort_target).map_or("?", |t| t.as_str_name());
        let _ = write!(s, " sort={order}/{target}");
    }
    for (name, set) in [
        ("serializable", r.serializable),
        ("keys_only", r.keys_only),
        ("count_only", r.count_only),
    ] {
        if set {
            let _ = write!(s, " {name}");
        }
    }
    s
}

/// A Put request.
pub fn put_request(p: &PutRequest) -> String {
    let mut s = format!("Put {}={}", bytes(&p.key), bytes(&p.value));
    if p.lease != 0 {
        let _ = write!(s, " lease={}", p.lease);
    }
    for (name, set) in [
        ("prev_kv", p.prev_kv),
        ("ignore_value", p.ignore_value),
        ("ignore_lease", p.ignore_lease),
    ] {
        if set {
            let _ = write!(s, " {name}");
        }
    }
    s
}

/// A DeleteRange request.
pub fn delete_request(d: &DeleteRangeRequest) -> String {
    let mut s = format!("Delete {}", key_range(&d.key, &d.range_end));
    if d.prev_kv {
        s.push_str(" prev_kv");
    }
    s
}

/// A txn compare, e.g. `MOD([a, b)) GREATER 7`.
pub fn compare(c: &Compare) -> String {
    let target = CompareTarget::try_from(c.target).map_or("?", |t| t.as_str_name());
    let result = CompareResult::try_from(c.result).map_or("?", |r| r.as_str_name());
    let operand = match &c.target_union {
        None => "unset".to_string(),
        Some(TargetUnion::Version(v)) => format!("version:{v}"),
        Some(TargetUnion::CreateRevision(v)) => format!("create:{v}"),
        Some(TargetUnion::ModRevision(v)) => format!("mod:{v}"),
        Some(TargetUnion::Value(v)) => format!("value:{}", bytes(v)),
        Some(TargetUnion::Lease(v)) => format!("lease:{v}"),
    };
    format!(
        "{target}({}) {result} {operand}",
        key_range(&c.key, &c.range_end)
    )
}

fn request_op(op: &RequestOp) -> String {
    match &op.request {
        None => "EmptyOp".to_string(),
        Some(ReqOp::RequestRange(r)) => range_request(r),
        Some(ReqOp::RequestPut(p)) => put_request(p),
        Some(ReqOp::RequestDeleteRange(d)) => delete_request(d),
        Some(ReqOp::RequestTxn(t)) => txn_request(t),
    }
}

fn list<T>(items: &[T], show: impl Fn(&T) -> String) -> String {
    let shown: Vec<String> = items.iter().map(show).collect();
    format!("[{}]", shown.join("; "))
}

/// A Txn request, nested txns included.
pub fn txn_request(t: &TxnRequest) -> String {
    format!(
        "Txn{{if {} then {} else {}}}",
        list(&t.compare, compare),
        list(&t.success, request_op),
        list(&t.failure, request_op)
    )
}

/// A Compaction request.
pub fn compact_request(c: &CompactionRequest) -> String {
    format!(
        "Compact rev={}{}",
        c.revision,
        if c.physical { " physical" } else { "" }
    )
}

/// A Range response.
pub fn range_response(r: &RangeResponse) -> String {
    format!(
        "RangeResp{{{} count={} more={} kvs={}}}",
        header(&r.header),
        r.count,
        r.more,
        kvs(&r.kvs)
    )
}

/// A Put response.
pub fn put_response(p: &PutResponse) -> String {
    let prev = p.prev_kv.as_ref().map_or("none".to_string(), kv);
    format!("PutResp{{{} prev_kv={prev}}}", header(&p.header))
}

/// A DeleteRange response.
pub fn delete_response(d: &DeleteRangeResponse) -> String {
    format!(
        "DeleteResp{{{} deleted={} prev_kvs={}}}",
        header(&d.header),
        d.deleted,
        kvs(&d.prev_kvs)
    )
}

/// A Txn response, nested responses included.
pub fn txn_response(t: &TxnResponse) -> String {
    let ops = list(&t.responses, |op| match &op.response {
        None => "EmptyResponse".to_string(),
        Some(RespOp::ResponseRange(r)) => range_response(r),
        Some(RespOp::ResponsePut(p)) => put_response(p),
        Some(RespOp::ResponseDeleteRange(d)) => delete_response(d),
        Some(RespOp::ResponseTxn(t)) => txn_response(t),
    });
    format!(
        "TxnResp{{{} succeeded={} responses={ops}}}",
        header(&t.header),
        t.succeeded
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_escape_and_abbreviate() {
        assert_eq!(bytes(b"a/\x00\xff\"\\"), r#""a/\x00\xff\"\\""#);
        assert_eq!(
            bytes(&[b'x'; 100]),
            format!("\"{}\"...(100 bytes)", "x".repeat(16))
        );
    }

    #[test]
    fn requests_show_only_what_is_set() {
        let r = RangeRequest {
            key: b"a".to_vec(),
            range_end: b"b".to_vec(),
            limit: 2,
            sort_order: 2,
            sort_target: 3,
            serializable: true,
            ..Default::default()
        };
        assert_eq!(
            range_request(&r),
            r#"Range ["a", "b") limit=2 sort=DESCEND/MOD serializable"#
        );
        let t = TxnRequest {
            compare: vec![Compare {
                result: 1,
                target: 2,
                key: b"k".to_vec(),
                range_end: Vec::new(),
                target_union: Some(TargetUnion::ModRevision(7)),
            }],
            success: vec![RequestOp {
                request: Some(ReqOp::RequestPut(PutRequest {
                    key: b"k".to_vec(),
                    value: b"v".to_vec(),
                    prev_kv: true,
                    ..Default::default()
                })),
            }],
            failure: vec![RequestOp { request: None }],
        };
        assert_eq!(
            txn_request(&t),
            r#"Txn{if [MOD("k") GREATER mod:7] then [Put "k"="v" prev_kv] else [EmptyOp]}"#
        );
    }

    #[test]
    fn responses_show_compared_fields() {
        let r = RangeResponse {
            header: Some(ResponseHeader {
                revision: 5,
                ..Default::default()
            }),
            kvs: vec![KeyValue {
                key: b"a".to_vec(),
                create_revision: 2,
                mod_revision: 4,
                version: 2,
                value: b"x".to_vec(),
                lease: 0,
            }],
            more: true,
            count: 3,
        };
        assert_eq!(
            range_response(&r),
            r#"RangeResp{rev=5 count=3 more=true kvs=[{"a" c=2 m=4 v=2 val="x" lease=0}]}"#
        );
    }
}
