//! The analysis agent: the [`Analyst`] trait (the LLM analyst comes later behind it) and the
//! rule-based [`RuleAnalyst`] implementing strategy `ma_cross`.
//!
//! `ma_cross` looks at the last CLOSED candle only (a candle whose open time + interval is after
//! now is still forming and is dropped):
//! - fast MA crosses above the slow MA (fast > slow now, fast <= slow on the previous candle) and
//!   RSI is within `[rsi_min, rsi_max]` -> BUY at the close, stop = entry - stop_atr x ATR,
//!   target = entry + reward_risk x (entry - stop);
//! - with `allow_short`, the mirror image: a cross below with RSI within
//!   `[100 - rsi_max, 100 - rsi_min]` -> SELL, stop = entry + stop_atr x ATR,
//!   target = entry - reward_risk x (stop - entry);
//! - a cross the other way that is not an entry is [`Signal::Exit`] (closes a position held
//!   against it); anything else is [`Signal::None`] with the reason.
//!
//! Confidence (0.4..=1.0) = 0.4 + 0.3 x RSI centrality + 0.3 x cross strength, where RSI
//! centrality is 1 at the middle of the band and 0 at its edges, and cross strength is how far
//! the fast-minus-slow spread moved on the crossing bar, in ATRs, capped at 1. A cross that
//! happens with RSI comfortably inside the band and a decisive move scores highest; a grazing
//! cross at the edge of the band scores 0.4.

use std::sync::Arc;

use async_trait::async_trait;

use super::AgentError;
use crate::clock::{Clock, SystemClock};
use crate::config::{ExitRule, MaKind, StrategySettings};
use crate::domain::{Candle, InstrumentKey, Interval, Side, Signal, Verdict};

/// An analysis agent: looks at one instrument's candles and says what to do.
#[async_trait]
pub trait Analyst: Send + Sync {
    /// Short name for logs and the scan summary ("ma_cross", "llm:gpt-..").
    fn name(&self) -> &str;
    /// `candles` ascending by time; may end with a still-forming candle, which is ignored.
    async fn analyse(
        &self,
        key: &InstrumentKey,
        interval: Interval,
        candles: &[Candle],
    ) -> Result<Signal, AgentError>;

    /// Called by the meta-agent when a scan starts (per-scan budgets reset here).
    async fn scan_started(&self) {}

    /// Called by the meta-agent once the entry `analyse` returned for `key` is stored as
    /// proposal `proposal_id` (the LLM analyst links its trace to it).
    async fn proposal_stored(&self, _key: &InstrumentKey, _proposal_id: i64) {}
}

/// The rule-based analyst: strategy `ma_cross` with every `[strategy]` parameter.
#[derive(Debug, Clone)]
pub struct RuleAnalyst {
    strategy: StrategySettings,
    clock: Arc<dyn Clock>,
}

impl RuleAnalyst {
    /// Uses the system clock to tell closed candles from the forming one.
    pub fn new(strategy: StrategySettings) -> Self {
        Self::with_clock(strategy, Arc::new(SystemClock))
    }

    /// Tests and backtests pass their own clock.
    pub fn with_clock(strategy: StrategySettings, clock: Arc<dyn Clock>) -> Self {
        Self { strategy, clock }
    }

    pub fn strategy(&self) -> &StrategySettings {
        &self.strategy
    }

    /// Display name of a moving average, e.g. "EMA20".
    pub fn ma_label(&self, period: usize) -> String {
        let kind = match self.strategy.ma {
            MaKind::Ema => "EMA",
            MaKind::Sma => "SMA",
        };
        format!("{kind}{period}")
    }

    /// The configured moving average over `x` (same length, NaN during warm-up).
    pub fn moving_average(&self, x: &[f64], period: usize) -> Result<Vec<f64>, crate::ta::TaError> {
        match self.strategy.ma {
            MaKind::Ema => crate::ta::ema(x, period),
            MaKind::Sma => {
                let mut m = ExactSma::new(period)?;
                Ok(x.iter().map(|&v| m.next(v).unwrap_or(f64::NAN)).collect())
            }
        }
    }

