//! A bounded, measured address: every message to an actor goes through a
//! [`Mailbox`], which counts the depth and refuses sends beyond the actor's
//! capacity instead of letting memory grow. Callers turn a refusal into etcd's
//! `etcdserver: too many requests`.

use actix::prelude::*;

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

    /// Sends a control message that must not be lost (e.g. `Persisted`): it
    /// waits for room instead of failing. Used only between actors, for
    /// messages whose count is bounded by the sender's own in-flight limit.
    pub async fn deliver<M>(&self, msg: M) -> Result<M::Result, MailboxError>
    where
        M: Message + Send + 'static,
        M::Result: Send,
        A: Handler<M>,
        A::Context: actix::dev::ToEnvelope<A, M>,
    {
        self.probe.enqueued();
        self.addr.send(msg).await
    }

    /// The underlying address (for `connected()` checks and tests).
    pub fn addr(&self) -> &Addr<A> {
        &self.addr
    }
}
