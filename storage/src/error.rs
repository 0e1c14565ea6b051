//! Errors of the storage crate.
//!
//! [`EtcdError`] is the vocabulary of client-visible etcd errors. Storage
//! produces most of them (while applying a request) and the upper crates reuse
//! the same enum; exactly one place (in the `node` crate) maps each variant to
//! a `tonic::Status` with etcd's code and message. [`StorageError`] is an I/O
//! or corruption failure: fatal to the member, never shown to a client as a
//! request error.

use thiserror::Error;

/// An error that etcd reports to a client. The `Display` text is etcd's message
/// byte for byte (see `rpctypes/error.go` in etcd 3.4).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EtcdError {
    #[error("etcdserver: key is not provided")]
    EmptyKey,
    #[error("etcdserver: key not found")]
    KeyNotFound,
    #[error("etcdserver: value is provided")]
    ValueProvided,
    #[error("etcdserver: lease is provided")]
    LeaseProvided,
    #[error("etcdserver: too many operations in txn request")]
    TooManyOps,
    #[error("etcdserver: duplicate key given in txn request")]
    DuplicateKey,
    #[error("etcdserver: mvcc: required revision has been compacted")]
    Compacted,
    #[error("etcdserver: mvcc: required revision is a future revision")]
    FutureRev,
    #[error("etcdserver: mvcc: database space exceeded")]
    NoSpace,
    #[error("etcdserver: requested lease not found")]
    LeaseNotFound,
    #[error("etcdserver: lease already exists")]
    LeaseExist,
    #[error("etcdserver: too large lease TTL")]
    LeaseTtlTooLarge,
    #[error("etcdserver: request is too large")]
    RequestTooLarge,
    #[error("etcdserver: too many requests")]
    TooManyRequests,
    #[error("etcdserver: no leader")]
    NoLeader,
    #[error("etcdserver: not leader")]
    NotLeader,
    #[error("etcdserver: leader changed")]
    LeaderChanged,
    #[error("etcdserver: server stopped")]
    Stopped,
    #[error("etcdserver: request timed out")]
    Timeout,
    #[error("etcdserver: request timed out, possibly due to previous leader failure")]
    TimeoutDueToLeaderFail,
    #[error("etcdserver: corrupt cluster")]
    Corrupt,
    #[error("etcdserver: bad leader transferee")]
    BadLeaderTransferee,
    #[error("etcdserver: request timed out, leader transfer took too long")]
    LeaderTransferTimeout,
    /// An election request from a contender that no longer leads (etcd's
    /// `concurrency.ErrElectionNotLeader`).
    #[error("election: not leader")]
    ElectionNotLeader,
    /// No contender holds the election (`concurrency.ErrElectionNoLeader`).
    #[error("election: no leader")]
    ElectionNoLeader,
    /// A Proclaim or Resign without its leader key (`v3election`'s
    /// `ErrMissingLeaderKey`).
    #[error("\"leader\" field must be provided")]
    MissingLeaderKey,
    #[error("etcdserver: member ID already exist")]
    MemberExist,
    #[error("etcdserver: Peer URLs already exists")]
    PeerUrlExist,
    #[error("etcdserver: re-configuration failed due to not enough started members")]
    MemberNotEnoughStarted,
    #[error("etcdserver: given member URLs are invalid")]
    MemberBadUrls,
    /// Also a removed member's id (etcd maps `ErrIDRemoved` to it).
    #[error("etcdserver: member not found")]
    MemberNotFound,
    #[error("etcdserver: can only promote a learner member")]
    MemberNotLearner,
    #[error("etcdserver: can only promote a learner member which is in sync with leader")]
    LearnerNotReady,
    #[error("etcdserver: too many learner members in cluster")]
    TooManyLearners,
    #[error("etcdserver: unhealthy cluster")]
    Unhealthy,
    #[error("etcdserver: rpc not supported for learner")]
    NotSupportedForLearner,
    /// Member-local work on the store itself (defragmentation, a snapshot
    /// image) failed, e.g. on a full disk: etcd passes the backend's own
    /// error text through, unmapped.
    #[error("{0}")]
    Backend(String),
    /// An auth refusal (`etcdserver: permission denied`, ...).
    #[error(transparent)]
    Auth(#[from] crate::auth::AuthError),
}

/// A failure of the storage engine itself (LMDB error, I/O error, corrupt
/// record). The member must stop and recover from its log; it is never
/// answered to a client as if it were the client's mistake.
#[derive(Debug, Error)]
pub enum StorageError {
    #[error("lmdb: {0}")]
    Lmdb(#[from] heed::Error),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("corrupt record: {0}")]
    Corrupt(String),
    #[error("raft storage: {0}")]
    Raft(#[from] raft::Error),
    /// A bbolt (etcd snapshot) file that cannot be read or written.
    #[error("bbolt: {0}")]
    Bolt(#[from] crate::bbolt::BoltError),
}
