//! Builds one member: the only place that creates the actor graph.
//!
//! 1. Derive member and cluster ids from `--initial-cluster` and the token
//!    (etcd's derivation), or reuse the ones recorded in the data dir.
//! 2. Open the raft log env (`member/raft`) and the MVCC env (`member/kv`);
//!    bootstrap a fresh log with the founding voters.
//! 3. Raise the stored commit index to the MVCC applied index (every applied
//!    entry was committed; the commit index alone is not fsynced on change).
//! 4. Start each actor on its own arbiter thread: log writer, apply, raft
//!    (the raft actor gets the other two's mailboxes).
//! 5. Hand the facade a [`NodeHandle`] with the raft and apply mailboxes.
//!
//! Shutdown: there is no ordered one. The `oxcd` binary exits the process
//! (`process::exit`) on SIGINT or SIGTERM, or when a server task ends, and
//! actors are not stopped one by one. Nothing is lost by that: a write is
//! answered only after its entry is fsynced in the raft log, and at the next
//! start the MVCC store replays whatever it had not committed from that log
//! (step 3). Requests in flight at exit get no answer; their connections
//! close, and clients retry.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actors::apply::core::{ApplyCore, HeaderInfo, SizeGauges, SnapshotSettings};
use actors::apply::{APPLY_MAILBOX, ApplyActor};
use actors::board::{Board, BoardFeed};
use actors::chaos::{ActorKind, Faults, Killers};
use actors::lease::core::LessorConfig;
use actors::lease::{ConnectRaft as ConnectLessorRaft, LESSOR_MAILBOX, LessorActor};
use actors::log_writer::{LOG_WRITER_MAILBOX, LogWriter};
use actors::mailbox::{actor_thread, start_actor, start_on};
use actors::messages::StoreCheckpoint;
use actors::raft::core::{CoreConfig, RaftCore};
use actors::raft::guard::{PeerGuard, RefusedMessages};
use actors::raft::ids::IdGen;
use actors::raft::logger::raft_logger;
use actors::raft::{RAFT_MAILBOX, RaftActor};
use actors::supervisor::{OnPanic, Supervision};
use actors::transport::core::{ClientTls, TransportConfig, TransportCore};
use actors::transport::metrics::TransportMetrics;
use actors::transport::{ConnectRaft, TransportActor};
use actors::watch::core::HeaderIds;
use actors::watch::{ConnectStore, WATCH_MAILBOX, WatchFeed, WatchHub, WatchMetrics};
use actors::{ActorMetrics, EtcdMetrics, Mailbox};
use raft::eraftpb::ConfState;
use storage::mvcc::{LmdbOptions, MvccStore};
use storage::raft_log::{FOUNDING_INDEX, LmdbLogStore, LogStore, LogWrite};
use storage::snap::{SnapDir, install_image};

use crate::config::{ClusterState, Config};
use crate::grpc::max_grpc_message;
use crate::handle::{Limits, Mailboxes, NodeHandle, WatchHandle};
pub use crate::membership::Identity;
use crate::membership::{check_advertised, founding_identity, join_existing};

/// LMDB map size of the raft log env (address space, not disk).
const RAFT_MAP_BYTES: usize = 8 << 30;

