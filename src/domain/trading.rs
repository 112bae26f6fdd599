//! Trading types: verdicts, proposals and their statuses, order requests, orders as a state
//! machine, fills, positions and the risk engine's typed denial reasons.

use super::{InstrumentKey, Paise, Side};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Kite product: MIS (intraday, squared off the same day) or CNC (delivery).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Product {
    #[default]
    Mis,
    Cnc,
}

impl Product {
    pub fn as_str(self) -> &'static str {
        match self {
            Product::Mis => "MIS",
            Product::Cnc => "CNC",
        }
    }
}

/// What the analysis agent concluded about one instrument on its last closed candle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub key: InstrumentKey,
    pub side: Side,
    /// Rupees, from market data; sizing rounds them to the tick into [`Paise`].
    pub entry: f64,
    pub stop: f64,
    pub target: f64,
    /// 0.0..=1.0
    pub confidence: f64,
    /// A short reason naming the values that triggered it.
    pub rationale: String,
    /// Open time of the candle the verdict was formed on.
    pub candle_ts: DateTime<Utc>,
}

/// An analyst's output for one instrument.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Signal {
    /// Open a position.
    Entry(Verdict),
    /// Close an open position in `key` (e.g. the moving averages crossed back).
    Exit { key: InstrumentKey, reason: String },
    /// Nothing to do; the reason is logged.
    None { key: InstrumentKey, reason: String },
}

/// Lifecycle of a proposal: pending -> approved | rejected | expired | failed (its card could
/// not be posted); approved -> executed | vetoed | failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProposalStatus {
    Pending,
    Approved,
    Rejected,
    Expired,
    Executed,
    Vetoed,
    Failed,
}

impl ProposalStatus {
    pub const ALL: [ProposalStatus; 7] = [
        ProposalStatus::Pending,
        ProposalStatus::Approved,
        ProposalStatus::Rejected,
        ProposalStatus::Expired,
        ProposalStatus::Executed,
        ProposalStatus::Vetoed,
        ProposalStatus::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ProposalStatus::Pending => "pending",
            ProposalStatus::Approved => "approved",
            ProposalStatus::Rejected => "rejected",
            ProposalStatus::Expired => "expired",
            ProposalStatus::Executed => "executed",
            ProposalStatus::Vetoed => "vetoed",
            ProposalStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<ProposalStatus> {
        ProposalStatus::ALL.into_iter().find(|p| p.as_str() == s)
    }

    /// Whether `self -> next` is a legal transition.
    pub fn can_become(self, next: ProposalStatus) -> bool {
        use ProposalStatus::*;
        matches!(
            (self, next),
            (Pending, Approved | Rejected | Expired | Failed)
                | (Approved, Executed | Vetoed | Failed)
        )
    }
}

/// A sized trade idea waiting for the operator (or already decided).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Proposal {
    pub id: i64,
    pub key: InstrumentKey,
    pub side: Side,
    pub quantity: i64,
    pub entry: Paise,
    pub stop: Paise,
    pub target: Paise,
    pub product: Product,
    pub confidence: f64,
    pub rationale: String,
    pub status: ProposalStatus,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// Rendered chart (under the charts folder), if any.
    pub chart_path: Option<String>,
    /// The Telegram message that carries the card.
    pub message_id: Option<i64>,
    pub decided_at: Option<DateTime<Utc>>,
    pub decided_by: Option<i64>,
    /// The outcome line's detail (denial code, failure reason, order id).
    pub outcome: Option<String>,
}

impl Proposal {
    /// Rupees at risk if the stop is hit: quantity x |entry - stop|.
    pub fn risk(&self) -> Paise {
        (self.entry - self.stop).abs() * self.quantity
    }

    /// Reward:risk ratio of target vs stop distance.
    pub fn reward_risk(&self) -> f64 {
        let risk = (self.entry - self.stop).abs().0;
        if risk == 0 {
            return 0.0;
        }
        (self.target - self.entry).abs().0 as f64 / risk as f64
    }

