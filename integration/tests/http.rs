//! The HTTP endpoints on the client port, against etcd 3.4 as reference:
//!
//! 1. `/health` answers as etcd does (status code and JSON body): healthy on
//!    a fresh member, unhealthy on a member cut off from its cluster's
//!    quorum (a three-member cluster with two members killed), and unhealthy
//!    while an alarm is raised (unless `?exclude=` names it: the same bytes
//!    as etcd's), healthy again once it is disarmed.
//! 2. `/version` is a JSON object with exactly etcd's fields, `etcdserver`
//!    (a 3.4 version) and `etcdcluster` (the same as etcd's).
//! 3. `/metrics` is Prometheus text holding the etcd metric names the README
//!    lists, each of the same type as etcd's, and oxcd's per-actor series
//!    (`oxcd_actor_messages_total`, `_handle_seconds`, `_mailbox_depth`).
//!    The values mean something: `etcd_server_has_leader` is 1, the WAL
//!    fsync and backend commit histograms count the puts that follow, and
//!    `etcd_mvcc_db_total_size_in_bytes` equals `Status.dbSize`. The same
//!    checks run against etcd, which validates them.
//!
//! Requests are plain HTTP/1.1 over a TCP stream (`Connection: close`), so
//! the test needs no HTTP client crate.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use integration::cluster::{Cluster, ClusterOpts};
use integration::{Kind, Server, ServerOpts};
use proto::etcdserverpb::alarm_request::AlarmAction;
use proto::etcdserverpb::{AlarmRequest, AlarmType, PutRequest, StatusRequest};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Bound on one HTTP exchange.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on waiting for a condition (a metric to move, a leader to go).
const WAIT: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(50);

/// The etcd metrics the README promises, with etcd's type for each.
const ETCD_METRICS: [&str; 6] = [
    "etcd_server_has_leader",
    "etcd_server_leader_changes_seen_total",
    "etcd_disk_wal_fsync_duration_seconds",
    "etcd_disk_backend_commit_duration_seconds",
    "etcd_mvcc_db_total_size_in_bytes",
    "process_resident_memory_bytes",
];

/// One HTTP response.
#[derive(Debug)]
struct Reply {
    status: u16,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.body))
    }
}

/// `GET path` on `addr` (`host:port`), HTTP/1.1, one connection.
async fn get(addr: &str, path: &str) -> Reply {
    send(addr, "GET", path).await
}

/// `method path` with an empty JSON body on `addr`, HTTP/1.1, one connection.
async fn send(addr: &str, method: &str, path: &str) -> Reply {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        let body = if method == "GET" { "" } else { "{}" };
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).await?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await?;
        Ok::<_, std::io::Error>(raw)
    };
    let raw = tokio::time::timeout(HTTP_TIMEOUT, exchange)
        .await
        .unwrap_or_else(|_| panic!("{method} {path} on {addr}: no answer within {HTTP_TIMEOUT:?}"))
        .unwrap_or_else(|e| panic!("{method} {path} on {addr}: {e}"));
    parse_reply(&raw).unwrap_or_else(|| {
        panic!(
            "{method} {path} on {addr}: not an HTTP response: {:?}",
            String::from_utf8_lossy(&raw)
        )
    })
}

/// Splits a raw HTTP/1.1 response into status and body (de-chunked).
fn parse_reply(raw: &[u8]) -> Option<Reply> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let chunked = lines.any(|l| {
        l.to_ascii_lowercase()
            .replace(' ', "")
            .starts_with("transfer-encoding:chunked")
    });
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_string()
    };
    Some(Reply { status, body })
}

/// Decodes a `Transfer-Encoding: chunked` body.
fn dechunk(mut rest: &str) -> Option<String> {
    let mut body = String::new();
    loop {
        let (size, after) = rest.split_once("\r\n")?;
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        if size == 0 {
            return Some(body);
        }
        body.push_str(after.get(..size)?);
        rest = after.get(size..)?.strip_prefix("\r\n")?;
    }
}

