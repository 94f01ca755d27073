//! Seed selection by IMM (Tang, Shi, Xiao, "Influence Maximization in
//! Near-Linear Time: A Martingale Approach", SIGMOD 2015): a
//! (1 - 1/e - epsilon)-approximation with probability at least 1 - 1/n^ell.
//!
//! A reverse-reachable (RR) set of a uniformly random root v is the set of
//! users that would have activated v in one random realisation of the model
//! (IC: a reverse BFS that keeps each in-edge with its p; LT: a reverse
//! random walk that picks at most one in-neighbour by weight). A seed set's
//! expected spread is n times the fraction of RR sets it covers, so seeds
//! are picked by greedy maximum coverage. `max_hops = h` cuts every RR set
//! at h reverse hops: the hop-limited cascade is still a triggering model
//! seen through h rounds, monotone and submodular, so the guarantee holds.
//!
//! Phases: (1) sampling estimates a lower bound LB of OPT by doubling the
//! number of RR sets (IMM's Algorithm 2, with ell' = ell (1 + ln 2 / ln n));
//! (2) theta = lambda* / LB fresh RR sets, independent of phase 1, are
//! generated for node selection. Reusing phase 1's sets, as the paper
//! does, breaks the martingale argument (W. Chen, "An Issue in the
//! Martingale Analysis of the Influence Maximization Algorithm IMM", 2018);
//! fresh sets are his fix. RR set i of a phase draws from stream
//! (seed, phase, i) and sets are generated in fixed chunks concatenated in
//! order, so any thread count gives the same seeds. Sets are stored flat
//! (offsets + user indices); greedy coverage uses an inverted index and a
//! lazy max-heap whose gains are kept exact by decrements.

use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use rayon::prelude::*;

use super::cascade::{coin, next_success, Model};
use super::graph::SocialGraph;
use crate::attribution::ranges::SharedMut;
use crate::error::{Error, Result};
use crate::ids::UserIx;
use crate::progress::Progress;
use crate::rng::Rng;

/// IMM's inputs.
#[derive(Debug, Clone)]
pub struct ImmParams {
    pub k: usize,
    pub epsilon: f64,
    pub ell: f64,
    pub seed: u64,
    pub model: Model,
    pub max_hops: Option<u32>,
    /// Users allowed as seeds (None: all).
    pub candidates: Option<Vec<UserIx>>,
}

/// The chosen seeds and how they were found.
#[derive(Debug, Clone, PartialEq)]
pub struct ImmResult {
    /// Seeds in the order greedy picked them.
    pub seeds: Vec<UserIx>,
    /// Estimated expected spread each seed adds.
    pub marginal_gain: Vec<f64>,
    /// Estimated expected spread of the first i + 1 seeds.
    pub spread: Vec<f64>,
    /// RR sets used for node selection (theta).
    pub rr_sets: u64,
    /// RR sets generated in the sampling phase.
    pub sampling_rr_sets: u64,
    /// Bytes of the largest RR-set collection held at once (sets and inverted index).
    pub rr_bytes: u64,
    /// The lower bound of OPT from the sampling phase.
    pub lower_bound: f64,
    /// Seconds spent generating RR sets and in greedy selection (both phases).
    pub generate_seconds: f64,
    pub select_seconds: f64,
}

/// RR sets stored flat.
#[derive(Debug, Default)]
pub struct RrSets {
    pub offsets: Vec<u64>,
    pub nodes: Vec<UserIx>,
}

