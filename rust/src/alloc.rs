//! A global allocator for large blocks: transparent huge pages for the
//! tables a graph keeps, and a small cache of freed blocks.
//!
//! On a VM first-touch page faults cost about 0.5 ms per MB of 4 KB pages
//! — more than the passes that fill the memory — and fresh 2 MB pages
//! 1.3-3.7 ms per MB (measured here in fresh processes; the guest's free
//! huge blocks are handed back to the hypervisor, free page reporting,
//! and cost a host fault to touch again; a 2 MB page freed and mapped
//! again in the same process costs 0.17 ms per MB). A 2 MB page pays for
//! itself only where reads land at random, over and over: so blocks are
//! advised for huge pages only inside [`huge_tables`] (the id index, the
//! ancestor chains, the CSR adjacency — tables a graph builds once and
//! every call reads at random), which takes only kept blocks that are
//! advised too, else maps them fresh (a plain kept block has 4 KB pages).
//! Everything else — ledger columns, sort buffers, per-call scratch —
//! stays on 4 KB pages, even per-call memory read at random (HyperLogLog
//! registers): it finds the warm blocks the last call left, where a table
//! scope would map it fresh (`benches/huge_pages.py`, a first HLL reach at
//! 1M users: 1.7-2.4 s with the registers as a table, 0.5-0.8 s without). `benches/huge_pages.py` measures
//! the modes: first calls about half as long as with every block advised,
//! warm calls within a few hundredths of a second of it. A
//! table's block is kept as advised when freed (the cache tracks which
//! handed-out blocks are), so the next graph's tables take it warm.
//! `REFERRALGRAPH_HUGE_PAGES=all` advises every block from 4 MB up (the
//! faster choice on bare metal, where fresh huge pages are cheap), `off`
//! none; `madvise` mode THP (the common default) gives 2 MB pages only to
//! regions that ask.
//!
//! Memory a process gives back costs a fault to touch again: measured
//! here, an attribution call after three idle seconds took 0.84 s instead
//! of 0.26 s. So blocks from 256 KB up are private mappings in size classes;
//! freed ones are kept (up to 1/8 of RAM — of the cgroup's limit in a
//! container, see `limit_memory_to` — at most 4 GiB, for at most 10 s,
//! as jemalloc's decay does; beyond that up to half the RAM until 1 s
//! after the crate's last call in flight ended (`busy`), so the next call
//! of a loop over large inputs finds its memory) and
//! reused by the next request of the same class. A reaper thread
//! (`start_reaper`; a forked child starts its own with its worker pool)
//! gives blocks back when they expire, whether or not the process calls
//! the allocator again. A request that finds none borrows a kept block
//! up to twice its class whole, else grows the largest smaller one with
//! `mremap` (the kernel moves its pages: no copy, no fault), so kept blocks
//! neither pile up nor go cold (they still count in the peak until
//! reused); growing Vecs move their pages the same way. No block is
//! shrunk to serve a request (see `Cache::find`). `release_cached()`
//! hands the kept blocks back at once; `REFERRALGRAPH_ALLOC_CACHE_MB=0`
//! turns the cache off. Smaller blocks go straight to the system allocator.
//!
//! A kept block's data starts a few cache lines into its mapping, a
//! different offset each time (`padded`, `colored`; jemalloc's "cache
//! oblivious" offsets do the same): columns written side by side would
//! otherwise start at the same offset of their pages and thrash the L1's
//! sets, at random as their addresses fall.
//!
//! Install it in a binary or cdylib with
//! `#[global_allocator] static A: HugePageAlloc = HugePageAlloc;`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicU8, AtomicUsize, Ordering};

/// Blocks of at least this many bytes are 2 MB-aligned (and may be advised).
const HUGE: usize = 4 << 20;
const PAGE_2M: usize = 2 << 20;
/// Freed blocks of at least this many bytes are kept: glibc maps blocks
/// from 128 KB up afresh, and a pass that fills a few fresh MB (a
/// leaderboard column, a per-range array) spends longer faulting than
/// computing.
const KEEP: usize = 256 << 10;
const PAGE_64K: usize = 64 << 10;
/// The alignment of kept blocks below `HUGE`: more than Rust or Arrow ask.
const PAGE_4K: usize = 4 << 10;
/// Freed blocks kept at most.
const SLOTS: usize = 256;
/// A kept block unused this long is given back.
const DECAY_NS: u64 = 10_000_000_000;
/// Kept bytes beyond the base limit (up to the burst limit) are given back
/// after this long with no call in flight (see `idle_since`): enough for
/// the next call of a loop to reuse them, short enough that other work
/// after the loop finds the memory free.
const BURST_DECAY_NS: u64 = 1_000_000_000;

pub struct HugePageAlloc;

/// Whether the block is one of ours (a fresh mapping of its class has at
/// least the alignment it asks for).
#[inline]
fn is_kept(layout: &Layout) -> bool {
    cfg!(target_os = "linux")
        && layout.size() >= KEEP
        && layout.align() <= block_align(class_size(layout.size()))
}

/// The cache line.
const LINE: usize = 64;
/// Cycles the offsets of kept blocks' data (see `padded`).
static COLOR: AtomicUsize = AtomicUsize::new(0);

/// Whether a kept request's data is offset into its block (`padded`):
/// unless it asks for page alignment.
#[inline]
fn offset_data(layout: &Layout) -> bool {
    layout.align() < PAGE_4K
}

/// The block a kept request takes: a page more than it asks for, its data
/// starting a few cache lines in (`colored`), unless it asks for page
/// alignment. Blocks are mappings of whole pages; columns written side by
/// side (a ledger's seven) at the same offset in their pages would share
/// the L1's sets and, on AMD Zen, its way predictor's tags (hashed from the
/// address bits above the page offset): measured here
/// (`examples/streams_profile.rs`), seven 896 MB columns whose blocks start
/// 896 MB apart are written in 8 s, 64 bytes further apart each in 0.5 s;
/// and an attribution over 10M users took 2.6-3.4 s or 1.3-1.7 s as its
/// columns' addresses happened to fall.
#[inline]
fn padded(layout: &Layout) -> Layout {
    let pad = if offset_data(layout) { PAGE_4K } else { 0 };
    // SAFETY: the alignment is the layout's, and `is_kept` sizes are far
    // below `isize::MAX` minus a page.
    unsafe { Layout::from_size_align_unchecked(layout.size() + pad, layout.align()) }
}

/// Where the data of a fresh block `p` for `layout` starts: the next of the
/// page's offsets aligned as asked, seven lines apart (7 is odd, so every
/// offset comes round).
#[inline]
fn colored(p: *mut u8, layout: &Layout) -> *mut u8 {
    if p.is_null() || !offset_data(layout) {
        return p;
    }
    let step = layout.align().max(LINE);
    let n = COLOR.fetch_add(7, Ordering::Relaxed);
    // SAFETY: the offset is below the page `padded` added.
    unsafe { p.add(n % (PAGE_4K / step) * step) }
}

