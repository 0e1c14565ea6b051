//! The transport's plain logic: the peer table, one bounded queue per peer,
//! batching, snapshot bookkeeping and failure episodes. No actix, no tokio,
//! no clock; randomness comes from an injected seed.
//!
//! 1. [`TransportCore::outbound`] splits raft's messages by `to`: a
//!    `MsgSnapshot` becomes [`Effect::SendSnapshot`] (one per peer at a time),
//!    every other message is encoded and queued for its peer (tail-dropped
//!    and counted when the queue holds [`TransportConfig::queue_capacity`]).
//! 2. Each peer's queue drains into [`RaftBatch`]es bounded in bytes, at most
//!    [`TransportConfig::max_batches_in_flight`] handed to the peer's link at
//!    once ([`Effect::Send`]). While the link is busy, new messages pile up
//!    in the queue and leave together in the next batch.
//! 3. The link answers every batch ([`LinkReport::Sent`] or
//!    [`LinkReport::Discarded`]), which returns its credit, and reports
//!    [`LinkReport::Failed`] on a failed connect or a broken stream. The first
//!    failure of an episode becomes [`Effect::ReportUnreachable`]; a batch
//!    that reaches the peer ends the episode.
//! 4. A finished snapshot send becomes [`Effect::ReportSnapshot`] (`Finish`,
//!    or `Failure` plus `ReportUnreachable`): raft-rs keeps the peer paused
//!    until it hears the outcome (`RawNode::report_snapshot`).
//!
//! Reports carry the link epoch they came from, so that the late reports of
//! a link replaced (new URLs) or stopped (peer gone) by `SyncPeers` change
//! nothing.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use proto::internal::{RaftBatch, SnapshotDescriptor};
use raft::SnapshotStatus;
use raft::eraftpb::Message;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::metrics::{DropReason, TransportMetrics};
use super::wire;

/// Messages one peer's queue holds before new ones are dropped.
pub const QUEUE_CAPACITY: usize = 4096;

/// Upper bound of one `RaftBatch`'s payload. A single larger message (an
/// append of up to `max_size_per_msg`, or one large entry) travels alone.
/// Kept well below the smallest gRPC frame limit a member may configure
/// (`--max-request-bytes` + 512 KiB).
pub const MAX_BATCH_BYTES: usize = 256 * 1024;

/// Bytes of image data per `SnapshotChunk` (same bound, same reason).
pub const SNAPSHOT_CHUNK_BYTES: usize = 256 * 1024;

/// Protobuf framing of one `bytes` element in a `RaftBatch` (tag + length).
const PER_MESSAGE_OVERHEAD: usize = 6;

/// Tunables of the transport. [`Default`] gives the production values.
#[derive(Debug, Clone)]
pub struct TransportConfig {
    /// Messages one peer's queue holds ([`QUEUE_CAPACITY`]).
    pub queue_capacity: usize,
    /// Payload bound of one batch ([`MAX_BATCH_BYTES`]).
    pub max_batch_bytes: usize,
    /// Batches handed to a link and not yet answered.
    pub max_batches_in_flight: usize,
    /// First reconnect delay.
    pub backoff_min: Duration,
    /// Largest reconnect delay; a stream that lived this long resets the
    /// backoff.
    pub backoff_max: Duration,
    /// Bound of one connect (TCP and HTTP/2 handshake).
    pub connect_timeout: Duration,
    /// Bound of handing one batch or chunk to a stream; a peer that stops
    /// reading hits it and counts as failed.
    pub send_timeout: Duration,
    /// HTTP/2 keep-alive ping interval on peer connections.
    pub keepalive_interval: Duration,
    /// A keep-alive ping unanswered this long breaks the connection.
    pub keepalive_timeout: Duration,
    /// Image bytes per snapshot chunk ([`SNAPSHOT_CHUNK_BYTES`]).
    pub snapshot_chunk_bytes: usize,
    /// Bound of the receiver's answer after the last chunk (it verifies and
    /// fsyncs the image first).
    pub snapshot_ack_timeout: Duration,
    /// TLS for `https://` peer URLs (`--peer-*` files): the CA that signs
    /// peers and this member's own certificate, shown to peers that ask.
    pub tls: Option<ClientTls>,
}

/// Where the TLS configuration for dialling `https://` peers comes from. It
/// is asked at every connect, so certificate files replaced on disk serve
/// the next connection (etcd reloads its peer certificates per handshake).
#[derive(Clone)]
pub struct ClientTls(
    std::sync::Arc<dyn Fn() -> Result<tonic::transport::ClientTlsConfig, String> + Send + Sync>,
);

