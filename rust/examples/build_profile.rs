//! Times the synthetic generator and the forest build (for profiling).
use referralgraph_core::synthetic::{program, Params};
use referralgraph_core::{Forest, OnInvalid};
use std::time::Instant;

#[global_allocator]
static ALLOC: referralgraph_core::alloc::HugePageAlloc = referralgraph_core::alloc::HugePageAlloc;

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000_000);
    let t = Instant::now();
    let (r, _e) = program(&Params::new(n, 0));
    eprintln!("generate: {:?}", t.elapsed());
    let t = Instant::now();
    let f = Forest::build(&r.input(), OnInvalid::Raise).unwrap();
    eprintln!("build: {:?} ({} users)", t.elapsed(), f.forest.num_users());
}
