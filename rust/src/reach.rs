//! Reach on the referral forest: per user, descendants level by level,
//! all descendants, height and root (DESIGN.md "Reach and scores").
//!
//! Users are numbered so that `parent[u] < u`, so one reverse scan is a
//! bottom-up pass and one forward scan a top-down pass: no recursion, and a
//! chain a million deep costs what a million leaves cost.

use rayon::prelude::*;

use crate::attribution::ranges::SharedMut;
use crate::bfs::Bfs;
use crate::forest::Forest;
use crate::ids::{prefetch, UserIx, NO_USER};

/// Per user (index order) reach counts; see [`reach`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reach {
    /// `levels[k][u]`: u's descendants exactly k + 1 levels below.
    pub levels: Vec<Vec<u32>>,
    pub descendants: Vec<u32>,
    /// Longest path down (0 for a leaf).
    pub height: Vec<u32>,
    pub root: Vec<UserIx>,
}

/// Per user: `level_1..level_K` for K = `max_depth`, descendants, height
/// and root. O(n · K), bottom-up, in BFS order so that every access
/// streams. A forest numbered breadth-first (as `Forest::build` leaves it)
/// is swept layer by layer straight into the output columns, each layer in
/// parallel chunks that own disjoint referrers. Otherwise (after `extend`)
/// each user's row is added into its referrer's row in BFS order and the
/// rows are gathered back into user order.
pub fn reach(forest: &Forest, max_depth: usize) -> Reach {
    let b = forest.bfs();
    if b.order.is_none() {
        return reach_in_place(forest, max_depth);
    }
    let k = max_depth;
    let w = k + 2;
    let rows = bottom_up(
        b,
        w,
        0u32,
        |_, _| {},
        |me, up| {
            if k > 0 {
                up[0] += 1;
                for j in 1..k {
                    up[j] += me[j - 1];
                }
            }
            // Counts never pass the user count, which fits u32.
            up[k] += me[k] + 1;
            up[k + 1] = up[k + 1].max(me[k + 1] + 1);
            Ok::<_, ()>(())
        },
    )
    .unwrap_or_default();
    let mut cols = columns_by_user(&rows, w, b);
    let height = cols.pop().unwrap_or_default();
    let descendants = cols.pop().unwrap_or_default();
    Reach {
        levels: cols,
        descendants,
        height,
        root: roots(forest),
    }
}

/// Layers smaller than this are swept on the calling thread.
const PAR_LAYER: usize = 1 << 15;

/// Index ranges of the depth layers of a breadth-first numbered forest
/// (depth is non-decreasing in that numbering).
fn layers(forest: &Forest) -> Vec<(usize, usize)> {
    let depth = forest.depth();
    let mut out = Vec::new();
    let mut s = 0;
    while s < depth.len() {
        let d = depth[s];
        let e = s + depth[s..].partition_point(|&x| x == d);
        out.push((s, e));
        s = e;
    }
    out
}

/// Splits layer `s..e` into chunks that never share a referrer.
fn chunks_by_referrer(parent: &[UserIx], s: usize, e: usize) -> Vec<(usize, usize)> {
    let parts = rayon::current_num_threads() * 4;
    let step = ((e - s) / parts).max(PAR_LAYER / 4);
    let mut out = Vec::new();
    let mut a = s;
    while a < e {
        let mut z = (a + step).min(e);
        while z < e && parent[z] == parent[z - 1] {
            z += 1;
        }
        out.push((a, z));
        a = z;
    }
    out
}

fn reach_in_place(forest: &Forest, k: usize) -> Reach {
    let parent = forest.parent();
    let n = parent.len();
    let mut levels: Vec<Vec<u32>> = (0..k).map(|_| vec![0u32; n]).collect();
    let mut desc = vec![0u32; n];
    let mut height = vec![0u32; n];
    let lp: Vec<SharedMut<u32>> = levels
        .iter_mut()
        .map(|c| SharedMut(c.as_mut_ptr()))
        .collect();
    let (dp, hp) = (SharedMut(desc.as_mut_ptr()), SharedMut(height.as_mut_ptr()));
    // SAFETY (both closures): a chunk writes only the entries of its own
    // referrers, which no other chunk of the layer has (chunks_by_referrer),
    // and reads only entries of its own layer, which no chunk writes.
    let push = |i: usize| unsafe {
        let p = parent[i] as usize;
        if k > 0 {
            *lp[0].ptr().add(p) += 1;
            for j in 1..k {
                *lp[j].ptr().add(p) += *lp[j - 1].ptr().add(i);
            }
        }
        *dp.ptr().add(p) += *dp.ptr().add(i) + 1;
        let h = hp.ptr().add(p);
        *h = (*h).max(*hp.ptr().add(i) + 1);
    };
    let all = layers(forest);
    for &(s, e) in all.iter().skip(1).rev() {
        if e - s < PAR_LAYER {
            (s..e).for_each(push);
        } else {
            chunks_by_referrer(parent, s, e)
                .into_par_iter()
                .for_each(|(a, z)| (a..z).for_each(push));
        }
    }
    let mut root: Vec<UserIx> = vec![0; n];
    let rp = SharedMut(root.as_mut_ptr());
    for &(s, e) in &all {
        // SAFETY: a layer writes its own entries and reads the layer above.
        let set = |i: usize| unsafe {
            let p = parent[i];
            *rp.ptr().add(i) = if p == NO_USER {
                i as UserIx
            } else {
                *rp.ptr().add(p as usize)
            };
        };
        if e - s < PAR_LAYER {
            (s..e).for_each(set);
        } else {
            (s..e).into_par_iter().for_each(set);
        }
    }
    Reach {
        levels,
        descendants: desc,
        height,
        root,
    }
}

