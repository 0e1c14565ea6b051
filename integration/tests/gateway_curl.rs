//! The JSON gateway driven by curl, as operators and scripts drive it.
//!
//! 1. `curl -N` on `/v3/watch` sees every event of a known sequence of puts,
//!    one `{"result": ...}` line per response, on etcd 3.4 and on oxcd.
//! 2. A 1 GiB JSON body streamed by curl (`-T -`, chunked) into
//!    `/v3/kv/put`: oxcd answers grpc-gateway's 429 (gRPC
//!    ResourceExhausted), its peak memory stays far below the body's size,
//!    nothing is written, and it keeps serving. (etcd's gateway reads the
//!    whole first JSON value into memory, so it is not run with this body;
//!    the smaller oversized bodies of `gateway.rs` compare both.)

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use integration::{Kind, Server, ServerOpts};

const WAIT: Duration = Duration::from_secs(30);

fn b64(text: &str) -> String {
    STANDARD.encode(text)
}

fn url(server: &Server, path: &str) -> String {
    format!("http://{}{path}", server.client_addr())
}

fn curl_post(server: &Server, path: &str, body: &str) -> String {
    let out = Command::new("curl")
        .args(["-s", "-X", "POST", &url(server, path), "-d", body])
        .output()
        .expect("curl runs");
    assert!(out.status.success(), "curl {path}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The values of the first `count` events that `curl -N` prints for a
/// watch on `key` at the server `addr` (blocking; bounded by [`WAIT`]).
fn curl_watch(addr: &str, key: &str, count: usize) -> Vec<String> {
    let create = format!(
        r#"{{"create_request":{{"key":"{}","start_revision":"1"}}}}"#,
        b64(key)
    );
    let mut curl = Command::new("curl")
        .args([
            "-sN",
            "-X",
            "POST",
            &format!("http://{addr}/v3/watch"),
            "-d",
            &create,
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("curl starts");
    let stdout = curl.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + WAIT;
    let mut values = Vec::new();
    while values.len() < count {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(line) = rx.recv_timeout(left) else {
            let _ = curl.kill();
            let _ = curl.wait();
            panic!("the watch at {addr} saw {values:?} before its deadline");
        };
        let parsed: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("a watch line is one JSON object ({e}): {line}"));
        for event in parsed["result"]["events"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            let raw = STANDARD
                .decode(event["kv"]["value"].as_str().unwrap_or_default())
                .expect("base64 value");
            values.push(String::from_utf8_lossy(&raw).into_owned());
        }
    }
    let _ = curl.kill();
    let _ = curl.wait();
    values
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_curl_watch_sees_every_event() {
    const PUTS: usize = 25;
    for kind in [Kind::Etcd, Kind::Oxcd] {
        let server = Server::start(kind, ServerOpts::default())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        for i in 0..PUTS {
            let body = format!(
                r#"{{"key":"{}","value":"{}"}}"#,
                b64("w"),
                b64(&format!("v{i}"))
            );
            let answer = curl_post(&server, "/v3/kv/put", &body);
            assert!(answer.contains("\"header\""), "{kind:?} put: {answer}");
        }
        let addr = server.client_addr();
        let seen = tokio::task::spawn_blocking(move || curl_watch(&addr, "w", PUTS))
            .await
            .expect("watch thread");
        let expected: Vec<String> = (0..PUTS).map(|i| format!("v{i}")).collect();
        assert_eq!(seen, expected, "{kind:?}");
    }
}

/// Peak resident memory of `pid` in KiB (VmHWM).
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_gib_body_is_refused_in_bounded_memory() {
    const GIB: usize = 1 << 30;
    let server = Server::start(Kind::Oxcd, ServerOpts::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let pid = server.pid().expect("running");
    let target = url(&server, "/v3/kv/put");
    let (status, body) = tokio::task::spawn_blocking(move || {
        let mut curl = Command::new("curl")
            .args([
                "-s",
                "-o",
                "-",
                "-w",
                "\n%{http_code}",
                "-X",
                "POST",
                "-T",
                "-",
                "-H",
                "Content-Type: application/json",
                &target,
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("curl starts");
        let mut stdin = curl.stdin.take().expect("piped stdin");
        let chunk = vec![b'A'; 1 << 20];
        let mut sent = 0;
        let _ = stdin.write_all(br#"{"key":"YQ==","value":""#);
        // Until the whole GiB is sent or curl stops taking it (the server
        // answered and closed).
        while sent < GIB && stdin.write_all(&chunk).is_ok() {
            sent += chunk.len();
        }
        let _ = stdin.write_all(br#""}"#);
        drop(stdin);
        let out = curl.wait_with_output().expect("curl ends");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, status) = text.rsplit_once('\n').unwrap_or(("", ""));
        (status.to_string(), body.to_string())
    })
    .await
    .expect("upload thread");
    assert_eq!(status, "429", "body: {body}");
    let answer: serde_json::Value = serde_json::from_str(&body).expect("a JSON error");
    assert_eq!(answer["code"], 8, "{answer}");
    assert!(
        answer["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("grpc: received message larger than max")),
        "{answer}"
    );
    let peak = peak_rss_kib(pid);
    assert!(
        peak < 256 * 1024,
        "peak RSS {peak} KiB while refusing a 1 GiB body"
    );
    let range = curl_post(
        &server,
        "/v3/kv/range",
        &format!(r#"{{"key":"{}"}}"#, b64("a")),
    );
    assert!(
        range.contains("\"header\"") && !range.contains("\"kvs\""),
        "the oversized put wrote nothing and the node serves: {range}"
    );
}
