//! Byte layouts of the raft log records in LMDB.
//!
//! 1. An entry is keyed by its index as 8 bytes big-endian (LMDB's byte order
//!    is then log order); its value is the rust-protobuf 2 `Entry`.
//! 2. Hard state, conf state and snapshot metadata are their protobuf bytes;
//!    snapshot data is stored as is.
//! 3. The truncation point (index and term of the last discarded entry) is
//!    16 bytes: index then term, both big-endian.
//! 4. [`entry_term`] reads only the term of an encoded entry: rust-protobuf
//!    writes `entry_type` (1) and `term` (2) first, so `Storage::term` skips
//!    copying the entry data, which may be megabytes.

use protobuf::CodedInputStream;
use protobuf::Message as PbMessage;
use protobuf::wire_format::WireType;
use raft::eraftpb::Entry;

use crate::StorageError;

/// `Entry.term` field number in eraftpb.proto.
const ENTRY_TERM_FIELD: u32 = 2;

/// Protobuf bytes of `m`.
pub(crate) fn encode<M: PbMessage>(m: &M) -> Result<Vec<u8>, StorageError> {
    m.write_to_bytes()
        .map_err(|e| StorageError::Raft(raft::Error::CodecError(e)))
}

/// Decodes a protobuf record; `what` names it in the corruption error.
pub(crate) fn decode<M: PbMessage>(what: &str, bytes: &[u8]) -> Result<M, StorageError> {
    let mut m = M::new();
    m.merge_from_bytes(bytes)
        .map_err(|e| StorageError::Corrupt(format!("{what}: {e}")))?;
    Ok(m)
}

/// Decodes the entry stored under key `index` and checks that it is the
/// entry for that index.
pub(crate) fn decode_entry(index: u64, bytes: &[u8]) -> Result<Entry, StorageError> {
    let entry: Entry = decode("raft entry", bytes)?;
    if entry.index != index {
        return Err(StorageError::Corrupt(format!(
            "raft entry under key {index} has index {}",
            entry.index
        )));
    }
    Ok(entry)
}

/// The term of the encoded entry, read without decoding its data. Falls back
/// to a full decode when the leading fields are not the expected varints
/// (term 0 is omitted by protobuf, or another writer ordered fields
/// differently).
pub(crate) fn entry_term(index: u64, bytes: &[u8]) -> Result<u64, StorageError> {
    match leading_term(bytes) {
        Ok(Some(term)) => Ok(term),
        Ok(None) | Err(_) => decode_entry(index, bytes).map(|e| e.term),
    }
}

/// Scans the leading varint fields for the term; `None` when a non-varint
/// field comes first.
fn leading_term(bytes: &[u8]) -> protobuf::ProtobufResult<Option<u64>> {
    let mut input = CodedInputStream::from_bytes(bytes);
    while !input.eof()? {
        match input.read_tag_unpack()? {
            (ENTRY_TERM_FIELD, WireType::WireTypeVarint) => return input.read_uint64().map(Some),
            (_, WireType::WireTypeVarint) => {
                input.read_raw_varint64()?;
            }
            _ => return Ok(None),
        }
    }
    Ok(Some(0))
}

/// The 16-byte truncation point: index and term of the last discarded entry.
pub(crate) fn encode_point(index: u64, term: u64) -> [u8; 16] {
    let mut out = [0; 16];
    out[..8].copy_from_slice(&index.to_be_bytes());
    out[8..].copy_from_slice(&term.to_be_bytes());
    out
}

/// Reads a truncation point written by [`encode_point`].
pub(crate) fn decode_point(bytes: &[u8]) -> Result<(u64, u64), StorageError> {
    let bytes: &[u8; 16] = bytes
        .try_into()
        .map_err(|_| StorageError::Corrupt(format!("truncation point of {} bytes", bytes.len())))?;
    let (index, term) = bytes.split_at(8);
    let index = u64::from_be_bytes(index.try_into().expect("split_at(8) of 16 bytes"));
    let term = u64::from_be_bytes(term.try_into().expect("split_at(8) of 16 bytes"));
    Ok((index, term))
}

#[cfg(test)]
mod tests {
    use raft::eraftpb::EntryType;

    use super::*;

    fn entry(entry_type: EntryType, term: u64, index: u64, data: &[u8]) -> Entry {
        let mut e = Entry::default();
        e.set_entry_type(entry_type);
        e.term = term;
        e.index = index;
        e.data = data.to_vec().into();
        e.context = b"ctx".to_vec().into();
        e
    }

    #[test]
    fn entry_term_matches_full_decode() {
        let big = vec![7u8; 100_000];
        let cases = [
            entry(EntryType::EntryNormal, 3, 10, b"put"),
            entry(EntryType::EntryConfChangeV2, 7, 11, b"cc"),
            entry(EntryType::EntryNormal, 0, 12, b"term zero is omitted"),
            entry(EntryType::EntryNormal, 0, 0, b""),
            entry(EntryType::EntryNormal, u64::MAX, 13, &big),
            entry(EntryType::EntryConfChange, 1, 14, b""),
        ];
        for e in cases {
            let bytes = encode(&e).unwrap();
            assert_eq!(entry_term(e.index, &bytes).unwrap(), e.term, "{e:?}");
            assert_eq!(decode_entry(e.index, &bytes).unwrap(), e);
        }
    }

    #[test]
    fn entry_under_wrong_key_is_corrupt() {
        let bytes = encode(&entry(EntryType::EntryNormal, 2, 5, b"x")).unwrap();
        assert!(matches!(
            decode_entry(6, &bytes),
            Err(StorageError::Corrupt(_))
        ));
        assert!(matches!(
            decode::<Entry>("raft entry", &[0xff, 0xff]),
            Err(StorageError::Corrupt(_))
        ));
    }

    #[test]
    fn truncation_point_round_trips() {
        for (index, term) in [(0, 0), (1, 1), (u64::MAX, 3), (1 << 40, u64::MAX)] {
            assert_eq!(
                decode_point(&encode_point(index, term)).unwrap(),
                (index, term)
            );
        }
        assert!(decode_point(&[1, 2, 3]).is_err());
    }
}
