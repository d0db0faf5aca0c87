//! Record framing: encoding and decoding of one record (see the crate docs for the layout).
//!
//! Decoding is total: any byte slice yields either a record or a [`DecodeError`] that says why
//! not, never a panic. This is the function the fuzz target drives.

use crate::constants::{HEADER_BYTES, RECORD_ALIGN_BYTES};

/// What a record means to the log. The discriminants are part of the on-disk format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum RecordKind {
    /// A log entry: `log_index`, `term` and an opaque payload.
    Entry = 1,
    /// First record of every segment: format facts and the log's sticky state at its creation.
    SegmentHeader = 2,
    /// Entries with `log_index >= ` this record's `log_index` are removed (Raft conflict).
    TruncateSuffix = 3,
    /// Entries with `log_index <=` this record's `log_index` are purged (after a snapshot); the
    /// record's `term` is the purged entry's term, which Raft needs to remember.
    Purge = 4,
    /// An opaque blob (the Raft vote) of which only the latest one counts.
    Vote = 5,
    /// The owner's commit point: entries up to `log_index` (whose term is `term`) are committed.
    /// The latest one counts; it is written lazily (see [`crate::Wal::mark_committed`]).
    Commit = 6,
}

impl RecordKind {
    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => Self::Entry,
            2 => Self::SegmentHeader,
            3 => Self::TruncateSuffix,
            4 => Self::Purge,
            5 => Self::Vote,
            6 => Self::Commit,
            _ => return None,
        })
    }
}

/// A decoded record header plus a borrowed payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRef<'a> {
    pub kind: RecordKind,
    pub log_index: u64,
    pub term: u64,
    /// Offset in the segment of the first byte of the write (batch) this record was part of.
    pub batch_offset: u32,
    pub payload: &'a [u8],
}

impl RecordRef<'_> {
    /// Bytes the record occupies on disk: header + payload, rounded up to 8.
    pub fn encoded_len(&self) -> usize {
        encoded_len(self.payload.len())
    }
}

/// Bytes a record with `payload_len` payload bytes occupies on disk.
pub const fn encoded_len(payload_len: usize) -> usize {
    (HEADER_BYTES + payload_len).next_multiple_of(RECORD_ALIGN_BYTES)
}

/// Why bytes at some offset are not a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("fewer than {HEADER_BYTES} bytes left for a record header")]
    ShortHeader,
    #[error("padding or end of log (8 zero bytes)")]
    Zero,
    #[error("unknown record kind {0}")]
    UnknownKind(u8),
    #[error("reserved header bytes are not zero")]
    Reserved,
    #[error("payload length {len} exceeds the limit {max}")]
    TooLong { len: u32, max: u32 },
    #[error("record of {need} bytes runs past the end of the data ({have} bytes left)")]
    Truncated { need: usize, have: usize },
    #[error("crc32 mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Crc { stored: u32, computed: u32 },
    #[error("padding after the payload is not zero")]
    Padding,
}

/// Appends one encoded record to `out`. `payload.len()` must have been checked against the
/// configured maximum by the caller (the WAL does, with a typed error).
pub fn encode_into(
    out: &mut Vec<u8>,
    kind: RecordKind,
    log_index: u64,
    term: u64,
    batch_offset: u32,
    payload: &[u8],
) {
    let payload_len = u32::try_from(payload.len()).expect("payload length checked by the caller");
    let start = out.len();
    let total = encoded_len(payload.len());
    out.reserve(total);
    out.extend_from_slice(&[0u8; 4]); // crc, filled below
    out.push(kind as u8);
    out.extend_from_slice(&[0u8; 3]);
    out.extend_from_slice(&payload_len.to_le_bytes());
    out.extend_from_slice(&batch_offset.to_le_bytes());
    out.extend_from_slice(&log_index.to_le_bytes());
    out.extend_from_slice(&term.to_le_bytes());
    out.extend_from_slice(payload);
    out.resize(start + total, 0);
    let crc = crc32fast::hash(&out[start + 4..start + HEADER_BYTES + payload.len()]);
    out[start..start + 4].copy_from_slice(&crc.to_le_bytes());
}

