//! Three-member cluster tests: real oxcd processes on loopback, killed and
//! restarted by PID.
//!
//! 1. `three_members_elect_one_leader_and_reads_are_linearizable_everywhere`:
//!    one leader that every member names; a put through any member is seen
//!    at once by a linearizable read through every member, and sequential
//!    puts take consecutive revisions.
//! 2. `leader_kill9_under_write_load_fails_over_and_loses_nothing`: with
//!    etcd's default timings (heartbeat 100 ms, election 1000 ms), kill -9 the
//!    leader under write load from writers spread over all members; a new
//!    leader is elected (how long it took is printed, not asserted), writes
//!    go on, the old leader restarts and catches up, no acknowledged put is
//!    lost on any member (`integration::acks`), and all members hash the
//!    same.
//! 3. `a_follower_behind_by_more_than_snapshot_count_catches_up_by_snapshot`:
//!    with `--snapshot-count 200`, a follower is killed while ~1000 puts are
//!    written; after restart it installs a snapshot (log line, image in
//!    `member/snap/`) and matches the others by `HashKV` at one revision and
//!    by a full range compare.
//! 4. `an_isolated_member_refuses_linearizable_reads_and_writes_in_bounded_time`:
//!    the leader, then a follower, left alone (both others killed) answers a
//!    put and a linearizable read with Unavailable rather than hanging (the
//!    time each took is printed), and still serves serializable reads.
//! 5. `concurrent_history_across_a_leader_kill_is_linearizable`: clients on
//!    every member run puts, gets and compare-and-put txns over a few hot keys
//!    while the leader is killed and restarted; the recorded history (failed
//!    writes as "maybe applied") is checked against the etcd model in
//!    `integration::lin` by `integration::lin_verdict`: the witness checker
//!    built on revisions decides in seconds, porcupine-rs confirms a
//!    violation. The seed (`OXCD_SEED`) and each checker's time are
//!    printed. The checkers and the model are unit tested in the crate.
//!
//! `OXCD_BIN=/usr/bin/etcd OXCD_SNAPSHOT_WRITES=6000` runs the same tests
//! against etcd 3.4 (which keeps 5000 entries for slow followers before it
//! sends a snapshot): that is how the tests themselves are validated.
//!
//! On a failure, `OXCD_KEEP_DIRS=1` keeps the cluster's temp dir (printed):
//! every member's data dir and log and, for test 5, `history.txt` (one
//! operation per line with the member it was sent to; the checker's `#i`
//! is line `i + 1`).
//!
//! The cluster tests share two cores, so they take turns (one lock) rather
//! than run at once; every wait is a bounded poll on a condition, its bound
//! far above the time it normally takes (times are printed, never asserted).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use integration::acks::{Ledger, ReadMode};
use integration::cluster::{Cluster, ClusterOpts};
use integration::lin::{self, Recorder, Response, Summary, Workload};
use integration::lin_verdict::{self, JudgeOpts};
use integration::{Kind, env_usize, seed_from_env, workspace_root};
use proto::etcdserverpb::kv_client::KvClient;
use proto::etcdserverpb::{HashKvRequest, PutRequest, RangeRequest, RangeResponse};
use proto::mvccpb::KeyValue;
use tonic::Code;
use tonic::transport::{Channel, Endpoint};

/// The cluster tests run one at a time: each starts three servers on a
/// two-core machine, and the failover test prints how long it took.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Bound on one client RPC in the tests.
const RPC_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound on connecting to a member.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Bound on a member catching up after a restart.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(60);
/// Pause between two polls of a counter.
const POLL: Duration = Duration::from_millis(25);

async fn start(opts: ClusterOpts) -> Cluster {
    Cluster::start(Kind::Oxcd, opts)
        .await
        .unwrap_or_else(|e| panic!("start a three-member cluster: {e}"))
}

async fn kv(cluster: &Cluster, i: usize) -> KvClient<Channel> {
    cluster
        .kv(i)
        .await
        .unwrap_or_else(|e| panic!("connect to {}: {e}", cluster.name(i)))
}

/// A put that must succeed; returns its revision.
async fn put_ok(kv: &mut KvClient<Channel>, key: &[u8], value: &[u8]) -> i64 {
    let put = PutRequest {
        key: key.to_vec(),
        value: value.to_vec(),
        ..Default::default()
    };
    match tokio::time::timeout(RPC_TIMEOUT, kv.put(put)).await {
        Ok(Ok(resp)) => resp.into_inner().header.expect("put header").revision,
        Ok(Err(s)) => panic!(
            "put {}: {:?} {}",
            String::from_utf8_lossy(key),
            s.code(),
            s.message()
        ),
        Err(_) => panic!("put timed out after {RPC_TIMEOUT:?}"),
    }
}

