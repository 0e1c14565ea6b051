//! Talking to etcd's JSON gateway (`/v3/*` on the client port) over plain
//! HTTP/1.1, and drawing random gateway requests for the differential test.
//!
//! 1. [`request`] sends one request (`Connection: close`) and reads the whole
//!    answer, undoing chunked transfer encoding (etcd answers errors
//!    chunked), bounded by [`HTTP_TIMEOUT`].
//! 2. [`Stream`] opens a streaming request (a watch): the body is sent at
//!    once and the `{"result":...}` lines are read one by one as they come.
//! 3. [`normalise`] removes from a JSON answer what differs between two
//!    servers by construction: the ids and raft term of every
//!    `ResponseHeader`.
//! 4. [`Generator`] draws seeded requests at random gateway paths: valid
//!    KV, txn, lease, lock, election and alarm bodies, and broken ones (cut short, wrong types,
//!    unknown fields, bad base64 or enum names, not JSON at all), wrong
//!    methods and unknown paths.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Bound on one HTTP exchange (and on one streamed line).
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// One HTTP answer.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    /// Header names lowercased.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

impl Reply {
    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

fn timeout_error(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::TimedOut, what.to_string())
}

fn head(method: &str, addr: &str, path: &str, headers: &[(&str, &str)], len: usize) -> String {
    let mut text = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {len}\r\n");
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    text
}

/// Sends one request to `addr` (`host:port`) and reads the whole answer.
pub async fn request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Reply> {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await?;
        let mut text = head(method, addr, path, headers, body.len());
        text.push_str("Connection: close\r\n\r\n");
        stream.write_all(text.as_bytes()).await?;
        // A server may answer (and close) before reading a large body.
        let _ = stream.write_all(body).await;
        // A server that answers without reading the body may reset the
        // connection after its answer: keep what arrived.
        let mut raw = Vec::new();
        let mut buf = [0u8; 16 * 1024];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => raw.extend_from_slice(&buf[..n]),
                Err(e) if raw.is_empty() => return Err(e),
                Err(_) => break,
            }
        }
        parse_reply(&raw)
    };
    tokio::time::timeout(HTTP_TIMEOUT, exchange)
        .await
        .map_err(|_| timeout_error("HTTP exchange timed out"))?
}

/// Splits a raw answer into status, headers and (de-chunked) body; a `100
/// Continue` before the answer is skipped.
fn parse_reply(mut raw: &[u8]) -> std::io::Result<Reply> {
    let bad = |why: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, why.to_string());
    loop {
        let end = find(raw, b"\r\n\r\n").ok_or_else(|| bad("no end of headers"))?;
        let head = String::from_utf8_lossy(&raw[..end]).into_owned();
        let rest = &raw[end + 4..];
        let mut lines = head.split("\r\n");
        let status: u16 = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("no status line"))?;
        if status == 100 {
            raw = rest;
            continue;
        }
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let chunked = headers
            .iter()
            .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
        let body = if chunked {
            dechunk(rest).0
        } else {
            rest.to_vec()
        };
        return Ok(Reply {
            status,
            headers,
            body,
        });
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Decodes the complete chunks at the start of `raw`: the data, and how many
/// bytes they took (a cut last chunk is left for later).
fn dechunk(raw: &[u8]) -> (Vec<u8>, usize) {
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(line_end) = find(&raw[at..], b"\r\n") {
        let size_text = String::from_utf8_lossy(&raw[at..at + line_end]).into_owned();
        let Ok(size) = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
        else {
            break;
        };
        let data_start = at + line_end + 2;
        if size == 0 || raw.len() < data_start + size + 2 {
            break;
        }
        out.extend_from_slice(&raw[data_start..data_start + size]);
        at = data_start + size + 2;
    }
    (out, at)
}

/// A streaming answer read line by line (a watch).
pub struct Stream {
    socket: TcpStream,
    /// Raw bytes not yet decoded.
    raw: Vec<u8>,
    /// Decoded body bytes not yet returned as lines.
    body: Vec<u8>,
    status: Option<u16>,
}

