//! Watch checks for `tests/watch.rs`: what a watcher must receive, worked out
//! from the writes the clients saw acknowledged, and a recorder for watch
//! streams.
//!
//! 1. The clients note every write that changed the store ([`Write`]: its
//!    revision from the response header, its puts and deletes, and how many
//!    keys each delete removed). [`History::replay`] applies them in
//!    revision order to a model of the keyspace and derives etcd's events:
//!    one revision per write, no revision missing, events of a revision in
//!    the order of the write's operations (a range delete in key order),
//!    each with the `prev_kv` it carries; a delete count that disagrees
//!    with the model fails the replay, so the model checks itself.
//! 2. A [`WatchSpec`] is one watcher as created (range, start revision,
//!    filters, `prev_kv`); [`History::expected`] is every event it must get
//!    from a revision on.
//! 3. [`read_watcher`] checks the shape of one watcher's responses, in
//!    arrival order: `created` first (with the store revision), then
//!    responses that each hold whole revisions, in revision order, never
//!    empty and never fragments, and at most one compaction cancel
//!    (`canceled`, `compact_revision`, header revision 0), last.
//! 4. [`check_watcher`] compares what arrived with what was due: all of it
//!    in order, or, after a compaction cancel, a prefix that stops at a
//!    revision boundary below the reported compaction, which must be one
//!    the test made and above the watcher's start. `prev_kv` must be the
//!    key's previous version (absent if there was none); it may only be
//!    missing where etcd omits it, when the previous revision is compacted.
//! 5. [`WatchStream`] opens a bidirectional `Watch` stream and records every
//!    response (a task reads it); [`open_raw`] opens one that nobody reads,
//!    for the stalled-consumer test.
//!
//! The pure parts (1 to 4) are unit tested below, including that they catch
//! a lost, repeated, split or misplaced event.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use proto::etcdserverpb::watch_client::WatchClient;
use proto::etcdserverpb::watch_create_request::FilterType;
use proto::etcdserverpb::watch_request::RequestUnion;
use proto::etcdserverpb::{
    WatchCancelRequest, WatchCreateRequest, WatchProgressRequest, WatchRequest, WatchResponse,
};
use proto::mvccpb::event::EventType;
use proto::mvccpb::{Event, KeyValue};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;
use tonic::transport::Channel;

/// Requests a stream may have queued for sending.
const REQUEST_BUFFER: usize = 64;

/// A watched key range, with etcd's conventions: an empty `range_end` is
/// the single `key`, `"\0"` is every key from `key` on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRange {
    pub key: Vec<u8>,
    pub range_end: Vec<u8>,
}

impl KeyRange {
    pub fn single(key: &[u8]) -> Self {
        Self {
            key: key.to_vec(),
            range_end: Vec::new(),
        }
    }

    /// Every key starting with `prefix` (etcd's prefix end: the last byte
    /// below 0xff plus one).
    pub fn prefix(prefix: &[u8]) -> Self {
        let mut end = prefix.to_vec();
        while let Some(last) = end.pop() {
            if last < 0xff {
                end.push(last + 1);
                break;
            }
        }
        if end.is_empty() {
            end = vec![0];
        }
        Self {
            key: prefix.to_vec(),
            range_end: end,
        }
    }

    /// Every key from `key` on.
    pub fn from_key(key: &[u8]) -> Self {
        Self {
            key: key.to_vec(),
            range_end: vec![0],
        }
    }

    /// `[key, range_end)`.
    pub fn between(key: &[u8], range_end: &[u8]) -> Self {
        Self {
            key: key.to_vec(),
            range_end: range_end.to_vec(),
        }
    }

    pub fn contains(&self, k: &[u8]) -> bool {
        match self.range_end.as_slice() {
            [] => k == self.key,
            [0] => k >= self.key.as_slice(),
            end => k >= self.key.as_slice() && k < end,
        }
    }
}

/// One operation of an acknowledged write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOp {
    Put {
        key: Vec<u8>,
        value: Vec<u8>,
    },
    /// A delete and the number of keys the server said it removed.
    Delete {
        range: KeyRange,
        deleted: i64,
    },
}

/// A write that changed the store, at the revision its response reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    pub revision: i64,
    pub ops: Vec<WriteOp>,
}

/// The events of a run of writes (step 1 of the module doc).
#[derive(Debug, Clone, Default)]
pub struct History {
    /// The store revision before the first write.
    first: i64,
    /// Events by revision, `prev_kv` filled.
    events: BTreeMap<i64, Vec<Event>>,
    /// The keyspace after the last write.
    state: BTreeMap<Vec<u8>, KeyValue>,
}

