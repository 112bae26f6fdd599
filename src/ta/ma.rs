//! Moving averages: simple (SMA), exponential (EMA, SMA-seeded) and linearly weighted (WMA).

use super::{Bar, Gate, Sink, TaError, check_period, first_valid, fma_dispatch};

/// Simple moving average. First value at index `period-1`.
pub fn sma(x: &[f64], period: usize) -> Result<Vec<f64>, TaError> {
    check_period("period", period)?;
    let start = first_valid(&[x]);
    let mut out = Sink::new(x.len(), start + period - 1);
    sma_kernel(&x[start..], period, &mut out);
    let [out] = out.finish();
    Ok(out)
}

/// TA-Lib's TA_INT_SMA running sum, with the bar's change `new - trailing` added in one step
/// (exact whenever the two prices are within a factor 2 of each other, so one rounding per bar
/// instead of TA-Lib's two, and one addition on the dependency chain instead of two).
/// Pushes the values from index `period-1` of `x` onto `out`, stopping at the first NaN.
fn sma_kernel(x: &[f64], period: usize, out: &mut Sink<1>) {
    let lb = period - 1;
    if x.len() <= lb || x[..lb].iter().any(|v| v.is_nan()) {
        return;
    }
    let mut total = 0.0;
    for &v in &x[..lb] {
        total += v;
    }
    let pf = period as f64;
    out.feed(x[lb..].iter().zip(x), |(&v, &t)| {
        if v.is_nan() {
            return Bar::Stop;
        }
        let mean = (total + v) / pf;
        total += v - t;
        Bar::Emit([mean])
    });
}

/// Running-sum SMA over pushed values, with exactly [`sma_kernel`]'s arithmetic.
#[derive(Debug, Clone)]
pub(crate) struct SmaCore {
    ring: Vec<f64>,
    pos: usize,
    count: usize,
    total: f64,
}

impl SmaCore {
    pub(crate) fn new(period: usize) -> Self {
        SmaCore {
            ring: vec![0.0; period],
            pos: 0,
            count: 0,
            total: 0.0,
        }
    }

    #[inline]
    pub(crate) fn push(&mut self, v: f64) -> Option<f64> {
        let p = self.ring.len();
        self.ring[self.pos] = v;
        self.pos += 1;
        if self.pos == p {
            self.pos = 0;
        }
        if self.count + 1 < p {
            self.total += v;
            self.count += 1;
            return None;
        }
        let out = (self.total + v) / p as f64;
        // ring[pos] is now the oldest value of the window: the one that drops out.
        self.total += v - self.ring[self.pos];
        Some(out)
    }

    pub(crate) fn reset(&mut self) {
        self.ring.iter_mut().for_each(|v| *v = 0.0);
        self.pos = 0;
        self.count = 0;
        self.total = 0.0;
    }
}

/// Streaming [`sma`].
#[derive(Debug, Clone)]
pub struct Sma {
    core: SmaCore,
    gate: Gate,
}

impl Sma {
    pub fn new(period: usize) -> Result<Self, TaError> {
        check_period("period", period)?;
        Ok(Sma {
            core: SmaCore::new(period),
            gate: Gate::default(),
        })
    }

    pub fn next(&mut self, x: f64) -> Option<f64> {
        if !self.gate.admit(x.is_nan()) {
            return None;
        }
        self.core.push(x)
    }

    pub fn reset(&mut self) {
        self.core.reset();
        self.gate = Gate::default();
    }
}

/// Exponential moving average, `k = 2/(period+1)`, seeded with the SMA of the first
/// `period` values (TA-Lib classic). First value at index `period-1`.
pub fn ema(x: &[f64], period: usize) -> Result<Vec<f64>, TaError> {
    check_period("period", period)?;
    let start = first_valid(&[x]);
    let mut out = Sink::new(x.len(), start + period - 1);
    ema_kernel(&x[start..], period, &mut out);
    let [out] = out.finish();
    Ok(out)
}

#[inline]
pub(crate) fn ema_k(period: usize) -> f64 {
    2.0 / (period + 1) as f64
}

/// One EMA step. TA-Lib writes `((x-prev)*k)+prev`; `prev·(1-k) + x·k` as one fused
/// multiply-add is the same value to ~1e-16 relative but keeps a single FMA on the
/// bar-to-bar dependency chain (`x·k` is computed off the chain).
#[inline(always)]
pub(crate) fn ema_step(prev: f64, x: f64, k: f64) -> f64 {
    prev.mul_add(1.0 - k, x * k)
}

fma_dispatch! {
    fn ema_kernel(x: &[f64], period: usize, out: &mut Sink<1>) {
        if x.len() < period || x[..period].iter().any(|v| v.is_nan()) {
            return;
        }
        let mut sum = 0.0;
        for &v in &x[..period] {
            sum += v;
        }
        let k = ema_k(period);
        let mut prev = sum / period as f64;
        out.push([prev]);
        out.feed(&x[period..], |&v| {
            if v.is_nan() {
                return Bar::Stop;
            }
            prev = ema_step(prev, v, k);
            Bar::Emit([prev])
        });
    }
}

