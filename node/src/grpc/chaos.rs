//! The chaos API (`oxcdinternal.Chaos`): faults injected into this member
//! on purpose, at runtime.
//!
//! 1. Served on the client URLs always, but answering only when the member
//!    started with `--enable-chaos` (logged loudly at start); otherwise every
//!    call is `FailedPrecondition`. With `--client-cert-auth` a client needs
//!    a certificate signed by the trusted CA to get this far, as for every
//!    other service on the port.
//! 2. Each call sets one switch in [`Faults`] (read by the actor where the
//!    fault bites, see [`actors::chaos`]) or sends a `Kill` to one actor
//!    ([`Killers`]; its supervisor restarts it).
//! 3. Each action is one log line (warn) and one count in
//!    `oxcd_chaos_actions_total{action}`, and its answer repeats the line.

use std::sync::Arc;
use std::time::Duration;

use actors::chaos::{ActorKind, Direction, Faults, Killers};
use proto::internal::chaos_server::Chaos;
use proto::internal::{
    ChaosResponse, CrashRequest, FailFsyncRequest, FaultsRequest, FaultsResponse, HealRequest,
    KillActorRequest, LinkFaultRequest, PartitionRequest, PauseApplyRequest, PlantBugRequest,
    ResumeApplyRequest, SlowDiskRequest,
};
use tonic::{Request, Response, Status};

/// What `FailedPrecondition` says when the API is off.
pub const CHAOS_DISABLED: &str = "chaos API is disabled; start the member with --enable-chaos";

/// The longest apply pause one call may ask for.
const MAX_PAUSE: Duration = Duration::from_secs(600);
/// A pause without a bound ends by itself after this long.
const DEFAULT_PAUSE: Duration = Duration::from_secs(60);
/// Exit status of `Crash` (as a shell reports a process killed by SIGKILL).
const CRASH_STATUS: i32 = 137;

/// What the chaos API acts on, when enabled.
#[derive(Clone)]
pub struct ChaosHooks {
    pub member_id: u64,
    pub faults: Arc<Faults>,
    pub killers: Killers,
    pub actions: prometheus::IntCounterVec,
}

impl ChaosHooks {
    /// Registers `oxcd_chaos_actions_total{action}` in `registry`.
    pub fn new(
        member_id: u64,
        faults: Arc<Faults>,
        killers: Killers,
        registry: &prometheus::Registry,
    ) -> prometheus::Result<Self> {
        let actions = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "oxcd_chaos_actions_total",
                "Faults injected through the chaos API, by action.",
            ),
            &["action"],
        )?;
        registry.register(Box::new(actions.clone()))?;
        Ok(Self {
            member_id,
            faults,
            killers,
            actions,
        })
    }
}

/// The `Chaos` service of one member: `None` without `--enable-chaos`.
#[derive(Clone)]
pub struct ChaosService {
    hooks: Option<ChaosHooks>,
}

impl ChaosService {
    pub fn new(hooks: Option<ChaosHooks>) -> Self {
        Self { hooks }
    }

    fn hooks(&self) -> Result<&ChaosHooks, Status> {
        self.hooks
            .as_ref()
            .ok_or_else(|| Status::failed_precondition(CHAOS_DISABLED))
    }

    /// Logs and counts one action; its answer.
    fn done(&self, action: &str, line: String) -> Result<Response<ChaosResponse>, Status> {
        let hooks = self.hooks()?;
        hooks.actions.with_label_values(&[action]).inc();
        tracing::warn!(action, "chaos: {line}");
        Ok(Response::new(ChaosResponse {
            message: line,
            member_id: hooks.member_id,
        }))
    }
}

fn directions(direction: i32) -> Result<Vec<Direction>, Status> {
    use proto::internal::Direction as Wire;
    match Wire::try_from(direction) {
        Ok(Wire::Both) => Ok(vec![Direction::Outbound, Direction::Inbound]),
        Ok(Wire::Outbound) => Ok(vec![Direction::Outbound]),
        Ok(Wire::Inbound) => Ok(vec![Direction::Inbound]),
        Err(_) => Err(Status::invalid_argument(format!(
            "unknown direction {direction}"
        ))),
    }
}

fn peer_name(peer: u64) -> String {
    if peer == 0 {
        "every peer".to_string()
    } else {
        format!("{peer:x}")
    }
}

#[tonic::async_trait]
impl Chaos for ChaosService {
    async fn kill_actor(
        &self,
        request: Request<KillActorRequest>,
    ) -> Result<Response<ChaosResponse>, Status> {
        let hooks = self.hooks()?;
        let kind: ActorKind = request
            .into_inner()
            .actor
            .parse()
            .map_err(Status::invalid_argument)?;
        hooks.killers.kill(kind).map_err(Status::unavailable)?;
        self.done("kill_actor", format!("killed the {kind} actor"))
    }

