//! The operator loop's latency: a button tap (callback update queued in the Telegram fake) to the
//! card edited with the paper fill (the fake receiving editMessageCaption for that card), over
//! 1,000 approvals against the real service (`mft::app::run_with`) on loopback. Prints p50, p99
//! and max per backend: SQLite always, PostgreSQL when BENCH_DATABASE_URL or TEST_DATABASE_URL
//! is set (a fresh database is created on that server and dropped afterwards).
//!
//! The book stays as the risk limits allow in real use (default `max_open_positions` 3): after
//! each timed approval the bench closes that position through a second OMS on the same
//! database, outside the timed span. Only `max_orders_per_day` is raised, since 1,000 entries
//! in one day is the point of the exercise.
//!
//! Run: `cargo bench --bench loop` (release). Target: p99 <= 25 ms.

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use mft::bot::{BotConfig, TelegramNotifier};
use mft::clock::ManualClock;
use mft::config::{ScheduleSettings, Secret, Settings};
use mft::domain::{Candle, InstrumentKey, Interval, NewProposal, Paise, Product, Side};
use mft::ports::{Notifier, ProposalCard};
use mft::store::Store;
use support::telegram_fake::{Call, TelegramFake};
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "123456:BENCH-token";
const OPERATOR: i64 = 4242;
const APPROVALS: usize = 1_000;
const WAIT: Duration = Duration::from_secs(30);

/// 11:00 IST on a Wednesday.
fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 25, 5, 30, 0).unwrap()
}

fn keys() -> Vec<InstrumentKey> {
    (0..APPROVALS)
        .map(|i| InstrumentKey::new("NSE", &format!("BENCH{i:04}")))
        .collect()
}

fn settings(fake: &TelegramFake, db_url: &str, dir: &std::path::Path) -> Settings {
    let mut s = Settings {
        database_url: db_url.to_string(),
        ..Settings::default()
    };
    s.telegram.bot_token = Some(Secret::new(TOKEN));
    s.telegram.chat_id = Some(OPERATOR);
    s.telegram.api_url = fake.url();
    s.status.addr = "127.0.0.1:0".into();
    s.trading.watchlist = keys();
    s.trading.capital = Paise::from_rupees(1_000_000_000);
    s.charts.dir = dir.join("charts").to_string_lossy().into_owned();
    s.schedules = ScheduleSettings {
        scan: String::new(),
        expiry_sweep: String::new(),
        square_off: String::new(),
        login_link: String::new(),
        exit_check: String::new(),
        instruments_refresh: String::new(),
    };
    s.risk.trading_window = "00:00-23:59".parse().expect("valid");
    s.risk.trading_days = "Mon-Sun".parse().expect("valid");
    // Entries and their closing orders: 2,000 orders.
    s.risk.max_orders_per_day = 100_000;
    // Each round trip loses the paper slippage; 1,000 of them must not hit the daily limit.
    s.risk.max_daily_loss = Paise::from_rupees(1_000_000);
    s
}

/// Candles (one closed 15-minute candle per instrument, close 100), 1,000 pending proposals
/// and their photo cards, posted through a TelegramNotifier so the edits go to real fake
/// messages. Returns (proposal id, message id) pairs.
async fn prepare(store: &Store, s: &Settings, dir: &std::path::Path) -> Vec<(i64, i64)> {
    let png = dir.join("card.png");
    image::RgbImage::new(8, 8).save(&png).expect("write a PNG");
    let notifier = TelegramNotifier::from_config(
        &BotConfig::from_settings(&s.telegram).expect("bot config"),
        s.trading.capital,
    )
    .expect("notifier");
    let mut out = Vec::with_capacity(APPROVALS);
    for key in keys() {
        let candle = Candle {
            ts: now() - chrono::Duration::minutes(30),
            open: 100.0,
            high: 101.0,
            low: 99.0,
            close: 100.0,
            volume: 1000,
            oi: None,
        };
        store
            .upsert_candles(&key, Interval::Minute15, &[candle])
            .await
            .expect("candles");
        let p = store
            .insert_proposal(&NewProposal {
                key,
                side: Side::Buy,
                quantity: 10,
                entry: Paise::from_rupees(100),
                stop: Paise::from_rupees(98),
                target: Paise::from_rupees(104),
                product: Product::Mis,
                confidence: 0.6,
                rationale: "bench".into(),
                created_at: now(),
                expires_at: now() + chrono::Duration::days(1),
            })
            .await
            .expect("insert proposal")
            .expect("one pending proposal per instrument");
        store
            .set_proposal_chart(p.id, &png.to_string_lossy())
            .await
            .expect("chart path");
        let message_id = notifier
            .post_proposal(&ProposalCard {
                proposal: p.clone(),
                chart_png: Some(png.clone()),
                capital: s.trading.capital,
            })
            .await
            .expect("post the card");
        store
            .set_proposal_message(p.id, message_id)
            .await
            .expect("message id");
        out.push((p.id, message_id));
    }
    out
}

