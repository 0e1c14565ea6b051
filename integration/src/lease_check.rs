//! Shared checks of the lease tests: what etcdctl prints about leases, when a
//! lease's keys were seen to go, and which keep-alives were answered.
//!
//! 1. [`LeaseIds`] keeps the lease ids one server granted, in grant order, and
//!    rewrites etcdctl's output about them: every id (hex in text, decimal in
//!    JSON and `-w fields`) becomes `<lease-n>`, the raft term of `-w fields`
//!    becomes `<raft term>`, the lists of `lease list` and the attached keys
//!    of `lease timetolive --keys` are sorted (etcd lists both in Go map
//!    order), and, for `lease timetolive`, each
//!    remaining TTL becomes `<remaining>` and is returned beside the text so
//!    [`remaining_agree`] can compare two servers' (one may print 29 s where
//!    the other prints 30 s).
//! 2. [`PresenceLog`] collects polls of a lease's keys (when each poll was
//!    sent, when it was answered, whether the keys were there) and yields
//!    the [`ExpiryWindow`]: the expiry happened after the last poll that
//!    still saw the keys was sent and before the first poll that missed them
//!    was answered. A bound is only claimed broken when the window proves it.
//! 3. [`KeepAliveLedger`] follows one keep-alive stream: requests are
//!    answered in order, so each answer is matched with the oldest request in
//!    flight; it keeps, per lease, when the last request answered with a
//!    positive TTL was sent (the lease is safe until then plus its TTL), and
//!    every answer with TTL 0 ("lease not found": the lease expired).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::etcdctl::CtlOutput;

/// The lease ids one server granted, in grant order.
#[derive(Debug, Default, Clone)]
pub struct LeaseIds {
    ids: Vec<i64>,
}

impl LeaseIds {
    /// Learns the id a `lease grant` printed (simple or JSON format), and
    /// returns it.
    pub fn learn(&mut self, grant_stdout: &str) -> Option<i64> {
        let id = granted_id(grant_stdout)?;
        self.ids.push(id);
        Some(id)
    }

    /// The `n`-th granted id, in hex as etcdctl takes it.
    pub fn hex(&self, n: usize) -> String {
        format!("{:x}", self.ids[n])
    }

    /// The `n`-th granted id.
    pub fn id(&self, n: usize) -> i64 {
        self.ids[n]
    }

    /// Step 1 of the module doc on a whole (already [`crate::etcdctl`]
    /// normalised) output; `remaining` marks a `lease timetolive`, whose
    /// remaining TTLs are taken out and returned.
    pub fn normalize(&self, out: &CtlOutput, remaining: bool) -> (CtlOutput, Vec<i64>) {
        let mut found = Vec::new();
        let stdout = self.text(&out.stdout, remaining, &mut found);
        let stderr = self.text(&out.stderr, false, &mut Vec::new());
        (
            CtlOutput {
                stdout,
                stderr,
                code: out.code,
            },
            found,
        )
    }

    fn placeholder(&self, id: i64) -> Option<String> {
        self.ids
            .iter()
            .position(|&known| known == id)
            .map(|n| format!("<lease-{n}>"))
    }

    fn text(&self, text: &str, remaining: bool, found: &mut Vec<i64>) -> String {
        let mut lines: Vec<String> = text
            .lines()
            .map(|line| self.line(line, remaining, found))
            .collect();
        // `lease list`: "found N leases" then one id per line; `-w fields`:
        // one `"ID" : n` line per lease, or one `"Key" : k` line per attached
        // key. The order is etcd's map order, so the lines are compared as a
        // set (kept in a sorted list).
        let repeated = |prefix: &str| lines.iter().filter(|l| l.starts_with(prefix)).count() > 1;
        if lines.first().is_some_and(|l| l.starts_with("found "))
            || repeated("\"ID\" : ")
            || repeated("\"Key\" : ")
        {
            lines.sort();
        }
        let mut joined = lines.join("\n");
        if text.ends_with('\n') {
            joined.push('\n');
        }
        joined
    }

