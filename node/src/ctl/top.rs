//! `oxcdctl top`: a live view of a cluster, member by member and actor by
//! actor, from what every member already serves.
//!
//! 1. Every `--interval` (1 s), each endpoint is sampled: `Maintenance.Status`
//!    (member id, leader, term, raft index and applied index, db size,
//!    alarms and errors) and its `/metrics` text (parsed with a Prometheus
//!    text-format parser): per actor the mailbox depth, messages handled,
//!    the handling-time histogram and the restarts by its supervisor.
//! 2. Rates and percentiles come from the difference between two samples:
//!    messages per second, and the p99 handling time of the messages handled
//!    in between (from the histogram's buckets). The first sample reports
//!    totals since the member started.
//! 3. `-w json` prints one sample (two, an interval apart, so the rates mean
//!    something) as JSON and exits; otherwise a terminal view (ratatui)
//!    refreshes every interval until `q`, Esc or Ctrl-C, or `--iterations`.
//!
//! An endpoint that does not answer is shown with its error and retried at
//! the next refresh.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use proto::etcdserverpb::StatusRequest;
use proto::etcdserverpb::maintenance_client::MaintenanceClient;
use serde::Serialize;

use super::CtlError;
use super::bench_args::parse_duration;

/// `oxcdctl top`'s flags.
#[derive(Debug, Clone, Args)]
pub struct TopArgs {
    /// Client URLs of the members (host:port or http://host:port), comma
    /// separated.
    #[arg(long, value_delimiter = ',', default_value = "127.0.0.1:2379")]
    pub endpoints: Vec<String>,
    /// Time between refreshes.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub interval: Duration,
    /// Output: a live terminal view, or one JSON sample.
    #[arg(short = 'w', long = "write-out", value_enum, default_value = "table")]
    pub write_out: TopOutput,
    /// Stop after this many refreshes (0: until q, Esc or Ctrl-C).
    #[arg(long, default_value_t = 0)]
    pub iterations: u64,
}

/// What `oxcdctl top` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TopOutput {
    Table,
    Json,
}

/// One member as sampled.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MemberView {
    pub endpoint: String,
    /// Hex member id (empty when the member did not answer).
    pub member_id: String,
    pub is_leader: bool,
    pub leader: String,
    pub raft_term: u64,
    pub raft_index: u64,
    pub raft_applied_index: u64,
    pub db_size: i64,
    pub db_size_in_use: i64,
    /// Alarms and other errors the member reports.
    pub errors: Vec<String>,
    pub actors: Vec<ActorView>,
    /// Why the member could not be sampled, if it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unreachable: Option<String>,
}

/// One actor of a member.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ActorView {
    pub actor: String,
    pub mailbox_depth: i64,
    pub messages_total: f64,
    pub messages_per_second: f64,
    /// p99 handling time, in milliseconds (the upper bound of the bucket
    /// that holds the 99th percentile), over the interval.
    pub p99_ms: Option<f64>,
    /// Restarts by the actor's supervisor since the member started.
    pub restarts: u64,
}

/// An actor's counters as read from one scrape.
#[derive(Debug, Clone, Default)]
struct ActorCounters {
    depth: i64,
    messages: f64,
    restarts: f64,
    /// Cumulative histogram buckets: upper bound (seconds) -> count.
    buckets: BTreeMap<u64, f64>,
}

/// A member's previous scrape, for rates.
#[derive(Debug, Default)]
struct Previous {
    at: Option<Instant>,
    actors: BTreeMap<String, ActorCounters>,
}

/// Runs `oxcdctl top`.
pub async fn run(args: TopArgs) -> Result<(), CtlError> {
    if args.endpoints.is_empty() {
        return Err(CtlError::InvalidArgument("--endpoints is empty".into()));
    }
    let mut sampler = Sampler::new(&args.endpoints);
    match args.write_out {
        TopOutput::Json => {
            sampler.sample().await;
            tokio::time::sleep(args.interval).await;
            let views = sampler.sample().await;
            println!("{}", serde_json::to_string_pretty(&views)?);
            Ok(())
        }
        TopOutput::Table => live(sampler, &args).await,
    }
}

/// Samples the members and keeps what rates need.
struct Sampler {
    endpoints: Vec<String>,
    previous: Vec<Previous>,
}

impl Sampler {
    fn new(endpoints: &[String]) -> Sampler {
        Sampler {
            endpoints: endpoints.to_vec(),
            previous: endpoints.iter().map(|_| Previous::default()).collect(),
        }
    }

