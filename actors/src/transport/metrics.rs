//! Peer transport metrics, registered in the node's `prometheus::Registry`:
//! - `oxcd_transport_messages_sent_total{peer}`: raft messages written to
//!   the peer's stream;
//! - `oxcd_transport_messages_dropped_total{peer,reason}`: raft messages
//!   never sent (`queue_full`, `link_down`, `unknown_peer`, `encode`); raft
//!   retransmits what matters;
//! - `oxcd_transport_batch_messages` / `oxcd_transport_batch_bytes`: size of
//!   each `RaftBatch` handed to a stream;
//! - `oxcd_transport_link_failures_total{peer}`: failed connects and broken
//!   streams;
//! - `oxcd_transport_snapshots_total{peer,result}`: snapshot sends
//!   (`finish`, `failure`).
//!
//! And etcd's network families, under etcd's names and labels:
//! - `etcd_network_peer_sent_bytes_total{To}`: encoded bytes of the raft
//!   batches handed to each peer's stream;
//! - `etcd_network_peer_received_bytes_total{From}`: encoded bytes of the
//!   raft batches received from each peer;
//! - `etcd_network_peer_round_trip_time_seconds{To}`: round trips of the
//!   link's probe (a `Peer.Members` call on the link's connection every
//!   [`PROBE_INTERVAL`], as etcd's prober GETs `/raft/probing` every 4 s).
//!
//! Peers are labelled with their member id in hex, as etcd prints ids.

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry,
    exponential_buckets,
};

/// How often a link measures the round trip to its peer (etcd's
/// `proberInterval`: its connection read timeout less a second).
pub const PROBE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(4);

/// Why a message was not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The peer's queue held its capacity.
    QueueFull,
    /// The peer's stream was down when the batch reached it.
    LinkDown,
    /// No such peer (not added yet, or removed).
    UnknownPeer,
    /// rust-protobuf refused to encode it.
    Encode,
    /// The chaos API dropped it (a link fault or a partition), or a
    /// restart of the transport discarded its queue.
    Chaos,
}

impl DropReason {
    fn label(self) -> &'static str {
        match self {
            DropReason::QueueFull => "queue_full",
            DropReason::LinkDown => "link_down",
            DropReason::Chaos => "chaos",
            DropReason::UnknownPeer => "unknown_peer",
            DropReason::Encode => "encode",
        }
    }
}

/// The transport's metric families. Cheap to clone.
#[derive(Clone)]
pub struct TransportMetrics {
    sent: IntCounterVec,
    dropped: IntCounterVec,
    batch_messages: Histogram,
    batch_bytes: Histogram,
    link_failures: IntCounterVec,
    snapshots: IntCounterVec,
    sent_bytes: IntCounterVec,
    received_bytes: IntCounterVec,
    round_trip: HistogramVec,
}

/// One link's resolved series (labels looked up once per link, not per
/// batch).
#[derive(Clone)]
pub struct LinkMetrics {
    /// `etcd_network_peer_sent_bytes_total{To=<peer>}`.
    pub sent_bytes: IntCounter,
    /// `etcd_network_peer_round_trip_time_seconds{To=<peer>}`.
    pub round_trip: Histogram,
}

fn peer_label(peer: u64) -> String {
    format!("{peer:x}")
}

