//! The apply actor's logic, without actix: applies committed entries to the
//! MVCC store and answers waiters and reads.
//!
//! 1. `apply` decodes every committed entry's request envelope and applies the
//!    whole batch in one MVCC write txn (`MvccStore::apply_batch`), which also
//!    records the applied index: an entry is applied exactly once across
//!    crashes.
//! 2. Each result goes to the waiter registered under the entry's request id
//!    (only on the member that proposed it), with the response header filled,
//!    before the MVCC commit: the entries are already durable in the raft
//!    log, so that fsync stays off the client's path. The store batches its
//!    commits (etcd's backend batch interval, `storage::mvcc::Batched`):
//!    [`ApplyCore::flush_if_due`] writes them, asked after every batch and on
//!    the actor's timer.
//! 3. Linearizable reads wait in `waiting_reads` until the applied index
//!    reaches their read index, then are served from a fresh read txn.
//! 4. Every `--snapshot-count` applied entries, an image of the store is
//!    written to the snapshot directory; the report tells the raft actor,
//!    which records it as the raft snapshot and compacts its log.
//! 5. A snapshot received from the leader replaces the store
//!    ([`ApplyCore::install`]): close, swap the file, reopen.
//! 6. Maintenance work on the store: [`ApplyCore::defragment`] (compacting
//!    rewrite) and [`ApplyCore::backup`] (an image for `snapshot save`).
//! 7. Each batch's events go to the watch hub ([`StoreFeed`]) before its
//!    clients are answered; the hub's catch-up reads come back here
//!    ([`ApplyCore::read_events`]), and a snapshot install is announced.
//! 8. After every batch the store's sizes are published ([`SizeGauges`]),
//!    for `/metrics`, `Status` and the facade's quota check; a failure to
//!    measure them is a storage failure (fatal), never a size of 0.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use proto::Message as _;
use proto::etcdserverpb::{HashKvResponse, ResponseHeader};
use proto::internal::{InternalRequest, SnapshotDescriptor, internal_request};
use raft::eraftpb::{ConfChange, EntryType};
use storage::auth::AuthStore;
use storage::auth::tokens::TokenChange;
use storage::mvcc::{Applied, ApplyResponse, Lease, MvccBackend, MvccStore};
use storage::snap::{SnapDir, install_image};
use storage::{EtcdError, StorageError};

use crate::messages::{
    ApplyReport, CommittedBatch, EventsRead, ExportView, LeaseChange, MemberTable, PendingRead,
    ReadBatch, ReadRequest, ReadResponse, StoreCheckpoint, StoreEvents, StoreStatus,
};

/// The ids every response header carries.
#[derive(Debug, Clone, Copy)]
pub struct HeaderInfo {
    pub cluster_id: u64,
    pub member_id: u64,
}

/// The store's size, published after every batch as etcd's gauges
/// (`etcd_mvcc_db_total_size_in_bytes`, `..._in_use_in_bytes`, and the
/// live key count `etcd_debugging_mvcc_keys_total`); the facade reads the
/// in-use one for its quota check.
#[derive(Clone)]
pub struct SizeGauges {
    pub total: prometheus::IntGauge,
    pub in_use: prometheus::IntGauge,
    pub keys: prometheus::IntGauge,
}

impl SizeGauges {
    /// Creates the gauges and registers them in `registry`.
    pub fn new(registry: &prometheus::Registry) -> prometheus::Result<Self> {
        let total = prometheus::IntGauge::new(
            "etcd_mvcc_db_total_size_in_bytes",
            "Total size of the underlying database physically allocated in bytes.",
        )?;
        let in_use = prometheus::IntGauge::new(
            "etcd_mvcc_db_total_size_in_use_in_bytes",
            "Total size of the underlying database logically in use in bytes.",
        )?;
        let keys =
            prometheus::IntGauge::new("etcd_debugging_mvcc_keys_total", "Total number of keys.")?;
        registry.register(Box::new(total.clone()))?;
        registry.register(Box::new(in_use.clone()))?;
        registry.register(Box::new(keys.clone()))?;
        Ok(Self {
            total,
            in_use,
            keys,
        })
    }
}

/// Reopens the store from its directory (after a snapshot install).
pub type Reopen<B> = Box<dyn Fn(&std::path::Path) -> Result<MvccStore<B>, StorageError> + Send>;

