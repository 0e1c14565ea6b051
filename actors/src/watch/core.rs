//! The watch hub's logic, with no actix, no runtime and no clock: etcd's
//! watchable store (synced, unsynced and victim watchers) over oxcd's
//! actor graph.
//!
//! 1. A stream opens with a [`ResponseSink`] (bounded). `create` gives the
//!    watcher an id (the client's, or the stream's next free one from 0),
//!    answers `created` with the hub's revision, and files the watcher as
//!    **synced** (it starts at or after the next revision: it waits for live
//!    events) or **unsynced** (it starts in the past, or its `created` could
//!    not be sent yet).
//! 2. The apply actor reports every applied batch ([`WatchCore::on_events`]):
//!    for each revision, the synced watchers whose range holds an event's key
//!    (one [`WatcherIndex`] lookup per key) get one response with that
//!    revision's events, filtered (NOPUT, NODELETE) and without `prev_kv`
//!    unless asked. A response that the stream's sink refuses (the client
//!    does not read fast enough) is dropped, and its watcher becomes
//!    unsynced at that revision: memory per slow watcher stays bounded, and
//!    writes never wait on a watcher.
//! 3. Unsynced watchers are caught up from storage by revision
//!    ([`WatchCore::next_read`], then [`WatchCore::on_read`]): one read
//!    from the smallest revision any of them needs, up to the hub's
//!    revision (a window of at most [`CATCH_UP_REVISIONS`] revisions and
//!    [`CATCH_UP_BYTES`]), shared by all of them; each gets one response
//!    with its events. A watcher whose next revision is compacted gets
//!    etcd's compaction cancel (`canceled`, `compact_revision`, header
//!    revision 0) and goes. One that reaches the hub's revision is synced.
//! 4. A batch that did not reach the hub (its mailbox was full), or a store
//!    replaced by a snapshot install, shows as a gap: every synced watcher
//!    becomes unsynced at the revision it has seen and is caught up from the
//!    store, so no event is lost or repeated.
//! 5. `progress_request` answers `watch_id -1` with the hub's revision once
//!    every watcher of the stream is synced (never ahead of events still to
//!    be delivered on it); `progress_notify` watchers that got no event
//!    since the last [`WatchCore::tick_progress`] get an empty response.
//! 6. `cancel` answers `canceled` and drops the watcher; closing the stream
//!    drops all of its watchers.
//!
//! Every revision's events reach a watcher in one response, in revision
//! order, once: live responses carry one revision each, catch-up responses
//! several whole revisions. A response larger than the request limit is
//! split into `fragment` pieces when the watcher asked for it.

use std::collections::{BTreeSet, HashMap, VecDeque};

use proto::Message as _;
use proto::etcdserverpb::watch_create_request::FilterType;
use proto::etcdserverpb::{ResponseHeader, WatchCreateRequest, WatchResponse};
use proto::mvccpb::Event;
use proto::mvccpb::event::EventType;

use super::index::{KeyRange, WatcherIndex, WatcherRef};
use crate::messages::EventsRead;

/// Revisions read per catch-up (etcd's `watchBatchMaxRevs`).
pub const CATCH_UP_REVISIONS: i64 = 1_000;
/// About this many bytes of keys and values per catch-up read.
pub const CATCH_UP_BYTES: usize = 4 << 20;
/// Control responses (created, canceled, progress) a stream may have waiting
/// for room; a client that keeps creating watches without reading is cut
/// off beyond it.
pub const MAX_CONTROL_BACKLOG: usize = 1_024;
/// etcd's reason for a range whose end is not after its key.
pub const EMPTY_WATCHER_RANGE: &str = "mvcc: watcher range is empty";
/// etcd's reason for a duplicate client-chosen watch id.
pub const DUPLICATE_WATCH_ID: &str = "mvcc: duplicate watch ID provided on the WatchStream";

/// Where a stream's responses go: bounded; `Err` hands the response back
/// when there is no room (or the stream is gone).
pub trait ResponseSink {
    fn try_send(&self, response: WatchResponse) -> Result<(), WatchResponse>;
    /// How many more responses fit now.
    fn room(&self) -> usize;
}

/// Splits `response` into pieces of at most about `limit` encoded bytes
/// (at least one event each); every piece but the last has `fragment` set.
pub fn fragments(response: WatchResponse, limit: usize) -> Vec<WatchResponse> {
    let WatchResponse {
        header,
        watch_id,
        events,
        ..
    } = response;
    let mut pieces: Vec<WatchResponse> = Vec::new();
    let mut current: Vec<Event> = Vec::new();
    let mut size = 0;
    for event in events {
        let len = event.encoded_len() + 8;
        if !current.is_empty() && size + len > limit {
            pieces.push(WatchResponse {
                header,
                watch_id,
                fragment: true,
                events: std::mem::take(&mut current),
                ..Default::default()
            });
            size = 0;
        }
        size += len;
        current.push(event);
    }
    pieces.push(WatchResponse {
        header,
        watch_id,
        events: current,
        ..Default::default()
    });
    pieces
}

/// The ids every response header carries.
#[derive(Debug, Clone, Copy)]
pub struct HeaderIds {
    pub cluster_id: u64,
    pub member_id: u64,
}

/// Counts the hub publishes (etcd's watch gauges).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WatchCounts {
    pub streams: usize,
    pub watchers: usize,
    /// Watchers being caught up from storage (etcd's slow watchers).
    pub unsynced: usize,
}

/// What a catch-up read must fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadWindow {
    pub from: i64,
    pub to: i64,
    pub max_bytes: usize,
}

