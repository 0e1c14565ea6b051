//! Acknowledged-write bookkeeping for the crash and failover tests: every
//! put a writer saw acknowledged must be in the store exactly once, however
//! the servers were killed.
//!
//! 1. Each writer keeps a [`Ledger`]: every acknowledged put (key, value,
//!    revision) and every put that failed or timed out, which may or may not
//!    have been applied. Put values must be unique per key.
//! 2. The writers' ledgers are merged ([`Ledger::extend`]).
//! 3. [`Ledger::unique_revisions`]: no revision was acknowledged twice, so
//!    nothing was applied twice.
//! 4. [`Ledger::verify`] reads the store back through one server or member:
//!    every acknowledged put is found at its own revision with its value
//!    ([`judge_at_revision`]; the tests compact nothing), and each key's
//!    latest value is its last acknowledged put or a newer maybe-applied put
//!    of that key ([`judge_latest`]). The two judgements are plain functions,
//!    unit tested without a server.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use proto::etcdserverpb::RangeRequest;
use proto::etcdserverpb::kv_client::KvClient;
use tonic::transport::Channel;

/// One acknowledged put.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    /// The revision the put was acknowledged at.
    pub revision: i64,
}

/// What a key held when read: its value and mod revision, or nothing.
pub type Found<'a> = Option<(&'a [u8], i64)>;

/// How [`Ledger::verify`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadMode {
    /// Through raft (a single server, or the cluster's current view).
    Linearizable,
    /// From the member's own store, to check that member.
    Serializable,
}

/// The puts one or more writers sent (step 1 of the module doc).
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    acks: Vec<Ack>,
    /// Puts that failed or timed out: (key, value).
    maybe: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Ledger {
    /// Records a put acknowledged at `revision`.
    pub fn ack(&mut self, key: Vec<u8>, value: Vec<u8>, revision: i64) {
        self.acks.push(Ack {
            key,
            value,
            revision,
        });
    }

    /// Records a put that failed or timed out: it may have been applied.
    pub fn maybe(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.maybe.push((key, value));
    }

    /// Adds another writer's puts (step 2).
    pub fn extend(&mut self, other: Ledger) {
        self.acks.extend(other.acks);
        self.maybe.extend(other.maybe);
    }

    pub fn acks(&self) -> &[Ack] {
        &self.acks
    }

    /// How many puts may or may not have been applied.
    pub fn maybe_count(&self) -> usize {
        self.maybe.len()
    }

    /// The highest acknowledged revision (0 if none).
    pub fn max_revision(&self) -> i64 {
        self.acks.iter().map(|a| a.revision).max().unwrap_or(0)
    }

    /// Step 3: no revision acknowledged twice.
    pub fn unique_revisions(&self) -> Result<(), String> {
        let mut by_revision: HashMap<i64, &Ack> = HashMap::new();
        for ack in &self.acks {
            if let Some(other) = by_revision.insert(ack.revision, ack) {
                return Err(format!(
                    "revision {} acknowledged twice: for {} = {} and for {} = {}",
                    ack.revision,
                    text(&other.key),
                    text(&other.value),
                    text(&ack.key),
                    text(&ack.value)
                ));
            }
        }
        Ok(())
    }

    /// Each key's last acknowledged put.
    pub fn last_acks(&self) -> BTreeMap<&[u8], &Ack> {
        let mut last: BTreeMap<&[u8], &Ack> = BTreeMap::new();
        for ack in &self.acks {
            let entry = last.entry(&ack.key).or_insert(ack);
            if ack.revision > entry.revision {
                *entry = ack;
            }
        }
        last
    }

    /// The values of `key`'s maybe-applied puts.
    pub fn maybe_values(&self, key: &[u8]) -> Vec<&[u8]> {
        self.maybe
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_slice())
            .collect()
    }

    /// Step 4 through `kv`: every ack at its revision, then every key's
    /// latest value. The first failure, in words.
    pub async fn verify(
        &self,
        kv: &mut KvClient<Channel>,
        mode: ReadMode,
        timeout: Duration,
    ) -> Result<(), String> {
        for ack in &self.acks {
            let found = read(kv, &ack.key, ack.revision, mode, timeout).await?;
            judge_at_revision(ack, found.as_ref().map(|(v, m)| (v.as_slice(), *m)))?;
        }
        for (key, ack) in self.last_acks() {
            let found = read(kv, key, 0, mode, timeout).await?;
            judge_latest(
                ack,
                found.as_ref().map(|(v, m)| (v.as_slice(), *m)),
                &self.maybe_values(key),
            )?;
        }
        Ok(())
    }
}

/// An acknowledged put read at its own revision must be there unchanged.
pub fn judge_at_revision(ack: &Ack, found: Found<'_>) -> Result<(), String> {
    let key = text(&ack.key);
    match found {
        None => Err(format!(
            "acknowledged {key} = {} is missing at its revision {}",
            text(&ack.value),
            ack.revision
        )),
        Some((value, mod_revision)) if value == ack.value && mod_revision == ack.revision => Ok(()),
        Some((value, mod_revision)) => Err(format!(
            "{key} at its acknowledged revision {} holds {} at mod revision {mod_revision}, not the acknowledged {}",
            ack.revision,
            text(value),
            text(&ack.value)
        )),
    }
}

