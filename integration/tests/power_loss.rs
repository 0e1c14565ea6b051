//! Power-loss tests: a power cut under write load loses nothing that was
//! acknowledged. A power cut is simulated by `integration::power_loss`: the
//! server runs under an `LD_PRELOAD` shim that journals what each write to
//! its data dir replaces; after `kill -9`, every write since each file's
//! last completed fsync is undone (its module doc says what that does not
//! model).
//!
//! 1. `the_shim_undoes_exactly_what_was_not_fsynced`: the shim and the
//!    rollback on `dd` (coreutils) writing one file: a plain write is undone,
//!    one followed by `fdatasync` is kept, an `O_DSYNC` write is kept while
//!    a later plain write over it is undone, a truncation is undone.
//! 2. `a_power_cut_of_one_member_loses_no_acknowledged_write`: one member,
//!    `CYCLES` times:
//!    - restart it under the shim; `WRITERS` clients (one connection each)
//!      run a seeded mix of puts, compare-and-put txns and put-then-delete
//!      pairs on keys of their own, recording every acknowledged write;
//!    - once a seeded number of writes are acknowledged, cut the power:
//!      kill -9 while writes are in flight, then roll every file back to its
//!      last fsync;
//!    - restart without the shim, then check every write acknowledged so
//!      far: revisions unique, the store's revision at or above the highest
//!      acknowledged one, every put readable at its revision and each key's
//!      latest value its last acknowledged put or a newer one that was in
//!      flight at a cut (`integration::acks`), deleted keys absent from their
//!      delete's revision on, and a new put above every revision seen.
//!
//!    The rollback's counts and the MVCC store's applied index before and
//!    after it are printed. So that the test cannot pass without cutting
//!    anything, at least one cut must have undone writes of the MVCC env and
//!    taken its applied index back: it runs with `MDB_NOMETASYNC`, so its
//!    last commit's meta page is not synced when the power goes (the raft
//!    log replays that commit).
//! 3. `a_power_cut_of_every_member_loses_no_acknowledged_write`: the same on
//!    three members, writers spread over all of them, every member cut at
//!    the same moment (`CLUSTER_CYCLES` times); after the restart each
//!    member, once caught up, serves every acknowledged write from its own
//!    store.
//!
//! The seed is printed; `OXCD_SEED` replays it. Tests 2 and 3 take turns
//! (one lock): the machine has two cores.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use integration::acks::{Ledger, ReadMode};
use integration::cluster::{Cluster, ClusterOpts};
use integration::power_loss::{MvccState, PowerCut, Rollback, mvcc_state};
use integration::{Kind, Server, ServerOpts, seed_from_env};
use proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use proto::etcdserverpb::kv_client::KvClient;
use proto::etcdserverpb::request_op::Request;
use proto::etcdserverpb::{
    Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

const CYCLES: usize = 3;
const CLUSTER_CYCLES: usize = 2;
const WRITERS: usize = 4;
const KEYS_PER_WRITER: usize = 8;
/// The cut comes once this many writes (drawn per cycle) are acknowledged.
const CUT_AFTER_ACKS: std::ops::RangeInclusive<usize> = 50..=400;
/// Upper bound on operations per writer per cycle (the cut comes first).
const MAX_OPS_PER_WRITER: usize = 100_000;
const RPC_TIMEOUT: Duration = Duration::from_secs(10);
const ACK_DEADLINE: Duration = Duration::from_secs(60);
/// Bound on a member catching up after the restart.
const CATCH_UP: Duration = Duration::from_secs(30);
/// The MVCC env's file, relative to a data dir.
const MVCC_FILE: &str = "member/kv/data.mdb";

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A key put, then deleted (the delete acknowledged or in flight at a cut).
#[derive(Debug, Clone)]
struct Deletion {
    key: Vec<u8>,
    value: Vec<u8>,
    put_revision: i64,
    /// `None`: the delete was in flight at the cut (may or may not apply).
    delete_revision: Option<i64>,
}

/// What the writers saw acknowledged, over every cycle so far.
#[derive(Debug, Default)]
struct History {
    /// Puts (plain and in txns).
    ledger: Ledger,
    deletions: Vec<Deletion>,
    /// Every acknowledged revision, with what got it.
    revisions: Vec<(i64, String)>,
}

impl History {
    fn extend(&mut self, other: History) {
        self.ledger.extend(other.ledger);
        self.deletions.extend(other.deletions);
        self.revisions.extend(other.revisions);
    }

    fn max_revision(&self) -> i64 {
        self.revisions.iter().map(|(r, _)| *r).max().unwrap_or(0)
    }

    /// No revision acknowledged twice: nothing applied twice.
    fn unique_revisions(&self) -> Result<(), String> {
        let mut seen: HashMap<i64, &str> = HashMap::new();
        for (revision, what) in &self.revisions {
            if let Some(other) = seen.insert(*revision, what) {
                return Err(format!(
                    "revision {revision} acknowledged twice: {other} and {what}"
                ));
            }
        }
        Ok(())
    }
}

/// One writer's cycle.
#[derive(Debug, Default)]
struct WriterLog {
    history: History,
    /// A failure while the server was meant to be up.
    error_while_up: Option<String>,
    /// An answer that was wrong whenever it came (a failed compare).
    wrong: Option<String>,
}

/// Why a writer stopped.
enum Stop {
    /// No answer or an error: the write may or may not apply.
    Failed(String),
    /// An answer that shows lost state.
    Wrong(String),
}

struct Shared {
    acked: AtomicUsize,
    target: usize,
    reached: Notify,
    cutting: AtomicBool,
}

async fn call<T>(
    what: &str,
    rpc: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T, String> {
    match tokio::time::timeout(RPC_TIMEOUT, rpc).await {
        Ok(Ok(resp)) => Ok(resp.into_inner()),
        Ok(Err(status)) => Err(format!("{what}: {:?}: {}", status.code(), status.message())),
        Err(_) => Err(format!("{what}: timed out after {RPC_TIMEOUT:?}")),
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A put of `key` = `value`, in a txn comparing `key`'s mod revision with
/// `expected` when given; its revision.
async fn put(
    kv: &mut KvClient<Channel>,
    key: &[u8],
    value: &[u8],
    expected: Option<i64>,
) -> Result<i64, Stop> {
    let put = PutRequest {
        key: key.to_vec(),
        value: value.to_vec(),
        ..Default::default()
    };
    let Some(mod_revision) = expected else {
        let resp = call("put", kv.put(put)).await.map_err(Stop::Failed)?;
        return resp
            .header
            .map(|h| h.revision)
            .ok_or_else(|| Stop::Wrong("put response without header".into()));
    };
    let txn = TxnRequest {
        compare: vec![Compare {
            result: CompareResult::Equal as i32,
            target: CompareTarget::Mod as i32,
            key: key.to_vec(),
            target_union: Some(TargetUnion::ModRevision(mod_revision)),
            ..Default::default()
        }],
        success: vec![RequestOp {
            request: Some(Request::RequestPut(put)),
        }],
        ..Default::default()
    };
    let resp = call("txn", kv.txn(txn)).await.map_err(Stop::Failed)?;
    if !resp.succeeded {
        return Err(Stop::Wrong(format!(
            "txn: {} no longer has its acknowledged mod revision {mod_revision}",
            text(key)
        )));
    }
    resp.header
        .map(|h| h.revision)
        .ok_or_else(|| Stop::Wrong("txn response without header".into()))
}

/// A delete of `key`, which holds one value; its revision.
async fn delete(kv: &mut KvClient<Channel>, key: &[u8]) -> Result<i64, Stop> {
    let req = DeleteRangeRequest {
        key: key.to_vec(),
        ..Default::default()
    };
    let resp = call("delete", kv.delete_range(req))
        .await
        .map_err(Stop::Failed)?;
    if resp.deleted != 1 {
        return Err(Stop::Wrong(format!(
            "delete of {} deleted {} keys, not 1",
            text(key),
            resp.deleted
        )));
    }
    resp.header
        .map(|h| h.revision)
        .ok_or_else(|| Stop::Wrong("delete response without header".into()))
}

/// Seeded writes until the first failure (step 2 of the module doc).
async fn writer(
    mut kv: KvClient<Channel>,
    id: usize,
    cycle: usize,
    seed: u64,
    shared: Arc<Shared>,
) -> WriterLog {
    let mut rng = StdRng::seed_from_u64(seed ^ ((cycle as u64) << 32) ^ id as u64);
    let mut log = WriterLog::default();
    let mut last_put: HashMap<usize, i64> = HashMap::new();
    for seq in 0..MAX_OPS_PER_WRITER {
        let value = format!("c{cycle}-w{id}-s{seq}").into_bytes();
        let n = rng.gen_range(0..KEYS_PER_WRITER);
        let key = format!("pl/c{cycle}/w{id}/k{n}").into_bytes();
        let history = &mut log.history;
        let outcome = match rng.gen_range(0..10) {
            1 => {
                let key = format!("pl/c{cycle}/w{id}/d{seq}").into_bytes();
                match put(&mut kv, &key, &value, None).await {
                    Err(stop) => Err(stop),
                    Ok(put_revision) => {
                        history
                            .revisions
                            .push((put_revision, format!("put {}", text(&key))));
                        let deleted = delete(&mut kv, &key).await;
                        let delete_revision = deleted.as_ref().ok().copied();
                        if let Some(revision) = delete_revision {
                            history
                                .revisions
                                .push((revision, format!("delete {}", text(&key))));
                        }
                        history.deletions.push(Deletion {
                            key,
                            value: value.clone(),
                            put_revision,
                            delete_revision,
                        });
                        deleted.map(|_| 2)
                    }
                }
            }
            // One in ten: a compare-and-put txn on the key's last revision.
            choice => {
                let (expected, what) = if choice == 0 {
                    (Some(last_put.get(&n).copied().unwrap_or(0)), "txn")
                } else {
                    (None, "put")
                };
                put(&mut kv, &key, &value, expected)
                    .await
                    .map(|revision| {
                        last_put.insert(n, revision);
                        history.ledger.ack(key.clone(), value.clone(), revision);
                        history
                            .revisions
                            .push((revision, format!("{what} {}", text(&key))));
                        1
                    })
                    .inspect_err(|_| history.ledger.maybe(key, value.clone()))
            }
        };
        match outcome {
            Ok(acks) => {
                let before = shared.acked.fetch_add(acks, Ordering::SeqCst);
                if before < shared.target && before + acks >= shared.target {
                    shared.reached.notify_one();
                }
            }
            Err(Stop::Failed(e)) => {
                if !shared.cutting.load(Ordering::SeqCst) {
                    log.error_while_up = Some(format!("writer {id} op {seq}: {e}"));
                }
                break;
            }
            Err(Stop::Wrong(e)) => {
                log.wrong = Some(format!("writer {id} op {seq}: {e}"));
                break;
            }
        }
    }
    log
}

/// The writers of one cycle.
struct Load {
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<WriterLog>>,
}

impl Load {
    /// Starts one writer per client; the cut is due after `target` acks.
    fn start(clients: Vec<KvClient<Channel>>, cycle: usize, seed: u64, target: usize) -> Load {
        let shared = Arc::new(Shared {
            acked: AtomicUsize::new(0),
            target,
            reached: Notify::new(),
            cutting: AtomicBool::new(false),
        });
        let tasks = clients
            .into_iter()
            .enumerate()
            .map(|(id, kv)| tokio::spawn(writer(kv, id, cycle, seed, shared.clone())))
            .collect();
        Load { shared, tasks }
    }

    /// Waits (bounded) for the target, then marks the cut as begun: the
    /// caller kills the server(s) next.
    async fn wait_for_cut(&self, cycle: usize) {
        let reached = tokio::time::timeout(ACK_DEADLINE, self.shared.reached.notified()).await;
        self.shared.cutting.store(true, Ordering::SeqCst);
        assert!(
            reached.is_ok(),
            "cycle {cycle}: only {} of {} writes acknowledged within {ACK_DEADLINE:?}",
            self.shared.acked.load(Ordering::SeqCst),
            self.shared.target
        );
    }

    /// After the cut: every writer's history, checked for failures.
    async fn finish(self, cycle: usize) -> (History, usize) {
        let mut history = History::default();
        for task in self.tasks {
            let log = tokio::time::timeout(RPC_TIMEOUT * 2, task)
                .await
                .expect("writer did not stop after the cut")
                .expect("writer task panicked");
            assert!(log.wrong.is_none(), "cycle {cycle}: {:?}", log.wrong);
            assert!(
                log.error_while_up.is_none(),
                "cycle {cycle}: a write failed before the cut: {:?}",
                log.error_while_up
            );
            history.extend(log.history);
        }
        (history, self.shared.acked.load(Ordering::SeqCst))
    }
}

/// `key`'s value and mod revision at `revision` (0: latest).
async fn read(
    kv: &mut KvClient<Channel>,
    key: &[u8],
    revision: i64,
    mode: ReadMode,
) -> Result<Option<(Vec<u8>, i64)>, String> {
    let req = RangeRequest {
        key: key.to_vec(),
        revision,
        serializable: mode == ReadMode::Serializable,
        ..Default::default()
    };
    let resp = call(&format!("range {} at {revision}", text(key)), kv.range(req)).await?;
    Ok(resp
        .kvs
        .into_iter()
        .next()
        .map(|kv| (kv.value, kv.mod_revision)))
}

/// Every acknowledged put and delete, read back through `kv`.
async fn verify(
    kv: &mut KvClient<Channel>,
    history: &History,
    mode: ReadMode,
) -> Result<(), String> {
    history.ledger.verify(kv, mode, RPC_TIMEOUT).await?;
    for d in &history.deletions {
        let key = text(&d.key);
        let put = read(kv, &d.key, d.put_revision, mode).await?;
        if put != Some((d.value.clone(), d.put_revision)) {
            return Err(format!(
                "{key}, put at {} before its delete, reads {put:?} there",
                d.put_revision
            ));
        }
        let latest = read(kv, &d.key, 0, mode).await?;
        match d.delete_revision {
            Some(revision) => {
                let at_delete = read(kv, &d.key, revision, mode).await?;
                if latest.is_some() || at_delete.is_some() {
                    return Err(format!(
                        "{key}, deleted at {revision} (acknowledged), reads {at_delete:?} there and {latest:?} now"
                    ));
                }
            }
            None if latest.is_none() || latest == put => {}
            None => {
                return Err(format!(
                    "{key}, put then maybe deleted, now reads {latest:?}"
                ));
            }
        }
    }
    Ok(())
}

/// Step 2's checks through `kv` (which reads through raft); returns the
/// revision of a fresh put, above everything before it.
async fn check_after_restart(kv: &mut KvClient<Channel>, cycle: usize, history: &History) -> i64 {
    if let Err(e) = history.unique_revisions() {
        panic!("cycle {cycle}: {e}");
    }
    let max_acked = history.max_revision();
    let range = RangeRequest {
        key: b"pl/".to_vec(),
        ..Default::default()
    };
    let current = call("range", kv.range(range))
        .await
        .unwrap_or_else(|e| panic!("cycle {cycle}: {e}"))
        .header
        .map_or(0, |h| h.revision);
    assert!(
        current >= max_acked,
        "cycle {cycle}: store revision {current} is behind acknowledged revision {max_acked}"
    );
    if let Err(e) = verify(kv, history, ReadMode::Linearizable).await {
        panic!("cycle {cycle}: {e}");
    }
    let fresh = put(kv, format!("pl/after-{cycle}").as_bytes(), b"x", None)
        .await
        .unwrap_or_else(|_| panic!("cycle {cycle}: put after restart failed"));
    assert!(
        fresh > current,
        "cycle {cycle}: a new put got revision {fresh}, not above {current}"
    );
    fresh
}

/// What one rollback did to one member's MVCC env.
#[derive(Debug, Clone, Copy)]
struct MvccCut {
    /// Changes of the MVCC file undone.
    undone: usize,
    before: MvccState,
    after: MvccState,
}

impl MvccCut {
    fn went_back(&self) -> bool {
        self.after.applied_index < self.before.applied_index
    }
}

/// Reads the MVCC state of `cut`'s data dir, rolls the data dir back, reads
/// the state again, and says what happened.
fn roll_back(cut: &PowerCut, who: &str) -> (MvccCut, String) {
    let state = |when: &str| -> MvccState {
        mvcc_state(cut.data_dir()).unwrap_or_else(|e| panic!("{who}: MVCC state {when}: {e}"))
    };
    let before = state("before the rollback");
    let rollback = cut
        .roll_back()
        .unwrap_or_else(|e| panic!("{who}: roll back: {e}"));
    let after = state("after the rollback");
    let summary = format!(
        "{who}: {rollback}; MVCC applied index {} -> {}, revision {} -> {}",
        before.applied_index, after.applied_index, before.revision, after.revision
    );
    let mvcc = MvccCut {
        undone: rollback.undone_in(MVCC_FILE),
        before,
        after,
    };
    (mvcc, summary)
}

/// The test fails unless some cut undid MVCC writes and took its applied
/// index back (module doc, step 2): otherwise it could pass vacuously.
fn assert_some_cut_took_effect(cuts: &[MvccCut]) {
    let undone: Vec<usize> = cuts.iter().map(|c| c.undone).collect();
    println!(
        "power_loss: MVCC writes undone per cut {undone:?}; applied index went back at {} of {} cuts",
        cuts.iter().filter(|c| c.went_back()).count(),
        cuts.len()
    );
    assert!(
        cuts.iter().any(|c| c.undone > 0 && c.went_back()),
        "no cut undid a write of {MVCC_FILE} and took its applied index back \
         ({cuts:?}): with MDB_NOMETASYNC the last commit's meta page is never \
         synced when the power goes, so the shim or the rollback is not doing \
         its job (or the MVCC env's durability changed: revisit this check)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_power_cut_of_one_member_loses_no_acknowledged_write() {
    let _turn = SERIAL.lock().await;
    let seed = seed_from_env();
    println!("power_loss: seed {seed} (OXCD_SEED={seed} replays it)");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut server = Server::start(Kind::Oxcd, ServerOpts::default())
        .await
        .unwrap_or_else(|e| panic!("start oxcd: {e}"));
    let cut = PowerCut::new(&server.data_dir()).unwrap_or_else(|e| panic!("power cut: {e}"));
    let mut history = History::default();
    let mut mvcc_cuts = Vec::new();
    for cycle in 0..CYCLES {
        server.set_env(cut.env());
        server
            .restart()
            .await
            .unwrap_or_else(|e| panic!("cycle {cycle}: restart under the shim: {e}"));
        let target = rng.gen_range(CUT_AFTER_ACKS);
        let mut clients = Vec::new();
        for _ in 0..WRITERS {
            clients.push(server.kv().await.expect("connect a writer"));
        }
        let load = Load::start(clients, cycle, seed, target);
        load.wait_for_cut(cycle).await;
        server.kill9().expect("kill -9");
        let (cycle_history, acked) = load.finish(cycle).await;
        let (mvcc, summary) = roll_back(&cut, "oxcd");
        mvcc_cuts.push(mvcc);

        server.set_env(Vec::new());
        server
            .restart()
            .await
            .unwrap_or_else(|e| panic!("cycle {cycle}: restart after the power cut: {e}"));
        let floor = history.max_revision();
        let below: Vec<_> = cycle_history
            .revisions
            .iter()
            .filter(|(r, _)| *r <= floor)
            .collect();
        assert!(
            below.is_empty(),
            "cycle {cycle}: acknowledged at or below the previous cycles' {floor}: {below:?}"
        );
        history.extend(cycle_history);
        let mut kv = server.kv().await.expect("connect after restart");
        let fresh = check_after_restart(&mut kv, cycle, &history).await;
        history
            .revisions
            .push((fresh, format!("put pl/after-{cycle}")));
        println!(
            "power_loss: cycle {cycle}: cut after {acked} writes acknowledged (target {target}); \
             {summary}; {} puts and {} deletions verified; new put at revision {fresh}",
            history.ledger.acks().len(),
            history.deletions.len()
        );
    }
    assert_some_cut_took_effect(&mvcc_cuts);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_power_cut_of_every_member_loses_no_acknowledged_write() {
    let _turn = SERIAL.lock().await;
    let seed = seed_from_env();
    println!("power_loss cluster: seed {seed} (OXCD_SEED={seed} replays it)");
    let mut rng = StdRng::seed_from_u64(seed ^ 0xC1);
    let mut cluster = Cluster::start(Kind::Oxcd, ClusterOpts::default())
        .await
        .unwrap_or_else(|e| panic!("start the cluster: {e}"));
    let cuts: Vec<PowerCut> = (0..cluster.size())
        .map(|i| PowerCut::new(&cluster.data_dir(i)).unwrap_or_else(|e| panic!("power cut: {e}")))
        .collect();
    let mut history = History::default();
    let mut mvcc_cuts = Vec::new();
    for cycle in 0..CLUSTER_CYCLES {
        for (i, cut) in cuts.iter().enumerate() {
            cluster.kill9(i).expect("kill -9 before the shim");
            cluster.set_env(i, cut.env());
        }
        cluster
            .restart_all()
            .await
            .unwrap_or_else(|e| panic!("cycle {cycle}: restart under the shim: {e}"));
        let target = rng.gen_range(CUT_AFTER_ACKS);
        let mut clients = Vec::new();
        for w in 0..WRITERS {
            let member = w % cluster.size();
            clients.push(cluster.kv(member).await.expect("connect a writer"));
        }
        let load = Load::start(clients, cycle, seed, target);
        load.wait_for_cut(cycle).await;
        for i in 0..cluster.size() {
            cluster.kill9(i).expect("kill -9");
        }
        let (cycle_history, acked) = load.finish(cycle).await;
        let mut summaries = Vec::new();
        for (i, cut) in cuts.iter().enumerate() {
            let (mvcc, summary) = roll_back(cut, cluster.name(i));
            mvcc_cuts.push(mvcc);
            summaries.push(summary);
            cluster.set_env(i, Vec::new());
        }
        cluster
            .restart_all()
            .await
            .unwrap_or_else(|e| panic!("cycle {cycle}: restart after the power cut: {e}"));
        history.extend(cycle_history);
        let mut kv = cluster.kv(0).await.expect("connect after restart");
        let fresh = check_after_restart(&mut kv, cycle, &history).await;
        history
            .revisions
            .push((fresh, format!("put pl/after-{cycle}")));
        for i in 0..cluster.size() {
            cluster
                .wait_revision(i, fresh, CATCH_UP)
                .await
                .unwrap_or_else(|e| panic!("cycle {cycle}: catch up: {e}"));
            let mut kv = cluster.kv(i).await.expect("connect to a member");
            if let Err(e) = verify(&mut kv, &history, ReadMode::Serializable).await {
                panic!("cycle {cycle}: {} from its own store: {e}", cluster.name(i));
            }
        }
        println!(
            "power_loss cluster: cycle {cycle}: cut after {acked} writes acknowledged (target {target}); \
             {}; {} puts and {} deletions verified on every member",
            summaries.join("; "),
            history.ledger.acks().len(),
            history.deletions.len()
        );
    }
    assert_some_cut_took_effect(&mvcc_cuts);
}

/// Runs `dd` under `cut`'s shim with `args`, writing `input` (a file).
fn dd(cut: &PowerCut, input: &Path, args: &[&str]) {
    let status = Command::new("dd")
        .arg(format!("if={}", input.display()))
        .args(args)
        .arg("status=none")
        .envs(cut.env())
        .stdin(Stdio::null())
        .status()
        .expect("run dd");
    assert!(status.success(), "dd {args:?}: {status}");
}

#[test]
fn the_shim_undoes_exactly_what_was_not_fsynced() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let file = data.join("f");
    let block = |c: u8| vec![c; 4096];
    std::fs::write(&file, [block(b'a'), block(b'a')].concat()).unwrap();
    let inputs: Vec<_> = [b'B', b'C', b'D']
        .iter()
        .map(|&c| {
            let path = dir.path().join(format!("{}", c as char));
            std::fs::write(&path, block(c)).unwrap();
            path
        })
        .collect();
    let cut = PowerCut::new(&data).unwrap();
    let of = format!("of={}", file.display());
    let content = || std::fs::read(&file).unwrap();
    let undone = |rollback: &Rollback| rollback.undone_in("f");

    // A plain write of the second block: undone.
    dd(
        &cut,
        &inputs[0],
        &[&of, "bs=4096", "seek=1", "conv=notrunc"],
    );
    assert_eq!(content(), [block(b'a'), block(b'B')].concat());
    let rollback = cut.roll_back().unwrap();
    assert_eq!(undone(&rollback), 1, "{rollback}");
    assert_eq!(content(), [block(b'a'), block(b'a')].concat());

    // The same followed by fdatasync: kept.
    dd(
        &cut,
        &inputs[0],
        &[&of, "bs=4096", "seek=1", "conv=notrunc,fdatasync"],
    );
    assert_eq!(cut.roll_back().unwrap(), Rollback::default());
    assert_eq!(content(), [block(b'a'), block(b'B')].concat());

    // 1 KiB through O_DSYNC, then a plain write of the whole first block:
    // the plain write is undone, the durable KiB stays.
    dd(
        &cut,
        &inputs[1],
        &[&of, "bs=1024", "count=1", "conv=notrunc", "oflag=dsync"],
    );
    dd(
        &cut,
        &inputs[2],
        &[&of, "bs=4096", "count=1", "conv=notrunc"],
    );
    let rollback = cut.roll_back().unwrap();
    let f = rollback.file("f").expect("f rolled back");
    assert_eq!((f.undone, f.kept), (1, 1), "{rollback}");
    let mut first = vec![b'C'; 1024];
    first.extend_from_slice(&[b'a'; 3072]);
    assert_eq!(content(), [first.clone(), block(b'B')].concat());

    // A truncation to one block (dd without notrunc): undone, length and all.
    dd(&cut, Path::new("/dev/null"), &[&of, "bs=4096", "seek=1"]);
    assert_eq!(content().len(), 4096);
    cut.roll_back().unwrap();
    assert_eq!(content(), [first, block(b'B')].concat());
}
