//! `make chaos`: a seeded run of faults against a real oxcd cluster under
//! load, judged at the end. [`run`] is the whole run (the `oxcd-chaos`
//! binary and `tests/chaos_run.rs` call it); it returns a [`ChaosReport`].
//!
//! 1. Start a cluster of `members` oxcd processes with `--enable-chaos`
//!    ([`crate::cluster`]: OS ports, temp dirs, own PIDs only) and check
//!    that its store is empty at revision 1, where the model starts.
//! 2. Open a watcher of `chaos/` on every member, from revision 2
//!    ([`workload::watcher`]). Grant the leases and put one key on each;
//!    these puts go into the history like any other. Start keeping the
//!    leases alive ([`workload::lease_keeper`]) and start the KV clients
//!    ([`workload::kv_client`]), spread over the members.
//! 3. Drive the seeded fault schedule ([`schedule::plan`],
//!    [`faults::Driver`]) for the duration, one fault at a time, each held
//!    and healed; plant the bug if asked to. Then heal everything, restart
//!    whatever is down, and wait for a leader.
//! 4. Stop the clients, put a marker key (its revision is the end of the
//!    history) and wait, bounded, until every member has applied it.
//! 5. Read every member's store back as events from revision 2, ask each
//!    for its HashKV at the marker's revision, let the watchers run until
//!    they have seen the marker, ask for each lease's time to live, stop
//!    the lease keeper.
//! 6. Judge ([`check`]): the history's linearizability
//!    ([`crate::lin_verdict`]), every acknowledged write on every member,
//!    every member's store the same, every watcher complete, no lease
//!    expired while kept alive, and every fault injected and recovered
//!    from. On a failure the history, the timeline and the member logs are
//!    copied to `target/chaos-seed-<seed>/`.

pub mod check;
pub mod faults;
pub mod report;
pub mod schedule;
pub mod workload;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use proto::etcdserverpb::kv_client::KvClient;
use proto::etcdserverpb::lease_client::LeaseClient;
use proto::etcdserverpb::maintenance_client::MaintenanceClient;
use proto::etcdserverpb::{
    HashKvRequest, LeaseGrantRequest, LeaseTimeToLiveRequest, PutRequest, RangeRequest,
};
use proto::mvccpb::Event;
use tokio::task::JoinHandle;

pub use faults::{DownWindow, PlantOpts, TimelineEntry};
pub use report::{ChaosReport, Check, Failure};
pub use schedule::{Action, PlannedFault, Role, ScheduleOpts};

use crate::cluster::{Cluster, ClusterOpts};
use crate::lin::{self, Recorder, Request, Response, Summary};
use crate::lin_verdict::{self, JudgeOpts};
use crate::watch_check::{self, KeyRange, WatchSpec, WatchStream};
use crate::{HarnessError, Kind, workspace_root};
use workload::{ClientOpts, ClientShared, LeaseLog, WatchControl, WatcherLog};

/// Every key the run writes starts with this; the watchers watch it.
pub const PREFIX: &str = "chaos/";
/// The first revision the watchers and the read-back start at.
const FIRST_REVISION: i64 = 2;
/// Bound on the waits of steps 4 and 5.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on one request of steps 1, 2, 4 and 5.
const RPC_TIMEOUT: Duration = Duration::from_secs(3);
/// Attempts at the marker put (each bounded by the clients' timeout).
const MARKER_ATTEMPTS: usize = 20;

/// What a run does.
#[derive(Debug, Clone)]
pub struct ChaosOpts {
    pub seed: u64,
    /// How long faults are injected while the clients run.
    pub duration: Duration,
    pub members: usize,
    /// Inject the planned faults (without: the workload alone, and the
    /// planted bug if any).
    pub faults: bool,
    pub schedule: ScheduleOpts,
    /// A fixed list of faults to inject instead of the seeded plan (tests
    /// that need particular faults; the seed still drives the workload).
    pub plan: Option<Vec<PlannedFault>>,
    /// KV clients, spread over the members.
    pub clients: usize,
    pub hot_keys: usize,
    /// Time between two requests of one client.
    pub client_pace: Duration,
    /// Bound on a KV request; a write past it is "maybe applied".
    pub client_timeout: Duration,
    /// Leases kept alive, one key on each.
    pub leases: usize,
    pub lease_ttl: Duration,
    pub keepalive_every: Duration,
    /// A bug to plant on purpose (the checker must then fail the run).
    pub plant: Option<PlantOpts>,
    /// Bound on porcupine's search when the witness checker finds a
    /// violation.
    pub porcupine_timeout: Duration,
}

