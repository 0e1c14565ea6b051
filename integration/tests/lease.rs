//! Leases: etcd's Lease API on oxcd, against etcd 3.4 where etcd behaves the
//! same, and oxcd's replicated countdowns where it goes further.
//!
//! 1. `etcdctl_lease_commands_print_as_against_etcd`: grant (the minimum
//!    TTL, the maximum), put with a lease, time-to-live with and without
//!    keys, keep-alive once, list, revoke, and each on an unknown or expired
//!    lease, in every output format, through etcdctl against etcd and oxcd;
//!    outputs compared after normalising lease ids and remaining TTLs (see
//!    `integration::lease_check`).
//! 2. `an_unrenewed_lease_expires_within_its_ttl_in_one_delete_revision`
//!    (etcd, then oxcd): one member; three keys on a lease, a watcher on
//!    their prefix; after the last keep-alive the keys go no earlier than
//!    the TTL and no later than TTL + 1 s, and the watcher sees the three
//!    deletes in one revision.
//! 3. `a_countdown_survives_a_leader_kill`: three members; the leader is
//!    killed halfway through a lease's countdown (TTL 8 s, killed with 4 s
//!    left, so that starting over would overshoot the bound by about 2 s;
//!    with TTL 6 s killed after 2 s it would not); the new leader continues
//!    it from the last checkpoint: the keys go no earlier than the TTL and no
//!    later than TTL + 1 s + a checkpoint interval + 1 s of rounding + the
//!    election.
//! 4. `a_thousand_kept_alive_leases_survive_a_leader_kill`: one client keeps
//!    1,000 leases alive over one keep-alive stream through a follower,
//!    through a leader kill and 2.5 TTLs beyond: no lease expires.
//! 5. `a_countdown_survives_leadership_moving_twice`: as 3, from the owner's
//!    last keep-alive, with two `MoveLeader`s during the countdown instead
//!    of a kill (the bound allows one checkpoint interval, 1 s of rounding
//!    per move, and counts both moves as the election).
//!
//! In 3, 5 and 6 a lease that exists must never be answered as unknown
//! (time-to-live TTL -1), before or right after a leadership change; such
//! answers are collected and asserted after the timing checks, and 6's
//! header differences likewise, so one run shows every finding. etcd 3.4
//! (with no lease checkpoints) fails 3 and 5: its new leader starts every
//! countdown over; that is how they were checked to tell the difference.
//! 6. `keep_alive_and_time_to_live_through_a_follower_answer_as_the_leader`
//!    (etcd, then oxcd): the follower's answers are the leader's (remaining
//!    TTL counting down, a keep-alive resetting it), and an unknown lease
//!    gets keep-alive TTL 0 and time-to-live TTL -1, headers as etcd fills
//!    them.
//!
//! Every wait is bounded and polls a condition; times are measured and
//! printed. A bound is claimed broken only when the polls prove it: the
//! expiry lies after the last poll that saw the keys was sent and before the
//! first poll that missed them was answered (`PresenceLog`). The tests run
//! one at a time (timings on a shared two-core machine). oxcd runs with
//! `--experimental-lease-checkpoint-interval=1s` so countdowns are
//! checkpointed within the tests' time.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use integration::cluster::{Cluster, ClusterOpts};
use integration::etcdctl::{CtlOutput, Normalizer, run_etcdctl};
use integration::lease_check::{
    KeepAliveLedger, LeaseIds, PresenceLog, granted_ttl, remaining_agree,
};
use integration::{Kind, Server, ServerOpts, env_usize, seed_from_env};
use proto::etcdserverpb::kv_client::KvClient;
use proto::etcdserverpb::lease_client::LeaseClient;
use proto::etcdserverpb::maintenance_client::MaintenanceClient;
use proto::etcdserverpb::watch_client::WatchClient;
use proto::etcdserverpb::watch_request::RequestUnion;
use proto::etcdserverpb::{
    LeaseGrantRequest, LeaseKeepAliveRequest, LeaseKeepAliveResponse, LeaseLeasesRequest,
    LeaseTimeToLiveRequest, LeaseTimeToLiveResponse, MoveLeaderRequest, PutRequest, RangeRequest,
    ResponseHeader, StatusRequest, WatchCreateRequest, WatchRequest,
};
use proto::mvccpb::event::EventType;
use rand::{Rng, SeedableRng};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};

/// One test at a time: clusters of three on two cores, and measured times.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// oxcd's checkpoint interval in these tests.
const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);
/// What the issue asks of expiry: keys gone within TTL + 1 s.
const EXPIRY_SLACK: Duration = Duration::from_secs(1);
/// What leader changes may add to a countdown, as `actors/src/lease/core.rs`
/// documents it (besides the elections): the age of the last checkpoint (at
/// most one interval, once: a new leader checkpoints every lease right after
/// it takes over) and 1 s of rounding per change (checkpoints count whole
/// seconds, rounded up).
fn allowance(changes: u32) -> Duration {
    CHECKPOINT_INTERVAL + Duration::from_secs(u64::from(changes))
}
/// Bound on one client RPC.
const RPC_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound on connecting to a member.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Pause between two polls of a condition.
const POLL: Duration = Duration::from_millis(20);
/// Bound on a leader being known.
const LEADER_WAIT: Duration = Duration::from_secs(30);
/// Bound on one etcdctl run.
const CTL_TIMEOUT: Duration = Duration::from_secs(30);

fn checkpoint_flag(kind: Kind) -> Vec<String> {
    match kind {
        Kind::Oxcd => vec![format!(
            "--experimental-lease-checkpoint-interval={}s",
            CHECKPOINT_INTERVAL.as_secs()
        )],
        _ => Vec::new(),
    }
}

fn cluster_opts(kind: Kind) -> ClusterOpts {
    ClusterOpts {
        extra_args: checkpoint_flag(kind),
        ..ClusterOpts::default()
    }
}

