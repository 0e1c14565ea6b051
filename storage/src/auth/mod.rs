//! etcd's auth store: users, roles, key-range permissions, the enabled flag
//! and the auth revision, replicated through raft and applied alike on
//! every member (etcd's `auth/store.go`).
//!
//! 1. Every change (enable, disable, user and role changes) is a replicated
//!    request, checked and applied here at apply. A change that alters what
//!    a token may do bumps the auth revision; a request checked against an
//!    older revision is refused (`auth revision is old`).
//! 2. Passwords arrive bcrypt-hashed by the proposing member and are checked
//!    by the facade against the hash it reads here: no bcrypt on the apply
//!    path.
//! 3. Permission checks ([`AuthStore::check_range`], [`check_put`],
//!    [`check_admin`]) take the requester's [`AuthInfo`] (user name and the
//!    auth revision its token was checked at) and answer as etcd's
//!    `isOpPermitted` and `IsAdminPermitted`.
//! 4. The store persists as one [`AuthState`] record in the MVCC backend.
//!
//! [`check_put`]: AuthStore::check_put
//! [`check_admin`]: AuthStore::check_admin

mod perms;
pub mod tokens;

use std::collections::BTreeMap;

use proto::Message as _;
use proto::authpb::{Permission, Role, User, UserAddOptions};
use proto::etcdserverpb::{
    AuthRoleGetResponse, AuthRoleGrantPermissionRequest, AuthRoleListResponse,
    AuthRoleRevokePermissionRequest, AuthUserGetResponse, AuthUserListResponse,
};
use proto::internal::AuthState;

pub use perms::UserPerms;

/// The user and role etcd treats as administrators.
pub const ROOT: &str = "root";

/// etcd's auth errors, worded as etcd 3.4 sends them over gRPC
/// (`rpctypes/error.go`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("etcdserver: root user does not exist")]
    RootUserNotExist,
    #[error("etcdserver: root user does not have root role")]
    RootRoleNotExist,
    #[error("etcdserver: user name already exists")]
    UserAlreadyExist,
    #[error("etcdserver: user name is empty")]
    UserEmpty,
    #[error("etcdserver: user name not found")]
    UserNotFound,
    #[error("etcdserver: role name already exists")]
    RoleAlreadyExist,
    #[error("etcdserver: role name not found")]
    RoleNotFound,
    #[error("etcdserver: role name is empty")]
    RoleEmpty,
    #[error("etcdserver: authentication failed, invalid user ID or password")]
    AuthFailed,
    /// Not in etcd's gRPC error map: sent with its internal text, as
    /// Unknown.
    #[error("auth: authentication failed, password was given for no password user")]
    NoPasswordUser,
    #[error("etcdserver: permission denied")]
    PermissionDenied,
    #[error("etcdserver: role is not granted to the user")]
    RoleNotGranted,
    #[error("etcdserver: permission is not granted to the role")]
    PermissionNotGranted,
    #[error("etcdserver: authentication is not enabled")]
    AuthNotEnabled,
    #[error("etcdserver: invalid auth token")]
    InvalidAuthToken,
    #[error("etcdserver: invalid auth management")]
    InvalidAuthMgmt,
    #[error("etcdserver: revision of auth store is old")]
    AuthOldRevision,
}

impl AuthError {
    /// The error's text inside etcd (`auth/store.go`), which the maintenance
    /// service sends unmapped (as gRPC Unknown).
    pub fn internal_text(&self) -> &'static str {
        use AuthError::*;
        match self {
            RootUserNotExist => "auth: root user does not exist",
            RootRoleNotExist => "auth: root user does not have root role",
            UserAlreadyExist => "auth: user already exists",
            UserEmpty => "auth: user name is empty",
            UserNotFound => "auth: user not found",
            RoleAlreadyExist => "auth: role already exists",
            RoleNotFound => "auth: role not found",
            RoleEmpty => "auth: role name is empty",
            AuthFailed => "auth: authentication failed, invalid user ID or password",
            NoPasswordUser => {
                "auth: authentication failed, password was given for no password user"
            }
            PermissionDenied => "auth: permission denied",
            RoleNotGranted => "auth: role is not granted to the user",
            PermissionNotGranted => "auth: permission is not granted to the role",
            AuthNotEnabled => "auth: authentication is not enabled",
            InvalidAuthToken => "auth: invalid auth token",
            InvalidAuthMgmt => "auth: invalid auth management",
            AuthOldRevision => "auth: revision in header is old",
        }
    }
}

/// Who makes a request: the user its token names and the auth revision the
/// token was checked at (etcd's `AuthInfo`). The default (no token) has an
/// empty name and revision 0.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthInfo {
    pub username: String,
    pub revision: u64,
}

