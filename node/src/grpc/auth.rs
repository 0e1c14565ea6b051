//! `etcdserverpb.Auth`: users, roles, permissions and tokens, as etcd 3.4
//! serves them.
//!
//! 1. Every request but Authenticate goes through raft as it is (UserAdd
//!    and UserChangePassword with the password bcrypt-hashed first, on a
//!    blocking thread), made by the user its token names; the auth store
//!    checks at apply that the user holds the root role (UserGet is also
//!    open to the user itself, RoleGet to a holder of the role), on every
//!    member alike.
//! 2. Authenticate, as etcd's: a linearizable barrier, the password checked
//!    against the stored hash off the apply path, then an Authenticate entry
//!    through raft that assigns the token on every member (simple tokens) or
//!    lets this member sign one (JWT). If the auth store changed between the
//!    check and the apply, the password is checked again.
//! 3. Responses carry etcd's header: ids, term and the store revision.

use proto::etcdserverpb::auth_server::Auth;
use proto::etcdserverpb::*;
use proto::internal::internal_request::Request as Replicated;
use storage::EtcdError;
use storage::auth::tokens::{PREFIX_LEN, SimpleTokens};
use storage::auth::{AuthError, AuthReply};
use storage::mvcc::ApplyResponse;
use tonic::{Request, Response, Status};

use crate::auth::Authenticator;
use crate::errors::{mismatched_response, to_status};
use crate::handle::NodeHandle;

/// How many times Authenticate checks a password again when the auth store
/// keeps changing under it (etcd loops until it holds; a bound keeps a
/// stream of auth changes from pinning a request).
const AUTHENTICATE_ROUNDS: usize = 8;

/// The Auth service.
pub struct AuthService {
    node: NodeHandle,
}

impl AuthService {
    pub fn new(node: NodeHandle) -> Self {
        Self { node }
    }

    /// Proposes `request` as the caller of `metadata` and answers its reply.
    async fn replicate(
        &self,
        metadata: &tonic::metadata::MetadataMap,
        request: Replicated,
    ) -> Result<(AuthReply, ResponseHeader), Status> {
        let who = self.node.who(metadata).await.map_err(|e| to_status(&e))?;
        let reply = match self.node.write_as(request, &who).await {
            Ok(ApplyResponse::Auth(reply)) => reply,
            Ok(_) => return Err(mismatched_response()),
            Err(e) => return Err(to_status(&e)),
        };
        let header = self.node.header(true).await.map_err(|e| to_status(&e))?;
        Ok((reply, header))
    }

    /// bcrypt of `password` on a blocking thread.
    async fn hash(&self, password: String) -> Result<Vec<u8>, Status> {
        let authn = self.node.authn.clone();
        self.node
            .authn
            .bcrypt(move || authn.hash_password(&password))
            .await
            .ok_or_else(|| Status::internal("password hashing stopped"))?
            .map_err(|e| to_status(&EtcdError::Auth(e)))
    }

    /// etcd's `CheckPassword`: the auth revision the password was checked
    /// at.
    async fn check_password(&self, name: &str, password: &str) -> Result<u64, EtcdError> {
        let (hash, revision) = self.node.auth_store().password_hash(name)?;
        let password = password.to_owned();
        let matches = self
            .node
            .authn
            .bcrypt(move || Authenticator::password_matches(&password, &hash))
            .await
            .unwrap_or(false);
        if !matches {
            tracing::info!(user = name, "authentication failed, invalid password");
            return Err(AuthError::AuthFailed.into());
        }
        Ok(revision)
    }
}

/// Answers an RPC whose reply is plain success: the response type with
/// only its header.
macro_rules! done {
    ($self:ident, $request:ident, $variant:ident, $response:ident) => {{
        let metadata = $request.metadata().clone();
        let (reply, header) = $self
            .replicate(&metadata, Replicated::$variant($request.into_inner()))
            .await?;
        match reply {
            AuthReply::Done => Ok(Response::new($response {
                header: Some(header),
            })),
            _ => Err(mismatched_response()),
        }
    }};
}

