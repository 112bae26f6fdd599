//! Crash anywhere: an approval is cut off at each of its await points between the tap and the
//! broker's acknowledgement (its future dropped there, as a killed process stops), then the
//! service restarts on the same database and the same exchange: start-up recovery runs and the
//! operator taps again. Over every cut point, on every test database: 0 duplicate orders at the
//! exchange, 0 orders the exchange filled that the store does not know, and every proposal ends
//! in a final state.
//!
//! The exchange is a test broker that outlives the "process" (like Kite), remembers each order by
//! tag, and yields between accepting an order and answering, so a cut can fall after the
//! exchange has the order but before the service hears of it.

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, TimeZone, Utc};

use mft::app::handler::{Handler, NoScanner};
use mft::clock::{Clock, IST, ManualClock};
use mft::config::{Mode, Settings};
use mft::domain::{
    Actor, Candle, Command, InstrumentKey, Interval, NewProposal, OrderRequest, OrderState, Paise,
    Product, ProposalStatus, Request, Side,
};
use mft::oms::{Broker, BrokerAck, BrokerError};
use mft::risk::RiskApproved;
use mft::store::Store;
use support::cut::CutAfter;
use support::db::test_stores;
use support::notifier::RecordingNotifier;

/// The venue: survives restarts of the service, fills every order at 100, keeps orders by tag.
#[derive(Default)]
struct Exchange {
    orders: Mutex<HashMap<String, Vec<BrokerAck>>>,
}

struct ExchangeBroker(Arc<Exchange>);

#[async_trait::async_trait]
impl Broker for ExchangeBroker {
    fn name(&self) -> &str {
        "exchange"
    }

    fn mode(&self) -> Mode {
        Mode::Paper
    }

    async fn place(&self, order: RiskApproved<OrderRequest>) -> Result<BrokerAck, BrokerError> {
        let req = order.into_inner();
        tokio::task::yield_now().await;
        let ack = BrokerAck::Filled {
            broker_order_id: format!("X-{}", req.tag),
            price: Paise::from_rupees(100),
            quantity: req.quantity,
            at: start(),
        };
        self.0
            .orders
            .lock()
            .expect("exchange")
            .entry(req.tag.clone())
            .or_default()
            .push(ack.clone());
        // Accepted at the venue; the answer is still on its way back.
        tokio::task::yield_now().await;
        Ok(ack)
    }

    async fn cancel(&self, _broker_order_id: &str) -> Result<(), BrokerError> {
        Ok(())
    }

    async fn find_by_tag(&self, tag: &str) -> Result<Option<BrokerAck>, BrokerError> {
        Ok(self
            .0
            .orders
            .lock()
            .expect("exchange")
            .get(tag)
            .and_then(|v| v.first().cloned()))
    }
}

fn start() -> DateTime<Utc> {
    IST.with_ymd_and_hms(2026, 11, 25, 10, 0, 0)
        .single()
        .expect("valid time")
        .with_timezone(&Utc)
}

fn settings() -> Settings {
    let mut s = Settings::default();
    s.risk.trading_window = "00:00-23:59".parse().expect("valid");
    s.risk.trading_days = "Mon-Sun".parse().expect("valid");
    s.risk.max_orders_per_day = 3000;
    s.risk.max_open_positions = 1000;
    s.risk.max_position_value = Paise::from_rupees(1_000_000);
    s.risk.allowed_instruments = (0..1000)
        .map(|i| InstrumentKey::new("NSE", &format!("C{i}")))
        .collect();
    s
}

fn service(store: &Store, clock: &ManualClock, exchange: &Arc<Exchange>) -> Handler {
    let clock: Arc<dyn Clock> = Arc::new(clock.clone());
    Handler::new(
        store.clone(),
        Arc::new(settings()),
        clock,
        Arc::new(ExchangeBroker(exchange.clone())),
        Arc::new(RecordingNotifier::default()),
        Arc::new(NoScanner),
    )
}

fn tap(id: i64) -> Request {
    Request {
        command: Command::Approve { proposal_id: id },
        actor: Actor::Telegram { user_id: 1 },
    }
}