impl TransportMetrics {
    /// Creates the families and registers them in `registry`.
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let sent = IntCounterVec::new(
            Opts::new(
                "oxcd_transport_messages_sent_total",
                "Raft messages written to each peer's stream.",
            ),
            &["peer"],
        )?;
        let dropped = IntCounterVec::new(
            Opts::new(
                "oxcd_transport_messages_dropped_total",
                "Raft messages not sent to each peer, by reason.",
            ),
            &["peer", "reason"],
        )?;
        let batch_messages = Histogram::with_opts(
            HistogramOpts::new(
                "oxcd_transport_batch_messages",
                "Raft messages per batch handed to a peer stream.",
            )
            .buckets(exponential_buckets(1.0, 2.0, 13)?),
        )?;
        let batch_bytes = Histogram::with_opts(
            HistogramOpts::new(
                "oxcd_transport_batch_bytes",
                "Encoded bytes per batch handed to a peer stream.",
            )
            .buckets(exponential_buckets(64.0, 4.0, 10)?),
        )?;
        let link_failures = IntCounterVec::new(
            Opts::new(
                "oxcd_transport_link_failures_total",
                "Failed connects and broken streams, per peer.",
            ),
            &["peer"],
        )?;
        let snapshots = IntCounterVec::new(
            Opts::new(
                "oxcd_transport_snapshots_total",
                "Snapshot sends per peer, by result.",
            ),
            &["peer", "result"],
        )?;
        let sent_bytes = IntCounterVec::new(
            Opts::new(
                "etcd_network_peer_sent_bytes_total",
                "The total number of bytes sent to peers.",
            ),
            &["To"],
        )?;
        let received_bytes = IntCounterVec::new(
            Opts::new(
                "etcd_network_peer_received_bytes_total",
                "The total number of bytes received from peers.",
            ),
            &["From"],
        )?;
        // etcd's buckets: 0.0001 s to 3.2768 s.
        let round_trip = HistogramVec::new(
            HistogramOpts::new(
                "etcd_network_peer_round_trip_time_seconds",
                "Round-Trip-Time histogram between peers",
            )
            .buckets(exponential_buckets(0.0001, 2.0, 16)?),
            &["To"],
        )?;
        registry.register(Box::new(sent_bytes.clone()))?;
        registry.register(Box::new(received_bytes.clone()))?;
        registry.register(Box::new(round_trip.clone()))?;
        registry.register(Box::new(sent.clone()))?;
        registry.register(Box::new(dropped.clone()))?;
        registry.register(Box::new(batch_messages.clone()))?;
        registry.register(Box::new(batch_bytes.clone()))?;
        registry.register(Box::new(link_failures.clone()))?;
        registry.register(Box::new(snapshots.clone()))?;
        Ok(Self {
            sent,
            dropped,
            batch_messages,
            batch_bytes,
            link_failures,
            snapshots,
            sent_bytes,
            received_bytes,
            round_trip,
        })
    }

    /// The series one link to `peer` reports on.
    pub fn link(&self, peer: u64) -> LinkMetrics {
        let label = peer_label(peer);
        LinkMetrics {
            sent_bytes: self.sent_bytes.with_label_values(&[&label]),
            round_trip: self.round_trip.with_label_values(&[&label]),
        }
    }

    /// `etcd_network_peer_received_bytes_total{From=<peer>}`, resolved once
    /// per inbound stream.
    pub fn received_from(&self, peer: u64) -> IntCounter {
        self.received_bytes.with_label_values(&[&peer_label(peer)])
    }

    /// Metrics for a registry nobody scrapes (tests).
    pub fn unregistered() -> Self {
        Self::new(&Registry::new()).expect("fresh registry accepts every family")
    }

    pub(crate) fn sent(&self, peer: u64, messages: usize) {
        self.sent
            .with_label_values(&[&peer_label(peer)])
            .inc_by(messages as u64);
    }

    pub(crate) fn dropped(&self, peer: u64, reason: DropReason, messages: usize) {
        self.dropped
            .with_label_values(&[&peer_label(peer), reason.label()])
            .inc_by(messages as u64);
    }

    pub(crate) fn batch(&self, messages: usize, bytes: usize) {
        self.batch_messages.observe(messages as f64);
        self.batch_bytes.observe(bytes as f64);
    }

    pub(crate) fn link_failed(&self, peer: u64) {
        self.link_failures
            .with_label_values(&[&peer_label(peer)])
            .inc();
    }

    pub(crate) fn snapshot(&self, peer: u64, ok: bool) {
        let result = if ok { "finish" } else { "failure" };
        self.snapshots
            .with_label_values(&[&peer_label(peer), result])
            .inc();
    }

    /// Messages sent to `peer` so far.
    pub fn sent_count(&self, peer: u64) -> u64 {
        self.sent.with_label_values(&[&peer_label(peer)]).get()
    }

    /// Messages for `peer` dropped for `reason` so far.
    pub fn dropped_count(&self, peer: u64, reason: DropReason) -> u64 {
        self.dropped
            .with_label_values(&[&peer_label(peer), reason.label()])
            .get()
    }

    /// Link failures towards `peer` so far.
    pub fn link_failure_count(&self, peer: u64) -> u64 {
        self.link_failures
            .with_label_values(&[&peer_label(peer)])
            .get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_register_and_count() {
        let registry = Registry::new();
        let m = TransportMetrics::new(&registry).unwrap();
        m.sent(0x2a, 3);
        m.dropped(0x2a, DropReason::QueueFull, 2);
        m.batch(3, 300);
        assert_eq!(m.sent_count(0x2a), 3);
        assert_eq!(m.dropped_count(0x2a, DropReason::QueueFull), 2);
        assert_eq!(m.dropped_count(0x2a, DropReason::LinkDown), 0);
        let names: Vec<String> = registry
            .gather()
            .iter()
            .map(|f| f.name().to_string())
            .collect();
        assert!(names.contains(&"oxcd_transport_messages_sent_total".to_string()));
        assert!(names.contains(&"oxcd_transport_batch_bytes".to_string()));
        // A second registration of the same families is refused.
        assert!(TransportMetrics::new(&registry).is_err());
    }
}
