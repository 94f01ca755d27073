//! Totals per beneficiary: the leaderboard (credit descending, ties by id).
//!
//! Ledger rows are moved into ranges of consecutive beneficiaries (a
//! parallel counting sort that carries the level and credit along), each
//! range is summed into dense per-user arrays in ledger order — so float
//! sums never depend on the thread count — and the beneficiaries are
//! sorted as packed (credit, id) integers (a comparator for string ids
//! and decimal amounts).

use rayon::prelude::*;

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
    let (offsets, items) = scatter_by_range(
        beneficiary.len(),
        |i| beneficiary[i],
        |i| (beneficiary[i], level[i], credit[i]),
    );
    // A beneficiary's sums side by side (one cache line): its total, then
    // its credit at each level.
    let width = levels + 1;
    type Part<T> = (Vec<UserIx>, Vec<u32>, Vec<T>);
    let parts: Vec<Result<Part<T>>> = (0..RANGES)
        .into_par_iter()
        .map(|t| {
            let w = range_len(n, t);
            let mut sums = vec![T::ZERO; w * width];
            let mut events = vec![0u32; w];
            for &(b, k, c) in &items[offsets[t]..offsets[t + 1]] {
                let u = local(b);
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
        })
        .collect();
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
