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

use crate::errors::{mismatched_response, to_status};
use crate::handle::NodeHandle;

/// The etcd server version oxcd reports: the etcd release whose API and
/// behaviour it reproduces (clients gate features on it).
pub const ETCD_COMPAT_VERSION: &str = "3.4.23";

/// The Maintenance service.
pub struct MaintenanceService {
    node: NodeHandle,
}

impl MaintenanceService {
    pub fn new(node: NodeHandle) -> Self {
        Self { node }
    }
}

/// Sends the image at `path` as etcd's snapshot stream (blocking reads; runs
/// on a blocking thread).
fn stream_image(
    path: &std::path::Path,
    tx: &tokio::sync::mpsc::Sender<Result<SnapshotResponse, Status>>,
) {
    use sha2::Digest;
    use std::io::Read;
    const BLOB: usize = 32 * 1024;
    let send = |m: Result<SnapshotResponse, Status>| tx.blocking_send(m).is_ok();
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) => {
            send(Err(Status::internal(format!("snapshot image: {e}"))));
            return;
        }
    };
    let mut remaining = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; BLOB];
    while remaining > 0 {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                send(Err(Status::internal(format!("snapshot image: {e}"))));
                return;
            }
        };
        hasher.update(&buf[..n]);
        remaining = remaining.saturating_sub(n as u64);
        let blob = buf[..n].to_vec();
        if !send(Ok(SnapshotResponse {
            header: None,
            remaining_bytes: remaining,
            blob,
        })) {
            return;
        }
    }
    let digest = hasher.finalize().to_vec();
    send(Ok(SnapshotResponse {
        header: None,
        remaining_bytes: 0,
        blob: digest,
    }));
}

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    async fn alarm(
        &self,
        request: Request<AlarmRequest>,
    ) -> Result<Response<AlarmResponse>, Status> {
        // Every action goes through raft, as in etcd (alarms are replicated
        // state; GET is then linearizable).
        match self
            .node
            .write(Replicated::Alarm(request.into_inner()))
            .await
        {
            Ok(ApplyResponse::Alarm(r)) => Ok(Response::new(r)),
            Ok(_) => Err(mismatched_response()),
            Err(e) => Err(to_status(&e)),
        }
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
        _: Request<DefragmentRequest>,
    ) -> Result<Response<DefragmentResponse>, Status> {
        self.node.defragment().await.map_err(|e| to_status(&e))?;
        let header = self.node.header(true).await.map_err(|e| to_status(&e))?;
        Ok(Response::new(DefragmentResponse {
            header: Some(header),
        }))
    }

    async fn hash(&self, _: Request<HashRequest>) -> Result<Response<HashResponse>, Status> {
        // Member-local and for testing, as in etcd.
        match self.node.read(ReadRequest::Hash, false).await {
            Ok(ReadResponse::Hash(r)) => Ok(Response::new(r)),
            Ok(_) => Err(mismatched_response()),
            Err(e) => Err(to_status(&e)),
        }
    }

    async fn hash_kv(
        &self,
        request: Request<HashKvRequest>,
    ) -> Result<Response<HashKvResponse>, Status> {
        // Member-local, as etcd's: every member hashes its own store.
        match self
            .node
            .read(ReadRequest::HashKv(request.into_inner()), false)
            .await
        {
            Ok(ReadResponse::HashKv(r)) => Ok(Response::new(r)),
            Ok(_) => Err(mismatched_response()),
            Err(e) => Err(to_status(&e)),
        }
    }

    type SnapshotStream =
        Pin<Box<dyn Stream<Item = Result<SnapshotResponse, Status>> + Send + 'static>>;

    async fn snapshot(
        &self,
        _: Request<SnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        // 1. The apply actor writes a consistent image (an LMDB copy, whose
        //    size is a multiple of the page size, as etcdctl requires).
        // 2. It streams in 32 KiB blobs with the bytes still to come, then one
        //    more message holding the image's SHA-256 (etcd's format:
        //    `etcdctl snapshot save` checks size % 512 == 32).
        // 3. The image file goes when the stream ends.
        let path = self
            .node
            .backup_dir
            .join(format!("backup-{:x}.image", rand::random::<u64>()));
        self.node
            .backup(path.clone())
            .await
            .map_err(|e| to_status(&e))?;
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        tokio::task::spawn_blocking(move || {
            stream_image(&path, &tx);
            let _ = std::fs::remove_file(&path);
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
