//! Unit tests of the risk checks: one per deny code, plus the exits-always-pass rule.

use super::*;
use crate::clock::ManualClock;
use crate::config::Settings;
use crate::domain::{InstrumentKey, OrderType, Product, Side};
use chrono::TimeZone;

/// Settings with defaults everywhere (watchlist NSE:INFY, NSE:RELIANCE).
pub(crate) fn settings() -> Settings {
    Settings::default()
}

/// Wednesday 2026-11-25 at `h:m` IST.
pub(crate) fn ist(h: u32, m: u32) -> DateTime<Utc> {
    IST.with_ymd_and_hms(2026, 11, 25, h, m, 0)
        .single()
        .expect("valid IST time")
        .with_timezone(&Utc)
}

fn infy() -> InstrumentKey {
    InstrumentKey::new("NSE", "INFY")
}

fn entry(qty: i64, price_rupees: i64) -> OrderRequest {
    OrderRequest {
        key: infy(),
        side: Side::Buy,
        quantity: qty,
        order_type: OrderType::Market,
        product: Product::Mis,
        tag: "mft-p1".into(),
        purpose: OrderPurpose::Entry { proposal_id: 1 },
        reference_price: Paise::from_rupees(price_rupees),
    }
}

fn exit(qty: i64) -> OrderRequest {
    OrderRequest {
        side: Side::Sell,
        tag: "mft-x1".into(),
        purpose: OrderPurpose::Exit {
            reason: "stop".into(),
        },
        ..entry(qty, 1500)
    }
}

fn position(key: InstrumentKey, qty: i64, avg_rupees: i64) -> Position {
    Position {
        key,
        product: Product::Mis,
        quantity: qty,
        avg_price: Paise::from_rupees(avg_rupees),
        realized_pnl: Paise::ZERO,
        stop: None,
        target: None,
        opened_at: ist(9, 30),
        updated_at: ist(9, 30),
    }
}

fn ctx() -> RiskContext {
    RiskContext {
        last_price: Some(Paise::from_rupees(1500)),
        expires_at: Some(ist(10, 10)),
        ..RiskContext::default()
    }
}

fn engine_with(s: Settings, at: DateTime<Utc>) -> RiskEngine {
    RiskEngine::new(Arc::new(s), Arc::new(ManualClock::new(at)))
}

fn engine() -> RiskEngine {
    engine_with(settings(), ist(10, 0))
}

fn code(r: Result<RiskApproved<OrderRequest>, RiskRefused<OrderRequest>>) -> &'static str {
    match r {
        Ok(_) => "APPROVED",
        Err(e) => e.reason.code(),
    }
}

#[test]
fn a_plain_entry_is_approved_and_keeps_the_request() {
    let approved = engine().check(entry(10, 1500), &ctx()).expect("approved");
    assert_eq!(approved.inner().quantity, 10);
    assert_eq!(approved.into_inner().tag, "mft-p1");
}

#[test]
fn halted() {
    let c = RiskContext {
        halted: true,
        ..ctx()
    };
    assert_eq!(code(engine().check(entry(10, 1500), &c)), "HALTED");
}

#[test]
fn outside_trading_window_by_time_and_by_day() {
    assert_eq!(
        code(engine_with(settings(), ist(9, 19)).check(entry(10, 1500), &ctx())),
        "OUTSIDE_TRADING_WINDOW"
    );
    assert_eq!(
        code(engine_with(settings(), ist(15, 11)).check(entry(10, 1500), &ctx())),
        "OUTSIDE_TRADING_WINDOW"
    );
    assert_eq!(
        code(engine_with(settings(), ist(9, 20)).check(entry(10, 1500), &ctx())),
        "APPROVED"
    );
    // Saturday 2026-11-28.
    let saturday = ist(10, 0) + chrono::Duration::days(3);
    let r = engine_with(settings(), saturday).check(entry(10, 1500), &ctx());
    let err = r.expect_err("weekend refused");
    assert_eq!(err.reason.code(), "OUTSIDE_TRADING_WINDOW");
    assert!(err.reason.explanation().contains("Sat"), "{}", err.reason);
    // A custom list of days.
    let mut s = settings();
    s.risk.trading_days = "Mon,Tue".parse().expect("valid");
    assert_eq!(
        code(engine_with(s, ist(10, 0)).check(entry(10, 1500), &ctx())),
        "OUTSIDE_TRADING_WINDOW"
    );
}

