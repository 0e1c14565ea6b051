//! Injecting the planned faults into a running cluster through each
//! member's chaos API (`oxcdinternal.Chaos`), one at a time, and writing
//! every step down as a line of the timeline.
//!
//! 1. [`Driver::run`] walks the plan in order and starts no fault once the
//!    run's duration is up. Before each fault it plants the requested bug
//!    if its time has come ([`PlantOpts`]).
//! 2. A fault's role is resolved to a member when it is injected: the
//!    leader every running member names (waited for, bounded), or a
//!    follower picked by the drawn number.
//! 3. The fault is injected, held for its drawn time (the schedule, not a
//!    wait for a condition), and healed: link faults and partitions by
//!    `Heal` on every member they touched, a pause by `ResumeApply`, a slow
//!    disk by `SlowDisk 0`. A member crashed, or stopped by its failing
//!    fsync, is waited for (bounded) until its process has exited, then
//!    restarted by the harness; the time it was down is kept
//!    ([`DownWindow`]) so a watch stream it broke may be resumed.
//! 4. After each heal the driver waits (bounded) until the running members
//!    agree on a leader again, so at most one member is impaired at a time.
//! 5. [`Driver::heal_all`] ends the run: every member healed, resumed and
//!    its disk sped up, every stopped member restarted, a leader agreed on.
//!
//! Whatever does not go as the chaos API promises (an RPC refused, a member
//! that does not stop, a restart that fails, no leader after a heal) is a
//! problem the verdict reports.

use std::time::{Duration, Instant};

use proto::internal::chaos_client::ChaosClient;
use proto::internal::{
    CrashRequest, Direction, FailFsyncRequest, HealRequest, KillActorRequest, LinkFaultRequest,
    PartitionRequest, PauseApplyRequest, PlantBugRequest, ResumeApplyRequest, SlowDiskRequest,
};
use tonic::transport::Channel;

use super::schedule::{Action, PlannedFault, Role};
use super::workload::millis_since;
use crate::cluster::Cluster;

/// Bound on one chaos RPC.
const RPC_TIMEOUT: Duration = Duration::from_secs(3);
/// Bound on the cluster agreeing on a leader after a heal.
const LEADER_TIMEOUT: Duration = Duration::from_secs(20);
/// Bound on a crashed or fsync-failed member's process exiting.
const EXIT_TIMEOUT: Duration = Duration::from_secs(15);
/// A pause of apply ends by itself this long after its planned hold, in
/// case the `ResumeApply` is lost.
const PAUSE_SAFETY_MARGIN_MS: u64 = 5_000;

/// One line of the timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimelineEntry {
    /// Milliseconds since the workload started.
    pub at_ms: u64,
    /// The member's name, when the step concerns one.
    pub member: Option<String>,
    pub action: String,
}

impl std::fmt::Display for TimelineEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:>9.3}s  {:<4} {}",
            self.at_ms as f64 / 1000.0,
            self.member.as_deref().unwrap_or("-"),
            self.action
        )
    }
}

/// A time a member's process was down (step 3), in ms since the start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DownWindow {
    pub member: usize,
    pub from_ms: u64,
    /// When its restart was answered; `None` if it never came back.
    pub to_ms: Option<u64>,
}

/// A bug to plant on purpose, to show the checker catches it.
#[derive(Debug, Clone)]
pub struct PlantOpts {
    /// The chaos API's name for it (`lose-writes`).
    pub bug: String,
    /// How many operations it spoils.
    pub count: u32,
    /// When to plant it, from the start of the workload.
    pub after: Duration,
    /// Which member's role gets it.
    pub role: Role,
}

/// Drives the faults of one run (see the module doc).
pub struct Driver<'a> {
    cluster: &'a mut Cluster,
    origin: Instant,
    pub timeline: Vec<TimelineEntry>,
    pub problems: Vec<String>,
    pub down: Vec<DownWindow>,
    plant: Option<PlantOpts>,
}

impl<'a> Driver<'a> {
    /// A driver whose timeline counts from `origin`.
    pub fn new(cluster: &'a mut Cluster, origin: Instant, plant: Option<PlantOpts>) -> Self {
        Driver {
            cluster,
            origin,
            timeline: Vec::new(),
            problems: Vec::new(),
            down: Vec::new(),
            plant,
        }
    }