/// A range that must succeed.
async fn range_ok(kv: &mut KvClient<Channel>, req: RangeRequest) -> RangeResponse {
    let what = format!("{req:?}");
    match tokio::time::timeout(RPC_TIMEOUT, kv.range(req)).await {
        Ok(Ok(resp)) => resp.into_inner(),
        Ok(Err(s)) => panic!("range {what}: {:?} {}", s.code(), s.message()),
        Err(_) => panic!("range {what} timed out after {RPC_TIMEOUT:?}"),
    }
}

/// Every key of member `i` at `revision`, read from its own store.
async fn all_kvs(cluster: &Cluster, i: usize, revision: i64) -> Vec<KeyValue> {
    let mut kv = kv(cluster, i).await;
    let req = RangeRequest {
        key: vec![0],
        range_end: vec![0],
        revision,
        serializable: true,
        ..Default::default()
    };
    range_ok(&mut kv, req).await.kvs
}

/// Member `i`'s `HashKV` at `revision`: (hash, compact revision).
async fn hash_kv(cluster: &Cluster, i: usize, revision: i64) -> (u32, i64) {
    let mut m = cluster
        .maintenance(i)
        .await
        .unwrap_or_else(|e| panic!("connect to {}: {e}", cluster.name(i)));
    match tokio::time::timeout(RPC_TIMEOUT, m.hash_kv(HashKvRequest { revision })).await {
        Ok(Ok(resp)) => {
            let r = resp.into_inner();
            (r.hash, r.compact_revision)
        }
        Ok(Err(s)) => panic!("{} hashkv: {:?} {}", cluster.name(i), s.code(), s.message()),
        Err(_) => panic!("{} hashkv timed out", cluster.name(i)),
    }
}

/// One line per member: leader, term, commit and applied index, revision.
async fn statuses(cluster: &Cluster) -> String {
    let mut lines = Vec::new();
    for i in 0..cluster.size() {
        let line = match cluster.status(i).await {
            Ok(s) => format!(
                "{} ({:x}): leader {:x}, term {}, raft_index {}, raft_applied_index {}, revision {}",
                cluster.name(i),
                s.header.as_ref().map_or(0, |h| h.member_id),
                s.leader,
                s.raft_term,
                s.raft_index,
                s.raft_applied_index,
                s.header.as_ref().map_or(0, |h| h.revision)
            ),
            Err(e) => format!("{}: {e}", cluster.name(i)),
        };
        lines.push(line);
    }
    lines.join("\n")
}

/// Member `i`'s current revision (0 if it does not answer).
async fn member_revision(cluster: &Cluster, i: usize) -> i64 {
    match cluster.status(i).await {
        Ok(s) => s.header.map_or(0, |h| h.revision),
        Err(_) => 0,
    }
}

