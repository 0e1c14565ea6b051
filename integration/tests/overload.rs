//! A client flood of the requests that used to skip the mailbox bounds
//! (status, whole-store snapshots, defragmentation) does not stop the member
//! from serving writes:
//!
//! 1. Start one oxcd and write a few keys, so that every snapshot is a real
//!    copy of the store.
//! 2. Fire, all at once, thousands of `Status` calls, dozens of `Snapshot`
//!    streams and `Defragment` calls, while one client keeps putting.
//! 3. Every put succeeds. Every flood request either succeeds or is refused
//!    with etcd's `too many requests`; nothing else (a snapshot stream ends
//!    with its SHA-256, or with that refusal).
//! 4. Afterwards the member answers as before and holds every put.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use integration::{Kind, Server, ServerOpts};
use proto::etcdserverpb::{
    DefragmentRequest, PutRequest, RangeRequest, SnapshotRequest, StatusRequest,
};
use tokio::task::JoinSet;

const STATUS_CALLS: usize = 6_000;
const SNAPSHOT_CALLS: usize = 40;
const DEFRAG_CALLS: usize = 20;
const PUTS: usize = 200;
const DEADLINE: Duration = Duration::from_secs(120);

/// How a flood request ended.
#[derive(Debug, Default)]
struct Outcomes {
    ok: AtomicU64,
    too_many: AtomicU64,
}

fn classify(outcomes: &Outcomes, status: Result<(), tonic::Status>, what: &str) {
    match status {
        Ok(()) => {
            outcomes.ok.fetch_add(1, Ordering::Relaxed);
        }
        Err(s) if s.message() == "etcdserver: too many requests" => {
            outcomes.too_many.fetch_add(1, Ordering::Relaxed);
        }
        Err(s) => panic!("{what}: unexpected answer under load: {s:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_maintenance_requests_does_not_stop_writes() {
    let mut server = Server::start(Kind::Oxcd, ServerOpts::default())
        .await
        .unwrap_or_else(|e| panic!("start oxcd: {e}"));
    let mut kv = server.kv().await.expect("kv client");
    for i in 0..50 {
        kv.put(PutRequest {
            key: format!("seed/{i}").into_bytes(),
            value: vec![b'x'; 1024],
            ..Default::default()
        })
        .await
        .expect("seed put");
    }

    // 2. The flood, on a handful of connections.
    let outcomes = Arc::new(Outcomes::default());
    let mut flood = JoinSet::new();
    let mut channels = Vec::new();
    for _ in 0..4 {
        channels.push(server.channel().await.expect("channel"));
    }
    for i in 0..STATUS_CALLS {
        let mut m = proto::etcdserverpb::maintenance_client::MaintenanceClient::new(
            channels[i % channels.len()].clone(),
        );
        let outcomes = Arc::clone(&outcomes);
        flood.spawn(async move {
            let r = m.status(StatusRequest {}).await.map(drop);
            classify(&outcomes, r, "status");
        });
    }
    for i in 0..SNAPSHOT_CALLS {
        let mut m = proto::etcdserverpb::maintenance_client::MaintenanceClient::new(
            channels[i % channels.len()].clone(),
        );
        let outcomes = Arc::clone(&outcomes);
        flood.spawn(async move {
            let result = async {
                let mut stream = m.snapshot(SnapshotRequest {}).await?.into_inner();
                let mut last = None;
                while let Some(message) = stream.message().await? {
                    last = Some(message);
                }
                let digest = last.expect("a snapshot stream sends something");
                assert_eq!(digest.blob.len(), 32, "the stream ends with its SHA-256");
                Ok::<(), tonic::Status>(())
            }
            .await;
            classify(&outcomes, result, "snapshot");
        });
    }
    for i in 0..DEFRAG_CALLS {
        let mut m = proto::etcdserverpb::maintenance_client::MaintenanceClient::new(
            channels[i % channels.len()].clone(),
        );
        let outcomes = Arc::clone(&outcomes);
        flood.spawn(async move {
            let r = m.defragment(DefragmentRequest {}).await.map(drop);
            classify(&outcomes, r, "defragment");
        });
    }

    // 3. Puts go on meanwhile.
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    for i in 0..PUTS {
        let t = Instant::now();
        kv.put(PutRequest {
            key: format!("during/{i}").into_bytes(),
            value: b"v".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("put {i} during the flood: {e}"));
        slowest = slowest.max(t.elapsed());
    }
    let puts_took = started.elapsed();
    let drained = tokio::time::timeout(DEADLINE, async {
        while let Some(joined) = flood.join_next().await {
            joined.expect("flood task");
        }
    })
    .await;
    assert!(
        drained.is_ok(),
        "the flood did not finish within {DEADLINE:?}"
    );
    let (ok, refused) = (
        outcomes.ok.load(Ordering::Relaxed),
        outcomes.too_many.load(Ordering::Relaxed),
    );
    println!(
        "{PUTS} puts during the flood took {puts_took:?} (slowest {slowest:?}); flood: {ok} served, {refused} refused with 'too many requests'"
    );
    assert_eq!(
        ok + refused,
        (STATUS_CALLS + SNAPSHOT_CALLS + DEFRAG_CALLS) as u64
    );

    // 4. Still serving, nothing lost.
    let all = kv
        .range(RangeRequest {
            key: b"during/".to_vec(),
            range_end: b"during0".to_vec(),
            count_only: true,
            ..Default::default()
        })
        .await
        .expect("range after the flood")
        .into_inner();
    assert_eq!(all.count, PUTS as i64);
    assert!(server.is_running(), "oxcd exited under the flood");
}
