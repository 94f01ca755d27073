//! Why kept blocks' data starts at a cycling cache-line offset (see
//! `alloc::padded`): seven columns written side by side, as the ledger's
//! are, (a) at the same offset of their pages, 896 MB apart in one
//! mapping, (b) 64 bytes further apart each, (c) as the crate's allocator
//! places seven `Vec`s. Prints the median of three warm passes of each.
//! `cargo run --release -p referralgraph-core --example streams_profile [MB]`
use std::time::{Duration, Instant};

#[global_allocator]
static ALLOC: referralgraph_core::alloc::HugePageAlloc = referralgraph_core::alloc::HugePageAlloc;

const STREAMS: usize = 7;

/// Median of three passes writing element i of every column, then i + 1.
fn passes(cols: &[*mut u64], n: usize) -> Duration {
    let mut times: Vec<Duration> = (0..4u64)
        .map(|pass| {
            let t = Instant::now();
            for i in 0..n {
                for c in cols {
                    // SAFETY: every column holds n elements.
                    unsafe { c.add(i).write_volatile(i as u64 ^ pass) };
                }
            }
            t.elapsed()
        })
        .skip(1) // the first pass faults the pages in
        .collect();
    times.sort();
    times[1]
}

fn main() {
    let mb: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(896);
    let len = mb << 20;
    let n = len / 8;
    for (name, skew) in [("same page offset", 0usize), ("64 B apart", 64)] {
        let stride = len + skew;
        let total = STREAMS * stride + (4 << 20);
        // SAFETY: a private anonymous mapping, unmapped below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                total,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED, "mmap");
        let base = (p as usize).next_multiple_of(2 << 20);
        let cols: Vec<*mut u64> = (0..STREAMS)
            .map(|k| (base + k * stride) as *mut u64)
            .collect();
        eprintln!("{name}: {:?}", passes(&cols, n));
        // SAFETY: the mapping made above, no longer used.
        unsafe { libc::munmap(p, total) };
    }
    let mut vecs: Vec<Vec<u64>> = (0..STREAMS).map(|_| Vec::with_capacity(n)).collect();
    let cols: Vec<*mut u64> = vecs.iter_mut().map(|v| v.as_mut_ptr()).collect();
    eprintln!("crate allocator: {:?}", passes(&cols, n));
}
