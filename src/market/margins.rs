//! Kite reads the risk engine's execution checks need, behind two ports the live broker can
//! implement: [`MarginProvider`] (`POST /margins/orders` for the order, `GET /user/margins` for
//! what is available: INSUFFICIENT_CAPITAL) and [`CircuitBandProvider`] (`GET /quote`'s
//! `lower_circuit_limit` / `upper_circuit_limit`: CIRCUIT_LIMIT). [`KiteRiskReads`] implements
//! both over plain HTTP (reqwest) against a configurable base URL.
//!
//! These are reads: a failure is reported, never retried here, and the caller places nothing
//! (an entry whose margin cannot be checked is not sent). Quotes take a start from the quote
//! limiter (1/s, process-wide by default). Paper mode has neither port: the capital check uses
//! `[trading] capital` and the circuit check is skipped.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};

use super::MarketError;
use super::rate::{RequestLimiter, kite_quote_limiter};
use crate::config::Secret;
use crate::domain::{
    CircuitBand, InstrumentKey, OrderMargin, OrderRequest, OrderType, Paise, order_price,
};

/// Kite's margin for an order and the account's available margin.
#[async_trait::async_trait]
pub trait MarginProvider: Send + Sync {
    async fn order_margin(&self, req: &OrderRequest) -> Result<OrderMargin, MarketError>;
}

/// The day's circuit band of an instrument; `Ok(None)` when the exchange publishes none.
#[async_trait::async_trait]
pub trait CircuitBandProvider: Send + Sync {
    async fn circuit_band(&self, key: &InstrumentKey) -> Result<Option<CircuitBand>, MarketError>;
}

/// The ports an execution-time risk check reads in live mode (the handler holds them; paper
/// mode has none).
#[derive(Clone)]
pub struct RiskPorts {
    pub margins: Arc<dyn MarginProvider>,
    pub circuits: Arc<dyn CircuitBandProvider>,
}

impl RiskPorts {
    /// Both ports from one Kite client.
    pub fn kite(reads: KiteRiskReads) -> Self {
        let reads = Arc::new(reads);
        Self {
            margins: reads.clone(),
            circuits: reads,
        }
    }
}

/// Kite's HTTP API version header value.
const KITE_VERSION: &str = "3";
/// One read must not hold an approval for long.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Kite margin and quote reads for the risk engine (see the module docs). Cheap to clone.
#[derive(Clone)]
pub struct KiteRiskReads {
    http: reqwest::Client,
    base_url: String,
    /// "token api_key:access_token"
    authorization: Arc<Secret>,
    /// When set, the access token is read from the login session at each call (it is renewed
    /// daily), with this API key; `authorization` is then unused.
    session: Option<(String, Arc<super::SessionProvider>)>,
    quotes: Arc<RequestLimiter>,
}

impl std::fmt::Debug for KiteRiskReads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KiteRiskReads")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct Envelope {
    status: Option<String>,
    #[serde(default)]
    data: Value,
    message: Option<String>,
    error_type: Option<String>,
}

/// A Kite amount in rupees as paise (rounded to the paisa).
fn rupees(v: &Value) -> Option<Paise> {
    let r = v.as_f64()?;
    Paise::try_from_rupees_f64(r)
}

impl KiteRiskReads {
    /// Against `base_url` (e.g. `https://api.kite.trade` or a local fake), with the process-wide
    /// quote limiter.
    pub fn new(base_url: &str, api_key: &str, access_token: &str) -> Result<Self, MarketError> {
        Self::with_quote_limiter(base_url, api_key, access_token, kite_quote_limiter())
    }

    pub fn with_quote_limiter(
        base_url: &str,
        api_key: &str,
        access_token: &str,
        quotes: Arc<RequestLimiter>,
    ) -> Result<Self, MarketError> {
        if api_key.trim().is_empty() {
            return Err(MarketError::MissingCredential("ZERODHA_API_KEY"));
        }
        if access_token.trim().is_empty() {
            return Err(MarketError::MissingCredential("ZERODHA_ACCESS_TOKEN"));
        }
        let base = url::Url::parse(base_url)
            .map_err(|e| MarketError::Config(format!("ZERODHA_API_URL {base_url:?}: {e}")))?;
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .build()
            .map_err(|e| MarketError::Config(format!("HTTP client: {e}")))?;
        Ok(Self {
            http,
            base_url: base.as_str().trim_end_matches('/').to_string(),
            authorization: Arc::new(Secret::new(format!("token {api_key}:{access_token}"))),
            session: None,
            quotes,
        })
    }

    /// Against `base_url`, reading the access token from `session` at each call (so a new
    /// login is used at once), with the process-wide quote limiter.
    pub fn from_session(
        base_url: &str,
        api_key: &str,
        session: Arc<super::SessionProvider>,
    ) -> Result<Self, MarketError> {
        // The placeholder token only passes the constructor's checks; it is never sent.
        let mut reads = Self::new(base_url, api_key, "session")?;
        reads.session = Some((api_key.trim().to_string(), session));
        Ok(reads)
    }

    /// The Authorization header value for the next call.
    fn authorization(&self) -> Result<String, MarketError> {
        match &self.session {
            None => Ok(self.authorization.expose().to_string()),
            Some((key, session)) => {
                let s = session.current().map_err(|_| MarketError::SessionExpired)?;
                Ok(format!("token {key}:{}", s.access_token.expose()))
            }
        }
    }