struct Watcher {
    range: KeyRange,
    prev_kv: bool,
    no_put: bool,
    no_delete: bool,
    progress_notify: bool,
    fragment: bool,
    /// The first revision this watcher still has to see.
    next_rev: i64,
    /// Whether an event went out since the last progress tick.
    notified: bool,
    synced: bool,
}

impl Watcher {
    /// The events of `events` this watcher wants, as it wants them.
    fn select<'a>(&self, events: impl Iterator<Item = &'a Event>) -> Vec<Event> {
        self.shape(events.filter(|e| {
            let key = e.kv.as_ref().map_or(&[][..], |kv| &kv.key[..]);
            self.range.contains(key)
        }))
    }

    /// Like [`Watcher::select`], for events already known to be in range.
    fn shape<'a>(&self, events: impl Iterator<Item = &'a Event>) -> Vec<Event> {
        events
            .filter(|e| {
                let put = e.r#type == EventType::Put as i32;
                revision_of(e) >= self.next_rev && if put { !self.no_put } else { !self.no_delete }
            })
            .map(|e| Event {
                r#type: e.r#type,
                kv: e.kv.clone(),
                prev_kv: if self.prev_kv {
                    e.prev_kv.clone()
                } else {
                    None
                },
            })
            .collect()
    }
}

struct Stream<S> {
    sink: S,
    next_id: i64,
    watchers: BTreeSet<i64>,
    /// Responses that must go out, in order, before anything else for the
    /// watchers they concern.
    control: VecDeque<WatchResponse>,
    /// A progress request waits for the stream's watchers to be synced.
    progress_pending: bool,
    /// The stream broke its bound (see [`MAX_CONTROL_BACKLOG`]).
    cut_off: bool,
}

/// The hub's state.
pub struct WatchCore<S: ResponseSink> {
    ids: HeaderIds,
    term: u64,
    /// The store revision whose events the hub has seen.
    revision: i64,
    /// Revisions below this are compacted (as of the last catch-up read).
    compact_revision: i64,
    /// `--max-request-bytes` + 512 KiB: responses above it are fragmented
    /// for watchers that asked.
    fragment_bytes: usize,
    next_stream: u64,
    streams: HashMap<u64, Stream<S>>,
    watchers: HashMap<WatcherRef, Watcher>,
    synced: WatcherIndex,
    unsynced: BTreeSet<WatcherRef>,
    read_in_flight: Option<ReadWindow>,
}

fn revision_of(e: &Event) -> i64 {
    e.kv.as_ref().map_or(0, |kv| kv.mod_revision)
}

impl<S: ResponseSink> WatchCore<S> {
    /// A hub whose store is at `revision`.
    pub fn new(ids: HeaderIds, revision: i64, fragment_bytes: usize) -> Self {
        Self {
            ids,
            term: 0,
            revision,
            compact_revision: 0,
            fragment_bytes,
            next_stream: 1,
            streams: HashMap::new(),
            watchers: HashMap::new(),
            synced: WatcherIndex::default(),
            unsynced: BTreeSet::new(),
            read_in_flight: None,
        }
    }

    /// The store revision the hub has seen.
    pub fn revision(&self) -> i64 {
        self.revision
    }

    pub fn counts(&self) -> WatchCounts {
        WatchCounts {
            streams: self.streams.len(),
            watchers: self.watchers.len(),
            unsynced: self.unsynced.len(),
        }
    }

    fn header(&self, revision: i64) -> Option<ResponseHeader> {
        Some(ResponseHeader {
            cluster_id: self.ids.cluster_id,
            member_id: self.ids.member_id,
            revision,
            raft_term: self.term,
        })
    }

    /// Step 1: a new stream; returns its id.
    pub fn open_stream(&mut self, sink: S) -> u64 {
        let id = self.next_stream;
        self.next_stream += 1;
        self.streams.insert(
            id,
            Stream {
                sink,
                next_id: 0,
                watchers: BTreeSet::new(),
                control: VecDeque::new(),
                progress_pending: false,
                cut_off: false,
            },
        );
        id
    }

    /// Step 6: the stream ended; its watchers go.
    pub fn close_stream(&mut self, stream: u64) {
        if let Some(s) = self.streams.remove(&stream) {
            for id in s.watchers {
                self.drop_watcher(WatcherRef { stream, id });
            }
        }
    }

    /// Whether the stream exceeded its control backlog and must be ended.
    pub fn is_cut_off(&self, stream: u64) -> bool {
        self.streams.get(&stream).is_some_and(|s| s.cut_off)
    }

    fn drop_watcher(&mut self, w: WatcherRef) {
        if let Some(watcher) = self.watchers.remove(&w) {
            if watcher.synced {
                self.synced.remove(&watcher.range, w);
            } else {
                self.unsynced.remove(&w);
            }
        }
    }

    /// Sends a control response: after any already waiting, else at once.
    fn send_control(&mut self, stream: u64, response: WatchResponse) {
        let Some(s) = self.streams.get_mut(&stream) else {
            return;
        };
        if s.control.is_empty() {
            match s.sink.try_send(response) {
                Ok(()) => return,
                Err(back) => s.control.push_back(back),
            }
        } else {
            s.control.push_back(response);
        }
        if s.control.len() > MAX_CONTROL_BACKLOG {
            s.cut_off = true;
        }
    }

