//! The process's allocator: mimalloc, called the way its fast paths want.
//!
//! The `mimalloc` crate's `MiMalloc` passes every allocation to `mi_malloc_aligned`, with the
//! layout's alignment. Its fast path takes only a block that is at most 1 KiB *and* happens to
//! lie at that alignment; anything else goes to the generic path, which over-allocates (size
//! plus alignment, then an offset) unless the size class is a power of two. So every boxed
//! future over 1 KiB (capnp-rpc boxes each call's future at dispatch: 3.6 KiB for a key
//! operation) and many 16-aligned buffers took the slow path: callgrind of the OM at one key per
//! call counted 7.2 over-allocations per key, and 2,600 instructions per key in the generic
//! aligned path (`mi_theap_malloc_zero_aligned_at_generic`), 1,400 of them over-allocating.
//!
//! Every mimalloc block is at least word-aligned (size classes are whole 8-byte words, pages
//! start aligned), so a layout whose alignment is 8 or less needs no aligned call at all:
//! plain `mi_malloc`, `mi_zalloc` and `mi_realloc` serve it, as glibc's `malloc` would. Larger
//! alignments (16-aligned rkyv buffers, 4 KiB DMA buffers) keep the aligned calls.

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

use libmimalloc_sys as mi;

/// Alignment every mimalloc block has, whatever its size (a 64-bit word).
const WORD: usize = std::mem::size_of::<usize>();

pub struct MiMalloc;

// SAFETY: each method forwards to mimalloc, which returns null or a block of at least `size`
// bytes; for alignments up to a word every block satisfies the layout (see the module docs and
// the test below), larger alignments go through mimalloc's aligned calls. `dealloc` and
// `realloc` take blocks that came from these calls (mimalloc frees aligned and plain blocks
// alike with `mi_free`).
unsafe impl GlobalAlloc for MiMalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: plain mimalloc calls; see the impl's comment.
        unsafe {
            if layout.align() <= WORD {
                mi::mi_malloc(layout.size()) as *mut u8
            } else {
                mi::mi_malloc_aligned(layout.size(), layout.align()) as *mut u8
            }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as `alloc`.
        unsafe {
            if layout.align() <= WORD {
                mi::mi_zalloc(layout.size()) as *mut u8
            } else {
                mi::mi_zalloc_aligned(layout.size(), layout.align()) as *mut u8
            }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `ptr` came from this allocator (GlobalAlloc's contract).
        unsafe { mi::mi_free(ptr as *mut c_void) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from this allocator with `layout` (GlobalAlloc's contract).
        unsafe {
            if layout.align() <= WORD {
                mi::mi_realloc(ptr as *mut c_void, new_size) as *mut u8
            } else {
                mi::mi_realloc_aligned(ptr as *mut c_void, new_size, layout.align()) as *mut u8
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every size from 1 byte to 2 KiB (all of mimalloc's small classes and more), every 7th to
    /// 16 KiB and a few larger, at every alignment from 1 to 4 KiB,
    /// many blocks at once (so that later blocks of a size class come from inside pages, not
    /// only their starts): each block is aligned as asked, and writable to its end.
    #[test]
    fn every_block_has_its_layouts_alignment() {
        let a = MiMalloc;
        let sizes: Vec<usize> = (1..=2 << 10).chain((2 << 10..=16 << 10).step_by(7)).chain([3_648, 65_536, 1 << 20, (1 << 20) + 8]).collect();
        for align in [1, 2, 4, 8, 16, 32, 64, 4096] {
            let mut held = Vec::new();
            for &size in &sizes {
                for _ in 0..3 {
                    let layout = Layout::from_size_align(size, align).expect("a valid layout");
                    // SAFETY: a non-zero size; the block is freed below with the same layout.
                    let p = unsafe { a.alloc(layout) };
                    assert!(!p.is_null(), "no memory for {size} bytes");
                    assert_eq!(p as usize % align, 0, "{size} bytes at alignment {align}: {p:p}");
                    // SAFETY: `p` holds `size` bytes.
                    unsafe { p.add(size - 1).write(0xA5) };
                    held.push((p, layout));
                }
            }
            for (p, layout) in held {
                // SAFETY: allocated above with this layout, freed once.
                unsafe { a.dealloc(p, layout) };
            }
        }
    }

    #[test]
    fn zeroed_blocks_are_zero_and_realloc_keeps_contents_and_alignment() {
        let a = MiMalloc;
        for align in [8, 16, 4096] {
            let layout = Layout::from_size_align(100, align).expect("a valid layout");
            // SAFETY: a non-zero size; freed below.
            let p = unsafe { a.alloc_zeroed(layout) };
            // SAFETY: `p` holds 100 bytes.
            let bytes = unsafe { std::slice::from_raw_parts_mut(p, 100) };
            assert!(bytes.iter().all(|b| *b == 0));
            bytes.iter_mut().enumerate().for_each(|(i, b)| *b = i as u8);
            // SAFETY: `p` came from `alloc_zeroed` with `layout`.
            let q = unsafe { a.realloc(p, layout, 5_000) };
            assert_eq!(q as usize % align, 0, "realloc at alignment {align}");
            // SAFETY: `q` holds 5,000 bytes, the first 100 kept.
            let kept = unsafe { std::slice::from_raw_parts(q, 100) };
            assert!(kept.iter().enumerate().all(|(i, b)| *b == i as u8), "realloc kept the contents");
            // SAFETY: `q` is the reallocated block, now of 5,000 bytes.
            unsafe { a.dealloc(q, Layout::from_size_align(5_000, align).expect("a valid layout")) };
        }
    }
}
