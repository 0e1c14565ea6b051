//! Flags a member refuses at its first start, as etcd 3.4 refuses them: the
//! process exits non-zero and says why in etcd's words.
//!
//! 1. `--initial-advertise-peer-urls` that differ from the member's own
//!    `--initial-cluster` entry (etcd's `advertiseMatchesCluster`).
//! 2. A `--name` that `--initial-cluster` does not list.
//! 3. Logging flags etcd does not take: an unknown `--logger`, an unknown
//!    `--log-level`, a `--log-outputs` file that cannot be opened.
//!
//! Each case runs real etcd and oxcd on fresh temp data dirs with ports the
//! OS gave, waits (bounded) for each to exit, and compares the message.

use std::net::TcpListener;
use std::process::Stdio;
use std::time::Duration;

use integration::Kind;

/// Bound on a refused start.
const EXIT_WITHIN: Duration = Duration::from_secs(20);

/// Three distinct loopback ports the OS just handed out.
fn ports() -> (u16, u16, u16) {
    let listeners: Vec<TcpListener> = (0..3)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind"))
        .collect();
    let port = |i: usize| listeners[i].local_addr().expect("addr").port();
    (port(0), port(1), port(2))
}

/// Starts `kind` with `args` on a fresh data dir; returns its exit success
/// and its combined output once it exits (panics if it keeps running).
async fn refused_start(kind: Kind, args: &[String]) -> (bool, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let child = tokio::process::Command::new(kind.binary().expect("binary"))
        .arg(format!("--data-dir={}", dir.path().join("data").display()))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    let pid = child.id();
    // Output is read while waiting; on timeout the child is dropped, which
    // kills exactly this process.
    let Ok(output) = tokio::time::timeout(EXIT_WITHIN, child.wait_with_output()).await else {
        panic!(
            "{} (pid {pid:?}) still running {EXIT_WITHIN:?} after a start it should refuse",
            kind.name()
        );
    };
    let output = output.expect("wait");
    let status = output.status;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (status.success(), text)
}

/// Both refuse the start, and both say `expected`.
async fn both_refuse(args: &[String], expected: &str) {
    for kind in [Kind::Etcd, Kind::Oxcd] {
        let (ok, output) = refused_start(kind, args).await;
        assert!(!ok, "{} started with {args:?}:\n{output}", kind.name());
        assert!(
            output.contains(expected),
            "{} did not say {expected:?}:\n{output}",
            kind.name()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn advertised_peer_urls_must_match_the_initial_cluster() {
    let (client, peer, other) = ports();
    let listed = format!("http://127.0.0.1:{peer}");
    let advertised = format!("http://127.0.0.1:{other}");
    let args = vec![
        "--name=e".to_string(),
        format!("--listen-client-urls=http://127.0.0.1:{client}"),
        format!("--advertise-client-urls=http://127.0.0.1:{client}"),
        format!("--listen-peer-urls={listed}"),
        format!("--initial-advertise-peer-urls={advertised}"),
        format!("--initial-cluster=e={listed}"),
    ];
    let expected = format!(
        "--initial-cluster has e={listed} but missing from --initial-advertise-peer-urls={advertised} \
         (resolved urls: \"{advertised}\" != \"{listed}\")"
    );
    both_refuse(&args, &expected).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_missing_from_the_initial_cluster_is_refused() {
    let (client, peer, _) = ports();
    let listed = format!("http://127.0.0.1:{peer}");
    let args = vec![
        "--name=zz".to_string(),
        format!("--listen-client-urls=http://127.0.0.1:{client}"),
        format!("--advertise-client-urls=http://127.0.0.1:{client}"),
        format!("--listen-peer-urls={listed}"),
        format!("--initial-advertise-peer-urls={listed}"),
        format!("--initial-cluster=e={listed}"),
    ];
    both_refuse(
        &args,
        "couldn't find local name \"zz\" in the initial cluster configuration",
    )
    .await;
}

/// Flags for a single member on fresh OS-given ports, then `extra`.
fn single(extra: &[&str]) -> Vec<String> {
    let (client, peer, _) = ports();
    let listed = format!("http://127.0.0.1:{peer}");
    let mut args = vec![
        "--name=e".to_string(),
        format!("--listen-client-urls=http://127.0.0.1:{client}"),
        format!("--advertise-client-urls=http://127.0.0.1:{client}"),
        format!("--listen-peer-urls={listed}"),
        format!("--initial-advertise-peer-urls={listed}"),
        format!("--initial-cluster=e={listed}"),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    args
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logging_flags_etcd_refuses_are_refused() {
    both_refuse(&single(&["--logger=foo"]), "unknown logger option \"foo\"").await;
    both_refuse(&single(&["--log-level=loud"]), "unknown level \"loud\"").await;
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("no/such/dir/etcd.log");
    let outputs = format!("--log-outputs={}", missing.display());
    both_refuse(
        &single(&["--logger=zap", &outputs]),
        &format!("open sink \"{}\"", missing.display()),
    )
    .await;
}
