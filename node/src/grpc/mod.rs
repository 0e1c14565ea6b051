//! The gRPC facade and the HTTP endpoints, served together on every client
//! URL (as etcd does): gRPC over HTTP/2 (KV, Watch, Lease, Cluster,
//! Maintenance, Lock, Election, health, and oxcd's chaos API, which answers
//! only with `--enable-chaos`), `/metrics`, `/health` and
//! `/version` over HTTP/1.1 on the same port, and etcd's JSON gateway
//! (`/v3/*`, [`crate::gateway`]) in front of them all. Every gRPC call is
//! counted by [`metrics::GrpcMetrics`] (grpc-go-prometheus's series).

pub mod auth;
pub mod chaos;
pub mod cluster;
pub mod election;
pub mod http;
pub mod kv;
pub mod lease;
pub mod lock;
pub mod maintenance;
pub mod metrics;
pub mod watch;

use std::sync::Arc;

use crate::tls::Listener;

use proto::etcdserverpb::auth_server::AuthServer;
use proto::etcdserverpb::cluster_server::ClusterServer;
use proto::etcdserverpb::kv_server::KvServer;
use proto::etcdserverpb::lease_server::LeaseServer;
use proto::etcdserverpb::maintenance_server::MaintenanceServer;
use proto::etcdserverpb::watch_server::WatchServer;
use proto::v3electionpb::election_server::ElectionServer;
use proto::v3lockpb::lock_server::LockServer;
use tonic::service::Routes;

use crate::errors::to_status;
use crate::handle::NodeHandle;

/// The gRPC frame limit etcd uses: `--max-request-bytes` + 512 KiB.
pub fn max_grpc_message(max_request_bytes: usize) -> usize {
    max_request_bytes + 512 * 1024
}

/// Serves the client API until the process stops.
pub async fn serve_client(
    listener: Listener,
    node: NodeHandle,
    max_request_bytes: usize,
    registry: prometheus::Registry,
    grpc_metrics: metrics::GrpcMetrics,
    chaos: chaos::ChaosService,
) -> Result<(), tonic::transport::Error> {
    // The codec answers oversized messages with etcd's text; tonic's own
    // limit sits far above it.
    proto::codec::set_server_receive_limit(max_grpc_message(max_request_bytes));
    let limit = proto::codec::TRANSPORT_LIMIT;
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    let kv = KvServer::new(kv::KvService::new(node.clone()))
        .max_decoding_message_size(limit)
        .max_encoding_message_size(usize::MAX);
    let maintenance = MaintenanceServer::new(maintenance::MaintenanceService::new(node.clone()))
        .max_decoding_message_size(limit)
        .max_encoding_message_size(usize::MAX);
    let cluster = ClusterServer::new(cluster::ClusterService::new(node.clone()))
        .max_decoding_message_size(limit)
        .max_encoding_message_size(usize::MAX);
    let watch = WatchServer::new(watch::WatchService::new(node.clone()))
        .max_decoding_message_size(limit)
        .max_encoding_message_size(usize::MAX);
    let lease = LeaseServer::new(lease::LeaseService::new(node.clone()))
        .max_decoding_message_size(limit)
        .max_encoding_message_size(usize::MAX);
    let lock = LockServer::new(lock::LockService::new(node.clone()))
        .max_decoding_message_size(limit)
        .max_encoding_message_size(usize::MAX);
    let election = ElectionServer::new(election::ElectionService::new(node.clone()))
        .max_decoding_message_size(limit)
        .max_encoding_message_size(usize::MAX);
    let auth = AuthServer::new(auth::AuthService::new(node.clone()))
        .max_decoding_message_size(limit)
        .max_encoding_message_size(usize::MAX);
    let chaos = proto::internal::chaos_server::ChaosServer::new(chaos);
    let grpc = Routes::new(kv)
        .add_service(chaos)
        .add_service(auth)
        .add_service(watch)
        .add_service(lease)
        .add_service(lock)
        .add_service(election)
        .add_service(cluster)
        .add_service(maintenance)
        .add_service(health_service);
    let gate = LearnerGateLayer {
        node: Arc::new(node.clone()),
    };
    // Innermost: calls the learner gate refuses are not counted, as etcd's
    // prometheus interceptor runs after its learner check.
    let router = http::routes(grpc.into_axum_router(), node, registry)
        .layer(grpc_metrics)
        .layer(UnknownPathsLayer)
        .layer(gate);
    let router = crate::gateway::serve_on(router, max_grpc_message(max_request_bytes));
    let server = tonic::transport::Server::builder()
        .accept_http1(true)
        .add_routes(Routes::from(router));
    match listener {
        Listener::Plain(addr) => server.serve(addr).await,
        Listener::Tls(listener, config) => {
            server
                .serve_with_incoming(crate::tls::incoming(listener, config))
                .await
        }
    }
}

/// What a learner serves (etcd's `isRPCSupportedForLearner`): `Status`, and
/// `Range` (which itself refuses a linearizable read on a learner).
const LEARNER_PATHS: &[&str] = &["/etcdserverpb.KV/Range", "/etcdserverpb.Maintenance/Status"];

/// etcd's learner gate: on a learner, every etcd gRPC call but
/// [`LEARNER_PATHS`] is answered `Unavailable` "etcdserver: rpc not supported
/// for learner" before it reaches a service (clients retry elsewhere). HTTP
/// endpoints and the gRPC health service pass.
///
/// hyper clones the whole service stack for every request, so the gate
/// holds the handle behind an `Arc`: a clone is one count, not the dozens of
/// a `NodeHandle` (its mailboxes, metric handles and paths).
#[derive(Clone)]
struct LearnerGateLayer {
    node: Arc<NodeHandle>,
}

