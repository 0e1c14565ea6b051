//! The gateway's streams, as grpc-gateway 1.x drives them.
//!
//! Requests:
//! 1. Snapshot and Observe (server streams) read the body as one request,
//!    like a unary call (a bad body is `400`).
//! 2. Watch and LeaseKeepAlive read the body as JSON values one after
//!    another ([`JsonStream`], each bounded by `Limits::max_json`). The
//!    first one is read before answering: a bad one is answered `500` with
//!    code 2 (grpc-gateway returns the bare decode error, which is
//!    `Unknown`); an empty body half-closes the stream at once. The rest
//!    are read by a task that feeds the gRPC stream through a bounded
//!    channel and half-closes it at the end of the body or at the first bad
//!    value (grpc-gateway's send loop stops there too).
//!
//! Responses ([`Call::respond_stream`]):
//! 3. Nothing is answered until the stream yields its first message, its
//!    end or its error (Go writes the status line with the first chunk), so
//!    an error before any message sets the HTTP status.
//! 4. Each message is a line `{"result":<message>}`; an error is a last
//!    `{"error":{"grpc_code":..,"http_code":..,"message":..,"http_status":..}}`
//!    with no newline after it, as `handleForwardResponseStreamError` writes.
//! 5. When the HTTP client goes away, the response body is dropped, which
//!    drops the gRPC stream (the server sees a cancel) and stops the task
//!    reading the request body.

use axum::body::Body;
use axum::http::{Response, StatusCode};
use bytes::Bytes;
use prost::Message as _;
use tokio::sync::mpsc;
use tonic::Status;

use super::body::{JsonStream, Next};
use super::go_json::Json;
use super::{Call, error_response, grpc_call, http_status, json_response, jsonpb, too_large};

/// Requests queued toward the gRPC stream before the body reader waits.
const REQUEST_QUEUE: usize = 16;

impl Call {
    /// Snapshot, Observe: one request from the body, a stream back.
    pub(super) async fn server_stream(self, body: Body) -> Response<Body> {
        let frame = match self.read_request(body).await {
            Ok(frame) => frame,
            Err(status) => return error_response(&status),
        };
        let answer = self.send(Body::from(frame)).await;
        self.respond_stream(answer, None).await
    }

    /// Watch, LeaseKeepAlive: a stream of requests from the body, a stream
    /// back.
    pub(super) async fn bidi_stream(self, body: Body) -> Response<Body> {
        let mut requests = JsonStream::new(body, self.limits);
        let (tx, rx) = mpsc::channel::<Result<Bytes, std::convert::Infallible>>(REQUEST_QUEUE);
        let mut pump = None;
        match requests.next().await {
            Next::Value(json) => {
                let frame = match self.encode(&json) {
                    Ok(frame) => frame,
                    Err(status) => return error_response(&status),
                };
                // The queue is empty: the first request always fits.
                let _ = tx.try_send(Ok(frame));
                let input = self.input.clone();
                pump = Some(tokio::spawn(forward_requests(requests, input, tx)));
            }
            // An empty body half-closes the stream at once.
            Next::End => drop(tx),
            // grpc-gateway returns the decoder's error bare: `Unknown`.
            Next::Bad(message) => return error_response(&Status::unknown(message)),
            Next::TooLarge(read) => {
                return error_response(&too_large(read, self.limits.max_grpc_message));
            }
        }
        let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
        let answer = self.send(body).await;
        self.respond_stream(answer, pump.map(AbortOnDrop)).await
    }

    /// One stream request as a gRPC frame; a mismatch is `Unknown`, as
    /// grpc-gateway returns jsonpb's error bare for a stream.
    fn encode(&self, json: &Json) -> Result<Bytes, Status> {
        let message = jsonpb::to_message(&self.input, json).map_err(Status::unknown)?;
        Ok(grpc_call::frame(&message.encode_to_vec()))
    }

