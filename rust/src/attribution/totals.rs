//! Totals per beneficiary: the leaderboard (credit descending, ties by id).
//!
//! Ledger rows are moved into ranges of consecutive beneficiaries (a
//! parallel counting sort that carries the level and credit along), each
//! range is summed into dense per-user arrays in ledger order — so float
//! sums never depend on the thread count — and the beneficiaries are
//! sorted as packed (credit, id) integers (a comparator for string ids
//! and decimal amounts).

use rayon::prelude::*;
use std::sync::atomic::{AtomicBool, Ordering};

use super::engine::sum;
use super::money::Money;
use super::ranges::{local, range_len, scatter_by_range, RANGES};
use crate::error::Result;
use crate::forest::Forest;
use crate::ids::{IdValues, UserIx};

/// One row per beneficiary, by credit descending, ties by id.
#[derive(Debug, Clone, PartialEq)]
pub struct Totals<T> {
    pub beneficiary: Vec<UserIx>,
    pub credit: Vec<T>,
    pub events: Vec<u64>,
    /// `by_level[k][i]`: beneficiary i's credit at level k + 1.
    pub by_level: Vec<Vec<T>>,
}

/// Sums ledger rows `(beneficiary, level, credit)` per beneficiary and
/// sorts the leaderboard. Errors: `Overflow` when a total does not fit.
pub(crate) fn totals<T: Money>(
    forest: &Forest,
    beneficiary: &[UserIx],
    level: &[u8],
    credit: &[T],
    levels: usize,
) -> Result<Totals<T>> {
    let n = forest.num_users();
    // A beneficiary's sums side by side (one cache line): its total, then
    // its credit at each level.
    let width = levels + 1;
    type Part<T> = (Vec<UserIx>, Vec<u32>, Vec<T>);
    let sum_range =
        |t: usize, items: &mut dyn Iterator<Item = (usize, u8, T)>| -> Result<Part<T>> {
            let w = range_len(n, t);
            let mut sums = vec![T::ZERO; w * width];
            let mut events = vec![0u32; w];
            for (u, k, c) in items {
                let s = &mut sums[u * width..(u + 1) * width];
                s[0] = sum(s[0], c, "a beneficiary's credit total")?;
                s[k as usize] = sum(s[k as usize], c, "a beneficiary's credit total")?;
                events[u] += 1;
            }
            let paid = events.iter().filter(|&&e| e > 0).count();
            let (mut users, mut counts) = (Vec::with_capacity(paid), Vec::with_capacity(paid));
            let mut out = Vec::with_capacity(paid * width);
            for u in (0..w).filter(|&u| events[u] > 0) {
                users.push((u * RANGES + t) as UserIx);
                counts.push(events[u]);
                out.extend_from_slice(&sums[u * width..(u + 1) * width]);
            }
            Ok((users, counts, out))
        };
    let parts: Vec<Result<Part<T>>> = match Packed::new(n) {
        Some(p) if T::ZERO.to_i64().is_some() => {
            // Integer credits move as one u64 each; should one not fit,
            // the rows move again as (beneficiary, level, credit).
            let misfit = AtomicBool::new(false);
            let (offsets, items) = scatter_by_range(
                beneficiary.len(),
                |i| beneficiary[i],
                |i| {
                    p.pack(local(beneficiary[i]), level[i], credit[i].to_i64())
                        .unwrap_or_else(|| {
                            misfit.store(true, Ordering::Relaxed);
                            0
                        })
                },
            );
            if misfit.load(Ordering::Relaxed) {
                None
            } else {
                Some(
                    (0..RANGES)
                        .into_par_iter()
                        .map(|t| {
                            let mut it = items[offsets[t]..offsets[t + 1]].iter().map(|&x| {
                                let (u, k, c) = p.unpack(x);
                                (u, k, T::from_i64(c))
                            });
                            sum_range(t, &mut it)
                        })
                        .collect(),
                )
            }
        }
        _ => None,
    }
    .unwrap_or_else(|| {
        let (offsets, items) = scatter_by_range(
            beneficiary.len(),
            |i| beneficiary[i],
            |i| (beneficiary[i], level[i], credit[i]),
        );
        (0..RANGES)
            .into_par_iter()
            .map(|t| {
                let mut it = items[offsets[t]..offsets[t + 1]]
                    .iter()
                    .map(|&(b, k, c)| (local(b), k, c));
                sum_range(t, &mut it)
            })
            .collect()
    });
    let parts: Vec<Part<T>> = parts.into_iter().collect::<Result<_>>()?;
    let paid: usize = parts.iter().map(|p| p.0.len()).sum();
    let (mut users, mut events) = (Vec::with_capacity(paid), Vec::with_capacity(paid));
    let mut sums = Vec::with_capacity(paid * width);
    for (u, e, s) in parts {
        users.extend(u);
        events.extend(e);
        sums.extend(s);
    }
    let order = leaderboard(forest, &users, |i| sums[i * width]);
    let column = |f: &(dyn Fn(usize) -> T + Sync)| -> Vec<T> {
        order.par_iter().map(|&i| f(i as usize)).collect()
    };
    Ok(Totals {
        beneficiary: order.par_iter().map(|&i| users[i as usize]).collect(),
        credit: column(&|i| sums[i * width]),
        events: order
            .par_iter()
            .map(|&i| events[i as usize] as u64)
            .collect(),
        by_level: (1..width)
            .map(|k| column(&|i| sums[i * width + k]))
            .collect(),
    })
}

