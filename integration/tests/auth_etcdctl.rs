//! etcdctl's auth commands, golden against etcd 3.4: Debian's etcdctl must
//! print the same thing against oxcd as against etcd, refusals included.
//!
//! 1. Start etcd and oxcd, fresh, with `--bcrypt-cost=4` (every `--user` run
//!    authenticates, and cost 10 would spend most of the test in bcrypt), and
//!    build each one's [`Normalizer`] from its member and cluster id.
//! 2. Run one fixed sequence of acts against both, act by act, so revisions
//!    and auth revisions line up ([`acts`]):
//!    - with auth off: `auth enable` refused without a root user, then
//!      `user add` (`name:pw`, a password on stdin, `--no-password`), `user
//!      get` (`--detail`, JSON), `user list`, `user passwd`, `role add`,
//!      `role grant-permission` (read, write, readwrite; a key, a range
//!      `key end`, `--prefix`, `--from-key`, the empty key), `role get`,
//!      `role list`, `user grant-role` / `revoke-role`, `role
//!      revoke-permission`, `user delete`, `role delete`, every refusal of
//!      them, and `auth enable` (which etcdctl completes by adding the root
//!      role);
//!    - with auth on: `get`, `put`, `del`, `watch`, `txn`, `lease grant`,
//!      `revoke`, `timetolive --keys`, `compaction`, `defrag`, `snapshot
//!      save`, `member list`, `alarm list`, `endpoint status` / `health` /
//!      `hashkv`, and the admin commands, as root, as users whose roles allow
//!      or refuse them, with a wrong password, an unknown user, a
//!      no-password user, an old password after `user passwd`, a deleted
//!      user, and no user at all; then `auth disable`.
//!    - One act runs `etcdctl watch --prefix` as a permitted user in the
//!      background, waits (bounded) until the server counts its watcher, puts
//!      under the prefix and waits for the event to be printed.
//! 3. Each output is normalised: the [`Normalizer`] (endpoint, ids, raft
//!    figures, clientv3 log timestamps), the peer URL, the scratch directory
//!    of `snapshot save`, its `size` field, and lease ids ([`LeaseIds`], the
//!    remaining TTL of `timetolive` compared within a second). Stdout,
//!    stderr and the exit code must then be equal. An act that differs
//!    against etcd's output fails the test with both outputs.
//!
//! `OXCD_BIN=/usr/bin/etcd` runs it with etcd on both sides.

use std::time::Duration;

use integration::etcdctl::{BackgroundCtl, CtlOutput, Normalizer, run_etcdctl, wait_for_watchers};
use integration::lease_check::{LeaseIds, remaining_agree};
use integration::{Server, ServerOpts};
use proto::etcdserverpb::StatusRequest;
use serde_json::Value;
use tempfile::TempDir;

/// Bound on one etcdctl run.
const CTL_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on each wait of the background watch.
const WATCH_WAIT: Duration = Duration::from_secs(30);

/// One etcdctl invocation. `{lease0}`, `{lease1}`, ... in an argument stand
/// for the hex id of the n-th lease granted on that server, `{dir}` for a
/// scratch directory of that server's.
#[derive(Debug, Clone)]
struct Step {
    args: Vec<&'static str>,
    stdin: Option<&'static str>,
}

/// One act of the sequence.
#[derive(Debug)]
enum Act {
    /// A foreground etcdctl run.
    Ctl(Step),
    /// `etcdctl <watch>` in the background: wait for its watcher, run
    /// `<put>` in the foreground, wait for `lines` lines of output, kill it.
    Watch {
        watch: Vec<&'static str>,
        put: Step,
        lines: usize,
    },
}

