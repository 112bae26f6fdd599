//! Money-path regressions (issue 7) on every test database: kills racing across processes
//! (the stress test prints its figures), exits never larger than the position, the book
//! invariant positions = net fills, MODE=live refusing `mft kill`, checked arithmetic and
//! absurd candles, /pause vetoing approvals, and card-post failures.
//!
//! A "process" here is its own Store (own connection pool) and Handler, so only the database's
//! locks can serialize them, as between `mft run` and `mft kill`.

mod support;

use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Duration, TimeZone, Utc};

use mft::app::handler::{Handler, HandlerError};
use mft::app::kill_from_cli;
use mft::clock::{Clock, IST, ManualClock};
use mft::config::{Mode, Settings};
use mft::domain::{
    Actor, Candle, Command, InstrumentKey, Interval, NewProposal, OrderPurpose, OrderRequest,
    OrderType, Paise, Product, Proposal, Request, Side,
};
use mft::oms::PaperBroker;
use mft::ports::{Alert, Decision, Outcome, Reply, ScanError, ScanResult, ScanSummary, Scanner};
use mft::risk::{RiskContext, RiskEngine};
use mft::store::Store;
use support::db::{TestDb, test_stores};
use support::notifier::RecordingNotifier;

/// Wednesday 2026-11-25 at h:m IST.
fn ist(h: u32, m: u32) -> DateTime<Utc> {
    IST.with_ymd_and_hms(2026, 11, 25, h, m, 0)
        .single()
        .expect("valid time")
        .with_timezone(&Utc)
}

fn settings(db: &TestDb) -> Settings {
    let mut s = Settings {
        database_url: db.url.clone(),
        ..Settings::default()
    };
    s.risk.trading_window = "00:00-23:59".parse().expect("valid");
    s.risk.trading_days = "Mon-Sun".parse().expect("valid");
    s.risk.max_open_positions = 100;
    s.risk.max_orders_per_day = 3000;
    s.risk.max_position_value = Paise::from_rupees(10_000_000);
    s.risk.max_daily_loss = Paise::from_rupees(100_000);
    s.trading.capital = Paise::from_rupees(10_000_000);
    s.trading.watchlist = (0..POSITIONS).map(key).collect();
    s
}

struct NoopScanner;

#[async_trait::async_trait]
impl Scanner for NoopScanner {
    async fn scan(
        &self,
        _only: Option<&InstrumentKey>,
        _open: &[InstrumentKey],
    ) -> Result<ScanResult, ScanError> {
        Ok(ScanResult {
            summary: ScanSummary {
                id: 1,
                started_at: Utc::now(),
                finished_at: None,
                instruments: 0,
                proposals: 0,
                errors: 0,
                stale: Vec::new(),
            },
            proposals: Vec::new(),
            exits: Vec::new(),
            errors: Vec::new(),
        })
    }
}

/// One "process": its own store (pool) and handler.
struct Proc {
    store: Store,
    handler: Arc<Handler>,
    notifier: Arc<RecordingNotifier>,
    clock: ManualClock,
    settings: Arc<Settings>,
}

async fn process(db: &TestDb, settings: &Settings, clock: &ManualClock) -> Proc {
    let store = Store::connect(&db.url).await.expect("connect");
    let settings = Arc::new(settings.clone());
    let clock_dyn: Arc<dyn Clock> = Arc::new(clock.clone());
    let notifier = Arc::new(RecordingNotifier::default());
    let broker = Arc::new(PaperBroker::new(
        store.clone(),
        settings.clone(),
        clock_dyn.clone(),
    ));
    let handler = Arc::new(Handler::new(
        store.clone(),
        settings.clone(),
        clock_dyn,
        broker,
        notifier.clone(),
        Arc::new(NoopScanner),
    ));
    Proc {
        store,
        handler,
        notifier,
        clock: clock.clone(),
        settings,
    }
}

fn key(i: usize) -> InstrumentKey {
    InstrumentKey::new("NSE", &format!("H{i}"))
}

fn candle(ts: DateTime<Utc>, open: f64, high: f64, low: f64, close: f64) -> Candle {
    Candle {
        ts,
        open,
        high,
        low,
        close,
        volume: 1000,
        oi: None,
    }
}

async fn set_price(store: &Store, key: &InstrumentKey, ts: DateTime<Utc>, close: f64) {
    store
        .upsert_candles(
            key,
            Interval::Minute15,
            &[candle(ts, close, close, close, close)],
        )
        .await
        .expect("store a candle");
}

async fn assert_book_consistent(db: &TestDb) {
    let off = db
        .store
        .book_discrepancies()
        .await
        .expect("compare positions with fills");
    assert!(
        off.is_empty(),
        "{}: positions != net fills: {off:?}",
        db.name
    );
}

