//! Periodic auto-compaction on etcd's schedule, against oxcd and etcd 3.4
//! alike (`--auto-compaction-retention=2s`).
//!
//! 1. A writer puts one key at a steady pace and records when it sent each
//!    put and the revision it got.
//! 2. The test polls the compacted revision (the smallest revision a Range
//!    still reads, found by bisection) until it has advanced twice, bounded.
//! 3. etcd's rule: a periodic compaction compacts at the revision sampled a
//!    whole period earlier. A put sent after that sample got a higher
//!    revision, so whenever the compacted revision is seen, it is at most the
//!    revision of the first put sent one period before the observation. That
//!    holds however slow the machine is; nothing is timed.
//!
//! The revision mode runs on etcd's fixed 5-minute schedule, so its test
//! waits that long (both servers side by side, idle meanwhile): with
//! `--auto-compaction-retention=10`, the first check after the writes
//! compacts at exactly `revision - 10` on both.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use integration::{Kind, Server, ServerOpts};
use proto::etcdserverpb::kv_client::KvClient;
use proto::etcdserverpb::{PutRequest, RangeRequest};
use tonic::transport::Channel;

/// The retention under test.
const PERIOD: Duration = Duration::from_secs(2);
/// Bound on waiting for the compactions.
const WAIT: Duration = Duration::from_secs(30);

/// (sent at, revision), in order.
type Acks = Arc<Mutex<Vec<(Instant, i64)>>>;

/// The smallest revision in `1..=current` a Range still reads.
async fn compacted(kv: &mut KvClient<Channel>, current: i64) -> i64 {
    let readable = |rev: i64| {
        let mut kv = kv.clone();
        async move {
            kv.range(RangeRequest {
                key: b"tick".to_vec(),
                revision: rev,
                ..Default::default()
            })
            .await
            .is_ok()
        }
    };
    let (mut low, mut high) = (1, current);
    while low < high {
        let mid = low + (high - low) / 2;
        if readable(mid).await {
            high = mid;
        } else {
            low = mid + 1;
        }
    }
    low
}

async fn periodic_compaction_keeps_one_period(kind: Kind) {
    let server = Server::start(
        kind,
        ServerOpts {
            extra_args: vec![
                "--auto-compaction-mode=periodic".to_string(),
                format!("--auto-compaction-retention={}s", PERIOD.as_secs()),
            ],
            ..ServerOpts::default()
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let mut kv = KvClient::new(server.channel().await.expect("channel"));
    let acks: Acks = Arc::default();
    let writer = {
        let (mut kv, acks) = (kv.clone(), acks.clone());
        tokio::spawn(async move {
            loop {
                let sent = Instant::now();
                let put = kv
                    .put(PutRequest {
                        key: b"tick".to_vec(),
                        value: b"t".to_vec(),
                        ..Default::default()
                    })
                    .await
                    .expect("put");
                let revision = put.into_inner().header.expect("header").revision;
                acks.lock().expect("acks").push((sent, revision));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let started = Instant::now();
    let mut seen: Vec<i64> = Vec::new();
    while seen.len() < 3 {
        assert!(
            started.elapsed() < WAIT,
            "{}: compacted revisions seen {seen:?} within {WAIT:?}",
            kind.name()
        );
        let current = acks.lock().expect("acks").last().map_or(1, |a| a.1);
        let observed_at = Instant::now();
        let compact = compacted(&mut kv, current).await;
        // At most the revision of the first put sent a period before the
        // observation (none yet: nothing to check).
        let since = observed_at.checked_sub(PERIOD);
        let bound = since.and_then(|since| {
            acks.lock()
                .expect("acks")
                .iter()
                .find(|(sent, _)| *sent >= since)
                .map(|a| a.1)
        });
        if let Some(bound) = bound {
            assert!(
                compact <= bound,
                "{}: compacted at {compact}, past the first put sent {PERIOD:?} before ({bound})",
                kind.name()
            );
        }
        if compact > 1 && seen.last() != Some(&compact) {
            seen.push(compact);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    writer.abort();
    println!("{}: compacted revisions seen {seen:?}", kind.name());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn periodic_auto_compaction_follows_etcds_schedule() {
    periodic_compaction_keeps_one_period(Kind::Etcd).await;
    periodic_compaction_keeps_one_period(Kind::Oxcd).await;
}

/// The compacted revision of the server at `channel`, polled (bounded by
/// `within`) until it is past 1.
async fn wait_compacted(mut kv: KvClient<Channel>, current: i64, within: Duration) -> i64 {
    let started = Instant::now();
    loop {
        let compact = compacted(&mut kv, current).await;
        if compact > 1 {
            return compact;
        }
        assert!(
            started.elapsed() < within,
            "no compaction within {within:?}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revision_auto_compaction_keeps_the_last_revisions_as_etcd() {
    let opts = || ServerOpts {
        extra_args: vec![
            "--auto-compaction-mode=revision".to_string(),
            "--auto-compaction-retention=10".to_string(),
        ],
        ..ServerOpts::default()
    };
    let etcd = Server::start(Kind::Etcd, opts())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let oxcd = Server::start(Kind::Oxcd, opts())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut revisions = Vec::new();
    for server in [&etcd, &oxcd] {
        let mut kv = KvClient::new(server.channel().await.expect("channel"));
        let mut revision = 0;
        for _ in 0..30 {
            revision = kv
                .put(PutRequest {
                    key: b"tick".to_vec(),
                    value: b"t".to_vec(),
                    ..Default::default()
                })
                .await
                .expect("put")
                .into_inner()
                .header
                .expect("header")
                .revision;
        }
        revisions.push((
            KvClient::new(server.channel().await.expect("channel")),
            revision,
        ));
    }
    // etcd checks every 5 minutes from its start.
    let within = Duration::from_secs(420);
    let (etcd_kv, etcd_rev) = revisions.remove(0);
    let (oxcd_kv, oxcd_rev) = revisions.remove(0);
    let (etcd_compacted, oxcd_compacted) = tokio::join!(
        wait_compacted(etcd_kv, etcd_rev, within),
        wait_compacted(oxcd_kv, oxcd_rev, within)
    );
    assert_eq!(etcd_compacted, etcd_rev - 10, "etcd");
    assert_eq!(oxcd_compacted, oxcd_rev - 10, "oxcd");
}
