//! `etcdserverpb.Cluster`: the member table and changes to it.
//!
//! 1. MemberList is served from the local member table (not linearizable,
//!    as in etcd 3.4).
//! 2. MemberAdd, MemberRemove, MemberUpdate and MemberPromote are checked
//!    here against the local table as etcd's server does before proposing
//!    (URLs, unknown ids, a promotion of a voter, and under
//!    `--strict-reconfig-check` the started-member quorum and etcd's
//!    connectivity rule: an add needs every voter connected for 5 s, a
//!    removal of a connected voter must leave a connected quorum, else
//!    `etcdserver: unhealthy cluster`), then go through
//!    raft as one membership change each ([`NodeHandle::member_change`]).
//!    Every member validates the change again at apply, deterministically;
//!    a refused one reaches neither the table nor raft's configuration.
//! 3. MemberPromote needs the leader's view of the learner's progress: a
//!    follower forwards it to the leader's client URL (etcd forwards it too).
//! 4. Responses carry a header without a revision, as etcd's.

use std::time::{Duration, Instant};

use actors::messages::{ReadRequest, ReadResponse};
use proto::etcdserverpb::cluster_client::ClusterClient;
use proto::etcdserverpb::cluster_server::Cluster;
use proto::etcdserverpb::{
    Member, MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse,
    MemberPromoteRequest, MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse,
    MemberUpdateRequest, MemberUpdateResponse, ResponseHeader,
};
use proto::internal::MemberChange;
use proto::internal::member_change::Kind;
use storage::EtcdError;
use tonic::{Request, Response, Status};

use crate::errors::{reply, to_status};
use crate::handle::NodeHandle;
use crate::membership::{added_member_id, parse_member_urls};

/// The Cluster service.
pub struct ClusterService {
    node: NodeHandle,
    /// Serving clients (member changes need the root role when auth is on),
    /// not the other members on the peer port.
    client: bool,
}

impl ClusterService {
    /// The service on the client port.
    pub fn new(node: NodeHandle) -> Self {
        Self { node, client: true }
    }

    /// The service on the peer port, for other members (promotion forwarded
    /// to the leader after the forwarding member checked its client).
    pub fn for_peers(node: NodeHandle) -> Self {
        Self {
            node,
            client: false,
        }
    }

    /// etcd's `checkMembershipOperationPermission`: with auth on, member
    /// changes need the root role.
    async fn check_admin(&self, metadata: &tonic::metadata::MetadataMap) -> Result<(), Status> {
        if !self.client {
            return Ok(());
        }
        let who = self.node.who(metadata).await.map_err(|e| to_status(&e))?;
        self.node
            .auth_store()
            .check_admin(&who)
            .map_err(|e| to_status(&storage::EtcdError::Auth(e)))
    }

    /// Cluster responses carry no revision in etcd 3.4.
    async fn header(&self) -> Result<ResponseHeader, Status> {
        self.node.header(false).await.map_err(|e| to_status(&e))
    }

    async fn members(&self) -> Result<Vec<Member>, Status> {
        Ok(reply!(
            self.node.read(ReadRequest::MemberList, false).await,
            ReadResponse::MemberList
        )?
        .into_inner())
    }

    async fn change(&self, kind: Kind, member: Member) -> Result<Vec<Member>, Status> {
        self.node
            .member_change(MemberChange {
                kind: kind as i32,
                member: Some(member),
            })
            .await
            .map_err(|e| to_status(&e))
    }

    /// A promotion on the leader, or forwarded to it.
    async fn promote(&self, id: u64) -> Result<Vec<Member>, Status> {
        let member = Member {
            id,
            ..Default::default()
        };
        match self
            .node
            .member_change(MemberChange {
                kind: Kind::Promote as i32,
                member: Some(member),
            })
            .await
        {
            Err(EtcdError::NotLeader) => {
                let channel = self
                    .node
                    .leader_channel()
                    .await
                    .map_err(|e| to_status(&e))?;
                let forwarded = ClusterClient::new(channel)
                    .member_promote(MemberPromoteRequest { id })
                    .await?;
                Ok(forwarded.into_inner().members)
            }
            other => other.map_err(|e| to_status(&e)),
        }
    }
}

/// etcd's `IsReadyToAddVotingMember`, `IsReadyToRemoveVotingMember` and
/// `IsReadyToPromoteMember`: after the change, the voters that have started
/// (published their name) must still make a quorum of the voters.
fn enough_started(voters_after: usize, started_after: usize) -> bool {
    started_after > voters_after / 2
}

fn started(m: &Member) -> bool {
    !m.name.is_empty()
}

/// etcd's `HealthInterval`: a peer counts as connected once its connection
/// has been up this long.
const HEALTH_INTERVAL: Duration = Duration::from_secs(5);

impl ClusterService {
    /// etcd's `isConnectedSince`: a connection to `peer` up for at least
    /// [`HEALTH_INTERVAL`] (this member always counts).
    fn connected(&self, peer: u64, now: Instant) -> bool {
        peer == self.node.member_id
            || self
                .node
                .connected_since(peer)
                .is_some_and(|since| now.saturating_duration_since(since) >= HEALTH_INTERVAL)
    }

    /// etcd's `mayAddMember` connectivity part: every voter connected.
    fn check_all_connected(&self, members: &[Member]) -> Result<(), Status> {
        let now = Instant::now();
        let all = members
            .iter()
            .filter(|m| !m.is_learner)
            .all(|m| self.connected(m.id, now));
        if all {
            Ok(())
        } else {
            Err(to_status(&EtcdError::Unhealthy))
        }
    }

