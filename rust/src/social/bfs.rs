//! Exact k-hop reach: per user, the number of distinct other users within
//! 1, 2, ..., k hops along out-edges.
//!
//! One breadth-first search per user, cut at k hops, users split into
//! chunks run in parallel. Each thread keeps one visited array stamped with
//! the source's index + 1, so it is never cleared: O(n) memory per thread,
//! O(sum over users of their k-hop out-edges) time, the same as igraph's
//! `neighborhood_size`.

use rayon::prelude::*;

use super::graph::SocialGraph;
use crate::error::Result;
use crate::ids::UserIx;
use crate::progress::Progress;

/// `columns[j][u]`: distinct users within j + 1 hops of u (u excluded).
/// Reports users done to `progress`; `Interrupted` once it is cancelled.
pub fn reach_exact(g: &SocialGraph, k: usize, progress: &Progress) -> Result<Vec<Vec<u32>>> {
    let n = g.num_nodes();
    progress.start(n as u64);
    if k == 0 {
        return Ok(Vec::new());
    }
    let mut rows = vec![0u32; n * k];
    const CHUNK: usize = 256;
    rows.par_chunks_mut(CHUNK * k).enumerate().for_each_init(
        || (vec![0u32; n], Vec::<UserIx>::new()),
        |(stamp, queue), (c, out)| {
            if progress.advance((out.len() / k) as u64).is_err() {
                return;
            }
            for (i, row) in out.chunks_mut(k).enumerate() {
                let u = (c * CHUNK + i) as UserIx;
                bfs_counts(g, u, stamp, queue, row);
            }
        },
    );
    progress.check()?;
    Ok(transpose(&rows, n, k))
}

/// The "auto" method's choice: exact BFS for k = 1, for graphs of at most
/// 100,000 users, and for k = 2 when the edges a BFS would scan
/// (sum over users w of in-degree(w) · out-degree(w), plus m) are at most
/// 2 · 10^9; HyperLogLog otherwise.
pub fn prefer_exact(g: &SocialGraph, k: usize) -> bool {
    let n = g.num_nodes();
    if k <= 1 || n <= 100_000 {
        return true;
    }
    if k > 2 {
        return false;
    }
    let work: u128 = (0..n as UserIx)
        .into_par_iter()
        .map(|w| g.in_degree(w) as u128 * g.out_degree(w) as u128)
        .sum::<u128>()
        + g.num_edges() as u128;
    work <= 2_000_000_000
}

/// Fills `row[j]` with the users within j + 1 hops of `u`.
fn bfs_counts(
    g: &SocialGraph,
    u: UserIx,
    stamp: &mut [u32],
    queue: &mut Vec<UserIx>,
    row: &mut [u32],
) {
    let mark = u + 1;
    stamp[u as usize] = mark;
    queue.clear();
    queue.push(u);
    let (mut start, mut found) = (0usize, 0u32);
    for slot in row.iter_mut() {
        let end = queue.len();
        for qi in start..end {
            let w = queue[qi];
            for &x in g.out(w).0 {
                if stamp[x as usize] != mark {
                    stamp[x as usize] = mark;
                    queue.push(x);
                    found += 1;
                }
            }
        }
        *slot = found;
        start = end;
    }
}

/// Row-major (n x k) to k columns.
pub(crate) fn transpose<T: Copy + Send + Sync + Default>(
    rows: &[T],
    n: usize,
    k: usize,
) -> Vec<Vec<T>> {
    (0..k)
        .into_par_iter()
        .map(|j| (0..n).map(|u| rows[u * k + j]).collect())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::IdRef;
    use crate::social::graph::tests::graph;
    use crate::social::graph::Prob;

    #[test]
    fn counts_distinct_users_per_hop() {
        // 1 -> 2 -> 3 -> 4, 1 -> 3 (a shortcut), 4 -> 1 (back to the start).
        let g = graph(
            &[(1, 2), (2, 3), (3, 4), (1, 3), (4, 1)],
            Prob::Constant(1.0),
        );
        let cols = reach_exact(&g, 3, &Progress::new()).unwrap();
        let at = |id: i64| g.lookup(IdRef::Int(id)).unwrap() as usize;
        assert_eq!([cols[0][at(1)], cols[1][at(1)], cols[2][at(1)]], [2, 3, 3]);
        assert_eq!([cols[0][at(4)], cols[1][at(4)], cols[2][at(4)]], [1, 3, 3]);
        assert_eq!([cols[0][at(2)], cols[1][at(2)], cols[2][at(2)]], [1, 2, 3]);
    }
}
