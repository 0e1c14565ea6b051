//! HTTP endpoints on the client port: `/metrics` (Prometheus text),
//! `/health` (etcd 3.4's `{"health":"true"}`, with `?exclude=<alarm>`),
//! `/version`, whatever the method
//! (as Go's mux serves them). Any other plain HTTP
//! request gets Go's `404 page not found`, as etcd answers it.
//!
//! `--listen-metrics-urls` listeners ([`serve_metrics`]) serve `/metrics`
//! and `/health` alone, with the same handlers, as etcd's metrics
//! listeners do.

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

/// Serves `/metrics` and `/health` on one `--listen-metrics-urls`
/// listener until the process stops (an `https://` one with the client
/// port's TLS files, as etcd does).
pub async fn serve_metrics(
    listener: crate::tls::Listener,
    node: NodeHandle,
    registry: prometheus::Registry,
) -> Result<(), tonic::transport::Error> {
    let state = HttpState { node, registry };
    let router = Router::new()
        .route("/metrics", any(metrics).with_state(state.clone()))
        .route("/health", any(health).with_state(state))
        .fallback(|| async { not_found() });
    let server = tonic::transport::Server::builder()
        .accept_http1(true)
        .add_routes(tonic::service::Routes::from(router));
    match listener {
        crate::tls::Listener::Plain(addr) => server.serve(addr).await,
        crate::tls::Listener::Tls(listener, config) => {
            server
                .serve_with_incoming(crate::tls::incoming(listener, config))
                .await
        }
    }
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

/// etcd 3.4's `/health`: healthy when the member has a leader, no alarm is
/// raised (but those named by `?exclude=NOSPACE`, repeatable), and a
/// linearizable read goes through. Healthy is `200 {"health":"true"}`;
/// unhealthy is Go's `http.Error`: `503`, the same JSON and a newline.
async fn health(State(state): State<HttpState>, uri: axum::http::Uri) -> axum::response::Response {
    use axum::response::IntoResponse;
    let excluded = excluded_alarms(uri.query().unwrap_or_default());
    let healthy = match state.node.status().await {
        Ok((raft, store))
            if raft.leader != 0
                && store
                    .alarms
                    .iter()
                    .all(|(_, alarm)| excluded.iter().any(|name| alarm_name(*alarm) == *name)) =>
        {
            let read = actors::messages::ReadRequest::Range(proto::etcdserverpb::RangeRequest {
                key: b"health".to_vec(),
                ..Default::default()
            });
            state.node.read(read, true).await.is_ok()
        }
        _ => false,
    };
    if healthy {
        (
            [(
                axum::http::header::CONTENT_TYPE,
                "text/plain; charset=utf-8",
            )],
            r#"{"health":"true"}"#,
        )
            .into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            [
                (
                    axum::http::header::CONTENT_TYPE,
                    "text/plain; charset=utf-8",
                ),
                (axum::http::header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            "{\"health\":\"false\"}\n",
        )
            .into_response()
    }
}

/// The alarm names of every `exclude` parameter of a query string.
fn excluded_alarms(query: &str) -> Vec<&str> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .filter(|(key, _)| *key == "exclude")
        .map(|(_, value)| value)
        .collect()
}

/// An alarm's name as etcd spells it in `?exclude=` (`NOSPACE`, `CORRUPT`).
fn alarm_name(alarm: i32) -> &'static str {
    proto::etcdserverpb::AlarmType::try_from(alarm).map_or("", |a| a.as_str_name())
}

async fn version() -> ([(axum::http::HeaderName, &'static str); 1], String) {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        format!(r#"{{"etcdserver":"{ETCD_COMPAT_VERSION}","etcdcluster":"3.4.0"}}"#),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exclude_parameters_name_alarms() {
        assert_eq!(
            excluded_alarms("exclude=NOSPACE&x=1&exclude=CORRUPT"),
            vec!["NOSPACE", "CORRUPT"]
        );
        assert!(excluded_alarms("").is_empty());
        assert_eq!(
            alarm_name(proto::etcdserverpb::AlarmType::Nospace as i32),
            "NOSPACE"
        );
        assert_eq!(
            alarm_name(proto::etcdserverpb::AlarmType::Corrupt as i32),
            "CORRUPT"
        );
    }
}
