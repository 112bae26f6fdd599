//! Limits never breached (hardening issue, item 9): random sequences of proposals, approvals
//! (also of proposals already decided), rejections, price moves, paper bracket fills, clock
//! moves, day changes, square-offs, restarts (with start-up recovery, also after a crash between
//! the decision and the order), /pause, /kill and /resume run against the real handler, risk
//! engine, OMS and paper broker. After EVERY step the database is checked against the limits
//! in the settings:
//!
//! - open positions <= `max_open_positions`;
//! - each position's value at entry <= `max_position_value`, both at the last price the risk
//!   engine saw and at the entry's fill price (that price moved by `[paper] slippage_bps`,
//!   which the engine values entries at); the summary counts the entries that came within
//!   0.1% of the limit, which the at-limit sizes aim at;
//! - every entry order was recorded with fewer than `max_orders_per_day` orders before it on
//!   its IST day (exit orders are never blocked, by design: closing is always allowed, so the
//!   day's total may pass the limit only through exits);
//! - no entry is recorded while the day's loss (`risk::day`'s definition: marked to market from
//!   the previous close, recomputed here from the raw fills, positions and candles, and equal to
//!   what /status shows, to the paisa) is at or beyond
//!   `max_daily_loss`, and a fill that takes the loss there halts trading;
//! - once halted (/kill or the daily-loss halt), nothing is entered and the halt stays until
//!   `/resume`; /kill leaves the paper book flat;
//! - positions.quantity = the net of the fills, per instrument and product;
//! - no proposal is placed twice, no order filled twice, a decided proposal is never decided
//!   again.
//!
//! SQLite runs `PROPTEST_CASES` sequences (default 200; `.ci/run` uses that) of 5-40 steps, each
//! on a fresh in-memory database; PostgreSQL (when TEST_DATABASE_URL is set) runs
//! `LIMITS_PG_CASES` (default 50). Each run prints a summary line (cases, steps, entries,
//! vetoes by reason code). The full run for the issue:
//!
//! ```sh
//! PROPTEST_CASES=100000 cargo test --release --test limits -- --nocapture
//! ```

mod support;

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Timelike, Utc};
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence, TestCaseError, TestRunner};
use sqlx::Connection;

use mft::app::handler::{Handler, NoScanner};
use mft::clock::{Clock, IST, ManualClock};
use mft::config::Settings;
use mft::domain::{
    Actor, Candle, Command, DEFAULT_TICK, Fill, InstrumentKey, Interval, NewProposal, Order,
    OrderPurpose, OrderState, Paise, Position, Product, ProposalStatus, Request, Side,
};
use mft::oms::{PaperBroker, paper_fill_price};
use mft::ports::{Decision, Outcome, Reply};
use mft::store::{Store, SystemState};
use support::db::{TestDb, postgres_store};
use support::notifier::RecordingNotifier;

/// The instruments (symbol, first price in paise); the last one is not in the watchlist.
const INSTRUMENTS: [(&str, i64); 5] = [
    ("LA", 10_000),
    ("LB", 48_000),
    ("LC", 150_000),
    ("LD", 290_000),
    ("LX", 75_000),
];
/// How many of INSTRUMENTS may be traded.
const WATCHED: usize = 4;
const TICK: i64 = 5;
const INTERVAL: Interval = Interval::Minute15;

fn key(i: usize) -> InstrumentKey {
    InstrumentKey::new("NSE", INSTRUMENTS[i % INSTRUMENTS.len()].0)
}

/// Tight limits, so that sequences of a few dozen steps run into every one of them.
fn settings(url: &str) -> Settings {
    let mut s = Settings {
        database_url: url.to_string(),
        ..Settings::default()
    };
    s.trading.watchlist = (0..WATCHED).map(key).collect();
    s.trading.capital = Paise::from_rupees(100_000);
    s.trading.interval = INTERVAL;
    s.risk.trading_window = "09:15-15:30".parse().expect("window");
    s.risk.trading_days = "Mon-Fri".parse().expect("days");
    s.risk.max_open_positions = 2;
    s.risk.max_orders_per_day = 3;
    s.risk.max_position_value = Paise::from_rupees(40_000);
    s.risk.max_daily_loss = Paise::from_rupees(800);
    s.risk.max_price_deviation_pct = 1.0;
    s
}

/// Monday 2026-11-23, 09:30 IST.
fn start() -> DateTime<Utc> {
    IST.with_ymd_and_hms(2026, 11, 23, 9, 30, 0)
        .single()
        .expect("valid time")
        .with_timezone(&Utc)
}

fn day_start(date: NaiveDate) -> DateTime<Utc> {
    date.and_hms_opt(0, 0, 0)
        .and_then(|d| d.and_local_timezone(IST).earliest())
        .map(|d| d.with_timezone(&Utc))
        .expect("IST midnight")
}

