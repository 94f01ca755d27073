//! The floor under attribution at 2M users / 5M events: what writing the
//! ledger's seven columns (10.4M rows) costs on all cores into warm memory,
//! with nothing computed, and with one random 64-byte record read per event
//! (a buyer's ancestor chain) fetched ahead as the walk does. Compare with
//! the walk in `attr_profile`.
use rayon::prelude::*;
use std::time::{Duration, Instant};

#[global_allocator]
static ALLOC: referralgraph_core::alloc::HugePageAlloc = referralgraph_core::alloc::HugePageAlloc;

const USERS: usize = 2_000_000;
const EVENTS: usize = 4_999_977;
const ROWS: usize = 10_417_836;
const CHUNK: usize = 8192;
const AHEAD: usize = 32;

#[repr(align(64))]
#[derive(Clone, Copy)]
struct Record([u64; 8]);

fn pass(events: &[i64], buyer: &[u32], chains: Option<&[Record]>) -> Duration {
    let t = Instant::now();
    let mut cols: Vec<Vec<i64>> = (0..6).map(|_| Vec::with_capacity(ROWS)).collect();
    let mut level: Vec<u8> = Vec::with_capacity(ROWS);
    let ptrs: Vec<usize> = cols.iter_mut().map(|c| c.as_mut_ptr() as usize).collect();
    let lp = level.as_mut_ptr() as usize;
    (0..EVENTS.div_ceil(CHUNK)).into_par_iter().for_each(|c| {
        let (lo, hi) = (c * CHUNK, ((c + 1) * CHUNK).min(EVENTS));
        for r in lo..hi {
            let mut v = events[r];
            if let Some(ch) = chains {
                if r + AHEAD < hi {
                    referralgraph_core::ids::prefetch(&ch[buyer[r + AHEAD] as usize]);
                }
                v ^= ch[buyer[r] as usize].0[1] as i64;
            }
            // Event r's rows: an even share of the ledger, like the real
            // program's 2.08 per event.
            for at in r * ROWS / EVENTS..(r + 1) * ROWS / EVENTS {
                // SAFETY: `at` < ROWS, within every column's capacity, and
                // each slot belongs to exactly one event.
                unsafe {
                    for (j, &p) in ptrs.iter().enumerate() {
                        *(p as *mut i64).add(at) = v + j as i64;
                    }
                    *(lp as *mut u8).add(at) = (at - r) as u8;
                }
            }
        }
    });
    // SAFETY: every slot below ROWS was written above.
    unsafe {
        for c in cols.iter_mut() {
            c.set_len(ROWS);
        }
        level.set_len(ROWS);
    }
    std::hint::black_box((&cols, &level));
    t.elapsed()
}

fn main() {
    let events: Vec<i64> = (0..EVENTS as i64).collect();
    let mut x = 1u64;
    let buyer: Vec<u32> = (0..EVENTS)
        .map(|_| {
            x = referralgraph_core::ids::mix64(x);
            (x % USERS as u64) as u32
        })
        .collect();
    // On 2 MB pages, like the graph's own chains.
    let chains = referralgraph_core::alloc::huge_tables(|| vec![Record([1; 8]); USERS]);
    for (name, ch) in [
        ("write only", None),
        ("write + chain read", Some(&chains[..])),
    ] {
        // The first pass pays the page faults; the median of the rest.
        let mut ts: Vec<Duration> = (0..9).map(|_| pass(&events, &buyer, ch)).skip(1).collect();
        ts.sort();
        eprintln!(
            "{name}: median {:?} of 8 on {} threads",
            ts[4],
            rayon::current_num_threads()
        );
    }
}
