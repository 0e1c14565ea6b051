//! What runs against the cluster while faults come and go: KV clients whose
//! history is recorded, watchers that resume after a break, and a keeper
//! of leases.
//!
//! 1. [`kv_client`] draws requests from [`lin::Workload`] (puts with unique
//!    values, linearizable gets, compare-and-puts over a few hot keys),
//!    paced to a rate, and records each outcome in the shared
//!    [`Recorder`]. A failed request moves the client to the next member;
//!    a write with no answer stays "maybe applied" forever, so the client
//!    goes on under a new client id (one outstanding request per id).
//! 2. [`watcher`] keeps a watch on one member. Each stream it opens is a
//!    [`WatchSegment`]; when a stream breaks, the next one starts at the
//!    revision after the last event received, so the segments together
//!    must hold every event once. It stops once it has seen the revision
//!    it is told to reach ([`WatchControl::finish_at`]), or when stopped.
//! 3. [`lease_keeper`] keeps leases alive through one member at a time: a
//!    round of keep-alives is sent once the previous round is answered (or
//!    at the next tick); a stream that breaks, or stays unanswered for
//!    [`KEEPALIVE_STALL`], is dropped and the keeper moves to the next
//!    member. Every request and answer goes into a [`KeepAliveLedger`].
//!
//! Every loop is bounded by a stop flag and an iteration cap; the only
//! waits are the clients' pacing and a short back-off after a failure.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use proto::etcdserverpb::kv_client::KvClient;
use proto::etcdserverpb::lease_client::LeaseClient;
use proto::etcdserverpb::{LeaseKeepAliveRequest, WatchResponse};
use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};

use crate::lease_check::KeepAliveLedger;
use crate::lin::{self, Recorder, Response, Workload};
use crate::watch_check::{self, KeyRange, WatchSpec};

/// Bound on connecting to a member.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Pause after a failed request or connection before the next try.
const RETRY_BACKOFF: Duration = Duration::from_millis(100);
/// How often a blocked reader looks at its stop flag.
const CHECK_EVERY: Duration = Duration::from_millis(100);
/// Bound on a watch stream's `created` answer.
const WATCH_OPEN_TIMEOUT: Duration = Duration::from_secs(3);
/// A keep-alive round unanswered this long means the stream is stuck.
pub const KEEPALIVE_STALL: Duration = Duration::from_secs(3);
/// Cap on the requests of one client, and on the streams a watcher or the
/// lease keeper opens: far above what a run reaches.
const MAX_ITERATIONS: usize = 1_000_000;

/// State the KV clients share (step 1).
#[derive(Debug, Default)]
pub struct ClientShared {
    pub recorder: Recorder,
    pub next_client: AtomicU32,
    /// Requests answered with a definite response.
    pub definite: AtomicUsize,
    pub stop: AtomicBool,
}

/// How a KV client runs.
#[derive(Debug, Clone)]
pub struct ClientOpts {
    /// The workload's keys are `<prefix><n>`.
    pub prefix: String,
    pub hot_keys: usize,
    /// Bound on each request; a write past it is "maybe applied".
    pub rpc_timeout: Duration,
    /// Time between two requests of one client.
    pub pace: Duration,
}

/// A gRPC channel to `endpoint`, bounded by [`CONNECT_TIMEOUT`].
pub async fn connect(endpoint: &str) -> Result<Channel, String> {
    let endpoint = Endpoint::from_shared(endpoint.to_string())
        .map_err(|e| e.to_string())?
        .connect_timeout(CONNECT_TIMEOUT);
    match tokio::time::timeout(CONNECT_TIMEOUT, endpoint.connect()).await {
        Ok(Ok(channel)) => Ok(channel),
        Ok(Err(e)) => Err(format!("connect: {e}")),
        Err(_) => Err("connect timed out".to_string()),
    }
}

