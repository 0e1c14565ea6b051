//! Command-line flags and `ETCD_*` environment variables, with etcd's names
//! and defaults, for the settings oxcd has today: name, data dir, client and
//! peer URLs, the initial cluster, request and txn limits, the backend quota,
//! raft timings, the snapshot count, TLS, auto-compaction, logging
//! (`--logger`, `--log-level`, `--log-outputs`, and oxcd's `--log-format`)
//! and metrics (`--metrics`, `--listen-metrics-urls`).
//! An etcd flag oxcd does not have yet (`--log-rotation-config-json`, ...) is refused at start
//! with clap's error naming it, rather than accepted and silently ignored:
//! an etcd command line using only the flags above runs oxcd unchanged.

use std::path::PathBuf;

use clap::Parser;

/// etcd's default initial cluster token.
pub const DEFAULT_CLUSTER_TOKEN: &str = "etcd-cluster";

/// The `oxcd` server's settings.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "oxcd",
    version,
    about = "An etcd-compatible distributed key-value store"
)]
pub struct Config {
    /// Human-readable name for this member.
    #[arg(long, env = "ETCD_NAME", default_value = "default")]
    pub name: String,
    /// Path to the data directory (default: `<name>.oxcd`).
    #[arg(long = "data-dir", env = "ETCD_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// URLs to listen on for client traffic.
    #[arg(
        long = "listen-client-urls",
        env = "ETCD_LISTEN_CLIENT_URLS",
        default_value = "http://localhost:2379",
        value_delimiter = ','
    )]
    pub listen_client_urls: Vec<String>,
    /// Client URLs advertised to the rest of the cluster.
    #[arg(
        long = "advertise-client-urls",
        env = "ETCD_ADVERTISE_CLIENT_URLS",
        default_value = "http://localhost:2379",
        value_delimiter = ','
    )]
    pub advertise_client_urls: Vec<String>,
    /// URLs to listen on for peer traffic.
    #[arg(
        long = "listen-peer-urls",
        env = "ETCD_LISTEN_PEER_URLS",
        default_value = "http://localhost:2380",
        value_delimiter = ','
    )]
    pub listen_peer_urls: Vec<String>,
    /// This member's peer URLs, advertised to the rest of the cluster.
    #[arg(
        long = "initial-advertise-peer-urls",
        env = "ETCD_INITIAL_ADVERTISE_PEER_URLS",
        default_value = "http://localhost:2380",
        value_delimiter = ','
    )]
    pub initial_advertise_peer_urls: Vec<String>,
    /// Initial cluster configuration for bootstrapping: `name=peerURL,...`.
    #[arg(
        long = "initial-cluster",
        env = "ETCD_INITIAL_CLUSTER",
        default_value = "default=http://localhost:2380"
    )]
    pub initial_cluster: String,
    /// Initial cluster state (`new` or `existing`).
    #[arg(
        long = "initial-cluster-state",
        env = "ETCD_INITIAL_CLUSTER_STATE",
        default_value = "new"
    )]
    pub initial_cluster_state: ClusterState,
    /// Initial cluster token, hashed into member and cluster ids.
    #[arg(long = "initial-cluster-token", env = "ETCD_INITIAL_CLUSTER_TOKEN", default_value = DEFAULT_CLUSTER_TOKEN)]
    pub initial_cluster_token: String,
    /// Maximum client request size in bytes the server will accept.
    #[arg(
        long = "max-request-bytes",
        env = "ETCD_MAX_REQUEST_BYTES",
        default_value_t = 1_572_864
    )]
    pub max_request_bytes: usize,
    /// Interpret `--auto-compaction-retention` as hours of history
    /// (`periodic`) or as a number of revisions (`revision`).
    #[arg(
        long = "auto-compaction-mode",
        env = "ETCD_AUTO_COMPACTION_MODE",
        value_enum,
        default_value = "periodic"
    )]
    pub auto_compaction_mode: CompactionMode,
    /// Auto compaction retention: hours (or a duration like `30m`) of
    /// history in periodic mode, revisions in revision mode; 0 is off.
    #[arg(
        long = "auto-compaction-retention",
        env = "ETCD_AUTO_COMPACTION_RETENTION",
        default_value = "0"
    )]
    pub auto_compaction_retention: String,
    /// Check data corruption before serving any client/peer traffic.
    #[arg(
        long = "experimental-initial-corrupt-check",
        env = "ETCD_EXPERIMENTAL_INITIAL_CORRUPT_CHECK",
        default_value_t = false,
        num_args = 0..=1,
        default_missing_value = "true",
        action = clap::ArgAction::Set
    )]
    pub initial_corrupt_check: bool,
    /// Duration of time between cluster corruption check passes (Go
    /// syntax; 0 is off).
    #[arg(
        long = "experimental-corrupt-check-time",
        env = "ETCD_EXPERIMENTAL_CORRUPT_CHECK_TIME",
        default_value = "0s",
        value_parser = parse_go_duration
    )]
    pub corrupt_check_time: std::time::Duration,
    /// Serve the chaos API (oxcd's own: faults injected at runtime, see
    /// `oxcdctl chaos`) on the client URLs. For test clusters only: anyone
    /// who can reach the client port can then stop this member.
    #[arg(
        long = "enable-chaos",
        env = "OXCD_ENABLE_CHAOS",
        default_value_t = false,
        num_args = 0..=1,
        default_missing_value = "true",
        action = clap::ArgAction::Set
    )]
    pub enable_chaos: bool,
    /// Reject reconfiguration requests that would cause quorum loss.
    #[arg(
        long = "strict-reconfig-check",
        env = "ETCD_STRICT_RECONFIG_CHECK",
        default_value_t = true,
        action = clap::ArgAction::Set,
        num_args = 0..=1,
        default_missing_value = "true"
    )]
    pub strict_reconfig_check: bool,
    /// Auth token type and its options: `simple`, or
    /// `jwt,pub-key=<path>,priv-key=<path>,sign-method=<alg>[,ttl=<duration>]`.
    #[arg(long = "auth-token", env = "ETCD_AUTH_TOKEN", default_value = "simple")]
    pub auth_token: String,
    /// Time (in seconds) a simple token lives unused.
    #[arg(
        long = "auth-token-ttl",
        env = "ETCD_AUTH_TOKEN_TTL",
        default_value_t = 300
    )]
    pub auth_token_ttl: u64,
    /// bcrypt cost for hashing auth passwords (4-31; etcd's default 10).
    #[arg(long = "bcrypt-cost", env = "ETCD_BCRYPT_COST", default_value_t = 10)]
    pub bcrypt_cost: u32,
    /// Maximum number of operations permitted in a transaction.
    #[arg(long = "max-txn-ops", env = "ETCD_MAX_TXN_OPS", default_value_t = 128)]
    pub max_txn_ops: usize,
    /// Raise an alarm when the backend size exceeds this quota (0 = 2 GiB).
    #[arg(
        long = "quota-backend-bytes",
        env = "ETCD_QUOTA_BACKEND_BYTES",
        default_value_t = 0
    )]
    pub quota_backend_bytes: i64,
    /// Time (in milliseconds) of a heartbeat interval.
    #[arg(
        long = "heartbeat-interval",
        env = "ETCD_HEARTBEAT_INTERVAL",
        default_value_t = 100
    )]
    pub heartbeat_interval: u64,
    /// Time (in milliseconds) for an election to timeout.
    #[arg(
        long = "election-timeout",
        env = "ETCD_ELECTION_TIMEOUT",
        default_value_t = 1000
    )]
    pub election_timeout: u64,
    /// Number of committed transactions to trigger a snapshot to disk.
    #[arg(
        long = "snapshot-count",
        env = "ETCD_SNAPSHOT_COUNT",
        default_value_t = 100_000
    )]
    pub snapshot_count: u64,
    /// Log level: debug, info, warn, error, panic, fatal.
    #[arg(long = "log-level", env = "ETCD_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    /// Logger: `zap` (etcd 3.5's only one); etcd 3.4's `capnslog` is taken
    /// as `zap`, with a warning.
    #[arg(long = "logger", env = "ETCD_LOGGER", default_value = "zap")]
    pub logger: String,
    /// Where logs go, comma-separated: `default` (stderr), `stderr`,
    /// `stdout`, or file paths (appended to).
    #[arg(
        long = "log-outputs",
        env = "ETCD_LOG_OUTPUTS",
        default_value = "default",
        value_delimiter = ','
    )]
    pub log_outputs: Vec<String>,
    /// oxcd's log line format: `text` (for people), or `json` (one object
    /// per line, with zap's field names: level, ts, caller, msg).
    #[arg(
        long = "log-format",
        env = "ETCD_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub log_format: LogFormat,
    /// Detail of exported metrics: `basic`, or `extensive` to add the gRPC
    /// handling-time histogram, or (oxcd only) `off`: no per-request
    /// series (the actors' handled-message counters and handling times, and
    /// the gRPC series); gauges and etcd's server and disk metrics stay.
    #[arg(
        long = "metrics",
        env = "ETCD_METRICS",
        value_enum,
        default_value = "basic"
    )]
    pub metrics: MetricsLevel,
    /// URLs to listen on for the metrics and health endpoints (besides
    /// every client URL).
    #[arg(
        long = "listen-metrics-urls",
        env = "ETCD_LISTEN_METRICS_URLS",
        value_delimiter = ','
    )]
    pub listen_metrics_urls: Vec<String>,
    /// Duration of periodic watch progress notifications (Go syntax: 10m,
    /// 1m30s, 500ms).
    #[arg(
        long = "experimental-watch-progress-notify-interval",
        env = "ETCD_EXPERIMENTAL_WATCH_PROGRESS_NOTIFY_INTERVAL",
        default_value = "10m",
        value_parser = parse_go_duration
    )]
    pub watch_progress_notify_interval: std::time::Duration,
    /// How often the leader checkpoints the remaining TTL of each lease, so
    /// that a new leader continues its countdown (Go syntax: 5m, 30s).
    #[arg(
        long = "experimental-lease-checkpoint-interval",
        env = "ETCD_EXPERIMENTAL_LEASE_CHECKPOINT_INTERVAL",
        default_value = "5m",
        value_parser = parse_go_duration
    )]
    pub lease_checkpoint_interval: std::time::Duration,
    /// The longest the store holds applied changes before writing them to
    /// disk in one commit (Go syntax; empty: etcd's 100ms). Safe to raise:
    /// the raft log replays what a crash loses.
    #[arg(
        long = "backend-batch-interval",
        env = "ETCD_BACKEND_BATCH_INTERVAL",
        default_value = "",
        value_parser = parse_batch_interval
    )]
    pub backend_batch_interval: std::time::Duration,
    /// The most changes the store holds before writing them to disk (0:
    /// etcd's 10000).
    #[arg(
        long = "backend-batch-limit",
        env = "ETCD_BACKEND_BATCH_LIMIT",
        default_value_t = 0
    )]
    pub backend_batch_limit: usize,
    /// Path to the client server TLS certificate file (PEM).
    #[arg(long = "cert-file", env = "ETCD_CERT_FILE", default_value = "")]
    pub cert_file: String,
    /// Path to the client server TLS key file (PEM).
    #[arg(long = "key-file", env = "ETCD_KEY_FILE", default_value = "")]
    pub key_file: String,
    /// Path to the client server TLS trusted CA certificate file (PEM).
    #[arg(
        long = "trusted-ca-file",
        env = "ETCD_TRUSTED_CA_FILE",
        default_value = ""
    )]
    pub trusted_ca_file: String,
    /// Enable client certificate authentication (against
    /// `--trusted-ca-file`).
    #[arg(
        long = "client-cert-auth",
        env = "ETCD_CLIENT_CERT_AUTH",
        default_value_t = false,
        num_args = 0..=1,
        default_missing_value = "true",
        action = clap::ArgAction::Set
    )]
    pub client_cert_auth: bool,
    /// Path to the peer server TLS certificate file (PEM); also shown to
    /// the peers this member connects to.
    #[arg(
        long = "peer-cert-file",
        env = "ETCD_PEER_CERT_FILE",
        default_value = ""
    )]
    pub peer_cert_file: String,
    /// Path to the peer server TLS key file (PEM).
    #[arg(long = "peer-key-file", env = "ETCD_PEER_KEY_FILE", default_value = "")]
    pub peer_key_file: String,
    /// Path to the peer TLS trusted CA file (PEM): verifies the peers this
    /// member connects to, and with `--peer-client-cert-auth` the peers
    /// that connect to it.
    #[arg(
        long = "peer-trusted-ca-file",
        env = "ETCD_PEER_TRUSTED_CA_FILE",
        default_value = ""
    )]
    pub peer_trusted_ca_file: String,
    /// Enable peer client certificate authentication.
    #[arg(
        long = "peer-client-cert-auth",
        env = "ETCD_PEER_CLIENT_CERT_AUTH",
        default_value_t = false,
        num_args = 0..=1,
        default_missing_value = "true",
        action = clap::ArgAction::Set
    )]
    pub peer_client_cert_auth: bool,
}

