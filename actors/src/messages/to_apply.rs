//! Messages to the apply actor: committed entries and read batches from
//! the raft actor, serializable reads and maintenance work from the gRPC
//! facade, and the payloads that travel with them.

use super::requests::{PendingRead, WriteReply};
use actix::Message;
use proto::internal::SnapshotDescriptor;
use raft::eraftpb::Entry;

/// Committed entries and the waiters of the proposals they carry.
#[derive(Debug, Default)]
pub struct CommittedBatch {
    pub entries: Vec<Entry>,
    pub waiters: Vec<(u64, WriteReply)>,
    pub term: u64,
}

/// Reads whose read index is known.
#[derive(Debug)]
pub struct ReadBatch {
    pub index: u64,
    pub reads: Vec<PendingRead>,
    pub term: u64,
}

/// The members of the cluster, and the ids removed from it for good.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MemberTable {
    pub members: Vec<proto::etcdserverpb::Member>,
    pub removed: Vec<u64>,
}

/// What applying a batch produced, for the raft actor.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ApplyReport {
    pub applied: u64,
    /// Membership changes the batch accepted, by raft index, for raft's
    /// configuration (a refused one is left out: raft never sees it).
    pub conf_changes: Vec<(u64, raft::eraftpb::ConfChange)>,
    /// The member table after the batch, when the batch changed it (the
    /// peer transport follows it).
    pub members: Option<MemberTable>,
    /// A new snapshot image, when `--snapshot-count` entries were applied
    /// since the last one.
    pub snapshot: Option<SnapshotDescriptor>,
}

/// Committed entries to apply; answers what was applied.
#[derive(Message)]
#[rtype(result = "ApplyReport")]
pub struct Committed {
    pub batch: CommittedBatch,
}

/// Replace the store with a verified snapshot image; answers the applied
/// index it brings and the member table in it.
#[derive(Message)]
#[rtype(result = "(u64, MemberTable)")]
pub struct InstallSnapshot {
    pub descriptor: SnapshotDescriptor,
}

/// Raft needs a snapshot for a member added since the last image: write an
/// image of the store now (answered through `ApplyReport::snapshot` of the
/// answer).
#[derive(Message)]
#[rtype(result = "ApplyReport")]
pub struct TakeImage;

/// Linearizable reads whose read index is known.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ReadReady {
    pub batch: ReadBatch,
}

/// A serializable read.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Read {
    pub read: PendingRead,
}

/// Rewrite the store compactly (etcd's Defragment); answers the file size
/// before and after.
#[derive(Message)]
#[rtype(result = "Result<(i64, i64), storage::StorageError>")]
pub struct Defragment;

/// A read view of the whole store for a long export on another thread
/// (etcd's snapshot save), with the flag the apply actor raises when the
/// store is about to be replaced by a snapshot install: the export must then
/// stop and drop the view.
pub struct ExportView {
    pub reader: storage::mvcc::DetachedReader,
    pub cancel: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// Open an [`ExportView`].
#[derive(Message)]
#[rtype(result = "Result<ExportView, storage::StorageError>")]
pub struct OpenExport;

/// What `Maintenance.Status` needs from the store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreStatus {
    pub revision: i64,
    pub compact_revision: i64,
    pub applied_index: u64,
    pub db_size: i64,
    pub db_size_in_use: i64,
    /// Active alarms: (member id, `AlarmType` value).
    pub alarms: Vec<(u64, i32)>,
}

/// Ask for [`StoreStatus`].
#[derive(Message)]
#[rtype(result = "StoreStatus")]
pub struct GetStoreStatus;