    pub fn notional(&self) -> Paise {
        self.entry * self.quantity
    }
}

/// Fields of a proposal before it is stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewProposal {
    pub key: InstrumentKey,
    pub side: Side,
    pub quantity: i64,
    pub entry: Paise,
    pub stop: Paise,
    pub target: Paise,
    pub product: Product,
    pub confidence: f64,
    pub rationale: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OrderType {
    Market,
    Limit(Paise),
    /// Kite SL-M: a market order once the trigger trades (protective stops).
    StopMarket {
        trigger: Paise,
    },
}

/// Why an order exists: opening exposure or reducing it. Reducing orders are never blocked by
/// exposure checks or the halt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OrderPurpose {
    /// Opens (or adds to) a position from an approved proposal.
    Entry { proposal_id: i64 },
    /// Closes or reduces a position: stop, target, exit signal, square-off, kill.
    Exit { reason: String },
}

/// An order as asked for, before the risk engine has passed it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderRequest {
    pub key: InstrumentKey,
    pub side: Side,
    pub quantity: i64,
    pub order_type: OrderType,
    pub product: Product,
    /// Unique client tag (<= 20 chars, Kite's limit): the idempotency key of placement.
    pub tag: String,
    pub purpose: OrderPurpose,
    /// The price the request was sized at (entry for proposals; last price for exits).
    pub reference_price: Paise,
}

impl OrderRequest {
    pub fn is_entry(&self) -> bool {
        matches!(self.purpose, OrderPurpose::Entry { .. })
    }
}

/// A fill (execution) of an order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fill {
    pub order_id: i64,
    pub key: InstrumentKey,
    pub side: Side,
    pub quantity: i64,
    pub price: Paise,
    pub ts: DateTime<Utc>,
}

/// The order state machine. Submitting is the in-flight state between our record and the
/// broker's acknowledgement: after a crash, reconciliation looks the tag up instead of placing
/// again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum OrderState {
    /// Recorded by us, not yet acknowledged by the broker.
    Submitting,
    /// Sent, but the answer was lost (network error, timeout, 5xx, 429): the broker may or may
    /// not have it. Resolved by looking the tag up; never sent again unless the broker
    /// provably has no order with that tag.
    Unknown,
    /// Acknowledged and working at the broker.
    Open {
        broker_order_id: String,
    },
    Filled {
        broker_order_id: String,
        avg_price: Paise,
        filled_at: DateTime<Utc>,
    },
    Rejected {
        reason: String,
    },
    Cancelled {
        broker_order_id: Option<String>,
    },
}

impl OrderState {
    pub fn name(&self) -> &'static str {
        match self {
            OrderState::Submitting => "submitting",
            OrderState::Unknown => "unknown",
            OrderState::Open { .. } => "open",
            OrderState::Filled { .. } => "filled",
            OrderState::Rejected { .. } => "rejected",
            OrderState::Cancelled { .. } => "cancelled",
        }
    }

    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            OrderState::Filled { .. } | OrderState::Rejected { .. } | OrderState::Cancelled { .. }
        )
    }

    /// Whether `self -> next` is a legal transition.
    pub fn can_become(&self, next: &OrderState) -> bool {
        use OrderState::*;
        matches!(
            (self, next),
            (
                Submitting,
                Unknown | Open { .. } | Filled { .. } | Rejected { .. } | Cancelled { .. }
            ) | (
                Unknown,
                Open { .. } | Filled { .. } | Rejected { .. } | Cancelled { .. }
            ) | (
                Open { .. },
                Filled { .. } | Cancelled { .. } | Rejected { .. }
            )
        )
    }
}

