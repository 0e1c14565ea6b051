//! What a chaos run hands back: the plan, the timeline, what the workload
//! did, and the verdict with one reason per failed check.

use std::time::Duration;

use super::faults::TimelineEntry;
use super::schedule::PlannedFault;

/// The checks a verdict is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Check {
    /// The faults went in and out as the chaos API promises, and the
    /// cluster recovered after each (a leader, members restarted).
    Faults,
    /// The recorded KV history is linearizable.
    Linearizability,
    /// Every acknowledged write is in every member's store.
    AckedWrites,
    /// Every watcher received every event once, in revision order.
    WatchStreams,
    /// No lease expired while kept alive.
    Leases,
    /// Every member's store is the same (HashKV at one revision, and event
    /// by event).
    MembersAgree,
}

impl Check {
    /// Its name in the verdict.
    pub fn name(self) -> &'static str {
        match self {
            Check::Faults => "faults",
            Check::Linearizability => "linearizability",
            Check::AckedWrites => "acknowledged writes",
            Check::WatchStreams => "watch streams",
            Check::Leases => "leases",
            Check::MembersAgree => "members agree",
        }
    }

    /// Every check, in the order the verdict lists them.
    pub const ALL: [Check; 6] = [
        Check::Faults,
        Check::Linearizability,
        Check::AckedWrites,
        Check::WatchStreams,
        Check::Leases,
        Check::MembersAgree,
    ];
}

/// One reason a run failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub check: Check,
    pub detail: String,
}

/// The outcome of [`super::run`].
#[derive(Debug, Clone)]
pub struct ChaosReport {
    pub seed: u64,
    pub duration: Duration,
    pub members: usize,
    /// The faults the seed planned.
    pub schedule: Vec<PlannedFault>,
    /// What was done, when, to which member.
    pub timeline: Vec<TimelineEntry>,
    /// One line per part of the workload and per checker (counts, times).
    pub stats: Vec<String>,
    pub failures: Vec<Failure>,
    /// Where the history, timeline and member logs were saved (on FAIL).
    pub saved_to: Option<std::path::PathBuf>,
    /// From the cluster's start to the verdict.
    pub took: Duration,
}

impl ChaosReport {
    /// Whether every check passed.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }

    /// The failures of one check.
    pub fn failures_of(&self, check: Check) -> Vec<&Failure> {
        self.failures.iter().filter(|f| f.check == check).collect()
    }

    /// `PASS`, or `FAIL` and every reason, one per line.
    pub fn verdict(&self) -> String {
        if self.passed() {
            return "verdict: PASS".to_string();
        }
        let mut text = String::from("verdict: FAIL");
        for check in Check::ALL {
            for f in self.failures_of(check) {
                text.push_str(&format!("\n  - {}: {}", check.name(), f.detail));
            }
        }
        text
    }
}

impl std::fmt::Display for ChaosReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "chaos run: seed {}, {:?}, {} members (replay: make chaos SEED={} DURATION={}s)",
            self.seed,
            self.duration,
            self.members,
            self.seed,
            self.duration.as_secs()
        )?;
        writeln!(f, "schedule (planned from the seed):")?;
        for fault in &self.schedule {
            writeln!(f, "  {fault}")?;
        }
        writeln!(f, "timeline:")?;
        for entry in &self.timeline {
            writeln!(f, "  {entry}")?;
        }
        for line in &self.stats {
            writeln!(f, "{line}")?;
        }
        if let Some(dir) = &self.saved_to {
            writeln!(
                f,
                "history, timeline and member logs saved in {}",
                dir.display()
            )?;
        }
        writeln!(f, "took {:.1}s", self.took.as_secs_f64())?;
        write!(f, "{}", self.verdict())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(failures: Vec<Failure>) -> ChaosReport {
        ChaosReport {
            seed: 7,
            duration: Duration::from_secs(20),
            members: 3,
            schedule: Vec::new(),
            timeline: vec![TimelineEntry {
                at_ms: 1234,
                member: Some("m1".to_string()),
                action: "crash (leader)".to_string(),
            }],
            stats: vec!["workload: 10 operations".to_string()],
            failures,
            saved_to: None,
            took: Duration::from_secs(25),
        }
    }

    #[test]
    fn a_run_without_failures_passes() {
        let r = report(Vec::new());
        assert!(r.passed());
        let text = r.to_string();
        assert!(text.contains("make chaos SEED=7 DURATION=20s"), "{text}");
        assert!(text.contains("    1.234s  m1   crash (leader)"), "{text}");
        assert!(text.ends_with("verdict: PASS"), "{text}");
    }

    #[test]
    fn a_failed_run_lists_every_reason_by_check() {
        let r = report(vec![
            Failure {
                check: Check::MembersAgree,
                detail: "m1 differs".to_string(),
            },
            Failure {
                check: Check::AckedWrites,
                detail: "m1: k lost".to_string(),
            },
        ]);
        assert!(!r.passed());
        assert_eq!(r.failures_of(Check::AckedWrites).len(), 1);
        assert_eq!(
            r.verdict(),
            "verdict: FAIL\n  - acknowledged writes: m1: k lost\n  - members agree: m1 differs"
        );
    }
}