impl Stream {
    /// Sends `body` to `path` and keeps the connection open for the answer.
    pub async fn open(addr: &str, path: &str, body: &[u8]) -> std::io::Result<Stream> {
        let mut socket = TcpStream::connect(addr).await?;
        let mut text = head("POST", addr, path, &[], body.len());
        text.push_str("\r\n");
        socket.write_all(text.as_bytes()).await?;
        socket.write_all(body).await?;
        Ok(Stream {
            socket,
            raw: Vec::new(),
            body: Vec::new(),
            status: None,
        })
    }

    /// The HTTP status, once the head has arrived.
    pub fn status(&self) -> Option<u16> {
        self.status
    }

    /// The next line of the body, parsed as JSON (bounded wait).
    pub async fn next_json(&mut self) -> std::io::Result<Value> {
        let line = tokio::time::timeout(HTTP_TIMEOUT, self.next_line())
            .await
            .map_err(|_| timeout_error("no streamed line in time"))??;
        serde_json::from_str(&line)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    }

    async fn next_line(&mut self) -> std::io::Result<String> {
        loop {
            if self.status.is_some()
                && let Some(end) = self.body.iter().position(|&b| b == b'\n')
            {
                let line: Vec<u8> = self.body.drain(..=end).collect();
                return Ok(String::from_utf8_lossy(&line).trim().to_string());
            }
            if self.status.is_none()
                && let Some(end) = find(&self.raw, b"\r\n\r\n")
            {
                let head = String::from_utf8_lossy(&self.raw[..end]).into_owned();
                let status = head.split(' ').nth(1).and_then(|s| s.parse().ok());
                self.status = Some(status.unwrap_or(0));
                self.raw.drain(..end + 4);
                continue;
            }
            if self.status.is_some() {
                let (data, used) = dechunk(&self.raw);
                if used > 0 {
                    self.body.extend_from_slice(&data);
                    self.raw.drain(..used);
                    continue;
                }
            }
            let mut buf = [0u8; 16 * 1024];
            let n = self.socket.read(&mut buf).await?;
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "stream closed",
                ));
            }
            self.raw.extend_from_slice(&buf[..n]);
        }
    }
}

/// Removes what differs between two servers by construction from a JSON
/// answer: `cluster_id`, `member_id` and `raft_term` of every header
/// (anywhere in the value, so txn responses and stream results too), and
/// the order of a lease list.
pub fn normalise(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if let Some(Value::Object(header)) = map.get_mut("header") {
                for field in ["cluster_id", "member_id", "raft_term"] {
                    header.remove(field);
                }
            }
            // etcd lists leases in Go map order, which is random.
            if let Some(Value::Array(leases)) = map.get_mut("leases") {
                leases.sort_by_key(|lease| lease["ID"].as_str().unwrap_or_default().to_string());
            }
            for v in map.values_mut() {
                normalise(v);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(normalise),
        _ => {}
    }
}

/// A body for comparison: JSON lines as normalised values, anything else
/// as text.
pub fn comparable(reply: &Reply) -> Vec<Result<Value, String>> {
    let text = reply.text();
    let lines: Vec<&str> = text.split('\n').filter(|l| !l.trim().is_empty()).collect();
    if lines.is_empty() {
        return Vec::new();
    }
    lines
        .iter()
        .map(|line| match serde_json::from_str::<Value>(line) {
            Ok(mut v) => {
                normalise(&mut v);
                Ok(v)
            }
            Err(_) => Err(line.to_string()),
        })
        .collect()
}

/// One random gateway request.
#[derive(Debug, Clone)]
pub struct GatewayRequest {
    pub method: &'static str,
    pub path: String,
    pub body: Vec<u8>,
}

/// Seeded random gateway requests.
pub struct Generator {
    rng: StdRng,
}

