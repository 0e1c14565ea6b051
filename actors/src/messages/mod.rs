//! The messages between actors, in one home.
//!
//! Each actor module imports the messages it sends and handles from here and
//! never from another actor's module, so the imports between actors run one
//! way: the facade and the transport send to raft; raft sends to the log
//! writer, the apply actor and the transport; the facade sends watch
//! requests to the watch hub; the apply actor feeds the hub through the
//! [`StoreFeed`](crate::apply::core::StoreFeed) trait the hub implements, and
//! the hub reads history from the apply actor. Clients are answered through
//! the reply channels that travel with their requests.
//!
//! One file per receiving actor: [`to_raft`], [`to_apply`],
//! [`to_log_writer`], [`to_transport`], [`to_watch`], [`to_lessor`]; plus [`requests`], the client
//! requests and reply channels that pass through several actors (a
//! [`PendingRead`] goes to raft for its read index, then to apply inside a
//! [`ReadBatch`]).

pub mod requests;
pub mod to_apply;
pub mod to_lessor;
pub mod to_log_writer;
pub mod to_raft;
pub mod to_transport;
pub mod to_watch;

pub use requests::*;
pub use to_apply::*;
pub use to_lessor::*;
pub use to_log_writer::*;
pub use to_raft::*;
pub use to_transport::*;
pub use to_watch::*;

/// Stops the actor that receives it (the chaos API's kill); its supervisor
/// restarts it from storage ([`crate::supervisor`]). Every actor takes it.
#[derive(actix::Message, Clone, Copy, Debug)]
#[rtype(result = "()")]
pub struct Kill;

/// What the apply actor reports at a [`Barrier`]: its applied index and raft's
/// configuration as of that index (from the member table).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoreCheckpoint {
    pub applied: u64,
    pub voters: Vec<u64>,
    pub learners: Vec<u64>,
}

/// Answered once every message enqueued before it was handled (the log
/// writer answers `None`, the apply actor its [`StoreCheckpoint`]). A
/// restarting raft actor waits on it, on a plain channel, before it reads
/// storage.
#[derive(actix::Message, Debug)]
#[rtype(result = "()")]
pub struct Barrier {
    pub done: std::sync::mpsc::SyncSender<Option<StoreCheckpoint>>,
}