    fn line(&self, line: &str, remaining: bool, found: &mut Vec<i64>) -> String {
        let trimmed = line.trim_start();
        if trimmed.starts_with('{')
            && let Ok(mut value) = serde_json::from_str::<Value>(trimmed)
        {
            self.json(&mut value, remaining, found);
            return value.to_string();
        }
        if let Some(value) = line.strip_prefix("\"RaftTerm\" : ")
            && value.parse::<u64>().is_ok()
        {
            return "\"RaftTerm\" : <raft term>".to_string();
        }
        if let Some(value) = line.strip_prefix("\"ID\" : ")
            && let Some(placeholder) = value.parse().ok().and_then(|id| self.placeholder(id))
        {
            return format!("\"ID\" : {placeholder}");
        }
        if remaining
            && let Some(value) = line.strip_prefix("\"TTL\" : ")
            && let Ok(ttl) = value.parse()
        {
            found.push(ttl);
            return "\"TTL\" : <remaining>".to_string();
        }
        let mut line = line.to_string();
        for (n, id) in self.ids.iter().enumerate() {
            // etcdctl prints ids zero-padded to 16 digits (`%016x`).
            for form in [format!("{id:016x}"), format!("{id:x}")] {
                line = replace_word(&line, &form, &format!("<lease-{n}>"));
            }
        }
        if remaining {
            line = take_remaining(&line, found);
        }
        sort_attached_keys(&line)
    }

    fn json(&self, value: &mut Value, remaining: bool, found: &mut Vec<i64>) {
        match value {
            Value::Object(map) => {
                for (key, v) in map.iter_mut() {
                    match key.as_str() {
                        "id" | "ID" => {
                            if let Some(p) = v.as_i64().and_then(|id| self.placeholder(id)) {
                                *v = Value::String(p);
                            }
                        }
                        "ttl" if remaining => {
                            if let Some(ttl) = v.as_i64() {
                                found.push(ttl);
                                *v = Value::String("<remaining>".to_string());
                            }
                        }
                        _ => self.json(v, remaining, found),
                    }
                }
                for list in ["leases", "keys"] {
                    if let Some(Value::Array(items)) = map.get_mut(list) {
                        items.sort_by_key(Value::to_string);
                    }
                }
            }
            Value::Array(items) => items
                .iter_mut()
                .for_each(|v| self.json(v, remaining, found)),
            Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => {}
        }
    }
}

/// The id in `lease <hex> granted with TTL(<n>s)` or in `lease grant -w
/// json`'s `"ID"`.
pub fn granted_id(stdout: &str) -> Option<i64> {
    let line = stdout.lines().next()?.trim();
    if line.starts_with('{') {
        let value: Value = serde_json::from_str(line).ok()?;
        return value.get("ID")?.as_i64();
    }
    let hex = line.strip_prefix("lease ")?.split(' ').next()?;
    line.contains(" granted with TTL(")
        .then(|| i64::from_str_radix(hex, 16).ok())
        .flatten()
}

/// The TTL in `lease <hex> granted with TTL(<n>s)`.
pub fn granted_ttl(stdout: &str) -> Option<i64> {
    let (_, rest) = stdout.split_once("granted with TTL(")?;
    rest.split_once("s)")?.0.parse().ok()
}

/// `word` replaced where it stands alone (not inside a longer hex or
/// decimal number).
fn replace_word(line: &str, word: &str, with: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(at) = rest.find(word) {
        let before = rest[..at].chars().next_back();
        let after = rest[at + word.len()..].chars().next();
        let alone = !before.is_some_and(|c| c.is_ascii_alphanumeric())
            && !after.is_some_and(|c| c.is_ascii_alphanumeric());
        out.push_str(&rest[..at]);
        out.push_str(if alone { with } else { word });
        rest = &rest[at + word.len()..];
    }
    out.push_str(rest);
    out
}

/// `attached keys([b a])` becomes `attached keys([a b])` (keys printed
/// with `%s` and joined by spaces, so a key with a space would be split: the
/// tests use none).
fn sort_attached_keys(line: &str) -> String {
    const OPEN: &str = "attached keys([";
    let Some(at) = line.find(OPEN) else {
        return line.to_string();
    };
    let rest = &line[at + OPEN.len()..];
    let Some((keys, tail)) = rest.split_once("])") else {
        return line.to_string();
    };
    let mut keys: Vec<&str> = keys.split(' ').collect();
    keys.sort_unstable();
    format!("{}{OPEN}{}]){tail}", &line[..at], keys.join(" "))
}

