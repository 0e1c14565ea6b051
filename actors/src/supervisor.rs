//! Supervision: every actor runs under a supervisor that restarts it.
//!
//! 1. [`crate::mailbox::start_actor`] runs the actor's context future inside
//!    a [`Supervised`] future on the actor's thread. The mailbox (and so
//!    every address other actors and the facade hold) outlives restarts:
//!    messages sent meanwhile wait in it.
//! 2. The actor stops (a [`Kill`](crate::messages::Kill) from the chaos API,
//!    or `ctx.stop()` on a failure it can recover from) or panics.
//! 3. A panic in an actor that owns durable state whose in-memory half may
//!    now be wrong (raft, log writer, apply: [`OnPanic::StopMember`]) stops
//!    the member: it restarts from its durable log, as after kill -9. Other
//!    actors ([`OnPanic::Restart`]) are restarted.
//! 4. Before restarting, the supervisor checks the rate: more than
//!    [`RestartLimit::max`] restarts within [`RestartLimit::window`] stops
//!    the member with a message naming the actor, rather than looping.
//! 5. actix's restart drops the futures the old incarnation had spawned
//!    (their answers are lost: each actor's `restarting` accounts for
//!    that), calls the actor's `Supervised::restarting`, which rebuilds its
//!    state from storage, then `started` again (timers come back).
//!    `oxcd_actor_restarts_total{actor}` counts it and one line is logged.
//!
//! What each actor keeps and rebuilds is written in its `restarting`, and
//! summed up in docs/DESIGN.md ("Supervision").

use std::collections::VecDeque;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use actix::dev::ContextFut;
use actix::{Actor, Context, Supervised as ActixSupervised};

use crate::metrics::ActorProbe;

/// What a panic in the actor means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnPanic {
    /// Restart it like a stopped actor.
    Restart,
    /// Stop the member (its in-memory state may no longer match storage).
    StopMember,
}

/// At most `max` restarts within `window`.
#[derive(Clone, Copy, Debug)]
pub struct RestartLimit {
    pub max: usize,
    pub window: Duration,
}

impl Default for RestartLimit {
    fn default() -> Self {
        Self {
            max: 10,
            window: Duration::from_secs(60),
        }
    }
}

/// How one actor is supervised.
#[derive(Clone)]
pub struct Supervision {
    probe: ActorProbe,
    on_panic: OnPanic,
    limit: RestartLimit,
}

impl Supervision {
    pub fn new(probe: ActorProbe, on_panic: OnPanic) -> Self {
        Self {
            probe,
            on_panic,
            limit: RestartLimit::default(),
        }
    }

    pub fn with_limit(mut self, limit: RestartLimit) -> Self {
        self.limit = limit;
        self
    }
}

/// The actor's context future, restarted when it ends or panics.
pub struct Supervised<A>
where
    A: ActixSupervised + Actor<Context = Context<A>>,
{
    fut: ContextFut<A, Context<A>>,
    supervision: Supervision,
    restarts: VecDeque<Instant>,
}

impl<A> Supervised<A>
where
    A: ActixSupervised + Actor<Context = Context<A>>,
{
    pub fn new(fut: ContextFut<A, Context<A>>, supervision: Supervision) -> Self {
        Self {
            fut,
            supervision,
            restarts: VecDeque::new(),
        }
    }

    /// Whether one more restart now stays within the limit.
    fn within_limit(&mut self, now: Instant) -> bool {
        let limit = self.supervision.limit;
        while self
            .restarts
            .front()
            .is_some_and(|t| now.duration_since(*t) > limit.window)
        {
            self.restarts.pop_front();
        }
        if self.restarts.len() >= limit.max {
            return false;
        }
        self.restarts.push_back(now);
        true
    }
}

/// The text of a panic payload.
fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_string()
    }
}

impl<A> Future for Supervised<A>
where
    A: ActixSupervised + Actor<Context = Context<A>>,
{
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<()> {
        // `ContextFut` is `Unpin`; so is this.
        let this = self.get_mut();
        loop {
            let polled = catch_unwind(AssertUnwindSafe(|| Pin::new(&mut this.fut).poll(cx)));
            let actor = this.supervision.probe.actor();
            let cause = match polled {
                Ok(Poll::Pending) => return Poll::Pending,
                Ok(Poll::Ready(())) => "stopped".to_string(),
                Err(payload) => {
                    let text = panic_text(payload.as_ref());
                    if this.supervision.on_panic == OnPanic::StopMember {
                        crate::fatal(&format!(
                            "the {actor} actor panicked ({text}); its state may no longer match storage"
                        ));
                    }
                    format!("panicked: {text}")
                }
            };
            if !this.within_limit(Instant::now()) {
                let limit = this.supervision.limit;
                crate::fatal(&format!(
                    "the {actor} actor keeps failing ({} restarts within {} s, last: {cause})",
                    limit.max,
                    limit.window.as_secs()
                ));
            }
            let restarted = catch_unwind(AssertUnwindSafe(|| this.fut.restart()));
            match restarted {
                Ok(true) => {
                    this.supervision.probe.restarted();
                    tracing::warn!(actor, %cause, "actor restarted by its supervisor");
                }
                // No address is left: nobody can send to it any more (the
                // member is going away).
                Ok(false) => return Poll::Ready(()),
                Err(payload) => crate::fatal(&format!(
                    "the {actor} actor failed while restarting ({})",
                    panic_text(payload.as_ref())
                )),
            }
        }
    }
}