async fn start_cluster(kind: Kind) -> Cluster {
    Cluster::start(kind, cluster_opts(kind))
        .await
        .unwrap_or_else(|e| panic!("start {} cluster: {e}", kind.name()))
}

/// Runs one RPC with [`RPC_TIMEOUT`], flattening errors to text.
async fn bounded<T>(
    what: &str,
    call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T, String> {
    match tokio::time::timeout(RPC_TIMEOUT, call).await {
        Ok(Ok(resp)) => Ok(resp.into_inner()),
        Ok(Err(status)) => Err(format!("{what}: {:?}: {}", status.code(), status.message())),
        Err(_) => Err(format!("{what}: timed out after {RPC_TIMEOUT:?}")),
    }
}

async fn connect(endpoint: &str) -> Result<Channel, String> {
    let target = Endpoint::from_shared(endpoint.to_string())
        .map_err(|e| e.to_string())?
        .connect_timeout(CONNECT_TIMEOUT);
    match tokio::time::timeout(CONNECT_TIMEOUT * 2, target.connect()).await {
        Ok(Ok(channel)) => Ok(channel),
        Ok(Err(e)) => Err(format!("connect {endpoint}: {e}")),
        Err(_) => Err(format!("connect {endpoint}: timed out")),
    }
}

/// A granted lease and when its grant was sent and answered.
#[derive(Debug, Clone, Copy)]
struct Granted {
    id: i64,
    ttl: i64,
    sent: Instant,
    answered: Instant,
}

impl Granted {
    fn ttl(&self) -> Duration {
        Duration::from_secs(self.ttl as u64)
    }
}

async fn grant(channel: &Channel, ttl: i64) -> Result<Granted, String> {
    let sent = Instant::now();
    let resp = bounded(
        "LeaseGrant",
        LeaseClient::new(channel.clone()).lease_grant(LeaseGrantRequest { ttl, id: 0 }),
    )
    .await?;
    Ok(Granted {
        id: resp.id,
        ttl: resp.ttl,
        sent,
        answered: Instant::now(),
    })
}

async fn put_with_lease(channel: &Channel, key: &str, lease: i64) -> Result<i64, String> {
    let resp = bounded(
        "Put",
        KvClient::new(channel.clone()).put(PutRequest {
            key: key.as_bytes().to_vec(),
            value: b"v".to_vec(),
            lease,
            ..Default::default()
        }),
    )
    .await?;
    Ok(resp.header.map_or(0, |h| h.revision))
}

/// One keep-alive on a stream of its own (kept open until it is answered).
async fn keep_alive_once(channel: &Channel, id: i64) -> Result<LeaseKeepAliveResponse, String> {
    let (tx, rx) = mpsc::channel(1);
    tx.send(LeaseKeepAliveRequest { id })
        .await
        .map_err(|_| "keep-alive request channel closed".to_string())?;
    let mut answers = bounded(
        "LeaseKeepAlive",
        LeaseClient::new(channel.clone()).lease_keep_alive(ReceiverStream::new(rx)),
    )
    .await?;
    let answer = tokio::time::timeout(RPC_TIMEOUT, answers.message())
        .await
        .map_err(|_| format!("keep-alive of {id:x}: no answer within {RPC_TIMEOUT:?}"))?
        .map_err(|s| format!("keep-alive of {id:x}: {:?}: {}", s.code(), s.message()))?
        .ok_or_else(|| format!("keep-alive of {id:x}: stream ended unanswered"))?;
    drop(tx);
    Ok(answer)
}

async fn time_to_live(
    channel: &Channel,
    id: i64,
    keys: bool,
) -> Result<LeaseTimeToLiveResponse, String> {
    bounded(
        "LeaseTimeToLive",
        LeaseClient::new(channel.clone()).lease_time_to_live(LeaseTimeToLiveRequest { id, keys }),
    )
    .await
}

/// The end of the range holding every key that starts with `prefix`.
fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    let last = end.last_mut().expect("a non-empty prefix");
    *last += 1;
    end
}

/// Polls `count` keys under `prefix` with linearizable reads through
/// `endpoints` (the next one when one fails) until a poll finds none, for at
/// most `timeout`. A poll seeing some but not all of them fails: a lease's
/// keys go in one revision.
async fn await_expiry(
    endpoints: Vec<String>,
    prefix: String,
    count: i64,
    timeout: Duration,
) -> Result<PresenceLog, String> {
    let started = Instant::now();
    let mut log = PresenceLog::default();
    let mut channels: Vec<Option<Channel>> = vec![None; endpoints.len()];
    let mut at = 0;
    let mut last_error = String::from("no poll answered yet");
    while !log.gone() {
        if started.elapsed() > timeout {
            return Err(format!(
                "keys under {prefix} still there (or unreadable) after {timeout:?}: {last_error}"
            ));
        }
        if channels[at].is_none() {
            channels[at] = connect(&endpoints[at]).await.ok();
        }
        let Some(channel) = channels[at].clone() else {
            at = (at + 1) % endpoints.len();
            tokio::time::sleep(POLL).await;
            continue;
        };
        let range = RangeRequest {
            key: prefix.as_bytes().to_vec(),
            range_end: prefix_end(&prefix),
            count_only: true,
            ..Default::default()
        };
        let sent = Instant::now();
        match bounded("Range", KvClient::new(channel).range(range)).await {
            Ok(resp) => {
                let answered = Instant::now();
                if resp.count != 0 && resp.count != count {
                    return Err(format!(
                        "{} of the {count} keys under {prefix} seen: a lease's keys go together",
                        resp.count
                    ));
                }
                log.observe(sent, answered, resp.count == count)?;
            }
            Err(e) => {
                last_error = e;
                channels[at] = None;
                at = (at + 1) % endpoints.len();
            }
        }
        tokio::time::sleep(POLL).await;
    }
    Ok(log)
}

