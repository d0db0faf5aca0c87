//! The write-ahead log: appends, group commit, truncation, reads.
//!
//! # Group commit
//! `append_*` only encodes the record into the pending batch and returns a [`Ticket`]; nothing is
//! durable yet. [`Wal::wait_durable`] resolves once the batch holding the ticket has been written
//! *and* fdatasync'ed. The first waiter that finds no flush running becomes the flusher: it takes
//! everything appended so far as one batch (one write per segment touched, one fdatasync each),
//! while appends that arrive meanwhile gather into the next batch. Callers on one executor thus
//! share fsyncs without a background task, a lock or a timer. `durable_lsn` only moves after the
//! fdatasync returned `Ok`, so no caller can learn "durable" early.
//!
//! # Failure
//! Any I/O error while flushing poisons the log: every later call fails with the first error.
//! An fsync is never retried, because after a failed fsync the kernel may have dropped the dirty
//! data it failed to write; the owner must stop and recover from disk (fail-stop).

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Poll, Waker};

use crate::constants::{HEADER_BYTES, PAYLOAD_BYTES_MAX_DEFAULT, SEGMENT_BYTES_DEFAULT, VOTE_BYTES_MAX};
use crate::error::{AppendError, FlushError, OpenError, ReadError};
use crate::header::SegmentHeader;
use crate::record::{self, RecordKind, encoded_len};
use crate::recovery::{self, RecoveryReport, segment_name};
use crate::state::{EntryLoc, LogId, LogState, Op};
use crate::storage::{SegmentFile, Storage};

/// Settings of a log. Both apply to segments created from now on; existing segments keep theirs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalConfig {
    pub segment_bytes: u64,
    pub payload_bytes_max: u32,
}

impl Default for WalConfig {
    fn default() -> Self {
        Self { segment_bytes: SEGMENT_BYTES_DEFAULT, payload_bytes_max: PAYLOAD_BYTES_MAX_DEFAULT }
    }
}

/// Proof of an append; [`Wal::wait_durable`] turns it into "durable".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[must_use = "an append is not durable until its ticket is waited on"]
pub struct Ticket(u64);

/// Counters for metrics and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WalStats {
    pub records_appended: u64,
    pub flushes: u64,
    pub fdatasyncs: u64,
    pub bytes_written: u64,
    pub segments_created: u64,
    pub segments_removed: u64,
    /// Segments that were a prepared spare (renamed into place, not created on the flush path).
    pub spares_used: u64,
    /// Time of each flush from its first write to its last fdatasync's return, in µs: the
    /// durability cost a group-committed batch pays.
    pub flush_micros: crate::Log2Histogram,
    /// Records per flush: how well group commit batches.
    pub flush_records: crate::Log2Histogram,
    /// Batches encoded into the buffer of an earlier one (kept after its write).
    pub buffers_reused: u64,
}

/// Buffers of written batches kept for the next ones (the one being written and the one
/// filling). A batch's buffer grew from empty by doubling and was freed after its write: under
/// `omkg --batch 1` the reallocations' copies and the fresh (transparent huge) pages mimalloc
/// faulted in for them were 6.6% of the OM's samples in `clear_page_erms` alone, on the write
/// path of every group.
const SPARE_BUFFERS_MAX: usize = 2;

/// A batch buffer larger than this is freed after its write, not kept: a WAL holds at most
/// `SPARE_BUFFERS_MAX` times this between batches (a block log's batches of 1 MiB blocks are
/// not kept).
const SPARE_BUFFER_BYTES_MAX: usize = 1 << 20;

struct PendingWrite {
    segment_seq: u64,
    segment_bytes: u64,
    /// Sector-aligned offset where the write starts.
    offset: u64,
    bytes: Vec<u8>,
    /// The segment file does not exist yet: create it (zeroed, synced, dir synced) first.
    create: bool,
}

/// The spare segment file (see [`Wal::prepare_spare`]).
enum Spare<F> {
    None,
    Creating,
    Ready(Rc<F>),
}

/// The spare's name; recovery ignores it (not a segment name) and `open` removes a leftover.
const SPARE_NAME: &str = "spare.wal";

