//! `oxcdctl snapshot restore` and `snapshot status`, as etcdctl's (same flags
//! and output), for etcd's snapshot files: from `etcdctl snapshot save`
//! against oxcd or real etcd, or a stopped etcd member's `member/snap/db`
//! (with `--skip-hash-check`). Files of oxcd's earlier LMDB image format are
//! restored too.
//!
//! Restore:
//! 1. Check the file: its last 32 bytes must be the SHA-256 of the rest
//!    (skipped with `--skip-hash-check`, as etcdctl's).
//! 2. Refuse an existing data dir; build the new one beside it
//!    (`<data-dir>.restoring`) and rename it into place only when complete,
//!    so a refused or failed restore leaves nothing half-written.
//! 3. Load the file into the member's MVCC store (etcd's buckets through
//!    `storage::etcd_snapshot::import`: every revision, the compaction point,
//!    the leases), then reset it to found a new cluster: applied index 0, the
//!    old members and alarms gone.
//! 4. Record the new member's and cluster's ids, derived from
//!    `--initial-cluster` and the token as the server (and etcdctl) derive
//!    them.
//!
//! Start `oxcd` on the data dir with the same cluster flags; every member of
//! the new cluster is restored from the same file with its own `--name`.
//!
//! Status: etcdctl's figures for a bbolt file: a CRC-32C over every bucket
//! name, key and value, the newest revision, the number of keys, the size.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use node::bootstrap::{kv_dir, load_or_create_identity, member_dir};
use node::membership::founding_identity;
use sha2::{Digest, Sha256};
use storage::mvcc::{LmdbBackend, LmdbOptions, MvccStore};

use super::CtlError;

/// `oxcdctl snapshot ...`
#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Restores a member's data dir from a snapshot file.
    Restore(RestoreArgs),
    /// Prints a snapshot file's hash, revision, key count and size.
    Status(StatusArgs),
}

/// etcdctl's `snapshot status` flags.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The snapshot file.
    pub file: PathBuf,
    /// Output format: simple, table or json.
    #[arg(short = 'w', long = "write-out", default_value = "simple")]
    pub write_out: String,
}

/// etcdctl's `snapshot restore` flags.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The file written by `etcdctl snapshot save`.
    pub file: PathBuf,
    /// Human-readable name for this member.
    #[arg(long, default_value = "default")]
    pub name: String,
    /// Path to the data directory (default: `<name>.oxcd`).
    #[arg(long = "data-dir")]
    pub data_dir: Option<PathBuf>,
    /// Initial cluster configuration for the restored cluster.
    #[arg(
        long = "initial-cluster",
        default_value = "default=http://localhost:2380"
    )]
    pub initial_cluster: String,
    /// Initial cluster token for the restored cluster.
    #[arg(long = "initial-cluster-token", default_value = "etcd-cluster")]
    pub initial_cluster_token: String,
    /// This member's peer URLs (must match its `--initial-cluster` entry).
    #[arg(
        long = "initial-advertise-peer-urls",
        default_value = "http://localhost:2380",
        value_delimiter = ','
    )]
    pub initial_advertise_peer_urls: Vec<String>,
    /// Ignore the snapshot's integrity hash.
    #[arg(
        long = "skip-hash-check",
        default_value_t = false,
        num_args = 0..=1,
        default_missing_value = "true",
        require_equals = true,
        action = clap::ArgAction::Set
    )]
    pub skip_hash_check: bool,
}

/// LMDB map size used to open the restored image (address space only).
const MAP_BYTES: usize = 8 << 30;

fn invalid(msg: impl Into<String>) -> CtlError {
    CtlError::InvalidArgument(msg.into())
}

/// Splits `bytes` into the image and checks its trailing SHA-256.
pub fn verified_image(bytes: &[u8], skip_hash_check: bool) -> Result<&[u8], CtlError> {
    let has_hash = bytes.len() % 512 == 32;
    if !has_hash {
        if skip_hash_check {
            return Ok(bytes);
        }
        return Err(invalid("snapshot missing hash but --skip-hash-check=false"));
    }
    let (image, trailer) = bytes.split_at(bytes.len() - 32);
    if !skip_hash_check {
        let sum = Sha256::digest(image);
        if sum.as_slice() != trailer {
            return Err(invalid(format!(
                "expected sha256 {:?}, got {:?}",
                trailer,
                sum.as_slice()
            )));
        }
    }
    Ok(image)
}

