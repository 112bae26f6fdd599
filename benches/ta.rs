//! Batch indicator speed on 1,000,000 bars, printed as ns/point and ms per 1M points: the
//! median of RUNS timed calls after one warm-up call, on warm (already touched) inputs (the
//! fastest call is printed too).
//!
//! Each call allocates its outputs through the global allocator and the result is dropped
//! right after it is timed, exactly what `scripts/talib_bench.py` does with TA-Lib's Python
//! wrapper (fresh numpy outputs per call), with the same input sizes and parameters.
//! Whether a fresh output costs page faults depends on the malloc policy of the process
//! (glibc returns a freed block at the top of the heap to the OS once it exceeds its
//! dynamic trim threshold, so with its defaults the three-output indicators here fault in
//! 24 MB on every call while a Python process's heap history may spare numpy that), so
//! `talib_bench.py` runs this bench and TA-Lib under the same `GLIBC_TUNABLES`; the header
//! line prints the policy in force. `cargo bench --bench ta -- NAME...` times only some
//! indicators.
//!
//! Then the A/B section (`cargo bench --bench ta -- ab` alone): each of `ta`'s unsafe fast
//! paths (madvise on large outputs, the FMA-compiled kernels, `Sink::feed`'s `set_len`)
//! switched off through `mft::ta::ab` against on, in alternating runs, with the per-indicator
//! ratio and its median over the indicators that take the path; the indicators that do not
//! take it show the noise. The crate keeps an unsafe place only while this shows it pays.

use std::hint::black_box;
use std::time::Instant;

use chrono::{Duration, TimeZone, Utc};
use mft::domain::Candle;
use mft::ta;

const N: usize = 1_000_000;
const RUNS: usize = 15;
/// Runs each way in an A/B: more than RUNS, since a ratio of two noisy medians is noisier.
const AB_RUNS: usize = 41;

fn wanted(name: &str) -> bool {
    let picks: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    picks.is_empty() || picks.iter().any(|p| p == name)
}

/// Deterministic random walk (xorshift64*), no external RNG needed.
struct Rng(u64);

