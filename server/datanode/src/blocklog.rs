//! A datanode's small blocks in one append-only log, group-committed.
//!
//! Why: a block in a file of its own costs two journal commits per replica (the file's
//! fdatasync, then the directory's fsync after the rename), which capped 4 KiB objects at about
//! a thousand per second on this project's hosts (docs/data-path.md). Here a block is one record
//! appended to the datanode's block log, and every `putBlock` that arrives while a flush runs
//! shares the next one: one write and one fdatasync for all of them, and no directory operation
//! at all (the segment files are preallocated and zero-filled).
//!
//! One log per datanode (per data directory), not one per container: the SCM opens many
//! containers at once (one per pipeline, and a new one each time allocated blocks reach the
//! container size), so per-container logs split the group commit many ways and each held a
//! preallocated segment. A first version did that and measured 534 keys/s, with 150 logs of
//! 32 MiB each after 2,700 keys of 4 KiB.
//!
//! The log is a [`stratos_wal::Wal`], reused rather than re-invented: its records are
//! crc32-framed, a torn tail is cut at open, a bad record in the middle is refused with the file
//! and offset (the WAL's recovery rules), a read checks the record's crc again, and its group
//! commit is the one the Raft log uses. The mapping onto it:
//! - a block is an entry whose *term* is the block's local id and whose payload is its
//!   container id (u64 LE) followed by its bytes;
//! - a delete is an entry whose term is the local id with [`TOMBSTONE`] set and whose payload is
//!   the container id;
//! - log indices only grow, so a log index names one version of one block for ever.
//!
//! The index ((container, local id) → log index, length) lives in memory and is rebuilt at open
//! from the records recovery reads anyway ([`Wal::open_visiting`]): opening reads the log once,
//! one segment at a time.
//!
//! **Compaction.** Deletes leave dead records. When dead bytes reach the live bytes (and the
//! log spans at least four segments), [`BlockLog::compact`] takes the oldest quarter of the log
//! (by bytes), copies its live blocks to the tail, and once the copies are durable purges the
//! log up to there, which deletes the segments that held only that quarter. A crash in between
//! leaves both copies; the open keeps the later one. Each pass frees about a quarter of the log
//! for the cost of rewriting the live part of that quarter, and passes repeat while the dead
//! bytes stay at or above the live ones.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::rc::Rc;

use stratos_wal::{AppendError, FlushError, LogId, OpenError, ReadError, RecoveryReport, Storage, Wal, WalConfig};

/// Set in an entry's term to mark the deletion of the block whose local id is the rest.
pub const TOMBSTONE: u64 = 1 << 63;

/// A block's name: (container id, local id).
pub type BlockId = (u64, u64);

/// Bytes of the container id that starts every payload.
pub const CONTAINER_BYTES: usize = 8;

/// The largest buffer (a block's record as read) the read cache keeps from a read of a whole
/// block: small objects are what it is for; a block read in ranges is kept at any size (see
/// [`ReadCache::insert`]).
const CACHED_BLOCK_BYTES_MAX: u64 = 128 << 10;

