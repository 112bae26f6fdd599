//! Zerodha's equity charges for simulated fills: one table of rates per product (MIS intraday,
//! CNC delivery), each charge computed on the fill's turnover and rounded to the paisa.
//!
//! | charge                     | CNC (delivery)          | MIS (intraday)                 |
//! |----------------------------|-------------------------|--------------------------------|
//! | brokerage                  | 0                       | 0.03% of turnover, max ₹20/order |
//! | STT                        | 0.1% on buy and sell    | 0.025% on the sell side        |
//! | exchange transaction (NSE) | 0.00297% of turnover    | 0.00297% of turnover           |
//! | SEBI turnover fee          | ₹10 per crore (0.0001%) | ₹10 per crore (0.0001%)        |
//! | GST                        | 18% of brokerage + exchange transaction + SEBI fee | same |
//! | stamp duty                 | 0.015% on the buy side  | 0.003% on the buy side         |
//!
//! Source: zerodha.com/charges (equity, NSE), rates in force from October 2024. DP charges on
//! delivery sells are per scrip and day, not per order, and are not simulated.

use serde::Serialize;

use crate::config::BacktestCosts;
use crate::domain::{Paise, Product, Side};

/// One product's rates, as fractions of turnover.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rates {
    pub brokerage: f64,
    /// Cap per executed order, in paise (None: no brokerage cap because there is no brokerage).
    pub brokerage_cap: Option<Paise>,
    pub stt_buy: f64,
    pub stt_sell: f64,
    pub exchange_txn: f64,
    pub sebi: f64,
    pub gst: f64,
    pub stamp_buy: f64,
}

/// The table in the module docs.
pub const CNC: Rates = Rates {
    brokerage: 0.0,
    brokerage_cap: None,
    stt_buy: 0.001,
    stt_sell: 0.001,
    exchange_txn: 0.000_029_7,
    sebi: 0.000_001,
    gst: 0.18,
    stamp_buy: 0.000_15,
};

pub const MIS: Rates = Rates {
    brokerage: 0.000_3,
    brokerage_cap: Some(Paise(2000)),
    stt_buy: 0.0,
    stt_sell: 0.000_25,
    exchange_txn: 0.000_029_7,
    sebi: 0.000_001,
    gst: 0.18,
    stamp_buy: 0.000_03,
};

/// The charges on one fill, each in paise.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Charges {
    pub brokerage: Paise,
    pub stt: Paise,
    pub exchange_txn: Paise,
    pub sebi: Paise,
    pub gst: Paise,
    pub stamp_duty: Paise,
}

impl Charges {
    pub fn total(&self) -> Paise {
        self.brokerage + self.stt + self.exchange_txn + self.sebi + self.gst + self.stamp_duty
    }
}

fn paise(x: f64) -> Paise {
    Paise(x.round() as i64)
}

/// Charges of a fill of `quantity` at `price` under `model`.
pub fn charges(
    model: BacktestCosts,
    product: Product,
    side: Side,
    quantity: i64,
    price: Paise,
) -> Charges {
    if model == BacktestCosts::None {
        return Charges::default();
    }
    let r = match product {
        Product::Cnc => CNC,
        Product::Mis => MIS,
    };
    // Turnover in paise as f64: exact for any realistic order (< 2^53 paise).
    let turnover = (price.0 as f64) * quantity.unsigned_abs() as f64;
    let mut brokerage = paise(turnover * r.brokerage);
    if let Some(cap) = r.brokerage_cap {
        brokerage = brokerage.min(cap);
    }
    let stt = paise(
        turnover
            * match side {
                Side::Buy => r.stt_buy,
                Side::Sell => r.stt_sell,
            },
    );
    let exchange_txn = paise(turnover * r.exchange_txn);
    let sebi = paise(turnover * r.sebi);
    let gst = paise((brokerage.0 + exchange_txn.0 + sebi.0) as f64 * r.gst);
    let stamp_duty = match side {
        Side::Buy => paise(turnover * r.stamp_buy),
        Side::Sell => Paise::ZERO,
    };
    Charges {
        brokerage,
        stt,
        exchange_txn,
        sebi,
        gst,
        stamp_duty,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn none_is_free() {
        let c = charges(
            BacktestCosts::None,
            Product::Mis,
            Side::Sell,
            10,
            Paise(150_000),
        );
        assert_eq!(c.total(), Paise::ZERO);
    }

    /// Buy and sell 100 x ₹1,000 (turnover ₹1,00,000 each side), worked by hand.
    #[test]
    fn cnc_round_trip_by_hand() {
        let buy = charges(
            BacktestCosts::Zerodha,
            Product::Cnc,
            Side::Buy,
            100,
            Paise(100_000),
        );
        // STT 0.1% = ₹100; exchange 0.00297% = ₹2.97; SEBI ₹0.10; GST 18% of 3.07 = ₹0.5526
        // -> 55 paise; stamp 0.015% = ₹15.
        assert_eq!(buy.brokerage, Paise(0));
        assert_eq!(buy.stt, Paise(10_000));
        assert_eq!(buy.exchange_txn, Paise(297));
        assert_eq!(buy.sebi, Paise(10));
        assert_eq!(buy.gst, Paise(55));
        assert_eq!(buy.stamp_duty, Paise(1_500));
        assert_eq!(buy.total(), Paise(11_862));
        let sell = charges(
            BacktestCosts::Zerodha,
            Product::Cnc,
            Side::Sell,
            100,
            Paise(100_000),
        );
        assert_eq!(sell.stamp_duty, Paise(0));
        assert_eq!(sell.total(), Paise(10_000 + 297 + 10 + 55));
    }

    #[test]
    fn mis_brokerage_is_capped_and_stt_is_sell_only() {
        // Turnover ₹1,00,000: 0.03% = ₹30, capped at ₹20.
        let buy = charges(
            BacktestCosts::Zerodha,
            Product::Mis,
            Side::Buy,
            100,
            Paise(100_000),
        );
        assert_eq!(buy.brokerage, Paise(2_000));
        assert_eq!(buy.stt, Paise(0));
        assert_eq!(buy.stamp_duty, Paise(300)); // 0.003% = ₹3
        // GST: 18% of (20 + 2.97 + 0.10) = 4.1526 -> ₹4.15
        assert_eq!(buy.gst, Paise(415));
        let sell = charges(
            BacktestCosts::Zerodha,
            Product::Mis,
            Side::Sell,
            100,
            Paise(100_000),
        );
        assert_eq!(sell.stt, Paise(2_500)); // 0.025% = ₹25
        assert_eq!(sell.stamp_duty, Paise(0));
        // A small order pays 0.03%: turnover ₹10,000 -> ₹3.
        let small = charges(
            BacktestCosts::Zerodha,
            Product::Mis,
            Side::Buy,
            10,
            Paise(100_000),
        );
        assert_eq!(small.brokerage, Paise(300));
    }
}
