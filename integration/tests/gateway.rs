//! etcd's JSON gateway (`/v3/*` on the client port), oxcd against etcd 3.4:
//!
//! 1. Differential: a seeded random sequence of gateway requests (`OXCD_SEED`
//!    replays it; `OXCD_GATEWAY_OPS` sets its length, `OXCD_GATEWAY_TRACE`
//!    prints every exchange), valid and broken, at
//!    random gateway paths, sent to both servers in the same order: the same
//!    HTTP status and the same body (JSON compared as values, headers' ids
//!    and raft term removed; revisions kept, both stores start empty and
//!    apply the same writes).
//! 2. A watch over `/v3/watch` sees every event of a known put sequence, on
//!    both, with the same lines; a watch whose body ends stays open (etcd's
//!    watch outlives its client's half-close) and is freed when its client
//!    goes away.
//! 3. Bad input answered as etcd answers it: a body above the request limit,
//!    wrong methods, unknown paths, paths Go's mux redirects, CORS
//!    preflight, a bad first message on a stream, a valid value followed by
//!    megabytes of padding.
//! 4. A Lock naming no lease runs on a 60-second lease of its own (etcd's
//!    orphaned session), found by the differential test.
//! 5. Auth over the gateway: users, roles, permissions, enable and disable
//!    through `/v3/auth/*`, tokens in the `Authorization` header, every step
//!    answered as etcd answers it.
//! 6. A snapshot streamed over HTTP is the image the gRPC call sends.
//! 7. etcd3gw (OpenStack's Python client of the gateway) runs its put, get,
//!    delete, lease, lock and watch calls against both
//!    (`gateway_etcd3gw.py`, in the venv `make test-deps` makes under
//!    `.cache/etcd3gw`; the test fails, not skips, without it).

use integration::json_gateway::{Generator, Reply, Stream, b64, comparable, request, unb64};
use integration::{Server, ServerOpts, env_usize, seed_from_env, workspace_root};
use serde_json::{Value, json};

fn addr(server: &Server) -> String {
    server.client_addr()
}

async fn post(server: &Server, path: &str, body: &str) -> Reply {
    request(&addr(server), "POST", path, &[], body.as_bytes())
        .await
        .unwrap_or_else(|e| panic!("POST {path} to {:?}: {e}", server.kind()))
}

