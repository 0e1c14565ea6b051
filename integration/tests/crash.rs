//! Crash test: kill -9 under write load loses no acknowledged write and
//! applies nothing twice.
//!
//! 1. Start oxcd. Each cycle, `WRITERS` concurrent writers (one connection
//!    each) put unique values (`c<cycle>-w<writer>-s<seq>`) to their own keys
//!    and record every acknowledged (key, value, revision).
//! 2. Once `ACKS_PER_CYCLE` puts are acknowledged, SIGKILL the server while
//!    the writers are still mid-stream. A writer stops at its first failed
//!    put and remembers that value as "maybe applied".
//! 3. Restart on the same data dir and ports, then check every ack so far
//!    (the bookkeeping and the read-back checks are `integration::acks`):
//!    - acked revisions are unique (nothing applied twice);
//!    - the store revision is >= the highest acked revision;
//!    - each key's latest value is at least as new as its last ack: the same
//!      revision and value, or a newer revision holding one of that key's
//!      "maybe applied" values;
//!    - a Range at each acked revision returns the acked value with that
//!      mod revision (nothing is compacted in this test);
//!    - a new put gets a revision above every revision seen before.
//! 4. Repeat for `CYCLES` kill/restart cycles.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use integration::acks::{Ledger, ReadMode};
use integration::{Kind, Server, ServerOpts};
use proto::etcdserverpb::kv_client::KvClient;
use proto::etcdserverpb::{PutRequest, RangeRequest};
use tokio::sync::Notify;
use tonic::transport::Channel;

const CYCLES: usize = 3;
const WRITERS: usize = 4;
const KEYS_PER_WRITER: usize = 8;
const ACKS_PER_CYCLE: usize = 200;
/// Upper bound on puts per writer per cycle (the kill normally comes first).
const MAX_PUTS_PER_WRITER: usize = 100_000;
const RPC_TIMEOUT: Duration = Duration::from_secs(10);
const ACK_DEADLINE: Duration = Duration::from_secs(60);

#[derive(Debug, Default)]
struct WriterLog {
    /// Acknowledged puts, and the put in flight when the writer stopped (it
    /// may or may not apply).
    ledger: Ledger,
    /// An error that happened while the server was meant to be up.
    error_while_up: Option<String>,
}

struct Shared {
    acked: AtomicUsize,
    target: usize,
    reached: Notify,
    killing: AtomicBool,
}

async fn writer(
    mut kv: KvClient<Channel>,
    id: usize,
    cycle: usize,
    shared: Arc<Shared>,
) -> WriterLog {
    let mut log = WriterLog::default();
    for seq in 0..MAX_PUTS_PER_WRITER {
        let key = format!("crash/w{id}/k{}", seq % KEYS_PER_WRITER).into_bytes();
        let value = format!("c{cycle}-w{id}-s{seq}").into_bytes();
        let put = PutRequest {
            key: key.clone(),
            value: value.clone(),
            ..Default::default()
        };
        let failure = match tokio::time::timeout(RPC_TIMEOUT, kv.put(put)).await {
            Ok(Ok(resp)) => match resp.into_inner().header {
                Some(h) => {
                    log.ledger.ack(key, value, h.revision);
                    if shared.acked.fetch_add(1, Ordering::SeqCst) + 1 == shared.target {
                        shared.reached.notify_one();
                    }
                    continue;
                }
                None => "put response without header".to_string(),
            },
            Ok(Err(status)) => format!("{:?}: {}", status.code(), status.message()),
            Err(_) => format!("put timed out after {RPC_TIMEOUT:?}"),
        };
        if !shared.killing.load(Ordering::SeqCst) {
            log.error_while_up = Some(format!("writer {id} seq {seq}: {failure}"));
        }
        log.ledger.maybe(key, value);
        break;
    }
    log
}

