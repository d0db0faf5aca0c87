//! The WAL on real files through glommio's DmaFile (O_DIRECT, io_uring).

use std::rc::Rc;

use glommio::{LocalExecutorBuilder, Placement};
use stratos_wal::{DmaStorage, OpenError, Wal, WalConfig};

fn on_executor<F, Fut>(f: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    // A small io_memory: glommio locks 3x this per executor, and a non-root CI user shares an
    // 8 MiB memlock limit (../shared/FINDINGS.md). The WAL does not depend on the pool's size.
    LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(1 << 20)
        .name("wal-test")
        .spawn(f)
        .expect("spawn executor")
        .join()
        .expect("executor thread");
}

fn small() -> WalConfig {
    WalConfig { segment_bytes: 1 << 20, payload_bytes_max: 64 << 10 }
}

#[test]
fn concurrent_appenders_share_fsyncs_and_everything_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    on_executor(move || async move {
        let storage = DmaStorage::open(&path).await.unwrap();
        let (wal, report) = Wal::open(storage, small()).await.unwrap();
        assert_eq!(report.entries, 0);
        let wal = Rc::new(wal);
        // 64 tasks, each appending and waiting: the log must coalesce their syncs.
        let next = Rc::new(std::cell::Cell::new(1u64));
        let mut tasks = Vec::new();
        for _ in 0..64 {
            let (wal, next) = (wal.clone(), next.clone());
            tasks.push(glommio::spawn_local(async move {
                for _ in 0..50 {
                    let i = next.get();
                    next.set(i + 1);
                    let t = wal.append_entry(i, 1, format!("entry {i}").as_bytes()).unwrap();
                    wal.wait_durable(t).await.unwrap();
                }
            }));
        }
        for t in tasks {
            t.await;
        }
        let stats = wal.stats();
        assert!(stats.fdatasyncs < 3200 / 4, "group commit: {} syncs for 3200 appends", stats.fdatasyncs);
        assert!(wal.segment_count() >= 1);
    });
    let path = dir.path().to_path_buf();
    on_executor(move || async move {
        let storage = DmaStorage::open(&path).await.unwrap();
        let (wal, report) = Wal::open(storage, small()).await.unwrap();
        assert_eq!(report.entries, 3200);
        assert!(report.torn_tail.is_none());
        for i in [1u64, 1600, 3200] {
            assert_eq!(wal.read_entry(i).await.unwrap(), format!("entry {i}").into_bytes());
        }
        assert_eq!(wal.next_log_index(), Some(3201));
    });
}

/// The payload of entry `i` in `batches_reuse_buffers_and_carry_only_their_own_bytes`: large in
/// even rounds, small in odd ones, and different for every entry.
fn reuse_payload(i: u64, round: u64) -> Vec<u8> {
    let len = if round % 2 == 0 { 3000 } else { 10 };
    (0..len).map(|k| (i as u8).wrapping_mul(31).wrapping_add(k as u8)).collect()
}

/// Batches are encoded into the buffers of earlier ones (kept after their write): a small batch
/// in the buffer of a large one carries only its own bytes, so every entry reads back exactly,
/// from memory, from disk, and after a restart.
#[test]
fn batches_reuse_buffers_and_carry_only_their_own_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let mut written = Vec::new();
    let mut i = 0u64;
    for round in 0..20u64 {
        for _ in 0..if round % 2 == 0 { 40 } else { 1 } {
            i += 1;
            written.push((i, reuse_payload(i, round)));
        }
    }
    let expected = written.clone();
    on_executor(move || async move {
        let (wal, _) = Wal::open(DmaStorage::open(&path).await.unwrap(), small()).await.unwrap();
        let mut at = 0;
        for round in 0..20u64 {
            let n = if round % 2 == 0 { 40 } else { 1 };
            let mut last = None;
            for (i, payload) in &written[at..at + n] {
                last = Some(wal.append_entry(*i, 1, payload).unwrap());
            }
            // Read from the pending batch, then from disk once durable.
            let (i, payload) = &written[at + n - 1];
            assert_eq!(&wal.read_entry(*i).await.unwrap(), payload, "entry {i} before its flush");
            wal.wait_durable(last.unwrap()).await.unwrap();
            assert_eq!(&wal.read_entry(*i).await.unwrap(), payload, "entry {i} after its flush");
            at += n;
        }
        let stats = wal.stats();
        assert!(stats.buffers_reused >= 18, "20 batches, all but the first two in kept buffers: {stats:?}");
    });
    let path = dir.path().to_path_buf();
    on_executor(move || async move {
        let (wal, report) = Wal::open(DmaStorage::open(&path).await.unwrap(), small()).await.unwrap();
        assert_eq!(report.entries, expected.len());
        for (i, payload) in &expected {
            assert_eq!(&wal.read_entry(*i).await.unwrap(), payload, "entry {i} after a restart");
        }
    });
}

