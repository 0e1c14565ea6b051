//! Running etcdctl 3.4 and normalising what it prints.
//!
//! 1. [`run_etcdctl`] runs `etcdctl --endpoints=<addr> <args>` with
//!    `ETCDCTL_API=3`, optional stdin, bounded by a timeout, and returns
//!    stdout, stderr and the exit code.
//! 2. [`Normalizer`] rewrites what legitimately differs between two servers so
//!    the rest can be compared byte for byte:
//!    - the endpoint address, and the member and cluster ids (hex or decimal),
//!      become `<endpoint>`, `<member>` and `<cluster>`;
//!    - `took = <duration>` and JSON `"took"` become `<took>`;
//!    - JSON fields `raft_term`, `raftTerm`, `raftIndex`, `raftAppliedIndex`,
//!      `dbSize`, `dbSizeInUse`, and the `ts` / `target` of clientv3's log
//!      lines on stderr become placeholders;
//!    - `endpoint status` rows (simple and table format) have their ID, DB
//!      SIZE, RAFT TERM, RAFT INDEX and RAFT APPLIED INDEX columns replaced,
//!      table TOOK columns too, and tables lose their padding so column
//!      widths do not matter.
//! 3. [`BackgroundCtl`] runs a long-lived etcdctl (`watch`, `watch -i`):
//!    its stdout and stderr are read while it runs, so a test can wait,
//!    bounded in time, until it has printed N lines
//!    ([`BackgroundCtl::wait_stdout_lines`]), feed its stdin line by line,
//!    close it, wait for it to exit, and finally kill it by its own pid
//!    ([`BackgroundCtl::finish`]; a killed run reports exit code -1).
//! 4. [`wait_for_watchers`] polls the server's `/metrics` until
//!    `etcd_debugging_mvcc_watcher_total` reaches a count, so writes are only
//!    made once a watch `etcdctl` asked for "from now" is registered.

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::{HarnessError, etcdctl_binary};

/// What one etcdctl run printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CtlOutput {
    pub stdout: String,
    pub stderr: String,
    pub code: i32,
}

/// Runs etcdctl against `endpoint` (an address like `127.0.0.1:2379`).
pub async fn run_etcdctl(
    endpoint: &str,
    args: &[&str],
    stdin: Option<&str>,
    timeout: Duration,
) -> Result<CtlOutput, HarnessError> {
    let binary = etcdctl_binary()?;
    let mut cmd = tokio::process::Command::new(&binary);
    cmd.env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|source| HarnessError::Spawn {
        path: binary.clone(),
        source,
    })?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input.as_bytes()).await?;
        pipe.shutdown().await?;
    }
    let output = tokio::time::timeout(timeout, child.wait_with_output())
        .await
        .map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("etcdctl {args:?} did not finish within {timeout:?}"),
            )
        })??;
    Ok(CtlOutput {
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        code: output.status.code().unwrap_or(-1),
    })
}

fn timed_out(what: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::TimedOut, what)
}

/// How long [`BackgroundCtl::finish`] waits for a killed etcdctl to be
/// reaped and for its pipes to close (a command it runs per watch event
/// holds them until it exits).
const REAP_TIMEOUT: Duration = Duration::from_secs(10);

/// An etcdctl running in the background whose output is collected as it
/// arrives.
#[derive(Debug)]
pub struct BackgroundCtl {
    /// `etcdctl <args>`, for error messages.
    label: String,
    child: Child,
    /// The pipe to its stdin, while open (only for interactive runs).
    stdin: Option<ChildStdin>,
    stdout: watch::Receiver<Vec<u8>>,
    stderr: watch::Receiver<Vec<u8>>,
    readers: Vec<JoinHandle<std::io::Result<()>>>,
}

/// Copies `pipe` into `out` chunk by chunk until end of file.
fn pump(
    mut pipe: impl AsyncRead + Unpin + Send + 'static,
    out: watch::Sender<Vec<u8>>,
) -> JoinHandle<std::io::Result<()>> {
    tokio::spawn(async move {
        let mut chunk = [0u8; 4096];
        loop {
            let n = pipe.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            out.send_modify(|buf| buf.extend_from_slice(&chunk[..n]));
        }
    })
}

