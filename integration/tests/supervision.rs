//! Supervision: every actor kind, killed through the chaos API on the leader
//! and on a follower of a three-member cluster while clients write and
//! watch, is restarted by its supervisor, and nothing is lost.
//!
//! 1. Three members start with `--enable-chaos`. Writers put unique values
//!    under `sup/` through every member in turn (each keeps a ledger of
//!    acknowledged and maybe-applied puts); one watcher per member watches
//!    `sup/` from the first revision on.
//! 2. For each actor kind, on the current leader and then on a follower:
//!    `Chaos.KillActor`, then wait (bounded) until that member's
//!    `oxcd_actor_restarts_total{actor}` went up by one and the writers have
//!    had more puts acknowledged since the kill.
//! 3. Every failed request carried a retryable code (`Unavailable`, or a
//!    client deadline); no other error reached a client.
//! 4. Two leases: one kept alive every second through any member (its key
//!    must outlive every kill), one left alone with a long TTL (its
//!    remaining TTL, read right before and right after each kill of the
//!    leader's lessor, must not go up: the countdown survives the restart).
//! 5. At the end: a marker put; every member holds every acknowledged put
//!    at its revision (and the same HashKV); every watch stream stayed open
//!    and saw each revision of the history exactly once, in order; the kept
//!    lease and its key are still there.
//!
//! A second test drives the chaos runner ([`integration::chaos`]) with a
//! fixed plan: every actor kind killed on the leader, then on a follower,
//! under its recorded clients (puts, linearizable reads, compare-and-puts),
//! watchers and kept-alive leases; its checks (linearizability of the whole
//! history, acknowledged writes on every member, HashKV, watch streams
//! complete, no lease expired while kept alive) must all pass.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use integration::acks::{Ledger, ReadMode};
use integration::chaos::{self, Action, ChaosOpts, PlannedFault, Role};
use integration::cluster::{Cluster, ClusterOpts};
use integration::{Kind, json_gateway, seed_from_env};
use proto::etcdserverpb::kv_client::KvClient;
use proto::etcdserverpb::lease_client::LeaseClient;
use proto::etcdserverpb::watch_client::WatchClient;
use proto::etcdserverpb::{
    HashKvRequest, LeaseGrantRequest, LeaseKeepAliveRequest, LeaseTimeToLiveRequest, PutRequest,
    RangeRequest, WatchCreateRequest, WatchRequest,
};
use proto::internal::KillActorRequest;
use proto::internal::chaos_client::ChaosClient;
use tonic::transport::{Channel, Endpoint};

/// The two tests take turns: each starts three members on two cores.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

// Every actor a member runs, by its name in the chaos API and the metrics.
use integration::chaos::schedule::ACTORS;
const WRITERS: usize = 3;
const RPC_TIMEOUT: Duration = Duration::from_secs(5);
const RESTART_TIMEOUT: Duration = Duration::from_secs(20);
const PROGRESS_TIMEOUT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(20);
/// Puts acknowledged after each kill before the next one.
const PUTS_PER_KILL: usize = 30;

async fn channel(endpoint: &str) -> Result<Channel, String> {
    Endpoint::from_shared(endpoint.to_string())
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(1))
        .timeout(RPC_TIMEOUT)
        .connect()
        .await
        .map_err(|e| format!("{endpoint}: {e}"))
}

/// What every writer shares.
struct Load {
    acked: AtomicUsize,
    stop: AtomicBool,
    /// Codes of failed puts, with a count each.
    failures: Mutex<BTreeMap<String, usize>>,
}

