//! Writer to reader round trips, and files the reader must refuse. The
//! cross-checks against real etcd and etcdctl are in
//! `storage/tests/bbolt_etcd.rs`.

use std::collections::BTreeMap;
use std::path::Path;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::format::{BUCKET_LEAF, PAGE_HEADER_SIZE};
use super::read::BoltFile;
use super::snapshot::append_snapshot_hash;
use super::write::{BoltStreamWriter, BoltWriter, WriteSummary, WriterConfig};
use super::{BoltError, MetaProblem};

const PAGE: u64 = 4096;

fn pairs(file: &BoltFile, bucket: &[u8]) -> Pairs {
    let mut out = Vec::new();
    file.for_each::<BoltError, _>(bucket, |k, v| {
        out.push((k.to_vec(), v.to_vec()));
        Ok(true)
    })
    .unwrap();
    out
}

/// Writes `buckets` with a [`BoltWriter`] and checks that the reader gives
/// them back, and that the file is exactly its pages.
fn round_trip(
    path: &Path,
    buckets: &BTreeMap<Vec<u8>, BTreeMap<Vec<u8>, Vec<u8>>>,
) -> (BoltFile, WriteSummary) {
    let mut w = BoltWriter::new(WriterConfig::default());
    for (name, kvs) in buckets {
        w.create_bucket(name);
        // Reverse order: the writer sorts.
        for (k, v) in kvs.iter().rev() {
            w.put(name, k.clone(), v.clone());
        }
    }
    let summary = w.write_to(path).unwrap();
    assert_eq!(std::fs::metadata(path).unwrap().len(), summary.bytes);
    assert_eq!(summary.bytes, summary.pages * PAGE);
    assert_eq!(summary.buckets, buckets.len());

    let file = BoltFile::open(path).unwrap();
    assert_eq!(file.meta().txid, 1);
    assert_eq!(file.meta().page_size, 4096);
    assert_eq!(file.meta().pgid, summary.pages);
    assert_eq!(file.buckets(), buckets.keys().cloned().collect::<Vec<_>>());
    for (name, kvs) in buckets {
        let expected: Vec<_> = kvs.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        assert_eq!(pairs(&file, name), expected, "bucket {name:?}");
    }
    (file, summary)
}

