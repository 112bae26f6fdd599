//! Volatility and channel indicators: ATR (Wilder), Bollinger Bands, Supertrend, Donchian.

use super::ma::SmaCore;
use super::momentum::{wilder, wilder_coefs};
use super::window::{HighLow, MonoMax, MonoMin};
use super::{
    Bar, Gate, Sink, TaError, check_finite, check_lens, check_period, first_valid, fma_dispatch,
};

/// True range of a bar given the previous close: the greatest of `h-l`, `|pc-h|`, `|pc-l|`
/// (TA-Lib's value for NaN-free input). Plain comparisons compile to two maxsd; `f64::max`
/// would add a NaN test and a blend per call.
#[inline(always)]
pub(crate) fn true_range(h: f64, l: f64, prev_close: f64) -> f64 {
    let range = h - l;
    let up = (prev_close - h).abs();
    let down = (prev_close - l).abs();
    let m = if up > range { up } else { range };
    if down > m { down } else { m }
}

/// Average true range with Wilder smoothing, seeded with the simple average of the first
/// `period` true ranges (bars 1..=period). First value at index `period`.
pub fn atr(high: &[f64], low: &[f64], close: &[f64], period: usize) -> Result<Vec<f64>, TaError> {
    check_period("period", period)?;
    check_lens(&[
        ("high", high.len()),
        ("low", low.len()),
        ("close", close.len()),
    ])?;
    let n = high.len();
    let start = first_valid(&[high, low, close]);
    let mut out = Sink::new(n, start + period);
    atr_kernel(
        &high[start..],
        &low[start..],
        &close[start..],
        period,
        &mut out,
    );
    let [out] = out.finish();
    Ok(out)
}

fma_dispatch! {
    /// Pushes the ATR values from bar `period` on, stopping at the first NaN.
    fn atr_kernel(h: &[f64], l: &[f64], c: &[f64], period: usize, out: &mut Sink<1>) {
        let nan3 = |i: usize| h[i].is_nan() || l[i].is_nan() || c[i].is_nan();
        if h.len() <= period || (0..=period).any(nan3) {
            return;
        }
        let mut total = 0.0;
        for i in 1..=period {
            total += true_range(h[i], l[i], c[i - 1]);
        }
        let (a, b) = wilder_coefs(period);
        let mut prev = total / period as f64;
        out.push([prev]);
        // Each bar with the previous close beside it (c[i-1]), so no state but `prev`.
        let bars = h[period + 1..]
            .iter()
            .zip(&l[period + 1..])
            .zip(c[period + 1..].iter().zip(&c[period..]));
        out.feed(bars, |((&hi, &lo), (&ci, &pc))| {
            if hi.is_nan() | lo.is_nan() | ci.is_nan() {
                return Bar::Stop;
            }
            prev = wilder(prev, true_range(hi, lo, pc), a, b);
            Bar::Emit([prev])
        });
    }
}

/// Wilder ATR state shared by [`Atr`] and [`SupertrendStream`].
#[derive(Debug, Clone)]
pub(crate) struct AtrCore {
    period: usize,
    count: usize,
    prev_close: f64,
    value: f64,
}

impl AtrCore {
    pub(crate) fn new(period: usize) -> Self {
        AtrCore {
            period,
            count: 0,
            prev_close: 0.0,
            value: 0.0,
        }
    }

    #[inline(always)]
    pub(crate) fn push(&mut self, h: f64, l: f64, c: f64) -> Option<f64> {
        let p = self.period;
        if self.count == 0 {
            self.prev_close = c;
            self.count = 1;
            return None;
        }
        let tr = true_range(h, l, self.prev_close);
        self.prev_close = c;
        if self.count <= p {
            self.value += tr;
            self.count += 1;
            if self.count <= p {
                return None;
            }
            self.value /= p as f64;
            return Some(self.value);
        }
        let (a, b) = wilder_coefs(p);
        self.value = wilder(self.value, tr, a, b);
        Some(self.value)
    }
}

/// Streaming [`atr`].
#[derive(Debug, Clone)]
pub struct Atr {
    core: AtrCore,
    gate: Gate,
}

impl Atr {
    pub fn new(period: usize) -> Result<Self, TaError> {
        check_period("period", period)?;
        Ok(Atr {
            core: AtrCore::new(period),
            gate: Gate::default(),
        })
    }

    pub fn next(&mut self, high: f64, low: f64, close: f64) -> Option<f64> {
        if !self
            .gate
            .admit(high.is_nan() || low.is_nan() || close.is_nan())
        {
            return None;
        }
        self.core.push(high, low, close)
    }

    pub fn reset(&mut self) {
        self.core = AtrCore::new(self.core.period);
        self.gate = Gate::default();
    }
}

