//! Risk engine: every order passes named checks in stages at the moment it is placed, and comes
//! out either as a [`RiskApproved`] (the only type the OMS accepts) or as a [`RiskRefused`]
//! carrying a typed [`DenyReason`]. Either way the result carries the [`RiskDecision`] (request,
//! the context figures used, code) that the caller writes to the audit table.
//!
//! Entries run the stages in nautilus_trader's order, the first refusal wins:
//!
//! 1. **validity** (is this order acceptable in itself, now): OUTSIDE_TRADING_WINDOW,
//!    INSTRUMENT_NOT_ALLOWED, PROPOSAL_EXPIRED, STALE_PRICE, PRICE_DEVIATION;
//! 2. **trading state**: HALTED, PAUSED;
//! 3. **exposure**: MAX_POSITION_VALUE, MAX_OPEN_POSITIONS, MAX_ORDERS_PER_DAY, MAX_DAILY_LOSS,
//!    INSUFFICIENT_CAPITAL (against the day's capital x leverage, `Settings::capital_on`, which
//!    the live ramp caps, and, when the context holds Kite's order margin
//!    ([`RiskContext::margin`], live), also against Kite's available margin). Entries still
//!    working ([`RiskContext::working_entries`]) count as the positions they may open. The
//!    entry is valued at the dearer of the last price and its expected fill (the last price
//!    moved by [`RiskContext::fill_slippage_bps`], the paper slippage), so a position sized to
//!    the limit does not fill over it;
//! 4. **execution**: DUPLICATE_ORDER (same instrument and side within
//!    `[risk] duplicate_window_seconds`; 0 turns it off), ORDER_RATE (orders recorded in the last
//!    60 s >= `[risk] max_orders_per_minute`), CIRCUIT_LIMIT (price outside the day's band; skipped
//!    when [`RiskContext::circuit_band`] is None, as in paper mode, which has no Kite quote),
//!    ORDER_VALUE_ANOMALY (value above mean + 3σ of the last [`ANOMALY_SAMPLE`] orders' values,
//!    once [`ANOMALY_MIN_SAMPLE`] exist).
//!
//! Exits ([`OrderPurpose::Exit`]: brackets, exit signals, square-off, /kill) pass only the
//! **exit** stage: EXIT_MISMATCH (a positive quantity, on the opposite side of an open position
//! in the same instrument and product, no larger than it). No entry limit (halt, pause, window,
//! allowed instruments, exposure, rate, duplicates, circuit band, value) ever refuses an exit:
//! closing is always allowed, so /kill cannot be blocked by the limits that stopped the entries.

pub mod day;

use std::sync::Arc;

use chrono::{DateTime, Datelike, TimeDelta, Utc};
use serde::Serialize;

use crate::clock::{Clock, IST};
use crate::config::{RiskSettings, Settings};
use crate::domain::{
    APPROVED, CircuitBand, DenyReason, InstrumentKey, OrderMargin, OrderPurpose, OrderRequest,
    Paise, Position, Product, RecentOrder, RiskDecision, order_price, order_value,
    paper_fill_price, tick_or_default,
};

/// ORDER_VALUE_ANOMALY looks at the values of this many most recent orders...
pub const ANOMALY_SAMPLE: usize = 50;
/// ...once at least this many exist.
pub const ANOMALY_MIN_SAMPLE: usize = 20;
/// ...and refuses a value above mean + this many standard deviations.
pub const ANOMALY_SIGMAS: i128 = 3;
/// ORDER_RATE counts the orders recorded in this many seconds before now.
pub const RATE_WINDOW_SECONDS: i64 = 60;

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
    decision: RiskDecision,
}

impl<T> RiskApproved<T> {
    /// Only the risk engine approves.
    fn new(inner: T, decision: RiskDecision) -> Self {
        Self { inner, decision }
    }

    pub fn inner(&self) -> &T {
        &self.inner
    }

