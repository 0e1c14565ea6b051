//! One conformance suite for every MVCC backend.
//!
//! 1. Each case is a generic function over `Case<B>` (a store plus a raft
//!    index counter); `conformance!` instantiates every case once for
//!    [`LmdbBackend`] (in a temp dir) and once for [`MemBackend`].
//! 2. Expected values come from etcd 3.4 semantics; where noted they were
//!    observed on a live etcd 3.4.23 (the HashKV values, the nested-txn and
//!    put-then-delete-from-key outcomes, the negative txn range revision).
//! 3. LMDB-only tests at the end cover reopen (index rebuild, applied index)
//!    and a seeded randomized comparison of the two backends.

use proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use proto::etcdserverpb::request_op::Request;
use proto::etcdserverpb::response_op::Response;
use proto::etcdserverpb::{
    AlarmRequest, CompactionRequest, Compare, DeleteRangeRequest, DeleteRangeResponse,
    LeaseGrantRequest, LeaseRevokeRequest, PutRequest, PutResponse, RangeRequest, RangeResponse,
    RequestOp, ResponseHeader, ResponseOp, TxnRequest, TxnResponse,
};
use proto::internal::InternalRequest;
use proto::internal::internal_request::Request as Internal;
use proto::mvccpb::event::EventType;
use proto::mvccpb::{Event, KeyValue};

use super::{
    Applied, ApplyResponse, BatchLimits, Batched, Lease, LmdbBackend, LmdbOptions, MemBackend,
    MvccBackend, MvccStore,
};
use crate::error::EtcdError;

// ---------------------------------------------------------------- harness

pub(crate) struct Case<B: MvccBackend> {
    pub store: MvccStore<B>,
    pub index: u64,
    pub dir: Option<tempfile::TempDir>,
    /// Every request applied through `apply`, at raft index position + 1.
    pub log: Vec<InternalRequest>,
}

impl Case<LmdbBackend> {
    pub(crate) fn lmdb() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = MvccStore::open(dir.path(), 256 << 20).expect("open lmdb store");
        Self {
            store,
            index: 0,
            dir: Some(dir),
            log: Vec::new(),
        }
    }

    /// Drops the store and opens it again from disk.
    pub(crate) fn reopen(self) -> Self {
        let Case {
            store,
            index,
            dir,
            log,
        } = self;
        // The env must be closed before the same path can be opened again.
        drop(store);
        let path = dir.as_ref().expect("lmdb case has a dir").path();
        let store = MvccStore::open(path, 256 << 20).expect("reopen lmdb store");
        Case {
            store,
            index,
            dir,
            log,
        }
    }
}

impl Case<Batched<LmdbBackend>> {
    /// An LMDB store whose commits are held until an explicit flush (an
    /// interval and limits never reached in a test), so every read goes
    /// through the pending overlay.
    pub(crate) fn batched() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let limits = BatchLimits {
            interval: std::time::Duration::from_secs(3600),
            max_records: usize::MAX,
            max_bytes: usize::MAX,
        };
        let store = MvccStore::open_batched(dir.path(), &LmdbOptions::new(256 << 20), limits)
            .expect("open batched lmdb store");
        Self {
            store,
            index: 0,
            dir: Some(dir),
            log: Vec::new(),
        }
    }
}

impl Case<MemBackend> {
    pub(crate) fn mem() -> Self {
        Self {
            store: MvccStore::in_memory(),
            index: 0,
            dir: None,
            log: Vec::new(),
        }
    }
}

impl<B: MvccBackend> Case<B> {
    fn apply(&mut self, request: Internal) -> Applied {
        self.index += 1;
        let req = InternalRequest {
            id: self.index * 10,
            request: Some(request),
            ..Default::default()
        };
        let mut out = self
            .store
            .apply_batch(&[(self.index, Some(&req))])
            .expect("apply");
        self.log
            .resize(self.index as usize - 1, InternalRequest::default());
        self.log.push(req);
        assert_eq!(out.len(), 1);
        let applied = out.pop().expect("one applied");
        assert_eq!(applied.index, self.index);
        assert_eq!(applied.id, self.index * 10);
        assert_eq!(applied.revision, self.store.current_revision());
        applied
    }

    fn try_put(&mut self, req: PutRequest) -> Result<PutResponse, EtcdError> {
        match self.apply(Internal::Put(req)).result? {
            ApplyResponse::Put(p) => Ok(p),
            other => panic!("unexpected {other:?}"),
        }
    }

    fn put(&mut self, key: &str, value: &str) -> PutResponse {
        self.try_put(put(key, value)).expect("put")
    }

    fn delete(&mut self, key: &str, end: &str) -> DeleteRangeResponse {
        let req = DeleteRangeRequest {
            key: b(key),
            range_end: b(end),
            prev_kv: true,
        };
        match self
            .apply(Internal::DeleteRange(req))
            .result
            .expect("delete")
        {
            ApplyResponse::DeleteRange(d) => d,
            other => panic!("unexpected {other:?}"),
        }
    }

    fn txn(&mut self, req: TxnRequest) -> Result<TxnResponse, EtcdError> {
        match self.apply(Internal::Txn(req)).result? {
            ApplyResponse::Txn(t) => Ok(t),
            other => panic!("unexpected {other:?}"),
        }
    }

    fn compact(&mut self, revision: i64) -> Result<i64, EtcdError> {
        let req = CompactionRequest {
            revision,
            physical: false,
        };
        match self.apply(Internal::Compaction(req)).result? {
            ApplyResponse::Compaction(c) => Ok(c.header.expect("header").revision),
            other => panic!("unexpected {other:?}"),
        }
    }

