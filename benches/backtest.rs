//! `cargo bench --bench backtest`: the rules-only replay (streaming rule analyst, sizing, risk
//! engine on every order, simulated fills with Zerodha charges, equity at every bar) on
//! synthetic 1-minute bars.
//!
//! 1. bars/s on 1,000,000 bars of one instrument (median of 5 runs; target >= 1,000,000);
//! 2. linearity: time per bar with 1, 2, 4 and 8 instruments of 250,000 bars each (ratio to one);
//! 3. peak RSS of a whole `backtest::run` (SQLite store read, replay, metrics, report files) on 10
//!    instruments x one year of 1-minute bars (93,750 each), measured in a child process
//!    (VmHWM; target <= 200 MB).
//!
//! backtrader on the same bars, measured the same way (bars / wall time of the run):
//! `python3 scripts/backtrader_compare.py FILE.csv --bench` (see the README).

use std::sync::atomic::AtomicBool;
use std::time::Instant;

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use mft::backtest::{self, Control, Decider, Series};
use mft::clock::IST;
use mft::config::Settings;
use mft::domain::{Candle, InstrumentKey, Interval, Paise};

/// 1-minute bars of a random walk, 375 per weekday session from 09:15 IST.
fn bars(n: usize, seed: u64) -> Vec<Candle> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut rnd = move || {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((x >> 11) as f64 / (1u64 << 53) as f64) - 0.5
    };
    let mut day = NaiveDate::from_ymd_opt(2022, 1, 3).unwrap();
    let mut out = Vec::with_capacity(n);
    let mut price = 1000.0f64;
    let mut minute = 0;
    let open_of = |d: NaiveDate| -> DateTime<Utc> {
        IST.from_local_datetime(&d.and_hms_opt(9, 15, 0).unwrap())
            .unwrap()
            .with_timezone(&Utc)
    };
    let mut t0 = open_of(day);
    while out.len() < n {
        if minute == 375 {
            minute = 0;
            loop {
                day = day.succ_opt().unwrap();
                if chrono::Datelike::weekday(&day).num_days_from_monday() < 5 {
                    break;
                }
            }
            t0 = open_of(day);
        }
        let open = price;
        let close = (price * (1.0 + rnd() * 0.004)).max(1.0);
        let high = open.max(close) * (1.0 + rnd().abs() * 0.001);
        let low = open.min(close) * (1.0 - rnd().abs() * 0.001);
        out.push(Candle {
            ts: t0 + Duration::minutes(minute),
            open: (open * 20.0).round() / 20.0,
            high: (high * 20.0).round() / 20.0,
            low: (low * 20.0).round() / 20.0,
            close: (close * 20.0).round() / 20.0,
            volume: 1000,
            oi: None,
        });
        price = close;
        minute += 1;
    }
    out
}

fn settings(keys: &[InstrumentKey]) -> Settings {
    let mut s = Settings::default();
    s.trading.watchlist = keys.to_vec();
    s.trading.interval = Interval::Minute;
    s.risk.max_orders_per_day = 1000;
    s.risk.max_open_positions = 20;
    s.risk.max_daily_loss = Paise::from_rupees(50_000);
    s.backtest.initial_cash = Paise::from_rupees(1_000_000);
    s.trading.capital = s.backtest.initial_cash;
    s
}

fn replay(s: &Settings, series: &[Series]) -> (f64, backtest::Outcome) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let cancel = AtomicBool::new(false);
    let mut progress = |_: u64, _: u64| {};
    let t = Instant::now();
    let out = rt
        .block_on(backtest::engine::replay(
            s,
            Interval::Minute,
            series,
            &Decider::Rules,
            Control {
                progress: &mut progress,
                cancel: &cancel,
            },
        ))
        .unwrap();
    (t.elapsed().as_secs_f64(), out)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn series(n_inst: usize, bars_each: usize) -> Vec<Series> {
    (0..n_inst)
        .map(|i| Series {
            key: InstrumentKey::new("NSE", &format!("SYM{i}")),
            candles: bars(bars_each, i as u64 + 7),
            tick: None,
        })
        .collect()
}