fn ctl(args: &[&'static str]) -> Act {
    Act::Ctl(Step {
        args: args.to_vec(),
        stdin: None,
    })
}

fn ctl_in(args: &[&'static str], stdin: &'static str) -> Act {
    Act::Ctl(Step {
        args: args.to_vec(),
        stdin: Some(stdin),
    })
}

const ROOT: &str = "--user=root:rootpw";
const ALICE: &str = "--user=alice:alicepw2";
const CAROL: &str = "--user=carol:carolpw";

/// A txn alice may run: she reads and writes `foo` (roles reader, writer)
/// and reads `[a, c)` (`bar` too), not `qq`.
const TXN_ALICE_ALLOWED: &str =
    "value(\"foo\") = \"by-alice\"\n\nput foo by-alice-txn\n\nget a c\n\n";
/// A txn whose success branch puts a key alice may not write.
const TXN_ALICE_PUT_REFUSED: &str = "\nput bar by-alice\n\n\n";
/// A txn comparing a key alice may not read.
const TXN_ALICE_COMPARE_REFUSED: &str = "value(\"qq\") = \"x\"\n\nget foo\n\n\n";
/// A read-only txn carol may run.
const TXN_CAROL_READ: &str = "\nget rw --prefix\n\n\n";

/// Auth off: users, roles, permissions and every refusal, then `auth enable`.
fn setup_acts() -> Vec<Act> {
    vec![
        ctl(&["auth", "enable"]),
        ctl_in(&["user", "add", "root", "--interactive=false"], "rootpw\n"),
        ctl(&["user", "add", "root:again", "--interactive=false"]),
        ctl(&["user", "add", "alice:alicepw", "--interactive=false"]),
        ctl(&["user", "add", "bob", "--no-password"]),
        ctl(&["user", "add", ":nameless", "--interactive=false"]),
        ctl_in(
            &["user", "add", "carol", "--interactive=false"],
            "carolpw\n",
        ),
        ctl(&["user", "add", "dave:davepw", "--interactive=false"]),
        ctl(&["user", "list"]),
        ctl(&["user", "list", "-w", "json"]),
        ctl(&["user", "get", "root"]),
        ctl(&["user", "get", "root", "--detail"]),
        ctl(&["user", "get", "nobody"]),
        ctl_in(
            &["user", "passwd", "alice", "--interactive=false"],
            "alicepw2\n",
        ),
        ctl_in(&["user", "passwd", "nobody", "--interactive=false"], "x\n"),
        ctl(&["role", "add", "reader"]),
        ctl(&["role", "add", "writer"]),
        ctl(&["role", "add", "rw"]),
        ctl(&["role", "add", "everything"]),
        ctl(&["role", "add", "reader"]),
        ctl(&["role", "add", ""]),
        ctl(&["role", "grant-permission", "reader", "read", "foo"]),
        ctl(&["role", "grant-permission", "reader", "read", "a", "c"]),
        ctl(&[
            "role",
            "grant-permission",
            "reader",
            "read",
            "pre",
            "--prefix",
        ]),
        ctl(&[
            "role",
            "grant-permission",
            "reader",
            "read",
            "z",
            "--from-key",
        ]),
        ctl(&["role", "grant-permission", "writer", "write", "foo"]),
        ctl(&[
            "role",
            "grant-permission",
            "writer",
            "write",
            "w",
            "--prefix",
        ]),
        ctl(&[
            "role",
            "grant-permission",
            "rw",
            "readwrite",
            "rw",
            "--prefix",
        ]),
        ctl(&["role", "grant-permission", "rw", "read", "foo"]),
        // Same key and end again: the permission type is replaced.
        ctl(&["role", "grant-permission", "rw", "write", "foo"]),
        ctl(&[
            "role",
            "grant-permission",
            "everything",
            "read",
            "",
            "--prefix",
        ]),
        ctl(&[
            "role",
            "grant-permission",
            "everything",
            "write",
            "",
            "--from-key",
        ]),
        ctl(&[
            "role",
            "grant-permission",
            "everything",
            "readwrite",
            "",
            "--prefix",
            "--from-key",
        ]),
        ctl(&["role", "grant-permission", "reader", "bogus", "foo"]),
        ctl(&["role", "grant-permission", "nosuch", "read", "foo"]),
        ctl(&[
            "role",
            "grant-permission",
            "reader",
            "read",
            "x",
            "y",
            "--prefix",
        ]),
        ctl(&["role", "grant-permission", "reader", "read"]),
        ctl(&["role", "get", "reader"]),
        ctl(&["role", "get", "reader", "-w", "json"]),
        ctl(&["role", "get", "rw"]),
        ctl(&["role", "get", "everything"]),
        ctl(&["role", "get", "nosuch"]),
        ctl(&["role", "list"]),
        ctl(&["role", "list", "-w", "json"]),
        ctl(&["user", "grant-role", "alice", "reader"]),
        ctl(&["user", "grant-role", "alice", "writer"]),
        ctl(&["user", "grant-role", "alice", "reader"]),
        ctl(&["user", "grant-role", "alice", "nosuch"]),
        ctl(&["user", "grant-role", "nobody", "reader"]),
        ctl(&["user", "grant-role", "carol", "rw"]),
        ctl(&["user", "grant-role", "dave", "reader"]),
        ctl(&["user", "get", "alice"]),
        ctl(&["user", "get", "alice", "--detail"]),
        ctl(&["user", "get", "alice", "-w", "json"]),
        ctl(&["user", "get", "carol", "--detail"]),
        ctl(&["role", "revoke-permission", "reader", "a", "c"]),
        ctl(&["role", "revoke-permission", "reader", "a", "c"]),
        ctl(&["role", "revoke-permission", "reader", "pre", "--prefix"]),
        ctl(&[
            "role",
            "grant-permission",
            "reader",
            "read",
            "pre",
            "--prefix",
        ]),
        ctl(&["role", "grant-permission", "reader", "read", "a", "c"]),
        ctl(&["role", "revoke-permission", "reader", "z", "--from-key"]),
        ctl(&[
            "role",
            "grant-permission",
            "reader",
            "read",
            "z",
            "--from-key",
        ]),
        ctl(&["role", "revoke-permission", "everything", "", "--prefix"]),
        ctl(&["role", "revoke-permission", "nosuch", "foo"]),
        ctl(&["user", "revoke-role", "alice", "writer"]),
        ctl(&["user", "revoke-role", "alice", "writer"]),
        ctl(&["user", "revoke-role", "nobody", "writer"]),
        ctl(&["user", "grant-role", "alice", "writer"]),
        ctl(&["user", "delete", "dave"]),
        ctl(&["user", "delete", "dave"]),
        ctl(&["role", "add", "tmp"]),
        ctl(&["role", "delete", "tmp"]),
        ctl(&["role", "delete", "tmp"]),
        ctl(&["role", "get", "reader"]),
        ctl(&["user", "list"]),
        ctl(&["role", "list"]),
        ctl(&["auth", "disable"]),
        ctl(&["put", "foo", "before-auth"]),
        ctl(&["put", "w/1", "before-auth"]),
        ctl(&["put", "bar", "before-auth"]),
        // The root user exists without the root role: etcdctl adds the role,
        // grants it and enables.
        ctl(&["auth", "enable"]),
        ctl(&["auth", "enable"]),
    ]
}

/// Auth on: KV, watch, lease and maintenance commands allowed and refused.
fn enabled_acts() -> Vec<Act> {
    vec![
        ctl(&["user", "list"]),
        ctl(&["get", "foo"]),
        ctl(&["put", "foo", "anonymous"]),
        ctl(&[ROOT, "user", "list"]),
        ctl(&[ROOT, "user", "get", "root", "--detail"]),
        ctl(&[ROOT, "role", "list"]),
        ctl(&[ROOT, "role", "get", "root"]),
        ctl(&["--user=root:wrong", "get", "foo"]),
        ctl(&["--user=nobody:x", "get", "foo"]),
        ctl(&["--user=bob:x", "get", "foo"]),
        ctl(&["--user=alice:alicepw", "get", "foo"]),
        ctl(&["--user=alice", "--password=alicepw2", "get", "foo"]),
        ctl(&[ALICE, "get", "foo"]),
        ctl(&[ALICE, "get", "foo", "-w", "json"]),
        ctl(&[ALICE, "put", "foo", "by-alice"]),
        ctl(&[ALICE, "put", "foo", "by-alice", "--prev-kv"]),
        ctl(&[ALICE, "get", "b"]),
        ctl(&[ALICE, "get", "a", "c"]),
        ctl(&[ALICE, "get", "a", "d"]),
        ctl(&[ALICE, "get", "pre", "--prefix"]),
        ctl(&[ALICE, "get", "z", "--from-key"]),
        ctl(&[ALICE, "get", "y", "--from-key"]),
        ctl(&[ALICE, "get", "", "--prefix"]),
        ctl(&[ALICE, "get", "foo", "--consistency=s"]),
        ctl(&[ALICE, "get", "qq", "--consistency=s"]),
        ctl(&[ALICE, "put", "bar", "x"]),
        ctl(&[ALICE, "put", "w/2", "x"]),
        ctl(&[ALICE, "put", "w/3", "x", "--prev-kv"]),
        ctl(&[ALICE, "get", "w/1"]),
        ctl(&[ALICE, "del", "w/2"]),
        ctl(&[ALICE, "del", "w", "--prefix", "--prev-kv"]),
        ctl(&[ALICE, "del", "w", "--prefix"]),
        ctl(&[ALICE, "del", "bar"]),
        ctl(&[CAROL, "put", "rw/1", "x"]),
        ctl(&[CAROL, "get", "rw", "--prefix"]),
        ctl(&[CAROL, "get", "rw/1", "-w", "json"]),
        ctl(&[CAROL, "put", "foo", "by-carol"]),
        ctl(&[CAROL, "get", "foo"]),
        ctl(&[ALICE, "watch", "qq"]),
        ctl(&[ALICE, "watch", "", "--prefix"]),
        ctl(&["watch", "foo"]),
        Act::Watch {
            watch: vec![CAROL, "watch", "rw", "--prefix"],
            put: Step {
                args: vec![CAROL, "put", "rw/watched", "seen"],
                stdin: None,
            },
            lines: 3,
        },
        ctl(&[CAROL, "put", "foo", "by-alice"]),
        ctl_in(&[ALICE, "txn"], TXN_ALICE_ALLOWED),
        ctl_in(&[ALICE, "txn", "-w", "json"], TXN_ALICE_ALLOWED),
        ctl_in(&[ALICE, "txn"], TXN_ALICE_PUT_REFUSED),
        ctl_in(&[ALICE, "txn"], TXN_ALICE_COMPARE_REFUSED),
        ctl_in(&[CAROL, "txn"], TXN_CAROL_READ),
        ctl_in(&["txn"], TXN_CAROL_READ),
        ctl(&[ALICE, "lease", "grant", "600"]),
        ctl(&[ROOT, "lease", "grant", "600"]),
        ctl(&["lease", "grant", "600"]),
        ctl(&[ALICE, "put", "foo", "leased", "--lease={lease0}"]),
        ctl(&[ROOT, "put", "bar", "leased", "--lease={lease1}"]),
        ctl(&[ALICE, "put", "foo", "again", "--lease={lease1}"]),
        ctl(&[ALICE, "lease", "timetolive", "{lease1}", "--keys"]),
        ctl(&["lease", "timetolive", "{lease0}", "--keys"]),
        ctl(&[ALICE, "lease", "list"]),
        ctl(&[ALICE, "lease", "revoke", "{lease1}"]),
        ctl(&["lease", "revoke", "{lease1}"]),
        ctl(&[ALICE, "lease", "revoke", "{lease0}"]),
        ctl(&[ROOT, "lease", "revoke", "{lease1}"]),
        ctl(&[ROOT, "lease", "revoke", "{lease2}"]),
        ctl(&[ALICE, "lease", "timetolive", "{lease0}"]),
        ctl(&[ALICE, "compaction", "3"]),
        ctl(&["compaction", "4"]),
        ctl(&[ROOT, "compaction", "5"]),
        ctl(&[ALICE, "defrag"]),
        ctl(&["defrag"]),
        ctl(&[ROOT, "defrag"]),
        ctl(&[ALICE, "snapshot", "save", "{dir}/alice.db"]),
        ctl(&["snapshot", "save", "{dir}/anonymous.db"]),
        ctl(&[ROOT, "snapshot", "save", "{dir}/root.db"]),
        ctl(&[ALICE, "member", "list"]),
        ctl(&["member", "list"]),
        ctl(&[ROOT, "member", "list"]),
        ctl(&[ALICE, "alarm", "list"]),
        ctl(&["alarm", "list"]),
        ctl(&[ROOT, "alarm", "list"]),
        ctl(&[ALICE, "endpoint", "status"]),
        ctl(&["endpoint", "status"]),
        ctl(&[ROOT, "endpoint", "status", "-w", "json"]),
        ctl(&[ALICE, "endpoint", "health"]),
        ctl(&["endpoint", "health"]),
        ctl(&[ALICE, "endpoint", "hashkv"]),
        ctl(&["endpoint", "hashkv"]),
    ]
}

/// Auth on: admin commands as a user and as root, password change, user
/// deletion, then `auth disable`.
fn admin_acts() -> Vec<Act> {
    vec![
        ctl(&[ALICE, "user", "add", "eve:evepw", "--interactive=false"]),
        ctl(&[ALICE, "user", "get", "alice"]),
        ctl(&[ALICE, "user", "get", "alice", "--detail"]),
        ctl(&[ALICE, "user", "get", "root"]),
        ctl(&[ALICE, "user", "list"]),
        ctl(&[ALICE, "role", "get", "reader"]),
        ctl(&[ALICE, "role", "get", "rw"]),
        ctl(&[ALICE, "role", "list"]),
        ctl(&[ALICE, "role", "add", "mine"]),
        ctl(&[
            ALICE,
            "role",
            "grant-permission",
            "reader",
            "readwrite",
            "",
            "--from-key",
        ]),
        ctl(&[ALICE, "role", "revoke-permission", "reader", "foo"]),
        ctl(&[ALICE, "user", "grant-role", "alice", "rw"]),
        ctl(&[ALICE, "user", "revoke-role", "alice", "reader"]),
        ctl(&[ALICE, "user", "delete", "carol"]),
        ctl(&[ALICE, "role", "delete", "rw"]),
        ctl_in(
            &[ALICE, "user", "passwd", "alice", "--interactive=false"],
            "mine\n",
        ),
        ctl(&[ALICE, "auth", "disable"]),
        ctl(&[ALICE, "auth", "enable"]),
        ctl(&["user", "add", "eve:evepw", "--interactive=false"]),
        ctl(&["role", "get", "reader"]),
        ctl(&[ROOT, "user", "delete", "root"]),
        ctl(&[ROOT, "user", "revoke-role", "root", "root"]),
        ctl(&[ROOT, "role", "delete", "root"]),
        ctl(&[ROOT, "role", "revoke-permission", "reader", "foo"]),
        ctl(&[ALICE, "get", "foo"]),
        ctl(&[ALICE, "role", "get", "reader"]),
        ctl(&[ROOT, "user", "add", "eve:evepw", "--interactive=false"]),
        ctl(&["--user=eve:evepw", "get", "foo"]),
        ctl(&["--user=eve:evepw", "user", "get", "eve", "--detail"]),
        ctl_in(
            &[ROOT, "user", "passwd", "alice", "--interactive=false"],
            "alicepw3\n",
        ),
        ctl(&[ALICE, "get", "a"]),
        ctl(&["--user=alice:alicepw3", "get", "a"]),
        ctl(&[ROOT, "user", "delete", "carol"]),
        ctl(&[CAROL, "get", "rw/1"]),
        ctl(&[ROOT, "role", "delete", "reader"]),
        ctl(&[ROOT, "user", "get", "alice", "--detail"]),
        ctl(&["--user=alice:alicepw3", "get", "a"]),
        ctl(&[ROOT, "auth", "enable"]),
        ctl(&[ROOT, "auth", "disable"]),
        ctl(&["get", "foo"]),
        ctl(&["user", "list"]),
        ctl(&["auth", "disable"]),
    ]
}

fn acts() -> Vec<Act> {
    let mut all = setup_acts();
    all.extend(enabled_acts());
    all.extend(admin_acts());
    all
}

/// One server and what normalises its output.
struct Side {
    server: Server,
    norm: Normalizer,
    leases: LeaseIds,
    scratch: TempDir,
}

impl Side {
    async fn new(server: Server) -> Side {
        let mut maintenance = server.maintenance().await.expect("connect");
        let status = maintenance
            .status(StatusRequest {})
            .await
            .unwrap_or_else(|e| panic!("{} Status: {e}", server.kind().name()))
            .into_inner();
        let header = status.header.unwrap_or_default();
        let norm = Normalizer::new(&server.client_addr(), header.member_id, header.cluster_id);
        let scratch = tempfile::Builder::new()
            .prefix("oxcd-auth-ctl-")
            .tempdir()
            .expect("scratch dir");
        Side {
            server,
            norm,
            leases: LeaseIds::default(),
            scratch,
        }
    }

    fn scratch_path(&self) -> String {
        self.scratch.path().display().to_string()
    }

    /// The step's arguments with `{leaseN}` and `{dir}` filled in.
    fn args(&self, step: &Step) -> Vec<String> {
        step.args
            .iter()
            .map(|arg| {
                let mut arg = arg.replace("{dir}", &self.scratch_path());
                for n in 0..4 {
                    let name = format!("{{lease{n}}}");
                    if arg.contains(&name) {
                        arg = arg.replace(&name, &self.leases.hex(n));
                    }
                }
                arg
            })
            .collect()
    }

    async fn run(&self, step: &Step) -> CtlOutput {
        let args = self.args(step);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_etcdctl(&self.server.client_addr(), &args, step.stdin, CTL_TIMEOUT)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "etcdctl {args:?} against {}: {e}",
                    self.server.kind().name()
                )
            })
    }

    /// Step 3 of the module doc; returns the normalised output and the
    /// remaining TTLs taken out of it.
    fn normalize(&mut self, step: &Step, raw: &CtlOutput) -> (CtlOutput, Vec<i64>) {
        let is_grant = step.args.contains(&"lease") && step.args.contains(&"grant");
        if is_grant && raw.code == 0 {
            self.leases.learn(&raw.stdout);
        }
        let out = self.norm.output(raw);
        let local = |text: &str| {
            let text = text
                .replace(&self.scratch_path(), "<dir>")
                .replace(&self.server.peer_url(), "<peer>");
            sizes_out(&text)
        };
        let out = CtlOutput {
            stdout: local(&out.stdout),
            stderr: local(&out.stderr),
            code: out.code,
        };
        self.leases
            .normalize(&out, step.args.contains(&"timetolive"))
    }
}

