//! Candle series whose last closed candle carries a fresh fast/slow EMA cross with RSI in band,
//! for scans in end-to-end tests (the same shape as tests/agents.rs uses), plus the strategy
//! settings that read them.
#![allow(dead_code)]

use chrono::{DateTime, Duration, Utc};
use mft::config::StrategySettings;
use mft::domain::Candle;

/// Closes: 100 falling to 90, then rising; with [`strategy`] EMA3 crosses above EMA5 on the last
/// candle (close 93.50, RSI3 ~79). high/low = close +/- 1, so ATR3 = 2: stop 89.50, target
/// 101.50, 250 shares for a 1,000 rupee risk.
pub const CLOSES: [f64; 15] = [
    100.0, 99.0, 98.0, 97.0, 96.0, 95.0, 94.0, 93.0, 92.0, 91.0, 90.0, 90.5, 91.5, 92.5, 93.5,
];

/// 15 closed 15-minute candles; the last one closes exactly at `closed_by` (so a clock at or
/// after `closed_by` sees it closed). `shift` is added to every price.
pub fn rising_cross(closed_by: DateTime<Utc>, shift: f64) -> Vec<Candle> {
    let n = CLOSES.len() as i64;
    let first = closed_by - Duration::minutes(15 * n);
    CLOSES
        .iter()
        .enumerate()
        .map(|(i, &c)| {
            let c = c + shift;
            Candle {
                ts: first + Duration::minutes(15 * i as i64),
                open: c,
                high: c + 1.0,
                low: c - 1.0,
                close: c,
                volume: 1000 + i as i64,
                oi: None,
            }
        })
        .collect()
}

/// The candle that closes at `closed_by` with close `close` (to move the last price).
pub fn last_candle(closed_by: DateTime<Utc>, close: f64) -> Candle {
    Candle {
        ts: closed_by - Duration::minutes(15),
        open: close,
        high: close + 1.0,
        low: close - 1.0,
        close,
        volume: 1000,
        oi: None,
    }
}

/// ma_cross over short periods so [`rising_cross`] is enough history.
pub fn strategy() -> StrategySettings {
    StrategySettings {
        fast: 3,
        slow: 5,
        rsi_period: 3,
        atr_period: 3,
        rsi_min: 50.0,
        rsi_max: 80.0,
        ..StrategySettings::default()
    }
}

/// The same settings as mft.toml text.
pub const STRATEGY_TOML: &str = "[strategy]\nfast = 3\nslow = 5\nrsi_period = 3\natr_period = 3\nrsi_min = 50.0\nrsi_max = 80.0\n";
