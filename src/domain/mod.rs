//! Pure domain types shared by every layer: no I/O, no async, no database.
//!
//! `domain` is imported by all other modules and imports none of them.

mod analysis;
mod instrument;
mod money;
mod risk;

pub use analysis::{AnalysisTrace, ToolCallRecord};
pub use instrument::{Candle, Instrument, InstrumentKey, Interval, ParseError};
pub use money::{
    DEFAULT_TICK, MAX_PRICE_RUPEES, Paise, price_problem, round_to_tick, tick_or_default,
};
pub use risk::{
    APPROVED, CircuitBand, OrderMargin, RecentOrder, RiskDecision, order_price, order_value,
};

use serde::{Deserialize, Serialize};

/// Direction of a trade or order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Side {
    Buy,
    Sell,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Buy => "BUY",
            Side::Sell => "SELL",
        }
    }

    pub fn opposite(self) -> Side {
        match self {
            Side::Buy => Side::Sell,
            Side::Sell => Side::Buy,
        }
    }

    /// +1 for buy, -1 for sell: the sign a fill of this side gives a position.
    pub fn sign(self) -> i64 {
        match self {
            Side::Buy => 1,
            Side::Sell => -1,
        }
    }
}

impl std::fmt::Display for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Side {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_uppercase().as_str() {
            "BUY" => Ok(Side::Buy),
            "SELL" => Ok(Side::Sell),
            _ => Err(ParseError(format!(
                "unknown side {s:?}: expected BUY or SELL"
            ))),
        }
    }
}

pub mod command;
pub mod tags;
pub mod trading;
pub use command::{Actor, Command, Request};
pub use tags::{Leg, MAX_TAG_LEN, TagOf, leg_tag, parse_tag, sibling_tag, tag_is_valid};
pub use trading::{
    BrokerOrderUpdate, BrokerPosition, BrokerStatus, BrokerTrade, DenyReason, Fill, NewProposal,
    Order, OrderPurpose, OrderRequest, OrderState, OrderType, Position, Product, Proposal,
    ProposalStatus, Signal, Verdict,
};
