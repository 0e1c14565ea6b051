//! The transport's network I/O, run in tasks beside the actor so that a
//! slow or dead peer never blocks it (or raft, or the other peers).
//!
//! A peer link ([`run_link`]), one task per peer:
//! 1. Connect to one of the peer's URLs, bounded by the connect timeout
//!    (batches wait in the core's queue meanwhile).
//! 2. Open the long-lived `Peer.Stream` RPC, fed by a channel of one batch;
//!    hand it each batch from the actor within the send timeout and report
//!    it `Sent` (or `Discarded` if the stream broke under it). Beside the
//!    stream, on the same connection, a probe task times a `Peer.Members`
//!    call every [`PROBE_INTERVAL`] (etcd's peer round-trip histogram).
//! 3. When the connect fails or the stream ends, report `Failed`, then wait
//!    a jittered, growing delay ([`Backoff`]), discarding the batches that
//!    arrive meanwhile (they are stale by the time the peer is back), and
//!    start over with the next URL. A stream that lived longer than the
//!    largest delay resets the backoff.
//! 4. Stop when the actor drops the batch channel (peer removed) or stops.
//!
//! A snapshot send ([`send_snapshot`]), one task per snapshot: open the
//! image, connect, stream it through `Peer.Snapshot` in chunks (the first
//! carries the `MsgSnapshot`), then wait for the receiver's verdict.

use std::path::PathBuf;
use std::time::Duration;

use actix::WeakRecipient;
use proto::internal::peer_client::PeerClient;
use proto::internal::{RaftBatch, SnapshotAck, SnapshotChunk, SnapshotDescriptor, StreamAck};
use raft::eraftpb::Message;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};

use super::core::{Backoff, LinkReport, TransportConfig};
use super::messages::LinkEvent;
use super::metrics::{LinkMetrics, PROBE_INTERVAL};
use super::wire;

/// What one link task needs.
pub(crate) struct LinkSpec {
    pub peer: u64,
    pub link: u64,
    pub urls: Vec<String>,
    pub seed: u64,
    pub config: TransportConfig,
    pub metrics: LinkMetrics,
}

/// Sends a link's reports to its actor.
struct Reporter {
    peer: u64,
    link: u64,
    events: WeakRecipient<LinkEvent>,
}

impl Reporter {
    /// `false` when the actor is gone (the link then stops).
    async fn report(&self, report: LinkReport) -> bool {
        let Some(events) = self.events.upgrade() else {
            return false;
        };
        events
            .send(LinkEvent {
                peer: self.peer,
                link: self.link,
                report,
            })
            .await
            .is_ok()
    }
}

