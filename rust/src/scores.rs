//! Who the core fans are: events folded per user, downstream amounts within
//! K levels, a score and a tier per user (DESIGN.md "Reach and scores").

use rayon::prelude::*;

use crate::attribution::engine::{buyers, sum, EventInput};
use crate::attribution::ranges::{rows_by_range, SharedMut, RANGES};
use crate::attribution::Money;
use crate::error::{Error, Issue, OnInvalid, Result};
use crate::forest::Forest;
use crate::ids::UserIx;
use crate::reach::{levels_below, reach};

/// The events table folded per user (index order).
#[derive(Debug, Clone, PartialEq)]
pub struct Purchases<T> {
    /// Events with a positive amount (orders; refunds and zeros are not).
    pub orders: Vec<u32>,
    /// Sum of the user's amounts, refunds included.
    pub amount: Vec<T>,
    /// Valid event rows (all rows unless some were left out).
    pub events: u64,
    pub unknown_buyer_events: u64,
    pub issues: Vec<Issue>,
}

impl<T> Purchases<T> {
    #[inline]
    pub fn is_buyer(&self, u: UserIx) -> bool {
        self.orders[u as usize] > 0
    }
}

/// Folds `ev` per user: order counts and amounts (summed in row order, so
/// floats do not depend on the thread count). Buyers the graph does not
/// know are counted, not errors.
pub fn purchases<T: Money>(
    forest: &Forest,
    ev: &EventInput<'_, T>,
    mode: OnInvalid,
) -> Result<Purchases<T>> {
    let (buyer, valid, issues) = buyers(forest, ev, mode)?;
    let n = forest.num_users();
    let (offsets, rows) = rows_by_range(&buyer);
    let mut orders = vec![0u32; n];
    let mut amount = vec![T::ZERO; n];
    let (o, a) = (
        SharedMut(orders.as_mut_ptr()),
        SharedMut(amount.as_mut_ptr()),
    );
    (0..RANGES)
        .into_par_iter()
        .try_for_each(|t| -> Result<()> {
            for &r in &rows[offsets[t]..offsets[t + 1]] {
                let r = r as usize;
                let u = buyer[r] as usize;
                let x = ev.amount[r];
                // SAFETY: u is in range t, whose users only this task touches;
                // u < n as a known buyer.
                let (o, a) = unsafe { (&mut *o.ptr().add(u), &mut *a.ptr().add(u)) };
                // Fewer than u32::MAX events per call: counts cannot wrap.
                *o += x.is_positive() as u32;
                *a = a.checked_add(x).ok_or_else(|| {
                    Error::Overflow(format!(
                        "the amount of user {} does not fit the amount type",
                        forest.ids().get(buyer[r])
                    ))
                })?;
            }
            Ok(())
        })?;
    let known = rows.len() as u64;
    Ok(Purchases {
        orders,
        amount,
        events: valid as u64,
        unknown_buyer_events: valid as u64 - known,
        issues,
    })
}

/// Tier codes, best first.
pub const CORE: u8 = 0;
pub const ADVOCATE: u8 = 1;
pub const ACTIVE: u8 = 2;
pub const DORMANT: u8 = 3;
pub const TIER_NAMES: [&str; 4] = ["core", "advocate", "active", "dormant"];

/// How scores and tiers are computed.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoreParams {
    /// Downstream levels counted (K).
    pub depth: usize,
    /// Weight of level k's amount in the score, k = 1..=depth.
    pub weights: Vec<f64>,
    /// Multiplier from the amount's stored unit to the score's unit
    /// (10^-scale for decimals, 1 otherwise).
    pub unit: f64,
    /// Share of buyers in the core tier, in parts per million.
    pub core_ppm: u32,
    /// Share of buyers in the advocate tier (after core), in ppm.
    pub advocate_ppm: u32,
}

/// Per-user scores (index order); see [`scores`].
#[derive(Debug, Clone, PartialEq)]
pub struct Scores<T> {
    pub purchases: Purchases<T>,
    pub direct: Vec<u32>,
    /// Direct invitees who are buyers.
    pub direct_converted: Vec<u32>,
    pub descendants: Vec<u32>,
    /// Amount of descendants within `depth` levels.
    pub downstream: Vec<T>,
    /// `unit * (own amount + sum_k weights[k] * amount at level k)`.
    pub score: Vec<f64>,
    pub tier: Vec<u8>,
}

