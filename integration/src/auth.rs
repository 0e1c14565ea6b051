//! Shared steps of the auth tests (`auth_etcdctl`, `auth_perm`,
//! `auth_token`): talking to etcd's `Auth` service and carrying a token.
//!
//! 1. [`with_token`] wraps a request and puts the token in the `token` gRPC
//!    metadata, where clientv3 carries it; [`Token`] says which token a
//!    request carries (a real one, none, or a forged one).
//! 2. [`enable_auth`] makes a fresh server ready for auth tests the way an
//!    operator does: user `root` with role `root`, then `AuthEnable`.
//! 3. [`authenticate`] trades a name and password for a token.
//! 4. [`Answer`] is what a request got, comparable between two servers: a
//!    description of the reply with the fields that legitimately differ taken
//!    out by the caller, or the gRPC code and message of the refusal.
//! 5. [`rss_kib`] reads a process's resident set size from `/proc`, for the
//!    memory bounds of the flood test.

use proto::etcdserverpb::auth_client::AuthClient;
use proto::etcdserverpb::{
    AuthEnableRequest, AuthRoleAddRequest, AuthUserAddRequest, AuthUserGrantRoleRequest,
    AuthenticateRequest,
};
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;

use crate::kv_ops::RpcError;

/// The gRPC metadata key clientv3 puts the token in (`rpctypes.TokenFieldNameGRPC`).
pub const TOKEN_METADATA: &str = "token";

/// The password the tests give user `root`.
pub const ROOT_PASSWORD: &str = "root-pw";

/// Which token a request carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    /// No `token` metadata at all.
    Absent,
    /// This token, as given.
    Value(String),
}

impl Token {
    /// The token text, if any.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Token::Absent => None,
            Token::Value(t) => Some(t),
        }
    }
}

/// `message` as a request carrying `token` in the `token` metadata (none for
/// [`Token::Absent`]). A token that is not valid metadata text (never one a
/// server issues) is sent as no token.
pub fn with_token<T>(message: T, token: &Token) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(text) = token.as_str()
        && let Ok(value) = MetadataValue::try_from(text)
    {
        request.metadata_mut().insert(TOKEN_METADATA, value);
    }
    request
}

/// What one request got: a description of the reply, or the refusal.
pub type Answer = Result<String, RpcError>;

/// A one-line rendering of an [`Answer`] for failure messages.
pub fn show_answer(answer: &Answer) -> String {
    match answer {
        Ok(reply) => format!("ok {reply}"),
        Err(e) => format!("error {:?} {:?}", e.code, e.message),
    }
}

/// Trades `name` and `password` for a token.
pub async fn authenticate(
    channel: &Channel,
    name: &str,
    password: &str,
) -> Result<String, RpcError> {
    let request = AuthenticateRequest {
        name: name.to_string(),
        password: password.to_string(),
    };
    AuthClient::new(channel.clone())
        .authenticate(request)
        .await
        .map(|r| r.into_inner().token)
        .map_err(RpcError::from)
}

/// Step 2 of the module doc: adds user `root` (password [`ROOT_PASSWORD`])
/// and role `root`, grants one to the other and enables auth. Each call's
/// error names the step.
pub async fn enable_auth(channel: &Channel) -> Result<(), String> {
    let mut auth = AuthClient::new(channel.clone());
    let step = |what: &'static str| move |s: tonic::Status| format!("{what}: {s:?}");
    auth.user_add(AuthUserAddRequest {
        name: "root".to_string(),
        password: ROOT_PASSWORD.to_string(),
        options: None,
    })
    .await
    .map_err(step("UserAdd root"))?;
    auth.role_add(AuthRoleAddRequest {
        name: "root".to_string(),
    })
    .await
    .map_err(step("RoleAdd root"))?;
    auth.user_grant_role(AuthUserGrantRoleRequest {
        user: "root".to_string(),
        role: "root".to_string(),
    })
    .await
    .map_err(step("UserGrantRole root root"))?;
    auth.auth_enable(AuthEnableRequest {})
        .await
        .map_err(step("AuthEnable"))?;
    Ok(())
}

/// The resident set size of process `pid` in KiB (`VmRSS` in
/// `/proc/<pid>/status`), `None` if it cannot be read.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    vm_rss(&status)
}

fn vm_rss(status: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        line.strip_prefix("VmRSS:")?
            .trim()
            .strip_suffix("kB")?
            .trim()
            .parse()
            .ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_rss_is_read_in_kib() {
        let status = "Name:\tetcd\nVmPeak:\t  900000 kB\nVmRSS:\t   41234 kB\nThreads:\t12\n";
        assert_eq!(vm_rss(status), Some(41234));
        assert_eq!(vm_rss("Name:\tx\n"), None);
        assert!(rss_kib(std::process::id()).is_some_and(|kib| kib > 0));
    }

    #[test]
    fn a_token_travels_in_the_token_metadata() {
        let request = with_token((), &Token::Value("abc.12".to_string()));
        assert_eq!(
            request
                .metadata()
                .get(TOKEN_METADATA)
                .map(|v| v.to_str().ok()),
            Some(Some("abc.12"))
        );
        let request = with_token((), &Token::Absent);
        assert!(request.metadata().get(TOKEN_METADATA).is_none());
    }
}
