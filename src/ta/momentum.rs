//! Momentum indicators: RSI (Wilder), rate of change, MACD and the slow stochastic.

use super::ma::{SmaCore, ema_k, ema_step};
use super::window::{HighLow, MonoMax, MonoMin};
use super::{
    Bar, CHUNK, Gate, Sink, TaError, check_lens, check_period, clean_len, first_valid,
    fma_dispatch, is_zero, warm_vec,
};

/// Relative strength index with Wilder smoothing, seeded with the simple averages of the
/// first `period` gains and losses (TA-Lib classic). First value at index `period`.
pub fn rsi(close: &[f64], period: usize) -> Result<Vec<f64>, TaError> {
    check_period("period", period)?;
    let start = first_valid(&[close]);
    let mut out = Sink::new(close.len(), start + period);
    rsi_kernel(&close[start..], period, &mut out);
    let [out] = out.finish();
    Ok(out)
}

/// Wilder step `(prev·(p-1) + x) / p`, evaluated as the fused `prev·a + (x·b)` with
/// `a = (p-1)/p`, `b = 1/p`: one FMA on the bar-to-bar dependency chain, no division (as
/// TA-Lib 0.8's FMA build; agrees with the plain statement order to ~1e-15 relative).
#[inline(always)]
pub(crate) fn wilder(prev: f64, x: f64, a: f64, b: f64) -> f64 {
    prev.mul_add(a, x * b)
}

#[inline(always)]
pub(crate) fn wilder_coefs(period: usize) -> (f64, f64) {
    let pf = period as f64;
    ((period - 1) as f64 / pf, 1.0 / pf)
}

/// Gain and loss of one price change, TA-Lib's way (a zero change counts as a zero gain).
#[inline(always)]
fn split_change(d: f64) -> (f64, f64) {
    (d.max(0.0), (-d).max(0.0))
}

#[inline(always)]
fn rsi_value(gain: f64, loss: f64) -> f64 {
    let sum = gain + loss;
    if is_zero(sum) {
        0.0
    } else {
        100.0 * (gain / sum)
    }
}

fma_dispatch! {
fn rsi_kernel(x: &[f64], period: usize, out: &mut Sink<1>) {
    if x.len() <= period || x[..=period].iter().any(|v| v.is_nan()) {
        return;
    }
    let mut gain = 0.0;
    let mut loss = 0.0;
    let mut prev = x[0];
    for &v in &x[1..=period] {
        let d = v - prev;
        prev = v;
        if d < 0.0 {
            loss -= d;
        } else {
            gain += d;
        }
    }
    let pf = period as f64;
    let (a, b) = wilder_coefs(period);
    loss /= pf;
    gain /= pf;
    out.push([rsi_value(gain, loss)]);
    out.feed(&x[period + 1..], |&v| {
        if v.is_nan() {
            return Bar::Stop;
        }
        let (up, down) = split_change(v - prev);
        prev = v;
        gain = wilder(gain, up, a, b);
        loss = wilder(loss, down, a, b);
        Bar::Emit([rsi_value(gain, loss)])
    });
}
}

/// Streaming [`rsi`].
#[derive(Debug, Clone)]
pub struct Rsi {
    period: usize,
    count: usize,
    prev: f64,
    gain: f64,
    loss: f64,
    gate: Gate,
}

impl Rsi {
    pub fn new(period: usize) -> Result<Self, TaError> {
        check_period("period", period)?;
        Ok(Rsi {
            period,
            count: 0,
            prev: 0.0,
            gain: 0.0,
            loss: 0.0,
            gate: Gate::default(),
        })
    }

    pub fn next(&mut self, x: f64) -> Option<f64> {
        if !self.gate.admit(x.is_nan()) {
            return None;
        }
        let p = self.period;
        if self.count == 0 {
            self.prev = x;
            self.count = 1;
            return None;
        }
        let d = x - self.prev;
        self.prev = x;
        if self.count <= p {
            if d < 0.0 {
                self.loss -= d;
            } else {
                self.gain += d;
            }
            self.count += 1;
            if self.count <= p {
                return None;
            }
            self.loss /= p as f64;
            self.gain /= p as f64;
            return Some(rsi_value(self.gain, self.loss));
        }
        let (a, b) = wilder_coefs(p);
        let (up, down) = split_change(d);
        self.gain = wilder(self.gain, up, a, b);
        self.loss = wilder(self.loss, down, a, b);
        Some(rsi_value(self.gain, self.loss))
    }