impl ChaosOpts {
    /// A run of `duration` from `seed` with the default workload: three
    /// members, six clients at 50 requests per second each over five hot
    /// keys, three leases of 10 s kept alive every second.
    pub fn new(seed: u64, duration: Duration) -> Self {
        ChaosOpts {
            seed,
            duration,
            members: 3,
            faults: true,
            schedule: ScheduleOpts::default(),
            plan: None,
            clients: 6,
            hot_keys: 5,
            client_pace: Duration::from_millis(20),
            client_timeout: Duration::from_secs(3),
            leases: 3,
            lease_ttl: Duration::from_secs(10),
            keepalive_every: Duration::from_secs(1),
            plant: None,
            porcupine_timeout: Duration::from_secs(30),
        }
    }
}

/// The faults `opts` plans (empty when faults are off; the fixed plan
/// when it has one).
pub fn planned(opts: &ChaosOpts) -> Vec<PlannedFault> {
    if let Some(plan) = &opts.plan {
        plan.clone()
    } else if opts.faults {
        schedule::plan(opts.seed, opts.duration, &opts.schedule)
    } else {
        Vec::new()
    }
}

/// Runs the whole chaos run (steps 1 to 6). An error means the run could
/// not be carried out (the cluster did not start, or did not take the
/// setup writes); everything that goes wrong after that is in the report.
pub async fn run(opts: &ChaosOpts) -> Result<ChaosReport, HarnessError> {
    let started = Instant::now();
    let cluster_opts = ClusterOpts {
        size: opts.members,
        cluster_token: format!("oxcd-chaos-{}", opts.seed),
        // The chaos API is served only where the run uses it.
        extra_args: if opts.faults || opts.plant.is_some() {
            vec!["--enable-chaos".to_string()]
        } else {
            Vec::new()
        },
        ..ClusterOpts::default()
    };
    let mut cluster = Cluster::start(Kind::Oxcd, cluster_opts).await?;
    let leader = cluster.wait_leader(SETTLE_TIMEOUT).await?;
    let endpoints = cluster.endpoints();
    expect_empty_store(&cluster, leader).await?;

    // Step 2.
    let shared = Arc::new(ClientShared::default());
    let origin = Instant::now();
    let control = Arc::new(WatchControl::default());
    let watchers: Vec<JoinHandle<WatcherLog>> = (0..cluster.size())
        .map(|i| {
            tokio::spawn(workload::watcher(
                i,
                endpoints[i].clone(),
                KeyRange::prefix(PREFIX.as_bytes()),
                FIRST_REVISION,
                control.clone(),
                origin,
            ))
        })
        .collect();
    let lease_ids = grant_leases(&cluster, leader, opts, &shared.recorder).await?;
    let leases_granted = Instant::now();
    let lease_stop = Arc::new(AtomicBool::new(false));
    let lease_log = Arc::new(Mutex::new(LeaseLog::default()));
    let keeper = tokio::spawn(workload::lease_keeper(
        lease_ids.clone(),
        endpoints.clone(),
        opts.keepalive_every,
        lease_stop.clone(),
        lease_log.clone(),
        origin,
    ));
    let client_opts = ClientOpts {
        prefix: format!("{PREFIX}k"),
        hot_keys: opts.hot_keys,
        rpc_timeout: opts.client_timeout,
        pace: opts.client_pace,
    };
    let clients: Vec<JoinHandle<()>> = (0..opts.clients)
        .map(|w| {
            tokio::spawn(workload::kv_client(
                w,
                opts.seed,
                endpoints.clone(),
                client_opts.clone(),
                shared.clone(),
            ))
        })
        .collect();

    // Step 3.
    let schedule = planned(opts);
    let mut driver = faults::Driver::new(&mut cluster, origin, opts.plant.clone());
    driver.note(None, format!("workload started: {} clients", opts.clients));
    driver.run(&schedule, opts.duration).await;
    driver.heal_all().await;

    // Step 4.
    shared.stop.store(true, Ordering::SeqCst);
    for client in clients {
        if tokio::time::timeout(opts.client_timeout * 3, client)
            .await
            .is_err()
        {
            driver.note(None, "PROBLEM: a client did not stop");
        }
    }
    driver.note(None, "clients stopped");
    let marker = put_marker(&endpoints, &shared, opts.client_timeout).await;
    match marker {
        Ok(rev) => driver.note(None, format!("marker put at revision {rev}")),
        Err(ref e) => driver.note(None, format!("PROBLEM: marker put failed: {e}")),
    }
    let faults::Driver {
        timeline,
        problems,
        down,
        ..
    } = driver;
    let mut failures: Vec<Failure> = problems
        .into_iter()
        .map(|detail| Failure {
            check: Check::Faults,
            detail,
        })
        .collect();
    let mut stats = Vec::new();
    let fail = |failures: &mut Vec<Failure>, check, detail: String| {
        failures.push(Failure { check, detail });
    };

    // Step 5.
    let history = shared.recorder.history();
    let marker = match marker {
        Ok(rev) => rev,
        Err(e) => {
            fail(&mut failures, Check::Faults, format!("marker put: {e}"));
            // Judge the history alone; the stores cannot be compared.
            control.stop.store(true, Ordering::SeqCst);
            lease_stop.store(true, Ordering::SeqCst);
            judge_history(&history, opts, &mut failures, &mut stats);
            return Ok(finish(
                opts, schedule, timeline, stats, failures, &cluster, &history, started,
            ));
        }
    };
    let mut stores: Vec<Option<Vec<Event>>> = Vec::new();
    for i in 0..cluster.size() {
        if let Err(e) = cluster.wait_revision(i, marker, SETTLE_TIMEOUT).await {
            fail(
                &mut failures,
                Check::MembersAgree,
                format!("{} did not reach revision {marker}: {e}", cluster.name(i)),
            );
            stores.push(None);
            continue;
        }
        match read_store(&cluster, i, marker).await {
            Ok(events) => stores.push(Some(events)),
            Err(e) => {
                fail(
                    &mut failures,
                    Check::MembersAgree,
                    format!("{}: reading its store back: {e}", cluster.name(i)),
                );
                stores.push(None);
            }
        }
    }
    let mut hashes = Vec::new();
    for i in 0..cluster.size() {
        hashes.push(hash_kv(&cluster, i, marker).await);
    }
    control.finish_at(marker);
    let watch_logs = join_watchers(watchers, &control).await;
    let ttls = time_to_live(&cluster, &lease_ids).await;
    lease_stop.store(true, Ordering::SeqCst);
    let keeper_stopped = tokio::time::timeout(SETTLE_TIMEOUT, keeper).await.is_ok();
    let lease_now = Instant::now();

    // Step 6.
    judge_history(&history, opts, &mut failures, &mut stats);
    let ledger = check::ledger_of(&history);
    if let Err(e) = ledger.unique_revisions() {
        fail(&mut failures, Check::AckedWrites, e);
    }
    let mut models = Vec::new();
    for (i, store) in stores.iter().enumerate() {
        let Some(events) = store else {
            models.push(None);
            continue;
        };
        let name = cluster.name(i);
        match check::model_of(events) {
            Ok(model) => {
                for e in check::check_acks(&ledger, events, &model) {
                    fail(&mut failures, Check::AckedWrites, format!("{name}: {e}"));
                }
                models.push(Some(model));
            }
            Err(e) => {
                fail(
                    &mut failures,
                    Check::MembersAgree,
                    format!("{name}'s store does not replay: {e}"),
                );
                models.push(None);
            }
        }
    }
    stats.push(format!(
        "acknowledged writes: {} acknowledged, {} maybe applied, checked on {} members",
        ledger.acks().len(),
        ledger.maybe_count(),
        models.iter().flatten().count()
    ));
    judge_agreement(
        &cluster,
        &stores,
        &hashes,
        marker,
        &mut failures,
        &mut stats,
    );
    let mut watch_line = Vec::new();
    for log in &watch_logs {
        let name = cluster.name(log.member);
        let Some(model) = &models[log.member] else {
            fail(
                &mut failures,
                Check::WatchStreams,
                format!("watcher on {name}: its member's store could not be read back"),
            );
            continue;
        };
        match check::check_watcher(log, FIRST_REVISION, model, &down) {
            Ok(s) => watch_line.push(format!(
                "{name} {} events, {} resumptions",
                s.events, s.resumptions
            )),
            Err(e) => fail(
                &mut failures,
                Check::WatchStreams,
                format!("watcher on {name}: {e}"),
            ),
        }
    }
    stats.push(format!("watchers: {}", watch_line.join("; ")));
    let lease_log = std::mem::take(&mut *lease_log.lock().unwrap_or_else(|e| e.into_inner()));
    judge_leases(
        &lease_ids,
        &lease_log,
        &ttls,
        (leases_granted, lease_now),
        opts.lease_ttl,
        keeper_stopped,
        &mut failures,
        &mut stats,
    );
    Ok(finish(
        opts, schedule, timeline, stats, failures, &cluster, &history, started,
    ))
}

