//! `--quota-backend-bytes` and the NOSPACE alarm, as etcd 3.4 answers them
//! (etcd 3.4.23 refuses a 100 KB put over a 4 MiB quota with
//! `ResourceExhausted`, raises NOSPACE, and keeps serving reads and deletes),
//! on a real oxcd:
//!
//! 1. With a 4 MiB quota, 100 KB puts succeed until exactly the 41st (index
//!    [`REFUSED_AT`]) is refused with `ResourceExhausted "etcdserver: mvcc:
//!    database space exceeded"`, at the point `Status.dbSizeInUse` + the
//!    put's cost first exceeds the quota; the member's NOSPACE alarm is
//!    raised.
//! 2. While the alarm is active: reads, deletes and compaction work; puts,
//!    txns with puts and further puts still fail; Status lists the alarm in
//!    `errors` in etcd's text form.
//! 3. After delete + compact + disarm (DEACTIVATE), puts work again: oxcd
//!    counts the bytes in use, so no defragmentation is needed.
//!
//! Step 1 pins oxcd's own accounting (see [`REFUSED_AT`]); etcd counts its
//! bbolt file's size instead and refuses at another count, so this test is
//! one that `OXCD_BIN=/usr/bin/etcd` is expected to fail at step 1.

use std::time::Duration;

use integration::{Kind, Server, ServerOpts};
use proto::etcdserverpb::alarm_request::AlarmAction;
use proto::etcdserverpb::request_op::Request as Op;
use proto::etcdserverpb::{
    AlarmRequest, AlarmType, CompactionRequest, DeleteRangeRequest, PutRequest, RangeRequest,
    RequestOp, StatusRequest, TxnRequest,
};
use tonic::Code;

const QUOTA: u64 = 4 << 20;
const VALUE: usize = 100_000;
/// Keys are `k0000`, `k0001`, ...
const KEY_LEN: usize = 5;
/// What etcd charges a put against the quota (`etcdserver/quota.go`
/// `costPut`: `kvOverhead` 256 + key + value): 100,261 bytes.
const COST: u64 = 256 + (KEY_LEN + VALUE) as u64;

/// The index of the first refused put (= how many were accepted before it).
///
/// oxcd refuses a put when bytes in use + [`COST`] > quota, bytes in use
/// being the LMDB pages its tables occupy plus the two meta pages
/// (`storage/src/mvcc/lmdb.rs` `size_in_use`, 4 KiB pages):
///
/// - empty store: 5 pages = 20,480 B (2 meta pages, the main DB's leaf, the
///   `meta` and `members` tables' leaves);
/// - each put stores a record of 100,018 B (flags byte + `KeyValue`: key 7,
///   three revisions 2 each, value 3 + 100,000) on overflow pages:
///   ceil((16 B page header + 100,018) / 4096) = 25 pages = 102,400 B;
///   the first put also adds the `records` table's leaf page (4,096 B);
/// - after n >= 1 puts: in use = 24,576 + 102,400 n.
///
/// Put n is refused iff 24,576 + 102,400 n + 100,261 > 4,194,304, i.e.
/// n > 39.7: puts 0..=39 are accepted and put 40 is refused. The count is
/// 40 for any fixed overhead between 0 and 100,443 B (24 pages), so small
/// bookkeeping changes do not move it; one page more or less per put (then
/// 39 or 42), a quota outside 4,118,437..4,220,836 B (-1.8 %..+0.6 %), or no
/// check at all do.
///
/// etcd 3.4.23 on the same sequence, for comparison: it compares the bbolt
/// file's size (free pages included: ~117 KB per put, of which ~111 KB in
/// use) rather than the bytes in use, and refreshes that size only at each
/// backend commit (every 100 ms). With `--backend-batch-limit=1` (a commit per put) it refuses
/// put 37 every time; with its defaults it refused put 42, 58 and 66 in
/// three runs, since puts in flight during a batch are not yet counted.
const REFUSED_AT: usize = 40;
/// Puts tried before concluding the quota is not enforced.
const MAX_PUTS: usize = REFUSED_AT + 10;

fn put(key: &str) -> PutRequest {
    PutRequest {
        key: key.as_bytes().to_vec(),
        value: vec![b'x'; VALUE],
        ..Default::default()
    }
}