/// Upper, middle and lower band, each the input's length.
#[derive(Debug, Clone, PartialEq)]
pub struct Bands {
    pub upper: Vec<f64>,
    pub middle: Vec<f64>,
    pub lower: Vec<f64>,
}

/// One bar of Bollinger Bands.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BandsPoint {
    pub upper: f64,
    pub middle: f64,
    pub lower: f64,
}

/// Bollinger Bands (TA-Lib BBANDS with SMA): middle = SMA(`period`), width = population
/// standard deviation of the window (0 when the variance is below 1e-14), upper = middle +
/// `k_up`·sd, lower = middle − `k_down`·sd. First value at `period-1`.
///
/// The variance comes from running sums of deviations from an anchor price that is reset to
/// the newest close (and the sums recomputed) every `period` bars. A plain running
/// `E[x²] − E[x]²` cancels catastrophically on flat stretches (a constant price gave a band
/// width of ~1e-4 instead of 0); anchored sums keep the terms small and the cost O(1) per bar.
pub fn bbands(close: &[f64], period: usize, k_up: f64, k_down: f64) -> Result<Bands, TaError> {
    check_period("period", period)?;
    check_finite("upper multiplier", k_up)?;
    check_finite("lower multiplier", k_down)?;
    let n = close.len();
    let start = first_valid(&[close]);
    let warm = start + period - 1;
    let mut out = Sink::new(n, warm);
    let x = &close[start..];
    let lb = period - 1;
    if x.len() > lb && !x[..lb].iter().any(|v| v.is_nan()) {
        // The SMA is the running sum of `sma` (same arithmetic), fused with the deviation sums.
        let mut total = 0.0;
        for &v in &x[..lb] {
            total += v;
        }
        let pf = period as f64;
        let inv = 1.0 / pf;
        let mut dev = DevSums::default();
        out.feed(lb..x.len(), |i| {
            let v = x[i];
            if v.is_nan() {
                return Bar::Stop;
            }
            let mid = (total + v) / pf;
            total += v - x[i - lb];
            if i == lb {
                dev = DevSums::anchored(&x[..period]);
            } else {
                dev.step(v, x[i - period], &x[i + 1 - period..=i]);
            }
            let sd = band_sd(dev.variance(inv));
            Bar::Emit([mid + sd * k_up, mid, mid - sd * k_down])
        });
    }
    let [upper, middle, lower] = out.finish();
    Ok(Bands {
        upper,
        middle,
        lower,
    })
}

/// Sums of deviations `x - anchor` and their squares over the current window.
#[derive(Debug, Clone, Copy, Default)]
struct DevSums {
    anchor: f64,
    s1: f64,
    s2: f64,
    since: usize,
}

impl DevSums {
    /// Fresh sums over `w` (oldest first), anchored at its newest value.
    #[inline]
    fn anchored(w: &[f64]) -> Self {
        let anchor = w.last().copied().unwrap_or(0.0);
        let (mut s1, mut s2) = (0.0, 0.0);
        for &v in w {
            let d = v - anchor;
            s1 += d;
            s2 += d * d;
        }
        DevSums {
            anchor,
            s1,
            s2,
            since: 0,
        }
    }

    /// Slides the window by one bar: `x` enters, `leaving` leaves; `w` is the new window.
    #[inline(always)]
    fn step(&mut self, x: f64, leaving: f64, w: &[f64]) {
        self.since += 1;
        if self.since == w.len() {
            *self = DevSums::anchored(w);
            return;
        }
        let dx = x - self.anchor;
        let dt = leaving - self.anchor;
        self.s1 += dx - dt;
        self.s2 += dx * dx - dt * dt;
    }

    /// Population variance of the window; `inv` = 1/period (multiplications keep the
    /// divider's throughput for the mean, which TA-Lib divides).
    #[inline(always)]
    fn variance(&self, inv: f64) -> f64 {
        let m = self.s1 * inv;
        self.s2 * inv - m * m
    }
}

/// TA-Lib's TA_IS_ZERO_OR_NEG guard before the square root.
#[inline(always)]
fn band_sd(var: f64) -> f64 {
    if var < 1e-14 { 0.0 } else { var.sqrt() }
}

/// Streaming [`bbands`].
#[derive(Debug, Clone)]
pub struct BbandsStream {
    mean: SmaCore,
    period: usize,
    /// Each value is stored twice (`pos` and `pos+period`) so the window is always the
    /// contiguous slice `buf[pos..pos+period]`, oldest first.
    buf: Vec<f64>,
    pos: usize,
    dev: Option<DevSums>,
    k_up: f64,
    k_down: f64,
    gate: Gate,
}

