//! A fast, deterministic linearizability check for the KV histories of
//! [`crate::lin`], built on etcd's revisions.
//!
//! etcd numbers every change of the store with the next revision, and every
//! answer carries the revision it saw. The revisions therefore already say
//! where each answered operation sits in any order the model accepts: this
//! checker builds that one order (the *witness*) and verifies it, instead of
//! searching interleavings as porcupine does. It assumes what the model
//! assumes: the store starts empty at revision 1, only the recorded clients
//! write, and each write (a put, or a txn whose compare held) takes exactly
//! one revision.
//!
//! 1. **Classify.** A put, or a txn whose compare held, that was answered is
//!    a *definite write* at its header revision. A get, or a txn whose
//!    compare failed, is a *read* of the state at its header revision. A
//!    write that failed or timed out ([`Response::Unknown`]) is *maybe
//!    applied*; a get without an answer observed nothing and is left out.
//! 2. **Skeleton.** Two definite writes at one revision are a violation
//!    naming both. Sorting the definite operations by (revision, the write
//!    before the reads, call time) gives the only order the model can
//!    accept: a write at `r` moves the store from `r - 1` to `r`, and a read
//!    at `r` sits after the write of `r` and before the write of `r + 1`.
//!    Reads at one revision commute, and ordering them by call time keeps
//!    every real-time order among them. The skeleton is checked against real
//!    time in one pass over suffix minima of return times: an operation that
//!    returned before another was called must come first, else the two are
//!    named (a read whose revision runs backwards in real time, a read at a
//!    revision older than a write that had already returned).
//! 3. **Gaps.** A revision from 2 to the highest one observed that no
//!    definite write holds is a *gap*. Every applied write bumps the revision
//!    by one, so exactly one maybe-applied write was applied at each gap. A
//!    write placed at gap `g` precedes every operation at a later position,
//!    so it must have been called no later than the earliest return among
//!    them: that is the gap's *deadline*. Deadlines grow with `g`, so a
//!    maybe-applied write may fill any gap from some revision on. A
//!    maybe-applied write that fills no gap was never applied, or was applied
//!    after the last observed revision where nothing sees it: either way it
//!    drops out of the witness.
//! 4. **Observations.** A read says "at revision `r`, key `k` was last
//!    written at `m` with value `v`" (or was absent, `m = 0`); a txn whose
//!    compare held at `r` says "at `r - 1`, `k` was last written at the
//!    expected revision". Each is checked against the definite writes: no
//!    write of `k` in `(m, r]` (else a stale read or a lost acknowledged
//!    write, both named), and revision `m` written to `k` with `v`. Each also
//!    constrains the gaps: no gap in `(m, r]` may hold a write of `k`; if `m`
//!    is a gap, put values are unique per key, so `v` names the
//!    maybe-applied write that filled it (the gap is *forced*), and a txn's
//!    expectation of a gap requires a write of `k` there. A forced txn
//!    brings its own expectation (this step runs again for it), a forced
//!    write must meet its gap's deadline, and forced writes, required keys
//!    and forbidden keys must agree. Every one of these is necessary, so a
//!    failure here is a violation. They are also sufficient for the definite
//!    operations: whether the model accepts a read or a txn at `r` depends
//!    only on which write of its key came last before it, which they pin
//!    down whatever fills the other gaps.
//! 5. **Fill** (`lin_fill`). What is left: gaps nobody read, to be filled
//!    from the maybe-applied writes nobody read (a gap nobody read still had
//!    a write, by one of the maybe-applied writes called before the gap's
//!    deadline). Their values were never read, so only their keys matter
//!    (for the forbidden and required keys of step 4) and, for a txn, whether
//!    its compare held at the gap, the one thing that depends on how earlier
//!    gaps were filled. A depth-first search fills the gaps in revision order
//!    and steps the model ([`step`]) along the skeleton; it tries one write
//!    of each key and kind per gap (writes of one kind are interchangeable),
//!    so it backtracks only when a scarce key is taken too early. Hall's
//!    condition on deadlines alone reports an unfillable gap first, naming
//!    the operation whose return closes it. The search has a step budget;
//!    past it the verdict is [`Verdict::Undecided`], never a violation.
//! 6. **Verify.** The witness is replayed from [`State::initial`] through
//!    [`step`] and checked against real time once more, apart from how it
//!    was built: [`Verdict::Linearizable`] always carries an order that
//!    passed both.
//!
//! Cost: one sort, a binary search per observation and one model step per
//! operation, O(n log n), plus the bounded search when unread maybe-applied
//! writes must fill unread gaps.
//!
//! **Against porcupine-rs**, which searches the same [`step`] model
//! exhaustively, linearizes a maybe-applied write anywhere after its call
//! (at the very end it is as good as never applied) and also treats equal
//! call and return times as concurrent: the two answer the same question,
//! so when both finish they agree, except where this checker declines. It
//! needs put values unique per key (to tell which maybe-applied write a read
//! saw) and answers [`Verdict::Undecided`] on a history where they are not,
//! or when its search budget runs out. Porcupine has no such precondition,
//! but may time out on a history this checker decides in milliseconds (a
//! maybe-applied write never returns, so it is concurrent with everything
//! after its call, and the search must try it at each of those places). Any
//! other disagreement is a bug in one of them: `lin_verdict` reports it as
//! such.