/// Where and how often the apply actor writes snapshot images.
pub struct SnapshotSettings<B: MvccBackend> {
    pub snap_dir: SnapDir,
    /// The store's own directory (holding `data.mdb`).
    pub store_dir: PathBuf,
    /// `--snapshot-count`: applied entries between two snapshot records
    /// (the raft log is compacted behind each).
    pub snapshot_count: u64,
    /// Index of the newest snapshot record, with an image or without
    /// (0 if none).
    pub last_snapshot: u64,
    pub reopen: Reopen<B>,
}

/// Completes the header of a write response: ids and term from the member,
/// the revision from the store (or the request's revision when the store
/// left it unset).
fn fill(response: &mut ApplyResponse, ids: HeaderInfo, term: u64, revision: i64) {
    let slot = match response {
        ApplyResponse::Put(r) => &mut r.header,
        ApplyResponse::DeleteRange(r) => &mut r.header,
        ApplyResponse::Txn(r) => &mut r.header,
        ApplyResponse::Compaction(r) => &mut r.header,
        ApplyResponse::LeaseGrant(r) => &mut r.header,
        ApplyResponse::LeaseRevoke(r) => &mut r.header,
        // etcd 3.4 sends AlarmResponse without a header; the Cluster
        // service builds its own (without a revision).
        // Auth responses get their headers in the facade.
        ApplyResponse::Alarm(_)
        | ApplyResponse::Members(_)
        | ApplyResponse::Auth(_)
        | ApplyResponse::Empty => return,
    };
    let stored = slot.as_ref().map(|h| h.revision).filter(|r| *r != 0);
    *slot = Some(ResponseHeader {
        cluster_id: ids.cluster_id,
        member_id: ids.member_id,
        revision: stored.unwrap_or(revision),
        raft_term: term,
    });
}

/// The apply actor's state.
pub struct ApplyCore<B: MvccBackend> {
    /// `None` only inside [`ApplyCore::install`], while the file is swapped.
    store: Option<MvccStore<B>>,
    header: HeaderInfo,
    term: u64,
    waiting_reads: BTreeMap<u64, Vec<PendingRead>>,
    snapshots: SnapshotSettings<B>,
    sizes: SizeGauges,
    feeds: Vec<Box<dyn StoreFeed>>,
    /// The cancel flags of the snapshot exports handed out (see
    /// [`ApplyCore::open_export`]).
    exports: Vec<std::sync::Weak<std::sync::atomic::AtomicBool>>,
    /// The snapshot image being written on its own thread.
    image_job: Option<std::sync::mpsc::Receiver<Result<SnapshotDescriptor, StorageError>>>,
    /// An image finished while the store was being replaced, for the next
    /// report.
    ready_image: Option<SnapshotDescriptor>,
    /// Index of the newest image written or installed here (0: none since
    /// start).
    last_image: u64,
    /// The chaos API's switches (the planted lose-writes bug).
    faults: std::sync::Arc<crate::chaos::Faults>,
}

/// Where the store's changes go (the watch hub, the lessor), told before
/// the clients of a batch are answered. It must not block: it is called on
/// the apply thread, inside the batch. A feed takes what it needs; the
/// rest defaults to nothing.
pub trait StoreFeed: Send {
    /// One applied batch: the store moved from `update.from` to `update.to`.
    /// The one feed that forwards the events (the watch hub) takes them out
    /// of `update`, so they are not copied.
    fn events(&mut self, _update: &mut StoreEvents) {}
    /// The leases one applied batch granted, revoked or checkpointed.
    fn leases(&mut self, _changes: &[LeaseChange]) {}
    /// The store was replaced by a snapshot image at `revision`, holding
    /// `leases`.
    fn replaced(&mut self, _revision: i64, _leases: &[(i64, Lease)]) {}
    /// The auth store after a batch with auth requests (or a snapshot
    /// install), and what the batch did to the simple tokens.
    fn auth(&mut self, _auth: &AuthStore, _tokens: &[TokenChange]) {}
}

