//! Block data of one datanode: small blocks in its block log, large ones in files.
//!
//! **Small blocks** (every write within `small_block_bytes`, default 1 MiB) are held in memory
//! between their writes and their `putBlock`, which appends the whole block as one record to
//! the datanode's block log (`block-log/`, [`crate::blocklog`]) and answers once a group commit
//! made it durable: no file is created, no directory is synced, and concurrent `putBlock`s share
//! one fdatasync.
//! The memory is bounded (`buffer_bytes`); a block that would pass either bound goes to a file.
//!
//! **Large blocks** keep a file each: `containers/<container>/<local>.part` while written,
//! renamed to `<local>.block` by `putBlock` after its fdatasync (then the directory is fsynced).
//! Written in 1 MiB calls straight into the page cache, a large block pays its two journal
//! commits once per many megabytes, and its bytes are written once (a log's segments are
//! zero-filled before use, which would write every byte twice). A `.part` file is an
//! unfinished write that no reader sees.
//!
//! A block file is a sequence of frames, frame `i` at byte `i × FRAME_BYTES`:
//! `crc32(data) u32 LE ‖ data length u32 LE ‖ data` with `FRAME_DATA` data bytes in every frame
//! but the last. Every read verifies the crc of each frame it touches (a log record's crc
//! likewise); a mismatch is an error naming the file and offset, never silently returned data.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use glommio::io::{BufferedFile, Directory};
use stratos_wal::{DmaStorage, WalConfig};

use crate::blocklog::{BlockBytes, BlockLog, LogError};

pub const FRAME_DATA: u64 = 64 * 1024;
pub const FRAME_HEADER: u64 = 8;
pub const FRAME_BYTES: u64 = FRAME_DATA + FRAME_HEADER;
/// Bytes in one write or read call.
pub const CALL_BYTES_MAX: u64 = 4 << 20;
/// A small block buffered in memory whose writer was silent this long is dropped when memory
/// is short (a client gives up on a datanode after 30 s and writes the block elsewhere).
const ABANDONED_AFTER: Duration = Duration::from_secs(120);

/// How a datanode stores blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreConfig {
    /// Blocks up to this many bytes go to their container's log; longer ones get a file.
    /// 0 puts every block in a file.
    pub small_block_bytes: u64,
    /// Memory for small blocks between their first write and their `putBlock`.
    pub buffer_bytes: u64,
    /// Segment size of the block log (each preallocated and zero-filled; one spare is kept
    /// ready while the log is written).
    pub log_segment_bytes: u64,
    /// Memory for small blocks read recently (the block log is read with `O_DIRECT`, so this
    /// is its page cache); 0: none.
    pub read_cache_bytes: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self { small_block_bytes: 1 << 20, buffer_bytes: 256 << 20, log_segment_bytes: 64 << 20, read_cache_bytes: 256 << 20 }
    }
}

