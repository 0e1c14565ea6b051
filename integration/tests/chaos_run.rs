//! `make chaos` in `make test`: the chaos runner ([`integration::chaos`])
//! called in-process, as the `oxcd-chaos` binary calls it.
//!
//! 1. `a_short_seeded_chaos_run_passes`: a 20 s run (`OXCD_CHAOS_SECS`)
//!    of the seeded fault schedule (`OXCD_SEED`, printed) against three
//!    members with `--enable-chaos`, under recorded KV clients, watchers
//!    and kept-alive leases; the report (schedule, timeline, verdict) is
//!    printed and must say PASS.
//! 2. `a_planted_lost_write_fails_the_verdict`: the same runner with the
//!    planted bug `lose-writes` on the leader two seconds in, under a fixed
//!    list of faults that leave that member's process running (a crash or
//!    a failed fsync there would take the bug with it before it fired, and
//!    raft would replay the puts correctly): that member
//!    answers five puts as applied but stores them under another key. The
//!    verdict must be FAIL, for that reason: acknowledged writes missing
//!    (on the planted member, or on the others: once a lost put changes a
//!    key's mod revision there, a compare-and-put can succeed on that
//!    member alone, and from then on its revisions differ from theirs),
//!    and the members disagreeing (their HashKV, or the planted member
//!    never reaching the run's last revision).
//!
//! The two runs take turns (one lock): each starts three members on a
//! machine of two cores. Every wait inside the runner is bounded; the only
//! sleeps are the fault hold times drawn from the seed.

use std::time::Duration;

use integration::chaos::{
    self, Action, ChaosOpts, ChaosReport, Check, PlannedFault, PlantOpts, Role,
};
use integration::{env_usize, seed_from_env};

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn run(opts: &ChaosOpts) -> ChaosReport {
    println!(
        "chaos: seed {} (replay with OXCD_SEED={} or make chaos SEED={} DURATION={}s)",
        opts.seed,
        opts.seed,
        opts.seed,
        opts.duration.as_secs()
    );
    let report = chaos::run(opts)
        .await
        .unwrap_or_else(|e| panic!("the chaos run could not be carried out: {e}"));
    println!("{report}");
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_seeded_chaos_run_passes() {
    let _turn = SERIAL.lock().await;
    let seconds = env_usize("OXCD_CHAOS_SECS", 20) as u64;
    let opts = ChaosOpts::new(seed_from_env(), Duration::from_secs(seconds));
    let report = run(&opts).await;
    assert!(
        report.timeline.iter().any(|e| e.member.is_some()),
        "no fault was injected"
    );
    assert!(report.passed(), "seed {}: {}", opts.seed, report.verdict());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planted_lost_write_fails_the_verdict() {
    let _turn = SERIAL.lock().await;
    let mut opts = ChaosOpts::new(seed_from_env(), Duration::from_secs(8));
    opts.plant = Some(PlantOpts {
        bug: "lose-writes".to_string(),
        count: 5,
        after: Duration::from_secs(2),
        role: Role::Leader,
    });
    opts.porcupine_timeout = Duration::from_secs(10);
    let fault = |at_ms, role, action| PlannedFault {
        at: Duration::from_millis(at_ms),
        role,
        action,
        hold: Duration::from_millis(1_500),
        gap: Duration::from_millis(500),
    };
    opts.plan = Some(vec![
        fault(0, Role::Follower(0), Action::KillActor("watch")),
        fault(2_000, Role::Follower(1), Action::Delay { delay_ms: 20 }),
        fault(4_000, Role::Leader, Action::KillActor("transport")),
    ]);
    let report = run(&opts).await;
    assert!(!report.passed(), "the planted bug went unnoticed");

    let planted = report
        .timeline
        .iter()
        .find(|e| e.action.starts_with("plant-bug lose-writes"))
        .and_then(|e| e.member.clone())
        .unwrap_or_else(|| panic!("the bug was not planted: {}", report.verdict()));
    // The lost puts show as acknowledged writes missing: on the planted
    // member, or, once a lost put made a compare-and-put there succeed
    // alone, on the others (the planted member then answers with its own
    // revisions and may never reach the run's last one).
    let lost = report.failures_of(Check::AckedWrites);
    assert!(
        lost.iter()
            .any(|f| f.detail.contains("is missing at its revision")),
        "no acknowledged write reported missing: {}",
        report.verdict()
    );
    // And the members no longer agree, the planted one among them.
    let disagree = report.failures_of(Check::MembersAgree);
    assert!(
        disagree
            .iter()
            .any(|f| f.detail.starts_with("HashKV at revision") || f.detail.contains(&planted)),
        "the members agreed, or {planted} was not named: {}",
        report.verdict()
    );
}
