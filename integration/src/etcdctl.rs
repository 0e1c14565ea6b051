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

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::AsyncWriteExt;

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
