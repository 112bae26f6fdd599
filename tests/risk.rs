//! Risk at execution on every test database: each decision (approved or refused) lands in the
//! risk audit with its inputs, approvals in the same transaction as their order row; exits are
//! checked (EXIT_MISMATCH) but /kill's exits pass whatever limits stopped the entries; Kite's
//! order margin and circuit band (over HTTP, against a local fake) refuse entries.

mod support;

use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};

use mft::app::handler::Handler;
use mft::clock::{Clock, IST, ManualClock};
use mft::config::Settings;
use mft::domain::{
    Actor, Candle, Command, DenyReason, InstrumentKey, Interval, NewProposal, OrderPurpose,
    OrderRequest, OrderType, Paise, Product, Proposal, Request, Side,
};
use mft::market::{KiteRiskReads, MarginProvider, RequestLimiter, RiskPorts};
use mft::oms::{OmsError, PaperBroker};
use mft::ports::{Decision, Outcome, Reply};
use mft::store::Store;
use support::db::{TestDb, test_stores};
use support::kite_margins_fake::{ACCESS_TOKEN, API_KEY, KiteMarginsFake};
use support::notifier::RecordingNotifier;

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

struct Rig {
    store: Store,
    clock: ManualClock,
    handler: Arc<Handler>,
}

fn rig(store: &Store, clock: &ManualClock, settings: Settings, ports: Option<RiskPorts>) -> Rig {
    let settings = Arc::new(settings);
    let clock_dyn: Arc<dyn Clock> = Arc::new(clock.clone());
    let broker = Arc::new(PaperBroker::new(
        store.clone(),
        settings.clone(),
        clock_dyn.clone(),
    ));
    let mut handler = Handler::new(
        store.clone(),
        settings,
        clock_dyn,
        broker,
        Arc::new(RecordingNotifier::default()),
        Arc::new(mft::app::handler::NoScanner),
    );
    if let Some(p) = ports {
        handler = handler.with_risk_ports(p);
    }
    Rig {
        store: store.clone(),
        clock: clock.clone(),
        handler: Arc::new(handler),
    }
}

async fn set_price(store: &Store, key: &InstrumentKey, ts: DateTime<Utc>, close: f64) {
    let c = Candle {
        ts,
        open: close,
        high: close,
        low: close,
        close,
        volume: 1000,
        oi: None,
    };
    store
        .upsert_candles(key, Interval::Minute15, &[c])
        .await
        .expect("store a candle");
}

async fn start(db: &TestDb, settings: Settings, ports: Option<RiskPorts>) -> Rig {
    let clock = ManualClock::new(ist(10, 0));
    set_price(&db.store, &infy(), ist(9, 45), 1500.0).await;
    set_price(&db.store, &reliance(), ist(9, 45), 1300.0).await;
    rig(&db.store, &clock, settings, ports)
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

fn request(command: Command) -> Request {
    Request {
        command,
        actor: Actor::Telegram { user_id: 42 },
    }
}

async fn approve(r: &Rig, id: i64) -> Outcome {
    match r
        .handler
        .handle(request(Command::Approve { proposal_id: id }))
        .await
        .expect("approve runs")
    {
        Reply::Decision(Decision::Decided { outcome, .. }) => outcome,
        other => panic!("expected a decision, got {other:?}"),
    }
}

fn vetoed_code(o: &Outcome) -> &'static str {
    match o {
        Outcome::Vetoed(r) => r.code(),
        Outcome::Executed { .. } => "EXECUTED",
        _ => "OTHER",
    }
}

