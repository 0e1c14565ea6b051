//! Histories of concurrent KV operations and the etcd model they are checked
//! against for linearizability.
//!
//! 1. Each client draws its requests from a [`Workload`]: puts whose values
//!    are unique across the whole history, linearizable gets, and
//!    compare-and-put txns (put if the key's mod revision still equals the
//!    one this client last saw, else read the key), all over a few hot keys
//!    so that operations interfere and one global revision orders them.
//! 2. [`execute`] sends one request on a KV client under a deadline and turns
//!    the answer into a [`Response`].
//! 3. A [`Recorder`] stamps call and return times on one monotonic clock and
//!    keeps every finished operation. A read that failed is dropped: it
//!    observed nothing and changed nothing. A write that failed or timed out
//!    is kept as [`Response::Unknown`] with return time `i64::MAX`: it may
//!    have been applied at any point after its call, or never.
//! 4. [`step`] is the sequential specification: the whole store (revision,
//!    and each key's value and mod revision) moves as etcd's does, and an
//!    operation is legal in a state when that state gives exactly the
//!    observed answer, revisions included. A checker looks for an order of
//!    the history, consistent with real time, that [`step`] accepts from
//!    [`State::initial`]: `lin_check` builds the one order etcd's revisions
//!    allow and verifies it; porcupine-rs (the Wing–Gong search with
//!    memoisation that etcd's robustness tests use) gives a second opinion
//!    through `lin_verdict`. [`answer`] is the model's own response, for
//!    simulated histories.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use proto::etcdserverpb::kv_client::KvClient;
use proto::etcdserverpb::request_op::Request as RequestOneof;
use proto::etcdserverpb::response_op::Response as ResponseOneof;
use proto::etcdserverpb::{
    Compare, PutRequest, RangeRequest, RangeResponse, RequestOp, TxnRequest,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tonic::transport::Channel;

/// One client request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Request {
    /// `Put(key, value)`.
    Put { key: Vec<u8>, value: Vec<u8> },
    /// A linearizable `Range` of one key.
    Get { key: Vec<u8> },
    /// `Txn(if mod_revision(key) == expected_mod_revision then Put(key,
    /// value) else Range(key))`; a missing key has mod revision 0.
    CasPut {
        key: Vec<u8>,
        expected_mod_revision: i64,
        value: Vec<u8>,
    },
}

impl Request {
    /// Whether the request may change the store.
    pub fn is_write(&self) -> bool {
        !matches!(self, Request::Get { .. })
    }

    /// The key the request touches.
    pub fn key(&self) -> &[u8] {
        match self {
            Request::Put { key, .. } | Request::Get { key } | Request::CasPut { key, .. } => key,
        }
    }
}

/// A key's value and the revision that last modified it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Versioned {
    pub value: Vec<u8>,
    pub mod_revision: i64,
}

/// What the server answered.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Response {
    /// The put was applied at `revision`.
    Put { revision: i64 },
    /// The store was at `revision` and the key held `kv`.
    Get {
        revision: i64,
        kv: Option<Versioned>,
    },
    /// The compare held (`succeeded`, put applied at `revision`) or not (the
    /// store was at `revision` and the key held `kv`).
    CasPut {
        succeeded: bool,
        revision: i64,
        kv: Option<Versioned>,
    },
    /// The write failed or timed out: it may or may not have been applied.
    Unknown,
}

/// One operation of a history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op {
    /// The client that issued it (one outstanding request per client).
    pub client: u32,
    /// The cluster member the request was sent to (for diagnostics only).
    pub member: usize,
    /// When the request was sent, in nanoseconds on the recorder's clock.
    pub call: i64,
    /// When the answer arrived; `i64::MAX` for [`Response::Unknown`].
    pub ret: i64,
    pub request: Request,
    pub response: Response,
}

