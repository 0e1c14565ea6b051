//! The gRPC facade's door into the actor graph: turns a client request into
//! a message for the raft or apply actor and awaits the reply.
//!
//! 1. Writes: `Propose` to the raft actor (refused at once with
//!    `etcdserver: too many requests` when its mailbox is full); the reply
//!    arrives when the entry is applied, or with an error on timeout or
//!    leader change.
//! 2. Linearizable reads: `ReadIndex` to the raft actor.
//! 3. Serializable reads: `Read` straight to the apply actor.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use actors::Mailbox;
use actors::apply::ApplyActor;
use actors::board::Board;
use actors::lease::LessorActor;
use actors::messages::{
    Defragment, GetStatus, GetStoreStatus, IsPrimary, KeepAlive, KeepAlives, OpenExport,
    PendingRead, Propose, ProposeMemberChange, RaftStatus, Read, ReadIndex, ReadRequest,
    ReadResponse, StoreStatus, TimeToLive, TransferLeader,
};
use actors::raft::RaftActor;
use actors::watch::WatchHub;
use proto::internal::{InternalRequest, internal_request};
use storage::EtcdError;
use storage::auth::tokens::SimpleTokens;
use storage::auth::{AuthError, AuthInfo};
use storage::mvcc::ApplyResponse;
use tokio::sync::oneshot;
use tonic::transport::Channel;

/// A request's auth token: its `token` metadata, or `authorization` (what
/// the JSON gateway forwards); `None` when it has neither.
pub fn token(metadata: &tonic::metadata::MetadataMap) -> Option<String> {
    metadata
        .get("token")
        .or_else(|| metadata.get("authorization"))
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Limits the facade checks before anything reaches raft.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_txn_ops: usize,
    /// `--quota-backend-bytes` (0 already replaced by etcd's 2 GiB default).
    pub quota_bytes: i64,
    /// The shortest lease TTL granted, in seconds: etcd's
    /// `ceil(1.5 x election timeout)`; shorter requests are raised to it.
    pub min_lease_ttl: i64,
    /// etcd's `--strict-reconfig-check`: refuse membership changes that
    /// would leave too few started members for a quorum.
    pub strict_reconfig_check: bool,
}

/// What etcd charges a request against the quota: key + value + 256 bytes
/// per put (`etcdserver/quota.go`: `kvOverhead`).
pub const KV_OVERHEAD: i64 = 256;

/// What etcd charges a lease grant against the quota
/// (`etcdserver/quota.go`: `leaseOverhead`).
pub const LEASE_OVERHEAD: i64 = 64;

/// Addresses of the actors the facade talks to, plus the ids for headers.
#[derive(Clone)]
pub struct NodeHandle {
    raft: Mailbox<RaftActor>,
    apply: Mailbox<ApplyActor>,
    pub cluster_id: u64,
    pub member_id: u64,
    pub limits: Limits,
    /// Bytes the store holds, published by the apply actor after each batch.
    db_in_use: prometheus::IntGauge,
    /// Where snapshot images for `Maintenance.Snapshot` are written (on the
    /// data disk, beside the store).
    pub backup_dir: std::path::PathBuf,
    /// One permit: whole-store jobs (image, defragmentation) run one at a
    /// time.
    store_jobs: std::sync::Arc<tokio::sync::Semaphore>,
    pub watch: WatchHandle,
    pub lessor: Mailbox<LessorActor>,
    /// Lease ids this member hands out when a grant names none.
    lease_ids: Arc<AtomicU64>,
    /// Connections to other members' peer URLs, for requests only the
    /// leader answers (keep-alives, time-to-live, promotion).
    leader_channels: Arc<Mutex<HashMap<String, Channel>>>,
    /// How to dial an `https://` peer URL.
    peer_tls: Option<tonic::transport::ClientTlsConfig>,
    /// Term, leader and revision as the raft and apply actors post them.
    board: Arc<Board>,
    /// Auth tokens and passwords.
    pub authn: Arc<crate::auth::Authenticator>,
    /// Who [`NodeHandle::write`] and [`NodeHandle::read`] act as: nobody
    /// (the member's own requests), or a client (see
    /// [`NodeHandle::acting_as`]).
    acting: AuthInfo,
}

/// The watch hub's mailbox, and the gauge of events its streams hold (the
/// facade counts them down as it sends).
#[derive(Clone)]
pub struct WatchHandle {
    pub hub: Mailbox<WatchHub>,
    pub pending_events: prometheus::IntGauge,
}

