//! Batch indicator speed on 1,000,000 bars: median over RUNS runs, printed as ns/point and
//! ms per 1M points (compare with scripts/talib_bench.py, which times TA-Lib on the same sizes).
//!
//! Two sections are printed. "default allocator": every run's fresh 8 MB output vectors are
//! page-faulted in (glibc returns freed multi-MB blocks to the OS), which dominates the
//! multi-output indicators on this VM. "retained heap": the same binary re-run with
//! GLIBC_TUNABLES raising glibc's trim/mmap thresholds so freed outputs are reused: the
//! computation alone (numpy, behind TA-Lib's Python figures, backs large arrays with huge
//! pages, so its page-fault cost is small too).

use std::hint::black_box;
use std::process::Command;
use std::time::Instant;

use chrono::{Duration, TimeZone, Utc};
use mft::domain::Candle;
use mft::ta;

const N: usize = 1_000_000;
const RUNS: usize = 15;

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
    println!(
        "{name:<12} {:>7.2} ns/point {:>8.2} ms/1M",
        median * 1e9 / N as f64,
        median * 1e3 * (1_000_000.0 / N as f64)
    );
}

fn main() {
    // `cargo test --benches` runs this with --test/--bench flags; only time on a real bench run.
    if std::env::args().any(|a| a == "--test") {
        return;
    }
    const CHILD: &str = "MFT_TA_BENCH_RETAINED_HEAP";
    let child = std::env::var_os(CHILD).is_some();
    let d = data();
    let (h, l, c, v) = (&d.high[..], &d.low[..], &d.close[..], &d.volume[..]);
    let section = if child {
        "retained heap"
    } else {
        "default allocator"
    };
    println!("ta batch indicators, {N} points, median of {RUNS} runs [{section}]");
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
    if !child {
        drop(d);
        let rerun = std::env::current_exe().and_then(|exe| {
            Command::new(exe)
                .args(std::env::args_os().skip(1))
                .env(CHILD, "1")
                .env(
                    "GLIBC_TUNABLES",
                    "glibc.malloc.trim_threshold=1073741824:glibc.malloc.mmap_threshold=1073741824",
                )
                .status()
        });
        if let Err(e) = rerun {
            eprintln!("could not re-run with a retained heap: {e}");
        }
    }
}
