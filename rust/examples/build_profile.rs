//! Times the synthetic generator, the forest build and the tables built on
//! a graph's first attribution (for profiling). RG_STR=1: string ids ("u"
//! + the number); RG_REPS: builds (default 2).
use referralgraph_core::synthetic::{program, Params};
use referralgraph_core::{Forest, IdRef, OnInvalid};
use std::time::Instant;

#[global_allocator]
static ALLOC: referralgraph_core::alloc::HugePageAlloc = referralgraph_core::alloc::HugePageAlloc;

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000_000);
    let t = Instant::now();
    let (r, e) = program(&Params::new(n, 0));
    eprintln!("generate: {:?}", t.elapsed());
    let strings = std::env::var_os("RG_STR").is_some();
    let sids = r.string_ids();
    let input = if strings {
        r.input_str(&sids)
    } else {
        r.input()
    };
    // Twice: the first build pays the page faults of fresh memory.
    let reps: usize = std::env::var("RG_REPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    for _ in 0..reps {
        let t = Instant::now();
        let f = Forest::build(&input, OnInvalid::Raise).unwrap().forest;
        eprintln!("build: {:?} ({} users)", t.elapsed(), f.num_users());
        let t = Instant::now();
        f.ancestors();
        eprintln!("  ancestors (chains for integer ids): {:?}", t.elapsed());
        let t = Instant::now();
        f.depth_u8();
        eprintln!("  depth u8: {:?}", t.elapsed());
        let t = Instant::now();
        if strings {
            f.lookup_many(1, |_| Some(IdRef::Str(b"u1")));
        } else {
            f.lookup_ints(&e.user_id[..1], |_| true);
        }
        eprintln!("  keyed index: {:?}", t.elapsed());
    }
}
