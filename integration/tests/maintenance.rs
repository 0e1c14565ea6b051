//! Maintenance operations through Debian's etcdctl 3.4, against oxcd:
//!
//! 1. `snapshot save` succeeds, and the file is etcd's format: the image
//!    (a multiple of 512 bytes) followed by its 32-byte SHA-256.
//! 2. `defrag` prints etcd's line, and data written before it reads back.
//! 3. `move-leader` to itself succeeds (a no-op, as in etcd); to an unknown
//!    member it fails with `etcdserver: bad leader transferee`.
//!
//! A second test: `oxcdctl snapshot restore` refuses a file whose SHA-256 does not match,
//!    and restores a good one into a new data dir: the keys and the revision
//!    are there, the applied index is back to 0 for the new cluster.
//!
//! A third test moves leadership around a three-member cluster, first of
//! etcd (which validates the expectations), then of oxcd:
//!
//! 1. `etcdctl move-leader <follower>` with every endpoint given hands
//!    leadership from the leader to that follower (etcd's "Leadership
//!    transferred from <old> to <new>"), and every member's Status then
//!    names the new leader; then again from the new leader to the third
//!    member.
//! 2. With only a follower's endpoint, etcdctl finds no leader to send the
//!    request to and fails with "no leader endpoint given at [<endpoint>]".
//! 3. `Maintenance.MoveLeader` sent straight to a follower fails with
//!    `FailedPrecondition "etcdserver: not leader"`.

use std::time::Duration;

use integration::cluster::{Cluster, ClusterOpts};
use integration::etcdctl::run_etcdctl;
use integration::{Kind, Server, ServerOpts};
use proto::etcdserverpb::{MoveLeaderRequest, StatusRequest};
use sha2::{Digest, Sha256};

const CTL_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on waiting for a cluster to agree on a (new) leader.
const LEADER_WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_defrag_and_move_leader_through_etcdctl() {
    let server = Server::start(Kind::Oxcd, ServerOpts::default())
        .await
        .expect("start oxcd");
    let ep = server.endpoint();
    for i in 0..20 {
        let value = format!("value-{i}-{}", "x".repeat(2000));
        let out = run_etcdctl(
            &ep,
            &["put", &format!("k{i:02}"), &value],
            None,
            CTL_TIMEOUT,
        )
        .await
        .unwrap();
        assert_eq!(out.code, 0, "{out:?}");
    }

    // 1. snapshot save
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("backup.db");
    let file_arg = file.to_string_lossy().into_owned();
    let out = run_etcdctl(&ep, &["snapshot", "save", &file_arg], None, CTL_TIMEOUT)
        .await
        .unwrap();
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("Snapshot saved at"), "{out:?}");
    let bytes = std::fs::read(&file).unwrap();
    assert_eq!(
        bytes.len() % 512,
        32,
        "etcdctl requires image size + 32 bytes of SHA-256"
    );
    let (image, trailer) = bytes.split_at(bytes.len() - 32);
    assert_eq!(Sha256::digest(image).as_slice(), trailer);

    // 2. defrag
    let out = run_etcdctl(&ep, &["defrag"], None, CTL_TIMEOUT)
        .await
        .unwrap();
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        out.stdout.trim(),
        format!("Finished defragmenting etcd member[{ep}]")
    );
    let out = run_etcdctl(
        &ep,
        &["get", "k19", "--print-value-only"],
        None,
        CTL_TIMEOUT,
    )
    .await
    .unwrap();
    assert!(out.stdout.starts_with("value-19-"), "{out:?}");

    // 3. move-leader (and Hash, which etcdctl has no command for)
    let mut maintenance = server.maintenance().await.unwrap();
    let hash = |r: tonic::Response<proto::etcdserverpb::HashResponse>| r.into_inner().hash;
    let before = hash(
        maintenance
            .hash(proto::etcdserverpb::HashRequest {})
            .await
            .unwrap(),
    );
    assert_eq!(
        before,
        hash(
            maintenance
                .hash(proto::etcdserverpb::HashRequest {})
                .await
                .unwrap()
        )
    );
    let out = run_etcdctl(&ep, &["put", "hash-me", "x"], None, CTL_TIMEOUT)
        .await
        .unwrap();
    assert_eq!(out.code, 0, "{out:?}");
    assert_ne!(
        before,
        hash(
            maintenance
                .hash(proto::etcdserverpb::HashRequest {})
                .await
                .unwrap()
        )
    );
    let me = maintenance
        .status(StatusRequest {})
        .await
        .unwrap()
        .into_inner()
        .header
        .unwrap()
        .member_id;
    let out = run_etcdctl(&ep, &["move-leader", &format!("{me:x}")], None, CTL_TIMEOUT)
        .await
        .unwrap();
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        out.stdout.trim(),
        format!("Leadership transferred from {me:x} to {me:x}")
    );
    let out = run_etcdctl(&ep, &["move-leader", "1234"], None, CTL_TIMEOUT)
        .await
        .unwrap();
    assert_ne!(out.code, 0);
    assert!(
        out.stderr
            .contains("Error: etcdserver: bad leader transferee"),
        "{out:?}"
    );
}