impl Config {
    /// The client port's TLS files, when `--cert-file` and `--key-file`
    /// are given.
    pub fn client_tls(&self) -> Option<crate::tls::TlsFiles> {
        tls_files(
            &self.cert_file,
            &self.key_file,
            &self.trusted_ca_file,
            self.client_cert_auth,
        )
    }

    /// The peer port's TLS files, when `--peer-cert-file` and
    /// `--peer-key-file` are given.
    pub fn peer_tls(&self) -> Option<crate::tls::TlsFiles> {
        tls_files(
            &self.peer_cert_file,
            &self.peer_key_file,
            &self.peer_trusted_ca_file,
            self.peer_client_cert_auth,
        )
    }

    /// The store's batch limits from `--backend-batch-interval` and
    /// `--backend-batch-limit`, with etcd's defaults for unset values.
    pub fn backend_batch_limits(&self) -> storage::mvcc::BatchLimits {
        let defaults = storage::mvcc::BatchLimits::default();
        storage::mvcc::BatchLimits {
            interval: self.backend_batch_interval,
            max_records: match self.backend_batch_limit {
                0 => defaults.max_records,
                n => n,
            },
            ..defaults
        }
    }
}

/// One port's TLS files from its flags (empty: not given); none without a
/// certificate and a key.
fn tls_files(
    cert: &str,
    key: &str,
    ca: &str,
    client_cert_auth: bool,
) -> Option<crate::tls::TlsFiles> {
    if cert.is_empty() || key.is_empty() {
        return None;
    }
    Some(crate::tls::TlsFiles {
        cert: cert.into(),
        key: key.into(),
        trusted_ca: (!ca.is_empty()).then(|| ca.into()),
        client_cert_auth,
    })
}