const KEYS: [&str; 4] = ["a", "b", "c", "d"];
/// Lease ids the generator grants and uses (explicit, so both servers agree).
const LEASES: [i64; 3] = [1001, 1002, 1003];

impl Generator {
    pub fn new(seed: u64) -> Generator {
        Generator {
            rng: StdRng::seed_from_u64(seed),
        }
    }

    fn key(&mut self) -> String {
        b64(KEYS[self.rng.gen_range(0..KEYS.len())])
    }

    /// A field name as written by a client: proto name or lowerCamel.
    fn name(&mut self, proto: &str) -> String {
        if proto.contains('_') && self.rng.gen_bool(0.3) {
            let mut out = String::new();
            let mut upper = false;
            for c in proto.chars() {
                if c == '_' {
                    upper = true;
                } else if upper {
                    out.push(c.to_ascii_uppercase());
                    upper = false;
                } else {
                    out.push(c);
                }
            }
            out
        } else {
            proto.to_string()
        }
    }

    /// An int64 as a number or a quoted number (both accepted).
    fn int(&mut self, n: i64) -> Value {
        if self.rng.gen_bool(0.3) {
            json!(n.to_string())
        } else {
            json!(n)
        }
    }

    fn range_body(&mut self) -> Value {
        let mut body = serde_json::Map::new();
        body.insert("key".into(), json!(self.key()));
        if self.rng.gen_bool(0.4) {
            body.insert(self.name("range_end"), json!(b64("z")));
        }
        if self.rng.gen_bool(0.3) {
            body.insert("limit".into(), {
                let n = self.rng.gen_range(0..3);
                self.int(n)
            });
        }
        if self.rng.gen_bool(0.2) {
            let order = ["NONE", "ASCEND", "DESCEND"][self.rng.gen_range(0..3)];
            body.insert(self.name("sort_order"), json!(order));
            let target = ["KEY", "VERSION", "CREATE", "MOD", "VALUE"][self.rng.gen_range(0..5)];
            body.insert(self.name("sort_target"), json!(target));
        }
        for flag in ["keys_only", "count_only", "serializable"] {
            if self.rng.gen_bool(0.15) {
                body.insert(self.name(flag), json!(true));
            }
        }
        if self.rng.gen_bool(0.1) {
            body.insert("revision".into(), {
                let n = self.rng.gen_range(0..6);
                self.int(n)
            });
        }
        Value::Object(body)
    }

    fn put_body(&mut self) -> Value {
        let mut body = serde_json::Map::new();
        body.insert("key".into(), json!(self.key()));
        let value = format!("v{}", self.rng.gen_range(0..100));
        body.insert("value".into(), json!(b64(&value)));
        if self.rng.gen_bool(0.2) {
            body.insert(self.name("prev_kv"), json!(true));
        }
        if self.rng.gen_bool(0.1) {
            body.insert("lease".into(), {
                let n = LEASES[self.rng.gen_range(0..3)];
                self.int(n)
            });
        }
        if self.rng.gen_bool(0.05) {
            body.insert(self.name("ignore_value"), json!(true));
        }
        Value::Object(body)
    }

    fn delete_body(&mut self) -> Value {
        let mut body = serde_json::Map::new();
        body.insert("key".into(), json!(self.key()));
        if self.rng.gen_bool(0.3) {
            body.insert(self.name("range_end"), json!(b64("z")));
        }
        if self.rng.gen_bool(0.3) {
            body.insert(self.name("prev_kv"), json!(true));
        }
        Value::Object(body)
    }

