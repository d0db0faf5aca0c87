//! Snapshots: the whole shard as a stream of checksummed frames, written a step at a time while
//! applies go on, and read back frame by frame.
//!
//! File format (little-endian): a 32-byte header, magic `STRATOSS` | format version u32 (8) |
//! 20 zero bytes; then frames, each `kind u32 | count u32 | len u32 | crc32 u32 | payload`, the
//! crc covering the frame's first 12 bytes and its payload, the payload `len` bytes, a multiple
//! of 8. Kinds, in the order they must appear:
//! - 1, the small state: an rkyv image (`count` bytes of the payload) of the group id and its
//!   object sequence, the counters, usage, retry sessions (each without its outcomes), bucket
//!   facts, cross-shard renames, quota allowances and grants, and S3 secrets;
//! - 8, the retry sessions' remembered outcomes, none or more frames: an rkyv image (`count`
//!   bytes) of rows `(client, request id, log index, time, outcome)`, (client, request id)
//!   strictly ascending across the frames, each client one of the small state's sessions;
//! - 2 volumes, 3 buckets, 4 keys (the payload starts with the bucket id, u64; one bucket's
//!   frames together, buckets ascending), 5 open keys, 6 deleted blocks: `count` entries, each
//!   the entry's own words (`[key_len u32 | record_len u32]`, the key padded to 8 bytes, the
//!   record padded to 8 bytes; see [`crate::memtable`]), keys strictly ascending within a table,
//!   across its frames too;
//! - 7, the end: `count` 0, the number of frames before it and of entries (u64 each). A file
//!   without it is incomplete and refused.
//!
//! Why frames of entries' own words: the writer copies each entry once, the reader validates each
//! record in place (8-aligned in the frame buffer) and copies it once into its own allocation,
//! and neither ever holds more than one frame (≤ [`FRAME_ENTRIES`] entries) beside the state. The
//! previous format, one rkyv image of the whole shard, had to be built whole in memory (a second
//! copy of the state) and on the executor (≈ 1.3 s per million keys per shard, every request of
//! the core waiting).
//!
//! Writing while applying: [`ShardState::begin_snapshot`] freezes the tables (see
//! [`crate::table`]) and the retry sessions ([`SessionFreeze`]) and writes the small state; each
//! [`ShardState::snapshot_step`] then writes up to a budget of entries (outcomes, then table
//! entries) of the frozen image, so the caller can write them out and yield to other work
//! between steps. The result is the state at the moment of `begin_snapshot`, however
//! many commands apply in between. This crate only makes and reads bytes; the server writes
//! them durably (temp file, fdatasync, rename, fsync of the directory).
//!
//! Loading checks each frame's crc and bounds, validates every record as its type while
//! rebuilding the tables (entries arrive sorted, so each set is built bottom-up), and finally
//! checks every invariant of the state. Errors name the byte offset of the bad frame.

use std::collections::BTreeMap;
use std::io::Read;

use rkyv::rancor;
use rkyv::util::AlignedVec;
use rkyv::{Archive, Deserialize, Serialize};

use crate::command::{Allowance, BucketRef, Grant};
use crate::memtable::Entry;
use crate::records::*;
use crate::outcome::Outcome;
use crate::state::{BucketUsage, Remembered, RenameArrival, RenameIntent, Session, ShardState, VolumeUsage};
use crate::table::Table;

const MAGIC: [u8; 8] = *b"STRATOSS";
/// 5: the small state holds the group and its object sequence (object ids were the log index,
/// repeated across groups; version 4 is refused, its ids would clash with new ones).
/// 6: a remembered outcome holds its log index and time (the retry window is a time), and a
/// session the highest request id it forgot.
/// 7: quota allowances (key shards) and grants (the meta group) in the small state.
/// 8: S3 secrets (the meta group) in the small state.
/// 10: the sessions' outcomes in frames of their own (kind 8), written in steps. In version 9
/// they were inside the small state, which a snapshot made in one go when it began: with a full
/// retry window (262,144 outcomes, a 32 MB image) that was 0.19-0.36 s on the executor, every
/// request of the core waiting (the longest call of `bench/scale.sh`). The small state's layout
/// is unchanged (its sessions now come without outcomes), so version 9 is still read.
/// 11: a multipart upload's part keeps its checksum (`PartRecord::checksum`); the small state
/// of versions 9 and 10 is read with parts of none.
pub const VERSION: u32 = 11;
/// The oldest format this build reads.
const VERSION_READ_MIN: u32 = 9;
const HEADER_BYTES: usize = 32;
const FRAME_HEADER_BYTES: usize = 16;
/// Entries per frame at most (and the default step budget): ≈ 2-3 MiB of 40-byte-named keys.
pub const FRAME_ENTRIES: usize = 16_384;
/// A frame longer than this is refused (bounds what a damaged length can make the reader
/// allocate): far above [`FRAME_ENTRIES`] entries of the largest records.
pub const FRAME_BYTES_MAX: usize = 256 << 20;

const SMALL: u32 = 1;
const VOLUMES: u32 = 2;
const BUCKETS: u32 = 3;
const KEYS: u32 = 4;
const OPEN_KEYS: u32 = 5;
const DELETED_BLOCKS: u32 = 6;
const END: u32 = 7;
const SESSIONS: u32 = 8;