/// Opens a CNC position of `qty` in `key` through the OMS (risk-approved entry).
async fn open_position(p: &Proc, key: &InstrumentKey, qty: i64, tag: &str) {
    let risk = RiskEngine::new(p.settings.clone(), Arc::new(p.clock.clone()));
    let last = p
        .store
        .last_price(key, Interval::Minute15)
        .await
        .expect("price")
        .expect("a stored price");
    let req = OrderRequest {
        key: key.clone(),
        side: Side::Buy,
        quantity: qty,
        order_type: OrderType::Market,
        product: Product::Cnc,
        tag: tag.to_string(),
        purpose: OrderPurpose::Entry { proposal_id: 0 },
        reference_price: last,
    };
    let ctx = RiskContext {
        last_price: Some(last),
        ..RiskContext::default()
    };
    let approved = risk.check(req, &ctx).expect("entry approved");
    let oms = p.handler.oms();
    let book = oms.lock_book().await.expect("book lock");
    oms.place(&book, approved, None)
        .await
        .expect("entry placed");
    book.release().await;
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return 0.0;
    }
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

const POSITIONS: usize = 10;
const QTY: i64 = 188;
const ROUNDS: usize = 20;

/// The stress test of issue 7: 20 rounds of two kills racing over 10 open CNC positions,
/// the bot's /kill against `mft kill` and `mft kill` against `mft kill`; after each round
/// every position is flat, closed exactly once, and positions = net fills.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_kills_racing_close_every_position_exactly_once() {
    for db in test_stores().await {
        let clock = ManualClock::new(ist(10, 0));
        let s = settings(&db);
        for i in 0..POSITIONS {
            set_price(&db.store, &key(i), ist(9, 45), 70.0 + i as f64).await;
        }
        let bot = process(&db, &s, &clock).await;
        let mut race_ms = Vec::new();
        let mut closes_by = [0usize; 2];
        let mut total_sells = 0usize;
        for round in 0..ROUNDS {
            bot.handler
                .handle(Request {
                    command: Command::Resume,
                    actor: Actor::Cli,
                })
                .await
                .expect("resume");
            for i in 0..POSITIONS {
                open_position(&bot, &key(i), QTY, &format!("st-{round}-{i}")).await;
            }
            assert_eq!(
                bot.store.open_positions().await.expect("positions").len(),
                POSITIONS
            );
            let cli_vs_cli = round % 2 == 1;
            let settings = Arc::new(s.clone());
            let started = Instant::now();
            let (a, b) = if cli_vs_cli {
                let (a, b) = tokio::join!(
                    kill_from_cli(settings.clone()),
                    kill_from_cli(settings.clone())
                );
                (a.expect("first mft kill"), b.expect("second mft kill"))
            } else {
                let (a, b) = tokio::join!(
                    bot.handler.handle(Request {
                        command: Command::Kill,
                        actor: Actor::Telegram { user_id: 42 },
                    }),
                    kill_from_cli(settings.clone())
                );
                let Reply::Killed(a) = a.expect("/kill") else {
                    panic!("expected a kill report");
                };
                (a, b.expect("mft kill"))
            };
            race_ms.push(started.elapsed().as_secs_f64() * 1000.0);
            assert!(
                a.errors.is_empty() && b.errors.is_empty(),
                "{} round {round}: {:?} {:?}",
                db.name,
                a.errors,
                b.errors
            );
            assert_eq!(
                a.closed.len() + b.closed.len(),
                POSITIONS,
                "{} round {round}: each position closed exactly once: {a:?} {b:?}",
                db.name
            );
            for c in a.closed.iter().chain(&b.closed) {
                assert_eq!(
                    c.quantity, QTY,
                    "{}: an exit larger or smaller than the position",
                    db.name
                );
            }
            closes_by[0] += a.closed.len();
            closes_by[1] += b.closed.len();
            assert!(
                bot.store
                    .open_positions()
                    .await
                    .expect("positions")
                    .is_empty(),
                "{} round {round}: a position was left open or went short",
                db.name
            );
            for i in 0..POSITIONS {
                let pos = bot
                    .store
                    .position(&key(i), Product::Cnc)
                    .await
                    .expect("position")
                    .expect("row");
                assert_eq!(
                    pos.quantity,
                    0,
                    "{} round {round}: {} went {}",
                    db.name,
                    key(i),
                    pos.quantity
                );
            }
            let sells = bot
                .store
                .fills_since(ist(0, 0))
                .await
                .expect("fills")
                .iter()
                .filter(|f| f.side == Side::Sell)
                .count();
            assert_eq!(
                sells,
                (round + 1) * POSITIONS,
                "{} round {round}: double sells",
                db.name
            );
            total_sells = sells;
            assert_book_consistent(&db).await;
        }
        let mut sorted = race_ms.clone();
        let med = median(&mut sorted);
        let max = sorted.last().copied().unwrap_or_default();
        println!(
            "stress [{}]: {ROUNDS} rounds x {POSITIONS} positions x {QTY}: {} exit fills (expected {}), \
             0 double sells, 0 short; closes by first/second kill {}/{}; race wall time median {med:.1} ms, \
             max {max:.1} ms; positions = net fills after every round",
            db.name,
            total_sells,
            ROUNDS * POSITIONS,
            closes_by[0],
            closes_by[1],
        );
        bot.store.close().await;
    }
}