/// True for a bbolt file: its first page's meta magic (etcd's format).
fn is_bbolt(bytes: &[u8]) -> bool {
    bytes.get(16..20) == Some(&0xED0C_DAEDu32.to_le_bytes()[..])
}

/// Runs `snapshot restore`.
pub fn restore(args: RestoreArgs) -> Result<(), CtlError> {
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{}.oxcd", args.name)));
    if data_dir.exists() {
        return Err(invalid(format!(
            "data-dir {:?} exists",
            data_dir.display().to_string()
        )));
    }
    let (identity, members) = founding_identity(
        &args.initial_cluster,
        &args.initial_cluster_token,
        &args.name,
    )
    .map_err(invalid)?;
    let me = members
        .iter()
        .find(|m| m.id == identity.member_id)
        .expect("founding_identity names a listed member");
    let mut mine = args.initial_advertise_peer_urls.clone();
    mine.sort();
    let mut listed = me.peer_urls.clone();
    listed.sort();
    if mine != listed {
        return Err(invalid(format!(
            "--initial-cluster has {}={} but missing from --initial-advertise-peer-urls={}",
            args.name,
            listed.join(","),
            mine.join(",")
        )));
    }
    let bytes =
        std::fs::read(&args.file).map_err(|e| invalid(format!("{}: {e}", args.file.display())))?;
    let image = verified_image(&bytes, args.skip_hash_check)?;

    let mut staging = data_dir.clone().into_os_string();
    staging.push(".restoring");
    let staging = PathBuf::from(staging);
    if staging.exists() {
        std::fs::remove_dir_all(&staging)
            .map_err(|e| invalid(format!("{}: {e}", staging.display())))?;
    }
    let built = build_member(&staging, image, identity);
    if let Err(e) = built {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(e);
    }
    let io = |e: std::io::Error| invalid(format!("{}: {e}", data_dir.display()));
    std::fs::rename(&staging, &data_dir).map_err(io)?;
    if let Some(parent) = data_dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::File::open(parent)
            .and_then(|d| d.sync_all())
            .map_err(io)?;
    }
    println!(
        "restored snapshot to {} (member {:x}, cluster {:x})",
        data_dir.display(),
        identity.member_id,
        identity.cluster_id
    );
    Ok(())
}

/// Steps 3 and 4 into `data_dir` (the staging dir).
fn build_member(
    data_dir: &Path,
    image: &[u8],
    identity: node::bootstrap::Identity,
) -> Result<(), CtlError> {
    let member = member_dir(data_dir);
    let kv = kv_dir(&member);
    let io = |e: std::io::Error| invalid(format!("{}: {e}", kv.display()));
    std::fs::create_dir_all(&kv).map_err(io)?;
    if is_bbolt(image) {
        let file = member.join("etcd-snapshot.db");
        std::fs::write(&file, image).map_err(io)?;
        let mut backend = LmdbBackend::open(&kv, &LmdbOptions::new(MAP_BYTES))
            .map_err(|e| invalid(format!("{}: {e}", kv.display())))?;
        let summary = storage::etcd_snapshot::import(&file, &mut backend)
            .map_err(|e| invalid(format!("snapshot file: {e}")))?;
        drop(backend);
        std::fs::remove_file(&file).map_err(io)?;
        println!(
            "loaded {} revisions up to {} and {} leases",
            summary.records, summary.revision, summary.leases
        );
    } else {
        let file = kv.join("data.mdb");
        std::fs::write(&file, image).map_err(io)?;
        std::fs::File::open(&file)
            .and_then(|f| f.sync_all())
            .map_err(io)?;
    }
    let mut store =
        MvccStore::open(&kv, MAP_BYTES).map_err(|e| invalid(format!("snapshot image: {e}")))?;
    store
        .reset_for_restore()
        .map_err(|e| invalid(format!("snapshot image: {e}")))?;
    store.close();
    load_or_create_identity(&member, identity).map_err(|e| invalid(e.to_string()))?;
    Ok(())
}

/// What `snapshot status` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotStatus {
    pub hash: u32,
    pub revision: i64,
    pub total_key: u64,
    pub total_size: u64,
}

