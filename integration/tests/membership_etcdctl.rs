//! etcdctl membership golden test: Debian's etcdctl 3.4 must print the same
//! against an oxcd cluster as against an etcd 3.4 cluster grown the same way.
//!
//! 1. Start a one-member etcd cluster and a one-member oxcd cluster with the
//!    same flags, and give each two more slots (`m1`, `m2`: ports and data
//!    dirs, not started).
//! 2. Run one fixed sequence ([`Step`]s, and joins between them) against
//!    both side by side, always through `m0`: add a voter and list it
//!    unstarted (simple, table, JSON); a third voter refused (not enough
//!    started members); join it and list again; refusals (a voter
//!    promoted); add a learner and list it; refusals (a second learner, the
//!    unstarted learner promoted, a taken peer URL added and updated to, an
//!    unknown id removed, updated, promoted); join the learner (`endpoint status`
//!    shows it, `endpoint hashkv` is refused by it) and promote it once in
//!    sync; update a member to its own peer URL (simple and JSON output);
//!    `endpoint status`, `health` and `hashkv` with `--cluster`; remove the promoted member
//!    (it must stop by itself, exit 0, on both) and list what is left.
//!    Arguments name members by slot (`{peer 1}`, `{id 2}`), expanded per
//!    cluster.
//! 3. After each step the member ids are learned (MemberList over gRPC,
//!    matched to slots by peer URL) and the output is normalised by a
//!    [`ClusterNormalizer`]: ids, cluster id, ports, raft term and indexes,
//!    db sizes, durations, clientv3 log stamps; hashes by distinct value (so
//!    members must agree within each cluster); the leader column counted;
//!    id-ordered output sorted. Stdout, stderr and exit code must be equal.
//!    A step that does not do on etcd what it is meant to is a broken case
//!    and stops the test at once; differences against oxcd are collected
//!    and reported together at the end.
//! 4. etcd's strict reconfiguration check answers `etcdserver: unhealthy
//!    cluster` to an add, or to the removal of a voter, until `m0` has been
//!    connected to every peer for 5 s (and `re-configuration failed due to
//!    not enough started members` while a joined member has not published
//!    its name yet). Such steps are retried on each side, bounded, while
//!    that is the answer, and only the final outputs are compared; the
//!    learner's promotion is retried the same way while it is not in sync.
//!    Joins are followed by a bounded wait until MemberList shows every
//!    joined member started, and hashes are taken once every member has
//!    applied the last write.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use integration::Kind;
use integration::cluster::{Cluster, ClusterOpts};
use integration::cluster_ctl::{ClusterNormalizer, MemberIdentity};
use integration::etcdctl::{CtlOutput, run_etcdctl};
use proto::etcdserverpb::cluster_client::ClusterClient;
use proto::etcdserverpb::kv_client::KvClient;
use proto::etcdserverpb::{Member, MemberListRequest, RangeRequest};

/// Bound on one etcdctl run.
const CTL: Duration = Duration::from_secs(30);
/// Bound on retrying a step while its answer is transient, and on waiting
/// for members to start, catch up or stop.
const WAIT: Duration = Duration::from_secs(30);
/// Pause between two attempts of a retried step or two polls.
const POLL: Duration = Duration::from_millis(200);

/// Refusals of etcd's strict reconfiguration check that pass with time.
const RECONFIG_TRANSIENT: &[&str] = &[
    "etcdserver: unhealthy cluster",
    "etcdserver: re-configuration failed due to not enough started members",
];
/// The refusal of a promotion that passes once the learner caught up.
const NOT_IN_SYNC: &str =
    "etcdserver: can only promote a learner member which is in sync with leader";

/// What a step must do against etcd for the case to be meaningful.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// Exit 0.
    Ok,
    /// A non-zero exit with `Error: <message>` on stderr.
    Refused(&'static str),
}

/// One etcdctl invocation through `m0`, run against both clusters.
#[derive(Debug)]
struct Step {
    /// Arguments; `{peer N}` and `{id N}` are expanded per cluster.
    args: Vec<&'static str>,
    expect: Expect,
    /// Stdout is printed in member-id order: sort its lines.
    sort_lines: bool,
    /// Answers (substrings) on which the step is tried again.
    retry_while: &'static [&'static str],
}