fn edit_of(calls: &[Call], message_id: i64) -> Option<&Call> {
    calls
        .iter()
        .rev()
        .find(|c| c.method == "editMessageCaption" && c.i64("message_id") == Some(message_id))
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

async fn run(name: &str, db_url: &str) {
    let fake = TelegramFake::start(TOKEN).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let s = settings(&fake, db_url, dir.path());
    let store = Store::connect(db_url).await.expect("open the store");
    let t = Instant::now();
    let cards = prepare(&store, &s, dir.path()).await;
    eprintln!(
        "{name}: prepared {} proposals and cards in {:.1} s",
        cards.len(),
        t.elapsed().as_secs_f64()
    );

    let shutdown = CancellationToken::new();
    let clock = ManualClock::new(now());
    let settings = Arc::new(s);
    let clock: Arc<dyn mft::clock::Clock> = Arc::new(clock);
    // Closes each position after its timed approval (the operator's exits, untimed).
    let closer = mft::oms::Oms::new(
        store.clone(),
        Arc::new(mft::oms::PaperBroker::new(
            store.clone(),
            settings.clone(),
            clock.clone(),
        )),
        mft::risk::RiskEngine::new(settings.clone(), clock.clone()),
        settings.clone(),
        clock.clone(),
    );
    let keys = keys();
    let service = tokio::spawn(mft::app::run_with(
        settings.clone(),
        clock.clone(),
        shutdown.clone(),
    ));
    assert!(
        fake.wait_for(|c| c.iter().any(|c| c.method == "getUpdates"), WAIT)
            .await,
        "{name}: the service did not start polling"
    );

    let mut ms = Vec::with_capacity(cards.len());
    let mut not_executed = Vec::new();
    let t = Instant::now();
    for (&(id, message_id), key) in cards.iter().zip(&keys) {
        // Only the calls after this tap are looked at: the fake's lock is held while a waiter
        // checks, and a long scan would delay the very edit being timed.
        let start = fake.call_count();
        let tapped = Instant::now();
        let cb = fake.inject_callback(OPERATOR, OPERATOR, message_id, &format!("v1:a:{id}"));
        // The tap is answered "Placing…" at once; the card edit with the fill comes after.
        let done = fake
            .wait_for(
                |c| {
                    let c = c.get(start..).unwrap_or_default();
                    c.iter().any(|c| {
                        c.method == "answerCallbackQuery"
                            && c.str("callback_query_id") == Some(cb.as_str())
                    }) && edit_of(c, message_id).is_some()
                },
                WAIT,
            )
            .await;
        assert!(
            done,
            "{name}: tap on proposal #{id} not answered and edited"
        );
        let calls = fake.calls_since(start);
        let edit = edit_of(&calls, message_id)
            .unwrap_or_else(|| panic!("{name}: card of #{id} not edited"));
        ms.push(edit.at.duration_since(tapped).as_secs_f64() * 1000.0);
        let caption = edit.str("caption").unwrap_or("");
        if !caption.contains("\nExecuted") {
            not_executed.push(format!("#{id}: {}", caption.lines().last().unwrap_or("")));
        }
        let book = closer
            .lock_book()
            .await
            .unwrap_or_else(|e| panic!("{name}: book lock: {e}"));
        closer
            .close_instrument(&book, key, "bench: close after the timed approval")
            .await
            .unwrap_or_else(|e| panic!("{name}: closing {key}: {e}"));
        book.release().await;
    }
    let total = t.elapsed();
    shutdown.cancel();
    match tokio::time::timeout(WAIT, service).await {
        Ok(Ok(Ok(()))) => {}
        other => eprintln!("{name}: the service did not stop cleanly: {other:?}"),
    }
    let orders = store
        .count_orders_since(now() - chrono::Duration::days(1))
        .await
        .unwrap_or(0);
    store.close().await;

    let mean = ms.iter().sum::<f64>() / ms.len() as f64;
    let mut sorted = ms.clone();
    sorted.sort_by(f64::total_cmp);
    let first: Vec<f64> = ms[..100].to_vec();
    let last: Vec<f64> = ms[ms.len() - 100..].to_vec();
    let avg = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    println!(
        "loop {name}: {} approvals, tap -> card edited with the paper fill: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, mean {:.2} ms (first 100 mean {:.2}, last 100 mean {:.2}); {} orders (entries and closing orders); {} not executed; wall {:.1} s",
        ms.len(),
        pct(&sorted, 0.50),
        pct(&sorted, 0.99),
        sorted[sorted.len() - 1],
        mean,
        avg(&first),
        avg(&last),
        orders,
        not_executed.len(),
        total.as_secs_f64()
    );
    for v in not_executed.iter().take(5) {
        println!("  not executed: {v}");
    }
    // The figure is the execution path's: a veto or a failure is a much shorter path, so a
    // run where any approval did not execute measures something else and must not pass.
    assert!(
        not_executed.is_empty(),
        "loop {name}: {} of {} approvals were not executed (first: {}); the latency above is not the execution path's",
        not_executed.len(),
        ms.len(),
        not_executed.first().map(String::as_str).unwrap_or("")
    );
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("bench.db").display());
        run("sqlite", &url).await;
        let admin = std::env::var("BENCH_DATABASE_URL")
            .or_else(|_| std::env::var("TEST_DATABASE_URL"))
            .ok()
            .filter(|u| !u.trim().is_empty());
        if let Some(admin) = admin {
            let (url, db) = support::db::create_pg_database(&admin).await;
            run("postgres", &url).await;
            support::db::drop_pg_database(&admin, &db).await;
        } else {
            println!("loop postgres: skipped (set BENCH_DATABASE_URL or TEST_DATABASE_URL)");
        }
    });
}