impl ClientTls {
    pub fn new(
        load: impl Fn() -> Result<tonic::transport::ClientTlsConfig, String> + Send + Sync + 'static,
    ) -> Self {
        Self(std::sync::Arc::new(load))
    }

    /// The configuration for the next connection.
    pub fn config(&self) -> Result<tonic::transport::ClientTlsConfig, String> {
        (self.0)()
    }
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientTls")
    }
}

impl Default for TransportConfig {
    fn default() -> Self {
        Self {
            queue_capacity: QUEUE_CAPACITY,
            max_batch_bytes: MAX_BATCH_BYTES,
            max_batches_in_flight: 4,
            backoff_min: Duration::from_millis(50),
            backoff_max: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(1),
            send_timeout: Duration::from_secs(5),
            keepalive_interval: wire::KEEPALIVE_INTERVAL,
            keepalive_timeout: wire::KEEPALIVE_TIMEOUT,
            snapshot_chunk_bytes: SNAPSHOT_CHUNK_BYTES,
            snapshot_ack_timeout: Duration::from_secs(60),
            tls: None,
        }
    }
}

/// Reconnect delays: doubling from `min` to `max`, each jittered by ±25%
/// (kept within `[min, max]`) with a seeded RNG, so that members that lost
/// a peer together do not reconnect in lockstep.
#[derive(Debug)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    attempt: u32,
    rng: StdRng,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration, seed: u64) -> Self {
        Self {
            min,
            max: max.max(min),
            attempt: 0,
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// The delay before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        let base = self
            .min
            .saturating_mul(1u32 << self.attempt.min(20))
            .min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let factor: f64 = self.rng.gen_range(0.75..=1.25);
        base.mul_f64(factor).clamp(self.min, self.max)
    }

    /// Back to `min` (the connection proved healthy).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// What a peer's link reports about one batch or one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkReport {
    /// The batch was written to the peer's stream.
    Sent { messages: usize },
    /// The batch was thrown away: the stream was down or broke under it.
    Discarded { messages: usize },
    /// A connect failed or the stream broke; the link backs off and retries.
    Failed { reason: String },
    /// The peer answered that this member was removed from the cluster.
    Removed,
    /// A connection to the peer is up.
    Connected,
}

/// What the actor shell must do after a call into the core.
#[derive(Debug)]
pub enum Effect {
    /// Start the outbound link of `peer` (epoch `link`), with a bounded
    /// channel of `max_batches_in_flight` batches.
    StartLink {
        peer: u64,
        link: u64,
        urls: Vec<String>,
        seed: u64,
    },
    /// Stop the link of `peer` (drop its channel).
    StopLink { peer: u64 },
    /// Hand `batch` to the link of `peer`.
    Send {
        peer: u64,
        link: u64,
        batch: RaftBatch,
    },
    /// Stream the image named by `descriptor` to `peer` through the
    /// `Snapshot` RPC, then report the outcome with `on_snapshot_done`.
    SendSnapshot {
        peer: u64,
        link: u64,
        urls: Vec<String>,
        message: Box<Message>,
        descriptor: SnapshotDescriptor,
    },
    /// Tell raft that `peer` could not be reached.
    ReportUnreachable { peer: u64 },
    /// Tell raft how sending a snapshot to `peer` ended.
    ReportSnapshot { peer: u64, status: SnapshotStatus },
    /// A peer says this member was removed: the member stops.
    Removed { peer: u64 },
    /// `peer` became reachable (`true`) or unreachable (`false`): etcd's
    /// "active since", which membership changes consult.
    Connectivity { peer: u64, connected: bool },
}

struct Peer {
    urls: Vec<String>,
    link: u64,
    queue: VecDeque<Vec<u8>>,
    in_flight: usize,
    unreachable_reported: bool,
    snapshot_in_flight: bool,
    /// A connection to the peer is up (since the last `Connected` report,
    /// until a failure).
    connected: bool,
}

impl Peer {
    fn new(urls: Vec<String>, link: u64) -> Self {
        Self {
            urls,
            link,
            queue: VecDeque::new(),
            in_flight: 0,
            unreachable_reported: false,
            snapshot_in_flight: false,
            connected: false,
        }
    }
}

/// Keeps the peer URLs this transport can dial (`http://`, and `https://`
/// when peer TLS is configured) and says why it refuses the others.
pub fn usable_urls(peer: u64, urls: Vec<String>) -> Vec<String> {
    urls.into_iter()
        .filter(|u| {
            let ok = u
                .strip_prefix("http://")
                .or_else(|| u.strip_prefix("https://"))
                .is_some_and(|rest| !rest.is_empty());
            if !ok {
                tracing::warn!(
                    peer = %format!("{peer:x}"),
                    url = %u,
                    "peer URL not usable: only http(s)://host:port is supported"
                );
            }
            ok
        })
        .collect()
}

