//! The lessor actor ("lease reaper"): lease deadlines, keep-alives and
//! expiry, on every member, active on the leader.
//!
//! 1. The apply actor tells it what each batch did to the leases
//!    (`LeasesChanged`, through the [`StoreFeed`] it implements) and hands
//!    it the new store's leases after a snapshot install.
//! 2. Every [`TICK`] it asks the raft actor whether this member leads, and
//!    in which term: a new term it leads promotes the core, losing the lead
//!    demotes it (the moment the lessor hears of it; a revoke it proposed
//!    in its old term is ignored when applied, see [`core`]).
//! 3. Then it proposes the core's upkeep through raft: each expired lease
//!    as its own `LeaseUpkeep` entry (one revoke, one revision), checkpoints
//!    as one entry. A proposal that fails lets the core propose it again.
//! 4. `KeepAlive` (or `KeepAlives`, those that arrived together on one
//!    stream) and `TimeToLive` from the gRPC facade are answered from the
//!    core (on the leader; a follower's facade forwards them there).
//!
//! Time is a monotonic clock read here and passed to the core in
//! milliseconds.
//!
//! Supervision: after a `Kill` or a panic the lessor restarts with its
//! lease table and countdowns ([`LessorCore::restart`]); what it had in
//! flight (a status request, proposals) is dropped and asked again.

pub mod core;

use std::time::{Duration, Instant};

use actix::prelude::*;
use proto::etcdserverpb::LeaseCheckpoint;
use proto::internal::{InternalRequest, LeaseUpkeep, internal_request};
use storage::mvcc::Lease;

use self::core::{LessorConfig, LessorCore, Upkeep};
use crate::Mailbox;
use crate::apply::core::StoreFeed;
use crate::messages::{
    GetStatus, IsPrimary, KeepAlive, KeepAlives, Kill, LeaseChange, LeasesChanged, LeasesReplaced,
    Propose, TimeToLive,
};
use crate::metrics::ActorProbe;
use crate::raft::RaftActor;

/// Mailbox capacity of the lessor (keep-alives, lease changes).
pub const LESSOR_MAILBOX: usize = 8192;
/// How often the lessor checks leadership, expiry and checkpoints: short,
/// so that a new leader's lessor takes over (and keep-alives waiting for a
/// reset checkpoint are proposed) within milliseconds. A tick scans every
/// lease once (about 50 us for 10,000 leases).
pub const TICK: Duration = Duration::from_millis(10);

/// The lessor actor.
pub struct LessorActor {
    core: LessorCore,
    raft: Option<Mailbox<RaftActor>>,
    probe: ActorProbe,
    origin: Instant,
    status_in_flight: bool,
}

impl LessorActor {
    pub fn new(config: LessorConfig, leases: Vec<(i64, Lease)>, probe: ActorProbe) -> Self {
        Self {
            core: LessorCore::new(config, leases),
            raft: None,
            probe,
            origin: Instant::now(),
            status_in_flight: false,
        }
    }

    fn now(&self) -> u64 {
        self.origin.elapsed().as_millis() as u64
    }

    /// Step 2: asks raft who leads, then runs step 3.
    fn tick(&mut self, ctx: &mut Context<Self>) {
        let Some(raft) = &self.raft else {
            return;
        };
        if self.status_in_flight {
            return;
        }
        let Ok(request) = raft.request(GetStatus) else {
            return;
        };
        self.status_in_flight = true;
        ctx.spawn(request.into_actor(self).map(|status, act, ctx| {
            act.status_in_flight = false;
            let _timer = act.probe.timing("Tick");
            let Ok(status) = status else {
                return;
            };
            let now = act.now();
            if status.leader == status.id && status.id != 0 {
                act.core.promote(status.term, now);
            } else if act.core.is_primary() {
                act.core.demote();
            }
            let upkeep = act.core.tick(now);
            act.propose(upkeep, ctx);
        }));
    }

    /// Step 3.
    fn propose(&mut self, upkeep: Upkeep, ctx: &mut Context<Self>) {
        if upkeep.is_empty() {
            return;
        }
        let term = upkeep.term;
        for id in upkeep.expire {
            let entry = LeaseUpkeep {
                term,
                expire: id,
                checkpoints: Vec::new(),
            };
            if !self.send(entry, ctx, move |act| act.core.expire_failed(id)) {
                self.core.expire_failed(id);
            }
        }
        if !upkeep.checkpoints.is_empty() {
            let ids: Vec<i64> = upkeep.checkpoints.iter().map(|(id, _)| *id).collect();
            let entry = LeaseUpkeep {
                term,
                expire: 0,
                checkpoints: upkeep
                    .checkpoints
                    .iter()
                    .map(|(id, remaining_ttl)| LeaseCheckpoint {
                        id: *id,
                        remaining_ttl: *remaining_ttl,
                    })
                    .collect(),
            };
            let failed = ids.clone();
            if !self.send(entry, ctx, move |act| act.core.checkpoints_failed(&failed)) {
                self.core.checkpoints_failed(&ids);
            }
        }
    }

