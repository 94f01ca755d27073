//! A global allocator that asks Linux for transparent huge pages on large
//! blocks. On a VM first-touch page faults cost about 0.8 ms per MB — more
//! than the passes that fill the memory — and with `madvise` mode THP
//! (the common default) only regions that ask get 2 MB pages. Small blocks
//! go straight to the system allocator.
//!
//! Install it in a binary or cdylib with
//! `#[global_allocator] static A: HugePageAlloc = HugePageAlloc;`.

use std::alloc::{GlobalAlloc, Layout, System};

/// Blocks of at least this many bytes are 2 MB-aligned and advised.
const HUGE: usize = 4 << 20;
const PAGE_2M: usize = 2 << 20;

pub struct HugePageAlloc;

#[inline]
fn is_huge(layout: &Layout) -> bool {
    cfg!(target_os = "linux") && layout.size() >= HUGE
}

#[inline]
fn huge_layout(layout: &Layout) -> Layout {
    // Size is non-zero and below isize::MAX - 2 MB in any real program;
    // fall back to the caller's layout if not.
    Layout::from_size_align(layout.size(), layout.align().max(PAGE_2M)).unwrap_or(*layout)
}

unsafe fn advise(p: *mut u8, size: usize) {
    #[cfg(target_os = "linux")]
    if !p.is_null() {
        // A hint: failure (e.g. THP disabled) changes nothing.
        libc::madvise(p.cast(), size, libc::MADV_HUGEPAGE);
    }
}

// SAFETY: every block is allocated and freed by `System` with the same
// layout: `is_huge` depends only on the size, which the caller passes
// unchanged to `dealloc` (the `GlobalAlloc` contract).
unsafe impl GlobalAlloc for HugePageAlloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_huge(&layout) {
            let p = System.alloc(huge_layout(&layout));
            advise(p, layout.size());
            p
        } else {
            System.alloc(layout)
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_huge(&layout) {
            let p = System.alloc_zeroed(huge_layout(&layout));
            advise(p, layout.size());
            p
        } else {
            System.alloc_zeroed(layout)
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if is_huge(&layout) {
            System.dealloc(ptr, huge_layout(&layout))
        } else {
            System.dealloc(ptr, layout)
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
        if !is_huge(&layout) && !is_huge(&new_layout) {
            return System.realloc(ptr, layout, new_size);
        }
        let new = self.alloc(new_layout);
        if !new.is_null() {
            std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
            self.dealloc(ptr, layout);
        }
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_round_trip_across_the_threshold() {
        let a = HugePageAlloc;
        unsafe {
            let small = Layout::from_size_align(1024, 8).unwrap();
            let p = a.alloc_zeroed(small);
            *p = 7;
            let big = a.realloc(p, small, HUGE + 1);
            assert_eq!(*big, 7);
            assert_eq!(big as usize % PAGE_2M, 0);
            *big.add(HUGE) = 9;
            let back = a.realloc(big, Layout::from_size_align(HUGE + 1, 8).unwrap(), 16);
            assert_eq!(*back, 7);
            a.dealloc(back, Layout::from_size_align(16, 8).unwrap());
        }
    }
}
