//! The live broker: Kite Connect orders behind the [`Broker`] trait (variety regular, the
//! request's product, whole lots, prices on the instrument's tick, MARKET and SL-M with
//! `[live] market_protection`, every order tagged).
//!
//! Never twice: an order write is sent once. When its answer is lost (network error, timeout,
//! 5xx, 429) the error is [`BrokerError::Unavailable`], which the OMS turns into the order
//! state Unknown and resolves by looking the tag up in Kite's order list; the write itself is
//! never retried here. A Kite error envelope with a 4xx status is a refusal: Kite did not take
//! the order.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, Utc};
use kiteconnect::{
    AccessToken, Exchange, KiteConnect, OrderParams, TransactionType, Validity, Variety,
};

use super::broker::{Broker, BrokerAck, BrokerError};
use crate::clock::IST;
use crate::config::{Mode, Settings};
use crate::domain::{
    BrokerOrderUpdate, BrokerPosition, BrokerStatus, BrokerTrade, InstrumentKey, OrderRequest,
    OrderType, Paise, Product, Side, round_to_tick, tag_is_valid, tick_or_default,
};
use crate::market::SessionProvider;
use crate::risk::RiskApproved;
use crate::store::Store;

/// How long an order write may take before its answer counts as lost (then: Unknown, tag
/// lookup). Reads use the same bound.
const CALL_TIMEOUT: Duration = Duration::from_secs(8);

/// Where the access token comes from: the login session (renewed daily) or a fixed token.
#[derive(Clone)]
pub enum TokenSource {
    Session(Arc<SessionProvider>),
    Fixed(String),
}

/// Kite Connect as the broker.
pub struct KiteBroker {
    api_url: String,
    api_key: String,
    tokens: TokenSource,
    store: Store,
    market_protection: f64,
    /// The client built for the current token.
    client: Mutex<Option<(String, KiteConnect)>>,
    /// Kite's order-write limits (10/s, 400/min), shared across the process when set
    /// ([`KiteBroker::with_order_limiter`]; the service and `mft kill` set it).
    limiter: Option<Arc<crate::market::RequestLimiter>>,
}