impl Rng {
    fn next_f64(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

struct Data {
    high: Vec<f64>,
    low: Vec<f64>,
    close: Vec<f64>,
    volume: Vec<f64>,
    candles: Vec<Candle>,
}

fn data() -> Data {
    let mut r = Rng(0x9E37_79B9_7F4A_7C15);
    let mut price = 1000.0;
    let t0 = Utc.with_ymd_and_hms(2020, 1, 1, 3, 45, 0).unwrap();
    let mut d = Data {
        high: Vec::with_capacity(N),
        low: Vec::with_capacity(N),
        close: Vec::with_capacity(N),
        volume: Vec::with_capacity(N),
        candles: Vec::with_capacity(N),
    };
    for i in 0..N {
        let open = price;
        let close = (open * (1.0 + (r.next_f64() - 0.5) * 0.01)).max(1.0);
        let high = open.max(close) + r.next_f64() * 2.0;
        let low = open.min(close) - r.next_f64() * 2.0;
        let volume = (r.next_f64() * 10_000.0).floor();
        d.high.push(high);
        d.low.push(low);
        d.close.push(close);
        d.volume.push(volume);
        d.candles.push(Candle {
            ts: t0 + Duration::minutes(i as i64),
            open,
            high,
            low,
            close,
            volume: volume as i64,
            oi: None,
        });
        price = close;
    }
    d
}

fn bench<T>(name: &str, mut f: impl FnMut() -> T) {
    if !wanted(name) {
        return;
    }
    black_box(f());
    let mut times: Vec<f64> = (0..RUNS)
        .map(|_| {
            let t = Instant::now();
            black_box(f());
            t.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    let median = times[RUNS / 2];
    let per_1m = 1_000_000.0 / N as f64;
    // The minimum is printed too: on a shared machine it is the least disturbed run.
    println!(
        "{name:<12} {:>7.2} ns/point {:>8.2} ms/1M (min {:.2})",
        median * 1e9 / N as f64,
        median * 1e3 * per_1m,
        times[0] * 1e3 * per_1m
    );
}

/// Times `f` with an unsafe fast path on (A) and off (B, `set(false)`), alternating A and B
/// run by run so that machine noise falls on both alike; prints both medians and B/A.
fn ab<T>(name: &str, set: &dyn Fn(bool), users: &[&str], mut f: impl FnMut() -> T) -> (bool, f64) {
    let user = users.contains(&name);
    let mut a = Vec::with_capacity(AB_RUNS);
    let mut b = Vec::with_capacity(AB_RUNS);
    for on in [true, false] {
        set(on);
        black_box(f());
    }
    for _ in 0..AB_RUNS {
        for (on, times) in [(true, &mut a), (false, &mut b)] {
            set(on);
            let t = Instant::now();
            black_box(f());
            times.push(t.elapsed().as_secs_f64());
        }
    }
    set(true);
    a.sort_by(f64::total_cmp);
    b.sort_by(f64::total_cmp);
    let (ma, mb) = (a[AB_RUNS / 2], b[AB_RUNS / 2]);
    println!(
        "  {name:<12} on {:>8.2} ms  off {:>8.2} ms  off/on {:>5.2}{}",
        ma * 1e3,
        mb * 1e3,
        mb / ma,
        if user {
            ""
        } else {
            "  (does not use it: noise)"
        }
    );
    (user, mb / ma)
}

/// One unsafe path's A/B over every indicator: prints the median of the per-indicator ratios
/// of the indicators in `users` (those whose code takes the path), and the spread of the
/// others, whose ratios show the noise.
fn ab_all(title: &str, d: &Data, users: &[&str], set: &dyn Fn(bool)) {
    if !wanted("ab") {
        return;
    }
    let (h, l, c, v) = (&d.high[..], &d.low[..], &d.close[..], &d.volume[..]);
    println!("A/B {title}: median of {AB_RUNS} alternating runs each way, {N} points");
    let r = [
        ab("sma20", set, users, || ta::sma(c, 20)),
        ab("ema20", set, users, || ta::ema(c, 20)),
        ab("wma20", set, users, || ta::wma(c, 20)),
        ab("rsi14", set, users, || ta::rsi(c, 14)),
        ab("roc10", set, users, || ta::roc(c, 10)),
        ab("atr14", set, users, || ta::atr(h, l, c, 14)),
        ab("macd", set, users, || ta::macd(c, 12, 26, 9)),
        ab("bbands20", set, users, || ta::bbands(c, 20, 2.0, 2.0)),
        ab("adx14", set, users, || ta::adx(h, l, c, 14)),
        ab("stoch", set, users, || ta::stoch(h, l, c, 14, 3, 3)),
        ab("obv", set, users, || ta::obv(c, v)),
        ab("vwap", set, users, || ta::vwap(&d.candles)),
        ab("supertrend", set, users, || {
            ta::supertrend(h, l, c, 10, 3.0)
        }),
        ab("donchian20", set, users, || ta::donchian(h, l, 20)),
    ];
    let spread = |mut r: Vec<f64>| -> String {
        r.sort_by(f64::total_cmp);
        match r.len() {
            0 => "-".into(),
            n => format!(
                "median {:.2}, min {:.2}, max {:.2}",
                r[n / 2],
                r[0],
                r[n - 1]
            ),
        }
    };
    let of = |user: bool| {
        r.iter()
            .filter(|x| x.0 == user)
            .map(|x| x.1)
            .collect::<Vec<_>>()
    };
    println!(
        "A/B {title}: off/on over the {} indicators that use it: {}; the others (noise): {}",
        of(true).len(),
        spread(of(true)),
        spread(of(false))
    );
}

fn main() {
    // `cargo test --benches` runs this with --test/--bench flags; only time on a real bench run.
    if std::env::args().any(|a| a == "--test") {
        return;
    }
    let d = data();
    let (h, l, c, v) = (&d.high[..], &d.low[..], &d.close[..], &d.volume[..]);
    let tunables = std::env::var("GLIBC_TUNABLES").unwrap_or_default();
    println!(
        "ta batch indicators, {N} points, median of {RUNS} runs (GLIBC_TUNABLES={tunables:?})"
    );
    bench("sma20", || ta::sma(c, 20));
    bench("ema20", || ta::ema(c, 20));
    bench("wma20", || ta::wma(c, 20));
    bench("rsi14", || ta::rsi(c, 14));
    bench("roc10", || ta::roc(c, 10));
    bench("atr14", || ta::atr(h, l, c, 14));
    bench("macd", || ta::macd(c, 12, 26, 9));
    bench("bbands20", || ta::bbands(c, 20, 2.0, 2.0));
    bench("adx14", || ta::adx(h, l, c, 14));
    bench("stoch", || ta::stoch(h, l, c, 14, 3, 3));
    bench("obv", || ta::obv(c, v));
    bench("vwap", || ta::vwap(&d.candles));
    bench("supertrend", || ta::supertrend(h, l, c, 10, 3.0));
    bench("donchian20", || ta::donchian(h, l, 20));

    // Each unsafe place in `ta` against its safe alternative (`cargo bench --bench ta -- ab`
    // runs only these). "off/on" > 1: the unsafe path is that much faster. Every Sink user
    // allocates through warm_vec (madvise) and writes through feed; obv and vwap take neither
    // path, and only the Wilder/EMA kernels are FMA-compiled: their ratios show the noise.
    use std::sync::atomic::Ordering::Relaxed;
    use ta::ab;
    let sinks = [
        "sma20",
        "ema20",
        "wma20",
        "rsi14",
        "roc10",
        "atr14",
        "macd",
        "bbands20",
        "adx14",
        "stoch",
        "supertrend",
        "donchian20",
    ];
    let fma = ["ema20", "rsi14", "atr14", "macd", "adx14"];
    let feed = |safe: u8| {
        move |on: bool| ab::FEED.store(if on { ab::FEED_SET_LEN } else { safe }, Relaxed)
    };
    ab_all(
        "madvise(MADV_HUGEPAGE) (off: plain allocation)",
        &d,
        &sinks,
        &|on| ab::HUGE_PAGES.store(on, Relaxed),
    );
    ab_all(
        "FMA dispatch (off: portable body, libm fma)",
        &d,
        &fma,
        &|on| ab::FMA.store(on, Relaxed),
    );
    ab_all(
        "Sink::feed set_len (off: safe NaN pre-fill + index)",
        &d,
        &sinks,
        &feed(ab::FEED_PREFILL),
    );
    ab_all(
        "Sink::feed set_len (off: safe Vec::push per bar)",
        &d,
        &sinks,
        &feed(ab::FEED_PUSH),
    );
}
