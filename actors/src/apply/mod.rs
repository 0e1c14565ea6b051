//! The apply actor: owns the MVCC LMDB environment, on its own thread.
//!
//! 1. `Committed` (from the raft actor) is applied in one write txn; waiters
//!    handed over with it are answered; the reply is the applied index. The
//!    store's commits are batched (etcd's `--backend-batch-interval` and
//!    `--backend-batch-limit`): they are written to LMDB after a batch, or on
//!    a timer, once the interval has passed or a limit is reached.
//! 2. `ReadReady` carries linearizable reads with their read index; they are
//!    served once applied >= read index (see [`core::ApplyCore`]).
//! 3. `Read` is a serializable read, served at once from a fresh read txn.
//! 4. `GetStoreStatus` reports revision, applied index and db size.
//! 5. `InstallSnapshot` swaps in a snapshot image received from the leader.
//! 6. `Defragment` rewrites the store compactly (member-local).
//! 7. `Backup` writes an image of the store for `Maintenance.Snapshot`.
//! 8. `ReadEvents` reads history for the watch hub's catch-up.
//!
//! A storage error while applying is fatal: the process exits and the entry
//! is applied after restart from the durable raft log (never skipped, or
//! members would diverge).
//!
//! Supervision: a `Kill` stops the actor between two messages; `stopping`
//! fails the reads waiting here (clients get a retryable `Unavailable`)
//! and writes the pending commits, and `restarting` reopens the store from
//! disk ([`ApplyCore::reload`]). Committed batches queued meanwhile wait in
//! the mailbox. A panic stops the member: a batch may be half applied in
//! memory, and only the raft log can redo it.
//!
//! The chaos API can pause applying ([`Faults::apply_paused`]): while it
//! is paused, committed batches and snapshot installs are held, in order,
//! and answered once they are applied after the pause; everything else
//! (serializable reads, status, catch-up reads for watchers) is served from
//! the store as it stands, and linearizable reads wait for their index. A
//! kill of the actor ends the pause for what it held: `stopping` applies it
//! all first, and so does a restart of the raft actor (its `Barrier`).

pub mod core;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use storage::mvcc::{Batched, LmdbBackend};

use self::core::ApplyCore;
use crate::chaos::Faults;
use crate::messages::{
    ApplyReport, Barrier, Committed, CommittedBatch, Defragment, ExportView, GetStoreStatus,
    InstallSnapshot, Kill, MemberTable, OpenExport, Read, ReadEvents, ReadReady, TakeImage,
};
use crate::metrics::ActorProbe;

/// Mailbox capacity of the apply actor for client reads.
pub const APPLY_MAILBOX: usize = 4096;

/// How often a held batch checks whether the pause is over.
const PAUSE_CHECK: Duration = Duration::from_millis(10);

/// Work held while apply is paused, in arrival order, with where its
/// answer goes.
enum Held {
    Batch(CommittedBatch, tokio::sync::oneshot::Sender<ApplyReport>),
    Install(
        proto::internal::SnapshotDescriptor,
        tokio::sync::oneshot::Sender<(u64, MemberTable)>,
    ),
}

/// An answer that comes once the held work is applied. The sender is only
/// dropped if the actor's thread is gone, when nobody is left to answer.
fn held_answer<T: 'static>(rx: tokio::sync::oneshot::Receiver<T>) -> Response<T> {
    Response::fut(async move {
        match rx.await {
            Ok(answer) => answer,
            Err(_) => std::future::pending().await,
        }
    })
}

/// The store the apply actor owns: LMDB, commits batched.
pub type StoreBackend = Batched<LmdbBackend>;

/// The apply actor shell.
pub struct ApplyActor {
    core: ApplyCore<StoreBackend>,
    probe: ActorProbe,
    commit: prometheus::Histogram,
    /// How often the timer asks whether pending commits are due.
    flush_check: Duration,
    faults: Arc<Faults>,
    /// Committed batches and installs held while apply is paused.
    held: VecDeque<Held>,
}

impl ApplyActor {
    /// `commit` observes each write of the store's pending commits (etcd's
    /// `etcd_disk_backend_commit_duration_seconds`); `flush_check` is how
    /// often an idle actor asks whether they are due (a fraction of the
    /// batch interval).
    pub fn new(
        core: ApplyCore<StoreBackend>,
        probe: ActorProbe,
        commit: prometheus::Histogram,
        flush_check: Duration,
    ) -> Self {
        Self {
            core,
            probe,
            commit,
            flush_check,
            faults: Arc::default(),
            held: VecDeque::new(),
        }
    }

    /// Whether new committed work must wait behind a pause (or behind work
    /// already held, to keep the log order).
    fn must_hold(&self) -> bool {
        !self.held.is_empty() || self.faults.apply_paused()
    }

    fn apply_now(&mut self, batch: CommittedBatch) -> ApplyReport {
        let report = match self.core.apply(batch) {
            Ok(report) => report,
            Err(e) => crate::fatal(&format!("apply failed: {e}")),
        };
        self.flush_if_due();
        report
    }

    fn install_now(
        &mut self,
        descriptor: &proto::internal::SnapshotDescriptor,
    ) -> (u64, MemberTable) {
        match self.core.install(descriptor) {
            Ok(applied) => (applied, self.core.member_table()),
            Err(e) => crate::fatal(&format!("snapshot install failed: {e}")),
        }
    }

    /// Applies the held work, in order, once the pause is over (or at once
    /// with `force`, when the actor stops).
    fn release_held(&mut self, force: bool) {
        if self.held.is_empty() || (!force && self.faults.apply_paused()) {
            return;
        }
        tracing::info!(held = self.held.len(), "apply resumes after a pause");
        while let Some(held) = self.held.pop_front() {
            let _timer = self.probe.timing("Held");
            match held {
                Held::Batch(batch, reply) => {
                    let _ = reply.send(self.apply_now(batch));
                }
                Held::Install(descriptor, reply) => {
                    let _ = reply.send(self.install_now(&descriptor));
                }
            }
        }
    }

