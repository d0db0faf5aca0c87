//! A simulated disk for crash tests: it separates bytes *written* from bytes *durable*.
//!
//! Every write lands in the file's current image and in a list of pending writes; `sync_data`
//! makes the current image durable. [`SimDisk::crash`] builds the post-crash disk from the durable
//! image plus, for each pending write, sector by sector and chosen by a seeded generator: nothing,
//! all of it, a torn prefix of it, or all of it with a flipped bit. Since sectors are chosen
//! independently, later sectors of a write can land while earlier ones do not (reordering).
//! Directory changes not yet made durable by `sync_dir` (creates and removes) may or may not
//! survive. [`SimDisk::set_power_loss_after`] makes every operation after the N-th fail, which is
//! how a test stops the WAL at an exact crash point.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::rc::Rc;

use crate::storage::{SegmentFile, Storage};

/// A small deterministic generator (xorshift64*), so a failing seed replays exactly.
#[derive(Debug, Clone)]
pub struct SimRng(u64);

impl SimRng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

#[derive(Debug, Default, Clone)]
struct SimFileState {
    current: Vec<u8>,
    durable: Vec<u8>,
    pending: Vec<(u64, Vec<u8>)>,
}

#[derive(Debug)]
struct SimState {
    sector_bytes: u64,
    /// Files by name as the running process sees the directory.
    files: BTreeMap<String, SimFileState>,
    /// Files removed since the last `sync_dir`: a crash may bring them back.
    removed: BTreeMap<String, SimFileState>,
    durable_names: BTreeSet<String>,
    ops: u64,
    power_loss_after_ops: Option<u64>,
    fail_next_sync: bool,
    /// While set, `sync_data` does not return (see [`SimDisk::hold_syncs`]).
    hold_syncs: bool,
    held: Vec<std::task::Waker>,
}

/// A simulated directory of files; cheap to clone (shared handle).
#[derive(Debug, Clone)]
pub struct SimDisk(Rc<RefCell<SimState>>);

/// An open file of a [`SimDisk`].
#[derive(Debug, Clone)]
pub struct SimFile {
    disk: SimDisk,
    name: String,
}

fn power_loss() -> io::Error {
    io::Error::other("simulated power loss")
}

impl SimDisk {
    pub fn new(sector_bytes: u64) -> Self {
        Self(Rc::new(RefCell::new(SimState {
            sector_bytes,
            files: BTreeMap::new(),
            removed: BTreeMap::new(),
            durable_names: BTreeSet::new(),
            ops: 0,
            power_loss_after_ops: None,
            fail_next_sync: false,
            hold_syncs: false,
            held: Vec::new(),
        })))
    }

    /// Every storage operation after the first `ops` (counted from now) fails, as if the machine
    /// lost power there. `crash` clears it.
    pub fn set_power_loss_after(&self, ops: u64) {
        let mut s = self.0.borrow_mut();
        s.power_loss_after_ops = Some(s.ops + ops);
    }

    /// True once the power-loss budget is spent: the next operation would fail.
    pub fn powered_off(&self) -> bool {
        let s = self.0.borrow();
        s.power_loss_after_ops.is_some_and(|limit| s.ops >= limit)
    }

    /// Operations done so far (to enumerate crash points).
    pub fn ops(&self) -> u64 {
        self.0.borrow().ops
    }

    /// The next `sync_data` returns an error (the disk reported EIO) without syncing.
    pub fn fail_next_sync(&self) {
        self.0.borrow_mut().fail_next_sync = true;
    }

    /// Holds every `sync_data` (it stays pending) until [`SimDisk::release_syncs`]: lets a test
    /// act while a flush is between its write and its fdatasync.
    pub fn hold_syncs(&self) {
        self.0.borrow_mut().hold_syncs = true;
    }