    async fn sample(&mut self) -> Vec<MemberView> {
        let mut views = Vec::with_capacity(self.endpoints.len());
        for i in 0..self.endpoints.len() {
            let endpoint = self.endpoints[i].clone();
            let view = match self.sample_one(i, &endpoint).await {
                Ok(view) => view,
                Err(e) => MemberView {
                    endpoint,
                    member_id: String::new(),
                    is_leader: false,
                    leader: String::new(),
                    raft_term: 0,
                    raft_index: 0,
                    raft_applied_index: 0,
                    db_size: 0,
                    db_size_in_use: 0,
                    errors: Vec::new(),
                    actors: Vec::new(),
                    unreachable: Some(e),
                },
            };
            views.push(view);
        }
        views
    }

    async fn sample_one(&mut self, i: usize, endpoint: &str) -> Result<MemberView, String> {
        let uri = if endpoint.contains("://") {
            endpoint.to_string()
        } else {
            format!("http://{endpoint}")
        };
        let channel = tonic::transport::Endpoint::from_shared(uri.clone())
            .map_err(|e| e.to_string())?
            .connect_timeout(Duration::from_secs(1))
            .timeout(Duration::from_secs(2))
            .connect()
            .await
            .map_err(|e| proto::errors::error_chain(&e))?;
        let status = MaintenanceClient::new(channel)
            .status(StatusRequest {})
            .await
            .map_err(|s| format!("status: {}", s.message()))?
            .into_inner();
        let text = http_get(&format!("{uri}/metrics")).await?;
        let now = Instant::now();
        let counters = parse_actors(&text)?;
        let previous = &mut self.previous[i];
        let elapsed = previous.at.map(|at| now.duration_since(at).as_secs_f64());
        let actors = counters
            .iter()
            .map(|(actor, c)| {
                let before = previous.actors.get(actor);
                let (messages_per_second, p99_ms) = match (before, elapsed) {
                    (Some(b), Some(secs)) if secs > 0.0 => (
                        (c.messages - b.messages).max(0.0) / secs,
                        p99(&difference(&c.buckets, &b.buckets)),
                    ),
                    _ => (0.0, p99(&c.buckets)),
                };
                ActorView {
                    actor: actor.clone(),
                    mailbox_depth: c.depth,
                    messages_total: c.messages,
                    messages_per_second,
                    p99_ms,
                    restarts: c.restarts as u64,
                }
            })
            .collect();
        previous.at = Some(now);
        previous.actors = counters;
        let header = status.header.unwrap_or_default();
        Ok(MemberView {
            endpoint: endpoint.to_string(),
            member_id: format!("{:x}", header.member_id),
            is_leader: status.leader != 0 && status.leader == header.member_id,
            leader: format!("{:x}", status.leader),
            raft_term: status.raft_term,
            raft_index: status.raft_index,
            raft_applied_index: status.raft_applied_index,
            db_size: status.db_size,
            db_size_in_use: status.db_size_in_use,
            errors: status.errors,
            actors,
            unreachable: None,
        })
    }
}

/// Bucket bounds are kept as microseconds so they can key a map.
fn bound_key(seconds: f64) -> u64 {
    if seconds.is_infinite() {
        u64::MAX
    } else {
        (seconds * 1e6).round() as u64
    }
}

/// The per-actor series of one `/metrics` text.
fn parse_actors(text: &str) -> Result<BTreeMap<String, ActorCounters>, String> {
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).map_err(|e| format!("/metrics: {e}"))?;
    let mut actors: BTreeMap<String, ActorCounters> = BTreeMap::new();
    for sample in &scrape.samples {
        let Some(actor) = sample.labels.get("actor") else {
            continue;
        };
        let entry = actors.entry(actor.to_string()).or_default();
        match (sample.metric.as_str(), &sample.value) {
            ("oxcd_actor_mailbox_depth", prometheus_parse::Value::Gauge(v)) => {
                entry.depth = *v as i64;
            }
            ("oxcd_actor_messages_total", prometheus_parse::Value::Counter(v)) => {
                entry.messages += v;
            }
            ("oxcd_actor_restarts_total", prometheus_parse::Value::Counter(v)) => {
                entry.restarts = *v;
            }
            ("oxcd_actor_handle_seconds", prometheus_parse::Value::Histogram(buckets)) => {
                for b in buckets {
                    *entry.buckets.entry(bound_key(b.less_than)).or_default() += b.count;
                }
            }
            _ => {}
        }
    }
    Ok(actors)
}

