//! The order-dependent rules: a buyer's first N creditable events, and the
//! cap per beneficiary. Both follow (ts, input row) order, so they run as
//! sequential passes over the sorted event order (O(m) and O(ledger)),
//! after the parallel work; their result is the same on any thread count.

use rayon::prelude::*;

use super::engine::{
    in_window, range_shift, rows_by_range, sum, Ledger, Prepared, SharedMut, RANGES,
};
use super::money::Money;
use super::policy::Policy;
use crate::error::Result;
use crate::forest::Forest;
use crate::ids::NO_USER;

/// Per event: does it earn credit? And how many events are creditable
/// (known buyer with a referrer, inside the window), before first-N.
/// `allowed` (a distributed run's global first-N) replaces first-N within
/// these events.
pub(crate) fn eligible<T: Money>(
    forest: &Forest,
    v: &Prepared<'_, T>,
    policy: &Policy<T>,
    allowed: Option<&[bool]>,
) -> (Vec<bool>, u64) {
    let parent = forest.parent();
    let joined = forest.joined_at();
    let creditable: Vec<bool> = (0..v.buyer.len())
        .into_par_iter()
        .map(|r| {
            let b = v.buyer[r];
            if b == NO_USER || parent[b as usize] == NO_USER {
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
        return (eligible, count);
    }
    let Some(n) = policy.max_events_per_buyer else {
        return (creditable, count);
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
    (eligible, count)
}

/// One credit against a running total under a cap: what is paid (a
/// positive credit up to the room left, a refund in full), with the
/// running total and the cut-off total updated.
#[inline]
fn cap_step<T: Money>(running: &mut T, want: T, cap: T, cut: &mut T) -> Result<T> {
    let pay = if want.is_positive() {
        let room = cap.checked_sub(*running).unwrap_or(T::ZERO);
        if want > room {
            room
        } else {
            want
        }
    } else {
        want
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
/// Beneficiary ranges run in parallel; within one, rows are taken in
/// (ts, row) order of their events. Returns the credit cut off.
pub(crate) fn apply_cap<T: Money>(
    num_users: usize,
    order: &[u32],
    ledger: &mut Ledger<T>,
    cap: T,
) -> Result<T> {
    let events = ledger
        .event_row
        .iter()
        .map(|&r| r as usize + 1)
        .max()
        .unwrap_or(0);
    let mut rank = vec![u32::MAX; events];
    for (k, &r) in order.iter().enumerate() {
        if (r as usize) < events {
            rank[r as usize] = k as u32;
        }
    }
    let width = 1usize << range_shift(num_users);
    let (offsets, rows) = rows_by_range(&ledger.beneficiary, num_users);
    let (event_row, beneficiary) = (&ledger.event_row, &ledger.beneficiary);
    let credit = SharedMut(ledger.credit.as_mut_ptr());
    let cuts: Vec<Result<T>> = (0..RANGES)
        .into_par_iter()
        .map(|t| {
            let lo = t * width;
            // An event pays a beneficiary once, so (rank, row) orders rows;
            // sort packed keys rather than reading ranks in comparisons.
            let mut keys: Vec<u64> = rows[offsets[t]..offsets[t + 1]]
                .iter()
                .map(|&i| ((rank[event_row[i as usize] as usize] as u64) << 32) | i as u64)
                .collect();
            keys.sort_unstable();
            let mut running = vec![T::ZERO; width.min(num_users.saturating_sub(lo))];
            let mut cut = T::ZERO;
            for k in keys {
                let i = k as u32 as usize;
                let b = beneficiary[i] as usize - lo;
                // SAFETY: row i belongs to exactly one range (its
                // beneficiary's), so no other task reads or writes credit[i].
                let want = unsafe { *credit.ptr().add(i) };
                let pay = cap_step(&mut running[b], want, cap, &mut cut)?;
                // SAFETY: as above.
                unsafe { *credit.ptr().add(i) = pay };
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
}
