//! stratos-wal: a segmented, crc32-framed, group-committed write-ahead log.
//!
//! It is the Raft log storage of every shard (and the persistence of the SCM). It knows nothing
//! of Raft, RPC or executors beyond running inside one: it must never be shared across threads,
//! never acknowledge a record before its fdatasync returned, and never rewrite a byte that was
//! once made durable.
//!
//! # On-disk format (version 1)
//!
//! A log is a directory of **segment files** named `{seq:020}.wal`, `seq` = 1, 2, 3, … with no
//! gaps. Each file has a fixed size (default 64 MiB), is created zero-filled and synced, and its
//! name is made durable by an fsync of the directory before anything is written into it.
//!
//! A segment is a sequence of **batches**. A batch is what one flush writes: it starts on a
//! *sector* boundary (512 B, or the device's O_DIRECT alignment if larger), holds whole records,
//! and is padded with zeros to the next sector boundary. The next batch starts there. So a byte
//! that has been made durable is never written again, and a torn write can only damage the batch
//! being written, never an acknowledged one.
//!
//! A **record** (all integers little-endian) is 8-byte aligned within its batch:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | crc32 (IEEE, `crc32fast`) of bytes 4 .. 32 + payload length |
//! | 4 | 1 | kind: 1 entry, 2 segment header, 3 truncate suffix, 4 purge, 5 vote, 6 commit |
//! | 5 | 3 | reserved, zero |
//! | 8 | 4 | payload length (≤ the configured maximum, default 4 MiB) |
//! | 12 | 4 | batch offset: offset in this segment of the batch this record belongs to |
//! | 16 | 8 | log index |
//! | 24 | 8 | term |
//! | 32 | n | payload |
//! | 32+n | 0–7 | zero padding to a multiple of 8 |
//!
//! Since kind 0 does not exist, a record's first 8 bytes are never all zero, and 8 zero bytes at
//! an 8-aligned position are not a record: inside a batch they start the padding to the sector
//! boundary, on a sector boundary they mark the end of the written data. (The kind sits in the
//! first 8 bytes because padding may end just 8 bytes before the next batch.)
//!
//! Record kinds:
//! - **entry**: a log entry. Entries are contiguous: each has the index after the last one.
//! - **truncate suffix**: entries with index ≥ `log index` are gone; the next entry has that index.
//! - **purge**: entries with index ≤ `log index` are gone (after a snapshot); `term` is the purged
//!   entry's term. It may run past the last entry (snapshot install).
//! - **vote**: an opaque blob (≤ 4 KiB); the latest one counts.
//! - **commit**: the owner's commit point (`log index`, `term`); the latest one counts, and a
//!   truncation below it forgets it. Written without a flush of its own (it rides on the next
//!   one), so a crash may lose the latest marks; the owner must only use it as a lower bound.
//! - **segment header**: the first record of every segment, at offset 0, batch offset 0. Its
//!   payload: magic `STRATOSW` (8), format version u32, sector size u32, segment seq u64, segment
//!   size u64, previous segment's valid length u64 (`u64::MAX` for the first segment), flags u8
//!   (bit 0 next index present, bit 1 purge point present, bit 2 vote present, bit 3 commit mark
//!   present), 7 zero bytes, next log index u64, purged index u64, purged term u64, vote length
//!   u32, vote bytes, then (bit 3) commit index u64 and term u64. The header restates the log's
//!   sticky state, so older segments can be deleted without losing it. (Bit 3 and kind 6 came
//!   after the first release of format 1: a log that holds them is refused by older builds,
//!   which treat them as reserved; logs written before them read as before.)
//!
//! Truncation and purging are records, not rewrites: the log's content is what replaying the
//! records in order yields ([`state`] holds that replay, shared by writer and recovery). After a
//! purge is durable, segments that hold only purged entries are deleted (then the directory is
//! fsynced).
//!
//! **Spare segment.** The owner may keep one spare ready ([`Wal::prepare_spare`]): a file named
//! `spare.wal`, created zero-filled and synced like a segment. A rollover then renames it to the
//! new segment's name and fsyncs the directory before writing into it, which leaves the disk in
//! exactly the states a created segment can leave. Recovery ignores the name; `open` removes a
//! leftover spare (it may be partly zero-filled).
//!
//! # Durability and recovery
//! A flush writes each touched segment's part of the batch and fdatasyncs it before creating or
//! writing the next segment; a batch's tickets resolve only after all of that returned `Ok`. The
//! next batch is written only after the previous one's fdatasync. Therefore, after a crash:
//! - every segment before the tail is entirely durable, up to the valid length the next segment's
//!   header records: a bad byte there is **corruption**;
//! - in the tail, only the last batch can be torn (partly written, sectors reordered). Every
//!   record carries its batch's offset, so recovery can tell a bad spot in the last batch (torn:
//!   the log is cut there, and continues in a new *sealing* segment whose header records where
//!   the old one's valid data ends) from a bad spot followed by a valid record of a later batch
//!   (it had been durable: **corruption**, and the log refuses to open, naming file and offset).
//!
//! Writing a sector is assumed not to damage *other* sectors; nothing assumes a sector write is
//! atomic, because no durable sector is ever written again.
//!
//! An I/O error while flushing poisons the log (see [`Wal`]); an fsync is never retried.

pub mod constants;
mod dma;
pub mod error;
mod header;
pub mod histogram;
pub mod record;
pub mod recovery;
mod sim;
mod state;
pub mod storage;
mod wal;

pub use dma::{DmaSegment, DmaStorage};
pub use histogram::Log2Histogram;
pub use error::{AppendError, FlushError, OpenError, ReadError};
pub use recovery::{RecoveryReport, TornTail, Visit};
pub use sim::{SimDisk, SimFile, SimRng};
pub use state::LogId;
pub use storage::{SegmentFile, Storage};
pub use wal::{Ticket, Wal, WalConfig, WalStats};

/// Replays one segment image the way recovery does and reports how the scan stopped. For the
/// fuzz target: it must return for any input, never panic, never allocate in proportion to a
/// length field.
pub fn fuzz_scan_segment(data: &[u8], payload_bytes_max: u32) -> (bool, usize) {
    let mut state = state::LogState::default();
    let stop = recovery::scan(data, 0, 0, data.len(), 512, payload_bytes_max, 1, &mut state, &mut |_, _, _| {});
    let later = match stop {
        recovery::Stop::End(p) | recovery::Stop::Bad(p, _) | recovery::Stop::More(p) => recovery::later_batch_record(data, p, payload_bytes_max),
    };
    (later.is_some(), state.entries.len())
}
