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
//! A second test runs `etcdctl watch` in the background against both, case
//! by case (see [`watch_cases`]):
//!
//! 1. Each case starts a fresh etcd and a fresh oxcd, so revisions line up.
//! 2. Against each, concurrently, it runs its acts in order: foreground
//!    etcdctl commands (setup history, then the puts, deletes, txns and
//!    compactions the watcher should or should not see), the background
//!    `etcdctl watch ...`, lines fed to `watch -i`'s stdin, and waits on
//!    conditions: the server's watcher count (`/metrics`) before writing, the
//!    watcher's stdout line count, its exit. Every wait is bounded; a key
//!    that must not show is always followed by one that must, so a stray
//!    event lands before the awaited output.
//! 3. The watcher is then killed by its pid (unless it exited by itself),
//!    and the normalised outputs (every foreground command's, then the
//!    watcher's stdout, stderr and exit code) must be equal. A case that
//!    fails against etcd is a broken case and stops the test at once; the
//!    cases that differ against oxcd are all reported together.
//!
//! A third test runs `etcdctl check datascale --load s --auto-compact
//! --auto-defrag` (which reads `process_resident_memory_bytes` from
//! `/metrics`) against etcd, then oxcd: it must pass on oxcd, leave no key
//! behind at revision 10,002, and print what it prints against etcd apart
//! from the endpoint, the memory figure and the progress bar.

use std::time::Duration;

use std::time::Instant;

use integration::etcdctl::{BackgroundCtl, CtlOutput, Normalizer, run_etcdctl, wait_for_watchers};
use integration::{Kind, Server, ServerOpts};
use proto::etcdserverpb::StatusRequest;

const CTL_TIMEOUT: Duration = Duration::from_secs(30);

/// One etcdctl invocation: arguments and optional stdin.
#[derive(Debug)]
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
        // etcdctl's lock recipe (lease, txn, range, watch): the command runs
        // with the lock held, then the lock's key is deleted.
        cmd(&["lock", "golden-lock", "echo", "held"]),
        cmd(&["get", "golden-lock", "--prefix", "--keys-only"]),
        cmd(&["lease", "revoke", "1234"]),
        cmd(&["lease", "timetolive", "1234"]),
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
    let (reference, candidate) = Server::start_pair(ServerOpts::default()).await;
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

/// Bound on each wait of a watch case: a watcher registered, lines printed,
/// an exit (milliseconds normally; generous for a loaded two-core machine).
const WATCH_WAIT: Duration = Duration::from_secs(30);

