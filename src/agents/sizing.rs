//! Insight & leverage: turns a verdict into a quantity and tick-rounded prices, within the
//! per-trade risk budget, the position-value limit and the leverage allowed on the capital.
//!
//! All money after rounding is integer [`Paise`]; the only floating-point steps are the
//! configured percentages and the leverage factor, each floored to whole paise so the result
//! never exceeds a limit.

use crate::config::{RiskSettings, TradingSettings};
use crate::domain::{
    Paise, Product, Side, Verdict, paper_fill_price, round_to_tick, tick_or_default,
};

/// Which limit decided the quantity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SizingLimit {
    /// floor(risk budget / stop distance)
    Risk,
    /// `[risk] max_position_value` / entry
    MaxPositionValue,
    /// capital x `[trading] leverage` / entry
    Leverage,
}

impl SizingLimit {
    pub fn as_str(self) -> &'static str {
        match self {
            SizingLimit::Risk => "risk per trade",
            SizingLimit::MaxPositionValue => "max position value",
            SizingLimit::Leverage => "capital x leverage",
        }
    }
}

/// A sized trade: what a proposal stores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sized {
    pub quantity: i64,
    pub entry: Paise,
    pub stop: Paise,
    pub target: Paise,
    pub product: Product,
    /// quantity x |entry - stop|: what the stop costs if hit.
    pub risk: Paise,
    /// The limit that bound the quantity (the smallest of the three).
    pub limit: SizingLimit,
}

/// Why no proposal is made from a verdict. The caller logs it; it is not an error.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SizingSkip {
    #[error("entry {entry} is not a positive price after rounding to the tick {tick}: no proposal")]
    BadEntry { entry: Paise, tick: f64 },
    #[error(
        "stop {stop} equals the entry {entry} after rounding to the tick {tick}: the stop distance is 0, no proposal"
    )]
    ZeroStopDistance {
        entry: Paise,
        stop: Paise,
        tick: f64,
    },
    #[error(
        "{side} with stop {stop} and target {target} around entry {entry}: the stop must be on the losing side and the target on the winning side, no proposal"
    )]
    WrongSide {
        side: Side,
        entry: Paise,
        stop: Paise,
        target: Paise,
    },
    #[error(
        "quantity {quantity} < 1 ({limit} allows {quantity}: risk budget {risk_budget}, stop distance {distance}, entry {entry}): no proposal"
    )]
    QuantityBelowOne {
        quantity: i64,
        limit: &'static str,
        risk_budget: Paise,
        distance: Paise,
        entry: Paise,
    },
}

/// Sizes a verdict: risk = capital x risk_per_trade_pct / 100; quantity = floor(risk / |entry -
/// stop|), capped by max_position_value / fill and by capital x leverage / fill, where fill is
/// the dearer of the entry and the entry moved against us by `slippage_bps` (what the risk
/// engine values the entry at: [`crate::risk::RiskContext::fill_slippage_bps`]; pass
/// [`crate::config::Settings::entry_slippage_bps`]). Prices are rounded to `tick_size` (rupees;
/// [`crate::domain::DEFAULT_TICK`] when unknown or not positive).
pub fn size(
    v: &Verdict,
    trading: &TradingSettings,
    risk: &RiskSettings,
    tick_size: Option<f64>,
    slippage_bps: f64,
) -> Result<Sized, SizingSkip> {
    let tick = tick_or_default(tick_size);
    let entry = round_to_tick(v.entry, tick);
    let stop = round_to_tick(v.stop, tick);
    let target = round_to_tick(v.target, tick);
    if entry.0 <= 0 {
        return Err(SizingSkip::BadEntry { entry, tick });
    }
    let distance = (entry - stop).abs();
    if distance.0 == 0 {
        return Err(SizingSkip::ZeroStopDistance { entry, stop, tick });
    }
    let sides_ok = match v.side {
        Side::Buy => stop < entry && target > entry,
        Side::Sell => stop > entry && target < entry,
    };
    if !sides_ok {
        return Err(SizingSkip::WrongSide {
            side: v.side,
            entry,
            stop,
            target,
        });
    }

    let capital = trading.capital.0.max(0);
    let risk_budget = Paise(floor_paise(
        capital as f64 * trading.risk_per_trade_pct / 100.0,
    ));
    let by_risk = risk_budget.0 / distance.0;
    let fill = entry.max(paper_fill_price(entry, v.side, slippage_bps, tick));
    let by_value = risk.max_position_value.0.max(0) / fill.0;
    let by_leverage = floor_paise(capital as f64 * trading.leverage) / fill.0;

    // Ties go to the earlier limit, so the reported limit is stable.
    let (quantity, limit) = [
        (by_risk, SizingLimit::Risk),
        (by_value, SizingLimit::MaxPositionValue),
        (by_leverage, SizingLimit::Leverage),
    ]
    .into_iter()
    .fold((i64::MAX, SizingLimit::Risk), |best, cur| {
        if cur.0 < best.0 { cur } else { best }
    });

    if quantity < 1 {
        return Err(SizingSkip::QuantityBelowOne {
            quantity,
            limit: limit.as_str(),
            risk_budget,
            distance,
            entry,
        });
    }
    Ok(Sized {
        quantity,
        entry,
        stop,
        target,
        product: trading.product,
        risk: distance * quantity,
        limit,
    })
}