/// The replicated auth state (see the module docs).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuthStore {
    enabled: bool,
    revision: u64,
    users: BTreeMap<String, User>,
    roles: BTreeMap<String, Role>,
    /// Each user's merged permissions, rebuilt after every change (etcd's
    /// `rangePermCache`).
    perms: BTreeMap<String, UserPerms>,
}

impl AuthStore {
    /// A fresh store: disabled, no users or roles, revision 1 (etcd commits
    /// revision 1 when it creates the auth buckets).
    pub fn new() -> AuthStore {
        AuthStore {
            revision: 1,
            ..AuthStore::default()
        }
    }

    /// The store as persisted; `None` (never persisted) is a fresh store.
    pub fn decode(bytes: Option<&[u8]>) -> Result<AuthStore, proto::prost::DecodeError> {
        let Some(bytes) = bytes else {
            return Ok(AuthStore::new());
        };
        Ok(AuthStore::from_state(AuthState::decode(bytes)?))
    }

    /// The store from its record.
    pub fn from_state(state: AuthState) -> AuthStore {
        let mut store = AuthStore {
            enabled: state.enabled,
            revision: state.revision,
            users: state
                .users
                .into_iter()
                .map(|u| (String::from_utf8_lossy(&u.name).into_owned(), u))
                .collect(),
            roles: state
                .roles
                .into_iter()
                .map(|r| (String::from_utf8_lossy(&r.name).into_owned(), r))
                .collect(),
            perms: BTreeMap::new(),
        };
        store.refresh_perms();
        store
    }

    /// The record to persist.
    pub fn to_state(&self) -> AuthState {
        AuthState {
            enabled: self.enabled,
            revision: self.revision,
            users: self.users.values().cloned().collect(),
            roles: self.roles.values().cloned().collect(),
        }
    }

    /// The record, encoded.
    pub fn encode(&self) -> Vec<u8> {
        self.to_state().encode_to_vec()
    }

    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// A user as stored (with its password hash).
    pub fn user(&self, name: &str) -> Option<&User> {
        self.users.get(name)
    }

    /// Whether the user holds the role (etcd's `HasRole`).
    pub fn has_role(&self, user: &str, role: &str) -> bool {
        self.users
            .get(user)
            .is_some_and(|u| u.roles.iter().any(|r| r == role))
    }

    fn commit_revision(&mut self) {
        self.revision += 1;
    }

    fn refresh_perms(&mut self) {
        let roles = &self.roles;
        self.perms = self
            .users
            .iter()
            .map(|(name, user)| {
                let perms = user
                    .roles
                    .iter()
                    .filter_map(|r| roles.get(r))
                    .flat_map(|r| r.key_permission.iter());
                (name.clone(), UserPerms::merge(perms))
            })
            .collect();
    }

    // ---- permission checks (etcd's isOpPermitted / IsAdminPermitted) ----

    fn check_op(
        &self,
        info: &AuthInfo,
        key: &[u8],
        range_end: &[u8],
        write: bool,
    ) -> Result<(), AuthError> {
        if !self.enabled {
            return Ok(());
        }
        if info.revision == 0 {
            return Err(AuthError::UserEmpty);
        }
        if info.revision < self.revision {
            return Err(AuthError::AuthOldRevision);
        }
        let Some(user) = self.users.get(&info.username) else {
            return Err(AuthError::PermissionDenied);
        };
        if user.roles.iter().any(|r| r == ROOT) {
            return Ok(());
        }
        let allowed = self
            .perms
            .get(&info.username)
            .is_some_and(|p| p.allows(key, range_end, write));
        if allowed {
            Ok(())
        } else {
            Err(AuthError::PermissionDenied)
        }
    }

    /// Read permission on a key or range (etcd's `IsRangePermitted`).
    pub fn check_range(&self, info: &AuthInfo, key: &[u8], end: &[u8]) -> Result<(), AuthError> {
        self.check_op(info, key, end, false)
    }

    /// Write permission on a key (etcd's `IsPutPermitted`).
    pub fn check_put(&self, info: &AuthInfo, key: &[u8]) -> Result<(), AuthError> {
        self.check_op(info, key, &[], true)
    }

    /// Write permission on a key or range (etcd's `IsDeleteRangePermitted`).
    pub fn check_delete(&self, info: &AuthInfo, key: &[u8], end: &[u8]) -> Result<(), AuthError> {
        self.check_op(info, key, end, true)
    }

