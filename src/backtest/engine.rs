//! The replay core: walks the candles of every instrument in time order on a simulated clock,
//! asks the analyst about each candle only once it has closed, sizes entries, passes every
//! order through the risk engine and fills what it approves on a simulated broker, keeping the
//! book with the OMS's position arithmetic.
//!
//! Only closed candles are visible: candle t is handed to the analyst after it closed, and an
//! order decided on it fills at candle t+1's open (`next_open`) or at t's close (`close`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use chrono::{DateTime, Duration, NaiveTime, TimeZone, Utc};

use super::BacktestError;
use super::costs::charges;
use crate::agents::{Analyst, RuleAnalyst, RuleStream, size};
use crate::clock::{IST, ManualClock, ist_date};
use crate::config::{BacktestFill, ExitRule, Settings};
use crate::domain::{
    Candle, InstrumentKey, Interval, OrderPurpose, OrderRequest, OrderType, Paise, Position,
    Product, Side, Signal,
};
use crate::oms::{apply_fill, bracket_hit};
use crate::risk::{RiskApproved, RiskContext, RiskEngine};

/// One instrument's candles (ascending, the range of the run).
#[derive(Debug, Clone)]
pub struct Series {
    pub key: InstrumentKey,
    pub candles: Vec<Candle>,
    /// Tick size for sizing's price rounding (fills are never rounded to it).
    pub tick: Option<f64>,
}

/// How decisions are made.
pub enum Decider {
    /// The rule analyst in its streaming form (the fast path).
    Rules,
    /// Any analyst behind the trait (LLM, record/replay), asked with the last
    /// `[trading] lookback_bars` closed candles on every bar.
    Analyst(Arc<dyn Analyst>),
}

/// A closed round trip.
#[derive(Debug, Clone, PartialEq)]
pub struct Trade {
    pub entry_time: DateTime<Utc>,
    pub exit_time: DateTime<Utc>,
    pub key: InstrumentKey,
    pub side: Side,
    pub quantity: i64,
    pub entry_price: Paise,
    pub exit_price: Paise,
    /// Net of both fills' charges.
    pub pnl: Paise,
    pub charges: Paise,
    pub bars_held: u64,
    pub exit_reason: String,
}

/// A position still open at the end, marked at the last close.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenTrade {
    pub entry_time: DateTime<Utc>,
    pub key: InstrumentKey,
    pub side: Side,
    pub quantity: i64,
    pub entry_price: Paise,
    pub last_close: Paise,
    /// (last close - entry) x signed quantity, less the entry charges.
    pub unrealized: Paise,
    pub charges: Paise,
    pub bars_held: u64,
}

/// One line for the trade log: a fill or a refusal.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub ts: DateTime<Utc>,
    pub kind: &'static str,
    pub key: InstrumentKey,
    pub detail: String,
}

/// A decision the analyst made on a closed candle (for the look-ahead test and the trace).
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub key: InstrumentKey,
    pub candle_ts: DateTime<Utc>,
    pub signal: Signal,
}

/// Everything a run produced.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub trades: Vec<Trade>,
    pub open: Vec<OpenTrade>,
    /// Equity after each time step (cash + positions at their last close).
    pub equity: Vec<(DateTime<Utc>, Paise)>,
    pub events: Vec<Event>,
    pub decisions: Vec<Decision>,
    /// Entries the risk engine refused, by DenyReason code.
    pub refused: BTreeMap<String, u32>,
    /// Entries sizing skipped (quantity below one, ...).
    pub skipped: u32,
    /// Orders decided on the last candle, with no next candle to fill them.
    pub unfilled: u32,
    pub bars: u64,
    /// Time steps with at least one position open.
    pub exposed_steps: u64,
    pub total_charges: Paise,
    pub final_equity: Paise,
    /// Per instrument: first open and last close (buy and hold).
    pub spans: Vec<(InstrumentKey, f64, f64)>,
}

/// Reports progress (bars done, bars total) and asks whether to stop.
pub struct Control<'a> {
    pub progress: &'a mut (dyn FnMut(u64, u64) + Send),
    pub cancel: &'a AtomicBool,
}

/// How often (in bars) progress is reported and cancellation checked.
const PROGRESS_EVERY: u64 = 1 << 14;

struct Pending {
    side: Side,
    quantity: i64,
    purpose: Purpose,
    reference: Paise,
    stop: Option<Paise>,
    target: Option<Paise>,
}

