//! A multi-member cluster of server processes (oxcd or etcd) owned by a test.
//!
//! 1. [`Cluster::start`] makes one temp dir with a sub dir per member
//!    (`<name>/data`, `<name>/server.log`) and asks the OS for every client
//!    and peer port at once (all listeners held together so the ports differ,
//!    then released). Only then does it spawn the members, because each one's
//!    `--initial-cluster` lists every peer URL.
//! 2. It polls, with a bounded deadline, until every member answers
//!    `Maintenance.Status` naming one and the same leader, and serves a
//!    linearizable `Range` through itself. The member IDs seen there are kept,
//!    so a leader can later be named by index even after it was killed.
//! 3. If a member died because a port was taken between probing and binding,
//!    every member is killed, the data dirs are emptied and the start is
//!    retried with fresh ports.
//! 4. [`Cluster::kill9`] sends SIGKILL to one member's own PID and reaps it;
//!    [`Cluster::restart`] spawns that member again with the same flags, data
//!    dir and ports, and waits until it answers and knows a leader.
//!    [`Cluster::restart_all`] starts every stopped member at once (a
//!    cluster that lost its quorum cannot elect a leader one member at a
//!    time); [`Cluster::set_env`] gives a member's later starts extra
//!    environment variables (the power-loss shim's).
//!    [`Cluster::wait_leader`] and [`Cluster::wait_revision`] are bounded polls
//!    on the cluster's state, for tests that kill and restart members.
//! 5. Dropping the cluster kills its own children (never anything else); if
//!    the thread is panicking, every member's log tail is printed first, and
//!    with `OXCD_KEEP_DIRS=1` the temp dir is kept and its path printed.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use proto::etcdserverpb::kv_client::KvClient;
use proto::etcdserverpb::maintenance_client::MaintenanceClient;
use proto::etcdserverpb::{RangeRequest, StatusRequest, StatusResponse};
use tempfile::TempDir;
use tonic::transport::{Channel, Endpoint};

use crate::server::{Env, spawn_logged};
use crate::{HarnessError, Kind};

/// How many times a start is retried when a probed port was taken meanwhile.
const PORT_RETRIES: usize = 5;
/// Pause between two polls of a condition.
const POLL_INTERVAL: Duration = Duration::from_millis(25);
/// Bound on each probe RPC (and on connecting).
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// Log lines shown per member when something fails.
const LOG_TAIL_LINES: usize = 40;

/// Flags given to every member. Each field maps to one etcd flag, so the same
/// options start an etcd cluster and an oxcd cluster alike.
#[derive(Debug, Clone)]
pub struct ClusterOpts {
    /// Number of members.
    pub size: usize,
    /// `--initial-cluster-token`.
    pub cluster_token: String,
    /// `--heartbeat-interval` in milliseconds.
    pub heartbeat_interval_ms: u64,
    /// `--election-timeout` in milliseconds.
    pub election_timeout_ms: u64,
    /// `--snapshot-count` (server default when `None`).
    pub snapshot_count: Option<u64>,
    /// `--log-level`.
    pub log_level: String,
    /// Further flags for every member, appended as given (e.g.
    /// `--experimental-lease-checkpoint-interval=1s`).
    pub extra_args: Vec<String>,
    /// How long a start or restart waits for readiness.
    pub start_timeout: Duration,
}

impl Default for ClusterOpts {
    /// Three members with raft timings shorter than etcd's defaults but long
    /// enough not to flap on a loaded two-core machine.
    fn default() -> Self {
        ClusterOpts {
            size: 3,
            cluster_token: "oxcd-integration-cluster".to_string(),
            heartbeat_interval_ms: 50,
            election_timeout_ms: 500,
            snapshot_count: None,
            log_level: "info".to_string(),
            extra_args: Vec::new(),
            start_timeout: Duration::from_secs(60),
        }
    }
}

/// One member's process and identity.
#[derive(Debug)]
struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    child: Option<Child>,
    starts: u32,
    /// Byte offset in the log where the current process's output begins.
    log_offset: u64,
    /// The raft member ID, learned from `Status` once the member answered.
    member_id: Option<u64>,
    /// Added to the environment of every later start ([`Cluster::set_env`]).
    env: Env,
    /// For a member added at run time: the `--initial-cluster` it joins
    /// with (`--initial-cluster-state existing`).
    joins: Option<String>,
    /// Flags for this member's later starts only ([`Cluster::set_args`]).
    args: Vec<String>,
}

