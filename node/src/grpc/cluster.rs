//! `etcdserverpb.Cluster`: MemberList is served from the member table (local,
//! not linearizable, as in etcd 3.4); membership changes answer
//! `Unimplemented` until they are built.

use actors::messages::{ReadRequest, ReadResponse};
use proto::etcdserverpb::cluster_server::Cluster;
use proto::etcdserverpb::{
    MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse,
    MemberPromoteRequest, MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse,
    MemberUpdateRequest, MemberUpdateResponse, ResponseHeader,
};
use tonic::{Request, Response, Status};

use crate::errors::{reply, to_status};
use crate::handle::NodeHandle;

/// The Cluster service.
pub struct ClusterService {
    node: NodeHandle,
}

impl ClusterService {
    pub fn new(node: NodeHandle) -> Self {
        Self { node }
    }

    /// Cluster responses carry no revision in etcd 3.4.
    async fn header(&self) -> Result<ResponseHeader, Status> {
        self.node.header(false).await.map_err(|e| to_status(&e))
    }
}

fn not_yet(what: &str) -> Status {
    Status::unimplemented(format!("oxcd: Cluster.{what} is not implemented yet"))
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(
        &self,
        _: Request<MemberAddRequest>,
    ) -> Result<Response<MemberAddResponse>, Status> {
        Err(not_yet("MemberAdd"))
    }

    async fn member_remove(
        &self,
        _: Request<MemberRemoveRequest>,
    ) -> Result<Response<MemberRemoveResponse>, Status> {
        Err(not_yet("MemberRemove"))
    }

    async fn member_update(
        &self,
        _: Request<MemberUpdateRequest>,
    ) -> Result<Response<MemberUpdateResponse>, Status> {
        Err(not_yet("MemberUpdate"))
    }

    async fn member_list(
        &self,
        _: Request<MemberListRequest>,
    ) -> Result<Response<MemberListResponse>, Status> {
        let members = reply!(
            self.node.read(ReadRequest::MemberList, false).await,
            ReadResponse::MemberList
        )?
        .into_inner();
        Ok(Response::new(MemberListResponse {
            header: Some(self.header().await?),
            members,
        }))
    }

    async fn member_promote(
        &self,
        _: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        Err(not_yet("MemberPromote"))
    }
}
