//! Opening a log: read every segment, replay its records, and decide what a bad spot means.
//!
//! The rules (the crate docs give the reasoning):
//! - Segments must be numbered without gaps. Every segment but the tail must be valid from its
//!   header to the end the *next* segment's header records (`prev_segment_end`); any bad byte
//!   there is corruption, because a segment is only started after everything before it was synced.
//! - The tail is scanned to its first bad spot. If some valid record after that spot belongs to
//!   a *later* batch (its `batch_offset` lies beyond the spot), the spot was synced before that
//!   batch was written: corruption, reported with file and offset. Otherwise the spot lies in
//!   the last batch, whose write may have been torn by the crash: the tail is cut there and the
//!   log continues in a new segment (sealing), so the torn bytes are never read as log again.
//! - Trailing segments without a valid header were created but never written whole: removed.

use std::collections::BTreeMap;
use std::rc::Rc;

use crate::constants::{HEADER_BYTES, RECORD_ALIGN_BYTES, SEGMENT_SUFFIX};
use crate::error::OpenError;
use crate::header::SegmentHeader;
use crate::record::{self, DecodeError, RecordKind};
use crate::state::{LogState, op_of};
use crate::storage::{SegmentFile, Storage};

/// What recovery found, for logs and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    pub segments: usize,
    pub entries: usize,
    /// Where the tail was cut, if it was torn.
    pub torn_tail: Option<TornTail>,
    /// Trailing segments removed because their header never became durable.
    pub removed_segments: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    pub file: String,
    pub offset: u64,
    pub reason: String,
}

pub(crate) struct TailInfo {
    pub segment_seq: u64,
    pub segment_bytes: u64,
    /// Where the next batch may start (sector aligned), if the tail can take more writes.
    pub write_offset: u64,
    /// Set when the tail was torn: the log must continue in a new segment whose header records
    /// this as the old tail's valid length.
    pub seal_at: Option<u64>,
}

pub(crate) struct Recovered<F> {
    pub state: LogState,
    pub segments: BTreeMap<u64, Rc<F>>,
    pub tail: Option<TailInfo>,
    pub report: RecoveryReport,
}

pub(crate) fn segment_name(seq: u64) -> String {
    format!("{seq:020}{SEGMENT_SUFFIX}")
}

pub(crate) fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// How a scan of one segment stopped.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Stop {
    /// Reached `limit`, or an all-zero header on a sector boundary (end of written data).
    End(usize),
    /// Bytes at this offset are not a valid next record.
    Bad(usize, String),
    /// The record (or padding) at this offset runs past the bytes given, and the segment goes
    /// on beyond them: scan again from here with the bytes that follow.
    More(usize),
}

/// Sees every entry record recovery replays: (log index, term, payload). Records a later
/// truncation or purge removes are seen too; the caller checks what survived against
/// [`crate::Wal::entry_term`] after the open.
pub type Visit<'a> = &'a mut dyn FnMut(u64, u64, &[u8]);

/// Replays the records of one segment's bytes `start..limit` into `state`, showing each entry
/// to `visit`. `data` holds the segment's bytes from offset `base` on (all of them up to `limit`,
/// or a window of them: then a record crossing the window's end stops the scan with
/// [`Stop::More`]). Offsets in and out are the segment's. Pure: the fuzz target drives it with
/// arbitrary bytes.
#[allow(clippy::too_many_arguments)]
pub(crate) fn scan(
    data: &[u8],
    base: usize,
    start: usize,
    limit: usize,
    sector: usize,
    payload_bytes_max: u32,
    segment_seq: u64,
    state: &mut LogState,
    visit: Visit<'_>,
) -> Stop {
    let end = limit.min(base + data.len());
    let partial = end < limit;
    let mut pos = start;
    loop {
        if pos >= end {
            return if partial { Stop::More(pos) } else { Stop::End(pos) };
        }
        if partial && end - pos < HEADER_BYTES {
            return Stop::More(pos);
        }
        match record::decode(&data[pos - base..end - base], payload_bytes_max) {
            Err(DecodeError::Zero) => {
                if pos % sector == 0 {
                    return Stop::End(pos);
                }
                let next = pos.next_multiple_of(sector).min(limit);
                if next > end {
                    return Stop::More(pos);
                }
                if data[pos - base..next - base].iter().any(|&b| b != 0) {
                    return Stop::Bad(pos, "non-zero bytes in batch padding".into());
                }
                pos = next;
            }
            Err(DecodeError::ShortHeader | DecodeError::Truncated { .. }) if partial => return Stop::More(pos),
            Err(e) => return Stop::Bad(pos, e.to_string()),
            Ok(r) => {
                let batch = r.batch_offset as usize;
                if batch > pos || batch % sector != 0 {
                    return Stop::Bad(pos, format!("batch offset {batch} is impossible here"));
                }
                let Some(op) = op_of(r.kind, r.log_index, r.term, r.payload, segment_seq, pos as u64)
                else {
                    return Stop::Bad(pos, "segment header inside a segment".into());
                };
                if let Err(e) = state.check(&op, true) {
                    return Stop::Bad(pos, format!("record does not follow the log: {e}"));
                }
                state.apply(op);
                if r.kind == RecordKind::Entry {
                    visit(r.log_index, r.term, r.payload);
                }
                pos += r.encoded_len();
            }
        }
    }
}

