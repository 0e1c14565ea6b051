//! The notice board: values actors publish for the gRPC facade to read
//! without a round trip through a mailbox.
//!
//! 1. The raft actor posts the term and the leader after every Ready it
//!    runs ([`Board::post_raft`]).
//! 2. The apply actor's feed posts the store revision after every applied
//!    batch, before the batch's clients are answered, and after a snapshot
//!    install ([`Board`] is a [`StoreFeed`]).
//! 3. The apply actor's feed posts the auth store after every batch with
//!    auth requests, and applies what the batch did to the simple tokens,
//!    before the batch's clients are answered ([`Board::auth`],
//!    [`Board::token_user`]).
//! 4. The facade reads them for response headers ([`Board::term`],
//!    [`Board::revision`]); etcd fills its headers from the same live
//!    values (`s.Term()`, `kv.Rev()`), not from a consistent snapshot.
//! 5. The watch hub posts how many watch streams are open
//!    ([`Board::post_watch_streams`]); with none, the apply actor sends it
//!    no events, and a hub that opens its first stream takes up the store's
//!    revision from here instead. The revision and the stream count are
//!    written and read in sequentially consistent order: the apply actor
//!    posts the revision, then reads the count; the hub posts the count,
//!    then reads the revision. So either the apply actor sees the stream
//!    and sends the batch, or the hub sees the batch's revision (or both).
//!
//! Only the owning actor writes a value; a read sees the newest post or a
//! slightly older one, never a torn value.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};

use storage::auth::AuthStore;
use storage::auth::tokens::{SimpleTokens, TokenChange};
use storage::mvcc::Lease;

/// How long a simple token lives unused unless `--auth-token-ttl` says
/// otherwise (etcd's 300 s).
pub const DEFAULT_TOKEN_TTL: std::time::Duration = std::time::Duration::from_secs(300);

use crate::apply::core::StoreFeed;
use crate::messages::StoreEvents;

/// Values posted by the raft and apply actors (see the module doc).
#[derive(Debug, Default)]
pub struct Board {
    term: AtomicU64,
    leader: AtomicU64,
    learner: AtomicBool,
    revision: AtomicI64,
    /// Watch streams open on this member (posted by the watch hub).
    watch_streams: AtomicUsize,
    members: std::sync::RwLock<Vec<proto::etcdserverpb::Member>>,
    removed: std::sync::RwLock<Vec<u64>>,
    /// Peers with a connection up, and since when (posted by the transport).
    connected: std::sync::Mutex<std::collections::HashMap<u64, std::time::Instant>>,
    /// The auth store as of the last applied batch that changed it.
    auth: std::sync::RwLock<Arc<AuthStore>>,
    /// Live simple tokens (every member assigns them at apply).
    tokens: std::sync::Mutex<SimpleTokens>,
}

impl Board {
    /// A board holding the values a member starts with.
    pub fn new(term: u64, revision: i64) -> Arc<Self> {
        Arc::new(Self {
            term: AtomicU64::new(term),
            leader: AtomicU64::new(0),
            learner: AtomicBool::new(false),
            members: std::sync::RwLock::new(Vec::new()),
            removed: std::sync::RwLock::new(Vec::new()),
            connected: std::sync::Mutex::new(std::collections::HashMap::new()),
            revision: AtomicI64::new(revision),
            watch_streams: AtomicUsize::new(0),
            auth: std::sync::RwLock::new(Arc::new(AuthStore::new())),
            tokens: std::sync::Mutex::new(SimpleTokens::new(DEFAULT_TOKEN_TTL)),
        })
    }

    /// Sets how long a simple token lives unused (`--auth-token-ttl`);
    /// called once at start.
    pub fn set_token_ttl(&self, ttl: std::time::Duration) {
        *self
            .tokens
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = SimpleTokens::new(ttl);
    }

    /// Posts the auth store (at start and by the apply actor's feed).
    pub fn post_auth(&self, auth: AuthStore) {
        *self
            .auth
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(auth);
    }