/// The block (the mapping's start) a kept request's data `ptr` lies in.
#[inline]
fn block_of(ptr: *mut u8, layout: &Layout) -> usize {
    if offset_data(layout) {
        ptr as usize & !(PAGE_4K - 1)
    } else {
        ptr as usize
    }
}

/// The size of the mapping for a kept request: 64 KB pages (2 MB from
/// `HUGE` up), then the top three bits kept (4 classes per doubling, at
/// most 25% more address space; untouched pages cost no memory). `dealloc`
/// is given the request's size, so the class is how it knows the mapping's.
fn class_size(size: usize) -> usize {
    let page = if size >= HUGE { PAGE_2M } else { PAGE_64K };
    let pages = size.div_ceil(page).max(1) * page;
    let unit = (1usize << (usize::BITS - pages.leading_zeros()).saturating_sub(3)).max(page);
    pages.div_ceil(unit).checked_mul(unit).unwrap_or(size)
}

/// Whether a request of class `class` may borrow a kept block of `cap`
/// bytes whole (see `Cache::find`).
#[inline]
fn lendable(cap: usize, class: usize) -> bool {
    cap > class && cap / 2 <= class
}

/// Classes from `HUGE` up are 2 MB-aligned (whole huge pages).
#[inline]
fn block_align(class: usize) -> usize {
    if class >= HUGE {
        PAGE_2M
    } else {
        PAGE_4K
    }
}

/// Maps `len` fresh (zero) bytes aligned to `align` (see `advise`); null
/// on failure.
#[cfg(target_os = "linux")]
unsafe fn map(len: usize, align: usize) -> *mut u8 {
    let extra = if align > PAGE_4K { align } else { 0 };
    let Some(total) = len.checked_add(extra) else {
        return std::ptr::null_mut();
    };
    let p = libc::mmap(
        std::ptr::null_mut(),
        total,
        libc::PROT_READ | libc::PROT_WRITE,
        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
        -1,
        0,
    );
    if p == libc::MAP_FAILED {
        return std::ptr::null_mut();
    }
    let start = p as usize;
    let at = start.next_multiple_of(align.max(PAGE_4K));
    if at > start {
        libc::munmap(p, at - start);
    }
    if start + total > at + len {
        libc::munmap((at + len) as *mut libc::c_void, start + total - at - len);
    }
    advise(at as *mut u8, len);
    at as *mut u8
}

/// Resizes a mapping of `old` bytes to `len`, moving its pages (no copy,
/// no fault; a grown tail is fresh); null when the kernel refuses, the old
/// mapping then unchanged.
#[cfg(target_os = "linux")]
unsafe fn remap(p: usize, old: usize, len: usize) -> *mut u8 {
    let q = libc::mremap(p as *mut libc::c_void, old, len, libc::MREMAP_MAYMOVE);
    if q == libc::MAP_FAILED {
        return std::ptr::null_mut();
    }
    advise(q as *mut u8, len);
    q as *mut u8
}

#[cfg(target_os = "linux")]
unsafe fn unmap(p: usize, len: usize) {
    libc::munmap(p as *mut libc::c_void, len);
}

// Never called elsewhere: `is_kept` is false off Linux.
#[cfg(not(target_os = "linux"))]
unsafe fn map(_: usize, _: usize) -> *mut u8 {
    std::ptr::null_mut()
}
#[cfg(not(target_os = "linux"))]
unsafe fn remap(_: usize, _: usize, _: usize) -> *mut u8 {
    std::ptr::null_mut()
}
#[cfg(not(target_os = "linux"))]
unsafe fn unmap(_: usize, _: usize) {}

unsafe fn advise(p: *mut u8, size: usize) {
    #[cfg(target_os = "linux")]
    if !p.is_null() && size >= HUGE && wants_huge_pages() {
        // A hint: failure (e.g. THP disabled) changes nothing.
        libc::madvise(p.cast(), size, libc::MADV_HUGEPAGE);
    }
}

/// Which blocks are advised for huge pages (`REFERRALGRAPH_HUGE_PAGES`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum HugeMode {
    /// Blocks allocated inside [`huge_tables`] (the default).
    Tables = 1,
    /// Every block from `HUGE` up.
    All = 2,
    /// None.
    Off = 3,
}

/// The mode, read from the environment on first use (0: not yet read).
static HUGE_MODE: AtomicU8 = AtomicU8::new(0);

fn huge_mode() -> HugeMode {
    match HUGE_MODE.load(Ordering::Relaxed) {
        2 => HugeMode::All,
        3 => HugeMode::Off,
        1 => HugeMode::Tables,
        _ => {
            // `getenv`, not `std::env`: the allocator must not allocate.
            // SAFETY: a NUL-terminated name; the value is read at once.
            let v = unsafe { libc::getenv(c"REFERRALGRAPH_HUGE_PAGES".as_ptr()) };
            let mode = if v.is_null() {
                HugeMode::Tables
            } else {
                // SAFETY: getenv returned a NUL-terminated string.
                match unsafe { std::ffi::CStr::from_ptr(v) }.to_bytes() {
                    b"all" => HugeMode::All,
                    b"off" | b"0" | b"none" => HugeMode::Off,
                    _ => HugeMode::Tables,
                }
            };
            HUGE_MODE.store(mode as u8, Ordering::Relaxed);
            mode
        }
    }
}

std::thread_local! {
    /// Inside `huge_tables` on this thread.
    static IN_TABLES: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with the large blocks it allocates on this thread mapped fresh
/// and advised for huge pages (see the module's note): for a table kept
/// with a graph and read at random by every call. Allocate the table's
/// memory on this thread (`Vec::with_capacity`, then fill it in parallel,
/// or a rayon `collect` into a `Vec`, which reserves before it forks).
pub fn huge_tables<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            IN_TABLES.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(IN_TABLES.with(|c| c.replace(true)));
    f()
}

/// A request on this thread wants a fresh advised block (`huge_tables`).
fn in_huge_tables() -> bool {
    huge_mode() == HugeMode::Tables && IN_TABLES.with(|c| c.get())
}

fn wants_huge_pages() -> bool {
    huge_mode() == HugeMode::All || in_huge_tables()
}

/// A kept mapping of `cap` bytes (its size class).
#[derive(Clone, Copy)]
struct Kept {
    ptr: usize,
    cap: usize,
    at_ns: u64,
    /// Advised for huge pages (a table's, see `huge_tables`).
    huge: bool,
}

struct Cache {
    blocks: [Kept; SLOTS],
    len: usize,
    bytes: usize,
    /// Blocks handed out that are advised for huge pages (`Tables` mode
    /// only), so that freed they are kept as such: the next graph's tables
    /// take them, warm and huge. Full, a block goes untracked (kept as a
    /// plain one).
    advised: [usize; SLOTS],
    advised_len: usize,
    /// Blocks handed out for a request of a smaller class (pointer, the
    /// mapping's size): `dealloc` and `realloc` learn their size here, as
    /// the request's layout names only its own class. Full, no block is
    /// lent.
    lent: [(usize, usize); SLOTS],
    lent_len: usize,
}