struct Inner<F> {
    spare: Spare<F>,
    state: LogState,
    segments: BTreeMap<u64, Rc<F>>,
    tail_seq: u64,
    tail_segment_bytes: u64,
    /// Where the next write to the tail starts once the current pending one is taken.
    tail_write_offset: u64,
    pending: Vec<PendingWrite>,
    /// Batches being written; kept readable until their write completes.
    inflight: Vec<Rc<PendingWrite>>,
    /// Empty buffers of written batches, for the next ones.
    spare_buffers: Vec<Vec<u8>>,
    appended_lsn: u64,
    durable_lsn: u64,
    flushing: bool,
    /// The latest purge record not yet followed by a segment cleanup. The cleanup waits until a
    /// flush made that record durable: it deletes segments by the purged point, and a crash
    /// after a deletion but before the purge record reached the disk would leave a log whose
    /// surviving first segment starts beyond the purge point it records (a hole).
    purge_lsn: Option<u64>,
    poisoned: Option<String>,
    stats: WalStats,
}

impl<F> Inner<F> {
    /// An empty buffer for a new batch, with the capacity of an earlier one if one is kept.
    fn batch_buffer(&mut self) -> Vec<u8> {
        match self.spare_buffers.pop() {
            Some(b) => {
                self.stats.buffers_reused += 1;
                b
            }
            None => Vec::new(),
        }
    }

    /// Keeps a written batch's buffer for a later batch (within the bounds above).
    fn keep_buffer(&mut self, mut b: Vec<u8>) {
        if self.spare_buffers.len() < SPARE_BUFFERS_MAX && b.capacity() <= SPARE_BUFFER_BYTES_MAX {
            b.clear();
            self.spare_buffers.push(b);
        }
    }

    /// The payload of the entry at `loc` if its batch is not on disk yet (pending or being
    /// written).
    fn in_memory(&self, loc: &EntryLoc) -> Option<&[u8]> {
        let (offset, bytes) = self
            .pending
            .iter()
            .map(|w| (w.segment_seq, w.offset, &w.bytes[..]))
            .chain(self.inflight.iter().map(|w| (w.segment_seq, w.offset, &w.bytes[..])))
            .find(|(seq, offset, bytes)| *seq == loc.segment_seq && (*offset..*offset + bytes.len() as u64).contains(&loc.offset))
            .map(|(_, offset, bytes)| (offset, bytes))?;
        let at = (loc.offset - offset) as usize + HEADER_BYTES;
        bytes.get(at..at + loc.payload_len as usize)
    }
}

/// Wakes every waiter when the durable point moves (or the log is poisoned).
#[derive(Default)]
struct Notify {
    generation: Cell<u64>,
    wakers: RefCell<Vec<Waker>>,
}

impl Notify {
    fn notify_all(&self) {
        self.generation.set(self.generation.get() + 1);
        for w in std::mem::take(&mut *self.wakers.borrow_mut()) {
            w.wake();
        }
    }

    async fn wait(&self, seen_generation: u64) {
        poll_fn(|cx| {
            if self.generation.get() != seen_generation {
                Poll::Ready(())
            } else {
                let mut wakers = self.wakers.borrow_mut();
                if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
                    wakers.push(cx.waker().clone());
                }
                Poll::Pending
            }
        })
        .await
    }
}

/// What one read of the log returned: the bytes as read and where each entry's payload lies in
/// them.
struct Span {
    bytes: Vec<u8>,
    payloads: Vec<std::ops::Range<usize>>,
}

/// A write-ahead log over a [`Storage`]. Single-threaded: share it with `Rc` among the tasks of
/// one executor.
pub struct Wal<S: Storage> {
    storage: S,
    config: WalConfig,
    sector_bytes: u64,
    inner: RefCell<Inner<S::File>>,
    durable_changed: Notify,
}

impl<S: Storage> std::fmt::Debug for Wal<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let i = self.inner.borrow();
        f.debug_struct("Wal")
            .field("config", &self.config)
            .field("first_log_index", &i.state.first_log_index())
            .field("next_log_index", &i.state.next_log_index)
            .field("tail_seq", &i.tail_seq)
            .field("poisoned", &i.poisoned)
            .finish()
    }
}

impl<S: Storage> Wal<S> {
    /// Opens the log in `storage`, recovering what is there (see [`crate::recovery`]), or starts
    /// a new one. Returns once any repair (a sealed torn tail, a first segment) is durable.
    pub async fn open(storage: S, config: WalConfig) -> Result<(Self, RecoveryReport), OpenError> {
        Self::open_visiting(storage, config, &mut |_, _, _| {}).await
    }