impl std::fmt::Display for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        match self {
            Request::Put { key, value } => write!(f, "put({}, {})", text(key), text(value)),
            Request::Get { key } => write!(f, "get({})", text(key)),
            Request::CasPut {
                key,
                expected_mod_revision,
                value,
            } => write!(
                f,
                "txn(if mod({}) == {expected_mod_revision} then put({0}, {}) else get({0}))",
                text(key),
                text(value)
            ),
        }
    }
}

impl std::fmt::Display for Versioned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}@{}",
            String::from_utf8_lossy(&self.value),
            self.mod_revision
        )
    }
}

impl std::fmt::Display for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let held = |kv: &Option<Versioned>| kv.as_ref().map_or("-".to_string(), |v| v.to_string());
        match self {
            Response::Put { revision } => write!(f, "ok rev {revision}"),
            Response::Get { revision, kv } => write!(f, "{} rev {revision}", held(kv)),
            Response::CasPut {
                succeeded: true,
                revision,
                ..
            } => write!(f, "succeeded rev {revision}"),
            Response::CasPut {
                succeeded: false,
                revision,
                kv,
            } => write!(f, "failed, {} rev {revision}", held(kv)),
            Response::Unknown => write!(f, "unknown"),
        }
    }
}

/// One line: client, call and return times (ns), request and response.
impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ret = if self.ret == i64::MAX {
            "-".to_string()
        } else {
            self.ret.to_string()
        };
        write!(
            f,
            "c{}@m{} [{} .. {ret}] {} -> {}",
            self.client, self.member, self.call, self.request, self.response
        )
    }
}

/// The model's state: the whole key space and its revision.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct State {
    pub revision: i64,
    pub kvs: BTreeMap<Vec<u8>, Versioned>,
}

impl State {
    /// An empty etcd store, which is at revision 1.
    pub fn initial() -> State {
        State {
            revision: 1,
            kvs: BTreeMap::new(),
        }
    }

    fn put(&self, key: &[u8], value: &[u8]) -> State {
        let mut next = self.clone();
        next.revision += 1;
        next.kvs.insert(
            key.to_vec(),
            Versioned {
                value: value.to_vec(),
                mod_revision: next.revision,
            },
        );
        next
    }

    fn mod_revision(&self, key: &[u8]) -> i64 {
        self.kvs.get(key).map_or(0, |kv| kv.mod_revision)
    }
}

/// Applies `request` with the observed `response` to `state`: the next state
/// if the response is the one `state` gives, `None` if it is not.
pub fn step(state: &State, request: &Request, response: &Response) -> Option<State> {
    match request {
        Request::Put { key, value } => {
            let next = state.put(key, value);
            match response {
                Response::Unknown => Some(next),
                Response::Put { revision } if *revision == next.revision => Some(next),
                _ => None,
            }
        }
        Request::Get { key } => match response {
            Response::Unknown => Some(state.clone()),
            Response::Get { revision, kv }
                if *revision == state.revision && kv.as_ref() == state.kvs.get(key) =>
            {
                Some(state.clone())
            }
            _ => None,
        },
        Request::CasPut {
            key,
            expected_mod_revision,
            value,
        } => {
            let holds = state.mod_revision(key) == *expected_mod_revision;
            let next = if holds {
                state.put(key, value)
            } else {
                state.clone()
            };
            let legal = match response {
                Response::Unknown => true,
                Response::CasPut {
                    succeeded: true,
                    revision,
                    ..
                } => holds && *revision == next.revision,
                Response::CasPut {
                    succeeded: false,
                    revision,
                    kv,
                } => !holds && *revision == state.revision && kv.as_ref() == state.kvs.get(key),
                _ => false,
            };
            legal.then_some(next)
        }
    }
}