    /// Sends what control responses fit; true when none is left waiting.
    fn flush_control(&mut self, stream: u64) -> bool {
        let Some(s) = self.streams.get_mut(&stream) else {
            return false;
        };
        while let Some(response) = s.control.pop_front() {
            if let Err(back) = s.sink.try_send(response) {
                s.control.push_front(back);
                return false;
            }
        }
        true
    }

    /// Step 1: a `create_request`.
    pub fn create(&mut self, stream: u64, request: &WatchCreateRequest) {
        if !self.streams.contains_key(&stream) {
            return;
        }
        // etcd refuses a range that holds no key (end at or before key);
        // `"\0"` is the from-key range, and an empty key means `"\0"`.
        let key: &[u8] = if request.key.is_empty() {
            &[0]
        } else {
            &request.key
        };
        let end = &request.range_end;
        if !end.is_empty() && end.as_slice() != [0] && key >= end.as_slice() {
            self.refuse_create(stream, EMPTY_WATCHER_RANGE);
            return;
        }
        let Some(s) = self.streams.get_mut(&stream) else {
            return;
        };
        let id = if request.watch_id == 0 {
            while s.watchers.contains(&s.next_id) {
                s.next_id += 1;
            }
            let id = s.next_id;
            s.next_id += 1;
            id
        } else if s.watchers.contains(&request.watch_id) {
            self.refuse_create(stream, DUPLICATE_WATCH_ID);
            return;
        } else {
            request.watch_id
        };
        s.watchers.insert(id);
        let filters = |f: FilterType| request.filters.contains(&(f as i32));
        // 0 is "from the next revision"; a negative one replays everything
        // still in history, as in etcd.
        let start = match request.start_revision {
            0 => self.revision + 1,
            r => r.max(1),
        };
        let w = WatcherRef { stream, id };
        let watcher = Watcher {
            range: KeyRange::of(&request.key, &request.range_end),
            prev_kv: request.prev_kv,
            no_put: filters(FilterType::Noput),
            no_delete: filters(FilterType::Nodelete),
            progress_notify: request.progress_notify,
            fragment: request.fragment,
            next_rev: start,
            notified: false,
            synced: false,
        };
        let created = WatchResponse {
            header: self.header(self.revision),
            watch_id: id,
            created: true,
            ..Default::default()
        };
        self.send_control(stream, created);
        let control_sent = self
            .streams
            .get(&stream)
            .is_some_and(|s| s.control.is_empty());
        let in_past = start <= self.revision;
        self.watchers.insert(w, watcher);
        if control_sent && !in_past {
            self.make_synced(w);
        } else {
            self.unsynced.insert(w);
        }
    }

    /// etcd's answer to a create it refuses: created and canceled at once,
    /// watch id -1, the reason.
    fn refuse_create(&mut self, stream: u64, reason: &str) {
        let refused = WatchResponse {
            header: self.header(self.revision),
            watch_id: -1,
            created: true,
            canceled: true,
            cancel_reason: reason.to_string(),
            ..Default::default()
        };
        self.send_control(stream, refused);
    }

    fn make_synced(&mut self, w: WatcherRef) {
        if let Some(watcher) = self.watchers.get_mut(&w) {
            watcher.synced = true;
            self.unsynced.remove(&w);
            self.synced.insert(&watcher.range, w);
        }
    }

    fn make_unsynced(&mut self, w: WatcherRef, next_rev: i64) {
        if let Some(watcher) = self.watchers.get_mut(&w) {
            watcher.next_rev = watcher.next_rev.max(next_rev);
            if watcher.synced {
                watcher.synced = false;
                self.synced.remove(&watcher.range, w);
                self.unsynced.insert(w);
            }
        }
    }

    /// Step 6: a `cancel_request`; an unknown id is ignored, as etcd does.
    pub fn cancel(&mut self, stream: u64, watch_id: i64) {
        let known = self
            .streams
            .get_mut(&stream)
            .is_some_and(|s| s.watchers.remove(&watch_id));
        if !known {
            return;
        }
        self.drop_watcher(WatcherRef {
            stream,
            id: watch_id,
        });
        let canceled = WatchResponse {
            header: self.header(self.revision),
            watch_id,
            canceled: true,
            ..Default::default()
        };
        self.send_control(stream, canceled);
        self.answer_progress_if_synced(stream);
    }

    /// Step 5: a `progress_request`.
    pub fn request_progress(&mut self, stream: u64) {
        if let Some(s) = self.streams.get_mut(&stream) {
            s.progress_pending = true;
        }
        self.answer_progress_if_synced(stream);
    }

    fn answer_progress_if_synced(&mut self, stream: u64) {
        let Some(s) = self.streams.get(&stream) else {
            return;
        };
        if !s.progress_pending {
            return;
        }
        let all_synced = s.watchers.iter().all(|&id| {
            self.watchers
                .get(&WatcherRef { stream, id })
                .is_some_and(|w| w.synced)
        });
        if !all_synced {
            return;
        }
        let progress = WatchResponse {
            header: self.header(self.revision),
            watch_id: -1,
            ..Default::default()
        };
        if let Some(s) = self.streams.get_mut(&stream) {
            s.progress_pending = false;
        }
        self.send_control(stream, progress);
    }

    /// Step 5: the progress-notify interval passed.
    pub fn tick_progress(&mut self) {
        let due: Vec<WatcherRef> = self
            .watchers
            .iter_mut()
            .filter(|(_, w)| w.progress_notify && w.synced)
            .filter_map(|(r, w)| (!std::mem::replace(&mut w.notified, false)).then_some(*r))
            .collect();
        for w in due {
            let response = WatchResponse {
                header: self.header(self.revision),
                watch_id: w.id,
                ..Default::default()
            };
            let sent = self
                .streams
                .get(&w.stream)
                .is_some_and(|s| s.control.is_empty() && s.sink.try_send(response).is_ok());
            if !sent {
                // No room: the watcher is behind its stream anyway; its next
                // events will tell the client more than a notify would.
                tracing::trace!(
                    stream = w.stream,
                    watch_id = w.id,
                    "progress notify skipped"
                );
            }
        }
    }

