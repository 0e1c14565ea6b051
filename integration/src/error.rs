//! The harness's one error type.
//!
//! 1. Locating a binary fails with [`HarnessError::BinaryMissing`], whose text
//!    says how to build it, or with [`HarnessError::BuildFailed`] when a stale
//!    oxcd (or the power-loss shim) could not be built.
//! 2. Starting a process fails with [`HarnessError::Spawn`] (the OS refused)
//!    or [`HarnessError::NotReady`] / [`HarnessError::Exited`], both carrying
//!    the tail of the server's log so the cause is on screen.
//! 3. The power-loss rollback fails with [`HarnessError::Journal`] (an undo
//!    journal it cannot read or apply, or one the shim could not write) and
//!    reading a store's state with [`HarnessError::Storage`].
//! 4. Everything else is file-system or gRPC plumbing.

use std::path::PathBuf;

/// What can go wrong while starting, stopping or talking to a server process.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// The server or CLI binary is not where it was looked for.
    #[error("{what} binary not found at {path}: {hint}")]
    BinaryMissing {
        what: &'static str,
        path: PathBuf,
        hint: &'static str,
    },
    /// A binary the tests need was missing or older than its sources (oxcd)
    /// or is always brought up to date (the power-loss shim), and `cargo
    /// <command>` failed.
    #[error(
        "{reason}, and `cargo {command}` failed ({status}); \
         run `make test` or `cargo {command}` to see why"
    )]
    BuildFailed {
        command: String,
        reason: String,
        status: String,
    },
    /// The OS could not start the process.
    #[error("cannot spawn {path}: {source}")]
    Spawn {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The process exited before it became ready.
    #[error("{what} exited early ({status}); log tail:\n{log_tail}")]
    Exited {
        what: String,
        status: String,
        log_tail: String,
    },
    /// The process did not answer within the start timeout.
    #[error(
        "{what} not ready after {waited_ms} ms (last error: {last_error}); log tail:\n{log_tail}"
    )]
    NotReady {
        what: String,
        waited_ms: u128,
        last_error: String,
        log_tail: String,
    },
    /// An operation that needs a running process found none.
    #[error("{0} is not running")]
    NotRunning(String),
    /// A power-loss undo journal could not be read or applied, or the shim
    /// reported that it could not journal every write.
    #[error("power-loss journal {path}: {reason}")]
    Journal { path: PathBuf, reason: String },
    /// A store left on disk could not be opened or read.
    #[error("storage: {0}")]
    Storage(#[from] storage::StorageError),
    /// File-system error (temp dir, log file, port probing).
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// The endpoint URL was rejected or the connection failed.
    #[error("transport: {0}")]
    Transport(#[from] tonic::transport::Error),
}
