//! `oxcdctl bench watch`: how fast a put reaches its watchers, and whether
//! every event reaches every watcher. Speaks only etcd's v3 API, so it
//! measures real etcd and oxcd alike (etcd's `benchmark watch-latency`,
//! plus a delivery check).
//!
//! 1. Open `--streams` watch streams over the connections (round robin over
//!    the endpoints); on each, create `--watchers-per-stream` watchers on
//!    `--prefix` (from the next revision) and wait for every `created`.
//!    With `--rss-pid`, the server's resident memory is read before and
//!    after, giving the memory per idle watcher.
//! 2. Put `--put-total` keys under the prefix from one client, paced at
//!    `--put-rate` per second, noting each put's revision and the instant
//!    its answer arrived.
//! 3. Every stream notes, per watcher, the instant each event arrived.
//!    Once every watcher has seen the last put's revision (or after
//!    `--drain-timeout`), the streams close.
//! 4. For each watcher and each put: the delay from the put's answer to the
//!    event (an event that arrived before the answer counts 0) and from the
//!    put's sending to the event, or a lost event; duplicates are counted
//!    too. The report is etcd's latency report over the answer-to-event
//!    delays, then the delivery counts and the JSON summary (both delays).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use proto::etcdserverpb::kv_client::KvClient;
use proto::etcdserverpb::watch_client::WatchClient;
use proto::etcdserverpb::watch_request::RequestUnion;
use proto::etcdserverpb::{PutRequest, WatchCreateRequest, WatchRequest};
use serde::Serialize;
use tokio::sync::mpsc;
use tonic::transport::Channel;

use super::CtlError;
use super::bench_args::{RunOptions, WatchArgs};
use super::driver;
use super::report::{self, Stats};

/// The JSON summary of a run.
#[derive(Debug, Clone, Serialize)]
pub struct WatchSummary {
    pub op: String,
    pub endpoints: Vec<String>,
    pub streams: usize,
    pub watchers: usize,
    pub puts: u64,
    pub put_rate: u64,
    pub events_expected: u64,
    pub events_delivered: u64,
    pub events_lost: u64,
    pub events_duplicated: u64,
    /// Events that arrived before their put's answer (counted as 0 delay).
    pub events_before_ack: u64,
    /// From each put's answer to each event (etcd's watch-latency measure).
    pub latency_ms: report::LatencyMs,
    /// From each put's sending to each event.
    pub from_send_latency_ms: report::LatencyMs,
    pub create_s: f64,
    pub rss_before_bytes: Option<u64>,
    pub rss_after_bytes: Option<u64>,
    pub rss_per_watcher_bytes: Option<f64>,
}

/// Resident memory of `pid`, from `/proc/<pid>/status` (`VmRSS`, in KiB).
fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// What one stream saw: per watch id, (revision, arrival) of each event.
type Arrivals = HashMap<i64, Vec<(i64, Instant)>>;