    /// [`Wal::open`], showing every entry record recovery reads to `visit` as it goes (see
    /// [`recovery::Visit`]): an owner that keeps its own index over the payloads rebuilds it
    /// without reading the log a second time.
    pub async fn open_visiting(storage: S, config: WalConfig, visit: recovery::Visit<'_>) -> Result<(Self, RecoveryReport), OpenError> {
        let sector_bytes = storage.sector_bytes();
        validate(&config, sector_bytes)?;
        let rec = recovery::recover(&storage, config.payload_bytes_max, visit).await?;
        let wal = Self {
            storage,
            config,
            sector_bytes,
            inner: RefCell::new(Inner {
                spare: Spare::None,
                state: rec.state,
                segments: rec.segments,
                tail_seq: 0,
                tail_segment_bytes: config.segment_bytes,
                tail_write_offset: 0,
                pending: Vec::new(),
                inflight: Vec::new(),
                spare_buffers: Vec::new(),
                appended_lsn: 0,
                durable_lsn: 0,
                flushing: false,
                purge_lsn: None,
                poisoned: None,
                stats: WalStats::default(),
            }),
            durable_changed: Notify::default(),
        };
        {
            let mut i = wal.inner.borrow_mut();
            match rec.tail {
                None => wal.start_segment(&mut i, 1, u64::MAX),
                Some(t) => {
                    i.tail_seq = t.segment_seq;
                    i.tail_segment_bytes = t.segment_bytes;
                    i.tail_write_offset = t.write_offset;
                    if let Some(valid_end) = t.seal_at {
                        wal.start_segment(&mut i, t.segment_seq + 1, valid_end);
                    }
                }
            }
        }
        wal.sync().await?;
        // A spare left by the previous run may be partly written (a crash while zero-filling):
        // start again without it. Its removal need not be durable (the next open repeats it).
        let names = wal.storage.list().await.map_err(|source| OpenError::Io { op: "listing", file: wal.storage.describe(""), source })?;
        if names.iter().any(|n| n == SPARE_NAME) {
            wal.storage.remove(SPARE_NAME).await.map_err(|source| OpenError::Io { op: "removing", file: wal.storage.describe(SPARE_NAME), source })?;
        }
        Ok((wal, rec.report))
    }

    /// Whether a spare segment should be prepared (none is ready or being made, and the log is
    /// healthy). The owner polls this from a background task and calls [`Wal::prepare_spare`].
    pub fn needs_spare(&self) -> bool {
        let i = self.inner.borrow();
        matches!(i.spare, Spare::None) && i.poisoned.is_none()
    }

    /// Creates the next segment ahead of need, as `spare.wal` (zero-filled and synced, which
    /// for a 64 MiB segment takes tens of milliseconds). When the tail fills, the flush that
    /// starts the next segment renames the spare into place and syncs the directory instead of
    /// creating and zero-filling a file: the segment rollover leaves the flush path. Without a
    /// spare (none prepared, or one still being made) the flush creates the segment as before.
    /// Run it off the request path: it awaits the whole zero-fill.
    pub async fn prepare_spare(&self) -> std::io::Result<()> {
        {
            let mut i = self.inner.borrow_mut();
            if !matches!(i.spare, Spare::None) {
                return Ok(());
            }
            i.spare = Spare::Creating;
        }
        let created = self.storage.create(SPARE_NAME, self.config.segment_bytes).await;
        let mut i = self.inner.borrow_mut();
        match created {
            Ok(f) => {
                i.spare = Spare::Ready(Rc::new(f));
                Ok(())
            }
            Err(e) => {
                // No further spare this run (a partial file may be left; the next open removes
                // it): rollovers create their segments on the flush path, as without spares.
                i.spare = Spare::Creating;
                Err(e)
            }
        }
    }

    /// Appends a log entry. `log_index` must follow the last entry (any index starts an empty,
    /// never-used log).
    pub fn append_entry(&self, log_index: u64, term: u64, payload: &[u8]) -> Result<Ticket, AppendError> {
        self.push(RecordKind::Entry, log_index, term, payload)
    }

