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

/// The paper fill price, and the price risk and sizing value an entry at: the last price moved
/// against us by `slippage_bps` (buys higher, sells lower), rounded to the tick. Negative
/// slippage counts as none.
pub fn paper_fill_price(last: Paise, side: Side, slippage_bps: f64, tick: f64) -> Paise {
    let bps = if slippage_bps.is_finite() {
        slippage_bps.max(0.0)
    } else {
        0.0
    };
    let factor = 1.0 + side.sign() as f64 * bps / 10_000.0;
    round_to_tick(last.as_rupees_f64() * factor, tick)
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buys_pay_more_and_sells_get_less_by_the_slippage() {
        let last = Paise::from_rupees(1500);
        assert_eq!(paper_fill_price(last, Side::Buy, 5.0, 0.05), Paise(150075));
        assert_eq!(paper_fill_price(last, Side::Sell, 5.0, 0.05), Paise(149925));
        assert_eq!(paper_fill_price(last, Side::Buy, 0.0, 0.05), last);
    }

    #[test]
    fn fills_are_rounded_to_the_tick() {
        // 123.45 x 1.0005 = 123.5117 -> 123.50 on a 0.05 tick, 123.5 on 0.1, 124 on 1.0.
        let last = Paise(12345);
        assert_eq!(paper_fill_price(last, Side::Buy, 5.0, 0.05), Paise(12350));
        assert_eq!(paper_fill_price(last, Side::Buy, 5.0, 1.0), Paise(12400));
        // 123.45 x 0.9995 = 123.3883 -> 123.40
        assert_eq!(paper_fill_price(last, Side::Sell, 5.0, 0.05), Paise(12340));
        // An unknown (zero) tick falls back to 0.05.
        assert_eq!(paper_fill_price(last, Side::Sell, 5.0, 0.0), Paise(12340));
        // Negative slippage is treated as none rather than as a gift.
        assert_eq!(paper_fill_price(last, Side::Buy, -50.0, 0.05), last);
    }
}