/// Step 1: one KV client, starting on member `writer % members`.
pub async fn kv_client(
    writer: usize,
    seed: u64,
    endpoints: Vec<String>,
    opts: ClientOpts,
    shared: Arc<ClientShared>,
) {
    let mut workload = Workload::new(&opts.prefix, opts.hot_keys, writer, seed);
    let mut member = writer % endpoints.len();
    let mut kv: Option<KvClient<Channel>> = None;
    let mut id = shared.next_client.fetch_add(1, Ordering::SeqCst);
    let mut pace = tokio::time::interval(opts.pace);
    pace.set_missed_tick_behavior(MissedTickBehavior::Delay);
    for _ in 0..MAX_ITERATIONS {
        pace.tick().await;
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        let request = workload.next_request();
        let call = shared.recorder.now();
        if kv.is_none() {
            kv = connect(&endpoints[member]).await.ok().map(KvClient::new);
        }
        let outcome = match kv.as_mut() {
            Some(client) => lin::execute(client, &request, opts.rpc_timeout).await,
            None => Err("no connection".to_string()),
        };
        let failed = outcome.is_err();
        match shared
            .recorder
            .record(id, member, call, request.clone(), outcome)
        {
            Some(Response::Unknown) => id = shared.next_client.fetch_add(1, Ordering::SeqCst),
            Some(response) => {
                workload.observe(&request, &response);
                shared.definite.fetch_add(1, Ordering::SeqCst);
            }
            None => {}
        }
        if failed {
            kv = None;
            member = (member + 1) % endpoints.len();
            tokio::time::sleep(RETRY_BACKOFF).await;
        }
    }
}

/// Tells the watchers when to stop (step 2).
#[derive(Debug, Default)]
pub struct WatchControl {
    /// Stop now, whatever was received.
    pub stop: AtomicBool,
    /// Stop once an event at this revision or above arrived (0: not yet).
    finish_at: AtomicI64,
}

impl WatchControl {
    /// Lets the watchers stop once they have received revision `revision`.
    pub fn finish_at(&self, revision: i64) {
        self.finish_at.store(revision, Ordering::SeqCst);
    }

    fn done(&self, last_revision: i64) -> bool {
        let target = self.finish_at.load(Ordering::SeqCst);
        self.stop.load(Ordering::SeqCst) || (target > 0 && last_revision >= target)
    }
}

/// One watch stream of a watcher.
#[derive(Debug, Clone)]
pub struct WatchSegment {
    /// The `start_revision` it was created with.
    pub start_revision: i64,
    /// Every response, in arrival order.
    pub responses: Vec<WatchResponse>,
    /// When (ms into the run) and how the stream broke; `None` when the
    /// watcher closed it itself.
    pub broke: Option<(u64, String)>,
}

/// Everything one watcher received (step 2).
#[derive(Debug, Clone)]
pub struct WatcherLog {
    /// The member index it watched through.
    pub member: usize,
    pub range: KeyRange,
    pub segments: Vec<WatchSegment>,
    /// Streams that could not even be opened (member down, say).
    pub failed_opens: usize,
}

/// Step 2: watches `range` from `first_revision` on member `member`.
pub async fn watcher(
    member: usize,
    endpoint: String,
    range: KeyRange,
    first_revision: i64,
    control: Arc<WatchControl>,
    origin: Instant,
) -> WatcherLog {
    let mut log = WatcherLog {
        member,
        range: range.clone(),
        segments: Vec::new(),
        failed_opens: 0,
    };
    let mut last_revision = 0;
    let mut next = first_revision;
    for _ in 0..MAX_ITERATIONS {
        if control.done(last_revision) {
            break;
        }
        let spec = WatchSpec::new(range.clone(), next);
        let opened = match connect(&endpoint).await {
            Ok(channel) => watch_check::open_raw(channel, spec.create(0), WATCH_OPEN_TIMEOUT).await,
            Err(e) => Err(e),
        };
        let (requests, mut stream) = match opened {
            Ok(open) => open,
            Err(_) => {
                log.failed_opens += 1;
                tokio::time::sleep(RETRY_BACKOFF).await;
                continue;
            }
        };
        let mut segment = WatchSegment {
            start_revision: next,
            responses: Vec::new(),
            broke: None,
        };
        while !control.done(last_revision) {
            let broke = match tokio::time::timeout(CHECK_EVERY, stream.message()).await {
                Err(_) => continue,
                Ok(Ok(Some(response))) => {
                    if let Some(rev) = response.events.iter().map(watch_check::revision).max() {
                        last_revision = last_revision.max(rev);
                    }
                    segment.responses.push(response);
                    continue;
                }
                Ok(Ok(None)) => "closed by the server".to_string(),
                Ok(Err(s)) => format!("{:?}: {}", s.code(), s.message()),
            };
            segment.broke = Some((millis_since(origin), broke));
            break;
        }
        drop(requests);
        let broke = segment.broke.is_some();
        if segment.responses.is_empty() && broke {
            log.failed_opens += 1;
        } else {
            log.segments.push(segment);
        }
        if last_revision > 0 {
            next = last_revision + 1;
        }
        if broke {
            tokio::time::sleep(RETRY_BACKOFF).await;
        }
    }
    log
}

