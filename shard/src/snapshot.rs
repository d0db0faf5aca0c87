//! Snapshots: the whole shard as a stream of checksummed frames, written a step at a time while
//! applies go on, and read back frame by frame.
//!
//! File format (little-endian): a 32-byte header, magic `STRATOSS` | format version u32 (8) |
//! 20 zero bytes; then frames, each `kind u32 | count u32 | len u32 | crc32 u32 | payload`, the
//! crc covering the frame's first 12 bytes and its payload, the payload `len` bytes, a multiple
//! of 8. Kinds, in the order they must appear:
//! - 1, the small state: an rkyv image (`count` bytes of the payload) of the group id and its
//!   object sequence, the counters, usage, retry sessions, bucket facts, cross-shard renames
//!   quota allowances and grants, and S3 secrets;
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
//! [`crate::table`]) and writes the small state; each [`ShardState::snapshot_step`] then writes
//! up to a budget of entries of the frozen image, so the caller can write them out and yield to
//! other work between steps. The result is the state at the moment of `begin_snapshot`, however
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
use crate::state::{BucketUsage, RenameArrival, RenameIntent, Session, ShardState, VolumeUsage};
use crate::table::Table;

const MAGIC: [u8; 8] = *b"STRATOSS";
/// 5: the small state holds the group and its object sequence (object ids were the log index,
/// repeated across groups; version 4 is refused, its ids would clash with new ones).
/// 6: a remembered outcome holds its log index and time (the retry window is a time), and a
/// session the highest request id it forgot.
/// 7: quota allowances (key shards) and grants (the meta group) in the small state.
/// 8: S3 secrets (the meta group) in the small state.
pub const VERSION: u32 = 9;
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

/// Everything but the tables.
#[derive(Archive, Serialize, Deserialize)]
struct Small {
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
    parts: Vec<(u64, String, String, u32, PartRecord)>,
}

/// Why snapshot bytes could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("not a Stratos shard snapshot (bad magic)")]
    Magic,
    #[error("snapshot format version {0}, this build reads only version {VERSION} (a snapshot of another Stratos release: run that release, or start from an empty data directory)")]
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
            sessions: self.sessions.iter().map(|(k, v)| (*k, v.clone())).collect(),
            bucket_refs: self.bucket_refs.iter().map(|(k, (r, f))| (*k, *r, *f)).collect(),
            renames_out: self.renames_out.iter().map(|(k, i)| (*k, i.clone())).collect(),
            renames_in: self.renames_in.iter().map(|((s, t), a)| (*s, *t, a.clone())).collect(),
            allowances: self.allowances.iter().map(|(k, a)| (*k, *a)).collect(),
            grants: self.grants.iter().map(|((k, s), a)| (*k, *s, *a)).collect(),
            s3_secrets: self.s3_secrets.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            uploads: self.uploads.iter().map(|((b, k, u), r)| (*b, k.clone(), u.clone(), r.clone())).collect(),
            parts: self.parts.iter().map(|((b, k, u, n), r)| (*b, k.clone(), u.clone(), *n, r.clone())).collect(),
        };
        let bytes = rkyv::to_bytes::<rancor::Error>(&small).expect("serializing into memory cannot fail");
        let start = out.len();
        out.extend_from_slice(&SMALL.to_le_bytes());
        out.extend_from_slice(&[0u8; 12]);
        out.extend_from_slice(&bytes);
        out.resize(start + (out.len() - start).next_multiple_of(8), 0);
        // Its count is the image's length: rkyv finds the root at the end of the image, so the
        // padding after it must not be handed to rkyv.
        seal(out, start, u32::try_from(bytes.len()).expect("the small state is far below 4 GiB"));
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
        header(out);
        self.small_frame(out);
        Some(SnapshotBuild { stage: Stage::Volumes, key_tables: self.keys.keys().copied().collect(), frames: 1, entries: 0 })
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
                    Stage::Volumes => Stage::Buckets,
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
        if version != VERSION {
            return Err(SnapshotError::Version(version));
        }
        if head[12..].iter().any(|b| *b != 0) {
            return Err(SnapshotError::Malformed("reserved header bytes are not zero".into()));
        }
        let mut loader = Loader::default();
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
    small: Option<ShardState>,
    /// The table being filled, its sorted entries so far.
    current: Option<(u32, u64, Vec<Entry>)>,
    volumes: Option<Table>,
    buckets: Option<Table>,
    keys: BTreeMap<u64, Table>,
    open_keys: Option<Table>,
    deleted_blocks: Option<Table>,
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
            self.small = Some(small_state(image)?);
            return Ok(());
        }
        if self.small.is_none() {
            return Err("a table frame before the small state".into());
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

fn small_state(payload: &[u8]) -> Result<ShardState, String> {
    let de = |what: &'static str| move |e: rancor::BoxedError| format!("{what}: {e}");
    let small = rkyv::from_bytes::<Small, rancor::BoxedError>(payload).map_err(de("small state"))?;
    let renames_out: BTreeMap<u64, RenameIntent> = small.renames_out.into_iter().collect();
    if small.group >= crate::constants::GROUPS_MAX {
        return Err(format!("group {} is beyond the {} groups of a cluster", small.group, crate::constants::GROUPS_MAX));
    }
    let mut state = ShardState {
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
        parts: small.parts.into_iter().map(|(b, k, u, n, r)| ((b, k, u, n), r)).collect(),
        ..ShardState::default()
    };
    state.retry_order = crate::retry_order::RetryOrder::rebuild(&state.sessions);
    Ok(state)
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