/// An exit is sized from the position under the lock minus exits already in flight: with a
/// Submitting exit for the whole position on record, a kill sells nothing more.
#[tokio::test]
async fn an_exit_never_exceeds_the_position_left_after_exits_in_flight() {
    for db in test_stores().await {
        let clock = ManualClock::new(ist(10, 0));
        let s = settings(&db);
        set_price(&db.store, &key(0), ist(9, 45), 70.0).await;
        set_price(&db.store, &key(1), ist(9, 45), 80.0).await;
        let p = process(&db, &s, &clock).await;
        open_position(&p, &key(0), QTY, "ex-0").await;
        open_position(&p, &key(1), QTY, "ex-1").await;
        // Another process's exit for 100 of key(1) is in flight (recorded, at the broker).
        let in_flight = OrderRequest {
            key: key(1),
            side: Side::Sell,
            quantity: 100,
            order_type: OrderType::Market,
            product: Product::Cnc,
            tag: "other-exit".into(),
            purpose: OrderPurpose::Exit {
                reason: "other".into(),
            },
            reference_price: Paise::from_rupees(80),
        };
        p.store
            .record_order(&in_flight, clock.now())
            .await
            .expect("record");
        let oms = p.handler.oms();
        let book = oms.lock_book().await.expect("lock");
        let report = oms
            .close_instrument(&book, &key(1), "signal")
            .await
            .expect("close");
        book.release().await;
        assert_eq!(report.closed.len(), 1, "{}: {report:?}", db.name);
        assert_eq!(report.closed[0].quantity, QTY - 100, "{}", db.name);
        assert_book_consistent(&db).await;
    }
}