fn since_ever() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0)
        .single()
        .expect("valid time")
}

/// How a proposal's quantity is chosen.
#[derive(Debug, Clone)]
enum Size {
    /// The most `max_position_value` allows at the last price (`at_fill` false) or at the
    /// paper fill price (true: what the risk engine values an entry at), plus `over` (0 or 1).
    AtLimit { over: i64, at_fill: bool },
    /// This many thousandths of Rs 60,000 worth.
    PerMille(i64),
}

#[derive(Debug, Clone)]
enum Op {
    Propose {
        inst: usize,
        sell: bool,
        cnc: bool,
        size: Size,
        /// Entry away from the last price, basis points.
        entry_bp: i64,
        stop_bp: i64,
        target_bp: i64,
        ttl_minutes: i64,
        /// Card posted (message id stored); an unposted one is re-posted on restart.
        posted: bool,
    },
    /// Approve the `pick`-th latest proposal made so far (any status), or a missing one.
    Approve {
        pick: usize,
    },
    Reject {
        pick: usize,
    },
    /// A new candle in the current 15-minute slot moving the price by `move_bp`.
    Price {
        inst: usize,
        move_bp: i64,
        wick_bp: i64,
    },
    /// Paper bracket fills (stop / target against the stored candles).
    CheckExits,
    Advance {
        minutes: i64,
    },
    /// To `days` days later at 09:15 IST + `minute`.
    NextDay {
        days: i64,
        minute: i64,
    },
    SquareOff,
    ExpirySweep,
    /// Drop the handler, OMS and broker; build them again on the same database and run the
    /// start-up recovery.
    Restart,
    /// A crash between the approval's compare-and-set and the order: the proposal is left
    /// Approved, then the process restarts.
    CrashAfterApprove {
        pick: usize,
    },
    Kill,
    Resume,
    Pause,
}

fn op() -> impl Strategy<Value = Op> {
    let size = prop_oneof![
        2 => (prop_oneof![3 => Just(0i64), 1 => Just(1i64)], any::<bool>())
            .prop_map(|(over, at_fill)| Size::AtLimit { over, at_fill }),
        5 => (1i64..700).prop_map(Size::PerMille),
    ];
    let propose = (
        prop_oneof![12 => 0..WATCHED, 1 => Just(WATCHED)],
        any::<bool>(),
        any::<bool>(),
        size,
        prop_oneof![5 => -60i64..60, 1 => -150i64..150],
        (30i64..300, 30i64..600),
        (1i64..240, prop::bool::weighted(0.85)),
    )
        .prop_map(
            |(inst, sell, cnc, size, entry_bp, (stop_bp, target_bp), (ttl_minutes, posted))| {
                Op::Propose {
                    inst,
                    sell,
                    cnc,
                    size,
                    entry_bp,
                    stop_bp,
                    target_bp,
                    ttl_minutes,
                    posted,
                }
            },
        );
    let price = (
        0..INSTRUMENTS.len(),
        prop_oneof![8 => -500i64..500, 1 => -3000i64..3000],
        0i64..200,
    )
        .prop_map(|(inst, move_bp, wick_bp)| Op::Price {
            inst,
            move_bp,
            wick_bp,
        });
    prop_oneof![
        16 => propose,
        12 => pick().prop_map(|pick| Op::Approve { pick }),
        2 => pick().prop_map(|pick| Op::Reject { pick }),
        14 => price,
        4 => Just(Op::CheckExits),
        4 => (1i64..120).prop_map(|minutes| Op::Advance { minutes }),
        2 => (1i64..4, 0i64..420).prop_map(|(days, minute)| Op::NextDay { days, minute }),
        2 => Just(Op::SquareOff),
        2 => Just(Op::ExpirySweep),
        2 => Just(Op::Restart),
        2 => pick().prop_map(|pick| Op::CrashAfterApprove { pick }),
        1 => Just(Op::Kill),
        5 => Just(Op::Resume),
        1 => Just(Op::Pause),
    ]
}

/// Which proposal a decision is about (see `World::pick`).
fn pick() -> impl Strategy<Value = usize> {
    prop_oneof![8 => 0usize..4, 2 => any::<usize>()]
}

fn sequence() -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(op(), 5..=40)
}

/// Totals over a run, printed at the end.
#[derive(Debug, Default)]
struct Stats {
    cases: u64,
    steps: u64,
    proposals: u64,
    entries: u64,
    exits: u64,
    approvals_of_decided: u64,
    vetoes: BTreeMap<&'static str, u64>,
    failed: u64,
    halts_daily_loss: u64,
    kills: u64,
    restarts: u64,
    /// Entries whose position, valued at their fill price, came within 0.1% of
    /// max_position_value (the edge the at-limit sizes aim at); and the closest one's headroom.
    near_limit: u64,
    min_headroom: Option<i64>,
}