/// One act of a watch case, run against both servers.
#[derive(Debug)]
enum Act {
    /// A foreground etcdctl command; its output is compared too.
    Ctl(Step),
    /// Starts the case's one background `etcdctl <args>`; `interactive`
    /// gives it a stdin pipe.
    Watch {
        args: Vec<&'static str>,
        interactive: bool,
    },
    /// Wait until the server counts this many watchers.
    Watchers(u64),
    /// Wait until the watcher has printed this many lines on stdout.
    Lines(usize),
    /// A line on the watcher's stdin (kept open).
    Send(&'static str),
    /// Close the watcher's stdin.
    CloseStdin,
    /// Wait until the watcher exits by itself.
    Exit,
}

fn put(key: &'static str, value: &'static str) -> Act {
    Act::Ctl(cmd(&["put", key, value]))
}

fn del(args: &[&'static str]) -> Act {
    let mut all = vec!["del"];
    all.extend_from_slice(args);
    Act::Ctl(Step {
        args: all,
        stdin: None,
    })
}

fn ctl(args: &[&'static str]) -> Act {
    Act::Ctl(cmd(args))
}

fn txn(stdin: &'static str) -> Act {
    Act::Ctl(with_stdin(&["txn"], stdin))
}

fn watch(args: &[&'static str]) -> Act {
    Act::Watch {
        args: args.to_vec(),
        interactive: false,
    }
}

/// A named sequence of acts, run from a fresh server.
struct WatchCase {
    name: &'static str,
    acts: Vec<Act>,
}

/// History shared by the `--rev` cases: foo at 2 and 4, deleted at 5,
/// recreated at 6; bar at 3, deleted at 7.
fn history() -> Vec<Act> {
    vec![
        put("foo", "a"),
        put("bar", "b"),
        put("foo", "b"),
        del(&["foo"]),
        put("foo", "c"),
        del(&["bar"]),
    ]
}

/// `history()`, then the acts of `rest`.
fn after_history(rest: Vec<Act>) -> Vec<Act> {
    let mut acts = history();
    acts.extend(rest);
    acts
}

/// foo at 2, 3 and 4, then compacted at 3.
fn compacted() -> Vec<Act> {
    vec![
        put("foo", "a"),
        put("foo", "b"),
        put("foo", "c"),
        ctl(&["compaction", "3"]),
    ]
}

fn after_compaction(rest: Vec<Act>) -> Vec<Act> {
    let mut acts = compacted();
    acts.extend(rest);
    acts
}

/// A txn without compares: two puts under `foo` and one outside.
const TXN_TWO_FOOS: &str = "\nput foo2 f\nput zoo g\nput foo3 h\n\n\n";
/// A txn that puts foo1 and foo and deletes bar.
const TXN_ONE_FOO: &str = "\nput foo1 t\nput foo t\ndel bar\n\n\n";
/// The command `watch ... -- <cmd>` runs per event.
const EXEC_ECHO: &str =
    "echo \"$ETCD_WATCH_REVISION $ETCD_WATCH_EVENT_TYPE $ETCD_WATCH_KEY $ETCD_WATCH_VALUE\"";

/// The watch cases. Line counts: simple output prints 3 lines per event
/// (`PUT`/`DELETE`, key, value; a delete's value is empty), 5 with a
/// previous kv; `-w json` prints one line per response.
fn watch_cases() -> Vec<WatchCase> {
    vec![
        WatchCase {
            name: "watch foo: puts and deletes of foo only",
            acts: vec![
                watch(&["watch", "foo"]),
                Act::Watchers(1),
                put("foo", "bar"),
                put("foo1", "x"),
                put("fo", "y"),
                put("bar", "z"),
                del(&["foo1"]),
                put("foo", "baz"),
                del(&["foo"]),
                del(&["foo"]),
                txn(TXN_ONE_FOO),
                put("foo", "a value with spaces"),
                Act::Lines(15),
            ],
        },
        WatchCase {
            name: "watch --prefix foo: txn events and a prefix delete",
            acts: vec![
                watch(&["watch", "--prefix", "foo"]),
                Act::Watchers(1),
                put("foo", "a"),
                put("fo", "b"),
                put("foo/x", "c"),
                put("fop", "d"),
                put("foo1", "e"),
                txn(TXN_TWO_FOOS),
                del(&["foo", "--prefix"]),
                put("foo-end", "z"),
                Act::Lines(33),
            ],
        },
        WatchCase {
            name: "watch --rev 2 foo: history with a delete, then live",
            acts: after_history(vec![
                watch(&["watch", "--rev", "2", "foo"]),
                Act::Lines(12),
                put("foo", "d"),
                Act::Lines(15),
            ]),
        },
        WatchCase {
            name: "watch --rev 3 --prev-kv foo: history with previous values",
            acts: after_history(vec![
                watch(&["watch", "--rev", "3", "--prev-kv", "foo"]),
                Act::Lines(13),
                put("foo", "d"),
                Act::Lines(18),
            ]),
        },
        WatchCase {
            name: "watch --rev 2 -w json --prefix '': catch-up in one response",
            acts: after_history(vec![
                watch(&["watch", "--rev", "2", "-w", "json", "--prefix", ""]),
                Act::Lines(1),
                put("foo", "d"),
                Act::Lines(2),
            ]),
        },
        WatchCase {
            name: "watch --rev 2 foo below the compaction: canceled",
            acts: after_compaction(vec![watch(&["watch", "--rev", "2", "foo"]), Act::Exit]),
        },
        WatchCase {
            name: "watch --rev 2 -w json foo below the compaction: canceled",
            acts: after_compaction(vec![
                watch(&["watch", "--rev", "2", "-w", "json", "foo"]),
                Act::Exit,
            ]),
        },
        WatchCase {
            name: "watch --rev 3 --prev-kv foo at the compaction: replayed",
            acts: after_compaction(vec![
                watch(&["watch", "--rev", "3", "--prev-kv", "foo"]),
                Act::Lines(8),
                put("foo", "d"),
                Act::Lines(13),
            ]),
        },
        WatchCase {
            name: "watch --prev-kv foo",
            acts: vec![
                watch(&["watch", "--prev-kv", "foo"]),
                Act::Watchers(1),
                put("foo", "a"),
                put("foo", "b"),
                del(&["foo"]),
                put("foo", "c"),
                put("foo1", "x"),
                put("foo", "d"),
                Act::Lines(21),
            ],
        },
        WatchCase {
            name: "watch -w json foo",
            acts: vec![
                watch(&["watch", "-w", "json", "foo"]),
                Act::Watchers(1),
                put("foo", "a"),
                put("foo2", "no"),
                put("foo", "b"),
                del(&["foo"]),
                Act::Lines(3),
            ],
        },
        WatchCase {
            name: "watch -w json --prev-kv --prefix foo: a txn in one response",
            acts: vec![
                watch(&["watch", "-w", "json", "--prev-kv", "--prefix", "foo"]),
                Act::Watchers(1),
                put("foo", "a"),
                txn(TXN_TWO_FOOS),
                put("foo2", "f2"),
                del(&["foo", "--prefix"]),
                Act::Lines(4),
            ],
        },
        WatchCase {
            name: "watch b d: the range [b, d)",
            acts: vec![
                watch(&["watch", "b", "d"]),
                Act::Watchers(1),
                put("a", "1"),
                put("b", "2"),
                put("c", "3"),
                put("cz", "4"),
                put("d", "5"),
                put("bb", "6"),
                del(&["c"]),
                put("ccc", "7"),
                Act::Lines(18),
            ],
        },
        WatchCase {
            name: "watch foo bar: an empty range (end before key) is canceled",
            acts: vec![watch(&["watch", "foo", "bar"]), Act::Exit],
        },
        WatchCase {
            name: "watch -i: two watches, progress, bad commands, end of input",
            acts: vec![
                Act::Watch {
                    args: vec!["watch", "-i"],
                    interactive: true,
                },
                Act::Send("watch foo"),
                Act::Watchers(1),
                put("foo", "a"),
                Act::Lines(3),
                put("bar", "x"),
                Act::Send("progress"),
                Act::Lines(4),
                Act::Send("watch --prefix ba"),
                Act::Watchers(2),
                put("bar", "y"),
                Act::Lines(7),
                put("foo", "z"),
                Act::Lines(10),
                Act::Send("progress"),
                Act::Lines(12),
                Act::Send("bogus"),
                Act::Send(""),
                Act::CloseStdin,
                Act::Exit,
            ],
        },
        WatchCase {
            name: "watch --prefix foo -- sh -c 'echo $ETCD_WATCH_...': exec per event",
            acts: vec![
                watch(&["watch", "--prefix", "foo", "--", "sh", "-c", EXEC_ECHO]),
                Act::Watchers(1),
                put("foo", "a"),
                put("foo1", "b c"),
                txn(TXN_TWO_FOOS),
                del(&["foo"]),
                Act::Lines(20),
            ],
        },
    ]
}

/// What one case printed against one server: each foreground command's
/// output and last the watcher's, labelled with the command; and the act
/// that failed (a wait that timed out, a command that could not run), if
/// one did.
struct CaseRun {
    transcript: Vec<(String, CtlOutput)>,
    failure: Option<String>,
    took: Duration,
}

/// `etcdctl <args>` as a shell would take it (empty arguments and ones
/// with spaces or quotes in single quotes).
fn label(args: &[&str]) -> String {
    let words: Vec<String> = args
        .iter()
        .map(|arg| {
            if arg.is_empty() || arg.contains([' ', '"', '$', '\'']) {
                format!("'{}'", arg.replace('\'', "'\\''"))
            } else {
                arg.to_string()
            }
        })
        .collect();
    format!("etcdctl {}", words.join(" "))
}

/// Runs `case` against `server` and normalises what was printed.
async fn run_watch_case(server: &Server, norm: &Normalizer, case: &WatchCase) -> CaseRun {
    let started = Instant::now();
    let addr = server.client_addr();
    let mut transcript = Vec::new();
    let mut watcher: Option<(String, BackgroundCtl)> = None;
    let mut failure = None;
    for (index, act) in case.acts.iter().enumerate() {
        let done: Result<(), String> = match (act, watcher.as_mut()) {
            (Act::Ctl(step), _) => run_etcdctl(&addr, &step.args, step.stdin, CTL_TIMEOUT)
                .await
                .map(|out| transcript.push((label(&step.args), norm.output(&out))))
                .map_err(|e| e.to_string()),
            (Act::Watch { args, interactive }, None) => {
                BackgroundCtl::spawn(&addr, args, *interactive)
                    .map(|ctl| watcher = Some((label(args), ctl)))
                    .map_err(|e| e.to_string())
            }
            (Act::Watchers(n), _) => wait_for_watchers(&addr, *n, WATCH_WAIT)
                .await
                .map_err(|e| e.to_string()),
            (Act::Lines(n), Some((_, ctl))) => ctl
                .wait_stdout_lines(*n, WATCH_WAIT)
                .await
                .map_err(|e| e.to_string()),
            (Act::Send(line), Some((_, ctl))) => {
                ctl.send_line(line).await.map_err(|e| e.to_string())
            }
            (Act::CloseStdin, Some((_, ctl))) => ctl.close_stdin().await.map_err(|e| e.to_string()),
            (Act::Exit, Some((_, ctl))) => ctl
                .wait_exit(WATCH_WAIT)
                .await
                .map(drop)
                .map_err(|e| e.to_string()),
            (act, _) => panic!("case {:?}: act #{index} {act:?} is misplaced", case.name),
        };
        if let Err(e) = done {
            failure = Some(format!("act #{index} {act:?}: {e}"));
            break;
        }
    }
    if let Some((name, ctl)) = watcher {
        match ctl.finish().await {
            Ok(out) => transcript.push((name, norm.output(&out))),
            Err(e) => failure = failure.or(Some(format!("{name}: {e}"))),
        }
    }
    CaseRun {
        transcript,
        failure,
        took: started.elapsed(),
    }
}

fn render_transcript(run: &CaseRun) -> String {
    let mut text = String::new();
    for (name, out) in &run.transcript {
        text.push_str(&format!("## {name}\n{}", render(out)));
    }
    if let Some(failure) = &run.failure {
        text.push_str(&format!("!! {failure}\n"));
    }
    text
}

/// The first entry where `actual` departs from `expected`, both rendered.
fn first_difference(expected: &CaseRun, actual: &CaseRun) -> Option<String> {
    let longest = expected.transcript.len().max(actual.transcript.len());
    let entry = |run: &CaseRun, i: usize| match run.transcript.get(i) {
        Some((name, out)) => format!("## {name}\n{}", render(out)),
        None => "(nothing)\n".to_string(),
    };
    (0..longest)
        .find(|&i| expected.transcript.get(i) != actual.transcript.get(i))
        .map(|i| {
            let failure = actual
                .failure
                .as_ref()
                .map(|f| format!(" (against oxcd, {f})"))
                .unwrap_or_default();
            format!(
                "entry #{i}{failure}\n----- etcd -----\n{}----- oxcd -----\n{}",
                entry(expected, i),
                entry(actual, i)
            )
        })
        .or_else(|| {
            actual
                .failure
                .as_ref()
                .map(|f| format!("same output, but against oxcd: {f}\n"))
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_watch_prints_the_same_against_oxcd_and_etcd() {
    let cases = watch_cases();
    let mut differences = Vec::new();
    for case in &cases {
        let started = Instant::now();
        let (reference, candidate) = tokio::join!(
            Server::start(Kind::Etcd, ServerOpts::default()),
            Server::start(Kind::Oxcd, ServerOpts::default())
        );
        let reference = reference.unwrap_or_else(|e| panic!("start etcd: {e}"));
        let candidate = candidate.unwrap_or_else(|e| panic!("start oxcd: {e}"));
        let (etcd_norm, oxcd_norm) = tokio::join!(normalizer(&reference), normalizer(&candidate));
        let start_took = started.elapsed();
        let (expected, actual) = tokio::join!(
            run_watch_case(&reference, &etcd_norm, case),
            run_watch_case(&candidate, &oxcd_norm, case)
        );
        println!(
            "### {} (servers up in {start_took:?}; etcd {:?}, oxcd {:?})\n{}",
            case.name,
            expected.took,
            actual.took,
            render_transcript(&expected)
        );
        if let Some(failure) = &expected.failure {
            panic!(
                "case {:?} fails against etcd itself: {failure}\n{}",
                case.name,
                render_transcript(&expected)
            );
        }
        if let Some(difference) = first_difference(&expected, &actual) {
            differences.push(format!(
                "===== case {:?}: {difference}===== whole oxcd transcript =====\n{}",
                case.name,
                render_transcript(&actual)
            ));
        }
    }
    assert!(
        differences.is_empty(),
        "{} of {} watch cases differ:\n{}",
        differences.len(),
        cases.len(),
        differences.join("\n")
    );
    println!("etcdctl watch: {} cases printed the same", cases.len());
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

/// `name/<lease id in hex>` with the id written out: lease ids differ from
/// server to server.
fn without_lease_ids(text: &str) -> String {
    text.lines()
        .map(|line| match line.rsplit_once('/') {
            Some((name, id)) if !id.is_empty() && id.chars().all(|c| c.is_ascii_hexdigit()) => {
                format!("{name}/<lease>")
            }
            _ => line.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// What `lock` (holding, no command), `elect` (campaigning) and `elect -l`
/// (observing) print on `server` while they run, each until it printed
/// `lines` lines; the session lines stay open until killed.
async fn lock_and_elect(server: &Server) -> Vec<(String, String)> {
    let addr = server.client_addr();
    let mut printed = Vec::new();
    let runs: [(&[&str], usize); 3] = [
        // The key, then its (empty) value.
        (&["lock", "golden-held"], 2),
        (&["elect", "golden-election", "alice"], 2),
        (&["elect", "-l", "golden-election"], 2),
    ];
    let mut running = Vec::new();
    for (args, lines) in runs {
        let mut ctl = BackgroundCtl::spawn(&addr, args, false)
            .unwrap_or_else(|e| panic!("spawn etcdctl {args:?}: {e}"));
        ctl.wait_stdout_lines(lines, WATCH_WAIT)
            .await
            .unwrap_or_else(|e| panic!("etcdctl {args:?} on {}: {e}", server.kind().name()));
        // Exactly the lines waited for: whatever comes later depends on
        // timing.
        let stdout = ctl.stdout();
        let first: Vec<&str> = stdout.split_inclusive('\n').take(lines).collect();
        printed.push((args.join(" "), without_lease_ids(&first.concat())));
        running.push(ctl);
    }
    for ctl in running {
        let _ = ctl.finish().await;
    }
    printed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_lock_and_elect_print_as_against_etcd() {
    let (reference, candidate) = Server::start_pair(ServerOpts::default()).await;
    let expected = lock_and_elect(&reference).await;
    let actual = lock_and_elect(&candidate).await;
    for ((command, etcd), (_, oxcd)) in expected.iter().zip(&actual) {
        assert_eq!(oxcd, etcd, "etcdctl {command}");
    }
    println!("lock, elect and elect -l print the same: {actual:?}");
}
