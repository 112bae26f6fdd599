//! Backtest metrics, named after freqtrade's optimize_reports where it has one. A value that is
//! not defined (a Sharpe ratio with zero variance, a profit factor with no losing trade) is
//! `None` and shown as "n/a", never inf or NaN.
//!
//! Conventions, stated in the report too: daily returns are taken from the equity at the last
//! time step of each IST date (the first against the initial cash); Sharpe = mean / sample
//! standard deviation x √252 and Sortino = mean / downside deviation (√(Σ min(r, 0)² / n)) x √252,
//! both with a 0 risk-free rate; CAGR over calendar time (365.25-day years) from the first to
//! the last bar; Calmar = CAGR / max drawdown; max drawdown on the equity at every time step.

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;

use super::engine::Trade;
use crate::clock::ist_date;
use crate::domain::Paise;

/// Every headline figure of a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Metrics {
    pub starting_balance: f64,
    pub final_balance: f64,
    /// final - starting (open positions marked at the last close).
    pub profit_total_abs: f64,
    /// As a fraction of the starting balance.
    pub profit_total: f64,
    pub cagr: Option<f64>,
    pub sharpe: Option<f64>,
    pub sortino: Option<f64>,
    pub calmar: Option<f64>,
    /// Fraction of the peak.
    pub max_drawdown_account: f64,
    pub max_drawdown_abs: f64,
    pub drawdown_start: Option<DateTime<Utc>>,
    pub drawdown_end: Option<DateTime<Utc>>,
    /// Longest time below a previous peak (until recovered, or the end), in days.
    pub max_drawdown_duration_days: f64,
    pub profit_factor: Option<f64>,
    /// Mean P&L per closed trade (rupees).
    pub expectancy: Option<f64>,
    pub winrate: Option<f64>,
    pub total_trades: usize,
    pub wins: usize,
    pub losses: usize,
    pub profit_mean_abs: Option<f64>,
    pub best_trade_abs: Option<f64>,
    pub worst_trade_abs: Option<f64>,
    /// Mean time in a closed trade, in days.
    pub holding_avg_days: Option<f64>,
    pub bars_held_avg: Option<f64>,
    /// % of time steps with a position open.
    pub exposure_pct: Option<f64>,
    pub total_charges: f64,
    /// Buy and hold over the same span (equal weights across instruments), a fraction.
    pub market_change: Option<f64>,
    pub trading_days: usize,
}