impl Stats {
    fn line(&self, backend: &str, secs: f64) -> String {
        let vetoes: Vec<String> = self
            .vetoes
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        format!(
            "limits ({backend}): {} cases, {} steps, {} proposals, {} entries executed, {} exit fills, \
             {} approvals of decided proposals, {} failed, {} daily-loss halts, {} kills, \
             {} restarts, 0 breaches, {secs:.1}s; vetoes: {}; {} entries within 0.1% of \
             max_position_value at their fill price, the closest {} under it",
            self.cases,
            self.steps,
            self.proposals,
            self.entries,
            self.exits,
            self.approvals_of_decided,
            self.failed,
            self.halts_daily_loss,
            self.kills,
            self.restarts,
            vetoes.join(", "),
            self.near_limit,
            self.min_headroom
                .map_or("-".to_string(), |h| Paise(h).to_string())
        )
    }
}

/// Where the sequences run.
enum Target {
    /// A fresh in-memory SQLite database per sequence.
    SqliteMemory,
    /// One PostgreSQL database, emptied between sequences through its own connection.
    Postgres { db: TestDb, raw: sqlx::PgConnection },
}

const RESET: [&str; 12] = [
    // The audits reference orders: emptied first.
    "DELETE FROM risk_decisions",
    "DELETE FROM reconciliations",
    "DELETE FROM live_state",
    "DELETE FROM fills",
    "DELETE FROM orders",
    "DELETE FROM positions",
    "DELETE FROM trade_log",
    "DELETE FROM action_log",
    "DELETE FROM analysis_traces",
    "DELETE FROM proposals",
    "DELETE FROM candles",
    "DELETE FROM series",
];

impl Target {
    fn name(&self) -> &'static str {
        match self {
            Target::SqliteMemory => "sqlite",
            Target::Postgres { .. } => "postgres",
        }
    }

    /// An empty, migrated store for the next sequence, and its URL.
    async fn fresh(&mut self) -> Result<(Store, String), String> {
        match self {
            Target::SqliteMemory => {
                let url = "sqlite::memory:".to_string();
                let store = Store::connect(&url).await.map_err(|e| e.to_string())?;
                Ok((store, url))
            }
            Target::Postgres { db, raw } => {
                for sql in RESET {
                    sqlx::query(sql)
                        .execute(&mut *raw)
                        .await
                        .map_err(|e| format!("{sql}: {e}"))?;
                }
                sqlx::query(
                    "UPDATE system_state SET halted = $1, halted_reason = NULL, \
                     halted_at = NULL, paused = $1 WHERE id = 1",
                )
                .bind(false)
                .execute(&mut *raw)
                .await
                .map_err(|e| e.to_string())?;
                Ok((db.store.clone(), db.url.clone()))
            }
        }
    }
}

/// The process under test: rebuilt by a restart, on the same store.
struct World {
    store: Store,
    settings: Arc<Settings>,
    clock: ManualClock,
    handler: Handler,
    /// Proposals made so far, in order.
    proposals: Vec<i64>,
}

impl World {
    fn new(store: &Store, settings: &Arc<Settings>, clock: &ManualClock) -> World {
        World {
            store: store.clone(),
            settings: settings.clone(),
            clock: clock.clone(),
            handler: build_handler(store, settings, clock),
            proposals: Vec::new(),
        }
    }

    /// The proposal a decision is about: below 4, the `pick`-th latest of those pending in
    /// `snap`; otherwise (or when none is pending) any proposal made so far, or a missing one.
    fn pick(&self, pick: usize, snap: &Snap) -> i64 {
        let pending: Vec<i64> = self
            .proposals
            .iter()
            .copied()
            .filter(|id| snap.proposals.get(id) == Some(&ProposalStatus::Pending))
            .collect();
        if pick < 4 && !pending.is_empty() {
            return pending[pending.len() - 1 - pick % pending.len()];
        }
        let n = self.proposals.len();
        match pick % (n + 1) {
            i if i < n => self.proposals[n - 1 - i],
            _ => 9_999_999,
        }
    }