/// The actors the facade sends to, and the board they post on.
pub struct Mailboxes {
    pub raft: Mailbox<RaftActor>,
    pub apply: Mailbox<ApplyActor>,
    pub watch: WatchHandle,
    pub lessor: Mailbox<LessorActor>,
    pub board: Arc<Board>,
}

impl NodeHandle {
    pub fn new(
        mailboxes: Mailboxes,
        cluster_id: u64,
        member_id: u64,
        limits: Limits,
        db_in_use: prometheus::IntGauge,
        backup_dir: std::path::PathBuf,
    ) -> Self {
        let Mailboxes {
            raft,
            apply,
            watch,
            lessor,
            board,
        } = mailboxes;
        // etcd's idutil layout: the member's low bits on top (15 here, so
        // ids stay positive), then milliseconds << 8 counting up.
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let lease_ids = ((member_id & 0x7fff) << 48) | ((now_ms << 8) & ((1 << 48) - 1));
        Self {
            raft,
            apply,
            cluster_id,
            member_id,
            limits,
            db_in_use,
            backup_dir,
            store_jobs: std::sync::Arc::new(tokio::sync::Semaphore::new(1)),
            watch,
            lessor,
            lease_ids: Arc::new(AtomicU64::new(lease_ids)),
            leader_channels: Arc::default(),
            peer_tls: None,
            board,
            authn: Arc::new(
                crate::auth::Authenticator::from_flags("simple", crate::auth::DEFAULT_BCRYPT_COST)
                    .expect("the default token kind"),
            ),
            acting: AuthInfo::default(),
        }
    }

    /// A fresh lease id: unique in the cluster (member bits) and positive.
    pub fn next_lease_id(&self) -> i64 {
        let id = self.lease_ids.fetch_add(1, Ordering::Relaxed) + 1;
        (id & (i64::MAX as u64)) as i64
    }

    /// A keep-alive for lease `id` on this member's lessor: its TTL (0: no
    /// such lease), or `NotLeader` when this member does not lead.
    pub async fn keep_alive(&self, id: i64) -> Result<i64, EtcdError> {
        let (reply, rx) = oneshot::channel();
        self.lessor
            .try_send(KeepAlive { id, reply })
            .map_err(|_| EtcdError::TooManyRequests)?;
        rx.await.map_err(|_| EtcdError::Stopped)?
    }

    /// Keep-alives for `ids` sent to this member's lessor in one message;
    /// each answer comes on its own receiver, as [`NodeHandle::keep_alive`]
    /// answers.
    pub fn keep_alives(
        &self,
        ids: &[i64],
    ) -> Result<Vec<oneshot::Receiver<Result<i64, EtcdError>>>, EtcdError> {
        let (batch, receivers): (Vec<KeepAlive>, Vec<_>) = ids
            .iter()
            .map(|&id| {
                let (reply, rx) = oneshot::channel();
                (KeepAlive { id, reply }, rx)
            })
            .unzip();
        self.lessor
            .try_send(KeepAlives(batch))
            .map_err(|_| EtcdError::TooManyRequests)?;
        Ok(receivers)
    }

    /// Lease `id`'s remaining and granted TTL on this member's lessor
    /// (`None`: unknown lease, or this member does not lead).
    pub async fn time_to_live(&self, id: i64) -> Result<Option<(i64, i64)>, EtcdError> {
        self.lessor
            .request(TimeToLive { id })
            .map_err(|_| EtcdError::TooManyRequests)?
            .await
            .map_err(|_| EtcdError::Stopped)
    }

    /// Whether this member's lessor acts as the leader's (it takes over a
    /// tick after raft makes this member leader).
    pub async fn lessor_primary(&self) -> Result<bool, EtcdError> {
        self.lessor
            .request(IsPrimary)
            .map_err(|_| EtcdError::TooManyRequests)?
            .await
            .map_err(|_| EtcdError::Stopped)
    }

    /// Whether this member leads now (as the raft actor last posted).
    pub async fn is_leader(&self) -> Result<bool, EtcdError> {
        Ok(self.board.leader() == self.member_id)
    }

    /// Dials other members' peer URLs with `tls` when they are `https://`
    /// (the member's peer client configuration).
    pub fn with_peer_tls(mut self, tls: Option<tonic::transport::ClientTlsConfig>) -> Self {
        self.peer_tls = tls;
        self
    }