/// Scores every user. Buyers (at least one order) are ranked by score
/// descending, ties by id ascending; the first `ceil(core * buyers)` are
/// core, up to `ceil((core + advocate) * buyers)` advocates, the other
/// buyers active; users without an order are dormant.
pub fn scores<T: Money>(
    forest: &Forest,
    p: Purchases<T>,
    params: &ScoreParams,
) -> Result<Scores<T>> {
    if params.weights.len() != params.depth {
        return Err(Error::Policy(format!(
            "{} weights for {} levels",
            params.weights.len(),
            params.depth
        )));
    }
    let n = forest.num_users();
    let (offsets, _) = forest.children_csr();
    let direct: Vec<u32> = offsets.par_windows(2).map(|w| w[1] - w[0]).collect();
    let direct_converted = levels_below(
        forest,
        1,
        0u32,
        |c| p.is_buyer(c) as u32,
        |a, b| Ok::<_, ()>(a + b),
    )
    .ok()
    .and_then(|mut v| v.pop())
    .unwrap_or_default();
    let descendants = reach(forest, 0).descendants;
    let down = levels_below(
        forest,
        params.depth,
        T::ZERO,
        |c| p.amount[c as usize],
        |a, b| sum(a, b, "a downstream amount"),
    )?;
    let downstream: Vec<T> = (0..n)
        .into_par_iter()
        .map(|u| {
            down.iter()
                .try_fold(T::ZERO, |s, level| sum(s, level[u], "a downstream amount"))
        })
        .collect::<Result<_>>()?;
    let score: Vec<f64> = (0..n)
        .into_par_iter()
        .map(|u| {
            let weighted = down
                .iter()
                .zip(&params.weights)
                .fold(p.amount[u].to_f64(), |s, (level, w)| {
                    s + w * level[u].to_f64()
                });
            params.unit * weighted
        })
        .collect();
    let tier = tiers(forest, &p, &score, params);
    Ok(Scores {
        purchases: p,
        direct,
        direct_converted,
        descendants,
        downstream,
        score,
        tier,
    })
}

/// `ceil(share_ppm / 10^6 * count)` in exact integer arithmetic.
fn share(ppm: u32, count: usize) -> usize {
    (ppm as u64 * count as u64).div_ceil(1_000_000) as usize
}

