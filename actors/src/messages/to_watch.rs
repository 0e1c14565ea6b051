//! Messages to the watch hub: watch streams and their requests from the gRPC
//! facade, the store's progress from the apply actor, and the answers to the
//! hub's catch-up reads.

use actix::Message;
use proto::etcdserverpb::{WatchCreateRequest, WatchResponse};
use proto::mvccpb::Event;
use storage::EtcdError;
use tokio::sync::mpsc;

/// A client's watch stream opens: the hub answers with the stream's id and
/// sends every response for it to `responses` (bounded; a stream that does
/// not keep up has its watchers caught up from storage instead).
#[derive(Message)]
#[rtype(result = "u64")]
pub struct OpenStream {
    pub responses: mpsc::Sender<WatchResponse>,
}

/// The client's stream ended: its watchers go.
#[derive(Message)]
#[rtype(result = "()")]
pub struct CloseStream {
    pub stream: u64,
}

/// A `create_request` on `stream`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct CreateWatch {
    pub stream: u64,
    pub request: WatchCreateRequest,
}

/// A `cancel_request` on `stream`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct CancelWatch {
    pub stream: u64,
    pub watch_id: i64,
}

/// A `progress_request` on `stream`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RequestProgress {
    pub stream: u64,
}

/// The store moved from revision `from` to `to` by applying one batch, with
/// these events (in revision order, `prev_kv` filled). Sent by the apply
/// actor before it answers the batch's clients; a batch the hub's mailbox
/// refused shows as a gap (the next `from` is not the hub's revision) and
/// the hub catches its watchers up from storage.
#[derive(Message)]
#[rtype(result = "()")]
pub struct StoreEvents {
    pub from: i64,
    pub to: i64,
    /// The raft term the batch was applied in (for response headers).
    pub term: u64,
    pub events: Vec<Event>,
}

/// The store was replaced (a snapshot from the leader was installed): its
/// history is not the one the hub saw; every watcher resynchronizes from
/// the new store.
#[derive(Message)]
#[rtype(result = "()")]
pub struct StoreReplaced {
    pub revision: i64,
}

/// Read the events of revisions `from..=to` (the hub's catch-up read, one
/// at a time), at most about `max_bytes` of them.
#[derive(Message)]
#[rtype(result = "Result<EventsRead, EtcdError>")]
pub struct ReadEvents {
    pub from: i64,
    pub to: i64,
    pub max_bytes: usize,
}

/// What a [`ReadEvents`] found.
#[derive(Debug, Clone, Default)]
pub struct EventsRead {
    pub events: Vec<Event>,
    /// The last revision the events cover (`to`, or less when the byte
    /// budget ran out).
    pub last: i64,
    /// The store's compacted revision at the time of the read.
    pub compact_revision: i64,
}