/// What a batch did to the simple tokens, read from its auth requests and
/// results.
fn token_changes(
    requests: &HashMap<u64, &InternalRequest>,
    applied: &[Applied],
) -> Vec<TokenChange> {
    use proto::internal::internal_request::Request as Internal;
    use storage::auth::AuthReply;
    let mut changes = Vec::new();
    for a in applied {
        let Some(request) = requests.get(&a.index).and_then(|r| r.request.as_ref()) else {
            continue;
        };
        match (request, &a.result) {
            (
                _,
                Ok(ApplyResponse::Auth(AuthReply::Authenticated {
                    username, token, ..
                })),
            ) if !token.is_empty() => {
                changes.push(TokenChange::Assign {
                    token: token.clone(),
                    user: username.clone(),
                });
            }
            (Internal::AuthUserDelete(u), Ok(_)) => {
                changes.push(TokenChange::InvalidateUser(u.name.clone()));
            }
            (Internal::AuthUserChangePassword(u), Ok(_)) => {
                changes.push(TokenChange::InvalidateUser(u.name.clone()));
            }
            (Internal::AuthDisable(_), Ok(_)) => changes.push(TokenChange::Clear),
            _ => {}
        }
    }
    changes
}

/// Whether a request is one of the auth requests (users, roles, enable,
/// authenticate).
fn is_auth(request: &InternalRequest) -> bool {
    use proto::internal::internal_request::Request as R;
    matches!(
        request.request,
        Some(
            R::AuthEnable(_)
                | R::AuthDisable(_)
                | R::Authenticate(_)
                | R::AuthUserAdd(_)
                | R::AuthUserDelete(_)
                | R::AuthUserChangePassword(_)
                | R::AuthUserGrantRole(_)
                | R::AuthUserRevokeRole(_)
                | R::AuthRoleAdd(_)
                | R::AuthRoleDelete(_)
                | R::AuthRoleGrantPermission(_)
                | R::AuthRoleRevokePermission(_)
        )
    )
}

/// What a batch did to the leases, read from its requests and results.
fn lease_changes(
    requests: &HashMap<u64, &InternalRequest>,
    applied: &[Applied],
) -> Vec<LeaseChange> {
    use proto::internal::internal_request::Request as Internal;
    let mut changes = Vec::new();
    for a in applied {
        let Some(request) = requests.get(&a.index).and_then(|r| r.request.as_ref()) else {
            continue;
        };
        match (request, &a.result) {
            (_, Ok(ApplyResponse::LeaseGrant(g))) => changes.push(LeaseChange::Granted {
                id: g.id,
                ttl: g.ttl,
            }),
            (Internal::LeaseRevoke(r), Ok(_)) => changes.push(LeaseChange::Revoked { id: r.id }),
            (Internal::LeaseCheckpoint(c), Ok(_)) => {
                changes.extend(c.checkpoints.iter().map(|c| LeaseChange::Checkpointed {
                    id: c.id,
                    remaining_ttl: c.remaining_ttl,
                }));
            }
            (Internal::LeaseUpkeep(u), Ok(_)) => {
                changes.extend(u.checkpoints.iter().map(|c| LeaseChange::Checkpointed {
                    id: c.id,
                    remaining_ttl: c.remaining_ttl,
                }));
                if u.expire != 0 {
                    changes.push(LeaseChange::Revoked { id: u.expire });
                }
            }
            _ => {}
        }
    }
    changes
}

impl<B: MvccBackend> ApplyCore<B> {
    pub fn new(
        store: MvccStore<B>,
        header: HeaderInfo,
        snapshots: SnapshotSettings<B>,
        sizes: SizeGauges,
        feeds: Vec<Box<dyn StoreFeed>>,
    ) -> Result<Self, StorageError> {
        let core = Self {
            store: Some(store),
            header,
            term: 0,
            waiting_reads: BTreeMap::new(),
            snapshots,
            sizes,
            feeds,
            exports: Vec::new(),
            image_job: None,
            ready_image: None,
            last_image: 0,
            faults: std::sync::Arc::default(),
        };
        core.publish_size()?;
        Ok(core)
    }

    /// The planted bug (chaos `PlantBug lose-writes`): a put taken by it is
    /// applied to a key no client reads (`\0oxcd-chaos-lost/<key>`), on this
    /// member only, and answered as usual. Only for proving that the chaos
    /// checker catches a lost acknowledged write.
    fn plant_lost_write(&self, mut request: InternalRequest) -> InternalRequest {
        if let Some(internal_request::Request::Put(put)) = &mut request.request
            && self.faults.take_lost_write()
        {
            tracing::error!(key = %String::from_utf8_lossy(&put.key), "chaos: planted bug loses this put");
            let mut key = b"\0oxcd-chaos-lost/".to_vec();
            key.extend_from_slice(&put.key);
            put.key = key;
        }
        request
    }

