//! Unit tests of the risk checks: one per deny code, plus the exits-always-pass rule.

use super::*;
use crate::clock::ManualClock;
use crate::config::Settings;
use crate::domain::{CircuitBand, OrderMargin, RecentOrder};
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
fn entries_are_valued_at_their_slipped_fill() {
    // 33 x 1,500 = 49,500 passes the ₹50,000 limit at the last price; the paper fill at 20 bps
    // (1,503) makes it 49,599, still in; at 40 bps (1,506) 49,698; 34 never passes.
    let paper = |bps: f64| RiskContext {
        fill_slippage_bps: bps,
        tick_size: Some(0.05),
        ..ctx()
    };
    assert_eq!(
        code(engine().check(entry(33, 1500), &paper(40.0))),
        "APPROVED"
    );
    // 33 x 1,515.15 (101 bps, on the tick) = 49,999.95 passes; 102 bps (1,515.30) makes
    // 50,004.90, over.
    assert_eq!(
        code(engine().check(entry(33, 1500), &paper(101.0))),
        "APPROVED"
    );
    let over = engine()
        .check(entry(33, 1500), &paper(102.0))
        .expect_err("valued over the limit at its fill");
    match over.reason {
        DenyReason::MaxPositionValue { value, .. } => assert_eq!(value, Paise(5_000_490)),
        other => panic!("unexpected {other}"),
    }
    // A short is valued at the last price, not at its (lower) fill.
    let mut short = entry(33, 1500);
    short.side = Side::Sell;
    assert_eq!(code(engine().check(short, &paper(102.0))), "APPROVED");
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
        // A burst of identical small orders in the last seconds, the same side included.
        recent_orders: (0..60)
            .map(|i| recent("NOT_LISTED", Side::Sell, i % 5, 10))
            .collect(),
        circuit_band: Some(CircuitBand {
            lower: Paise::from_rupees(1),
            upper: Paise::from_rupees(2),
        }),
        margin: Some(OrderMargin {
            required: Paise::from_rupees(1_000_000),
            available: Paise::ZERO,
        }),
        working_entries: vec![working("S9", "MFTP9E", 1000)],
        fill_slippage_bps: 10_000.0,
        tick_size: Some(0.05),
    };
    let mut worst = worst;
    let not_listed = InstrumentKey::new("NSE", "NOT_LISTED");
    worst
        .positions
        .push((position(not_listed.clone(), 1000, 1000), None));
    let late = engine_with(settings(), ist(23, 0));
    let mut req = exit(1000);
    req.key = not_listed;
    let approved = late
        .check(req, &worst)
        .expect("a /kill exit passes whatever the limits");
    assert_eq!(approved.decision().code, "APPROVED");
    assert_eq!(approved.decision().stage, "passed");
    assert_eq!(approved.decision().inputs["position_held"], 1000);
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
    // Exits are never blocked by freshness.
    let mut exit = entry(10, 1500);
    exit.side = Side::Sell;
    exit.purpose = OrderPurpose::Exit {
        reason: "stop".into(),
    };
    let holding = RiskContext {
        positions: vec![(position(infy(), 10, 1500), None)],
        ..none
    };
    assert!(engine().check(exit, &holding).is_ok());
}

/// An order recorded `secs_ago` seconds before 10:00 IST, worth `value_rupees`.
fn recent(symbol: &str, side: Side, secs_ago: i64, value_rupees: i64) -> RecentOrder {
    RecentOrder {
        tag: format!("mft-o{symbol}{secs_ago}{value_rupees}"),
        key: InstrumentKey::new("NSE", symbol),
        side,
        entry: true,
        at: ist(10, 0) - chrono::Duration::seconds(secs_ago),
        value: Paise::from_rupees(value_rupees),
    }
}

fn with_recent(orders: Vec<RecentOrder>) -> RiskContext {
    RiskContext {
        recent_orders: orders,
        ..ctx()
    }
}