    /// The approval as audited: the OMS writes it with the order row, in one transaction.
    pub fn decision(&self) -> &RiskDecision {
        &self.decision
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

/// A refusal: the request handed back with the reason it was refused, and the decision for the
/// audit table (the caller writes it).
#[derive(Debug, Clone, PartialEq)]
pub struct RiskRefused<T> {
    pub item: T,
    pub reason: DenyReason,
    pub decision: RiskDecision,
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
    /// Orders already recorded (every purpose), oldest first: at least those of the last
    /// `max(duplicate window, 60 s)` and the last [`ANOMALY_SAMPLE`]
    /// ([`crate::store::Store::orders_for_risk`]). Empty: the execution checks see no history.
    pub recent_orders: Vec<RecentOrder>,
    /// The instrument's circuit band today (Kite's quote, live). None: CIRCUIT_LIMIT is skipped
    /// (paper mode has no quote; the paper broker fills at stored prices).
    pub circuit_band: Option<CircuitBand>,
    /// Kite's margin for this order and the available margin (live). None: the capital check
    /// uses `[trading] capital` x leverage only (paper).
    pub margin: Option<OrderMargin>,
    /// Entries recorded but not final (Submitting, Unknown, or working at the broker, like a
    /// live LIMIT entry waiting for its price). What they may still add counts toward the
    /// position limits and the capital in use as if it had filled: else approvals while
    /// entries wait could open more positions than `max_open_positions` once they all fill.
    /// Empty in paper mode, where entries settle at once.
    pub working_entries: Vec<WorkingEntry>,
    /// Entries are valued at the last price moved against them by this many basis points,
    /// rounded to `tick_size`, when that is dearer than the last price: the paper broker's fill
    /// ([`crate::domain::paper_fill_price`]), so a position sized to `max_position_value` at
    /// the last price does not fill above it. Paper: `[paper] slippage_bps`; live: 0 (Kite's
    /// own margin figure prices the order).
    pub fill_slippage_bps: f64,
    /// The instrument's tick size (rupees; None: [`crate::domain::DEFAULT_TICK`]).
    pub tick_size: Option<f64>,
}

/// An entry order that may still fill, by what it may still add.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkingEntry {
    /// Its tag: a placement of the same order (a retry) does not count itself.
    pub tag: String,
    pub key: InstrumentKey,
    pub product: Product,
    /// Signed quantity still to fill: > 0 buys.
    pub quantity: i64,
    /// The price it may fill at (its limit, else its reference price).
    pub price: Paise,
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
        let held: Paise = self
            .positions
            .iter()
            .map(|(p, _)| p.market_value(p.avg_price))
            .sum();
        // Retries of the order being checked are rare and only over-count (the safe side).
        let waiting: Paise = self
            .working_entries
            .iter()
            .map(|w| (w.price * w.quantity).abs())
            .sum();
        held + waiting
    }

    /// Working entries other than `req` itself.
    fn working_besides<'a>(
        &'a self,
        req: &'a OrderRequest,
    ) -> impl Iterator<Item = &'a WorkingEntry> {
        self.working_entries
            .iter()
            .filter(move |w| w.tag != req.tag && w.quantity != 0)
    }

    fn open_positions(&self) -> impl Iterator<Item = &Position> {
        self.positions
            .iter()
            .map(|(p, _)| p)
            .filter(|p| p.is_open())
    }

    /// The signed quantity held in the request's instrument and product (0: none).
    fn held(&self, req: &OrderRequest) -> i64 {
        self.open_positions()
            .find(|p| p.key == req.key && p.product == req.product)
            .map_or(0, |p| p.quantity)
    }

    /// Recent orders other than `req` itself (a retried placement is not its own duplicate).
    fn others<'a>(&'a self, req: &'a OrderRequest) -> impl Iterator<Item = &'a RecentOrder> {
        self.recent_orders.iter().filter(move |o| o.tag != req.tag)
    }
}

/// Mean and standard deviation of the recent orders' values, and the anomaly threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ValueStats {
    pub sample: u32,
    pub mean: Paise,
    /// Population standard deviation, rounded to the paisa (display only: the check is exact).
    pub sigma: Paise,
    pub threshold: Paise,
    sum: i128,
    sum_sq: i128,
}