/// Runs one stream (step 1 and 3): creates its watchers, reports when they
/// are all created, records arrivals until the last revision reached every
/// watcher or `done` says stop.
async fn run_stream(
    channel: Channel,
    args: Arc<WatchArgs>,
    created: Arc<AtomicUsize>,
    mut last_revision: tokio::sync::watch::Receiver<Option<i64>>,
) -> Result<Arrivals, CtlError> {
    let (tx, rx) = mpsc::channel(args.watchers_per_stream.max(1));
    let mut client = WatchClient::new(channel);
    let call = client.watch(tokio_stream::wrappers::ReceiverStream::new(rx));
    let prefix = args.prefix.clone().into_bytes();
    let create = |_: usize| WatchRequest {
        request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
            key: prefix.clone(),
            range_end: node::concurrency::prefix_end(&prefix),
            ..Default::default()
        })),
    };
    let sender = tokio::spawn({
        let tx = tx.clone();
        let requests: Vec<WatchRequest> = (0..args.watchers_per_stream).map(create).collect();
        async move {
            for r in requests {
                if tx.send(r).await.is_err() {
                    return;
                }
            }
        }
    });
    let mut responses = call
        .await
        .map_err(|s| CtlError::InvalidArgument(format!("watch: {s}")))?
        .into_inner();
    let mut arrivals: Arrivals = HashMap::new();
    let mut done_watchers = 0usize;
    loop {
        let target = *last_revision.borrow();
        if target.is_some() && done_watchers == args.watchers_per_stream {
            break;
        }
        tokio::select! {
            message = responses.message() => {
                let now = Instant::now();
                let Some(response) = message.map_err(|s| CtlError::InvalidArgument(format!("watch: {s}")))? else {
                    break;
                };
                if response.created {
                    created.fetch_add(1, Ordering::SeqCst);
                    arrivals.entry(response.watch_id).or_default();
                    continue;
                }
                let seen = arrivals.entry(response.watch_id).or_default();
                for event in &response.events {
                    let rev = event.kv.as_ref().map_or(0, |kv| kv.mod_revision);
                    seen.push((rev, now));
                    if Some(rev) == target {
                        done_watchers += 1;
                    }
                }
            }
            changed = last_revision.changed() => {
                if changed.is_err() {
                    break;
                }
                // Watchers that already saw the last revision before it was
                // known count now.
                if let Some(target) = *last_revision.borrow() {
                    done_watchers = arrivals
                        .values()
                        .filter(|seen| seen.iter().any(|(r, _)| *r == target))
                        .count();
                }
            }
        }
    }
    drop(tx);
    sender.abort();
    Ok(arrivals)
}

