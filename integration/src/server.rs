//! One single-member server process (etcd or oxcd) owned by a test.
//!
//! 1. [`Server::start`] makes a temp dir (data dir `data/`, log file
//!    `server.log`), asks the OS for two free loopback ports (bind port 0, read
//!    it, release it) and spawns the binary with etcd's flags, its stdout and
//!    stderr appended to the log.
//! 2. It then polls, with a bounded deadline, until the process answers
//!    `Maintenance.Status` (or, failing that, a serializable `Range`), and
//!    then a linearizable `Range` of `health` (so a leader exists and writes
//!    will be accepted). A process that exits early or never answers fails the
//!    start with the tail of its log.
//! 3. If the process died because a port was taken between probing and
//!    binding, the start is retried with fresh ports and an empty data dir.
//! 4. [`Server::kill9`] sends SIGKILL to this child only and reaps it;
//!    [`Server::restart`] spawns the same binary again on the same data dir
//!    and ports, with the environment given by [`Server::set_env`] (the
//!    power-loss shim's), and waits for readiness as in step 2.
//! 5. Dropping the server kills its own child (never anything else); if the
//!    thread is panicking (a failed assertion), the log tail is printed first.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use proto::etcdserverpb::kv_client::KvClient;
use proto::etcdserverpb::maintenance_client::MaintenanceClient;
use proto::etcdserverpb::{RangeRequest, StatusRequest};
use tempfile::TempDir;
use tonic::transport::{Channel, Endpoint};

use crate::{HarnessError, Kind};

/// How many times a start is retried when a probed port was taken meanwhile.
const PORT_RETRIES: usize = 5;
/// Pause between two readiness probes.
const POLL_INTERVAL: Duration = Duration::from_millis(25);
/// Bound on each readiness RPC (and on connecting).
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// Log lines shown when something fails.
const LOG_TAIL_LINES: usize = 40;

/// Flags given to the server. Every field maps to one etcd flag, so the same
/// options start etcd and oxcd alike.
#[derive(Debug, Clone)]
pub struct ServerOpts {
    /// `--name`.
    pub name: String,
    /// `--initial-cluster-token`.
    pub cluster_token: String,
    /// `--heartbeat-interval` in milliseconds.
    pub heartbeat_interval_ms: u64,
    /// `--election-timeout` in milliseconds.
    pub election_timeout_ms: u64,
    /// `--max-request-bytes` (server default when `None`).
    pub max_request_bytes: Option<u64>,
    /// `--max-txn-ops` (server default when `None`).
    pub max_txn_ops: Option<u64>,
    /// `--quota-backend-bytes` (server default when `None`).
    pub quota_backend_bytes: Option<u64>,
    /// `--snapshot-count` (server default when `None`).
    pub snapshot_count: Option<u64>,
    /// `--log-level`.
    pub log_level: String,
    /// Further flags, appended as given (e.g.
    /// `--experimental-lease-checkpoint-interval=1s`).
    pub extra_args: Vec<String>,
    /// How long [`Server::start`] and [`Server::restart`] wait for readiness.
    pub start_timeout: Duration,
}

impl Default for ServerOpts {
    /// A single member named `default` with short raft timings, so that it
    /// elects itself quickly after every start and restart.
    fn default() -> Self {
        ServerOpts {
            name: "default".to_string(),
            cluster_token: "oxcd-integration".to_string(),
            heartbeat_interval_ms: 20,
            election_timeout_ms: 200,
            max_request_bytes: None,
            max_txn_ops: None,
            quota_backend_bytes: None,
            snapshot_count: None,
            log_level: "info".to_string(),
            extra_args: Vec::new(),
            start_timeout: Duration::from_secs(30),
        }
    }
}

/// Environment variables a test adds to a server process (e.g. the
/// power-loss shim's, [`crate::power_loss::PowerCut::env`]).
pub type Env = Vec<(OsString, OsString)>;

/// Starts `binary` with `args` and `env` added to this process's
/// environment, stdout and stderr appended to `log` after a `=== harness:
/// start #n ===` line; returns the child and the log offset where this
/// start's output begins. Shared by [`Server`] and
/// [`crate::cluster::Cluster`].
pub(crate) fn spawn_logged(
    binary: &std::path::Path,
    args: &[String],
    env: &Env,
    log: &std::path::Path,
    start: u32,
) -> Result<(Child, u64), HarnessError> {
    let mut file = OpenOptions::new().create(true).append(true).open(log)?;
    let env_text: Vec<String> = env
        .iter()
        .map(|(k, v)| format!("{}={} ", k.to_string_lossy(), v.to_string_lossy()))
        .collect();
    writeln!(
        file,
        "=== harness: start #{start} of {}{} {} ===",
        env_text.concat(),
        binary.display(),
        args.join(" ")
    )?;
    file.flush()?;
    let offset = file.metadata()?.len();
    let stderr: File = file.try_clone()?;
    let child = Command::new(binary)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::from(file))
        .stderr(Stdio::from(stderr))
        .spawn()
        .map_err(|source| HarnessError::Spawn {
            path: binary.to_path_buf(),
            source,
        })?;
    Ok((child, offset))
}