/// The first valid record after `from` that was written by a later batch than the one holding
/// `from`: proof that the bytes at `from` had been made durable.
pub(crate) fn later_batch_record(data: &[u8], from: usize, payload_bytes_max: u32) -> Option<usize> {
    later_batch_record_in(data, 0, from, from + RECORD_ALIGN_BYTES, data.len(), payload_bytes_max)
}

/// [`later_batch_record`] over the candidate offsets `lo, lo + 8, …` below `hi`, in `data`
/// holding the segment's bytes from offset `base` on.
fn later_batch_record_in(data: &[u8], base: usize, from: usize, lo: usize, hi: usize, payload_bytes_max: u32) -> Option<usize> {
    let mut p = lo;
    while p < hi && p + HEADER_BYTES <= base + data.len() {
        let at = &data[p - base..];
        if !record::is_padding(at) {
            if let Ok(r) = record::decode(at, payload_bytes_max) {
                if r.batch_offset as usize > from {
                    return Some(p);
                }
            }
        }
        p += RECORD_ALIGN_BYTES;
    }
    None
}

/// Bytes of a segment recovery holds at once (one buffer, reused across segments). Read whole,
/// every 64 MiB segment was fresh memory (or, reused, 64 MiB per group) that the kernel zeroed
/// before the read landed: `clear_page_erms` under the copy into the read buffer was 8-11% of
/// a 6M-key restart's CPU.
const WINDOW_BYTES: usize = 8 << 20;

/// A window on one segment's bytes: `buf` holds those from offset `base` on.
struct Window {
    buf: Vec<u8>,
    base: usize,
    /// Bytes a window reads ahead: enough for two of the largest records, so that a record
    /// crossing one window's end lies whole in the next, and a tail check makes progress.
    span: usize,
}

impl Window {
    fn new(payload_bytes_max: u32, window_bytes: usize) -> Window {
        let span = window_bytes.max(2 * record::encoded_len(payload_bytes_max as usize)).next_multiple_of(RECORD_ALIGN_BYTES);
        Window { buf: Vec::new(), base: 0, span }
    }

    fn end(&self) -> usize {
        self.base + self.buf.len()
    }

    /// Forgets the bytes held (they were another segment's).
    fn forget(&mut self) {
        self.buf.clear();
        self.base = 0;
    }

    /// Holds the file's bytes from `from` to `from + span` (or to `limit`), keeping those it
    /// holds already (of the same file: [`Window::forget`] between files).
    async fn hold<F: SegmentFile>(&mut self, file: &F, from: usize, limit: usize, path: &str) -> Result<(), OpenError> {
        if (self.base..=self.end()).contains(&from) {
            self.buf.drain(..from - self.base);
        } else {
            self.buf.clear();
        }
        self.base = from;
        let want = (from + self.span).min(limit);
        if self.end() < want {
            let at = self.end();
            file.read_into(at as u64, want - at, &mut self.buf).await.map_err(io_err("reading", path.to_string()))?;
        }
        Ok(())
    }

