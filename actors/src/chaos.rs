//! Faults injected on purpose (the chaos API, `--enable-chaos`).
//!
//! [`Faults`] is one shared switchboard per member. The chaos service sets
//! it; the actors read it where the fault bites:
//! 1. the log writer sleeps [`Faults::fsync_delay`] before each write and
//!    fails the write when [`Faults::take_fsync_failure`] says so (which
//!    stops the member: nothing it carried is acknowledged);
//! 2. the apply actor holds committed batches while
//!    [`Faults::apply_paused`], and drops the writes of puts while
//!    [`Faults::take_lost_write`] says so (a planted bug, for proving that
//!    the chaos checker catches one);
//! 3. the peer transport asks [`Faults::link`] before sending a batch to a
//!    peer, and the peer service before stepping a batch from one: pass,
//!    drop, or deliver after a delay.
//!
//! Killing an actor is a [`Kill`](crate::messages::Kill) message to it; its
//! supervisor ([`crate::supervisor`]) restarts it. [`Killers`] holds where
//! each actor kind is reached.
//!
//! Every switch is off when a member starts without `--enable-chaos`, and
//! reading one is a relaxed atomic load on the hot path.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use actix::Recipient;

use crate::messages::Kill;

/// The actors a member runs, by the names the chaos API and the metrics use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ActorKind {
    Raft,
    LogWriter,
    Transport,
    Apply,
    Watch,
    Lessor,
}

impl ActorKind {
    pub const ALL: [ActorKind; 6] = [
        ActorKind::Raft,
        ActorKind::LogWriter,
        ActorKind::Transport,
        ActorKind::Apply,
        ActorKind::Watch,
        ActorKind::Lessor,
    ];

    /// The name in `oxcd_actor_*{actor="..."}` and in the chaos API.
    pub fn name(self) -> &'static str {
        match self {
            ActorKind::Raft => "raft",
            ActorKind::LogWriter => "log_writer",
            ActorKind::Transport => "transport",
            ActorKind::Apply => "apply",
            ActorKind::Watch => "watch",
            ActorKind::Lessor => "lessor",
        }
    }
}

impl fmt::Display for ActorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ActorKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let wanted = s.replace('-', "_");
        ActorKind::ALL
            .into_iter()
            .find(|k| k.name() == wanted)
            .ok_or_else(|| {
                let names: Vec<_> = ActorKind::ALL.iter().map(|k| k.name()).collect();
                format!("unknown actor {s:?} (one of: {})", names.join(", "))
            })
    }
}

/// Which way a raft message batch travels, seen from this member.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    Outbound,
    Inbound,
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::Outbound => "outbound to",
            Direction::Inbound => "inbound from",
        })
    }
}

/// What to do with one batch on a link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkVerdict {
    Pass,
    Drop,
    Delay(Duration),
}

/// A drop probability and a delay on one link direction.
#[derive(Clone, Debug)]
struct LinkFault {
    drop_probability: f64,
    delay: Duration,
    /// splitmix64 state of the drop draws.
    draws: u64,
}

/// `peer` 0 stands for every peer.
type LinkKey = (u64, Direction);

/// Where a `Kill` reaches each actor.
#[derive(Clone, Default)]
pub struct Killers {
    by_kind: HashMap<ActorKind, Recipient<Kill>>,
}

impl Killers {
    pub fn insert(&mut self, kind: ActorKind, recipient: Recipient<Kill>) {
        self.by_kind.insert(kind, recipient);
    }

    /// Asks `kind` to stop; its supervisor restarts it.
    pub fn kill(&self, kind: ActorKind) -> Result<(), String> {
        let recipient = self
            .by_kind
            .get(&kind)
            .ok_or_else(|| format!("this member runs no {kind} actor"))?;
        recipient
            .try_send(Kill)
            .map_err(|e| format!("the {kind} actor did not take the kill: {e}"))
    }
}

/// The fault switches of one member.
#[derive(Default)]
pub struct Faults {
    fsync_delay_ms: AtomicU64,
    fsync_failures: AtomicU64,
    lost_writes: AtomicU64,
    /// Fast path: no link fault and no partition at all.
    links_faulty: AtomicBool,
    links: RwLock<HashMap<LinkKey, LinkFault>>,
    partitioned: RwLock<Vec<u64>>,
    /// When the apply pause ends by itself (None: not paused).
    apply_pause: Mutex<Option<Instant>>,
    /// Fast path: no pause was set since the last resume.
    apply_pause_set: AtomicBool,
}

impl fmt::Debug for Faults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.describe()).finish()
    }
}

fn lock_poisoned<T>(e: std::sync::PoisonError<T>) -> T {
    e.into_inner()
}

impl Faults {
    pub fn new() -> Self {
        Self::default()
    }

    // --- disk ---

    /// Adds `delay` before every raft log write (zero clears it).
    pub fn set_fsync_delay(&self, delay: Duration) {
        self.fsync_delay_ms
            .store(delay.as_millis() as u64, Ordering::Relaxed);
    }

