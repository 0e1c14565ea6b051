//! The lessor's logic, with no actix and no clock of its own (times are
//! milliseconds on a monotonic clock the shell passes in): etcd's lessor,
//! with replicated countdowns.
//!
//! 1. Every member tracks every lease as the store holds it (granted TTL,
//!    checkpointed remaining TTL), told by the apply actor as leases are
//!    granted, revoked and checkpointed.
//! 2. Only the leader is **primary**: on promotion (a new term it leads)
//!    each lease's deadline is `now + remaining`, where remaining is the
//!    last checkpoint's, or the whole TTL when there is none. On demotion
//!    deadlines are dropped and keep-alives waiting here are refused.
//! 3. A keep-alive on the primary moves the deadline to `now + TTL` and is
//!    answered with the TTL, at once when no checkpoint is in force;
//!    otherwise only once a reset checkpoint (remaining 0, "whole TTL") is
//!    committed. So a new leader never starts a lease that was kept alive
//!    from an older, shorter remaining TTL.
//! 4. [`LessorCore::tick`] returns the upkeep to propose: expired leases
//!    (at most [`LessorConfig::revokes_per_tick`] per tick, each once until
//!    its revoke is applied or fails), the reset checkpoints keep-alives
//!    wait for, and, every checkpoint interval, the remaining TTL of every
//!    lease counting down with more than an interval left (at most
//!    [`LessorConfig::checkpoints_per_tick`] per tick; etcd's rule: a
//!    shorter lease restarts whole on a new leader, which costs at most its
//!    TTL, less than an interval), so that after a leader change the
//!    countdown continues instead of starting over (etcd 3.4's behaviour,
//!    which lets long leases outlive leader churn).
//!    Upkeep carries the term it was proposed in; the apply actor ignores
//!    upkeep committed in another term.
//!
//! A new leader checkpoints every lease (short ones too) right after it
//! takes over, so a further change restarts each countdown from there.
//!
//! The bound: an abandoned lease expires at most one checkpoint interval
//! (the age of the last checkpoint, or a short lease's whole TTL) plus 1 s
//! per leader change (checkpoints count whole seconds, rounded up) plus the
//! elections after its deadline, however often leadership moves (as long as
//! each new leader had the moment to checkpoint before the next change). A lease kept alive within its TTL is
//! never expired (its deadline as any later leader computes it is at or
//! past the one its last keep-alive set).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use storage::EtcdError;
use storage::mvcc::Lease;
use tokio::sync::oneshot;

/// Where a keep-alive's answer goes: the lease's TTL (0: no such lease).
pub type KeepAliveReply = oneshot::Sender<Result<i64, EtcdError>>;

/// Settings of the lessor.
#[derive(Debug, Clone, Copy)]
pub struct LessorConfig {
    /// How often remaining TTLs are checkpointed (etcd: 5 minutes).
    pub checkpoint_interval_ms: u64,
    /// Expired leases proposed for revocation per tick (etcd revokes at
    /// most 1,000 per second).
    pub revokes_per_tick: usize,
    /// Checkpoints per tick (bounds the raft traffic they cost).
    pub checkpoints_per_tick: usize,
}

#[derive(Debug, Clone, Copy)]
struct Tracked {
    stored: Lease,
    /// Milliseconds on the shell's clock; only while primary.
    deadline: Option<u64>,
}

/// What the lessor asks to propose after a tick, all in `term`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Upkeep {
    pub term: u64,
    /// Leases to revoke as expired, one raft entry each.
    pub expire: Vec<i64>,
    /// (lease, remaining TTL in seconds; 0 resets to the whole TTL), one
    /// raft entry for all.
    pub checkpoints: Vec<(i64, i64)>,
}

impl Upkeep {
    pub fn is_empty(&self) -> bool {
        self.expire.is_empty() && self.checkpoints.is_empty()
    }
}

/// The answer to a keep-alive, now or later.
#[derive(Debug)]
pub enum Renewal {
    /// Answered (the TTL, or 0 for an unknown lease).
    Ttl(i64),
    /// The reply is kept until a reset checkpoint is committed.
    Waiting,
    /// This member does not lead: the keep-alive must go to the leader.
    NotPrimary,
}