#[derive(Clone)]
enum Purpose {
    Entry,
    Exit(String),
}

struct OpenLeg {
    entry_time: DateTime<Utc>,
    entry_bar: u64,
    charges: Paise,
}

struct Book {
    position: Option<Position>,
    leg: Option<OpenLeg>,
    pending: Option<Pending>,
    last_close: Paise,
    bars: u64,
}

/// The simulated broker: fills an approved market order at the given recorded price plus
/// slippage, rounded to the paisa only (no tick rounding). Taking `RiskApproved` keeps the
/// risk engine's gate in the backtest too.
fn fill_price(approved: &RiskApproved<OrderRequest>, raw: f64, slippage_bps: f64) -> Paise {
    let factor = 1.0 + approved.side.sign() as f64 * slippage_bps.max(0.0) / 10_000.0;
    Paise::from_rupees_f64(raw * factor)
}

/// When an order decided on `c` is filled at `c`'s open: daily bars at 09:15 IST of the bar's
/// session, intraday bars at their open time.
pub fn open_time(c: &Candle, interval: Interval) -> DateTime<Utc> {
    match interval {
        Interval::Day => at_ist(c.ts, NaiveTime::from_hms_opt(9, 15, 0).unwrap_or_default()),
        _ => c.ts,
    }
}

/// When `c` closed: 15:30 IST of its session for daily bars, open + interval otherwise.
pub fn close_time(c: &Candle, interval: Interval) -> DateTime<Utc> {
    match interval {
        Interval::Day => at_ist(c.ts, NaiveTime::from_hms_opt(15, 30, 0).unwrap_or_default()),
        _ => c.ts + interval.duration(),
    }
}

fn at_ist(ts: DateTime<Utc>, t: NaiveTime) -> DateTime<Utc> {
    let d = ist_date(ts);
    IST.from_local_datetime(&d.and_time(t))
        .single()
        .map(|x| x.with_timezone(&Utc))
        .unwrap_or(ts)
}

/// MIS positions are squared off from 15:15 IST, as `mft run`'s square-off job does.
fn square_off_time() -> NaiveTime {
    NaiveTime::from_hms_opt(15, 15, 0).unwrap_or_default()
}

struct Engine<'a> {
    settings: &'a Settings,
    interval: Interval,
    product: Product,
    risk: RiskEngine,
    clock: ManualClock,
    cash: i64,
    out: Outcome,
    next_tag: u64,
    day: Option<chrono::NaiveDate>,
    orders_today: u32,
    realized_today: Paise,
}

