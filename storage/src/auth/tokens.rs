//! etcd's simple tokens (`auth/simple_token.go`): `<16 random letters>.<raft
//! index>`, assigned to a user on every member when the Authenticate entry
//! at that index is applied, kept in memory only.
//!
//! 1. [`SimpleTokens::assign`] records a token with a deadline `ttl` ahead.
//! 2. [`SimpleTokens::lookup`] answers the token's user and pushes its
//!    deadline `ttl` ahead again: a token expires only after `ttl` unused.
//!    An expired token is gone (etcd sweeps once a second; here a lookup
//!    past the deadline and every assignment sweep).
//! 3. Deleting a user or changing its password forgets its tokens; turning
//!    auth off forgets all.
//!
//! Plain data with the clock passed in, so it is testable without waiting.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The letters of a token's random part (etcd's).
const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

/// The length of a token's random part.
pub const PREFIX_LEN: usize = 16;

/// What an applied batch does to the simple tokens of every member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenChange {
    /// Authenticate applied: the token now names the user.
    Assign { token: String, user: String },
    /// The user was deleted or its password changed.
    InvalidateUser(String),
    /// Auth was turned off.
    Clear,
}

/// Live simple tokens and their deadlines.
#[derive(Debug)]
pub struct SimpleTokens {
    ttl: Duration,
    tokens: HashMap<String, (String, Instant)>,
}

impl Default for SimpleTokens {
    /// etcd's default TTL, 300 s.
    fn default() -> SimpleTokens {
        SimpleTokens::new(Duration::from_secs(300))
    }
}

impl SimpleTokens {
    /// An empty registry whose tokens live `ttl` after their last use.
    pub fn new(ttl: Duration) -> SimpleTokens {
        SimpleTokens {
            ttl,
            tokens: HashMap::new(),
        }
    }

    /// A token's random part from 16 random bytes (etcd draws each letter
    /// uniformly; the modulo bias of 256 % 52 is irrelevant for a token that
    /// also carries the raft index).
    pub fn prefix_from(random: [u8; PREFIX_LEN]) -> String {
        random
            .iter()
            .map(|b| LETTERS[*b as usize % LETTERS.len()] as char)
            .collect()
    }

    /// The full token for a prefix and the Authenticate entry's index.
    pub fn token(prefix: &str, index: u64) -> String {
        format!("{prefix}.{index}")
    }

    /// The raft index a well-formed token names (etcd refuses any other
    /// shape at once).
    pub fn index_of(token: &str) -> Option<u64> {
        let (prefix, index) = token.split_once('.')?;
        if prefix.contains('.') || index.contains('.') {
            return None;
        }
        index.parse().ok()
    }

    /// Assigns `token` to `user` at `now`.
    pub fn assign(&mut self, token: String, user: String, now: Instant) {
        self.tokens.retain(|_, (_, deadline)| *deadline >= now);
        self.tokens.insert(token, (user, now + self.ttl));
    }

    /// The token's user, renewing its deadline; `None` if unknown or
    /// expired.
    pub fn lookup(&mut self, token: &str, now: Instant) -> Option<String> {
        let ttl = self.ttl;
        match self.tokens.get_mut(token) {
            Some((user, deadline)) if *deadline >= now => {
                *deadline = now + ttl;
                Some(user.clone())
            }
            Some(_) => {
                self.tokens.remove(token);
                None
            }
            None => None,
        }
    }

    /// Applies one change at `now`.
    pub fn apply(&mut self, change: &TokenChange, now: Instant) {
        match change {
            TokenChange::Assign { token, user } => self.assign(token.clone(), user.clone(), now),
            TokenChange::InvalidateUser(user) => self.invalidate_user(user),
            TokenChange::Clear => self.clear(),
        }
    }

    /// Forgets every token of `user`.
    pub fn invalidate_user(&mut self, user: &str) {
        self.tokens.retain(|_, (u, _)| u != user);
    }

    /// Forgets every token.
    pub fn clear(&mut self) {
        self.tokens.clear();
    }

    /// How many tokens are held (expired ones may still count until the
    /// next assignment).
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_expire_after_ttl_unused_and_renew_on_use() {
        let t0 = Instant::now();
        let mut tokens = SimpleTokens::new(Duration::from_secs(2));
        tokens.assign("abc.5".into(), "alice".into(), t0);
        assert_eq!(
            tokens
                .lookup("abc.5", t0 + Duration::from_millis(1500))
                .as_deref(),
            Some("alice")
        );
        // Renewed at 1.5 s: alive at 3 s, gone at 3.6 s.
        assert!(
            tokens
                .lookup("abc.5", t0 + Duration::from_secs(3))
                .is_some()
        );
        assert!(
            tokens
                .lookup("abc.5", t0 + Duration::from_millis(5100))
                .is_none()
        );
        assert!(tokens.lookup("abc.5", t0).is_none());
    }

    #[test]
    fn invalidation_and_shapes() {
        let now = Instant::now();
        let mut tokens = SimpleTokens::new(Duration::from_secs(300));
        tokens.assign("a.1".into(), "alice".into(), now);
        tokens.assign("b.2".into(), "bob".into(), now);
        tokens.invalidate_user("alice");
        assert!(tokens.lookup("a.1", now).is_none());
        assert!(tokens.lookup("b.2", now).is_some());
        tokens.clear();
        assert!(tokens.is_empty());
        assert_eq!(SimpleTokens::index_of("abc.17"), Some(17));
        assert_eq!(SimpleTokens::index_of("abc"), None);
        assert_eq!(SimpleTokens::index_of("a.b.1"), None);
        assert_eq!(SimpleTokens::prefix_from([0; PREFIX_LEN]).len(), PREFIX_LEN);
    }
}
