//! The checks at the end of a chaos run, as plain functions of what was
//! recorded and what each member's store holds (unit tested below without
//! a cluster).
//!
//! 1. [`ledger_of`] turns the recorded history into an [`acks::Ledger`]:
//!    every put or compare-and-put answered as applied is acknowledged at
//!    its revision; every write that got no answer may have been applied.
//! 2. Each member's store is read back as the events of a watch from
//!    revision 2 over the whole keyspace, served by that member alone.
//!    [`model_of`] replays them ([`watch_check::History::replay`]): one
//!    revision per write, none missing, deletes as counted.
//! 3. [`check_acks`]: on every member, each acknowledged write is the
//!    event of its key at its revision, and each key's latest value is its
//!    last acknowledged write or a newer maybe-applied one
//!    ([`acks::judge_at_revision`], [`acks::judge_latest`]).
//! 4. [`first_divergence`] names the first revision at which two members'
//!    stores differ (the HashKV comparison says only whether they do).
//! 5. [`check_watcher`]: the streams of one watcher, each of etcd's shape
//!    ([`watch_check::read_watcher`]), together hold every event its
//!    member's store has in the watched range from the first revision on,
//!    in revision order, none missing or repeated. A stream may break only
//!    while its member was down (crashed, or stopped by a failed fsync, up
//!    to [`RESTART_GRACE_MS`] after its restart); the next stream starts
//!    after the last event received.

use std::collections::BTreeMap;

use proto::mvccpb::Event;
use proto::mvccpb::event::EventType;

use super::faults::DownWindow;
use super::workload::WatcherLog;
use crate::acks::{self, Ledger};
use crate::lin::{Op, Request, Response};
use crate::watch_check::{self, History, KeyRange, WatchSpec, Write, WriteOp};

/// A watch stream may break this long after its member's restart.
pub const RESTART_GRACE_MS: u64 = 2_000;
/// At most this many failures are listed per member and check.
const MAX_LISTED: usize = 5;

/// Step 1.
pub fn ledger_of(history: &[Op]) -> Ledger {
    let mut ledger = Ledger::default();
    for op in history {
        let (key, value) = match &op.request {
            Request::Put { key, value } | Request::CasPut { key, value, .. } => (key, value),
            Request::Get { .. } => continue,
        };
        match op.response {
            Response::Put { revision }
            | Response::CasPut {
                succeeded: true,
                revision,
                ..
            } => ledger.ack(key.clone(), value.clone(), revision),
            Response::Unknown => ledger.maybe(key.clone(), value.clone()),
            Response::CasPut {
                succeeded: false, ..
            }
            | Response::Get { .. } => {}
        }
    }
    ledger
}

/// Step 2: the model of a store whose events from revision 2 on are
/// `events` (the store starts empty at revision 1).
pub fn model_of(events: &[Event]) -> Result<History, String> {
    let mut by_revision: BTreeMap<i64, Vec<WriteOp>> = BTreeMap::new();
    for e in events {
        let key = e.kv.as_ref().map(|kv| kv.key.clone()).unwrap_or_default();
        let op = if e.r#type == EventType::Delete as i32 {
            WriteOp::Delete {
                range: KeyRange::single(&key),
                deleted: 1,
            }
        } else {
            let value = e.kv.as_ref().map(|kv| kv.value.clone()).unwrap_or_default();
            WriteOp::Put { key, value }
        };
        by_revision
            .entry(watch_check::revision(e))
            .or_default()
            .push(op);
    }
    let writes = by_revision
        .into_iter()
        .map(|(revision, ops)| Write { revision, ops })
        .collect();
    History::replay(1, writes)
}