#[tonic::async_trait]
impl Auth for AuthService {
    async fn auth_enable(
        &self,
        request: Request<AuthEnableRequest>,
    ) -> Result<Response<AuthEnableResponse>, Status> {
        done!(self, request, AuthEnable, AuthEnableResponse)
    }

    async fn auth_disable(
        &self,
        request: Request<AuthDisableRequest>,
    ) -> Result<Response<AuthDisableResponse>, Status> {
        done!(self, request, AuthDisable, AuthDisableResponse)
    }

    async fn auth_status(
        &self,
        request: Request<AuthStatusRequest>,
    ) -> Result<Response<AuthStatusResponse>, Status> {
        let status = |e: EtcdError| to_status(&e);
        let who = self.node.who(request.metadata()).await.map_err(status)?;
        self.node
            .read(actors::messages::ReadRequest::MemberList, true)
            .await
            .map_err(status)?;
        let auth = self.node.auth_store();
        auth.check_admin(&who)
            .map_err(|e| status(EtcdError::Auth(e)))?;
        let header = self.node.header(true).await.map_err(status)?;
        Ok(Response::new(AuthStatusResponse {
            header: Some(header),
            enabled: auth.is_enabled(),
            auth_revision: auth.revision(),
        }))
    }

    async fn authenticate(
        &self,
        request: Request<AuthenticateRequest>,
    ) -> Result<Response<AuthenticateResponse>, Status> {
        let metadata = request.metadata().clone();
        let req = request.into_inner();
        let status = |e: EtcdError| to_status(&e);
        self.node
            .read(actors::messages::ReadRequest::MemberList, true)
            .await
            .map_err(status)?;
        for _ in 0..AUTHENTICATE_ROUNDS {
            let checked = self
                .check_password(&req.name, &req.password)
                .await
                .map_err(status)?;
            let prefix = if self.node.authn.simple() {
                SimpleTokens::prefix_from(rand::random::<[u8; PREFIX_LEN]>())
            } else {
                String::new()
            };
            let internal = proto::internal::Authenticate {
                name: req.name.clone(),
                simple_token: prefix,
            };
            let (reply, header) = self
                .replicate(&metadata, Replicated::Authenticate(internal))
                .await?;
            let AuthReply::Authenticated {
                username,
                revision,
                token,
            } = reply
            else {
                return Err(mismatched_response());
            };
            if checked != self.node.auth_store().revision() {
                tracing::info!(user = %username, "auth store changed during authentication; checking again");
                continue;
            }
            let token = if self.node.authn.simple() {
                token
            } else {
                self.node
                    .authn
                    .sign(&username, revision)
                    .map_err(|e| Status::unknown(e.to_string()))?
            };
            return Ok(Response::new(AuthenticateResponse {
                header: Some(header),
                token,
            }));
        }
        Err(to_status(&EtcdError::Timeout))
    }

    async fn user_add(
        &self,
        request: Request<AuthUserAddRequest>,
    ) -> Result<Response<AuthUserAddResponse>, Status> {
        let metadata = request.metadata().clone();
        let req = request.into_inner();
        let no_password = req.options.as_ref().is_some_and(|o| o.no_password);
        let hashed_password = if no_password || req.name.is_empty() {
            Vec::new()
        } else {
            self.hash(req.password).await?
        };
        let internal = proto::internal::AuthUserAdd {
            name: req.name,
            hashed_password,
            options: req.options,
        };
        let (reply, header) = self
            .replicate(&metadata, Replicated::AuthUserAdd(internal))
            .await?;
        match reply {
            AuthReply::Done => Ok(Response::new(AuthUserAddResponse {
                header: Some(header),
            })),
            _ => Err(mismatched_response()),
        }
    }

    async fn user_get(
        &self,
        request: Request<AuthUserGetRequest>,
    ) -> Result<Response<AuthUserGetResponse>, Status> {
        let metadata = request.metadata().clone();
        let (reply, header) = self
            .replicate(&metadata, Replicated::AuthUserGet(request.into_inner()))
            .await?;
        match reply {
            AuthReply::User(mut r) => {
                r.header = Some(header);
                Ok(Response::new(r))
            }
            _ => Err(mismatched_response()),
        }
    }