/// `--backend-batch-interval`: a Go duration, or empty for etcd's 100ms.
fn parse_batch_interval(text: &str) -> Result<std::time::Duration, String> {
    if text.is_empty() {
        return Ok(storage::mvcc::BatchLimits::default().interval);
    }
    parse_go_duration(text)
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// `--metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MetricsLevel {
    Basic,
    Extensive,
    Off,
}

/// `--auto-compaction-mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CompactionMode {
    Periodic,
    Revision,
}

/// What auto-compaction keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retention {
    /// History of this long.
    Period(std::time::Duration),
    /// This many revisions.
    Revisions(i64),
}

/// etcd's `parseCompactionRetention`; `None` when auto-compaction is off.
pub fn parse_retention(mode: CompactionMode, text: &str) -> Result<Option<Retention>, String> {
    let retention = match text.trim().parse::<i64>() {
        Ok(n) if n >= 0 => match mode {
            CompactionMode::Revision => Retention::Revisions(n),
            CompactionMode::Periodic => {
                Retention::Period(std::time::Duration::from_secs(n as u64 * 3600))
            }
        },
        _ => {
            let period = parse_go_duration(text)
                .map_err(|e| format!("error parsing CompactionRetention: {e}"))?;
            match mode {
                CompactionMode::Periodic => Retention::Period(period),
                // etcd takes the duration's nanoseconds as the count.
                CompactionMode::Revision => Retention::Revisions(period.as_nanos() as i64),
            }
        }
    };
    let off = matches!(
        retention,
        Retention::Period(std::time::Duration::ZERO) | Retention::Revisions(0)
    );
    Ok((!off).then_some(retention))
}