    /// Step 2 (and 4): the store moved from `from` to `to` with `events`.
    pub fn on_events(&mut self, from: i64, to: i64, term: u64, events: &[Event]) {
        self.term = self.term.max(term);
        if from != self.revision {
            tracing::debug!(
                hub = self.revision,
                from,
                "watch hub missed store events; catching its watchers up from storage"
            );
            self.demote_all();
        }
        self.revision = self.revision.max(to);
        let mut start = 0;
        while start < events.len() {
            let rev = revision_of(&events[start]);
            let end = events[start..]
                .iter()
                .position(|e| revision_of(e) != rev)
                .map_or(events.len(), |n| start + n);
            self.deliver_revision(rev, &events[start..end]);
            start = end;
        }
        // Watchers that start at a future revision this batch reached stay
        // synced; nothing else to do for them.
    }

    fn deliver_revision(&mut self, rev: i64, events: &[Event]) {
        // (watcher, event) pairs the index matched: the key check is done
        // there, once per distinct range, not per watcher.
        let mut matched: Vec<(WatcherRef, usize)> = Vec::new();
        for (i, e) in events.iter().enumerate() {
            if let Some(kv) = &e.kv {
                self.synced.matching(&kv.key, |w| matched.push((w, i)));
            }
        }
        // Each watcher answers once, with its events in order (and watchers
        // are served in a stable order).
        matched.sort_unstable();
        let mut start = 0;
        while start < matched.len() {
            let w = matched[start].0;
            let end = matched[start..]
                .iter()
                .position(|(x, _)| *x != w)
                .map_or(matched.len(), |n| start + n);
            let picked = matched[start..end].iter().map(|(_, i)| &events[*i]);
            start = end;
            let Some(watcher) = self.watchers.get(&w) else {
                continue;
            };
            if watcher.next_rev > rev {
                continue;
            }
            let selected = watcher.shape(picked);
            if selected.is_empty() {
                continue;
            }
            let header = self.header(rev);
            if self.send_events(w, header, selected) {
                if let Some(watcher) = self.watchers.get_mut(&w) {
                    watcher.next_rev = rev + 1;
                    watcher.notified = true;
                }
            } else {
                self.make_unsynced(w, rev);
            }
        }
    }

    /// Sends `events` to `w` as one response, or as fragments when it asked
    /// for them and the response is too large; false when the stream had no
    /// room (nothing was sent).
    fn send_events(
        &mut self,
        w: WatcherRef,
        header: Option<ResponseHeader>,
        events: Vec<Event>,
    ) -> bool {
        let fragment = self.watchers.get(&w).is_some_and(|x| x.fragment);
        let Some(s) = self.streams.get(&w.stream) else {
            return false;
        };
        if !s.control.is_empty() {
            return false;
        }
        let response = WatchResponse {
            header,
            watch_id: w.id,
            events,
            ..Default::default()
        };
        if !fragment || response.events.len() < 2 || response.encoded_len() < self.fragment_bytes {
            return s.sink.try_send(response).is_ok();
        }
        // Fragments: every piece but the last says `fragment`, and the
        // client puts them back together, so they go out all together or
        // not at all (only the hub sends on a sink, so the room seen here
        // is there for every piece).
        let pieces = fragments(response, self.fragment_bytes);
        if s.sink.room() < pieces.len() {
            return false;
        }
        for piece in pieces {
            if s.sink.try_send(piece).is_err() {
                tracing::error!(
                    stream = w.stream,
                    "a watch fragment found no room it was promised"
                );
                return false;
            }
        }
        true
    }

    fn demote_all(&mut self) {
        let synced: Vec<WatcherRef> = self
            .watchers
            .iter()
            .filter(|(_, w)| w.synced)
            .map(|(r, _)| *r)
            .collect();
        let next = self.revision + 1;
        for w in synced {
            self.make_unsynced(w, next);
        }
    }

    /// The hub restarted (its supervisor, after a kill or a panic): the
    /// streams and their watchers stay, each at the revision it was next
    /// to get, and every watcher is caught up from storage from there, as
    /// an unsynced one. A catch-up read the old hub had in flight is
    /// forgotten (its answer died with it).
    pub fn restart(&mut self) {
        self.read_in_flight = None;
        self.demote_all();
    }

    /// The first stream opens after a time with none, during which the
    /// apply actor sent no events: take up the store's `revision` and
    /// `term` as the board shows them. There is no watcher to catch up
    /// (watchers live in streams); a batch still in flight from before
    /// arrives as a gap and is caught up from storage.
    pub fn take_up(&mut self, revision: i64, term: u64) {
        self.revision = self.revision.max(revision);
        self.term = self.term.max(term);
    }

    /// Step 4: the store was replaced by a snapshot at `revision`.
    pub fn on_replaced(&mut self, revision: i64) {
        self.demote_all();
        self.revision = revision;
    }