    /// Reads the chaos API's switches from `faults`.
    pub fn with_faults(mut self, faults: std::sync::Arc<crate::chaos::Faults>) -> Self {
        self.faults = faults;
        self
    }

    /// The applied index and raft's configuration as of it (for a
    /// restarting raft actor).
    pub fn checkpoint(&self) -> StoreCheckpoint {
        let (voters, learners) = self.store().voters_and_learners();
        StoreCheckpoint {
            applied: self.store().applied_index(),
            voters,
            learners,
        }
    }

    /// Restart after a kill: fails the reads waiting here (their clients
    /// retry), writes pending commits, then closes the store and opens it
    /// again from disk, which rebuilds the key index and every cache.
    pub fn reload(&mut self) -> Result<(), StorageError> {
        self.shutdown();
        self.flush()?;
        self.cancel_exports();
        self.ready_image = self.settle_image();
        if let Some(store) = self.store.take() {
            store.close();
        }
        let store = (self.snapshots.reopen)(&self.snapshots.store_dir)?;
        tracing::info!(
            applied = store.applied_index(),
            revision = store.current_revision(),
            "store reopened from disk"
        );
        self.store = Some(store);
        self.publish_size()
    }

    fn store(&self) -> &MvccStore<B> {
        self.store
            .as_ref()
            .expect("the store is only absent during a snapshot install")
    }

    fn store_mut(&mut self) -> &mut MvccStore<B> {
        self.store
            .as_mut()
            .expect("the store is only absent during a snapshot install")
    }

    pub fn status(&self) -> StoreStatus {
        StoreStatus {
            revision: self.store().current_revision(),
            compact_revision: self.store().compact_revision(),
            applied_index: self.store().applied_index(),
            db_size: self.sizes.total.get(),
            db_size_in_use: self.sizes.in_use.get(),
            alarms: self.store().alarms(),
        }
    }

    fn publish_size(&self) -> Result<(), StorageError> {
        self.sizes.total.set(self.store().db_size()?);
        self.sizes.in_use.set(self.store().db_size_in_use()?);
        self.sizes.keys.set(self.store().key_count() as i64);
        Ok(())
    }

