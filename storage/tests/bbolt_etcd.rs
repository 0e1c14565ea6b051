//! `storage::bbolt` against the real thing: Debian's etcd 3.4 and etcdctl.
//!
//! 1. [`bbolt_reads_a_real_etcd_snapshot`]: etcd serves a few puts, a delete,
//!    a lease and a value big enough for overflow pages; `etcdctl snapshot
//!    save` writes its snapshot; the reader lists etcd's buckets and finds
//!    every revision, and its counts and CRC-32C agree with `etcdctl snapshot
//!    status`. The trailing SHA-256 passes [`verify_snapshot_hash`].
//! 2. [`bbolt_written_snapshot_is_read_and_restored_by_etcd`]: the writer
//!    produces etcd's buckets with revisions, a tombstone and a 1.5 MB value;
//!    `etcdctl snapshot status` (which runs bbolt's consistency check) reports
//!    the expected revision, key count and hash; with the hash appended,
//!    `etcdctl snapshot restore` accepts it without `--skip-hash-check`, and
//!    etcd started on the restored data dir serves the keys and takes writes.
//!
//! Both skip (with a message) when the binaries are missing; `make test`
//! installs them. Each etcd runs on OS-given loopback ports in a temp dir and
//! is killed by its own PID.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use prost::Message;
use proto::mvccpb::KeyValue;
use storage::bbolt::BoltError;
use storage::bbolt::read::BoltFile;
use storage::bbolt::snapshot::{SnapshotHash, append_snapshot_hash, verify_snapshot_hash};
use storage::bbolt::write::{BoltWriter, WriterConfig};

/// The buckets etcd 3.4 creates in its backend.
const ETCD_BUCKETS: [&str; 10] = [
    "alarm",
    "auth",
    "authRoles",
    "authUsers",
    "cluster",
    "key",
    "lease",
    "members",
    "members_removed",
    "meta",
];

fn binary(name: &str, env: &str) -> Option<PathBuf> {
    let path = std::env::var_os(env)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new("/usr/bin").join(name));
    path.exists().then_some(path)
}

/// etcd and etcdctl, or `None` (and a message) when either is missing.
fn binaries(test: &str) -> Option<(PathBuf, PathBuf)> {
    match (binary("etcd", "ETCD_BIN"), binary("etcdctl", "ETCDCTL_BIN")) {
        (Some(etcd), Some(ctl)) => Some((etcd, ctl)),
        _ => {
            println!(
                "{test}: skipped, /usr/bin/etcd or /usr/bin/etcdctl missing (make test installs them)"
            );
            None
        }
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

fn etcdctl(ctl: &Path, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(ctl)
        .env("ETCDCTL_API", "3")
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input).unwrap();
    }
    child.wait_with_output().unwrap()
}

