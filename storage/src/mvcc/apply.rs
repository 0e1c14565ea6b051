//! Applying one replicated request: etcd's `applierV3backend` (Put,
//! DeleteRange, Txn, Compaction, LeaseGrant, LeaseRevoke) over a
//! [`WriteTxn`], etcd's `storeTxnWrite`.
//!
//! 1. A request opens a `WriteTxn` at the current revision `R`. Every change
//!    it makes is written at `R + 1` with the next sub-revision: the record
//!    goes into the batch, the key index and the lease attachments are
//!    updated in memory, and an undo step is journalled.
//! 2. Reads inside the request go through the same `WriteTxn`, so they see
//!    its earlier changes (and report revision `R + 1` once it changed
//!    something).
//! 3. Errors a client can cause are found before the first change (etcd's
//!    pre-checks); should one still surface half-way through a txn, the
//!    journal undoes every change, so a failed request changes nothing.
//! 4. `finish` makes the revision `R + 1` current only if something changed,
//!    and hands back its events (`mvccpb.Event`, as an etcd watcher receives
//!    them; nothing consumes them yet): PUT with the full KeyValue, DELETE
//!    with only key and mod_revision, each with the key's KeyValue from
//!    before the request as `prev_kv`.

use proto::etcdserverpb::request_op::Request;
use proto::etcdserverpb::response_op::Response;
use proto::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse,
    LeaseGrantRequest, LeaseGrantResponse, LeaseRevokeRequest, LeaseRevokeResponse, PutRequest,
    PutResponse, ResponseHeader, ResponseOp, TxnRequest, TxnResponse,
};
use proto::internal::InternalRequest;
use proto::internal::internal_request::Request as Internal;
use proto::mvccpb::event::EventType;
use proto::mvccpb::{Event, KeyValue};

use super::backend::{BackendReader, Lease, WriteBatch, encode_record};
use super::key_index::{KeyIndex, KeyRange};
use super::range::{self, RangeOptions, range_keys};
use super::revision::Revision;
use super::state::State;
use super::txn::{
    branch, check_put, check_range, check_requests, compare_to_path, is_txn_read_only,
};
use super::view::{Fault, View, load_record};
use crate::auth::AuthInfo;
use crate::error::{EtcdError, StorageError};

/// The largest lease TTL etcd grants (`lease.MaxLeaseTTL`), in seconds.
pub const MAX_LEASE_TTL: i64 = 9_000_000_000;

/// The outcome of one applied raft entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    /// The raft index of the entry.
    pub index: u64,
    /// The request id from the envelope (0 for an entry without request).
    pub id: u64,
    /// The store revision after the entry.
    pub revision: i64,
    /// The response, or the client error (which changed nothing).
    pub result: Result<ApplyResponse, EtcdError>,
    /// What an etcd watcher would see, in change order (empty on error): PUT
    /// with the full KeyValue, DELETE with only key and mod_revision.
    /// `prev_kv` is always filled (the key before this request, if it
    /// existed); a watch hub would drop it for watchers that did not ask for
    /// it. No caller consumes these yet (there is no Watch service).
    pub events: Vec<Event>,
}

/// The response of an applied request; headers carry only `revision`.
#[derive(Debug, Clone, PartialEq)]
pub enum ApplyResponse {
    Put(PutResponse),
    DeleteRange(DeleteRangeResponse),
    Txn(TxnResponse),
    Compaction(CompactionResponse),
    LeaseGrant(LeaseGrantResponse),
    LeaseRevoke(LeaseRevokeResponse),
    Alarm(proto::etcdserverpb::AlarmResponse),
    /// A membership change: the member table after it.
    Members(Vec<proto::etcdserverpb::Member>),
    /// An auth request's answer.
    Auth(crate::auth::AuthReply),
    /// Entries without a request (raft's empty entry at a new term), and
    /// requests that answer nothing (lease checkpoints, member attributes).
    Empty,
}

fn header(revision: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader {
        revision,
        ..Default::default()
    })
}

/// One step of the undo journal.
#[derive(Debug)]
enum Undo {
    Record(Revision),
    IndexPut { key: Vec<u8>, previous: Revision },
    IndexTombstone { key: Vec<u8>, previous: Revision },
    Attach { lease: i64, key: Vec<u8> },
    Detach { lease: i64, key: Vec<u8> },
}

