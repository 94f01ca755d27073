//! The program as a whole: its pyramid (per depth), its acquisition
//! channels with their viral descendants, and its growth metrics.

use rayon::prelude::*;

use crate::attribution::engine::sum;
use crate::attribution::Money;
use crate::error::Result;
use crate::forest::{Forest, NO_CHANNEL, NULL_TS};
use crate::ids::{UserIx, NO_USER};
use crate::reach::roots;
use crate::scores::Purchases;

/// Per depth (index = depth): users, buyers and their amount.
#[derive(Debug, Clone, PartialEq)]
pub struct Pyramid<T> {
    pub users: Vec<u64>,
    pub buyers: Vec<u64>,
    pub amount: Vec<T>,
}

/// Users per depth (index = depth).
pub fn depth_histogram(forest: &Forest) -> Vec<u64> {
    let mut users = vec![0u64; forest.num_users().min(forest.max_depth() as usize + 1)];
    for &d in forest.depth() {
        users[d as usize] += 1;
    }
    users
}

/// Users, buyers and amount per depth; amounts summed in user index order.
pub fn pyramid<T: Money>(forest: &Forest, p: Option<&Purchases<T>>) -> Result<Pyramid<T>> {
    let users = depth_histogram(forest);
    let mut buyers = vec![0; users.len()];
    let mut amount = vec![T::ZERO; users.len()];
    if let Some(p) = p {
        for (u, &d) in forest.depth().iter().enumerate() {
            let d = d as usize;
            buyers[d] += p.is_buyer(u as UserIx) as u64;
            amount[d] = sum(amount[d], p.amount[u], "the amount at a depth")?;
        }
    }
    Ok(Pyramid {
        users,
        buyers,
        amount,
    })
}

/// Per root channel (index = channel code; the last slot is "no channel":
/// implicit roots and roots without one).
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelTotals<T> {
    pub roots: Vec<u64>,
    /// Users in the trees of the channel's roots, roots included.
    pub users: Vec<u64>,
    pub buyers: Vec<u64>,
    pub amount_roots: Vec<T>,
    pub amount_descendants: Vec<T>,
}

/// Rolls every user up to the channel of its root.
pub fn channels<T: Money>(forest: &Forest, p: &Purchases<T>) -> Result<ChannelTotals<T>> {
    let names = forest.channels().map_or(0, |c| c.names.len());
    let slots = names + 1;
    let mut out = ChannelTotals {
        roots: vec![0; slots],
        users: vec![0; slots],
        buyers: vec![0; slots],
        amount_roots: vec![T::ZERO; slots],
        amount_descendants: vec![T::ZERO; slots],
    };
    let root = roots(forest);
    let code = |r: UserIx| match forest.channels() {
        Some(c) if c.codes[r as usize] != NO_CHANNEL => c.codes[r as usize] as usize,
        _ => names,
    };
    for (u, &r) in root.iter().enumerate() {
        let k = code(r);
        out.users[k] += 1;
        out.buyers[k] += p.is_buyer(u as UserIx) as u64;
        if r as usize == u {
            out.roots[k] += 1;
            out.amount_roots[k] = sum(out.amount_roots[k], p.amount[u], "a channel's amount")?;
        } else {
            out.amount_descendants[k] =
                sum(out.amount_descendants[k], p.amount[u], "a channel's amount")?;
        }
    }
    Ok(out)
}

/// Program-wide counts behind the growth metrics (ratios are taken by the
/// caller; see the Python `metrics` docs for the definitions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metrics {
    pub users: u64,
    pub roots: u64,
    /// Users with a referrer.
    pub referred: u64,
    pub buyers: u64,
    /// Buyers with two orders or more.
    pub repeat_buyers: u64,
    /// Buyers whose referrer is a buyer (converted invitees of converted users).
    pub buyer_invitees: u64,
    /// Referrals where both sides have a `joined_at`.
    pub join_pairs: u64,
    /// Median of joined_at(user) - joined_at(referrer) over those pairs
    /// (the mean of the two middle values, rounded toward negative
    /// infinity, for an even count).
    pub median_join_delay_ns: Option<i64>,
    /// Users per depth.
    pub depth_histogram: Vec<u64>,
}

