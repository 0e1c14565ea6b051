//! `oxcdctl bench`'s command line: the options shared by every workload and
//! each workload's own, with etcd `tools/benchmark`'s flag names and
//! defaults. [`bench`](super::bench) runs them; [`workload`](super::workload)
//! turns them into requests.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};

/// Options shared by every workload, accepted before or after its name.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// gRPC endpoints (host:port or http://host:port), comma separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "127.0.0.1:2379",
        global = true
    )]
    pub endpoints: Vec<String>,
    /// Total number of gRPC connections.
    #[arg(long, default_value_t = 1, global = true)]
    pub conns: usize,
    /// Number of concurrent in-flight requests.
    #[arg(long, default_value_t = 1, global = true)]
    pub clients: usize,
    /// Also write the JSON summary to this file.
    #[arg(long, global = true)]
    pub json: Option<PathBuf>,
    /// Time allowed to open each connection (e.g. 500ms, 2s, 1m).
    #[arg(long, default_value = "5s", value_parser = parse_duration, global = true)]
    pub dial_timeout: Duration,
    /// Time allowed for each request before it counts as an error.
    #[arg(long, default_value = "10s", value_parser = parse_duration, global = true)]
    pub request_timeout: Duration,
    /// Seed of the key and value generator (default: from the clock).
    #[arg(long, global = true)]
    pub seed: Option<u64>,
    /// `name:password`: authenticate once and send the token with every
    /// KV request (KV and list workloads; etcd benchmark's `--user`).
    #[arg(long, global = true)]
    pub user: Option<String>,
    #[command(subcommand)]
    pub command: BenchCommand,
}

/// What `oxcdctl bench` measures.
#[derive(Debug, Clone, Subcommand)]
pub enum BenchCommand {
    /// A KV workload.
    #[command(flatten)]
    Kv(Workload),
    /// Put-to-event latency and delivery of watch events.
    #[command(alias = "watch-latency")]
    Watch(WatchArgs),
    /// Lease keep-alive throughput and latency, and expiry speed.
    LeaseKeepalive(LeaseArgs),
    /// Full paginated lists of a prefix, the way Kubernetes' apiserver lists.
    List(ListArgs),
}

/// The benchmark to run.
#[derive(Debug, Clone, Subcommand)]
pub enum Workload {
    /// Benchmark put.
    Put(PutArgs),
    /// Benchmark range.
    Range(RangeArgs),
    /// Benchmark txn with puts only (etcd's txn-put).
    #[command(alias = "txn-put")]
    Txn(TxnArgs),
    /// Benchmark a seeded mix of single-key ranges and puts over one key space.
    Mixed(MixedArgs),
}

/// `bench put` options (etcd's names and defaults).
#[derive(Debug, Clone, Args)]
pub struct PutArgs {
    /// Total number of put requests.
    #[arg(long, default_value_t = 10000)]
    pub total: u64,
    /// Key size of put request.
    #[arg(long, default_value_t = 8)]
    pub key_size: usize,
    /// Value size of put request.
    #[arg(long, default_value_t = 8)]
    pub val_size: usize,
    /// Maximum possible keys.
    #[arg(long, default_value_t = 1)]
    pub key_space_size: u64,
    /// Use sequential keys.
    #[arg(long)]
    pub sequential_keys: bool,
    /// First key index of `--sequential-keys`: put `i` writes key
    /// `(seq-start + i) % key-space-size`, so runs of `--total N` starting
    /// at 0, N, 2N, ... write distinct keys.
    #[arg(long, default_value_t = 0)]
    pub seq_start: u64,
    /// Write `<prefix><index>` keys instead of etcd's binary ones: the index
    /// in decimal, zero-padded to the width of the largest index (e.g.
    /// `/registry/pods/ns/pod-00042`); `--key-size` is then unused.
    #[arg(long)]
    pub prefix: Option<String>,
}

/// Read consistency of `bench range`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Consistency {
    /// Linearizable.
    #[value(name = "l")]
    Linearizable,
    /// Serializable.
    #[value(name = "s")]
    Serializable,
}

/// `bench range <key> [end]` options.
#[derive(Debug, Clone, Args)]
pub struct RangeArgs {
    /// Key to read (or start of the range).
    pub key: String,
    /// End of the range (exclusive); a single key when absent.
    pub end: Option<String>,
    /// Linearizable (l) or Serializable (s).
    #[arg(long, value_enum, default_value = "l")]
    pub consistency: Consistency,
    /// Total number of range requests.
    #[arg(long, default_value_t = 10000)]
    pub total: u64,
    /// Maximum number of keys returned per request (0: no limit).
    #[arg(long, default_value_t = 0)]
    pub limit: i64,
    /// Return only the count of keys.
    #[arg(long)]
    pub count_only: bool,
}