/// What etcd answers to `request` in `state`, with the state after it: the
/// definite response [`step`] accepts there. Simulated histories in the
/// checkers' tests are made with it.
pub fn answer(state: &State, request: &Request) -> (State, Response) {
    match request {
        Request::Put { key, value } => {
            let next = state.put(key, value);
            let revision = next.revision;
            (next, Response::Put { revision })
        }
        Request::Get { key } => (
            state.clone(),
            Response::Get {
                revision: state.revision,
                kv: state.kvs.get(key).cloned(),
            },
        ),
        Request::CasPut {
            key,
            expected_mod_revision,
            value,
        } => {
            if state.mod_revision(key) == *expected_mod_revision {
                let next = state.put(key, value);
                let revision = next.revision;
                let response = Response::CasPut {
                    succeeded: true,
                    revision,
                    kv: None,
                };
                (next, response)
            } else {
                let response = Response::CasPut {
                    succeeded: false,
                    revision: state.revision,
                    kv: state.kvs.get(key).cloned(),
                };
                (state.clone(), response)
            }
        }
    }
}

/// Collects the operations of a history on one monotonic clock.
#[derive(Debug)]
pub struct Recorder {
    origin: Instant,
    ops: Mutex<Vec<Op>>,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder::new()
    }
}

impl Recorder {
    /// An empty history whose clock starts now.
    pub fn new() -> Recorder {
        Recorder {
            origin: Instant::now(),
            ops: Mutex::new(Vec::new()),
        }
    }

    /// Nanoseconds since the recorder was made.
    pub fn now(&self) -> i64 {
        i64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(i64::MAX - 1)
    }

    /// Records a request sent at `call` to `member` whose outcome just
    /// arrived (step 3 of the module doc). Returns the response as recorded:
    /// `None` for a read that failed (dropped), [`Response::Unknown`] for a
    /// write that failed.
    pub fn record(
        &self,
        client: u32,
        member: usize,
        call: i64,
        request: Request,
        outcome: Result<Response, String>,
    ) -> Option<Response> {
        let ret = self.now();
        let (ret, response) = match outcome {
            Ok(response) => (ret, response),
            Err(_) if !request.is_write() => return None,
            Err(_) => (i64::MAX, Response::Unknown),
        };
        let op = Op {
            client,
            member,
            call,
            ret,
            request,
            response: response.clone(),
        };
        self.ops
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(op);
        Some(response)
    }

    /// The operations recorded so far, in the order they finished.
    pub fn history(&self) -> Vec<Op> {
        self.ops
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// Counts of a history's operations by kind and outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    pub puts: usize,
    pub gets: usize,
    pub cas_succeeded: usize,
    pub cas_failed: usize,
    /// Writes that failed or timed out ("maybe applied").
    pub unknown: usize,
}

impl Summary {
    /// Counts `history`.
    pub fn of(history: &[Op]) -> Summary {
        let mut s = Summary::default();
        for op in history {
            match &op.response {
                Response::Put { .. } => s.puts += 1,
                Response::Get { .. } => s.gets += 1,
                Response::CasPut {
                    succeeded: true, ..
                } => s.cas_succeeded += 1,
                Response::CasPut {
                    succeeded: false, ..
                } => s.cas_failed += 1,
                Response::Unknown => s.unknown += 1,
            }
        }
        s
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} puts, {} gets, {} txns succeeded, {} txns failed their compare, {} writes maybe applied",
            self.puts, self.gets, self.cas_succeeded, self.cas_failed, self.unknown
        )
    }
}

/// One client's seeded stream of requests (step 1 of the module doc).
#[derive(Debug)]
pub struct Workload {
    keys: Vec<Vec<u8>>,
    writer: usize,
    seq: u64,
    /// The last mod revision this client saw per key (its CAS expectation).
    seen: HashMap<Vec<u8>, i64>,
    rng: StdRng,
}

impl Workload {
    /// `hot_keys` keys named `<prefix><n>`; put values are
    /// `w<writer>-<seq>`, unique as long as `writer` is unique per workload.
    pub fn new(prefix: &str, hot_keys: usize, writer: usize, seed: u64) -> Workload {
        Workload {
            keys: (0..hot_keys.max(1))
                .map(|n| format!("{prefix}{n}").into_bytes())
                .collect(),
            writer,
            seq: 0,
            seen: HashMap::new(),
            rng: StdRng::seed_from_u64(seed ^ (writer as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)),
        }
    }