/// Whole paise at or below `x` (non-finite or negative -> 0), so a limit is never exceeded.
fn floor_paise(x: f64) -> i64 {
    if x.is_finite() && x > 0.0 {
        x.floor() as i64
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::InstrumentKey;
    use chrono::{TimeZone, Utc};

    fn verdict(side: Side, entry: f64, stop: f64, target: f64) -> Verdict {
        Verdict {
            key: InstrumentKey::new("NSE", "INFY"),
            side,
            entry,
            stop,
            target,
            confidence: 0.7,
            rationale: "test".into(),
            candle_ts: Utc.with_ymd_and_hms(2026, 11, 25, 4, 0, 0).unwrap(),
        }
    }

    /// A buy at 1,500 with a stop 5 under, sized with no tick given and `bps` of slippage.
    fn buy_1500(t: &TradingSettings, r: &RiskSettings, bps: f64) -> Result<Sized, SizingSkip> {
        size(&verdict(Side::Buy, 1500.0, 1495.0, 1510.0), t, r, None, bps)
    }

    fn settings(
        capital_rupees: i64,
        pct: f64,
        leverage: f64,
        max_value: i64,
    ) -> (TradingSettings, RiskSettings) {
        let trading = TradingSettings {
            capital: Paise::from_rupees(capital_rupees),
            risk_per_trade_pct: pct,
            leverage,
            ..TradingSettings::default()
        };
        let risk = RiskSettings {
            max_position_value: Paise::from_rupees(max_value),
            ..RiskSettings::default()
        };
        (trading, risk)
    }

    #[test]
    fn risk_budget_binds() {
        // 1% of 1,00,000 = 1,000; stop distance 16.80 -> floor(1000 / 16.8) = 59.
        let (t, r) = settings(100_000, 1.0, 5.0, 1_000_000);
        let s = size(
            &verdict(Side::Buy, 1500.0, 1483.2, 1533.6),
            &t,
            &r,
            Some(0.05),
            0.0,
        )
        .unwrap();
        assert_eq!(s.quantity, 59);
        assert_eq!(s.entry, Paise(150_000));
        assert_eq!(s.stop, Paise(148_320));
        assert_eq!(s.target, Paise(153_360));
        assert_eq!(s.limit, SizingLimit::Risk);
        assert_eq!(s.risk, Paise(1_680 * 59));
        assert_eq!(s.product, Product::Mis);
    }

    #[test]
    fn max_position_value_binds() {
        // risk allows floor(1000 / 5) = 200; 50,000 / 1,500 = 33.33 -> 33; leverage 5 -> 333.
        let (t, r) = settings(100_000, 1.0, 5.0, 50_000);
        let s = buy_1500(&t, &r, 0.0).unwrap();
        assert_eq!(s.quantity, 33);
        assert_eq!(s.limit, SizingLimit::MaxPositionValue);
    }

    #[test]
    fn value_limits_apply_at_the_slipped_fill() {
        // 49,510 / 1,500 = 33.0 -> 33 at the entry, but 33 filled at 1,500.75 (5 bps) is
        // 49,524.75, over the limit.
        let (t, r) = settings(100_000, 1.0, 5.0, 49_510);
        let at_entry = buy_1500(&t, &r, 0.0);
        assert_eq!(at_entry.unwrap().quantity, 33);
        // 33 x 1,500.75 = 49,524.75 > 49,510: one fewer, 32 x 1,500.75 = 48,024.
        let slipped = buy_1500(&t, &r, 5.0);
        let slipped = slipped.unwrap();
        assert_eq!(slipped.quantity, 32);
        assert_eq!(slipped.limit, SizingLimit::MaxPositionValue);
        // A short is valued at the entry, not below it.
        let short = size(
            &verdict(Side::Sell, 1500.0, 1505.0, 1490.0),
            &t,
            &r,
            None,
            5.0,
        );
        assert_eq!(short.unwrap().quantity, 33);
        // Leverage too: capital x 1 at 2,000 bps (1,800) -> 55.55 -> 55, where the entry allows 66.
        let (t, r) = settings(100_000, 1.0, 1.0, 1_000_000);
        let s = buy_1500(&t, &r, 2000.0);
        assert_eq!(s.unwrap().quantity, 55);
    }

    #[test]
    fn leverage_binds() {
        // risk allows 200; max value 10,00,000 / 1,500 = 666; capital x 1 / 1,500 = 66.67 -> 66.
        let (t, r) = settings(100_000, 1.0, 1.0, 1_000_000);
        let s = buy_1500(&t, &r, 0.0).unwrap();
        assert_eq!(s.quantity, 66);
        assert_eq!(s.limit, SizingLimit::Leverage);
        // Fractional leverage is floored to whole paise, never rounded up.
        let (t, r) = settings(100_000, 1.0, 0.5, 1_000_000);
        let s = buy_1500(&t, &r, 0.0).unwrap();
        assert_eq!(s.quantity, 33);
    }

    #[test]
    fn prices_round_to_the_instrument_tick() {
        let (t, r) = settings(100_000, 1.0, 5.0, 1_000_000);
        let s = size(
            &verdict(Side::Buy, 101.26, 99.14, 105.49),
            &t,
            &r,
            Some(0.1),
            0.0,
        )
        .unwrap();
        assert_eq!(
            (s.entry, s.stop, s.target),
            (Paise(10_130), Paise(9_910), Paise(10_550))
        );
        // distance 2.20 -> floor(1000 / 2.2) = 454
        assert_eq!(s.quantity, 454);
        // Unknown (or nonsense) tick falls back to 0.05.
        let s = size(
            &verdict(Side::Buy, 101.26, 99.14, 105.49),
            &t,
            &r,
            Some(0.0),
            0.0,
        )
        .unwrap();
        assert_eq!(
            (s.entry, s.stop, s.target),
            (Paise(10_125), Paise(9_915), Paise(10_550))
        );
    }

    #[test]
    fn sell_mirror() {
        let (t, r) = settings(100_000, 1.0, 5.0, 1_000_000);
        let s = size(
            &verdict(Side::Sell, 1500.0, 1516.8, 1466.4),
            &t,
            &r,
            None,
            0.0,
        )
        .unwrap();
        assert_eq!(s.quantity, 59);
        assert_eq!(s.stop, Paise(151_680));
        assert_eq!(s.target, Paise(146_640));
    }

    #[test]
    fn zero_distance_and_tiny_quantity_are_skipped() {
        let (t, r) = settings(100_000, 1.0, 5.0, 1_000_000);
        // 1500.01 and 1500.02 both round to 1500.00.
        let e = size(
            &verdict(Side::Buy, 1500.01, 1500.02, 1510.0),
            &t,
            &r,
            None,
            0.0,
        )
        .unwrap_err();
        assert!(matches!(e, SizingSkip::ZeroStopDistance { .. }), "{e}");
        // risk 1,000 vs a stop 1,200 away -> 0 shares.
        let e = size(
            &verdict(Side::Buy, 1500.0, 300.0, 3900.0),
            &t,
            &r,
            None,
            0.0,
        )
        .unwrap_err();
        assert!(
            matches!(e, SizingSkip::QuantityBelowOne { quantity: 0, .. }),
            "{e}"
        );
        assert!(e.to_string().contains("risk per trade"), "{e}");
        // A share worth more than the whole position limit.
        let (t, r) = settings(100_000, 1.0, 5.0, 1_000);
        let e = size(
            &verdict(Side::Buy, 1500.0, 1499.0, 1502.0),
            &t,
            &r,
            None,
            0.0,
        )
        .unwrap_err();
        assert!(e.to_string().contains("max position value"), "{e}");
    }

    #[test]
    fn stop_on_the_wrong_side_is_skipped() {
        let (t, r) = settings(100_000, 1.0, 5.0, 1_000_000);
        let e = size(
            &verdict(Side::Buy, 1500.0, 1510.0, 1520.0),
            &t,
            &r,
            None,
            0.0,
        )
        .unwrap_err();
        assert!(matches!(e, SizingSkip::WrongSide { .. }), "{e}");
        let e = size(
            &verdict(Side::Sell, 1500.0, 1490.0, 1480.0),
            &t,
            &r,
            None,
            0.0,
        )
        .unwrap_err();
        assert!(matches!(e, SizingSkip::WrongSide { .. }), "{e}");
    }
}