/// `remaining(<n>s)` becomes `remaining(<remaining>)`, `n` pushed to `found`.
fn take_remaining(line: &str, found: &mut Vec<i64>) -> String {
    const OPEN: &str = "remaining(";
    let Some(at) = line.find(OPEN) else {
        return line.to_string();
    };
    let rest = &line[at + OPEN.len()..];
    let Some((number, tail)) = rest.split_once("s)") else {
        return line.to_string();
    };
    let Ok(n) = number.parse() else {
        return line.to_string();
    };
    found.push(n);
    format!("{}{OPEN}<remaining>){tail}", &line[..at])
}

/// Two servers' remaining TTLs for the same leases agree: equal, or both
/// positive and at most one second apart (etcd truncates, a remaining TTL
/// may be read a moment later on one server).
pub fn remaining_agree(a: &[i64], b: &[i64]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(&x, &y)| x == y || (x > 0 && y > 0 && x.abs_diff(y) <= 1))
}

/// When a lease's keys went: after `after`, before `before` (step 2 of the
/// module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpiryWindow {
    /// When the last poll that still saw the keys was sent.
    pub after: Instant,
    /// When the first poll that missed them was answered.
    pub before: Instant,
}

impl ExpiryWindow {
    /// The window as times since `from` (zero where it lies before `from`).
    pub fn since(&self, from: Instant) -> (Duration, Duration) {
        (
            self.after.saturating_duration_since(from),
            self.before.saturating_duration_since(from),
        )
    }

    /// Whether the expiry certainly happened earlier than `at`.
    pub fn surely_before(&self, at: Instant) -> bool {
        self.before < at
    }

    /// Whether the expiry certainly happened later than `at`.
    pub fn surely_after(&self, at: Instant) -> bool {
        self.after > at
    }
}

/// Polls of a lease's keys (step 2 of the module doc).
#[derive(Debug, Default, Clone)]
pub struct PresenceLog {
    last_present: Option<Instant>,
    first_absent: Option<Instant>,
    polls: usize,
}

impl PresenceLog {
    /// One poll, sent at `sent` and answered at `answered`, saw the keys
    /// (`present`) or not. Keys seen again after they were missed are an
    /// error: an expired lease's keys do not come back.
    pub fn observe(
        &mut self,
        sent: Instant,
        answered: Instant,
        present: bool,
    ) -> Result<(), String> {
        self.polls += 1;
        match (present, self.first_absent) {
            (true, Some(gone)) => Err(format!(
                "keys seen again {:?} after a poll had missed them",
                sent.saturating_duration_since(gone)
            )),
            (true, None) => {
                self.last_present = Some(self.last_present.map_or(sent, |t| t.max(sent)));
                Ok(())
            }
            (false, _) => {
                self.first_absent = Some(self.first_absent.map_or(answered, |t| t.min(answered)));
                Ok(())
            }
        }
    }

    /// Whether a poll has missed the keys.
    pub fn gone(&self) -> bool {
        self.first_absent.is_some()
    }

    /// How many polls were recorded.
    pub fn polls(&self) -> usize {
        self.polls
    }

    /// The window, once a poll saw the keys and a later one missed them.
    pub fn window(&self) -> Option<ExpiryWindow> {
        Some(ExpiryWindow {
            after: self.last_present?,
            before: self.first_absent?,
        })
    }
}

/// One keep-alive stream's requests and answers (step 3 of the module doc).
#[derive(Debug, Default)]
pub struct KeepAliveLedger {
    in_flight: VecDeque<(i64, Instant)>,
    /// Per lease: when the last request answered with a positive TTL was
    /// sent.
    renewed: HashMap<i64, Instant>,
    /// Leases answered with TTL 0, and when.
    not_found: BTreeMap<i64, Instant>,
    answers: usize,
    latencies_ms: Vec<u64>,
}

impl KeepAliveLedger {
    /// A keep-alive for `id` was sent at `at`.
    pub fn sent(&mut self, id: i64, at: Instant) {
        self.in_flight.push_back((id, at));
    }

