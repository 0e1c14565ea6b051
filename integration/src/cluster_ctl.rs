//! Normalising what etcdctl prints about a whole cluster (membership
//! commands, `endpoint ... --cluster`), so an etcd cluster's output and an
//! oxcd cluster's can be compared byte for byte.
//!
//! Two clusters started the same way differ in every member id (etcd derives
//! an id from the peer URLs, the cluster token and, for an added member, the
//! time), in the cluster id, in their OS-given ports, and in the order
//! etcdctl prints members (sorted by id). [`ClusterNormalizer`] takes those
//! out, member by member:
//!
//! 1. It is built from the cluster id and one [`MemberIdentity`] per harness
//!    slot: the slot's name (`m0`, `m1`, ...), its client and peer addresses
//!    and, once the member was added, its id.
//! 2. Text: every form of a member's id (`%x`, `%016x`, decimal) becomes
//!    `<id mN>`, the cluster id `<cluster>` (the spaces etcdctl's `%16x`
//!    pads a short id with are dropped), addresses `<client mN>` and
//!    `<peer mN>` (the `http://` before them stays, so a missing scheme
//!    shows), and `took = <duration>` becomes `took = <took>`.
//! 3. JSON lines are rewritten structurally: the id fields (`ID`,
//!    `member_id`, `leader`, `cluster_id`) by value, raft term and indexes,
//!    db sizes, hashes and clientv3's log `ts` / `target` into placeholders,
//!    strings as text; the `members` array and the per-endpoint records of
//!    `endpoint ... --cluster -w json` are sorted.
//! 4. Tables lose their padding (borders become `+`, cells are trimmed);
//!    DB SIZE, RAFT TERM, RAFT INDEX, RAFT APPLIED INDEX and TOOK cells
//!    become placeholders; HASH cells become `<hash 1>`, `<hash 2>`, ... by
//!    distinct value, so members that agree print the same label whatever
//!    the hash function; the IS LEADER column becomes `<leader?>` and the
//!    table is followed by a `leaders: N` line (which member leads is not
//!    etcdctl's business, that exactly one does is). Data rows are sorted.
//! 5. `ETCD_INITIAL_CLUSTER="..."` (printed by `member add`) has its entries
//!    sorted; [`ClusterNormalizer::output`] with `sort_lines` sorts the
//!    lines of stdout and stderr (`member list` in simple form, `endpoint
//!    health`, which prints to stderr as its requests finish).

use serde_json::Value;

use crate::etcdctl::CtlOutput;

/// JSON fields whose values differ between servers for reasons outside the
/// API contract (raft bookkeeping, file sizes, hash functions, timings).
const JSON_PLACEHOLDER_FIELDS: [&str; 10] = [
    "raft_term",
    "raftTerm",
    "raftIndex",
    "raftAppliedIndex",
    "dbSize",
    "dbSizeInUse",
    "hash",
    "took",
    "ts",
    "target",
];

/// JSON fields holding a member id.
const JSON_MEMBER_ID_FIELDS: [&str; 3] = ["ID", "member_id", "leader"];

/// Table columns (by header) whose cells are replaced.
const TABLE_PLACEHOLDER_COLUMNS: [(&str, &str); 5] = [
    ("DB SIZE", "<db size>"),
    ("RAFT TERM", "<raft term>"),
    ("RAFT INDEX", "<raft index>"),
    ("RAFT APPLIED INDEX", "<raft applied index>"),
    ("TOOK", "<took>"),
];

/// Id forms shorter than this are not substituted in free text (they would
/// hit unrelated numbers).
const MIN_ID_TEXT_LEN: usize = 8;

/// What identifies one member slot of a harness cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberIdentity {
    /// The slot's `--name` (`m0`, `m1`, ...), used in placeholders.
    pub name: String,
    /// Its raft id, once it was added (`None` before).
    pub id: Option<u64>,
    /// Client address without scheme, `127.0.0.1:<port>`.
    pub client: String,
    /// Peer address without scheme, `127.0.0.1:<port>`.
    pub peer: String,
}

/// Rewrites one cluster's identities out of etcdctl output (module doc).
#[derive(Debug, Clone)]
pub struct ClusterNormalizer {
    cluster_id: u64,
    members: Vec<MemberIdentity>,
    /// Text substitutions, longest pattern first so that an address or id
    /// is never cut by a shorter one it contains.
    substitutions: Vec<(String, String)>,
}

