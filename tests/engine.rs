//! The engine end to end on every test database: approvals through risk and the paper OMS,
//! exactly-once decisions under concurrency, the daily-loss veto and halt, /kill, the persisted
//! halt, exits while halted, and idempotent placement after a simulated crash.

mod support;

use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use futures::future::join_all;

use mft::app::handler::{Handler, HandlerError};
use mft::clock::{Clock, IST, ManualClock};
use mft::config::Settings;
use mft::domain::{
    Actor, Candle, Command, DenyReason, Instrument, InstrumentKey, Interval, NewProposal,
    OrderPurpose, OrderRequest, OrderState, OrderType, Paise, Product, Proposal, ProposalStatus,
    Request, Side,
};
use mft::oms::{Broker, BrokerAck, PaperBroker, Placement, proposal_tag};
use mft::ports::{Alert, Decision, Outcome, Reply, ScanSummary};
use mft::ports::{ScanError, ScanResult, Scanner};
use mft::risk::{RiskContext, RiskEngine};
use mft::store::{RecordedOrder, Store};
use support::db::test_stores;
use support::notifier::RecordingNotifier;

fn settings() -> Settings {
    Settings::default()
}

/// Wednesday 2026-11-25 at h:m IST.
fn ist(h: u32, m: u32) -> DateTime<Utc> {
    IST.with_ymd_and_hms(2026, 11, 25, h, m, 0)
        .single()
        .expect("valid time")
        .with_timezone(&Utc)
}

fn infy() -> InstrumentKey {
    InstrumentKey::new("NSE", "INFY")
}

