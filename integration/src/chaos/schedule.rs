//! The seeded fault schedule of a chaos run: which fault, on which member's
//! role, held how long, and the pause before the next. A plain function of
//! the seed and the duration, so the same seed plans the same run.
//!
//! 1. The faults are dealt from a deck holding every kind once: a kill of
//!    each actor (raft, log writer, transport, apply, watch, lessor), a
//!    partition, a delay, a drop, a pause of apply, a slow disk, a failing
//!    fsync and a crash. The deck is shuffled with the seeded RNG and dealt
//!    again, freshly shuffled, when it runs out, so a short run still sees
//!    a spread of kinds and a long one sees each many times.
//! 2. Each fault draws its target role (the leader, or one of the
//!    followers), its parameters (delay, drop probability, disk latency),
//!    how long it is held before it is healed, and the gap after it.
//! 3. Faults are planned back to back until their planned start passes the
//!    run's duration. The run executes them in order and starts no fault
//!    after the duration; restarts and elections make the real times
//!    later than the planned ones, which the timeline shows.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

/// The actors a member's supervisor restarts, as the chaos API names them.
pub const ACTORS: [&str; 6] = [
    "raft",
    "log_writer",
    "transport",
    "apply",
    "watch",
    "lessor",
];

/// Which member a fault hits, resolved when it is injected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The member every running member names as leader.
    Leader,
    /// A follower: the `n % followers`-th of them, in member order.
    Follower(u8),
}

/// One kind of fault with its drawn parameters.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// `KillActor`: the supervisor restarts it from storage.
    KillActor(&'static str),
    /// The member cut off from every other member, both ways.
    Partition,
    /// Every raft message batch to and from the member delayed.
    Delay { delay_ms: u32 },
    /// Raft message batches to and from the member dropped at random.
    Drop { probability: f64, seed: u64 },
    /// The member stops applying committed entries.
    PauseApply,
    /// Every raft log fsync of the member slowed down.
    SlowDisk { delay_ms: u32 },
    /// The member's next raft log write fails: it must stop, then it is
    /// restarted.
    FailFsync,
    /// The member's process ends at once; it is restarted after the hold.
    Crash,
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Action::KillActor(actor) => write!(f, "kill-actor {actor}"),
            Action::Partition => write!(f, "partition"),
            Action::Delay { delay_ms } => write!(f, "delay {delay_ms} ms"),
            Action::Drop { probability, .. } => write!(f, "drop {probability:.2}"),
            Action::PauseApply => write!(f, "pause-apply"),
            Action::SlowDisk { delay_ms } => write!(f, "slow-disk {delay_ms} ms"),
            Action::FailFsync => write!(f, "fail-fsync"),
            Action::Crash => write!(f, "crash"),
        }
    }
}

/// One fault of the plan (step 2 of the module doc).
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedFault {
    /// Planned start, from the start of the workload.
    pub at: Duration,
    pub role: Role,
    pub action: Action,
    /// How long the fault stays before it is healed (for a crash: how long
    /// the member stays down).
    pub hold: Duration,
    /// The pause after the heal, before the next fault.
    pub gap: Duration,
}

impl std::fmt::Display for PlannedFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let role = match self.role {
            Role::Leader => "leader".to_string(),
            Role::Follower(n) => format!("follower#{n}"),
        };
        write!(
            f,
            "{:>8.3}s  {role:<11} {:<22} hold {:.3}s, then {:.3}s",
            self.at.as_secs_f64(),
            self.action.to_string(),
            self.hold.as_secs_f64(),
            self.gap.as_secs_f64()
        )
    }
}

/// Ranges the schedule draws from.
#[derive(Debug, Clone)]
pub struct ScheduleOpts {
    /// Hold time of each fault, drawn uniformly from this range (ms).
    pub hold_ms: (u64, u64),
    /// Pause between a heal and the next fault (ms).
    pub gap_ms: (u64, u64),
}

impl Default for ScheduleOpts {
    fn default() -> Self {
        ScheduleOpts {
            hold_ms: (500, 2500),
            gap_ms: (300, 1200),
        }
    }
}

/// The faults a run of `duration` plans from `seed` (steps 1 to 3).
pub fn plan(seed: u64, duration: Duration, opts: &ScheduleOpts) -> Vec<PlannedFault> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut deck: Vec<Kind> = Vec::new();
    let mut at = Duration::ZERO;
    let mut faults = Vec::new();
    while at < duration {
        if deck.is_empty() {
            deck = Kind::all();
            deck.shuffle(&mut rng);
        }
        let kind = deck.pop().expect("the deck was just refilled");
        let role = if rng.gen_bool(0.5) {
            Role::Leader
        } else {
            Role::Follower(rng.gen_range(0..u8::MAX))
        };
        let action = kind.draw(&mut rng);
        let hold = Duration::from_millis(rng.gen_range(opts.hold_ms.0..=opts.hold_ms.1));
        let gap = Duration::from_millis(rng.gen_range(opts.gap_ms.0..=opts.gap_ms.1));
        faults.push(PlannedFault {
            at,
            role,
            action,
            hold,
            gap,
        });
        at += hold + gap;
    }
    faults
}

