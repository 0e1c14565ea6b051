//! The Watch API on real servers. The checks themselves (the history model,
//! what each watcher is due, the shape of its responses) are
//! `integration::watch_check`, unit tested there.
//!
//! 1. `random_writes_compactions_and_watchers_on_three_members`, a seeded
//!    property test (`OXCD_SEED`, printed):
//!    1. start three oxcd members and open two watch streams on each;
//!    2. three clients (one per member) run `OXCD_WATCH_OPS` random writes
//!       each: puts, single and range deletes, txns of several puts and
//!       deletes (one revision), and, on client 0, five compactions spread
//!       over its writes, at revisions that only hold puts (see step 6);
//!    3. meanwhile thirty watchers are created on the six streams, in
//!       three waves (before the writes, at 35 % and at 70 %), each with a
//!       random range (one key, a prefix, from a key, an arbitrary range),
//!       start revision (0, past, at or under the last compaction, future),
//!       filter (none, NOPUT, NODELETE) and `prev_kv`;
//!    4. the writes the clients saw acknowledged are replayed in revision
//!       order into the history (no revision may be missing), which must
//!       match a final range of the whole keyspace;
//!    5. every watcher is awaited (bounded) until it got all its events or
//!       its compaction cancel, then each stream answers a progress request
//!       at the last revision, with nothing after it;
//!    6. each watcher's responses must pass `watch_check::check_watcher`:
//!       `created` first, every due event once, in order, whole revisions
//!       per response, `prev_kv` right, filters honoured, or a clean prefix
//!       then etcd's compaction cancel, only if it started below that
//!       compaction. Compactions land on put-only revisions because at a
//!       compaction revision etcd (and oxcd, which keeps etcd's key index)
//!       drops a tombstone, so a watcher starting exactly there does not
//!       see that delete; test 4 compares that edge with etcd's.
//! 2. `a_stalled_consumer_gets_every_event_or_the_compaction_cancel`, on one
//!    member, twice (without, then with compaction):
//!    1. open a watch stream on a connection with small HTTP/2 windows, read
//!       its `created`, then stop reading it;
//!    2. on another connection, a second watcher of the same prefix reads
//!       everything;
//!    3. four writers put `OXCD_WATCH_STALL_PUTS` values of 1 KiB on the
//!       prefix: every put must succeed (the rate is printed), the reading
//!       watcher must get every event, and the server must report a slow
//!       watcher (`etcd_debugging_mvcc_slow_watcher_total`);
//!    4. the second time, history is compacted at the last revision;
//!    5. the stalled client reads again: it gets every event, in order,
//!       once; or, after the compaction, a correct prefix then the cancel
//!       (`canceled`, `compact_revision` = the compaction); either way a
//!       progress answer follows and nothing else.
//! 3. `watchers_resume_across_kills_and_restarts`:
//!    1. start three members; nine watchers (three per member, over three
//!       ranges, some with `prev_kv`) record what they get;
//!    2. two writers put unique values, moving to another member when a put
//!       fails (it may or may not have applied);
//!    3. after 150 acknowledged puts the leader is killed (-9), after 300 it
//!       restarts, after 420 a follower restarts;
//!    4. a watcher whose stream breaks resumes on the next member with
//!       `start_revision` = last seen + 1;
//!    5. at the end, the store's history is read back key by key (each
//!       key's versions, newest first) and must hold every acknowledged put
//!       and nothing no writer sent; each watcher's streams, joined, must
//!       equal that history on its range, from its start: acknowledged puts
//!       and any failed put that did apply, each once and in place.
//! 4. `protocol_details_match_etcd_3_4`: the same script on a fresh etcd
//!    and a fresh oxcd (`--max-request-bytes` 64 KiB), each step's responses
//!    compared with cluster, member and term scrubbed: auto ids from 0 per
//!    stream, a client-chosen id, a duplicate id, cancel, cancel of an
//!    unknown id (no answer), progress, filters (a response left empty is
//!    not sent), replay from a past revision, a compacted start revision, a
//!    start at the compaction revision where a key was deleted, a future
//!    start, and a large catch-up with and without `fragment`. The
//!    documented answers are also asserted on both transcripts, which
//!    validates the script against etcd.
//!
//! 5. `a_first_stream_after_unwatched_writes_starts_at_the_store_revision`:
//!    with no stream open the watch hub hears of no batch; twenty rounds of
//!    a write with no stream open, then a stream whose `created` and
//!    progress answers must name the acknowledged revision and whose next
//!    event must be the next write; then a stream from the past gets every
//!    write made while none was open, once, in order.
//!
//! The tests take turns (one lock): each starts servers on a two-core
//! machine. Every wait is bounded; times and rates are printed, never
//! asserted. `OXCD_BIN=/usr/bin/etcd` runs tests 1 to 3 against etcd.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use integration::acks::Ledger;
use integration::cluster::{Cluster, ClusterOpts};
use integration::watch_check::{
    self, History, KeyRange, Verdict, WatchSpec, WatchStream, Write, WriteOp, brief,
    cancel_request, check_watcher, compare_events, create_request, header_revision, is_progress,
    of_watcher, progress_request, read_watcher, revision, show,
};
use integration::{Kind, Server, ServerOpts, env_usize, seed_from_env};
use proto::etcdserverpb::kv_client::KvClient;
use proto::etcdserverpb::watch_create_request::FilterType;
use proto::etcdserverpb::{
    CompactionRequest, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
    WatchCreateRequest, WatchRequest, WatchResponse, request_op, response_op,
};
use proto::mvccpb::event::EventType;
use proto::mvccpb::{Event, KeyValue};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use tonic::Streaming;
use tonic::transport::{Channel, Endpoint};

/// The tests take turns: each starts servers on a two-core machine.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Bound on one client RPC.
const RPC_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on connecting and on opening a watch stream.
const OPEN_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound on watchers getting what they are due once the writes are done.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound on one step of the protocol script.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause between two polls of a condition.
const POLL: Duration = Duration::from_millis(25);

// ---------------------------------------------------------------------------
// Client plumbing shared by the tests.
// ---------------------------------------------------------------------------

async fn connect(endpoint: &str) -> Result<Channel, String> {
    let target = Endpoint::from_shared(endpoint.to_string())
        .map_err(|e| e.to_string())?
        .connect_timeout(OPEN_TIMEOUT);
    match tokio::time::timeout(OPEN_TIMEOUT, target.connect()).await {
        Ok(Ok(channel)) => Ok(channel),
        Ok(Err(e)) => Err(format!("connect {endpoint}: {e}")),
        Err(_) => Err(format!("connect {endpoint}: timed out")),
    }
}

