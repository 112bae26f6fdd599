//! Risk engine: every order passes named checks in stages (trading state, order validity,
//! exposure) at the moment it is placed, and comes out either as a [`RiskApproved`] (the only
//! type the OMS accepts) or as a [`RiskRefused`] carrying a typed [`DenyReason`].
//!
//! Orders that reduce exposure ([`OrderPurpose::Exit`]) are never blocked: they still go
//! through [`RiskEngine::check`], because that is the only way to obtain a `RiskApproved`.

pub mod day;

use std::sync::Arc;

use chrono::{DateTime, Datelike, Utc};

use crate::clock::{Clock, IST};
use crate::config::{RiskSettings, Settings};
use crate::domain::{DenyReason, OrderPurpose, OrderRequest, Paise, Position};

/// Proof that the risk engine passed `T`. The field is private to this module, so no other
/// module can build one: the OMS taking `RiskApproved<OrderRequest>` is a compile-time gate.
/// Naming the type elsewhere is fine:
///
/// ```
/// use mft::risk::RiskApproved;
/// fn inspect(a: &RiskApproved<u32>) -> u32 { *a.inner() }
/// ```
///
/// Building one is not:
///
/// ```compile_fail
/// use mft::risk::RiskApproved;
/// let forged = RiskApproved { inner: 1u32 };
/// ```
///
/// ```compile_fail
/// use mft::risk::RiskApproved;
/// let forged: RiskApproved<u32> = RiskApproved::new(1u32);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct RiskApproved<T> {
    inner: T,
}

impl<T> RiskApproved<T> {
    /// Only the risk engine approves.
    fn new(inner: T) -> Self {
        Self { inner }
    }

    pub fn inner(&self) -> &T {
        &self.inner
    }

    pub fn into_inner(self) -> T {
        self.inner
    }
}

impl<T> std::ops::Deref for RiskApproved<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.inner
    }
}

/// A refusal: the request handed back with the reason it was refused.
#[derive(Debug, Clone, PartialEq)]
pub struct RiskRefused<T> {
    pub item: T,
    pub reason: DenyReason,
}

/// The state the checks run against, taken at one moment (the approval, not the proposal).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RiskContext {
    pub halted: bool,
    /// /pause is on: entries are refused with PAUSED.
    pub paused: bool,
    /// Last price of the order's instrument; `None` when nothing is stored for it.
    pub last_price: Option<Paise>,
    /// Open positions with their last prices (`None`: unknown, the average price is used).
    pub positions: Vec<(Position, Option<Paise>)>,
    /// Orders created since IST midnight (every purpose).
    pub orders_today: u32,
    /// Realized P&L since IST midnight.
    pub realized_today: Paise,
    /// The part of `realized_today` + unrealized P&L that positions carried into today earned
    /// before today's session (see [`day`]); 0 when nothing was carried.
    pub earned_before_today: Paise,
    /// The proposal's expiry, for entries from a proposal.
    pub expires_at: Option<DateTime<Utc>>,
    /// When `last_price` was seen (a live tick, or the close of the stored candle).
    pub price_at: Option<DateTime<Utc>>,
    /// Set during market hours with a Kite session: `last_price` must be at most this old
    /// (`[risk] max_price_age_seconds`), or the entry is refused with STALE_PRICE.
    pub max_price_age_seconds: Option<u64>,
}

impl RiskContext {
    /// Unrealized P&L of the open positions at their last prices.
    pub fn unrealized(&self) -> Paise {
        self.positions
            .iter()
            .map(|(p, last)| p.unrealized(last.unwrap_or(p.avg_price)))
            .sum()
    }

    /// Today's P&L: today's realized P&L plus the change in unrealized P&L since the previous
    /// session's close (positions opened today from their entry). See [`day`].
    pub fn day_pnl(&self) -> Paise {
        self.realized_today + self.unrealized() - self.earned_before_today
    }

    /// Today's loss (0 when in profit).
    pub fn day_loss(&self) -> Paise {
        Paise((-self.day_pnl().0).max(0))
    }

    /// Capital the open positions use, at their average prices.
    pub fn capital_in_use(&self) -> Paise {
        self.positions
            .iter()
            .map(|(p, _)| p.market_value(p.avg_price))
            .sum()
    }

    fn open_positions(&self) -> impl Iterator<Item = &Position> {
        self.positions
            .iter()
            .map(|(p, _)| p)
            .filter(|p| p.is_open())
    }
}

/// Runs the checks. Cheap to clone (settings and clock are shared).
#[derive(Debug, Clone)]
pub struct RiskEngine {
    settings: Arc<Settings>,
    clock: Arc<dyn Clock>,
}

impl RiskEngine {
    pub fn new(settings: Arc<Settings>, clock: Arc<dyn Clock>) -> Self {
        Self { settings, clock }
    }

    pub fn settings(&self) -> &RiskSettings {
        &self.settings.risk
    }

