//! Serde adapter: money is written in rupees in mft.toml (`1500` or `1500.50`), held as `Paise`.

use crate::domain::Paise;
use serde::{Deserializer, Serializer, de};

/// Whole rupees are written as integers, the rest as decimals (`1500.5`).
pub fn serialize<S: Serializer>(p: &Paise, s: S) -> Result<S::Ok, S::Error> {
    if p.0 % 100 == 0 {
        s.serialize_i64(p.0 / 100)
    } else {
        s.serialize_f64(p.as_rupees_f64())
    }
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Paise, D::Error> {
    d.deserialize_any(RupeeVisitor)
}

const EXPECTED: &str =
    "an amount in rupees: an integer or a decimal with at most 2 places, e.g. 1500 or 1500.50";

struct RupeeVisitor;

impl de::Visitor<'_> for RupeeVisitor {
    type Value = Paise;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(EXPECTED)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Paise, E> {
        v.checked_mul(100)
            .map(Paise)
            .ok_or_else(|| E::custom(format!("{v} rupees is too large")))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Paise, E> {
        i64::try_from(v)
            .map_err(|_| E::custom(format!("{v} rupees is too large")))
            .and_then(|v| self.visit_i64(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Paise, E> {
        if !v.is_finite() {
            return Err(E::custom(format!("{v} is not {EXPECTED}")));
        }
        // Rust prints the shortest text that reads back as the same f64, so this is the
        // decimal the user wrote (1500.5, 0.1) and its places can be counted exactly.
        parse_rupees(&v.to_string()).map_err(E::custom)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Paise, E> {
        parse_rupees(v).map_err(E::custom)
    }
}

/// Parses `"1500"`, `"-3.5"`, `"1500.05"` exactly (no float rounding).
pub fn parse_rupees(text: &str) -> Result<Paise, String> {
    let t = text.trim();
    let bad = || format!("{t:?} is not {EXPECTED}");
    let (neg, digits) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let (whole, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let all_digits = |s: &str| s.chars().all(|c| c.is_ascii_digit());
    if whole.is_empty()
        || !all_digits(whole)
        || !all_digits(frac)
        || (digits.contains('.') && frac.is_empty())
    {
        return Err(bad());
    }
    if frac.len() > 2 {
        return Err(format!(
            "{t} has more than 2 decimal places: paise are the smallest unit"
        ));
    }
    let whole: i64 = whole
        .parse()
        .map_err(|_| format!("{t} rupees is too large"))?;
    let frac_paise: i64 = format!("{frac:0<2}").parse().map_err(|_| bad())?;
    let paise = whole
        .checked_mul(100)
        .and_then(|w| w.checked_add(frac_paise))
        .ok_or_else(|| format!("{t} rupees is too large"))?;
    Ok(Paise(if neg { -paise } else { paise }))
}