impl KiteBroker {
    pub fn new(
        settings: &Settings,
        store: Store,
        tokens: TokenSource,
    ) -> Result<KiteBroker, BrokerError> {
        let api_key = settings
            .zerodha
            .api_key
            .as_ref()
            .map(|s| s.expose().trim().to_string())
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                BrokerError::Refused(
                    "ZERODHA_API_KEY is not set: the live broker needs it (Kite developer console)"
                        .into(),
                )
            })?;
        Ok(KiteBroker {
            api_url: settings.zerodha.api_url.trim_end_matches('/').to_string(),
            api_key,
            tokens,
            store,
            market_protection: settings.live.market_protection,
            client: Mutex::new(None),
            limiter: None,
        })
    }

    /// Every order write (place, cancel) first waits for a start from `limiter`.
    pub fn with_order_limiter(mut self, limiter: Arc<crate::market::RequestLimiter>) -> Self {
        self.limiter = Some(limiter);
        self
    }

    async fn wait_for_rate(&self) {
        if let Some(l) = &self.limiter {
            l.acquire().await;
        }
    }

    fn client(&self) -> Result<KiteConnect, BrokerError> {
        let token = match &self.tokens {
            TokenSource::Fixed(t) => t.clone(),
            TokenSource::Session(s) => s
                .current()
                .map_err(|e| BrokerError::Refused(format!("no Kite session: {e}")))?
                .access_token
                .expose()
                .to_string(),
        };
        let mut cached = self.client.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((t, c)) = cached.as_ref()
            && *t == token
        {
            return Ok(c.clone());
        }
        let access = AccessToken::new(&token)
            .map_err(|e| BrokerError::Refused(format!("the Kite access token is unusable: {e}")))?;
        let client = KiteConnect::builder(&self.api_key)
            .base_url(self.api_url.as_str())
            .access_token(access)
            .timeout(CALL_TIMEOUT)
            .app_name("mft")
            .build()
            .map_err(|e| BrokerError::Refused(format!("ZERODHA_API_URL: {e}")))?;
        *cached = Some((token, client.clone()));
        Ok(client)
    }

    /// The form of one order (nothing sent). Quantity must be whole lots; prices go on the tick.
    async fn params(&self, req: &OrderRequest) -> Result<OrderParams, String> {
        if !tag_is_valid(&req.tag) {
            return Err(format!(
                "the order tag {:?} is not 1 to 20 letters and digits (Kite's rule)",
                req.tag
            ));
        }
        let tick = self.tick_for(&req.key, req.quantity).await?;
        let exchange = exchange(&req.key.exchange)
            .ok_or_else(|| format!("Kite does not trade on the exchange {}", req.key.exchange))?;
        let p = OrderParams::new()
            .exchange(exchange)
            .tradingsymbol(req.key.tradingsymbol.clone())
            .transaction_type(match req.side {
                Side::Buy => TransactionType::Buy,
                Side::Sell => TransactionType::Sell,
            })
            .product(match req.product {
                Product::Mis => kiteconnect::Product::Mis,
                Product::Cnc => kiteconnect::Product::Cnc,
            })
            .validity(Validity::Day)
            .quantity(req.quantity)
            .tag(req.tag.clone());
        Ok(with_prices(p, req.order_type, tick, self.market_protection))
    }

    /// The form of a modify: the new whole quantity, the same type and prices (on the tick).
    async fn modify_params(&self, req: &OrderRequest, total: i64) -> Result<OrderParams, String> {
        let tick = self.tick_for(&req.key, total).await?;
        let p = OrderParams::new().validity(Validity::Day).quantity(total);
        Ok(with_prices(p, req.order_type, tick, self.market_protection))
    }

    /// The instrument's tick, once `quantity` is known to be a whole number of its lots.
    async fn tick_for(&self, key: &InstrumentKey, quantity: i64) -> Result<f64, String> {
        let instrument = self
            .store
            .instrument(key)
            .await
            .map_err(|e| e.to_string())?;
        let lot = instrument
            .as_ref()
            .map(|i| i.lot_size)
            .filter(|l| *l > 0)
            .unwrap_or(1);
        if quantity <= 0 || quantity % lot != 0 {
            return Err(format!(
                "quantity {quantity} of {key} is not a whole number of lots of {lot}"
            ));
        }
        Ok(tick_or_default(instrument.as_ref().map(|i| i.tick_size)))
    }
}

/// The order type and its prices on the instrument's tick (MARKET and SL-M carry Kite's
/// market protection).
fn with_prices(p: OrderParams, order_type: OrderType, tick: f64, protection: f64) -> OrderParams {
    {
        let on_tick = |p: Paise| round_to_tick(p.as_rupees_f64(), tick).as_rupees_f64();
        match order_type {
            OrderType::Market => p
                .order_type(kiteconnect::OrderType::Market)
                .market_protection(protection),
            OrderType::Limit(price) => p
                .order_type(kiteconnect::OrderType::Limit)
                .price(on_tick(price)),
            OrderType::StopMarket { trigger } => p
                .order_type(kiteconnect::OrderType::SlM)
                .trigger_price(on_tick(trigger))
                .market_protection(protection),
        }
    }
}

fn exchange(name: &str) -> Option<Exchange> {
    Some(match name.to_ascii_uppercase().as_str() {
        "NSE" => Exchange::Nse,
        "BSE" => Exchange::Bse,
        "NFO" => Exchange::Nfo,
        "BFO" => Exchange::Bfo,
        "MCX" => Exchange::Mcx,
        "CDS" => Exchange::Cds,
        "BCD" => Exchange::Bcd,
        _ => return None,
    })
}

/// Kite's IST wall time as UTC.
fn ist_to_utc(t: NaiveDateTime) -> DateTime<Utc> {
    t.and_local_timezone(IST)
        .earliest()
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|| t.and_utc())
}

