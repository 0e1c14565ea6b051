//! Seeded histories that are linearizable by construction, for the tests of
//! the linearizability checkers ([`crate::lin_check`], [`crate::lin_verdict`]).
//!
//! 1. [`history`] runs clients of [`Workload`] against the model: each
//!    request takes effect ([`answer`]) at one instant between its call and
//!    its return, so any such history is linearizable.
//! 2. Some writes fail as the recorder would see them (`Response::Unknown`,
//!    never returned): before they take effect, or after.
//! 3. [`plant_stale_read`] then breaks one history on purpose.
//!
//! Also the small builders the checkers' tests write histories by hand with
//! ([`op`], [`put`], [`get`]).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::lin::{Op, Request, Response, State, Versioned, Workload, answer};

/// An operation of client `client` from `call` to `ret` (member 0).
pub(crate) fn op(client: u32, call: i64, ret: i64, request: Request, response: Response) -> Op {
    Op {
        client,
        member: 0,
        call,
        ret,
        request,
        response,
    }
}

/// `put(key, value)`.
pub(crate) fn put(key: &str, value: &str) -> Request {
    Request::Put {
        key: key.into(),
        value: value.into(),
    }
}

/// `get(key)`.
pub(crate) fn get(key: &str) -> Request {
    Request::Get { key: key.into() }
}

struct Pending {
    client: u32,
    call: i64,
    request: Request,
    /// The answer, once the request took effect.
    answered: Option<Response>,
    /// The client will see it fail (before or after it takes effect).
    lost: bool,
}

/// `clients` clients issue `ops` requests over three keys; each request
/// takes effect at one instant between its call and its return, so the
/// history is linearizable. About `lost_percent` % of the writes fail as
/// the recorder sees it (`Response::Unknown`, never returned): some
/// before they take effect, the others after.
pub(crate) fn history(seed: u64, clients: usize, ops: usize, lost_percent: u32) -> Vec<Op> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut workloads: Vec<Workload> = (0..clients)
        .map(|c| Workload::new("k", 3, c, seed))
        .collect();
    let mut pending: Vec<Option<Pending>> = (0..clients).map(|_| None).collect();
    let mut ids: Vec<u32> = (0..clients as u32).collect();
    let mut next_id = clients as u32;
    let mut state = State::initial();
    let mut history = Vec::new();
    let mut issued = 0;
    let mut now = 0i64;
    while issued < ops || pending.iter().any(Option::is_some) {
        now += 1;
        let c = rng.gen_range(0..clients);
        let Some(p) = pending[c].as_mut() else {
            if issued < ops {
                issued += 1;
                let request = workloads[c].next_request();
                let lost = request.is_write() && rng.gen_range(0..100) < lost_percent;
                pending[c] = Some(Pending {
                    client: ids[c],
                    call: now,
                    request,
                    answered: None,
                    lost,
                });
            }
            continue;
        };
        let finished = match &p.answered {
            None if p.lost && rng.gen_bool(0.4) => Some(Response::Unknown),
            None => {
                let (next, response) = answer(&state, &p.request);
                state = next;
                p.answered = Some(response);
                None
            }
            Some(_) if p.lost => Some(Response::Unknown),
            Some(response) if rng.gen_bool(0.5) => Some(response.clone()),
            Some(_) => None,
        };
        let Some(response) = finished else { continue };
        let p = pending[c].take().expect("pending");
        let ret = if response == Response::Unknown {
            ids[c] = next_id;
            next_id += 1;
            i64::MAX
        } else {
            workloads[c].observe(&p.request, &response);
            now
        };
        history.push(Op {
            client: p.client,
            member: 0,
            call: p.call,
            ret,
            request: p.request,
            response,
        });
    }
    history
}

/// Makes one definite get return an older value of its key: that of a
/// definite write before the definite write it saw, so that the get now
/// misses an acknowledged write. Returns (the get, the older value's
/// revision, the write it now misses).
pub(crate) fn plant_stale_read(h: &mut [Op]) -> Option<(usize, i64, usize)> {
    let definite_write = |h: &[Op], key: &[u8], revision: i64| {
        h.iter().position(|o| {
            o.request.key() == key
                && matches!(
                    o.response,
                    Response::Put { revision: r }
                    | Response::CasPut { succeeded: true, revision: r, .. } if r == revision
                )
        })
    };
    for reader in 0..h.len() {
        let Response::Get {
            kv: Some(kv),
            revision,
        } = &h[reader].response
        else {
            continue;
        };
        let (revision, seen) = (*revision, kv.mod_revision);
        let key = h[reader].request.key().to_vec();
        let Some(write) = definite_write(h, &key, seen) else {
            continue;
        };
        let older = (2..seen)
            .rev()
            .find_map(|r| definite_write(h, &key, r).map(|w| (w, r)));
        let Some((old_write, old_revision)) = older else {
            continue;
        };
        let value = match &h[old_write].request {
            Request::Put { value, .. } | Request::CasPut { value, .. } => value.clone(),
            Request::Get { .. } => continue,
        };
        h[reader].response = Response::Get {
            revision,
            kv: Some(Versioned {
                value,
                mod_revision: old_revision,
            }),
        };
        return Some((reader, old_revision, write));
    }
    None
}