/// An order as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Order {
    pub id: i64,
    pub request: OrderRequest,
    pub state: OrderState,
    /// How much of the order has filled so far (an open order may be partly filled).
    #[serde(default)]
    pub filled_quantity: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A net position in one instrument and product. `quantity` is signed: > 0 long, < 0 short.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Position {
    pub key: InstrumentKey,
    pub product: Product,
    pub quantity: i64,
    pub avg_price: Paise,
    pub realized_pnl: Paise,
    /// Paper bracket exits attached to the position (from its proposal).
    pub stop: Option<Paise>,
    pub target: Option<Paise>,
    pub opened_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Position {
    pub fn is_open(&self) -> bool {
        self.quantity != 0
    }

    /// Unrealized P&L at `last`: (last - avg) x quantity (signed quantity handles shorts).
    pub fn unrealized(&self, last: Paise) -> Paise {
        (last - self.avg_price) * self.quantity
    }

    pub fn market_value(&self, last: Paise) -> Paise {
        (last * self.quantity).abs()
    }
}

/// Why the risk engine refused an order. Codes are stable: they are stored, logged and shown to
/// the operator, so never rename one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum DenyReason {
    Halted,
    OutsideTradingWindow {
        now_ist: String,
        window: String,
    },
    InstrumentNotAllowed {
        key: InstrumentKey,
    },
    ProposalExpired {
        expired_at: DateTime<Utc>,
        /// The expiry as the operator reads it ("14:25 IST"), formatted by the risk engine,
        /// which owns the exchange clock (domain knows no time zone).
        expired_at_ist: String,
    },
    PriceDeviation {
        entry: Paise,
        last: Paise,
        deviation_pct: f64,
        max_pct: f64,
    },
    MaxPositionValue {
        value: Paise,
        max: Paise,
    },
    MaxOpenPositions {
        open: u32,
        max: u32,
    },
    MaxOrdersPerDay {
        today: u32,
        max: u32,
    },
    MaxDailyLoss {
        loss: Paise,
        max: Paise,
    },
    InsufficientCapital {
        needed: Paise,
        available: Paise,
    },
    /// /pause is on: no new entries until /resume (exits still run).
    Paused,
    /// During market hours the price the order is checked against is older than
    /// `[risk] max_price_age_seconds` (or there is no live price at all).
    StalePrice {
        /// Age of the freshest price in seconds; None when there is none.
        age_seconds: Option<i64>,
        max_seconds: u64,
    },
    /// An order for the same instrument and side was recorded `seconds_ago` seconds ago, within
    /// `[risk] duplicate_window_seconds`.
    DuplicateOrder {
        key: InstrumentKey,
        side: Side,
        seconds_ago: i64,
        window_seconds: u64,
    },
    /// `last_minute` orders were recorded in the last 60 s; `[risk] max_orders_per_minute`.
    OrderRate {
        last_minute: u32,
        max: u32,
    },
    /// The order's price is outside the day's circuit band (from Kite's quote).
    CircuitLimit {
        price: Paise,
        lower: Paise,
        upper: Paise,
    },
    /// The order's value is above mean + 3σ of the last `sample` orders' values.
    OrderValueAnomaly {
        value: Paise,
        mean: Paise,
        sigma: Paise,
        threshold: Paise,
        sample: u32,
    },
    /// An exit that is not on the opposite side of an open position, or larger than it.
    /// `position` is the signed quantity held (0: none).
    ExitMismatch {
        key: InstrumentKey,
        side: Side,
        quantity: i64,
        position: i64,
    },
}

impl DenyReason {
    /// Every stable code, for listings (metrics, docs).
    pub const CODES: [&'static str; 17] = [
        "HALTED",
        "OUTSIDE_TRADING_WINDOW",
        "INSTRUMENT_NOT_ALLOWED",
        "PROPOSAL_EXPIRED",
        "PRICE_DEVIATION",
        "MAX_POSITION_VALUE",
        "MAX_OPEN_POSITIONS",
        "MAX_ORDERS_PER_DAY",
        "MAX_DAILY_LOSS",
        "INSUFFICIENT_CAPITAL",
        "PAUSED",
        "STALE_PRICE",
        "DUPLICATE_ORDER",
        "ORDER_RATE",
        "CIRCUIT_LIMIT",
        "ORDER_VALUE_ANOMALY",
        "EXIT_MISMATCH",
    ];

