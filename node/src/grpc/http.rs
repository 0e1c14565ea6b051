//! HTTP endpoints on the client port: `/metrics` (Prometheus text),
//! `/health` (etcd's `{"health":"true"}`), `/version`, whatever the method
//! (as Go's mux serves them). Any other plain HTTP
//! request gets Go's `404 page not found`, as etcd answers it.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::any;
use prometheus::{Encoder, TextEncoder};

use super::maintenance::ETCD_COMPAT_VERSION;
use crate::handle::NodeHandle;

#[derive(Clone)]
struct HttpState {
    node: NodeHandle,
    registry: prometheus::Registry,
}

/// Adds the HTTP endpoints to the gRPC router.
pub fn routes(grpc: Router, node: NodeHandle, registry: prometheus::Registry) -> Router {
    let state = HttpState { node, registry };
    grpc.route("/metrics", any(metrics).with_state(state.clone()))
        .route("/health", any(health).with_state(state))
        .route("/version", any(version))
}

/// Go's `http.NotFound`, which etcd's HTTP mux answers for a path it does not
/// serve.
pub fn not_found() -> axum::response::Response {
    use axum::http::header;
    use axum::response::IntoResponse;
    (
        StatusCode::NOT_FOUND,
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        "404 page not found\n",
    )
        .into_response()
}

async fn metrics(State(state): State<HttpState>) -> (StatusCode, String) {
    let mut buf = Vec::new();
    let families = state.registry.gather();
    match TextEncoder::new().encode(&families, &mut buf) {
        Ok(()) => (StatusCode::OK, String::from_utf8_lossy(&buf).into_owned()),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn health(State(state): State<HttpState>) -> (StatusCode, String) {
    // etcd 3.4: healthy when the member has a leader, no alarm is raised,
    // and a linearizable read goes through.
    let healthy = match state.node.status().await {
        Ok((raft, store)) if raft.leader != 0 && store.alarms.is_empty() => {
            let read = actors::messages::ReadRequest::Range(proto::etcdserverpb::RangeRequest {
                key: b"health".to_vec(),
                ..Default::default()
            });
            state.node.read(read, true).await.is_ok()
        }
        _ => false,
    };
    if healthy {
        (StatusCode::OK, r#"{"health":"true"}"#.to_string())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            r#"{"health":"false"}"#.to_string(),
        )
    }
}

async fn version() -> ([(axum::http::HeaderName, &'static str); 1], String) {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        format!(r#"{{"etcdserver":"{ETCD_COMPAT_VERSION}","etcdcluster":"3.4.0"}}"#),
    )
}