/// A card of the deck: a fault kind before its parameters are drawn.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Kill(&'static str),
    Partition,
    Delay,
    Drop,
    PauseApply,
    SlowDisk,
    FailFsync,
    Crash,
}

impl Kind {
    fn all() -> Vec<Kind> {
        let mut all: Vec<Kind> = ACTORS.iter().map(|&a| Kind::Kill(a)).collect();
        all.extend([
            Kind::Partition,
            Kind::Delay,
            Kind::Drop,
            Kind::PauseApply,
            Kind::SlowDisk,
            Kind::FailFsync,
            Kind::Crash,
        ]);
        all
    }

    fn draw(self, rng: &mut StdRng) -> Action {
        match self {
            Kind::Kill(actor) => Action::KillActor(actor),
            Kind::Partition => Action::Partition,
            Kind::Delay => Action::Delay {
                delay_ms: rng.gen_range(20..=150),
            },
            Kind::Drop => Action::Drop {
                probability: f64::from(rng.gen_range(10u32..=50)) / 100.0,
                seed: rng.r#gen(),
            },
            Kind::PauseApply => Action::PauseApply,
            Kind::SlowDisk => Action::SlowDisk {
                delay_ms: rng.gen_range(20..=150),
            },
            Kind::FailFsync => Action::FailFsync,
            Kind::Crash => Action::Crash,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_plans_the_same_schedule() {
        let opts = ScheduleOpts::default();
        let a = plan(7, Duration::from_secs(60), &opts);
        let b = plan(7, Duration::from_secs(60), &opts);
        let c = plan(8, Duration::from_secs(60), &opts);
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn faults_are_back_to_back_and_start_within_the_duration() {
        let opts = ScheduleOpts::default();
        let duration = Duration::from_secs(30);
        let faults = plan(1, duration, &opts);
        assert!(!faults.is_empty());
        assert_eq!(faults[0].at, Duration::ZERO);
        for pair in faults.windows(2) {
            assert_eq!(pair[1].at, pair[0].at + pair[0].hold + pair[0].gap);
        }
        assert!(faults.iter().all(|f| f.at < duration));
        for f in &faults {
            let hold = f.hold.as_millis() as u64;
            assert!((opts.hold_ms.0..=opts.hold_ms.1).contains(&hold), "{f}");
        }
    }

    #[test]
    fn a_long_run_deals_every_kind_and_both_roles() {
        let faults = plan(3, Duration::from_secs(600), &ScheduleOpts::default());
        for actor in ACTORS {
            for leader in [true, false] {
                assert!(
                    faults.iter().any(|f| f.action == Action::KillActor(actor)
                        && matches!(f.role, Role::Leader) == leader),
                    "kill {actor} on the {}",
                    if leader { "leader" } else { "follower" }
                );
            }
        }
        let names: Vec<String> = faults.iter().map(|f| f.action.to_string()).collect();
        for kind in [
            "partition",
            "delay",
            "drop",
            "pause-apply",
            "slow-disk",
            "fail-fsync",
            "crash",
        ] {
            assert!(names.iter().any(|n| n.starts_with(kind)), "{kind} dealt");
        }
    }

    #[test]
    fn a_deck_deals_each_kind_once_before_repeating() {
        let faults = plan(11, Duration::from_secs(600), &ScheduleOpts::default());
        let deck = Kind::all().len();
        let first: Vec<String> = faults[..deck]
            .iter()
            .map(|f| f.action.to_string().split(' ').take(2).collect::<String>())
            .collect();
        let distinct: std::collections::HashSet<_> = first.iter().collect();
        assert_eq!(distinct.len(), deck, "{first:?}");
    }

    #[test]
    fn a_planned_fault_prints_as_one_line() {
        let f = PlannedFault {
            at: Duration::from_millis(1500),
            role: Role::Follower(3),
            action: Action::Drop {
                probability: 0.3,
                seed: 9,
            },
            hold: Duration::from_millis(800),
            gap: Duration::from_millis(400),
        };
        assert_eq!(
            f.to_string(),
            "   1.500s  follower#3  drop 0.30              hold 0.800s, then 0.400s"
        );
    }
}
