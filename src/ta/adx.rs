//! Directional movement: ADX with +DI and -DI (Wilder), with TA-Lib's seeding and rules.

use super::momentum::{wilder, wilder_coefs};
use super::volatility::true_range;
use super::{
    Bar, Gate, Sink, TaError, check_lens, check_period, first_valid, fma_dispatch, is_zero,
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
    let core = AdxCore::new(period)?;
    let n = high.len();
    let start = first_valid(&[high, low, close]);
    // One sink for the three lines: the ADX warms up `period-1` bars after the DIs, and
    // those bars get a NaN ADX (its warm-up).
    let mut out = Sink::new(n, start + period);
    adx_kernel(
        core,
        [&high[start..], &low[start..], &close[start..]],
        &mut out,
    );
    let [adx, plus, minus] = out.finish();
    Ok(Adx {
        adx,
        plus_di: plus,
        minus_di: minus,
    })
}

fma_dispatch! {
    fn adx_kernel(core: AdxCore, hlc: [&[f64]; 3], out: &mut Sink<3>) {
        let mut core = core;
        let [h, l, c] = hlc;
        out.feed(h.iter().zip(l).zip(c), |((&hi, &lo), &ci)| {
            if hi.is_nan() | lo.is_nan() | ci.is_nan() {
                return Bar::Stop;
            }
            match core.step(hi, lo, ci) {
                Some(p) => Bar::Emit([p.adx.unwrap_or(f64::NAN), p.plus_di, p.minus_di]),
                None => Bar::Skip,
            }
        });
    }
}

#[derive(Debug, Clone)]
struct AdxCore {
    period: usize,
    pf: f64,
    /// `1 - 1/period`: the DM/TR decay.
    decay: f64,
    /// Wilder coefficients of the ADX smoothing.
    a: f64,
    b: f64,
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
            decay: 1.0 - 1.0 / period as f64,
            a: wilder_coefs(period).0,
            b: wilder_coefs(period).1,
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

    #[inline(always)]
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
        let tr = true_range(h, l, self.prev_close);
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
        // TA-Lib: dm - dm/p + today's DM; as the fused dm·(1-1/p) + DM to keep divisions off the chain.
        // Non-short-circuit `&`/`|` so the selection compiles without unpredictable branches.
        let minus = (diff_m > 0.0) & (diff_p < diff_m);
        let plus = !minus & (diff_p > 0.0) & (diff_p > diff_m);
        let mdm = if minus { diff_m } else { 0.0 };
        let pdm = if plus { diff_p } else { 0.0 };
        self.minus_dm = self.minus_dm.mul_add(self.decay, mdm);
        self.plus_dm = self.plus_dm.mul_add(self.decay, pdm);
        self.tr = self.tr.mul_add(self.decay, tr);
        let (plus_di, minus_di, dx) = if !is_zero(self.tr) {
            let scale = 100.0 / self.tr;
            let minus_di = self.minus_dm * scale;
            let plus_di = self.plus_dm * scale;
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
                self.adx = wilder(self.adx, dx, self.a, self.b);
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