    /// Candles needed for one decision: the slow MA on two bars, RSI and ATR on the last.
    pub fn min_candles(&self) -> usize {
        let s = &self.strategy;
        let mut need = s.slow + 1;
        if !s.rsi_filter_off() {
            need = need.max(s.rsi_period + 1);
        }
        if s.exit == ExitRule::Bracket {
            need = need.max(s.atr_period + 1);
        }
        need
    }

    fn validate(&self) -> Result<(), AgentError> {
        let s = &self.strategy;
        let mut problems = Vec::new();
        if s.name != "ma_cross" {
            problems.push(format!(
                "name = {:?} is not a rule strategy (only \"ma_cross\")",
                s.name
            ));
        }
        if s.fast == 0 || s.slow == 0 || s.rsi_period == 0 || s.atr_period == 0 {
            problems.push("fast, slow, rsi_period and atr_period must be >= 1".into());
        }
        if s.fast >= s.slow {
            problems.push(format!(
                "fast ({}) must be shorter than slow ({})",
                s.fast, s.slow
            ));
        }
        if !(0.0..=100.0).contains(&s.rsi_min)
            || !(0.0..=100.0).contains(&s.rsi_max)
            || s.rsi_min > s.rsi_max
        {
            problems.push(format!(
                "rsi_min ({}) and rsi_max ({}) must satisfy 0 <= rsi_min <= rsi_max <= 100",
                s.rsi_min, s.rsi_max
            ));
        }
        if !(s.stop_atr.is_finite() && s.stop_atr > 0.0) {
            problems.push(format!("stop_atr ({}) must be > 0", s.stop_atr));
        }
        if !(s.reward_risk.is_finite() && s.reward_risk > 0.0) {
            problems.push(format!("reward_risk ({}) must be > 0", s.reward_risk));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(AgentError::InvalidStrategy(problems.join("; ")))
        }
    }

    /// The decision itself, synchronous: `now` tells closed candles from the forming one.
    pub fn evaluate(
        &self,
        key: &InstrumentKey,
        interval: Interval,
        candles: &[Candle],
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Signal, AgentError> {
        self.validate()?;
        let s = &self.strategy;
        let none = |reason: String| {
            Ok(Signal::None {
                key: key.clone(),
                reason,
            })
        };
        let closed = closed_candles(candles, interval, now);
        let need = self.min_candles();
        if closed.len() < need {
            return none(format!(
                "only {} closed {interval} candles, {need} needed for {} / {} / RSI{} / ATR{}",
                closed.len(),
                self.ma_label(s.fast),
                self.ma_label(s.slow),
                s.rsi_period,
                s.atr_period
            ));
        }

        let close: Vec<f64> = closed.iter().map(|c| c.close).collect();
        let high: Vec<f64> = closed.iter().map(|c| c.high).collect();
        let low: Vec<f64> = closed.iter().map(|c| c.low).collect();
        let ind = |what: &'static str| {
            let key = key.clone();
            move |source| AgentError::Indicator { key, what, source }
        };
        let fast = self
            .moving_average(&close, s.fast)
            .map_err(ind("fast MA"))?;
        let slow = self
            .moving_average(&close, s.slow)
            .map_err(ind("slow MA"))?;
        let rsi = crate::ta::rsi(&close, s.rsi_period).map_err(ind("RSI"))?;
        let atr = crate::ta::atr(&high, &low, &close, s.atr_period).map_err(ind("ATR"))?;

        let (i, j) = (closed.len() - 1, closed.len() - 2);
        let last = &closed[i];
        // backtrader's NonZeroDifference: the last fast - slow before bar i that was not 0,
        // looking back only over bars where both averages are defined.
        let mut last_nz = 0.0;
        for k in (0..=j).rev() {
            let d = fast[k] - slow[k];
            if !d.is_finite() {
                break;
            }
            if d != 0.0 {
                last_nz = d;
                break;
            }
        }
        let inputs = BarInputs {
            ts: last.ts,
            close: last.close,
            fast: fast[i],
            slow: slow[i],
            fast_prev: fast[j],
            slow_prev: slow[j],
            last_nz,
            rsi: rsi[i],
            atr: atr[i],
        };
        if let Some(reason) = self.undefined(&inputs, closed.len()) {
            return none(reason);
        }
        match inputs.cross() {
            Some(up) => Ok(self.on_cross(key, &inputs, up)),
            None => {
                let (f_now, s_now, rsi_now) = (inputs.fast, inputs.slow, inputs.rsi);
                let (fl, sl) = (self.ma_label(s.fast), self.ma_label(s.slow));
                let rel = if f_now > s_now {
                    "above"
                } else if f_now < s_now {
                    "below"
                } else {
                    "equal to"
                };
                none(format!(
                    "no cross: {fl} {f_now:.2} is {rel} {sl} {s_now:.2}; RSI{} {rsi_now:.1}",
                    s.rsi_period
                ))
            }
        }
    }