/// Bytes a compaction appends before it waits for them to be durable: bounds the memory its
/// pending batch holds.
const COMPACT_BATCH_BYTES: usize = 8 << 20;

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("{0}")]
    BadRequest(String),
    #[error(transparent)]
    Append(#[from] AppendError),
    #[error(transparent)]
    Flush(#[from] FlushError),
    #[error(transparent)]
    Read(#[from] ReadError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Loc {
    log_index: u64,
    len: u32,
    /// The put that appended this block has seen it durable. Until then the block is neither
    /// readable nor reported present, so a repeated `putBlock` cannot succeed early.
    ready: bool,
}

/// On-disk bytes of the record of a block of `len` bytes (header, container id, data,
/// alignment).
fn record_bytes(len: u32) -> u64 {
    (stratos_wal::constants::HEADER_BYTES as u64 + CONTAINER_BYTES as u64 + u64::from(len)).next_multiple_of(stratos_wal::constants::RECORD_ALIGN_BYTES as u64)
}

fn payload(container: u64, data: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(CONTAINER_BYTES + data.len());
    p.extend_from_slice(&container.to_le_bytes());
    p.extend_from_slice(data);
    p
}

/// Bytes of a block as read: the buffer the read filled and the block's part of it, not copied
/// out (a datanode's read copies them into its reply from here; before, a block was copied up
/// to three more times first: out of the record, past the container id, to the range).
///
/// The buffer is shared: a block in the read cache and every read it serves hold the same one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockBytes {
    bytes: Rc<Vec<u8>>,
    range: Range<usize>,
}

impl BlockBytes {
    /// Narrows to `range` of the block's bytes (clamped to them: any range is safe).
    pub fn narrow(mut self, range: Range<usize>) -> BlockBytes {
        let end = range.end.min(self.len());
        let start = range.start.min(end);
        self.range = self.range.start + start..self.range.start + end;
        self
    }
}

impl From<Vec<u8>> for BlockBytes {
    fn from(bytes: Vec<u8>) -> BlockBytes {
        BlockBytes { range: 0..bytes.len(), bytes: Rc::new(bytes) }
    }
}

/// Blocks read recently, whole (as [`BlockBytes`] of the buffer their read filled): those of
/// up to [`CACHED_BLOCK_BYTES_MAX`], and any read in ranges; up to a budget of bytes, the least
/// recently read dropped first.
///
/// Why: the log is read with `O_DIRECT` (glommio's DMA files), so no page cache stands between
/// a read and the disk: every GET of a hot 4 KiB object was a device read, and on a VM a
/// virtio kick and a completion to wait for (a second wake-up of the executor per read).
/// Ozone's datanodes read through the page cache; this is that cache for the block log, sized
/// by `--read-cache-bytes` instead of by whatever memory is free. Blocks are immutable once
/// put, so an entry is dropped only by a delete (or a put of the same id after one) and by
/// the budget; a compaction moves a block's record, not its bytes.
#[derive(Debug, Default)]
struct ReadCache {
    budget: u64,
    held: u64,
    clock: u64,
    entries: HashMap<BlockId, (BlockBytes, u64)>,
    /// Last use → block, the oldest first.
    order: BTreeMap<u64, BlockId>,
    hits: u64,
    misses: u64,
}

impl ReadCache {
    fn cost(b: &BlockBytes) -> u64 {
        b.bytes.capacity() as u64
    }

    /// The block if kept; with no budget, nothing (and nothing counted).
    fn get(&mut self, block: BlockId) -> Option<BlockBytes> {
        if self.budget == 0 {
            return None;
        }
        let Some((bytes, used)) = self.entries.get_mut(&block) else {
            self.misses += 1;
            return None;
        };
        self.order.remove(used);
        self.clock += 1;
        *used = self.clock;
        self.order.insert(self.clock, block);
        self.hits += 1;
        Some(bytes.clone())
    }

    /// `partial`: the read asked for part of the block. Such a block is kept up to an eighth of
    /// the budget: a range of a small block costs a read and check of all of it (one crc per
    /// record), and readers of ranges (columnar formats, seeks) come back for more ranges.
    fn insert(&mut self, block: BlockId, bytes: BlockBytes, partial: bool) {
        let cost = Self::cost(&bytes);
        // A block over an eighth of the budget would push out many others for one. A block
        // over CACHED_BLOCK_BYTES_MAX read whole is read at the disk's bandwidth anyway, and
        // keeping such blocks cost more than it saved (1 MiB GETs: the datanodes' CPU per read
        // +27%, a fresh megabyte buffer for each read while 256 of them sat in the cache).
        if self.budget == 0 || cost.saturating_mul(8) > self.budget || (cost > CACHED_BLOCK_BYTES_MAX && !partial) {
            return;
        }
        self.remove(block);
        self.shrink_to(self.budget - cost);
        self.clock += 1;
        self.order.insert(self.clock, block);
        self.entries.insert(block, (bytes, self.clock));
        self.held += cost;
    }

    fn remove(&mut self, block: BlockId) {
        if let Some((b, used)) = self.entries.remove(&block) {
            self.order.remove(&used);
            self.held -= Self::cost(&b);
        }
    }

    /// Drops the least recently read blocks until at most `bytes` are held.
    fn shrink_to(&mut self, bytes: u64) {
        while self.held > bytes {
            let Some((_, oldest)) = self.order.pop_first() else { break };
            if let Some((b, _)) = self.entries.remove(&oldest) {
                self.held -= Self::cost(&b);
            }
        }
    }
}

impl std::ops::Deref for BlockBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.bytes[self.range.clone()]
    }
}