    /// Scans `start..limit` of a segment ([`scan`]) a window at a time, from a fresh window.
    #[allow(clippy::too_many_arguments)]
    async fn scan<F: SegmentFile>(
        &mut self,
        file: &F,
        path: &str,
        start: usize,
        limit: usize,
        sector: usize,
        payload_bytes_max: u32,
        segment_seq: u64,
        state: &mut LogState,
        visit: Visit<'_>,
    ) -> Result<Stop, OpenError> {
        self.forget();
        let mut from = start;
        loop {
            self.hold(file, from, limit, path).await?;
            match scan(&self.buf, self.base, from, limit, sector, payload_bytes_max, segment_seq, state, &mut *visit) {
                Stop::More(p) if p > from => from = p,
                // Nothing fit: a padding run longer than the window (a sector larger than it).
                // A record cannot be (the window holds two of the largest), but either way the
                // window widens until it reaches the limit, where `More` cannot happen.
                Stop::More(_) => self.span = self.span.saturating_mul(2),
                stop => return Ok(stop),
            }
        }
    }

    /// After a scan stopped at `pos` in the tail segment of `size` bytes: the first record of a
    /// later batch beyond it ([`later_batch_record`]), and whether every byte from `pos` to the
    /// end is zero (a clean end of the log). Keeps the window a scan of the same file left.
    async fn examine_tail<F: SegmentFile>(&mut self, file: &F, path: &str, pos: usize, size: usize, payload_bytes_max: u32) -> Result<(Option<usize>, bool), OpenError> {
        let largest = record::encoded_len(payload_bytes_max as usize);
        let mut zero = true;
        let mut at = pos;
        while at < size {
            self.hold(file, at, size, path).await?;
            // Candidates whose whole record lies in this window (all of them in the last one).
            let hi = if self.end() >= size { size } else { self.end() - largest };
            if let Some(found) = later_batch_record_in(&self.buf, self.base, pos, at.max(pos + RECORD_ALIGN_BYTES), hi, payload_bytes_max) {
                return Ok((Some(found), false));
            }
            zero = zero && self.buf[at - self.base..hi - self.base].iter().all(|&b| b == 0);
            at = hi;
        }
        Ok((None, zero))
    }
}

fn io_err(op: &'static str, file: String) -> impl FnOnce(std::io::Error) -> OpenError {
    move |source| OpenError::Io { op, file, source }
}

fn corrupt(file: String, offset: u64, reason: impl Into<String>) -> OpenError {
    OpenError::Corrupt { file, offset, reason: reason.into() }
}

/// A segment as recovery first sees it: its header only. Its records are read one segment at a
/// time (so opening a log holds one segment in memory, not the whole log).
struct Loaded<F> {
    seq: u64,
    file: Rc<F>,
    size: u64,
    header: Result<(SegmentHeader, usize), String>,
}

/// Bytes read from the start of a segment to decode its header record (header, fixed fields
/// and the largest vote fit).
const SEGMENT_HEADER_READ_BYTES: u64 = 8192;
const _: () = assert!(SEGMENT_HEADER_READ_BYTES as usize >= HEADER_BYTES + 128 + crate::constants::VOTE_BYTES_MAX);

