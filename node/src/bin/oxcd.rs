//! `oxcd`: one etcd-compatible member. Flags follow etcd's names.

use std::net::{SocketAddr, ToSocketAddrs};

use clap::Parser;
use node::config::Config;

/// mimalloc instead of glibc's malloc: a server allocates and frees small
/// buffers on many threads at once (watch responses, request decoding),
/// where glibc's arenas contend (seen in profiles as lock waits in malloc).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A listen URL resolved: its address, and whether it is `https://`.
fn listen_addrs(urls: &[String], default_port: u16) -> Result<Vec<(SocketAddr, bool)>, String> {
    let mut out = Vec::new();
    for u in urls {
        let url = url::Url::parse(u).map_err(|e| format!("{u}: {e}"))?;
        let https = match url.scheme() {
            "http" => false,
            "https" => true,
            _ => {
                return Err(format!("{u}: only http:// and https:// URLs are supported"));
            }
        };
        let host = url.host_str().ok_or_else(|| format!("{u}: no host"))?;
        let port = url.port().unwrap_or(default_port);
        let addrs = (host, port)
            .to_socket_addrs()
            .map_err(|e| format!("{u}: {e}"))?;
        // `localhost` resolves to both families; listen on the first, as
        // etcd listens on the address the name resolves to.
        out.extend(addrs.take(1).map(|a| (a, https)));
    }
    Ok(out)
}

/// One port's listeners: plain addresses, or bound TLS listeners sharing
/// one reloading configuration. `which` names the port in etcd's error for
/// an `https://` URL without a certificate and key.
fn listeners(
    files: Option<node::tls::TlsFiles>,
    addrs: Vec<(SocketAddr, bool)>,
    which: &str,
) -> Result<Vec<node::tls::Listener>, String> {
    use node::tls::Listener;
    let mut tls = None;
    let mut out = Vec::new();
    for (addr, https) in addrs {
        if !https {
            out.push(Listener::Plain(addr));
            continue;
        }
        let reloading = match &tls {
            Some(reloading) => std::sync::Arc::clone(reloading),
            None => {
                let files = files.clone().ok_or_else(|| match which {
                    "client" | "metrics" => format!(
                        "TLS key/cert (--cert-file, --key-file) must be provided for {which} url https://{addr} with HTTPS scheme"
                    ),
                    _ => format!(
                        "TLS key/cert (--peer-cert-file, --peer-key-file) must be provided for peer url https://{addr} with HTTPS scheme"
                    ),
                })?;
                let reloading = std::sync::Arc::new(node::tls::ReloadingConfig::new(files)?);
                tls = Some(reloading.clone());
                reloading
            }
        };
        let listener = std::net::TcpListener::bind(addr)
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .and_then(tokio::net::TcpListener::from_std)
            .map_err(|e| format!("listen on {addr}: {e}"))?;
        out.push(Listener::Tls(listener, reloading));
    }
    Ok(out)
}

fn log_listener(listener: &node::tls::Listener, what: &str) {
    match listener {
        node::tls::Listener::Plain(addr) => tracing::info!(%addr, "serving {what}"),
        node::tls::Listener::Tls(l, _) => {
            tracing::info!(addr = ?l.local_addr().ok(), "serving {what} over TLS");
        }
    }
}

