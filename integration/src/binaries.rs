//! Where the server and CLI binaries live, and keeping the workspace's oxcd
//! fresh.
//!
//! 1. oxcd: env `OXCD_BIN` is used as is (only checked to exist). Without it,
//!    the workspace's own build: `$CARGO_TARGET_DIR/debug/oxcd`, else
//!    `<workspace>/target/debug/oxcd` (the workspace is the parent of this
//!    crate's manifest dir).
//! 2. That build must not be stale: a plain `cargo test` does not rebuild it.
//!    If `oxcd` or `oxcdctl` is missing, or older than the newest file it is
//!    built from ([`OXCD_SOURCES`]: the node, actors, storage and proto
//!    crates, the workspace's `Cargo.toml` and `Cargo.lock`), the harness runs
//!    `cargo build -p node --bins` into that target dir first. It does so at
//!    most once per test process (a `OnceLock`, so the tests of one binary
//!    wait for one build); concurrent test processes are serialised by
//!    cargo's own lock on the target dir. A failed build is an error that
//!    says to run `make test` or `cargo build -p node --bins`.
//! 3. oxcdctl: env `OXCDCTL_BIN` as is, else beside the workspace's oxcd,
//!    kept fresh by the same build.
//! 4. etcd: env `ETCD_BIN`, else `/usr/bin/etcd`.
//! 5. etcdctl: env `ETCDCTL_BIN`, else `/usr/bin/etcdctl`.
//!
//! oxcd takes etcd's flags, so `OXCD_BIN=/usr/bin/etcd` runs every test with
//! real etcd on both sides: that is how the tests are validated against the
//! reference implementation.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::SystemTime;

use crate::HarnessError;

/// What the oxcd binaries are built from, relative to the workspace root: a
/// file here newer than a binary makes it stale. Paths that do not exist are
/// skipped.
pub const OXCD_SOURCES: [&str; 15] = [
    "Cargo.toml",
    "Cargo.lock",
    "node/Cargo.toml",
    "node/build.rs",
    "node/src",
    "actors/Cargo.toml",
    "actors/build.rs",
    "actors/src",
    "storage/Cargo.toml",
    "storage/src",
    "proto/Cargo.toml",
    "proto/build.rs",
    "proto/src",
    "proto/etcd",
    "proto/internal",
];

const BUILD_HINT: &str = "run `make test` or `cargo build -p node --bins` (or set OXCD_BIN)";

/// Which server implementation a process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Real etcd (the reference).
    Etcd,
    /// oxcd, the implementation under test.
    Oxcd,
}

impl Kind {
    /// The binary for this kind, checked to exist; the workspace's oxcd is
    /// rebuilt first if stale (step 2 of the module doc).
    pub fn binary(self) -> Result<PathBuf, HarnessError> {
        locate(self, &env_path)
    }

    /// A short name for logs and messages.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Etcd => "etcd",
            Kind::Oxcd => "oxcd",
        }
    }
}