/// Checks that keys whose lease's countdown ran from a renewal sent at
/// `renewed_sent` and answered at `renewed_answered` went no earlier than
/// `ttl` after it and no later than `bound` after it; prints the window.
fn check_expiry(
    what: &str,
    log: &PresenceLog,
    ttl: Duration,
    renewed_sent: Instant,
    renewed_answered: Instant,
    bound: Duration,
) {
    let window = log
        .window()
        .unwrap_or_else(|| panic!("{what}: the keys were never seen ({} polls)", log.polls()));
    let (after, before) = window.since(renewed_sent);
    println!(
        "{what}: keys gone between {:.2}s and {:.2}s after the last renewal was sent \
         (TTL {:.0}s, bound {:.2}s, {} polls)",
        after.as_secs_f64(),
        before.as_secs_f64(),
        ttl.as_secs_f64(),
        bound.as_secs_f64(),
        log.polls()
    );
    assert!(
        !window.surely_before(renewed_sent + ttl),
        "{what}: the keys were gone {:.3}s after the renewal was sent, before the TTL of {ttl:?}",
        before.as_secs_f64()
    );
    assert!(
        !window.surely_after(renewed_answered + bound),
        "{what}: the keys were still there {:.3}s after the renewal was answered, \
         past the bound of {bound:?}",
        window
            .after
            .saturating_duration_since(renewed_answered)
            .as_secs_f64()
    );
}

// ---------------------------------------------------------------------------
// 1. etcdctl

/// One etcdctl step: arguments where `{n}` stands for the n-th granted
/// lease (hex), whether it grants a lease (its id is learnt), whether it
/// prints remaining TTLs.
struct Step {
    args: &'static [&'static str],
    grants: bool,
    remaining: bool,
}

const fn plain(args: &'static [&'static str]) -> Step {
    Step {
        args,
        grants: false,
        remaining: false,
    }
}

const fn grants(args: &'static [&'static str]) -> Step {
    Step {
        args,
        grants: true,
        remaining: false,
    }
}

const fn ttl_of(args: &'static [&'static str]) -> Step {
    Step {
        args,
        grants: false,
        remaining: true,
    }
}

/// An id no server granted (etcd prints its decimal form in JSON).
const UNKNOWN: &str = "1234abcd";

/// Lease 0: TTL 120; lease 1: `grant 1`, raised to the minimum; lease 2:
/// TTL 60, with keys; lease 3: JSON grant; lease 4: the largest TTL. (TTLs
/// long enough to outlast the test on a slow machine, but lease 1's.)
const BEFORE_EXPIRY: &[Step] = &[
    grants(&["lease", "grant", "120"]),
    grants(&["lease", "grant", "1"]),
    grants(&["lease", "grant", "60"]),
    grants(&["lease", "grant", "100", "-w", "json"]),
    plain(&["lease", "grant", "9000000001"]),
    grants(&["lease", "grant", "9000000000"]),
    plain(&["put", "--lease={2}", "k", "v"]),
    plain(&["put", "--lease={2}", "k2", "v2"]),
    plain(&["put", "--lease=1234abcd", "k3", "v"]),
    ttl_of(&["lease", "timetolive", "{2}"]),
    ttl_of(&["lease", "timetolive", "{2}", "--keys"]),
    ttl_of(&["lease", "timetolive", "{2}", "--keys", "-w", "json"]),
    ttl_of(&["lease", "timetolive", "{2}", "--keys", "-w", "fields"]),
    ttl_of(&["lease", "timetolive", "{0}", "--keys"]),
    plain(&["lease", "keep-alive", "--once", "{2}"]),
    plain(&["lease", "keep-alive", "--once", "{2}", "-w", "json"]),
    plain(&["lease", "keep-alive", "--once", "{2}", "-w", "fields"]),
];

/// After lease 1 expired.
const AFTER_EXPIRY: &[Step] = &[
    ttl_of(&["lease", "timetolive", "{1}"]),
    plain(&["lease", "keep-alive", "--once", "{1}"]),
    plain(&["lease", "list"]),
    plain(&["lease", "list", "-w", "json"]),
    plain(&["lease", "list", "-w", "fields"]),
    plain(&["lease", "revoke", "{2}"]),
    plain(&["get", "k"]),
    plain(&["get", "k2", "-w", "json"]),
    plain(&["lease", "revoke", "{2}"]),
    plain(&["lease", "revoke", "{2}", "-w", "json"]),
    ttl_of(&["lease", "timetolive", "{2}"]),
    ttl_of(&["lease", "timetolive", "{2}", "-w", "json"]),
    ttl_of(&["lease", "timetolive", "{2}", "-w", "fields"]),
    ttl_of(&["lease", "timetolive", UNKNOWN]),
    ttl_of(&["lease", "timetolive", UNKNOWN, "--keys", "-w", "json"]),
    plain(&["lease", "keep-alive", "--once", UNKNOWN]),
    plain(&["lease", "revoke", UNKNOWN]),
    plain(&["lease", "revoke", "zz"]),
    plain(&["lease", "revoke", "{0}", "-w", "fields"]),
    plain(&["lease", "list"]),
];

/// One server under etcdctl: where it is, its normaliser, its lease ids.
struct Side {
    kind: Kind,
    addr: String,
    norm: Normalizer,
    ids: LeaseIds,
    server: Server,
}

impl Side {
    async fn start(kind: Kind) -> Side {
        // etcd's default timings: the minimum TTL is ceil(1.5 x 1 s) = 2 s.
        let opts = ServerOpts {
            heartbeat_interval_ms: 100,
            election_timeout_ms: 1000,
            extra_args: checkpoint_flag(kind),
            ..ServerOpts::default()
        };
        let server = Server::start(kind, opts)
            .await
            .unwrap_or_else(|e| panic!("start {}: {e}", kind.name()));
        let status = bounded(
            "Status",
            MaintenanceClient::new(server.channel().await.expect("channel"))
                .status(StatusRequest {}),
        )
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", kind.name()));
        let header = status.header.unwrap_or_default();
        Side {
            kind,
            addr: server.client_addr(),
            norm: Normalizer::new(&server.client_addr(), header.member_id, header.cluster_id),
            ids: LeaseIds::default(),
            server,
        }
    }