    /// Applies one committed batch; reports the applied index and any new
    /// snapshot image. An `Err` is a storage failure and fatal to the member.
    pub fn apply(&mut self, batch: CommittedBatch) -> Result<ApplyReport, StorageError> {
        self.term = self.term.max(batch.term);
        // Batches arrive in log order; a gap would silently skip committed
        // entries on this member only. Refuse loudly instead.
        let applied = self.store().applied_index();
        if let Some(first) = batch.entries.first().map(|e| e.get_index())
            && first > applied + 1
        {
            return Err(StorageError::Corrupt(format!(
                "committed entries start at {first} but only {applied} are applied"
            )));
        }
        // Membership changes travel as raft ConfChanges carrying their
        // request in the context (see `MemberChange`).
        let mut conf_changes: HashMap<u64, ConfChange> = HashMap::new();
        let requests: Vec<(u64, Option<InternalRequest>)> = batch
            .entries
            .iter()
            .map(|e| {
                let decoded = match e.get_entry_type() {
                    EntryType::EntryNormal if !e.get_data().is_empty() => {
                        Some(InternalRequest::decode(e.get_data()))
                    }
                    EntryType::EntryConfChange => {
                        let mut cc = ConfChange::default();
                        match protobuf::Message::merge_from_bytes(&mut cc, e.get_data()) {
                            Ok(()) => {
                                let request = InternalRequest::decode(cc.get_context());
                                conf_changes.insert(e.get_index(), cc);
                                Some(request)
                            }
                            Err(err) => {
                                tracing::error!(index = e.get_index(), error = %err, "undecodable conf change skipped");
                                None
                            }
                        }
                    }
                    _ => None,
                };
                let request = decoded
                    .map(|r| r.map(|r| self.plant_lost_write(r)))
                    .and_then(|r| match r {
                    // Upkeep from a leader that was deposed before its entry
                    // committed: a no-op on every member alike.
                    Ok(InternalRequest {
                        request: Some(internal_request::Request::LeaseUpkeep(u)),
                        ..
                    }) if u.term != e.get_term() => None,
                    Ok(r) => Some(r),
                    Err(err) => {
                        // Every member decodes the same bytes the same way,
                        // so skipping keeps members identical; it can only
                        // come from a bug, so say so loudly.
                        tracing::error!(index = e.get_index(), error = %err, "undecodable entry skipped");
                        None
                    }
                });
                (e.get_index(), request)
            })
            .collect();
        let refs: Vec<(u64, Option<&InternalRequest>)> =
            requests.iter().map(|(i, r)| (*i, r.as_ref())).collect();
        let mut waiters: HashMap<u64, _> = batch.waiters.into_iter().collect();
        let (header, term) = (self.header, self.term);
        let feeds = &mut self.feeds;
        // The lease requests of the batch, by raft index (most batches have
        // none: then nothing is built).
        let leases_by_index: HashMap<u64, &InternalRequest> = requests
            .iter()
            .filter_map(|(i, r)| r.as_ref().map(|r| (*i, r)))
            .filter(|(_, r)| {
                use internal_request::Request as R;
                matches!(
                    r.request,
                    Some(
                        R::LeaseGrant(_)
                            | R::LeaseRevoke(_)
                            | R::LeaseCheckpoint(_)
                            | R::LeaseUpkeep(_)
                    )
                )
            })
            .collect();
        let auth_by_index: HashMap<u64, &InternalRequest> = requests
            .iter()
            .filter_map(|(i, r)| r.as_ref().map(|r| (*i, r)))
            .filter(|(_, r)| is_auth(r))
            .collect();
        let store = self
            .store
            .as_mut()
            .expect("the store is only absent during a snapshot install");
        let from = store.current_revision();
        let mut accepted: Vec<(u64, ConfChange)> = Vec::new();
        let mut changed_members = None;
        // Answers leave before the MVCC commit: the entries are durable in
        // the raft log, so the commit's fsync stays off the client's path
        // (see `MvccStore::apply_batch_with`). The watch hub hears of the
        // batch first, so a client that sees its write acknowledged and then
        // creates a watch gets a `created` revision at or past it.
        store.apply_batch_with(&refs, |mut applied, auth| {
            let to = applied.last().map_or(from, |a| a.revision);
            let events = applied
                .iter_mut()
                .flat_map(|a| std::mem::take(&mut a.events))
                .collect();
            let mut update = StoreEvents {
                from,
                to,
                term,
                events,
            };
            let changes = if leases_by_index.is_empty() {
                Vec::new()
            } else {
                lease_changes(&leases_by_index, &applied)
            };
            let tokens = if auth_by_index.is_empty() {
                Vec::new()
            } else {
                token_changes(&auth_by_index, &applied)
            };
            for feed in feeds.iter_mut() {
                feed.events(&mut update);
                if !changes.is_empty() {
                    feed.leases(&changes);
                }
                // Before the answers: a client that sees auth enabled, or
                // gets a token, finds it on this member at once.
                if !auth_by_index.is_empty() {
                    feed.auth(auth, &tokens);
                }
            }
            for result in applied {
                if let Ok(ApplyResponse::Members(members)) = &result.result {
                    if let Some(cc) = conf_changes.remove(&result.index) {
                        accepted.push((result.index, cc));
                    }
                    changed_members = Some(members.clone());
                }
                if let Some(reply) = waiters.remove(&result.id) {
                    let revision = result.revision;
                    let answer = result.result.map(|mut r| {
                        fill(&mut r, header, term, revision);
                        r
                    });
                    let _ = reply.send(answer);
                }
            }
        })?;
        // A waiter whose entry is not in the batch cannot be answered from
        // it (its entry was replaced by a newer leader): say so.
        for (_, reply) in waiters {
            let _ = reply.send(Err(EtcdError::LeaderChanged));
        }
        self.serve_ready_reads();
        self.publish_size()?;
        let applied = self.store().applied_index();
        let snapshot = self.maybe_snapshot(applied)?;
        let members = changed_members.map(|members| MemberTable {
            members,
            removed: self.store().removed_members(),
        });
        Ok(ApplyReport {
            applied,
            conf_changes: accepted,
            members,
            snapshot,
        })
    }

    /// The member table.
    pub fn member_table(&self) -> MemberTable {
        MemberTable {
            members: self.store().members(),
            removed: self.store().removed_members(),
        }
    }

