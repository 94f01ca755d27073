//! Approximate k-hop reach with HyperLogLog counters: HyperBall (Boldi,
//! Rosa, Vigna, "HyperANF", WWW 2011; "Four degrees of separation", 2012).
//!
//! Every user holds a HyperLogLog counter of m = 2^precision one-byte
//! registers (Flajolet, Fusy, Gandouet, Meunier 2007) for the set of users
//! within t hops. Iteration t sets c_t(u) = c_{t-1}(u) ∪ ⋃_{u→w} c_{t-1}(w):
//! a register-wise max, which the compiler vectorises. Two generations of
//! counters are kept so that iteration t sees exactly t hops: memory is
//! 2 · n · 2^precision bytes, time O(k · (n + m) · 2^precision). The
//! estimate has relative standard error about 1.04 / sqrt(2^precision);
//! small counts use linear counting (the standard small-range correction).

use rayon::prelude::*;

use super::graph::SocialGraph;
use crate::error::{Error, Result};
use crate::ids::mix64;
use crate::progress::Progress;
use crate::sysmem::gib;

/// Smallest and largest supported precision (16 to 65,536 registers).
pub const MIN_PRECISION: u32 = 4;
pub const MAX_PRECISION: u32 = 16;

/// Bytes the counters of `n` users take at `precision`.
pub fn memory_bytes(n: usize, precision: u32) -> u128 {
    2 * n as u128 * (1u128 << precision)
}

/// The precision to run at for `n` users, given `available` bytes
/// (`None`: unknown, nothing is checked). Asked for (`lower` false): the
/// precision itself, or `Memory` when its counters would not fit. Chosen by
/// "auto" (`lower` true): the largest precision up to the one asked for
/// whose counters take at most half the memory available, so the rest of
/// the process keeps room; `Memory` when not even the smallest does.
pub fn fitting_precision(
    n: usize,
    precision: u32,
    available: Option<u64>,
    lower: bool,
) -> Result<u32> {
    let Some(available) = available else {
        return Ok(precision);
    };
    let budget = if lower { available / 2 } else { available };
    let fits = |p: u32| memory_bytes(n, p) <= budget as u128;
    let best = (MIN_PRECISION..=precision).rev().find(|&p| fits(p));
    match best {
        Some(p) if p == precision || lower => Ok(p),
        _ => {
            let hint = match best {
                Some(p) => format!(
                    "lower the precision ({p} needs {}) or use method=\"exact\"",
                    gib(memory_bytes(n, p))
                ),
                None => "use method=\"exact\"".to_string(),
            };
            Err(Error::Memory(format!(
                "HyperLogLog reach at precision {precision} needs {} for {n} users \
                 (2 * users * 2^precision bytes), more than {} of the {} available: {hint}",
                gib(memory_bytes(n, precision)),
                if lower { "half" } else { "all" },
                gib(available as u128),
            )))
        }
    }
}

/// `columns[j][u]`: estimated users within j + 1 hops of u (u excluded).
/// Reports users merged (k passes over all) to `progress`; `Interrupted`
/// once it is cancelled.
pub fn reach_hll(
    g: &SocialGraph,
    k: usize,
    precision: u32,
    progress: &Progress,
) -> Result<Vec<Vec<f64>>> {
    assert!(
        (MIN_PRECISION..=MAX_PRECISION).contains(&precision),
        "precision checked by the caller"
    );
    let n = g.num_nodes();
    progress.start((n * k) as u64);
    let m = 1usize << precision;
    let mut cur = vec![0u8; n * m];
    cur.par_chunks_mut(m).enumerate().for_each(|(u, regs)| {
        let (j, rank) = register_of(u as u64, precision);
        regs[j] = rank;
    });
    let mut next = vec![0u8; n * m];
    let mut cols = Vec::with_capacity(k);
    let est = Estimator::new(m);
    for _ in 0..k {
        let ests: Vec<f64> = next
            .par_chunks_mut(m)
            .enumerate()
            .map(|(u, regs)| {
                if u % 4096 == 0 && progress.advance(4096.min(n - u) as u64).is_err() {
                    return 0.0;
                }
                regs.copy_from_slice(&cur[u * m..(u + 1) * m]);
                for &w in g.out(u as u32).0 {
                    let other = &cur[w as usize * m..(w as usize + 1) * m];
                    for (a, &b) in regs.iter_mut().zip(other) {
                        *a = (*a).max(b);
                    }
                }
                (est.estimate(regs) - 1.0).max(0.0)
            })
            .collect();
        progress.check()?;
        cols.push(ests);
        std::mem::swap(&mut cur, &mut next);
    }
    Ok(cols)
}