/// The changes of one request, as etcd's `storeTxnWrite`.
pub(crate) struct WriteTxn<'a, R: BackendReader + ?Sized> {
    state: &'a mut State,
    reader: &'a R,
    batch: &'a mut WriteBatch,
    begin_rev: i64,
    changes: i64,
    events: Vec<Event>,
    undo: Vec<Undo>,
}

impl<R: BackendReader + ?Sized> View for WriteTxn<'_, R> {
    fn index(&self) -> &super::key_index::TreeIndex {
        &self.state.index
    }

    fn rev(&self) -> i64 {
        if self.changes > 0 {
            self.begin_rev + 1
        } else {
            self.begin_rev
        }
    }

    fn first_rev(&self) -> i64 {
        self.state.compact_rev
    }

    fn load(&self, rev: Revision) -> Result<KeyValue, Fault> {
        match self.batch.records.get(&rev) {
            Some(bytes) => load_record(Some(bytes), rev),
            None => load_record(self.reader.record(rev)?, rev),
        }
    }

    fn lease_exists(&self, id: i64) -> bool {
        self.state.leases.contains_key(&id)
    }
}

impl<'a, R: BackendReader + ?Sized> WriteTxn<'a, R> {
    pub(crate) fn new(state: &'a mut State, reader: &'a R, batch: &'a mut WriteBatch) -> Self {
        let begin_rev = state.current_rev;
        Self {
            state,
            reader,
            batch,
            begin_rev,
            changes: 0,
            events: Vec::new(),
            undo: Vec::new(),
        }
    }

    /// The revision this request's changes get.
    fn write_rev(&self) -> i64 {
        self.begin_rev + 1
    }

    fn previous_modified(&self, key: &[u8]) -> Revision {
        self.state
            .index
            .key_index(key)
            .map_or(Revision::default(), KeyIndex::modified)
    }

    /// The KeyValue an event reports as `prev_kv`: the key as it was before
    /// this request (what etcd's watch reads at `mod_revision - 1`).
    fn prev_for_event(
        &self,
        key: &[u8],
        current: Option<&KeyValue>,
    ) -> Result<Option<KeyValue>, Fault> {
        if self.previous_modified(key).main != self.write_rev() {
            return Ok(current.cloned());
        }
        // Changed earlier in this same request: look before the request.
        match self.state.index.get(key, self.begin_rev) {
            Some(at) => Ok(Some(self.load(at.modified)?)),
            None => Ok(None),
        }
    }

    fn attach(&mut self, lease: i64, key: &[u8]) {
        if self
            .state
            .lease_keys
            .entry(lease)
            .or_default()
            .insert(key.to_vec())
        {
            self.undo.push(Undo::Attach {
                lease,
                key: key.to_vec(),
            });
        }
    }

    fn detach(&mut self, lease: i64, key: &[u8]) {
        if let Some(keys) = self.state.lease_keys.get_mut(&lease) {
            if keys.remove(key) {
                self.undo.push(Undo::Detach {
                    lease,
                    key: key.to_vec(),
                });
            }
            if keys.is_empty() {
                self.state.lease_keys.remove(&lease);
            }
        }
    }

    /// etcd's `storeTxnWrite.put`.
    pub(crate) fn put(&mut self, key: &[u8], value: Vec<u8>, lease: i64) -> Result<(), Fault> {
        if lease != 0 && !self.lease_exists(lease) {
            return Err(EtcdError::LeaseNotFound.into());
        }
        let rev = self.write_rev();
        let (created, version, old) = match self.state.index.get(key, rev) {
            Some(at) => (at.created.main, at.version, Some(self.load(at.modified)?)),
            None => (rev, 0, None),
        };
        let prev_kv = self.prev_for_event(key, old.as_ref())?;
        let old_lease = old.as_ref().map_or(0, |kv| kv.lease);

        let idx_rev = Revision::new(rev, self.changes);
        let kv = KeyValue {
            key: key.to_vec(),
            create_revision: created,
            mod_revision: rev,
            version: version + 1,
            value,
            lease,
        };
        self.batch
            .records
            .insert(idx_rev, encode_record(&kv, false));
        self.undo.push(Undo::Record(idx_rev));
        let previous = self.previous_modified(key);
        self.state.index.put(key, idx_rev);
        self.undo.push(Undo::IndexPut {
            key: key.to_vec(),
            previous,
        });
        self.changes += 1;
        if old_lease != 0 {
            self.detach(old_lease, key);
        }
        if lease != 0 {
            self.attach(lease, key);
        }
        self.events.push(Event {
            r#type: EventType::Put as i32,
            kv: Some(kv),
            prev_kv,
        });
        Ok(())
    }

