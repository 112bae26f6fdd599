//! Sanity checks on candles before they are stored, shared by the CSV importer and the Kite
//! fetch: prices must be positive and at most [`MAX_PRICE_RUPEES`], and a candle's time must be
//! plausible (not before 1990, not more than one interval in the future). One absurd candle
//! fails the whole batch, so nothing of it is written.

use chrono::{DateTime, TimeZone, Utc};

use crate::clock::IST;
use crate::domain::{Candle, Interval, MAX_PRICE_RUPEES, price_problem};

/// The earliest plausible candle time: NSE began trading in 1994; anything before 1990 (e.g.
/// the year-1 default of a broken export) is a data error.
pub fn earliest_plausible() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(1990, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// Every reason `c` is absurd (empty when it is fine). `now` is the clock's time; a candle may
/// start at most one `interval` after it.
pub fn candle_problems(c: &Candle, interval: Interval, now: DateTime<Utc>) -> Vec<String> {
    let mut out = Vec::new();
    let prices = [c.open, c.high, c.low, c.close];
    if prices.iter().all(|p| p.to_bits() == c.open.to_bits()) {
        // One bad value in all four columns: say it once.
        if let Some(problem) = price_problem(c.open) {
            out.push(format!("open/high/low/close {problem}"));
        }
    } else {
        for (name, p) in ["open", "high", "low", "close"].into_iter().zip(prices) {
            if let Some(problem) = price_problem(p) {
                out.push(format!("{name} {problem}"));
            }
        }
    }
    if c.ts < earliest_plausible() {
        out.push(format!(
            "timestamp {} UTC is before 1990: not a plausible candle time",
            c.ts.format("%Y-%m-%d %H:%M:%S")
        ));
    } else if c.ts > now + interval.duration() {
        out.push(format!(
            "timestamp {} IST is more than one interval ({interval}) in the future",
            c.ts.with_timezone(&IST).format("%Y-%m-%d %H:%M")
        ));
    }
    out
}

/// The bound quoted in messages and docs: ₹10,00,00,000.
pub const MAX_PRICE_TEXT: &str = "₹10,00,00,000";

const _: () = assert!(MAX_PRICE_RUPEES == 100_000_000.0);

#[cfg(test)]
mod tests {
    use super::*;

    fn c(ts: DateTime<Utc>, price: f64) -> Candle {
        Candle {
            ts,
            open: price,
            high: price,
            low: price,
            close: price,
            volume: 1,
            oi: None,
        }
    }

    #[test]
    fn absurd_prices_and_times_are_named() {
        let now = Utc.with_ymd_and_hms(2026, 11, 25, 5, 0, 0).unwrap();
        assert!(candle_problems(&c(now, 100.0), Interval::Minute15, now).is_empty());
        for bad in [0.0, -5.0, 1e308, f64::NAN, 100_000_000.5] {
            let p = candle_problems(&c(now, bad), Interval::Minute15, now);
            assert_eq!(p.len(), 1, "{bad}: {p:?}");
        }
        let year1 = DateTime::<Utc>::MIN_UTC.with_timezone(&Utc);
        let p = candle_problems(&c(year1, 100.0), Interval::Minute15, now);
        assert!(p[0].contains("before 1990"), "{p:?}");
        let later = now + chrono::Duration::minutes(16);
        let p = candle_problems(&c(later, 100.0), Interval::Minute15, now);
        assert!(p[0].contains("in the future"), "{p:?}");
        let next = now + chrono::Duration::minutes(15);
        assert!(candle_problems(&c(next, 100.0), Interval::Minute15, now).is_empty());
    }
}