fn tiers<T: Money>(
    forest: &Forest,
    p: &Purchases<T>,
    score: &[f64],
    params: &ScoreParams,
) -> Vec<u8> {
    let n = forest.num_users();
    let mut tier: Vec<u8> = (0..n)
        .into_par_iter()
        .map(|u| {
            if p.is_buyer(u as UserIx) {
                ACTIVE
            } else {
                DORMANT
            }
        })
        .collect();
    let mut ranked: Vec<UserIx> = (0..n as UserIx)
        .into_par_iter()
        .filter(|&u| p.is_buyer(u))
        .collect();
    let ids = forest.ids();
    // A total order (ids are unique), so the top sets are unique too.
    let better = |a: &UserIx, b: &UserIx| {
        score[*b as usize]
            .total_cmp(&score[*a as usize])
            .then_with(|| ids.get(*a).cmp(&ids.get(*b)))
    };
    let n_core = share(params.core_ppm, ranked.len()).min(ranked.len());
    let n_top = share(params.core_ppm + params.advocate_ppm, ranked.len()).min(ranked.len());
    if n_top < ranked.len() {
        ranked.select_nth_unstable_by(n_top, better);
    }
    let top = &mut ranked[..n_top];
    if n_core < top.len() {
        top.select_nth_unstable_by(n_core, better);
    }
    for (i, &u) in top.iter().enumerate() {
        tier[u as usize] = if i < n_core { CORE } else { ADVOCATE };
    }
    tier
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::forest::test_forest;
    use crate::ids::{IdRef, IdSlice};

    pub(crate) fn events<'a>(buyers: &'a [i64], amounts: &'a [i64]) -> EventInput<'a, i64> {
        EventInput {
            buyer: IdSlice::Int(buyers),
            buyer_valid: None,
            amount: amounts,
            amount_valid: None,
            ts: None,
            event_id_valid: None,
            event_id: None,
            keep_rows: false,
            buyer_col: "user_id",
            amount_col: "amount",
            ts_col: "ts",
            event_id_col: "event_id",
        }
    }

    fn params(depth: usize) -> ScoreParams {
        ScoreParams {
            depth,
            weights: vec![1.0, 0.5, 0.25][..depth].to_vec(),
            unit: 1.0,
            core_ppm: 10_000,
            advocate_ppm: 90_000,
        }
    }

    #[test]
    fn purchases_count_orders_sum_refunds_and_unknown_buyers() {
        let f = test_forest(&[1, 2, 3], &[None, Some(1), Some(2)]);
        let p = purchases(
            &f,
            &events(&[2, 2, 2, 9, 3], &[500, -200, 0, 70, 10]),
            OnInvalid::Raise,
        )
        .unwrap();
        let at = |id| f.lookup(IdRef::Int(id)).unwrap() as usize;
        assert_eq!((p.orders[at(2)], p.amount[at(2)]), (1, 300));
        assert_eq!((p.orders[at(1)], p.amount[at(1)]), (0, 0));
        assert_eq!((p.events, p.unknown_buyer_events), (5, 1));
        let e = purchases(&f, &events(&[2, 2], &[i64::MAX, 1]), OnInvalid::Raise).unwrap_err();
        assert!(
            matches!(e, Error::Overflow(ref m) if m.contains("user 2")),
            "{e}"
        );
    }

    #[test]
    fn downstream_stops_at_depth_and_score_weighs_levels() {
        // 1 -> 2 -> 3 -> 4; everyone buys 100 * id.
        let f = test_forest(&[1, 2, 3, 4], &[None, Some(1), Some(2), Some(3)]);
        let ev = events(&[1, 2, 3, 4], &[100, 200, 300, 400]);
        let p = purchases(&f, &ev, OnInvalid::Raise).unwrap();
        let s = scores(&f, p.clone(), &params(2)).unwrap();
        let at = |id| f.lookup(IdRef::Int(id)).unwrap() as usize;
        assert_eq!(s.downstream[at(1)], 500);
        assert_eq!(s.score[at(1)], 100.0 + 200.0 + 0.5 * 300.0);
        assert_eq!(s.descendants[at(1)], 3);
        assert_eq!((s.direct[at(1)], s.direct_converted[at(1)]), (1, 1));
        let e = scores(
            &f,
            p,
            &ScoreParams {
                weights: vec![1.0],
                ..params(2)
            },
        );
        assert!(matches!(e, Err(Error::Policy(_))));
    }

    #[test]
    fn tiers_rank_buyers_by_score_then_id() {
        // 200 roots; users 1..=150 buy, all the same amount except user 7.
        let users: Vec<i64> = (1..=200).collect();
        let f = test_forest(&users, &vec![None; 200]);
        let buyers: Vec<i64> = (1..=150).collect();
        let amounts: Vec<i64> = buyers
            .iter()
            .map(|&b| if b == 7 { 99 } else { 10 })
            .collect();
        let p = purchases(&f, &events(&buyers, &amounts), OnInvalid::Raise).unwrap();
        let s = scores(&f, p, &params(1)).unwrap();
        let tier = |id| s.tier[f.lookup(IdRef::Int(id)).unwrap() as usize];
        // ceil(1% of 150) = 2 core: user 7 (best score), then user 1 (smallest id).
        let core: Vec<i64> = users.iter().copied().filter(|&u| tier(u) == CORE).collect();
        assert_eq!(core, vec![1, 7]);
        // ceil(10% of 150) = 15 in the top two tiers: ids 2..=14 next.
        let adv: Vec<i64> = users
            .iter()
            .copied()
            .filter(|&u| tier(u) == ADVOCATE)
            .collect();
        assert_eq!(
            adv,
            (2..=14).filter(|&u| u != 7).chain([15]).collect::<Vec<_>>()
        );
        assert_eq!(tier(150), ACTIVE);
        assert_eq!(tier(151), DORMANT);
    }
}