    /// Removes entries from `from_log_index` on (a Raft log conflict). The next entry appended
    /// must have index `from_log_index`.
    pub fn truncate_suffix(&self, from_log_index: u64) -> Result<Ticket, AppendError> {
        self.push(RecordKind::TruncateSuffix, from_log_index, 0, &[])
    }

    /// Drops entries up to and including `up_to` (after a snapshot). May run past the last
    /// entry (snapshot install): the log is then empty and continues at `up_to.log_index + 1`.
    /// Segments holding only purged entries are deleted after the marker is durable.
    pub fn purge(&self, up_to: LogId) -> Result<Ticket, AppendError> {
        self.push(RecordKind::Purge, up_to.log_index, up_to.term, &[])
    }

    /// Records a vote blob; recovery returns the latest durable one.
    pub fn save_vote(&self, vote: &[u8]) -> Result<Ticket, AppendError> {
        if vote.len() > VOTE_BYTES_MAX {
            return Err(AppendError::TooLarge { len: vote.len(), max: VOTE_BYTES_MAX as u32 });
        }
        self.push(RecordKind::Vote, 0, 0, vote)
    }

    /// Records the owner's commit point: entries up to `id` are committed. Nothing waits for
    /// it: the record rides on the next flush that something else asks for (or [`Wal::sync`]),
    /// so it costs no fdatasync of its own, and a crash may lose the latest marks. Recovery
    /// returns the latest durable one ([`Wal::committed`]); every segment header restates it,
    /// so purging old segments never loses it. `id` must name an index before the log's end.
    ///
    /// It lets a Raft owner re-apply its committed entries when it opens, before it knows of
    /// any leader, instead of learning the commit index again from an election.
    pub fn mark_committed(&self, id: LogId) -> Result<(), AppendError> {
        self.push(RecordKind::Commit, id.log_index, id.term, &[]).map(|_| ())
    }

    /// Makes everything appended so far durable.
    pub async fn sync(&self) -> Result<(), FlushError> {
        let t = Ticket(self.inner.borrow().appended_lsn);
        self.wait_durable(t).await
    }

    /// Resolves once the record behind `ticket` is durable: written and fdatasync'ed.
    pub async fn wait_durable(&self, ticket: Ticket) -> Result<(), FlushError> {
        loop {
            let seen = {
                let i = self.inner.borrow();
                if let Some(p) = &i.poisoned {
                    return Err(FlushError::Poisoned(p.clone()));
                }
                if i.durable_lsn >= ticket.0 {
                    return Ok(());
                }
                i.flushing.then(|| self.durable_changed.generation.get())
            };
            match seen {
                Some(generation) => self.durable_changed.wait(generation).await,
                None => self.flush_batch().await?,
            }
        }
    }

    /// Reads one entry's payload, from memory if its batch is not on disk yet, else from disk
    /// (checking the record's crc again: bit rot since recovery is reported, not returned).
    pub async fn read_entry(&self, log_index: u64) -> Result<Vec<u8>, ReadError> {
        let mut one = self.read_entries_spanned(log_index, log_index.saturating_add(1), 0).await?;
        one.pop().ok_or_else(|| self.out_of_range(log_index))
    }

    /// [`Wal::read_entry`] without copying the payload out of what was read: the bytes and
    /// where the payload lies in them. A datanode serves a block read from these: the block
    /// goes from the bytes read straight into its reply.
    pub async fn read_entry_in_place(&self, log_index: u64) -> Result<(Vec<u8>, std::ops::Range<usize>), ReadError> {
        let span = self.read_span(log_index, log_index.saturating_add(1), 0).await?;
        let range = span.payloads.into_iter().next().ok_or_else(|| self.out_of_range(log_index))?;
        Ok((span.bytes, range))
    }

    /// Reads the payloads of entries `start..end`, in order, as [`Wal::read_entry`] would, but
    /// consecutive entries of a segment with one disk read per span of up to
    /// [`READ_SPAN_BYTES`](crate::constants::READ_SPAN_BYTES) (log replay, catch-up).
    pub async fn read_entries(&self, start: u64, end: u64) -> Result<Vec<Vec<u8>>, ReadError> {
        self.read_entries_spanned(start, end, crate::constants::READ_SPAN_BYTES).await
    }

