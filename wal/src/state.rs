//! The logical content of the log, as the sequence of records defines it.
//!
//! The same [`LogState::apply`] runs for live appends (strict: it rejects what the caller must not
//! do) and for recovery replay (lenient about history below the oldest retained segment, which
//! purging may have deleted). Keeping one function for both is what makes "recovery rebuilds
//! exactly the state the writer had" hold by construction.

use std::collections::VecDeque;

use crate::error::AppendError;
use crate::record::RecordKind;

/// A Raft log position: index and the term of the entry there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LogId {
    pub log_index: u64,
    pub term: u64,
}

/// Where an entry's record lies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EntryLoc {
    pub log_index: u64,
    pub term: u64,
    pub segment_seq: u64,
    /// Offset of the record (its header) within the segment.
    pub offset: u64,
    pub payload_len: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct LogState {
    /// Index the next entry must have; `None` for a log that never held anything.
    pub next_log_index: Option<u64>,
    pub purged: Option<LogId>,
    pub vote: Option<Vec<u8>>,
    /// The latest commit mark, unless a truncation since removed the entry it names.
    pub committed: Option<LogId>,
    /// Live entries, contiguous, in order.
    pub entries: VecDeque<EntryLoc>,
}

/// One record's effect, as `apply` takes it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Op<'a> {
    Entry(EntryLoc),
    TruncateSuffix(u64),
    Purge(LogId),
    Vote(&'a [u8]),
    Commit(LogId),
}

impl LogState {
    /// First index a read may ask for (== next when empty).
    pub fn first_log_index(&self) -> u64 {
        match self.entries.front() {
            Some(e) => e.log_index,
            None => self.next_or_zero(),
        }
    }

    pub fn next_or_zero(&self) -> u64 {
        self.next_log_index.unwrap_or(0)
    }

    /// Checks `op` against the state without changing it. `replay` relaxes the checks that need
    /// history older than the oldest segment on disk.
    pub fn check(&self, op: &Op<'_>, replay: bool) -> Result<(), AppendError> {
        match *op {
            Op::Entry(loc) => match self.next_log_index {
                Some(expected) if expected != loc.log_index => {
                    Err(AppendError::NonContiguous { expected, got: loc.log_index })
                }
                _ => Ok(()),
            },
            Op::TruncateSuffix(from) => {
                let next = self.next_or_zero();
                let floor = self.purged.map_or(0, |p| p.log_index + 1);
                let first = if replay { floor } else { self.first_log_index().max(floor) };
                if self.next_log_index.is_none() || from < first || from > next {
                    return Err(AppendError::TruncateOutOfRange { from, first, next });
                }
                Ok(())
            }
            Op::Purge(id) => match self.purged {
                Some(p) if id.log_index < p.log_index => {
                    Err(AppendError::PurgeBackwards { up_to: id.log_index, purged: p.log_index })
                }
                _ => Ok(()),
            },
            Op::Vote(_) => Ok(()),
            // Beyond the log's end it could name an entry that was never written.
            Op::Commit(id) => match self.next_log_index {
                Some(next) if id.log_index < next => Ok(()),
                _ => Err(AppendError::CommitBeyondEnd { log_index: id.log_index, next: self.next_or_zero() }),
            },
        }
    }

    /// Applies a checked op.
    pub fn apply(&mut self, op: Op<'_>) {
        match op {
            Op::Entry(loc) => {
                self.entries.push_back(loc);
                self.next_log_index = Some(loc.log_index + 1);
            }
            Op::TruncateSuffix(from) => {
                while self.entries.back().is_some_and(|e| e.log_index >= from) {
                    self.entries.pop_back();
                }
                self.next_log_index = Some(from);
                // Raft never truncates a committed entry; should an owner do it anyway, the
                // mark is forgotten rather than left naming an entry that is gone.
                if self.committed.is_some_and(|c| c.log_index >= from) {
                    self.committed = None;
                }
            }
            Op::Purge(id) => {
                while self.entries.front().is_some_and(|e| e.log_index <= id.log_index) {
                    self.entries.pop_front();
                }
                self.purged = Some(id);
                if self.next_log_index.is_none_or(|n| n <= id.log_index) {
                    self.next_log_index = Some(id.log_index + 1);
                }
            }
            Op::Vote(v) => self.vote = Some(v.to_vec()),
            Op::Commit(id) => self.committed = Some(id),
        }
    }

    pub fn entry(&self, log_index: u64) -> Option<&EntryLoc> {
        let first = self.entries.front()?.log_index;
        let i = usize::try_from(log_index.checked_sub(first)?).ok()?;
        self.entries.get(i)
    }
}

/// Turns a decoded record into an op (segment headers are handled by the caller).
pub(crate) fn op_of<'a>(
    kind: RecordKind,
    log_index: u64,
    term: u64,
    payload: &'a [u8],
    segment_seq: u64,
    offset: u64,
) -> Option<Op<'a>> {
    Some(match kind {
        RecordKind::Entry => Op::Entry(EntryLoc {
            log_index,
            term,
            segment_seq,
            offset,
            payload_len: payload.len() as u32,
        }),
        RecordKind::TruncateSuffix => Op::TruncateSuffix(log_index),
        RecordKind::Purge => Op::Purge(LogId { log_index, term }),
        RecordKind::Vote => Op::Vote(payload),
        RecordKind::Commit => Op::Commit(LogId { log_index, term }),
        RecordKind::SegmentHeader => return None,
    })
}