    /// Sends one request and unwraps Kite's envelope into its `data`.
    async fn call(&self, what: &str, req: reqwest::RequestBuilder) -> Result<Value, MarketError> {
        let fail = |detail: String| MarketError::Request {
            what: what.to_string(),
            detail,
        };
        let authorization = self.authorization()?;
        let resp = req
            .header("X-Kite-Version", KITE_VERSION)
            .header("Authorization", authorization)
            .send()
            .await
            // reqwest's error names the URL, never the headers.
            .map_err(|e| fail(e.without_url().to_string()))?;
        let status = resp.status().as_u16();
        let body = resp.text().await.map_err(|e| fail(e.to_string()))?;
        let env: Envelope = serde_json::from_str(&body).map_err(|e| {
            fail(format!(
                "HTTP {status}, not a Kite answer ({e}): {}",
                body.chars().take(200).collect::<String>()
            ))
        })?;
        if status == 200 && env.status.as_deref() == Some("success") {
            return Ok(env.data);
        }
        let error_type = env.error_type.unwrap_or_else(|| "unknown".into());
        if error_type == "TokenException" || status == 403 {
            return Err(MarketError::SessionExpired);
        }
        Err(MarketError::Kite {
            error_type,
            message: env.message.unwrap_or_else(|| format!("HTTP {status}")),
            status,
        })
    }

    /// `POST /margins/orders` for `req`: Kite's `total` for it.
    pub async fn required_margin(&self, req: &OrderRequest) -> Result<Paise, MarketError> {
        let what = "Kite order margin";
        let body = json!([margin_order(req)]);
        let data = self
            .call(
                what,
                self.http
                    .post(format!("{}/margins/orders", self.base_url))
                    .json(&body),
            )
            .await?;
        data.get(0)
            .and_then(|o| o.get("total"))
            .and_then(rupees)
            .ok_or_else(|| MarketError::Request {
                what: what.into(),
                detail: format!("no data[0].total in the answer: {data}"),
            })
    }

    /// `GET /user/margins`: the equity segment's net available margin.
    pub async fn available_margin(&self) -> Result<Paise, MarketError> {
        let what = "Kite available margin";
        let data = self
            .call(
                what,
                self.http.get(format!("{}/user/margins", self.base_url)),
            )
            .await?;
        data.get("equity")
            .and_then(|e| e.get("net"))
            .and_then(rupees)
            .ok_or_else(|| MarketError::Request {
                what: what.into(),
                detail: "no equity.net in the answer".into(),
            })
    }

    /// `GET /quote?i=EXCHANGE:SYMBOL`: the day's circuit band (None when Kite gives zeros or
    /// nothing).
    pub async fn quote_circuit_band(
        &self,
        key: &InstrumentKey,
    ) -> Result<Option<CircuitBand>, MarketError> {
        let what = "Kite quote";
        self.quotes.acquire().await;
        let name = key.to_string();
        let data = self
            .call(
                what,
                self.http
                    .get(format!("{}/quote", self.base_url))
                    .query(&[("i", name.as_str())]),
            )
            .await?;
        let Some(q) = data.get(&name) else {
            return Ok(None);
        };
        let lower = q.get("lower_circuit_limit").and_then(rupees);
        let upper = q.get("upper_circuit_limit").and_then(rupees);
        Ok(match (lower, upper) {
            (Some(lower), Some(upper)) if upper.0 > 0 && lower <= upper => {
                Some(CircuitBand { lower, upper })
            }
            _ => None,
        })
    }
}

/// One order of the `/margins/orders` body, as Kite names the fields (prices in rupees).
pub fn margin_order(req: &OrderRequest) -> Value {
    let (order_type, price, trigger) = match req.order_type {
        OrderType::Market => ("MARKET", 0.0, 0.0),
        OrderType::Limit(_) => ("LIMIT", order_price(req).as_rupees_f64(), 0.0),
        OrderType::StopMarket { trigger } => ("SL-M", 0.0, trigger.as_rupees_f64()),
    };
    json!({
        "exchange": req.key.exchange,
        "tradingsymbol": req.key.tradingsymbol,
        "transaction_type": req.side.as_str(),
        "variety": "regular",
        "product": req.product.as_str(),
        "order_type": order_type,
        "quantity": req.quantity,
        "price": price,
        "trigger_price": trigger,
    })
}

#[async_trait::async_trait]
impl MarginProvider for KiteRiskReads {
    async fn order_margin(&self, req: &OrderRequest) -> Result<OrderMargin, MarketError> {
        let required = self.required_margin(req).await?;
        let available = self.available_margin().await?;
        Ok(OrderMargin {
            required,
            available,
        })
    }
}

#[async_trait::async_trait]
impl CircuitBandProvider for KiteRiskReads {
    async fn circuit_band(&self, key: &InstrumentKey) -> Result<Option<CircuitBand>, MarketError> {
        self.quote_circuit_band(key).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{OrderPurpose, Product, Side};

    #[test]
    fn the_margin_body_uses_kites_field_names() {
        let req = OrderRequest {
            key: InstrumentKey::new("NSE", "INFY"),
            side: Side::Buy,
            quantity: 7,
            order_type: OrderType::Limit(Paise(150_025)),
            product: Product::Mis,
            tag: "mft-p1".into(),
            purpose: OrderPurpose::Entry { proposal_id: 1 },
            reference_price: Paise(150_000),
        };
        let body = margin_order(&req);
        assert_eq!(body["exchange"], "NSE");
        assert_eq!(body["tradingsymbol"], "INFY");
        assert_eq!(body["transaction_type"], "BUY");
        assert_eq!(body["variety"], "regular");
        assert_eq!(body["product"], "MIS");
        assert_eq!(body["order_type"], "LIMIT");
        assert_eq!(body["quantity"], 7);
        assert_eq!(body["price"], 1500.25);
        assert_eq!(body["trigger_price"], 0.0);
        let market = OrderRequest {
            order_type: OrderType::Market,
            ..req
        };
        assert_eq!(margin_order(&market)["order_type"], "MARKET");
        assert_eq!(margin_order(&market)["price"], 0.0);
    }
}
