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
use crate::supervisor::Supervision;

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

    /// Sends a request within the mailbox bound and returns the future of
    /// its answer; fails at once, like [`Mailbox::try_send`], when the
    /// mailbox is full or the actor has stopped. For client requests that
    /// wait for an answer (status, maintenance).
    pub fn request<M>(&self, msg: M) -> Result<actix::dev::Request<A, M>, Full<M>>
    where
        M: Message + Send + 'static,
        M::Result: Send,
        A: Handler<M>,
        A::Context: actix::dev::ToEnvelope<A, M>,
    {
        if self.probe.depth() >= self.capacity as i64 || !self.addr.connected() {
            self.probe.rejected();
            return Err(Full(msg));
        }
        self.probe.enqueued();
        Ok(self.addr.send(msg))
    }

    /// Enqueues a message that must not be lost, now and in call order, and
    /// returns the future of its answer. Used only between actors, for
    /// messages whose number the sender bounds itself (one `Append` in
    /// flight; committed entries bounded by the apply-lag check). The
    /// returned future must be awaited or spawned: actix skips a message
    /// whose reply channel is gone (see [`Mailbox::post`]).
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
}

impl<A: Actor> Mailbox<A> {
    /// The actor's address for one message type, outside the mailbox bound
    /// (for control messages such as the chaos API's `Kill`).
    pub fn recipient<M>(&self) -> actix::Recipient<M>
    where
        M: Message + Send + 'static,
        M::Result: Send,
        A: Handler<M>,
        A::Context: actix::dev::ToEnvelope<A, M>,
    {
        self.addr.clone().recipient()
    }

    /// Enqueues a message that must not be lost and whose answer nobody
    /// waits for (the answer of [`Mailbox::deliver`] cannot be dropped:
    /// actix skips a message whose reply channel is closed). Between actors
    /// only, for messages bounded by the sender (one per applied batch).
    pub fn post<M>(&self, msg: M)
    where
        M: Message<Result = ()> + Send + 'static,
        A: Handler<M>,
        A::Context: actix::dev::ToEnvelope<A, M>,
    {
        self.probe.enqueued();
        self.addr.do_send(msg);
    }
}

/// Starts the actor built by `factory` on a thread of its own named
/// `oxcd-<name>` ([`actor_thread`], so `top -H`, `perf` and stack dumps tell the actors
/// apart; actix names every arbiter thread alike), under its supervisor.
pub fn start_actor<A, F>(name: &'static str, supervision: Supervision, factory: F) -> Addr<A>
where
    A: Supervised + Actor<Context = Context<A>>,
    F: FnOnce(&mut Context<A>) -> A + Send + 'static,
{
    start_on(&actor_thread(name), supervision, factory)
}

/// A new thread for actors, named `oxcd-<name>`; [`start_on`] starts them
/// there. Actors that share a thread hand messages to each other without
/// waking another thread (the log writer beside raft).
pub fn actor_thread(name: &'static str) -> ArbiterHandle {
    let arbiter = actix::Arbiter::new();
    let named = arbiter.spawn_fn(move || name_this_thread(name));
    if !named {
        crate::fatal("actor thread is gone before its actor started");
    }
    arbiter.handle()
}

/// Names the calling thread `oxcd-<name>` (Linux keeps 15 bytes).
#[allow(unsafe_code)]
fn name_this_thread(name: &str) {
    let Ok(name) = std::ffi::CString::new(format!("oxcd-{name}")) else {
        return;
    };
    // SAFETY: PR_SET_NAME reads a NUL-terminated string (the kernel copies
    // at most 16 bytes, truncating); `name` lives across the call. It only
    // renames the calling thread, and a failure changes nothing.
    unsafe {
        libc::prctl(libc::PR_SET_NAME, name.as_ptr() as libc::c_ulong, 0, 0, 0);
    }
}

/// Starts the actor built by `factory` on `arbiter`, with an actix channel
/// that never parks senders (see the module docs), under a supervisor
/// ([`crate::supervisor`]) that restarts it when it stops or fails.
pub fn start_on<A, F>(arbiter: &ArbiterHandle, supervision: Supervision, factory: F) -> Addr<A>
where
    A: Supervised + Actor<Context = Context<A>>,
    F: FnOnce(&mut Context<A>) -> A + Send + 'static,
{
    let (tx, rx) = channel::channel::<A>(0);
    let addr = Addr::new(tx);
    let started = arbiter.spawn_fn(move || {
        let mut ctx = Context::with_receiver(rx);
        let actor = factory(&mut ctx);
        actix_rt::spawn(crate::supervisor::Supervisor::new(
            ctx.into_future(actor),
            supervision,
        ));
    });
    if !started {
        crate::fatal("actor thread is gone before its actor started");
    }
    addr
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use super::*;
    use crate::metrics::ActorMetrics;
    use crate::supervisor::OnPanic;

    /// Answers each `Work` with its number; the first one waits for `release`.
    struct Worker {
        probe: ActorProbe,
        started: mpsc::Sender<()>,
        release: Option<mpsc::Receiver<()>>,
    }

    impl Actor for Worker {
        type Context = Context<Self>;
    }

    impl Supervised for Worker {}

    #[derive(Message)]
    #[rtype(result = "u32")]
    struct Work(u32);

    impl Handler<Work> for Worker {
        type Result = u32;

        fn handle(&mut self, msg: Work, _: &mut Context<Self>) -> u32 {
            let _timer = self.probe.handling("Work");
            let _ = self.started.send(());
            if let Some(release) = self.release.take() {
                let _ = release.recv_timeout(Duration::from_secs(30));
            }
            msg.0
        }
    }

    #[actix_rt::test]
    async fn requests_beyond_the_capacity_are_refused_and_the_rest_answered() {
        let probe = ActorMetrics::unregistered().for_actor("worker");
        let (started_tx, started) = mpsc::channel();
        let (release_tx, release) = mpsc::channel();
        let supervision = Supervision::new(probe.clone(), OnPanic::Restart);
        let addr = start_on(&Arbiter::new().handle(), supervision, {
            let probe = probe.clone();
            move |_| Worker {
                probe,
                started: started_tx,
                release: Some(release),
            }
        });
        let mailbox = Mailbox::new(addr, 2, probe);
        let first = mailbox.request(Work(1)).ok().expect("room for the first");
        started
            .recv_timeout(Duration::from_secs(30))
            .expect("the first request is being handled");
        let second = mailbox.request(Work(2)).ok().expect("room for the second");
        let third = mailbox.request(Work(3)).ok().expect("room for the third");
        let Err(Full(Work(4))) = mailbox.request(Work(4)) else {
            panic!("a fourth request fits in a mailbox of two");
        };
        release_tx.send(()).unwrap();
        assert_eq!(first.await.unwrap(), 1);
        assert_eq!(second.await.unwrap(), 2);
        assert_eq!(third.await.unwrap(), 3);
        let again = mailbox.request(Work(5)).ok().expect("room once drained");
        assert_eq!(again.await.unwrap(), 5);
    }
}
