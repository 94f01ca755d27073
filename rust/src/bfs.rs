//! A breadth-first numbering of the forest, for passes that sweep every
//! user once: in BFS order a user's children are consecutive and referrers
//! appear in the same order as their children, so a bottom-up pass
//! (children into referrers) or a top-down pass streams through memory
//! instead of jumping to a random referrer per user.

use rayon::prelude::*;

use crate::attribution::ranges::SharedMut;
use crate::forest::{assemble, Channels, Forest};
use crate::ids::{prefetch, UserIx, NO_USER};

/// Users in BFS order (roots in index order, then layer by layer, each
/// user's children together in index order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BfsLayout {
    /// BFS position -> user index.
    pub order: Vec<UserIx>,
    /// User index -> BFS position.
    pub pos: Vec<u32>,
    /// BFS position -> the referrer's BFS position (`NO_USER`: a root).
    /// Non-decreasing after the roots.
    pub parent: Vec<u32>,
}

/// Layers smaller than this are expanded on the calling thread: a deep
/// chain has a million layers of one user.
const PAR_LAYER: usize = 4096;

/// A view of the BFS numbering: `None` maps are the identity (the forest
/// is numbered breadth-first already, as `Forest::build` leaves it).
#[derive(Debug, Clone, Copy)]
pub struct Bfs<'a> {
    /// BFS position -> user index.
    pub order: Option<&'a [UserIx]>,
    /// User index -> BFS position.
    pub pos: Option<&'a [u32]>,
    /// BFS position -> the referrer's BFS position (`NO_USER`: a root).
    pub parent: &'a [u32],
}

impl Bfs<'_> {
    pub fn len(&self) -> usize {
        self.parent.len()
    }
    pub fn is_empty(&self) -> bool {
        self.parent.is_empty()
    }
    #[inline]
    pub fn user(&self, i: usize) -> UserIx {
        self.order.map_or(i as UserIx, |o| o[i])
    }
}

impl Forest {
    /// The BFS numbering: the identity for a forest built by `build`; else
    /// (after `extend`) a layout built once on first use (O(n), parallel).
    pub fn bfs(&self) -> Bfs<'_> {
        if self.bfs_ordered {
            return Bfs {
                order: None,
                pos: None,
                parent: &self.parent,
            };
        }
        let b = self
            .bfs
            .get_or_init(|| crate::alloc::huge_tables(|| layout(self)));
        Bfs {
            order: Some(&b.order),
            pos: Some(&b.pos),
            parent: &b.parent,
        }
    }

    /// The same forest with users renumbered breadth-first.
    pub(crate) fn into_bfs_order(self) -> Forest {
        if self.bfs_ordered {
            return self;
        }
        let BfsLayout { order, pos, parent } = layout(&self);
        let gather = |v: &[u32]| crate::par::gather_from(&order, v);
        let ids = self.ids.gather(&order);
        let mut index = self.index;
        index.remap(&pos);
        let depth = gather(&self.depth);
        let joined_at = self.joined_at.map(|j| crate::par::gather_from(&order, &j));
        let channels = self.channels.map(|c| Channels {
            codes: gather(&c.codes),
            names: c.names,
        });
        let mut f = assemble(ids, index, parent, depth, joined_at, channels);
        f.joined_tz = self.joined_tz;
        debug_assert!(f.bfs_ordered);
        f
    }
}

/// Roots first, then every non-root's referrer no earlier than the
/// previous non-root's: the numbering `layout` would produce.
pub(crate) fn is_bfs_ordered(parent: &[UserIx]) -> bool {
    let roots = parent.iter().take_while(|&&p| p == NO_USER).count();
    let rest = &parent[roots..];
    crate::par::all(rest.len().saturating_sub(1), |i| {
        let (a, b) = (rest[i], rest[i + 1]);
        a != NO_USER && b != NO_USER && a <= b
    }) && rest.first().is_none_or(|&p| p != NO_USER)
}

pub(crate) fn layout(f: &Forest) -> BfsLayout {
    let (offsets, children) = f.children_csr();
    let n = f.num_users();
    let roots: Vec<UserIx> = f
        .parent()
        .par_iter()
        .enumerate()
        .filter(|(_, &p)| p == NO_USER)
        .map(|(u, _)| u as UserIx)
        .collect();
    let (order, parent) = layers(roots, offsets, children);
    debug_assert_eq!(order.len(), n);
    let mut pos = vec![0u32; n];
    let out = SharedMut(pos.as_mut_ptr());
    order.par_iter().enumerate().for_each(|(i, &u)| {
        // SAFETY: `order` is a permutation, so every u is written once.
        unsafe { *out.ptr().add(u as usize) = i as u32 };
    });
    BfsLayout { order, pos, parent }
}