impl ValueStats {
    /// Over `values`; None when fewer than [`ANOMALY_MIN_SAMPLE`].
    pub fn of(values: &[Paise]) -> Option<ValueStats> {
        if values.len() < ANOMALY_MIN_SAMPLE {
            return None;
        }
        let n = values.len() as i128;
        let sum: i128 = values.iter().map(|v| v.0 as i128).sum();
        let sum_sq: i128 = values
            .iter()
            .map(|v| (v.0 as i128).saturating_mul(v.0 as i128))
            .fold(0i128, i128::saturating_add);
        // n² σ² = n Σx² - (Σx)², never negative in exact arithmetic.
        let n2_var = n
            .saturating_mul(sum_sq)
            .saturating_sub(sum.saturating_mul(sum))
            .max(0);
        let mean = sum as f64 / n as f64;
        let sigma = (n2_var as f64).sqrt() / n as f64;
        let as_paise = |x: f64| Paise(x.round().clamp(i64::MIN as f64, i64::MAX as f64) as i64);
        Some(ValueStats {
            sample: values.len() as u32,
            mean: as_paise(mean),
            sigma: as_paise(sigma),
            threshold: as_paise(mean + ANOMALY_SIGMAS as f64 * sigma),
            sum,
            sum_sq,
        })
    }

    /// Whether `value` > mean + 3σ, decided in integers: with d = n·v - Σx, d > 0 and
    /// d² > 9 (n Σx² - (Σx)²). With σ = 0 any value above the mean is anomalous.
    pub fn is_anomalous(&self, value: Paise) -> bool {
        let n = self.sample as i128;
        let d = n.saturating_mul(value.0 as i128).saturating_sub(self.sum);
        if d <= 0 {
            return false;
        }
        let n2_var = n
            .saturating_mul(self.sum_sq)
            .saturating_sub(self.sum.saturating_mul(self.sum))
            .max(0);
        d.saturating_mul(d) > (ANOMALY_SIGMAS * ANOMALY_SIGMAS).saturating_mul(n2_var)
    }
}

/// The figures a decision was taken on, as the audit keeps them (money in paise).
#[derive(Debug, Serialize)]
struct Inputs {
    now: DateTime<Utc>,
    purpose: &'static str,
    order_price: i64,
    order_value: i64,
    halted: bool,
    paused: bool,
    last_price: Option<i64>,
    /// Entries: the price the exposure checks valued it at (see `valuation_price`).
    valued_at: Option<i64>,
    fill_slippage_bps: f64,
    price_at: Option<DateTime<Utc>>,
    max_price_age_seconds: Option<u64>,
    expires_at: Option<DateTime<Utc>>,
    position_held: i64,
    open_positions: usize,
    capital_in_use: i64,
    orders_today: u32,
    day_pnl: i64,
    orders_last_minute: u32,
    same_side_seconds_ago: Option<i64>,
    value_stats: Option<ValueStats>,
    circuit_band: Option<CircuitBand>,
    margin: Option<OrderMargin>,
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

    /// Passes or refuses `req` against `ctx` (entries: every stage; exits: the exit stage
    /// only, see the module docs).
    #[allow(clippy::result_large_err)]
    pub fn check(
        &self,
        req: OrderRequest,
        ctx: &RiskContext,
    ) -> Result<RiskApproved<OrderRequest>, RiskRefused<OrderRequest>> {
        let verdict = if matches!(req.purpose, OrderPurpose::Exit { .. }) {
            Self::check_exit(&req, ctx).map_err(|r| ("exit", r))
        } else {
            self.check_order_validity(&req, ctx)
                .map_err(|r| ("validity", r))
                .and_then(|()| {
                    self.check_trading_state(ctx)
                        .map_err(|r| ("trading_state", r))
                })
                .and_then(|()| self.check_exposure(&req, ctx).map_err(|r| ("exposure", r)))
                .and_then(|()| {
                    self.check_execution(&req, ctx)
                        .map_err(|r| ("execution", r))
                })
        };
        let now = self.clock.now();
        let inputs = serde_json::to_value(self.inputs(&req, ctx, now))
            .unwrap_or_else(|e| serde_json::json!({ "error": e.to_string() }));
        match verdict {
            Ok(()) => {
                let decision = RiskDecision {
                    at: now,
                    request: req.clone(),
                    code: APPROVED.to_string(),
                    stage: "passed".into(),
                    reason: None,
                    inputs,
                };
                Ok(RiskApproved::new(req, decision))
            }
            Err((stage, reason)) => {
                tracing::info!(tag = %req.tag, key = %req.key, code = reason.code(), stage, "risk refused an order: {reason}");
                let decision = RiskDecision {
                    at: now,
                    request: req.clone(),
                    code: reason.code().to_string(),
                    stage: stage.into(),
                    reason: Some(reason.explanation()),
                    inputs,
                };
                Err(RiskRefused {
                    item: req,
                    reason,
                    decision,
                })
            }
        }
    }

