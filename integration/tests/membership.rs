//! Membership changes on a live oxcd cluster, driven as an operator drives
//! etcd 3.4's: Debian's etcdctl for the runbook steps, raw gRPC where etcdctl
//! checks an argument itself or retries an error a hundred times.
//!
//! 1. Grow 1 -> 3 with `member add` + `--initial-cluster-state existing`;
//!    every refusal etcd gives (bad URLs, a taken peer URL, unknown ids, a
//!    voter promoted, a second learner, an unsynced learner promoted) with
//!    etcd's code and text.
//! 2. A learner: joins, serves only serializable ranges and `Status`
//!    (`rpc not supported for learner` otherwise), is promoted once in sync.
//! 3. Grow to 5, shrink 5 -> 3: removed members stop on their own (exit 0,
//!    etcd's words in the log), and the rest keep serving.
//! 4. Repair a dead member (docs/operations.md): remove it, wipe its data
//!    dir, add it back, start it with `existing`; then a full-cluster
//!    restart. Every step ends with every member's HashKV equal.
//!
//! 5. A second test: a MemberAdd proposed through a follower while the
//!    leader is killed -9 is applied once or not at all (acknowledged: once),
//!    and every member lists the same members afterwards; then a member
//!    moves to a new address (stop, remove, add the new URL, join with a
//!    fresh data dir) and HashKV agrees.
//!
//! A writer puts unique keys through the founding member the whole time;
//! every put it saw acknowledged must be on every member at the end. Adds
//! and removals right after a member connected get etcd's `unhealthy
//! cluster` (every voter must have been connected for 5 s) and are retried,
//! bounded, as an operator retries them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use integration::Kind;
use integration::acks::{Ledger, ReadMode};
use integration::cluster::{Cluster, ClusterOpts};
use integration::etcdctl::run_etcdctl;
use proto::etcdserverpb::cluster_client::ClusterClient;
use proto::etcdserverpb::kv_client::KvClient;
use proto::etcdserverpb::maintenance_client::MaintenanceClient;
use proto::etcdserverpb::{
    HashKvRequest, MemberAddRequest, MemberListRequest, MemberPromoteRequest, MemberRemoveRequest,
    MemberUpdateRequest, PutRequest, RangeRequest, StatusRequest,
};
use tonic::Code;

/// Bound on one etcdctl run.
const CTL: Duration = Duration::from_secs(30);
/// Bound on waiting for a member to catch up, stop or be promotable.
const WAIT: Duration = Duration::from_secs(30);

fn unix_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

async fn ctl(cluster: &Cluster, i: usize, args: &[&str]) -> (i32, String) {
    let out = run_etcdctl(&cluster.client_addr(i), args, None, CTL)
        .await
        .expect("etcdctl runs");
    (out.code, format!("{}{}", out.stdout, out.stderr))
}

async fn members(cluster: &Cluster, i: usize) -> ClusterClient<tonic::transport::Channel> {
    ClusterClient::new(cluster.channel(i).await.expect("channel"))
}

