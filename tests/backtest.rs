//! Backtest mode end to end on the stored RELIANCE and INFY daily series: trade-for-trade
//! agreement with backtrader 1.9.78 (fixtures made by scripts/backtrader_compare.py), the
//! look-ahead test, bad input, --llm record/replay, on SQLite and PostgreSQL.

// Paise literals are grouped as rupees_paise.
#![allow(clippy::inconsistent_digit_grouping)]

mod support;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use chrono::NaiveDate;
use mft::backtest::{self, BacktestError, Decider, LlmMode, Series, Spec};
use mft::config::{BacktestCosts, BacktestFill, ExitRule, MaKind, Settings};
use mft::domain::{InstrumentKey, Interval, Paise, Signal};
use mft::store::Store;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The agreement settings of issue 10, item 4.
fn settings(symbol: &str) -> Settings {
    let mut s = Settings::default();
    s.trading.watchlist = vec![symbol.parse().unwrap()];
    s.strategy.exit = ExitRule::Cross;
    s.strategy.ma = MaKind::Sma;
    s.strategy.fast = 10;
    s.strategy.slow = 30;
    s.strategy.rsi_min = 0.0;
    s.strategy.rsi_max = 100.0;
    s.backtest.fixed_quantity = 10;
    s.backtest.fill = BacktestFill::NextOpen;
    s.backtest.costs = BacktestCosts::None;
    s.backtest.slippage_bps = 0.0;
    s.backtest.initial_cash = Paise::from_rupees(100_000);
    s.risk.trading_window = "09:15-15:30".parse().expect("valid");
    // NSE's Muhurat session of 2023-11-12 was a Sunday.
    s.risk.trading_days = "Mon-Sun".parse().expect("valid");
    s.risk.max_price_deviation_pct = 100.0;
    s.risk.max_position_value = Paise::from_rupees(10_000_000);
    s.risk.max_daily_loss = Paise::from_rupees(100_000);
    s
}

async fn import(store: &Store, symbol: &str, file: &str) {
    let key: InstrumentKey = symbol.parse().unwrap();
    mft::market::import_csv(store, &fixture(file), &key, Interval::Day)
        .await
        .unwrap();
}

fn spec(symbol: &str, out: &Path, llm: LlmMode) -> Spec {
    Spec {
        symbols: vec![symbol.parse().unwrap()],
        interval: Interval::Day,
        from: NaiveDate::from_ymd_opt(2020, 1, 1).unwrap(),
        to: NaiveDate::from_ymd_opt(2025, 12, 31).unwrap(),
        out: Some(out.to_path_buf()),
        llm,
    }
}

async fn run(store: &Store, s: &Settings, sp: &Spec) -> Result<backtest::Finished, BacktestError> {
    let cancel = AtomicBool::new(false);
    let mut progress = |_: u64, _: u64| {};
    backtest::run(store, s, sp, &mut progress, &cancel).await
}

/// (entry date, exit date, entry price, exit price) from backtrader's trades.
fn expected(file: &str) -> Vec<(String, String, String, String)> {
    let text = std::fs::read_to_string(fixture(file)).unwrap();
    text.lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[0].into(), f[1].into(), f[2].into(), f[3].into())
        })
        .collect()
}

fn assert_agrees(f: &backtest::Finished, file: &str, final_equity: Paise, open_entry: &str) {
    let want = expected(file);
    let got: Vec<(String, String, String, String)> = f
        .outcome
        .trades
        .iter()
        .map(|t| {
            let d = |x: chrono::DateTime<chrono::Utc>| {
                x.with_timezone(&mft::clock::IST).date_naive().to_string()
            };
            (
                d(t.entry_time),
                d(t.exit_time),
                t.entry_price.to_decimal_string(),
                t.exit_price.to_decimal_string(),
            )
        })
        .collect();
    assert_eq!(got, want, "trade for trade against backtrader ({file})");
    assert_eq!(f.outcome.open.len(), 1, "one open position at the end");
    assert_eq!(f.outcome.open[0].quantity, 10);
    assert_eq!(
        f.outcome.open[0].entry_price.to_decimal_string(),
        open_entry
    );
    assert_eq!(f.outcome.final_equity, final_equity);
    assert_eq!(
        f.metrics.final_balance,
        final_equity.as_rupees_f64(),
        "report's final equity marks the open position at the last close"
    );
}

