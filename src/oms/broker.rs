//! The broker port (paper, and Kite live in `oms::kite`, behind the same trait) and the paper
//! broker: market orders fill at once at the last stored price plus or minus the paper
//! slippage, rounded to the instrument's tick.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};

use crate::clock::Clock;
use crate::config::{Mode, Settings};
pub use crate::domain::paper_fill_price;
use crate::domain::{
    BrokerOrderUpdate, BrokerPosition, BrokerStatus, BrokerTrade, OrderRequest, OrderType, Paise,
    Side, tick_or_default,
};
use crate::risk::RiskApproved;
use crate::store::Store;

/// What the broker said about an order.
#[derive(Debug, Clone, PartialEq)]
pub enum BrokerAck {
    /// Executed completely.
    Filled {
        broker_order_id: String,
        price: Paise,
        quantity: i64,
        at: DateTime<Utc>,
    },
    /// Accepted and working (a limit order away from the market).
    Open { broker_order_id: String },
    /// Refused by the broker (margin, price band, ...).
    Rejected { reason: String },
}

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error(
        "no stored price for {0}: fetch its candles (`mft data fetch`) before trading it on paper"
    )]
    NoPrice(String),
    #[error(
        "the broker could not be reached or failed: {0}; check the connection and the order book before retrying"
    )]
    Unavailable(String),
    #[error("could not read market data for the broker: {0}")]
    Store(#[from] crate::store::StoreError),
    /// The broker answered and refused the request (nothing changed at the broker).
    #[error("the broker refused: {0}")]
    Refused(String),
}

impl BrokerError {
    /// Whether the request may have been acted on although no answer arrived: a network
    /// error, a timeout, a 5xx or 429 after sending. Such an order write is never retried
    /// blindly: its tag is looked up first.
    pub fn is_ambiguous(&self) -> bool {
        matches!(self, BrokerError::Unavailable(_))
    }
}

/// The update a [`BrokerAck`] amounts to (for brokers that only answer with acks).
pub fn ack_update(ack: &BrokerAck, tag: &str, at: DateTime<Utc>) -> BrokerOrderUpdate {
    let (broker_order_id, status, status_text, message, filled, price, at) = match ack {
        BrokerAck::Filled {
            broker_order_id,
            price,
            quantity,
            at,
        } => (
            broker_order_id.clone(),
            BrokerStatus::Complete,
            "COMPLETE",
            None,
            *quantity,
            *price,
            *at,
        ),
        BrokerAck::Open { broker_order_id } => (
            broker_order_id.clone(),
            BrokerStatus::Open,
            "OPEN",
            None,
            0,
            Paise::ZERO,
            at,
        ),
        BrokerAck::Rejected { reason } => (
            String::new(),
            BrokerStatus::Rejected,
            "REJECTED",
            Some(reason.clone()),
            0,
            Paise::ZERO,
            at,
        ),
    };
    BrokerOrderUpdate {
        broker_order_id,
        tag: Some(tag.to_string()),
        status,
        status_text: status_text.to_string(),
        status_message: message,
        filled_quantity: filled,
        quantity: None,
        average_price: price,
        at,
    }
}

/// Where orders go. Only [`RiskApproved`] requests can be placed.
#[async_trait::async_trait]
pub trait Broker: Send + Sync {
    /// "paper" or "kite".
    fn name(&self) -> &str;
    fn mode(&self) -> Mode;
    async fn place(&self, order: RiskApproved<OrderRequest>) -> Result<BrokerAck, BrokerError>;
    async fn cancel(&self, broker_order_id: &str) -> Result<(), BrokerError>;
    /// Resizes a working order so that `remaining.quantity` more may fill (its whole quantity
    /// becomes `filled + remaining.quantity`), keeping its type and prices: a protective leg
    /// whose sibling filled in part. Only a risk-approved remainder can be sent. A broker whose
    /// orders settle at once has nothing to resize, so by default this refuses.
    async fn modify(
        &self,
        broker_order_id: &str,
        filled: i64,
        remaining: RiskApproved<OrderRequest>,
    ) -> Result<(), BrokerError> {
        let _ = (broker_order_id, filled, remaining);
        Err(BrokerError::Refused(format!(
            "the {} broker does not modify orders",
            self.name()
        )))
    }
    /// Reconciliation after a crash: the broker's view of the order with this tag, if it got it.
    async fn find_by_tag(&self, tag: &str) -> Result<Option<BrokerAck>, BrokerError>;