fn container_of(payload: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(payload.get(..CONTAINER_BYTES)?.try_into().ok()?))
}

/// What a compaction did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Compacted {
    pub blocks_copied: u64,
    pub bytes_copied: u64,
    pub dead_bytes_before: u64,
}

pub struct BlockLog<S: Storage> {
    wal: Wal<S>,
    segment_bytes: u64,
    index: RefCell<HashMap<BlockId, Loc>>,
    live_bytes: Cell<u64>,
    dead_bytes: Cell<u64>,
    compacting: Cell<bool>,
    cache: RefCell<ReadCache>,
}

impl<S: Storage> std::fmt::Debug for BlockLog<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockLog").field("blocks", &self.index.borrow().len()).field("live_bytes", &self.live_bytes.get()).field("dead_bytes", &self.dead_bytes.get()).finish()
    }
}

/// Clears the compacting flag however a compaction ends.
struct Compacting<'a>(&'a Cell<bool>);

impl Drop for Compacting<'_> {
    fn drop(&mut self) {
        self.0.set(false);
    }
}

impl<S: Storage> BlockLog<S> {
    /// Opens (or starts) the log in `storage` and rebuilds the index from the records recovery
    /// reads. A corrupt middle is [`OpenError::Corrupt`] with file and offset.
    pub async fn open(storage: S, config: WalConfig) -> Result<(Self, RecoveryReport), OpenError> {
        let mut index: HashMap<BlockId, Loc> = HashMap::new();
        let mut visit = |log_index: u64, term: u64, payload: &[u8]| {
            let Some(container) = container_of(payload) else { return };
            if term & TOMBSTONE != 0 {
                index.remove(&(container, term & !TOMBSTONE));
            } else {
                // A later entry of the same block is a compaction's copy: it wins.
                let len = (payload.len() - CONTAINER_BYTES) as u32;
                index.insert((container, term), Loc { log_index, len, ready: true });
            }
        };
        let (wal, report) = Wal::open_visiting(storage, config, &mut visit).await?;
        // Entries that recovery saw before a purge record are no longer in the log.
        let first = wal.first_log_index();
        index.retain(|_, l| l.log_index >= first && wal.entry_term(l.log_index).is_some());
        let log = Self { wal, segment_bytes: config.segment_bytes, index: RefCell::new(index), live_bytes: Cell::new(0), dead_bytes: Cell::new(0), compacting: Cell::new(false), cache: RefCell::default() };
        log.recount();
        Ok((log, report))
    }

    /// Keeps up to `bytes` of recently read blocks in memory ([`ReadCache`]; 0: none).
    pub fn set_read_cache_bytes(&self, bytes: u64) {
        let mut c = self.cache.borrow_mut();
        c.budget = bytes;
        c.shrink_to(bytes);
    }

    /// Reads served from the read cache and reads that went to the disk.
    pub fn read_cache_counts(&self) -> (u64, u64) {
        let c = self.cache.borrow();
        (c.hits, c.misses)
    }

    /// Recomputes live and dead bytes from the index and the log's entry lengths (memory only).
    fn recount(&self) {
        let live: u64 = self.index.borrow().values().map(|l| record_bytes(l.len)).sum();
        let first = self.wal.first_log_index();
        let total: u64 = (first..self.wal.next_log_index().unwrap_or(first)).filter_map(|i| self.wal.entry_len(i)).map(|len| record_bytes(len.saturating_sub(CONTAINER_BYTES as u32))).sum();
        self.live_bytes.set(live);
        self.dead_bytes.set(total.saturating_sub(live));
    }

    fn next_index(&self) -> u64 {
        self.wal.next_log_index().unwrap_or(1)
    }