fn finite(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

/// Equity at the end of each IST date.
pub fn daily_equity(equity: &[(DateTime<Utc>, Paise)]) -> Vec<(NaiveDate, f64)> {
    let mut out: Vec<(NaiveDate, f64)> = Vec::new();
    for &(t, e) in equity {
        let d = ist_date(t);
        let v = e.as_rupees_f64();
        match out.last_mut() {
            Some((ld, lv)) if *ld == d => *lv = v,
            _ => out.push((d, v)),
        }
    }
    out
}

/// Simple daily returns; the first day against `start`.
pub fn daily_returns(start: f64, daily: &[(NaiveDate, f64)]) -> Vec<f64> {
    let mut prev = start;
    daily
        .iter()
        .map(|&(_, v)| {
            let r = if prev != 0.0 { v / prev - 1.0 } else { 0.0 };
            prev = v;
            r
        })
        .collect()
}

pub fn sharpe(returns: &[f64]) -> Option<f64> {
    let n = returns.len();
    if n < 2 {
        return None;
    }
    let mean = returns.iter().sum::<f64>() / n as f64;
    let var = returns.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    let sd = var.sqrt();
    if sd.is_nan() || sd <= 0.0 {
        return None;
    }
    finite(mean / sd * 252f64.sqrt())
}

pub fn sortino(returns: &[f64]) -> Option<f64> {
    let n = returns.len();
    if n < 2 {
        return None;
    }
    let mean = returns.iter().sum::<f64>() / n as f64;
    let dd = (returns.iter().map(|r| r.min(0.0).powi(2)).sum::<f64>() / n as f64).sqrt();
    if dd.is_nan() || dd <= 0.0 {
        return None;
    }
    finite(mean / dd * 252f64.sqrt())
}

/// (max drawdown fraction, max drawdown abs, start (peak), end (trough), longest underwater days).
pub fn drawdown(
    equity: &[(DateTime<Utc>, f64)],
) -> (f64, f64, Option<DateTime<Utc>>, Option<DateTime<Utc>>, f64) {
    let mut peak = f64::NEG_INFINITY;
    let mut peak_t: Option<DateTime<Utc>> = None;
    let (mut max_dd, mut max_abs) = (0.0f64, 0.0f64);
    let (mut start, mut end) = (None, None);
    let mut longest = chrono::Duration::zero();
    let mut under_since: Option<DateTime<Utc>> = None;
    for &(t, v) in equity {
        if v >= peak {
            if let Some(s) = under_since.take() {
                longest = longest.max(t - s);
            }
            peak = v;
            peak_t = Some(t);
            continue;
        }
        if under_since.is_none() {
            under_since = peak_t;
        }
        let abs = peak - v;
        let frac = if peak > 0.0 { abs / peak } else { 0.0 };
        if frac > max_dd {
            max_dd = frac;
            max_abs = abs;
            start = peak_t;
            end = Some(t);
        }
    }
    if let (Some(s), Some(&(t, _))) = (under_since, equity.last()) {
        longest = longest.max(t - s);
    }
    (
        max_dd,
        max_abs,
        start,
        end,
        longest.num_seconds() as f64 / 86_400.0,
    )
}

/// Inputs of [`compute`].
pub struct Inputs<'a> {
    pub initial: Paise,
    pub equity: &'a [(DateTime<Utc>, Paise)],
    pub trades: &'a [Trade],
    pub exposed_steps: u64,
    pub total_charges: Paise,
    /// Per instrument: first open, last close.
    pub spans: &'a [(f64, f64)],
}

pub fn compute(x: &Inputs<'_>) -> Metrics {
    let start = x.initial.as_rupees_f64();
    let last = x.equity.last().map_or(start, |(_, e)| e.as_rupees_f64());
    let profit = last - start;
    let daily = daily_equity(x.equity);
    let rets = daily_returns(start, &daily);
    let cagr = match (x.equity.first(), x.equity.last()) {
        (Some(a), Some(b)) if b.0 > a.0 && start > 0.0 && last > 0.0 => {
            let years = (b.0 - a.0).num_seconds() as f64 / (365.25 * 86_400.0);
            finite((last / start).powf(1.0 / years) - 1.0)
        }
        _ => None,
    };
    let eq: Vec<(DateTime<Utc>, f64)> = x
        .equity
        .iter()
        .map(|&(t, e)| (t, e.as_rupees_f64()))
        .collect();
    let (dd, dd_abs, dd_start, dd_end, dd_days) = drawdown(&eq);
    let calmar = match cagr {
        Some(c) if dd > 0.0 => finite(c / dd),
        _ => None,
    };
    let pnl: Vec<f64> = x.trades.iter().map(|t| t.pnl.as_rupees_f64()).collect();
    let n = pnl.len();
    let wins = pnl.iter().filter(|p| **p > 0.0).count();
    let losses = pnl.iter().filter(|p| **p < 0.0).count();
    let gross_win: f64 = pnl.iter().filter(|p| **p > 0.0).sum();
    let gross_loss: f64 = -pnl.iter().filter(|p| **p < 0.0).sum::<f64>();
    let mean = |v: &[f64]| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
    let holds: Vec<f64> = x
        .trades
        .iter()
        .map(|t| (t.exit_time - t.entry_time).num_seconds() as f64 / 86_400.0)
        .collect();
    let bars: Vec<f64> = x.trades.iter().map(|t| t.bars_held as f64).collect();
    let steps = x.equity.len();
    let market: Vec<f64> = x
        .spans
        .iter()
        .filter(|(o, _)| *o > 0.0)
        .map(|(o, c)| c / o - 1.0)
        .collect();
    Metrics {
        starting_balance: start,
        final_balance: last,
        profit_total_abs: profit,
        profit_total: if start > 0.0 { profit / start } else { 0.0 },
        cagr,
        sharpe: sharpe(&rets),
        sortino: sortino(&rets),
        calmar,
        max_drawdown_account: dd,
        max_drawdown_abs: dd_abs,
        drawdown_start: dd_start,
        drawdown_end: dd_end,
        max_drawdown_duration_days: dd_days,
        profit_factor: (gross_loss > 0.0).then(|| gross_win / gross_loss),
        expectancy: mean(&pnl),
        winrate: (n > 0).then(|| wins as f64 / n as f64),
        total_trades: n,
        wins,
        losses,
        profit_mean_abs: mean(&pnl),
        best_trade_abs: pnl.iter().copied().reduce(f64::max),
        worst_trade_abs: pnl.iter().copied().reduce(f64::min),
        holding_avg_days: mean(&holds),
        bars_held_avg: mean(&bars),
        exposure_pct: (steps > 0).then(|| x.exposed_steps as f64 * 100.0 / steps as f64),
        total_charges: x.total_charges.as_rupees_f64(),
        market_change: mean(&market),
        trading_days: daily.len(),
    }
}