    fn grant(&mut self, id: i64, ttl: i64) -> Result<(), EtcdError> {
        match self
            .apply(Internal::LeaseGrant(LeaseGrantRequest { ttl, id }))
            .result?
        {
            ApplyResponse::LeaseGrant(g) => {
                assert_eq!((g.id, g.ttl), (id, ttl));
                Ok(())
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    fn revoke(&mut self, id: i64) -> Result<Vec<Event>, EtcdError> {
        let applied = self.apply(Internal::LeaseRevoke(LeaseRevokeRequest { id }));
        match applied.result? {
            ApplyResponse::LeaseRevoke(r) => {
                assert_eq!(
                    r.header.expect("header").revision,
                    self.store.current_revision()
                );
                Ok(applied.events)
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    fn get(&self, key: &str) -> Option<KeyValue> {
        let mut resp = self.store.range(&rreq(key, "")).expect("get");
        assert!(resp.kvs.len() <= 1);
        resp.kvs.pop()
    }

    fn keys(&self, req: &RangeRequest) -> Vec<String> {
        names(&self.store.range(req).expect("range").kvs)
    }
}

fn b(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

fn put(key: &str, value: &str) -> PutRequest {
    PutRequest {
        key: b(key),
        value: b(value),
        ..Default::default()
    }
}

fn rreq(key: &str, end: &str) -> RangeRequest {
    RangeRequest {
        key: b(key),
        range_end: b(end),
        ..Default::default()
    }
}

fn names(kvs: &[KeyValue]) -> Vec<String> {
    kvs.iter()
        .map(|kv| String::from_utf8_lossy(&kv.key).into_owned())
        .collect()
}

fn op_put(key: &str, value: &str) -> RequestOp {
    RequestOp {
        request: Some(Request::RequestPut(put(key, value))),
    }
}

fn op_range(req: RangeRequest) -> RequestOp {
    RequestOp {
        request: Some(Request::RequestRange(req)),
    }
}

fn op_del(key: &str, end: &str) -> RequestOp {
    RequestOp {
        request: Some(Request::RequestDeleteRange(DeleteRangeRequest {
            key: b(key),
            range_end: b(end),
            prev_kv: false,
        })),
    }
}

fn op_txn(txn: TxnRequest) -> RequestOp {
    RequestOp {
        request: Some(Request::RequestTxn(txn)),
    }
}

fn txn(compare: Vec<Compare>, success: Vec<RequestOp>, failure: Vec<RequestOp>) -> TxnRequest {
    TxnRequest {
        compare,
        success,
        failure,
    }
}

fn cmp(key: &str, target: CompareTarget, result: CompareResult, union: TargetUnion) -> Compare {
    Compare {
        result: result as i32,
        target: target as i32,
        key: b(key),
        range_end: vec![],
        target_union: Some(union),
    }
}

fn rev_header(revision: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader {
        revision,
        ..Default::default()
    })
}

// ---------------------------------------------------------------- cases

fn empty_store<B: MvccBackend>(c: &mut Case<B>) {
    assert_eq!(c.store.current_revision(), 1);
    assert_eq!(c.store.compact_revision(), 0);
    assert_eq!(c.store.applied_index(), 0);
    let resp = c.store.range(&rreq("a", "\0")).unwrap();
    assert_eq!(resp.header, rev_header(1));
    assert_eq!((resp.count, resp.more, resp.kvs.len()), (0, false, 0));
    // Observed on etcd 3.4.23: `endpoint hashkv` of an empty store.
    assert_eq!(c.store.hash_kv(0), Ok((1_084_519_789, 1, -1)));
    assert!(c.store.db_size().unwrap() > 0);
    assert!(c.store.db_size_in_use().unwrap() > 0);
    assert!(c.store.leases().is_empty());
}

fn revision_accounting<B: MvccBackend>(c: &mut Case<B>) {
    c.grant(7, 60).unwrap();
    // (operation, revision after it)
    type Op<B> = Box<dyn Fn(&mut Case<B>)>;
    let table: Vec<(&str, Op<B>, i64)> = vec![
        ("lease grant does not bump", Box::new(|_| {}), 1),
        ("first put", Box::new(|c| drop(c.put("a", "1"))), 2),
        (
            "identical put still bumps",
            Box::new(|c| drop(c.put("a", "1"))),
            3,
        ),
        (
            "delete of nothing",
            Box::new(|c| assert_eq!(c.delete("zz", "").deleted, 0)),
            3,
        ),
        (
            "delete",
            Box::new(|c| assert_eq!(c.delete("a", "").deleted, 1)),
            4,
        ),
        (
            "delete again",
            Box::new(|c| assert_eq!(c.delete("a", "").deleted, 0)),
            4,
        ),
        (
            "txn that changes nothing",
            Box::new(|c| {
                let t = txn(
                    vec![cmp(
                        "a",
                        CompareTarget::Version,
                        CompareResult::Greater,
                        TargetUnion::Version(5),
                    )],
                    vec![op_put("x", "1")],
                    vec![op_range(rreq("a", ""))],
                );
                let r = c.txn(t).unwrap();
                assert!(!r.succeeded);
                assert_eq!(r.header, rev_header(4));
            }),
            4,
        ),
        (
            "txn of two puts: one revision",
            Box::new(|c| {
                let r = c
                    .txn(txn(
                        vec![],
                        vec![op_put("b", "1"), op_put("c", "1")],
                        vec![],
                    ))
                    .unwrap();
                assert_eq!(r.header, rev_header(5));
            }),
            5,
        ),
        (
            "revoke of a lease without keys",
            Box::new(|c| drop(c.revoke(7).unwrap())),
            5,
        ),
        (
            "compaction does not bump",
            Box::new(|c| assert_eq!(c.compact(3), Ok(5))),
            5,
        ),
        (
            "failed put does not bump",
            Box::new(|c| {
                assert!(
                    c.try_put(PutRequest {
                        lease: 99,
                        ..put("q", "")
                    })
                    .is_err()
                )
            }),
            5,
        ),
        (
            "delete of two keys: one revision",
            Box::new(|c| assert_eq!(c.delete("b", "d").deleted, 2)),
            6,
        ),
    ];
    for (name, op, want) in table {
        op(c);
        assert_eq!(c.store.current_revision(), want, "{name}");
    }
    // Sub-revisions: b and c share main revision 5.
    let events = c.store.events(5, 5, false).unwrap();
    assert_eq!(events.len(), 2);
    assert!(
        events
            .iter()
            .all(|e| e.kv.as_ref().unwrap().mod_revision == 5)
    );
}

fn put_semantics<B: MvccBackend>(c: &mut Case<B>) {
    let created = c.put("k", "v1");
    assert_eq!(created.header, rev_header(2));
    assert_eq!(created.prev_kv, None);
    let kv = c.get("k").unwrap();
    assert_eq!(
        (
            kv.create_revision,
            kv.mod_revision,
            kv.version,
            kv.value.as_slice()
        ),
        (2, 2, 1, &b"v1"[..])
    );

    let updated = c
        .try_put(PutRequest {
            prev_kv: true,
            ..put("k", "v2")
        })
        .unwrap();
    assert_eq!(updated.prev_kv, Some(kv.clone()));
    let kv2 = c.get("k").unwrap();
    assert_eq!(
        (kv2.create_revision, kv2.mod_revision, kv2.version),
        (2, 3, 2)
    );

    // prev_kv on a new key is absent.
    let fresh = c
        .try_put(PutRequest {
            prev_kv: true,
            ..put("new", "x")
        })
        .unwrap();
    assert_eq!(fresh.prev_kv, None);

    // Leases: unknown lease fails and changes nothing.
    let rev = c.store.current_revision();
    assert_eq!(
        c.try_put(PutRequest {
            lease: 5,
            ..put("k", "v")
        }),
        Err(EtcdError::LeaseNotFound)
    );
    assert_eq!(c.store.current_revision(), rev);
    c.grant(5, 10).unwrap();
    c.grant(6, 10).unwrap();
    c.try_put(PutRequest {
        lease: 5,
        ..put("k", "v3")
    })
    .unwrap();
    assert_eq!(c.store.lease_keys(5), vec![b("k")]);
    assert_eq!(c.get("k").unwrap().lease, 5);

    // ignore_value keeps the value, ignore_lease keeps the lease.
    c.try_put(PutRequest {
        key: b("k"),
        ignore_value: true,
        lease: 6,
        ..Default::default()
    })
    .unwrap();
    let kv = c.get("k").unwrap();
    assert_eq!((kv.value.as_slice(), kv.lease), (&b"v3"[..], 6));
    assert!(c.store.lease_keys(5).is_empty());
    assert_eq!(c.store.lease_keys(6), vec![b("k")]);
    c.try_put(PutRequest {
        ignore_lease: true,
        ..put("k", "v4")
    })
    .unwrap();
    let kv = c.get("k").unwrap();
    assert_eq!(
        (kv.value.as_slice(), kv.lease, kv.version),
        (&b"v4"[..], 6, 5)
    );

    // Lease 0 detaches.
    c.put("k", "v5");
    assert_eq!(c.get("k").unwrap().lease, 0);
    assert!(c.store.lease_keys(6).is_empty());

    // ignore_* on an absent key: KeyNotFound, no revision.
    let rev = c.store.current_revision();
    for req in [
        PutRequest {
            key: b("absent"),
            ignore_value: true,
            ..Default::default()
        },
        PutRequest {
            key: b("absent"),
            ignore_lease: true,
            ..Default::default()
        },
    ] {
        assert_eq!(c.try_put(req), Err(EtcdError::KeyNotFound));
    }
    assert_eq!(c.store.current_revision(), rev);
    assert_eq!(c.get("absent"), None);

    // After a delete the key starts a new life: version 1, new create rev.
    c.delete("k", "");
    let again = c.put("k", "v6");
    let kv = c.get("k").unwrap();
    assert_eq!(
        (kv.version, kv.create_revision),
        (1, again.header.unwrap().revision)
    );
}

fn delete_semantics<B: MvccBackend>(c: &mut Case<B>) {
    // (key, range_end, deleted keys); the store is refilled before each row.
    let table: &[(&str, &str, &[&str])] = &[
        ("a", "", &["a"]),
        ("zz", "", &[]),
        ("a", "b", &["a", "ab"]),
        ("a", "\0", &["a", "ab", "b", "c"]),
        ("b", "\0", &["b", "c"]),
        ("\0", "\0", &["a", "ab", "b", "c"]),
        ("b", "a", &[]),
        ("b", "b", &[]),
        ("ab", "ac", &["ab"]),
    ];
    for &(key, end, want) in table {
        for k in ["a", "ab", "b", "c"] {
            c.put(k, &format!("v-{k}"));
        }
        let before = c.store.current_revision();
        let resp = c.delete(key, end);
        assert_eq!(resp.deleted, want.len() as i64, "delete [{key:?}, {end:?})");
        assert_eq!(names(&resp.prev_kvs), want.to_vec());
        let bump = i64::from(!want.is_empty());
        assert_eq!(resp.header, rev_header(before + bump));
        assert_eq!(c.store.current_revision(), before + bump);
        for k in want {
            assert_eq!(c.get(k), None);
        }
    }
    // Without prev_kv the response carries none.
    c.put("p", "1");
    let applied = c.apply(Internal::DeleteRange(DeleteRangeRequest {
        key: b("p"),
        range_end: vec![],
        prev_kv: false,
    }));
    match applied.result.unwrap() {
        ApplyResponse::DeleteRange(d) => assert_eq!((d.deleted, d.prev_kvs.len()), (1, 0)),
        other => panic!("unexpected {other:?}"),
    }
}

fn range_conventions<B: MvccBackend>(c: &mut Case<B>) {
    for k in ["a", "ab", "a\u{7f}", "b", "c", "\u{1}"] {
        c.put(k, "v");
    }
    let table: &[(&str, &str, &[&str])] = &[
        ("a", "", &["a"]),
        ("nope", "", &[]),
        ("a", "b", &["a", "ab", "a\u{7f}"]),
        ("a", "\0", &["a", "ab", "a\u{7f}", "b", "c"]),
        ("\0", "\0", &["\u{1}", "a", "ab", "a\u{7f}", "b", "c"]),
        ("a\u{7f}", "b", &["a\u{7f}"]),
        ("b", "a", &[]),
        ("b", "b", &[]),
        ("ab", "ac", &["ab"]),
    ];
    for &(key, end, want) in table {
        assert_eq!(
            c.keys(&rreq(key, end)),
            want.to_vec(),
            "range [{key:?}, {end:?})"
        );
        let counted = c
            .store
            .range(&RangeRequest {
                count_only: true,
                ..rreq(key, end)
            })
            .unwrap();
        assert_eq!((counted.count, counted.kvs.len()), (want.len() as i64, 0));
    }
}

fn range_options<B: MvccBackend>(c: &mut Case<B>) {
    // Keys a..e; rev 2..6 create them; then b and d are updated (7, 8).
    for (k, v) in [("a", "5"), ("b", "4"), ("c", "3"), ("d", "2"), ("e", "1")] {
        c.put(k, v);
    }
    c.put("b", "9");
    c.put("d", "0");
    assert_eq!(c.store.current_revision(), 8);
    let all = || rreq("a", "\0");
    let table: Vec<(&str, RangeRequest, &[&str], i64, bool)> = vec![
        ("no limit", all(), &["a", "b", "c", "d", "e"], 5, false),
        (
            "limit 2",
            RangeRequest { limit: 2, ..all() },
            &["a", "b"],
            5,
            true,
        ),
        (
            "limit 5",
            RangeRequest { limit: 5, ..all() },
            &["a", "b", "c", "d", "e"],
            5,
            false,
        ),
        (
            "negative limit",
            RangeRequest { limit: -1, ..all() },
            &["a", "b", "c", "d", "e"],
            5,
            false,
        ),
        (
            "huge limit",
            RangeRequest {
                limit: i64::MAX,
                ..all()
            },
            &["a", "b", "c", "d", "e"],
            5,
            false,
        ),
        (
            "count only",
            RangeRequest {
                count_only: true,
                limit: 1,
                ..all()
            },
            &[],
            5,
            false,
        ),
        (
            "sort by value ascend",
            RangeRequest {
                sort_target: SortTarget::Value as i32,
                sort_order: SortOrder::Ascend as i32,
                ..all()
            },
            &["d", "e", "c", "a", "b"],
            5,
            false,
        ),
        (
            "sort by key descend",
            RangeRequest {
                sort_order: SortOrder::Descend as i32,
                ..all()
            },
            &["e", "d", "c", "b", "a"],
            5,
            false,
        ),
        (
            "sort by mod descend limit 2",
            RangeRequest {
                sort_target: SortTarget::Mod as i32,
                sort_order: SortOrder::Descend as i32,
                limit: 2,
                ..all()
            },
            &["d", "b"],
            5,
            true,
        ),
        (
            "sort by create descend",
            RangeRequest {
                sort_target: SortTarget::Create as i32,
                sort_order: SortOrder::Descend as i32,
                ..all()
            },
            &["e", "d", "c", "b", "a"],
            5,
            false,
        ),
        (
            "version, order NONE means ASCEND, ties keep key order",
            RangeRequest {
                sort_target: SortTarget::Version as i32,
                ..all()
            },
            &["a", "c", "e", "b", "d"],
            5,
            false,
        ),
        (
            "version DESCEND, ties keep key order",
            RangeRequest {
                sort_target: SortTarget::Version as i32,
                sort_order: SortOrder::Descend as i32,
                ..all()
            },
            &["b", "d", "a", "c", "e"],
            5,
            false,
        ),
        (
            "etcd quirk: order NONE fetches limit+1 by key before sorting",
            RangeRequest {
                sort_target: SortTarget::Value as i32,
                limit: 2,
                ..all()
            },
            &["c", "a"],
            5,
            true,
        ),
        (
            "min mod revision",
            RangeRequest {
                min_mod_revision: 6,
                ..all()
            },
            &["b", "d", "e"],
            5,
            false,
        ),
        (
            "max mod revision",
            RangeRequest {
                max_mod_revision: 4,
                ..all()
            },
            &["a", "c"],
            5,
            false,
        ),
        (
            "min create revision",
            RangeRequest {
                min_create_revision: 5,
                ..all()
            },
            &["d", "e"],
            5,
            false,
        ),
        (
            "max create revision",
            RangeRequest {
                max_create_revision: 3,
                ..all()
            },
            &["a", "b"],
            5,
            false,
        ),
        (
            "filter then limit",
            RangeRequest {
                min_mod_revision: 6,
                limit: 1,
                ..all()
            },
            &["b"],
            5,
            true,
        ),
        (
            "past revision",
            RangeRequest {
                revision: 4,
                ..all()
            },
            &["a", "b", "c"],
            3,
            false,
        ),
        (
            "negative revision is latest",
            RangeRequest {
                revision: -3,
                ..all()
            },
            &["a", "b", "c", "d", "e"],
            5,
            false,
        ),
    ];
    for (name, req, want, count, more) in table {
        let resp = c.store.range(&req).unwrap();
        assert_eq!(names(&resp.kvs), want.to_vec(), "{name}");
        assert_eq!((resp.count, resp.more), (count, more), "{name}");
        assert_eq!(
            resp.header,
            rev_header(8),
            "{name}: header is the current revision"
        );
    }
    // Past reads return the values of that revision.
    let old = c
        .store
        .range(&RangeRequest {
            revision: 6,
            ..rreq("b", "")
        })
        .unwrap();
    assert_eq!(old.kvs[0].value, b("4"));
    // keys_only strips values and keeps the rest.
    let ko = c
        .store
        .range(&RangeRequest {
            keys_only: true,
            ..rreq("b", "")
        })
        .unwrap();
    assert_eq!(
        (
            ko.kvs[0].value.len(),
            ko.kvs[0].version,
            ko.kvs[0].mod_revision
        ),
        (0, 2, 7)
    );
    // Future and compacted revisions.
    assert_eq!(
        c.store.range(&RangeRequest {
            revision: 9,
            ..all()
        }),
        Err(EtcdError::FutureRev)
    );
    c.compact(5).unwrap();
    assert_eq!(
        c.store.range(&RangeRequest {
            revision: 4,
            ..all()
        }),
        Err(EtcdError::Compacted)
    );
    let at = c
        .store
        .range(&RangeRequest {
            revision: 5,
            ..all()
        })
        .unwrap();
    assert_eq!(names(&at.kvs), ["a", "b", "c", "d"]);
}

fn txn_compares<B: MvccBackend>(c: &mut Case<B>) {
    c.grant(3, 10).unwrap();
    c.put("k", "m"); // rev 2
    c.put("k", "m"); // rev 3: version 2, create 2, mod 3
    c.try_put(PutRequest {
        lease: 3,
        ..put("l", "x")
    })
    .unwrap(); // rev 4
    use CompareResult::*;
    use CompareTarget::*;
    let table: Vec<(Compare, bool)> = vec![
        (cmp("k", Version, Equal, TargetUnion::Version(2)), true),
        (cmp("k", Version, Greater, TargetUnion::Version(1)), true),
        (cmp("k", Version, Less, TargetUnion::Version(2)), false),
        (cmp("k", Version, NotEqual, TargetUnion::Version(2)), false),
        (
            cmp("k", Create, Equal, TargetUnion::CreateRevision(2)),
            true,
        ),
        (cmp("k", Mod, Equal, TargetUnion::ModRevision(3)), true),
        (cmp("k", Mod, Less, TargetUnion::ModRevision(3)), false),
        (cmp("k", Value, Equal, TargetUnion::Value(b("m"))), true),
        (cmp("k", Value, Greater, TargetUnion::Value(b("a"))), true),
        (cmp("k", Value, Less, TargetUnion::Value(b("a"))), false),
        (cmp("l", Lease, Equal, TargetUnion::Lease(3)), true),
        (cmp("k", Lease, Equal, TargetUnion::Lease(0)), true),
        // A missing key compares as zero...
        (
            cmp("missing", Version, Equal, TargetUnion::Version(0)),
            true,
        ),
        (
            cmp("missing", Create, Equal, TargetUnion::CreateRevision(0)),
            true,
        ),
        (cmp("missing", Mod, Less, TargetUnion::ModRevision(1)), true),
        // ...except VALUE, which is always false on missing keys.
        (
            cmp("missing", Value, Equal, TargetUnion::Value(vec![])),
            false,
        ),
        (
            cmp("missing", Value, NotEqual, TargetUnion::Value(b("x"))),
            false,
        ),
        // Ranges: every key must satisfy.
        (
            Compare {
                range_end: b("m"),
                ..cmp("k", Version, Greater, TargetUnion::Version(0))
            },
            true,
        ),
        (
            Compare {
                range_end: b("m"),
                ..cmp("k", Version, Equal, TargetUnion::Version(2))
            },
            false,
        ),
        (
            Compare {
                range_end: b("\0"),
                ..cmp("a", Mod, Greater, TargetUnion::ModRevision(1))
            },
            true,
        ),
        (
            Compare {
                range_end: b("zz"),
                ..cmp("x", Version, Equal, TargetUnion::Version(0))
            },
            true,
        ),
        (
            Compare {
                range_end: b("zz"),
                ..cmp("x", Value, Equal, TargetUnion::Value(vec![]))
            },
            false,
        ),
    ];
    for (i, (compare, want)) in table.into_iter().enumerate() {
        let t = txn(vec![compare.clone()], vec![op_range(rreq("k", ""))], vec![]);
        let read = c.store.txn_read_only(&t).unwrap();
        assert_eq!(read.succeeded, want, "case {i}: {compare:?}");
        let applied = c.txn(t).unwrap();
        assert_eq!(applied, read, "case {i}: applied and read-only agree");
    }
    // Compares are ANDed.
    let both = vec![
        cmp("k", Version, Equal, TargetUnion::Version(2)),
        cmp("k", Value, Equal, TargetUnion::Value(b("nope"))),
    ];
    assert!(!c.txn(txn(both, vec![], vec![])).unwrap().succeeded);
    assert_eq!(c.store.current_revision(), 4);
}

fn txn_semantics<B: MvccBackend>(c: &mut Case<B>) {
    // Observed on etcd 3.4.23 (revision 1 store): the put and the delete of
    // [a, "\0") (a literal, not a from-key, range for the duplicate check)
    // share revision 2 and the delete removes the just-put key.
    let r = c
        .txn(txn(
            vec![],
            vec![op_put("b", "1"), op_del("a", "\0")],
            vec![],
        ))
        .unwrap();
    assert_eq!(r.header, rev_header(2));
    match &r.responses[1].response {
        Some(Response::ResponseDeleteRange(d)) => {
            assert_eq!((d.deleted, d.header), (1, rev_header(2)))
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(c.get("b"), None);
    c.txn(txn(
        vec![],
        vec![op_put("b", "1"), op_del("\0", "\0")],
        vec![],
    ))
    .unwrap();
    assert_eq!(c.store.current_revision(), 3);

    // Observed: ranges see earlier writes; nested compares see the state
    // before the txn (x absent, so version == 1 is false); inner headers
    // carry only the revision; a nested txn's header is empty.
    let nested = txn(
        vec![cmp(
            "x",
            CompareTarget::Version,
            CompareResult::Equal,
            TargetUnion::Version(1),
        )],
        vec![op_put("y", "s")],
        vec![op_put("y", "f")],
    );
    let r = c
        .txn(txn(
            vec![],
            vec![
                op_put("x", "1"),
                op_range(rreq("x", "")),
                op_txn(nested),
                op_del("zz", ""),
            ],
            vec![],
        ))
        .unwrap();
    let x = KeyValue {
        key: b("x"),
        create_revision: 4,
        mod_revision: 4,
        version: 1,
        value: b("1"),
        lease: 0,
    };
    let expected = TxnResponse {
        header: rev_header(4),
        succeeded: true,
        responses: vec![
            ResponseOp {
                response: Some(Response::ResponsePut(PutResponse {
                    header: rev_header(4),
                    prev_kv: None,
                })),
            },
            ResponseOp {
                response: Some(Response::ResponseRange(RangeResponse {
                    header: rev_header(4),
                    kvs: vec![x],
                    more: false,
                    count: 1,
                })),
            },
            ResponseOp {
                response: Some(Response::ResponseTxn(TxnResponse {
                    header: Some(ResponseHeader::default()),
                    succeeded: false,
                    responses: vec![ResponseOp {
                        response: Some(Response::ResponsePut(PutResponse {
                            header: rev_header(4),
                            prev_kv: None,
                        })),
                    }],
                })),
            },
            ResponseOp {
                response: Some(Response::ResponseDeleteRange(DeleteRangeResponse {
                    header: rev_header(4),
                    deleted: 0,
                    prev_kvs: vec![],
                })),
            },
        ],
    };
    assert_eq!(r, expected);
    assert_eq!(c.get("y").unwrap().value, b("f"));

    // An empty txn and a txn whose delete finds nothing change nothing.
    assert_eq!(
        c.txn(txn(vec![], vec![], vec![])).unwrap().header,
        rev_header(4)
    );
    assert_eq!(
        c.txn(txn(vec![], vec![op_del("nothing", "")], vec![]))
            .unwrap()
            .header,
        rev_header(4)
    );

    // A range before any write in the txn reports the old revision.
    let r = c
        .txn(txn(
            vec![],
            vec![op_range(rreq("x", "")), op_put("z", "1")],
            vec![],
        ))
        .unwrap();
    match &r.responses[0].response {
        Some(Response::ResponseRange(rr)) => assert_eq!(rr.header, rev_header(4)),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(r.header, rev_header(5));

    // An empty RequestOp yields an empty ResponseOp (validation refuses it).
    let r = c
        .txn(txn(vec![], vec![RequestOp { request: None }], vec![]))
        .unwrap();
    assert_eq!(r.responses, vec![ResponseOp { response: None }]);
}

fn txn_atomicity<B: MvccBackend>(c: &mut Case<B>) {
    c.put("a", "1"); // 2
    c.put("a", "2"); // 3
    c.compact(2).unwrap();
    let rev = c.store.current_revision();
    let hash = c.store.hash_kv(0).unwrap();
    let range_at = |revision| {
        op_range(RangeRequest {
            revision,
            ..rreq("a", "")
        })
    };
    let table: Vec<(&str, TxnRequest, EtcdError)> = vec![
        (
            "unknown lease",
            txn(
                vec![],
                vec![
                    op_put("b", "1"),
                    RequestOp {
                        request: Some(Request::RequestPut(PutRequest {
                            lease: 42,
                            ..put("c", "1")
                        })),
                    },
                ],
                vec![],
            ),
            EtcdError::LeaseNotFound,
        ),
        (
            "ignore_value on absent key",
            txn(
                vec![],
                vec![
                    op_put("b", "1"),
                    RequestOp {
                        request: Some(Request::RequestPut(PutRequest {
                            key: b("absent"),
                            ignore_value: true,
                            ..Default::default()
                        })),
                    },
                ],
                vec![],
            ),
            EtcdError::KeyNotFound,
        ),
        (
            "compacted range",
            txn(vec![], vec![op_put("b", "1"), range_at(1)], vec![]),
            EtcdError::Compacted,
        ),
        (
            "future range",
            txn(vec![], vec![op_put("b", "1"), range_at(rev + 1)], vec![]),
            EtcdError::FutureRev,
        ),
        // Observed quirk: a negative revision below the compacted one.
        (
            "negative range revision",
            txn(vec![], vec![op_put("b", "1"), range_at(-2)], vec![]),
            EtcdError::Compacted,
        ),
        (
            "nested failure",
            txn(
                vec![],
                vec![
                    op_put("b", "1"),
                    op_txn(txn(vec![], vec![range_at(1)], vec![])),
                ],
                vec![],
            ),
            EtcdError::Compacted,
        ),
        (
            "put errors come before range errors",
            txn(
                vec![],
                vec![
                    range_at(1),
                    RequestOp {
                        request: Some(Request::RequestPut(PutRequest {
                            lease: 42,
                            ..put("c", "1")
                        })),
                    },
                ],
                vec![],
            ),
            EtcdError::LeaseNotFound,
        ),
    ];
    for (name, t, want) in table {
        assert_eq!(c.txn(t), Err(want.clone()), "{name}");
        assert_eq!(c.store.current_revision(), rev, "{name}: nothing changed");
        assert_eq!(c.store.hash_kv(0).unwrap(), hash, "{name}: nothing changed");
    }
    // A negative revision at -1 is not below the compacted revision of a
    // store never compacted; here (compacted at 2) it is.
    let mut fresh_ok = txn(vec![], vec![range_at(-1)], vec![]);
    assert_eq!(c.store.txn_read_only(&fresh_ok), Err(EtcdError::Compacted));
    fresh_ok.success = vec![range_at(2)];
    assert!(c.store.txn_read_only(&fresh_ok).is_ok());

    // A txn that fails half-way (only possible without the facade's
    // duplicate-key validation) is undone completely.
    c.grant(9, 10).unwrap();
    c.try_put(PutRequest {
        lease: 9,
        ..put("l", "1")
    })
    .unwrap();
    let before = (
        c.store.current_revision(),
        c.store.hash_kv(0).unwrap(),
        c.store.lease_keys(9),
    );
    let half_way = txn(
        vec![],
        vec![
            op_put("new", "1"),
            op_del("l", ""),
            RequestOp {
                request: Some(Request::RequestPut(PutRequest {
                    key: b("l"),
                    ignore_value: true,
                    ..Default::default()
                })),
            },
        ],
        vec![],
    );
    let applied = c.apply(Internal::Txn(half_way));
    assert_eq!(applied.result, Err(EtcdError::KeyNotFound));
    assert!(applied.events.is_empty());
    assert_eq!(
        (
            c.store.current_revision(),
            c.store.hash_kv(0).unwrap(),
            c.store.lease_keys(9)
        ),
        before
    );
    assert_eq!(c.get("new"), None);
    assert_eq!(c.get("l").unwrap().lease, 9);
    c.store.verify_index().unwrap();
    // And the store keeps working after it.
    c.put("new", "2");
    assert_eq!(c.get("new").unwrap().version, 1);
}

fn compaction<B: MvccBackend>(c: &mut Case<B>) {
    c.put("a", "1"); // 2
    c.put("a", "2"); // 3
    c.put("b", "1"); // 4
    c.delete("b", ""); // 5
    c.put("c", "1"); // 6
    assert_eq!(c.compact(7), Err(EtcdError::FutureRev));
    assert_eq!(c.compact(-1), Err(EtcdError::Compacted));
    // Observed: compacting at 0 on a never-compacted store succeeds.
    assert_eq!(c.compact(0), Ok(6));
    assert_eq!(c.compact(0), Err(EtcdError::Compacted));
    assert_eq!(c.compact(5), Ok(6));
    assert_eq!(c.store.compact_revision(), 5);
    assert_eq!(
        c.compact(5),
        Err(EtcdError::Compacted),
        "equal to the compacted revision"
    );
    assert_eq!(c.compact(4), Err(EtcdError::Compacted));
    // a@2 superseded, b's tombstone generation gone: only a@3 and c@6 remain.
    c.store.verify_index().unwrap();
    let events = c.store.events(5, 6, false).unwrap();
    assert_eq!(events.len(), 1);
    let all = c
        .store
        .range(&RangeRequest {
            revision: 5,
            ..rreq("\0", "\0")
        })
        .unwrap();
    assert_eq!(names(&all.kvs), ["a"]);
    assert_eq!(
        c.store.range(&RangeRequest {
            revision: 4,
            ..rreq("a", "")
        }),
        Err(EtcdError::Compacted)
    );
    assert_eq!(c.store.events(4, 6, false), Err(EtcdError::Compacted));
    assert_eq!(c.store.hash_kv(5).map(|h| h.2), Err(EtcdError::Compacted));
    assert_eq!(c.store.hash_kv(7), Err(EtcdError::FutureRev));
    // Compacting at the current revision keeps every live key's latest.
    c.compact(6).unwrap();
    let latest = c.store.range(&rreq("\0", "\0")).unwrap();
    assert_eq!(names(&latest.kvs), ["a", "c"]);
    assert_eq!(latest.kvs[0].version, 2);
    c.store.verify_index().unwrap();
    // Compaction removes deleted keys entirely; the revision never goes back.
    c.delete("a", "");
    c.delete("c", "");
    let rev = c.store.current_revision();
    c.compact(rev).unwrap();
    c.store.verify_index().unwrap();
    assert_eq!(c.store.range(&rreq("\0", "\0")).unwrap().count, 0);
    assert_eq!(c.store.current_revision(), rev);
    c.put("a", "again");
    assert_eq!(c.get("a").unwrap().create_revision, rev + 1);
}

fn hash_kv_matches_etcd<B: MvccBackend>(c: &mut Case<B>) {
    // The history run against etcd 3.4.23; hashes from `endpoint hashkv`.
    c.txn(txn(
        vec![],
        vec![op_put("b", "1"), op_del("a", "\0")],
        vec![],
    ))
    .unwrap();
    c.txn(txn(
        vec![],
        vec![op_put("b", "1"), op_del("\0", "\0")],
        vec![],
    ))
    .unwrap();
    let nested = txn(
        vec![cmp(
            "x",
            CompareTarget::Version,
            CompareResult::Equal,
            TargetUnion::Version(1),
        )],
        vec![op_put("y", "s")],
        vec![op_put("y", "f")],
    );
    c.txn(txn(
        vec![],
        vec![
            op_put("x", "1"),
            op_range(rreq("x", "")),
            op_txn(nested),
            op_del("zz", ""),
        ],
        vec![],
    ))
    .unwrap();
    c.compact(0).unwrap();
    assert_eq!(c.store.hash_kv(0), Ok((1_584_835_769, 4, 0)));
    c.compact(3).unwrap();
    assert_eq!(c.store.hash_kv(0), Ok((3_361_065_386, 4, 3)));
    c.put("x", "2");
    assert_eq!(c.store.hash_kv(0), Ok((2_994_195_856, 5, 3)));
    c.compact(4).unwrap();
    c.put("x", "3");
    assert_eq!(c.store.hash_kv(0), Ok((4_038_562_487, 6, 4)));
    assert_eq!(c.store.hash_kv(5), Ok((3_988_062_967, 6, 4)));
    let x = c.get("x").unwrap();
    assert_eq!((x.create_revision, x.mod_revision, x.version), (4, 6, 3));
}

fn leases<B: MvccBackend>(c: &mut Case<B>) {
    assert_eq!(c.grant(0, 10), Err(EtcdError::LeaseNotFound));
    assert_eq!(c.grant(1, 9_000_000_001), Err(EtcdError::LeaseTtlTooLarge));
    c.grant(1, 9_000_000_000).unwrap();
    assert_eq!(c.grant(1, 5), Err(EtcdError::LeaseExist));
    c.grant(2, 30).unwrap();
    assert_eq!(
        c.store.leases(),
        vec![(1, Lease::granted(9_000_000_000)), (2, Lease::granted(30))]
    );
    assert_eq!(c.store.lease(2), Some(Lease::granted(30)));
    assert_eq!(c.revoke(3), Err(EtcdError::LeaseNotFound));

    for k in ["k3", "k1", "k2"] {
        c.try_put(PutRequest {
            lease: 2,
            ..put(k, "v")
        })
        .unwrap();
    }
    c.put("other", "v");
    assert_eq!(c.store.lease_keys(2), vec![b("k1"), b("k2"), b("k3")]);
    let rev = c.store.current_revision();
    let events = c.revoke(2).unwrap();
    assert_eq!(
        c.store.current_revision(),
        rev + 1,
        "one revision for every key"
    );
    let deleted: Vec<(String, i32, i64, Option<Vec<u8>>)> = events
        .iter()
        .map(|e| {
            let kv = e.kv.as_ref().unwrap();
            (
                String::from_utf8_lossy(&kv.key).into_owned(),
                e.r#type,
                kv.mod_revision,
                e.prev_kv.as_ref().map(|p| p.value.clone()),
            )
        })
        .collect();
    let want: Vec<(String, i32, i64, Option<Vec<u8>>)> = ["k1", "k2", "k3"]
        .iter()
        .map(|k| {
            (
                k.to_string(),
                EventType::Delete as i32,
                rev + 1,
                Some(b("v")),
            )
        })
        .collect();
    assert_eq!(deleted, want);
    assert_eq!(c.store.leases(), vec![(1, Lease::granted(9_000_000_000))]);
    assert!(c.store.lease_keys(2).is_empty());
    assert!(c.get("other").is_some());
    // A revoked lease cannot be used any more; its id can be granted again.
    assert_eq!(
        c.try_put(PutRequest {
            lease: 2,
            ..put("k1", "v")
        }),
        Err(EtcdError::LeaseNotFound)
    );
    c.grant(2, 5).unwrap();
    // Deleting a key detaches it.
    c.try_put(PutRequest {
        lease: 2,
        ..put("d", "v")
    })
    .unwrap();
    c.delete("d", "");
    assert!(c.store.lease_keys(2).is_empty());
}

fn events<B: MvccBackend>(c: &mut Case<B>) {
    let first = c.apply(Internal::Put(put("a", "1")));
    let kv_a1 = KeyValue {
        key: b("a"),
        create_revision: 2,
        mod_revision: 2,
        version: 1,
        value: b("1"),
        lease: 0,
    };
    assert_eq!(
        first.events,
        vec![Event {
            r#type: EventType::Put as i32,
            kv: Some(kv_a1.clone()),
            prev_kv: None
        }]
    );
    let second = c.apply(Internal::Put(put("a", "2")));
    let kv_a2 = KeyValue {
        mod_revision: 3,
        version: 2,
        value: b("2"),
        ..kv_a1.clone()
    };
    assert_eq!(second.events[0].prev_kv, Some(kv_a1));
    assert_eq!(second.events[0].kv, Some(kv_a2.clone()));
    let del = c.apply(Internal::DeleteRange(DeleteRangeRequest {
        key: b("a"),
        range_end: vec![],
        prev_kv: false,
    }));
    assert_eq!(
        del.events,
        vec![Event {
            r#type: EventType::Delete as i32,
            kv: Some(KeyValue {
                key: b("a"),
                mod_revision: 4,
                ..Default::default()
            }),
            prev_kv: Some(kv_a2),
        }]
    );
    // Txn events come in change order; failed requests have none.
    let t = c.apply(Internal::Txn(txn(
        vec![],
        vec![op_put("x", "1"), op_put("w", "1"), op_del("a", "")],
        vec![],
    )));
    assert_eq!(t.events.len(), 2);
    assert_eq!(
        names(
            &t.events
                .iter()
                .map(|e| e.kv.clone().unwrap())
                .collect::<Vec<_>>()
        ),
        ["x", "w"]
    );
    let failed = c.apply(Internal::Put(PutRequest {
        lease: 1,
        ..put("x", "1")
    }));
    assert!(failed.result.is_err() && failed.events.is_empty());
    // Put-then-delete in one txn: the delete's prev_kv is the key before the
    // txn (etcd's watch reads it at mod_revision - 1).
    let t = c.apply(Internal::Txn(txn(
        vec![],
        vec![op_put("x", "2"), op_del("x", "x\0")],
        vec![],
    )));
    assert_eq!(t.events.len(), 2);
    assert_eq!(t.events[1].prev_kv.as_ref().unwrap().value, b("1"));
    assert_eq!(t.events[0].prev_kv.as_ref().unwrap().value, b("1"));

    // Reading events back from storage gives the same kvs.
    let stored = c.store.events(2, c.store.current_revision(), true).unwrap();
    let kinds: Vec<(i32, i64)> = stored
        .iter()
        .map(|e| (e.r#type, e.kv.as_ref().unwrap().mod_revision))
        .collect();
    let put_t = EventType::Put as i32;
    let del_t = EventType::Delete as i32;
    assert_eq!(
        kinds,
        vec![
            (put_t, 2),
            (put_t, 3),
            (del_t, 4),
            (put_t, 5),
            (put_t, 5),
            (put_t, 6),
            (del_t, 6)
        ]
    );
    assert_eq!(stored[2].prev_kv.as_ref().unwrap().value, b("2"));
    assert_eq!(
        stored[2].kv,
        Some(KeyValue {
            key: b("a"),
            mod_revision: 4,
            ..Default::default()
        })
    );
    assert!(c.store.events(7, 9, false).unwrap().is_empty());
}

fn applied_index<B: MvccBackend>(c: &mut Case<B>) {
    let put_a = InternalRequest {
        id: 1,
        request: Some(Internal::Put(put("a", "1"))),
        ..Default::default()
    };
    let alarm = InternalRequest {
        id: 2,
        request: Some(Internal::Alarm(AlarmRequest::default())),
        ..Default::default()
    };
    let put_b = InternalRequest {
        id: 3,
        request: Some(Internal::Put(put("b", "1"))),
        ..Default::default()
    };
    let out = c
        .store
        .apply_batch(&[
            (1, Some(&put_a)),
            (2, None),
            (3, Some(&alarm)),
            (4, Some(&put_b)),
        ])
        .unwrap();
    let summary: Vec<(u64, u64, i64, bool)> = out
        .iter()
        .map(|a| {
            (
                a.index,
                a.id,
                a.revision,
                matches!(a.result, Ok(ApplyResponse::Empty)),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (1, 1, 2, false),
            (2, 0, 2, true),
            // An alarm GET answers an AlarmResponse and bumps nothing.
            (3, 2, 2, false),
            (4, 3, 3, false)
        ]
    );
    assert_eq!(c.store.applied_index(), 4);
    // Re-delivered entries are skipped; new ones apply.
    let put_c = InternalRequest {
        id: 5,
        request: Some(Internal::Put(put("c", "1"))),
        ..Default::default()
    };
    let out = c
        .store
        .apply_batch(&[(3, Some(&alarm)), (4, Some(&put_b)), (5, Some(&put_c))])
        .unwrap();
    assert_eq!(out.iter().map(|a| a.index).collect::<Vec<_>>(), vec![5]);
    assert_eq!(c.get("b").unwrap().version, 1);
    assert_eq!(c.store.current_revision(), 4);
    // An all-skipped batch changes nothing.
    assert!(
        c.store
            .apply_batch(&[(5, Some(&put_c))])
            .unwrap()
            .is_empty()
    );
    // An empty-entries batch only advances the index.
    assert!(c.store.apply_batch(&[(6, None)]).unwrap()[0].result.is_ok());
    assert_eq!(c.store.applied_index(), 6);
    c.index = 6;
}

fn big_batch_and_big_keys<B: MvccBackend>(c: &mut Case<B>) {
    let requests: Vec<InternalRequest> = (0..3000)
        .map(|i| InternalRequest {
            id: i,
            request: Some(Internal::Put(put(
                &format!("key/{:05}", i % 1000),
                &format!("{i}"),
            ))),
            ..Default::default()
        })
        .collect();
    let entries: Vec<(u64, Option<&InternalRequest>)> = requests
        .iter()
        .enumerate()
        .map(|(i, r)| (i as u64 + 1, Some(r)))
        .collect();
    let out = c.store.apply_batch(&entries).unwrap();
    assert_eq!(out.len(), 3000);
    assert_eq!(c.store.current_revision(), 3001);
    let resp = c
        .store
        .range(&RangeRequest {
            limit: 3,
            ..rreq("key/", "key0")
        })
        .unwrap();
    assert_eq!((resp.count, resp.more), (1000, true));
    assert_eq!(c.get("key/00999").unwrap().version, 3);
    c.index = 3000;
    // Keys far beyond LMDB's 511-byte key limit.
    let big_key = "k".repeat(1 << 20);
    let big_value = "v".repeat(1 << 20);
    c.put(&big_key, &big_value);
    let kv = c.get(&big_key).unwrap();
    assert_eq!((kv.key.len(), kv.value.len()), (1 << 20, 1 << 20));
    c.store.verify_index().unwrap();
}

fn copy_to_file<B: MvccBackend>(c: &mut Case<B>) {
    c.grant(4, 40).unwrap();
    c.try_put(PutRequest {
        lease: 4,
        ..put("a", "1")
    })
    .unwrap();
    c.put("b", "1");
    c.put("b", "2");
    c.compact(3).unwrap();
    c.delete("b", "");
    let dir = tempfile::tempdir().unwrap();
    let image_dir = dir.path().join("restored");
    std::fs::create_dir_all(&image_dir).unwrap();
    c.store.copy_to_file(&image_dir.join("data.mdb")).unwrap();
    let copy = MvccStore::open(&image_dir, 64 << 20).unwrap();
    assert_eq!(copy.current_revision(), c.store.current_revision());
    assert_eq!(copy.compact_revision(), c.store.compact_revision());
    assert_eq!(copy.applied_index(), c.store.applied_index());
    assert_eq!(copy.hash_kv(0), c.store.hash_kv(0));
    assert_eq!(copy.leases(), c.store.leases());
    assert_eq!(copy.lease_keys(4), vec![b("a")]);
    for rev in [0, 3, 4, 5] {
        let req = RangeRequest {
            revision: rev,
            ..rreq("\0", "\0")
        };
        assert_eq!(copy.range(&req), c.store.range(&req), "range at {rev}");
    }
}

fn whole_store_hash<B: MvccBackend>(c: &mut Case<B>) {
    let empty = c.store.hash().unwrap();
    c.put("a", "1");
    let one = c.store.hash().unwrap();
    assert_ne!(empty, one);
    // A request that changes nothing changes no hash; the applied index
    // moving on does not count.
    let unchanged = c.delete("zzz", "");
    assert_eq!(unchanged.deleted, 0);
    assert_eq!(c.store.hash().unwrap(), one);
    c.grant(3, 30).unwrap();
    assert_ne!(c.store.hash().unwrap(), one);
}

fn alarm_req(action: i32, member: u64, alarm: i32) -> Internal {
    Internal::Alarm(AlarmRequest {
        action,
        member_id: member,
        alarm,
    })
}

fn alarm_response(applied: Applied) -> Vec<(u64, i32)> {
    match applied.result {
        Ok(ApplyResponse::Alarm(r)) => r.alarms.iter().map(|a| (a.member_id, a.alarm)).collect(),
        other => panic!("not an alarm response: {other:?}"),
    }
}

fn alarms<B: MvccBackend>(c: &mut Case<B>) {
    // AlarmAction GET=0, ACTIVATE=1, DEACTIVATE=2; AlarmType NOSPACE=1, CORRUPT=2.
    c.put("a", "1");
    c.grant(7, 60).unwrap();
    assert_eq!(alarm_response(c.apply(alarm_req(1, 9, 1))), vec![(9, 1)]);
    // Raising it again answers it again and changes nothing.
    assert_eq!(alarm_response(c.apply(alarm_req(1, 9, 1))), vec![(9, 1)]);
    assert_eq!(alarm_response(c.apply(alarm_req(0, 0, 0))), vec![(9, 1)]);
    assert_eq!(c.store.alarms(), vec![(9, 1)]);

    // NOSPACE: data-adding requests fail, deletes and compaction work.
    let rev = c.store.current_revision();
    assert_eq!(c.try_put(put("b", "1")).unwrap_err(), EtcdError::NoSpace);
    assert_eq!(c.grant(8, 60).unwrap_err(), EtcdError::NoSpace);
    let with_put = txn(vec![], vec![], vec![op_put("b", "1")]);
    assert_eq!(c.txn(with_put).unwrap_err(), EtcdError::NoSpace);
    let reads_only = txn(vec![], vec![op_range(rreq("a", ""))], vec![]);
    assert!(c.txn(reads_only).is_ok());
    assert_eq!(c.store.current_revision(), rev);
    assert_eq!(c.delete("a", "").deleted, 1);
    assert!(c.compact(c.store.current_revision()).is_ok());
    assert!(c.revoke(7).is_ok());

    // Disarm: writes work again; clearing an absent alarm answers nothing.
    assert_eq!(alarm_response(c.apply(alarm_req(2, 9, 1))), vec![(9, 1)]);
    assert_eq!(alarm_response(c.apply(alarm_req(2, 9, 1))), vec![]);
    assert!(c.try_put(put("b", "1")).is_ok());

    // CORRUPT: every KV and lease write fails.
    c.apply(alarm_req(1, 4, 2));
    assert_eq!(c.try_put(put("c", "1")).unwrap_err(), EtcdError::Corrupt);
    let del = c.apply(Internal::DeleteRange(DeleteRangeRequest {
        key: b("b"),
        ..Default::default()
    }));
    assert_eq!(del.result.unwrap_err(), EtcdError::Corrupt);
    // GET filtered by member and by type.
    c.apply(alarm_req(1, 9, 1));
    assert_eq!(alarm_response(c.apply(alarm_req(0, 4, 0))), vec![(4, 2)]);
    assert_eq!(alarm_response(c.apply(alarm_req(0, 0, 1))), vec![(9, 1)]);
}

/// A byte budget cuts the window at a revision boundary, never inside a
/// revision, and says how far it got.
fn events_window_budget<B: MvccBackend>(c: &mut Case<B>) {
    c.put("a", &"x".repeat(100)); // 2
    c.delete("a", ""); // 3: a tombstone
    c.put("b", &"y".repeat(100)); // 4
    c.delete("\0", "\0"); // 5: one revision deleting b
    c.put("c", "z"); // 6
    let (all, last) = c.store.events_window(2, 6, usize::MAX, false).unwrap();
    assert_eq!((all.len(), last), (5, 6));
    let (cut, last) = c.store.events_window(2, 6, 50, false).unwrap();
    assert_eq!((cut.len(), last), (1, 2), "over budget after revision 2");
    let (cut, last) = c.store.events_window(3, 6, 50, true).unwrap();
    let revisions: Vec<i64> = cut
        .iter()
        .map(|e| e.kv.as_ref().unwrap().mod_revision)
        .collect();
    assert_eq!((revisions, last), (vec![3, 4], 4));
    assert!(cut[0].prev_kv.is_some(), "the delete's previous value");
    let (none, last) = c.store.events_window(7, 6, 10, false).unwrap();
    assert_eq!((none.len(), last), (0, 6));
}

/// The lessor's upkeep: checkpoints record remaining TTLs of existing
/// leases, an expiry revokes the lease with its keys
/// in one revision, and an expiry of a lease already gone changes nothing.
fn lease_upkeep<B: MvccBackend>(c: &mut Case<B>) {
    use proto::etcdserverpb::LeaseCheckpoint;
    use proto::internal::LeaseUpkeep;
    c.grant(5, 30).unwrap();
    c.try_put(PutRequest {
        lease: 5,
        ..put("held", "v")
    })
    .unwrap();
    let checkpoint = |id, remaining_ttl| LeaseCheckpoint { id, remaining_ttl };
    let applied = c.apply(Internal::LeaseUpkeep(LeaseUpkeep {
        term: 1,
        expire: 0,
        checkpoints: vec![checkpoint(5, 12), checkpoint(99, 3)],
    }));
    assert_eq!(applied.result, Ok(ApplyResponse::Empty));
    assert_eq!(
        c.store.lease(5),
        Some(Lease {
            ttl: 30,
            remaining_ttl: 12
        })
    );
    assert_eq!(c.store.lease(99), None, "no lease made up by a checkpoint");
    let before = c.store.current_revision();
    let expired = c.apply(Internal::LeaseUpkeep(LeaseUpkeep {
        term: 1,
        expire: 5,
        checkpoints: vec![],
    }));
    assert_eq!(expired.revision, before + 1);
    assert_eq!(expired.events.len(), 1, "the held key's delete event");
    assert_eq!(c.store.lease(5), None);
    let again = c.apply(Internal::LeaseUpkeep(LeaseUpkeep {
        term: 1,
        expire: 5,
        checkpoints: vec![],
    }));
    assert_eq!((again.revision, again.events.len()), (before + 1, 0));
}

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod lmdb_backend {
            $(
                #[test]
                fn $case() {
                    let mut c = super::Case::lmdb();
                    super::$case(&mut c);
                    c.store.verify_index().unwrap();
                }
            )*
        }
        mod batched_lmdb_backend {
            $(
                #[test]
                fn $case() {
                    let mut c = super::Case::batched();
                    super::$case(&mut c);
                    c.store.verify_index().unwrap();
                    // Written out, the same state reads back alike.
                    let before = super::observe(&c.store);
                    c.store.flush().unwrap();
                    assert_eq!(super::observe(&c.store), before);
                }
            )*
        }
        mod mem_backend {
            $(
                #[test]
                fn $case() {
                    let mut c = super::Case::mem();
                    super::$case(&mut c);
                    c.store.verify_index().unwrap();
                }
            )*
        }
    };
}

conformance!(
    empty_store,
    revision_accounting,
    put_semantics,
    delete_semantics,
    range_conventions,
    range_options,
    txn_compares,
    txn_semantics,
    txn_atomicity,
    compaction,
    hash_kv_matches_etcd,
    leases,
    lease_upkeep,
    events,
    events_window_budget,
    applied_index,
    big_batch_and_big_keys,
    copy_to_file,
    alarms,
    whole_store_hash,
);

// ---------------------------------------------------------------- LMDB only

/// Everything observable about a store, for before/after comparisons.
fn observe<B: MvccBackend>(store: &MvccStore<B>) -> Vec<String> {
    let mut out = vec![
        format!(
            "rev {} compact {} applied {}",
            store.current_revision(),
            store.compact_revision(),
            store.applied_index()
        ),
        format!("hash {:?}", store.hash_kv(0)),
        format!("leases {:?}", store.leases()),
    ];
    for (id, _) in store.leases() {
        out.push(format!("lease {id} keys {:?}", store.lease_keys(id)));
    }
    for rev in store.compact_revision().max(1)..=store.current_revision() {
        let resp = store.range(&RangeRequest {
            revision: rev,
            ..rreq("\0", "\0")
        });
        out.push(format!("at {rev}: {resp:?}"));
    }
    out
}

#[test]
fn lmdb_reopen_rebuilds_index_and_honours_applied_index() {
    let mut c = Case::lmdb();
    c.grant(5, 10).unwrap();
    c.try_put(PutRequest {
        lease: 5,
        ..put("a", "1")
    })
    .unwrap();
    c.put("b", "1");
    c.put("b", "2");
    c.delete("b", "");
    c.put("b", "3");
    c.put("c", "1");
    c.compact(4).unwrap();
    c.txn(txn(vec![], vec![op_put("d", "1"), op_del("c", "")], vec![]))
        .unwrap();
    let before = observe(&c.store);
    let rev = c.store.current_revision();

    let mut c = c.reopen();
    assert_eq!(observe(&c.store), before);
    c.store.verify_index().unwrap();

    // Re-delivering every applied entry (a restart replays the raft log
    // from the start) is a no-op.
    let entries: Vec<(u64, Option<&InternalRequest>)> = c
        .log
        .iter()
        .enumerate()
        .map(|(i, r)| (i as u64 + 1, Some(r)))
        .collect();
    assert!(c.store.apply_batch(&entries).unwrap().is_empty());
    assert_eq!(observe(&c.store), before);

    // The revision continues; the lease still owns its key.
    assert_eq!(c.put("e", "1").header, rev_header(rev + 1));
    let events = c.revoke(5).unwrap();
    assert_eq!(
        names(
            &events
                .iter()
                .map(|e| e.kv.clone().unwrap())
                .collect::<Vec<_>>()
        ),
        ["a"]
    );

    // A fully compacted store keeps its revision across a reopen.
    c.delete("\0", "\0");
    let rev = c.store.current_revision();
    c.compact(rev).unwrap();
    let c = c.reopen();
    assert_eq!(c.store.current_revision(), rev);
    assert_eq!(c.store.compact_revision(), rev);
}

#[test]
fn lmdb_failed_commit_leaves_committed_state() {
    // A map too small for the batch: the commit fails, the store rebuilds
    // its memory from what is committed and keeps serving.
    let dir = tempfile::tempdir().unwrap();
    let mut store = MvccStore::open(dir.path(), 1 << 20).unwrap();
    let small = InternalRequest {
        id: 1,
        request: Some(Internal::Put(put("a", "1"))),
        ..Default::default()
    };
    store.apply_batch(&[(1, Some(&small))]).unwrap();
    let before = observe(&store);
    let big: Vec<InternalRequest> = (0..40)
        .map(|i| InternalRequest {
            id: i,
            request: Some(Internal::Put(put(&format!("k{i}"), &"v".repeat(64 << 10)))),
            ..Default::default()
        })
        .collect();
    let entries: Vec<(u64, Option<&InternalRequest>)> = big
        .iter()
        .enumerate()
        .map(|(i, r)| (i as u64 + 2, Some(r)))
        .collect();
    assert!(store.apply_batch(&entries).is_err());
    assert_eq!(observe(&store), before);
    store.verify_index().unwrap();
    let next = InternalRequest {
        id: 2,
        request: Some(Internal::Put(put("b", "1"))),
        ..Default::default()
    };
    let out = store.apply_batch(&[(2, Some(&next))]).unwrap();
    assert_eq!(out[0].revision, 3);
}

#[test]
fn batched_reopen_keeps_what_was_flushed_and_loses_the_rest_together() {
    // A crash between flushes: the store reopens at the last flush, with the
    // applied index of that flush, so raft replays exactly what was lost.
    let dir = tempfile::tempdir().unwrap();
    let limits = BatchLimits {
        interval: std::time::Duration::from_secs(3600),
        max_records: usize::MAX,
        max_bytes: usize::MAX,
    };
    let options = LmdbOptions::new(64 << 20);
    let req = |id: u64, k: &str| InternalRequest {
        id,
        request: Some(Internal::Put(put(k, "v"))),
        ..Default::default()
    };
    let (a, b) = (req(1, "a"), req(2, "b"));
    {
        let mut store = MvccStore::open_batched(dir.path(), &options, limits).unwrap();
        store.apply_batch(&[(1, Some(&a))]).unwrap();
        store.flush().unwrap();
        store.apply_batch(&[(2, Some(&b))]).unwrap();
        assert_eq!(store.applied_index(), 2);
        assert_eq!(store.range(&rreq("b", "")).unwrap().count, 1);
        // Dropped without close: nothing more reaches the disk.
    }
    let mut store = MvccStore::open_batched(dir.path(), &options, limits).unwrap();
    assert_eq!(store.applied_index(), 1);
    assert_eq!(store.current_revision(), 2);
    assert_eq!(store.range(&rreq("a", "")).unwrap().count, 1);
    assert_eq!(store.range(&rreq("b", "")).unwrap().count, 0);
    // The replay gives the same result as the first time.
    let again = store.apply_batch(&[(2, Some(&b))]).unwrap();
    assert_eq!(again[0].revision, 3);
    // An image is always of the whole state: pending commits are written
    // first.
    let image = dir.path().join("image.mdb");
    store.copy_to_file(&image).unwrap();
    drop(store);
    let store = MvccStore::open_batched(dir.path(), &options, limits).unwrap();
    assert_eq!(store.applied_index(), 2);
}

#[test]
fn batched_writes_when_the_interval_or_a_limit_is_reached() {
    let dir = tempfile::tempdir().unwrap();
    let limits = BatchLimits {
        interval: std::time::Duration::from_secs(3600),
        max_records: 3,
        max_bytes: usize::MAX,
    };
    let mut store =
        MvccStore::open_batched(dir.path(), &LmdbOptions::new(64 << 20), limits).unwrap();
    let reqs: Vec<InternalRequest> = (0..3)
        .map(|i| InternalRequest {
            id: i + 1,
            request: Some(Internal::Put(put(&format!("k{i}"), "v"))),
            ..Default::default()
        })
        .collect();
    store
        .apply_batch(&[(1, Some(&reqs[0])), (2, Some(&reqs[1]))])
        .unwrap();
    assert!(!store.flush_due());
    store.apply_batch(&[(3, Some(&reqs[2]))]).unwrap();
    // The third record reached the limit.
    assert!(store.flush_due());
    store.flush_if_due().unwrap();
    assert!(!store.flush_due());
    drop(store);
    let mut store = MvccStore::open_batched(
        dir.path(),
        &LmdbOptions::new(64 << 20),
        BatchLimits {
            interval: std::time::Duration::ZERO,
            ..limits
        },
    )
    .unwrap();
    assert_eq!(store.applied_index(), 3);
    // With a zero interval, every commit is due at once.
    let next = InternalRequest {
        id: 9,
        request: Some(Internal::Put(put("z", "v"))),
        ..Default::default()
    };
    store.apply_batch(&[(4, Some(&next))]).unwrap();
    assert!(store.flush_due());
    store.flush_if_due().unwrap();
    drop(store);
    let store = MvccStore::open(dir.path(), 64 << 20).unwrap();
    assert_eq!(store.applied_index(), 4);
}

#[test]
fn batched_sizes_count_pending_records_as_lmdb_will_store_them() {
    // The quota reads the bytes in use between flushes: pending records
    // must count as the pages they will take (100 KB values go to overflow
    // pages), and a compaction's deletions are written at once so that the
    // bytes they free count at once.
    let dir = tempfile::tempdir().unwrap();
    let limits = BatchLimits {
        interval: std::time::Duration::from_secs(3600),
        max_records: usize::MAX,
        max_bytes: usize::MAX,
    };
    let mut store =
        MvccStore::open_batched(dir.path(), &LmdbOptions::new(64 << 20), limits).unwrap();
    let big = |id: u64, k: &str| InternalRequest {
        id,
        request: Some(Internal::Put(put(k, &"x".repeat(100_000)))),
        ..Default::default()
    };
    let (a, b, c) = (big(1, "a"), big(2, "b"), big(3, "c"));
    store.apply_batch(&[(1, Some(&a))]).unwrap();
    store.flush().unwrap();
    let flushed = store.db_size_in_use().unwrap();
    store.apply_batch(&[(2, Some(&b)), (3, Some(&c))]).unwrap();
    let estimated = store.db_size_in_use().unwrap();
    store.flush().unwrap();
    let written = store.db_size_in_use().unwrap();
    assert_eq!(
        estimated - flushed,
        2 * 25 * 4096,
        "two records of 25 pages"
    );
    assert!(
        (0..=4096).contains(&(written - estimated)),
        "estimate {estimated} vs written {written}"
    );
    let compact = InternalRequest {
        id: 4,
        request: Some(Internal::Compaction(CompactionRequest {
            revision: 5,
            physical: false,
        })),
        ..Default::default()
    };
    // "a" again at revision 5, then a compaction at 5 drops "a" at 2.
    let overwrite = big(5, "a");
    store
        .apply_batch(&[(4, Some(&overwrite)), (5, Some(&compact))])
        .unwrap();
    assert!(
        store.flush_due(),
        "a compaction's deletions are due at once"
    );
}

mod random {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    const KEYS: &[&str] = &["a", "a/1", "a/2", "b", "b/1", "c", "d", "e"];

    fn key(rng: &mut StdRng) -> String {
        KEYS[rng.gen_range(0..KEYS.len())].to_string()
    }

    fn end(rng: &mut StdRng, key: &str) -> String {
        match rng.gen_range(0..4) {
            0 => String::new(),
            1 => "\0".to_string(),
            2 => format!("{key}\u{7f}"),
            _ => KEYS[rng.gen_range(0..KEYS.len())].to_string(),
        }
    }

    fn put_req(rng: &mut StdRng) -> PutRequest {
        let ignore_value = rng.gen_bool(0.1);
        let ignore_lease = rng.gen_bool(0.1);
        PutRequest {
            key: b(&key(rng)),
            value: if ignore_value {
                vec![]
            } else {
                b(&format!("v{}", rng.gen_range(0..5)))
            },
            lease: if ignore_lease || rng.gen_bool(0.6) {
                0
            } else {
                rng.gen_range(1..5)
            },
            prev_kv: rng.gen_bool(0.3),
            ignore_value,
            ignore_lease,
        }
    }

    fn range_req(rng: &mut StdRng, current: i64) -> RangeRequest {
        let k = key(rng);
        RangeRequest {
            range_end: b(&end(rng, &k)),
            key: b(&k),
            limit: rng.gen_range(-1..4),
            revision: if rng.gen_bool(0.7) {
                0
            } else {
                rng.gen_range(-2..current + 2)
            },
            sort_order: rng.gen_range(0..3),
            sort_target: rng.gen_range(0..5),
            keys_only: rng.gen_bool(0.2),
            count_only: rng.gen_bool(0.1),
            min_mod_revision: if rng.gen_bool(0.2) {
                rng.gen_range(0..current + 1)
            } else {
                0
            },
            max_create_revision: if rng.gen_bool(0.2) {
                rng.gen_range(0..current + 1)
            } else {
                0
            },
            ..Default::default()
        }
    }

    fn compare(rng: &mut StdRng, current: i64) -> Compare {
        let k = key(rng);
        let target = rng.gen_range(0..5);
        let union = match target {
            0 => TargetUnion::Version(rng.gen_range(0..4)),
            1 => TargetUnion::CreateRevision(rng.gen_range(0..current + 1)),
            2 => TargetUnion::ModRevision(rng.gen_range(0..current + 1)),
            3 => TargetUnion::Value(b(&format!("v{}", rng.gen_range(0..5)))),
            _ => TargetUnion::Lease(rng.gen_range(0..5)),
        };
        Compare {
            result: rng.gen_range(0..4),
            target,
            range_end: if rng.gen_bool(0.3) {
                b(&end(rng, &k))
            } else {
                vec![]
            },
            key: b(&k),
            target_union: Some(union),
        }
    }

    fn ops(rng: &mut StdRng, current: i64, depth: u32) -> Vec<RequestOp> {
        (0..rng.gen_range(0..4))
            .map(|_| {
                let request = match rng.gen_range(0..10) {
                    0..=3 => Request::RequestPut(put_req(rng)),
                    4..=5 => {
                        let k = key(rng);
                        Request::RequestDeleteRange(DeleteRangeRequest {
                            range_end: b(&end(rng, &k)),
                            key: b(&k),
                            prev_kv: rng.gen_bool(0.5),
                        })
                    }
                    6..=8 => Request::RequestRange(range_req(rng, current)),
                    _ if depth < 2 => Request::RequestTxn(txn_req(rng, current, depth + 1)),
                    _ => Request::RequestRange(range_req(rng, current)),
                };
                RequestOp {
                    request: Some(request),
                }
            })
            .collect()
    }

    fn txn_req(rng: &mut StdRng, current: i64, depth: u32) -> TxnRequest {
        TxnRequest {
            compare: (0..rng.gen_range(0..3))
                .map(|_| compare(rng, current))
                .collect(),
            success: ops(rng, current, depth),
            failure: ops(rng, current, depth),
        }
    }

    fn request(rng: &mut StdRng, current: i64, compacted: i64) -> Internal {
        match rng.gen_range(0..20) {
            0..=6 => Internal::Put(put_req(rng)),
            7..=8 => {
                let k = key(rng);
                Internal::DeleteRange(DeleteRangeRequest {
                    range_end: b(&end(rng, &k)),
                    key: b(&k),
                    prev_kv: rng.gen_bool(0.5),
                })
            }
            9..=14 => {
                let mut t = txn_req(rng, current, 0);
                // Mostly what the facade lets through; sometimes not, to
                // exercise the half-way rollback as well.
                while rng.gen_bool(0.8) && crate::mvcc::validate::txn(&t, 128).is_err() {
                    t = txn_req(rng, current, 0);
                }
                Internal::Txn(t)
            }
            15 => Internal::Compaction(CompactionRequest {
                revision: rng.gen_range(compacted.max(0)..current + 2),
                physical: false,
            }),
            16..=17 => Internal::LeaseGrant(LeaseGrantRequest {
                ttl: rng.gen_range(1..100),
                id: rng.gen_range(0..5),
            }),
            _ => Internal::LeaseRevoke(LeaseRevokeRequest {
                id: rng.gen_range(1..6),
            }),
        }
    }

    #[test]
    fn lmdb_and_memory_agree_on_a_random_history() {
        let seed = std::env::var("MVCC_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| rand::thread_rng().r#gen::<u64>());
        println!(
            "lmdb_and_memory_agree_on_a_random_history: seed {seed} (set MVCC_SEED to replay)"
        );
        let mut rng = StdRng::seed_from_u64(seed);
        let mut lmdb = Case::lmdb();
        let mut mem = Case::mem();
        // Batched commits, written out at random moments: every read must
        // see the same state whatever is still pending.
        let mut batched = Case::batched();
        let mut index = 0u64;
        let (mut ok, mut refused) = (0, 0);
        for step in 0..1200 {
            let current = mem.store.current_revision();
            let compacted = mem.store.compact_revision();
            let batch: Vec<InternalRequest> = (0..rng.gen_range(1..6))
                .map(|i| InternalRequest {
                    id: index + i + 1,
                    request: Some(request(&mut rng, current, compacted)),
                    ..Default::default()
                })
                .collect();
            let entries: Vec<(u64, Option<&InternalRequest>)> = batch
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    (
                        index + i as u64 + 1,
                        if rng.gen_bool(0.05) { None } else { Some(r) },
                    )
                })
                .collect();
            index += batch.len() as u64;
            let on_lmdb = lmdb.store.apply_batch(&entries).expect("lmdb apply");
            let on_mem = mem.store.apply_batch(&entries).expect("mem apply");
            let on_batched = batched.store.apply_batch(&entries).expect("batched apply");
            assert_eq!(on_lmdb, on_mem, "seed {seed} step {step}: {entries:?}");
            assert_eq!(on_batched, on_mem, "seed {seed} step {step}: {entries:?}");
            if rng.gen_bool(0.1) {
                batched.store.flush().expect("batched flush");
            }
            for a in &on_mem {
                if a.result.is_ok() {
                    ok += 1
                } else {
                    refused += 1
                }
            }
            if step % 25 == 0 {
                let current = mem.store.current_revision();
                for _ in 0..5 {
                    let req = range_req(&mut rng, current);
                    assert_eq!(
                        lmdb.store.range(&req),
                        mem.store.range(&req),
                        "seed {seed} step {step}: {req:?}"
                    );
                }
                let t = TxnRequest {
                    compare: vec![compare(&mut rng, current)],
                    success: vec![op_range(range_req(&mut rng, current))],
                    failure: vec![op_range(range_req(&mut rng, current))],
                };
                assert_eq!(
                    lmdb.store.txn_read_only(&t),
                    mem.store.txn_read_only(&t),
                    "seed {seed} step {step}"
                );
                assert_eq!(
                    observe(&lmdb.store),
                    observe(&mem.store),
                    "seed {seed} step {step}"
                );
                assert_eq!(
                    observe(&batched.store),
                    observe(&mem.store),
                    "seed {seed} step {step}"
                );
                assert_eq!(
                    batched.store.hash().unwrap(),
                    mem.store.hash().unwrap(),
                    "seed {seed} step {step}"
                );
                let from = mem.store.compact_revision().max(1);
                assert_eq!(
                    lmdb.store.events(from, current, true),
                    mem.store.events(from, current, true),
                    "seed {seed} step {step}"
                );
                lmdb.store.verify_index().unwrap();
                mem.store.verify_index().unwrap();
                batched.store.verify_index().unwrap();
            }
            if step % 300 == 299 {
                lmdb = lmdb.reopen();
            }
        }
        println!("applied {ok} requests, {refused} refused with a client error");
        assert!(
            ok > 1000 && refused > 50,
            "the generator exercises both paths"
        );
    }
}
