//! A breadth-first numbering of the forest, for passes that sweep every
//! user once: in BFS order a user's children are consecutive and referrers
//! appear in the same order as their children, so a bottom-up pass
//! (children into referrers) or a top-down pass streams through memory
//! instead of jumping to a random referrer per user.

use rayon::prelude::*;

use crate::attribution::ranges::SharedMut;
use crate::forest::{assemble, Channels, Forest};
use crate::ids::{IdValues, UserIx, NO_USER};

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
        let b = self.bfs.get_or_init(|| layout(self));
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
        let gather = |v: &[u32]| -> Vec<u32> { order.par_iter().map(|&u| v[u as usize]).collect() };
        let ids = match &self.ids {
            IdValues::Int(v) => IdValues::Int(order.par_iter().map(|&u| v[u as usize]).collect()),
            IdValues::Str { offsets, data } => {
                let mut new_offsets = Vec::with_capacity(offsets.len());
                new_offsets.push(0i64);
                let mut at = 0i64;
                for &u in &order {
                    at += offsets[u as usize + 1] - offsets[u as usize];
                    new_offsets.push(at);
                }
                let mut new_data = vec![0u8; data.len()];
                let dst = SharedMut(new_data.as_mut_ptr());
                order.par_iter().enumerate().for_each(|(i, &u)| {
                    let src = &data[offsets[u as usize] as usize..offsets[u as usize + 1] as usize];
                    // SAFETY: position i owns new_data[new_offsets[i]..new_offsets[i + 1]],
                    // a prefix sum of the same lengths: disjoint and in bounds.
                    unsafe {
                        std::ptr::copy_nonoverlapping(
                            src.as_ptr(),
                            dst.ptr().add(new_offsets[i] as usize),
                            src.len(),
                        )
                    };
                });
                IdValues::Str {
                    offsets: new_offsets,
                    data: new_data,
                }
            }
        };
        let mut index = self.index;
        index.remap(|v| pos[v as usize]);
        let depth = gather(&self.depth);
        let joined_at = self
            .joined_at
            .map(|j| order.par_iter().map(|&u| j[u as usize]).collect());
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
    let mut order: Vec<UserIx> = Vec::with_capacity(n);
    order.extend(
        f.parent()
            .par_iter()
            .enumerate()
            .filter(|(_, &p)| p == NO_USER)
            .map(|(u, _)| u as UserIx)
            .collect::<Vec<_>>(),
    );
    let mut parent = vec![NO_USER; order.len()];
    parent.reserve(n - order.len());
    let mut start = 0;
    while start < order.len() {
        let end = order.len();
        let kids =
            |u: UserIx| &children[offsets[u as usize] as usize..offsets[u as usize + 1] as usize];
        if end - start < PAR_LAYER {
            for i in start..end {
                let u = order[i];
                order.extend_from_slice(kids(u));
                parent.resize(order.len(), i as u32);
            }
        } else {
            // Where each member's children go: a prefix sum of their counts.
            let mut at: Vec<usize> = order[start..end]
                .par_iter()
                .map(|&u| kids(u).len())
                .collect();
            let mut total = end;
            for a in at.iter_mut() {
                let c = *a;
                *a = total;
                total += c;
            }
            order.resize(total, 0);
            parent.resize(total, 0);
            let (layer, next) = order.split_at_mut(end);
            let (o, p) = (
                SharedMut(next.as_mut_ptr()),
                SharedMut(parent[end..].as_mut_ptr()),
            );
            layer[start..end]
                .par_iter()
                .zip(at.par_iter())
                .enumerate()
                .for_each(|(i, (&u, &dst))| {
                    let k = kids(u);
                    for (j, &c) in k.iter().enumerate() {
                        // SAFETY: member i owns next[dst - end ..][..k.len()]
                        // (a prefix sum of the counts), disjoint from the others.
                        unsafe {
                            *o.ptr().add(dst - end + j) = c;
                            *p.ptr().add(dst - end + j) = (start + i) as u32;
                        }
                    }
                });
        }
        start = end;
    }
    debug_assert_eq!(order.len(), n);
    let mut pos = vec![0u32; n];
    let out = SharedMut(pos.as_mut_ptr());
    order.par_iter().enumerate().for_each(|(i, &u)| {
        // SAFETY: `order` is a permutation, so every u is written once.
        unsafe { *out.ptr().add(u as usize) = i as u32 };
    });
    BfsLayout { order, pos, parent }
}

#[cfg(test)]
mod tests {
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
