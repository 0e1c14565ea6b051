//! Supervision: every actor runs under a supervisor that restarts it.
//!
//! 1. [`crate::mailbox::start_actor`] runs the actor's context future inside
//!    a [`Supervisor`] future on the actor's thread. The mailbox (and so
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

/// The restarts within the last window.
#[derive(Debug, Default)]
struct RestartWindow {
    restarts: VecDeque<Instant>,
}

impl RestartWindow {
    /// Whether one more restart at `now` stays within `limit` (and if so,
    /// counts it).
    fn admit(&mut self, now: Instant, limit: RestartLimit) -> bool {
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

/// The actor's context future, restarted when it ends or panics.
pub struct Supervisor<A>
where
    A: ActixSupervised + Actor<Context = Context<A>>,
{
    fut: ContextFut<A, Context<A>>,
    supervision: Supervision,
    window: RestartWindow,
}

impl<A> Supervisor<A>
where
    A: ActixSupervised + Actor<Context = Context<A>>,
{
    pub fn new(fut: ContextFut<A, Context<A>>, supervision: Supervision) -> Self {
        Self {
            fut,
            supervision,
            window: RestartWindow::default(),
        }
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

impl<A> Future for Supervisor<A>
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
            if !this.window.admit(Instant::now(), this.supervision.limit) {
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

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use actix::prelude::*;

    use super::{Duration, Instant, OnPanic, RestartLimit, RestartWindow, Supervision};
    use crate::mailbox::start_on;
    use crate::messages::Kill;
    use crate::metrics::ActorMetrics;

    #[test]
    fn the_window_admits_max_restarts_then_refuses_until_they_age_out() {
        let limit = RestartLimit {
            max: 3,
            window: Duration::from_secs(60),
        };
        let mut window = RestartWindow::default();
        let t0 = Instant::now();
        assert!(window.admit(t0, limit));
        assert!(window.admit(t0 + Duration::from_secs(1), limit));
        assert!(window.admit(t0 + Duration::from_secs(2), limit));
        assert!(!window.admit(t0 + Duration::from_secs(3), limit));
        // The first restart is older than the window at 61 s.
        assert!(window.admit(t0 + Duration::from_secs(61), limit));
        assert!(!window.admit(t0 + Duration::from_secs(61), limit));
    }

    /// Counts what it handled; `Boom` panics; restarts are reported.
    struct Counter {
        handled: u32,
        restarted: mpsc::Sender<u32>,
    }

    impl Actor for Counter {
        type Context = Context<Self>;
    }

    impl Supervised for Counter {
        fn restarting(&mut self, _: &mut Context<Self>) {
            let _ = self.restarted.send(self.handled);
        }
    }

    #[derive(Message)]
    #[rtype(result = "u32")]
    struct Count;

    #[derive(Message)]
    #[rtype(result = "()")]
    struct Boom;

    impl Handler<Count> for Counter {
        type Result = u32;

        fn handle(&mut self, _: Count, _: &mut Context<Self>) -> u32 {
            self.handled += 1;
            self.handled
        }
    }

    impl Handler<Boom> for Counter {
        type Result = ();

        fn handle(&mut self, _: Boom, _: &mut Context<Self>) {
            panic!("boom (a panic planted by the test)");
        }
    }

    impl Handler<Kill> for Counter {
        type Result = ();

        fn handle(&mut self, _: Kill, ctx: &mut Context<Self>) {
            ctx.stop();
        }
    }

    #[actix_rt::test]
    async fn a_killed_or_panicking_actor_is_restarted_with_its_mailbox_and_counted() {
        let registry = prometheus::Registry::new();
        let probe = ActorMetrics::new(&registry).unwrap().for_actor("counter");
        let (restarted_tx, restarted) = mpsc::channel();
        let addr = start_on(
            &Arbiter::new().handle(),
            Supervision::new(probe, OnPanic::Restart),
            move |_| Counter {
                handled: 0,
                restarted: restarted_tx,
            },
        );
        assert_eq!(addr.send(Count).await.unwrap(), 1);
        // A kill, then a request queued behind it: answered by the
        // restarted actor, through the same address.
        addr.do_send(Kill);
        assert_eq!(addr.send(Count).await.unwrap(), 2);
        assert_eq!(restarted.recv_timeout(Duration::from_secs(10)), Ok(1));
        // A panic: the message's answer is lost, the actor comes back.
        assert!(addr.send(Boom).await.is_err());
        assert_eq!(addr.send(Count).await.unwrap(), 3);
        assert_eq!(restarted.recv_timeout(Duration::from_secs(10)), Ok(2));
        let restarts = registry
            .gather()
            .into_iter()
            .find(|f| f.name() == "oxcd_actor_restarts_total")
            .map(|f| f.get_metric()[0].get_counter().get_value());
        assert_eq!(restarts, Some(2.0));
    }
}
