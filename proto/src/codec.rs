//! The gRPC codec of every generated service and client: prost encoding,
//! with decode failures reported the way etcd's grpc-go server reports them.
//!
//! 1. A message above the server's receive limit is refused with
//!    `ResourceExhausted "grpc: received message larger than max (N vs. L)"`.
//!    The limit is process-wide ([`set_server_receive_limit`]): a server sets
//!    it once at start; clients leave it unlimited, since responses are not
//!    limited in etcd either (grpc-go's max send is MaxInt32).
//! 2. Bytes that do not parse are refused with
//!    `Internal "grpc: error unmarshalling request: <reason>"`, with Go's
//!    wording for a truncated message ("unexpected EOF").

use std::marker::PhantomData;
use std::sync::atomic::{AtomicUsize, Ordering};

use prost::Message;
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder};
use tonic_prost::{ProstCodec, ProstEncoder};

static RECEIVE_LIMIT: AtomicUsize = AtomicUsize::new(usize::MAX);

/// Sets the largest message this process accepts (servers only).
pub fn set_server_receive_limit(bytes: usize) {
    RECEIVE_LIMIT.store(bytes, Ordering::Relaxed);
}

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
    U: Message + Default + Send + 'static,
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

/// Decoder half of [`EtcdCodec`].
#[derive(Debug)]
pub struct EtcdDecoder<U>(PhantomData<U>);

impl<U: Message + Default> Decoder for EtcdDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        use bytes::Buf;
        let len = buf.remaining();
        let limit = RECEIVE_LIMIT.load(Ordering::Relaxed);
        if len > limit {
            return Err(Status::resource_exhausted(format!(
                "grpc: received message larger than max ({len} vs. {limit})"
            )));
        }
        U::decode(buf).map(Some).map_err(|e| {
            Status::internal(format!(
                "grpc: error unmarshalling request: {}",
                go_reason(&e)
            ))
        })
    }
}

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