/// The lessor's state.
pub struct LessorCore {
    config: LessorConfig,
    leases: BTreeMap<i64, Tracked>,
    /// The term this member leads in, while it does.
    primary: Option<u64>,
    /// Expiries proposed and not yet applied.
    expiring: BTreeSet<i64>,
    /// Keep-alives waiting for their lease's reset checkpoint.
    waiting: HashMap<i64, Vec<KeepAliveReply>>,
    /// Reset checkpoints proposed and not yet applied.
    resetting: BTreeSet<i64>,
    next_checkpoint: u64,
    /// Leases whose countdown is due for a checkpoint in the current pass.
    checkpoint_queue: Vec<i64>,
    /// The current pass is the one right after a promotion: it checkpoints
    /// every lease, short ones too.
    checkpoint_all: bool,
}

fn secs_to_ms(s: i64) -> u64 {
    (s.max(0) as u64).saturating_mul(1000)
}

impl LessorCore {
    /// A lessor knowing the store's leases, not primary.
    pub fn new(config: LessorConfig, leases: Vec<(i64, Lease)>) -> Self {
        let mut core = Self {
            config,
            leases: BTreeMap::new(),
            primary: None,
            expiring: BTreeSet::new(),
            waiting: HashMap::new(),
            resetting: BTreeSet::new(),
            next_checkpoint: 0,
            checkpoint_queue: Vec::new(),
            checkpoint_all: false,
        };
        core.replace(leases, 0);
        core
    }

    pub fn is_primary(&self) -> bool {
        self.primary.is_some()
    }

    pub fn len(&self) -> usize {
        self.leases.len()
    }

    pub fn is_empty(&self) -> bool {
        self.leases.is_empty()
    }

    fn start(&self, lease: &Lease, now: u64) -> u64 {
        let remaining = if lease.remaining_ttl > 0 {
            lease.remaining_ttl.min(lease.ttl)
        } else {
            lease.ttl
        };
        now.saturating_add(secs_to_ms(remaining))
    }

    /// Step 1: the store's leases changed wholesale (start, snapshot
    /// install).
    pub fn replace(&mut self, leases: Vec<(i64, Lease)>, now: u64) {
        let primary = self.primary.is_some();
        self.leases = leases
            .into_iter()
            .map(|(id, stored)| {
                let deadline = primary.then(|| self.start(&stored, now));
                (id, Tracked { stored, deadline })
            })
            .collect();
        self.expiring.retain(|id| self.leases.contains_key(id));
    }

    /// Step 1: a lease was granted.
    pub fn granted(&mut self, id: i64, ttl: i64, now: u64) {
        let stored = Lease::granted(ttl);
        let deadline = self.primary.map(|_| self.start(&stored, now));
        self.leases.insert(id, Tracked { stored, deadline });
    }

    /// Step 1: a lease was revoked (by a client or as expired).
    pub fn revoked(&mut self, id: i64) {
        self.leases.remove(&id);
        self.expiring.remove(&id);
        self.resetting.remove(&id);
        for reply in self.waiting.remove(&id).unwrap_or_default() {
            let _ = reply.send(Ok(0));
        }
    }

    /// Step 1 and 3: a checkpoint was applied.
    pub fn checkpointed(&mut self, id: i64, remaining_ttl: i64) {
        let Some(t) = self.leases.get_mut(&id) else {
            return;
        };
        t.stored.remaining_ttl = remaining_ttl;
        if remaining_ttl == 0 {
            self.resetting.remove(&id);
            let ttl = t.stored.ttl;
            for reply in self.waiting.remove(&id).unwrap_or_default() {
                let _ = reply.send(Ok(ttl));
            }
        }
    }

    /// Step 2: this member leads `term` from `now` on.
    pub fn promote(&mut self, term: u64, now: u64) {
        if self.primary == Some(term) {
            return;
        }
        self.demote();
        self.primary = Some(term);
        let starts: Vec<(i64, u64)> = self
            .leases
            .iter()
            .map(|(id, t)| (*id, self.start(&t.stored, now)))
            .collect();
        for (id, deadline) in starts {
            if let Some(t) = self.leases.get_mut(&id) {
                t.deadline = Some(deadline);
            }
        }
        // Checkpoint every lease at once: a further leader change then
        // restarts each countdown from here, not from a checkpoint up to an
        // interval old, so changes do not add up.
        self.next_checkpoint = now;
        self.checkpoint_queue.clear();
        self.checkpoint_all = true;
    }