    /// Reads the chaos API's switches from `faults` (apply pauses, the
    /// planted bug).
    pub fn with_faults(mut self, faults: Arc<Faults>) -> Self {
        self.core = self.core.with_faults(faults.clone());
        self.faults = faults;
        self
    }

    /// Writes the store's pending commits if they are due; a failure is
    /// fatal, as for an apply.
    fn flush_if_due(&mut self) {
        let started = std::time::Instant::now();
        match self.core.flush_if_due() {
            Ok(true) => self.commit.observe(started.elapsed().as_secs_f64()),
            Ok(false) => {}
            Err(e) => crate::fatal(&format!("writing the store failed: {e}")),
        }
    }
}

impl Actor for ApplyActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(self.flush_check, |act, _| act.flush_if_due());
        ctx.run_interval(PAUSE_CHECK, |act, _| act.release_held(false));
    }

    fn stopping(&mut self, _: &mut Self::Context) -> Running {
        self.release_held(true);
        self.core.shutdown();
        // Less for raft to replay at the next start; losing them is safe.
        if let Err(e) = self.core.flush() {
            tracing::warn!(error = %e, "pending store commits not written at shutdown");
        }
        Running::Stop
    }
}

impl Supervised for ApplyActor {
    fn restarting(&mut self, _: &mut Context<Self>) {
        if let Err(e) = self.core.reload() {
            crate::fatal(&format!(
                "the store cannot be reopened after a restart: {e}"
            ));
        }
    }
}

impl Handler<Kill> for ApplyActor {
    type Result = ();

    fn handle(&mut self, _: Kill, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

impl Handler<Barrier> for ApplyActor {
    type Result = ();

    fn handle(&mut self, msg: Barrier, _: &mut Context<Self>) {
        let _timer = self.probe.handling("Barrier");
        // A restarting raft actor builds on what is applied: the work held
        // by a pause is applied first (the pause ends early), or raft would
        // hand it out again without its membership changes.
        if !self.held.is_empty() {
            tracing::warn!("a raft restart ends the apply pause");
            self.faults.resume_apply();
            self.release_held(true);
        }
        let _ = msg.done.send(Some(self.core.checkpoint()));
    }
}

impl Handler<Committed> for ApplyActor {
    type Result = Response<ApplyReport>;

    fn handle(&mut self, msg: Committed, _: &mut Context<Self>) -> Self::Result {
        let _timer = self.probe.handling("Committed");
        if self.must_hold() {
            let (reply, rx) = tokio::sync::oneshot::channel();
            self.held.push_back(Held::Batch(msg.batch, reply));
            return held_answer(rx);
        }
        Response::reply(self.apply_now(msg.batch))
    }
}

impl Handler<InstallSnapshot> for ApplyActor {
    type Result = Response<(u64, MemberTable)>;

    fn handle(&mut self, msg: InstallSnapshot, _: &mut Context<Self>) -> Self::Result {
        let _timer = self.probe.handling("InstallSnapshot");
        if self.must_hold() {
            let (reply, rx) = tokio::sync::oneshot::channel();
            self.held.push_back(Held::Install(msg.descriptor, reply));
            return held_answer(rx);
        }
        Response::reply(self.install_now(&msg.descriptor))
    }
}

impl Handler<TakeImage> for ApplyActor {
    type Result = MessageResult<TakeImage>;

    fn handle(&mut self, _: TakeImage, _: &mut Context<Self>) -> Self::Result {
        let _timer = self.probe.handling("TakeImage");
        match self.core.take_image() {
            Ok(report) => MessageResult(report),
            Err(e) => crate::fatal(&format!("snapshot image failed: {e}")),
        }
    }
}

impl Handler<ReadReady> for ApplyActor {
    type Result = ();

    fn handle(&mut self, msg: ReadReady, _: &mut Context<Self>) {
        let _timer = self.probe.handling("ReadReady");
        self.core.read_ready(msg.batch);
    }
}

impl Handler<Read> for ApplyActor {
    type Result = ();

    fn handle(&mut self, msg: Read, _: &mut Context<Self>) {
        let _timer = self.probe.handling("Read");
        self.core.serve(msg.read);
    }
}

impl Handler<GetStoreStatus> for ApplyActor {
    type Result = MessageResult<GetStoreStatus>;

    fn handle(&mut self, _: GetStoreStatus, _: &mut Context<Self>) -> Self::Result {
        let _timer = self.probe.handling("GetStoreStatus");
        MessageResult(self.core.status())
    }
}

impl Handler<Defragment> for ApplyActor {
    type Result = Result<(i64, i64), storage::StorageError>;

    fn handle(&mut self, _: Defragment, _: &mut Context<Self>) -> Self::Result {
        let _timer = self.probe.handling("Defragment");
        self.core.defragment()
    }
}

impl Handler<OpenExport> for ApplyActor {
    type Result = Result<ExportView, storage::StorageError>;

    fn handle(&mut self, _: OpenExport, _: &mut Context<Self>) -> Self::Result {
        let _timer = self.probe.handling("OpenExport");
        self.core.open_export()
    }
}

impl Handler<ReadEvents> for ApplyActor {
    type Result = Result<crate::messages::EventsRead, storage::EtcdError>;

    fn handle(&mut self, msg: ReadEvents, _: &mut Context<Self>) -> Self::Result {
        let _timer = self.probe.handling("ReadEvents");
        self.core.read_events(msg.from, msg.to, msg.max_bytes)
    }
}