/// Without a Kite session the live kill refuses before touching anything (with one it goes to
/// Kite: tests/live.rs).
#[tokio::test]
async fn mft_kill_in_live_mode_without_a_session_refuses_and_touches_nothing() {
    for db in test_stores().await {
        let clock = ManualClock::new(ist(10, 0));
        let mut s = settings(&db);
        set_price(&db.store, &key(4), ist(9, 45), 70.05).await;
        let p = process(&db, &s, &clock).await;
        open_position(&p, &key(4), QTY, "live-0").await;
        s.mode = Mode::Live;
        let err = kill_from_cli(Arc::new(s)).await.unwrap_err();
        assert!(
            matches!(err, HandlerError::LiveBrokerUnavailable),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(
            text.contains("MODE=live") && text.contains("Nothing was changed"),
            "{text}"
        );
        let pos = db
            .store
            .position(&key(4), Product::Cnc)
            .await
            .expect("position")
            .expect("row");
        assert_eq!(pos.quantity, QTY, "{}: a paper close in live mode", db.name);
        assert!(!db.store.system_state().await.expect("state").halted);
        assert_book_consistent(&db).await;
    }
}

async fn propose(p: &Proc, key: &InstrumentKey, entry: i64, qty: i64) -> Proposal {
    let now = p.clock.now();
    let pr = p
        .store
        .insert_proposal(&NewProposal {
            key: key.clone(),
            side: Side::Buy,
            quantity: qty,
            entry: Paise::from_rupees(entry),
            stop: Paise::from_rupees(entry - 5),
            target: Paise::from_rupees(entry + 10),
            product: Product::Mis,
            confidence: 0.7,
            rationale: "test".into(),
            created_at: now,
            expires_at: now + Duration::minutes(10),
        })
        .await
        .expect("insert a proposal")
        .expect("no other pending proposal");
    p.store
        .set_proposal_message(pr.id, 500 + pr.id)
        .await
        .expect("set the message id");
    pr
}

/// A candle that jumps more than max_bar_move_pct (here a bad print at a tenth of the price)
/// does not trigger the stop; the next, ordinary candle is the fresh price that decides.
#[tokio::test]
async fn a_jumping_candle_does_not_trigger_an_exit_without_a_fresh_price() {
    for db in test_stores().await {
        let clock = ManualClock::new(ist(10, 0));
        let s = settings(&db);
        set_price(&db.store, &key(2), ist(9, 45), 100.0).await;
        let p = process(&db, &s, &clock).await;
        let pr = propose(&p, &key(2), 100, 10).await;
        let reply = p
            .handler
            .handle(Request {
                command: Command::Approve { proposal_id: pr.id },
                actor: Actor::Telegram { user_id: 42 },
            })
            .await
            .expect("approve");
        assert!(
            matches!(
                reply,
                Reply::Decision(Decision::Decided {
                    outcome: Outcome::Executed { .. },
                    ..
                })
            ),
            "{reply:?}"
        );
        clock.set(ist(10, 20));
        p.store
            .upsert_candles(
                &key(2),
                Interval::Minute15,
                &[candle(ist(10, 0), 100.0, 100.5, 10.0, 100.2)],
            )
            .await
            .expect("candle");
        let done = p
            .handler
            .handle(Request {
                command: Command::CheckExits,
                actor: Actor::Scheduler,
            })
            .await
            .expect("exits");
        assert_eq!(
            done,
            Reply::Done { changed: 0 },
            "{}: a bad print closed the position",
            db.name
        );
        // A fresh, ordinary candle through the stop (95) closes it at the stop.
        clock.set(ist(10, 35));
        p.store
            .upsert_candles(
                &key(2),
                Interval::Minute15,
                &[candle(ist(10, 15), 99.0, 99.5, 94.0, 94.5)],
            )
            .await
            .expect("candle");
        let done = p
            .handler
            .handle(Request {
                command: Command::CheckExits,
                actor: Actor::Scheduler,
            })
            .await
            .expect("exits");
        assert_eq!(done, Reply::Done { changed: 1 }, "{}", db.name);
        assert!(p.notifier.alerts().iter().any(|a| matches!(a,
            Alert::PositionClosed { price, .. } if *price == Paise::from_rupees(95))));
        assert_book_consistent(&db).await;
    }
}

/// Absurd candles (1e308, -5, 0) never reach the store, whoever writes them.
#[tokio::test]
async fn absurd_candles_are_refused_by_the_store() {
    for db in test_stores().await {
        for bad in [1e308_f64, -5.0, 0.0, 1e9 + 1.0] {
            let err = db
                .store
                .upsert_candles(
                    &key(3),
                    Interval::Minute15,
                    &[
                        candle(ist(9, 15), 100.0, 100.0, 100.0, 100.0),
                        candle(ist(9, 30), 100.0, bad.max(100.0), bad, bad),
                    ],
                )
                .await
                .unwrap_err();
            assert!(err.to_string().contains("price"), "{}: {err}", db.name);
        }
        assert!(
            db.store
                .last_candles(&key(3), Interval::Minute15, 5)
                .await
                .expect("read")
                .is_empty(),
            "{}: a batch with an absurd candle wrote something",
            db.name
        );
    }
}

/// The CSV importer rejects absurd rows, naming every line, and writes nothing.
#[tokio::test]
async fn the_csv_importer_rejects_absurd_rows_by_line_and_writes_nothing() {
    for db in test_stores().await {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("h.csv");
        std::fs::write(
            &path,
            "timestamp,open,high,low,close,volume\n\
             2026-11-25 09:15:00+05:30,70,71,69,70.5,100\n\
             2026-11-25 09:30:00+05:30,1e308,1e308,1e308,1e308,100\n\
             2026-11-25 09:45:00+05:30,-5,-5,-5,-5,100\n\
             2026-11-25 10:00:00+05:30,0,0,0,0,100\n\
             2026-11-25 10:15:00+05:30,100000001,100000001,100000001,100000001,100\n\
             0001-01-01 00:00:00+00:00,70,71,69,70.5,100\n\
             2026-11-25 10:30:00+05:30,70,71,69,70.5,100\n",
        )
        .expect("write csv");
        // 10:05 IST: the 10:30 candle is more than one 15-minute interval ahead.
        let clock = ManualClock::new(ist(10, 5));
        let err = mft::market::import_csv_with_clock(
            &db.store,
            &path,
            &key(5),
            Interval::Minute15,
            &clock,
        )
        .await
        .unwrap_err();
        let text = err.to_string();
        for want in [
            "line 3: open/high/low/close price 1e308 is above the sanity bound",
            "line 4: open/high/low/close price -5 is not positive",
            "line 5: open/high/low/close price 0 is not positive",
            "line 6: open/high/low/close price 100000001 is above the sanity bound",
            "line 7: timestamp 0001-01-01 00:00:00 UTC is before 1990",
            "line 8: timestamp 2026-11-25 10:30 IST is more than one interval",
            "nothing was imported",
        ] {
            assert!(
                text.contains(want),
                "{}: missing {want:?} in\n{text}",
                db.name
            );
        }
        assert!(!text.contains("line 2:"), "{text}");
        assert!(
            db.store
                .last_candles(&key(5), Interval::Minute15, 5)
                .await
                .expect("read")
                .is_empty(),
            "{}: something was written",
            db.name
        );
    }
}

/// The Kite fetch refuses a response with absurd candles and writes nothing of it.
#[tokio::test]
async fn the_kite_fetch_rejects_absurd_candles_and_writes_nothing() {
    use support::kite_fake::KiteFake;
    for db in test_stores().await {
        let fake = KiteFake::start().await;
        let kite = mft::market::KiteReader::new(
            &fake.url,
            support::kite_fake::API_KEY,
            support::kite_fake::ACCESS_TOKEN,
            mft::config::KiteSettings {
                historical_rate_per_sec: 3,
                max_retries: 1,
                retry_backoff_ms: 10,
            },
        )
        .expect("reader");
        mft::market::sync_instruments(&db.store, &kite, None)
            .await
            .expect("sync");
        fake.set_historical_rows(vec![
            serde_json::json!([
                "2026-11-24T09:15:00+0530",
                1500.0,
                1501.0,
                1499.0,
                1500.5,
                10
            ]),
            serde_json::json!(["2026-11-24T09:30:00+0530", 1e308, 1e308, 1e308, 1e308, 10]),
            serde_json::json!(["2026-11-24T09:45:00+0530", -5.0, -5.0, -5.0, -5.0, 10]),
        ]);
        let clock = ManualClock::new(ist(12, 0));
        let err = mft::market::fetch_history_with_clock(
            &db.store,
            &kite,
            &InstrumentKey::new("NSE", "INFY"),
            Interval::Minute15,
            "2026-11-24".parse().expect("date"),
            "2026-11-24".parse().expect("date"),
            &mut mft::market::NoProgress,
            &clock,
        )
        .await
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("candle 2 (") && text.contains("candle 3 ("),
            "{text}"
        );
        assert!(
            text.contains("nothing of that response was written"),
            "{text}"
        );
        assert!(
            db.store
                .last_candles(&InstrumentKey::new("NSE", "INFY"), Interval::Minute15, 5)
                .await
                .expect("read")
                .is_empty(),
            "{}",
            db.name
        );
    }
}

