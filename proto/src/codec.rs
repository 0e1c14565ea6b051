//! The gRPC codec of every generated service and client: prost encoding,
//! with decode failures reported the way etcd's grpc-go server reports them.
//!
//! 1. A message above the server's receive limit is refused with
//!    `ResourceExhausted "grpc: received message larger than max (N vs. L)"`.
//!    The limit is process-wide ([`set_server_receive_limit`]): a server sets
//!    it once at start; clients leave it unlimited, since responses are not
//!    limited in etcd either (grpc-go's max send is MaxInt32).
//! 2. The message is decoded by prost. Only when that fails, the bytes are
//!    re-scanned the way etcd 3.4's gogoproto-generated `Unmarshal` reads
//!    them ([`gogo`]), to find etcd's reason (`proto: wrong wireType = 7 for
//!    field Key`, `unexpected EOF`, ...).
//! 3. The request is refused with
//!    `Internal "grpc: error unmarshalling request: <reason>"`, or, for the
//!    requests etcd only receives on a stream ([`STREAM_ONLY_REQUESTS`]),
//!    `Internal "grpc: failed to unmarshal the received message <reason>"`.
//!    Where gogo has no reason to give (it accepts bytes prost rejects, e.g.
//!    a `string` that is not UTF-8, since gogo does not check UTF-8), the
//!    reason is prost's, with Go's wording for a truncated message
//!    ("unexpected EOF").

// The crate allows clippy for the generated code; this module is written by
// hand, so it is linted.
#![warn(clippy::all)]

use std::marker::PhantomData;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Buf;
use prost::{Message, Name};
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder};
use tonic_prost::{ProstCodec, ProstEncoder};

mod gogo;

static RECEIVE_LIMIT: AtomicUsize = AtomicUsize::new(usize::MAX);

/// Sets the largest message this process accepts (servers only).
pub fn set_server_receive_limit(bytes: usize) {
    RECEIVE_LIMIT.store(bytes, Ordering::Relaxed);
}

/// Requests etcd only ever receives on a stream, where grpc-go words a decode
/// failure differently: `processUnaryRPC` says "grpc: error unmarshalling
/// request: <reason>", a stream's `RecvMsg` "grpc: failed to unmarshal the
/// received message <reason>" (both observed on etcd 3.4.23).
/// `v3electionpb.LeaderRequest` arrives both ways (unary `Leader`, streaming
/// `Observe`); the codec cannot tell the method, so it gets the unary wording.
pub const STREAM_ONLY_REQUESTS: [&str; 3] = [
    "etcdserverpb.WatchRequest",
    "etcdserverpb.LeaseKeepAliveRequest",
    "etcdserverpb.SnapshotRequest",
];

/// The transport-level limit to configure on tonic services: far above the
/// codec's, so that the codec is the one that answers (with etcd's text).
pub const TRANSPORT_LIMIT: usize = 256 << 20;

/// Codec with etcd-compatible decode errors.
#[derive(Debug)]
pub struct EtcdCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for EtcdCodec<T, U> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<T, U> Codec for EtcdCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Name + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = EtcdDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<T, U>::default().encoder()
    }

    fn decoder(&mut self) -> Self::Decoder {
        EtcdDecoder(PhantomData)
    }
}

/// oxcd's own package (peer transport, replicated envelope).
const INTERNAL_PACKAGE: &str = "oxcdinternal";

/// Decoder half of [`EtcdCodec`].
#[derive(Debug)]
pub struct EtcdDecoder<U>(PhantomData<U>);

impl<U: Message + Name + Default> Decoder for EtcdDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        let len = buf.remaining();
        let limit = RECEIVE_LIMIT.load(Ordering::Relaxed);
        // The client limit is etcd's; peer traffic (raft appends, snapshot
        // chunks) has its own bounds, set by the transport.
        if len > limit && U::PACKAGE != INTERNAL_PACKAGE {
            return Err(Status::resource_exhausted(format!(
                "grpc: received message larger than max ({len} vs. {limit})"
            )));
        }
        // The frame is already contiguous in memory: this takes it without
        // copying, and keeps it for the re-scan should prost fail.
        let bytes = buf.copy_to_bytes(len);
        decode_message(&bytes).map(Some)
    }
}

/// Decodes one received message; when prost cannot, answers what etcd's
/// grpc-go server answers for the same bytes.
fn decode_message<U: Message + Name + Default>(bytes: &[u8]) -> Result<U, Status> {
    U::decode(bytes).map_err(|e| {
        let name = U::full_name();
        let reason = gogo::unmarshal_error(&name, bytes).unwrap_or_else(|| go_reason(&e));
        if STREAM_ONLY_REQUESTS.contains(&name.as_str()) {
            Status::internal(format!(
                "grpc: failed to unmarshal the received message {reason}"
            ))
        } else {
            Status::internal(format!("grpc: error unmarshalling request: {reason}"))
        }
    })
}