fn seeded(test: &str) -> StdRng {
    let seed = std::env::var("BBOLT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::thread_rng().r#gen::<u64>());
    println!("{test}: seed {seed} (set BBOLT_SEED to replay)");
    StdRng::seed_from_u64(seed)
}

type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

fn bucket_map(entries: &[(&[u8], Pairs)]) -> BTreeMap<Vec<u8>, BTreeMap<Vec<u8>, Vec<u8>>> {
    entries
        .iter()
        .map(|(name, kvs)| (name.to_vec(), kvs.iter().cloned().collect()))
        .collect()
}

#[test]
fn bbolt_round_trip_no_buckets() {
    let dir = tempfile::tempdir().unwrap();
    let (file, summary) = round_trip(&dir.path().join("x.db"), &BTreeMap::new());
    // Two metas, the freelist and the root bucket's empty leaf.
    assert_eq!(summary.pages, 4);
    assert!(file.buckets().is_empty());
    assert!(matches!(
        file.for_each::<BoltError, _>(b"key", |_, _| Ok(true)),
        Err(BoltError::BucketNotFound(name)) if name == b"key"
    ));
}

#[test]
fn bbolt_round_trip_empty_buckets_and_one_key() {
    let dir = tempfile::tempdir().unwrap();
    let buckets = bucket_map(&[
        (b"alarm", vec![]),
        (b"auth", vec![]),
        (b"key", vec![(b"k".to_vec(), b"v".to_vec())]),
        (b"empty-value", vec![(b"k".to_vec(), Vec::new())]),
    ]);
    let (_, summary) = round_trip(&dir.path().join("x.db"), &buckets);
    // Every bucket is small enough to be inline: one page for the root.
    assert_eq!(summary.pages, 4);
    assert_eq!(summary.keys, 2);
}

#[test]
fn bbolt_round_trip_100k_keys_of_varied_sizes() {
    let mut rng = seeded("bbolt_round_trip_100k_keys_of_varied_sizes");
    let mut kvs = BTreeMap::new();
    while kvs.len() < 100_000 {
        let klen = rng.gen_range(1..64);
        let key: Vec<u8> = (0..klen).map(|_| rng.r#gen()).collect();
        let vlen = match rng.gen_range(0..100) {
            0 => rng.gen_range(4096..20_000),
            1..=10 => rng.gen_range(500..3000),
            _ => rng.gen_range(0..200),
        };
        let value: Vec<u8> = (0..vlen).map(|_| rng.r#gen()).collect();
        kvs.insert(key, value);
    }
    let payload: usize = kvs.iter().map(|(k, v)| k.len() + v.len()).sum();
    let buckets = BTreeMap::from([(b"key".to_vec(), kvs)]);
    let dir = tempfile::tempdir().unwrap();
    let (file, summary) = round_trip(&dir.path().join("x.db"), &buckets);
    let fill = payload as f64 / summary.bytes as f64;
    println!(
        "payload {payload} bytes in {} bytes: {fill:.2}",
        summary.bytes
    );
    assert!(fill > 0.6, "pages only {fill:.2} full");

    // Stopping early visits exactly that many keys.
    let mut seen = 0;
    file.for_each::<BoltError, _>(b"key", |_, _| {
        seen += 1;
        Ok(seen < 10)
    })
    .unwrap();
    assert_eq!(seen, 10);
    // The caller's error comes back as is.
    #[derive(Debug)]
    enum Mine {
        Stop(usize),
        Bolt,
    }
    impl From<BoltError> for Mine {
        fn from(_: BoltError) -> Self {
            Mine::Bolt
        }
    }
    let mut seen = 0;
    let err = file
        .for_each(b"key", |_, _| {
            seen += 1;
            if seen == 70_000 {
                Err(Mine::Stop(seen))
            } else {
                Ok(true)
            }
        })
        .unwrap_err();
    assert!(matches!(err, Mine::Stop(70_000)), "{err:?}");
}

#[test]
fn bbolt_round_trip_large_values_use_overflow_pages() {
    let big: Vec<u8> = (0..2 << 20).map(|i: u32| (i % 251) as u8).collect();
    let buckets = bucket_map(&[
        (
            b"key",
            vec![
                (b"a".to_vec(), b"small".to_vec()),
                (b"b".to_vec(), big.clone()),
                (b"c".to_vec(), b"small".to_vec()),
                (b"d".to_vec(), big[..5000].to_vec()),
            ],
        ),
        (b"only-big", vec![(b"x".to_vec(), big.clone())]),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let (_, summary) = round_trip(&dir.path().join("x.db"), &buckets);
    // Two 2 MiB values take 513 pages each.
    assert!(summary.pages > 2 * 513, "{summary:?}");
}

#[test]
fn bbolt_round_trip_many_buckets() {
    let mut rng = seeded("bbolt_round_trip_many_buckets");
    let mut buckets = BTreeMap::new();
    for i in 0..3000u32 {
        let keys = match i % 10 {
            0 => rng.gen_range(100..2000),
            _ => rng.gen_range(0..8),
        };
        let kvs: BTreeMap<Vec<u8>, Vec<u8>> = (0..keys)
            .map(|k: u32| {
                let v = vec![k as u8; rng.gen_range(0..300)];
                (format!("k{k:06}").into_bytes(), v)
            })
            .collect();
        buckets.insert(format!("bucket-{i:05}").into_bytes(), kvs);
    }
    let dir = tempfile::tempdir().unwrap();
    round_trip(&dir.path().join("x.db"), &buckets);
}

#[test]
fn bbolt_writer_refuses_what_bbolt_cannot_hold() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.db");
    let mut w = BoltStreamWriter::create(&path, WriterConfig::default()).unwrap();
    let mut b = w.bucket(b"key").unwrap();
    b.put(b"b", b"1").unwrap();
    let unsorted = b.put(b"a", b"2").unwrap_err();
    assert!(unsorted.to_string().contains("not above"), "{unsorted}");
    assert!(b.put(b"b", b"again").is_err());
    assert!(
        b.put(b"", b"x")
            .unwrap_err()
            .to_string()
            .contains("empty key")
    );
    assert!(
        b.put(&vec![1u8; 40_000], b"x")
            .unwrap_err()
            .to_string()
            .contains("too large")
    );
    b.finish().unwrap();
    assert!(matches!(
        w.bucket(b"key"),
        Err(BoltError::DuplicateBucket(_))
    ));
    let dropped = w.bucket(b"dropped").unwrap();
    drop(dropped);
    assert!(matches!(
        w.finish(),
        Err(BoltError::BucketNotFinished(name)) if name == b"dropped"
    ));

    let mut w = BoltWriter::new(WriterConfig::default());
    w.put(b"key", b"same".to_vec(), b"1".to_vec());
    w.put(b"key", b"same".to_vec(), b"2".to_vec());
    assert!(matches!(
        w.write_to(&path),
        Err(BoltError::InvalidEntry { .. })
    ));

    for config in [
        WriterConfig {
            page_size: 3000,
            ..WriterConfig::default()
        },
        WriterConfig {
            fill_percent: 0.0,
            ..WriterConfig::default()
        },
    ] {
        assert!(matches!(
            BoltStreamWriter::create(&path, config),
            Err(BoltError::InvalidConfig(_))
        ));
    }
}

#[test]
fn bbolt_writer_honours_page_size_and_fill() {
    let dir = tempfile::tempdir().unwrap();
    let kvs: BTreeMap<Vec<u8>, Vec<u8>> = (0..20_000u32)
        .map(|i| (i.to_be_bytes().to_vec(), vec![1u8; 40]))
        .collect();
    let mut sizes = Vec::new();
    for (page_size, fill) in [(4096, 0.5), (4096, 1.0), (16384, 0.9)] {
        let path = dir.path().join(format!("{page_size}-{fill}.db"));
        let mut w = BoltWriter::new(WriterConfig {
            page_size,
            fill_percent: fill,
        });
        for (k, v) in &kvs {
            w.put(b"key", k.clone(), v.clone());
        }
        let summary = w.write_to(&path).unwrap();
        let file = BoltFile::open(&path).unwrap();
        assert_eq!(file.meta().page_size, page_size);
        let back: BTreeMap<_, _> = pairs(&file, b"key").into_iter().collect();
        assert_eq!(back, kvs);
        sizes.push(summary.bytes);
    }
    // Half-full pages take about twice the room of full ones.
    assert!(sizes[0] > sizes[1] * 18 / 10, "{sizes:?}");
}

/// A file of one bucket, `key`, big enough for a two-level tree.
fn two_level_file(path: &Path) -> WriteSummary {
    let mut w = BoltWriter::new(WriterConfig::default());
    for i in 0..5000u32 {
        w.put(b"key", i.to_be_bytes().to_vec(), vec![0u8; 100]);
    }
    w.write_to(path).unwrap()
}

fn patch(path: &Path, at: u64, bytes: &[u8]) {
    let mut content = std::fs::read(path).unwrap();
    content[at as usize..at as usize + bytes.len()].copy_from_slice(bytes);
    std::fs::write(path, content).unwrap();
}

#[test]
fn bbolt_reader_falls_back_to_the_other_meta_and_names_bad_metas() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.db");
    two_level_file(&path);
    let checksum_at = PAGE_HEADER_SIZE as u64 + 56;

    // Meta 1 (txid 1) damaged: meta 0 (txid 0) takes over.
    patch(&path, PAGE + checksum_at, &[0xff; 8]);
    let file = BoltFile::open(&path).unwrap();
    assert_eq!(file.meta().txid, 0);
    assert_eq!(pairs(&file, b"key").len(), 5000);

    // Both damaged: refused, saying why for each.
    patch(&path, checksum_at, &[0xff; 8]);
    let err = BoltFile::open(&path).unwrap_err();
    assert!(
        matches!(
            &err,
            BoltError::NoValidMeta {
                meta0: MetaProblem::BadChecksum { .. },
                meta1: MetaProblem::BadChecksum { .. },
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("checksum"), "{err}");

    two_level_file(&path);
    let magic_at = PAGE_HEADER_SIZE as u64;
    patch(&path, magic_at, b"SQLi");
    patch(&path, PAGE + magic_at, b"SQLi");
    let err = BoltFile::open(&path).unwrap_err();
    assert!(err.to_string().contains("not a bbolt file"), "{err}");

    two_level_file(&path);
    patch(&path, magic_at + 4, &1u32.to_le_bytes());
    patch(&path, PAGE + magic_at + 4, &1u32.to_le_bytes());
    let err = BoltFile::open(&path).unwrap_err();
    assert!(err.to_string().contains("version 1 (want 2)"), "{err}");

    std::fs::write(&path, vec![0u8; 3 * PAGE as usize]).unwrap();
    let err = BoltFile::open(&path).unwrap_err();
    assert!(matches!(err, BoltError::NoValidMeta { .. }), "{err}");
}

#[test]
fn bbolt_reader_refuses_truncated_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.db");
    let summary = two_level_file(&path);
    let content = std::fs::read(&path).unwrap();

    std::fs::write(&path, &content[..content.len() - 1]).unwrap();
    let err = BoltFile::open(&path).unwrap_err();
    assert!(
        matches!(err, BoltError::Truncated { pages, .. } if pages == summary.pages),
        "{err}"
    );
    assert!(err.to_string().contains("truncated"), "{err}");

    for len in [0, 50] {
        std::fs::write(&path, &content[..len]).unwrap();
        let err = BoltFile::open(&path).unwrap_err();
        assert!(matches!(err, BoltError::TooShort { .. }), "{len}: {err}");
    }

    // A trailing etcd snapshot hash is not truncation, nor corruption.
    std::fs::write(&path, &content).unwrap();
    append_snapshot_hash(&path).unwrap();
    assert_eq!(pairs(&BoltFile::open(&path).unwrap(), b"key").len(), 5000);
}

#[test]
fn bbolt_reader_refuses_corrupt_pages() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.db");
    let summary = two_level_file(&path);
    let expect_corrupt = |pgid: u64, says: &str| {
        let file = BoltFile::open(&path).unwrap();
        let err = file
            .for_each::<BoltError, _>(b"key", |_, _| Ok(true))
            .unwrap_err();
        assert!(
            matches!(&err, BoltError::CorruptPage { pgid: p, reason } if *p == pgid && reason.contains(says)),
            "{err}"
        );
    };

    // Page 3 is the first leaf: a wrong id in its header.
    patch(&path, 3 * PAGE, &999u64.to_le_bytes());
    expect_corrupt(3, "header says page 999");

    // The bucket's root branch (written just before the root bucket's leaf,
    // the last page) pointing at itself.
    two_level_file(&path);
    let root = summary.pages - 2;
    patch(
        &path,
        root * PAGE + PAGE_HEADER_SIZE as u64 + 8,
        &root.to_le_bytes(),
    );
    expect_corrupt(root, "a cycle");

    // A child beyond the high-water mark.
    two_level_file(&path);
    patch(
        &path,
        root * PAGE + PAGE_HEADER_SIZE as u64 + 8,
        &(summary.pages + 5).to_le_bytes(),
    );
    expect_corrupt(summary.pages + 5, "outside the data pages");

    // Keys out of order: the second leaf's first key below the first leaf's.
    two_level_file(&path);
    let file = BoltFile::open(&path).unwrap();
    drop(file);
    let content = std::fs::read(&path).unwrap();
    let leaf = &content[4 * PAGE as usize..];
    let pos = u32::from_le_bytes(leaf[20..24].try_into().unwrap()) as u64;
    patch(&path, 4 * PAGE + 16 + pos, &[0, 0, 0, 0]);
    expect_corrupt(4, "out of order");
}

#[test]
fn bbolt_reader_reports_nested_buckets() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.db");
    let mut w = BoltStreamWriter::create(&path, WriterConfig::default()).unwrap();
    let mut b = w.bucket(b"outer").unwrap();
    b.put(b"a", b"plain").unwrap();
    // An inline bucket value: header (root 0, sequence 0), empty leaf page.
    let mut inner = vec![0u8; 32];
    inner[24] = 0x02;
    b.put_with_flags(b"inner", &inner, BUCKET_LEAF).unwrap();
    b.finish().unwrap();
    w.finish().unwrap();

    let file = BoltFile::open(&path).unwrap();
    let mut seen = Vec::new();
    let err = file
        .for_each::<BoltError, _>(b"outer", |k, _| {
            seen.push(k.to_vec());
            Ok(true)
        })
        .unwrap_err();
    assert_eq!(seen, vec![b"a".to_vec()]);
    assert!(
        matches!(&err, BoltError::NestedBucket { bucket, key } if bucket == b"outer" && key == b"inner"),
        "{err}"
    );
}
