//! The `Peer` gRPC service on the peer URLs: what the other members'
//! transports send to this one.
//!
//! 1. `Stream`: one long-lived call per sending member. Each `RaftBatch`
//!    must carry this cluster's id; a batch from another cluster ends the
//!    call with `FailedPrecondition` "cluster ID mismatch" (etcd's words),
//!    logged. Its messages are decoded and stepped into raft in order with
//!    `try_step`; when raft's mailbox is full the message is dropped (raft
//!    retransmits). Bytes that are not a raft message end the call; a
//!    `MsgSnapshot` is refused (the transport sends snapshots only on the
//!    `Snapshot` RPC, and raft would persist one before its image exists).
//!    Raft checks every other message before stepping it
//!    ([`actors::raft::guard`]).
//! 2. `Snapshot`: the cluster id comes in the `oxcd-cluster-id` metadata.
//!    The first chunk's raft message is a `MsgSnapshot` whose snapshot data
//!    names the image (`SnapshotDescriptor`, which must be for the
//!    snapshot's own index). The chunks are written with
//!    `SnapDir::receiver` on the blocking pool; `finish()` checks size and
//!    SHA-256, fsyncs and gives the image its final name. Only then is the
//!    `MsgSnapshot` handed to raft, with `deliver_step` (it must not be
//!    lost), and the answer is `installed: true`.
//!
//! The chaos API's inbound link faults ([`Faults::link`]) apply to each
//! batch before its messages are stepped: a dropped batch is acknowledged
//! and forgotten (a lost packet, as far as raft knows), a delayed one holds
//! the stream for the delay (later batches queue behind it, as on a slow
//! link). A snapshot from a peer cut off is refused.
//!
//! Every refusal is logged and counted in
//! `oxcd_peer_messages_refused_total{reason}`; the member keeps serving.
//!
//! Raft is reached through [`RaftInbox`] (the raft actor's mailbox in a
//! member, a recorder in tests). Decoding is not limited below the codec's
//! process-wide limit: peer messages are bounded by the sender (batches and
//! chunks of 256 KiB, single raft messages up to `max_size_per_msg` or one
//! entry).

use std::net::SocketAddr;
use std::sync::Arc;

use actors::board::Board;
use actors::chaos::{Direction, Faults, LinkVerdict};

use actors::raft::guard::{Refusal, RefusedMessages};
use actors::transport::RaftInbox;
use actors::transport::metrics::TransportMetrics;
use actors::transport::wire;
use proto::internal::peer_server::{Peer, PeerServer};
use proto::internal::{
    MembersRequest, MembersResponse, RaftBatch, SnapshotAck, SnapshotChunk, StreamAck,
};
use storage::StorageError;
use storage::snap::SnapDir;
use tonic::{Request, Response, Status, Streaming};

/// The `Peer` service of one member.
pub struct PeerService<R: RaftInbox> {
    cluster_id: u64,
    raft: R,
    snap_dir: SnapDir,
    refused: RefusedMessages,
    /// Where the member table is posted (for `Members`).
    board: Arc<Board>,
    /// `etcd_network_peer_received_bytes_total`.
    metrics: TransportMetrics,
    /// The chaos API's switches (inbound link faults).
    faults: Arc<Faults>,
}

impl<R: RaftInbox> PeerService<R> {
    pub fn new(
        cluster_id: u64,
        raft: R,
        snap_dir: SnapDir,
        refused: RefusedMessages,
        board: Arc<Board>,
    ) -> Self {
        Self {
            cluster_id,
            raft,
            snap_dir,
            refused,
            board,
            metrics: TransportMetrics::unregistered(),
            faults: Arc::default(),
        }
    }

    /// Applies the chaos API's inbound link faults from `faults`.
    pub fn with_faults(mut self, faults: Arc<Faults>) -> Self {
        self.faults = faults;
        self
    }