/// What the lease keeper saw (step 3).
#[derive(Debug, Default)]
pub struct LeaseLog {
    pub ledger: KeepAliveLedger,
    /// Streams that broke or stalled: when (ms into the run), on which
    /// member, why.
    pub breaks: Vec<(u64, usize, String)>,
    /// Answers that did not match the request in flight.
    pub protocol_errors: Vec<String>,
}

/// Step 3: keeps `ids` alive, one round every `every`, until `stop`.
pub async fn lease_keeper(
    ids: Vec<i64>,
    endpoints: Vec<String>,
    every: Duration,
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<LeaseLog>>,
    origin: Instant,
) {
    let lock = || {
        log.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    };
    let mut member = 0;
    for _ in 0..MAX_ITERATIONS {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let why = keep_alive_stream(&ids, &endpoints[member], every, &stop, &log).await;
        let broke = {
            let mut l = lock();
            let lost = l.ledger.stream_lost();
            let at = millis_since(origin);
            why.map(|why| {
                l.breaks
                    .push((at, member, format!("{why} ({lost} in flight)")))
            })
            .is_some()
        };
        if broke {
            member = (member + 1) % endpoints.len();
            tokio::time::sleep(RETRY_BACKOFF).await;
        }
    }
}

/// One keep-alive stream on `endpoint` until `stop` (`None`) or until it
/// breaks or stalls (why).
async fn keep_alive_stream(
    ids: &[i64],
    endpoint: &str,
    every: Duration,
    stop: &AtomicBool,
    log: &Mutex<LeaseLog>,
) -> Option<String> {
    let lock = || {
        log.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    };
    let channel = match connect(endpoint).await {
        Ok(channel) => channel,
        Err(e) => return Some(e),
    };
    let (tx, rx) = mpsc::channel(ids.len() * 4 + 4);
    let send_round = |tx: &mpsc::Sender<LeaseKeepAliveRequest>| {
        let mut l = lock();
        for &id in ids {
            if tx.try_send(LeaseKeepAliveRequest { id }).is_ok() {
                l.ledger.sent(id, Instant::now());
            }
        }
    };
    // etcd sends the stream's headers with its first answer: the first
    // round goes out before the call is awaited.
    send_round(&tx);
    let mut client = LeaseClient::new(channel);
    let call = client.lease_keep_alive(ReceiverStream::new(rx));
    let mut stream = match tokio::time::timeout(KEEPALIVE_STALL, call).await {
        Ok(Ok(response)) => response.into_inner(),
        Ok(Err(s)) => return Some(format!("keep-alive: {:?}: {}", s.code(), s.message())),
        Err(_) => return Some(format!("keep-alive: no answer within {KEEPALIVE_STALL:?}")),
    };
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut round_sent = Instant::now();
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if stop.load(Ordering::SeqCst) {
                    return None;
                }
                if lock().ledger.in_flight() == 0 {
                    send_round(&tx);
                    round_sent = Instant::now();
                } else if round_sent.elapsed() >= KEEPALIVE_STALL {
                    return Some(format!("a round unanswered for {KEEPALIVE_STALL:?}"));
                }
            }
            answer = stream.message() => match answer {
                Ok(Some(r)) => {
                    let mut l = lock();
                    if let Err(e) = l.ledger.answered(r.id, r.ttl, Instant::now()) {
                        l.protocol_errors.push(e);
                    }
                }
                Ok(None) => return Some("closed by the server".to_string()),
                Err(s) => return Some(format!("{:?}: {}", s.code(), s.message())),
            }
        }
    }
}

/// Milliseconds from `origin` to now.
pub fn millis_since(origin: Instant) -> u64 {
    u64::try_from(origin.elapsed().as_millis()).unwrap_or(u64::MAX)
}
