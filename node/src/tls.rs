//! TLS on the client and peer ports, with rustls (ring), as etcd
//! configures it (the peer port takes the `--peer-*` files).
//!
//! 1. [`TlsFiles`] come from `--cert-file`, `--key-file`, `--trusted-ca-file`
//!    and `--client-cert-auth`. As in etcd, a client certificate is asked
//!    for and verified against the trusted CA only with
//!    `--client-cert-auth`; without it the CA file is not used.
//! 2. [`ReloadingConfig::current`] is asked at every handshake. It compares
//!    the files' modification times with those of the configuration it
//!    holds and rebuilds it when one changed, so a renewed certificate is
//!    served from the next connection on without a restart (etcd reloads
//!    per handshake too). A rebuild that fails (a half-written file) is
//!    logged and the previous configuration kept.
//! 3. [`incoming`] accepts TCP connections and runs each handshake in a task
//!    of its own, bounded in time, handing finished streams to the gRPC
//!    server: a slow or failing client delays nobody. A refused handshake
//!    (wrong CA, no or expired client certificate, plain HTTP) is logged at
//!    debug level per connection, and at warn level once per distinct
//!    reason, and the listener goes on serving.
//! 4. ALPN offers `h2` (gRPC clients such as grpc-go insist on it) and
//!    `http/1.1` (`/health`, `/metrics`, `/version` over HTTPS).

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;

/// How long a client may take to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Finished handshakes waiting for the gRPC server to take them.
const READY_QUEUE: usize = 128;

/// The client port's certificate files (see the module doc).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub trusted_ca: Option<PathBuf>,
    pub client_cert_auth: bool,
}

impl TlsFiles {
    fn paths(&self) -> Vec<&PathBuf> {
        let mut paths = vec![&self.cert, &self.key];
        if self.client_cert_auth {
            paths.extend(self.trusted_ca.iter());
        }
        paths
    }

    fn modified(&self) -> Vec<Option<SystemTime>> {
        self.paths()
            .iter()
            .map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
            .collect()
    }

    /// Builds a rustls server configuration from the files as they are now.
    pub fn build(&self) -> Result<ServerConfig, String> {
        let certs = CertificateDer::pem_file_iter(&self.cert)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("{}: {e}", self.cert.display()))?;
        if certs.is_empty() {
            return Err(format!("{}: no certificate", self.cert.display()));
        }
        let key = PrivateKeyDer::from_pem_file(&self.key)
            .map_err(|e| format!("{}: {e}", self.key.display()))?;
        // ring (the stack's choice: lighter than aws-lc-rs). rustls 0.23.48
        // deprecates it only for lacking post-quantum key exchange; clients
        // that offer X25519MLKEM768 fall back to X25519.
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?;
        let builder = if self.client_cert_auth {
            let ca = self.trusted_ca.as_ref().ok_or_else(|| {
                "--client-cert-auth needs --trusted-ca-file to verify clients".to_string()
            })?;
            let mut roots = rustls::RootCertStore::empty();
            for cert in
                CertificateDer::pem_file_iter(ca).map_err(|e| format!("{}: {e}", ca.display()))?
            {
                let cert = cert.map_err(|e| format!("{}: {e}", ca.display()))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("{}: {e}", ca.display()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| format!("{}: {e}", ca.display()))?;
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let mut config = builder
            .with_single_cert(certs, key)
            .map_err(|e| format!("{} / {}: {e}", self.cert.display(), self.key.display()))?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(config)
    }
}

impl TlsFiles {
    /// The configuration for connecting to peers with these files: the CA
    /// that must have signed them, and this member's own certificate to show
    /// when they ask (etcd uses the peer certificate both ways).
    pub fn client_config(&self) -> Result<tonic::transport::ClientTlsConfig, String> {
        let read = |p: &PathBuf| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
        let identity = tonic::transport::Identity::from_pem(read(&self.cert)?, read(&self.key)?);
        let mut config = tonic::transport::ClientTlsConfig::new().identity(identity);
        if let Some(ca) = &self.trusted_ca {
            config = config.ca_certificate(tonic::transport::Certificate::from_pem(read(ca)?));
        }
        Ok(config)
    }
}

/// A server configuration rebuilt when its files change (module doc, step 2).
#[derive(Debug)]
pub struct ReloadingConfig {
    files: TlsFiles,
    current: Mutex<(Vec<Option<SystemTime>>, Arc<ServerConfig>)>,
}

impl ReloadingConfig {
    /// Loads the files once; an error here stops the start.
    pub fn new(files: TlsFiles) -> Result<Self, String> {
        let stamps = files.modified();
        let config = Arc::new(files.build()?);
        Ok(Self {
            files,
            current: Mutex::new((stamps, config)),
        })
    }

    /// The configuration for the next handshake.
    pub fn current(&self) -> Arc<ServerConfig> {
        let stamps = self.files.modified();
        let mut current = self.current.lock().expect("tls config lock");
        if current.0 != stamps {
            match self.files.build() {
                Ok(config) => {
                    tracing::info!(cert = %self.files.cert.display(), "reloaded the client TLS files");
                    *current = (stamps, Arc::new(config));
                }
                Err(e) => {
                    // Keep serving with what worked; try again at the next
                    // handshake (the stamps stay old).
                    tracing::warn!(error = %e, "client TLS files changed but do not load; keeping the previous ones");
                }
            }
        }
        current.1.clone()
    }
}

/// Where a port is served: a plain `http://` address, or an `https://`
/// listener (already bound) with its TLS configuration.
pub enum Listener {
    Plain(std::net::SocketAddr),
    Tls(TcpListener, Arc<ReloadingConfig>),
}

/// A TLS connection, as the gRPC server takes it.
#[derive(Debug)]
pub struct TlsConnection(pub TlsStream<TcpStream>);

impl tonic::transport::server::Connected for TlsConnection {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        tonic::transport::server::Connected::connect_info(self.0.get_ref().0)
    }
}

impl tokio::io::AsyncRead for TlsConnection {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for TlsConnection {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
}

/// The TLS connections accepted on `listener` (module doc, step 3).
pub fn incoming(
    listener: TcpListener,
    config: Arc<ReloadingConfig>,
) -> tokio_stream::wrappers::ReceiverStream<std::io::Result<TlsConnection>> {
    let (ready, out) = tokio::sync::mpsc::channel(READY_QUEUE);
    tokio::spawn(async move {
        let refusals = Arc::new(Mutex::new(HashSet::new()));
        loop {
            let (tcp, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a client connection failed");
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            if ready.is_closed() {
                return;
            }
            let acceptor = tokio_rustls::TlsAcceptor::from(config.current());
            let ready = ready.clone();
            let refusals = refusals.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        let _ = ready.send(Ok(TlsConnection(stream))).await;
                    }
                    Ok(Err(e)) => refused(&refusals, peer, &e.to_string()),
                    Err(_) => refused(&refusals, peer, "handshake timed out"),
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(out)
}

/// Logs a refused handshake: every one at debug level, each distinct reason
/// once at warn level.
fn refused(seen: &Mutex<HashSet<String>>, peer: std::net::SocketAddr, reason: &str) {
    tracing::debug!(%peer, reason, "client TLS handshake refused");
    let first = seen
        .lock()
        .map(|mut seen| seen.len() < 64 && seen.insert(reason.to_string()))
        .unwrap_or(false);
    if first {
        tracing::warn!(%peer, reason, "client TLS handshake refused (further ones for this reason at debug level)");
    }
}