use std::collections::HashMap;

use crate::lin::{Op, Request, Response, State, Versioned, step};
use crate::lin_fill::{self, Forbidden, Gap, Problem, Stop, name, shown, violation};

/// Model steps (and candidate scans) the search of step 5 may spend before
/// it gives up with [`Verdict::Undecided`]. A history without unread
/// maybe-applied writes needs one step per operation.
pub const DEFAULT_BUDGET: u64 = 2_000_000;

/// The checker's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// An order of the history that the model and real time accept.
    Linearizable(Witness),
    /// No such order exists; the text names the offending operations (`#i`
    /// is the operation's index in the history).
    Violation(String),
    /// The checker could not decide (precondition or budget); the text says
    /// why. Never a claim about the history.
    Undecided(String),
}

/// A linearization that passed step 6 of the module doc.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Witness {
    /// Indices into the history in linearization order: every definite
    /// operation, and the maybe-applied writes that filled gaps.
    pub order: Vec<usize>,
    /// The maybe-applied writes in the order, with the revision each filled.
    pub applied: Vec<(usize, i64)>,
    /// Maybe-applied writes left out: never applied, or applied after the
    /// last observed revision.
    pub unapplied: usize,
}

/// Checks `history` with [`DEFAULT_BUDGET`].
pub fn check(history: &[Op]) -> Verdict {
    check_with_budget(history, DEFAULT_BUDGET)
}

/// Checks `history`, spending at most `budget` steps on step 5.
pub fn check_with_budget(history: &[Op], budget: u64) -> Verdict {
    match Checker::run(history, budget) {
        Ok(witness) => Verdict::Linearizable(witness),
        Err(Stop::Violation(text)) => Verdict::Violation(text),
        Err(Stop::Undecided(text)) => Verdict::Undecided(text),
    }
}

/// Replays `order` (indices into `history`) through the model from
/// [`State::initial`] and checks it against real time: step 6 of the module
/// doc. Maybe-applied writes in `order` must apply where they stand.
pub fn verify(history: &[Op], order: &[usize]) -> Result<(), String> {
    let mut state = State::initial();
    let mut seen = vec![false; history.len()];
    for &i in order {
        let op = history
            .get(i)
            .ok_or_else(|| format!("index {i} is not in the history"))?;
        if std::mem::replace(&mut seen[i], true) {
            return Err(format!("{} appears twice", name(history, i)));
        }
        let next = step(&state, &op.request, &op.response).ok_or_else(|| {
            format!(
                "{} is illegal at revision {}",
                name(history, i),
                state.revision
            )
        })?;
        if op.response == Response::Unknown && next.revision != state.revision + 1 {
            return Err(format!(
                "{} does not apply at revision {}",
                name(history, i),
                state.revision + 1
            ));
        }
        state = next;
    }
    for (i, op) in history.iter().enumerate() {
        if !seen[i] && op.response != Response::Unknown {
            return Err(format!("{} is missing", name(history, i)));
        }
    }
    let mut earliest_later_return: Option<usize> = None;
    for &i in order.iter().rev() {
        if let Some(j) = earliest_later_return
            && history[j].ret < history[i].call
        {
            return Err(format!(
                "{} is ordered after {} but returned before it was called",
                name(history, j),
                name(history, i)
            ));
        }
        if earliest_later_return.is_none_or(|j| history[i].ret < history[j].ret) {
            earliest_later_return = Some(i);
        }
    }
    Ok(())
}

/// Where a definite operation sits: at its revision, the write first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Slot {
    Write,
    Read,
}

/// Step 1: a definite operation's place, or how the rest are treated.
enum Class {
    Definite(i64, Slot),
    MaybeApplied,
    Ignored,
}

fn classify(history: &[Op], i: usize) -> Result<Class, Stop> {
    let op = &history[i];
    Ok(match (&op.request, &op.response) {
        (Request::Put { .. }, Response::Put { revision })
        | (
            Request::CasPut { .. },
            Response::CasPut {
                succeeded: true,
                revision,
                ..
            },
        ) => Class::Definite(*revision, Slot::Write),
        (Request::Get { .. }, Response::Get { revision, .. })
        | (
            Request::CasPut { .. },
            Response::CasPut {
                succeeded: false,
                revision,
                ..
            },
        ) => Class::Definite(*revision, Slot::Read),
        (Request::Get { .. }, Response::Unknown) => Class::Ignored,
        (_, Response::Unknown) => Class::MaybeApplied,
        _ => {
            return violation(format!(
                "{}: the answer does not fit the request",
                name(history, i)
            ));
        }
    })
}

/// The key and value a write request puts.
fn written(op: &Op) -> Option<(&[u8], &[u8])> {
    match &op.request {
        Request::Put { key, value } | Request::CasPut { key, value, .. } => {
            Some((key.as_slice(), value.as_slice()))
        }
        Request::Get { .. } => None,
    }
}

/// What an observation says about its key at its revision (step 4).
#[derive(Clone, Copy)]
enum Seen<'a> {
    /// The key held this, or was absent.
    Kv(Option<&'a Versioned>),
    /// The key was last written at this revision (0: never); its value was
    /// not observed.
    ModRevision(i64),
}