/// prost's reason, in Go's words where they differ.
fn go_reason(e: &prost::DecodeError) -> String {
    let text = e.to_string();
    let reason = text
        .strip_prefix("failed to decode Protobuf message: ")
        .unwrap_or(&text);
    // prost names the field ("PutRequest.lease: invalid varint"); grpc-go
    // reports the reader running dry as io.ErrUnexpectedEOF.
    if reason.ends_with("buffer underflow") || reason.ends_with("invalid varint") {
        "unexpected EOF".to_string()
    } else {
        reason.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::etcdserverpb::{
        AuthUserAddRequest, LeaseKeepAliveRequest, PutRequest, RangeRequest, SnapshotRequest,
        TxnRequest, WatchRequest,
    };
    use crate::v3electionpb::LeaderRequest;

    fn message_of<U: Message + Name + Default>(bytes: &[u8]) -> String {
        let Err(status) = decode_message::<U>(bytes) else {
            panic!("{} decoded {bytes:02x?}", U::full_name());
        };
        assert_eq!(status.code(), tonic::Code::Internal);
        status.message().to_string()
    }

    // Expected texts observed on etcd 3.4.23 (raw bytes sent to the named
    // method), unless a comment says otherwise.
    #[test]
    fn unary_requests_get_etcds_unmarshalling_text() {
        const UNARY: &str = "grpc: error unmarshalling request: ";
        let cases: [(&str, String, &str); 5] = [
            (
                "KV/Put, field 1 with wire type 7",
                message_of::<PutRequest>(&[0x0f, 0x01]),
                "proto: wrong wireType = 7 for field Key",
            ),
            (
                "KV/Put, field 1 truncated",
                message_of::<PutRequest>(&[0x0a, 0x05, b'a']),
                "unexpected EOF",
            ),
            (
                "KV/Range, field 1 with wire type 7",
                message_of::<RangeRequest>(&[0x0f, 0x01]),
                "proto: wrong wireType = 7 for field Key",
            ),
            (
                "KV/Txn, success[0].request_range.key with wire type 7",
                message_of::<TxnRequest>(&[0x12, 0x04, 0x0a, 0x02, 0x0f, 0x01]),
                "proto: wrong wireType = 7 for field Key",
            ),
            (
                "Election/Leader (unary), field 1 with wire type 7",
                message_of::<LeaderRequest>(&[0x0f]),
                "proto: wrong wireType = 7 for field Name",
            ),
        ];
        for (what, actual, reason) in cases {
            assert_eq!(actual, format!("{UNARY}{reason}"), "{what}");
        }
    }

    #[test]
    fn stream_requests_get_etcds_receive_text() {
        const STREAM: &str = "grpc: failed to unmarshal the received message ";
        let cases: [(&str, String, &str); 4] = [
            (
                "Watch/Watch, field 1 with wire type 7",
                message_of::<WatchRequest>(&[0x0f, 0x01]),
                "proto: wrong wireType = 7 for field CreateRequest",
            ),
            (
                "Watch/Watch, a packed filter cut short",
                message_of::<WatchRequest>(&[0x0a, 0x03, 0x2a, 0x01, 0x80]),
                "unexpected EOF",
            ),
            (
                "Lease/LeaseKeepAlive, ID with wire type 2",
                message_of::<LeaseKeepAliveRequest>(&[0x0a, 0x00]),
                "proto: wrong wireType = 2 for field ID",
            ),
            (
                "Maintenance/Snapshot, unknown field with wire type 7",
                message_of::<SnapshotRequest>(&[0x0f]),
                "proto: illegal wireType 7",
            ),
        ];
        for (what, actual, reason) in cases {
            assert_eq!(actual, format!("{STREAM}{reason}"), "{what}");
        }
    }

    #[test]
    fn bytes_gogo_accepts_keep_prosts_reason() {
        // etcd 3.4.23 accepts a user name that is not UTF-8 (gogo does not
        // check); prost does not, and its reason is all there is to give.
        assert_eq!(
            message_of::<AuthUserAddRequest>(&[0x0a, 0x02, 0xff, b'a']),
            "grpc: error unmarshalling request: AuthUserAddRequest.name: invalid string value: \
             data is not UTF-8 encoded"
        );
        // A key length that wraps etcd 3.4.23's index arithmetic crashes the
        // server (slice bounds out of range); oxcd gives prost's reason.
        let wraps = [0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f];
        assert_eq!(
            message_of::<PutRequest>(&wraps),
            "grpc: error unmarshalling request: unexpected EOF"
        );
    }

    #[test]
    fn valid_messages_decode() {
        let put = PutRequest {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
            ..Default::default()
        };
        let decoded: PutRequest = decode_message(&put.encode_to_vec()).expect("decodes");
        assert_eq!(decoded, put);
    }

    #[test]
    fn truncated_messages_read_as_unexpected_eof() {
        // Field 1 (bytes) claims 10 bytes but carries 2.
        let err = crate::etcdserverpb::PutRequest::decode(&[0x0a, 10, b'a', b'b'][..]).unwrap_err();
        assert_eq!(go_reason(&err), "unexpected EOF");
    }

    #[test]
    fn unterminated_varints_read_as_unexpected_eof() {
        // Field 3 (varint) whose last byte still has the continuation bit.
        let err = crate::etcdserverpb::PutRequest::decode(&[0x18, 0x80][..]).unwrap_err();
        assert_eq!(go_reason(&err), "unexpected EOF");
    }
}