    pub fn reset(&mut self) {
        if let Ok(fresh) = Rsi::new(self.period) {
            *self = fresh;
        }
    }
}

/// Rate of change in percent, `((x / x[i-period]) - 1) * 100`, 0 when the old value is 0
/// (TA-Lib ROC). First value at index `period`.
pub fn roc(close: &[f64], period: usize) -> Result<Vec<f64>, TaError> {
    check_period("period", period)?;
    let start = first_valid(&[close]);
    let x = &close[start..];
    let n = close.len();
    let mut out = warm_vec(n, start + period);
    if x.len() > period && !x[..period].iter().any(|v| v.is_nan()) {
        // No state: a chunk at a time, checked for NaN with a vectorised test, then computed
        // by a branch-free map that `extend` vectorises (TA-Lib divides bar by bar).
        for (now, old) in x[period..].chunks(CHUNK).zip(x.chunks(CHUNK)) {
            let clean = clean_len(now);
            out.extend(
                now[..clean]
                    .iter()
                    .zip(old)
                    .map(|(&v, &old)| roc_value(v, old)),
            );
            if clean < now.len() {
                break;
            }
        }
    }
    out.resize(n, f64::NAN);
    Ok(out)
}

/// `((v/old)-1)·100`, 0 when `old` is 0; computed either way and then selected, so that a
/// run of them vectorises.
#[inline(always)]
fn roc_value(v: f64, old: f64) -> f64 {
    let r = ((v / old) - 1.0) * 100.0;
    if old != 0.0 { r } else { 0.0 }
}

/// Streaming [`roc`].
#[derive(Debug, Clone)]
pub struct Roc {
    ring: Vec<f64>,
    pos: usize,
    count: usize,
    gate: Gate,
}

impl Roc {
    pub fn new(period: usize) -> Result<Self, TaError> {
        check_period("period", period)?;
        Ok(Roc {
            ring: vec![0.0; period],
            pos: 0,
            count: 0,
            gate: Gate::default(),
        })
    }

    pub fn next(&mut self, x: f64) -> Option<f64> {
        if !self.gate.admit(x.is_nan()) {
            return None;
        }
        let old = self.ring[self.pos];
        self.ring[self.pos] = x;
        self.pos = if self.pos + 1 == self.ring.len() {
            0
        } else {
            self.pos + 1
        };
        if self.count < self.ring.len() {
            self.count += 1;
            return None;
        }
        Some(roc_value(x, old))
    }

    pub fn reset(&mut self) {
        self.ring.iter_mut().for_each(|v| *v = 0.0);
        self.pos = 0;
        self.count = 0;
        self.gate = Gate::default();
    }
}

/// MACD line, signal line and histogram, each the input's length.
#[derive(Debug, Clone, PartialEq)]
pub struct Macd {
    pub macd: Vec<f64>,
    pub signal: Vec<f64>,
    pub hist: Vec<f64>,
}

/// One bar of MACD.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MacdPoint {
    pub macd: f64,
    pub signal: f64,
    pub hist: f64,
}

/// MACD exactly as TA-Lib: `fast` and `slow` are swapped if `slow < fast`; both EMAs are
/// SMA-seeded so that their seed windows END on the same bar (`slow-1`), i.e. the fast EMA
/// starts late; the signal EMA is seeded with the SMA of the first `signal` MACD values; all
/// three lines start at index `slow+signal-2`.
pub fn macd(close: &[f64], fast: usize, slow: usize, signal: usize) -> Result<Macd, TaError> {
    let (fast, slow) = macd_periods(fast, slow, signal)?;
    let n = close.len();
    let start = first_valid(&[close]);
    let lb = slow + signal - 2;
    let mut out = Sink::new(n, start + lb);
    macd_kernel(&close[start..], (fast, slow, signal), &mut out);
    let [m, s, h] = out.finish();
    Ok(Macd {
        macd: m,
        signal: s,
        hist: h,
    })
}