/// Rows of width `w` in BFS order: each starts as `init(user, row)`
/// (in parallel), then every row is folded into its referrer's row by
/// `push(row, referrer_row)`, children before referrers. Referrers appear
/// in BFS order, so the sweep reads and writes memory in sequence.
fn bottom_up<R, E>(
    b: Bfs<'_>,
    w: usize,
    zero: R,
    init: impl Fn(UserIx, &mut [R]) + Sync,
    mut push: impl FnMut(&[R], &mut [R]) -> Result<(), E>,
) -> Result<Vec<R>, E>
where
    R: Copy + Send + Sync,
{
    let n = b.len();
    let mut rows = vec![zero; n * w];
    if w == 0 {
        return Ok(rows);
    }
    rows.par_chunks_mut(w)
        .enumerate()
        .for_each(|(i, row)| init(b.user(i), row));
    for i in (0..n).rev() {
        let p = b.parent[i];
        if p == NO_USER {
            continue;
        }
        // p < i: the referrer's row lies wholly before this user's.
        let (lo, hi) = rows.split_at_mut(i * w);
        push(&hi[..w], &mut lo[p as usize * w..(p as usize + 1) * w])?;
    }
    Ok(rows)
}

/// Users ahead whose row the gather prefetches (independent misses overlap).
const GATHER_AHEAD: usize = 16;

/// BFS-ordered rows of width `w` as `w` columns in user index order, in
/// parallel blocks of users.
fn columns_by_user<R: Copy + Send + Sync + Default>(
    rows: &[R],
    w: usize,
    b: Bfs<'_>,
) -> Vec<Vec<R>> {
    const BLOCK: usize = 4096;
    let n = b.len();
    let mut cols: Vec<Vec<R>> = (0..w).map(|_| vec![R::default(); n]).collect();
    let ptrs: Vec<SharedMut<R>> = cols.iter_mut().map(|c| SharedMut(c.as_mut_ptr())).collect();
    (0..n.div_ceil(BLOCK)).into_par_iter().for_each(|bi| {
        let u0 = bi * BLOCK;
        for u in u0..(u0 + BLOCK).min(n) {
            let p = match b.pos {
                None => u,
                Some(pos) => {
                    if let Some(&ahead) = pos.get(u + GATHER_AHEAD) {
                        prefetch(&rows[ahead as usize * w]);
                    }
                    pos[u] as usize
                }
            };
            for (j, &x) in rows[p * w..(p + 1) * w].iter().enumerate() {
                // SAFETY: block bi writes only users u0..u0 + BLOCK of
                // each column, which no other block touches.
                unsafe { *ptrs[j].ptr().add(u) = x };
            }
        }
    });
    cols
}

/// `out[k][u]`: the sum of `value(c)` over u's descendants c exactly k + 1
/// levels below, for k < `depth`. Level 1 sums `value` over the children;
/// level k + 1 sums level k over the children. Sums run in children order
/// through `add` (checked for money), so floats come out the same on any
/// thread count.
pub fn levels_below<T, E>(
    forest: &Forest,
    depth: usize,
    zero: T,
    value: impl Fn(UserIx) -> T + Sync,
    add: impl Fn(T, T) -> Result<T, E> + Sync,
) -> Result<Vec<Vec<T>>, E>
where
    T: Copy + Send + Sync,
    E: Send,
{
    let n = forest.num_users();
    let (offsets, children) = forest.children_csr();
    let kids = |u: usize| &children[offsets[u] as usize..offsets[u + 1] as usize];
    let mut out: Vec<Vec<T>> = Vec::with_capacity(depth);
    for _ in 0..depth {
        let next: Vec<T> = match out.last() {
            None => (0..n)
                .into_par_iter()
                .map(|u| sum_over(kids(u), zero, &value, &add))
                .collect::<Result<_, E>>()?,
            Some(prev) => (0..n)
                .into_par_iter()
                .map(|u| sum_over(kids(u), zero, |c| prev[c as usize], &add))
                .collect::<Result<_, E>>()?,
        };
        out.push(next);
    }
    Ok(out)
}