    fn args(&self, step: &Step) -> Vec<String> {
        step.args
            .iter()
            .map(|arg| {
                let mut arg = arg.to_string();
                for n in 0..5 {
                    let slot = format!("{{{n}}}");
                    if arg.contains(&slot) {
                        arg = arg.replace(&slot, &self.ids.hex(n));
                    }
                }
                arg
            })
            .collect()
    }

    /// Runs `step`, learns a granted id, returns the normalised output and
    /// the remaining TTLs printed.
    async fn run(&mut self, step: &Step) -> (CtlOutput, Vec<i64>) {
        let args = self.args(step);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run_etcdctl(&self.addr, &args, None, CTL_TIMEOUT)
            .await
            .unwrap_or_else(|e| panic!("etcdctl against {}: {e}", self.kind.name()));
        if step.grants {
            self.ids.learn(&out.stdout).unwrap_or_else(|| {
                panic!(
                    "{}: `etcdctl {}` granted nothing: {out:?}",
                    self.kind.name(),
                    args.join(" ")
                )
            });
        }
        if args == ["lease", "grant", "1"] {
            assert_eq!(
                granted_ttl(&out.stdout),
                Some(2),
                "{}: `lease grant 1` is raised to the minimum TTL of 2 s: {out:?}",
                self.kind.name()
            );
        }
        self.ids.normalize(&self.norm.output(&out), step.remaining)
    }

    /// Polls the lease list until lease `n` is gone.
    async fn await_gone(&self, n: usize, timeout: Duration) -> Duration {
        let started = Instant::now();
        let channel = self.server.channel().await.expect("channel");
        loop {
            let leases = bounded(
                "LeaseLeases",
                LeaseClient::new(channel.clone()).lease_leases(LeaseLeasesRequest {}),
            )
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", self.kind.name()));
            if !leases.leases.iter().any(|l| l.id == self.ids.id(n)) {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < timeout,
                "{}: lease {} still listed after {timeout:?}",
                self.kind.name(),
                self.ids.hex(n)
            );
            tokio::time::sleep(POLL).await;
        }
    }
}

fn render(out: &CtlOutput) -> String {
    format!(
        "exit {}\n--- stdout ---\n{}--- stderr ---\n{}",
        out.code, out.stdout, out.stderr
    )
}

/// Runs `steps` against both sides, collecting every difference.
async fn compare(steps: &[Step], etcd: &mut Side, oxcd: &mut Side, diffs: &mut Vec<String>) {
    for step in steps {
        let shown = step.args.join(" ");
        let ((expected, expected_ttls), (actual, actual_ttls)) =
            tokio::join!(etcd.run(step), oxcd.run(step));
        println!("## etcdctl {shown}\n{}", render(&expected));
        if expected != actual || !remaining_agree(&expected_ttls, &actual_ttls) {
            diffs.push(format!(
                "`etcdctl {shown}` differs\n===== etcd (remaining {expected_ttls:?}) =====\n{}\
                 \n===== oxcd (remaining {actual_ttls:?}) =====\n{}",
                render(&expected),
                render(&actual)
            ));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_lease_commands_print_as_against_etcd() {
    let _turn = SERIAL.lock().await;
    let (etcd, oxcd) = tokio::join!(Side::start(Kind::Etcd), Side::start(Kind::Oxcd));
    let (mut etcd, mut oxcd) = (etcd, oxcd);
    let mut diffs = Vec::new();
    compare(BEFORE_EXPIRY, &mut etcd, &mut oxcd, &mut diffs).await;
    // Lease 1 (TTL 2 s) expires on its own.
    let (etcd_gone, oxcd_gone) = tokio::join!(
        etcd.await_gone(1, Duration::from_secs(30)),
        oxcd.await_gone(1, Duration::from_secs(30))
    );
    println!("the 2 s lease left the list {etcd_gone:?} (etcd), {oxcd_gone:?} (oxcd) later");
    compare(AFTER_EXPIRY, &mut etcd, &mut oxcd, &mut diffs).await;
    assert!(
        diffs.is_empty(),
        "{} etcdctl outputs differ:\n{}",
        diffs.len(),
        diffs.join("\n\n")
    );
    println!(
        "etcdctl: {} lease commands printed the same",
        BEFORE_EXPIRY.len() + AFTER_EXPIRY.len()
    );
}

// ---------------------------------------------------------------------------
// 2. Expiry with its delete events

async fn expiry_with_delete_events(kind: Kind) {
    let name = kind.name();
    let seed = seed_from_env();
    println!("{name}: seed {seed} (OXCD_SEED to replay)");
    let opts = ServerOpts {
        extra_args: checkpoint_flag(kind),
        ..ServerOpts::default()
    };
    let server = Server::start(kind, opts)
        .await
        .unwrap_or_else(|e| panic!("start {name}: {e}"));
    let channel = server.channel().await.expect("channel");
    let prefix = format!("expiry-{seed:x}/");

    // The watcher, before anything is written under the prefix.
    let (watch_tx, watch_rx) = mpsc::channel(4);
    watch_tx
        .send(WatchRequest {
            request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
                key: prefix.as_bytes().to_vec(),
                range_end: prefix_end(&prefix),
                ..Default::default()
            })),
        })
        .await
        .expect("watch request");
    let mut watch = bounded(
        "Watch",
        WatchClient::new(channel.clone()).watch(ReceiverStream::new(watch_rx)),
    )
    .await
    .unwrap_or_else(|e| panic!("{name}: {e}"));
    let created = tokio::time::timeout(RPC_TIMEOUT, watch.message())
        .await
        .expect("watch created in time")
        .expect("watch stream")
        .expect("created");
    assert!(created.created, "{name}: {created:?}");

    let lease = grant(&channel, 3)
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    assert!(lease.ttl >= 3, "{name}: {lease:?}");
    let keys: Vec<String> = (0..3).map(|i| format!("{prefix}{i}")).collect();
    let mut put_revision = 0;
    for key in &keys {
        put_revision = put_with_lease(&channel, key, lease.id)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    // The countdown runs from this last keep-alive.
    let renewed_sent = Instant::now();
    let renewed = keep_alive_once(&channel, lease.id)
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let renewed_answered = Instant::now();
    assert_eq!((renewed.id, renewed.ttl), (lease.id, lease.ttl), "{name}");

    let log = await_expiry(
        vec![server.endpoint()],
        prefix.clone(),
        3,
        lease.ttl() + Duration::from_secs(30),
    )
    .await
    .unwrap_or_else(|e| panic!("{name}: {e}"));
    check_expiry(
        &format!("{name}: lease {:x} (TTL {}s)", lease.id, lease.ttl),
        &log,
        lease.ttl(),
        renewed_sent,
        renewed_answered,
        lease.ttl() + EXPIRY_SLACK,
    );

    // Three puts, then three deletes in one revision.
    let mut puts = 0;
    let mut deletes = Vec::new();
    let mut responses_with_deletes = 0;
    let started = Instant::now();
    while deletes.len() < keys.len() {
        let left = RPC_TIMEOUT.saturating_sub(started.elapsed());
        let resp = tokio::time::timeout(left, watch.message())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{name}: {} deletes of {} seen within {RPC_TIMEOUT:?}",
                    deletes.len(),
                    keys.len()
                )
            })
            .expect("watch stream")
            .expect("watch stream open");
        let before = deletes.len();
        for event in resp.events {
            let kv = event.kv.unwrap_or_default();
            if event.r#type == EventType::Delete as i32 {
                deletes.push((
                    String::from_utf8_lossy(&kv.key).into_owned(),
                    kv.mod_revision,
                ));
            } else {
                puts += 1;
            }
        }
        if deletes.len() > before {
            responses_with_deletes += 1;
        }
    }
    println!(
        "{name}: {puts} put events, then deletes {deletes:?} in {responses_with_deletes} \
         watch response(s)"
    );
    assert_eq!(puts, keys.len(), "{name}: put events");
    let deleted: BTreeSet<&str> = deletes.iter().map(|(k, _)| k.as_str()).collect();
    let expected: BTreeSet<&str> = keys.iter().map(String::as_str).collect();
    assert_eq!(deleted, expected, "{name}: deleted keys");
    assert!(
        deletes.iter().all(|(_, rev)| *rev == put_revision + 1),
        "{name}: the deletes are not all in revision {} (the one after the puts): {deletes:?}",
        put_revision + 1
    );
    let gone = time_to_live(&channel, lease.id, false)
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(gone.ttl, -1, "{name}: time-to-live of the expired lease");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unrenewed_lease_expires_within_its_ttl_in_one_delete_revision() {
    let _turn = SERIAL.lock().await;
    expiry_with_delete_events(Kind::Etcd).await;
    expiry_with_delete_events(Kind::Oxcd).await;
}