#[tokio::test]
async fn agrees_with_backtrader_trade_for_trade_and_reports() {
    for db in support::db::test_stores().await {
        let store = &db.store;
        import(
            store,
            "NSE:RELIANCE",
            "ohlcv/nse_RELIANCE_daily_2020-2025.csv",
        )
        .await;
        import(store, "NSE:INFY", "ohlcv/nse_INFY_daily_2020-2025.csv").await;
        let dir = tempfile::tempdir().unwrap();

        let out = dir.path().join("rel");
        let f = run(
            store,
            &settings("NSE:RELIANCE"),
            &spec("NSE:RELIANCE", &out, LlmMode::Off),
        )
        .await
        .unwrap();
        assert_eq!(f.outcome.trades.len(), 20, "{}", db.name);
        assert_agrees(
            &f,
            "backtest/reliance_sma10_30_backtrader.csv",
            Paise(101_753_00),
            "1414.90",
        );

        // The report files.
        let csv = std::fs::read_to_string(out.join("trades.csv")).unwrap();
        assert_eq!(
            csv.lines().next().unwrap(),
            "entry_time,exit_time,symbol,side,quantity,entry_price,exit_price,pnl,charges,bars_held,exit_reason"
        );
        assert_eq!(csv.lines().count(), 21);
        assert!(
            csv.lines()
                .nth(1)
                .unwrap()
                .starts_with("2020-12-14T09:15:00+05:30,2021-01-11T09:15:00+05:30,NSE:RELIANCE,BUY,10,957.00,924.00,-330.00,0.00,"),
            "{csv}"
        );
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap())
                .unwrap();
        assert_eq!(json["metrics"]["total_trades"], 20);
        assert_eq!(json["metrics"]["final_balance"], 101753.0);
        assert_eq!(json["metrics"]["total_charges"], 0.0);
        let png = std::fs::read(out.join("equity.png")).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        let html = std::fs::read_to_string(out.join("report.html")).unwrap();
        assert!(html.contains("data:image/png;base64,"));
        assert!(!html.contains("src=\"http") && !html.contains("href=\"http"));
        let text = serde_json::to_string(&json).unwrap();
        assert!(!text.contains("NaN") && !text.contains("inf"));

        // The run is complete and its trades are in the trade log under its id only.
        let stored = store.backtest_run(&f.run_id).await.unwrap().unwrap();
        assert_eq!(stored.status, "complete");
        let log = store.backtest_trade_log(&f.run_id).await.unwrap();
        assert_eq!(log.iter().filter(|r| r.kind == "backtest_fill").count(), 41);
        assert!(
            store.trade_log(100).await.unwrap().is_empty(),
            "paper/live trade log stays free of backtest rows"
        );

        // A second real series.
        let f = run(
            store,
            &settings("NSE:INFY"),
            &spec("NSE:INFY", &dir.path().join("infy"), LlmMode::Off),
        )
        .await
        .unwrap();
        assert_eq!(f.outcome.trades.len(), 23);
        assert_agrees(
            &f,
            "backtest/infy_sma10_30_backtrader.csv",
            Paise(103_975_00),
            "1500.00",
        );
    }
}

