//! etcd 3.4's corruption checks: members compare HashKV over the peer port.
//!
//! 1. `--experimental-initial-corrupt-check`: before serving clients, a
//!    member hashes its store at its current revision and asks every other
//!    member (over its peer URL) for its hash at that revision. A peer with
//!    the same compact revision and another hash is a mismatch; one that
//!    cannot answer (down, or the revision is compacted or in its future)
//!    is only logged. Any mismatch stops the member: "<id> found data
//!    inconsistency with peers".
//! 2. `--experimental-corrupt-check-time`: the leader, every interval,
//!    hashes its store, asks the peers at that revision, hashes again after
//!    a linearizable read, and raises the CORRUPT alarm through raft for the
//!    first member found inconsistent (itself if its own hash changed at the
//!    same revision; a peer ahead of it in revision or compaction, or whose
//!    hash differs at the same compaction). A raised CORRUPT alarm stops
//!    every KV and lease write on every member (`etcdserver: corrupt
//!    cluster`), as in etcd.
//! 3. The verdicts ([`initial_mismatches`], [`periodic_suspect`]) are plain
//!    functions, unit tested without a server.

use std::time::Duration;

use actors::messages::{ReadRequest, ReadResponse};
use proto::etcdserverpb::maintenance_client::MaintenanceClient;
use proto::etcdserverpb::{AlarmRequest, AlarmType, HashKvRequest, HashKvResponse};
use proto::internal::internal_request::Request as Replicated;
use storage::EtcdError;

use crate::handle::NodeHandle;

/// Bound on one peer's answer.
const PEER_TIMEOUT: Duration = Duration::from_secs(5);

/// One peer's answer to HashKV at a revision.
pub type PeerHash = (u64, Result<HashKvResponse, String>);