    pub fn fsync_delay(&self) -> Duration {
        Duration::from_millis(self.fsync_delay_ms.load(Ordering::Relaxed))
    }

    /// Makes the next `count` raft log writes fail.
    pub fn fail_fsyncs(&self, count: u64) {
        self.fsync_failures.store(count, Ordering::Relaxed);
    }

    /// Whether this write must fail (counts it down).
    pub fn take_fsync_failure(&self) -> bool {
        take_one(&self.fsync_failures)
    }

    // --- apply ---

    /// Pauses applying until [`Faults::resume_apply`] or for at most `max`.
    pub fn pause_apply(&self, max: Duration) {
        let mut pause = self.apply_pause.lock().unwrap_or_else(lock_poisoned);
        *pause = Some(Instant::now() + max);
        self.apply_pause_set.store(true, Ordering::Release);
    }

    pub fn resume_apply(&self) {
        let mut pause = self.apply_pause.lock().unwrap_or_else(lock_poisoned);
        *pause = None;
        self.apply_pause_set.store(false, Ordering::Release);
    }

    /// Whether apply is paused now (a pause past its end clears itself).
    pub fn apply_paused(&self) -> bool {
        if !self.apply_pause_set.load(Ordering::Acquire) {
            return false;
        }
        self.apply_pause
            .lock()
            .unwrap_or_else(lock_poisoned)
            .is_some_and(|until| Instant::now() < until)
    }

    // --- planted bug ---

    /// The next `count` puts applied here are answered but not written.
    pub fn lose_writes(&self, count: u64) {
        self.lost_writes.store(count, Ordering::Relaxed);
    }

    /// Whether this put must be lost (counts it down).
    pub fn take_lost_write(&self) -> bool {
        take_one(&self.lost_writes)
    }

    // --- links ---

    /// Sets the fault on `peer` (0: every peer) in `direction`; a zero
    /// probability and delay clear it.
    pub fn set_link(
        &self,
        peer: u64,
        direction: Direction,
        drop_probability: f64,
        delay: Duration,
        seed: u64,
    ) {
        let mut links = self.links.write().unwrap_or_else(lock_poisoned);
        let drop_probability = drop_probability.clamp(0.0, 1.0);
        if drop_probability == 0.0 && delay.is_zero() {
            links.remove(&(peer, direction));
        } else {
            links.insert(
                (peer, direction),
                LinkFault {
                    drop_probability,
                    delay,
                    draws: seed ^ peer.rotate_left(17) ^ direction as u64,
                },
            );
        }
        self.refresh_fast_path(&links);
    }

    /// Cuts every link to and from `peers` (added to any earlier cut).
    pub fn partition(&self, peers: &[u64]) {
        let mut cut = self.partitioned.write().unwrap_or_else(lock_poisoned);
        for p in peers {
            if !cut.contains(p) {
                cut.push(*p);
            }
        }
        drop(cut);
        let links = self.links.read().unwrap_or_else(lock_poisoned);
        self.refresh_fast_path(&links);
    }

    /// Clears every link fault and partition.
    pub fn heal(&self) {
        let mut links = self.links.write().unwrap_or_else(lock_poisoned);
        links.clear();
        self.partitioned
            .write()
            .unwrap_or_else(lock_poisoned)
            .clear();
        self.refresh_fast_path(&links);
    }

    fn refresh_fast_path(&self, links: &HashMap<LinkKey, LinkFault>) {
        let cut = !self
            .partitioned
            .read()
            .unwrap_or_else(lock_poisoned)
            .is_empty();
        self.links_faulty
            .store(cut || !links.is_empty(), Ordering::Relaxed);
    }

    /// What to do with a batch to or from `peer`.
    pub fn link(&self, peer: u64, direction: Direction) -> LinkVerdict {
        if !self.links_faulty.load(Ordering::Relaxed) {
            return LinkVerdict::Pass;
        }
        if self
            .partitioned
            .read()
            .unwrap_or_else(lock_poisoned)
            .contains(&peer)
        {
            return LinkVerdict::Drop;
        }
        let mut links = self.links.write().unwrap_or_else(lock_poisoned);
        let fault = match links.get_mut(&(peer, direction)) {
            Some(f) => f,
            None => match links.get_mut(&(0, direction)) {
                Some(f) => f,
                None => return LinkVerdict::Pass,
            },
        };
        if fault.drop_probability > 0.0 && next_unit(&mut fault.draws) < fault.drop_probability {
            return LinkVerdict::Drop;
        }
        if fault.delay.is_zero() {
            LinkVerdict::Pass
        } else {
            LinkVerdict::Delay(fault.delay)
        }
    }