    /// Counts received bytes in `metrics` (the member's transport metrics).
    pub fn with_metrics(mut self, metrics: TransportMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// Logs and counts bytes that are not a raft message.
    fn undecodable(
        &self,
        what: &str,
        error: impl std::fmt::Display,
        remote: Option<SocketAddr>,
    ) -> Status {
        tracing::warn!(remote = ?remote, error = %error, "undecodable {what}");
        self.refused.inc(&Refusal::Undecodable);
        Status::invalid_argument(format!("{what}: {error}"))
    }

    fn mismatch(&self, got: u64, remote: Option<SocketAddr>) -> Status {
        tracing::warn!(
            remote = ?remote,
            local_cluster = %format!("{:x}", self.cluster_id),
            remote_cluster = %format!("{got:x}"),
            "refused a peer of another cluster"
        );
        Status::failed_precondition(wire::CLUSTER_ID_MISMATCH)
    }
}

/// Runs image I/O on the blocking pool; a corrupt or out-of-order image
/// is `DataLoss`.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
) -> Result<T, Status> {
    match tokio::task::spawn_blocking(work).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(StorageError::Corrupt(reason))) => Err(Status::data_loss(reason)),
        Ok(Err(e)) => Err(Status::internal(format!("snapshot image: {e}"))),
        Err(e) => Err(Status::internal(format!("snapshot image writer: {e}"))),
    }
}

#[tonic::async_trait]
impl<R: RaftInbox> Peer for PeerService<R> {
    async fn stream(
        &self,
        request: Request<Streaming<RaftBatch>>,
    ) -> Result<Response<StreamAck>, Status> {
        let remote = request.remote_addr();
        let mut batches = request.into_inner();
        // The sender's byte counter, resolved at its first batch.
        let mut received: Option<(u64, prometheus::IntCounter)> = None;
        while let Some(batch) = batches.message().await? {
            if batch.cluster_id != self.cluster_id {
                return Err(self.mismatch(batch.cluster_id, remote));
            }
            let counter = match &received {
                Some((from, counter)) if *from == batch.from => counter,
                _ => {
                    let counter = self.metrics.received_from(batch.from);
                    &received.insert((batch.from, counter)).1
                }
            };
            counter.inc_by(proto::Message::encoded_len(&batch) as u64);
            if self.board.is_removed(batch.from) {
                tracing::warn!(peer = %format!("{:x}", batch.from), "refused a removed member's messages");
                return Err(Status::permission_denied(wire::MEMBER_REMOVED));
            }
            match self.faults.link(batch.from, Direction::Inbound) {
                LinkVerdict::Pass => {}
                LinkVerdict::Drop => continue,
                LinkVerdict::Delay(delay) => tokio::time::sleep(delay).await,
            }
            let mut dropped = 0usize;
            for bytes in &batch.messages {
                let message = wire::decode_message(bytes)
                    .map_err(|e| self.undecodable("raft message", e, remote))?;
                if wire::is_snapshot(&message) {
                    self.refused.refuse(&Refusal::SnapshotOnStream, &message);
                    continue;
                }
                if !self.raft.try_step(message) {
                    dropped += 1;
                }
            }
            if dropped > 0 {
                tracing::debug!(
                    from = %format!("{:x}", batch.from),
                    dropped,
                    "raft mailbox full; peer messages dropped (raft retransmits)"
                );
            }
        }
        Ok(Response::new(StreamAck {}))
    }

