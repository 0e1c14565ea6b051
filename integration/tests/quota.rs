//! `--quota-backend-bytes` and the NOSPACE alarm, as etcd 3.4 answers them
//! (reliability.md B15), on a real oxcd:
//!
//! 1. With a 4 MiB quota, 100 KB puts succeed until one is refused with
//!    `ResourceExhausted "etcdserver: mvcc: database space exceeded"` (bounded
//!    number of puts), and the member's NOSPACE alarm is raised.
//! 2. While the alarm is active: reads, deletes and compaction work; puts,
//!    txns with puts and further puts still fail; Status lists the alarm in
//!    `errors` in etcd's text form.
//! 3. After delete + compact + disarm (DEACTIVATE), puts work again: oxcd
//!    counts the bytes in use, so no defragmentation is needed.

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
/// 4 MiB of 100 KB values, plus room for LMDB's own pages: far fewer than this.
const MAX_PUTS: usize = 200;

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

    // 1. Fill up to the quota.
    let mut refused = None;
    for i in 0..MAX_PUTS {
        match kv.put(put(&format!("k{i:04}"))).await {
            Ok(_) => {}
            Err(status) => {
                refused = Some((i, status));
                break;
            }
        }
    }
    let (count, status) = refused.expect("a 4 MiB quota refuses some of 200 puts of 100 KB");
    assert!(count >= 10, "refused after only {count} puts");
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