impl Member {
    /// Member `m<index>` on these ports, not started.
    fn new(index: usize, client_port: u16, peer_port: u16) -> Self {
        Member {
            name: format!("m{index}"),
            client_port,
            peer_port,
            child: None,
            starts: 0,
            log_offset: 0,
            member_id: None,
            env: Env::new(),
            joins: None,
            args: Vec::new(),
        }
    }
}

/// A running cluster of member processes and the directory they own.
pub struct Cluster {
    kind: Kind,
    binary: PathBuf,
    opts: ClusterOpts,
    dir: Option<TempDir>,
    members: Vec<Member>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("kind", &self.kind)
            .field("binary", &self.binary)
            .field("endpoints", &self.endpoints())
            .field("dir", &self.root())
            .finish()
    }
}

impl Cluster {
    /// Starts a fresh cluster of `opts.size` members of `kind` and waits
    /// until every member knows the same leader and serves linearizable reads.
    pub async fn start(kind: Kind, opts: ClusterOpts) -> Result<Cluster, HarnessError> {
        let mut cluster = Cluster::prepare(kind, opts)?;
        cluster.launch().await?;
        Ok(cluster)
    }

    /// A cluster's directories and ports, nothing started: a test may fill
    /// the data dirs first (a restored snapshot), then [`Cluster::launch`].
    pub fn prepare(kind: Kind, opts: ClusterOpts) -> Result<Cluster, HarnessError> {
        let binary = kind.binary()?;
        let dir = tempfile::Builder::new()
            .prefix(&format!("oxcd-cluster-{}-", kind.name()))
            .tempdir()?;
        let ports = free_ports(2 * opts.size)?;
        let members = (0..opts.size)
            .map(|i| Member::new(i, ports[2 * i], ports[2 * i + 1]))
            .collect();
        let cluster = Cluster {
            kind,
            binary,
            opts,
            dir: Some(dir),
            members,
        };
        for i in 0..cluster.size() {
            std::fs::create_dir_all(cluster.member_dir(i))?;
        }
        Ok(cluster)
    }