/// Step 3 on one member: the failures, at most [`MAX_LISTED`] of them,
/// then how many more.
pub fn check_acks(ledger: &Ledger, events: &[Event], model: &History) -> Vec<String> {
    let mut puts: BTreeMap<(i64, &[u8]), &[u8]> = BTreeMap::new();
    for e in events {
        if e.r#type == EventType::Put as i32
            && let Some(kv) = &e.kv
        {
            puts.insert((kv.mod_revision, &kv.key), &kv.value);
        }
    }
    let mut failures = Vec::new();
    for ack in ledger.acks() {
        let found = puts
            .get(&(ack.revision, ack.key.as_slice()))
            .map(|value| (*value, ack.revision));
        if let Err(e) = acks::judge_at_revision(ack, found) {
            failures.push(e);
        }
    }
    for (key, last) in ledger.last_acks() {
        let found = model
            .state()
            .get(key)
            .map(|kv| (kv.value.as_slice(), kv.mod_revision));
        if let Err(e) = acks::judge_latest(last, found, &ledger.maybe_values(key)) {
            failures.push(e);
        }
    }
    capped(failures)
}

/// Step 4: the first revision at which `a` and `b` (two members' events)
/// differ, in words; `None` when they are the same.
pub fn first_divergence(a: &[Event], b: &[Event]) -> Option<String> {
    let at = a.iter().zip(b).position(|(x, y)| x != y);
    match at {
        Some(i) => Some(format!(
            "first difference at revision {}: {} vs {}",
            watch_check::revision(&a[i]).min(watch_check::revision(&b[i])),
            watch_check::show_event(&a[i]),
            watch_check::show_event(&b[i])
        )),
        None if a.len() != b.len() => Some(format!(
            "{} events vs {}, the same up to the shorter",
            a.len(),
            b.len()
        )),
        None => None,
    }
}

/// What a watcher that passed received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatcherSummary {
    pub events: usize,
    /// Streams after the first (resumptions after a break).
    pub resumptions: usize,
}

/// Step 5: `log` against its member's `model`, from `first_revision`.
pub fn check_watcher(
    log: &WatcherLog,
    first_revision: i64,
    model: &History,
    down: &[DownWindow],
) -> Result<WatcherSummary, String> {
    let mut got: Vec<Event> = Vec::new();
    for (n, segment) in log.segments.iter().enumerate() {
        let expected_start = got
            .last()
            .map_or(first_revision, |e| watch_check::revision(e) + 1);
        if segment.start_revision != expected_start {
            return Err(format!(
                "stream #{n} was opened from revision {}, not {expected_start} (after the last \
                 event received)",
                segment.start_revision
            ));
        }
        let received = watch_check::read_watcher(&segment.responses)
            .map_err(|e| format!("stream #{n} (from revision {expected_start}): {e}"))?;
        if let Some(c) = received.compact_revision {
            return Err(format!(
                "stream #{n} canceled for a compaction at {c}, but nothing was compacted"
            ));
        }
        if let Some((at_ms, why)) = &segment.broke
            && !down.iter().any(|w| covers(w, log.member, *at_ms))
        {
            return Err(format!(
                "stream #{n} broke at {:.3}s while its member was up: {why}",
                *at_ms as f64 / 1000.0
            ));
        }
        got.extend(received.events);
    }
    // The model does not know leases: compare the events without them.
    for e in &mut got {
        if let Some(kv) = e.kv.as_mut() {
            kv.lease = 0;
        }
    }
    let spec = WatchSpec::new(log.range.clone(), first_revision);
    let want = model.expected(&spec, first_revision);
    watch_check::compare_events(&got, &want, 0)?;
    Ok(WatcherSummary {
        events: got.len(),
        resumptions: log.segments.len().saturating_sub(1),
    })
}

fn covers(w: &DownWindow, member: usize, at_ms: u64) -> bool {
    w.member == member
        && w.from_ms <= at_ms
        && w.to_ms.is_none_or(|to| at_ms <= to + RESTART_GRACE_MS)
}

fn capped(mut failures: Vec<String>) -> Vec<String> {
    if failures.len() > MAX_LISTED {
        let more = failures.len() - MAX_LISTED;
        failures.truncate(MAX_LISTED);
        failures.push(format!("... and {more} more"));
    }
    failures
}

