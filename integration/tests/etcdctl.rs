//! etcdctl golden test: Debian's etcdctl 3.4 must print the same thing
//! against oxcd as against etcd 3.4.
//!
//! 1. Start etcd and oxcd, fresh, and learn each one's member and cluster id
//!    (Maintenance.Status) to build its [`Normalizer`].
//! 2. Run one fixed command sequence (puts, gets with every flag, deletes,
//!    txns from stdin, compaction and a read below it, endpoint status and
//!    health) against both, command by command, so revisions line up.
//! 3. Normalise each output (ids, endpoint, raft term and indexes, db size,
//!    durations, clientv3 log timestamps) and require equal stdout, stderr and
//!    exit code. The first difference fails the test with both outputs.
//!
//! A second test runs `etcdctl check datascale --load s --auto-compact
//! --auto-defrag` (which reads `process_resident_memory_bytes` from
//! `/metrics`) against etcd, then oxcd: it must pass on oxcd, leave no key
//! behind at revision 10,002, and print what it prints against etcd apart
//! from the endpoint, the memory figure and the progress bar.

use std::time::Duration;

use integration::etcdctl::{CtlOutput, Normalizer, run_etcdctl};
use integration::{Kind, Server, ServerOpts};
use proto::etcdserverpb::StatusRequest;

const CTL_TIMEOUT: Duration = Duration::from_secs(30);

/// One etcdctl invocation: arguments and optional stdin.
struct Step {
    args: Vec<&'static str>,
    stdin: Option<&'static str>,
}

