//! Auth tokens against etcd 3.4: simple-token expiry, JWT tokens, and a
//! flood of failed logins.
//!
//! A simple token (`--auth-token-ttl 2`):
//!
//! 1. Start etcd and oxcd with `--auth-token-ttl=2`, enable auth, add user
//!    `u` (role `r`: readwrite on prefix `k`), and take one token to keep
//!    busy and [`SPARE_TOKENS`] spare tokens that nobody uses.
//! 2. Loop, bounded by a deadline: every [`PROBE_INTERVAL`] the busy token
//!    reads (it must never be refused), and the next unused spare token is
//!    tried once (a use renews a simple token, so each spare is tried only
//!    once). The loop ends when a spare is refused, and goes on reading with
//!    the busy token until it has been in use for twice the TTL.
//! 3. Both servers must refuse the expired spare with the same code and
//!    message ("etcdserver: invalid auth token"), no earlier than the TTL
//!    after it was issued and no later than the TTL plus etcd's one-second
//!    sweep and some slack; the busy token must still work, and logging in
//!    again must give a working token.
//!
//! JWT (`--auth-token jwt,pub-key=...,priv-key=...,sign-method=...`), for
//! ES256 (keys from rcgen) and RS256 (keys from the `openssl` CLI, when it
//! is installed):
//!
//! 1. Start both with the same key pair, enable auth, add `u` as above.
//! 2. Each server's token must be a JWT signed with the method, carrying
//!    the same claims (`username`, `revision`, `exp` about five minutes
//!    ahead) on both.
//! 3. The token's reads and writes, inside and outside `u`'s permissions,
//!    a token with its signature or its claims tampered with, and each
//!    server's token used on the other server (same keys, so it verifies)
//!    must be answered alike; then root changes a permission, and the token,
//!    now carrying an old auth revision, must be refused alike ("etcdserver:
//!    revision of auth store is old" on etcd) while a fresh login works.
//!
//! A flood: [`FLOOD`] concurrent Authenticate calls with wrong passwords and
//! unknown users (default `--bcrypt-cost`) against etcd, then oxcd, twice,
//! while a reader keeps reading as root. Every refusal must read as etcd's,
//! the reader must be served throughout, logging in must still work after
//! it, and the server's resident memory must not grow by more than
//! [`FLOOD_RSS_GROWTH_KIB`] over the first round and
//! [`FLOOD_RSS_REGROWTH_KIB`] over the second.
//!
//! `OXCD_BIN=/usr/bin/etcd` runs them with etcd on both sides.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use integration::auth::{
    Answer, ROOT_PASSWORD, Token, authenticate, enable_auth, rss_kib, show_answer, with_token,
};
use integration::kv_ops::RpcError;
use integration::{Server, ServerOpts};
use proto::authpb::Permission;
use proto::authpb::permission::Type as PermType;
use proto::etcdserverpb::auth_client::AuthClient;
use proto::etcdserverpb::kv_client::KvClient;
use proto::etcdserverpb::{
    AuthRoleAddRequest, AuthRoleGrantPermissionRequest, AuthUserAddRequest, AuthUserGetRequest,
    AuthUserGrantRoleRequest, PutRequest, RangeRequest,
};
use serde_json::Value;
use tonic::Code;
use tonic::transport::Channel;

/// The simple-token TTL given with `--auth-token-ttl`, in seconds.
const TTL_SECS: u64 = 2;
/// Unused tokens taken for the expiry probes (each is tried once).
const SPARE_TOKENS: usize = 20;
/// Pause between two probes of the expiry loop.
const PROBE_INTERVAL: Duration = Duration::from_millis(300);
/// etcd sweeps expired simple tokens once a second.
const SWEEP: Duration = Duration::from_secs(1);
/// Allowance for a loaded machine on top of TTL + sweep + probe interval.
const SLACK: Duration = Duration::from_millis(1500);
/// Concurrent failed Authenticate calls in the flood.
const FLOOD: usize = 200;
/// How much a server's resident memory may grow over the first flood.
const FLOOD_RSS_GROWTH_KIB: u64 = 200 * 1024;
/// How much it may grow over a second, identical flood (memory must level
/// off, not grow with the number of failed logins).
const FLOOD_RSS_REGROWTH_KIB: u64 = 32 * 1024;
/// etcd's refusal of an unknown or expired token.
const INVALID_TOKEN: &str = "etcdserver: invalid auth token";
/// The password of user `u`.
const U_PASSWORD: &str = "u-pw";