/// A Kite order (list, history, ticker message) as an update.
pub fn order_update(o: &kiteconnect::Order) -> BrokerOrderUpdate {
    let at = o
        .exchange_update_timestamp
        .or(o.exchange_timestamp)
        .unwrap_or(o.order_timestamp);
    BrokerOrderUpdate {
        broker_order_id: o.order_id.clone(),
        tag: o.tag.clone().or_else(|| o.tags.first().cloned()),
        status: BrokerStatus::from_kite(&o.status),
        status_text: o.status.clone(),
        status_message: o.status_message.clone(),
        filled_quantity: o.filled_quantity.round() as i64,
        quantity: (o.quantity.is_finite() && o.quantity > 0.0).then(|| o.quantity.round() as i64),
        average_price: Paise::try_from_rupees_f64(o.average_price).unwrap_or(Paise::ZERO),
        at: ist_to_utc(at),
    }
}

/// Whether a failed call may have been acted on (answer lost) or was refused by Kite.
fn classify(e: kiteconnect::Error) -> BrokerError {
    use kiteconnect::Error as E;
    let text = crate::market::session::describe(&e);
    match e {
        E::Api(api) if api.status == 429 || api.status >= 500 => BrokerError::Unavailable(text),
        E::Api(_) | E::InvalidInput(_) | E::NoAccessToken | E::InvalidUrl(_) => {
            BrokerError::Refused(text)
        }
        _ => BrokerError::Unavailable(text),
    }
}

#[async_trait::async_trait]
impl Broker for KiteBroker {
    fn name(&self) -> &str {
        "kite"
    }

    fn mode(&self) -> Mode {
        Mode::Live
    }

    async fn place(&self, order: RiskApproved<OrderRequest>) -> Result<BrokerAck, BrokerError> {
        let req = order.into_inner();
        let params = match self.params(&req).await {
            Ok(p) => p,
            // Nothing was sent: a refusal, final.
            Err(reason) => return Ok(BrokerAck::Rejected { reason }),
        };
        let client = match self.client() {
            Ok(c) => c,
            Err(e) => {
                return Ok(BrokerAck::Rejected {
                    reason: e.to_string(),
                });
            }
        };
        // Kite's order-write limits (10/s, 400/min) across the process: wait for a start.
        self.wait_for_rate().await;
        match client.place_order(Variety::Regular, params).await {
            Ok(r) => Ok(BrokerAck::Open {
                broker_order_id: r.order_id,
            }),
            Err(e) => match classify(e) {
                BrokerError::Refused(reason) => Ok(BrokerAck::Rejected {
                    reason: format!("Kite refused the order: {reason}"),
                }),
                other => Err(other),
            },
        }
    }

    async fn cancel(&self, broker_order_id: &str) -> Result<(), BrokerError> {
        let client = self.client()?;
        self.wait_for_rate().await;
        client
            .cancel_order(Variety::Regular, broker_order_id, None)
            .await
            .map(|_| ())
            .map_err(classify)
    }

    async fn modify(
        &self,
        broker_order_id: &str,
        filled: i64,
        remaining: RiskApproved<OrderRequest>,
    ) -> Result<(), BrokerError> {
        let req = remaining.into_inner();
        let total = filled.checked_add(req.quantity).unwrap_or(0);
        let params = self
            .modify_params(&req, total)
            .await
            .map_err(BrokerError::Refused)?;
        let client = self.client()?;
        self.wait_for_rate().await;
        client
            .modify_order(Variety::Regular, broker_order_id, params)
            .await
            .map(|_| ())
            .map_err(classify)
    }

    async fn find_by_tag(&self, tag: &str) -> Result<Option<BrokerAck>, BrokerError> {
        Ok(self
            .lookup_tag(tag, Utc::now())
            .await?
            .map(|u| match u.status {
                BrokerStatus::Complete => BrokerAck::Filled {
                    broker_order_id: u.broker_order_id,
                    price: u.average_price,
                    quantity: u.filled_quantity,
                    at: u.at,
                },
                BrokerStatus::Rejected => BrokerAck::Rejected {
                    reason: u.status_message.unwrap_or_else(|| u.status_text.clone()),
                },
                BrokerStatus::Open | BrokerStatus::Cancelled => BrokerAck::Open {
                    broker_order_id: u.broker_order_id,
                },
            }))
    }

