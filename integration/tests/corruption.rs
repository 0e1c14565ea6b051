//! etcd 3.4's corruption checks on a damaged member.
//!
//! 1. A three-member cluster runs with `--experimental-corrupt-check-time=1s`
//!    (and `--backend-batch-interval=1ms`, so every applied batch is on disk
//!    when a member is killed).
//! 2. Keys are written twice each; a follower is killed -9 and one record of
//!    its store (a superseded revision) is deleted on disk behind its back:
//!    its HashKV now differs at the same revision.
//! 3. Restarted, it serves again, and the leader's periodic check raises the
//!    CORRUPT alarm for it: `etcdctl alarm list` names it, `Status` lists
//!    it, and writes fail with `etcdserver: corrupt cluster` (gRPC
//!    DataLoss), as in etcd.
//! 4. Restarted once more with `--experimental-initial-corrupt-check`, the
//!    damaged member refuses to serve: it exits non-zero saying "<id> found
//!    data inconsistency with peers".

use std::time::{Duration, Instant};

use integration::Kind;
use integration::cluster::{Cluster, ClusterOpts};
use integration::etcdctl::run_etcdctl;
use proto::etcdserverpb::kv_client::KvClient;
use proto::etcdserverpb::maintenance_client::MaintenanceClient;
use proto::etcdserverpb::{PutRequest, StatusRequest};
use storage::mvcc::{BackendReader, LmdbBackend, LmdbOptions, MvccBackend, Revision, WriteBatch};

/// Bound on every wait.
const WAIT: Duration = Duration::from_secs(30);

/// Deletes the record of revision 2 from the store in `data_dir` (the
/// member is stopped).
fn damage(data_dir: &std::path::Path) {
    let kv = data_dir.join("member").join("kv");
    let mut backend = LmdbBackend::open(&kv, &LmdbOptions::new(1 << 30)).expect("open the store");
    let (meta, present) = {
        let reader = backend.reader().expect("reader");
        let meta = reader.meta().expect("meta");
        let present = reader
            .record(Revision { main: 2, sub: 0 })
            .expect("read")
            .is_some();
        (meta, present)
    };
    assert!(
        meta.current_revision > 2 && present,
        "revision 2 must be committed in the store (current {})",
        meta.current_revision
    );
    backend
        .commit(WriteBatch {
            deleted: vec![Revision { main: 2, sub: 0 }],
            meta,
            ..Default::default()
        })
        .expect("delete a record");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_member_raises_corrupt_and_fails_its_initial_check() {
    let mut cluster = Cluster::start(
        Kind::Oxcd,
        ClusterOpts {
            extra_args: vec![
                "--experimental-corrupt-check-time=1s".to_string(),
                "--backend-batch-interval=1ms".to_string(),
            ],
            ..ClusterOpts::default()
        },
    )
    .await
    .expect("cluster");
    let leader = cluster.wait_leader(WAIT).await.expect("leader");
    let mut kv = KvClient::new(cluster.channel(leader).await.expect("channel"));
    let mut last = 0;
    for round in 0..2 {
        for k in 0..10 {
            let put = kv
                .put(PutRequest {
                    key: format!("k{k}").into_bytes(),
                    value: format!("v{round}").into_bytes(),
                    ..Default::default()
                })
                .await
                .expect("put");
            last = put.into_inner().header.expect("header").revision;
        }
    }
    let victim = (leader + 1) % 3;
    cluster
        .wait_revision(victim, last, WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let victim_id = cluster.member_id(victim).expect("id");
    cluster.kill9(victim).expect("kill the victim");
    damage(&cluster.data_dir(victim));
    cluster
        .restart(victim)
        .await
        .expect("restart the damaged member");

    // The leader's periodic check names it.
    let wanted = format!("memberID:{victim_id} alarm:CORRUPT");
    let started = Instant::now();
    loop {
        let out = run_etcdctl(&cluster.client_addr(leader), &["alarm", "list"], None, WAIT)
            .await
            .expect("etcdctl");
        if out.stdout.contains(&wanted) {
            break;
        }
        assert!(
            started.elapsed() < WAIT,
            "no CORRUPT alarm for {victim_id:x}: {out:?}\n{}",
            cluster.log_tail(leader, 30)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let status = MaintenanceClient::new(cluster.channel(leader).await.expect("channel"))
        .status(StatusRequest {})
        .await
        .expect("status")
        .into_inner();
    assert!(
        status.errors.iter().any(|e| e.contains(&wanted)),
        "{:?}",
        status.errors
    );
    let refused = kv
        .put(PutRequest {
            key: b"after".to_vec(),
            value: b"x".to_vec(),
            ..Default::default()
        })
        .await
        .expect_err("writes stop under CORRUPT");
    assert_eq!(
        (refused.code(), refused.message()),
        (tonic::Code::DataLoss, "etcdserver: corrupt cluster")
    );

    // The initial check refuses to serve.
    cluster.kill9(victim).expect("kill the victim");
    cluster.set_args(
        victim,
        vec!["--experimental-initial-corrupt-check".to_string()],
    );
    let restarted = cluster.restart(victim).await;
    assert!(restarted.is_err(), "a damaged member must not serve");
    let log = cluster.current_log(victim);
    assert!(
        log.contains(&format!(
            "{victim_id:x} found data inconsistency with peers"
        )),
        "{}",
        cluster.log_tail(victim, 30)
    );
}