    /// The broker's full view of the order with this tag (cumulative fills, status), or None
    /// when it provably has no such order. By default derived from [`Broker::find_by_tag`].
    async fn lookup_tag(
        &self,
        tag: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<BrokerOrderUpdate>, BrokerError> {
        Ok(self
            .find_by_tag(tag)
            .await?
            .map(|ack| ack_update(&ack, tag, now)))
    }

    /// The order's latest state from its history; None when the broker keeps no history
    /// (paper: its orders settle at once).
    async fn order_status(
        &self,
        _broker_order_id: &str,
    ) -> Result<Option<BrokerOrderUpdate>, BrokerError> {
        Ok(None)
    }

    /// The trades (exchange fills) of an order at their own prices; None when the broker keeps
    /// no trade book (paper fills at one price). Fill prices come from here when they can:
    /// an update's cumulative average is rounded to the paisa, so a part's price derived from
    /// it can be off by a paisa or two.
    async fn order_trades(
        &self,
        _broker_order_id: &str,
    ) -> Result<Option<Vec<BrokerTrade>>, BrokerError> {
        Ok(None)
    }

    /// Every order of the day at the broker (empty for paper).
    async fn orders(&self) -> Result<Vec<BrokerOrderUpdate>, BrokerError> {
        Ok(Vec::new())
    }

    /// The broker's net positions; None when it keeps no book of its own (paper: the store is
    /// the only book, so there is nothing to reconcile against).
    async fn positions(&self) -> Result<Option<Vec<BrokerPosition>>, BrokerError> {
        Ok(None)
    }
}

/// Simulated broker. Remembers what it filled by tag for [`Broker::find_by_tag`] (in memory:
/// after a restart it knows nothing, which is the truth for a simulator: the order never left).
pub struct PaperBroker {
    store: Store,
    settings: Arc<Settings>,
    clock: Arc<dyn Clock>,
    placed: Mutex<HashMap<String, BrokerAck>>,
    /// Live prices (ticker); when one is cached for the instrument it beats the stored candle.
    live: Option<Arc<crate::market::PriceCache>>,
}

impl PaperBroker {
    pub fn new(store: Store, settings: Arc<Settings>, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            settings,
            clock,
            placed: Mutex::new(HashMap::new()),
            live: None,
        }
    }

    /// Fills at the live price when the ticker has one.
    pub fn with_live_prices(mut self, prices: Arc<crate::market::PriceCache>) -> Self {
        self.live = Some(prices);
        self
    }

    fn remember(&self, tag: &str, ack: &BrokerAck) {
        self.placed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(tag.to_string(), ack.clone());
    }
}

#[async_trait::async_trait]
impl Broker for PaperBroker {
    fn name(&self) -> &str {
        "paper"
    }

    fn mode(&self) -> Mode {
        Mode::Paper
    }

    async fn place(&self, order: RiskApproved<OrderRequest>) -> Result<BrokerAck, BrokerError> {
        let req = order.into_inner();
        let live = self
            .live
            .as_ref()
            .and_then(|c| c.get(&req.key))
            .map(|p| p.price);
        let last = match live {
            Some(p) => p,
            None => self
                .store
                .last_price(&req.key, self.settings.trading.interval)
                .await?
                .ok_or_else(|| BrokerError::NoPrice(req.key.to_string()))?,
        };
        let tick = tick_or_default(self.store.instrument(&req.key).await?.map(|i| i.tick_size));
        let price = paper_fill_price(last, req.side, self.settings.paper.slippage_bps, tick);
        let broker_order_id = format!("paper-{}", req.tag);
        let marketable = match req.order_type {
            OrderType::Market => true,
            // A paper stop triggers when the last price has crossed it.
            OrderType::StopMarket { trigger } => match req.side {
                Side::Buy => price >= trigger,
                Side::Sell => price <= trigger,
            },
            OrderType::Limit(limit) => match req.side {
                Side::Buy => price <= limit,
                Side::Sell => price >= limit,
            },
        };
        let ack = if marketable {
            BrokerAck::Filled {
                broker_order_id,
                price,
                quantity: req.quantity,
                at: self.clock.now(),
            }
        } else {
            BrokerAck::Open { broker_order_id }
        };
        self.remember(&req.tag, &ack);
        Ok(ack)
    }

    async fn cancel(&self, _broker_order_id: &str) -> Result<(), BrokerError> {
        // Paper orders are never working at a venue: cancelling only changes our record.
        Ok(())
    }

    async fn find_by_tag(&self, tag: &str) -> Result<Option<BrokerAck>, BrokerError> {
        Ok(self
            .placed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(tag)
            .cloned())
    }
}
