//! `oxcdctl`: the command-line client of oxcd (and of any etcd v3 server).
//!
//! 1. `src/bin/oxcdctl.rs` parses the command line into [`Cli`] and starts a
//!    multi-thread tokio runtime.
//! 2. [`run`] dispatches the subcommand: `bench` (see [`bench`]), the etcd
//!    `tools/benchmark` work-alike, `snapshot restore` (see [`snapshot`]),
//!    `top` (see [`top`]) and `chaos` (see [`chaos`]), faults injected
//!    through the members' chaos API.
//! 3. Every failure comes back as a [`CtlError`]; the binary prints it to
//!    stderr and exits with status 1. Nothing in here panics on bad input or
//!    an unreachable server.

pub mod bench;
pub mod bench_args;
pub mod chaos;
pub mod client;
pub mod driver;
pub mod lease_bench;
pub mod list_bench;
pub mod report;
pub mod snapshot;
pub mod top;
pub mod watch_bench;
pub mod workload;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Command line of `oxcdctl`.
#[derive(Debug, Parser)]
#[command(
    name = "oxcdctl",
    version,
    about = "Command-line client for oxcd and etcd v3 servers"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// `oxcdctl` subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Low-level benchmark over etcd's v3 gRPC API (like etcd's tools/benchmark).
    Bench(bench_args::BenchArgs),
    /// Snapshot files written by `etcdctl snapshot save` against oxcd.
    #[command(subcommand)]
    Snapshot(snapshot::SnapshotCommand),
    /// A live view of a cluster: members, and each member's actors.
    Top(top::TopArgs),
    /// Faults injected into members started with --enable-chaos.
    Chaos(chaos::ChaosArgs),
}

/// Errors of `oxcdctl` commands.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    /// A flag or argument is out of range.
    #[error("{0}")]
    InvalidArgument(String),
    /// A gRPC connection could not be opened.
    #[error("failed to connect to {endpoint}: {reason}")]
    Connect { endpoint: String, reason: String },
    /// An output file could not be written.
    #[error("failed to write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The JSON summary could not be encoded.
    #[error("failed to encode JSON summary: {0}")]
    Json(#[from] serde_json::Error),
    /// A chaos action failed (see [`chaos::ChaosError`]).
    #[error(transparent)]
    Chaos(#[from] chaos::ChaosError),
}

/// Runs the parsed command.
pub async fn run(cli: Cli) -> Result<(), CtlError> {
    match cli.command {
        Command::Bench(args) => bench::run(args).await,
        Command::Snapshot(snapshot::SnapshotCommand::Restore(args)) => snapshot::restore(args),
        Command::Snapshot(snapshot::SnapshotCommand::Status(args)) => snapshot::status(args),
        Command::Top(args) => top::run(args).await,
        Command::Chaos(args) => chaos::run(args).await,
    }
}