/// Runs etcdctl and insists that it succeeds; returns its stdout.
fn etcdctl_ok(ctl: &Path, args: &[&str], stdin: Option<&[u8]>) -> Vec<u8> {
    let out = etcdctl(ctl, args, stdin);
    assert!(
        out.status.success(),
        "etcdctl {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// One etcd member, killed (by its PID) when dropped.
struct Etcd {
    child: Child,
    ctl: PathBuf,
    endpoint: String,
    log: PathBuf,
}

impl Etcd {
    /// Starts etcd on `data_dir` (a new member, or one restored by etcdctl
    /// for `peer_port`) and waits until it is healthy.
    fn start(etcd: &Path, ctl: &Path, data_dir: &Path, peer_port: u16) -> Etcd {
        let client = format!("http://127.0.0.1:{}", free_port());
        let peer = format!("http://127.0.0.1:{peer_port}");
        let log = data_dir.with_extension("log");
        let child = Command::new(etcd)
            .args([
                "--name=default",
                &format!("--data-dir={}", data_dir.display()),
                &format!("--listen-client-urls={client}"),
                &format!("--advertise-client-urls={client}"),
                &format!("--listen-peer-urls={peer}"),
                &format!("--initial-advertise-peer-urls={peer}"),
                &format!("--initial-cluster=default={peer}"),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut member = Etcd {
            child,
            ctl: ctl.to_path_buf(),
            endpoint: client,
            log,
        };
        member.wait_healthy();
        member
    }

    fn wait_healthy(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("etcd exited ({status}):\n{}", self.log_tail());
            }
            let out = etcdctl(
                &self.ctl,
                &[
                    &format!("--endpoints={}", self.endpoint),
                    "--dial-timeout=1s",
                    "--command-timeout=2s",
                    "endpoint",
                    "health",
                ],
                None,
            );
            if out.status.success() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "etcd not healthy after 30 s:\n{}",
                self.log_tail()
            );
            // Poll interval while etcd starts; the loop ends on health.
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    fn ctl(&self, args: &[&str], stdin: Option<&[u8]>) -> Vec<u8> {
        let endpoint = format!("--endpoints={}", self.endpoint);
        let mut all = vec![endpoint.as_str()];
        all.extend_from_slice(args);
        etcdctl_ok(&self.ctl, &all, stdin)
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// etcd's revision key: main and sub big-endian around `_`, and a trailing
/// `t` for a deletion (tombstone).
fn rev_key(main: i64, tombstone: bool) -> Vec<u8> {
    let mut key = Vec::with_capacity(18);
    key.extend_from_slice(&main.to_be_bytes());
    key.push(b'_');
    key.extend_from_slice(&0i64.to_be_bytes());
    if tombstone {
        key.push(b't');
    }
    key
}

fn rev_main(key: &[u8]) -> i64 {
    assert!(
        (key.len() == 17 || (key.len() == 18 && key[17] == b't')) && key[8] == b'_',
        "not a revision: {key:?}"
    );
    i64::from_be_bytes(key[..8].try_into().unwrap())
}

/// CRC-32C (Castagnoli), as `etcdctl snapshot status` hashes a snapshot.
fn crc32c(crc: u32, bytes: &[u8]) -> u32 {
    let mut crc = !crc;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// What `etcdctl snapshot status` computes, from our reader: the hash over
/// every bucket name, key and value, the last revision, and the key count.
fn status_of(file: &BoltFile) -> (u32, i64, u64) {
    let (mut hash, mut revision, mut keys) = (0u32, 0i64, 0u64);
    for bucket in file.buckets() {
        hash = crc32c(hash, &bucket);
        file.for_each::<BoltError, _>(&bucket, |k, v| {
            hash = crc32c(crc32c(hash, k), v);
            if bucket == b"key" {
                revision = rev_main(k);
            }
            keys += 1;
            Ok(true)
        })
        .unwrap();
    }
    (hash, revision, keys)
}

/// `etcdctl snapshot status -w json`: hash, revision, totalKey, totalSize.
fn etcdctl_status(ctl: &Path, file: &Path) -> (u32, i64, u64, u64) {
    let out = etcdctl_ok(
        ctl,
        &["snapshot", "status", file.to_str().unwrap(), "-w", "json"],
        None,
    );
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    (
        v["hash"].as_u64().unwrap() as u32,
        v["revision"].as_i64().unwrap(),
        v["totalKey"].as_u64().unwrap(),
        v["totalSize"].as_u64().unwrap(),
    )
}

#[test]
fn bbolt_reads_a_real_etcd_snapshot() {
    let Some((etcd_bin, ctl)) = binaries("bbolt_reads_a_real_etcd_snapshot") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let etcd = Etcd::start(&etcd_bin, &ctl, &dir.path().join("etcd"), free_port());

    // Revision 1 is etcd's empty store; every put or delete adds one.
    let mut expected: Vec<(Vec<u8>, Option<Vec<u8>>)> = Vec::new();
    let mut put = |key: &str, value: Vec<u8>, args: &[&str]| {
        let mut all = vec!["put", key];
        all.extend_from_slice(args);
        etcd.ctl(&all, Some(&value));
        expected.push((key.as_bytes().to_vec(), Some(value)));
    };
    put("foo", b"bar".to_vec(), &[]);
    put("foo", b"baz".to_vec(), &[]);
    for i in 0..8 {
        put(&format!("wide/{i}"), vec![b'a' + i as u8; 1500], &[]);
    }
    let big: Vec<u8> = (0..300_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    put("big", big, &[]);
    let lease = String::from_utf8(etcd.ctl(&["lease", "grant", "600"], None)).unwrap();
    let lease_hex = lease.split_whitespace().nth(1).unwrap().to_string();
    let lease_id = i64::from_str_radix(&lease_hex, 16).unwrap();
    put("leased", b"v".to_vec(), &["--lease", &lease_hex]);
    etcd.ctl(&["del", "wide/3"], None);
    expected.push((b"wide/3".to_vec(), None));

    let snap = dir.path().join("snap.db");
    etcd.ctl(&["snapshot", "save", snap.to_str().unwrap()], None);
    drop(etcd);

    // The file is the bbolt file and its SHA-256.
    let len = std::fs::metadata(&snap).unwrap().len();
    assert_eq!(len % 512, 32, "{len}");
    assert_eq!(verify_snapshot_hash(&snap).unwrap(), SnapshotHash::Verified);

    let file = BoltFile::open(&snap).unwrap();
    let meta = *file.meta();
    assert_eq!(meta.pgid * u64::from(meta.page_size), len - 32);
    let names: Vec<String> = file
        .buckets()
        .into_iter()
        .map(|b| String::from_utf8(b).unwrap())
        .collect();
    assert_eq!(names, ETCD_BUCKETS, "etcd 3.4's buckets");

    // The key bucket: one revision per put or delete, in order.
    let mut revisions = Vec::new();
    file.for_each::<BoltError, _>(b"key", |k, v| {
        let kv = KeyValue::decode(v).unwrap();
        let tombstone = k.len() == 18;
        // A deletion stores the bare key (etcd's `mvcc` delete).
        let mod_revision = if tombstone { 0 } else { rev_main(k) };
        assert_eq!(kv.mod_revision, mod_revision);
        revisions.push((
            rev_main(k),
            kv.key,
            (!tombstone).then_some(kv.value),
            kv.lease,
        ));
        Ok(true)
    })
    .unwrap();
    let got: Vec<_> = revisions
        .iter()
        .map(|(_, k, v, _)| (k.clone(), v.clone()))
        .collect();
    assert_eq!(got, expected);
    let mains: Vec<i64> = revisions.iter().map(|r| r.0).collect();
    assert_eq!(mains, (2..2 + expected.len() as i64).collect::<Vec<_>>());
    let leased = revisions.iter().find(|r| r.1 == b"leased").unwrap();
    assert_eq!(leased.3, lease_id);

    // The meta and lease buckets.
    let mut meta_keys = BTreeMap::new();
    file.for_each::<BoltError, _>(b"meta", |k, v| {
        meta_keys.insert(k.to_vec(), v.to_vec());
        Ok(true)
    })
    .unwrap();
    let ci = &meta_keys[&b"consistent_index".to_vec()];
    assert!(u64::from_be_bytes(ci[..].try_into().unwrap()) > 0);
    let mut leases = Vec::new();
    file.for_each::<BoltError, _>(b"lease", |k, _| {
        leases.push(i64::from_be_bytes(k.try_into().unwrap()));
        Ok(true)
    })
    .unwrap();
    assert_eq!(leases, vec![lease_id]);

    // etcdctl computes the same from the same bytes.
    let (hash, revision, keys) = status_of(&file);
    assert_eq!(revision, *mains.last().unwrap());
    assert_eq!(
        etcdctl_status(&ctl, &snap),
        (hash, revision, keys, len - 32)
    );
}

/// The file the writer test builds: etcd's buckets, keys `k00000..k04999` at
/// revisions 2.., then a 1.5 MB value, then `gone` put and deleted.
struct Written {
    live: BTreeMap<Vec<u8>, Vec<u8>>,
    last_revision: i64,
}

fn write_etcd_like(path: &Path) -> Written {
    let mut w = BoltWriter::new(WriterConfig::default());
    for name in ETCD_BUCKETS {
        w.create_bucket(name.as_bytes());
    }
    let mut live = BTreeMap::new();
    let mut rev = 1;
    let mut put = |w: &mut BoltWriter, key: &[u8], value: Vec<u8>| {
        rev += 1;
        let kv = KeyValue {
            key: key.to_vec(),
            create_revision: rev,
            mod_revision: rev,
            version: 1,
            value: value.clone(),
            lease: 0,
        };
        w.put(b"key", rev_key(rev, false), kv.encode_to_vec());
        live.insert(key.to_vec(), value);
        rev
    };
    for i in 0..5000 {
        let value = format!("value-{i}-").repeat(1 + i % 40).into_bytes();
        put(&mut w, format!("k{i:05}").as_bytes(), value);
    }
    let big: Vec<u8> = (0..1_500_000u32).map(|i| b'A' + (i % 26) as u8).collect();
    put(&mut w, b"big", big);
    let gone = put(&mut w, b"gone", b"soon deleted".to_vec());
    live.remove(&b"gone"[..]);
    let tombstone = KeyValue {
        key: b"gone".to_vec(),
        ..KeyValue::default()
    };
    w.put(b"key", rev_key(gone + 1, true), tombstone.encode_to_vec());
    let last_revision = gone + 1;

    w.put(
        b"meta",
        b"consistent_index".to_vec(),
        7u64.to_be_bytes().to_vec(),
    );
    w.put(b"meta", b"finishedCompactRev".to_vec(), rev_key(1, false));
    w.write_to(path).unwrap();
    Written {
        live,
        last_revision,
    }
}

#[test]
fn bbolt_written_snapshot_is_read_and_restored_by_etcd() {
    let Some((etcd_bin, ctl)) = binaries("bbolt_written_snapshot_is_read_and_restored_by_etcd")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let snap = dir.path().join("written.db");
    let written = write_etcd_like(&snap);

    // Our reader and etcdctl (bbolt's Check, then a walk) agree.
    let len = std::fs::metadata(&snap).unwrap().len();
    let file = BoltFile::open(&snap).unwrap();
    let (hash, revision, keys) = status_of(&file);
    assert_eq!(revision, written.last_revision);
    assert_eq!(keys, written.live.len() as u64 + 2 + 2);
    assert_eq!(etcdctl_status(&ctl, &snap), (hash, revision, keys, len));
    drop(file);

    // With etcd's trailing hash, restore needs no --skip-hash-check.
    append_snapshot_hash(&snap).unwrap();
    assert_eq!(verify_snapshot_hash(&snap).unwrap(), SnapshotHash::Verified);
    let peer_port = free_port();
    let peer = format!("http://127.0.0.1:{peer_port}");
    let data_dir = dir.path().join("restored");
    etcdctl_ok(
        &ctl,
        &[
            "snapshot",
            "restore",
            snap.to_str().unwrap(),
            "--name=default",
            &format!("--data-dir={}", data_dir.display()),
            &format!("--initial-cluster=default={peer}"),
            &format!("--initial-advertise-peer-urls={peer}"),
        ],
        None,
    );
    let etcd = Etcd::start(&etcd_bin, &ctl, &data_dir, peer_port);

    let listed = etcd.ctl(&["get", "", "--prefix", "--keys-only"], None);
    let listed: Vec<&[u8]> = listed
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    let expected: Vec<&[u8]> = written.live.keys().map(Vec::as_slice).collect();
    assert_eq!(listed, expected);
    for key in ["k00000", "k01234", "big"] {
        let value = etcd.ctl(&["get", key, "--print-value-only"], None);
        // etcdctl ends the value with a newline.
        assert_eq!(
            &value[..value.len() - 1],
            &written.live[key.as_bytes()][..],
            "{key}"
        );
    }
    let header = |out: Vec<u8>| -> i64 {
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        v["header"]["revision"].as_i64().unwrap()
    };
    let count = etcd.ctl(&["get", "big", "--keys-only", "-w", "json"], None);
    assert_eq!(header(count), written.last_revision);

    // The restored backend takes writes: the next revision follows ours.
    let put = etcd.ctl(&["put", "after", "restore", "-w", "json"], None);
    assert_eq!(header(put), written.last_revision + 1);
}