    /// [`Wal::read_entries`] with spans of at most `span_bytes` (an entry larger than that is
    /// read alone).
    pub async fn read_entries_spanned(&self, start: u64, end: u64, span_bytes: usize) -> Result<Vec<Vec<u8>>, ReadError> {
        let mut out = Vec::with_capacity(end.saturating_sub(start).min(1 << 16) as usize);
        let mut next = start;
        while next < end {
            let span = self.read_span(next, end, span_bytes).await?;
            out.extend(span.payloads.iter().map(|r| span.bytes[r.clone()].to_vec()));
            next += span.payloads.len() as u64;
        }
        Ok(out)
    }

    fn out_of_range(&self, log_index: u64) -> ReadError {
        let i = self.inner.borrow();
        ReadError::OutOfRange { log_index, first: i.state.first_log_index(), next: i.state.next_or_zero() }
    }

    /// One read of [`Wal::read_entries_spanned`]: the run of entries from `next` (before `end`)
    /// that lie, in order, in one segment file within `span_bytes`, checked; or one entry still
    /// in memory. At least one entry.
    async fn read_span(&self, next: u64, end: u64, span_bytes: usize) -> Result<Span, ReadError> {
        let (file, seq, locs) = {
            let i = self.inner.borrow();
            let first = *i.state.entry(next).ok_or_else(|| self.out_of_range(next))?;
            if let Some(bytes) = i.in_memory(&first) {
                return Ok(Span { payloads: std::iter::once(0..bytes.len()).collect(), bytes: bytes.to_vec() });
            }
            let span_end = |l: &EntryLoc| l.offset + encoded_len(l.payload_len as usize) as u64;
            let mut locs = vec![first];
            let mut index = next + 1;
            while index < end {
                let Some(l) = i.state.entry(index) else { return Err(self.out_of_range(index)) };
                let last = locs.last().expect("one at least");
                if l.segment_seq != first.segment_seq || l.offset < span_end(last) || span_end(l) - first.offset > span_bytes as u64 || i.in_memory(l).is_some() {
                    break;
                }
                locs.push(*l);
                index += 1;
            }
            (i.segments.get(&first.segment_seq).cloned(), first.segment_seq, locs)
        };
        let name = segment_name(seq);
        let file_desc = || self.storage.describe(&name);
        let base = locs[0].offset;
        let Some(file) = file else {
            return Err(ReadError::Corrupt { file: file_desc(), offset: base, reason: "segment not open".into() });
        };
        let last = locs.last().expect("one at least");
        let len = (last.offset - base) as usize + encoded_len(last.payload_len as usize);
        let bytes = file.read_at(base, len).await.map_err(|source| ReadError::Io { file: file_desc(), offset: base, source })?;
        let mut payloads = Vec::with_capacity(locs.len());
        for l in &locs {
            let at = (l.offset - base) as usize;
            let record = bytes.get(at..at + encoded_len(l.payload_len as usize)).unwrap_or_default();
            let corrupt = |reason: String| ReadError::Corrupt { file: file_desc(), offset: l.offset, reason };
            let r = record::decode(record, self.config.payload_bytes_max).map_err(|e| corrupt(e.to_string()))?;
            if r.kind != RecordKind::Entry || r.log_index != l.log_index || r.term != l.term {
                return Err(corrupt(format!("expected entry {}, found {:?} {}", l.log_index, r.kind, r.log_index)));
            }
            // decode's payload is the record's bytes after its header.
            let payload = at + HEADER_BYTES..at + HEADER_BYTES + r.payload.len();
            debug_assert!(std::ptr::eq(r.payload.as_ptr(), bytes[payload.clone()].as_ptr()));
            payloads.push(payload);
        }
        Ok(Span { bytes, payloads })
    }

    /// Index of the first readable entry (== `next_log_index` when the log holds none).
    pub fn first_log_index(&self) -> u64 {
        self.inner.borrow().state.first_log_index()
    }

    /// Index the next entry must have; `None` for a log that never held an entry.
    pub fn next_log_index(&self) -> Option<u64> {
        self.inner.borrow().state.next_log_index
    }

    /// The last entry's id, or the purge point if no entry is left.
    pub fn last_log_id(&self) -> Option<LogId> {
        let i = self.inner.borrow();
        i.state.entries.back().map(|e| LogId { log_index: e.log_index, term: e.term }).or(i.state.purged)
    }

    pub fn purged(&self) -> Option<LogId> {
        self.inner.borrow().state.purged
    }