    fn txn_body(&mut self) -> Value {
        let mut compare = Vec::new();
        for _ in 0..self.rng.gen_range(0..3) {
            let result = ["EQUAL", "GREATER", "LESS", "NOT_EQUAL"][self.rng.gen_range(0..4)];
            let mut c = serde_json::Map::new();
            c.insert("key".into(), json!(self.key()));
            c.insert("result".into(), json!(result));
            match self.rng.gen_range(0..3) {
                0 => {
                    c.insert("target".into(), json!("VERSION"));
                    c.insert("version".into(), {
                        let n = self.rng.gen_range(0..3);
                        self.int(n)
                    });
                }
                1 => {
                    c.insert("target".into(), json!("MOD"));
                    c.insert(self.name("mod_revision"), {
                        let n = self.rng.gen_range(0..8);
                        self.int(n)
                    });
                }
                _ => {
                    c.insert("target".into(), json!("VALUE"));
                    let value = format!("v{}", self.rng.gen_range(0..100));
                    c.insert("value".into(), json!(b64(&value)));
                }
            }
            compare.push(Value::Object(c));
        }
        let ops = |this: &mut Self| -> Vec<Value> {
            (0..this.rng.gen_range(0..3))
                .map(|_| match this.rng.gen_range(0..3) {
                    0 => json!({ this.name("request_range"): this.range_body() }),
                    1 => json!({ this.name("request_put"): this.put_body() }),
                    _ => json!({ this.name("request_delete_range"): this.delete_body() }),
                })
                .collect()
        };
        let success = ops(self);
        let failure = ops(self);
        json!({ "compare": compare, "success": success, "failure": failure })
    }

    /// A valid-looking body for a path.
    fn body_for(&mut self, path: &str) -> Value {
        match path {
            "kv/range" => self.range_body(),
            "kv/put" => self.put_body(),
            "kv/deleterange" => self.delete_body(),
            "kv/txn" => self.txn_body(),
            "kv/compaction" => {
                let n = self.rng.gen_range(0..10);
                json!({ "revision": self.int(n) })
            }
            "lease/grant" => {
                let id = LEASES[self.rng.gen_range(0..3)];
                json!({ "TTL": self.int(600), "ID": self.int(id) })
            }
            "lease/revoke" | "kv/lease/revoke" | "lease/keepalive" => {
                let id = LEASES[self.rng.gen_range(0..3)];
                json!({ "ID": self.int(id) })
            }
            "lease/timetolive" => json!({ "ID": 999, "keys": self.rng.gen_bool(0.5) }),
            "maintenance/alarm" => {
                if self.rng.gen_bool(0.5) {
                    json!({ "action": "GET" })
                } else {
                    json!({ "action": "DEACTIVATE", "memberID": 5, "alarm": "NOSPACE" })
                }
            }
            // Locks and elections by lease: one name per lease, so no call
            // waits for another lease's holder (999 is never granted).
            "lock/lock" => {
                let id = self.lock_lease();
                json!({ "name": b64(&format!("l{id}")), "lease": id })
            }
            "lock/unlock" => {
                let id = self.lock_lease();
                if self.rng.gen_bool(0.2) {
                    json!({})
                } else {
                    json!({ "key": b64(&format!("l{id}/{id:x}")) })
                }
            }
            "election/campaign" => {
                let id = self.lock_lease();
                let value = format!("c{}", self.rng.gen_range(0..10));
                json!({ "name": b64(&format!("e{id}")), "lease": id, "value": b64(&value) })
            }
            "election/leader" => {
                let id = self.lock_lease();
                json!({ "name": b64(&format!("e{id}")) })
            }
            "election/proclaim" | "election/resign" => {
                let id = self.lock_lease();
                let rev = self.rng.gen_range(0..40);
                let value = format!("p{}", self.rng.gen_range(0..10));
                json!({
                    "leader": {
                        "name": b64(&format!("e{id}")),
                        "key": b64(&format!("e{id}/{id:x}")),
                        "rev": rev,
                        "lease": id,
                    },
                    "value": b64(&value),
                })
            }
            _ => json!({}),
        }
    }

    /// A lease for a lock or an election: one of [`LEASES`], or one never
    /// granted.
    fn lock_lease(&mut self) -> i64 {
        if self.rng.gen_bool(0.2) {
            999
        } else {
            LEASES[self.rng.gen_range(0..LEASES.len())]
        }
    }

