//! Step 5 of [`crate::lin_check`]: which maybe-applied writes were applied
//! at the revisions that no acknowledged write holds and nobody read.
//!
//! 1. [`lin_check`](crate::lin_check) hands over a [`Problem`]: the definite
//!    operations in revision order (the skeleton), each gap with its place in
//!    the skeleton, its deadline, the write a read forced there or the key a
//!    txn requires there, the keys reads rule out per revision
//!    ([`Forbidden`]), and the pool of maybe-applied writes nobody read.
//! 2. Hall's condition on deadlines alone comes first: the k-th unforced gap
//!    needs k pool writes called by its deadline, else the gap is reported
//!    with the operation whose return closes it.
//! 3. A depth-first search then fills the gaps in revision order, stepping
//!    the model over the skeleton between them. At a gap it tries the forced
//!    write, or one pool write of each kind (key, and for a txn its expected
//!    mod revision) that meets the deadline, the required key and the
//!    forbidden keys, and whose compare holds in the current state. Writes of
//!    one kind are interchangeable: nobody read their values, and every one
//!    that meets this gap's deadline meets every later gap's. Puts come
//!    before txns and plentiful kinds before scarce ones, so a scarce write
//!    stays for a gap that needs it.
//! 4. The search is iterative (one frame per gap) and counts model steps and
//!    candidate scans against a budget; past it the answer is
//!    [`Stop::Undecided`], never a violation. When every choice fails, the
//!    violation reports the furthest attempt.

use std::collections::HashMap;

use crate::lin::{Op, Request, Response, State, Versioned, step};

/// `#i` and the operation's one-line form.
pub(crate) fn name(history: &[Op], i: usize) -> String {
    format!("#{i} {}", history[i])
}

/// A key's observed or modelled content, or "absent".
pub(crate) fn shown(kv: Option<&Versioned>) -> String {
    kv.map_or_else(|| "absent".to_string(), ToString::to_string)
}

/// Why a check stopped without a witness.
pub(crate) enum Stop {
    /// No order is legal; the text names the operations.
    Violation(String),
    /// Not decided (precondition or budget); the text says why.
    Undecided(String),
}

pub(crate) fn violation<T>(text: String) -> Result<T, Stop> {
    Err(Stop::Violation(text))
}

/// Revision intervals `(m, at]`, per key, in which no gap may hold a write of
/// that key; merged for binary search.
#[derive(Default)]
pub(crate) struct Forbidden<'a> {
    raw: HashMap<&'a [u8], Vec<(i64, i64)>>,
    merged: HashMap<&'a [u8], Vec<(i64, i64)>>,
}

impl<'a> Forbidden<'a> {
    pub(crate) fn add(&mut self, key: &'a [u8], after: i64, upto: i64) {
        if after < upto {
            self.raw.entry(key).or_default().push((after, upto));
        }
    }

    pub(crate) fn merge(&mut self) {
        self.merged.clear();
        for (key, intervals) in &self.raw {
            let mut sorted = intervals.clone();
            sorted.sort_unstable();
            let mut merged: Vec<(i64, i64)> = Vec::new();
            for (after, upto) in sorted {
                match merged.last_mut() {
                    Some(last) if after <= last.1 => last.1 = last.1.max(upto),
                    _ => merged.push((after, upto)),
                }
            }
            self.merged.insert(key, merged);
        }
    }

    /// Whether a write of `key` at revision `g` is ruled out.
    pub(crate) fn covers(&self, key: &[u8], g: i64) -> bool {
        let Some(intervals) = self.merged.get(key) else {
            return false;
        };
        let n = intervals.partition_point(|&(after, _)| after < g);
        n > 0 && g <= intervals[n - 1].1
    }
}

/// One revision that no definite write holds.
pub(crate) struct Gap<'a> {
    pub(crate) revision: i64,
    /// Skeleton position before which its write goes.
    pub(crate) insert_at: usize,
    /// The earliest return among the operations after it: (time, history
    /// index). Its write must have been called no later.
    pub(crate) deadline: (i64, usize),
    /// The maybe-applied write a read saw applied here.
    pub(crate) forced: Option<usize>,
    /// A key that must be written here (a txn expected it).
    pub(crate) required: Option<&'a [u8]>,
}

