//! `oxcdctl bench lease-keepalive`: keep-alive throughput and latency, and
//! how fast expired leases are revoked. Speaks only etcd's v3 API, so it
//! measures real etcd and oxcd alike.
//!
//! 1. Grant `--leases` leases of `--ttl` seconds (on `--clients` tasks).
//! 2. Keep-alives: `--clients` tasks, each with its own keep-alive stream
//!    on one of the connections, send `--total` keep-alives round robin over
//!    the leases, one in flight per stream, each timed from send to answer.
//!    An answer with TTL 0 (the lease is gone) counts as an error.
//! 3. Expiry: every lease is left to expire; the time from the first
//!    deadline until `LeaseLeases` lists none of them gives the revokes per
//!    second.
//! 4. etcd's latency report for the keep-alives, then the JSON summary.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use proto::etcdserverpb::lease_client::LeaseClient;
use proto::etcdserverpb::{LeaseGrantRequest, LeaseKeepAliveRequest, LeaseLeasesRequest};
use serde::Serialize;
use tonic::transport::Channel;

use super::CtlError;
use super::bench_args::{LeaseArgs, RunOptions};
use super::driver;
use super::report::{self, Stats};

#[derive(Debug, Serialize)]
struct LeaseSummary {
    op: String,
    workload: String,
    endpoints: Vec<String>,
    leases: u64,
    clients: usize,
    conns: usize,
    total: u64,
    succeeded: u64,
    errors: u64,
    grant_s: f64,
    duration_s: f64,
    rps: f64,
    latency_ms: report::LatencyMs,
    /// Seconds from the expiring leases' deadline until none was listed.
    expire_s: Option<f64>,
    expired_per_s: Option<f64>,
}

fn failed(what: &str, status: tonic::Status) -> CtlError {
    CtlError::InvalidArgument(format!("{what}: {}", status.message()))
}

/// Step 1: grants `n` leases of `ttl` over `clients` tasks.
async fn grant(
    channels: &[Channel],
    n: u64,
    ttl: i64,
    clients: usize,
) -> Result<Vec<i64>, CtlError> {
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..clients.max(1) {
        let mut client = LeaseClient::new(channels[c % channels.len()].clone());
        let next = Arc::clone(&next);
        tasks.spawn(async move {
            let mut ids = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < n {
                let id = client
                    .lease_grant(LeaseGrantRequest { ttl, id: 0 })
                    .await
                    .map_err(|s| failed("lease grant", s))?
                    .into_inner()
                    .id;
                ids.push(id);
            }
            Ok::<_, CtlError>(ids)
        });
    }
    let mut all = Vec::new();
    while let Some(done) = tasks.join_next().await {
        all.extend(done.map_err(|e| CtlError::InvalidArgument(e.to_string()))??);
    }
    Ok(all)
}

/// Step 2: one stream's share of the keep-alives.
async fn keep_alive(
    channel: Channel,
    leases: Arc<Vec<i64>>,
    next: Arc<AtomicU64>,
    total: u64,
    timeout: Duration,
) -> (Vec<f64>, BTreeMap<String, u64>) {
    let (mut latencies, mut errors) = (Vec::new(), BTreeMap::new());
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    // The first request goes before the call is answered: grpc-go (etcd)
    // sends a stream's headers only with its first message.
    let first = next.fetch_add(1, Ordering::Relaxed);
    if first >= total {
        return (latencies, errors);
    }
    let mut pending = Some(first);
    let started_first = Instant::now();
    let _ = tx.try_send(LeaseKeepAliveRequest {
        id: leases[(first % leases.len() as u64) as usize],
    });
    let mut client = LeaseClient::new(channel);
    let call = client.lease_keep_alive(tokio_stream::wrappers::ReceiverStream::new(rx));
    let mut answers = match tokio::time::timeout(timeout, call).await {
        Ok(Ok(a)) => a.into_inner(),
        Ok(Err(s)) => {
            errors.insert(s.message().to_string(), 1);
            return (latencies, errors);
        }
        Err(_) => {
            errors.insert("timed out opening the stream".into(), 1);
            return (latencies, errors);
        }
    };
    loop {
        let started = if pending.take().is_some() {
            started_first
        } else {
            let i = next.fetch_add(1, Ordering::Relaxed);
            if i >= total {
                break;
            }
            let id = leases[(i % leases.len() as u64) as usize];
            let started = Instant::now();
            match tokio::time::timeout(timeout, tx.send(LeaseKeepAliveRequest { id })).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => {
                    *errors.entry("keep-alive stream closed".into()).or_default() += 1;
                    break;
                }
                Err(_) => {
                    *errors.entry("timed out sending".into()).or_default() += 1;
                    break;
                }
            }
            started
        };
        match tokio::time::timeout(timeout, answers.message()).await {
            Ok(Ok(Some(answer))) if answer.ttl > 0 => {
                latencies.push(started.elapsed().as_secs_f64())
            }
            Ok(Ok(Some(_))) => *errors.entry("lease not found (TTL 0)".into()).or_default() += 1,
            Ok(Ok(None)) => {
                *errors.entry("keep-alive stream ended".into()).or_default() += 1;
                break;
            }
            Ok(Err(s)) => {
                *errors.entry(s.message().to_string()).or_default() += 1;
                break;
            }
            // The answer may still come: the stream is out of step, end it.
            Err(_) => {
                *errors.entry("timed out".into()).or_default() += 1;
                break;
            }
        }
    }
    (latencies, errors)
}

