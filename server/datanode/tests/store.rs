//! The datanode's block store on a real directory: a complete block, in the block log or in a
//! file of its own, is never written again, before or after the store is reopened (which is
//! when it learns from the disk which containers have block files).

use stratos_datanode::store::{Store, StoreConfig, StoreError};

fn on_executor<F: std::future::Future<Output = ()> + 'static>(f: impl FnOnce() -> F + Send + 'static) {
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound).io_memory(1 << 20).spawn(move || async move { f().await }).expect("an executor").join().expect("the test ran");
}

fn config() -> StoreConfig {
    // Blocks of up to 4 KiB go to the log, longer ones to files; small log segments.
    StoreConfig { small_block_bytes: 4096, buffer_bytes: 1 << 20, log_segment_bytes: 1 << 20, read_cache_bytes: 1 << 20 }
}

/// Writes the block at offset 0 again and expects the refusal.
async fn refused_again(store: &Store, container: u64, local: u64, what: &str) {
    let again = store.write(container, local, 0, b"other bytes").await.expect_err(what);
    assert!(again.to_string().contains(&format!("block {container}/{local} is already complete")), "{what}: {again}");
}

#[test]
fn a_complete_block_is_never_written_again_even_after_a_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().to_path_buf();
    on_executor(move || async move {
        let large = vec![7u8; 100 * 1024];
        {
            let (store, _) = Store::open(root.clone(), config()).await.expect("open");
            // A small block (the log) and a large one (a file) in container 1; a small one in 2.
            store.write(1, 10, 0, b"small").await.expect("write small");
            store.finish(1, 10, 5).await.expect("finish small");
            store.write(1, 11, 0, &large).await.expect("write large");
            store.finish(1, 11, large.len() as u64).await.expect("finish large");
            store.write(2, 20, 0, b"small too").await.expect("write small 2");
            store.finish(2, 20, 9).await.expect("finish small 2");
            refused_again(&store, 1, 10, "a small block, at once").await;
            refused_again(&store, 1, 11, "a file block, at once").await;
            refused_again(&store, 2, 20, "a small block of a container without a directory").await;
            // A file block of a container that had only small blocks so far: refused as well.
            store.write(2, 21, 0, &large).await.expect("write large 2");
            store.finish(2, 21, large.len() as u64).await.expect("finish large 2");
            refused_again(&store, 2, 21, "a file block in a new container directory").await;
        }
        let (store, _) = Store::open(root.clone(), config()).await.expect("reopen");
        for (c, l) in [(1, 10), (1, 11), (2, 20), (2, 21)] {
            refused_again(&store, c, l, &format!("block {c}/{l} after a reopen")).await;
        }
        // A new block in a known container still goes through.
        store.write(1, 12, 0, b"new").await.expect("a new block");
        store.finish(1, 12, 3).await.expect("finish the new block");
        assert_eq!(store.length(1, 11).await.expect("length"), large.len() as u64);
    });
}

/// A listing that fails is an error, never a shorter answer: at open (the store would take a
/// container's block files for absent) and in `list` (a container report missing blocks).
#[test]
fn a_listing_that_fails_is_an_error_not_a_shorter_list() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().to_path_buf();
    on_executor(move || async move {
        {
            let (store, _) = Store::open(root.clone(), config()).await.expect("open");
            store.write(3, 30, 0, b"small").await.expect("write");
            store.finish(3, 30, 5).await.expect("finish");
            // A container directory that is not a directory: its listing fails (ENOTDIR).
            std::fs::create_dir_all(root.join("containers")).expect("mkdir");
            std::fs::write(root.join("containers/3"), b"not a directory").expect("write a file");
            let e = store.list(3).await.expect_err("listing a container whose directory is a file");
            assert!(e.to_string().contains("listing") && e.to_string().contains("containers/3"), "{e}");
            // A container with no directory at all has only its log blocks.
            assert_eq!(store.list(4).await.expect("an empty container"), vec![]);
        }
        std::fs::remove_file(root.join("containers/3")).expect("rm");
        std::fs::remove_dir(root.join("containers")).expect("rmdir");
        std::fs::write(root.join("containers"), b"not a directory").expect("write a file");
        let Err(e) = Store::open(root.clone(), config()).await else { panic!("open with containers/ a file") };
        assert!(e.contains("listing") && e.contains("containers"), "{e}");
    });
}

/// Reads every range of interest of each block and compares with the bytes written.
async fn read_ranges(store: &Store, blocks: &[(u64, &[u8])], what: &str) {
    for &(local, block) in blocks {
        let n = block.len() as u64;
        for (offset, length) in [(0, n), (0, 1), (1, 10), (n / 3, n / 2), (n - 1, 5), (n, 4), (n + 9, 4), (5, 0), (0, n + 100)] {
            let (got, len) = store.read(3, local, offset, length).await.unwrap_or_else(|e| panic!("{what}: read {local} at {offset}+{length}: {e}"));
            assert_eq!(len, n, "{what}: block length of {local}");
            let end = (offset + length).min(n);
            let want = &block[offset.min(end) as usize..end as usize];
            assert!(&got[..] == want, "{what}: block {local} at {offset}+{length}: {} bytes, want {}", got.len(), want.len());
        }
    }
}