/// What the search is given (step 1 of the module doc).
pub(crate) struct Problem<'p, 'a> {
    pub(crate) history: &'a [Op],
    /// Definite operations (history indices) in witness order.
    pub(crate) skeleton: Vec<usize>,
    /// Ascending by revision.
    pub(crate) gaps: Vec<Gap<'a>>,
    pub(crate) forbidden: &'p Forbidden<'a>,
    /// Maybe-applied writes nobody read, by call time.
    pub(crate) pool: Vec<usize>,
}

/// The witness order: the skeleton with a write at every gap.
pub(crate) fn fill(problem: &Problem<'_, '_>, budget: u64) -> Result<Vec<usize>, Stop> {
    Search {
        p: problem,
        used: vec![false; problem.history.len()],
        steps: 0,
        budget,
        deepest: (0, String::new()),
    }
    .run()
}

/// Steps 2 to 4 of the module doc.
struct Search<'s, 'p, 'a> {
    p: &'s Problem<'p, 'a>,
    /// Which writes are placed, by history index.
    used: Vec<bool>,
    steps: u64,
    budget: u64,
    /// The furthest the search got, and what stopped it there.
    deepest: (usize, String),
}

/// Interchangeable unread writes (step 5): the key, and for a txn its
/// expected mod revision.
type WriteKind<'a> = (&'a [u8], Option<i64>);

/// One gap of the search: the state before its write, the candidates, and
/// which one is in place.
struct Frame {
    gap: usize,
    state: State,
    order_len: usize,
    candidates: Vec<usize>,
    next: usize,
    chosen: Option<usize>,
}

