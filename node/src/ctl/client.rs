//! What a bench client sends with every KV request: the auth token of
//! `--user`, if any, through a tonic interceptor, and how a failed request
//! is worded (grpc-go's text, so counts line up with etcd's benchmark).

use proto::etcdserverpb::AuthenticateRequest;
use proto::etcdserverpb::auth_client::AuthClient;
use proto::etcdserverpb::kv_client::KvClient;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use super::CtlError;

/// A KV client that sends the run's auth token, if it has one.
pub type Kv = KvClient<InterceptedService<Channel, Token>>;

/// Adds the `token` metadata to every request (nothing without a user).
#[derive(Debug, Clone, Default)]
pub struct Token(Option<tonic::metadata::AsciiMetadataValue>);

impl Interceptor for Token {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(token) = &self.0 {
            request.metadata_mut().insert("token", token.clone());
        }
        Ok(request)
    }
}

/// Authenticates `user` (`name:password`) over `channel`: the token to send.
pub async fn authenticate(channel: Channel, user: &str) -> Result<Token, CtlError> {
    let (name, password) = user
        .split_once(':')
        .ok_or_else(|| CtlError::InvalidArgument(format!("--user {user}: want name:password")))?;
    let response = AuthClient::new(channel)
        .authenticate(AuthenticateRequest {
            name: name.to_owned(),
            password: password.to_owned(),
        })
        .await
        .map_err(|s| {
            CtlError::InvalidArgument(format!("authenticate {name}: {}", status_message(&s)))
        })?;
    let token = response
        .into_inner()
        .token
        .parse()
        .map_err(|_| CtlError::InvalidArgument("the server's token is not ASCII".to_owned()))?;
    Ok(Token(Some(token)))
}

/// The message a failed request is counted under, in grpc-go's wording.
pub fn status_message(status: &tonic::Status) -> String {
    format!(
        "rpc error: code = {:?} desc = {}",
        status.code(),
        status.message()
    )
}
