//! The order-dependent rules: a buyer's first N creditable events, and the
//! cap per beneficiary. Both follow (ts, input row) order, so they run as
//! sequential passes over the sorted event order (O(m) and O(ledger)),
//! after the parallel work; their result is the same on any thread count.

use rayon::prelude::*;

use super::engine::{in_window, sum, Ledger, Prepared};
use super::money::Money;
use super::policy::Policy;
use super::ranges::{local, range_len, scatter_by_range, SharedMut, RANGES};
use crate::error::Result;
use crate::forest::Forest;
use crate::ids::NO_USER;

/// Which events earn credit.
pub(crate) enum Eligible {
    /// Every creditable event (a known buyer with a referrer): no window,
    /// no first-N, no distributed mask. The walk decides row by row and
    /// counts them, so no pass over the events precedes it.
    Creditable,
    /// Per event, with the number of creditable events (before first-N).
    Rows(Vec<bool>, u64),
}

impl Eligible {
    #[inline]
    pub(crate) fn get<T: Money>(&self, forest: &Forest, v: &Prepared<'_, T>, r: usize) -> bool {
        match self {
            Eligible::Creditable => creditable(forest, v.buyer[r]),
            Eligible::Rows(e, _) => e[r],
        }
    }
}

#[inline]
pub(crate) fn creditable(forest: &Forest, b: crate::ids::UserIx) -> bool {
    b != NO_USER && forest.has_referrer(b)
}

/// Per event: does it earn credit? And how many events are creditable
/// (known buyer with a referrer, inside the window), before first-N.
/// `allowed` (a distributed run's global first-N) replaces first-N within
/// these events.
pub(crate) fn eligible<T: Money>(
    forest: &Forest,
    v: &Prepared<'_, T>,
    policy: &Policy<T>,
    allowed: Option<&[bool]>,
) -> Eligible {
    if policy.window_ns.is_none() && policy.max_events_per_buyer.is_none() && allowed.is_none() {
        return Eligible::Creditable;
    }
    let joined = forest.joined_at();
    let creditable: Vec<bool> = (0..v.buyer.len())
        .into_par_iter()
        .map(|r| {
            let b = v.buyer[r];
            if !creditable(forest, b) {
                return false;
            }
            match (policy.window_ns, joined) {
                (Some(w), Some(j)) => in_window(j, b, v.ts(r), w),
                (Some(_), None) => false, // checked earlier: a window needs joined_at
                (None, _) => true,
            }
        })
        .collect();
    let count = creditable.par_iter().filter(|&&c| c).count() as u64;
    if let Some(a) = allowed {
        let eligible = (0..creditable.len())
            .into_par_iter()
            .map(|r| creditable[r] && a[r])
            .collect();
        return Eligible::Rows(eligible, count);
    }
    let Some(n) = policy.max_events_per_buyer else {
        return Eligible::Rows(creditable, count);
    };
    let mut seen = vec![0u32; forest.num_users()];
    let mut eligible = vec![false; creditable.len()];
    for &r in v.order() {
        let r = r as usize;
        if creditable[r] {
            let s = &mut seen[v.buyer[r] as usize];
            eligible[r] = *s < n;
            *s = s.saturating_add(1);
        }
    }
    Eligible::Rows(eligible, count)
}

/// One credit against a running total under a cap: what is paid (a
/// positive credit up to the room left, a refund in full), with the
/// running total and the cut-off total updated.
#[inline]
pub(crate) fn cap_step<T: Money>(running: &mut T, want: T, cap: T, cut: &mut T) -> Result<T> {
    // The room left is cap - running >= 0; it overflows only when refunds
    // made the running total negative and the cap is near the type's
    // maximum, and then any credit fits.
    let pay = match cap.checked_sub(*running) {
        Some(room) if want.is_positive() && want > room => room,
        _ => want,
    };
    *running = sum(*running, pay, "a beneficiary's running total")?;
    *cut = sum(
        *cut,
        want.checked_sub(pay).unwrap_or(T::ZERO),
        "the capped-off total",
    )?;
    Ok(pay)
}

/// Caps credits already sorted by (beneficiary, ts, row): `beneficiary`
/// groups consecutive rows. The second pass of a distributed run, after
/// its ledgers are shuffled by beneficiary. Returns the credit cut off.
pub fn cap_sorted<T: Money, K: PartialEq + Copy>(
    beneficiary: &[K],
    credit: &mut [T],
    cap: T,
) -> Result<T> {
    let mut cut = T::ZERO;
    let mut running = T::ZERO;
    for i in 0..credit.len() {
        if i > 0 && beneficiary[i] != beneficiary[i - 1] {
            running = T::ZERO;
        }
        credit[i] = cap_step(&mut running, credit[i], cap, &mut cut)?;
    }
    Ok(cut)
}

