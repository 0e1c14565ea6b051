//! etcd 3.4's JSON gateway (grpc-gateway 1.x) on the client port: `POST
//! /v3/kv/range` with `{"key":"Zm9v"}` is the gRPC call `KV/Range`.
//!
//! One generic gateway, no code per RPC: the message shapes come from the
//! compiled descriptors ([`proto::FILE_DESCRIPTOR_SET`]), and every call goes
//! through the same router gRPC clients reach, so the learner gate, the auth
//! token and every other layer apply exactly as to a gRPC client.
//!
//! 1. [`serve_on`] wraps the client port's router: a path under `/v3/` or
//!    `/v3beta/` is the gateway's, anything else goes to the router as is.
//! 2. `OPTIONS` is answered `200` (etcd's CORS preflight); a path that is
//!    not clean is redirected as Go's mux redirects it; the path picks a
//!    route ([`paths`]); an unknown one is answered `404 Not Found`, a method
//!    other than `POST` `405 Method Not Allowed`, with etcd's texts.
//! 3. The body (bounded: [`Limits`]) is read as Go's JSON decoder reads it
//!    ([`go_json`]) and turned into the method's request message with
//!    jsonpb's rules ([`jsonpb`]); a bad body is `400` with the Go error text
//!    as `InvalidArgument`.
//! 4. The message, encoded and framed, is sent to the router as a gRPC
//!    request ([`grpc_call`]), with the `Authorization` header as the
//!    `token` metadata.
//! 5. A unary answer is written as jsonpb writes it (proto field names,
//!    64-bit integers as strings, bytes base64, enums by name, defaults left
//!    out); a gRPC error as grpc-gateway's `{"error","message","code"}` with
//!    the HTTP status it maps the code to ([`http_status`]).
//! 6. Streams ([`stream`]): Watch and LeaseKeepAlive read a body of JSON
//!    objects one after another, Snapshot and Observe one request; each
//!    response message is a line `{"result":...}`, a failure mid-stream a
//!    last `{"error":{...}}` object.

mod body;
mod go_json;
mod grpc_call;
mod jsonpb;
mod paths;
mod stream;

use std::convert::Infallible;
use std::sync::LazyLock;
use std::task::{Context, Poll};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Method, Request, Response, StatusCode, header};
use bytes::Bytes;
use prost::Message as _;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor};
use tonic::{Code, Status};

use paths::Shape;

/// The descriptors of every etcd message, decoded once. (They are compiled
/// into the binary; `paths`' tests check that every route resolves, so an
/// empty pool, which would answer every route `Unimplemented`, cannot ship.)
fn pool() -> &'static DescriptorPool {
    static POOL: LazyLock<DescriptorPool> = LazyLock::new(|| {
        DescriptorPool::decode(proto::FILE_DESCRIPTOR_SET).unwrap_or_else(|_| DescriptorPool::new())
    });
    &POOL
}

/// How much the gateway reads.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The gRPC message limit (`--max-request-bytes` + 512 KiB), quoted in
    /// the refusal of a body too large to read.
    pub max_grpc_message: usize,
    /// The largest JSON text read for one request message: base64 makes a
    /// value 4/3 larger, and JSON adds names and quotes, so four times the
    /// gRPC limit leaves room for any request the gRPC side would accept.
    pub max_json: usize,
}

impl Limits {
    fn new(max_grpc_message: usize) -> Limits {
        Limits {
            max_grpc_message,
            max_json: max_grpc_message.saturating_mul(4),
        }
    }
}

/// Serves the JSON gateway in front of the client port's router.
pub fn serve_on(router: Router, max_grpc_message: usize) -> Router {
    let gateway = Gateway {
        router,
        limits: Limits::new(max_grpc_message),
    };
    Router::new().fallback_service(gateway)
}

/// The gateway service: `/v3/*` handled here, the rest passed on.
#[derive(Clone)]
struct Gateway {
    router: Router,
    limits: Limits,
}