#[test]
fn duplicate_order_within_the_window_inclusive() {
    // Default window 30 s.
    let at_edge = with_recent(vec![recent("INFY", Side::Buy, 30, 15_000)]);
    let err = engine()
        .check(entry(10, 1500), &at_edge)
        .expect_err("exactly 30 s ago is within the window");
    assert_eq!(
        err.reason,
        DenyReason::DuplicateOrder {
            key: infy(),
            side: Side::Buy,
            seconds_ago: 30,
            window_seconds: 30,
        }
    );
    assert_eq!(err.decision.stage, "execution");
    assert_eq!(err.decision.inputs["same_side_seconds_ago"], 30);
    let outside = with_recent(vec![recent("INFY", Side::Buy, 31, 15_000)]);
    assert_eq!(code(engine().check(entry(10, 1500), &outside)), "APPROVED");
    // Another side or another instrument is not a duplicate.
    let other = with_recent(vec![
        recent("INFY", Side::Sell, 1, 15_000),
        recent("RELIANCE", Side::Buy, 1, 15_000),
    ]);
    assert_eq!(code(engine().check(entry(10, 1500), &other)), "APPROVED");
    // The order's own earlier record (a retried placement) is not its duplicate.
    let mut own = recent("INFY", Side::Buy, 1, 15_000);
    own.tag = "mft-p1".into();
    assert_eq!(
        code(engine().check(entry(10, 1500), &with_recent(vec![own]))),
        "APPROVED"
    );
    // 0 turns the check off.
    let mut s = settings();
    s.risk.duplicate_window_seconds = 0;
    let just_now = with_recent(vec![recent("INFY", Side::Buy, 0, 15_000)]);
    assert_eq!(
        code(engine_with(s, ist(10, 0)).check(entry(10, 1500), &just_now)),
        "APPROVED"
    );
}

#[test]
fn order_rate_counts_the_last_sixty_seconds() {
    let mut s = settings();
    s.risk.max_orders_per_minute = 5;
    let e = engine_with(s, ist(10, 0));
    let orders = |n: i64, secs: i64| -> Vec<RecentOrder> {
        (0..n)
            .map(|i| recent(&format!("X{i}"), Side::Buy, secs, 15_000))
            .collect()
    };
    // 4 in the last minute: the 5th is allowed.
    assert_eq!(
        code(e.check(entry(10, 1500), &with_recent(orders(4, 59)))),
        "APPROVED"
    );
    // 5 already: the 6th is refused.
    let err = e
        .check(entry(10, 1500), &with_recent(orders(5, 59)))
        .expect_err("rate");
    assert_eq!(
        err.reason,
        DenyReason::OrderRate {
            last_minute: 5,
            max: 5
        }
    );
    // Exactly 60 s ago is outside the minute.
    assert_eq!(
        code(e.check(entry(10, 1500), &with_recent(orders(5, 60)))),
        "APPROVED"
    );
}

#[test]
fn circuit_limit_when_a_band_is_known() {
    let band = |lo: i64, hi: i64| RiskContext {
        circuit_band: Some(CircuitBand {
            lower: Paise::from_rupees(lo),
            upper: Paise::from_rupees(hi),
        }),
        ..ctx()
    };
    let err = engine()
        .check(entry(10, 1500), &band(1350, 1499))
        .expect_err("above the upper circuit");
    assert_eq!(
        err.reason,
        DenyReason::CircuitLimit {
            price: Paise::from_rupees(1500),
            lower: Paise::from_rupees(1350),
            upper: Paise::from_rupees(1499),
        }
    );
    assert_eq!(
        code(engine().check(entry(10, 1500), &band(1501, 1650))),
        "CIRCUIT_LIMIT"
    );
    // The limits themselves are inside the band.
    assert_eq!(
        code(engine().check(entry(10, 1500), &band(1350, 1500))),
        "APPROVED"
    );
    assert_eq!(
        code(engine().check(entry(10, 1500), &band(1500, 1650))),
        "APPROVED"
    );
    // A limit order is checked at its limit price.
    let mut limit = entry(10, 1500);
    limit.order_type = OrderType::Limit(Paise::from_rupees(1510));
    assert_eq!(
        code(engine().check(limit, &band(1350, 1505))),
        "CIRCUIT_LIMIT"
    );
    // No band (paper) or Kite's zeros: skipped.
    assert_eq!(code(engine().check(entry(10, 1500), &ctx())), "APPROVED");
    assert_eq!(
        code(engine().check(entry(10, 1500), &band(0, 0))),
        "APPROVED"
    );
}

fn values(rupees: &[i64]) -> Vec<RecentOrder> {
    // Old enough to be neither duplicates nor in the last minute.
    rupees
        .iter()
        .enumerate()
        .map(|(i, r)| recent(&format!("V{i}"), Side::Buy, 3600 + i as i64, *r))
        .collect()
}

