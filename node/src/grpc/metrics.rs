//! grpc-go-prometheus's server metrics, under its names and labels (what
//! etcd exports and dashboards read), counted by a tower layer on the
//! client port:
//! - `grpc_server_started_total{grpc_type,grpc_service,grpc_method}`;
//! - `grpc_server_handled_total{grpc_type,grpc_service,grpc_method,grpc_code}`;
//! - `grpc_server_handling_seconds{grpc_type,grpc_service,grpc_method}`,
//!   with `--metrics=extensive` only, as etcd enables it.
//!
//! Flow of one call:
//! 1. At start, every served method's series are resolved once (started,
//!    one handled counter per code, the histogram), as grpc-go-prometheus
//!    pre-registers them: all series exist at 0 before the first call.
//! 2. [`GrpcMetrics`] looks the request path up in that table (one hash
//!    look-up; paths that are not a served method pass untouched) and
//!    counts the start.
//! 3. The call ends with its code: a trailers-only answer (every error of a
//!    unary call) carries `grpc-status` in its headers and is counted at
//!    once; otherwise the body is wrapped and the code read from its
//!    trailers, at the end of the stream (for a streaming call, when the
//!    stream ends). A body dropped before its trailers (the client went
//!    away) counts as `Canceled`, as grpc-go's handler sees it.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::Body;
use axum::http::{HeaderMap, Request};
use axum::response::Response;
use prometheus::{Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts};

/// grpc-go's code names (`codes.Code.String()`), by code number.
const CODES: [&str; 17] = [
    "OK",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
];
const CANCELED: usize = 1;
const UNKNOWN: usize = 2;

/// The streaming methods of the services served on the client port, with
/// grpc-go-prometheus's type; every other method is `unary`.
const STREAMING: &[(&str, &str, &str)] = &[
    ("etcdserverpb.Watch", "Watch", "bidi_stream"),
    ("etcdserverpb.Lease", "LeaseKeepAlive", "bidi_stream"),
    ("etcdserverpb.Maintenance", "Snapshot", "server_stream"),
    ("v3electionpb.Election", "Observe", "server_stream"),
    ("grpc.health.v1.Health", "Watch", "server_stream"),
];

/// Every method served on the client port, by service (etcd's rpc.proto,
/// v3lock.proto, v3election.proto, and gRPC's health service).
const METHODS: &[(&str, &[&str])] = &[
    (
        "etcdserverpb.KV",
        &["Range", "Put", "DeleteRange", "Txn", "Compact"],
    ),
    ("etcdserverpb.Watch", &["Watch"]),
    (
        "etcdserverpb.Lease",
        &[
            "LeaseGrant",
            "LeaseRevoke",
            "LeaseKeepAlive",
            "LeaseTimeToLive",
            "LeaseLeases",
        ],
    ),
    (
        "etcdserverpb.Cluster",
        &[
            "MemberAdd",
            "MemberRemove",
            "MemberUpdate",
            "MemberList",
            "MemberPromote",
        ],
    ),
    (
        "etcdserverpb.Maintenance",
        &[
            "Alarm",
            "Status",
            "Defragment",
            "Hash",
            "HashKV",
            "Snapshot",
            "MoveLeader",
        ],
    ),
    (
        "etcdserverpb.Auth",
        &[
            "AuthEnable",
            "AuthDisable",
            "AuthStatus",
            "Authenticate",
            "UserAdd",
            "UserGet",
            "UserList",
            "UserDelete",
            "UserChangePassword",
            "UserGrantRole",
            "UserRevokeRole",
            "RoleAdd",
            "RoleGet",
            "RoleList",
            "RoleDelete",
            "RoleGrantPermission",
            "RoleRevokePermission",
        ],
    ),
    ("v3lockpb.Lock", &["Lock", "Unlock"]),
    (
        "v3electionpb.Election",
        &["Campaign", "Proclaim", "Leader", "Observe", "Resign"],
    ),
    ("grpc.health.v1.Health", &["Check", "Watch"]),
];