    /// A connection to the current leader's peer URL, for requests only
    /// the leader answers (keep-alives, time-to-live, learner promotion),
    /// which its peer server serves too, as etcd forwards them over the peer
    /// port; `NoLeader` when there is none.
    pub async fn leader_channel(&self) -> Result<Channel, EtcdError> {
        let (raft, _) = self.status().await?;
        if raft.leader == 0 {
            return Err(EtcdError::NoLeader);
        }
        let ReadResponse::MemberList(members) = self.read(ReadRequest::MemberList, false).await?
        else {
            return Err(EtcdError::NoLeader);
        };
        let url = members
            .iter()
            .find(|m| m.id == raft.leader)
            .and_then(|m| m.peer_ur_ls.first().cloned())
            .ok_or(EtcdError::NoLeader)?;
        self.peer_channel(&url).ok_or(EtcdError::NoLeader)
    }

    /// The members of the cluster as this member last learned them.
    pub fn members(&self) -> Vec<proto::etcdserverpb::Member> {
        self.board.members()
    }

    /// A (cached, lazily connected) channel to a member's peer URL, where
    /// etcd's Lease, Cluster and Maintenance APIs are served for the other
    /// members; `None` for a URL that does not parse.
    pub fn peer_channel(&self, url: &str) -> Option<Channel> {
        let url = url.to_string();
        let mut cache = self.leader_channels.lock().expect("leader channel cache");
        if let Some(channel) = cache.get(&url) {
            return Some(channel.clone());
        }
        let mut endpoint = tonic::transport::Endpoint::from_shared(url.clone())
            .ok()?
            .connect_timeout(std::time::Duration::from_secs(2));
        if url.starts_with("https://")
            && let Some(tls) = &self.peer_tls
        {
            endpoint = endpoint.tls_config(tls.clone()).ok()?;
        }
        let channel = endpoint.connect_lazy();
        cache.insert(url, channel.clone());
        Some(channel)
    }

    /// Uses `authn` for tokens and passwords (`--auth-token`,
    /// `--bcrypt-cost`).
    pub fn with_auth(mut self, authn: crate::auth::Authenticator) -> Self {
        self.authn = Arc::new(authn);
        self
    }

    /// This handle acting as `who`: its writes and reads are checked as that
    /// client's (the lock and election services run their recipes as
    /// their caller, as etcd's do).
    pub fn acting_as(&self, who: AuthInfo) -> NodeHandle {
        let mut handle = self.clone();
        handle.acting = who;
        handle
    }

    /// The auth store as the apply actor last posted it.
    pub fn auth_store(&self) -> Arc<storage::auth::AuthStore> {
        self.board.auth()
    }

    /// Who makes a request, from its `token` (or `authorization`) metadata:
    /// no token is the empty [`AuthInfo`]; a token that does not check out
    /// is `invalid auth token` (etcd's `AuthInfoFromCtx`).
    ///
    /// A simple token names the raft index of its Authenticate entry; one
    /// this member does not know yet (the client authenticated through
    /// another member that applied first) is looked up again after a
    /// linearizable barrier, as etcd waits for that index.
    pub async fn who(
        &self,
        metadata: &tonic::metadata::MetadataMap,
    ) -> Result<AuthInfo, EtcdError> {
        self.who_is(token(metadata).as_deref()).await
    }

    /// [`NodeHandle::who`] for a token already taken from the metadata
    /// (handlers take it before consuming the request, so the metadata
    /// need not be copied).
    pub async fn who_is(&self, token: Option<&str>) -> Result<AuthInfo, EtcdError> {
        let Some(token) = token else {
            return Ok(AuthInfo::default());
        };
        let invalid = || EtcdError::Auth(AuthError::InvalidAuthToken);
        if !self.authn.simple() {
            return self.authn.verify_jwt(token).ok_or_else(invalid);
        }
        let index = SimpleTokens::index_of(token).ok_or_else(invalid)?;
        let mut user = self.board.token_user(token);
        if user.is_none() && index > 0 {
            self.read(ReadRequest::MemberList, true).await?;
            user = self.board.token_user(token);
        }
        let username = user.ok_or_else(invalid)?;
        Ok(AuthInfo {
            username,
            revision: self.board.auth().revision(),
        })
    }

    /// Replicates `request` and returns its applied result.
    pub async fn write(
        &self,
        request: internal_request::Request,
    ) -> Result<ApplyResponse, EtcdError> {
        self.write_as(request, &self.acting).await
    }

