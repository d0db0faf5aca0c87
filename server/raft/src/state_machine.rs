//! openraft's state machine: a [`ShardState`] plus the Raft facts it must remember (last applied
//! log id and membership), and its snapshots on disk.
//!
//! Snapshot file (`<group dir>/snapshot`), little-endian:
//! ```text
//! magic "STRATOSR" | version u32 | meta length u32 | meta | crc32(meta) u32 | shard image
//! meta = has_last u8 | last term u64 | last index u64 | has_membership_log_id u8 | its term u64 |
//!        its index u64 | membership (see codec)
//! ```
//! The shard image is a stream of crc-checked frames (see `stratos_shard`'s snapshot module)
//! and is validated on load, a frame at a time. A snapshot is written to `snapshot.tmp`,
//! fdatasync'ed, renamed over `snapshot`, and the directory is fsync'ed: a crash leaves either
//! the old or the new snapshot, never a mix.
//!
//! Building the tables never stalls the executor: they are frozen (copy-on-write per entry)
//! and the image is made in steps of [`SNAPSHOT_FRAME_ENTRIES`] entries (≈ 2-3 ms each), paced
//! ([`SNAPSHOT_PACE`]), each step's bytes written by glommio's blocking-thread pool while the
//! executor serves requests and applies entries; the fdatasync, rename and directory fsync run
//! there too. The snapshot is the state at the step it began, with the log id and membership of
//! that moment. Snapshots travel as files ([`SnapshotFile`]), never whole in memory. The retry
//! cache's outcomes are written in steps too (they were part of the first frame, made in one go
//! when the snapshot began: 0.2-0.36 s on the executor with a full retry cache, 32 MB); what the
//! snapshot's begin still does in one go is small (counters, usage, sessions' heads, uploads).

use std::cell::{Cell, RefCell};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use futures_lite::StreamExt;
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::{EntryPayload, RaftSnapshotBuilder, SnapshotMeta};
use stratos_shard::{Command, Outcome, SNAPSHOT_FRAME_ENTRIES, ShardState};

use crate::codec::{Reader, decode_membership, encode_membership};
use crate::types::{Applied, LogId, StoredMembership, TypeConfig, log_id, shard_index};

const MAGIC: &[u8; 8] = b"STRATOSR";
const VERSION: u32 = 1;
const META_BYTES_MAX: u32 = 1 << 20;

pub type Snapshot = openraft::alias::SnapshotOf<TypeConfig, SnapshotFile>;

/// A snapshot as openraft hands it around: an open snapshot file (head and shard image), never
/// its bytes in memory. A leader sends it to a follower in chunks read from the file, and a
/// follower receives it into a file and loads the state from there, a frame at a time. The file
/// is held open, so a newer snapshot renamed over the path does not disturb a send in progress.
#[derive(Debug, Clone)]
pub struct SnapshotFile {
    pub file: std::sync::Arc<SnapshotHandle>,
    pub len: u64,
    /// Where a received file lies until it is installed (then renamed to `<group>/snapshot`).
    pub received_at: Option<PathBuf>,
}

/// An open snapshot file whose close never runs on an executor. The last close of a snapshot
/// that a newer one replaced while it was being sent frees the whole file (its name is gone by
/// then, see [`free_replaced`]): 300 ms for 1.3 GB on this project's hosts, a stall of every
/// request on the core if openraft dropped the handle there. So the close is handed to a thread
/// of its own (one for the process, started at the first close; a close that cannot be handed
/// over runs where it is).
#[derive(Debug)]
pub struct SnapshotHandle(Option<std::fs::File>);

impl SnapshotHandle {
    pub fn new(file: std::fs::File) -> SnapshotHandle {
        SnapshotHandle(Some(file))
    }
}

impl std::ops::Deref for SnapshotHandle {
    type Target = std::fs::File;
    fn deref(&self) -> &std::fs::File {
        self.0.as_ref().expect("a snapshot handle is open until dropped")
    }
}

impl Drop for SnapshotHandle {
    fn drop(&mut self) {
        if let Some(file) = self.0.take() {
            close_away(file);
        }
    }
}

