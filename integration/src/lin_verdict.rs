//! The verdict on a recorded history: the witness checker of
//! [`crate::lin_check`] decides; porcupine-rs gives a second opinion only
//! where it can add one.
//!
//! 1. [`lin_check::check`] builds the order etcd's revisions allow and
//!    verifies it (seconds at most, deterministic). A linearizable verdict
//!    carries that order, replayed through the model and checked against
//!    real time: that is a proof, so porcupine is not run.
//! 2. On a violation, porcupine-rs searches the same history against the
//!    same model ([`EtcdKv`]) *without* visualisation info
//!    (`check_operations_timeout`), so that running out of time answers
//!    `Unknown`. (With info, porcupine-rs 0.3.0 answers `Illegal` for a
//!    search it killed at its deadline: that is how a slow check was once
//!    reported as a violation.) `Illegal` confirms the violation; `Unknown`
//!    leaves the witness checker's violation standing, marked unconfirmed.
//! 3. Only a confirmed violation is drawn: porcupine runs again with info
//!    and writes its HTML visualisation to the path asked for.
//! 4. When the witness checker is undecided (put values not unique per key,
//!    or its search budget spent), porcupine's answer is the verdict; if it
//!    runs out of time too, the verdict is [`Outcome::TimedOut`], which says
//!    so and never claims the history is not linearizable.
//! 5. If porcupine finds a linearization where the witness checker found a
//!    violation, the two disagree and one of them is wrong: the verdict is
//!    [`Outcome::CheckersDisagree`], with both answers.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use porcupine_rs::{CheckResult, Model, Operation};

use crate::lin::{self, Op, Request, Response};
use crate::lin_check::{self, Verdict};

/// porcupine-rs's view of the etcd model in [`crate::lin`].
#[derive(Clone, Debug)]
pub struct EtcdKv;

impl Model for EtcdKv {
    type State = lin::State;
    type Op = (Request, Response);
    type Metadata = ();

    fn init() -> lin::State {
        lin::State::initial()
    }

    fn step(state: &lin::State, op: &(Request, Response)) -> (bool, lin::State) {
        match lin::step(state, &op.0, &op.1) {
            Some(next) => (true, next),
            None => (false, state.clone()),
        }
    }

    fn describe_operation(op: &(Request, Response)) -> String {
        format!("{} -> {}", op.0, op.1)
    }
}

/// `history` as porcupine-rs operations.
pub fn to_operations(history: &[Op]) -> Vec<Operation<EtcdKv>> {
    history
        .iter()
        .map(|op| Operation {
            client_id: Some(op.client),
            call_time: op.call,
            return_time: op.ret,
            op: (op.request.clone(), op.response.clone()),
            metadata: None,
        })
        .collect()
}

/// How [`judge`] runs the second opinion.
#[derive(Debug, Clone)]
pub struct JudgeOpts {
    /// Bound on each porcupine-rs search.
    pub porcupine_timeout: Duration,
    /// Where to write porcupine's visualisation of a confirmed violation.
    pub visualisation: Option<PathBuf>,
}

impl Default for JudgeOpts {
    fn default() -> Self {
        JudgeOpts {
            porcupine_timeout: Duration::from_secs(60),
            visualisation: None,
        }
    }
}

/// What [`judge`] concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Linearizable,
    NotLinearizable,
    /// Neither checker decided within its limits.
    TimedOut,
    /// The witness checker found a violation, porcupine a linearization.
    CheckersDisagree,
}

/// The outcome, why, and one line per checker run with its time.
#[derive(Debug, Clone)]
pub struct Judgement {
    pub outcome: Outcome,
    /// The reason, naming operations (empty when linearizable).
    pub detail: String,
    /// One line per checker run: what it answered and how long it took.
    pub report: Vec<String>,
}

impl Judgement {
    /// `Ok` when linearizable, else the text to fail with.
    pub fn result(&self) -> Result<(), String> {
        match self.outcome {
            Outcome::Linearizable => Ok(()),
            Outcome::NotLinearizable => {
                Err(format!("history is not linearizable: {}", self.detail))
            }
            Outcome::TimedOut => Err(format!(
                "linearizability check timed out (this says nothing about the history): {}",
                self.detail
            )),
            Outcome::CheckersDisagree => Err(format!(
                "the linearizability checkers disagree, so one of them is wrong: {}",
                self.detail
            )),
        }
    }
}

