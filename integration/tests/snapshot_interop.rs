//! Snapshots between oxcd and real etcd 3.4, both ways, with the operator's
//! own steps.
//!
//! 1. The same history (puts, overwrites, a delete, a txn, a lease with two
//!    keys, a compaction) is written to a fresh server.
//! 2. oxcd -> etcd: `etcdctl snapshot save` from oxcd, `etcdctl snapshot
//!    status` (its revision), `etcdctl snapshot restore`, then real etcd
//!    serves every key with its revisions and version, the lease and its
//!    keys, the compaction point, and the same HashKV as oxcd.
//! 3. etcd -> oxcd: `etcdctl snapshot save` from etcd, `oxcdctl snapshot
//!    restore` into three data dirs, a three-member oxcd cluster on them:
//!    every member serves the same keys and HashKV as etcd.
//! 4. etcdctl alone: `etcdctl snapshot restore` of etcd's snapshot into
//!    three data dirs, three `oxcd` members started on them: the same.
//! 5. A truncated and a corrupted file are refused by `oxcdctl snapshot
//!    restore` with a message, and no data dir is left behind.

use std::path::Path;
use std::time::Duration;

use integration::cluster::{Cluster, ClusterOpts};
use integration::etcdctl::run_etcdctl;
use integration::{Kind, Server, ServerOpts, oxcdctl_binary};
use proto::etcdserverpb::kv_client::KvClient;
use proto::etcdserverpb::maintenance_client::MaintenanceClient;
use proto::etcdserverpb::{HashKvRequest, RangeRequest};
use tonic::transport::Channel;

const CTL: Duration = Duration::from_secs(30);

/// One key as read: key, create and mod revision, version, value, lease.
type KeyRow = (Vec<u8>, i64, i64, i64, Vec<u8>, i64);

/// A store's revision and every key in it.
type Contents = (i64, Vec<KeyRow>);

async fn ctl(addr: &str, args: &[&str]) -> String {
    let out = run_etcdctl(addr, args, None, CTL).await.expect("etcdctl");
    assert_eq!(
        out.code, 0,
        "etcdctl {args:?}: {}{}",
        out.stdout, out.stderr
    );
    out.stdout
}

/// Step 1 through etcdctl against `addr`; the lease id in hex.
async fn write_history(addr: &str) -> String {
    for round in 0..2 {
        for k in 0..8 {
            ctl(addr, &["put", &format!("k{k}"), &format!("v{round}-{k}")]).await;
        }
    }
    ctl(addr, &["del", "k1"]).await;
    let txn = "\nput t1 a\nput t2 b\n\n\n";
    let out = run_etcdctl(addr, &["txn"], Some(txn), CTL)
        .await
        .expect("txn");
    assert_eq!(out.code, 0, "{out:?}");
    let granted = ctl(addr, &["lease", "grant", "3600"]).await;
    let lease = granted
        .split_whitespace()
        .nth(1)
        .expect("lease id")
        .to_string();
    ctl(addr, &["put", "l1", "x", &format!("--lease={lease}")]).await;
    ctl(addr, &["put", "l2", "y", &format!("--lease={lease}")]).await;
    ctl(addr, &["compact", "5"]).await;
    ctl(addr, &["put", "after-compaction", "z"]).await;
    lease
}

/// Every key with its revisions, version, value and lease, and the store
/// revision, as one comparable value.
async fn contents(channel: Channel) -> Contents {
    let r = KvClient::new(channel)
        .range(RangeRequest {
            key: vec![0],
            range_end: vec![0],
            ..Default::default()
        })
        .await
        .expect("range")
        .into_inner();
    let kvs = r
        .kvs
        .into_iter()
        .map(|kv| {
            (
                kv.key,
                kv.create_revision,
                kv.mod_revision,
                kv.version,
                kv.value,
                kv.lease,
            )
        })
        .collect();
    (r.header.expect("header").revision, kvs)
}

async fn hash_kv(channel: Channel, revision: i64) -> u32 {
    MaintenanceClient::new(channel)
        .hash_kv(HashKvRequest { revision })
        .await
        .expect("hashkv")
        .into_inner()
        .hash
}

fn oxcdctl(args: &[&str]) -> std::process::Output {
    std::process::Command::new(oxcdctl_binary().expect("oxcdctl"))
        .args(args)
        .output()
        .expect("run oxcdctl")
}

