//! Per-actor metrics, registered in one `prometheus::Registry` owned by the
//! node (no global registry):
//! - `oxcd_actor_messages_total{actor,message}`: messages handled, by type;
//! - `oxcd_actor_handle_seconds{actor,message}`: handling time histogram;
//! - `oxcd_actor_mailbox_depth{actor}`: messages accepted and not yet handled;
//! - `oxcd_actor_mailbox_rejected_total{actor}`: sends refused because full;
//! - `oxcd_actor_restarts_total{actor}`: restarts by the actor's supervisor.
//!
//! [`EtcdMetrics`] adds the server and disk metrics etcd exposes, under
//! etcd's names.

use std::time::Instant;

use prometheus::{
    HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, exponential_buckets,
};

/// The metric families shared by all actors of one node. Cheap to clone.
#[derive(Clone)]
pub struct ActorMetrics {
    handled: IntCounterVec,
    handle_seconds: HistogramVec,
    depth: IntGaugeVec,
    rejected: IntCounterVec,
    restarts: IntCounterVec,
    /// Whether handled messages are counted and timed (`--metrics=off`
    /// turns it off; depths, refusals and restarts are always kept).
    timed: bool,
}

impl ActorMetrics {
    /// Creates the metric families and registers them in `registry`.
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let handled = IntCounterVec::new(
            Opts::new(
                "oxcd_actor_messages_total",
                "Messages handled by each actor, by type.",
            ),
            &["actor", "message"],
        )?;
        let handle_seconds = HistogramVec::new(
            HistogramOpts::new(
                "oxcd_actor_handle_seconds",
                "Time each actor spent handling one message, by type.",
            )
            .buckets(exponential_buckets(0.000_01, 2.0, 22)?),
            &["actor", "message"],
        )?;
        let depth = IntGaugeVec::new(
            Opts::new(
                "oxcd_actor_mailbox_depth",
                "Messages accepted into each actor's mailbox and not yet handled.",
            ),
            &["actor"],
        )?;
        let rejected = IntCounterVec::new(
            Opts::new(
                "oxcd_actor_mailbox_rejected_total",
                "Messages refused because the actor's mailbox was full.",
            ),
            &["actor"],
        )?;
        let restarts = IntCounterVec::new(
            Opts::new(
                "oxcd_actor_restarts_total",
                "Times each actor was restarted by its supervisor (after a kill or a failure).",
            ),
            &["actor"],
        )?;
        registry.register(Box::new(handled.clone()))?;
        registry.register(Box::new(restarts.clone()))?;
        registry.register(Box::new(handle_seconds.clone()))?;
        registry.register(Box::new(depth.clone()))?;
        registry.register(Box::new(rejected.clone()))?;
        Ok(Self {
            handled,
            handle_seconds,
            depth,
            rejected,
            restarts,
            timed: true,
        })
    }

    /// The same families, without counting or timing handled messages.
    pub fn untimed(mut self) -> Self {
        self.timed = false;
        self
    }

    /// Metrics for a registry nobody scrapes (tests).
    pub fn unregistered() -> Self {
        Self::new(&Registry::new()).expect("fresh registry accepts every family")
    }

    /// The handle one actor uses to report on itself. Its label values are
    /// resolved here and, per message type, at the first message: no
    /// label look-up on the hot path.
    pub fn for_actor(&self, actor: &'static str) -> ActorProbe {
        ActorProbe {
            actor,
            depth: self.depth.with_label_values(&[actor]),
            rejected: self.rejected.with_label_values(&[actor]),
            restarts: self.restarts.with_label_values(&[actor]),
            per_message: std::sync::Arc::default(),
            metrics: self.clone(),
        }
    }
}

/// One message type's resolved series.
#[derive(Clone)]
struct MessageSeries {
    message: &'static str,
    handled: prometheus::IntCounter,
    seconds: prometheus::Histogram,
}

/// One actor's view of [`ActorMetrics`].
#[derive(Clone)]
pub struct ActorProbe {
    actor: &'static str,
    depth: prometheus::IntGauge,
    rejected: prometheus::IntCounter,
    restarts: prometheus::IntCounter,
    /// The series of each message type seen so far (a handful per actor;
    /// only the actor's own thread locks it, so the lock is uncontended).
    per_message: std::sync::Arc<std::sync::Mutex<Vec<MessageSeries>>>,
    metrics: ActorMetrics,
}

impl ActorProbe {
    /// A message entered the mailbox.
    pub fn enqueued(&self) {
        self.depth.inc();
    }

    /// A send was refused because the mailbox was full.
    pub fn rejected(&self) {
        self.rejected.inc();
    }

    /// The actor's supervisor restarted it.
    pub fn restarted(&self) {
        self.restarts.inc();
    }

