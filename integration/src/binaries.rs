//! Where the server and CLI binaries live.
//!
//! 1. oxcd: env `OXCD_BIN`, else `$CARGO_TARGET_DIR/debug/oxcd`, else
//!    `<workspace>/target/debug/oxcd` (the workspace is the parent of this
//!    crate's manifest dir). A missing binary is an error telling the reader to
//!    run `cargo build -p node --bins`.
//! 2. etcd: env `ETCD_BIN`, else `/usr/bin/etcd`.
//! 3. etcdctl: env `ETCDCTL_BIN`, else `/usr/bin/etcdctl`.
//!
//! oxcd takes etcd's flags, so `OXCD_BIN=/usr/bin/etcd` runs every test with
//! real etcd on both sides: that is how the tests are validated against the
//! reference implementation.

use std::path::{Path, PathBuf};

use crate::HarnessError;

/// Which server implementation a process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Real etcd (the reference).
    Etcd,
    /// oxcd, the implementation under test.
    Oxcd,
}

impl Kind {
    /// The binary for this kind, checked to exist.
    pub fn binary(self) -> Result<PathBuf, HarnessError> {
        match self {
            Kind::Etcd => existing(
                "etcd",
                env_path("ETCD_BIN").unwrap_or_else(|| PathBuf::from("/usr/bin/etcd")),
                "install etcd 3.4 (Debian package etcd-server) or set ETCD_BIN",
            ),
            Kind::Oxcd => existing(
                "oxcd",
                env_path("OXCD_BIN").unwrap_or_else(default_oxcd_path),
                "run `cargo build -p node --bins` first (or set OXCD_BIN)",
            ),
        }
    }

    /// A short name for logs and messages.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Etcd => "etcd",
            Kind::Oxcd => "oxcd",
        }
    }
}

/// The etcdctl binary, checked to exist.
pub fn etcdctl_binary() -> Result<PathBuf, HarnessError> {
    existing(
        "etcdctl",
        env_path("ETCDCTL_BIN").unwrap_or_else(|| PathBuf::from("/usr/bin/etcdctl")),
        "install etcdctl 3.4 (Debian package etcd-client) or set ETCDCTL_BIN",
    )
}

/// The workspace root: the parent of this crate's directory.
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| manifest.to_path_buf())
}

/// The `oxcdctl` binary next to `oxcd` (or `OXCDCTL_BIN`), checked to exist.
pub fn oxcdctl_binary() -> Result<PathBuf, HarnessError> {
    let default = default_oxcd_path().with_file_name("oxcdctl");
    existing(
        "oxcdctl",
        env_path("OXCDCTL_BIN").unwrap_or(default),
        "run `cargo build -p node --bins` first (or set OXCDCTL_BIN)",
    )
}

fn default_oxcd_path() -> PathBuf {
    let target = env_path("CARGO_TARGET_DIR").unwrap_or_else(|| workspace_root().join("target"));
    let target = if target.is_relative() {
        workspace_root().join(target)
    } else {
        target
    };
    target.join("debug").join("oxcd")
}

fn env_path(var: &str) -> Option<PathBuf> {
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

fn existing(
    what: &'static str,
    path: PathBuf,
    hint: &'static str,
) -> Result<PathBuf, HarnessError> {
    if path.is_file() {
        Ok(path)
    } else {
        Err(HarnessError::BinaryMissing { what, path, hint })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workspace_root_holds_the_workspace_manifest() {
        let root = workspace_root();
        let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
        assert!(manifest.contains("[workspace]"), "{}", root.display());
    }

    #[test]
    fn default_oxcd_path_is_under_target_debug() {
        let path = default_oxcd_path();
        assert!(path.ends_with("debug/oxcd"), "{}", path.display());
    }

    #[test]
    fn missing_binary_error_names_the_build_command() {
        let err = existing(
            "oxcd",
            PathBuf::from("/nonexistent/oxcd"),
            "run `cargo build -p node --bins` first (or set OXCD_BIN)",
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("/nonexistent/oxcd"), "{text}");
        assert!(text.contains("cargo build -p node --bins"), "{text}");
    }
}
