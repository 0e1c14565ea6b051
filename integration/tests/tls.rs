//! TLS on the client port, next to etcd 3.4 with the same certificates:
//!
//! 1. The test makes its own CA, a server certificate (127.0.0.1 and
//!    localhost), a client certificate, a client certificate from another
//!    CA, and an expired client certificate (`rcgen`).
//! 2. etcd and oxcd start with an `https://` client URL, `--cert-file`,
//!    `--key-file`, `--trusted-ca-file` and `--client-cert-auth`.
//! 3. Against each: a good client (etcdctl `--cacert/--cert/--key`) puts and
//!    gets; a client without a certificate, with one from another CA, with
//!    an expired one, one that does not trust the server's CA, and plain
//!    HTTP are all refused; the good client still works after them; and
//!    `/health` answers over HTTPS. Both servers must agree on every case.
//! 4. Reload: the server's certificate and key files are replaced by ones
//!    from the other CA; the next connection is served with them (a client
//!    trusting only the first CA is refused, one trusting the other is
//!    served), without a restart.
//! 5. Peer TLS: a three-member oxcd cluster on `https://` peer URLs with
//!    `--peer-client-cert-auth`, its third member holding a peer
//!    certificate from another CA: the other two replicate over TLS, the
//!    third is shut out, and catches up once its certificate files are
//!    replaced by good ones on disk, without a restart (both its server and
//!    its dialling transport read them again).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use integration::Kind;
use integration::certs::{CLIENT, Ca, SERVER};
use integration::etcdctl::run_etcdctl;

/// Bound on one etcdctl call.
const CTL: Duration = Duration::from_secs(15);
/// Bound on a server becoming ready.
const READY: Duration = Duration::from_secs(30);