    pub fn release_syncs(&self) {
        let held = {
            let mut s = self.0.borrow_mut();
            s.hold_syncs = false;
            std::mem::take(&mut s.held)
        };
        held.into_iter().for_each(|w| w.wake());
    }

    /// Names of the files as the running process sees them.
    pub fn file_names(&self) -> Vec<String> {
        self.0.borrow().files.keys().cloned().collect()
    }

    /// Length of a file's durable image (0 if absent).
    pub fn file_len(&self, name: &str) -> usize {
        self.0.borrow().files.get(name).map_or(0, |f| f.current.len())
    }

    /// Flips one bit of a file, in both its current and durable image (bit rot on the medium).
    pub fn flip_bit(&self, name: &str, byte_offset: usize, bit: u8) {
        let mut s = self.0.borrow_mut();
        let f = s.files.get_mut(name).expect("flip_bit on a missing file");
        f.current[byte_offset] ^= 1 << bit;
        f.durable[byte_offset] ^= 1 << bit;
    }

    /// Power loss: rebuilds the disk as it could be found after a crash. Returns a line that
    /// describes what happened to the pending writes (for test failure messages).
    pub fn crash(&self, rng: &mut SimRng) -> String {
        let mut s = self.0.borrow_mut();
        let sector = s.sector_bytes as usize;
        let mut log = String::new();
        let removed = std::mem::take(&mut s.removed);
        let removed_names: BTreeSet<String> = removed.keys().cloned().collect();
        let mut all: BTreeMap<String, SimFileState> = removed;
        all.extend(std::mem::take(&mut s.files));
        let mut survivors = BTreeMap::new();
        for (name, f) in all {
            let in_durable = s.durable_names.contains(&name);
            let was_removed = removed_names.contains(&name);
            let survives = match (in_durable, was_removed) {
                (true, false) => true,
                // A create or a remove that no sync_dir made durable may go either way.
                (false, false) | (true, true) => rng.below(2) == 0,
                (false, true) => false,
            };
            if !survives {
                log.push_str(&format!("{name}: vanished; "));
                continue;
            }
            let mut image = f.durable.clone();
            for (pos, bytes) in &f.pending {
                for (i, chunk) in bytes.chunks(sector).enumerate() {
                    let at = *pos as usize + i * sector;
                    match rng.below(8) {
                        0..=2 => {}
                        3..=5 => image[at..at + chunk.len()].copy_from_slice(chunk),
                        6 => {
                            let n = rng.below(chunk.len() as u64) as usize;
                            image[at..at + n].copy_from_slice(&chunk[..n]);
                        }
                        _ => {
                            image[at..at + chunk.len()].copy_from_slice(chunk);
                            let b = rng.below(chunk.len() as u64) as usize;
                            image[at + b] ^= 1 << rng.below(8);
                        }
                    }
                }
            }
            survivors.insert(name, SimFileState { current: image.clone(), durable: image, pending: vec![] });
        }
        // A removal that was not made durable may be undone; the files map now holds exactly the
        // survivors, removed or not, and the directory is durable as found.
        s.durable_names = survivors.keys().cloned().collect();
        s.files = survivors;
        s.ops = 0;
        s.power_loss_after_ops = None;
        s.fail_next_sync = false;
        log
    }

    fn tick(&self) -> io::Result<()> {
        let mut s = self.0.borrow_mut();
        s.ops += 1;
        match s.power_loss_after_ops {
            Some(limit) if s.ops > limit => Err(power_loss()),
            _ => Ok(()),
        }
    }
}

impl Storage for SimDisk {
    type File = SimFile;

    fn sector_bytes(&self) -> u64 {
        self.0.borrow().sector_bytes
    }

    fn describe(&self, name: &str) -> String {
        format!("sim:{name}")
    }

    async fn list(&self) -> io::Result<Vec<String>> {
        self.tick()?;
        Ok(self.file_names())
    }

