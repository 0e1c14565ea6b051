//! Test harness that runs real server processes: oxcd (the implementation
//! under test) and etcd 3.4 (the reference), side by side.
//!
//! 1. [`Kind`] picks the binary ([`binaries`]): oxcd from `OXCD_BIN` (as
//!    is) or the workspace's `target/debug/oxcd`, rebuilt first with
//!    `cargo build -p node --bins` if it is older than its sources; etcd
//!    from `ETCD_BIN` or `/usr/bin/etcd`. oxcd takes etcd's flags, so
//!    `OXCD_BIN=/usr/bin/etcd` runs every test with etcd on both sides,
//!    which is how the tests themselves are validated.
//! 2. [`Server::start`] launches one single-member server on loopback ports
//!    with a temp data dir and a captured log, and waits (bounded, by polling
//!    the server) until it serves reads and writes ([`server`]);
//!    [`cluster::Cluster::start`] does the same for several members.
//! 3. Tests talk to it with the generated etcd clients ([`Server::kv`],
//!    [`Server::maintenance`]), with raw bytes ([`raw`]), or through etcdctl
//!    ([`etcdctl`]); [`kv_ops`] draws seeded random KV operations for the
//!    differential test, and [`lin`] checks recorded histories for
//!    linearizability.
//! 4. [`Server::kill9`] and [`Server::restart`] drive crash tests; dropping a
//!    [`Server`] kills its own child process and nothing else.
//!    [`power_loss`] turns a kill into a simulated power cut: the server runs
//!    under an `LD_PRELOAD` shim (`integration/powerloss`) that journals what
//!    each write replaces, and after the kill everything written since each
//!    file's last fsync is undone.
//!
//! The tests in `tests/`:
//! - `differential`: oxcd vs etcd on the same seeded random KV operations;
//! - `etcdctl`: etcdctl's output against both (KV commands, `watch` in
//!   its forms, `check datascale`);
//! - `bad_input`: oversized, malformed and unknown requests answered as etcd
//!   does;
//! - `http`: `/health`, `/version` and `/metrics` against etcd's;
//! - `gateway`: the JSON gateway (`/v3/*`) against etcd's: seeded random
//!   requests, valid and broken ([`json_gateway`]), a watch over HTTP, bad
//!   input, and OpenStack's etcd3gw client run against both;
//! - `maintenance`: snapshot save, defrag, move-leader (one member and
//!   three), `oxcdctl snapshot restore`;
//! - `quota`: `--quota-backend-bytes`, the NOSPACE alarm and disarming;
//! - `crash`: kill -9 under write load, nothing acknowledged lost;
//! - `power_loss`: power cuts (kill -9, then every unsynced write undone)
//!   under write load, one member and three, nothing acknowledged lost;
//! - `cluster`: three members: election, linearizable reads everywhere,
//!   leader failover under load, catch-up by snapshot, an isolated member,
//!   a linearizability check of a history across a leader kill;
//! - `hostile_peer`: forged and broken peer messages against a follower;
//! - `overload`: a flood of maintenance requests while writes go on;
//! - `lock_election`: the Lock and Election services on three members;
//! - `watch`: the Watch API: a seeded property test on three members
//!   (random writes, compactions and watchers, each stream checked against
//!   the history), a stalled consumer, resumption across kills and
//!   restarts, and protocol details against etcd 3.4;
//! - `lease`: etcdctl's lease commands against both, expiry with its delete
//!   events, countdowns across leader kills and moves, a thousand leases kept
//!   alive through a leader kill, keep-alive and time-to-live through a
//!   follower;
//! - `membership`: growing, shrinking and repairing an oxcd cluster with
//!   etcdctl, every refusal with etcd's code and text;
//! - `membership_etcdctl`: etcdctl's membership and `--cluster` endpoint
//!   commands against an etcd cluster and an oxcd cluster grown the same way
//!   ([`cluster_ctl`] normalises their output);
//! - `auth_etcdctl`: etcdctl's user, role and auth commands, and every
//!   command as root, as permitted and refused users and without a user,
//!   against both;
//! - `auth_perm`: seeded random users, roles, permission ranges and
//!   requests (KV, Txn, Watch, Lease, Maintenance, admin) made with tokens
//!   from Authenticate, allowed and refused alike on both;
//! - `auth_token`: simple-token expiry after `--auth-token-ttl`, JWT tokens
//!   (signed, tampered, stale), a flood of failed Authenticate calls;
//! - `supervision`: every actor kind killed through the chaos API on the
//!   leader and on a follower: restarts in `/metrics`, nothing acknowledged
//!   lost, watch streams complete, leases kept, and the same kills under
//!   the chaos runner's checkers;
//! - `chaos_api`: `oxcdctl chaos` against members with and without
//!   `--enable-chaos` (and with TLS client auth): partitions, delays,
//!   drops, fail-fsync, pause-apply, crash, the planted bug;
//! - `chaos_run`: `make chaos` in short (the seeded runner of [`chaos`]),
//!   and the planted bug it must catch.
//!
//! Shared checks: [`auth`] carries tokens and enables auth; [`acks`] keeps
//! the acknowledged writes of the crash and failover tests; [`lin`] records concurrent histories, which
//! [`lin_verdict`] judges with the witness checker of [`lin_check`] and
//! porcupine-rs; [`watch_check`] derives the events each watcher is due from
//! the acknowledged writes and checks what it received; [`lease_check`]
//! normalises etcdctl's lease output and judges expiry times and keep-alive
//! streams; [`certs`] makes the TLS tests' certificates; [`chaos`] is the
//! seeded chaos runner behind `make chaos`.

pub mod acks;
pub mod auth;
pub mod binaries;
pub mod certs;
pub mod chaos;
pub mod cluster;
pub mod cluster_ctl;
pub mod error;
pub mod etcdctl;
pub mod json_gateway;
pub mod kv_ops;
pub mod lease_check;
pub mod lin;
pub mod lin_check;
mod lin_fill;
#[cfg(test)]
mod lin_sim;
pub mod lin_verdict;
pub mod power_loss;
pub mod raw;
pub mod server;
pub mod show;
pub mod watch_check;

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