/// A ledger row's (beneficiary within its range, level, integer credit)
/// in one u64: the scatter moves half the bytes of the wide tuple.
#[derive(Clone, Copy)]
struct Packed {
    /// Bits of the credit (two's complement), the lowest ones.
    credit_bits: u32,
}

impl Packed {
    /// Range users above, the level (8 bits) beside them; `None` when
    /// fewer than 24 bits are left for credits.
    fn new(num_users: usize) -> Option<Self> {
        let user_bits = usize::BITS - range_len(num_users, 0).leading_zeros();
        let credit_bits = 56u32.checked_sub(user_bits)?;
        (credit_bits >= 24).then_some(Packed { credit_bits })
    }

    #[inline]
    fn pack(self, u: usize, k: u8, c: Option<i64>) -> Option<u64> {
        let half = 1i64 << (self.credit_bits - 1);
        let c = c.filter(|c| (-half..half).contains(c))?;
        let low = c as u64 & ((1u64 << self.credit_bits) - 1);
        Some(((u as u64) << 8 | k as u64) << self.credit_bits | low)
    }

    #[inline]
    fn unpack(self, x: u64) -> (usize, u8, i64) {
        let shift = 64 - self.credit_bits;
        let c = ((x << shift) as i64) >> shift;
        let rest = x >> self.credit_bits;
        ((rest >> 8) as usize, rest as u8, c)
    }
}

/// Indices into `users` by credit descending, ties by id. Integer ids and
/// amounts with a 64-bit order key sort as packed integers; string ids or
/// decimal amounts through a comparator.
fn leaderboard<T: Money>(
    forest: &Forest,
    users: &[UserIx],
    credit: impl Fn(usize) -> T + Sync,
) -> Vec<u32> {
    let ids = forest.ids();
    if let (IdValues::Int(id), Some(_)) = (ids, T::ZERO.order_key()) {
        let mut keyed: Vec<(u128, u32)> = (0..users.len())
            .into_par_iter()
            .map(|i| {
                let c = !credit(i).order_key().unwrap_or(0);
                let key = (c as u128) << 64 | (id[users[i] as usize] as u64 ^ 1 << 63) as u128;
                (key, i as u32)
            })
            .collect();
        keyed.par_sort_unstable();
        return keyed.par_iter().map(|&(_, i)| i).collect();
    }
    let mut order: Vec<u32> = (0..users.len() as u32).collect();
    order.par_sort_unstable_by(|&x, &y| {
        let (x, y) = (x as usize, y as usize);
        credit(y)
            .cmp_total(&credit(x))
            .then_with(|| ids.get(users[x]).cmp(&ids.get(users[y])))
    });
    order
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forest::test_forest;
    use std::collections::BTreeMap;

    /// Totals per beneficiary summed naively: (total, events, per level).
    fn naive(
        b: &[UserIx],
        k: &[u8],
        c: &[i64],
        levels: usize,
    ) -> BTreeMap<UserIx, (i64, u64, Vec<i64>)> {
        let mut m = BTreeMap::new();
        for i in 0..b.len() {
            let e = m.entry(b[i]).or_insert((0, 0, vec![0; levels]));
            e.0 += c[i];
            e.1 += 1;
            e.2[k[i] as usize - 1] += c[i];
        }
        m
    }

    #[test]
    fn packed_rows_round_trip_and_big_credits_take_the_wide_path() {
        let p = Packed::new(3_000).unwrap();
        for (u, k, c) in [
            (0, 1, 0),
            (187, 255, -1),
            (5, 3, (1 << 40) - 7),
            (9, 2, -(1 << 45)),
        ] {
            assert_eq!(p.unpack(p.pack(u, k, Some(c)).unwrap()), (u, k, c));
        }
        let half = 1i64 << (p.credit_bits - 1);
        assert!(p.pack(1, 1, Some(half)).is_none());
        assert!(p.pack(1, 1, Some(-half)).is_some());
        assert!(p.pack(1, 1, None).is_none());

        let users: Vec<i64> = (0..3_000).collect();
        let refs: Vec<Option<i64>> = (0..3_000).map(|u| (u > 0).then(|| (u - 1) / 3)).collect();
        let f = test_forest(&users, &refs);
        let rows = 20_000;
        let b: Vec<UserIx> = (0..rows).map(|i| (i * 7919 % 2_999) as UserIx).collect();
        let k: Vec<u8> = (0..rows).map(|i| (i % 3 + 1) as u8).collect();
        for big in [0, i64::MAX / 8] {
            let c: Vec<i64> = (0..rows as i64)
                .map(|i| if i == 77 { big } else { (i * 31 % 1001) - 300 })
                .collect();
            let t = totals(&f, &b, &k, &c, 3).unwrap();
            let want = naive(&b, &k, &c, 3);
            assert_eq!(t.beneficiary.len(), want.len());
            for (i, u) in t.beneficiary.iter().enumerate() {
                let (total, events, by) = &want[u];
                assert_eq!((t.credit[i], t.events[i]), (*total, *events));
                for l in 0..3 {
                    assert_eq!(t.by_level[l][i], by[l]);
                }
            }
            assert!(
                t.credit.windows(2).all(|w| w[0] >= w[1]),
                "leaderboard order"
            );
        }
        // Overflow of a total is an error on either path.
        let c = vec![i64::MAX / 2 + 1; 2];
        assert!(totals(&f, &[4, 4], &[1, 2], &c, 3).is_err());
        assert!(totals(&f, &[4, 4], &[1, 1], &[3, i64::MAX], 3).is_err());
    }
}