fn cmd(args: &[&'static str]) -> Step {
    Step {
        args: args.to_vec(),
        stdin: None,
    }
}

fn with_stdin(args: &[&'static str], stdin: &'static str) -> Step {
    Step {
        args: args.to_vec(),
        stdin: Some(stdin),
    }
}

/// A txn whose compares all hold, then put/get/del. Every compare target
/// etcdctl 3.4 can send: its `lease(...)` compare panics inside clientv3
/// ("bad value") before any RPC, so it is not exercised.
const TXN_SUCCESS: &str = "\
val(\"foo\") = \"bar-again\"
ver(\"foo\") = \"2\"
c(\"foo\") = \"2\"
m(\"foo\") > \"2\"

put txn-key txn-value
get foo --prefix
del foo2

put never never

";

/// A txn whose compare fails: the failure branch runs.
const TXN_FAILURE: &str = "\
version(\"foo\") < \"1\"
create(\"zoo\") != \"0\"

put never never

put txn-failed yes
get zoo

";

/// A txn with a range compare and a comparison on an absent key.
const TXN_MIXED: &str = "\
mod(\"nosuchkey\") = \"0\"
value(\"zoo\") != \"zar\"

get txn-key

get nosuchkey
del txn-failed --prev-kv

";

fn steps() -> Vec<Step> {
    vec![
        cmd(&["put", "foo", "bar"]),
        cmd(&["put", "foo1", "bar1"]),
        cmd(&["put", "foo2", "bar2"]),
        cmd(&["put", "zoo", "zar"]),
        cmd(&["put", "fop", "v0"]),
        cmd(&["put", "foo", "bar-again", "--prev-kv"]),
        cmd(&["put", "foo3", "a value with spaces"]),
        cmd(&["get", "foo"]),
        cmd(&["get", "nosuchkey"]),
        cmd(&["get", "nosuchkey", "-w", "json"]),
        cmd(&["get", "foo", "--prefix"]),
        cmd(&["get", "foo", "--from-key"]),
        cmd(&["get", "", "--prefix"]),
        cmd(&["get", "foo", "zoo"]),
        cmd(&["get", "foo", "--prefix", "--keys-only"]),
        cmd(&["get", "foo", "--prefix", "--print-value-only"]),
        cmd(&["get", "foo", "--prefix", "--limit", "2"]),
        cmd(&["get", "foo", "--prefix", "--limit", "2", "-w", "json"]),
        cmd(&["get", "foo", "--rev", "2"]),
        cmd(&["get", "foo", "--rev", "2", "-w", "json"]),
        cmd(&[
            "get",
            "f",
            "--prefix",
            "--sort-by",
            "KEY",
            "--order",
            "DESCEND",
        ]),
        cmd(&[
            "get",
            "f",
            "--prefix",
            "--sort-by",
            "CREATE",
            "--order",
            "DESCEND",
        ]),
        cmd(&[
            "get",
            "f",
            "--prefix",
            "--sort-by",
            "MODIFY",
            "--order",
            "DESCEND",
        ]),
        cmd(&[
            "get",
            "f",
            "--prefix",
            "--sort-by",
            "VALUE",
            "--order",
            "ASCEND",
        ]),
        cmd(&[
            "get",
            "f",
            "--prefix",
            "--sort-by",
            "VALUE",
            "--order",
            "DESCEND",
        ]),
        cmd(&[
            "get",
            "f",
            "--prefix",
            "--sort-by",
            "VERSION",
            "--order",
            "DESCEND",
        ]),
        cmd(&["get", "f", "--prefix", "--sort-by", "VERSION"]),
        cmd(&["get", "f", "--prefix", "--order", "ASCEND"]),
        cmd(&["get", "foo", "--prefix", "-w", "json"]),
        cmd(&["get", "foo", "--consistency", "s"]),
        with_stdin(&["txn"], TXN_SUCCESS),
        with_stdin(&["txn"], TXN_FAILURE),
        with_stdin(&["txn", "-w", "json"], TXN_MIXED),
        with_stdin(&["txn", "-w", "json"], TXN_SUCCESS),
        cmd(&["del", "foo1"]),
        cmd(&["del", "nosuchkey"]),
        cmd(&["del", "foo", "--prefix", "--prev-kv"]),
        cmd(&["del", "fop", "--prev-kv", "-w", "json"]),
        cmd(&["get", "", "--prefix", "-w", "json"]),
        cmd(&["compaction", "5"]),
        cmd(&["get", "foo", "--rev", "3"]),
        cmd(&["get", "foo", "--rev", "5"]),
        cmd(&["compaction", "5"]),
        cmd(&["compaction", "1000"]),
        cmd(&["get", "foo", "--rev", "1000"]),
        cmd(&["put", "after-compaction", "x"]),
        cmd(&["get", "", "--prefix", "--keys-only"]),
        cmd(&["endpoint", "status"]),
        cmd(&["endpoint", "status", "-w", "table"]),
        cmd(&["endpoint", "status", "-w", "json"]),
        cmd(&["endpoint", "health"]),
        cmd(&["endpoint", "health", "-w", "json"]),
        cmd(&["endpoint", "health", "-w", "table"]),
    ]
}

async fn normalizer(server: &Server) -> Normalizer {
    let mut maintenance = server.maintenance().await.expect("connect");
    let status = maintenance
        .status(StatusRequest {})
        .await
        .unwrap_or_else(|e| panic!("{} Status: {e}", server.kind().name()))
        .into_inner();
    let header = status.header.unwrap_or_default();
    Normalizer::new(&server.client_addr(), header.member_id, header.cluster_id)
}

fn render(out: &CtlOutput) -> String {
    format!(
        "exit {}\n--- stdout ---\n{}--- stderr ---\n{}",
        out.code, out.stdout, out.stderr
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_prints_the_same_against_oxcd_and_etcd() {
    let (reference, candidate) = tokio::join!(
        Server::start(Kind::Etcd, ServerOpts::default()),
        Server::start(Kind::Oxcd, ServerOpts::default())
    );
    let reference = reference.unwrap_or_else(|e| panic!("start etcd: {e}"));
    let candidate = candidate.unwrap_or_else(|e| panic!("start oxcd: {e}"));
    let etcd_norm = normalizer(&reference).await;
    let oxcd_norm = normalizer(&candidate).await;

    let (etcd_addr, oxcd_addr) = (reference.client_addr(), candidate.client_addr());
    let steps = steps();
    for (index, step) in steps.iter().enumerate() {
        let (expected, actual) = tokio::join!(
            run_etcdctl(&etcd_addr, &step.args, step.stdin, CTL_TIMEOUT),
            run_etcdctl(&oxcd_addr, &step.args, step.stdin, CTL_TIMEOUT)
        );
        let expected = etcd_norm.output(&expected.expect("run etcdctl against etcd"));
        let actual = oxcd_norm.output(&actual.expect("run etcdctl against oxcd"));
        println!("## etcdctl {}\n{}", step.args.join(" "), render(&expected));
        assert!(
            expected == actual,
            "step #{index} `etcdctl {}`{} differs\n===== etcd =====\n{}\n===== oxcd =====\n{}",
            step.args.join(" "),
            step.stdin
                .map(|s| format!(" with stdin:\n{s}"))
                .unwrap_or_default(),
            render(&expected),
            render(&actual)
        );
    }
    println!("etcdctl: {} commands printed the same", steps.len());
}

/// How long one `check datascale` may take (10,000 puts; debug builds on a
/// busy two-core machine).
const DATASCALE_TIMEOUT: Duration = Duration::from_secs(300);
/// Where `etcdctl check datascale` writes its keys.
const DATASCALE_PREFIX: &[u8] = b"/etcdctl-check-datascale/";

/// Runs `etcdctl check datascale --load s --auto-compact --auto-defrag`
/// (10,000 puts of 1 KiB from 50 clients, memory read from `/metrics`'
/// `process_resident_memory_bytes` before and after, then a prefix delete,
/// a compaction and a defragmentation) and returns what it printed without
/// the progress bar and with the endpoint and the memory figure replaced,
/// plus the revision and the number of keys left under its prefix.
async fn datascale(server: &Server) -> (i32, Vec<String>, i64, i64) {
    let addr = server.client_addr();
    let args = [
        "check",
        "datascale",
        "--load",
        "s",
        "--auto-compact",
        "--auto-defrag",
    ];
    let started = std::time::Instant::now();
    let out = run_etcdctl(&addr, &args, None, DATASCALE_TIMEOUT)
        .await
        .expect("run etcdctl check datascale");
    println!(
        "{}: check datascale took {:?}\n{}",
        server.kind().name(),
        started.elapsed(),
        out.stdout.lines().last().unwrap_or_default()
    );
    let lines = out
        .stdout
        .split(['\n', '\r'])
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.contains(" / 10000"))
        .map(|l| match l.split_once("memory used : ") {
            Some((head, _)) => format!("{head}memory used : <MB> MB."),
            None => l.replace(&addr, "<endpoint>"),
        })
        .collect();
    let left = server
        .kv()
        .await
        .expect("kv client")
        .range(proto::etcdserverpb::RangeRequest {
            key: DATASCALE_PREFIX.to_vec(),
            range_end: b"/etcdctl-check-datascale0".to_vec(),
            count_only: true,
            ..Default::default()
        })
        .await
        .expect("range")
        .into_inner();
    let revision = left.header.expect("header").revision;
    (out.code, lines, revision, left.count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_datascale_passes_as_against_etcd() {
    // One after the other: 50 clients each would starve a shared machine.
    let reference = Server::start(Kind::Etcd, ServerOpts::default())
        .await
        .unwrap_or_else(|e| panic!("start etcd: {e}"));
    let expected = datascale(&reference).await;
    drop(reference);
    let candidate = Server::start(Kind::Oxcd, ServerOpts::default())
        .await
        .unwrap_or_else(|e| panic!("start oxcd: {e}"));
    let actual = datascale(&candidate).await;

    let (code, lines, revision, left) = &actual;
    assert_eq!(*code, 0, "{lines:?}");
    assert!(
        lines
            .last()
            .is_some_and(|l| l.starts_with("PASS: Approximate system memory used")),
        "{lines:?}"
    );
    assert_eq!(*left, 0, "keys left under the datascale prefix");
    // 10,000 puts and one prefix delete after revision 1.
    assert_eq!(*revision, 10_002);
    assert_eq!(actual, expected, "oxcd (left) against etcd (right)");
}