async fn writer(id: usize, endpoints: Vec<String>, load: Arc<Load>) -> Ledger {
    let mut ledger = Ledger::default();
    let mut member = id % endpoints.len();
    let mut client: Option<KvClient<Channel>> = None;
    for n in 0..1_000_000u64 {
        if load.stop.load(Ordering::SeqCst) {
            break;
        }
        if client.is_none() {
            match channel(&endpoints[member]).await {
                Ok(ch) => client = Some(KvClient::new(ch)),
                Err(e) => {
                    *load
                        .failures
                        .lock()
                        .unwrap()
                        .entry(format!("connect: {e}"))
                        .or_default() += 1;
                    member = (member + 1) % endpoints.len();
                    tokio::time::sleep(POLL).await;
                    continue;
                }
            }
        }
        let kv = client.as_mut().expect("connected above");
        let key = format!("sup/w{id}/k{}", n % 8).into_bytes();
        let value = format!("w{id}-{n}").into_bytes();
        let put = PutRequest {
            key: key.clone(),
            value: value.clone(),
            ..Default::default()
        };
        match tokio::time::timeout(RPC_TIMEOUT, kv.put(put)).await {
            Ok(Ok(r)) => {
                let revision = r.into_inner().header.map_or(0, |h| h.revision);
                ledger.ack(key, value, revision);
                load.acked.fetch_add(1, Ordering::SeqCst);
            }
            outcome => {
                let code = match outcome {
                    Ok(Err(status)) => format!("{:?}: {}", status.code(), status.message()),
                    _ => "client deadline".to_string(),
                };
                ledger.maybe(key, value);
                *load.failures.lock().unwrap().entry(code).or_default() += 1;
                // Another member next: this one may be the one restarting.
                member = (member + 1) % endpoints.len();
                client = None;
                tokio::time::sleep(POLL).await;
            }
        }
    }
    ledger
}

/// One watch stream on `endpoint` over `sup/` from `start`, read until it
/// delivered revision `until` (0 while unknown): the revisions of the
/// events it received, in order, and how it ended ("open" if it stayed
/// open throughout).
async fn watcher(endpoint: String, start: i64, until: Arc<AtomicI64>) -> (Vec<i64>, String) {
    let mut revisions = Vec::new();
    let ch = match channel(&endpoint).await {
        Ok(ch) => ch,
        Err(e) => return (revisions, format!("connect: {e}")),
    };
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let create = WatchRequest {
        request_union: Some(
            proto::etcdserverpb::watch_request::RequestUnion::CreateRequest(WatchCreateRequest {
                key: b"sup/".to_vec(),
                range_end: b"sup0".to_vec(),
                start_revision: start,
                ..Default::default()
            }),
        ),
    };
    tx.send(create).await.expect("fresh channel");
    let mut client = WatchClient::new(ch);
    let mut stream = match client
        .watch(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
    {
        Ok(s) => s.into_inner(),
        Err(e) => return (revisions, format!("watch: {e}")),
    };
    loop {
        let until = until.load(Ordering::SeqCst);
        if until > 0 && revisions.last().is_some_and(|r| *r >= until) {
            drop(tx);
            return (revisions, "open".to_string());
        }
        let next = tokio::time::timeout(Duration::from_millis(200), stream.message()).await;
        match next {
            Ok(Ok(Some(response))) => {
                if response.canceled {
                    return (revisions, format!("canceled: {}", response.cancel_reason));
                }
                revisions.extend(
                    response
                        .events
                        .iter()
                        .filter_map(|e| e.kv.as_ref().map(|kv| kv.mod_revision)),
                );
            }
            Ok(Ok(None)) => return (revisions, "stream ended".to_string()),
            Ok(Err(status)) => return (revisions, format!("stream error: {status}")),
            Err(_) => {}
        }
    }
}

/// Keeps lease `id` alive, once a second, through any member (the next one
/// after a failure), until `stop`; returns the failed keep-alives and the
/// TTLs answered 0 (lease gone).
async fn keep_alive(id: i64, endpoints: Vec<String>, stop: Arc<AtomicBool>) -> (usize, usize) {
    let (mut failed, mut expired) = (0, 0);
    let mut member = 0;
    for _ in 0..100_000 {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let answered = async {
            let mut lease = LeaseClient::new(channel(&endpoints[member]).await?);
            let once = tokio_stream::once(LeaseKeepAliveRequest { id });
            let mut stream = lease
                .lease_keep_alive(once)
                .await
                .map_err(|e| e.to_string())?
                .into_inner();
            match stream.message().await {
                Ok(Some(r)) => Ok(r.ttl),
                Ok(None) => Err("keep-alive stream ended".to_string()),
                Err(e) => Err(e.to_string()),
            }
        };
        match tokio::time::timeout(RPC_TIMEOUT, answered).await {
            Ok(Ok(ttl)) if ttl > 0 => tokio::time::sleep(Duration::from_secs(1)).await,
            Ok(Ok(_)) => {
                expired += 1;
                break;
            }
            _ => {
                failed += 1;
                member = (member + 1) % endpoints.len();
                tokio::time::sleep(POLL).await;
            }
        }
    }
    (failed, expired)
}

/// The remaining TTL of lease `id`, asked of the leader.
async fn remaining_ttl(cluster: &Cluster, leader: usize, id: i64) -> i64 {
    let mut lease = LeaseClient::new(
        channel(&cluster.endpoint(leader))
            .await
            .unwrap_or_else(|e| panic!("{e}")),
    );
    lease
        .lease_time_to_live(LeaseTimeToLiveRequest { id, keys: false })
        .await
        .unwrap_or_else(|e| panic!("TimeToLive of {id:x}: {e}"))
        .into_inner()
        .ttl
}

/// `oxcd_actor_restarts_total{actor}` of the member at `addr`.
async fn restarts(addr: &str, actor: &str) -> Result<u64, String> {
    let reply = json_gateway::request(addr, "GET", "/metrics", &[], b"")
        .await
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&reply.body).to_string();
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).map_err(|e| e.to_string())?;
    Ok(scrape
        .samples
        .iter()
        .find(|s| s.metric == "oxcd_actor_restarts_total" && s.labels.get("actor") == Some(actor))
        .map_or(0, |s| match s.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => v as u64,
            _ => 0,
        }))
}