fn line_count(bytes: &[u8]) -> usize {
    bytes.iter().filter(|&&b| b == b'\n').count()
}

impl BackgroundCtl {
    /// Starts `etcdctl --endpoints=<endpoint> <args>` with `ETCDCTL_API=3`.
    /// With `interactive`, its stdin is a pipe fed by
    /// [`BackgroundCtl::send_line`]; otherwise it is `/dev/null`.
    pub fn spawn(endpoint: &str, args: &[&str], interactive: bool) -> Result<Self, HarnessError> {
        let binary = etcdctl_binary()?;
        let mut child = tokio::process::Command::new(&binary)
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={endpoint}"))
            .args(args)
            .stdin(if interactive {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| HarnessError::Spawn {
                path: binary.clone(),
                source,
            })?;
        let (stdout_tx, stdout) = watch::channel(Vec::new());
        let (stderr_tx, stderr) = watch::channel(Vec::new());
        let mut readers = Vec::new();
        if let Some(pipe) = child.stdout.take() {
            readers.push(pump(pipe, stdout_tx));
        }
        if let Some(pipe) = child.stderr.take() {
            readers.push(pump(pipe, stderr_tx));
        }
        Ok(BackgroundCtl {
            label: format!("etcdctl {}", args.join(" ")),
            stdin: child.stdin.take(),
            child,
            stdout,
            stderr,
            readers,
        })
    }

    /// What it has printed on stdout so far.
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout.borrow()).into_owned()
    }

    /// What it has printed on stderr so far.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.borrow()).into_owned()
    }

    /// Writes `line` and a newline to its stdin (kept open).
    pub async fn send_line(&mut self, line: &str) -> std::io::Result<()> {
        let pipe = self.stdin.as_mut().ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                format!("{}: stdin is not open", self.label),
            )
        })?;
        pipe.write_all(format!("{line}\n").as_bytes()).await?;
        pipe.flush().await
    }

    /// Closes its stdin (end of file for an interactive run).
    pub async fn close_stdin(&mut self) -> std::io::Result<()> {
        match self.stdin.take() {
            Some(mut pipe) => pipe.shutdown().await,
            None => Ok(()),
        }
    }

    /// Waits until stdout holds at least `lines` newlines. Fails when
    /// `timeout` passes first or stdout is closed short of them.
    pub async fn wait_stdout_lines(
        &mut self,
        lines: usize,
        timeout: Duration,
    ) -> std::io::Result<()> {
        let reached = tokio::time::timeout(timeout, async {
            // `Err` once stdout is closed without the condition holding.
            self.stdout
                .wait_for(|out| line_count(out) >= lines)
                .await
                .is_ok()
        })
        .await;
        match reached {
            Ok(true) => Ok(()),
            Ok(false) => Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!(
                    "{}: stdout closed after {} of {lines} lines",
                    self.label,
                    line_count(&self.stdout.borrow())
                ),
            )),
            Err(_) => Err(timed_out(format!(
                "{}: {} of {lines} stdout lines after {timeout:?}",
                self.label,
                line_count(&self.stdout.borrow())
            ))),
        }
    }

    /// Waits until it exits by itself and returns its exit code.
    pub async fn wait_exit(&mut self, timeout: Duration) -> std::io::Result<i32> {
        match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(status) => Ok(status?.code().unwrap_or(-1)),
            Err(_) => Err(timed_out(format!(
                "{}: still running after {timeout:?}",
                self.label
            ))),
        }
    }

    /// Kills it by its pid if it still runs, reaps it, reads its pipes to
    /// the end and returns everything it printed. A killed run has exit
    /// code -1.
    pub async fn finish(mut self) -> Result<CtlOutput, HarnessError> {
        let status = match self.child.try_wait()? {
            Some(status) => status,
            None => {
                // SIGKILL to this child's own pid, nothing else.
                self.child.start_kill()?;
                tokio::time::timeout(REAP_TIMEOUT, self.child.wait())
                    .await
                    .map_err(|_| timed_out(format!("{}: not reaped after kill", self.label)))??
            }
        };
        let deadline = Instant::now() + REAP_TIMEOUT;
        for reader in self.readers.drain(..) {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, reader).await {
                Ok(Ok(read)) => read?,
                Ok(Err(join)) => return Err(std::io::Error::other(join).into()),
                Err(_) => {
                    return Err(timed_out(format!(
                        "{}: output pipes still open {REAP_TIMEOUT:?} after exit",
                        self.label
                    ))
                    .into());
                }
            }
        }
        Ok(CtlOutput {
            stdout: self.stdout(),
            stderr: self.stderr(),
            code: status.code().unwrap_or(-1),
        })
    }
}