/// A running (or killed) server process and the directory it owns.
pub struct Server {
    kind: Kind,
    binary: PathBuf,
    opts: ServerOpts,
    dir: TempDir,
    client_port: u16,
    peer_port: u16,
    child: Option<Child>,
    starts: u32,
    /// Byte offset in the log where the current process's output begins.
    log_offset: u64,
    /// Added to the environment of every later start ([`Server::set_env`]).
    env: Env,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("kind", &self.kind)
            .field("endpoint", &self.endpoint())
            .field("dir", &self.dir.path())
            .field("pid", &self.pid())
            .finish()
    }
}

impl Server {
    /// Starts real etcd (the reference) and oxcd side by side, with the same
    /// options, for tests that compare them; fails the test if either does
    /// not start.
    pub async fn start_pair(opts: ServerOpts) -> (Server, Server) {
        let (reference, candidate) = tokio::join!(
            Server::start(Kind::Etcd, opts.clone()),
            Server::start(Kind::Oxcd, opts)
        );
        (
            reference.unwrap_or_else(|e| panic!("start etcd: {e}")),
            candidate.unwrap_or_else(|e| panic!("start oxcd: {e}")),
        )
    }

    /// Starts a fresh single-member server of `kind` and waits until it
    /// serves reads and writes.
    pub async fn start(kind: Kind, opts: ServerOpts) -> Result<Server, HarnessError> {
        let binary = kind.binary()?;
        let ports = free_ports()?;
        Server::start_on(kind, binary, opts, ports).await
    }