/// A scrape of `/metrics`: sample values by series (`name{labels}` as
/// printed) and the declared `# TYPE` of each metric family.
struct Scrape {
    samples: BTreeMap<String, f64>,
    types: BTreeMap<String, String>,
}

impl Scrape {
    fn parse(text: &str) -> Scrape {
        let mut samples = BTreeMap::new();
        let mut types = BTreeMap::new();
        for line in text.lines() {
            if let Some(decl) = line.strip_prefix("# TYPE ") {
                if let Some((name, kind)) = decl.split_once(' ') {
                    types.insert(name.to_string(), kind.to_string());
                }
            } else if !line.starts_with('#')
                && let Some((series, value)) = line.rsplit_once(' ')
                && let Ok(value) = value.parse::<f64>()
            {
                samples.insert(series.to_string(), value);
            }
        }
        Scrape { samples, types }
    }

    /// The value of `series`, failing the test if it is absent.
    fn value(&self, kind: Kind, series: &str) -> f64 {
        *self.samples.get(series).unwrap_or_else(|| {
            panic!(
                "{}: no series {series} in /metrics; series of that family: {:?}",
                kind.name(),
                self.family(series.split('{').next().unwrap_or(series))
            )
        })
    }

    fn family(&self, name: &str) -> Vec<&String> {
        self.samples
            .keys()
            .filter(|s| s.starts_with(name))
            .collect()
    }
}

async fn scrape(kind: Kind, addr: &str) -> Scrape {
    let reply = get(addr, "/metrics").await;
    assert_eq!(reply.status, 200, "{}: /metrics: {reply:?}", kind.name());
    Scrape::parse(&reply.body)
}

/// Scrapes until `ready` holds for a scrape, for at most [`WAIT`].
async fn scrape_until(
    kind: Kind,
    addr: &str,
    what: &str,
    mut ready: impl FnMut(&Scrape) -> bool,
) -> Scrape {
    let started = Instant::now();
    loop {
        let scrape = scrape(kind, addr).await;
        if ready(&scrape) {
            return scrape;
        }
        assert!(
            started.elapsed() < WAIT,
            "{}: {what} not seen in /metrics within {WAIT:?}",
            kind.name()
        );
        tokio::time::sleep(POLL).await;
    }
}

/// The status code and JSON body of `/health`.
async fn health(addr: &str) -> (u16, Value) {
    let reply = get(addr, "/health").await;
    (reply.status, reply.json())
}

async fn set_nospace(server: &Server, action: AlarmAction) {
    let mut maintenance = server.maintenance().await.expect("maintenance client");
    let member_id = maintenance
        .status(StatusRequest {})
        .await
        .expect("status")
        .into_inner()
        .header
        .expect("header")
        .member_id;
    maintenance
        .alarm(AlarmRequest {
            action: action as i32,
            member_id,
            alarm: AlarmType::Nospace as i32,
        })
        .await
        .expect("alarm");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_version_answer_as_etcd_does() {
    let (reference, candidate) = Server::start_pair(ServerOpts::default()).await;
    let (etcd, oxcd) = (reference.client_addr(), candidate.client_addr());

    // 1. /health on a fresh member.
    let healthy = (200, serde_json::json!({"health": "true"}));
    assert_eq!(health(&etcd).await, healthy, "etcd, fresh");
    assert_eq!(health(&oxcd).await, healthy, "oxcd, fresh");

    // 2. /version.
    let (expected, actual) = (get(&etcd, "/version").await, get(&oxcd, "/version").await);
    assert_eq!(actual.status, 200, "{actual:?}");
    let (expected, actual) = (expected.json(), actual.json());
    let fields = |v: &Value| -> Vec<String> {
        let object = v
            .as_object()
            .unwrap_or_else(|| panic!("not an object: {v}"));
        object.keys().cloned().collect()
    };
    assert_eq!(
        fields(&actual),
        fields(&expected),
        "oxcd {actual}, etcd {expected}"
    );
    assert_eq!(actual["etcdcluster"], expected["etcdcluster"]);
    let server = actual["etcdserver"].as_str().unwrap_or_default();
    assert!(server.starts_with("3.4."), "etcdserver {server:?}");
    println!("/version: oxcd {actual}, etcd {expected}");
}

/// A path neither serves gets Go's `404 page not found` from both; an
/// unknown path under the JSON gateway's `/v3/` gets grpc-gateway's `404
/// Not Found` from both (the gateway itself is `tests/gateway.rs`'s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_paths_get_404_as_in_etcd() {
    let (reference, candidate) = Server::start_pair(ServerOpts::default()).await;
    let (etcd, oxcd) = (reference.client_addr(), candidate.client_addr());
    for (method, path) in [
        ("GET", "/nonexistent"),
        ("POST", "/no/such/path"),
        ("GET", "/"),
    ] {
        let (expected, actual) = (
            send(&etcd, method, path).await,
            send(&oxcd, method, path).await,
        );
        assert_eq!(expected.status, 404, "etcd {method} {path}: {expected:?}");
        assert_eq!(
            (actual.status, actual.body.as_str()),
            (expected.status, expected.body.as_str()),
            "{method} {path}"
        );
    }
    let (expected, actual) = (
        send(&etcd, "POST", "/v3beta/no/such/rpc").await,
        send(&oxcd, "POST", "/v3beta/no/such/rpc").await,
    );
    assert_eq!(expected.status, 404, "etcd: {expected:?}");
    assert_eq!(
        (actual.status, actual.body.as_str()),
        (expected.status, expected.body.as_str()),
        "an unknown gateway path"
    );
    let health = get(&oxcd, "/health").await;
    assert_eq!(health.status, 200, "served paths still answer: {health:?}");
}