impl tower_service::Service<Request<Body>> for Gateway {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = futures::future::Either<
        <Router as tower_service::Service<Request<Body>>>::Future,
        futures::future::BoxFuture<'static, Result<Response<Body>, Infallible>>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        tower_service::Service::<Request<Body>>::poll_ready(&mut self.router, cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        if !paths::is_gateway(request.uri().path()) {
            return futures::future::Either::Left(self.router.call(request));
        }
        let gateway = self.clone();
        futures::future::Either::Right(Box::pin(async move {
            let mut response = gateway.handle(request).await;
            add_cors(response.headers_mut());
            Ok(response)
        }))
    }
}

impl Gateway {
    async fn handle(self, request: Request<Body>) -> Response<Body> {
        // etcd answers a CORS preflight before routing.
        if request.method() == Method::OPTIONS {
            return Response::new(Body::empty());
        }
        let path = match paths::route_path(request.uri().path()) {
            paths::Routed::Path(path) => path,
            paths::Routed::Redirect(location) => return redirect(&request, location),
        };
        let Some(route) = paths::find(&path) else {
            return plain_error(StatusCode::NOT_FOUND);
        };
        if request.method() != Method::POST {
            return plain_error(StatusCode::METHOD_NOT_ALLOWED);
        }
        let Some(method) = pool()
            .get_service_by_name(route.service)
            .and_then(|s| s.methods().find(|m| m.name() == route.method))
        else {
            return error_response(&Status::unimplemented(route.method));
        };
        let call = Call {
            router: self.router,
            grpc_path: format!("/{}/{}", route.service, route.method),
            metadata: grpc_call::metadata(request.headers()),
            input: method.input(),
            output: method.output(),
            limits: self.limits,
        };
        let body = request.into_body();
        match route.shape {
            Shape::Unary => call.unary(body).await,
            Shape::ServerStream => call.server_stream(body).await,
            Shape::BidiStream => call.bidi_stream(body).await,
        }
    }
}

/// One gateway request on its way to the router.
struct Call {
    router: Router,
    grpc_path: String,
    metadata: axum::http::HeaderMap,
    input: MessageDescriptor,
    output: MessageDescriptor,
    limits: Limits,
}

impl Call {
    /// Reads the body's first JSON value as one request message, as the
    /// generated handlers do (`marshaler.NewDecoder(req.Body).Decode(&protoReq)`,
    /// `io.EOF` meaning an empty request); failures are `InvalidArgument`.
    async fn read_request(&self, body: Body) -> Result<Bytes, Status> {
        let message = match body::JsonStream::new(body, self.limits).next().await {
            body::Next::End => DynamicMessage::new(self.input.clone()),
            body::Next::Value(json) => {
                jsonpb::to_message(&self.input, &json).map_err(Status::invalid_argument)?
            }
            body::Next::Bad(message) => return Err(Status::invalid_argument(message)),
            body::Next::TooLarge(read) => {
                return Err(too_large(read, self.limits.max_grpc_message));
            }
        };
        Ok(grpc_call::frame(&message.encode_to_vec()))
    }

