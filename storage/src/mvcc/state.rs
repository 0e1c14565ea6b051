//! [`State`]: the in-memory part of the MVCC store, which every request reads
//! and the apply path changes.
//!
//! 1. At open, [`State::load`] rebuilds it from one backend reader: the meta
//!    values, then the key index and the lease attachments from one scan of
//!    the records in revision order (etcd's `store.restore`), then the lease,
//!    member and alarm tables.
//! 2. While a batch is applied, `apply` changes it in step with the
//!    [`WriteBatch`](super::backend::WriteBatch) it fills; [`State::meta`]
//!    gives the meta values that the batch commits with it.
//! 3. Reads see it through a `view::ReadView`, beside a backend reader.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use proto::Message as _;
use proto::etcdserverpb::Member;

use super::backend::{BackendReader, Lease, Meta, decode_record};
use super::key_index::TreeIndex;
use super::revision::Revision;
use crate::error::StorageError;

/// Lease id -> attached keys, as the lessor keeps them.
pub(crate) type LeaseKeys = HashMap<i64, BTreeSet<Vec<u8>>>;

/// Lease id -> the lease as stored.
pub(crate) type LeaseTable = BTreeMap<i64, Lease>;

/// The in-memory part of the store, rebuilt from the backend at open.
#[derive(Debug, Clone)]
pub(crate) struct State {
    pub index: TreeIndex,
    pub current_rev: i64,
    /// The compacted revision; -1 if never compacted (as etcd).
    pub compact_rev: i64,
    pub applied_index: u64,
    pub leases: LeaseTable,
    pub lease_keys: LeaseKeys,
    /// The cluster's members, by id.
    pub members: BTreeMap<u64, Member>,
    /// Ids of removed members (never reused; stored as empty member records).
    pub removed_members: BTreeSet<u64>,
    /// Active alarms: (member id, `AlarmType` value).
    pub alarms: BTreeSet<(u64, i32)>,
    /// Users, roles, permissions and whether auth is on.
    pub auth: crate::auth::AuthStore,
}

impl State {
    /// The state of an empty store.
    pub fn empty() -> Self {
        let meta = Meta::default();
        Self {
            index: TreeIndex::default(),
            current_rev: meta.current_revision,
            compact_rev: meta.finished_compact_revision,
            applied_index: meta.applied_index,
            leases: BTreeMap::new(),
            lease_keys: HashMap::new(),
            members: BTreeMap::new(),
            removed_members: BTreeSet::new(),
            alarms: BTreeSet::new(),
            auth: crate::auth::AuthStore::new(),
        }
    }

    /// Rebuilds the state from what `reader` sees.
    pub fn load(reader: &dyn BackendReader) -> Result<Self, StorageError> {
        let meta = reader.meta()?;
        let mut index = TreeIndex::default();
        let mut key_lease: HashMap<Vec<u8>, i64> = HashMap::new();
        let mut last_rev = 0;
        reader.scan(Revision::default(), &mut |rev, bytes| {
            let (tombstone, kv) = decode_record(bytes)?;
            last_rev = rev.main;
            index.restore(&kv.key, rev, tombstone, kv.create_revision, kv.version);
            if tombstone || kv.lease == 0 {
                key_lease.remove(&kv.key);
            } else {
                key_lease.insert(kv.key, kv.lease);
            }
            Ok(true)
        })?;
        let leases: LeaseTable = reader.leases()?.into_iter().collect();
        let mut lease_keys: LeaseKeys = HashMap::new();
        for (key, lease) in key_lease {
            if leases.contains_key(&lease) {
                lease_keys.entry(lease).or_default().insert(key);
            } else {
                tracing::warn!(lease, key = %String::from_utf8_lossy(&key), "key attached to a lease that does not exist");
            }
        }
        let mut members = BTreeMap::new();
        let mut removed_members = BTreeSet::new();
        for (id, bytes) in reader.members()? {
            if bytes.is_empty() {
                removed_members.insert(id);
                continue;
            }
            let member = Member::decode(bytes.as_slice())
                .map_err(|e| StorageError::Corrupt(format!("member {id:x}: {e}")))?;
            members.insert(id, member);
        }
        let alarms = reader.alarms()?.into_iter().collect();
        let auth = crate::auth::AuthStore::decode(reader.auth()?.as_deref())
            .map_err(|e| StorageError::Corrupt(format!("auth state: {e}")))?;
        let compact_rev = meta.finished_compact_revision;
        // Compaction may have removed every record up to the compacted
        // revision; the revision never goes back.
        let current_rev = meta.current_revision.max(last_rev).max(compact_rev);
        Ok(Self {
            index,
            current_rev,
            compact_rev,
            applied_index: meta.applied_index,
            leases,
            lease_keys,
            members,
            removed_members,
            alarms,
            auth,
        })
    }

    /// The meta values to commit with a batch. A compaction deletes its
    /// records in the batch that records it, so it is scheduled and finished
    /// in the same commit.
    pub fn meta(&self) -> Meta {
        Meta {
            applied_index: self.applied_index,
            current_revision: self.current_rev,
            scheduled_compact_revision: self.compact_rev,
            finished_compact_revision: self.compact_rev,
        }
    }
}