fn ok(args: &[&'static str]) -> Step {
    Step {
        args: args.to_vec(),
        expect: Expect::Ok,
        sort_lines: false,
        retry_while: &[],
    }
}

fn refused(args: &[&'static str], message: &'static str) -> Step {
    Step {
        expect: Expect::Refused(message),
        ..ok(args)
    }
}

impl Step {
    fn sorted(self) -> Self {
        Step {
            sort_lines: true,
            ..self
        }
    }

    fn retried_while(self, answers: &'static [&'static str]) -> Self {
        Step {
            retry_while: answers,
            ..self
        }
    }

    fn label(&self) -> String {
        format!("etcdctl {}", self.args.join(" "))
    }
}

/// One cluster under test and what is known of its members.
struct Side {
    cluster: Cluster,
    cluster_id: u64,
    /// Member id per slot, for every member ever listed (a removed one
    /// keeps its id, so its removal still normalises).
    ids: BTreeMap<usize, u64>,
}

impl Side {
    /// A one-member cluster of `kind` with `extra` unstarted slots.
    async fn start(kind: Kind, extra: usize) -> Side {
        let opts = ClusterOpts {
            size: 1,
            ..ClusterOpts::default()
        };
        let mut cluster = Cluster::start(kind, opts)
            .await
            .unwrap_or_else(|e| panic!("{} one-member cluster: {e}", kind.name()));
        for _ in 0..extra {
            cluster.new_member().expect("member slot");
        }
        let status = cluster
            .status(0)
            .await
            .unwrap_or_else(|e| panic!("{} status: {e}", kind.name()));
        let header = status.header.unwrap_or_default();
        let mut side = Side {
            cluster,
            cluster_id: header.cluster_id,
            ids: BTreeMap::from([(0, header.member_id)]),
        };
        side.learn_ids().await;
        side
    }

    fn name(&self) -> &'static str {
        self.cluster.kind().name()
    }

    /// `m0`'s member table, over gRPC.
    async fn members(&self) -> Result<Vec<Member>, String> {
        let channel = self
            .cluster
            .channel(0)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let list = ClusterClient::new(channel)
            .member_list(MemberListRequest {})
            .await
            .map_err(|e| format!("MemberList: {e}"))?;
        Ok(list.into_inner().members)
    }

    /// Step 3 of the module doc: ids of the listed members, by slot.
    async fn learn_ids(&mut self) {
        let members = self
            .members()
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", self.name()));
        for m in members {
            let slot = (0..self.cluster.size()).find(|&i| {
                let url = self.cluster.peer_url(i);
                m.peer_ur_ls.contains(&url)
            });
            match slot {
                Some(i) => {
                    self.ids.insert(i, m.id);
                }
                None => panic!(
                    "{}: member {:x} {:?} is no slot of the test",
                    self.name(),
                    m.id,
                    m.peer_ur_ls
                ),
            }
        }
    }

    fn normalizer(&self) -> ClusterNormalizer {
        let members = (0..self.cluster.size())
            .map(|i| MemberIdentity {
                name: self.cluster.name(i).to_string(),
                id: self.ids.get(&i).copied(),
                client: self.cluster.client_addr(i),
                peer: self
                    .cluster
                    .peer_url(i)
                    .trim_start_matches("http://")
                    .to_string(),
            })
            .collect();
        ClusterNormalizer::new(self.cluster_id, members)
    }

    /// `arg` with `{peer N}` and `{id N}` replaced by slot N's peer URL and
    /// hex member id.
    fn expand(&self, arg: &str) -> String {
        let mut s = arg.to_string();
        for i in 0..self.cluster.size() {
            s = s.replace(&format!("{{peer {i}}}"), &self.cluster.peer_url(i));
            if let Some(id) = self.ids.get(&i) {
                s = s.replace(&format!("{{id {i}}}"), &format!("{id:x}"));
            }
        }
        assert!(!s.contains('{'), "{}: cannot expand {arg}", self.name());
        s
    }

    /// Runs `step` through `m0`, again while its answer is transient
    /// (bounded); the last output and the number of attempts.
    async fn run(&self, step: &Step) -> (CtlOutput, u32) {
        let args: Vec<String> = step.args.iter().map(|a| self.expand(a)).collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let started = Instant::now();
        let mut attempts = 0;
        loop {
            attempts += 1;
            let out = run_etcdctl(&self.cluster.client_addr(0), &args, None, CTL)
                .await
                .unwrap_or_else(|e| panic!("{}: {}: {e}", self.name(), step.label()));
            let transient = out.code != 0
                && step
                    .retry_while
                    .iter()
                    .any(|answer| out.stderr.contains(answer));
            if !transient || started.elapsed() >= WAIT {
                return (out, attempts);
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Starts slot `i` with `--initial-cluster-state existing`, joining
    /// `with`, and waits until `m0` lists it started (name published).
    async fn join(&mut self, i: usize, with: &[usize]) {
        let kind = self.name();
        self.cluster
            .join(i, with)
            .await
            .unwrap_or_else(|e| panic!("{kind}: m{i} joins: {e}"));
        let name = self.cluster.name(i).to_string();
        let started = Instant::now();
        loop {
            let last = match self.members().await {
                Ok(members) if members.iter().any(|m| m.name == name) => return,
                Ok(members) => format!("{members:?}"),
                Err(e) => e,
            };
            assert!(
                started.elapsed() < WAIT,
                "{kind}: {name} not listed started after {WAIT:?}: {last}"
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until every running member has applied `m0`'s latest revision,
    /// so `endpoint hashkv` hashes the same history everywhere.
    async fn settle(&mut self) {
        let mut kv = KvClient::new(self.cluster.channel(0).await.expect("channel"));
        let range = kv
            .range(RangeRequest {
                key: b"k".to_vec(),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("{}: linearizable range: {e}", self.name()));
        let revision = range.into_inner().header.unwrap_or_default().revision;
        for i in self.cluster.running() {
            self.cluster
                .wait_revision(i, revision, WAIT)
                .await
                .unwrap_or_else(|e| panic!("{}: {e}", self.name()));
        }
    }
}

fn render(out: &CtlOutput) -> String {
    format!(
        "exit {}\n--- stdout ---\n{}--- stderr ---\n{}",
        out.code, out.stdout, out.stderr
    )
}

/// Both clusters and the differences found so far.
struct Pair {
    etcd: Side,
    oxcd: Side,
    differences: Vec<String>,
    steps: usize,
}

impl Pair {
    /// Steps 2 and 3 of the module doc for one step.
    async fn check(&mut self, step: Step) {
        let ((etcd_raw, etcd_attempts), (oxcd_raw, oxcd_attempts)) =
            tokio::join!(self.etcd.run(&step), self.oxcd.run(&step));
        let meant = match step.expect {
            Expect::Ok => etcd_raw.code == 0,
            Expect::Refused(message) => {
                etcd_raw.code != 0 && etcd_raw.stderr.contains(&format!("Error: {message}"))
            }
        };
        assert!(
            meant,
            "broken case: `{}` against etcd should be {:?}, after {etcd_attempts} attempt(s):\n{}",
            step.label(),
            step.expect,
            render(&etcd_raw)
        );
        tokio::join!(self.etcd.learn_ids(), self.oxcd.learn_ids());
        let expected = self.etcd.normalizer().output(&etcd_raw, step.sort_lines);
        let actual = self.oxcd.normalizer().output(&oxcd_raw, step.sort_lines);
        println!(
            "## {} (attempts: etcd {etcd_attempts}, oxcd {oxcd_attempts})\n{}",
            step.label(),
            render(&expected)
        );
        for (kind, out) in [("etcd", &expected), ("oxcd", &actual)] {
            assert!(
                !out.stdout.contains("<hash 2>"),
                "{kind}: members' hashes differ:\n{}",
                render(out)
            );
        }
        self.steps += 1;
        if expected != actual {
            self.differences.push(format!(
                "`{}` differs\n===== etcd =====\n{}\n===== oxcd =====\n{}",
                step.label(),
                render(&expected),
                render(&actual)
            ));
        }
    }

    async fn join(&mut self, i: usize, with: &[usize]) {
        tokio::join!(self.etcd.join(i, with), self.oxcd.join(i, with));
    }

    async fn settle(&mut self) {
        tokio::join!(self.etcd.settle(), self.oxcd.settle());
    }

    /// Slot `i` was removed: it must stop by itself on both sides, as etcd's
    /// removed member does (exit 0).
    async fn removed_stops(&mut self, i: usize) {
        let (etcd, oxcd) = tokio::join!(
            self.etcd.cluster.wait_exit(i, WAIT),
            self.oxcd.cluster.wait_exit(i, WAIT)
        );
        assert_eq!(etcd, Some(0), "broken case: etcd's removed m{i} exit");
        if oxcd != etcd {
            self.differences.push(format!(
                "removed m{i}: etcd's exits with {etcd:?}, oxcd's with {oxcd:?}\n{}",
                self.oxcd.cluster.log_tail(i, 20)
            ));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_membership_prints_the_same_against_oxcd_and_etcd() {
    let started = Instant::now();
    let (etcd, oxcd) = tokio::join!(Side::start(Kind::Etcd, 2), Side::start(Kind::Oxcd, 2));
    let mut pair = Pair {
        etcd,
        oxcd,
        differences: Vec::new(),
        steps: 0,
    };
    let peer1 = "--peer-urls={peer 1}";
    let peer2 = "--peer-urls={peer 2}";
    let elsewhere = "--peer-urls=http://127.0.0.1:9";

    pair.check(ok(&["put", "k", "v"])).await;

    // A voter added, listed unstarted, joined.
    pair.check(ok(&["member", "add", "m1", peer1]).retried_while(RECONFIG_TRANSIENT))
        .await;
    pair.check(ok(&["member", "list"]).sorted()).await;
    pair.check(ok(&["member", "list", "-w", "table"])).await;
    pair.check(ok(&["member", "list", "-w", "json"])).await;
    pair.check(refused(
        &["member", "add", "m3", elsewhere],
        "etcdserver: re-configuration failed due to not enough started members",
    ))
    .await;
    pair.join(1, &[0]).await;
    pair.check(ok(&["member", "list", "-w", "table"])).await;
    pair.check(ok(&["member", "list", "-w", "json"])).await;
    pair.check(refused(
        &["member", "promote", "{id 1}"],
        "etcdserver: can only promote a learner member",
    ))
    .await;

    // A learner added and listed; what the cluster refuses meanwhile.
    pair.check(ok(&["member", "add", "m2", "--learner", peer2]).retried_while(RECONFIG_TRANSIENT))
        .await;
    pair.check(ok(&["member", "list", "-w", "table"])).await;
    pair.check(ok(&["member", "list", "-w", "json"])).await;
    pair.check(
        refused(
            &["member", "add", "m3", "--learner", elsewhere],
            "etcdserver: too many learner members in cluster",
        )
        .retried_while(RECONFIG_TRANSIENT),
    )
    .await;
    pair.check(refused(&["member", "promote", "{id 2}"], NOT_IN_SYNC))
        .await;
    pair.check(
        refused(
            &["member", "add", "dup", peer1],
            "etcdserver: Peer URLs already exists",
        )
        .retried_while(RECONFIG_TRANSIENT),
    )
    .await;
    pair.check(refused(
        &["member", "update", "{id 1}", "--peer-urls={peer 0}"],
        "etcdserver: Peer URLs already exists",
    ))
    .await;
    let not_found = "etcdserver: member not found";
    pair.check(refused(&["member", "remove", "2a"], not_found))
        .await;
    pair.check(refused(&["member", "update", "2a", elsewhere], not_found))
        .await;
    pair.check(refused(&["member", "promote", "2a"], not_found))
        .await;

    // The learner joins and is promoted once in sync.
    pair.join(2, &[0, 1]).await;
    pair.check(ok(&["member", "list", "-w", "table"])).await;
    pair.settle().await;
    pair.check(ok(&["endpoint", "status", "--cluster", "-w", "table"]))
        .await;
    pair.check(refused(
        &["endpoint", "hashkv", "--cluster", "-w", "table"],
        "etcdserver: rpc not supported for learner",
    ))
    .await;
    pair.check(ok(&["member", "promote", "{id 2}"]).retried_while(&[NOT_IN_SYNC]))
        .await;
    pair.check(ok(&["member", "list", "-w", "json"])).await;
    pair.check(ok(&["member", "update", "{id 1}", peer1])).await;
    pair.check(ok(&["member", "update", "{id 1}", peer1, "-w", "json"]))
        .await;
    pair.check(ok(&["member", "list", "-w", "table"])).await;

    // The whole cluster, through the member list.
    pair.check(ok(&["put", "k", "v2"])).await;
    pair.settle().await;
    pair.check(ok(&["endpoint", "status", "--cluster", "-w", "table"]))
        .await;
    pair.check(ok(&["endpoint", "health", "--cluster"]).sorted())
        .await;
    pair.check(ok(&["endpoint", "health", "--cluster", "-w", "table"]))
        .await;
    pair.check(ok(&["endpoint", "hashkv", "--cluster", "-w", "table"]))
        .await;
    pair.check(ok(&["endpoint", "hashkv", "--cluster", "-w", "json"]))
        .await;

    // The promoted member removed: it stops, the rest goes on.
    pair.check(ok(&["member", "remove", "{id 2}"]).retried_while(RECONFIG_TRANSIENT))
        .await;
    pair.removed_stops(2).await;
    pair.check(ok(&["member", "list"]).sorted()).await;
    pair.check(ok(&["endpoint", "status", "--cluster", "-w", "table"]))
        .await;
    pair.check(ok(&["endpoint", "hashkv", "--cluster", "-w", "table"]))
        .await;

    println!(
        "membership etcdctl: {} commands in {:?}",
        pair.steps,
        started.elapsed()
    );
    assert!(
        pair.differences.is_empty(),
        "{} of {} steps differ between etcd and oxcd:\n\n{}",
        pair.differences.len(),
        pair.steps,
        pair.differences.join("\n\n")
    );
}