    /// Writes a line of the timeline.
    pub fn note(&mut self, member: Option<usize>, action: impl Into<String>) {
        let entry = TimelineEntry {
            at_ms: millis_since(self.origin),
            member: member.map(|i| self.cluster.name(i).to_string()),
            action: action.into(),
        };
        self.timeline.push(entry);
    }

    /// Notes a problem (also on the timeline).
    fn problem(&mut self, member: Option<usize>, what: String) {
        self.note(member, format!("PROBLEM: {what}"));
        self.problems.push(what);
    }

    /// Step 1: the plan's faults until `duration` has passed, then the rest
    /// of the duration with no fault.
    pub async fn run(&mut self, plan: &[PlannedFault], duration: Duration) {
        for fault in plan {
            self.plant_if_due().await;
            if self.origin.elapsed() >= duration {
                break;
            }
            self.inject(fault).await;
            tokio::time::sleep(fault.gap).await;
        }
        loop {
            self.plant_if_due().await;
            let left = duration.saturating_sub(self.origin.elapsed());
            if left.is_zero() {
                break;
            }
            let until_plant = self
                .plant
                .as_ref()
                .map_or(left, |p| p.after.saturating_sub(self.origin.elapsed()));
            tokio::time::sleep(left.min(until_plant).max(Duration::from_millis(1))).await;
        }
    }

    async fn plant_if_due(&mut self) {
        let due = self
            .plant
            .as_ref()
            .is_some_and(|p| self.origin.elapsed() >= p.after);
        if !due {
            return;
        }
        let Some(plant) = self.plant.take() else {
            return;
        };
        let target = match self.resolve(plant.role).await {
            Ok(target) => target,
            Err(e) => return self.problem(None, format!("plant-bug {}: {e}", plant.bug)),
        };
        let request = PlantBugRequest {
            bug: plant.bug.clone(),
            count: plant.count,
        };
        let answer = match self.chaos(target).await {
            Ok(mut c) => rpc(c.plant_bug(request)).await,
            Err(e) => Err(e),
        };
        let what = format!(
            "plant-bug {} x{} ({})",
            plant.bug,
            plant.count,
            role_name(plant.role)
        );
        self.outcome(target, what, answer.map(|r| r.message));
    }