/// Runs an etcdctl membership command, again while the answer is etcd's
/// `unhealthy cluster` (a peer connected less than 5 s ago), as an operator
/// would; bounded.
async fn ctl_when_healthy(cluster: &Cluster, i: usize, args: &[&str]) -> (i32, String) {
    let started = Instant::now();
    loop {
        let (code, out) = ctl(cluster, i, args).await;
        if code == 0 || !out.contains("etcdserver: unhealthy cluster") {
            return (code, out);
        }
        assert!(started.elapsed() < WAIT, "{args:?} still refused: {out}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A raw MemberAdd, again while the answer is `unhealthy cluster` (bounded).
async fn add_when_healthy(
    client: &ClusterClient<tonic::transport::Channel>,
    request: MemberAddRequest,
) -> Result<tonic::Response<proto::etcdserverpb::MemberAddResponse>, tonic::Status> {
    let started = Instant::now();
    loop {
        match client.clone().member_add(request.clone()).await {
            Err(s)
                if s.message() == "etcdserver: unhealthy cluster" && started.elapsed() < WAIT =>
            {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            other => return other,
        }
    }
}

/// `member add` through etcdctl; the new member's id.
async fn add(cluster: &Cluster, via: usize, new: usize, learner: bool) -> u64 {
    let urls = format!("--peer-urls={}", cluster.peer_url(new));
    let name = cluster.name(new).to_string();
    let mut args = vec!["member", "add", name.as_str(), urls.as_str()];
    if learner {
        args.push("--learner");
    }
    let (code, out) = ctl_when_healthy(cluster, via, &args).await;
    assert_eq!(code, 0, "member add: {out}");
    assert!(
        out.contains("ETCD_INITIAL_CLUSTER_STATE=\"existing\""),
        "{out}"
    );
    let hex = out
        .split_whitespace()
        .nth(1)
        .unwrap_or_else(|| panic!("member add printed {out}"));
    u64::from_str_radix(hex, 16).expect("hex member id")
}

/// Every listed member's HashKV at the same revision is the same.
async fn same_hashes(cluster: &Cluster, live: &[usize]) {
    let mut kv = KvClient::new(cluster.channel(live[0]).await.expect("channel"));
    let put = kv
        .put(PutRequest {
            key: b"hash-mark".to_vec(),
            value: b"x".to_vec(),
            ..Default::default()
        })
        .await
        .expect("put");
    let revision = put.into_inner().header.expect("header").revision;
    let mut hashes = Vec::new();
    for &i in live {
        let started = Instant::now();
        let hash = loop {
            let mut m = MaintenanceClient::new(cluster.channel(i).await.expect("channel"));
            match m.hash_kv(HashKvRequest { revision }).await {
                Ok(r) => break r.into_inner().hash,
                Err(e) if started.elapsed() < WAIT => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("{}: hashkv at {revision}: {e}", cluster.name(i)),
            }
        };
        hashes.push((cluster.name(i).to_string(), hash));
    }
    assert!(
        hashes.windows(2).all(|w| w[0].1 == w[1].1),
        "HashKV at revision {revision} differs: {hashes:?}"
    );
}

async fn expect_refusal<T: std::fmt::Debug>(
    result: Result<T, tonic::Status>,
    code: Code,
    message: &str,
) {
    let status = result.expect_err("refused");
    assert_eq!(
        (status.code(), status.message()),
        (code, message),
        "{status:?}"
    );
}

/// Puts unique keys through `endpoints` (round robin) until `stop`,
/// recording every acknowledged put and every put that may have applied.
async fn writer(endpoints: Vec<String>, stop: Arc<AtomicBool>) -> Ledger {
    let mut ledger = Ledger::default();
    let mut n = 0u64;
    while !stop.load(Ordering::SeqCst) {
        let endpoint = &endpoints[n as usize % endpoints.len()];
        let key = format!("w/{n:06}").into_bytes();
        let value = format!("v{n}").into_bytes();
        n += 1;
        let put = async {
            let channel = tonic::transport::Endpoint::from_shared(endpoint.clone())
                .map_err(|e| e.to_string())?
                .connect()
                .await
                .map_err(|e| e.to_string())?;
            KvClient::new(channel)
                .put(PutRequest {
                    key: key.clone(),
                    value: value.clone(),
                    ..Default::default()
                })
                .await
                .map_err(|e| e.to_string())
        };
        match tokio::time::timeout(Duration::from_secs(5), put).await {
            Ok(Ok(r)) => {
                let revision = r.into_inner().header.map_or(0, |h| h.revision);
                ledger.ack(key, value, revision);
            }
            _ => ledger.maybe(key, value),
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    ledger
}

/// Every put `ledger` saw acknowledged is on each of `live`, read from the
/// member's own store once it caught up.
async fn acks_everywhere(cluster: &mut Cluster, live: &[usize], ledger: &Ledger) {
    ledger.unique_revisions().unwrap_or_else(|e| panic!("{e}"));
    for &i in live {
        cluster
            .wait_revision(i, ledger.max_revision(), WAIT)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let mut kv = KvClient::new(cluster.channel(i).await.expect("channel"));
        ledger
            .verify(&mut kv, ReadMode::Serializable, WAIT)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", cluster.name(i)));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grow_learn_promote_shrink_and_repair_as_etcd() {
    let mut cluster = Cluster::start(
        Kind::Oxcd,
        ClusterOpts {
            size: 1,
            ..ClusterOpts::default()
        },
    )
    .await
    .expect("one-member cluster");
    let (code, out) = ctl(&cluster, 0, &["put", "before-growth", "1"]).await;
    assert_eq!(code, 0, "{out}");
    // Writes go on through m0 for the whole test, however it changes.
    let stop = Arc::new(AtomicBool::new(false));
    let writes = tokio::spawn(writer(vec![cluster.endpoint(0)], stop.clone()));

    // 1. Grow 1 -> 3.
    let m1 = cluster.new_member().expect("slot");
    add(&cluster, 0, m1, false).await;
    let (_, listed) = ctl(&cluster, 0, &["member", "list"]).await;
    assert!(listed.contains("unstarted"), "{listed}");
    cluster.join(m1, &[0]).await.expect("m1 joins");
    let (code, out) = ctl(&cluster, m1, &["get", "before-growth"]).await;
    assert_eq!((code, out.as_str()), (0, "before-growth\n1\n"));
    let m2 = cluster.new_member().expect("slot");
    let m2_added = unix_seconds();
    add(&cluster, m1, m2, false).await;
    cluster.join(m2, &[0, m1]).await.expect("m2 joins");
    same_hashes(&cluster, &[0, m1, m2]).await;

    // Refusals, with etcd's codes and texts.
    let mut c = members(&cluster, 0).await;
    for bad in ["notaurl", "http://127.0.0.1", "http://127.0.0.1:1/path"] {
        expect_refusal(
            c.member_add(MemberAddRequest {
                peer_ur_ls: vec![bad.to_string()],
                is_learner: false,
            })
            .await,
            Code::InvalidArgument,
            "etcdserver: given member URLs are invalid",
        )
        .await;
    }
    expect_refusal(
        add_when_healthy(
            &c,
            MemberAddRequest {
                peer_ur_ls: vec![cluster.peer_url(m1), "http://127.0.0.1:9".to_string()],
                is_learner: false,
            },
        )
        .await,
        Code::FailedPrecondition,
        "etcdserver: Peer URLs already exists",
    )
    .await;
    for result in [
        c.member_remove(MemberRemoveRequest { id: 42 })
            .await
            .map(drop),
        c.member_update(MemberUpdateRequest {
            id: 42,
            peer_ur_ls: vec!["http://127.0.0.1:9".to_string()],
        })
        .await
        .map(drop),
        c.member_promote(MemberPromoteRequest { id: 42 })
            .await
            .map(drop),
    ] {
        expect_refusal(result, Code::NotFound, "etcdserver: member not found").await;
    }
    let voter = cluster.member_id(m1).expect("m1 id");
    expect_refusal(
        c.member_promote(MemberPromoteRequest { id: voter }).await,
        Code::FailedPrecondition,
        "etcdserver: can only promote a learner member",
    )
    .await;
    expect_refusal(
        c.member_update(MemberUpdateRequest {
            id: voter,
            peer_ur_ls: vec!["notaurl".to_string()],
        })
        .await,
        Code::InvalidArgument,
        "etcdserver: given member URLs are invalid",
    )
    .await;

    // 2. A learner.
    let m3 = cluster.new_member().expect("slot");
    let learner = add(&cluster, 0, m3, true).await;
    expect_refusal(
        add_when_healthy(
            &c,
            MemberAddRequest {
                peer_ur_ls: vec!["http://127.0.0.1:9".to_string()],
                is_learner: true,
            },
        )
        .await,
        Code::FailedPrecondition,
        "etcdserver: too many learner members in cluster",
    )
    .await;
    expect_refusal(
        c.member_promote(MemberPromoteRequest { id: learner }).await,
        Code::FailedPrecondition,
        "etcdserver: can only promote a learner member which is in sync with leader",
    )
    .await;
    cluster.join(m3, &[0, m1, m2]).await.expect("learner joins");
    let channel = cluster.channel(m3).await.expect("channel");
    let started = Instant::now();
    loop {
        let status = MaintenanceClient::new(channel.clone())
            .status(StatusRequest {})
            .await
            .expect("status on a learner")
            .into_inner();
        if status.is_learner {
            break;
        }
        assert!(
            started.elapsed() < WAIT,
            "m3 never reported itself a learner"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut on_learner = KvClient::new(channel.clone());
    let serializable = on_learner
        .range(RangeRequest {
            key: b"before-growth".to_vec(),
            serializable: true,
            ..Default::default()
        })
        .await
        .expect("serializable range on a learner");
    assert_eq!(serializable.into_inner().kvs.len(), 1);
    let not_for_learner = "etcdserver: rpc not supported for learner";
    expect_refusal(
        on_learner
            .range(RangeRequest {
                key: b"before-growth".to_vec(),
                ..Default::default()
            })
            .await,
        Code::Unavailable,
        not_for_learner,
    )
    .await;
    expect_refusal(
        on_learner
            .put(PutRequest {
                key: b"k".to_vec(),
                ..Default::default()
            })
            .await,
        Code::Unavailable,
        not_for_learner,
    )
    .await;
    expect_refusal(
        ClusterClient::new(channel.clone())
            .member_list(MemberListRequest {})
            .await,
        Code::Unavailable,
        not_for_learner,
    )
    .await;
    // Promoted through a follower (forwarded to the leader) once in sync.
    let started = Instant::now();
    loop {
        let (code, out) = ctl(
            &cluster,
            m1,
            &["member", "promote", &format!("{learner:x}")],
        )
        .await;
        if code == 0 {
            assert!(out.contains("promoted in cluster"), "{out}");
            break;
        }
        assert!(
            out.contains("in sync with leader") && started.elapsed() < WAIT,
            "promote: {out}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (code, out) = ctl(&cluster, m3, &["put", "via-promoted", "1"]).await;
    assert_eq!(code, 0, "{out}");

    // 3. Grow to 5, shrink 5 -> 3.
    let m4 = cluster.new_member().expect("slot");
    add(&cluster, m2, m4, false).await;
    cluster.join(m4, &[0, m1, m2, m3]).await.expect("m4 joins");
    same_hashes(&cluster, &[0, m1, m2, m3, m4]).await;
    for gone in [m3, m4] {
        let id = cluster.member_id(gone).expect("id");
        let (code, out) =
            ctl_when_healthy(&cluster, 0, &["member", "remove", &format!("{id:x}")]).await;
        assert_eq!(code, 0, "{out}");
        assert!(out.contains("removed from cluster"), "{out}");
        assert_eq!(
            cluster.wait_exit(gone, WAIT).await,
            Some(0),
            "{} should stop once removed",
            cluster.name(gone)
        );
        assert!(
            cluster
                .current_log(gone)
                .contains("the member has been permanently removed from the cluster"),
            "{}",
            cluster.log_tail(gone, 20)
        );
    }
    let (code, listed) = ctl(&cluster, 0, &["member", "list"]).await;
    assert_eq!((code, listed.lines().count()), (0, 3), "{listed}");
    same_hashes(&cluster, &[0, m1, m2]).await;
    stop.store(true, Ordering::SeqCst);
    let ledger = writes.await.expect("writer");
    assert!(
        ledger.acks().len() > 10,
        "only {} writes acknowledged while the cluster changed",
        ledger.acks().len()
    );
    acks_everywhere(&mut cluster, &[0, m1, m2], &ledger).await;

    // 4. Repair a dead member: remove, wipe, add back, start `existing`.
    cluster.kill9(m2).expect("kill m2");
    let dead = cluster.member_id(m2).expect("id");
    let (code, out) =
        ctl_when_healthy(&cluster, 0, &["member", "remove", &format!("{dead:x}")]).await;
    assert_eq!(code, 0, "{out}");
    cluster.wipe(m2).expect("wipe");
    // etcd derives an added member's id from its peer URLs and the second
    // it was added in: the same URLs added again within that second get the
    // removed id back, refused for good ("member not found"). Wait for the
    // clock to pass it, as an operator's slower hands would.
    let started = Instant::now();
    while unix_seconds() <= m2_added {
        assert!(started.elapsed() < WAIT, "the clock does not advance");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    add(&cluster, 0, m2, false).await;
    cluster.join(m2, &[0, m1]).await.expect("m2 rejoins");
    let endpoints = format!(
        "--endpoints={},{},{}",
        cluster.client_addr(0),
        cluster.client_addr(m1),
        cluster.client_addr(m2)
    );
    let (code, out) = ctl(
        &cluster,
        0,
        &[&endpoints, "endpoint", "status", "-w", "table"],
    )
    .await;
    assert_eq!(code, 0, "{out}");
    for i in [0, m1, m2] {
        let id = format!("{:x}", cluster.member_id(i).expect("id"));
        assert!(out.contains(&id), "{} missing from {out}", cluster.name(i));
    }
    same_hashes(&cluster, &[0, m1, m2]).await;

    // A full-cluster restart of members that joined at run time.
    cluster
        .restart_members(&[0, m1, m2])
        .await
        .expect("restart all");
    same_hashes(&cluster, &[0, m1, m2]).await;
    let (code, out) = ctl(&cluster, m2, &["get", "via-promoted", "--print-value-only"]).await;
    assert_eq!((code, out.as_str()), (0, "1\n"));
    acks_everywhere(&mut cluster, &[0, m1, m2], &ledger).await;
}

/// Every member's list of (id, peer URLs, learner), sorted, once they agree
/// (bounded); panics with the lists if they never do.
async fn agreed_members(cluster: &Cluster, live: &[usize]) -> Vec<(u64, Vec<String>, bool)> {
    let started = Instant::now();
    loop {
        let mut lists = Vec::new();
        for &i in live {
            let list = members(cluster, i)
                .await
                .member_list(MemberListRequest {})
                .await
                .map(|r| {
                    let mut l: Vec<_> = r
                        .into_inner()
                        .members
                        .into_iter()
                        .map(|m| (m.id, m.peer_ur_ls, m.is_learner))
                        .collect();
                    l.sort();
                    l
                });
            lists.push(list.map_err(|e| e.to_string()));
        }
        if let Ok(first) = &lists[0]
            && lists.iter().all(|l| l.as_ref() == Ok(first))
        {
            return first.clone();
        }
        assert!(
            started.elapsed() < WAIT,
            "member lists never agreed: {lists:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_during_a_leader_kill_happens_once_or_not_at_all_and_a_member_moves() {
    let mut cluster = Cluster::start(Kind::Oxcd, ClusterOpts::default())
        .await
        .expect("three-member cluster");
    let all = [0, 1, 2];

    // 1. An add proposed through a follower while the leader is killed.
    let leader = cluster
        .wait_leader(WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let via = (leader + 1) % 3;
    let slot = cluster.new_member().expect("slot");
    let url = cluster.peer_url(slot);
    let client = members(&cluster, via).await;
    let request = MemberAddRequest {
        peer_ur_ls: vec![url.clone()],
        is_learner: false,
    };
    // Wait until membership changes are allowed (every voter connected for
    // 5 s): a harmless add of a taken URL answers "unhealthy cluster" until
    // then, and "Peer URLs already exists" after.
    expect_refusal(
        add_when_healthy(
            &client,
            MemberAddRequest {
                peer_ur_ls: vec![cluster.peer_url(via)],
                is_learner: false,
            },
        )
        .await,
        Code::FailedPrecondition,
        "etcdserver: Peer URLs already exists",
    )
    .await;
    // Then the add goes out and the leader dies under it.
    let adding = tokio::spawn(async move {
        tokio::time::timeout(WAIT, add_when_healthy(&client, request)).await
    });
    tokio::task::yield_now().await;
    cluster.kill9(leader).expect("kill the leader");
    cluster
        .restart(leader)
        .await
        .expect("restart the old leader");
    let outcome = adding.await.expect("add task");
    let list = agreed_members(&cluster, &all).await;
    let with_url = list
        .iter()
        .filter(|(_, urls, _)| urls.contains(&url))
        .count();
    match &outcome {
        Ok(Ok(_)) => assert_eq!(with_url, 1, "acknowledged add not applied once: {list:?}"),
        other => assert!(with_url <= 1, "add applied twice ({other:?}): {list:?}"),
    }
    println!("add during leader kill: {outcome:?}; {with_url} member(s) with its URL");
    // The unstarted member (if added) is removed again: a member without a
    // connection may always go.
    if let Some((id, _, _)) = list.iter().find(|(_, urls, _)| urls.contains(&url)) {
        let (code, out) =
            ctl_when_healthy(&cluster, 0, &["member", "remove", &format!("{id:x}")]).await;
        assert_eq!(code, 0, "{out}");
    }
    assert_eq!(agreed_members(&cluster, &all).await.len(), 3);

    // 2. A member moves to a new address: stop it, remove it, add the new
    // address, start it there with a fresh data dir.
    let leader = cluster
        .wait_leader(WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let moving = (leader + 2) % 3;
    let old_id = cluster.member_id(moving).expect("id");
    cluster.kill9(moving).expect("stop the moving member");
    let stay: Vec<usize> = all.iter().copied().filter(|&i| i != moving).collect();
    let (code, out) = ctl_when_healthy(
        &cluster,
        stay[0],
        &["member", "remove", &format!("{old_id:x}")],
    )
    .await;
    assert_eq!(code, 0, "{out}");
    let moved = cluster.new_member().expect("slot");
    add(&cluster, stay[0], moved, false).await;
    cluster
        .join(moved, &stay)
        .await
        .expect("joins at its new address");
    let live = [stay[0], stay[1], moved];
    let list = agreed_members(&cluster, &live).await;
    assert_eq!(list.len(), 3, "{list:?}");
    assert!(list.iter().all(|(id, _, _)| *id != old_id), "{list:?}");
    same_hashes(&cluster, &live).await;
}