/// Step 1's precondition: the model starts from an empty store at 1.
async fn expect_empty_store(cluster: &Cluster, leader: usize) -> Result<(), HarnessError> {
    let range = RangeRequest {
        key: vec![0],
        range_end: vec![0],
        count_only: true,
        ..Default::default()
    };
    let mut kv = cluster.kv(leader).await?;
    let answer = faults::rpc(kv.range(range))
        .await
        .map_err(|e| setup_error("an empty store", e))?;
    let revision = answer.header.map_or(0, |h| h.revision);
    if answer.count != 0 || revision != 1 {
        return Err(setup_error(
            "an empty store at revision 1",
            format!("{} keys at revision {revision}", answer.count),
        ));
    }
    Ok(())
}

/// Step 2: grants the leases and puts one key on each, recorded in the
/// history as puts.
async fn grant_leases(
    cluster: &Cluster,
    leader: usize,
    opts: &ChaosOpts,
    recorder: &Recorder,
) -> Result<Vec<i64>, HarnessError> {
    let channel = cluster.channel(leader).await?;
    let mut lease = LeaseClient::new(channel.clone());
    let mut kv = KvClient::new(channel);
    let ttl = i64::try_from(opts.lease_ttl.as_secs()).unwrap_or(i64::MAX);
    let mut ids = Vec::new();
    for n in 0..opts.leases {
        let grant = faults::rpc(lease.lease_grant(LeaseGrantRequest { ttl, id: 0 }))
            .await
            .map_err(|e| setup_error("a lease grant", e))?;
        let key = format!("{PREFIX}lease/{n}").into_bytes();
        let value = format!("lease-{n}").into_bytes();
        let call = recorder.now();
        let put = PutRequest {
            key: key.clone(),
            value: value.clone(),
            lease: grant.id,
            ..Default::default()
        };
        let answer = faults::rpc(kv.put(put))
            .await
            .map_err(|e| setup_error("a put with a lease", e))?;
        let revision = answer.header.map_or(0, |h| h.revision);
        // Client ids of the setup writes are far above the KV clients'.
        let client = u32::MAX - 1 - n as u32;
        recorder.record(
            client,
            leader,
            call,
            Request::Put { key, value },
            Ok(Response::Put { revision }),
        );
        ids.push(grant.id);
    }
    Ok(ids)
}