    async fn link_fault(
        &self,
        request: Request<LinkFaultRequest>,
    ) -> Result<Response<ChaosResponse>, Status> {
        let hooks = self.hooks()?;
        let r = request.into_inner();
        if !(0.0..=1.0).contains(&r.drop_probability) {
            return Err(Status::invalid_argument(format!(
                "drop probability {} is not within [0, 1]",
                r.drop_probability
            )));
        }
        let delay = Duration::from_millis(u64::from(r.delay_ms));
        let mut lines = Vec::new();
        for direction in directions(r.direction)? {
            hooks
                .faults
                .set_link(r.peer, direction, r.drop_probability, delay, r.seed);
            lines.push(format!(
                "{direction} {}: drop {:.2}, delay {} ms",
                peer_name(r.peer),
                r.drop_probability,
                r.delay_ms
            ));
        }
        let action = if r.drop_probability > 0.0 {
            "drop"
        } else {
            "delay"
        };
        self.done(action, format!("link fault {}", lines.join("; ")))
    }

    async fn partition(
        &self,
        request: Request<PartitionRequest>,
    ) -> Result<Response<ChaosResponse>, Status> {
        let hooks = self.hooks()?;
        let peers = request.into_inner().peers;
        if peers.contains(&hooks.member_id) {
            return Err(Status::invalid_argument(
                "a member cannot be partitioned from itself",
            ));
        }
        hooks.faults.partition(&peers);
        let names: Vec<String> = peers.iter().map(|p| format!("{p:x}")).collect();
        self.done(
            "partition",
            format!("cut every link to and from [{}]", names.join(", ")),
        )
    }

    async fn heal(&self, _: Request<HealRequest>) -> Result<Response<ChaosResponse>, Status> {
        self.hooks()?.faults.heal();
        self.done("heal", "healed every link".to_string())
    }

    async fn pause_apply(
        &self,
        request: Request<PauseApplyRequest>,
    ) -> Result<Response<ChaosResponse>, Status> {
        let hooks = self.hooks()?;
        let max = match request.into_inner().max_ms {
            0 => DEFAULT_PAUSE,
            ms => Duration::from_millis(u64::from(ms)),
        };
        if max > MAX_PAUSE {
            return Err(Status::invalid_argument(format!(
                "an apply pause lasts at most {} ms",
                MAX_PAUSE.as_millis()
            )));
        }
        hooks.faults.pause_apply(max);
        self.done(
            "pause_apply",
            format!("apply paused for at most {} ms", max.as_millis()),
        )
    }

    async fn resume_apply(
        &self,
        _: Request<ResumeApplyRequest>,
    ) -> Result<Response<ChaosResponse>, Status> {
        self.hooks()?.faults.resume_apply();
        self.done("resume_apply", "apply resumed".to_string())
    }

    async fn slow_disk(
        &self,
        request: Request<SlowDiskRequest>,
    ) -> Result<Response<ChaosResponse>, Status> {
        let ms = request.into_inner().delay_ms;
        self.hooks()?
            .faults
            .set_fsync_delay(Duration::from_millis(u64::from(ms)));
        self.done(
            "slow_disk",
            format!("every raft log write takes {ms} ms longer"),
        )
    }

    async fn fail_fsync(
        &self,
        request: Request<FailFsyncRequest>,
    ) -> Result<Response<ChaosResponse>, Status> {
        let count = request.into_inner().count;
        self.hooks()?.faults.fail_fsyncs(u64::from(count));
        self.done(
            "fail_fsync",
            format!("the next {count} raft log writes fail (the first one stops the member)"),
        )
    }

    async fn crash(&self, _: Request<CrashRequest>) -> Result<Response<ChaosResponse>, Status> {
        let answer = self.done(
            "crash",
            format!("crashing now (exit status {CRASH_STATUS})"),
        )?;
        // After the answer is on its way: the process ends without any
        // shutdown, as in a crash (what is durable is what was fsynced).
        tokio::spawn(async {
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(50)).await;
            std::process::exit(CRASH_STATUS);
        });
        Ok(answer)
    }

    async fn plant_bug(
        &self,
        request: Request<PlantBugRequest>,
    ) -> Result<Response<ChaosResponse>, Status> {
        let hooks = self.hooks()?;
        let r = request.into_inner();
        match r.bug.as_str() {
            "lose-writes" => hooks.faults.lose_writes(u64::from(r.count)),
            other => {
                return Err(Status::invalid_argument(format!(
                    "unknown bug {other:?} (known: lose-writes)"
                )));
            }
        }
        self.done(
            "plant_bug",
            format!(
                "planted bug {}: the next {} puts applied here are lost",
                r.bug, r.count
            ),
        )
    }

    async fn faults(&self, _: Request<FaultsRequest>) -> Result<Response<FaultsResponse>, Status> {
        let hooks = self.hooks()?;
        Ok(Response::new(FaultsResponse {
            member_id: hooks.member_id,
            faults: hooks.faults.describe(),
        }))
    }
}