struct Observation<'a> {
    /// The operation that observed it (history index).
    op: usize,
    /// Who observed it, as printed in messages.
    who: String,
    key: &'a [u8],
    /// The revision whose state was observed.
    at: i64,
    seen: Seen<'a>,
}

impl Observation<'_> {
    fn mod_revision(&self) -> i64 {
        match self.seen {
            Seen::Kv(kv) => kv.map_or(0, |kv| kv.mod_revision),
            Seen::ModRevision(m) => m,
        }
    }

    fn describe(&self) -> String {
        let key = String::from_utf8_lossy(self.key);
        match self.seen {
            Seen::Kv(kv) => format!("{key} = {} at revision {}", shown(kv), self.at),
            Seen::ModRevision(m) => {
                format!("mod({key}) == {m} at revision {}", self.at)
            }
        }
    }
}

struct Checker<'a> {
    history: &'a [Op],
    /// Step 2: definite operations in witness order, with their place.
    skeleton: Vec<(i64, Slot, usize)>,
    /// `suffix_min[p]`: the earliest return among `skeleton[p..]` (return
    /// time, history index); `(i64::MAX, usize::MAX)` past the end.
    suffix_min: Vec<(i64, usize)>,
    /// Definite write at each revision.
    write_at: HashMap<i64, usize>,
    /// Revisions of definite writes per key, ascending.
    writes_of: HashMap<&'a [u8], Vec<i64>>,
    /// Every write, definite or maybe applied, by (key, value).
    writer_of: HashMap<(&'a [u8], &'a [u8]), usize>,
    /// Maybe-applied writes, by history index.
    maybe: Vec<usize>,
    /// Step 3: the gaps, ascending.
    gaps: Vec<i64>,
    /// Skeleton position before which each gap's write goes.
    insert_at: Vec<usize>,
    /// Each gap's deadline: the earliest return after it (time, index).
    deadline: Vec<(i64, usize)>,
    /// Step 4: per gap, the maybe-applied write a read saw there, and who.
    forced: Vec<Option<(usize, String)>>,
    /// Per maybe-applied write (history index), the gap it was seen at.
    forced_at: HashMap<usize, usize>,
    /// Per gap, a key that must be written there, and who requires it.
    required: Vec<Option<(&'a [u8], String)>>,
    forbidden: Forbidden<'a>,
    observations: Vec<Observation<'a>>,
}

impl<'a> Checker<'a> {
    fn run(history: &'a [Op], budget: u64) -> Result<Witness, Stop> {
        let mut checker = Checker::new(history)?;
        checker.check_real_time()?;
        checker.find_gaps()?;
        checker.observe_all()?;
        let order = lin_fill::fill(&checker.problem(), budget)?;
        if let Err(e) = verify(history, &order) {
            return Err(Stop::Undecided(format!(
                "internal error: the witness failed verification: {e}"
            )));
        }
        let mut applied = Vec::new();
        let mut revision = 1;
        for &i in &order {
            let op = &history[i];
            if op.response == Response::Unknown {
                revision += 1;
                applied.push((i, revision));
            } else if matches!(classify(history, i), Ok(Class::Definite(_, Slot::Write))) {
                revision += 1;
            }
        }
        let unapplied = checker.maybe.len() - applied.len();
        Ok(Witness {
            order,
            applied,
            unapplied,
        })
    }