#[tokio::test]
async fn a_crash_at_any_await_point_of_an_approval_neither_duplicates_nor_loses_orders() {
    for db in test_stores().await {
        let name = db.name;
        let clock = ManualClock::new(start());
        let exchange = Arc::new(Exchange::default());
        let mut cut_points = 0usize;
        let mut settled_by = HashMap::<&'static str, usize>::new();
        for budget in 0.. {
            // A fresh instrument per cut, so positions and pending proposals never interact.
            let key = InstrumentKey::new("NSE", &format!("C{budget}"));
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
                    rationale: "crash".into(),
                    created_at: now,
                    expires_at: now + Duration::minutes(10),
                })
                .await
                .expect("insert")
                .expect("a new proposal");

            // The process that crashes has its own connections: closing them after the cut is
            // its death (the server commits or rolls back what was in flight, atomically), and
            // the restarted service starts only after that.
            let doomed = Store::connect(&db.url).await.expect("connect");
            let before = service(&doomed, &clock, &exchange);
            let cut = CutAfter::new(async move { before.handle(tap(p.id)).await }, budget).await;
            let completed = cut.is_some();
            doomed.close().await;

            // Restart: a new service on the same database and exchange, recovery first, then
            // the operator taps the card again.
            let after = service(&db.store, &clock, &exchange);
            tokio::time::timeout(std::time::Duration::from_secs(30), after.recover())
                .await
                .unwrap_or_else(|_| panic!("{name}: recovery hangs after a cut at {budget} polls"))
                .expect("recovery");
            let _ =
                tokio::time::timeout(std::time::Duration::from_secs(30), after.handle(tap(p.id)))
                    .await
                    .unwrap_or_else(|_| {
                        panic!("{name}: the second tap hangs after a cut at {budget} polls")
                    })
                    .expect("the second tap");

            let status = db
                .store
                .proposal(p.id)
                .await
                .expect("read")
                .expect("exists")
                .status;
            assert!(
                !matches!(status, ProposalStatus::Pending | ProposalStatus::Approved),
                "{name}: cut after {budget} polls left proposal #{} {status:?}",
                p.id
            );
            let orders = db.store.orders_for_proposal(p.id).await.expect("orders");
            let at_exchange: usize = orders
                .iter()
                .map(|o| {
                    exchange
                        .orders
                        .lock()
                        .expect("exchange")
                        .get(&o.request.tag)
                        .map_or(0, Vec::len)
                })
                .sum();
            assert!(
                orders.len() <= 1,
                "{name}: {} orders for #{}",
                orders.len(),
                p.id
            );
            assert!(
                at_exchange <= 1,
                "{name}: duplicate at the exchange for #{}",
                p.id
            );
            let known_filled = orders
                .iter()
                .filter(|o| matches!(o.state, OrderState::Filled { .. }))
                .count();
            assert_eq!(
                known_filled, at_exchange,
                "{name}: cut after {budget} polls: the exchange filled {at_exchange}, the store knows {known_filled} ({orders:?})"
            );
            if at_exchange == 1 {
                assert_eq!(status, ProposalStatus::Executed, "{name}: #{}", p.id);
                let pos = db
                    .store
                    .position(&key, Product::Cnc)
                    .await
                    .expect("position")
                    .expect("the filled order's position");
                assert_eq!(pos.quantity, 1, "{name}");
            }
            *settled_by.entry(status.as_str()).or_default() += 1;
            if completed {
                break;
            }
            cut_points += 1;
        }
        // Every other trial's order is at the exchange at most once, whatever the cut.
        let total: usize = exchange
            .orders
            .lock()
            .expect("exchange")
            .values()
            .map(|v| v.len())
            .sum();
        let tags = exchange.orders.lock().expect("exchange").len();
        assert_eq!(total, tags, "{name}: some tag was placed twice");
        println!(
            "crash anywhere on {name}: {cut_points} cut points before the approval completes; \
             {tags} orders at the exchange, 0 duplicates, 0 unknown to the store; final states {settled_by:?}"
        );
        assert!(
            cut_points >= 5,
            "{name}: only {cut_points} await points were cut"
        );
    }
}