/// Step 4: a put every member must apply, retried on the next member
/// until it is answered; each attempt goes into the history.
async fn put_marker(
    endpoints: &[String],
    shared: &ClientShared,
    timeout: Duration,
) -> Result<i64, String> {
    let mut last_error = String::from("no attempt");
    for attempt in 0..MARKER_ATTEMPTS {
        let member = attempt % endpoints.len();
        let request = Request::Put {
            key: format!("{PREFIX}marker").into_bytes(),
            value: format!("end-{attempt}").into_bytes(),
        };
        let id = shared.next_client.fetch_add(1, Ordering::SeqCst);
        let call = shared.recorder.now();
        let outcome = match workload::connect(&endpoints[member]).await {
            Ok(channel) => lin::execute(&mut KvClient::new(channel), &request, timeout).await,
            Err(e) => Err(e),
        };
        if let Err(e) = &outcome {
            last_error = e.clone();
        }
        if let Some(Response::Put { revision }) =
            shared.recorder.record(id, member, call, request, outcome)
        {
            return Ok(revision);
        }
    }
    Err(format!(
        "{MARKER_ATTEMPTS} attempts failed, the last: {last_error}"
    ))
}

/// Step 5: member `i`'s events from revision 2 to `marker`, every key,
/// read through a watch that member serves from its own store.
async fn read_store(cluster: &Cluster, i: usize, marker: i64) -> Result<Vec<Event>, String> {
    let channel = cluster.channel(i).await.map_err(|e| e.to_string())?;
    let spec = WatchSpec::new(KeyRange::from_key(&[0]), FIRST_REVISION);
    let mut stream = WatchStream::open(channel, spec.create(0), RPC_TIMEOUT).await?;
    let reached = stream
        .wait_until(SETTLE_TIMEOUT, |rs| {
            rs.iter()
                .flat_map(|r| &r.events)
                .any(|e| watch_check::revision(e) >= marker)
        })
        .await;
    let ended = stream.ended();
    let responses = stream.close(RPC_TIMEOUT).await;
    if !reached {
        return Err(format!(
            "its watch from revision {FIRST_REVISION} did not reach {marker} within \
             {SETTLE_TIMEOUT:?} (ended: {ended:?})"
        ));
    }
    let received = watch_check::read_watcher(&responses)?;
    Ok(received
        .events
        .into_iter()
        .filter(|e| watch_check::revision(e) <= marker)
        .collect())
}

