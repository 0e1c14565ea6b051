//! Auto-compaction, as etcd 3.4 runs it (`--auto-compaction-mode`,
//! `--auto-compaction-retention`): the leader compacts through raft, like a
//! client's `Compact`, so every member compacts at the same revision.
//!
//! 1. The flags are read as etcd reads them (`crate::config::parse_retention`:
//!    a bare number is hours or a revision count, anything else a Go
//!    duration; 0 turns auto-compaction off).
//! 2. [`Periodic`] (etcd's periodic compactor): every tenth of the period
//!    (at most 6 minutes) it samples the store revision, keeping the samples
//!    of one period. The first compaction comes one period after the start
//!    (or the last success), then one every period (at most an hour), each
//!    at the revision sampled a period earlier.
//! 3. [`Revision`] (etcd's revision compactor): every 5 minutes it compacts
//!    at `revision - retention`, unless that is not positive or was done.
//! 4. Both are plain state machines over a logical clock (the time since
//!    start), unit tested without a server. [`run`] drives one on the member:
//!    it samples on every step, compacts only while this member leads (etcd
//!    pauses the compactor on followers), and treats `required revision has
//!    been compacted` as done, as etcd does.

use std::collections::VecDeque;
use std::time::Duration;

use proto::etcdserverpb::CompactionRequest;
use proto::internal::internal_request::Request as Replicated;
use storage::EtcdError;

use crate::config::Retention;
use crate::handle::NodeHandle;

/// How often the revision compactor looks (etcd's `revInterval`).
pub const REVISION_INTERVAL: Duration = Duration::from_secs(300);

/// etcd's periodic compactor (step 2 of the module docs).
#[derive(Debug)]
pub struct Periodic {
    period: Duration,
    /// Between two samples: a tenth of the period, at most 6 minutes.
    retry: Duration,
    /// Samples kept: one period's worth, plus one.
    retentions: usize,
    revisions: VecDeque<i64>,
    last_success: Duration,
    /// How long after the last success the next compaction comes: one
    /// period for the first, then the compaction interval.
    wait: Duration,
}

impl Periodic {
    pub fn new(period: Duration) -> Self {
        let interval = period.min(Duration::from_secs(3600));
        let retry = interval / 10;
        let retentions = (period.as_nanos() / retry.as_nanos().max(1)) as usize + 1;
        Self {
            period,
            retry,
            retentions,
            revisions: VecDeque::new(),
            last_success: Duration::ZERO,
            wait: period,
        }
    }

    /// Time between two steps.
    pub fn step_interval(&self) -> Duration {
        self.retry
    }

    /// Records the revision sampled before a step.
    pub fn sample(&mut self, revision: i64) {
        self.revisions.push_back(revision);
        if self.revisions.len() > self.retentions {
            self.revisions.pop_front();
        }
    }

    /// One step at `now` (after the step interval): the revision to compact
    /// at, if one is due and this member leads.
    pub fn due(&mut self, now: Duration, leader: bool) -> Option<i64> {
        if !leader || now.saturating_sub(self.last_success) < self.wait {
            return None;
        }
        self.wait = self.period.min(Duration::from_secs(3600));
        self.revisions.front().copied()
    }

    /// The compaction asked by [`Periodic::due`] succeeded (or was already
    /// done) at `now`.
    pub fn succeeded(&mut self, now: Duration) {
        self.last_success = now;
    }
}

/// etcd's revision compactor (step 3 of the module docs).
#[derive(Debug)]
pub struct Revision {
    retention: i64,
    previous: i64,
}

impl Revision {
    pub fn new(retention: i64) -> Self {
        Self {
            retention,
            previous: 0,
        }
    }

    /// Time between two steps.
    pub fn step_interval(&self) -> Duration {
        REVISION_INTERVAL
    }

    /// The revision to compact at, given the store's `revision`.
    pub fn due(&self, revision: i64, leader: bool) -> Option<i64> {
        let target = revision - self.retention;
        (leader && target > 0 && target != self.previous).then_some(target)
    }

