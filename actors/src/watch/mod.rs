//! The watch hub actor: every watcher of this member, synced and unsynced.
//!
//! 1. The gRPC facade opens a stream (`OpenStream`, with the bounded channel
//!    its responses go to) and forwards the client's create, cancel and
//!    progress requests; `CloseStream` when the client goes.
//! 2. The apply actor sends `StoreEvents` after each applied batch, before
//!    answering its clients, with `try_send` ([`WatchFeed`]): the apply
//!    actor never waits on the hub, and a batch the hub's mailbox refused is
//!    caught up from storage (see [`core`]). `StoreReplaced` follows a
//!    snapshot install. With no stream open it sends nothing (a wake-up of
//!    this thread per batch saved); the hub posts its stream count on the
//!    board, and its first stream takes up the store's revision and term
//!    from there ([`crate::board`], step 5).
//! 3. While watchers are unsynced, the hub reads their history from the
//!    apply actor (`ReadEvents`, one read in flight), on a timer
//!    ([`SYNC_INTERVAL`], as etcd's sync loop) and after each read.
//! 4. Every `--experimental-watch-progress-notify-interval` the hub sends
//!    progress notifications to idle `progress_notify` watchers.
//!
//! Supervision: after a `Kill` or a panic the hub restarts with its
//! streams and watchers and catches every watcher up from storage from the
//! revision it was next to get ([`WatchCore::restart`]): no event is lost or
//! sent twice, and the clients' streams stay open.
//!
//! The logic lives in [`core::WatchCore`]; this shell feeds it and sends
//! what it asks for. Metrics: etcd's `etcd_debugging_mvcc_watcher_total`,
//! `..._slow_watcher_total` (unsynced watchers), `..._watch_stream_total`
//! and `..._pending_events_total` (events accepted for a stream and not yet
//! taken by its gRPC sender), plus the hub's per-actor series.

pub mod core;
pub mod index;

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use proto::etcdserverpb::WatchResponse;
use tokio::sync::mpsc;

use self::core::{HeaderIds, ResponseSink, WatchCore};
use crate::Mailbox;
use crate::apply::ApplyActor;
use crate::board::Board;
use crate::messages::{
    CancelWatch, CloseStream, CreateWatch, Kill, OpenStream, ReadEvents, RequestProgress,
    StoreEvents, StoreReplaced,
};
use crate::metrics::ActorProbe;

/// Mailbox capacity of the hub (client requests and store batches).
pub const WATCH_MAILBOX: usize = 4096;
/// Responses a stream may have queued for its client.
pub const STREAM_BUFFER: usize = 128;
/// How often unsynced watchers are caught up (etcd: 100 ms).
pub const SYNC_INTERVAL: Duration = Duration::from_millis(100);

/// A stream's response channel, counting the events it holds.
#[derive(Clone)]
pub struct StreamSink {
    tx: mpsc::Sender<WatchResponse>,
    pending: prometheus::IntGauge,
}

impl ResponseSink for StreamSink {
    fn try_send(&self, response: WatchResponse) -> Result<(), WatchResponse> {
        let events = response.events.len() as i64;
        match self.tx.try_send(response) {
            Ok(()) => {
                self.pending.add(events);
                Ok(())
            }
            Err(mpsc::error::TrySendError::Full(r) | mpsc::error::TrySendError::Closed(r)) => {
                Err(r)
            }
        }
    }

    fn room(&self) -> usize {
        self.tx.capacity()
    }
}

/// etcd's watch gauges.
#[derive(Clone)]
pub struct WatchMetrics {
    pub watchers: prometheus::IntGauge,
    pub slow_watchers: prometheus::IntGauge,
    pub streams: prometheus::IntGauge,
    /// Events accepted for a stream and not yet taken by its sender; the
    /// facade decrements it as it sends.
    pub pending_events: prometheus::IntGauge,
}