/// Member `i`'s `(hash, compact revision)` at `revision`.
async fn hash_kv(cluster: &Cluster, i: usize, revision: i64) -> Result<(u32, i64), String> {
    let channel = cluster.channel(i).await.map_err(|e| e.to_string())?;
    let answer =
        faults::rpc(MaintenanceClient::new(channel).hash_kv(HashKvRequest { revision })).await?;
    Ok((answer.hash, answer.compact_revision))
}

/// Lets the watchers reach the marker (bounded), then stops them.
async fn join_watchers(
    watchers: Vec<JoinHandle<WatcherLog>>,
    control: &WatchControl,
) -> Vec<WatcherLog> {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    let mut logs = Vec::new();
    for mut handle in watchers {
        let left = deadline.saturating_duration_since(Instant::now());
        let joined = match tokio::time::timeout(left, &mut handle).await {
            Ok(joined) => joined,
            Err(_) => {
                control.stop.store(true, Ordering::SeqCst);
                handle.await
            }
        };
        if let Ok(log) = joined {
            logs.push(log);
        }
    }
    logs
}

/// Each lease's remaining TTL and attached key count, asked of any member
/// that answers.
async fn time_to_live(cluster: &Cluster, ids: &[i64]) -> Vec<Result<(i64, usize), String>> {
    let mut answers = Vec::new();
    for &id in ids {
        let mut answer = Err("no member answered".to_string());
        for i in 0..cluster.size() {
            let Ok(channel) = cluster.channel(i).await else {
                continue;
            };
            let request = LeaseTimeToLiveRequest { id, keys: true };
            answer = faults::rpc(LeaseClient::new(channel).lease_time_to_live(request))
                .await
                .map(|r| (r.ttl, r.keys.len()));
            if answer.is_ok() {
                break;
            }
        }
        answers.push(answer);
    }
    answers
}

/// Step 6: the history against the etcd model.
fn judge_history(
    history: &[lin::Op],
    opts: &ChaosOpts,
    failures: &mut Vec<Failure>,
    stats: &mut Vec<String>,
) {
    stats.push(format!(
        "workload: {} operations: {}",
        history.len(),
        Summary::of(history)
    ));
    let judgement = lin_verdict::judge(
        history,
        &JudgeOpts {
            porcupine_timeout: opts.porcupine_timeout,
            visualisation: None,
        },
    );
    for line in &judgement.report {
        stats.push(format!("linearizability: {line}"));
    }
    if let Err(e) = judgement.result() {
        failures.push(Failure {
            check: Check::Linearizability,
            detail: e,
        });
    }
}

