//! The service path: one event at a time, same semantics as the batch
//! pass. State (spend for qualification, first-N counts, running cap
//! totals, the latest time seen) lives behind one mutex, so a session is
//! shared between threads; each call is a chain walk of at most D
//! qualified ancestors plus a few hash-map updates (microseconds).
//!
//! Fed a batch's events in (ts, row) order, a fresh session pays exactly
//! the batch ledger when timestamps are distinct (with ties, the batch
//! counts all same-time events for qualification; a session only those
//! seen so far).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::engine::{check_inputs, in_window, sum, validated_order, EventInput};
use super::limits::cap_step;
use super::money::Money;
use super::policy::{Policy, Qualify};
use crate::error::{Error, Result};
use crate::forest::Forest;
use crate::ids::{UserIx, NO_USER};

#[derive(Debug)]
struct State<T> {
    last_ts: Option<i64>,
    spend: HashMap<UserIx, T>,
    purchased: HashMap<UserIx, ()>,
    counts: HashMap<UserIx, u32>,
    capped: HashMap<UserIx, T>,
}

/// A thread-safe attribution session over one graph and policy.
#[derive(Debug)]
pub struct Session<T> {
    forest: Arc<Forest>,
    policy: Policy<T>,
    state: Mutex<State<T>>,
}

/// One credit: (beneficiary, level, credit).
pub type Credit<T> = (UserIx, u8, T);

impl<T: Money> Session<T> {
    pub fn new(forest: Arc<Forest>, policy: Policy<T>) -> Self {
        Session {
            forest,
            policy,
            state: Mutex::new(State {
                last_ts: None,
                spend: HashMap::new(),
                purchased: HashMap::new(),
                counts: HashMap::new(),
                capped: HashMap::new(),
            }),
        }
    }

    /// A session whose state reflects `history` (fed in (ts, row) order).
    /// Errors as the batch pass in strict mode.
    pub fn with_history(
        forest: Arc<Forest>,
        policy: Policy<T>,
        history: &EventInput<'_, T>,
    ) -> Result<Self> {
        check_inputs(&forest, history, &policy)?;
        let (buyer, order) = validated_order(&forest, history)?;
        let session = Session::new(forest, policy);
        for r in order {
            let r = r as usize;
            let b = (buyer[r] != NO_USER).then_some(buyer[r]);
            let ts = history.ts.map(|(v, _)| v[r]);
            session.attribute(b, history.amount[r], ts)?;
        }
        Ok(session)
    }

    pub fn policy(&self) -> &Policy<T> {
        &self.policy
    }

    pub fn forest(&self) -> &Arc<Forest> {
        &self.forest
    }

    /// Attributes one event of `buyer` (None: unknown, earns nobody
    /// credit) and updates the state. Errors: `Invalid` for a non-finite
    /// amount or a ts older than one already seen; `Policy` for a missing
    /// ts when the policy has a window.
    pub fn attribute(
        &self,
        buyer: Option<UserIx>,
        amount: T,
        ts: Option<i64>,
    ) -> Result<Vec<Credit<T>>> {
        if !amount.is_finite() {
            return Err(Error::Invalid {
                column: "amount".into(),
                row: None,
                id: None,
                reason: "amount is NaN or infinite".into(),
            });
        }
        if self.policy.window_ns.is_some() && ts.is_none() {
            return Err(Error::Policy("the policy has a window: pass ts".into()));
        }
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let (Some(t), Some(last)) = (ts, st.last_ts) {
            if t < last {
                return Err(Error::Invalid {
                    column: "ts".into(),
                    row: None,
                    id: None,
                    reason: format!("event at {t} is older than one already seen ({last})"),
                });
            }
        }
        let t = ts.or(st.last_ts).unwrap_or(0);
        st.last_ts = Some(t);
        let Some(b) = buyer else {
            return Ok(Vec::new());
        };
        let credits = self.pay(&mut st, b, amount, t)?;
        // The event counts toward the buyer's own qualification afterwards.
        match self.policy.qualify {
            Qualify::Always => {}
            Qualify::Purchased => {
                if amount.is_positive() {
                    st.purchased.insert(b, ());
                }
            }
            Qualify::MinSpend(_) => {
                let s = st.spend.entry(b).or_insert(T::ZERO);
                *s = sum(*s, amount, "a user's running spend")?;
            }
        }
        Ok(credits)
    }

    fn pay(&self, st: &mut State<T>, b: UserIx, amount: T, t: i64) -> Result<Vec<Credit<T>>> {
        let f = &self.forest;
        let p = &self.policy;
        let parent = f.parent();
        if parent[b as usize] == NO_USER {
            return Ok(Vec::new());
        }
        if let Some(w) = p.window_ns {
            let joined = f.joined_at().ok_or_else(|| {
                Error::Policy(
                    "the policy has a window, which needs joined_at in the referrals".into(),
                )
            })?;
            if !in_window(joined, b, t, w) {
                return Ok(Vec::new());
            }
        }
        if let Some(n) = p.max_events_per_buyer {
            let c = st.counts.entry(b).or_insert(0);
            *c = c.saturating_add(1);
            if *c > n {
                return Ok(Vec::new());
            }
        }
        let mut out = Vec::new();
        let mut a = parent[b as usize];
        let mut level = 0usize;
        while a != NO_USER && level < p.levels() {
            let qualified = match p.qualify {
                Qualify::Always => true,
                Qualify::Purchased => st.purchased.contains_key(&a),
                Qualify::MinSpend(min) => st.spend.get(&a).copied().unwrap_or(T::ZERO) >= min,
            };
            if qualified {
                let mut credit = amount.credit(p.ppm[level]);
                if let Some(cap) = p.cap_per_beneficiary {
                    let run = st.capped.entry(a).or_insert(T::ZERO);
                    let mut cut = T::ZERO; // the batch pass's stat; not kept here
                    credit = cap_step(run, credit, cap, &mut cut)?;
                }
                out.push((a, level as u8 + 1, credit));
                level += 1;
            } else if !p.compression {
                level += 1;
            }
            a = parent[a as usize];
        }
        Ok(out)
    }
}
