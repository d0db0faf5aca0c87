//! The storage plug point: a directory of fixed-size segment files.
//!
//! Two implementations exist: [`crate::DmaStorage`] (glommio `DmaFile`, O_DIRECT, io_uring) for
//! production, and [`crate::SimDisk`] for crash tests. The traits use `async fn` without `Send`
//! bounds on purpose: a WAL lives on one pinned executor and never crosses threads.
//!
//! # What an implementation must guarantee
//! - `create` returns a file of exactly `size_bytes` whose every byte reads as zero and whose
//!   zeros (and size) are durable once `create` returns. The *name* is durable only after the
//!   next `sync_dir`.
//! - `write_at` is called only with `pos` and `data.len()` multiples of [`Storage::sector_bytes`];
//!   it writes all of `data` or returns an error. Written bytes are durable only after
//!   `sync_data` returns `Ok`.
//! - `sync_data` is `fdatasync`: on `Ok`, every byte written to that file before the call is
//!   durable. On `Err` nothing can be assumed about those bytes (the WAL poisons itself).
//! - `remove`, `create` and `rename` take effect in the directory durably only after `sync_dir`
//!   returns. `rename` moves a file to a name that does not exist; handles opened under the old
//!   name need not follow it (open the new name).
#![allow(async_fn_in_trait)] // single-threaded by design: no Send bounds wanted.

use std::io;

/// A directory of segment files.
pub trait Storage {
    type File: SegmentFile;

    /// Alignment of writes, at least [`crate::constants::SECTOR_BYTES_MIN`].
    fn sector_bytes(&self) -> u64;
    /// A human-readable location of `name`, used in error messages (a path for real files).
    fn describe(&self, name: &str) -> String;
    /// Names of the files in the directory, in no particular order.
    async fn list(&self) -> io::Result<Vec<String>>;
    async fn create(&self, name: &str, size_bytes: u64) -> io::Result<Self::File>;
    async fn open(&self, name: &str) -> io::Result<Self::File>;
    async fn remove(&self, name: &str) -> io::Result<()>;
    async fn rename(&self, from: &str, to: &str) -> io::Result<()>;
    async fn sync_dir(&self) -> io::Result<()>;
}

/// One open segment file.
pub trait SegmentFile {
    async fn size(&self) -> io::Result<u64>;
    /// Reads exactly `len` bytes at `pos` (the caller never reads past the end).
    async fn read_at(&self, pos: u64, len: usize) -> io::Result<Vec<u8>>;
    /// [`SegmentFile::read_at`], appending to `out`: a caller that reads many large pieces
    /// reuses one buffer instead of fresh memory per read.
    async fn read_into(&self, pos: u64, len: usize, out: &mut Vec<u8>) -> io::Result<()> {
        out.extend_from_slice(&self.read_at(pos, len).await?);
        Ok(())
    }
    async fn write_at(&self, pos: u64, data: &[u8]) -> io::Result<()>;
    async fn sync_data(&self) -> io::Result<()>;
}