/// One method's resolved series.
struct MethodSeries {
    started: IntCounter,
    /// By code number ([`CODES`]).
    handled: [IntCounter; 17],
    seconds: Option<Histogram>,
}

/// The table of every served method's series, shared by the client
/// listeners (cheap to clone). It is the layer too.
#[derive(Clone)]
pub struct GrpcMetrics {
    /// By request path (`/etcdserverpb.KV/Range`).
    methods: Arc<HashMap<String, Arc<MethodSeries>>>,
}

impl GrpcMetrics {
    /// Registers the families in `registry` and resolves every method's
    /// series (step 1). `handling_time`: `--metrics=extensive`.
    pub fn new(registry: &prometheus::Registry, handling_time: bool) -> prometheus::Result<Self> {
        let labels = ["grpc_type", "grpc_service", "grpc_method"];
        let started = IntCounterVec::new(
            Opts::new(
                "grpc_server_started_total",
                "Total number of RPCs started on the server.",
            ),
            &labels,
        )?;
        let handled = IntCounterVec::new(
            Opts::new(
                "grpc_server_handled_total",
                "Total number of RPCs completed on the server, regardless of success or failure.",
            ),
            &["grpc_type", "grpc_service", "grpc_method", "grpc_code"],
        )?;
        registry.register(Box::new(started.clone()))?;
        registry.register(Box::new(handled.clone()))?;
        let seconds = if handling_time {
            // grpc-go-prometheus's default buckets (prometheus.DefBuckets).
            let vec = HistogramVec::new(
                HistogramOpts::new(
                    "grpc_server_handling_seconds",
                    "Histogram of response latency (seconds) of gRPC that had been application-level handled by the server.",
                ),
                &labels,
            )?;
            registry.register(Box::new(vec.clone()))?;
            Some(vec)
        } else {
            None
        };
        let mut methods = HashMap::new();
        for (service, names) in METHODS {
            for method in *names {
                let kind = STREAMING
                    .iter()
                    .find(|(s, m, _)| s == service && m == method)
                    .map_or("unary", |(_, _, kind)| kind);
                let values = [kind, service, method];
                let series = MethodSeries {
                    started: started.with_label_values(&values),
                    handled: CODES
                        .map(|code| handled.with_label_values(&[kind, service, method, code])),
                    seconds: seconds.as_ref().map(|s| s.with_label_values(&values)),
                };
                methods.insert(format!("/{service}/{method}"), Arc::new(series));
            }
        }
        Ok(Self {
            methods: Arc::new(methods),
        })
    }
}

impl GrpcMetrics {
    /// No series at all (`--metrics=off`): every call passes through
    /// uncounted.
    pub fn off() -> Self {
        Self {
            methods: Arc::new(HashMap::new()),
        }
    }
}

impl<S> tower_layer::Layer<S> for GrpcMetrics {
    type Service = Metered<S>;

    fn layer(&self, inner: S) -> Metered<S> {
        Metered {
            inner,
            metrics: self.clone(),
        }
    }
}

/// [`GrpcMetrics`] around one service.
#[derive(Clone)]
pub struct Metered<S> {
    inner: S,
    metrics: GrpcMetrics,
}

impl<S, B> tower_service::Service<Request<B>> for Metered<S>
where
    S: tower_service::Service<Request<B>, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = MeteredFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    /// Step 2.
    fn call(&mut self, request: Request<B>) -> Self::Future {
        let call = self
            .metrics
            .methods
            .get(request.uri().path())
            .map(|series| {
                series.started.inc();
                Finish {
                    start: series.seconds.as_ref().map(|_| Instant::now()),
                    series: Arc::clone(series),
                    code: CANCELED,
                }
            });
        MeteredFuture {
            inner: self.inner.call(request),
            call,
        }
    }
}