    /// Why the indicators at a bar cannot be used, or `None` when they can. RSI matters only
    /// with the RSI filter on; ATR only for bracket exits (it places the stop).
    fn undefined(&self, x: &BarInputs, bars: usize) -> Option<String> {
        let s = &self.strategy;
        let mut values = vec![x.fast, x.fast_prev, x.slow, x.slow_prev, x.close];
        if !s.rsi_filter_off() {
            values.push(x.rsi);
        }
        if s.exit == ExitRule::Bracket {
            values.push(x.atr);
        }
        if values.iter().any(|v| !v.is_finite()) {
            return Some(format!(
                "indicators are not defined on the candle at {} (missing or non-finite prices in the last {bars} candles)",
                x.ts
            ));
        }
        None
    }

    /// The decision on a bar where the averages crossed (`up`: fast went above slow).
    fn on_cross(&self, key: &InstrumentKey, x: &BarInputs, up: bool) -> Signal {
        let s = &self.strategy;
        let (f_now, s_now, f_prev, s_prev) = (x.fast, x.slow, x.fast_prev, x.slow_prev);
        let (rsi_now, atr_now) = (x.rsi, x.atr);
        let (fl, sl) = (self.ma_label(s.fast), self.ma_label(s.slow));
        let (rl, al) = (
            format!("RSI{}", s.rsi_period),
            format!("ATR{}", s.atr_period),
        );
        let dir = if up { "above" } else { "below" };
        let values_text = format!(
            "{fl} {f_now:.2} crossed {dir} {sl} {s_now:.2}; {rl} {rsi_now:.1}; {al} {atr_now:.2}"
        );

        let (side, band) = if up {
            (Side::Buy, (s.rsi_min, s.rsi_max))
        } else {
            (Side::Sell, (100.0 - s.rsi_max, 100.0 - s.rsi_min))
        };
        let in_band = s.rsi_filter_off() || (rsi_now >= band.0 && rsi_now <= band.1);
        let may_enter = side == Side::Buy || s.allow_short;
        // Exits on the opposite cross need no stop, so no ATR.
        let stop_ok = s.exit == ExitRule::Cross || atr_now > 0.0;

        if may_enter && in_band && stop_ok {
            let entry = x.close;
            let risk = if atr_now.is_finite() {
                s.stop_atr * atr_now
            } else {
                0.0
            };
            let (stop, target) = match side {
                Side::Buy => (entry - risk, entry + s.reward_risk * risk),
                Side::Sell => (entry + risk, entry - s.reward_risk * risk),
            };
            let confidence =
                confidence(rsi_now, band, (f_now - s_now) - (f_prev - s_prev), atr_now);
            let how = match s.exit {
                ExitRule::Bracket => {
                    format!("stop {:.1}x{al}, target {:.1}R", s.stop_atr, s.reward_risk)
                }
                ExitRule::Cross => "exit on the opposite cross".to_string(),
            };
            return Signal::Entry(Verdict {
                key: key.clone(),
                side,
                entry,
                stop,
                target,
                confidence,
                rationale: format!("{values_text}; {side} at {entry:.2}, {how}"),
                candle_ts: x.ts,
            });
        }

        let why_not = if !may_enter {
            "shorts are not allowed".to_string()
        } else if !in_band {
            format!("{rl} is outside [{:.1}, {:.1}]", band.0, band.1)
        } else {
            format!("{al} is 0, no stop can be placed")
        };
        // A cross down always ends a long; a cross up ends a short only where shorts exist.
        if !up || s.allow_short {
            Signal::Exit {
                key: key.clone(),
                reason: format!("{values_text} (no {side} entry: {why_not})"),
            }
        } else {
            Signal::None {
                key: key.clone(),
                reason: format!("{values_text}; no {side}: {why_not}"),
            }
        }
    }