/// Breadth-first from `roots` (kept in their order) through the children
/// lists `children[offsets[u]..offsets[u + 1]]`: the nodes reached in BFS
/// order, and each one's referrer's position in it (`NO_USER`: a root).
/// Each layer is expanded in parallel (a prefix sum of the child counts
/// says where each member's children go).
pub(crate) fn layers(roots: Vec<u32>, offsets: &[u32], children: &[u32]) -> (Vec<u32>, Vec<u32>) {
    // Sized once: growing would fault fresh pages in, layer after layer.
    let mut order = Vec::with_capacity(roots.len() + children.len());
    order.extend_from_slice(&roots);
    drop(roots);
    let mut parent = Vec::with_capacity(order.capacity());
    parent.resize(order.len(), NO_USER);
    let kids = |u: u32| &children[offsets[u as usize] as usize..offsets[u as usize + 1] as usize];
    let mut start = 0;
    // Per layer: each member's children (first, count) and where they go.
    let (mut spans, mut at) = (Vec::new(), Vec::new());
    while start < order.len() {
        let end = order.len();
        if end - start < PAR_LAYER {
            for i in start..end {
                let u = order[i];
                order.extend_from_slice(kids(u));
                parent.resize(order.len(), i as u32);
            }
        } else {
            // Each member's children (first, count): random reads of
            // `offsets`, fetched ahead.
            crate::par::gather_into(
                &order[start..end],
                |u| prefetch(&offsets[u]),
                |u| (offsets[u], offsets[u + 1] - offsets[u]),
                &mut spans,
            );
            // Where each member's children go: a prefix sum of the counts.
            at.clear();
            let mut total = end;
            for &(_, c) in &spans {
                at.push((total - end) as u32);
                total += c as usize;
            }
            order.resize(total, 0);
            parent.resize(total, 0);
            let (o, p) = (
                SharedMut(order[end..].as_mut_ptr()),
                SharedMut(parent[end..].as_mut_ptr()),
            );
            const BLOCK: usize = 1 << 12;
            spans
                .par_chunks(BLOCK)
                .zip(at.par_chunks(BLOCK))
                .enumerate()
                .for_each(|(b, (spans, at))| {
                    for (j, (&(first, count), &dst)) in spans.iter().zip(at).enumerate() {
                        if let Some(&(ahead, _)) = spans.get(j + 16) {
                            if let Some(c) = children.get(ahead as usize) {
                                prefetch(c);
                            }
                        }
                        let k = &children[first as usize..(first + count) as usize];
                        let from = (start + b * BLOCK + j) as u32;
                        for (i, &c) in k.iter().enumerate() {
                            // SAFETY: member j owns next[dst..][..count] (a
                            // prefix sum of the counts), disjoint from the others.
                            unsafe {
                                *o.ptr().add(dst as usize + i) = c;
                                *p.ptr().add(dst as usize + i) = from;
                            }
                        }
                    }
                });
        }
        start = end;
    }
    (order, parent)
}

/// Parents whose counters one task owns in [`children_csr`]: 8 MiB of
/// `u32`, so a block's counting stays in the last-level cache.
const CSR_BLOCK: usize = 1 << 23;

/// Children grouped by parent: `children[offsets[p]..offsets[p + 1]]` are
/// the `u` with `parent[u] == p`, in index order (`NO_USER`: no parent).
/// A counting sort per block of parents, in parallel: each task scans all
/// of `parent` (a stream) but counts and places only its own block's
/// children, so its random increments stay in cache. The result is the
/// same for any number of blocks or threads.
pub(crate) fn children_csr(parent: &[u32], num_parents: usize) -> (Vec<u32>, Vec<u32>) {
    let blocks = num_parents
        .div_ceil(CSR_BLOCK)
        .max(rayon::current_num_threads().min(num_parents.div_ceil(PAR_LAYER)));
    csr_in_blocks(parent, num_parents, blocks)
}

fn csr_in_blocks(parent: &[u32], num_parents: usize, blocks: usize) -> (Vec<u32>, Vec<u32>) {
    let blocks = blocks.max(1);
    let block = num_parents.div_ceil(blocks).max(1);
    let mut offsets = vec![0u32; num_parents + 1];
    // Counts into offsets[p + 1], then an inclusive prefix sum per block.
    let sums: Vec<u32> = offsets[1..]
        .par_chunks_mut(block)
        .enumerate()
        .map(|(b, cnt)| {
            let lo = (b * block) as u32;
            for &p in parent {
                let i = p.wrapping_sub(lo) as usize;
                if i < cnt.len() {
                    cnt[i] += 1;
                }
            }
            let mut at = 0u32;
            for c in cnt.iter_mut() {
                at += *c;
                *c = at;
            }
            at
        })
        .collect();
    let mut base = Vec::with_capacity(sums.len());
    let mut at = 0u32;
    for s in &sums {
        base.push(at);
        at += s;
    }
    offsets[1..]
        .par_chunks_mut(block)
        .zip(base.par_iter())
        .for_each(|(c, &b)| c.iter_mut().for_each(|x| *x += b));
    let mut children = vec![0u32; at as usize];
    // Each block's children fill its own slice, in index order.
    let mut slices = Vec::with_capacity(blocks);
    let mut rest = children.as_mut_slice();
    for (b, s) in sums.iter().enumerate() {
        let (mine, more) = rest.split_at_mut(*s as usize);
        slices.push((b, mine));
        rest = more;
    }
    let offsets_ref = &offsets;
    slices.into_par_iter().for_each(|(b, out)| {
        let lo = b * block;
        let hi = (lo + block).min(num_parents);
        let first = offsets_ref[lo];
        let mut next: Vec<u32> = offsets_ref[lo..hi].iter().map(|&o| o - first).collect();
        for (u, &p) in parent.iter().enumerate() {
            let i = p.wrapping_sub(lo as u32) as usize;
            if i < next.len() {
                out[next[i] as usize] = u as u32;
                next[i] += 1;
            }
        }
    });
    (offsets, children)
}

