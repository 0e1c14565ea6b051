//! Auth across a cluster, restarts, snapshots and real etcd.
//!
//! 1. Three oxcd members; users, a role and auth set up through member 0
//!    with Debian's etcdctl. A simple token taken from one member works on
//!    every other (it is assigned at apply, everywhere); permissions and
//!    refusals are the same on every member; a made-up token is
//!    `invalid auth token`.
//! 2. With `--snapshot-count` small, writes made as the user push the log
//!    past several snapshots; a member killed -9 and restarted still has
//!    auth on, the users and the role; a member added afterwards (by root:
//!    member changes need the root role) catches up from a snapshot image
//!    and enforces the same permissions; every member's HashKV agrees.
//! 3. Snapshots carry auth both ways: oxcd's snapshot restored into real
//!    etcd 3.4 lets the user in with its password (the bcrypt hashes and
//!    etcd's auth buckets carry over) and refuses the anonymous client;
//!    etcd's snapshot restored by `oxcdctl snapshot restore` does the same
//!    on oxcd.

use std::path::Path;
use std::time::{Duration, Instant};

use integration::cluster::{Cluster, ClusterOpts};
use integration::etcdctl::run_etcdctl;
use integration::{Kind, Server, ServerOpts, oxcdctl_binary};
use proto::etcdserverpb::auth_client::AuthClient;
use proto::etcdserverpb::kv_client::KvClient;
use proto::etcdserverpb::maintenance_client::MaintenanceClient;
use proto::etcdserverpb::{AuthenticateRequest, HashKvRequest, PutRequest, RangeRequest};
use tonic::Code;
use tonic::transport::Channel;

const CTL: Duration = Duration::from_secs(30);
const WAIT: Duration = Duration::from_secs(30);

async fn ctl(addr: &str, args: &[&str]) -> (i32, String) {
    let out = run_etcdctl(addr, args, None, CTL).await.expect("etcdctl");
    (out.code, format!("{}{}", out.stdout, out.stderr))
}

async fn ctl_ok(addr: &str, args: &[&str]) -> String {
    let (code, out) = ctl(addr, args).await;
    assert_eq!(code, 0, "etcdctl {args:?}: {out}");
    out
}

/// root (with the root role), alice with role `r` (read-write on
/// `[a, m)`), auth on.
async fn set_up_auth(addr: &str) {
    for args in [
        &["user", "add", "root:rootpw"][..],
        &["user", "grant-role", "root", "root"],
        &["user", "add", "alice:apw"],
        &["role", "add", "r"],
        &["role", "grant-permission", "r", "readwrite", "a", "m"],
        &["user", "grant-role", "alice", "r"],
        &["auth", "enable"],
    ] {
        ctl_ok(addr, args).await;
    }
}

async fn token(channel: Channel, name: &str, password: &str) -> String {
    AuthClient::new(channel)
        .authenticate(AuthenticateRequest {
            name: name.into(),
            password: password.into(),
        })
        .await
        .expect("authenticate")
        .into_inner()
        .token
}

fn with_token<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("token", token.parse().expect("ascii token"));
    request
}

async fn put_as(channel: Channel, token: &str, key: &str) -> Result<(), tonic::Status> {
    let put = PutRequest {
        key: key.as_bytes().to_vec(),
        value: b"v".to_vec(),
        ..Default::default()
    };
    KvClient::new(channel)
        .put(with_token(put, token))
        .await
        .map(|_| ())
}

async fn get_as(channel: Channel, token: &str, key: &str) -> Result<usize, tonic::Status> {
    let range = RangeRequest {
        key: key.as_bytes().to_vec(),
        ..Default::default()
    };
    KvClient::new(channel)
        .range(with_token(range, token))
        .await
        .map(|r| r.into_inner().kvs.len())
}

