//! The apply actor: owns the MVCC LMDB environment, on its own thread.
//!
//! 1. `Committed` (from the raft actor) is applied in one write txn; waiters
//!    handed over with it are answered; the reply is the applied index.
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

pub mod core;
#[cfg(test)]
mod tests;

use actix::prelude::*;
use storage::mvcc::LmdbBackend;

use self::core::ApplyCore;
use crate::messages::{
    Backup, Committed, Defragment, GetStoreStatus, InstallSnapshot, Read, ReadEvents, ReadReady,
};
use crate::metrics::ActorProbe;

/// Mailbox capacity of the apply actor for client reads.
pub const APPLY_MAILBOX: usize = 4096;

/// The apply actor shell.
pub struct ApplyActor {
    core: ApplyCore<LmdbBackend>,
    probe: ActorProbe,
    commit: prometheus::Histogram,
}

impl ApplyActor {
    /// `commit` observes each applied batch (etcd's
    /// `etcd_disk_backend_commit_duration_seconds`).
    pub fn new(
        core: ApplyCore<LmdbBackend>,
        probe: ActorProbe,
        commit: prometheus::Histogram,
    ) -> Self {
        Self {
            core,
            probe,
            commit,
        }
    }
}

impl Actor for ApplyActor {
    type Context = Context<Self>;

    fn stopping(&mut self, _: &mut Self::Context) -> Running {
        self.core.shutdown();
        Running::Stop
    }
}

impl Handler<Committed> for ApplyActor {
    type Result = MessageResult<Committed>;

    fn handle(&mut self, msg: Committed, _: &mut Context<Self>) -> Self::Result {
        let _timer = self.probe.handling("Committed");
        let _commit = self.commit.start_timer();
        match self.core.apply(msg.batch) {
            Ok(report) => MessageResult(report),
            Err(e) => crate::fatal(&format!("apply failed: {e}")),
        }
    }
}

impl Handler<InstallSnapshot> for ApplyActor {
    type Result = u64;

    fn handle(&mut self, msg: InstallSnapshot, _: &mut Context<Self>) -> u64 {
        let _timer = self.probe.handling("InstallSnapshot");
        match self.core.install(&msg.descriptor) {
            Ok(applied) => applied,
            Err(e) => crate::fatal(&format!("snapshot install failed: {e}")),
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

impl Handler<Backup> for ApplyActor {
    type Result = Result<(), storage::StorageError>;

    fn handle(&mut self, msg: Backup, _: &mut Context<Self>) -> Self::Result {
        let _timer = self.probe.handling("Backup");
        self.core.backup(&msg.path)
    }
}

impl Handler<ReadEvents> for ApplyActor {
    type Result = Result<crate::messages::EventsRead, storage::EtcdError>;

    fn handle(&mut self, msg: ReadEvents, _: &mut Context<Self>) -> Self::Result {
        let _timer = self.probe.handling("ReadEvents");
        self.core.read_events(msg.from, msg.to, msg.max_bytes)
    }
}