impl History {
    /// Replays `writes` (any order) on an empty keyspace at revision
    /// `first`: they must take the revisions `first + 1 ..` with none
    /// missing, each change something, and each delete remove as many keys
    /// as the server said.
    pub fn replay(first: i64, mut writes: Vec<Write>) -> Result<History, String> {
        writes.sort_by_key(|w| w.revision);
        let mut history = History {
            first,
            ..History::default()
        };
        for (n, write) in writes.iter().enumerate() {
            let due = first + 1 + n as i64;
            if write.revision != due {
                return Err(format!(
                    "revision {due} has no acknowledged write (the next one is at {}): a write \
                     the test did not record, or a revision taken twice",
                    write.revision
                ));
            }
            let events = history.apply(write)?;
            if events.is_empty() {
                return Err(format!(
                    "the write at revision {} changed nothing in the model: {:?}",
                    write.revision, write.ops
                ));
            }
            history.events.insert(write.revision, events);
        }
        Ok(history)
    }

    fn apply(&mut self, write: &Write) -> Result<Vec<Event>, String> {
        let rev = write.revision;
        let mut events = Vec::new();
        for op in &write.ops {
            match op {
                WriteOp::Put { key, value } => {
                    let prev = self.state.get(key).cloned();
                    let kv = KeyValue {
                        key: key.clone(),
                        create_revision: prev.as_ref().map_or(rev, |p| p.create_revision),
                        mod_revision: rev,
                        version: prev.as_ref().map_or(1, |p| p.version + 1),
                        value: value.clone(),
                        lease: 0,
                    };
                    self.state.insert(key.clone(), kv.clone());
                    events.push(Event {
                        r#type: EventType::Put as i32,
                        kv: Some(kv),
                        prev_kv: prev,
                    });
                }
                WriteOp::Delete { range, deleted } => {
                    let keys: Vec<Vec<u8>> = self
                        .state
                        .keys()
                        .filter(|k| range.contains(k))
                        .cloned()
                        .collect();
                    if keys.len() as i64 != *deleted {
                        return Err(format!(
                            "the delete of {} at revision {rev} removed {deleted} keys, the model \
                             holds {} there: {:?}",
                            show_range(range),
                            keys.len(),
                            keys.iter().map(|k| show(k)).collect::<Vec<_>>()
                        ));
                    }
                    for key in keys {
                        let prev = self.state.remove(&key);
                        events.push(Event {
                            r#type: EventType::Delete as i32,
                            kv: Some(KeyValue {
                                key,
                                mod_revision: rev,
                                ..KeyValue::default()
                            }),
                            prev_kv: prev,
                        });
                    }
                }
            }
        }
        Ok(events)
    }

    /// The store revision after the last write.
    pub fn last_revision(&self) -> i64 {
        self.events
            .keys()
            .next_back()
            .copied()
            .unwrap_or(self.first)
    }

    /// The keyspace after the last write.
    pub fn state(&self) -> &BTreeMap<Vec<u8>, KeyValue> {
        &self.state
    }

    /// The events of revision `rev` (empty outside the history).
    pub fn at(&self, rev: i64) -> &[Event] {
        self.events.get(&rev).map_or(&[], Vec::as_slice)
    }

    /// Every event `spec` must get from revision `from` on, as it must get
    /// them (step 2).
    pub fn expected(&self, spec: &WatchSpec, from: i64) -> Vec<Event> {
        self.events
            .range(from.max(0)..)
            .flat_map(|(_, events)| events)
            .filter(|e| spec.wants(e))
            .map(|e| Event {
                prev_kv: if spec.prev_kv {
                    e.prev_kv.clone()
                } else {
                    None
                },
                ..e.clone()
            })
            .collect()
    }
}

/// One watcher as created (step 2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchSpec {
    pub range: KeyRange,
    /// 0: from the revision after the `created` response's.
    pub start_revision: i64,
    pub no_put: bool,
    pub no_delete: bool,
    pub prev_kv: bool,
}

impl WatchSpec {
    /// Every event of `range` from `start_revision`, no filter, no `prev_kv`.
    pub fn new(range: KeyRange, start_revision: i64) -> Self {
        Self {
            range,
            start_revision,
            no_put: false,
            no_delete: false,
            prev_kv: false,
        }
    }

    /// Whether `event` is in range and passes the filters.
    pub fn wants(&self, event: &Event) -> bool {
        let key = event.kv.as_ref().map_or(&[][..], |kv| &kv.key[..]);
        let put = event.r#type == EventType::Put as i32;
        self.range.contains(key) && if put { !self.no_put } else { !self.no_delete }
    }