/// True if `data` starts with 8 zero bytes (or is shorter and all zero). A record's first 8
/// bytes hold its kind, which is never 0, so at an 8-aligned position this is exactly "not a
/// record": padding inside a batch, or the end of the written data on a sector boundary. Only 8
/// bytes are looked at because padding can end 8 bytes before a sector boundary, where the next
/// batch begins.
pub fn is_padding(data: &[u8]) -> bool {
    data[..data.len().min(RECORD_ALIGN_BYTES)].iter().all(|&b| b == 0)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// Decodes the record at the start of `data`. `max_payload_bytes` bounds the length field so a
/// corrupt length can never make us read (or allocate) far.
pub fn decode(data: &[u8], max_payload_bytes: u32) -> Result<RecordRef<'_>, DecodeError> {
    if is_padding(data) {
        return Err(DecodeError::Zero);
    }
    if data.len() < HEADER_BYTES {
        return Err(DecodeError::ShortHeader);
    }
    let header = &data[..HEADER_BYTES];
    let stored = u32_at(header, 0);
    let kind_byte = header[4];
    let kind = RecordKind::from_u8(kind_byte).ok_or(DecodeError::UnknownKind(kind_byte))?;
    if header[5..8] != [0, 0, 0] {
        return Err(DecodeError::Reserved);
    }
    let len = u32_at(header, 8);
    let batch_offset = u32_at(header, 12);
    let log_index = u64_at(header, 16);
    let term = u64_at(header, 24);
    if len > max_payload_bytes {
        return Err(DecodeError::TooLong { len, max: max_payload_bytes });
    }
    let payload_len = len as usize;
    let total = encoded_len(payload_len);
    if data.len() < total {
        return Err(DecodeError::Truncated { need: total, have: data.len() });
    }
    let computed = crc32fast::hash(&data[4..HEADER_BYTES + payload_len]);
    if computed != stored {
        return Err(DecodeError::Crc { stored, computed });
    }
    if data[HEADER_BYTES + payload_len..total].iter().any(|&b| b != 0) {
        return Err(DecodeError::Padding);
    }
    Ok(RecordRef {
        kind,
        log_index,
        term,
        batch_offset,
        payload: &data[HEADER_BYTES..HEADER_BYTES + payload_len],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn zero_header_is_padding_not_a_record() {
        assert_eq!(decode(&[0u8; 64], 1024), Err(DecodeError::Zero));
        // Padding 8 bytes before a sector boundary, followed by the next batch's record.
        let mut b = vec![0u8; 8];
        encode_into(&mut b, RecordKind::Entry, 1, 1, 8, b"x");
        assert_eq!(decode(&b, 1024), Err(DecodeError::Zero));
    }

    #[test]
    fn every_single_bit_flip_is_detected() {
        let mut buf = Vec::new();
        encode_into(&mut buf, RecordKind::Entry, 7, 3, 512, b"hello, world");
        for bit in 0..buf.len() * 8 {
            let mut bad = buf.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(decode(&bad, 1024).is_err(), "flip of bit {bit} went unnoticed");
        }
    }

    proptest! {
        #[test]
        fn round_trip(kind in 1u8..=5, log_index: u64, term: u64, batch_offset: u32,
                      payload in proptest::collection::vec(any::<u8>(), 0..300)) {
            let kind = RecordKind::from_u8(kind).unwrap();
            let mut buf = vec![0xAA]; // a record need not start at offset 0 of the buffer
            encode_into(&mut buf, kind, log_index, term, batch_offset, &payload);
            prop_assert_eq!(buf.len() - 1, encoded_len(payload.len()));
            prop_assert_eq!((buf.len() - 1) % RECORD_ALIGN_BYTES, 0);
            let r = decode(&buf[1..], 1024).unwrap();
            prop_assert_eq!(r, RecordRef { kind, log_index, term, batch_offset, payload: &payload });
        }

        #[test]
        fn decode_never_panics(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(&data, 64);
        }
    }
}