fn status_kb(field: &str) -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// The child: a whole run from a SQLite store, then VmHWM.
fn rss_child() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("bt.db").display());
        let store = mft::store::Store::connect(&url).await.unwrap();
        let keys: Vec<InstrumentKey> = (0..10)
            .map(|i| InstrumentKey::new("NSE", &format!("SYM{i}")))
            .collect();
        for (i, k) in keys.iter().enumerate() {
            let c = bars(93_750, i as u64 + 7);
            store.upsert_candles(k, Interval::Minute, &c).await.unwrap();
        }
        let before = status_kb("VmHWM:");
        let s = settings(&keys);
        let spec = backtest::Spec {
            symbols: keys.clone(),
            interval: Interval::Minute,
            from: NaiveDate::from_ymd_opt(2022, 1, 1).unwrap(),
            to: NaiveDate::from_ymd_opt(2023, 12, 31).unwrap(),
            out: Some(dir.path().join("report")),
            llm: backtest::LlmMode::Off,
        };
        let cancel = AtomicBool::new(false);
        let mut progress = |_: u64, _: u64| {};
        let t = Instant::now();
        let f = backtest::run(&store, &s, &spec, &mut progress, &cancel)
            .await
            .unwrap();
        let secs = t.elapsed().as_secs_f64();
        println!(
            "rss: 10 instruments x 93,750 1-minute bars ({} bars, {} trades) whole run from SQLite in {:.2} s: VmHWM {:.1} MB (after loading the store: {:.1} MB; target <= 200 MB)",
            f.outcome.bars,
            f.outcome.trades.len(),
            secs,
            status_kb("VmHWM:") / 1024.0,
            before / 1024.0
        );
    });
}

fn main() {
    if std::env::var_os("MFT_BENCH_BACKTEST_RSS").is_some() {
        rss_child();
        return;
    }
    // 1. One instrument, 1M bars.
    let one = series(1, 1_000_000);
    let s = settings(&[one[0].key.clone()]);
    let mut times = Vec::new();
    let mut trades = 0;
    for _ in 0..5 {
        let (secs, out) = replay(&s, &one);
        trades = out.trades.len();
        times.push(secs);
    }
    let t1 = median(times);
    println!(
        "backtest replay, rules only, 1 instrument x 1,000,000 1-minute bars: median {:.3} s = {:.0} bars/s ({trades} trades; target >= 1,000,000 bars/s)",
        t1,
        1_000_000.0 / t1
    );

    // 1b. The backtrader-agreement strategy (SMA10/SMA30 CrossOver, exit on the cross, 10
    // shares, no costs) on the same bars: what `scripts/backtrader_compare.py --bench` runs.
    let mut sma = s.clone();
    sma.strategy.ma = mft::config::MaKind::Sma;
    sma.strategy.fast = 10;
    sma.strategy.slow = 30;
    sma.strategy.rsi_min = 0.0;
    sma.strategy.rsi_max = 100.0;
    sma.strategy.exit = mft::config::ExitRule::Cross;
    sma.backtest.fixed_quantity = 10;
    sma.backtest.costs = mft::config::BacktestCosts::None;
    sma.trading.product = mft::domain::Product::Cnc;
    sma.risk.trading_window = "09:15-15:30".parse().expect("valid");
    sma.risk.max_orders_per_day = 3000;
    let mut times = Vec::new();
    for _ in 0..5 {
        let (secs, out) = replay(&sma, &one);
        trades = out.trades.len();
        times.push(secs);
    }
    let t = median(times);
    println!(
        "  SMA10/SMA30 cross, 10 shares (the backtrader comparison): median {:.3} s = {:.0} bars/s ({trades} trades)",
        t,
        1_000_000.0 / t
    );

    // 2. Linearity in instruments.
    let per = 250_000;
    let mut base = 0.0;
    for n in [1usize, 2, 4, 8] {
        let ser = series(n, per);
        let keys: Vec<_> = ser.iter().map(|x| x.key.clone()).collect();
        let s = settings(&keys);
        let t = median((0..3).map(|_| replay(&s, &ser).0).collect());
        let per_bar = t / (n * per) as f64;
        if n == 1 {
            base = per_bar;
        }
        println!(
            "  {n} instrument(s) x {per} bars: median {t:.3} s, {:.0} ns/bar, {:.0} bars/s, time per bar / 1 instrument = {:.2}",
            per_bar * 1e9,
            1.0 / per_bar,
            per_bar / base
        );
    }

    // 3. Peak RSS in a child process.
    match std::env::current_exe().and_then(|exe| {
        std::process::Command::new(exe)
            .env("MFT_BENCH_BACKTEST_RSS", "1")
            .arg("--bench")
            .status()
    }) {
        Ok(st) if st.success() => {}
        other => println!("rss child failed: {other:?}"),
    }
}