/// /pause: approvals of cards already posted are vetoed with PAUSED (shown on the card); exits,
/// the expiry sweep and /kill still run.
#[tokio::test]
async fn pause_vetoes_approvals_but_exits_expiry_and_kill_still_run() {
    for db in test_stores().await {
        let clock = ManualClock::new(ist(10, 0));
        let s = settings(&db);
        set_price(&db.store, &key(6), ist(9, 45), 100.0).await;
        set_price(&db.store, &key(7), ist(9, 45), 200.0).await;
        set_price(&db.store, &key(8), ist(9, 45), 300.0).await;
        let p = process(&db, &s, &clock).await;
        let tg = |command| Request {
            command,
            actor: Actor::Telegram { user_id: 42 },
        };
        let held = propose(&p, &key(6), 100, 10).await;
        p.handler
            .handle(tg(Command::Approve {
                proposal_id: held.id,
            }))
            .await
            .expect("approve before the pause");
        let posted = propose(&p, &key(7), 200, 5).await;
        let stale = propose(&p, &key(8), 300, 5).await;
        assert_eq!(
            p.handler.handle(tg(Command::Pause)).await.expect("pause"),
            Reply::Paused
        );
        let reply = p
            .handler
            .handle(tg(Command::Approve {
                proposal_id: posted.id,
            }))
            .await
            .expect("approve while paused");
        assert_eq!(
            reply,
            Reply::Decision(Decision::Decided {
                proposal_id: posted.id,
                outcome: Outcome::Vetoed(mft::domain::DenyReason::Paused)
            }),
            "{}",
            db.name
        );
        let card = p
            .notifier
            .updates()
            .into_iter()
            .find(|(id, _, _)| *id == posted.id)
            .expect("card edited");
        let line = mft::texts::outcome_line(&card.2);
        assert!(line.contains("PAUSED"), "{line}");
        assert!(
            db.store
                .orders_for_proposal(posted.id)
                .await
                .expect("orders")
                .is_empty()
        );
        // Expiry still runs.
        clock.set(ist(10, 11));
        let swept = p
            .handler
            .handle(Request {
                command: Command::ExpirySweep,
                actor: Actor::Scheduler,
            })
            .await
            .expect("sweep");
        assert_eq!(swept, Reply::Done { changed: 1 });
        assert_eq!(
            db.store
                .proposal(stale.id)
                .await
                .expect("read")
                .expect("row")
                .status,
            mft::domain::ProposalStatus::Expired
        );
        // A stop exit still runs.
        clock.set(ist(10, 20));
        db.store
            .upsert_candles(
                &key(6),
                Interval::Minute15,
                &[candle(ist(10, 0), 99.0, 99.5, 94.0, 94.5)],
            )
            .await
            .expect("candle");
        assert_eq!(
            p.handler
                .handle(Request {
                    command: Command::CheckExits,
                    actor: Actor::Scheduler,
                })
                .await
                .expect("exits"),
            Reply::Done { changed: 1 },
            "{}",
            db.name
        );
        // /kill still runs.
        let reply = p.handler.handle(tg(Command::Kill)).await.expect("kill");
        assert!(matches!(reply, Reply::Killed(_)), "{reply:?}");
        assert_book_consistent(&db).await;
    }
}