#[test]
fn instrument_not_allowed_uses_the_watchlist_or_the_explicit_list() {
    let mut req = entry(10, 1500);
    req.key = InstrumentKey::new("NSE", "TCS");
    assert_eq!(
        code(engine().check(req.clone(), &ctx())),
        "INSTRUMENT_NOT_ALLOWED"
    );
    let mut s = settings();
    s.risk.allowed_instruments = vec![InstrumentKey::new("NSE", "TCS")];
    assert_eq!(
        code(engine_with(s.clone(), ist(10, 0)).check(req, &ctx())),
        "APPROVED"
    );
    assert_eq!(
        code(engine_with(s, ist(10, 0)).check(entry(10, 1500), &ctx())),
        "INSTRUMENT_NOT_ALLOWED"
    );
}

#[test]
fn proposal_expired() {
    let c = RiskContext {
        expires_at: Some(ist(10, 0)),
        ..ctx()
    };
    assert_eq!(
        code(engine().check(entry(10, 1500), &c)),
        "PROPOSAL_EXPIRED"
    );
}

#[test]
fn price_deviation() {
    let c = RiskContext {
        last_price: Some(Paise::from_rupees(1520)),
        ..ctx()
    };
    let err = engine().check(entry(10, 1500), &c).expect_err("refused");
    match err.reason {
        DenyReason::PriceDeviation { deviation_pct, .. } => {
            assert!((deviation_pct - 1.3157).abs() < 0.01, "{deviation_pct}")
        }
        other => panic!("unexpected {other}"),
    }
    let near = RiskContext {
        last_price: Some(Paise::from_rupees(1510)),
        ..ctx()
    };
    assert_eq!(code(engine().check(entry(10, 1500), &near)), "APPROVED");
}

#[test]
fn max_position_value_counts_the_existing_position() {
    // Default limit ₹50,000: 34 x 1500 = 51,000.
    assert_eq!(
        code(engine().check(entry(34, 1500), &ctx())),
        "MAX_POSITION_VALUE"
    );
    let c = RiskContext {
        positions: vec![(position(infy(), 30, 1500), Some(Paise::from_rupees(1500)))],
        ..ctx()
    };
    assert_eq!(
        code(engine().check(entry(10, 1500), &c)),
        "MAX_POSITION_VALUE"
    );
}

#[test]
fn max_open_positions() {
    let c = RiskContext {
        positions: ["A", "B", "C"]
            .iter()
            .map(|s| (position(InstrumentKey::new("NSE", s), 1, 100), None))
            .collect(),
        ..ctx()
    };
    assert_eq!(
        code(engine().check(entry(10, 1500), &c)),
        "MAX_OPEN_POSITIONS"
    );
    // Closed positions do not count.
    let mut c2 = c.clone();
    c2.positions[0].0.quantity = 0;
    assert_eq!(code(engine().check(entry(10, 1500), &c2)), "APPROVED");
}

#[test]
fn max_orders_per_day() {
    let c = RiskContext {
        orders_today: 20,
        ..ctx()
    };
    assert_eq!(
        code(engine().check(entry(10, 1500), &c)),
        "MAX_ORDERS_PER_DAY"
    );
}

#[test]
fn max_daily_loss_counts_realized_and_unrealized() {
    let realized = RiskContext {
        realized_today: Paise::from_rupees(-2_000),
        ..ctx()
    };
    assert_eq!(
        code(engine().check(entry(10, 1500), &realized)),
        "MAX_DAILY_LOSS"
    );
    // -1,000 realized and 10 x -100 unrealized on another position = -2,000.
    let mixed = RiskContext {
        realized_today: Paise::from_rupees(-1_000),
        positions: vec![(
            position(InstrumentKey::new("NSE", "RELIANCE"), 10, 1300),
            Some(Paise::from_rupees(1200)),
        )],
        ..ctx()
    };
    assert_eq!(mixed.day_loss(), Paise::from_rupees(2_000));
    assert_eq!(
        code(engine().check(entry(10, 1500), &mixed)),
        "MAX_DAILY_LOSS"
    );
    let almost = RiskContext {
        realized_today: Paise::from_rupees(-1_999),
        ..ctx()
    };
    assert_eq!(code(engine().check(entry(10, 1500), &almost)), "APPROVED");
}