    /// etcd's `storeTxnWrite.deleteRange`; returns the deleted KeyValues.
    pub(crate) fn delete_range(&mut self, range: KeyRange<'_>) -> Result<Vec<KeyValue>, Fault> {
        let mut found = Vec::new();
        self.state.index.visit(range, self.rev(), |key, at| {
            found.push((key.to_vec(), at.modified))
        });
        let mut deleted = Vec::with_capacity(found.len());
        for (key, modified) in found {
            let kv = self.load(modified)?;
            self.delete(key, &kv)?;
            deleted.push(kv);
        }
        Ok(deleted)
    }

    fn delete(&mut self, key: Vec<u8>, current: &KeyValue) -> Result<(), Fault> {
        let rev = self.write_rev();
        let prev_kv = self.prev_for_event(&key, Some(current))?;
        let idx_rev = Revision::new(rev, self.changes);
        let marker = KeyValue {
            key: key.clone(),
            ..Default::default()
        };
        self.batch
            .records
            .insert(idx_rev, encode_record(&marker, true));
        self.undo.push(Undo::Record(idx_rev));
        let previous = self.previous_modified(&key);
        if !self.state.index.tombstone(&key, idx_rev) {
            return Err(
                StorageError::Corrupt(format!("tombstone of a key not alive at {rev}")).into(),
            );
        }
        self.undo.push(Undo::IndexTombstone {
            key: key.clone(),
            previous,
        });
        self.changes += 1;
        if current.lease != 0 {
            self.detach(current.lease, &key);
        }
        let kv = KeyValue {
            key,
            mod_revision: rev,
            ..Default::default()
        };
        self.events.push(Event {
            r#type: EventType::Delete as i32,
            kv: Some(kv),
            prev_kv,
        });
        Ok(())
    }

    /// Makes the request's revision current if it changed something; returns
    /// its events.
    pub(crate) fn finish(self) -> Vec<Event> {
        if self.changes > 0 {
            self.state.current_rev = self.begin_rev + 1;
        }
        self.events
    }

    /// Undoes every change of the request.
    pub(crate) fn rollback(self) {
        for step in self.undo.into_iter().rev() {
            match step {
                Undo::Record(rev) => {
                    self.batch.records.remove(&rev);
                }
                Undo::IndexPut { key, previous } => self.state.index.undo_put(&key, previous),
                Undo::IndexTombstone { key, previous } => {
                    self.state.index.undo_tombstone(&key, previous)
                }
                Undo::Attach { lease, key } => {
                    if let Some(keys) = self.state.lease_keys.get_mut(&lease) {
                        keys.remove(&key);
                        if keys.is_empty() {
                            self.state.lease_keys.remove(&lease);
                        }
                    }
                }
                Undo::Detach { lease, key } => {
                    self.state.lease_keys.entry(lease).or_default().insert(key);
                }
            }
        }
    }
}

/// etcd's `applierV3backend.Put` with a txn open.
fn put_in<R: BackendReader + ?Sized>(
    tw: &mut WriteTxn<'_, R>,
    req: &PutRequest,
) -> Result<PutResponse, Fault> {
    let needs_prev = req.ignore_value || req.ignore_lease || req.prev_kv;
    let prev = if needs_prev {
        range_keys(tw, KeyRange::Key(&req.key), RangeOptions::default())?
            .kvs
            .pop()
    } else {
        None
    };
    if req.ignore_value || req.ignore_lease {
        let Some(prev) = &prev else {
            return Err(EtcdError::KeyNotFound.into());
        };
        let value = if req.ignore_value {
            prev.value.clone()
        } else {
            req.value.clone()
        };
        let lease = if req.ignore_lease {
            prev.lease
        } else {
            req.lease
        };
        tw.put(&req.key, value, lease)?;
    } else {
        tw.put(&req.key, req.value.clone(), req.lease)?;
    }
    Ok(PutResponse {
        header: header(tw.write_rev()),
        prev_kv: if req.prev_kv { prev } else { None },
    })
}

/// etcd's `applierV3backend.DeleteRange` with a txn open.
fn delete_in<R: BackendReader + ?Sized>(
    tw: &mut WriteTxn<'_, R>,
    req: &DeleteRangeRequest,
) -> Result<DeleteRangeResponse, Fault> {
    let deleted = tw.delete_range(KeyRange::new(&req.key, &req.range_end))?;
    Ok(DeleteRangeResponse {
        header: header(tw.rev()),
        deleted: deleted.len() as i64,
        prev_kvs: if req.prev_kv { deleted } else { Vec::new() },
    })
}