/// Step 6: every member's HashKV equal, and their stores event by event.
fn judge_agreement(
    cluster: &Cluster,
    stores: &[Option<Vec<Event>>],
    hashes: &[Result<(u32, i64), String>],
    marker: i64,
    failures: &mut Vec<Failure>,
    stats: &mut Vec<String>,
) {
    let mut fail = |detail: String| {
        failures.push(Failure {
            check: Check::MembersAgree,
            detail,
        })
    };
    let mut shown = Vec::new();
    for (i, hash) in hashes.iter().enumerate() {
        match hash {
            Ok((h, c)) => shown.push(format!("{} {h:#010x} (compacted {c})", cluster.name(i))),
            Err(e) => fail(format!("{}: HashKV: {e}", cluster.name(i))),
        }
    }
    let reference = hashes.iter().flatten().next();
    for (i, hash) in hashes.iter().enumerate() {
        if let (Ok(h), Some(r)) = (hash, reference)
            && h != r
        {
            let why = match (&stores[0], &stores[i]) {
                (Some(a), Some(b)) => check::first_divergence(a, b)
                    .unwrap_or_else(|| "the same events, yet another hash".to_string()),
                _ => "a store was not read back".to_string(),
            };
            fail(format!(
                "HashKV at revision {marker}: {} {:#010x}, {} {:#010x}; {why}",
                cluster.name(i),
                h.0,
                cluster.name(0),
                r.0
            ));
        }
    }
    stats.push(format!("HashKV at revision {marker}: {}", shown.join(", ")));
}

/// Step 6: no lease expired while kept alive.
#[allow(clippy::too_many_arguments)]
fn judge_leases(
    ids: &[i64],
    log: &LeaseLog,
    ttls: &[Result<(i64, usize), String>],
    (since, now): (Instant, Instant),
    ttl: Duration,
    keeper_stopped: bool,
    failures: &mut Vec<Failure>,
    stats: &mut Vec<String>,
) {
    let mut fail = |detail: String| {
        failures.push(Failure {
            check: Check::Leases,
            detail,
        })
    };
    if let Err(e) = log.ledger.verdict(ids, since, ttl, now) {
        fail(e);
    }
    for e in &log.protocol_errors {
        fail(format!("keep-alive stream: {e}"));
    }
    for (id, answer) in ids.iter().zip(ttls) {
        match answer {
            Ok((remaining, keys)) if *remaining > 0 && *keys == 1 => {}
            Ok((remaining, keys)) => fail(format!(
                "lease {id:x} kept alive, yet at the end its TTL is {remaining} with {keys} keys"
            )),
            Err(e) => fail(format!("lease {id:x}: time to live: {e}")),
        }
    }
    if !keeper_stopped {
        fail("the lease keeper did not stop".to_string());
    }
    stats.push(format!(
        "leases: {} kept alive ({} s TTL): {}; {} streams broke or stalled",
        ids.len(),
        ttl.as_secs(),
        log.ledger.summary(),
        log.breaks.len()
    ));
}

/// The report, with the run's files saved when it failed.
#[allow(clippy::too_many_arguments)]
fn finish(
    opts: &ChaosOpts,
    schedule: Vec<PlannedFault>,
    timeline: Vec<TimelineEntry>,
    stats: Vec<String>,
    failures: Vec<Failure>,
    cluster: &Cluster,
    history: &[lin::Op],
    started: Instant,
) -> ChaosReport {
    let mut report = ChaosReport {
        seed: opts.seed,
        duration: opts.duration,
        members: opts.members,
        schedule,
        timeline,
        stats,
        failures,
        saved_to: None,
        took: Duration::ZERO,
    };
    if !report.passed() {
        let dir = workspace_root()
            .join("target")
            .join(format!("chaos-seed-{}", opts.seed));
        match save(&dir, &report, cluster, history) {
            Ok(()) => report.saved_to = Some(dir),
            Err(e) => report
                .stats
                .push(format!("could not save the run's files: {e}")),
        }
    }
    report.took = started.elapsed();
    report
}

/// Writes `history.txt`, `report.txt` and every member's log into `dir`.
fn save(
    dir: &std::path::Path,
    report: &ChaosReport,
    cluster: &Cluster,
    history: &[lin::Op],
) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let lines: Vec<String> = history.iter().map(ToString::to_string).collect();
    std::fs::write(dir.join("history.txt"), lines.join("\n"))?;
    std::fs::write(dir.join("report.txt"), report.to_string())?;
    for i in 0..cluster.size() {
        std::fs::write(dir.join(format!("{}.log", cluster.name(i))), cluster.log(i))?;
    }
    Ok(())
}

fn setup_error(what: &str, last_error: String) -> HarnessError {
    HarnessError::NotReady {
        what: what.to_string(),
        waited_ms: RPC_TIMEOUT.as_millis(),
        last_error,
        log_tail: String::new(),
    }
}