/// Runs `oxcdctl bench watch` (see the module docs).
pub async fn run(options: RunOptions, args: WatchArgs) -> Result<(), CtlError> {
    let RunOptions {
        endpoints,
        conns,
        dial_timeout,
        json,
        ..
    } = options;
    if args.streams == 0 || args.watchers_per_stream == 0 || args.put_total == 0 {
        return Err(CtlError::InvalidArgument(
            "expected positive --streams, --watchers-per-stream and --put-total".into(),
        ));
    }
    let args = Arc::new(args);
    let watchers = args.streams * args.watchers_per_stream;
    eprintln!(
        "bench watch: {watchers} watchers on {} streams, {} puts at {}/s, endpoints {}",
        args.streams,
        args.put_total,
        args.put_rate,
        endpoints.join(",")
    );
    let channels = driver::channels(&endpoints, conns.max(1), dial_timeout).await?;
    let rss_before = args.rss_pid.and_then(rss_bytes);

    // 1. Streams and watchers.
    let created = Arc::new(AtomicUsize::new(0));
    let (last_tx, last_rx) = tokio::sync::watch::channel(None);
    let started = Instant::now();
    let mut streams = tokio::task::JoinSet::new();
    for s in 0..args.streams {
        streams.spawn(run_stream(
            channels[s % channels.len()].clone(),
            Arc::clone(&args),
            Arc::clone(&created),
            last_rx.clone(),
        ));
    }
    let create_deadline = Instant::now() + Duration::from_secs(120);
    while created.load(Ordering::SeqCst) < watchers {
        if Instant::now() > create_deadline {
            return Err(CtlError::InvalidArgument(format!(
                "only {} of {watchers} watchers were created within 120 s",
                created.load(Ordering::SeqCst)
            )));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let create_s = started.elapsed().as_secs_f64();
    let rss_after = args.rss_pid.and_then(rss_bytes);

    // 2. Paced puts.
    let mut kv = KvClient::new(channels[0].clone());
    let value = vec![b'v'; args.val_size];
    // (revision, sent, answered) of each put.
    let mut acks: Vec<(i64, Instant, Instant)> = Vec::with_capacity(args.put_total as usize);
    let puts_started = Instant::now();
    let bar = driver::progress_bar(args.put_total);
    for i in 0..args.put_total {
        if args.put_rate > 0 {
            let due = puts_started + Duration::from_secs_f64(i as f64 / args.put_rate as f64);
            tokio::time::sleep_until(due.into()).await;
        }
        let put = PutRequest {
            key: format!("{}{i:08}", args.prefix).into_bytes(),
            value: value.clone(),
            ..Default::default()
        };
        let sent = Instant::now();
        let response = kv
            .put(put)
            .await
            .map_err(|s| CtlError::InvalidArgument(format!("put: {s}")))?
            .into_inner();
        let revision = response.header.map_or(0, |h| h.revision);
        acks.push((revision, sent, Instant::now()));
        bar.inc(1);
    }
    bar.finish_and_clear();
    let last = acks.last().map(|(r, _, _)| *r);
    let _ = last_tx.send(last);

    // 3. Drain.
    let mut per_stream: Vec<Arrivals> = Vec::new();
    let drain = tokio::time::timeout(args.drain_timeout, async {
        while let Some(joined) = streams.join_next().await {
            match joined {
                Ok(Ok(arrivals)) => per_stream.push(arrivals),
                Ok(Err(e)) => return Err(e),
                Err(e) => return Err(CtlError::InvalidArgument(format!("watch stream task: {e}"))),
            }
        }
        Ok(())
    })
    .await;
    match drain {
        Ok(result) => result?,
        Err(_) => eprintln!(
            "bench watch: not every watcher saw the last put within {:?}; missing events count as lost",
            args.drain_timeout
        ),
    }
    streams.abort_all();

    // 4. Delays, losses, duplicates.
    let ack_of: HashMap<i64, (Instant, Instant)> = acks
        .iter()
        .map(|(r, sent, ack)| (*r, (*sent, *ack)))
        .collect();
    let mut delays = Vec::with_capacity(watchers * acks.len());
    let mut from_send = Vec::with_capacity(watchers * acks.len());
    let (mut delivered, mut duplicated, mut before_ack) = (0u64, 0u64, 0u64);
    for arrivals in &per_stream {
        for seen in arrivals.values() {
            let mut first: HashMap<i64, Instant> = HashMap::new();
            for (rev, at) in seen {
                if first.insert(*rev, *at).is_some() {
                    duplicated += 1;
                }
            }
            for (rev, at) in first {
                let Some((sent, ack)) = ack_of.get(&rev) else {
                    continue;
                };
                delivered += 1;
                if at < *ack {
                    before_ack += 1;
                }
                delays.push(at.saturating_duration_since(*ack).as_secs_f64());
                from_send.push(at.saturating_duration_since(*sent).as_secs_f64());
            }
        }
    }
    let expected = (watchers as u64) * args.put_total;
    let stats = Stats::new(delays, Default::default(), puts_started.elapsed());
    let send_stats = Stats::new(from_send, Default::default(), puts_started.elapsed());
    print!("{}", report::render(&stats));
    println!(
        "\nwatchers {watchers}, events expected {expected}, delivered {delivered}, lost {}, duplicated {duplicated}, before the put's answer {before_ack}",
        expected - delivered
    );
    let summary = WatchSummary {
        op: "watch".into(),
        endpoints,
        streams: args.streams,
        watchers,
        puts: args.put_total,
        put_rate: args.put_rate,
        events_expected: expected,
        events_delivered: delivered,
        events_lost: expected - delivered,
        events_duplicated: duplicated,
        events_before_ack: before_ack,
        latency_ms: report::LatencyMs::of(&stats),
        from_send_latency_ms: report::LatencyMs::of(&send_stats),
        create_s,
        rss_before_bytes: rss_before,
        rss_after_bytes: rss_after,
        rss_per_watcher_bytes: rss_before
            .zip(rss_after)
            .map(|(b, a)| (a as f64 - b as f64) / watchers as f64),
    };
    report::emit_json(&summary, json.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rss_is_read_from_proc() {
        let mine = rss_bytes(std::process::id()).expect("own VmRSS");
        assert!(mine > 1024 * 1024, "{mine}");
        assert_eq!(rss_bytes(u32::MAX), None);
    }
}
