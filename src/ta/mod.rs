//! Technical indicators over price series, in batch and streaming forms with identical results.
//!
//! # Two forms, one result
//!
//! Every indicator exists as a **batch** function over slices (e.g. [`sma`]) and as a
//! **streaming** struct (e.g. [`Sma`]) fed one bar at a time through `next(..)`. For the same
//! input the streaming value at bar `i` is bit-for-bit the batch value at index `i`: both run
//! the same arithmetic in the same order (property-tested). Use the batch form for charts,
//! scans over history and backtests that precompute; use the streaming form for live bars and
//! bar-by-bar backtests.
//!
//! # Agreement with TA-Lib
//!
//! Warm-up lengths, seeding, smoothing rules and zero-division rules are TA-Lib's (C library
//! 0.8, default "classic" compatibility, no unstable period). Values agree with TA-Lib 0.8.2 to
//! 1e-9 relative (1e-9 absolute near zero) on the committed fixture
//! (`scripts/talib_fixture.py`, `tests/ta_talib.rs`); in practice to ~1e-13. Running sums (SMA,
//! WMA, seeds) are TA-Lib's, with each bar's change `new - trailing` added in one step (one
//! addition on the dependency chain; the difference is exact for prices within a factor 2).
//! The Wilder and EMA recurrences are evaluated as the fused multiply-add `prev·a + (x·b)`
//! with precomputed coefficients (as TA-Lib 0.8's FMA build: one rounding, no division on the
//! bar-to-bar dependency chain; `f64::mul_add`, so the bits are the same with or without
//! hardware FMA). The Bollinger variance uses anchored deviation sums (scaled by a
//! precomputed `1/period`) instead of the running `E[x²] − E[x]²`, which cancels
//! catastrophically on flat stretches.
//!
//! Batch outputs are allocated once at their final length and each element is written once
//! (no NaN pre-fill); the EMA and Wilder kernels (EMA, MACD, RSI, ATR, ADX) run compiled with
//! FMA when the CPU has it (1.5-2.6x faster than libm's `fma` calls; `benches/ta.rs` times
//! each such fast path against its safe alternative).
//!
//! # Warm-up convention
//!
//! * A batch output has **the same length as its input**. Positions that have no value yet
//!   (the warm-up) hold `f64::NAN`.
//! * A streaming `next(..)` returns `None` exactly where the batch output holds `NaN` because
//!   of warm-up, a NaN input (see below) or an undefined value (VWAP of a day without volume),
//!   and `Some(value)` everywhere else.
//! * Warm-up lengths ("lookback") are TA-Lib's for every indicator TA-Lib has: the first
//!   value of `sma/ema/wma(p)` is at index `p-1` (EMA seeded with the SMA of the first `p`
//!   inputs), `rsi(p)`/`atr(p)`/`roc(p)`/`+DI(p)`/`-DI(p)` at `p`, `adx(p)` at
//!   `2p-1`, `macd(f,s,g)` (all three lines) at `max(f,s)+g-2`, `bbands(p)` at `p-1`,
//!   `stoch(fk,sk,sd)` (both lines) at `fk+sk+sd-3`, `obv` and `vwap` at 0, `donchian(p)` at
//!   `p-1`, `supertrend(p)` at `p` (its ATR's lookback). [`lookback`] gives these numbers.
//!   Where TA-Lib requires a period of at least 2 (SMA, EMA, RSI, BBANDS, ADX, MACD fast/slow)
//!   a period of 1 is accepted here and computed by the same formulas (e.g. SMA(1) = input).
//! * Input shorter than the warm-up gives an all-NaN output (not an error). A period of 0, a
//!   period above [`MAX_PERIOD`], non-finite multipliers and inputs of different lengths are
//!   errors ([`TaError`]). No function panics on any input.
//!
//! # NaN inputs
//!
//! * **Leading NaNs are skipped**: the series is taken to start at the first bar where every
//!   input of the indicator (e.g. high, low and close) is a number, and the warm-up counts
//!   from there (this is what the TA-Lib Python wrapper does). A streaming struct ignores such
//!   bars (returns `None`) until the first complete bar.
//! * **A NaN after the series started ends it**: the output at that bar and at every later
//!   bar is NaN (streaming: `None` from then on), because every indicator here carries state
//!   (running sums, smoothing, windows) that a missing value would silently corrupt. Clean or
//!   split the data and start again (`reset()` on a stream) to continue.
//! * Infinite inputs are not screened; they follow IEEE-754 arithmetic (a NaN computed from
//!   them is a NaN in the batch output and `Some(NaN)` from a stream).
//!
//! # Zero divisions
//!
//! Where TA-Lib defines a value for a zero denominator it is kept: RSI 0 when there was no
//! gain and no loss, ROC 0 when the old price is 0, stochastic %K 0 when the range is 0,
//! +DI/-DI 0 when the true range is 0, ADX keeps its previous value when +DI + -DI is 0, and a
//! band width of 0 when the variance is below 1e-14. VWAP is NaN while the trading day's volume
//! is still 0.