/// Replays `series` (already validated: non-empty, ascending). `settings` are the run's
/// effective settings (watchlist = the run's instruments, capital = initial cash).
pub async fn replay(
    settings: &Settings,
    interval: Interval,
    series: &[Series],
    decider: &Decider,
    ctl: Control<'_>,
) -> Result<Outcome, BacktestError> {
    let clock = ManualClock::new(series[0].candles[0].ts);
    let arc_settings = Arc::new(settings.clone());
    let product = if interval == Interval::Day {
        Product::Cnc
    } else {
        settings.trading.product
    };
    let mut eng = Engine {
        settings,
        interval,
        product,
        risk: RiskEngine::new(arc_settings, Arc::new(clock.clone())),
        clock,
        cash: settings.backtest.initial_cash.0,
        out: Outcome::default(),
        next_tag: 0,
        day: None,
        orders_today: 0,
        realized_today: Paise::ZERO,
    };
    let rule = RuleAnalyst::with_clock(settings.strategy.clone(), Arc::new(eng.clock.clone()));
    let mut streams: Vec<RuleStream> = Vec::new();
    if matches!(decider, Decider::Rules) {
        for _ in series {
            streams.push(rule.stream().map_err(BacktestError::Agent)?);
        }
    }
    let total: u64 = series.iter().map(|s| s.candles.len() as u64).sum();
    let mut books: Vec<Book> = series
        .iter()
        .map(|_| Book {
            position: None,
            leg: None,
            pending: None,
            last_close: Paise::ZERO,
            bars: 0,
        })
        .collect();
    let mut cursor = vec![0usize; series.len()];
    let mut done = 0u64;
    // The first step reports at once (and honours a cancel that came before the replay).
    let mut next_report = 0;
    eng.out
        .equity
        .reserve(series.iter().map(|s| s.candles.len()).max().unwrap_or(0));
    let lookback = settings.trading.lookback_bars.max(1);

    loop {
        // The next time step: the earliest candle not yet replayed.
        let mut t: Option<DateTime<Utc>> = None;
        for (i, s) in series.iter().enumerate() {
            if let Some(c) = s.candles.get(cursor[i])
                && t.is_none_or(|t| c.ts < t)
            {
                t = Some(c.ts);
            }
        }
        let Some(t) = t else { break };
        for i in 0..series.len() {
            let s = &series[i];
            let idx = cursor[i];
            let Some(c) = s.candles.get(idx) else {
                continue;
            };
            if c.ts != t {
                continue;
            }
            cursor[i] += 1;
            let book = &mut books[i];
            book.bars += 1;
            eng.on_open(&s.key, s.tick, book, c)?;
            book.last_close = Paise::from_rupees_f64(c.close);
            let signal = match decider {
                Decider::Rules => streams[i].next(&s.key, c),
                Decider::Analyst(a) => {
                    let from = (idx + 1).saturating_sub(lookback);
                    eng.clock.set(c.ts + interval.duration());
                    match a.analyse(&s.key, interval, &s.candles[from..=idx]).await {
                        Ok(Signal::None { .. }) => None,
                        Ok(sig) => Some(sig),
                        Err(e) => {
                            return Err(BacktestError::Analyst {
                                key: s.key.clone(),
                                bar: c.ts,
                                message: e.to_string(),
                            });
                        }
                    }
                }
            };
            if let Some(sig) = signal {
                eng.on_signal(&s.key, s.tick, book, c, sig)?;
            }
        }
        done = cursor.iter().map(|&c| c as u64).sum();
        eng.mark(t, &books);
        if done >= next_report {
            next_report = done + PROGRESS_EVERY;
            (ctl.progress)(done, total);
            if ctl.cancel.load(Ordering::Relaxed) {
                return Err(BacktestError::Cancelled);
            }
        }
    }
    (ctl.progress)(done, total);
    eng.out.bars = done;
    for (i, s) in series.iter().enumerate() {
        let book = &books[i];
        if book.pending.is_some() {
            eng.out.unfilled += 1;
        }
        if let (Some(p), Some(leg)) = (&book.position, &book.leg)
            && p.quantity != 0
        {
            let side = if p.quantity > 0 {
                Side::Buy
            } else {
                Side::Sell
            };
            eng.out.open.push(OpenTrade {
                entry_time: leg.entry_time,
                key: s.key.clone(),
                side,
                quantity: p.quantity.abs(),
                entry_price: p.avg_price,
                last_close: book.last_close,
                unrealized: p.unrealized(book.last_close) - leg.charges,
                charges: leg.charges,
                bars_held: book.bars - leg.entry_bar,
            });
        }
        if let (Some(first), Some(last)) = (s.candles.first(), s.candles.last()) {
            eng.out.spans.push((s.key.clone(), first.open, last.close));
        }
    }
    eng.out.final_equity = eng.equity(&books);
    Ok(eng.out)
}