    /// A streaming form of [`RuleAnalyst::evaluate`] for replaying a long history one closed
    /// candle at a time (the backtest). Same indicators, same crossover, same decision code;
    /// the averages and RSI run over the whole history fed so far instead of a lookback window.
    pub fn stream(&self) -> Result<RuleStream, AgentError> {
        self.validate()?;
        let s = &self.strategy;
        let ma = |p| -> Result<MaStream, AgentError> {
            let bad = |e: crate::ta::TaError| AgentError::InvalidStrategy(e.to_string());
            Ok(match s.ma {
                MaKind::Ema => MaStream::Ema(crate::ta::Ema::new(p).map_err(bad)?),
                MaKind::Sma => MaStream::Sma(ExactSma::new(p).map_err(bad)?),
            })
        };
        let bad = |e: crate::ta::TaError| AgentError::InvalidStrategy(e.to_string());
        Ok(RuleStream {
            analyst: self.clone(),
            fast: ma(s.fast)?,
            slow: ma(s.slow)?,
            rsi: crate::ta::Rsi::new(s.rsi_period).map_err(bad)?,
            atr: crate::ta::Atr::new(s.atr_period).map_err(bad)?,
            prev: None,
            last_nz: 0.0,
            bars: 0,
            need: self.min_candles(),
        })
    }
}

/// The simple moving average as backtrader computes it: the correctly rounded sum of the
/// window (Python's `math.fsum`) divided by the period. A running floating-point sum drifts by
/// ulps, which turns exact ties of the averages (common on prices in 0.05 steps) into false
/// crosses; here the window sum is kept exactly in 2^-64 fixed point (i128), which holds every
/// price from 2^-12 to 2^62 exactly. Anything else (NaN, tiny or huge values) falls back to
/// summing the window in floating point.
#[derive(Debug, Clone)]
pub struct ExactSma {
    ring: Vec<f64>,
    fixed: Vec<i128>,
    pos: usize,
    count: usize,
    sum: i128,
    /// Values in the window that are not exact in fixed point.
    inexact: usize,
}

const FIXED_SCALE: f64 = 18_446_744_073_709_551_616.0; // 2^64

fn to_fixed(x: f64) -> Option<i128> {
    let y = x * FIXED_SCALE;
    // |x| < 2^62 keeps 30 000 summed values far inside i128.
    (y.is_finite() && y.fract() == 0.0 && x.abs() < 4.611_686_018_427_388e18).then_some(y as i128)
}

impl ExactSma {
    pub fn new(period: usize) -> Result<Self, crate::ta::TaError> {
        if period == 0 {
            return Err(crate::ta::TaError::InvalidPeriod {
                name: "period",
                value: 0,
            });
        }
        Ok(Self {
            ring: vec![0.0; period],
            fixed: vec![0; period],
            pos: 0,
            count: 0,
            sum: 0,
            inexact: 0,
        })
    }

    #[inline]
    pub fn next(&mut self, x: f64) -> Option<f64> {
        let p = self.ring.len();
        if self.count == p {
            let old = self.fixed[self.pos];
            self.sum -= old;
            if to_fixed(self.ring[self.pos]).is_none() {
                self.inexact -= 1;
            }
        } else {
            self.count += 1;
        }
        let f = to_fixed(x);
        match f {
            Some(v) => self.sum += v,
            None => self.inexact += 1,
        }
        self.ring[self.pos] = x;
        self.fixed[self.pos] = f.unwrap_or(0);
        self.pos = (self.pos + 1) % p;
        if self.count < p {
            return None;
        }
        let total = if self.inexact == 0 {
            (self.sum as f64) / FIXED_SCALE
        } else {
            self.ring.iter().sum()
        };
        Some(total / p as f64)
    }
}

/// Indicator values on the decision bar.
#[derive(Debug, Clone, Copy)]
struct BarInputs {
    ts: chrono::DateTime<chrono::Utc>,
    close: f64,
    fast: f64,
    slow: f64,
    fast_prev: f64,
    slow_prev: f64,
    /// The last non-zero fast - slow before this bar (0 when there was none).
    last_nz: f64,
    rsi: f64,
    atr: f64,
}