    /// The next request: 40 % gets, 40 % puts, 20 % compare-and-puts.
    pub fn next_request(&mut self) -> Request {
        let key = self.keys[self.rng.gen_range(0..self.keys.len())].clone();
        let roll = self.rng.gen_range(0..10);
        if roll < 4 {
            return Request::Get { key };
        }
        self.seq += 1;
        let value = format!("w{}-{}", self.writer, self.seq).into_bytes();
        if roll < 8 {
            Request::Put { key, value }
        } else {
            let expected_mod_revision = self.seen.get(&key).copied().unwrap_or(0);
            Request::CasPut {
                key,
                expected_mod_revision,
                value,
            }
        }
    }

    /// Learns the key's mod revision from a definite answer.
    pub fn observe(&mut self, request: &Request, response: &Response) {
        let mod_revision = match response {
            Response::Put { revision }
            | Response::CasPut {
                succeeded: true,
                revision,
                ..
            } => *revision,
            Response::Get { kv, .. }
            | Response::CasPut {
                succeeded: false,
                kv,
                ..
            } => kv.as_ref().map_or(0, |kv| kv.mod_revision),
            Response::Unknown => return,
        };
        self.seen.insert(request.key().to_vec(), mod_revision);
    }
}

/// Sends `request` on `kv` and waits at most `timeout` for the answer.
pub async fn execute(
    kv: &mut KvClient<Channel>,
    request: &Request,
    timeout: Duration,
) -> Result<Response, String> {
    let answer = async {
        match request {
            Request::Put { key, value } => {
                let put = PutRequest {
                    key: key.clone(),
                    value: value.clone(),
                    ..Default::default()
                };
                let resp = kv.put(put).await.map_err(status_text)?.into_inner();
                Ok(Response::Put {
                    revision: header_revision(resp.header)?,
                })
            }
            Request::Get { key } => {
                let range = RangeRequest {
                    key: key.clone(),
                    ..Default::default()
                };
                let resp = kv.range(range).await.map_err(status_text)?.into_inner();
                let kv = single_kv(&resp)?;
                Ok(Response::Get {
                    revision: header_revision(resp.header)?,
                    kv,
                })
            }
            Request::CasPut {
                key,
                expected_mod_revision,
                value,
            } => {
                let txn = cas_txn(key, *expected_mod_revision, value);
                let resp = kv.txn(txn).await.map_err(status_text)?.into_inner();
                let revision = header_revision(resp.header)?;
                if resp.succeeded {
                    return Ok(Response::CasPut {
                        succeeded: true,
                        revision,
                        kv: None,
                    });
                }
                let range = match resp.responses.first().and_then(|r| r.response.as_ref()) {
                    Some(ResponseOneof::ResponseRange(range)) => range,
                    other => return Err(format!("txn else-branch answered {other:?}")),
                };
                Ok(Response::CasPut {
                    succeeded: false,
                    revision,
                    kv: single_kv(range)?,
                })
            }
        }
    };
    match tokio::time::timeout(timeout, answer).await {
        Ok(result) => result,
        Err(_) => Err(format!("timed out after {timeout:?}")),
    }
}

fn cas_txn(key: &[u8], expected_mod_revision: i64, value: &[u8]) -> TxnRequest {
    TxnRequest {
        compare: vec![Compare {
            result: CompareResult::Equal as i32,
            target: CompareTarget::Mod as i32,
            key: key.to_vec(),
            target_union: Some(TargetUnion::ModRevision(expected_mod_revision)),
            ..Default::default()
        }],
        success: vec![RequestOp {
            request: Some(RequestOneof::RequestPut(PutRequest {
                key: key.to_vec(),
                value: value.to_vec(),
                ..Default::default()
            })),
        }],
        failure: vec![RequestOp {
            request: Some(RequestOneof::RequestRange(RangeRequest {
                key: key.to_vec(),
                ..Default::default()
            })),
        }],
    }
}