    /// The stable code.
    pub fn code(&self) -> &'static str {
        match self {
            DenyReason::Halted => "HALTED",
            DenyReason::OutsideTradingWindow { .. } => "OUTSIDE_TRADING_WINDOW",
            DenyReason::InstrumentNotAllowed { .. } => "INSTRUMENT_NOT_ALLOWED",
            DenyReason::ProposalExpired { .. } => "PROPOSAL_EXPIRED",
            DenyReason::PriceDeviation { .. } => "PRICE_DEVIATION",
            DenyReason::MaxPositionValue { .. } => "MAX_POSITION_VALUE",
            DenyReason::MaxOpenPositions { .. } => "MAX_OPEN_POSITIONS",
            DenyReason::MaxOrdersPerDay { .. } => "MAX_ORDERS_PER_DAY",
            DenyReason::MaxDailyLoss { .. } => "MAX_DAILY_LOSS",
            DenyReason::InsufficientCapital { .. } => "INSUFFICIENT_CAPITAL",
            DenyReason::Paused => "PAUSED",
            DenyReason::StalePrice { .. } => "STALE_PRICE",
            DenyReason::DuplicateOrder { .. } => "DUPLICATE_ORDER",
            DenyReason::OrderRate { .. } => "ORDER_RATE",
            DenyReason::CircuitLimit { .. } => "CIRCUIT_LIMIT",
            DenyReason::OrderValueAnomaly { .. } => "ORDER_VALUE_ANOMALY",
            DenyReason::ExitMismatch { .. } => "EXIT_MISMATCH",
        }
    }

    /// One sentence for the operator.
    pub fn explanation(&self) -> String {
        match self {
            DenyReason::Halted => "trading is halted: send /resume to allow new entries".into(),
            DenyReason::OutsideTradingWindow { now_ist, window } => {
                format!("{now_ist} IST is outside the trading window {window}")
            }
            DenyReason::InstrumentNotAllowed { key } => {
                format!("{key} is not in the allowed instruments")
            }
            DenyReason::ProposalExpired { expired_at_ist, .. } => {
                format!("the proposal expired at {expired_at_ist}")
            }
            DenyReason::PriceDeviation {
                entry,
                last,
                deviation_pct,
                max_pct,
            } => format!(
                "last price {last} is {deviation_pct:.2}% away from the entry {entry} (max {max_pct:.2}%)"
            ),
            DenyReason::MaxPositionValue { value, max } => {
                format!("position value {value} exceeds the limit {max}")
            }
            DenyReason::MaxOpenPositions { open, max } => {
                format!("{open} positions are open, the limit is {max}")
            }
            DenyReason::MaxOrdersPerDay { today, max } => {
                format!("{today} orders placed today, the limit is {max}")
            }
            DenyReason::MaxDailyLoss { loss, max } => {
                format!("today's loss {loss} has reached the limit {max}")
            }
            DenyReason::InsufficientCapital { needed, available } => {
                format!("needs {needed}, only {available} available")
            }
            DenyReason::Paused => {
                "trading is paused: no new entries until /resume (exits still run)".into()
            }
            DenyReason::StalePrice {
                age_seconds: Some(age),
                max_seconds,
            } => format!(
                "the last price is {age}s old (max {max_seconds}s): live prices are not arriving; check the Kite session and the ticker"
            ),
            DenyReason::StalePrice {
                age_seconds: None,
                max_seconds,
            } => format!(
                "no live price yet (max age {max_seconds}s): wait for ticks or check the Kite session"
            ),
            DenyReason::DuplicateOrder {
                key,
                side,
                seconds_ago,
                window_seconds,
            } => format!(
                "a {side} order for {key} was recorded {seconds_ago}s ago (duplicate window {window_seconds}s)"
            ),
            DenyReason::OrderRate { last_minute, max } => {
                format!("{last_minute} orders in the last minute, the limit is {max}")
            }
            DenyReason::CircuitLimit {
                price,
                lower,
                upper,
            } => format!("price {price} is outside today's circuit band {lower} - {upper}"),
            DenyReason::OrderValueAnomaly {
                value,
                mean,
                sigma,
                threshold,
                sample,
            } => format!(
                "order value {value} is above {threshold} (mean {mean} + 3 x σ {sigma} of the last {sample} orders)"
            ),
            DenyReason::ExitMismatch {
                key,
                side,
                quantity,
                position,
            } => format!(
                "an exit {side} {quantity} of {key} does not close the position held ({position})"
            ),
        }
    }
}