#[cfg(test)]
mod tests {
    use super::{csr_in_blocks, layers};

    #[test]
    fn children_lists_are_the_same_for_any_number_of_blocks() {
        for n in [0usize, 1, 2, 17, 1000, 30_000] {
            // Parent of u: an earlier user or none, scattered.
            let parent: Vec<u32> = (0..n as u32)
                .map(|u| match u.wrapping_mul(2_654_435_761) % 5 {
                    0 => NO_USER,
                    k => (u * k) / 7,
                })
                .map(|p| {
                    if p == NO_USER || (p as usize) < n {
                        p
                    } else {
                        NO_USER
                    }
                })
                .collect();
            let mut pairs: Vec<(u32, u32)> = (0..n as u32)
                .filter(|&u| parent[u as usize] != NO_USER)
                .map(|u| (parent[u as usize], u))
                .collect();
            pairs.sort_unstable();
            let children: Vec<u32> = pairs.iter().map(|&(_, u)| u).collect();
            let offsets: Vec<u32> = (0..=n as u32)
                .map(|p| pairs.partition_point(|&(q, _)| q < p) as u32)
                .collect();
            for blocks in [1, 2, 3, 7, 2000] {
                assert_eq!(
                    csr_in_blocks(&parent, n, blocks),
                    (offsets.clone(), children.clone()),
                    "n {n}, {blocks} blocks"
                );
            }
            // Breadth-first from the roots: referrer positions never
            // decrease, and each node's referrer is the right one.
            let roots: Vec<u32> = (0..n as u32)
                .filter(|&u| parent[u as usize] == NO_USER)
                .collect();
            let (order, up) = layers(roots.clone(), &offsets, &children);
            assert_eq!(order.len(), n);
            assert_eq!(&order[..roots.len()], &roots[..]);
            for i in roots.len()..n {
                assert_eq!(order[up[i] as usize], parent[order[i] as usize]);
                assert!(up[i - 1] == NO_USER || up[i - 1] <= up[i]);
            }
        }
    }

    use crate::forest::test_forest;
    use crate::ids::NO_USER;

    #[test]
    fn layout_is_a_bfs_permutation_with_consecutive_children() {
        // Large enough for the parallel layers: 5000 roots, each with two
        // children, the first of which has one child.
        let mut users = Vec::new();
        let mut refs = Vec::new();
        for r in 0..5000i64 {
            users.extend([r * 10, r * 10 + 1, r * 10 + 2, r * 10 + 3]);
            refs.extend([None, Some(r * 10), Some(r * 10), Some(r * 10 + 1)]);
        }
        let f = test_forest(&users, &refs);
        assert!(f.bfs_ordered, "build numbers users breadth-first");
        // Rows in reverse (every referral before its referrer's row) too.
        let mut rev = test_forest(
            &users.iter().rev().copied().collect::<Vec<_>>(),
            &refs.iter().rev().copied().collect::<Vec<_>>(),
        );
        assert!(rev.bfs_ordered);
        assert_eq!(rev.num_users(), f.num_users());
        rev = rev.into_bfs_order();
        assert!(rev.bfs_ordered);
        let b = crate::bfs::layout(&f);
        assert_eq!(b.order, (0..f.num_users() as u32).collect::<Vec<_>>());
        let n = f.num_users();
        assert_eq!(b.order.len(), n);
        for i in 0..n {
            assert_eq!(b.pos[b.order[i] as usize] as usize, i);
            let p = f.parent()[b.order[i] as usize];
            let expect = if p == NO_USER {
                NO_USER
            } else {
                b.pos[p as usize]
            };
            assert_eq!(b.parent[i], expect);
            if i > 0 && b.parent[i - 1] != NO_USER {
                assert!(b.parent[i] >= b.parent[i - 1], "referrers in order");
            }
            let d = |j: usize| f.depth()[b.order[j] as usize];
            if i > 0 {
                assert!(d(i) >= d(i - 1), "layer by layer");
            }
        }
    }
}