    /// The auth store last posted.
    pub fn auth(&self) -> Arc<AuthStore> {
        self.auth
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The user a simple token names, renewing it; `None` if unknown or
    /// expired.
    pub fn token_user(&self, token: &str) -> Option<String> {
        self.tokens
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .lookup(token, std::time::Instant::now())
    }

    /// The raft actor's post: current term and leader (0: none known).
    pub fn post_raft(&self, term: u64, leader: u64) {
        self.term.store(term, Ordering::Release);
        self.leader.store(leader, Ordering::Release);
    }

    /// The raft actor's post: whether this member is a learner.
    pub fn post_learner(&self, learner: bool) {
        self.learner.store(learner, Ordering::Release);
    }

    /// True while this member is a learner (etcd then serves only
    /// serializable ranges and `Status`).
    pub fn is_learner(&self) -> bool {
        self.learner.load(Ordering::Acquire)
    }

    /// The member table, posted at start and by the raft actor after every
    /// change the apply actor reports.
    pub fn post_members(&self, members: Vec<proto::etcdserverpb::Member>, removed: Vec<u64>) {
        *self
            .members
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = members;
        *self
            .removed
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = removed;
    }

    /// The transport's post: `peer` connected at `since`, or (`None`) not
    /// connected.
    pub fn post_connectivity(&self, peer: u64, since: Option<std::time::Instant>) {
        let mut connected = self
            .connected
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match since {
            Some(at) => connected.insert(peer, at),
            None => connected.remove(&peer),
        };
    }

    /// Since when `peer` has had a connection up (etcd's `ActiveSince`);
    /// `None` while it has none.
    pub fn connected_since(&self, peer: u64) -> Option<std::time::Instant> {
        self.connected
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&peer)
            .copied()
    }

    /// True when member `id` was removed from the cluster.
    pub fn is_removed(&self, id: u64) -> bool {
        self.removed
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(&id)
    }

    /// The member table last posted.
    pub fn members(&self) -> Vec<proto::etcdserverpb::Member> {
        self.members
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The raft term last posted.
    pub fn term(&self) -> u64 {
        self.term.load(Ordering::Acquire)
    }

    /// The leader last posted (0: none known).
    pub fn leader(&self) -> u64 {
        self.leader.load(Ordering::Acquire)
    }

    /// The store revision last posted.
    pub fn revision(&self) -> i64 {
        self.revision.load(Ordering::SeqCst)
    }

    /// The watch hub has `count` streams open, or is about to (step 5).
    pub fn post_watch_streams(&self, count: usize) {
        self.watch_streams.store(count, Ordering::SeqCst);
    }

    /// Watch streams open on this member, as the hub last posted.
    pub fn watch_streams(&self) -> usize {
        self.watch_streams.load(Ordering::SeqCst)
    }
}

/// The apply actor tells the board where the store stands.
#[derive(Debug, Clone)]
pub struct BoardFeed(pub Arc<Board>);

impl StoreFeed for BoardFeed {
    fn events(&mut self, update: &mut StoreEvents) {
        self.0.revision.store(update.to, Ordering::SeqCst);
    }

    fn replaced(&mut self, revision: i64, _leases: &[(i64, Lease)]) {
        self.0.revision.store(revision, Ordering::SeqCst);
    }

    fn auth(&mut self, auth: &AuthStore, tokens: &[TokenChange]) {
        self.0.post_auth(auth.clone());
        if tokens.is_empty() {
            return;
        }
        let now = std::time::Instant::now();
        let mut live = self
            .0
            .tokens
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for change in tokens {
            live.apply(change, now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn posts_are_read_back() {
        let board = Board::new(3, 7);
        assert_eq!((board.term(), board.leader(), board.revision()), (3, 0, 7));
        board.post_raft(4, 2);
        let mut feed = BoardFeed(board.clone());
        feed.events(&mut StoreEvents {
            from: 7,
            to: 9,
            term: 4,
            events: Vec::new(),
        });
        assert_eq!((board.term(), board.leader(), board.revision()), (4, 2, 9));
        feed.replaced(20, &[]);
        assert_eq!(board.revision(), 20);
    }
}