fma_dispatch! {
    /// Pushes the MACD, signal and histogram values from bar `slow+signal-2` of `x` (the
    /// outputs already hold the warm-up), stopping at the first NaN.
    fn macd_kernel(x: &[f64], periods: (usize, usize, usize), out: &mut Sink<3>) {
        let (fast, slow, signal) = periods;
        let lb = slow + signal - 2;
        if x.len() <= lb || x[..=lb].iter().any(|v| v.is_nan()) {
            return;
        }
        let (fk, sk, gk) = (ema_k(fast), ema_k(slow), ema_k(signal));
        let mut slow_sum = 0.0;
        for &v in &x[..slow - fast] {
            slow_sum += v;
        }
        let mut fast_sum = 0.0;
        for &v in &x[slow - fast..slow] {
            fast_sum += v;
            slow_sum += v;
        }
        let mut pslow = slow_sum / slow as f64;
        let mut pfast = fast_sum / fast as f64;
        let mut mv = pfast - pslow;
        let mut psig = 0.0;
        psig += mv;
        for &v in &x[slow..=lb] {
            pfast = ema_step(pfast, v, fk);
            pslow = ema_step(pslow, v, sk);
            mv = pfast - pslow;
            psig += mv;
        }
        psig /= signal as f64;
        out.push([mv, psig, mv - psig]);
        out.feed(&x[lb + 1..], |&v| {
            if v.is_nan() {
                return Bar::Stop;
            }
            pfast = ema_step(pfast, v, fk);
            pslow = ema_step(pslow, v, sk);
            let mv = pfast - pslow;
            psig = ema_step(psig, mv, gk);
            Bar::Emit([mv, psig, mv - psig])
        });
    }
}

fn macd_periods(fast: usize, slow: usize, signal: usize) -> Result<(usize, usize), TaError> {
    check_period("fast period", fast)?;
    check_period("slow period", slow)?;
    check_period("signal period", signal)?;
    Ok(if slow < fast {
        (slow, fast)
    } else {
        (fast, slow)
    })
}

/// Streaming [`macd`].
#[derive(Debug, Clone)]
pub struct MacdStream {
    fast: usize,
    slow: usize,
    signal: usize,
    count: usize,
    fast_sum: f64,
    slow_sum: f64,
    pfast: f64,
    pslow: f64,
    psig: f64,
    sig_k: f64,
    fast_k: f64,
    slow_k: f64,
    gate: Gate,
}

impl MacdStream {
    pub fn new(fast: usize, slow: usize, signal: usize) -> Result<Self, TaError> {
        let (fast, slow) = macd_periods(fast, slow, signal)?;
        Ok(MacdStream {
            fast,
            slow,
            signal,
            count: 0,
            fast_sum: 0.0,
            slow_sum: 0.0,
            pfast: 0.0,
            pslow: 0.0,
            psig: 0.0,
            sig_k: ema_k(signal),
            fast_k: ema_k(fast),
            slow_k: ema_k(slow),
            gate: Gate::default(),
        })
    }

    pub fn next(&mut self, x: f64) -> Option<MacdPoint> {
        if !self.gate.admit(x.is_nan()) {
            return None;
        }
        let i = self.count;
        self.count = self.count.saturating_add(1);
        let (fast, slow) = (self.fast, self.slow);
        if i < slow {
            if i >= slow - fast {
                self.fast_sum += x;
            }
            self.slow_sum += x;
            if i + 1 < slow {
                return None;
            }
            self.pslow = self.slow_sum / slow as f64;
            self.pfast = self.fast_sum / fast as f64;
            let mv = self.pfast - self.pslow;
            self.psig = 0.0;
            self.psig += mv;
            return self.seeded(mv, i);
        }
        self.pfast = ema_step(self.pfast, x, self.fast_k);
        self.pslow = ema_step(self.pslow, x, self.slow_k);
        let mv = self.pfast - self.pslow;
        let lb = slow + self.signal - 2;
        if i < lb {
            self.psig += mv;
            return None;
        }
        if i == lb {
            self.psig += mv;
            return self.seeded(mv, i);
        }
        self.psig = ema_step(self.psig, mv, self.sig_k);
        Some(MacdPoint {
            macd: mv,
            signal: self.psig,
            hist: mv - self.psig,
        })
    }

    /// Called when the signal seed sum has its last term (bar `lb`).
    fn seeded(&mut self, mv: f64, i: usize) -> Option<MacdPoint> {
        if i != self.slow + self.signal - 2 {
            return None;
        }
        self.psig /= self.signal as f64;
        Some(MacdPoint {
            macd: mv,
            signal: self.psig,
            hist: mv - self.psig,
        })
    }

    pub fn reset(&mut self) {
        if let Ok(fresh) = MacdStream::new(self.fast, self.slow, self.signal) {
            *self = fresh;
        }
    }
}

/// Slow stochastic %K and %D, each the input's length.
#[derive(Debug, Clone, PartialEq)]
pub struct Stoch {
    pub k: Vec<f64>,
    pub d: Vec<f64>,
}

