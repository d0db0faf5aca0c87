//! Production storage: glommio `DmaFile` (O_DIRECT, io_uring) in one directory.
//!
//! Writes bypass the page cache, so `fdatasync` only has to flush the device cache and the file
//! metadata. Segment files are zero-filled when created (not just fallocated): on ext4 and XFS a
//! write into an unwritten extent turns every fdatasync into a journal commit, which
//! ../shared/FINDINGS.md measured as twice the cost (~400 µs vs ~200 µs p50 on this host class).
//!
//! glommio does not expose io_uring's `IOSQE_IO_LINK`, so a batch's write and its fdatasync are
//! two submissions awaited in order; the extra ring round trip costs microseconds against a
//! fdatasync of hundreds.

use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use glommio::io::{Directory, DmaFile, OpenOptions};

use crate::constants::{SECTOR_BYTES_MIN, ZERO_FILL_CHUNK_BYTES};
use crate::storage::{SegmentFile, Storage};

/// A directory of segment files on a real file system.
#[derive(Debug)]
pub struct DmaStorage {
    dir: PathBuf,
    sector_bytes: u64,
}

/// An open segment file.
#[derive(Debug)]
pub struct DmaSegment {
    file: DmaFile,
}

fn to_io(e: glommio::GlommioError<()>) -> io::Error {
    io::Error::other(e.to_string())
}

impl DmaStorage {
    /// Opens (creating if needed) `dir`. Must run inside a glommio executor. The write alignment
    /// is the larger of 512 and what O_DIRECT on this file system asks for.
    pub async fn open(dir: impl AsRef<Path>) -> io::Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir)?;
        let probe_path = dir.join(".alignment-probe");
        let probe = DmaFile::create(&probe_path).await.map_err(to_io)?;
        let sector_bytes = probe.alignment().max(SECTOR_BYTES_MIN);
        probe.close().await.map_err(to_io)?;
        std::fs::remove_file(&probe_path)?;
        Ok(Self { dir, sector_bytes })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Storage for DmaStorage {
    type File = DmaSegment;

    fn sector_bytes(&self) -> u64 {
        self.sector_bytes
    }

    fn describe(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    async fn list(&self) -> io::Result<Vec<String>> {
        // A blocking readdir, done once when the log opens: not on any hot path.
        let mut names = Vec::new();
        for e in std::fs::read_dir(&self.dir)? {
            let e = e?;
            if e.file_type()?.is_file() {
                if let Some(n) = e.file_name().to_str() {
                    names.push(n.to_string());
                }
            }
        }
        Ok(names)
    }

    async fn create(&self, name: &str, size_bytes: u64) -> io::Result<DmaSegment> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .dma_open(self.dir.join(name))
            .await
            .map_err(to_io)?;
        file.pre_allocate(size_bytes, false).await.map_err(to_io)?;
        let seg = DmaSegment { file };
        // One DMA buffer of zeros, zeroed once and written at every chunk of the file: the
        // general `write_at` copies its data into a fresh DMA buffer per write, which for a
        // 64 MiB segment was 64 MiB of `memcpy` of zeros (half of the instructions of an OM's
        // start and its first 2,000 keys under callgrind: `bench/om_instructions.sh`).
        let mut zeros = seg.file.alloc_dma_buffer(ZERO_FILL_CHUNK_BYTES);
        zeros.as_bytes_mut().fill(0);
        let zeros = Rc::new(zeros);
        let mut pos = 0u64;
        while pos < size_bytes {
            let len = (size_bytes - pos).min(ZERO_FILL_CHUNK_BYTES as u64) as usize;
            let written = if len == ZERO_FILL_CHUNK_BYTES { seg.file.write_rc_at(zeros.clone(), pos).await.map_err(to_io)? } else { 0 };
            if written < len {
                // The file's last piece, or what a short write left: the general path (which
                // checks that O_DIRECT's progress stays aligned).
                if written as u64 % seg.file.alignment() != 0 {
                    return Err(io::Error::new(io::ErrorKind::WriteZero, format!("short write of {written} bytes at offset {pos}")));
                }
                seg.write_at(pos + written as u64, &zeros.as_bytes()[written..len]).await?;
            }
            pos += len as u64;
        }
        seg.sync_data().await?;
        Ok(seg)
    }

    async fn open(&self, name: &str) -> io::Result<DmaSegment> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .dma_open(self.dir.join(name))
            .await
            .map_err(to_io)?;
        Ok(DmaSegment { file })
    }

    async fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        // A blocking rename(2): once per segment (64 MiB of log), a metadata-only syscall.
        std::fs::rename(self.dir.join(from), self.dir.join(to))
    }

    async fn remove(&self, name: &str) -> io::Result<()> {
        glommio::io::remove(self.dir.join(name)).await.map_err(to_io)
    }

    async fn sync_dir(&self) -> io::Result<()> {
        let d = Directory::open(&self.dir).await.map_err(to_io)?;
        d.sync().await.map_err(to_io)?;
        d.close().await.map_err(to_io)
    }
}

