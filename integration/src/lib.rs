//! Test harness that runs real server processes: oxcd (the implementation
//! under test) and etcd 3.4 (the reference), side by side.
//!
//! 1. [`Kind`] picks the binary: oxcd from `OXCD_BIN` or
//!    `<workspace>/target/debug/oxcd`, etcd from `ETCD_BIN` or `/usr/bin/etcd`
//!    ([`binaries`]). oxcd takes etcd's flags, so `OXCD_BIN=/usr/bin/etcd`
//!    runs every test with etcd on both sides, which is how the tests
//!    themselves are validated.
//! 2. [`Server::start`] launches one single-member server on loopback ports
//!    with a temp data dir and a captured log, and waits (bounded, by polling
//!    the server) until it serves reads and writes ([`server`]).
//! 3. Tests talk to it with the generated etcd clients ([`Server::kv`],
//!    [`Server::maintenance`]), with raw bytes ([`raw`]), or through etcdctl
//!    ([`etcdctl`]); [`kv_ops`] draws seeded random KV operations for the
//!    differential test.
//! 4. [`Server::kill9`] and [`Server::restart`] drive crash tests; dropping a
//!    [`Server`] kills its own child process and nothing else.
//!
//! The tests in `tests/` are: `differential` (oxcd vs etcd on the same random
//! KV operations), `etcdctl` (etcdctl output against both), `crash` (kill -9
//! under write load, nothing acknowledged lost) and `bad_input` (oversized,
//! malformed and unknown requests answered as etcd does).
//!
//! Shared checks: [`acks`] keeps the acknowledged writes of the crash and
//! failover tests; [`lin`] records concurrent histories, which
//! [`lin_verdict`] judges with the witness checker of [`lin_check`] and
//! porcupine-rs.

pub mod acks;
pub mod binaries;
pub mod cluster;
pub mod error;
pub mod etcdctl;
pub mod kv_ops;
pub mod lin;
pub mod lin_check;
mod lin_fill;
#[cfg(test)]
mod lin_sim;
pub mod lin_verdict;
pub mod raw;
pub mod server;
pub mod show;

pub use binaries::{Kind, etcdctl_binary, oxcdctl_binary, workspace_root};
pub use error::HarnessError;
pub use server::{Server, ServerOpts};

/// The seed for a randomised test: `OXCD_SEED` if set, else a fresh random
/// one. The test prints it so a failure can be replayed.
pub fn seed_from_env() -> u64 {
    std::env::var("OXCD_SEED")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(rand::random)
}

/// A positive number from the environment variable `var`, else `default`.
pub fn env_usize(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(default)
}