    /// Starts every member of a [`Cluster::prepare`]d cluster and waits as
    /// [`Cluster::start`] does (retrying with fresh ports only while the
    /// data dirs are the harness's own: empty before the first start).
    pub async fn launch(&mut self) -> Result<(), HarnessError> {
        let cluster = self;
        let prefilled = (0..cluster.size()).any(|i| cluster.data_dir(i).exists());
        let mut attempt = 1;
        loop {
            for i in 0..cluster.size() {
                cluster.spawn(i)?;
            }
            match cluster.wait_all_ready().await {
                Ok(()) => return Ok(()),
                Err(HarnessError::Exited { .. })
                    if !prefilled && attempt < PORT_RETRIES && cluster.port_was_taken() =>
                {
                    eprintln!("cluster: a port was taken meanwhile; retrying with fresh ports");
                    for i in 0..cluster.size() {
                        cluster.reap(i);
                        let data = cluster.data_dir(i);
                        if data.exists() {
                            std::fs::remove_dir_all(&data)?;
                        }
                    }
                    let ports = free_ports(2 * cluster.size())?;
                    for (i, m) in cluster.members.iter_mut().enumerate() {
                        m.client_port = ports[2 * i];
                        m.peer_port = ports[2 * i + 1];
                        m.member_id = None;
                    }
                    attempt += 1;
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// Which implementation the members run (see [`Kind`]).
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The server binary every member runs.
    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// The temp dir holding every member's dir (kept after a failed test
    /// when `OXCD_KEEP_DIRS=1`), for files a test wants kept beside the logs.
    pub fn dir(&self) -> &Path {
        self.root()
    }

    /// Number of members.
    pub fn size(&self) -> usize {
        self.members.len()
    }

    /// Member `i`'s `--name`.
    pub fn name(&self, i: usize) -> &str {
        &self.members[i].name
    }

    /// Member `i`'s client URL, `http://127.0.0.1:<port>`.
    pub fn endpoint(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.members[i].client_port)
    }

    /// Every member's client URL, in member order.
    pub fn endpoints(&self) -> Vec<String> {
        (0..self.size()).map(|i| self.endpoint(i)).collect()
    }

    /// Member `i`'s client address without scheme (etcdctl's `--endpoints`).
    pub fn client_addr(&self, i: usize) -> String {
        format!("127.0.0.1:{}", self.members[i].client_port)
    }

    /// Member `i`'s peer URL.
    pub fn peer_url(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.members[i].peer_port)
    }

    /// Member `i`'s `--data-dir`.
    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.member_dir(i).join("data")
    }

    /// The file collecting member `i`'s stdout and stderr (all starts).
    pub fn log_path(&self, i: usize) -> PathBuf {
        self.member_dir(i).join("server.log")
    }

    /// Member `i`'s whole log (all starts).
    pub fn log(&self, i: usize) -> String {
        let text = std::fs::read(self.log_path(i)).unwrap_or_default();
        String::from_utf8_lossy(&text).into_owned()
    }

    /// Member `i`'s log since its current (or last) process started.
    pub fn current_log(&self, i: usize) -> String {
        let text = std::fs::read(self.log_path(i)).unwrap_or_default();
        let from = usize::try_from(self.members[i].log_offset)
            .unwrap_or(0)
            .min(text.len());
        String::from_utf8_lossy(&text[from..]).into_owned()
    }

    /// The last `lines` lines of member `i`'s log (all starts).
    pub fn log_tail(&self, i: usize, lines: usize) -> String {
        tail_lines(&self.log(i), lines)
    }

    /// The PID of member `i`'s current process, if one runs.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.members[i].child.as_ref().map(Child::id)
    }

    /// Whether member `i`'s process is alive (reaps it if it exited).
    pub fn is_running(&mut self, i: usize) -> bool {
        match self.members[i].child.as_mut() {
            None => false,
            Some(child) => matches!(child.try_wait(), Ok(None)),
        }
    }

    /// The indexes of the members whose process is alive.
    pub fn running(&mut self) -> Vec<usize> {
        (0..self.size()).filter(|&i| self.is_running(i)).collect()
    }

    /// Member `i`'s raft member ID, once it has answered `Status`.
    pub fn member_id(&self, i: usize) -> Option<u64> {
        self.members[i].member_id
    }

    /// A new gRPC channel to member `i`.
    pub async fn channel(&self, i: usize) -> Result<Channel, HarnessError> {
        Ok(Endpoint::from_shared(self.endpoint(i))?
            .connect_timeout(PROBE_TIMEOUT)
            .connect()
            .await?)
    }

    /// A KV client on a new channel to member `i`.
    pub async fn kv(&self, i: usize) -> Result<KvClient<Channel>, HarnessError> {
        Ok(KvClient::new(self.channel(i).await?))
    }

    /// A Maintenance client on a new channel to member `i`.
    pub async fn maintenance(&self, i: usize) -> Result<MaintenanceClient<Channel>, HarnessError> {
        Ok(MaintenanceClient::new(self.channel(i).await?))
    }

    /// Member `i`'s `Maintenance.Status`, bounded by the probe timeout.
    pub async fn status(&self, i: usize) -> Result<StatusResponse, String> {
        let channel = bounded_connect(self.channel(i)).await?;
        bounded(MaintenanceClient::new(channel).status(StatusRequest {})).await
    }

    /// The leader every running member currently agrees on, as a member
    /// index: `None` while any running member fails to answer, knows no
    /// leader, or disagrees, or while the named leader is not running.
    pub async fn leader(&mut self) -> Option<usize> {
        self.leader_or_why().await.ok()
    }

