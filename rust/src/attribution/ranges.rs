//! Grouping rows by user range, so per-user passes (totals, caps, per-user
//! sums) run as independent parallel tasks, each over a dense array of its
//! own users. Ranges interleave (user u is in range u mod 16): users
//! numbered early — the first referrers, who collect most credit — spread
//! over every range instead of loading one.

use crate::ids::{UserIx, NO_USER};

const RANGE_BITS: u32 = 4;
/// The number of ranges. It does not depend on the thread count, so sums
/// (floats included) never do either.
pub(crate) const RANGES: usize = 1 << RANGE_BITS;

/// The range of user `u`.
#[inline]
pub(crate) fn range_of(u: UserIx) -> usize {
    u as usize & (RANGES - 1)
}

/// User `u`'s index within its range.
#[inline]
pub(crate) fn local(u: UserIx) -> usize {
    u as usize >> RANGE_BITS
}

/// The number of users in range `t` among `num_users`.
pub(crate) fn range_len(num_users: usize, t: usize) -> usize {
    (num_users + RANGES - 1 - t) / RANGES
}

/// A raw pointer shared by tasks that write disjoint indices.
#[derive(Clone, Copy)]
pub(crate) struct SharedMut<T>(pub(crate) *mut T);
// SAFETY: only used for writes to indices that no other task touches (each
// use site states why its indices are disjoint).
unsafe impl<T> Send for SharedMut<T> {}
unsafe impl<T> Sync for SharedMut<T> {}

impl<T> SharedMut<T> {
    /// The pointer (a method, so closures capture the `Sync` wrapper).
    #[inline]
    pub(crate) fn ptr(&self) -> *mut T {
        self.0
    }
}

/// `payload(j)` for j in 0..len grouped by the range of `user(j)` — range
/// t's items are `items[offsets[t]..offsets[t + 1]]`, in j order — by a
/// parallel stable counting sort. Items whose user is `NO_USER` are left
/// out. Moving the payload itself (not an index) lets the per-range pass
/// read its items sequentially.
pub(crate) fn scatter_by_range<P: Copy + Send + Sync>(
    len: usize,
    user: impl Fn(usize) -> UserIx + Sync,
    payload: impl Fn(usize) -> P + Sync,
) -> (Vec<usize>, Vec<P>) {
    crate::par::scatter_by_key(
        len,
        RANGES,
        |j| match user(j) {
            NO_USER => None,
            u => Some(range_of(u)),
        },
        payload,
    )
}

/// Row indices grouped by the range of `user[row]`, in row order within a
/// range (see [`scatter_by_range`]).
pub(crate) fn rows_by_range(user: &[UserIx]) -> (Vec<usize>, Vec<u32>) {
    scatter_by_range(user.len(), |i| user[i], |i| i as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_by_range_stably_and_skips_unknown_users() {
        let n = 100_000;
        let users: Vec<UserIx> = (0..300_000u32)
            .map(|i| {
                if i % 7 == 0 {
                    NO_USER
                } else {
                    i.wrapping_mul(2_654_435_761) % n as u32
                }
            })
            .collect();
        let (offsets, rows) = rows_by_range(&users);
        assert_eq!(rows.len(), users.iter().filter(|&&u| u != NO_USER).count());
        for t in 0..RANGES {
            let part = &rows[offsets[t]..offsets[t + 1]];
            assert!(part.windows(2).all(|w| w[0] < w[1]), "row order kept");
            let most = part.iter().map(|&r| local(users[r as usize])).max();
            assert!(most.is_none_or(|l| l < range_len(n, t)));
            assert!(part.iter().all(|&r| range_of(users[r as usize]) == t));
        }
    }
}