/// etcd's `applyTxn`: runs the taken branch; returns the response and the
/// number of path entries used.
fn exec_txn<R: BackendReader + ?Sized>(
    tw: &mut WriteTxn<'_, R>,
    req: &TxnRequest,
    path: &[bool],
) -> Result<(TxnResponse, usize), Fault> {
    let succeeded = path[0];
    let mut used = 1;
    let ops = branch(req, succeeded);
    let mut responses = Vec::with_capacity(ops.len());
    for op in ops {
        let response = match &op.request {
            Some(Request::RequestRange(r)) => Some(Response::ResponseRange(range::range(tw, r)?)),
            Some(Request::RequestPut(p)) => Some(Response::ResponsePut(put_in(tw, p)?)),
            Some(Request::RequestDeleteRange(d)) => {
                Some(Response::ResponseDeleteRange(delete_in(tw, d)?))
            }
            Some(Request::RequestTxn(t)) => {
                let (resp, n) = exec_txn(tw, t, &path[used..])?;
                used += n;
                Some(Response::ResponseTxn(resp))
            }
            None => None,
        };
        responses.push(ResponseOp { response });
    }
    let resp = TxnResponse {
        header: Some(ResponseHeader::default()),
        succeeded,
        responses,
    };
    Ok((resp, used))
}

/// Compacts the index at `rev` and schedules the dropped records' deletion.
pub(crate) fn compact(state: &mut State, batch: &mut WriteBatch, rev: i64) {
    state.compact_rev = rev;
    let (_, dropped) = state.index.compact(rev);
    for r in dropped {
        batch.delete(r);
    }
}

type Outcome<T> = Result<(T, Vec<Event>), Fault>;

/// Applies requests of one batch to the in-memory state and the batch.
pub(crate) struct Applier<'a, R: BackendReader + ?Sized> {
    pub state: &'a mut State,
    pub reader: &'a R,
    pub batch: &'a mut WriteBatch,
}

