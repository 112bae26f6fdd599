//! Money as integer paise, and rounding of prices to an instrument's tick size.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::ops::{Add, AddAssign, Mul, Neg, Sub, SubAssign};

/// An amount of Indian rupees in integer paise (1 rupee = 100 paise). Cash balances, order
/// prices, fills and P&L use this type so that sums are exact.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Paise(pub i64);

impl Paise {
    pub const ZERO: Paise = Paise(0);

    pub fn from_rupees(r: i64) -> Paise {
        Paise(r * 100)
    }

    /// Converts a rupee amount given as f64 (market data, config) to the nearest paisa.
    pub fn from_rupees_f64(r: f64) -> Paise {
        Paise((r * 100.0).round() as i64)
    }

    pub fn as_rupees_f64(self) -> f64 {
        self.0 as f64 / 100.0
    }

    pub fn abs(self) -> Paise {
        Paise(self.0.abs())
    }

    /// `self + o`, or None on overflow (money arithmetic never wraps or saturates).
    pub fn checked_add(self, o: Paise) -> Option<Paise> {
        self.0.checked_add(o.0).map(Paise)
    }

    /// `self - o`, or None on overflow.
    pub fn checked_sub(self, o: Paise) -> Option<Paise> {
        self.0.checked_sub(o.0).map(Paise)
    }

    /// `self x q`, or None on overflow.
    pub fn checked_mul(self, q: i64) -> Option<Paise> {
        self.0.checked_mul(q).map(Paise)
    }

    /// A rupee price from market data as paise; None when it is not finite or does not fit
    /// (`from_rupees_f64` would saturate such a value to ₹9.2e16).
    pub fn try_from_rupees_f64(r: f64) -> Option<Paise> {
        let p = (r * 100.0).round();
        // i64::MAX as f64 rounds up to 2^63, so the bound is exclusive.
        (p.is_finite() && p > i64::MIN as f64 && p < i64::MAX as f64).then_some(Paise(p as i64))
    }

    /// Rupees with two decimals, no currency sign: `1234.50`, `-3.05`.
    pub fn to_decimal_string(self) -> String {
        let sign = if self.0 < 0 { "-" } else { "" };
        let a = self.0.unsigned_abs();
        format!("{sign}{}.{:02}", a / 100, a % 100)
    }
}

impl fmt::Display for Paise {
    /// `₹1,23,456.50` in the Indian digit grouping an Indian trader reads at a glance.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let a = self.0.unsigned_abs();
        let rupees = (a / 100).to_string();
        let grouped = if rupees.len() <= 3 {
            rupees
        } else {
            let (head, tail) = rupees.split_at(rupees.len() - 3);
            let mut parts = Vec::new();
            let mut h = head;
            while h.len() > 2 {
                let (a, b) = h.split_at(h.len() - 2);
                parts.push(b);
                h = a;
            }
            if !h.is_empty() {
                parts.push(h);
            }
            parts.reverse();
            format!("{},{}", parts.join(","), tail)
        };
        write!(f, "{sign}₹{grouped}.{:02}", a % 100)
    }
}

impl Add for Paise {
    type Output = Paise;
    fn add(self, o: Paise) -> Paise {
        Paise(self.0 + o.0)
    }
}
impl AddAssign for Paise {
    fn add_assign(&mut self, o: Paise) {
        self.0 += o.0;
    }
}
impl Sub for Paise {
    type Output = Paise;
    fn sub(self, o: Paise) -> Paise {
        Paise(self.0 - o.0)
    }
}
impl SubAssign for Paise {
    fn sub_assign(&mut self, o: Paise) {
        self.0 -= o.0;
    }
}
impl Neg for Paise {
    type Output = Paise;
    fn neg(self) -> Paise {
        Paise(-self.0)
    }
}
impl Mul<i64> for Paise {
    type Output = Paise;
    fn mul(self, q: i64) -> Paise {
        Paise(self.0 * q)
    }
}
impl std::iter::Sum for Paise {
    fn sum<I: Iterator<Item = Paise>>(iter: I) -> Paise {
        Paise(iter.map(|p| p.0).sum())
    }
}

