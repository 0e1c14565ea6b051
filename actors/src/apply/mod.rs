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
//! The chaos API can pause applying ([`Faults::wait_while_apply_paused`],
//! before each committed batch).

pub mod core;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use storage::mvcc::{Batched, LmdbBackend};

use self::core::ApplyCore;
use crate::chaos::Faults;
use crate::messages::{
    Barrier, Committed, Defragment, ExportView, GetStoreStatus, InstallSnapshot, Kill, OpenExport,
    Read, ReadEvents, ReadReady, TakeImage,
};
use crate::metrics::ActorProbe;

/// Mailbox capacity of the apply actor for client reads.
pub const APPLY_MAILBOX: usize = 4096;

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
    }

    fn stopping(&mut self, _: &mut Self::Context) -> Running {
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
        let _ = msg.done.send(Some(self.core.checkpoint()));
    }
}

impl Handler<Committed> for ApplyActor {
    type Result = MessageResult<Committed>;

    fn handle(&mut self, msg: Committed, _: &mut Context<Self>) -> Self::Result {
        if self.faults.wait_while_apply_paused() {
            tracing::info!("chaos: apply resumed");
        }
        let _timer = self.probe.handling("Committed");
        let report = match self.core.apply(msg.batch) {
            Ok(report) => report,
            Err(e) => crate::fatal(&format!("apply failed: {e}")),
        };
        self.flush_if_due();
        MessageResult(report)
    }
}

impl Handler<InstallSnapshot> for ApplyActor {
    type Result = MessageResult<InstallSnapshot>;

    fn handle(&mut self, msg: InstallSnapshot, _: &mut Context<Self>) -> Self::Result {
        let _timer = self.probe.handling("InstallSnapshot");
        match self.core.install(&msg.descriptor) {
            Ok(applied) => MessageResult((applied, self.core.member_table())),
            Err(e) => crate::fatal(&format!("snapshot install failed: {e}")),
        }
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