/// "n/a" for undefined values, else the number with `decimals` places.
pub fn fmt_opt(v: Option<f64>, decimals: usize) -> String {
    match v {
        Some(x) if x.is_finite() => format!("{x:.decimals$}"),
        _ => "n/a".to_string(),
    }
}

#[cfg(test)]
// Paise literals are grouped as rupees_paise.
#[allow(clippy::inconsistent_digit_grouping)]
mod tests {
    use super::*;
    use crate::domain::{InstrumentKey, Side};
    use chrono::TimeZone;

    fn day(d: u32) -> DateTime<Utc> {
        // 15:30 IST
        Utc.with_ymd_and_hms(2024, 1, d, 10, 0, 0).unwrap()
    }

    fn trade(pnl: i64, days: i64) -> Trade {
        Trade {
            entry_time: day(1),
            exit_time: day(1) + chrono::Duration::days(days),
            key: InstrumentKey::new("NSE", "X"),
            side: Side::Buy,
            quantity: 1,
            entry_price: Paise(100),
            exit_price: Paise(100),
            pnl: Paise(pnl * 100),
            charges: Paise(0),
            bars_held: days as u64,
            exit_reason: "x".into(),
        }
    }

    #[test]
    fn sharpe_and_sortino_by_hand() {
        // r = [0.01, -0.01, 0.02]: mean 0.006667, sample sd 0.015275, Sharpe 0.43644 x 15.8745
        // = 6.9282; downside dev √(0.0001 / 3) = 0.0057735, Sortino 1.1547 x 15.8745 = 18.330.
        let r = [0.01, -0.01, 0.02];
        assert!(
            (sharpe(&r).unwrap() - 6.928203).abs() < 1e-5,
            "{:?}",
            sharpe(&r)
        );
        assert!(
            (sortino(&r).unwrap() - 18.330303).abs() < 1e-5,
            "{:?}",
            sortino(&r)
        );
        // Zero variance and no losing day are undefined, not inf/NaN.
        assert_eq!(sharpe(&[0.01, 0.01, 0.01]), None);
        assert_eq!(sortino(&[0.01, 0.02]), None);
        assert_eq!(sharpe(&[0.01]), None);
    }