pub fn metrics<T: Money>(forest: &Forest, p: Option<&Purchases<T>>) -> Metrics {
    let parent = forest.parent();
    let n = parent.len();
    let referred = parent.par_iter().filter(|&&q| q != NO_USER).count() as u64;
    let (buyers, repeat_buyers, buyer_invitees) = match p {
        None => (0, 0, 0),
        Some(p) => (0..n)
            .into_par_iter()
            .filter(|&u| p.orders[u] > 0)
            .map(|u| {
                let q = parent[u];
                let invitee = q != NO_USER && p.is_buyer(q);
                (1u64, (p.orders[u] > 1) as u64, invitee as u64)
            })
            .reduce(|| (0, 0, 0), |a, b| (a.0 + b.0, a.1 + b.1, a.2 + b.2)),
    };
    let mut delays: Vec<i64> = match forest.joined_at() {
        None => Vec::new(),
        Some(j) => (0..n)
            .into_par_iter()
            .filter_map(|u| {
                let q = parent[u];
                (q != NO_USER && j[u] != NULL_TS && j[q as usize] != NULL_TS)
                    .then(|| j[u].saturating_sub(j[q as usize]))
            })
            .collect(),
    };
    let median_join_delay_ns = median(&mut delays);
    Metrics {
        users: n as u64,
        roots: forest.num_roots() as u64,
        referred,
        buyers,
        repeat_buyers,
        buyer_invitees,
        join_pairs: delays.len() as u64,
        median_join_delay_ns,
        depth_histogram: depth_histogram(forest),
    }
}

fn median(v: &mut [i64]) -> Option<i64> {
    let len = v.len();
    if len == 0 {
        return None;
    }
    let (_, &mut upper, _) = v.select_nth_unstable(len / 2);
    if len % 2 == 1 {
        return Some(upper);
    }
    let lower = *v[..len / 2].iter().max().expect("even and non-empty");
    Some(((lower as i128 + upper as i128).div_euclid(2)) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forest::test_forest;
    use crate::scores::purchases;
    use crate::OnInvalid;

    #[test]
    fn pyramid_channels_and_metrics() {
        // 1 -> 2, 3; 2 -> 4; 5 alone. Buyers: 2 (twice), 4, 5.
        let f = test_forest(&[1, 2, 3, 4, 5], &[None, Some(1), Some(1), Some(2), None]);
        let ev = crate::scores::tests::events(&[2, 2, 4, 5], &[10, 20, 5, 1]);
        let p = purchases(&f, &ev, OnInvalid::Raise).unwrap();
        let py = pyramid(&f, Some(&p)).unwrap();
        assert_eq!(py.users, vec![2, 2, 1]);
        assert_eq!(py.buyers, vec![1, 1, 1]);
        assert_eq!(py.amount, vec![1, 30, 5]);
        let c = channels(&f, &p).unwrap();
        // No channel column: one "no channel" slot.
        assert_eq!(c.roots, vec![2]);
        assert_eq!(c.users, vec![5]);
        assert_eq!((c.amount_roots[0], c.amount_descendants[0]), (1, 35));
        let m = metrics(&f, Some(&p));
        assert_eq!((m.users, m.roots, m.referred), (5, 2, 3));
        assert_eq!((m.buyers, m.repeat_buyers, m.buyer_invitees), (3, 1, 1));
        assert_eq!(m.depth_histogram, vec![2, 2, 1]);
        assert_eq!(m.median_join_delay_ns, None);
    }

    #[test]
    fn median_of_even_counts_is_the_mean_of_the_middle_two() {
        assert_eq!(median(&mut [5, 1, 3]), Some(3));
        assert_eq!(median(&mut [4, 1, 3, 10]), Some(3));
        assert_eq!(median(&mut [-3, 0]), Some(-2));
        assert_eq!(median(&mut []), None);
    }
}