/// The metric counting a server's registered watchers (etcd's name; oxcd
/// exports it too).
const WATCHER_METRIC: &str = "etcd_debugging_mvcc_watcher_total";
/// Bound on one `/metrics` scrape.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause between two scrapes while waiting for a watcher count.
const SCRAPE_INTERVAL: Duration = Duration::from_millis(20);

/// Reads `etcd_debugging_mvcc_watcher_total` from `http://<addr>/metrics`
/// (HTTP/1.0, so the body is not chunked).
pub async fn watcher_total(addr: &str) -> std::io::Result<Option<u64>> {
    let scrape = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        let request = format!("GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await?;
        Ok::<_, std::io::Error>(raw)
    };
    let raw = tokio::time::timeout(SCRAPE_TIMEOUT, scrape)
        .await
        .map_err(|_| {
            timed_out(format!(
                "GET {addr}/metrics: no answer in {SCRAPE_TIMEOUT:?}"
            ))
        })??;
    let text = String::from_utf8_lossy(&raw);
    Ok(text.lines().find_map(|line| {
        let value = line.strip_prefix(WATCHER_METRIC)?.strip_prefix(' ')?;
        value.trim().parse::<f64>().ok().map(|v| v as u64)
    }))
}

/// Polls [`watcher_total`] until the server at `addr` counts `watchers`
/// watchers, bounded by `timeout`.
pub async fn wait_for_watchers(
    addr: &str,
    watchers: u64,
    timeout: Duration,
) -> std::io::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let seen = watcher_total(addr).await?;
        if seen == Some(watchers) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(timed_out(format!(
                "{addr}: {WATCHER_METRIC} is {seen:?}, not {watchers}, after {timeout:?}"
            )));
        }
        tokio::time::sleep(SCRAPE_INTERVAL).await;
    }
}

/// JSON fields whose values differ between servers for reasons outside the
/// API contract (ids, raft bookkeeping, file sizes, timings).
const JSON_PLACEHOLDER_FIELDS: [&str; 9] = [
    "raft_term",
    "raftTerm",
    "raftIndex",
    "raftAppliedIndex",
    "dbSize",
    "dbSizeInUse",
    "took",
    "ts",
    "target",
];

/// Ids printed with fewer characters are not substituted in free text.
const MIN_ID_TEXT_LEN: usize = 8;

/// Table columns (by header) whose cells are replaced.
const TABLE_PLACEHOLDER_COLUMNS: [(&str, &str); 7] = [
    ("ENDPOINT", "<endpoint>"),
    ("ID", "<member>"),
    ("DB SIZE", "<db size>"),
    ("RAFT TERM", "<raft term>"),
    ("RAFT INDEX", "<raft index>"),
    ("RAFT APPLIED INDEX", "<raft applied index>"),
    ("TOOK", "<took>"),
];

/// `endpoint status` simple-format columns that are replaced (0-based).
const STATUS_PLACEHOLDER_COLUMNS: [(usize, &str); 6] = [
    (0, "<endpoint>"),
    (1, "<member>"),
    (3, "<db size>"),
    (6, "<raft term>"),
    (7, "<raft index>"),
    (8, "<raft applied index>"),
];