    /// Replicates `request` made by `who` (checked against the auth store at
    /// apply) and returns its applied result.
    pub async fn write_as(
        &self,
        request: internal_request::Request,
        who: &AuthInfo,
    ) -> Result<ApplyResponse, EtcdError> {
        let (reply, rx) = oneshot::channel();
        let propose = Propose {
            request: InternalRequest {
                id: 0,
                request: Some(request),
                username: who.username.clone(),
                auth_revision: who.revision,
            },
            reply,
        };
        self.raft
            .try_send(propose)
            .map_err(|_| EtcdError::TooManyRequests)?;
        rx.await.map_err(|_| EtcdError::Stopped)?
    }

    /// A membership change through raft; answers the member table after it.
    pub async fn member_change(
        &self,
        change: proto::internal::MemberChange,
    ) -> Result<Vec<proto::etcdserverpb::Member>, EtcdError> {
        let (reply, rx) = oneshot::channel();
        self.raft
            .try_send(ProposeMemberChange { change, reply })
            .map_err(|_| EtcdError::TooManyRequests)?;
        match rx.await.map_err(|_| EtcdError::Stopped)?? {
            ApplyResponse::Members(members) => Ok(members),
            _ => Err(EtcdError::Stopped),
        }
    }

    /// True while this member is a learner.
    pub fn is_learner(&self) -> bool {
        self.board.is_learner()
    }

    /// Since when `peer` has had a connection up (`None`: none now).
    pub fn connected_since(&self, peer: u64) -> Option<std::time::Instant> {
        self.board.connected_since(peer)
    }

    /// The store revision as last posted.
    pub fn revision(&self) -> i64 {
        self.board.revision()
    }

    /// Whether this member leads, as the raft actor last posted.
    pub fn leads(&self) -> bool {
        self.board.leader() == self.member_id
    }

    /// The leader as last posted (0: none).
    pub fn leader(&self) -> u64 {
        self.board.leader()
    }

    /// etcd's quota check before proposing a request that adds `cost`
    /// bytes: over the quota, raise the NOSPACE alarm for this member and
    /// refuse with `etcdserver: mvcc: database space exceeded`. oxcd counts
    /// the bytes in use rather than the file size (etcd's check), so that
    /// compaction alone makes room again: LMDB reuses freed pages, and no
    /// defragmentation is needed before the alarm can be disarmed.
    pub async fn check_quota(&self, cost: i64) -> Result<(), EtcdError> {
        if cost <= 0 || self.db_in_use.get() + cost <= self.limits.quota_bytes {
            return Ok(());
        }
        let raise = proto::etcdserverpb::AlarmRequest {
            action: proto::etcdserverpb::alarm_request::AlarmAction::Activate as i32,
            member_id: self.member_id,
            alarm: proto::etcdserverpb::AlarmType::Nospace as i32,
        };
        if let Err(e) = self.write(internal_request::Request::Alarm(raise)).await {
            tracing::warn!(error = %e, "could not raise the NOSPACE alarm");
        }
        Err(EtcdError::NoSpace)
    }

    /// Serves a read, linearizable (ReadIndex) or serializable (local).
    pub async fn read(
        &self,
        request: ReadRequest,
        linearizable: bool,
    ) -> Result<ReadResponse, EtcdError> {
        self.read_as(request, linearizable, self.acting.clone())
            .await
    }

    /// A read made by `who` (ranges and txns are checked against the auth
    /// store when served).
    pub async fn read_as(
        &self,
        request: ReadRequest,
        linearizable: bool,
        auth: AuthInfo,
    ) -> Result<ReadResponse, EtcdError> {
        let (reply, rx) = oneshot::channel();
        let read = PendingRead {
            request,
            auth,
            reply,
        };
        if linearizable {
            self.raft
                .try_send(ReadIndex { read })
                .map_err(|_| EtcdError::TooManyRequests)?;
        } else {
            self.apply
                .try_send(Read { read })
                .map_err(|_| EtcdError::TooManyRequests)?;
        }
        rx.await.map_err(|_| EtcdError::Stopped)?
    }

