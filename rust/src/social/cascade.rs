//! Monte Carlo spread of a seed set under independent cascade (IC) or
//! linear threshold (LT) (Kempe, Kleinberg, Tardos, KDD 2003), optionally
//! cut at `max_hops` hops from the seeds.
//!
//! Both models run in synchronous rounds: the users activated in round t
//! act in round t + 1, so "hop" means the same in both and in the reverse-
//! reachable sets of IMM. IC: each newly active user gets one chance to
//! activate each inactive out-neighbour v, with the edge's p. LT: each user
//! draws a threshold uniform in (0, 1] and becomes active once the weights
//! of its active in-neighbours (normalised to sum to at most 1) reach it.
//!
//! Simulation i draws from its own random stream (seed, i), and simulations
//! are summed in index order, so the answer is the same on any number of
//! threads. Each thread keeps stamped arrays (never cleared).

use rayon::prelude::*;

use super::graph::SocialGraph;
use crate::error::Result;
use crate::ids::UserIx;
use crate::progress::Progress;
use crate::rng::Rng;

/// The diffusion model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Model {
    IndependentCascade,
    LinearThreshold,
}

/// A coin with probability `p`: 24 random bits against p (exact for 0 and 1).
#[inline]
pub fn coin(rng: &mut Rng, p: f32) -> bool {
    ((rng.next_u64() >> 40) as f32) < p * 16_777_216.0
}

/// The first index in `from..len` whose independent p-coin succeeds: the
/// number of failures before a success is geometric, drawn by inversion
/// (Guo, Wang, Wei, Chen, "Influence Maximization Revisited", SIGMOD 2020),
/// so a user's in-list costs its successes rather than its length.
#[inline]
pub fn next_success(rng: &mut Rng, p: f32, from: usize, len: usize) -> Option<usize> {
    if from >= len || p <= 0.0 {
        return None;
    }
    if p >= 1.0 {
        return Some(from);
    }
    let u = 1.0 - rng.f64(); // (0, 1]
    let skip = (u.ln() / (1.0 - p as f64).ln()).floor();
    let j = from as f64 + skip;
    (j < len as f64).then_some(j as usize)
}

/// Mean and standard error of the number of active users.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    pub mean: f64,
    pub stderr: f64,
    pub simulations: u64,
}

/// Per-thread scratch for simulations.
struct Scratch {
    /// `active[v] == mark`: v is active in the current simulation.
    active: Vec<u32>,
    /// LT: `touched[v] == mark`: v has a threshold and a weight this time.
    touched: Vec<u32>,
    weight: Vec<f32>,
    threshold: Vec<f32>,
    frontier: Vec<UserIx>,
    next: Vec<UserIx>,
    mark: u32,
}

impl Scratch {
    fn new(n: usize, lt: bool) -> Self {
        let m = if lt { n } else { 0 };
        Scratch {
            active: vec![0; n],
            touched: vec![0; m],
            weight: vec![0.0; m],
            threshold: vec![0.0; m],
            frontier: Vec::new(),
            next: Vec::new(),
            mark: 0,
        }
    }

    fn bump(&mut self) {
        self.mark = self.mark.wrapping_add(1);
        if self.mark == 0 {
            self.active.fill(0);
            self.touched.fill(0);
            self.mark = 1;
        }
    }
}

/// Estimates the expected number of users a seed set activates (seeds
/// included) from `simulations` runs. `seeds` are node indices (duplicates
/// are ignored); `lt_scale` is `g.lt_scale()` for LT (ignored for IC).
#[allow(clippy::too_many_arguments)]
pub fn spread(
    g: &SocialGraph,
    seeds: &[UserIx],
    model: Model,
    simulations: u64,
    seed: u64,
    max_hops: Option<u32>,
    lt_scale: &[f32],
    progress: &Progress,
) -> Result<Spread> {
    const CHUNK: u64 = 32;
    progress.start(simulations);
    let n = g.num_nodes();
    let lt = model == Model::LinearThreshold;
    let chunks = simulations.div_ceil(CHUNK);
    let sums: Vec<(f64, f64)> = (0..chunks)
        .into_par_iter()
        .map_init(
            || Scratch::new(n, lt),
            |s, c| {
                let (mut a, mut b) = (0.0, 0.0);
                if progress.is_cancelled() {
                    return (a, b);
                }
                for i in c * CHUNK..((c + 1) * CHUNK).min(simulations) {
                    let mut rng = Rng::new(seed, i);
                    let x = simulate(g, seeds, model, max_hops, lt_scale, &mut rng, s) as f64;
                    a += x;
                    b += x * x;
                }
                let _ = progress.advance(CHUNK.min(simulations - c * CHUNK));
                (a, b)
            },
        )
        .collect();
    progress.check()?;
    let (sum, sq) = sums
        .iter()
        .fold((0.0, 0.0), |(a, b), &(x, y)| (a + x, b + y));
    let k = simulations as f64;
    if simulations == 0 {
        return Ok(Spread {
            mean: f64::NAN,
            stderr: f64::NAN,
            simulations,
        });
    }
    let mean = sum / k;
    let var = if simulations > 1 {
        ((sq - k * mean * mean) / (k - 1.0)).max(0.0)
    } else {
        0.0
    };
    Ok(Spread {
        mean,
        stderr: (var / k).sqrt(),
        simulations,
    })
}