/// Adds user `u` with role `r` (readwrite on prefix `k`), as root.
async fn add_user_u(channel: &Channel, root: &Token) -> Result<(), String> {
    let mut auth = AuthClient::new(channel.clone());
    let fail = |what: &'static str| move |s: tonic::Status| format!("{what}: {s:?}");
    auth.user_add(with_token(
        AuthUserAddRequest {
            name: "u".to_string(),
            password: U_PASSWORD.to_string(),
            options: None,
        },
        root,
    ))
    .await
    .map_err(fail("UserAdd u"))?;
    auth.role_add(with_token(
        AuthRoleAddRequest {
            name: "r".to_string(),
        },
        root,
    ))
    .await
    .map_err(fail("RoleAdd r"))?;
    grant(channel, root, b"k", b"l").await?;
    auth.user_grant_role(with_token(
        AuthUserGrantRoleRequest {
            user: "u".to_string(),
            role: "r".to_string(),
        },
        root,
    ))
    .await
    .map_err(fail("UserGrantRole u r"))?;
    Ok(())
}

/// Grants role `r` readwrite on `[key, end)`, as root.
async fn grant(channel: &Channel, root: &Token, key: &[u8], end: &[u8]) -> Result<(), String> {
    let perm = Permission {
        perm_type: PermType::Readwrite as i32,
        key: key.to_vec(),
        range_end: end.to_vec(),
    };
    AuthClient::new(channel.clone())
        .role_grant_permission(with_token(
            AuthRoleGrantPermissionRequest {
                name: "r".to_string(),
                perm: Some(perm),
            },
            root,
        ))
        .await
        .map(drop)
        .map_err(|s| format!("RoleGrantPermission r: {s:?}"))
}

/// Starts a server of each kind with `args`, enables auth and adds user
/// `u`; returns each with a channel and root's token.
async fn start_pair_with_u(args: Vec<String>) -> [(Server, Channel, Token); 2] {
    let opts = ServerOpts {
        extra_args: args,
        ..ServerOpts::default()
    };
    let (etcd, oxcd) = Server::start_pair(opts).await;
    let (etcd, oxcd) = tokio::join!(prepare(etcd), prepare(oxcd));
    [etcd, oxcd]
}

async fn prepare(server: Server) -> (Server, Channel, Token) {
    let name = server.kind().name();
    let channel = server.channel().await.expect("connect");
    enable_auth(&channel)
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let root = authenticate(&channel, "root", ROOT_PASSWORD)
        .await
        .map(Token::Value)
        .unwrap_or_else(|e| panic!("{name}: authenticate root: {e:?}"));
    add_user_u(&channel, &root)
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    (server, channel, root)
}

/// A linearizable read of `key` with `token`.
async fn read(channel: &Channel, key: &[u8], token: &Token) -> Answer {
    let request = RangeRequest {
        key: key.to_vec(),
        ..Default::default()
    };
    KvClient::new(channel.clone())
        .range(with_token(request, token))
        .await
        .map(|r| format!("count={}", r.into_inner().count))
        .map_err(RpcError::from)
}

/// A put of `key` with `token`.
async fn write(channel: &Channel, key: &[u8], token: &Token) -> Answer {
    let request = PutRequest {
        key: key.to_vec(),
        value: b"v".to_vec(),
        ..Default::default()
    };
    KvClient::new(channel.clone())
        .put(with_token(request, token))
        .await
        .map(|_| "put".to_string())
        .map_err(RpcError::from)
}

async fn login_u(channel: &Channel) -> Token {
    authenticate(channel, "u", U_PASSWORD)
        .await
        .map(Token::Value)
        .unwrap_or_else(|e| panic!("authenticate u: {e:?}"))
}