/// Takes the longest prefix of `queue` whose payload fits in `max_bytes`;
/// always at least one message.
pub fn take_batch(queue: &mut VecDeque<Vec<u8>>, max_bytes: usize) -> Vec<Vec<u8>> {
    let mut batch = Vec::new();
    let mut bytes = 0usize;
    while let Some(next) = queue.front() {
        let size = next.len() + PER_MESSAGE_OVERHEAD;
        if !batch.is_empty() && bytes + size > max_bytes {
            break;
        }
        bytes += size;
        if let Some(m) = queue.pop_front() {
            batch.push(m);
        }
    }
    batch
}

/// The transport's state.
pub struct TransportCore {
    id: u64,
    cluster_id: u64,
    config: TransportConfig,
    peers: BTreeMap<u64, Peer>,
    next_link: u64,
    rng: StdRng,
    metrics: TransportMetrics,
}

impl TransportCore {
    /// The transport's metric families.
    pub fn metrics(&self) -> &TransportMetrics {
        &self.metrics
    }

    /// A transport for member `id` of cluster `cluster_id`, knowing `peers`
    /// (member id -> peer URLs). Links start with [`TransportCore::start`].
    pub fn new(
        id: u64,
        cluster_id: u64,
        peers: HashMap<u64, Vec<String>>,
        config: TransportConfig,
        seed: u64,
        metrics: TransportMetrics,
    ) -> Self {
        let mut core = Self {
            id,
            cluster_id,
            config,
            peers: BTreeMap::new(),
            next_link: 1,
            rng: StdRng::seed_from_u64(seed),
            metrics,
        };
        let mut ids: Vec<u64> = peers.keys().copied().collect();
        ids.sort_unstable();
        let mut peers = peers;
        for peer in ids {
            if peer == id {
                continue;
            }
            let urls = usable_urls(peer, peers.remove(&peer).unwrap_or_default());
            let link = core.new_link();
            core.peers.insert(peer, Peer::new(urls, link));
        }
        core
    }

    fn new_link(&mut self) -> u64 {
        let link = self.next_link;
        self.next_link += 1;
        link
    }

    /// The cluster id stamped on every batch.
    pub fn cluster_id(&self) -> u64 {
        self.cluster_id
    }

    pub fn config(&self) -> &TransportConfig {
        &self.config
    }

