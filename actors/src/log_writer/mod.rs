//! The log writer: the one actor that writes the raft LMDB environment. It
//! runs on the raft actor's thread: a Ready's write and its answer wake no
//! other thread, and while it writes, raft waits (as etcd's raft loop waits
//! for its WAL).
//!
//! 1. `Append{number, write}` arrives from the raft actor (at most one in
//!    flight: the raft core waits for its answer before the next Ready).
//! 2. The snapshot, entries and hard state are written in ONE LMDB write txn,
//!    committed with fsync (`LogStore::write`).
//! 3. The reply tells the raft actor that Ready `number` is durable; only then
//!    does it send votes and append responses.
//!
//! A failed write is fatal: the process exits and restarts from what is
//! durable, never acknowledging the lost entries. The chaos API can slow
//! every write down or make the next ones fail ([`Faults`]).
//!
//! Supervision: the writer keeps nothing in memory but the env handle, so a
//! restart (after a `Kill`) only logs; writes queued meanwhile wait in the
//! mailbox. A panic stops the member (a write may be half done).

use std::sync::Arc;

use actix::prelude::*;
use storage::raft_log::{LmdbLogStore, LogStore};

use crate::chaos::Faults;
use crate::messages::{Append, Barrier, Kill, SaveConfState, SaveSnapshot};
use crate::metrics::ActorProbe;

/// Mailbox capacity of the log writer.
pub const LOG_WRITER_MAILBOX: usize = 64;

/// The log writer actor (on the raft actor's thread; see the module docs).
pub struct LogWriter {
    store: LmdbLogStore,
    probe: ActorProbe,
    fsync: prometheus::Histogram,
    faults: Arc<Faults>,
}

impl LogWriter {
    /// `fsync` observes each write (etcd's `etcd_disk_wal_fsync_duration_seconds`).
    pub fn new(
        store: LmdbLogStore,
        probe: ActorProbe,
        fsync: prometheus::Histogram,
        faults: Arc<Faults>,
    ) -> Self {
        Self {
            store,
            probe,
            fsync,
            faults,
        }
    }
}

impl Actor for LogWriter {
    type Context = Context<Self>;
}

impl Supervised for LogWriter {
    fn restarting(&mut self, _: &mut Context<Self>) {
        tracing::info!("log writer restarting (nothing to rebuild: every write is durable)");
    }
}

impl Handler<Kill> for LogWriter {
    type Result = ();

    fn handle(&mut self, _: Kill, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

impl Handler<Barrier> for LogWriter {
    type Result = ();

    fn handle(&mut self, msg: Barrier, _: &mut Context<Self>) {
        let _timer = self.probe.handling("Barrier");
        let _ = msg.done.send(None);
    }
}

impl Handler<Append> for LogWriter {
    type Result = ();

    fn handle(&mut self, msg: Append, _: &mut Context<Self>) {
        let _timer = self.probe.handling("Append");
        let _fsync = self.fsync.start_timer();
        let delay = self.faults.fsync_delay();
        if !delay.is_zero() {
            std::thread::sleep(delay);
        }
        if self.faults.take_fsync_failure() {
            crate::fatal(
                "raft log write failed: fsync failed (chaos fail-fsync); nothing it carried was acknowledged",
            );
        }
        if let Err(e) = self.store.write(&msg.write) {
            crate::fatal(&format!("raft log write failed: {e}"));
        }
    }
}

impl Handler<SaveConfState> for LogWriter {
    type Result = ();

    fn handle(&mut self, msg: SaveConfState, _: &mut Context<Self>) {
        let _timer = self.probe.handling("SaveConfState");
        if let Err(e) = self.store.set_conf_state(&msg.conf_state) {
            crate::fatal(&format!("raft conf state write failed: {e}"));
        }
    }
}

impl Handler<SaveSnapshot> for LogWriter {
    type Result = ();

    fn handle(&mut self, msg: SaveSnapshot, _: &mut Context<Self>) {
        let _timer = self.probe.handling("SaveSnapshot");
        if let Err(e) = self.store.set_snapshot(&msg.snapshot) {
            crate::fatal(&format!("raft snapshot record failed: {e}"));
        }
        if let Err(e) = self.store.compact(msg.compact_to) {
            crate::fatal(&format!("raft log compaction failed: {e}"));
        }
    }
}