fn difference(now: &BTreeMap<u64, f64>, before: &BTreeMap<u64, f64>) -> BTreeMap<u64, f64> {
    now.iter()
        .map(|(bound, count)| {
            let old = before.get(bound).copied().unwrap_or(0.0);
            (*bound, (count - old).max(0.0))
        })
        .collect()
}

/// The upper bound (ms) of the bucket holding the 99th percentile of
/// cumulative `buckets`; `None` without observations.
fn p99(buckets: &BTreeMap<u64, f64>) -> Option<f64> {
    let total = buckets.values().copied().fold(0.0, f64::max);
    if total <= 0.0 {
        return None;
    }
    let rank = total * 0.99;
    buckets
        .iter()
        .find(|(_, count)| **count >= rank)
        .map(|(bound, _)| {
            if *bound == u64::MAX {
                f64::INFINITY
            } else {
                *bound as f64 / 1e3
            }
        })
}

/// The terminal view.
async fn live(mut sampler: Sampler, args: &TopArgs) -> Result<(), CtlError> {
    use ratatui::crossterm::event::{self, Event, KeyCode, KeyModifiers};
    let mut terminal = ratatui::init();
    let mut refreshes = 0u64;
    let outcome = loop {
        let views = sampler.sample().await;
        if let Err(e) = terminal.draw(|frame| draw(frame, &views, args.interval)) {
            break Err(CtlError::InvalidArgument(format!("terminal: {e}")));
        }
        refreshes += 1;
        if args.iterations != 0 && refreshes >= args.iterations {
            break Ok(());
        }
        let deadline = Instant::now() + args.interval;
        let mut quit = false;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            let ready = tokio::task::block_in_place(|| event::poll(left)).unwrap_or(false);
            if !ready {
                break;
            }
            if let Ok(Event::Key(key)) = tokio::task::block_in_place(event::read) {
                let ctrl_c =
                    key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL);
                if matches!(key.code, KeyCode::Char('q') | KeyCode::Esc) || ctrl_c {
                    quit = true;
                    break;
                }
            }
        }
        if quit {
            break Ok(());
        }
    };
    ratatui::restore();
    outcome
}

fn draw(frame: &mut ratatui::Frame, views: &[MemberView], interval: Duration) {
    use ratatui::layout::{Constraint, Layout};
    use ratatui::style::{Modifier, Style};
    use ratatui::widgets::{Block, Borders, Row, Table};
    let heights: Vec<Constraint> = std::iter::once(Constraint::Length(views.len() as u16 + 3))
        .chain(
            views
                .iter()
                .map(|v| Constraint::Length(v.actors.len() as u16 + 3)),
        )
        .collect();
    let areas = Layout::vertical(heights).split(frame.area());
    let bold = Style::default().add_modifier(Modifier::BOLD);
    let members = views.iter().map(|v| {
        Row::new(vec![
            v.endpoint.clone(),
            v.member_id.clone(),
            if v.is_leader {
                "leader".into()
            } else {
                String::new()
            },
            v.raft_term.to_string(),
            v.raft_index.to_string(),
            v.raft_applied_index.to_string(),
            format!("{:.1} MB", v.db_size as f64 / 1e6),
            v.unreachable.clone().unwrap_or_else(|| v.errors.join("; ")),
        ])
    });
    let header = Row::new(vec![
        "endpoint",
        "id",
        "role",
        "term",
        "raft index",
        "applied",
        "db size",
        "alarms/errors",
    ])
    .style(bold);
    let widths = [
        Constraint::Length(22),
        Constraint::Length(17),
        Constraint::Length(7),
        Constraint::Length(6),
        Constraint::Length(11),
        Constraint::Length(11),
        Constraint::Length(10),
        Constraint::Min(10),
    ];
    let title = format!(" oxcdctl top: every {interval:?}; q to quit ");
    frame.render_widget(
        Table::new(members, widths)
            .header(header)
            .block(Block::default().borders(Borders::ALL).title(title)),
        areas[0],
    );
    for (i, v) in views.iter().enumerate() {
        let rows = v.actors.iter().map(|a| {
            Row::new(vec![
                a.actor.clone(),
                a.mailbox_depth.to_string(),
                format!("{:.0}", a.messages_per_second),
                a.p99_ms.map_or("-".into(), |p| format!("{p:.2} ms")),
                format!("{:.0}", a.messages_total),
                a.restarts.to_string(),
            ])
        });
        let header = Row::new(vec![
            "actor", "mailbox", "msg/s", "p99", "handled", "restarts",
        ])
        .style(bold);
        let widths = [
            Constraint::Length(14),
            Constraint::Length(9),
            Constraint::Length(10),
            Constraint::Length(12),
            Constraint::Length(12),
            Constraint::Min(8),
        ];
        let title = format!(" {} ({}) actors ", v.endpoint, v.member_id);
        if let Some(area) = areas.get(i + 1) {
            frame.render_widget(
                Table::new(rows, widths)
                    .header(header)
                    .block(Block::default().borders(Borders::ALL).title(title)),
                *area,
            );
        }
    }
}