    /// Step 3: the catch-up read to do now, if any (one at a time).
    pub fn next_read(&mut self) -> Option<ReadWindow> {
        if self.read_in_flight.is_some() {
            return None;
        }
        let streams: Vec<u64> = self.streams.keys().copied().collect();
        for stream in streams {
            if self.flush_control(stream) {
                self.answer_progress_if_synced(stream);
            }
        }
        // Watchers already at the hub's revision (those that waited for
        // their `created` to go out, or start in the future) need no read.
        let ready: Vec<WatcherRef> = self
            .unsynced
            .iter()
            .copied()
            .filter(|w| self.stream_clear(w.stream))
            .filter(|w| {
                self.watchers
                    .get(w)
                    .is_some_and(|x| x.next_rev > self.revision)
            })
            .collect();
        for w in ready {
            self.make_synced(w);
            self.answer_progress_if_synced(w.stream);
        }
        let from = self
            .unsynced
            .iter()
            .filter(|w| self.stream_clear(w.stream))
            .filter_map(|w| self.watchers.get(w).map(|x| x.next_rev))
            .min()?;
        let to = self.revision.min(from + CATCH_UP_REVISIONS - 1);
        let window = ReadWindow {
            from,
            to,
            max_bytes: CATCH_UP_BYTES,
        };
        self.read_in_flight = Some(window);
        Some(window)
    }

    /// Whether a stream can take a catch-up response now: nothing waits
    /// before it, and its client has read enough to leave room. A stream
    /// without room is not read for (the read would be thrown away); the
    /// sync timer tries again.
    fn stream_clear(&self, stream: u64) -> bool {
        self.streams
            .get(&stream)
            .is_some_and(|s| s.control.is_empty() && s.sink.room() > 0)
    }

    /// The catch-up read failed (the store could not be read): try again
    /// at the next chance.
    pub fn on_read_failed(&mut self) {
        self.read_in_flight = None;
    }

    /// Step 3: the events of the window asked for.
    pub fn on_read(&mut self, read: EventsRead) {
        let Some(window) = self.read_in_flight.take() else {
            return;
        };
        self.compact_revision = self.compact_revision.max(read.compact_revision);
        let waiting: Vec<WatcherRef> = self.unsynced.iter().copied().collect();
        for w in waiting {
            let Some(watcher) = self.watchers.get(&w) else {
                continue;
            };
            if !self.stream_clear(w.stream) {
                continue;
            }
            if watcher.next_rev < self.compact_revision {
                self.cancel_compacted(w);
                continue;
            }
            if watcher.next_rev < window.from || watcher.next_rev > read.last {
                continue;
            }
            let selected =
                watcher.select(read.events.iter().filter(|e| revision_of(e) <= read.last));
            if !selected.is_empty() {
                let header = self.header(self.revision);
                if !self.send_events(w, header, selected) {
                    continue;
                }
                if let Some(watcher) = self.watchers.get_mut(&w) {
                    watcher.notified = true;
                }
            }
            if let Some(watcher) = self.watchers.get_mut(&w) {
                watcher.next_rev = read.last + 1;
                if watcher.next_rev > self.revision {
                    self.make_synced(w);
                    self.answer_progress_if_synced(w.stream);
                }
            }
        }
    }

    /// etcd's compaction cancel: `canceled` with `compact_revision`, header
    /// revision 0, no reason; the watcher goes.
    fn cancel_compacted(&mut self, w: WatcherRef) {
        if let Some(s) = self.streams.get_mut(&w.stream) {
            s.watchers.remove(&w.id);
        }
        self.drop_watcher(w);
        let response = WatchResponse {
            header: self.header(0),
            watch_id: w.id,
            canceled: true,
            compact_revision: self.compact_revision,
            ..Default::default()
        };
        self.send_control(w.stream, response);
        self.answer_progress_if_synced(w.stream);
    }