    /// An answer `(id, ttl)` arrived at `at`. It must answer the oldest
    /// request in flight.
    pub fn answered(&mut self, id: i64, ttl: i64, at: Instant) -> Result<(), String> {
        let Some((expected, sent)) = self.in_flight.pop_front() else {
            return Err(format!("answer for {id:x} with no request in flight"));
        };
        if expected != id {
            return Err(format!(
                "answer for {id:x} where the oldest request was for {expected:x}"
            ));
        }
        self.answers += 1;
        self.latencies_ms
            .push(at.saturating_duration_since(sent).as_millis() as u64);
        if ttl > 0 {
            let last = self.renewed.entry(id).or_insert(sent);
            *last = (*last).max(sent);
        } else {
            self.not_found.entry(id).or_insert(at);
        }
        Ok(())
    }

    /// The stream broke: its requests in flight will not be answered.
    pub fn stream_lost(&mut self) -> usize {
        let lost = self.in_flight.len();
        self.in_flight.clear();
        lost
    }

    /// Requests sent and not answered yet.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Answers received.
    pub fn answers(&self) -> usize {
        self.answers
    }

    /// When the last request for `id` answered with a positive TTL was sent.
    pub fn renewed(&self, id: i64) -> Option<Instant> {
        self.renewed.get(&id).copied()
    }

    /// Leases answered with TTL 0 (not found: expired), with when.
    pub fn not_found(&self) -> &BTreeMap<i64, Instant> {
        &self.not_found
    }

    /// The leases among `ids` not renewed by a request sent within `ttl`
    /// before `now` (never renewed counts from `since`).
    pub fn overdue(&self, ids: &[i64], since: Instant, ttl: Duration, now: Instant) -> Vec<i64> {
        ids.iter()
            .copied()
            .filter(|id| now.saturating_duration_since(self.renewed(*id).unwrap_or(since)) >= ttl)
            .collect()
    }

    /// Answers, latency quantiles and requests in flight, for messages.
    pub fn summary(&self) -> String {
        format!(
            "{} answers, latency p50 {} ms, p99 {} ms, max {} ms, {} in flight",
            self.answers,
            self.latency_ms(0.5),
            self.latency_ms(0.99),
            self.latency_ms(1.0),
            self.in_flight()
        )
    }

    /// Whether the leases `ids` were kept alive up to `now`: none answered
    /// TTL 0, each renewed by a request sent within `ttl` (counting from
    /// `since` for one never renewed). The error says which failed and how
    /// the stream fared.
    pub fn verdict(
        &self,
        ids: &[i64],
        since: Instant,
        ttl: Duration,
        now: Instant,
    ) -> Result<(), String> {
        if let Some((first, at)) = self.not_found.iter().next() {
            return Err(format!(
                "{} kept-alive leases answered TTL 0 (expired), the first {first:x} {:.2}s \
                 after `since`; {}",
                self.not_found.len(),
                at.saturating_duration_since(since).as_secs_f64(),
                self.summary()
            ));
        }
        let overdue = self.overdue(ids, since, ttl, now);
        if let Some(first) = overdue.first() {
            return Err(format!(
                "{} leases not renewed within their TTL of {ttl:?} (the stream answered too \
                 late or not at all), the first {first:x}; {}",
                overdue.len(),
                self.summary()
            ));
        }
        Ok(())
    }

