//! Messages to the log writer, all from the raft actor.

use actix::Message;
use raft::eraftpb::ConfState;
use storage::raft_log::LogWrite;

/// Make one Ready durable.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Append {
    pub number: u64,
    pub write: LogWrite,
}

/// Persist the conf state produced by applying a conf change.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SaveConfState {
    pub conf_state: ConfState,
}

/// Record a raft snapshot for a new state-machine image, then discard log
/// entries before `compact_to`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SaveSnapshot {
    pub snapshot: raft::eraftpb::Snapshot,
    pub compact_to: u64,
}