    /// Writes an image of the store now (raft needs one for a member added
    /// since the last image), unless one at the applied index exists.
    pub fn take_image(&mut self) -> Result<ApplyReport, StorageError> {
        let applied = self.store().applied_index();
        let mut snapshot = self.finished_image()?;
        if snapshot.is_none() && self.image_job.is_none() && applied > self.last_image {
            self.start_image(applied)?;
            // A small store is written before the caller asks again.
            snapshot = self.wait_image(std::time::Duration::from_millis(100))?;
        }
        Ok(ApplyReport {
            applied,
            snapshot,
            ..Default::default()
        })
    }

    /// A finished image if one is ready; else, when `--snapshot-count`
    /// entries were applied since the last snapshot record, a record
    /// without an image at `applied`, once the store is durable there
    /// (etcd's way: the raft log is compacted behind it, and an image is
    /// written only when a member needs one, [`ApplyCore::take_image`]).
    /// The record's descriptor has no size and no hash; raft stores it
    /// without data, which its log store never sends.
    fn maybe_snapshot(&mut self, applied: u64) -> Result<Option<SnapshotDescriptor>, StorageError> {
        if let Some(d) = self.finished_image()? {
            return Ok(Some(d));
        }
        let s = &self.snapshots;
        if self.image_job.is_none() && applied >= s.last_snapshot + s.snapshot_count.max(1) {
            // The log may only be compacted up to what the store holds on
            // disk: after a crash it replays from its durable index.
            self.flush()?;
            self.snapshots.last_snapshot = applied;
            return Ok(Some(SnapshotDescriptor {
                index: applied,
                size: 0,
                sha256: Vec::new(),
            }));
        }
        Ok(None)
    }

    /// Starts writing the image of the store at exactly `applied` on a
    /// thread of its own, from a detached read view (opened here, after the
    /// pending commits are written), so applying goes on meanwhile; its
    /// descriptor comes with a later report ([`ApplyCore::finished_image`]).
    fn start_image(&mut self, applied: u64) -> Result<(), StorageError> {
        let store = self.store.as_mut().expect("store present outside install");
        let map_bytes = 2 * store.db_size()?.max(0) as usize + (64 << 20);
        let reader = store.detached_reader()?;
        let snap_dir = self.snapshots.snap_dir.clone();
        let (done, result) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("oxcd-image".into())
            .spawn(move || {
                let made = snap_dir
                    .create(applied, |path| {
                        storage::mvcc::write_image(&*reader, path, map_bytes)
                    })
                    .and_then(|d| snap_dir.prune(applied).map(|()| d));
                drop(reader);
                let _ = done.send(made);
            })?;
        self.snapshots.last_snapshot = applied;
        self.image_job = Some(result);
        Ok(())
    }

    /// The image being written, if it is finished (an `Err` is a storage
    /// failure, fatal as any other).
    fn finished_image(&mut self) -> Result<Option<SnapshotDescriptor>, StorageError> {
        if let Some(d) = self.ready_image.take() {
            return Ok(Some(d));
        }
        self.wait_image(std::time::Duration::ZERO)
    }

    /// Waits up to `within` for the image being written.
    fn wait_image(
        &mut self,
        within: std::time::Duration,
    ) -> Result<Option<SnapshotDescriptor>, StorageError> {
        let Some(job) = &self.image_job else {
            return Ok(None);
        };
        let made = match job.recv_timeout(within) {
            Ok(made) => made,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => return Ok(None),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Err(StorageError::Corrupt(
                "the snapshot image writer stopped".into(),
            )),
        };
        self.image_job = None;
        let descriptor = made?;
        self.last_image = self.last_image.max(descriptor.index);
        tracing::info!(
            index = descriptor.index,
            size = descriptor.size,
            "saved snapshot image"
        );
        Ok(Some(descriptor))
    }