    /// Steps 1 and 2 (without real time): classify, index the writes, sort.
    fn new(history: &'a [Op]) -> Result<Checker<'a>, Stop> {
        let mut skeleton = Vec::new();
        let mut write_at: HashMap<i64, usize> = HashMap::new();
        let mut writes_of: HashMap<&[u8], Vec<i64>> = HashMap::new();
        let mut writer_of = HashMap::new();
        let mut maybe = Vec::new();
        for (i, op) in history.iter().enumerate() {
            let class = classify(history, i)?;
            if let Some(kv) = written(op)
                && let Some(other) = writer_of.insert(kv, i)
            {
                return Err(Stop::Undecided(format!(
                    "{} and {} put the same value to one key; this checker needs put values unique per key",
                    name(history, other),
                    name(history, i)
                )));
            }
            match class {
                Class::Definite(revision, slot) => {
                    if slot == Slot::Write {
                        if revision < 2 {
                            return violation(format!(
                                "{} wrote at revision {revision}, but the store starts at revision 1",
                                name(history, i)
                            ));
                        }
                        if let Some(other) = write_at.insert(revision, i) {
                            return violation(format!(
                                "duplicate revision: {} and {} were both applied at revision {revision}",
                                name(history, other),
                                name(history, i)
                            ));
                        }
                        let (key, _) = written(op).expect("a write puts");
                        writes_of.entry(key).or_default().push(revision);
                    } else if revision < 1 {
                        return violation(format!(
                            "{} read at revision {revision}, but the store starts at revision 1",
                            name(history, i)
                        ));
                    }
                    skeleton.push((revision, slot, i));
                }
                Class::MaybeApplied => maybe.push(i),
                Class::Ignored => {}
            }
        }
        skeleton.sort_by_key(|&(revision, slot, i)| (revision, slot, history[i].call, i));
        for revisions in writes_of.values_mut() {
            revisions.sort_unstable();
        }
        let mut suffix_min = vec![(i64::MAX, usize::MAX); skeleton.len() + 1];
        for p in (0..skeleton.len()).rev() {
            let i = skeleton[p].2;
            suffix_min[p] = suffix_min[p + 1].min((history[i].ret, i));
        }
        Ok(Checker {
            history,
            skeleton,
            suffix_min,
            write_at,
            writes_of,
            writer_of,
            maybe,
            gaps: Vec::new(),
            insert_at: Vec::new(),
            deadline: Vec::new(),
            forced: Vec::new(),
            forced_at: HashMap::new(),
            required: Vec::new(),
            forbidden: Forbidden::default(),
            observations: Vec::new(),
        })
    }

    /// What step 5 needs: the skeleton, the gaps with their constraints,
    /// and the maybe-applied writes nobody read, by call time.
    fn problem(&self) -> Problem<'_, 'a> {
        let gaps = (0..self.gaps.len())
            .map(|k| Gap {
                revision: self.gaps[k],
                insert_at: self.insert_at[k],
                deadline: self.deadline[k],
                forced: self.forced[k].as_ref().map(|(u, _)| *u),
                required: self.required[k].as_ref().map(|(key, _)| *key),
            })
            .collect();
        let mut pool: Vec<usize> = self
            .maybe
            .iter()
            .copied()
            .filter(|u| !self.forced_at.contains_key(u))
            .collect();
        pool.sort_by_key(|&u| (self.history[u].call, u));
        Problem {
            history: self.history,
            skeleton: self.skeleton.iter().map(|&(_, _, i)| i).collect(),
            gaps,
            forbidden: &self.forbidden,
            pool,
        }
    }

    fn name(&self, i: usize) -> String {
        name(self.history, i)
    }

    /// The revision of definite operation `i` (its skeleton place).
    fn revision_of(&self, i: usize) -> i64 {
        match &self.history[i].response {
            Response::Put { revision }
            | Response::Get { revision, .. }
            | Response::CasPut { revision, .. } => *revision,
            Response::Unknown => 0,
        }
    }

    /// Step 2: the skeleton against real time.
    fn check_real_time(&self) -> Result<(), Stop> {
        for (p, &(revision, _, i)) in self.skeleton.iter().enumerate() {
            let (ret, j) = self.suffix_min[p + 1];
            if ret < self.history[i].call {
                return violation(format!(
                    "real-time order: {} returned before {} was called, yet its revision {} orders it after that operation's revision {revision}",
                    self.name(j),
                    self.name(i),
                    self.revision_of(j)
                ));
            }
        }
        Ok(())
    }

    /// Step 3: gaps, where their writes go, and their deadlines. More gaps
    /// than maybe-applied writes is a violation found before listing them.
    fn find_gaps(&mut self) -> Result<(), Stop> {
        let Some(&(last, _, highest)) = self.skeleton.last() else {
            return Ok(());
        };
        let gaps = usize::try_from(last - 1).unwrap_or(usize::MAX) - self.write_at.len();
        if gaps > self.maybe.len() {
            return violation(format!(
                "{} saw revision {last}, but only {} definite and {} maybe-applied writes could have produced the {} revisions after 1",
                self.name(highest),
                self.write_at.len(),
                self.maybe.len(),
                last - 1
            ));
        }
        for g in 2..=last {
            if self.write_at.contains_key(&g) {
                continue;
            }
            let p = self
                .skeleton
                .partition_point(|&(revision, slot, _)| (revision, slot) <= (g, Slot::Write));
            self.gaps.push(g);
            self.insert_at.push(p);
            self.deadline.push(self.suffix_min[p]);
        }
        self.forced = vec![None; self.gaps.len()];
        self.required = vec![None; self.gaps.len()];
        Ok(())
    }

    fn gap_index(&self, g: i64) -> Option<usize> {
        self.gaps.binary_search(&g).ok()
    }

    /// Step 4 for every read and succeeded txn, then for every forced txn,
    /// then the agreement of forced writes with the other constraints.
    fn observe_all(&mut self) -> Result<(), Stop> {
        let history = self.history;
        for p in 0..self.skeleton.len() {
            let (revision, _, i) = self.skeleton[p];
            let op = &history[i];
            let observation = match (&op.request, &op.response) {
                (Request::Get { key }, Response::Get { kv, .. }) => Observation {
                    op: i,
                    who: self.name(i),
                    key,
                    at: revision,
                    seen: Seen::Kv(kv.as_ref()),
                },
                (
                    Request::CasPut {
                        key,
                        expected_mod_revision,
                        ..
                    },
                    Response::CasPut {
                        succeeded: false,
                        kv,
                        ..
                    },
                ) => {
                    let m = kv.as_ref().map_or(0, |kv| kv.mod_revision);
                    if m == *expected_mod_revision {
                        return violation(format!(
                            "{}: the compare mod == {m} failed, yet the txn read the key at mod revision {m}",
                            self.name(i)
                        ));
                    }
                    Observation {
                        op: i,
                        who: self.name(i),
                        key,
                        at: revision,
                        seen: Seen::Kv(kv.as_ref()),
                    }
                }
                (
                    Request::CasPut {
                        key,
                        expected_mod_revision,
                        ..
                    },
                    Response::CasPut {
                        succeeded: true, ..
                    },
                ) => Observation {
                    op: i,
                    who: format!("{} (its compare held)", self.name(i)),
                    key,
                    at: revision - 1,
                    seen: Seen::ModRevision(*expected_mod_revision),
                },
                _ => continue,
            };
            self.observe(observation)?;
        }
        for gap in 0..self.gaps.len() {
            let Some((u, by)) = self.forced[gap].clone() else {
                continue;
            };
            if let Request::CasPut {
                key,
                expected_mod_revision,
                ..
            } = &history[u].request
            {
                let observation = Observation {
                    op: u,
                    who: format!(
                        "{} (applied at revision {}, as {by} saw, so its compare held)",
                        self.name(u),
                        self.gaps[gap]
                    ),
                    key,
                    at: self.gaps[gap] - 1,
                    seen: Seen::ModRevision(*expected_mod_revision),
                };
                self.observe(observation)?;
            }
        }
        self.forbidden.merge();
        for gap in 0..self.gaps.len() {
            let Some((u, by)) = &self.forced[gap] else {
                continue;
            };
            let g = self.gaps[gap];
            let (key, _) = written(&history[*u]).expect("a maybe-applied write puts");
            if let Some((required, who)) = &self.required[gap]
                && *required != key
            {
                return violation(format!(
                    "revision {g}: {by} saw {} applied there, but {who} needs a write of {} there",
                    self.name(*u),
                    String::from_utf8_lossy(required)
                ));
            }
            if self.forbidden.covers(key, g) {
                let who = self.forbidder(key, g);
                return violation(format!(
                    "revision {g}: {by} saw {} applied there, but {who}",
                    self.name(*u)
                ));
            }
            let (deadline, returned) = self.deadline[gap];
            if history[*u].call > deadline {
                return violation(format!(
                    "real-time order: {by} saw {} applied at revision {g}, but it was called after {} returned, which comes later in revision order",
                    self.name(*u),
                    self.name(returned)
                ));
            }
        }
        Ok(())
    }

    /// Which observation rules out a write of `key` at `g`, in words.
    fn forbidder(&self, key: &[u8], g: i64) -> String {
        self.observations
            .iter()
            .find(|o| o.key == key && o.mod_revision() < g && g <= o.at)
            .map_or_else(
                || "a read rules it out".to_string(),
                |o| format!("{} observed {}", o.who, o.describe()),
            )
    }

    /// Step 4 for one observation.
    fn observe(&mut self, o: Observation<'a>) -> Result<(), Stop> {
        let history = self.history;
        let m = o.mod_revision();
        let key = String::from_utf8_lossy(o.key);
        if m > o.at || m == 1 || m < 0 {
            return violation(format!(
                "{} observed {}: no write of {key} can be at revision {m}",
                o.who,
                o.describe()
            ));
        }
        if let Some(revisions) = self.writes_of.get(o.key) {
            let n = revisions.partition_point(|&r| r <= o.at);
            if n > 0 && revisions[n - 1] > m {
                let w = self.write_at[&revisions[n - 1]];
                let kind = if history[w].ret < history[o.op].call {
                    "a stale read: that write had returned before the reader was called"
                } else {
                    "a lost write: the reader's revision puts it after that write, whose effect it lacks"
                };
                return violation(format!(
                    "{} observed {}, but {} wrote {key} at revision {}, after {m} and not after {} ({kind})",
                    o.who,
                    o.describe(),
                    self.name(w),
                    revisions[n - 1],
                    o.at
                ));
            }
        }
        if m >= 2 {
            if let Some(&w) = self.write_at.get(&m) {
                let (wkey, wvalue) = written(&history[w]).expect("a write puts");
                let wrong = match o.seen {
                    Seen::Kv(Some(kv)) => wkey != o.key || wvalue != kv.value.as_slice(),
                    _ => wkey != o.key,
                };
                if wrong {
                    return violation(format!(
                        "{} observed {}, but revision {m} is {}{}",
                        o.who,
                        o.describe(),
                        self.name(w),
                        self.value_origin(&o)
                    ));
                }
            } else {
                let gap = self
                    .gap_index(m)
                    .expect("a revision below the last one is written or a gap");
                match o.seen {
                    Seen::Kv(Some(kv)) => match self.writer_of.get(&(o.key, kv.value.as_slice())) {
                        None => {
                            return violation(format!(
                                "{} observed {}, a value no operation put to {key}",
                                o.who,
                                o.describe()
                            ));
                        }
                        Some(&u) if history[u].response != Response::Unknown => {
                            return violation(format!(
                                "{} observed {}, but {} put that value at revision {}",
                                o.who,
                                o.describe(),
                                self.name(u),
                                self.revision_of(u)
                            ));
                        }
                        Some(&u) => self.force(gap, u, &o)?,
                    },
                    _ => self.require(gap, &o)?,
                }
            }
        }
        self.forbidden.add(o.key, m, o.at);
        self.observations.push(o);
        Ok(())
    }

    /// " (the value ... was put by ...)" for a wrong value, if it names one.
    fn value_origin(&self, o: &Observation<'_>) -> String {
        let Seen::Kv(Some(kv)) = o.seen else {
            return String::new();
        };
        match self.writer_of.get(&(o.key, kv.value.as_slice())) {
            Some(&w) if self.history[w].response == Response::Unknown => {
                format!("; the value seen was put by {}", self.name(w))
            }
            Some(&w) => format!(
                "; the value seen was put by {} at revision {}",
                self.name(w),
                self.revision_of(w)
            ),
            None => "; no operation put the value seen".to_string(),
        }
    }

    fn force(&mut self, gap: usize, u: usize, o: &Observation<'_>) -> Result<(), Stop> {
        let g = self.gaps[gap];
        if let Some((other, by)) = &self.forced[gap]
            && *other != u
        {
            return violation(format!(
                "revision {g}: {by} saw {} applied there, but {} observed {}",
                self.name(*other),
                o.who,
                o.describe()
            ));
        }
        if let Some(&other_gap) = self.forced_at.get(&u)
            && other_gap != gap
        {
            let by = self.forced[other_gap]
                .as_ref()
                .map_or(String::new(), |(_, by)| by.clone());
            return violation(format!(
                "{} applied twice: {by} saw it at revision {}, {} at revision {g}",
                self.name(u),
                self.gaps[other_gap],
                o.who
            ));
        }
        self.forced_at.insert(u, gap);
        if self.forced[gap].is_none() {
            self.forced[gap] = Some((u, o.who.clone()));
        }
        Ok(())
    }

    fn require(&mut self, gap: usize, o: &Observation<'a>) -> Result<(), Stop> {
        if let Some((key, who)) = &self.required[gap]
            && *key != o.key
        {
            return violation(format!(
                "revision {}: {who} needs a write of {} there, but {} observed {}",
                self.gaps[gap],
                String::from_utf8_lossy(key),
                o.who,
                o.describe()
            ));
        }
        if self.required[gap].is_none() {
            self.required[gap] = Some((o.key, o.who.clone()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lin_sim;
    use crate::lin_sim::{get, op, put};

    fn cas(key: &str, expected: i64, value: &str) -> Request {
        Request::CasPut {
            key: key.into(),
            expected_mod_revision: expected,
            value: value.into(),
        }
    }

    fn ok(revision: i64) -> Response {
        Response::Put { revision }
    }

    fn seen(revision: i64, value: &str, mod_revision: i64) -> Response {
        Response::Get {
            revision,
            kv: Some(Versioned {
                value: value.into(),
                mod_revision,
            }),
        }
    }

    fn absent(revision: i64) -> Response {
        Response::Get { revision, kv: None }
    }

    fn won(revision: i64) -> Response {
        Response::CasPut {
            succeeded: true,
            revision,
            kv: None,
        }
    }

    fn lost(revision: i64, value: &str, mod_revision: i64) -> Response {
        Response::CasPut {
            succeeded: false,
            revision,
            kv: Some(Versioned {
                value: value.into(),
                mod_revision,
            }),
        }
    }

    const NEVER: i64 = i64::MAX;

    fn linearizable(history: &[Op]) -> Witness {
        match check(history) {
            Verdict::Linearizable(w) => {
                assert_eq!(verify(history, &w.order), Ok(()));
                w
            }
            other => panic!("want linearizable, got {other:?}"),
        }
    }

    /// The violation text, which must name every operation in `named`.
    fn violation_naming(history: &[Op], named: &[usize]) -> String {
        match check(history) {
            Verdict::Violation(text) => {
                println!("{text}");
                for i in named {
                    assert!(
                        text.contains(&format!("#{i} ")),
                        "the violation should name #{i}: {text}"
                    );
                }
                text
            }
            other => panic!("want a violation naming {named:?}, got {other:?}"),
        }
    }

    #[test]
    fn sequential_ops_follow_their_revisions() {
        let h = vec![
            op(0, 0, 1, get("a"), absent(1)),
            op(0, 2, 3, put("a", "1"), ok(2)),
            op(1, 4, 5, get("a"), seen(2, "1", 2)),
            op(0, 6, 7, cas("a", 2, "2"), won(3)),
            op(1, 8, 9, cas("a", 2, "3"), lost(3, "2", 3)),
            op(1, 10, 11, get("b"), absent(3)),
        ];
        let w = linearizable(&h);
        assert_eq!(w.order, vec![0, 1, 2, 3, 4, 5]);
        assert_eq!((w.applied.len(), w.unapplied), (0, 0));
    }

    #[test]
    fn concurrent_ops_may_take_effect_against_call_order() {
        // b is called after a but applied first; the two reads overlap and
        // see the same revision.
        let h = vec![
            op(0, 0, 100, put("k", "a"), ok(3)),
            op(1, 10, 50, put("k", "b"), ok(2)),
            op(2, 20, 120, get("k"), seen(3, "a", 3)),
            op(3, 40, 60, get("k"), seen(2, "b", 2)),
            op(4, 110, 130, get("k"), seen(3, "a", 3)),
        ];
        let w = linearizable(&h);
        assert_eq!(w.order, vec![1, 3, 0, 2, 4]);
    }

    #[test]
    fn a_maybe_applied_write_that_was_read_fills_its_revision() {
        let h = vec![
            op(0, 0, NEVER, put("k", "x"), Response::Unknown),
            op(1, 5, 10, get("k"), absent(1)),
            op(1, 20, 30, get("k"), seen(2, "x", 2)),
            op(2, 40, 50, put("k", "y"), ok(3)),
        ];
        let w = linearizable(&h);
        assert_eq!(w.applied, vec![(0, 2)]);
        assert_eq!(w.order, vec![1, 0, 2, 3]);
    }

    #[test]
    fn a_maybe_applied_write_nobody_saw_is_left_out() {
        let h = vec![
            op(0, 0, NEVER, put("k", "x"), Response::Unknown),
            op(1, 5, 10, put("k", "y"), ok(2)),
            op(1, 20, 30, get("k"), seen(2, "y", 2)),
        ];
        let w = linearizable(&h);
        assert_eq!((w.applied.len(), w.unapplied), (0, 1));
    }

    #[test]
    fn a_revision_nobody_read_is_filled_by_a_maybe_applied_write() {
        // Revision 3 holds no acknowledged write and no read saw it, yet
        // revision 4 follows it: one of the maybe-applied writes was
        // applied there. The put of k cannot be (the last read of k at 4
        // sees k at 2), so it is the put of j.
        let h = vec![
            op(0, 0, 10, put("k", "a"), ok(2)),
            op(1, 1, NEVER, put("k", "x"), Response::Unknown),
            op(2, 2, NEVER, put("j", "y"), Response::Unknown),
            op(3, 20, 30, put("i", "b"), ok(4)),
            op(3, 40, 50, get("k"), seen(4, "a", 2)),
        ];
        let w = linearizable(&h);
        assert_eq!(w.applied, vec![(2, 3)]);
        assert_eq!(w.unapplied, 1);
    }

    #[test]
    fn the_search_backtracks_when_a_later_revision_needs_a_key() {
        // Revisions 2 and 3 are unread; the txn at 4 expects k last written
        // at 3, so 3 must be the put of k and 2 the put of j.
        let h = vec![
            op(0, 0, NEVER, put("j", "x"), Response::Unknown),
            op(1, 0, NEVER, put("k", "y"), Response::Unknown),
            op(2, 10, 20, cas("k", 3, "z"), won(4)),
        ];
        let w = linearizable(&h);
        assert_eq!(w.applied, vec![(0, 2), (1, 3)]);
    }

    #[test]
    fn a_maybe_applied_txn_applies_only_where_its_compare_holds() {
        let h = vec![
            op(0, 0, 10, put("k", "a"), ok(2)),
            op(1, 20, NEVER, cas("k", 2, "b"), Response::Unknown),
            op(2, 30, 40, get("k"), seen(3, "b", 3)),
        ];
        let w = linearizable(&h);
        assert_eq!(w.applied, vec![(1, 3)]);

        // The same txn seen applied after another write of k: its compare
        // (mod == 2) could not hold there.
        let h = vec![
            op(0, 0, 10, put("k", "a"), ok(2)),
            op(0, 11, 12, put("k", "c"), ok(3)),
            op(1, 20, NEVER, cas("k", 2, "b"), Response::Unknown),
            op(2, 30, 40, get("k"), seen(4, "b", 4)),
        ];
        violation_naming(&h, &[1, 2]);
    }

    #[test]
    fn a_stale_read_is_caught() {
        // k = 2 was acknowledged at revision 3 before the read was called,
        // yet the read, at revision 3, returns the older value.
        let h = vec![
            op(0, 0, 10, put("k", "1"), ok(2)),
            op(0, 20, 30, put("k", "2"), ok(3)),
            op(1, 40, 50, get("k"), seen(3, "1", 2)),
        ];
        let text = violation_naming(&h, &[1, 2]);
        assert!(text.contains("stale read"), "{text}");
    }

    #[test]
    fn a_read_at_an_older_revision_after_a_write_returned_is_caught() {
        let h = vec![
            op(0, 0, 10, put("k", "1"), ok(2)),
            op(1, 20, 30, get("k"), absent(1)),
        ];
        let text = violation_naming(&h, &[0, 1]);
        assert!(text.contains("real-time order"), "{text}");
    }

    #[test]
    fn a_read_revision_running_backwards_in_real_time_is_caught() {
        // The writes overlap both reads; the second read, called after the
        // first returned, reports an older revision.
        let h = vec![
            op(0, 0, 100, put("k", "1"), ok(2)),
            op(1, 0, 100, put("j", "1"), ok(3)),
            op(2, 20, 30, get("k"), seen(3, "1", 2)),
            op(2, 40, 50, get("k"), seen(2, "1", 2)),
        ];
        let text = violation_naming(&h, &[2, 3]);
        assert!(text.contains("real-time order"), "{text}");
    }

    #[test]
    fn a_lost_acknowledged_write_is_caught() {
        // The put of k was acknowledged at 2; a read at 4 finds k absent.
        let h = vec![
            op(0, 0, 10, put("k", "1"), ok(2)),
            op(1, 5, 15, put("j", "1"), ok(3)),
            op(2, 5, 20, put("i", "1"), ok(4)),
            op(3, 6, 25, get("k"), absent(4)),
        ];
        let text = violation_naming(&h, &[0, 3]);
        assert!(text.contains("lost write"), "{text}");
    }

    #[test]
    fn a_duplicate_revision_is_caught() {
        let h = vec![
            op(0, 0, 10, put("k", "1"), ok(2)),
            op(1, 20, 30, put("j", "2"), ok(2)),
        ];
        let text = violation_naming(&h, &[0, 1]);
        assert!(text.contains("duplicate revision"), "{text}");
    }

    #[test]
    fn a_real_time_order_violation_between_writes_is_caught() {
        // The put at 3 returned before the put at 2 was called.
        let h = vec![
            op(0, 0, 10, put("k", "1"), ok(3)),
            op(1, 20, 30, put("j", "2"), ok(2)),
        ];
        let text = violation_naming(&h, &[0, 1]);
        assert!(text.contains("real-time order"), "{text}");
    }

    #[test]
    fn other_impossible_observations_are_caught() {
        // A value nobody wrote.
        let h = vec![
            op(0, 0, 10, put("k", "1"), ok(2)),
            op(1, 20, 30, get("k"), seen(2, "9", 2)),
        ];
        violation_naming(&h, &[0, 1]);

        // A revision nobody could have written.
        let h = vec![
            op(0, 0, 10, put("k", "1"), ok(2)),
            op(1, 20, 30, get("k"), seen(3, "1", 2)),
        ];
        violation_naming(&h, &[1]);

        // A maybe-applied write seen applied at a revision that precedes an
        // operation which returned before the write was called.
        let h = vec![
            op(0, 0, 10, put("j", "1"), ok(3)),
            op(1, 20, NEVER, put("k", "x"), Response::Unknown),
            op(2, 30, 40, get("k"), seen(3, "x", 2)),
        ];
        violation_naming(&h, &[0, 1, 2]);

        // A txn whose compare failed, though the key was at the expected
        // revision.
        let h = vec![
            op(0, 0, 10, put("k", "1"), ok(2)),
            op(1, 20, 30, cas("k", 2, "2"), lost(2, "1", 2)),
        ];
        violation_naming(&h, &[1]);

        // A txn that succeeded against a revision the key was not at.
        let h = vec![
            op(0, 0, 10, put("k", "1"), ok(2)),
            op(0, 11, 12, put("k", "2"), ok(3)),
            op(1, 20, 30, cas("k", 2, "3"), won(4)),
        ];
        violation_naming(&h, &[1, 2]);

        // Two reads that disagree about which write is at revision 2.
        let h = vec![
            op(0, 0, NEVER, put("k", "x"), Response::Unknown),
            op(1, 0, NEVER, put("k", "y"), Response::Unknown),
            op(2, 20, 30, get("k"), seen(2, "x", 2)),
            op(3, 20, 30, get("k"), seen(2, "y", 2)),
        ];
        violation_naming(&h, &[2, 3]);
    }

    #[test]
    fn an_unfillable_gap_names_the_operation_that_closes_it() {
        // Revision 2 is a gap; the only maybe-applied write was called after
        // the put at 3 returned.
        let h = vec![
            op(0, 0, 10, put("k", "1"), ok(3)),
            op(1, 20, NEVER, put("j", "x"), Response::Unknown),
        ];
        let text = violation_naming(&h, &[0]);
        assert!(text.contains("revision 2 has no write"), "{text}");
    }

    #[test]
    fn duplicate_values_are_undecided_not_a_violation() {
        let h = vec![
            op(0, 0, 10, put("k", "1"), ok(2)),
            op(1, 20, 30, put("k", "1"), ok(3)),
        ];
        assert!(matches!(check(&h), Verdict::Undecided(_)));
    }

    #[test]
    fn a_spent_budget_is_undecided() {
        let h = lin_sim::history(7, 4, 200, 10);
        assert!(
            matches!(check_with_budget(&h, 10), Verdict::Undecided(text) if text.contains("budget")),
        );
    }

    #[test]
    fn simulated_histories_are_linearizable() {
        let mut applied = 0;
        let mut unapplied = 0;
        for seed in 0..200 {
            let h = lin_sim::history(seed, 1 + (seed as usize % 6), 150, 15);
            let w = linearizable(&h);
            applied += w.applied.len();
            unapplied += w.unapplied;
        }
        // The seeds exercise both fates of a maybe-applied write.
        assert!(applied > 50 && unapplied > 50, "{applied} {unapplied}");
    }

    #[test]
    fn a_stale_read_planted_in_a_simulated_history_is_caught() {
        let mut planted = 0;
        for seed in 0..50 {
            let mut h = lin_sim::history(seed, 4, 200, 10);
            let Some((reader, older, write)) = lin_sim::plant_stale_read(&mut h) else {
                continue;
            };
            planted += 1;
            let text = violation_naming(&h, &[reader, write]);
            assert!(text.contains(&format!("{older}")), "{text}");
        }
        assert!(planted > 40, "planted only {planted} stale reads");
    }

    #[test]
    fn big_simulated_histories_with_many_maybe_applied_writes_check_quickly() {
        for (seed, lost_percent) in [(1, 5), (2, 20), (3, 40)] {
            let h = lin_sim::history(seed, 8, 3000, lost_percent);
            let started = std::time::Instant::now();
            let w = linearizable(&h);
            let took = started.elapsed();
            let read_at = |revision: i64| {
                h.iter().any(|o| match &o.response {
                    Response::Get { kv: Some(kv), .. } | Response::CasPut { kv: Some(kv), .. } => {
                        kv.mod_revision == revision
                    }
                    _ => false,
                })
            };
            let unread = w.applied.iter().filter(|&&(_, r)| !read_at(r)).count();
            println!(
                "seed {seed}: {} ops, {} maybe applied, {} applied ({unread} at revisions nobody read) checked in {took:?}",
                h.len(),
                w.applied.len() + w.unapplied,
                w.applied.len(),
            );
            assert!(unread > 0, "the search for unread revisions was exercised");
        }
    }
}
