//! Who a client is: auth tokens and passwords, on the facade's side of the
//! apply path (etcd's token providers and `CheckPassword`).
//!
//! 1. `--auth-token` picks the token kind: `simple` (random letters and the
//!    raft index of the Authenticate entry, known to every member, expiring
//!    after `--auth-token-ttl` unused) or `jwt` (signed with the configured
//!    key, carrying the user, the auth revision and an expiry, verified by
//!    any member holding the public key).
//! 2. A request's token comes in the `token` gRPC metadata (or
//!    `authorization`, which the JSON gateway sends); [`crate::handle::
//!    NodeHandle::who`] turns it into an [`AuthInfo`]. A token that does not
//!    check out is `etcdserver: invalid auth token`, even with auth off, as
//!    etcd answers.
//! 3. Passwords are bcrypt-hashed here, at `--bcrypt-cost`, before the
//!    request is proposed, and checked here against the stored hash, on a
//!    blocking thread: bcrypt never runs on the apply path.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use storage::auth::{AuthError, AuthInfo};

/// etcd's default bcrypt cost, used when `--bcrypt-cost` is out of range.
pub const DEFAULT_BCRYPT_COST: u32 = 10;

/// etcd's default lifetime of a JWT.
const DEFAULT_JWT_TTL: Duration = Duration::from_secs(300);

/// A bad `--auth-token` value.
#[derive(Debug, thiserror::Error)]
pub enum TokenConfigError {
    #[error("auth: invalid auth options")]
    InvalidOptions,
    #[error("auth: invalid auth signature method")]
    InvalidMethod,
    #[error("auth: missing key data")]
    MissingKey,
    #[error("auth: cannot read {path}: {source}")]
    KeyFile {
        path: String,
        source: std::io::Error,
    },
    #[error("auth: bad key in {path}: {source}")]
    BadKey {
        path: String,
        source: jsonwebtoken::errors::Error,
    },
}

/// The token kind `--auth-token` chose.
pub enum Tokens {
    Simple,
    Jwt(Jwt),
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Tokens::Simple => f.write_str("simple"),
            Tokens::Jwt(j) => write!(f, "jwt({:?})", j.algorithm),
        }
    }
}

/// Signs and verifies JSON web tokens.
pub struct Jwt {
    algorithm: Algorithm,
    /// `None`: only a public key was given (verify-only).
    signing: Option<EncodingKey>,
    verifying: DecodingKey,
    ttl: Duration,
}

/// A JWT's claims, as etcd writes them.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Claims {
    username: String,
    revision: u64,
    exp: u64,
}

/// Tokens and passwords for one member.
#[derive(Debug)]
pub struct Authenticator {
    pub tokens: Tokens,
    bcrypt_cost: u32,
    /// bcrypt runs (hashes and checks) at once, at most one per core: a
    /// flood of Authenticate calls queues here instead of spawning a
    /// blocking thread each.
    bcrypt_slots: std::sync::Arc<tokio::sync::Semaphore>,
}

impl Authenticator {
    /// From `--auth-token` and `--bcrypt-cost`.
    pub fn from_flags(spec: &str, bcrypt_cost: u32) -> Result<Authenticator, TokenConfigError> {
        let cost = if (4..=31).contains(&bcrypt_cost) {
            bcrypt_cost
        } else {
            tracing::warn!(
                given = bcrypt_cost,
                default = DEFAULT_BCRYPT_COST,
                "invalid --bcrypt-cost; using the default"
            );
            DEFAULT_BCRYPT_COST
        };
        let mut parts = spec.split(',');
        let kind = parts.next().unwrap_or_default();
        let mut options = std::collections::HashMap::new();
        for part in parts {
            let (k, v) = part
                .split_once('=')
                .ok_or(TokenConfigError::InvalidOptions)?;
            if v.contains('=') || options.insert(k, v).is_some() {
                return Err(TokenConfigError::InvalidOptions);
            }
        }
        let tokens = match kind {
            "simple" => Tokens::Simple,
            "jwt" => Tokens::Jwt(Jwt::from_options(&options)?),
            _ => return Err(TokenConfigError::InvalidOptions),
        };
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        Ok(Authenticator {
            tokens,
            bcrypt_cost: cost,
            bcrypt_slots: std::sync::Arc::new(tokio::sync::Semaphore::new(cores)),
        })
    }