    #[test]
    fn daily_returns_use_the_last_point_of_each_ist_day() {
        let eq = vec![
            (day(1), Paise(100_00)),
            (day(1) + chrono::Duration::hours(1), Paise(101_00)),
            (day(2), Paise(99_99)),
        ];
        let d = daily_equity(&eq);
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].1, 101.0);
        let r = daily_returns(100.0, &d);
        assert!((r[0] - 0.01).abs() < 1e-12);
        assert!((r[1] - (99.99 / 101.0 - 1.0)).abs() < 1e-12);
    }

    #[test]
    fn drawdown_by_hand() {
        // 100 -> 120 (peak, day 2) -> 90 (day 3) -> 110 -> 125 (recovered day 5).
        let eq: Vec<_> = [100.0, 120.0, 90.0, 110.0, 125.0]
            .iter()
            .enumerate()
            .map(|(i, v)| (day(i as u32 + 1), *v))
            .collect();
        let (dd, abs, s, e, days) = drawdown(&eq);
        assert!((dd - 0.25).abs() < 1e-12);
        assert_eq!(abs, 30.0);
        assert_eq!(s, Some(day(2)));
        assert_eq!(e, Some(day(3)));
        assert_eq!(days, 3.0);
        // Never recovered: the duration runs to the end.
        let (_, _, _, _, days) = drawdown(&eq[..4]);
        assert_eq!(days, 2.0);
        // Only rising: no drawdown.
        let (dd, ..) = drawdown(&eq[..2]);
        assert_eq!(dd, 0.0);
    }

    #[test]
    fn trade_statistics_by_hand() {
        let trades = [trade(30, 2), trade(-10, 4), trade(20, 6)];
        let eq = vec![(day(1), Paise(100_000_00)), (day(11), Paise(100_040_00))];
        let m = compute(&Inputs {
            initial: Paise(100_000_00),
            equity: &eq,
            trades: &trades,
            exposed_steps: 1,
            total_charges: Paise(123),
            spans: &[(100.0, 110.0), (50.0, 45.0)],
        });
        assert_eq!(m.total_trades, 3);
        assert_eq!(m.profit_factor, Some(5.0)); // 50 / 10
        assert!((m.expectancy.unwrap() - 40.0 / 3.0).abs() < 1e-12);
        assert!((m.winrate.unwrap() - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(m.best_trade_abs, Some(30.0));
        assert_eq!(m.worst_trade_abs, Some(-10.0));
        assert_eq!(m.holding_avg_days, Some(4.0));
        assert_eq!(m.exposure_pct, Some(50.0));
        assert_eq!(m.total_charges, 1.23);
        assert_eq!(m.profit_total_abs, 40.0);
        // (+10% and -10%) / 2
        assert!(m.market_change.unwrap().abs() < 1e-12);
        // 10 days: (1.0004)^(365.25/10) - 1
        let cagr = 1.0004f64.powf(36.525) - 1.0;
        assert!((m.cagr.unwrap() - cagr).abs() < 1e-12);
        // No drawdown: Calmar is undefined.
        assert_eq!(m.calmar, None);
        assert_eq!(fmt_opt(m.calmar, 2), "n/a");
        assert_eq!(fmt_opt(Some(f64::INFINITY), 2), "n/a");
    }

    #[test]
    fn no_trades_and_no_losses_are_undefined() {
        let eq = vec![(day(1), Paise(100_00))];
        let m = compute(&Inputs {
            initial: Paise(100_00),
            equity: &eq,
            trades: &[],
            exposed_steps: 0,
            total_charges: Paise(0),
            spans: &[],
        });
        assert_eq!(m.profit_factor, None);
        assert_eq!(m.winrate, None);
        assert_eq!(m.expectancy, None);
        assert_eq!(m.cagr, None);
        let m = compute(&Inputs {
            initial: Paise(100_00),
            equity: &eq,
            trades: &[trade(5, 1)],
            exposed_steps: 0,
            total_charges: Paise(0),
            spans: &[],
        });
        assert_eq!(m.profit_factor, None);
    }

    #[test]
    fn calmar_is_cagr_over_drawdown() {
        let eq = vec![
            (day(1), Paise(100_00)),
            (day(2), Paise(80_00)),
            (day(1) + chrono::Duration::days(366), Paise(120_00)),
        ];
        let m = compute(&Inputs {
            initial: Paise(100_00),
            equity: &eq,
            trades: &[],
            exposed_steps: 0,
            total_charges: Paise(0),
            spans: &[],
        });
        let years = 366.0 / 365.25;
        let cagr = 1.2f64.powf(1.0 / years) - 1.0;
        assert!((m.cagr.unwrap() - cagr).abs() < 1e-12);
        assert!((m.max_drawdown_account - 0.2).abs() < 1e-12);
        assert!((m.calmar.unwrap() - cagr / 0.2).abs() < 1e-12);
    }
}