/// One cascade; returns the number of active users at the end.
fn simulate(
    g: &SocialGraph,
    seeds: &[UserIx],
    model: Model,
    max_hops: Option<u32>,
    lt_scale: &[f32],
    rng: &mut Rng,
    s: &mut Scratch,
) -> usize {
    s.bump();
    let mark = s.mark;
    s.frontier.clear();
    for &u in seeds {
        if s.active[u as usize] != mark {
            s.active[u as usize] = mark;
            s.frontier.push(u);
        }
    }
    let mut count = s.frontier.len();
    let mut hop = 0u32;
    while !s.frontier.is_empty() && max_hops.is_none_or(|h| hop < h) {
        s.next.clear();
        for fi in 0..s.frontier.len() {
            let u = s.frontier[fi];
            let (dst, p) = g.out(u);
            if model == Model::IndependentCascade && g.out_uniform(u) && !dst.is_empty() {
                // One p for every out-edge: jump from success to success.
                let mut i = 0;
                while let Some(j) = next_success(rng, p[0], i, dst.len()) {
                    let vi = dst[j] as usize;
                    if s.active[vi] != mark {
                        s.active[vi] = mark;
                        s.next.push(dst[j]);
                    }
                    i = j + 1;
                }
                continue;
            }
            for (&v, &pv) in dst.iter().zip(p) {
                let vi = v as usize;
                if s.active[vi] == mark {
                    continue;
                }
                let fire = match model {
                    Model::IndependentCascade => coin(rng, pv),
                    Model::LinearThreshold => {
                        if s.touched[vi] != mark {
                            s.touched[vi] = mark;
                            s.weight[vi] = 0.0;
                            s.threshold[vi] = (1.0 - rng.f64()) as f32;
                        }
                        s.weight[vi] += pv * lt_scale[vi];
                        s.weight[vi] >= s.threshold[vi]
                    }
                };
                if fire {
                    s.active[vi] = mark;
                    s.next.push(v);
                }
            }
        }
        count += s.next.len();
        std::mem::swap(&mut s.frontier, &mut s.next);
        hop += 1;
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::IdRef;
    use crate::social::graph::tests::graph;
    use crate::social::graph::Prob;

    fn mc(
        g: &SocialGraph,
        seeds: &[UserIx],
        model: Model,
        sims: u64,
        seed: u64,
        hops: Option<u32>,
        scale: &[f32],
    ) -> Spread {
        spread(g, seeds, model, sims, seed, hops, scale, &Progress::new()).unwrap()
    }

    #[test]
    fn ic_on_a_chain_is_a_geometric_sum_and_hops_cut_it() {
        // 0 -> 1 -> 2 -> 3 with p = 0.5: E = 1 + .5 + .25 + .125.
        let g = graph(&[(0, 1), (1, 2), (2, 3)], Prob::Constant(0.5));
        let s0 = g.lookup(IdRef::Int(0)).unwrap();
        let r = mc(&g, &[s0], Model::IndependentCascade, 200_000, 1, None, &[]);
        assert!((r.mean - 1.875).abs() < 4.0 * r.stderr, "{r:?}");
        let r = mc(
            &g,
            &[s0],
            Model::IndependentCascade,
            200_000,
            1,
            Some(1),
            &[],
        );
        assert!((r.mean - 1.5).abs() < 4.0 * r.stderr, "{r:?}");
        let r = mc(&g, &[s0], Model::IndependentCascade, 1000, 1, Some(0), &[]);
        assert_eq!((r.mean, r.stderr), (1.0, 0.0));
    }

    #[test]
    fn lt_with_full_weights_activates_everything_reachable() {
        let g = graph(&[(0, 1), (1, 2), (5, 6)], Prob::WeightedCascade);
        let scale = g.lt_scale();
        let s0 = g.lookup(IdRef::Int(0)).unwrap();
        let r = mc(&g, &[s0], Model::LinearThreshold, 100, 3, None, &scale);
        assert_eq!(r.mean, 3.0);
        // Two in-neighbours of weight 1/2 each: one active reaches the threshold with p 1/2.
        let g = graph(&[(0, 2), (1, 2)], Prob::WeightedCascade);
        let scale = g.lt_scale();
        let s0 = g.lookup(IdRef::Int(0)).unwrap();
        let r = mc(&g, &[s0], Model::LinearThreshold, 100_000, 3, None, &scale);
        assert!((r.mean - 1.5).abs() < 4.0 * r.stderr, "{r:?}");
    }

    #[test]
    fn same_answer_on_any_thread_count() {
        let edges: Vec<(i64, i64)> = (0..500).map(|i| (i, (i * 7 + 3) % 500)).collect();
        let g = graph(&edges, Prob::Constant(0.6));
        let run = |t| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(t)
                .build()
                .unwrap()
                .install(|| {
                    mc(
                        &g,
                        &[0, 1, 2],
                        Model::IndependentCascade,
                        1000,
                        9,
                        None,
                        &[],
                    )
                })
        };
        assert_eq!(run(1), run(3));
    }
}