    /// Its `create_request` (`watch_id` 0: the server picks).
    pub fn create(&self, watch_id: i64) -> WatchRequest {
        let mut filters = Vec::new();
        if self.no_put {
            filters.push(FilterType::Noput as i32);
        }
        if self.no_delete {
            filters.push(FilterType::Nodelete as i32);
        }
        create_request(WatchCreateRequest {
            key: self.range.key.clone(),
            range_end: self.range.range_end.clone(),
            start_revision: self.start_revision,
            filters,
            prev_kv: self.prev_kv,
            watch_id,
            ..WatchCreateRequest::default()
        })
    }

    /// One line for failure messages.
    pub fn describe(&self) -> String {
        let mut s = format!("{} from {}", show_range(&self.range), self.start_revision);
        if self.no_put {
            s.push_str(" NOPUT");
        }
        if self.no_delete {
            s.push_str(" NODELETE");
        }
        if self.prev_kv {
            s.push_str(" prev_kv");
        }
        s
    }
}

/// What one watcher received, once its responses had the right shape.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Received {
    /// The `created` response's header revision.
    pub created_revision: i64,
    pub events: Vec<Event>,
    /// Set when the watcher was canceled for compaction.
    pub compact_revision: Option<i64>,
    /// Responses that carried events.
    pub event_responses: usize,
}

/// Step 3: the shape of one watcher's responses, in arrival order.
pub fn read_watcher(responses: &[WatchResponse]) -> Result<Received, String> {
    let Some((created, rest)) = responses.split_first() else {
        return Err("no response at all, not even `created`".to_string());
    };
    if !created.created || created.canceled || !created.events.is_empty() {
        return Err(format!(
            "the first response is not a plain `created`: {}",
            brief(created)
        ));
    }
    let created_revision = header_revision(created);
    if created_revision <= 0 {
        return Err(format!(
            "`created` without a store revision: {}",
            brief(created)
        ));
    }
    let mut received = Received {
        created_revision,
        ..Received::default()
    };
    for (n, r) in rest.iter().enumerate() {
        let at = n + 1;
        if received.compact_revision.is_some() {
            return Err(format!(
                "response #{at} after the compaction cancel: {}",
                brief(r)
            ));
        }
        if r.created {
            return Err(format!(
                "a second `created` at response #{at}: {}",
                brief(r)
            ));
        }
        if r.canceled {
            let plain = r.events.is_empty() && r.cancel_reason.is_empty() && !r.fragment;
            if r.compact_revision <= 0 || header_revision(r) != 0 || !plain {
                return Err(format!(
                    "response #{at} is a cancel but not etcd's compaction cancel (compact_revision \
                     > 0, header revision 0, no events, no reason): {}",
                    brief(r)
                ));
            }
            received.compact_revision = Some(r.compact_revision);
            continue;
        }
        if r.events.is_empty() || r.fragment || r.compact_revision != 0 {
            return Err(format!(
                "response #{at} is neither events nor a cancel (an empty or filtered-out response \
                 must not be sent): {}",
                brief(r)
            ));
        }
        let revs: Vec<i64> = r.events.iter().map(revision).collect();
        if revs.windows(2).any(|w| w[0] > w[1]) {
            return Err(format!(
                "response #{at} has events out of revision order: {revs:?}"
            ));
        }
        if let Some(last) = received.events.last().map(revision)
            && revs[0] <= last
        {
            return Err(format!(
                "response #{at} starts at revision {} though revision {last} was already \
                 delivered: a revision split over responses, repeated, or out of order",
                revs[0]
            ));
        }
        let newest = revs[revs.len() - 1];
        if header_revision(r) < newest {
            return Err(format!(
                "response #{at}'s header revision {} is below its events' {newest}",
                header_revision(r)
            ));
        }
        received.events.extend(r.events.iter().cloned());
        received.event_responses += 1;
    }
    Ok(received)
}

/// Step 4's event comparison: `got` must equal `want` event by event;
/// `prev_kv` may be missing only for an event at or below
/// `prev_kv_compacted_to` (its previous revision is compacted).
pub fn compare_events(
    got: &[Event],
    want: &[Event],
    prev_kv_compacted_to: i64,
) -> Result<(), String> {
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let prev_kv_compacted = g.prev_kv.is_none() && revision(w) <= prev_kv_compacted_to;
        let same =
            g.r#type == w.r#type && g.kv == w.kv && (g.prev_kv == w.prev_kv || prev_kv_compacted);
        if !same {
            return Err(format!(
                "event #{i} differs:\n  got  {}\n  want {}\n{}",
                show_event(g),
                show_event(w),
                context(got, want, i)
            ));
        }
    }
    if got.len() != want.len() {
        let i = got.len().min(want.len());
        let what = if got.len() < want.len() {
            "missing"
        } else {
            "extra"
        };
        return Err(format!(
            "{} events received, {} due; the first {what} is #{i}\n{}",
            got.len(),
            want.len(),
            context(got, want, i)
        ));
    }
    Ok(())
}