    pub fn vote(&self) -> Option<Vec<u8>> {
        self.inner.borrow().state.vote.clone()
    }

    /// The latest commit mark ([`Wal::mark_committed`]), as appended (durable after a recovery).
    pub fn committed(&self) -> Option<LogId> {
        self.inner.borrow().state.committed
    }

    pub fn entry_term(&self, log_index: u64) -> Option<u64> {
        self.inner.borrow().state.entry(log_index).map(|e| e.term)
    }

    /// The payload length of a live entry, from memory (no I/O): a caller that keeps its own
    /// index over the log (the datanode's block logs) rebuilds it from terms and lengths alone.
    pub fn entry_len(&self, log_index: u64) -> Option<u32> {
        self.inner.borrow().state.entry(log_index).map(|e| e.payload_len)
    }

    pub fn stats(&self) -> WalStats {
        self.inner.borrow().stats
    }

    /// Segment files currently part of the log.
    pub fn segment_count(&self) -> usize {
        self.inner.borrow().segments.len()
    }

    pub fn poisoned(&self) -> Option<String> {
        self.inner.borrow().poisoned.clone()
    }

    fn push(&self, kind: RecordKind, log_index: u64, term: u64, payload: &[u8]) -> Result<Ticket, AppendError> {
        let mut i = self.inner.borrow_mut();
        if let Some(p) = &i.poisoned {
            return Err(AppendError::Poisoned(p.clone()));
        }
        if payload.len() > self.config.payload_bytes_max as usize {
            return Err(AppendError::TooLarge { len: payload.len(), max: self.config.payload_bytes_max });
        }
        let record_bytes = encoded_len(payload.len()) as u64;
        let check_op = |seq: u64, offset: u64| match kind {
            RecordKind::Entry => Op::Entry(EntryLoc {
                log_index,
                term,
                segment_seq: seq,
                offset,
                payload_len: payload.len() as u32,
            }),
            RecordKind::TruncateSuffix => Op::TruncateSuffix(log_index),
            RecordKind::Purge => Op::Purge(LogId { log_index, term }),
            RecordKind::Vote => Op::Vote(payload),
            RecordKind::Commit => Op::Commit(LogId { log_index, term }),
            RecordKind::SegmentHeader => unreachable!("segment headers are written by start_segment"),
        };
        i.state.check(&check_op(0, 0), false)?;
        let tail_end = self.tail_end(&i);
        if tail_end + record_bytes > i.tail_segment_bytes {
            let next_seq = i.tail_seq + 1;
            self.start_segment(&mut i, next_seq, tail_end);
        }
        let tail_seq = i.tail_seq;
        let tail_write_offset = i.tail_write_offset;
        let segment_bytes = i.tail_segment_bytes;
        if i.pending.last().is_none_or(|w| w.segment_seq != tail_seq) {
            let bytes = i.batch_buffer();
            i.pending.push(PendingWrite {
                segment_seq: tail_seq,
                segment_bytes,
                offset: tail_write_offset,
                bytes,
                create: false,
            });
        }
        let w = i.pending.last_mut().expect("pending write for the tail");
        let offset = w.offset + w.bytes.len() as u64;
        let batch_offset = u32::try_from(w.offset).expect("segments are smaller than 4 GiB");
        record::encode_into(&mut w.bytes, kind, log_index, term, batch_offset, payload);
        i.state.apply(check_op(tail_seq, offset));
        i.appended_lsn += 1;
        if kind == RecordKind::Purge {
            i.purge_lsn = Some(i.appended_lsn);
        }
        i.stats.records_appended += 1;
        Ok(Ticket(i.appended_lsn))
    }

    /// Sector-aligned end of everything written or pending in the tail segment.
    fn tail_end(&self, i: &Inner<S::File>) -> u64 {
        match i.pending.last() {
            Some(w) if w.segment_seq == i.tail_seq => {
                (w.offset + w.bytes.len() as u64).next_multiple_of(self.sector_bytes)
            }
            _ => i.tail_write_offset,
        }
    }

