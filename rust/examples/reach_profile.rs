//! Times the reach pass on a synthetic program (for profiling).
use referralgraph_core::reach::reach;
use referralgraph_core::synthetic::{program, Params};
use referralgraph_core::{Forest, OnInvalid};
use std::time::Instant;

#[global_allocator]
static ALLOC: referralgraph_core::alloc::HugePageAlloc = referralgraph_core::alloc::HugePageAlloc;

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let k: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(3);
    let (r, _) = program(&Params::new(n, 0));
    let f = Forest::build(&r.input(), OnInvalid::Raise).unwrap().forest;
    let t = Instant::now();
    f.children_csr();
    println!("children csr {:?}", t.elapsed());
    let t = Instant::now();
    f.bfs();
    println!("bfs layout {:?}", t.elapsed());
    for _ in 0..3 {
        let t = Instant::now();
        let r = reach(&f, k);
        println!("reach {:?} ({} levels)", t.elapsed(), r.levels.len());
    }
}
