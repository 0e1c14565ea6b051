//! Tests of [`ApplyCore`] without actix, on LMDB stores in temp dirs.

use proto::Message as _;
use proto::etcdserverpb::{PutRequest, RangeRequest};
use proto::internal::{InternalRequest, internal_request};
use raft::eraftpb::Entry;
use storage::mvcc::{ApplyResponse, LmdbBackend, MvccStore};
use storage::snap::SnapDir;
use tokio::sync::oneshot;

use super::core::{ApplyCore, HeaderInfo, SizeGauges, SnapshotSettings, StoreFeed};
use crate::messages::{
    CommittedBatch, PendingRead, ReadBatch, ReadRequest, ReadResponse, StoreEvents,
};

const MAP: usize = 64 << 20;

struct Fixture {
    _dir: tempfile::TempDir,
    core: ApplyCore<LmdbBackend>,
    snap: SnapDir,
}

fn fixture(snapshot_count: u64) -> Fixture {
    fixture_with(snapshot_count, Vec::new())
}

fn fixture_with(snapshot_count: u64, feeds: Vec<Box<dyn StoreFeed>>) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let kv_dir = dir.path().join("kv");
    let snap = SnapDir::open(&dir.path().join("snap")).unwrap();
    let store = MvccStore::open(&kv_dir, MAP).unwrap();
    let settings = SnapshotSettings {
        snap_dir: snap.clone(),
        store_dir: kv_dir,
        snapshot_count,
        last_snapshot: 0,
        reopen: Box::new(|d| MvccStore::open(d, MAP)),
    };
    let header = HeaderInfo {
        cluster_id: 7,
        member_id: 9,
    };
    let sizes = SizeGauges::new(&prometheus::Registry::new()).unwrap();
    Fixture {
        _dir: dir,
        core: ApplyCore::new(store, header, settings, sizes, feeds).unwrap(),
        snap,
    }
}

fn entry(index: u64, id: u64, key: &str) -> Entry {
    let request = InternalRequest {
        id,
        request: Some(internal_request::Request::Put(PutRequest {
            key: key.as_bytes().to_vec(),
            value: b"v".to_vec(),
            ..Default::default()
        })),
        ..Default::default()
    };
    let mut e = Entry {
        index,
        term: 2,
        ..Default::default()
    };
    e.set_data(request.encode_to_vec().into());
    e
}

fn range(
    key: &str,
) -> (
    PendingRead,
    oneshot::Receiver<Result<ReadResponse, storage::EtcdError>>,
) {
    let (reply, rx) = oneshot::channel();
    let request = ReadRequest::Range(RangeRequest {
        key: key.as_bytes().to_vec(),
        ..Default::default()
    });
    (
        PendingRead {
            request,
            auth: Default::default(),
            reply,
        },
        rx,
    )
}

#[test]
fn waiters_get_their_results_with_full_headers() {
    let mut f = fixture(1_000);
    let (tx, mut rx) = oneshot::channel();
    let batch = CommittedBatch {
        entries: vec![entry(1, 11, "a"), entry(2, 12, "b")],
        waiters: vec![(12, tx)],
        term: 2,
    };
    let report = f.core.apply(batch).unwrap();
    assert_eq!(report.applied, 2);
    assert!(report.snapshot.is_none());
    match rx.try_recv() {
        Ok(Ok(ApplyResponse::Put(p))) => {
            let h = p.header.unwrap();
            assert_eq!(
                (h.cluster_id, h.member_id, h.revision, h.raft_term),
                (7, 9, 3, 2)
            );
        }
        other => panic!("unexpected answer: {other:?}"),
    }
}

