//! openraft's log storage on stratos-wal.
//!
//! Durability: `append` writes the entries into the WAL's pending batch and returns; the
//! callback fires only after [`Wal::wait_durable`] says an fdatasync covering them returned Ok.
//! openraft counts an entry towards the commit quorum only after that callback, so a committed
//! (and acknowledged) entry is on disk on a majority. All appends of one executor turn share one
//! write and one fdatasync (the WAL's group commit). The vote, truncations and purges are records
//! in the same ordered stream and are waited on before returning, as openraft requires.
//!
//! Reads: the leader applies entries it has just appended, and replication reads the recent
//! tail, so the last [`CACHED_ENTRIES_MAX`] entries are kept in memory (they are cheap clones:
//! proposals are reference-counted); older ones are read back from the WAL and decoded.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::rc::Rc;

use openraft::storage::IOFlushed;
use openraft::{LogState, RaftLogReader};
use stratos_wal::{DmaStorage, Wal};

use crate::codec::{decode_entry, decode_vote, encode_entry, encode_vote};
use crate::types::{Entry, LogId, TypeConfig, Vote, log_id};

/// Entries kept in memory for apply and replication, at most this many ...
pub const CACHED_ENTRIES_MAX: usize = 1 << 16;
/// ... and at most about this many bytes of proposals. Bounded by count alone, a group that
/// batches 100-256 commands per entry kept 65,536 entries of 20-50 KiB each: measured, 6.6 GB
/// of RSS after loading 6M keys (1,150 B/key; 204 B/key after a restart). Apply follows append
/// closely and replication reads the recent tail, so 32 MiB covers both; older entries come
/// from the WAL.
pub const CACHED_BYTES_MAX: usize = 32 << 20;

/// Bytes an entry holds in the cache (its proposal; other payloads are small).
fn cached_bytes(e: &Entry) -> usize {
    match &e.payload {
        openraft::EntryPayload::Normal(p) => p.bytes().len(),
        _ => 64,
    }
}

struct Inner {
    wal: Wal<DmaStorage>,
    /// Consecutive entries ending at the last one appended.
    cache: RefCell<VecDeque<Entry>>,
    /// Bytes of the cached entries (see [`cached_bytes`]).
    cache_bytes: std::cell::Cell<usize>,
    scratch: RefCell<Vec<u8>>,
}

/// The log of one group. Clones share the WAL (one executor; never crosses threads).
#[derive(Clone)]
pub struct LogStore {
    inner: Rc<Inner>,
}

impl std::fmt::Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore").field("wal", &self.inner.wal).finish()
    }
}

