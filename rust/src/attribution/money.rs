//! Money arithmetic: parts-per-million rates, truncation toward zero with
//! 128-bit intermediates, checked sums. One trait over the three amount
//! types (int64 minor units, decimal128 unscaled, float64).

/// An amount type: `i64` (minor units), `i128` (decimal128, unscaled) or `f64`.
pub trait Money: Copy + Send + Sync + PartialEq + PartialOrd + std::fmt::Debug + 'static {
    const ZERO: Self;
    /// `trunc(self * ppm / 1_000_000)` for integers (a refund's credit
    /// mirrors the purchase's); `self * ppm / 1e6` for floats. Never overflows.
    fn credit(self, ppm: u32) -> Self;
    fn checked_add(self, other: Self) -> Option<Self>;
    fn checked_sub(self, other: Self) -> Option<Self>;
    fn is_positive(self) -> bool {
        self > Self::ZERO
    }
    /// Whether every value of the type is finite (not a float): then no
    /// amount needs checking.
    const ALWAYS_FINITE: bool = true;
    /// False for NaN and infinities.
    fn is_finite(self) -> bool {
        true
    }
    /// Whether a running total that never exceeds the sum `self` of some
    /// positive credits (added in any order) stays within `cap`. Floats
    /// keep a relative margin for rounding, so borderline sums say no.
    fn surely_within(self, cap: Self) -> bool {
        self <= cap
    }
    /// Total order for sorting (floats by `total_cmp`).
    fn cmp_total(&self, other: &Self) -> std::cmp::Ordering;
    /// An unsigned key in the order of `cmp_total`, when the type has one
    /// of 64 bits (sorting plain integers beats calling a comparator).
    fn order_key(self) -> Option<u64> {
        None
    }
    /// The nearest float (integers in their own unit; decimals unscaled).
    fn to_f64(self) -> f64;
    /// The value as an i64 when the type is an integer and it fits (sums
    /// of those may move through narrower packed integers).
    fn to_i64(self) -> Option<i64> {
        None
    }
    /// The inverse of `to_i64` (called only for values it returned).
    fn from_i64(v: i64) -> Self;
}

impl Money for i64 {
    const ZERO: Self = 0;
    #[inline]
    fn credit(self, ppm: u32) -> Self {
        // ppm <= 10^6 < 2^20: below 2^43 the product fits i64, and i64
        // division by a constant is a multiply (i128 division is a call).
        if self.unsigned_abs() < 1 << 43 {
            self * ppm as i64 / 1_000_000
        } else {
            // |self * ppm| < 2^63 * 2^20 fits i128; the quotient fits i64.
            ((self as i128 * ppm as i128) / 1_000_000) as i64
        }
    }
    #[inline]
    fn checked_add(self, other: Self) -> Option<Self> {
        i64::checked_add(self, other)
    }
    #[inline]
    fn checked_sub(self, other: Self) -> Option<Self> {
        i64::checked_sub(self, other)
    }
    #[inline]
    fn to_i64(self) -> Option<i64> {
        Some(self)
    }
    fn from_i64(v: i64) -> Self {
        v
    }
    fn to_f64(self) -> f64 {
        self as f64
    }
    fn cmp_total(&self, other: &Self) -> std::cmp::Ordering {
        self.cmp(other)
    }
    #[inline]
    fn order_key(self) -> Option<u64> {
        Some(self as u64 ^ 1 << 63)
    }
}

impl Money for i128 {
    const ZERO: Self = 0;
    #[inline]
    fn credit(self, ppm: u32) -> Self {
        // self * ppm may pass i128 for |self| near 10^38. Split
        // self = q * 10^6 + r (r has self's sign): trunc(self * ppm / 10^6)
        // = q * ppm + trunc(r * ppm / 10^6), each term in range.
        let (q, r) = (self / 1_000_000, self % 1_000_000);
        q * ppm as i128 + (r * ppm as i128) / 1_000_000
    }
    #[inline]
    fn checked_add(self, other: Self) -> Option<Self> {
        i128::checked_add(self, other)
    }
    #[inline]
    fn checked_sub(self, other: Self) -> Option<Self> {
        i128::checked_sub(self, other)
    }
    #[inline]
    fn to_i64(self) -> Option<i64> {
        i64::try_from(self).ok()
    }
    fn from_i64(v: i64) -> Self {
        v as i128
    }
    fn to_f64(self) -> f64 {
        self as f64
    }
    fn cmp_total(&self, other: &Self) -> std::cmp::Ordering {
        self.cmp(other)
    }
}

