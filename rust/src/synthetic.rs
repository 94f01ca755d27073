//! Synthetic referral programs with the shape of real ones: a few opinion
//! leaders invite thousands (heavy-tailed invitations by preferential
//! attachment over "invitation tickets"), invitations attenuate with depth,
//! roots come from several acquisition channels, buyers repeat and some
//! purchases are refunded.
//!
//! Referrals are generated sequentially (each user picks an earlier one:
//! O(n), one random read per user); events in parallel chunks of users, each
//! seeded by (seed, chunk index), so the tables are the same bytes on any
//! number of threads.

use rayon::prelude::*;

use crate::forest::NO_CHANNEL;
use crate::rng::Rng;

/// Acquisition channels of root users, with their shares.
pub const CHANNELS: [(&str, f64); 5] = [
    ("ads", 0.35),
    ("packaging_qr", 0.25),
    ("store", 0.20),
    ("social", 0.15),
    ("partner", 0.05),
];

const NS_PER_DAY: i64 = 86_400 * 1_000_000_000;
/// 2024-01-01T00:00:00Z in nanoseconds.
const START_NS: i64 = 1_704_067_200 * 1_000_000_000;

/// Knobs of the generator (defaults give a realistic program).
#[derive(Debug, Clone)]
pub struct Params {
    pub users: usize,
    pub seed: u64,
    /// Mean number of events (purchases and refunds) per user.
    pub events_per_user: f64,
    /// Share of users who join on their own (roots).
    pub root_share: f64,
    /// Tail index of invitation propensity (smaller: heavier tail).
    pub alpha: f64,
    /// Invitation propensity is multiplied by this per level of depth.
    pub attenuation: f64,
    /// Days over which users join.
    pub days: i64,
}

impl Params {
    pub fn new(users: usize, seed: u64) -> Self {
        Params {
            users,
            seed,
            events_per_user: 2.5,
            root_share: 0.05,
            alpha: 1.3,
            attenuation: 0.6,
            days: 365,
        }
    }
}

/// The referrals table, columns as vectors (user order = join order).
#[derive(Debug, Clone, PartialEq)]
pub struct Referrals {
    pub user_id: Vec<i64>,
    pub referrer_id: Vec<i64>,
    pub referrer_valid: Vec<bool>,
    /// Nanoseconds since the epoch, UTC.
    pub joined_at: Vec<i64>,
    /// Index into `CHANNELS`, or `NO_CHANNEL` for referred users.
    pub channel: Vec<u32>,
}

/// The events table (purchases, and refunds as negative amounts in cents).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Events {
    pub event_id: Vec<i64>,
    pub user_id: Vec<i64>,
    pub amount: Vec<i64>,
    pub ts: Vec<i64>,
}

impl Referrals {
    /// The table as a build input (for tests, examples and profiling).
    pub fn input(&self) -> crate::forest::ReferralInput<'_> {
        crate::forest::ReferralInput {
            user: crate::ids::IdSlice::Int(&self.user_id),
            user_valid: None,
            referrer: crate::ids::IdSlice::Int(&self.referrer_id),
            referrer_valid: Some(&self.referrer_valid),
            joined_at: Some((&self.joined_at, None)),
            channel: None,
            joined_tz: Some("UTC"),
            user_col: "user_id",
            referrer_col: "referrer_id",
        }
    }

    /// The user and referrer ids as strings (see [`as_strings`]).
    pub fn string_ids(&self) -> StringIds {
        StringIds {
            user: as_strings(&self.user_id, None),
            referrer: as_strings(&self.referrer_id, Some(&self.referrer_valid)),
        }
    }

    /// [`Referrals::input`] with the ids of `ids` ([`Referrals::string_ids`]).
    pub fn input_str<'a>(&'a self, ids: &'a StringIds) -> crate::forest::ReferralInput<'a> {
        let str_slice =
            |(offsets, data): &'a (Vec<i64>, Vec<u8>)| crate::ids::IdSlice::Str { offsets, data };
        crate::forest::ReferralInput {
            user: str_slice(&ids.user),
            referrer: str_slice(&ids.referrer),
            ..self.input()
        }
    }
}

/// String ids of a program's referrals: (offsets, bytes) per column.
#[derive(Debug, Clone, PartialEq)]
pub struct StringIds {
    pub user: (Vec<i64>, Vec<u8>),
    pub referrer: (Vec<i64>, Vec<u8>),
}

/// External id of the i-th user: an odd multiplier is a bijection on 40-bit
/// integers, so ids are unique, sparse (hash-indexed) and look like real ones.
pub fn user_id(i: usize) -> i64 {
    (((i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)) & ((1u64 << 40) - 1)) as i64
}

/// Integer ids as string ids, "u" + the number (the benches' string-id
/// program): (offsets, bytes); a row that is not `valid` is empty.
pub fn as_strings(ids: &[i64], valid: Option<&[bool]>) -> (Vec<i64>, Vec<u8>) {
    let mut offsets = Vec::with_capacity(ids.len() + 1);
    offsets.push(0);
    let mut data = Vec::new();
    for (i, x) in ids.iter().enumerate() {
        if valid.is_none_or(|m| m[i]) {
            data.extend_from_slice(format!("u{x}").as_bytes());
        }
        offsets.push(data.len() as i64);
    }
    (offsets, data)
}

/// Generates a program: (referrals, events).
pub fn program(p: &Params) -> (Referrals, Events) {
    let referrals = referrals(p);
    let events = events(p, &referrals);
    (referrals, events)
}