/// etcd 3.4's `/health` is false while any alarm is raised
/// (`etcdhttp/metrics.go` `checkHealth`: "/health error due to
/// memberID:... alarm:NOSPACE"); so is oxcd's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_false_while_an_alarm_is_raised() {
    let (reference, candidate) = Server::start_pair(ServerOpts::default()).await;
    let (etcd, oxcd) = (reference.client_addr(), candidate.client_addr());
    set_nospace(&reference, AlarmAction::Activate).await;
    set_nospace(&candidate, AlarmAction::Activate).await;
    let expected = health(&etcd).await;
    assert_ne!(expected.0, 200, "etcd is unhealthy while alarmed");
    assert_eq!(
        health(&oxcd).await,
        expected,
        "/health while NOSPACE is raised"
    );
    // `?exclude=` leaves the named alarms out (etcd 3.4); the answers are
    // compared byte for byte.
    for (path, healthy) in [
        ("/health", false),
        ("/health?exclude=NOSPACE", true),
        ("/health?exclude=CORRUPT", false),
        ("/health?exclude=CORRUPT&exclude=NOSPACE", true),
    ] {
        let (expected, actual) = (get(&etcd, path).await, get(&oxcd, path).await);
        assert_eq!(expected.status == 200, healthy, "etcd {path}: {expected:?}");
        assert_eq!(
            (actual.status, actual.body.as_str()),
            (expected.status, expected.body.as_str()),
            "{path} while NOSPACE is raised"
        );
    }
    set_nospace(&reference, AlarmAction::Deactivate).await;
    set_nospace(&candidate, AlarmAction::Deactivate).await;
    let healthy = (200, serde_json::json!({"health": "true"}));
    assert_eq!(health(&etcd).await, healthy, "etcd, disarmed");
    assert_eq!(health(&oxcd).await, healthy, "oxcd, disarmed");
}