/// Every member's HashKV at the revision member 0 reports, equal (the
/// hashes need the root role).
async fn same_hashes(cluster: &Cluster, members: &[usize], root: &str) {
    let started = Instant::now();
    loop {
        let mut hashes = Vec::new();
        for &i in members {
            let request = with_token(HashKvRequest { revision: 0 }, root);
            let response = MaintenanceClient::new(cluster.channel(i).await.expect("channel"))
                .hash_kv(request)
                .await
                .expect("hashkv as root")
                .into_inner();
            let revision = response.header.map_or(0, |h| h.revision);
            hashes.push((revision, response.hash));
        }
        if hashes.windows(2).all(|w| w[0] == w[1]) {
            return;
        }
        assert!(started.elapsed() < WAIT, "hashes differ: {hashes:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_holds_on_every_member_through_restarts_and_snapshots() {
    let opts = ClusterOpts {
        snapshot_count: Some(40),
        ..ClusterOpts::default()
    };
    let mut cluster = Cluster::start(Kind::Oxcd, opts)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    cluster.wait_leader(WAIT).await.expect("leader");
    set_up_auth(&cluster.client_addr(0)).await;

    // 1. Tokens from one member work on the others.
    let from_0 = token(cluster.channel(0).await.expect("channel"), "alice", "apw").await;
    let from_2 = token(cluster.channel(2).await.expect("channel"), "alice", "apw").await;
    for i in 0..3 {
        let channel = cluster.channel(i).await.expect("channel");
        for t in [&from_0, &from_2] {
            put_as(channel.clone(), t, &format!("b{i}"))
                .await
                .expect("alice may put b*");
            assert_eq!(
                get_as(channel.clone(), t, &format!("b{i}"))
                    .await
                    .expect("get"),
                1
            );
            let denied = put_as(channel.clone(), t, "zz")
                .await
                .expect_err("zz is outside [a, m)");
            assert_eq!(
                (denied.code(), denied.message()),
                (Code::PermissionDenied, "etcdserver: permission denied")
            );
        }
        let bogus = put_as(channel, "abcdefghijklmnop.99999", "b")
            .await
            .expect_err("unknown token");
        assert_eq!(
            (bogus.code(), bogus.message()),
            (Code::Unauthenticated, "etcdserver: invalid auth token")
        );
    }

    // 2. Past several snapshots, a restart and a new member.
    for n in 0..150 {
        put_as(
            cluster.channel(n % 3).await.expect("channel"),
            &from_0,
            &format!("c{n}"),
        )
        .await
        .expect("put as alice");
    }
    cluster.kill9(2).expect("kill member 2");
    cluster.restart(2).await.expect("restart member 2");
    let addr2 = cluster.client_addr(2);
    let (code, out) = ctl(&addr2, &["get", "c1"]).await;
    assert_ne!(code, 0);
    assert!(out.contains("etcdserver: user name is empty"), "{out}");
    assert_eq!(
        ctl_ok(
            &addr2,
            &["--user", "alice:apw", "get", "c1", "--print-value-only"]
        )
        .await,
        "v\n"
    );
    assert_eq!(
        ctl_ok(&addr2, &["--user", "root:rootpw", "user", "list"]).await,
        "alice\nroot\n"
    );

    let new = cluster.new_member().expect("slot");
    let urls = format!("--peer-urls={}", cluster.peer_url(new));
    let name = cluster.name(new).to_string();
    let (code, out) = ctl(
        &cluster.client_addr(0),
        &["--user", "alice:apw", "member", "add", &name, &urls],
    )
    .await;
    assert_ne!(code, 0, "alice lacks the root role: {out}");
    assert!(out.contains("etcdserver: permission denied"), "{out}");
    let started = Instant::now();
    loop {
        let (code, out) = ctl(
            &cluster.client_addr(0),
            &["--user", "root:rootpw", "member", "add", &name, &urls],
        )
        .await;
        if code == 0 {
            break;
        }
        assert!(
            out.contains("etcdserver: unhealthy cluster") && started.elapsed() < WAIT,
            "member add as root: {out}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    cluster
        .join(new, &[0, 1, 2])
        .await
        .expect("new member joins");
    let root = token(cluster.channel(0).await.expect("channel"), "root", "rootpw").await;
    same_hashes(&cluster, &[0, 1, 2, new], &root).await;
    let addr = cluster.client_addr(new);
    assert_eq!(
        ctl_ok(
            &addr,
            &["--user", "alice:apw", "get", "c7", "--print-value-only"]
        )
        .await,
        "v\n"
    );
    let (code, out) = ctl(&addr, &["--user", "alice:apw", "put", "zz", "1"]).await;
    assert_ne!(code, 0);
    assert!(out.contains("etcdserver: permission denied"), "{out}");
    let (code, out) = ctl(&addr, &["--user", "alice:wrong", "get", "c7"]).await;
    assert_ne!(code, 0);
    assert!(
        out.contains("etcdserver: authentication failed, invalid user ID or password"),
        "{out}"
    );
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

/// `snapshot restore FILE` flags for member 0 of `cluster`.
fn restore_args(cluster: &Cluster, file: &Path, token: &str) -> Vec<String> {
    vec![
        "snapshot".to_string(),
        "restore".to_string(),
        path(file),
        format!("--data-dir={}", path(&cluster.data_dir(0))),
        format!("--name={}", cluster.name(0)),
        format!("--initial-cluster={}", cluster.initial_cluster()),
        format!("--initial-cluster-token={token}"),
        format!("--initial-advertise-peer-urls={}", cluster.peer_url(0)),
    ]
}

/// A one-member server of `kind` with auth set up and a key `b`, its
/// snapshot saved by root into `dir`.
async fn auth_snapshot(kind: Kind, dir: &Path) -> std::path::PathBuf {
    let server = Server::start(kind, ServerOpts::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let addr = server.client_addr();
    set_up_auth(&addr).await;
    ctl_ok(&addr, &["--user", "alice:apw", "put", "b", "from-snapshot"]).await;
    let file = dir.join("auth.db");
    ctl_ok(
        &addr,
        &["--user", "root:rootpw", "snapshot", "save", &path(&file)],
    )
    .await;
    file
}

/// What the restored member `addr` must do: auth on, alice in with her
/// password, the anonymous client refused.
async fn check_restored(addr: &str) {
    assert_eq!(
        ctl_ok(
            addr,
            &["--user", "alice:apw", "get", "b", "--print-value-only"]
        )
        .await,
        "from-snapshot\n"
    );
    let (code, out) = ctl(addr, &["get", "b"]).await;
    assert_ne!(code, 0);
    assert!(out.contains("etcdserver: user name is empty"), "{out}");
    let (code, out) = ctl(addr, &["--user", "alice:apw", "put", "zz", "1"]).await;
    assert_ne!(code, 0);
    assert!(out.contains("etcdserver: permission denied"), "{out}");
    assert_eq!(
        ctl_ok(addr, &["--user", "root:rootpw", "role", "get", "r"]).await,
        "Role r\nKV Read:\n\t[a, m)\nKV Write:\n\t[a, m)\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_carry_auth_between_oxcd_and_etcd() {
    let dir = tempfile::tempdir().expect("temp dir");
    let opts = ClusterOpts {
        size: 1,
        ..ClusterOpts::default()
    };
    let token = opts.cluster_token.clone();

    // oxcd -> etcd, restored by etcdctl.
    let oxcd_dir = dir.path().join("from-oxcd");
    std::fs::create_dir_all(&oxcd_dir).expect("dir");
    let file = auth_snapshot(Kind::Oxcd, &oxcd_dir).await;
    let mut etcd = Cluster::prepare(Kind::Etcd, opts.clone()).expect("etcd dirs");
    let args = restore_args(&etcd, &file, &token);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, out) = ctl("127.0.0.1:1", &args).await;
    assert_eq!(code, 0, "{out}");
    etcd.launch().await.unwrap_or_else(|e| panic!("{e}"));
    check_restored(&etcd.client_addr(0)).await;

    // etcd -> oxcd, restored by oxcdctl.
    let etcd_dir = dir.path().join("from-etcd");
    std::fs::create_dir_all(&etcd_dir).expect("dir");
    let file = auth_snapshot(Kind::Etcd, &etcd_dir).await;
    let mut oxcd = Cluster::prepare(Kind::Oxcd, opts).expect("oxcd dirs");
    let args = restore_args(&oxcd, &file, &token);
    let restored = std::process::Command::new(oxcdctl_binary().expect("oxcdctl"))
        .args(&args)
        .output()
        .expect("run oxcdctl");
    assert!(restored.status.success(), "{restored:?}");
    oxcd.launch().await.unwrap_or_else(|e| panic!("{e}"));
    check_restored(&oxcd.client_addr(0)).await;
}
