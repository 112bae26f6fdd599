//! Render time of the default proposal chart (120 candles, 1280x800, PNG encoded) and of an
//! equity curve; prints median and p90.

use std::time::Instant;

use chrono::{Duration, TimeZone, Utc};
use mft::chart::{self, Levels, ProposalChart};
use mft::domain::Candle;

const RUNS: usize = 40;

fn stats(name: &str, mut ms: Vec<f64>, bytes: usize) {
    ms.sort_by(f64::total_cmp);
    let median = ms[ms.len() / 2];
    let p90 = ms[(ms.len() * 9) / 10 - 1];
    println!(
        "{name}: runs {} median {median:.2} ms p90 {p90:.2} ms (png {} KiB)",
        ms.len(),
        bytes / 1024
    );
}

fn main() {
    let mut seed = 1u64;
    let mut rnd = move || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((seed >> 33) as f64 / (1u64 << 31) as f64) - 0.5
    };
    let t0 = Utc
        .with_ymd_and_hms(2025, 11, 17, 3, 45, 0)
        .single()
        .expect("valid time");
    let mut p = 1500.0f64;
    let candles: Vec<Candle> = (0..120)
        .map(|i| {
            let day = i / 25;
            let ts = t0 + Duration::days(day as i64) + Duration::minutes(15 * (i % 25) as i64);
            let o = p;
            let c = o + rnd() * 8.0;
            p = c;
            Candle {
                ts,
                open: o,
                high: o.max(c) + rnd().abs() * 3.0,
                low: o.min(c) - rnd().abs() * 3.0,
                close: c,
                volume: (60_000.0 * (1.2 + rnd())) as i64,
                oi: None,
            }
        })
        .collect();
    let closes: Vec<f64> = candles.iter().map(|c| c.close).collect();
    let ema = |n: usize| -> Vec<f64> {
        let k = 2.0 / (n as f64 + 1.0);
        let mut e = closes[0];
        closes
            .iter()
            .enumerate()
            .map(|(i, x)| {
                e = x * k + e * (1.0 - k);
                if i + 1 >= n { e } else { f64::NAN }
            })
            .collect()
    };
    let (fast, slow) = (ema(20), ema(50));
    let rsi: Vec<f64> = (0..closes.len())
        .map(|i| {
            if i < 14 {
                f64::NAN
            } else {
                50.0 + 30.0 * ((i as f64) / 7.0).sin()
            }
        })
        .collect();
    let last = p;
    let input = ProposalChart {
        title: "NSE:INFY · 15minute · BUY proposal".to_string(),
        candles: &candles,
        ema_fast: &fast,
        ema_slow: &slow,
        rsi: &rsi,
        fast_label: "EMA 20".to_string(),
        slow_label: "EMA 50".to_string(),
        levels: Some(Levels {
            entry: last,
            stop: last - 8.0,
            target: last + 16.0,
        }),
    };

    // Warm-up: font registration and allocator.
    let mut bytes = 0;
    for _ in 0..3 {
        bytes = chart::render_proposal(&input, 1280, 800)
            .map(|v| v.len())
            .unwrap_or_else(|e| panic!("render failed: {e}"));
    }
    let times: Vec<f64> = (0..RUNS)
        .map(|_| {
            let t = Instant::now();
            let png = chart::render_proposal(&input, 1280, 800)
                .unwrap_or_else(|e| panic!("render failed: {e}"));
            let ms = t.elapsed().as_secs_f64() * 1e3;
            std::hint::black_box(png);
            ms
        })
        .collect();
    stats("proposal 120 candles 1280x800", times, bytes);

    let points: Vec<_> = (0..500)
        .map(|i| {
            (
                t0 + Duration::days(i),
                1_000_000.0 + 50_000.0 * ((i as f64) / 40.0).sin() + 200.0 * i as f64,
            )
        })
        .collect();
    let bytes = chart::render_equity(&points, "Backtest", 1280, 800)
        .map(|v| v.len())
        .unwrap_or_else(|e| panic!("render failed: {e}"));
    let times: Vec<f64> = (0..RUNS)
        .map(|_| {
            let t = Instant::now();
            let png = chart::render_equity(&points, "Backtest", 1280, 800)
                .unwrap_or_else(|e| panic!("render failed: {e}"));
            let ms = t.elapsed().as_secs_f64() * 1e3;
            std::hint::black_box(png);
            ms
        })
        .collect();
    stats("equity 500 points 1280x800", times, bytes);
}