/// A key's latest value must be its last acknowledged put, or newer and one
/// of its `maybe` (maybe-applied) values.
pub fn judge_latest(last: &Ack, found: Found<'_>, maybe: &[&[u8]]) -> Result<(), String> {
    let key = text(&last.key);
    match found {
        None => Err(format!(
            "acknowledged key {key} is gone (last acknowledged {} at {})",
            text(&last.value),
            last.revision
        )),
        Some((value, mod_revision)) if mod_revision == last.revision => {
            if value == last.value {
                Ok(())
            } else {
                Err(format!(
                    "{key} at its last acknowledged revision {mod_revision} holds {}, not {}",
                    text(value),
                    text(&last.value)
                ))
            }
        }
        Some((value, mod_revision)) if mod_revision > last.revision && maybe.contains(&value) => {
            Ok(())
        }
        Some((value, mod_revision)) => Err(format!(
            "{key} holds {} at {mod_revision}, neither its last acknowledged {} at {} nor a newer maybe-applied put",
            text(value),
            text(&last.value),
            last.revision
        )),
    }
}

/// The key's value and mod revision at `revision` (0: latest).
async fn read(
    kv: &mut KvClient<Channel>,
    key: &[u8],
    revision: i64,
    mode: ReadMode,
    timeout: Duration,
) -> Result<Option<(Vec<u8>, i64)>, String> {
    let req = RangeRequest {
        key: key.to_vec(),
        revision,
        serializable: mode == ReadMode::Serializable,
        ..Default::default()
    };
    let resp = match tokio::time::timeout(timeout, kv.range(req)).await {
        Ok(Ok(resp)) => resp.into_inner(),
        Ok(Err(status)) => {
            return Err(format!(
                "range {} at {revision}: {:?} {}",
                text(key),
                status.code(),
                status.message()
            ));
        }
        Err(_) => {
            return Err(format!(
                "range {} at {revision} timed out after {timeout:?}",
                text(key)
            ));
        }
    };
    Ok(resp
        .kvs
        .into_iter()
        .next()
        .map(|kv| (kv.value, kv.mod_revision)))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(key: &str, value: &str, revision: i64) -> Ack {
        Ack {
            key: key.into(),
            value: value.into(),
            revision,
        }
    }

    #[test]
    fn ledgers_merge_and_find_a_revision_acknowledged_twice() {
        let mut a = Ledger::default();
        a.ack(b"k".to_vec(), b"1".to_vec(), 2);
        a.maybe(b"k".to_vec(), b"2".to_vec());
        let mut b = Ledger::default();
        b.ack(b"j".to_vec(), b"1".to_vec(), 3);
        b.ack(b"k".to_vec(), b"3".to_vec(), 4);
        a.extend(b);
        assert_eq!((a.acks().len(), a.maybe_count()), (3, 1));
        assert_eq!(a.max_revision(), 4);
        assert_eq!(a.unique_revisions(), Ok(()));
        assert_eq!(a.last_acks()[b"k".as_slice()], &ack("k", "3", 4));
        assert_eq!(a.maybe_values(b"k"), vec![b"2".as_slice()]);
        assert!(a.maybe_values(b"j").is_empty());

        a.ack(b"i".to_vec(), b"1".to_vec(), 3);
        let e = a.unique_revisions().unwrap_err();
        assert!(e.contains("revision 3 acknowledged twice"), "{e}");
    }

    #[test]
    fn an_ack_must_be_found_unchanged_at_its_revision() {
        let a = ack("k", "1", 5);
        assert_eq!(judge_at_revision(&a, Some((b"1", 5))), Ok(()));
        assert!(judge_at_revision(&a, None).is_err());
        assert!(judge_at_revision(&a, Some((b"0", 5))).is_err());
        assert!(judge_at_revision(&a, Some((b"1", 4))).is_err());
    }

    #[test]
    fn the_latest_value_is_the_last_ack_or_a_newer_maybe_applied_put() {
        let last = ack("k", "1", 5);
        let maybe: [&[u8]; 1] = [b"2"];
        assert_eq!(judge_latest(&last, Some((b"1", 5)), &maybe), Ok(()));
        assert_eq!(judge_latest(&last, Some((b"2", 7)), &maybe), Ok(()));
        // Lost: gone, older, or another value at the acked revision.
        assert!(judge_latest(&last, None, &maybe).is_err());
        assert!(judge_latest(&last, Some((b"0", 3)), &maybe).is_err());
        assert!(judge_latest(&last, Some((b"9", 5)), &maybe).is_err());
        // A newer value nobody sent, or a maybe-applied value that is older.
        assert!(judge_latest(&last, Some((b"9", 7)), &maybe).is_err());
        assert!(judge_latest(&last, Some((b"2", 4)), &maybe).is_err());
    }
}