    /// [`Server::start`] with the binary and the first ports to try given.
    async fn start_on(
        kind: Kind,
        binary: PathBuf,
        opts: ServerOpts,
        (client_port, peer_port): (u16, u16),
    ) -> Result<Server, HarnessError> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("oxcd-it-{}-", kind.name()))
            .tempdir()?;
        let mut server = Server {
            kind,
            binary,
            opts,
            dir,
            client_port,
            peer_port,
            child: None,
            starts: 0,
            log_offset: 0,
            env: Env::new(),
        };
        let mut attempt = 1;
        loop {
            server.spawn()?;
            match server.wait_ready().await {
                Ok(()) => return Ok(server),
                Err(HarnessError::Exited { .. })
                    if attempt < PORT_RETRIES
                        && server
                            .current_log()
                            .to_lowercase()
                            .contains("address already in use") =>
                {
                    eprintln!(
                        "{}: port {} or {} was taken meanwhile; retrying with fresh ports",
                        kind.name(),
                        server.client_port,
                        server.peer_port
                    );
                    server.reap();
                    let data = server.data_dir();
                    if data.exists() {
                        std::fs::remove_dir_all(&data)?;
                    }
                    (server.client_port, server.peer_port) = free_ports()?;
                    attempt += 1;
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// Which implementation this process runs.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The client URL, `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// The client address without scheme, as etcdctl's `--endpoints` prints it.
    pub fn client_addr(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    /// The peer URL, `http://127.0.0.1:<port>`.
    pub fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
    }

    /// The data directory given as `--data-dir`.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The file that collects the process's stdout and stderr (all starts).
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// The PID of the current process, if one is running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the current process is still alive (reaps it if it exited).
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            None => false,
            Some(child) => matches!(child.try_wait(), Ok(None)),
        }
    }

    /// Opens a new gRPC channel to the client URL.
    pub async fn channel(&self) -> Result<Channel, HarnessError> {
        Ok(Endpoint::from_shared(self.endpoint())?
            .connect_timeout(PROBE_TIMEOUT)
            .connect()
            .await?)
    }

    /// A KV client on a new channel.
    pub async fn kv(&self) -> Result<KvClient<Channel>, HarnessError> {
        Ok(KvClient::new(self.channel().await?))
    }

    /// A Maintenance client on a new channel.
    pub async fn maintenance(&self) -> Result<MaintenanceClient<Channel>, HarnessError> {
        Ok(MaintenanceClient::new(self.channel().await?))
    }

    /// Sets the variables added to the process's environment from the next
    /// [`Server::restart`] on (none at first; an empty `env` drops them).
    pub fn set_env(&mut self, env: Env) {
        self.env = env;
    }

    /// Kills the process with SIGKILL (this child only, by PID) and reaps it.
    pub fn kill9(&mut self) -> Result<(), HarnessError> {
        let mut child = self
            .child
            .take()
            .ok_or_else(|| HarnessError::NotRunning(self.kind.name().to_string()))?;
        // `Child::kill` sends SIGKILL on Unix.
        match child.kill() {
            Ok(()) => {}
            // Already exited on its own: nothing to kill, still reap below.
            Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => {}
            Err(e) => return Err(e.into()),
        }
        child.wait()?;
        Ok(())
    }

    /// Starts the binary again on the same data dir and ports (killing the
    /// current process first if it still runs) and waits for readiness.
    pub async fn restart(&mut self) -> Result<(), HarnessError> {
        if self.child.is_some() {
            self.kill9()?;
        }
        self.spawn()?;
        self.wait_ready().await
    }

    /// The last `lines` lines of the log (all starts).
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read(self.log_path()).unwrap_or_default();
        tail_lines(&String::from_utf8_lossy(&text), lines)
    }

    fn current_log(&self) -> String {
        let text = std::fs::read(self.log_path()).unwrap_or_default();
        let from = usize::try_from(self.log_offset)
            .unwrap_or(0)
            .min(text.len());
        String::from_utf8_lossy(&text[from..]).into_owned()
    }

    fn args(&self) -> Vec<String> {
        let o = &self.opts;
        let client = self.endpoint();
        let peer = self.peer_url();
        let mut args = vec![
            format!("--name={}", o.name),
            format!("--data-dir={}", self.data_dir().display()),
            format!("--listen-client-urls={client}"),
            format!("--advertise-client-urls={client}"),
            format!("--listen-peer-urls={peer}"),
            format!("--initial-advertise-peer-urls={peer}"),
            format!("--initial-cluster={}={peer}", o.name),
            "--initial-cluster-state=new".to_string(),
            format!("--initial-cluster-token={}", o.cluster_token),
            format!("--heartbeat-interval={}", o.heartbeat_interval_ms),
            format!("--election-timeout={}", o.election_timeout_ms),
            format!("--log-level={}", o.log_level),
        ];
        let optional = [
            ("max-request-bytes", o.max_request_bytes),
            ("max-txn-ops", o.max_txn_ops),
            ("quota-backend-bytes", o.quota_backend_bytes),
            ("snapshot-count", o.snapshot_count),
        ];
        for (flag, value) in optional {
            if let Some(v) = value {
                args.push(format!("--{flag}={v}"));
            }
        }
        args.extend(o.extra_args.iter().cloned());
        args
    }

    fn spawn(&mut self) -> Result<(), HarnessError> {
        self.starts += 1;
        let (child, offset) = spawn_logged(
            &self.binary,
            &self.args(),
            &self.env,
            &self.log_path(),
            self.starts,
        )?;
        self.log_offset = offset;
        self.child = Some(child);
        Ok(())
    }

    /// Polls until the server answers (step 2 of the module doc).
    async fn wait_ready(&mut self) -> Result<(), HarnessError> {
        let started = Instant::now();
        let what = format!("{} ({})", self.kind.name(), self.binary.display());
        let mut last_error = String::from("no probe finished yet");
        while started.elapsed() < self.opts.start_timeout {
            let exited = match self.child.as_mut() {
                Some(child) => child.try_wait()?,
                None => return Err(HarnessError::NotRunning(what)),
            };
            if let Some(status) = exited {
                self.child = None;
                return Err(HarnessError::Exited {
                    what,
                    status: status.to_string(),
                    log_tail: tail_lines(&self.current_log(), LOG_TAIL_LINES),
                });
            }
            match self.probe().await {
                Ok(()) => return Ok(()),
                Err(e) => last_error = e,
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
        Err(HarnessError::NotReady {
            what,
            waited_ms: started.elapsed().as_millis(),
            last_error,
            log_tail: tail_lines(&self.current_log(), LOG_TAIL_LINES),
        })
    }

    /// One readiness probe: the server answers, then a leader serves a
    /// linearizable read.
    async fn probe(&self) -> Result<(), String> {
        let channel = self.channel().await.map_err(|e| e.to_string())?;
        let status =
            bounded(MaintenanceClient::new(channel.clone()).status(StatusRequest {})).await;
        if let Err(status_err) = status {
            let range = RangeRequest {
                key: b"health".to_vec(),
                serializable: true,
                ..Default::default()
            };
            bounded(KvClient::new(channel.clone()).range(range))
                .await
                .map_err(|e| format!("status: {status_err}; serializable range: {e}"))?;
        }
        let range = RangeRequest {
            key: b"health".to_vec(),
            ..Default::default()
        };
        served(bounded(KvClient::new(channel).range(range)).await)
            .map_err(|e| format!("linearizable range: {e}"))?;
        Ok(())
    }

    /// Kills and reaps the child without reporting errors (cleanup paths).
    fn reap(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- {} log tail ({}) ---\n{}",
                self.kind.name(),
                self.log_path().display(),
                self.log_tail(LOG_TAIL_LINES)
            );
        }
        self.reap();
    }
}

