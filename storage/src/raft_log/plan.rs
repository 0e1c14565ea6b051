//! The rules both log stores follow, as pure functions over the log's state.
//!
//! 1. [`plan_write`] checks a [`LogWrite`] against the current [`LogState`]
//!    before anything is touched: snapshot first (`SnapshotOutOfDate` below
//!    the first index), then entries (contiguous, no gap after the last
//!    index, compacted prefix skipped), then hard state and commit index
//!    (commit never beyond the resulting last index, or raft-rs panics with
//!    "state.commit is out of range" on restart). It returns what to change
//!    and the state after the write; a store applies it in one txn.
//! 2. [`plan_compact`] decides where compaction may stop: never beyond
//!    `last_index + 1`, never past what the stored snapshot covers.
//! 3. [`check_entries_range`], [`term_at`], [`page`] and [`snapshot_for`]
//!    answer `raft::Storage` reads the same way in both stores.

use raft::eraftpb::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use raft::util::limit_size;

use super::LogWrite;
use crate::StorageError;

/// Which entries a log holds: `(truncated_index, last_index]`, and the term of
/// entry `truncated_index` (kept for matching after compaction; 0/0 for a log
/// that never discarded anything).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct LogBounds {
    pub truncated_index: u64,
    pub truncated_term: u64,
    pub last_index: u64,
}

impl LogBounds {
    pub fn first_index(&self) -> u64 {
        self.truncated_index + 1
    }
}

/// What a store mirrors in memory: loaded at open, replaced after each commit.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct LogState {
    pub hard_state: HardState,
    pub conf_state: ConfState,
    pub bounds: LogBounds,
    /// Metadata of the snapshot `snapshot()` serves.
    pub snapshot: Option<SnapshotMetadata>,
    /// False until the first write of any kind (a fresh member).
    pub written: bool,
}

/// A checked [`LogWrite`]: what to change, and the state afterwards.
#[derive(Debug)]
pub(crate) struct WritePlan<'a> {
    /// Snapshot to install: drop every entry, store `next.bounds`'s truncation
    /// point, the conf state and the snapshot itself.
    pub install: Option<&'a Snapshot>,
    /// Entries to store; stored entries above the last of them are deleted.
    pub append: &'a [Entry],
    /// The new hard state, when it changes.
    pub hard_state: Option<HardState>,
    pub next: LogState,
}

impl WritePlan<'_> {
    pub fn is_noop(&self) -> bool {
        self.install.is_none() && self.append.is_empty() && self.hard_state.is_none()
    }
}

/// Checks `w` against `state` (see the module docs for the rules).
pub(crate) fn plan_write<'a>(
    w: &'a LogWrite,
    state: &LogState,
) -> Result<WritePlan<'a>, StorageError> {
    let mut next = state.clone();
    let mut hs = state.hard_state.clone();
    if let Some(snap) = &w.snapshot {
        let meta = snap.get_metadata();
        if meta.index < next.bounds.first_index() {
            return Err(raft::Error::Store(raft::StorageError::SnapshotOutOfDate).into());
        }
        next.bounds = LogBounds {
            truncated_index: meta.index,
            truncated_term: meta.term,
            last_index: meta.index,
        };
        next.conf_state = meta.get_conf_state().clone();
        next.snapshot = Some(meta.clone());
        hs.term = hs.term.max(meta.term);
        hs.commit = meta.index;
    }
    let append = check_append(&w.entries, next.bounds)?;
    if let Some(last) = append.last() {
        next.bounds.last_index = last.index;
    }
    if let Some(new) = &w.hard_state {
        hs = new.clone();
    }
    if let Some(commit) = w.commit {
        hs.commit = commit;
    }
    if hs.commit > next.bounds.last_index {
        return Err(StorageError::Corrupt(format!(
            "refused write: commit {} beyond last index {}",
            hs.commit, next.bounds.last_index
        )));
    }
    let hard_state = (hs != state.hard_state).then(|| hs.clone());
    next.hard_state = hs;
    let mut plan = WritePlan {
        install: w.snapshot.as_ref(),
        append,
        hard_state,
        next,
    };
    plan.next.written |= !plan.is_noop();
    Ok(plan)
}

/// The part of `entries` to store: checks they are contiguous and leave no
/// gap, and skips those at or below the truncation point.
fn check_append(entries: &[Entry], bounds: LogBounds) -> Result<&[Entry], StorageError> {
    let Some(first) = entries.first() else {
        return Ok(entries);
    };
    for (prev, e) in entries.iter().zip(&entries[1..]) {
        if e.index != prev.index + 1 {
            return Err(StorageError::Corrupt(format!(
                "refused write: entry {} follows entry {}",
                e.index, prev.index
            )));
        }
    }
    let compacted = bounds.first_index().saturating_sub(first.index);
    let rest = &entries[usize::try_from(compacted)
        .unwrap_or(usize::MAX)
        .min(entries.len())..];
    if let Some(first) = rest.first()
        && first.index > bounds.last_index + 1
    {
        return Err(StorageError::Corrupt(format!(
            "refused write: entry {} leaves a gap after last index {}",
            first.index, bounds.last_index
        )));
    }
    Ok(rest)
}