/// What the expiry loop saw on one server.
#[derive(Debug)]
struct Expiry {
    /// The spare's refusal and how long after its issue it was tried.
    refused: Option<(RpcError, Duration)>,
    /// How many spares were still valid when tried.
    spares_alive: usize,
    /// Refusals of the busy token (there must be none).
    busy_refusals: Vec<RpcError>,
    /// How long the busy token was kept in use.
    busy_for: Duration,
    /// The busy token's read after the loop.
    busy_after: Answer,
    /// A read with a fresh login's token.
    relogin: Answer,
}

/// Steps 1 and 2 of the simple-token part on one server.
async fn watch_a_token_expire(channel: Channel) -> Expiry {
    let busy = login_u(&channel).await;
    let busy_since = Instant::now();
    let mut spares = Vec::with_capacity(SPARE_TOKENS);
    for _ in 0..SPARE_TOKENS {
        let token = login_u(&channel).await;
        spares.push((token, Instant::now()));
    }
    let ttl = Duration::from_secs(TTL_SECS);
    let deadline = Instant::now() + ttl + SWEEP + SLACK + PROBE_INTERVAL * 4;
    let mut expiry = Expiry {
        refused: None,
        spares_alive: 0,
        busy_refusals: Vec::new(),
        busy_for: Duration::ZERO,
        busy_after: Err(RpcError {
            code: Code::Unknown,
            message: "not tried".to_string(),
        }),
        relogin: Err(RpcError {
            code: Code::Unknown,
            message: "not tried".to_string(),
        }),
    };
    let mut next_spare = spares.into_iter();
    loop {
        if let Err(e) = read(&channel, b"k1", &busy).await {
            expiry.busy_refusals.push(e);
        }
        let busy_long_enough = busy_since.elapsed() >= ttl * 2;
        if expiry.refused.is_none() {
            match next_spare.next() {
                Some((token, issued)) => {
                    let tried = issued.elapsed();
                    match read(&channel, b"k1", &token).await {
                        Ok(_) => expiry.spares_alive += 1,
                        Err(e) => expiry.refused = Some((e, tried)),
                    }
                }
                None => break,
            }
        } else if busy_long_enough {
            break;
        }
        if Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(PROBE_INTERVAL).await;
    }
    expiry.busy_for = busy_since.elapsed();
    expiry.busy_after = read(&channel, b"k1", &busy).await;
    let fresh = login_u(&channel).await;
    expiry.relogin = read(&channel, b"k1", &fresh).await;
    expiry
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unused_simple_token_expires_after_the_ttl_and_a_used_one_does_not() {
    let [(_etcd, etcd_ch, _), (_oxcd, oxcd_ch, _)] = start_pair_with_u(vec![
        "--bcrypt-cost=4".to_string(),
        format!("--auth-token-ttl={TTL_SECS}"),
    ])
    .await;
    let (etcd, oxcd) = tokio::join!(watch_a_token_expire(etcd_ch), watch_a_token_expire(oxcd_ch));
    println!("etcd: {etcd:?}\noxcd: {oxcd:?}");
    let ttl = Duration::from_secs(TTL_SECS);
    for (name, seen) in [("etcd", &etcd), ("oxcd", &oxcd)] {
        let Some((error, after)) = &seen.refused else {
            panic!("{name}: no spare token expired ({seen:?})");
        };
        assert_eq!(
            (error.code, error.message.as_str()),
            (Code::Unauthenticated, INVALID_TOKEN),
            "{name}: an expired token's refusal ({seen:?})"
        );
        // The probe is timed from after the login returned, so it can only
        // overstate the token's age by the login's own latency.
        assert!(
            *after + Duration::from_millis(100) >= ttl,
            "{name}: a token expired {after:?} after its issue, before the TTL of {ttl:?}"
        );
        assert!(
            *after <= ttl + SWEEP + PROBE_INTERVAL + SLACK,
            "{name}: a token was still accepted until {after:?} after its issue (TTL {ttl:?})"
        );
        assert!(
            seen.busy_refusals.is_empty(),
            "{name}: the token in use was refused: {:?}",
            seen.busy_refusals
        );
        assert!(
            seen.busy_for >= ttl * 2,
            "{name}: the busy token was only kept {:?}",
            seen.busy_for
        );
        assert!(
            seen.busy_after.is_ok(),
            "{name}: busy token after: {}",
            show_answer(&seen.busy_after)
        );
        assert!(
            seen.relogin.is_ok(),
            "{name}: fresh login: {}",
            show_answer(&seen.relogin)
        );
    }
}

/// One JWT signing setup: the method and its key files.
struct JwtKeys {
    method: &'static str,
    _dir: tempfile::TempDir,
    public: String,
    private: String,
}

impl JwtKeys {
    fn flag(&self) -> String {
        format!(
            "--auth-token=jwt,pub-key={},priv-key={},sign-method={}",
            self.public, self.private, self.method
        )
    }
}

/// An ES256 key pair from rcgen.
fn es256_keys() -> JwtKeys {
    let dir = tempfile::tempdir().expect("key dir");
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("P-256 key");
    let public = dir.path().join("jwt.pub.pem");
    let private = dir.path().join("jwt.pem");
    std::fs::write(&public, pair.public_key_pem()).expect("write public key");
    std::fs::write(&private, pair.serialize_pem()).expect("write private key");
    JwtKeys {
        method: "ES256",
        public: public.display().to_string(),
        private: private.display().to_string(),
        _dir: dir,
    }
}

/// An RS256 key pair from the `openssl` CLI, if it is installed (ring, and
/// so rcgen, cannot generate RSA keys).
fn rs256_keys() -> Option<JwtKeys> {
    let openssl = Path::new("/usr/bin/openssl");
    if !openssl.is_file() {
        return None;
    }
    let dir = tempfile::tempdir().expect("key dir");
    let public = dir.path().join("jwt.pub.pem");
    let private = dir.path().join("jwt.pem");
    let run = |args: &[&str]| {
        let status = std::process::Command::new(openssl)
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .expect("run openssl");
        assert!(status.success(), "openssl {args:?}: {status}");
    };
    let private_s = private.display().to_string();
    let public_s = public.display().to_string();
    run(&["genrsa", "-out", &private_s, "2048"]);
    run(&["rsa", "-in", &private_s, "-pubout", "-out", &public_s]);
    Some(JwtKeys {
        method: "RS256",
        public: public_s,
        private: private_s,
        _dir: dir,
    })
}

/// Decodes unpadded base64url (a JWT segment).
fn base64url(text: &str) -> Option<Vec<u8>> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'-' => Some(62),
        b'_' => Some(63),
        _ => None,
    };
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes() {
        acc = (acc << 6) | u32::from(value(c)?);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

/// Encodes unpadded base64url.
fn base64url_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n =
            chunk.iter().fold(0u32, |acc, &b| (acc << 8) | u32::from(b)) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

/// A JWT's header and claims.
fn jwt_parts(token: &str) -> Option<(Value, Value)> {
    let mut parts = token.split('.');
    let header = serde_json::from_slice(&base64url(parts.next()?)?).ok()?;
    let claims = serde_json::from_slice(&base64url(parts.next()?)?).ok()?;
    parts.next()?;
    parts.next().is_none().then_some((header, claims))
}

/// The token with one character of its signature changed: one well inside
/// it, as the last character of a base64url segment may carry only padding
/// bits a decoder ignores.
fn bad_signature(token: &str) -> String {
    let Some(dot) = token.rfind('.') else {
        return format!("{token}x");
    };
    let mut bytes = token.as_bytes().to_vec();
    let at = dot + 1 + (bytes.len() - dot - 1) / 2;
    if let Some(b) = bytes.get_mut(at) {
        *b = if *b == b'A' { b'B' } else { b'A' };
    }
    String::from_utf8(bytes).unwrap_or_default()
}

/// The token claiming to be root, with the original signature.
fn forged_claims(token: &str) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    let Some((_, mut claims)) = jwt_parts(token) else {
        return token.to_string();
    };
    claims["username"] = Value::String("root".to_string());
    let body = base64url_encode(claims.to_string().as_bytes());
    format!("{}.{body}.{}", parts[0], parts.get(2).unwrap_or(&""))
}