mod adx;
mod ma;
mod momentum;
mod snapshot;
mod volatility;
mod volume;
mod window;

pub use adx::{Adx, AdxPoint, AdxStream, adx};
pub use ma::{Ema, Sma, Wma, ema, sma, wma};
pub use momentum::{
    Macd, MacdPoint, MacdStream, Roc, Rsi, Stoch, StochPoint, StochStream, macd, roc, rsi, stoch,
};
pub use snapshot::{SNAPSHOT_HEADER, SnapshotRow, format_table, snapshot, write_csv};
pub use volatility::{
    Atr, Bands, BandsPoint, BbandsStream, Donchian, DonchianPoint, DonchianStream, Supertrend,
    SupertrendPoint, SupertrendStream, atr, bbands, donchian, supertrend,
};
pub use volume::{Obv, Vwap, obv, vwap};

/// The largest period any indicator accepts (TA-Lib's limit too); it bounds the memory a
/// streaming window allocates.
pub const MAX_PERIOD: usize = 100_000;

/// Why an indicator could not be computed. Short input is not an error (it gives NaN).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TaError {
    #[error("invalid {name} {value}: a period must be between 1 and {max}", max = MAX_PERIOD)]
    InvalidPeriod { name: &'static str, value: usize },
    #[error(
        "input series have different lengths ({name} has {len} values, {first} has {expected}); pass one value per bar in every series"
    )]
    LengthMismatch {
        first: &'static str,
        expected: usize,
        name: &'static str,
        len: usize,
    },
    #[error("invalid {name} {value}: {reason}")]
    InvalidParameter {
        name: &'static str,
        value: f64,
        reason: &'static str,
    },
}

/// Warm-up length (index of the first value) of each indicator, as in TA-Lib.
pub mod lookback {
    pub fn sma(period: usize) -> usize {
        period.saturating_sub(1)
    }
    pub fn ema(period: usize) -> usize {
        period.saturating_sub(1)
    }
    pub fn wma(period: usize) -> usize {
        period.saturating_sub(1)
    }
    pub fn rsi(period: usize) -> usize {
        period
    }
    pub fn roc(period: usize) -> usize {
        period
    }
    pub fn atr(period: usize) -> usize {
        period
    }
    /// MACD, signal and histogram all start here (TA-Lib aligns the three lines).
    pub fn macd(fast: usize, slow: usize, signal: usize) -> usize {
        (fast.max(slow) + signal).saturating_sub(2)
    }
    pub fn bbands(period: usize) -> usize {
        period.saturating_sub(1)
    }
    pub fn adx(period: usize) -> usize {
        (2 * period).saturating_sub(1)
    }
    pub fn di(period: usize) -> usize {
        period
    }
    /// %K and %D both start here (TA-Lib aligns the two lines).
    pub fn stoch(fastk: usize, slowk: usize, slowd: usize) -> usize {
        (fastk + slowk + slowd).saturating_sub(3)
    }
    pub fn obv() -> usize {
        0
    }
    pub fn vwap() -> usize {
        0
    }
    pub fn donchian(period: usize) -> usize {
        period.saturating_sub(1)
    }
    pub fn supertrend(period: usize) -> usize {
        period
    }
}