async fn wait_for(what: &str, timeout: Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(POLL).await;
    }
    panic!("{what}: not within {timeout:?}");
}

async fn hash_kv(cluster: &Cluster, i: usize, revision: i64) -> u32 {
    let mut m = cluster.maintenance(i).await.expect("maintenance client");
    m.hash_kv(HashKvRequest { revision })
        .await
        .expect("HashKV")
        .into_inner()
        .hash
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_actor_killed_on_leader_and_follower_restarts_and_loses_nothing() {
    let _turn = SERIAL.lock().await;
    let seed = seed_from_env();
    println!("supervision: seed {seed}");
    let mut cluster = Cluster::start(
        Kind::Oxcd,
        ClusterOpts {
            extra_args: vec!["--enable-chaos".to_string()],
            ..ClusterOpts::default()
        },
    )
    .await
    .unwrap_or_else(|e| panic!("start: {e}"));
    cluster
        .wait_leader(Duration::from_secs(10))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let endpoints = cluster.endpoints();

    // The leases, with a key each under the watched prefix (revisions 2
    // and 3).
    let (kept, countdown) = {
        let leader = cluster
            .wait_leader(Duration::from_secs(10))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let mut lease = LeaseClient::new(
            channel(&cluster.endpoint(leader))
                .await
                .unwrap_or_else(|e| panic!("{e}")),
        );
        let mut kv = cluster.kv(leader).await.expect("kv client");
        let mut ids = Vec::new();
        for (key, ttl) in [
            (&b"sup/lease/kept"[..], 6),
            (&b"sup/lease/countdown"[..], 600),
        ] {
            let id = lease
                .lease_grant(LeaseGrantRequest { ttl, id: 0 })
                .await
                .expect("lease grant")
                .into_inner()
                .id;
            kv.put(PutRequest {
                key: key.to_vec(),
                value: b"leased".to_vec(),
                lease: id,
                ..Default::default()
            })
            .await
            .expect("leased put");
            ids.push(id);
        }
        (ids[0], ids[1])
    };
    let stop_keeping = Arc::new(AtomicBool::new(false));
    let keeper = tokio::spawn(keep_alive(kept, endpoints.clone(), stop_keeping.clone()));

    let watch_until = Arc::new(AtomicI64::new(0));
    let watchers: Vec<_> = endpoints
        .iter()
        .map(|e| tokio::spawn(watcher(e.clone(), 2, watch_until.clone())))
        .collect();
    let load = Arc::new(Load {
        acked: AtomicUsize::new(0),
        stop: AtomicBool::new(false),
        failures: Mutex::new(BTreeMap::new()),
    });
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| tokio::spawn(writer(w, endpoints.clone(), load.clone())))
        .collect();
    let acked = |load: &Load| load.acked.load(Ordering::SeqCst);
    let started = acked(&load);
    wait_for("first puts", PROGRESS_TIMEOUT, async || {
        acked(&load) > started + 10
    })
    .await;

    let mut timeline = Vec::new();
    for kind in ACTORS {
        for role in ["leader", "follower"] {
            let leader = cluster
                .wait_leader(Duration::from_secs(15))
                .await
                .unwrap_or_else(|e| panic!("no leader before killing {kind}: {e}"));
            let target = if role == "leader" {
                leader
            } else {
                (leader + 1) % cluster.size()
            };
            let addr = cluster.client_addr(target);
            let before = restarts(&addr, kind)
                .await
                .unwrap_or_else(|e| panic!("metrics of {}: {e}", cluster.name(target)));
            let mut chaos = ChaosClient::new(
                channel(&cluster.endpoint(target))
                    .await
                    .unwrap_or_else(|e| panic!("{e}")),
            );
            let ttl_before = remaining_ttl(&cluster, leader, countdown).await;
            let acked_at_kill = acked(&load);
            let killed = Instant::now();
            let answer = chaos
                .kill_actor(KillActorRequest {
                    actor: kind.to_string(),
                })
                .await
                .unwrap_or_else(|e| panic!("kill {kind} on {}: {e}", cluster.name(target)))
                .into_inner();
            wait_for(
                &format!("restart of {kind} on the {role} in /metrics"),
                RESTART_TIMEOUT,
                async || restarts(&addr, kind).await == Ok(before + 1),
            )
            .await;
            wait_for(
                &format!("puts after killing {kind} on the {role}"),
                PROGRESS_TIMEOUT,
                async || acked(&load) >= acked_at_kill + PUTS_PER_KILL,
            )
            .await;
            if kind == "lessor" && role == "leader" {
                let ttl_after = remaining_ttl(&cluster, leader, countdown).await;
                assert!(
                    ttl_after <= ttl_before,
                    "the lessor's restart lengthened a lease: {ttl_before} s left before, {ttl_after} s after"
                );
            }
            assert!(
                cluster.is_running(target),
                "{} exited after its {kind} actor was killed:\n{}",
                cluster.name(target),
                cluster.log_tail(target, 30)
            );
            timeline.push(format!(
                "{} ({role}): {}; {} puts acknowledged in the {} ms after",
                cluster.name(target),
                answer.message,
                acked(&load) - acked_at_kill,
                killed.elapsed().as_millis()
            ));
        }
    }
    load.stop.store(true, Ordering::SeqCst);
    let mut ledger = Ledger::default();
    for w in writers {
        ledger.extend(w.await.expect("writer"));
    }
    for line in &timeline {
        println!("supervision: {line}");
    }
    let failures = load.failures.lock().unwrap().clone();
    println!(
        "supervision: {} puts acknowledged, {} maybe applied; failures {failures:?}",
        ledger.acks().len(),
        ledger.maybe_count()
    );
    for reason in failures.keys() {
        assert!(
            reason.starts_with("Unavailable")
                || reason == "client deadline"
                || reason.starts_with("connect"),
            "a client got a non-retryable failure: {reason}"
        );
    }
    ledger.unique_revisions().unwrap_or_else(|e| panic!("{e}"));

    // The marker: once it is acknowledged, every maybe-applied put settled.
    let leader = cluster
        .wait_leader(Duration::from_secs(15))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut kv = cluster.kv(leader).await.expect("kv client");
    let marker = kv
        .put(PutRequest {
            key: b"sup/zz-marker".to_vec(),
            value: b"end".to_vec(),
            ..Default::default()
        })
        .await
        .expect("marker put")
        .into_inner()
        .header
        .map_or(0, |h| h.revision);
    for i in 0..cluster.size() {
        cluster
            .wait_revision(i, marker, Duration::from_secs(30))
            .await
            .unwrap_or_else(|e| panic!("{} catches up to the marker: {e}", cluster.name(i)));
    }
    for i in 0..cluster.size() {
        let mut kv = cluster.kv(i).await.expect("kv client");
        ledger
            .verify(&mut kv, ReadMode::Serializable, RPC_TIMEOUT)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", cluster.name(i)));
    }
    let hashes = [
        hash_kv(&cluster, 0, marker).await,
        hash_kv(&cluster, 1, marker).await,
        hash_kv(&cluster, 2, marker).await,
    ];
    assert!(
        hashes.iter().all(|h| *h == hashes[0]),
        "members disagree at revision {marker}: {hashes:?}"
    );

    let mut kv = cluster.kv(leader).await.expect("kv client");
    let kept_key = kv
        .range(RangeRequest {
            key: b"sup/lease/kept".to_vec(),
            ..Default::default()
        })
        .await
        .expect("range")
        .into_inner();
    assert_eq!(kept_key.count, 1, "the kept-alive lease's key is gone");
    assert!(remaining_ttl(&cluster, leader, kept).await > 0);
    // Kept alive up to here: the checks above may take longer than its TTL.
    stop_keeping.store(true, Ordering::SeqCst);
    let (keep_failures, expired) = keeper.await.expect("keeper");
    println!("supervision: {keep_failures} keep-alives failed (retried elsewhere)");
    assert_eq!(expired, 0, "a keep-alive found the kept lease gone");

    // Each watcher saw revisions 2..=marker, each once, in order (only
    // this test writes, and only under sup/).
    let deadline = Instant::now() + Duration::from_secs(30);
    let expected: Vec<i64> = (2..=marker).collect();
    watch_until.store(marker, Ordering::SeqCst);
    for (i, w) in watchers.into_iter().enumerate() {
        let (revisions, end) = tokio::time::timeout_at(deadline.into(), w)
            .await
            .unwrap_or_else(|_| panic!("the watcher on {} did not reach {marker}", cluster.name(i)))
            .expect("watcher task");
        assert_eq!(end, "open", "the watch stream on {} ended", cluster.name(i));
        assert_eq!(
            revisions.len(),
            expected.len(),
            "the watcher on {} saw {} events for {} revisions",
            cluster.name(i),
            revisions.len(),
            expected.len()
        );
        assert_eq!(revisions, expected, "the watcher on {}", cluster.name(i));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_actor_killed_under_the_chaos_checker_keeps_the_history_linearizable() {
    let _turn = SERIAL.lock().await;
    let seed = seed_from_env();
    println!("supervision: chaos runner seed {seed} (OXCD_SEED)");
    let hold = Duration::from_millis(300);
    let gap = Duration::from_millis(700);
    let mut plan = Vec::new();
    for (n, actor) in ACTORS.into_iter().enumerate() {
        for (k, role) in [Role::Leader, Role::Follower(n as u8)]
            .into_iter()
            .enumerate()
        {
            plan.push(PlannedFault {
                at: (hold + gap) * (2 * n + k + 1) as u32,
                role,
                action: Action::KillActor(actor),
                hold,
                gap,
            });
        }
    }
    let duration = (hold + gap) * (plan.len() + 2) as u32;
    let mut opts = ChaosOpts::new(seed, duration);
    opts.plan = Some(plan);
    let report = chaos::run(&opts)
        .await
        .unwrap_or_else(|e| panic!("the chaos run could not be carried out: {e}"));
    println!("{report}");
    let kills = report
        .timeline
        .iter()
        .filter(|e| e.action.starts_with("kill-actor"))
        .count();
    assert_eq!(kills, 2 * ACTORS.len(), "every kill was injected");
    assert!(report.passed(), "seed {seed}: {}", report.verdict());
}
