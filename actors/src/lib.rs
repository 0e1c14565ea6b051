//! oxcd's actors: the only crate that imports actix.
//!
//! Each actor is a thin shell over a plain state struct (testable without a
//! runtime) and owns exactly one piece of state:
//! 1. [`raft::RaftActor`] owns the `RawNode`, ticks it, runs the Ready loop and
//!    keeps the waiter registry of in-flight proposals and reads.
//! 2. [`log_writer::LogWriter`] owns the raft LMDB environment's writes: one
//!    fsynced txn per Ready, then `Persisted` back to the raft actor.
//! 3. [`apply::ApplyActor`] owns the MVCC LMDB environment: it applies committed
//!    entries (their LMDB writes batched, etcd's backend batch interval),
//!    answers the waiters handed over with them, and serves reads
//!    (serializable at once, linearizable after ReadIndex).
//! 4. [`transport::TransportActor`] owns the outbound links to the peers.
//! 5. [`watch::WatchHub`] owns every watcher of this member.
//! 6. [`lease::LessorActor`] owns the lease countdowns (active on the
//!    leader) and proposes expiries.
//!
//! Every actor runs on its own thread (an actix `Arbiter`), so blocking LMDB
//! work in one never stalls another. Every mailbox is measured
//! ([`metrics::ActorMetrics`]). Requests from clients are bounded by the
//! mailbox's capacity ([`mailbox::Mailbox::try_send`] and
//! [`mailbox::Mailbox::request`] refuse when full); messages between actors
//! are enqueued unrefused ([`mailbox::Mailbox::deliver`]) and bounded by
//! protocol instead: one log write in flight, committed entries bounded by
//! the apply-lag check on proposals. The messages themselves live in
//! [`messages`], so the imports between actors run one way. Values the
//! facade reads on every request (term, leader, revision) are posted on the
//! [`board::Board`] instead of asked for.
//!
//! Every actor runs under a [`supervisor`] that restarts it (after a kill
//! from the chaos API, or a panic where a restart is safe) with the same
//! mailbox, and each actor's `restarting` rebuilds its state from storage.
//! The chaos API's fault switches live in [`chaos`], read by the actors
//! where each fault bites.

pub mod apply;
pub mod board;
pub mod chaos;
pub mod lease;
pub mod log_writer;
pub mod mailbox;
pub mod messages;
pub mod metrics;
pub mod raft;
pub mod supervisor;
pub mod transport;
pub mod watch;

pub use mailbox::Mailbox;
pub use metrics::{ActorMetrics, EtcdMetrics};

/// Stops a member that was removed from its cluster, as etcd's stops (exit
/// status 0: nothing failed; its data dir cannot serve again and must be
/// wiped before the member is added back).
pub fn stop_removed() -> ! {
    tracing::error!("{}", transport::wire::MEMBER_REMOVED);
    tracing::error!("the data-dir used by this member must be removed");
    std::process::exit(0)
}

/// Stops the process after a failure that leaves this member's state unknown
/// (an LMDB write or fsync error, an actor that owns durable state gone).
/// Raft recovery on restart does the rest: the member replays its durable log.
pub fn fatal(what: &str) -> ! {
    tracing::error!("fatal: {what}; exiting so that the member restarts from its durable state");
    std::process::exit(2)
}