/// Everything but the tables. `P`, the part record: versions 9 and 10 had parts without
/// checksums ([`PartRecordV10`]).
#[derive(Archive, Serialize, Deserialize)]
struct Small<P = PartRecord> {
    group: u32,
    object_seq: u64,
    applied_log_index: u64,
    next_deleted_seq: u64,
    user_volumes: Vec<Vec<u8>>,
    volume_usage: Vec<(u64, VolumeUsage)>,
    bucket_usage: Vec<(u64, BucketUsage)>,
    sessions: Vec<(u64, Session)>,
    bucket_refs: Vec<(u64, BucketRef, bool)>,
    renames_out: Vec<(u64, RenameIntent)>,
    renames_in: Vec<(u32, u64, RenameArrival)>,
    allowances: Vec<(u64, Allowance)>,
    grants: Vec<(u64, u32, Grant)>,
    s3_secrets: Vec<(String, String)>,
    uploads: Vec<(u64, String, String, UploadRecord)>,
    parts: Vec<(u64, String, String, u32, P)>,
}

/// A part as versions 9 and 10 kept it (no checksum).
#[derive(Archive, Serialize, Deserialize)]
struct PartRecordV10 {
    etag: String,
    size: u64,
    modified_ms: u64,
    blocks: Vec<BlockLocation>,
}

impl From<PartRecordV10> for PartRecord {
    fn from(p: PartRecordV10) -> PartRecord {
        PartRecord { etag: p.etag, size: p.size, modified_ms: p.modified_ms, blocks: p.blocks, checksum: String::new() }
    }
}

/// Why snapshot bytes could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("not a Stratos shard snapshot (bad magic)")]
    Magic,
    #[error("snapshot format version {0}, this build reads versions {VERSION_READ_MIN} to {VERSION} (a snapshot of another Stratos release: run that release, or start from an empty data directory)")]
    Version(u32),
    #[error("snapshot frame at offset {offset}: {why}")]
    Frame { offset: u64, why: String },
    #[error("snapshot ends at offset {0} without its end frame (an incomplete file)")]
    Incomplete(u64),
    #[error("snapshot image is malformed: {0}")]
    Malformed(String),
    #[error("reading the snapshot: {0}")]
    Io(#[from] std::io::Error),
    /// The state was replaced (a snapshot installed) while its own snapshot was being written.
    #[error("the shard state was replaced while its snapshot was being written")]
    Replaced,
}

/// A snapshot being written: where [`ShardState::snapshot_step`] goes on.
#[derive(Debug)]
pub struct SnapshotBuild {
    stage: Stage,
    /// The key tables (bucket ids) at the freeze; tables made later are not in the snapshot.
    key_tables: Vec<u64>,
    frames: u64,
    entries: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Sessions,
    Volumes,
    Buckets,
    Keys(usize),
    OpenKeys,
    DeletedBlocks,
    Done,
}

impl SnapshotBuild {
    /// Entries written so far.
    pub fn entries(&self) -> u64 {
        self.entries
    }
}

/// One remembered outcome in a sessions frame, serialized by reference (nothing is cloned).
#[derive(Archive, Serialize)]
struct OutcomeRow<'a> {
    client: u64,
    request: u64,
    log_index: u64,
    time_ms: u64,
    #[rkyv(with = rkyv::with::Inline)]
    outcome: &'a Outcome,
}

impl<'a> OutcomeRow<'a> {
    fn new(client: u64, request: u64, r: &'a Remembered) -> Self {
        OutcomeRow { client, request, log_index: r.log_index, time_ms: r.time_ms, outcome: &r.outcome }
    }
}

/// The retry sessions as they were when a snapshot began, for the steps that write their
/// outcomes while commands go on applying. Those commands remember outcomes (at log indexes
/// past the snapshot's: left out) and forget some (an outcome of the snapshot forgotten before
/// a step wrote it is kept here until one does). So the steps write exactly the outcomes of
/// the snapshot's moment, without copying the sessions when it begins. The sessions' own facts
/// (last seen, the highest forgotten request) went into the small state at the begin.
#[derive(Debug, Default)]
pub(crate) struct SessionFreeze {
    /// The applied log index when the snapshot began.
    at: u64,
    /// The last (client, request id) written; the steps go on after it.
    written: Option<(u64, u64)>,
    /// Outcomes of the snapshot forgotten before a step wrote them.
    kept: BTreeMap<(u64, u64), Remembered>,
}

impl SessionFreeze {
    /// An outcome is forgotten: kept if the snapshot holds it and has yet to write it.
    pub(crate) fn keep(&mut self, client: u64, request: u64, r: Remembered) {
        if r.log_index <= self.at && self.written.is_none_or(|w| (client, request) > w) {
            self.kept.insert((client, request), r);
        }
    }

    /// The snapshot's outcomes not yet written, in (client, request id) order: the sessions'
    /// own, but for those remembered after the snapshot began, merged with the kept ones (an
    /// outcome is in one or the other, never both: a forgotten outcome leaves the sessions,
    /// and a request id remembered again has a later log index).
    fn rows<'s>(&'s self, sessions: &'s BTreeMap<u64, Session>) -> impl Iterator<Item = OutcomeRow<'s>> + 's {
        use std::ops::Bound;
        let at = self.at;
        let written = self.written;
        let live = sessions
            .range(written.map_or(0, |(c, _)| c)..)
            .flat_map(move |(c, s)| {
                let from = match written {
                    Some((wc, wr)) if wc == *c => Bound::Excluded(wr),
                    _ => Bound::Unbounded,
                };
                s.outcomes.range((from, Bound::Unbounded)).map(move |(q, r)| (*c, *q, r))
            })
            .filter(move |(_, _, r)| r.log_index <= at);
        let (mut a, mut b) = (live.peekable(), self.kept.iter().map(|((c, q), r)| (*c, *q, r)).peekable());
        std::iter::from_fn(move || match (a.peek(), b.peek()) {
            (Some(x), Some(y)) if (x.0, x.1) < (y.0, y.1) => a.next(),
            (Some(_), None) => a.next(),
            _ => b.next(),
        })
        .map(|(c, q, r)| OutcomeRow::new(c, q, r))
    }
}