    /// One line per active fault (for the chaos API's `Faults` and logs).
    pub fn describe(&self) -> Vec<String> {
        let mut lines = Vec::new();
        let delay = self.fsync_delay();
        if !delay.is_zero() {
            lines.push(format!(
                "slow disk: +{} ms per raft log write",
                delay.as_millis()
            ));
        }
        let failing = self.fsync_failures.load(Ordering::Relaxed);
        if failing > 0 {
            lines.push(format!("fail fsync: the next {failing} raft log writes"));
        }
        if self.apply_paused() {
            lines.push("apply paused".to_string());
        }
        let lost = self.lost_writes.load(Ordering::Relaxed);
        if lost > 0 {
            lines.push(format!("planted bug lose-writes: the next {lost} puts"));
        }
        for p in self.partitioned.read().unwrap_or_else(lock_poisoned).iter() {
            lines.push(format!("partitioned from {p:x}"));
        }
        let links = self.links.read().unwrap_or_else(lock_poisoned);
        let mut faults: Vec<_> = links.iter().collect();
        faults.sort_by_key(|((peer, dir), _)| (*peer, *dir as u8));
        for ((peer, dir), f) in faults {
            let peer = if *peer == 0 {
                "every peer".to_string()
            } else {
                format!("{peer:x}")
            };
            lines.push(format!(
                "{dir} {peer}: drop {:.2}, delay {} ms",
                f.drop_probability,
                f.delay.as_millis()
            ));
        }
        lines
    }
}

/// Counts `counter` down by one if it is above zero; whether it did.
fn take_one(counter: &AtomicU64) -> bool {
    counter
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
        .is_ok()
}

/// A uniform draw in [0, 1) from a splitmix64 state.
fn next_unit(state: &mut u64) -> f64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_pass_until_a_fault_is_set_and_after_heal() {
        let f = Faults::new();
        assert_eq!(f.link(7, Direction::Outbound), LinkVerdict::Pass);
        f.partition(&[7]);
        assert_eq!(f.link(7, Direction::Outbound), LinkVerdict::Drop);
        assert_eq!(f.link(7, Direction::Inbound), LinkVerdict::Drop);
        assert_eq!(f.link(8, Direction::Inbound), LinkVerdict::Pass);
        f.heal();
        assert_eq!(f.link(7, Direction::Outbound), LinkVerdict::Pass);
        assert!(f.describe().is_empty());
    }

    #[test]
    fn a_peer_fault_wins_over_the_every_peer_fault_and_per_direction() {
        let f = Faults::new();
        f.set_link(0, Direction::Outbound, 0.0, Duration::from_millis(5), 1);
        f.set_link(9, Direction::Outbound, 1.0, Duration::ZERO, 1);
        assert_eq!(f.link(9, Direction::Outbound), LinkVerdict::Drop);
        assert_eq!(
            f.link(3, Direction::Outbound),
            LinkVerdict::Delay(Duration::from_millis(5))
        );
        assert_eq!(f.link(9, Direction::Inbound), LinkVerdict::Pass);
        f.set_link(9, Direction::Outbound, 0.0, Duration::ZERO, 1);
        assert_eq!(
            f.link(9, Direction::Outbound),
            LinkVerdict::Delay(Duration::from_millis(5))
        );
    }

    #[test]
    fn drops_follow_the_probability_and_the_seed() {
        let draw = |seed| {
            let f = Faults::new();
            f.set_link(4, Direction::Inbound, 0.3, Duration::ZERO, seed);
            (0..10_000)
                .map(|_| f.link(4, Direction::Inbound) == LinkVerdict::Drop)
                .collect::<Vec<_>>()
        };
        let a = draw(42);
        assert_eq!(a, draw(42), "the same seed draws the same drops");
        let dropped = a.iter().filter(|d| **d).count();
        assert!(
            (2_700..3_300).contains(&dropped),
            "{dropped} of 10000 at 0.3"
        );
    }

    #[test]
    fn counted_faults_count_down() {
        let f = Faults::new();
        f.fail_fsyncs(2);
        assert!(f.take_fsync_failure());
        assert!(f.take_fsync_failure());
        assert!(!f.take_fsync_failure());
        f.lose_writes(1);
        assert!(f.take_lost_write());
        assert!(!f.take_lost_write());
    }

    #[test]
    fn an_apply_pause_ends_by_itself_or_on_resume() {
        let f = Faults::new();
        assert!(!f.apply_paused());
        f.pause_apply(Duration::from_millis(30));
        assert!(f.apply_paused());
        let started = Instant::now();
        while f.apply_paused() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "the pause never ended"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(started.elapsed() >= Duration::from_millis(25));
        f.pause_apply(Duration::from_secs(60));
        assert!(f.apply_paused());
        f.resume_apply();
        assert!(!f.apply_paused());
    }

    #[test]
    fn actor_names_parse_both_spellings() {
        assert_eq!("log-writer".parse(), Ok(ActorKind::LogWriter));
        assert_eq!("log_writer".parse(), Ok(ActorKind::LogWriter));
        assert!("nope".parse::<ActorKind>().is_err());
    }
}