#[test]
fn linearizable_reads_wait_for_their_read_index() {
    let mut f = fixture(1_000);
    let (read, mut rx) = range("a");
    f.core.read_ready(ReadBatch {
        index: 1,
        reads: vec![read],
        term: 2,
    });
    assert!(
        rx.try_recv().is_err(),
        "served before the read index was applied"
    );
    f.core
        .apply(CommittedBatch {
            entries: vec![entry(1, 1, "a")],
            waiters: vec![],
            term: 2,
        })
        .unwrap();
    match rx.try_recv() {
        Ok(Ok(ReadResponse::Range(r))) => assert_eq!(r.kvs.len(), 1),
        other => panic!("unexpected answer: {other:?}"),
    }
}

#[test]
fn a_gap_in_committed_entries_is_refused() {
    let mut f = fixture(1_000);
    let gap = CommittedBatch {
        entries: vec![entry(3, 1, "a")],
        waiters: vec![],
        term: 2,
    };
    assert!(f.core.apply(gap).is_err());
}

#[test]
fn snapshot_count_entries_make_a_record_and_images_are_written_when_asked() {
    let mut f = fixture(3);
    let entries: Vec<Entry> = (1..=4).map(|i| entry(i, i, &format!("k{i}"))).collect();
    let report = f
        .core
        .apply(CommittedBatch {
            entries,
            waiters: vec![],
            term: 2,
        })
        .unwrap();
    // After `--snapshot-count` entries: a snapshot record at 4 without an
    // image (no size, no hash, no file), the store durable there.
    let record = report.snapshot.expect("a snapshot record after 3 entries");
    assert_eq!((record.index, record.size), (4, 0));
    assert!(record.sha256.is_empty());
    assert!(!f.snap.path(4).exists(), "no image file for a record");
    let more: Vec<Entry> = (5..=6).map(|i| entry(i, i, &format!("k{i}"))).collect();
    let report = f
        .core
        .apply(CommittedBatch {
            entries: more,
            waiters: vec![],
            term: 2,
        })
        .unwrap();
    assert!(report.snapshot.is_none(), "the next record is 3 entries on");
    // An image only when raft asks for one (a member needs it): written on
    // a thread of its own, from a read view at exactly the applied index,
    // while applying goes on; a later answer carries it.
    let descriptor = (0..500)
        .find_map(|_| {
            let ready = f.core.take_image().unwrap().snapshot;
            if ready.is_none() {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            ready
        })
        .expect("an image when asked");
    assert_eq!(descriptor.index, 6);
    assert!(!descriptor.sha256.is_empty());
    assert!(f.snap.has(&descriptor));
    assert!(
        f.core.take_image().unwrap().snapshot.is_none(),
        "no second image at the same index"
    );

    // A second member installs the image received from the first.
    let mut g = fixture(1_000);
    let mut receiver = g.snap.receiver(&descriptor).unwrap();
    let bytes = std::fs::read(f.snap.path(descriptor.index)).unwrap();
    receiver.write(0, &bytes).unwrap();
    receiver.finish().unwrap();
    assert_eq!(g.core.install(&descriptor).unwrap(), 6);
    let (read, mut rx) = range("k6");
    g.core.serve(read);
    match rx.try_recv() {
        Ok(Ok(ReadResponse::Range(r))) => assert_eq!(r.kvs.len(), 1),
        other => panic!("unexpected answer: {other:?}"),
    }
    assert_eq!(g.core.status().applied_index, 6);
}

#[test]
fn defragment_shrinks_the_file_and_keeps_the_data() {
    let mut f = fixture(1_000_000);
    let big = |index: u64, key: &str| {
        let request = InternalRequest {
            id: index,
            request: Some(internal_request::Request::Put(PutRequest {
                key: key.as_bytes().to_vec(),
                value: vec![b'x'; 100_000],
                ..Default::default()
            })),
            ..Default::default()
        };
        let mut e = Entry {
            index,
            term: 2,
            ..Default::default()
        };
        e.set_data(request.encode_to_vec().into());
        e
    };
    let entries: Vec<Entry> = (1..=30).map(|i| big(i, &format!("k{i:02}"))).collect();
    f.core
        .apply(CommittedBatch {
            entries,
            waiters: vec![],
            term: 2,
        })
        .unwrap();
    let delete = InternalRequest {
        id: 31,
        request: Some(internal_request::Request::DeleteRange(
            proto::etcdserverpb::DeleteRangeRequest {
                key: b"k01".to_vec(),
                range_end: b"k30".to_vec(),
                ..Default::default()
            },
        )),
        ..Default::default()
    };
    let mut e = Entry {
        index: 31,
        term: 2,
        ..Default::default()
    };
    e.set_data(delete.encode_to_vec().into());
    let compact = InternalRequest {
        id: 32,
        request: Some(internal_request::Request::Compaction(
            proto::etcdserverpb::CompactionRequest {
                revision: 32,
                physical: true,
            },
        )),
        ..Default::default()
    };
    let mut c = Entry {
        index: 32,
        term: 2,
        ..Default::default()
    };
    c.set_data(compact.encode_to_vec().into());
    f.core
        .apply(CommittedBatch {
            entries: vec![e, c],
            waiters: vec![],
            term: 2,
        })
        .unwrap();
    assert_eq!(f.core.status().compact_revision, 32);
    let (before, after) = f.core.defragment().unwrap();
    assert!(
        after * 4 < before,
        "defragmentation did not shrink the file: {before} -> {after}"
    );
    let (read, mut rx) = range("k30");
    f.core.serve(read);
    match rx.try_recv() {
        Ok(Ok(ReadResponse::Range(r))) => assert_eq!(r.kvs.len(), 1),
        other => panic!("unexpected answer: {other:?}"),
    }
    assert_eq!(f.core.status().applied_index, 32);
}

/// (from, to, event revisions, whether the client was answered already).
type Told = Vec<(i64, i64, Vec<i64>, bool)>;
type Answer = oneshot::Receiver<Result<ApplyResponse, storage::EtcdError>>;

/// Records what the watch hub would be told, and whether the batch's
/// client had been answered at that moment.
struct Recorder {
    seen: std::sync::Arc<std::sync::Mutex<Told>>,
    answer: std::sync::Arc<std::sync::Mutex<Option<Answer>>>,
}

impl StoreFeed for Recorder {
    fn events(&mut self, update: &mut StoreEvents) {
        let answered =
            self.answer.lock().unwrap().as_mut().is_some_and(|rx| {
                !matches!(rx.try_recv(), Err(oneshot::error::TryRecvError::Empty))
            });
        let revisions = update
            .events
            .iter()
            .map(|e| e.kv.as_ref().unwrap().mod_revision)
            .collect();
        self.seen
            .lock()
            .unwrap()
            .push((update.from, update.to, revisions, answered));
    }
}

#[test]
fn the_watch_hub_hears_of_a_batch_before_its_clients_are_answered() {
    let seen = std::sync::Arc::default();
    let answer = std::sync::Arc::new(std::sync::Mutex::new(None));
    let feed = Recorder {
        seen: std::sync::Arc::clone(&seen),
        answer: std::sync::Arc::clone(&answer),
    };
    let mut f = fixture_with(1_000, vec![Box::new(feed)]);
    let (tx, rx) = oneshot::channel();
    *answer.lock().unwrap() = Some(rx);
    f.core
        .apply(CommittedBatch {
            entries: vec![entry(1, 11, "a"), entry(2, 12, "b")],
            waiters: vec![(12, tx)],
            term: 2,
        })
        .unwrap();
    let (events, rx) = (seen.lock().unwrap().clone(), answer.lock().unwrap().take());
    assert_eq!(events, vec![(1, 3, vec![2, 3], false)]);
    assert!(
        rx.is_some_and(|mut rx| rx.try_recv().is_ok()),
        "answered afterwards"
    );
    let read = f.core.read_events(2, 3, usize::MAX).unwrap();
    assert_eq!(
        (read.events.len(), read.last, read.compact_revision),
        (2, 3, 0)
    );
}