#[inline]
fn sum_over<T: Copy, E>(
    kids: &[UserIx],
    zero: T,
    value: impl Fn(UserIx) -> T,
    add: impl Fn(T, T) -> Result<T, E>,
) -> Result<T, E> {
    let mut it = kids.iter();
    match it.next() {
        None => Ok(zero),
        Some(&c0) => it.try_fold(value(c0), |s, &c| add(s, value(c))),
    }
}

/// The root above every user (itself for a root): a top-down sweep in BFS
/// order (then one gather per user unless the forest is numbered so).
pub fn roots(forest: &Forest) -> Vec<UserIx> {
    let b = forest.bfs();
    let mut top: Vec<u32> = Vec::with_capacity(b.parent.len());
    for (i, &p) in b.parent.iter().enumerate() {
        let r = if p == NO_USER {
            i as u32
        } else {
            top[p as usize]
        };
        top.push(r);
    }
    match (b.pos, b.order) {
        (Some(pos), Some(order)) => pos
            .par_iter()
            .map(|&i| order[top[i as usize] as usize])
            .collect(),
        _ => top,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forest::{test_forest, test_forest_extended};
    use crate::ids::IdRef;

    fn ix(f: &Forest, id: i64) -> usize {
        f.lookup(IdRef::Int(id)).expect("known id") as usize
    }

    #[test]
    fn levels_descendants_height_and_root() {
        // 1 -> 2, 3; 2 -> 4; 4 -> 5; 6 alone.
        let f = test_forest(
            &[1, 2, 3, 4, 5, 6],
            &[None, Some(1), Some(1), Some(2), Some(4), None],
        );
        let r = reach(&f, 3);
        let at = |v: &Vec<u32>, id| v[ix(&f, id)];
        assert_eq!([1, 2, 4, 6].map(|id| at(&r.levels[0], id)), [2, 1, 1, 0]);
        assert_eq!(at(&r.levels[1], 1), 1);
        assert_eq!(at(&r.levels[2], 1), 1);
        assert_eq!(at(&r.levels[2], 2), 0);
        assert_eq!(at(&r.descendants, 1), 4);
        assert_eq!(at(&r.height, 1), 3);
        assert_eq!(at(&r.height, 3), 0);
        assert_eq!(r.root[ix(&f, 5)] as usize, ix(&f, 1));
        assert_eq!(r.root[ix(&f, 6)] as usize, ix(&f, 6));
    }

    #[test]
    fn a_million_deep_chain_has_no_recursion() {
        let n = 1_000_000i64;
        let users: Vec<i64> = (1..=n).collect();
        let refs: Vec<Option<i64>> = (0..n).map(|i| (i > 0).then_some(i)).collect();
        let f = test_forest(&users, &refs);
        let r = reach(&f, 2);
        assert_eq!(r.descendants[0], (n - 1) as u32);
        assert_eq!(r.height[0], (n - 1) as u32);
        assert_eq!(r.levels[1][0], 1);
        assert!(r.root.iter().all(|&x| x == 0));
    }

    quickcheck::quickcheck! {
        /// Against a naive count: walk up from every user, one level at a time.
        fn prop_reach_matches_walking_up(links: Vec<u16>, depth: u8, split: u16) -> bool {
            let n = links.len() as i64;
            let users: Vec<i64> = (0..n).collect();
            // User i's referrer is some earlier user, or none (every 5th).
            let refs: Vec<Option<i64>> = links
                .iter()
                .enumerate()
                .map(|(i, &l)| (i > 0 && l % 5 != 0).then(|| l as i64 % i as i64))
                .collect();
            // Half the time a base graph extended with the remaining users:
            // not breadth-first, so reach goes through the BFS layout.
            let f = if split.is_multiple_of(2) || links.is_empty() {
                test_forest(&users, &refs)
            } else {
                test_forest_extended(&users, &refs, split as usize % links.len())
            };
            let k = (depth % 6) as usize;
            let r = reach(&f, k);
            let mut levels = vec![vec![0u32; n as usize]; k];
            let mut desc = vec![0u32; n as usize];
            let mut height = vec![0u32; n as usize];
            for u in 0..n as usize {
                let (mut a, mut d) = (f.parent()[u], 1usize);
                while a != NO_USER {
                    if d <= k {
                        levels[d - 1][a as usize] += 1;
                    }
                    desc[a as usize] += 1;
                    height[a as usize] = height[a as usize].max(d as u32);
                    a = f.parent()[a as usize];
                    d += 1;
                }
            }
            let root_ok = (0..n as usize).all(|u| {
                let mut a = u as u32;
                while f.parent()[a as usize] != NO_USER {
                    a = f.parent()[a as usize];
                }
                r.root[u] == a
            });
            r.levels == levels && r.descendants == desc && r.height == height && root_ok
        }
    }
}
