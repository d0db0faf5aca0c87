//! Exact-size memory for memtable entries.
//!
//! A general-purpose allocator rounds each request up to a size class: mimalloc serves a
//! 152-byte key entry (40-byte name, one block) from its 160-byte class. Entries here come
//! from 2 MiB chunks mapped straight from the kernel, at 8-byte granularity, with an intrusive
//! free list per size in words, so a freed entry is reused by the next entry of that size (the
//! arena of RocksDB's memtable, plus reuse).
//!
//! Each thread has its own slab (thread-per-core: a shard's entries are made and dropped on its
//! executor). Chunks are never unmapped, so a block freed on another thread just joins that
//! thread's free list and stays valid. The costs of that choice: a memtable that shrinks keeps
//! its peak footprint, and free blocks of one size serve only that size. Entries larger than
//! `SLAB_WORDS_MAX` words go to the global allocator.

use std::cell::RefCell;
use std::ptr::NonNull;

/// Entries up to 4 KiB come from the slab; bigger ones (keys with many blocks) do not.
pub const SLAB_WORDS_MAX: usize = 512;
const CHUNK_BYTES: usize = 2 << 20;
const CHUNK_WORDS: usize = CHUNK_BYTES / 8;

struct Slab {
    /// `free[n]`: the first free block of `n` words; each free block's word 0 holds the next.
    free: Vec<Option<NonNull<u64>>>,
    chunk: Option<NonNull<u64>>,
    chunk_used_words: usize,
}

thread_local! {
    static SLAB: RefCell<Slab> = RefCell::new(Slab { free: vec![None; SLAB_WORDS_MAX + 1], chunk: None, chunk_used_words: CHUNK_WORDS });
}

/// `words` zeroed, 8-aligned words.
pub(crate) fn alloc(words: usize) -> NonNull<u64> {
    assert!(words > 0, "an entry has at least its length word");
    if words > SLAB_WORDS_MAX {
        let raw = Box::into_raw(vec![0u64; words].into_boxed_slice());
        // SAFETY: Box::into_raw never returns null.
        return unsafe { NonNull::new_unchecked(raw.cast::<u64>()) };
    }
    let p = SLAB.with(|s| s.borrow_mut().take(words));
    // SAFETY: `p` points to `words` words that the caller now owns exclusively.
    unsafe { std::ptr::write_bytes(p.as_ptr(), 0, words) };
    p
}

/// Gives back a block that [`alloc`] returned for the same `words`.
///
/// # Safety
/// `p` came from `alloc(words)` and is not used after this call.
pub(crate) unsafe fn free(p: NonNull<u64>, words: usize) {
    if words > SLAB_WORDS_MAX {
        // SAFETY: blocks this large came from a Box<[u64]> of exactly `words` words (`alloc`).
        drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(p.as_ptr(), words)) });
        return;
    }
    SLAB.with(|s| {
        let mut s = s.borrow_mut();
        let next = s.free[words].map_or(0, |n| n.as_ptr() as u64);
        // SAFETY: the block is the slab's again and at least one word long.
        unsafe { p.as_ptr().write(next) };
        s.free[words] = Some(p);
    });
}

impl Slab {
    fn take(&mut self, words: usize) -> NonNull<u64> {
        if let Some(p) = self.free[words] {
            // SAFETY: a free block holds the address of the next free block (or 0) in word 0.
            let next = unsafe { p.as_ptr().read() };
            self.free[words] = NonNull::new(next as *mut u64);
            return p;
        }
        if self.chunk_used_words + words > CHUNK_WORDS {
            self.chunk = Some(map_chunk());
            self.chunk_used_words = 0;
        }
        let base = self.chunk.expect("a chunk was just mapped");
        // SAFETY: chunk_used_words + words <= CHUNK_WORDS: the block lies inside the chunk.
        let p = unsafe { NonNull::new_unchecked(base.as_ptr().add(self.chunk_used_words)) };
        self.chunk_used_words += words;
        p
    }
}

/// A fresh chunk straight from the kernel: its pages cost memory only once touched, and no
/// allocator keeps books on it. Out of memory is fatal, as for any allocation.
fn map_chunk() -> NonNull<u64> {
    // SAFETY: an anonymous private mapping with no address hint has no preconditions.
    let p = unsafe {
        libc::mmap(std::ptr::null_mut(), CHUNK_BYTES, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0)
    };
    if p == libc::MAP_FAILED {
        std::alloc::handle_alloc_error(std::alloc::Layout::from_size_align(CHUNK_BYTES, 8).expect("static layout"));
    }
    NonNull::new(p.cast::<u64>()).expect("mmap returned a non-null mapping")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freed_blocks_are_reused_by_the_same_size_and_come_back_zeroed() {
        let a = alloc(19);
        // SAFETY: 19 words were allocated.
        unsafe { a.as_ptr().add(18).write(0xFFFF) };
        // SAFETY: `a` came from alloc(19) and is not used again.
        unsafe { free(a, 19) };
        let b = alloc(19);
        assert_eq!(a, b);
        // SAFETY: 19 words were allocated.
        assert_eq!(unsafe { b.as_ptr().add(18).read() }, 0);
        let big = alloc(SLAB_WORDS_MAX + 1);
        // SAFETY: as allocated, not used again.
        unsafe { free(big, SLAB_WORDS_MAX + 1) };
        // SAFETY: as allocated, not used again.
        unsafe { free(b, 19) };
    }
}
