//! The datanode's container log of small blocks on the simulated disk of stratos-wal: crashes at
//! any point (unsynced writes dropped, torn, reordered by sector, with bit flips in the torn
//! part), compactions racing puts and deletes, and bit rot on the medium.
//!
//! After every crash and reopen: every acknowledged put that no delete touched reads back byte
//! for byte, every acknowledged delete stays deleted, and nothing else appears except blocks
//! whose put or delete was under way (with their exact bytes).

use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use futures_lite::future::{block_on, yield_now};
use proptest::prelude::*;
use stratos_datanode::blocklog::{BlockLog, LogError};
use stratos_wal::{OpenError, ReadError, SegmentFile, SimDisk, SimFile, SimRng, Storage, WalConfig};

const SECTOR: u64 = 512;

fn config() -> WalConfig {
    // Small segments: rollover, sealing and purging of whole segments happen constantly.
    WalConfig { segment_bytes: 16 * 1024, payload_bytes_max: 2048 }
}

/// The simulated disk with a yield before every operation, so that concurrent puts, deletes
/// and a compaction interleave at every await as they would on io_uring.
#[derive(Clone)]
struct Yielding(SimDisk);
struct YFile(SimFile);

impl Storage for Yielding {
    type File = YFile;
    fn sector_bytes(&self) -> u64 {
        self.0.sector_bytes()
    }
    fn describe(&self, name: &str) -> String {
        self.0.describe(name)
    }
    async fn list(&self) -> std::io::Result<Vec<String>> {
        yield_now().await;
        self.0.list().await
    }
    async fn create(&self, name: &str, size_bytes: u64) -> std::io::Result<YFile> {
        yield_now().await;
        self.0.create(name, size_bytes).await.map(YFile)
    }
    async fn open(&self, name: &str) -> std::io::Result<YFile> {
        yield_now().await;
        self.0.open(name).await.map(YFile)
    }
    async fn remove(&self, name: &str) -> std::io::Result<()> {
        yield_now().await;
        self.0.remove(name).await
    }
    async fn rename(&self, from: &str, to: &str) -> std::io::Result<()> {
        yield_now().await;
        self.0.rename(from, to).await
    }
    async fn sync_dir(&self) -> std::io::Result<()> {
        yield_now().await;
        self.0.sync_dir().await
    }
}

impl SegmentFile for YFile {
    async fn size(&self) -> std::io::Result<u64> {
        self.0.size().await
    }
    async fn read_at(&self, pos: u64, len: usize) -> std::io::Result<Vec<u8>> {
        yield_now().await;
        self.0.read_at(pos, len).await
    }
    async fn write_at(&self, pos: u64, data: &[u8]) -> std::io::Result<()> {
        yield_now().await;
        self.0.write_at(pos, data).await
    }
    async fn sync_data(&self) -> std::io::Result<()> {
        yield_now().await;
        self.0.sync_data().await
    }
}

/// Blocks of three containers, mixed in the log.
fn id(local: u64) -> (u64, u64) {
    (local % 3 + 1, local)
}

/// A block's bytes: a xorshift stream seeded by its id, so no block's bytes appear in another's.
fn block(local: u64, size: usize) -> Vec<u8> {
    let mut x = local.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..size)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[derive(Debug, Clone)]
enum Op {
    /// `n` puts at once (they share flushes), of blocks of `size` bytes.
    Put { n: usize, size: usize },
    /// Deletes the `pick`-th stored block (modulo how many there are), and another put at once.
    Delete { pick: usize },
    /// A compaction with a put and a delete running beside it.
    Compact { pick: usize },
    CrashAfter { ops: u64, seed: u64 },
    Reopen,
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1usize..5, 0usize..1500).prop_map(|(n, size)| Op::Put { n, size }),
        4 => any::<usize>().prop_map(|pick| Op::Delete { pick }),
        2 => any::<usize>().prop_map(|pick| Op::Compact { pick }),
        2 => (0u64..40, any::<u64>()).prop_map(|(ops, seed)| Op::CrashAfter { ops, seed }),
        1 => Just(Op::Reopen),
    ]
}

#[derive(Default, Debug)]
struct Model {
    /// Acknowledged and not touched by a delete since: must survive, byte for byte.
    acked: BTreeMap<u64, Vec<u8>>,
    /// A put or a delete was under way without an answer: may be present (exactly) or not.
    maybe: BTreeMap<u64, Vec<u8>>,
    /// Acknowledged deletes: must stay gone.
    gone: BTreeSet<u64>,
}