/// `"size"` in clientv3's snapshot log lines (the file size) becomes
/// `"<size>"`.
fn sizes_out(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let (body, newline) = match line.strip_suffix('\n') {
            Some(body) => (body, "\n"),
            None => (line, ""),
        };
        match serde_json::from_str::<Value>(body) {
            Ok(Value::Object(mut map)) if map.contains_key("size") => {
                map.insert("size".to_string(), Value::String("<size>".to_string()));
                out.push_str(&Value::Object(map).to_string());
            }
            _ => out.push_str(body),
        }
        out.push_str(newline);
    }
    out
}

fn render(out: &CtlOutput) -> String {
    format!(
        "exit {}\n--- stdout ---\n{}--- stderr ---\n{}",
        out.code, out.stdout, out.stderr
    )
}

fn describe(step: &Step) -> String {
    format!(
        "`etcdctl {}`{}",
        step.args.join(" "),
        step.stdin
            .map(|s| format!(" with stdin {s:?}"))
            .unwrap_or_default()
    )
}

/// Runs `step` against both and fails on the first difference.
async fn compare_step(index: usize, step: &Step, etcd: &mut Side, oxcd: &mut Side) {
    let (expected, actual) = tokio::join!(etcd.run(step), oxcd.run(step));
    let (expected, expected_ttls) = etcd.normalize(step, &expected);
    let (actual, actual_ttls) = oxcd.normalize(step, &actual);
    println!("## #{index} {}\n{}", describe(step), render(&expected));
    assert!(
        expected == actual && remaining_agree(&expected_ttls, &actual_ttls),
        "act #{index} {} differs\n===== etcd =====\n{}remaining {expected_ttls:?}\n===== oxcd =====\n{}remaining {actual_ttls:?}",
        describe(step),
        render(&expected),
        render(&actual)
    );
}