    /// Begins segment `seq` with a header restating the log's sticky state, so that deleting
    /// older segments never loses the vote or the purge point.
    fn start_segment(&self, i: &mut Inner<S::File>, seq: u64, prev_segment_end: u64) {
        let header = SegmentHeader {
            segment_seq: seq,
            sector_bytes: self.sector_bytes as u32,
            segment_bytes: self.config.segment_bytes,
            prev_segment_end,
            next_log_index: i.state.next_log_index,
            purged: i.state.purged,
            vote: i.state.vote.clone(),
            committed: i.state.committed,
        };
        let mut bytes = i.batch_buffer();
        let next = i.state.next_or_zero();
        record::encode_into(&mut bytes, RecordKind::SegmentHeader, next, 0, 0, &header.encode());
        i.pending.push(PendingWrite {
            segment_seq: seq,
            segment_bytes: self.config.segment_bytes,
            offset: 0,
            bytes,
            create: true,
        });
        i.tail_seq = seq;
        i.tail_segment_bytes = self.config.segment_bytes;
        i.tail_write_offset = 0;
        i.appended_lsn += 1;
    }

    /// Writes and syncs everything pending as one batch. Called by the one waiter that found no
    /// flush running.
    async fn flush_batch(&self) -> Result<(), FlushError> {
        let (writes, target_lsn) = {
            let mut i = self.inner.borrow_mut();
            debug_assert!(!i.flushing);
            i.flushing = true;
            let mut writes = Vec::new();
            for mut w in std::mem::take(&mut i.pending) {
                let padded = (w.bytes.len() as u64).next_multiple_of(self.sector_bytes);
                w.bytes.resize(padded as usize, 0);
                if w.segment_seq == i.tail_seq {
                    i.tail_write_offset = w.offset + padded;
                }
                writes.push(Rc::new(w));
            }
            i.inflight = writes.clone();
            (writes, i.appended_lsn)
        };
        let started = std::time::Instant::now();
        let result = self.write_batch(&writes).await;
        // The borrow ends before any await below (notify, then maybe the purge cleanup).
        let cleanup = {
            let mut i = self.inner.borrow_mut();
            i.flushing = false;
            i.inflight.clear();
            // Nothing else holds a written batch now: its buffer serves a later one.
            for w in writes {
                if let Ok(w) = Rc::try_unwrap(w) {
                    i.keep_buffer(w.bytes);
                }
            }
            match &result {
                Ok(()) => {
                    assert!(target_lsn >= i.durable_lsn, "durable point moved backwards");
                    let records = target_lsn - i.durable_lsn;
                    i.stats.flush_micros.record(started.elapsed().as_micros() as u64);
                    i.stats.flush_records.record(records);
                    i.durable_lsn = target_lsn;
                    i.stats.flushes += 1;
                    // Only a flush that made the latest purge durable cleans up (a purge
                    // appended while an earlier batch was being written waits for its own).
                    match i.purge_lsn {
                        Some(p) if p <= target_lsn => {
                            i.purge_lsn = None;
                            true
                        }
                        _ => false,
                    }
                }
                Err(e) => {
                    i.poisoned.get_or_insert(e.clone());
                    false
                }
            }
        };
        self.durable_changed.notify_all();
        result.map_err(FlushError::Poisoned)?;
        if cleanup {
            self.remove_purged_segments().await?;
        }
        Ok(())
    }

    async fn write_batch(&self, writes: &[Rc<PendingWrite>]) -> Result<(), String> {
        for w in writes {
            let name = segment_name(w.segment_seq);
            let ctx = |op: &str, e: std::io::Error| format!("{op} {}: {e}", self.storage.describe(&name));
            let file = if w.create {
                let spare = {
                    let mut i = self.inner.borrow_mut();
                    // `Creating` while the rename runs, so that no new spare is made under the
                    // name being renamed away.
                    match std::mem::replace(&mut i.spare, Spare::Creating) {
                        Spare::Ready(f) if w.segment_bytes == self.config.segment_bytes => Some(f),
                        other => {
                            i.spare = other;
                            None
                        }
                    }
                };
                let f = match spare {
                    // The spare's zeros are durable (`create` synced them); the rename's
                    // directory entry is made durable below, before anything is written into
                    // the segment, exactly as for a created one.
                    Some(spare) => {
                        drop(spare);
                        self.storage.rename(SPARE_NAME, &name).await.map_err(|e| ctx("renaming the spare segment to", e))?;
                        self.storage.sync_dir().await.map_err(|e| ctx("syncing the directory for", e))?;
                        let f = self.storage.open(&name).await.map_err(|e| ctx("opening", e))?;
                        let mut i = self.inner.borrow_mut();
                        i.stats.spares_used += 1;
                        i.spare = Spare::None;
                        f
                    }
                    None => {
                        let f = self.storage.create(&name, w.segment_bytes).await.map_err(|e| ctx("creating", e))?;
                        self.storage.sync_dir().await.map_err(|e| ctx("syncing the directory for", e))?;
                        f
                    }
                };
                let f = Rc::new(f);
                let mut i = self.inner.borrow_mut();
                i.segments.insert(w.segment_seq, f.clone());
                i.stats.segments_created += 1;
                f
            } else {
                let f = self.inner.borrow().segments.get(&w.segment_seq).cloned();
                f.ok_or_else(|| format!("segment {name} is not open"))?
            };
            file.write_at(w.offset, &w.bytes).await.map_err(|e| ctx("writing", e))?;
            // The durable point of this batch's part in this segment. A batch that spans two
            // segments syncs the first before creating the second, which is what lets recovery
            // treat any bad byte before the tail segment as corruption.
            file.sync_data().await.map_err(|e| ctx("fdatasync of", e))?;
            let mut i = self.inner.borrow_mut();
            i.stats.fdatasyncs += 1;
            i.stats.bytes_written += w.bytes.len() as u64;
        }
        Ok(())
    }