/// Closes `file` on the snapshot closer thread.
fn close_away(file: std::fs::File) {
    static CLOSER: std::sync::OnceLock<Option<std::sync::mpsc::Sender<std::fs::File>>> = std::sync::OnceLock::new();
    let closer = CLOSER.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel::<std::fs::File>();
        let spawned = std::thread::Builder::new().name("snapshot-closer".into()).spawn(move || {
            for file in rx {
                #[cfg(test)]
                tests::note_closed(&file);
                drop(file);
            }
        });
        spawned.ok().map(|_| tx)
    });
    match closer {
        Some(tx) => {
            // The thread never exits; were it gone, the file is closed here rather than kept.
            if let Err(unsent) = tx.send(file) {
                drop(unsent.0);
            }
        }
        None => drop(file),
    }
}

impl SnapshotFile {
    pub fn open(path: &Path) -> io::Result<SnapshotFile> {
        let file = std::fs::File::open(path)?;
        let len = file.metadata()?.len();
        Ok(SnapshotFile { file: std::sync::Arc::new(SnapshotHandle::new(file)), len, received_at: None })
    }

    /// The file's head (log id and membership), read from its start.
    pub fn meta(&self) -> Result<Meta, String> {
        read_meta(&mut std::io::BufReader::new(ReadAt(&self.file, 0)))
    }

    /// The head and the shard state, read as a stream: one frame at a time beside the state
    /// being rebuilt, never the whole file.
    fn load(&self) -> Result<(Meta, ShardState), String> {
        let mut r = io::BufReader::with_capacity(1 << 20, ReadAt(&self.file, 0));
        let meta = read_meta(&mut r)?;
        let shard = ShardState::load_snapshot_from(&mut r).map_err(|e| e.to_string())?;
        Ok((meta, shard))
    }
}

/// Reads a shared file from an offset on (positioned reads: the handle's offset is not used).
struct ReadAt<'a>(&'a std::fs::File, u64);

impl io::Read for ReadAt<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let n = self.0.read_at(buf, self.1)?;
        self.1 += n as u64;
        Ok(n)
    }
}

/// Called after each applied entry with the state, the commands, their outcomes and the
/// entry's log index (the meta group uses it to refresh every core's view of buckets). Entries
/// that carry no proposal (a leader's blank entry, a membership change) come with no commands.
pub type ApplyHook = Box<dyn FnMut(&ShardState, &[Command], &[Outcome], u64)>;
/// Called after the state was replaced wholesale (snapshot install).
pub type ResetHook = Box<dyn FnMut(&ShardState, u64)>;

/// What the state machine shares with the executor's request handlers (same thread).
pub struct GroupState {
    pub shard: RefCell<ShardState>,
    pub last_applied: Cell<Option<LogId>>,
    pub membership: RefCell<StoredMembership>,
    pub on_apply: RefCell<Option<ApplyHook>>,
    pub on_reset: RefCell<Option<ResetHook>>,
    /// The handles of `<group>/snapshot` given to openraft (to send to a follower): a replaced
    /// snapshot whose file one of them still reads is not truncated under it.
    readers: RefCell<Vec<std::sync::Weak<SnapshotHandle>>>,
}

impl std::fmt::Debug for GroupState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupState").field("last_applied", &self.last_applied.get()).finish()
    }
}

impl GroupState {
    pub fn applied_log_index(&self) -> u64 {
        self.last_applied.get().map_or(0, |l| l.index)
    }

    /// Opens `<dir>/snapshot` for openraft, remembering the handle (see `readers`).
    fn open_snapshot(&self, dir: &Path) -> io::Result<SnapshotFile> {
        let f = SnapshotFile::open(&dir.join("snapshot"))?;
        let mut readers = self.readers.borrow_mut();
        readers.retain(|r| r.strong_count() > 0);
        readers.push(std::sync::Arc::downgrade(&f.file));
        Ok(f)
    }

    /// Whether a handle of the snapshot file given out before now is still open.
    fn snapshot_read(&self) -> bool {
        self.readers.borrow().iter().any(|r| r.strong_count() > 0)
    }
}