    /// Publishes this member's name and client URLs to the cluster (etcd's
    /// "publish" at start), retrying with backoff until it is committed.
    pub async fn publish_attributes(&self, name: String, client_urls: Vec<String>) {
        let attrs = proto::internal::MemberAttributes {
            member_id: self.member_id,
            name,
            client_urls,
        };
        let mut delay = std::time::Duration::from_millis(50);
        loop {
            match self
                .write(internal_request::Request::MemberAttributes(attrs.clone()))
                .await
            {
                Ok(_) => {
                    tracing::info!(
                        name = %attrs.name,
                        client_urls = ?attrs.client_urls,
                        "published local member to cluster"
                    );
                    return;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "publishing member attributes; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(std::time::Duration::from_secs(2));
                }
            }
        }
    }

    /// Hands leadership to `target` (this member must lead).
    pub async fn move_leader(&self, target: u64) -> Result<(), EtcdError> {
        let (reply, rx) = oneshot::channel();
        self.raft
            .try_send(TransferLeader { target, reply })
            .map_err(|_| EtcdError::TooManyRequests)?;
        rx.await.map_err(|_| EtcdError::Stopped)?
    }

    /// A detached read view of this member's store for a snapshot export,
    /// with the whole-store turn it holds until dropped: a defragmentation
    /// waits for the export to finish (as etcd's waits for a snapshot's read
    /// txn), here rather than on the apply thread.
    pub async fn open_export(
        &self,
    ) -> Result<
        (
            actors::messages::ExportView,
            tokio::sync::OwnedSemaphorePermit,
        ),
        EtcdError,
    > {
        let turn = self
            .store_jobs
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| EtcdError::Stopped)?;
        let view = self.run_store_job(OpenExport, "snapshot").await?;
        Ok((view, turn))
    }

    /// Defragments this member's store (see [`NodeHandle::store_job`]).
    pub async fn defragment(&self) -> Result<(i64, i64), EtcdError> {
        self.store_job(Defragment, "defragmentation").await
    }

    /// Runs a whole-store job on the apply actor. One runs at a time;
    /// others wait their turn here, not in the apply actor's mailbox. A
    /// storage failure is etcd's unmapped backend error, not "stopped".
    async fn store_job<M, T>(&self, job: M, what: &str) -> Result<T, EtcdError>
    where
        M: actix::Message<Result = Result<T, storage::StorageError>> + Send + 'static,
        T: Send + 'static,
        ApplyActor: actix::Handler<M>,
    {
        let _turn = self
            .store_jobs
            .acquire()
            .await
            .map_err(|_| EtcdError::Stopped)?;
        self.run_store_job(job, what).await
    }

    /// [`NodeHandle::store_job`] for a caller that holds the turn already.
    async fn run_store_job<M, T>(&self, job: M, what: &str) -> Result<T, EtcdError>
    where
        M: actix::Message<Result = Result<T, storage::StorageError>> + Send + 'static,
        T: Send + 'static,
        ApplyActor: actix::Handler<M>,
    {
        let request = self
            .apply
            .request(job)
            .map_err(|_| EtcdError::TooManyRequests)?;
        match request.await {
            Ok(Ok(done)) => Ok(done),
            Ok(Err(e)) => {
                tracing::error!(error = %e, "{what} failed");
                Err(EtcdError::Backend(e.to_string()))
            }
            Err(_) => Err(EtcdError::Stopped),
        }
    }

    /// A response header as etcd fills it: this member's ids, the current
    /// term and, when `with_revision`, the current store revision (Cluster
    /// responses carry none in etcd 3.4). Read from the board the raft and
    /// apply actors post on, as etcd reads its live values: no round trip.
    pub async fn header(
        &self,
        with_revision: bool,
    ) -> Result<proto::etcdserverpb::ResponseHeader, EtcdError> {
        Ok(proto::etcdserverpb::ResponseHeader {
            cluster_id: self.cluster_id,
            member_id: self.member_id,
            revision: if with_revision {
                self.board.revision()
            } else {
                0
            },
            raft_term: self.board.term(),
        })
    }

    /// Raft's and the store's view, for `Maintenance.Status`.
    pub async fn status(&self) -> Result<(RaftStatus, StoreStatus), EtcdError> {
        let raft = self
            .raft
            .request(GetStatus)
            .map_err(|_| EtcdError::TooManyRequests)?;
        let store = self
            .apply
            .request(GetStoreStatus)
            .map_err(|_| EtcdError::TooManyRequests)?;
        let raft = raft.await.map_err(|_| EtcdError::Stopped)?;
        let store = store.await.map_err(|_| EtcdError::Stopped)?;
        Ok((raft, store))
    }
}