fn io_err(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

impl LogStore {
    pub fn new(wal: Wal<DmaStorage>) -> Self {
        Self { inner: Rc::new(Inner { wal, cache: RefCell::new(VecDeque::new()), cache_bytes: Default::default(), scratch: RefCell::new(Vec::new()) }) }
    }

    pub fn wal(&self) -> &Wal<DmaStorage> {
        &self.inner.wal
    }

    /// Keeps the cached entries `keep` says yes to, and their byte count right.
    fn retain_cached(&self, keep: impl Fn(&Entry) -> bool) {
        let mut cache = self.inner.cache.borrow_mut();
        cache.retain(keep);
        self.inner.cache_bytes.set(cache.iter().map(cached_bytes).sum());
    }

    fn cached(&self, log_index: u64) -> Option<Entry> {
        let cache = self.inner.cache.borrow();
        let first = cache.front()?.log_id.index;
        let i = usize::try_from(log_index.checked_sub(first)?).ok()?;
        cache.get(i).cloned()
    }

    fn is_cached(&self, log_index: u64) -> bool {
        let cache = self.inner.cache.borrow();
        cache.front().is_some_and(|f| (f.log_id.index..f.log_id.index + cache.len() as u64).contains(&log_index))
    }

    /// Entries `start..end` that are not cached, read from the WAL together (one disk read per
    /// span of consecutive entries, not one per entry: log replay after a restart and a
    /// lagging follower's catch-up read thousands).
    async fn read_uncached(&self, start: u64, end: u64, out: &mut Vec<Entry>) -> io::Result<()> {
        let wal = &self.inner.wal;
        let terms = (start..end).map(|i| wal.entry_term(i).ok_or_else(|| io_err(format!("log entry {i} is not in the log")))).collect::<io::Result<Vec<u64>>>()?;
        let payloads = wal.read_entries(start, end).await.map_err(io_err)?;
        for ((log_index, term), bytes) in (start..end).zip(terms).zip(payloads) {
            out.push(decode_entry(log_index, term, &bytes).map_err(|e| io_err(format!("log entry {log_index}: {e}")))?);
        }
        Ok(())
    }
}

/// Entries handed to the state machine per read when openraft applies a range. openraft's
/// default reads the whole range first: a restart's replay of the log since the snapshot (14k
/// entries, 900k commands after a 3M-key load) held every payload and entry at once, all in
/// fresh memory the kernel zeroed page by page (perf: `clear_page_erms` was 25% of the replay's
/// CPU, under the payload copies). Read a piece at a time, the same memory is reused.
pub const APPLY_READ_ENTRIES: u64 = 64;

impl LogStore {
    /// `range` as `start..end` within the log (the end clipped to the next index).
    fn bounds(&self, range: &impl RangeBounds<u64>) -> (u64, u64) {
        let start = match range.start_bound() {
            Bound::Included(s) => *s,
            Bound::Excluded(s) => s + 1,
            Bound::Unbounded => self.inner.wal.first_log_index(),
        };
        let next = self.inner.wal.next_log_index().unwrap_or(start);
        let end = match range.end_bound() {
            Bound::Included(e) => (e + 1).min(next),
            Bound::Excluded(e) => (*e).min(next),
            Bound::Unbounded => next,
        };
        (start, end)
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug>(&mut self, range: RB) -> io::Result<Vec<Entry>> {
        let (start, end) = self.bounds(&range);
        let mut out = Vec::with_capacity(end.saturating_sub(start) as usize);
        let mut i = start;
        while i < end {
            if let Some(e) = self.cached(i) {
                out.push(e);
                i += 1;
                continue;
            }
            let mut j = i + 1;
            while j < end && !self.is_cached(j) {
                j += 1;
            }
            self.read_uncached(i, j, &mut out).await?;
            i = j;
        }
        Ok(out)
    }

    /// The range [`APPLY_READ_ENTRIES`] entries at a time, each piece read when the state
    /// machine has taken the one before; an error ends the stream.
    async fn entries_stream<RB>(&mut self, range: RB) -> impl futures_util::Stream<Item = io::Result<Entry>>
    where
        RB: RangeBounds<u64> + Clone + Debug,
    {
        use futures_util::StreamExt;
        let (start, end) = self.bounds(&range);
        futures_util::stream::unfold((self.clone(), start), move |(mut reader, next)| async move {
            if next >= end {
                return None;
            }
            let to = (next + APPLY_READ_ENTRIES).min(end);
            let piece: Vec<io::Result<Entry>> = match reader.try_get_log_entries(next..to).await {
                Ok(entries) => entries.into_iter().map(Ok).collect(),
                Err(e) => return Some((vec![Err(e)], (reader, end))),
            };
            Some((piece, (reader, to)))
        })
        .flat_map(futures_util::stream::iter)
    }

    async fn read_vote(&mut self) -> io::Result<Option<Vote>> {
        self.inner.wal.vote().map(|b| decode_vote(&b).map_err(|e| io_err(format!("stored vote: {e}")))).transpose()
    }
}

impl openraft::storage::RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> io::Result<LogState<TypeConfig>> {
        let wal = &self.inner.wal;
        let purged = wal.purged().map(|p| log_id(p.term, p.log_index));
        let last = wal.last_log_id().map(|l| log_id(l.term, l.log_index)).or(purged);
        Ok(LogState { last_purged_log_id: purged, last_log_id: last })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    /// The commit point goes into the WAL as a mark that rides on the next flush (no fdatasync
    /// of its own; see [`Wal::mark_committed`]). openraft reads it back when the group opens and
    /// re-applies the log up to it there. Without it, opening a group read the whole log since
    /// the snapshot backwards, 64 entries per read, looking for a membership entry (openraft's
    /// `last_membership_in_log` scans from the last applied index, which is the snapshot's),
    /// and only re-applied it after an election: 0.25-0.3 s per shard of a 6M-key restart went
    /// to that scan alone. Saved, the scan covers only the entries past the commit point, and a
    /// restarted replica never answers from a state older than one it had applied.
    ///
    /// A commit point past the log's end (which openraft should never give) is not marked rather
    /// than failing the group: a mark is only ever a lower bound.
    async fn save_committed(&mut self, committed: Option<LogId>) -> io::Result<()> {
        let Some(c) = committed else { return Ok(()) };
        match self.inner.wal.mark_committed(stratos_wal::LogId { log_index: c.index, term: c.leader_id.term }) {
            Ok(()) | Err(stratos_wal::AppendError::CommitBeyondEnd { .. }) => Ok(()),
            Err(e) => Err(io_err(e)),
        }
    }

    /// The latest mark that still names an entry of the log with its term (a mark is a lower
    /// bound: the latest ones may have been lost in a crash, which only means re-applying less
    /// at open and the rest once a leader says so).
    async fn read_committed(&mut self) -> io::Result<Option<LogId>> {
        let wal = &self.inner.wal;
        Ok(wal.committed().filter(|c| wal.entry_term(c.log_index) == Some(c.term)).map(|c| log_id(c.term, c.log_index)))
    }

    async fn save_vote(&mut self, vote: &Vote) -> io::Result<()> {
        let t = self.inner.wal.save_vote(&encode_vote(vote)).map_err(io_err)?;
        self.inner.wal.wait_durable(t).await.map_err(io_err)
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<TypeConfig>) -> io::Result<()>
    where
        I: IntoIterator<Item = Entry>,
    {
        let mut last_ticket = None;
        {
            let mut scratch = self.inner.scratch.borrow_mut();
            let mut cache = self.inner.cache.borrow_mut();
            for e in entries {
                encode_entry(&e, &mut scratch);
                last_ticket = Some(self.inner.wal.append_entry(e.log_id.index, e.log_id.leader_id.term, &scratch).map_err(io_err)?);
                let mut bytes = self.inner.cache_bytes.get();
                if cache.back().is_some_and(|b| b.log_id.index + 1 != e.log_id.index) {
                    cache.clear();
                    bytes = 0;
                }
                bytes += cached_bytes(&e);
                cache.push_back(e);
                while cache.len() > CACHED_ENTRIES_MAX || (bytes > CACHED_BYTES_MAX && cache.len() > 1) {
                    bytes -= cache.pop_front().as_ref().map_or(0, cached_bytes);
                }
                self.inner.cache_bytes.set(bytes);
            }
        }
        let Some(ticket) = last_ticket else {
            callback.io_completed(Ok(()));
            return Ok(());
        };
        // The callback fires when the group commit that covers these entries has been fdatasynced.
        let this = self.clone();
        glommio::spawn_local(async move {
            let r = this.inner.wal.wait_durable(ticket).await.map_err(io_err);
            callback.io_completed(r);
        })
        .detach();
        Ok(())
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> io::Result<()> {
        let from = last_log_id.map_or(0, |l| l.index + 1);
        self.retain_cached(|e| e.log_id.index < from);
        if self.inner.wal.next_log_index().is_none_or(|n| n <= from) {
            return Ok(());
        }
        let t = self.inner.wal.truncate_suffix(from).map_err(io_err)?;
        self.inner.wal.wait_durable(t).await.map_err(io_err)
    }

    async fn purge(&mut self, upto: LogId) -> io::Result<()> {
        self.retain_cached(|e| e.log_id.index > upto.index);
        let t = self.inner.wal.purge(stratos_wal::LogId { log_index: upto.index, term: upto.leader_id.term }).map_err(io_err)?;
        self.inner.wal.wait_durable(t).await.map_err(io_err)
    }
}
