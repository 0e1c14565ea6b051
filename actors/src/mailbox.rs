//! A bounded, measured address: every message to an actor goes through a
//! [`Mailbox`], which counts the depth and refuses sends beyond the actor's
//! capacity instead of letting memory grow. Callers turn a refusal into etcd's
//! `etcdserver: too many requests`.
//!
//! Actors are started with [`start_on`], whose actix channel never parks a
//! sender: the bound is the `Mailbox`'s, and every send is enqueued at once,
//! in call order. Order matters: committed batches must reach the apply
//! actor in log order (an actix channel that parks a sender re-sends the
//! held message later, after newer ones).

use actix::dev::channel;
use actix::prelude::*;
use actix_rt::ArbiterHandle;

use crate::metrics::ActorProbe;

/// A send was refused; the message comes back to the caller.
#[derive(Debug)]
pub struct Full<M>(pub M);

/// The address of an actor plus its mailbox bound and probe.
pub struct Mailbox<A: Actor> {
    addr: Addr<A>,
    capacity: usize,
    probe: ActorProbe,
}

impl<A: Actor> Clone for Mailbox<A> {
    fn clone(&self) -> Self {
        Self {
            addr: self.addr.clone(),
            capacity: self.capacity,
            probe: self.probe.clone(),
        }
    }
}

impl<A: Actor> Mailbox<A> {
    /// Wraps `addr`; `capacity` must match what the actor set on its context.
    pub fn new(addr: Addr<A>, capacity: usize, probe: ActorProbe) -> Self {
        Self {
            addr,
            capacity,
            probe,
        }
    }

    /// Sends without waiting. Fails when the mailbox holds `capacity`
    /// messages or the actor has stopped.
    pub fn try_send<M>(&self, msg: M) -> Result<(), Full<M>>
    where
        M: Message + Send + 'static,
        M::Result: Send,
        A: Handler<M>,
        A::Context: actix::dev::ToEnvelope<A, M>,
    {
        if self.probe.depth() >= self.capacity as i64 {
            self.probe.rejected();
            return Err(Full(msg));
        }
        match self.addr.try_send(msg) {
            Ok(()) => {
                self.probe.enqueued();
                Ok(())
            }
            Err(SendError::Full(m) | SendError::Closed(m)) => {
                self.probe.rejected();
                Err(Full(m))
            }
        }
    }

    /// Enqueues a message that must not be lost, now and in call order, and
    /// returns the future of its answer. Used only between actors, for
    /// messages whose number the sender bounds itself (one `Append` in
    /// flight; committed entries bounded by the apply-lag check).
    pub fn deliver<M>(&self, msg: M) -> actix::dev::Request<A, M>
    where
        M: Message + Send + 'static,
        M::Result: Send,
        A: Handler<M>,
        A::Context: actix::dev::ToEnvelope<A, M>,
    {
        self.probe.enqueued();
        self.addr.send(msg)
    }

    /// The underlying address (for `connected()` checks and tests).
    pub fn addr(&self) -> &Addr<A> {
        &self.addr
    }
}

/// Starts the actor built by `factory` on `arbiter`, with an actix channel
/// that never parks senders (see the module docs).
pub fn start_on<A, F>(arbiter: &ArbiterHandle, factory: F) -> Addr<A>
where
    A: Actor<Context = Context<A>>,
    F: FnOnce(&mut Context<A>) -> A + Send + 'static,
{
    let (tx, rx) = channel::channel::<A>(0);
    let addr = Addr::new(tx);
    let started = arbiter.spawn_fn(move || {
        let mut ctx = Context::with_receiver(rx);
        let actor = factory(&mut ctx);
        ctx.run(actor);
    });
    if !started {
        crate::fatal("actor thread is gone before its actor started");
    }
    addr
}