#[tokio::test]
async fn every_decision_is_audited_with_its_inputs() {
    for db in test_stores().await {
        let r = start(&db, Settings::default(), None).await;
        let a = propose(&r, &infy(), 1500, 10).await;
        assert_eq!(
            vetoed_code(&approve(&r, a.id).await),
            "EXECUTED",
            "{}",
            db.name
        );
        // 10 s later the same instrument and side again: a duplicate.
        r.clock.advance(Duration::seconds(10));
        let b = propose(&r, &infy(), 1500, 5).await;
        let refused = approve(&r, b.id).await;
        assert_eq!(vetoed_code(&refused), "DUPLICATE_ORDER", "{}", db.name);

        let audit = r.store.risk_decisions(10).await.expect("audit");
        assert_eq!(audit.len(), 2, "{}: {audit:?}", db.name);
        let order = &r.store.orders_for_proposal(a.id).await.expect("orders")[0];
        let approved = &audit[0];
        assert_eq!(approved.decision.code, "APPROVED");
        assert_eq!(approved.decision.stage, "passed");
        assert_eq!(approved.order_id, Some(order.id), "{}", db.name);
        assert_eq!(approved.decision.request, order.request);
        assert_eq!(approved.decision.at, ist(10, 0));
        assert_eq!(approved.decision.inputs["last_price"], 150_000);
        // Paper: valued at the last price plus the 5 bps paper slippage, on the tick.
        assert_eq!(approved.decision.inputs["valued_at"], 150_075);
        assert_eq!(approved.decision.inputs["fill_slippage_bps"], 5.0);
        assert_eq!(approved.decision.inputs["orders_today"], 0);
        assert_eq!(approved.decision.inputs["order_value"], 1_500_000);
        let vetoed = &audit[1];
        assert_eq!(vetoed.decision.code, "DUPLICATE_ORDER");
        assert_eq!(vetoed.decision.stage, "execution");
        assert_eq!(vetoed.order_id, None);
        assert_eq!(vetoed.decision.request.tag, mft::oms::proposal_tag(b.id));
        assert_eq!(vetoed.decision.inputs["orders_today"], 1);
        assert_eq!(vetoed.decision.inputs["same_side_seconds_ago"], 10);
        assert!(
            vetoed
                .decision
                .reason
                .as_deref()
                .unwrap_or("")
                .contains("10s ago"),
            "{:?}",
            vetoed.decision.reason
        );
        assert!(
            r.store
                .orders_for_proposal(b.id)
                .await
                .expect("orders")
                .is_empty()
        );

        // /kill: each exit is audited as approved, with its order row.
        let reply = r
            .handler
            .handle(request(Command::Kill))
            .await
            .expect("kill");
        let Reply::Killed(report) = reply else {
            panic!("expected Killed, got {reply:?}");
        };
        assert_eq!(report.closed.len(), 1, "{}: {report:?}", db.name);
        let audit = r.store.risk_decisions(10).await.expect("audit");
        assert_eq!(audit.len(), 3);
        let exit = &audit[2];
        assert_eq!(
            (exit.decision.code.as_str(), exit.decision.stage.as_str()),
            ("APPROVED", "passed")
        );
        assert!(matches!(
            exit.decision.request.purpose,
            OrderPurpose::Exit { .. }
        ));
        assert_eq!(exit.decision.inputs["position_held"], 10);
        let exit_order = r
            .store
            .order_by_tag(&exit.decision.request.tag)
            .await
            .expect("read")
            .expect("the exit's order row");
        assert_eq!(exit.order_id, Some(exit_order.id), "{}", db.name);
        assert_eq!(report.closed[0].quantity, exit_order.request.quantity);
    }
}

#[tokio::test]
async fn kill_exits_pass_whatever_limits_stopped_the_entries() {
    for db in test_stores().await {
        let mut settings = Settings::default();
        settings.risk.max_orders_per_minute = 2;
        // So that the third INFY entry meets the rate limit rather than the duplicate check.
        settings.risk.duplicate_window_seconds = 0;
        let r = start(&db, settings, None).await;
        let a = propose(&r, &infy(), 1500, 10).await;
        let b = propose(&r, &reliance(), 1300, 5).await;
        assert_eq!(vetoed_code(&approve(&r, a.id).await), "EXECUTED");
        assert_eq!(vetoed_code(&approve(&r, b.id).await), "EXECUTED");
        // A third entry is over the per-minute limit.
        let c = propose(&r, &InstrumentKey::new("NSE", "INFY"), 1500, 1).await;
        assert_eq!(
            vetoed_code(&approve(&r, c.id).await),
            "ORDER_RATE",
            "{}",
            db.name
        );
        // Halted, outside the trading window, over the rate: /kill still closes everything.
        r.store.set_halt("test", r.clock.now()).await.expect("halt");
        r.clock.set(ist(15, 25));
        let Reply::Killed(report) = r
            .handler
            .handle(request(Command::Kill))
            .await
            .expect("kill")
        else {
            panic!("expected Killed");
        };
        assert_eq!(report.closed.len(), 2, "{}: {report:?}", db.name);
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        assert!(
            r.store
                .open_positions()
                .await
                .expect("positions")
                .is_empty()
        );
        let audit = r.store.risk_decisions(20).await.expect("audit");
        let codes: Vec<&str> = audit.iter().map(|e| e.decision.code.as_str()).collect();
        assert_eq!(
            codes,
            ["APPROVED", "APPROVED", "ORDER_RATE", "APPROVED", "APPROVED"],
            "{}",
            db.name
        );
    }
}