/// Where members `a` and `b` first differ at or below `upto`: the lowest
/// revision whose `HashKV` differs (binary search) and the write each member
/// holds at that revision.
async fn divergence(cluster: &Cluster, a: usize, b: usize, upto: i64) -> String {
    let (name_a, name_b) = (cluster.name(a), cluster.name(b));
    if upto < 2 || hash_kv(cluster, a, upto).await == hash_kv(cluster, b, upto).await {
        return format!("{name_a} and {name_b} hash the same up to revision {upto}");
    }
    let (mut lo, mut hi) = (2, upto);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if hash_kv(cluster, a, mid).await == hash_kv(cluster, b, mid).await {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    let mut lines = vec![format!(
        "{name_a} and {name_b} first differ at revision {lo} (HashKV equal at {})",
        lo - 1
    )];
    for m in [a, b] {
        let written: Vec<String> = all_kvs(cluster, m, lo)
            .await
            .into_iter()
            .filter(|kv| kv.mod_revision == lo)
            .map(|kv| {
                format!(
                    "{}={} (create {}, version {})",
                    String::from_utf8_lossy(&kv.key),
                    String::from_utf8_lossy(&kv.value),
                    kv.create_revision,
                    kv.version
                )
            })
            .collect();
        lines.push(format!("  {} wrote at {lo}: {written:?}", cluster.name(m)));
    }
    lines.join("\n")
}

/// Waits until every member is at `revision` at least, then requires equal
/// `HashKV` and equal full ranges at exactly `revision` on all of them.
async fn assert_members_agree(cluster: &Cluster, revision: i64, context: &str) {
    for i in 0..cluster.size() {
        if let Err(e) = cluster.wait_revision(i, revision, CATCH_UP_TIMEOUT).await {
            let mut revisions = HashMap::new();
            for j in 0..cluster.size() {
                revisions.insert(j, member_revision(cluster, j).await);
            }
            let good = (0..cluster.size())
                .filter(|&j| j != i)
                .max_by_key(|j| revisions[j])
                .expect("another member");
            let upto = revisions[&good].min(revisions[&i]);
            panic!(
                "{context}: {} does not catch up: {e}\nstatus of every member:\n{}\n{}",
                cluster.name(i),
                statuses(cluster).await,
                divergence(cluster, good, i, upto).await
            );
        }
    }
    let reference = hash_kv(cluster, 0, revision).await;
    let reference_kvs = all_kvs(cluster, 0, revision).await;
    assert!(
        !reference_kvs.is_empty(),
        "{context}: no keys at {revision}"
    );
    for i in 1..cluster.size() {
        let hash = hash_kv(cluster, i, revision).await;
        if hash != reference {
            eprintln!("{}", divergence(cluster, 0, i, revision).await);
        }
        assert_eq!(
            hash,
            reference,
            "{context}: HashKV (hash, compact revision) at {revision}: {} vs {}",
            cluster.name(i),
            cluster.name(0)
        );
        let kvs = all_kvs(cluster, i, revision).await;
        assert_eq!(
            kvs.len(),
            reference_kvs.len(),
            "{context}: key count on {}",
            cluster.name(i)
        );
        for (a, b) in kvs.iter().zip(&reference_kvs) {
            assert_eq!(
                a,
                b,
                "{context}: {} and {} differ at {revision} on key {}",
                cluster.name(i),
                cluster.name(0),
                String::from_utf8_lossy(&b.key)
            );
        }
    }
    println!(
        "{context}: {} members agree at revision {revision}: HashKV {:#010x}, {} keys",
        cluster.size(),
        reference.0,
        reference_kvs.len()
    );
}

/// A KV client that moves to the next member whenever a request fails.
struct Rotating {
    endpoints: Vec<String>,
    current: usize,
    client: Option<KvClient<Channel>>,
}

impl Rotating {
    fn new(endpoints: Vec<String>, first: usize) -> Rotating {
        Rotating {
            current: first % endpoints.len(),
            endpoints,
            client: None,
        }
    }

    async fn client(&mut self) -> Result<&mut KvClient<Channel>, String> {
        if self.client.is_none() {
            let endpoint = Endpoint::from_shared(self.endpoints[self.current].clone())
                .map_err(|e| e.to_string())?
                .connect_timeout(CONNECT_TIMEOUT);
            let channel = tokio::time::timeout(CONNECT_TIMEOUT, endpoint.connect())
                .await
                .map_err(|_| "connect timed out".to_string())?
                .map_err(|e| format!("connect: {e}"))?;
            self.client = Some(KvClient::new(channel));
        }
        Ok(self.client.as_mut().expect("client was just set"))
    }

    fn rotate(&mut self) {
        self.client = None;
        self.current = (self.current + 1) % self.endpoints.len();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_elect_one_leader_and_reads_are_linearizable_everywhere() {
    let _turn = SERIAL.lock().await;
    let mut cluster = start(ClusterOpts::default()).await;
    let leader = cluster
        .wait_leader(Duration::from_secs(10))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let ids: HashSet<u64> = (0..3).filter_map(|i| cluster.member_id(i)).collect();
    assert_eq!(ids.len(), 3, "three distinct member IDs");
    let leader_id = cluster.member_id(leader).expect("leader id");
    for i in 0..3 {
        let status = cluster.status(i).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            status.leader,
            leader_id,
            "{} names another leader",
            cluster.name(i)
        );
    }
    println!("one leader: {} ({leader_id:x})", cluster.name(leader));

    let mut clients = Vec::new();
    for i in 0..3 {
        clients.push(kv(&cluster, i).await);
    }
    let mut last_revision = None;
    for round in 0..20 {
        for writer in 0..3 {
            let key = format!("elect/{round}/{writer}").into_bytes();
            let value = format!("r{round}-w{writer}").into_bytes();
            let revision = put_ok(&mut clients[writer], &key, &value).await;
            if let Some(last) = last_revision {
                assert_eq!(
                    revision,
                    last + 1,
                    "sequential puts take consecutive revisions (put through {})",
                    cluster.name(writer)
                );
            }
            last_revision = Some(revision);
            for (reader, client) in clients.iter_mut().enumerate() {
                let req = RangeRequest {
                    key: key.clone(),
                    ..Default::default()
                };
                let resp = range_ok(client, req).await;
                let header = resp.header.expect("range header").revision;
                let kv = resp.kvs.first().unwrap_or_else(|| {
                    panic!(
                        "linearizable read through {} misses {} acked at {revision} through {}",
                        cluster.name(reader),
                        String::from_utf8_lossy(&key),
                        cluster.name(writer)
                    )
                });
                assert_eq!(
                    (kv.value.as_slice(), kv.mod_revision),
                    (value.as_slice(), revision),
                    "read through {} of a put through {}",
                    cluster.name(reader),
                    cluster.name(writer)
                );
                assert!(header >= revision, "header revision {header} < {revision}");
            }
        }
    }
    let last = last_revision.expect("some puts");
    assert_members_agree(&cluster, last, "elect").await;
}

#[derive(Debug, Default)]
struct WriterLog {
    /// Acknowledged puts, and puts that failed or timed out (they may or
    /// may not have applied).
    ledger: Ledger,
    /// Failures while no member was being killed.
    errors_while_healthy: Vec<String>,
}

#[derive(Default)]
struct Load {
    acked: AtomicUsize,
    /// Puts sent after the kill and acknowledged.
    acked_after_kill: AtomicUsize,
    killed: AtomicBool,
    stop: AtomicBool,
    first_ack_after_kill: Mutex<Option<Instant>>,
}

const FAILOVER_WRITERS: usize = 6;
const FAILOVER_KEYS_PER_WRITER: usize = 8;
const FAILOVER_ACKS_BEFORE: usize = 200;
const FAILOVER_ACKS_AFTER: usize = 200;
/// Bound on puts per writer (the stop flag normally comes first).
const MAX_PUTS_PER_WRITER: usize = 20_000;

async fn failover_writer(id: usize, endpoints: Vec<String>, load: Arc<Load>) -> WriterLog {
    let mut log = WriterLog::default();
    let mut client = Rotating::new(endpoints, id);
    for seq in 0..MAX_PUTS_PER_WRITER {
        if load.stop.load(Ordering::SeqCst) {
            break;
        }
        let key = format!("fo/w{id}/k{}", seq % FAILOVER_KEYS_PER_WRITER).into_bytes();
        let value = format!("w{id}-s{seq}").into_bytes();
        let after_kill = load.killed.load(Ordering::SeqCst);
        let put = PutRequest {
            key: key.clone(),
            value: value.clone(),
            ..Default::default()
        };
        let outcome = match client.client().await {
            Ok(kv) => match tokio::time::timeout(RPC_TIMEOUT, kv.put(put)).await {
                Ok(Ok(resp)) => resp
                    .into_inner()
                    .header
                    .map(|h| h.revision)
                    .ok_or_else(|| "put response without header".to_string()),
                Ok(Err(s)) => Err(format!("{:?}: {}", s.code(), s.message())),
                Err(_) => Err(format!("put timed out after {RPC_TIMEOUT:?}")),
            },
            Err(e) => Err(e),
        };
        match outcome {
            Ok(revision) => {
                log.ledger.ack(key, value, revision);
                load.acked.fetch_add(1, Ordering::SeqCst);
                if after_kill {
                    load.acked_after_kill.fetch_add(1, Ordering::SeqCst);
                    let mut first = load.first_ack_after_kill.lock().expect("lock");
                    first.get_or_insert_with(Instant::now);
                }
            }
            Err(e) => {
                if !load.killed.load(Ordering::SeqCst) {
                    log.errors_while_healthy
                        .push(format!("writer {id} seq {seq}: {e}"));
                }
                log.ledger.maybe(key, value);
                client.rotate();
                // A failed put may be retried only after the client moved on;
                // pace retries so a dead member does not spin the CPU.
                tokio::time::sleep(POLL).await;
            }
        }
    }
    log
}

/// Polls `counter` until it reaches `target`, for at most `timeout`.
async fn wait_count(counter: &AtomicUsize, target: usize, timeout: Duration) -> bool {
    let started = Instant::now();
    while started.elapsed() < timeout {
        if counter.load(Ordering::SeqCst) >= target {
            return true;
        }
        tokio::time::sleep(POLL).await;
    }
    counter.load(Ordering::SeqCst) >= target
}

/// Every ack is on member `i` at its revision, and each key's latest value
/// is its last ack or a newer maybe-applied put, read from the member's own
/// store.
async fn assert_acks_on_member(cluster: &Cluster, i: usize, ledger: &Ledger) {
    let mut kv = kv(cluster, i).await;
    if let Err(e) = ledger
        .verify(&mut kv, ReadMode::Serializable, RPC_TIMEOUT)
        .await
    {
        panic!("{}: {e}", cluster.name(i));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_kill9_under_write_load_fails_over_and_loses_nothing() {
    let _turn = SERIAL.lock().await;
    // etcd's default timings: failover should take a few election timeouts.
    let opts = ClusterOpts {
        heartbeat_interval_ms: 100,
        election_timeout_ms: 1000,
        ..ClusterOpts::default()
    };
    let mut cluster = start(opts).await;
    let old_leader = cluster
        .wait_leader(Duration::from_secs(10))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let load = Arc::new(Load::default());
    let writers: Vec<_> = (0..FAILOVER_WRITERS)
        .map(|id| tokio::spawn(failover_writer(id, cluster.endpoints(), load.clone())))
        .collect();

    let warmed = wait_count(&load.acked, FAILOVER_ACKS_BEFORE, Duration::from_secs(60)).await;
    assert!(
        warmed,
        "only {} of {FAILOVER_ACKS_BEFORE} puts acknowledged before the kill",
        load.acked.load(Ordering::SeqCst)
    );
    load.killed.store(true, Ordering::SeqCst);
    let killed_at = Instant::now();
    cluster.kill9(old_leader).expect("kill -9 the leader");
    let new_leader = cluster
        .wait_leader(Duration::from_secs(15))
        .await
        .unwrap_or_else(|e| panic!("no new leader after kill -9 of the leader: {e}"));
    let failover = killed_at.elapsed();
    assert_ne!(new_leader, old_leader);

    let resumed = wait_count(
        &load.acked_after_kill,
        FAILOVER_ACKS_AFTER,
        Duration::from_secs(30),
    )
    .await;
    load.stop.store(true, Ordering::SeqCst);
    let mut ledger = Ledger::default();
    let mut healthy_errors = Vec::new();
    for writer in writers {
        let log = tokio::time::timeout(RPC_TIMEOUT * 3, writer)
            .await
            .expect("writer did not stop")
            .expect("writer panicked");
        ledger.extend(log.ledger);
        healthy_errors.extend(log.errors_while_healthy);
    }
    let first_ack_after = load
        .first_ack_after_kill
        .lock()
        .expect("lock")
        .map(|t| t.duration_since(killed_at));
    println!(
        "failover: {} killed; {} leads after {failover:?}; first put acknowledged {first_ack_after:?} after the kill; \
         {} acks ({} sent after the kill), {} maybe applied",
        cluster.name(old_leader),
        cluster.name(new_leader),
        ledger.acks().len(),
        load.acked_after_kill.load(Ordering::SeqCst),
        ledger.maybe_count()
    );
    assert!(
        healthy_errors.is_empty(),
        "puts failed before the kill: {healthy_errors:?}"
    );
    assert!(
        resumed,
        "writes did not continue: {} of {FAILOVER_ACKS_AFTER} puts acknowledged after the kill",
        load.acked_after_kill.load(Ordering::SeqCst)
    );

    ledger.unique_revisions().unwrap_or_else(|e| panic!("{e}"));
    let max_acked = ledger.max_revision();

    cluster
        .restart(old_leader)
        .await
        .unwrap_or_else(|e| panic!("restart the old leader: {e}"));
    let mut kv_new = kv(&cluster, new_leader).await;
    let marker = put_ok(&mut kv_new, b"fo/after-restart", b"x").await;
    assert!(
        marker > max_acked,
        "put after failover got {marker} <= {max_acked}"
    );
    assert_members_agree(&cluster, marker, "failover").await;
    for i in 0..cluster.size() {
        assert_acks_on_member(&cluster, i, &ledger).await;
    }
    let leader_now = cluster
        .wait_leader(Duration::from_secs(10))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    println!(
        "failover: old leader {} caught up to {marker}; leader now {}",
        cluster.name(old_leader),
        cluster.name(leader_now)
    );
}

/// What member `i`'s log says when it installs a snapshot from the leader.
/// oxcd logs "installed snapshot"; when the suite runs against etcd 3.4
/// (`OXCD_BIN=/usr/bin/etcd`, to validate the test), etcd's own wording.
fn snapshot_install_phrase(cluster: &Cluster) -> &'static str {
    let is_etcd = cluster
        .binary()
        .file_name()
        .is_some_and(|n| n.to_string_lossy() == "etcd");
    if is_etcd {
        "finished applying incoming snapshot"
    } else {
        "installed snapshot"
    }
}

/// The snapshot image files (`*.snap`) in member `i`'s `member/snap/`.
fn snapshot_images(cluster: &Cluster, i: usize) -> BTreeSet<String> {
    let dir = cluster.data_dir(i).join("member").join("snap");
    match std::fs::read_dir(&dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".snap"))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeSet::new(),
        Err(e) => panic!("read {}: {e}", dir.display()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_behind_by_more_than_snapshot_count_catches_up_by_snapshot() {
    let _turn = SERIAL.lock().await;
    let snapshot_count = 200;
    // etcd keeps 5000 entries for slow followers, so validating against etcd
    // needs OXCD_SNAPSHOT_WRITES=6000; oxcd keeps min(5000, count / 2).
    let writes = env_usize("OXCD_SNAPSHOT_WRITES", 1000);
    let opts = ClusterOpts {
        snapshot_count: Some(snapshot_count),
        ..ClusterOpts::default()
    };
    let mut cluster = start(opts).await;
    let leader = cluster
        .wait_leader(Duration::from_secs(10))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let follower = (0..3).find(|&i| i != leader).expect("a follower");
    let other = (0..3)
        .find(|&i| i != leader && i != follower)
        .expect("another follower");
    cluster.kill9(follower).expect("kill -9 the follower");
    let snap_dir = cluster.data_dir(follower).join("member").join("snap");
    let images_before = snapshot_images(&cluster, follower);

    const WRITERS: usize = 4;
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let through = if w % 2 == 0 { leader } else { other };
        let mut client = kv(&cluster, through).await;
        let count = writes / WRITERS + usize::from(w < writes % WRITERS);
        tasks.push(tokio::spawn(async move {
            let mut max = 0;
            for seq in 0..count {
                let key = format!("snap/w{w}/k{:03}", seq % 150).into_bytes();
                let value = format!("w{w}-s{seq}").into_bytes();
                max = max.max(put_ok(&mut client, &key, &value).await);
            }
            max
        }));
    }
    let mut revision = 0;
    for task in tasks {
        revision = revision.max(task.await.expect("writer panicked"));
    }
    println!(
        "snapshot: {} stopped while {writes} puts were written (store at revision {revision})",
        cluster.name(follower)
    );

    let restarted_at = Instant::now();
    cluster
        .restart(follower)
        .await
        .unwrap_or_else(|e| panic!("restart the follower: {e}"));
    cluster
        .wait_revision(follower, revision, CATCH_UP_TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("follower does not catch up: {e}"));
    println!(
        "snapshot: {} caught up to {revision} {:?} after restart",
        cluster.name(follower),
        restarted_at.elapsed()
    );

    let phrase = snapshot_install_phrase(&cluster);
    let log = cluster.current_log(follower);
    assert!(
        log.contains(phrase),
        "{} caught up without a log line containing {phrase:?} (so not by snapshot?); log since restart:\n{}",
        cluster.name(follower),
        log.lines()
            .rev()
            .take(60)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    );
    let images = snapshot_images(&cluster, follower);
    let new_images: Vec<&String> = images.difference(&images_before).collect();
    assert!(
        !new_images.is_empty(),
        "no new snapshot image in {} (before the restart: {images_before:?}, now: {images:?})",
        snap_dir.display()
    );
    println!(
        "snapshot: new images in {}: {new_images:?}",
        snap_dir.display()
    );

    assert_members_agree(&cluster, revision, "snapshot").await;
    let mut kv_follower = kv(&cluster, follower).await;
    let marker = put_ok(&mut kv_follower, b"snap/after", b"x").await;
    assert_eq!(marker, revision + 1, "a put through the caught-up follower");
    assert_members_agree(&cluster, marker, "snapshot+1").await;
}

/// Outcome of one request to an isolated member: the error code, or success.
async fn timed<T>(
    call: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> (Duration, Result<T, (Code, String)>) {
    let started = Instant::now();
    // Far above the few seconds a refusal takes: only a hang reaches it.
    let outcome = match tokio::time::timeout(Duration::from_secs(20), call).await {
        Ok(Ok(resp)) => Ok(resp.into_inner()),
        Ok(Err(s)) => Err((s.code(), s.message().to_string())),
        Err(_) => Err((Code::DeadlineExceeded, "no answer within 20 s".to_string())),
    };
    (started.elapsed(), outcome)
}

/// Kills every member but `alone` and checks what `alone` answers.
async fn assert_isolated_member_refuses(cluster: &mut Cluster, alone: usize, role: &str) {
    let mut kv = kv(cluster, alone).await;
    let known = put_ok(&mut kv, b"iso/known", format!("before-{role}").as_bytes()).await;
    for i in 0..cluster.size() {
        cluster
            .wait_revision(i, known, CATCH_UP_TIMEOUT)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    for i in 0..cluster.size() {
        if i != alone {
            cluster.kill9(i).expect("kill -9");
        }
    }
    let mut kv_put = kv.clone();
    let mut kv_get = kv.clone();
    let put = PutRequest {
        key: b"iso/refused".to_vec(),
        value: b"x".to_vec(),
        ..Default::default()
    };
    let get = RangeRequest {
        key: b"iso/known".to_vec(),
        ..Default::default()
    };
    let ((put_took, put), (get_took, get)) =
        tokio::join!(timed(kv_put.put(put)), timed(kv_get.range(get)));
    println!(
        "isolated {role} {}: put -> {:?} after {put_took:?}; linearizable get -> {:?} after {get_took:?}",
        cluster.name(alone),
        put.as_ref().map(|_| "ok").map_err(|e| e.clone()),
        get.as_ref().map(|_| "ok").map_err(|e| e.clone()),
    );
    match put {
        Err((Code::Unavailable, _)) => {}
        other => panic!(
            "isolated {role} {}: put answered {:?} after {put_took:?}; want Unavailable",
            cluster.name(alone),
            other.map(|r| r.header)
        ),
    }
    match get {
        Err((Code::Unavailable, _)) => {}
        other => panic!(
            "isolated {role} {}: linearizable get answered {:?} after {get_took:?}; want Unavailable",
            cluster.name(alone),
            other.map(|r| r.kvs)
        ),
    }
    let serializable = RangeRequest {
        key: b"iso/known".to_vec(),
        serializable: true,
        ..Default::default()
    };
    let resp = range_ok(&mut kv, serializable).await;
    let found = resp.kvs.first().expect("serializable read of a known key");
    assert_eq!(found.value, format!("before-{role}").into_bytes());
    assert_eq!(found.mod_revision, known);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_isolated_member_refuses_linearizable_reads_and_writes_in_bounded_time() {
    let _turn = SERIAL.lock().await;
    let mut cluster = start(ClusterOpts::default()).await;
    let leader = cluster
        .wait_leader(Duration::from_secs(10))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_isolated_member_refuses(&mut cluster, leader, "leader").await;

    for i in 0..3 {
        if i != leader {
            cluster
                .restart(i)
                .await
                .unwrap_or_else(|e| panic!("restart {}: {e}", cluster.name(i)));
        }
    }
    let leader = cluster
        .wait_leader(Duration::from_secs(10))
        .await
        .unwrap_or_else(|e| panic!("no leader after the restarts: {e}"));
    let follower = (0..3).find(|&i| i != leader).expect("a follower");
    assert_isolated_member_refuses(&mut cluster, follower, "follower").await;
}

/// Judges `history` (witness checker first, porcupine-rs as second
/// opinion) and prints each checker's answer and time; on a confirmed
/// violation, porcupine's visualisation goes under `target/`.
fn check_linearizable(history: &[lin::Op], seed: u64) -> Result<(), String> {
    let opts = JudgeOpts {
        visualisation: Some(
            workspace_root()
                .join("target")
                .join(format!("lin-violation-seed-{seed}.html")),
        ),
        ..JudgeOpts::default()
    };
    let judgement = lin_verdict::judge(history, &opts);
    for line in &judgement.report {
        println!("lin: {line}");
    }
    judgement.result().map_err(|e| format!("{e} (seed {seed})"))
}

struct LinShared {
    recorder: Recorder,
    next_client: AtomicU32,
    definite: AtomicUsize,
    stop: AtomicBool,
}

const LIN_CLIENTS: usize = 6;
const LIN_HOT_KEYS: usize = 5;
const LIN_RPC_TIMEOUT: Duration = Duration::from_secs(3);
const MAX_OPS_PER_CLIENT: usize = 20_000;

async fn lin_client(writer: usize, seed: u64, endpoints: Vec<String>, shared: Arc<LinShared>) {
    let mut workload = Workload::new("lin/k", LIN_HOT_KEYS, writer, seed);
    let mut client = Rotating::new(endpoints, writer);
    let mut id = shared.next_client.fetch_add(1, Ordering::SeqCst);
    for _ in 0..MAX_OPS_PER_CLIENT {
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        let request = workload.next_request();
        let call = shared.recorder.now();
        let outcome = match client.client().await {
            Ok(kv) => lin::execute(kv, &request, LIN_RPC_TIMEOUT).await,
            Err(e) => Err(e),
        };
        let failed = outcome.is_err();
        let member = client.current;
        match shared
            .recorder
            .record(id, member, call, request.clone(), outcome)
        {
            Some(Response::Unknown) => {
                // The unknown write stays outstanding forever: go on as a new
                // client so each client has one outstanding request.
                id = shared.next_client.fetch_add(1, Ordering::SeqCst);
            }
            Some(response) => {
                workload.observe(&request, &response);
                shared.definite.fetch_add(1, Ordering::SeqCst);
            }
            None => {}
        }
        if failed {
            client.rotate();
            tokio::time::sleep(POLL).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_history_across_a_leader_kill_is_linearizable() {
    let _turn = SERIAL.lock().await;
    let seed = seed_from_env();
    println!("lin: seed {seed} (replay with OXCD_SEED={seed})");
    let ops_per_phase = env_usize("OXCD_LIN_OPS", 400);
    let mut cluster = start(ClusterOpts::default()).await;
    let leader = cluster
        .wait_leader(Duration::from_secs(10))
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    // The model starts from an empty store at revision 1.
    let mut probe = kv(&cluster, leader).await;
    let empty = range_ok(
        &mut probe,
        RangeRequest {
            key: vec![0],
            range_end: vec![0],
            count_only: true,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        (empty.count, empty.header.map(|h| h.revision)),
        (0, Some(1)),
        "the store is empty at revision 1 before the history"
    );

    let shared = Arc::new(LinShared {
        recorder: Recorder::new(),
        next_client: AtomicU32::new(0),
        definite: AtomicUsize::new(0),
        stop: AtomicBool::new(false),
    });
    let clients: Vec<_> = (0..LIN_CLIENTS)
        .map(|w| tokio::spawn(lin_client(w, seed, cluster.endpoints(), shared.clone())))
        .collect();

    let phase_timeout = Duration::from_secs(60);
    let mut target = ops_per_phase;
    let before = wait_count(&shared.definite, target, phase_timeout).await;
    let killed_at = shared.recorder.now();
    cluster.kill9(leader).expect("kill -9 the leader");
    let new_leader = cluster.wait_leader(Duration::from_secs(15)).await;
    target += ops_per_phase;
    let during = wait_count(&shared.definite, target, phase_timeout).await;
    let restart = cluster.restart(leader).await;
    target += ops_per_phase / 2;
    let after = wait_count(&shared.definite, target, phase_timeout).await;
    shared.stop.store(true, Ordering::SeqCst);
    for client in clients {
        tokio::time::timeout(LIN_RPC_TIMEOUT * 3, client)
            .await
            .expect("client did not stop")
            .expect("client panicked");
    }
    let new_leader = new_leader.unwrap_or_else(|e| panic!("no new leader after the kill: {e}"));
    restart.unwrap_or_else(|e| panic!("restart the old leader: {e}"));
    assert!(
        before && during && after,
        "the clients stalled: definite ops {} (phases reached: before kill {before}, after kill {during}, after restart {after})",
        shared.definite.load(Ordering::SeqCst)
    );

    let history = shared.recorder.history();
    let history_path = cluster.dir().join("history.txt");
    let lines: Vec<String> = history.iter().map(ToString::to_string).collect();
    std::fs::write(&history_path, lines.join("\n")).expect("write the history");
    let summary = Summary::of(&history);
    let after_kill = history
        .iter()
        .filter(|op| {
            op.call > killed_at && op.request.is_write() && op.response != Response::Unknown
        })
        .count();
    println!(
        "lin: {} killed, {} took over; {} operations: {summary}; {after_kill} definite writes sent after the kill",
        cluster.name(leader),
        cluster.name(new_leader),
        history.len()
    );
    assert!(after_kill > 0, "no write succeeded after the kill");
    assert!(
        summary.cas_succeeded > 0 && summary.cas_failed > 0,
        "txns exercised both branches: {summary}"
    );
    let verdict = check_linearizable(&history, seed);

    // Maybe-applied writes have settled once a later put is acknowledged.
    // Member agreement is checked before the verdict is enforced: when
    // members diverged, its report (first differing revision, each member's
    // write there) explains a violation better than the history does.
    let mut kv_now = kv(&cluster, new_leader).await;
    let marker = put_ok(&mut kv_now, b"lin/after", b"x").await;
    assert_members_agree(&cluster, marker, &format!("lin (seed {seed})")).await;
    verdict.unwrap_or_else(|e| panic!("{e}"));
}