#[tokio::test]
async fn bad_input_is_refused_and_stores_nothing() {
    for db in support::db::test_stores().await {
        let store = &db.store;
        import(
            store,
            "NSE:RELIANCE",
            "ohlcv/nse_RELIANCE_daily_2020-2025.csv",
        )
        .await;
        let dir = tempfile::tempdir().unwrap();
        let s = settings("NSE:RELIANCE");
        let base = spec("NSE:RELIANCE", &dir.path().join("x"), LlmMode::Off);
        let d = |y, m, dd| NaiveDate::from_ymd_opt(y, m, dd).unwrap();

        let e = run(
            store,
            &s,
            &spec("NSE:NOPE", &dir.path().join("x"), LlmMode::Off),
        )
        .await
        .unwrap_err();
        assert!(matches!(e, BacktestError::UnknownSymbol { .. }), "{e}");
        assert!(e.to_string().contains("unknown symbol NSE:NOPE"), "{e}");

        let e = run(
            store,
            &s,
            &Spec {
                from: d(2019, 1, 1),
                to: d(2019, 12, 31),
                ..base.clone()
            },
        )
        .await
        .unwrap_err();
        assert!(matches!(e, BacktestError::EmptyRange { .. }), "{e}");
        assert!(e.to_string().contains("stored: 2020-10-01 to"), "{e}");

        let e = run(
            store,
            &s,
            &Spec {
                from: d(2024, 1, 2),
                to: d(2024, 1, 1),
                ..base.clone()
            },
        )
        .await
        .unwrap_err();
        assert!(matches!(e, BacktestError::FromAfterTo { .. }), "{e}");

        let e = run(
            store,
            &s,
            &Spec {
                interval: Interval::Minute5,
                ..base.clone()
            },
        )
        .await
        .unwrap_err();
        assert!(matches!(e, BacktestError::NoDataForInterval { .. }), "{e}");
        assert!(e.to_string().contains("stored intervals: day"), "{e}");

        let e = run(
            store,
            &s,
            &Spec {
                from: d(2024, 1, 1),
                to: d(2024, 1, 31),
                ..base.clone()
            },
        )
        .await
        .unwrap_err();
        assert!(matches!(e, BacktestError::WarmUp { need: 31, .. }), "{e}");

        assert_eq!(store.count_backtest_log_rows().await.unwrap(), 0);
        assert!(!dir.path().join("x").exists());
    }
}