/// How a watcher ended (step 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub events: usize,
    pub event_responses: usize,
    /// The compaction it was canceled at, if it was.
    pub canceled_at: Option<i64>,
}

/// Step 4: `responses` (one watcher's, in arrival order) against `history`,
/// given the revisions the test compacted at.
pub fn check_watcher(
    spec: &WatchSpec,
    responses: &[WatchResponse],
    history: &History,
    compactions: &[i64],
) -> Result<Verdict, String> {
    let got = read_watcher(responses)?;
    if got.created_revision > history.last_revision() {
        return Err(format!(
            "`created` reports revision {}, past the last write's {}",
            got.created_revision,
            history.last_revision()
        ));
    }
    let from = match spec.start_revision {
        0 => got.created_revision + 1,
        r => r.max(1),
    };
    let want = history.expected(spec, from);
    let compacted_to = compactions.iter().copied().max().unwrap_or(0);
    let verdict = Verdict {
        events: got.events.len(),
        event_responses: got.event_responses,
        canceled_at: got.compact_revision,
    };
    let Some(c) = got.compact_revision else {
        compare_events(&got.events, &want, compacted_to)?;
        return Ok(verdict);
    };
    if !compactions.contains(&c) {
        return Err(format!(
            "canceled with compact_revision {c}, not a revision the test compacted at \
             ({compactions:?})"
        ));
    }
    if from >= c {
        return Err(format!(
            "canceled with compact_revision {c} though it starts at {from}, which that \
             compaction keeps"
        ));
    }
    if got.events.len() > want.len() {
        compare_events(&got.events, &want, compacted_to)?;
    }
    compare_events(&got.events, &want[..got.events.len()], compacted_to)?;
    if let Some(last) = got.events.last().map(revision) {
        if last + 1 >= c {
            return Err(format!(
                "canceled with compact_revision {c} after revision {last} was delivered: its \
                 next revision {} is not compacted",
                last + 1
            ));
        }
        if want.get(got.events.len()).map(revision) == Some(last) {
            return Err(format!(
                "revision {last} was cut short by the compaction cancel"
            ));
        }
    }
    Ok(verdict)
}

/// The responses of watcher `watch_id`, in arrival order.
pub fn of_watcher(responses: &[WatchResponse], watch_id: i64) -> Vec<WatchResponse> {
    responses
        .iter()
        .filter(|r| r.watch_id == watch_id)
        .cloned()
        .collect()
}

/// Whether `r` answers a `progress_request` (etcd's shape: id -1, nothing
/// else).
pub fn is_progress(r: &WatchResponse) -> bool {
    r.watch_id == -1 && !r.created && !r.canceled && r.events.is_empty()
}

pub fn create_request(create: WatchCreateRequest) -> WatchRequest {
    WatchRequest {
        request_union: Some(RequestUnion::CreateRequest(create)),
    }
}

pub fn cancel_request(watch_id: i64) -> WatchRequest {
    WatchRequest {
        request_union: Some(RequestUnion::CancelRequest(WatchCancelRequest { watch_id })),
    }
}

pub fn progress_request() -> WatchRequest {
    WatchRequest {
        request_union: Some(RequestUnion::ProgressRequest(WatchProgressRequest {})),
    }
}

/// An event's (main) revision.
pub fn revision(e: &Event) -> i64 {
    e.kv.as_ref().map_or(0, |kv| kv.mod_revision)
}

pub fn header_revision(r: &WatchResponse) -> i64 {
    r.header.as_ref().map_or(0, |h| h.revision)
}

/// Step 5: opens a `Watch` stream on `channel` whose first request is
/// `first`. etcd sends the stream's headers with its first response, so
/// the first request goes out before the call is awaited.
pub async fn open_raw(
    channel: Channel,
    first: WatchRequest,
    timeout: Duration,
) -> Result<(mpsc::Sender<WatchRequest>, Streaming<WatchResponse>), String> {
    let (tx, rx) = mpsc::channel(REQUEST_BUFFER);
    tx.send(first)
        .await
        .map_err(|_| "request queue closed".to_string())?;
    let mut client = WatchClient::new(channel);
    let call = client.watch(ReceiverStream::new(rx));
    match tokio::time::timeout(timeout, call).await {
        Ok(Ok(response)) => Ok((tx, response.into_inner())),
        Ok(Err(s)) => Err(format!("watch: {:?} {}", s.code(), s.message())),
        Err(_) => Err(format!("watch: no answer within {timeout:?}")),
    }
}