    /// Polls [`Cluster::leader`] until there is one, for at most `timeout`.
    pub async fn wait_leader(&mut self, timeout: Duration) -> Result<usize, HarnessError> {
        let started = Instant::now();
        loop {
            let last_error = match self.leader_or_why().await {
                Ok(leader) => return Ok(leader),
                Err(why) => why,
            };
            if started.elapsed() >= timeout {
                return Err(HarnessError::NotReady {
                    what: "a cluster leader".to_string(),
                    waited_ms: started.elapsed().as_millis(),
                    last_error,
                    log_tail: self.all_log_tails(LOG_TAIL_LINES / 2),
                });
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Polls member `i` with serializable reads (served from its own store)
    /// until its revision is at least `revision`, for at most `timeout`.
    /// Returns the revision it reached.
    pub async fn wait_revision(
        &self,
        i: usize,
        revision: i64,
        timeout: Duration,
    ) -> Result<i64, HarnessError> {
        let started = Instant::now();
        loop {
            let range = RangeRequest {
                key: b"health".to_vec(),
                serializable: true,
                ..Default::default()
            };
            let answer = match bounded_connect(self.channel(i)).await {
                Ok(channel) => bounded(KvClient::new(channel).range(range)).await,
                Err(e) => Err(e),
            };
            let last_error = match answer {
                Ok(resp) => {
                    let at = resp.header.map(|h| h.revision).unwrap_or(0);
                    if at >= revision {
                        return Ok(at);
                    }
                    format!("at revision {at}")
                }
                Err(e) => e,
            };
            if started.elapsed() >= timeout {
                return Err(HarnessError::NotReady {
                    what: format!("{} at revision {revision}", self.name(i)),
                    waited_ms: started.elapsed().as_millis(),
                    last_error,
                    log_tail: tail_lines(&self.current_log(i), LOG_TAIL_LINES),
                });
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Kills member `i` with SIGKILL (its own PID only) and reaps it.
    pub fn kill9(&mut self, i: usize) -> Result<(), HarnessError> {
        let mut child = self.members[i]
            .child
            .take()
            .ok_or_else(|| HarnessError::NotRunning(self.members[i].name.clone()))?;
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

    /// Sets the variables added to member `i`'s environment from its next
    /// start on (none at first; an empty `env` drops them).
    pub fn set_env(&mut self, i: usize, env: Env) {
        self.members[i].env = env;
    }

    /// Gives member `i`'s later starts extra flags (after the cluster's).
    pub fn set_args(&mut self, i: usize, args: Vec<String>) {
        self.members[i].args = args;
    }

    /// Starts every member that is not running, with the same flags, data
    /// dirs and ports, and waits as [`Cluster::start`] does: one leader named
    /// by every member, linearizable reads through each.
    pub async fn restart_all(&mut self) -> Result<(), HarnessError> {
        for i in 0..self.size() {
            if !self.is_running(i) {
                self.members[i].child = None;
                self.spawn(i)?;
            }
        }
        self.wait_all_ready().await
    }

    /// Starts member `i` again with the same flags, data dir and ports
    /// (killing its current process first if it still runs), and waits until
    /// it answers `Status` and knows a leader.
    pub async fn restart(&mut self, i: usize) -> Result<(), HarnessError> {
        if self.members[i].child.is_some() {
            self.kill9(i)?;
        }
        self.spawn(i)?;
        let started = Instant::now();
        let what = format!("{} ({})", self.members[i].name, self.binary.display());
        let mut last_error = String::from("no probe finished yet");
        while started.elapsed() < self.opts.start_timeout {
            self.check_alive(i, &what)?;
            match self.status(i).await {
                Ok(s) if s.leader != 0 => {
                    self.note_member_id(i, &s);
                    return Ok(());
                }
                Ok(_) => last_error = "status: no leader".to_string(),
                Err(e) => last_error = e,
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
        Err(HarnessError::NotReady {
            what,
            waited_ms: started.elapsed().as_millis(),
            last_error,
            log_tail: tail_lines(&self.current_log(i), LOG_TAIL_LINES),
        })
    }

    /// Starts the members in `which` together (a cluster restart: none can
    /// elect a leader alone) and waits until they name a leader.
    pub async fn restart_members(&mut self, which: &[usize]) -> Result<usize, HarnessError> {
        for &i in which {
            if self.members[i].child.is_some() {
                self.kill9(i)?;
            }
            self.spawn(i)?;
        }
        self.wait_leader(self.opts.start_timeout).await
    }

    /// A new member slot (name `m<index>`, fresh ports, empty data dir),
    /// not started: add it to the cluster with MemberAdd first, then
    /// [`Cluster::join`] it.
    pub fn new_member(&mut self) -> Result<usize, HarnessError> {
        let ports = free_ports(2)?;
        let i = self.members.len();
        self.members.push(Member::new(i, ports[0], ports[1]));
        std::fs::create_dir_all(self.member_dir(i))?;
        Ok(i)
    }

    /// Starts member `i` with `--initial-cluster-state existing` and an
    /// `--initial-cluster` naming itself and `with` (the members it joins),
    /// and waits until it answers `Status` with a leader.
    pub async fn join(&mut self, i: usize, with: &[usize]) -> Result<(), HarnessError> {
        let mut listed: Vec<usize> = with.to_vec();
        listed.push(i);
        let spec = listed
            .iter()
            .map(|&m| format!("{}={}", self.members[m].name, self.peer_url(m)))
            .collect::<Vec<_>>()
            .join(",");
        self.members[i].joins = Some(spec);
        self.restart(i).await
    }

    /// Deletes member `i`'s data dir (it must not be running): the repair
    /// step before a removed member is added back.
    pub fn wipe(&mut self, i: usize) -> Result<(), HarnessError> {
        let data = self.data_dir(i);
        if data.exists() {
            std::fs::remove_dir_all(&data)?;
        }
        Ok(())
    }

    /// Waits (bounded) for member `i`'s process to exit on its own; its
    /// exit code (`None`: still running, or not started).
    pub async fn wait_exit(&mut self, i: usize, timeout: Duration) -> Option<i32> {
        let started = Instant::now();
        while started.elapsed() < timeout {
            let child = self.members[i].child.as_mut()?;
            if let Ok(Some(status)) = child.try_wait() {
                self.members[i].child = None;
                return Some(status.code().unwrap_or(-1));
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
        None
    }

    fn root(&self) -> &Path {
        self.dir
            .as_ref()
            .map(TempDir::path)
            .unwrap_or_else(|| Path::new(""))
    }

    fn member_dir(&self, i: usize) -> PathBuf {
        self.root().join(&self.members[i].name)
    }

    /// `--initial-cluster` of the founding members.
    pub fn initial_cluster(&self) -> String {
        (0..self.size())
            .map(|i| format!("{}={}", self.members[i].name, self.peer_url(i)))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn args(&self, i: usize) -> Vec<String> {
        let o = &self.opts;
        let client = self.endpoint(i);
        let peer = self.peer_url(i);
        let mut args = vec![
            format!("--name={}", self.members[i].name),
            format!("--data-dir={}", self.data_dir(i).display()),
            format!("--listen-client-urls={client}"),
            format!("--advertise-client-urls={client}"),
            format!("--listen-peer-urls={peer}"),
            format!("--initial-advertise-peer-urls={peer}"),
            match &self.members[i].joins {
                Some(spec) => format!("--initial-cluster={spec}"),
                None => format!("--initial-cluster={}", self.initial_cluster()),
            },
            format!(
                "--initial-cluster-state={}",
                if self.members[i].joins.is_some() {
                    "existing"
                } else {
                    "new"
                }
            ),
            format!("--initial-cluster-token={}", o.cluster_token),
            format!("--heartbeat-interval={}", o.heartbeat_interval_ms),
            format!("--election-timeout={}", o.election_timeout_ms),
            format!("--log-level={}", o.log_level),
        ];
        if let Some(count) = o.snapshot_count {
            args.push(format!("--snapshot-count={count}"));
        }
        args.extend(o.extra_args.iter().cloned());
        args.extend(self.members[i].args.iter().cloned());
        args
    }

    fn spawn(&mut self, i: usize) -> Result<(), HarnessError> {
        let args = self.args(i);
        let log = self.log_path(i);
        let member = &mut self.members[i];
        member.starts += 1;
        let (child, offset) = spawn_logged(&self.binary, &args, &member.env, &log, member.starts)?;
        member.log_offset = offset;
        member.child = Some(child);
        Ok(())
    }

    /// Fails with [`HarnessError::Exited`] if member `i`'s process is gone.
    fn check_alive(&mut self, i: usize, what: &str) -> Result<(), HarnessError> {
        let exited = match self.members[i].child.as_mut() {
            Some(child) => child.try_wait()?,
            None => return Err(HarnessError::NotRunning(what.to_string())),
        };
        match exited {
            None => Ok(()),
            Some(status) => {
                self.members[i].child = None;
                Err(HarnessError::Exited {
                    what: what.to_string(),
                    status: status.to_string(),
                    log_tail: tail_lines(&self.current_log(i), LOG_TAIL_LINES),
                })
            }
        }
    }

    /// Step 2 of the module doc.
    async fn wait_all_ready(&mut self) -> Result<(), HarnessError> {
        let started = Instant::now();
        let mut last_error = String::from("no probe finished yet");
        while started.elapsed() < self.opts.start_timeout {
            for i in 0..self.size() {
                let what = format!("{} ({})", self.members[i].name, self.binary.display());
                self.check_alive(i, &what)?;
            }
            match self.probe_all().await {
                Ok(()) => return Ok(()),
                Err(e) => last_error = e,
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
        Err(HarnessError::NotReady {
            what: format!("{}-member cluster", self.size()),
            waited_ms: started.elapsed().as_millis(),
            last_error,
            log_tail: self.all_log_tails(LOG_TAIL_LINES / 2),
        })
    }

    /// Every member names the same leader and serves a linearizable read.
    async fn probe_all(&mut self) -> Result<(), String> {
        self.leader_or_why().await?;
        for i in 0..self.size() {
            let channel = bounded_connect(self.channel(i)).await?;
            let range = RangeRequest {
                key: b"health".to_vec(),
                ..Default::default()
            };
            crate::server::served(bounded(KvClient::new(channel).range(range)).await)
                .map_err(|e| format!("{}: linearizable range: {e}", self.members[i].name))?;
        }
        Ok(())
    }

    /// [`Cluster::leader`] with the reason when there is none.
    async fn leader_or_why(&mut self) -> Result<usize, String> {
        let running = self.running();
        if running.is_empty() {
            return Err("no member is running".to_string());
        }
        let mut leader_id = None;
        for &i in &running {
            let s = self
                .status(i)
                .await
                .map_err(|e| format!("{}: status: {e}", self.members[i].name))?;
            self.note_member_id(i, &s);
            if s.leader == 0 {
                return Err(format!("{} knows no leader", self.members[i].name));
            }
            match leader_id {
                None => leader_id = Some(s.leader),
                Some(l) if l == s.leader => {}
                Some(l) => {
                    return Err(format!(
                        "{} names leader {:x}, another member {l:x}",
                        self.members[i].name, s.leader
                    ));
                }
            }
        }
        let leader_id = leader_id.unwrap_or(0);
        let index = self
            .members
            .iter()
            .position(|m| m.member_id == Some(leader_id))
            .ok_or_else(|| format!("leader {leader_id:x} is no member seen so far"))?;
        if !running.contains(&index) {
            return Err(format!(
                "leader {leader_id:x} ({}) is not running",
                self.members[index].name
            ));
        }
        Ok(index)
    }

    fn note_member_id(&mut self, i: usize, status: &StatusResponse) {
        if let Some(header) = &status.header {
            self.members[i].member_id = Some(header.member_id);
        }
    }

    fn port_was_taken(&self) -> bool {
        (0..self.size()).any(|i| {
            self.current_log(i)
                .to_lowercase()
                .contains("address already in use")
        })
    }

    fn all_log_tails(&self, lines: usize) -> String {
        (0..self.size())
            .map(|i| {
                format!(
                    "--- {} ---\n{}",
                    self.members[i].name,
                    tail_lines(&self.current_log(i), lines)
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Kills and reaps member `i` without reporting errors (cleanup paths).
    fn reap(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for i in 0..self.size() {
                eprintln!(
                    "--- {} log tail ({}) ---\n{}",
                    self.members[i].name,
                    self.log_path(i).display(),
                    self.log_tail(i, LOG_TAIL_LINES)
                );
            }
        }
        for i in 0..self.size() {
            self.reap(i);
        }
        let keep = std::env::var("OXCD_KEEP_DIRS").is_ok_and(|v| v == "1");
        if std::thread::panicking()
            && keep
            && let Some(dir) = self.dir.take()
        {
            eprintln!("cluster: kept {}", dir.keep().display());
        }
    }
}

/// Connects with the probe timeout, flattening errors to text.
async fn bounded_connect(
    connect: impl std::future::Future<Output = Result<Channel, HarnessError>>,
) -> Result<Channel, String> {
    match tokio::time::timeout(PROBE_TIMEOUT, connect).await {
        Ok(Ok(channel)) => Ok(channel),
        Ok(Err(e)) => Err(format!("connect: {e}")),
        Err(_) => Err(format!("connect timed out after {PROBE_TIMEOUT:?}")),
    }
}

/// Runs one RPC with the probe timeout, flattening errors to text.
async fn bounded<T>(
    call: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T, String> {
    match tokio::time::timeout(PROBE_TIMEOUT, call).await {
        Ok(Ok(resp)) => Ok(resp.into_inner()),
        Ok(Err(status)) => Err(format!("{:?}: {}", status.code(), status.message())),
        Err(_) => Err(format!("timed out after {PROBE_TIMEOUT:?}")),
    }
}

/// `n` distinct loopback ports the OS just handed out (every listener is
/// held until all are bound, so the ports differ; then all are released).
fn free_ports(n: usize) -> std::io::Result<Vec<u16>> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect()
}

fn tail_lines(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unstarted(size: usize) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let members = (0..size)
            .map(|i| Member::new(i, 1000 + i as u16, 2000 + i as u16))
            .collect();
        Cluster {
            kind: Kind::Oxcd,
            binary: PathBuf::from("/bin/false"),
            opts: ClusterOpts {
                size,
                snapshot_count: Some(200),
                extra_args: vec!["--experimental-lease-checkpoint-interval=1s".to_string()],
                ..ClusterOpts::default()
            },
            dir: Some(dir),
            members,
        }
    }

    #[test]
    fn free_ports_are_distinct_and_nonzero() {
        let ports = free_ports(6).unwrap();
        let distinct: std::collections::HashSet<_> = ports.iter().collect();
        assert_eq!(distinct.len(), 6, "{ports:?}");
        assert!(ports.iter().all(|&p| p != 0));
    }

    #[test]
    fn every_member_lists_every_peer_in_initial_cluster() {
        let cluster = unstarted(3);
        let expected = "--initial-cluster=m0=http://127.0.0.1:2000,\
                        m1=http://127.0.0.1:2001,m2=http://127.0.0.1:2002";
        for i in 0..3 {
            let args = cluster.args(i);
            assert!(args.contains(&expected.to_string()), "{args:?}");
            assert!(args.contains(&format!("--name=m{i}")));
            assert!(args.contains(&format!(
                "--listen-client-urls=http://127.0.0.1:{}",
                1000 + i
            )));
            assert!(args.contains(&format!(
                "--initial-advertise-peer-urls=http://127.0.0.1:{}",
                2000 + i
            )));
            assert!(args.contains(&"--snapshot-count=200".to_string()));
            assert_eq!(
                args.last().map(String::as_str),
                Some("--experimental-lease-checkpoint-interval=1s")
            );
        }
        assert_ne!(cluster.data_dir(0), cluster.data_dir(1));
    }

    #[tokio::test]
    async fn a_member_that_exits_fails_the_restart_with_its_log() {
        let mut cluster = unstarted(3);
        std::fs::create_dir_all(cluster.member_dir(1)).unwrap();
        let err = cluster.restart(1).await.unwrap_err();
        assert!(matches!(err, HarnessError::Exited { .. }), "{err}");
        assert!(cluster.log_tail(1, 5).contains("=== harness: start #1"));
        assert!(!cluster.is_running(1));
        assert!(cluster.running().is_empty());
    }

    #[tokio::test]
    async fn no_running_member_means_no_leader() {
        let mut cluster = unstarted(3);
        assert_eq!(cluster.leader().await, None);
        let err = cluster
            .wait_leader(Duration::from_millis(50))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("no member is running"), "{err}");
    }
}
