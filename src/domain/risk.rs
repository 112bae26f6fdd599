//! Risk-engine values other layers exchange: the recent orders the execution checks read, the
//! day's circuit band and Kite's margin for an order (filled by ports), and the audited record
//! of one decision.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{InstrumentKey, OrderRequest, OrderType, Paise, Side};

/// An order already recorded, as the duplicate, rate and value-anomaly checks see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecentOrder {
    pub tag: String,
    pub key: InstrumentKey,
    pub side: Side,
    pub entry: bool,
    pub at: DateTime<Utc>,
    /// Quantity x the order's price (its limit price, else the price it was sized at).
    pub value: Paise,
}

/// The price an order is valued and circuit-checked at: its limit price, a stop's trigger (where
/// it becomes a market order), else the price it was sized at.
pub fn order_price(req: &OrderRequest) -> Paise {
    match req.order_type {
        OrderType::Limit(p) => p,
        OrderType::StopMarket { trigger } => trigger,
        OrderType::Market => req.reference_price,
    }
}

/// Quantity x [`order_price`].
pub fn order_value(req: &OrderRequest) -> Paise {
    (order_price(req) * req.quantity).abs()
}

/// The day's price band of an instrument (Kite quote's `lower_circuit_limit` and
/// `upper_circuit_limit`): orders priced outside it are refused by the exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CircuitBand {
    pub lower: Paise,
    pub upper: Paise,
}

/// Kite's margin for one order (`POST /margins/orders`, `total`) and the account's available
/// equity margin (`GET /user/margins`, `equity.net`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderMargin {
    pub required: Paise,
    pub available: Paise,
}

/// One risk decision, approved or refused, with the inputs it was taken on: what the audit
/// table keeps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RiskDecision {
    pub at: DateTime<Utc>,
    pub request: OrderRequest,
    /// "APPROVED" or the refusal's stable code.
    pub code: String,
    /// The stage that refused ("validity", "trading_state", "exposure", "execution", "exit"),
    /// or "passed".
    pub stage: String,
    /// The refusal's explanation; None when approved.
    pub reason: Option<String>,
    /// The context figures the checks used (JSON object).
    pub inputs: serde_json::Value,
}

impl RiskDecision {
    pub fn approved(&self) -> bool {
        self.code == APPROVED
    }
}

/// The code of an approved decision in the audit.
pub const APPROVED: &str = "APPROVED";