async fn put(log: &BlockLog<Yielding>, model: &std::cell::RefCell<Model>, local: u64, size: usize) {
    let data = block(local, size);
    model.borrow_mut().maybe.insert(local, data.clone());
    if log.put(id(local), &data).await.is_ok() {
        let mut m = model.borrow_mut();
        m.maybe.remove(&local);
        m.acked.insert(local, data);
    }
}

async fn delete(log: &BlockLog<Yielding>, model: &std::cell::RefCell<Model>, local: Option<u64>) {
    let Some(local) = local else { return };
    {
        let mut m = model.borrow_mut();
        if let Some(d) = m.acked.remove(&local) {
            m.maybe.insert(local, d);
        }
    }
    if log.delete(&[id(local)]).await.is_ok() {
        let mut m = model.borrow_mut();
        m.maybe.remove(&local);
        m.gone.insert(local);
    }
}

fn pick(model: &std::cell::RefCell<Model>, i: usize) -> Option<u64> {
    let m = model.borrow();
    (!m.acked.is_empty()).then(|| *m.acked.keys().nth(i % m.acked.len()).expect("in range"))
}

/// Checks a reopened log against the model, then makes the model what was found.
async fn check(log: &BlockLog<Yielding>, model: &std::cell::RefCell<Model>, what: &str) -> Result<(), TestCaseError> {
    let mut found = BTreeMap::new();
    for ((container, local), len) in log.blocks() {
        prop_assert_eq!(container, id(local).0);
        let data = log.get(id(local)).await.map_err(|e| TestCaseError::fail(format!("read {local}: {e} ({what})")))?.expect("listed").to_vec();
        prop_assert_eq!(data.len() as u64, len);
        found.insert(local, data);
    }
    let mut m = model.borrow_mut();
    for (local, data) in &m.acked {
        prop_assert!(found.get(local) == Some(data), "acknowledged block {} lost or changed ({})", local, what);
    }
    for (local, data) in &found {
        prop_assert!(!m.gone.contains(local), "deleted block {} came back ({})", local, what);
        prop_assert!(m.acked.get(local) == Some(data) || m.maybe.get(local) == Some(data), "block {} was never written with these bytes ({})", local, what);
    }
    let vanished: Vec<u64> = m.maybe.keys().filter(|l| !found.contains_key(l)).copied().collect();
    m.gone.extend(vanished);
    m.maybe.clear();
    m.acked = found;
    Ok(())
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    block_on(async {
        let disk = SimDisk::new(SECTOR);
        let mut log = Rc::new(BlockLog::open(Yielding(disk.clone()), config()).await.expect("fresh open").0);
        let model = std::cell::RefCell::new(Model::default());
        let mut next_local = 1u64;
        let mut seed = None;
        for op in ops {
            match op {
                Op::Put { n, size } => {
                    let locals: Vec<u64> = (0..n as u64).map(|i| next_local + i).collect();
                    next_local += n as u64;
                    futures_util::future::join_all(locals.into_iter().map(|l| put(&log, &model, l, size))).await;
                }
                Op::Delete { pick: i } => {
                    let victim = pick(&model, i);
                    let l = next_local;
                    next_local += 1;
                    futures_util::future::join(delete(&log, &model, victim), put(&log, &model, l, 300)).await;
                }
                Op::Compact { pick: i } => {
                    let victim = pick(&model, i);
                    let l = next_local;
                    next_local += 1;
                    let compact = async {
                        let _ = log.compact().await;
                    };
                    futures_util::future::join3(compact, delete(&log, &model, victim), put(&log, &model, l, 700)).await;
                }
                Op::CrashAfter { ops, seed: s } => {
                    disk.set_power_loss_after(ops);
                    seed = Some(s);
                }
                Op::Reopen => {}
            }
            if !(matches!(op, Op::Reopen) || disk.powered_off()) {
                continue;
            }
            let what = disk.crash(&mut SimRng::new(seed.take().unwrap_or(0)));
            drop(log);
            log = match BlockLog::open(Yielding(disk.clone()), config()).await {
                Ok((l, _)) => Rc::new(l),
                Err(e @ OpenError::Corrupt { .. }) => return Err(TestCaseError::fail(format!("a crash read as corruption: {e} ({what})"))),
                Err(e) => return Err(TestCaseError::fail(format!("reopen: {e} ({what})"))),
            };
            check(&log, &model, &what).await?;
        }
        // And a last clean restart.
        disk.crash(&mut SimRng::new(1));
        drop(log);
        let log = BlockLog::open(Yielding(disk.clone()), config()).await.map_err(|e| TestCaseError::fail(format!("final reopen: {e}")))?.0;
        check(&log, &model, "final restart").await
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]
    #[test]
    fn acknowledged_blocks_survive_any_crash_and_deleted_ones_stay_deleted(ops in proptest::collection::vec(op_strategy(), 1..40)) {
        run(ops)?;
    }
}

/// Compaction frees the space of deleted blocks: after deleting most blocks and compacting, the
/// log's segments hold about the live data, and every live block still reads back.
#[test]
fn compaction_frees_deleted_space_and_keeps_live_blocks() {
    block_on(async {
        let disk = SimDisk::new(SECTOR);
        let log = BlockLog::open(Yielding(disk.clone()), config()).await.expect("open").0;
        for l in 1..=200u64 {
            log.put(id(l), &block(l, 1000)).await.expect("put");
        }
        let total = |d: &SimDisk| d.file_names().iter().map(|n| d.file_len(n)).sum::<usize>();
        let before = total(&disk);
        let doomed: Vec<(u64, u64)> = (1..=200).filter(|l| l % 10 != 0).map(id).collect();
        assert_eq!(log.delete(&doomed).await.expect("delete"), doomed.len());
        assert_eq!(log.blocks_of(1).len(), 6, "blocks 30, 60, … 180 are in container 1");
        // Passes of a quarter each, as the datanode's upkeep runs them, until none is due.
        let mut passes = 0;
        while log.wants_compaction() {
            let done = log.compact().await.expect("compact");
            assert!(done.blocks_copied <= 20);
            passes += 1;
            assert!(passes < 20, "compaction does not converge: dead {} live {}", log.dead_bytes(), log.live_bytes());
        }
        assert!(passes >= 1, "{passes} passes");
        let after = total(&disk);
        assert!(after * 2 < before, "segments hold {after} bytes after compaction, {before} before");
        drop(log);
        let log = BlockLog::open(Yielding(disk.clone()), config()).await.expect("reopen").0;
        let mut have = log.blocks();
        have.sort_unstable();
        assert_eq!(have.iter().map(|((_, l), len)| (*l, *len)).collect::<BTreeSet<_>>(), (1..=20).map(|i| (i * 10, 1000)).collect::<BTreeSet<_>>());
        for l in (10..=200).step_by(10) {
            assert_eq!(log.get(id(l)).await.expect("read").as_deref(), Some(&block(l, 1000)[..]));
        }
    });
}

/// Bit rot: a flipped bit in a stored block is an error naming the file and offset on read
/// (never other bytes), and at the next open, refuses the log with the file and offset rather
/// than dropping what follows.
#[test]
fn a_flipped_bit_is_reported_with_file_and_offset() {
    block_on(async {
        let disk = SimDisk::new(SECTOR);
        let log = BlockLog::open(Yielding(disk.clone()), config()).await.expect("open").0;
        for l in 1..=3u64 {
            log.put(id(l), &block(l, 600)).await.expect("put");
        }
        // Find block 2's bytes in the segment and flip one of them.
        let name = disk.file_names().into_iter().find(|n| n.ends_with(".wal") && disk.file_len(n) > 0).expect("a segment");
        let image = disk.open(&name).await.expect("open").read_at(0, disk.file_len(&name)).await.expect("read");
        let needle = block(2, 600);
        let at = image.windows(64).position(|w| w == &needle[..64]).expect("block 2 on disk");
        disk.flip_bit(&name, at + 100, 3);
        match log.get(id(2)).await {
            Err(LogError::Read(ReadError::Corrupt { file, offset, .. })) => {
                assert!(file.contains(&name), "{file}");
                // The record: its header and the container id precede the block's bytes.
                assert_eq!(offset + 40, at as u64, "record at {offset}, data at {at}");
            }
            other => panic!("a flipped bit read as {other:?}"),
        }
        assert_eq!(log.get(id(1)).await.expect("block 1").as_deref(), Some(&block(1, 600)[..]));
        assert_eq!(log.get(id(3)).await.expect("block 3").as_deref(), Some(&block(3, 600)[..]));
        drop(log);
        match BlockLog::open(Yielding(disk.clone()), config()).await {
            Err(OpenError::Corrupt { file, offset, .. }) => assert!(file.contains(&name) && offset < at as u64, "{file} at {offset}"),
            other => panic!("a corrupt middle opened as {:?}", other.map(|(l, r)| (l.blocks().len(), r))),
        }
    });
}
