//! The Lock and Election services on a real three-member cluster:
//!
//! 1. Lock: clients on every member, each with its own lease (kept alive),
//!    contend for one lock; each holds it for a moment and unlocks. The
//!    recorded holding intervals never overlap, and every contender gets
//!    the lock (no waiter is lost).
//! 2. Election: three candidates campaign through different members; an
//!    observer on every member sees each leader in turn (after each one
//!    resigns), in the order they won, with the proclaimed values.
//! 3. Errors as etcd words them: Leader of an election nobody runs
//!    (`election: no leader`), Proclaim with a stale leader key (`election:
//!    not leader`), Proclaim without a leader key, Lock on an unknown lease
//!    (`etcdserver: requested lease not found`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use integration::Kind;
use integration::cluster::{Cluster, ClusterOpts};
use proto::etcdserverpb::lease_client::LeaseClient;
use proto::etcdserverpb::{LeaseGrantRequest, LeaseKeepAliveRequest};
use proto::v3electionpb::election_client::ElectionClient;
use proto::v3electionpb::{CampaignRequest, LeaderRequest, ProclaimRequest, ResignRequest};
use proto::v3lockpb::lock_client::LockClient;
use proto::v3lockpb::{LockRequest, UnlockRequest};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::Mutex;
use tonic::Code;

const DEADLINE: Duration = Duration::from_secs(60);