/// `bench txn` options (etcd's `txn-put`).
#[derive(Debug, Clone, Args)]
pub struct TxnArgs {
    /// Total number of txn requests.
    #[arg(long, default_value_t = 10000)]
    pub total: u64,
    /// Number of puts per txn.
    #[arg(long, default_value_t = 1)]
    pub txn_ops: u64,
    /// Key size of txn put.
    #[arg(long, default_value_t = 8)]
    pub key_size: usize,
    /// Value size of txn put.
    #[arg(long, default_value_t = 8)]
    pub val_size: usize,
    /// Maximum possible keys.
    #[arg(long, default_value_t = 1)]
    pub key_space_size: u64,
}

/// `bench mixed` options: each request reads or writes one key of the key
/// space, a read with probability `--read-ratio`.
#[derive(Debug, Clone, Args)]
pub struct MixedArgs {
    /// Share of requests that are ranges (0 to 1); the rest are puts.
    #[arg(long, default_value_t = 0.5)]
    pub read_ratio: f64,
    /// Linearizable (l) or Serializable (s) ranges.
    #[arg(long, value_enum, default_value = "l")]
    pub consistency: Consistency,
    /// Total number of requests, ranges and puts together.
    #[arg(long, default_value_t = 10000)]
    pub total: u64,
    /// Key size of every request.
    #[arg(long, default_value_t = 8)]
    pub key_size: usize,
    /// Value size of put request.
    #[arg(long, default_value_t = 8)]
    pub val_size: usize,
    /// Maximum possible keys.
    #[arg(long, default_value_t = 1)]
    pub key_space_size: u64,
}

impl Workload {
    /// Number of requests the workload sends.
    pub fn total(&self) -> u64 {
        match self {
            Workload::Put(a) => a.total,
            Workload::Range(a) => a.total,
            Workload::Txn(a) => a.total,
            Workload::Mixed(a) => a.total,
        }
    }
}

/// Parses `500ms`, `2s`, `1m` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, scale) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else {
        (s, 1.0)
    };
    let value: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("invalid duration {s:?} (use e.g. 500ms, 2s, 1m)"))?;
    if !value.is_finite() || value < 0.0 {
        return Err(format!("invalid duration {s:?}: must be non-negative"));
    }
    Ok(Duration::from_secs_f64(value * scale))
}

/// `bench watch` options.
#[derive(Debug, Clone, Args)]
pub struct WatchArgs {
    /// Watch streams to open.
    #[arg(long, default_value_t = 10)]
    pub streams: usize,
    /// Watchers created on each stream, all on the prefix.
    #[arg(long, default_value_t = 10)]
    pub watchers_per_stream: usize,
    /// Puts to send under the prefix.
    #[arg(long, default_value_t = 1000)]
    pub put_total: u64,
    /// Puts per second (0: as fast as one client goes).
    #[arg(long, default_value_t = 100)]
    pub put_rate: u64,
    /// Value size of each put.
    #[arg(long, default_value_t = 32)]
    pub val_size: usize,
    /// The key prefix watched and written.
    #[arg(long, default_value = "bench-watch/")]
    pub prefix: String,
    /// PID of the server process (same machine) whose resident memory is
    /// read before and after the watchers are created.
    #[arg(long)]
    pub rss_pid: Option<u32>,
    /// How long to wait for the last events after the last put (e.g. 10s).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub drain_timeout: Duration,
}

/// `bench lease-keepalive` options.
#[derive(Debug, Clone, Args)]
pub struct LeaseArgs {
    /// Leases to grant and keep alive.
    #[arg(long, default_value_t = 10_000)]
    pub leases: u64,
    /// Their TTL in seconds (long enough not to expire during the
    /// keep-alive phase).
    #[arg(long, default_value_t = 60)]
    pub ttl: i64,
    /// Keep-alives to send in all.
    #[arg(long, default_value_t = 50_000)]
    pub total: u64,
    /// Also measure expiry: the TTL of a second set of `--leases` leases
    /// left to expire (0: skip).
    #[arg(long, default_value_t = 0)]
    pub expire_ttl: i64,
}