#[cfg(test)]
mod tests {
    use proto::etcdserverpb::{ResponseHeader, WatchResponse};
    use proto::mvccpb::KeyValue;

    use super::*;
    use crate::chaos::workload::WatchSegment;

    /// Puts of `(key, value)` at revisions 2, 3, ... as a store's events.
    fn store(puts: &[(&str, &str)]) -> Vec<Event> {
        let mut versions: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
        puts.iter()
            .enumerate()
            .map(|(n, (key, value))| {
                let rev = n as i64 + 2;
                let (create, version) = versions.entry(key).or_insert((rev, 0));
                *version += 1;
                Event {
                    r#type: EventType::Put as i32,
                    kv: Some(KeyValue {
                        key: key.as_bytes().to_vec(),
                        value: value.as_bytes().to_vec(),
                        create_revision: *create,
                        mod_revision: rev,
                        version: *version,
                        lease: 0,
                    }),
                    prev_kv: None,
                }
            })
            .collect()
    }

    fn op(request: Request, response: Response) -> Op {
        Op {
            client: 0,
            member: 0,
            call: 0,
            ret: 1,
            request,
            response,
        }
    }

    fn put(key: &str, value: &str) -> Request {
        Request::Put {
            key: key.into(),
            value: value.into(),
        }
    }

    fn history_of(puts: &[(&str, &str)]) -> Vec<Op> {
        puts.iter()
            .enumerate()
            .map(|(n, (k, v))| {
                op(
                    put(k, v),
                    Response::Put {
                        revision: n as i64 + 2,
                    },
                )
            })
            .collect()
    }

    const PUTS: [(&str, &str); 4] = [("k0", "a"), ("k1", "b"), ("k0", "c"), ("k1", "d")];

    #[test]
    fn the_ledger_acknowledges_applied_writes_and_keeps_unanswered_ones_as_maybe() {
        let mut history = history_of(&PUTS[..2]);
        history.push(op(
            Request::CasPut {
                key: b"k0".to_vec(),
                expected_mod_revision: 2,
                value: b"x".to_vec(),
            },
            Response::CasPut {
                succeeded: true,
                revision: 4,
                kv: None,
            },
        ));
        history.push(op(put("k1", "y"), Response::Unknown));
        history.push(op(
            Request::Get {
                key: b"k0".to_vec(),
            },
            Response::Get {
                revision: 4,
                kv: None,
            },
        ));
        let ledger = ledger_of(&history);
        assert_eq!(ledger.acks().len(), 3);
        assert_eq!(ledger.acks()[2].revision, 4);
        assert_eq!(ledger.maybe_values(b"k1"), vec![b"y".as_slice()]);
    }

    #[test]
    fn a_store_holding_every_acknowledged_write_passes() {
        let events = store(&PUTS);
        let model = model_of(&events).unwrap();
        let ledger = ledger_of(&history_of(&PUTS));
        assert_eq!(check_acks(&ledger, &events, &model), Vec::<String>::new());
    }

    #[test]
    fn a_write_stored_under_another_key_is_a_lost_acknowledged_write() {
        let ledger = ledger_of(&history_of(&PUTS));
        let mut lossy = PUTS;
        lossy[2] = ("lost/k0", "c");
        let events = store(&lossy);
        let model = model_of(&events).unwrap();
        let failures = check_acks(&ledger, &events, &model);
        assert!(
            failures[0].contains("acknowledged k0 = c is missing at its revision 4"),
            "{failures:?}"
        );
        assert!(
            failures
                .iter()
                .any(|f| f.contains("k0 holds a at 2, neither its last acknowledged c")),
            "{failures:?}"
        );
    }

    #[test]
    fn a_missing_revision_fails_the_model() {
        let mut events = store(&PUTS);
        events.remove(1);
        let err = model_of(&events).unwrap_err();
        assert!(
            err.contains("revision 3 has no acknowledged write"),
            "{err}"
        );
    }