    /// The peers, by member id.
    pub fn peers(&self) -> impl Iterator<Item = u64> + '_ {
        self.peers.keys().copied()
    }

    /// Messages waiting in `peer`'s queue.
    pub fn queued(&self, peer: u64) -> usize {
        self.peers.get(&peer).map_or(0, |p| p.queue.len())
    }

    /// Batches handed to `peer`'s link and not yet answered.
    pub fn in_flight(&self, peer: u64) -> usize {
        self.peers.get(&peer).map_or(0, |p| p.in_flight)
    }

    /// Starts the links of the peers given to [`TransportCore::new`].
    pub fn start(&mut self, out: &mut Vec<Effect>) {
        let links: Vec<(u64, u64, Vec<String>)> = self
            .peers
            .iter()
            .map(|(id, p)| (*id, p.link, p.urls.clone()))
            .collect();
        for (peer, link, urls) in links {
            let seed = self.rng.r#gen();
            out.push(Effect::StartLink {
                peer,
                link,
                urls,
                seed,
            });
        }
    }

    /// Adds `peer` (or changes its URLs, restarting its link).
    pub fn add_peer(&mut self, peer: u64, urls: Vec<String>, out: &mut Vec<Effect>) {
        if peer == self.id {
            tracing::warn!(peer = %format!("{peer:x}"), "not adding this member as its own peer");
            return;
        }
        let urls = usable_urls(peer, urls);
        if let Some(p) = self.peers.get(&peer) {
            if p.urls == urls {
                return;
            }
            out.push(Effect::StopLink { peer });
        }
        let link = self.new_link();
        self.peers.insert(peer, Peer::new(urls.clone(), link));
        let seed = self.rng.r#gen();
        out.push(Effect::StartLink {
            peer,
            link,
            urls,
            seed,
        });
    }

    /// Follows the member table: a link to every other member of `peers`
    /// (restarted where the URLs changed), none to anyone else.
    pub fn sync_peers(&mut self, peers: Vec<(u64, Vec<String>)>, out: &mut Vec<Effect>) {
        let listed: std::collections::BTreeSet<u64> = peers.iter().map(|(id, _)| *id).collect();
        let gone: Vec<u64> = self
            .peers
            .keys()
            .filter(|p| !listed.contains(p))
            .copied()
            .collect();
        for peer in gone {
            tracing::info!(peer = %format!("{peer:x}"), "peer removed");
            self.remove_peer(peer, out);
        }
        for (peer, urls) in peers {
            if peer != self.id {
                self.add_peer(peer, urls, out);
            }
        }
    }

    /// Removes `peer`: its queue goes, its link stops.
    pub fn remove_peer(&mut self, peer: u64, out: &mut Vec<Effect>) {
        if let Some(p) = self.peers.remove(&peer) {
            out.push(Effect::StopLink { peer });
            if p.connected {
                out.push(Effect::Connectivity {
                    peer,
                    connected: false,
                });
            }
        }
    }

    /// Raft's messages for peers (step 1 of the module docs).
    pub fn outbound(&mut self, messages: Vec<Message>, out: &mut Vec<Effect>) {
        let mut touched: Vec<u64> = Vec::new();
        for message in messages {
            let to = message.to;
            let Some(peer) = self.peers.get_mut(&to) else {
                self.metrics.dropped(to, DropReason::UnknownPeer, 1);
                tracing::debug!(peer = %format!("{to:x}"), "raft message for an unknown peer dropped");
                if wire::is_snapshot(&message) {
                    self.metrics.snapshot(to, false);
                    out.push(Effect::ReportSnapshot {
                        peer: to,
                        status: SnapshotStatus::Failure,
                    });
                }
                continue;
            };
            if wire::is_snapshot(&message) {
                if peer.snapshot_in_flight {
                    tracing::warn!(
                        peer = %format!("{to:x}"),
                        "a snapshot send to this peer is in flight; the new one is refused"
                    );
                    self.metrics.snapshot(to, false);
                    out.push(Effect::ReportSnapshot {
                        peer: to,
                        status: SnapshotStatus::Failure,
                    });
                    continue;
                }
                match wire::snapshot_descriptor(&message) {
                    Ok(descriptor) => {
                        peer.snapshot_in_flight = true;
                        out.push(Effect::SendSnapshot {
                            peer: to,
                            link: peer.link,
                            urls: peer.urls.clone(),
                            message: Box::new(message),
                            descriptor,
                        });
                    }
                    Err(e) => {
                        tracing::error!(
                            peer = %format!("{to:x}"),
                            error = %e,
                            "snapshot message without an image descriptor; not sent"
                        );
                        self.metrics.snapshot(to, false);
                        out.push(Effect::ReportSnapshot {
                            peer: to,
                            status: SnapshotStatus::Failure,
                        });
                    }
                }
                continue;
            }
            if peer.queue.len() >= self.config.queue_capacity {
                self.metrics.dropped(to, DropReason::QueueFull, 1);
                continue;
            }
            match wire::encode_message(&message) {
                Ok(bytes) => {
                    peer.queue.push_back(bytes);
                    if !touched.contains(&to) {
                        touched.push(to);
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "raft message could not be encoded; dropped");
                    self.metrics.dropped(to, DropReason::Encode, 1);
                }
            }
        }
        for peer in touched {
            self.flush(peer, out);
        }
    }

    /// Hands `peer`'s queued messages to its link, as far as credits allow
    /// (step 2).
    fn flush(&mut self, peer: u64, out: &mut Vec<Effect>) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        while p.in_flight < self.config.max_batches_in_flight && !p.queue.is_empty() {
            let messages = take_batch(&mut p.queue, self.config.max_batch_bytes);
            let bytes: usize = messages.iter().map(Vec::len).sum();
            self.metrics.batch(messages.len(), bytes);
            p.in_flight += 1;
            out.push(Effect::Send {
                peer,
                link: p.link,
                batch: RaftBatch {
                    from: self.id,
                    cluster_id: self.cluster_id,
                    messages,
                },
            });
        }
    }

    /// A report from the link of `peer`, epoch `link` (step 3).
    pub fn on_link_report(
        &mut self,
        peer: u64,
        link: u64,
        report: LinkReport,
        out: &mut Vec<Effect>,
    ) {
        let Some(p) = self.peers.get_mut(&peer).filter(|p| p.link == link) else {
            return;
        };
        match report {
            LinkReport::Sent { messages } => {
                p.in_flight = p.in_flight.saturating_sub(1);
                if p.unreachable_reported {
                    tracing::info!(peer = %format!("{peer:x}"), "peer reachable again");
                    p.unreachable_reported = false;
                }
                self.metrics.sent(peer, messages);
                self.flush(peer, out);
            }
            LinkReport::Discarded { messages } => {
                p.in_flight = p.in_flight.saturating_sub(1);
                self.metrics.dropped(peer, DropReason::LinkDown, messages);
                self.flush(peer, out);
            }
            LinkReport::Removed => out.push(Effect::Removed { peer }),
            LinkReport::Connected => {
                if !p.connected {
                    p.connected = true;
                    out.push(Effect::Connectivity {
                        peer,
                        connected: true,
                    });
                }
            }
            LinkReport::Failed { reason } => {
                if p.connected {
                    p.connected = false;
                    out.push(Effect::Connectivity {
                        peer,
                        connected: false,
                    });
                }
                self.metrics.link_failed(peer);
                if p.unreachable_reported {
                    tracing::debug!(peer = %format!("{peer:x}"), %reason, "peer still unreachable");
                } else {
                    tracing::warn!(peer = %format!("{peer:x}"), %reason, "peer unreachable");
                    p.unreachable_reported = true;
                    out.push(Effect::ReportUnreachable { peer });
                }
            }
        }
    }

    /// The transport restarted (its supervisor, after a kill or a panic):
    /// every link starts over under a new epoch, so reports from the old
    /// link tasks are ignored; queued messages are dropped (raft sends
    /// again); a snapshot that was being sent is reported failed, so raft
    /// sends it again. [`TransportCore::start`] then opens the new links.
    pub fn restart(&mut self, out: &mut Vec<Effect>) {
        let peers: Vec<u64> = self.peers.keys().copied().collect();
        for peer in peers {
            let link = self.new_link();
            let Some(p) = self.peers.get_mut(&peer) else {
                continue;
            };
            let urls = std::mem::take(&mut p.urls);
            let old = std::mem::replace(p, Peer::new(urls, link));
            if !old.queue.is_empty() {
                self.metrics
                    .dropped(peer, DropReason::Chaos, old.queue.len());
            }
            if old.snapshot_in_flight {
                self.metrics.snapshot(peer, false);
                out.push(Effect::ReportSnapshot {
                    peer,
                    status: SnapshotStatus::Failure,
                });
            }
            if old.connected {
                out.push(Effect::Connectivity {
                    peer,
                    connected: false,
                });
            }
        }
    }

    /// The snapshot send to `peer` (started under link epoch `link`) ended
    /// (step 4).
    pub fn on_snapshot_done(
        &mut self,
        peer: u64,
        link: u64,
        result: Result<(), String>,
        out: &mut Vec<Effect>,
    ) {
        if let Some(p) = self.peers.get_mut(&peer).filter(|p| p.link == link) {
            p.snapshot_in_flight = false;
        }
        self.metrics.snapshot(peer, result.is_ok());
        match result {
            Ok(()) => {
                tracing::info!(peer = %format!("{peer:x}"), "snapshot sent");
                out.push(Effect::ReportSnapshot {
                    peer,
                    status: SnapshotStatus::Finish,
                });
            }
            Err(reason) => {
                tracing::warn!(peer = %format!("{peer:x}"), %reason, "snapshot send failed");
                out.push(Effect::ReportSnapshot {
                    peer,
                    status: SnapshotStatus::Failure,
                });
                out.push(Effect::ReportUnreachable { peer });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use proto::Message as _;
    use raft::eraftpb::MessageType;

    use super::*;

    fn heartbeat(to: u64, commit: u64) -> Message {
        let mut m = Message::default();
        m.set_msg_type(MessageType::MsgHeartbeat);
        m.from = 1;
        m.to = to;
        m.commit = commit;
        m
    }

    fn append(to: u64, payload: usize) -> Message {
        let mut m = Message::default();
        m.set_msg_type(MessageType::MsgAppend);
        m.from = 1;
        m.to = to;
        m.mut_entries().push(raft::eraftpb::Entry {
            data: vec![7u8; payload].into(),
            ..Default::default()
        });
        m
    }

    fn snapshot_message(to: u64, index: u64) -> Message {
        let d = SnapshotDescriptor {
            index,
            size: 10,
            sha256: vec![0; 32],
        };
        let mut m = Message::default();
        m.set_msg_type(MessageType::MsgSnapshot);
        m.from = 1;
        m.to = to;
        m.mut_snapshot().set_data(d.encode_to_vec().into());
        m.mut_snapshot().mut_metadata().index = index;
        m
    }

    fn core_with(config: TransportConfig) -> (TransportCore, TransportMetrics) {
        let metrics = TransportMetrics::unregistered();
        let peers = HashMap::from([
            (2, vec!["http://127.0.0.1:2380".to_string()]),
            (3, vec!["http://127.0.0.1:3380".to_string()]),
        ]);
        let core = TransportCore::new(1, 0xc1, peers, config, 7, metrics.clone());
        (core, metrics)
    }

    fn sends(out: &[Effect]) -> Vec<(u64, Vec<Message>)> {
        out.iter()
            .filter_map(|e| match e {
                Effect::Send { peer, batch, .. } => Some((
                    *peer,
                    batch
                        .messages
                        .iter()
                        .map(|b| wire::decode_message(b).unwrap())
                        .collect(),
                )),
                _ => None,
            })
            .collect()
    }

    fn link_of(out: &[Effect], peer: u64) -> u64 {
        out.iter()
            .find_map(|e| match e {
                Effect::StartLink { peer: p, link, .. } if *p == peer => Some(*link),
                _ => None,
            })
            .unwrap()
    }

    #[test]
    fn start_opens_one_link_per_peer() {
        let (mut core, _) = core_with(TransportConfig::default());
        let mut out = Vec::new();
        core.start(&mut out);
        let mut peers: Vec<u64> = out
            .iter()
            .map(|e| match e {
                Effect::StartLink { peer, urls, .. } => {
                    assert_eq!(urls.len(), 1);
                    *peer
                }
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        peers.sort_unstable();
        assert_eq!(peers, vec![2, 3]);
    }

    #[test]
    fn messages_are_grouped_by_peer_in_order() {
        let (mut core, metrics) = core_with(TransportConfig::default());
        let mut out = Vec::new();
        let messages = vec![
            heartbeat(2, 1),
            heartbeat(3, 1),
            heartbeat(2, 2),
            heartbeat(9, 1),
            heartbeat(3, 2),
            heartbeat(2, 3),
        ];
        core.outbound(messages, &mut out);
        let sent = sends(&out);
        assert_eq!(sent.len(), 2, "one batch per peer: {out:?}");
        for (peer, batch) in sent {
            let commits: Vec<u64> = batch.iter().map(|m| m.commit).collect();
            assert!(batch.iter().all(|m| m.to == peer));
            match peer {
                2 => assert_eq!(commits, vec![1, 2, 3]),
                3 => assert_eq!(commits, vec![1, 2]),
                other => panic!("batch for {other}"),
            }
        }
        let Effect::Send { batch, .. } = &out[0] else {
            panic!("expected a batch first")
        };
        assert_eq!((batch.from, batch.cluster_id), (1, 0xc1));
        assert_eq!(metrics.dropped_count(9, DropReason::UnknownPeer), 1);
    }

    #[test]
    fn batches_are_bounded_in_bytes() {
        let config = TransportConfig {
            max_batch_bytes: 10_000,
            max_batches_in_flight: 100,
            ..TransportConfig::default()
        };
        let (mut core, _) = core_with(config);
        let mut out = Vec::new();
        // Three 4 KB appends fit two per batch; a 50 KB one travels alone.
        let messages = vec![
            append(2, 4000),
            append(2, 4000),
            append(2, 4000),
            append(2, 50_000),
            append(2, 4000),
        ];
        core.outbound(messages, &mut out);
        let sizes: Vec<Vec<usize>> = sends(&out)
            .into_iter()
            .map(|(_, b)| b.iter().map(|m| m.entries[0].data.len()).collect())
            .collect();
        assert_eq!(
            sizes,
            vec![vec![4000, 4000], vec![4000], vec![50_000], vec![4000]]
        );
    }

    #[test]
    fn take_batch_always_takes_one() {
        let mut q: VecDeque<Vec<u8>> = VecDeque::from(vec![vec![0; 100], vec![0; 10]]);
        assert_eq!(take_batch(&mut q, 1).len(), 1);
        assert_eq!(take_batch(&mut q, 1).len(), 1);
        assert!(q.is_empty());
        assert!(take_batch(&mut q, 1).is_empty());
    }

    #[test]
    fn credits_coalesce_and_the_queue_is_bounded() {
        let config = TransportConfig {
            queue_capacity: 5,
            max_batches_in_flight: 1,
            ..TransportConfig::default()
        };
        let (mut core, metrics) = core_with(config);
        let mut out = Vec::new();
        core.start(&mut out);
        let link = link_of(&out, 2);
        out.clear();

        core.outbound(vec![heartbeat(2, 0)], &mut out);
        assert_eq!(sends(&out).len(), 1);
        assert_eq!(core.in_flight(2), 1);
        out.clear();

        // The link is busy: the next messages wait, and beyond the queue's
        // capacity they are dropped and counted.
        core.outbound((1..=8).map(|c| heartbeat(2, c)).collect(), &mut out);
        assert!(sends(&out).is_empty());
        assert_eq!(core.queued(2), 5);
        assert_eq!(metrics.dropped_count(2, DropReason::QueueFull), 3);

        // The credit comes back: everything queued leaves in one batch.
        core.on_link_report(2, link, LinkReport::Sent { messages: 1 }, &mut out);
        let sent = sends(&out);
        assert_eq!(sent.len(), 1);
        let commits: Vec<u64> = sent[0].1.iter().map(|m| m.commit).collect();
        assert_eq!(commits, vec![1, 2, 3, 4, 5]);
        assert_eq!(core.queued(2), 0);
        assert_eq!(metrics.sent_count(2), 1);
        out.clear();

        core.on_link_report(2, link, LinkReport::Discarded { messages: 5 }, &mut out);
        assert_eq!(metrics.dropped_count(2, DropReason::LinkDown), 5);
        assert_eq!(core.in_flight(2), 0);
        // Peer 3 was never touched.
        assert_eq!(core.in_flight(3), 0);
    }

    #[test]
    fn unreachable_is_reported_once_per_failure_episode() {
        let (mut core, metrics) = core_with(TransportConfig::default());
        let mut out = Vec::new();
        core.start(&mut out);
        let link = link_of(&out, 2);
        out.clear();
        let failed = || LinkReport::Failed {
            reason: "connection refused".into(),
        };
        core.on_link_report(2, link, failed(), &mut out);
        core.on_link_report(2, link, failed(), &mut out);
        core.on_link_report(2, link, failed(), &mut out);
        assert!(matches!(
            out.as_slice(),
            [Effect::ReportUnreachable { peer: 2 }]
        ));
        assert_eq!(metrics.link_failure_count(2), 3);
        out.clear();

        core.outbound(vec![heartbeat(2, 1)], &mut out);
        core.on_link_report(2, link, LinkReport::Sent { messages: 1 }, &mut out);
        out.clear();
        core.on_link_report(2, link, failed(), &mut out);
        assert!(matches!(
            out.as_slice(),
            [Effect::ReportUnreachable { peer: 2 }]
        ));
    }

    #[test]
    fn connectivity_changes_are_posted_once_each_and_on_removal() {
        let (mut core, _) = core_with(TransportConfig::default());
        let mut out = Vec::new();
        core.start(&mut out);
        let link = link_of(&out, 2);
        out.clear();
        core.on_link_report(2, link, LinkReport::Connected, &mut out);
        core.on_link_report(2, link, LinkReport::Connected, &mut out);
        assert!(matches!(
            out.as_slice(),
            [Effect::Connectivity {
                peer: 2,
                connected: true
            }]
        ));
        out.clear();
        let failed = LinkReport::Failed {
            reason: "reset".into(),
        };
        core.on_link_report(2, link, failed, &mut out);
        assert!(out.iter().any(|e| matches!(
            e,
            Effect::Connectivity {
                peer: 2,
                connected: false
            }
        )));
        out.clear();
        core.on_link_report(2, link, LinkReport::Connected, &mut out);
        core.sync_peers(Vec::new(), &mut out);
        assert!(matches!(
            out.as_slice(),
            [
                Effect::Connectivity {
                    peer: 2,
                    connected: true
                },
                Effect::StopLink { peer: 2 },
                Effect::Connectivity {
                    peer: 2,
                    connected: false
                },
                ..
            ]
        ));
        // A report from the stopped link changes nothing.
        out.clear();
        core.on_link_report(2, link, LinkReport::Connected, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn snapshots_go_beside_the_stream_one_at_a_time() {
        let (mut core, _) = core_with(TransportConfig::default());
        let mut out = Vec::new();
        core.start(&mut out);
        let link = link_of(&out, 2);
        out.clear();

        core.outbound(vec![heartbeat(2, 1), snapshot_message(2, 40)], &mut out);
        let batches = sends(&out);
        assert_eq!(batches.len(), 1);
        assert!(batches[0].1.iter().all(|m| !wire::is_snapshot(m)));
        let snapshot = out
            .iter()
            .find_map(|e| match e {
                Effect::SendSnapshot {
                    peer,
                    link,
                    message,
                    descriptor,
                    ..
                } => Some((*peer, *link, (**message).clone(), descriptor.clone())),
                _ => None,
            })
            .expect("a snapshot send");
        assert_eq!((snapshot.0, snapshot.1), (2, link));
        assert_eq!(snapshot.2.get_snapshot().get_metadata().index, 40);
        assert_eq!(snapshot.3.index, 40);
        out.clear();

        // A second one while the first is in flight is refused.
        core.outbound(vec![snapshot_message(2, 41)], &mut out);
        assert!(matches!(
            out.as_slice(),
            [Effect::ReportSnapshot {
                peer: 2,
                status: SnapshotStatus::Failure
            }]
        ));
        out.clear();

        core.on_snapshot_done(2, link, Ok(()), &mut out);
        assert!(matches!(
            out.as_slice(),
            [Effect::ReportSnapshot {
                peer: 2,
                status: SnapshotStatus::Finish
            }]
        ));
        out.clear();

        // Free again; this one fails.
        core.outbound(vec![snapshot_message(2, 42)], &mut out);
        assert!(matches!(out.as_slice(), [Effect::SendSnapshot { .. }]));
        out.clear();
        core.on_snapshot_done(2, link, Err("connection reset".into()), &mut out);
        assert!(matches!(
            out.as_slice(),
            [
                Effect::ReportSnapshot {
                    peer: 2,
                    status: SnapshotStatus::Failure
                },
                Effect::ReportUnreachable { peer: 2 }
            ]
        ));
    }

    #[test]
    fn snapshots_without_descriptor_or_peer_fail_at_once() {
        let (mut core, _) = core_with(TransportConfig::default());
        let mut out = Vec::new();
        let mut bad = snapshot_message(2, 5);
        bad.mut_snapshot().set_data(vec![0xff, 0xff].into());
        core.outbound(vec![bad, snapshot_message(9, 5)], &mut out);
        let statuses: Vec<(u64, SnapshotStatus)> = out
            .iter()
            .map(|e| match e {
                Effect::ReportSnapshot { peer, status } => (*peer, *status),
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(
            statuses,
            vec![(2, SnapshotStatus::Failure), (9, SnapshotStatus::Failure)]
        );
    }

    #[test]
    fn membership_changes_replace_links_and_ignore_stale_reports() {
        let (mut core, _) = core_with(TransportConfig::default());
        let mut out = Vec::new();
        core.start(&mut out);
        let old = link_of(&out, 2);
        out.clear();

        // Same URLs: nothing to do. New URLs: a new link.
        core.add_peer(2, vec!["http://127.0.0.1:2380".into()], &mut out);
        assert!(out.is_empty());
        core.add_peer(2, vec!["http://10.0.0.2:2380".into()], &mut out);
        assert!(matches!(out[0], Effect::StopLink { peer: 2 }));
        let new = link_of(&out, 2);
        assert_ne!(old, new);
        out.clear();

        core.on_link_report(
            2,
            old,
            LinkReport::Failed {
                reason: "old".into(),
            },
            &mut out,
        );
        assert!(out.is_empty(), "a stale link's report changes nothing");

        core.remove_peer(2, &mut out);
        assert!(matches!(out.as_slice(), [Effect::StopLink { peer: 2 }]));
        out.clear();
        core.on_link_report(2, new, LinkReport::Sent { messages: 1 }, &mut out);
        core.outbound(vec![heartbeat(2, 1)], &mut out);
        assert!(out.is_empty());
        assert_eq!(core.peers().collect::<Vec<_>>(), vec![3]);

        // Never itself; https is dialled (over TLS), other schemes are not.
        core.add_peer(1, vec!["http://127.0.0.1:1".into()], &mut out);
        assert!(out.is_empty());
        core.add_peer(
            4,
            vec![
                "unix:///tmp/p".into(),
                "https://h:1".into(),
                "http://h:2".into(),
            ],
            &mut out,
        );
        assert!(matches!(
            out.as_slice(),
            [Effect::StartLink { peer: 4, urls, .. }]
                if urls == &vec!["https://h:1".to_string(), "http://h:2".to_string()]
        ));
    }

    #[test]
    fn backoff_doubles_with_seeded_jitter_and_resets() {
        let seed: u64 = rand::random();
        println!("backoff seed: {seed}");
        let min = Duration::from_millis(50);
        let max = Duration::from_secs(1);
        let mut b = Backoff::new(min, max, seed);
        let delays: Vec<Duration> = (0..10).map(|_| b.next_delay()).collect();
        for (i, d) in delays.iter().enumerate() {
            let base = min.saturating_mul(1 << i).min(max);
            assert!(*d >= min && *d <= max, "delay {i} = {d:?}");
            assert!(
                *d >= base.mul_f64(0.75) && *d <= base.mul_f64(1.25),
                "delay {i} = {d:?}"
            );
        }
        assert!(delays[9] >= max.mul_f64(0.75));
        b.reset();
        assert!(b.next_delay() <= min.mul_f64(1.25));

        // Same seed, same schedule.
        let mut again = Backoff::new(min, max, seed);
        let replay: Vec<Duration> = (0..10).map(|_| again.next_delay()).collect();
        assert_eq!(delays, replay);
    }
}