impl BbandsStream {
    pub fn new(period: usize, k_up: f64, k_down: f64) -> Result<Self, TaError> {
        check_period("period", period)?;
        check_finite("upper multiplier", k_up)?;
        check_finite("lower multiplier", k_down)?;
        Ok(BbandsStream {
            mean: SmaCore::new(period),
            period,
            buf: vec![0.0; 2 * period],
            pos: 0,
            dev: None,
            k_up,
            k_down,
            gate: Gate::default(),
        })
    }

    pub fn next(&mut self, x: f64) -> Option<BandsPoint> {
        if !self.gate.admit(x.is_nan()) {
            return None;
        }
        let p = self.period;
        let leaving = self.buf[self.pos];
        self.buf[self.pos] = x;
        self.buf[self.pos + p] = x;
        self.pos = if self.pos + 1 == p { 0 } else { self.pos + 1 };
        let mid = self.mean.push(x)?;
        let w = &self.buf[self.pos..self.pos + p];
        let dev = match &mut self.dev {
            Some(dev) => {
                dev.step(x, leaving, w);
                *dev
            }
            None => *self.dev.insert(DevSums::anchored(w)),
        };
        let sd = band_sd(dev.variance(1.0 / p as f64));
        Some(BandsPoint {
            upper: mid + sd * self.k_up,
            middle: mid,
            lower: mid - sd * self.k_down,
        })
    }

    pub fn reset(&mut self) {
        if let Ok(fresh) = BbandsStream::new(self.period, self.k_up, self.k_down) {
            *self = fresh;
        }
    }
}

/// Supertrend line and direction, each the input's length.
#[derive(Debug, Clone, PartialEq)]
pub struct Supertrend {
    /// The trailing stop: the final lower band in an uptrend, the final upper band in a
    /// downtrend.
    pub line: Vec<f64>,
    /// +1.0 uptrend, -1.0 downtrend, NaN in warm-up.
    pub direction: Vec<f64>,
}

/// One bar of Supertrend.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SupertrendPoint {
    pub line: f64,
    /// +1.0 uptrend, -1.0 downtrend.
    pub direction: f64,
}

/// Supertrend over a Wilder ATR(`period`) (the TA-Lib ATR above) and bands
/// `(high+low)/2 ± mult·ATR`. The final upper band only moves down (and the lower only up)
/// unless the previous close crossed it; the trend flips up when the close rises above the
/// final upper band and down when it falls below the final lower band. The first value (at
/// index `period`) is a downtrend, as in TradingView's `ta.supertrend`.
pub fn supertrend(
    high: &[f64],
    low: &[f64],
    close: &[f64],
    period: usize,
    mult: f64,
) -> Result<Supertrend, TaError> {
    check_lens(&[
        ("high", high.len()),
        ("low", low.len()),
        ("close", close.len()),
    ])?;
    let core = SupertrendCore::new(period, mult)?;
    let n = high.len();
    let start = first_valid(&[high, low, close]);
    let mut out = Sink::new(n, start + period);
    supertrend_kernel(
        core,
        [&high[start..], &low[start..], &close[start..]],
        &mut out,
    );
    let [line, direction] = out.finish();
    Ok(Supertrend { line, direction })
}

// Not FMA-compiled, unlike the ATR kernel it contains: its chain is the band and direction
// branches, and the FMA build measured 0.88x the portable one (`cargo bench --bench ta -- ab`).
fn supertrend_kernel(core: SupertrendCore, hlc: [&[f64]; 3], out: &mut Sink<2>) {
    let mut core = core;
    let [h, l, c] = hlc;
    out.feed(h.iter().zip(l).zip(c), |((&hi, &lo), &ci)| {
        if hi.is_nan() | lo.is_nan() | ci.is_nan() {
            return Bar::Stop;
        }
        match core.step(hi, lo, ci) {
            Some(p) => Bar::Emit([p.line, p.direction]),
            None => Bar::Skip,
        }
    });
}

#[derive(Debug, Clone)]
struct SupertrendCore {
    atr: AtrCore,
    mult: f64,
    started: bool,
    upper: f64,
    lower: f64,
    prev_close: f64,
    up: bool,
}

impl SupertrendCore {
    fn new(period: usize, mult: f64) -> Result<Self, TaError> {
        check_period("period", period)?;
        check_finite("multiplier", mult)?;
        if mult < 0.0 {
            return Err(TaError::InvalidParameter {
                name: "multiplier",
                value: mult,
                reason: "must not be negative",
            });
        }
        Ok(SupertrendCore {
            atr: AtrCore::new(period),
            mult,
            started: false,
            upper: 0.0,
            lower: 0.0,
            prev_close: 0.0,
            up: false,
        })
    }