// ---------------------------------------------------------------------------
// 3. A leader killed during a countdown

/// Answers saying a lease that must exist is unknown (TTL -1), kept to be
/// asserted once the test's other checks ran.
#[derive(Debug, Default)]
struct Unknowns(Vec<String>);

impl Unknowns {
    /// Records `resp` if it calls lease `id` unknown; `when` says when.
    fn note(&mut self, id: i64, when: &str, resp: &LeaseTimeToLiveResponse) {
        if resp.ttl < 0 {
            self.0.push(format!("{id:x} {when}: {resp:?}"));
        }
    }

    fn assert_none(&self, what: &str) {
        assert!(
            self.0.is_empty(),
            "{what}: time-to-live answered {} time(s) that an existing lease is unknown \
             (TTL -1), first: {}",
            self.0.len(),
            self.0.first().map_or("", String::as_str)
        );
    }
}

/// Polls time-to-live through `channel` until at most `left` seconds
/// remain (a condition on the countdown, not a sleep). The lease must exist
/// meanwhile: answers calling it unknown go to `unknowns`.
async fn await_remaining(
    channel: &Channel,
    id: i64,
    left: i64,
    timeout: Duration,
    unknowns: &mut Unknowns,
) -> i64 {
    let started = Instant::now();
    loop {
        match time_to_live(channel, id, false).await {
            Ok(resp) if resp.ttl < 0 => unknowns.note(
                id,
                &format!(
                    "{:.2}s into the wait for {left}s left",
                    started.elapsed().as_secs_f64()
                ),
                &resp,
            ),
            Ok(resp) if resp.ttl <= left => return resp.ttl,
            Ok(_) => {}
            Err(e) => println!("time-to-live while waiting: {e}"),
        }
        assert!(
            started.elapsed() < timeout,
            "lease {id:x}: more than {left}s remain after {timeout:?}"
        );
        tokio::time::sleep(POLL).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_countdown_survives_a_leader_kill() {
    let _turn = SERIAL.lock().await;
    let mut cluster = start_cluster(Kind::Oxcd).await;
    let leader = cluster.wait_leader(LEADER_WAIT).await.expect("a leader");
    let follower = (0..3).find(|&i| i != leader).expect("a follower");
    let other = (0..3)
        .find(|&i| i != leader && i != follower)
        .expect("a third member");
    let channel = cluster.channel(follower).await.expect("channel");

    // TTL 8, the leader killed with 4 s left: a new leader that started the
    // countdown over would expire the lease 4 s late, past the bound.
    let lease = grant(&channel, 8).await.expect("grant");
    let prefix = format!("kill-{:x}/", lease.id);
    for i in 0..3 {
        put_with_lease(&channel, &format!("{prefix}{i}"), lease.id)
            .await
            .expect("put");
    }
    let mut unknowns = Unknowns::default();
    let left = await_remaining(
        &channel,
        lease.id,
        lease.ttl / 2,
        Duration::from_secs(30),
        &mut unknowns,
    )
    .await;
    let killed = Instant::now();
    cluster.kill9(leader).expect("kill -9 the leader");
    println!(
        "killed the leader {} {:.2}s after the grant ({left}s left)",
        cluster.name(leader),
        killed.duration_since(lease.sent).as_secs_f64()
    );
    let poller = tokio::spawn(await_expiry(
        vec![cluster.endpoint(follower), cluster.endpoint(other)],
        prefix,
        3,
        lease.ttl() + Duration::from_secs(60),
    ));
    let new_leader = cluster
        .wait_leader(LEADER_WAIT)
        .await
        .expect("a new leader");
    let election = killed.elapsed();
    // The new leader goes on from the last checkpoint: less than the TTL.
    let after_election = time_to_live(&channel, lease.id, false)
        .await
        .expect("time-to-live");
    println!(
        "{} leads {:.2}s after the kill; time-to-live then: {}s",
        cluster.name(new_leader),
        election.as_secs_f64(),
        after_election.ttl
    );
    unknowns.note(lease.id, "right after the election", &after_election);
    let log = poller.await.expect("poller").expect("expiry");
    check_expiry(
        &format!(
            "lease {:x} (TTL {}s) across a leader kill",
            lease.id, lease.ttl
        ),
        &log,
        lease.ttl(),
        lease.sent,
        lease.answered,
        lease.ttl() + EXPIRY_SLACK + allowance(1) + election,
    );
    unknowns.assert_none("leader kill");
    assert!(
        after_election.ttl < lease.ttl,
        "the new leader started the countdown over: {after_election:?}"
    );
}

// ---------------------------------------------------------------------------
// 4. A thousand leases kept alive through a leader kill

/// The TTL of the kept-alive leases.
const KEPT_TTL: i64 = 10;
/// Leases whose keys are checked at the end.
const KEPT_SAMPLE: usize = 50;

/// Why the keep-alive driver left its stream when told to stop.
const STOPPED: &str = "stopped";

/// One client keeping `ids` alive over one stream (step 3 of
/// `lease_check`'s doc): each lease every TTL/3, requests spread evenly;
/// a broken stream is reopened on the next endpoint.
async fn keep_alive_driver(
    endpoints: Vec<String>,
    ids: Vec<i64>,
    ledger: Arc<Mutex<KeepAliveLedger>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> usize {
    let round = Duration::from_secs(KEPT_TTL as u64) / 3;
    let mut ticker = tokio::time::interval(round / ids.len() as u32);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut next = 0;
    let mut at = 0;
    let mut reopened = 0;
    while !*stop.borrow() {
        let Ok(channel) = connect(&endpoints[at]).await else {
            at = (at + 1) % endpoints.len();
            tokio::time::sleep(POLL).await;
            continue;
        };
        // The stream is opened by the reader while requests are sent: etcd
        // sends the response headers with the first answer only.
        let (tx, rx) = mpsc::channel(256);
        let mut client = LeaseClient::new(channel);
        let reader_ledger = ledger.clone();
        let mut reader = tokio::spawn(async move {
            let mut answers = match client.lease_keep_alive(ReceiverStream::new(rx)).await {
                Ok(answers) => answers.into_inner(),
                Err(s) => return Ok(format!("open: {:?}: {}", s.code(), s.message())),
            };
            loop {
                match answers.message().await {
                    Ok(Some(answer)) => {
                        let mut ledger = reader_ledger.lock().expect("ledger");
                        ledger.answered(answer.id, answer.ttl, Instant::now())?;
                    }
                    Ok(None) => return Ok::<String, String>("stream ended".to_string()),
                    Err(s) => return Ok(format!("{:?}: {}", s.code(), s.message())),
                }
            }
        });
        let why = loop {
            tokio::select! {
                ended = &mut reader => match ended.expect("reader task") {
                    Ok(why) => break why,
                    Err(e) => panic!("keep-alive stream: {e}"),
                },
                // Set, or the test ended (the sender dropped).
                _ = stop.changed() => break STOPPED.to_string(),
                _ = ticker.tick() => {
                    let id = ids[next];
                    next = (next + 1) % ids.len();
                    ledger.lock().expect("ledger").sent(id, Instant::now());
                    if tx.send(LeaseKeepAliveRequest { id }).await.is_err() {
                        break "request channel closed".to_string();
                    }
                }
            }
        };
        reader.abort();
        let lost = ledger.lock().expect("ledger").stream_lost();
        if why == STOPPED {
            break;
        }
        reopened += 1;
        println!(
            "keep-alive stream to {} ended ({why}), {lost} requests unanswered; reopening on the next member",
            endpoints[at]
        );
        at = (at + 1) % endpoints.len();
        tokio::time::sleep(POLL).await;
    }
    reopened
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_kept_alive_leases_survive_a_leader_kill() {
    let _turn = SERIAL.lock().await;
    let seed = seed_from_env();
    println!("seed {seed} (OXCD_SEED to replay)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let count = env_usize("OXCD_KEPT_LEASES", 1000);
    let mut cluster = start_cluster(Kind::Oxcd).await;
    let leader = cluster.wait_leader(LEADER_WAIT).await.expect("a leader");
    let client = (0..3).find(|&i| i != leader).expect("a follower");
    let other = (0..3)
        .find(|&i| i != leader && i != client)
        .expect("a third member");
    let channel = cluster.channel(client).await.expect("channel");

    // The leases, granted 32 at a time through the follower.
    let started = Instant::now();
    let mut ids = Vec::with_capacity(count);
    while ids.len() < count {
        let mut batch = tokio::task::JoinSet::new();
        for _ in 0..(count - ids.len()).min(32) {
            let channel = channel.clone();
            batch.spawn(async move { grant(&channel, KEPT_TTL).await });
        }
        while let Some(granted) = batch.join_next().await {
            let granted = granted.expect("grant task").expect("grant");
            assert_eq!(granted.ttl, KEPT_TTL);
            ids.push(granted.id);
        }
    }
    let granted_in = started.elapsed();
    let mut sample: Vec<i64> = Vec::with_capacity(KEPT_SAMPLE);
    while sample.len() < KEPT_SAMPLE.min(count) {
        let id = ids[rng.gen_range(0..ids.len())];
        if !sample.contains(&id) {
            sample.push(id);
        }
    }
    for id in &sample {
        put_with_lease(&channel, &format!("kept/{id:x}"), *id)
            .await
            .expect("put");
    }
    println!(
        "{count} leases (TTL {KEPT_TTL}s) granted in {:.2}s, keys on {} of them",
        granted_in.as_secs_f64(),
        sample.len()
    );

    let ledger = Arc::new(Mutex::new(KeepAliveLedger::default()));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let driving = Instant::now();
    let driver = tokio::spawn(keep_alive_driver(
        vec![cluster.endpoint(client), cluster.endpoint(other)],
        ids.clone(),
        ledger.clone(),
        stop_rx,
    ));
    let ttl = Duration::from_secs(KEPT_TTL as u64);
    // Fails as soon as a lease is reported gone or a renewal came too late.
    let check = |phase: &str| {
        let verdict = ledger
            .lock()
            .expect("ledger")
            .verdict(&ids, driving, ttl, Instant::now());
        if let Err(why) = verdict {
            panic!(
                "{phase} ({:.2}s into the keep-alives): {why}",
                driving.elapsed().as_secs_f64()
            );
        }
    };

    // Steady state: every lease renewed once.
    loop {
        let all = {
            let ledger = ledger.lock().expect("ledger");
            ids.iter().all(|id| ledger.renewed(*id).is_some())
        };
        if all {
            break;
        }
        check("before the kill");
        assert!(
            driving.elapsed() < Duration::from_secs(60),
            "not every lease renewed within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "every lease renewed once after {:.2}s",
        driving.elapsed().as_secs_f64()
    );

    let killed = Instant::now();
    cluster.kill9(leader).expect("kill -9 the leader");
    let new_leader = cluster
        .wait_leader(LEADER_WAIT)
        .await
        .expect("a new leader");
    println!(
        "killed {}; {} leads {:.2}s later",
        cluster.name(leader),
        cluster.name(new_leader),
        killed.elapsed().as_secs_f64()
    );
    let elected = Instant::now();
    let keep_going = ttl * 5 / 2;
    while elected.elapsed() < keep_going {
        check("after the kill");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    check("at the end");
    stop_tx.send(true).expect("stop the driver");
    let reopened = driver.await.expect("driver");

    // Every lease is still there, with time left, and the sample's keys.
    let leases = bounded(
        "LeaseLeases",
        LeaseClient::new(channel.clone()).lease_leases(LeaseLeasesRequest {}),
    )
    .await
    .expect("lease list");
    let listed: BTreeSet<i64> = leases.leases.iter().map(|l| l.id).collect();
    let missing: Vec<&i64> = ids.iter().filter(|id| !listed.contains(id)).collect();
    assert!(
        missing.is_empty(),
        "{} leases no longer listed, first {:x?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    for id in &sample {
        let left = time_to_live(&channel, *id, true)
            .await
            .expect("time-to-live");
        assert!(left.ttl > 0, "lease {id:x}: {left:?}");
        assert_eq!(left.keys, vec![format!("kept/{id:x}").into_bytes()]);
    }
    let keys = bounded(
        "Range",
        KvClient::new(channel.clone()).range(RangeRequest {
            key: b"kept/".to_vec(),
            range_end: prefix_end("kept/"),
            count_only: true,
            ..Default::default()
        }),
    )
    .await
    .expect("range");
    assert_eq!(keys.count, sample.len() as i64, "keys of the sample");
    println!(
        "{count} leases kept alive for {:.1}s ({:.1}s after the new leader): {}, \
         stream reopened {reopened} time(s)",
        driving.elapsed().as_secs_f64(),
        elected.elapsed().as_secs_f64(),
        ledger.lock().expect("ledger").summary()
    );
}

// ---------------------------------------------------------------------------
// 5. Leadership moving twice during a countdown

/// Asks the leader to hand over to `target`; returns how long until every
/// running member names `target`.
async fn move_leader(cluster: &mut Cluster, leader: usize, target: usize) -> Duration {
    let started = Instant::now();
    let target_id = cluster.member_id(target).expect("member id");
    let mut maintenance = cluster.maintenance(leader).await.expect("maintenance");
    bounded(
        "MoveLeader",
        maintenance.move_leader(MoveLeaderRequest { target_id }),
    )
    .await
    .unwrap_or_else(|e| panic!("move leader to {}: {e}", cluster.name(target)));
    while cluster.leader().await != Some(target) {
        assert!(
            started.elapsed() < LEADER_WAIT,
            "{} does not lead {LEADER_WAIT:?} after MoveLeader",
            cluster.name(target)
        );
        tokio::time::sleep(POLL).await;
    }
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_countdown_survives_leadership_moving_twice() {
    let _turn = SERIAL.lock().await;
    let mut cluster = start_cluster(Kind::Oxcd).await;
    let first = cluster.wait_leader(LEADER_WAIT).await.expect("a leader");
    let second = (first + 1) % 3;
    let third = (first + 2) % 3;
    let channel = cluster.channel(first).await.expect("channel");
    // Read through the member that leads last: it never steps down.
    let reader = cluster.channel(third).await.expect("channel");

    let lease = grant(&channel, 8).await.expect("grant");
    let prefix = format!("moves-{:x}/", lease.id);
    put_with_lease(&channel, &format!("{prefix}k"), lease.id)
        .await
        .expect("put");
    // The owner's last keep-alive; the countdown runs from it.
    let renewed_sent = Instant::now();
    let renewed = keep_alive_once(&channel, lease.id)
        .await
        .expect("keep-alive");
    let renewed_answered = Instant::now();
    assert_eq!(renewed.ttl, lease.ttl);

    // Two moves, 2 s of countdown apart (two checkpoint intervals).
    let mut unknowns = Unknowns::default();
    let left = await_remaining(
        &reader,
        lease.id,
        lease.ttl - 2,
        Duration::from_secs(30),
        &mut unknowns,
    )
    .await;
    let first_move = move_leader(&mut cluster, first, second).await;
    println!(
        "leadership moved {} -> {} in {:.2}s ({left}s left)",
        cluster.name(first),
        cluster.name(second),
        first_move.as_secs_f64()
    );
    let left = await_remaining(
        &reader,
        lease.id,
        lease.ttl - 4,
        Duration::from_secs(30),
        &mut unknowns,
    )
    .await;
    let second_move = move_leader(&mut cluster, second, third).await;
    println!(
        "leadership moved {} -> {} in {:.2}s ({left}s left), {:.2}s after the keep-alive",
        cluster.name(second),
        cluster.name(third),
        second_move.as_secs_f64(),
        renewed_sent.elapsed().as_secs_f64()
    );
    let log = await_expiry(
        cluster.endpoints(),
        prefix,
        1,
        lease.ttl() + Duration::from_secs(60),
    )
    .await
    .expect("expiry");
    check_expiry(
        &format!(
            "lease {:x} (TTL {}s) across two leader moves",
            lease.id, lease.ttl
        ),
        &log,
        lease.ttl(),
        renewed_sent,
        renewed_answered,
        lease.ttl() + EXPIRY_SLACK + allowance(2) + first_move + second_move,
    );
    unknowns.assert_none("two leader moves");
}

// ---------------------------------------------------------------------------
// 6. Keep-alive and time-to-live through a follower

/// A header as etcd fills it on the member that answers.
/// Where a header differs from one etcd fills on `member`, the member
/// answering (`None` when it does not).
fn header_deviation(what: &str, header: Option<&ResponseHeader>, member: u64) -> Option<String> {
    let Some(header) = header else {
        return Some(format!("{what}: no header"));
    };
    if header.cluster_id == 0 || header.revision <= 0 || header.raft_term == 0 {
        return Some(format!("{what}: header not filled: {header:?}"));
    }
    (header.member_id != member).then(|| {
        format!(
            "{what}: header names member {:x}, not the member asked ({member:x})",
            header.member_id
        )
    })
}

async fn through_a_follower(kind: Kind, seed: u64) {
    let name = kind.name();
    let mut cluster = start_cluster(kind).await;
    let leader = cluster.wait_leader(LEADER_WAIT).await.expect("a leader");
    let follower = (0..3).find(|&i| i != leader).expect("a follower");
    let follower_id = cluster.member_id(follower).expect("member id");
    let to_leader = cluster.channel(leader).await.expect("channel");
    let to_follower = cluster.channel(follower).await.expect("channel");

    let lease = grant(&to_leader, 30).await.expect("grant");
    let key = format!("forwarded-{:x}", lease.id);
    put_with_lease(&to_leader, &key, lease.id)
        .await
        .expect("put");

    // Right after the grant, both find the lease (etcd's leader looks it
    // up in its lessor whether or not its countdowns have started).
    let mut unknowns = Unknowns::default();
    for (member, channel) in [("leader", &to_leader), ("follower", &to_follower)] {
        let found = time_to_live(channel, lease.id, false)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let when = format!(
            "through the {member} {:.3}s after the grant was answered",
            lease.answered.elapsed().as_secs_f64()
        );
        unknowns.note(lease.id, &when, &found);
    }

    // The follower's time-to-live is the leader's countdown, not the
    // granted TTL: let 3 s of it run (no keep-alive meanwhile).
    let leader_left = await_remaining(
        &to_leader,
        lease.id,
        27,
        Duration::from_secs(30),
        &mut unknowns,
    )
    .await;
    let via_follower = time_to_live(&to_follower, lease.id, true)
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    println!(
        "{name}: time-to-live {leader_left}s on the leader, then {via_follower:?} through a follower"
    );
    assert_eq!(via_follower.id, lease.id, "{name}");
    assert_eq!(via_follower.granted_ttl, 30, "{name}");
    assert!(
        (1..=leader_left).contains(&via_follower.ttl),
        "{name}: the follower answered {}s left after the leader said {leader_left}s",
        via_follower.ttl
    );
    assert_eq!(via_follower.keys, vec![key.clone().into_bytes()], "{name}");
    let mut deviations: Vec<String> =
        header_deviation("time-to-live", via_follower.header.as_ref(), follower_id)
            .into_iter()
            .collect();

    // A keep-alive through the follower renews the lease on the leader.
    let renewed = keep_alive_once(&to_follower, lease.id)
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!((renewed.id, renewed.ttl), (lease.id, 30), "{name}");
    deviations.extend(header_deviation(
        "keep-alive",
        renewed.header.as_ref(),
        follower_id,
    ));
    let after = time_to_live(&to_leader, lease.id, false)
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    assert!(
        after.ttl >= 29,
        "{name}: the leader counts {}s left after a keep-alive through a follower",
        after.ttl
    );

    // An unknown lease: keep-alive TTL 0, time-to-live TTL -1, no error.
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let unknown = loop {
        let id = rng.gen_range(1..i64::MAX);
        if id != lease.id {
            break id;
        }
    };
    let none = keep_alive_once(&to_follower, unknown)
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!((none.id, none.ttl), (unknown, 0), "{name}: {none:?}");
    let none = time_to_live(&to_follower, unknown, true)
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(
        (none.id, none.ttl, none.granted_ttl, none.keys.len()),
        (unknown, -1, 0, 0),
        "{name}: {none:?}"
    );
    deviations.extend(header_deviation(
        "time-to-live of an unknown lease",
        none.header.as_ref(),
        follower_id,
    ));
    unknowns.assert_none(name);
    assert!(
        deviations.is_empty(),
        "{name}: answers through a follower differ from etcd's:\n{}",
        deviations.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_and_time_to_live_through_a_follower_answer_as_the_leader() {
    let _turn = SERIAL.lock().await;
    let seed = seed_from_env();
    println!("seed {seed} (OXCD_SEED to replay)");
    through_a_follower(Kind::Etcd, seed).await;
    through_a_follower(Kind::Oxcd, seed).await;
}
