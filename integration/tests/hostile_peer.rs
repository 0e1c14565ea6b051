//! Hostile and broken peer traffic against a real three-member cluster: no
//! message from the network may end a member or leave it unable to restart
//! (a member keeps serving whatever its peer port receives).
//!
//! 1. Start three members, write a first batch of keys (acknowledged).
//! 2. Open the `Peer` service of a follower, as a forged leader would (the
//!    right cluster id, the leader's member id, the current term), and send:
//!    bytes that are no raft message; on the stream, a `MsgSnapshot` whose
//!    data is no image descriptor and one whose descriptor names an image that
//!    never arrived; a heartbeat committing far past the log; an append with
//!    a gap; an append far past the log's end; a `MsgHup`; on the `Snapshot`
//!    RPC, a descriptor for another index and an image whose bytes do not
//!    match its hash.
//! 3. Every member is still running, the follower counts the refusals in
//!    `oxcd_peer_messages_refused_total`, and every member takes writes and
//!    serves linearizable reads of everything acknowledged.
//! 4. Each member in turn is killed with SIGKILL and restarted: it comes
//!    back, and every acknowledged key is read back through it.

use std::time::Duration;

use integration::Kind;
use integration::cluster::{Cluster, ClusterOpts};
use proto::Message as _;
use proto::etcdserverpb::{PutRequest, RangeRequest};
use proto::internal::peer_client::PeerClient;
use proto::internal::{RaftBatch, SnapshotChunk, SnapshotDescriptor};
use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, Message, MessageType, Snapshot};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;
use tonic::transport::{Channel, Endpoint};

const KEYS_PER_ROUND: usize = 20;
const DEADLINE: Duration = Duration::from_secs(20);

/// Who the forged messages claim to come from.
struct Forger {
    cluster_id: u64,
    leader_id: u64,
    follower_id: u64,
    term: u64,
}

impl Forger {
    fn message(&self, kind: MessageType) -> Message {
        let mut m = Message::default();
        m.set_msg_type(kind);
        m.from = self.leader_id;
        m.to = self.follower_id;
        m.term = self.term;
        m
    }

    fn snapshot(&self, index: u64, data: Vec<u8>) -> Message {
        let mut snap = Snapshot::default();
        snap.set_data(data.into());
        let meta = snap.mut_metadata();
        meta.index = index;
        meta.term = self.term;
        meta.set_conf_state(ConfState::default());
        let mut m = self.message(MessageType::MsgSnapshot);
        m.set_snapshot(snap);
        m
    }

    fn batch(&self, messages: Vec<Vec<u8>>) -> RaftBatch {
        RaftBatch {
            from: self.leader_id,
            cluster_id: self.cluster_id,
            messages,
        }
    }
}

fn encode(m: &Message) -> Vec<u8> {
    m.write_to_bytes().expect("encode a raft message")
}

async fn peer_client(cluster: &Cluster, i: usize) -> PeerClient<Channel> {
    let channel = Endpoint::from_shared(cluster.peer_url(i))
        .expect("peer url")
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connect to {}'s peer port: {e}", cluster.name(i)));
    PeerClient::new(channel)
}

/// Sends one `Stream` call carrying `batches`, and returns how it ended.
async fn stream(
    client: &mut PeerClient<Channel>,
    batches: Vec<RaftBatch>,
) -> Result<(), tonic::Status> {
    let call = client.stream(tokio_stream::iter(batches));
    tokio::time::timeout(DEADLINE, call)
        .await
        .expect("the peer stream answered in time")
        .map(drop)
}

/// Sends one `Snapshot` call carrying `chunks`, with the cluster id header.
async fn snapshot_call(
    client: &mut PeerClient<Channel>,
    cluster_id: u64,
    chunks: Vec<SnapshotChunk>,
) -> Result<(), tonic::Status> {
    let mut request = tonic::Request::new(tokio_stream::iter(chunks));
    request.metadata_mut().insert(
        "oxcd-cluster-id",
        format!("{cluster_id:x}").parse().expect("header value"),
    );
    let call = client.snapshot(request);
    tokio::time::timeout(DEADLINE, call)
        .await
        .expect("the snapshot call answered in time")
        .map(drop)
}