    /// Waits for the image being written, if any (before the store is
    /// closed: closing waits for its read view anyway).
    fn settle_image(&mut self) -> Option<SnapshotDescriptor> {
        match self.wait_image(std::time::Duration::from_secs(3600)) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "snapshot image abandoned");
                None
            }
        }
    }

    /// Replaces the store with the snapshot image `d` (received from the
    /// leader and verified); returns the applied index it brings.
    pub fn install(&mut self, d: &SnapshotDescriptor) -> Result<u64, StorageError> {
        if d.index <= self.store().applied_index() {
            return Ok(self.store().applied_index());
        }
        let image = self.snapshots.snap_dir.path(d.index);
        if !self.snapshots.snap_dir.has(d) {
            return Err(StorageError::Corrupt(format!(
                "snapshot image {} is missing or incomplete",
                image.display()
            )));
        }
        self.cancel_exports();
        // This member's own image is superseded by the leader's.
        let _ = self.settle_image();
        if let Some(store) = self.store.take() {
            store.close();
        }
        if let Err(e) = install_image(&self.snapshots.store_dir, &image) {
            crate::fatal(&format!("snapshot install failed: {e}"));
        }
        let store = match (self.snapshots.reopen)(&self.snapshots.store_dir) {
            Ok(store) => store,
            Err(e) => crate::fatal(&format!(
                "store cannot be reopened after a snapshot install: {e}"
            )),
        };
        let applied = store.applied_index();
        tracing::info!(
            index = d.index,
            applied,
            revision = store.current_revision(),
            "installed snapshot"
        );
        let leases = store.leases();
        for feed in &mut self.feeds {
            feed.replaced(store.current_revision(), &leases);
            feed.auth(store.auth(), &[]);
        }
        self.store = Some(store);
        self.publish_size()?;
        self.snapshots.last_snapshot = self.snapshots.last_snapshot.max(d.index);
        self.last_image = self.last_image.max(d.index);
        self.serve_ready_reads();
        Ok(applied)
    }

    /// The events of revisions `from..=to` for the watch hub's catch-up,
    /// within about `max_bytes`; a compacted `from` answers with no events
    /// and the compacted revision.
    pub fn read_events(
        &self,
        from: i64,
        to: i64,
        max_bytes: usize,
    ) -> Result<EventsRead, EtcdError> {
        let store = self.store();
        let compact_revision = store.compact_revision();
        match store.events_window(from, to, max_bytes, true) {
            Ok((events, last)) => Ok(EventsRead {
                events,
                last,
                compact_revision,
            }),
            Err(EtcdError::Compacted) => Ok(EventsRead {
                events: Vec::new(),
                last: from - 1,
                compact_revision,
            }),
            Err(e) => Err(e),
        }
    }

    /// A detached read view for `Maintenance.Snapshot`'s export on another
    /// thread; its cancel flag is raised before the store is replaced.
    pub fn open_export(&mut self) -> Result<ExportView, StorageError> {
        let reader = self.store_mut().detached_reader()?;
        let cancel = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        self.exports.retain(|e| e.strong_count() > 0);
        self.exports.push(std::sync::Arc::downgrade(&cancel));
        Ok(ExportView { reader, cancel })
    }

    /// Tells every export still running to stop: the store is about to be
    /// closed, which waits until their views are dropped.
    fn cancel_exports(&mut self) {
        for export in self.exports.drain(..) {
            if let Some(flag) = export.upgrade() {
                tracing::warn!("cancelling a snapshot export: the store is being replaced");
                flag.store(true, std::sync::atomic::Ordering::Release);
            }
        }
    }

    /// Writes the store's pending commits if its batch interval or limits
    /// say so (see `storage::mvcc::Batched`); returns whether it wrote.
    pub fn flush_if_due(&mut self) -> Result<bool, StorageError> {
        let store = self.store_mut();
        if !store.flush_due() {
            return Ok(false);
        }
        store.flush()?;
        Ok(true)
    }

    /// Writes the store's pending commits now (shutdown).
    pub fn flush(&mut self) -> Result<(), StorageError> {
        match self.store.as_mut() {
            Some(store) => store.flush(),
            None => Ok(()),
        }
    }

    /// etcd's Defragment: rewrites the store compactly (an LMDB compacting
    /// copy beside the live file, fsynced, renamed over it) so the file
    /// gives its free pages back. Member-local and blocking, as in etcd.
    /// Returns the file size before and after.
    pub fn defragment(&mut self) -> Result<(i64, i64), StorageError> {
        let before = self.store().db_size()?;
        let image = self.snapshots.store_dir.join("data.mdb.defrag");
        let _ = std::fs::remove_file(&image);
        self.store_mut().copy_to_file(&image)?;
        // Exports hold the whole-store turn, so none runs now (the node
        // serializes them with defragmentation).
        self.ready_image = self.settle_image();
        if let Some(store) = self.store.take() {
            store.close();
        }
        let installed = install_image(&self.snapshots.store_dir, &image);
        let _ = std::fs::remove_file(&image);
        // Reopen whatever is in place (the old file if the swap failed), so
        // a failed defragmentation leaves a working member; a store that
        // cannot be reopened stops the member.
        match (self.snapshots.reopen)(&self.snapshots.store_dir) {
            Ok(store) => self.store = Some(store),
            Err(e) => crate::fatal(&format!(
                "store cannot be reopened after defragmentation: {e}"
            )),
        }
        installed?;
        self.publish_size()?;
        let after = self.store().db_size()?;
        tracing::info!(before, after, "defragmented the store");
        Ok((before, after))
    }

    /// A read index arrived for a batch of reads.
    pub fn read_ready(&mut self, batch: ReadBatch) {
        self.term = self.term.max(batch.term);
        self.waiting_reads
            .entry(batch.index)
            .or_default()
            .extend(batch.reads);
        self.serve_ready_reads();
    }

    /// Serves a read at once (serializable reads).
    pub fn serve(&self, read: PendingRead) {
        let answer = self.read_as(&read.request, &read.auth);
        let _ = read.reply.send(answer);
    }

    /// A read as `who` makes it, checked as etcd's `doSerialize`: the
    /// permissions first, then the read, then whether the token's auth
    /// revision is still current.
    fn read_as(
        &self,
        request: &ReadRequest,
        who: &storage::auth::AuthInfo,
    ) -> Result<ReadResponse, EtcdError> {
        let auth = self.store().auth();
        match request {
            ReadRequest::Range(r) => auth.check_range(who, &r.key, &r.range_end)?,
            ReadRequest::Txn(t) => storage::mvcc::check_txn(auth, who, t)?,
            _ => return self.read(request),
        }
        let answer = self.read(request);
        if who.revision != 0 && who.revision != auth.revision() {
            return Err(storage::auth::AuthError::AuthOldRevision.into());
        }
        answer
    }

    fn read(&self, request: &ReadRequest) -> Result<ReadResponse, EtcdError> {
        match request {
            ReadRequest::Range(r) => self.store().range(r).map(|mut resp| {
                resp.header = Some(self.header(resp.header.as_ref()));
                ReadResponse::Range(resp)
            }),
            ReadRequest::Txn(t) => self.store().txn_read_only(t).map(|mut resp| {
                resp.header = Some(self.header(resp.header.as_ref()));
                ReadResponse::Txn(resp)
            }),
            ReadRequest::MemberList => Ok(ReadResponse::MemberList(self.store().members())),
            ReadRequest::Leases => Ok(ReadResponse::Leases(
                self.store()
                    .leases()
                    .into_iter()
                    .map(|(id, _)| id)
                    .collect(),
                self.header(None),
            )),
            ReadRequest::Lease { id } => Ok(ReadResponse::Lease(
                self.store()
                    .lease(*id)
                    .map(|lease| (lease.ttl, self.store().lease_keys(*id))),
                self.header(None),
            )),
            ReadRequest::Hash => match self.store().hash() {
                Ok(hash) => Ok(ReadResponse::Hash(proto::etcdserverpb::HashResponse {
                    header: Some(self.header(None)),
                    hash,
                })),
                Err(e) => {
                    tracing::error!(error = %e, "hashing the store failed");
                    Err(EtcdError::Corrupt)
                }
            },
            ReadRequest::HashKv(h) => {
                self.store()
                    .hash_kv(h.revision)
                    .map(|(hash, revision, compact_revision)| {
                        let mut header = self.header(None);
                        header.revision = revision;
                        ReadResponse::HashKv(HashKvResponse {
                            header: Some(header),
                            hash,
                            compact_revision,
                        })
                    })
            }
        }
    }

    fn serve_ready_reads(&mut self) {
        let applied = self.store().applied_index();
        while let Some(entry) = self.waiting_reads.first_entry() {
            if *entry.key() > applied {
                break;
            }
            for read in entry.remove() {
                self.serve(read);
            }
        }
    }

    fn header(&self, from_store: Option<&ResponseHeader>) -> ResponseHeader {
        let revision = from_store.map(|h| h.revision).filter(|r| *r != 0);
        ResponseHeader {
            cluster_id: self.header.cluster_id,
            member_id: self.header.member_id,
            revision: revision.unwrap_or_else(|| self.store().current_revision()),
            raft_term: self.term,
        }
    }

    /// Fails every waiting read (shutdown).
    pub fn shutdown(&mut self) {
        for (_, reads) in std::mem::take(&mut self.waiting_reads) {
            for r in reads {
                let _ = r.reply.send(Err(EtcdError::Stopped));
            }
        }
    }
}