    /// The compaction at `target` succeeded (or was already done).
    pub fn succeeded(&mut self, target: i64) {
        self.previous = target;
    }
}

/// Runs auto-compaction for this member until the process stops.
pub async fn run(node: NodeHandle, retention: Retention) {
    let started = tokio::time::Instant::now();
    match retention {
        Retention::Period(period) => {
            tracing::info!(?period, "auto periodic compaction enabled");
            let mut compactor = Periodic::new(period);
            loop {
                compactor.sample(node.revision());
                tokio::time::sleep(compactor.step_interval()).await;
                let now = started.elapsed();
                let Some(target) = compactor.due(now, node.leads()) else {
                    continue;
                };
                tracing::info!(
                    revision = target,
                    ?period,
                    "starting auto periodic compaction"
                );
                if compact(&node, target).await {
                    compactor.succeeded(started.elapsed());
                }
            }
        }
        Retention::Revisions(retention) => {
            tracing::info!(retention, "auto revision compaction enabled");
            let mut compactor = Revision::new(retention);
            loop {
                tokio::time::sleep(compactor.step_interval()).await;
                let Some(target) = compactor.due(node.revision(), node.leads()) else {
                    continue;
                };
                tracing::info!(
                    revision = target,
                    retention,
                    "starting auto revision compaction"
                );
                if compact(&node, target).await {
                    compactor.succeeded(target);
                }
            }
        }
    }
}

/// Compacts at `revision` through raft; true when done (or done before).
async fn compact(node: &NodeHandle, revision: i64) -> bool {
    let request = CompactionRequest {
        revision,
        physical: false,
    };
    match node.write(Replicated::Compaction(request)).await {
        Ok(_) | Err(EtcdError::Compacted) => {
            tracing::info!(revision, "completed auto compaction");
            true
        }
        Err(e) => {
            tracing::warn!(revision, error = %e, "failed auto compaction; will retry");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    /// A store written at one revision a second, sampled every tenth of a
    /// 10 s period: the first compaction comes after 10 s at the revision
    /// of 10 s before, then one every 10 s.
    #[test]
    fn periodic_compacts_a_period_behind_every_period() {
        let mut c = Periodic::new(secs(10.0));
        assert_eq!(c.step_interval(), secs(1.0));
        let mut compactions = Vec::new();
        let mut now = Duration::ZERO;
        for step in 0..35 {
            c.sample(step);
            now += c.step_interval();
            if let Some(rev) = c.due(now, true) {
                compactions.push((now.as_secs(), rev));
                c.succeeded(now);
            }
        }
        assert_eq!(compactions, vec![(10, 0), (20, 9), (30, 19)]);
    }

    #[test]
    fn periodic_waits_while_not_leading_and_retries_after_a_failure() {
        let mut c = Periodic::new(secs(1.0));
        let mut now = Duration::ZERO;
        for step in 0..20 {
            c.sample(step);
            now += c.step_interval();
            assert_eq!(c.due(now, false), None);
        }
        c.sample(20);
        now += c.step_interval();
        // Leading now: due at the oldest sample kept (one period back).
        assert_eq!(c.due(now, true), Some(10));
        // The compaction failed (no `succeeded`): asked again next step.
        c.sample(21);
        now += c.step_interval();
        assert_eq!(c.due(now, true), Some(11));
    }

    #[test]
    fn long_periods_compact_hourly_from_samples_every_six_minutes() {
        let c = Periodic::new(secs(24.0 * 3600.0));
        assert_eq!(c.step_interval(), secs(360.0));
    }

    #[test]
    fn revision_compacts_retention_behind_once_per_target() {
        let mut c = Revision::new(100);
        assert_eq!(c.step_interval(), REVISION_INTERVAL);
        assert_eq!(c.due(50, true), None);
        assert_eq!(c.due(350, false), None);
        assert_eq!(c.due(350, true), Some(250));
        c.succeeded(250);
        assert_eq!(c.due(350, true), None);
        assert_eq!(c.due(351, true), Some(251));
    }
}