/// Step 3: seconds until none of `ids` is listed, counted from `deadline`.
async fn wait_expired(channel: Channel, ids: &[i64], deadline: Instant) -> Result<f64, CtlError> {
    let mut client = LeaseClient::new(channel);
    let ids: HashSet<i64> = ids.iter().copied().collect();
    let give_up = deadline + Duration::from_secs(300);
    loop {
        let listed = client
            .lease_leases(LeaseLeasesRequest {})
            .await
            .map_err(|s| failed("lease leases", s))?
            .into_inner()
            .leases;
        let left = listed.iter().filter(|l| ids.contains(&l.id)).count();
        if left == 0 {
            return Ok(Instant::now()
                .saturating_duration_since(deadline)
                .as_secs_f64());
        }
        if Instant::now() > give_up {
            return Err(CtlError::InvalidArgument(format!(
                "{left} leases still listed 300 s after their TTL"
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs `oxcdctl bench lease-keepalive` (see the module docs).
pub async fn run(options: RunOptions, args: LeaseArgs) -> Result<(), CtlError> {
    let RunOptions {
        endpoints,
        conns,
        clients,
        dial_timeout,
        request_timeout,
        json,
        ..
    } = options;
    if args.leases == 0 || args.total == 0 {
        return Err(CtlError::InvalidArgument(
            "expected positive --leases and --total".into(),
        ));
    }
    let channels = driver::channels(&endpoints, conns.max(1), dial_timeout).await?;
    eprintln!(
        "bench lease-keepalive: {} leases, {} keep-alives on {clients} streams, endpoints {}",
        args.leases,
        args.total,
        endpoints.join(",")
    );
    let granting = Instant::now();
    let leases = Arc::new(grant(&channels, args.leases, args.ttl, clients).await?);
    let grant_s = granting.elapsed().as_secs_f64();

    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..clients.max(1) {
        tasks.spawn(keep_alive(
            channels[c % channels.len()].clone(),
            Arc::clone(&leases),
            Arc::clone(&next),
            args.total,
            request_timeout,
        ));
    }
    let (mut latencies, mut errors) = (Vec::new(), BTreeMap::<String, u64>::new());
    while let Some(done) = tasks.join_next().await {
        let (l, e) = done.map_err(|e| CtlError::InvalidArgument(e.to_string()))?;
        latencies.extend(l);
        for (message, n) in e {
            *errors.entry(message).or_default() += n;
        }
    }
    let stats = Stats::new(latencies, errors, started.elapsed());
    print!("{}", report::render(&stats));

    let (mut expire_s, mut expired_per_s) = (None, None);
    if args.expire_ttl > 0 {
        let expiring = grant(&channels, args.leases, args.expire_ttl, clients).await?;
        let deadline = Instant::now() + Duration::from_secs(args.expire_ttl as u64);
        let took = wait_expired(channels[0].clone(), &expiring, deadline).await?;
        println!(
            "\n{} leases of TTL {} s all revoked {took:.2} s after their deadline",
            expiring.len(),
            args.expire_ttl
        );
        expire_s = Some(took);
        expired_per_s = Some(expiring.len() as f64 / took.max(0.001));
    }
    let summary = LeaseSummary {
        op: "lease-keepalive".into(),
        workload: format!(
            "leases={} ttl={} expire-ttl={}",
            args.leases, args.ttl, args.expire_ttl
        ),
        endpoints,
        leases: args.leases,
        clients,
        conns,
        total: args.total,
        succeeded: stats.succeeded(),
        errors: stats.failed(),
        grant_s,
        duration_s: stats.wall.as_secs_f64(),
        rps: stats.rps,
        latency_ms: report::LatencyMs::of(&stats),
        expire_s,
        expired_per_s,
    };
    report::emit_json(&summary, json.as_ref())
}
