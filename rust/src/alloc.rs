//! A global allocator for large blocks: transparent huge pages, and a
//! small cache of freed blocks.
//!
//! On a VM first-touch page faults cost about 0.8 ms per MB — more than
//! the passes that fill the memory — and with `madvise` mode THP (the
//! common default) only regions that ask get 2 MB pages. Worse, memory a
//! process gives back may be handed to the hypervisor (free page
//! reporting) and then costs 1-2 ms per MB to touch again: measured here,
//! an attribution call after three idle seconds took 0.84 s instead of
//! 0.26 s. So freed large blocks are kept (up to 1/8 of RAM, at most
//! 4 GiB, for at most 10 s, as jemalloc's decay does) and reused by the
//! next large allocation of the same size class; an allocation that finds
//! none first gives back as many bytes as it asks for, so the kept blocks
//! do not raise the peak. `release_cached()` hands them back at once; `REFERRALGRAPH_ALLOC_CACHE_MB=0` turns the cache off.
//! Small blocks go straight to the system allocator.
//!
//! Install it in a binary or cdylib with
//! `#[global_allocator] static A: HugePageAlloc = HugePageAlloc;`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// Blocks of at least this many bytes are 2 MB-aligned and advised.
const HUGE: usize = 4 << 20;
const PAGE_2M: usize = 2 << 20;
/// Freed blocks kept at most.
const SLOTS: usize = 128;
/// A kept block unused this long is given back on the next large call.
const DECAY_NS: u64 = 10_000_000_000;

pub struct HugePageAlloc;

#[inline]
fn is_huge(layout: &Layout) -> bool {
    cfg!(target_os = "linux") && layout.size() >= HUGE
}

/// The size actually allocated for a large request: 2 MB pages, then the
/// top three bits kept (4 classes per doubling, at most 25% more address
/// space; untouched pages cost no memory). The class is what a freed block
/// is known to hold, from the size `dealloc` is given: without classes a
/// block reused by a smaller request would be kept as that smaller size,
/// and the next larger request would miss (measured: every attribution
/// call took 510 MB of fresh pages).
fn class_size(size: usize) -> usize {
    let pages = size.div_ceil(PAGE_2M).max(1) * PAGE_2M;
    let unit = (1usize << (usize::BITS - pages.leading_zeros()).saturating_sub(3)).max(PAGE_2M);
    pages.div_ceil(unit).checked_mul(unit).unwrap_or(size)
}

#[inline]
fn huge_layout(layout: &Layout) -> Layout {
    // Size is non-zero and below isize::MAX - 2 MB in any real program;
    // fall back to the caller's layout if not.
    Layout::from_size_align(class_size(layout.size()), layout.align().max(PAGE_2M))
        .unwrap_or(*layout)
}

unsafe fn advise(p: *mut u8, size: usize) {
    #[cfg(target_os = "linux")]
    if !p.is_null() {
        // A hint: failure (e.g. THP disabled) changes nothing.
        libc::madvise(p.cast(), size, libc::MADV_HUGEPAGE);
    }
}

/// A kept block: `cap` is its size class (what the system allocated).
#[derive(Clone, Copy)]
struct Kept {
    ptr: usize,
    cap: usize,
    at_ns: u64,
}

struct Cache {
    blocks: [Kept; SLOTS],
    len: usize,
    bytes: usize,
}

static CACHE: Mutex<Cache> = Mutex::new(Cache {
    blocks: [Kept {
        ptr: 0,
        cap: 0,
        at_ns: 0,
    }; SLOTS],
    len: 0,
    bytes: 0,
});

/// `usize::MAX` until read from the environment on first use.
static LIMIT: AtomicUsize = AtomicUsize::new(usize::MAX);

/// Blocks taken out of the cache to be freed after the lock is dropped
/// (freeing unmaps, which may take a while).
struct Evicted {
    ptrs: [usize; SLOTS + 1],
    len: usize,
}

impl Evicted {
    fn new() -> Self {
        Evicted {
            ptrs: [0; SLOTS + 1],
            len: 0,
        }
    }
    fn push(&mut self, p: usize) {
        self.ptrs[self.len] = p;
        self.len += 1;
    }
    /// # Safety
    /// Every pointer came from `System` with a 2 MB-aligned layout and is
    /// no longer in use.
    unsafe fn free(self) {
        for &p in &self.ptrs[..self.len] {
            // The system allocator frees by pointer; the layout only has to
            // carry the same (2 MB) alignment.
            System.dealloc(
                p as *mut u8,
                Layout::from_size_align_unchecked(HUGE, PAGE_2M),
            );
        }
    }
}