    /// Whether the requester holds the root role (etcd's
    /// `IsAdminPermitted`).
    pub fn check_admin(&self, info: &AuthInfo) -> Result<(), AuthError> {
        if !self.enabled {
            return Ok(());
        }
        if info.username.is_empty() {
            return Err(AuthError::UserEmpty);
        }
        let Some(user) = self.users.get(&info.username) else {
            return Err(AuthError::UserNotFound);
        };
        if user.roles.iter().any(|r| r == ROOT) {
            Ok(())
        } else {
            Err(AuthError::PermissionDenied)
        }
    }

    /// etcd's `CheckPassword` before the bcrypt comparison: the stored hash
    /// of a user who may log in with a password, and the revision it was
    /// read at.
    pub fn password_hash(&self, name: &str) -> Result<(Vec<u8>, u64), AuthError> {
        if !self.enabled {
            return Err(AuthError::AuthNotEnabled);
        }
        let user = self.users.get(name).ok_or(AuthError::AuthFailed)?;
        if user.options.as_ref().is_some_and(|o| o.no_password) {
            return Err(AuthError::NoPasswordUser);
        }
        Ok((user.password.clone(), self.revision))
    }

    // ---- replicated changes (etcd's authStore methods, at apply) ----

    /// Turns auth on; needs a `root` user holding the `root` role.
    pub fn enable(&mut self) -> Result<(), AuthError> {
        if self.enabled {
            return Ok(());
        }
        let root = self.users.get(ROOT).ok_or(AuthError::RootUserNotExist)?;
        if !root.roles.iter().any(|r| r == ROOT) {
            return Err(AuthError::RootRoleNotExist);
        }
        self.enabled = true;
        Ok(())
    }

    /// Turns auth off; answers whether it was on (every token is then
    /// forgotten).
    pub fn disable(&mut self) -> bool {
        if !self.enabled {
            return false;
        }
        self.enabled = false;
        self.commit_revision();
        true
    }

    /// etcd's `Authenticate` at apply: the user may log in.
    pub fn authenticate(&self, name: &str) -> Result<(), AuthError> {
        if !self.enabled {
            return Err(AuthError::AuthNotEnabled);
        }
        let user = self.users.get(name).ok_or(AuthError::AuthFailed)?;
        if user.options.as_ref().is_some_and(|o| o.no_password) {
            return Err(AuthError::AuthFailed);
        }
        Ok(())
    }

    pub fn user_add(
        &mut self,
        name: &str,
        hashed_password: Vec<u8>,
        options: Option<UserAddOptions>,
    ) -> Result<(), AuthError> {
        if name.is_empty() {
            return Err(AuthError::UserEmpty);
        }
        if self.users.contains_key(name) {
            return Err(AuthError::UserAlreadyExist);
        }
        let no_password = options.as_ref().is_some_and(|o| o.no_password);
        let user = User {
            name: name.as_bytes().to_vec(),
            password: if no_password {
                Vec::new()
            } else {
                hashed_password
            },
            roles: Vec::new(),
            options: Some(options.unwrap_or_default()),
        };
        self.users.insert(name.to_owned(), user);
        self.commit_revision();
        self.refresh_perms();
        Ok(())
    }

    pub fn user_delete(&mut self, name: &str) -> Result<(), AuthError> {
        if self.enabled && name == ROOT {
            return Err(AuthError::InvalidAuthMgmt);
        }
        if self.users.remove(name).is_none() {
            return Err(AuthError::UserNotFound);
        }
        self.commit_revision();
        self.refresh_perms();
        Ok(())
    }

    pub fn user_change_password(
        &mut self,
        name: &str,
        hashed_password: Vec<u8>,
    ) -> Result<(), AuthError> {
        let user = self.users.get_mut(name).ok_or(AuthError::UserNotFound)?;
        user.password = hashed_password;
        self.commit_revision();
        self.refresh_perms();
        Ok(())
    }

    pub fn user_grant_role(&mut self, name: &str, role: &str) -> Result<(), AuthError> {
        if !self.users.contains_key(name) {
            return Err(AuthError::UserNotFound);
        }
        if role != ROOT && !self.roles.contains_key(role) {
            return Err(AuthError::RoleNotFound);
        }
        let user = self.users.get_mut(name).ok_or(AuthError::UserNotFound)?;
        if let Err(at) = user.roles.binary_search_by(|r| r.as_str().cmp(role)) {
            user.roles.insert(at, role.to_owned());
            self.commit_revision();
            self.refresh_perms();
        }
        Ok(())
    }

