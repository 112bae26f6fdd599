//! Directional movement: ADX with +DI and -DI (Wilder), exactly as TA-Lib computes them.

use super::{
    Gate, TaError, check_lens, check_period, first_nan, first_valid, is_zero, nan_vec, pad,
};

/// ADX, +DI and -DI, each the input's length.
#[derive(Debug, Clone, PartialEq)]
pub struct Adx {
    /// First value at index `2·period-1`.
    pub adx: Vec<f64>,
    /// First value at index `period`.
    pub plus_di: Vec<f64>,
    /// First value at index `period`.
    pub minus_di: Vec<f64>,
}

/// One bar of directional movement. +DI/-DI start `period-1` bars before the ADX does.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdxPoint {
    /// `None` until the ADX has warmed up (index `2·period-1`).
    pub adx: Option<f64>,
    pub plus_di: f64,
    pub minus_di: f64,
}

/// ADX(`period`) with +DI(`period`) and -DI(`period`), as TA-Lib ADX / PLUS_DI / MINUS_DI:
/// DM and TR are summed over bars 1..period-1 and then Wilder-smoothed
/// (`prev - prev/period + today`); DI = 100·DM/TR (0 when TR is 0); the first ADX is the
/// mean of the first `period` DX values (a zero-sum DX adds 0), then Wilder-smoothed, and a
/// bar whose DX is undefined leaves the ADX unchanged. For period 1 the DIs are 100·DM/TR
/// (TA-Lib's PLUS_DI(1) omits the factor 100; TA-Lib's ADX does not accept period 1).
pub fn adx(high: &[f64], low: &[f64], close: &[f64], period: usize) -> Result<Adx, TaError> {
    check_lens(&[
        ("high", high.len()),
        ("low", low.len()),
        ("close", close.len()),
    ])?;
    let mut core = AdxCore::new(period)?;
    let n = high.len();
    let start = first_valid(&[high, low, close]);
    let end = start + first_nan(&[&high[start..], &low[start..], &close[start..]]);
    let di_start = (start + period).min(end);
    let adx_start = (start + 2 * period - 1).min(end);
    let mut adx = nan_vec(n, adx_start);
    let mut plus = nan_vec(n, di_start);
    let mut minus = nan_vec(n, di_start);
    for ((&h, &l), &c) in high[start..end]
        .iter()
        .zip(&low[start..end])
        .zip(&close[start..end])
    {
        if let Some(p) = core.step(h, l, c) {
            plus.push(p.plus_di);
            minus.push(p.minus_di);
            if let Some(a) = p.adx {
                adx.push(a);
            }
        }
    }
    Ok(Adx {
        adx: pad(adx, n),
        plus_di: pad(plus, n),
        minus_di: pad(minus, n),
    })
}

#[derive(Debug, Clone)]
struct AdxCore {
    period: usize,
    pf: f64,
    pm1: f64,
    count: usize,
    prev_high: f64,
    prev_low: f64,
    prev_close: f64,
    plus_dm: f64,
    minus_dm: f64,
    tr: f64,
    sum_dx: f64,
    adx: f64,
}

impl AdxCore {
    fn new(period: usize) -> Result<Self, TaError> {
        check_period("period", period)?;
        Ok(AdxCore {
            period,
            pf: period as f64,
            pm1: (period - 1) as f64,
            count: 0,
            prev_high: 0.0,
            prev_low: 0.0,
            prev_close: 0.0,
            plus_dm: 0.0,
            minus_dm: 0.0,
            tr: 0.0,
            sum_dx: 0.0,
            adx: 0.0,
        })
    }

    #[inline]
    fn step(&mut self, h: f64, l: f64, c: f64) -> Option<AdxPoint> {
        let i = self.count;
        self.count = self.count.saturating_add(1);
        if i == 0 {
            self.prev_high = h;
            self.prev_low = l;
            self.prev_close = c;
            return None;
        }
        let p = self.period;
        let diff_p = h - self.prev_high;
        self.prev_high = h;
        let diff_m = self.prev_low - l;
        self.prev_low = l;
        // TA-Lib computes the true range as max(h-l, |h-pc|, |l-pc|) here.
        let mut tr = h - l;
        let t = (h - self.prev_close).abs();
        if t > tr {
            tr = t;
        }
        let t = (l - self.prev_close).abs();
        if t > tr {
            tr = t;
        }
        self.prev_close = c;
        if i < p {
            if diff_m > 0.0 && diff_p < diff_m {
                self.minus_dm += diff_m;
            } else if diff_p > 0.0 && diff_p > diff_m {
                self.plus_dm += diff_p;
            }
            self.tr += tr;
            return None;
        }
        self.minus_dm -= self.minus_dm / self.pf;
        self.plus_dm -= self.plus_dm / self.pf;
        if diff_m > 0.0 && diff_p < diff_m {
            self.minus_dm += diff_m;
        } else if diff_p > 0.0 && diff_p > diff_m {
            self.plus_dm += diff_p;
        }
        self.tr = self.tr - self.tr / self.pf + tr;
        let (plus_di, minus_di, dx) = if !is_zero(self.tr) {
            let minus_di = 100.0 * (self.minus_dm / self.tr);
            let plus_di = 100.0 * (self.plus_dm / self.tr);
            let sum = minus_di + plus_di;
            let dx = if !is_zero(sum) {
                Some(100.0 * ((minus_di - plus_di).abs() / sum))
            } else {
                None
            };
            (plus_di, minus_di, dx)
        } else {
            (0.0, 0.0, None)
        };
        let last_seed = 2 * p - 1;
        let adx = if i < last_seed {
            if let Some(dx) = dx {
                self.sum_dx += dx;
            }
            None
        } else if i == last_seed {
            if let Some(dx) = dx {
                self.sum_dx += dx;
            }
            self.adx = self.sum_dx / self.pf;
            Some(self.adx)
        } else {
            if let Some(dx) = dx {
                self.adx = (self.adx * self.pm1 + dx) / self.pf;
            }
            Some(self.adx)
        };
        Some(AdxPoint {
            adx,
            plus_di,
            minus_di,
        })
    }
}

/// Streaming [`adx`].
#[derive(Debug, Clone)]
pub struct AdxStream {
    core: AdxCore,
    gate: Gate,
}

impl AdxStream {
    pub fn new(period: usize) -> Result<Self, TaError> {
        Ok(AdxStream {
            core: AdxCore::new(period)?,
            gate: Gate::default(),
        })
    }

    pub fn next(&mut self, high: f64, low: f64, close: f64) -> Option<AdxPoint> {
        if !self
            .gate
            .admit(high.is_nan() || low.is_nan() || close.is_nan())
        {
            return None;
        }
        self.core.step(high, low, close)
    }

    pub fn reset(&mut self) {
        if let Ok(fresh) = AdxStream::new(self.core.period) {
            *self = fresh;
        }
    }
}