/// Parses a Go `time.Duration` string as etcd's flags take it: a sequence
/// of decimal numbers with units `h`, `m`, `s`, `ms`, `us` (or `µs`), `ns`
/// (`10m`, `1m30s`, `1.5s`, `500ms`); a bare `0` is zero.
pub fn parse_go_duration(text: &str) -> Result<std::time::Duration, String> {
    let invalid = || format!("time: invalid duration {text:?}");
    let s = text.trim();
    if s == "0" {
        return Ok(std::time::Duration::ZERO);
    }
    if s.is_empty() {
        return Err(invalid());
    }
    let mut rest = s;
    let mut total = 0f64;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("time: missing unit in duration {text:?}"))?;
        let value: f64 = rest[..digits].parse().map_err(|_| invalid())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            unit => return Err(format!("time: unknown unit {unit:?} in duration {text:?}")),
        };
        total += value * seconds;
        rest = &rest[unit_len..];
    }
    if !total.is_finite() {
        return Err(invalid());
    }
    Ok(std::time::Duration::from_secs_f64(total))
}

/// `--initial-cluster-state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ClusterState {
    New,
    Existing,
}

/// The default backend quota when `--quota-backend-bytes` is 0 (etcd: 2 GiB).
pub const DEFAULT_QUOTA_BYTES: i64 = 2 * 1024 * 1024 * 1024;