pub(crate) fn check_period(name: &'static str, value: usize) -> Result<(), TaError> {
    if value == 0 || value > MAX_PERIOD {
        Err(TaError::InvalidPeriod { name, value })
    } else {
        Ok(())
    }
}

pub(crate) fn check_finite(name: &'static str, value: f64) -> Result<(), TaError> {
    if value.is_finite() {
        Ok(())
    } else {
        Err(TaError::InvalidParameter {
            name,
            value,
            reason: "must be a finite number",
        })
    }
}

/// Checks that every `(name, len)` has the length of the first.
pub(crate) fn check_lens(series: &[(&'static str, usize)]) -> Result<(), TaError> {
    if let Some(&(first, expected)) = series.first() {
        for &(name, len) in &series[1..] {
            if len != expected {
                return Err(TaError::LengthMismatch {
                    first,
                    expected,
                    name,
                    len,
                });
            }
        }
    }
    Ok(())
}

/// Index of the first bar where every series is a number (the series' start).
pub(crate) fn first_valid(series: &[&[f64]]) -> usize {
    let n = series.first().map_or(0, |s| s.len());
    (0..n)
        .find(|&i| series.iter().all(|s| !s[i].is_nan()))
        .unwrap_or(n)
}

/// Streaming NaN policy: skip bars until the first complete one, stop for good at the first
/// NaN after that.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Gate {
    started: bool,
    ended: bool,
}

impl Gate {
    /// True when the bar should be processed.
    #[inline]
    pub(crate) fn admit(&mut self, has_nan: bool) -> bool {
        if self.ended {
            return false;
        }
        if has_nan {
            self.ended = self.started;
            return false;
        }
        self.started = true;
        true
    }
}

/// A/B switches for `benches/ta.rs`, which times each of this module's unsafe fast paths
/// against its safe alternative (the crate denies unsafe code but for a few places that must
/// each show that they pay). All on by default; read once per call or allocation, never per
/// bar. Not an API: nothing but the bench sets them.
#[doc(hidden)]
pub mod ab {
    use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

    /// `madvise(MADV_HUGEPAGE)` on large outputs (off: plain allocation).
    pub static HUGE_PAGES: AtomicBool = AtomicBool::new(true);
    /// Batch kernels compiled with FMA when the CPU has it (off: the portable body, whose
    /// `mul_add` calls libm's `fma`).
    pub static FMA: AtomicBool = AtomicBool::new(true);
    /// How [`super::Sink::feed`] writes: [`FEED_SET_LEN`] (unsafe: spare capacity, then
    /// `set_len`), [`FEED_PREFILL`] (safe: NaN-fill the outputs, then index) or [`FEED_PUSH`]
    /// (safe: `Vec::push` per bar).
    pub static FEED: AtomicU8 = AtomicU8::new(FEED_SET_LEN);
    pub const FEED_SET_LEN: u8 = 0;
    pub const FEED_PREFILL: u8 = 1;
    pub const FEED_PUSH: u8 = 2;

    pub(crate) fn on(flag: &AtomicBool) -> bool {
        flag.load(Ordering::Relaxed)
    }

    pub(crate) fn feed() -> u8 {
        FEED.load(Ordering::Relaxed)
    }
}

/// Bars per chunk in the chunked (vectorised) kernels.
pub(crate) const CHUNK: usize = 256;

/// Length of the NaN-free prefix of `chunk`: one vectorised test, a scan only if it fails.
#[inline(always)]
pub(crate) fn clean_len(chunk: &[f64]) -> usize {
    if chunk.iter().fold(false, |a, v| a | v.is_nan()) {
        chunk.iter().position(|v| v.is_nan()).unwrap_or(chunk.len())
    } else {
        chunk.len()
    }
}

/// An output of final length `n` holding its `warm` warm-up NaNs, with room for the rest.
pub(crate) fn warm_vec(n: usize, warm: usize) -> Vec<f64> {
    let mut v = Vec::with_capacity(n);
    if ab::on(&ab::HUGE_PAGES) {
        advise_huge_pages(&mut v);
    }
    v.resize(warm.min(n), f64::NAN);
    v
}

/// Asks the kernel to back a large output with transparent huge pages (as numpy does for
/// its arrays, TA-Lib's outputs in Python): fresh memory then costs one page fault per
/// 2 MiB instead of per 4 KiB, which was most of the time of a three-output indicator on
/// 1M bars whenever the allocator handed back memory it had returned to the OS (measured:
/// MACD, Bollinger, ADX and Donchian 1.2-1.55x slower without it, the single-output
/// indicators unchanged, `cargo bench --bench ta -- ab`). Only whole
/// 2 MiB-aligned stretches inside the allocation are advised; a refusal (THP disabled) is
/// harmless.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)] // one madvise call; see the SAFETY note inside
fn advise_huge_pages(v: &mut Vec<f64>) {
    use std::ffi::{c_int, c_void};
    const HUGE: usize = 2 << 20;
    const MADV_HUGEPAGE: c_int = 14;
    unsafe extern "C" {
        fn madvise(addr: *mut c_void, len: usize, advice: c_int) -> c_int;
    }
    let bytes = v.capacity() * std::mem::size_of::<f64>();
    if bytes < 2 * HUGE {
        return;
    }
    let start = v.as_mut_ptr() as usize;
    let (lo, hi) = (start.next_multiple_of(HUGE), (start + bytes) / HUGE * HUGE);
    if hi > lo {
        // SAFETY: [lo, hi) is page-aligned and lies inside this vector's own allocation;
        // MADV_HUGEPAGE changes only how the kernel backs those pages (never their contents
        // or validity). The result is ignored on purpose: the advice is optional.
        unsafe {
            madvise(lo as *mut c_void, hi - lo, MADV_HUGEPAGE);
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn advise_huge_pages(_: &mut Vec<f64>) {}

/// What a batch kernel made of one bar.
pub(crate) enum Bar<const K: usize> {
    /// The bar's output values.
    Emit([f64; K]),
    /// No output for this bar (still warming up).
    Skip,
    /// The series ends here (a NaN input): this bar and all later ones are NaN.
    Stop,
}

/// Collects the `K` outputs of a batch kernel, writing each output element exactly once,
/// straight into the vectors' spare capacity. The safe alternatives are slower
/// (`cargo bench --bench ta -- ab`, 1M bars, 12 indicators, median off/on): a NaN-filled
/// output written by index writes every page twice, 1.14-1.15x (up to 1.34x); pushing to `K`
/// vectors bar by bar reloads each length and capacity on every push, 1.12-1.13x (up to
/// 1.42x, MACD). Staging chunks on the stack would add a copy of every output.
pub(crate) struct Sink<const K: usize> {
    outs: [Vec<f64>; K],
    n: usize,
}

impl<const K: usize> Sink<K> {
    /// Outputs of final length `n` whose first `warm` values (the warm-up) are NaN.
    pub(crate) fn new(n: usize, warm: usize) -> Self {
        Sink {
            outs: std::array::from_fn(|_| warm_vec(n, warm)),
            n,
        }
    }

    /// Runs `f` over `items`, appending what it emits, until the items run out, `f` says
    /// stop, or the outputs are full. The loop holds no call, so the kernel's running state
    /// stays in registers (every xmm register is caller-saved: a call inside the loop would
    /// put a store-load round trip on the kernel's dependency chain).
    #[inline(always)]
    #[allow(unsafe_code)] // set_len over slots written in the loop; see the SAFETY note below
    pub(crate) fn feed<T>(
        &mut self,
        items: impl IntoIterator<Item = T>,
        mut f: impl FnMut(T) -> Bar<K>,
    ) {
        match ab::feed() {
            ab::FEED_PREFILL => return self.feed_prefilled(items, f),
            ab::FEED_PUSH => return self.feed_pushed(items, f),
            _ => {}
        }
        let mut items = items.into_iter();
        let room = self.outs.iter().map(|v| v.capacity() - v.len()).min();
        let room = room.unwrap_or(0);
        // Every slice exactly `room` long, so `written < room` bounds every index below.
        let mut spare = self
            .outs
            .each_mut()
            .map(|v| &mut v.spare_capacity_mut()[..room]);
        let mut written = 0;
        while written < room {
            let Some(item) = items.next() else { break };
            match f(item) {
                Bar::Emit(values) => {
                    for (s, v) in spare.iter_mut().zip(values) {
                        s[written].write(v);
                    }
                    written += 1;
                }
                Bar::Skip => {}
                Bar::Stop => break,
            }
        }
        for o in &mut self.outs {
            let len = o.len() + written;
            // SAFETY: `written <= room` does not exceed any vector's spare capacity, and
            // every one of the `written` spare slots of every vector was initialised above
            // (slot `written` of all `K` vectors is written before `written` grows).
            unsafe { o.set_len(len) };
        }
    }

    /// [`Sink::feed`] without unsafe code: the outputs are NaN-filled to their final length
    /// first, then written by index (every page written twice). For the A/B bench.
    #[inline(always)]
    fn feed_prefilled<T>(
        &mut self,
        items: impl IntoIterator<Item = T>,
        mut f: impl FnMut(T) -> Bar<K>,
    ) {
        let start = self.outs.iter().map(Vec::len).min().unwrap_or(0);
        let room = self.n.saturating_sub(start);
        for o in &mut self.outs {
            o.resize(start + room, f64::NAN);
        }
        let mut dst = self.outs.each_mut().map(|v| &mut v[start..start + room]);
        let mut items = items.into_iter();
        let mut written = 0;
        while written < room {
            let Some(item) = items.next() else { break };
            match f(item) {
                Bar::Emit(values) => {
                    for (d, v) in dst.iter_mut().zip(values) {
                        d[written] = v;
                    }
                    written += 1;
                }
                Bar::Skip => {}
                Bar::Stop => break,
            }
        }
        for o in &mut self.outs {
            o.truncate(start + written);
        }
    }

    /// [`Sink::feed`] without unsafe code: one `Vec::push` per output per bar. For the A/B
    /// bench.
    #[inline(always)]
    fn feed_pushed<T>(
        &mut self,
        items: impl IntoIterator<Item = T>,
        mut f: impl FnMut(T) -> Bar<K>,
    ) {
        let mut items = items.into_iter();
        while self.outs.iter().all(|o| o.len() < self.n) {
            let Some(item) = items.next() else { break };
            match f(item) {
                Bar::Emit(values) => {
                    for (o, v) in self.outs.iter_mut().zip(values) {
                        o.push(v);
                    }
                }
                Bar::Skip => {}
                Bar::Stop => break,
            }
        }
    }

    /// Appends one bar's values (outside hot loops: see [`Sink::feed`]).
    #[inline(always)]
    pub(crate) fn push(&mut self, values: [f64; K]) {
        for (o, v) in self.outs.iter_mut().zip(values) {
            o.push(v);
        }
    }

    /// The outputs, NaN-padded to length `n` (bars after a NaN input or never reached).
    pub(crate) fn finish(self) -> [Vec<f64>; K] {
        let Sink { mut outs, n } = self;
        for o in &mut outs {
            o.resize(n, f64::NAN);
        }
        outs
    }
}

/// Defines `fn $name(..)` whose body runs compiled with FMA instructions when the CPU has
/// them. Bodies use `f64::mul_add` on their recurrences (one rounding, one instruction on the
/// bar-to-bar dependency chain, as TA-Lib 0.8's FMA build does); without hardware FMA the
/// same calls go to libm's exact `fma`, so the bits are identical on every machine and equal
/// to the streaming forms, which call `mul_add` the same way.
macro_rules! fma_dispatch {
    ($(#[$m:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$m])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            // The body is expanded twice (not shared through a helper) so that the closures
            // inside it are compiled with FMA too: they inherit the enclosing function's
            // target features, not those of the function that calls them.
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "fma")]
                fn with_fma($($arg: $ty),*) $(-> $ret)? $body
                if $crate::ta::ab::on(&$crate::ta::ab::FMA)
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: the CPU supports FMA (checked just above), the only
                    // requirement of a `target_feature` function.
                    #[allow(unsafe_code)]
                    return unsafe { with_fma($($arg),*) };
                }
            }
            $body
        }
    };
}
pub(crate) use fma_dispatch;

