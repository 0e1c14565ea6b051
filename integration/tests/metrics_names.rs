//! The metrics etcd dashboards read, and etcd's logging flags, against
//! etcd 3.4 as reference for the metrics:
//!
//! 1. A three-member cluster starts with `--metrics=extensive` and one
//!    `--listen-metrics-urls` listener per member.
//! 2. Member 0 serves puts of distinct keys, deletes of some, ranges, a
//!    txn, a put refused for its empty key (`InvalidArgument`) and a watch.
//! 3. Every member's `/metrics`, on its client port and on its metrics
//!    listener, parses as Prometheus text (`prometheus-parse`) and holds:
//!    `etcd_server_is_leader` 1 on exactly one member;
//!    `etcd_server_proposals_pending` and `_failed_total`;
//!    `etcd_debugging_mvcc_keys_total` equal to the live key count; peer
//!    round-trip histograms with observations and peer byte counters that
//!    moved; no proposal pending once the writes are applied; and on
//!    member 0, grpc-go-prometheus's series for the calls of step 2
//!    (started, handled by code, handling time; the watch stream counted
//!    once it ended).
//! 4. `/health` answers on the metrics listener.
//!
//! The same checks run against etcd, which validates them. A second test
//! checks that `--log-format=json` writes one JSON object per line, with
//! zap's field names, to a `--log-outputs` file (oxcd only: etcd 3.4 logs
//! JSON only with `--logger=zap` and has no `--log-format`).
//!
//! HTTP is plain HTTP/1.1 over a TCP stream (`Connection: close`).

use std::collections::HashMap;
use std::io::BufRead;
use std::time::{Duration, Instant};

use integration::cluster::{Cluster, ClusterOpts};
use integration::{Kind, Server, ServerOpts};
use prometheus_parse::{Sample, Value};
use proto::etcdserverpb::{
    Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest, WatchRequest,
    compare, request_op,
};

/// Bound on waiting for a metric to reach a value.
const WAIT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(100);

const PUTS: usize = 12;
const DELETES: usize = 3;
const RANGES: usize = 7;

/// `GET path` on `addr`: status and body (de-chunked), through the
/// harness's HTTP client.
async fn get(addr: &str, path: &str) -> (u16, String) {
    let reply = integration::json_gateway::request(addr, "GET", path, &[], &[])
        .await
        .unwrap_or_else(|e| panic!("GET {path} on {addr}: {e}"));
    (reply.status, reply.text())
}

/// One parsed scrape.
struct Scrape(Vec<Sample>);

impl Scrape {
    async fn of(addr: &str) -> Scrape {
        let (status, body) = get(addr, "/metrics").await;
        assert_eq!(status, 200, "/metrics on {addr}: {body}");
        let lines = body.lines().map(|l| Ok(l.to_string()));
        let scrape = prometheus_parse::Scrape::parse(lines)
            .unwrap_or_else(|e| panic!("/metrics on {addr} is not Prometheus text: {e}"));
        Scrape(scrape.samples)
    }

    /// The samples of `metric` whose labels include `labels`.
    fn find<'a>(&'a self, metric: &'a str, labels: &'a [(&str, &str)]) -> Vec<&'a Sample> {
        self.0
            .iter()
            .filter(|s| s.metric == metric)
            .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .collect()
    }

    /// The one value of a counter or gauge series (panics when absent).
    fn value(&self, metric: &str, labels: &[(&str, &str)]) -> f64 {
        let found = self.find(metric, labels);
        assert_eq!(found.len(), 1, "{metric}{labels:?}: {} series", found.len());
        match found[0].value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
            ref other => panic!("{metric}{labels:?} is not a scalar: {other:?}"),
        }
    }

    /// The observation count of each histogram series of `metric`
    /// matching `labels` (its `+Inf` bucket).
    fn histogram_counts(&self, metric: &str, labels: &[(&str, &str)]) -> Vec<f64> {
        self.find(metric, labels)
            .iter()
            .map(|s| match &s.value {
                Value::Histogram(buckets) => buckets
                    .iter()
                    .find(|b| b.less_than.is_infinite())
                    .map_or(0.0, |b| b.count),
                other => panic!("{metric} is not a histogram: {other:?}"),
            })
            .collect()
    }

    /// Sum of every series of a counter or gauge family matching `labels`.
    fn sum(&self, metric: &str, labels: &[(&str, &str)]) -> f64 {
        self.find(metric, labels)
            .iter()
            .map(|s| match s.value {
                Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
                ref other => panic!("{metric} is not a scalar: {other:?}"),
            })
            .sum()
    }
}