impl ClusterNormalizer {
    /// A normalizer for the cluster `cluster_id` with these member slots.
    pub fn new(cluster_id: u64, members: Vec<MemberIdentity>) -> Self {
        let mut substitutions = Vec::new();
        for id_form in id_forms(cluster_id) {
            substitutions.push((id_form, "<cluster>".to_string()));
        }
        for m in &members {
            substitutions.push((m.client.clone(), format!("<client {}>", m.name)));
            substitutions.push((m.peer.clone(), format!("<peer {}>", m.name)));
            if let Some(id) = m.id {
                for id_form in id_forms(id) {
                    substitutions.push((id_form, format!("<id {}>", m.name)));
                }
            }
        }
        substitutions.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
        ClusterNormalizer {
            cluster_id,
            members,
            substitutions,
        }
    }

    /// Normalises a whole etcdctl output; with `sort_lines` the lines of
    /// stdout and of stderr are sorted too (for output printed in member-id
    /// order, or by concurrent per-endpoint requests).
    pub fn output(&self, out: &CtlOutput, sort_lines: bool) -> CtlOutput {
        let normalize = |text: &str| {
            let text = self.text(text);
            if !sort_lines {
                return text;
            }
            let mut lines: Vec<&str> = text.lines().collect();
            lines.sort_unstable();
            lines.iter().map(|l| format!("{l}\n")).collect()
        };
        CtlOutput {
            stdout: normalize(&out.stdout),
            stderr: normalize(&out.stderr),
            code: out.code,
        }
    }

    /// Normalises text: tables as blocks, every other line on its own.
    pub fn text(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let mut table: Vec<&str> = Vec::new();
        for line in text.lines() {
            if line.starts_with('+') || line.starts_with('|') {
                table.push(line);
                continue;
            }
            if !table.is_empty() {
                out.push_str(&self.table(&table));
                table.clear();
            }
            out.push_str(&self.line(line));
            out.push('\n');
        }
        if !table.is_empty() {
            out.push_str(&self.table(&table));
        }
        if !text.ends_with('\n') && out.ends_with('\n') {
            out.pop();
        }
        out
    }

    fn line(&self, line: &str) -> String {
        let trimmed = line.trim_start();
        if (trimmed.starts_with('{') || trimmed.starts_with('['))
            && let Ok(mut value) = serde_json::from_str::<Value>(trimmed)
        {
            self.json(&mut value);
            return value.to_string();
        }
        let s = self.substitute(line);
        match s
            .strip_prefix("ETCD_INITIAL_CLUSTER=\"")
            .and_then(|rest| rest.strip_suffix('"'))
        {
            Some(entries) => {
                let mut entries: Vec<&str> = entries.split(',').collect();
                entries.sort_unstable();
                format!("ETCD_INITIAL_CLUSTER=\"{}\"", entries.join(","))
            }
            None => s,
        }
    }

    fn substitute(&self, text: &str) -> String {
        let mut s = text.to_string();
        for (pattern, placeholder) in &self.substitutions {
            s = s.replace(pattern, placeholder);
        }
        // `Member %16x added to cluster %16x`: an id with fewer than 16 hex
        // digits is padded with spaces.
        for placeholder in ["<id ", "<cluster>"] {
            let padded = format!("  {placeholder}");
            while s.contains(&padded) {
                s = s.replace(&padded, &padded[1..]);
            }
        }
        if let Some(at) = s.find("took = ") {
            s.truncate(at);
            s.push_str("took = <took>");
        }
        s
    }

    /// Step 4 of the module doc: one table (borders, header, rows).
    fn table(&self, lines: &[&str]) -> String {
        let mut header: Option<Vec<String>> = None;
        let mut rows: Vec<Vec<String>> = Vec::new();
        for line in lines {
            if !line.starts_with('|') {
                continue;
            }
            let cells: Vec<String> = line
                .trim_matches('|')
                .split('|')
                .map(|c| self.substitute(c.trim()))
                .collect();
            if header.is_none() {
                header = Some(cells);
            } else {
                rows.push(cells);
            }
        }
        let header = header.unwrap_or_default();
        let mut hashes: Vec<String> = Vec::new();
        let mut leaders = None;
        for (column, name) in header.iter().enumerate() {
            let placeholder = TABLE_PLACEHOLDER_COLUMNS
                .iter()
                .find(|(c, _)| c == name)
                .map(|(_, p)| *p);
            for row in rows.iter_mut() {
                let Some(cell) = row.get_mut(column) else {
                    continue;
                };
                if let Some(placeholder) = placeholder {
                    *cell = placeholder.to_string();
                } else if name == "HASH" {
                    let label = match hashes.iter().position(|h| h == cell) {
                        Some(at) => at + 1,
                        None => {
                            hashes.push(cell.clone());
                            hashes.len()
                        }
                    };
                    *cell = format!("<hash {label}>");
                } else if name == "IS LEADER" {
                    if cell == "true" {
                        *leaders.get_or_insert(0) += 1;
                    } else {
                        leaders.get_or_insert(0);
                    }
                    *cell = "<leader?>".to_string();
                }
            }
        }
        rows.sort();
        let mut rendered = vec![
            "+".to_string(),
            format!("|{}|", header.join("|")),
            "+".to_string(),
        ];
        rendered.extend(rows.iter().map(|row| format!("|{}|", row.join("|"))));
        rendered.push("+".to_string());
        if let Some(n) = leaders {
            rendered.push(format!("leaders: {n}"));
        }
        rendered.iter().map(|l| format!("{l}\n")).collect()
    }