#[test]
fn corruption_in_a_real_file_names_the_path_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    on_executor(move || async move {
        let (wal, _) = Wal::open(DmaStorage::open(&path).await.unwrap(), small()).await.unwrap();
        for i in 1..=3 {
            let _ = wal.append_entry(i, 1, &[9; 200]).unwrap();
            wal.sync().await.unwrap();
        }
    });
    // Flip a payload byte of the first entry's batch, behind the log's back.
    let seg = dir.path().join("00000000000000000001.wal");
    let mut bytes = std::fs::read(&seg).unwrap();
    let sector = {
        // The first entry's batch starts at the second sector; find it from the file.
        (512..bytes.len()).step_by(512).find(|&o| bytes[o] != 0 || bytes[o + 4] != 0).unwrap()
    };
    bytes[sector + 40] ^= 0x10;
    std::fs::write(&seg, &bytes).unwrap();
    let path = dir.path().to_path_buf();
    on_executor(move || async move {
        let err = Wal::open(DmaStorage::open(&path).await.unwrap(), small()).await.unwrap_err();
        match err {
            OpenError::Corrupt { file, offset, .. } => {
                assert!(file.ends_with("00000000000000000001.wal"), "{file}");
                assert_eq!(offset, sector as u64);
            }
            e => panic!("expected corruption, got {e}"),
        }
    });
}

#[test]
fn a_torn_tail_in_a_real_file_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    on_executor(move || async move {
        let (wal, _) = Wal::open(DmaStorage::open(&path).await.unwrap(), small()).await.unwrap();
        let _ = wal.append_entry(1, 1, b"kept").unwrap();
        wal.sync().await.unwrap();
    });
    // Garbage where the next batch would go: a write that tore.
    let seg = dir.path().join("00000000000000000001.wal");
    let mut bytes = std::fs::read(&seg).unwrap();
    let end = (512..bytes.len()).step_by(512).find(|&o| bytes[o..o + 512].iter().all(|&b| b == 0)).unwrap();
    bytes[end..end + 100].fill(0x5A);
    std::fs::write(&seg, &bytes).unwrap();
    let path = dir.path().to_path_buf();
    on_executor(move || async move {
        let (wal, report) = Wal::open(DmaStorage::open(&path).await.unwrap(), small()).await.unwrap();
        assert_eq!(report.torn_tail.as_ref().map(|t| t.offset), Some(end as u64));
        assert_eq!(wal.read_entry(1).await.unwrap(), b"kept");
        let _ = wal.append_entry(2, 1, b"after").unwrap();
        wal.sync().await.unwrap();
    });
}

/// On real files, a spare made by a concurrent task while appends run is renamed into place at
/// rollover, and the log reads back whole after a restart.
#[test]
fn a_spare_made_alongside_appends_is_renamed_into_place() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_path_buf();
    on_executor(move || async move {
        let storage = DmaStorage::open(&path).await.expect("storage");
        let (wal, _) = Wal::open(storage, small()).await.expect("open");
        let wal = Rc::new(wal);
        let maker = {
            let wal = wal.clone();
            glommio::spawn_local(async move {
                for _ in 0..400 {
                    if wal.needs_spare() {
                        wal.prepare_spare().await.expect("spare");
                    }
                    glommio::timer::sleep(std::time::Duration::from_millis(2)).await;
                }
            })
        };
        let payload = vec![7u8; 32 << 10];
        for i in 1..=160u64 {
            let t = wal.append_entry(i, 1, &payload).expect("append");
            wal.wait_durable(t).await.expect("durable");
        }
        maker.await;
        let stats = wal.stats();
        assert!(stats.spares_used >= 1, "{stats:?}");
        drop(wal);
        let (wal, report) = Wal::open(DmaStorage::open(&path).await.expect("storage"), small()).await.expect("reopen");
        assert_eq!(report.entries, 160);
        assert_eq!(wal.read_entry(160).await.expect("read"), payload);
        assert!(!path.join("spare.wal").exists(), "a leftover spare is removed at open");
    });
}

