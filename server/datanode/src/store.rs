//! Block files of one datanode.
//!
//! Layout: `containers/<container id>/<local id>.part` while a block is written, renamed to
//! `<local id>.block` by `putBlock` after its fdatasync (then the directory is fsynced): a
//! `.block` file is complete and durable; a `.part` file is an unfinished write that no reader
//! sees (a restart leaves it; the SCM's delete or a rewrite from offset 0 removes it).
//!
//! A block file is a sequence of frames, frame `i` at byte `i × FRAME_BYTES`:
//! `crc32(data) u32 LE ‖ data length u32 LE ‖ data` with `FRAME_DATA` data bytes in every frame
//! but the last. Every read verifies the crc of each frame it touches; a mismatch is an error
//! naming the file and offset, never silently returned data. The block's length follows from
//! the file size and the last frame's length field.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use glommio::io::{BufferedFile, Directory};

pub const FRAME_DATA: u64 = 64 * 1024;
pub const FRAME_HEADER: u64 = 8;
pub const FRAME_BYTES: u64 = FRAME_DATA + FRAME_HEADER;
/// Bytes in one write or read call.
pub const CALL_BYTES_MAX: u64 = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    BadRequest(String),
    #[error("block {0}/{1} not found")]
    NotFound(u64, u64),
    #[error("{file}: frame at offset {offset} fails its checksum")]
    Corrupt { file: String, offset: u64 },
    #[error("{op} {file}: {source}")]
    Io { op: &'static str, file: String, source: std::io::Error },
}

fn io<'a>(op: &'static str, file: &'a Path) -> impl FnOnce(glommio::GlommioError<()>) -> StoreError + 'a {
    move |e| StoreError::Io { op, file: file.display().to_string(), source: e.into() }
}

struct Writing {
    file: BufferedFile,
    path: PathBuf,
    length: u64,
}

#[derive(Default)]
pub struct Store {
    root: PathBuf,
    /// Blocks being written, between calls. A call takes its block's entry out while it runs
    /// and marks the block busy, so a concurrent call on the same block is refused (never a
    /// second writer on one file).
    writing: RefCell<HashMap<(u64, u64), Writing>>,
    busy: RefCell<std::collections::HashSet<(u64, u64)>>,
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
        f.debug_struct("Store").field("root", &self.root).finish()
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

impl Store {
    pub fn new(root: PathBuf) -> Self {
        Self { root, writing: RefCell::default(), busy: RefCell::default() }
    }

    fn claim(&self, container: u64, local: u64) -> Result<Busy<'_>, StoreError> {
        if !self.busy.borrow_mut().insert((container, local)) {
            return Err(StoreError::BadRequest(format!("block {container}/{local} is busy with another call")));
        }
        Ok(Busy(self, (container, local)))
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
        let dir = self.container_dir(container);
        if dir.is_dir() {
            return Ok(());
        }
        let parent = self.root.join("containers");
        std::fs::create_dir_all(&dir).map_err(|source| StoreError::Io { op: "creating", file: dir.display().to_string(), source })?;
        let d = Directory::open(&parent).await.map_err(io("opening", &parent))?;
        d.sync().await.map_err(io("syncing", &parent))?;
        Ok(())
    }

    /// Appends `data` at `offset` (the block's current length, on a frame boundary).
    pub async fn write(&self, container: u64, local: u64, offset: u64, data: &[u8]) -> Result<(), StoreError> {
        if data.len() as u64 > CALL_BYTES_MAX {
            return Err(StoreError::BadRequest(format!("{} bytes in one write, at most {CALL_BYTES_MAX}", data.len())));
        }
        if offset % FRAME_DATA != 0 {
            return Err(StoreError::BadRequest(format!("write at offset {offset}: writes start at multiples of {FRAME_DATA}")));
        }
        if self.block_path(container, local).exists() {
            return Err(StoreError::BadRequest(format!("block {container}/{local} is already complete")));
        }
        let _busy = self.claim(container, local)?;
        let taken = self.writing.borrow_mut().remove(&(container, local));
        let mut state = match taken {
            Some(s) => s,
            None if offset == 0 => {
                self.ensure_container(container).await?;
                let path = self.part_path(container, local);
                let file = BufferedFile::create(&path).await.map_err(io("creating", &path))?;
                Writing { file, path, length: 0 }
            }
            None => return Err(StoreError::BadRequest(format!("write at offset {offset} of block {container}/{local}, which has no write in progress (start at 0)"))),
        };
        if offset != state.length || state.length % FRAME_DATA != 0 {
            let written = state.length;
            self.writing.borrow_mut().insert((container, local), state);
            return Err(StoreError::BadRequest(format!("write at offset {offset}; block {container}/{local} has {written} bytes written")));
        }
        let buf = frames(data);
        let at = offset / FRAME_DATA * FRAME_BYTES;
        let n = buf.len();
        // An I/O error drops the write in progress (the client starts the block again or moves on).
        let wrote = state.file.write_at(buf, at).await.map_err(io("writing", &state.path))?;
        if wrote != n {
            return Err(StoreError::Io { op: "writing", file: state.path.display().to_string(), source: std::io::Error::other(format!("short write: {wrote} of {n}")) });
        }
        state.length += data.len() as u64;
        self.writing.borrow_mut().insert((container, local), state);
        Ok(())
    }