/// Scrapes `addr` until `done` holds, within [`WAIT`].
async fn scrape_until(addr: &str, what: &str, done: impl Fn(&Scrape) -> bool) -> Scrape {
    let deadline = Instant::now() + WAIT;
    loop {
        let scrape = Scrape::of(addr).await;
        if done(&scrape) {
            return scrape;
        }
        assert!(
            Instant::now() < deadline,
            "/metrics on {addr}: no {what} within {WAIT:?}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// A port nobody listens on now (the OS picks it).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a free port")
        .port()
}

/// Step 2: the calls member 0 serves; returns the live key count.
async fn serve_calls(cluster: &Cluster) -> usize {
    let mut kv = cluster.kv(0).await.expect("kv client");
    for i in 0..PUTS {
        kv.put(PutRequest {
            key: format!("metrics/{i:02}").into_bytes(),
            value: b"v".to_vec(),
            ..Default::default()
        })
        .await
        .expect("put");
    }
    for i in 0..DELETES {
        kv.delete_range(DeleteRangeRequest {
            key: format!("metrics/{i:02}").into_bytes(),
            ..Default::default()
        })
        .await
        .expect("delete");
    }
    for _ in 0..RANGES {
        kv.range(RangeRequest {
            key: b"metrics/".to_vec(),
            range_end: b"metrics0".to_vec(),
            ..Default::default()
        })
        .await
        .expect("range");
    }
    kv.txn(TxnRequest {
        compare: vec![Compare {
            key: b"metrics/05".to_vec(),
            target: compare::CompareTarget::Version as i32,
            result: compare::CompareResult::Greater as i32,
            target_union: Some(compare::TargetUnion::Version(0)),
            ..Default::default()
        }],
        success: vec![RequestOp {
            request: Some(request_op::Request::RequestPut(PutRequest {
                key: b"metrics/txn".to_vec(),
                value: b"t".to_vec(),
                ..Default::default()
            })),
        }],
        ..Default::default()
    })
    .await
    .expect("txn");
    let refused = kv
        .put(PutRequest::default())
        .await
        .expect_err("a put without a key is refused");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);

    // A watch: created, then the stream closed by the client.
    use proto::etcdserverpb::watch_client::WatchClient;
    use proto::etcdserverpb::watch_request::RequestUnion;
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tx.send(WatchRequest {
        request_union: Some(RequestUnion::CreateRequest(
            proto::etcdserverpb::WatchCreateRequest {
                key: b"metrics/".to_vec(),
                ..Default::default()
            },
        )),
    })
    .await
    .expect("queue the watch");
    let channel = cluster.channel(0).await.expect("channel");
    let mut stream = WatchClient::new(channel)
        .watch(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .expect("watch")
        .into_inner();
    let created = tokio::time::timeout(integration::json_gateway::HTTP_TIMEOUT, stream.message())
        .await
        .expect("watch created in time")
        .expect("watch response")
        .expect("watch stream open");
    assert!(created.created);
    drop(tx);
    drop(stream);
    PUTS - DELETES + 1
}

/// Steps 1 to 4 on a cluster of `kind`.
async fn check(kind: Kind) {
    let name = kind.name();
    let opts = ClusterOpts {
        extra_args: vec!["--metrics=extensive".to_string()],
        ..ClusterOpts::default()
    };
    let mut cluster = Cluster::prepare(kind, opts).expect("prepare the cluster");
    let metrics_addrs: Vec<String> = (0..cluster.size())
        .map(|_| format!("127.0.0.1:{}", free_port()))
        .collect();
    for (i, addr) in metrics_addrs.iter().enumerate() {
        cluster.set_args(i, vec![format!("--listen-metrics-urls=http://{addr}")]);
    }
    cluster
        .launch()
        .await
        .unwrap_or_else(|e| panic!("start {name}: {e}"));
    let live = serve_calls(&cluster).await;
    let revision = cluster
        .status(0)
        .await
        .expect("status")
        .header
        .expect("a header")
        .revision;
    for i in 0..cluster.size() {
        cluster
            .wait_revision(i, revision, Duration::from_secs(20))
            .await
            .expect("every member applied the writes");
    }

    let peers = cluster.size() - 1;
    let leader = cluster.leader().await.expect("a leader");
    let mut leaders = 0.0;
    for (i, metrics_addr) in metrics_addrs.iter().enumerate() {
        for addr in [cluster.client_addr(i), metrics_addr.clone()] {
            let at = format!("{name} member {i} at {addr}");
            // Gauges refresh on their own clocks (oxcd: every raft tick,
            // etcd: on apply), the round-trip probe runs every few seconds.
            let scrape = scrape_until(&addr, "keys, leader and round trips", |s| {
                s.sum("etcd_debugging_mvcc_keys_total", &[]) == live as f64
                    && s.sum("etcd_server_has_leader", &[]) == 1.0
                    && s.sum("etcd_server_proposals_pending", &[]) == 0.0
                    && {
                        let rtt =
                            s.histogram_counts("etcd_network_peer_round_trip_time_seconds", &[]);
                        rtt.len() == peers && rtt.iter().all(|c| *c > 0.0)
                    }
            })
            .await;
            if addr == *metrics_addr {
                leaders += scrape.value("etcd_server_is_leader", &[]);
            }
            assert!(
                scrape.value("etcd_server_proposals_pending", &[]) >= 0.0,
                "{at}"
            );
            assert!(
                scrape.value("etcd_server_proposals_failed_total", &[]) >= 0.0,
                "{at}"
            );
            let rtt = scrape.histogram_counts("etcd_network_peer_round_trip_time_seconds", &[]);
            println!("{at}: round-trip observations by peer {rtt:?}");
            // Raft traffic flows between the leader and each follower:
            // those pairs have moved bytes both ways, counted under the
            // peer's id in hex (as etcd prints ids).
            let partners: Vec<usize> = if i == leader {
                (0..cluster.size()).filter(|j| *j != i).collect()
            } else {
                vec![leader]
            };
            for j in partners {
                let peer = format!("{:x}", cluster.member_id(j).expect("member id known"));
                let sent = scrape.sum("etcd_network_peer_sent_bytes_total", &[("To", &peer)]);
                let received =
                    scrape.sum("etcd_network_peer_received_bytes_total", &[("From", &peer)]);
                let labels = |metric| {
                    scrape
                        .find(metric, &[])
                        .iter()
                        .map(|s| s.labels.to_string())
                        .collect::<Vec<_>>()
                };
                assert!(
                    sent > 0.0 && received > 0.0,
                    "{at}: bytes with {peer}: sent {sent} {:?}, received {received} {:?}",
                    labels("etcd_network_peer_sent_bytes_total"),
                    labels("etcd_network_peer_received_bytes_total"),
                );
            }
            assert!(
                scrape.sum("etcd_network_peer_sent_bytes_total", &[]) > 0.0,
                "{at}"
            );
            assert!(
                scrape.sum("etcd_network_peer_received_bytes_total", &[]) > 0.0,
                "{at}"
            );
            if i == 0 {
                check_grpc(&scrape, &at);
            }
        }
        let (status, body) = get(metrics_addr, "/health").await;
        assert_eq!(
            (status, body.trim()),
            (200, r#"{"health":"true"}"#),
            "{name}: /health on the metrics listener"
        );
    }
    assert_eq!(leaders, 1.0, "{name}: etcd_server_is_leader sums to 1");

    // The watch stream the client closed is counted once it ended, with
    // the code grpc-go gives a stream its client cancelled.
    let watch = [
        ("grpc_service", "etcdserverpb.Watch"),
        ("grpc_method", "Watch"),
    ];
    let ended = scrape_until(&cluster.client_addr(0), "the watch stream's end", |s| {
        s.sum("grpc_server_handled_total", &watch) >= 1.0
    })
    .await;
    let codes: Vec<String> = ended
        .find("grpc_server_handled_total", &watch)
        .iter()
        .filter(|s| matches!(s.value, Value::Counter(v) if v > 0.0))
        .map(|s| s.labels.get("grpc_code").unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        codes,
        ["Canceled"],
        "{name}: the closed watch stream's code"
    );
}

/// grpc-go-prometheus's series for the calls of [`serve_calls`].
fn check_grpc(scrape: &Scrape, at: &str) {
    let kv = |method| {
        [
            ("grpc_type", "unary"),
            ("grpc_service", "etcdserverpb.KV"),
            ("grpc_method", method),
        ]
    };
    let with_code = |method, code| {
        let mut labels = kv(method).to_vec();
        labels.push(("grpc_code", code));
        labels
    };
    let handled = "grpc_server_handled_total";
    for (method, calls) in [("Range", RANGES), ("Put", PUTS), ("Txn", 1)] {
        let ok = scrape.value(handled, &with_code(method, "OK"));
        assert!(ok >= calls as f64, "{at}: {method} OK {ok} < {calls}");
        let started = scrape.value("grpc_server_started_total", &kv(method));
        assert!(
            started >= ok,
            "{at}: {method} started {started} < handled {ok}"
        );
    }
    let refused = scrape.value(handled, &with_code("Put", "InvalidArgument"));
    assert_eq!(refused, 1.0, "{at}: the put without a key");
    let timed = scrape.histogram_counts("grpc_server_handling_seconds", &kv("Range"));
    assert!(
        timed.len() == 1 && timed[0] >= RANGES as f64,
        "{at}: Range handling times {timed:?}"
    );
    let watch = [
        ("grpc_type", "bidi_stream"),
        ("grpc_service", "etcdserverpb.Watch"),
        ("grpc_method", "Watch"),
    ];
    assert!(
        scrape.value("grpc_server_started_total", &watch) >= 1.0,
        "{at}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_metric_names_on_client_and_metrics_listeners() {
    check(Kind::Etcd).await;
    check(Kind::Oxcd).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_go_to_log_outputs() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("oxcd.json.log");
    let opts = ServerOpts {
        extra_args: vec![
            "--log-format=json".to_string(),
            format!("--log-outputs={},stderr", log.display()),
        ],
        ..ServerOpts::default()
    };
    let server = Server::start(Kind::Oxcd, opts).await.expect("start oxcd");
    let mut kv = server.kv().await.expect("kv client");
    kv.put(PutRequest {
        key: b"logged".to_vec(),
        value: b"v".to_vec(),
        ..Default::default()
    })
    .await
    .expect("put");
    let file = std::fs::File::open(&log).expect("the --log-outputs file exists");
    let mut lines = 0;
    let mut levels: HashMap<String, usize> = HashMap::new();
    for line in std::io::BufReader::new(file).lines() {
        let line = line.expect("read a log line");
        let entry: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line:?}"));
        for field in ["level", "ts", "caller", "msg"] {
            assert!(
                entry.get(field).is_some_and(serde_json::Value::is_string),
                "no string {field:?} in {line}"
            );
        }
        *levels
            .entry(entry["level"].as_str().unwrap_or_default().to_string())
            .or_default() += 1;
        lines += 1;
    }
    println!("{lines} JSON log lines by level: {levels:?}");
    assert!(
        levels.get("info").is_some_and(|n| *n > 0),
        "info lines: {levels:?}"
    );
    // The same lines went to stderr too, which the harness keeps.
    let tail = server.log_tail(1000);
    assert!(
        tail.lines()
            .any(|l| l.starts_with("{\"level\":\"info\",\"ts\":")),
        "stderr holds the JSON lines too: {tail}"
    );
}

/// `--metrics=off` (oxcd only): no per-request series (actor handling
/// counts and times, gRPC series), while gauges, mailbox depths and etcd's
/// server metrics stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_off_drops_only_the_per_request_series() {
    let opts = ServerOpts {
        extra_args: vec!["--metrics=off".to_string()],
        ..ServerOpts::default()
    };
    let server = Server::start(Kind::Oxcd, opts).await.expect("start oxcd");
    let mut kv = server.kv().await.expect("kv client");
    for i in 0..PUTS {
        kv.put(PutRequest {
            key: format!("off/{i}").into_bytes(),
            value: b"v".to_vec(),
            ..Default::default()
        })
        .await
        .expect("put");
    }
    let addr = server.client_addr();
    let scrape = scrape_until(&addr, "the puts' keys counted", |s| {
        s.value("etcd_debugging_mvcc_keys_total", &[]) >= PUTS as f64
    })
    .await;
    assert_eq!(scrape.value("etcd_server_has_leader", &[]), 1.0);
    assert!(
        !scrape
            .find("oxcd_actor_mailbox_depth", &[("actor", "apply")])
            .is_empty()
    );
    for gone in [
        "oxcd_actor_messages_total",
        "oxcd_actor_handle_seconds",
        "grpc_server_started_total",
        "grpc_server_handled_total",
    ] {
        assert!(
            scrape.find(gone, &[]).is_empty(),
            "{gone} with --metrics=off"
        );
    }
}