    /// Sends a gRPC request to the router.
    async fn send(&self, body: Body) -> grpc_call::Answer {
        let request = grpc_call::request(&self.grpc_path, self.metadata.clone(), body);
        let mut router = self.router.clone();
        let response = match tower_service::Service::call(&mut router, request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        grpc_call::Answer::new(response)
    }

    async fn unary(self, body: Body) -> Response<Body> {
        let frame = match self.read_request(body).await {
            Ok(frame) => frame,
            Err(status) => return error_response(&status),
        };
        let mut answer = self.send(Body::from(frame)).await;
        let message = match answer.next().await {
            Ok(Some(message)) => message,
            Ok(None) => Bytes::new(),
            Err(status) => return error_response(&status),
        };
        match self.to_json(&message) {
            Ok(text) => json_response(StatusCode::OK, text),
            Err(status) => error_response(&status),
        }
    }

    /// A response message as jsonpb text.
    fn to_json(&self, message: &[u8]) -> Result<String, Status> {
        let message = DynamicMessage::decode(self.output.clone(), message)
            .map_err(|e| Status::internal(e.to_string()))?;
        jsonpb::write_message(&message).map_err(|e| Status::internal(e.to_string()))
    }
}

/// etcd's refusal of a message above the gRPC limit. The size quoted is
/// what the gateway read before it stopped (etcd would quote the encoded
/// message's size, but the JSON text is too large to decode).
fn too_large(read: usize, max: usize) -> Status {
    Status::resource_exhausted(format!(
        "grpc: received message larger than max ({read} vs. {max})"
    ))
}

/// grpc-gateway's `HTTPStatusFromCode`.
pub fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::Cancelled => StatusCode::REQUEST_TIMEOUT,
        Code::InvalidArgument | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::FailedPrecondition => StatusCode::PRECONDITION_FAILED,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// grpc-gateway's `DefaultHTTPError`: `{"error":m,"message":m,"code":n}`
/// (jsonpb leaves out an empty message).
fn error_response(status: &Status) -> Response<Body> {
    let mut text = String::from("{");
    if !status.message().is_empty() {
        text.push_str("\"error\":");
        jsonpb::write_string(&mut text, status.message());
        text.push_str(",\"message\":");
        jsonpb::write_string(&mut text, status.message());
        text.push(',');
    }
    text.push_str(&format!("\"code\":{}}}", status.code() as i32));
    let mut response = json_response(http_status(status.code()), text);
    response.headers_mut().remove("grpc-metadata-content-type");
    response
}

fn json_response(status: StatusCode, text: String) -> Response<Body> {
    let mut response = Response::new(Body::from(text));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(
        "grpc-metadata-content-type",
        HeaderValue::from_static("application/grpc"),
    );
    response
}

/// Go's `http.Error` with the status text: how grpc-gateway answers an
/// unknown path or a wrong method.
fn plain_error(status: StatusCode) -> Response<Body> {
    let text = format!("{}\n", status.canonical_reason().unwrap_or_default());
    let mut response = Response::new(Body::from(text));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// Go's `http.Redirect` with `301`, as Go's mux answers a path that is not
/// clean (`/v3//kv/range`) or a subtree without its slash (`/v3`): a body
/// only for `GET` and `HEAD`.
fn redirect(request: &Request<Body>, mut location: String) -> Response<Body> {
    if let Some(query) = request.uri().query() {
        location.push('?');
        location.push_str(query);
    }
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::MOVED_PERMANENTLY;
    if matches!(*request.method(), Method::GET | Method::HEAD) {
        let escaped = location
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&#34;")
            .replace('\'', "&#39;");
        *response.body_mut() =
            Body::from(format!("<a href=\"{escaped}\">Moved Permanently</a>.\n\n"));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
    }
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// etcd's CORS headers (its default `--cors` allows every origin).
fn add_cors(headers: &mut axum::http::HeaderMap) {
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("accept, content-type, authorization"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("POST, GET, OPTIONS, PUT, DELETE"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn body_text(response: Response<Body>) -> String {
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    #[tokio::test]
    async fn errors_are_written_as_grpc_gateway_writes_them() {
        let response = error_response(&Status::invalid_argument("etcdserver: key is not provided"));
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            body_text(response).await,
            r#"{"error":"etcdserver: key is not provided","message":"etcdserver: key is not provided","code":3}"#
        );
        let response = error_response(&Status::unimplemented(""));
        assert_eq!(response.status(), StatusCode::NOT_IMPLEMENTED);
        assert_eq!(body_text(response).await, r#"{"code":12}"#);
        assert_eq!(
            body_text(plain_error(StatusCode::NOT_FOUND)).await,
            "Not Found\n"
        );
        assert_eq!(
            body_text(plain_error(StatusCode::METHOD_NOT_ALLOWED)).await,
            "Method Not Allowed\n"
        );
    }

    #[test]
    fn grpc_codes_map_to_grpc_gateway_statuses() {
        assert_eq!(
            http_status(Code::ResourceExhausted),
            StatusCode::TOO_MANY_REQUESTS
        );
        assert_eq!(
            http_status(Code::FailedPrecondition),
            StatusCode::PRECONDITION_FAILED
        );
        assert_eq!(
            http_status(Code::Unknown),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        assert_eq!(http_status(Code::Cancelled), StatusCode::REQUEST_TIMEOUT);
    }
}
