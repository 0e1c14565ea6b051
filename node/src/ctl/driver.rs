//! The load driver of `oxcdctl bench`: connections, workers, timing.
//!
//! 1. [`connect`] opens `conns` gRPC connections, connection `j` to
//!    endpoint `j % endpoints`; a failure to connect is an error, not a panic.
//! 2. [`drive`] starts `workers` tokio tasks sharing one atomic counter.
//!    Each loops: take the next index `i` (stop once it reaches `total`),
//!    build request `i`, send it on connection `i % conns` (round robin)
//!    under a per-request timeout, record its latency or count its error
//!    message, advance the progress bar.
//! 3. When every worker is done, their samples are merged and handed to
//!    [`Stats::new`] with the wall time of the whole run.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use proto::etcdserverpb::kv_client::KvClient;
use tokio::task::JoinSet;
use tonic::transport::{Channel, Endpoint};

use super::CtlError;
use super::client::{Kv, Token, authenticate, status_message};
use super::report::Stats;
use super::workload::Plan;

/// Largest response a bench client accepts (range with a wide end key).
const MAX_DECODING_MESSAGE_SIZE: usize = 64 * 1024 * 1024;

/// `http://` + `endpoint` unless it already names a scheme.
fn endpoint_uri(endpoint: &str) -> Result<String, CtlError> {
    let ep = endpoint.trim();
    if ep.starts_with("https://") {
        return Err(CtlError::InvalidArgument(format!(
            "endpoint {ep}: TLS is not supported by oxcdctl bench"
        )));
    }
    if ep.starts_with("http://") {
        Ok(ep.to_string())
    } else {
        Ok(format!("http://{ep}"))
    }
}

/// Opens `conns` KV clients, connection `j` to `endpoints[j % len]`; with
/// `user`, authenticated once (over the first connection) as that user.
pub async fn connect(
    endpoints: &[String],
    conns: usize,
    dial_timeout: Duration,
    user: Option<&str>,
) -> Result<Vec<Kv>, CtlError> {
    let channels = channels(endpoints, conns, dial_timeout).await?;
    let token = match (user, channels.first()) {
        (Some(user), Some(first)) => authenticate(first.clone(), user).await?,
        _ => Token::default(),
    };
    Ok(channels
        .into_iter()
        .map(|channel| {
            KvClient::with_interceptor(channel, token.clone())
                .max_decoding_message_size(MAX_DECODING_MESSAGE_SIZE)
        })
        .collect())
}

/// Opens `conns` gRPC connections, connection `j` to `endpoints[j % len]`.
pub async fn channels(
    endpoints: &[String],
    conns: usize,
    dial_timeout: Duration,
) -> Result<Vec<Channel>, CtlError> {
    let mut channels = Vec::with_capacity(conns);
    for j in 0..conns {
        let ep = &endpoints[j % endpoints.len()];
        let uri = endpoint_uri(ep)?;
        let connect_err = |reason: String| CtlError::Connect {
            endpoint: ep.clone(),
            reason,
        };
        let endpoint = Endpoint::from_shared(uri)
            .map_err(|e| connect_err(proto::errors::error_chain(&e)))?
            .connect_timeout(dial_timeout)
            .tcp_nodelay(true);
        let channel = match tokio::time::timeout(dial_timeout, endpoint.connect()).await {
            Ok(Ok(channel)) => channel,
            Ok(Err(e)) => return Err(connect_err(proto::errors::error_chain(&e))),
            Err(_) => return Err(connect_err(format!("timed out after {dial_timeout:?}"))),
        };
        channels.push(channel);
    }
    Ok(channels)
}

/// What one worker measured.
#[derive(Debug, Default)]
struct WorkerOutcome {
    latencies: Vec<f64>,
    errors: BTreeMap<String, u64>,
}

/// Runs `total` requests of `plan` with `workers` concurrent workers over
/// `clients` (request `i` on connection `i % clients.len()`), and returns
/// the aggregated results. Failures are counted, never raised.
pub async fn drive(
    plan: Arc<Plan>,
    clients: Arc<[Kv]>,
    workers: usize,
    total: u64,
    request_timeout: Duration,
    bar: ProgressBar,
) -> Stats {
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut set = JoinSet::new();
    for _ in 0..workers {
        let (plan, clients, next, bar) = (plan.clone(), clients.clone(), next.clone(), bar.clone());
        set.spawn(async move {
            let mut out = WorkerOutcome::default();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                let op = plan.request(i);
                let mut kv = clients[(i % clients.len() as u64) as usize].clone();
                let sent = Instant::now();
                match tokio::time::timeout(request_timeout, op.send(&mut kv)).await {
                    Ok(Ok(())) => out.latencies.push(sent.elapsed().as_secs_f64()),
                    Ok(Err(status)) => *out.errors.entry(status_message(&status)).or_default() += 1,
                    Err(_) => {
                        *out.errors
                            .entry(format!("request timed out after {request_timeout:?}"))
                            .or_default() += 1
                    }
                }
                bar.inc(1);
            }
            out
        });
    }
    // Reserve up front for ordinary runs; a huge --total grows as it goes.
    let reserve = total.min(1 << 20) as usize;
    let mut latencies = Vec::with_capacity(reserve);
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok(out) => {
                latencies.extend(out.latencies);
                for (msg, n) in out.errors {
                    *errors.entry(msg).or_default() += n;
                }
            }
            Err(e) => {
                *errors
                    .entry(format!("bench worker failed: {e}"))
                    .or_default() += 1
            }
        }
    }
    let wall = start.elapsed();
    bar.finish();
    Stats::new(latencies, errors, wall)
}