pub(crate) async fn recover<S: Storage>(
    storage: &S,
    payload_bytes_max: u32,
    visit: Visit<'_>,
) -> Result<Recovered<S::File>, OpenError> {
    let dir = storage.describe("");
    let mut seqs: Vec<u64> = storage
        .list()
        .await
        .map_err(io_err("listing", dir))?
        .iter()
        .filter_map(|n| parse_segment_name(n))
        .collect();
    seqs.sort_unstable();
    for w in seqs.windows(2) {
        if w[1] != w[0] + 1 {
            return Err(corrupt(
                storage.describe(&segment_name(w[0] + 1)),
                0,
                format!("segment missing between {} and {}", segment_name(w[0]), segment_name(w[1])),
            ));
        }
    }

    let mut loaded = Vec::with_capacity(seqs.len());
    for &seq in &seqs {
        let name = segment_name(seq);
        let path = storage.describe(&name);
        let file = storage.open(&name).await.map_err(io_err("opening", path.clone()))?;
        let size = file.size().await.map_err(io_err("sizing", path.clone()))?;
        let data = file.read_at(0, size.min(SEGMENT_HEADER_READ_BYTES) as usize).await.map_err(io_err("reading", path))?;
        let header = match record::decode(&data, payload_bytes_max) {
            Ok(r) if r.kind == RecordKind::SegmentHeader && r.batch_offset == 0 => {
                SegmentHeader::decode(r.payload).and_then(|h| {
                    if h.segment_seq != seq {
                        Err(format!("header names segment {} in file of segment {seq}", h.segment_seq))
                    } else if h.segment_bytes != size {
                        Err(format!("header says {} bytes, the file has {size}", h.segment_bytes))
                    } else {
                        Ok((h, r.encoded_len()))
                    }
                })
            }
            Ok(r) => Err(format!("first record is {:?}, not a segment header", r.kind)),
            Err(e) => Err(e.to_string()),
        };
        loaded.push(Loaded { seq, file: Rc::new(file), size, header });
    }

    let mut report = RecoveryReport::default();
    let mut window = Window::new(payload_bytes_max, WINDOW_BYTES);
    // Trailing segments with no valid header: created, never written whole. Unless a later
    // batch in them proves the header was durable, they go.
    while let Some(last) = loaded.last() {
        let Err(reason) = &last.header else { break };
        let name = segment_name(last.seq);
        window.forget();
        let (later, _) = window.examine_tail(&*last.file, &storage.describe(&name), 0, last.size as usize, payload_bytes_max).await?;
        if let Some(at) = later {
            return Err(corrupt(
                storage.describe(&name),
                0,
                format!("bad segment header ({reason}) but a later batch at offset {at} is valid"),
            ));
        }
        storage.remove(&name).await.map_err(io_err("removing", storage.describe(&name)))?;
        report.removed_segments.push(storage.describe(&name));
        loaded.pop();
    }
    if !report.removed_segments.is_empty() {
        storage.sync_dir().await.map_err(io_err("syncing", storage.describe("")))?;
    }

    let mut state = LogState::default();
    let mut segments = BTreeMap::new();
    let mut tail = None;
    let count = loaded.len();
    for i in 0..count {
        let seg = &loaded[i];
        let path = storage.describe(&segment_name(seg.seq));
        let (header, header_len) = seg
            .header
            .clone()
            .map_err(|reason| corrupt(path.clone(), 0, format!("bad segment header: {reason}")))?;
        if i == 0 {
            state.next_log_index = header.next_log_index;
            state.purged = header.purged;
            state.vote = header.vote.clone();
            state.committed = header.committed;
        } else if (state.next_log_index, state.purged, &state.vote, state.committed)
            != (header.next_log_index, header.purged, &header.vote, header.committed)
        {
            return Err(corrupt(path, 0, "segment header disagrees with the log before it"));
        }
        let sector = header.sector_bytes as usize;
        let is_tail = i + 1 == count;
        let size = seg.size as usize;
        let limit = if is_tail {
            size
        } else {
            let next = loaded[i + 1].header.as_ref().map_err(|r| {
                corrupt(storage.describe(&segment_name(seg.seq + 1)), 0, r.clone())
            })?;
            usize::try_from(next.0.prev_segment_end).unwrap_or(usize::MAX)
        };
        let stop = window.scan(&*seg.file, &path, header_len, limit.min(size), sector, payload_bytes_max, seg.seq, &mut state, &mut *visit).await?;
        if !is_tail {
            match stop {
                Stop::End(p) if p == limit => {}
                Stop::End(p) | Stop::More(p) => return Err(corrupt(path, p as u64, "log ends before the next segment says it does")),
                Stop::Bad(p, reason) => return Err(corrupt(path, p as u64, reason)),
            }
        } else {
            let (pos, reason) = match stop {
                Stop::End(p) | Stop::More(p) => (p, None),
                Stop::Bad(p, r) => (p, Some(r)),
            };
            let (later, zero) = window.examine_tail(&*seg.file, &path, pos, size, payload_bytes_max).await?;
            if let Some(at) = later {
                return Err(corrupt(
                    path,
                    pos as u64,
                    format!(
                        "{} but a later batch at offset {at} is valid",
                        reason.as_deref().unwrap_or("log ends early")
                    ),
                ));
            }
            let clean = reason.is_none() && zero;
            if !clean {
                report.torn_tail = Some(TornTail {
                    file: path,
                    offset: pos as u64,
                    reason: reason.unwrap_or_else(|| "torn bytes after the end of the log".into()),
                });
            }
            tail = Some(TailInfo {
                segment_seq: seg.seq,
                segment_bytes: header.segment_bytes,
                write_offset: (pos as u64).next_multiple_of(sector as u64),
                seal_at: (!clean).then_some(pos as u64),
            });
        }
        segments.insert(seg.seq, seg.file.clone());
    }
    report.segments = segments.len();
    report.entries = state.entries.len();
    Ok(Recovered { state, segments, tail, report })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A segment file in memory.
    struct Bytes(Vec<u8>);

    impl SegmentFile for Bytes {
        async fn size(&self) -> std::io::Result<u64> {
            Ok(self.0.len() as u64)
        }
        async fn read_at(&self, pos: u64, len: usize) -> std::io::Result<Vec<u8>> {
            Ok(self.0[pos as usize..pos as usize + len].to_vec())
        }
        async fn write_at(&self, _: u64, _: &[u8]) -> std::io::Result<()> {
            unreachable!("recovery only reads")
        }
        async fn sync_data(&self) -> std::io::Result<()> {
            Ok(())
        }
    }

    const SECTOR: usize = 512;
    const PAYLOAD_MAX: u32 = 300;

    /// Batches of entry records as the writer lays them out (each padded to a sector), then
    /// zeros, then one flipped byte somewhere (or none).
    fn segment(batches: &[Vec<u16>], zeros: usize, flip: Option<(usize, u8)>) -> Vec<u8> {
        let mut data = Vec::new();
        let mut index = 1;
        for batch in batches {
            let batch_offset = data.len() as u32;
            for &len in batch {
                let payload: Vec<u8> = (0..len).map(|i| (i as u64 * 7 + index) as u8).collect();
                record::encode_into(&mut data, RecordKind::Entry, index, 1, batch_offset, &payload[..usize::from(len).min(PAYLOAD_MAX as usize)]);
                index += 1;
            }
            data.resize(data.len().next_multiple_of(SECTOR), 0);
        }
        data.resize(data.len() + zeros, 0);
        if let Some((at, bits)) = flip.filter(|_| !data.is_empty()) {
            let at = at % data.len();
            data[at] ^= bits.max(1);
        }
        data
    }

    proptest! {
        /// Scanning a segment a small window at a time (two of the largest records: every
        /// window boundary a record or a padding run can cross gets crossed) finds exactly what
        /// scanning it whole finds, and so does the tail check after it.
        #[test]
        fn a_windowed_scan_finds_what_a_whole_scan_finds(
            batches in proptest::collection::vec(proptest::collection::vec(0u16..320, 1..6), 0..12),
            zeros in 0usize..3000,
            flip in proptest::option::of((any::<usize>(), any::<u8>())),
        ) {
            let data = segment(&batches, zeros, flip);
            // Also read as if the sector were larger than the window (a padding run wider than
            // it makes the window widen): whole and windowed must still agree.
            for sector in [SECTOR, 4 * SECTOR] {
                let mut whole_state = LogState::default();
                let mut whole_seen = Vec::new();
                let whole = scan(&data, 0, 0, data.len(), sector, PAYLOAD_MAX, 1, &mut whole_state, &mut |i, t, p| whole_seen.push((i, t, p.to_vec())));
                let pos = match &whole { Stop::End(p) | Stop::Bad(p, _) | Stop::More(p) => *p };
                let whole_later = later_batch_record(&data, pos, PAYLOAD_MAX);
                let whole_zero = data[pos..].iter().all(|&b| b == 0);

                let file = Bytes(data.clone());
                let mut window = Window::new(PAYLOAD_MAX, 0);
                prop_assert_eq!(window.span, 2 * record::encoded_len(PAYLOAD_MAX as usize));
                let mut state = LogState::default();
                let mut seen = Vec::new();
                let windowed = futures_lite::future::block_on(window.scan(&file, "seg", 0, data.len(), sector, PAYLOAD_MAX, 1, &mut state, &mut |i, t, p| seen.push((i, t, p.to_vec())))).expect("scan");
                prop_assert_eq!(&windowed, &whole);
                prop_assert_eq!(&state, &whole_state);
                prop_assert_eq!(&seen, &whole_seen);
                let (later, zero) = futures_lite::future::block_on(window.examine_tail(&file, "seg", pos, data.len(), PAYLOAD_MAX)).expect("tail");
                prop_assert_eq!(later, whole_later);
                if later.is_none() {
                    prop_assert_eq!(zero, whole_zero);
                }
            }
        }
    }
}
