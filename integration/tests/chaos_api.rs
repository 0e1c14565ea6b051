//! The chaos API (`oxcdinternal.Chaos`) and `oxcdctl chaos` against real
//! oxcd members on loopback, killed and restarted by PID only.
//!
//! 1. `chaos_api_is_refused_without_enable_chaos`: on a three-member cluster
//!    started without `--enable-chaos`, every chaos RPC is answered
//!    `FailedPrecondition` with the member's text, `oxcdctl chaos` prints
//!    that text and exits non-zero, and every member keeps serving.
//! 2. `chaos_api_needs_a_client_certificate_when_tls_client_auth_is_on`: a
//!    member on an `https://` client URL with `--client-cert-auth` (test CA
//!    and certificates from `rcgen`; readiness through `etcdctl endpoint
//!    health`): `oxcdctl chaos` without a certificate, with one from
//!    another CA, or over plain HTTP is refused at the handshake; with
//!    `--cacert --cert --key` it sets and lists a fault. One member: the
//!    harness's cluster dials its members over plain HTTP.
//! 3. `partition_isolates_the_leader_then_a_follower_and_heal_converges`:
//!    `oxcdctl chaos partition --isolate` cuts the leader (named by name),
//!    then a follower (named by hex id), from the other two. The isolated
//!    member answers a put and a linearizable read with `Unavailable` within
//!    20 s (the time is printed); the other two elect a leader if needed
//!    and serve puts and linearizable reads; after `heal` every member
//!    reaches the same revision and `HashKV` agrees there.
//! 4. `delay_and_drop_slow_the_cluster_but_writes_go_on_and_heal_converges`:
//!    200 ms added to everything the leader sends, then drops with
//!    probability 0.3 both ways between a follower and the leader (seeded,
//!    the seed printed): puts through every member keep being acknowledged
//!    (through the lossy follower a put may need another try: its forwarded
//!    proposal can be dropped), `faults` lists the faults, and after `heal`
//!    `faults` lists none and `HashKV` agrees.
//! 5. `fail_fsync_stops_a_member_without_acknowledging_and_it_rejoins`: on a
//!    follower, then on the leader, `fail-fsync` while a client writes
//!    unique keys: the member exits with status 2, the others go on, and
//!    after a harness restart it rejoins: `HashKV` agrees on all three and
//!    every acknowledged put is on every member (`integration::acks`).
//! 6. `the_other_actions_act_once_per_member`: `kill-actor` on every member
//!    (each serves a put afterwards); `pause-apply` on a follower (listed by
//!    `faults`) while the leader acknowledges a put (the paused member's
//!    Status and serializable reads still answer, from before the put),
//!    then `resume-apply`, after which it reaches the put's revision;
//!    `crash` (exit status 137, restart, `HashKV` agrees);
//!    `plant-bug lose-writes` (the next put is acknowledged and present on
//!    the leader, missing from the planted member's store).
//!
//! Every wait is a bounded poll on a condition; bounds sit far above the
//! time things take on a loaded two-core machine (times are printed, not
//! asserted). The tests take turns (one lock): each runs three members.
//! `OXCD_SEED` replays the drop draws of test 4.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use integration::acks::{Ledger, ReadMode};
use integration::certs::{CLIENT, Ca, SERVER};
use integration::cluster::{Cluster, ClusterOpts};
use integration::etcdctl::run_etcdctl;
use integration::{Kind, oxcdctl_binary, seed_from_env};
use proto::etcdserverpb::kv_client::KvClient;
use proto::etcdserverpb::{HashKvRequest, PutRequest, RangeRequest};
use proto::internal::chaos_client::ChaosClient;
use proto::internal::{
    CrashRequest, FailFsyncRequest, FaultsRequest, HealRequest, KillActorRequest, LinkFaultRequest,
    PartitionRequest, PauseApplyRequest, PlantBugRequest, ResumeApplyRequest, SlowDiskRequest,
};
use tonic::Code;
use tonic::transport::{Channel, Endpoint};

/// One test at a time: each runs three servers on a two-core machine.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// What a member answers when started without `--enable-chaos`.
const DISABLED: &str = "chaos API is disabled; start the member with --enable-chaos";
/// Bound on one client RPC that must succeed.
const RPC: Duration = Duration::from_secs(5);
/// Bound on one try of a put through a member that drops messages.
const LOSSY_TRY: Duration = Duration::from_secs(3);
/// Bound on a request to a cut-off member: it must fail within this.
const REFUSAL: Duration = Duration::from_secs(20);
/// Bound on one `oxcdctl` run.
const CTL: Duration = Duration::from_secs(30);
/// Bound on the cluster agreeing again (leader, revision, hash).
const CONVERGE: Duration = Duration::from_secs(60);
/// Bound on a member exiting after `fail-fsync`.
const EXIT: Duration = Duration::from_secs(30);
/// Pause between two polls of a condition.
const POLL: Duration = Duration::from_millis(25);