const TG_TOKEN: &str = "123456:MONEY-token";
const OPERATOR: i64 = 4242;

/// Returns one prepared scan result.
struct OneScan(std::sync::Mutex<Option<ScanResult>>);

#[async_trait::async_trait]
impl Scanner for OneScan {
    async fn scan(
        &self,
        _only: Option<&InstrumentKey>,
        _open: &[InstrumentKey],
    ) -> Result<ScanResult, ScanError> {
        let r = self.0.lock().expect("lock").take();
        match r {
            Some(r) => Ok(r),
            None => NoopScanner.scan(None, &[]).await,
        }
    }
}

/// A handler posting through the real TelegramNotifier to the Telegram fake.
fn telegram_handler(
    db: &TestDb,
    s: &Settings,
    clock: &ManualClock,
    fake: &support::telegram_fake::TelegramFake,
    scan: Option<ScanResult>,
) -> Handler {
    let config = mft::bot::BotConfig {
        token: mft::config::Secret::new(TG_TOKEN),
        api_url: fake.url(),
        chat_id: OPERATOR,
        allowed_users: vec![OPERATOR],
    };
    let notifier = Arc::new(mft::bot::TelegramNotifier::new(
        config.bot().expect("bot"),
        OPERATOR,
        s.trading.capital,
    ));
    let settings = Arc::new(s.clone());
    let clock: Arc<dyn Clock> = Arc::new(clock.clone());
    Handler::new(
        db.store.clone(),
        settings.clone(),
        clock.clone(),
        Arc::new(PaperBroker::new(db.store.clone(), settings, clock)),
        notifier,
        Arc::new(OneScan(std::sync::Mutex::new(scan))),
    )
}

async fn card_scan(
    db: &TestDb,
    clock: &ManualClock,
    k: &InstrumentKey,
    png: &std::path::Path,
) -> (ScanResult, Proposal) {
    let now = clock.now();
    let p = db
        .store
        .insert_proposal(&NewProposal {
            key: k.clone(),
            side: Side::Buy,
            quantity: 10,
            entry: Paise::from_rupees(100),
            stop: Paise::from_rupees(95),
            target: Paise::from_rupees(110),
            product: Product::Mis,
            confidence: 0.7,
            rationale: "test".into(),
            created_at: now,
            expires_at: now + Duration::minutes(10),
        })
        .await
        .expect("insert")
        .expect("no other pending");
    let run = db.store.start_scan_run(now, 3).await.expect("scan run");
    db.store
        .finish_scan_run(run, now, 1, 0, None)
        .await
        .expect("finish run");
    let result = ScanResult {
        summary: ScanSummary {
            id: run,
            started_at: now,
            finished_at: Some(now),
            instruments: 3,
            proposals: 1,
            errors: 0,
            stale: Vec::new(),
        },
        proposals: vec![mft::ports::ProposalCard {
            proposal: p.clone(),
            chart_png: Some(png.to_path_buf()),
            capital: Paise::from_rupees(100_000),
        }],
        exits: Vec::new(),
        errors: Vec::new(),
    };
    (result, p)
}

