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
//! The revision mode's 5-minute schedule is unit tested in
//! `node::compactor` (a logical clock), not waited for here.

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