/// A read of any range returns exactly those bytes of the block, whether the block lies in the
/// log (served from the bytes read, narrowed in place) or in a file of frames, before and after
/// a reopen; a range past the end is empty, a range over it is cut at the block's length.
#[test]
fn a_read_returns_exactly_the_range_asked_for() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().to_path_buf();
    on_executor(move || async move {
        let small: Vec<u8> = (0..3000u32).map(|i| (i * 7 + 3) as u8).collect();
        let large: Vec<u8> = (0..200_000u32).map(|i| (i * 13 + 1) as u8).collect();
        let blocks = [(30u64, &small[..]), (31, &large[..])];
        {
            let (store, _) = Store::open(root.clone(), config()).await.expect("open");
            for (local, block) in blocks {
                store.write(3, local, 0, block).await.expect("write");
                store.finish(3, local, block.len() as u64).await.expect("finish");
            }
            read_ranges(&store, &blocks, "written").await;
        }
        let (store, _) = Store::open(root.clone(), config()).await.expect("reopen");
        read_ranges(&store, &blocks, "reopened").await;
    });
}

/// Small blocks read again come from the read cache (the block log is read with `O_DIRECT`, so
/// nothing else would keep them): a second read is a hit, a deleted block is never served from
/// it, the least recently read block leaves first when the budget is spent, and a cache of 0
/// bytes holds nothing.
#[test]
fn small_blocks_read_again_come_from_the_cache_and_a_delete_drops_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().to_path_buf();
    on_executor(move || async move {
        let counts = |s: &Store| (s.stats().read_cache_hits, s.stats().read_cache_misses);
        let block = |local: u64| -> Vec<u8> { (0..3000u32).map(|i| (i as u64 * 7 + local) as u8).collect() };
        // 64 KiB: room for 8 to 21 blocks of 3000 bytes (each is held as the buffer its read
        // filled: a copy of the record, or the pages read), not for 39.
        let (store, _) = Store::open(root.join("a"), StoreConfig { read_cache_bytes: 64 << 10, ..config() }).await.expect("open");
        for local in 40..80 {
            store.write(3, local, 0, &block(local)).await.expect("write");
            store.finish(3, local, 3000).await.expect("finish");
        }
        let read = |local: u64| {
            let store = &store;
            async move { store.read(3, local, 0, 3000).await.map(|(b, _)| b.to_vec()) }
        };
        assert_eq!(read(40).await.expect("read"), block(40));
        assert_eq!(counts(&store), (0, 1), "the first read goes to the disk");
        assert_eq!(store.read(3, 40, 100, 50).await.expect("read a range").0[..], block(40)[100..150]);
        assert_eq!(counts(&store), (1, 1), "the second is served from memory");
        store.delete(&[(3, 40)]).await.expect("delete");
        assert!(matches!(store.read(3, 40, 0, 3000).await, Err(StoreError::NotFound(3, 40))), "a deleted block is gone, cached or not");
        // Every block once, then the last (still cached) and the first (pushed out).
        for local in 41..80 {
            assert_eq!(read(local).await.expect("read"), block(local));
        }
        let before = counts(&store);
        assert_eq!(read(79).await.expect("read"), block(79));
        assert_eq!(counts(&store), (before.0 + 1, before.1), "the most recently read block is held");
        assert_eq!(read(41).await.expect("read"), block(41));
        assert_eq!(counts(&store), (before.0 + 1, before.1 + 1), "the least recently read one left for the others");
        drop(store);
        let (store, _) = Store::open(root.join("b"), StoreConfig { read_cache_bytes: 0, ..config() }).await.expect("open");
        store.write(3, 1, 0, &block(1)).await.expect("write");
        store.finish(3, 1, 3000).await.expect("finish");
        for _ in 0..3 {
            assert_eq!(store.read(3, 1, 0, 3000).await.expect("read").0.to_vec(), block(1));
        }
        assert_eq!(counts(&store), (0, 0), "no cache: nothing counted, nothing held");
    });
}

/// A block over 128 KiB is not kept when read whole (the disk serves it at its bandwidth), but
/// is when a range of it is read: every range of a block in the log costs a read and check of
/// the whole record, and the next range is then served from memory.
#[test]
fn a_large_small_block_read_in_ranges_is_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().to_path_buf();
    on_executor(move || async move {
        let cfg = StoreConfig { small_block_bytes: 256 << 10, buffer_bytes: 1 << 20, log_segment_bytes: 2 << 20, read_cache_bytes: 4 << 20 };
        let (store, _) = Store::open(root, cfg).await.expect("open");
        let counts = |s: &Store| (s.stats().read_cache_hits, s.stats().read_cache_misses);
        let block: Vec<u8> = (0..200_000u32).map(|i| (i * 31 + 7) as u8).collect();
        store.write(3, 1, 0, &block).await.expect("write");
        store.finish(3, 1, block.len() as u64).await.expect("finish");
        for _ in 0..2 {
            assert!(store.read(3, 1, 0, 200_000).await.expect("read whole").0[..] == block[..]);
        }
        assert_eq!(counts(&store), (0, 2), "read whole, a block over 128 KiB is not kept");
        assert_eq!(store.read(3, 1, 1000, 100).await.expect("a range").0[..], block[1000..1100]);
        assert_eq!(store.read(3, 1, 150_000, 4096).await.expect("another range").0[..], block[150_000..154_096]);
        assert_eq!(counts(&store), (1, 3), "the first range read it, the second came from memory");
    });
}