    fn inputs(&self, req: &OrderRequest, ctx: &RiskContext, now: DateTime<Utc>) -> Inputs {
        Inputs {
            now,
            purpose: if req.is_entry() { "entry" } else { "exit" },
            order_price: order_price(req).0,
            order_value: order_value(req).0,
            halted: ctx.halted,
            paused: ctx.paused,
            last_price: ctx.last_price.map(|p| p.0),
            valued_at: req.is_entry().then(|| Self::valuation_price(req, ctx).0),
            fill_slippage_bps: ctx.fill_slippage_bps,
            price_at: ctx.price_at,
            max_price_age_seconds: ctx.max_price_age_seconds,
            expires_at: ctx.expires_at,
            position_held: ctx.held(req),
            open_positions: ctx.open_positions().count(),
            capital_in_use: ctx.capital_in_use().0,
            orders_today: ctx.orders_today,
            day_pnl: ctx.day_pnl().0,
            orders_last_minute: Self::orders_last_minute(req, ctx, now),
            same_side_seconds_ago: Self::last_same_order(req, ctx)
                .map(|at| (now - at).num_seconds()),
            value_stats: Self::value_stats(req, ctx),
            circuit_band: ctx.circuit_band,
            margin: ctx.margin,
        }
    }

    /// Exit stage: EXIT_MISMATCH unless the exit closes (part of) an open position.
    fn check_exit(req: &OrderRequest, ctx: &RiskContext) -> Result<(), DenyReason> {
        let held = ctx.held(req);
        let opposite = held != 0 && req.side.sign() == -held.signum();
        if !opposite || req.quantity <= 0 || req.quantity > held.abs() {
            return Err(DenyReason::ExitMismatch {
                key: req.key.clone(),
                side: req.side,
                quantity: req.quantity,
                position: held,
            });
        }
        Ok(())
    }

    /// Orders recorded less than [`RATE_WINDOW_SECONDS`] before now (the request excluded).
    fn orders_last_minute(req: &OrderRequest, ctx: &RiskContext, now: DateTime<Utc>) -> u32 {
        let window = TimeDelta::seconds(RATE_WINDOW_SECONDS);
        ctx.others(req).filter(|o| now - o.at < window).count() as u32
    }

    /// When the latest other order for the same instrument and side was recorded.
    fn last_same_order(req: &OrderRequest, ctx: &RiskContext) -> Option<DateTime<Utc>> {
        ctx.others(req)
            .filter(|o| o.key == req.key && o.side == req.side)
            .map(|o| o.at)
            .max()
    }

    /// Statistics of the last [`ANOMALY_SAMPLE`] other orders' values.
    fn value_stats(req: &OrderRequest, ctx: &RiskContext) -> Option<ValueStats> {
        let values: Vec<Paise> = ctx.others(req).map(|o| o.value).collect();
        let start = values.len().saturating_sub(ANOMALY_SAMPLE);
        ValueStats::of(&values[start..])
    }

