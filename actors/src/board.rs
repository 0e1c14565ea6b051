//! The notice board: values actors publish for the gRPC facade to read
//! without a round trip through a mailbox.
//!
//! 1. The raft actor posts the term and the leader after every Ready it
//!    runs ([`Board::post_raft`]).
//! 2. The apply actor's feed posts the store revision after every applied
//!    batch, before the batch's clients are answered, and after a snapshot
//!    install ([`Board`] is a [`StoreFeed`]).
//! 3. The facade reads them for response headers ([`Board::term`],
//!    [`Board::revision`]); etcd fills its headers from the same live
//!    values (`s.Term()`, `kv.Rev()`), not from a consistent snapshot.
//!
//! Only the owning actor writes a value; a read sees the newest post or a
//! slightly older one, never a torn value.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use storage::mvcc::Lease;

use crate::apply::core::StoreFeed;
use crate::messages::StoreEvents;

/// Values posted by the raft and apply actors (see the module doc).
#[derive(Debug, Default)]
pub struct Board {
    term: AtomicU64,
    leader: AtomicU64,
    revision: AtomicI64,
}

impl Board {
    /// A board holding the values a member starts with.
    pub fn new(term: u64, revision: i64) -> Arc<Self> {
        Arc::new(Self {
            term: AtomicU64::new(term),
            leader: AtomicU64::new(0),
            revision: AtomicI64::new(revision),
        })
    }

    /// The raft actor's post: current term and leader (0: none known).
    pub fn post_raft(&self, term: u64, leader: u64) {
        self.term.store(term, Ordering::Release);
        self.leader.store(leader, Ordering::Release);
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
        self.revision.load(Ordering::Acquire)
    }
}

/// The apply actor tells the board where the store stands.
#[derive(Debug, Clone)]
pub struct BoardFeed(pub Arc<Board>);

impl StoreFeed for BoardFeed {
    fn events(&mut self, update: &mut StoreEvents) {
        self.0.revision.store(update.to, Ordering::Release);
    }

    fn replaced(&mut self, revision: i64, _leases: &[(i64, Lease)]) {
        self.0.revision.store(revision, Ordering::Release);
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