/// Cuts credits so each beneficiary's running total, taken in event order,
/// never exceeds `cap`: a credit that would cross it is paid partly, later
/// ones nothing, and refunds (negative credits) lower the running total.
/// `ts(r)` is event row r's time. Returns the credit cut off.
///
/// A running total never exceeds the sum of a beneficiary's positive
/// credits, so only beneficiaries whose positive credits add up past the
/// cap need their rows in (ts, row) order; everyone else keeps every
/// credit. Rows are grouped by beneficiary range (in ledger order); each
/// range, in parallel, sums positives into a dense array, then sorts and
/// caps just the rows of the beneficiaries that can reach the cap.
pub(crate) fn apply_cap<T: Money>(
    num_users: usize,
    ts: impl Fn(usize) -> i64 + Sync,
    ledger: &mut Ledger<T>,
    cap: T,
) -> Result<T> {
    let (beneficiary, credit) = (&ledger.beneficiary, &ledger.credit);
    let (offsets, items) = scatter_by_range(
        ledger.len(),
        |i| beneficiary[i],
        |i| (i as u32, beneficiary[i], credit[i]),
    );
    let event_row = &ledger.event_row;
    let credit = SharedMut(ledger.credit.as_mut_ptr());
    let cuts: Vec<Result<T>> = (0..RANGES)
        .into_par_iter()
        .map(|t| {
            let items = &items[offsets[t]..offsets[t + 1]];
            let w = range_len(num_users, t);
            // Positive credits per user; `None` once the sum overflows
            // (such a user surely reaches the cap).
            let mut positive = vec![Some(T::ZERO); w];
            for &(_, b, c) in items {
                if c.is_positive() {
                    let p = &mut positive[local(b)];
                    *p = p.and_then(|s| s.checked_add(c));
                }
            }
            let mut hot: Vec<(i64, u32, u32, T)> = items
                .iter()
                .filter(|(_, b, _)| positive[local(*b)].is_none_or(|s| !s.surely_within(cap)))
                .map(|&(i, b, c)| (ts(event_row[i as usize] as usize), i, b, c))
                .collect();
            // An event pays a beneficiary once, and ledger rows follow input
            // rows, so (ts, ledger row) is (ts, input row) order.
            hot.sort_unstable_by_key(|&(t, i, _, _)| (t, i));
            let mut running = vec![T::ZERO; w];
            let mut cut = T::ZERO;
            for (_, i, b, want) in hot {
                let pay = cap_step(&mut running[local(b)], want, cap, &mut cut)?;
                // SAFETY: row i belongs to exactly one range (its
                // beneficiary's), so no other task writes credit[i].
                unsafe { *credit.ptr().add(i as usize) = pay };
            }
            Ok(cut)
        })
        .collect();
    let mut cut = T::ZERO;
    for c in cuts {
        cut = sum(cut, c?, "the capped-off total")?;
    }
    Ok(cut)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_runs_are_capped_per_beneficiary_with_refunds() {
        // Beneficiary 7: 60 + 60 crosses 100 (40 paid), a refund of -30
        // makes room, then 50 pays 30. Beneficiary 9 starts afresh.
        let b = [7u32, 7, 7, 7, 9, 9];
        let mut credit = [60i64, 60, -30, 50, 120, 10];
        let cut = cap_sorted(&b, &mut credit, 100).unwrap();
        assert_eq!(credit, [60, 40, -30, 30, 100, 0]);
        assert_eq!(cut, 20 + 20 + 20 + 10);
    }

    /// The cap rule applied literally: rows in (ts, row) order, one running
    /// total per beneficiary.
    fn naive_cap(ts: &[i64], l: &Ledger<i64>, cap: i64) -> (Vec<i64>, i64) {
        let mut idx: Vec<usize> = (0..l.len()).collect();
        idx.sort_by_key(|&i| (ts[l.event_row[i] as usize], l.event_row[i]));
        let mut running = std::collections::HashMap::new();
        let (mut out, mut cut) = (l.credit.clone(), 0);
        for i in idx {
            let r = running.entry(l.beneficiary[i]).or_insert(0i64);
            out[i] = cap_step(r, l.credit[i], cap, &mut cut).unwrap();
        }
        (out, cut)
    }

    #[test]
    fn caps_follow_event_time_not_ledger_order() {
        // 40 users, beneficiary 0 and 16 (same range) collect the most;
        // shuffled times, refunds, and users who never reach the cap.
        let mut rng = crate::rng::Rng::new(7, 0);
        let events = 5_000;
        let ts: Vec<i64> = (0..events)
            .map(|_| (rng.next_u64() % 1000) as i64)
            .collect();
        let mut l = Ledger::default();
        for r in 0..events as u32 {
            for level in 1..=3u8 {
                let pick = rng.next_u64() % 100;
                let b = if pick < 30 {
                    (pick % 2) as u32 * 16
                } else {
                    (pick % 40) as u32
                };
                let mut c = (rng.next_u64() % 500) as i64;
                if rng.next_u64().is_multiple_of(10) {
                    c = -c;
                }
                if l.event_row.last() == Some(&r) && l.beneficiary.last() == Some(&b) {
                    continue;
                }
                l.event_row.push(r);
                l.beneficiary.push(b);
                l.level.push(level);
                l.credit.push(c);
            }
        }
        for cap in [0, 1_000, 60_000, i64::MAX] {
            let (want, want_cut) = naive_cap(&ts, &l, cap);
            let mut got = l.clone();
            let cut = apply_cap(40, |r| ts[r], &mut got, cap).unwrap();
            let diff = (0..want.len()).find(|&i| got.credit[i] != want[i]);
            assert_eq!(diff, None, "cap {cap}: first differing ledger row");
            assert_eq!(cut, want_cut, "cap {cap}");
        }
    }
}