    /// Breaks a body in one of the ways clients do.
    fn break_body(&mut self, body: &Value) -> Vec<u8> {
        let text = body.to_string();
        match self.rng.gen_range(0..12) {
            0 => {
                let cut = self.rng.gen_range(0..text.len().max(1));
                text.as_bytes()[..cut].to_vec()
            }
            // A byte replaced, inserted or removed somewhere: every state of
            // Go's JSON scanner, and its error text for each.
            10 | 11 => {
                const SIGNIFICANT: &[u8] = b"{}[]:,\"\\ \tfn0-1.eE+xu/\x01\xc3";
                let mut bytes = text.into_bytes();
                let at = self.rng.gen_range(0..bytes.len().max(1));
                let c = SIGNIFICANT[self.rng.gen_range(0..SIGNIFICANT.len())];
                match self.rng.gen_range(0..3) {
                    0 if at < bytes.len() => bytes[at] = c,
                    1 => bytes.insert(at.min(bytes.len()), c),
                    _ if at < bytes.len() => {
                        bytes.remove(at);
                    }
                    _ => bytes.push(c),
                }
                bytes
            }
            1 => {
                let mut b = body.clone();
                if let Value::Object(m) = &mut b {
                    let wrong = [
                        json!(5),
                        json!(true),
                        json!([1]),
                        json!({}),
                        json!("!!"),
                        json!(1.5),
                        json!(null),
                        json!("7"),
                        json!(-1),
                    ][self.rng.gen_range(0..9)]
                    .clone();
                    let field = [
                        "key",
                        "limit",
                        "value",
                        "revision",
                        "ID",
                        "TTL",
                        "keys_only",
                        "compare",
                        "lease",
                        "success",
                    ][self.rng.gen_range(0..10)];
                    m.insert(field.into(), wrong);
                }
                b.to_string().into_bytes()
            }
            2 => {
                let mut b = body.clone();
                if let Value::Object(m) = &mut b {
                    m.insert("no_such_field".into(), json!({"x": [1, 2]}));
                }
                b.to_string().into_bytes()
            }
            3 => [
                b"xyz".as_slice(),
                b"[]",
                b"null",
                b"\"str\"",
                b"12",
                b"{\"a\" 1}",
                b"{,}",
                b"tru",
            ][self.rng.gen_range(0..8)]
            .to_vec(),
            4 => Vec::new(),
            5 => br#"{"key":"Zm9","range_end":"%%%%"}"#.to_vec(),
            6 => br#"{"key":"YQ==","sort_order":"SIDEWAYS"}"#.to_vec(),
            7 => br#"{"key":"YQ==","limit":"1 2"}"#.to_vec(),
            8 => format!("{text} trailing garbage").into_bytes(),
            _ => br#"{"key":"YQ==","limit":"","revision":"-1"}"#.to_vec(),
        }
    }