#[tokio::test]
async fn an_exit_larger_than_the_position_is_refused_and_audited() {
    for db in test_stores().await {
        let r = start(&db, Settings::default(), None).await;
        let a = propose(&r, &infy(), 1500, 10).await;
        assert_eq!(vetoed_code(&approve(&r, a.id).await), "EXECUTED");
        let exit = |qty: i64, side: Side| OrderRequest {
            key: infy(),
            side,
            quantity: qty,
            order_type: OrderType::Market,
            product: Product::Mis,
            tag: format!("mft-t{qty}{side}"),
            purpose: OrderPurpose::Exit {
                reason: "manual".into(),
            },
            reference_price: Paise::from_rupees(1500),
        };
        let oms = r.handler.oms();
        let book = oms.lock_book().await.expect("book lock");
        let too_large = oms.approve_exit_order(&book, exit(15, Side::Sell)).await;
        let wrong_side = oms.approve_exit_order(&book, exit(5, Side::Buy)).await;
        let fits = oms.approve_exit_order(&book, exit(10, Side::Sell)).await;
        book.release().await;
        match too_large {
            Err(OmsError::ExitRefused(DenyReason::ExitMismatch {
                quantity, position, ..
            })) => assert_eq!((quantity, position), (15, 10)),
            other => panic!("{}: expected EXIT_MISMATCH, got {other:?}", db.name),
        }
        assert!(matches!(
            wrong_side,
            Err(OmsError::ExitRefused(DenyReason::ExitMismatch { .. }))
        ));
        assert_eq!(fits.expect("a full exit is approved").inner().quantity, 10);
        let audit = r.store.risk_decisions(10).await.expect("audit");
        let refused: Vec<_> = audit
            .iter()
            .filter(|e| e.decision.code == "EXIT_MISMATCH")
            .collect();
        assert_eq!(refused.len(), 2, "{}: {audit:?}", db.name);
        assert_eq!(refused[0].decision.stage, "exit");
        assert_eq!(refused[0].decision.inputs["position_held"], 10);
        assert_eq!(refused[0].decision.request.quantity, 15);
        assert_eq!(refused[0].order_id, None);
    }
}

fn kite_reads(fake: &KiteMarginsFake) -> KiteRiskReads {
    let quotes = Arc::new(RequestLimiter::kite_quotes(Arc::new(
        mft::clock::SystemClock,
    )));
    KiteRiskReads::with_quote_limiter(&fake.url, API_KEY, ACCESS_TOKEN, quotes).expect("client")
}

fn buy_infy(qty: i64) -> OrderRequest {
    OrderRequest {
        key: infy(),
        side: Side::Buy,
        quantity: qty,
        order_type: OrderType::Limit(Paise(141_295)),
        product: Product::Cnc,
        tag: "mft-p9".into(),
        purpose: OrderPurpose::Entry { proposal_id: 9 },
        reference_price: Paise(141_295),
    }
}

#[tokio::test]
async fn kite_order_margin_over_http() {
    let fake = KiteMarginsFake::start().await;
    let reads = kite_reads(&fake);
    let m = reads.order_margin(&buy_infy(1)).await.expect("margin");
    // Kite's samples: total 1498 for the order, equity net 99725.05 available.
    assert_eq!(m.required, Paise::from_rupees(1498));
    assert_eq!(m.available, Paise(9_972_505));
    let seen = fake.seen();
    assert_eq!(seen.len(), 2);
    let post = &seen[0];
    assert_eq!(post.path, "/margins/orders");
    assert_eq!(
        post.authorization.as_deref(),
        Some(format!("token {API_KEY}:{ACCESS_TOKEN}").as_str())
    );
    assert_eq!(post.kite_version.as_deref(), Some("3"));
    assert!(
        post.content_type
            .as_deref()
            .unwrap_or("")
            .starts_with("application/json")
    );
    let body = post.body.clone().expect("a JSON body");
    assert_eq!(
        body,
        serde_json::json!([{
            "exchange": "NSE", "tradingsymbol": "INFY", "transaction_type": "BUY",
            "variety": "regular", "product": "CNC", "order_type": "LIMIT", "quantity": 1,
            "price": 1412.95, "trigger_price": 0.0
        }])
    );
    assert_eq!(seen[1].path, "/user/margins");

    // Kite's errors come back typed, the token never in the message.
    fake.fail_next(400, "InputException", "Invalid `tradingsymbol`.");
    let e = reads.order_margin(&buy_infy(1)).await.expect_err("refused");
    assert!(
        matches!(e, mft::market::MarketError::Kite { status: 400, .. }),
        "{e}"
    );
    assert!(e.to_string().contains("Invalid `tradingsymbol`"), "{e}");
    fake.fail_next(403, "TokenException", "Token is invalid or has expired.");
    let e = reads.order_margin(&buy_infy(1)).await.expect_err("expired");
    assert!(e.is_session_expired(), "{e}");
    assert!(!e.to_string().contains(ACCESS_TOKEN));
    let bad = KiteRiskReads::with_quote_limiter(
        &fake.url,
        API_KEY,
        "wrong",
        Arc::new(RequestLimiter::kite_quotes(Arc::new(
            mft::clock::SystemClock,
        ))),
    )
    .expect("client");
    assert!(
        bad.order_margin(&buy_infy(1))
            .await
            .expect_err("403")
            .is_session_expired()
    );
}