const EMPTY: Cache = Cache {
    blocks: [Kept {
        ptr: 0,
        cap: 0,
        at_ns: 0,
        huge: false,
    }; SLOTS],
    len: 0,
    bytes: 0,
    advised: [0; SLOTS],
    advised_len: 0,
    lent: [(0, 0); SLOTS],
    lent_len: 0,
};

/// The cache behind a lock of its own rather than a `std::sync::Mutex`: a
/// `fork` while another thread holds it would leave it held for good in
/// the child (whose next large allocation would hang), and a std mutex
/// cannot be released without its guard. [`fork_handlers`] takes it
/// before a fork and releases it on both sides. Held only for a scan of at
/// most `SLOTS` entries, so waiting spins.
struct CacheLock {
    held: AtomicBool,
    cache: UnsafeCell<Cache>,
}

// SAFETY: `cache` is only reached through a `Held`, of which `held` allows
// one at a time.
unsafe impl Sync for CacheLock {}

static CACHE: CacheLock = CacheLock {
    held: AtomicBool::new(false),
    cache: UnsafeCell::new(EMPTY),
};

impl CacheLock {
    fn acquire(&self) {
        let mut spins = 0u32;
        while self
            .held
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            spins += 1;
            if spins < 64 {
                std::hint::spin_loop();
            } else {
                // The holder may have been descheduled (no allocation here).
                std::thread::yield_now();
            }
        }
    }
    fn release(&self) {
        self.held.store(false, Ordering::Release);
    }
}

/// The cache, locked until dropped.
struct Held;

impl Deref for Held {
    type Target = Cache;
    fn deref(&self) -> &Cache {
        // SAFETY: a `Held` exists only while this thread holds the lock.
        unsafe { &*CACHE.cache.get() }
    }
}

impl DerefMut for Held {
    fn deref_mut(&mut self) -> &mut Cache {
        // SAFETY: as for `deref`; `&mut self` makes the borrow unique.
        unsafe { &mut *CACHE.cache.get() }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        CACHE.release();
    }
}

/// Kept bytes at most for `DECAY_NS` (`usize::MAX` until read from the
/// environment on first use), and at most for `BURST_DECAY_NS`.
static BASE: AtomicUsize = AtomicUsize::new(usize::MAX);
static BURST: AtomicUsize = AtomicUsize::new(usize::MAX);
/// The memory the process may use at most, when less than the machine's
/// RAM (a container's cgroup limit): the cache's limits are fractions of
/// it. Set by [`limit_memory_to`].
static RAM_CAP: AtomicUsize = AtomicUsize::new(usize::MAX);

/// Sizes the cache's limits from `bytes` instead of the machine's RAM when
/// that is less: call it with the process's cgroup limit
/// (`sysmem::cgroup_limit`) before the allocator is busy. In a container
/// limited to 4 GiB on a 64 GiB host, a cache sized from the host (8 GiB
/// kept for 10 s, up to 32 GiB for 1 s) would hold the memory the next
/// allocation needs, and the container would be OOM-killed.
pub fn limit_memory_to(bytes: u64) {
    RAM_CAP.store(
        usize::try_from(bytes).unwrap_or(usize::MAX),
        Ordering::Relaxed,
    );
    // Recomputed from the cap on next use.
    BASE.store(usize::MAX, Ordering::Relaxed);
}

#[derive(Clone, Copy)]
struct Limits {
    base: usize,
    burst: usize,
}

/// The thread that gives expired blocks back when nothing else calls the
/// allocator, and the process it runs in (see [`start_reaper`]); null
/// until started. A forked child inherits its parent's, whose thread it
/// does not have: waking that one is harmless (a futex nobody waits on).
static REAPER: AtomicPtr<Reaper> = AtomicPtr::new(std::ptr::null_mut());
/// Set while a thread starts a reaper (cleared in a forked child, where
/// that thread does not exist).
static STARTING: AtomicBool = AtomicBool::new(false);

struct Reaper {
    pid: u32,
    thread: std::thread::Thread,
}

/// Mappings taken out of the cache, unmapped after the lock is dropped
/// (unmapping takes a while).
struct Evicted {
    blocks: [(usize, usize); SLOTS + 1],
    len: usize,
}