    pub fn user_revoke_role(&mut self, name: &str, role: &str) -> Result<(), AuthError> {
        if self.enabled && name == ROOT && role == ROOT {
            return Err(AuthError::InvalidAuthMgmt);
        }
        let user = self.users.get_mut(name).ok_or(AuthError::UserNotFound)?;
        let before = user.roles.len();
        user.roles.retain(|r| r != role);
        if user.roles.len() == before {
            return Err(AuthError::RoleNotGranted);
        }
        self.commit_revision();
        self.refresh_perms();
        Ok(())
    }

    pub fn user_get(&self, name: &str) -> Result<AuthUserGetResponse, AuthError> {
        let user = self.users.get(name).ok_or(AuthError::UserNotFound)?;
        Ok(AuthUserGetResponse {
            header: None,
            roles: user.roles.clone(),
        })
    }

    pub fn user_list(&self) -> AuthUserListResponse {
        AuthUserListResponse {
            header: None,
            users: self.users.keys().cloned().collect(),
        }
    }

    pub fn role_add(&mut self, name: &str) -> Result<(), AuthError> {
        if name.is_empty() {
            return Err(AuthError::RoleEmpty);
        }
        if self.roles.contains_key(name) {
            return Err(AuthError::RoleAlreadyExist);
        }
        self.roles.insert(
            name.to_owned(),
            Role {
                name: name.as_bytes().to_vec(),
                key_permission: Vec::new(),
            },
        );
        self.commit_revision();
        Ok(())
    }

    pub fn role_get(&self, name: &str) -> Result<AuthRoleGetResponse, AuthError> {
        let role = self.roles.get(name).ok_or(AuthError::RoleNotFound)?;
        Ok(AuthRoleGetResponse {
            header: None,
            perm: role.key_permission.clone(),
        })
    }

    pub fn role_list(&self) -> AuthRoleListResponse {
        AuthRoleListResponse {
            header: None,
            roles: self.roles.keys().cloned().collect(),
        }
    }

    pub fn role_delete(&mut self, name: &str) -> Result<(), AuthError> {
        if self.enabled && name == ROOT {
            return Err(AuthError::InvalidAuthMgmt);
        }
        if self.roles.remove(name).is_none() {
            return Err(AuthError::RoleNotFound);
        }
        for user in self.users.values_mut() {
            user.roles.retain(|r| r != name);
        }
        self.commit_revision();
        self.refresh_perms();
        Ok(())
    }

    /// Grants a permission, or changes the type of the one on the same key
    /// and range end; permissions stay sorted by key.
    pub fn role_grant_permission(
        &mut self,
        req: &AuthRoleGrantPermissionRequest,
    ) -> Result<(), AuthError> {
        let role = self
            .roles
            .get_mut(&req.name)
            .ok_or(AuthError::RoleNotFound)?;
        let perm = req.perm.clone().unwrap_or_default();
        let at = role
            .key_permission
            .partition_point(|p| p.key.as_slice() < perm.key.as_slice());
        match role.key_permission.get_mut(at) {
            Some(p) if p.key == perm.key && p.range_end == perm.range_end => {
                p.perm_type = perm.perm_type;
            }
            _ => {
                role.key_permission.push(Permission {
                    perm_type: perm.perm_type,
                    key: perm.key,
                    range_end: perm.range_end,
                });
                // Go's sort.Sort is not stable; ties (same key) keep the
                // order of insertion here.
                role.key_permission.sort_by(|a, b| a.key.cmp(&b.key));
            }
        }
        self.commit_revision();
        self.refresh_perms();
        Ok(())
    }

    pub fn role_revoke_permission(
        &mut self,
        req: &AuthRoleRevokePermissionRequest,
    ) -> Result<(), AuthError> {
        let role = self
            .roles
            .get_mut(&req.role)
            .ok_or(AuthError::RoleNotFound)?;
        let before = role.key_permission.len();
        role.key_permission
            .retain(|p| p.key != req.key || p.range_end != req.range_end);
        if role.key_permission.len() == before {
            return Err(AuthError::PermissionNotGranted);
        }
        self.commit_revision();
        self.refresh_perms();
        Ok(())
    }
}

#[cfg(test)]
mod tests;

/// What an applied auth request answers (headers are the facade's).
#[derive(Debug, Clone, PartialEq)]
pub enum AuthReply {
    /// A change that answers nothing but success.
    Done,
    /// Authenticate: the user, the auth revision, and the simple token
    /// (`<prefix>.<index>`; empty with JWT, which the proposer signs).
    Authenticated {
        username: String,
        revision: u64,
        token: String,
    },
    User(AuthUserGetResponse),
    Users(AuthUserListResponse),
    Role(AuthRoleGetResponse),
    Roles(AuthRoleListResponse),
}