impl StoreConfig {
    fn wal(&self) -> WalConfig {
        // A record holds the container id before the block's bytes.
        WalConfig { segment_bytes: self.log_segment_bytes, payload_bytes_max: (self.small_block_bytes as usize + crate::blocklog::CONTAINER_BYTES) as u32 }
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.small_block_bytes > CALL_BYTES_MAX {
            return Err(format!("small blocks of up to {} bytes: at most {CALL_BYTES_MAX}", self.small_block_bytes));
        }
        if self.log_segment_bytes < 4 * (self.small_block_bytes + crate::blocklog::CONTAINER_BYTES as u64 + 8192) {
            return Err(format!("log segments of {} bytes must hold at least four small blocks of {} bytes", self.log_segment_bytes, self.small_block_bytes));
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    BadRequest(String),
    #[error("block {0}/{1} not found")]
    NotFound(u64, u64),
    #[error("{file}: frame at offset {offset} fails its checksum")]
    Corrupt { file: String, offset: u64 },
    #[error("corrupt record in {file} at offset {offset}: {reason}")]
    CorruptRecord { file: String, offset: u64, reason: String },
    #[error("{op} {file}: {source}")]
    Io { op: &'static str, file: String, source: std::io::Error },
}

/// The names in directory `dir` (none if it does not exist); an entry that cannot be read is
/// an error, never a shorter list. Blocking.
fn names_in(dir: &Path) -> std::io::Result<Vec<String>> {
    match std::fs::read_dir(dir) {
        Ok(entries) => entries.map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned())).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

fn io<'a>(op: &'static str, file: &'a Path) -> impl FnOnce(glommio::GlommioError<()>) -> StoreError + 'a {
    move |e| StoreError::Io { op, file: file.display().to_string(), source: e.into() }
}

fn log_error(dir: &Path, e: LogError) -> StoreError {
    match e {
        LogError::BadRequest(m) => StoreError::BadRequest(m),
        LogError::Read(stratos_wal::ReadError::Corrupt { file, offset, reason }) => StoreError::CorruptRecord { file, offset, reason },
        e => StoreError::Io { op: "using the log", file: dir.display().to_string(), source: std::io::Error::other(e.to_string()) },
    }
}

enum Writing {
    /// A small block so far; `at` is the time of its last write.
    Memory { data: Vec<u8>, at: Instant },
    File { file: BufferedFile, path: PathBuf, length: u64 },
}

impl Writing {
    fn length(&self) -> u64 {
        match self {
            Writing::Memory { data, .. } => data.len() as u64,
            Writing::File { length, .. } => *length,
        }
    }
}


/// Counters for `/prom`-style reports and the benchmarks.
#[derive(Debug, Clone, Copy, Default)]
pub struct StoreStats {
    pub small_blocks_put: u64,
    pub file_blocks_put: u64,
    pub log_flushes: u64,
    pub log_records: u64,
    pub compactions: u64,
    pub bytes_compacted: u64,
    pub buffered_bytes: u64,
    /// Reads of small blocks served from the read cache, and those that read the disk.
    pub read_cache_hits: u64,
    pub read_cache_misses: u64,
}

pub struct Store {
    root: PathBuf,
    cfg: StoreConfig,
    /// Blocks being written, between calls. A call takes its block's entry out while it runs
    /// and marks the block busy, so a concurrent call on the same block is refused (never a
    /// second writer on one file).
    writing: RefCell<HashMap<(u64, u64), Writing>>,
    busy: RefCell<HashSet<(u64, u64)>>,
    /// Bytes of small blocks held in `writing`.
    buffered: Cell<u64>,
    log: Rc<BlockLog<DmaStorage>>,
    /// Written since the last maintenance pass (which then prepares a spare segment).
    written: Cell<bool>,
    stats: RefCell<StoreStats>,
    /// Containers that have a directory (listed at open, added by `ensure_container`; none is
    /// ever removed). A block file can only be in one of them, so a small block's write asks
    /// the file system nothing: the `stat` of a block path that cannot exist cost 3.8% of a
    /// datanode's CPU under 4 KiB puts, a blocking call on the executor besides.
    dirs: RefCell<HashSet<u64>>,
}

/// Marks a block busy for the life of one call.
struct Busy<'a>(&'a Store, (u64, u64));

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.busy.borrow_mut().remove(&self.1);
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("root", &self.root).field("cfg", &self.cfg).finish()
    }
}

/// Frames `data` (which starts at a frame boundary).
fn frames(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len().div_ceil(FRAME_DATA as usize) * FRAME_HEADER as usize);
    for piece in data.chunks(FRAME_DATA as usize) {
        out.extend_from_slice(&crc32fast::hash(piece).to_le_bytes());
        out.extend_from_slice(&(piece.len() as u32).to_le_bytes());
        out.extend_from_slice(piece);
    }
    out
}

/// What opening the store found, for the start-up log line.
#[derive(Debug, Default)]
pub struct Opened {
    pub segments: usize,
    pub blocks: usize,
    pub live_bytes: u64,
    pub dead_bytes: u64,
    pub torn_tail: Option<stratos_wal::TornTail>,
}

impl Store {
    /// Opens the store under `root`, recovering the block log: a torn tail is cut; a bad record
    /// in the middle is an error naming the file and offset (the datanode does not start: its
    /// small blocks would be silently missing otherwise).
    pub async fn open(root: PathBuf, cfg: StoreConfig) -> Result<(Self, Opened), String> {
        cfg.validate()?;
        let dir = root.join("block-log");
        let storage = DmaStorage::open(&dir).await.map_err(|e| format!("opening {}: {e}", dir.display()))?;
        let (log, report) = BlockLog::open(storage, cfg.wal()).await.map_err(|e| e.to_string())?;
        log.set_read_cache_bytes(cfg.read_cache_bytes);
        let opened = Opened { segments: report.segments, blocks: log.blocks().len(), live_bytes: log.live_bytes(), dead_bytes: log.dead_bytes(), torn_tail: report.torn_tail };
        let containers = root.join("containers");
        // A listing that fails stops the start: a container left out of the set would have its
        // block files taken for absent (a complete block rewritten).
        let dirs = names_in(&containers).map_err(|e| format!("listing {}: {e}", containers.display()))?.iter().filter_map(|n| n.parse::<u64>().ok()).collect();
        let store = Self {
            root,
            cfg,
            writing: RefCell::default(),
            busy: RefCell::default(),
            buffered: Cell::new(0),
            log: Rc::new(log),
            written: Cell::new(false),
            stats: RefCell::default(),
            dirs: RefCell::new(dirs),
        };
        Ok((store, opened))
    }