impl WatchMetrics {
    pub fn new(registry: &prometheus::Registry) -> prometheus::Result<Self> {
        let gauge = |name: &str, help: &str| -> prometheus::Result<prometheus::IntGauge> {
            let g = prometheus::IntGauge::new(name, help)?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        Ok(Self {
            watchers: gauge(
                "etcd_debugging_mvcc_watcher_total",
                "Total number of watchers.",
            )?,
            slow_watchers: gauge(
                "etcd_debugging_mvcc_slow_watcher_total",
                "Total number of unsynced slow watchers.",
            )?,
            streams: gauge(
                "etcd_debugging_mvcc_watch_stream_total",
                "Total number of watch streams.",
            )?,
            pending_events: gauge(
                "etcd_debugging_mvcc_pending_events_total",
                "Total number of pending events to be sent.",
            )?,
        })
    }

    /// Gauges nobody scrapes (tests).
    pub fn unregistered() -> Self {
        Self::new(&prometheus::Registry::new()).expect("fresh registry")
    }
}

/// Tells the hub where to read history from (sent once at start: the apply
/// actor is started after the hub, since it feeds it).
#[derive(Message)]
#[rtype(result = "()")]
pub struct ConnectStore {
    pub apply: Mailbox<ApplyActor>,
}

/// The hub actor.
pub struct WatchHub {
    core: WatchCore<StreamSink>,
    apply: Option<Mailbox<ApplyActor>>,
    /// Where the stream count is posted and the store's revision read.
    board: Arc<Board>,
    probe: ActorProbe,
    metrics: WatchMetrics,
    progress_interval: Duration,
}

impl WatchHub {
    pub fn new(
        ids: HeaderIds,
        revision: i64,
        fragment_bytes: usize,
        progress_interval: Duration,
        probe: ActorProbe,
        metrics: WatchMetrics,
        board: Arc<Board>,
    ) -> Self {
        Self {
            core: WatchCore::new(ids, revision, fragment_bytes),
            apply: None,
            board,
            probe,
            metrics,
            progress_interval,
        }
    }

    fn publish(&self) {
        let counts = self.core.counts();
        self.board.post_watch_streams(counts.streams);
        self.metrics.watchers.set(counts.watchers as i64);
        self.metrics.slow_watchers.set(counts.unsynced as i64);
        self.metrics.streams.set(counts.streams as i64);
    }

    /// Starts the next catch-up read, if one is due and none is in flight.
    fn sync(&mut self, ctx: &mut Context<Self>) {
        let Some(apply) = &self.apply else {
            return;
        };
        if let Some(window) = self.core.next_read() {
            let read = ReadEvents {
                from: window.from,
                to: window.to,
                max_bytes: window.max_bytes,
            };
            match apply.request(read) {
                Ok(request) => {
                    ctx.spawn(request.into_actor(self).map(|res, act, ctx| {
                        let _timer = act.probe.timing("EventsRead");
                        match res {
                            Ok(Ok(read)) => {
                                act.core.on_read(read);
                                act.sync(ctx);
                            }
                            Ok(Err(e)) => {
                                tracing::warn!(error = %e, "watch catch-up read failed");
                                act.core.on_read_failed();
                            }
                            Err(_) => act.core.on_read_failed(),
                        }
                        act.publish();
                    }));
                }
                Err(_) => self.core.on_read_failed(),
            }
        }
        self.publish();
    }
}

impl Actor for WatchHub {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(SYNC_INTERVAL, |act, ctx| {
            if act.core.has_unsynced() {
                let _timer = act.probe.timing("SyncTick");
                act.sync(ctx);
            }
        });
        ctx.run_interval(self.progress_interval, |act, _| {
            let _timer = act.probe.timing("ProgressTick");
            act.core.tick_progress();
        });
    }
}

impl Supervised for WatchHub {
    fn restarting(&mut self, _: &mut Context<Self>) {
        self.core.restart();
        self.publish();
    }
}

impl Handler<Kill> for WatchHub {
    type Result = ();