/// What a [`WatchStream`]'s reader saw.
#[derive(Debug, Default)]
struct StreamLog {
    responses: Vec<WatchResponse>,
    /// How the stream ended, once it did.
    ended: Option<String>,
}

/// A `Watch` stream whose responses a task records (step 5).
#[derive(Debug)]
pub struct WatchStream {
    requests: mpsc::Sender<WatchRequest>,
    log: Arc<Mutex<StreamLog>>,
    changed: watch::Receiver<usize>,
    reader: tokio::task::JoinHandle<()>,
}

impl WatchStream {
    /// Opens the stream (see [`open_raw`]) and starts recording.
    pub async fn open(
        channel: Channel,
        first: WatchRequest,
        timeout: Duration,
    ) -> Result<Self, String> {
        let (requests, stream) = open_raw(channel, first, timeout).await?;
        Ok(Self::record(requests, stream))
    }

    /// Records `stream` from now on (a stream opened with [`open_raw`]).
    pub fn record(
        requests: mpsc::Sender<WatchRequest>,
        mut stream: Streaming<WatchResponse>,
    ) -> Self {
        let log = Arc::new(Mutex::new(StreamLog::default()));
        let (tell, changed) = watch::channel(0);
        let writer = Arc::clone(&log);
        let reader = tokio::spawn(async move {
            loop {
                let next = stream.message().await;
                let mut log = writer.lock().expect("stream log");
                match next {
                    Ok(Some(r)) => log.responses.push(r),
                    Ok(None) => log.ended = Some("closed by the server".to_string()),
                    Err(s) => log.ended = Some(format!("{:?} {}", s.code(), s.message())),
                }
                let done = log.ended.is_some();
                drop(log);
                tell.send_modify(|n| *n += 1);
                if done {
                    return;
                }
            }
        });
        Self {
            requests,
            log,
            changed,
            reader,
        }
    }

    pub async fn send(&self, request: WatchRequest) -> Result<(), String> {
        self.requests
            .send(request)
            .await
            .map_err(|_| "the stream's request queue is closed".to_string())
    }

    /// Calls `f` with the responses so far.
    pub fn with<T>(&self, f: impl FnOnce(&[WatchResponse]) -> T) -> T {
        f(&self.log.lock().expect("stream log").responses)
    }

    /// How the stream ended, if it did.
    pub fn ended(&self) -> Option<String> {
        self.log.lock().expect("stream log").ended.clone()
    }

    /// Waits, at most `timeout`, until `done` holds for the responses so
    /// far; false on timeout or if the stream ended first.
    pub async fn wait_until(
        &mut self,
        timeout: Duration,
        done: impl Fn(&[WatchResponse]) -> bool,
    ) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            self.changed.borrow_and_update();
            {
                let log = self.log.lock().expect("stream log");
                if done(&log.responses) {
                    return true;
                }
                if log.ended.is_some() {
                    return false;
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero()
                || tokio::time::timeout(left, self.changed.changed())
                    .await
                    .is_err()
            {
                return false;
            }
        }
    }

    /// Sends a `progress_request` and waits (at most `timeout`) for an
    /// answer at `revision` or above; returns the index of that answer in
    /// the stream's responses.
    pub async fn progress_at(&mut self, revision: i64, timeout: Duration) -> Result<usize, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let seen = self.with(<[WatchResponse]>::len);
            self.send(progress_request()).await?;
            let left = deadline.saturating_duration_since(Instant::now());
            let answered = self
                .wait_until(left, |rs| rs[seen.min(rs.len())..].iter().any(is_progress))
                .await;
            let found = self.with(|rs| {
                rs.iter()
                    .enumerate()
                    .skip(seen)
                    .find(|(_, r)| is_progress(r))
                    .map(|(i, r)| (i, header_revision(r)))
            });
            match found {
                Some((i, rev)) if rev >= revision => return Ok(i),
                Some(_) if Instant::now() < deadline => continue,
                _ if !answered => {
                    return Err(format!(
                        "no progress answer at revision {revision} within {timeout:?} (stream \
                         ended: {:?})",
                        self.ended()
                    ));
                }
                _ => {
                    return Err(format!(
                        "progress stayed below revision {revision} for {timeout:?}"
                    ));
                }
            }
        }
    }

    /// Closes the client's side, waits (at most `timeout`) for the server to
    /// end the stream, and returns every response.
    pub async fn close(self, timeout: Duration) -> Vec<WatchResponse> {
        let WatchStream {
            requests,
            log,
            mut changed,
            reader,
        } = self;
        drop(requests);
        let deadline = Instant::now() + timeout;
        while log.lock().expect("stream log").ended.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || tokio::time::timeout(left, changed.changed()).await.is_err() {
                break;
            }
        }
        reader.abort();
        std::mem::take(&mut log.lock().expect("stream log").responses)
    }
}