    async fn last(&self, k: &InstrumentKey) -> Result<Paise, String> {
        self.store
            .last_price(k, INTERVAL)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("no price for {k}"))
    }

    async fn restart(&mut self) -> Result<(), String> {
        self.handler = build_handler(&self.store, &self.settings, &self.clock);
        self.handler
            .recover()
            .await
            .map_err(|e| format!("recover: {e}"))?;
        self.handler
            .repost_unposted()
            .await
            .map_err(|e| format!("repost: {e}"))?;
        Ok(())
    }

    async fn command(&self, command: Command) -> Result<Reply, String> {
        self.handler
            .handle(Request {
                command,
                actor: Actor::Telegram { user_id: 42 },
            })
            .await
            .map_err(|e| format!("handler error: {e}"))
    }

    /// Runs one step; returns the reply of the command it sent, if any.
    async fn apply(
        &mut self,
        op: &Op,
        target: Option<i64>,
        stats: &mut Stats,
    ) -> Result<Option<Reply>, String> {
        let target = target.unwrap_or(9_999_999);
        let now = self.clock.now();
        Ok(match op {
            Op::Propose {
                inst,
                sell,
                cnc,
                size,
                entry_bp,
                stop_bp,
                target_bp,
                ttl_minutes,
                posted,
            } => {
                let k = key(*inst);
                let last = self.last(&k).await?;
                let quantity = match size {
                    Size::AtLimit { over, at_fill } => {
                        let side = if *sell { Side::Sell } else { Side::Buy };
                        let price = if *at_fill {
                            last.max(paper_fill_price(
                                last,
                                side,
                                self.settings.paper.slippage_bps,
                                DEFAULT_TICK,
                            ))
                        } else {
                            last
                        };
                        self.settings.risk.max_position_value.0 / price.0.max(1) + over
                    }
                    Size::PerMille(m) => m * 6_000 / last.0.max(1),
                }
                .max(1);
                let entry = on_tick(last.0 * (10_000 + entry_bp) / 10_000);
                let (stop, target) = if *sell {
                    (
                        on_tick(entry * (10_000 + stop_bp) / 10_000),
                        on_tick(entry * (10_000 - target_bp) / 10_000),
                    )
                } else {
                    (
                        on_tick(entry * (10_000 - stop_bp) / 10_000),
                        on_tick(entry * (10_000 + target_bp) / 10_000),
                    )
                };
                let inserted = self
                    .store
                    .insert_proposal(&NewProposal {
                        key: k,
                        side: if *sell { Side::Sell } else { Side::Buy },
                        quantity,
                        entry: Paise(entry),
                        stop: Paise(stop),
                        target: Paise(target),
                        product: if *cnc { Product::Cnc } else { Product::Mis },
                        confidence: 0.7,
                        rationale: "limits property test".into(),
                        created_at: now,
                        expires_at: now + Duration::minutes(*ttl_minutes),
                    })
                    .await
                    .map_err(|e| e.to_string())?;
                if let Some(p) = inserted {
                    stats.proposals += 1;
                    self.proposals.push(p.id);
                    if *posted {
                        self.store
                            .set_proposal_message(p.id, 500 + p.id)
                            .await
                            .map_err(|e| e.to_string())?;
                    }
                }
                None
            }
            Op::Approve { .. } => Some(
                self.command(Command::Approve {
                    proposal_id: target,
                })
                .await?,
            ),
            Op::Reject { .. } => Some(
                self.command(Command::Reject {
                    proposal_id: target,
                })
                .await?,
            ),
            Op::Price {
                inst,
                move_bp,
                wick_bp,
            } => {
                let k = key(*inst);
                let open = self.last(&k).await?.0;
                let close = on_tick(open * (10_000 + move_bp) / 10_000).max(TICK);
                let high = on_tick(open.max(close) * (10_000 + wick_bp) / 10_000);
                let low = on_tick(open.min(close) * (10_000 - wick_bp) / 10_000).max(TICK);
                let local = now.with_timezone(&IST);
                let slot = now
                    - Duration::minutes(i64::from(local.minute() % 15))
                    - Duration::seconds(i64::from(local.second()));
                self.store
                    .upsert_candles(&k, INTERVAL, &[candle(slot, open, high, low, close)])
                    .await
                    .map_err(|e| e.to_string())?;
                None
            }
            Op::CheckExits => Some(self.command(Command::CheckExits).await?),
            Op::Advance { minutes } => {
                self.clock.advance(Duration::minutes(*minutes));
                None
            }
            Op::NextDay { days, minute } => {
                let date = self.clock.today_ist() + Duration::days(*days);
                let at = day_start(date) + Duration::minutes(9 * 60 + 15 + minute);
                self.clock.set(at);
                None
            }
            Op::SquareOff => Some(self.command(Command::SquareOff).await?),
            Op::ExpirySweep => Some(self.command(Command::ExpirySweep).await?),
            Op::Restart => {
                stats.restarts += 1;
                self.restart().await?;
                None
            }
            Op::CrashAfterApprove { .. } => {
                let id = target;
                self.store
                    .transition_proposal(
                        id,
                        ProposalStatus::Pending,
                        ProposalStatus::Approved,
                        now,
                        Some(42),
                        None,
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                stats.restarts += 1;
                self.restart().await?;
                None
            }
            Op::Kill => {
                stats.kills += 1;
                Some(self.command(Command::Kill).await?)
            }
            Op::Resume => Some(self.command(Command::Resume).await?),
            Op::Pause => Some(self.command(Command::Pause).await?),
        })
    }
}

