//! Auth at apply: every member checks each replicated request's permissions
//! against its auth store (etcd's `authApplierV3`) and applies auth changes.
//!
//! 1. [`Applier::check_auth`] runs after the alarm check and before the
//!    request, with the user and auth revision the proposer read from the
//!    request's token: puts need write permission on the key (and on every
//!    key already attached to the lease they name, and read permission for
//!    `prev_kv`), deletes write permission on the range, txns read
//!    permission on every compare and range and write permission on every
//!    put and delete (top-level operations only, as etcd 3.4), lease revokes
//!    write permission on every attached key, auth administration the root
//!    role; UserGet is also open to the user itself and RoleGet to a holder
//!    of the role.
//! 2. [`Applier::auth_request`] applies an auth request to the store and
//!    puts the new record in the batch when it changed.

use proto::etcdserverpb::RequestOp;
use proto::etcdserverpb::request_op::Request as Op;
use proto::internal::internal_request::Request as Internal;

use super::apply::Applier;
use super::backend::BackendReader;
use crate::auth::tokens::SimpleTokens;
use crate::auth::{AuthError, AuthInfo, AuthReply, AuthStore};

impl<R: BackendReader + ?Sized> Applier<'_, R> {
    /// Whether `who` may make `request` (see the module docs).
    pub(crate) fn check_auth(&self, request: &Internal, who: &AuthInfo) -> Result<(), AuthError> {
        let auth = &self.state.auth;
        if !auth.is_enabled() {
            return Ok(());
        }
        match request {
            Internal::Put(p) => {
                auth.check_put(who, &p.key)?;
                self.check_lease_keys(p.lease, who)?;
                if p.prev_kv {
                    auth.check_range(who, &p.key, &[])?;
                }
                Ok(())
            }
            Internal::DeleteRange(d) => {
                auth.check_delete(who, &d.key, &d.range_end)?;
                if d.prev_kv {
                    auth.check_range(who, &d.key, &d.range_end)?;
                }
                Ok(())
            }
            Internal::Txn(t) => check_txn(auth, who, t),
            Internal::LeaseRevoke(r) => self.check_lease_keys(r.id, who),
            Internal::AuthUserGet(g) => match auth.check_admin(who) {
                Err(e) if g.name != who.username => Err(e),
                _ => Ok(()),
            },
            Internal::AuthRoleGet(g) => match auth.check_admin(who) {
                Err(e) if !auth.has_role(&who.username, &g.role) => Err(e),
                _ => Ok(()),
            },
            Internal::AuthEnable(_)
            | Internal::AuthDisable(_)
            | Internal::AuthUserAdd(_)
            | Internal::AuthUserDelete(_)
            | Internal::AuthUserChangePassword(_)
            | Internal::AuthUserGrantRole(_)
            | Internal::AuthUserRevokeRole(_)
            | Internal::AuthRoleAdd(_)
            | Internal::AuthRoleGrantPermission(_)
            | Internal::AuthRoleRevokePermission(_)
            | Internal::AuthRoleDelete(_)
            | Internal::AuthUserList(_)
            | Internal::AuthRoleList(_) => auth.check_admin(who),
            _ => Ok(()),
        }
    }

    /// etcd's `checkLeasePuts`: write permission on every key attached to
    /// the lease.
    fn check_lease_keys(&self, lease: i64, who: &AuthInfo) -> Result<(), AuthError> {
        if let Some(keys) = self.state.lease_keys.get(&lease) {
            for key in keys {
                self.state.auth.check_put(who, key)?;
            }
        }
        Ok(())
    }

    /// Applies an auth request at raft index `index`; `None` if `request`
    /// is not one.
    pub(crate) fn auth_request(
        &mut self,
        index: u64,
        request: &Internal,
    ) -> Option<Result<AuthReply, AuthError>> {
        let auth = &mut self.state.auth;
        let before = auth.revision();
        let enabled = auth.is_enabled();
        let reply = match request {
            Internal::AuthEnable(_) => auth.enable().map(|()| AuthReply::Done),
            Internal::AuthDisable(_) => {
                auth.disable();
                Ok(AuthReply::Done)
            }
            Internal::Authenticate(a) => auth.authenticate(&a.name).map(|()| {
                let token = if a.simple_token.is_empty() {
                    String::new()
                } else {
                    SimpleTokens::token(&a.simple_token, index)
                };
                AuthReply::Authenticated {
                    username: a.name.clone(),
                    revision: auth.revision(),
                    token,
                }
            }),
            Internal::AuthUserAdd(u) => auth
                .user_add(&u.name, u.hashed_password.clone(), u.options)
                .map(|()| AuthReply::Done),
            Internal::AuthUserDelete(u) => auth.user_delete(&u.name).map(|()| AuthReply::Done),
            Internal::AuthUserChangePassword(u) => auth
                .user_change_password(&u.name, u.hashed_password.clone())
                .map(|()| AuthReply::Done),
            Internal::AuthUserGrantRole(g) => auth
                .user_grant_role(&g.user, &g.role)
                .map(|()| AuthReply::Done),
            Internal::AuthUserRevokeRole(r) => auth
                .user_revoke_role(&r.name, &r.role)
                .map(|()| AuthReply::Done),
            Internal::AuthUserGet(g) => auth.user_get(&g.name).map(AuthReply::User),
            Internal::AuthUserList(_) => Ok(AuthReply::Users(auth.user_list())),
            Internal::AuthRoleAdd(r) => auth.role_add(&r.name).map(|()| AuthReply::Done),
            Internal::AuthRoleGet(r) => auth.role_get(&r.role).map(AuthReply::Role),
            Internal::AuthRoleList(_) => Ok(AuthReply::Roles(auth.role_list())),
            Internal::AuthRoleDelete(r) => auth.role_delete(&r.role).map(|()| AuthReply::Done),
            Internal::AuthRoleGrantPermission(g) => {
                auth.role_grant_permission(g).map(|()| AuthReply::Done)
            }
            Internal::AuthRoleRevokePermission(r) => {
                auth.role_revoke_permission(r).map(|()| AuthReply::Done)
            }
            _ => return None,
        };
        if auth.revision() != before || auth.is_enabled() != enabled {
            self.batch.auth = Some(auth.encode());
        }
        Some(reply)
    }
}

/// etcd's `checkTxnAuth`: compares and top-level operations.
pub fn check_txn(
    auth: &AuthStore,
    who: &AuthInfo,
    txn: &proto::etcdserverpb::TxnRequest,
) -> Result<(), AuthError> {
    for c in &txn.compare {
        auth.check_range(who, &c.key, &c.range_end)?;
    }
    check_ops(auth, who, &txn.success)?;
    check_ops(auth, who, &txn.failure)
}

fn check_ops(auth: &AuthStore, who: &AuthInfo, ops: &[RequestOp]) -> Result<(), AuthError> {
    for op in ops {
        match &op.request {
            Some(Op::RequestRange(r)) => auth.check_range(who, &r.key, &r.range_end)?,
            Some(Op::RequestPut(p)) => auth.check_put(who, &p.key)?,
            Some(Op::RequestDeleteRange(d)) => {
                if d.prev_kv {
                    auth.check_range(who, &d.key, &d.range_end)?;
                }
                auth.check_delete(who, &d.key, &d.range_end)?;
            }
            _ => {}
        }
    }
    Ok(())
}