fn now_ns() -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid out-pointer; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) };
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// The cache's byte limit (read once; no allocation, as an allocator must).
fn limit() -> usize {
    let l = LIMIT.load(Ordering::Relaxed);
    if l != usize::MAX {
        return l;
    }
    // SAFETY: getenv with a NUL-terminated name; the result is read at once.
    let env = unsafe { libc::getenv(c"REFERRALGRAPH_ALLOC_CACHE_MB".as_ptr()) };
    let l = if env.is_null() {
        // SAFETY: sysconf has no preconditions.
        let (pages, page) = unsafe {
            (
                libc::sysconf(libc::_SC_PHYS_PAGES),
                libc::sysconf(libc::_SC_PAGESIZE),
            )
        };
        ((pages.max(0) as usize).saturating_mul(page.max(0) as usize) / 8).min(4 << 30)
    } else {
        // SAFETY: getenv returned a NUL-terminated string.
        let s = unsafe { std::ffi::CStr::from_ptr(env) }.to_bytes();
        let mut mb = 0usize;
        for &c in s.iter().take_while(|c| c.is_ascii_digit()) {
            mb = mb.saturating_mul(10).saturating_add((c - b'0') as usize);
        }
        mb.saturating_mul(1 << 20)
    };
    LIMIT.store(l, Ordering::Relaxed);
    l
}

impl Cache {
    fn remove(&mut self, i: usize) -> Kept {
        let k = self.blocks[i];
        self.len -= 1;
        self.blocks[i] = self.blocks[self.len];
        self.bytes -= k.cap;
        k
    }

    /// Takes out blocks unused for `DECAY_NS`.
    fn decay(&mut self, now: u64, out: &mut Evicted) {
        let mut i = 0;
        while i < self.len {
            if now.saturating_sub(self.blocks[i].at_ns) > DECAY_NS {
                out.push(self.remove(i).ptr);
            } else {
                i += 1;
            }
        }
    }

    /// A kept block of size class `class`, if any (exactly that class: a
    /// block handed to a smaller class would be kept as that class later).
    fn take(&mut self, class: usize) -> Option<usize> {
        let i = (0..self.len).find(|&i| self.blocks[i].cap == class)?;
        Some(self.remove(i).ptr)
    }

    /// Keeps a freed block, taking out the oldest ones beyond the limits.
    fn keep(&mut self, k: Kept, limit: usize, out: &mut Evicted) {
        self.blocks[self.len] = k;
        self.len += 1;
        self.bytes += k.cap;
        while self.bytes > limit || self.len == SLOTS {
            self.evict_oldest(out);
        }
    }

    /// Takes out the block kept longest (the cache is not empty); returns
    /// its size.
    fn evict_oldest(&mut self, out: &mut Evicted) -> usize {
        let oldest = (0..self.len)
            .min_by_key(|&i| self.blocks[i].at_ns)
            .unwrap_or(0);
        let k = self.remove(oldest);
        out.push(k.ptr);
        k.cap
    }
}

fn lock() -> std::sync::MutexGuard<'static, Cache> {
    // Nothing panics while the lock is held; a poisoned cache is still valid.
    CACHE.lock().unwrap_or_else(|e| e.into_inner())
}

/// A kept block of `layout.size()`'s class, if any.
fn reuse(layout: &Layout) -> Option<*mut u8> {
    if layout.align() > PAGE_2M || limit() == 0 {
        return None;
    }
    let mut out = Evicted::new();
    let got = {
        let mut c = lock();
        c.decay(now_ns(), &mut out);
        let got = c.take(class_size(layout.size()));
        if got.is_none() {
            // A miss: give back at least as much as is asked for (oldest
            // first), so kept blocks never add to the process's peak; the
            // system hands those pages out again while they are warm.
            let mut freed = 0;
            while freed < layout.size() && c.len > 0 {
                freed += c.evict_oldest(&mut out);
            }
        }
        got
    };
    // SAFETY: evicted blocks are no longer in the cache nor in use.
    unsafe { out.free() };
    got.map(|p| p as *mut u8)
}

/// Gives every kept block back to the system; returns the bytes released.
pub fn release_cached() -> usize {
    let mut out = Evicted::new();
    let bytes = {
        let mut c = lock();
        let bytes = c.bytes;
        while c.len > 0 {
            out.push(c.remove(0).ptr);
        }
        bytes
    };
    // SAFETY: evicted blocks are no longer in the cache nor in use.
    unsafe { out.free() };
    bytes
}

