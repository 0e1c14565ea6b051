//! The member table's replicated changes: etcd's `ValidateConfigurationChange`
//! and `AddMember`/`RemoveMember`/`PromoteMember`/`UpdateRaftAttributes`, run
//! at apply on every member alike.
//!
//! 1. A [`MemberChange`] is checked against the table as it stands at its
//!    entry, so every member reaches the same verdict: a removed id is never
//!    reused (`member not found`), an added id must be new (`member ID
//!    already exist`) and its peer URLs unused (`Peer URLs already exists`),
//!    at most one learner (`too many learner members in cluster`), a removed,
//!    promoted or updated member must exist, a promoted one must be a
//!    learner.
//! 2. An accepted change updates the table and the batch; a removed member
//!    stays in the table as an empty record (etcd's `members_removed`), so
//!    its id is refused for good.
//! 3. The caller (the apply actor) hands only accepted add, remove and
//!    promote changes on to raft's configuration; a refused one leaves both
//!    alone, and its proposer gets the error.

use proto::Message as _;
use proto::etcdserverpb::Member;
use proto::internal::MemberChange;
use proto::internal::member_change::Kind;

use super::apply::Applier;
use super::backend::BackendReader;
use crate::error::EtcdError;

/// etcd 3.4's limit on learners in a cluster (`maxLearners`).
pub const MAX_LEARNERS: usize = 1;

impl<R: BackendReader + ?Sized> Applier<'_, R> {
    /// Applies one membership change (see the module docs); answers the
    /// member table after it.
    pub(crate) fn member_change(
        &mut self,
        change: &MemberChange,
    ) -> Result<Vec<Member>, EtcdError> {
        let Some(member) = change.member.as_ref() else {
            return Err(EtcdError::MemberNotFound);
        };
        let id = member.id;
        if self.state.removed_members.contains(&id) {
            return Err(EtcdError::MemberNotFound);
        }
        let kind = Kind::try_from(change.kind).map_err(|_| EtcdError::MemberNotFound)?;
        let existing = self.state.members.get(&id).cloned();
        let updated = match kind {
            Kind::Add | Kind::AddLearner => {
                if existing.is_some() {
                    return Err(EtcdError::MemberExist);
                }
                self.check_peer_urls(id, &member.peer_ur_ls)?;
                let learner = kind == Kind::AddLearner;
                if learner && self.learners() >= MAX_LEARNERS {
                    return Err(EtcdError::TooManyLearners);
                }
                Some(Member {
                    id,
                    name: String::new(),
                    peer_ur_ls: member.peer_ur_ls.clone(),
                    client_ur_ls: Vec::new(),
                    is_learner: learner,
                })
            }
            Kind::Remove => {
                existing.ok_or(EtcdError::MemberNotFound)?;
                None
            }
            Kind::Promote => {
                let mut m = existing.ok_or(EtcdError::MemberNotFound)?;
                if !m.is_learner {
                    return Err(EtcdError::MemberNotLearner);
                }
                m.is_learner = false;
                Some(m)
            }
            Kind::Update => {
                let mut m = existing.ok_or(EtcdError::MemberNotFound)?;
                self.check_peer_urls(id, &member.peer_ur_ls)?;
                m.peer_ur_ls = member.peer_ur_ls.clone();
                Some(m)
            }
        };
        match updated {
            Some(m) => {
                self.batch.members.insert(id, Some(m.encode_to_vec()));
                self.state.members.insert(id, m);
            }
            None => {
                // The empty record marks the id removed for good.
                self.batch.members.insert(id, Some(Vec::new()));
                self.state.members.remove(&id);
                self.state.removed_members.insert(id);
            }
        }
        Ok(self.state.members.values().cloned().collect())
    }

    /// A peer URL may belong to one member only.
    fn check_peer_urls(&self, id: u64, urls: &[String]) -> Result<(), EtcdError> {
        let taken = self
            .state
            .members
            .values()
            .filter(|m| m.id != id)
            .flat_map(|m| m.peer_ur_ls.iter())
            .any(|u| urls.contains(u));
        if taken {
            return Err(EtcdError::PeerUrlExist);
        }
        Ok(())
    }

    fn learners(&self) -> usize {
        self.state.members.values().filter(|m| m.is_learner).count()
    }

    /// A member publishes its name and client URLs (etcd's attribute
    /// update); unknown (e.g. removed) members are ignored.
    pub(crate) fn member_attributes(&mut self, attrs: &proto::internal::MemberAttributes) {
        if let Some(member) = self.state.members.get_mut(&attrs.member_id) {
            member.name = attrs.name.clone();
            member.client_ur_ls = attrs.client_urls.clone();
            self.batch
                .members
                .insert(attrs.member_id, Some(member.encode_to_vec()));
        }
    }
}