/// An rkyv serializer's output: the end of a snapshot buffer, positions counted from where the
/// frame's payload starts (rkyv aligns by position, and the payload is read back into an
/// aligned buffer), so an image is made in place instead of in a buffer of its own and copied.
struct Tail<'a> {
    out: &'a mut Vec<u8>,
    base: usize,
}

impl rkyv::ser::Positional for Tail<'_> {
    fn pos(&self) -> usize {
        self.out.len() - self.base
    }
}

impl<E> rkyv::ser::Writer<E> for Tail<'_> {
    fn write(&mut self, bytes: &[u8]) -> Result<(), E> {
        self.out.extend_from_slice(bytes);
        Ok(())
    }
}

/// Appends a frame whose payload is one rkyv image, which `write` serializes into the `Tail`
/// it is given. Its count is the image's length: rkyv finds the root at the end of the image,
/// so the padding after it must not be handed to rkyv.
fn image_frame(out: &mut Vec<u8>, kind: u32, write: impl FnOnce(Tail<'_>)) {
    let start = out.len();
    out.extend_from_slice(&kind.to_le_bytes());
    out.extend_from_slice(&[0u8; 12]);
    let base = out.len();
    write(Tail { out, base });
    let image = out.len() - base;
    out.resize(start + (out.len() - start).next_multiple_of(8), 0);
    seal(out, start, u32::try_from(image).expect("an image is far below 4 GiB"));
}

/// Appends a sessions frame of `rows` (none if there are none).
fn sessions_frame(out: &mut Vec<u8>, rows: &Vec<OutcomeRow<'_>>) {
    if !rows.is_empty() {
        image_frame(out, SESSIONS, |t| {
            rkyv::api::high::to_bytes_in::<_, rancor::Error>(rows, t).expect("serializing into memory cannot fail");
        });
    }
}

/// Appends one frame of entries to a buffer.
struct FrameWriter<'a> {
    out: &'a mut Vec<u8>,
    start: usize,
    count: u32,
}

impl<'a> FrameWriter<'a> {
    fn new(out: &'a mut Vec<u8>, kind: u32, bucket: Option<u64>) -> Self {
        let start = out.len();
        out.extend_from_slice(&kind.to_le_bytes());
        out.extend_from_slice(&[0u8; 12]);
        if let Some(b) = bucket {
            out.extend_from_slice(&b.to_le_bytes());
        }
        FrameWriter { out, start, count: 0 }
    }

    fn push(&mut self, e: &Entry) {
        self.out.extend_from_slice(e.raw_bytes());
        self.count += 1;
    }

    /// Seals the frame (count, length, crc); a frame of no entries is dropped unless `keep`.
    fn finish(self, keep: bool) -> u32 {
        if self.count == 0 && !keep {
            self.out.truncate(self.start);
            return 0;
        }
        seal(self.out, self.start, self.count);
        self.count
    }
}

/// Fills in a frame's count, length and crc once its payload follows its header.
fn seal(out: &mut [u8], start: usize, count: u32) {
    let len = (out.len() - start - FRAME_HEADER_BYTES) as u32;
    out[start + 4..start + 8].copy_from_slice(&count.to_le_bytes());
    out[start + 8..start + 12].copy_from_slice(&len.to_le_bytes());
    let mut h = crc32fast::Hasher::new();
    h.update(&out[start..start + 12]);
    h.update(&out[start + FRAME_HEADER_BYTES..]);
    let crc = h.finalize();
    out[start + 12..start + 16].copy_from_slice(&crc.to_le_bytes());
}

fn header(out: &mut Vec<u8>) {
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&[0u8; HEADER_BYTES - 12]);
}

impl ShardState {
    fn small_frame(&self, out: &mut Vec<u8>) {
        let small = Small {
            group: self.group,
            object_seq: self.object_seq,
            applied_log_index: self.applied_log_index,
            next_deleted_seq: self.next_deleted_seq,
            user_volumes: self.user_volumes.iter().cloned().collect(),
            volume_usage: self.volume_usage.iter().map(|(k, v)| (*k, *v)).collect(),
            bucket_usage: self.bucket_usage.iter().map(|(k, v)| (*k, *v)).collect(),
            // Without their outcomes: those go in frames of their own, a step at a time.
            sessions: self
                .sessions
                .iter()
                .map(|(k, s)| (*k, Session { last_seen_ms: s.last_seen_ms, forgotten_max: s.forgotten_max, outcomes: BTreeMap::new() }))
                .collect(),
            bucket_refs: self.bucket_refs.iter().map(|(k, (r, f))| (*k, *r, *f)).collect(),
            renames_out: self.renames_out.iter().map(|(k, i)| (*k, i.clone())).collect(),
            renames_in: self.renames_in.iter().map(|((s, t), a)| (*s, *t, a.clone())).collect(),
            allowances: self.allowances.iter().map(|(k, a)| (*k, *a)).collect(),
            grants: self.grants.iter().map(|((k, s), a)| (*k, *s, *a)).collect(),
            s3_secrets: self.s3_secrets.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            uploads: self.uploads.iter().map(|((b, k, u), r)| (*b, k.clone(), u.clone(), r.clone())).collect(),
            parts: self.parts.iter().map(|((b, k, u, n), r)| (*b, k.clone(), u.clone(), *n, r.clone())).collect(),
        };
        image_frame(out, SMALL, |t| {
            rkyv::api::high::to_bytes_in::<_, rancor::Error>(&small, t).expect("serializing into memory cannot fail");
        });
    }