/// Rewrites one server's identity out of etcdctl output.
#[derive(Debug, Clone)]
pub struct Normalizer {
    endpoint: String,
    member_id: u64,
    cluster_id: u64,
}

impl Normalizer {
    /// A normalizer for the server at `endpoint` with these ids.
    pub fn new(endpoint: &str, member_id: u64, cluster_id: u64) -> Self {
        Normalizer {
            endpoint: endpoint.to_string(),
            member_id,
            cluster_id,
        }
    }

    /// Normalises a whole etcdctl output.
    pub fn output(&self, out: &CtlOutput) -> CtlOutput {
        CtlOutput {
            stdout: self.text(&out.stdout),
            stderr: self.text(&out.stderr),
            code: out.code,
        }
    }

    /// Normalises text line by line (JSON lines structurally, status rows by
    /// column, everything else by substitution).
    pub fn text(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        // Column names of the table being read, once its header row is seen.
        let mut columns: Option<Vec<String>> = None;
        for line in text.split_inclusive('\n') {
            let (body, newline) = match line.strip_suffix('\n') {
                Some(body) => (body, "\n"),
                None => (line, ""),
            };
            out.push_str(&self.line(body, &mut columns));
            out.push_str(newline);
        }
        out
    }

    fn line(&self, line: &str, columns: &mut Option<Vec<String>>) -> String {
        let trimmed = line.trim_start();
        if (trimmed.starts_with('{') || trimmed.starts_with('['))
            && let Ok(mut value) = serde_json::from_str::<Value>(trimmed)
        {
            self.json(&mut value);
            return value.to_string();
        }
        if line.starts_with('+') && line.ends_with('+') && line.contains('-') {
            // Table border: widths depend on the values, drop the padding.
            return "+".to_string();
        }
        if line.starts_with('|') {
            return self.table_row(line, columns);
        }
        *columns = None;
        let substituted = self.substitute(line);
        self.status_row(&substituted).unwrap_or(substituted)
    }

    fn substitute(&self, line: &str) -> String {
        let mut s = line.replace(&self.endpoint, "<endpoint>");
        for (id, placeholder) in [(self.member_id, "<member>"), (self.cluster_id, "<cluster>")] {
            for form in [format!("{id:016x}"), format!("{id:x}"), id.to_string()] {
                // Short forms (small ids) would hit unrelated numbers.
                if form.len() >= MIN_ID_TEXT_LEN {
                    s = s.replace(&form, placeholder);
                }
            }
        }
        if let Some(at) = s.find("took = ") {
            s.truncate(at);
            s.push_str("took = <took>");
        }
        s
    }

    /// `endpoint status` simple format: `<endpoint>, <member>, 3.4.23, 20 kB,
    /// true, false, 2, 6, 6, ` (ten comma-separated columns).
    fn status_row(&self, line: &str) -> Option<String> {
        if !line.starts_with("<endpoint>, ") {
            return None;
        }
        let mut cols: Vec<String> = line.split(", ").map(str::to_string).collect();
        if cols.len() != 10 {
            return None;
        }
        for (i, placeholder) in STATUS_PLACEHOLDER_COLUMNS {
            cols[i] = placeholder.to_string();
        }
        Some(cols.join(", "))
    }

    /// A table row, cells trimmed. The first row of a table is its header;
    /// in later rows the cells under [`TABLE_PLACEHOLDER_COLUMNS`] are
    /// replaced.
    fn table_row(&self, line: &str, columns: &mut Option<Vec<String>>) -> String {
        let mut cells: Vec<String> = line
            .trim_matches('|')
            .split('|')
            .map(|c| self.substitute(c.trim()))
            .collect();
        match columns {
            None => *columns = Some(cells.clone()),
            Some(names) => {
                for (cell, name) in cells.iter_mut().zip(names.iter()) {
                    if let Some((_, placeholder)) = TABLE_PLACEHOLDER_COLUMNS
                        .iter()
                        .find(|(column, _)| column == name)
                    {
                        *cell = placeholder.to_string();
                    }
                }
            }
        }
        format!("|{}|", cells.join("|"))
    }