async fn put_round(cluster: &Cluster, round: usize, acknowledged: &mut Vec<(String, String)>) {
    for i in 0..cluster.size() {
        let mut kv = cluster.kv(i).await.expect("kv client");
        for k in 0..KEYS_PER_ROUND / cluster.size() + 1 {
            let key = format!("hostile/{round}/{i}/{k}");
            let value = format!("v{round}-{i}-{k}");
            kv.put(PutRequest {
                key: key.clone().into_bytes(),
                value: value.clone().into_bytes(),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("put {key} through {}: {e}", cluster.name(i)));
            acknowledged.push((key, value));
        }
    }
}

/// Reads every acknowledged key through member `i` (linearizable).
async fn assert_all_present(cluster: &Cluster, i: usize, acknowledged: &[(String, String)]) {
    let mut kv = cluster.kv(i).await.expect("kv client");
    let resp = kv
        .range(RangeRequest {
            key: b"hostile/".to_vec(),
            range_end: b"hostile0".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("range through {}: {e}", cluster.name(i)))
        .into_inner();
    let held: std::collections::HashMap<Vec<u8>, Vec<u8>> =
        resp.kvs.into_iter().map(|kv| (kv.key, kv.value)).collect();
    for (key, value) in acknowledged {
        assert_eq!(
            held.get(key.as_bytes()),
            Some(&value.clone().into_bytes()),
            "{key} through {}",
            cluster.name(i)
        );
    }
}

/// `GET /metrics` on member `i`'s client port.
async fn metrics(cluster: &Cluster, i: usize) -> String {
    let mut conn = tokio::net::TcpStream::connect(cluster.client_addr(i))
        .await
        .expect("connect for /metrics");
    conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .expect("send /metrics request");
    let mut body = String::new();
    tokio::time::timeout(DEADLINE, conn.read_to_string(&mut body))
        .await
        .expect("/metrics answered in time")
        .expect("read /metrics");
    body
}

fn refused(metrics: &str, reason: &str) -> u64 {
    let prefix = format!("oxcd_peer_messages_refused_total{{reason=\"{reason}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_peer_messages_are_refused_and_members_keep_serving_and_restart() {
    let mut cluster = Cluster::start(Kind::Oxcd, ClusterOpts::default())
        .await
        .unwrap_or_else(|e| panic!("start cluster: {e}"));
    let leader = cluster
        .wait_leader(DEADLINE)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let follower = (0..cluster.size())
        .find(|&i| i != leader)
        .expect("a follower");
    let mut acknowledged = Vec::new();
    put_round(&cluster, 0, &mut acknowledged).await;

    // 2. The forged traffic, as the leader of the current term.
    let status = cluster.status(follower).await.expect("follower status");
    let header = status.header.expect("status header");
    let forger = Forger {
        cluster_id: header.cluster_id,
        leader_id: status.leader,
        follower_id: header.member_id,
        term: header.raft_term,
    };
    let last_index = status.raft_index;
    println!(
        "forging as {:x} (term {}) to follower {} ({:x}) at index {last_index}",
        forger.leader_id,
        forger.term,
        cluster.name(follower),
        forger.follower_id
    );
    let mut peer = peer_client(&cluster, follower).await;

    let garbage = stream(&mut peer, vec![forger.batch(vec![vec![0xff; 7]])]).await;
    assert_eq!(
        garbage.as_ref().map_err(|s| s.code()),
        Err(Code::InvalidArgument),
        "{garbage:?}"
    );

    let far = last_index + 1_000_000;
    let not_a_descriptor = forger.snapshot(far, b"\xff\xffno descriptor".to_vec());
    let absent_image = forger.snapshot(
        far,
        SnapshotDescriptor {
            index: far,
            size: 4096,
            sha256: vec![0; 32],
        }
        .encode_to_vec(),
    );
    let mut heartbeat = forger.message(MessageType::MsgHeartbeat);
    heartbeat.commit = far;
    let mut gap = forger.message(MessageType::MsgAppend);
    gap.index = last_index;
    gap.log_term = forger.term;
    gap.set_entries(
        [last_index + 1, last_index + 7]
            .into_iter()
            .map(|index| Entry {
                index,
                term: forger.term,
                ..Default::default()
            })
            .collect::<Vec<_>>()
            .into(),
    );
    let mut beyond = forger.message(MessageType::MsgAppend);
    beyond.index = far;
    beyond.log_term = forger.term;
    beyond.commit = far + 1;
    beyond.set_entries(
        vec![Entry {
            index: far + 1,
            term: forger.term,
            ..Default::default()
        }]
        .into(),
    );
    let hup = forger.message(MessageType::MsgHup);
    let forged = [
        &not_a_descriptor,
        &absent_image,
        &heartbeat,
        &gap,
        &beyond,
        &hup,
    ];
    stream(
        &mut peer,
        vec![forger.batch(forged.iter().map(|m| encode(m)).collect())],
    )
    .await
    .expect("the stream of forged messages ends normally");

    let wrong_index = forger.snapshot(
        far,
        SnapshotDescriptor {
            index: far - 1,
            size: 4,
            sha256: vec![0; 32],
        }
        .encode_to_vec(),
    );
    let refused_call = snapshot_call(
        &mut peer,
        forger.cluster_id,
        vec![SnapshotChunk {
            raft_message: encode(&wrong_index),
            data: b"data".to_vec(),
            offset: 0,
            last: true,
        }],
    )
    .await;
    assert_eq!(
        refused_call.as_ref().map_err(|s| s.code()),
        Err(Code::InvalidArgument),
        "{refused_call:?}"
    );
    let bad_hash = forger.snapshot(
        far,
        SnapshotDescriptor {
            index: far,
            size: 4,
            sha256: vec![0; 32],
        }
        .encode_to_vec(),
    );
    let corrupt = snapshot_call(
        &mut peer,
        forger.cluster_id,
        vec![SnapshotChunk {
            raft_message: encode(&bad_hash),
            data: b"data".to_vec(),
            offset: 0,
            last: true,
        }],
    )
    .await;
    assert_eq!(
        corrupt.as_ref().map_err(|s| s.code()),
        Err(Code::DataLoss),
        "{corrupt:?}"
    );

    // 3. Everyone still serves; the follower counted what it refused.
    for i in 0..cluster.size() {
        assert!(
            cluster.is_running(i),
            "{} exited after the forged traffic:\n{}",
            cluster.name(i),
            cluster.log_tail(i, 30)
        );
    }
    put_round(&cluster, 1, &mut acknowledged).await;
    let text = metrics(&cluster, follower).await;
    for (reason, at_least) in [
        ("undecodable", 1),
        ("snapshot_on_stream", 2),
        ("commit_beyond_log", 1),
        ("malformed_append", 1),
        ("local_only", 1),
        ("bad_snapshot", 1),
    ] {
        let counted = refused(&text, reason);
        assert!(
            counted >= at_least,
            "{reason}: {counted} refusals counted, expected at least {at_least}"
        );
    }
    for i in 0..cluster.size() {
        assert_all_present(&cluster, i, &acknowledged).await;
    }

    // 4. Every member restarts from what it persisted, with nothing lost.
    for i in 0..cluster.size() {
        cluster
            .kill9(i)
            .unwrap_or_else(|e| panic!("kill {}: {e}", cluster.name(i)));
        cluster
            .restart(i)
            .await
            .unwrap_or_else(|e| panic!("restart {}: {e}", cluster.name(i)));
        cluster
            .wait_leader(DEADLINE)
            .await
            .unwrap_or_else(|e| panic!("no leader after restarting {}: {e}", cluster.name(i)));
        put_round(&cluster, 2 + i, &mut acknowledged).await;
        assert_all_present(&cluster, i, &acknowledged).await;
    }
    for i in 0..cluster.size() {
        assert_all_present(&cluster, i, &acknowledged).await;
    }
    println!(
        "{} acknowledged keys read back through every member after the forged traffic and three restarts",
        acknowledged.len()
    );
}