/// Asserts two answers agree: status, content type, and body (JSON as
/// normalised values).
fn assert_same(what: &str, etcd: &Reply, oxcd: &Reply) {
    assert_eq!(
        etcd.status,
        oxcd.status,
        "{what}: status differs\netcd: {}\noxcd: {}",
        etcd.text(),
        oxcd.text()
    );
    assert_eq!(
        etcd.header("content-type"),
        oxcd.header("content-type"),
        "{what}: content type differs"
    );
    assert_eq!(
        comparable(etcd),
        comparable(oxcd),
        "{what}: body differs\netcd: {}\noxcd: {}",
        etcd.text(),
        oxcd.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_requests_answer_as_etcd() {
    let seed = seed_from_env();
    let ops = env_usize("OXCD_GATEWAY_OPS", 400);
    println!("gateway differential: seed {seed} (replay with OXCD_SEED={seed}), {ops} requests");
    let (etcd, oxcd) = Server::start_pair(ServerOpts::default()).await;
    let mut generator = Generator::new(seed);
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    // OXCD_GATEWAY_TRACE=1 prints every request and etcd's answer.
    let trace = std::env::var_os("OXCD_GATEWAY_TRACE").is_some();
    for index in 0..ops {
        let req = generator.next_request();
        let send = |server: &Server| {
            let addr = addr(server);
            let req = req.clone();
            async move { request(&addr, req.method, &req.path, &[], &req.body).await }
        };
        let etcd_reply = send(&etcd)
            .await
            .unwrap_or_else(|e| panic!("etcd failed request #{index} (seed {seed}) {req:?}: {e}"));
        let oxcd_reply = send(&oxcd)
            .await
            .unwrap_or_else(|e| panic!("oxcd failed request #{index} (seed {seed}) {req:?}: {e}"));
        let what = format!(
            "request #{index} (seed {seed}): {} {} {}",
            req.method,
            req.path,
            String::from_utf8_lossy(&req.body)
        );
        if trace {
            println!("{what} -> etcd {} {}", etcd_reply.status, etcd_reply.text());
        }
        assert_same(&what, &etcd_reply, &oxcd_reply);
        *statuses.entry(etcd_reply.status).or_default() += 1;
    }
    println!("gateway differential: HTTP statuses (same on both) {statuses:?}");
    assert!(
        statuses.get(&200).is_some_and(|&n| n * 4 >= ops),
        "too few successful requests to mean much: {statuses:?}"
    );
}

/// Puts `count` values of `key` through the gateway.
async fn put_sequence(server: &Server, key: &str, count: usize) {
    for i in 0..count {
        let body = json!({ "key": b64(key), "value": b64(&format!("v{i}")) }).to_string();
        let reply = post(server, "/v3/kv/put", &body).await;
        assert_eq!(reply.status, 200, "put: {}", reply.text());
    }
}

/// Watches `key` from revision 1 over `/v3/watch` and returns the values of
/// the first `count` events and the stream's normalised lines.
async fn watch_events(server: &Server, key: &str, count: usize) -> (Vec<String>, Vec<Value>) {
    let body = json!({ "create_request": { "key": b64(key), "start_revision": "1" } }).to_string();
    let mut stream = Stream::open(&addr(server), "/v3/watch", body.as_bytes())
        .await
        .expect("open watch");
    let mut values = Vec::new();
    let mut lines = Vec::new();
    while values.len() < count {
        let mut line = stream
            .next_json()
            .await
            .unwrap_or_else(|e| panic!("{:?} watch after {values:?}: {e}", server.kind()));
        let events = line["result"]["events"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for event in events {
            values.push(
                event["kv"]["value"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            );
        }
        integration::json_gateway::normalise(&mut line);
        lines.push(line);
    }
    assert_eq!(stream.status(), Some(200));
    (values, lines)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_over_http_sees_every_event() {
    let (etcd, oxcd) = Server::start_pair(ServerOpts::default()).await;
    const PUTS: usize = 20;
    let expected: Vec<String> = (0..PUTS).map(|i| b64(&format!("v{i}"))).collect();
    for server in [&etcd, &oxcd] {
        put_sequence(server, "w", PUTS).await;
    }
    let (etcd_values, etcd_lines) = watch_events(&etcd, "w", PUTS).await;
    let (oxcd_values, oxcd_lines) = watch_events(&oxcd, "w", PUTS).await;
    assert_eq!(etcd_values, expected, "etcd's events");
    assert_eq!(oxcd_values, expected, "oxcd's events");
    assert_eq!(etcd_lines, oxcd_lines, "the streamed lines");

    // A live watch (its body ended long ago) sees later puts as they come.
    for server in [&etcd, &oxcd] {
        let body = json!({ "create_request": { "key": b64("live") } }).to_string();
        let mut stream = Stream::open(&addr(server), "/v3/watch", body.as_bytes())
            .await
            .expect("open watch");
        let created = stream.next_json().await.expect("created line");
        assert_eq!(created["result"]["created"], json!(true), "{created}");
        put_sequence(server, "live", 3).await;
        let mut seen = Vec::new();
        while seen.len() < 3 {
            let line = stream.next_json().await.expect("event line");
            for event in line["result"]["events"]
                .as_array()
                .cloned()
                .unwrap_or_default()
            {
                seen.push(
                    event["kv"]["value"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                );
            }
        }
        assert_eq!(
            seen,
            vec![b64("v0"), b64("v1"), b64("v2")],
            "{:?}",
            server.kind()
        );
        // The client goes away: its watcher is freed.
        drop(stream);
        wait_for_watchers(server, 0).await;
    }
}

/// Waits (bounded) until the server's `etcd_debugging_mvcc_watcher_total`
/// is `count`.
async fn wait_for_watchers(server: &Server, count: u64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut last = String::new();
    while std::time::Instant::now() < deadline {
        let reply = request(&addr(server), "GET", "/metrics", &[], b"")
            .await
            .expect("metrics");
        last = reply
            .text()
            .lines()
            .find(|l| l.starts_with("etcd_debugging_mvcc_watcher_total "))
            .unwrap_or_default()
            .to_string();
        if last.split(' ').nth(1).and_then(|v| v.parse::<f64>().ok()) == Some(count as f64) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!(
        "{:?}: watchers never came to {count}: {last:?}",
        server.kind()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_answered_as_etcd_answers_it() {
    let (etcd, oxcd) = Server::start_pair(ServerOpts::default()).await;
    // A value above --max-request-bytes (1.5 MiB) + 512 KiB: the gRPC side's
    // limit, worded by grpc-go.
    let big = json!({ "key": b64("big"), "value": b64(&"x".repeat(2 << 20)) }).to_string();
    // A body far above anything the gateway reads (4 times the gRPC limit).
    let huge = format!(
        "{{\"key\":\"{}\",\"value\":\"{}\"}}",
        b64("huge"),
        "QUFB".repeat(3 << 20)
    );
    let cases: Vec<(&str, &str, Vec<u8>)> = vec![
        ("POST", "/v3/kv/put", big.into_bytes()),
        ("GET", "/v3/kv/range", Vec::new()),
        ("PUT", "/v3/watch", Vec::new()),
        ("POST", "/v3/kv/nope", b"{}".to_vec()),
        ("POST", "/v3/kv/range/", b"{}".to_vec()),
        ("POST", "/v3/kv/range", br#"{"key":"#.to_vec()),
        ("POST", "/v3/kv/range", b"[]".to_vec()),
        (
            "POST",
            "/v3/kv/range",
            br#"{"key":"YQ==","limit":"x"}"#.to_vec(),
        ),
        (
            "POST",
            "/v3/kv/range",
            br#"{"key":"YQ==","sort_order":"UP"}"#.to_vec(),
        ),
        ("POST", "/v3/watch", b"xx".to_vec()),
        ("POST", "/v3/lease/keepalive", br#"{"ID":"x"}"#.to_vec()),
        ("POST", "/v3/lease/keepalive", Vec::new()),
        ("POST", "/v3/election/observe", br#"{"name":5}"#.to_vec()),
        ("POST", "/v3/kv/compaction", br#"{"revision":100}"#.to_vec()),
        ("OPTIONS", "/v3/kv/range", Vec::new()),
        ("OPTIONS", "/v3/nope", Vec::new()),
        ("POST", "/v3//kv/range", b"{}".to_vec()),
        ("GET", "/v3", Vec::new()),
        ("POST", "/v3beta/kv/../kv/range?x=1", b"{}".to_vec()),
        // Only the first value of a body is read: what follows, however
        // large, is not.
        ("POST", "/v3/kv/range", {
            let mut body = br#"{"key":"YQ=="}"#.to_vec();
            body.resize(9 << 20, b' ');
            body
        }),
    ];
    for (method, path, body) in &cases {
        let etcd_reply = request(&addr(&etcd), method, path, &[], body)
            .await
            .expect("etcd");
        let oxcd_reply = request(&addr(&oxcd), method, path, &[], body)
            .await
            .expect("oxcd");
        let what = format!("{method} {path} ({} bytes)", body.len());
        assert_same(&what, &etcd_reply, &oxcd_reply);
        assert_eq!(
            etcd_reply.header("location"),
            oxcd_reply.header("location"),
            "{what}: redirect"
        );
        assert_eq!(
            oxcd_reply.header("access-control-allow-origin"),
            Some("*"),
            "{what}: CORS"
        );
    }

    // Too large to read at all: refused as grpc-go refuses a large message
    // (status and code as etcd's; the size quoted is what the gateway read).
    for server in [&etcd, &oxcd] {
        let reply = request(&addr(server), "POST", "/v3/kv/put", &[], huge.as_bytes())
            .await
            .expect("huge put");
        assert_eq!(reply.status, 429, "{:?}: {}", server.kind(), reply.text());
        let body: Value = serde_json::from_slice(&reply.body).expect("JSON error");
        assert_eq!(body["code"], json!(8));
        let message = body["message"].as_str().unwrap_or_default();
        assert!(
            message.starts_with("grpc: received message larger than max ("),
            "{message}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd3gw_works_against_both() {
    let root = workspace_root();
    let python = std::env::var_os("ETCD3GW_PYTHON")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root.join(".cache/etcd3gw/bin/python"));
    assert!(
        python.exists(),
        "{} is missing: run `make test-deps` (it makes a venv with etcd3gw)",
        python.display()
    );
    let script = root.join("integration/tests/gateway_etcd3gw.py");
    let (etcd, oxcd) = Server::start_pair(ServerOpts::default()).await;
    for server in [&etcd, &oxcd] {
        let server_addr = addr(server);
        let (host, port) = server_addr.rsplit_once(':').expect("host:port");
        let run = tokio::process::Command::new(&python)
            .arg(&script)
            .arg(host)
            .arg(port)
            .kill_on_drop(true)
            .output();
        let output = tokio::time::timeout(std::time::Duration::from_secs(120), run)
            .await
            .unwrap_or_else(|_| panic!("etcd3gw script timed out against {:?}", server.kind()))
            .expect("run python");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && stdout.contains("etcd3gw ok"),
            "etcd3gw against {:?} failed ({}):\n{stdout}\n{}",
            server.kind(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// A Lock or a Campaign naming no lease runs on a lease of its own that no
/// one keeps alive (etcd's servers grant it through an orphaned
/// `concurrency` session, 60 seconds), so it ends by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_without_a_lease_gets_a_session_lease() {
    let (etcd, oxcd) = Server::start_pair(ServerOpts::default()).await;
    for server in [&etcd, &oxcd] {
        let name = b64("nolease");
        let reply = post(
            server,
            "/v3/lock/lock",
            &json!({ "name": name }).to_string(),
        )
        .await;
        assert_eq!(reply.status, 200, "{:?}: {}", server.kind(), reply.text());
        let key = serde_json::from_slice::<Value>(&reply.body).expect("JSON")["key"].clone();
        let range = post(server, "/v3/kv/range", &json!({ "key": key }).to_string()).await;
        let range: Value = serde_json::from_slice(&range.body).expect("JSON");
        let lease = range["kvs"][0]["lease"].clone();
        assert!(
            lease.is_string(),
            "{:?}: the lock key has no lease: {range}",
            server.kind()
        );
        let ttl = post(
            server,
            "/v3/lease/timetolive",
            &json!({ "ID": lease }).to_string(),
        )
        .await;
        let ttl: Value = serde_json::from_slice(&ttl.body).expect("JSON");
        assert_eq!(ttl["grantedTTL"], json!("60"), "{:?}: {ttl}", server.kind());
    }
}

/// Who sends a step of [`auth_through_the_gateway_answers_as_etcd`].
#[derive(Debug, Clone, Copy)]
enum As {
    Nobody,
    Bogus,
    Alice,
    Root,
}

/// Auth over the gateway: users, roles and permissions set up through
/// `/v3/auth/*`, tokens from `/v3/auth/authenticate` sent in the
/// `Authorization` header, each step answered as etcd answers it (a token
/// etcd did not issue is refused even with auth off).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_through_the_gateway_answers_as_etcd() {
    let steps: &[(&str, &str, As)] = &[
        ("/v3/kv/range", r#"{"key":"YQ=="}"#, As::Bogus),
        (
            "/v3/auth/user/add",
            r#"{"name":"root","password":"rootpw"}"#,
            As::Nobody,
        ),
        (
            "/v3/auth/user/add",
            r#"{"name":"root","password":"rootpw"}"#,
            As::Nobody,
        ),
        (
            "/v3/auth/user/add",
            r#"{"name":"","password":"x"}"#,
            As::Nobody,
        ),
        ("/v3/auth/role/add", r#"{"name":"reader"}"#, As::Nobody),
        (
            "/v3/auth/role/grant",
            r#"{"name":"reader","perm":{"permType":"READ","key":"YQ==","range_end":"Yg=="}}"#,
            As::Nobody,
        ),
        (
            "/v3/auth/role/grant",
            r#"{"name":"reader","perm":{"permType":"WRITE","key":"Yw=="}}"#,
            As::Nobody,
        ),
        ("/v3/auth/role/get", r#"{"role":"reader"}"#, As::Nobody),
        (
            "/v3/auth/user/add",
            r#"{"name":"alice","password":"apw"}"#,
            As::Nobody,
        ),
        (
            "/v3/auth/user/grant",
            r#"{"user":"alice","role":"reader"}"#,
            As::Nobody,
        ),
        (
            "/v3/auth/user/grant",
            r#"{"user":"root","role":"root"}"#,
            As::Nobody,
        ),
        ("/v3/auth/user/get", r#"{"name":"alice"}"#, As::Nobody),
        ("/v3/auth/user/list", "{}", As::Nobody),
        ("/v3/auth/role/list", "{}", As::Nobody),
        ("/v3/auth/enable", "{}", As::Nobody),
        ("/v3/kv/put", r#"{"key":"YQ==","value":"eA=="}"#, As::Nobody),
        (
            "/v3/auth/authenticate",
            r#"{"name":"alice","password":"no"}"#,
            As::Nobody,
        ),
        ("/v3/kv/range", r#"{"key":"YQ=="}"#, As::Alice),
        ("/v3/kv/put", r#"{"key":"YQ==","value":"eA=="}"#, As::Alice),
        ("/v3/kv/put", r#"{"key":"Yw==","value":"eA=="}"#, As::Alice),
        ("/v3/kv/put", r#"{"key":"YQ==","value":"eA=="}"#, As::Root),
        ("/v3/kv/range", r#"{"key":"YQ=="}"#, As::Alice),
        ("/v3/kv/range", r#"{"key":"YQ=="}"#, As::Bogus),
        ("/v3/auth/user/list", "{}", As::Alice),
        (
            "/v3/auth/role/revoke",
            r#"{"role":"reader","key":"Yw=="}"#,
            As::Root,
        ),
        (
            "/v3/auth/user/changepw",
            r#"{"name":"alice","password":"new"}"#,
            As::Root,
        ),
        (
            "/v3/auth/user/revoke",
            r#"{"name":"alice","role":"reader"}"#,
            As::Root,
        ),
        ("/v3/auth/role/delete", r#"{"role":"reader"}"#, As::Root),
        ("/v3/auth/user/delete", r#"{"name":"alice"}"#, As::Root),
        ("/v3/auth/disable", "{}", As::Root),
        ("/v3/kv/range", r#"{"key":"YQ=="}"#, As::Nobody),
    ];
    let (etcd, oxcd) = Server::start_pair(ServerOpts::default()).await;
    // Each server's tokens, fetched once auth is on.
    let mut tokens: [(Option<String>, Option<String>); 2] = [(None, None), (None, None)];
    for (index, (path, body, who)) in steps.iter().enumerate() {
        let mut replies = Vec::new();
        for (side, server) in [&etcd, &oxcd].into_iter().enumerate() {
            if matches!(who, As::Alice | As::Root) && tokens[side].0.is_none() {
                let token = |name: &str, password: &str| {
                    let body = json!({ "name": name, "password": password }).to_string();
                    async move {
                        let reply = post(server, "/v3/auth/authenticate", &body).await;
                        let reply: Value = serde_json::from_slice(&reply.body).expect("JSON");
                        reply["token"].as_str().map(str::to_string)
                    }
                };
                tokens[side] = (token("alice", "apw").await, token("root", "rootpw").await);
            }
            let token = match who {
                As::Nobody => None,
                As::Bogus => Some("not-a-token".to_string()),
                As::Alice => tokens[side].0.clone(),
                As::Root => tokens[side].1.clone(),
            };
            let headers: Vec<(&str, &str)> = token
                .as_deref()
                .map(|t| vec![("Authorization", t)])
                .unwrap_or_default();
            let reply = request(&addr(server), "POST", path, &headers, body.as_bytes())
                .await
                .unwrap_or_else(|e| panic!("step {index} on {:?}: {e}", server.kind()));
            replies.push(reply);
        }
        let what = format!("step {index}: {path} {body} as {who:?}");
        assert_same(&what, &replies[0], &replies[1]);
    }
}

/// A snapshot streamed over `/v3/maintenance/snapshot` (many `{"result":
/// {"blob":...}}` lines) is the same image the gRPC Snapshot call sends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_over_http_is_the_grpc_image() {
    let (etcd, oxcd) = Server::start_pair(ServerOpts::default()).await;
    for server in [&etcd, &oxcd] {
        // Enough data for several chunks.
        let value = b64(&"v".repeat(50_000));
        for i in 0..20 {
            let body = json!({ "key": b64(&format!("snap{i}")), "value": value }).to_string();
            let reply = post(server, "/v3/kv/put", &body).await;
            assert_eq!(reply.status, 200, "put: {}", reply.text());
        }
        let reply = post(server, "/v3/maintenance/snapshot", "{}").await;
        assert_eq!(reply.status, 200, "{:?}: {}", server.kind(), reply.text());
        let mut over_http = Vec::new();
        let mut lines = 0;
        for line in reply.text().lines() {
            let line: Value = serde_json::from_str(line).expect("a JSON line");
            let blob = line["result"]["blob"].as_str().unwrap_or_default();
            over_http.extend(unb64(blob));
            lines += 1;
        }
        let mut stream = server
            .maintenance()
            .await
            .expect("maintenance client")
            .snapshot(proto::etcdserverpb::SnapshotRequest {})
            .await
            .expect("snapshot")
            .into_inner();
        let mut over_grpc = Vec::new();
        while let Some(chunk) = stream.message().await.expect("snapshot chunk") {
            over_grpc.extend(chunk.blob);
        }
        assert!(lines > 1, "{:?}: one line only", server.kind());
        assert!(
            over_grpc.len() > 1_000_000,
            "{:?}: {} bytes",
            server.kind(),
            over_grpc.len()
        );
        assert!(
            over_http == over_grpc,
            "{:?}: {} bytes over HTTP, {} over gRPC",
            server.kind(),
            over_http.len(),
            over_grpc.len()
        );
    }
}
