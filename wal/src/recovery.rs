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
}

/// Sees every entry record recovery replays: (log index, term, payload). Records a later
/// truncation or purge removes are seen too; the caller checks what survived against
/// [`crate::Wal::entry_term`] after the open.
pub type Visit<'a> = &'a mut dyn FnMut(u64, u64, &[u8]);

/// Replays the records of one segment's `data[start..limit]` into `state`, showing each entry
/// to `visit`. Pure: the fuzz target drives it with arbitrary bytes.
#[allow(clippy::too_many_arguments)]
pub(crate) fn scan(
    data: &[u8],
    start: usize,
    limit: usize,
    sector: usize,
    payload_bytes_max: u32,
    segment_seq: u64,
    state: &mut LogState,
    visit: Visit<'_>,
) -> Stop {
    let limit = limit.min(data.len());
    let mut pos = start;
    loop {
        if pos >= limit {
            return Stop::End(pos);
        }
        match record::decode(&data[pos..limit], payload_bytes_max) {
            Err(DecodeError::Zero) => {
                if pos % sector == 0 {
                    return Stop::End(pos);
                }
                let next = pos.next_multiple_of(sector).min(limit);
                if data[pos..next].iter().any(|&b| b != 0) {
                    return Stop::Bad(pos, "non-zero bytes in batch padding".into());
                }
                pos = next;
            }
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
    let mut p = from + RECORD_ALIGN_BYTES;
    while p + HEADER_BYTES <= data.len() {
        if !record::is_padding(&data[p..]) {
            if let Ok(r) = record::decode(&data[p..], payload_bytes_max) {
                if r.batch_offset as usize > from {
                    return Some(p);
                }
            }
        }
        p += RECORD_ALIGN_BYTES;
    }
    None
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

/// Reads a whole segment into `buf`, which recovery reuses from one segment to the next: read
/// into fresh memory, every 64 MiB segment had the kernel zero its pages first (perf of a
/// 6M-key restart: `clear_page_erms` under the copy into the read buffer, 8% of the CPU).
async fn read_all<F: SegmentFile>(file: &F, size: u64, path: String, buf: &mut Vec<u8>) -> Result<(), OpenError> {
    buf.clear();
    file.read_into(0, size as usize, buf).await.map_err(io_err("reading", path))
}

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
    let mut buf = Vec::new();
    // Trailing segments with no valid header: created, never written whole. Unless a later
    // batch in them proves the header was durable, they go.
    while let Some(last) = loaded.last() {
        let Err(reason) = &last.header else { break };
        let name = segment_name(last.seq);
        read_all(&*last.file, last.size, storage.describe(&name), &mut buf).await?;
        if let Some(at) = later_batch_record(&buf, 0, payload_bytes_max) {
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
        read_all(&*seg.file, seg.size, path.clone(), &mut buf).await?;
        let data = &buf;
        let limit = if is_tail {
            data.len()
        } else {
            let next = loaded[i + 1].header.as_ref().map_err(|r| {
                corrupt(storage.describe(&segment_name(seg.seq + 1)), 0, r.clone())
            })?;
            usize::try_from(next.0.prev_segment_end).unwrap_or(usize::MAX)
        };
        let stop = scan(data, header_len, limit, sector, payload_bytes_max, seg.seq, &mut state, &mut *visit);
        if !is_tail {
            match stop {
                Stop::End(p) if p == limit => {}
                Stop::End(p) => return Err(corrupt(path, p as u64, "log ends before the next segment says it does")),
                Stop::Bad(p, reason) => return Err(corrupt(path, p as u64, reason)),
            }
        } else {
            let (pos, reason) = match stop {
                Stop::End(p) => (p, None),
                Stop::Bad(p, r) => (p, Some(r)),
            };
            if let Some(at) = later_batch_record(data, pos, payload_bytes_max) {
                return Err(corrupt(
                    path,
                    pos as u64,
                    format!(
                        "{} but a later batch at offset {at} is valid",
                        reason.as_deref().unwrap_or("log ends early")
                    ),
                ));
            }
            let clean = reason.is_none() && data[pos..].iter().all(|&b| b == 0);
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