    async fn lookup_tag(
        &self,
        tag: &str,
        _now: DateTime<Utc>,
    ) -> Result<Option<BrokerOrderUpdate>, BrokerError> {
        // The latest of the day's orders with this tag (one, unless someone reused it).
        Ok(self
            .orders()
            .await?
            .into_iter()
            .rev()
            .find(|u| u.tag.as_deref() == Some(tag)))
    }

    async fn order_status(
        &self,
        broker_order_id: &str,
    ) -> Result<Option<BrokerOrderUpdate>, BrokerError> {
        let history = self
            .client()?
            .order_history(broker_order_id)
            .await
            .map_err(classify)?;
        Ok(history.last().map(order_update))
    }

    async fn order_trades(
        &self,
        broker_order_id: &str,
    ) -> Result<Option<Vec<BrokerTrade>>, BrokerError> {
        let trades = self
            .client()?
            .order_trades(broker_order_id)
            .await
            .map_err(classify)?;
        let mut out = Vec::with_capacity(trades.len());
        for t in &trades {
            let price = Paise::try_from_rupees_f64(t.average_price).filter(|p| p.0 > 0);
            match price {
                Some(price) if t.quantity.is_finite() && t.quantity > 0.0 => {
                    out.push(BrokerTrade {
                        quantity: t.quantity.round() as i64,
                        price,
                    })
                }
                // A trade this code cannot value: the caller falls back to the average.
                _ => return Ok(None),
            }
        }
        Ok(Some(out))
    }

    async fn orders(&self) -> Result<Vec<BrokerOrderUpdate>, BrokerError> {
        let list = self.client()?.orders().await.map_err(classify)?;
        Ok(list.iter().map(order_update).collect())
    }

    async fn positions(&self) -> Result<Option<Vec<BrokerPosition>>, BrokerError> {
        let p = self.client()?.positions().await.map_err(classify)?;
        let mut out = Vec::with_capacity(p.net.len());
        for n in p.net {
            let product = match n.product.as_str() {
                "MIS" => Product::Mis,
                "CNC" => Product::Cnc,
                other => {
                    // NRML/MTF positions are not MFT-1's: reconciliation reports them as
                    // unknown under the closest product rather than hiding them.
                    tracing::warn!(product = other, symbol = %n.tradingsymbol, "a Kite position in a product MFT-1 does not trade");
                    Product::Cnc
                }
            };
            out.push(BrokerPosition {
                key: InstrumentKey::new(&n.exchange, &n.tradingsymbol),
                product,
                quantity: n.quantity,
                average_price: Paise::try_from_rupees_f64(n.average_price).unwrap_or(Paise::ZERO),
            });
        }
        Ok(Some(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kite_statuses_reduce_to_four() {
        assert_eq!(BrokerStatus::from_kite("COMPLETE"), BrokerStatus::Complete);
        assert_eq!(BrokerStatus::from_kite("REJECTED"), BrokerStatus::Rejected);
        assert_eq!(
            BrokerStatus::from_kite("CANCELLED"),
            BrokerStatus::Cancelled
        );
        for working in [
            "OPEN",
            "TRIGGER PENDING",
            "VALIDATION PENDING",
            "PUT ORDER REQ RECEIVED",
            "MODIFY VALIDATION PENDING",
            "AMO REQ RECEIVED",
        ] {
            assert_eq!(
                BrokerStatus::from_kite(working),
                BrokerStatus::Open,
                "{working}"
            );
        }
    }

    #[test]
    fn kite_times_are_ist() {
        let t = NaiveDateTime::parse_from_str("2026-11-30 10:15:02", "%Y-%m-%d %H:%M:%S")
            .expect("time");
        assert_eq!(ist_to_utc(t).to_rfc3339(), "2026-11-30T04:45:02+00:00");
    }
}
