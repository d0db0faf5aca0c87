//! The payload of a segment header record (layout in the crate docs).

use crate::constants::{FORMAT_VERSION, SEGMENT_MAGIC, VOTE_BYTES_MAX};
use crate::state::LogId;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SegmentHeader {
    pub segment_seq: u64,
    pub sector_bytes: u32,
    pub segment_bytes: u64,
    /// Valid bytes of the previous segment; `u64::MAX` for the first segment ever.
    pub prev_segment_end: u64,
    pub next_log_index: Option<u64>,
    pub purged: Option<LogId>,
    pub vote: Option<Vec<u8>>,
    /// The latest commit mark (flag bit 3; 16 bytes after the vote).
    pub committed: Option<LogId>,
}

const FIXED_BYTES: usize = 76;
const COMMITTED_BYTES: usize = 16;

impl SegmentHeader {
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(FIXED_BYTES + self.vote.as_ref().map_or(0, Vec::len) + COMMITTED_BYTES);
        b.extend_from_slice(&SEGMENT_MAGIC);
        b.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        b.extend_from_slice(&self.sector_bytes.to_le_bytes());
        b.extend_from_slice(&self.segment_seq.to_le_bytes());
        b.extend_from_slice(&self.segment_bytes.to_le_bytes());
        b.extend_from_slice(&self.prev_segment_end.to_le_bytes());
        let flags = u8::from(self.next_log_index.is_some())
            | (u8::from(self.purged.is_some()) << 1)
            | (u8::from(self.vote.is_some()) << 2)
            | (u8::from(self.committed.is_some()) << 3);
        b.push(flags);
        b.extend_from_slice(&[0u8; 7]);
        b.extend_from_slice(&self.next_log_index.unwrap_or(0).to_le_bytes());
        let p = self.purged.unwrap_or(LogId { log_index: 0, term: 0 });
        b.extend_from_slice(&p.log_index.to_le_bytes());
        b.extend_from_slice(&p.term.to_le_bytes());
        let vote = self.vote.as_deref().unwrap_or(&[]);
        b.extend_from_slice(&(vote.len() as u32).to_le_bytes());
        b.extend_from_slice(vote);
        if let Some(c) = self.committed {
            b.extend_from_slice(&c.log_index.to_le_bytes());
            b.extend_from_slice(&c.term.to_le_bytes());
        }
        b
    }

    pub fn decode(b: &[u8]) -> Result<Self, String> {
        if b.len() < FIXED_BYTES {
            return Err(format!("segment header payload of {} bytes is too short", b.len()));
        }
        if b[..8] != SEGMENT_MAGIC {
            return Err("bad segment magic".into());
        }
        let u32_at = |at: usize| u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"));
        let u64_at = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"));
        let version = u32_at(8);
        if version != FORMAT_VERSION {
            return Err(format!("format version {version}, this build reads {FORMAT_VERSION}"));
        }
        let flags = b[40];
        if flags & !0b1111 != 0 || b[41..48].iter().any(|&x| x != 0) {
            return Err("reserved segment header bits set".into());
        }
        let vote_len = u32_at(72) as usize;
        let committed_len = if flags & 8 != 0 { COMMITTED_BYTES } else { 0 };
        if vote_len > VOTE_BYTES_MAX || b.len() != FIXED_BYTES + vote_len + committed_len {
            return Err(format!("vote of {vote_len} bytes does not fit the header"));
        }
        let after_vote = FIXED_BYTES + vote_len;
        let sector_bytes = u32_at(12);
        if !sector_bytes.is_power_of_two() || sector_bytes < 512 {
            return Err(format!("sector size {sector_bytes} is not a power of two >= 512"));
        }
        Ok(Self {
            sector_bytes,
            segment_seq: u64_at(16),
            segment_bytes: u64_at(24),
            prev_segment_end: u64_at(32),
            next_log_index: (flags & 1 != 0).then(|| u64_at(48)),
            purged: (flags & 2 != 0).then(|| LogId { log_index: u64_at(56), term: u64_at(64) }),
            vote: (flags & 4 != 0).then(|| b[FIXED_BYTES..after_vote].to_vec()),
            committed: (flags & 8 != 0).then(|| LogId { log_index: u64_at(after_vote), term: u64_at(after_vote + 8) }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trip(seq: u64, size: u64, prev: u64, next: Option<u64>,
                      purged: Option<(u64, u64)>, vote in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..64)),
                      committed: Option<(u64, u64)>) {
            let h = SegmentHeader { segment_seq: seq, sector_bytes: 4096, segment_bytes: size,
                prev_segment_end: prev, next_log_index: next,
                purged: purged.map(|(log_index, term)| LogId { log_index, term }), vote,
                committed: committed.map(|(log_index, term)| LogId { log_index, term }) };
            prop_assert_eq!(SegmentHeader::decode(&h.encode()).unwrap(), h);
        }

        #[test]
        fn decode_never_panics(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = SegmentHeader::decode(&b);
        }
    }
}