impl Config {
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("{}.oxcd", self.name)))
    }

    /// etcd's shortest lease TTL in seconds: 1.5 election timeouts (counted
    /// in whole heartbeat ticks, as etcd counts them), rounded up.
    pub fn min_lease_ttl(&self) -> i64 {
        let election_ticks = self.election_timeout / self.heartbeat_interval.max(1);
        let ms = (3 * election_ticks / 2) * self.heartbeat_interval;
        ms.div_ceil(1000) as i64
    }

    pub fn quota_bytes(&self) -> i64 {
        if self.quota_backend_bytes <= 0 {
            DEFAULT_QUOTA_BYTES
        } else {
            self.quota_backend_bytes
        }
    }

    /// The `tracing` filter for `--log-level` (etcd's panic/fatal map to error).
    pub fn tracing_filter(&self) -> &str {
        match self.log_level.as_str() {
            "debug" => "debug",
            "warn" => "warn",
            "error" | "panic" | "fatal" => "error",
            _ => "info",
        }
    }

    /// Checks flag combinations etcd also refuses.
    /// What auto-compaction keeps (`None`: off), from the two flags.
    pub fn auto_compaction(&self) -> Result<Option<Retention>, String> {
        parse_retention(self.auto_compaction_mode, &self.auto_compaction_retention)
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.heartbeat_interval == 0 {
            return Err("--heartbeat-interval must be > 0".into());
        }
        if self.election_timeout < 5 * self.heartbeat_interval {
            return Err(format!(
                "--election-timeout[{}ms] should be at least as 5 times as --heartbeat-interval[{}ms]",
                self.election_timeout, self.heartbeat_interval
            ));
        }
        if self.max_txn_ops == 0 {
            return Err("--max-txn-ops must be > 0".into());
        }
        self.auto_compaction()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_etcd() {
        let c = Config::parse_from(["oxcd"]);
        assert_eq!(c.name, "default");
        assert_eq!(c.data_dir(), PathBuf::from("default.oxcd"));
        assert_eq!(c.listen_client_urls, vec!["http://localhost:2379"]);
        assert_eq!(c.initial_cluster, "default=http://localhost:2380");
        assert_eq!(c.max_request_bytes, 1_572_864);
        assert_eq!(c.max_txn_ops, 128);
        assert_eq!(c.quota_bytes(), DEFAULT_QUOTA_BYTES);
        assert_eq!((c.heartbeat_interval, c.election_timeout), (100, 1000));
        assert_eq!(c.logger, "zap");
        assert_eq!(c.log_outputs, vec!["default"]);
        assert_eq!(c.log_format, LogFormat::Text);
        assert_eq!(c.metrics, MetricsLevel::Basic);
        assert!(c.listen_metrics_urls.is_empty());
        assert!(c.validate().is_ok());
        let c = Config::parse_from([
            "oxcd",
            "--log-outputs=stdout,/tmp/x.log",
            "--log-format=json",
            "--metrics=extensive",
            "--listen-metrics-urls=http://127.0.0.1:1,http://127.0.0.1:2",
        ]);
        assert_eq!(c.log_outputs, vec!["stdout", "/tmp/x.log"]);
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(c.metrics, MetricsLevel::Extensive);
        assert_eq!(c.listen_metrics_urls.len(), 2);
        let c = Config::parse_from(["oxcd", "--metrics=off", "--enable-chaos"]);
        assert_eq!(c.metrics, MetricsLevel::Off);
        assert!(c.enable_chaos);
        assert!(!Config::parse_from(["oxcd"]).enable_chaos);
    }

    #[test]
    fn client_tls_flags_as_etcd_takes_them() {
        let plain = Config::parse_from(["oxcd"]);
        assert_eq!(plain.client_tls(), None);
        assert_eq!(
            plain.backend_batch_limits(),
            storage::mvcc::BatchLimits::default()
        );
        let c = Config::parse_from([
            "oxcd",
            "--cert-file=s.pem",
            "--key-file=s-key.pem",
            "--trusted-ca-file=ca.pem",
            "--client-cert-auth",
            "--backend-batch-interval=10ms",
            "--backend-batch-limit=7",
        ]);
        let tls = c.client_tls().expect("tls files");
        assert_eq!(tls.cert, PathBuf::from("s.pem"));
        assert_eq!(tls.trusted_ca, Some(PathBuf::from("ca.pem")));
        assert!(tls.client_cert_auth);
        let limits = c.backend_batch_limits();
        assert_eq!(
            (limits.interval, limits.max_records),
            (std::time::Duration::from_millis(10), 7)
        );
        let off = Config::parse_from(["oxcd", "--client-cert-auth=false"]);
        assert!(!off.client_cert_auth);
        assert_eq!(off.peer_tls(), None);
        let peer = Config::parse_from([
            "oxcd",
            "--peer-cert-file=p.pem",
            "--peer-key-file=p-key.pem",
            "--peer-trusted-ca-file=pca.pem",
            "--peer-client-cert-auth",
        ])
        .peer_tls()
        .expect("peer tls files");
        assert_eq!(peer.key, PathBuf::from("p-key.pem"));
        assert_eq!(peer.trusted_ca, Some(PathBuf::from("pca.pem")));
        assert!(peer.client_cert_auth);
    }

    #[test]
    fn flags_parse_lists() {
        let c = Config::parse_from([
            "oxcd",
            "--name",
            "n1",
            "--listen-client-urls",
            "http://127.0.0.1:1,http://127.0.0.1:2",
            "--initial-cluster-state",
            "existing",
        ]);
        assert_eq!(c.listen_client_urls.len(), 2);
        assert_eq!(c.initial_cluster_state, ClusterState::Existing);
        assert_eq!(c.data_dir(), PathBuf::from("n1.oxcd"));
    }

    #[test]
    fn election_timeout_must_cover_heartbeats() {
        let c = Config::parse_from([
            "oxcd",
            "--heartbeat-interval",
            "100",
            "--election-timeout",
            "300",
        ]);
        assert!(c.validate().is_err());
    }

    #[test]
    fn retention_is_read_as_etcd_reads_it() {
        use CompactionMode::*;
        let secs = |s: f64| std::time::Duration::from_secs_f64(s);
        assert_eq!(
            parse_retention(Periodic, "1"),
            Ok(Some(Retention::Period(secs(3600.0))))
        );
        assert_eq!(
            parse_retention(Periodic, "30m"),
            Ok(Some(Retention::Period(secs(1800.0))))
        );
        assert_eq!(
            parse_retention(Revision, "1000"),
            Ok(Some(Retention::Revisions(1000)))
        );
        assert_eq!(parse_retention(Periodic, "0"), Ok(None));
        assert_eq!(parse_retention(Revision, "0"), Ok(None));
        assert!(parse_retention(Periodic, "soon").is_err());
    }

    #[test]
    fn go_durations_parse_as_go_does() {
        use std::time::Duration;
        assert_eq!(parse_go_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_go_duration("10m0s"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_go_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_go_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_go_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_go_duration("0"), Ok(Duration::ZERO));
        assert!(parse_go_duration("10").is_err());
        assert!(parse_go_duration("1x").is_err());
        assert!(parse_go_duration("").is_err());
        let c = Config::parse_from(["oxcd"]);
        assert_eq!(c.watch_progress_notify_interval, Duration::from_secs(600));
        let c = Config::parse_from([
            "oxcd",
            "--experimental-watch-progress-notify-interval",
            "2s",
        ]);
        assert_eq!(c.watch_progress_notify_interval, Duration::from_secs(2));
    }
}