/// The register a user's hash falls in and its rank (1 + leading zeros).
fn register_of(u: u64, precision: u32) -> (usize, u8) {
    let h = mix64(u ^ 0x5851_f42d_4c95_7f2d);
    let j = (h >> (64 - precision)) as usize;
    let rest = h << precision;
    let rank = (rest.leading_zeros() + 1).min(64 - precision + 1);
    (j, rank as u8)
}

/// The HyperLogLog estimate with the small-range correction.
pub struct Estimator {
    m: f64,
    alpha_mm: f64,
    pow: [f64; 66],
}

impl Estimator {
    pub fn new(m: usize) -> Self {
        let alpha = match m {
            16 => 0.673,
            32 => 0.697,
            64 => 0.709,
            _ => 0.7213 / (1.0 + 1.079 / m as f64),
        };
        let mut pow = [0.0; 66];
        for (r, p) in pow.iter_mut().enumerate() {
            *p = 2f64.powi(-(r as i32));
        }
        Estimator {
            m: m as f64,
            alpha_mm: alpha * (m * m) as f64,
            pow,
        }
    }

    pub fn estimate(&self, regs: &[u8]) -> f64 {
        let mut sum = 0.0;
        let mut zeros = 0u32;
        for &r in regs {
            sum += self.pow[r as usize];
            zeros += (r == 0) as u32;
        }
        let e = self.alpha_mm / sum;
        if e <= 2.5 * self.m && zeros > 0 {
            self.m * (self.m / zeros as f64).ln()
        } else {
            e
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::social::bfs::reach_exact;
    use crate::social::graph::tests::graph;
    use crate::social::graph::Prob;

    #[test]
    fn precision_is_kept_refused_or_lowered_to_fit_the_memory() {
        let n = 1_000_000;
        // 2 GiB at precision 10, 1 GiB at 9.
        assert_eq!(memory_bytes(n, 10), 2 * n as u128 * 1024);
        let gb = |x: u64| x << 30;
        assert_eq!(fitting_precision(n, 10, None, false).unwrap(), 10);
        assert_eq!(fitting_precision(n, 10, Some(gb(3)), false).unwrap(), 10);
        let err = fitting_precision(n, 10, Some(gb(1) + 5), false).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, Error::Memory(_)));
        assert!(
            msg.contains("precision 10 needs 1.9 GiB for 1000000 users"),
            "{msg}"
        );
        assert!(msg.contains("9 needs 1.0 GiB"), "{msg}");
        // auto: at most half the memory available.
        assert_eq!(fitting_precision(n, 10, Some(gb(5)), true).unwrap(), 10);
        assert_eq!(fitting_precision(n, 10, Some(gb(3)), true).unwrap(), 9);
        assert_eq!(fitting_precision(n, 12, Some(gb(1)), true).unwrap(), 8);
        let none = fitting_precision(n, 10, Some(1 << 20), true).unwrap_err();
        assert!(none.to_string().ends_with("use method=\"exact\""), "{none}");
    }

    #[test]
    fn counter_of_many_users_estimates_their_number() {
        for (n, p) in [(100u64, 10u32), (10_000, 10), (200_000, 12)] {
            let m = 1usize << p;
            let mut regs = vec![0u8; m];
            for u in 0..n {
                let (j, r) = register_of(u, p);
                regs[j] = regs[j].max(r);
            }
            let e = Estimator::new(m).estimate(&regs);
            let rse = 1.04 / (m as f64).sqrt();
            assert!((e - n as f64).abs() <= 4.0 * rse * n as f64, "n={n} e={e}");
        }
    }

    #[test]
    fn matches_exact_on_a_ring_with_chords() {
        let n = 3000i64;
        let mut edges: Vec<(i64, i64)> = (0..n).map(|i| (i, (i + 1) % n)).collect();
        edges.extend((0..n).step_by(7).map(|i| (i, (i * 13 + 5) % n)));
        let g = graph(&edges, Prob::Constant(1.0));
        let exact = reach_exact(&g, 4, &Progress::new()).unwrap();
        let approx = reach_hll(&g, 4, 10, &Progress::new()).unwrap();
        let rse = 1.04 / 32.0;
        for j in 0..4 {
            let mut err2 = 0.0;
            for u in 0..g.num_nodes() {
                let x = exact[j][u] as f64 + 1.0;
                err2 += ((approx[j][u] + 1.0 - x) / x).powi(2);
            }
            let rms = (err2 / g.num_nodes() as f64).sqrt();
            assert!(rms < 2.0 * rse, "hop {}: rms relative error {rms}", j + 1);
        }
    }
}