    async fn user_list(
        &self,
        request: Request<AuthUserListRequest>,
    ) -> Result<Response<AuthUserListResponse>, Status> {
        let metadata = request.metadata().clone();
        let (reply, header) = self
            .replicate(&metadata, Replicated::AuthUserList(request.into_inner()))
            .await?;
        match reply {
            AuthReply::Users(mut r) => {
                r.header = Some(header);
                Ok(Response::new(r))
            }
            _ => Err(mismatched_response()),
        }
    }

    async fn user_delete(
        &self,
        request: Request<AuthUserDeleteRequest>,
    ) -> Result<Response<AuthUserDeleteResponse>, Status> {
        done!(self, request, AuthUserDelete, AuthUserDeleteResponse)
    }

    async fn user_change_password(
        &self,
        request: Request<AuthUserChangePasswordRequest>,
    ) -> Result<Response<AuthUserChangePasswordResponse>, Status> {
        let metadata = request.metadata().clone();
        let req = request.into_inner();
        let internal = proto::internal::AuthUserChangePassword {
            name: req.name,
            hashed_password: self.hash(req.password).await?,
        };
        let (reply, header) = self
            .replicate(&metadata, Replicated::AuthUserChangePassword(internal))
            .await?;
        match reply {
            AuthReply::Done => Ok(Response::new(AuthUserChangePasswordResponse {
                header: Some(header),
            })),
            _ => Err(mismatched_response()),
        }
    }

    async fn user_grant_role(
        &self,
        request: Request<AuthUserGrantRoleRequest>,
    ) -> Result<Response<AuthUserGrantRoleResponse>, Status> {
        done!(self, request, AuthUserGrantRole, AuthUserGrantRoleResponse)
    }

    async fn user_revoke_role(
        &self,
        request: Request<AuthUserRevokeRoleRequest>,
    ) -> Result<Response<AuthUserRevokeRoleResponse>, Status> {
        done!(
            self,
            request,
            AuthUserRevokeRole,
            AuthUserRevokeRoleResponse
        )
    }

    async fn role_add(
        &self,
        request: Request<AuthRoleAddRequest>,
    ) -> Result<Response<AuthRoleAddResponse>, Status> {
        done!(self, request, AuthRoleAdd, AuthRoleAddResponse)
    }

    async fn role_get(
        &self,
        request: Request<AuthRoleGetRequest>,
    ) -> Result<Response<AuthRoleGetResponse>, Status> {
        let metadata = request.metadata().clone();
        let (reply, header) = self
            .replicate(&metadata, Replicated::AuthRoleGet(request.into_inner()))
            .await?;
        match reply {
            AuthReply::Role(mut r) => {
                r.header = Some(header);
                Ok(Response::new(r))
            }
            _ => Err(mismatched_response()),
        }
    }

    async fn role_list(
        &self,
        request: Request<AuthRoleListRequest>,
    ) -> Result<Response<AuthRoleListResponse>, Status> {
        let metadata = request.metadata().clone();
        let (reply, header) = self
            .replicate(&metadata, Replicated::AuthRoleList(request.into_inner()))
            .await?;
        match reply {
            AuthReply::Roles(mut r) => {
                r.header = Some(header);
                Ok(Response::new(r))
            }
            _ => Err(mismatched_response()),
        }
    }

    async fn role_delete(
        &self,
        request: Request<AuthRoleDeleteRequest>,
    ) -> Result<Response<AuthRoleDeleteResponse>, Status> {
        done!(self, request, AuthRoleDelete, AuthRoleDeleteResponse)
    }

    async fn role_grant_permission(
        &self,
        request: Request<AuthRoleGrantPermissionRequest>,
    ) -> Result<Response<AuthRoleGrantPermissionResponse>, Status> {
        done!(
            self,
            request,
            AuthRoleGrantPermission,
            AuthRoleGrantPermissionResponse
        )
    }

    async fn role_revoke_permission(
        &self,
        request: Request<AuthRoleRevokePermissionRequest>,
    ) -> Result<Response<AuthRoleRevokePermissionResponse>, Status> {
        done!(
            self,
            request,
            AuthRoleRevokePermission,
            AuthRoleRevokePermissionResponse
        )
    }
}