impl<S> tower_layer::Layer<S> for LearnerGateLayer {
    type Service = LearnerGate<S>;

    fn layer(&self, inner: S) -> LearnerGate<S> {
        LearnerGate {
            inner,
            node: self.node.clone(),
        }
    }
}

#[derive(Clone)]
struct LearnerGate<S> {
    inner: S,
    node: Arc<NodeHandle>,
}

impl<S, B> tower_service::Service<axum::http::Request<B>> for LearnerGate<S>
where
    S: tower_service::Service<axum::http::Request<B>, Response = axum::response::Response>,
{
    type Response = axum::response::Response;
    type Error = S::Error;
    type Future = futures::future::Either<
        S::Future,
        std::future::Ready<Result<axum::response::Response, S::Error>>,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: axum::http::Request<B>) -> Self::Future {
        if self.node.is_learner() && learner_refuses(request.uri().path()) {
            let status = to_status(&storage::EtcdError::NotSupportedForLearner);
            return futures::future::Either::Right(std::future::ready(Ok(
                status.into_http::<axum::body::Body>()
            )));
        }
        futures::future::Either::Left(self.inner.call(request))
    }
}

/// True for the etcd gRPC paths a learner does not serve.
fn learner_refuses(path: &str) -> bool {
    let etcd = ["/etcdserverpb.", "/v3lockpb.", "/v3electionpb."]
        .iter()
        .any(|p| path.starts_with(p));
    etcd && !LEARNER_PATHS.contains(&path)
}

/// gRPC services served on the client port (for the "unknown service" text).
const SERVED: &[&str] = &[
    "etcdserverpb.KV",
    "etcdserverpb.Watch",
    "etcdserverpb.Lease",
    "v3lockpb.Lock",
    "v3electionpb.Election",
    "etcdserverpb.Cluster",
    "etcdserverpb.Maintenance",
    "etcdserverpb.Auth",
    "grpc.health.v1.Health",
];

/// Unknown paths, answered as etcd answers them. tonic answers any path it
/// does not route with gRPC's `Unimplemented` and no message:
/// - to a gRPC request, grpc-go (and so etcd) names what was unknown, and
///   clients log these texts, so oxcd says the same;
/// - to a plain HTTP request (no `application/grpc` content type), etcd's HTTP
///   mux answers `404 page not found`, which a JSON client can tell apart from
///   an empty success.
///
/// A plain tower layer rather than `axum::middleware::from_fn`, which boxes
/// a service and a future for every request: on the path of every request,
/// it only looks at one request header and one response header.
#[derive(Debug, Clone, Copy)]
struct UnknownPathsLayer;

impl<S> tower_layer::Layer<S> for UnknownPathsLayer {
    type Service = UnknownPaths<S>;

    fn layer(&self, inner: S) -> UnknownPaths<S> {
        UnknownPaths { inner }
    }
}

#[derive(Debug, Clone)]
struct UnknownPaths<S> {
    inner: S,
}

impl<S, B> tower_service::Service<axum::http::Request<B>> for UnknownPaths<S>
where
    S: tower_service::Service<axum::http::Request<B>, Response = axum::response::Response>,
{
    type Response = axum::response::Response;
    type Error = S::Error;
    type Future = UnknownPathsFuture<S::Future>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: axum::http::Request<B>) -> Self::Future {
        let is_grpc = request
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
        // A reference-counted copy, read only when the path is unknown.
        let uri = request.uri().clone();
        UnknownPathsFuture {
            inner: self.inner.call(request),
            is_grpc,
            uri,
        }
    }
}

pin_project_lite::pin_project! {
    /// [`UnknownPaths`]'s answer: the inner one, reworded when unrouted.
    struct UnknownPathsFuture<F> {
        #[pin]
        inner: F,
        is_grpc: bool,
        uri: axum::http::Uri,
    }
}

impl<F, E> std::future::Future for UnknownPathsFuture<F>
where
    F: std::future::Future<Output = Result<axum::response::Response, E>>,
{
    type Output = Result<axum::response::Response, E>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let this = self.project();
        let mut response = std::task::ready!(this.inner.poll(cx))?;
        let unrouted = response
            .headers()
            .get("grpc-status")
            .is_some_and(|v| v == "12");
        if !unrouted {
            return std::task::Poll::Ready(Ok(response));
        }
        if !*this.is_grpc {
            return std::task::Poll::Ready(Ok(http::not_found()));
        }
        let headers = response.headers_mut();
        if !headers.contains_key("grpc-message")
            && let Some(message) = unknown_method_message(this.uri.path())
            && let Ok(value) = axum::http::HeaderValue::from_str(&message)
        {
            headers.insert("grpc-message", value);
        }
        std::task::Poll::Ready(Ok(response))
    }
}

fn unknown_method_message(path: &str) -> Option<String> {
    let (service, method) = path.strip_prefix('/')?.split_once('/')?;
    Some(if SERVED.contains(&service) {
        format!("unknown method {method} for service {service}")
    } else {
        format!("unknown service {service}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_method_texts_match_grpc_go() {
        assert_eq!(
            unknown_method_message("/etcdserverpb.KV/NoSuchMethod").as_deref(),
            Some("unknown method NoSuchMethod for service etcdserverpb.KV")
        );
        assert_eq!(
            unknown_method_message("/etcdserverpb.NoSuchService/Range").as_deref(),
            Some("unknown service etcdserverpb.NoSuchService")
        );
        assert_eq!(unknown_method_message("/metrics"), None);
    }
}