    /// Completes a block of `length` bytes: fdatasync, rename to `.block`, fsync the directory.
    /// Only then is the block durable and readable. A repeat on a complete block of that length
    /// is a success.
    pub async fn finish(&self, container: u64, local: u64, length: u64) -> Result<(), StoreError> {
        let final_path = self.block_path(container, local);
        let _busy = self.claim(container, local)?;
        let taken = self.writing.borrow_mut().remove(&(container, local));
        let Some(state) = taken else {
            if length == 0 && !final_path.exists() {
                // An empty block: nothing was written; make an empty, durable file.
                self.ensure_container(container).await?;
                let f = BufferedFile::create(&final_path).await.map_err(io("creating", &final_path))?;
                f.fdatasync().await.map_err(io("syncing", &final_path))?;
                f.close().await.map_err(io("closing", &final_path))?;
                return self.sync_dir(container).await;
            }
            return match self.length(container, local).await {
                Ok(l) if l == length => Ok(()),
                Ok(l) => Err(StoreError::BadRequest(format!("block {container}/{local} is complete with {l} bytes, not {length}"))),
                Err(StoreError::NotFound(..)) => Err(StoreError::BadRequest(format!("block {container}/{local} has no write in progress"))),
                Err(e) => Err(e),
            };
        };
        if state.length != length {
            let written = state.length;
            self.writing.borrow_mut().insert((container, local), state);
            return Err(StoreError::BadRequest(format!("putBlock says {length} bytes; block {container}/{local} has {written} written")));
        }
        // Durability point of a block: its bytes, then its name.
        state.file.fdatasync().await.map_err(io("syncing", &state.path))?;
        let path = state.path.clone();
        state.file.close().await.map_err(io("closing", &path))?;
        std::fs::rename(&path, &final_path).map_err(|source| StoreError::Io { op: "renaming", file: path.display().to_string(), source })?;
        self.sync_dir(container).await
    }

    async fn sync_dir(&self, container: u64) -> Result<(), StoreError> {
        let dir = self.container_dir(container);
        let d = Directory::open(&dir).await.map_err(io("opening", &dir))?;
        d.sync().await.map_err(io("syncing", &dir))
    }

    /// The length of a complete block.
    pub async fn length(&self, container: u64, local: u64) -> Result<u64, StoreError> {
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

    /// Reads up to `length` bytes at `offset` of a complete block, verifying every frame it
    /// touches. Returns the bytes and the block's length.
    pub async fn read(&self, container: u64, local: u64, offset: u64, length: u64) -> Result<(Vec<u8>, u64), StoreError> {
        if length > CALL_BYTES_MAX {
            return Err(StoreError::BadRequest(format!("{length} bytes in one read, at most {CALL_BYTES_MAX}")));
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
                return Ok((Vec::new(), block_len));
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
            Ok((out, block_len))
        }
        .await;
        let _ = f.close().await;
        r
    }

    /// Deletes blocks (complete or not); a missing one is already deleted. Each touched
    /// container directory is fsynced once.
    pub async fn delete(&self, blocks: &[(u64, u64)]) -> Result<usize, StoreError> {
        let mut removed = 0;
        let mut dirs = std::collections::BTreeSet::new();
        for &(c, l) in blocks {
            self.writing.borrow_mut().remove(&(c, l));
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
        for c in dirs {
            self.sync_dir(c).await?;
        }
        Ok(removed)
    }
}