/// Errors that stop a member from starting.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("configuration: {0}")]
    Config(String),
    #[error("storage: {0}")]
    Storage(#[from] storage::StorageError),
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
    #[error("data dir: {0}")]
    Io(#[from] std::io::Error),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// A started member: the handle for the facade, what the peer server needs,
/// and the metrics registry.
pub struct Member {
    pub handle: NodeHandle,
    pub registry: prometheus::Registry,
    pub identity: Identity,
    /// Where the peer server steps inbound raft messages.
    pub raft: Mailbox<RaftActor>,
    /// Where received snapshot images go.
    pub snap_dir: SnapDir,
    /// Counts peer messages refused before reaching raft.
    pub refused: RefusedMessages,
    /// The member table for the peer service's `Members`.
    pub board: std::sync::Arc<Board>,
    /// The peer transport's metrics (the peer service counts received
    /// bytes in them).
    pub transport_metrics: TransportMetrics,
    /// The chaos API's switches, read by the actors (and by the peer
    /// service for inbound link faults). All off unless the chaos API sets
    /// them; it is served only with `--enable-chaos`.
    pub faults: std::sync::Arc<Faults>,
    /// Where the chaos API's kills reach each actor.
    pub killers: Killers,
}

/// etcd's progress-notify interval when the flag is 0 or absent.
const DEFAULT_PROGRESS_NOTIFY: Duration = Duration::from_secs(600);

fn identity_path(dir: &Path) -> PathBuf {
    dir.join("identity.json")
}

/// Where a member keeps its state under `--data-dir`: `member/` holds
/// `raft/` (raft log env), `kv/` (MVCC env), `snap/` (images) and
/// `identity.json`.
pub fn member_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("member")
}

/// The MVCC store's directory under a member directory.
pub fn kv_dir(member_dir: &Path) -> PathBuf {
    member_dir.join("kv")
}

/// Reads the recorded identity, or derives and records it (written to a
/// temp file, fsynced, then renamed, so a crash leaves the old or the new).
pub fn load_or_create_identity(dir: &Path, derived: Identity) -> Result<Identity, BootstrapError> {
    let path = identity_path(dir);
    if let Ok(bytes) = std::fs::read(&path) {
        return serde_json::from_slice(&bytes)
            .map_err(|e| BootstrapError::Config(format!("{}: {e}", path.display())));
    }
    let tmp = dir.join("identity.json.tmp");
    let body =
        serde_json::to_vec_pretty(&derived).map_err(|e| BootstrapError::Config(e.to_string()))?;
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&body)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, &path)?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(derived)
}