    /// Deletes the segments before the one holding the first live entry (never the tail, never
    /// one a pending write targets). The purge marker that justifies it is already durable.
    async fn remove_purged_segments(&self) -> Result<(), FlushError> {
        let doomed: Vec<u64> = {
            let mut i = self.inner.borrow_mut();
            let mut keep_from = i.state.entries.front().map_or(i.tail_seq, |e| e.segment_seq).min(i.tail_seq);
            if let Some(min_pending) = i.pending.iter().map(|w| w.segment_seq).min() {
                keep_from = keep_from.min(min_pending);
            }
            let doomed: Vec<u64> = i.segments.range(..keep_from).map(|(s, _)| *s).collect();
            for s in &doomed {
                i.segments.remove(s);
            }
            doomed
        };
        if doomed.is_empty() {
            return Ok(());
        }
        // Oldest first, the directory synced after each removal: a crash may undo an un-synced
        // removal, and undoing one of several would leave a hole in the segment chain that
        // recovery rightly calls corruption. One sync per removal keeps the survivors a suffix
        // (found by the crash proptest; removals are once per segment, so the cost is small).
        let mut result = Ok(());
        for s in &doomed {
            let name = segment_name(*s);
            if let Err(e) = self.storage.remove(&name).await {
                result = Err(format!("removing {}: {e}", self.storage.describe(&name)));
                break;
            }
            if let Err(e) = self.storage.sync_dir().await {
                result = Err(format!("syncing the directory: {e}"));
                break;
            }
        }
        let mut i = self.inner.borrow_mut();
        match result {
            Ok(()) => {
                i.stats.segments_removed += doomed.len() as u64;
                Ok(())
            }
            Err(e) => {
                i.poisoned.get_or_insert(e.clone());
                drop(i);
                self.durable_changed.notify_all();
                Err(FlushError::Poisoned(e))
            }
        }
    }
}

fn validate(config: &WalConfig, sector_bytes: u64) -> Result<(), OpenError> {
    let err = |m: String| Err(OpenError::Config(m));
    if !sector_bytes.is_power_of_two() || sector_bytes < crate::constants::SECTOR_BYTES_MIN {
        return err(format!("storage sector size {sector_bytes} is not a power of two >= 512"));
    }
    if config.segment_bytes % sector_bytes != 0 || config.segment_bytes > u64::from(u32::MAX) {
        return err(format!(
            "segment size {} must be a multiple of the sector size {sector_bytes} and below 4 GiB",
            config.segment_bytes
        ));
    }
    // The largest header plus the largest record, each padded to a sector, must fit a segment.
    let header = encoded_len(76 + VOTE_BYTES_MAX) as u64;
    let record = encoded_len(config.payload_bytes_max as usize) as u64;
    let need = header.next_multiple_of(sector_bytes) + record.next_multiple_of(sector_bytes);
    if config.segment_bytes < need {
        return err(format!(
            "segment size {} is too small for records of {} bytes (needs at least {need})",
            config.segment_bytes, config.payload_bytes_max
        ));
    }
    Ok(())
}