/// Counts one call as handled, with its code, when dropped.
struct Finish {
    series: Arc<MethodSeries>,
    start: Option<Instant>,
    code: usize,
}

impl Drop for Finish {
    fn drop(&mut self) {
        self.series.handled[self.code].inc();
        if let (Some(seconds), Some(start)) = (&self.series.seconds, self.start) {
            seconds.observe(start.elapsed().as_secs_f64());
        }
    }
}

/// The code a `grpc-status` header or trailer carries, if any.
fn status_code(headers: &HeaderMap) -> Option<usize> {
    let value = headers.get("grpc-status")?;
    let code = std::str::from_utf8(value.as_bytes())
        .ok()
        .and_then(|text| text.parse::<usize>().ok())
        .filter(|code| *code < CODES.len());
    Some(code.unwrap_or(UNKNOWN))
}

pin_project_lite::pin_project! {
    /// [`Metered`]'s answer: the inner one, with its body watched.
    pub struct MeteredFuture<F> {
        #[pin]
        inner: F,
        call: Option<Finish>,
    }
}

impl<F, E> std::future::Future for MeteredFuture<F>
where
    F: std::future::Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    /// Step 3.
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = std::task::ready!(this.inner.poll(cx))?;
        let Some(mut call) = this.call.take() else {
            return Poll::Ready(Ok(response));
        };
        if let Some(code) = status_code(response.headers()) {
            call.code = code;
            return Poll::Ready(Ok(response));
        }
        Poll::Ready(Ok(response.map(|body| {
            Body::new(MeteredBody {
                inner: body,
                call: Some(call),
            })
        })))
    }
}

pin_project_lite::pin_project! {
    /// A response body that counts its call when its trailers pass (or
    /// when it is dropped before them).
    struct MeteredBody {
        #[pin]
        inner: Body,
        call: Option<Finish>,
    }
}

impl http_body::Body for MeteredBody {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = std::task::ready!(this.inner.poll_frame(cx));
        match &frame {
            Some(Ok(frame)) => {
                if let Some(trailers) = frame.trailers_ref()
                    && let Some(mut call) = this.call.take()
                {
                    call.code = status_code(trailers).unwrap_or(UNKNOWN);
                }
            }
            // The stream broke, or ended without a status.
            Some(Err(_)) | None => {
                if let Some(mut call) = this.call.take() {
                    call.code = UNKNOWN;
                }
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_method_series_exists_before_the_first_call() {
        let registry = prometheus::Registry::new();
        let metrics = GrpcMetrics::new(&registry, true).unwrap();
        let range = &metrics.methods["/etcdserverpb.KV/Range"];
        range.handled[0].inc();
        let families = registry.gather();
        let handled = families
            .iter()
            .find(|f| f.name() == "grpc_server_handled_total")
            .unwrap();
        let methods: usize = METHODS.iter().map(|(_, m)| m.len()).sum();
        assert_eq!(handled.get_metric().len(), methods * CODES.len());
        let ok_range = handled
            .get_metric()
            .iter()
            .find(|m| {
                let labels: Vec<_> = m.get_label().iter().map(|l| l.value()).collect();
                labels == ["OK", "Range", "etcdserverpb.KV", "unary"]
            })
            .expect("Range's OK series");
        assert_eq!(ok_range.get_counter().get_value(), 1.0);
        let watch = STREAMING
            .iter()
            .find(|(s, m, _)| *s == "etcdserverpb.Watch" && *m == "Watch");
        assert_eq!(watch.map(|w| w.2), Some("bidi_stream"));
    }

    #[test]
    fn status_codes_read_as_grpc_go_names_them() {
        let mut headers = HeaderMap::new();
        assert_eq!(status_code(&headers), None);
        headers.insert("grpc-status", "14".parse().unwrap());
        assert_eq!(CODES[status_code(&headers).unwrap()], "Unavailable");
        headers.insert("grpc-status", "99".parse().unwrap());
        assert_eq!(status_code(&headers), Some(UNKNOWN));
    }
}