    /// Steps 2 to 4 for one fault.
    async fn inject(&mut self, fault: &PlannedFault) {
        let target = match self.resolve(fault.role).await {
            Ok(target) => target,
            Err(e) => return self.problem(None, format!("{}: {e}", fault.action)),
        };
        let what = format!("{} ({})", fault.action, role_name(fault.role));
        match &fault.action {
            Action::KillActor(actor) => {
                let request = KillActorRequest {
                    actor: actor.to_string(),
                };
                let answer = self.call(
                    target,
                    |mut c| async move { rpc(c.kill_actor(request)).await },
                );
                let answer = answer.await;
                self.outcome(target, what, answer);
                tokio::time::sleep(fault.hold).await;
            }
            Action::Partition => {
                let others: Vec<usize> =
                    (0..self.cluster.size()).filter(|&i| i != target).collect();
                let ids = |members: &[usize]| -> Vec<u64> {
                    members
                        .iter()
                        .filter_map(|&i| self.cluster.member_id(i))
                        .collect()
                };
                let (theirs, mine) = (ids(&others), ids(&[target]));
                let answer = self
                    .call(target, |mut c| async move {
                        rpc(c.partition(PartitionRequest { peers: theirs })).await
                    })
                    .await;
                self.outcome(target, what, answer);
                for &o in &others {
                    let peers = mine.clone();
                    let answer = self
                        .call(o, |mut c| async move {
                            rpc(c.partition(PartitionRequest { peers })).await
                        })
                        .await;
                    self.outcome(
                        o,
                        format!("partition from {}", self.cluster.name(target)),
                        answer,
                    );
                }
                tokio::time::sleep(fault.hold).await;
                for i in std::iter::once(target).chain(others) {
                    self.heal(i).await;
                }
            }
            Action::Delay { delay_ms } => {
                self.link_fault(target, what, 0.0, *delay_ms, 0).await;
                tokio::time::sleep(fault.hold).await;
                self.heal(target).await;
            }
            Action::Drop { probability, seed } => {
                self.link_fault(target, what, *probability, 0, *seed).await;
                tokio::time::sleep(fault.hold).await;
                self.heal(target).await;
            }
            Action::PauseApply => {
                let max_ms = fault.hold.as_millis() as u64 + PAUSE_SAFETY_MARGIN_MS;
                let request = PauseApplyRequest {
                    max_ms: u32::try_from(max_ms).unwrap_or(u32::MAX),
                };
                let answer = self
                    .call(
                        target,
                        |mut c| async move { rpc(c.pause_apply(request)).await },
                    )
                    .await;
                self.outcome(target, what, answer);
                tokio::time::sleep(fault.hold).await;
                let answer = self
                    .call(target, |mut c| async move {
                        rpc(c.resume_apply(ResumeApplyRequest {})).await
                    })
                    .await;
                self.outcome(target, "resume-apply".to_string(), answer);
            }
            Action::SlowDisk { delay_ms } => {
                self.slow_disk(target, what, *delay_ms).await;
                tokio::time::sleep(fault.hold).await;
                self.slow_disk(target, "slow-disk 0 ms".to_string(), 0)
                    .await;
            }
            Action::FailFsync => {
                let asked = millis_since(self.origin);
                let answer = self
                    .call(target, |mut c| async move {
                        rpc(c.fail_fsync(FailFsyncRequest { count: 1 })).await
                    })
                    .await;
                let injected = answer.is_ok();
                self.outcome(target, what, answer);
                if injected {
                    self.await_exit(target, asked, "after its failed fsync")
                        .await;
                }
                tokio::time::sleep(fault.hold).await;
                self.restart(target).await;
            }
            Action::Crash => {
                let asked = millis_since(self.origin);
                let answer = self
                    .call(target, |mut c| async move {
                        rpc(c.crash(CrashRequest {})).await
                    })
                    .await;
                let injected = answer.is_ok();
                self.outcome(target, what, answer);
                if injected {
                    self.await_exit(target, asked, "after the crash").await;
                }
                tokio::time::sleep(fault.hold).await;
                self.restart(target).await;
            }
        }
        if let Err(e) = self.cluster.wait_leader(LEADER_TIMEOUT).await {
            self.problem(
                None,
                format!("no leader agreed on after {}: {e}", fault.action),
            );
        }
    }

    /// Step 5: every fault cleared, every member running, one leader.
    pub async fn heal_all(&mut self) {
        self.note(None, "end of the schedule: heal every member");
        for i in 0..self.cluster.size() {
            if !self.cluster.is_running(i) {
                self.restart(i).await;
                continue;
            }
            self.heal(i).await;
            let answer = self
                .call(i, |mut c| async move {
                    rpc(c.resume_apply(ResumeApplyRequest {})).await
                })
                .await;
            if let Err(e) = answer {
                self.problem(Some(i), format!("resume-apply: {e}"));
            }
            let answer = self
                .call(i, |mut c| async move {
                    rpc(c.slow_disk(SlowDiskRequest { delay_ms: 0 })).await
                })
                .await;
            if let Err(e) = answer {
                self.problem(Some(i), format!("slow-disk 0: {e}"));
            }
        }
        match self.cluster.wait_leader(LEADER_TIMEOUT).await {
            Ok(leader) => self.note(Some(leader), "leader after the heal"),
            Err(e) => self.problem(None, format!("no leader after the final heal: {e}")),
        }
    }

    /// Step 2.
    async fn resolve(&mut self, role: Role) -> Result<usize, String> {
        let leader = self
            .cluster
            .wait_leader(LEADER_TIMEOUT)
            .await
            .map_err(|e| format!("no leader to pick a target by: {e}"))?;
        match role {
            Role::Leader => Ok(leader),
            Role::Follower(n) => {
                let followers: Vec<usize> = self
                    .cluster
                    .running()
                    .into_iter()
                    .filter(|&i| i != leader)
                    .collect();
                if followers.is_empty() {
                    return Err("no follower is running".to_string());
                }
                Ok(followers[usize::from(n) % followers.len()])
            }
        }
    }

    async fn chaos(&self, i: usize) -> Result<ChaosClient<Channel>, String> {
        match tokio::time::timeout(RPC_TIMEOUT, self.cluster.channel(i)).await {
            Ok(Ok(channel)) => Ok(ChaosClient::new(channel)),
            Ok(Err(e)) => Err(format!("connect: {e}")),
            Err(_) => Err(format!("connect timed out after {RPC_TIMEOUT:?}")),
        }
    }