/// A leaf certificate signed by `ca` (see [`Ca::leaf`]), as path strings.
fn leaf(
    dir: &Path,
    name: &str,
    ca: &Ca,
    usages: &[rcgen::ExtendedKeyUsagePurpose],
    expired: bool,
) -> (String, String) {
    let (cert, key) = ca.leaf(dir, name, usages, expired);
    (path(&cert), path(&key))
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

/// Every file the test uses.
struct Certs {
    ca: String,
    other_ca: String,
    server: (String, String),
    /// The same server names, signed by the other CA (for the reload).
    other_server: (String, String),
    client: (String, String),
    other_client: (String, String),
    expired_client: (String, String),
}

fn certs(dir: &Path) -> Certs {
    let (first, second) = (Ca::new("oxcd test CA"), Ca::new("oxcd other CA"));
    let ca_path = dir.join("ca.pem");
    let other_ca_path = dir.join("other-ca.pem");
    std::fs::write(&ca_path, first.cert.pem()).expect("write ca");
    std::fs::write(&other_ca_path, second.cert.pem()).expect("write other ca");
    Certs {
        ca: path(&ca_path),
        other_ca: path(&other_ca_path),
        server: leaf(dir, "server", &first, &[SERVER], false),
        other_server: leaf(dir, "other-server", &second, &[SERVER], false),
        client: leaf(dir, "client", &first, &[CLIENT], false),
        other_client: leaf(dir, "other-client", &second, &[CLIENT], false),
        expired_client: leaf(dir, "expired-client", &first, &[CLIENT], true),
    }
}

/// A server started with TLS on its client port; killed (by PID, through
/// `kill_on_drop`) when dropped.
struct TlsServer {
    kind: Kind,
    _child: tokio::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
    /// The server certificate and key paths it was started with.
    cert: PathBuf,
    key: PathBuf,
}

impl TlsServer {
    async fn start(kind: Kind, certs: &Certs) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        // Its own copies of the server files, so the reload step can replace
        // them for one server at a time.
        let cert = dir.path().join("server.pem");
        let key = dir.path().join("server-key.pem");
        std::fs::copy(&certs.server.0, &cert).expect("copy cert");
        std::fs::copy(&certs.server.1, &key).expect("copy key");
        let (client, peer) = {
            let a = TcpListener::bind("127.0.0.1:0").expect("bind");
            let b = TcpListener::bind("127.0.0.1:0").expect("bind");
            (
                a.local_addr().expect("addr").port(),
                b.local_addr().expect("addr").port(),
            )
        };
        let child = tokio::process::Command::new(kind.binary().expect("binary"))
            .args([
                "--name=tls".to_string(),
                format!("--data-dir={}", dir.path().join("data").display()),
                format!("--listen-client-urls=https://127.0.0.1:{client}"),
                format!("--advertise-client-urls=https://127.0.0.1:{client}"),
                format!("--listen-peer-urls=http://127.0.0.1:{peer}"),
                format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer}"),
                format!("--initial-cluster=tls=http://127.0.0.1:{peer}"),
                format!("--cert-file={}", cert.display()),
                format!("--key-file={}", key.display()),
                format!("--trusted-ca-file={}", certs.ca),
                "--client-cert-auth".to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn");
        let server = Self {
            kind,
            _child: child,
            port: client,
            _dir: dir,
            cert,
            key,
        };
        let started = Instant::now();
        loop {
            let out = server
                .ctl(&certs.ca, Some(&certs.client), &["endpoint", "health"])
                .await;
            if out.is_ok() {
                return server;
            }
            assert!(
                started.elapsed() < READY,
                "{} with TLS not healthy within {READY:?}: {out:?}",
                kind.name()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn endpoint(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// etcdctl over TLS trusting `ca`, with `client` (cert, key) if any:
    /// `Ok(stdout)` on success, `Err(stderr)` on failure.
    async fn ctl(
        &self,
        ca: &str,
        client: Option<&(String, String)>,
        args: &[&str],
    ) -> Result<String, String> {
        let mut all = vec![
            format!("--cacert={ca}"),
            "--dial-timeout=2s".to_string(),
            "--command-timeout=3s".to_string(),
        ];
        if let Some((cert, key)) = client {
            all.push(format!("--cert={cert}"));
            all.push(format!("--key={key}"));
        }
        all.extend(args.iter().map(|a| a.to_string()));
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        let out = run_etcdctl(&self.endpoint(), &refs, None, CTL)
            .await
            .expect("etcdctl ran");
        if out.code == 0 {
            Ok(out.stdout)
        } else {
            Err(out.stderr)
        }
    }
}

/// What one server did in each case: `true` when the request was served.
async fn cases(server: &TlsServer, certs: &Certs) -> Vec<(&'static str, bool)> {
    let mut seen = Vec::new();
    let good = server
        .ctl(&certs.ca, Some(&certs.client), &["put", "k", "v"])
        .await;
    seen.push(("good client put", good.is_ok()));
    let read = server
        .ctl(
            &certs.ca,
            Some(&certs.client),
            &["get", "k", "--print-value-only"],
        )
        .await;
    seen.push(("good client get", read.as_deref().map(str::trim) == Ok("v")));
    let refused = [
        (
            "no client certificate",
            server.ctl(&certs.ca, None, &["get", "k"]).await,
        ),
        (
            "client certificate from another CA",
            server
                .ctl(&certs.ca, Some(&certs.other_client), &["get", "k"])
                .await,
        ),
        (
            "expired client certificate",
            server
                .ctl(&certs.ca, Some(&certs.expired_client), &["get", "k"])
                .await,
        ),
        (
            "client that does not trust the server's CA",
            server
                .ctl(&certs.other_ca, Some(&certs.client), &["get", "k"])
                .await,
        ),
    ];
    for (what, out) in refused {
        seen.push((what, out.is_ok()));
    }
    let plain = run_etcdctl(
        &format!("http://127.0.0.1:{}", server.port),
        &["--dial-timeout=2s", "--command-timeout=3s", "get", "k"],
        None,
        CTL,
    )
    .await
    .expect("etcdctl ran");
    seen.push(("plain HTTP", plain.code == 0));
    let again = server
        .ctl(
            &certs.ca,
            Some(&certs.client),
            &["get", "k", "--print-value-only"],
        )
        .await;
    seen.push((
        "good client after the refusals",
        again.as_deref().map(str::trim) == Ok("v"),
    ));
    let health = curl_health(server, certs).await;
    seen.push((
        "/health over HTTPS",
        health.contains(r#"{"health":"true"}"#),
    ));
    seen
}

/// `/health` over HTTPS with the good client certificate (curl).
async fn curl_health(server: &TlsServer, certs: &Certs) -> String {
    let out = tokio::time::timeout(
        CTL,
        tokio::process::Command::new("curl")
            .args([
                "-s",
                "--max-time",
                "5",
                "--cacert",
                &certs.ca,
                "--cert",
                &certs.client.0,
                "--key",
                &certs.client.1,
                &format!("{}/health", server.endpoint()),
            ])
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("curl finished")
    .expect("curl ran");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_tls_serves_good_clients_and_refuses_bad_ones_as_etcd_does() {
    let dir = tempfile::tempdir().expect("temp dir");
    let certs = certs(dir.path());
    let etcd = TlsServer::start(Kind::Etcd, &certs).await;
    let oxcd = TlsServer::start(Kind::Oxcd, &certs).await;
    let expected = cases(&etcd, &certs).await;
    let actual = cases(&oxcd, &certs).await;
    println!("etcd: {expected:?}\noxcd: {actual:?}");
    let served: Vec<&str> = expected
        .iter()
        .filter(|(_, ok)| *ok)
        .map(|(what, _)| *what)
        .collect();
    assert_eq!(
        served,
        vec![
            "good client put",
            "good client get",
            "good client after the refusals",
            "/health over HTTPS"
        ],
        "etcd, the reference, serves exactly the good cases"
    );
    assert_eq!(actual, expected, "oxcd answers every case as etcd does");

    // Reload: new server files from the other CA, no restart.
    for server in [&etcd, &oxcd] {
        // Write beside, then rename over: a reader never sees half a file.
        let (cert_tmp, key_tmp) = (
            server.cert.with_extension("new"),
            server.key.with_extension("new"),
        );
        std::fs::copy(&certs.other_server.0, &cert_tmp).expect("copy cert");
        std::fs::copy(&certs.other_server.1, &key_tmp).expect("copy key");
        std::fs::rename(&key_tmp, &server.key).expect("replace key");
        std::fs::rename(&cert_tmp, &server.cert).expect("replace cert");
    }
    for server in [&etcd, &oxcd] {
        let name = server.kind.name();
        let old_trust = server
            .ctl(&certs.ca, Some(&certs.client), &["get", "k"])
            .await;
        assert!(
            old_trust.is_err(),
            "{name}: still served with the old server certificate"
        );
        let new_trust = server
            .ctl(
                &certs.other_ca,
                Some(&certs.client),
                &["get", "k", "--print-value-only"],
            )
            .await;
        assert_eq!(
            new_trust.as_deref().map(str::trim),
            Ok("v"),
            "{name}: the new server certificate is served"
        );
    }
}

/// One member of the peer-TLS cluster: plain client port, https peer port.
struct PeerMember {
    child: Option<tokio::process::Child>,
    client: u16,
}

/// Starts member `i` of `names` with the peer files `peer` (cert, key).
fn start_member(
    data: &Path,
    names: &[&str],
    ports: &[(u16, u16)],
    i: usize,
    peer: &(String, String),
    ca: &str,
) -> tokio::process::Child {
    let cluster: Vec<String> = names
        .iter()
        .zip(ports)
        .map(|(n, (_, p))| format!("{n}=https://127.0.0.1:{p}"))
        .collect();
    let (client, peer_port) = ports[i];
    tokio::process::Command::new(Kind::Oxcd.binary().expect("binary"))
        .args([
            format!("--name={}", names[i]),
            format!("--data-dir={}", data.join(names[i]).display()),
            format!("--listen-client-urls=http://127.0.0.1:{client}"),
            format!("--advertise-client-urls=http://127.0.0.1:{client}"),
            format!("--listen-peer-urls=https://127.0.0.1:{peer_port}"),
            format!("--initial-advertise-peer-urls=https://127.0.0.1:{peer_port}"),
            format!("--initial-cluster={}", cluster.join(",")),
            "--initial-cluster-token=peer-tls".to_string(),
            format!("--peer-cert-file={}", peer.0),
            format!("--peer-key-file={}", peer.1),
            format!("--peer-trusted-ca-file={ca}"),
            "--peer-client-cert-auth".to_string(),
        ])
        .stdout(
            std::fs::File::create(data.with_file_name(format!("{}.log", names[i])))
                .map(Stdio::from)
                .unwrap_or_else(|_| Stdio::null()),
        )
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn member")
}

/// A serializable read of `key` on the member at `client` (None: absent or
/// unreachable).
async fn local_value(client: u16, key: &str) -> Option<String> {
    let out = run_etcdctl(
        &format!("127.0.0.1:{client}"),
        &[
            "--dial-timeout=2s",
            "--command-timeout=3s",
            "get",
            key,
            "--consistency=s",
            "--print-value-only",
        ],
        None,
        CTL,
    )
    .await
    .ok()?;
    let value = out.stdout.trim().to_string();
    (out.code == 0 && !value.is_empty()).then_some(value)
}

/// Polls `member` until it holds `key` = `value` (bounded).
async fn wait_value(client: u16, key: &str, value: &str, what: &str) {
    let started = Instant::now();
    while local_value(client, key).await.as_deref() != Some(value) {
        assert!(
            started.elapsed() < READY,
            "{what}: {key} not replicated within {READY:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Peer TLS: members `a` and `b` hold peer certificates from the cluster's
/// CA, `c` one from another CA. `a` and `b` form a quorum over TLS and
/// replicate; `c` is shut out both ways (its client certificate is refused,
/// and it is refused as a server). Once its files hold a good certificate,
/// `c` catches up without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_tls_carries_the_cluster_and_shuts_out_a_foreign_member() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (first, second) = (Ca::new("oxcd peer CA"), Ca::new("oxcd foreign CA"));
    let ca_path = dir.path().join("peer-ca.pem");
    std::fs::write(&ca_path, first.cert.pem()).expect("write ca");
    let ca_path = path(&ca_path);
    // A peer certificate is used both ways: as a server and as a client.
    let good = leaf(dir.path(), "peer", &first, &[SERVER, CLIENT], false);
    let foreign = leaf(
        dir.path(),
        "foreign-peer",
        &second,
        &[SERVER, CLIENT],
        false,
    );
    let names = ["a", "b", "c"];
    let listeners: Vec<TcpListener> = (0..6)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind"))
        .collect();
    let port = |i: usize| listeners[i].local_addr().expect("addr").port();
    let ports: Vec<(u16, u16)> = (0..3).map(|i| (port(i), port(i + 3))).collect();
    drop(listeners);
    let data = dir.path().join("data");
    let members: Vec<PeerMember> = (0..3)
        .map(|i| {
            let peer = if i == 2 { &foreign } else { &good };
            PeerMember {
                child: Some(start_member(&data, &names, &ports, i, peer, &ca_path)),
                client: ports[i].0,
            }
        })
        .collect();
    // a and b elect a leader between them and serve a linearizable put.
    let started = Instant::now();
    loop {
        let put = run_etcdctl(
            &format!("127.0.0.1:{}", members[0].client),
            &[
                "--dial-timeout=2s",
                "--command-timeout=3s",
                "put",
                "k",
                "over-tls",
            ],
            None,
            CTL,
        )
        .await
        .expect("etcdctl ran");
        if put.code == 0 {
            break;
        }
        assert!(
            started.elapsed() < READY,
            "no write through a and b over peer TLS within {READY:?}: {}\na's log:\n{}",
            put.stderr,
            std::fs::read_to_string(dir.path().join("a.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    wait_value(members[1].client, "k", "over-tls", "b").await;
    assert_eq!(
        local_value(members[2].client, "k").await,
        None,
        "c holds a foreign certificate and must not be replicated to"
    );
    // c's certificate files replaced on disk by good ones, no restart: its
    // server serves the new ones at the next handshake, its transport dials
    // with them at the next connect, and it catches up.
    for (from, to) in [(&good.0, &foreign.0), (&good.1, &foreign.1)] {
        let tmp = format!("{to}.new");
        std::fs::copy(from, &tmp).expect("copy");
        std::fs::rename(&tmp, to).expect("replace");
    }
    wait_value(
        members[2].client,
        "k",
        "over-tls",
        "c once its certificate files hold good ones",
    )
    .await;
    assert!(members[2].child.is_some(), "c was not restarted");
}

/// One member of the all-TLS cluster of the membership test.
struct AllTls {
    name: &'static str,
    client: u16,
    peer: u16,
    child: Option<tokio::process::Child>,
}

/// Starts `m` with TLS and client-certificate auth on both ports, its
/// `--initial-cluster` naming `cluster` (`existing` unless it is alone).
fn start_all_tls(
    data: &Path,
    m: &AllTls,
    cluster: &[&AllTls],
    server: &(String, String),
    peer: &(String, String),
    ca: &str,
) -> tokio::process::Child {
    let spec: Vec<String> = cluster
        .iter()
        .map(|c| format!("{}=https://127.0.0.1:{}", c.name, c.peer))
        .collect();
    let state = if cluster.len() == 1 {
        "new"
    } else {
        "existing"
    };
    tokio::process::Command::new(Kind::Oxcd.binary().expect("binary"))
        .args([
            format!("--name={}", m.name),
            format!("--data-dir={}", data.join(m.name).display()),
            format!("--listen-client-urls=https://127.0.0.1:{}", m.client),
            format!("--advertise-client-urls=https://127.0.0.1:{}", m.client),
            format!("--listen-peer-urls=https://127.0.0.1:{}", m.peer),
            format!("--initial-advertise-peer-urls=https://127.0.0.1:{}", m.peer),
            format!("--initial-cluster={}", spec.join(",")),
            format!("--initial-cluster-state={state}"),
            format!("--cert-file={}", server.0),
            format!("--key-file={}", server.1),
            format!("--trusted-ca-file={ca}"),
            "--client-cert-auth".to_string(),
            format!("--peer-cert-file={}", peer.0),
            format!("--peer-key-file={}", peer.1),
            format!("--peer-trusted-ca-file={ca}"),
            "--peer-client-cert-auth".to_string(),
        ])
        .stdout(
            std::fs::File::create(data.with_file_name(format!("{}.log", m.name)))
                .map(Stdio::from)
                .unwrap_or_else(|_| Stdio::null()),
        )
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn member")
}

/// Membership over certificates: a one-member cluster with TLS and client
/// certificate auth on both ports grows by a voter and a learner (joining
/// over https peer URLs, fetching the member list over TLS), promotes the
/// learner, reports `endpoint status --cluster` and `endpoint hashkv
/// --cluster` through etcdctl's `--cacert/--cert/--key`, and removes a
/// member, which stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_changes_over_tls_on_both_ports() {
    let dir = tempfile::tempdir().expect("temp dir");
    let authority = Ca::new("oxcd cluster CA");
    let ca_path = dir.path().join("ca.pem");
    std::fs::write(&ca_path, authority.cert.pem()).expect("write ca");
    let ca_path = path(&ca_path);
    let server = leaf(dir.path(), "server", &authority, &[SERVER], false);
    let client = leaf(dir.path(), "client", &authority, &[CLIENT], false);
    let peer = leaf(dir.path(), "peer", &authority, &[SERVER, CLIENT], false);
    let listeners: Vec<TcpListener> = (0..6)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind"))
        .collect();
    let port = |i: usize| listeners[i].local_addr().expect("addr").port();
    let mut m: Vec<AllTls> = ["a", "b", "c"]
        .iter()
        .enumerate()
        .map(|(i, name)| AllTls {
            name,
            client: port(2 * i),
            peer: port(2 * i + 1),
            child: None,
        })
        .collect();
    drop(listeners);
    let data = dir.path().join("data");
    let tls_ctl = |client_port: u16, args: Vec<String>| {
        let mut full = vec![
            format!("--cacert={ca_path}"),
            format!("--cert={}", client.0),
            format!("--key={}", client.1),
            "--dial-timeout=2s".to_string(),
            "--command-timeout=5s".to_string(),
        ];
        full.extend(args);
        async move {
            let args: Vec<&str> = full.iter().map(String::as_str).collect();
            let out = run_etcdctl(&format!("127.0.0.1:{client_port}"), &args, None, CTL)
                .await
                .expect("etcdctl ran");
            (out.code, format!("{}{}", out.stdout, out.stderr))
        }
    };
    // Retries (bounded) while the answer is transient: no leader yet, or
    // etcd's "unhealthy cluster" (a peer connected less than 5 s ago).
    let until_ok = |client_port: u16, args: Vec<String>| {
        let tls_ctl = &tls_ctl;
        async move {
            let started = Instant::now();
            loop {
                let (code, out) = tls_ctl(client_port, args.clone()).await;
                if code == 0 {
                    return out;
                }
                assert!(
                    started.elapsed() < READY,
                    "etcdctl {args:?} kept failing: {out}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    let s = |v: &[&str]| v.iter().map(|a| a.to_string()).collect::<Vec<_>>();

    m[0].child = Some(start_all_tls(
        &data,
        &m[0],
        &[&m[0]],
        &server,
        &peer,
        &ca_path,
    ));
    until_ok(m[0].client, s(&["put", "k", "v"])).await;

    // A voter joins over TLS.
    let b_url = format!("--peer-urls=https://127.0.0.1:{}", m[1].peer);
    let added = until_ok(m[0].client, s(&["member", "add", "b", &b_url])).await;
    assert!(
        added.contains("ETCD_INITIAL_CLUSTER_STATE=\"existing\""),
        "{added}"
    );
    m[1].child = Some(start_all_tls(
        &data,
        &m[1],
        &[&m[0], &m[1]],
        &server,
        &peer,
        &ca_path,
    ));
    // b serves before its snapshot arrives: wait (bounded) for the key.
    let started = Instant::now();
    loop {
        let got = until_ok(
            m[1].client,
            s(&["get", "k", "--consistency=s", "--print-value-only"]),
        )
        .await;
        if got.trim() == "v" {
            break;
        }
        assert!(started.elapsed() < READY, "b never got k: {got:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A learner joins, then is promoted once in sync.
    let c_url = format!("--peer-urls=https://127.0.0.1:{}", m[2].peer);
    let added = until_ok(m[0].client, s(&["member", "add", "c", &c_url, "--learner"])).await;
    let c_id = added
        .split_whitespace()
        .nth(1)
        .expect("member id")
        .to_string();
    m[2].child = Some(start_all_tls(
        &data,
        &m[2],
        &[&m[0], &m[1], &m[2]],
        &server,
        &peer,
        &ca_path,
    ));
    let promoted = until_ok(m[1].client, s(&["member", "promote", &c_id])).await;
    assert!(promoted.contains("promoted in cluster"), "{promoted}");
    let list = until_ok(m[0].client, s(&["member", "list"])).await;
    assert_eq!(list.lines().count(), 3, "{list}");
    assert!(
        list.lines()
            .all(|l| l.contains(", started, ") && l.ends_with("false")),
        "{list}"
    );

    // The cluster views, through every member's https client URL.
    let status = until_ok(m[0].client, s(&["endpoint", "status", "--cluster"])).await;
    assert_eq!(status.lines().count(), 3, "{status}");
    let hashes = until_ok(m[0].client, s(&["endpoint", "hashkv", "--cluster"])).await;
    let values: Vec<&str> = hashes
        .lines()
        .filter_map(|l| l.split(", ").nth(1))
        .collect();
    assert_eq!(values.len(), 3, "{hashes}");
    assert!(values.windows(2).all(|w| w[0] == w[1]), "{hashes}");

    // Removing the learner-turned-voter stops it.
    let removed = until_ok(m[0].client, s(&["member", "remove", &c_id])).await;
    assert!(removed.contains("removed from cluster"), "{removed}");
    let child = m[2].child.as_mut().expect("c runs");
    let exit = tokio::time::timeout(READY, child.wait())
        .await
        .expect("c stops once removed")
        .expect("wait");
    assert_eq!(exit.code(), Some(0));
    let got = until_ok(m[1].client, s(&["get", "k", "--print-value-only"])).await;
    assert_eq!(got.trim(), "v");
}