    async fn snapshot(
        &self,
        request: Request<Streaming<SnapshotChunk>>,
    ) -> Result<Response<SnapshotAck>, Status> {
        let remote = request.remote_addr();
        let got = request
            .metadata()
            .get(wire::CLUSTER_ID_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(wire::parse_cluster_id_header);
        match got {
            Some(id) if id == self.cluster_id => {}
            other => return Err(self.mismatch(other.unwrap_or(0), remote)),
        }
        let mut chunks = request.into_inner();
        let first = chunks
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("snapshot stream without chunks"))?;
        let message = wire::decode_message(&first.raft_message)
            .map_err(|e| self.undecodable("snapshot raft message", e, remote))?;
        if self.faults.link(message.from, Direction::Inbound) == LinkVerdict::Drop {
            return Err(Status::unavailable("cut off by the chaos API"));
        }
        if !wire::is_snapshot(&message) {
            self.refused.refuse(&Refusal::BadSnapshot, &message);
            return Err(Status::invalid_argument(
                "the first snapshot chunk carries no MsgSnapshot",
            ));
        }
        let descriptor = match wire::snapshot_descriptor(&message) {
            Ok(d) if d.index == message.get_snapshot().get_metadata().index => d,
            Ok(_) => {
                self.refused.refuse(&Refusal::BadSnapshot, &message);
                return Err(Status::invalid_argument(
                    "snapshot descriptor names another index than the snapshot",
                ));
            }
            Err(e) => {
                self.refused.refuse(&Refusal::BadSnapshot, &message);
                return Err(Status::invalid_argument(format!(
                    "snapshot descriptor: {e}"
                )));
            }
        };
        let dir = self.snap_dir.clone();
        let wanted = descriptor.clone();
        let mut receiver = blocking(move || dir.receiver(&wanted)).await?;
        let mut chunk = first;
        loop {
            let SnapshotChunk {
                data, offset, last, ..
            } = chunk;
            if !data.is_empty() {
                receiver = blocking(move || {
                    receiver.write(offset, &data)?;
                    Ok(receiver)
                })
                .await?;
            }
            if last {
                break;
            }
            chunk = chunks
                .message()
                .await?
                .ok_or_else(|| Status::aborted("snapshot stream ended before its last chunk"))?;
        }
        let path = blocking(move || receiver.finish()).await?;
        tracing::info!(
            from = %format!("{:x}", message.from),
            index = descriptor.index,
            size = descriptor.size,
            path = %path.display(),
            "snapshot image received"
        );
        if !self.raft.deliver_step(message).await {
            return Err(Status::unavailable("raft stopped"));
        }
        Ok(Response::new(SnapshotAck { installed: true }))
    }

    async fn members(
        &self,
        _: Request<MembersRequest>,
    ) -> Result<Response<MembersResponse>, Status> {
        Ok(Response::new(MembersResponse {
            cluster_id: self.cluster_id,
            members: self.board.members(),
        }))
    }
}

/// The `Peer` service with decode limits set for peer traffic.
pub fn peer_service<R: RaftInbox>(service: PeerService<R>) -> PeerServer<PeerService<R>> {
    PeerServer::new(service)
        .max_decoding_message_size(proto::codec::TRANSPORT_LIMIT)
        .max_encoding_message_size(usize::MAX)
}