/// `bench list` options.
#[derive(Debug, Clone, Args)]
pub struct ListArgs {
    /// The prefix listed (every key that starts with it).
    #[arg(long)]
    pub prefix: String,
    /// Keys per page (the apiserver's default page is 500).
    #[arg(long, default_value_t = 500)]
    pub limit: i64,
    /// Linearizable (l) or Serializable (s) pages.
    #[arg(long, value_enum, default_value = "l")]
    pub consistency: Consistency,
    /// Full lists to run in all, over the `--clients` listers.
    #[arg(long, default_value_t = 10)]
    pub total_lists: u64,
}

/// What every `bench` workload takes from the common flags.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub endpoints: Vec<String>,
    pub conns: usize,
    pub clients: usize,
    pub dial_timeout: Duration,
    pub request_timeout: Duration,
    /// Where the JSON summary goes, if anywhere.
    pub json: Option<PathBuf>,
    /// `name:password` to authenticate as, if any.
    pub user: Option<String>,
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::ctl::{Cli, Command};

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn cli_accepts_global_options_on_either_side() {
        let parse = |line: &str| Cli::try_parse_from(line.split_whitespace());
        let cli = parse(
            "oxcdctl bench --clients 7 --endpoints a:1,b:2 put --conns 3 --total 5 \
             --key-space-size 100000 --val-size 256",
        )
        .expect("parses");
        let Command::Bench(b) = cli.command else {
            panic!("parsed as a bench command")
        };
        assert_eq!((b.clients, b.conns), (7, 3));
        assert_eq!(b.endpoints, vec!["a:1".to_string(), "b:2".to_string()]);
        let BenchCommand::Kv(Workload::Put(p)) = b.command else {
            panic!("expected put");
        };
        assert_eq!(
            (p.total, p.key_size, p.val_size, p.key_space_size),
            (5, 8, 256, 100_000)
        );

        let cli = parse("oxcdctl bench txn-put --txn-ops 2").expect("txn-put alias parses");
        let Command::Bench(b) = cli.command else {
            panic!("parsed as a bench command")
        };
        assert!(matches!(
            b.command,
            BenchCommand::Kv(Workload::Txn(TxnArgs { txn_ops: 2, .. }))
        ));

        let cli = parse("oxcdctl bench range foo fop --consistency s --json /tmp/x")
            .expect("range parses");
        let Command::Bench(b) = cli.command else {
            panic!("parsed as a bench command")
        };
        assert_eq!(b.json, Some(PathBuf::from("/tmp/x")));
        let BenchCommand::Kv(Workload::Range(r)) = b.command else {
            panic!("expected range");
        };
        assert_eq!((r.key.as_str(), r.end.as_deref()), ("foo", Some("fop")));
        assert_eq!(r.consistency, Consistency::Serializable);
        assert!(parse("oxcdctl bench range k --consistency x").is_err());

        let cli = parse(
            "oxcdctl bench mixed --read-ratio 0.9 --consistency s --key-size 8 \
             --val-size 256 --key-space-size 100000 --total 20",
        )
        .expect("mixed parses");
        let Command::Bench(b) = cli.command else {
            panic!("parsed as a bench command")
        };
        let BenchCommand::Kv(Workload::Mixed(m)) = b.command else {
            panic!("expected mixed");
        };
        assert_eq!(
            (m.total, m.key_size, m.val_size, m.key_space_size),
            (20, 8, 256, 100_000)
        );
        assert_eq!(m.read_ratio, 0.9);
        assert_eq!(m.consistency, Consistency::Serializable);

        let cli = parse(
            "oxcdctl bench put --sequential-keys --seq-start 300 --key-space-size 1000 \
             --prefix /registry/pods/ns/pod-",
        )
        .expect("put with a prefix parses");
        let Command::Bench(b) = cli.command else {
            panic!("parsed as a bench command")
        };
        let BenchCommand::Kv(Workload::Put(p)) = b.command else {
            panic!("expected put");
        };
        assert!(p.sequential_keys);
        assert_eq!(p.seq_start, 300);
        assert_eq!(p.prefix.as_deref(), Some("/registry/pods/ns/pod-"));

        let cli = parse(
            "oxcdctl bench --clients 10 --conns 10 list --prefix /registry/pods/ \
             --consistency s --total-lists 20",
        )
        .expect("list parses");
        let Command::Bench(b) = cli.command else {
            panic!("parsed as a bench command")
        };
        assert_eq!((b.clients, b.conns), (10, 10));
        let BenchCommand::List(l) = b.command else {
            panic!("expected list");
        };
        assert_eq!(
            (l.prefix.as_str(), l.limit, l.total_lists),
            ("/registry/pods/", 500, 20)
        );
        assert_eq!(l.consistency, Consistency::Serializable);
        assert!(
            parse("oxcdctl bench list --limit 5").is_err(),
            "--prefix is required"
        );
    }
}