    fn member_placeholder(&self, id: u64) -> Option<String> {
        self.members
            .iter()
            .find(|m| m.id == Some(id))
            .map(|m| format!("<id {}>", m.name))
    }

    fn json(&self, value: &mut Value) {
        match value {
            Value::Object(map) => {
                for (key, v) in map.iter_mut() {
                    if JSON_MEMBER_ID_FIELDS.contains(&key.as_str()) {
                        // An unknown id stays visible.
                        if let Some(p) = v.as_u64().and_then(|id| self.member_placeholder(id)) {
                            *v = Value::String(p);
                        }
                    } else if key == "cluster_id" {
                        if v.as_u64() == Some(self.cluster_id) {
                            *v = Value::String("<cluster>".to_string());
                        }
                    } else if JSON_PLACEHOLDER_FIELDS.contains(&key.as_str()) {
                        *v = Value::String(format!("<{key}>"));
                    } else {
                        self.json(v);
                        if key == "members"
                            && let Value::Array(items) = v
                        {
                            items.sort_by_key(Value::to_string);
                        }
                    }
                }
            }
            Value::Array(items) => {
                items.iter_mut().for_each(|v| self.json(v));
                // `endpoint ... --cluster -w json`: one record per endpoint,
                // in member-id order.
                if items.iter().all(|v| v.get("Endpoint").is_some()) {
                    items.sort_by_key(Value::to_string);
                }
            }
            Value::String(s) => *s = self.substitute(s),
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }
}

/// The forms an id is printed in (`%016x`, `%x`, decimal), long enough to
/// be substituted safely.
fn id_forms(id: u64) -> Vec<String> {
    let mut forms = vec![format!("{id:016x}"), format!("{id:x}"), id.to_string()];
    forms.dedup();
    forms.retain(|f| f.len() >= MIN_ID_TEXT_LEN);
    forms
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLUSTER: u64 = 0x9a7d7f4dbc35d068;
    const M0: u64 = 0x0e1028b4897c18f0;
    const M1: u64 = 0xc5a2b13b61a1383b;

    fn identity(name: &str, id: Option<u64>, client: u16, peer: u16) -> MemberIdentity {
        MemberIdentity {
            name: name.to_string(),
            id,
            client: format!("127.0.0.1:{client}"),
            peer: format!("127.0.0.1:{peer}"),
        }
    }

    fn norm() -> ClusterNormalizer {
        ClusterNormalizer::new(
            CLUSTER,
            vec![
                identity("m0", Some(M0), 35269, 33524),
                identity("m1", Some(M1), 27679, 26801),
                identity("m2", None, 37384, 21416),
            ],
        )
    }

    /// The same cluster as [`norm`] with other ids and ports.
    fn other() -> ClusterNormalizer {
        ClusterNormalizer::new(
            17,
            vec![
                identity("m0", Some(0xffff_0000_0000_0001), 4000, 4001),
                identity("m1", Some(0x1111_0000_0000_0002), 4002, 4003),
                identity("m2", None, 4004, 4005),
            ],
        )
    }

    #[test]
    fn member_add_output_loses_ids_ports_and_order() {
        let a = "Member c5a2b13b61a1383b added to cluster 9a7d7f4dbc35d068\n\n\
                 ETCD_NAME=\"m1\"\n\
                 ETCD_INITIAL_CLUSTER=\"m0=http://127.0.0.1:33524,m1=http://127.0.0.1:26801\"\n\
                 ETCD_INITIAL_ADVERTISE_PEER_URLS=\"http://127.0.0.1:26801\"\n";
        let expected = "Member <id m1> added to cluster <cluster>\n\n\
                        ETCD_NAME=\"m1\"\n\
                        ETCD_INITIAL_CLUSTER=\"m0=http://<peer m0>,m1=http://<peer m1>\"\n\
                        ETCD_INITIAL_ADVERTISE_PEER_URLS=\"http://<peer m1>\"\n";
        assert_eq!(norm().text(a), expected);
        let b = "Member 1111000000000002 added to cluster 11\n\n\
                 ETCD_NAME=\"m1\"\n\
                 ETCD_INITIAL_CLUSTER=\"m1=http://127.0.0.1:4003,m0=http://127.0.0.1:4001\"\n\
                 ETCD_INITIAL_ADVERTISE_PEER_URLS=\"http://127.0.0.1:4003\"\n";
        // Cluster id 17 is too short to substitute: it stays visible.
        assert_eq!(
            other().text(b),
            expected.replace("<cluster>", "11"),
            "{}",
            other().text(b)
        );
    }

    #[test]
    fn ids_padded_by_percent_16x_lose_the_padding() {
        let short = 0x0e10_28b4_897c_18f0;
        let n = ClusterNormalizer::new(
            0x0a7d_7f4d_bc35_d068,
            vec![identity("m0", Some(short), 4000, 4001)],
        );
        assert_eq!(
            n.text("Member  e1028b4897c18f0 removed from cluster  a7d7f4dbc35d068\n"),
            "Member <id m0> removed from cluster <cluster>\n"
        );
        assert_eq!(
            n.text("127.0.0.1:4000, e1028b4897c18f0, 3.4.23"),
            "<client m0>, <id m0>, 3.4.23"
        );
    }

    #[test]
    fn member_list_json_maps_ids_and_sorts_members() {
        let line = r#"{"header":{"cluster_id":11132193825776586856,"member_id":1013354672024197360,"raft_term":2},"members":[{"ID":1013354672024197360,"name":"m0","peerURLs":["http://127.0.0.1:33524"],"clientURLs":["http://127.0.0.1:35269"]},{"ID":14241139840298072123,"peerURLs":["http://127.0.0.1:26801"],"isLearner":true}]}"#;
        let out = norm().text(line);
        assert_eq!(
            out,
            r#"{"header":{"cluster_id":"<cluster>","member_id":"<id m0>","raft_term":"<raft_term>"},"members":[{"ID":"<id m0>","clientURLs":["http://<client m0>"],"name":"m0","peerURLs":["http://<peer m0>"]},{"ID":"<id m1>","isLearner":true,"peerURLs":["http://<peer m1>"]}]}"#
        );
        let swapped = r#"{"header":{"cluster_id":11132193825776586856,"member_id":1013354672024197360,"raft_term":9},"members":[{"ID":14241139840298072123,"peerURLs":["http://127.0.0.1:26801"],"isLearner":true},{"ID":1013354672024197360,"name":"m0","peerURLs":["http://127.0.0.1:33524"],"clientURLs":["http://127.0.0.1:35269"]}]}"#;
        assert_eq!(norm().text(swapped), out);
        let unknown = line.replace("14241139840298072123", "42");
        assert!(norm().text(&unknown).contains(r#""ID":42"#));
    }

    #[test]
    fn status_table_keeps_members_and_counts_leaders() {
        let a = "\
+------------------------+------------------+---------+---------+-----------+------------+-----------+------------+--------------------+--------+
|        ENDPOINT        |        ID        | VERSION | DB SIZE | IS LEADER | IS LEARNER | RAFT TERM | RAFT INDEX | RAFT APPLIED INDEX | ERRORS |
+------------------------+------------------+---------+---------+-----------+------------+-----------+------------+--------------------+--------+
| http://127.0.0.1:35269 |  e1028b4897c18f0 |  3.4.23 |   25 kB |      true |      false |        16 |         10 |                 10 |        |
| http://127.0.0.1:27679 | c5a2b13b61a1383b |  3.4.23 |   20 kB |     false |      false |        16 |         10 |                 10 |        |
+------------------------+------------------+---------+---------+-----------+------------+-----------+------------+--------------------+--------+
";
        let out = norm().text(a);
        assert_eq!(
            out,
            "+\n|ENDPOINT|ID|VERSION|DB SIZE|IS LEADER|IS LEARNER|RAFT TERM|RAFT INDEX|RAFT APPLIED INDEX|ERRORS|\n+\n\
             |http://<client m0>|<id m0>|3.4.23|<db size>|<leader?>|false|<raft term>|<raft index>|<raft applied index>||\n\
             |http://<client m1>|<id m1>|3.4.23|<db size>|<leader?>|false|<raft term>|<raft index>|<raft applied index>||\n+\nleaders: 1\n"
        );
        let b = "\
+---+
| ENDPOINT | ID | VERSION | DB SIZE | IS LEADER | IS LEARNER | RAFT TERM | RAFT INDEX | RAFT APPLIED INDEX | ERRORS |
+---+
| http://127.0.0.1:4002 | 1111000000000002 | 3.4.23 | 1 MB | true | false | 3 | 7 | 7 | |
| http://127.0.0.1:4000 | ffff000000000001 | 3.4.23 | 1 MB | false | false | 3 | 7 | 7 | |
+---+
";
        assert_eq!(other().text(b), out);
        let no_leader = b.replace("| true |", "| false |");
        assert!(other().text(&no_leader).contains("leaders: 0\n"));
    }

    #[test]
    fn endpoint_records_are_sorted() {
        let line = r#"[{"Endpoint":"http://127.0.0.1:27679","HashKV":{"header":{"cluster_id":11132193825776586856,"member_id":14241139840298072123,"revision":3,"raft_term":2},"hash":3658645045,"compact_revision":-1}},{"Endpoint":"http://127.0.0.1:35269","HashKV":{"header":{"cluster_id":11132193825776586856,"member_id":1013354672024197360,"revision":3,"raft_term":2},"hash":3658645045,"compact_revision":-1}}]"#;
        let out = norm().text(line);
        assert!(
            out.starts_with(r#"[{"Endpoint":"http://<client m0>","HashKV":{"compact_revision":-1,"hash":"<hash>","header":{"cluster_id":"<cluster>","member_id":"<id m0>""#),
            "{out}"
        );
        assert!(out.contains(r#""revision":3"#), "{out}");
    }

    #[test]
    fn hashes_are_labelled_by_distinct_value() {
        let table = "\
+------------------------+------------+
|        ENDPOINT        |    HASH    |
+------------------------+------------+
| http://127.0.0.1:35269 | 3658645045 |
| http://127.0.0.1:27679 | 3658645045 |
+------------------------+------------+
";
        let out = norm().text(table);
        assert_eq!(
            out,
            "+\n|ENDPOINT|HASH|\n+\n|http://<client m0>|<hash 1>|\n|http://<client m1>|<hash 1>|\n+\n"
        );
        let split = table.replacen("3658645045", "1", 1);
        assert!(norm().text(&split).contains("<hash 2>"));
    }

    #[test]
    fn health_lines_sort_and_lose_durations() {
        let out = CtlOutput {
            stdout: String::new(),
            stderr: "http://127.0.0.1:27679 is healthy: successfully committed proposal: took = 2.1ms\n\
                     http://127.0.0.1:35269 is healthy: successfully committed proposal: took = 13µs\n"
                .to_string(),
            code: 0,
        };
        let normalized = norm().output(&out, true);
        assert_eq!(
            normalized.stderr,
            "http://<client m0> is healthy: successfully committed proposal: took = <took>\n\
             http://<client m1> is healthy: successfully committed proposal: took = <took>\n"
        );
        assert_eq!(normalized.stdout, "");
        let unsorted = norm().output(&out, false).stderr;
        assert!(unsorted.starts_with("http://<client m1>"), "{unsorted}");
    }

    #[test]
    fn client_retry_log_lines_lose_time_and_target() {
        let line = r#"{"level":"warn","ts":"2026-12-07T20:02:57.895Z","caller":"clientv3/retry_interceptor.go:62","msg":"retrying of unary invoker failed","target":"endpoint://client-af1e1f74/127.0.0.1:35269","attempt":0,"error":"rpc error: code = NotFound desc = etcdserver: member not found"}"#;
        let out = norm().text(&format!("{line}\nError: etcdserver: member not found\n"));
        assert!(out.contains(r#""ts":"<ts>""#), "{out}");
        assert!(out.contains(r#""target":"<target>""#), "{out}");
        assert!(out.contains("code = NotFound desc"), "{out}");
        assert!(
            out.ends_with("\nError: etcdserver: member not found\n"),
            "{out}"
        );
    }

    #[test]
    fn a_longer_port_is_not_cut_by_a_shorter_one() {
        let n = ClusterNormalizer::new(
            1,
            vec![
                identity("m0", None, 3456, 4001),
                identity("m1", None, 34567, 4003),
            ],
        );
        assert_eq!(
            n.text("127.0.0.1:34567 127.0.0.1:3456"),
            "<client m1> <client m0>"
        );
    }
}