    pub fn config(&self) -> &StoreConfig {
        &self.cfg
    }

    /// The block log's own counters (flushes, fdatasyncs, bytes, segments).
    pub fn log_stats(&self) -> stratos_wal::WalStats {
        self.log.stats()
    }

    pub fn stats(&self) -> StoreStats {
        let mut s = *self.stats.borrow();
        let w = self.log.stats();
        s.log_flushes = w.flushes;
        s.log_records = w.records_appended;
        s.buffered_bytes = self.buffered.get();
        (s.read_cache_hits, s.read_cache_misses) = self.log.read_cache_counts();
        s
    }

    fn claim(&self, container: u64, local: u64) -> Result<Busy<'_>, StoreError> {
        if !self.busy.borrow_mut().insert((container, local)) {
            return Err(StoreError::BadRequest(format!("block {container}/{local} is busy with another call")));
        }
        Ok(Busy(self, (container, local)))
    }

    /// The block log's directory.
    pub fn log_dir(&self) -> PathBuf {
        self.root.join("block-log")
    }

    pub fn container_dir(&self, container: u64) -> PathBuf {
        self.root.join("containers").join(container.to_string())
    }

    pub fn block_path(&self, container: u64, local: u64) -> PathBuf {
        self.container_dir(container).join(format!("{local}.block"))
    }

    fn part_path(&self, container: u64, local: u64) -> PathBuf {
        self.container_dir(container).join(format!("{local}.part"))
    }

    /// Makes the container directory exist durably (its name fsynced into its parent).
    async fn ensure_container(&self, container: u64) -> Result<(), StoreError> {
        if self.dirs.borrow().contains(&container) {
            return Ok(());
        }
        let dir = self.container_dir(container);
        let parent = self.root.join("containers");
        std::fs::create_dir_all(&dir).map_err(|source| StoreError::Io { op: "creating", file: dir.display().to_string(), source })?;
        let d = Directory::open(&parent).await.map_err(io("opening", &parent))?;
        d.sync().await.map_err(io("syncing", &parent))?;
        self.dirs.borrow_mut().insert(container);
        Ok(())
    }

    /// Whether the block is complete (or being completed) here.
    fn is_complete(&self, container: u64, local: u64) -> Result<bool, StoreError> {
        Ok(self.log.holds((container, local)) || (self.dirs.borrow().contains(&container) && self.block_path(container, local).exists()))
    }

    /// Takes `n` bytes of the small-block memory, dropping abandoned buffers if short.
    fn reserve(&self, n: u64) -> bool {
        if self.buffered.get() + n > self.cfg.buffer_bytes {
            let now = Instant::now();
            let busy = self.busy.borrow();
            let mut freed = 0;
            self.writing.borrow_mut().retain(|k, w| match w {
                Writing::Memory { data, at } if now.duration_since(*at) > ABANDONED_AFTER && !busy.contains(k) => {
                    freed += data.len() as u64;
                    false
                }
                _ => true,
            });
            self.buffered.set(self.buffered.get() - freed);
        }
        if self.buffered.get() + n > self.cfg.buffer_bytes {
            return false;
        }
        self.buffered.set(self.buffered.get() + n);
        true
    }

    fn release(&self, n: u64) {
        self.buffered.set(self.buffered.get().saturating_sub(n));
    }

    async fn create_part(&self, container: u64, local: u64) -> Result<(BufferedFile, PathBuf), StoreError> {
        self.ensure_container(container).await?;
        let path = self.part_path(container, local);
        let file = BufferedFile::create(&path).await.map_err(io("creating", &path))?;
        Ok((file, path))
    }

    /// Appends `data` at `offset` (the block's current length, on a frame boundary).
    pub async fn write(&self, container: u64, local: u64, offset: u64, data: &[u8]) -> Result<(), StoreError> {
        if data.len() as u64 > CALL_BYTES_MAX {
            return Err(StoreError::BadRequest(format!("{} bytes in one write, at most {CALL_BYTES_MAX}", data.len())));
        }
        if offset % FRAME_DATA != 0 {
            return Err(StoreError::BadRequest(format!("write at offset {offset}: writes start at multiples of {FRAME_DATA}")));
        }
        if self.is_complete(container, local)? {
            return Err(StoreError::BadRequest(format!("block {container}/{local} is already complete")));
        }
        let _busy = self.claim(container, local)?;
        let taken = self.writing.borrow_mut().remove(&(container, local));
        let n = data.len() as u64;
        let state = match taken {
            Some(s) => s,
            None if offset == 0 && n <= self.cfg.small_block_bytes && self.cfg.small_block_bytes > 0 => Writing::Memory { data: Vec::new(), at: Instant::now() },
            None if offset == 0 => {
                let (file, path) = self.create_part(container, local).await?;
                Writing::File { file, path, length: 0 }
            }
            None => return Err(StoreError::BadRequest(format!("write at offset {offset} of block {container}/{local}, which has no write in progress (start at 0)"))),
        };
        let written = state.length();
        if offset != written || written % FRAME_DATA != 0 {
            self.writing.borrow_mut().insert((container, local), state);
            return Err(StoreError::BadRequest(format!("write at offset {offset}; block {container}/{local} has {written} bytes written")));
        }
        let state = match state {
            Writing::Memory { data: mut held, .. } if written + n <= self.cfg.small_block_bytes && self.reserve(n) => {
                held.extend_from_slice(data);
                Writing::Memory { data: held, at: Instant::now() }
            }
            Writing::Memory { data: held, .. } => {
                // Past a bound: the block continues in a file, starting with what was held.
                self.release(held.len() as u64);
                let (file, path) = self.create_part(container, local).await?;
                let mut all = held;
                all.extend_from_slice(data);
                let length = all.len() as u64;
                Self::write_frames(&file, &path, 0, &all).await?;
                Writing::File { file, path, length }
            }
            Writing::File { file, path, length } => {
                // An I/O error drops the write in progress (the client starts the block again
                // or moves on).
                Self::write_frames(&file, &path, offset, data).await?;
                Writing::File { file, path, length: length + n }
            }
        };
        self.writing.borrow_mut().insert((container, local), state);
        Ok(())
    }

    async fn write_frames(file: &BufferedFile, path: &Path, offset: u64, data: &[u8]) -> Result<(), StoreError> {
        let buf = frames(data);
        let n = buf.len();
        let wrote = file.write_at(buf, offset / FRAME_DATA * FRAME_BYTES).await.map_err(io("writing", path))?;
        if wrote != n {
            return Err(StoreError::Io { op: "writing", file: path.display().to_string(), source: std::io::Error::other(format!("short write: {wrote} of {n}")) });
        }
        Ok(())
    }

    /// Drops a block's write in progress, if no call is on it (its memory is released; a
    /// `.part` file is truncated by the next write from offset 0).
    pub fn abandon(&self, container: u64, local: u64) {
        if self.busy.borrow().contains(&(container, local)) {
            return;
        }
        if let Some(Writing::Memory { data, .. }) = self.writing.borrow_mut().remove(&(container, local)) {
            self.release(data.len() as u64);
        }
    }

    /// Completes a block of `length` bytes. Only then is the block durable and readable. A
    /// repeat on a complete block of that length is a success.
    pub async fn finish(&self, container: u64, local: u64, length: u64) -> Result<(), StoreError> {
        let _busy = self.claim(container, local)?;
        let taken = self.writing.borrow_mut().remove(&(container, local));
        match taken {
            Some(state) if state.length() != length => {
                let written = state.length();
                self.writing.borrow_mut().insert((container, local), state);
                Err(StoreError::BadRequest(format!("putBlock says {length} bytes; block {container}/{local} has {written} written")))
            }
            Some(Writing::Memory { data, .. }) => {
                let r = self.put_small(container, local, &data).await;
                self.release(data.len() as u64);
                r
            }
            Some(Writing::File { file, path, .. }) => {
                // Durability point of a large block: its bytes, then its name.
                file.fdatasync().await.map_err(io("syncing", &path))?;
                file.close().await.map_err(io("closing", &path))?;
                let final_path = self.block_path(container, local);
                std::fs::rename(&path, &final_path).map_err(|source| StoreError::Io { op: "renaming", file: path.display().to_string(), source })?;
                self.sync_dir(container).await?;
                self.stats.borrow_mut().file_blocks_put += 1;
                Ok(())
            }
            // An empty block: nothing was written.
            None if length == 0 && !self.is_complete(container, local)? && self.cfg.small_block_bytes > 0 => self.put_small(container, local, &[]).await,
            None if length == 0 && !self.is_complete(container, local)? => {
                self.ensure_container(container).await?;
                let path = self.block_path(container, local);
                let f = BufferedFile::create(&path).await.map_err(io("creating", &path))?;
                f.fdatasync().await.map_err(io("syncing", &path))?;
                f.close().await.map_err(io("closing", &path))?;
                self.sync_dir(container).await
            }
            None => match self.length(container, local).await {
                Ok(l) if l == length => Ok(()),
                Ok(l) => Err(StoreError::BadRequest(format!("block {container}/{local} is complete with {l} bytes, not {length}"))),
                Err(StoreError::NotFound(..)) => Err(StoreError::BadRequest(format!("block {container}/{local} has no write in progress"))),
                Err(e) => Err(e),
            },
        }
    }

    /// Durability point of a small block: its record in the container's log, group-committed
    /// with every other put that reached the log meanwhile.
    async fn put_small(&self, container: u64, local: u64, data: &[u8]) -> Result<(), StoreError> {
        self.log.put((container, local), data).await.map_err(|e| log_error(&self.log_dir(), e))?;
        self.written.set(true);
        self.stats.borrow_mut().small_blocks_put += 1;
        Ok(())
    }

    async fn sync_dir(&self, container: u64) -> Result<(), StoreError> {
        let dir = self.container_dir(container);
        let d = Directory::open(&dir).await.map_err(io("opening", &dir))?;
        d.sync().await.map_err(io("syncing", &dir))
    }

    /// The length of a complete block.
    pub async fn length(&self, container: u64, local: u64) -> Result<u64, StoreError> {
        if let Some(len) = self.log.length((container, local)) {
            return Ok(len);
        }
        let path = self.block_path(container, local);
        let f = match BufferedFile::open(&path).await {
            Ok(f) => f,
            Err(e) => {
                let e: std::io::Error = e.into();
                return Err(if e.kind() == std::io::ErrorKind::NotFound { StoreError::NotFound(container, local) } else { StoreError::Io { op: "opening", file: path.display().to_string(), source: e } });
            }
        };
        let r = Self::length_of(&f, &path).await;
        let _ = f.close().await;
        r
    }

    async fn length_of(f: &BufferedFile, path: &Path) -> Result<u64, StoreError> {
        let size = f.file_size().await.map_err(io("sizing", path))?;
        if size == 0 {
            return Ok(0);
        }
        let last = (size - 1) / FRAME_BYTES;
        let header = f.read_at(last * FRAME_BYTES, FRAME_HEADER as usize).await.map_err(io("reading", path))?;
        let len = u64::from(u32::from_le_bytes(header.get(4..8).and_then(|b| b.try_into().ok()).ok_or_else(|| StoreError::Corrupt { file: path.display().to_string(), offset: last * FRAME_BYTES })?));
        if len > FRAME_DATA || last * FRAME_BYTES + FRAME_HEADER + len != size {
            return Err(StoreError::Corrupt { file: path.display().to_string(), offset: last * FRAME_BYTES });
        }
        Ok(last * FRAME_DATA + len)
    }

    /// Reads up to `length` bytes at `offset` of a complete block, verifying every frame (or
    /// the log record) it touches. Returns the bytes and the block's length.
    pub async fn read(&self, container: u64, local: u64, offset: u64, length: u64) -> Result<(BlockBytes, u64), StoreError> {
        if length > CALL_BYTES_MAX {
            return Err(StoreError::BadRequest(format!("{length} bytes in one read, at most {CALL_BYTES_MAX}")));
        }
        if let Some(data) = self.log.get_for((container, local), offset, length).await.map_err(|e| log_error(&self.log_dir(), e))? {
            let block_len = data.len() as u64;
            let end = offset.saturating_add(length).min(block_len);
            return Ok((data.narrow(offset.min(end) as usize..end as usize), block_len));
        }
        let path = self.block_path(container, local);
        let f = match BufferedFile::open(&path).await {
            Ok(f) => f,
            Err(_) if !path.exists() => return Err(StoreError::NotFound(container, local)),
            Err(e) => return Err(io("opening", &path)(e)),
        };
        let r = async {
            let block_len = Self::length_of(&f, &path).await?;
            let end = offset.saturating_add(length).min(block_len);
            if offset >= end {
                return Ok((BlockBytes::from(Vec::new()), block_len));
            }
            let (first, last) = (offset / FRAME_DATA, (end - 1) / FRAME_DATA);
            let raw = f.read_at(first * FRAME_BYTES, ((last - first + 1) * FRAME_BYTES) as usize).await.map_err(io("reading", &path))?;
            let mut out = Vec::with_capacity((end - offset) as usize);
            for i in first..=last {
                let at = ((i - first) * FRAME_BYTES) as usize;
                let corrupt = || StoreError::Corrupt { file: path.display().to_string(), offset: i * FRAME_BYTES };
                let header = raw.get(at..at + FRAME_HEADER as usize).ok_or_else(corrupt)?;
                let crc = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes"));
                let len = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes")) as usize;
                let data = raw.get(at + FRAME_HEADER as usize..at + FRAME_HEADER as usize + len).ok_or_else(corrupt)?;
                if len as u64 > FRAME_DATA || crc32fast::hash(data) != crc {
                    return Err(corrupt());
                }
                let frame_start = i * FRAME_DATA;
                let from = offset.max(frame_start) - frame_start;
                let to = end.min(frame_start + len as u64) - frame_start;
                out.extend_from_slice(&data[from as usize..to as usize]);
            }
            Ok((BlockBytes::from(out), block_len))
        }
        .await;
        let _ = f.close().await;
        r
    }

    /// Deletes blocks (complete or not); a missing one is already deleted. Durable when it
    /// returns: each touched log's tombstones are synced and each touched container directory
    /// is fsynced once.
    pub async fn delete(&self, blocks: &[(u64, u64)]) -> Result<usize, StoreError> {
        let mut removed = 0;
        let mut dirs = std::collections::BTreeSet::new();
        for &(c, l) in blocks {
            if let Some(Writing::Memory { data, .. }) = self.writing.borrow_mut().remove(&(c, l)) {
                self.release(data.len() as u64);
            }
            for p in [self.block_path(c, l), self.part_path(c, l)] {
                match std::fs::remove_file(&p) {
                    Ok(()) => {
                        removed += 1;
                        dirs.insert(c);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(source) => return Err(StoreError::Io { op: "removing", file: p.display().to_string(), source }),
                }
            }
        }
        removed += self.log.delete(blocks).await.map_err(|e| log_error(&self.log_dir(), e))?;
        for c in dirs {
            self.sync_dir(c).await?;
        }
        Ok(removed)
    }

    /// The complete blocks of a container here: (local id, length), by local id.
    pub async fn list(&self, container: u64) -> Result<Vec<(u64, u64)>, StoreError> {
        let mut out: BTreeMap<u64, u64> = self.log.blocks_of(container).into_iter().collect();
        // A container without a directory holds only log blocks; a listing error is the
        // caller's to see, not a shorter list.
        let dir = self.container_dir(container);
        let names = names_in(&dir).map_err(|source| StoreError::Io { op: "listing", file: dir.display().to_string(), source })?;
        for l in names.iter().filter_map(|n| n.strip_suffix(".block")?.parse::<u64>().ok()) {
            match self.length(container, l).await {
                Ok(len) => {
                    out.insert(l, len);
                }
                Err(StoreError::NotFound(..)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out.into_iter().collect())
    }

    /// Background upkeep, run every second or so: a spare segment when the log was written
    /// since the last pass (so a segment rollover never zero-fills on a put's path), and a
    /// compaction pass when its dead bytes reached its live bytes.
    pub async fn maintain(&self) {
        if self.written.replace(false)
            && self.log.needs_spare()
            && let Err(e) = self.log.prepare_spare().await
        {
            eprintln!("datanode: preparing a spare segment of {}: {e}", self.log_dir().display());
        }
        if self.log.wants_compaction() {
            let started = Instant::now();
            match self.log.compact().await {
                Ok(c) => {
                    let mut s = self.stats.borrow_mut();
                    s.compactions += 1;
                    s.bytes_compacted += c.bytes_copied;
                    eprintln!(
                        "datanode: compacted {} in {:?}: {} live blocks ({} bytes) copied; {} MiB live, {} MiB dead now (were {} MiB dead)",
                        self.log_dir().display(),
                        started.elapsed(),
                        c.blocks_copied,
                        c.bytes_copied,
                        self.log.live_bytes() >> 20,
                        self.log.dead_bytes() >> 20,
                        c.dead_bytes_before >> 20
                    );
                }
                Err(e) => eprintln!("datanode: compacting {}: {e}", self.log_dir().display()),
            }
        }
    }
}