/// The claims both servers must agree on, `exp` checked against the clock.
fn claims_shape(name: &str, token: &str, method: &str) -> String {
    let (header, claims) =
        jwt_parts(token).unwrap_or_else(|| panic!("{name}: token {token:?} is not a JWT"));
    assert_eq!(
        header["alg"],
        Value::String(method.to_string()),
        "{name}: header {header}"
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let exp = claims["exp"].as_i64().unwrap_or(0);
    assert!(
        (exp - now - 300).abs() <= 30,
        "{name}: exp {exp} is not about five minutes after {now} ({claims})"
    );
    let keys: BTreeSet<&String> = claims
        .as_object()
        .map(|m| m.keys().collect())
        .unwrap_or_default();
    format!(
        "header typ={} claims={keys:?} username={} revision={}",
        header["typ"], claims["username"], claims["revision"]
    )
}

/// Runs the same named probes on both servers and collects the differences.
#[derive(Default)]
struct Diffs(Vec<String>);

impl Diffs {
    fn check(&mut self, what: &str, etcd: &Answer, oxcd: &Answer) {
        println!("{what}: etcd {}", show_answer(etcd));
        if etcd != oxcd {
            self.0.push(format!(
                "{what}\n  etcd: {}\n  oxcd: {}",
                show_answer(etcd),
                show_answer(oxcd)
            ));
        }
    }
}

async fn jwt_case(keys: JwtKeys) -> Vec<String> {
    let method = keys.method;
    let [(_etcd, e, e_root), (_oxcd, o, o_root)] =
        start_pair_with_u(vec!["--bcrypt-cost=4".to_string(), keys.flag()]).await;
    let mut diffs = Diffs::default();
    let (e_tok, o_tok) = tokio::join!(login_u(&e), login_u(&o));
    let (Token::Value(e_text), Token::Value(o_text)) = (&e_tok, &o_tok) else {
        panic!("login gave no token");
    };
    let shapes = (
        claims_shape("etcd", e_text, method),
        claims_shape("oxcd", o_text, method),
    );
    diffs.check(
        &format!("{method} token claims"),
        &Ok(shapes.0),
        &Ok(shapes.1),
    );

    let (a, b) = tokio::join!(read(&e, b"k1", &e_tok), read(&o, b"k1", &o_tok));
    diffs.check(&format!("{method} read inside the permission"), &a, &b);
    let (a, b) = tokio::join!(write(&e, b"k1", &e_tok), write(&o, b"k1", &o_tok));
    diffs.check(&format!("{method} write inside the permission"), &a, &b);
    let (a, b) = tokio::join!(read(&e, b"x", &e_tok), read(&o, b"x", &o_tok));
    diffs.check(&format!("{method} read outside the permission"), &a, &b);

    let (e_bad, o_bad) = (
        Token::Value(bad_signature(e_text)),
        Token::Value(bad_signature(o_text)),
    );
    let (a, b) = tokio::join!(read(&e, b"k1", &e_bad), read(&o, b"k1", &o_bad));
    diffs.check(&format!("{method} token with a bad signature"), &a, &b);
    let (e_forged, o_forged) = (
        Token::Value(forged_claims(e_text)),
        Token::Value(forged_claims(o_text)),
    );
    let (a, b) = tokio::join!(read(&e, b"x", &e_forged), read(&o, b"x", &o_forged));
    diffs.check(&format!("{method} token claiming root"), &a, &b);

    // Same keys: each server's token verifies on the other.
    let (a, b) = tokio::join!(read(&e, b"k1", &o_tok), read(&o, b"k1", &e_tok));
    let (a0, b0) = tokio::join!(read(&e, b"k1", &e_tok), read(&o, b"k1", &o_tok));
    diffs.check(
        &format!("{method} oxcd's token on etcd vs etcd's own"),
        &a0,
        &a,
    );
    diffs.check(
        &format!("{method} etcd's token on oxcd vs etcd's on etcd"),
        &a0,
        &b,
    );
    diffs.check(
        &format!("{method} oxcd's token on oxcd vs etcd's on etcd"),
        &a0,
        &b0,
    );

    // The auth store moves on: the token's revision claim is now old.
    let (a, b) = tokio::join!(
        grant(&e, &e_root, b"m", b"n"),
        grant(&o, &o_root, b"m", b"n")
    );
    a.unwrap_or_else(|err| panic!("etcd: {err}"));
    b.unwrap_or_else(|err| panic!("oxcd: {err}"));
    let (a, b) = tokio::join!(read(&e, b"k1", &e_tok), read(&o, b"k1", &o_tok));
    diffs.check(
        &format!("{method} read with a token older than a permission change"),
        &a,
        &b,
    );
    let (a, b) = tokio::join!(write(&e, b"k1", &e_tok), write(&o, b"k1", &o_tok));
    diffs.check(
        &format!("{method} write with a token older than a permission change"),
        &a,
        &b,
    );
    let user_get = |ch: Channel, t: Token| async move {
        AuthClient::new(ch)
            .user_get(with_token(
                AuthUserGetRequest {
                    name: "u".to_string(),
                },
                &t,
            ))
            .await
            .map(|r| format!("roles={:?}", r.into_inner().roles))
            .map_err(RpcError::from)
    };
    let (a, b) = tokio::join!(
        user_get(e.clone(), e_tok.clone()),
        user_get(o.clone(), o_tok.clone())
    );
    diffs.check(
        &format!("{method} UserGet of oneself with the old token"),
        &a,
        &b,
    );
    let (e_new, o_new) = tokio::join!(login_u(&e), login_u(&o));
    let (a, b) = tokio::join!(read(&e, b"m1", &e_new), read(&o, b"m1", &o_new));
    diffs.check(
        &format!("{method} read of the new permission after a fresh login"),
        &a,
        &b,
    );
    diffs.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_tokens_are_verified_and_carry_the_auth_revision() {
    let mut cases = vec![es256_keys()];
    match rs256_keys() {
        Some(keys) => cases.push(keys),
        None => println!("no /usr/bin/openssl: RS256 not run (rcgen cannot make RSA keys)"),
    }
    let mut diffs = Vec::new();
    for keys in cases {
        diffs.extend(jwt_case(keys).await);
    }
    assert!(
        diffs.is_empty(),
        "JWT answers differ:\n{}",
        diffs.join("\n")
    );
}

/// What one server did under the flood.
#[derive(Debug)]
struct FloodReport {
    /// The distinct answers to the failed logins.
    refusals: BTreeSet<String>,
    /// Reads served to root during the flood, and reads refused.
    reads_ok: usize,
    reads_failed: Vec<String>,
    rss_before_kib: u64,
    rss_after_kib: u64,
    /// A read and a good login after the flood.
    after: Answer,
}

async fn flood(server: &Server, channel: Channel, root: Token) -> FloodReport {
    let pid = server.pid().expect("server pid");
    // Warm up the paths the flood takes before measuring.
    for i in 0..10 {
        let _ = authenticate(&channel, "u", &format!("warm-up-{i}")).await;
    }
    let rss_before_kib = rss_kib(pid).expect("read VmRSS");
    let done = std::sync::Arc::new(tokio::sync::Notify::new());
    let reader = {
        let (channel, root, done) = (channel.clone(), root.clone(), done.clone());
        tokio::spawn(async move {
            let (mut ok, mut failed) = (0, Vec::new());
            let finished = done.notified();
            tokio::pin!(finished);
            loop {
                tokio::select! {
                    () = &mut finished => break,
                    answer = read(&channel, b"k1", &root) => match answer {
                        Ok(_) => ok += 1,
                        Err(e) => failed.push(format!("{:?} {}", e.code, e.message)),
                    },
                }
            }
            (ok, failed)
        })
    };
    let mut calls = Vec::with_capacity(FLOOD);
    for i in 0..FLOOD {
        let channel = channel.clone();
        calls.push(tokio::spawn(async move {
            let (name, password) = if i % 2 == 0 {
                ("u".to_string(), format!("wrong-{i}"))
            } else {
                (format!("ghost-{i}"), "pw".to_string())
            };
            authenticate(&channel, &name, &password).await
        }));
    }
    let mut refusals = BTreeSet::new();
    for call in calls {
        let answer = call.await.expect("login task");
        refusals.insert(show_answer(&answer.map(|_| "token issued".to_string())));
    }
    done.notify_one();
    let (reads_ok, reads_failed) = reader.await.expect("reader task");
    let rss_after_kib = rss_kib(pid).expect("read VmRSS");
    let after = match read(&channel, b"k1", &root).await {
        Ok(_) => authenticate(&channel, "u", U_PASSWORD)
            .await
            .map(|_| "read and login".to_string()),
        Err(e) => Err(e),
    };
    FloodReport {
        refusals,
        reads_ok,
        reads_failed,
        rss_before_kib,
        rss_after_kib,
        after,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_failed_logins_is_refused_as_etcd_does_and_the_node_serves_on() {
    let [(etcd, e, e_root), (oxcd, o, o_root)] = start_pair_with_u(Vec::new()).await;
    // One server after the other, so each has the machine to itself; two
    // rounds, so a one-off rise (thread stacks, allocator arenas) is told
    // apart from growth per failed login.
    let mut reports = Vec::new();
    for round in 1..=2 {
        let expected = flood(&etcd, e.clone(), e_root.clone()).await;
        let actual = flood(&oxcd, o.clone(), o_root.clone()).await;
        println!("round {round}\netcd: {expected:?}\noxcd: {actual:?}");
        assert_eq!(
            expected.refusals, actual.refusals,
            "round {round}: the failed logins were answered differently"
        );
        reports.push((round, "etcd", expected));
        reports.push((round, "oxcd", actual));
    }
    for (round, name, report) in &reports {
        assert!(
            report.reads_failed.is_empty(),
            "{name}, round {round}: reads refused during the flood: {:?}",
            report.reads_failed
        );
        assert!(
            report.reads_ok > 0,
            "{name}, round {round}: no read was served during the flood"
        );
        assert!(
            report.after.is_ok(),
            "{name}, round {round}: after the flood: {}",
            show_answer(&report.after)
        );
        let growth = report.rss_after_kib.saturating_sub(report.rss_before_kib);
        let bound = if *round == 1 {
            FLOOD_RSS_GROWTH_KIB
        } else {
            FLOOD_RSS_REGROWTH_KIB
        };
        assert!(
            growth <= bound,
            "{name}: resident memory grew by {growth} KiB over flood round {round} \
             ({} -> {} KiB; bound {bound} KiB)",
            report.rss_before_kib,
            report.rss_after_kib
        );
    }
}

#[test]
fn base64url_round_trips_and_jwts_are_split() {
    for text in ["", "a", "ab", "abc", "{\"alg\":\"ES256\",\"typ\":\"JWT\"}"] {
        let encoded = base64url_encode(text.as_bytes());
        assert!(!encoded.contains('='), "{encoded}");
        assert_eq!(
            base64url(&encoded),
            Some(text.as_bytes().to_vec()),
            "{text}"
        );
    }
    let token = format!(
        "{}.{}.c2ln",
        base64url_encode(br#"{"alg":"ES256","typ":"JWT"}"#),
        base64url_encode(br#"{"username":"u","revision":5,"exp":1}"#)
    );
    let (header, claims) = jwt_parts(&token).expect("a JWT");
    assert_eq!(header["alg"], "ES256");
    assert_eq!(claims["revision"], 5);
    let forged = forged_claims(&token);
    assert_eq!(
        jwt_parts(&forged).expect("still a JWT").1["username"],
        "root"
    );
    assert!(forged.ends_with(".c2ln"));
    assert_ne!(bad_signature(&token), token);
    assert_eq!(jwt_parts("a.b"), None);
}
