//! What travels between members, shared by the sender (this module's
//! [`TransportActor`](super::TransportActor)) and the receiver (the node's
//! peer gRPC server):
//! 1. A raft message is a raft-rs `eraftpb::Message` in rust-protobuf's
//!    encoding, carried as opaque bytes (raft-rs and tonic use different
//!    protobuf runtimes), many of them per `RaftBatch`.
//! 2. A `MsgSnapshot`'s snapshot data is a prost-encoded
//!    [`SnapshotDescriptor`]: the image it names travels beside raft, in
//!    `SnapshotChunk`s, with the cluster id in the [`CLUSTER_ID_HEADER`]
//!    metadata (chunks have no field for it).

use proto::Message as _;
use proto::internal::SnapshotDescriptor;
use protobuf::Message as _;
use raft::eraftpb::{Message, MessageType};

/// gRPC metadata key holding the sender's cluster id (hex) on `Snapshot`.
pub const CLUSTER_ID_HEADER: &str = "oxcd-cluster-id";

/// HTTP/2 keep-alive on peer connections, the same on both ends: each side
/// pings this often, and cuts a connection whose ping goes unanswered for
/// [`KEEPALIVE_TIMEOUT`], so a silent peer is noticed and reconnected.
pub const KEEPALIVE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);
/// See [`KEEPALIVE_INTERVAL`].
pub const KEEPALIVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The text etcd's rafthttp uses when a peer belongs to another cluster.
pub const CLUSTER_ID_MISMATCH: &str = "cluster ID mismatch";

/// What a member answers (`PermissionDenied`) to a removed member's stream
/// (etcd's peers answer it with HTTP 410); the removed member then stops.
pub const MEMBER_REMOVED: &str = "the member has been permanently removed from the cluster";

/// True for a peer's answer that this member was removed.
pub fn is_removed(status: &tonic::Status) -> bool {
    status.code() == tonic::Code::PermissionDenied && status.message() == MEMBER_REMOVED
}

/// Encodes one raft message for a `RaftBatch` or a `SnapshotChunk`.
pub fn encode_message(message: &Message) -> Result<Vec<u8>, protobuf::ProtobufError> {
    message.write_to_bytes()
}

/// Decodes one raft message received from a peer.
pub fn decode_message(bytes: &[u8]) -> Result<Message, protobuf::ProtobufError> {
    Message::parse_from_bytes(bytes)
}

/// Whether `message` carries a snapshot (sent through the `Snapshot` RPC,
/// never on the message stream).
pub fn is_snapshot(message: &Message) -> bool {
    message.get_msg_type() == MessageType::MsgSnapshot
}

/// The image descriptor a `MsgSnapshot` carries in its snapshot data.
pub fn snapshot_descriptor(
    message: &Message,
) -> Result<SnapshotDescriptor, proto::prost::DecodeError> {
    SnapshotDescriptor::decode(message.get_snapshot().get_data())
}

/// The value of [`CLUSTER_ID_HEADER`] for `cluster_id`.
pub fn cluster_id_header_value(cluster_id: u64) -> String {
    format!("{cluster_id:x}")
}

/// Reads a [`CLUSTER_ID_HEADER`] value.
pub fn parse_cluster_id_header(value: &str) -> Option<u64> {
    u64::from_str_radix(value, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip() {
        let mut m = Message::default();
        m.set_msg_type(MessageType::MsgAppend);
        m.to = 2;
        m.from = 1;
        m.term = 5;
        m.index = 9;
        m.mut_entries().push(raft::eraftpb::Entry {
            index: 10,
            data: b"payload".to_vec().into(),
            ..Default::default()
        });
        let back = decode_message(&encode_message(&m).unwrap()).unwrap();
        assert_eq!(back, m);
        assert!(!is_snapshot(&back));
        assert!(decode_message(&[0xff, 0xff, 0xff]).is_err());
    }

    #[test]
    fn snapshot_messages_carry_a_descriptor() {
        let d = SnapshotDescriptor {
            index: 42,
            size: 4096,
            sha256: vec![7; 32],
        };
        let mut m = Message::default();
        m.set_msg_type(MessageType::MsgSnapshot);
        m.mut_snapshot().set_data(d.encode_to_vec().into());
        m.mut_snapshot().mut_metadata().index = 42;
        assert!(is_snapshot(&m));
        assert_eq!(snapshot_descriptor(&m).unwrap(), d);
        let header = cluster_id_header_value(0xdead_beef);
        assert_eq!(parse_cluster_id_header(&header), Some(0xdead_beef));
        assert_eq!(parse_cluster_id_header("not hex"), None);
    }
}