/// Starts the member's actors. Must run inside an actix `System`.
pub async fn start(config: &Config) -> Result<Member, BootstrapError> {
    config.validate().map_err(BootstrapError::Config)?;
    let peer_client_tls = config
        .peer_tls()
        .map(|files| files.client_config())
        .transpose()
        .map_err(BootstrapError::Config)?;
    let member_dir = member_dir(&config.data_dir());
    let fresh = !identity_path(&member_dir).exists();
    // The cluster this member starts in: the founding members of
    // `--initial-cluster` (a new cluster, or a restart), or, at the first
    // start of a member joining an existing cluster, the members the
    // cluster reports (which must list this one: it was added first).
    let (derived, members) = if fresh && config.initial_cluster_state == ClusterState::Existing {
        join_existing(config, peer_client_tls.clone())
            .await
            .map_err(BootstrapError::Config)?
    } else {
        let (derived, founders) = founding_identity(
            &config.initial_cluster,
            &config.initial_cluster_token,
            &config.name,
        )
        .map_err(BootstrapError::Config)?;
        if fresh {
            // First start: this member's entry must be what it advertises
            // (etcd checks before it has a WAL).
            let me = founders
                .iter()
                .find(|m| m.id == derived.member_id)
                .ok_or_else(|| {
                    BootstrapError::Config("local member not in --initial-cluster".into())
                })?;
            check_advertised(me, &config.initial_advertise_peer_urls)
                .map_err(BootstrapError::Config)?;
        }
        let founders = founders
            .iter()
            .map(|m| proto::etcdserverpb::Member {
                id: m.id,
                name: m.name.clone(),
                peer_ur_ls: m.peer_urls.clone(),
                ..Default::default()
            })
            .collect();
        (derived, founders)
    };
    if fresh {
        import_etcd_backend(&member_dir, mvcc_map_bytes(config))?;
    }
    std::fs::create_dir_all(member_dir.join("raft"))?;
    std::fs::create_dir_all(member_dir.join("kv"))?;
    let identity = load_or_create_identity(&member_dir, derived)?;

    let log = LmdbLogStore::open(&member_dir.join("raft"), RAFT_MAP_BYTES)?;
    let snap_dir = SnapDir::open(&member_dir.join("snap"))?;
    snap_dir.clear_leftovers()?;
    let kv_dir = kv_dir(&member_dir);
    // NO_META_SYNC: a power loss may undo the last MVCC commits (never
    // corrupt them); the applied index goes back with them and raft replays
    // those entries from its fsynced log (or the snapshot image).
    let kv_options = LmdbOptions {
        no_meta_sync: true,
        ..LmdbOptions::new(mvcc_map_bytes(config))
    };
    let batch_limits = config.backend_batch_limits();
    let mut kv = MvccStore::open_batched(&kv_dir, &kv_options, batch_limits)?;
    if log.is_empty() {
        if identity.joined {
            // No configuration yet: the leader's snapshot brings it.
            log.initialize(&ConfState::default())?;
        } else {
            // The member table first (written at once), then the log: a
            // crash in between leaves a table and an empty log, and the next
            // start founds the log again.
            kv.init_members(&members, FOUNDING_INDEX)?;
            kv.flush()?;
            let voters = members.iter().map(|m| m.id).collect();
            log.found(&ConfState {
                voters,
                ..Default::default()
            })?;
        }
    }
    // A snapshot received from the leader is durable in the raft log before
    // its image replaces the store; a crash in between leaves the store
    // behind the log's snapshot. Finish the install now.
    let log_snapshot = log.snapshot_metadata().map_or(0, |m| m.index);
    if log_snapshot > kv.applied_index() {
        tracing::info!(
            index = log_snapshot,
            "finishing an interrupted snapshot install"
        );
        kv.close();
        install_image(&kv_dir, &snap_dir.path(log_snapshot))?;
        kv = MvccStore::open_batched(&kv_dir, &kv_options, batch_limits)?;
    }
    if kv.removed_members().contains(&identity.member_id) {
        actors::stop_removed();
    }
    let applied = kv.applied_index();
    // Peers: the member table, or (a joiner before its snapshot) the
    // members the cluster reported.
    let table = kv.members();
    let members = if table.is_empty() { members } else { table };
    tracing::info!(
        member = %format!("{:x}", identity.member_id),
        cluster = %format!("{:x}", identity.cluster_id),
        applied,
        revision = kv.current_revision(),
        "starting member"
    );
    // Term, leader and revision for response headers, posted by the raft
    // and apply actors.
    let authn = crate::auth::Authenticator::from_flags(&config.auth_token, config.bcrypt_cost)
        .map_err(|e| BootstrapError::Config(format!("--auth-token {}: {e}", config.auth_token)))?;
    let board = Board::new(log.hard_state().term, kv.current_revision());
    board.post_auth(kv.auth().clone());
    board.set_token_ttl(Duration::from_secs(config.auth_token_ttl));
    board.post_members(members.clone(), kv.removed_members());
    let board_for_peers = board.clone();

    let registry = prometheus::Registry::new();
    let metrics = match config.metrics {
        crate::config::MetricsLevel::Off => ActorMetrics::new(&registry)?.untimed(),
        _ => ActorMetrics::new(&registry)?,
    };
    let etcd_metrics = EtcdMetrics::new(&registry)?;
    // process_resident_memory_bytes and friends (etcdctl check datascale
    // reads it from /metrics).
    registry.register(Box::new(
        prometheus::process_collector::ProcessCollector::for_self(),
    ))?;

    let refused = RefusedMessages::new(&registry)?;

    let election_ticks = (config.election_timeout / config.heartbeat_interval).max(2) as usize;
    // etcd's request timeout: 5 s + 2 election timeouts.
    let request_timeout_ms = 5_000 + 2 * config.election_timeout;
    let recipe = RaftRecipe {
        log: log.clone(),
        config: raft::Config {
            id: identity.member_id,
            election_tick: election_ticks,
            heartbeat_tick: 1,
            max_size_per_msg: 1 << 20,
            max_inflight_msgs: 256,
            check_quorum: true,
            pre_vote: true,
            ..Default::default()
        },
        core: CoreConfig {
            id: identity.member_id,
            max_request_bytes: config.max_request_bytes,
            request_timeout_ticks: request_timeout_ms / config.heartbeat_interval,
            max_apply_lag: 5_000,
            read_retry_ticks: (500 / config.heartbeat_interval).max(1),
            // etcd keeps 5000 entries behind a snapshot; with a small
            // --snapshot-count keep half of it, so that a follower that
            // missed more than --snapshot-count entries needs the image.
            catch_up_entries: 5_000.min(config.snapshot_count / 2),
        },
        snap_dir: snap_dir.clone(),
        refused: refused.clone(),
    };
    let (voters, learners) = kv.voters_and_learners();
    let core = recipe.build(&StoreCheckpoint {
        applied,
        voters,
        learners,
    })?;
    let single_voter = log.conf_state().voters == vec![identity.member_id];

    let header = HeaderInfo {
        cluster_id: identity.cluster_id,
        member_id: identity.member_id,
    };
    let apply_probe = metrics.for_actor("apply");
    let snapshots = SnapshotSettings {
        snap_dir: snap_dir.clone(),
        store_dir: kv_dir.clone(),
        snapshot_count: config.snapshot_count,
        last_snapshot: log_snapshot,
        reopen: Box::new(move |dir| MvccStore::open_batched(dir, &kv_options, batch_limits)),
    };
    // The watch hub starts first: the apply actor feeds it; it learns where
    // to read history (the apply actor) once that one runs.
    let hub_probe = metrics.for_actor("watch");
    let watch_metrics = WatchMetrics::new(&registry)?;
    let faults = std::sync::Arc::new(Faults::new());
    let supervised =
        |probe: &actors::metrics::ActorProbe, on_panic| Supervision::new(probe.clone(), on_panic);
    let hub_addr = start_actor("watch", supervised(&hub_probe, OnPanic::Restart), {
        let probe = hub_probe.clone();
        let metrics = watch_metrics.clone();
        let ids = HeaderIds {
            cluster_id: identity.cluster_id,
            member_id: identity.member_id,
        };
        let revision = kv.current_revision();
        let fragment_bytes = max_grpc_message(config.max_request_bytes);
        let progress = match config.watch_progress_notify_interval {
            d if d.is_zero() => DEFAULT_PROGRESS_NOTIFY,
            d => d,
        };
        let board = board.clone();
        move |_| {
            WatchHub::new(
                ids,
                revision,
                fragment_bytes,
                progress,
                probe,
                metrics,
                board,
            )
        }
    });
    let hub = Mailbox::new(hub_addr, WATCH_MAILBOX, hub_probe);

    // The lessor too: the apply actor tells it about lease changes; it
    // learns where raft is once raft runs.
    let lessor_probe = metrics.for_actor("lessor");
    let lessor_addr = start_actor("lessor", supervised(&lessor_probe, OnPanic::Restart), {
        let probe = lessor_probe.clone();
        let leases = kv.leases();
        let config = LessorConfig {
            checkpoint_interval_ms: config.lease_checkpoint_interval.as_millis().max(1) as u64,
            revokes_per_tick: 100,
            checkpoints_per_tick: 1_000,
        };
        move |_| LessorActor::new(config, leases, probe)
    });
    let lessor = Mailbox::new(lessor_addr, LESSOR_MAILBOX, lessor_probe);

    let sizes = SizeGauges::new(&registry)?;
    let apply_core = ApplyCore::new(
        kv,
        header,
        snapshots,
        sizes.clone(),
        // The board first: the watch feed reads the stream count after
        // the revision is posted (actors::board, step 5).
        vec![
            Box::new(BoardFeed(board.clone())),
            Box::new(WatchFeed {
                hub: hub.clone(),
                board: board.clone(),
            }),
            Box::new(lessor.clone()),
        ],
    )?;
    let apply_addr = start_actor("apply", supervised(&apply_probe, OnPanic::StopMember), {
        let probe = apply_probe.clone();
        let commit = etcd_metrics.backend_commit.clone();
        // Ask a few times per interval whether pending commits are due.
        let flush_check = (batch_limits.interval / 4).max(std::time::Duration::from_millis(5));
        let faults = faults.clone();
        move |_| ApplyActor::new(apply_core, probe, commit, flush_check).with_faults(faults)
    });
    let apply = Mailbox::new(apply_addr, APPLY_MAILBOX, apply_probe);
    if hub
        .try_send(ConnectStore {
            apply: apply.clone(),
        })
        .is_err()
    {
        return Err(BootstrapError::Config("watch hub did not start".into()));
    }

    // The log writer shares raft's thread: a Ready's write and its answer
    // cross no thread, which saves two wake-ups per write (docs/performance.md).
    let raft_thread = actor_thread("raft");
    let lw_probe = metrics.for_actor("log_writer");
    let lw_addr = start_on(&raft_thread, supervised(&lw_probe, OnPanic::StopMember), {
        let probe = lw_probe.clone();
        let log = log.clone();
        let fsync = etcd_metrics.wal_fsync.clone();
        let faults = faults.clone();
        move |_| LogWriter::new(log, probe, fsync, faults)
    });
    let log_writer = Mailbox::new(lw_addr, LOG_WRITER_MAILBOX, lw_probe);

    let peers = members
        .iter()
        .filter(|m| m.id != identity.member_id)
        .map(|m| (m.id, m.peer_ur_ls.clone()))
        .collect();
    let transport_metrics = TransportMetrics::new(&registry)?;
    let transport_core = TransportCore::new(
        identity.member_id,
        identity.cluster_id,
        peers,
        TransportConfig {
            // Read again at every connect: replaced files are picked up.
            tls: config
                .peer_tls()
                .map(|files| ClientTls::new(move || files.client_config())),
            ..TransportConfig::default()
        },
        identity.member_id ^ now_ms(),
        transport_metrics.clone(),
    );
    let transport_probe = metrics.for_actor("transport");
    let transport: actix::Addr<TransportActor> = start_actor(
        "transport",
        supervised(&transport_probe, OnPanic::Restart),
        {
            let probe = transport_probe.clone();
            let snap_dir = snap_dir.clone();
            let board = board.clone();
            let faults = faults.clone();
            move |_| {
                TransportActor::new(transport_core, snap_dir, probe)
                    .with_board(board)
                    .with_faults(faults)
            }
        },
    );

    let mut killers = Killers::default();
    killers.insert(ActorKind::Watch, hub.recipient());
    killers.insert(ActorKind::Lessor, lessor.recipient());
    killers.insert(ActorKind::Apply, apply.recipient());
    killers.insert(ActorKind::LogWriter, log_writer.recipient());
    killers.insert(ActorKind::Transport, transport.clone().recipient());
    let raft_probe = metrics.for_actor("raft");
    let tick = Duration::from_millis(config.heartbeat_interval);
    let raft_addr = start_on(
        &raft_thread,
        supervised(&raft_probe, OnPanic::StopMember),
        {
            let probe = raft_probe.clone();
            let apply = apply.clone();
            let peer_sync = transport.clone().recipient();
            let transport = transport.clone().recipient();
            let board = board.clone();
            let rebuild: actors::raft::Rebuild =
                Box::new(move |checkpoint| recipe.build(checkpoint).map_err(|e| e.to_string()));
            move |_| {
                let mut actor = RaftActor::new(
                    core,
                    log_writer,
                    apply,
                    probe,
                    etcd_metrics,
                    tick,
                    single_voter,
                )
                .with_board(board)
                .with_rebuild(rebuild)
                .with_log_writer_beside();
                actor.set_transport(transport);
                actor.set_peer_sync(peer_sync);
                actor
            }
        },
    );
    killers.insert(ActorKind::Raft, raft_addr.clone().recipient());
    let raft = Mailbox::new(raft_addr, RAFT_MAILBOX, raft_probe);
    if transport
        .try_send(ConnectRaft { raft: raft.clone() })
        .is_err()
        || lessor
            .try_send(ConnectLessorRaft { raft: raft.clone() })
            .is_err()
    {
        return Err(BootstrapError::Config(
            "peer transport did not start".into(),
        ));
    }

    let handle = NodeHandle::new(
        Mailboxes {
            raft: raft.clone(),
            apply,
            lessor,
            board,
            watch: WatchHandle {
                hub,
                pending_events: watch_metrics.pending_events,
            },
        },
        identity.cluster_id,
        identity.member_id,
        Limits {
            max_txn_ops: config.max_txn_ops,
            quota_bytes: config.quota_bytes(),
            min_lease_ttl: config.min_lease_ttl(),
            strict_reconfig_check: config.strict_reconfig_check,
        },
        sizes.in_use,
        member_dir.join("snap"),
    )
    .with_peer_tls(peer_client_tls)
    .with_auth(authn);
    Ok(Member {
        handle,
        registry,
        identity,
        raft,
        snap_dir,
        refused,
        board: board_for_peers,
        transport_metrics,
        faults,
        killers,
    })
}

