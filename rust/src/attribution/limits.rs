//! The order-dependent rules: a buyer's first N creditable events, and the
//! cap per beneficiary. Both follow (ts, input row) order, so they run as
//! sequential passes over the sorted event order (O(m) and O(ledger)),
//! after the parallel work; their result is the same on any thread count.

use rayon::prelude::*;

use super::engine::{in_window, sum, Ledger, View};
use super::money::Money;
use super::policy::Policy;
use crate::error::Result;
use crate::forest::Forest;
use crate::ids::NO_USER;

/// Per event: does it earn credit? And how many events are creditable
/// (known buyer with a referrer, inside the window), before first-N.
pub(crate) fn eligible<T: Money>(
    forest: &Forest,
    v: &View<'_>,
    policy: &Policy<T>,
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
            match (policy.window_ns, joined, v.ts) {
                (Some(w), Some(j), Some(ts)) => in_window(j, b, ts[r], w),
                (Some(_), _, _) => false, // checked earlier: window needs both
                (None, _, _) => true,
            }
        })
        .collect();
    let count = creditable.par_iter().filter(|&&c| c).count() as u64;
    let Some(n) = policy.max_events_per_buyer else {
        return (creditable, count);
    };
    let mut seen = vec![0u32; forest.num_users()];
    let mut eligible = vec![false; creditable.len()];
    for &r in v.order {
        let r = r as usize;
        if creditable[r] {
            let s = &mut seen[v.buyer[r] as usize];
            eligible[r] = *s < n;
            *s = s.saturating_add(1);
        }
    }
    (eligible, count)
}

/// Cuts credits so each beneficiary's running total, taken in event order,
/// never exceeds `cap`: a credit that would cross it is paid partly, later
/// ones nothing, and refunds (negative credits) lower the running total.
/// Returns the credit cut off.
pub(crate) fn apply_cap<T: Money>(
    num_users: usize,
    order: &[u32],
    ledger: &mut Ledger<T>,
    cap: T,
) -> Result<T> {
    // Ledger rows of each event (they are grouped by event, in input order).
    let events = ledger
        .event_row
        .iter()
        .map(|&r| r as usize + 1)
        .max()
        .unwrap_or(0);
    let mut start = vec![0u32; events + 1];
    for &r in &ledger.event_row {
        start[r as usize + 1] += 1;
    }
    for e in 0..events {
        start[e + 1] += start[e];
    }
    let mut running = vec![T::ZERO; num_users];
    let mut cut = T::ZERO;
    for &r in order {
        let r = r as usize;
        if r >= events {
            continue;
        }
        for i in start[r] as usize..start[r + 1] as usize {
            let b = ledger.beneficiary[i] as usize;
            let want = ledger.credit[i];
            let paid = if want.is_positive() {
                let room = cap.checked_sub(running[b]).unwrap_or(T::ZERO);
                if want > room {
                    room
                } else {
                    want
                }
            } else {
                want
            };
            running[b] = sum(running[b], paid, "a beneficiary's running total")?;
            cut = sum(
                cut,
                want.checked_sub(paid).unwrap_or(T::ZERO),
                "the capped-off total",
            )?;
            ledger.credit[i] = paid;
        }
    }
    Ok(cut)
}