fn reliance() -> InstrumentKey {
    InstrumentKey::new("NSE", "RELIANCE")
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

struct Rig {
    store: Store,
    clock: ManualClock,
    notifier: Arc<RecordingNotifier>,
    handler: Arc<Handler>,
    settings: Arc<Settings>,
}

fn rig(store: &Store, clock: &ManualClock) -> Rig {
    let settings = Arc::new(settings());
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
    Rig {
        store: store.clone(),
        clock: clock.clone(),
        notifier,
        handler,
        settings,
    }
}

/// A 15-minute candle at `ts` around `close`.
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

async fn propose(r: &Rig, key: &InstrumentKey, entry: i64, qty: i64) -> Proposal {
    let now = r.clock.now();
    let p = r
        .store
        .insert_proposal(&NewProposal {
            key: key.clone(),
            side: Side::Buy,
            quantity: qty,
            entry: Paise::from_rupees(entry),
            stop: Paise::from_rupees(entry - 20),
            target: Paise::from_rupees(entry + 40),
            product: Product::Mis,
            confidence: 0.7,
            rationale: "test".into(),
            created_at: now,
            expires_at: now + Duration::minutes(10),
        })
        .await
        .expect("insert a proposal")
        .expect("no other pending proposal");
    r.store
        .set_proposal_message(p.id, 500 + p.id)
        .await
        .expect("set the message id");
    p
}

/// The book invariant, checked after every test: each instrument's positions add up to the
/// net of its fills.
async fn assert_book_consistent(db: &support::db::TestDb) {
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

fn req(command: Command) -> Request {
    Request {
        command,
        actor: Actor::Telegram { user_id: 42 },
    }
}

async fn approve(r: &Rig, id: i64) -> Reply {
    r.handler
        .handle(req(Command::Approve { proposal_id: id }))
        .await
        .expect("approve runs")
}

async fn status_of(store: &Store, id: i64) -> ProposalStatus {
    store
        .proposal(id)
        .await
        .expect("read proposal")
        .expect("proposal exists")
        .status
}

async fn start(db: &support::db::TestDb) -> Rig {
    let clock = ManualClock::new(ist(10, 0));
    set_price(&db.store, &infy(), ist(9, 45), 1500.0).await;
    set_price(&db.store, &reliance(), ist(9, 45), 1300.0).await;
    rig(&db.store, &clock)
}

#[tokio::test]
async fn approve_executes_once_with_an_order_and_a_position() {
    for db in test_stores().await {
        let r = start(&db).await;
        let p = propose(&r, &infy(), 1500, 10).await;
        let reply = approve(&r, p.id).await;
        let Reply::Decision(Decision::Decided {
            outcome:
                Outcome::Executed {
                    side,
                    quantity,
                    fill_price,
                    mode,
                    order_id,
                },
            ..
        }) = reply
        else {
            panic!("{}: expected Executed, got {reply:?}", db.name);
        };
        assert_eq!((side, quantity), (Side::Buy, 10));
        // 1500 + 5 bps = 1500.75, on the 0.05 tick.
        assert_eq!(fill_price, Paise(150075), "{}", db.name);
        assert_eq!(mode, "paper");
        assert_eq!(order_id, format!("paper-{}", proposal_tag(p.id)));
        assert_eq!(status_of(&r.store, p.id).await, ProposalStatus::Executed);
        let orders = r.store.orders_for_proposal(p.id).await.expect("orders");
        assert_eq!(orders.len(), 1);
        assert!(matches!(orders[0].state, OrderState::Filled { .. }));
        let pos = r
            .store
            .position(&infy(), Product::Mis)
            .await
            .expect("position")
            .expect("exists");
        assert_eq!(pos.quantity, 10);
        assert_eq!(pos.avg_price, Paise(150075));
        assert_eq!(pos.stop, Some(Paise::from_rupees(1480)));
        assert_eq!(pos.target, Some(Paise::from_rupees(1540)));
        // The card was edited once, with the Executed outcome, on its message.
        let updates = r.notifier.updates();
        assert_eq!(updates.len(), 1);
        assert_eq!(updates[0].1, 500 + p.id);
        assert!(matches!(updates[0].2, Outcome::Executed { .. }));
        // A second tap: already decided, no second order.
        let again = approve(&r, p.id).await;
        assert_eq!(
            again,
            Reply::Decision(Decision::AlreadyDecided {
                proposal_id: p.id,
                status: ProposalStatus::Executed
            })
        );
        assert_eq!(
            r.store
                .orders_for_proposal(p.id)
                .await
                .expect("orders")
                .len(),
            1
        );
        let log = r.store.trade_log(50).await.expect("trade log");
        assert!(log.iter().any(|e| e.kind == "order_recorded"));
        assert!(log.iter().any(|e| e.kind == "order_filled"));
        // Status reflects it.
        let Reply::Status(s) = r
            .handler
            .handle(req(Command::Status))
            .await
            .expect("status")
        else {
            panic!("expected a status");
        };
        assert_eq!(s.mode, "paper");
        assert!(!s.halted);
        assert_eq!(s.positions.len(), 1);
        assert_eq!(s.orders_today, 1);
        assert_eq!(s.orders_limit, 20);
        assert_eq!(s.loss_limit, Paise::from_rupees(2000));
        // Marked at 1500 vs 1500.75: -7.50 unrealized.
        assert_eq!(s.unrealized, Paise(-750));
        assert_eq!(s.loss_used, Paise(750));
        assert!(s.pending.is_empty());
        assert_book_consistent(&db).await;
    }
}

#[tokio::test]
async fn ten_concurrent_approvals_place_one_order() {
    for db in test_stores().await {
        let r = start(&db).await;
        let p = propose(&r, &infy(), 1500, 10).await;
        let replies = join_all((0..10).map(|_| {
            let h = r.handler.clone();
            async move {
                h.handle(req(Command::Approve { proposal_id: p.id }))
                    .await
                    .expect("approve runs")
            }
        }))
        .await;
        let decided = replies
            .iter()
            .filter(|r| matches!(r, Reply::Decision(Decision::Decided { .. })))
            .count();
        let already = replies
            .iter()
            .filter(|r| matches!(r, Reply::Decision(Decision::AlreadyDecided { .. })))
            .count();
        assert_eq!((decided, already), (1, 9), "{}: {replies:?}", db.name);
        assert_eq!(
            r.store
                .orders_for_proposal(p.id)
                .await
                .expect("orders")
                .len(),
            1
        );
        let pos = r
            .store
            .position(&infy(), Product::Mis)
            .await
            .expect("position")
            .expect("exists");
        assert_eq!(pos.quantity, 10, "{}", db.name);
        assert_eq!(r.notifier.updates().len(), 1);
        assert_book_consistent(&db).await;
    }
}

#[tokio::test]
async fn approval_racing_the_expiry_sweep_has_exactly_one_outcome() {
    for db in test_stores().await {
        let r = start(&db).await;
        for round in 0..6 {
            let p = propose(&r, &infy(), 1500, 1).await;
            // Both arrive after the expiry time.
            r.clock.advance(Duration::minutes(11));
            let h1 = r.handler.clone();
            let h2 = r.handler.clone();
            let (a, s) = tokio::join!(
                async move { h1.handle(req(Command::Approve { proposal_id: p.id })).await },
                async move {
                    h2.handle(Request {
                        command: Command::ExpirySweep,
                        actor: Actor::Scheduler,
                    })
                    .await
                }
            );
            let a = a.expect("approve runs");
            let s = s.expect("sweep runs");
            let approve_decided = matches!(a, Reply::Decision(Decision::Decided { .. }));
            let swept = s == Reply::Done { changed: 1 };
            assert!(
                approve_decided ^ swept,
                "{} round {round}: exactly one must decide: {a:?} / {s:?}",
                db.name
            );
            let status = status_of(&r.store, p.id).await;
            if approve_decided {
                // It won the CAS, but the risk engine saw it had expired.
                assert_eq!(
                    a,
                    Reply::Decision(Decision::Decided {
                        proposal_id: p.id,
                        outcome: Outcome::Vetoed(DenyReason::ProposalExpired {
                            expired_at: p.expires_at,
                            expired_at_ist: format!(
                                "{} IST",
                                p.expires_at.with_timezone(&mft::clock::IST).format("%H:%M")
                            ),
                        })
                    })
                );
                assert_eq!(status, ProposalStatus::Vetoed);
            } else {
                assert_eq!(status, ProposalStatus::Expired);
            }
            assert!(
                r.store
                    .orders_for_proposal(p.id)
                    .await
                    .expect("orders")
                    .is_empty()
            );
            r.clock.set(ist(10, 0));
        }
        // Every card was edited exactly once.
        assert_eq!(r.notifier.updates().len(), 6, "{}", db.name);
        assert_book_consistent(&db).await;
    }
}

#[tokio::test]
async fn a_daily_loss_veto_halts_and_alerts_once() {
    for db in test_stores().await {
        let r = start(&db).await;
        let first = propose(&r, &infy(), 1500, 10).await;
        assert!(matches!(
            approve(&r, first.id).await,
            Reply::Decision(Decision::Decided {
                outcome: Outcome::Executed { .. },
                ..
            })
        ));
        // INFY falls 250: 10 x (1250 - 1500.75) = -2,507.50 unrealized.
        set_price(&r.store, &infy(), ist(10, 0), 1250.0).await;
        let second = propose(&r, &reliance(), 1300, 5).await;
        let reply = approve(&r, second.id).await;
        let Reply::Decision(Decision::Decided {
            outcome: Outcome::Vetoed(reason),
            ..
        }) = reply
        else {
            panic!("{}: expected a veto, got {reply:?}", db.name);
        };
        assert_eq!(reason.code(), "MAX_DAILY_LOSS");
        assert_eq!(status_of(&r.store, second.id).await, ProposalStatus::Vetoed);
        assert!(r.store.system_state().await.expect("state").halted);
        let alerts = r.notifier.alerts();
        assert!(
            alerts.iter().any(
                |a| matches!(a, Alert::Vetoed { proposal_id, .. } if *proposal_id == second.id)
            )
        );
        let halts = |alerts: &[Alert]| {
            alerts
                .iter()
                .filter(|a| matches!(a, Alert::DailyLossHalt { .. }))
                .count()
        };
        assert_eq!(halts(&alerts), 1);
        // The card says Vetoed with the code.
        assert!(
            r.notifier
                .updates()
                .iter()
                .any(|(id, _, o)| *id == second.id
                    && matches!(o, Outcome::Vetoed(DenyReason::MaxDailyLoss { .. })))
        );
        // Next approval: refused as HALTED, no second halt alert.
        let third = propose(&r, &reliance(), 1300, 5).await;
        let reply = approve(&r, third.id).await;
        assert_eq!(
            reply,
            Reply::Decision(Decision::Decided {
                proposal_id: third.id,
                outcome: Outcome::Vetoed(DenyReason::Halted)
            })
        );
        assert_eq!(halts(&r.notifier.alerts()), 1, "{}", db.name);
        assert!(
            r.store
                .orders_for_proposal(third.id)
                .await
                .expect("orders")
                .is_empty()
        );
        assert_book_consistent(&db).await;
    }
}

#[tokio::test]
async fn kill_flattens_halts_and_the_halt_survives_a_restart() {
    for db in test_stores().await {
        let r = start(&db).await;
        let a = propose(&r, &infy(), 1500, 10).await;
        approve(&r, a.id).await;
        let b = propose(&r, &reliance(), 1300, 5).await;
        approve(&r, b.id).await;
        assert_eq!(r.store.open_positions().await.expect("positions").len(), 2);
        let reply = r.handler.handle(req(Command::Kill)).await.expect("kill");
        let Reply::Killed(report) = reply else {
            panic!("expected Killed, got {reply:?}");
        };
        assert_eq!(report.closed.len(), 2, "{}: {report:?}", db.name);
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        // Bought at +5 bps, sold at -5 bps: 10 x -1.50 + 5 x -1.30 = -21.50.
        assert_eq!(report.realized_today, Paise(-2150), "{}", db.name);
        assert!(
            r.store
                .open_positions()
                .await
                .expect("positions")
                .is_empty()
        );
        assert!(r.store.system_state().await.expect("state").halted);
        assert!(
            r.notifier
                .alerts()
                .iter()
                .any(|a| matches!(a, Alert::KillDone(_)))
        );
        // A new process on the same database: still halted.
        let store2 = Store::connect(&db.url).await.expect("reconnect");
        let r2 = rig(&store2, &r.clock);
        let Reply::Status(s) = r2
            .handler
            .handle(req(Command::Status))
            .await
            .expect("status")
        else {
            panic!("expected a status");
        };
        assert!(s.halted, "{}: halt lost on restart", db.name);
        let scan = r2.handler.handle(req(Command::Scan { only: None })).await;
        assert!(
            matches!(scan, Err(HandlerError::Refused(DenyReason::Halted))),
            "{scan:?}"
        );
        let c = propose(&r2, &infy(), 1500, 1).await;
        assert_eq!(
            approve(&r2, c.id).await,
            Reply::Decision(Decision::Decided {
                proposal_id: c.id,
                outcome: Outcome::Vetoed(DenyReason::Halted)
            })
        );
        // /resume lifts it.
        assert_eq!(
            r2.handler
                .handle(req(Command::Resume))
                .await
                .expect("resume"),
            Reply::Resumed { was_halted: true }
        );
        assert!(!store2.system_state().await.expect("state").halted);
        store2.close().await;
        assert_book_consistent(&db).await;
    }
}

#[tokio::test]
async fn exits_are_never_blocked_while_halted() {
    for db in test_stores().await {
        let r = start(&db).await;
        let p = propose(&r, &infy(), 1500, 10).await;
        approve(&r, p.id).await;
        let q = propose(&r, &reliance(), 1300, 5).await;
        approve(&r, q.id).await;
        r.store
            .set_halt("test halt", r.clock.now())
            .await
            .expect("halt");
        // A later candle trades through the stop (1480) without gapping.
        r.clock.set(ist(10, 20));
        r.store
            .upsert_candles(
                &infy(),
                Interval::Minute15,
                &[candle(ist(10, 15), 1495.0, 1497.0, 1470.0, 1475.0)],
            )
            .await
            .expect("candle");
        let reply = r
            .handler
            .handle(req(Command::CheckExits))
            .await
            .expect("exits run");
        assert_eq!(reply, Reply::Done { changed: 1 }, "{}", db.name);
        let pos = r
            .store
            .position(&infy(), Product::Mis)
            .await
            .expect("position")
            .expect("row");
        assert_eq!(pos.quantity, 0);
        // Filled at the stop: 10 x (1480 - 1500.75) = -207.50.
        assert!(r.notifier.alerts().iter().any(|a| matches!(a,
            Alert::PositionClosed { key, price, pnl, .. }
                if *key == infy() && *price == Paise::from_rupees(1480) && *pnl == Paise(-20750))));
        // The intraday square-off closes the rest, halted or not.
        let reply = r
            .handler
            .handle(Request {
                command: Command::SquareOff,
                actor: Actor::Scheduler,
            })
            .await
            .expect("square-off runs");
        assert_eq!(reply, Reply::Done { changed: 1 });
        assert!(
            r.store
                .open_positions()
                .await
                .expect("positions")
                .is_empty()
        );
        assert!(r.store.system_state().await.expect("state").halted);
        assert_book_consistent(&db).await;
    }
}

#[tokio::test]
async fn placement_after_a_crash_finds_the_order_by_its_tag() {
    for db in test_stores().await {
        let r = start(&db).await;
        let p = propose(&r, &infy(), 1500, 10).await;
        // The crash: the order was recorded (Submitting) but nothing after that happened.
        let req_ = OrderRequest {
            key: infy(),
            side: Side::Buy,
            quantity: 10,
            order_type: OrderType::Market,
            product: Product::Mis,
            tag: proposal_tag(p.id),
            purpose: OrderPurpose::Entry { proposal_id: p.id },
            reference_price: Paise::from_rupees(1500),
        };
        let first = r
            .store
            .record_order(&req_, r.clock.now())
            .await
            .expect("record");
        assert!(matches!(first, RecordedOrder::New(_)));
        let again = r
            .store
            .record_order(&req_, r.clock.now())
            .await
            .expect("record again");
        assert!(
            matches!(again, RecordedOrder::Existing(ref o) if o.state == OrderState::Submitting)
        );
        // Approving places it through the same row: the broker never had it, so it is sent once.
        let reply = approve(&r, p.id).await;
        assert!(
            matches!(
                reply,
                Reply::Decision(Decision::Decided {
                    outcome: Outcome::Executed { .. },
                    ..
                })
            ),
            "{}: {reply:?}",
            db.name
        );
        let orders = r.store.orders_for_proposal(p.id).await.expect("orders");
        assert_eq!(orders.len(), 1);
        assert!(matches!(orders[0].state, OrderState::Filled { .. }));
        // Placing the same tag once more through the OMS finds the filled order.
        let risk = RiskEngine::new(r.settings.clone(), Arc::new(r.clock.clone()));
        let ctx = RiskContext {
            last_price: Some(Paise::from_rupees(1500)),
            ..RiskContext::default()
        };
        let approved = risk.check(req_.clone(), &ctx).expect("approved");
        let book = r.handler.oms().lock_book().await.expect("book lock");
        let placement = r
            .handler
            .oms()
            .place(&book, approved, None)
            .await
            .expect("placement runs");
        book.release().await;
        assert!(
            matches!(placement, Placement::AlreadyPlaced { .. }),
            "{placement:?}"
        );
        let pos = r
            .store
            .position(&infy(), Product::Mis)
            .await
            .expect("position")
            .expect("row");
        assert_eq!(pos.quantity, 10, "{}: placed twice", db.name);
        assert_book_consistent(&db).await;
    }
}

#[tokio::test]
async fn reject_pause_and_scan_while_paused() {
    for db in test_stores().await {
        let r = start(&db).await;
        let p = propose(&r, &infy(), 1500, 10).await;
        let reply = r
            .handler
            .handle(req(Command::Reject { proposal_id: p.id }))
            .await
            .expect("reject");
        assert_eq!(
            reply,
            Reply::Decision(Decision::Decided {
                proposal_id: p.id,
                outcome: Outcome::Rejected
            })
        );
        assert_eq!(status_of(&r.store, p.id).await, ProposalStatus::Rejected);
        assert_eq!(
            approve(&r, p.id).await,
            Reply::Decision(Decision::AlreadyDecided {
                proposal_id: p.id,
                status: ProposalStatus::Rejected
            })
        );
        assert_eq!(
            r.handler.handle(req(Command::Pause)).await.expect("pause"),
            Reply::Paused
        );
        assert_eq!(
            r.handler
                .handle(req(Command::Scan { only: None }))
                .await
                .expect("scan while paused"),
            Reply::Paused
        );
        assert_eq!(
            r.handler
                .handle(req(Command::Resume))
                .await
                .expect("resume"),
            Reply::Resumed { was_halted: false }
        );
        assert!(matches!(
            r.handler
                .handle(req(Command::Scan { only: None }))
                .await
                .expect("scan"),
            Reply::Scan(_)
        ));
        assert!(
            r.handler
                .handle(req(Command::Approve { proposal_id: 9999 }))
                .await
                .expect("approve unknown")
                == Reply::Decision(Decision::NotFound { proposal_id: 9999 })
        );
        assert_book_consistent(&db).await;
    }
}

#[tokio::test]
async fn recovery_after_a_crash_settles_stuck_proposals() {
    for db in test_stores().await {
        let r = start(&db).await;
        // Crash 1: approved, order recorded, never sent.
        let lost = propose(&r, &infy(), 1500, 10).await;
        assert!(
            r.store
                .transition_proposal(
                    lost.id,
                    ProposalStatus::Pending,
                    ProposalStatus::Approved,
                    r.clock.now(),
                    Some(42),
                    None
                )
                .await
                .expect("cas")
        );
        let req_ = OrderRequest {
            key: infy(),
            side: Side::Buy,
            quantity: 10,
            order_type: OrderType::Market,
            product: Product::Mis,
            tag: proposal_tag(lost.id),
            purpose: OrderPurpose::Entry {
                proposal_id: lost.id,
            },
            reference_price: Paise::from_rupees(1500),
        };
        r.store
            .record_order(&req_, r.clock.now())
            .await
            .expect("record");
        // A new process on the same database recovers.
        let r2 = rig(&r.store, &r.clock);
        assert_eq!(
            r2.handler.recover().await.expect("recover"),
            1,
            "{}",
            db.name
        );
        assert_eq!(status_of(&r.store, lost.id).await, ProposalStatus::Failed);
        let orders = r.store.orders_for_proposal(lost.id).await.expect("orders");
        assert!(
            matches!(orders[0].state, OrderState::Rejected { .. }),
            "{orders:?}"
        );
        assert!(
            r.store
                .open_positions()
                .await
                .expect("positions")
                .is_empty()
        );
        assert!(
            r2.notifier
                .updates()
                .iter()
                .any(|(id, _, o)| *id == lost.id && matches!(o, Outcome::Failed { .. }))
        );
        // Nothing left to do the second time.
        assert_eq!(r2.handler.recover().await.expect("recover again"), 0);
        assert_book_consistent(&db).await;
    }
}

#[tokio::test]
async fn paper_prices_fall_back_to_any_interval_and_use_the_tick() {
    for db in test_stores().await {
        let store = &db.store;
        let key = InstrumentKey::new("NSE", "TCS");
        assert_eq!(
            store
                .last_price(&key, Interval::Minute15)
                .await
                .expect("price"),
            None
        );
        store
            .upsert_candles(
                &key,
                Interval::Day,
                &[candle(
                    ist(9, 15) - Duration::days(1),
                    3000.0,
                    3010.0,
                    2990.0,
                    3001.0,
                )],
            )
            .await
            .expect("day candle");
        store
            .upsert_candles(
                &key,
                Interval::Minute5,
                &[candle(ist(9, 55), 3002.0, 3003.0, 3001.0, 3002.5)],
            )
            .await
            .expect("5-minute candle");
        assert_eq!(
            store
                .last_price(&key, Interval::Minute15)
                .await
                .expect("price"),
            Some(Paise(300250)),
            "{}",
            db.name
        );
        // The paper broker rounds its fill to the instrument's tick (1.00 here).
        store
            .upsert_instruments(&[Instrument {
                instrument_token: 2953217,
                exchange_token: 11536,
                tradingsymbol: "TCS".into(),
                name: "TATA CONSULTANCY SERV LT".into(),
                last_price: 0.0,
                expiry: None,
                strike: 0.0,
                tick_size: 1.0,
                lot_size: 1,
                instrument_type: "EQ".into(),
                segment: "NSE".into(),
                exchange: "NSE".into(),
            }])
            .await
            .expect("instrument");
        let settings = Arc::new(settings());
        let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(ist(10, 0)));
        let broker = PaperBroker::new(store.clone(), settings.clone(), clock.clone());
        let risk = RiskEngine::new(settings, clock);
        for (side, expected) in [(Side::Buy, Paise(300400)), (Side::Sell, Paise(300100))] {
            let order = OrderRequest {
                key: key.clone(),
                side,
                quantity: 1,
                order_type: OrderType::Market,
                product: Product::Mis,
                tag: format!("t-{side}"),
                purpose: OrderPurpose::Exit {
                    reason: "test".into(),
                },
                reference_price: Paise(300250),
            };
            // An exit must close a position held on the other side (EXIT_MISMATCH otherwise).
            let held = mft::domain::Position {
                key: key.clone(),
                product: Product::Mis,
                quantity: -side.sign(),
                avg_price: Paise(300250),
                realized_pnl: Paise::ZERO,
                stop: None,
                target: None,
                opened_at: ist(9, 30),
                updated_at: ist(9, 30),
            };
            let ctx = RiskContext {
                positions: vec![(held, None)],
                ..RiskContext::default()
            };
            let approved = risk.check(order, &ctx).expect("exits pass");
            let ack = broker.place(approved).await.expect("paper fill");
            assert!(
                matches!(ack, BrokerAck::Filled { price, quantity: 1, .. } if price == expected),
                "{}: {side} {ack:?}",
                db.name
            );
        }
    }
}

/// Returns one prepared result, then empty ones.
struct ScriptedScanner(std::sync::Mutex<Option<ScanResult>>);

#[async_trait::async_trait]
impl Scanner for ScriptedScanner {
    async fn scan(
        &self,
        _only: Option<&InstrumentKey>,
        open: &[InstrumentKey],
    ) -> Result<ScanResult, ScanError> {
        assert!(
            open.contains(&infy()),
            "open positions are passed in: {open:?}"
        );
        let scripted = self.0.lock().expect("script lock").take();
        match scripted {
            Some(r) => Ok(r),
            None => NoopScanner.scan(None, open).await,
        }
    }
}

#[tokio::test]
async fn a_scan_posts_cards_runs_exit_signals_and_alerts_failures() {
    for db in test_stores().await {
        let r = start(&db).await;
        let held = propose(&r, &infy(), 1500, 10).await;
        approve(&r, held.id).await;
        let fresh = propose(&r, &reliance(), 1300, 5).await;
        let result = ScanResult {
            summary: ScanSummary {
                id: 7,
                started_at: r.clock.now(),
                finished_at: Some(r.clock.now()),
                instruments: 3,
                proposals: 1,
                errors: 1,
                stale: Vec::new(),
            },
            proposals: vec![mft::ports::ProposalCard {
                proposal: fresh.clone(),
                chart_png: None,
                capital: Paise::from_rupees(100_000),
            }],
            exits: vec![(infy(), "fast EMA crossed below slow".into())],
            errors: vec![(InstrumentKey::new("NSE", "TCS"), "no candles".into())],
        };
        let notifier = Arc::new(RecordingNotifier::default());
        let settings = Arc::new(settings());
        let clock: Arc<dyn Clock> = Arc::new(r.clock.clone());
        let handler = Handler::new(
            r.store.clone(),
            settings.clone(),
            clock.clone(),
            Arc::new(PaperBroker::new(r.store.clone(), settings, clock)),
            notifier.clone(),
            Arc::new(ScriptedScanner(std::sync::Mutex::new(Some(result)))),
        );
        let reply = handler
            .handle(Request {
                command: Command::Scan { only: None },
                actor: Actor::Scheduler,
            })
            .await
            .expect("scan");
        assert!(
            matches!(reply, Reply::Scan(ScanSummary { id: 7, .. })),
            "{reply:?}"
        );
        assert_eq!(notifier.posted().len(), 1);
        let stored = r
            .store
            .proposal(fresh.id)
            .await
            .expect("read")
            .expect("row");
        assert_eq!(stored.message_id, Some(1000 + fresh.id), "{}", db.name);
        // The exit signal closed INFY at the last price minus slippage.
        assert!(
            r.store
                .open_positions()
                .await
                .expect("positions")
                .is_empty()
        );
        let alerts = notifier.alerts();
        assert!(
            alerts
                .iter()
                .any(|a| matches!(a, Alert::PositionClosed { key, .. } if *key == infy()))
        );
        assert!(alerts.iter().any(|a| matches!(a,
            Alert::ScanFailed { key: Some(k), .. } if k.tradingsymbol == "TCS")));
        assert_book_consistent(&db).await;
    }
}

/// 2026-11-(25 + day) at h:m IST: Wed, Thu, Fri.
fn on_day(day: u32, h: u32, m: u32) -> DateTime<Utc> {
    IST.with_ymd_and_hms(2026, 11, 25 + day, h, m, 0)
        .single()
        .expect("valid time")
        .with_timezone(&Utc)
}

async fn propose_cnc(r: &Rig, key: &InstrumentKey, entry: i64, qty: i64) -> Proposal {
    let now = r.clock.now();
    r.store
        .insert_proposal(&NewProposal {
            key: key.clone(),
            side: Side::Buy,
            quantity: qty,
            entry: Paise::from_rupees(entry),
            // Far away: the story is about marks, not bracket exits.
            stop: Paise::from_rupees(entry / 2),
            target: Paise::from_rupees(entry * 2),
            product: Product::Cnc,
            confidence: 0.7,
            rationale: "carried".into(),
            created_at: now,
            expires_at: now + Duration::minutes(10),
        })
        .await
        .expect("insert a proposal")
        .expect("no other pending proposal")
}

async fn status_report(r: &Rig) -> mft::ports::StatusReport {
    match r
        .handler
        .handle(req(Command::Status))
        .await
        .expect("status")
    {
        Reply::Status(s) => s,
        other => panic!("expected a status, got {other:?}"),
    }
}

/// Day P&L over three days of carried CNC positions: each day counts only its own move (from
/// the previous session's close, or from the entry for a position opened that day), so an old
/// losing holding does not trip MAX_DAILY_LOSS the next morning.
#[tokio::test]
async fn day_pnl_over_three_days_of_carried_positions() {
    for db in test_stores().await {
        let name = db.name;
        let clock = ManualClock::new(on_day(0, 10, 0));
        set_price(&db.store, &infy(), on_day(0, 9, 45), 1500.0).await;
        let r = rig(&db.store, &clock);

        // Day 1: buy 10 INFY at 1,500 (+5 bps = 1,500.75); it closes at 1,350.
        let p = propose_cnc(&r, &infy(), 1500, 10).await;
        assert!(
            matches!(
                approve(&r, p.id).await,
                Reply::Decision(Decision::Decided {
                    outcome: Outcome::Executed { .. },
                    ..
                })
            ),
            "{name}"
        );
        set_price(&db.store, &infy(), on_day(0, 15, 15), 1350.0).await;
        clock.set(on_day(0, 15, 20));
        let s = status_report(&r).await;
        // Opened today: from its entry, 10 x (1,350 - 1,500.75).
        assert_eq!(s.day_pnl, Paise(-150_750), "{name}");
        assert_eq!(s.loss_used, Paise(150_750), "{name}");

        // Day 2: INFY opens at 1,290. Lifetime unrealized is -2,107.50 (over the 2,000 limit);
        // today's move is 10 x (1,290 - 1,350) = -600, so a new entry passes.
        clock.set(on_day(1, 10, 0));
        set_price(&db.store, &infy(), on_day(1, 9, 45), 1290.0).await;
        set_price(&db.store, &reliance(), on_day(1, 9, 45), 1300.0).await;
        let s = status_report(&r).await;
        assert_eq!(s.unrealized, Paise(-210_750), "{name}");
        assert_eq!(s.day_pnl, Paise(-60_000), "{name}");
        assert_eq!(s.loss_used, Paise(60_000), "{name}");
        let q = propose_cnc(&r, &reliance(), 1300, 5).await;
        let reply = approve(&r, q.id).await;
        assert!(
            matches!(
                reply,
                Reply::Decision(Decision::Decided {
                    outcome: Outcome::Executed { .. },
                    ..
                })
            ),
            "{name}: an old holding's lifetime loss vetoed a new entry: {reply:?}"
        );
        let reliance_entry = r
            .store
            .position(&reliance(), Product::Cnc)
            .await
            .expect("position")
            .expect("open")
            .avg_price;

        // Day 3: both carried. INFY 1,290 -> 1,295 (+50); RELIANCE 1,300 -> 1,310 (+50).
        clock.set(on_day(2, 10, 0));
        set_price(&db.store, &infy(), on_day(2, 9, 45), 1295.0).await;
        set_price(&db.store, &reliance(), on_day(2, 9, 45), 1310.0).await;
        let s = status_report(&r).await;
        assert_eq!(s.realized_today, Paise::ZERO, "{name}");
        assert_eq!(s.day_pnl, Paise(10_000), "{name}");
        assert_eq!(s.loss_used, Paise::ZERO, "{name}");

        // /kill closes both: realized is booked from the average prices (INFY's deep loss), but
        // today's P&L counts each exit from yesterday's close.
        let Reply::Killed(report) = r.handler.handle(req(Command::Kill)).await.expect("kill")
        else {
            panic!("{name}: expected a kill report");
        };
        assert_eq!(report.closed.len(), 2, "{name}: {report:?}");
        let exit = |key: &InstrumentKey| {
            report
                .closed
                .iter()
                .find(|c| &c.key == key)
                .map(|c| c.price)
                .expect("closed")
        };
        let (infy_exit, rel_exit) = (exit(&infy()), exit(&reliance()));
        let s = status_report(&r).await;
        assert!(s.positions.is_empty(), "{name}");
        assert_eq!(
            s.realized_today,
            (infy_exit - Paise(150_075)) * 10 + (rel_exit - reliance_entry) * 5,
            "{name}"
        );
        assert_eq!(
            s.day_pnl,
            (infy_exit - Paise(129_000)) * 10 + (rel_exit - Paise(130_000)) * 5,
            "{name}"
        );
        assert!(
            s.day_pnl > Paise::ZERO && s.realized_today < Paise(-200_000),
            "{name}"
        );
    }
}