impl std::fmt::Display for DenyReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code(), self.explanation())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proposal_transitions() {
        use ProposalStatus::*;
        assert!(Pending.can_become(Approved));
        assert!(Approved.can_become(Executed));
        assert!(!Approved.can_become(Rejected));
        assert!(!Executed.can_become(Pending));
        assert!(!Expired.can_become(Approved));
        for s in ProposalStatus::ALL {
            assert_eq!(ProposalStatus::parse(s.as_str()), Some(s));
        }
    }

    #[test]
    fn deny_codes_are_stable() {
        assert_eq!(DenyReason::Halted.code(), "HALTED");
        let d = DenyReason::MaxDailyLoss {
            loss: Paise(250_000),
            max: Paise(200_000),
        };
        assert_eq!(d.code(), "MAX_DAILY_LOSS");
        assert!(d.to_string().contains("₹2,500.00"));
    }
}

/// Kite's order status, reduced to what the order state machine needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BrokerStatus {
    /// Working at the exchange (OPEN, TRIGGER PENDING, VALIDATION PENDING, PUT ORDER REQ
    /// RECEIVED, MODIFY ..., AMO REQ RECEIVED, ...).
    Open,
    Complete,
    Cancelled,
    Rejected,
}

impl BrokerStatus {
    /// Kite's status text: COMPLETE, CANCELLED, REJECTED; anything else is still working.
    pub fn from_kite(status: &str) -> BrokerStatus {
        match status.trim().to_ascii_uppercase().as_str() {
            "COMPLETE" => BrokerStatus::Complete,
            "CANCELLED" | "CANCELLED AMO" => BrokerStatus::Cancelled,
            "REJECTED" => BrokerStatus::Rejected,
            _ => BrokerStatus::Open,
        }
    }

    pub fn is_final(self) -> bool {
        self != BrokerStatus::Open
    }
}

/// What the broker says about one order now (a postback, a ticker order message, one entry of
/// the order list or the last entry of its history). Quantities are cumulative, so the same
/// update applied twice changes nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BrokerOrderUpdate {
    pub broker_order_id: String,
    /// Our tag, when the broker echoed it.
    pub tag: Option<String>,
    pub status: BrokerStatus,
    /// Kite's status text as sent (for logs and the audit).
    pub status_text: String,
    pub status_message: Option<String>,
    pub filled_quantity: i64,
    /// The order's whole quantity as the broker holds it now (a modify changes it); None when
    /// the source does not say.
    pub quantity: Option<i64>,
    /// Average price of everything filled so far.
    pub average_price: Paise,
    pub at: DateTime<Utc>,
}

/// One trade (an exchange fill) of an order, as the broker reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerTrade {
    pub quantity: i64,
    pub price: Paise,
}

/// A net position as the broker reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BrokerPosition {
    pub key: InstrumentKey,
    pub product: Product,
    pub quantity: i64,
    pub average_price: Paise,
}