    /// Runs `f` on a chaos client of member `i`; the answer's message.
    async fn call<F, Fut>(&self, i: usize, f: F) -> Result<String, String>
    where
        F: FnOnce(ChaosClient<Channel>) -> Fut,
        Fut: std::future::Future<Output = Result<proto::internal::ChaosResponse, String>>,
    {
        let client = self.chaos(i).await?;
        f(client).await.map(|r| r.message)
    }

    /// Notes an injection's outcome; a refused one is a problem.
    fn outcome(&mut self, i: usize, what: String, answer: Result<String, String>) {
        match answer {
            Ok(message) if message.is_empty() => self.note(Some(i), what),
            Ok(message) => self.note(Some(i), format!("{what}: {message}")),
            Err(e) => self.problem(Some(i), format!("{what} refused: {e}")),
        }
    }

    async fn link_fault(
        &mut self,
        i: usize,
        what: String,
        probability: f64,
        delay: u32,
        seed: u64,
    ) {
        let request = LinkFaultRequest {
            peer: 0,
            direction: Direction::Both as i32,
            drop_probability: probability,
            delay_ms: delay,
            seed,
        };
        let answer = self
            .call(i, |mut c| async move { rpc(c.link_fault(request)).await })
            .await;
        self.outcome(i, what, answer);
    }

    async fn slow_disk(&mut self, i: usize, what: String, delay_ms: u32) {
        let answer = self
            .call(i, |mut c| async move {
                rpc(c.slow_disk(SlowDiskRequest { delay_ms })).await
            })
            .await;
        self.outcome(i, what, answer);
    }

    async fn heal(&mut self, i: usize) {
        let answer = self
            .call(i, |mut c| async move { rpc(c.heal(HealRequest {})).await })
            .await;
        self.outcome(i, "heal".to_string(), answer);
    }

    /// Waits (bounded) until member `i`'s process has exited; opens its
    /// down window at `asked_ms`, when the fault that stops it was asked
    /// for. A member that does not stop is killed (and that is a problem).
    async fn await_exit(&mut self, i: usize, asked_ms: u64, why: &str) {
        match self.cluster.wait_exit(i, EXIT_TIMEOUT).await {
            Some(status) => self.note(Some(i), format!("exited {why} (status {status})")),
            None => {
                self.problem(
                    Some(i),
                    format!("still running {EXIT_TIMEOUT:?} {why}; killing it"),
                );
                if let Err(e) = self.cluster.kill9(i) {
                    self.problem(Some(i), format!("kill -9: {e}"));
                }
            }
        }
        self.down.push(DownWindow {
            member: i,
            from_ms: asked_ms,
            to_ms: None,
        });
    }

    /// Restarts member `i` (not running) and closes its down window.
    async fn restart(&mut self, i: usize) {
        if self.cluster.is_running(i) {
            return;
        }
        if !self.down.iter().any(|w| w.member == i && w.to_ms.is_none()) {
            self.down.push(DownWindow {
                member: i,
                from_ms: millis_since(self.origin),
                to_ms: None,
            });
        }
        let started = Instant::now();
        match self.cluster.restart(i).await {
            Ok(()) => {
                let took = started.elapsed().as_millis();
                self.note(
                    Some(i),
                    format!("restarted (answering with a leader after {took} ms)"),
                );
                let now = millis_since(self.origin);
                for w in self.down.iter_mut().filter(|w| w.member == i) {
                    w.to_ms.get_or_insert(now);
                }
            }
            Err(e) => self.problem(Some(i), format!("restart failed: {e}")),
        }
    }
}

/// Runs one RPC under [`RPC_TIMEOUT`], flattening errors to text (the
/// setup and read-back steps of the run use it too).
pub(super) async fn rpc<T>(
    call: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T, String> {
    match tokio::time::timeout(RPC_TIMEOUT, call).await {
        Ok(Ok(resp)) => Ok(resp.into_inner()),
        Ok(Err(status)) => Err(format!("{:?}: {}", status.code(), status.message())),
        Err(_) => Err(format!("timed out after {RPC_TIMEOUT:?}")),
    }
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Leader => "leader",
        Role::Follower(_) => "follower",
    }
}