#[test]
fn an_old_losing_holding_does_not_trip_the_daily_loss_limit() {
    // 10 RELIANCE carried at 1,300 (lifetime -3,000 at 1,000); yesterday's close 1,010, so
    // -2,900 of that was earned before today and today's move is only -100.
    let carried = RiskContext {
        positions: vec![(
            position(InstrumentKey::new("NSE", "RELIANCE"), 10, 1300),
            Some(Paise::from_rupees(1000)),
        )],
        earned_before_today: Paise::from_rupees(-2_900),
        ..ctx()
    };
    assert_eq!(carried.unrealized(), Paise::from_rupees(-3_000));
    assert_eq!(carried.day_pnl(), Paise::from_rupees(-100));
    assert_eq!(code(engine().check(entry(10, 1500), &carried)), "APPROVED");
}

#[test]
fn insufficient_capital_counts_capital_in_use_and_leverage() {
    let mut s = settings();
    s.risk.max_position_value = Paise::from_rupees(1_000_000);
    s.risk.max_price_deviation_pct = 100.0;
    let c = RiskContext {
        positions: vec![(
            position(InstrumentKey::new("NSE", "RELIANCE"), 60, 1000),
            None,
        )],
        ..ctx()
    };
    // ₹1,00,000 capital, ₹60,000 in use: 30 x 1500 = 45,000 does not fit.
    let err = engine_with(s.clone(), ist(10, 0))
        .check(entry(30, 1500), &c)
        .expect_err("refused");
    assert_eq!(
        err.reason,
        DenyReason::InsufficientCapital {
            needed: Paise::from_rupees(45_000),
            available: Paise::from_rupees(40_000),
        }
    );
    s.trading.leverage = 2.0;
    assert_eq!(
        code(engine_with(s, ist(10, 0)).check(entry(30, 1500), &c)),
        "APPROVED"
    );
}

#[test]
fn exits_pass_every_check() {
    let worst = RiskContext {
        halted: true,
        paused: true,
        last_price: Some(Paise::from_rupees(3000)),
        positions: (0..5)
            .map(|i| {
                (
                    position(InstrumentKey::new("NSE", &format!("S{i}")), 100, 1000),
                    None,
                )
            })
            .collect(),
        orders_today: 1000,
        realized_today: Paise::from_rupees(-100_000),
        earned_before_today: Paise::ZERO,
        expires_at: Some(ist(0, 0)),
        price_at: None,
        max_price_age_seconds: Some(1),
    };
    let late = engine_with(settings(), ist(23, 0));
    let mut req = exit(1000);
    req.key = InstrumentKey::new("NSE", "NOT_LISTED");
    assert_eq!(code(late.check(req, &worst)), "APPROVED");
}

#[test]
fn pause_refuses_entries_with_paused() {
    let c = RiskContext {
        paused: true,
        ..ctx()
    };
    let e = engine();
    let refused = e.check(entry(10, 1500), &c).unwrap_err();
    assert_eq!(refused.reason.code(), "PAUSED");
}

#[test]
fn stale_price_only_when_freshness_is_required() {
    let now = ist(10, 0);
    let fresh = RiskContext {
        price_at: Some(now - chrono::Duration::seconds(59)),
        max_price_age_seconds: Some(60),
        ..ctx()
    };
    assert_eq!(code(engine().check(entry(10, 1500), &fresh)), "APPROVED");
    let old = RiskContext {
        price_at: Some(now - chrono::Duration::seconds(61)),
        ..fresh.clone()
    };
    let r = engine().check(entry(10, 1500), &old).unwrap_err();
    assert_eq!(r.reason.code(), "STALE_PRICE");
    assert!(
        r.reason.to_string().contains("61s old (max 60s)"),
        "{}",
        r.reason
    );
    let none = RiskContext {
        price_at: None,
        ..fresh.clone()
    };
    assert_eq!(code(engine().check(entry(10, 1500), &none)), "STALE_PRICE");
    // Outside market hours (or without a session) the stored candle serves, however old.
    let relaxed = RiskContext {
        max_price_age_seconds: None,
        ..old
    };
    assert_eq!(code(engine().check(entry(10, 1500), &relaxed)), "APPROVED");
    // Exits are never blocked.
    let mut exit = entry(10, 1500);
    exit.purpose = OrderPurpose::Exit {
        reason: "stop".into(),
    };
    assert!(engine().check(exit, &none).is_ok());
}