    #[test]
    fn divergent_members_are_named_by_revision() {
        let a = store(&PUTS);
        let mut other = PUTS;
        other[3] = ("k1", "z");
        let b = store(&other);
        assert_eq!(first_divergence(&a, &a), None);
        let why = first_divergence(&a, &b).unwrap();
        assert!(why.starts_with("first difference at revision 5"), "{why}");
        assert!(first_divergence(&a, &a[..3]).is_some());
    }

    fn created(revision: i64) -> WatchResponse {
        WatchResponse {
            header: Some(ResponseHeader {
                revision,
                ..Default::default()
            }),
            created: true,
            ..Default::default()
        }
    }

    fn delivered(events: &[Event]) -> WatchResponse {
        WatchResponse {
            header: Some(ResponseHeader {
                revision: events.iter().map(watch_check::revision).max().unwrap_or(0),
                ..Default::default()
            }),
            events: events.to_vec(),
            ..Default::default()
        }
    }

    fn segment(start: i64, events: &[Event], broke: Option<u64>) -> WatchSegment {
        let mut responses = vec![created(start - 1)];
        responses.extend(events.iter().map(|e| delivered(std::slice::from_ref(e))));
        WatchSegment {
            start_revision: start,
            responses,
            broke: broke.map(|at| (at, "Unavailable: gone".to_string())),
        }
    }

    fn watcher(segments: Vec<WatchSegment>) -> WatcherLog {
        WatcherLog {
            member: 1,
            range: KeyRange::prefix(b"k"),
            segments,
            failed_opens: 0,
        }
    }

    const DOWN: [DownWindow; 1] = [DownWindow {
        member: 1,
        from_ms: 1_000,
        to_ms: Some(3_000),
    }];

    #[test]
    fn a_stream_resumed_after_its_member_crashed_is_complete() {
        let events = store(&PUTS);
        let model = model_of(&events).unwrap();
        let log = watcher(vec![
            segment(2, &events[..2], Some(1_500)),
            segment(4, &events[2..], None),
        ]);
        let summary = check_watcher(&log, 2, &model, &DOWN).unwrap();
        assert_eq!(
            summary,
            WatcherSummary {
                events: 4,
                resumptions: 1
            }
        );
    }

    #[test]
    fn a_lost_or_repeated_event_or_a_break_while_up_fails_the_watcher() {
        let events = store(&PUTS);
        let model = model_of(&events).unwrap();

        let gap = watcher(vec![segment(
            2,
            &[events[0].clone(), events[2].clone()],
            None,
        )]);
        let err = check_watcher(&gap, 2, &model, &DOWN).unwrap_err();
        assert!(err.contains("event #1 differs"), "{err}");

        let mut repeated = segment(4, &events[1..], None);
        repeated.start_revision = 4;
        let log = watcher(vec![segment(2, &events[..2], Some(1_500)), repeated]);
        let err = check_watcher(&log, 2, &model, &DOWN).unwrap_err();
        assert!(err.contains("event #2 differs"), "{err}");

        let log = watcher(vec![
            segment(2, &events[..2], Some(6_000)),
            segment(4, &events[2..], None),
        ]);
        let err = check_watcher(&log, 2, &model, &DOWN).unwrap_err();
        assert!(
            err.contains("broke at 6.000s while its member was up"),
            "{err}"
        );

        let short = watcher(vec![segment(2, &events[..3], None)]);
        let err = check_watcher(&short, 2, &model, &DOWN).unwrap_err();
        assert!(err.contains("3 events received, 4 due"), "{err}");
    }

    #[test]
    fn failures_are_capped() {
        let many: Vec<String> = (0..9).map(|n| n.to_string()).collect();
        let listed = capped(many);
        assert_eq!(listed.len(), MAX_LISTED + 1);
        assert_eq!(listed.last().unwrap(), "... and 4 more");
    }
}
