//! Synthetic social graphs with heavy-tailed degrees (Chung-Lu style): both
//! ends of every edge are drawn from a power law over user ranks, so a few
//! opinion leaders have very many followers and follow many. Self-loops and
//! repeated pairs are left in, as in real exports; the graph builder merges
//! them. Edge i draws from its own random stream: the same edges for a seed
//! on any number of threads.

use rayon::prelude::*;

use crate::rng::Rng;

/// `edges` edges (src, dst) over users 0..nodes whose degrees follow a
/// power law with the given exponent (> 2; 2.1 to 3 is typical).
pub fn power_law(nodes: u64, edges: u64, exponent: f64, seed: u64) -> (Vec<i64>, Vec<i64>) {
    // P(rank r) ~ r^(-a), a = 1 / (exponent - 1), sampled by inverting the
    // continuous CDF on [1, nodes + 1).
    let a = 1.0 / (exponent - 1.0);
    let b = 1.0 - a;
    let top = (nodes as f64 + 1.0).powf(b) - 1.0;
    let draw = move |rng: &mut Rng| -> i64 {
        let x = (1.0 + rng.f64() * top).powf(1.0 / b);
        ((x as u64).clamp(1, nodes) - 1) as i64
    };
    const CHUNK: u64 = 1 << 14;
    let parts: Vec<Vec<(i64, i64)>> = (0..edges.div_ceil(CHUNK))
        .into_par_iter()
        .map(|c| {
            let mut rng = Rng::new(seed, c);
            (c * CHUNK..((c + 1) * CHUNK).min(edges))
                .map(|_| (draw(&mut rng), draw(&mut rng)))
                .collect()
        })
        .collect();
    let mut src = Vec::with_capacity(edges as usize);
    let mut dst = Vec::with_capacity(edges as usize);
    for p in parts {
        for (s, d) in p {
            src.push(s);
            dst.push(d);
        }
    }
    (src, dst)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn degrees_are_heavy_tailed_and_reproducible() {
        let (s, d) = power_law(10_000, 100_000, 2.5, 3);
        assert_eq!((s.clone(), d.clone()), power_law(10_000, 100_000, 2.5, 3));
        assert!(s.iter().chain(&d).all(|&x| (0..10_000).contains(&x)));
        let mut deg = vec![0u32; 10_000];
        for &x in &s {
            deg[x as usize] += 1;
        }
        let max = *deg.iter().max().unwrap();
        assert!(max > 100 * 10, "max out-degree {max} vs mean 10");
        deg.sort_unstable();
        assert!(deg[5_000] < 10, "median {} is below the mean", deg[5_000]);
    }
}