/// A key (or any bytes) for messages.
pub fn show(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).escape_debug().to_string()
}

fn show_range(r: &KeyRange) -> String {
    match r.range_end.as_slice() {
        [] => format!("key {}", show(&r.key)),
        [0] => format!("keys from {}", show(&r.key)),
        end => format!("[{}, {})", show(&r.key), show(end)),
    }
}

fn show_kv(kv: &KeyValue) -> String {
    let value: String = show(&kv.value).chars().take(24).collect();
    format!(
        "{}={value} (create {}, mod {}, version {})",
        show(&kv.key),
        kv.create_revision,
        kv.mod_revision,
        kv.version
    )
}

/// One event for messages.
pub fn show_event(e: &Event) -> String {
    let kind = if e.r#type == EventType::Put as i32 {
        "PUT"
    } else {
        "DELETE"
    };
    let kv = e.kv.as_ref().map_or("no kv".to_string(), show_kv);
    let prev = e.prev_kv.as_ref().map_or("none".to_string(), show_kv);
    format!("@{} {kind} {kv}; prev_kv {prev}", revision(e))
}

/// A response for messages (events by revision and key only).
pub fn brief(r: &WatchResponse) -> String {
    let events: Vec<String> = r
        .events
        .iter()
        .map(|e| {
            let key = e.kv.as_ref().map_or(String::new(), |kv| show(&kv.key));
            format!("@{} {key}", revision(e))
        })
        .collect();
    format!(
        "{{watch_id {}, header.revision {}, created {}, canceled {}, compact_revision {}, \
         cancel_reason {:?}, fragment {}, events [{}]}}",
        r.watch_id,
        header_revision(r),
        r.created,
        r.canceled,
        r.compact_revision,
        r.cancel_reason,
        r.fragment,
        events.join(", ")
    )
}

/// Three events either side of position `i`, received and due.
fn context(got: &[Event], want: &[Event], i: usize) -> String {
    let lines = |events: &[Event]| -> String {
        let from = i.saturating_sub(3);
        let to = (i + 3).min(events.len());
        events
            .get(from..to)
            .unwrap_or(&[])
            .iter()
            .enumerate()
            .map(|(n, e)| format!("    #{} {}", from + n, show_event(e)))
            .collect::<Vec<_>>()
            .join("\n")
    };
    format!(
        "  received around it:\n{}\n  due around it:\n{}",
        lines(got),
        lines(want)
    )
}

#[cfg(test)]
mod tests {
    use proto::etcdserverpb::ResponseHeader;

    use super::*;

    fn put(rev: i64, key: &str, value: &str) -> Write {
        Write {
            revision: rev,
            ops: vec![WriteOp::Put {
                key: key.into(),
                value: value.into(),
            }],
        }
    }

    fn delete(rev: i64, range: KeyRange, deleted: i64) -> Write {
        Write {
            revision: rev,
            ops: vec![WriteOp::Delete { range, deleted }],
        }
    }

    /// Revisions 2..=6: a=1, b=1, {a=2, c=1} in one txn, delete [a, c), c=2.
    fn history() -> History {
        let txn = Write {
            revision: 4,
            ops: vec![
                WriteOp::Put {
                    key: b"a".to_vec(),
                    value: b"2".to_vec(),
                },
                WriteOp::Put {
                    key: b"c".to_vec(),
                    value: b"1".to_vec(),
                },
            ],
        };
        let writes = vec![
            put(6, "c", "2"),
            put(2, "a", "1"),
            txn,
            put(3, "b", "1"),
            delete(5, KeyRange::between(b"a", b"c"), 2),
        ];
        History::replay(1, writes).unwrap()
    }

    fn response(watch_id: i64, header: i64, events: Vec<Event>) -> WatchResponse {
        WatchResponse {
            header: Some(ResponseHeader {
                revision: header,
                ..ResponseHeader::default()
            }),
            watch_id,
            events,
            ..WatchResponse::default()
        }
    }

    fn created(rev: i64) -> WatchResponse {
        WatchResponse {
            created: true,
            ..response(0, rev, Vec::new())
        }
    }

    fn compaction_cancel(c: i64) -> WatchResponse {
        WatchResponse {
            canceled: true,
            compact_revision: c,
            ..response(0, 0, Vec::new())
        }
    }

