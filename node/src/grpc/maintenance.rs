//! `etcdserverpb.Maintenance`: Alarm, Status, Defragment, Hash, HashKV,
//! Snapshot and MoveLeader, with etcd 3.4's answers.

use std::pin::Pin;

use futures::Stream;
use proto::etcdserverpb::maintenance_server::Maintenance;
use proto::etcdserverpb::{
    AlarmRequest, AlarmResponse, DefragmentRequest, DefragmentResponse, HashKvRequest,
    HashKvResponse, HashRequest, HashResponse, MoveLeaderRequest, MoveLeaderResponse,
    ResponseHeader, SnapshotRequest, SnapshotResponse, StatusRequest, StatusResponse,
};
use storage::EtcdError;
use tonic::{Request, Response, Status};

use actors::messages::{ReadRequest, ReadResponse};
use proto::etcdserverpb::AlarmType;
use proto::internal::internal_request::Request as Replicated;
use storage::mvcc::ApplyResponse;

use crate::errors::{maintenance_auth_status, reply, to_status};
use crate::handle::NodeHandle;

/// The etcd server version oxcd reports: the etcd release whose API and
/// behaviour it reproduces (clients gate features on it).
pub const ETCD_COMPAT_VERSION: &str = "3.4.23";

/// The Maintenance service.
pub struct MaintenanceService {
    node: NodeHandle,
    /// Serving clients (defragment, snapshot and hashes need the root role
    /// when auth is on), not the other members on the peer port.
    client: bool,
}

impl MaintenanceService {
    /// The service on the client port.
    pub fn new(node: NodeHandle) -> Self {
        Self { node, client: true }
    }

    /// The service on the peer port, for other members (the corruption
    /// checks' hashes).
    pub fn for_peers(node: NodeHandle) -> Self {
        Self {
            node,
            client: false,
        }
    }

    /// etcd's `authMaintenanceServer.isAuthenticated`: with auth on, the
    /// root role; refusals go out unmapped, as etcd sends them.
    async fn check_admin(&self, metadata: &tonic::metadata::MetadataMap) -> Result<(), Status> {
        if !self.client {
            return Ok(());
        }
        let who = self
            .node
            .who(metadata)
            .await
            .map_err(|e| maintenance_auth_status(&e))?;
        self.node
            .auth_store()
            .check_admin(&who)
            .map_err(|e| maintenance_auth_status(&EtcdError::Auth(e)))
    }
}

/// Sends the image at `path` as etcd's snapshot stream (blocking reads; runs
/// on a blocking thread). Any failure to open, size or read the whole image
/// ends the stream with an error status and never with a digest: a digest
/// after missing bytes would pass etcdctl's size and hash checks.
fn stream_image(
    path: &std::path::Path,
    tx: &tokio::sync::mpsc::Sender<Result<SnapshotResponse, Status>>,
) {
    let send = |m: Result<SnapshotResponse, Status>| tx.blocking_send(m).is_ok();
    let opened = std::fs::File::open(path).and_then(|f| {
        let len = f.metadata()?.len();
        Ok((f, len))
    });
    match opened {
        Ok((file, len)) => stream_blobs(file, len, send),
        Err(e) => {
            send(Err(image_error(format!("snapshot image: {e}"))));
        }
    }
}

fn image_error(text: String) -> Status {
    to_status(&EtcdError::Backend(text))
}