#[test]
fn value_anomaly_needs_twenty_orders() {
    // 19 orders of ₹1,000: too few to judge a ₹15,000 order.
    let few = with_recent(values(&[1_000; 19]));
    assert_eq!(code(engine().check(entry(10, 1500), &few)), "APPROVED");
    // Exactly 20: judged (σ = 0, so anything above the mean is anomalous).
    let twenty = with_recent(values(&[1_000; 20]));
    let err = engine()
        .check(entry(10, 1500), &twenty)
        .expect_err("anomalous");
    assert_eq!(
        err.reason,
        DenyReason::OrderValueAnomaly {
            value: Paise::from_rupees(15_000),
            mean: Paise::from_rupees(1_000),
            sigma: Paise::ZERO,
            threshold: Paise::from_rupees(1_000),
            sample: 20,
        }
    );
    assert_eq!(err.decision.inputs["value_stats"]["sample"], 20);
}

#[test]
fn value_anomaly_with_zero_sigma_allows_the_mean_itself() {
    let same = with_recent(values(&[15_000; 20]));
    assert_eq!(code(engine().check(entry(10, 1500), &same)), "APPROVED");
    // One paisa more is above mean + 3 x 0.
    let mut req = entry(10, 1500);
    req.order_type = OrderType::Limit(Paise(150_001));
    req.reference_price = Paise(150_001);
    let mut s = settings();
    s.risk.max_price_deviation_pct = 100.0;
    assert_eq!(
        code(engine_with(s, ist(10, 0)).check(req, &same)),
        "ORDER_VALUE_ANOMALY"
    );
}

#[test]
fn value_anomaly_uses_mean_plus_three_sigma_of_the_last_fifty() {
    // Alternating ₹10,000 and ₹14,000: mean 12,000, σ 2,000, threshold 18,000.
    let alternating: Vec<i64> = (0..50)
        .map(|i| if i % 2 == 0 { 10_000 } else { 14_000 })
        .collect();
    let mut s = settings();
    s.risk.max_price_deviation_pct = 100.0;
    s.risk.max_position_value = Paise::from_rupees(1_000_000);
    s.trading.leverage = 5.0;
    let e = engine_with(s, ist(10, 0));
    let c = with_recent(values(&alternating));
    let stats = ValueStats::of(
        &alternating
            .iter()
            .map(|r| Paise::from_rupees(*r))
            .collect::<Vec<_>>(),
    )
    .expect("50 values");
    assert_eq!(stats.mean, Paise::from_rupees(12_000));
    assert_eq!(stats.sigma, Paise::from_rupees(2_000));
    assert_eq!(stats.threshold, Paise::from_rupees(18_000));
    // Exactly at the threshold passes; above it is refused.
    assert_eq!(code(e.check(entry(12, 1500), &c)), "APPROVED");
    let mut above = entry(12, 1500);
    above.reference_price = Paise(150_001);
    assert_eq!(code(e.check(above, &c)), "ORDER_VALUE_ANOMALY");
    // Older orders beyond the last 50 do not count: 50 huge ones followed by the 50 above.
    let mut old_then_new: Vec<i64> = vec![1_000_000; 50];
    old_then_new.extend(&alternating);
    let c = with_recent(values(&old_then_new));
    assert_eq!(code(e.check(entry(13, 1500), &c)), "ORDER_VALUE_ANOMALY");
}

#[test]
fn kite_margin_refuses_with_insufficient_capital() {
    let c = RiskContext {
        margin: Some(OrderMargin {
            required: Paise::from_rupees(3_001),
            available: Paise::from_rupees(3_000),
        }),
        ..ctx()
    };
    let err = engine().check(entry(10, 1500), &c).expect_err("margin");
    assert_eq!(
        err.reason,
        DenyReason::InsufficientCapital {
            needed: Paise::from_rupees(3_001),
            available: Paise::from_rupees(3_000),
        }
    );
    assert_eq!(err.decision.stage, "exposure");
    assert_eq!(err.decision.inputs["margin"]["required"], 300_100);
    let enough = RiskContext {
        margin: Some(OrderMargin {
            required: Paise::from_rupees(3_000),
            available: Paise::from_rupees(3_000),
        }),
        ..ctx()
    };
    assert_eq!(code(engine().check(entry(10, 1500), &enough)), "APPROVED");
}