impl Evicted {
    fn new() -> Self {
        Evicted {
            blocks: [(0, 0); SLOTS + 1],
            len: 0,
        }
    }
    fn push(&mut self, k: Kept) {
        self.blocks[self.len] = (k.ptr, k.cap);
        self.len += 1;
    }
    /// # Safety
    /// Every block is a mapping of this module no longer in use.
    unsafe fn free(self) {
        for &(p, len) in &self.blocks[..self.len] {
            unmap(p, len);
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

/// The cache's byte limits, base and burst (read once; no allocation, as
/// an allocator must).
fn limits() -> Limits {
    let base = BASE.load(Ordering::Relaxed);
    if base != usize::MAX {
        return Limits {
            base,
            burst: BURST.load(Ordering::Relaxed),
        };
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
        let ram = (pages.max(0) as usize)
            .saturating_mul(page.max(0) as usize)
            .min(RAM_CAP.load(Ordering::Relaxed));
        // A call at 10M users frees ~8 GB of ledger; the next call of a
        // loop would fault all of it in afresh (2-3 s against 1.3 s
        // measured). The burst above the base is given back after a second.
        let base = (ram / 8).min(4 << 30);
        Limits {
            base,
            burst: (ram / 2).max(base),
        }
    } else {
        // SAFETY: getenv returned a NUL-terminated string.
        let s = unsafe { std::ffi::CStr::from_ptr(env) }.to_bytes();
        let mut mb = 0usize;
        for &c in s.iter().take_while(|c| c.is_ascii_digit()) {
            mb = mb.saturating_mul(10).saturating_add((c - b'0') as usize);
        }
        let l = mb.saturating_mul(1 << 20);
        Limits { base: l, burst: l }
    };
    BURST.store(l.burst, Ordering::Relaxed);
    BASE.store(l.base, Ordering::Relaxed);
    l
}

/// What the cache has for a request.
enum Found {
    /// A block of its class.
    Hit(Kept),
    /// Another block, to be resized to the class: its pages are reused.
    Resize(Kept),
}

impl Cache {
    fn remove(&mut self, i: usize) -> Kept {
        let k = self.blocks[i];
        self.len -= 1;
        self.blocks[i] = self.blocks[self.len];
        self.bytes -= k.cap;
        k
    }

    /// Takes out blocks unused for `DECAY_NS`, then, oldest first, those
    /// beyond the base limit unused for `BURST_DECAY_NS` since they were
    /// freed and since `idle_since` (see [`idle_since`]). Returns how long
    /// until the next block expires (`None`: none kept).
    fn decay(&mut self, now: u64, base: usize, idle_since: u64, out: &mut Evicted) -> Option<u64> {
        let mut i = 0;
        while i < self.len {
            if now.saturating_sub(self.blocks[i].at_ns) > DECAY_NS {
                out.push(self.remove(i));
            } else {
                i += 1;
            }
        }
        while self.bytes > base {
            let oldest = self.oldest();
            let age = now.saturating_sub(self.blocks[oldest].at_ns.max(idle_since));
            if age <= BURST_DECAY_NS {
                return Some(BURST_DECAY_NS - age);
            }
            out.push(self.remove(oldest));
        }
        (self.len > 0).then(|| {
            let age = now.saturating_sub(self.blocks[self.oldest()].at_ns);
            DECAY_NS.saturating_sub(age)
        })
    }

    fn oldest(&self) -> usize {
        (0..self.len)
            .min_by_key(|&i| self.blocks[i].at_ns)
            .unwrap_or(0)
    }

    /// A kept block of class `class` aligned to `align`, if any: for a
    /// table an advised one only, else a plain one first.
    fn take(&mut self, class: usize, align: usize, table: bool) -> Option<Kept> {
        let pick = |huge: Option<bool>| {
            (0..self.len).find(|&i| {
                let k = &self.blocks[i];
                k.cap == class && k.ptr.is_multiple_of(align) && huge.is_none_or(|h| k.huge == h)
            })
        };
        let i = if table {
            pick(Some(true))
        } else {
            pick(Some(false)).or_else(|| pick(None))
        }?;
        Some(self.remove(i))
    }

    /// A block of class `class` aligned to `align`: a kept one of that
    /// class, else the smallest kept one up to twice that size, lent as it
    /// is, else (for alignments a page satisfies) the largest smaller one,
    /// to be grown (for a table, advised blocks only).
    /// Growing instead of mapping afresh keeps the pages warm and stops
    /// kept blocks piling up beside new ones. A larger block is never
    /// shrunk: the pages cut off would be faulted in again by the next
    /// request of its size, so a call that frees and requests the same
    /// sizes in another order would fault in part of its memory on every
    /// call (measured: an end-to-end attribution at 2M users, 0.5 GiB
    /// faulted in per call, 0.6-0.8 s instead of 0.3-0.4 s). A block more
    /// than twice as large is left for a request of its size.
    fn find(&mut self, class: usize, align: usize, table: bool) -> Option<Found> {
        if let Some(k) = self.take(class, align, table) {
            return Some(Found::Hit(k));
        }
        let fits = |k: &Kept| k.ptr.is_multiple_of(align) && (!table || k.huge);
        if self.lent_len < SLOTS {
            let lend = (0..self.len)
                .filter(|&i| lendable(self.blocks[i].cap, class) && fits(&self.blocks[i]))
                .min_by_key(|&i| self.blocks[i].cap);
            if let Some(i) = lend {
                let k = self.remove(i);
                self.lend(k.ptr, k.cap);
                return Some(Found::Hit(k));
            }
        }
        if align > PAGE_4K {
            return None;
        }
        let grow = (0..self.len)
            .filter(|&i| self.blocks[i].cap < class && fits(&self.blocks[i]))
            .max_by_key(|&i| self.blocks[i].cap)?;
        Some(Found::Resize(self.remove(grow)))
    }

    /// Records a block handed out for a smaller class (if there is room).
    fn lend(&mut self, ptr: usize, cap: usize) {
        if self.lent_len < SLOTS {
            self.lent[self.lent_len] = (ptr, cap);
            self.lent_len += 1;
        }
    }

    /// The mapping's size of a handed-out block whose request has class
    /// `class` (larger if the block was lent), and forgets a lent one when
    /// `forget`.
    fn size_of(&mut self, ptr: usize, class: usize, forget: bool) -> usize {
        let Some(i) = (0..self.lent_len).find(|&i| self.lent[i].0 == ptr) else {
            return class;
        };
        let cap = self.lent[i].1;
        if forget {
            self.lent_len -= 1;
            self.lent[i] = self.lent[self.lent_len];
        }
        cap
    }

    /// Notes a handed-out block as advised.
    fn advised(&mut self, ptr: usize) {
        if self.advised_len < SLOTS {
            self.advised[self.advised_len] = ptr;
            self.advised_len += 1;
        }
    }

    /// Whether a block given back was advised (and forgets it).
    fn was_advised(&mut self, ptr: usize) -> bool {
        let Some(i) = (0..self.advised_len).find(|&i| self.advised[i] == ptr) else {
            return false;
        };
        self.advised_len -= 1;
        self.advised[i] = self.advised[self.advised_len];
        true
    }

    /// Keeps a freed block, taking out the oldest ones beyond the limits.
    fn keep(&mut self, k: Kept, limit: usize, out: &mut Evicted) {
        self.blocks[self.len] = k;
        self.len += 1;
        self.bytes += k.cap;
        while self.bytes > limit || self.len == SLOTS {
            let oldest = self.oldest();
            out.push(self.remove(oldest));
        }
    }
}

fn lock() -> Held {
    CACHE.acquire();
    Held
}

/// Registers (once per process) handlers that take the cache's lock
/// before a `fork` and release it in the parent and the child, so that the
/// child never inherits it held by a thread it does not have.
pub fn fork_handlers() {
    #[cfg(unix)]
    {
        extern "C" fn prepare() {
            CACHE.acquire();
        }
        extern "C" fn after() {
            CACHE.release();
        }
        extern "C" fn after_in_child() {
            STARTING.store(false, Ordering::Relaxed);
            // Calls in flight in other threads of the parent are not the
            // child's.
            BUSY.store(0, Ordering::Relaxed);
            CACHE.release();
        }
        static ONCE: std::sync::Once = std::sync::Once::new();
        // SAFETY: the handlers neither allocate nor take other locks. A
        // failure (ENOMEM) leaves forking as unsafe as it was.
        ONCE.call_once(|| unsafe {
            libc::pthread_atfork(Some(prepare), Some(after), Some(after_in_child));
        });
    }
}

/// A block for a kept-size `layout`: a kept one of its class, a kept one
/// resized, or a fresh mapping. Returns the block and whether it is known
/// to be zero (fresh).
unsafe fn obtain(layout: &Layout) -> (*mut u8, bool) {
    let class = class_size(layout.size());
    // A kept block need only have the alignment asked for; fresh ones get
    // their class's (whole huge pages).
    let align = block_align(class).max(layout.align());
    let mut out = Evicted::new();
    let l = limits();
    let table = in_huge_tables();
    let found = if l.burst == 0 {
        None
    } else {
        let now = now_ns();
        let mut c = lock();
        c.decay(now, l.base, idle_since(now), &mut out);
        c.find(class, layout.align(), table)
    };
    out.free();
    // Whether the block is advised: a kept one as it was; a table's fresh
    // or resized one by `map` / `remap`.
    let fresh = table && class >= HUGE;
    let (p, zero, huge) = match found {
        Some(Found::Hit(k)) => (k.ptr as *mut u8, false, k.huge),
        Some(Found::Resize(k)) => {
            let p = remap(k.ptr, k.cap, class);
            if p.is_null() {
                unmap(k.ptr, k.cap);
                (map(class, align), true, fresh)
            } else {
                (p, false, k.huge || fresh)
            }
        }
        None => (map(class, align), true, fresh),
    };
    if huge && !p.is_null() {
        lock().advised(p as usize);
    }
    (p, zero)
}

/// Wakes the reaper to recompute when the next block expires (no
/// allocation: a futex wake).
fn wake_reaper() {
    // SAFETY: a non-null REAPER points to a leaked `Reaper`.
    if let Some(r) = unsafe { REAPER.load(Ordering::Acquire).as_ref() } {
        r.thread.unpark();
    }
}

/// Calls in flight (see [`busy`]).
static BUSY: AtomicUsize = AtomicUsize::new(0);
/// When the last call in flight ended (`now_ns`).
static IDLE_SINCE_NS: AtomicU64 = AtomicU64::new(0);

/// Marks a call in flight until the guard drops: kept blocks beyond the
/// base limit age only while none is (`Cache::decay`). `pool::run` takes
/// one, so every parallel call of the crate counts.
pub fn busy() -> Busy {
    BUSY.fetch_add(1, Ordering::AcqRel);
    Busy(())
}

/// See [`busy`].
pub struct Busy(());

/// Since when no call has been in flight (`now` while one is): kept blocks
/// beyond the base limit age only from then on, so a loop's next call
/// finds its memory however long the work between its calls takes (at 10M
/// users the 2 s graph build between two attributions cost the second 1M
/// page faults when they aged from their freeing).
fn idle_since(now: u64) -> u64 {
    match BUSY.load(Ordering::Acquire) {
        0 => IDLE_SINCE_NS.load(Ordering::Acquire),
        _ => now,
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        IDLE_SINCE_NS.store(now_ns(), Ordering::Release);
        // Saturating: a guard taken before a fork drops in a child whose
        // count was reset.
        let was = BUSY.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            Some(n.saturating_sub(1))
        });
        if was == Ok(1) {
            // The reaper may sleep until a time computed while busy.
            wake_reaper();
        }
    }
}

/// Gives every kept block back to the system; returns the bytes released.
pub fn release_cached() -> usize {
    let mut out = Evicted::new();
    let bytes = {
        let mut c = lock();
        let bytes = c.bytes;
        while c.len > 0 {
            out.push(c.remove(0));
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

/// Starts (once per process) a thread that gives kept blocks back when
/// they expire. Without it, blocks expire only when the allocator is next
/// called for a large block, so a process that goes on to other work (or
/// sleeps) would hold them. Idle, the thread is parked; it wakes when a
/// block is kept and when the oldest one expires.
pub fn start_reaper() {
    ensure_reaper(true);
}

/// Starts this process's reaper if an ancestor process started one: a
/// forked child (a gunicorn or Celery worker) inherits the parent's kept
/// blocks but not its reaper thread, and would hold what it keeps for as
/// long as it sits idle. Called when a process builds its worker pool
/// (`pool::pool`), i.e. on its first parallel call; a no-op otherwise.
pub fn restart_reaper_after_fork() {
    ensure_reaper(false);
}

/// Whether this process has a reaper thread of its own.
pub fn has_reaper() -> bool {
    // SAFETY: a non-null REAPER points to a leaked `Reaper`, never freed.
    unsafe { REAPER.load(Ordering::Acquire).as_ref() }.is_some_and(|r| r.pid == std::process::id())
}

fn ensure_reaper(first: bool) {
    if has_reaper() || (!first && REAPER.load(Ordering::Acquire).is_null()) {
        return;
    }
    // One starter at a time; a caller that loses the race goes on (the
    // winner's reaper serves the whole process).
    if STARTING
        .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        return;
    }
    if !has_reaper() {
        let spawned = std::thread::Builder::new()
            .name("referralgraph-reaper".into())
            .spawn(|| loop {
                let mut out = Evicted::new();
                let now = now_ns();
                let wait = lock().decay(now, limits().base, idle_since(now), &mut out);
                // SAFETY: evicted blocks are no longer in the cache nor in use.
                unsafe { out.free() };
                match wait {
                    // A wake-up may come early (a block was kept): the loop
                    // then just recomputes the next expiry.
                    Some(ns) => std::thread::park_timeout(std::time::Duration::from_nanos(ns + 1)),
                    None => std::thread::park(),
                }
            });
        // No thread (resource limits): blocks expire on allocator calls.
        if let Ok(handle) = spawned {
            let r = Box::new(Reaper {
                pid: std::process::id(),
                thread: handle.thread().clone(),
            });
            // The one replaced (a parent's) stays leaked: a few bytes per
            // fork generation.
            REAPER.store(Box::into_raw(r), Ordering::Release);
        }
    }
    STARTING.store(false, Ordering::Release);
}

// SAFETY: every kept-size block (see `is_kept`, a function of the layout,
// which the caller passes unchanged to `dealloc` and `realloc`: the
// `GlobalAlloc` contract) is a private anonymous mapping of exactly the
// class of its `padded` size, or of the size the cache records for it as
// lent, its data `colored` less than a page in (so `block_of` finds the
// mapping) and aligned as the request asks; it is unmapped or kept on
// dealloc, and a kept block is owned by the cache alone until `obtain`
// hands it out again. Other blocks go to `System` untouched.
unsafe impl GlobalAlloc for HugePageAlloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_kept(&layout) {
            colored(obtain(&padded(&layout)).0, &layout)
        } else {
            System.alloc(layout)
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !is_kept(&layout) {
            return System.alloc_zeroed(layout);
        }
        let (p, zero) = obtain(&padded(&layout));
        let p = colored(p, &layout);
        if !zero && !p.is_null() {
            // Clearing memory already mapped costs far less than faulting
            // in fresh zeroed pages.
            std::ptr::write_bytes(p, 0, layout.size());
        }
        p
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if !is_kept(&layout) {
            return System.dealloc(ptr, layout);
        }
        let block = block_of(ptr, &layout);
        let cap = lock().size_of(block, class_size(padded(&layout).size()), true);
        give_back(block, cap);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
        let (kept, new_kept) = (is_kept(&layout), is_kept(&new_layout));
        if !kept && !new_kept {
            return System.realloc(ptr, layout, new_size);
        }
        if kept && new_kept && layout.align() <= PAGE_4K {
            // The data keeps its offset in the block wherever it moves.
            let block = block_of(ptr, &layout);
            let color = ptr as usize - block;
            let class = class_size(padded(&layout).size());
            let new = class_size(padded(&new_layout).size());
            let old = lock().size_of(block, class, false);
            // A lent block stays while the new class could have borrowed
            // it (see `Cache::find`): it is still recorded with its size.
            if new == old || (old > class && lendable(old, new)) {
                return ptr;
            }
            // From here the block moves or is resized: no longer lent.
            lock().size_of(block, class, true);
            // A growing Vec: into a kept block of the new class if there is
            // one (copying is several times cheaper than faulting in the
            // pages mremap would add), else move the pages instead of
            // copying them.
            let table = in_huge_tables();
            if new > old && limits().burst > 0 {
                let hit = lock().take(new, layout.align(), table);
                if let Some(k) = hit {
                    if k.huge {
                        lock().advised(k.ptr);
                    }
                    let q = (k.ptr + color) as *mut u8;
                    std::ptr::copy_nonoverlapping(ptr, q, layout.size());
                    give_back(block, old);
                    return q;
                }
            }
            // The pages move with their advice.
            let huge = lock().was_advised(block);
            let q = remap(block, old, new);
            let live = if q.is_null() { block } else { q as usize };
            if huge || (table && !q.is_null() && new >= HUGE) {
                lock().advised(live);
            }
            if !q.is_null() {
                return q.add(color);
            }
            // The kernel refused: a new block and a copy.
            let n = self.alloc(new_layout);
            if n.is_null() {
                // The block stays the caller's, with its size on record
                // (with no room left, its tail beyond `class` leaks when
                // it is freed: a mapping nobody uses, never a fault).
                if old != class {
                    lock().lend(block, old);
                }
            } else {
                std::ptr::copy_nonoverlapping(ptr, n, layout.size().min(new_size));
                give_back(block, old);
            }
            return n;
        }
        let new = self.alloc(new_layout);
        if !new.is_null() {
            std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
            self.dealloc(ptr, layout);
        }
        new
    }
}

/// Keeps (or, beyond the limits, unmaps) a block of `cap` bytes, a mapping
/// of this module no longer in use.
unsafe fn give_back(ptr: usize, cap: usize) {
    let l = limits();
    let mut out = Evicted::new();
    let kept = {
        let mut c = lock();
        let huge = c.was_advised(ptr);
        let now = now_ns();
        let k = Kept {
            ptr,
            cap,
            at_ns: now,
            huge,
        };
        if cap > l.burst {
            out.push(k);
            false
        } else {
            c.decay(now, l.base, idle_since(now), &mut out);
            c.keep(k, l.burst, &mut out);
            true
        }
    };
    if kept {
        // The reaper may be parked with nothing kept: it times this
        // block's expiry.
        wake_reaper();
    }
    out.free();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The block a kept request's data lies in (its data is `colored`).
    fn at(p: *mut u8) -> usize {
        block_of(p, &Layout::new::<u64>())
    }

    /// The class of a kept request of `size` bytes (its block is `padded`).
    fn cls(size: usize) -> usize {
        class_size(padded(&Layout::from_size_align(size, 8).unwrap()).size())
    }

    #[test]
    fn size_classes_cover_requests_with_little_waste() {
        let mut last = 0;
        let sizes = (KEEP..HUGE)
            .step_by(12_345)
            .chain((HUGE..1 << 34).step_by(7_654_321));
        for size in sizes {
            let c = class_size(size);
            let page = if size >= HUGE { PAGE_2M } else { PAGE_64K };
            assert!(c >= size && c.is_multiple_of(page), "{size} -> {c}");
            assert!(
                c as f64 <= size as f64 * 1.25 + page as f64,
                "{size} -> {c}"
            );
            assert!(
                c < HUGE || c.is_multiple_of(PAGE_2M),
                "huge classes are whole huge pages"
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
            assert_eq!(at(big) % PAGE_2M, 0);
            *big.add(HUGE) = 9;
            let back = a.realloc(big, Layout::from_size_align(HUGE + 1, 8).unwrap(), 16);
            assert_eq!(*back, 7);
            a.dealloc(back, Layout::from_size_align(16, 8).unwrap());

            // The freed block is kept, and serves a request of its size class
            // (zeroed when asked), not one of another class.
            assert_eq!(cached_bytes(), cls(HUGE + 1));
            let l = Layout::from_size_align(HUGE + 2, 8).unwrap();
            let again = a.alloc_zeroed(l);
            assert_eq!(at(again), at(big), "the kept block is reused");
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
            // Another class: the kept block is resized for it (its pages
            // reused), not kept beside a fresh mapping.
            assert_eq!(cached_bytes(), 0, "a miss grows the largest smaller block");
            *three.add(3 * HUGE - 1) = 4;
            let two = a.alloc(l2);
            a.dealloc(three, l3);
            a.dealloc(two, l2);
            // A request of a smaller size in the same class gets the block,
            // and it is kept again as that class once freed: a later request
            // of the class's full size still finds it.
            let want = Layout::from_size_align(2 * HUGE - 1000, 8).unwrap();
            assert_eq!(cls(want.size()), cls(l2.size()));
            let fit = a.alloc(want);
            assert_eq!(at(fit), at(two), "same class: reused");
            a.dealloc(fit, want);
            let full = a.alloc(l2);
            assert_eq!(
                at(full),
                at(two),
                "kept as its class, not the smaller request"
            );
            a.dealloc(full, l2);

            // Blocks from KEEP up are kept too, aligned for any request.
            let m = Layout::from_size_align(300 << 10, 64).unwrap();
            let p = a.alloc(m);
            assert_eq!(p as usize % 64, 0);
            a.dealloc(p, m);
            let m2 = Layout::from_size_align(290 << 10, 128).unwrap();
            let p2 = a.alloc(m2);
            assert_eq!(at(p2), at(p), "a medium block of the same class is reused");
            assert_eq!(p2 as usize % 128, 0);
            a.dealloc(p2, m2);
            let small = Layout::from_size_align(KEEP - 1, 8).unwrap();
            assert!(!is_kept(&small));
            assert!(!is_kept(
                &Layout::from_size_align(KEEP, 2 * PAGE_4K).unwrap()
            ));

            // Growing and shrinking kept blocks moves their pages, data kept.
            let g = Layout::from_size_align(KEEP + 5, 8).unwrap();
            let p = a.alloc(g);
            for i in 0..KEEP + 5 {
                *p.add(i) = (i % 251) as u8;
            }
            let q = a.realloc(p, g, 10 * HUGE + 3);
            assert!((0..KEEP + 5).all(|i| *q.add(i) == (i % 251) as u8));
            *q.add(10 * HUGE + 2) = 1;
            let big = Layout::from_size_align(10 * HUGE + 3, 8).unwrap();
            let r = a.realloc(q, big, HUGE);
            assert!((0..KEEP + 5).all(|i| *r.add(i) == (i % 251) as u8));
            a.dealloc(r, Layout::from_size_align(HUGE, 8).unwrap());

            // Growing into a class that has a kept block takes that block
            // (warm pages) and copies, instead of adding fresh pages.
            let warm = a.alloc(l2);
            a.dealloc(warm, l2);
            let p = a.alloc(g);
            *p.add(KEEP + 4) = 3;
            let q = a.realloc(p, g, l2.size());
            assert_eq!(at(q), at(warm), "the kept block of the new class");
            assert_eq!(
                q as usize - at(q),
                p as usize - at(p),
                "the data keeps its offset"
            );
            assert_eq!(*q.add(KEEP + 4), 3);
            a.dealloc(q, l2);

            // A kept block up to twice a request's class is lent as it is,
            // never shrunk (its pages stay warm for the next request of its
            // size), and kept again at its own size once freed.
            release_cached();
            let big = Layout::from_size_align(6 * HUGE, 8).unwrap();
            let b = a.alloc(big);
            *b.add(big.size() - 1) = 1;
            a.dealloc(b, big);
            let half = Layout::from_size_align(4 * HUGE + 1, 8).unwrap();
            assert!(cls(half.size()) < cls(big.size()));
            assert!(cls(big.size()) <= 2 * cls(half.size()));
            let p = a.alloc(half);
            assert_eq!(at(p), at(b), "lent");
            assert_eq!(cached_bytes(), 0);
            *p.add(half.size() - 1) = 2;
            // Grown within the lent block's size: it stays.
            let grown = Layout::from_size_align(5 * HUGE, 8).unwrap();
            assert_eq!(a.realloc(p, half, grown.size()), p);
            assert_eq!(*p.add(half.size() - 1), 2);
            a.dealloc(p, grown);
            assert_eq!(cached_bytes(), cls(big.size()), "its own size");
            assert_eq!(lock().lent_len, 0);
            // Grown past it: resized, and no longer on record as lent.
            let p = a.alloc(half);
            assert_eq!(at(p), at(b));
            *p.add(half.size() - 1) = 2;
            let past = Layout::from_size_align(7 * HUGE, 8).unwrap();
            let q = a.realloc(p, half, past.size());
            assert_eq!(*q.add(half.size() - 1), 2);
            *q.add(past.size() - 1) = 3;
            assert_eq!(lock().lent_len, 0);
            a.dealloc(q, past);
            assert_eq!(cached_bytes(), cls(past.size()));
            // More than twice a request's class: left whole for its size.
            let t = a.alloc(g);
            assert_ne!(at(t), at(q));
            assert_eq!(cached_bytes(), cls(past.size()), "not shrunk");
            a.dealloc(t, g);
            let again = Layout::from_size_align(past.size() - 1, 8).unwrap();
            let q2 = a.alloc(again);
            assert_eq!(at(q2), at(q));
            a.dealloc(q2, again);
            // A request larger than every kept block grows the largest
            // smaller one.
            release_cached();
            let t = a.alloc(g);
            a.dealloc(t, g);
            let m1 = a.alloc(Layout::from_size_align(2 * KEEP, 8).unwrap());
            assert_eq!(cached_bytes(), 0, "grown from below");
            a.dealloc(m1, Layout::from_size_align(2 * KEEP, 8).unwrap());

            // Older blocks go first once the count is reached.
            let mut held = Vec::new();
            for _ in 0..SLOTS + 3 {
                held.push(a.alloc(l));
            }
            for &p in &held {
                a.dealloc(p, l);
            }
            assert!(lock().len < SLOTS);
            assert!(cached_bytes() <= limits().burst);
            let released = release_cached();
            assert!(released >= HUGE);
            assert_eq!(cached_bytes(), 0);
        }
    }

    #[test]
    fn blocks_held_side_by_side_start_at_different_cache_lines() {
        // In a child: other tests' allocations would advance the offsets.
        crate::pool::in_forked_child(|| {
            let a = HugePageAlloc;
            let mut ok = true;
            for align in [8, 64, 128] {
                let l = Layout::from_size_align(HUGE, align).unwrap();
                let held: Vec<_> = (0..PAGE_4K / align.max(LINE))
                    .map(|_| unsafe { a.alloc(l) })
                    .collect();
                let mut offsets: Vec<_> = held.iter().map(|&p| p as usize % PAGE_4K).collect();
                offsets.sort();
                offsets.dedup();
                // Every offset once, each aligned as asked.
                ok &= offsets.len() == held.len();
                for &p in &held {
                    ok &= (p as usize).is_multiple_of(align.max(LINE));
                    // The whole request lies in its block.
                    unsafe {
                        *p.add(l.size() - 1) = 1;
                        a.dealloc(p, l);
                    }
                }
            }
            // Page-aligned requests get the block's start.
            let l = Layout::from_size_align(HUGE, PAGE_4K).unwrap();
            let p = unsafe { a.alloc(l) };
            ok &= (p as usize).is_multiple_of(PAGE_4K);
            unsafe { a.dealloc(p, l) };
            ok
        })
        .unwrap();
    }

    #[test]
    fn a_fork_never_leaves_the_cache_locked_in_the_child() {
        use std::sync::atomic::AtomicBool;
        fork_handlers();
        // Another thread holds the lock most of the time, as rayon workers
        // freeing blocks do; a child inheriting it held would hang.
        static STOP: AtomicBool = AtomicBool::new(false);
        let holder = std::thread::spawn(|| {
            while !STOP.load(Ordering::Relaxed) {
                let _held = lock();
                for _ in 0..2_000 {
                    std::hint::spin_loop();
                }
            }
        });
        let forks: Result<Vec<()>, String> = (0..30)
            .map(|_| crate::pool::in_forked_child(|| cached_bytes() < usize::MAX))
            .collect();
        STOP.store(true, Ordering::Relaxed);
        holder.join().unwrap();
        forks.unwrap();
    }

    /// `THPeligible` of the mapping holding `p` (`None`: not found).
    fn thp_eligible(p: *const u8) -> Option<bool> {
        let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
        let at = p as usize;
        let mut inside = false;
        for line in smaps.lines() {
            let range = line.split(' ').next().and_then(|r| r.split_once('-'));
            if let Some((lo, hi)) = range {
                if let (Ok(lo), Ok(hi)) =
                    (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16))
                {
                    inside = lo <= at && at < hi;
                    continue;
                }
            }
            if inside {
                if let Some(v) = line.strip_prefix("THPeligible:") {
                    return Some(v.trim() == "1");
                }
            }
        }
        None
    }

    #[test]
    fn only_tables_get_huge_pages_and_fresh_mappings() {
        // `madvise` mode THP is where the advice decides (the common
        // default; the test says nothing under `always` or `never`).
        let mode = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled");
        let advised_only = mode.is_ok_and(|m| m.contains("[madvise]"));
        // In a child: the cache and the mode are process-wide.
        crate::pool::in_forked_child(|| {
            let a = HugePageAlloc;
            let l = Layout::from_size_align(2 * HUGE, 8).unwrap();
            release_cached();
            HUGE_MODE.store(HugeMode::Tables as u8, Ordering::Relaxed);
            unsafe {
                let plain = a.alloc(l);
                *plain = 1;
                let plain_huge = thp_eligible(plain);
                a.dealloc(plain, l);
                // A table does not take the kept block (4 KB pages) ...
                let table = huge_tables(|| a.alloc(l));
                *table = 1;
                let table_huge = thp_eligible(table);
                let fresh = at(table) != at(plain) && cached_bytes() == cls(l.size());
                // ... which serves the next plain request of its class.
                let reused = at(a.alloc(l)) == at(plain);
                // Freed, a table's block is kept as advised: the next table
                // takes it (warm and huge), and a plain request takes a
                // plain block before it.
                a.dealloc(table, l);
                a.dealloc(plain, l);
                let plain_first = at(a.alloc(l)) == at(plain);
                let table_again = at(huge_tables(|| a.alloc(l))) == at(table);
                let still_huge = thp_eligible(table) == table_huge;
                a.dealloc(plain, l);
                a.dealloc(table, l);
                // A plain request takes an advised block when no other is
                // kept, and gives it back as advised.
                release_cached();
                let only = huge_tables(|| a.alloc(l));
                a.dealloc(only, l);
                let taken = at(a.alloc(l)) == at(only);
                a.dealloc(only, l);
                let kept_advised = at(huge_tables(|| a.alloc(l))) == at(only);
                a.dealloc(only, l);
                let reuse = plain_first && table_again && still_huge && taken && kept_advised;
                // The scope ends on a panic too.
                let caught = std::panic::catch_unwind(|| huge_tables(|| panic!("in a table")));
                let restored = caught.is_err() && !wants_huge_pages();
                // `all`: every large block is advised.
                HUGE_MODE.store(HugeMode::All as u8, Ordering::Relaxed);
                release_cached();
                let any = a.alloc(l);
                *any = 1;
                let any_huge = thp_eligible(any);
                a.dealloc(any, l);
                HUGE_MODE.store(HugeMode::Off as u8, Ordering::Relaxed);
                release_cached();
                let off = huge_tables(|| a.alloc(l));
                *off = 1;
                let off_huge = thp_eligible(off);
                a.dealloc(off, l);
                let advice = !advised_only
                    || (plain_huge == Some(false)
                        && table_huge == Some(true)
                        && any_huge == Some(true)
                        && off_huge == Some(false));
                // The mode comes from the environment, read once.
                let parsed = [
                    ("all", HugeMode::All),
                    ("off", HugeMode::Off),
                    ("x", HugeMode::Tables),
                ]
                .into_iter()
                .all(|(v, want)| {
                    std::env::set_var("REFERRALGRAPH_HUGE_PAGES", v);
                    HUGE_MODE.store(0, Ordering::Relaxed);
                    huge_mode() == want
                });
                fresh && reused && reuse && restored && advice && parsed
            }
        })
        .unwrap();
    }

    #[test]
    fn a_memory_cap_below_the_ram_sizes_the_cache() {
        // In a child: the cap is process-wide state.
        let both = || {
            let l = limits();
            (l.base, l.burst)
        };
        crate::pool::in_forked_child(|| {
            let ram = both();
            limit_memory_to(64 << 20);
            let capped = both();
            limit_memory_to(u64::MAX);
            capped == (8 << 20, 32 << 20) && both() == ram
        })
        .unwrap();
    }

    #[test]
    fn a_forked_child_starts_its_own_reaper_with_its_pool() {
        fork_handlers();
        start_reaper();
        assert!(has_reaper());
        // The child inherits the parent's reaper record but not its thread;
        // its first parallel call (building its pool) starts its own.
        crate::pool::in_forked_child(|| {
            let before = has_reaper();
            crate::pool::pool();
            // The thread names itself once it runs: look for a while.
            let named = || {
                std::fs::read_dir("/proc/self/task").is_ok_and(|tasks| {
                    tasks.flatten().any(|t| {
                        std::fs::read_to_string(t.path().join("comm"))
                            .is_ok_and(|c| c.trim() == "referralgraph-r")
                    })
                })
            };
            let named = (0..200).any(|_| {
                named() || {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                    false
                }
            });
            !before && has_reaper() && named
        })
        .unwrap();
        assert!(has_reaper(), "the parent keeps its own");
    }

    #[test]
    fn blocks_beyond_the_base_limit_expire_first() {
        let mut c = EMPTY;
        let mut none = Evicted::new();
        let s = 1_000_000_000u64;
        // Three 4 MB blocks freed at 0 s, 1 s and 1.5 s; base limit 8 MB.
        for (i, at) in [0, s, 3 * s / 2].into_iter().enumerate() {
            let k = Kept {
                ptr: (i + 1) * HUGE,
                cap: HUGE,
                at_ns: 100 * s + at,
                huge: false,
            };
            c.keep(k, usize::MAX, &mut none);
        }
        assert_eq!(none.len, 0);
        // At 0.5 s nothing has expired; the oldest is over the base limit
        // and goes at 1 s.
        let mut out = Evicted::new();
        assert_eq!(c.decay(100 * s + s / 2, 2 * HUGE, 0, &mut out), Some(s / 2));
        assert_eq!(out.len, 0);
        // At 2.2 s the oldest has gone (beyond the base, over 1 s old); the
        // rest are within the base and wait for the 10 s decay of the one
        // freed at 1 s.
        assert_eq!(
            c.decay(100 * s + 22 * s / 10, 2 * HUGE, 0, &mut out),
            Some(88 * s / 10)
        );
        assert_eq!((out.len, out.blocks[0].0), (1, HUGE));
        assert_eq!(c.bytes, 2 * HUGE);
        // At 11.2 s the block freed at 1 s has decayed; at 12 s both.
        assert_eq!(
            c.decay(100 * s + 112 * s / 10, 2 * HUGE, 0, &mut out),
            Some(3 * s / 10)
        );
        assert_eq!(c.decay(100 * s + 12 * s, 2 * HUGE, 0, &mut out), None);
        assert_eq!((out.len, c.len, c.bytes), (3, 0, 0));

        // Beyond the base a block ages only while no call is in flight:
        // freed at 0 s, a call running until 3 s keeps it until 4 s.
        let mut out = Evicted::new();
        for i in 0..3 {
            let k = Kept {
                ptr: (i + 1) * HUGE,
                cap: HUGE,
                at_ns: 100 * s,
                huge: false,
            };
            c.keep(k, usize::MAX, &mut none);
        }
        let busy_at = |t: u64| 100 * s + t;
        assert_eq!(
            c.decay(busy_at(2 * s), 2 * HUGE, busy_at(2 * s), &mut out),
            Some(s)
        );
        assert_eq!(
            c.decay(busy_at(7 * s / 2), 2 * HUGE, 103 * s, &mut out),
            Some(s / 2)
        );
        assert_eq!(out.len, 0);
        c.decay(busy_at(41 * s / 10), 2 * HUGE, 103 * s, &mut out);
        assert_eq!((out.len, c.bytes), (1, 2 * HUGE));
    }

    #[test]
    fn the_idle_clock_starts_when_the_last_call_ends() {
        // In a child: the count of calls in flight is process-wide.
        crate::pool::in_forked_child(|| {
            let before = now_ns();
            let outer = busy();
            let inner = busy();
            let t = now_ns();
            let held = idle_since(t) == t;
            drop(inner);
            let still = idle_since(t + 1) == t + 1;
            let ended = now_ns();
            drop(outer);
            let since = idle_since(u64::MAX);
            held && still && since >= ended && since <= now_ns() && since >= before
        })
        .unwrap();
    }
}