    /// Appends a sessions frame of up to `budget` outcomes of the snapshot being written.
    /// Returns how many, and whether they were the last.
    fn sessions_step(&mut self, out: &mut Vec<u8>, budget: usize) -> Result<(usize, bool), SnapshotError> {
        // None: this build's begin was given up, and another snapshot has written its sessions.
        let f = self.session_freeze.as_mut().ok_or(SnapshotError::Replaced)?;
        let rows: Vec<OutcomeRow<'_>> = f.rows(&self.sessions).take(budget).collect();
        sessions_frame(out, &rows);
        let (n, last) = (rows.len(), rows.last().map(|r| (r.client, r.request)));
        drop(rows);
        if let Some(last) = last {
            f.written = Some(last);
            while f.kept.first_key_value().is_some_and(|(k, _)| *k <= last) {
                f.kept.pop_first();
            }
        }
        Ok((n, n < budget))
    }

    fn end_frame(out: &mut Vec<u8>, frames: u64, entries: u64) {
        let start = out.len();
        out.extend_from_slice(&END.to_le_bytes());
        out.extend_from_slice(&[0u8; 12]);
        out.extend_from_slice(&frames.to_le_bytes());
        out.extend_from_slice(&entries.to_le_bytes());
        seal(out, start, 0);
    }

    /// Begins a snapshot of the state as it is now: appends the file header and the small
    /// state to `out` and freezes the tables. None if a snapshot is being written already.
    pub fn begin_snapshot(&mut self, out: &mut Vec<u8>) -> Option<SnapshotBuild> {
        if self.snapshotting {
            return None;
        }
        self.snapshotting = true;
        self.for_each_table(Table::freeze);
        self.session_freeze = Some(SessionFreeze { at: self.applied_log_index, ..SessionFreeze::default() });
        header(out);
        self.small_frame(out);
        Some(SnapshotBuild { stage: Stage::Sessions, key_tables: self.keys.keys().copied().collect(), frames: 1, entries: 0 })
    }

    /// Appends up to about `budget` entries of the snapshot that `b` writes to `out`. True when
    /// the snapshot is complete (its end frame written, the tables thawed).
    pub fn snapshot_step(&mut self, b: &mut SnapshotBuild, out: &mut Vec<u8>, budget: usize) -> Result<bool, SnapshotError> {
        if !self.snapshotting {
            return Err(SnapshotError::Replaced);
        }
        let mut left = budget.max(1);
        while left > 0 {
            let (kind, bucket, table) = match b.stage {
                Stage::Sessions => {
                    let (n, done) = self.sessions_step(out, left.min(FRAME_ENTRIES))?;
                    b.frames += u64::from(n > 0);
                    b.entries += n as u64;
                    left = left.saturating_sub(n.max(1));
                    if done {
                        // Written: forgotten outcomes need not be kept any more.
                        self.session_freeze = None;
                        b.stage = Stage::Volumes;
                    }
                    continue;
                }
                Stage::Volumes => (VOLUMES, None, Some(&mut self.volumes)),
                Stage::Buckets => (BUCKETS, None, Some(&mut self.buckets)),
                Stage::Keys(i) => match b.key_tables.get(i) {
                    Some(id) => (KEYS, Some(*id), self.keys.get_mut(id)),
                    None => {
                        b.stage = Stage::OpenKeys;
                        continue;
                    }
                },
                Stage::OpenKeys => (OPEN_KEYS, None, Some(&mut self.open_keys)),
                Stage::DeletedBlocks => (DELETED_BLOCKS, None, Some(&mut self.deleted_blocks)),
                Stage::Done => {
                    ShardState::end_frame(out, b.frames, b.entries);
                    self.snapshotting = false;
                    // The key tables that emptied while the snapshot read them go now.
                    self.keys.retain(|_, t| !t.is_empty());
                    return Ok(true);
                }
            };
            let done = match table {
                Some(t) => {
                    let mut frame = FrameWriter::new(out, kind, bucket);
                    let done = t.read_frozen(left.min(FRAME_ENTRIES), |e| frame.push(e));
                    let n = frame.finish(false) as usize;
                    b.frames += u64::from(n > 0);
                    b.entries += n as u64;
                    // An empty table costs a little of the budget too, so a step stays bounded
                    // however many empty key tables there are.
                    left = left.saturating_sub(n.max(1));
                    done
                }
                None => true,
            };
            if done {
                b.stage = match b.stage {
                    Stage::Sessions | Stage::Volumes => Stage::Buckets,
                    Stage::Buckets => Stage::Keys(0),
                    Stage::Keys(i) => Stage::Keys(i + 1),
                    Stage::OpenKeys => Stage::DeletedBlocks,
                    Stage::DeletedBlocks | Stage::Done => Stage::Done,
                };
            }
        }
        Ok(false)
    }

    /// A snapshot is being written (begun and neither complete nor given up).
    pub fn is_snapshotting(&self) -> bool {
        self.snapshotting
    }

    /// Gives up the snapshot being written (the tables stop keeping frozen values).
    pub fn abort_snapshot(&mut self) {
        self.snapshotting = false;
        self.session_freeze = None;
        self.for_each_table(Table::thaw);
    }

    /// `f` on every table a snapshot reads (freeze and thaw them all alike).
    fn for_each_table(&mut self, mut f: impl FnMut(&mut Table)) {
        f(&mut self.volumes);
        f(&mut self.buckets);
        self.keys.values_mut().for_each(&mut f);
        f(&mut self.open_keys);
        f(&mut self.deleted_blocks);
    }