    /// The actor's name in the metrics.
    pub fn actor(&self) -> &'static str {
        self.actor
    }

    /// Current mailbox depth.
    pub fn depth(&self) -> i64 {
        self.depth.get()
    }

    /// Starts timing the handling of one message that came through a
    /// [`crate::Mailbox`]; the returned guard records on drop.
    pub fn handling(&self, message: &'static str) -> HandleTimer {
        self.depth.dec();
        self.timing(message)
    }

    /// Starts timing work that did not come through a mailbox (ticks, notices
    /// the actor sends itself).
    pub fn timing(&self, message: &'static str) -> HandleTimer {
        if !self.metrics.timed {
            return HandleTimer(None);
        }
        let series = self.series(message);
        HandleTimer(Some((series.handled, series.seconds, Instant::now())))
    }

    fn series(&self, message: &'static str) -> MessageSeries {
        let mut known = self.per_message.lock().expect("metric series cache");
        if let Some(series) = known.iter().find(|s| s.message == message) {
            return series.clone();
        }
        let labels = [self.actor, message];
        let series = MessageSeries {
            message,
            handled: self.metrics.handled.with_label_values(&labels),
            seconds: self.metrics.handle_seconds.with_label_values(&labels),
        };
        known.push(series.clone());
        series
    }
}

/// Records one handled message and its duration when dropped (nothing
/// when the metrics are untimed).
pub struct HandleTimer(Option<(prometheus::IntCounter, prometheus::Histogram, Instant)>);

impl Drop for HandleTimer {
    fn drop(&mut self) {
        if let Some((handled, seconds, start)) = &self.0 {
            handled.inc();
            seconds.observe(start.elapsed().as_secs_f64());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handling_counts_and_drains_depth() {
        let registry = Registry::new();
        let metrics = ActorMetrics::new(&registry).unwrap();
        let probe = metrics.for_actor("apply");
        probe.enqueued();
        probe.enqueued();
        assert_eq!(probe.depth(), 2);
        drop(probe.handling("Committed"));
        assert_eq!(probe.depth(), 1);
        let families = registry.gather();
        let handled = families
            .iter()
            .find(|f| f.name() == "oxcd_actor_messages_total")
            .unwrap();
        assert_eq!(handled.get_metric()[0].get_counter().get_value(), 1.0);
    }
}

/// The etcd metrics dashboards and alerts are written against, under
/// etcd's names, so an operator's existing Grafana panels work unchanged.
#[derive(Clone)]
pub struct EtcdMetrics {
    pub has_leader: prometheus::IntGauge,
    pub is_leader: prometheus::IntGauge,
    pub leader_changes: prometheus::IntCounter,
    pub proposals_committed: prometheus::IntGauge,
    pub proposals_applied: prometheus::IntGauge,
    pub proposals_pending: prometheus::IntGauge,
    pub proposals_failed: prometheus::IntCounter,
    /// Raft log writes (one fsynced LMDB txn each), etcd's WAL fsync.
    pub wal_fsync: prometheus::Histogram,
    /// Apply batches (one MVCC LMDB txn each), etcd's backend commit.
    pub backend_commit: prometheus::Histogram,
}

impl EtcdMetrics {
    /// Creates the families and registers them in `registry`.
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        use prometheus::{Histogram, IntCounter, IntGauge};
        let gauge = |name: &str, help: &str| IntGauge::new(name, help);
        let has_leader = gauge(
            "etcd_server_has_leader",
            "Whether or not a leader exists. 1 is existence, 0 is not.",
        )?;
        let is_leader = gauge(
            "etcd_server_is_leader",
            "Whether or not this member is a leader. 1 if is, 0 otherwise.",
        )?;
        let leader_changes = IntCounter::new(
            "etcd_server_leader_changes_seen_total",
            "The number of leader changes seen.",
        )?;
        let proposals_committed = gauge(
            "etcd_server_proposals_committed_total",
            "The total number of consensus proposals committed.",
        )?;
        let proposals_applied = gauge(
            "etcd_server_proposals_applied_total",
            "The total number of consensus proposals applied.",
        )?;
        let proposals_pending = gauge(
            "etcd_server_proposals_pending",
            "The current number of pending proposals to commit.",
        )?;
        let proposals_failed = IntCounter::new(
            "etcd_server_proposals_failed_total",
            "The total number of failed proposals seen.",
        )?;
        let buckets = exponential_buckets(0.001, 2.0, 14)?;
        let wal_fsync = Histogram::with_opts(
            HistogramOpts::new(
                "etcd_disk_wal_fsync_duration_seconds",
                "The latency distributions of fsync called by WAL.",
            )
            .buckets(buckets.clone()),
        )?;
        let backend_commit = Histogram::with_opts(
            HistogramOpts::new(
                "etcd_disk_backend_commit_duration_seconds",
                "The latency distributions of commit called by backend.",
            )
            .buckets(buckets),
        )?;
        registry.register(Box::new(has_leader.clone()))?;
        registry.register(Box::new(is_leader.clone()))?;
        registry.register(Box::new(leader_changes.clone()))?;
        registry.register(Box::new(proposals_committed.clone()))?;
        registry.register(Box::new(proposals_applied.clone()))?;
        registry.register(Box::new(proposals_pending.clone()))?;
        registry.register(Box::new(proposals_failed.clone()))?;
        registry.register(Box::new(wal_fsync.clone()))?;
        registry.register(Box::new(backend_commit.clone()))?;
        Ok(Self {
            has_leader,
            is_leader,
            leader_changes,
            proposals_committed,
            proposals_applied,
            proposals_pending,
            proposals_failed,
            wal_fsync,
            backend_commit,
        })
    }

    /// Metrics nobody scrapes (tests).
    pub fn unregistered() -> Self {
        Self::new(&Registry::new()).expect("fresh registry accepts every family")
    }
}
