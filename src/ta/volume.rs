//! Volume indicators: on-balance volume and the intraday VWAP (reset each IST trading day).

use chrono::{DateTime, Days, NaiveDate, TimeZone, Utc};

use super::{Gate, TaError, check_lens, first_valid};
use crate::clock::IST;
use crate::domain::Candle;

/// On-balance volume as TA-Lib: starts at the first bar's volume, then adds the volume on an
/// up close, subtracts it on a down close, keeps it on an unchanged close. First value at 0.
pub fn obv(close: &[f64], volume: &[f64]) -> Result<Vec<f64>, TaError> {
    check_lens(&[("close", close.len()), ("volume", volume.len())])?;
    let n = close.len();
    let start = first_valid(&[close, volume]);
    let mut out = vec![f64::NAN; n];
    if start < n {
        let mut acc = volume[start];
        let mut prev = close[start];
        let bars = close[start..].iter().zip(&volume[start..]);
        for (o, (&c, &v)) in out[start..].iter_mut().zip(bars) {
            if c.is_nan() || v.is_nan() {
                break;
            }
            acc = obv_step(acc, prev, c, v);
            *o = acc;
            prev = c;
        }
    }
    Ok(out)
}

#[inline(always)]
fn obv_step(acc: f64, prev: f64, c: f64, v: f64) -> f64 {
    // acc ± v, or acc on an unchanged close, without a data-dependent branch.
    let sign = f64::from(u8::from(c > prev)) - f64::from(u8::from(c < prev));
    acc + sign * v
}

/// Streaming [`obv`].
#[derive(Debug, Clone, Default)]
pub struct Obv {
    started: bool,
    acc: f64,
    prev: f64,
    gate: Gate,
}

impl Obv {
    pub fn new() -> Self {
        Obv::default()
    }

    pub fn next(&mut self, close: f64, volume: f64) -> Option<f64> {
        if !self.gate.admit(close.is_nan() || volume.is_nan()) {
            return None;
        }
        if !self.started {
            self.started = true;
            self.acc = volume;
            self.prev = close;
        }
        self.acc = obv_step(self.acc, self.prev, close, volume);
        self.prev = close;
        Some(self.acc)
    }

    pub fn reset(&mut self) {
        *self = Obv::default();
    }
}

/// Volume-weighted average price of the trading day so far: cumulative
/// `((high+low+close)/3)·volume` over cumulative volume, restarting at the first candle of
/// each Asia/Kolkata calendar day (a change of IST date between consecutive candles). NaN
/// while the day's volume is still 0; no warm-up otherwise. NaN prices follow the module's
/// NaN rules.
pub fn vwap(candles: &[Candle]) -> Result<Vec<f64>, TaError> {
    let n = candles.len();
    let start = candles.iter().position(|c| !has_nan(c)).unwrap_or(n);
    let mut out = vec![f64::NAN; n];
    let mut core = VwapCore::default();
    for (o, c) in out[start..].iter_mut().zip(&candles[start..]) {
        if has_nan(c) {
            break;
        }
        *o = core.step(c);
    }
    Ok(out)
}

fn has_nan(c: &Candle) -> bool {
    c.high.is_nan() || c.low.is_nan() || c.close.is_nan()
}

#[derive(Debug, Clone, Default)]
struct VwapCore {
    /// The IST day the sums belong to, and its bounds as UTC instants `[from, to)`.
    day: Option<(NaiveDate, DateTime<Utc>, DateTime<Utc>)>,
    pv: f64,
    vol: f64,
}

impl VwapCore {
    #[inline]
    fn step(&mut self, c: &Candle) -> f64 {
        let same_day = matches!(self.day, Some((_, from, to)) if c.ts >= from && c.ts < to);
        if !same_day {
            let date = c.ts.with_timezone(&IST).date_naive();
            if self.day.map(|d| d.0) != Some(date) {
                self.pv = 0.0;
                self.vol = 0.0;
            }
            let (mut from, to) = (day_start(date), day_start(date + Days::new(1)));
            if to == DateTime::<Utc>::MAX_UTC {
                from = to;
            }
            self.day = Some((date, from, to));
        }
        let typical = (c.high + c.low + c.close) / 3.0;
        let v = c.volume as f64;
        self.pv += typical * v;
        self.vol += v;
        if self.vol == 0.0 {
            f64::NAN
        } else {
            self.pv / self.vol
        }
    }
}

/// The UTC instant an IST calendar day begins. IST has no DST gaps; should the zone data
/// ever say otherwise, MAX_UTC makes the cached bounds empty, which only costs a date
/// lookup per candle.
fn day_start(date: NaiveDate) -> DateTime<Utc> {
    match IST.from_local_datetime(&date.and_time(chrono::NaiveTime::MIN)) {
        chrono::LocalResult::Single(t) => t.with_timezone(&Utc),
        chrono::LocalResult::Ambiguous(t, _) => t.with_timezone(&Utc),
        chrono::LocalResult::None => DateTime::<Utc>::MAX_UTC,
    }
}

/// Streaming [`vwap`].
#[derive(Debug, Clone, Default)]
pub struct Vwap {
    core: VwapCore,
    gate: Gate,
}

impl Vwap {
    pub fn new() -> Self {
        Vwap::default()
    }

    /// `None` before the first complete candle, after a NaN price, and while the day's volume
    /// is still 0.
    pub fn next(&mut self, candle: &Candle) -> Option<f64> {
        if !self.gate.admit(has_nan(candle)) {
            return None;
        }
        let v = self.core.step(candle);
        if v.is_nan() { None } else { Some(v) }
    }

    pub fn reset(&mut self) {
        *self = Vwap::default();
    }
}