fn assert_nospace(status: tonic::Status) {
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert_eq!(
        status.message(),
        "etcdserver: mvcc: database space exceeded"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_raises_nospace_and_disarm_restores_writes() {
    let opts = ServerOpts {
        quota_backend_bytes: Some(QUOTA),
        start_timeout: Duration::from_secs(30),
        ..Default::default()
    };
    let server = Server::start(Kind::Oxcd, opts).await.expect("start oxcd");
    let mut kv = server.kv().await.expect("kv client");
    let mut maintenance = server.maintenance().await.expect("maintenance client");

    // 1. Fill up to the quota, reading the bytes in use before every put.
    let in_use = |s: proto::etcdserverpb::StatusResponse| u64::try_from(s.db_size_in_use).unwrap();
    let mut refused = None;
    for i in 0..MAX_PUTS {
        let before = in_use(
            maintenance
                .status(StatusRequest {})
                .await
                .expect("status")
                .into_inner(),
        );
        match kv.put(put(&format!("k{i:04}"))).await {
            Ok(_) => assert!(
                before + COST <= QUOTA,
                "put {i} accepted with {before} B in use + {COST} > quota {QUOTA}"
            ),
            Err(status) => {
                println!("quota: put {i} refused with {before} B in use (+ {COST} > {QUOTA})");
                assert!(
                    before + COST > QUOTA,
                    "put {i} refused with {before} B in use + {COST} <= quota {QUOTA}"
                );
                refused = Some((i, status));
                break;
            }
        }
    }
    let (count, status) = refused.unwrap_or_else(|| {
        panic!("a {QUOTA} B quota refused none of {MAX_PUTS} puts of {VALUE} B")
    });
    assert_eq!(count, REFUSED_AT, "first refused put (see REFUSED_AT)");
    assert_nospace(status);
    let nospace = AlarmType::Nospace as i32;
    let alarms = maintenance
        .alarm(AlarmRequest {
            action: AlarmAction::Get as i32,
            ..Default::default()
        })
        .await
        .expect("alarm get")
        .into_inner()
        .alarms;
    assert_eq!(alarms.len(), 1, "{alarms:?}");
    assert_eq!(alarms[0].alarm, nospace);
    let member = alarms[0].member_id;
    let status = maintenance
        .status(StatusRequest {})
        .await
        .expect("status")
        .into_inner();
    assert_eq!(
        status.errors,
        vec![format!("memberID:{member} alarm:NOSPACE ")]
    );

    // 2. Capped: reads, deletes and compaction work; adding data does not.
    let first = kv
        .range(RangeRequest {
            key: b"k0000".to_vec(),
            keys_only: true,
            ..Default::default()
        })
        .await
        .expect("range while capped")
        .into_inner();
    assert_eq!(first.kvs.len(), 1);
    let txn = TxnRequest {
        success: vec![RequestOp {
            request: Some(Op::RequestPut(put("t"))),
        }],
        ..Default::default()
    };
    assert_nospace(kv.txn(txn).await.unwrap_err());
    let deleted = kv
        .delete_range(DeleteRangeRequest {
            key: b"k".to_vec(),
            range_end: b"l".to_vec(),
            ..Default::default()
        })
        .await
        .expect("delete while capped")
        .into_inner();
    assert_eq!(deleted.deleted, count as i64);
    let revision = deleted.header.expect("header").revision;
    kv.compact(CompactionRequest {
        revision,
        physical: true,
    })
    .await
    .expect("compact while capped");
    // Still refused: the alarm stays until disarmed, as in etcd.
    assert_nospace(kv.put(put("after-compact")).await.unwrap_err());

    // 3. Disarm, then writes work again without a defragmentation.
    let cleared = maintenance
        .alarm(AlarmRequest {
            action: AlarmAction::Deactivate as i32,
            member_id: member,
            alarm: nospace,
        })
        .await
        .expect("disarm")
        .into_inner()
        .alarms;
    assert_eq!(cleared.len(), 1);
    kv.put(put("after-disarm")).await.expect("put after disarm");
    let status = maintenance
        .status(StatusRequest {})
        .await
        .expect("status")
        .into_inner();
    assert!(status.errors.is_empty(), "{:?}", status.errors);
}
