//! `etcdserverpb.Watch`: one bidirectional stream per client call, served by
//! the watch hub actor.
//!
//! 1. A call with `hasleader` metadata on a member without a leader fails
//!    with `Unavailable "etcdserver: no leader"`, as etcd's does.
//! 2. The stream registers with the hub (`OpenStream`), handing it a
//!    bounded channel ([`STREAM_BUFFER`] responses) that becomes the gRPC
//!    response stream.
//! 3. A task reads the client's requests and forwards them to the hub one
//!    at a time (each awaited: a stream has at most one request in flight,
//!    which bounds what a client can queue on the hub). A request with no
//!    known field is ignored, as etcd ignores it.
//! 4. Before a create reaches the hub, the stream's token must allow reading
//!    the watched range (etcd's `isWatchPermitted`); a refused create is
//!    answered here, created and canceled at once with etcd's reason.
//! 5. When the client's stream fails (a cancel, a lost connection), the hub
//!    drops the stream's watchers (`CloseStream`). A clean end of the
//!    client's side (a half-close) is not the end of the watch: as etcd's
//!    `recvLoop` returns nil on EOF and the stream lives until its context
//!    ends, the watchers stay until the response stream is dropped (the JSON
//!    gateway's `curl -d '{"create_request":...}'` relies on it).

use std::pin::Pin;

use actors::messages::{CancelWatch, CloseStream, CreateWatch, OpenStream, RequestProgress};
use actors::watch::STREAM_BUFFER;
use futures::{Stream, StreamExt};
use proto::etcdserverpb::watch_request::RequestUnion;
use proto::etcdserverpb::watch_server::Watch;
use proto::etcdserverpb::{WatchRequest, WatchResponse};
use storage::EtcdError;
use tonic::{Request, Response, Status, Streaming};

use crate::errors::to_status;
use crate::handle::{NodeHandle, WatchHandle};

/// The Watch service.
pub struct WatchService {
    node: NodeHandle,
}

impl WatchService {
    pub fn new(node: NodeHandle) -> Self {
        Self { node }
    }
}

/// What a stream's creates are checked with: the node, the call's auth
/// token, and the stream's response channel for refusals (weak: the
/// hub's sender alone keeps the response stream open).
struct Permission {
    node: NodeHandle,
    token: Option<String>,
    responses: tokio::sync::mpsc::WeakSender<WatchResponse>,
}

impl Permission {
    /// etcd's `isWatchPermitted` on the create as etcd rewrites it (an
    /// empty key is `\0`; a range end of `\0` becomes empty, so a
    /// from-key watch is checked as its first key); a refusal is answered
    /// on the stream and `false` returned.
    async fn allows(&self, request: &proto::etcdserverpb::WatchCreateRequest) -> bool {
        use storage::auth::AuthError;
        let key: &[u8] = if request.key.is_empty() {
            &[0]
        } else {
            &request.key
        };
        let end: &[u8] = if request.range_end == [0] {
            &[]
        } else {
            &request.range_end
        };
        let checked = match self.node.who_is(self.token.as_deref()).await {
            Ok(who) => self
                .node
                .auth_store()
                .check_range(&who, key, end)
                .map_err(EtcdError::Auth),
            Err(e) => Err(e),
        };
        let reason = match checked {
            Ok(()) => return true,
            Err(EtcdError::Auth(
                e @ (AuthError::InvalidAuthToken
                | AuthError::AuthOldRevision
                | AuthError::UserEmpty),
            )) => EtcdError::Auth(e),
            Err(_) => EtcdError::Auth(AuthError::PermissionDenied),
        };
        let status = to_status(&reason);
        let header = self.node.header(true).await.ok();
        let refused = WatchResponse {
            header,
            watch_id: -1,
            created: true,
            canceled: true,
            cancel_reason: format!(
                "rpc error: code = {:?} desc = {}",
                status.code(),
                status.message()
            ),
            ..Default::default()
        };
        if let Some(responses) = self.responses.upgrade() {
            let _ = responses.send(refused).await;
        }
        false
    }
}

/// Forwards the client's requests to the hub until the client's side ends,
/// then closes the stream there (after a half-close, once the responses
/// are no longer read: `responses_gone` resolves when they are dropped).
async fn forward_requests(
    watch: WatchHandle,
    stream: u64,
    mut requests: Streaming<WatchRequest>,
    permission: Permission,
    responses_gone: tokio::sync::oneshot::Receiver<()>,
) {
    loop {
        let request = match requests.message().await {
            Ok(Some(r)) => r,
            Ok(None) => {
                let _ = responses_gone.await;
                break;
            }
            Err(status) => {
                tracing::debug!(stream, %status, "watch stream ended by its client");
                break;
            }
        };
        let sent = match request.request_union {
            Some(RequestUnion::CreateRequest(request)) => {
                if !permission.allows(&request).await {
                    continue;
                }
                watch.hub.deliver(CreateWatch { stream, request }).await
            }
            Some(RequestUnion::CancelRequest(cancel)) => {
                watch
                    .hub
                    .deliver(CancelWatch {
                        stream,
                        watch_id: cancel.watch_id,
                    })
                    .await
            }
            Some(RequestUnion::ProgressRequest(_)) => {
                watch.hub.deliver(RequestProgress { stream }).await
            }
            None => Ok(()),
        };
        if sent.is_err() {
            return;
        }
    }
    // Delivered, not refused: it frees the stream's watchers, and there is
    // one per stream.
    let _ = watch.hub.deliver(CloseStream { stream }).await;
}

#[tonic::async_trait]
impl Watch for WatchService {
    type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchResponse, Status>> + Send + 'static>>;

    async fn watch(
        &self,
        request: Request<Streaming<WatchRequest>>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let wants_leader = request
            .metadata()
            .get("hasleader")
            .is_some_and(|v| v.as_bytes() == b"true");
        if wants_leader {
            let (raft, _) = self.node.status().await.map_err(|e| to_status(&e))?;
            if raft.leader == 0 {
                return Err(to_status(&EtcdError::NoLeader));
            }
        }
        let watch = self.node.watch.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(STREAM_BUFFER);
        let permission = Permission {
            node: self.node.clone(),
            token: crate::handle::token(request.metadata()),
            responses: tx.downgrade(),
        };
        let stream = watch
            .hub
            .request(OpenStream { responses: tx })
            .map_err(|_| to_status(&EtcdError::TooManyRequests))?
            .await
            .map_err(|_| to_status(&EtcdError::Stopped))?;
        // Dropped with the response stream.
        let (alive, responses_gone) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(forward_requests(
            watch.clone(),
            stream,
            request.into_inner(),
            permission,
            responses_gone,
        ));
        let pending = watch.pending_events;
        let responses = tokio_stream::wrappers::ReceiverStream::new(rx).map(move |response| {
            let _alive = &alive;
            pending.sub(response.events.len() as i64);
            Ok(response)
        });
        Ok(Response::new(Box::pin(responses)))
    }
}