#[test]
fn exits_must_close_an_open_position() {
    let long10 = RiskContext {
        positions: vec![(position(infy(), 10, 1500), None)],
        ..RiskContext::default()
    };
    // A sell of up to 10 closes the long.
    assert_eq!(code(engine().check(exit(10), &long10)), "APPROVED");
    assert_eq!(code(engine().check(exit(1), &long10)), "APPROVED");
    // Larger than the position.
    let err = engine().check(exit(11), &long10).expect_err("too large");
    assert_eq!(
        err.reason,
        DenyReason::ExitMismatch {
            key: infy(),
            side: Side::Sell,
            quantity: 11,
            position: 10,
        }
    );
    assert_eq!(err.decision.stage, "exit");
    assert_eq!(err.decision.code, "EXIT_MISMATCH");
    // The same side adds to the position: not an exit.
    let mut buy = exit(5);
    buy.side = Side::Buy;
    assert_eq!(code(engine().check(buy, &long10)), "EXIT_MISMATCH");
    // No position, a zero quantity, another product.
    assert_eq!(
        code(engine().check(exit(1), &RiskContext::default())),
        "EXIT_MISMATCH"
    );
    assert_eq!(code(engine().check(exit(0), &long10)), "EXIT_MISMATCH");
    let mut cnc = exit(5);
    cnc.product = Product::Cnc;
    assert_eq!(code(engine().check(cnc, &long10)), "EXIT_MISMATCH");
    // A short is closed by a buy.
    let short = RiskContext {
        positions: vec![(position(infy(), -4, 1500), None)],
        ..RiskContext::default()
    };
    let mut cover = exit(4);
    cover.side = Side::Buy;
    assert_eq!(code(engine().check(cover, &short)), "APPROVED");
}

#[test]
fn stages_run_validity_then_trading_state_then_exposure_then_execution() {
    // Outside the window and halted: validity decides first.
    let halted = RiskContext {
        halted: true,
        ..ctx()
    };
    let r = engine_with(settings(), ist(9, 0))
        .check(entry(10, 1500), &halted)
        .expect_err("refused");
    assert_eq!(
        (r.reason.code(), r.decision.stage.as_str()),
        ("OUTSIDE_TRADING_WINDOW", "validity")
    );
    // Halted with a duplicate: trading state before execution.
    let both = RiskContext {
        halted: true,
        recent_orders: vec![recent("INFY", Side::Buy, 1, 15_000)],
        ..ctx()
    };
    let r = engine().check(entry(10, 1500), &both).expect_err("refused");
    assert_eq!(
        (r.reason.code(), r.decision.stage.as_str()),
        ("HALTED", "trading_state")
    );
    // Too many orders today and a duplicate: exposure before execution.
    let day = RiskContext {
        orders_today: 20,
        recent_orders: vec![recent("INFY", Side::Buy, 1, 15_000)],
        ..ctx()
    };
    let r = engine().check(entry(10, 1500), &day).expect_err("refused");
    assert_eq!(
        (r.reason.code(), r.decision.stage.as_str()),
        ("MAX_ORDERS_PER_DAY", "exposure")
    );
}

#[test]
fn every_decision_carries_its_inputs() {
    let c = RiskContext {
        orders_today: 3,
        recent_orders: vec![recent("RELIANCE", Side::Buy, 10, 5_000)],
        ..ctx()
    };
    let a = engine().check(entry(10, 1500), &c).expect("approved");
    let d = a.decision();
    assert!(d.approved());
    assert_eq!(d.request.tag, "mft-p1");
    assert_eq!(d.at, ist(10, 0));
    assert_eq!(d.reason, None);
    assert_eq!(d.inputs["orders_today"], 3);
    assert_eq!(d.inputs["orders_last_minute"], 1);
    assert_eq!(d.inputs["order_value"], 1_500_000);
    assert_eq!(d.inputs["last_price"], 150_000);
    assert_eq!(d.inputs["purpose"], "entry");
}