/// The body of `GET url` (`http://host:port/path`) over one HTTP/1.1
/// connection (hyper's client), or why not: `/metrics`, once a refresh.
async fn http_get(url: &str) -> Result<String, String> {
    use http_body_util::{BodyExt, Empty};
    use hyper::body::Bytes;
    use hyper_util::rt::TokioIo;
    let uri: hyper::Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
    let authority = uri.authority().ok_or(format!("{url}: no host"))?.clone();
    let stream = tokio::time::timeout(
        Duration::from_secs(2),
        tokio::net::TcpStream::connect(authority.as_str()),
    )
    .await
    .map_err(|_| format!("{url}: connect timed out"))?
    .map_err(|e| format!("{url}: {e}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    tokio::spawn(connection);
    let request = hyper::Request::get(uri.path())
        .header(hyper::header::HOST, authority.as_str())
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("{url}: {e}"))?;
    let response = tokio::time::timeout(Duration::from_secs(2), sender.send_request(request))
        .await
        .map_err(|_| format!("{url}: timed out"))?
        .map_err(|e| format!("{url}: {e}"))?;
    if !response.status().is_success() {
        return Err(format!("{url}: {}", response.status()));
    }
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("{url}: {e}"))?
        .to_bytes();
    Ok(String::from_utf8_lossy(&body).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
# TYPE oxcd_actor_mailbox_depth gauge
oxcd_actor_mailbox_depth{actor=\"apply\"} 3
# TYPE oxcd_actor_messages_total counter
oxcd_actor_messages_total{actor=\"apply\",message=\"Committed\"} 90
oxcd_actor_messages_total{actor=\"apply\",message=\"Read\"} 10
# TYPE oxcd_actor_restarts_total counter
oxcd_actor_restarts_total{actor=\"apply\"} 2
# TYPE oxcd_actor_handle_seconds histogram
oxcd_actor_handle_seconds_bucket{actor=\"apply\",message=\"Committed\",le=\"0.001\"} 80
oxcd_actor_handle_seconds_bucket{actor=\"apply\",message=\"Committed\",le=\"0.01\"} 90
oxcd_actor_handle_seconds_bucket{actor=\"apply\",message=\"Committed\",le=\"+Inf\"} 90
oxcd_actor_handle_seconds_sum{actor=\"apply\",message=\"Committed\"} 0.1
oxcd_actor_handle_seconds_count{actor=\"apply\",message=\"Committed\"} 90
oxcd_actor_handle_seconds_bucket{actor=\"apply\",message=\"Read\",le=\"0.001\"} 10
oxcd_actor_handle_seconds_bucket{actor=\"apply\",message=\"Read\",le=\"0.01\"} 10
oxcd_actor_handle_seconds_bucket{actor=\"apply\",message=\"Read\",le=\"+Inf\"} 10
oxcd_actor_handle_seconds_sum{actor=\"apply\",message=\"Read\"} 0.001
oxcd_actor_handle_seconds_count{actor=\"apply\",message=\"Read\"} 10
";

    #[test]
    fn actors_are_summed_over_message_types() {
        let actors = parse_actors(TEXT).unwrap();
        let apply = &actors["apply"];
        assert_eq!(apply.depth, 3);
        assert_eq!(apply.messages, 100.0);
        assert_eq!(apply.restarts, 2.0);
        assert_eq!(apply.buckets[&1000], 90.0);
        assert_eq!(apply.buckets[&10000], 100.0);
        // 99 of 100 observations: the 10 ms bucket.
        assert_eq!(p99(&apply.buckets), Some(10.0));
        let none = difference(&apply.buckets, &apply.buckets);
        assert_eq!(p99(&none), None);
    }
}