    /// Passes or refuses `req` against `ctx`. Exits always pass.
    #[allow(clippy::result_large_err)]
    pub fn check(
        &self,
        req: OrderRequest,
        ctx: &RiskContext,
    ) -> Result<RiskApproved<OrderRequest>, RiskRefused<OrderRequest>> {
        if matches!(req.purpose, OrderPurpose::Exit { .. }) {
            return Ok(RiskApproved::new(req));
        }
        let verdict = self
            .check_trading_state(ctx)
            .and_then(|()| self.check_order_validity(&req, ctx))
            .and_then(|()| self.check_exposure(&req, ctx));
        match verdict {
            Ok(()) => Ok(RiskApproved::new(req)),
            Err(reason) => {
                tracing::info!(tag = %req.tag, key = %req.key, code = reason.code(), "risk refused an order: {reason}");
                Err(RiskRefused { item: req, reason })
            }
        }
    }

    /// Stage 1: may anything new be opened at all?
    fn check_trading_state(&self, ctx: &RiskContext) -> Result<(), DenyReason> {
        if ctx.halted {
            return Err(DenyReason::Halted);
        }
        if ctx.paused {
            return Err(DenyReason::Paused);
        }
        Ok(())
    }

    /// Stage 2: is this order acceptable in itself, now?
    fn check_order_validity(
        &self,
        req: &OrderRequest,
        ctx: &RiskContext,
    ) -> Result<(), DenyReason> {
        let risk = &self.settings.risk;
        let now = self.clock.now();
        let local = now.with_timezone(&IST);
        if !risk.trading_days.contains(local.weekday())
            || !risk.trading_window.contains(local.time())
        {
            return Err(DenyReason::OutsideTradingWindow {
                now_ist: local.format("%a %H:%M").to_string(),
                window: format!("{} {}", risk.trading_days, risk.trading_window),
            });
        }
        if !self.settings.allowed_instruments().contains(&req.key) {
            return Err(DenyReason::InstrumentNotAllowed {
                key: req.key.clone(),
            });
        }
        if let Some(expired_at) = ctx.expires_at
            && now >= expired_at
        {
            return Err(DenyReason::ProposalExpired {
                expired_at,
                expired_at_ist: format!("{} IST", expired_at.with_timezone(&IST).format("%H:%M")),
            });
        }
        if let Some(max) = ctx.max_price_age_seconds {
            let age = ctx.price_at.map(|at| (now - at).num_seconds().max(0));
            if age.is_none_or(|a| a > i64::try_from(max).unwrap_or(i64::MAX)) {
                return Err(DenyReason::StalePrice {
                    age_seconds: age,
                    max_seconds: max,
                });
            }
        }
        // Without a stored price the deviation cannot be measured; the paper broker then
        // fails the order for want of a price, so nothing is filled blind.
        if let Some(last) = ctx.last_price
            && last.0 > 0
        {
            let deviation_pct =
                (req.reference_price.0 - last.0).abs() as f64 * 100.0 / last.0 as f64;
            if deviation_pct > risk.max_price_deviation_pct {
                return Err(DenyReason::PriceDeviation {
                    entry: req.reference_price,
                    last,
                    deviation_pct,
                    max_pct: risk.max_price_deviation_pct,
                });
            }
        }
        Ok(())
    }

    /// Stage 3: would it take the book beyond its limits?
    fn check_exposure(&self, req: &OrderRequest, ctx: &RiskContext) -> Result<(), DenyReason> {
        let risk = &self.settings.risk;
        let price = ctx.last_price.unwrap_or(req.reference_price);
        let existing = ctx
            .open_positions()
            .find(|p| p.key == req.key && p.product == req.product);
        let existing_qty = existing.map_or(0, |p| p.quantity);
        let resulting_qty = existing_qty + req.side.sign() * req.quantity;
        let value = (price * resulting_qty).abs();
        if value > risk.max_position_value {
            return Err(DenyReason::MaxPositionValue {
                value,
                max: risk.max_position_value,
            });
        }
        let open = ctx.open_positions().count() as u32;
        if existing.is_none() && open >= risk.max_open_positions {
            return Err(DenyReason::MaxOpenPositions {
                open,
                max: risk.max_open_positions,
            });
        }
        if ctx.orders_today >= risk.max_orders_per_day {
            return Err(DenyReason::MaxOrdersPerDay {
                today: ctx.orders_today,
                max: risk.max_orders_per_day,
            });
        }
        let loss = ctx.day_loss();
        if loss >= risk.max_daily_loss {
            return Err(DenyReason::MaxDailyLoss {
                loss,
                max: risk.max_daily_loss,
            });
        }
        let trading = &self.settings.trading;
        let buying_power =
            Paise((trading.capital.0 as f64 * trading.leverage.max(0.0)).floor() as i64);
        let available = Paise((buying_power - ctx.capital_in_use()).0.max(0));
        let needed = price * req.quantity;
        if needed > available {
            return Err(DenyReason::InsufficientCapital { needed, available });
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests;