impl BarInputs {
    /// backtrader's `CrossOver`: up when fast - slow > 0 now and the last non-zero difference
    /// before now was < 0; down mirrors it. `None`: no cross.
    fn cross(&self) -> Option<bool> {
        let d = self.fast - self.slow;
        if d > 0.0 && self.last_nz < 0.0 {
            Some(true)
        } else if d < 0.0 && self.last_nz > 0.0 {
            Some(false)
        } else {
            None
        }
    }
}

#[derive(Debug, Clone)]
enum MaStream {
    Ema(crate::ta::Ema),
    Sma(ExactSma),
}

impl MaStream {
    #[inline]
    fn next(&mut self, x: f64) -> Option<f64> {
        match self {
            MaStream::Ema(m) => m.next(x),
            MaStream::Sma(m) => m.next(x),
        }
    }
}

/// [`RuleAnalyst::stream`]: feed closed candles in time order; a crossing bar yields the
/// signal [`RuleAnalyst::evaluate`] would give, any other bar `None` without allocating.
#[derive(Debug, Clone)]
pub struct RuleStream {
    analyst: RuleAnalyst,
    fast: MaStream,
    slow: MaStream,
    rsi: crate::ta::Rsi,
    atr: crate::ta::Atr,
    prev: Option<(f64, f64)>,
    last_nz: f64,
    bars: usize,
    need: usize,
}

impl RuleStream {
    /// Candles needed before the first decision (as [`RuleAnalyst::min_candles`]).
    pub fn warm_up(&self) -> usize {
        self.need
    }

    /// Feeds the next closed candle; returns the decision on it when the averages crossed.
    #[inline]
    pub fn next(&mut self, key: &InstrumentKey, c: &Candle) -> Option<Signal> {
        self.bars += 1;
        let f = self.fast.next(c.close);
        let s = self.slow.next(c.close);
        let rsi = self.rsi.next(c.close).unwrap_or(f64::NAN);
        let atr = self.atr.next(c.high, c.low, c.close).unwrap_or(f64::NAN);
        let (Some(f), Some(s)) = (f, s) else {
            self.prev = None;
            self.last_nz = 0.0;
            return None;
        };
        let mut out = None;
        if let Some((fp, sp)) = self.prev
            && self.bars >= self.need
        {
            let x = BarInputs {
                ts: c.ts,
                close: c.close,
                fast: f,
                slow: s,
                fast_prev: fp,
                slow_prev: sp,
                last_nz: self.last_nz,
                rsi,
                atr,
            };
            if let Some(up) = x.cross()
                && self.analyst.undefined(&x, self.bars).is_none()
            {
                out = Some(self.analyst.on_cross(key, &x, up));
            }
        }
        let d = f - s;
        if d != 0.0 {
            self.last_nz = d;
        }
        self.prev = Some((f, s));
        out
    }
}

#[async_trait]
impl Analyst for RuleAnalyst {
    fn name(&self) -> &str {
        "ma_cross"
    }

    async fn analyse(
        &self,
        key: &InstrumentKey,
        interval: Interval,
        candles: &[Candle],
    ) -> Result<Signal, AgentError> {
        self.evaluate(key, interval, candles, self.clock.now())
    }
}

/// The candles that have closed by `now`: a trailing candle whose open + interval is after `now`
/// is still forming (its close is the last trade so far, not the bar's close).
pub fn closed_candles(
    candles: &[Candle],
    interval: Interval,
    now: chrono::DateTime<chrono::Utc>,
) -> &[Candle] {
    let d = interval.duration();
    let n = candles
        .iter()
        .rposition(|c| c.ts + d <= now)
        .map_or(0, |i| i + 1);
    &candles[..n]
}