fn build_handler(store: &Store, settings: &Arc<Settings>, clock: &ManualClock) -> Handler {
    let clock: Arc<dyn Clock> = Arc::new(clock.clone());
    let broker = Arc::new(PaperBroker::new(
        store.clone(),
        settings.clone(),
        clock.clone(),
    ));
    Handler::new(
        store.clone(),
        settings.clone(),
        clock,
        broker,
        Arc::new(RecordingNotifier::default()),
        Arc::new(NoScanner),
    )
}

fn on_tick(paise: i64) -> i64 {
    (paise + TICK / 2) / TICK * TICK
}

fn candle(ts: DateTime<Utc>, open: i64, high: i64, low: i64, close: i64) -> Candle {
    let r = |p: i64| p as f64 / 100.0;
    Candle {
        ts,
        open: r(open),
        high: r(high),
        low: r(low),
        close: r(close),
        volume: 1_000,
        oi: None,
    }
}

/// The database after a step.
struct Snap {
    state: SystemState,
    orders: Vec<Order>,
    fills: Vec<Fill>,
    open: Vec<Position>,
    proposals: HashMap<i64, ProposalStatus>,
    /// Today's P&L per `risk::day`, marked to market here from the raw rows.
    day_pnl: Paise,
    /// Last price of every instrument.
    lasts: HashMap<InstrumentKey, Paise>,
}

impl Snap {
    fn day_loss(&self) -> Paise {
        Paise((-self.day_pnl.0).max(0))
    }

    fn order(&self, id: i64) -> Option<&Order> {
        self.orders.iter().find(|o| o.id == id)
    }
}

fn proposal_of(o: &Order) -> Option<i64> {
    match o.request.purpose {
        OrderPurpose::Entry { proposal_id } => Some(proposal_id),
        OrderPurpose::Exit { .. } => None,
    }
}

fn is_filled(o: &Order) -> bool {
    matches!(o.state, OrderState::Filled { .. })
}