    /// Whether catch-up work is waiting (the shell polls while it is).
    pub fn has_unsynced(&self) -> bool {
        !self.unsynced.is_empty() || self.streams.values().any(|s| !s.control.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;

    use proto::mvccpb::KeyValue;

    use super::*;

    /// A sink holding at most `capacity` responses until the test takes them.
    #[derive(Clone)]
    struct Client {
        queue: Rc<RefCell<VecDeque<WatchResponse>>>,
        capacity: Rc<RefCell<usize>>,
    }

    impl Client {
        fn new(capacity: usize) -> Self {
            Self {
                queue: Rc::default(),
                capacity: Rc::new(RefCell::new(capacity)),
            }
        }

        fn take(&self) -> Vec<WatchResponse> {
            self.queue.borrow_mut().drain(..).collect()
        }

        fn set_capacity(&self, capacity: usize) {
            *self.capacity.borrow_mut() = capacity;
        }
    }

    impl ResponseSink for Client {
        fn try_send(&self, response: WatchResponse) -> Result<(), WatchResponse> {
            if self.queue.borrow().len() >= *self.capacity.borrow() {
                return Err(response);
            }
            self.queue.borrow_mut().push_back(response);
            Ok(())
        }

        fn room(&self) -> usize {
            self.capacity
                .borrow()
                .saturating_sub(self.queue.borrow().len())
        }
    }

    const IDS: HeaderIds = HeaderIds {
        cluster_id: 7,
        member_id: 9,
    };

    fn hub(revision: i64) -> WatchCore<Client> {
        WatchCore::new(IDS, revision, 1 << 20)
    }

    fn put(key: &str, value: &str, rev: i64, prev: Option<&str>) -> Event {
        Event {
            r#type: EventType::Put as i32,
            kv: Some(KeyValue {
                key: key.into(),
                value: value.into(),
                mod_revision: rev,
                create_revision: rev,
                version: 1,
                ..Default::default()
            }),
            prev_kv: prev.map(|v| KeyValue {
                key: key.into(),
                value: v.into(),
                ..Default::default()
            }),
        }
    }

    fn delete(key: &str, rev: i64) -> Event {
        Event {
            r#type: EventType::Delete as i32,
            kv: Some(KeyValue {
                key: key.into(),
                mod_revision: rev,
                ..Default::default()
            }),
            prev_kv: None,
        }
    }

    fn watch(key: &str, end: &str) -> WatchCreateRequest {
        WatchCreateRequest {
            key: key.into(),
            range_end: end.into(),
            ..Default::default()
        }
    }

    /// (watch id, revisions and keys of its events) of each event response.
    fn seen(responses: &[WatchResponse]) -> Vec<(i64, Vec<(i64, String)>)> {
        responses
            .iter()
            .filter(|r| !r.events.is_empty())
            .map(|r| {
                let events = r
                    .events
                    .iter()
                    .map(|e| {
                        let kv = e.kv.as_ref().unwrap();
                        (
                            kv.mod_revision,
                            String::from_utf8_lossy(&kv.key).into_owned(),
                        )
                    })
                    .collect();
                (r.watch_id, events)
            })
            .collect()
    }

    /// Runs catch-up reads against `history` until none is due.
    fn catch_up(core: &mut WatchCore<Client>, history: &[Event], compacted: i64) {
        for _ in 0..100 {
            let Some(window) = core.next_read() else {
                return;
            };
            let read = if window.from < compacted {
                EventsRead {
                    events: Vec::new(),
                    last: window.from - 1,
                    compact_revision: compacted,
                }
            } else {
                EventsRead {
                    events: history
                        .iter()
                        .filter(|e| (window.from..=window.to).contains(&revision_of(e)))
                        .cloned()
                        .collect(),
                    last: window.to,
                    compact_revision: compacted,
                }
            };
            core.on_read(read);
        }
        panic!("catch-up never finished");
    }

    #[test]
    fn ids_start_at_zero_per_stream_and_duplicates_are_refused() {
        let mut core = hub(1);
        let client = Client::new(100);
        let s = core.open_stream(client.clone());
        core.create(s, &watch("a", ""));
        core.create(
            s,
            &WatchCreateRequest {
                watch_id: 1,
                ..watch("b", "")
            },
        );
        core.create(s, &watch("c", ""));
        core.create(
            s,
            &WatchCreateRequest {
                watch_id: 2,
                ..watch("d", "")
            },
        );
        let r = client.take();
        let ids: Vec<(i64, bool, bool)> = r
            .iter()
            .map(|r| (r.watch_id, r.created, r.canceled))
            .collect();
        assert_eq!(
            ids,
            vec![
                (0, true, false),
                (1, true, false),
                (2, true, false),
                (-1, true, true)
            ]
        );
        assert_eq!(r[3].cancel_reason, DUPLICATE_WATCH_ID);
        assert_eq!(r[0].header.unwrap().revision, 1);
        let other = Client::new(10);
        let s2 = core.open_stream(other.clone());
        core.create(s2, &watch("a", ""));
        assert_eq!(other.take()[0].watch_id, 0, "ids are per stream");
        for (key, end) in [("foo", "bar"), ("foo", "foo")] {
            core.create(s2, &watch(key, end));
            let r = other.take();
            assert_eq!(
                (r[0].watch_id, r[0].created, r[0].canceled),
                (-1, true, true)
            );
            assert_eq!(r[0].cancel_reason, EMPTY_WATCHER_RANGE);
        }
        core.create(s2, &watch("foo", "\0"));
        assert_eq!(other.take()[0].watch_id, 1, "from-key is a range");
        assert_eq!(core.counts().watchers, 5);
    }

    #[test]
    fn live_events_reach_matching_watchers_once_per_revision_as_asked() {
        let mut core = hub(1);
        let client = Client::new(100);
        let s = core.open_stream(client.clone());
        core.create(s, &watch("foo", "")); // 0: one key
        core.create(s, &watch("f", "g")); // 1: a range
        core.create(
            s,
            &WatchCreateRequest {
                prev_kv: true,
                filters: vec![FilterType::Nodelete as i32],
                ..watch("a", "\0")
            },
        ); // 2: from "a" on, no deletes, prev_kv
        client.take();
        core.on_events(
            1,
            3,
            2,
            &[
                put("foo", "1", 2, None),
                put("zz", "1", 2, None),
                delete("foo", 3),
            ],
        );
        let r = client.take();
        assert_eq!(
            seen(&r),
            vec![
                (0, vec![(2, "foo".into())]),
                (1, vec![(2, "foo".into())]),
                (2, vec![(2, "foo".into()), (2, "zz".into())]),
                (0, vec![(3, "foo".into())]),
                (1, vec![(3, "foo".into())]),
            ]
        );
        assert!(r.iter().all(|r| r.header.unwrap().raft_term == 2));
        assert_eq!(r[0].header.unwrap().revision, 2);
        assert_eq!(r[3].header.unwrap().revision, 3);
        // prev_kv only for the watcher that asked.
        core.on_events(3, 4, 2, &[put("foo", "2", 4, Some("1"))]);
        let r = client.take();
        let prev: Vec<(i64, bool)> = r
            .iter()
            .map(|r| (r.watch_id, r.events[0].prev_kv.is_some()))
            .collect();
        assert_eq!(prev, vec![(0, false), (1, false), (2, true)]);
    }

    #[test]
    fn a_future_start_skips_earlier_revisions() {
        let mut core = hub(1);
        let client = Client::new(100);
        let s = core.open_stream(client.clone());
        core.create(
            s,
            &WatchCreateRequest {
                start_revision: 4,
                ..watch("k", "")
            },
        );
        client.take();
        core.on_events(1, 3, 1, &[put("k", "a", 2, None), put("k", "b", 3, None)]);
        core.on_events(3, 5, 1, &[put("k", "c", 4, None), put("k", "d", 5, None)]);
        assert_eq!(
            seen(&client.take()),
            vec![(0, vec![(4, "k".into())]), (0, vec![(5, "k".into())])]
        );
    }

    #[test]
    fn a_past_start_is_replayed_from_storage_then_goes_live() {
        let history = vec![
            put("k", "a", 2, None),
            put("x", "a", 3, None),
            delete("k", 4),
        ];
        let mut core = hub(4);
        let client = Client::new(100);
        let s = core.open_stream(client.clone());
        core.create(
            s,
            &WatchCreateRequest {
                start_revision: 2,
                ..watch("k", "")
            },
        );
        assert_eq!(core.counts().unsynced, 1);
        assert_eq!(
            core.next_read(),
            Some(ReadWindow {
                from: 2,
                to: 4,
                max_bytes: CATCH_UP_BYTES
            })
        );
        assert_eq!(core.next_read(), None, "one read at a time");
        core.on_read(EventsRead {
            events: history.clone(),
            last: 4,
            compact_revision: 0,
        });
        assert_eq!(core.counts().unsynced, 0);
        core.on_events(4, 5, 1, &[put("k", "b", 5, None)]);
        let r = client.take();
        assert!(r[0].created);
        assert_eq!(
            seen(&r),
            vec![
                (0, vec![(2, "k".into()), (4, "k".into())]),
                (0, vec![(5, "k".into())])
            ]
        );
        assert_eq!(
            r[1].header.unwrap().revision,
            4,
            "catch-up carries the hub's revision"
        );
    }

    #[test]
    fn a_slow_stream_loses_nothing_and_never_blocks_the_others() {
        let mut core = hub(1);
        let slow = Client::new(1);
        let fast = Client::new(1_000);
        let s1 = core.open_stream(slow.clone());
        let s2 = core.open_stream(fast.clone());
        core.create(s1, &watch("k", "l"));
        core.create(s2, &watch("k", "l"));
        slow.take();
        fast.take();
        let mut history = Vec::new();
        for rev in 2..=50 {
            let e = put(&format!("k{rev}"), "v", rev, None);
            history.push(e.clone());
            core.on_events(rev - 1, rev, 1, &[e]);
        }
        assert_eq!(
            seen(&fast.take()).len(),
            49,
            "the fast stream got every revision"
        );
        assert_eq!(
            core.counts().unsynced,
            1,
            "the slow watcher left the live path"
        );
        // The slow client reads a little at a time; catch-up fills the gaps.
        let mut got: Vec<i64> = Vec::new();
        for _ in 0..200 {
            got.extend(
                seen(&slow.take())
                    .into_iter()
                    .flat_map(|(_, e)| e.into_iter().map(|(r, _)| r)),
            );
            if core.counts().unsynced == 0 {
                break;
            }
            catch_up(&mut core, &history, 0);
            slow.set_capacity(1);
        }
        got.extend(
            seen(&slow.take())
                .into_iter()
                .flat_map(|(_, e)| e.into_iter().map(|(r, _)| r)),
        );
        assert_eq!(
            got,
            (2..=50).collect::<Vec<i64>>(),
            "in order, no gap, no duplicate"
        );
        assert_eq!(core.counts().unsynced, 0);
    }

    #[test]
    fn no_history_is_read_for_a_stream_without_room() {
        let mut core = hub(1);
        let client = Client::new(1);
        let s = core.open_stream(client.clone());
        core.create(s, &watch("k", ""));
        core.on_events(1, 2, 1, &[put("k", "a", 2, None)]);
        assert_eq!(
            core.counts().unsynced,
            1,
            "the created answer filled the stream"
        );
        assert_eq!(core.next_read(), None, "a read now would be thrown away");
        client.take();
        assert!(core.next_read().is_some(), "read once the client made room");
    }

    #[test]
    fn a_compacted_start_gets_one_compaction_cancel() {
        let mut core = hub(10);
        let client = Client::new(100);
        let s = core.open_stream(client.clone());
        core.create(
            s,
            &WatchCreateRequest {
                start_revision: 3,
                ..watch("k", "")
            },
        );
        catch_up(&mut core, &[], 6);
        let r = client.take();
        assert_eq!(r.len(), 2);
        assert!(r[1].canceled && r[1].compact_revision == 6 && r[1].cancel_reason.is_empty());
        assert_eq!(
            r[1].header.unwrap().revision,
            0,
            "etcd sends header revision 0"
        );
        assert_eq!(core.counts().watchers, 0);
        core.on_events(10, 11, 1, &[put("k", "v", 11, None)]);
        assert!(client.take().is_empty(), "nothing after the cancel");
    }

    #[test]
    fn a_missed_batch_is_caught_up_from_storage() {
        let mut core = hub(1);
        let client = Client::new(100);
        let s = core.open_stream(client.clone());
        core.create(s, &watch("k", ""));
        client.take();
        let history = vec![put("k", "a", 2, None), put("k", "b", 3, None)];
        // The batch for revision 2 never reached the hub.
        core.on_events(2, 3, 1, &history[1..]);
        assert!(client.take().is_empty(), "revision 3 waits for revision 2");
        catch_up(&mut core, &history, 0);
        assert_eq!(
            seen(&client.take()),
            vec![(0, vec![(2, "k".into()), (3, "k".into())])]
        );
        core.on_replaced(9);
        catch_up(&mut core, &[], 0);
        core.on_events(9, 10, 1, &[put("k", "c", 10, None)]);
        assert_eq!(seen(&client.take()), vec![(0, vec![(10, "k".into())])]);
    }

    #[test]
    fn progress_requests_wait_for_the_streams_watchers_to_sync() {
        let mut core = hub(5);
        let client = Client::new(100);
        let s = core.open_stream(client.clone());
        core.request_progress(s);
        let r = client.take();
        assert_eq!((r[0].watch_id, r[0].header.unwrap().revision), (-1, 5));
        core.create(
            s,
            &WatchCreateRequest {
                start_revision: 2,
                ..watch("k", "")
            },
        );
        client.take();
        core.request_progress(s);
        assert!(
            client.take().is_empty(),
            "not ahead of the replay still due"
        );
        catch_up(&mut core, &[put("k", "v", 3, None)], 0);
        let r = client.take();
        assert_eq!(seen(&r), vec![(0, vec![(3, "k".into())])]);
        assert_eq!((r[1].watch_id, r[1].header.unwrap().revision), (-1, 5));
    }

    #[test]
    fn progress_notify_goes_to_idle_watchers_that_asked() {
        let mut core = hub(1);
        let client = Client::new(100);
        let s = core.open_stream(client.clone());
        let notify = |key: &str| WatchCreateRequest {
            progress_notify: true,
            ..watch(key, "")
        };
        core.create(s, &notify("a"));
        core.create(s, &notify("b"));
        core.create(s, &watch("c", ""));
        client.take();
        core.on_events(1, 2, 1, &[put("a", "v", 2, None)]);
        client.take();
        core.tick_progress();
        let r = client.take();
        let ids: Vec<(i64, i64, usize)> = r
            .iter()
            .map(|r| (r.watch_id, r.header.unwrap().revision, r.events.len()))
            .collect();
        assert_eq!(ids, vec![(1, 2, 0)], "only the idle watcher that asked");
        core.tick_progress();
        assert_eq!(client.take().len(), 2, "both idle now");
    }

    #[test]
    fn cancel_answers_then_nothing_more_and_unknown_ids_are_ignored() {
        let mut core = hub(1);
        let client = Client::new(100);
        let s = core.open_stream(client.clone());
        core.create(s, &watch("k", ""));
        client.take();
        core.cancel(s, 0);
        core.cancel(s, 42);
        let r = client.take();
        assert_eq!(r.len(), 1);
        assert!(r[0].canceled && r[0].watch_id == 0);
        core.on_events(1, 2, 1, &[put("k", "v", 2, None)]);
        assert!(client.take().is_empty());
        core.create(s, &watch("k", ""));
        assert_eq!(
            client.take()[0].watch_id,
            1,
            "ids are not reused on a stream"
        );
        core.close_stream(s);
        assert_eq!(core.counts(), WatchCounts::default());
    }

    #[test]
    fn large_responses_are_fragmented_for_watchers_that_asked() {
        let mut core = WatchCore::new(IDS, 1, 2_000);
        let client = Client::new(100);
        let s = core.open_stream(client.clone());
        core.create(
            s,
            &WatchCreateRequest {
                fragment: true,
                ..watch("k", "l")
            },
        );
        core.create(s, &watch("k", "l"));
        client.take();
        let big = "x".repeat(900);
        let events: Vec<Event> = (0..5)
            .map(|i| put(&format!("k{i}"), &big, 2, None))
            .collect();
        core.on_events(1, 2, 1, &events);
        let r = client.take();
        let fragmented: Vec<&WatchResponse> = r.iter().filter(|r| r.watch_id == 0).collect();
        assert!(fragmented.len() >= 3, "{} pieces", fragmented.len());
        let flags: Vec<bool> = fragmented.iter().map(|r| r.fragment).collect();
        assert!(flags[..flags.len() - 1].iter().all(|f| *f) && !flags[flags.len() - 1]);
        let total: usize = fragmented.iter().map(|r| r.events.len()).sum();
        assert_eq!(total, 5);
        let whole: Vec<&WatchResponse> = r.iter().filter(|r| r.watch_id == 1).collect();
        assert_eq!(
            (whole.len(), whole[0].events.len()),
            (1, 5),
            "whole when not asked"
        );
        // All pieces or none: with room for fewer, the watcher falls behind.
        client.set_capacity(1);
        core.on_events(
            2,
            3,
            1,
            &events
                .iter()
                .map(|e| {
                    let mut e = e.clone();
                    e.kv.as_mut().unwrap().mod_revision = 3;
                    e
                })
                .collect::<Vec<_>>(),
        );
        assert!(client.take().iter().all(|r| !r.fragment), "no partial set");
    }

    #[test]
    fn a_created_that_finds_no_room_still_goes_first() {
        let mut core = hub(1);
        let client = Client::new(0);
        let s = core.open_stream(client.clone());
        core.create(s, &watch("k", ""));
        core.on_events(1, 2, 1, &[put("k", "v", 2, None)]);
        assert!(client.take().is_empty());
        client.set_capacity(10);
        catch_up(&mut core, &[put("k", "v", 2, None)], 0);
        let r = client.take();
        assert!(r[0].created, "{r:?}");
        assert_eq!(seen(&r), vec![(0, vec![(2, "k".into())])]);
    }
}