/// See the module docs: 0.4 + 0.3 x RSI centrality + 0.3 x cross strength.
fn confidence(rsi: f64, band: (f64, f64), spread_move: f64, atr: f64) -> f64 {
    let half = (band.1 - band.0) / 2.0;
    let centrality = if !rsi.is_finite() {
        1.0
    } else if half > 0.0 {
        (1.0 - (rsi - (band.0 + half)).abs() / half).clamp(0.0, 1.0)
    } else {
        1.0
    };
    let strength = if atr > 0.0 {
        (spread_move.abs() / atr).min(1.0)
    } else {
        0.0
    };
    (0.4 + 0.3 * centrality + 0.3 * strength).clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use chrono::{DateTime, Duration, TimeZone, Utc};

    fn t0() -> DateTime<Utc> {
        // 09:15 IST
        Utc.with_ymd_and_hms(2026, 11, 25, 3, 45, 0).unwrap()
    }

    /// 15-minute candles from 09:15 IST; high/low = close +/- 1 with steps of at most 1 keep
    /// every true range at exactly 2, so ATR is exactly 2.
    fn series(closes: &[f64]) -> Vec<Candle> {
        closes
            .iter()
            .enumerate()
            .map(|(i, &c)| Candle {
                ts: t0() + Duration::minutes(15 * i as i64),
                open: c,
                high: c + 1.0,
                low: c - 1.0,
                close: c,
                volume: 1000,
                oi: None,
            })
            .collect()
    }

    /// 100 down to 90, then up by 1 from 90.5: EMA3 crosses above EMA5 on the 15th candle
    /// (index 14, close 93.5), where RSI3 = 79.22; SMA3 crosses SMA5 on index 13 (RSI3 68.0).
    fn rising() -> Vec<f64> {
        let mut v: Vec<f64> = (0..11).map(|i| 100.0 - i as f64).collect();
        v.extend([90.5, 91.5, 92.5, 93.5, 94.5]);
        v
    }

    fn falling() -> Vec<f64> {
        let mut v: Vec<f64> = (0..11).map(|i| 90.0 + i as f64).collect();
        v.extend([99.5, 98.5, 97.5, 96.5, 95.5]);
        v
    }

    fn strategy() -> StrategySettings {
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

    /// Closing time of candle `i`: the moment it stops forming.
    fn closed_at(i: usize) -> DateTime<Utc> {
        t0() + Duration::minutes(15 * (i as i64 + 1))
    }

    fn key() -> InstrumentKey {
        InstrumentKey::new("NSE", "INFY")
    }

    fn run(s: StrategySettings, candles: &[Candle], now: DateTime<Utc>) -> Signal {
        RuleAnalyst::new(s)
            .evaluate(&key(), Interval::Minute15, candles, now)
            .unwrap()
    }

    #[test]
    fn cross_up_inside_band_is_a_buy_with_exact_levels() {
        let c = series(&rising()[..15]);
        let Signal::Entry(v) = run(strategy(), &c, closed_at(14)) else {
            panic!("expected a BUY");
        };
        assert_eq!(v.side, Side::Buy);
        assert_eq!(v.entry, 93.5);
        assert_eq!(v.stop, 89.5); // 93.5 - 2 x ATR 2
        assert_eq!(v.target, 101.5); // 93.5 + 2 x 4
        assert_eq!(v.candle_ts, c[14].ts);
        assert!(
            v.rationale
                .starts_with("EMA3 92.66 crossed above EMA5 92.39; RSI3 79.2; ATR3 2.00"),
            "{}",
            v.rationale
        );
        // centrality 1 - |79.22 - 65| / 15 = 0.0519; strength (0.26736 + 0.02083) / 2 = 0.1441
        assert!((v.confidence - 0.4588).abs() < 1e-3, "{}", v.confidence);
        // One candle earlier there was no cross yet.
        assert!(matches!(
            run(strategy(), &c[..14], closed_at(13)),
            Signal::None { .. }
        ));
    }

    #[test]
    fn rsi_outside_band_is_no_entry() {
        let s = StrategySettings {
            rsi_max: 75.0,
            ..strategy()
        };
        let c = series(&rising()[..15]);
        let Signal::None { reason, .. } = run(s, &c, closed_at(14)) else {
            panic!("expected None");
        };
        assert!(reason.contains("RSI3 is outside [50.0, 75.0]"), "{reason}");
    }

    #[test]
    fn cross_down_is_an_exit() {
        let c = series(&falling()[..15]);
        let Signal::Exit { reason, .. } = run(strategy(), &c, closed_at(14)) else {
            panic!("expected Exit");
        };
        assert!(reason.contains("crossed below"), "{reason}");
        assert!(reason.contains("shorts are not allowed"), "{reason}");
    }

    #[test]
    fn allow_short_mirrors_into_a_sell() {
        let s = StrategySettings {
            allow_short: true,
            ..strategy()
        };
        let c = series(&falling()[..15]);
        let Signal::Entry(v) = run(s.clone(), &c, closed_at(14)) else {
            panic!("expected a SELL");
        };
        assert_eq!(v.side, Side::Sell);
        assert_eq!((v.entry, v.stop, v.target), (96.5, 100.5, 88.5));
        // RSI 20.78 is inside the mirrored band [20, 50] and as central as 79.22 in [50, 80].
        assert!((v.confidence - 0.4588).abs() < 1e-3, "{}", v.confidence);
        // With shorts allowed, a cross up that is not a BUY still closes a short.
        let s = StrategySettings { rsi_max: 75.0, ..s };
        assert!(matches!(
            run(s, &series(&rising()[..15]), closed_at(14)),
            Signal::Exit { .. }
        ));
    }

    #[test]
    fn forming_candle_is_ignored() {
        let c = series(&rising());
        // Candle 15 opened but has not closed: the decision is made on candle 14.
        let now = closed_at(14) + Duration::minutes(7);
        let Signal::Entry(v) = run(strategy(), &c, now) else {
            panic!("expected the BUY of candle 14");
        };
        assert_eq!(v.candle_ts, c[14].ts);
        // Once it has closed, candle 15 is the last one and shows no fresh cross.
        assert!(matches!(
            run(strategy(), &c, closed_at(15)),
            Signal::None { .. }
        ));
        assert_eq!(closed_candles(&c, Interval::Minute15, t0()).len(), 0);
    }

    #[test]
    fn sma_mode_crosses_one_candle_earlier() {
        let s = StrategySettings {
            ma: MaKind::Sma,
            rsi_max: 75.0,
            ..strategy()
        };
        let c = series(&rising()[..14]);
        let Signal::Entry(v) = run(s.clone(), &c, closed_at(13)) else {
            panic!("expected a BUY on SMA");
        };
        assert_eq!((v.entry, v.stop, v.target), (92.5, 88.5, 100.5));
        assert!(
            v.rationale
                .starts_with("SMA3 91.50 crossed above SMA5 91.10; RSI3 68.0"),
            "{}",
            v.rationale
        );
    }

    #[test]
    fn too_few_candles_is_none_with_a_reason() {
        let c = series(&rising()[..5]);
        let Signal::None { reason, .. } = run(strategy(), &c, closed_at(4)) else {
            panic!("expected None");
        };
        assert!(
            reason.contains("only 5 closed 15minute candles, 6 needed"),
            "{reason}"
        );
    }

    #[test]
    fn invalid_strategy_is_an_error() {
        let s = StrategySettings {
            fast: 50,
            slow: 20,
            ..StrategySettings::default()
        };
        let e = RuleAnalyst::new(s)
            .evaluate(&key(), Interval::Minute15, &[], t0())
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("fast (50) must be shorter than slow (20)"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn analyse_uses_the_clock() {
        let clock = ManualClock::new(closed_at(14) + Duration::minutes(1));
        let a = RuleAnalyst::with_clock(strategy(), Arc::new(clock.clone()));
        let c = series(&rising());
        assert!(matches!(
            a.analyse(&key(), Interval::Minute15, &c).await.unwrap(),
            Signal::Entry(_)
        ));
        clock.set(closed_at(15));
        assert!(matches!(
            a.analyse(&key(), Interval::Minute15, &c).await.unwrap(),
            Signal::None { .. }
        ));
    }

    /// backtrader's CrossOver: after fast == slow on the previous bar, a cross needs the last
    /// non-zero difference to have been on the other side.
    #[test]
    fn a_touch_is_not_a_cross() {
        let x = |fast_prev: f64, last_nz: f64| BarInputs {
            ts: t0(),
            close: 10.0,
            fast: 11.0,
            slow: 10.0,
            fast_prev,
            slow_prev: 10.0,
            last_nz,
            rsi: 50.0,
            atr: 1.0,
        };
        // Above, touching (difference 0), above again: no cross up.
        assert_eq!(x(10.0, 0.5).cross(), None);
        // Below, touching, above: a cross up.
        assert_eq!(x(10.0, -0.5).cross(), Some(true));
        // Plainly below then above.
        assert_eq!(x(9.0, -1.0).cross(), Some(true));
        // Nothing non-zero before: no cross.
        assert_eq!(x(10.0, 0.0).cross(), None);
    }

    /// The streaming form gives exactly the signals of `evaluate` over all candles so far
    /// (SMA, filters on and off), bar for bar.
    #[test]
    fn stream_matches_evaluate_bar_for_bar() {
        let mut closes = Vec::new();
        let mut p = 100.0f64;
        let mut x = 12345u64;
        for _ in 0..400 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let r = ((x >> 11) as f64 / (1u64 << 53) as f64) - 0.5;
            p = ((p * (1.0 + r * 0.03)) * 20.0).round() / 20.0;
            closes.push(p);
        }
        let candles: Vec<Candle> = series(&closes)
            .into_iter()
            .map(|mut c| {
                c.high = c.close * 1.01;
                c.low = c.close * 0.99;
                c
            })
            .collect();
        for s in [
            StrategySettings {
                ma: MaKind::Sma,
                fast: 5,
                slow: 12,
                rsi_min: 0.0,
                rsi_max: 100.0,
                exit: ExitRule::Cross,
                ..StrategySettings::default()
            },
            StrategySettings {
                ma: MaKind::Sma,
                fast: 4,
                slow: 9,
                rsi_min: 45.0,
                rsi_max: 70.0,
                allow_short: true,
                ..StrategySettings::default()
            },
        ] {
            let a = RuleAnalyst::new(s);
            let mut st = a.stream().unwrap();
            let mut crosses = 0;
            for i in 0..candles.len() {
                let batch = a
                    .evaluate(&key(), Interval::Minute15, &candles[..=i], closed_at(i))
                    .unwrap();
                let streamed = st.next(&key(), &candles[i]);
                match (&batch, &streamed) {
                    (Signal::None { reason, .. }, None) => {
                        assert!(
                            reason.starts_with("no cross")
                                || reason.starts_with("only ")
                                || reason.starts_with("indicators"),
                            "bar {i}: {reason}"
                        );
                    }
                    (b, Some(s)) => {
                        assert_eq!(b, s, "bar {i}");
                        crosses += 1;
                    }
                    (b, None) => panic!("bar {i}: batch {b:?}, stream nothing"),
                }
            }
            assert!(crosses > 10, "{crosses}");
        }
    }

    /// An exact tie of the averages stays a tie (a running sum made it -2.7e-12 here, a
    /// false cross one bar early against backtrader).
    #[test]
    fn exact_sma_is_the_correctly_rounded_window_mean() {
        let closes = [
            1035.65, 1033.1, 1032.05, 1031.0, 1032.5, 1033.95, 1034.0, 1032.75, 1033.3, 1035.65,
            1031.15, 1029.6, 1037.85, 1030.0, 1033.25,
        ];
        let mut m = ExactSma::new(5).unwrap();
        for (i, &c) in closes.iter().enumerate() {
            let got = m.next(c);
            if i < 4 {
                assert_eq!(got, None);
                continue;
            }
            let w = &closes[i - 4..=i];
            // Exact rational mean, rounded once: sums of 2-decimal prices in paise are exact.
            let paise: i64 = w.iter().map(|v| (v * 100.0_f64).round() as i64).sum();
            let want = paise as f64 / 100.0 / 5.0;
            assert!((got.unwrap() - want).abs() <= f64::EPSILON * want, "{i}");
        }
        // Equal windows give bit-identical means however they were reached.
        let mut a = ExactSma::new(2).unwrap();
        let mut b = ExactSma::new(2).unwrap();
        for v in [0.1, 0.7, 0.3, 0.2] {
            a.next(v);
        }
        for v in [0.3, 0.2] {
            b.next(v);
        }
        assert_eq!(a.next(0.4).map(f64::to_bits), b.next(0.4).map(f64::to_bits));
        // NaN falls back to the float sum (NaN) and recovers once it leaves the window.
        let mut n = ExactSma::new(2).unwrap();
        n.next(f64::NAN);
        assert!(n.next(1.0).unwrap().is_nan());
        assert_eq!(n.next(3.0), Some(2.0));
    }
}