    /// Stage 4: checks against the order flow and the exchange at execution time.
    fn check_execution(&self, req: &OrderRequest, ctx: &RiskContext) -> Result<(), DenyReason> {
        let risk = &self.settings.risk;
        let now = self.clock.now();
        if risk.duplicate_window_seconds > 0
            && let Some(at) = Self::last_same_order(req, ctx)
        {
            let window = TimeDelta::seconds(
                i64::try_from(risk.duplicate_window_seconds).unwrap_or(i64::MAX / 1000),
            );
            if now - at <= window {
                return Err(DenyReason::DuplicateOrder {
                    key: req.key.clone(),
                    side: req.side,
                    seconds_ago: (now - at).num_seconds(),
                    window_seconds: risk.duplicate_window_seconds,
                });
            }
        }
        let last_minute = Self::orders_last_minute(req, ctx, now);
        if last_minute >= risk.max_orders_per_minute {
            return Err(DenyReason::OrderRate {
                last_minute,
                max: risk.max_orders_per_minute,
            });
        }
        // A band of zeros is Kite's "no band" (e.g. some indices): nothing to check against.
        if let Some(band) = ctx.circuit_band
            && band.upper.0 > 0
        {
            let price = order_price(req);
            if price < band.lower || price > band.upper {
                return Err(DenyReason::CircuitLimit {
                    price,
                    lower: band.lower,
                    upper: band.upper,
                });
            }
        }
        if let Some(stats) = Self::value_stats(req, ctx) {
            let value = order_value(req);
            if stats.is_anomalous(value) {
                return Err(DenyReason::OrderValueAnomaly {
                    value,
                    mean: stats.mean,
                    sigma: stats.sigma,
                    threshold: stats.threshold,
                    sample: stats.sample,
                });
            }
        }
        Ok(())
    }

    /// Stage 2: may anything new be opened at all?
    fn check_trading_state(&self, ctx: &RiskContext) -> Result<(), DenyReason> {
        if ctx.halted {
            return Err(DenyReason::Halted);
        }
        if ctx.paused {
            return Err(DenyReason::Paused);
        }
        Ok(())
    }

    /// Stage 1: is this order acceptable in itself, now?
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

    /// The price an entry is valued at: the dearer of the last price (else the order's
    /// reference) and its expected fill, since a buy fills above the last price and a short is
    /// not valued below it.
    fn valuation_price(req: &OrderRequest, ctx: &RiskContext) -> Paise {
        let last = ctx.last_price.unwrap_or(req.reference_price);
        last.max(paper_fill_price(
            last,
            req.side,
            ctx.fill_slippage_bps,
            tick_or_default(ctx.tick_size),
        ))
    }

    /// Stage 3: would it take the book beyond its limits?
    fn check_exposure(&self, req: &OrderRequest, ctx: &RiskContext) -> Result<(), DenyReason> {
        let risk = &self.settings.risk;
        let price = Self::valuation_price(req, ctx);
        let existing = ctx
            .open_positions()
            .find(|p| p.key == req.key && p.product == req.product);
        let working: i64 = ctx
            .working_besides(req)
            .filter(|w| w.key == req.key && w.product == req.product)
            .map(|w| w.quantity)
            .sum();
        let existing_qty = existing.map_or(0, |p| p.quantity) + working;
        let resulting_qty = existing_qty + req.side.sign() * req.quantity;
        let value = (price * resulting_qty).abs();
        if value > risk.max_position_value {
            return Err(DenyReason::MaxPositionValue {
                value,
                max: risk.max_position_value,
            });
        }
        // Instruments held, or about to be held by an entry still working.
        let mut held: std::collections::HashSet<(&InstrumentKey, Product)> =
            ctx.open_positions().map(|p| (&p.key, p.product)).collect();
        held.extend(ctx.working_besides(req).map(|w| (&w.key, w.product)));
        let open = held.len() as u32;
        if !held.contains(&(&req.key, req.product)) && open >= risk.max_open_positions {
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
        let capital = self
            .settings
            .capital_on(crate::clock::ist_date(self.clock.now()));
        let buying_power = Paise((capital.0 as f64 * trading.leverage.max(0.0)).floor() as i64);
        let available = Paise((buying_power - ctx.capital_in_use()).0.max(0));
        let needed = price * req.quantity;
        if needed > available {
            return Err(DenyReason::InsufficientCapital { needed, available });
        }
        // Live: the broker's own figure for this order (product, leverage, charges included).
        if let Some(m) = ctx.margin
            && m.required > m.available
        {
            return Err(DenyReason::InsufficientCapital {
                needed: m.required,
                available: m.available,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests;