    /// The `q`-quantile (0..=1) of answer latencies in milliseconds.
    pub fn latency_ms(&self, q: f64) -> u64 {
        let mut sorted = self.latencies_ms.clone();
        sorted.sort_unstable();
        if sorted.is_empty() {
            return 0;
        }
        let at = ((sorted.len() - 1) as f64 * q.clamp(0.0, 1.0)).round() as usize;
        sorted[at]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(stdout: &str) -> CtlOutput {
        CtlOutput {
            stdout: stdout.to_string(),
            stderr: String::new(),
            code: 0,
        }
    }

    fn ids(granted: &[&str]) -> LeaseIds {
        let mut ids = LeaseIds::default();
        for line in granted {
            ids.learn(line).expect("a grant line");
        }
        ids
    }

    #[test]
    fn grant_lines_give_id_and_ttl() {
        let line = "lease 2040a25135d96d05 granted with TTL(10s)\n";
        assert_eq!(granted_id(line), Some(0x2040a25135d96d05));
        assert_eq!(granted_ttl(line), Some(10));
        let json = r#"{"cluster_id":1,"member_id":2,"revision":4,"raft_term":2,"ID":2324035877402668311,"TTL":10,"Error":""}"#;
        assert_eq!(granted_id(json), Some(2324035877402668311));
        assert_eq!(granted_id("Error: too large lease TTL\n"), None);
    }

    #[test]
    fn ids_of_two_servers_become_the_same_placeholders() {
        let etcd = ids(&["lease 2040a25135d96d05 granted with TTL(10s)\n"]);
        let oxcd = ids(&["lease 390da25135d96301 granted with TTL(10s)\n"]);
        let a = etcd
            .normalize(
                &out("lease 2040a25135d96d05 keepalived with TTL(10)\n"),
                false,
            )
            .0;
        let b = oxcd
            .normalize(
                &out("lease 390da25135d96301 keepalived with TTL(10)\n"),
                false,
            )
            .0;
        assert_eq!(a, b);
        assert_eq!(a.stdout, "lease <lease-0> keepalived with TTL(10)\n");
        // A different TTL stays visible.
        let c = oxcd
            .normalize(
                &out("lease 390da25135d96301 keepalived with TTL(9)\n"),
                false,
            )
            .0;
        assert_ne!(a, c);
    }

    #[test]
    fn an_id_inside_a_longer_number_is_left_alone() {
        let known = ids(&["lease 5 granted with TTL(10s)\n"]);
        let (o, _) = known.normalize(&out("lease 5 and 15 and a5b\n"), false);
        assert_eq!(o.stdout, "lease <lease-0> and 15 and a5b\n");
        let padded = ids(&["lease 071da2513be08106 granted with TTL(10s)\n"]);
        let (o, _) = padded.normalize(&out("lease 071da2513be08106 revoked\n"), false);
        assert_eq!(o.stdout, "lease <lease-0> revoked\n");
    }

    #[test]
    fn remaining_ttls_are_taken_out_in_every_format() {
        let known = ids(&["lease 2040a25135d96d0f granted with TTL(30s)\n"]);
        let simple =
            "lease 2040a25135d96d0f granted with TTL(30s), remaining(29s), attached keys([k k2])\n";
        let (o, found) = known.normalize(&out(simple), true);
        assert_eq!(
            o.stdout,
            "lease <lease-0> granted with TTL(30s), remaining(<remaining>), attached keys([k k2])\n"
        );
        assert_eq!(found, vec![29]);
        let json = r#"{"cluster_id":"<cluster>","id":2324035877402668303,"ttl":-1,"granted-ttl":0,"keys":null}"#;
        let (o, found) = known.normalize(&out(json), true);
        assert!(o.stdout.contains(r#""id":"<lease-0>""#), "{}", o.stdout);
        assert!(o.stdout.contains(r#""ttl":"<remaining>""#), "{}", o.stdout);
        assert_eq!(found, vec![-1]);
        let fields =
            "\"RaftTerm\" : 2\n\"ID\" : 2324035877402668303\n\"TTL\" : 29\n\"GrantedTTL\" : 30\n";
        let (o, found) = known.normalize(&out(fields), true);
        assert_eq!(
            o.stdout,
            "\"RaftTerm\" : <raft term>\n\"ID\" : <lease-0>\n\"TTL\" : <remaining>\n\"GrantedTTL\" : 30\n"
        );
        assert_eq!(found, vec![29]);
        // Attached keys compare as sets, in every format.
        let a = known.normalize(&out("lease 2040a25135d96d0f granted with TTL(30s), remaining(29s), attached keys([k2 k])\n"), true);
        let b = known.normalize(&out("lease 2040a25135d96d0f granted with TTL(30s), remaining(29s), attached keys([k k2])\n"), true);
        assert_eq!(a, b);
        let a = known.normalize(&out(r#"{"id":1,"keys":["azI=","aw=="]}"#), false);
        let b = known.normalize(&out(r#"{"id":1,"keys":["aw==","azI="]}"#), false);
        assert_eq!(a, b);
        let a = known.normalize(
            &out("\"GrantedTTL\" : 30\n\"Key\" : \"k2\"\n\"Key\" : \"k\"\n"),
            false,
        );
        let b = known.normalize(
            &out("\"GrantedTTL\" : 30\n\"Key\" : \"k\"\n\"Key\" : \"k2\"\n"),
            false,
        );
        assert_eq!(a, b);
        let c = known.normalize(
            &out("\"GrantedTTL\" : 30\n\"Key\" : \"k\"\n\"Key\" : \"k3\"\n"),
            false,
        );
        assert_ne!(a, c);
        // Not a time-to-live: a keep-alive's TTL is compared as it is.
        let (o, found) = known.normalize(&out("\"TTL\" : 30\n"), false);
        assert_eq!(o.stdout, "\"TTL\" : 30\n");
        assert!(found.is_empty());
    }

    #[test]
    fn lease_lists_compare_as_sets() {
        let a = ids(&[
            "lease 11111111 granted with TTL(10s)\n",
            "lease 22222222 granted with TTL(10s)\n",
        ]);
        let one = a.normalize(&out("found 2 leases\n22222222\n11111111\n"), false);
        let two = a.normalize(&out("found 2 leases\n11111111\n22222222\n"), false);
        assert_eq!(one, two);
        let json_a = r#"{"revision":3,"leases":[{"id":572662306},{"id":286331153}]}"#;
        let json_b = r#"{"revision":3,"leases":[{"id":286331153},{"id":572662306}]}"#;
        assert_eq!(
            a.normalize(&out(json_a), false),
            a.normalize(&out(json_b), false)
        );
    }

    #[test]
    fn remaining_ttls_agree_within_a_second_and_never_across_signs() {
        assert!(remaining_agree(&[29, -1], &[30, -1]));
        assert!(!remaining_agree(&[28], &[30]));
        assert!(!remaining_agree(&[0], &[-1]));
        assert!(!remaining_agree(&[1, 2], &[1]));
    }

    #[test]
    fn the_window_lies_between_the_last_sighting_and_the_first_miss() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let mut log = PresenceLog::default();
        log.observe(at(0), at(10), true).unwrap();
        log.observe(at(20), at(30), true).unwrap();
        assert_eq!(log.window(), None);
        log.observe(at(40), at(55), false).unwrap();
        log.observe(at(60), at(70), false).unwrap();
        let window = log.window().unwrap();
        assert_eq!(window.since(t0), (ms(20), ms(55)));
        assert!(window.surely_before(at(56)));
        assert!(!window.surely_before(at(50)));
        assert!(window.surely_after(at(19)));
        assert!(!window.surely_after(at(25)));
        assert!(log.observe(at(80), at(90), true).is_err(), "keys came back");
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_ledger_matches_answers_in_order_and_keeps_the_last_renewal() {
        let t0 = Instant::now();
        let at = |n| t0 + ms(n);
        let mut ledger = KeepAliveLedger::default();
        ledger.sent(1, at(0));
        ledger.sent(2, at(1));
        ledger.answered(1, 10, at(5)).unwrap();
        assert!(ledger.answered(3, 10, at(6)).is_err(), "out of order");
        ledger.sent(1, at(20));
        assert_eq!(ledger.stream_lost(), 1);
        assert_eq!(ledger.renewed(1), Some(at(0)));
        ledger.sent(2, at(30));
        ledger.answered(2, 0, at(31)).unwrap();
        assert_eq!(ledger.not_found().keys().copied().collect::<Vec<_>>(), [2]);
        assert_eq!(
            ledger.overdue(&[1, 2], t0, ms(10_000), at(10_001)),
            vec![1, 2]
        );
        assert!(ledger.overdue(&[1], t0, ms(10_000), at(9_999)).is_empty());
        assert_eq!(ledger.answers(), 2);
        assert_eq!(ledger.latency_ms(1.0), 5);
    }

    #[test]
    fn the_verdict_names_expired_then_overdue_leases() {
        let t0 = Instant::now();
        let at = |n| t0 + ms(n);
        let ttl = ms(1_000);
        let mut ledger = KeepAliveLedger::default();
        for id in [1, 2] {
            ledger.sent(id, at(10));
            ledger.answered(id, 1, at(20)).unwrap();
        }
        assert!(ledger.verdict(&[1, 2], t0, ttl, at(1_009)).is_ok());
        let late = ledger.verdict(&[1, 2], t0, ttl, at(1_010)).unwrap_err();
        assert!(late.starts_with("2 leases not renewed"), "{late}");
        ledger.sent(2, at(30));
        ledger.answered(2, 0, at(40)).unwrap();
        let gone = ledger.verdict(&[1, 2], t0, ttl, at(50)).unwrap_err();
        assert!(
            gone.starts_with("1 kept-alive leases answered TTL 0"),
            "{gone}"
        );
    }
}