/// NSE's equity tick (rupees): the one default for an instrument whose own tick is not stored
/// or is not a positive number.
pub const DEFAULT_TICK: f64 = 0.05;

/// The instrument's tick when it is usable, else [`DEFAULT_TICK`].
pub fn tick_or_default(tick: Option<f64>) -> f64 {
    tick.filter(|t| t.is_finite() && *t > 0.0)
        .unwrap_or(DEFAULT_TICK)
}

/// The sanity bound on a market price: ₹10,00,00,000 (ten crore) a share. No listed Indian
/// instrument trades near it (MRF, the most expensive share, trades around ₹1.5 lakh); a price
/// above it is a data error, and refusing it keeps every quantity x price product far inside
/// i64 paise.
pub const MAX_PRICE_RUPEES: f64 = 100_000_000.0;

/// Why a market price (rupees) is unusable: not finite, not positive, or above
/// [`MAX_PRICE_RUPEES`]. None when it is fine.
pub fn price_problem(p: f64) -> Option<String> {
    // 1e308 printed in full is 309 digits: use scientific notation for huge magnitudes.
    let p = PriceText(p);
    if !p.0.is_finite() {
        Some(format!("price {p} is not a finite number"))
    } else if p.0 <= 0.0 {
        Some(format!("price {p} is not positive"))
    } else if p.0 > MAX_PRICE_RUPEES {
        Some(format!(
            "price {p} is above the sanity bound of ₹10,00,00,000 (MAX_PRICE_RUPEES)"
        ))
    } else {
        None
    }
}

struct PriceText(f64);

impl fmt::Display for PriceText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_finite() && self.0.abs() >= 1e12 {
            write!(f, "{:e}", self.0)
        } else {
            write!(f, "{}", self.0)
        }
    }
}

/// Rounds a price to the nearest multiple of `tick` (rupees, e.g. 0.05) and returns paise.
/// A non-positive or non-finite tick means [`DEFAULT_TICK`].
pub fn round_to_tick(price: f64, tick: f64) -> Paise {
    let tick = tick_or_default(Some(tick));
    let tick_paise = ((tick * 100.0).round() as i64).max(1);
    let p = (price * 100.0).round() as i64;
    let q = (p as f64 / tick_paise as f64).round() as i64;
    Paise(q * tick_paise)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_uses_indian_grouping() {
        assert_eq!(Paise(12345650).to_string(), "₹1,23,456.50");
        assert_eq!(Paise(-305).to_string(), "-₹3.05");
        assert_eq!(Paise(99).to_string(), "₹0.99");
        assert_eq!(Paise(123456789012).to_string(), "₹1,23,45,67,890.12");
        assert_eq!(Paise(-305).to_decimal_string(), "-3.05");
    }

    #[test]
    fn checked_ops_refuse_overflow() {
        assert_eq!(Paise(i64::MAX).checked_add(Paise(1)), None);
        assert_eq!(Paise(i64::MIN).checked_sub(Paise(1)), None);
        assert_eq!(Paise(i64::MAX / 2).checked_mul(3), None);
        assert_eq!(Paise(5).checked_mul(3), Some(Paise(15)));
        assert_eq!(Paise::try_from_rupees_f64(1e308), None);
        assert_eq!(Paise::try_from_rupees_f64(f64::NAN), None);
        assert_eq!(Paise::try_from_rupees_f64(70.05), Some(Paise(7005)));
    }

    #[test]
    fn rounds_to_tick() {
        assert_eq!(round_to_tick(1500.03, 0.05), Paise(150005));
        assert_eq!(round_to_tick(1500.02, 0.05), Paise(150000));
        assert_eq!(round_to_tick(1500.02, 0.0), Paise(150000));
        assert_eq!(round_to_tick(101.26, 0.1), Paise(10130));
        assert_eq!(round_to_tick(101.26, 1.0), Paise(10100));
    }
}