/// Where compaction to `compact_index` may actually go: `None` when nothing
/// is to be discarded. Errors beyond `last_index + 1`; stops at the stored
/// snapshot's index + 1 so every discarded entry is covered by the snapshot a
/// lagging follower will receive.
pub(crate) fn plan_compact(
    state: &LogState,
    compact_index: u64,
) -> Result<Option<u64>, StorageError> {
    let bounds = state.bounds;
    if compact_index > bounds.last_index + 1 {
        return Err(StorageError::Corrupt(format!(
            "refused compaction: index {compact_index} beyond last index {} + 1",
            bounds.last_index
        )));
    }
    let covered = state.snapshot.as_ref().map_or(0, |m| m.index) + 1;
    if compact_index > covered {
        tracing::warn!(
            "raft log: compaction to {compact_index} stops at {covered}: the stored snapshot \
             covers entries up to {}",
            covered - 1
        );
    }
    let effective = compact_index.min(covered);
    Ok((effective > bounds.first_index()).then_some(effective))
}

/// `initialize` is only for a fresh member.
pub(crate) fn check_initialize(state: &LogState) -> Result<(), StorageError> {
    if state.written {
        return Err(raft::Error::ConfigInvalid("raft log store already initialized".into()).into());
    }
    Ok(())
}

/// `set_snapshot` keeps the latest snapshot: true when `snap` should replace
/// the stored one.
pub(crate) fn replaces_snapshot(state: &LogState, snap: &Snapshot) -> bool {
    state
        .snapshot
        .as_ref()
        .is_none_or(|m| m.index <= snap.get_metadata().index)
}

/// Checks a `Storage::entries(low, high)` range against the bounds.
pub(crate) fn check_entries_range(bounds: LogBounds, low: u64, high: u64) -> raft::Result<()> {
    if low < bounds.first_index() {
        return Err(raft::Error::Store(raft::StorageError::Compacted));
    }
    if high > bounds.last_index + 1 {
        return Err(raft::Error::Store(raft::StorageError::Unavailable));
    }
    if low > high {
        return Err(raft::Error::Store(raft::StorageError::Other(
            format!("invalid entries range [{low}, {high})").into(),
        )));
    }
    Ok(())
}

/// Where the term of an index comes from.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum TermAt {
    /// The truncation point's term (or 0 for index 0 of a fresh log).
    Known(u64),
    /// Read the stored entry.
    Stored,
}

/// `Storage::term(idx)`: defined for `[first_index - 1, last_index]`.
pub(crate) fn term_at(bounds: LogBounds, idx: u64) -> raft::Result<TermAt> {
    if idx == bounds.truncated_index {
        return Ok(TermAt::Known(bounds.truncated_term));
    }
    if idx < bounds.truncated_index {
        return Err(raft::Error::Store(raft::StorageError::Compacted));
    }
    if idx > bounds.last_index {
        return Err(raft::Error::Store(raft::StorageError::Unavailable));
    }
    Ok(TermAt::Stored)
}

/// Collects entries in order until `max_size` (protobuf bytes) is exceeded,
/// always returning at least one (raft-rs `limit_size` semantics), without
/// reading further than needed.
pub(crate) fn page<E>(
    entries: impl Iterator<Item = Result<Entry, E>>,
    max_size: Option<u64>,
) -> Result<Vec<Entry>, E> {
    let max_size = max_size.filter(|&m| m != raft::NO_LIMIT);
    let mut out = Vec::new();
    let mut size = 0u64;
    for entry in entries {
        let entry = entry?;
        size += u64::from(protobuf::Message::compute_size(&entry));
        out.push(entry);
        if max_size.is_some_and(|max| size > max) {
            break;
        }
    }
    limit_size(&mut out, max_size);
    Ok(out)
}

/// `Storage::snapshot(request_index)`: the stored snapshot when it is at
/// least that recent and carries data (a record without data only marks
/// where the log was compacted: nothing to send), else
/// `SnapshotTemporarilyUnavailable` (raft retries).
pub(crate) fn snapshot_for(
    stored: Option<Snapshot>,
    request_index: u64,
    to: u64,
) -> raft::Result<Snapshot> {
    match stored {
        Some(snap)
            if snap.get_metadata().index >= request_index
                && !snap.get_data().is_empty()
                && in_conf(snap.get_metadata().get_conf_state(), to) =>
        {
            Ok(snap)
        }
        _ => Err(raft::Error::Store(
            raft::StorageError::SnapshotTemporarilyUnavailable,
        )),
    }
}