    async fn create(&self, name: &str, size_bytes: u64) -> io::Result<SimFile> {
        self.tick()?;
        let mut s = self.0.borrow_mut();
        if s.files.contains_key(name) {
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, name.to_string()));
        }
        let zeros = vec![0u8; size_bytes as usize];
        s.removed.remove(name);
        s.files.insert(
            name.to_string(),
            SimFileState { current: zeros.clone(), durable: zeros, pending: vec![] },
        );
        Ok(SimFile { disk: self.clone(), name: name.to_string() })
    }

    async fn open(&self, name: &str) -> io::Result<SimFile> {
        self.tick()?;
        if !self.0.borrow().files.contains_key(name) {
            return Err(io::Error::new(io::ErrorKind::NotFound, name.to_string()));
        }
        Ok(SimFile { disk: self.clone(), name: name.to_string() })
    }

    async fn remove(&self, name: &str) -> io::Result<()> {
        self.tick()?;
        let mut s = self.0.borrow_mut();
        let f = s
            .files
            .remove(name)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, name.to_string()))?;
        s.removed.insert(name.to_string(), f);
        Ok(())
    }

    /// Modelled as a create of `to` (with the file's contents) and a remove of `from`, neither
    /// durable before `sync_dir`: a crash may keep either name, both or neither, which covers
    /// every outcome a real rename(2) can have.
    async fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        self.tick()?;
        let mut s = self.0.borrow_mut();
        if s.files.contains_key(to) {
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, to.to_string()));
        }
        let f = s.files.remove(from).ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, from.to_string()))?;
        s.removed.insert(from.to_string(), f.clone());
        s.removed.remove(to);
        s.files.insert(to.to_string(), f);
        Ok(())
    }

    async fn sync_dir(&self) -> io::Result<()> {
        self.tick()?;
        let mut s = self.0.borrow_mut();
        s.durable_names = s.files.keys().cloned().collect();
        s.removed.clear();
        Ok(())
    }
}

impl SimFile {
    fn with<R>(&self, f: impl FnOnce(&mut SimFileState) -> R) -> io::Result<R> {
        let mut s = self.disk.0.borrow_mut();
        let st = s
            .files
            .get_mut(&self.name)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, self.name.clone()))?;
        Ok(f(st))
    }
}

impl SegmentFile for SimFile {
    async fn size(&self) -> io::Result<u64> {
        self.disk.tick()?;
        self.with(|f| f.current.len() as u64)
    }

    async fn read_at(&self, pos: u64, len: usize) -> io::Result<Vec<u8>> {
        self.disk.tick()?;
        self.with(|f| {
            let start = (pos as usize).min(f.current.len());
            let end = (start + len).min(f.current.len());
            f.current[start..end].to_vec()
        })
    }

    async fn write_at(&self, pos: u64, data: &[u8]) -> io::Result<()> {
        self.disk.tick()?;
        let sector = self.disk.sector_bytes();
        assert!(pos % sector == 0 && data.len() as u64 % sector == 0, "unaligned write");
        self.with(|f| {
            let end = pos as usize + data.len();
            if end > f.current.len() {
                return Err(io::Error::other("write past the end of a segment file"));
            }
            f.current[pos as usize..end].copy_from_slice(data);
            f.pending.push((pos, data.to_vec()));
            Ok(())
        })?
    }

    async fn sync_data(&self) -> io::Result<()> {
        std::future::poll_fn(|cx| {
            let mut s = self.disk.0.borrow_mut();
            if s.hold_syncs {
                s.held.push(cx.waker().clone());
                std::task::Poll::Pending
            } else {
                std::task::Poll::Ready(())
            }
        })
        .await;
        self.disk.tick()?;
        {
            let mut s = self.disk.0.borrow_mut();
            if s.fail_next_sync {
                s.fail_next_sync = false;
                return Err(io::Error::other("simulated fdatasync EIO"));
            }
        }
        self.with(|f| {
            f.durable = f.current.clone();
            f.pending.clear();
        })
    }
}