    #[inline(always)]
    fn step(&mut self, h: f64, l: f64, c: f64) -> Option<SupertrendPoint> {
        let atr = self.atr.push(h, l, c);
        let Some(atr) = atr else {
            self.prev_close = c;
            return None;
        };
        let hl2 = (h + l) / 2.0;
        let basic_upper = hl2 + self.mult * atr;
        let basic_lower = hl2 - self.mult * atr;
        if !self.started {
            self.started = true;
            self.upper = basic_upper;
            self.lower = basic_lower;
            self.up = false;
        } else {
            if basic_upper < self.upper || self.prev_close > self.upper {
                self.upper = basic_upper;
            }
            if basic_lower > self.lower || self.prev_close < self.lower {
                self.lower = basic_lower;
            }
            self.up = if self.up {
                c >= self.lower
            } else {
                c > self.upper
            };
        }
        self.prev_close = c;
        Some(SupertrendPoint {
            line: if self.up { self.lower } else { self.upper },
            direction: if self.up { 1.0 } else { -1.0 },
        })
    }
}

/// Streaming [`supertrend`].
#[derive(Debug, Clone)]
pub struct SupertrendStream {
    core: SupertrendCore,
    period: usize,
    gate: Gate,
}

impl SupertrendStream {
    pub fn new(period: usize, mult: f64) -> Result<Self, TaError> {
        Ok(SupertrendStream {
            core: SupertrendCore::new(period, mult)?,
            period,
            gate: Gate::default(),
        })
    }

    pub fn next(&mut self, high: f64, low: f64, close: f64) -> Option<SupertrendPoint> {
        if !self
            .gate
            .admit(high.is_nan() || low.is_nan() || close.is_nan())
        {
            return None;
        }
        self.core.step(high, low, close)
    }

    pub fn reset(&mut self) {
        if let Ok(fresh) = SupertrendStream::new(self.period, self.core.mult) {
            *self = fresh;
        }
    }
}

/// Donchian channel, each line the input's length.
#[derive(Debug, Clone, PartialEq)]
pub struct Donchian {
    /// Highest high of the last `period` bars (TA-Lib MAX of high).
    pub upper: Vec<f64>,
    /// `(upper + lower) / 2`.
    pub middle: Vec<f64>,
    /// Lowest low of the last `period` bars (TA-Lib MIN of low).
    pub lower: Vec<f64>,
}

/// One bar of the Donchian channel.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DonchianPoint {
    pub upper: f64,
    pub middle: f64,
    pub lower: f64,
}

/// Donchian channel over the last `period` bars, current bar included. First value at
/// index `period-1`.
pub fn donchian(high: &[f64], low: &[f64], period: usize) -> Result<Donchian, TaError> {
    check_lens(&[("high", high.len()), ("low", low.len())])?;
    check_period("period", period)?;
    let n = high.len();
    let start = first_valid(&[high, low]);
    let (h, l) = (&high[start..], &low[start..]);
    let warm = start + period - 1;
    let mut out = Sink::new(n, warm);
    let mut hl = HighLow::new(period);
    out.feed(h.iter().zip(l).enumerate(), |(i, (&hi, &lo))| {
        if hi.is_nan() | lo.is_nan() {
            return Bar::Stop;
        }
        let (u, d) = hl.push(h, l, i);
        if i + 1 < period {
            return Bar::Skip;
        }
        Bar::Emit([u, (u + d) / 2.0, d])
    });
    let [upper, middle, lower] = out.finish();
    Ok(Donchian {
        upper,
        middle,
        lower,
    })
}

#[derive(Debug, Clone)]
struct DonchianCore {
    period: usize,
    seq: usize,
    hh: MonoMax,
    ll: MonoMin,
}

impl DonchianCore {
    fn new(period: usize) -> Result<Self, TaError> {
        check_period("period", period)?;
        Ok(DonchianCore {
            period,
            seq: 0,
            hh: MonoMax::new(period),
            ll: MonoMin::new(period),
        })
    }

    #[inline]
    fn step(&mut self, h: f64, l: f64) -> Option<DonchianPoint> {
        let seq = self.seq;
        self.seq += 1;
        let upper = self.hh.push(seq, h);
        let lower = self.ll.push(seq, l);
        if seq + 1 < self.period {
            return None;
        }
        Some(DonchianPoint {
            upper,
            middle: (upper + lower) / 2.0,
            lower,
        })
    }
}

/// Streaming [`donchian`].
#[derive(Debug, Clone)]
pub struct DonchianStream {
    core: DonchianCore,
    gate: Gate,
}

impl DonchianStream {
    pub fn new(period: usize) -> Result<Self, TaError> {
        Ok(DonchianStream {
            core: DonchianCore::new(period)?,
            gate: Gate::default(),
        })
    }

    pub fn next(&mut self, high: f64, low: f64) -> Option<DonchianPoint> {
        if !self.gate.admit(high.is_nan() || low.is_nan()) {
            return None;
        }
        self.core.step(high, low)
    }

    pub fn reset(&mut self) {
        if let Ok(fresh) = DonchianStream::new(self.core.period) {
            *self = fresh;
        }
    }
}