/// Telegram refusing sendPhoto: the photo is retried once, then the card goes out as text
/// with the same caption and buttons, and its message id is stored.
#[tokio::test]
async fn a_refused_photo_is_retried_then_posted_as_a_text_card() {
    use support::telegram_fake::TelegramFake;
    for db in test_stores().await {
        let dir = tempfile::tempdir().expect("dir");
        let png = dir.path().join("c.png");
        std::fs::write(&png, b"\x89PNG\r\n\x1a\nnot really").expect("png");
        let clock = ManualClock::new(ist(10, 0));
        let s = settings(&db);
        // Once refused: the retry posts the photo.
        let fake = TelegramFake::start(TG_TOKEN).await;
        fake.refuse("sendPhoto", 1);
        let (scan, p) = card_scan(&db, &clock, &key(1), &png).await;
        let h = telegram_handler(&db, &s, &clock, &fake, Some(scan));
        let reply = h
            .handle(Request {
                command: Command::Scan { only: None },
                actor: Actor::Scheduler,
            })
            .await
            .expect("scan");
        assert!(
            matches!(
                reply,
                Reply::Scan(ScanSummary {
                    proposals: 1,
                    errors: 0,
                    ..
                })
            ),
            "{reply:?}"
        );
        assert_eq!(fake.calls("sendPhoto").len(), 2, "{}", db.name);
        let stored = db.store.proposal(p.id).await.expect("read").expect("row");
        assert!(stored.message_id.is_some());
        // Always refused: a text card with the same caption and both buttons.
        let fake = TelegramFake::start(TG_TOKEN).await;
        fake.refuse("sendPhoto", usize::MAX);
        let (scan, p) = card_scan(&db, &clock, &key(2), &png).await;
        let h = telegram_handler(&db, &s, &clock, &fake, Some(scan));
        let reply = h
            .handle(Request {
                command: Command::Scan { only: None },
                actor: Actor::Scheduler,
            })
            .await
            .expect("scan");
        assert!(
            matches!(
                reply,
                Reply::Scan(ScanSummary {
                    proposals: 1,
                    errors: 0,
                    ..
                })
            ),
            "{reply:?}"
        );
        assert_eq!(fake.calls("sendPhoto").len(), 2);
        let stored = db.store.proposal(p.id).await.expect("read").expect("row");
        assert_eq!(stored.status, mft::domain::ProposalStatus::Pending);
        let id = stored
            .message_id
            .unwrap_or_else(|| panic!("{}: message id not stored", db.name));
        let card = fake.message(id).expect("the stored id is the text card");
        assert!(
            card.photo.is_none() && card.body().contains("H2"),
            "{card:?}"
        );
        let buttons = card.buttons();
        assert!(buttons.iter().any(|(t, _)| t == "Approve"), "{buttons:?}");
        assert!(buttons.iter().any(|(t, _)| t == "Reject"), "{buttons:?}");
    }
}

/// When the text card fails too, the proposal is marked failed with the reason, the scan
/// counts it as an error, and the operator is alerted.
#[tokio::test]
async fn a_card_that_cannot_be_posted_fails_the_proposal_counts_an_error_and_alerts() {
    use support::telegram_fake::TelegramFake;
    for db in test_stores().await {
        let dir = tempfile::tempdir().expect("dir");
        let png = dir.path().join("c.png");
        std::fs::write(&png, b"\x89PNG\r\n\x1a\nnot really").expect("png");
        let clock = ManualClock::new(ist(10, 0));
        let s = settings(&db);
        let fake = TelegramFake::start(TG_TOKEN).await;
        fake.refuse("sendPhoto", usize::MAX);
        // The text fallback is refused; the alert after it gets through.
        fake.refuse("sendMessage", 1);
        let (scan, p) = card_scan(&db, &clock, &key(3), &png).await;
        let run = scan.summary.id;
        let h = telegram_handler(&db, &s, &clock, &fake, Some(scan));
        let reply = h
            .handle(Request {
                command: Command::Scan { only: None },
                actor: Actor::Scheduler,
            })
            .await
            .expect("scan");
        assert!(
            matches!(
                reply,
                Reply::Scan(ScanSummary {
                    proposals: 0,
                    errors: 1,
                    ..
                })
            ),
            "{}: {reply:?}",
            db.name
        );
        let stored = db.store.proposal(p.id).await.expect("read").expect("row");
        assert_eq!(
            stored.status,
            mft::domain::ProposalStatus::Failed,
            "{}",
            db.name
        );
        assert!(
            stored
                .outcome
                .as_deref()
                .is_some_and(|o| o.contains("could not be posted")),
            "{:?}",
            stored.outcome
        );
        let last = db.store.last_scan_run().await.expect("run").expect("row");
        assert_eq!((last.id, last.proposals, last.errors), (run, 0, 1));
        assert!(
            !db.store
                .has_pending_proposal(&key(3))
                .await
                .expect("pending"),
            "the instrument stays blocked"
        );
        let alerted = fake
            .calls("sendMessage")
            .iter()
            .filter_map(|c| c.str("text").map(String::from))
            .any(|t| t.contains(&format!("#{}", p.id)) && t.contains("could not be posted"));
        assert!(
            alerted,
            "{}: no alert: {:?}",
            db.name,
            fake.calls("sendMessage")
        );
    }
}

