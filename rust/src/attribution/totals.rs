//! Totals per beneficiary: the leaderboard (credit descending, ties by id).
//!
//! Ledger rows are moved into interleaved ranges of beneficiaries (a
//! parallel counting sort that carries the level and credit along, or, for
//! integer credits that no cap changes, packed by the walk chunk by chunk:
//! `Ranged`), each range is summed into dense per-user records in ledger
//! order — so float sums never depend on the thread count — and the
//! beneficiaries are sorted as packed (credit, id) integers (a comparator
//! for string ids and decimal amounts).

use rayon::prelude::*;
use std::sync::atomic::{AtomicBool, Ordering};

use super::engine::sum;
use super::money::Money;
use super::ranges::{local, range_len, range_of, scatter_by_range, SharedMut, RANGES};
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
    ranged: Option<&Ranged>,
) -> Result<Totals<T>> {
    let n = forest.num_users();
    let width = levels + 1;
    let parts: Vec<Result<Part<T>>> = match (ranged, Packed::new(n)) {
        // Packed by the walk, chunk by chunk (see `Ranged`).
        (Some(r), _) if r.unchecked => Some(
            (0..RANGES)
                .into_par_iter()
                .map(|t| Ok(sum_packed(range_len(n, t), t, width, r)))
                .collect(),
        ),
        (Some(r), _) => Some(
            (0..RANGES)
                .into_par_iter()
                .map(|t| {
                    let it = (0..r.chunks()).flat_map(|c| {
                        let seg = r.bounds[c * RANGES + t]..r.bounds[c * RANGES + t + 1];
                        r.items[seg].iter().map(|&x| r.packed.row(x))
                    });
                    sum_range(range_len(n, t), t, width, it, true)
                })
                .collect(),
        ),
        (None, Some(p)) if T::ZERO.to_i64().is_some() => {
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
                            let it = items[offsets[t]..offsets[t + 1]].iter().map(|&x| p.row(x));
                            sum_range(range_len(n, t), t, width, it, true)
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
                let it = items[offsets[t]..offsets[t + 1]]
                    .iter()
                    .map(|&(b, k, c)| (local(b), k, c));
                sum_range(range_len(n, t), t, width, it, false)
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
    // Records in leaderboard order first (one random line each), then
    // every column from them by a sequential strided read: reading `sums`
    // in that order once per column would pay the random reads per column.
    let sorted = crate::par::gather_records(&order, &sums, width);
    drop(sums);
    let column = |k: usize| -> Vec<T> { sorted.par_chunks(width).map(|s| s[k]).collect() };
    let out = Totals {
        beneficiary: order.par_iter().map(|&i| users[i as usize]).collect(),
        credit: column(0),
        events: order
            .par_iter()
            .map(|&i| events[i as usize] as u64)
            .collect(),
        by_level: (1..width).map(column).collect(),
    };
    Ok(out)
}

/// Range `t`'s paid users (in user order), their event counts and their
/// sums `[total, level 1, .., level D]` side by side.
type Part<T> = (Vec<UserIx>, Vec<u32>, Vec<T>);

/// Sums range `t`'s `items` (user within the range, level, credit) into
/// dense per-user records of `width` = levels + 1 values, one cache line a
/// user. Integer credits (`exact`) keep the event count in the record's
/// first slot (one line touched per item) and add the total from the
/// levels at the end, which is exact for integers; floats add the total
/// row by row in ledger order, so it never depends on the thread count.
fn sum_range<T: Money>(
    w: usize,
    t: usize,
    width: usize,
    items: impl Iterator<Item = (usize, u8, T)>,
    exact: bool,
) -> Result<Part<T>> {
    const WHAT: &str = "a beneficiary's credit total";
    let mut sums = vec![T::ZERO; w * width];
    let mut events = vec![0u32; if exact { 0 } else { w }];
    if exact {
        let one = T::from_i64(1);
        for (u, k, c) in items {
            let s = &mut sums[u * width..(u + 1) * width];
            s[0] = sum(s[0], one, "an event count")?;
            s[k as usize] = sum(s[k as usize], c, WHAT)?;
        }
        events = (0..w)
            .map(|u| sums[u * width].to_i64().unwrap_or(0) as u32)
            .collect();
        for s in sums.chunks_exact_mut(width) {
            let mut total = T::ZERO;
            for &c in &s[1..] {
                total = sum(total, c, WHAT)?;
            }
            s[0] = total;
        }
    } else {
        for (u, k, c) in items {
            let s = &mut sums[u * width..(u + 1) * width];
            s[0] = sum(s[0], c, WHAT)?;
            s[k as usize] = sum(s[k as usize], c, WHAT)?;
            events[u] += 1;
        }
    }
    Ok(paid_part(
        w,
        t,
        width,
        |u| events[u],
        |u, out| out.extend_from_slice(&sums[u * width..(u + 1) * width]),
    ))
}

/// Range `t`'s paid users among its `w` (those with `events(u) > 0`), in
/// user order, with their counts and the records `record(u, out)` appends
/// (`width` values: [total, level 1, .., level D]).
fn paid_part<T>(
    w: usize,
    t: usize,
    width: usize,
    events: impl Fn(usize) -> u32,
    mut record: impl FnMut(usize, &mut Vec<T>),
) -> Part<T> {
    let paid = (0..w).filter(|&u| events(u) > 0).count();
    let (mut users, mut counts) = (Vec::with_capacity(paid), Vec::with_capacity(paid));
    let mut out = Vec::with_capacity(paid * width);
    for u in (0..w).filter(|&u| events(u) > 0) {
        users.push((u * RANGES + t) as UserIx);
        counts.push(events(u));
        record(u, &mut out);
    }
    (users, counts, out)
}

/// [`sum_range`] of range `t`'s packed rows when no sum can overflow
/// (`Ranged::unchecked`): plain integer adds, no check per row.
fn sum_packed<T: Money>(w: usize, t: usize, width: usize, r: &Ranged) -> Part<T> {
    let mut sums = vec![0i64; w * width];
    for c in 0..r.chunks() {
        let seg = r.bounds[c * RANGES + t]..r.bounds[c * RANGES + t + 1];
        for &x in &r.items[seg] {
            let (u, k, credit) = r.packed.unpack(x);
            let s = &mut sums[u * width..(u + 1) * width];
            s[0] += 1;
            s[k as usize] += credit;
        }
    }
    // The count is in each record's first slot, the total goes there.
    paid_part(
        w,
        t,
        width,
        |u| sums[u * width] as u32,
        |u, out| {
            let levels = &sums[u * width + 1..(u + 1) * width];
            out.push(T::from_i64(levels.iter().sum()));
            out.extend(levels.iter().map(|&c| T::from_i64(c)));
        },
    )
}

/// Integer ledger rows packed and grouped by user range chunk by chunk of
/// the walk, while each chunk's rows are still in cache (instead of a
/// counting sort over the whole ledger afterwards): chunk c's rows fill
/// `items[at[c]..at[c + 1]]`, range t's of them
/// `bounds[c * RANGES + t]..bounds[c * RANGES + t + 1]`, in ledger order.
pub(crate) struct Ranged {
    items: Vec<u64>,
    bounds: Vec<usize>,
    packed: Packed,
    /// No sum of the rows' credits can overflow an i64 (`rows` × the
    /// largest credit fits), so they are summed unchecked.
    unchecked: bool,
    /// Write pointers into `items` and `bounds` for the chunks' tasks.
    items_out: SharedMut<u64>,
    bounds_out: SharedMut<usize>,
}

impl Ranged {
    /// Room for `rows` ledger rows over `chunks` walk chunks; `None` unless
    /// every credit of `amount` at rates `ppm` surely packs (integers only,
    /// |credit| <= |amount| * ppm / 1e6 within the bits the users leave).
    pub(crate) fn new<T: Money>(
        num_users: usize,
        rows: usize,
        chunks: usize,
        amount: &[T],
        ppm: &[u32],
    ) -> Option<Self> {
        T::ZERO.to_i64()?;
        let packed = Packed::new(num_users)?;
        let max_abs = amount
            .par_chunks(1 << 16)
            .map(|c| {
                c.iter()
                    .map(|x| x.to_i64().map_or(u64::MAX, i64::unsigned_abs))
                    .max()
                    .unwrap_or(0)
            })
            .max()
            .unwrap_or(0);
        let most = max_abs as u128 * ppm.iter().copied().max().unwrap_or(0) as u128 / 1_000_000;
        if most >= 1u128 << (packed.credit_bits - 1) {
            return None;
        }
        let unchecked = most.max(1).saturating_mul(rows as u128) < i64::MAX as u128;
        let mut items = Vec::with_capacity(rows);
        let mut bounds = vec![0; chunks * RANGES + 1];
        bounds[chunks * RANGES] = rows;
        Some(Ranged {
            items_out: SharedMut(items.as_mut_ptr()),
            bounds_out: SharedMut(bounds.as_mut_ptr()),
            items,
            bounds,
            packed,
            unchecked,
        })
    }

    #[cfg(test)]
    pub(crate) fn unchecked(&self) -> bool {
        self.unchecked
    }

    fn chunks(&self) -> usize {
        (self.bounds.len() - 1) / RANGES
    }

    /// Packs chunk `c`'s rows, which start at ledger row `at`.
    ///
    /// # Safety
    /// Each chunk is filled once, by one task; the chunks' spans
    /// `at..at + beneficiary.len()` are disjoint and within `rows`.
    pub(crate) unsafe fn fill<T: Money>(
        &self,
        c: usize,
        at: usize,
        beneficiary: &[UserIx],
        level: &[u8],
        credit: &[T],
    ) {
        let mut next = [0usize; RANGES + 1];
        for &u in beneficiary {
            next[range_of(u) + 1] += 1;
        }
        for t in 0..RANGES {
            next[t + 1] += next[t];
            // SAFETY: bounds c * RANGES .. (c + 1) * RANGES are chunk c's.
            unsafe { *self.bounds_out.ptr().add(c * RANGES + t) = at + next[t] };
        }
        for i in 0..beneficiary.len() {
            let u = beneficiary[i];
            let x = self.packed.pack(local(u), level[i], credit[i].to_i64());
            let t = range_of(u);
            // SAFETY: rows at..at + len are this chunk's (see above).
            unsafe { *self.items_out.ptr().add(at + next[t]) = x.expect("bounded by `new`") };
            next[t] += 1;
        }
    }

    /// Marks every row written.
    ///
    /// # Safety
    /// Every chunk's span was filled, and the spans cover all `rows`.
    pub(crate) unsafe fn filled(&mut self) {
        let rows = self.bounds[self.bounds.len() - 1];
        unsafe { self.items.set_len(rows) };
    }
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

    /// A packed row as (user within its range, level, credit).
    #[inline]
    fn row<T: Money>(self, x: u64) -> (usize, u8, T) {
        let (u, k, c) = self.unpack(x);
        (u, k, T::from_i64(c))
    }

    #[inline]
    fn unpack(self, x: u64) -> (usize, u8, i64) {
        let shift = 64 - self.credit_bits;
        let c = ((x << shift) as i64) >> shift;
        let rest = x >> self.credit_bits;
        ((rest >> 8) as usize, rest as u8, c)
    }
}

/// The indices of `(key, index)` pairs in key order.
fn sorted_indices<K: Ord + Send + Sync>(mut keyed: Vec<(K, u32)>) -> Vec<u32> {
    keyed.par_sort_unstable();
    keyed.par_iter().map(|&(_, i)| i).collect()
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
        // (credit descending, id) as two unsigned keys.
        let keys: Vec<(u64, u64)> = (0..users.len())
            .into_par_iter()
            .map(|i| {
                let c = !credit(i).order_key().unwrap_or(0);
                (c, id[users[i] as usize] as u64 ^ 1 << 63)
            })
            .collect();
        let (c0, c1, i0, i1) = keys
            .par_iter()
            .fold(
                || (u64::MAX, 0, u64::MAX, 0),
                |(a, b, c, d), &(x, y)| (a.min(x), b.max(x), c.min(y), d.max(y)),
            )
            .reduce(
                || (u64::MAX, 0, u64::MAX, 0),
                |(a, b, c, d), (w, x, y, z)| (a.min(w), b.max(x), c.min(y), d.max(z)),
            );
        let bits = |span: u64| u64::BITS - span.leading_zeros();
        let id_bits = bits(i1.saturating_sub(i0));
        if bits(c1.saturating_sub(c0)) + id_bits <= 64 {
            // Both spans fit one u64 (they usually do): pairs half the
            // bytes of (u128, u32) sort faster, in the same order.
            let keyed: Vec<(u64, u32)> = keys
                .par_iter()
                .enumerate()
                .map(|(i, &(c, d))| {
                    (
                        (c - c0).checked_shl(id_bits).unwrap_or(0) | (d - i0),
                        i as u32,
                    )
                })
                .collect();
            return sorted_indices(keyed);
        }
        let keyed: Vec<(u128, u32)> = keys
            .par_iter()
            .enumerate()
            .map(|(i, &(c, d))| ((c as u128) << 64 | d as u128, i as u32))
            .collect();
        return sorted_indices(keyed);
    }
    if T::ZERO.order_key().is_some() {
        // String ids: sort integers — the credit key, then the id's first 8
        // bytes big-endian (zero-padded: the same order as the bytes where
        // they differ) — and only runs that tie on both by the whole id. A
        // comparator reading the credit and both ids per comparison took
        // most of the leaderboard's time.
        let prefix = |u: UserIx| match ids.get(u) {
            crate::ids::IdRef::Str(b) => {
                let mut w = [0u8; 8];
                let n = b.len().min(8);
                w[..n].copy_from_slice(&b[..n]);
                u64::from_be_bytes(w)
            }
            crate::ids::IdRef::Int(x) => x as u64 ^ 1 << 63,
        };
        let mut keyed: Vec<(u64, u64, u32)> = (0..users.len())
            .into_par_iter()
            .map(|i| {
                let c = !credit(i).order_key().unwrap_or(0);
                (c, prefix(users[i]), i as u32)
            })
            .collect();
        keyed.par_sort_unstable();
        keyed
            .par_chunk_by_mut(|a, b| (a.0, a.1) == (b.0, b.1))
            .filter(|run| run.len() > 1)
            .for_each(|run| {
                run.sort_unstable_by(|x, y| {
                    ids.get(users[x.2 as usize])
                        .cmp(&ids.get(users[y.2 as usize]))
                })
            });
        return keyed.par_iter().map(|&(_, _, i)| i).collect();
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
            let t = totals(&f, &b, &k, &c, 3, None).unwrap();
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
        assert!(totals(&f, &[4, 4], &[1, 2], &c, 3, None).is_err());
        assert!(totals(&f, &[4, 4], &[1, 1], &[3, i64::MAX], 3, None).is_err());
    }

    #[test]
    fn leaderboard_with_string_ids_breaks_credit_ties_by_id_bytes() {
        // Ids whose byte order differs from their user order, credits with
        // long runs of ties (int and float), in scrambled paid order.
        let n = 5_000usize;
        // Short ids, ids past 8 bytes that share their first 8 (the sort's
        // integer prefix), and ids ending in NUL bytes (which pad alike).
        let names: Vec<Vec<u8>> = (0..n)
            .map(|i| {
                let k = (i * 7_919) % n;
                match i % 3 {
                    0 => format!("u{k}"),
                    1 => format!("customer-{k}"),
                    _ => format!("u{k}\0"),
                }
                .into_bytes()
            })
            .collect();
        let f = crate::forest::test_forest_str(&names);
        let paid: Vec<UserIx> = (0..n as u32).map(|u| u * 1_201 % n as u32).collect();
        let credit: Vec<i64> = (0..n as i64).map(|i| (i * 37 % 11) - 5).collect();
        let want = |key: &dyn Fn(usize) -> f64| {
            let mut w: Vec<u32> = (0..n as u32).collect();
            w.sort_by(|&x, &y| {
                key(y as usize).total_cmp(&key(x as usize)).then_with(|| {
                    f.ids()
                        .get(paid[x as usize])
                        .cmp(&f.ids().get(paid[y as usize]))
                })
            });
            w
        };
        assert_eq!(
            leaderboard(&f, &paid, |i| credit[i]),
            want(&|i| credit[i] as f64)
        );
        let float: Vec<f64> = credit.iter().map(|&c| c as f64 * 0.25).collect();
        assert_eq!(leaderboard(&f, &paid, |i| float[i]), want(&|i| float[i]));
    }

    #[test]
    fn leaderboard_orders_by_credit_then_id_whatever_the_key_spans() {
        let n = 3_000i64;
        // Ids that pack with the credits into one u64, and ids whose span
        // alone takes all 64 bits (u128 keys), with credits of a few bits
        // and of 62.
        for (spread, wide) in [(false, false), (true, false), (true, true)] {
            let users: Vec<i64> = (0..n)
                .map(|i| match (spread, i % 2) {
                    (false, _) => i * 7,
                    (true, 0) => i64::MIN + i,
                    (true, _) => i64::MAX - i,
                })
                .collect();
            let refs: Vec<Option<i64>> = (0..n as usize)
                .map(|i| (i > 0).then(|| users[(i - 1) / 2]))
                .collect();
            let f = test_forest(&users, &refs);
            // Every user, scrambled, with credits that tie and go negative.
            let paid: Vec<UserIx> = (0..n as u32).map(|u| u * 1_201 % n as u32).collect();
            let credit: Vec<i64> = (0..n)
                .map(|i| match i % 500 {
                    7 if wide => 1 << 60,
                    9 if wide => -(1 << 60),
                    _ => (i * 37 % 101) - 50,
                })
                .collect();
            let order = leaderboard(&f, &paid, |i| credit[i]);
            let IdValues::Int(id) = f.ids() else {
                unreachable!()
            };
            let mut want: Vec<u32> = (0..n as u32).collect();
            want.sort_by_key(|&i| (-credit[i as usize], id[paid[i as usize] as usize]));
            assert_eq!(order, want);
        }
    }
}