/// Bytes currently kept for reuse.
pub fn cached_bytes() -> usize {
    lock().bytes
}

// SAFETY: every large block is allocated by `System` with a 2 MB-aligned
// layout and freed by `System` (now, or later from the cache) with the same
// alignment; a kept block is owned by the cache alone until `reuse` hands
// it out again. `is_huge` depends only on the size, which the caller passes
// unchanged to `dealloc` (the `GlobalAlloc` contract).
unsafe impl GlobalAlloc for HugePageAlloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_huge(&layout) {
            if let Some(p) = reuse(&layout) {
                return p;
            }
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
            if let Some(p) = reuse(&layout) {
                // Clearing memory already mapped costs far less than
                // faulting in fresh zeroed pages.
                std::ptr::write_bytes(p, 0, layout.size());
                return p;
            }
            let p = System.alloc_zeroed(huge_layout(&layout));
            advise(p, layout.size());
            p
        } else {
            System.alloc_zeroed(layout)
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if !is_huge(&layout) {
            return System.dealloc(ptr, layout);
        }
        let limit = limit();
        if layout.align() > PAGE_2M || layout.size() > limit {
            return System.dealloc(ptr, huge_layout(&layout));
        }
        let mut out = Evicted::new();
        {
            let mut c = lock();
            let now = now_ns();
            c.decay(now, &mut out);
            let kept = Kept {
                ptr: ptr as usize,
                cap: class_size(layout.size()),
                at_ns: now,
            };
            c.keep(kept, limit, &mut out);
        }
        out.free();
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
    fn size_classes_cover_requests_with_little_waste() {
        let mut last = 0;
        for size in (HUGE..1 << 34).step_by(7_654_321) {
            let c = class_size(size);
            assert!(c >= size && c.is_multiple_of(PAGE_2M), "{size} -> {c}");
            assert!(
                c as f64 <= size as f64 * 1.25 + PAGE_2M as f64,
                "{size} -> {c}"
            );
            assert!(c >= last, "monotone");
            assert_eq!(class_size(c), c, "a class is its own class");
            last = c;
        }
    }

    // One test: the cache is process-wide, and tests run on parallel threads.
    #[test]
    fn blocks_round_trip_and_freed_blocks_are_reused_then_released() {
        let a = HugePageAlloc;
        release_cached();
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

            // The freed block is kept, and serves a request of its size class
            // (zeroed when asked), not one of another class.
            assert_eq!(cached_bytes(), class_size(HUGE + 1));
            let l = Layout::from_size_align(HUGE + 2, 8).unwrap();
            let again = a.alloc_zeroed(l);
            assert_eq!(again, big, "the kept block is reused");
            assert_eq!(cached_bytes(), 0);
            assert!(std::slice::from_raw_parts(again, HUGE + 2)
                .iter()
                .all(|&b| b == 0));
            *again.add(5) = 1;
            a.dealloc(again, l);
            let (l2, l3) = (
                Layout::from_size_align(2 * HUGE, 8).unwrap(),
                Layout::from_size_align(3 * HUGE, 8).unwrap(),
            );
            let three = a.alloc(l3);
            // Another class: the kept block was given back instead.
            assert_eq!(cached_bytes(), 0, "a miss gives back what it asks for");
            let two = a.alloc(l2);
            a.dealloc(three, l3);
            a.dealloc(two, l2);
            // A request of a smaller size in the same class gets the block,
            // and it is kept again as that class once freed: a later request
            // of the class's full size still finds it.
            let want = Layout::from_size_align(2 * HUGE - PAGE_2M + 1, 8).unwrap();
            assert_eq!(class_size(want.size()), class_size(l2.size()));
            let fit = a.alloc(want);
            assert_eq!(fit, two, "same class: reused");
            a.dealloc(fit, want);
            let full = a.alloc(l2);
            assert_eq!(full, two, "kept as its class, not the smaller request");
            a.dealloc(full, l2);

            // Older blocks go first once the count is reached.
            let mut held = Vec::new();
            for _ in 0..SLOTS + 3 {
                held.push(a.alloc(l));
            }
            for &p in &held {
                a.dealloc(p, l);
            }
            assert!(lock().len < SLOTS);
            assert!(cached_bytes() <= limit());
            let released = release_cached();
            assert!(released >= HUGE);
            assert_eq!(cached_bytes(), 0);
        }
    }
}