impl Search<'_, '_, '_> {
    fn tick(&mut self) -> Result<(), Stop> {
        self.steps += 1;
        if self.steps > self.budget {
            return Err(Stop::Undecided(format!(
                "the search for where {} maybe-applied writes were applied spent its budget of {} steps",
                self.p.pool.len(),
                self.budget
            )));
        }
        Ok(())
    }

    fn run(mut self) -> Result<Vec<usize>, Stop> {
        self.check_counts()?;
        let c = self.p;
        let mut order = Vec::with_capacity(c.skeleton.len() + c.gaps.len());
        let mut state = State::initial();
        let first_end = c
            .gaps
            .first()
            .map(|gap| gap.insert_at)
            .unwrap_or(c.skeleton.len());
        if !self.segment(0, first_end, &mut state, &mut order)? {
            return violation(self.deepest.1);
        }
        if c.gaps.is_empty() {
            return Ok(order);
        }
        let candidates = self.candidates(0, &state)?;
        let mut stack = vec![Frame {
            gap: 0,
            state,
            order_len: order.len(),
            candidates,
            next: 0,
            chosen: None,
        }];
        loop {
            let Some(top) = stack.last_mut() else {
                return violation(format!(
                    "no placement of the {} maybe-applied writes nobody read makes the history legal; the furthest attempt stopped at: {}",
                    c.pool.len(),
                    self.deepest.1
                ));
            };
            if let Some(u) = top.chosen.take() {
                self.used[u] = false;
            }
            order.truncate(top.order_len);
            if top.next >= top.candidates.len() {
                stack.pop();
                continue;
            }
            let u = top.candidates[top.next];
            top.next += 1;
            let gap = top.gap;
            let g = c.gaps[gap].revision;
            self.tick()?;
            let Some(mut next) = step(&top.state, &c.history[u].request, &Response::Unknown)
                .filter(|next| next.revision == g)
            else {
                self.note(
                    order.len(),
                    format!("{} cannot apply at revision {g}", name(c.history, u)),
                );
                continue;
            };
            top.chosen = Some(u);
            self.used[u] = true;
            order.push(u);
            let end = c
                .gaps
                .get(gap + 1)
                .map_or(c.skeleton.len(), |next_gap| next_gap.insert_at);
            if !self.segment(c.gaps[gap].insert_at, end, &mut next, &mut order)? {
                continue;
            }
            if gap + 1 == c.gaps.len() {
                return Ok(order);
            }
            let candidates = self.candidates(gap + 1, &next)?;
            stack.push(Frame {
                gap: gap + 1,
                state: next,
                order_len: order.len(),
                candidates,
                next: 0,
                chosen: None,
            });
        }
    }

    fn note(&mut self, progress: usize, text: String) {
        if progress >= self.deepest.0 || self.deepest.1.is_empty() {
            self.deepest = (progress, text);
        }
    }

    /// Steps the skeleton from position `from` to `to` (exclusive).
    fn segment(
        &mut self,
        from: usize,
        to: usize,
        state: &mut State,
        order: &mut Vec<usize>,
    ) -> Result<bool, Stop> {
        let c = self.p;
        for p in from..to {
            self.tick()?;
            let i = c.skeleton[p];
            let op = &c.history[i];
            match step(state, &op.request, &op.response) {
                Some(next) => {
                    *state = next;
                    order.push(i);
                }
                None => {
                    let key = op.request.key();
                    let text = format!(
                        "{} is illegal: at revision {} the model holds {} = {}",
                        name(c.history, i),
                        state.revision,
                        String::from_utf8_lossy(key),
                        shown(state.kvs.get(key))
                    );
                    self.note(order.len(), text);
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    /// Hall's condition on deadlines alone (step 2): the k-th unforced gap
    /// needs k unread maybe-applied writes called by its deadline.
    fn check_counts(&self) -> Result<(), Stop> {
        let c = self.p;
        let mut unread = 0;
        for gap in &c.gaps {
            if gap.forced.is_some() {
                continue;
            }
            unread += 1;
            let (deadline, returned) = gap.deadline;
            let eligible = c.pool.partition_point(|&u| c.history[u].call <= deadline);
            if eligible < unread {
                return violation(format!(
                    "revision {} has no write: no acknowledged write holds it, nobody read it, and of the {} maybe-applied writes nobody read only {eligible} were called before {} returned, too few for the {unread} such revisions up to here",
                    gap.revision,
                    c.pool.len(),
                    name(c.history, returned)
                ));
            }
        }
        Ok(())
    }

    /// The writes to try at `gap`: the forced one, or one unread write of
    /// each (key, kind) that meets the gap's deadline and constraints, puts
    /// first, then the kinds with the most writes left.
    fn candidates(&mut self, gap: usize, state: &State) -> Result<Vec<usize>, Stop> {
        let c = self.p;
        let gap = &c.gaps[gap];
        if let Some(u) = gap.forced {
            return Ok(vec![u]);
        }
        let g = gap.revision;
        let (deadline, _) = gap.deadline;
        let required = gap.required;
        let mut groups: HashMap<WriteKind<'_>, (usize, usize)> = HashMap::new();
        for &u in &c.pool {
            self.tick()?;
            let op = &c.history[u];
            if op.call > deadline {
                break;
            }
            if self.used[u] {
                continue;
            }
            let (key, expected) = match &op.request {
                Request::Put { key, .. } => (key.as_slice(), None),
                Request::CasPut {
                    key,
                    expected_mod_revision,
                    ..
                } => {
                    let current = state.kvs.get(key).map_or(0, |kv| kv.mod_revision);
                    if current != *expected_mod_revision {
                        continue;
                    }
                    (key.as_slice(), Some(*expected_mod_revision))
                }
                Request::Get { .. } => continue,
            };
            if required.is_some_and(|r| r != key) || c.forbidden.covers(key, g) {
                continue;
            }
            groups.entry((key, expected)).or_insert((u, 0)).1 += 1;
        }
        let mut ranked: Vec<(WriteKind<'_>, (usize, usize))> = groups.into_iter().collect();
        ranked.sort_by_key(|&((key, expected), (u, count))| {
            (
                expected.is_some(),
                std::cmp::Reverse(count),
                key,
                expected,
                u,
            )
        });
        if ranked.is_empty() {
            self.note(
                0,
                format!("no maybe-applied write nobody read can be applied at revision {g}"),
            );
        }
        Ok(ranked.into_iter().map(|(_, (u, _))| u).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forbidden_intervals_merge() {
        let mut f = Forbidden::default();
        f.add(b"k", 2, 4);
        f.add(b"k", 4, 6);
        f.add(b"k", 8, 9);
        f.add(b"k", 5, 5);
        f.merge();
        let covered: Vec<i64> = (1..11).filter(|&g| f.covers(b"k", g)).collect();
        assert_eq!(covered, vec![3, 4, 5, 6, 9]);
        assert!(!f.covers(b"j", 3));
    }
}