    /// The next request.
    pub fn next_request(&mut self) -> GatewayRequest {
        const PATHS: [&str; 22] = [
            "kv/range",
            "kv/put",
            "kv/deleterange",
            "kv/txn",
            "kv/compaction",
            "kv/range",
            "kv/put",
            "kv/txn",
            "lease/grant",
            "lease/revoke",
            "kv/lease/revoke",
            "lease/leases",
            "lease/keepalive",
            "lease/timetolive",
            "watch",
            "maintenance/alarm",
            "lock/lock",
            "lock/unlock",
            "election/campaign",
            "election/leader",
            "election/proclaim",
            "election/resign",
        ];
        let roll = self.rng.gen_range(0..100);
        let prefix = if self.rng.gen_bool(0.1) {
            "/v3beta/"
        } else {
            "/v3/"
        };
        if roll < 4 {
            let path = [
                "kv/nope",
                "kv/range/",
                "nope",
                "kv",
                "kv/range:x",
                "lock",
                "/kv/range",
                "kv/./range",
            ][self.rng.gen_range(0..8)];
            return GatewayRequest {
                method: "POST",
                path: format!("{prefix}{path}"),
                body: b"{}".to_vec(),
            };
        }
        let path = PATHS[self.rng.gen_range(0..PATHS.len())];
        let method = if roll < 8 {
            ["GET", "PUT", "DELETE"][self.rng.gen_range(0..3)]
        } else {
            "POST"
        };
        let body = if path == "watch" {
            // A valid watch stays open: watch bodies are always broken, and
            // broken in their first value.
            const BROKEN_WATCHES: [&[u8]; 9] = [
                b"xyz",
                b"[]",
                b"\"str\"",
                b"12",
                b"{\"a\" 1}",
                b"{,}",
                b"tru",
                br#"{"create_request":{"key":5}}"#,
                br#"{"create_request":{"key":"YQ==","start_revision":"x"}}"#,
            ];
            BROKEN_WATCHES[self.rng.gen_range(0..BROKEN_WATCHES.len())].to_vec()
        } else {
            let body = self.body_for(path);
            if self.rng.gen_bool(0.3) {
                let broken = self.break_body(&body);
                // A grant that still parses but names no ID gets a random
                // one, and so does a lock or a campaign naming no lease (a
                // session lease): no two servers share those. Keep their
                // breaks to those that fail or keep the ID.
                let needs = match path {
                    "lease/grant" => Some("ID"),
                    "lock/lock" | "election/campaign" => Some("lease"),
                    _ => None,
                };
                // The first JSON value, as Go's decoder reads it (whatever
                // follows it is never read; invalid UTF-8 in a string reads
                // as U+FFFD).
                let lossy = String::from_utf8_lossy(&broken);
                let mut parsed: Option<Value> = serde_json::Deserializer::from_str(&lossy)
                    .into_iter::<Value>()
                    .next()
                    .and_then(Result::ok);
                // Proclaim and Resign open a session on their leader key's
                // lease (when there is a leader key).
                let needs = if matches!(path, "election/proclaim" | "election/resign") {
                    parsed = parsed.and_then(|v| v.get("leader").cloned());
                    parsed.as_ref().map(|_| "lease")
                } else {
                    needs
                };
                let empty = broken.iter().all(u8::is_ascii_whitespace);
                let unnamed = |field: &str| {
                    empty
                        || parsed.as_ref().is_some_and(|v| {
                            !v.is_object()
                                || v.get(field).is_none_or(|f| f.is_null() || *f == json!(0))
                        })
                };
                match needs {
                    Some(field) if unnamed(field) => b"12".to_vec(),
                    _ => broken,
                }
            } else {
                body.to_string().into_bytes()
            }
        };
        GatewayRequest {
            method,
            path: format!("{prefix}{path}"),
            body,
        }
    }
}

/// Standard base64 (padded) of a text: how the gateway carries bytes.
pub fn b64(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// Decodes standard base64: the gateway's `bytes` fields (empty when the
/// text is not base64, which a comparison then shows).
pub fn unb64(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_bodies_and_base64() {
        let raw = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 400 Bad Request\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        let reply = parse_reply(raw).expect("parses");
        assert_eq!(reply.status, 400);
        assert_eq!(reply.body, b"abcde");
        assert_eq!(b64("foo"), "Zm9v");
        assert_eq!(b64("f"), "Zg==");
        for text in ["", "f", "fo", "foo", "foob"] {
            assert_eq!(unb64(&b64(text)), text.as_bytes());
        }
    }

    #[test]
    fn headers_lose_their_ids() {
        let mut v = json!({"header":{"cluster_id":"1","member_id":"2","raft_term":"3","revision":"4"},
            "responses":[{"response_range":{"header":{"revision":"4"}}}]});
        normalise(&mut v);
        assert_eq!(
            v,
            json!({"header":{"revision":"4"},"responses":[{"response_range":{"header":{"revision":"4"}}}]})
        );
    }
}
