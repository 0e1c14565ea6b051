//! `oxcdctl snapshot restore`: turns a file written by `etcdctl snapshot
//! save` against oxcd into the data dir of a new member, as `etcdctl
//! snapshot restore` does for etcd (same flags).
//!
//! 1. Check the file: its last 32 bytes must be the SHA-256 of the rest
//!    (skipped with `--skip-hash-check`, as etcdctl's).
//! 2. Refuse an existing data dir.
//! 3. Write the image as the member's MVCC store, then reset it to found a
//!    new cluster: applied index 0, the old members and alarms gone (keys,
//!    revisions and leases stay).
//! 4. Record the new member's and cluster's ids, derived from
//!    `--initial-cluster` and the token as the server derives them.
//!
//! Start `oxcd` on the data dir with the same cluster flags; every member of
//! the new cluster is restored from the same file with its own `--name`.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use node::bootstrap::{kv_dir, load_or_create_identity, member_dir};
use node::membership::founding_identity;
use sha2::{Digest, Sha256};
use storage::mvcc::MvccStore;

use super::CtlError;

/// `oxcdctl snapshot ...`
#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Restores a member's data dir from a snapshot file.
    Restore(RestoreArgs),
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
    #[arg(long = "skip-hash-check")]
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

    let member = member_dir(&data_dir);
    let kv = kv_dir(&member);
    write_store(&kv, image)?;
    load_or_create_identity(&member, identity).map_err(|e| invalid(e.to_string()))?;
    println!(
        "restored snapshot to {} (member {:x}, cluster {:x})",
        data_dir.display(),
        identity.member_id,
        identity.cluster_id
    );
    Ok(())
}

fn write_store(kv: &Path, image: &[u8]) -> Result<(), CtlError> {
    let io = |e: std::io::Error| invalid(format!("{}: {e}", kv.display()));
    std::fs::create_dir_all(kv).map_err(io)?;
    let file = kv.join("data.mdb");
    std::fs::write(&file, image).map_err(io)?;
    std::fs::File::open(&file)
        .and_then(|f| f.sync_all())
        .map_err(io)?;
    let mut store =
        MvccStore::open(kv, MAP_BYTES).map_err(|e| invalid(format!("snapshot image: {e}")))?;
    store
        .reset_for_restore()
        .map_err(|e| invalid(format!("snapshot image: {e}")))?;
    store.close();
    Ok(())
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