    /// The whole state as snapshot bytes, at once (tests, state hashes). The server writes
    /// snapshots a step at a time instead ([`ShardState::begin_snapshot`]).
    pub fn snapshot(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_snapshot(|chunk| out.extend_from_slice(chunk));
        out
    }

    /// The whole state as snapshot bytes, given to `sink` a piece at a time.
    fn write_snapshot(&self, mut sink: impl FnMut(&[u8])) {
        let mut out = Vec::new();
        header(&mut out);
        self.small_frame(&mut out);
        let (mut frames, mut entries) = (1u64, 0u64);
        let mut rows = self.sessions.iter().flat_map(|(c, s)| s.outcomes.iter().map(|(q, r)| OutcomeRow::new(*c, *q, r))).peekable();
        while rows.peek().is_some() {
            let frame: Vec<OutcomeRow<'_>> = rows.by_ref().take(FRAME_ENTRIES).collect();
            sessions_frame(&mut out, &frame);
            entries += frame.len() as u64;
            frames += 1;
            sink(&out);
            out.clear();
        }
        let mut tables: Vec<(u32, Option<u64>, &Table)> = vec![(VOLUMES, None, &self.volumes), (BUCKETS, None, &self.buckets)];
        tables.extend(self.keys.iter().map(|(id, t)| (KEYS, Some(*id), t)));
        tables.push((OPEN_KEYS, None, &self.open_keys));
        tables.push((DELETED_BLOCKS, None, &self.deleted_blocks));
        for (kind, bucket, table) in tables {
            let mut it = table.iter().peekable();
            while it.peek().is_some() {
                let mut frame = FrameWriter::new(&mut out, kind, bucket);
                for e in it.by_ref().take(FRAME_ENTRIES) {
                    frame.push(e);
                }
                entries += u64::from(frame.finish(false));
                frames += 1;
                sink(&out);
                out.clear();
            }
        }
        ShardState::end_frame(&mut out, frames, entries);
        sink(&out);
    }

    /// Rebuilds a shard from snapshot bytes (see [`ShardState::load_snapshot_from`]).
    pub fn load_snapshot(bytes: &[u8]) -> Result<ShardState, SnapshotError> {
        ShardState::load_snapshot_from(&mut &bytes[..])
    }

    /// Rebuilds a shard from a snapshot read from `r`, validating everything (bytes from disk
    /// are untrusted: a bad snapshot is an error naming the offset, never a panic or a wrong
    /// state). Holds one frame at a time beside the state it builds.
    pub fn load_snapshot_from(r: &mut impl Read) -> Result<ShardState, SnapshotError> {
        let mut head = [0u8; HEADER_BYTES];
        read_exact_or(r, &mut head, || SnapshotError::Magic)?;
        if head[..8] != MAGIC {
            return Err(SnapshotError::Magic);
        }
        let version = u32::from_le_bytes(head[8..12].try_into().expect("4 bytes"));
        if !(VERSION_READ_MIN..=VERSION).contains(&version) {
            return Err(SnapshotError::Version(version));
        }
        if head[12..].iter().any(|b| *b != 0) {
            return Err(SnapshotError::Malformed("reserved header bytes are not zero".into()));
        }
        let mut loader = Loader { version, ..Loader::default() };
        let mut offset = HEADER_BYTES as u64;
        let mut payload = AlignedVec::<16>::new();
        loop {
            let mut fh = [0u8; FRAME_HEADER_BYTES];
            read_exact_or(r, &mut fh, || SnapshotError::Incomplete(offset))?;
            let word = |i: usize| u32::from_le_bytes(fh[i * 4..i * 4 + 4].try_into().expect("4 bytes"));
            let (kind, count, len, crc) = (word(0), word(1), word(2) as usize, word(3));
            let bad = |why: String| SnapshotError::Frame { offset, why };
            if len > FRAME_BYTES_MAX || len % 8 != 0 {
                return Err(bad(format!("a payload of {len} bytes (a multiple of 8, at most {FRAME_BYTES_MAX})")));
            }
            payload.clear();
            payload.resize(len, 0);
            read_exact_or(r, &mut payload, || SnapshotError::Incomplete(offset))?;
            let mut h = crc32fast::Hasher::new();
            h.update(&fh[..12]);
            h.update(&payload);
            let computed = h.finalize();
            if computed != crc {
                return Err(bad(format!("crc32 mismatch: stored {crc:#010x}, computed {computed:#010x}")));
            }
            if kind == END {
                let stored: Vec<u64> = payload.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes"))).collect();
                if stored != [loader.frames, loader.entries] {
                    return Err(bad(format!("the end frame counts {stored:?} (frames, entries), the file holds [{}, {}]", loader.frames, loader.entries)));
                }
                let mut rest = [0u8; 1];
                if r.read(&mut rest)? != 0 {
                    return Err(bad("bytes follow the end frame".into()));
                }
                return loader.finish();
            }
            loader.frame(kind, count, &payload).map_err(bad)?;
            offset += (FRAME_HEADER_BYTES + len) as u64;
        }
    }

    /// A hash of the whole state (of its snapshot bytes), to compare replicas and replays.
    pub fn state_hash(&self) -> u64 {
        let mut a = crc32fast::Hasher::new();
        let mut b = crc32fast::Hasher::new_with_initial(0x5EED_0001);
        self.write_snapshot(|chunk| {
            a.update(chunk);
            b.update(chunk);
        });
        (u64::from(a.finalize()) << 32) | u64::from(b.finalize())
    }
}

fn read_exact_or(r: &mut impl Read, buf: &mut [u8], short: impl Fn() -> SnapshotError) -> Result<(), SnapshotError> {
    match r.read_exact(buf) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(short()),
        Err(e) => Err(e.into()),
    }
}