fn status_text(status: tonic::Status) -> String {
    format!("{:?}: {}", status.code(), status.message())
}

fn header_revision(header: Option<proto::etcdserverpb::ResponseHeader>) -> Result<i64, String> {
    header
        .map(|h| h.revision)
        .ok_or_else(|| "response without header".to_string())
}

fn single_kv(resp: &RangeResponse) -> Result<Option<Versioned>, String> {
    match resp.kvs.as_slice() {
        [] => Ok(None),
        [kv] => Ok(Some(Versioned {
            value: kv.value.clone(),
            mod_revision: kv.mod_revision,
        })),
        many => Err(format!("range of one key returned {} kvs", many.len())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lin_sim::{get, put};

    fn held(value: &str, mod_revision: i64) -> Option<Versioned> {
        Some(Versioned {
            value: value.into(),
            mod_revision,
        })
    }

    #[test]
    fn a_put_must_report_the_next_revision() {
        let s = State::initial();
        assert!(step(&s, &put("a", "1"), &Response::Put { revision: 3 }).is_none());
        let next = step(&s, &put("a", "1"), &Response::Put { revision: 2 }).unwrap();
        assert_eq!(next.revision, 2);
        assert_eq!(next.kvs[b"a".as_slice()], held("1", 2).unwrap());
    }

    #[test]
    fn a_get_must_see_the_current_value_and_revision() {
        let s = step(
            &State::initial(),
            &put("a", "1"),
            &Response::Put { revision: 2 },
        )
        .unwrap();
        let ok = Response::Get {
            revision: 2,
            kv: held("1", 2),
        };
        assert_eq!(step(&s, &get("a"), &ok), Some(s.clone()));
        let stale = Response::Get {
            revision: 1,
            kv: None,
        };
        assert!(step(&s, &get("a"), &stale).is_none());
        let wrong_mod = Response::Get {
            revision: 2,
            kv: held("1", 1),
        };
        assert!(step(&s, &get("a"), &wrong_mod).is_none());
        let absent = Response::Get {
            revision: 2,
            kv: None,
        };
        assert_eq!(step(&s, &get("b"), &absent), Some(s.clone()));
    }

    #[test]
    fn answer_gives_the_response_step_accepts() {
        let mut s = State::initial();
        let cas = |expected: i64, v: &str| Request::CasPut {
            key: b"a".to_vec(),
            expected_mod_revision: expected,
            value: v.into(),
        };
        let requests = [
            get("a"),
            cas(0, "1"),
            cas(0, "2"),
            put("a", "3"),
            get("a"),
            cas(3, "5"),
            get("b"),
        ];
        for request in requests {
            let (next, response) = answer(&s, &request);
            assert_eq!(
                step(&s, &request, &response),
                Some(next.clone()),
                "{request}"
            );
            s = next;
        }
        assert_eq!(s.revision, 4);
        assert_eq!(s.kvs[b"a".as_slice()], held("5", 4).unwrap());
    }

    #[test]
    fn a_maybe_applied_put_applies_when_linearized() {
        let s = State::initial();
        let next = step(&s, &put("a", "x"), &Response::Unknown).unwrap();
        assert_eq!(next.revision, 2);
        assert_eq!(next.kvs[b"a".as_slice()].value, b"x");
    }

    #[test]
    fn cas_put_branches_on_the_mod_revision() {
        let s = step(
            &State::initial(),
            &put("a", "1"),
            &Response::Put { revision: 2 },
        )
        .unwrap();
        let cas = |expected| Request::CasPut {
            key: b"a".to_vec(),
            expected_mod_revision: expected,
            value: b"2".to_vec(),
        };
        let won = Response::CasPut {
            succeeded: true,
            revision: 3,
            kv: None,
        };
        let next = step(&s, &cas(2), &won).unwrap();
        assert_eq!(next.kvs[b"a".as_slice()], held("2", 3).unwrap());
        assert!(step(&s, &cas(1), &won).is_none());

        let lost = Response::CasPut {
            succeeded: false,
            revision: 2,
            kv: held("1", 2),
        };
        assert_eq!(step(&s, &cas(1), &lost), Some(s.clone()));
        assert!(step(&s, &cas(2), &lost).is_none());

        // A missing key has mod revision 0.
        let fresh = Request::CasPut {
            key: b"b".to_vec(),
            expected_mod_revision: 0,
            value: b"v".to_vec(),
        };
        assert!(step(&s, &fresh, &won).is_some());
        // Unknown: applies only if the compare holds in this state.
        assert_eq!(step(&s, &cas(1), &Response::Unknown), Some(s.clone()));
        assert_eq!(step(&s, &cas(2), &Response::Unknown).unwrap().revision, 3);
    }

    #[test]
    fn failed_reads_are_dropped_and_failed_writes_are_maybe_applied() {
        let rec = Recorder::new();
        let t = rec.now();
        assert_eq!(rec.record(0, 0, t, get("a"), Err("down".into())), None);
        assert_eq!(
            rec.record(0, 1, t, put("a", "1"), Err("timed out".into())),
            Some(Response::Unknown)
        );
        let ok = Response::Put { revision: 2 };
        assert_eq!(
            rec.record(1, 2, t, put("a", "2"), Ok(ok.clone())),
            Some(ok.clone())
        );
        let history = rec.history();
        assert_eq!(history.len(), 2);
        assert_eq!(history[0].ret, i64::MAX);
        assert!(history[1].ret >= history[1].call && history[1].ret < i64::MAX);
        let summary = Summary::of(&history);
        assert_eq!((summary.puts, summary.unknown), (1, 1));
    }

    #[test]
    fn workload_values_are_unique_and_cas_uses_what_was_seen() {
        let mut a = Workload::new("k", 3, 0, 42);
        let mut b = Workload::new("k", 3, 1, 42);
        let mut values = std::collections::HashSet::new();
        let mut kinds = [0usize; 3];
        for _ in 0..300 {
            for w in [&mut a, &mut b] {
                let req = w.next_request();
                match &req {
                    Request::Get { .. } => kinds[0] += 1,
                    Request::Put { value, .. } => {
                        kinds[1] += 1;
                        assert!(values.insert(value.clone()), "duplicate value");
                    }
                    Request::CasPut { value, .. } => {
                        kinds[2] += 1;
                        assert!(values.insert(value.clone()), "duplicate value");
                    }
                }
            }
        }
        assert!(kinds.iter().all(|&n| n > 30), "{kinds:?}");

        let mut w = Workload::new("k", 1, 7, 1);
        let seen = Response::Get {
            revision: 9,
            kv: held("x", 5),
        };
        w.observe(&get("k0"), &seen);
        let cas = (0..100)
            .map(|_| w.next_request())
            .find(|r| matches!(r, Request::CasPut { .. }))
            .unwrap();
        assert!(
            matches!(
                cas,
                Request::CasPut {
                    expected_mod_revision: 5,
                    ..
                }
            ),
            "{cas:?}"
        );
    }

    #[test]
    fn ops_print_as_one_readable_line() {
        let op = Op {
            client: 3,
            member: 1,
            call: 10,
            ret: i64::MAX,
            request: Request::CasPut {
                key: b"k".to_vec(),
                expected_mod_revision: 4,
                value: b"v".to_vec(),
            },
            response: Response::Unknown,
        };
        assert_eq!(
            op.to_string(),
            "c3@m1 [10 .. -] txn(if mod(k) == 4 then put(k, v) else get(k)) -> unknown"
        );
        let got = Response::Get {
            revision: 7,
            kv: held("x", 5),
        };
        assert_eq!(got.to_string(), "x@5 rev 7");
    }

    #[test]
    fn same_seed_same_requests() {
        let mut a = Workload::new("k", 4, 3, 99);
        let mut b = Workload::new("k", 4, 3, 99);
        for _ in 0..50 {
            assert_eq!(a.next_request(), b.next_request());
        }
    }
}
