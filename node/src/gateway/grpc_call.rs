//! The gateway's in-process gRPC calls: a gRPC request built by hand and
//! handed to the client port's own router, and its framed answer read back.
//!
//! 1. [`request`] makes an HTTP/2-style gRPC request (`POST
//!    /etcdserverpb.KV/Range`, `application/grpc`, `te: trailers`) carrying
//!    the HTTP request's metadata ([`metadata`]: `Authorization` becomes the
//!    `token` etcd's auth reads, `Grpc-Metadata-X` becomes `x`, as
//!    grpc-gateway forwards them).
//! 2. [`frame`] puts one encoded message in gRPC's 5-byte frame.
//! 3. [`Answer`] reads the response: a trailers-only status (how tonic answers
//!    most errors), or data frames, each a message, then the trailers'
//!    `grpc-status`.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, Version};
use bytes::{Buf, Bytes, BytesMut};
use http_body_util::BodyExt;
use tonic::Status;

/// The gRPC request for `grpc_path` (`/service/Method`) with `body`.
pub fn request(grpc_path: &str, metadata: HeaderMap, body: Body) -> Request<Body> {
    let mut request = Request::new(body);
    *request.method_mut() = Method::POST;
    *request.version_mut() = Version::HTTP_2;
    if let Ok(uri) = grpc_path.parse() {
        *request.uri_mut() = uri;
    }
    let headers = request.headers_mut();
    headers.extend(metadata);
    headers.insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    headers.insert(axum::http::header::TE, HeaderValue::from_static("trailers"));
    request
}

/// The gRPC metadata grpc-gateway 1.x derives from an HTTP request's
/// headers that etcd reads: the auth token, and `Grpc-Metadata-*` headers.
pub fn metadata(headers: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    for (name, value) in headers {
        if let Some(key) = name.as_str().strip_prefix("grpc-metadata-")
            && let Ok(key) = HeaderName::from_bytes(key.as_bytes())
        {
            out.append(key, value.clone());
        }
    }
    // etcd reads `token` first, then `authorization` (auth.AuthInfoFromCtx);
    // grpc-gateway passes `Authorization` on as `authorization`.
    if !out.contains_key("token")
        && let Some(token) = headers.get(axum::http::header::AUTHORIZATION)
    {
        out.insert(HeaderName::from_static("token"), token.clone());
    }
    out
}

/// One message in a gRPC frame (uncompressed).
pub fn frame(message: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(5 + message.len());
    out.extend_from_slice(&[0]);
    out.extend_from_slice(&(message.len() as u32).to_be_bytes());
    out.extend_from_slice(message);
    out.freeze()
}

/// A gRPC response read message by message.
pub struct Answer {
    body: Body,
    buf: BytesMut,
    /// The final status, once known (from trailers-only headers or the
    /// trailers).
    status: Option<Status>,
    ended: bool,
}

impl Answer {
    /// Starts reading a response of the router.
    pub fn new(response: Response<Body>) -> Answer {
        let (parts, body) = response.into_parts();
        let status = Status::from_header_map(&parts.headers);
        Answer {
            body,
            buf: BytesMut::new(),
            ended: status.is_some(),
            status,
        }
    }

    /// The next message, `None` at a successful end, or the call's error.
    pub async fn next(&mut self) -> Result<Option<Bytes>, Status> {
        loop {
            if self.buf.len() >= 5 {
                if self.buf[0] != 0 {
                    return Err(Status::internal("compressed gRPC message"));
                }
                let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]])
                    as usize;
                if self.buf.len() >= 5 + len {
                    self.buf.advance(5);
                    return Ok(Some(self.buf.split_to(len).freeze()));
                }
            }
            if self.ended {
                return match self.status.take() {
                    Some(status) if status.code() == tonic::Code::Ok => Ok(None),
                    Some(status) => Err(status),
                    None => Err(Status::internal("missing grpc-status")),
                };
            }
            match self.body.frame().await {
                None => self.ended = true,
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => self.buf.extend_from_slice(&data),
                    Err(frame) => {
                        if let Ok(trailers) = frame.into_trailers() {
                            self.status = Status::from_header_map(&trailers);
                        }
                        self.ended = true;
                    }
                },
                Some(Err(e)) => return Err(Status::unknown(e.to_string())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_carries_the_token() {
        let mut headers = HeaderMap::new();
        headers.insert("authorization", HeaderValue::from_static("abc"));
        headers.insert("grpc-metadata-hello", HeaderValue::from_static("world"));
        headers.insert("accept", HeaderValue::from_static("*/*"));
        let md = metadata(&headers);
        assert_eq!(md.get("token").map(|v| v.as_bytes()), Some(&b"abc"[..]));
        assert_eq!(md.get("hello").map(|v| v.as_bytes()), Some(&b"world"[..]));
        assert!(md.get("accept").is_none());
    }

    #[tokio::test]
    async fn answers_read_frames_then_status() {
        let mut body = frame(b"one").to_vec();
        body.extend_from_slice(&frame(b""));
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from_static("0"));
        let stream = futures::stream::iter(vec![
            Ok::<_, std::convert::Infallible>(http_body::Frame::data(Bytes::from(body))),
            Ok(http_body::Frame::trailers(trailers)),
        ]);
        let response = Response::new(Body::new(http_body_util::StreamBody::new(stream)));
        let mut answer = Answer::new(response);
        assert_eq!(answer.next().await.unwrap().as_deref(), Some(&b"one"[..]));
        assert_eq!(answer.next().await.unwrap().as_deref(), Some(&b""[..]));
        assert!(answer.next().await.unwrap().is_none());

        let mut headers = Response::new(Body::empty());
        headers
            .headers_mut()
            .insert("grpc-status", HeaderValue::from_static("3"));
        headers.headers_mut().insert(
            "grpc-message",
            HeaderValue::from_static("etcdserver:%20key"),
        );
        let err = Answer::new(headers).next().await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert_eq!(err.message(), "etcdserver: key");
    }
}