    /// Whether tokens are simple tokens.
    pub fn simple(&self) -> bool {
        matches!(self.tokens, Tokens::Simple)
    }

    /// Runs `work` (bcrypt) on a blocking thread once a slot is free.
    pub async fn bcrypt<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Option<T> {
        let _slot = self.bcrypt_slots.acquire().await.ok()?;
        tokio::task::spawn_blocking(work).await.ok()
    }

    /// bcrypt hash of `password` in Go's `$2a$` form (so an etcd that
    /// restores a snapshot of this store checks it too). Slow by design:
    /// call off the async threads.
    pub fn hash_password(&self, password: &str) -> Result<Vec<u8>, AuthError> {
        bcrypt::hash_with_result(password, self.bcrypt_cost)
            .map(|h| h.format_for_version(bcrypt::Version::TwoA).into_bytes())
            .map_err(|e| {
                tracing::warn!(error = %e, "bcrypt hashing failed");
                AuthError::AuthFailed
            })
    }

    /// Whether `password` matches the stored bcrypt `hash`. Slow by design.
    pub fn password_matches(password: &str, hash: &[u8]) -> bool {
        std::str::from_utf8(hash).is_ok_and(|h| bcrypt::verify(password, h).unwrap_or(false))
    }

    /// A JWT for `username` at auth revision `revision`.
    pub fn sign(&self, username: &str, revision: u64) -> Result<String, SignError> {
        let Tokens::Jwt(jwt) = &self.tokens else {
            return Err(SignError::NotJwt);
        };
        let key = jwt.signing.as_ref().ok_or(SignError::VerifyOnly)?;
        let exp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            + jwt.ttl;
        let claims = Claims {
            username: username.to_owned(),
            revision,
            exp: exp.as_secs(),
        };
        jsonwebtoken::encode(&Header::new(jwt.algorithm), &claims, key).map_err(SignError::Sign)
    }

    /// The user and auth revision a JWT carries, if it verifies and has not
    /// expired.
    pub fn verify_jwt(&self, token: &str) -> Option<AuthInfo> {
        let Tokens::Jwt(jwt) = &self.tokens else {
            return None;
        };
        let mut validation = Validation::new(jwt.algorithm);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp"]);
        let data = jsonwebtoken::decode::<Claims>(token, &jwt.verifying, &validation).ok()?;
        Some(AuthInfo {
            username: data.claims.username,
            revision: data.claims.revision,
        })
    }
}

/// Why a JWT could not be signed.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("auth: tokens are not JWT")]
    NotJwt,
    #[error("auth: token signing attempted with verify-only key")]
    VerifyOnly,
    #[error("auth: failed to sign a JWT token: {0}")]
    Sign(jsonwebtoken::errors::Error),
}