/// A data dir in etcd's layout (what `etcdctl snapshot restore` writes, or
/// a stopped etcd 3.4 member's): at this member's first start its backend
/// (`member/snap/db`) becomes the MVCC store, every revision, the compaction
/// point and the leases; members and ids are founded from the flags as for a
/// restored snapshot (etcdctl derives the same ids). Built in `kv.importing`
/// and renamed into place once complete; etcd's files stay untouched.
fn import_etcd_backend(member_dir: &Path, map_bytes: usize) -> Result<(), BootstrapError> {
    let db = member_dir.join("snap").join("db");
    let kv = kv_dir(member_dir);
    if !db.exists() || kv.join("data.mdb").exists() {
        return Ok(());
    }
    let staging = member_dir.join("kv.importing");
    if staging.exists() {
        std::fs::remove_dir_all(&staging)?;
    }
    std::fs::create_dir_all(&staging)?;
    tracing::info!(path = %db.display(), "importing an etcd data dir's backend");
    let summary = {
        let mut backend = storage::mvcc::LmdbBackend::open(&staging, &LmdbOptions::new(map_bytes))?;
        storage::etcd_snapshot::import(&db, &mut backend)?
    };
    if kv.exists() {
        std::fs::remove_dir_all(&kv)?;
    }
    std::fs::rename(&staging, &kv)?;
    std::fs::File::open(member_dir)?.sync_all()?;
    tracing::info!(
        revision = summary.revision,
        records = summary.records,
        leases = summary.leases,
        compact_revision = summary.compact_revision,
        "imported etcd's keys, revisions and leases"
    );
    Ok(())
}