#[tokio::test]
async fn kite_circuit_band_over_http() {
    let fake = KiteMarginsFake::start().await;
    let reads = kite_reads(&fake);
    let band = reads
        .quote_circuit_band(&infy())
        .await
        .expect("quote")
        .expect("a band");
    assert_eq!(band.lower, Paise(125_070));
    assert_eq!(band.upper, Paise(152_860));
    let q = &fake.seen()[0];
    assert_eq!(q.path, "/quote");
    assert_eq!(q.query.as_deref(), Some("i=NSE%3AINFY"));
    assert_eq!(q.kite_version.as_deref(), Some("3"));
    // An instrument Kite does not answer for, and a band of zeros: no band.
    assert_eq!(
        reads.quote_circuit_band(&reliance()).await.expect("quote"),
        None
    );
    fake.set_band(0.0, 0.0);
    assert_eq!(
        reads.quote_circuit_band(&infy()).await.expect("quote"),
        None
    );
}

#[tokio::test]
async fn live_entries_are_checked_against_kites_margin_and_circuit_band() {
    let fake = KiteMarginsFake::start().await;
    for db in test_stores().await {
        let ports = RiskPorts::kite(kite_reads(&fake));
        let r = start(&db, Settings::default(), Some(ports)).await;
        // 10 x 1500 needs ₹15,000 at Kite; only ₹10,000 available.
        fake.set_required(15_000.0);
        fake.set_available(10_000.0);
        let a = propose(&r, &infy(), 1500, 10).await;
        let outcome = approve(&r, a.id).await;
        assert_eq!(
            outcome,
            Outcome::Vetoed(DenyReason::InsufficientCapital {
                needed: Paise::from_rupees(15_000),
                available: Paise::from_rupees(10_000),
            }),
            "{}",
            db.name
        );
        // Enough margin, but 1500 is above today's upper circuit (1499).
        fake.set_available(100_000.0);
        fake.set_band(1350.0, 1499.0);
        r.clock.advance(Duration::seconds(31));
        let b = propose(&r, &infy(), 1500, 10).await;
        assert_eq!(
            vetoed_code(&approve(&r, b.id).await),
            "CIRCUIT_LIMIT",
            "{}",
            db.name
        );
        // Inside the band: executed; the audit holds Kite's figures.
        fake.set_band(1350.0, 1650.0);
        r.clock.advance(Duration::seconds(31));
        let c = propose(&r, &infy(), 1500, 10).await;
        assert_eq!(
            vetoed_code(&approve(&r, c.id).await),
            "EXECUTED",
            "{}",
            db.name
        );
        let audit = r.store.risk_decisions(10).await.expect("audit");
        let codes: Vec<&str> = audit.iter().map(|e| e.decision.code.as_str()).collect();
        assert_eq!(codes, ["INSUFFICIENT_CAPITAL", "CIRCUIT_LIMIT", "APPROVED"]);
        assert_eq!(audit[2].decision.inputs["margin"]["required"], 1_500_000);
        assert_eq!(audit[2].decision.inputs["circuit_band"]["upper"], 165_000);
        // Kite failing: the entry fails, nothing is placed.
        fake.fail_next(500, "GeneralException", "Something went wrong");
        r.clock.advance(Duration::seconds(31));
        let d = propose(&r, &reliance(), 1300, 1).await;
        match approve(&r, d.id).await {
            Outcome::Failed { reason } => {
                assert!(reason.contains("the order was not placed"), "{reason}")
            }
            other => panic!("{}: expected Failed, got {other:?}", db.name),
        }
        assert!(
            r.store
                .orders_for_proposal(d.id)
                .await
                .expect("orders")
                .is_empty()
        );
        // Refused before Kite is asked: no margin call for a halted book.
        let calls = fake.seen().len();
        r.store.set_halt("test", r.clock.now()).await.expect("halt");
        r.clock.advance(Duration::seconds(31));
        let e = propose(&r, &reliance(), 1300, 1).await;
        assert_eq!(vetoed_code(&approve(&r, e.id).await), "HALTED");
        assert_eq!(
            fake.seen().len(),
            calls,
            "Kite was asked for a refused entry"
        );
    }
}