/// Step 1's verdict: how many peers disagree at the same compaction.
pub fn initial_mismatches(local: &HashKvResponse, peers: &[PeerHash]) -> usize {
    let mut mismatches = 0;
    for (id, answer) in peers {
        match answer {
            Ok(p) if p.hash != local.hash => {
                if p.compact_revision == local.compact_revision {
                    tracing::error!(
                        peer = %format!("{id:x}"),
                        local_hash = local.hash,
                        peer_hash = p.hash,
                        revision = revision_of(local),
                        compact_revision = local.compact_revision,
                        "hash mismatch with a peer"
                    );
                    mismatches += 1;
                } else {
                    tracing::warn!(
                        peer = %format!("{id:x}"),
                        peer_compact_revision = p.compact_revision,
                        "cannot check the hash of a peer with another compact revision"
                    );
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(peer = %format!("{id:x}"), error = %e, "cannot check the hash of a peer")
            }
        }
    }
    mismatches
}

/// Step 2's verdict: the member to raise CORRUPT for, if any. `before` and
/// `after` are the leader's own hashes around the peers' answers.
pub fn periodic_suspect(
    leader: u64,
    before: &HashKvResponse,
    after: &HashKvResponse,
    peers: &[PeerHash],
) -> Option<u64> {
    let (rev, rev2) = (revision_of(before), revision_of(after));
    if after.hash != before.hash && rev2 == rev && after.compact_revision == before.compact_revision
    {
        tracing::warn!(
            revision = rev,
            "this member's hash changed at the same revision"
        );
        return Some(leader);
    }
    for (id, answer) in peers {
        let Ok(p) = answer else { continue };
        let peer_rev = revision_of(p);
        if peer_rev > rev2 {
            tracing::warn!(peer = %format!("{id:x}"), peer_rev, expected = rev2, "peer revision ahead of the leader's");
            return Some(*id);
        }
        if p.compact_revision > after.compact_revision {
            tracing::warn!(peer = %format!("{id:x}"), "peer compact revision ahead of the leader's");
            return Some(*id);
        }
        if p.compact_revision == before.compact_revision && p.hash != before.hash {
            tracing::warn!(
                peer = %format!("{id:x}"),
                revision = rev,
                peer_hash = p.hash,
                expected = before.hash,
                "peer hash differs from the leader's"
            );
            return Some(*id);
        }
    }
    None
}

fn revision_of(r: &HashKvResponse) -> i64 {
    r.header.as_ref().map_or(0, |h| h.revision)
}

/// This member's hash at `revision` (0: current); `linearizable` waits for
/// a ReadIndex first.
async fn local_hash(
    node: &NodeHandle,
    revision: i64,
    linearizable: bool,
) -> Result<HashKvResponse, EtcdError> {
    match node
        .read(
            ReadRequest::HashKv(HashKvRequest { revision }),
            linearizable,
        )
        .await?
    {
        ReadResponse::HashKv(r) => Ok(r),
        _ => Err(EtcdError::Stopped),
    }
}

/// Every other member's hash at `revision`, asked over its peer URL.
async fn peer_hashes(node: &NodeHandle, revision: i64) -> Vec<PeerHash> {
    let mut answers = Vec::new();
    for member in node.members() {
        if member.id == node.member_id {
            continue;
        }
        let answer = match member
            .peer_ur_ls
            .first()
            .and_then(|url| node.peer_channel(url))
        {
            None => Err("no usable peer URL".to_string()),
            Some(channel) => {
                let mut client = MaintenanceClient::new(channel);
                let call = client.hash_kv(HashKvRequest { revision });
                match tokio::time::timeout(PEER_TIMEOUT, call).await {
                    Ok(Ok(r)) => Ok(r.into_inner()),
                    Ok(Err(status)) => Err(status.message().to_string()),
                    Err(_) => Err(format!("no answer within {PEER_TIMEOUT:?}")),
                }
            }
        };
        answers.push((member.id, answer));
    }
    answers
}

/// Step 1: `Err` with etcd's words when a peer disagrees.
pub async fn initial_check(node: &NodeHandle) -> Result<(), String> {
    tracing::info!("starting initial corruption check");
    let local = local_hash(node, 0, false)
        .await
        .map_err(|e| format!("initial corruption check: {e}"))?;
    let peers = peer_hashes(node, revision_of(&local)).await;
    if initial_mismatches(&local, &peers) > 0 {
        return Err(format!(
            "{:x} found data inconsistency with peers",
            node.member_id
        ));
    }
    tracing::info!(
        revision = revision_of(&local),
        hash = local.hash,
        "initial corruption check passed"
    );
    Ok(())
}

/// Step 2: the leader's periodic check, until the process stops.
pub async fn run_periodic(node: NodeHandle, every: Duration) {
    tracing::info!(interval = ?every, "periodic corruption check enabled");
    loop {
        tokio::time::sleep(every).await;
        if !node.leads() {
            continue;
        }
        let Ok(before) = local_hash(&node, 0, false).await else {
            continue;
        };
        let peers = peer_hashes(&node, revision_of(&before)).await;
        let Ok(after) = local_hash(&node, 0, true).await else {
            continue;
        };
        let Some(suspect) = periodic_suspect(node.member_id, &before, &after, &peers) else {
            continue;
        };
        tracing::error!(member = %format!("{suspect:x}"), "raising the CORRUPT alarm");
        let alarm = AlarmRequest {
            action: proto::etcdserverpb::alarm_request::AlarmAction::Activate as i32,
            member_id: suspect,
            alarm: AlarmType::Corrupt as i32,
        };
        if let Err(e) = node.write(Replicated::Alarm(alarm)).await {
            tracing::warn!(error = %e, "could not raise the CORRUPT alarm");
        }
    }
}

#[cfg(test)]
mod tests {
    use proto::etcdserverpb::ResponseHeader;

    use super::*;

    fn hash(hash: u32, revision: i64, compact_revision: i64) -> HashKvResponse {
        HashKvResponse {
            header: Some(ResponseHeader {
                revision,
                ..Default::default()
            }),
            hash,
            compact_revision,
        }
    }

    #[test]
    fn initial_check_counts_only_same_compaction_mismatches() {
        let local = hash(7, 10, 2);
        let peers = vec![
            (2, Ok(hash(7, 10, 2))),
            (3, Ok(hash(8, 10, 5))),
            (4, Err("unreachable".to_string())),
        ];
        assert_eq!(initial_mismatches(&local, &peers), 0);
        let peers = vec![(2, Ok(hash(8, 10, 2)))];
        assert_eq!(initial_mismatches(&local, &peers), 1);
    }

    #[test]
    fn periodic_check_names_the_first_inconsistent_member() {
        let before = hash(7, 10, 2);
        let same = vec![(2, Ok(hash(7, 10, 2))), (3, Err("down".into()))];
        assert_eq!(periodic_suspect(1, &before, &hash(9, 12, 2), &same), None);
        // The leader's own hash changed at the same revision.
        assert_eq!(
            periodic_suspect(1, &before, &hash(9, 10, 2), &same),
            Some(1)
        );
        // A peer with another hash at the same compaction.
        let differs = vec![(2, Ok(hash(7, 10, 2))), (3, Ok(hash(8, 10, 2)))];
        assert_eq!(periodic_suspect(1, &before, &before, &differs), Some(3));
        // A peer ahead of the leader.
        let ahead = vec![(2, Ok(hash(7, 11, 2)))];
        assert_eq!(periodic_suspect(1, &before, &before, &ahead), Some(2));
        // A peer compacted further than the leader.
        let compacted = vec![(2, Ok(hash(7, 10, 3)))];
        assert_eq!(periodic_suspect(1, &before, &before, &compacted), Some(2));
    }
}