fn chaos_opts() -> ClusterOpts {
    ClusterOpts {
        extra_args: vec!["--enable-chaos".to_string()],
        ..ClusterOpts::default()
    }
}

async fn start(opts: ClusterOpts) -> Cluster {
    let mut cluster = Cluster::start(Kind::Oxcd, opts)
        .await
        .unwrap_or_else(|e| panic!("start a three-member cluster: {e}"));
    cluster
        .wait_leader(CONVERGE)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    cluster
}

/// What one `oxcdctl` run did.
#[derive(Debug)]
struct Ctl {
    success: bool,
    stdout: String,
    stderr: String,
}

/// Runs `oxcdctl args` (bounded by [`CTL`]) and echoes it and its output.
async fn oxcdctl(args: &[String]) -> Ctl {
    let binary = oxcdctl_binary().unwrap_or_else(|e| panic!("{e}"));
    let started = Instant::now();
    let out = tokio::time::timeout(
        CTL,
        tokio::process::Command::new(binary)
            .args(args)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap_or_else(|_| panic!("oxcdctl {} ran past {CTL:?}", args.join(" ")))
    .expect("oxcdctl runs");
    let ctl = Ctl {
        success: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    println!(
        "$ oxcdctl {} ({:?}, {:?})\n{}{}",
        args.join(" "),
        out.status,
        started.elapsed(),
        ctl.stdout,
        ctl.stderr
    );
    ctl
}

/// `oxcdctl chaos --endpoints <members'> <action...>`, which must succeed
/// and print one line per member acted on; returns its stdout lines.
async fn chaos_ok(cluster: &Cluster, members: &[usize], action: &[&str]) -> Vec<String> {
    let out = oxcdctl(&chaos_args(cluster, members, action)).await;
    assert!(out.success, "oxcdctl chaos {action:?} failed: {out:?}");
    out.stdout.lines().map(str::to_string).collect()
}

fn chaos_args(cluster: &Cluster, members: &[usize], action: &[&str]) -> Vec<String> {
    let endpoints: Vec<String> = members.iter().map(|&i| cluster.endpoint(i)).collect();
    let mut args = vec![
        "chaos".to_string(),
        "--endpoints".to_string(),
        endpoints.join(","),
    ];
    args.extend(action.iter().map(|a| a.to_string()));
    args
}

/// A put bounded by `bound`: its revision, or the error's code and text.
async fn put(
    kv: &mut KvClient<Channel>,
    key: &str,
    value: &str,
    bound: Duration,
) -> Result<i64, (Code, String)> {
    let request = PutRequest {
        key: key.as_bytes().to_vec(),
        value: value.as_bytes().to_vec(),
        ..Default::default()
    };
    match tokio::time::timeout(bound, kv.put(request)).await {
        Ok(Ok(resp)) => Ok(resp.into_inner().header.map_or(0, |h| h.revision)),
        Ok(Err(s)) => Err((s.code(), s.message().to_string())),
        Err(_) => Err((
            Code::DeadlineExceeded,
            format!("no answer within {bound:?}"),
        )),
    }
}

/// A linearizable get of `key` bounded by `bound`: its value, if any.
async fn get(
    kv: &mut KvClient<Channel>,
    key: &str,
    bound: Duration,
) -> Result<Option<Vec<u8>>, (Code, String)> {
    let request = RangeRequest {
        key: key.as_bytes().to_vec(),
        ..Default::default()
    };
    match tokio::time::timeout(bound, kv.range(request)).await {
        Ok(Ok(resp)) => Ok(resp.into_inner().kvs.into_iter().next().map(|kv| kv.value)),
        Ok(Err(s)) => Err((s.code(), s.message().to_string())),
        Err(_) => Err((
            Code::DeadlineExceeded,
            format!("no answer within {bound:?}"),
        )),
    }
}

async fn kv(cluster: &Cluster, i: usize) -> KvClient<Channel> {
    cluster
        .kv(i)
        .await
        .unwrap_or_else(|e| panic!("connect to {}: {e}", cluster.name(i)))
}

/// Member `i`'s `HashKV` at `revision`.
async fn hash_kv(cluster: &Cluster, i: usize, revision: i64) -> u32 {
    let mut m = cluster
        .maintenance(i)
        .await
        .unwrap_or_else(|e| panic!("connect to {}: {e}", cluster.name(i)));
    match tokio::time::timeout(RPC, m.hash_kv(HashKvRequest { revision })).await {
        Ok(Ok(resp)) => resp.into_inner().hash,
        Ok(Err(s)) => panic!("{} hashkv: {:?} {}", cluster.name(i), s.code(), s.message()),
        Err(_) => panic!("{} hashkv timed out", cluster.name(i)),
    }
}

/// Puts `key` through the members in `through` in turn until one
/// acknowledges it (bounded by [`CONVERGE`]): its revision.
async fn put_somewhere(cluster: &Cluster, through: &[usize], key: &str, value: &str) -> i64 {
    let started = Instant::now();
    let mut turn = 0;
    loop {
        let i = through[turn % through.len()];
        let last = match put(&mut kv(cluster, i).await, key, value, RPC).await {
            Ok(revision) => return revision,
            Err(e) => format!("{}: {e:?}", cluster.name(i)),
        };
        assert!(
            started.elapsed() < CONVERGE,
            "put {key} not acknowledged within {CONVERGE:?}; last: {last}"
        );
        turn += 1;
        tokio::time::sleep(POLL).await;
    }
}

/// After a fault is healed: a marker put through `through`, every member at
/// its revision, one leader, and `HashKV` equal there. Returns the revision.
async fn converge(cluster: &mut Cluster, through: &[usize], tag: &str) -> i64 {
    let started = Instant::now();
    let revision = put_somewhere(cluster, through, &format!("marker/{tag}"), tag).await;
    for i in 0..cluster.size() {
        cluster
            .wait_revision(i, revision, CONVERGE)
            .await
            .unwrap_or_else(|e| panic!("{tag}: {e}"));
    }
    cluster
        .wait_leader(CONVERGE)
        .await
        .unwrap_or_else(|e| panic!("{tag}: {e}"));
    let mut hashes = Vec::new();
    for i in 0..cluster.size() {
        hashes.push(hash_kv(cluster, i, revision).await);
    }
    println!(
        "{tag}: every member at revision {revision}, HashKV {hashes:x?}, after {:?}",
        started.elapsed()
    );
    assert!(
        hashes.iter().all(|&h| h == hashes[0]),
        "{tag}: members disagree at revision {revision}: {hashes:x?}"
    );
    revision
}

/// Polls until members `among` agree on a leader other than `not`, bounded
/// by [`CONVERGE`]: that leader's index.
async fn wait_leader_among(cluster: &Cluster, among: &[usize], not: usize) -> usize {
    let started = Instant::now();
    loop {
        let mut leaders = Vec::new();
        for &i in among {
            leaders.push(cluster.status(i).await.map(|s| s.leader).unwrap_or(0));
        }
        let agreed = leaders[0] != 0 && leaders.iter().all(|&l| l == leaders[0]);
        if agreed
            && let Some(i) = among
                .iter()
                .copied()
                .find(|&i| cluster.member_id(i) == Some(leaders[0]))
            && i != not
        {
            println!(
                "{} leads {:?} after {:?}",
                cluster.name(i),
                among,
                started.elapsed()
            );
            return i;
        }
        assert!(
            started.elapsed() < CONVERGE,
            "members {among:?} name leaders {leaders:x?} after {CONVERGE:?}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Every chaos RPC, once each, with harmless arguments: (name, answer).
async fn every_chaos_rpc(channel: Channel) -> Vec<(&'static str, Result<(), tonic::Status>)> {
    let mut c = ChaosClient::new(channel);
    let actor = KillActorRequest {
        actor: "watch".to_string(),
    };
    let link = LinkFaultRequest {
        delay_ms: 10,
        ..Default::default()
    };
    let bug = PlantBugRequest {
        bug: "lose-writes".to_string(),
        count: 1,
    };
    vec![
        ("KillActor", c.kill_actor(actor).await.map(drop)),
        ("LinkFault", c.link_fault(link).await.map(drop)),
        (
            "Partition",
            c.partition(PartitionRequest { peers: vec![1] })
                .await
                .map(drop),
        ),
        ("Heal", c.heal(HealRequest {}).await.map(drop)),
        (
            "PauseApply",
            c.pause_apply(PauseApplyRequest { max_ms: 100 })
                .await
                .map(drop),
        ),
        (
            "ResumeApply",
            c.resume_apply(ResumeApplyRequest {}).await.map(drop),
        ),
        (
            "SlowDisk",
            c.slow_disk(SlowDiskRequest { delay_ms: 1 }).await.map(drop),
        ),
        (
            "FailFsync",
            c.fail_fsync(FailFsyncRequest { count: 1 }).await.map(drop),
        ),
        ("Crash", c.crash(CrashRequest {}).await.map(drop)),
        ("PlantBug", c.plant_bug(bug).await.map(drop)),
        ("Faults", c.faults(FaultsRequest {}).await.map(drop)),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_api_is_refused_without_enable_chaos() {
    let _turn = SERIAL.lock().await;
    let mut cluster = start(ClusterOpts::default()).await;
    for i in 0..cluster.size() {
        let channel = cluster.channel(i).await.expect("channel");
        for (rpc, answer) in every_chaos_rpc(channel).await {
            match answer {
                Err(s) if s.code() == Code::FailedPrecondition && s.message() == DISABLED => {}
                other => panic!(
                    "{} {rpc}: {other:?}; want FailedPrecondition {DISABLED:?}",
                    cluster.name(i)
                ),
            }
        }
    }
    let all: Vec<usize> = (0..cluster.size()).collect();
    for action in [&["crash"][..], &["kill-actor", "raft"], &["faults"]] {
        let out = oxcdctl(&chaos_args(&cluster, &all, action)).await;
        assert!(!out.success, "oxcdctl chaos {action:?} succeeded: {out:?}");
        assert_eq!(
            out.stderr.matches(DISABLED).count(),
            3,
            "one refusal per member: {out:?}"
        );
        assert!(out.stdout.is_empty(), "{out:?}");
    }
    assert_eq!(cluster.running(), all, "a refused Crash stopped a member");
    for i in all {
        let key = format!("still/{i}");
        put(&mut kv(&cluster, i).await, &key, "serving", RPC)
            .await
            .unwrap_or_else(|e| panic!("{} put after the refusals: {e:?}", cluster.name(i)));
        let value = get(&mut kv(&cluster, i).await, &key, RPC).await;
        assert_eq!(value, Ok(Some(b"serving".to_vec())), "{}", cluster.name(i));
    }
}

/// One oxcd member with TLS on its client port and client certificate
/// auth, chaos enabled; killed (its own PID, `kill_on_drop`) when dropped.
struct TlsMember {
    _child: tokio::process::Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl TlsMember {
    async fn start(dir: tempfile::TempDir, ca: &Path, server: &(PathBuf, PathBuf)) -> Self {
        let (client, peer) = {
            let a = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            let b = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            (
                a.local_addr().expect("addr").port(),
                b.local_addr().expect("addr").port(),
            )
        };
        let log = std::fs::File::create(dir.path().join("server.log")).expect("log");
        let child = tokio::process::Command::new(Kind::Oxcd.binary().expect("oxcd"))
            .args([
                "--name=tls".to_string(),
                format!("--data-dir={}", dir.path().join("data").display()),
                format!("--listen-client-urls=https://127.0.0.1:{client}"),
                format!("--advertise-client-urls=https://127.0.0.1:{client}"),
                format!("--listen-peer-urls=http://127.0.0.1:{peer}"),
                format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer}"),
                format!("--initial-cluster=tls=http://127.0.0.1:{peer}"),
                format!("--cert-file={}", server.0.display()),
                format!("--key-file={}", server.1.display()),
                format!("--trusted-ca-file={}", ca.display()),
                "--client-cert-auth".to_string(),
                "--enable-chaos".to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("spawn oxcd");
        TlsMember {
            _child: child,
            port: client,
            dir,
        }
    }

    fn endpoint(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// `oxcdctl chaos --endpoints <this member> --cacert <ca>` with the
    /// client certificate `client`, if any, and then `action`.
    fn chaos_args(
        &self,
        ca: &Path,
        client: Option<&(PathBuf, PathBuf)>,
        action: &[&str],
    ) -> Vec<String> {
        let mut args = vec![
            "chaos".to_string(),
            "--endpoints".to_string(),
            self.endpoint(),
            "--cacert".to_string(),
            ca.display().to_string(),
        ];
        if let Some((cert, key)) = client {
            args.extend([
                "--cert".to_string(),
                cert.display().to_string(),
                "--key".to_string(),
                key.display().to_string(),
            ]);
        }
        args.extend(action.iter().map(|a| a.to_string()));
        args
    }

    /// Polls `etcdctl endpoint health` with a good client until it answers.
    async fn wait_ready(&self, ca: &Path, client: &(PathBuf, PathBuf)) {
        let started = Instant::now();
        let flags = [
            format!("--cacert={}", ca.display()),
            format!("--cert={}", client.0.display()),
            format!("--key={}", client.1.display()),
            "--dial-timeout=2s".to_string(),
            "--command-timeout=3s".to_string(),
            "endpoint".to_string(),
            "health".to_string(),
        ];
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        loop {
            let out = run_etcdctl(&self.endpoint(), &flags, None, CTL)
                .await
                .expect("etcdctl runs");
            if out.code == 0 {
                return;
            }
            assert!(
                started.elapsed() < CONVERGE,
                "the TLS member is not healthy after {CONVERGE:?}: {}",
                out.stderr
            );
            tokio::time::sleep(POLL).await;
        }
    }
}

impl Drop for TlsMember {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log =
                std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("--- TLS member log tail ---");
            for line in tail.into_iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_api_needs_a_client_certificate_when_tls_client_auth_is_on() {
    let _turn = SERIAL.lock().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let (good, other) = (Ca::new("oxcd chaos test CA"), Ca::new("oxcd other CA"));
    let ca_path = dir.path().join("ca.pem");
    good.write(&ca_path);
    let server = good.leaf(dir.path(), "server", &[SERVER], false);
    let client = good.leaf(dir.path(), "client", &[CLIENT], false);
    let stranger = other.leaf(dir.path(), "stranger", &[CLIENT], false);
    let member_dir = tempfile::tempdir().expect("temp dir");
    let member = TlsMember::start(member_dir, &ca_path, &server).await;
    member.wait_ready(&ca_path, &client).await;

    // Without a certificate, or with one the member's CA did not sign, the
    // handshake is refused (with TLS 1.3 the client learns it at its first
    // request); plain HTTP is no TLS handshake at all.
    for (what, cert) in [("no", None), ("another CA's", Some(&stranger))] {
        let out = oxcdctl(&member.chaos_args(&ca_path, cert, &["faults"])).await;
        assert!(
            !out.success,
            "faults with {what} client certificate: {out:?}"
        );
        assert!(out.stdout.is_empty(), "{out:?}");
    }
    let plain = format!("http://127.0.0.1:{}", member.port);
    let out = oxcdctl(&[
        "chaos".to_string(),
        "--endpoints".to_string(),
        plain,
        "faults".to_string(),
    ])
    .await;
    assert!(!out.success, "faults over plain HTTP: {out:?}");

    let good = Some(&client);
    let slowed = oxcdctl(&member.chaos_args(&ca_path, good, &["slow-disk", "--ms", "5"])).await;
    assert!(slowed.success, "slow-disk with a certificate: {slowed:?}");
    assert_eq!(slowed.stdout.lines().count(), 1, "{slowed:?}");
    let faults = oxcdctl(&member.chaos_args(&ca_path, good, &["faults"])).await;
    assert!(faults.success, "faults with a certificate: {faults:?}");
    assert!(
        !faults.stdout.is_empty() && !faults.stdout.contains("no active faults"),
        "the slow disk is not listed: {faults:?}"
    );
    let cleared = oxcdctl(&member.chaos_args(&ca_path, good, &["slow-disk", "--ms", "0"])).await;
    assert!(cleared.success, "{cleared:?}");
    // The refusals did not stop the member.
    member.wait_ready(&ca_path, &client).await;
}

/// Cuts `victim` from the other two with `oxcdctl chaos partition`, checks
/// both sides, heals, and waits for the cluster to agree (module doc, 3).
async fn partition_round(cluster: &mut Cluster, victim: usize, name: &str, role: &str) {
    let all: Vec<usize> = (0..cluster.size()).collect();
    let others: Vec<usize> = all.iter().copied().filter(|&i| i != victim).collect();
    let known = format!("part/{role}/known");
    let revision = put_somewhere(cluster, &[victim], &known, "before").await;
    for &i in &all {
        cluster
            .wait_revision(i, revision, CONVERGE)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }

    let lines = chaos_ok(cluster, &all, &["partition", "--isolate", name]).await;
    assert_eq!(lines.len(), 3, "one line per member: {lines:?}");
    let faults = chaos_ok(cluster, &[victim], &["faults"]).await;
    assert!(
        !faults.is_empty() && !faults.iter().any(|l| l.contains("no active faults")),
        "the partition is not listed on {}: {faults:?}",
        cluster.name(victim)
    );

    // The minority side: a put and a linearizable read fail, in bounded time.
    let (mut kv_put, mut kv_get) = (kv(cluster, victim).await, kv(cluster, victim).await);
    let refused = format!("part/{role}/refused");
    let started = Instant::now();
    let (put_answer, get_answer) = tokio::join!(
        put(&mut kv_put, &refused, "x", REFUSAL),
        get(&mut kv_get, &known, REFUSAL)
    );
    println!(
        "isolated {role} {}: put -> {put_answer:?}, linearizable get -> {get_answer:?}, within {:?}",
        cluster.name(victim),
        started.elapsed()
    );
    for (what, code) in [
        ("put", put_answer.err().map(|e| e.0)),
        ("linearizable get", get_answer.err().map(|e| e.0)),
    ] {
        assert!(
            matches!(code, Some(Code::Unavailable)),
            "isolated {role}: {what} answered {code:?}; want Unavailable within {REFUSAL:?}"
        );
    }

    // The majority side elects a leader (if it lost it) and serves.
    wait_leader_among(cluster, &others, victim).await;
    for n in 0..10 {
        let i = others[n % others.len()];
        let key = format!("part/{role}/majority/{n}");
        put(&mut kv(cluster, i).await, &key, "ok", RPC)
            .await
            .unwrap_or_else(|e| panic!("majority put through {}: {e:?}", cluster.name(i)));
        let read = get(
            &mut kv(cluster, others[(n + 1) % others.len()]).await,
            &key,
            RPC,
        )
        .await;
        assert_eq!(read, Ok(Some(b"ok".to_vec())), "majority read of {key}");
    }

    let lines = chaos_ok(cluster, &[others[0]], &["heal"]).await;
    assert_eq!(lines.len(), 3, "heal reaches every member: {lines:?}");
    converge(cluster, &all, &format!("partition-{role}")).await;
    let read = get(&mut kv(cluster, victim).await, &known, RPC).await;
    assert_eq!(read, Ok(Some(b"before".to_vec())), "healed {role} reads");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_isolates_the_leader_then_a_follower_and_heal_converges() {
    let _turn = SERIAL.lock().await;
    let mut cluster = start(chaos_opts()).await;
    let leader = cluster.wait_leader(CONVERGE).await.expect("leader");
    let name = cluster.name(leader).to_string();
    partition_round(&mut cluster, leader, &name, "leader").await;

    let first = leader;
    let leader = cluster.wait_leader(CONVERGE).await.expect("leader");
    // A follower other than the member cut first, where there is one.
    let follower = (0..cluster.size())
        .filter(|&i| i != leader)
        .max_by_key(|&i| i != first)
        .expect("follower");
    let id = format!("{:x}", cluster.member_id(follower).expect("member id"));
    partition_round(&mut cluster, follower, &id, "follower").await;
}

/// Puts through every member in turn: through `lossy` up to five tries of
/// [`LOSSY_TRY`] each (a forwarded proposal may be dropped, and then only
/// the server's request timeout ends the put), through the others one try
/// of [`RPC`]. Returns how many retries `lossy` needed.
async fn puts_go_on(cluster: &Cluster, tag: &str, count: usize, lossy: Option<usize>) -> usize {
    let started = Instant::now();
    let mut retries = 0;
    for n in 0..count {
        let i = n % cluster.size();
        let (tries, bound) = if Some(i) == lossy {
            (5, LOSSY_TRY)
        } else {
            (1, RPC)
        };
        let key = format!("{tag}/{n}");
        let mut answer = Err((Code::Unknown, "not sent".to_string()));
        for attempt in 0..tries {
            answer = put(&mut kv(cluster, i).await, &key, "v", bound).await;
            if answer.is_ok() {
                break;
            }
            if attempt + 1 < tries {
                retries += 1;
            }
        }
        if let Err(e) = answer {
            panic!(
                "{tag}: put {key} through {} not acknowledged in {tries} tries: {e:?}",
                cluster.name(i)
            );
        }
    }
    println!(
        "{tag}: {count} puts acknowledged in {:?} ({retries} retries through the lossy member)",
        started.elapsed()
    );
    retries
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delay_and_drop_slow_the_cluster_but_writes_go_on_and_heal_converges() {
    let _turn = SERIAL.lock().await;
    let seed = seed_from_env();
    println!("drop seed {seed} (replay with OXCD_SEED={seed})");
    let mut cluster = start(chaos_opts()).await;
    let all: Vec<usize> = (0..cluster.size()).collect();
    let leader = cluster.wait_leader(CONVERGE).await.expect("leader");
    let follower = (0..cluster.size())
        .find(|&i| i != leader)
        .expect("follower");

    let lines = chaos_ok(
        &cluster,
        &[leader],
        &["delay", "--direction", "out", "--ms", "200"],
    )
    .await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    puts_go_on(&cluster, "delay", 12, None).await;

    let leader_id = format!("{:x}", cluster.member_id(leader).expect("member id"));
    let seed_text = seed.to_string();
    let lines = chaos_ok(
        &cluster,
        &[follower],
        &[
            "drop",
            "--peer",
            &leader_id,
            "--direction",
            "both",
            "--probability",
            "0.3",
            "--seed",
            &seed_text,
        ],
    )
    .await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    for i in [leader, follower] {
        let faults = chaos_ok(&cluster, &[i], &["faults"]).await;
        assert!(
            !faults.iter().any(|l| l.contains("no active faults")),
            "{}'s fault is not listed: {faults:?}",
            cluster.name(i)
        );
    }
    puts_go_on(&cluster, "drop", 24, Some(follower)).await;

    let lines = chaos_ok(&cluster, &[leader], &["heal"]).await;
    assert_eq!(lines.len(), 3, "heal reaches every member: {lines:?}");
    let faults = chaos_ok(&cluster, &all, &["faults"]).await;
    assert!(
        faults.len() == 3 && faults.iter().all(|l| l.contains("no active faults")),
        "faults left after heal: {faults:?}"
    );
    converge(&mut cluster, &all, "delay-drop").await;
}

/// A client putting unique keys `<prefix>/<n>` through `endpoints` (moving
/// to the next one when a put fails) until told to stop; its ledger.
struct Writer {
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<Ledger>,
}

/// Puts a writer sends at most (a bound on the loop, far above what runs).
const WRITER_MAX_PUTS: usize = 20_000;
/// Bound on one put of the writer.
const WRITER_RPC: Duration = Duration::from_secs(3);

impl Writer {
    fn start(prefix: String, endpoints: Vec<String>) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(AtomicUsize::new(0));
        let (stop_flag, count) = (stop.clone(), acked.clone());
        let task = tokio::spawn(async move {
            let mut ledger = Ledger::default();
            let mut at = 0;
            let mut client: Option<KvClient<Channel>> = None;
            for n in 0..WRITER_MAX_PUTS {
                if stop_flag.load(Ordering::SeqCst) {
                    break;
                }
                if client.is_none() {
                    client = Endpoint::from_shared(endpoints[at].clone())
                        .expect("uri")
                        .connect_timeout(Duration::from_secs(1))
                        .connect()
                        .await
                        .ok()
                        .map(KvClient::new);
                }
                let Some(kv) = client.as_mut() else {
                    // Nothing sent: try the next member.
                    at = (at + 1) % endpoints.len();
                    tokio::time::sleep(POLL).await;
                    continue;
                };
                let (key, value) = (format!("{prefix}/{n}"), format!("v{n}"));
                match put(kv, &key, &value, WRITER_RPC).await {
                    Ok(revision) => {
                        ledger.ack(key.into_bytes(), value.into_bytes(), revision);
                        count.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(_) => {
                        ledger.maybe(key.into_bytes(), value.into_bytes());
                        client = None;
                        at = (at + 1) % endpoints.len();
                        tokio::time::sleep(POLL).await;
                    }
                }
            }
            ledger
        });
        Writer { stop, acked, task }
    }

    fn acked(&self) -> usize {
        self.acked.load(Ordering::SeqCst)
    }

    /// Polls until the writer has `count` acknowledged puts.
    async fn wait_acked(&self, count: usize, what: &str) {
        let started = Instant::now();
        while self.acked() < count {
            assert!(
                started.elapsed() < CONVERGE,
                "{what}: {} of {count} puts acknowledged after {CONVERGE:?}",
                self.acked()
            );
            tokio::time::sleep(POLL).await;
        }
    }

    async fn finish(self) -> Ledger {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.expect("writer task")
    }
}

/// `fail-fsync` on `victim` while a client writes through `first` (then
/// the others): the member exits with status 2, the others go on, and after
/// a restart nothing acknowledged is missing anywhere (module doc, 5).
async fn fail_fsync_round(cluster: &mut Cluster, victim: usize, first: usize, role: &str) {
    let all: Vec<usize> = (0..cluster.size()).collect();
    let others: Vec<usize> = all.iter().copied().filter(|&i| i != victim).collect();
    let mut endpoints = vec![cluster.endpoint(first)];
    endpoints.extend(
        all.iter()
            .filter(|&&i| i != first)
            .map(|&i| cluster.endpoint(i)),
    );
    let writer = Writer::start(format!("fsync/{role}"), endpoints);
    writer.wait_acked(20, role).await;

    // The member may fail its next write before the answer leaves it: then
    // oxcdctl reports an error, and the exit below is what counts.
    let out = oxcdctl(&chaos_args(
        cluster,
        &[victim],
        &["fail-fsync", "--count", "1"],
    ))
    .await;
    let started = Instant::now();
    let status = cluster.wait_exit(victim, EXIT).await;
    println!(
        "{role} {}: fail-fsync answered {}, exit status {status:?} within {:?}",
        cluster.name(victim),
        if out.success { "ok" } else { "with an error" },
        started.elapsed()
    );
    assert_eq!(
        status,
        Some(2),
        "{role} {} did not exit with status 2 after fail-fsync",
        cluster.name(victim)
    );

    let before = writer.acked();
    wait_leader_among(cluster, &others, victim).await;
    writer.wait_acked(before + 20, role).await;
    let ledger = writer.finish().await;
    println!(
        "{role}: {} puts acknowledged, {} maybe applied",
        ledger.acks().len(),
        ledger.maybe_count()
    );
    ledger.unique_revisions().unwrap_or_else(|e| panic!("{e}"));

    cluster
        .restart(victim)
        .await
        .unwrap_or_else(|e| panic!("restart {}: {e}", cluster.name(victim)));
    let revision = converge(cluster, &all, &format!("fail-fsync-{role}")).await;
    assert!(revision >= ledger.max_revision());
    for &i in &all {
        let mut kv = kv(cluster, i).await;
        ledger
            .verify(&mut kv, ReadMode::Serializable, RPC)
            .await
            .unwrap_or_else(|e| panic!("{role}: on {}: {e}", cluster.name(i)));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_fsync_stops_a_member_without_acknowledging_and_it_rejoins() {
    let _turn = SERIAL.lock().await;
    let mut cluster = start(chaos_opts()).await;
    let leader = cluster.wait_leader(CONVERGE).await.expect("leader");
    let follower = (0..cluster.size())
        .find(|&i| i != leader)
        .expect("follower");
    fail_fsync_round(&mut cluster, follower, leader, "follower").await;

    let leader = cluster.wait_leader(CONVERGE).await.expect("leader");
    fail_fsync_round(&mut cluster, leader, leader, "leader").await;
}

/// A serializable get of `key` from member `i`'s own store.
async fn local_get(cluster: &Cluster, i: usize, key: &str) -> Option<Vec<u8>> {
    let request = RangeRequest {
        key: key.as_bytes().to_vec(),
        serializable: true,
        ..Default::default()
    };
    match tokio::time::timeout(RPC, kv(cluster, i).await.range(request)).await {
        Ok(Ok(resp)) => resp.into_inner().kvs.into_iter().next().map(|kv| kv.value),
        Ok(Err(s)) => panic!(
            "{} serializable get: {:?} {}",
            cluster.name(i),
            s.code(),
            s.message()
        ),
        Err(_) => panic!("{} serializable get timed out", cluster.name(i)),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_other_actions_act_once_per_member() {
    let _turn = SERIAL.lock().await;
    let mut cluster = start(chaos_opts()).await;
    let all: Vec<usize> = (0..cluster.size()).collect();
    let leader = cluster.wait_leader(CONVERGE).await.expect("leader");
    let followers: Vec<usize> = all.iter().copied().filter(|&i| i != leader).collect();
    let (paused, crashed) = (followers[0], followers[1]);

    // kill-actor: one line per endpoint; every member serves afterwards.
    let lines = chaos_ok(&cluster, &all, &["kill-actor", "watch"]).await;
    assert_eq!(lines.len(), 3, "{lines:?}");
    for &i in &all {
        put_somewhere(&cluster, &[i], &format!("killed/{i}"), "v").await;
    }

    // pause-apply holds a follower's store back until resume-apply.
    chaos_ok(&cluster, &[paused], &["pause-apply", "--max", "60s"]).await;
    let faults = chaos_ok(&cluster, &[paused], &["faults"]).await;
    assert!(
        !faults.iter().any(|l| l.contains("no active faults")),
        "the pause is not listed: {faults:?}"
    );
    let revision = put_somewhere(&cluster, &[leader], "paused/k", "v").await;
    // The paused member still answers from its store as it stands: its
    // Status (a revision behind the put) and a serializable read (without
    // the key).
    let status = cluster
        .status(paused)
        .await
        .unwrap_or_else(|e| panic!("Status of the paused member: {e}"));
    let paused_revision = status.header.map_or(0, |h| h.revision);
    assert!(
        paused_revision < revision,
        "the paused member is at revision {paused_revision}, the put at {revision}"
    );
    assert_eq!(local_get(&cluster, paused, "paused/k").await, None);
    chaos_ok(&cluster, &[paused], &["resume-apply"]).await;
    cluster
        .wait_revision(paused, revision, CONVERGE)
        .await
        .unwrap_or_else(|e| panic!("after resume-apply: {e}"));

    // crash: the member exits at once with the status of a kill -9.
    chaos_ok(&cluster, &[crashed], &["crash"]).await;
    let status = cluster.wait_exit(crashed, EXIT).await;
    assert_eq!(status, Some(137), "{} after crash", cluster.name(crashed));
    cluster
        .restart(crashed)
        .await
        .unwrap_or_else(|e| panic!("restart {}: {e}", cluster.name(crashed)));
    converge(&mut cluster, &all, "crash").await;

    // plant-bug: the next put applied on that member is answered but lost
    // from its store (what the chaos checker must catch).
    chaos_ok(
        &cluster,
        &[paused],
        &["plant-bug", "lose-writes", "--count", "1"],
    )
    .await;
    let revision = put_somewhere(&cluster, &[leader], "planted/k", "v").await;
    cluster
        .wait_revision(paused, revision, CONVERGE)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        local_get(&cluster, leader, "planted/k").await,
        Some(b"v".to_vec())
    );
    assert_eq!(
        local_get(&cluster, paused, "planted/k").await,
        None,
        "the planted bug did not bite on {}",
        cluster.name(paused)
    );
}