#[test]
fn oxcdctl_restore_checks_the_hash_and_resets_the_store() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("backup.db");
    let revision = runtime.block_on(async {
        let server = Server::start(Kind::Oxcd, ServerOpts::default())
            .await
            .expect("start oxcd");
        let ep = server.endpoint();
        for i in 0..5 {
            let out = run_etcdctl(&ep, &["put", &format!("k{i}"), "v"], None, CTL_TIMEOUT)
                .await
                .unwrap();
            assert_eq!(out.code, 0, "{out:?}");
        }
        let file_arg = file.to_string_lossy().into_owned();
        let out = run_etcdctl(&ep, &["snapshot", "save", &file_arg], None, CTL_TIMEOUT)
            .await
            .unwrap();
        assert_eq!(out.code, 0, "{out:?}");
        let mut maintenance = server.maintenance().await.unwrap();
        maintenance
            .status(StatusRequest {})
            .await
            .unwrap()
            .into_inner()
            .header
            .unwrap()
            .revision
    });
    let oxcdctl = integration::oxcdctl_binary().unwrap();
    let restore = |file: &std::path::Path, data: &std::path::Path| {
        std::process::Command::new(&oxcdctl)
            .args(["snapshot", "restore"])
            .arg(file)
            .arg("--data-dir")
            .arg(data)
            .output()
            .unwrap()
    };

    let mut bytes = std::fs::read(&file).unwrap();
    bytes[100] ^= 0xff;
    let corrupt = dir.path().join("corrupt.db");
    std::fs::write(&corrupt, &bytes).unwrap();
    let out = restore(&corrupt, &dir.path().join("bad"));
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("expected sha256"),
        "{out:?}"
    );
    assert!(!dir.path().join("bad").exists());

    let data = dir.path().join("restored");
    let out = restore(&file, &data);
    assert!(out.status.success(), "{out:?}");
    let out = restore(&file, &data);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("exists"),
        "{out:?}"
    );
    let store = storage::mvcc::MvccStore::open(&data.join("member").join("kv"), 64 << 20).unwrap();
    assert_eq!(store.current_revision(), revision);
    assert_eq!(store.applied_index(), 0);
    assert!(store.members().is_empty());
    let range = store
        .range(&proto::etcdserverpb::RangeRequest {
            key: b"k".to_vec(),
            range_end: b"l".to_vec(),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(range.count, 5);
}

/// Polls until every member of `cluster` names member `target` as leader.
async fn wait_for_leader(cluster: &mut Cluster, target: usize) {
    let started = std::time::Instant::now();
    while cluster.leader().await != Some(target) {
        assert!(
            started.elapsed() < LEADER_WAIT,
            "{}: members do not all name {} as leader after {LEADER_WAIT:?}",
            cluster.kind().name(),
            cluster.name(target)
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The move-leader steps of the module doc against a fresh cluster of `kind`.
async fn move_leader_around_a_cluster(kind: Kind) {
    let name = kind.name();
    let mut cluster = Cluster::start(kind, ClusterOpts::default())
        .await
        .unwrap_or_else(|e| panic!("start {name} cluster: {e}"));
    let first = cluster.wait_leader(LEADER_WAIT).await.expect("a leader");
    let id = |i: usize| cluster.member_id(i).expect("member id seen by wait_leader");
    let ids: Vec<u64> = (0..cluster.size()).map(id).collect();
    let all = (0..cluster.size())
        .map(|i| cluster.client_addr(i))
        .collect::<Vec<_>>()
        .join(",");
    let followers: Vec<usize> = (0..cluster.size()).filter(|&i| i != first).collect();

    // 1. Leader -> first follower, then that one -> the third member.
    let mut leader = first;
    for target in followers.iter().copied() {
        let to = format!("{:x}", ids[target]);
        let out = run_etcdctl(&all, &["move-leader", &to], None, CTL_TIMEOUT)
            .await
            .unwrap();
        assert_eq!(out.code, 0, "{name}: {out:?}");
        assert_eq!(
            out.stdout.trim(),
            format!("Leadership transferred from {:x} to {to}", ids[leader]),
            "{name}"
        );
        wait_for_leader(&mut cluster, target).await;
        leader = target;
    }

    // 2. etcdctl given only a follower's endpoint.
    let follower = first;
    let addr = cluster.client_addr(follower);
    let to = format!("{:x}", ids[followers[0]]);
    let out = run_etcdctl(&addr, &["move-leader", &to], None, CTL_TIMEOUT)
        .await
        .unwrap();
    assert_ne!(out.code, 0, "{name}: {out:?}");
    assert!(
        out.stderr
            .contains(&format!("Error: no leader endpoint given at [{addr}]")),
        "{name}: {out:?}"
    );

    // 3. The RPC sent straight to a follower.
    let err = cluster
        .maintenance(follower)
        .await
        .expect("maintenance client")
        .move_leader(MoveLeaderRequest {
            target_id: ids[followers[0]],
        })
        .await
        .expect_err("MoveLeader on a follower");
    assert_eq!(
        err.code(),
        tonic::Code::FailedPrecondition,
        "{name}: {err:?}"
    );
    assert_eq!(err.message(), "etcdserver: not leader", "{name}");
    // Nothing moved.
    assert_eq!(cluster.leader().await, Some(leader), "{name}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn move_leader_between_members_as_in_etcd() {
    move_leader_around_a_cluster(Kind::Etcd).await;
    move_leader_around_a_cluster(Kind::Oxcd).await;
}