/// One bar of the slow stochastic.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StochPoint {
    pub k: f64,
    pub d: f64,
}

/// Slow stochastic as TA-Lib STOCH with SMA smoothing: fast %K over `fastk` bars
/// (`(close-LL)/((HH-LL)/100)`, 0 for a flat range), slow %K = SMA(`slowk`) of fast %K,
/// %D = SMA(`slowd`) of slow %K. Both lines start at index `fastk+slowk+slowd-3`.
pub fn stoch(
    high: &[f64],
    low: &[f64],
    close: &[f64],
    fastk: usize,
    slowk: usize,
    slowd: usize,
) -> Result<Stoch, TaError> {
    check_lens(&[
        ("high", high.len()),
        ("low", low.len()),
        ("close", close.len()),
    ])?;
    let mut core = StochCore::new(fastk, slowk, slowd)?;
    let n = high.len();
    let start = first_valid(&[high, low, close]);
    let (h, l, c) = (&high[start..], &low[start..], &close[start..]);
    let warm = start + lookback_stoch(fastk, slowk, slowd);
    let mut out = Sink::new(n, warm);
    let mut hl = HighLow::new(fastk);
    out.feed(
        h.iter().zip(l).zip(c).enumerate(),
        |(i, ((&hi, &lo), &ci))| {
            if hi.is_nan() | lo.is_nan() | ci.is_nan() {
                return Bar::Stop;
            }
            let (highest, lowest) = hl.push(h, l, i);
            if i + 1 < fastk {
                return Bar::Skip;
            }
            match core.smooth(highest, lowest, ci) {
                Some(p) => Bar::Emit([p.k, p.d]),
                None => Bar::Skip,
            }
        },
    );
    let [k, d] = out.finish();
    Ok(Stoch { k, d })
}

fn lookback_stoch(fastk: usize, slowk: usize, slowd: usize) -> usize {
    super::lookback::stoch(fastk, slowk, slowd)
}

#[derive(Debug, Clone)]
struct StochCore {
    fastk: usize,
    seq: usize,
    hh: MonoMax,
    ll: MonoMin,
    slow_k: SmaCore,
    slow_d: SmaCore,
    periods: (usize, usize, usize),
}

impl StochCore {
    fn new(fastk: usize, slowk: usize, slowd: usize) -> Result<Self, TaError> {
        check_period("fast %K period", fastk)?;
        check_period("slow %K period", slowk)?;
        check_period("slow %D period", slowd)?;
        Ok(StochCore {
            fastk,
            seq: 0,
            hh: MonoMax::new(fastk),
            ll: MonoMin::new(fastk),
            slow_k: SmaCore::new(slowk),
            slow_d: SmaCore::new(slowd),
            periods: (fastk, slowk, slowd),
        })
    }

    #[inline]
    fn step(&mut self, h: f64, l: f64, c: f64) -> Option<StochPoint> {
        let seq = self.seq;
        self.seq += 1;
        let highest = self.hh.push(seq, h);
        let lowest = self.ll.push(seq, l);
        if seq + 1 < self.fastk {
            return None;
        }
        self.smooth(highest, lowest, c)
    }

    /// Fast %K from the window's extremes, then the two SMA smoothings.
    #[inline]
    fn smooth(&mut self, highest: f64, lowest: f64, c: f64) -> Option<StochPoint> {
        let diff = (highest - lowest) / 100.0;
        let fast = if diff != 0.0 {
            (c - lowest) / diff
        } else {
            0.0
        };
        let k = self.slow_k.push(fast)?;
        let d = self.slow_d.push(k)?;
        Some(StochPoint { k, d })
    }
}

/// Streaming [`stoch`].
#[derive(Debug, Clone)]
pub struct StochStream {
    core: StochCore,
    gate: Gate,
}

impl StochStream {
    pub fn new(fastk: usize, slowk: usize, slowd: usize) -> Result<Self, TaError> {
        Ok(StochStream {
            core: StochCore::new(fastk, slowk, slowd)?,
            gate: Gate::default(),
        })
    }

    pub fn next(&mut self, high: f64, low: f64, close: f64) -> Option<StochPoint> {
        if !self
            .gate
            .admit(high.is_nan() || low.is_nan() || close.is_nan())
        {
            return None;
        }
        self.core.step(high, low, close)
    }

    pub fn reset(&mut self) {
        let (a, b, c) = self.core.periods;
        if let Ok(fresh) = StochStream::new(a, b, c) {
            *self = fresh;
        }
    }
}