#[tokio::test]
async fn interrupted_run_is_never_complete() {
    let db = support::db::sqlite_store().await;
    let store = &db.store;
    import(
        store,
        "NSE:RELIANCE",
        "ohlcv/nse_RELIANCE_daily_2020-2025.csv",
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let cancel = AtomicBool::new(true);
    let mut progress = |_: u64, _: u64| {};
    let e = backtest::run(
        store,
        &settings("NSE:RELIANCE"),
        &spec("NSE:RELIANCE", &dir.path().join("x"), LlmMode::Off),
        &mut progress,
        &cancel,
    )
    .await;
    // Cancelled (Ctrl-C) before the first bar: the run is failed, nothing is logged, no report.
    assert!(matches!(e, Err(BacktestError::Cancelled)), "{:?}", e.err());
    assert_eq!(store.count_backtest_log_rows().await.unwrap(), 0);
    assert!(!dir.path().join("x/report.json").exists());
}

#[tokio::test]
async fn llm_record_then_replay_is_bit_identical() {
    for db in support::db::test_stores().await {
        let store = &db.store;
        import(
            store,
            "NSE:RELIANCE",
            "ohlcv/nse_RELIANCE_daily_2020-2025.csv",
        )
        .await;
        let dir = tempfile::tempdir().unwrap();
        let mut s = settings("NSE:RELIANCE");
        // The analyst sees a lookback window per bar; keep it long enough for SMA30.
        s.trading.lookback_bars = 60;
        let sp = |llm, name: &str| Spec {
            from: NaiveDate::from_ymd_opt(2023, 1, 1).unwrap(),
            to: NaiveDate::from_ymd_opt(2023, 12, 31).unwrap(),
            ..spec("NSE:RELIANCE", &dir.path().join(name), llm)
        };
        // Replay before anything is recorded fails naming the instrument and the bar.
        let e = run(store, &s, &sp(LlmMode::Replay, "r0"))
            .await
            .unwrap_err();
        let text = e.to_string();
        assert!(text.contains("NSE:RELIANCE"), "{text}");
        assert!(text.contains("no recorded exchange"), "{text}");
        assert!(text.contains("2023-01-"), "{text}");

        let rec = run(store, &s, &sp(LlmMode::Record, "rec")).await.unwrap();
        let rep = run(store, &s, &sp(LlmMode::Replay, "rep")).await.unwrap();
        assert!(!rec.outcome.trades.is_empty());
        assert_eq!(rec.outcome.trades, rep.outcome.trades);
        assert_eq!(rec.outcome.decisions, rep.outcome.decisions);
        assert_eq!(rec.outcome.final_equity, rep.outcome.final_equity);
        assert_eq!(
            std::fs::read(dir.path().join("rec/trades.csv")).unwrap(),
            std::fs::read(dir.path().join("rep/trades.csv")).unwrap()
        );
        // With SMAs over a long enough window the trait path agrees with the streaming rules.
        let off = run(store, &s, &sp(LlmMode::Off, "off")).await.unwrap();
        assert_eq!(off.outcome.trades, rec.outcome.trades);
    }
}

/// Changing every candle after bar t changes no decision made at or before t.
#[tokio::test]
async fn no_look_ahead() {
    let db = support::db::sqlite_store().await;
    import(
        &db.store,
        "NSE:RELIANCE",
        "ohlcv/nse_RELIANCE_daily_2020-2025.csv",
    )
    .await;
    let key: InstrumentKey = "NSE:RELIANCE".parse().unwrap();
    let candles = db
        .store
        .candles(&key, Interval::Day, None, None)
        .await
        .unwrap();
    let mut s = backtest::run_settings(&settings("NSE:RELIANCE"), std::slice::from_ref(&key));
    s.strategy.exit = ExitRule::Bracket;
    s.strategy.rsi_min = 40.0;
    s.strategy.rsi_max = 80.0;
    s.strategy.ma = MaKind::Ema;
    let replay = |candles: Vec<mft::domain::Candle>| {
        let s = s.clone();
        let key = key.clone();
        async move {
            let cancel = AtomicBool::new(false);
            let mut progress = |_: u64, _: u64| {};
            backtest::engine::replay(
                &s,
                Interval::Day,
                &[Series {
                    key,
                    candles,
                    tick: None,
                }],
                &Decider::Rules,
                backtest::Control {
                    progress: &mut progress,
                    cancel: &cancel,
                },
            )
            .await
            .unwrap()
        }
    };
    let base = replay(candles.clone()).await;
    assert!(base.decisions.len() > 10);
    for t in [100usize, 400, 800, 1100] {
        let mut changed = candles.clone();
        for (k, c) in changed.iter_mut().enumerate().skip(t + 1) {
            let f = if k % 2 == 0 { 1.3 } else { 0.7 };
            c.open *= f;
            c.high *= f * 1.1;
            c.low *= f * 0.9;
            c.close *= f;
        }
        let other = replay(changed).await;
        let upto =
            |d: &[backtest::engine::Decision]| -> Vec<(chrono::DateTime<chrono::Utc>, String)> {
                d.iter()
                    .filter(|x| x.candle_ts <= candles[t].ts)
                    .map(|x| {
                        let kind = match &x.signal {
                            Signal::Entry(v) => format!("entry {} {}", v.side, v.entry),
                            Signal::Exit { reason, .. } => format!("exit {reason}"),
                            Signal::None { reason, .. } => format!("none {reason}"),
                        };
                        (x.candle_ts, kind)
                    })
                    .collect()
            };
        assert_eq!(upto(&base.decisions), upto(&other.decisions), "t = {t}");
        // Trades closed before t+1 are the same too.
        let closed = |o: &backtest::Outcome| -> Vec<backtest::Trade> {
            o.trades
                .iter()
                .filter(|x| x.exit_time <= candles[t].ts)
                .cloned()
                .collect()
        };
        assert_eq!(closed(&base), closed(&other), "t = {t}");
    }
}

/// `/backtest NSE:INFY 1y` through the one handler: started in the background, one at a time,
/// bad input answered at once, the result as an alert with the equity chart.
#[tokio::test]
async fn backtest_command_runs_in_the_background_one_at_a_time() {
    use mft::app::handler::{Handler, NoScanner};
    use mft::clock::ManualClock;
    use mft::domain::{Actor, Command, Request};
    use mft::oms::PaperBroker;
    use mft::ports::{Alert, Reply};
    use std::sync::Arc;

    let db = support::db::sqlite_store().await;
    let store = db.store.clone();
    import(&store, "NSE:INFY", "ohlcv/nse_INFY_daily_2020-2025.csv").await;
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings("NSE:INFY");
    s.backtest.costs = BacktestCosts::Zerodha;
    s.charts.dir = dir.path().join("charts").display().to_string();
    let settings = Arc::new(s);
    let clock = ManualClock::new(
        chrono::TimeZone::with_ymd_and_hms(&chrono::Utc, 2025, 9, 30, 12, 0, 0).unwrap(),
    );
    let clock: Arc<dyn mft::clock::Clock> = Arc::new(clock);
    let notifier = Arc::new(support::notifier::RecordingNotifier::default());
    let handler = Handler::new(
        store.clone(),
        settings.clone(),
        clock.clone(),
        Arc::new(PaperBroker::new(store.clone(), settings.clone(), clock)),
        notifier.clone(),
        Arc::new(NoScanner),
    );
    let ask = |command: Command| Request {
        command,
        actor: Actor::Telegram { user_id: 1 },
    };
    let key: InstrumentKey = "NSE:INFY".parse().unwrap();

    // Bad input is answered at once and starts nothing.
    let e = handler
        .handle(ask(Command::Backtest {
            key: "NSE:NOPE".parse().unwrap(),
            span: "1y".into(),
        }))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("unknown symbol NSE:NOPE"), "{e}");
    let e = handler
        .handle(ask(Command::Backtest {
            key: key.clone(),
            span: "1q".into(),
        }))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("30d, 6m, 1y"), "{e}");

    let first = handler
        .handle(ask(Command::Backtest {
            key: key.clone(),
            span: "1y".into(),
        }))
        .await;
    let second = handler
        .handle(ask(Command::Backtest {
            key: key.clone(),
            span: "1y".into(),
        }))
        .await;
    assert!(
        matches!(
            first,
            Ok(Reply::BacktestStarted {
                interval: Interval::Day,
                ..
            })
        ),
        "{first:?}"
    );
    let busy = match second.unwrap() {
        Reply::BacktestBusy { running } => {
            assert!(running.contains("NSE:INFY day"), "{running}");
            true
        }
        // The first one may already be done on a fast machine.
        Reply::BacktestStarted { .. } => false,
        other => panic!("{other:?}"),
    };
    let mut done = None;
    for _ in 0..200 {
        if let Some(a) = notifier
            .alerts()
            .into_iter()
            .find(|a| matches!(a, Alert::BacktestDone { .. } | Alert::BacktestFailed { .. }))
        {
            done = Some(a);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    match done.expect("a backtest result alert") {
        Alert::BacktestDone {
            summary, chart_png, ..
        } => {
            assert!(summary.contains("Sharpe (daily, √252, rf 0)"), "{summary}");
            let chart = chart_png.unwrap();
            assert!(
                chart.starts_with(dir.path().join("charts/backtests")),
                "{chart:?}"
            );
            let png = std::fs::read(chart).unwrap();
            assert_eq!(&png[..4], b"\x89PNG");
        }
        other => panic!("{other:?}"),
    }
    let Reply::Status(st) = handler.handle(ask(Command::Status)).await.unwrap() else {
        panic!("status")
    };
    // Finished: the slot is free again (the slot is cleared before the alert is sent).
    if busy {
        assert_eq!(st.backtest, None);
    }
}

/// 15-minute candles from 09:15 IST on 2024-01-01 (a Monday), high/low = max/min(open, close) ± 1.
fn intraday(bars: &[(f64, f64)]) -> Vec<mft::domain::Candle> {
    let t0 = chrono::TimeZone::with_ymd_and_hms(&chrono::Utc, 2024, 1, 1, 3, 45, 0).unwrap();
    bars.iter()
        .enumerate()
        .map(|(i, &(open, close))| mft::domain::Candle {
            ts: t0 + chrono::Duration::minutes(15 * i as i64),
            open,
            high: open.max(close) + 1.0,
            low: open.min(close) - 1.0,
            close,
            volume: 1000,
            oi: None,
        })
        .collect()
}

async fn replay_intraday(s: &Settings, candles: Vec<mft::domain::Candle>) -> backtest::Outcome {
    let key: InstrumentKey = "NSE:INFY".parse().unwrap();
    let s = backtest::run_settings(s, std::slice::from_ref(&key));
    let cancel = AtomicBool::new(false);
    let mut progress = |_: u64, _: u64| {};
    backtest::engine::replay(
        &s,
        Interval::Minute15,
        &[Series {
            key,
            candles,
            tick: None,
        }],
        &Decider::Rules,
        backtest::Control {
            progress: &mut progress,
            cancel: &cancel,
        },
    )
    .await
    .unwrap()
}

fn intraday_settings() -> Settings {
    let mut s = settings("NSE:INFY");
    s.strategy.fast = 3;
    s.strategy.slow = 5;
    s.strategy.atr_period = 3;
    s.strategy.rsi_period = 3;
    s.strategy.exit = ExitRule::Bracket;
    s.trading.product = mft::domain::Product::Mis;
    s.backtest.costs = BacktestCosts::Zerodha;
    s
}

/// Falls, turns up (SMA3 crosses SMA5), then gaps down through the stop: the stop fills at the
/// gap's open, and the trade's P&L is net of Zerodha's MIS charges.
#[tokio::test]
async fn bracket_stop_fills_at_the_gap_open_net_of_charges() {
    let mut bars: Vec<(f64, f64)> = (0..8)
        .map(|i| (100.0 - i as f64, 99.0 - i as f64))
        .collect();
    bars.extend([(92.0, 93.0), (93.0, 94.0), (94.0, 95.0), (95.0, 96.0)]);
    bars.extend([(80.0, 79.0), (79.0, 78.0)]);
    let out = replay_intraday(&intraday_settings(), intraday(&bars)).await;
    assert_eq!(out.trades.len(), 1, "{:?}", out.trades);
    let t = &out.trades[0];
    assert_eq!(t.exit_reason, "stop");
    assert_eq!(
        t.exit_price,
        Paise(8000),
        "gapped through: filled at the open"
    );
    assert_eq!(t.side, mft::domain::Side::Buy);
    let gross = (t.exit_price - t.entry_price) * t.quantity;
    assert!(t.charges > Paise::ZERO);
    assert_eq!(t.pnl, gross - t.charges);
    assert_eq!(out.total_charges, t.charges);
    assert_eq!(
        out.final_equity,
        Paise::from_rupees(100_000) + t.pnl,
        "cash after a closed round trip"
    );
}

/// An MIS position still open at 15:15 IST is squared off at that bar's open.
#[tokio::test]
async fn mis_positions_are_squared_off_at_15_15() {
    let mut bars: Vec<(f64, f64)> = (0..8)
        .map(|i| (100.0 - i as f64, 99.0 - i as f64))
        .collect();
    bars.extend([(92.0, 93.0), (93.0, 94.0), (94.0, 95.0), (95.0, 96.0)]);
    // Up 0.5 a bar until 15:15 (bar 24) and beyond: no stop, no target (ATR 2, target +8).
    let mut p = 96.0;
    while bars.len() < 26 {
        bars.push((p, p + 0.25));
        p += 0.25;
    }
    let candles = intraday(&bars);
    let out = replay_intraday(&intraday_settings(), candles.clone()).await;
    assert_eq!(out.trades.len(), 1, "{:?}", out.trades);
    let t = &out.trades[0];
    assert_eq!(t.exit_reason, "square-off");
    assert_eq!(t.exit_time, candles[24].ts);
    assert_eq!(
        t.exit_time
            .with_timezone(&mft::clock::IST)
            .format("%H:%M")
            .to_string(),
        "15:15"
    );
    assert_eq!(t.exit_price, Paise::from_rupees_f64(candles[24].open));
}

/// 1-minute bars on a 0.05 grid, where the averages tie exactly now and then: still trade for
/// trade with backtrader (CNC, so no 15:15 square-off).
#[tokio::test]
async fn agrees_with_backtrader_on_minute_bars_with_ties() {
    let db = support::db::sqlite_store().await;
    let store = &db.store;
    let key: InstrumentKey = "NSE:SYN".parse().unwrap();
    mft::market::import_csv(
        store,
        &fixture("ohlcv/synthetic_1min_10k.csv"),
        &key,
        Interval::Minute,
    )
    .await
    .unwrap();
    let mut s = settings("NSE:SYN");
    s.trading.product = mft::domain::Product::Cnc;
    s.risk.max_orders_per_day = 3000;
    let dir = tempfile::tempdir().unwrap();
    let sp = Spec {
        interval: Interval::Minute,
        ..spec("NSE:SYN", &dir.path().join("syn"), LlmMode::Off)
    };
    let f = run(store, &s, &sp).await.unwrap();
    assert_eq!(f.outcome.trades.len(), 200);
    assert_agrees(
        &f,
        "backtest/synthetic_1min_sma10_30_backtrader.csv",
        Paise(100_300_50),
        "1126.55",
    );
}