/// Streams `len` bytes of `image` in 32 KiB blobs, each with the bytes still
/// to come, then one message holding their SHA-256 (etcd's format). `send`
/// returns false once the client is gone.
fn stream_blobs(
    mut image: impl std::io::Read,
    len: u64,
    send: impl Fn(Result<SnapshotResponse, Status>) -> bool,
) {
    use sha2::Digest;
    const BLOB: usize = 32 * 1024;
    if len == 0 {
        send(Err(image_error("snapshot image is empty".to_string())));
        return;
    }
    let mut remaining = len;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; BLOB];
    while remaining > 0 {
        let want = buf
            .len()
            .min(usize::try_from(remaining).unwrap_or(usize::MAX));
        let n = match image.read(&mut buf[..want]) {
            Ok(0) => {
                send(Err(image_error(format!(
                    "snapshot image: unexpected end of file with {remaining} of {len} bytes unread"
                ))));
                return;
            }
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                send(Err(image_error(format!("snapshot image: {e}"))));
                return;
            }
        };
        hasher.update(&buf[..n]);
        remaining -= n as u64;
        if !send(Ok(SnapshotResponse {
            header: None,
            remaining_bytes: remaining,
            blob: buf[..n].to_vec(),
        })) {
            return;
        }
    }
    send(Ok(SnapshotResponse {
        header: None,
        remaining_bytes: 0,
        blob: hasher.finalize().to_vec(),
    }));
}

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    async fn alarm(
        &self,
        request: Request<AlarmRequest>,
    ) -> Result<Response<AlarmResponse>, Status> {
        // Every action goes through raft, as in etcd (alarms are replicated
        // state; GET is then linearizable). Anyone may list and disarm
        // alarms with auth on (etcd 3.4 checks nothing more), but a bad
        // token fails, with the auth error unmapped, as etcd's Alarm sends
        // it.
        let who = self
            .node
            .who(request.metadata())
            .await
            .map_err(|e| maintenance_auth_status(&e))?;
        reply!(
            self.node
                .write_as(Replicated::Alarm(request.into_inner()), &who)
                .await,
            ApplyResponse::Alarm
        )
    }

    async fn status(&self, _: Request<StatusRequest>) -> Result<Response<StatusResponse>, Status> {
        let (raft, store) = self.node.status().await.map_err(|e| to_status(&e))?;
        let mut errors = Vec::new();
        if raft.leader == 0 {
            errors.push(EtcdError::NoLeader.to_string());
        }
        // etcd lists each alarm in Go's proto text form.
        for (member, alarm) in &store.alarms {
            let name = AlarmType::try_from(*alarm).map_or("UNKNOWN", |a| a.as_str_name());
            errors.push(format!("memberID:{member} alarm:{name} "));
        }
        Ok(Response::new(StatusResponse {
            header: Some(ResponseHeader {
                cluster_id: self.node.cluster_id,
                member_id: self.node.member_id,
                revision: store.revision,
                raft_term: raft.term,
            }),
            version: ETCD_COMPAT_VERSION.to_string(),
            db_size: store.db_size,
            leader: raft.leader,
            raft_index: raft.commit,
            raft_term: raft.term,
            raft_applied_index: store.applied_index,
            errors,
            db_size_in_use: store.db_size_in_use,
            is_learner: raft.is_learner,
        }))
    }

    async fn defragment(
        &self,
        request: Request<DefragmentRequest>,
    ) -> Result<Response<DefragmentResponse>, Status> {
        self.check_admin(request.metadata()).await?;
        self.node.defragment().await.map_err(|e| to_status(&e))?;
        let header = self.node.header(true).await.map_err(|e| to_status(&e))?;
        Ok(Response::new(DefragmentResponse {
            header: Some(header),
        }))
    }

    async fn hash(&self, request: Request<HashRequest>) -> Result<Response<HashResponse>, Status> {
        self.check_admin(request.metadata()).await?;
        // Member-local and for testing, as in etcd.
        reply!(
            self.node.read(ReadRequest::Hash, false).await,
            ReadResponse::Hash
        )
    }

    async fn hash_kv(
        &self,
        request: Request<HashKvRequest>,
    ) -> Result<Response<HashKvResponse>, Status> {
        self.check_admin(request.metadata()).await?;
        // Member-local, as etcd's: every member hashes its own store.
        reply!(
            self.node
                .read(ReadRequest::HashKv(request.into_inner()), false)
                .await,
            ReadResponse::HashKv
        )
    }

    type SnapshotStream =
        Pin<Box<dyn Stream<Item = Result<SnapshotResponse, Status>> + Send + 'static>>;

    async fn snapshot(
        &self,
        request: Request<SnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        self.check_admin(request.metadata()).await?;
        // 1. The apply actor hands out a detached read view of the store (an
        //    LMDB read txn after writing its pending commits; applying goes
        //    on beside it).
        // 2. On the blocking pool, the view becomes etcd's backend file: a
        //    bbolt file with etcd 3.4's buckets (`storage::etcd_snapshot`),
        //    which `etcdctl snapshot status` and `snapshot restore` read. The
        //    export holds the whole-store turn, so a defragmentation waits for
        //    it; a snapshot install from the leader (rare, and not waiting)
        //    cancels it, and the stream ends with an error.
        // 3. It streams in 32 KiB blobs with the bytes still to come, then one
        //    more message holding the file's SHA-256 (etcd's format:
        //    `etcdctl snapshot save` checks size % 512 == 32).
        // 4. The file goes when the stream ends.
        let work = self
            .node
            .backup_dir
            .join(format!("backup-{:x}", rand::random::<u64>()));
        std::fs::create_dir_all(&work).map_err(|e| image_error(format!("snapshot image: {e}")))?;
        let (view, turn) = match self.node.open_export().await {
            Ok(opened) => opened,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&work);
                return Err(to_status(&e));
            }
        };
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        tokio::task::spawn_blocking(move || {
            let file = work.join("etcd.db");
            let exported = storage::etcd_snapshot::export(&*view.reader, &file, &view.cancel);
            drop(view);
            // Defragmentation may run once the view is gone.
            drop(turn);
            match exported {
                Ok(summary) => {
                    tracing::info!(
                        revision = summary.revision,
                        records = summary.records,
                        "streaming a snapshot in etcd's format"
                    );
                    stream_image(&file, &tx);
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(image_error(format!("snapshot image: {e}"))));
                }
            }
            let _ = std::fs::remove_dir_all(&work);
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn move_leader(
        &self,
        request: Request<MoveLeaderRequest>,
    ) -> Result<Response<MoveLeaderResponse>, Status> {
        let target = request.into_inner().target_id;
        self.node
            .move_leader(target)
            .await
            .map_err(|e| to_status(&e))?;
        let header = self.node.header(true).await.map_err(|e| to_status(&e))?;
        Ok(Response::new(MoveLeaderResponse {
            header: Some(header),
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::io::Read;

    use sha2::Digest;

    use super::*;

    fn collect(image: impl Read, len: u64) -> Vec<Result<SnapshotResponse, Status>> {
        let sent = RefCell::new(Vec::new());
        stream_blobs(image, len, |m| {
            sent.borrow_mut().push(m);
            true
        });
        sent.into_inner()
    }

    /// A reader that fails after `ok` bytes.
    struct FailingAfter {
        ok: usize,
    }

    impl Read for FailingAfter {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.ok == 0 {
                return Err(std::io::Error::other("disk read failed"));
            }
            let n = buf.len().min(self.ok);
            buf[..n].fill(7);
            self.ok -= n;
            Ok(n)
        }
    }

    #[test]
    fn a_whole_image_is_streamed_with_its_digest() {
        let image: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let sent = collect(&image[..], image.len() as u64);
        let sent: Vec<SnapshotResponse> = sent.into_iter().map(|m| m.unwrap()).collect();
        let (digest, blobs) = sent.split_last().unwrap();
        let body: Vec<u8> = blobs.iter().flat_map(|m| m.blob.clone()).collect();
        assert_eq!(body, image);
        assert_eq!(blobs.len(), 4, "32 KiB blobs");
        assert_eq!(blobs.last().unwrap().remaining_bytes, 0);
        assert_eq!(blobs[0].remaining_bytes, 100_000 - 32 * 1024);
        assert_eq!(digest.blob, sha2::Sha256::digest(&image).to_vec());
    }

    #[test]
    fn a_short_image_ends_with_an_error_and_no_digest() {
        let sent = collect(&[1u8; 1000][..], 5000);
        let last = sent.last().unwrap().as_ref().unwrap_err();
        assert_eq!(last.code(), tonic::Code::Unknown);
        assert!(
            last.message().contains("4000 of 5000 bytes unread"),
            "{last:?}"
        );
        assert_eq!(
            sent.iter().filter(|m| m.is_ok()).count(),
            1,
            "one blob, no digest"
        );
    }

    #[test]
    fn a_read_error_ends_with_an_error_and_no_digest() {
        let sent = collect(FailingAfter { ok: 40_000 }, 100_000);
        let last = sent.last().unwrap().as_ref().unwrap_err();
        assert!(last.message().contains("disk read failed"), "{last:?}");
        assert!(
            sent.iter()
                .filter_map(|m| m.as_ref().ok())
                .all(|m| m.blob.len() != 32)
        );
    }

    #[test]
    fn an_empty_or_missing_image_is_an_error() {
        let sent = collect(&[][..], 0);
        assert_eq!(sent.len(), 1);
        assert!(sent[0].is_err());
        let (tx, mut rx) = tokio::sync::mpsc::channel(4);
        stream_image(std::path::Path::new("/nonexistent/oxcd-image"), &tx);
        let only = rx.try_recv().unwrap();
        assert!(only.unwrap_err().message().starts_with("snapshot image: "));
        assert!(rx.try_recv().is_err());
    }
}