/// The background watch act against one side: returns its output.
async fn watch_on(
    side: &mut Side,
    watch: &[&'static str],
    put: &Step,
    lines: usize,
) -> (CtlOutput, CtlOutput) {
    let addr = side.server.client_addr();
    let name = side.server.kind().name();
    let mut watcher = BackgroundCtl::spawn(&addr, watch, false)
        .unwrap_or_else(|e| panic!("spawn etcdctl watch against {name}: {e}"));
    if let Err(e) = wait_for_watchers(&addr, 1, WATCH_WAIT).await {
        let out = watcher
            .finish()
            .await
            .map(|o| render(&o))
            .unwrap_or_default();
        panic!("{name}: the permitted watch never registered: {e}\n{out}");
    }
    let put_out = side.run(put).await;
    let (put_out, _) = side.normalize(put, &put_out);
    let waited = watcher.wait_stdout_lines(lines, WATCH_WAIT).await;
    let out = watcher.finish().await.expect("finish the watcher");
    if let Err(e) = waited {
        panic!("{name}: {e}\n{}", render(&out));
    }
    (put_out, side.norm.output(&out))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_auth_commands_print_the_same_against_oxcd_and_etcd() {
    let opts = ServerOpts {
        extra_args: vec!["--bcrypt-cost=4".to_string()],
        ..ServerOpts::default()
    };
    let (reference, candidate) = Server::start_pair(opts).await;
    let (mut etcd, mut oxcd) = tokio::join!(Side::new(reference), Side::new(candidate));
    let acts = acts();
    for (index, act) in acts.iter().enumerate() {
        match act {
            Act::Ctl(step) => compare_step(index, step, &mut etcd, &mut oxcd).await,
            Act::Watch { watch, put, lines } => {
                let (expected, actual) = tokio::join!(
                    watch_on(&mut etcd, watch, put, *lines),
                    watch_on(&mut oxcd, watch, put, *lines)
                );
                println!(
                    "## #{index} background `etcdctl {}`\n{}",
                    watch.join(" "),
                    render(&expected.1)
                );
                assert!(
                    expected == actual,
                    "act #{index} background `etcdctl {}` with `etcdctl {}` differs\n\
                     ===== etcd =====\n{}\n{}\n===== oxcd =====\n{}\n{}",
                    watch.join(" "),
                    put.args.join(" "),
                    render(&expected.0),
                    render(&expected.1),
                    render(&actual.0),
                    render(&actual.1)
                );
            }
        }
    }
    println!("auth_etcdctl: {} acts printed the same", acts.len());
}

#[test]
fn snapshot_sizes_are_taken_out() {
    let line =
        r#"{"level":"info","ts":"<ts>","msg":"fetched snapshot","size":"20 kB","took":"<took>"}"#;
    let out = sizes_out(&format!("{line}\nSnapshot saved at <dir>/root.db\n"));
    assert!(out.contains(r#""size":"<size>""#), "{out}");
    assert!(out.ends_with("Snapshot saved at <dir>/root.db\n"), "{out}");
    assert_eq!(sizes_out("plain\n"), "plain\n");
}