#[test]
fn every_code_is_listed() {
    let reasons = [
        DenyReason::ExitMismatch {
            key: infy(),
            side: Side::Buy,
            quantity: 1,
            position: 0,
        },
        DenyReason::DuplicateOrder {
            key: infy(),
            side: Side::Buy,
            seconds_ago: 1,
            window_seconds: 30,
        },
        DenyReason::OrderRate {
            last_minute: 1,
            max: 1,
        },
        DenyReason::CircuitLimit {
            price: Paise(1),
            lower: Paise(2),
            upper: Paise(3),
        },
        DenyReason::OrderValueAnomaly {
            value: Paise(1),
            mean: Paise(1),
            sigma: Paise(1),
            threshold: Paise(1),
            sample: 20,
        },
        DenyReason::Halted,
        DenyReason::Paused,
    ];
    for r in reasons {
        assert!(DenyReason::CODES.contains(&r.code()), "{}", r.code());
    }
    let mut codes = DenyReason::CODES.to_vec();
    codes.sort();
    codes.dedup();
    assert_eq!(codes.len(), DenyReason::CODES.len(), "codes are unique");
}

fn working(symbol: &str, tag: &str, qty: i64) -> WorkingEntry {
    WorkingEntry {
        tag: tag.into(),
        key: InstrumentKey::new("NSE", symbol),
        product: Product::Mis,
        quantity: qty,
        price: Paise::from_rupees(1500),
    }
}

#[test]
fn working_entries_count_as_positions_they_may_open() {
    let mut s = settings();
    s.risk.max_open_positions = 3;
    s.risk.max_position_value = Paise::from_rupees(20_000);
    let e = engine_with(s, ist(10, 0));
    // Three entries still working elsewhere (live LIMITs waiting for their price): a fourth
    // instrument would make four positions once they fill.
    let mut c = ctx();
    c.working_entries = vec![
        working("S0", "MFTP10E", 5),
        working("S1", "MFTP11E", 5),
        working("S2", "MFTP12E", 5),
    ];
    assert_eq!(code(e.check(entry(5, 1500), &c)), "MAX_OPEN_POSITIONS");
    // Filled or cancelled, they stop counting.
    c.working_entries.clear();
    assert_eq!(code(e.check(entry(5, 1500), &c)), "APPROVED");
    // One working in the same instrument: its quantity counts toward the position's value.
    c.working_entries = vec![working("INFY", "MFTP13E", 10)];
    assert_eq!(code(e.check(entry(5, 1500), &c)), "MAX_POSITION_VALUE");
    assert_eq!(code(e.check(entry(3, 1500), &c)), "APPROVED");
    // A placement of the very order that is working (a retry) does not count itself.
    c.working_entries = vec![working("INFY", "mft-p1", 10)];
    assert_eq!(code(e.check(entry(10, 1500), &c)), "APPROVED");
}

#[test]
fn working_entries_use_capital() {
    let mut s = settings();
    s.trading.capital = Paise::from_rupees(20_000);
    s.trading.leverage = 1.0;
    s.risk.max_position_value = Paise::from_rupees(1_000_000);
    let e = engine_with(s, ist(10, 0));
    let mut c = ctx();
    c.working_entries = vec![working("S0", "MFTP10E", 10)];
    // 15,000 waiting + 7,500 asked > 20,000.
    assert_eq!(code(e.check(entry(5, 1500), &c)), "INSUFFICIENT_CAPITAL");
    assert_eq!(code(e.check(entry(3, 1500), &c)), "APPROVED");
}

#[test]
fn the_live_ramp_follows_the_date_without_a_restart() {
    let mut s = settings();
    s.trading.capital = Paise::from_rupees(100_000);
    s.trading.leverage = 1.0;
    s.risk.max_position_value = Paise::from_rupees(1_000_000);
    s.live.start_fraction = 0.1;
    // The ramp's last day is Wednesday 25th (the day of `ist`).
    s.live.capped_until = Some(chrono::NaiveDate::from_ymd_opt(2026, 11, 25).expect("date"));
    let clock = ManualClock::new(ist(10, 0));
    let e = RiskEngine::new(Arc::new(s), Arc::new(clock.clone()));
    let c = ctx();
    // 10 x 1,500 = 15,000 is more than the ramp's 10,000 ...
    assert_eq!(code(e.check(entry(10, 1500), &c)), "INSUFFICIENT_CAPITAL");
    assert_eq!(code(e.check(entry(6, 1500), &c)), "APPROVED");
    // ... and well inside the whole 1,00,000 the next day, in the same process.
    clock.set(ist(10, 0) + chrono::Duration::days(1));
    let mut c = c;
    c.expires_at = Some(clock.now() + chrono::Duration::minutes(10));
    assert_eq!(code(e.check(entry(10, 1500), &c)), "APPROVED");
}