impl RrSets {
    fn new() -> Self {
        RrSets {
            offsets: vec![0],
            nodes: Vec::new(),
        }
    }
    pub fn len(&self) -> usize {
        self.offsets.len() - 1
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn set(&self, r: usize) -> &[UserIx] {
        &self.nodes[self.offsets[r] as usize..self.offsets[r + 1] as usize]
    }
    fn bytes(&self) -> u64 {
        (self.offsets.capacity() * 8 + self.nodes.capacity() * 4) as u64
    }
}

/// Per-thread scratch for RR-set generation.
struct Walker {
    stamp: Vec<u32>,
    mark: u32,
    queue: Vec<UserIx>,
}

impl Walker {
    fn new(n: usize) -> Self {
        Walker {
            stamp: vec![0; n],
            mark: 0,
            queue: Vec::new(),
        }
    }
}

/// Generates RR sets `from..to` of a phase and appends them to `rr`.
#[allow(clippy::too_many_arguments)]
fn generate(
    g: &SocialGraph,
    p: &ImmParams,
    lt_scale: &[f32],
    phase: u64,
    from: u64,
    to: u64,
    rr: &mut RrSets,
    progress: &Progress,
) -> Result<()> {
    progress.start(to - from);
    const CHUNK: u64 = 1024;
    let n = g.num_nodes();
    let stream_seed = p.seed ^ phase.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    // A batch that would not fit stops early with an error instead of
    // growing until the OOM killer ends the process: it may take a third
    // of the memory available, as it is held twice while merged and the
    // inverted index is about its size again.
    let limit = crate::sysmem::available_bytes().map_or(u64::MAX, |a| a / 3);
    let used = AtomicU64::new(0);
    let over = AtomicBool::new(false);
    let chunks: Vec<(Vec<u32>, Vec<UserIx>)> = (from / CHUNK..to.div_ceil(CHUNK))
        .into_par_iter()
        .map_init(
            || Walker::new(n),
            |w, c| {
                let (a, b) = ((c * CHUNK).max(from), ((c + 1) * CHUNK).min(to));
                let mut lens = Vec::with_capacity((b - a) as usize);
                let mut nodes = Vec::new();
                if progress.is_cancelled() || over.load(Ordering::Relaxed) {
                    return (lens, nodes);
                }
                for i in a..b {
                    let mut rng = Rng::new(stream_seed, i);
                    let before = nodes.len();
                    rr_set(g, p, lt_scale, &mut rng, w, &mut nodes);
                    lens.push((nodes.len() - before) as u32);
                }
                let bytes = (nodes.len() * 4 + lens.len() * 8) as u64;
                if used.fetch_add(bytes, Ordering::Relaxed) + bytes > limit {
                    over.store(true, Ordering::Relaxed);
                }
                let _ = progress.advance(b - a);
                (lens, nodes)
            },
        )
        .collect();
    progress.check()?;
    if over.load(Ordering::Relaxed) {
        let (sets, users) = chunks
            .iter()
            .fold((0usize, 0usize), |(s, u), c| (s + c.0.len(), u + c.1.len()));
        return Err(Error::Memory(format!(
            "IMM's reverse-reachable sets would take more than {} (a third of the \
             memory available, as they are held twice while merged and indexed once): \
             {} sets of {} needed so far, {:.0} users each on average; raise epsilon (now {}), \
             set max_hops, or use smaller probabilities",
            crate::sysmem::gib(limit as u128),
            sets,
            to - from,
            users as f64 / sets.max(1) as f64,
            p.epsilon,
        )));
    }
    let extra: usize = chunks.iter().map(|c| c.1.len()).sum();
    rr.nodes.reserve(extra);
    rr.offsets.reserve((to - from) as usize);
    for (lens, nodes) in chunks {
        let mut o = *rr.offsets.last().unwrap_or(&0);
        for l in lens {
            o += l as u64;
            rr.offsets.push(o);
        }
        rr.nodes.extend_from_slice(&nodes);
    }
    Ok(())
}

/// One RR set of a uniformly random root, appended to `out`.
fn rr_set(
    g: &SocialGraph,
    p: &ImmParams,
    lt_scale: &[f32],
    rng: &mut Rng,
    w: &mut Walker,
    out: &mut Vec<UserIx>,
) {
    let n = g.num_nodes() as u64;
    w.mark = w.mark.wrapping_add(1);
    if w.mark == 0 {
        w.stamp.fill(0);
        w.mark = 1;
    }
    let mark = w.mark;
    let root = rng.below(n) as UserIx;
    w.stamp[root as usize] = mark;
    out.push(root);
    let hops = p.max_hops.unwrap_or(u32::MAX);
    match p.model {
        Model::IndependentCascade => {
            w.queue.clear();
            w.queue.push(root);
            let mut start = 0;
            let mut hop = 0;
            while start < w.queue.len() && hop < hops {
                let end = w.queue.len();
                for qi in start..end {
                    let v = w.queue[qi];
                    let (src, prob) = g.inn(v);
                    if g.in_uniform(v) && !src.is_empty() {
                        // One p for every in-edge: jump from success to success.
                        let mut i = 0;
                        while let Some(j) = next_success(rng, prob[0], i, src.len()) {
                            let u = src[j];
                            if w.stamp[u as usize] != mark {
                                w.stamp[u as usize] = mark;
                                w.queue.push(u);
                                out.push(u);
                            }
                            i = j + 1;
                        }
                        continue;
                    }
                    for (&u, &pu) in src.iter().zip(prob) {
                        if w.stamp[u as usize] != mark && coin(rng, pu) {
                            w.stamp[u as usize] = mark;
                            w.queue.push(u);
                            out.push(u);
                        }
                    }
                }
                start = end;
                hop += 1;
            }
        }
        Model::LinearThreshold => {
            let mut v = root;
            let mut hop = 0;
            while hop < hops {
                let (src, prob) = g.inn(v);
                let x = rng.f64() as f32;
                let scale = lt_scale[v as usize];
                let mut acc = 0f32;
                let mut pick = None;
                for (&u, &pu) in src.iter().zip(prob) {
                    acc += pu * scale;
                    if x < acc {
                        pick = Some(u);
                        break;
                    }
                }
                match pick {
                    Some(u) if w.stamp[u as usize] != mark => {
                        w.stamp[u as usize] = mark;
                        out.push(u);
                        v = u;
                        hop += 1;
                    }
                    _ => break,
                }
            }
        }
    }
}

/// For every allowed user, the RR sets holding it (CSR, each list in set
/// order). The sets are split into one contiguous part per thread; each
/// part counts its users, the counts give every (part, user) its own
/// output range, and the parts fill them in parallel.
fn inverted_index(
    rr: &RrSets,
    n: usize,
    ok: &(impl Fn(usize) -> bool + Sync),
) -> (Vec<u64>, Vec<u32>) {
    let parts = rayon::current_num_threads()
        .clamp(1, 64)
        .min(rr.len().max(1));
    let bounds: Vec<usize> = (0..=parts).map(|i| rr.len() * i / parts).collect();
    let nodes_of =
        |t: usize| &rr.nodes[rr.offsets[bounds[t]] as usize..rr.offsets[bounds[t + 1]] as usize];
    let mut counts: Vec<Vec<u64>> = (0..parts)
        .into_par_iter()
        .map(|t| {
            let mut c = vec![0u64; n];
            for &u in nodes_of(t) {
                if ok(u as usize) {
                    c[u as usize] += 1;
                }
            }
            c
        })
        .collect();
    let mut off = vec![0u64; n + 1];
    for u in 0..n {
        let mut at = off[u];
        for c in counts.iter_mut() {
            // The count becomes this part's first output position for u.
            let k = c[u];
            c[u] = at;
            at += k;
        }
        off[u + 1] = at;
    }
    let mut sets = vec![0u32; off[n] as usize];
    let out = SharedMut(sets.as_mut_ptr());
    counts.par_iter_mut().enumerate().for_each(|(t, pos)| {
        for r in bounds[t]..bounds[t + 1] {
            for &u in rr.set(r) {
                if ok(u as usize) {
                    // SAFETY: part t writes only positions pos[u]..pos[u] +
                    // (its count of u), a range no other part owns, all < off[n].
                    unsafe { *out.ptr().add(pos[u as usize] as usize) = r as u32 };
                    pos[u as usize] += 1;
                }
            }
        }
    });
    (off, sets)
}

/// Greedy maximum coverage of `rr` by k users among the allowed ones;
/// returns (seeds, newly covered sets per seed, inverted-index bytes).
fn select(
    rr: &RrSets,
    n: usize,
    k: usize,
    allowed: Option<&[bool]>,
) -> (Vec<UserIx>, Vec<u64>, u64) {
    let ok = |u: usize| allowed.is_none_or(|a| a[u]);
    let (off, sets) = inverted_index(rr, n, &ok);
    let mut gain: Vec<u64> = off.windows(2).map(|w| w[1] - w[0]).collect();
    let index_bytes = (off.len() * 8 + sets.len() * 4 + gain.len() * 8) as u64;
    let mut heap: BinaryHeap<(u64, std::cmp::Reverse<UserIx>)> = (0..n)
        .filter(|&u| ok(u))
        .map(|u| (gain[u], std::cmp::Reverse(u as UserIx)))
        .collect();
    let mut covered = vec![false; rr.len()];
    let mut seeds = Vec::with_capacity(k);
    let mut newly = Vec::with_capacity(k);
    while seeds.len() < k {
        let Some((g, std::cmp::Reverse(u))) = heap.pop() else {
            break;
        };
        if g != gain[u as usize] {
            heap.push((gain[u as usize], std::cmp::Reverse(u)));
            continue;
        }
        let mut c = 0u64;
        for &r in &sets[off[u as usize] as usize..off[u as usize + 1] as usize] {
            if !covered[r as usize] {
                covered[r as usize] = true;
                c += 1;
                for &x in rr.set(r as usize) {
                    if ok(x as usize) {
                        gain[x as usize] -= 1;
                    }
                }
            }
        }
        seeds.push(u);
        newly.push(c);
    }
    (seeds, newly, index_bytes)
}

/// ln C(n, k).
fn ln_binom(n: usize, k: usize) -> f64 {
    (0..k.min(n))
        .map(|i| ((n - i) as f64).ln() - ((i + 1) as f64).ln())
        .sum()
}

/// The k users whose seeding maximises expected spread (IMM). `k` must not
/// exceed the number of allowed users (checked by the caller).
/// Reports RR sets generated to `progress` (a pass per batch) and stops
/// with `Interrupted` once it is cancelled.
pub fn imm(g: &SocialGraph, p: &ImmParams, progress: &Progress) -> Result<ImmResult> {
    let n = g.num_nodes();
    let lt_scale = match p.model {
        Model::LinearThreshold => g.lt_scale(),
        Model::IndependentCascade => Vec::new(),
    };
    let allowed: Option<Vec<bool>> = p.candidates.as_ref().map(|c| {
        let mut a = vec![false; n];
        for &u in c {
            a[u as usize] = true;
        }
        a
    });
    let pool = allowed
        .as_ref()
        .map_or(n, |a| a.iter().filter(|&&x| x).count());
    let k = p.k.min(pool);
    if n == 0 || k == 0 {
        return Ok(ImmResult {
            seeds: Vec::new(),
            marginal_gain: Vec::new(),
            spread: Vec::new(),
            rr_sets: 0,
            sampling_rr_sets: 0,
            rr_bytes: 0,
            lower_bound: 0.0,
            generate_seconds: 0.0,
            select_seconds: 0.0,
        });
    }
    let nf = n as f64;
    let ln_n = nf.ln().max(f64::MIN_POSITIVE);
    let ell = p.ell * (1.0 + 2f64.ln() / ln_n.max(2f64.ln()));
    let lnc = ln_binom(pool, k);
    let eps = p.epsilon;
    let eps1 = 2f64.sqrt() * eps;
    let log2n = nf.log2().max(1.0);
    let lambda1 = (2.0 + 2.0 / 3.0 * eps1) * (lnc + ell * ln_n + log2n.ln()) * nf / (eps1 * eps1);

    // Phase 1: a lower bound of OPT.
    let mut rr = RrSets::new();
    let mut lb = 1.0f64;
    let mut rr_bytes = 0u64;
    let (mut t_gen, mut t_sel) = (0.0, 0.0);
    let timed = |acc: &mut f64, t: Instant| *acc += t.elapsed().as_secs_f64();
    for i in 1..(log2n.ceil() as i32) {
        let x = nf / 2f64.powi(i);
        let theta_i = (lambda1 / x).ceil() as u64;
        let have = rr.len() as u64;
        let t = Instant::now();
        if theta_i > have {
            generate(g, p, &lt_scale, 1, have, theta_i, &mut rr, progress)?;
        }
        timed(&mut t_gen, t);
        let t = Instant::now();
        let (_, newly, ib) = select(&rr, n, k, allowed.as_deref());
        timed(&mut t_sel, t);
        rr_bytes = rr_bytes.max(rr.bytes() + ib);
        let cov = newly.iter().sum::<u64>() as f64 / rr.len() as f64;
        if nf * cov >= (1.0 + eps1) * x {
            lb = nf * cov / (1.0 + eps1);
            break;
        }
    }
    let sampling_rr_sets = rr.len() as u64;
    drop(rr);

    // Phase 2: fresh RR sets for node selection (Chen 2018).
    let e1 = 1.0 - 1.0 / std::f64::consts::E;
    let alpha = (ell * ln_n + 2f64.ln()).sqrt();
    let beta = (e1 * (lnc + ell * ln_n + 2f64.ln())).sqrt();
    let lambda_star = 2.0 * nf * (e1 * alpha + beta).powi(2) / (eps * eps);
    let theta = ((lambda_star / lb).ceil() as u64).max(1);
    let mut rr = RrSets::new();
    let t = Instant::now();
    generate(g, p, &lt_scale, 2, 0, theta, &mut rr, progress)?;
    timed(&mut t_gen, t);
    let t = Instant::now();
    let (seeds, newly, ib) = select(&rr, n, k, allowed.as_deref());
    timed(&mut t_sel, t);
    rr_bytes = rr_bytes.max(rr.bytes() + ib);
    let per_set = nf / theta as f64;
    let marginal_gain: Vec<f64> = newly.iter().map(|&c| c as f64 * per_set).collect();
    let spread = marginal_gain
        .iter()
        .scan(0.0, |s, &x| {
            *s += x;
            Some(*s)
        })
        .collect();
    Ok(ImmResult {
        seeds,
        marginal_gain,
        spread,
        rr_sets: theta,
        sampling_rr_sets,
        rr_bytes,
        lower_bound: lb,
        generate_seconds: t_gen,
        select_seconds: t_sel,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::IdRef;
    use crate::social::cascade::spread;
    use crate::social::graph::tests::graph;
    use crate::social::graph::Prob;

    fn params(k: usize) -> ImmParams {
        ImmParams {
            k,
            epsilon: 0.2,
            ell: 1.0,
            seed: 0,
            model: Model::IndependentCascade,
            max_hops: None,
            candidates: None,
        }
    }

    #[test]
    fn rr_sets_beyond_the_memory_limit_stop_with_an_error() {
        let g = stars();
        let ok = imm(&g, &params(2), &Progress::new()).unwrap();
        // A third of 12 KiB for each batch.
        let err = crate::sysmem::pretend_available(Some(12 << 10), || {
            imm(&g, &params(2), &Progress::new()).unwrap_err()
        });
        let msg = err.to_string();
        assert!(matches!(err, Error::Memory(_)), "{err:?}");
        assert!(msg.contains("raise epsilon (now 0.2)"), "{msg}");
        // A limit the sets fit in changes nothing.
        let roomy = crate::sysmem::pretend_available(Some(ok.rr_bytes * 12), || {
            imm(&g, &params(2), &Progress::new()).unwrap()
        });
        assert_eq!(roomy.seeds, ok.seeds);
    }

    /// Two stars (hubs 0 and 100) and a chain; p = 1.
    fn stars() -> SocialGraph {
        let mut e: Vec<(i64, i64)> = (1..30).map(|i| (0, i)).collect();
        e.extend((101..120).map(|i| (100, i)));
        e.extend((200..210).map(|i| (i, i + 1)));
        graph(&e, Prob::Constant(1.0))
    }

    #[test]
    fn geometric_skips_succeed_with_p() {
        let mut rng = Rng::new(5, 0);
        let (p, len, runs) = (0.05f32, 40usize, 50_000);
        let mut hits = vec![0u32; len];
        for _ in 0..runs {
            let mut i = 0;
            while let Some(j) = next_success(&mut rng, p, i, len) {
                hits[j] += 1;
                i = j + 1;
            }
        }
        let want = p as f64 * runs as f64;
        let sd = (want * (1.0 - p as f64)).sqrt();
        for (j, &h) in hits.iter().enumerate() {
            assert!(
                (h as f64 - want).abs() < 5.0 * sd,
                "slot {j}: {h} vs {want}"
            );
        }
        assert_eq!(next_success(&mut rng, 1.0, 3, 5), Some(3));
        assert_eq!(next_success(&mut rng, 0.0, 0, 5), None);
    }

    #[test]
    fn picks_the_hubs_and_estimates_their_spread() {
        let g = stars();
        let r = imm(&g, &params(2), &Progress::new()).unwrap();
        let ids: Vec<_> = r.seeds.iter().map(|&u| g.ids().get(u)).collect();
        assert_eq!(ids, [IdRef::Int(0), IdRef::Int(100)]);
        let exact = 30.0 + 20.0;
        assert!((r.spread[1] - exact).abs() < 0.2 * exact, "{r:?}");
    }

    #[test]
    fn hops_and_candidates_change_the_answer() {
        let g = stars();
        // Along the chain 200 -> ... -> 210, one hop reaches one user.
        let mut p = params(1);
        p.candidates = Some(
            (200..=210)
                .map(|i| g.lookup(IdRef::Int(i)).unwrap())
                .collect(),
        );
        let r = imm(&g, &p, &Progress::new()).unwrap();
        assert_eq!(g.ids().get(r.seeds[0]), IdRef::Int(200));
        p.max_hops = Some(1);
        let r1 = imm(&g, &p, &Progress::new()).unwrap();
        assert!(r1.spread[0] < 0.5 * r.spread[0], "{r1:?} vs {r:?}");
    }

    #[test]
    fn same_seeds_on_any_thread_count_and_lt_works() {
        let edges: Vec<(i64, i64)> = (0..2000)
            .flat_map(|i| [(i, (i * 7 + 3) % 2000), (i % 50, i)])
            .collect();
        let g = graph(&edges, Prob::WeightedCascade);
        for model in [Model::IndependentCascade, Model::LinearThreshold] {
            let mut p = params(5);
            p.model = model;
            let run = |t| {
                rayon::ThreadPoolBuilder::new()
                    .num_threads(t)
                    .build()
                    .unwrap()
                    .install(|| imm(&g, &p, &Progress::new()).unwrap())
            };
            let a = run(1);
            let b = run(3);
            assert_eq!(
                (&a.seeds, &a.spread, a.rr_sets),
                (&b.seeds, &b.spread, b.rr_sets)
            );
            // The estimate agrees with Monte Carlo.
            let scale = g.lt_scale();
            let mc = spread(
                &g,
                &a.seeds,
                model,
                20_000,
                1,
                None,
                &scale,
                &Progress::new(),
            )
            .unwrap();
            let est = a.spread[4];
            assert!(
                (est - mc.mean).abs() < 0.1 * mc.mean,
                "{model:?}: {est} vs {mc:?}"
            );
        }
    }
}