/// etcd's `snapshot status` figures for the bbolt file at `path`.
pub fn status_of(path: &Path) -> Result<SnapshotStatus, CtlError> {
    let file = storage::bbolt::read::BoltFile::open(path)
        .map_err(|e| invalid(format!("{}: {e}", path.display())))?;
    let mut hash = crc32c_table_hasher();
    let mut status = SnapshotStatus {
        hash: 0,
        revision: 0,
        total_key: 0,
        total_size: file.meta().pgid * u64::from(file.meta().page_size),
    };
    for bucket in file.buckets() {
        hash.update(&bucket);
        let is_key = bucket == b"key";
        file.for_each(&bucket, |k, v| -> Result<bool, storage::bbolt::BoltError> {
            hash.update(k);
            hash.update(v);
            if is_key && k.len() >= 8 {
                status.revision = i64::from_be_bytes(k[..8].try_into().expect("8 bytes"));
            }
            status.total_key += 1;
            Ok(true)
        })
        .map_err(|e| invalid(format!("{}: {e}", path.display())))?;
    }
    status.hash = hash.finish();
    Ok(status)
}

/// CRC-32 with the Castagnoli polynomial, as etcd's status computes it.
struct Crc32c(u32);

fn crc32c_table_hasher() -> Crc32c {
    Crc32c(!0)
}

impl Crc32c {
    fn update(&mut self, bytes: &[u8]) {
        let mut crc = self.0;
        for &b in bytes {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0x82F6_3B78
                } else {
                    crc >> 1
                };
            }
        }
        self.0 = crc;
    }

    fn finish(&self) -> u32 {
        !self.0
    }
}

/// Runs `snapshot status`, printing as etcdctl prints.
pub fn status(args: StatusArgs) -> Result<(), CtlError> {
    let s = status_of(&args.file)?;
    let size = humanize_bytes(s.total_size);
    match args.write_out.as_str() {
        "json" => println!(
            "{{\"hash\":{},\"revision\":{},\"totalKey\":{},\"totalSize\":{}}}",
            s.hash, s.revision, s.total_key, s.total_size
        ),
        "table" => {
            let cells = [
                format!("{:x}", s.hash),
                s.revision.to_string(),
                s.total_key.to_string(),
                size,
            ];
            print!(
                "{}",
                table(&["HASH", "REVISION", "TOTAL KEYS", "TOTAL SIZE"], &cells)
            );
        }
        "simple" => println!("{:x}, {}, {}, {}", s.hash, s.revision, s.total_key, size),
        other => return Err(invalid(format!("unknown output format {other:?}"))),
    }
    Ok(())
}

/// go-humanize's `Bytes` (SI units, as etcdctl prints sizes).
fn humanize_bytes(n: u64) -> String {
    if n < 10 {
        return format!("{n} B");
    }
    let units = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let e = ((n as f64).ln() / 1000f64.ln()).floor() as usize;
    let value = n as f64 / 1000f64.powi(e as i32);
    let rounded = (value * 10.0 + 0.5).floor() / 10.0;
    if rounded < 10.0 {
        format!("{rounded:.1} {}", units[e])
    } else {
        format!("{rounded:.0} {}", units[e])
    }
}

/// One-row table in etcdctl's (tablewriter's) layout: centred headers and
/// right-aligned cells.
fn table(headers: &[&str], cells: &[String]) -> String {
    let widths: Vec<usize> = headers
        .iter()
        .zip(cells)
        .map(|(h, c)| h.len().max(c.len()) + 2)
        .collect();
    let rule: String = widths
        .iter()
        .map(|w| format!("+{}", "-".repeat(*w)))
        .collect::<String>()
        + "+\n";
    let center = |text: &str, width: usize| {
        let pad = width - text.len();
        let left = pad / 2 + pad % 2;
        format!("{}{}{}", " ".repeat(left), text, " ".repeat(pad - left))
    };
    let header: String = headers
        .iter()
        .zip(&widths)
        .map(|(h, w)| format!("|{}", center(h, *w)))
        .collect::<String>()
        + "|\n";
    let row: String = cells
        .iter()
        .zip(&widths)
        .map(|(c, w)| format!("|{:>width$} ", c, width = w - 1))
        .collect::<String>()
        + "|\n";
    format!("{rule}{header}{rule}{row}{rule}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_check_follows_etcdctl() {
        let image = vec![7u8; 1024];
        let mut file = image.clone();
        file.extend_from_slice(&Sha256::digest(&image));
        assert_eq!(verified_image(&file, false).unwrap(), image.as_slice());
        let mut corrupt = file.clone();
        corrupt[10] ^= 1;
        assert!(verified_image(&corrupt, false).is_err());
        assert!(verified_image(&corrupt, true).is_ok());
        let err = verified_image(&image, false).unwrap_err().to_string();
        assert_eq!(err, "snapshot missing hash but --skip-hash-check=false");
        assert_eq!(verified_image(&image, true).unwrap(), image.as_slice());
    }
}