#[derive(Debug)]
pub struct StateMachine {
    pub shared: Rc<GroupState>,
    dir: PathBuf,
}

fn io_err(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

impl StateMachine {
    /// Opens the state of group `group`: its last snapshot, if any (the log replays the rest).
    /// The group is part of the state (its object ids carry it), so a snapshot of another
    /// group is refused.
    pub fn open(dir: &Path, group: u32) -> io::Result<Self> {
        // A snapshot being written (`snapshot.tmp`) or received (`snapshot.recv`) when the node
        // stopped is never valid (only a rename makes one the snapshot), and one replaced but
        // not yet freed (`REPLACED`) is garbage: each would sit on disk, as large as the state
        // (1.2 GB per shard at 20M keys), until the next snapshot. Only the name goes here;
        // the file is freed by its last close on the snapshot closer thread, as a replaced
        // one is when running (an unlink of 1.3 GB took 300 ms here: a restart's time).
        for leftover in ["snapshot.tmp", "snapshot.recv", REPLACED] {
            let path = dir.join(leftover);
            let held = match std::fs::File::open(&path) {
                Ok(f) => Some(f),
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                // Not readable: removed in place, freed here.
                Err(_) => None,
            };
            let len = held.as_ref().and_then(|f| f.metadata().ok()).map_or(0, |m| m.len());
            std::fs::remove_file(&path).map_err(|e| io_err(format!("removing {}: {e}", path.display())))?;
            if let Some(f) = held {
                close_away(f);
            }
            eprintln!("{} {}: removed a snapshot file left by the last run ({len} bytes)", stratos_common::process::who(), path.display());
        }
        let path = dir.join("snapshot");
        let (shard, last, membership) = match SnapshotFile::open(&path) {
            Ok(f) => {
                let (meta, shard) = f.load().map_err(|e| io_err(format!("{}: {e}", path.display())))?;
                check_group(&shard, group).map_err(|e| io_err(format!("{}: {e}", path.display())))?;
                (shard, meta.last_log_id, meta.last_membership)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => (ShardState::for_group(group), None, StoredMembership::default()),
            Err(e) => return Err(io_err(format!("{}: {e}", path.display()))),
        };
        let shared = Rc::new(GroupState {
            shard: RefCell::new(shard),
            last_applied: Cell::new(last),
            membership: RefCell::new(membership),
            on_apply: RefCell::new(None),
            on_reset: RefCell::new(None),
            readers: RefCell::new(Vec::new()),
        });
        Ok(Self { shared, dir: dir.to_path_buf() })
    }
}

/// A snapshot's state must be of the group that loads it.
fn check_group(shard: &ShardState, group: u32) -> Result<(), String> {
    if shard.group() != group {
        return Err(format!("a snapshot of group {}, loaded as group {group}", shard.group()));
    }
    Ok(())
}

#[derive(Debug)]
pub struct Meta {
    pub last_log_id: Option<LogId>,
    pub last_membership: StoredMembership,
}

fn encode_meta(last: Option<LogId>, m: &StoredMembership) -> Vec<u8> {
    let mut b = Vec::new();
    let put_id = |b: &mut Vec<u8>, id: Option<&LogId>| {
        b.push(u8::from(id.is_some()));
        b.extend_from_slice(&id.map_or(0, |l| l.leader_id.term).to_le_bytes());
        b.extend_from_slice(&id.map_or(0, |l| l.index).to_le_bytes());
    };
    put_id(&mut b, last.as_ref());
    put_id(&mut b, m.log_id().as_ref());
    encode_membership(m.membership(), &mut b);
    b
}

/// The snapshot file up to its shard image.
fn file_head(last: Option<LogId>, membership: &StoredMembership) -> Vec<u8> {
    let meta = encode_meta(last, membership);
    let mut file = Vec::with_capacity(meta.len() + 20);
    file.extend_from_slice(MAGIC);
    file.extend_from_slice(&VERSION.to_le_bytes());
    file.extend_from_slice(&(meta.len() as u32).to_le_bytes());
    file.extend_from_slice(&meta);
    file.extend_from_slice(&crc32fast::hash(&meta).to_le_bytes());
    file
}

/// Reads a snapshot file's head (up to its shard image) from `r`.
fn read_meta(r: &mut impl io::Read) -> Result<Meta, String> {
    let mut head = vec![0u8; 16];
    r.read_exact(&mut head).map_err(|e| format!("reading its head: {e}"))?;
    let len = u32::from_le_bytes(head[12..16].try_into().expect("4 bytes"));
    if len > META_BYTES_MAX {
        return Err(format!("snapshot meta of {len} bytes"));
    }
    head.resize(16 + len as usize + 4, 0);
    r.read_exact(&mut head[16..]).map_err(|e| format!("reading its meta: {e}"))?;
    let (meta, rest) = parse_snapshot(&head)?;
    debug_assert!(rest.is_empty());
    Ok(meta)
}

pub fn parse_snapshot(bytes: &[u8]) -> Result<(Meta, &[u8]), String> {
    let mut r = Reader(bytes);
    if r.take(8)? != MAGIC {
        return Err("not a Stratos group snapshot (bad magic)".into());
    }
    let version = r.u32()?;
    if version != VERSION {
        return Err(format!("group snapshot version {version}, this build reads {VERSION}"));
    }
    let len = r.u32()?;
    if len > META_BYTES_MAX {
        return Err(format!("snapshot meta of {len} bytes"));
    }
    let meta_bytes = r.take(len as usize)?;
    let crc = r.u32()?;
    if crc != crc32fast::hash(meta_bytes) {
        return Err("snapshot meta crc32 mismatch".into());
    }
    let mut m = Reader(meta_bytes);
    let get_id = |m: &mut Reader<'_>| -> Result<Option<LogId>, String> {
        let has = m.take(1)?[0];
        let (term, index) = (m.u64()?, m.u64()?);
        Ok((has == 1).then(|| log_id(term, index)))
    };
    let last = get_id(&mut m)?;
    let membership_log_id = get_id(&mut m)?;
    let membership = decode_membership(&mut m)?;
    m.end()?;
    Ok((Meta { last_log_id: last, last_membership: StoredMembership::new(membership_log_id, membership) }, r.0))
}

pub fn snapshot_id(last: Option<LogId>) -> String {
    last.map_or_else(|| "empty".to_string(), |l| format!("{}-{}", l.leader_id.term, l.index))
}


/// Waits until the bytes of `f` before `at` are on the disk, then starts writeback of the `len`
/// bytes at `at` (`sync_file_range`: no metadata, no durability; the final fdatasync gives
/// that). So one step's bytes are in flight at a time, and the snapshot goes to the disk at
/// the disk's pace instead of in one burst at the end.
fn flush_range(f: &std::fs::File, at: u64, len: u64) {
    use std::os::fd::AsRawFd;
    let fd = f.as_raw_fd();
    // SAFETY: plain syscalls on an open descriptor; a failure only loses the pacing. A length
    // of 0 would mean "to the end of the file", hence the guards.
    unsafe {
        if at > 0 {
            libc::sync_file_range(fd, 0, at as libc::off64_t, libc::SYNC_FILE_RANGE_WAIT_BEFORE | libc::SYNC_FILE_RANGE_WRITE | libc::SYNC_FILE_RANGE_WAIT_AFTER);
        }
        if len > 0 {
            libc::sync_file_range(fd, at as libc::off64_t, len as libc::off64_t, libc::SYNC_FILE_RANGE_WRITE);
        }
    }
}

/// After each step of a snapshot, the executor waits this many times the step's own time
/// before the next. A snapshot is work proportional to the state (≈ 0.3 s per million keys
/// here), and run flat out on a busy core it took that time from requests: loading 20M keys,
/// every snapshot of a 9M-key shard (2.5 s) dipped the load to 22-40% of its median for a few
/// seconds. Paced at 2 (a third of the core): slowest second 47%, longest call 275 ms, and
/// many seconds at 50-65% of the median. At 3 (a quarter; a 9.6M-entry snapshot takes 9 s):
/// two seconds below 60% of the median (54%, and 35% in the run's last second), longest call
/// 181 ms. One run each on a noisy 2-vCPU VM.
pub const SNAPSHOT_PACE: u32 = 3;

/// Builds and persists a snapshot of the current state.
#[derive(Debug)]
pub struct SnapshotBuilder {
    shared: Rc<GroupState>,
    dir: PathBuf,
}

impl SnapshotBuilder {
    /// Writes the snapshot that `build` makes, a step at a time, to `snapshot.tmp`, then makes
    /// it the group's snapshot durably. Each step's bytes are written by the blocking-thread
    /// pool while this executor goes on (a write into the page cache can block on writeback).
    async fn write(&self, build: &mut stratos_shard::SnapshotBuild, mut out: Vec<u8>) -> io::Result<()> {
        let tmp = self.dir.join("snapshot.tmp");
        let file = std::sync::Arc::new(std::fs::File::create(&tmp)?);
        let mut offset = 0u64;
        loop {
            let step = std::time::Instant::now();
            let done = self.shared.shard.borrow_mut().snapshot_step(build, &mut out, SNAPSHOT_FRAME_ENTRIES).map_err(io_err)?;
            let (f, bytes, at) = (file.clone(), out, offset);
            offset += bytes.len() as u64;
            out = glommio::executor()
                .spawn_blocking(move || {
                    let mut w: &std::fs::File = &f;
                    w.write_all(&bytes)?;
                    // Written back as we go, one step in flight: the previous step's range must
                    // be on its way to the disk before this one is queued. Left to the final
                    // fdatasync, a 1 GB snapshot reached the disk in one burst that the WAL's
                    // fdatasyncs queued behind (writes stalled for 0.5 s at the end of each).
                    flush_range(&f, at, bytes.len() as u64);
                    Ok::<_, io::Error>(bytes)
                })
                .await?;
            out.clear();
            if done {
                break;
            }
            // Let requests and applies run between steps, and pace the snapshot to about a
            // quarter of the core (see [`SNAPSHOT_PACE`]).
            glommio::timer::sleep(step.elapsed() * SNAPSHOT_PACE).await;
        }
        // Durable here: the image's data, then the rename, then the directory that names it.
        let dir = self.dir.clone();
        let replaced = glommio::executor()
            .spawn_blocking(move || {
                file.sync_data()?;
                drop(file);
                replace_snapshot(&dir, &tmp)
            })
            .await?;
        if replaced {
            free_replaced(&self.dir, self.shared.snapshot_read()).await;
        }
        Ok(())
    }
}

/// Where the snapshot a new one replaces waits to be freed (see [`free_replaced`]).
const REPLACED: &str = "snapshot.replaced";

/// Makes `new` the group's snapshot in `dir`, durably: renamed over `snapshot`, then the
/// directory fsync'ed. The snapshot it replaces keeps a second name ([`REPLACED`]), so the rename
/// does not free it; true if there was one (for [`free_replaced`]). Blocking.
fn replace_snapshot(dir: &Path, new: &Path) -> io::Result<bool> {
    let (current, replaced) = (dir.join("snapshot"), dir.join(REPLACED));
    match std::fs::remove_file(&replaced) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let kept = match std::fs::hard_link(&current, &replaced) {
        Ok(()) => true,
        Err(e) if e.kind() == io::ErrorKind::NotFound => false,
        Err(e) => return Err(e),
    };
    std::fs::rename(new, &current)?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(kept)
}

/// Bytes of a replaced snapshot freed at a time, and the pause between two.
const FREE_STEP_BYTES: u64 = 32 << 20;
const FREE_PAUSE: std::time::Duration = std::time::Duration::from_millis(20);

/// Frees the replaced snapshot in `dir` a piece at a time, off the executor. Freed at once (a
/// rename over it, or an unlink), a 1.3 GB file took 250-355 ms on this host's ext4, mounted
/// with `discard` (an unlink of 1.3 GB: 300 ms; 64 MiB truncations: 15 ms at most each), and
/// the WAL's fdatasyncs waited on the journal behind it: loading 20M keys, every one-second dip
/// (24-34% of the median) and the longest call (284 ms) fell on one of those renames
/// (`perf trace`). The name goes first, then the file shrinks through a handle (a crash leaves
/// an orphan that the file system frees on mount). A file a reader still holds (a snapshot
/// being sent to a follower) is only unlinked, and freed by its last close, which [`SnapshotHandle`]
/// hands to a thread of its own.
async fn free_replaced(dir: &Path, in_use: bool) {
    let path = dir.join(REPLACED);
    let p = path.clone();
    let opened = glommio::executor()
        .spawn_blocking(move || {
            let file = if in_use { None } else { std::fs::OpenOptions::new().write(true).open(&p).ok() };
            std::fs::remove_file(&p).map(|()| file)
        })
        .await;
    let file = match opened {
        Ok(f) => f.map(std::sync::Arc::new),
        // Another replacement's freeing took it (an install racing a snapshot of our own).
        Err(e) if e.kind() == io::ErrorKind::NotFound => return,
        Err(e) => {
            eprintln!("{} {}: removing a replaced snapshot: {e}", stratos_common::process::who(), path.display());
            return;
        }
    };
    let Some(file) = file else { return };
    let mut len = file.metadata().map_or(0, |m| m.len());
    while len > 0 {
        len = len.saturating_sub(FREE_STEP_BYTES);
        let f = file.clone();
        if glommio::executor().spawn_blocking(move || f.set_len(len)).await.is_err() {
            break;
        }
        glommio::timer::sleep(FREE_PAUSE).await;
    }
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    type SnapshotData = SnapshotFile;

    async fn build_snapshot(&mut self) -> io::Result<Snapshot> {
        let last = self.shared.last_applied.get();
        let membership = self.shared.membership.borrow().clone();
        let mut out = file_head(last, &membership);
        let build = self.shared.shard.borrow_mut().begin_snapshot(&mut out);
        let Some(mut build) = build else { return Err(io_err("a snapshot of this group is being written already")) };
        let started = std::time::Instant::now();
        if let Err(e) = self.write(&mut build, out).await {
            // Unless the state was replaced (its tables are not frozen), stop keeping values.
            let mut shard = self.shared.shard.borrow_mut();
            if shard.is_snapshotting() {
                shard.abort_snapshot();
            }
            return Err(io_err(format!("{}: writing a snapshot up to {}: {e}", self.dir.display(), snapshot_id(last))));
        }
        // One line per snapshot (every `snapshot_after_entries` entries or `snapshot_after_bytes`
        // of log): how long it took is what an operator sizing those settings wants to know.
        eprintln!("{} {}: snapshot up to {} written: {} entries in {:.2} s", stratos_common::process::who(), self.dir.display(), snapshot_id(last), build.entries(), started.elapsed().as_secs_f64());
        // openraft keeps only the meta of a snapshot it asked to build; followers get the file
        // through `get_current_snapshot`.
        let file = self.shared.open_snapshot(&self.dir)?;
        Ok(Snapshot { meta: SnapshotMeta { last_log_id: last, last_membership: membership }, snapshot: file })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = SnapshotFile;
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> io::Result<(Option<LogId>, StoredMembership)> {
        Ok((self.shared.last_applied.get(), self.shared.membership.borrow().clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> io::Result<()>
    where
        Strm: futures_util::Stream<Item = io::Result<EntryResponder<TypeConfig>>> + Unpin,
    {
        while let Some(item) = entries.next().await {
            let (entry, responder) = item?;
            let log_index = entry.log_id.index;
            let (commands, outcomes) = match &entry.payload {
                EntryPayload::Blank => (Vec::new(), Vec::new()),
                EntryPayload::Membership(m) => {
                    *self.shared.membership.borrow_mut() = StoredMembership::new(Some(entry.log_id), m.clone());
                    (Vec::new(), Vec::new())
                }
                EntryPayload::Normal(p) => {
                    // A proposal that does not decode is a corrupt log (the WAL's crc passed, so
                    // the bytes are what was written): stop rather than skip a committed entry.
                    let commands = p.commands().map_err(|e| io_err(format!("log entry {log_index} does not decode: {e}")))?;
                    let mut shard = self.shared.shard.borrow_mut();
                    let outcomes: Vec<Outcome> = commands.iter().enumerate().map(|(i, c)| shard.apply(shard_index(log_index, i), c)).collect();
                    (commands, outcomes)
                }
            };
            // Every entry reaches the hook, a new leader's blank entry and a membership change
            // too (with no commands): whoever labels state with the index the hook was last
            // given (the meta view) must agree with the applied index, which a snapshot or a
            // restart also hands out. When only proposals reached the hook, a node restarted
            // from a snapshot taken at a blank entry labelled its view (with the snapshot's
            // index) ahead of its peers' views of the same state, and a client that had seen
            // that label waited on the peers for a meta index that only the next volume or
            // bucket write would bring: every key write there timed out with UNAVAILABLE.
            if let Some(hook) = self.shared.on_apply.borrow_mut().as_mut() {
                hook(&self.shared.shard.borrow(), &commands, &outcomes, log_index);
            }
            self.shared.last_applied.set(Some(entry.log_id));
            if let Some(r) = responder {
                r.send(Applied(outcomes));
            }
        }
        Ok(())
    }

    async fn try_create_snapshot_builder(&mut self, _force: bool) -> Option<SnapshotBuilder> {
        // One at a time: openraft asks again once the log has grown further.
        if self.shared.shard.borrow().is_snapshotting() {
            return None;
        }
        Some(self.get_snapshot_builder().await)
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        SnapshotBuilder { shared: self.shared.clone(), dir: self.dir.clone() }
    }

    async fn install_snapshot(&mut self, meta: &openraft::alias::SnapshotMetaOf<TypeConfig>, data: SnapshotFile) -> io::Result<()> {
        // A snapshot of our own being written finishes first (seconds at most): replacing the
        // state under it would fail it, and openraft takes a failed build as a storage error.
        while self.shared.shard.borrow().is_snapshotting() {
            glommio::timer::sleep(std::time::Duration::from_millis(5)).await;
        }
        let group = self.shared.shard.borrow().group();
        let (_, shard) = data
            .load()
            .and_then(|(_, shard)| check_group(&shard, group).map(|()| ((), shard)))
            .map_err(|e| io_err(format!("received snapshot up to {}: {e}", snapshot_id(meta.last_log_id))))?;
        // Durable as the group's snapshot before the state is replaced: the file's data, its
        // new name, the directory.
        if let Some(path) = &data.received_at {
            let (file, path, dir) = (data.file.clone(), path.clone(), self.dir.clone());
            let replaced = glommio::executor()
                .spawn_blocking(move || {
                    file.sync_data()?;
                    replace_snapshot(&dir, &path)
                })
                .await?;
            if replaced {
                // Off this task: the new state is in place first.
                let (dir, in_use) = (self.dir.clone(), self.shared.snapshot_read());
                glommio::spawn_local(async move { free_replaced(&dir, in_use).await }).detach();
            }
        }
        *self.shared.shard.borrow_mut() = shard;
        self.shared.last_applied.set(meta.last_log_id);
        *self.shared.membership.borrow_mut() = meta.last_membership.clone();
        let index = meta.last_log_id.map_or(0, |l| l.index);
        eprintln!("{} {}: installed a snapshot from the leader up to log index {index} ({} bytes)", stratos_common::process::who(), self.dir.display(), data.len);
        if let Some(hook) = self.shared.on_reset.borrow_mut().as_mut() {
            hook(&self.shared.shard.borrow(), index);
        }
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> io::Result<Option<Snapshot>> {
        let path = self.dir.join("snapshot");
        let file = match self.shared.open_snapshot(&self.dir) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(format!("{}: {e}", path.display()))),
        };
        let meta = file.meta().map_err(|e| io_err(format!("{}: {e}", path.display())))?;
        let snapshot_meta = SnapshotMeta { last_log_id: meta.last_log_id, last_membership: meta.last_membership };
        Ok(Some(Snapshot { meta: snapshot_meta, snapshot: file }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run<F: std::future::Future<Output = ()> + 'static>(f: impl FnOnce() -> F + Send + 'static) {
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound).spawn(move || async move { f().await }).expect("executor").join().expect("join");
    }

    /// Inode numbers of the files the snapshot closer thread closed.
    static CLOSED: std::sync::Mutex<Vec<u64>> = std::sync::Mutex::new(Vec::new());

    pub(super) fn note_closed(file: &std::fs::File) {
        use std::os::unix::fs::MetadataExt;
        if let Ok(m) = file.metadata() {
            CLOSED.lock().expect("lock").push(m.ino());
        }
    }

    /// Waits (up to 10 s) until the closer thread has closed every file of `inodes`.
    async fn wait_closed_away(inodes: &[u64], what: &str) {
        let since = std::time::Instant::now();
        while !inodes.iter().all(|i| CLOSED.lock().expect("lock").contains(i)) {
            assert!(since.elapsed() < std::time::Duration::from_secs(10), "{what} not closed by the closer thread");
            glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
        }
    }

    /// A new snapshot replaces the old one without freeing it inside the rename: the old file
    /// is freed a piece at a time after, unless a reader (a send to a follower) still holds it,
    /// which then reads it whole.
    #[test]
    fn a_replaced_snapshot_is_freed_after_and_never_under_a_reader() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().to_path_buf();
        run(move || async move {
            let mut sm = StateMachine::open(&path, 3).expect("open");
            let one = std::collections::BTreeMap::from([(1, openraft::BasicNode { addr: "127.0.0.1:1".into() })]);
            let m = crate::types::Membership::new(vec![std::collections::BTreeSet::from([1])], one).expect("membership");
            *sm.shared.membership.borrow_mut() = StoredMembership::new(Some(log_id(1, 1)), m);
            sm.shared.last_applied.set(Some(log_id(1, 1)));
            let mut builder = sm.get_snapshot_builder().await;
            builder.build_snapshot().await.expect("the first snapshot");
            assert!(!path.join(REPLACED).exists());
            // A follower is being sent the snapshot while the next one replaces it.
            let reader = sm.get_current_snapshot().await.expect("current").expect("a snapshot").snapshot;
            builder.build_snapshot().await.expect("the second snapshot");
            assert!(!path.join(REPLACED).exists(), "the replaced snapshot's name is gone");
            assert_eq!(reader.file.metadata().expect("stat").len(), reader.len, "not truncated under its reader");
            let (_, state) = reader.load().expect("the reader reads the replaced snapshot whole");
            assert_eq!(state.group(), 3);
            // Its last close frees the file: on the closer thread, not on this executor.
            let ino = { use std::os::unix::fs::MetadataExt; reader.file.metadata().expect("stat").ino() };
            drop(reader);
            wait_closed_away(&[ino], "the replaced snapshot's last handle was").await;
            // Nobody reads the second one when the third replaces it: freed, then gone.
            builder.build_snapshot().await.expect("the third snapshot");
            assert!(!path.join(REPLACED).exists());
            let current = SnapshotFile::open(&path.join("snapshot")).expect("the current snapshot");
            assert_eq!(current.load().expect("loads").1.group(), 3);
            // A crash between the rename and the freeing leaves the old name, a crash mid-write
            // a `.tmp`: removed at open, each file freed by the closer thread, not in `open`.
            let mut inodes = Vec::new();
            for leftover in [REPLACED, "snapshot.tmp"] {
                std::fs::write(path.join(leftover), [1u8; 100]).expect("write");
                inodes.push({ use std::os::unix::fs::MetadataExt; std::fs::metadata(path.join(leftover)).expect("stat").ino() });
            }
            // (An inode freed earlier in this test may have been reused for these.)
            CLOSED.lock().expect("lock").retain(|i| !inodes.contains(i));
            drop(sm);
            StateMachine::open(&path, 3).expect("reopen");
            assert!(!path.join(REPLACED).exists(), "a leftover replaced snapshot is removed at open");
            assert!(!path.join("snapshot.tmp").exists(), "an unfinished snapshot is removed at open");
            wait_closed_away(&inodes, "the leftovers were").await;
        });
    }
}