fn referrals(p: &Params) -> Referrals {
    let n = p.users;
    let mut rng = Rng::new(p.seed, u64::MAX);
    let mut out = Referrals {
        user_id: (0..n).map(user_id).collect(),
        referrer_id: vec![0; n],
        referrer_valid: vec![false; n],
        joined_at: Vec::with_capacity(n),
        channel: vec![NO_CHANNEL; n],
    };
    // A user holds tickets in proportion to their propensity to invite;
    // drawing a ticket picks the referrer. Each success earns one more
    // ticket (rich get richer), damped with depth. A ticket packs the user
    // and their depth, and ids are computed, so a draw is one cache miss.
    let mut tickets: Vec<u64> = Vec::with_capacity(n * 3);
    let ticket = |u: usize, d: u16| ((d as u64) << 32) | u as u64;
    let span = p.days * NS_PER_DAY;
    for i in 0..n {
        out.joined_at
            .push(START_NS + (span as i128 * i as i128 / n.max(1) as i128) as i64);
        let root = tickets.is_empty() || rng.f64() < p.root_share;
        let mut depth: u16 = 0;
        if root {
            let mut x = rng.f64();
            let mut c = CHANNELS.len() - 1;
            for (k, (_, share)) in CHANNELS.iter().enumerate() {
                if x < *share {
                    c = k;
                    break;
                }
                x -= share;
            }
            out.channel[i] = c as u32;
        } else {
            let tk = tickets[rng.below(tickets.len() as u64) as usize];
            let (t, dt) = ((tk & 0xFFFF_FFFF) as usize, (tk >> 32) as u16);
            out.referrer_id[i] = user_id(t);
            out.referrer_valid[i] = true;
            depth = dt.saturating_add(1);
            if rng.f64() < p.attenuation.powi(dt as i32) {
                tickets.push(tk);
            }
        }
        let propensity = (rng.pareto(p.alpha) - 1.0) * p.attenuation.powi(depth as i32);
        let k = (propensity + rng.f64()).floor().min(10_000.0) as usize;
        tickets.extend(std::iter::repeat_n(ticket(i, depth), k));
    }
    out
}

fn events(p: &Params, r: &Referrals) -> Events {
    const CHUNK: usize = 1 << 16;
    const REFUND_SHARE: f64 = 0.04;
    // 70% of users buy (fewer when fewer events are asked for), each at
    // least once; the number of orders per buyer is 1 + geometric.
    let per_user_orders = p.events_per_user / (1.0 + REFUND_SHARE);
    let buy_share = per_user_orders.min(0.7);
    let extra_mean = if buy_share > 0.0 {
        (per_user_orders / buy_share - 1.0).max(0.0)
    } else {
        0.0
    };
    let chunks: Vec<Events> = (0..r.user_id.len().div_ceil(CHUNK))
        .into_par_iter()
        .map(|c| {
            let mut rng = Rng::new(p.seed, c as u64);
            let mut e = Events::default();
            let end = ((c + 1) * CHUNK).min(r.user_id.len());
            for u in c * CHUNK..end {
                if rng.f64() >= buy_share {
                    continue;
                }
                // 1 + geometric number of orders with the wanted mean.
                let q = 1.0 / (1.0 + extra_mean);
                let mut orders = 1;
                while rng.f64() > q && orders < 1000 {
                    orders += 1;
                }
                let mut ts = r.joined_at[u] + (rng.exp(20.0) * NS_PER_DAY as f64) as i64;
                for _ in 0..orders {
                    let cents = (3000.0 * (0.9 * rng.normal()).exp()).round().max(100.0) as i64;
                    e.user_id.push(r.user_id[u]);
                    e.amount.push(cents);
                    e.ts.push(ts);
                    if rng.f64() < REFUND_SHARE {
                        let part = if rng.f64() < 0.7 { 1.0 } else { rng.f64() };
                        e.user_id.push(r.user_id[u]);
                        e.amount
                            .push(-((cents as f64 * part).round().max(1.0) as i64));
                        e.ts.push(ts + (rng.exp(7.0) * NS_PER_DAY as f64) as i64 + 1);
                    }
                    ts += (rng.exp(30.0) * NS_PER_DAY as f64) as i64 + 1;
                }
            }
            e
        })
        .collect();
    let total = chunks.iter().map(|e| e.amount.len()).sum();
    let mut out = Events {
        event_id: (0..total as i64).collect(),
        user_id: Vec::with_capacity(total),
        amount: Vec::with_capacity(total),
        ts: Vec::with_capacity(total),
    };
    for e in chunks {
        out.user_id.extend(e.user_id);
        out.amount.extend(e.amount);
        out.ts.extend(e.ts);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::OnInvalid;
    use crate::forest::Forest;

    #[test]
    fn same_seed_same_tables_and_a_valid_forest() {
        let p = Params::new(50_000, 3);
        let (r1, e1) = program(&p);
        let (r2, e2) = program(&p);
        assert_eq!(r1, r2);
        assert_eq!(e1, e2);
        let (r3, _) = program(&Params::new(50_000, 4));
        assert_ne!(r1.referrer_id, r3.referrer_id);
        let mut none = Params::new(1000, 3);
        none.events_per_user = 0.0;
        assert!(program(&none).1.amount.is_empty());
        let f = Forest::build(&r1.input(), OnInvalid::Raise).unwrap().forest;
        assert_eq!(f.num_users(), 50_000);
        assert!(f.max_depth() >= 3);
        // Heavy tail: the top inviter brings far more than the mean.
        let top = (0..f.num_users() as u32)
            .map(|u| f.children(u).len())
            .max()
            .unwrap();
        assert!(top > 200, "top inviter brought {top}");
        // Events: about 2.5 per user, some refunds, amounts in cents.
        let per_user = e1.amount.len() as f64 / 50_000.0;
        assert!((2.0..3.0).contains(&per_user), "{per_user}");
        assert!(e1.amount.iter().any(|&a| a < 0));
    }
}