/// Decides whether `history` is linearizable (steps 1 to 5 of the module
/// doc).
pub fn judge(history: &[Op], opts: &JudgeOpts) -> Judgement {
    let started = Instant::now();
    let verdict = lin_check::check(history);
    let took = started.elapsed();
    let mut report = Vec::new();
    let witness_line = match &verdict {
        Verdict::Linearizable(w) => format!(
            "linearizable ({} maybe-applied writes applied, {} not)",
            w.applied.len(),
            w.unapplied
        ),
        Verdict::Violation(_) => "violation".to_string(),
        Verdict::Undecided(why) => format!("undecided: {why}"),
    };
    report.push(format!(
        "witness checker: {} operations in {took:?}: {witness_line}",
        history.len()
    ));
    let (violation, undecided) = match verdict {
        Verdict::Linearizable(_) => {
            return Judgement {
                outcome: Outcome::Linearizable,
                detail: String::new(),
                report,
            };
        }
        Verdict::Violation(text) => (Some(text), None),
        Verdict::Undecided(why) => (None, Some(why)),
    };

    let operations = to_operations(history);
    let started = Instant::now();
    let second =
        porcupine_rs::check_operations_timeout::<EtcdKv>(&operations, opts.porcupine_timeout);
    report.push(format!(
        "porcupine-rs: {} operations in {:?}: {second:?}",
        operations.len(),
        started.elapsed()
    ));
    let timeout = opts.porcupine_timeout;
    let confirmed = second == CheckResult::Illegal;
    let (outcome, detail) = match (violation, undecided, second) {
        (Some(text), _, CheckResult::Illegal) => (
            Outcome::NotLinearizable,
            format!("{text}; porcupine-rs confirms"),
        ),
        (Some(text), _, CheckResult::Unknown) => (
            Outcome::NotLinearizable,
            format!("{text}; porcupine-rs did not finish within {timeout:?} to confirm"),
        ),
        (Some(text), _, CheckResult::Ok) => (
            Outcome::CheckersDisagree,
            format!("the witness checker says {text}; porcupine-rs finds a linearization"),
        ),
        (None, _, CheckResult::Ok) => (Outcome::Linearizable, String::new()),
        (None, why, CheckResult::Illegal) => (
            Outcome::NotLinearizable,
            format!(
                "porcupine-rs finds no linearization (the witness checker was undecided: {})",
                why.unwrap_or_default()
            ),
        ),
        (None, why, CheckResult::Unknown) => (
            Outcome::TimedOut,
            format!(
                "the witness checker was undecided ({}) and porcupine-rs did not finish within {timeout:?}",
                why.unwrap_or_default()
            ),
        ),
    };
    let mut detail = detail;
    if confirmed && let Some(path) = &opts.visualisation {
        let started = Instant::now();
        let (_, info) = porcupine_rs::check_operations_info_timeout::<EtcdKv>(&operations, timeout);
        let written = match path.parent() {
            Some(dir) => std::fs::create_dir_all(dir),
            None => Ok(()),
        }
        .and_then(|()| porcupine_rs::visualize_path::<EtcdKv>(&info, path));
        report.push(format!(
            "porcupine-rs: visualisation in {:?}: {}",
            started.elapsed(),
            match &written {
                Ok(()) => path.display().to_string(),
                Err(e) => format!("not written: {e}"),
            }
        ));
        if written.is_ok() {
            detail.push_str(&format!("; visualisation: {}", path.display()));
        }
    }
    Judgement {
        outcome,
        detail,
        report,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lin::Versioned;
    use crate::lin_sim;
    use crate::lin_sim::op;

    fn put(v: &str) -> Request {
        Request::Put {
            key: b"k".to_vec(),
            value: v.as_bytes().to_vec(),
        }
    }

    fn get() -> Request {
        Request::Get { key: b"k".to_vec() }
    }

    fn held(v: &str, revision: i64) -> Response {
        Response::Get {
            revision,
            kv: Some(Versioned {
                value: v.as_bytes().to_vec(),
                mod_revision: revision,
            }),
        }
    }

    fn opts() -> JudgeOpts {
        JudgeOpts {
            porcupine_timeout: Duration::from_secs(30),
            visualisation: None,
        }
    }

    fn porcupine(history: &[Op]) -> CheckResult {
        porcupine_rs::check_operations_timeout::<EtcdKv>(
            &to_operations(history),
            Duration::from_secs(30),
        )
    }

    #[test]
    fn a_linearizable_history_needs_no_second_opinion() {
        // A put that timed out, seen by one later read and not by an
        // earlier one.
        let h = vec![
            op(0, 0, i64::MAX, put("a"), Response::Unknown),
            op(
                1,
                5,
                10,
                get(),
                Response::Get {
                    revision: 1,
                    kv: None,
                },
            ),
            op(1, 20, 30, get(), held("a", 2)),
            op(2, 40, 50, put("b"), Response::Put { revision: 3 }),
        ];
        let j = judge(&h, &opts());
        assert_eq!(j.outcome, Outcome::Linearizable, "{j:?}");
        assert_eq!(j.report.len(), 1, "porcupine ran: {:?}", j.report);
        assert_eq!(porcupine(&h), CheckResult::Ok);
    }

    #[test]
    fn a_stale_read_is_confirmed_and_drawn() {
        // A read that starts after a put finished yet misses it.
        let h = vec![
            op(0, 0, 10, put("a"), Response::Put { revision: 2 }),
            op(
                1,
                20,
                30,
                get(),
                Response::Get {
                    revision: 1,
                    kv: None,
                },
            ),
        ];
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("violation.html");
        let j = judge(
            &h,
            &JudgeOpts {
                visualisation: Some(path.clone()),
                ..opts()
            },
        );
        assert_eq!(j.outcome, Outcome::NotLinearizable, "{j:?}");
        let text = j.result().unwrap_err();
        assert!(text.contains("porcupine-rs confirms"), "{text}");
        assert!(text.contains("#0 ") && text.contains("#1 "), "{text}");
        assert!(path.exists(), "no visualisation at {}", path.display());
        assert_eq!(j.report.len(), 3, "{:?}", j.report);
    }

    #[test]
    fn when_the_witness_checker_is_undecided_porcupine_decides() {
        // The same value twice: the witness checker declines.
        let h = vec![
            op(0, 0, 10, put("a"), Response::Put { revision: 2 }),
            op(1, 20, 30, put("a"), Response::Put { revision: 3 }),
            op(1, 40, 50, get(), held("a", 3)),
        ];
        let j = judge(&h, &opts());
        assert_eq!(j.outcome, Outcome::Linearizable, "{j:?}");
        assert!(j.report[0].contains("undecided"), "{:?}", j.report);

        // Two acked puts cannot share a revision.
        let h = vec![
            op(0, 0, 10, put("a"), Response::Put { revision: 2 }),
            op(1, 20, 30, put("a"), Response::Put { revision: 2 }),
        ];
        let j = judge(&h, &opts());
        assert_eq!(j.outcome, Outcome::NotLinearizable, "{j:?}");
    }

    #[test]
    fn a_porcupine_timeout_is_reported_as_a_timeout_not_a_violation() {
        // A linearizable history the witness checker declines (one value
        // put twice to a key, by a write that was never applied), and no
        // time for porcupine-rs.
        let mut h = lin_sim::history(11, 6, 2000, 10);
        let twice = h
            .iter()
            .find(|o| matches!(o.response, Response::Put { .. }))
            .map(|o| o.request.clone())
            .expect("a put");
        h.push(op(999, i64::MAX - 1, i64::MAX, twice, Response::Unknown));
        let j = judge(
            &h,
            &JudgeOpts {
                porcupine_timeout: Duration::ZERO,
                visualisation: None,
            },
        );
        assert_eq!(j.outcome, Outcome::TimedOut, "{j:?}");
        let text = j.result().unwrap_err();
        assert!(text.contains("timed out"), "{text}");
        assert!(!text.contains("not linearizable"), "{text}");
        // What the test used to call: with visualisation info, porcupine-rs
        // 0.3.0 answers Illegal for the search it killed at its deadline.
        let (with_info, _) = porcupine_rs::check_operations_info_timeout::<EtcdKv>(
            &to_operations(&h),
            Duration::ZERO,
        );
        println!("porcupine-rs with info and no time: {with_info:?}");
    }

    #[test]
    fn the_checkers_agree_on_simulated_histories() {
        for seed in 0..40 {
            let h = lin_sim::history(seed, 1 + (seed as usize % 4), 40, 15);
            assert!(
                matches!(lin_check::check(&h), Verdict::Linearizable(_)),
                "seed {seed}"
            );
            assert_ne!(porcupine(&h), CheckResult::Illegal, "seed {seed}");
        }
    }

    #[test]
    fn the_checkers_agree_on_randomly_broken_histories() {
        // Small simulated histories with one random corruption each: a
        // revision moved, a read's value swapped for another write's, a
        // return time moved before others' calls, or an answered write
        // turned into a maybe-applied one. Whatever porcupine-rs decides,
        // the witness checker must decide the same.
        use rand::rngs::StdRng;
        use rand::{Rng, SeedableRng};
        let (mut legal, mut illegal) = (0, 0);
        for seed in 0..600u64 {
            let mut h = lin_sim::history(seed, 3, 24, 25);
            let mut rng = StdRng::seed_from_u64(seed);
            let i = rng.gen_range(0..h.len());
            let values: Vec<Vec<u8>> = h
                .iter()
                .filter_map(|o| match &o.request {
                    Request::Put { value, .. } | Request::CasPut { value, .. } => {
                        Some(value.clone())
                    }
                    Request::Get { .. } => None,
                })
                .collect();
            let delta = if rng.gen_bool(0.5) { 1 } else { -1 };
            match (rng.gen_range(0..4), &mut h[i].response) {
                (0, Response::Put { revision })
                | (0, Response::Get { revision, .. })
                | (0, Response::CasPut { revision, .. }) => *revision += delta,
                (1, Response::Get { kv: Some(kv), .. })
                | (1, Response::CasPut { kv: Some(kv), .. }) => {
                    kv.value = values[rng.gen_range(0..values.len())].clone();
                }
                (2, response) if *response != Response::Unknown => {
                    h[i].ret = h[i].call;
                    let j = rng.gen_range(0..h.len());
                    h[i].call = h[i].call.min(h[j].call - 1);
                }
                (3, Response::Put { .. }) | (3, Response::CasPut { .. }) => {
                    h[i].response = Response::Unknown;
                    h[i].ret = i64::MAX;
                }
                _ => continue,
            }
            let second = porcupine(&h);
            let first = lin_check::check(&h);
            match (&first, &second) {
                (Verdict::Linearizable(_), CheckResult::Ok) => legal += 1,
                (Verdict::Violation(_), CheckResult::Illegal) => illegal += 1,
                (Verdict::Undecided(_), _) | (_, CheckResult::Unknown) => {}
                _ => panic!(
                    "seed {seed}: witness checker {first:?}, porcupine-rs {second:?}\n{}",
                    h.iter()
                        .enumerate()
                        .map(|(n, o)| format!("#{n} {o}"))
                        .collect::<Vec<_>>()
                        .join("\n")
                ),
            }
        }
        println!("agreed on {legal} linearizable and {illegal} broken histories");
        assert!(legal > 100 && illegal > 100, "{legal} {illegal}");
    }

    #[test]
    fn a_stale_read_planted_in_a_recorded_style_history_is_caught_end_to_end() {
        // Histories shaped like the cluster test's (six clients, unique
        // values, maybe-applied writes), each with one stale read planted.
        let mut caught = 0;
        for seed in 0..10 {
            let mut h = lin_sim::history(seed, 6, 60, 10);
            let Some((reader, _, write)) = lin_sim::plant_stale_read(&mut h) else {
                continue;
            };
            let j = judge(&h, &opts());
            assert_eq!(j.outcome, Outcome::NotLinearizable, "seed {seed}: {j:?}");
            let text = j.result().unwrap_err();
            assert!(
                text.contains(&format!("#{reader} ")) && text.contains(&format!("#{write} ")),
                "seed {seed}: {text}"
            );
            caught += 1;
        }
        assert!(caught >= 8, "planted only {caught} stale reads");
    }
}