    /// Step 2: this member no longer leads.
    pub fn demote(&mut self) {
        self.primary = None;
        for t in self.leases.values_mut() {
            t.deadline = None;
        }
        self.expiring.clear();
        self.resetting.clear();
        self.checkpoint_queue.clear();
        for (_, replies) in self.waiting.drain() {
            for reply in replies {
                let _ = reply.send(Err(EtcdError::NotLeader));
            }
        }
    }

    /// Step 3: a keep-alive for `id`.
    pub fn keep_alive(&mut self, id: i64, now: u64, reply: KeepAliveReply) {
        match self.renew(id, now) {
            Renewal::Ttl(ttl) => {
                let _ = reply.send(Ok(ttl));
            }
            Renewal::Waiting => self.waiting.entry(id).or_default().push(reply),
            Renewal::NotPrimary => {
                let _ = reply.send(Err(EtcdError::NotLeader));
            }
        }
    }

    fn renew(&mut self, id: i64, now: u64) -> Renewal {
        if self.primary.is_none() {
            return Renewal::NotPrimary;
        }
        let Some(t) = self.leases.get_mut(&id) else {
            return Renewal::Ttl(0);
        };
        if self.expiring.contains(&id) {
            // Its revoke is on its way; etcd answers such a renewal with
            // "lease not found" (TTL 0) too.
            return Renewal::Ttl(0);
        }
        t.deadline = Some(now.saturating_add(secs_to_ms(t.stored.ttl)));
        if t.stored.remaining_ttl == 0 {
            return Renewal::Ttl(t.stored.ttl);
        }
        Renewal::Waiting
    }

    /// The remaining TTL of `id` in whole seconds (rounded up) and its
    /// granted TTL, on the primary; `None` when unknown or not primary.
    pub fn time_to_live(&self, id: i64, now: u64) -> Option<(i64, i64)> {
        self.primary?;
        let t = self.leases.get(&id)?;
        let deadline = t.deadline?;
        let left_ms = deadline.saturating_sub(now);
        Some((left_ms.div_ceil(1000) as i64, t.stored.ttl))
    }

    /// Step 4: what to propose now.
    pub fn tick(&mut self, now: u64) -> Upkeep {
        let Some(term) = self.primary else {
            return Upkeep::default();
        };
        let mut upkeep = Upkeep {
            term,
            ..Default::default()
        };
        for (id, t) in &self.leases {
            if upkeep.expire.len() >= self.config.revokes_per_tick {
                break;
            }
            if t.deadline.is_some_and(|d| d <= now) && !self.expiring.contains(id) {
                upkeep.expire.push(*id);
            }
        }
        self.expiring.extend(upkeep.expire.iter().copied());
        for id in self.waiting.keys() {
            if self.resetting.insert(*id) {
                upkeep.checkpoints.push((*id, 0));
            }
        }
        if now >= self.next_checkpoint {
            self.next_checkpoint = now.saturating_add(self.config.checkpoint_interval_ms);
            self.checkpoint_queue = self.leases.keys().rev().copied().collect();
        } else if self.checkpoint_queue.is_empty() {
            self.checkpoint_all = false;
        }
        while upkeep.checkpoints.len() < self.config.checkpoints_per_tick {
            let Some(id) = self.checkpoint_queue.pop() else {
                break;
            };
            let Some(t) = self.leases.get(&id) else {
                continue;
            };
            let Some(deadline) = t.deadline else {
                continue;
            };
            let left_ms = deadline.saturating_sub(now);
            let left = left_ms.div_ceil(1000) as i64;
            // A lease still at its whole TTL needs none; one already due
            // expires instead; one with at most an interval left restarts
            // whole on a new leader at a cost below an interval (etcd's
            // rule), and so keeps its keep-alives free of resets.
            if left >= t.stored.ttl
                || left <= 0
                || (left_ms <= self.config.checkpoint_interval_ms && !self.checkpoint_all)
                || self.expiring.contains(&id)
            {
                continue;
            }
            upkeep.checkpoints.push((id, left));
        }
        upkeep
    }