    fn json(&self, value: &mut Value) {
        match value {
            Value::Object(map) => {
                for (key, v) in map.iter_mut() {
                    let id = match key.as_str() {
                        "member_id" | "leader" => Some((self.member_id, "<member>")),
                        "cluster_id" => Some((self.cluster_id, "<cluster>")),
                        _ => None,
                    };
                    if let Some((id, placeholder)) = id {
                        // A different id stays visible, so a wrong leader shows.
                        if v.as_u64() == Some(id) {
                            *v = Value::String(placeholder.to_string());
                        }
                    } else if JSON_PLACEHOLDER_FIELDS.contains(&key.as_str()) {
                        *v = Value::String(format!("<{key}>"));
                    } else {
                        self.json(v);
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.json(v)),
            Value::String(s) => *s = self.substitute(s),
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MEMBER: u64 = 4627081221937520288; // 4036b1db24775ea0
    const CLUSTER: u64 = 2478302587001825083;

    fn norm() -> Normalizer {
        Normalizer::new("127.0.0.1:23791", MEMBER, CLUSTER)
    }

    #[test]
    fn get_json_header_ids_and_term_are_replaced() {
        let line = r#"{"header":{"cluster_id":2478302587001825083,"member_id":4627081221937520288,"revision":3,"raft_term":2},"kvs":[{"key":"Zm9v","create_revision":2,"mod_revision":2,"version":1,"value":"YmFy"}],"count":1}"#;
        let out = norm().text(line);
        assert!(out.contains(r#""cluster_id":"<cluster>""#), "{out}");
        assert!(out.contains(r#""member_id":"<member>""#), "{out}");
        assert!(out.contains(r#""raft_term":"<raft_term>""#), "{out}");
        assert!(out.contains(r#""revision":3"#), "{out}");
        assert!(out.contains(r#""key":"Zm9v""#), "{out}");
    }

    #[test]
    fn status_table_ignores_widths_and_volatile_columns() {
        let a = "\
+-----------------+------------------+---------+---------+-----------+------------+-----------+------------+--------------------+--------+
|    ENDPOINT     |        ID        | VERSION | DB SIZE | IS LEADER | IS LEARNER | RAFT TERM | RAFT INDEX | RAFT APPLIED INDEX | ERRORS |
+-----------------+------------------+---------+---------+-----------+------------+-----------+------------+--------------------+--------+
| 127.0.0.1:23791 | 4036b1db24775ea0 |  3.4.23 |   20 kB |      true |      false |         2 |          6 |                  6 |        |
+-----------------+------------------+---------+---------+-----------+------------+-----------+------------+--------------------+--------+
";
        let other = Normalizer::new("127.0.0.1:4000", 17, 18);
        let b = "\
+----------------+----+---------+--------+-----------+------------+-----------+------------+--------------------+--------+
|    ENDPOINT    | ID | VERSION | DB SIZE| IS LEADER | IS LEARNER | RAFT TERM | RAFT INDEX | RAFT APPLIED INDEX | ERRORS |
+----------------+----+---------+--------+-----------+------------+-----------+------------+--------------------+--------+
| 127.0.0.1:4000 | 11 |  3.4.23 | 1.1 MB |      true |      false |        12 |        100 |                100 |        |
+----------------+----+---------+--------+-----------+------------+-----------+------------+--------------------+--------+
";
        assert_eq!(norm().text(a), other.text(b));
        let c = b.replace("|      true |", "|     false |");
        assert_ne!(norm().text(a), other.text(&c));
    }

    #[test]
    fn status_simple_row_keeps_leader_and_version() {
        let line = "127.0.0.1:23791, 4036b1db24775ea0, 3.4.23, 20 kB, true, false, 2, 4, 4, \n";
        assert_eq!(
            norm().text(line),
            "<endpoint>, <member>, 3.4.23, <db size>, true, false, <raft term>, <raft index>, <raft applied index>, \n"
        );
    }

    #[test]
    fn status_json_keeps_leader_identity() {
        let line = r#"[{"Endpoint":"127.0.0.1:23791","Status":{"header":{"cluster_id":2478302587001825083,"member_id":4627081221937520288,"revision":3,"raft_term":2},"version":"3.4.23","dbSize":20480,"leader":4627081221937520288,"raftIndex":6,"raftTerm":2,"raftAppliedIndex":6,"dbSizeInUse":16384}}]"#;
        let out = norm().text(line);
        assert!(out.contains(r#""Endpoint":"<endpoint>""#), "{out}");
        assert!(out.contains(r#""leader":"<member>""#), "{out}");
        assert!(out.contains(r#""dbSize":"<dbSize>""#), "{out}");
        assert!(out.contains(r#""raftIndex":"<raftIndex>""#), "{out}");
        assert!(out.contains(r#""version":"3.4.23""#), "{out}");
    }

    #[test]
    fn health_lines_lose_their_duration() {
        let line =
            "127.0.0.1:23791 is healthy: successfully committed proposal: took = 1.507292ms\n";
        assert_eq!(
            norm().text(line),
            "<endpoint> is healthy: successfully committed proposal: took = <took>\n"
        );
        let table = "+---+\n|    ENDPOINT     | HEALTH |   TOOK    | ERROR |\n+---+\n| 127.0.0.1:23791 |   true | 1.57633ms |       |\n+---+\n";
        assert_eq!(
            norm().text(table),
            "+\n|ENDPOINT|HEALTH|TOOK|ERROR|\n+\n|<endpoint>|true|<took>||\n+\n"
        );
        let json = r#"[{"endpoint":"127.0.0.1:23791","health":true,"took":"1.40723ms"}]"#;
        assert_eq!(
            norm().text(json),
            r#"[{"endpoint":"<endpoint>","health":true,"took":"<took>"}]"#
        );
    }

    #[test]
    fn client_retry_log_lines_lose_time_and_target() {
        let line = r#"{"level":"warn","ts":"2026-11-26T22:46:08.604Z","caller":"clientv3/retry_interceptor.go:62","msg":"retrying of unary invoker failed","target":"endpoint://client-7e979ca0/127.0.0.1:23791","attempt":0,"error":"rpc error: code = OutOfRange desc = etcdserver: mvcc: required revision has been compacted"}"#;
        let out = norm().text(line);
        assert!(out.contains(r#""ts":"<ts>""#), "{out}");
        assert!(out.contains(r#""target":"<target>""#), "{out}");
        assert!(
            out.contains("required revision has been compacted"),
            "{out}"
        );
    }

    #[test]
    fn small_ids_do_not_clobber_revisions() {
        let small = Normalizer::new("127.0.0.1:4000", 2, 3);
        let line =
            r#"{"header":{"cluster_id":3,"member_id":2,"revision":2,"raft_term":2},"count":3}"#;
        let out = small.text(line);
        assert!(out.contains(r#""member_id":"<member>""#), "{out}");
        assert!(out.contains(r#""cluster_id":"<cluster>""#), "{out}");
        assert!(out.contains(r#""revision":2"#), "{out}");
        assert!(out.contains(r#""count":3"#), "{out}");
        assert_eq!(small.text("2\n3\n"), "2\n3\n");
    }

    #[test]
    fn a_wrong_leader_stays_visible() {
        let line = r#"{"leader":1,"member_id":4627081221937520288}"#;
        let out = norm().text(line);
        assert!(out.contains(r#""leader":1"#), "{out}");
    }

    #[test]
    fn plain_output_is_unchanged() {
        let text = "foo\nbar\nOK\n";
        assert_eq!(norm().text(text), text);
        assert_eq!(norm().text("no newline"), "no newline");
    }
}