async fn snapshot(w: &World) -> Result<Snap, String> {
    let e = |e: mft::store::StoreError| e.to_string();
    let store = &w.store;
    let state = store.system_state().await.map_err(e)?;
    let orders = store.orders_since(since_ever()).await.map_err(e)?;
    let fills = store.fills_since(since_ever()).await.map_err(e)?;
    let open = store.open_positions().await.map_err(e)?;
    let proposals = store
        .recent_proposals(10_000)
        .await
        .map_err(e)?
        .into_iter()
        .map(|p| (p.id, p.status))
        .collect();

    // Today's P&L as risk::day defines it, marked to market from the previous session's
    // close, per instrument: q_now x last - q_open x previous close - net cash of today's fills
    // (q_open = q_now - net quantity filled today).
    let start = day_start(w.clock.today_ist());
    let today = store.fills_by_instrument_since(start).await.map_err(e)?;
    let mut held: BTreeMap<InstrumentKey, i64> = BTreeMap::new();
    for p in &open {
        *held.entry(p.key.clone()).or_default() += p.quantity;
    }
    let mut keys: Vec<&InstrumentKey> = held.keys().chain(today.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut day_pnl = Paise::ZERO;
    for k in keys {
        let q_now = held.get(k).copied().unwrap_or_default();
        let f = today.get(k).cloned().unwrap_or_default();
        let q_open = q_now - f.net_quantity;
        let last = w.last(k).await?;
        let at_open = if q_open == 0 {
            Paise::ZERO
        } else {
            let close = store
                .closes_before(std::slice::from_ref(k), INTERVAL, start)
                .await
                .map_err(e)?
                .pop()
                .flatten()
                .ok_or_else(|| format!("{k} was held at the open but has no earlier close"))?;
            close * q_open
        };
        day_pnl += last * q_now - at_open - f.net_cash;
    }
    let status = match w.command(Command::Status).await? {
        Reply::Status(s) => s,
        other => return Err(format!("/status answered {other:?}")),
    };
    if status.day_pnl != day_pnl {
        return Err(format!(
            "/status shows today's P&L {} (what the risk engine checks) but marked to market \
             from the previous close it is {day_pnl}",
            status.day_pnl
        ));
    }
    let keys: Vec<InstrumentKey> = (0..INSTRUMENTS.len()).map(key).collect();
    let prices = store.last_prices(&keys, INTERVAL).await.map_err(e)?;
    let mut lasts = HashMap::new();
    for (k, p) in keys.into_iter().zip(prices) {
        lasts.insert(k.clone(), p.ok_or_else(|| format!("no price of {k}"))?);
    }
    Ok(Snap {
        lasts,
        state,
        orders,
        fills,
        open,
        proposals,
        day_pnl,
    })
}

/// The invariants that hold in every state.
fn check_state(s: &Snap, settings: &Settings) -> Result<(), String> {
    let risk = &settings.risk;
    if s.open.len() > risk.max_open_positions as usize {
        return Err(format!(
            "{} open positions, max_open_positions = {}: {:?}",
            s.open.len(),
            risk.max_open_positions,
            s.open
        ));
    }
    let product: HashMap<i64, Product> =
        s.orders.iter().map(|o| (o.id, o.request.product)).collect();
    // Fills: one per order, only for filled orders.
    let mut filled_orders = HashSet::new();
    for f in &s.fills {
        if !filled_orders.insert(f.order_id) {
            return Err(format!("order {} has more than one fill", f.order_id));
        }
        match s.order(f.order_id) {
            Some(o) if is_filled(o) => {}
            other => return Err(format!("fill {f:?} of an order not filled: {other:?}")),
        }
    }
    // Proposals placed at most once.
    let mut placed = HashSet::new();
    for o in &s.orders {
        if let Some(p) = proposal_of(o)
            && !placed.insert(p)
        {
            return Err(format!("proposal {p} has more than one entry order"));
        }
    }
    // Positions = net fills, per instrument and product.
    let mut net: BTreeMap<(String, &'static str), i64> = BTreeMap::new();
    for f in &s.fills {
        let prod = *product
            .get(&f.order_id)
            .ok_or_else(|| format!("fill {f:?} of an unknown order"))?;
        *net.entry((f.key.to_string(), prod.as_str())).or_default() += f.side.sign() * f.quantity;
    }
    net.retain(|_, q| *q != 0);
    let held: BTreeMap<(String, &'static str), i64> = s
        .open
        .iter()
        .map(|p| ((p.key.to_string(), p.product.as_str()), p.quantity))
        .collect();
    if net != held {
        return Err(format!("positions {held:?} != net fills {net:?}"));
    }
    // Orders per IST day: each entry had fewer than the limit before it that day.
    let mut per_day: HashMap<NaiveDate, u32> = HashMap::new();
    for o in &s.orders {
        let day = o.created_at.with_timezone(&IST).date_naive();
        let before = per_day.entry(day).or_default();
        if o.request.is_entry() && *before >= risk.max_orders_per_day {
            return Err(format!(
                "entry order {} ({}) recorded with {} orders already on {day}, max_orders_per_day = {}",
                o.id, o.request.tag, before, risk.max_orders_per_day
            ));
        }
        *before += 1;
    }
    Ok(())
}

/// The invariants of one step: what may change from `prev` to `next` under `op`.
fn check_step(
    prev: &Snap,
    next: &Snap,
    op: &Op,
    target: Option<i64>,
    reply: Option<&Reply>,
    settings: &Settings,
    stats: &mut Stats,
) -> Result<(), String> {
    let known: HashSet<i64> = prev.orders.iter().map(|o| o.id).collect();
    let new_entries: Vec<&Order> = next
        .orders
        .iter()
        .filter(|o| o.request.is_entry() && !known.contains(&o.id))
        .collect();
    let was_filled: HashSet<i64> = prev
        .orders
        .iter()
        .filter(|o| is_filled(o))
        .map(|o| o.id)
        .collect();
    let newly_filled: Vec<&Order> = next
        .orders
        .iter()
        .filter(|o| is_filled(o) && !was_filled.contains(&o.id))
        .collect();
    for o in &newly_filled {
        if o.request.is_entry() {
            stats.entries += 1;
        } else {
            stats.exits += 1;
        }
    }
    // The value of the position each new entry left, at the last price the risk engine saw and
    // at the entry's fill price (the last price moved by the paper slippage, which the risk
    // engine values a buy at): within max_position_value at both.
    let mut net: HashMap<(String, Product), i64> = HashMap::new();
    for f in &next.fills {
        let Some(o) = next.order(f.order_id) else {
            continue;
        };
        let q = net
            .entry((f.key.to_string(), o.request.product))
            .or_default();
        *q += f.side.sign() * f.quantity;
        if !(o.request.is_entry() && newly_filled.iter().any(|n| n.id == o.id)) {
            continue;
        }
        let last = *prev
            .lasts
            .get(&f.key)
            .ok_or_else(|| format!("no last price of {} before the step", f.key))?;
        let value = (last * *q).abs();
        let max = settings.risk.max_position_value;
        if value > max {
            return Err(format!(
                "entry {} took {} {} to {q} = {value} at the last price {last}, max_position_value = {max}",
                o.request.tag,
                f.key,
                o.request.product.as_str()
            ));
        }
        let expected = paper_fill_price(last, f.side, settings.paper.slippage_bps, DEFAULT_TICK);
        if f.price != expected {
            return Err(format!(
                "entry {} filled at {} but the paper price of {last} is {expected}",
                o.request.tag, f.price
            ));
        }
        let at_fill = (f.price * *q).abs();
        if at_fill > max {
            return Err(format!(
                "entry {} took {} {} to {q} = {at_fill} at its fill price {}, max_position_value = {max}",
                o.request.tag,
                f.key,
                o.request.product.as_str(),
                f.price
            ));
        }
        let headroom = (max - at_fill).0;
        if headroom * 1000 <= max.0 {
            stats.near_limit += 1;
            stats.min_headroom = Some(stats.min_headroom.map_or(headroom, |h| h.min(headroom)));
        }
    }
    if !new_entries.is_empty() {
        if !matches!(op, Op::Approve { .. }) {
            return Err(format!(
                "entries {new_entries:?} recorded by a step that approves nothing"
            ));
        }
        if prev.state.halted {
            return Err(format!(
                "entry {:?} recorded while halted ({:?})",
                new_entries, prev.state.halted_reason
            ));
        }
        if prev.state.paused {
            return Err(format!("entry {new_entries:?} recorded while paused"));
        }
        if prev.day_loss() >= settings.risk.max_daily_loss {
            return Err(format!(
                "entry {new_entries:?} recorded with today's loss {} >= max_daily_loss {}",
                prev.day_loss(),
                settings.risk.max_daily_loss
            ));
        }
    }
    // The halt: lifted only by /resume; set by /kill, which flattens the paper book.
    if prev.state.halted && !next.state.halted && !matches!(op, Op::Resume) {
        return Err(format!(
            "the halt ({:?}) was lifted without /resume",
            prev.state.halted_reason
        ));
    }
    match op {
        Op::Resume if next.state.halted || next.state.paused => {
            return Err("/resume left trading halted or paused".into());
        }
        Op::Kill if !next.state.halted || !next.open.is_empty() => {
            return Err(format!(
                "/kill left halted = {} with open positions {:?}",
                next.state.halted, next.open
            ));
        }
        _ => {}
    }
    if !prev.state.halted && next.state.halted && !matches!(op, Op::Kill) {
        stats.halts_daily_loss += 1;
    }
    // A fill that takes today's loss to the limit halts (the approval, exit and square-off
    // paths; /kill halts anyway).
    let fills_now = next.fills.len() > prev.fills.len();
    if fills_now
        && matches!(op, Op::Approve { .. } | Op::CheckExits | Op::SquareOff)
        && next.day_loss() >= settings.risk.max_daily_loss
        && !next.state.halted
    {
        return Err(format!(
            "today's loss {} reached max_daily_loss {} after a fill, but trading is not halted",
            next.day_loss(),
            settings.risk.max_daily_loss
        ));
    }
    // Decisions: once only.
    if let Some(id) = target {
        let before = prev.proposals.get(&id).copied();
        let after = next.proposals.get(&id).copied();
        match op {
            Op::Approve { .. } => match (before, reply) {
                (
                    Some(ProposalStatus::Pending),
                    Some(Reply::Decision(Decision::Decided { outcome, .. })),
                ) => match outcome {
                    Outcome::Vetoed(reason) => {
                        *stats.vetoes.entry(reason.code()).or_default() += 1;
                    }
                    Outcome::Failed { .. } => stats.failed += 1,
                    Outcome::Executed { .. } => {
                        if !new_entries.iter().any(|o| proposal_of(o) == Some(id)) {
                            return Err(format!("proposal {id} executed without an order"));
                        }
                    }
                    other => return Err(format!("approving gave {other:?}")),
                },
                (Some(b), Some(Reply::Decision(Decision::AlreadyDecided { .. })))
                    if b != ProposalStatus::Pending =>
                {
                    stats.approvals_of_decided += 1;
                    if !new_entries.is_empty() || before != after {
                        return Err(format!(
                            "approving decided proposal {id} ({before:?}) changed it to {after:?} / placed {new_entries:?}"
                        ));
                    }
                }
                (None, Some(Reply::Decision(Decision::NotFound { .. }))) => {
                    stats.approvals_of_decided += 1;
                    if !new_entries.is_empty() || before != after {
                        return Err(format!(
                            "approving decided proposal {id} ({before:?}) changed it to {after:?} / placed {new_entries:?}"
                        ));
                    }
                }
                (b, r) => return Err(format!("approving proposal {id} ({b:?}) answered {r:?}")),
            },
            Op::Reject { .. } if before != Some(ProposalStatus::Pending) && before != after => {
                return Err(format!(
                    "rejecting decided proposal {id} changed {before:?} to {after:?}"
                ));
            }
            Op::CrashAfterApprove { .. } => {
                if before == Some(ProposalStatus::Pending) && after != Some(ProposalStatus::Failed)
                {
                    return Err(format!(
                        "a proposal left Approved by a crash is {after:?} after recovery, not Failed"
                    ));
                }
                if next.orders.len() != prev.orders.len() {
                    return Err("the recovery after a crash placed an order".into());
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Runs one sequence on an empty database.
async fn run_case(target: &mut Target, ops: &[Op], stats: &mut Stats) -> Result<(), String> {
    let (store, url) = target.fresh().await?;
    let result = run_ops(&store, &url, ops, stats).await;
    if matches!(target, Target::SqliteMemory) {
        store.close().await;
    }
    result
}

async fn run_ops(store: &Store, url: &str, ops: &[Op], stats: &mut Stats) -> Result<(), String> {
    let clock = ManualClock::new(start());
    let settings = Arc::new(settings(url));
    // Every instrument has a price from before the first approval.
    let seeded = start() - Duration::minutes(30);
    for (i, (_, paise)) in INSTRUMENTS.iter().enumerate() {
        store
            .upsert_candles(
                &key(i),
                INTERVAL,
                &[candle(seeded, *paise, *paise, *paise, *paise)],
            )
            .await
            .map_err(|e| e.to_string())?;
    }
    let mut world = World::new(store, &settings, &clock);
    let mut prev = snapshot(&world).await?;
    check_state(&prev, &settings)?;
    stats.cases += 1;
    for (i, op) in ops.iter().enumerate() {
        stats.steps += 1;
        let target = match op {
            Op::Approve { pick } | Op::Reject { pick } | Op::CrashAfterApprove { pick } => {
                Some(world.pick(*pick, &prev))
            }
            _ => None,
        };
        let at = |e: String| {
            format!(
                "step {i} ({op:?}) at {}: {e}",
                clock.now().with_timezone(&IST)
            )
        };
        let reply = world.apply(op, target, stats).await.map_err(at)?;
        let next = snapshot(&world).await.map_err(at)?;
        check_state(&next, &settings).map_err(at)?;
        check_step(&prev, &next, op, target, reply.as_ref(), &settings, stats).map_err(at)?;
        prev = next;
    }
    Ok(())
}

fn cases(var: &str, default: u32) -> u32 {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs `cases` sequences on `target`, printing the summary line.
fn run(target: impl FnOnce(&tokio::runtime::Runtime) -> Target, cases: u32) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let target = RefCell::new(target(&rt));
    let name = target.borrow().name();
    let stats = RefCell::new(Stats::default());
    let started = Instant::now();
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::Off)),
        ..Config::default()
    });
    let result = runner.run(&sequence(), |ops| {
        let mut st = stats.borrow_mut();
        let mut target = target.borrow_mut();
        let result = rt
            .block_on(run_case(&mut target, &ops, &mut st))
            .map_err(TestCaseError::fail);
        // Progress of long runs (PROPTEST_CASES=100000): the summary so far (a breach ends
        // the run with its minimal sequence instead).
        if st.cases.is_multiple_of(5_000) {
            eprintln!(
                "{} (so far)",
                st.line(name, started.elapsed().as_secs_f64())
            );
        }
        result
    });
    let secs = started.elapsed().as_secs_f64();
    let st = stats.borrow();
    if let Err(e) = result {
        panic!("a limit was breached: {e}\n(after {} cases)", st.cases);
    }
    println!("{}", st.line(name, secs));
    assert!(
        st.entries > 0,
        "no sequence executed an entry: the generator is broken"
    );
    assert!(
        st.vetoes.len() >= 5,
        "the sequences met too few of the limits: {:?}",
        st.vetoes
    );
}

#[test]
fn limits_hold_on_sqlite() {
    run(|_| Target::SqliteMemory, cases("PROPTEST_CASES", 200));
}

#[test]
fn limits_hold_on_postgres() {
    let Ok(admin) = std::env::var("TEST_DATABASE_URL") else {
        return;
    };
    if admin.trim().is_empty() {
        return;
    }
    run(
        |rt| {
            rt.block_on(async {
                let db = postgres_store(&admin).await;
                let raw = sqlx::PgConnection::connect(&db.url)
                    .await
                    .expect("a second connection to the test database");
                Target::Postgres { db, raw }
            })
        },
        cases("LIMITS_PG_CASES", 50),
    );
}

/// Regression (found by this test): a MIS long and a CNC short of the same instrument carried
/// overnight are flat by net quantity at the open, and today's P&L counted what the pair had
/// locked in before today (the slippage of both entries) as today's loss.
#[tokio::test]
async fn products_offsetting_overnight_are_not_todays_loss() {
    let propose = |sell: bool, cnc: bool| Op::Propose {
        inst: 0,
        sell,
        cnc,
        size: Size::PerMille(100),
        entry_bp: 0,
        stop_bp: 100,
        target_bp: 200,
        ttl_minutes: 60,
        posted: true,
    };
    let ops = [
        propose(false, false),
        Op::Approve { pick: 0 },
        propose(true, true),
        Op::Approve { pick: 0 },
        Op::NextDay { days: 1, minute: 0 },
    ];
    let mut target = Target::SqliteMemory;
    let mut stats = Stats::default();
    run_case(&mut target, &ops, &mut stats)
        .await
        .expect("today's P&L is the mark to market from the previous close");
    assert_eq!(stats.entries, 2, "both entries executed: {stats:?}");
}