/// A lease of `ttl` seconds on member `i`, kept alive until the task ends
/// with the test.
async fn kept_lease(cluster: &Cluster, i: usize, ttl: i64) -> i64 {
    let channel = cluster.channel(i).await.expect("channel");
    let mut leases = LeaseClient::new(channel);
    let id = leases
        .lease_grant(LeaseGrantRequest { ttl, id: 0 })
        .await
        .expect("lease grant")
        .into_inner()
        .id;
    tokio::spawn(async move {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let Ok(answers) = leases
            .lease_keep_alive(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
        else {
            return;
        };
        let mut answers = answers.into_inner();
        loop {
            if tx.send(LeaseKeepAliveRequest { id }).await.is_err() {
                return;
            }
            if !matches!(answers.message().await, Ok(Some(_))) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contended_locks_never_overlap_and_every_waiter_is_served() {
    let seed = integration::seed_from_env();
    println!("lock seed: {seed}");
    let cluster = Cluster::start(Kind::Oxcd, ClusterOpts::default())
        .await
        .unwrap_or_else(|e| panic!("start cluster: {e}"));
    let started = Instant::now();
    let clock = Arc::new(Instant::now());
    let held: Arc<Mutex<Vec<(u32, u128, u128)>>> = Arc::default();
    let mut tasks = tokio::task::JoinSet::new();
    const CONTENDERS: u32 = 6;
    const ROUNDS: u32 = 3;
    for c in 0..CONTENDERS {
        let member = (c as usize) % cluster.size();
        let lease = kept_lease(&cluster, member, 10).await;
        let mut lock = LockClient::new(cluster.channel(member).await.expect("channel"));
        let (held, clock) = (Arc::clone(&held), Arc::clone(&clock));
        let mut rng = StdRng::seed_from_u64(seed ^ u64::from(c));
        tasks.spawn(async move {
            for _ in 0..ROUNDS {
                let key = lock
                    .lock(LockRequest {
                        name: b"contended".to_vec(),
                        lease,
                    })
                    .await
                    .unwrap_or_else(|e| panic!("contender {c}: lock: {e}"))
                    .into_inner()
                    .key;
                assert!(key.starts_with(b"contended/"), "{key:?}");
                let from = clock.elapsed().as_micros();
                tokio::time::sleep(Duration::from_millis(rng.gen_range(5..40))).await;
                let to = clock.elapsed().as_micros();
                held.lock().await.push((c, from, to));
                lock.unlock(UnlockRequest { key })
                    .await
                    .unwrap_or_else(|e| panic!("contender {c}: unlock: {e}"));
            }
        });
    }
    let all = tokio::time::timeout(DEADLINE, async {
        while let Some(done) = tasks.join_next().await {
            done.expect("contender task");
        }
    })
    .await;
    assert!(
        all.is_ok(),
        "not every contender got the lock within {DEADLINE:?}"
    );
    let mut intervals = held.lock().await.clone();
    assert_eq!(
        intervals.len(),
        (CONTENDERS * ROUNDS) as usize,
        "every waiter served"
    );
    intervals.sort_by_key(|(_, from, _)| *from);
    for pair in intervals.windows(2) {
        let ((a, _, a_to), (b, b_from, _)) = (pair[0], pair[1]);
        assert!(
            a_to <= b_from,
            "contenders {a} and {b} held the lock at once: {pair:?}"
        );
    }
    println!(
        "{} lock holdings by {CONTENDERS} contenders on {} members, no overlap, in {:?}",
        intervals.len(),
        cluster.size(),
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observers_on_every_member_see_every_leader_in_order() {
    let cluster = Cluster::start(Kind::Oxcd, ClusterOpts::default())
        .await
        .unwrap_or_else(|e| panic!("start cluster: {e}"));
    let name = b"the-election".to_vec();
    // Observers first, one per member.
    let mut observers = Vec::new();
    for i in 0..cluster.size() {
        let mut client = ElectionClient::new(cluster.channel(i).await.expect("channel"));
        let stream = client
            .observe(LeaderRequest { name: name.clone() })
            .await
            .expect("observe")
            .into_inner();
        observers.push(stream);
    }
    // Three candidates through different members; each campaigns once the
    // previous winner is known, so the order of wins is fixed.
    let mut winners = Vec::new();
    let mut pending = Vec::new();
    for c in 0..3usize {
        let lease = kept_lease(&cluster, c, 10).await;
        let mut client = ElectionClient::new(cluster.channel(c).await.expect("channel"));
        let campaign_name = name.clone();
        pending.push(tokio::spawn(async move {
            let leader = client
                .campaign(CampaignRequest {
                    name: campaign_name,
                    lease,
                    value: format!("candidate-{c}").into_bytes(),
                })
                .await
                .unwrap_or_else(|e| panic!("campaign {c}: {e}"))
                .into_inner()
                .leader
                .expect("leader key");
            (client, leader)
        }));
        // Wait until this candidate's key exists before the next one runs,
        // so that create revisions follow c.
        let mut probe = ElectionClient::new(cluster.channel(0).await.expect("channel"));
        let started = Instant::now();
        loop {
            let known = probe.leader(LeaderRequest { name: name.clone() }).await;
            if c == 0 && known.is_ok() {
                break;
            }
            if c > 0 {
                // Give the campaign a moment to create its key: poll the
                // prefix through a range instead.
                let mut kv = cluster.kv(0).await.expect("kv");
                let count = kv
                    .range(proto::etcdserverpb::RangeRequest {
                        key: b"the-election/".to_vec(),
                        range_end: b"the-election0".to_vec(),
                        count_only: true,
                        ..Default::default()
                    })
                    .await
                    .expect("range")
                    .into_inner()
                    .count;
                if count as usize > c {
                    break;
                }
            }
            assert!(
                started.elapsed() < DEADLINE,
                "candidate {c} never showed up"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // Winners in order: each proclaims a new value, then resigns.
    for (c, handle) in pending.into_iter().enumerate() {
        let (mut client, leader) = tokio::time::timeout(DEADLINE, handle)
            .await
            .expect("campaign finished")
            .expect("campaign task");
        client
            .proclaim(ProclaimRequest {
                leader: Some(leader.clone()),
                value: format!("candidate-{c}-proclaimed").into_bytes(),
            })
            .await
            .unwrap_or_else(|e| panic!("proclaim {c}: {e}"));
        client
            .resign(ResignRequest {
                leader: Some(leader.clone()),
            })
            .await
            .unwrap_or_else(|e| panic!("resign {c}: {e}"));
        // A stale leader key cannot proclaim any more.
        let stale = client
            .proclaim(ProclaimRequest {
                leader: Some(leader.clone()),
                value: b"late".to_vec(),
            })
            .await
            .expect_err("a resigned leader proclaims");
        assert_eq!(
            (stale.code(), stale.message()),
            (Code::Unknown, "election: not leader")
        );
        winners.push(leader);
    }
    let expected: Vec<String> = (0..3)
        .flat_map(|c| {
            [
                format!("candidate-{c}"),
                format!("candidate-{c}-proclaimed"),
            ]
        })
        .collect();
    for (i, stream) in observers.iter_mut().enumerate() {
        let mut seen = Vec::new();
        while seen.len() < expected.len() {
            let response = tokio::time::timeout(DEADLINE, stream.message())
                .await
                .unwrap_or_else(|_| panic!("observer on member {i} saw only {seen:?}"))
                .expect("observe stream")
                .expect("observe stream open");
            seen.push(String::from_utf8(response.kv.expect("kv").value).expect("utf-8"));
        }
        assert_eq!(seen, expected, "observer on member {i}");
    }
    let mut probe = ElectionClient::new(cluster.channel(1).await.expect("channel"));
    let none = probe
        .leader(LeaderRequest { name: name.clone() })
        .await
        .expect_err("a leader after every candidate resigned");
    assert_eq!(
        (none.code(), none.message()),
        (Code::Unknown, "election: no leader")
    );
    let missing = probe
        .proclaim(ProclaimRequest {
            leader: None,
            value: b"v".to_vec(),
        })
        .await
        .expect_err("proclaim without a leader key");
    assert_eq!(missing.message(), "\"leader\" field must be provided");
    let mut lock = LockClient::new(cluster.channel(2).await.expect("channel"));
    let unknown = lock
        .lock(LockRequest {
            name: b"l".to_vec(),
            lease: 0x1234,
        })
        .await
        .expect_err("lock on an unknown lease");
    // etcd's lock server reaches the store through its in-process client,
    // which turns the server's NotFound into a plain error: Unknown.
    assert_eq!(
        (unknown.code(), unknown.message()),
        (Code::Unknown, "etcdserver: requested lease not found")
    );
    assert_eq!(winners.len(), 3);
}
