//! An attribution policy: per-level rates (held as parts per million), an
//! optional window after the buyer joined, a first-N limit per buyer,
//! qualification of beneficiaries, compression, and a cap per beneficiary.

use super::money::{ppm, Money};
use crate::error::{Error, Result};

/// When an ancestor is qualified to earn at time t.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Qualify<T> {
    /// Always.
    Always,
    /// Has an event with amount > 0 and ts <= t.
    Purchased,
    /// The sum of their amounts with ts <= t (refunds included) is >= x.
    MinSpend(T),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Policy<T> {
    /// Level k's rate in parts per million, k = 1..=levels.
    pub ppm: Vec<u32>,
    /// Nanoseconds after joining during which purchases earn credit.
    pub window_ns: Option<i64>,
    pub max_events_per_buyer: Option<u32>,
    pub qualify: Qualify<T>,
    pub compression: bool,
    pub cap_per_beneficiary: Option<T>,
}

impl<T: Money> Policy<T> {
    /// Validates and converts rates. Errors: `Policy` for rates outside
    /// [0, 1] or summing above 1, no levels or more than 255, a window
    /// <= 0, a first-N limit of 0, a negative cap.
    pub fn new(
        rates: &[f64],
        window_ns: Option<i64>,
        max_events_per_buyer: Option<u32>,
        qualify: Qualify<T>,
        compression: bool,
        cap_per_beneficiary: Option<T>,
    ) -> Result<Self> {
        if rates.is_empty() || rates.len() > 255 {
            return Err(Error::Policy(format!(
                "rates must have 1 to 255 levels, not {}",
                rates.len()
            )));
        }
        for (k, &r) in rates.iter().enumerate() {
            if !(0.0..=1.0).contains(&r) {
                return Err(Error::Policy(format!(
                    "rate of level {} is {r}: rates must be in [0, 1]",
                    k + 1
                )));
            }
        }
        let ppm: Vec<u32> = rates.iter().map(|&r| ppm(r)).collect();
        let total: u64 = ppm.iter().map(|&p| p as u64).sum();
        if total > 1_000_000 {
            return Err(Error::Policy(format!(
                "rates sum to {}: they must sum to at most 1",
                total as f64 / 1e6
            )));
        }
        if window_ns.is_some_and(|w| w <= 0) {
            return Err(Error::Policy("window must be positive".into()));
        }
        if max_events_per_buyer == Some(0) {
            return Err(Error::Policy(
                "max_events_per_buyer must be at least 1".into(),
            ));
        }
        if cap_per_beneficiary.is_some_and(|c| c < T::ZERO) {
            return Err(Error::Policy("cap_per_beneficiary must be >= 0".into()));
        }
        Ok(Policy {
            ppm,
            window_ns,
            max_events_per_buyer,
            qualify,
            compression,
            cap_per_beneficiary,
        })
    }

    pub fn levels(&self) -> usize {
        self.ppm.len()
    }

    /// The ledger's `rate` of each level: its ppm / 1e6.
    pub fn rates(&self) -> Vec<f64> {
        self.ppm.iter().map(|&p| p as f64 / 1e6).collect()
    }

    /// True when credit depends on earlier events (a session must keep state).
    pub fn is_stateful(&self) -> bool {
        !matches!(self.qualify, Qualify::Always)
            || self.max_events_per_buyer.is_some()
            || self.cap_per_beneficiary.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(rates: &[f64]) -> Result<Policy<i64>> {
        Policy::new(rates, None, None, Qualify::Always, false, None)
    }

    #[test]
    fn rates_are_checked() {
        assert!(p(&[0.1, 0.05, 0.02]).is_ok());
        assert!(p(&[1.0]).is_ok());
        assert!(p(&[0.6, 0.5]).unwrap_err().to_string().contains("sum"));
        assert!(p(&[-0.1]).is_err());
        assert!(p(&[f64::NAN]).is_err());
        assert!(p(&[]).is_err());
        assert_eq!(p(&[0.1, 0.05]).unwrap().ppm, vec![100_000, 50_000]);
        assert_eq!(p(&[0.1, 0.05]).unwrap().rates(), vec![0.1, 0.05]);
    }

    #[test]
    fn other_options_are_checked() {
        let bad_window = Policy::<i64>::new(&[0.1], Some(0), None, Qualify::Always, false, None);
        assert!(bad_window.is_err());
        let bad_n = Policy::<i64>::new(&[0.1], None, Some(0), Qualify::Always, false, None);
        assert!(bad_n.is_err());
        let bad_cap = Policy::<i64>::new(&[0.1], None, None, Qualify::Always, false, Some(-1));
        assert!(bad_cap.is_err());
    }
}