impl<R: BackendReader + ?Sized> Applier<'_, R> {
    fn write_txn(&mut self) -> WriteTxn<'_, R> {
        WriteTxn::new(self.state, self.reader, self.batch)
    }

    /// Applies one entry; `Err` only for a storage failure.
    pub(crate) fn apply(
        &mut self,
        index: u64,
        req: Option<&InternalRequest>,
    ) -> Result<Applied, StorageError> {
        let id = req.map_or(0, |r| r.id);
        let request = req.and_then(|r| r.request.as_ref());
        if let Some(refused) = request.and_then(|r| self.refused_by_alarm(r)) {
            return Ok(Applied {
                index,
                id,
                revision: self.state.current_rev,
                result: Err(refused),
                events: Vec::new(),
            });
        }
        if let (Some(request), Some(req)) = (request, req) {
            let who = AuthInfo {
                username: req.username.clone(),
                revision: req.auth_revision,
            };
            if let Err(refused) = self.check_auth(request, &who) {
                return Ok(Applied {
                    index,
                    id,
                    revision: self.state.current_rev,
                    result: Err(refused.into()),
                    events: Vec::new(),
                });
            }
        }
        if let Some(reply) = request.and_then(|r| self.auth_request(index, r)) {
            return Ok(Applied {
                index,
                id,
                revision: self.state.current_rev,
                result: reply.map(ApplyResponse::Auth).map_err(EtcdError::from),
                events: Vec::new(),
            });
        }
        let outcome = match request {
            None => Ok((ApplyResponse::Empty, Vec::new())),
            Some(Internal::Put(r)) => self.put(r).map(|(p, e)| (ApplyResponse::Put(p), e)),
            Some(Internal::DeleteRange(r)) => self
                .delete_range(r)
                .map(|(d, e)| (ApplyResponse::DeleteRange(d), e)),
            Some(Internal::Txn(r)) => self.txn(r).map(|(t, e)| (ApplyResponse::Txn(t), e)),
            Some(Internal::Compaction(r)) => self
                .compaction(r)
                .map(|c| (ApplyResponse::Compaction(c), Vec::new())),
            Some(Internal::LeaseGrant(r)) => self
                .lease_grant(r)
                .map(|g| (ApplyResponse::LeaseGrant(g), Vec::new())),
            Some(Internal::LeaseRevoke(r)) => self
                .lease_revoke(r)
                .map(|(l, e)| (ApplyResponse::LeaseRevoke(l), e)),
            Some(Internal::MemberAttributes(a)) => {
                self.member_attributes(a);
                Ok((ApplyResponse::Empty, Vec::new()))
            }
            Some(Internal::MemberChange(c)) => self
                .member_change(c)
                .map(|members| (ApplyResponse::Members(members), Vec::new()))
                .map_err(Fault::from),
            Some(Internal::Alarm(a)) => Ok((ApplyResponse::Alarm(self.alarm(a)), Vec::new())),
            Some(Internal::LeaseCheckpoint(r)) => {
                self.checkpoint(&r.checkpoints);
                Ok((ApplyResponse::Empty, Vec::new()))
            }
            // The caller has checked the upkeep's term (see `LeaseUpkeep`).
            Some(Internal::LeaseUpkeep(u)) => {
                self.lease_upkeep(u).map(|e| (ApplyResponse::Empty, e))
            }
            // Answered by `auth_request` above.
            Some(_) => Ok((ApplyResponse::Empty, Vec::new())),
        };
        let (result, events) = match outcome {
            Ok((resp, events)) => (Ok(resp), events),
            Err(Fault::Client(e)) => (Err(e), Vec::new()),
            Err(Fault::Storage(e)) => return Err(e),
        };
        Ok(Applied {
            index,
            id,
            revision: self.state.current_rev,
            result,
            events,
        })
    }

    fn put(&mut self, req: &PutRequest) -> Outcome<PutResponse> {
        if req.lease != 0 && !self.state.leases.contains_key(&req.lease) {
            return Err(EtcdError::LeaseNotFound.into());
        }
        let mut tw = self.write_txn();
        // Every client error of put_in comes before its first change.
        let resp = put_in(&mut tw, req)?;
        Ok((resp, tw.finish()))
    }

    fn delete_range(&mut self, req: &DeleteRangeRequest) -> Outcome<DeleteRangeResponse> {
        let mut tw = self.write_txn();
        let resp = delete_in(&mut tw, req)?;
        Ok((resp, tw.finish()))
    }

    fn txn(&mut self, req: &TxnRequest) -> Outcome<TxnResponse> {
        let mut tw = self.write_txn();
        let path = compare_to_path(&tw, req)?;
        if !is_txn_read_only(req) {
            check_requests(&tw, req, &path, check_put)?;
        }
        check_requests(&tw, req, &path, check_range)?;
        match exec_txn(&mut tw, req, &path) {
            Ok((mut resp, _)) => {
                resp.header = header(tw.rev());
                Ok((resp, tw.finish()))
            }
            Err(Fault::Client(e)) => {
                tw.rollback();
                Err(e.into())
            }
            Err(storage) => Err(storage),
        }
    }

    fn compaction(&mut self, req: &CompactionRequest) -> Result<CompactionResponse, Fault> {
        if req.revision <= self.state.compact_rev {
            return Err(EtcdError::Compacted.into());
        }
        if req.revision > self.state.current_rev {
            return Err(EtcdError::FutureRev.into());
        }
        compact(self.state, self.batch, req.revision);
        Ok(CompactionResponse {
            header: header(self.state.current_rev),
        })
    }

    /// etcd's capped appliers: with a CORRUPT alarm every KV and lease write
    /// fails; with a NOSPACE alarm, requests that add data (puts, txns with
    /// puts at the top level, lease grants) fail while deletes and
    /// compactions still work. Alarms are replicated, so every member
    /// refuses the same entries.
    fn refused_by_alarm(&self, request: &Internal) -> Option<EtcdError> {
        use proto::etcdserverpb::AlarmType;
        let active = |t: AlarmType| self.state.alarms.iter().any(|(_, a)| *a == t as i32);
        let is_kv_or_lease = matches!(
            request,
            Internal::Put(_)
                | Internal::DeleteRange(_)
                | Internal::Txn(_)
                | Internal::Compaction(_)
                | Internal::LeaseGrant(_)
                | Internal::LeaseRevoke(_)
                | Internal::LeaseUpkeep(_)
        );
        if is_kv_or_lease && active(AlarmType::Corrupt) {
            return Some(EtcdError::Corrupt);
        }
        let adds_data = match request {
            Internal::Put(_) | Internal::LeaseGrant(_) => true,
            Internal::Txn(t) => t
                .success
                .iter()
                .chain(&t.failure)
                .any(|op| matches!(op.request, Some(Request::RequestPut(_)))),
            _ => false,
        };
        (adds_data && active(AlarmType::Nospace)).then_some(EtcdError::NoSpace)
    }

    /// `Maintenance.Alarm`: GET lists the active alarms (all, or one
    /// member's, or one type's); ACTIVATE raises one and answers it;
    /// DEACTIVATE clears one and answers it (nothing when it was not raised).
    fn alarm(
        &mut self,
        req: &proto::etcdserverpb::AlarmRequest,
    ) -> proto::etcdserverpb::AlarmResponse {
        use proto::etcdserverpb::alarm_request::AlarmAction;
        use proto::etcdserverpb::{AlarmMember, AlarmResponse, AlarmType};
        let member = |(m, a): (u64, i32)| AlarmMember {
            member_id: m,
            alarm: a,
        };
        let mut resp = AlarmResponse::default();
        match AlarmAction::try_from(req.action) {
            Ok(AlarmAction::Get) => {
                resp.alarms = self
                    .state
                    .alarms
                    .iter()
                    .filter(|(m, a)| {
                        (req.member_id == 0 || *m == req.member_id)
                            && (req.alarm == AlarmType::None as i32 || *a == req.alarm)
                    })
                    .map(|x| member(*x))
                    .collect();
            }
            Ok(AlarmAction::Activate) if req.alarm != AlarmType::None as i32 => {
                let key = (req.member_id, req.alarm);
                if self.state.alarms.insert(key) {
                    self.batch.alarms.insert(key, true);
                }
                resp.alarms.push(member(key));
            }
            Ok(AlarmAction::Deactivate) => {
                let key = (req.member_id, req.alarm);
                if self.state.alarms.remove(&key) {
                    self.batch.alarms.insert(key, false);
                    resp.alarms.push(member(key));
                }
            }
            _ => {}
        }
        resp
    }

    fn lease_grant(&mut self, req: &LeaseGrantRequest) -> Result<LeaseGrantResponse, Fault> {
        if req.id == 0 {
            return Err(EtcdError::LeaseNotFound.into());
        }
        if req.ttl > MAX_LEASE_TTL {
            return Err(EtcdError::LeaseTtlTooLarge.into());
        }
        if self.state.leases.contains_key(&req.id) {
            return Err(EtcdError::LeaseExist.into());
        }
        self.state.leases.insert(req.id, Lease::granted(req.ttl));
        self.batch
            .leases
            .insert(req.id, Some(Lease::granted(req.ttl)));
        Ok(LeaseGrantResponse {
            header: header(self.state.current_rev),
            id: req.id,
            ttl: req.ttl,
            error: String::new(),
        })
    }

    /// Records remaining TTLs of leases that still exist (etcd's
    /// `LeaseCheckpoint`).
    fn checkpoint(&mut self, checkpoints: &[proto::etcdserverpb::LeaseCheckpoint]) {
        for c in checkpoints {
            if let Some(lease) = self.state.leases.get_mut(&c.id) {
                lease.remaining_ttl = c.remaining_ttl;
                self.batch.leases.insert(c.id, Some(*lease));
            }
        }
    }

    /// The lessor's upkeep: revoke an expired lease (if it still exists:
    /// a client may have revoked it meanwhile) and record checkpoints.
    fn lease_upkeep(&mut self, upkeep: &proto::internal::LeaseUpkeep) -> Result<Vec<Event>, Fault> {
        self.checkpoint(&upkeep.checkpoints);
        if upkeep.expire == 0 || !self.state.leases.contains_key(&upkeep.expire) {
            return Ok(Vec::new());
        }
        let revoke = LeaseRevokeRequest { id: upkeep.expire };
        self.lease_revoke(&revoke).map(|(_, events)| events)
    }

    fn lease_revoke(&mut self, req: &LeaseRevokeRequest) -> Outcome<LeaseRevokeResponse> {
        if !self.state.leases.contains_key(&req.id) {
            return Err(EtcdError::LeaseNotFound.into());
        }
        // Sorted keys, so every member deletes in the same order.
        let keys: Vec<Vec<u8>> = self
            .state
            .lease_keys
            .get(&req.id)
            .map(|k| k.iter().cloned().collect())
            .unwrap_or_default();
        let mut tw = self.write_txn();
        for key in &keys {
            tw.delete_range(KeyRange::Key(key))?;
        }
        let events = tw.finish();
        self.state.leases.remove(&req.id);
        self.state.lease_keys.remove(&req.id);
        self.batch.leases.insert(req.id, None);
        Ok((
            LeaseRevokeResponse {
                header: header(self.state.current_rev),
            },
            events,
        ))
    }
}