/// A probe read counts as served when it succeeded, or when auth is on and
/// it was refused for want of a user: the refusal comes after the read's
/// linearizable barrier, on etcd as on oxcd.
pub(crate) fn served<T>(read: Result<T, String>) -> Result<(), String> {
    match read {
        Ok(_) => Ok(()),
        Err(e) if e == "InvalidArgument: etcdserver: user name is empty" => Ok(()),
        Err(e) => Err(e),
    }
}

/// Runs one RPC with [`PROBE_TIMEOUT`], flattening errors to text.
async fn bounded<T>(
    call: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T, String> {
    match tokio::time::timeout(PROBE_TIMEOUT, call).await {
        Ok(Ok(resp)) => Ok(resp.into_inner()),
        Ok(Err(status)) => Err(format!("{:?}: {}", status.code(), status.message())),
        Err(_) => Err(format!("timed out after {PROBE_TIMEOUT:?}")),
    }
}

/// Two distinct loopback ports the OS just handed out (both listeners are
/// held at once so the ports differ, then released).
fn free_ports() -> std::io::Result<(u16, u16)> {
    let a = TcpListener::bind("127.0.0.1:0")?;
    let b = TcpListener::bind("127.0.0.1:0")?;
    Ok((a.local_addr()?.port(), b.local_addr()?.port()))
}

fn tail_lines(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_distinct_and_nonzero() {
        let (a, b) = free_ports().unwrap();
        assert_ne!(a, 0);
        assert_ne!(b, 0);
        assert_ne!(a, b);
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail_lines("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail_lines("a", 5), "a");
        assert_eq!(tail_lines("", 5), "");
    }

    #[test]
    fn args_use_etcd_flag_names_and_the_same_ports() {
        let dir = tempfile::tempdir().unwrap();
        let server = Server {
            kind: Kind::Etcd,
            binary: PathBuf::from("/bin/true"),
            opts: ServerOpts {
                max_txn_ops: Some(64),
                extra_args: vec!["--experimental-lease-checkpoint-interval=1s".to_string()],
                ..ServerOpts::default()
            },
            dir,
            client_port: 1111,
            peer_port: 2222,
            child: None,
            starts: 0,
            log_offset: 0,
            env: Env::new(),
        };
        let args = server.args();
        assert!(args.contains(&"--listen-client-urls=http://127.0.0.1:1111".to_string()));
        assert!(args.contains(&"--initial-cluster=default=http://127.0.0.1:2222".to_string()));
        assert!(args.contains(&"--max-txn-ops=64".to_string()));
        assert!(!args.iter().any(|a| a.starts_with("--max-request-bytes")));
        assert_eq!(
            args.last().map(String::as_str),
            Some("--experimental-lease-checkpoint-interval=1s")
        );
    }

    /// Needs etcd (`ETCD_BIN` or `/usr/bin/etcd`), like the tests in `tests/`.
    #[tokio::test]
    async fn a_taken_port_is_retried_with_fresh_ports() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let taken_port = taken.local_addr().unwrap().port();
        let (_, peer) = free_ports().unwrap();
        let binary = Kind::Etcd.binary().unwrap();
        let server = Server::start_on(
            Kind::Etcd,
            binary,
            ServerOpts::default(),
            (taken_port, peer),
        )
        .await
        .unwrap();
        assert_ne!(server.client_port, taken_port);
        assert!(server.log_tail(1000).contains("=== harness: start #2"));
    }

    #[tokio::test]
    async fn a_binary_that_exits_fails_the_start_with_its_log() {
        let dir = tempfile::tempdir().unwrap();
        let mut server = Server {
            kind: Kind::Oxcd,
            binary: PathBuf::from("/bin/false"),
            opts: ServerOpts::default(),
            dir,
            client_port: 1,
            peer_port: 2,
            child: None,
            starts: 0,
            log_offset: 0,
            env: Env::new(),
        };
        server.spawn().unwrap();
        let err = server.wait_ready().await.unwrap_err();
        assert!(matches!(err, HarnessError::Exited { .. }), "{err}");
        assert!(server.log_tail(5).contains("=== harness: start #1"));
    }
}