async fn rpc<T>(
    what: &str,
    call: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T, String> {
    match tokio::time::timeout(RPC_TIMEOUT, call).await {
        Ok(Ok(resp)) => Ok(resp.into_inner()),
        Ok(Err(s)) => Err(format!("{what}: {:?} {}", s.code(), s.message())),
        Err(_) => Err(format!("{what}: timed out after {RPC_TIMEOUT:?}")),
    }
}

/// A put that must succeed; its revision.
async fn put(kv: &mut KvClient<Channel>, key: &[u8], value: &[u8]) -> i64 {
    let req = PutRequest {
        key: key.to_vec(),
        value: value.to_vec(),
        ..Default::default()
    };
    let what = format!("put {}", show(key));
    match rpc(&what, kv.put(req)).await {
        Ok(r) => r.header.map_or(0, |h| h.revision),
        Err(e) => panic!("{e}"),
    }
}

/// The store revision, read through `kv`.
async fn store_revision(kv: &mut KvClient<Channel>) -> i64 {
    let req = RangeRequest {
        key: b"health".to_vec(),
        ..Default::default()
    };
    match rpc("range health", kv.range(req)).await {
        Ok(r) => r.header.map_or(0, |h| h.revision),
        Err(e) => panic!("{e}"),
    }
}

async fn compact(kv: &mut KvClient<Channel>, revision: i64) -> Result<(), String> {
    let req = CompactionRequest {
        revision,
        physical: false,
    };
    rpc(&format!("compact {revision}"), kv.compact(req))
        .await
        .map(|_| ())
}

/// The first response on a raw stream, bounded.
async fn next_response(
    stream: &mut Streaming<WatchResponse>,
    within: Duration,
) -> Option<WatchResponse> {
    match tokio::time::timeout(within, stream.message()).await {
        Ok(Ok(Some(r))) => Some(r),
        _ => None,
    }
}

// ---------------------------------------------------------------------------
// Test 1: the seeded property test on three members.
// ---------------------------------------------------------------------------

/// Compactions client 0 makes, evenly spaced over its writes (fewer when
/// no revision fits).
const COMPACTIONS: usize = 5;
/// Streams per member.
const STREAMS_PER_MEMBER: usize = 2;

/// The keyspace: 16 keys under `w/`, two that prefix some of them, two
/// under `x/`.
fn keyspace() -> Vec<Vec<u8>> {
    let mut keys: Vec<Vec<u8>> = Vec::new();
    for a in ["a", "b", "c", "d"] {
        for b in ["a", "b", "c", "d"] {
            keys.push(format!("w/{a}{b}").into_bytes());
        }
    }
    for k in ["w/a", "w/c", "x/1", "x/2"] {
        keys.push(k.as_bytes().to_vec());
    }
    keys.sort();
    keys
}

fn random_range(rng: &mut StdRng, keys: &[Vec<u8>]) -> KeyRange {
    let key = keys.choose(rng).expect("keys").clone();
    match rng.gen_range(0..4) {
        0 => KeyRange::single(&key),
        1 => {
            let prefixes: [&[u8]; 5] = [b"w/", b"w/a", b"w/b", b"w/c", b"x/"];
            match prefixes.choose(rng) {
                Some(prefix) if rng.gen_bool(0.9) => KeyRange::prefix(prefix),
                // Every key (etcd refuses an empty key in a delete).
                _ => KeyRange::from_key(&[0]),
            }
        }
        2 => KeyRange::from_key(&key),
        _ => {
            let mut pair = [key, keys.choose(rng).expect("keys").clone()];
            pair.sort();
            if pair[0] == pair[1] {
                pair[1].push(0);
            }
            KeyRange::between(&pair[0], &pair[1])
        }
    }
}

/// What the clients share with the watcher driver.
#[derive(Default)]
struct Progress {
    ops_done: AtomicUsize,
    max_revision: AtomicI64,
    /// Revisions whose write only put (compaction candidates).
    put_only: Mutex<Vec<i64>>,
    compactions: Mutex<Vec<i64>>,
    /// A client stopped at an error (the driver stops waiting for it).
    failed: std::sync::atomic::AtomicBool,
}

impl Progress {
    fn note(&self, write: &Write) {
        self.max_revision
            .fetch_max(write.revision, Ordering::SeqCst);
        if write.ops.iter().all(|op| matches!(op, WriteOp::Put { .. })) {
            self.put_only.lock().expect("put_only").push(write.revision);
        }
    }

    fn last_compaction(&self) -> i64 {
        self.compactions
            .lock()
            .expect("compactions")
            .last()
            .copied()
            .unwrap_or(0)
    }
}

/// A put, delete or txn with the keys it touches; `None` if it changed
/// nothing (a delete that found no key).
async fn random_write(
    kv: &mut KvClient<Channel>,
    rng: &mut StdRng,
    keys: &[Vec<u8>],
    value: Vec<u8>,
) -> Result<Option<Write>, String> {
    let roll = rng.gen_range(0..100);
    if roll < 45 {
        let key = keys.choose(rng).expect("keys").clone();
        let req = PutRequest {
            key: key.clone(),
            value: value.clone(),
            ..Default::default()
        };
        let resp = rpc("put", kv.put(req)).await?;
        let revision = resp.header.map_or(0, |h| h.revision);
        return Ok(Some(Write {
            revision,
            ops: vec![WriteOp::Put { key, value }],
        }));
    }
    if roll < 70 {
        let range = if roll < 60 {
            KeyRange::single(keys.choose(rng).expect("keys"))
        } else {
            random_range(rng, keys)
        };
        let req = DeleteRangeRequest {
            key: range.key.clone(),
            range_end: range.range_end.clone(),
            ..Default::default()
        };
        let resp = rpc("delete", kv.delete_range(req)).await?;
        if resp.deleted == 0 {
            return Ok(None);
        }
        let revision = resp.header.map_or(0, |h| h.revision);
        return Ok(Some(Write {
            revision,
            ops: vec![WriteOp::Delete {
                range,
                deleted: resp.deleted,
            }],
        }));
    }
    // A txn: puts on distinct keys, maybe a delete of another key (etcd
    // refuses a txn that puts and deletes one key).
    let mut chosen: Vec<Vec<u8>> = keys.choose_multiple(rng, 5).cloned().collect();
    let puts = rng.gen_range(1..=4);
    let delete = (rng.gen_bool(0.5)).then(|| chosen.pop().expect("five keys"));
    chosen.truncate(puts);
    let mut ops: Vec<WriteOp> = chosen
        .into_iter()
        .enumerate()
        .map(|(i, key)| {
            let mut value = value.clone();
            value.extend_from_slice(format!("-{i}").as_bytes());
            WriteOp::Put { key, value }
        })
        .collect();
    if let Some(key) = delete {
        let at = rng.gen_range(0..=ops.len());
        ops.insert(
            at,
            WriteOp::Delete {
                range: KeyRange::single(&key),
                deleted: 0,
            },
        );
    }
    let success = ops
        .iter()
        .map(|op| RequestOp {
            request: Some(match op {
                WriteOp::Put { key, value } => request_op::Request::RequestPut(PutRequest {
                    key: key.clone(),
                    value: value.clone(),
                    ..Default::default()
                }),
                WriteOp::Delete { range, .. } => {
                    request_op::Request::RequestDeleteRange(DeleteRangeRequest {
                        key: range.key.clone(),
                        range_end: range.range_end.clone(),
                        ..Default::default()
                    })
                }
            }),
        })
        .collect();
    let req = TxnRequest {
        success,
        ..Default::default()
    };
    let resp = rpc("txn", kv.txn(req)).await?;
    if !resp.succeeded || resp.responses.len() != ops.len() {
        return Err(format!("txn without compares answered {resp:?}"));
    }
    for (op, answer) in ops.iter_mut().zip(&resp.responses) {
        if let (
            WriteOp::Delete { deleted, .. },
            Some(response_op::Response::ResponseDeleteRange(d)),
        ) = (op, &answer.response)
        {
            *deleted = d.deleted;
        }
    }
    let revision = resp.header.map_or(0, |h| h.revision);
    Ok(Some(Write { revision, ops }))
}

/// Client 0's compaction: at a put-only revision above the last one and a
/// little behind the newest write.
async fn random_compaction(
    kv: &mut KvClient<Channel>,
    rng: &mut StdRng,
    progress: &Progress,
) -> Result<(), String> {
    let last = progress.last_compaction();
    let newest = progress.max_revision.load(Ordering::SeqCst);
    let candidates: Vec<i64> = progress
        .put_only
        .lock()
        .expect("put_only")
        .iter()
        .copied()
        .filter(|&r| r > last && r + 5 <= newest)
        .collect();
    let Some(&revision) = candidates.choose(rng) else {
        return Ok(());
    };
    compact(kv, revision).await?;
    progress
        .compactions
        .lock()
        .expect("compactions")
        .push(revision);
    Ok(())
}

/// One client of step 2: `ops` writes through its own member.
async fn client(
    id: usize,
    endpoint: String,
    seed: u64,
    ops: usize,
    progress: Arc<Progress>,
) -> Result<Vec<Write>, String> {
    let outcome = client_writes(id, endpoint, seed, ops, &progress).await;
    if outcome.is_err() {
        progress.failed.store(true, Ordering::SeqCst);
    }
    outcome
}

async fn client_writes(
    id: usize,
    endpoint: String,
    seed: u64,
    ops: usize,
    progress: &Progress,
) -> Result<Vec<Write>, String> {
    let mut rng = StdRng::seed_from_u64(seed ^ (0x5eed_0000 + id as u64));
    let keys = keyspace();
    let mut kv = KvClient::new(connect(&endpoint).await?);
    let mut writes = Vec::new();
    for seq in 0..ops {
        // Compactions spread over the run, so that watchers of every wave
        // meet some.
        let every = (ops / (COMPACTIONS + 1)).max(1);
        if id == 0 && seq > 0 && seq % every == 0 && seq / every <= COMPACTIONS {
            random_compaction(&mut kv, &mut rng, progress)
                .await
                .map_err(|e| format!("client {id}: {e}"))?;
        }
        let pad = rng.gen_range(0..40);
        let value = format!("c{id}s{seq}{}", "x".repeat(pad)).into_bytes();
        let write = random_write(&mut kv, &mut rng, &keys, value)
            .await
            .map_err(|e| format!("client {id}, write #{seq}: {e}"))?;
        if let Some(write) = write {
            progress.note(&write);
            writes.push(write);
        }
        progress.ops_done.fetch_add(1, Ordering::SeqCst);
    }
    Ok(writes)
}

/// Step 3: a random watcher, its start chosen from what is known now.
fn random_watcher(rng: &mut StdRng, keys: &[Vec<u8>], newest: i64, compacted: i64) -> WatchSpec {
    let start = match rng.gen_range(0..6) {
        0 => 0,
        1 => rng.gen_range(compacted.max(1)..=newest.max(1)),
        2 if compacted > 0 => compacted,
        3 if compacted > 1 => rng.gen_range(1..compacted),
        4 => newest + rng.gen_range(1..=80),
        _ => rng.gen_range(1..=newest.max(1)),
    };
    let (no_put, no_delete) = match rng.gen_range(0..5) {
        0 => (true, false),
        1 => (false, true),
        _ => (false, false),
    };
    WatchSpec {
        range: random_range(rng, keys),
        start_revision: start,
        no_put,
        no_delete,
        prev_kv: rng.gen_bool(0.5),
    }
}

/// Waits until the clients have done `ops` writes (or all of them).
async fn wait_ops(progress: &Progress, ops: usize, deadline: Instant) {
    while progress.ops_done.load(Ordering::SeqCst) < ops
        && !progress.failed.load(Ordering::SeqCst)
        && Instant::now() < deadline
    {
        tokio::time::sleep(POLL).await;
    }
}

/// Whether watcher `id` of `responses` got `due` events or its cancel.
fn delivered(responses: &[WatchResponse], id: i64, due: usize) -> bool {
    let mine = responses.iter().filter(|r| r.watch_id == id);
    let mut events = 0;
    for r in mine {
        if r.canceled {
            return true;
        }
        events += r.events.len();
    }
    events >= due
}

/// The created responses of a stream, in order: the k-th answers the k-th
/// create sent (creates are answered in order, as clientv3 relies on).
fn created_ids(responses: &[WatchResponse]) -> Vec<(i64, i64)> {
    responses
        .iter()
        .filter(|r| r.created)
        .map(|r| (r.watch_id, header_revision(r)))
        .collect()
}

/// The watchers of test 1 and the streams they share.
struct Watchers {
    streams: Vec<WatchStream>,
    /// Each stream's member.
    members: Vec<usize>,
    specs: Vec<WatchSpec>,
    /// Per stream, its watchers (indexes into `specs`) in the order their
    /// creates were sent.
    creates: Vec<Vec<usize>>,
}

impl Watchers {
    /// Step 1 and the first wave of step 3: two streams per member, two
    /// watchers each.
    async fn open(endpoints: &[String], rng: &mut StdRng, keys: &[Vec<u8>], first: i64) -> Self {
        let mut watchers = Watchers {
            streams: Vec::new(),
            members: Vec::new(),
            specs: Vec::new(),
            creates: Vec::new(),
        };
        for (m, endpoint) in endpoints.iter().enumerate() {
            for _ in 0..STREAMS_PER_MEMBER {
                let spec = random_watcher(rng, keys, first, 0);
                let channel = connect(endpoint).await.expect("connect");
                let stream = WatchStream::open(channel, spec.create(0), OPEN_TIMEOUT)
                    .await
                    .unwrap_or_else(|e| panic!("member {m}: {e}"));
                watchers.streams.push(stream);
                watchers.members.push(m);
                watchers.creates.push(vec![watchers.specs.len()]);
                watchers.specs.push(spec);
                let s = watchers.streams.len() - 1;
                watchers
                    .create(s, random_watcher(rng, keys, first, 0))
                    .await;
            }
        }
        watchers
    }

    /// Step 3: a watcher on stream `s`.
    async fn create(&mut self, s: usize, spec: WatchSpec) {
        self.streams[s].send(spec.create(0)).await.expect("send");
        self.creates[s].push(self.specs.len());
        self.specs.push(spec);
    }

    /// How many watchers lack `created`, or events due to them and their
    /// compaction cancel.
    fn pending(&self, history: &History) -> usize {
        let due = |spec: &WatchSpec, created: i64| -> usize {
            let from = match spec.start_revision {
                0 => created + 1,
                r => r,
            };
            history.expected(spec, from).len()
        };
        let mut pending = 0;
        for (s, stream) in self.streams.iter().enumerate() {
            pending += stream.with(|rs| {
                let ids = created_ids(rs);
                let ready = |k: usize, w: usize| match ids.get(k) {
                    Some(&(id, created)) => delivered(rs, id, due(&self.specs[w], created)),
                    None => false,
                };
                self.creates[s]
                    .iter()
                    .enumerate()
                    .filter(|&(k, &w)| !ready(k, w))
                    .count()
            });
        }
        pending
    }

    /// Step 5: waits (bounded) until no watcher is pending; how many are.
    async fn await_delivery(&self, history: &History) -> usize {
        let deadline = Instant::now() + DELIVERY_TIMEOUT;
        loop {
            let pending = self.pending(history);
            if pending == 0 || Instant::now() >= deadline {
                return pending;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Steps 5 (a progress answer per stream, nothing after it) and 6
    /// (every watcher against the history): the verdicts and failures.
    async fn judge(self, history: &History, compactions: &[i64]) -> (Vec<Verdict>, Vec<String>) {
        let last = history.last_revision();
        let mut failures = Vec::new();
        let mut verdicts = Vec::new();
        for (s, mut stream) in self.streams.into_iter().enumerate() {
            let member = self.members[s];
            let barrier = stream.progress_at(last, STEP_TIMEOUT).await;
            let responses = stream.close(OPEN_TIMEOUT).await;
            match barrier {
                Err(e) => failures.push(format!("stream {s} (member {member}): {e}")),
                Ok(at) if at + 1 < responses.len() => failures.push(format!(
                    "stream {s} (member {member}): a response after the progress answer at \
                     revision {last}: {}",
                    brief(&responses[at + 1])
                )),
                Ok(_) => {}
            }
            let ids = created_ids(&responses);
            for (k, &w) in self.creates[s].iter().enumerate() {
                let spec = &self.specs[w];
                let label = format!(
                    "watcher {w} (stream {s}, member {member}, {})",
                    spec.describe()
                );
                let Some(&(id, _)) = ids.get(k) else {
                    failures.push(format!("{label}: no `created` for create #{k}"));
                    continue;
                };
                if id != k as i64 {
                    failures.push(format!("{label}: create #{k} of its stream got id {id}"));
                }
                match check_watcher(spec, &of_watcher(&responses, id), history, compactions) {
                    Ok(v) => verdicts.push(v),
                    Err(e) => failures.push(format!("{label}: {e}")),
                }
            }
        }
        (verdicts, failures)
    }
}

/// Step 4: the store's keys and revision must be the history's.
async fn check_store(kv: &mut KvClient<Channel>, history: &History) -> Result<(), String> {
    let all = RangeRequest {
        key: vec![0],
        range_end: vec![0],
        ..Default::default()
    };
    let stored = rpc("range all", kv.range(all)).await?;
    let revision = stored.header.map_or(0, |h| h.revision);
    if revision != history.last_revision() {
        return Err(format!(
            "the store is at revision {revision}, the last acknowledged write at {}",
            history.last_revision()
        ));
    }
    let model: Vec<&KeyValue> = history.state().values().collect();
    let keys: Vec<&KeyValue> = stored.kvs.iter().filter(|kv| kv.key != b"health").collect();
    if keys != model {
        return Err(format!(
            "the store's keys differ from the replayed history:\n  store {keys:?}\n  model {model:?}"
        ));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_writes_compactions_and_watchers_on_three_members() {
    let _serial = SERIAL.lock().await;
    let seed = seed_from_env();
    let ops = env_usize("OXCD_WATCH_OPS", 400);
    println!("watch property test: seed {seed} (OXCD_SEED), {ops} writes per client");
    let started = Instant::now();
    let cluster = Cluster::start(Kind::Oxcd, ClusterOpts::default())
        .await
        .unwrap_or_else(|e| panic!("start three members: {e}"));
    let endpoints = cluster.endpoints();
    let keys = keyspace();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut kv = KvClient::new(connect(&endpoints[0]).await.expect("connect"));
    let first = store_revision(&mut kv).await;

    // Steps 1 and 3 (first wave).
    let mut watchers = Watchers::open(&endpoints, &mut rng, &keys, first).await;

    // Step 2: the clients.
    let progress = Arc::new(Progress::default());
    let clients: Vec<_> = endpoints
        .iter()
        .enumerate()
        .map(|(id, endpoint)| {
            let progress = Arc::clone(&progress);
            tokio::spawn(client(id, endpoint.clone(), seed, ops, progress))
        })
        .collect();

    // Step 3: two more waves while they write.
    let total_ops = ops * endpoints.len();
    let writing_deadline = Instant::now() + Duration::from_secs(300);
    for share in [35, 70] {
        wait_ops(&progress, total_ops * share / 100, writing_deadline).await;
        let newest = progress.max_revision.load(Ordering::SeqCst).max(first);
        let compacted = progress.last_compaction();
        for _ in 0..9 {
            let s = rng.gen_range(0..watchers.streams.len());
            let spec = random_watcher(&mut rng, &keys, newest, compacted);
            watchers.create(s, spec).await;
        }
    }
    let mut writes = Vec::new();
    for (id, handle) in clients.into_iter().enumerate() {
        match handle.await {
            Ok(Ok(w)) => writes.extend(w),
            Ok(Err(e)) => panic!("seed {seed}: {e}"),
            Err(e) => panic!("seed {seed}: client {id} panicked: {e}"),
        }
    }
    let write_time = started.elapsed();
    let compactions = progress.compactions.lock().expect("compactions").clone();

    // Step 4: the history, checked against the store.
    let history = History::replay(first, writes)
        .unwrap_or_else(|e| panic!("seed {seed}: the acknowledged writes do not replay: {e}"));
    check_store(&mut kv, &history)
        .await
        .unwrap_or_else(|e| panic!("seed {seed}: {e}"));

    // Steps 5 and 6.
    let delivery = Instant::now();
    let pending = watchers.await_delivery(&history).await;
    let delivery_time = delivery.elapsed();
    let count = watchers.specs.len();
    let (verdicts, mut failures) = watchers.judge(&history, &compactions).await;
    if pending > 0 {
        failures.push(format!(
            "{pending} watchers were still short after {DELIVERY_TIMEOUT:?}"
        ));
    }
    let canceled = verdicts.iter().filter(|v| v.canceled_at.is_some()).count();
    let canceled_midway = verdicts
        .iter()
        .filter(|v| v.canceled_at.is_some() && v.events > 0)
        .count();
    let events: usize = verdicts.iter().map(|v| v.events).sum();
    let responses: usize = verdicts.iter().map(|v| v.event_responses).sum();
    println!(
        "seed {seed}: revisions {}..={}, compactions at {compactions:?}; {count} watchers: {} \
         complete, {canceled} canceled by compaction ({canceled_midway} after some events); \
         {events} events in {responses} responses; writes took {write_time:?}, delivery after \
         them {delivery_time:?}",
        first + 1,
        history.last_revision(),
        verdicts.len() - canceled,
    );
    assert!(
        failures.is_empty(),
        "seed {seed} (OXCD_SEED={seed} to replay): {} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    drop(cluster);
}

// ---------------------------------------------------------------------------
// Test 2: a stalled consumer.
// ---------------------------------------------------------------------------

/// HTTP/2 windows of the stalled client's connection: small, so the server
/// runs out of room for it long before the writes end.
const STALLED_WINDOW: u32 = 65_535;
const STALL_WRITERS: usize = 4;
/// oxcd's count of the watch hub's catch-up reads (printed only).
const CATCH_UP_READS: &str = r#"oxcd_actor_messages_total{actor="apply",message="ReadEvents"}"#;

/// The value of `series` in the server's `/metrics`, over plain HTTP/1.1.
async fn metric(addr: &str, series: &str) -> Option<f64> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.ok()?;
    let request = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    tcp.write_all(request.as_bytes()).await.ok()?;
    let mut body = Vec::new();
    tokio::time::timeout(RPC_TIMEOUT, tcp.read_to_end(&mut body))
        .await
        .ok()?
        .ok()?;
    String::from_utf8_lossy(&body).lines().find_map(|line| {
        let (name, value) = line.split_once(' ')?;
        (name == series).then(|| value.trim().parse().ok())?
    })
}

/// Step 3's writers: `puts` puts of 1 KiB under `prefix`, all acknowledged.
async fn stall_writers(endpoint: &str, prefix: &str, puts: usize) -> (Vec<Write>, Duration) {
    let started = Instant::now();
    let mut handles = Vec::new();
    for w in 0..STALL_WRITERS {
        let channel = connect(endpoint).await.expect("connect");
        let prefix = prefix.to_string();
        handles.push(tokio::spawn(async move {
            let mut kv = KvClient::new(channel);
            let mut writes = Vec::new();
            for i in (w..puts).step_by(STALL_WRITERS) {
                let key = format!("{prefix}{w}/{}", i % 25).into_bytes();
                let mut value = format!("w{w}s{i}-").into_bytes();
                value.resize(1024, b'v');
                let revision = put(&mut kv, &key, &value).await;
                writes.push(Write {
                    revision,
                    ops: vec![WriteOp::Put { key, value }],
                });
            }
            writes
        }));
    }
    let mut writes = Vec::new();
    for h in handles {
        writes.extend(h.await.expect("writer"));
    }
    (writes, started.elapsed())
}

/// One round of test 2 under `prefix`; compacts first when `compaction`.
async fn stalled_round(server: &Server, prefix: &str, compaction: bool) {
    let puts = env_usize("OXCD_WATCH_STALL_PUTS", 2000);
    let endpoint = server.endpoint();
    let mut kv = server.kv().await.expect("kv");
    let first = store_revision(&mut kv).await;
    let spec = WatchSpec {
        prev_kv: true,
        ..WatchSpec::new(KeyRange::prefix(prefix.as_bytes()), 0)
    };

    // Step 1: the stalled stream, on its own connection with small windows.
    let small = Endpoint::from_shared(endpoint.clone())
        .expect("endpoint")
        .initial_stream_window_size(STALLED_WINDOW)
        .initial_connection_window_size(STALLED_WINDOW)
        .connect()
        .await
        .expect("connect");
    let (stalled_requests, mut stalled) =
        watch_check::open_raw(small, spec.create(0), OPEN_TIMEOUT)
            .await
            .expect("open");
    let created = next_response(&mut stalled, STEP_TIMEOUT)
        .await
        .expect("the stalled watcher's `created`");

    // Step 2: the reading watcher, on another connection.
    let channel = connect(&endpoint).await.expect("connect");
    let mut reader = WatchStream::open(channel, spec.create(0), OPEN_TIMEOUT)
        .await
        .expect("open");
    assert!(
        reader.wait_until(STEP_TIMEOUT, |rs| !rs.is_empty()).await,
        "reader: no `created`"
    );

    // Step 3: the writes.
    let reads_before = metric(&server.client_addr(), CATCH_UP_READS).await;
    let (writes, took) = stall_writers(&endpoint, prefix, puts).await;
    let reads_after = metric(&server.client_addr(), CATCH_UP_READS).await;
    let history = History::replay(first, writes).expect("the puts replay");
    let last = history.last_revision();
    // The series appears with the first read; etcd has none.
    let reads = match reads_after {
        Some(b) => format!("{}", b - reads_before.unwrap_or(0.0)),
        None => "n/a".to_string(),
    };
    println!(
        "stalled consumer ({prefix}): {puts} puts of 1 KiB by {STALL_WRITERS} writers in \
         {took:?} ({:.0} puts/s) while one watcher did not read; oxcd catch-up reads meanwhile: \
         {reads}",
        puts as f64 / took.as_secs_f64()
    );
    let reader_created = reader.with(|rs| header_revision(&rs[0]));
    let reader_due = history.expected(&spec, reader_created + 1).len();
    let got_all = reader
        .wait_until(DELIVERY_TIMEOUT, |rs| delivered(rs, 0, reader_due))
        .await;
    assert!(
        got_all,
        "the reading watcher did not get its {reader_due} events"
    );
    let slow_started = Instant::now();
    let mut slow = None;
    while slow_started.elapsed() < STEP_TIMEOUT {
        slow = metric(
            &server.client_addr(),
            "etcd_debugging_mvcc_slow_watcher_total",
        )
        .await;
        if slow.is_some_and(|v| v >= 1.0) {
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    assert!(
        slow.is_some_and(|v| v >= 1.0),
        "the stalled watcher never showed as slow (etcd_debugging_mvcc_slow_watcher_total {slow:?})"
    );

    // Step 4: compaction past the stalled watcher.
    let compactions = if compaction {
        compact(&mut kv, last).await.expect("compact");
        vec![last]
    } else {
        Vec::new()
    };

    // Step 5: the stalled client reads again.
    let resumed = Instant::now();
    let mut stalled = WatchStream::record(stalled_requests, stalled);
    let due = history.expected(&spec, header_revision(&created) + 1).len();
    let done = stalled
        .wait_until(DELIVERY_TIMEOUT, |rs| delivered(rs, 0, due))
        .await;
    let catch_up = resumed.elapsed();
    let barrier = stalled.progress_at(last, STEP_TIMEOUT).await;
    let mut responses = vec![created];
    responses.extend(stalled.close(OPEN_TIMEOUT).await);
    let reader_responses = reader.close(OPEN_TIMEOUT).await;
    let verdict = check_watcher(&spec, &of_watcher(&responses, 0), &history, &compactions)
        .unwrap_or_else(|e| panic!("the stalled watcher ({prefix}): {e}"));
    check_watcher(&spec, &of_watcher(&reader_responses, 0), &history, &[])
        .unwrap_or_else(|e| panic!("the reading watcher ({prefix}): {e}"));
    assert!(
        done,
        "the stalled watcher got neither its {due} events nor a cancel"
    );
    let barrier = barrier.unwrap_or_else(|e| panic!("the stalled stream ({prefix}): {e}"));
    assert_eq!(
        barrier + 1,
        responses.len() - 1,
        "the stalled stream got responses after its progress answer: {:?}",
        responses[barrier + 2..]
            .iter()
            .map(brief)
            .collect::<Vec<_>>()
    );
    if compaction {
        assert_eq!(
            verdict.canceled_at,
            Some(last),
            "the stalled watcher was not canceled by the compaction at {last}"
        );
    }
    println!(
        "stalled consumer ({prefix}): on reading again it got {} events in {} responses{} within \
         {catch_up:?}",
        verdict.events,
        verdict.event_responses,
        match verdict.canceled_at {
            Some(c) => format!(", then the compaction cancel at {c}"),
            None => String::new(),
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_consumer_gets_every_event_or_the_compaction_cancel() {
    let _serial = SERIAL.lock().await;
    let server = Server::start(Kind::Oxcd, ServerOpts::default())
        .await
        .unwrap_or_else(|e| panic!("start: {e}"));
    // The same puts with no watcher, for comparison (printed only).
    let puts = env_usize("OXCD_WATCH_STALL_PUTS", 2000);
    let (_, took) = stall_writers(&server.endpoint(), "b/", puts).await;
    println!(
        "no watcher: {puts} puts of 1 KiB by {STALL_WRITERS} writers in {took:?} ({:.0} puts/s)",
        puts as f64 / took.as_secs_f64()
    );
    stalled_round(&server, "s/", false).await;
    stalled_round(&server, "t/", true).await;
}

// ---------------------------------------------------------------------------
// Test 3: resumption across kills and restarts.
// ---------------------------------------------------------------------------

const FAULT_KEYS: usize = 16;
const FAULT_WRITERS: usize = 2;
const KILL_LEADER_AT: usize = 150;
const RESTART_LEADER_AT: usize = 300;
const RESTART_FOLLOWER_AT: usize = 420;
const FAULT_ACKS: usize = 600;

fn fault_key(i: usize) -> Vec<u8> {
    format!("r/k{i:02}").into_bytes()
}

/// One stream of a resuming watcher: where, from which revision, what came
/// and how it ended.
#[derive(Debug)]
struct Segment {
    member: usize,
    start: i64,
    responses: Vec<WatchResponse>,
    end: String,
}

/// Step 4: watches `spec` from member `member` on, resuming on the next
/// member from the last seen revision + 1 whenever a stream breaks, until
/// `stop`. `seen` publishes the last revision seen.
async fn resuming_watcher(
    endpoints: Vec<String>,
    mut member: usize,
    spec: WatchSpec,
    seen: Arc<AtomicI64>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Vec<Segment> {
    let mut segments = Vec::new();
    let mut next = spec.start_revision;
    while !*stop.borrow() {
        let from = WatchSpec {
            start_revision: next,
            ..spec.clone()
        };
        let opened = match connect(&endpoints[member]).await {
            Ok(channel) => watch_check::open_raw(channel, from.create(0), OPEN_TIMEOUT).await,
            Err(e) => Err(e),
        };
        let mut segment = Segment {
            member,
            start: next,
            responses: Vec::new(),
            end: String::new(),
        };
        match opened {
            Err(e) => segment.end = e,
            Ok((_requests, mut stream)) => loop {
                tokio::select! {
                    _ = stop.changed() => {
                        segment.end = "stopped".to_string();
                        break;
                    }
                    message = stream.message() => match message {
                        Ok(Some(r)) => {
                            if let Some(rev) = r.events.last().map(revision) {
                                next = rev + 1;
                                seen.store(rev, Ordering::SeqCst);
                            }
                            segment.responses.push(r);
                        }
                        Ok(None) => {
                            segment.end = "closed by the server".to_string();
                            break;
                        }
                        Err(s) => {
                            segment.end = format!("{:?} {}", s.code(), s.message());
                            break;
                        }
                    },
                }
            },
        }
        let failed_to_open = segment.responses.is_empty() && segment.end != "stopped";
        segments.push(segment);
        if *stop.borrow() {
            break;
        }
        member = (member + 1) % endpoints.len();
        if failed_to_open {
            // Retry pacing while a member is down, not a wait on a state.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    segments
}

/// Step 2: puts unique values, moving to the next member after a failure.
async fn fault_writer(
    id: usize,
    endpoints: Vec<String>,
    acked: Arc<AtomicUsize>,
    deadline: Instant,
) -> Ledger {
    let mut ledger = Ledger::default();
    let mut member = id % endpoints.len();
    let mut kv: Option<KvClient<Channel>> = None;
    let mut seq = 0;
    while acked.load(Ordering::SeqCst) < FAULT_ACKS && Instant::now() < deadline {
        if kv.is_none() {
            match connect(&endpoints[member]).await {
                Ok(channel) => kv = Some(KvClient::new(channel)),
                Err(_) => {
                    member = (member + 1) % endpoints.len();
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            }
        }
        let client = kv.as_mut().expect("connected");
        let key = fault_key((seq * 7 + id) % FAULT_KEYS);
        let value = format!("w{id}s{seq}").into_bytes();
        seq += 1;
        let req = PutRequest {
            key: key.clone(),
            value: value.clone(),
            ..Default::default()
        };
        match tokio::time::timeout(Duration::from_secs(5), client.put(req)).await {
            Ok(Ok(resp)) => {
                let revision = resp.into_inner().header.map_or(0, |h| h.revision);
                ledger.ack(key, value, revision);
                acked.fetch_add(1, Ordering::SeqCst);
            }
            _ => {
                ledger.maybe(key, value);
                kv = None;
                member = (member + 1) % endpoints.len();
            }
        }
    }
    ledger
}

async fn wait_acks(acked: &AtomicUsize, n: usize, deadline: Instant) {
    while acked.load(Ordering::SeqCst) < n {
        assert!(
            Instant::now() < deadline,
            "only {} of {n} puts acknowledged in time",
            acked.load(Ordering::SeqCst)
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Step 5: the store's history of every key, read back version by version
/// (newest first), as puts.
async fn read_back_puts(kv: &mut KvClient<Channel>, last: i64) -> Vec<(Write, KeyValue)> {
    let mut found = Vec::new();
    for i in 0..FAULT_KEYS {
        let key = fault_key(i);
        let mut at = last;
        loop {
            let req = RangeRequest {
                key: key.clone(),
                revision: at,
                ..Default::default()
            };
            let resp = rpc("range", kv.range(req)).await.expect("read back");
            let Some(kv) = resp.kvs.into_iter().next() else {
                break;
            };
            at = kv.mod_revision - 1;
            let write = Write {
                revision: kv.mod_revision,
                ops: vec![WriteOp::Put {
                    key: kv.key.clone(),
                    value: kv.value.clone(),
                }],
            };
            let first_version = kv.version == 1;
            found.push((write, kv));
            if first_version {
                break;
            }
        }
    }
    found
}

/// Step 3: kills and restarts as the acknowledged puts pass their marks.
async fn faults(cluster: &mut Cluster, acked: &AtomicUsize, deadline: Instant) {
    let election = Duration::from_secs(30);
    wait_acks(acked, KILL_LEADER_AT, deadline).await;
    let leader = cluster.wait_leader(election).await.expect("leader");
    cluster.kill9(leader).expect("kill the leader");
    let killed = Instant::now();
    let next = cluster.wait_leader(election).await.expect("new leader");
    println!(
        "killed leader {} after {KILL_LEADER_AT} puts; {} leads after {:?}",
        cluster.name(leader),
        cluster.name(next),
        killed.elapsed()
    );
    wait_acks(acked, RESTART_LEADER_AT, deadline).await;
    cluster
        .restart(leader)
        .await
        .expect("restart the old leader");
    wait_acks(acked, RESTART_FOLLOWER_AT, deadline).await;
    let now = cluster.wait_leader(election).await.expect("leader");
    // A follower that still serves its first watchers (not the old leader,
    // whose watchers moved away when it was killed).
    let follower = (0..cluster.size())
        .find(|&i| i != now && i != leader)
        .expect("a follower");
    cluster.restart(follower).await.expect("restart a follower");
    println!(
        "restarted {} (the old leader), then follower {}",
        cluster.name(leader),
        cluster.name(follower)
    );
}

/// Step 5: the store's history read back through `kv` (at revision `last`),
/// which must replay from `base`, hold every acknowledged put and nothing
/// no writer sent.
async fn history_read_back(
    kv: &mut KvClient<Channel>,
    base: i64,
    last: i64,
    ledger: &Ledger,
) -> History {
    let found = read_back_puts(kv, last).await;
    let history = History::replay(base, found.iter().map(|(w, _)| w.clone()).collect())
        .unwrap_or_else(|e| panic!("the store's puts do not replay: {e}"));
    assert_eq!(
        history.last_revision(),
        last,
        "the puts read back stop short of the store revision"
    );
    for (w, kv) in &found {
        let replayed = history.at(w.revision)[0].kv.as_ref();
        assert_eq!(
            replayed,
            Some(kv),
            "replay and store disagree at {}",
            w.revision
        );
    }
    let by_revision: BTreeMap<i64, &KeyValue> =
        found.iter().map(|(w, kv)| (w.revision, kv)).collect();
    for ack in ledger.acks() {
        let kv = by_revision.get(&ack.revision);
        assert!(
            kv.is_some_and(|kv| kv.key == ack.key && kv.value == ack.value),
            "acknowledged {} = {} at {} is not in the store ({kv:?})",
            show(&ack.key),
            show(&ack.value),
            ack.revision
        );
    }
    let acked: std::collections::HashSet<i64> = ledger.acks().iter().map(|a| a.revision).collect();
    for (rev, kv) in &by_revision {
        let sent =
            acked.contains(rev) || ledger.maybe_values(&kv.key).contains(&kv.value.as_slice());
        assert!(
            sent,
            "the store holds {} = {} at {rev}, which no writer sent",
            show(&kv.key),
            show(&kv.value)
        );
    }
    history
}

/// Step 5: one resuming watcher's streams, joined, against the history;
/// how many times it resumed.
fn judge_resumed(
    spec: &WatchSpec,
    segments: &[Segment],
    history: &History,
) -> Result<usize, String> {
    let used: Vec<&Segment> = segments
        .iter()
        .filter(|s| !s.responses.is_empty())
        .collect();
    let path = || -> String {
        let streams: Vec<String> = used
            .iter()
            .map(|s| {
                format!(
                    "member {} from {} ({} responses, ended: {})",
                    s.member,
                    s.start,
                    s.responses.len(),
                    s.end
                )
            })
            .collect();
        streams.join("; ")
    };
    let mut events: Vec<Event> = Vec::new();
    for (n, segment) in used.iter().enumerate() {
        let got = read_watcher(&segment.responses)
            .map_err(|e| format!("stream #{n} of [{}]: {e}", path()))?;
        if got
            .events
            .first()
            .is_some_and(|e| revision(e) < segment.start)
        {
            return Err(format!("stream #{n} of [{}] began below its start", path()));
        }
        events.extend(got.events);
    }
    let want = history.expected(spec, spec.start_revision);
    compare_events(&events, &want, 0).map_err(|e| format!("streams [{}]: {e}", path()))?;
    Ok(used.len().saturating_sub(1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchers_resume_across_kills_and_restarts() {
    let _serial = SERIAL.lock().await;
    let mut cluster = Cluster::start(Kind::Oxcd, ClusterOpts::default())
        .await
        .unwrap_or_else(|e| panic!("start three members: {e}"));
    let endpoints = cluster.endpoints();
    let mut kv = KvClient::new(connect(&endpoints[0]).await.expect("connect"));
    let base = store_revision(&mut kv).await;

    // Step 1: three watchers per member.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let specs = [
        WatchSpec {
            prev_kv: true,
            ..WatchSpec::new(KeyRange::prefix(b"r/"), base + 1)
        },
        WatchSpec::new(KeyRange::between(&fault_key(4), &fault_key(12)), base + 1),
        WatchSpec {
            prev_kv: true,
            ..WatchSpec::new(KeyRange::from_key(&fault_key(10)), base + 60)
        },
    ];
    let mut watchers = Vec::new();
    for m in 0..endpoints.len() {
        for spec in &specs {
            let seen = Arc::new(AtomicI64::new(0));
            let watcher = resuming_watcher(
                endpoints.clone(),
                m,
                spec.clone(),
                Arc::clone(&seen),
                stopped.clone(),
            );
            watchers.push((m, spec.clone(), seen, tokio::spawn(watcher)));
        }
    }

    // Steps 2 and 3: the writers, and the faults meanwhile.
    let started = Instant::now();
    let deadline = started + Duration::from_secs(300);
    let acked = Arc::new(AtomicUsize::new(0));
    let writers: Vec<_> = (0..FAULT_WRITERS)
        .map(|id| {
            let writer = fault_writer(id, endpoints.clone(), Arc::clone(&acked), deadline);
            tokio::spawn(writer)
        })
        .collect();
    faults(&mut cluster, &acked, deadline).await;
    let mut ledger = Ledger::default();
    for w in writers {
        ledger.extend(w.await.expect("writer"));
    }
    assert!(
        acked.load(Ordering::SeqCst) >= FAULT_ACKS,
        "the writers ran out of time"
    );
    ledger
        .unique_revisions()
        .expect("no revision acknowledged twice");

    // Step 5: the store's history, once every member has caught up.
    let leader = cluster
        .wait_leader(Duration::from_secs(30))
        .await
        .expect("leader");
    let mut kv = KvClient::new(connect(&endpoints[leader]).await.expect("connect"));
    let last = store_revision(&mut kv).await;
    for i in 0..endpoints.len() {
        cluster
            .wait_revision(i, last, Duration::from_secs(60))
            .await
            .unwrap_or_else(|e| panic!("{} catching up: {e}", cluster.name(i)));
    }
    let history = history_read_back(&mut kv, base, last, &ledger).await;

    // Step 5 (watchers): each until it saw its last due event (bounded),
    // then all are stopped and judged.
    let waited = Instant::now();
    for (_, spec, seen, _) in &watchers {
        let due = history
            .expected(spec, spec.start_revision)
            .last()
            .map_or(0, revision);
        while seen.load(Ordering::SeqCst) < due && waited.elapsed() < DELIVERY_TIMEOUT {
            tokio::time::sleep(POLL).await;
        }
    }
    stop.send(true).expect("stop");
    let mut failures = Vec::new();
    let mut resumed = 0;
    for (m, spec, _, task) in watchers {
        let segments = task.await.expect("watcher");
        match judge_resumed(&spec, &segments, &history) {
            Ok(n) => resumed += n,
            Err(e) => failures.push(format!(
                "watcher from member {m} ({}): {e}",
                spec.describe()
            )),
        }
    }
    println!(
        "resumption: revisions {}..={last}, {} acknowledged puts, {} maybe applied; {resumed} \
         broken streams resumed; {:?} in all",
        base + 1,
        ledger.acks().len(),
        ledger.maybe_count(),
        started.elapsed()
    );
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(
        resumed >= 2 * specs.len(),
        "only {resumed} streams resumed: the kill and the restart break at least {}",
        2 * specs.len()
    );
}

// ---------------------------------------------------------------------------
// Test 4: protocol details against etcd 3.4.
// ---------------------------------------------------------------------------

/// `--max-request-bytes` of test 4: a catch-up above it plus 512 KiB is
/// fragmented for a watcher that asks.
const SMALL_REQUEST_BYTES: u64 = 64 * 1024;
/// Large values of the fragment step (below the request limit).
const LARGE_VALUE: usize = 60_000;
const LARGE_PUTS: usize = 30;

/// How many responses a step collects.
enum Collect {
    Count(usize),
    /// Until one matches, at most this many.
    Until(fn(&WatchResponse) -> bool, usize),
}

/// One step's responses, scrubbed, stably sorted by watch id (the order
/// between watchers of one revision is not defined).
#[derive(Debug)]
struct Step {
    name: &'static str,
    responses: Vec<WatchResponse>,
}

/// A script's stream: requests in, responses read one at a time.
struct Probe {
    requests: tokio::sync::mpsc::Sender<WatchRequest>,
    responses: Streaming<WatchResponse>,
}

impl Probe {
    async fn open(server: &Server, first: WatchRequest) -> Probe {
        let channel = server.channel().await.expect("connect");
        let (requests, responses) = watch_check::open_raw(channel, first, OPEN_TIMEOUT)
            .await
            .expect("open");
        Probe {
            requests,
            responses,
        }
    }

    async fn send(&self, request: WatchRequest) {
        self.requests.send(request).await.expect("send");
    }

    async fn collect(&mut self, name: &'static str, collect: Collect) -> Step {
        let mut responses = Vec::new();
        loop {
            let enough = match collect {
                Collect::Count(n) => responses.len() >= n,
                Collect::Until(done, max) => {
                    responses.last().is_some_and(done) || responses.len() >= max
                }
            };
            if enough {
                break;
            }
            match next_response(&mut self.responses, STEP_TIMEOUT).await {
                Some(r) => responses.push(scrub(r)),
                None => break,
            }
        }
        responses.sort_by_key(|r| r.watch_id);
        Step { name, responses }
    }
}

/// Header ids and term zeroed; large values shortened to their length and
/// first bytes (both sides write the same values).
fn scrub(mut r: WatchResponse) -> WatchResponse {
    if let Some(h) = r.header.as_mut() {
        h.cluster_id = 0;
        h.member_id = 0;
        h.raft_term = 0;
    }
    for e in &mut r.events {
        for kv in [e.kv.as_mut(), e.prev_kv.as_mut()].into_iter().flatten() {
            if kv.value.len() > 64 {
                let mut short = format!("<{} bytes>", kv.value.len()).into_bytes();
                short.extend_from_slice(&kv.value[..8]);
                kv.value = short;
            }
        }
    }
    r
}

fn create(key: &str, range_end: &str) -> WatchCreateRequest {
    WatchCreateRequest {
        key: key.as_bytes().to_vec(),
        range_end: range_end.as_bytes().to_vec(),
        ..Default::default()
    }
}

/// The script of test 4, run on one server; revisions are the same on a
/// fresh etcd and a fresh oxcd.
async fn protocol_script(server: &Server) -> Vec<Step> {
    let mut kv = server.kv().await.expect("kv");
    let mut steps = Vec::new();

    // Stream A: ids, cancel, progress.
    let mut a = Probe::open(server, create_request(create("p/a", ""))).await;
    steps.push(
        a.collect("create: the first auto id is 0", Collect::Count(1))
            .await,
    );
    a.send(create_request(WatchCreateRequest {
        prev_kv: true,
        ..create("p/", "p0")
    }))
    .await;
    steps.push(
        a.collect("create: the next auto id is 1", Collect::Count(1))
            .await,
    );
    a.send(create_request(WatchCreateRequest {
        watch_id: 7,
        ..create("p/b", "")
    }))
    .await;
    steps.push(
        a.collect("create: a client-chosen id", Collect::Count(1))
            .await,
    );
    a.send(create_request(WatchCreateRequest {
        watch_id: 7,
        ..create("p/c", "")
    }))
    .await;
    steps.push(a.collect("create: a duplicate id", Collect::Count(1)).await);
    a.send(create_request(create("p/d", ""))).await;
    steps.push(
        a.collect("create: auto ids skip nothing", Collect::Count(1))
            .await,
    );
    put(&mut kv, b"p/a", b"1").await;
    steps.push(a.collect("put p/a: two watchers", Collect::Count(2)).await);
    put(&mut kv, b"p/b", b"2").await;
    steps.push(
        a.collect("put p/b: the chosen id's watcher", Collect::Count(2))
            .await,
    );
    put(&mut kv, b"p/a", b"3").await;
    steps.push(a.collect("put p/a again: prev_kv", Collect::Count(2)).await);
    let req = DeleteRangeRequest {
        key: b"p/".to_vec(),
        range_end: b"p0".to_vec(),
        ..Default::default()
    };
    rpc("delete p/", kv.delete_range(req))
        .await
        .expect("delete");
    steps.push(
        a.collect("delete the prefix: one revision", Collect::Count(3))
            .await,
    );
    a.send(cancel_request(1)).await;
    steps.push(a.collect("cancel", Collect::Count(1)).await);
    a.send(cancel_request(99)).await;
    a.send(progress_request()).await;
    steps.push(
        a.collect("cancel an unknown id, then progress", Collect::Count(1))
            .await,
    );
    put(&mut kv, b"p/x", b"4").await;
    put(&mut kv, b"p/d", b"5").await;
    steps.push(
        a.collect("the canceled watcher gets nothing", Collect::Count(1))
            .await,
    );

    // Stream B: filters.
    let mut b = Probe::open(
        server,
        create_request(WatchCreateRequest {
            filters: vec![FilterType::Noput as i32],
            ..create("f/", "f0")
        }),
    )
    .await;
    steps.push(b.collect("create NOPUT", Collect::Count(1)).await);
    b.send(create_request(WatchCreateRequest {
        filters: vec![FilterType::Nodelete as i32],
        prev_kv: true,
        ..create("f/", "f0")
    }))
    .await;
    steps.push(
        b.collect("create NODELETE with prev_kv", Collect::Count(1))
            .await,
    );
    put(&mut kv, b"f/a", b"1").await;
    steps.push(
        b.collect("put: NOPUT sends nothing", Collect::Count(1))
            .await,
    );
    let del = |key: &str| DeleteRangeRequest {
        key: key.as_bytes().to_vec(),
        ..Default::default()
    };
    rpc("delete f/a", kv.delete_range(del("f/a")))
        .await
        .expect("delete");
    steps.push(
        b.collect("delete: NODELETE sends nothing", Collect::Count(1))
            .await,
    );
    put(&mut kv, b"f/a", b"2").await;
    steps.push(
        b.collect("put a deleted key: no prev_kv", Collect::Count(1))
            .await,
    );
    put(&mut kv, b"f/a", b"3").await;
    steps.push(b.collect("put again: prev_kv", Collect::Count(1)).await);
    let txn = TxnRequest {
        success: vec![
            RequestOp {
                request: Some(request_op::Request::RequestPut(PutRequest {
                    key: b"f/b".to_vec(),
                    value: b"4".to_vec(),
                    ..Default::default()
                })),
            },
            RequestOp {
                request: Some(request_op::Request::RequestDeleteRange(del("f/a"))),
            },
        ],
        ..Default::default()
    };
    rpc("txn", kv.txn(txn)).await.expect("txn");
    steps.push(
        b.collect("a txn's revision split by the filters", Collect::Count(2))
            .await,
    );
    b.send(progress_request()).await;
    steps.push(b.collect("progress", Collect::Count(1)).await);

    // Stream C: history, compaction, a future start.
    let mut c = Probe::open(
        server,
        create_request(WatchCreateRequest {
            start_revision: 2,
            ..create("p/", "p0")
        }),
    )
    .await;
    steps.push(c.collect("replay from revision 2", Collect::Count(2)).await);
    put(&mut kv, b"c/x", b"1").await;
    rpc("delete c/x", kv.delete_range(del("c/x")))
        .await
        .expect("delete");
    let compacted = store_revision(&mut kv).await;
    compact(&mut kv, compacted).await.expect("compact");
    c.send(create_request(WatchCreateRequest {
        start_revision: compacted - 1,
        ..create("c/", "c0")
    }))
    .await;
    steps.push(
        c.collect("a compacted start revision", Collect::Count(2))
            .await,
    );
    c.send(create_request(WatchCreateRequest {
        start_revision: compacted,
        ..create("c/", "c0")
    }))
    .await;
    put(&mut kv, b"c/y", b"2").await;
    fn has_c_y(r: &WatchResponse) -> bool {
        r.events
            .iter()
            .any(|e| e.kv.as_ref().is_some_and(|kv| kv.key == b"c/y"))
    }
    steps.push(
        c.collect(
            "a start at the compaction (a delete there)",
            Collect::Until(has_c_y, 4),
        )
        .await,
    );
    let now = store_revision(&mut kv).await;
    c.send(create_request(WatchCreateRequest {
        start_revision: now + 3,
        ..create("q/", "q0")
    }))
    .await;
    for key in ["q/1", "q/2", "q/3"] {
        put(&mut kv, key.as_bytes(), b"6").await;
    }
    fn has_events(r: &WatchResponse) -> bool {
        !r.events.is_empty()
    }
    steps.push(
        c.collect("a future start revision", Collect::Until(has_events, 4))
            .await,
    );

    // Stream D: a large catch-up, with and without fragments.
    let from = store_revision(&mut kv).await + 1;
    for i in 0..LARGE_PUTS {
        let value = format!("{i:02}").repeat(LARGE_VALUE / 2);
        put(&mut kv, format!("g/{i:02}").as_bytes(), value.as_bytes()).await;
    }
    let mut d = Probe::open(
        server,
        create_request(WatchCreateRequest {
            start_revision: from,
            fragment: true,
            ..create("g/", "g0")
        }),
    )
    .await;
    fn last_piece(r: &WatchResponse) -> bool {
        !r.events.is_empty() && !r.fragment
    }
    steps.push(
        d.collect(
            "a large catch-up in fragments",
            Collect::Until(last_piece, 40),
        )
        .await,
    );
    d.send(create_request(WatchCreateRequest {
        start_revision: from,
        ..create("g/", "g0")
    }))
    .await;
    steps.push(
        d.collect("the same without fragment", Collect::Count(2))
            .await,
    );
    steps
}

fn step<'a>(steps: &'a [Step], name: &str) -> &'a [WatchResponse] {
    &steps
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no step {name:?}"))
        .responses
}

fn event_summary(r: &WatchResponse) -> Vec<(i64, &'static str, String, Option<String>)> {
    r.events
        .iter()
        .map(|e| {
            let kind = if e.r#type == EventType::Put as i32 {
                "PUT"
            } else {
                "DELETE"
            };
            let key = e.kv.as_ref().map_or(String::new(), |kv| show(&kv.key));
            let prev = e.prev_kv.as_ref().map(|kv| show(&kv.value));
            (revision(e), kind, key, prev)
        })
        .collect()
}

/// The documented answers (reference `etcd-api.md` 1.2), asserted on one
/// side's transcript.
fn check_documented(side: &str, steps: &[Step]) {
    let created = |name: &str, id: i64, rev: i64| {
        let rs = step(steps, name);
        assert!(
            rs.len() == 1
                && rs[0].created
                && !rs[0].canceled
                && rs[0].watch_id == id
                && header_revision(&rs[0]) == rev,
            "{side}: {name}: want created id {id} at {rev}, got {:?}",
            rs.iter().map(brief).collect::<Vec<_>>()
        );
    };
    created("create: the first auto id is 0", 0, 1);
    created("create: the next auto id is 1", 1, 1);
    created("create: a client-chosen id", 7, 1);
    created("create: auto ids skip nothing", 2, 1);
    let dup = &step(steps, "create: a duplicate id")[0];
    assert!(
        dup.created
            && dup.canceled
            && dup.watch_id == -1
            && dup.cancel_reason == "mvcc: duplicate watch ID provided on the WatchStream",
        "{side}: duplicate id: {}",
        brief(dup)
    );
    let prev = step(steps, "put p/a again: prev_kv");
    assert_eq!(
        event_summary(&prev[1]),
        [(4, "PUT", "p/a".to_string(), Some("1".to_string()))],
        "{side}"
    );
    let deletes = step(steps, "delete the prefix: one revision");
    let ids: Vec<(i64, usize)> = deletes
        .iter()
        .map(|r| (r.watch_id, r.events.len()))
        .collect();
    assert_eq!(
        ids,
        [(0, 1), (1, 2), (7, 1)],
        "{side}: delete of the prefix"
    );
    let cancel = &step(steps, "cancel")[0];
    assert!(
        cancel.watch_id == 1 && cancel.canceled && cancel.compact_revision == 0 && !cancel.created,
        "{side}: cancel: {}",
        brief(cancel)
    );
    let progress = &step(steps, "cancel an unknown id, then progress")[0];
    assert!(
        is_progress(progress) && header_revision(progress) == 5,
        "{side}: progress: {}",
        brief(progress)
    );
    let after = &step(steps, "the canceled watcher gets nothing")[0];
    assert_eq!(
        (after.watch_id, revision(&after.events[0])),
        (2, 7),
        "{side}: {}",
        brief(after)
    );
    for (name, id, rev) in [
        ("put: NOPUT sends nothing", 1, 8),
        ("delete: NODELETE sends nothing", 0, 9),
        ("put a deleted key: no prev_kv", 1, 10),
        ("put again: prev_kv", 1, 11),
    ] {
        let rs = step(steps, name);
        assert!(
            rs.len() == 1
                && rs[0].watch_id == id
                && rs[0].events.len() == 1
                && revision(&rs[0].events[0]) == rev,
            "{side}: {name}: {:?}",
            rs.iter().map(brief).collect::<Vec<_>>()
        );
    }
    assert_eq!(
        step(steps, "put a deleted key: no prev_kv")[0].events[0].prev_kv,
        None,
        "{side}"
    );
    let split = step(steps, "a txn's revision split by the filters");
    let kinds: Vec<_> = split
        .iter()
        .map(|r| (r.watch_id, event_summary(r)))
        .collect();
    assert_eq!(
        kinds,
        [
            (0, vec![(12, "DELETE", "f/a".to_string(), None)]),
            (1, vec![(12, "PUT", "f/b".to_string(), None)])
        ],
        "{side}"
    );
    let replay = step(steps, "replay from revision 2");
    let revs: Vec<i64> = replay
        .iter()
        .flat_map(|r| r.events.iter().map(revision))
        .collect();
    assert_eq!(revs, [2, 3, 4, 5, 5, 6, 7], "{side}: replay");
    let compacted = step(steps, "a compacted start revision");
    assert!(
        compacted.len() == 2
            && compacted[0].created
            && compacted[1].canceled
            && compacted[1].compact_revision == 14
            && header_revision(&compacted[1]) == 0
            && compacted[1].cancel_reason.is_empty(),
        "{side}: compacted start: {:?}",
        compacted.iter().map(brief).collect::<Vec<_>>()
    );
    // etcd drops the tombstone at the compaction revision with the older
    // versions, so a watcher starting there does not see that delete.
    let at = step(steps, "a start at the compaction (a delete there)");
    let got: Vec<_> = at.iter().flat_map(event_summary).collect();
    assert!(
        at[0].created && got == [(15, "PUT", "c/y".to_string(), None)],
        "{side}: start at the compaction: {:?}",
        at.iter().map(brief).collect::<Vec<_>>()
    );
    let future = step(steps, "a future start revision");
    assert!(
        future.len() == 2
            && future[0].created
            && future[1].events.len() == 1
            && revision(&future[1].events[0]) == 18,
        "{side}: future start: {:?}",
        future.iter().map(brief).collect::<Vec<_>>()
    );
    let pieces = step(steps, "a large catch-up in fragments");
    let (head, tail) = pieces[1..].split_at(pieces.len().saturating_sub(2));
    let events: usize = pieces.iter().map(|r| r.events.len()).sum();
    assert!(
        pieces[0].created
            && pieces.len() > 2
            && head.iter().all(|r| r.fragment)
            && tail.iter().all(|r| !r.fragment)
            && events == LARGE_PUTS,
        "{side}: fragments: {:?}",
        pieces.iter().map(brief).collect::<Vec<_>>()
    );
    let whole = step(steps, "the same without fragment");
    assert!(
        whole.len() == 2 && whole[1].events.len() == LARGE_PUTS && !whole[1].fragment,
        "{side}: without fragment: {:?}",
        whole.iter().map(brief).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_details_match_etcd_3_4() {
    let _serial = SERIAL.lock().await;
    let opts = ServerOpts {
        max_request_bytes: Some(SMALL_REQUEST_BYTES),
        ..ServerOpts::default()
    };
    let etcd = Server::start(Kind::Etcd, opts.clone())
        .await
        .unwrap_or_else(|e| panic!("etcd: {e}"));
    let reference = protocol_script(&etcd).await;
    drop(etcd);
    let oxcd = Server::start(Kind::Oxcd, opts)
        .await
        .unwrap_or_else(|e| panic!("oxcd: {e}"));
    let ours = protocol_script(&oxcd).await;
    let mut differences = Vec::new();
    for (theirs, mine) in reference.iter().zip(&ours) {
        if theirs.responses != mine.responses {
            let show_all = |s: &Step| {
                s.responses
                    .iter()
                    .map(brief)
                    .collect::<Vec<_>>()
                    .join("\n    ")
            };
            differences.push(format!(
                "step {:?}:\n  etcd:\n    {}\n  oxcd:\n    {}",
                theirs.name,
                show_all(theirs),
                show_all(mine)
            ));
        }
    }
    check_documented("etcd", &reference);
    check_documented("oxcd", &ours);
    assert!(
        differences.is_empty(),
        "oxcd differs from etcd 3.4:\n{}",
        differences.join("\n")
    );
}

// ---------------------------------------------------------------------------
// 5. The first stream after writes nobody watched.
// ---------------------------------------------------------------------------

/// Rounds of test 5 (each: a write with no stream open, then a stream).
const UNWATCHED_ROUNDS: usize = 20;
/// Writes made with no stream open before test 5's replay.
const UNWATCHED_PUTS: usize = 10;

/// Waits (bounded) until `server` reports no watch stream open.
async fn wait_no_streams(server: &Server) {
    let deadline = Instant::now() + STEP_TIMEOUT;
    loop {
        let open = metric(
            &server.client_addr(),
            "etcd_debugging_mvcc_watch_stream_total",
        )
        .await;
        if open == Some(0.0) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "a closed watch stream is still counted: {open:?}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// 5. With no watch stream open, the apply actor sends the watch hub no
/// events; the first stream takes up the store's revision from the board.
/// Each round writes with no stream open, then opens one: its `created`
/// and a progress answer must carry the acknowledged revision, and the
/// next write must arrive as an event at the revision after it. Then a
/// stream starting in the past gets every write made while none was open,
/// once and in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_stream_after_unwatched_writes_starts_at_the_store_revision() {
    let _serial = SERIAL.lock().await;
    let server = Server::start(Kind::Oxcd, ServerOpts::default())
        .await
        .unwrap_or_else(|e| panic!("oxcd: {e}"));
    let mut kv = server.kv().await.expect("kv");
    for round in 0..UNWATCHED_ROUNDS {
        wait_no_streams(&server).await;
        let acked = put(&mut kv, format!("u/{round}").as_bytes(), b"unwatched").await;
        let mut probe = Probe::open(&server, create_request(create("u/", "u0"))).await;
        let created = probe.collect("created", Collect::Count(1)).await;
        let first = created.responses.first().expect("no created answer");
        assert!(first.created, "round {round}: {}", brief(first));
        assert_eq!(
            header_revision(first),
            acked,
            "round {round}: a watch created after a write acknowledged at {acked} names {}",
            header_revision(first)
        );
        probe.send(progress_request()).await;
        let progress = probe.collect("progress", Collect::Count(1)).await;
        let answer = progress.responses.first().expect("no progress answer");
        assert!(is_progress(answer), "round {round}: {}", brief(answer));
        assert_eq!(header_revision(answer), acked, "round {round}: progress");
        let watched = put(&mut kv, b"u/watched", round.to_string().as_bytes()).await;
        assert_eq!(watched, acked + 1, "round {round}: another writer?");
        let event = probe.collect("event", Collect::Count(1)).await;
        let answer = event.responses.first().expect("no event");
        let revisions: Vec<i64> = answer.events.iter().map(revision).collect();
        assert_eq!(revisions, vec![watched], "round {round}: {}", brief(answer));
    }
    wait_no_streams(&server).await;
    let mut written = Vec::new();
    for i in 0..UNWATCHED_PUTS {
        written.push(put(&mut kv, format!("u/replay/{i}").as_bytes(), b"unwatched").await);
    }
    let from = written[0];
    let mut probe = Probe::open(
        &server,
        create_request(WatchCreateRequest {
            start_revision: from,
            ..create("u/replay/", "u/replay0")
        }),
    )
    .await;
    let last = *written.last().expect("writes");
    let mut seen = Vec::new();
    let deadline = Instant::now() + DELIVERY_TIMEOUT;
    while seen.last() != Some(&last) {
        assert!(
            Instant::now() < deadline,
            "the replay stopped at {seen:?}, short of {last}"
        );
        let step = probe.collect("replay", Collect::Count(1)).await;
        let Some(r) = step.responses.first() else {
            panic!("the stream ended after {seen:?}");
        };
        seen.extend(r.events.iter().map(revision));
    }
    assert_eq!(seen, written, "every unwatched write once, in order");
}