/// `snapshot restore FILE` with etcdctl's flags for member `i` of `cluster`
/// (oxcdctl takes the same).
fn restore_args(cluster: &Cluster, i: usize, file: &Path, token: &str) -> Vec<String> {
    vec![
        "snapshot".to_string(),
        "restore".to_string(),
        path(file),
        format!("--data-dir={}", path(&cluster.data_dir(i))),
        format!("--name={}", cluster.name(i)),
        format!("--initial-cluster={}", cluster.initial_cluster()),
        format!("--initial-cluster-token={token}"),
        format!("--initial-advertise-peer-urls={}", cluster.peer_url(i)),
    ]
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oxcd_snapshot_restores_into_real_etcd() {
    let oxcd = Server::start(Kind::Oxcd, ServerOpts::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let lease = write_history(&oxcd.client_addr()).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("oxcd.db");
    ctl(&oxcd.client_addr(), &["snapshot", "save", &path(&file)]).await;
    let (revision, expected) = contents(oxcd.channel().await.expect("channel")).await;
    let status = ctl(
        "127.0.0.1:1",
        &["snapshot", "status", &path(&file), "-w", "json"],
    )
    .await;
    assert!(
        status.contains(&format!("\"revision\":{revision},")),
        "{status}"
    );

    let opts = ClusterOpts {
        size: 1,
        ..ClusterOpts::default()
    };
    let token = opts.cluster_token.clone();
    let mut etcd = Cluster::prepare(Kind::Etcd, opts).expect("etcd dirs");
    let args = restore_args(&etcd, 0, &file, &token);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let restored = run_etcdctl("127.0.0.1:1", &args, None, CTL)
        .await
        .expect("etcdctl");
    assert_eq!(restored.code, 0, "{restored:?}");
    etcd.launch().await.unwrap_or_else(|e| panic!("{e}"));
    let channel = etcd.channel(0).await.expect("channel");
    assert_eq!(contents(channel.clone()).await, (revision, expected));
    assert_eq!(
        hash_kv(channel.clone(), revision).await,
        hash_kv(oxcd.channel().await.expect("channel"), revision).await,
        "HashKV at {revision}"
    );
    let keys = ctl(
        &etcd.client_addr(0),
        &["lease", "timetolive", &lease, "--keys"],
    )
    .await;
    assert!(keys.contains("l1") && keys.contains("l2"), "{keys}");
    let below = run_etcdctl(&etcd.client_addr(0), &["get", "k0", "--rev=3"], None, CTL)
        .await
        .expect("etcdctl");
    assert!(
        below
            .stderr
            .contains("required revision has been compacted"),
        "{below:?}"
    );
}

/// etcd's snapshot of step 1's history, and its contents and HashKV.
async fn etcd_snapshot(dir: &Path) -> (std::path::PathBuf, Contents, u32) {
    let etcd = Server::start(Kind::Etcd, ServerOpts::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    write_history(&etcd.client_addr()).await;
    let file = dir.join("etcd.db");
    ctl(&etcd.client_addr(), &["snapshot", "save", &path(&file)]).await;
    let channel = etcd.channel().await.expect("channel");
    let expected = contents(channel.clone()).await;
    let hash = hash_kv(channel, expected.0).await;
    (file, expected, hash)
}

/// Every member of `cluster` serves `expected` with HashKV `hash`.
async fn serves(cluster: &Cluster, expected: &Contents, hash: u32) {
    for i in 0..cluster.size() {
        let channel = cluster.channel(i).await.expect("channel");
        assert_eq!(
            &contents(channel.clone()).await,
            expected,
            "{}",
            cluster.name(i)
        );
        assert_eq!(
            hash_kv(channel, expected.0).await,
            hash,
            "{}: HashKV",
            cluster.name(i)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_snapshot_restores_into_three_oxcd_members_with_oxcdctl_and_with_etcdctl() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (file, expected, hash) = etcd_snapshot(dir.path()).await;
    let opts = ClusterOpts::default();
    let token = opts.cluster_token.clone();

    // With oxcdctl.
    let mut cluster = Cluster::prepare(Kind::Oxcd, opts.clone()).expect("dirs");
    for i in 0..cluster.size() {
        let args = restore_args(&cluster, i, &file, &token);
        let out = oxcdctl(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(out.status.success(), "{out:?}");
    }
    cluster.launch().await.unwrap_or_else(|e| panic!("{e}"));
    serves(&cluster, &expected, hash).await;
    drop(cluster);

    // With etcdctl alone: oxcd imports etcd's data dirs at first start.
    let mut cluster = Cluster::prepare(Kind::Oxcd, opts).expect("dirs");
    for i in 0..cluster.size() {
        let args = restore_args(&cluster, i, &file, &token);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run_etcdctl("127.0.0.1:1", &args, None, CTL)
            .await
            .expect("etcdctl");
        assert_eq!(out.code, 0, "{out:?}");
    }
    cluster.launch().await.unwrap_or_else(|e| panic!("{e}"));
    serves(&cluster, &expected, hash).await;
    let log = cluster.log(0);
    assert!(
        log.contains("imported etcd's keys, revisions and leases"),
        "{log}"
    );
    assert!(
        cluster.data_dir(0).join("member/snap/db").exists(),
        "etcd's files stay"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_and_corrupted_snapshots_are_refused_and_leave_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (file, _, _) = etcd_snapshot(dir.path()).await;
    let bytes = std::fs::read(&file).expect("read");
    let truncated = dir.path().join("truncated.db");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).expect("write");
    let mut flipped = bytes.clone();
    let middle = flipped.len() / 3;
    flipped[middle] ^= 0xff;
    let corrupted = dir.path().join("corrupted.db");
    std::fs::write(&corrupted, &flipped).expect("write");
    for (what, file, extra, says) in [
        ("truncated", &truncated, "--skip-hash-check", "bbolt"),
        (
            "corrupted",
            &corrupted,
            "--skip-hash-check=false",
            "expected sha256",
        ),
    ] {
        let target = dir.path().join(format!("restored-{what}"));
        let out = oxcdctl(&[
            "snapshot",
            "restore",
            &path(file),
            extra,
            &format!("--data-dir={}", path(&target)),
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{what}: restored");
        assert!(stderr.contains(says), "{what}: {stderr}");
        assert!(!target.exists(), "{what}: a data dir was left");
        let mut staging = target.clone().into_os_string();
        staging.push(".restoring");
        assert!(!Path::new(&staging).exists(), "{what}: staging left");
    }
}
