//! Totals per beneficiary: the leaderboard (credit descending, ties by id).
//!
//! Ledger rows are moved into ranges of consecutive beneficiaries (a
//! parallel counting sort that carries the level and credit along), each
//! range is summed into dense per-user arrays in ledger order — so float
//! sums never depend on the thread count — and the beneficiaries are
//! sorted on packed keys, touching the ids only to break ties of string
//! ids.

use rayon::prelude::*;

use super::engine::sum;
use super::money::Money;
use super::ranges::{local, range_len, scatter_by_range, RANGES};
use crate::error::Result;
use crate::forest::Forest;
use crate::ids::{IdRef, UserIx};

/// One row per beneficiary, by credit descending, ties by id.
#[derive(Debug, Clone, PartialEq)]
pub struct Totals<T> {
    pub beneficiary: Vec<UserIx>,
    pub credit: Vec<T>,
    pub events: Vec<u64>,
    /// `by_level[k][i]`: beneficiary i's credit at level k + 1.
    pub by_level: Vec<Vec<T>>,
}

/// A beneficiary while sorting: the sort key and where its sums are.
#[derive(Clone, Copy)]
struct Entry<T> {
    credit: T,
    /// The integer id (0 for string ids, which compare through the ids).
    id: i64,
    user: UserIx,
    slot: u32,
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
    let ids = forest.ids();
    let id_key = |u: UserIx| match ids.get(u) {
        IdRef::Int(x) => x,
        IdRef::Str(_) => 0,
    };
    type Part<T> = (Vec<Entry<T>>, Vec<u64>, Vec<T>);
    let parts: Vec<Result<Part<T>>> = (0..RANGES)
        .into_par_iter()
        .map(|t| {
            let w = range_len(n, t);
            let mut total = vec![T::ZERO; w];
            let mut events = vec![0u32; w];
            let mut by_level = vec![T::ZERO; w * levels];
            for &(b, k, c) in &items[offsets[t]..offsets[t + 1]] {
                let u = local(b);
                total[u] = sum(total[u], c, "a beneficiary's credit total")?;
                events[u] += 1;
                let j = u * levels + k as usize - 1;
                by_level[j] = sum(by_level[j], c, "a beneficiary's credit total")?;
            }
            let (mut entries, mut counts, mut lv) = (Vec::new(), Vec::new(), Vec::new());
            for u in (0..w).filter(|&u| events[u] > 0) {
                let user = (u * RANGES + t) as UserIx;
                entries.push(Entry {
                    credit: total[u],
                    id: id_key(user),
                    user,
                    slot: 0,
                });
                counts.push(events[u] as u64);
                lv.extend_from_slice(&by_level[u * levels..(u + 1) * levels]);
            }
            Ok((entries, counts, lv))
        })
        .collect();
    let (mut entries, mut events, mut by_level) = (Vec::new(), Vec::new(), Vec::new());
    for part in parts {
        let (e, c, l) = part?;
        entries.extend(e);
        events.extend(c);
        by_level.extend(l);
    }
    for (s, e) in entries.iter_mut().enumerate() {
        e.slot = s as u32;
    }
    entries.par_sort_unstable_by(|x, y| {
        y.credit
            .cmp_total(&x.credit)
            .then(x.id.cmp(&y.id))
            .then_with(|| ids.get(x.user).cmp(&ids.get(y.user)))
    });
    Ok(Totals {
        beneficiary: entries.iter().map(|e| e.user).collect(),
        credit: entries.iter().map(|e| e.credit).collect(),
        events: entries.iter().map(|e| events[e.slot as usize]).collect(),
        by_level: (0..levels)
            .map(|k| {
                entries
                    .iter()
                    .map(|e| by_level[e.slot as usize * levels + k])
                    .collect()
            })
            .collect(),
    })
}