/// Runs one load phase and kills the server in the middle of it.
async fn load_and_kill(server: &mut Server, cycle: usize) -> Vec<WriterLog> {
    let shared = Arc::new(Shared {
        acked: AtomicUsize::new(0),
        target: ACKS_PER_CYCLE,
        reached: Notify::new(),
        killing: AtomicBool::new(false),
    });
    let mut tasks = Vec::new();
    for id in 0..WRITERS {
        let kv = server.kv().await.expect("connect writer");
        tasks.push(tokio::spawn(writer(kv, id, cycle, shared.clone())));
    }
    let reached = tokio::time::timeout(ACK_DEADLINE, shared.reached.notified()).await;
    shared.killing.store(true, Ordering::SeqCst);
    server.kill9().expect("kill -9");
    let mut logs = Vec::new();
    for task in tasks {
        let log = tokio::time::timeout(RPC_TIMEOUT * 2, task)
            .await
            .expect("writer did not stop after the kill")
            .expect("writer task panicked");
        logs.push(log);
    }
    let errors: Vec<&String> = logs
        .iter()
        .filter_map(|l| l.error_while_up.as_ref())
        .collect();
    assert!(
        errors.is_empty(),
        "cycle {cycle}: puts failed before the kill: {errors:?}"
    );
    assert!(
        reached.is_ok(),
        "cycle {cycle}: only {} of {ACKS_PER_CYCLE} puts acknowledged within {ACK_DEADLINE:?}",
        shared.acked.load(Ordering::SeqCst)
    );
    logs
}

async fn range(
    kv: &mut KvClient<Channel>,
    key: &[u8],
    revision: i64,
) -> proto::etcdserverpb::RangeResponse {
    let req = RangeRequest {
        key: key.to_vec(),
        revision,
        ..Default::default()
    };
    match tokio::time::timeout(RPC_TIMEOUT, kv.range(req)).await {
        Ok(Ok(resp)) => resp.into_inner(),
        Ok(Err(status)) => panic!(
            "range {} at {revision}: {:?} {}",
            String::from_utf8_lossy(key),
            status.code(),
            status.message()
        ),
        Err(_) => panic!("range timed out after {RPC_TIMEOUT:?}"),
    }
}

/// Step 3 of the module doc, over every ack of every cycle so far.
async fn check_after_restart(server: &Server, cycle: usize, ledger: &Ledger) -> i64 {
    let mut kv = server.kv().await.expect("connect after restart");
    if let Err(e) = ledger.unique_revisions() {
        panic!("cycle {cycle}: {e}");
    }
    let max_acked = ledger.max_revision();

    let current = range(&mut kv, b"crash/", 0)
        .await
        .header
        .map(|h| h.revision)
        .unwrap_or(0);
    assert!(
        current >= max_acked,
        "cycle {cycle}: store revision {current} is behind acknowledged revision {max_acked}"
    );

    if let Err(e) = ledger
        .verify(&mut kv, ReadMode::Linearizable, RPC_TIMEOUT)
        .await
    {
        panic!("cycle {cycle}: {e}");
    }

    let put = PutRequest {
        key: format!("crash/after-restart-{cycle}").into_bytes(),
        value: b"x".to_vec(),
        ..Default::default()
    };
    let fresh = tokio::time::timeout(RPC_TIMEOUT, kv.put(put))
        .await
        .expect("put after restart timed out")
        .expect("put after restart")
        .into_inner()
        .header
        .map(|h| h.revision)
        .unwrap_or(0);
    assert!(
        fresh > current && fresh > max_acked,
        "cycle {cycle}: new put got revision {fresh}, not above current {current} / acked {max_acked}"
    );
    fresh
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_loses_no_acknowledged_put() {
    let mut server = Server::start(Kind::Oxcd, ServerOpts::default())
        .await
        .unwrap_or_else(|e| panic!("start oxcd: {e}"));
    let mut ledger = Ledger::default();
    let mut floor = 0;
    for cycle in 0..CYCLES {
        let logs = load_and_kill(&mut server, cycle).await;
        let acked_now: usize = logs.iter().map(|l| l.ledger.acks().len()).sum();
        for log in logs {
            assert!(
                log.ledger.acks().iter().all(|a| a.revision > floor),
                "cycle {cycle}: a put acknowledged a revision at or below {floor}, \
                 the revision of the put made after the previous restart"
            );
            ledger.extend(log.ledger);
        }
        server
            .restart()
            .await
            .unwrap_or_else(|e| panic!("restart after kill -9: {e}"));
        floor = check_after_restart(&server, cycle, &ledger).await;
        println!(
            "crash: cycle {cycle}: {acked_now} puts acknowledged before kill -9; {} acks verified after restart; new put at revision {floor}",
            ledger.acks().len()
        );
    }
}