/// Kills the leader and one follower of a fresh three-member cluster and
/// returns the survivor's `/health` once it stops answering 200.
async fn health_without_quorum(kind: Kind) -> (u16, Value) {
    let mut cluster = Cluster::start(kind, ClusterOpts::default())
        .await
        .unwrap_or_else(|e| panic!("start {} cluster: {e}", kind.name()));
    let leader = cluster.wait_leader(WAIT).await.expect("a leader");
    let followers: Vec<usize> = (0..cluster.size()).filter(|&i| i != leader).collect();
    let survivor = cluster.client_addr(followers[1]);
    assert_eq!(
        health(&survivor).await.0,
        200,
        "{} with quorum",
        kind.name()
    );
    cluster.kill9(leader).expect("kill leader");
    cluster.kill9(followers[0]).expect("kill follower");
    let started = Instant::now();
    loop {
        let answer = health(&survivor).await;
        if answer.0 != 200 {
            println!(
                "{}: /health {answer:?} after {:?} without quorum",
                kind.name(),
                started.elapsed()
            );
            return answer;
        }
        assert!(
            started.elapsed() < WAIT,
            "{}: survivor still healthy {WAIT:?} after losing quorum",
            kind.name()
        );
        tokio::time::sleep(POLL).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_false_without_quorum_as_in_etcd() {
    let expected = health_without_quorum(Kind::Etcd).await;
    let actual = health_without_quorum(Kind::Oxcd).await;
    assert_eq!(actual, expected);
}

/// The checks of step 3 against one server; returns its `# TYPE` lines.
async fn check_metrics(kind: Kind) -> BTreeMap<String, String> {
    const PUTS: usize = 20;
    let server = Server::start(kind, ServerOpts::default())
        .await
        .unwrap_or_else(|e| panic!("start {}: {e}", kind.name()));
    let addr = server.client_addr();
    let fsyncs = "etcd_disk_wal_fsync_duration_seconds_count";
    let commits = "etcd_disk_backend_commit_duration_seconds_count";

    // oxcd refreshes its server gauges every raft tick, so the first
    // scrape may precede the tick after the election.
    let before = scrape_until(kind, &addr, "etcd_server_has_leader 1", |s| {
        s.samples.get("etcd_server_has_leader") == Some(&1.0)
    })
    .await;
    for name in ETCD_METRICS {
        assert!(
            before.types.contains_key(name),
            "{}: no # TYPE for {name}",
            kind.name()
        );
    }
    assert!(before.value(kind, "etcd_server_leader_changes_seen_total") >= 1.0);
    assert!(before.value(kind, "process_resident_memory_bytes") > 1e6);
    for histogram in [
        "etcd_disk_wal_fsync_duration_seconds",
        "etcd_disk_backend_commit_duration_seconds",
    ] {
        assert_eq!(
            before.value(kind, &format!("{histogram}_bucket{{le=\"+Inf\"}}")),
            before.value(kind, &format!("{histogram}_count")),
            "{}: {histogram}'s +Inf bucket holds every observation",
            kind.name()
        );
    }

    let mut kv = server.kv().await.expect("kv client");
    for i in 0..PUTS {
        kv.put(PutRequest {
            key: format!("metrics/{i}").into_bytes(),
            value: vec![b'v'; 1024],
            ..Default::default()
        })
        .await
        .expect("put");
    }
    // Each put waits for its own WAL fsync; the backend may batch commits
    // (etcd every 100 ms), so it only has to move.
    let (fsyncs_before, commits_before) = (before.value(kind, fsyncs), before.value(kind, commits));
    let after = scrape_until(kind, &addr, "WAL fsyncs and backend commits", |s| {
        s.value(kind, fsyncs) >= fsyncs_before + PUTS as f64
            && s.value(kind, commits) > commits_before
    })
    .await;
    println!(
        "{}: {PUTS} puts: WAL fsyncs {fsyncs_before} -> {}, backend commits {commits_before} -> {}",
        kind.name(),
        after.value(kind, fsyncs),
        after.value(kind, commits)
    );
    let db_size = server
        .maintenance()
        .await
        .expect("maintenance client")
        .status(StatusRequest {})
        .await
        .expect("status")
        .into_inner()
        .db_size as f64;
    scrape_until(kind, &addr, "db size equal to Status.dbSize", |s| {
        s.value(kind, "etcd_mvcc_db_total_size_in_bytes") == db_size
    })
    .await;

    if kind == Kind::Oxcd {
        let propose = "{actor=\"raft\",message=\"Propose\"}";
        let append = "{actor=\"log_writer\",message=\"Append\"}";
        let grew = |series: String| {
            let (from, to) = (before.value(kind, &series), after.value(kind, &series));
            assert!(
                to >= from + PUTS as f64,
                "{series}: {from} -> {to} after {PUTS} puts"
            );
        };
        grew(format!("oxcd_actor_messages_total{propose}"));
        grew(format!("oxcd_actor_handle_seconds_count{propose}"));
        grew(format!("oxcd_actor_messages_total{append}"));
        for actor in ["raft", "apply", "log_writer"] {
            let depth = after.value(
                kind,
                &format!("oxcd_actor_mailbox_depth{{actor=\"{actor}\"}}"),
            );
            assert!(depth >= 0.0, "{actor} mailbox depth {depth}");
        }
        for (family, kind_of) in [
            ("oxcd_actor_messages_total", "counter"),
            ("oxcd_actor_handle_seconds", "histogram"),
            ("oxcd_actor_mailbox_depth", "gauge"),
        ] {
            assert_eq!(after.types.get(family).map(String::as_str), Some(kind_of));
        }
    }
    after.types
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_have_etcds_names_and_types_and_move() {
    let expected = check_metrics(Kind::Etcd).await;
    let actual = check_metrics(Kind::Oxcd).await;
    for name in ETCD_METRICS {
        assert_eq!(actual.get(name), expected.get(name), "# TYPE of {name}");
    }
}

#[test]
fn chunked_bodies_are_decoded() {
    let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
    let reply = parse_reply(raw).unwrap();
    assert_eq!((reply.status, reply.body.as_str()), (200, "hello world"));
    let raw = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 2\r\n\r\n{}";
    let reply = parse_reply(raw).unwrap();
    assert_eq!((reply.status, reply.body.as_str()), (503, "{}"));
}

/// etcd's watch gauges, with etcd's types, count watchers, streams and slow
/// watchers on both servers as watches come and go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_gauges_count_streams_and_watchers_as_in_etcd() {
    use proto::etcdserverpb::watch_client::WatchClient;
    use proto::etcdserverpb::watch_request::RequestUnion;
    use proto::etcdserverpb::{WatchCreateRequest, WatchRequest};

    const GAUGES: [&str; 4] = [
        "etcd_debugging_mvcc_watcher_total",
        "etcd_debugging_mvcc_watch_stream_total",
        "etcd_debugging_mvcc_slow_watcher_total",
        "etcd_debugging_mvcc_pending_events_total",
    ];
    for kind in [Kind::Etcd, Kind::Oxcd] {
        let server = Server::start(kind, ServerOpts::default())
            .await
            .unwrap_or_else(|e| panic!("start {}: {e}", kind.name()));
        let addr = server.client_addr();
        let before = scrape(kind, &addr).await;
        for gauge in GAUGES {
            assert_eq!(
                before.types.get(gauge).map(String::as_str),
                Some("gauge"),
                "{}: {gauge}",
                kind.name()
            );
        }
        let base = |name: &str| before.value(kind, name);
        let (watchers0, streams0) = (
            base("etcd_debugging_mvcc_watcher_total"),
            base("etcd_debugging_mvcc_watch_stream_total"),
        );

        let channel = server.channel().await.expect("channel");
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        for key in ["a", "b", "c"] {
            tx.send(WatchRequest {
                request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
                    key: key.into(),
                    ..Default::default()
                })),
            })
            .await
            .unwrap();
        }
        let mut stream = WatchClient::new(channel)
            .watch(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .expect("watch")
            .into_inner();
        for _ in 0..3 {
            let created = stream.message().await.expect("response").expect("created");
            assert!(created.created);
        }
        scrape_until(kind, &addr, "three watchers on one more stream", |s| {
            s.value(kind, "etcd_debugging_mvcc_watcher_total") == watchers0 + 3.0
                && s.value(kind, "etcd_debugging_mvcc_watch_stream_total") == streams0 + 1.0
        })
        .await;
        drop(tx);
        drop(stream);
        scrape_until(kind, &addr, "the stream's watchers gone", |s| {
            s.value(kind, "etcd_debugging_mvcc_watcher_total") == watchers0
                && s.value(kind, "etcd_debugging_mvcc_watch_stream_total") == streams0
        })
        .await;
    }
}