/// A progress bar on stderr (drawn only when stderr is a terminal).
pub fn progress_bar(total: u64) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    if let Ok(style) =
        ProgressStyle::with_template("{bar:40} {pos}/{len} [{elapsed_precise}] {per_sec} eta {eta}")
    {
        bar.set_style(style);
    }
    bar
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use proto::etcdserverpb::kv_server::{Kv, KvServer};
    use proto::etcdserverpb::{
        CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
        PutResponse, RangeRequest, RangeResponse, TxnRequest, TxnResponse,
    };
    use tokio_stream::wrappers::TcpListenerStream;
    use tonic::{Request, Response, Status};

    use super::*;
    use crate::ctl::bench_args::{PutArgs, TxnArgs, Workload};

    #[test]
    fn endpoints_get_an_http_scheme() {
        assert_eq!(
            endpoint_uri("127.0.0.1:2379").ok(),
            Some("http://127.0.0.1:2379".into())
        );
        assert_eq!(endpoint_uri("http://h:1").ok(), Some("http://h:1".into()));
        assert!(endpoint_uri("https://h:1").is_err());
    }

    /// A KV server that counts requests and fails every `fail_every`-th
    /// (1-based) with `Unavailable`.
    struct FakeKv {
        calls: Arc<AtomicU64>,
        fail_every: u64,
    }

    impl FakeKv {
        fn answer<T: Default>(&self) -> Result<Response<T>, Status> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
            if self.fail_every > 0 && n.is_multiple_of(self.fail_every) {
                return Err(Status::unavailable("injected failure"));
            }
            Ok(Response::new(T::default()))
        }
    }

    #[tonic::async_trait]
    impl Kv for FakeKv {
        async fn range(&self, _: Request<RangeRequest>) -> Result<Response<RangeResponse>, Status> {
            self.answer()
        }
        async fn put(&self, _: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
            self.answer()
        }
        async fn delete_range(
            &self,
            _: Request<DeleteRangeRequest>,
        ) -> Result<Response<DeleteRangeResponse>, Status> {
            self.answer()
        }
        async fn txn(&self, _: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
            self.answer()
        }
        async fn compact(
            &self,
            _: Request<CompactionRequest>,
        ) -> Result<Response<CompactionResponse>, Status> {
            self.answer()
        }
    }

    /// Starts a fake KV server on a free loopback port.
    async fn serve_fake(fail_every: u64) -> (SocketAddr, Arc<AtomicU64>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let calls = Arc::new(AtomicU64::new(0));
        let svc = KvServer::new(FakeKv {
            calls: calls.clone(),
            fail_every,
        });
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(svc)
                .serve_with_incoming(TcpListenerStream::new(listener)),
        );
        (addr, calls)
    }

    #[tokio::test]
    async fn drive_spreads_requests_round_robin_over_connections() {
        let (a, calls_a) = serve_fake(0).await;
        let (b, calls_b) = serve_fake(0).await;
        let endpoints = vec![a.to_string(), b.to_string()];
        let clients = connect(&endpoints, 2, Duration::from_secs(5), None)
            .await
            .expect("connects");
        let plan = Plan::new(
            &Workload::Put(PutArgs {
                total: 101,
                key_size: 8,
                val_size: 16,
                key_space_size: 10,
                sequential_keys: false,
                seq_start: 0,
                prefix: None,
            }),
            3,
        )
        .expect("valid plan");
        let stats = drive(
            Arc::new(plan),
            clients.into(),
            8,
            101,
            Duration::from_secs(10),
            ProgressBar::hidden(),
        )
        .await;
        assert_eq!(stats.succeeded(), 101);
        assert_eq!(stats.failed(), 0);
        assert_eq!(calls_a.load(Ordering::SeqCst), 51);
        assert_eq!(calls_b.load(Ordering::SeqCst), 50);
        assert!(stats.fastest > 0.0 && stats.fastest <= stats.slowest);
    }

    #[tokio::test]
    async fn drive_counts_errors_by_message() {
        let (a, calls) = serve_fake(4).await;
        let clients = connect(&[a.to_string()], 1, Duration::from_secs(5), None)
            .await
            .expect("connects");
        let w = Workload::Txn(TxnArgs {
            total: 40,
            txn_ops: 2,
            key_size: 8,
            val_size: 8,
            key_space_size: 10,
        });
        let plan = Plan::new(&w, 5).expect("valid plan");
        let stats = drive(
            Arc::new(plan),
            clients.into(),
            3,
            40,
            Duration::from_secs(10),
            ProgressBar::hidden(),
        )
        .await;
        assert_eq!(calls.load(Ordering::SeqCst), 40);
        assert_eq!(stats.succeeded(), 30);
        let mut want = BTreeMap::new();
        want.insert(
            "rpc error: code = Unavailable desc = injected failure".to_string(),
            10,
        );
        assert_eq!(stats.errors, want);
    }

    #[tokio::test]
    async fn unreachable_endpoint_is_an_error_not_a_panic() {
        // Bind then drop a listener so the port is (very likely) closed.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
            l.local_addr().expect("local addr").port()
        };
        let err = connect(
            &[format!("127.0.0.1:{port}")],
            1,
            Duration::from_secs(2),
            None,
        )
        .await
        .expect_err("nothing listens there");
        assert!(matches!(err, CtlError::Connect { .. }), "got {err}");
    }
}