/// At start, a pending proposal without a message id (a crash between posting and saving)
/// gets a fresh card; one already due is expired with a note.
#[tokio::test]
async fn at_start_unposted_pending_proposals_get_a_fresh_card_or_expire() {
    use support::telegram_fake::TelegramFake;
    for db in test_stores().await {
        let clock = ManualClock::new(ist(10, 0));
        let s = settings(&db);
        let fake = TelegramFake::start(TG_TOKEN).await;
        let dir = tempfile::tempdir().expect("dir");
        let png = dir.path().join("c.png");
        std::fs::write(&png, b"x").expect("png");
        let (_, fresh) = card_scan(&db, &clock, &key(4), &png).await;
        clock.set(ist(10, 8));
        let (_, due) = card_scan(&db, &clock, &key(5), &png).await;
        clock.set(ist(10, 12));
        // At 10:12 the first (expiring 10:10) is due; the second (10:18) is still live.
        let h = telegram_handler(&db, &s, &clock, &fake, None);
        assert_eq!(h.repost_unposted().await.expect("repost"), 2, "{}", db.name);
        let f = db
            .store
            .proposal(fresh.id)
            .await
            .expect("read")
            .expect("row");
        let d = db.store.proposal(due.id).await.expect("read").expect("row");
        assert_eq!(
            f.status,
            mft::domain::ProposalStatus::Expired,
            "{}",
            db.name
        );
        assert!(
            f.outcome
                .as_deref()
                .is_some_and(|o| o.contains("never confirmed posted"))
        );
        assert_eq!(d.status, mft::domain::ProposalStatus::Pending);
        let id = d
            .message_id
            .unwrap_or_else(|| panic!("{}: no fresh card", db.name));
        let card = fake.message(id).expect("fresh card sent");
        assert!(
            card.buttons().iter().any(|(t, _)| t == "Approve"),
            "fresh card with buttons: {card:?}"
        );
        // Nothing left the second time.
        assert_eq!(h.repost_unposted().await.expect("again"), 0);
    }
}

/// POST /kill on the status server: refused without the token (and when no token exists),
/// carried out by the service's handler with its KillDone alert when the token is right.
#[tokio::test]
async fn the_kill_endpoint_needs_the_token_and_alerts_like_kill_in_telegram() {
    for db in test_stores().await {
        let clock = ManualClock::new(ist(10, 0));
        let s = settings(&db);
        set_price(&db.store, &key(9), ist(9, 45), 100.0).await;
        let p = process(&db, &s, &clock).await;
        open_position(&p, &key(9), 7, "ep-0").await;
        let serve = |router: axum::Router| async move {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let addr = l.local_addr().expect("addr");
            tokio::spawn(async move {
                let _ = axum::serve(
                    l,
                    router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
                )
                .await;
            });
            format!("http://{addr}/kill")
        };
        let sink: Arc<dyn mft::ports::CommandHandler> = p.handler.clone();
        let dashboard = |token: Option<&str>, kill_token: Option<&str>| mft::web::Dashboard {
            kill_token: kill_token.map(mft::config::Secret::new),
            ..mft::web::Dashboard::new(
                sink.clone(),
                db.store.clone(),
                token.map(mft::config::Secret::new),
                mft::domain::Paise::from_rupees(100_000),
            )
        };
        let none = serve(mft::web::router(dashboard(None, None))).await;
        let r = reqwest::Client::new()
            .post(&none)
            .bearer_auth("anything")
            .send()
            .await
            .expect("post");
        assert_eq!(r.status(), 403);
        let url = serve(mft::web::router(dashboard(
            Some("status-token"),
            Some("file-token"),
        )))
        .await;
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        for bad in [None, Some("file-toke"), Some("file-token-longer"), Some("")] {
            let mut req = client.post(&url);
            if let Some(b) = bad {
                req = req.bearer_auth(b);
            }
            let r = req.send().await.expect("post");
            assert!(
                matches!(r.status().as_u16(), 401 | 403),
                "{bad:?}: {}",
                r.status()
            );
        }
        assert!(!db.store.system_state().await.expect("state").halted);
        let r = client
            .post(&url)
            .bearer_auth("file-token")
            .send()
            .await
            .expect("post");
        assert_eq!(r.status(), 200);
        let body: serde_json::Value = r.json().await.expect("json");
        let report: mft::ports::KillReport =
            serde_json::from_value(body["report"].clone()).expect("a kill report");
        assert_eq!(report.closed.len(), 1, "{}: {report:?}", db.name);
        assert!(db.store.system_state().await.expect("state").halted);
        assert!(
            p.notifier
                .alerts()
                .iter()
                .any(|a| matches!(a, Alert::KillDone(_)))
        );
        // STATUS_TOKEN works too, as the dashboard's confirmed Kill (nothing left to close).
        let r = client
            .post(&url)
            .bearer_auth("status-token")
            .form(&[("confirm", "yes")])
            .send()
            .await
            .expect("post");
        assert_eq!(r.status(), 200);
        assert_book_consistent(&db).await;
    }
}