    /// etcd's `mayRemoveMember` connectivity part: a member without a
    /// connection may go; otherwise the connected voters minus the removed
    /// one must still make a quorum.
    fn check_removal_keeps_quorum(&self, members: &[Member], id: u64) -> Result<(), Status> {
        if id != self.node.member_id && self.node.connected_since(id).is_none() {
            return Ok(());
        }
        let now = Instant::now();
        let voters: Vec<&Member> = members.iter().filter(|m| !m.is_learner).collect();
        let active = voters.iter().filter(|m| self.connected(m.id, now)).count();
        if active.saturating_sub(1) < 1 + (voters.len().saturating_sub(1)) / 2 {
            return Err(to_status(&EtcdError::Unhealthy));
        }
        Ok(())
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(
        &self,
        request: Request<MemberAddRequest>,
    ) -> Result<Response<MemberAddResponse>, Status> {
        let metadata = request.metadata().clone();
        let request = request.into_inner();
        let urls = parse_member_urls(&request.peer_ur_ls).map_err(|e| to_status(&e))?;
        self.check_admin(&metadata).await?;
        let members = self.members().await?;
        if self.node.limits.strict_reconfig_check && !request.is_learner {
            let voters: Vec<&Member> = members.iter().filter(|m| !m.is_learner).collect();
            let started_voters = voters.iter().filter(|m| started(m)).count();
            // A single started member may always add a second one (etcd:
            // "adding a new node to 1-member cluster for restoring data").
            let second = started_voters == 1 && voters.len() == 1;
            if !second && !enough_started(voters.len() + 1, started_voters) {
                return Err(to_status(&EtcdError::MemberNotEnoughStarted));
            }
        }
        if self.node.limits.strict_reconfig_check {
            self.check_all_connected(&members)?;
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let member = Member {
            id: added_member_id(&urls, now),
            peer_ur_ls: urls,
            is_learner: request.is_learner,
            ..Default::default()
        };
        let kind = if request.is_learner {
            Kind::AddLearner
        } else {
            Kind::Add
        };
        let members = self.change(kind, member.clone()).await?;
        Ok(Response::new(MemberAddResponse {
            header: Some(self.header().await?),
            member: Some(member),
            members,
        }))
    }

    async fn member_remove(
        &self,
        request: Request<MemberRemoveRequest>,
    ) -> Result<Response<MemberRemoveResponse>, Status> {
        self.check_admin(request.metadata()).await?;
        let id = request.into_inner().id;
        let members = self.members().await?;
        let target = members
            .iter()
            .find(|m| m.id == id)
            .ok_or_else(|| to_status(&EtcdError::MemberNotFound))?;
        if self.node.limits.strict_reconfig_check && !target.is_learner {
            let voters: Vec<&Member> = members
                .iter()
                .filter(|m| !m.is_learner && m.id != id)
                .collect();
            let started_voters = voters.iter().filter(|m| started(m)).count();
            if !enough_started(voters.len(), started_voters) {
                return Err(to_status(&EtcdError::MemberNotEnoughStarted));
            }
            self.check_removal_keeps_quorum(&members, id)?;
        }
        let members = self
            .change(
                Kind::Remove,
                Member {
                    id,
                    ..Default::default()
                },
            )
            .await?;
        Ok(Response::new(MemberRemoveResponse {
            header: Some(self.header().await?),
            members,
        }))
    }

    async fn member_update(
        &self,
        request: Request<MemberUpdateRequest>,
    ) -> Result<Response<MemberUpdateResponse>, Status> {
        let metadata = request.metadata().clone();
        let request = request.into_inner();
        let urls = parse_member_urls(&request.peer_ur_ls).map_err(|e| to_status(&e))?;
        self.check_admin(&metadata).await?;
        let members = self
            .change(
                Kind::Update,
                Member {
                    id: request.id,
                    peer_ur_ls: urls,
                    ..Default::default()
                },
            )
            .await?;
        Ok(Response::new(MemberUpdateResponse {
            header: Some(self.header().await?),
            members,
        }))
    }

    async fn member_list(
        &self,
        _: Request<MemberListRequest>,
    ) -> Result<Response<MemberListResponse>, Status> {
        let members = self.members().await?;
        Ok(Response::new(MemberListResponse {
            header: Some(self.header().await?),
            members,
        }))
    }

    async fn member_promote(
        &self,
        request: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        self.check_admin(request.metadata()).await?;
        let id = request.into_inner().id;
        let members = self.members().await?;
        let target = members
            .iter()
            .find(|m| m.id == id)
            .ok_or_else(|| to_status(&EtcdError::MemberNotFound))?;
        if !target.is_learner {
            return Err(to_status(&EtcdError::MemberNotLearner));
        }
        if self.node.limits.strict_reconfig_check {
            // etcd counts the learner as started.
            let voters: Vec<&Member> = members.iter().filter(|m| !m.is_learner).collect();
            let started_voters = voters.iter().filter(|m| started(m)).count() + 1;
            if !enough_started(voters.len() + 1, started_voters) {
                return Err(to_status(&EtcdError::MemberNotEnoughStarted));
            }
        }
        let members = self.promote(id).await?;
        Ok(Response::new(MemberPromoteResponse {
            header: Some(self.header().await?),
            members,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::enough_started;

    #[test]
    fn started_quorum_as_etcd_counts_it() {
        // Two voters, one never started: a third would leave 1 of 3.
        assert!(!enough_started(3, 1));
        // Three started, one removed: 2 of 2.
        assert!(enough_started(2, 2));
        // Three voters, one never started, a started one removed: 1 of 2.
        assert!(!enough_started(2, 1));
        // Five voters, three started: a quorum.
        assert!(enough_started(5, 3));
    }
}