    /// Streams the answer back as `{"result":...}` lines.
    async fn respond_stream(
        self,
        mut answer: grpc_call::Answer,
        pump: Option<AbortOnDrop>,
    ) -> Response<Body> {
        let first = answer.next().await;
        let (status, first_chunk, more) = match first {
            Ok(Some(message)) => (StatusCode::OK, self.result_chunk(&message), true),
            Ok(None) => (StatusCode::OK, Bytes::new(), false),
            Err(status) => (http_status(status.code()), error_chunk(&status), false),
        };
        let state = StreamState {
            call: self,
            answer,
            more,
            _pump: pump,
        };
        let rest = futures::stream::unfold(state, |mut state| async move {
            if !state.more {
                return None;
            }
            let chunk = match state.answer.next().await {
                Ok(Some(message)) => state.call.result_chunk(&message),
                Ok(None) => return None,
                Err(status) => {
                    state.more = false;
                    error_chunk(&status)
                }
            };
            Some((Ok::<_, std::convert::Infallible>(chunk), state))
        });
        let chunks = futures::stream::once(async move { Ok(first_chunk) }).chain(rest);
        let mut response = json_response(status, String::new());
        *response.body_mut() = Body::from_stream(futures::StreamExt::filter(chunks, |c| {
            std::future::ready(!matches!(c, Ok(b) if b.is_empty()))
        }));
        if !more {
            // A stream that ends (or fails) before its first message has
            // sent no headers for grpc-gateway to forward.
            response.headers_mut().remove("grpc-metadata-content-type");
        }
        response
    }

    /// `{"result":<message>}` and the newline delimiter.
    fn result_chunk(&self, message: &[u8]) -> Bytes {
        match self.to_json(message) {
            Ok(text) => Bytes::from(format!("{{\"result\":{text}}}\n")),
            Err(status) => error_chunk(&status),
        }
    }
}

use futures::StreamExt as _;

/// What the response stream holds between chunks.
struct StreamState {
    call: Call,
    answer: grpc_call::Answer,
    more: bool,
    _pump: Option<AbortOnDrop>,
}

/// Stops the body-reading task when the response goes away.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Feeds the rest of the body's requests to the gRPC stream; returning
/// drops the sender, which half-closes the stream.
async fn forward_requests(
    mut requests: JsonStream,
    input: prost_reflect::MessageDescriptor,
    tx: mpsc::Sender<Result<Bytes, std::convert::Infallible>>,
) {
    while let Next::Value(json) = requests.next().await {
        let Ok(message) = jsonpb::to_message(&input, &json) else {
            return;
        };
        if tx
            .send(Ok(grpc_call::frame(&message.encode_to_vec())))
            .await
            .is_err()
        {
            return;
        }
    }
}

/// grpc-gateway's stream error object (`internal.StreamError`, jsonpb:
/// zero fields left out).
fn error_chunk(status: &Status) -> Bytes {
    let code = status.code();
    let http = http_status(code);
    let mut text = String::from("{\"error\":{");
    let mut fields = Vec::new();
    if code as i32 != 0 {
        fields.push(format!("\"grpc_code\":{}", code as i32));
    }
    fields.push(format!("\"http_code\":{}", http.as_u16()));
    if !status.message().is_empty() {
        let mut message = String::from("\"message\":");
        jsonpb::write_string(&mut message, status.message());
        fields.push(message);
    }
    let mut http_text = String::from("\"http_status\":");
    jsonpb::write_string(&mut http_text, http.canonical_reason().unwrap_or_default());
    fields.push(http_text);
    text.push_str(&fields.join(","));
    text.push_str("}}");
    Bytes::from(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_errors_are_written_as_grpc_gateway_writes_them() {
        let chunk = error_chunk(&Status::failed_precondition("etcdserver: x"));
        assert_eq!(
            &chunk[..],
            br#"{"error":{"grpc_code":9,"http_code":412,"message":"etcdserver: x","http_status":"Precondition Failed"}}"#
        );
    }
}