/// EMA state shared by [`Ema`] and MACD: seed sum then `((x-prev)*k)+prev`.
#[derive(Debug, Clone)]
pub(crate) struct EmaCore {
    period: usize,
    k: f64,
    count: usize,
    value: f64,
}

impl EmaCore {
    pub(crate) fn new(period: usize) -> Self {
        EmaCore {
            period,
            k: ema_k(period),
            count: 0,
            value: 0.0,
        }
    }

    #[inline]
    pub(crate) fn push(&mut self, v: f64) -> Option<f64> {
        if self.count < self.period {
            self.value += v;
            self.count += 1;
            if self.count < self.period {
                return None;
            }
            self.value /= self.period as f64;
            return Some(self.value);
        }
        self.value = ema_step(self.value, v, self.k);
        Some(self.value)
    }
}

/// Streaming [`ema`].
#[derive(Debug, Clone)]
pub struct Ema {
    core: EmaCore,
    gate: Gate,
}

impl Ema {
    pub fn new(period: usize) -> Result<Self, TaError> {
        check_period("period", period)?;
        Ok(Ema {
            core: EmaCore::new(period),
            gate: Gate::default(),
        })
    }

    pub fn next(&mut self, x: f64) -> Option<f64> {
        if !self.gate.admit(x.is_nan()) {
            return None;
        }
        self.core.push(x)
    }

    pub fn reset(&mut self) {
        self.core = EmaCore::new(self.core.period);
        self.gate = Gate::default();
    }
}

/// Linearly weighted moving average (weights 1..=period, newest heaviest), with TA-Lib's
/// running `periodSum`/`periodSub` sums, each updated with one addition per bar (the same
/// regrouping as [`sma`]). First value at index `period-1`.
pub fn wma(x: &[f64], period: usize) -> Result<Vec<f64>, TaError> {
    check_period("period", period)?;
    let start = first_valid(&[x]);
    let mut out = Sink::new(x.len(), start + period - 1);
    wma_kernel(&x[start..], period, &mut out);
    let [out] = out.finish();
    Ok(out)
}

fn wma_kernel(x: &[f64], period: usize, out: &mut Sink<1>) {
    let lb = period - 1;
    if x.len() <= lb || x[..lb].iter().any(|v| v.is_nan()) {
        return;
    }
    if period == 1 {
        // TA-Lib copies the input for period 1 (the running sums would add rounding noise).
        out.feed(x, |&v| {
            if v.is_nan() {
                Bar::Stop
            } else {
                Bar::Emit([v])
            }
        });
        return;
    }
    let divider = ((period * (period + 1)) >> 1) as f64;
    let pf = period as f64;
    let mut sub = 0.0;
    let mut sum = 0.0;
    for (i, &v) in x[..lb].iter().enumerate() {
        sub += v;
        sum += v * (i + 1) as f64;
    }
    let mut trailing = 0.0;
    out.feed(x[lb..].iter().zip(x), |(&v, &t)| {
        if v.is_nan() {
            return Bar::Stop;
        }
        sub += v - trailing;
        let weighted = v * pf;
        let mean = (sum + weighted) / divider;
        trailing = t;
        sum += weighted - sub;
        Bar::Emit([mean])
    });
}

/// Streaming [`wma`].
#[derive(Debug, Clone)]
pub struct Wma {
    period: usize,
    ring: Vec<f64>,
    pos: usize,
    count: usize,
    sub: f64,
    sum: f64,
    trailing: f64,
    gate: Gate,
}

impl Wma {
    pub fn new(period: usize) -> Result<Self, TaError> {
        check_period("period", period)?;
        Ok(Wma {
            period,
            ring: vec![0.0; period],
            pos: 0,
            count: 0,
            sub: 0.0,
            sum: 0.0,
            trailing: 0.0,
            gate: Gate::default(),
        })
    }

    pub fn next(&mut self, x: f64) -> Option<f64> {
        if !self.gate.admit(x.is_nan()) {
            return None;
        }
        let p = self.period;
        if p == 1 {
            return Some(x);
        }
        self.ring[self.pos] = x;
        self.pos = if self.pos + 1 == p { 0 } else { self.pos + 1 };
        if self.count + 1 < p {
            self.count += 1;
            self.sub += x;
            self.sum += x * self.count as f64;
            return None;
        }
        self.sub += x - self.trailing;
        let weighted = x * p as f64;
        let out = (self.sum + weighted) / ((p * (p + 1)) >> 1) as f64;
        // ring[pos] is the oldest value of the current window (x[i-p+1]).
        self.trailing = self.ring[self.pos];
        self.sum += weighted - self.sub;
        Some(out)
    }

    pub fn reset(&mut self) {
        if let Ok(fresh) = Wma::new(self.period) {
            *self = fresh;
        }
    }
}