impl SegmentFile for DmaSegment {
    async fn size(&self) -> io::Result<u64> {
        self.file.file_size().await.map_err(to_io)
    }

    async fn read_at(&self, pos: u64, len: usize) -> io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(len);
        self.read_into(pos, len, &mut out).await?;
        Ok(out)
    }

    async fn read_into(&self, pos: u64, len: usize, out: &mut Vec<u8>) -> io::Result<()> {
        // glommio reads into a buffer from the executor's registered io memory when one fits
        // (the OM gives it 1 MiB), and otherwise allocates one from the heap per read. A heap
        // buffer of megabytes is fresh memory every time (the allocator returns it to the
        // kernel between reads), so the kernel zeroed every page of it before the read landed:
        // with 4 MiB reads that zeroing was ~22% of the CPU of a restart's recovery and log
        // replay (perf: clear_page_erms under io_uring submission). 256 KiB pieces fit the
        // registered memory and reuse it.
        //
        // READS_IN_FLIGHT pieces are read at once: one after another, a read waited for the
        // device's latency per piece, and a restart's recovery (every segment since the last
        // purge, 384 MiB per group after a 6M-key load) was bound by that, not by the device's
        // bandwidth: 0.42-0.65 s per group with one piece at a time, 0.30-0.37 s with eight
        // (three: 0.40-0.46 s). Pieces beyond the registered memory get heap buffers of 256 KiB,
        // freed at once and reused by the allocator (peak RSS of that restart +2%).
        const CHUNK: usize = 256 << 10;
        const READS_IN_FLIGHT: usize = 8;
        out.reserve(len);
        let start = out.len();
        while out.len() - start < len {
            let base = pos + (out.len() - start) as u64;
            let rest = len - (out.len() - start);
            let reads = (0..READS_IN_FLIGHT)
                .map(|i| i * CHUNK)
                .take_while(|at| *at < rest)
                .map(|at| self.file.read_at(base + at as u64, (rest - at).min(CHUNK)));
            for (i, r) in futures_util::future::join_all(reads).await.into_iter().enumerate() {
                let r = r.map_err(to_io)?;
                if r.is_empty() {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "read past the end"));
                }
                let want = (rest - i * CHUNK).min(CHUNK);
                out.extend_from_slice(&r[..r.len().min(want)]);
                if r.len() < want {
                    // Short (the end of the file): the next round reads on from here.
                    break;
                }
            }
        }
        Ok(())
    }

    async fn write_at(&self, pos: u64, data: &[u8]) -> io::Result<()> {
        let mut done = 0usize;
        while done < data.len() {
            let rest = &data[done..];
            let mut buf = self.file.alloc_dma_buffer(rest.len());
            buf.as_bytes_mut()[..rest.len()].copy_from_slice(rest);
            let written = self.file.write_at(buf, pos + done as u64).await.map_err(to_io)?;
            // O_DIRECT progress must stay aligned; anything else is an error, not a retry loop.
            if written == 0 || (written < rest.len() && written as u64 % self.file.alignment() != 0) {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    format!("short write of {written} bytes at offset {}", pos + done as u64),
                ));
            }
            done += written;
        }
        Ok(())
    }

    async fn sync_data(&self) -> io::Result<()> {
        self.file.fdatasync().await.map_err(to_io)
    }
}