impl Engine<'_> {
    fn equity(&self, books: &[Book]) -> Paise {
        let held: i64 = books
            .iter()
            .filter_map(|b| b.position.as_ref().map(|p| p.quantity * b.last_close.0))
            .sum();
        Paise(self.cash + held)
    }

    fn mark(&mut self, t: DateTime<Utc>, books: &[Book]) {
        let exposed = books
            .iter()
            .any(|b| b.position.as_ref().is_some_and(|p| p.quantity != 0));
        if exposed {
            self.out.exposed_steps += 1;
        }
        let e = self.equity(books);
        self.out.equity.push((t, e));
    }

    /// At the candle's open: square off a stale MIS position, fill the pending order, then
    /// check the brackets against the candle's range.
    fn on_open(
        &mut self,
        key: &InstrumentKey,
        _tick: Option<f64>,
        book: &mut Book,
        c: &Candle,
    ) -> Result<(), BacktestError> {
        let at = open_time(c, self.interval);
        if self.product == Product::Mis
            && let Some(p) = &book.position
            && p.quantity != 0
        {
            let local = c.ts.with_timezone(&IST);
            if local.date_naive() != ist_date(p.opened_at) || local.time() >= square_off_time() {
                let order = Pending {
                    side: if p.quantity > 0 {
                        Side::Sell
                    } else {
                        Side::Buy
                    },
                    quantity: p.quantity.abs(),
                    purpose: Purpose::Exit("square-off".into()),
                    reference: Paise::from_rupees_f64(c.open),
                    stop: None,
                    target: None,
                };
                book.pending = None;
                self.execute(key, book, order, c.open, at)?;
            }
        }
        if let Some(order) = book.pending.take() {
            self.execute(key, book, order, c.open, at)?;
        }
        if self.settings.strategy.exit == ExitRule::Bracket
            && let Some(p) = &book.position
            && p.quantity != 0
            && let Some((price, reason)) = bracket_hit(p, c)
        {
            let order = Pending {
                side: if p.quantity > 0 {
                    Side::Sell
                } else {
                    Side::Buy
                },
                quantity: p.quantity.abs(),
                purpose: Purpose::Exit(reason.to_string()),
                reference: price,
                stop: None,
                target: None,
            };
            // The bracket price is the fill itself (a resting stop/target), so no slippage.
            self.execute_at(key, book, order, price, at, 0.0)?;
        }
        Ok(())
    }

    fn on_signal(
        &mut self,
        key: &InstrumentKey,
        tick: Option<f64>,
        book: &mut Book,
        c: &Candle,
        signal: Signal,
    ) -> Result<(), BacktestError> {
        self.out.decisions.push(Decision {
            key: key.clone(),
            candle_ts: c.ts,
            signal: signal.clone(),
        });
        let held = book.position.as_ref().map_or(0, |p| p.quantity);
        let order = match signal {
            Signal::Entry(v) if held == 0 => {
                if book.pending.is_some() {
                    return Ok(());
                }
                let fixed = self.settings.backtest.fixed_quantity;
                let (quantity, stop, target) = if fixed > 0 {
                    let stop = Paise::from_rupees_f64(v.stop);
                    let target = Paise::from_rupees_f64(v.target);
                    (i64::from(fixed), stop, target)
                } else {
                    match size(&v, &self.settings.trading, &self.settings.risk, tick, 0.0) {
                        Ok(s) => (s.quantity, s.stop, s.target),
                        Err(_) => {
                            self.out.skipped += 1;
                            return Ok(());
                        }
                    }
                };
                let brackets = self.settings.strategy.exit == ExitRule::Bracket;
                Pending {
                    side: v.side,
                    quantity,
                    purpose: Purpose::Entry,
                    reference: Paise::from_rupees_f64(v.entry),
                    stop: brackets.then_some(stop),
                    target: brackets.then_some(target),
                }
            }
            Signal::Entry(v) if (held > 0) != (v.side == Side::Buy) => Pending {
                side: v.side,
                quantity: held.abs(),
                purpose: Purpose::Exit("opposite cross".into()),
                reference: Paise::from_rupees_f64(c.close),
                stop: None,
                target: None,
            },
            Signal::Exit { .. } if held != 0 => Pending {
                side: if held > 0 { Side::Sell } else { Side::Buy },
                quantity: held.abs(),
                purpose: Purpose::Exit("opposite cross".into()),
                reference: Paise::from_rupees_f64(c.close),
                stop: None,
                target: None,
            },
            _ => return Ok(()),
        };
        match self.settings.backtest.fill {
            BacktestFill::NextOpen => {
                book.pending = Some(order);
                Ok(())
            }
            BacktestFill::Close => {
                let at = close_time(c, self.interval);
                self.execute(key, book, order, c.close, at)
            }
        }
    }

    fn execute(
        &mut self,
        key: &InstrumentKey,
        book: &mut Book,
        order: Pending,
        raw: f64,
        at: DateTime<Utc>,
    ) -> Result<(), BacktestError> {
        let bps = self.settings.backtest.slippage_bps;
        let approx = Paise::from_rupees_f64(raw);
        self.execute_inner(key, book, order, approx, Some((raw, bps)), at)
    }

    fn execute_at(
        &mut self,
        key: &InstrumentKey,
        book: &mut Book,
        order: Pending,
        price: Paise,
        at: DateTime<Utc>,
        _bps: f64,
    ) -> Result<(), BacktestError> {
        self.execute_inner(key, book, order, price, None, at)
    }

    fn execute_inner(
        &mut self,
        key: &InstrumentKey,
        book: &mut Book,
        order: Pending,
        last: Paise,
        raw: Option<(f64, f64)>,
        at: DateTime<Utc>,
    ) -> Result<(), BacktestError> {
        let day = ist_date(at);
        if self.day != Some(day) {
            self.day = Some(day);
            self.orders_today = 0;
            self.realized_today = Paise::ZERO;
        }
        self.next_tag += 1;
        let tag = format!("bt{}", self.next_tag);
        let req = OrderRequest {
            key: key.clone(),
            side: order.side,
            quantity: order.quantity,
            order_type: OrderType::Market,
            product: self.product,
            tag,
            purpose: match &order.purpose {
                Purpose::Entry => OrderPurpose::Entry {
                    proposal_id: self.next_tag as i64,
                },
                Purpose::Exit(r) => OrderPurpose::Exit { reason: r.clone() },
            },
            reference_price: order.reference,
        };
        self.clock.set(at);
        let ctx = RiskContext {
            halted: false,
            last_price: Some(last),
            positions: book
                .position
                .iter()
                .filter(|p| p.quantity != 0)
                .map(|p| (p.clone(), Some(book.last_close)))
                .collect(),
            orders_today: self.orders_today,
            realized_today: self.realized_today,
            // Replayed prices are the candles themselves: no freshness rule, no pause.
            ..RiskContext::default()
        };
        let approved = match self.risk.check(req, &ctx) {
            Ok(a) => {
                // Like the live order book: only orders that were placed count for the day.
                self.orders_today += 1;
                a
            }
            Err(refused) => {
                *self
                    .out
                    .refused
                    .entry(refused.reason.code().to_string())
                    .or_default() += 1;
                self.out.events.push(Event {
                    ts: at,
                    kind: "backtest_refused",
                    key: key.clone(),
                    detail: format!(
                        "{} {} x{}: {}",
                        refused.item.side,
                        key,
                        refused.item.quantity,
                        refused.reason.explanation()
                    ),
                });
                return Ok(());
            }
        };
        let price = match raw {
            Some((raw, bps)) => fill_price(&approved, raw, bps),
            None => last,
        };
        let req = approved.into_inner();
        let ch = charges(
            self.settings.backtest.costs,
            req.product,
            req.side,
            req.quantity,
            price,
        )
        .total();
        self.out.total_charges += ch;
        let applied = apply_fill(
            book.position.as_ref(),
            key,
            req.product,
            req.side,
            req.quantity,
            price,
            at,
        )?;
        self.cash -= req.side.sign() * req.quantity * price.0 + ch.0;
        self.realized_today += applied.realized - ch;
        let reason = match &order.purpose {
            Purpose::Entry => "entry".to_string(),
            Purpose::Exit(r) => r.clone(),
        };
        self.out.events.push(Event {
            ts: at,
            kind: "backtest_fill",
            key: key.clone(),
            detail: format!(
                "{} {} x{} at {} ({}; charges {})",
                req.side,
                key,
                req.quantity,
                price.to_decimal_string(),
                reason,
                ch.to_decimal_string()
            ),
        });
        let prev_qty = book.position.as_ref().map_or(0, |p| p.quantity);
        let mut position = applied.position;
        if applied.closed || position.quantity == 0 {
            if let Some(leg) = book.leg.take() {
                let entry_price = book.position.as_ref().map_or(Paise::ZERO, |p| p.avg_price);
                let closed_qty = prev_qty.abs().min(req.quantity);
                self.out.trades.push(Trade {
                    entry_time: leg.entry_time,
                    exit_time: at,
                    key: key.clone(),
                    side: if prev_qty > 0 { Side::Buy } else { Side::Sell },
                    quantity: closed_qty,
                    entry_price,
                    exit_price: price,
                    pnl: applied.realized - leg.charges - ch,
                    charges: leg.charges + ch,
                    bars_held: book.bars - leg.entry_bar,
                    exit_reason: reason,
                });
            }
            if position.quantity != 0 {
                // A flip: the rest opens a new leg at this fill.
                book.leg = Some(OpenLeg {
                    entry_time: at,
                    entry_bar: book.bars,
                    charges: Paise::ZERO,
                });
            }
        } else if prev_qty == 0 {
            book.leg = Some(OpenLeg {
                entry_time: at,
                entry_bar: book.bars,
                charges: ch,
            });
            position.stop = order.stop;
            position.target = order.target;
        } else if let Some(leg) = &mut book.leg {
            leg.charges += ch;
        }
        book.position = (position.quantity != 0).then_some(position);
        Ok(())
    }
}

/// Bars of warm-up the strategy needs before its first decision.
pub fn warm_up(settings: &Settings) -> usize {
    RuleAnalyst::new(settings.strategy.clone()).min_candles()
}

/// `Duration` helper for reports.
pub fn span(a: DateTime<Utc>, b: DateTime<Utc>) -> Duration {
    b - a
}