    /// Stores a block and returns once it is durable (written and fdatasync'ed together with
    /// whatever else was appended meanwhile: the group commit). This is the block's durability
    /// point on this datanode.
    pub async fn put(&self, block: BlockId, data: &[u8]) -> Result<(), LogError> {
        let (container, local) = block;
        if local & TOMBSTONE != 0 {
            return Err(LogError::BadRequest(format!("local id {local} is out of range")));
        }
        if self.index.borrow().contains_key(&block) {
            return Err(LogError::BadRequest(format!("block {container}/{local} is already stored")));
        }
        let len = u32::try_from(data.len()).map_err(|_| LogError::BadRequest(format!("a block of {} bytes does not fit one record", data.len())))?;
        let log_index = self.next_index();
        let ticket = self.wal.append_entry(log_index, local, &payload(container, data))?;
        // Not cached (a delete dropped it), but a new version must never meet an old one.
        self.cache.borrow_mut().remove(block);
        self.index.borrow_mut().insert(block, Loc { log_index, len, ready: false });
        self.live_bytes.set(self.live_bytes.get() + record_bytes(len));
        if let Err(e) = self.wal.wait_durable(ticket).await {
            // The log is poisoned (fail-stop): nothing more is stored or reported here.
            self.index.borrow_mut().remove(&block);
            return Err(e.into());
        }
        // A compaction may have moved it meanwhile (its copy keeps the flag, so set it on
        // whatever entry is current); a delete may have removed it (the delete wins).
        if let Some(l) = self.index.borrow_mut().get_mut(&block) {
            l.ready = true;
        }
        Ok(())
    }

    /// The length of a stored block.
    pub fn length(&self, block: BlockId) -> Option<u64> {
        self.index.borrow().get(&block).filter(|l| l.ready).map(|l| u64::from(l.len))
    }

    /// Whether a put of this block has started (durable or not).
    pub fn holds(&self, block: BlockId) -> bool {
        self.index.borrow().contains_key(&block)
    }

    /// A block's bytes (crc checked on the way), or `None` if it is not stored.
    pub async fn get(&self, block: BlockId) -> Result<Option<BlockBytes>, LogError> {
        self.get_for(block, 0, u64::MAX).await
    }