/// The state being rebuilt from frames.
#[derive(Default)]
struct Loader {
    /// The file's format version.
    version: u32,
    small: Option<ShardState>,
    /// The table being filled, its sorted entries so far.
    current: Option<(u32, u64, Vec<Entry>)>,
    volumes: Option<Table>,
    buckets: Option<Table>,
    keys: BTreeMap<u64, Table>,
    open_keys: Option<Table>,
    deleted_blocks: Option<Table>,
    /// The last outcome read (client, request id).
    last_outcome: Option<(u64, u64)>,
    frames: u64,
    entries: u64,
}

impl Loader {
    fn frame(&mut self, kind: u32, count: u32, payload: &[u8]) -> Result<(), String> {
        self.frames += 1;
        if kind == SMALL {
            if self.small.is_some() || self.current.is_some() {
                return Err("a second small-state frame, or one after the tables".into());
            }
            let image = payload.get(..count as usize).ok_or("a small-state image longer than its frame")?;
            self.small = Some(if self.version >= 11 { small_state::<PartRecord>(image)? } else { small_state::<PartRecordV10>(image)? });
            return Ok(());
        }
        let Some(state) = self.small.as_mut() else {
            return Err("a table frame before the small state".into());
        };
        if kind == SESSIONS {
            if self.current.is_some() {
                return Err("a sessions frame after the tables".into());
            }
            let image = payload.get(..count as usize).ok_or("a sessions image longer than its frame")?;
            self.entries += add_outcomes(state, image, &mut self.last_outcome)?;
            return Ok(());
        }
        if !(VOLUMES..=DELETED_BLOCKS).contains(&kind) {
            return Err(format!("unknown frame kind {kind}"));
        }
        let (bucket, body) = if kind == KEYS {
            if payload.len() < 8 {
                return Err("a key frame without its bucket id".into());
            }
            (u64::from_le_bytes(payload[..8].try_into().expect("8 bytes")), &payload[8..])
        } else {
            (0, payload)
        };
        if count == 0 {
            return Err("a table frame of no entries".into());
        }
        match &self.current {
            Some((k, b, _)) if (*k, *b) == (kind, bucket) => {}
            Some((k, b, _)) if (*k, *b) > (kind, bucket) => return Err(format!("table ({kind}, {bucket}) after ({k}, {b}): tables out of order")),
            _ => self.close_table(),
        }
        if self.current.is_none() {
            let hint = self.small.as_ref().map_or(0, |s| expected_entries(s, kind, bucket));
            self.current = Some((kind, bucket, Vec::with_capacity(hint)));
        }
        let (_, _, sorted) = self.current.as_mut().expect("a table being filled");
        let n = parse_entries(kind, body, count, sorted)?;
        self.entries += n;
        Ok(())
    }

    /// The table being filled is complete: into its place (built bottom-up from sorted entries).
    fn close_table(&mut self) {
        let Some((kind, bucket, sorted)) = self.current.take() else { return };
        let table: Table = sorted.into_iter().collect();
        match kind {
            VOLUMES => self.volumes = Some(table),
            BUCKETS => self.buckets = Some(table),
            KEYS => {
                self.keys.insert(bucket, table);
            }
            OPEN_KEYS => self.open_keys = Some(table),
            _ => self.deleted_blocks = Some(table),
        }
    }

    fn finish(mut self) -> Result<ShardState, SnapshotError> {
        self.close_table();
        let mut state = self.small.take().ok_or_else(|| SnapshotError::Malformed("no small-state frame".into()))?;
        state.volumes = self.volumes.unwrap_or_default();
        state.buckets = self.buckets.unwrap_or_default();
        state.keys = self.keys;
        state.open_keys = self.open_keys.unwrap_or_default();
        state.deleted_blocks = self.deleted_blocks.unwrap_or_default();
        state.retry_order = crate::retry_order::RetryOrder::rebuild(&state.sessions);
        state.open_key_expiry = state
            .open_keys
            .iter()
            .map(|e| {
                let o: &ArchivedOpenKeyRecord = e.view();
                (o.expires_ms.to_native(), o.object_id.to_native())
            })
            .collect();
        // Every derived fact must agree with the tables, or a later apply could act on counters
        // that lie (and underflow): a snapshot that is well-formed but inconsistent is refused.
        state.check_invariants().map_err(|e| SnapshotError::Malformed(format!("inconsistent state: {e}")))?;
        Ok(state)
    }
}

/// How many entries the table `(kind, bucket)` should hold, from the usage counters of the
/// small state (the invariants check them against the tables once loaded). The vector a table
/// is gathered in gets that capacity at once: grown by doubling, a 1.7M-key table was copied
/// into fresh memory about twenty times (perf of a 6M-key restart: 4% of the CPU, most of it the
/// kernel zeroing the new pages). Capped, so that a counter that lies reserves no more than
/// 1 GiB of address space (pages are touched only as entries arrive).
fn expected_entries(small: &ShardState, kind: u32, bucket: u64) -> usize {
    const HINT_MAX: u64 = 1 << 26;
    let n = match kind {
        KEYS => small.bucket_usage.get(&bucket).map_or(0, |u| u.keys),
        OPEN_KEYS => small.bucket_usage.values().fold(0u64, |n, u| n.saturating_add(u.open_keys)),
        _ => 0,
    };
    usize::try_from(n.min(HINT_MAX)).unwrap_or(0)
}