/// TA-Lib's TA_IS_ZERO.
#[inline(always)]
pub(crate) fn is_zero(v: f64) -> bool {
    -1e-14 < v && v < 1e-14
}

#[cfg(test)]
mod ab_tests {
    use super::*;
    use std::sync::atomic::Ordering::Relaxed;

    /// Every indicator's batch output, as text that tells apart any two different bit patterns
    /// that matter (Debug prints the shortest round-tripping form, NaN and -0.0 included).
    fn all(h: &[f64], l: &[f64], c: &[f64], v: &[f64]) -> String {
        format!(
            "{:?}{:?}",
            (
                sma(c, 20),
                ema(c, 20),
                wma(c, 20),
                rsi(c, 14),
                roc(c, 10),
                atr(h, l, c, 14),
                macd(c, 12, 26, 9),
                bbands(c, 20, 2.0, 2.0),
                adx(h, l, c, 14),
            ),
            (
                stoch(h, l, c, 14, 3, 3),
                obv(c, v),
                supertrend(h, l, c, 10, 3.0),
                donchian(h, l, 20),
            )
        )
    }

    // The A/B bench compares each unsafe path with its safe alternative; that is a fair
    // comparison only if both compute the same bits. (Other tests may run meanwhile with a
    // switch flipped: they see identical results too, which is the point.)
    #[test]
    fn safe_alternatives_give_the_same_bits() {
        let n = 5_000;
        let mut x = 1000.0_f64;
        let mut c = Vec::with_capacity(n);
        for i in 0..n {
            x *= 1.0 + ((i * 7919 % 101) as f64 - 50.0) / 10_000.0;
            c.push(x);
        }
        let h: Vec<f64> = c
            .iter()
            .enumerate()
            .map(|(i, v)| v + (i % 7) as f64 * 0.3)
            .collect();
        let l: Vec<f64> = c
            .iter()
            .enumerate()
            .map(|(i, v)| v - (i % 5) as f64 * 0.3)
            .collect();
        let vol: Vec<f64> = (0..n).map(|i| (i * 37 % 1000) as f64).collect();
        let mut gap = c.clone();
        gap[3_000] = f64::NAN;
        let reference = (all(&h, &l, &c, &vol), all(&h, &l, &gap, &vol));
        for feed in [ab::FEED_PREFILL, ab::FEED_PUSH, ab::FEED_SET_LEN] {
            for fma in [false, true] {
                for huge in [false, true] {
                    ab::FEED.store(feed, Relaxed);
                    ab::FMA.store(fma, Relaxed);
                    ab::HUGE_PAGES.store(huge, Relaxed);
                    let got = (all(&h, &l, &c, &vol), all(&h, &l, &gap, &vol));
                    assert!(
                        got == reference,
                        "feed {feed}, fma {fma}, huge pages {huge} differ"
                    );
                }
            }
        }
    }
}