impl Money for f64 {
    const ZERO: Self = 0.0;
    const ALWAYS_FINITE: bool = false;
    fn is_finite(self) -> bool {
        f64::is_finite(self)
    }
    fn surely_within(self, cap: Self) -> bool {
        // Sums of up to 2^32 terms in any order differ by < 2^32 * 2^-53.
        self * (1.0 + 1e-6) < cap
    }
    #[inline]
    fn credit(self, ppm: u32) -> Self {
        self * ppm as f64 / 1e6
    }
    #[inline]
    fn checked_add(self, other: Self) -> Option<Self> {
        let s = self + other;
        s.is_finite().then_some(s)
    }
    #[inline]
    fn checked_sub(self, other: Self) -> Option<Self> {
        let s = self - other;
        s.is_finite().then_some(s)
    }
    #[inline]
    fn from_i64(v: i64) -> Self {
        v as f64
    }
    fn to_f64(self) -> f64 {
        self
    }
    fn cmp_total(&self, other: &Self) -> std::cmp::Ordering {
        self.total_cmp(other)
    }
    #[inline]
    fn order_key(self) -> Option<u64> {
        // As `total_cmp`: negative numbers' magnitude bits flipped, then
        // the sign bit flipped so that negatives sort first.
        let b = self.to_bits() as i64;
        Some((b ^ (((b >> 63) as u64) >> 1) as i64) as u64 ^ 1 << 63)
    }
}

/// A rate as integer parts per million: `round(rate * 1e6)`.
pub fn ppm(rate: f64) -> u32 {
    (rate * 1e6).round() as u32
}

/// Largest |value| a decimal of this precision holds (10^p - 1).
pub fn decimal_max(precision: u8) -> i128 {
    10i128.pow(precision.min(38) as u32) - 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_keys_sort_as_cmp_total() {
        fn check<T: Money>(mut v: Vec<T>) {
            let mut by_key = v.clone();
            by_key.sort_by_key(|x| x.order_key().expect("a 64-bit key"));
            v.sort_by(T::cmp_total);
            let same = v.iter().zip(&by_key).all(|(a, b)| a.cmp_total(b).is_eq());
            assert!(same, "{v:?} vs {by_key:?}");
        }
        check(vec![3i64, -1, i64::MIN, 0, i64::MAX, -7, 2]);
        check(vec![
            1.5f64,
            -0.0,
            0.0,
            -2.5,
            f64::INFINITY,
            f64::NEG_INFINITY,
            1e-300,
            -1e300,
            f64::MIN_POSITIVE,
        ]);
        assert_eq!(5i128.order_key(), None);
    }

    #[test]
    fn integer_credit_truncates_toward_zero_and_mirrors_refunds() {
        assert_eq!(999i64.credit(100_000), 99); // 99.9 -> 99
        assert_eq!((-999i64).credit(100_000), -99);
        assert_eq!(1i64.credit(999_999), 0);
        assert_eq!(i64::MAX.credit(1_000_000), i64::MAX);
        assert_eq!(i64::MIN.credit(1_000_000), i64::MIN);
        // Both sides of the fast-path boundary agree with the i128 formula.
        for a in [
            (1i64 << 43) - 1,
            1 << 43,
            -(1 << 43),
            -(1i64 << 43) + 1,
            987_654_321_987,
        ] {
            for p in [1u32, 333_333, 999_999, 1_000_000] {
                assert_eq!(
                    a.credit(p),
                    ((a as i128 * p as i128) / 1_000_000) as i64,
                    "{a} {p}"
                );
            }
        }
    }

    #[test]
    fn decimal_credit_never_overflows() {
        let big = 10i128.pow(38) - 1;
        assert_eq!(big.credit(1_000_000), big);
        assert_eq!(big.credit(500_000), big / 2);
        assert_eq!((-big).credit(500_000), -(big / 2));
        for a in [-1_999_999i128, -7, 0, 13, 1_000_001, 123_456_789_012] {
            for p in [0u32, 1, 33_333, 100_000, 999_999, 1_000_000] {
                assert_eq!(a.credit(p), (a * p as i128) / 1_000_000, "{a} {p}");
            }
        }
    }

    #[test]
    fn ppm_rounds_and_float_credit() {
        assert_eq!(ppm(0.1), 100_000);
        assert_eq!(ppm(0.0000015), 2);
        assert_eq!(10.0f64.credit(ppm(0.05)), 0.5);
        assert_eq!(i64::MAX.checked_add(1), None);
        assert_eq!(f64::MAX.checked_add(f64::MAX), None);
    }
}