    /// Proposes `upkeep`; `on_failure` runs if it is not applied. False when
    /// raft's mailbox refused it.
    fn send(
        &mut self,
        upkeep: LeaseUpkeep,
        ctx: &mut Context<Self>,
        on_failure: impl FnOnce(&mut Self) + 'static,
    ) -> bool {
        let (reply, rx) = tokio::sync::oneshot::channel();
        let propose = Propose {
            request: InternalRequest {
                id: 0,
                request: Some(internal_request::Request::LeaseUpkeep(upkeep)),
                ..Default::default()
            },
            reply,
        };
        if self
            .raft
            .as_ref()
            .is_none_or(|raft| raft.try_send(propose).is_err())
        {
            return false;
        }
        ctx.spawn(rx.into_actor(self).map(|result, act, _| {
            if !matches!(result, Ok(Ok(_))) {
                on_failure(act);
            }
        }));
        true
    }
}

impl Actor for LessorActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(TICK, |act, ctx| act.tick(ctx));
    }
}

impl Supervised for LessorActor {
    fn restarting(&mut self, _: &mut Context<Self>) {
        self.status_in_flight = false;
        self.core.restart();
    }
}

impl Handler<Kill> for LessorActor {
    type Result = ();

    fn handle(&mut self, _: Kill, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

/// Tells the lessor where raft is (the raft actor starts after the apply
/// actor, which feeds the lessor).
#[derive(Message)]
#[rtype(result = "()")]
pub struct ConnectRaft {
    pub raft: Mailbox<RaftActor>,
}

impl Handler<ConnectRaft> for LessorActor {
    type Result = ();

    fn handle(&mut self, msg: ConnectRaft, _: &mut Context<Self>) {
        let _timer = self.probe.timing("ConnectRaft");
        self.raft = Some(msg.raft);
    }
}

impl Handler<KeepAlive> for LessorActor {
    type Result = ();

    fn handle(&mut self, msg: KeepAlive, _: &mut Context<Self>) {
        let _timer = self.probe.handling("KeepAlive");
        let now = self.now();
        self.core.keep_alive(msg.id, now, msg.reply);
    }
}

impl Handler<KeepAlives> for LessorActor {
    type Result = ();

    fn handle(&mut self, msg: KeepAlives, _: &mut Context<Self>) {
        let _timer = self.probe.handling("KeepAlives");
        let now = self.now();
        for keep_alive in msg.0 {
            self.core.keep_alive(keep_alive.id, now, keep_alive.reply);
        }
    }
}

impl Handler<IsPrimary> for LessorActor {
    type Result = bool;

    fn handle(&mut self, _: IsPrimary, _: &mut Context<Self>) -> bool {
        let _timer = self.probe.handling("IsPrimary");
        self.core.is_primary()
    }
}

impl Handler<TimeToLive> for LessorActor {
    type Result = Option<(i64, i64)>;

    fn handle(&mut self, msg: TimeToLive, _: &mut Context<Self>) -> Self::Result {
        let _timer = self.probe.handling("TimeToLive");
        self.core.time_to_live(msg.id, self.now())
    }
}

impl Handler<LeasesChanged> for LessorActor {
    type Result = ();

    fn handle(&mut self, msg: LeasesChanged, _: &mut Context<Self>) {
        let _timer = self.probe.handling("LeasesChanged");
        let now = self.now();
        for change in msg.changes {
            match change {
                LeaseChange::Granted { id, ttl } => self.core.granted(id, ttl, now),
                LeaseChange::Revoked { id } => self.core.revoked(id),
                LeaseChange::Checkpointed { id, remaining_ttl } => {
                    self.core.checkpointed(id, remaining_ttl)
                }
            }
        }
    }
}

impl Handler<LeasesReplaced> for LessorActor {
    type Result = ();

    fn handle(&mut self, msg: LeasesReplaced, _: &mut Context<Self>) {
        let _timer = self.probe.handling("LeasesReplaced");
        let now = self.now();
        self.core.replace(msg.leases, now);
    }
}

/// The lessor side of the apply actor's feed. Lease changes must not be
/// lost (a lost grant would never expire), so they are delivered, not
/// refused: their number is bounded by the entries raft commits.
impl StoreFeed for Mailbox<LessorActor> {
    fn leases(&mut self, changes: &[LeaseChange]) {
        // Posted: the apply actor never waits on the lessor.
        self.post(LeasesChanged {
            changes: changes.to_vec(),
        });
    }

    fn replaced(&mut self, _revision: i64, leases: &[(i64, Lease)]) {
        self.post(LeasesReplaced {
            leases: leases.to_vec(),
        });
    }
}