/// [`Kind::binary`] with the environment given as a lookup function.
fn locate(kind: Kind, env: &dyn Fn(&str) -> Option<PathBuf>) -> Result<PathBuf, HarnessError> {
    match kind {
        Kind::Etcd => existing(
            "etcd",
            env("ETCD_BIN").unwrap_or_else(|| PathBuf::from("/usr/bin/etcd")),
            "install etcd 3.4 (Debian package etcd-server) or set ETCD_BIN",
        ),
        Kind::Oxcd => match env("OXCD_BIN") {
            Some(path) => existing("oxcd", path, "OXCD_BIN names no file"),
            None => {
                let target = target_dir(env);
                ensure_fresh(&target)?;
                existing("oxcd", target.join("debug").join("oxcd"), BUILD_HINT)
            }
        },
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

/// The `oxcdctl` binary (`OXCDCTL_BIN` as is, else beside the workspace's
/// oxcd, rebuilt first if stale), checked to exist.
pub fn oxcdctl_binary() -> Result<PathBuf, HarnessError> {
    if let Some(path) = env_path("OXCDCTL_BIN") {
        return existing("oxcdctl", path, "OXCDCTL_BIN names no file");
    }
    let target = target_dir(&env_path);
    ensure_fresh(&target)?;
    existing("oxcdctl", target.join("debug").join("oxcdctl"), BUILD_HINT)
}

/// Cargo's target dir as this process sees it: `CARGO_TARGET_DIR` (relative
/// to the workspace) or `<workspace>/target`.
pub(crate) fn workspace_target_dir() -> PathBuf {
    target_dir(&env_path)
}

/// [`workspace_target_dir`] with the environment given as a lookup function.
fn target_dir(env: &dyn Fn(&str) -> Option<PathBuf>) -> PathBuf {
    match env("CARGO_TARGET_DIR") {
        Some(dir) if dir.is_relative() => workspace_root().join(dir),
        Some(dir) => dir,
        None => workspace_root().join("target"),
    }
}

/// Rebuilds the oxcd binaries under `target` if they are stale, once per
/// process; later calls return the first call's outcome.
fn ensure_fresh(target: &Path) -> Result<(), HarnessError> {
    static OUTCOME: OnceLock<Result<(), (String, String)>> = OnceLock::new();
    OUTCOME
        .get_or_init(|| {
            let root = workspace_root();
            let sources: Vec<PathBuf> = OXCD_SOURCES.iter().map(|p| root.join(p)).collect();
            let debug = target.join("debug");
            let stale = ["oxcd", "oxcdctl"]
                .iter()
                .find_map(|bin| stale_reason(&debug.join(bin), &sources));
            match stale {
                None => Ok(()),
                Some(reason) => {
                    cargo(target, &NODE_BUILD, &reason).map_err(|status| (reason, status))
                }
            }
        })
        .clone()
        .map_err(|(reason, status)| HarnessError::BuildFailed {
            command: NODE_BUILD.join(" "),
            reason,
            status,
        })
}

/// Why `binary` must be rebuilt: it is missing, or a file under `sources` is
/// newer. `None` when it is fresh.
fn stale_reason(binary: &Path, sources: &[PathBuf]) -> Option<String> {
    let built = match std::fs::metadata(binary).and_then(|m| m.modified()) {
        Ok(time) => time,
        Err(_) => return Some(format!("{} does not exist", binary.display())),
    };
    match newest_file(sources) {
        Some((time, path)) if time > built => Some(format!(
            "{} is older than {}",
            binary.display(),
            path.display()
        )),
        _ => None,
    }
}

/// The most recently modified file under `roots` (files or directories,
/// walked recursively; unreadable entries are skipped).
fn newest_file(roots: &[PathBuf]) -> Option<(SystemTime, PathBuf)> {
    let mut newest: Option<(SystemTime, PathBuf)> = None;
    let mut pending = roots.to_vec();
    while let Some(path) = pending.pop() {
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            if let Ok(entries) = std::fs::read_dir(&path) {
                pending.extend(entries.flatten().map(|e| e.path()));
            }
        } else if let Ok(time) = meta.modified()
            && newest.as_ref().is_none_or(|(t, _)| time > *t)
        {
            newest = Some((time, path));
        }
    }
    newest
}

/// What rebuilds the oxcd binaries.
const NODE_BUILD: [&str; 4] = ["build", "-p", "node", "--bins"];

/// Runs `cargo <args>` in the workspace with `target` as its target dir,
/// its progress on this process's stderr after a line giving `reason`;
/// `Err` carries the exit status.
pub(crate) fn cargo(target: &Path, args: &[&str], reason: &str) -> Result<(), String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    // Straight to stderr, not `eprintln!`: the test harness would capture
    // that and show it only on failure, leaving a silent pause.
    let _ = writeln!(
        std::io::stderr(),
        "harness: {reason}; running `cargo {}` into {}",
        args.join(" "),
        target.display()
    );
    let status = Command::new(&cargo)
        .args(args)
        .current_dir(workspace_root())
        .env("CARGO_TARGET_DIR", target)
        .stdin(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run {}: {e}", Path::new(&cargo).display()))?;
    if status.success() {
        Ok(())
    } else {
        Err(status.to_string())
    }
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
    use std::fs::File;
    use std::time::Duration;

    use super::*;

    fn touch(path: &Path, time: SystemTime) {
        File::create(path).unwrap().set_modified(time).unwrap();
    }

    #[test]
    fn workspace_root_holds_the_workspace_manifest() {
        let root = workspace_root();
        let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
        assert!(manifest.contains("[workspace]"), "{}", root.display());
    }

    #[test]
    fn every_crate_the_binary_is_built_from_is_watched() {
        let root = workspace_root();
        for path in [
            "node/src",
            "actors/src",
            "storage/src",
            "proto/src",
            "Cargo.lock",
        ] {
            assert!(
                root.join(path).exists(),
                "{path} moved: update OXCD_SOURCES"
            );
            assert!(OXCD_SOURCES.contains(&path), "{path} not in OXCD_SOURCES");
        }
    }

    #[test]
    fn a_missing_oxcd_bin_is_an_error_naming_that_path() {
        let env = |var: &str| (var == "OXCD_BIN").then(|| PathBuf::from("/nonexistent/oxcd"));
        match locate(Kind::Oxcd, &env) {
            Err(HarnessError::BinaryMissing { what, path, .. }) => {
                assert_eq!(what, "oxcd");
                assert_eq!(path, Path::new("/nonexistent/oxcd"));
            }
            other => panic!("expected BinaryMissing, got {other:?}"),
        }
    }

    #[test]
    fn an_existing_oxcd_bin_is_used_as_is_however_old() {
        let dir = tempfile::tempdir().unwrap();
        let binary = dir.path().join("my-oxcd");
        touch(&binary, SystemTime::UNIX_EPOCH + Duration::from_secs(1));
        let env = |var: &str| (var == "OXCD_BIN").then(|| binary.clone());
        assert_eq!(locate(Kind::Oxcd, &env).unwrap(), binary);
    }

    #[test]
    fn a_relative_target_dir_is_under_the_workspace() {
        let env = |var: &str| (var == "CARGO_TARGET_DIR").then(|| PathBuf::from("tgt"));
        assert_eq!(target_dir(&env), workspace_root().join("tgt"));
        let env = |var: &str| (var == "CARGO_TARGET_DIR").then(|| PathBuf::from("/abs/tgt"));
        assert_eq!(target_dir(&env), Path::new("/abs/tgt"));
        assert_eq!(target_dir(&|_: &str| None), workspace_root().join("target"));
    }

    #[test]
    fn a_binary_older_than_a_source_file_is_stale() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir_all(src.join("deep")).unwrap();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let second = Duration::from_secs(1);
        touch(&src.join("lib.rs"), t0);
        touch(&src.join("deep").join("mod.rs"), t0 + 10 * second);
        let sources = [src.clone(), dir.path().join("no-such-file")];
        let binary = dir.path().join("oxcd");

        let missing = stale_reason(&binary, &sources).expect("missing is stale");
        assert!(missing.contains("does not exist"), "{missing}");

        touch(&binary, t0 + 5 * second);
        let older = stale_reason(&binary, &sources).expect("older than deep/mod.rs");
        assert!(older.contains("mod.rs"), "{older}");

        touch(&binary, t0 + 20 * second);
        assert_eq!(stale_reason(&binary, &sources), None);
    }
}