/// True when `id` is a voter or learner of `cs` (raft-rs refuses to restore
/// a snapshot whose configuration does not name the receiver).
fn in_conf(cs: &ConfState, id: u64) -> bool {
    cs.get_voters()
        .iter()
        .chain(cs.get_learners())
        .chain(cs.get_voters_outgoing())
        .any(|v| *v == id)
}

/// The index and term of the founding point (see [`founding_state`]).
pub const FOUNDING_INDEX: u64 = 1;

/// The state a founding member's log starts from: the founding conf state,
/// and the log truncated at index 1, term 1, with that point committed. No
/// entry at or below it exists anywhere, so a member that joins later can
/// never be sent the log from its start (it would miss the founding conf
/// state): raft-rs finds index 1 compacted and sends a snapshot instead.
pub(crate) fn founding_state(state: &LogState, cs: &ConfState) -> Result<LogState, StorageError> {
    check_initialize(state)?;
    let hard_state = HardState {
        term: FOUNDING_INDEX,
        commit: FOUNDING_INDEX,
        ..Default::default()
    };
    Ok(LogState {
        hard_state,
        conf_state: cs.clone(),
        bounds: LogBounds {
            truncated_index: FOUNDING_INDEX,
            truncated_term: FOUNDING_INDEX,
            last_index: FOUNDING_INDEX,
        },
        snapshot: None,
        written: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            ..Default::default()
        }
    }

    fn bounds(truncated_index: u64, truncated_term: u64, last_index: u64) -> LogBounds {
        LogBounds {
            truncated_index,
            truncated_term,
            last_index,
        }
    }

    #[test]
    fn append_rules() {
        // (bounds, appended indexes, Ok(kept indexes) or Err)
        let b = bounds(4, 2, 8);
        let cases: &[(&[u64], Option<&[u64]>)] = &[
            (&[], Some(&[])),
            (&[9, 10], Some(&[9, 10])),
            (&[6, 7], Some(&[6, 7])),
            (&[3, 4, 5, 6], Some(&[5, 6])),
            (&[1, 2], Some(&[])),
            (&[10], None),
            (&[6, 8], None),
            (&[6, 5], None),
        ];
        for (input, want) in cases {
            let ents: Vec<Entry> = input.iter().map(|&i| entry(i, 3)).collect();
            let got = check_append(&ents, b).map(|r| r.iter().map(|e| e.index).collect::<Vec<_>>());
            match want {
                Some(want) => assert_eq!(got.unwrap(), want.to_vec(), "{input:?}"),
                None => assert!(got.is_err(), "{input:?} accepted"),
            }
        }
    }

    #[test]
    fn term_and_range_rules() {
        let b = bounds(4, 2, 8);
        assert_eq!(term_at(b, 4).unwrap(), TermAt::Known(2));
        assert_eq!(term_at(b, 5).unwrap(), TermAt::Stored);
        assert_eq!(term_at(b, 8).unwrap(), TermAt::Stored);
        assert!(matches!(
            term_at(b, 3),
            Err(raft::Error::Store(raft::StorageError::Compacted))
        ));
        assert!(matches!(
            term_at(b, 9),
            Err(raft::Error::Store(raft::StorageError::Unavailable))
        ));
        assert!(check_entries_range(b, 5, 9).is_ok());
        assert!(check_entries_range(b, 7, 7).is_ok());
        assert!(check_entries_range(b, 4, 6).is_err());
        assert!(check_entries_range(b, 5, 10).is_err());
        assert!(check_entries_range(b, 7, 6).is_err());
    }

    #[test]
    fn compaction_stops_at_snapshot() {
        let mut state = LogState {
            bounds: bounds(0, 0, 10),
            ..Default::default()
        };
        assert_eq!(
            plan_compact(&state, 5).unwrap(),
            None,
            "no snapshot covers anything"
        );
        state.snapshot = Some(SnapshotMetadata {
            index: 6,
            term: 1,
            ..Default::default()
        });
        assert_eq!(plan_compact(&state, 5).unwrap(), Some(5));
        assert_eq!(plan_compact(&state, 9).unwrap(), Some(7));
        assert_eq!(plan_compact(&state, 1).unwrap(), None);
        assert!(plan_compact(&state, 12).is_err());
    }

    #[test]
    fn page_matches_limit_size() {
        let ents: Vec<Entry> = (1..=6)
            .map(|i| Entry {
                index: i,
                term: 1,
                data: vec![0u8; 10 * i as usize].into(),
                ..Default::default()
            })
            .collect();
        let total: u64 = ents
            .iter()
            .map(|e| u64::from(protobuf::Message::compute_size(e)))
            .sum();
        for max in (0..=total + 5).chain([raft::NO_LIMIT]) {
            let mut want = ents.clone();
            limit_size(&mut want, Some(max));
            let got = page(ents.iter().cloned().map(Ok::<_, ()>), Some(max)).unwrap();
            assert_eq!(got, want, "max_size {max}");
        }
        assert_eq!(
            page(ents.iter().cloned().map(Ok::<_, ()>), None).unwrap(),
            ents
        );
    }
}