fn main() {
    // A panic is a bug: stop the whole member (an actor thread dying alone
    // would leave a server that accepts requests it can never answer) and
    // let raft recovery on restart do its job.
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        report(info);
        std::process::exit(70);
    }));
    let config = Config::parse();
    match node::logging::init(&config) {
        Ok(None) => {}
        Ok(Some(warning)) => tracing::warn!("{warning}"),
        Err(e) => {
            eprintln!("oxcd: {e}");
            std::process::exit(1);
        }
    }
    let addrs = match listen_addrs(&config.listen_client_urls, 2379) {
        Ok(a) => a,
        Err(e) => {
            tracing::error!("--listen-client-urls: {e}");
            std::process::exit(1);
        }
    };
    let peer_addrs = match listen_addrs(&config.listen_peer_urls, 2380) {
        Ok(a) => a,
        Err(e) => {
            tracing::error!("--listen-peer-urls: {e}");
            std::process::exit(1);
        }
    };
    let metrics_urls: Vec<String> = config
        .listen_metrics_urls
        .iter()
        .filter(|u| !u.is_empty())
        .cloned()
        .collect();
    let metrics_addrs = match listen_addrs(&metrics_urls, 2379) {
        Ok(a) => a,
        Err(e) => {
            tracing::error!("--listen-metrics-urls: {e}");
            std::process::exit(1);
        }
    };
    let system = actix_rt::System::with_tokio_rt(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime")
    });
    let code = system.block_on(async move {
        let bound = listeners(config.client_tls(), addrs, "client").and_then(|client| {
            Ok((
                client,
                listeners(config.peer_tls(), peer_addrs, "peer")?,
                listeners(config.client_tls(), metrics_addrs, "metrics")?,
            ))
        });
        let (client_listeners, peer_listeners, metrics_listeners) = match bound {
            Ok(l) => l,
            Err(e) => {
                tracing::error!("cannot start: {e}");
                return 1;
            }
        };
        let member = match node::bootstrap::start(&config).await {
            Ok(m) => m,
            Err(e) => {
                tracing::error!("cannot start: {e}");
                return 1;
            }
        };
        tokio::spawn({
            let handle = member.handle.clone();
            let (name, urls) = (config.name.clone(), config.advertise_client_urls.clone());
            async move { handle.publish_attributes(name, urls).await }
        });
        if let Ok(Some(retention)) = config.auto_compaction() {
            tokio::spawn(node::compactor::run(member.handle.clone(), retention));
        }
        let mut servers = Vec::new();
        for listener in peer_listeners {
            let peer = node::peer::PeerService::new(
                member.identity.cluster_id,
                member.raft.clone(),
                member.snap_dir.clone(),
                member.refused.clone(),
                member.board.clone(),
            )
            .with_metrics(member.transport_metrics.clone())
            .with_faults(member.faults.clone());
            log_listener(&listener, "peer traffic");
            servers.push(tokio::spawn(node::peer::serve_peer(
                listener,
                peer,
                member.handle.clone(),
            )));
        }
        // Before any client is served (the peer port is up: the others ask
        // this member too).
        if config.initial_corrupt_check
            && let Err(e) = node::corruption::initial_check(&member.handle).await
        {
            tracing::error!("{e}");
            return 1;
        }
        if !config.corrupt_check_time.is_zero() {
            tokio::spawn(node::corruption::run_periodic(
                member.handle.clone(),
                config.corrupt_check_time,
            ));
        }
        let grpc_metrics = match config.metrics {
            node::config::MetricsLevel::Off => Ok(node::grpc::metrics::GrpcMetrics::off()),
            level => node::grpc::metrics::GrpcMetrics::new(
                &member.registry,
                level == node::config::MetricsLevel::Extensive,
            ),
        };
        let grpc_metrics = match grpc_metrics {
            Ok(m) => m,
            Err(e) => {
                tracing::error!("cannot start: metrics: {e}");
                return 1;
            }
        };
        let chaos = if config.enable_chaos {
            tracing::warn!("==============================================================");
            tracing::warn!("--enable-chaos: this member serves the chaos API on its client");
            tracing::warn!("URLs: any client can kill its actors, cut its links, crash it.");
            tracing::warn!("==============================================================");
            match node::grpc::chaos::ChaosHooks::new(
                member.identity.member_id,
                member.faults.clone(),
                member.killers.clone(),
                &member.registry,
            ) {
                Ok(hooks) => Some(hooks),
                Err(e) => {
                    tracing::error!("cannot start: metrics: {e}");
                    return 1;
                }
            }
        } else {
            None
        };
        let chaos = node::grpc::chaos::ChaosService::new(chaos);
        for listener in client_listeners {
            let handle = member.handle.clone();
            let registry = member.registry.clone();
            let max = config.max_request_bytes;
            log_listener(&listener, "client requests");
            servers.push(tokio::spawn(node::grpc::serve_client(
                listener,
                handle,
                max,
                registry,
                grpc_metrics.clone(),
                chaos.clone(),
            )));
        }
        for listener in metrics_listeners {
            log_listener(&listener, "metrics and health");
            servers.push(tokio::spawn(node::grpc::http::serve_metrics(
                listener,
                member.handle.clone(),
                member.registry.clone(),
            )));
        }
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("cannot install the SIGTERM handler: {e}");
                return 1;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => { tracing::info!("received interrupt, shutting down"); 0 }
            _ = term.recv() => { tracing::info!("received terminated signal, shutting down"); 0 }
            res = futures::future::select_all(servers) => {
                match res.0 {
                    Ok(Ok(())) => 0,
                    Ok(Err(e)) => { tracing::error!("server failed: {e:?}"); 1 }
                    Err(e) => { tracing::error!("server task: {e}"); 1 }
                }
            }
        }
    });
    std::process::exit(code);
}