    /// The lessor restarted (its supervisor, after a kill or a panic): the
    /// leases and their countdowns stay as they were (a restart must not
    /// lengthen or shorten a lease); the expiries and reset checkpoints it
    /// had proposed are forgotten, since their outcomes died with the old
    /// lessor, and may be proposed again (a second revoke of a lease is a
    /// no-op when applied). Keep-alives waiting for a reset stay waiting.
    pub fn restart(&mut self) {
        self.expiring.clear();
        self.resetting.clear();
    }

    /// An expiry proposal failed (leadership moved, a timeout): it may be
    /// proposed again.
    pub fn expire_failed(&mut self, id: i64) {
        self.expiring.remove(&id);
    }

    /// A checkpoint proposal failed: resets may be proposed again.
    pub fn checkpoints_failed(&mut self, ids: &[i64]) {
        for id in ids {
            self.resetting.remove(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: LessorConfig = LessorConfig {
        checkpoint_interval_ms: 5_000,
        revokes_per_tick: 2,
        checkpoints_per_tick: 100,
    };

    fn ttl_of(
        rx: &mut oneshot::Receiver<Result<i64, EtcdError>>,
    ) -> Option<Result<i64, EtcdError>> {
        rx.try_recv().ok()
    }

    fn keep_alive(
        core: &mut LessorCore,
        id: i64,
        now: u64,
    ) -> oneshot::Receiver<Result<i64, EtcdError>> {
        let (tx, rx) = oneshot::channel();
        core.keep_alive(id, now, tx);
        rx
    }

    #[test]
    fn only_the_primary_expires_and_renews() {
        let mut core = LessorCore::new(CONFIG, vec![(1, Lease::granted(10))]);
        assert!(core.tick(1_000_000).is_empty());
        assert_eq!(
            ttl_of(&mut keep_alive(&mut core, 1, 0)),
            Some(Err(EtcdError::NotLeader))
        );
        core.promote(3, 0);
        assert_eq!(ttl_of(&mut keep_alive(&mut core, 1, 0)), Some(Ok(10)));
        assert_eq!(
            ttl_of(&mut keep_alive(&mut core, 9, 0)),
            Some(Ok(0)),
            "unknown lease: TTL 0"
        );
        assert!(core.tick(9_999).expire.is_empty());
        let upkeep = core.tick(10_000);
        assert_eq!((upkeep.term, upkeep.expire.clone()), (3, vec![1]));
        assert!(core.tick(10_100).expire.is_empty(), "proposed once");
        core.expire_failed(1);
        assert_eq!(core.tick(10_200).expire, vec![1], "again after a failure");
        core.revoked(1);
        assert!(core.tick(20_000).is_empty());
    }

    #[test]
    fn a_keep_alive_moves_the_deadline_by_the_whole_ttl() {
        let mut core = LessorCore::new(CONFIG, vec![]);
        core.promote(1, 0);
        core.granted(7, 10, 0);
        assert_eq!(core.time_to_live(7, 4_000), Some((6, 10)));
        keep_alive(&mut core, 7, 8_000);
        assert_eq!(core.time_to_live(7, 8_000), Some((10, 10)));
        assert!(core.tick(17_999).expire.is_empty());
        assert_eq!(core.tick(18_000).expire, vec![7]);
    }

    #[test]
    fn revokes_per_tick_are_bounded() {
        let leases = (1..=5).map(|id| (id, Lease::granted(1))).collect();
        let mut core = LessorCore::new(CONFIG, leases);
        core.promote(2, 0);
        assert_eq!(core.tick(1_000).expire, vec![1, 2]);
        assert_eq!(core.tick(1_100).expire, vec![3, 4]);
        assert_eq!(core.tick(1_200).expire, vec![5]);
    }

    #[test]
    fn a_new_leader_continues_the_checkpointed_countdown() {
        let mut old = LessorCore::new(CONFIG, vec![(1, Lease::granted(60))]);
        old.promote(1, 0);
        // At 5 s the periodic checkpoint records 55 s left.
        let upkeep = old.tick(5_000);
        assert_eq!(upkeep.checkpoints, vec![(1, 55)]);
        // Applied on every member; leadership moves at 20 s.
        let mut new = LessorCore::new(
            CONFIG,
            vec![(
                1,
                Lease {
                    ttl: 60,
                    remaining_ttl: 55,
                },
            )],
        );
        new.promote(2, 20_000);
        // The countdown goes on from 55 s, not from 60 s: expiry at 75 s,
        // within one checkpoint interval (5 s) of the true deadline (60 s)
        // plus the 15 s the leader change took.
        assert!(new.tick(74_999).expire.is_empty());
        assert_eq!(new.tick(75_000).expire, vec![1]);
    }

    #[test]
    fn a_keep_alive_after_a_checkpoint_waits_for_the_reset() {
        let stored = Lease {
            ttl: 60,
            remaining_ttl: 20,
        };
        let mut core = LessorCore::new(CONFIG, vec![(1, stored)]);
        core.promote(4, 0);
        let mut rx = keep_alive(&mut core, 1, 1_000);
        assert_eq!(
            ttl_of(&mut rx),
            None,
            "not answered before the reset is replicated"
        );
        let upkeep = core.tick(1_100);
        assert_eq!(upkeep.checkpoints, vec![(1, 0)]);
        assert!(
            core.tick(1_200).checkpoints.is_empty(),
            "reset proposed once"
        );
        core.checkpointed(1, 0);
        assert_eq!(ttl_of(&mut rx), Some(Ok(60)));
        // With the reset in force, keep-alives answer at once.
        assert_eq!(ttl_of(&mut keep_alive(&mut core, 1, 2_000)), Some(Ok(60)));
    }

    #[test]
    fn demotion_refuses_waiting_keep_alives_and_stops_expiry() {
        let stored = Lease {
            ttl: 5,
            remaining_ttl: 2,
        };
        let mut core = LessorCore::new(CONFIG, vec![(1, stored)]);
        core.promote(1, 0);
        let mut rx = keep_alive(&mut core, 1, 0);
        core.demote();
        assert_eq!(ttl_of(&mut rx), Some(Err(EtcdError::NotLeader)));
        assert!(core.tick(100_000).is_empty());
        assert_eq!(core.time_to_live(1, 0), None);
    }

    #[test]
    fn leases_with_at_most_an_interval_left_are_checkpointed_only_after_a_promotion() {
        let mut core = LessorCore::new(
            CONFIG,
            vec![(1, Lease::granted(3)), (2, Lease::granted(60))],
        );
        core.promote(1, 0);
        let upkeep = core.tick(1_000);
        assert_eq!(
            upkeep.checkpoints,
            vec![(1, 2), (2, 59)],
            "every lease right after the promotion"
        );
        let upkeep = core.tick(6_000);
        assert_eq!(upkeep.expire, vec![1]);
        assert_eq!(
            upkeep.checkpoints,
            vec![(2, 54)],
            "then only the lease with more than an interval left"
        );
    }

    #[test]
    fn periodic_checkpoints_cover_counting_leases_at_a_bounded_rate() {
        let config = LessorConfig {
            checkpoints_per_tick: 2,
            ..CONFIG
        };
        let leases = (1..=5).map(|id| (id, Lease::granted(100))).collect();
        let mut core = LessorCore::new(config, leases);
        core.promote(1, 0);
        let mut after_promotion = Vec::new();
        for t in 0..3 {
            after_promotion.extend(core.tick(1_000 + t * 100).checkpoints);
        }
        assert_eq!(after_promotion.len(), 5, "the promotion pass, 2 per tick");
        assert!(core.tick(1_300).checkpoints.is_empty(), "not due again yet");
        let mut seen = Vec::new();
        for t in 0..3 {
            seen.extend(core.tick(6_000 + t * 100).checkpoints);
        }
        assert_eq!(seen.len(), 5);
        assert!(seen.iter().all(|(_, left)| *left == 94));
        assert!(
            core.tick(6_400).checkpoints.is_empty(),
            "one pass per interval"
        );
    }
}
