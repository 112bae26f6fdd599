//! Exactly once under contention: two approvals of the same proposal racing from two tasks,
//! then Telegram's redelivery of the same tap, over many trials on every test database.
//! 0 duplicate orders is the figure; every trial also ends with the proposal executed once.
//!
//! `.ci/run` runs `MFT_TRIALS` trials (default 200) per backend; the hardening figure is
//!
//! ```sh
//! MFT_TRIALS=10000 TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test \
//!   cargo test --release --test exactly_once -- --nocapture
//! ```
//!
//! `MFT_TRIALS_BACKEND=sqlite` or `=postgres` runs one backend only; with `--nocapture` the
//! running counts are printed every 1,000 trials.

mod support;

use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Duration, TimeZone, Utc};

use mft::app::handler::{Handler, NoScanner};
use mft::clock::{Clock, IST, ManualClock};
use mft::config::Settings;
use mft::domain::{
    Actor, Candle, Command, InstrumentKey, Interval, NewProposal, Paise, Product, Request, Side,
};
use mft::oms::PaperBroker;
use mft::ports::{Decision, Outcome, Reply};
use support::db::test_stores;
use support::notifier::RecordingNotifier;

fn start() -> DateTime<Utc> {
    IST.with_ymd_and_hms(2026, 11, 25, 10, 0, 0)
        .single()
        .expect("valid time")
        .with_timezone(&Utc)
}

/// Limits wide enough that every trial executes: the figure is about duplicates, so a veto
/// would hide what it measures.
fn settings() -> Settings {
    let mut s = Settings::default();
    s.trading.capital = Paise::from_rupees(1_000_000_000);
    s.trading.leverage = 1.0;
    s.risk.max_position_value = Paise::from_rupees(1_000_000_000);
    s.risk.max_orders_per_day = u32::MAX;
    s.risk.max_daily_loss = Paise::from_rupees(1_000_000_000);
    s.risk.max_open_positions = 100;
    s.risk.trading_window = "00:00-23:59".parse().expect("valid");
    s.risk.trading_days = "Mon-Sun".parse().expect("valid");
    // Trials repeat the same order 10 ms apart on purpose.
    s.risk.duplicate_window_seconds = 0;
    s.risk.max_orders_per_minute = u32::MAX;
    s
}

fn trials() -> usize {
    std::env::var("MFT_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200)
}

fn tap(id: i64, user_id: i64) -> Request {
    Request {
        command: Command::Approve { proposal_id: id },
        actor: Actor::Telegram { user_id },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_racing_approvals_and_a_redelivery_place_one_order() {
    let n = trials();
    let only = std::env::var("MFT_TRIALS_BACKEND").ok();
    for db in test_stores().await {
        if only.as_deref().is_some_and(|b| b != db.name) {
            continue;
        }
        let key = InstrumentKey::new("NSE", "INFY");
        let clock = ManualClock::new(start());
        let clock_dyn: Arc<dyn Clock> = Arc::new(clock.clone());
        let settings = Arc::new(settings());
        db.store
            .upsert_candles(
                &key,
                Interval::Minute15,
                &[Candle {
                    ts: start() - Duration::minutes(15),
                    open: 100.0,
                    high: 100.0,
                    low: 100.0,
                    close: 100.0,
                    volume: 1,
                    oi: None,
                }],
            )
            .await
            .expect("a price");
        let broker = Arc::new(PaperBroker::new(
            db.store.clone(),
            settings.clone(),
            clock_dyn.clone(),
        ));
        let handler = Arc::new(Handler::new(
            db.store.clone(),
            settings,
            clock_dyn,
            broker,
            Arc::new(RecordingNotifier::default()),
            Arc::new(NoScanner),
        ));

        let t0 = Instant::now();
        let (mut duplicates, mut executed, mut lost) = (0, 0, 0);
        for trial in 0..n {
            let now = clock.now();
            let p = db
                .store
                .insert_proposal(&NewProposal {
                    key: key.clone(),
                    side: Side::Buy,
                    quantity: 1,
                    entry: Paise::from_rupees(100),
                    stop: Paise::from_rupees(90),
                    target: Paise::from_rupees(120),
                    product: Product::Cnc,
                    confidence: 0.5,
                    rationale: "race".into(),
                    created_at: now,
                    expires_at: now + Duration::minutes(10),
                })
                .await
                .expect("insert")
                .expect("no other pending proposal");
            let (a, b) = (handler.clone(), handler.clone());
            let (ra, rb) = tokio::join!(
                tokio::spawn(async move { a.handle(tap(p.id, 1)).await }),
                tokio::spawn(async move { b.handle(tap(p.id, 2)).await }),
            );
            // Telegram delivers the same tap again (a retried webhook or getUpdates).
            let rc = handler.handle(tap(p.id, 1)).await;
            let replies = [
                ra.expect("task a").expect("approval a"),
                rb.expect("task b").expect("approval b"),
                rc.expect("redelivery"),
            ];
            let decided = replies
                .iter()
                .filter(|r| {
                    matches!(
                        r,
                        Reply::Decision(Decision::Decided {
                            outcome: Outcome::Executed { .. },
                            ..
                        })
                    )
                })
                .count();
            let others_already = replies
                .iter()
                .filter(|r| matches!(r, Reply::Decision(Decision::AlreadyDecided { .. })))
                .count();
            assert_eq!(
                (decided, others_already),
                (1, 2),
                "{}: trial {trial}: {replies:?}",
                db.name
            );
            let orders = db.store.orders_for_proposal(p.id).await.expect("orders");
            match orders.len() {
                1 => executed += 1,
                0 => lost += 1,
                _ => duplicates += 1,
            }
            clock.advance(Duration::milliseconds(10));
            if (trial + 1) % 1000 == 0 {
                println!(
                    "{}: {} trials: {executed} executed, {duplicates} duplicates, {lost} lost ({:.1} s)",
                    db.name,
                    trial + 1,
                    t0.elapsed().as_secs_f64()
                );
            }
        }
        let elapsed = t0.elapsed();
        let pos = db
            .store
            .position(&key, Product::Cnc)
            .await
            .expect("position")
            .expect("open");
        println!(
            "exactly once on {}: {n} trials (2 racing taps + 1 redelivery each): {executed} executed, {duplicates} duplicate orders, {lost} lost; position {} = trials; {:.2} ms per trial",
            db.name,
            pos.quantity,
            elapsed.as_secs_f64() * 1e3 / n as f64
        );
        assert_eq!((duplicates, lost, executed), (0, 0, n), "{}", db.name);
        assert_eq!(pos.quantity, n as i64, "{}", db.name);
    }
}