/// Milliseconds since the Unix epoch (seeds and request-id prefixes).
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// What the raft core is built from: at start, and again at every restart
/// of the raft actor by its supervisor.
struct RaftRecipe {
    log: LmdbLogStore,
    config: raft::Config,
    core: CoreConfig,
    snap_dir: SnapDir,
    refused: RefusedMessages,
}

impl RaftRecipe {
    /// Brings the durable log in line with the store, then builds a core
    /// applied up to `checkpoint.applied`:
    /// 1. raft's configuration as of the store's applied index (the member
    ///    table changes in step with it, and the conf changes after that
    ///    index replay from the log; the stored conf state may be ahead of
    ///    a store whose commits are batched);
    /// 2. a commit index at least the applied index (every applied entry
    ///    was committed; the commit index alone is not fsynced on change).
    ///
    /// A log whose snapshot is ahead of the store (an install cut short)
    /// cannot be built on: at start the install is finished first; at a
    /// restart it is an error, and the member stops and finishes it at its
    /// next start.
    fn build(
        &self,
        checkpoint: &StoreCheckpoint,
    ) -> Result<RaftCore<LmdbLogStore>, BootstrapError> {
        let log = &self.log;
        let applied = checkpoint.applied;
        let log_snapshot = log.snapshot_metadata().map_or(0, |m| m.index);
        if log_snapshot > applied {
            return Err(BootstrapError::Config(format!(
                "the raft log's snapshot ({log_snapshot}) is ahead of the store ({applied})"
            )));
        }
        if !checkpoint.voters.is_empty() {
            let cs = ConfState {
                voters: checkpoint.voters.clone(),
                learners: checkpoint.learners.clone(),
                ..Default::default()
            };
            let stored = log.conf_state();
            if stored.voters != cs.voters || stored.learners != cs.learners {
                log.set_conf_state(&cs)?;
            }
        }
        let mut hs = log.hard_state();
        if hs.commit < applied {
            hs.commit = applied;
            log.write(&LogWrite {
                snapshot: None,
                entries: Vec::new(),
                hard_state: Some(hs),
                commit: None,
            })?;
        }
        let config = raft::Config {
            applied,
            ..self.config.clone()
        };
        config.validate()?;
        let node = raft::RawNode::new(&config, log.clone(), &raft_logger())?;
        Ok(RaftCore::new(
            node,
            self.core.clone(),
            IdGen::new(self.config.id, now_ms()),
            applied,
            PeerGuard::new(Some(self.snap_dir.clone()), self.refused.clone()),
        ))
    }
}

/// LMDB map size of the MVCC env: the quota plus headroom, so deletes and
/// compaction (which need fresh copy-on-write pages) work when "full".
fn mvcc_map_bytes(config: &Config) -> usize {
    let quota = config.quota_bytes().max(0) as usize;
    let page = 4096;
    (quota + quota / 2 + (64 << 20)).div_ceil(page) * page
}