fn small_state<P>(payload: &[u8]) -> Result<ShardState, String>
where
    P: Archive + Into<PartRecord>,
    Small<P>: Archive,
    <Small<P> as Archive>::Archived: for<'a> rkyv::bytecheck::CheckBytes<rkyv::api::high::HighValidator<'a, rancor::BoxedError>>
        + rkyv::Deserialize<Small<P>, rkyv::api::high::HighDeserializer<rancor::BoxedError>>,
{
    let de = |what: &'static str| move |e: rancor::BoxedError| format!("{what}: {e}");
    let small = rkyv::from_bytes::<Small<P>, rancor::BoxedError>(payload).map_err(de("small state"))?;
    let renames_out: BTreeMap<u64, RenameIntent> = small.renames_out.into_iter().collect();
    if small.group >= crate::constants::GROUPS_MAX {
        return Err(format!("group {} is beyond the {} groups of a cluster", small.group, crate::constants::GROUPS_MAX));
    }
    Ok(ShardState {
        group: small.group,
        object_seq: small.object_seq,
        applied_log_index: small.applied_log_index,
        next_deleted_seq: small.next_deleted_seq,
        user_volumes: small.user_volumes.into_iter().collect(),
        volume_usage: small.volume_usage.into_iter().collect(),
        bucket_usage: small.bucket_usage.into_iter().collect(),
        sessions: small.sessions.into_iter().collect(),
        bucket_refs: small.bucket_refs.into_iter().map(|(k, r, f)| (k, (r, f))).collect(),
        moving: renames_out.values().map(|i| (i.bucket_id, i.from.clone())).collect(),
        renames_out,
        renames_in: small.renames_in.into_iter().map(|(s, t, a)| ((s, t), a)).collect(),
        allowances: small.allowances.into_iter().collect(),
        grants: small.grants.into_iter().map(|(k, s, a)| ((k, s), a)).collect(),
        s3_secrets: small.s3_secrets.into_iter().collect(),
        uploads: small.uploads.into_iter().map(|(b, k, u, r)| ((b, k, u), r)).collect(),
        parts: small.parts.into_iter().map(|(b, k, u, n, r)| ((b, k, u, n), r.into())).collect(),
        ..ShardState::default()
    })
}

/// Adds a sessions frame's outcomes to the sessions of the small state, checking their order
/// (after `last`, the last one read) and that each client has a session. Returns how many.
fn add_outcomes(state: &mut ShardState, image: &[u8], last: &mut Option<(u64, u64)>) -> Result<u64, String> {
    let rows = rkyv::access::<rkyv::vec::ArchivedVec<ArchivedOutcomeRow<'_>>, rancor::BoxedError>(image).map_err(|e| format!("remembered outcomes: {e}"))?;
    if rows.is_empty() {
        return Err("a sessions frame of no outcomes".into());
    }
    for row in rows.iter() {
        let (client, request) = (row.client.to_native(), row.request.to_native());
        if last.is_some_and(|l| l >= (client, request)) {
            return Err(format!("client {client}'s request {request}: outcomes out of order"));
        }
        *last = Some((client, request));
        let s = state.sessions.get_mut(&client).ok_or_else(|| format!("an outcome of client {client}, which has no session"))?;
        let outcome = rkyv::deserialize::<Outcome, rancor::BoxedError>(&row.outcome).map_err(|e| format!("client {client}'s request {request}: {e}"))?;
        let r = Remembered { log_index: row.log_index.to_native(), time_ms: row.time_ms.to_native(), outcome: Box::new(outcome) };
        if s.outcomes.insert(request, r).is_some() {
            return Err(format!("client {client}'s request {request} is remembered twice"));
        }
    }
    Ok(rows.len() as u64)
}