fn server() -> tonic::transport::Server {
    tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .http2_keepalive_interval(Some(wire::KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(wire::KEEPALIVE_TIMEOUT))
}

/// Serves the `Peer` service on `addr` until the process stops (its raft
/// inbox is the raft actor's mailbox in a member). The etcd `Lease`, `Cluster` and
/// `Maintenance` services are served there too, for what other members ask
/// over the peer port in etcd (keep-alives, time-to-live and learner
/// promotion forwarded to the leader; HashKV for the corruption checks),
/// under the peer port's TLS.
pub async fn serve_peer<R: RaftInbox>(
    listener: crate::tls::Listener,
    peer: PeerService<R>,
    node: crate::handle::NodeHandle,
) -> Result<(), tonic::transport::Error> {
    let limit = proto::codec::TRANSPORT_LIMIT;
    let lease = proto::etcdserverpb::lease_server::LeaseServer::new(
        crate::grpc::lease::LeaseService::new(node.clone()),
    )
    .max_decoding_message_size(limit);
    let cluster = proto::etcdserverpb::cluster_server::ClusterServer::new(
        crate::grpc::cluster::ClusterService::for_peers(node.clone()),
    )
    .max_decoding_message_size(limit);
    let maintenance = proto::etcdserverpb::maintenance_server::MaintenanceServer::new(
        crate::grpc::maintenance::MaintenanceService::for_peers(node),
    )
    .max_decoding_message_size(limit)
    .max_encoding_message_size(usize::MAX);
    let server = server()
        .add_service(peer_service(peer))
        .add_service(lease)
        .add_service(cluster)
        .add_service(maintenance);
    match listener {
        crate::tls::Listener::Plain(addr) => server.serve(addr).await,
        crate::tls::Listener::Tls(listener, config) => {
            server
                .serve_with_incoming(crate::tls::incoming(listener, config))
                .await
        }
    }
}

/// Like [`serve_peer`], on a listener already bound (port 0 in tests).
pub async fn serve_peer_with_listener<R: RaftInbox>(
    listener: tokio::net::TcpListener,
    cluster_id: u64,
    raft: R,
    snap_dir: SnapDir,
    refused: RefusedMessages,
    board: Arc<Board>,
) -> Result<(), tonic::transport::Error> {
    server()
        .add_service(peer_service(PeerService::new(
            cluster_id, raft, snap_dir, refused, board,
        )))
        .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
        .await
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::future::Future;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use actix::{Actor, Addr, Arbiter};
    use actors::ActorMetrics;
    use actors::messages::Outbound;
    use actors::transport::core::{TransportConfig, TransportCore};
    use actors::transport::{ConnectRaft, TransportActor, TransportMetrics};
    use proto::Message as _;
    use proto::internal::SnapshotDescriptor;
    use proto::internal::peer_client::PeerClient;
    use raft::SnapshotStatus;
    use raft::eraftpb::{Message, MessageType};
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use tokio::net::TcpListener;
    use tokio::sync::Notify;
    use tokio::time::Instant;

    use super::*;

    const CLUSTER: u64 = 0xc1c1;
    const DEADLINE: Duration = Duration::from_secs(30);

    /// What the fake raft was told.
    #[derive(Debug)]
    enum Seen {
        Step(Message),
        /// A delivered step, with the image file as it was at that moment.
        Delivered {
            message: Message,
            image: Option<Vec<u8>>,
        },
        Unreachable(u64),
        Snapshot(u64, SnapshotStatus),
    }

    /// A raft stand-in that records everything.
    #[derive(Clone)]
    struct Recorder {
        seen: Arc<Mutex<Vec<Seen>>>,
        changed: Arc<Notify>,
        snap_dir: Option<SnapDir>,
    }

    impl Recorder {
        fn new(snap_dir: Option<SnapDir>) -> Self {
            Self {
                seen: Arc::default(),
                changed: Arc::default(),
                snap_dir,
            }
        }

        fn push(&self, seen: Seen) {
            self.seen.lock().unwrap().push(seen);
            self.changed.notify_waiters();
        }

        fn count(&self, what: impl Fn(&Seen) -> bool) -> usize {
            self.seen.lock().unwrap().iter().filter(|s| what(s)).count()
        }

        fn steps(&self) -> Vec<Message> {
            self.seen
                .lock()
                .unwrap()
                .iter()
                .filter_map(|s| match s {
                    Seen::Step(m) => Some(m.clone()),
                    _ => None,
                })
                .collect()
        }

        /// Waits until `done` holds, or fails the test after `within`.
        async fn wait(&self, what: &str, within: Duration, done: impl Fn(&[Seen]) -> bool) -> bool {
            let deadline = Instant::now() + within;
            loop {
                let notified = self.changed.notified();
                if done(&self.seen.lock().unwrap()) {
                    return true;
                }
                if tokio::time::timeout_at(deadline, notified).await.is_err() {
                    let seen = self.seen.lock().unwrap();
                    tracing::debug!("not yet {what}: {} events", seen.len());
                    return done(&seen);
                }
            }
        }
    }

    impl RaftInbox for Recorder {
        fn try_step(&self, message: Message) -> bool {
            self.push(Seen::Step(message));
            true
        }

        fn deliver_step(&self, message: Message) -> impl Future<Output = bool> + Send + 'static {
            let image = self.snap_dir.as_ref().and_then(|dir| {
                let index = wire::snapshot_descriptor(&message).ok()?.index;
                std::fs::read(dir.path(index)).ok()
            });
            self.push(Seen::Delivered { message, image });
            async { true }
        }

        fn report_unreachable(&self, id: u64) {
            self.push(Seen::Unreachable(id));
        }

        fn report_snapshot(
            &self,
            id: u64,
            status: SnapshotStatus,
        ) -> impl Future<Output = bool> + Send + 'static {
            self.push(Seen::Snapshot(id, status));
            async { true }
        }
    }

    fn test_config() -> TransportConfig {
        TransportConfig {
            backoff_min: Duration::from_millis(10),
            backoff_max: Duration::from_millis(200),
            connect_timeout: Duration::from_millis(500),
            send_timeout: Duration::from_secs(2),
            ..TransportConfig::default()
        }
    }

    struct Sender {
        addr: Addr<TransportActor<Recorder>>,
        raft: Recorder,
        metrics: TransportMetrics,
        _dir: tempfile::TempDir,
        snap_dir: SnapDir,
    }

    /// Member 1's transport, knowing member 2 at `peer`.
    async fn start_sender(cluster_id: u64, peer: SocketAddr) -> Sender {
        let seed: u64 = rand::random();
        println!("transport seed: {seed}");
        let dir = tempfile::tempdir().unwrap();
        let snap_dir = SnapDir::open(dir.path()).unwrap();
        let metrics = TransportMetrics::unregistered();
        let peers = HashMap::from([(2, vec![format!("http://{peer}")])]);
        let core = TransportCore::new(1, cluster_id, peers, test_config(), seed, metrics.clone());
        let probe = ActorMetrics::unregistered().for_actor("transport");
        let images = snap_dir.clone();
        let addr = TransportActor::start_in_arbiter(&Arbiter::new().handle(), move |_| {
            TransportActor::new(core, images, probe)
        });
        let raft = Recorder::new(None);
        addr.send(ConnectRaft { raft: raft.clone() }).await.unwrap();
        Sender {
            addr,
            raft,
            metrics,
            _dir: dir,
            snap_dir,
        }
    }

    struct Receiver {
        addr: SocketAddr,
        raft: Recorder,
        refused: RefusedMessages,
        _dir: tempfile::TempDir,
    }

    /// Member 2's peer server, on `listener`.
    fn start_receiver(listener: TcpListener) -> Receiver {
        let dir = tempfile::tempdir().unwrap();
        let snap_dir = SnapDir::open(dir.path()).unwrap();
        let raft = Recorder::new(Some(snap_dir.clone()));
        let addr = listener.local_addr().unwrap();
        let refused = RefusedMessages::unregistered();
        tokio::spawn(serve_peer_with_listener(
            listener,
            CLUSTER,
            raft.clone(),
            snap_dir,
            refused.clone(),
            actors::board::Board::new(0, 0),
        ));
        Receiver {
            addr,
            raft,
            refused,
            _dir: dir,
        }
    }

    async fn bind() -> TcpListener {
        TcpListener::bind("127.0.0.1:0").await.unwrap()
    }

    fn append(to: u64, index: u64) -> Message {
        let mut m = Message::default();
        m.set_msg_type(MessageType::MsgAppend);
        m.from = 1;
        m.to = to;
        m.index = index;
        m.mut_entries().push(raft::eraftpb::Entry {
            index: index + 1,
            data: vec![(index % 251) as u8; 100].into(),
            ..Default::default()
        });
        m
    }

    fn snapshot_message(to: u64, d: &SnapshotDescriptor) -> Message {
        let mut m = Message::default();
        m.set_msg_type(MessageType::MsgSnapshot);
        m.from = 1;
        m.to = to;
        m.mut_snapshot().set_data(d.encode_to_vec().into());
        m.mut_snapshot().mut_metadata().index = d.index;
        m.mut_snapshot().mut_metadata().term = 3;
        m
    }

    /// A client of `receiver`'s peer service.
    async fn connect(receiver: &Receiver) -> PeerClient<tonic::transport::Channel> {
        PeerClient::connect(format!("http://{}", receiver.addr))
            .await
            .unwrap()
    }

    /// A descriptor whose hash matches no image.
    fn unverified(index: u64, size: u64) -> SnapshotDescriptor {
        SnapshotDescriptor {
            index,
            size,
            sha256: vec![0; 32],
        }
    }

    /// One `Snapshot` call with this cluster's id, carrying `chunks`.
    async fn snapshot_call(
        client: &mut PeerClient<tonic::transport::Channel>,
        chunks: Vec<SnapshotChunk>,
    ) -> Result<Response<SnapshotAck>, Status> {
        let mut request = Request::new(tokio_stream::iter(chunks));
        request.metadata_mut().insert(
            wire::CLUSTER_ID_HEADER,
            wire::cluster_id_header_value(CLUSTER).parse().unwrap(),
        );
        client.snapshot(request).await
    }

    /// Polls `done` every few milliseconds until it holds or `DEADLINE`.
    async fn eventually(done: impl Fn() -> bool) -> bool {
        let deadline = Instant::now() + DEADLINE;
        while Instant::now() < deadline {
            if done() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        done()
    }

    #[actix_rt::test]
    async fn batches_arrive_in_order() {
        let receiver = start_receiver(bind().await);
        let sender = start_sender(CLUSTER, receiver.addr).await;

        // The first message waits in the queue while the link connects.
        sender
            .addr
            .send(Outbound {
                messages: vec![append(2, 0)],
            })
            .await
            .unwrap();
        assert!(
            receiver
                .raft
                .wait("first step", DEADLINE, |s| !s.is_empty())
                .await,
            "the first message never arrived"
        );

        // Then 600 messages in three Readies, with one for an unknown
        // member in the middle.
        for round in 0..3u64 {
            let mut messages: Vec<Message> =
                (1..=200).map(|i| append(2, round * 200 + i)).collect();
            messages.insert(100, append(9, 0));
            sender.addr.send(Outbound { messages }).await.unwrap();
        }
        assert!(
            receiver
                .raft
                .wait("all steps", DEADLINE, |s| s.len() >= 601)
                .await,
            "only {} messages arrived",
            receiver.raft.steps().len()
        );
        let indexes: Vec<u64> = receiver.raft.steps().iter().map(|m| m.index).collect();
        assert_eq!(indexes, (0..=600).collect::<Vec<u64>>());
        assert!(
            receiver
                .raft
                .steps()
                .iter()
                .all(|m| m.to == 2 && m.entries.len() == 1)
        );
        assert_eq!(sender.metrics.sent_count(2), 601);
        assert_eq!(sender.raft.count(|s| matches!(s, Seen::Unreachable(_))), 0);
    }

    #[actix_rt::test]
    async fn snapshot_image_is_verified_before_its_message_is_stepped() {
        let seed: u64 = rand::random();
        println!("image seed: {seed}");
        let mut rng = StdRng::seed_from_u64(seed);
        let size = 3 * 1024 * 1024 + rng.gen_range(0..100_000);
        let body: Vec<u8> = (0..size).map(|_| rng.r#gen()).collect();

        let receiver = start_receiver(bind().await);
        let sender = start_sender(CLUSTER, receiver.addr).await;
        let descriptor = sender
            .snap_dir
            .create(7, |p| Ok(std::fs::write(p, &body)?))
            .unwrap();

        let message = snapshot_message(2, &descriptor);
        sender
            .addr
            .send(Outbound {
                messages: vec![message],
            })
            .await
            .unwrap();
        assert!(
            sender
                .raft
                .wait("snapshot report", DEADLINE, |s| {
                    s.iter().any(|e| matches!(e, Seen::Snapshot(2, _)))
                })
                .await,
            "no snapshot report"
        );
        assert_eq!(
            sender
                .raft
                .count(|s| matches!(s, Seen::Snapshot(2, SnapshotStatus::Finish))),
            1
        );

        let seen = receiver.raft.seen.lock().unwrap();
        let [Seen::Delivered { message, image }] = seen.as_slice() else {
            panic!("expected exactly one delivered MsgSnapshot, got {seen:?}");
        };
        assert_eq!(message.get_msg_type(), MessageType::MsgSnapshot);
        assert_eq!(message.get_snapshot().get_metadata().index, 7);
        assert_eq!(wire::snapshot_descriptor(message).unwrap(), descriptor);
        let image = image
            .as_ref()
            .expect("the image was in place when raft got the message");
        assert!(image == &body, "the image differs from the one sent");
    }

    #[actix_rt::test]
    async fn a_down_peer_is_reported_and_reached_once_up() {
        // Hold a port without listening on it: the peer is down (refused
        // connections), and no other test can take the port meanwhile.
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let peer = socket.local_addr().unwrap();
        let sender = start_sender(CLUSTER, peer).await;

        sender
            .addr
            .send(Outbound {
                messages: vec![append(2, 0)],
            })
            .await
            .unwrap();
        assert!(
            eventually(|| sender.metrics.link_failure_count(2) >= 3).await,
            "the link never failed three times"
        );
        // Several failures, one episode: one report. The report travels
        // apart from the failure counter, so wait for it before counting.
        assert!(
            sender
                .raft
                .wait("unreachable report", DEADLINE, |s| {
                    s.iter().any(|e| matches!(e, Seen::Unreachable(2)))
                })
                .await,
            "no unreachable report"
        );
        assert_eq!(sender.raft.count(|s| matches!(s, Seen::Unreachable(2))), 1);

        // A snapshot for a down peer fails and is reported as such.
        let descriptor = sender
            .snap_dir
            .create(5, |p| Ok(std::fs::write(p, b"image")?))
            .unwrap();
        let message = snapshot_message(2, &descriptor);
        sender
            .addr
            .send(Outbound {
                messages: vec![message],
            })
            .await
            .unwrap();
        assert!(
            sender
                .raft
                .wait("snapshot failure", DEADLINE, |s| {
                    s.iter()
                        .any(|e| matches!(e, Seen::Snapshot(2, SnapshotStatus::Failure)))
                })
                .await,
            "no snapshot failure report"
        );

        // The peer comes up; raft's retransmissions (one message per round
        // here) get through once the link has reconnected.
        let listener = socket.listen(1024).unwrap();
        let receiver = start_receiver(listener);
        let mut delivered = false;
        for round in 1..=300u64 {
            sender
                .addr
                .send(Outbound {
                    messages: vec![append(2, round)],
                })
                .await
                .unwrap();
            if receiver
                .raft
                .wait("a retransmission", Duration::from_millis(100), |s| {
                    !s.is_empty()
                })
                .await
            {
                delivered = true;
                break;
            }
        }
        assert!(delivered, "nothing reached the peer after it came up");
        // Messages stay in order once the link is up.
        let indexes: Vec<u64> = receiver.raft.steps().iter().map(|m| m.index).collect();
        assert!(indexes.windows(2).all(|w| w[0] < w[1]), "{indexes:?}");
    }

    #[actix_rt::test]
    async fn a_wrong_cluster_id_is_refused() {
        let receiver = start_receiver(bind().await);
        let url = format!("http://{}", receiver.addr);
        let mut client = PeerClient::connect(url).await.unwrap();

        let batch = RaftBatch {
            from: 1,
            cluster_id: CLUSTER + 1,
            messages: vec![wire::encode_message(&append(2, 1)).unwrap()],
        };
        let status = client
            .stream(tokio_stream::iter(vec![batch]))
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::FailedPrecondition);
        assert_eq!(status.message(), wire::CLUSTER_ID_MISMATCH);

        let d = unverified(3, 1);
        let chunk = SnapshotChunk {
            raft_message: wire::encode_message(&snapshot_message(2, &d)).unwrap(),
            data: vec![1],
            offset: 0,
            last: true,
        };
        // Without the header, then with another cluster's id.
        let status = client
            .snapshot(tokio_stream::iter(vec![chunk.clone()]))
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::FailedPrecondition);
        let mut request = Request::new(tokio_stream::iter(vec![chunk]));
        request.metadata_mut().insert(
            wire::CLUSTER_ID_HEADER,
            wire::cluster_id_header_value(CLUSTER + 1).parse().unwrap(),
        );
        let status = client.snapshot(request).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::FailedPrecondition);

        // A transport of another cluster sees the peer as unreachable.
        let sender = start_sender(CLUSTER + 1, receiver.addr).await;
        sender
            .addr
            .send(Outbound {
                messages: vec![append(2, 1)],
            })
            .await
            .unwrap();
        assert!(
            sender
                .raft
                .wait("unreachable", DEADLINE, |s| {
                    s.iter().any(|e| matches!(e, Seen::Unreachable(2)))
                })
                .await,
            "a refused stream was not reported"
        );
        assert_eq!(receiver.raft.count(|_| true), 0, "nothing may reach raft");
    }

    #[actix_rt::test]
    async fn a_corrupt_image_is_refused_and_not_stepped() {
        let receiver = start_receiver(bind().await);
        let mut client = connect(&receiver).await;
        let d = unverified(4, 3);
        let chunks = vec![
            SnapshotChunk {
                raft_message: wire::encode_message(&snapshot_message(2, &d)).unwrap(),
                data: b"ab".to_vec(),
                offset: 0,
                last: false,
            },
            SnapshotChunk {
                data: b"c".to_vec(),
                offset: 2,
                last: true,
                ..Default::default()
            },
        ];
        let status = snapshot_call(&mut client, chunks).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::DataLoss, "{status:?}");
        assert_eq!(receiver.raft.count(|_| true), 0);
    }

    #[actix_rt::test]
    async fn snapshots_and_garbage_on_the_stream_are_refused_and_counted() {
        let receiver = start_receiver(bind().await);
        let mut client = connect(&receiver).await;
        let d = unverified(4, 3);
        let batch = RaftBatch {
            from: 1,
            cluster_id: CLUSTER,
            messages: vec![
                wire::encode_message(&append(2, 1)).unwrap(),
                wire::encode_message(&snapshot_message(2, &d)).unwrap(),
                wire::encode_message(&append(2, 2)).unwrap(),
            ],
        };
        client
            .stream(tokio_stream::iter(vec![batch]))
            .await
            .expect("the stream goes on past a refused snapshot");
        let indexes: Vec<u64> = receiver.raft.steps().iter().map(|m| m.index).collect();
        assert_eq!(indexes, vec![1, 2], "only the appends reach raft");
        assert_eq!(receiver.refused.count(&Refusal::SnapshotOnStream), 1);

        let garbage = RaftBatch {
            from: 1,
            cluster_id: CLUSTER,
            messages: vec![vec![0xff; 5]],
        };
        let status = client
            .stream(tokio_stream::iter(vec![garbage]))
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
        assert_eq!(receiver.refused.count(&Refusal::Undecodable), 1);
        assert_eq!(receiver.raft.steps().len(), 2);
    }

    #[actix_rt::test]
    async fn a_snapshot_descriptor_for_another_index_is_refused() {
        let receiver = start_receiver(bind().await);
        let mut client = connect(&receiver).await;
        let d = unverified(4, 1);
        let mut message = snapshot_message(2, &d);
        message.mut_snapshot().mut_metadata().index = 5;
        let chunks = vec![SnapshotChunk {
            raft_message: wire::encode_message(&message).unwrap(),
            data: b"a".to_vec(),
            offset: 0,
            last: true,
        }];
        let status = snapshot_call(&mut client, chunks).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
        assert_eq!(receiver.refused.count(&Refusal::BadSnapshot), 1);
        assert_eq!(receiver.raft.count(|_| true), 0);
    }
}