    /// [`BlockLog::get`] (the whole block) for a read of `length` bytes at `offset`: a block
    /// read in part is kept in the read cache whatever its size (see [`ReadCache::insert`]).
    pub async fn get_for(&self, block: BlockId, offset: u64, length: u64) -> Result<Option<BlockBytes>, LogError> {
        // A compaction may purge the entry between the lookup and the read: look again (the
        // copy is in the index before the original is purged).
        let mut tries = 0;
        loop {
            let Some(loc) = self.index.borrow().get(&block).copied().filter(|l| l.ready) else { return Ok(None) };
            if let Some(b) = self.cache.borrow_mut().get(block) {
                return Ok(Some(b));
            }
            match self.wal.read_entry_in_place(loc.log_index).await {
                Ok((bytes, payload)) => {
                    // The record's crc held, so another block here would be a bug, not bit rot.
                    if container_of(&bytes[payload.clone()]) != Some(block.0) || self.wal.entry_term(loc.log_index) != Some(block.1) {
                        return Err(LogError::BadRequest(format!("log index {} does not hold block {}/{}", loc.log_index, block.0, block.1)));
                    }
                    let read = BlockBytes { bytes: Rc::new(bytes), range: payload.start + CONTAINER_BYTES..payload.end };
                    // Cached only if the block is still there as read: a delete during the read
                    // must not leave it served from memory.
                    if self.index.borrow().get(&block).is_some_and(|l| l.log_index == loc.log_index) {
                        let partial = offset > 0 || offset.saturating_add(length) < u64::from(loc.len);
                        self.cache.borrow_mut().insert(block, read.clone(), partial);
                    }
                    return Ok(Some(read));
                }
                Err(ReadError::OutOfRange { .. }) if tries < 3 && self.index.borrow().get(&block).is_some_and(|l| l.log_index != loc.log_index) => tries += 1,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Deletes blocks; returns how many were stored. Durable when it returns (the tombstones
    /// are synced), so a delete reported to the SCM is never undone by a crash.
    pub async fn delete(&self, blocks: &[BlockId]) -> Result<usize, LogError> {
        let mut removed = 0;
        for &(container, local) in blocks {
            self.cache.borrow_mut().remove((container, local));
            let Some(loc) = self.index.borrow_mut().remove(&(container, local)) else { continue };
            // Made durable by the sync below, before this returns.
            let _ = self.wal.append_entry(self.next_index(), local | TOMBSTONE, &container.to_le_bytes())?;
            let (rec, tomb) = (record_bytes(loc.len), record_bytes(0));
            self.live_bytes.set(self.live_bytes.get().saturating_sub(rec));
            self.dead_bytes.set(self.dead_bytes.get() + rec + tomb);
            removed += 1;
        }
        if removed > 0 {
            self.wal.sync().await?;
        }
        Ok(removed)
    }

    /// The stored blocks and their lengths, in no order.
    pub fn blocks(&self) -> Vec<(BlockId, u64)> {
        self.index.borrow().iter().filter(|(_, l)| l.ready).map(|(k, l)| (*k, u64::from(l.len))).collect()
    }

    /// The stored blocks of one container, (local id, length), in no order.
    pub fn blocks_of(&self, container: u64) -> Vec<(u64, u64)> {
        self.index.borrow().iter().filter(|(k, l)| l.ready && k.0 == container).map(|(k, l)| (k.1, u64::from(l.len))).collect()
    }

    pub fn live_bytes(&self) -> u64 {
        self.live_bytes.get()
    }

    pub fn dead_bytes(&self) -> u64 {
        self.dead_bytes.get()
    }

    /// Whether a compaction is due: dead bytes at least the live bytes, and the log at least
    /// four segments long (so that its oldest quarter spans a segment a purge can delete).
    pub fn wants_compaction(&self) -> bool {
        let (live, dead) = (self.live_bytes.get(), self.dead_bytes.get());
        !self.compacting.get() && dead >= live && live + dead >= 4 * self.segment_bytes
    }

    /// Whether the log wants a spare segment prepared (see [`Wal::prepare_spare`]).
    pub fn needs_spare(&self) -> bool {
        self.wal.needs_spare()
    }

    pub async fn prepare_spare(&self) -> std::io::Result<()> {
        self.wal.prepare_spare().await
    }

    pub fn stats(&self) -> stratos_wal::WalStats {
        self.wal.stats()
    }

    /// Copies the live blocks of the oldest quarter of the log (by bytes) to the tail, then
    /// purges the log up to the end of that quarter (see the module docs). Puts, reads and
    /// deletes go on meanwhile.
    pub async fn compact(&self) -> Result<Compacted, LogError> {
        if self.compacting.replace(true) {
            return Ok(Compacted::default());
        }
        let _flag = Compacting(&self.compacting);
        let mut done = Compacted { dead_bytes_before: self.dead_bytes.get(), ..Compacted::default() };
        let first = self.wal.first_log_index();
        let next = self.wal.next_log_index().unwrap_or(first);
        let total: u64 = (first..next).filter_map(|i| self.wal.entry_len(i)).map(u64::from).sum();
        let mut cut = None;
        let mut seen = 0;
        for i in first..next {
            seen += u64::from(self.wal.entry_len(i).unwrap_or(0));
            if seen * 4 >= total {
                cut = Some(i);
                break;
            }
        }
        let Some(cut) = cut else { return Ok(done) };
        let cut_term = self.wal.entry_term(cut).unwrap_or(0);
        let mut live: Vec<(u64, BlockId)> = self.index.borrow().iter().filter(|(_, l)| l.log_index <= cut).map(|(k, l)| (l.log_index, *k)).collect();
        live.sort_unstable();
        let mut pending = 0;
        for (log_index, block) in live {
            let (bytes, payload) = self.wal.read_entry_in_place(log_index).await?;
            let data = &bytes[payload];
            // Deleted while it was read: the copy would resurrect it. No await lies between
            // this check and the append, so nothing can slip in.
            let Some(loc) = self.index.borrow().get(&block).copied().filter(|l| l.log_index == log_index) else { continue };
            let new_index = self.next_index();
            // Made durable by the syncs below, before the purge is appended.
            let _ = self.wal.append_entry(new_index, block.1, data)?;
            self.index.borrow_mut().insert(block, Loc { log_index: new_index, ..loc });
            done.blocks_copied += 1;
            done.bytes_copied += u64::from(loc.len);
            pending += data.len();
            if pending >= COMPACT_BATCH_BYTES {
                self.wal.sync().await?;
                pending = 0;
            }
        }
        // The copies are durable before the purge is even appended: a crash in between keeps
        // both copies, and the open keeps the later.
        self.wal.sync().await?;
        let t = self.wal.purge(LogId { log_index: cut, term: cut_term })?;
        self.wal.wait_durable(t).await?;
        self.recount();
        Ok(done)
    }
}