/// Appends the `count` entries of a frame body to `sorted`, validating each key and record and
/// the order (after what `sorted` holds already). Returns how many were read.
fn parse_entries(kind: u32, body: &[u8], count: u32, sorted: &mut Vec<Entry>) -> Result<u64, String> {
    let name_ok = |k: &[u8]| std::str::from_utf8(k).is_ok() && !k.contains(&0);
    let bucket_ok = |k: &[u8]| std::str::from_utf8(k).is_ok() && k.iter().filter(|&&b| b == 0).count() == 1;
    let id_ok = |k: &[u8]| k.len() == 8;
    let mut at = 0usize;
    for _ in 0..count {
        let word = body.get(at..at + 8).ok_or("an entry past the end of its frame")?;
        let w = u64::from_le_bytes(word.try_into().expect("8 bytes"));
        let (key_len, record_len) = ((w & 0xFFFF_FFFF) as usize, (w >> 32) as usize);
        let key_at = at + 8;
        let record_at = key_at + key_len.next_multiple_of(8);
        let end = record_at + record_len.next_multiple_of(8);
        if end > body.len() {
            return Err(format!("an entry of {key_len} + {record_len} bytes past the end of its frame"));
        }
        let (key, record) = (&body[key_at..key_at + key_len], &body[record_at..record_at + record_len]);
        let (what, key_ok, entry) = match kind {
            VOLUMES => ("volume", name_ok(key), Entry::validated::<ArchivedVolumeRecord>(key, record)),
            BUCKETS => ("bucket", bucket_ok(key), Entry::validated::<ArchivedBucketRecord>(key, record)),
            KEYS => ("key", name_ok(key), Entry::validated::<ArchivedKeyRecord>(key, record)),
            OPEN_KEYS => ("open key", id_ok(key), Entry::validated::<ArchivedOpenKeyRecord>(key, record)),
            _ => ("deleted blocks", id_ok(key), Entry::validated::<ArchivedDeletedBlocksRecord>(key, record)),
        };
        if !key_ok || sorted.last().is_some_and(|l| l.key() >= key) {
            return Err(format!("{what}: bad or unsorted key"));
        }
        sorted.push(entry.map_err(|e| format!("{what} record: {e}"))?);
        at = end;
    }
    if at != body.len() {
        return Err(format!("{} bytes after the frame's {count} entries", body.len() - at));
    }
    Ok(u64::from(count))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{Command, CommandContext, Op, Principal};

    /// The frames of a snapshot: (kind, count, the frame's bytes).
    fn frames(bytes: &[u8]) -> Vec<(u32, u32, &[u8])> {
        let word = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
        let mut at = HEADER_BYTES;
        let mut out = Vec::new();
        while at < bytes.len() {
            let len = FRAME_HEADER_BYTES + word(at + 8) as usize;
            out.push((word(at), word(at + 4), &bytes[at..at + len]));
            at += len;
        }
        out
    }

    /// Version 9 held every outcome inside the small state; a data directory written by it must
    /// still load (the small state's layout did not change, only what its sessions hold).
    #[test]
    fn a_version_9_snapshot_with_its_outcomes_in_the_small_state_loads() {
        let mut s = ShardState::new();
        for (i, client) in [3u64, 3, 5, 9, 9, 9].into_iter().enumerate() {
            let ctx = CommandContext { client_id: client, request_id: i as u64 + 1, time_ms: 1_000 + i as u64, principal: Principal::admin("root"), bucket: None };
            let op = Op::DeleteKey { volume: "vol".into(), bucket: "bkt".into(), key: "none".into() };
            let _ = s.apply(i as u64 + 1, &Command { ctx, op });
        }
        let v10 = s.snapshot();
        assert!(frames(&v10).iter().any(|f| f.0 == SESSIONS), "version 10 writes the outcomes in frames of their own");
        let mut v9 = Vec::new();
        v9.extend_from_slice(&MAGIC);
        v9.extend_from_slice(&9u32.to_le_bytes());
        v9.extend_from_slice(&[0u8; HEADER_BYTES - 12]);
        let (mut n, mut entries) = (0u64, 0u64);
        for (kind, count, frame) in frames(&v10) {
            match kind {
                SMALL => {
                    let mut image = AlignedVec::<16>::new();
                    image.extend_from_slice(&frame[FRAME_HEADER_BYTES..FRAME_HEADER_BYTES + count as usize]);
                    let mut small = rkyv::from_bytes::<Small, rancor::Error>(&image).expect("the small state");
                    assert!(small.sessions.iter().all(|(_, s)| s.outcomes.is_empty()));
                    small.sessions = s.sessions.iter().map(|(c, s)| (*c, s.clone())).collect();
                    image_frame(&mut v9, SMALL, |t| {
                        rkyv::api::high::to_bytes_in::<_, rancor::Error>(&small, t).expect("in memory");
                    });
                    n += 1;
                }
                SESSIONS => {}
                END => ShardState::end_frame(&mut v9, n, entries),
                _ => {
                    v9.extend_from_slice(frame);
                    n += 1;
                    entries += u64::from(count);
                }
            }
        }
        let back = ShardState::load_snapshot(&v9).expect("a version 9 snapshot loads");
        assert_eq!(back.sessions.values().map(|s| s.outcomes.len()).sum::<usize>(), 6);
        assert_eq!(back.state_hash(), s.state_hash());
        // Older versions are refused, by their number.
        v9[8..12].copy_from_slice(&8u32.to_le_bytes());
        assert!(matches!(ShardState::load_snapshot(&v9), Err(SnapshotError::Version(8))));
    }

    /// A sessions frame after the tables, or naming a client without a session, is refused.
    #[test]
    fn outcomes_out_of_place_are_refused() {
        let mut s = ShardState::new();
        let ctx = CommandContext { client_id: 4, request_id: 1, time_ms: 1_000, principal: Principal::admin("root"), bucket: None };
        let op = Op::CreateVolume { volume: "vol".into(), owner: "u".into(), admin: "root".into(), quota_bytes: QUOTA_UNLIMITED, quota_namespace: QUOTA_UNLIMITED, acls: vec![], metadata: vec![] };
        let _ = s.apply(1, &Command { ctx, op });
        let bytes = s.snapshot();
        let f = frames(&bytes);
        let kinds: Vec<u32> = f.iter().map(|f| f.0).collect();
        assert_eq!(kinds, [SMALL, SESSIONS, VOLUMES, END]);
        // The sessions frame moved after the volumes.
        let mut moved = bytes[..HEADER_BYTES].to_vec();
        for i in [0, 2, 1, 3] {
            moved.extend_from_slice(f[i].2);
        }
        let e = ShardState::load_snapshot(&moved).expect_err("refused").to_string();
        assert!(e.contains("a sessions frame after the tables"), "{e}");
        // The small state without the session the outcome names.
        let mut image = AlignedVec::<16>::new();
        image.extend_from_slice(&f[0].2[FRAME_HEADER_BYTES..FRAME_HEADER_BYTES + f[0].1 as usize]);
        let mut small = rkyv::from_bytes::<Small, rancor::Error>(&image).expect("the small state");
        small.sessions.clear();
        let mut orphan = bytes[..HEADER_BYTES].to_vec();
        image_frame(&mut orphan, SMALL, |t| {
            rkyv::api::high::to_bytes_in::<_, rancor::Error>(&small, t).expect("in memory");
        });
        for frame in &f[1..] {
            orphan.extend_from_slice(frame.2);
        }
        let e = ShardState::load_snapshot(&orphan).expect_err("refused").to_string();
        assert!(e.contains("an outcome of client 4, which has no session"), "{e}");
    }
}