impl Jwt {
    fn from_options(
        options: &std::collections::HashMap<&str, &str>,
    ) -> Result<Jwt, TokenConfigError> {
        let method = options
            .get("sign-method")
            .ok_or(TokenConfigError::InvalidMethod)?;
        let algorithm = Algorithm::from_str(method).map_err(|_| TokenConfigError::InvalidMethod)?;
        let ttl = match options.get("ttl") {
            Some(t) => {
                crate::config::parse_go_duration(t).map_err(|_| TokenConfigError::InvalidOptions)?
            }
            None => DEFAULT_JWT_TTL,
        };
        let read = |key: &str| -> Result<Option<(String, Vec<u8>)>, TokenConfigError> {
            let Some(path) = options.get(key) else {
                return Ok(None);
            };
            std::fs::read(Path::new(path))
                .map(|bytes| Some((path.to_string(), bytes)))
                .map_err(|source| TokenConfigError::KeyFile {
                    path: path.to_string(),
                    source,
                })
        };
        let bad = |path: &str| {
            let path = path.to_owned();
            move |source| TokenConfigError::BadKey { path, source }
        };
        let public = read("pub-key")?;
        let private = read("priv-key")?;
        let (signing, verifying) = match algorithm {
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
                let (_, secret) = private.ok_or(TokenConfigError::MissingKey)?;
                (
                    Some(EncodingKey::from_secret(&secret)),
                    DecodingKey::from_secret(&secret),
                )
            }
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => {
                let (path, pem) = public.ok_or(TokenConfigError::MissingKey)?;
                let verifying = DecodingKey::from_rsa_pem(&pem).map_err(bad(&path))?;
                let signing = match private {
                    Some((path, pem)) => Some(EncodingKey::from_rsa_pem(&pem).map_err(bad(&path))?),
                    None => None,
                };
                (signing, verifying)
            }
            Algorithm::ES256 | Algorithm::ES384 => {
                let (path, pem) = public.ok_or(TokenConfigError::MissingKey)?;
                let verifying = DecodingKey::from_ec_pem(&pem).map_err(bad(&path))?;
                let signing = match private {
                    Some((path, pem)) => Some(EncodingKey::from_ec_pem(&pem).map_err(bad(&path))?),
                    None => None,
                };
                (signing, verifying)
            }
            Algorithm::EdDSA => {
                let (path, pem) = public.ok_or(TokenConfigError::MissingKey)?;
                let verifying = DecodingKey::from_ed_pem(&pem).map_err(bad(&path))?;
                let signing = match private {
                    Some((path, pem)) => Some(EncodingKey::from_ed_pem(&pem).map_err(bad(&path))?),
                    None => None,
                };
                (signing, verifying)
            }
        };
        Ok(Jwt {
            algorithm,
            signing,
            verifying,
            ttl,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_options_parse_as_etcd() {
        assert!(Authenticator::from_flags("simple", 10).unwrap().simple());
        assert!(matches!(
            Authenticator::from_flags("nope", 10),
            Err(TokenConfigError::InvalidOptions)
        ));
        assert!(matches!(
            Authenticator::from_flags("jwt,sign-method", 10),
            Err(TokenConfigError::InvalidOptions)
        ));
        assert!(matches!(
            Authenticator::from_flags("jwt,sign-method=XX1", 10),
            Err(TokenConfigError::InvalidMethod)
        ));
        assert!(matches!(
            Authenticator::from_flags("jwt,sign-method=RS256", 10),
            Err(TokenConfigError::MissingKey)
        ));
    }

    #[test]
    fn hs256_tokens_round_trip_and_tampering_fails() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("secret");
        std::fs::write(&key, b"0123456789abcdef").unwrap();
        let spec = format!("jwt,priv-key={},sign-method=HS256", key.display());
        let auth = Authenticator::from_flags(&spec, 4).unwrap();
        let token = auth.sign("alice", 7).unwrap();
        assert_eq!(
            auth.verify_jwt(&token),
            Some(AuthInfo {
                username: "alice".into(),
                revision: 7
            })
        );
        let mut tampered = token.clone();
        tampered.pop();
        tampered.push(if token.ends_with('A') { 'B' } else { 'A' });
        assert_eq!(auth.verify_jwt(&tampered), None);
    }

    #[test]
    fn passwords_hash_in_gos_format_and_verify() {
        let auth = Authenticator::from_flags("simple", 4).unwrap();
        let hash = auth.hash_password("pw").unwrap();
        assert!(hash.starts_with(b"$2a$04$"));
        assert!(Authenticator::password_matches("pw", &hash));
        assert!(!Authenticator::password_matches("other", &hash));
        assert!(!Authenticator::password_matches("pw", b""));
    }
}