    /// One response per revision, as a live watcher gets them.
    fn live(history: &History, spec: &WatchSpec, from: i64) -> Vec<WatchResponse> {
        let mut out = vec![created(from - 1)];
        for rev in from..=history.last_revision() {
            let events: Vec<Event> = history
                .expected(spec, rev)
                .into_iter()
                .filter(|e| revision(e) == rev)
                .collect();
            if !events.is_empty() {
                out.push(response(0, rev, events));
            }
        }
        out
    }

    #[test]
    fn replay_derives_events_versions_and_prev_kv() {
        let h = history();
        assert_eq!(h.last_revision(), 6);
        let txn = h.at(4);
        assert_eq!(txn.len(), 2);
        let a2 = txn[0].kv.as_ref().unwrap();
        assert_eq!((a2.create_revision, a2.version, a2.mod_revision), (2, 2, 4));
        assert_eq!(txn[0].prev_kv.as_ref().unwrap().value, b"1");
        assert_eq!(txn[1].prev_kv, None);
        let deletes = h.at(5);
        let keys: Vec<&[u8]> = deletes
            .iter()
            .map(|e| &e.kv.as_ref().unwrap().key[..])
            .collect();
        assert_eq!(keys, [b"a".as_slice(), b"b".as_slice()]);
        assert!(deletes.iter().all(|e| e.r#type == EventType::Delete as i32));
        assert_eq!(deletes[0].kv.as_ref().unwrap().mod_revision, 5);
        assert_eq!(deletes[0].prev_kv.as_ref().unwrap().value, b"2");
        let c = &h.state()[b"c".as_slice()];
        assert_eq!(
            (c.version, c.create_revision, &c.value[..]),
            (2, 4, b"2".as_slice())
        );
        assert_eq!(h.state().len(), 1);
    }

    #[test]
    fn replay_refuses_a_gap_a_no_op_or_a_wrong_delete_count() {
        let gap = History::replay(1, vec![put(2, "a", "1"), put(4, "a", "2")]);
        assert!(
            gap.unwrap_err()
                .contains("revision 3 has no acknowledged write")
        );
        let no_op = History::replay(1, vec![delete(2, KeyRange::single(b"a"), 0)]);
        assert!(no_op.unwrap_err().contains("changed nothing"));
        let count = History::replay(
            1,
            vec![put(2, "a", "1"), delete(3, KeyRange::prefix(b""), 2)],
        );
        assert!(
            count
                .unwrap_err()
                .contains("removed 2 keys, the model holds 1")
        );
    }

    #[test]
    fn ranges_follow_etcd_conventions() {
        assert!(KeyRange::single(b"a").contains(b"a"));
        assert!(!KeyRange::single(b"a").contains(b"ab"));
        assert_eq!(KeyRange::prefix(b"w/a").range_end, b"w/b");
        assert!(KeyRange::prefix(b"w/a").contains(b"w/aa"));
        assert!(!KeyRange::prefix(b"w/a").contains(b"w/b"));
        assert!(KeyRange::from_key(b"b").contains(b"zz"));
        assert!(!KeyRange::from_key(b"b").contains(b"a"));
        assert!(KeyRange::between(b"b", b"d").contains(b"c"));
        assert!(!KeyRange::between(b"b", b"d").contains(b"d"));
        assert_eq!(KeyRange::prefix(&[0xff]).range_end, vec![0]);
    }

    #[test]
    fn filters_and_prev_kv_shape_the_expected_events() {
        let h = history();
        let mut spec = WatchSpec::new(KeyRange::prefix(b""), 1);
        assert_eq!(h.expected(&spec, 1).len(), 7);
        assert!(h.expected(&spec, 1).iter().all(|e| e.prev_kv.is_none()));
        spec.no_put = true;
        assert_eq!(h.expected(&spec, 1).len(), 2);
        spec = WatchSpec {
            no_delete: true,
            prev_kv: true,
            ..WatchSpec::new(KeyRange::single(b"c"), 5)
        };
        let want = h.expected(&spec, 5);
        assert_eq!(want.len(), 1);
        assert_eq!(want[0].prev_kv.as_ref().unwrap().value, b"1");
    }

    #[test]
    fn a_correct_stream_passes_live_or_caught_up() {
        let h = history();
        let spec = WatchSpec {
            prev_kv: true,
            ..WatchSpec::new(KeyRange::prefix(b""), 3)
        };
        let v = check_watcher(&spec, &live(&h, &spec, 3), &h, &[]).unwrap();
        assert_eq!((v.events, v.event_responses, v.canceled_at), (6, 4, None));
        // Caught up from storage: several whole revisions per response.
        let batched = vec![
            created(6),
            response(0, 6, h.expected(&spec, 3)[..3].to_vec()),
            response(0, 6, h.expected(&spec, 5)),
        ];
        assert_eq!(check_watcher(&spec, &batched, &h, &[]).unwrap().events, 6);
        // Start 0: from the revision after `created`'s.
        let now = WatchSpec::new(KeyRange::prefix(b""), 0);
        assert_eq!(
            check_watcher(&now, &live(&h, &now, 5), &h, &[])
                .unwrap()
                .events,
            3
        );
    }

    #[test]
    fn lost_repeated_split_or_reordered_events_fail() {
        let h = history();
        let spec = WatchSpec::new(KeyRange::prefix(b""), 2);
        let good = live(&h, &spec, 2);
        let mut lost = good.clone();
        lost.remove(2);
        assert!(
            check_watcher(&spec, &lost, &h, &[])
                .unwrap_err()
                .contains("differs")
        );
        let mut repeated = good.clone();
        repeated.insert(2, good[1].clone());
        assert!(
            check_watcher(&spec, &repeated, &h, &[])
                .unwrap_err()
                .contains("already delivered")
        );
        let mut split = good.clone();
        let txn = split[3].clone();
        split[3].events.truncate(1);
        split.insert(4, response(0, 4, txn.events[1..].to_vec()));
        assert!(
            check_watcher(&spec, &split, &h, &[])
                .unwrap_err()
                .contains("split")
        );
        let mut swapped = good.clone();
        swapped.swap(1, 2);
        assert!(check_watcher(&spec, &swapped, &h, &[]).is_err());
        let mut empty = good.clone();
        empty.push(response(0, 7, Vec::new()));
        assert!(
            check_watcher(&spec, &empty, &h, &[])
                .unwrap_err()
                .contains("must not be sent")
        );
        let mut late = good.clone();
        late.remove(0);
        late.push(created(1));
        assert!(
            check_watcher(&spec, &late, &h, &[])
                .unwrap_err()
                .contains("first response")
        );
    }

    #[test]
    fn prev_kv_must_match_unless_compacted() {
        let h = history();
        let spec = WatchSpec {
            prev_kv: true,
            ..WatchSpec::new(KeyRange::single(b"a"), 4)
        };
        let mut stream = live(&h, &spec, 4);
        stream[1].events[0].prev_kv = None;
        assert!(
            check_watcher(&spec, &stream, &h, &[])
                .unwrap_err()
                .contains("differs")
        );
        // Revision 4's previous revision is gone after a compaction at 4.
        assert!(check_watcher(&spec, &stream, &h, &[4]).is_ok());
        stream[1].events[0].prev_kv = Some(KeyValue::default());
        assert!(check_watcher(&spec, &stream, &h, &[4]).is_err());
        let plain = WatchSpec::new(KeyRange::single(b"a"), 4);
        let mut with_prev = live(&h, &spec, 4);
        with_prev.truncate(2);
        assert!(check_watcher(&plain, &with_prev, &h, &[]).is_err());
    }

    #[test]
    fn a_compaction_cancel_needs_a_compacted_start_and_a_clean_prefix() {
        let h = history();
        let spec = WatchSpec::new(KeyRange::prefix(b""), 2);
        let mut stream = live(&h, &spec, 2);
        stream.truncate(2);
        stream.push(compaction_cancel(5));
        let v = check_watcher(&spec, &stream, &h, &[5]).unwrap();
        assert_eq!((v.events, v.canceled_at), (1, Some(5)));
        // Not a compaction the test made.
        assert!(
            check_watcher(&spec, &stream, &h, &[4])
                .unwrap_err()
                .contains("not a revision")
        );
        // Revision 3 was delivered: its successor 4 is not below 4.
        let mut too_far = live(&h, &spec, 2);
        too_far.truncate(3);
        too_far.push(compaction_cancel(4));
        assert!(
            check_watcher(&spec, &too_far, &h, &[4])
                .unwrap_err()
                .contains("not compacted")
        );
        // A watcher starting at the compaction is not canceled by it.
        let at = WatchSpec::new(KeyRange::prefix(b""), 5);
        let canceled = vec![created(6), compaction_cancel(5)];
        assert!(
            check_watcher(&at, &canceled, &h, &[5])
                .unwrap_err()
                .contains("keeps")
        );
        // Anything after the cancel.
        let mut after = stream.clone();
        after.push(response(0, 6, h.at(6).to_vec()));
        assert!(
            check_watcher(&spec, &after, &h, &[5])
                .unwrap_err()
                .contains("after the compaction")
        );
        // A cancel with a reason is not the compaction cancel.
        let mut reason = stream.clone();
        reason[2].cancel_reason = "x".to_string();
        assert!(read_watcher(&reason).is_err());
    }
}