/// Connects to `url` (step 1), over TLS for an `https://` URL.
async fn connect(url: &str, config: &TransportConfig) -> Result<Channel, String> {
    let mut endpoint = Endpoint::from_shared(url.to_string())
        .map_err(|e| format!("{url}: {}", proto::errors::error_chain(&e)))?;
    if url.starts_with("https://") {
        let tls = config
            .tls
            .as_ref()
            .ok_or_else(|| {
                format!("{url}: an https peer URL, but no --peer-cert-file/--peer-key-file")
            })?
            .config()
            .map_err(|e| format!("{url}: peer TLS files: {e}"))?;
        endpoint = endpoint
            .tls_config(tls)
            .map_err(|e| format!("{url}: {}", proto::errors::error_chain(&e)))?;
    }
    let endpoint = endpoint
        .connect_timeout(config.connect_timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(config.keepalive_interval)
        .keep_alive_timeout(config.keepalive_timeout)
        .keep_alive_while_idle(true);
    match timeout(config.connect_timeout, endpoint.connect()).await {
        Ok(Ok(channel)) => Ok(channel),
        Ok(Err(e)) => Err(format!("{url}: {}", proto::errors::error_chain(&e))),
        Err(_) => Err(format!(
            "{url}: connect timed out after {:?}",
            config.connect_timeout
        )),
    }
}

/// Connects to the first of `urls` that answers.
async fn connect_any(urls: &[String], config: &TransportConfig) -> Result<Channel, String> {
    let mut reasons = Vec::new();
    for url in urls {
        match connect(url, config).await {
            Ok(channel) => return Ok(channel),
            Err(reason) => reasons.push(reason),
        }
    }
    if reasons.is_empty() {
        return Err("no usable peer URL".to_string());
    }
    Err(reasons.join("; "))
}

fn status_text(status: &tonic::Status) -> String {
    format!("peer answered {:?}: {}", status.code(), status.message())
}

fn stream_end(result: Result<tonic::Response<StreamAck>, tonic::Status>) -> String {
    match result {
        Ok(_) => "peer closed the stream".to_string(),
        Err(status) => status_text(&status),
    }
}

/// How one connected stream ended.
enum End {
    /// The link must stop (peer removed or actor gone).
    Stop,
    /// The peer says this member was removed from the cluster.
    Removed,
    /// The stream broke; reconnect.
    Broken(String),
}

fn ended(result: Result<tonic::Response<StreamAck>, tonic::Status>) -> End {
    match result {
        Err(status) if wire::is_removed(&status) => End::Removed,
        other => End::Broken(stream_end(other)),
    }
}

/// Times a `Peer.Members` call on `channel` every [`PROBE_INTERVAL`], the
/// first at once: a round trip over the connection the stream uses,
/// answered by the peer's gRPC server from memory (no disk, no raft). A
/// probe that fails or takes longer than the interval is not recorded (the
/// stream's own failure handling notices a dead peer).
async fn probe_round_trips(channel: Channel, metrics: LinkMetrics) {
    let mut client = PeerClient::new(channel);
    let mut ticks = tokio::time::interval(PROBE_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let start = Instant::now();
        let call = client.members(proto::internal::MembersRequest {});
        if let Ok(Ok(_)) = timeout(PROBE_INTERVAL, call).await {
            metrics.round_trip.observe(start.elapsed().as_secs_f64());
        }
    }
}

/// Aborts a spawned task when dropped (the probe of a stream that ended).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Step 2: forwards batches into one `Stream` call until it breaks.
async fn stream_batches(
    channel: Channel,
    batches: &mut mpsc::Receiver<RaftBatch>,
    reporter: &Reporter,
    config: &TransportConfig,
    metrics: &LinkMetrics,
) -> End {
    let _probe = AbortOnDrop(tokio::spawn(probe_round_trips(
        channel.clone(),
        metrics.clone(),
    )));
    let (tx, rx) = mpsc::channel::<RaftBatch>(1);
    let mut client = PeerClient::new(channel);
    let call = client.stream(ReceiverStream::new(rx));
    tokio::pin!(call);
    loop {
        let batch = tokio::select! {
            result = &mut call => return ended(result),
            batch = batches.recv() => match batch {
                Some(batch) => batch,
                None => return End::Stop,
            },
        };
        let messages = batch.messages.len();
        let bytes = proto::Message::encoded_len(&batch) as u64;
        let sent = tokio::select! {
            result = &mut call => match ended(result) {
                End::Broken(reason) => Err(reason),
                end => return end,
            },
            sent = timeout(config.send_timeout, tx.send(batch)) => match sent {
                Ok(Ok(())) => Ok(()),
                Ok(Err(_)) => Err("stream closed".to_string()),
                Err(_) => Err(format!("peer did not take a batch within {:?}", config.send_timeout)),
            },
        };
        match sent {
            Ok(()) => {
                metrics.sent_bytes.inc_by(bytes);
                if !reporter.report(LinkReport::Sent { messages }).await {
                    return End::Stop;
                }
            }
            Err(reason) => {
                if !reporter.report(LinkReport::Discarded { messages }).await {
                    return End::Stop;
                }
                return End::Broken(reason);
            }
        }
    }
}

/// Step 3: waits `delay`, discarding the batches that arrive meanwhile;
/// `false` when the link must stop.
async fn discard_for(
    delay: Duration,
    batches: &mut mpsc::Receiver<RaftBatch>,
    reporter: &Reporter,
) -> bool {
    let sleep = tokio::time::sleep(delay);
    tokio::pin!(sleep);
    loop {
        tokio::select! {
            _ = &mut sleep => return true,
            batch = batches.recv() => match batch {
                None => return false,
                Some(batch) => {
                    let messages = batch.messages.len();
                    if !reporter.report(LinkReport::Discarded { messages }).await {
                        return false;
                    }
                }
            },
        }
    }
}

/// One peer's outbound stream, kept up until `batches` closes.
pub(crate) async fn run_link(
    spec: LinkSpec,
    mut batches: mpsc::Receiver<RaftBatch>,
    events: WeakRecipient<LinkEvent>,
) {
    let reporter = Reporter {
        peer: spec.peer,
        link: spec.link,
        events,
    };
    let config = spec.config;
    let mut backoff = Backoff::new(config.backoff_min, config.backoff_max, spec.seed);
    let mut next_url = 0usize;
    loop {
        let (reason, uptime) = if spec.urls.is_empty() {
            ("no usable peer URL".to_string(), Duration::ZERO)
        } else {
            let url = &spec.urls[next_url % spec.urls.len()];
            match connect(url, &config).await {
                Err(reason) => {
                    next_url = next_url.wrapping_add(1);
                    (reason, Duration::ZERO)
                }
                Ok(channel) => {
                    if !reporter.report(LinkReport::Connected).await {
                        return;
                    }
                    let up = Instant::now();
                    match stream_batches(channel, &mut batches, &reporter, &config, &spec.metrics)
                        .await
                    {
                        End::Stop => return,
                        End::Removed => {
                            reporter.report(LinkReport::Removed).await;
                            return;
                        }
                        End::Broken(reason) => (reason, up.elapsed()),
                    }
                }
            }
        };
        if !reporter.report(LinkReport::Failed { reason }).await {
            return;
        }
        if uptime >= config.backoff_max {
            backoff.reset();
        }
        if !discard_for(backoff.next_delay(), &mut batches, &reporter).await {
            return;
        }
    }
}

/// What one snapshot send needs.
pub(crate) struct SnapshotSpec {
    pub urls: Vec<String>,
    pub cluster_id: u64,
    pub message: Box<Message>,
    pub descriptor: SnapshotDescriptor,
    pub path: PathBuf,
    pub config: TransportConfig,
}

/// Reads the image and hands it to the stream, chunk by chunk.
async fn produce_chunks(
    mut file: tokio::fs::File,
    raft_message: Vec<u8>,
    size: u64,
    tx: mpsc::Sender<SnapshotChunk>,
    config: &TransportConfig,
) -> Result<(), String> {
    let chunk_bytes = config.snapshot_chunk_bytes.max(1) as u64;
    let mut raft_message = Some(raft_message);
    let mut offset = 0u64;
    loop {
        let len = chunk_bytes.min(size - offset) as usize;
        let mut data = vec![0u8; len];
        file.read_exact(&mut data)
            .await
            .map_err(|e| format!("reading the image at {offset}: {e}"))?;
        let last = offset + len as u64 == size;
        let chunk = SnapshotChunk {
            raft_message: raft_message.take().unwrap_or_default(),
            data,
            offset,
            last,
        };
        match timeout(config.send_timeout, tx.send(chunk)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err("snapshot stream closed".to_string()),
            Err(_) => {
                return Err(format!(
                    "peer did not take a snapshot chunk within {:?}",
                    config.send_timeout
                ));
            }
        }
        offset += len as u64;
        if last {
            return Ok(());
        }
    }
}

fn snapshot_answer(
    result: Result<tonic::Response<SnapshotAck>, tonic::Status>,
) -> Result<(), String> {
    match result {
        Ok(ack) if ack.get_ref().installed => Ok(()),
        Ok(_) => Err("peer did not install the snapshot".to_string()),
        Err(status) => Err(status_text(&status)),
    }
}

/// Streams one snapshot image to a peer; `Ok` once the peer verified it
/// and handed the `MsgSnapshot` to its raft.
pub(crate) async fn send_snapshot(spec: SnapshotSpec) -> Result<(), String> {
    let SnapshotSpec {
        urls,
        cluster_id,
        message,
        descriptor,
        path,
        config,
    } = spec;
    let raft_message = wire::encode_message(&message).map_err(|e| format!("encoding: {e}"))?;
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let size = file
        .metadata()
        .await
        .map_err(|e| format!("{}: {e}", path.display()))?
        .len();
    if size != descriptor.size {
        return Err(format!(
            "{}: {size} bytes, the snapshot names {}",
            path.display(),
            descriptor.size
        ));
    }
    let channel = connect_any(&urls, &config).await?;
    let mut client = PeerClient::new(channel);
    let (tx, rx) = mpsc::channel::<SnapshotChunk>(2);
    let mut request = tonic::Request::new(ReceiverStream::new(rx));
    let header = wire::cluster_id_header_value(cluster_id)
        .parse()
        .map_err(|e| format!("cluster id header: {e}"))?;
    request
        .metadata_mut()
        .insert(wire::CLUSTER_ID_HEADER, header);
    let call = client.snapshot(request);
    tokio::pin!(call);
    let produce = produce_chunks(file, raft_message, size, tx, &config);
    tokio::pin!(produce);
    let produced = tokio::select! {
        result = &mut call => {
            // The peer answered before the last chunk: only an error can
            // come that early.
            return snapshot_answer(result).and(Err("peer answered before the last chunk".to_string()));
        }
        produced = &mut produce => produced,
    };
    if let Err(reason) = produced {
        // The peer's status, if it gave one, says more than a closed stream.
        return match timeout(config.send_timeout, &mut call).await {
            Ok(Err(status)) => Err(status_text(&status)),
            _ => Err(reason),
        };
    }
    match timeout(config.snapshot_ack_timeout, call).await {
        Ok(result) => snapshot_answer(result),
        Err(_) => Err(format!(
            "no answer within {:?} after the last chunk",
            config.snapshot_ack_timeout
        )),
    }
}