/// A read of many 256 KiB pieces (read several at once) returns the file's bytes in order,
/// from an unaligned start to an unaligned end, up to the file's last byte (its piece short).
#[test]
fn a_long_read_of_many_pieces_returns_the_bytes_in_order() {
    use stratos_wal::storage::{SegmentFile, Storage};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    on_executor(move || async move {
        let storage = DmaStorage::open(&path).await.expect("open dir");
        let size: usize = 5 << 20;
        let file = storage.create("seg", size as u64).await.expect("create");
        let bytes: Vec<u8> = (0..size).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        file.write_at(0, &bytes).await.expect("write");
        for (pos, len) in [(0, size), (4_097, 3 << 20), (123, (2 << 20) + 5), (size - 300_001, 300_001)] {
            let got = file.read_at(pos as u64, len).await.expect("read");
            assert!(got == bytes[pos..pos + len], "bytes {pos}..{}", pos + len);
        }
        // Appended to a buffer that holds bytes already (recovery reuses one across segments).
        let mut buf = b"kept".to_vec();
        file.read_into(4_097, 3 << 20, &mut buf).await.expect("read into");
        assert!(buf[..4] == *b"kept" && buf[4..] == bytes[4_097..4_097 + (3 << 20)], "read_into appends the bytes after what the buffer held");
    });
}

/// The extents of `path` that the file system holds as unwritten (fallocated, never written), by
/// FIEMAP; None where the file system cannot say (tmpfs, say).
fn unwritten_extents(path: &std::path::Path) -> Option<Vec<(u64, u64)>> {
    use std::os::fd::AsRawFd;
    const FS_IOC_FIEMAP: libc::c_ulong = 0xC020_660B;
    const FIEMAP_FLAG_SYNC: u32 = 1;
    const FIEMAP_EXTENT_UNWRITTEN: u32 = 0x800;
    const EXTENTS: usize = 64;
    // struct fiemap (32 bytes) and EXTENTS struct fiemap_extent (56 bytes each), as u64 words.
    let mut buf = vec![0u64; (32 + 56 * EXTENTS) / 8];
    buf[1] = u64::MAX; // fm_length: the whole file
    buf[2] = u64::from(FIEMAP_FLAG_SYNC); // fm_flags | fm_mapped_extents << 32 (out)
    buf[3] = EXTENTS as u64; // fm_extent_count | fm_reserved << 32
    let f = std::fs::File::open(path).ok()?;
    // SAFETY: `buf` is a struct fiemap followed by room for EXTENTS extents, as the ioctl expects.
    if unsafe { libc::ioctl(f.as_raw_fd(), FS_IOC_FIEMAP, buf.as_mut_ptr()) } != 0 {
        return None;
    }
    let mapped = (buf[2] >> 32) as usize;
    let mut out = Vec::new();
    for i in 0..mapped.min(EXTENTS) {
        let e = &buf[4 + i * 7..4 + i * 7 + 7]; // logical, physical, length, 2 reserved, flags + 3 reserved u32
        if (e[5] as u32) & FIEMAP_EXTENT_UNWRITTEN != 0 {
            out.push((e[0], e[2]));
        }
    }
    Some(out)
}

/// A new segment reads back as zeros from end to end (the WAL's torn-tail detection depends on
/// it) and holds no unwritten extent (a write into one makes each fdatasync a journal commit:
/// why segments are zero-filled, not only fallocated), at sizes that are and are not a multiple
/// of the 1 MiB zero-fill chunk, over blocks that held other bytes before (a removed
/// segment's, which the file system may hand out again).
#[test]
fn a_new_segment_is_zeros_from_end_to_end() {
    use stratos_wal::storage::{SegmentFile, Storage};
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_path_buf();
    on_executor(move || async move {
        let storage = DmaStorage::open(&path).await.expect("storage");
        for (name, size) in [("a", 3u64 << 20), ("b", (2 << 20) + 8192), ("c", 12288)] {
            // Garbage first, in a file of the same name removed again: freed blocks the new
            // segment may get.
            let old = storage.create(name, size).await.expect("create");
            old.write_at(0, &vec![0xA5u8; size as usize]).await.expect("write");
            old.sync_data().await.expect("sync");
            drop(old);
            storage.remove(name).await.expect("remove");
            let seg = storage.create(name, size).await.expect("create again");
            assert_eq!(seg.size().await.expect("size"), size);
            let back = seg.read_at(0, size as usize).await.expect("read");
            assert_eq!(back.len(), size as usize);
            assert!(back.iter().all(|b| *b == 0), "{name}: a byte not zero at {:?}", back.iter().position(|b| *b != 0));
            if let Some(unwritten) = unwritten_extents(&path.join(name)) {
                assert!(unwritten.is_empty(), "{name}: unwritten extents (offset, length) {unwritten:?}");
            }
        }
    });
}