    fn handle(&mut self, _: Kill, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

impl Handler<ConnectStore> for WatchHub {
    type Result = ();

    fn handle(&mut self, msg: ConnectStore, ctx: &mut Context<Self>) {
        let _timer = self.probe.timing("ConnectStore");
        self.apply = Some(msg.apply);
        self.sync(ctx);
    }
}

impl Handler<OpenStream> for WatchHub {
    type Result = u64;

    fn handle(&mut self, msg: OpenStream, _: &mut Context<Self>) -> u64 {
        let _timer = self.probe.handling("OpenStream");
        let open = self.core.counts().streams;
        // Post the new stream before reading the revision (board step 5).
        self.board.post_watch_streams(open + 1);
        if open == 0 {
            self.core.take_up(self.board.revision(), self.board.term());
        }
        let sink = StreamSink {
            tx: msg.responses,
            pending: self.metrics.pending_events.clone(),
        };
        let id = self.core.open_stream(sink);
        self.publish();
        id
    }
}

impl Handler<CloseStream> for WatchHub {
    type Result = ();

    fn handle(&mut self, msg: CloseStream, _: &mut Context<Self>) {
        let _timer = self.probe.handling("CloseStream");
        self.core.close_stream(msg.stream);
        self.publish();
    }
}

impl Handler<CreateWatch> for WatchHub {
    type Result = ();

    fn handle(&mut self, msg: CreateWatch, ctx: &mut Context<Self>) {
        let _timer = self.probe.handling("CreateWatch");
        self.core.create(msg.stream, &msg.request);
        if self.core.is_cut_off(msg.stream) {
            tracing::warn!(
                stream = msg.stream,
                "watch stream closed: its client creates watches without reading responses"
            );
            self.core.close_stream(msg.stream);
            self.publish();
        }
        self.sync(ctx);
    }
}

impl Handler<CancelWatch> for WatchHub {
    type Result = ();

    fn handle(&mut self, msg: CancelWatch, _: &mut Context<Self>) {
        let _timer = self.probe.handling("CancelWatch");
        self.core.cancel(msg.stream, msg.watch_id);
        self.publish();
    }
}

impl Handler<RequestProgress> for WatchHub {
    type Result = ();

    fn handle(&mut self, msg: RequestProgress, _: &mut Context<Self>) {
        let _timer = self.probe.handling("RequestProgress");
        self.core.request_progress(msg.stream);
    }
}

impl Handler<StoreEvents> for WatchHub {
    type Result = ();

    fn handle(&mut self, msg: StoreEvents, ctx: &mut Context<Self>) {
        let _timer = self.probe.handling("StoreEvents");
        self.core.on_events(msg.from, msg.to, msg.term, &msg.events);
        if self.core.has_unsynced() {
            self.sync(ctx);
        }
    }
}

impl Handler<StoreReplaced> for WatchHub {
    type Result = ();

    fn handle(&mut self, msg: StoreReplaced, ctx: &mut Context<Self>) {
        let _timer = self.probe.handling("StoreReplaced");
        self.core.on_replaced(msg.revision);
        self.sync(ctx);
    }
}

/// The hub side of the apply actor's feed: `StoreEvents` with `try_send`,
/// when a stream is open (module docs, step 2).
pub struct WatchFeed {
    pub hub: Mailbox<WatchHub>,
    pub board: Arc<Board>,
}

impl crate::apply::core::StoreFeed for WatchFeed {
    fn events(&mut self, update: &mut StoreEvents) {
        // After the board feed posted `update.to` (it runs first).
        if self.board.watch_streams() == 0 {
            return;
        }
        let update = StoreEvents {
            from: update.from,
            to: update.to,
            term: update.term,
            events: std::mem::take(&mut update.events),
        };
        if self.hub.try_send(update).is_err() {
            tracing::debug!("watch hub mailbox full; its watchers will catch up from storage");
        }
    }

    fn replaced(&mut self, revision: i64, _: &[(i64, storage::mvcc::Lease)]) {
        // If refused, the next `StoreEvents` starts at the new store's
        // revision, which the hub sees as a gap: the same resync.
        if self.hub.try_send(StoreReplaced { revision }).is_err() {
            tracing::debug!("watch hub mailbox full; the install shows as a gap instead");
        }
    }
}
