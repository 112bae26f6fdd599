//! The one command handler: every [`Command`] from the bot, the scheduler, the status page and
//! the CLI is executed here (compare-and-set decisions, risk check, OMS, card edits, alerts).
//!
//! Shared behind an `Arc` and called concurrently. Exactly-once decisions come from the store's
//! compare-and-set on the proposal; everything that reads the book and then trades (approvals,
//! exits, square-off, kill) runs under the OMS's book lock ([`Oms::lock_book`]: in-process and
//! in the database, so another process on the same database waits) so a risk check sees the
//! state the order is placed into.
//!
//! `mft kill` on the command line goes through the running service when there is one
//! (`app::kill`); otherwise it calls [`kill_directly`]: a handler with the configured broker and
//! a [`LogNotifier`], sending [`Command::Kill`] against the same database under its book lock.

mod live;
mod market;
mod preflight;

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::clock::{Clock, IST, SystemClock};
use crate::config::Settings;
use crate::domain::{
    Actor, Command, DenyReason, InstrumentKey, OrderPurpose, OrderRequest, OrderState, OrderType,
    Paise, Position, Product, Proposal, ProposalStatus, Request,
};
use crate::oms::{
    Brackets, ExitFill, FlattenReport, Oms, OmsError, PaperBroker, Placement, proposal_tag,
};
use crate::ports::{
    Alert, Claimed, ClosedPosition, CommandError, CommandHandler, Decision, KillProblem,
    KillReport, Notifier, NotifyError, Outcome, PositionView, ProposalCard, Reply, ScanError,
    ScanResult, Scanner, StatusReport,
};
use crate::risk::{self, RiskContext, RiskEngine};
use crate::store::{Store, StoreError};

/// A scanner for contexts that never scan (`mft kill`): every call fails with a clear message.
pub struct NoScanner;

#[async_trait::async_trait]
impl Scanner for NoScanner {
    async fn scan(
        &self,
        _only: Option<&InstrumentKey>,
        _open_positions: &[InstrumentKey],
    ) -> Result<ScanResult, ScanError> {
        Err(ScanError::NotAvailable)
    }
}

/// A notifier that only logs (for `mft kill` and other contexts without Telegram).
pub struct LogNotifier;

#[async_trait::async_trait]
impl Notifier for LogNotifier {
    async fn post_proposal(&self, card: &ProposalCard) -> Result<i64, NotifyError> {
        tracing::info!(proposal = card.proposal.id, key = %card.proposal.key, "proposal (not posted: no chat)");
        Ok(0)
    }

    async fn update_proposal(
        &self,
        proposal: &Proposal,
        _message_id: i64,
        outcome: &Outcome,
    ) -> Result<(), NotifyError> {
        tracing::info!(proposal = proposal.id, ?outcome, "proposal outcome");
        Ok(())
    }

    async fn alert(&self, alert: &Alert) -> Result<(), NotifyError> {
        tracing::warn!(?alert, "alert");
        Ok(())
    }
}

/// Provides the next scheduled scan time for /status (the scheduler knows it).
pub type NextScan = Arc<dyn Fn() -> Option<DateTime<Utc>> + Send + Sync>;

/// Why a command failed. [`HandlerError::is_recoverable`] separates what a retry may fix from
/// what needs the operator; the bot, the status page and the scheduler see it as a
/// [`CommandError`] of the matching class.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// The command is not allowed now (e.g. HALTED): show the reason to the operator.
    #[error("{0}")]
    Refused(DenyReason),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Oms(#[from] OmsError),
    #[error("the scan failed: {0}")]
    Scan(#[from] ScanError),
    /// A Kite call failed; the text says what to do.
    #[error(transparent)]
    Market(#[from] crate::market::MarketError),
    /// Kite's margin or circuit band for an approved order could not be read.
    #[error("{0}; the order was not placed")]
    RiskReads(crate::market::MarketError),
    /// The Kite session is missing, expired or refused ("Kite session expired: tap Log in").
    #[error(transparent)]
    Session(#[from] crate::market::session::SessionError),
    /// A Kite command in a process without the market connection (the CLI's handler).
    #[error(
        "this command needs the Kite connection of the running service; use it from Telegram or the dashboard"
    )]
    NoMarket,
    /// A command answered with a reply of another kind: a bug.
    #[error("internal error: {command} answered {reply}; report this with the log")]
    UnexpectedReply {
        command: &'static str,
        reply: String,
    },
    #[error("{}", crate::texts::KILL_LIVE_UNAVAILABLE)]
    LiveBrokerUnavailable,
    /// `mft kill` could not reach the running service; the text says what to do instead.
    #[error(transparent)]
    ServiceKill(#[from] super::kill::ServiceKillError),
    /// A /backtest that cannot start as asked (bad span, no data for it).
    #[error(transparent)]
    Backtest(#[from] super::backtest_job::BacktestStartError),
}

impl HandlerError {
    /// Whether the same command may succeed when retried without anyone changing anything (the
    /// database busy, the broker or Kite unreachable for the moment).
    pub fn is_recoverable(&self) -> bool {
        match self {
            HandlerError::Store(e) => e.is_recoverable(),
            HandlerError::Oms(e) => e.is_recoverable(),
            HandlerError::Scan(e) => e.is_recoverable(),
            HandlerError::Market(e) | HandlerError::RiskReads(e) => e.is_recoverable(),
            HandlerError::Session(e) => e.is_recoverable(),
            HandlerError::ServiceKill(e) => e.is_recoverable(),
            HandlerError::Backtest(e) => e.is_recoverable(),
            HandlerError::Refused(_)
            | HandlerError::NoMarket
            | HandlerError::UnexpectedReply { .. }
            | HandlerError::LiveBrokerUnavailable => false,
        }
    }
}

/// The class a caller acts on; the text is the operator's.
impl From<HandlerError> for CommandError {
    fn from(e: HandlerError) -> Self {
        let text = e.to_string();
        match e {
            HandlerError::Refused(reason) => CommandError::Refused(reason),
            HandlerError::NoMarket | HandlerError::LiveBrokerUnavailable => {
                CommandError::Invalid(text)
            }
            HandlerError::Backtest(e) if e.is_bad_request() => CommandError::Invalid(text),
            e if e.is_recoverable() => CommandError::Unavailable(text),
            _ => CommandError::Failed(text),
        }
    }
}

/// The command handler. Build one per process and share it (`Arc<Handler>`).
pub struct Handler {
    store: Store,
    settings: Arc<Settings>,
    clock: Arc<dyn Clock>,
    notifier: Arc<dyn Notifier>,
    scanner: Arc<dyn Scanner>,
    risk: RiskEngine,
    oms: Oms,
    next_scan: Option<NextScan>,
    /// Outcomes decided (on the dashboard) while the proposal's card was still being posted:
    /// the scan edits the card as soon as it has its message id. The lock also orders "no
    /// message id yet" against "message id stored", so no outcome is lost between them.
    unposted: tokio::sync::Mutex<std::collections::HashMap<i64, Outcome>>,
    market: Option<Arc<crate::market::MarketLink>>,
    backtests: super::backtest_job::Backtests,
    /// Kite's order margin and circuit band for execution-time checks (live); None in paper.
    risk_ports: Option<crate::market::RiskPorts>,
}

impl Handler {
    pub fn new(
        store: Store,
        settings: Arc<Settings>,
        clock: Arc<dyn Clock>,
        broker: Arc<dyn crate::oms::Broker>,
        notifier: Arc<dyn Notifier>,
        scanner: Arc<dyn Scanner>,
    ) -> Self {
        let risk = RiskEngine::new(settings.clone(), clock.clone());
        let oms = Oms::new(
            store.clone(),
            broker,
            risk.clone(),
            settings.clone(),
            clock.clone(),
        );
        Self {
            store,
            settings,
            clock,
            notifier,
            scanner,
            risk,
            oms,
            next_scan: None,
            unposted: tokio::sync::Mutex::new(std::collections::HashMap::new()),
            market: None,
            backtests: super::backtest_job::Backtests::default(),
            risk_ports: None,
        }
    }

    /// Entries are then checked against Kite's margin for the order (INSUFFICIENT_CAPITAL) and
    /// the day's circuit band (CIRCUIT_LIMIT); without them (paper) the capital check uses
    /// `[trading] capital` and the band check is skipped.
    pub fn with_risk_ports(mut self, ports: crate::market::RiskPorts) -> Self {
        self.risk_ports = Some(ports);
        self
    }

    /// Lets /status show the next scheduled scan (without it, `next_scan` is None).
    pub fn with_next_scan(mut self, next: NextScan) -> Self {
        self.next_scan = Some(next);
        self
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn oms(&self) -> &Oms {
        &self.oms
    }

    /// Start-up recovery, to call once before the bot and the scheduler start: reconciles
    /// orders a crash left Submitting, then settles proposals left Approved (the process
    /// stopped between the decision and its outcome): Executed when their order filled, else
    /// Failed; their cards are edited. Returns how many proposals it settled.
    pub async fn recover(&self) -> Result<u32, HandlerError> {
        let orders = {
            let book = self.oms.lock_book().await?;
            let r = self.oms.reconcile_with_broker(&book, true).await;
            book.release().await;
            r?
        };
        if orders.resolved > 0 {
            tracing::warn!(
                orders = orders.resolved,
                "reconciled in-flight orders after a restart"
            );
        }
        self.after_reconcile(orders).await?;
        // The book invariant: positions add up to their fills. A mismatch is not repaired
        // here (which side is right needs a human), but the operator hears of it at once.
        for d in self.store.book_discrepancies().await? {
            let error = crate::texts::book_inconsistent(&d.instrument, d.positions, d.fills);
            tracing::error!("{error}");
            self.notify(Alert::ScanFailed { key: None, error }).await;
        }
        let mut settled = 0;
        let stuck: Vec<Proposal> = self
            .store
            .recent_proposals(500)
            .await?
            .into_iter()
            .filter(|p| p.status == ProposalStatus::Approved)
            .collect();
        for p in stuck {
            let orders = self.store.orders_for_proposal(p.id).await?;
            let filled = orders.iter().find_map(|o| match &o.state {
                OrderState::Filled {
                    broker_order_id,
                    avg_price,
                    ..
                } => Some((broker_order_id.clone(), *avg_price, o.request.quantity)),
                // Live: working at the broker, its fills arrive as updates.
                OrderState::Open { broker_order_id } => Some((
                    broker_order_id.clone(),
                    o.request.reference_price,
                    o.request.quantity,
                )),
                _ => None,
            });
            let (status, detail, outcome) = match filled {
                Some((order_id, price, quantity)) => (
                    ProposalStatus::Executed,
                    crate::texts::order_detail(&order_id, p.side, quantity, price),
                    Outcome::Executed {
                        side: p.side,
                        quantity,
                        fill_price: price,
                        mode: self.oms.mode().to_string(),
                        order_id,
                    },
                ),
                None => {
                    let reason = crate::texts::INTERRUPTED_BY_RESTART.to_string();
                    (
                        ProposalStatus::Failed,
                        reason.clone(),
                        Outcome::Failed { reason },
                    )
                }
            };
            if self
                .store
                .transition_proposal(
                    p.id,
                    ProposalStatus::Approved,
                    status,
                    self.clock.now(),
                    None,
                    Some(&detail),
                )
                .await?
            {
                if let Outcome::Failed { reason } = &outcome {
                    self.notify(Alert::OrderFailed {
                        key: p.key.clone(),
                        error: reason.clone(),
                    })
                    .await;
                }
                self.edit_card(p.id, &outcome).await;
                settled += 1;
            }
        }
        Ok(settled)
    }

    /// Executes one command.
    pub async fn handle(&self, req: Request) -> Result<Reply, HandlerError> {
        self.handle_claimed(req, None).await
    }

    /// Executes one command; for an Approve, `claimed` fires as soon as this request has won
    /// the proposal (the compare-and-set Pending -> Approved), before the risk check and the
    /// broker. It is dropped unfired when the command ends without winning (already decided,
    /// not found, an error before the claim) and for every other command.
    pub async fn handle_claimed(
        &self,
        req: Request,
        claimed: Option<Claimed>,
    ) -> Result<Reply, HandlerError> {
        let by = match req.actor {
            Actor::Telegram { user_id } => Some(user_id),
            Actor::Scheduler | Actor::Cli | Actor::Web => None,
        };
        let audited = audit_name(&req.command);
        let actor = req.actor;
        let reply = self.dispatch(req, by, claimed).await;
        if let Some((command, proposal_id)) = audited {
            self.audit(actor, command, proposal_id, &reply).await;
        }
        reply
    }

    /// Records an operator action with its actor; a failure to record is logged, not raised
    /// (the action itself has happened).
    async fn audit(
        &self,
        actor: Actor,
        command: &str,
        proposal_id: Option<i64>,
        reply: &Result<Reply, HandlerError>,
    ) {
        let result = match reply {
            Ok(r) => crate::texts::reply_answer(r),
            Err(e) => crate::texts::action_failed(&e.to_string()),
        };
        if let Err(e) = self
            .store
            .record_action(
                self.clock.now(),
                &actor.name(),
                command,
                proposal_id,
                &result,
            )
            .await
        {
            tracing::error!(command, "could not record an operator action: {e}");
        }
    }

    async fn dispatch(
        &self,
        req: Request,
        by: Option<i64>,
        claimed: Option<Claimed>,
    ) -> Result<Reply, HandlerError> {
        match req.command {
            Command::Approve { proposal_id } => self.approve(proposal_id, by, claimed).await,
            Command::Reject { proposal_id } => self.reject(proposal_id, by).await,
            Command::ExpirySweep => self.expiry_sweep().await,
            Command::Scan { only } => {
                if req.actor == Actor::Scheduler
                    && let Some(reason) = self.closed_today().await
                {
                    return Ok(Reply::Skipped { reason });
                }
                self.scan(only.as_ref()).await
            }
            Command::SquareOff => {
                let report = {
                    let book = self.oms.lock_book().await?;
                    let r = self.oms.square_off(&book, Product::Mis).await;
                    book.release().await;
                    r?
                };
                let changed = report.closed.len() as u32;
                self.after_exits(&report.closed).await?;
                // A position the square-off could not close stays open into the close: the
                // operator must hear of it, not only the log.
                for e in &report.errors {
                    tracing::error!(recoverable = e.is_recoverable(), "square-off: {e}");
                    self.notify(Alert::ScanFailed {
                        key: None,
                        error: crate::texts::square_off_failed(&e.to_string()),
                    })
                    .await;
                }
                Ok(Reply::Done { changed })
            }
            Command::CheckExits => {
                let closed = self.check_exits().await?;
                Ok(Reply::Done {
                    changed: closed.len() as u32,
                })
            }
            Command::Pause => {
                self.store.set_paused(true, self.clock.now()).await?;
                Ok(Reply::Paused)
            }
            Command::Resume => {
                let before = self.store.resume(self.clock.now()).await?;
                Ok(Reply::Resumed {
                    was_halted: before.halted,
                })
            }
            Command::Kill => Ok(Reply::Killed(self.kill(req.actor).await?)),
            Command::Status => Ok(Reply::Status(self.status().await?)),
            Command::Positions => Ok(Reply::Positions(self.position_views().await?)),
            Command::Proposals => Ok(Reply::Proposals(self.store.recent_proposals(20).await?)),
            Command::Risk => Ok(Reply::Risk(self.settings.risk.clone())),
            Command::Why { proposal_id } => Ok(Reply::Why {
                proposal_id,
                proposal: self.store.proposal(proposal_id).await?.map(Box::new),
                trace: self
                    .store
                    .analysis_trace_for_proposal(proposal_id)
                    .await?
                    .map(Box::new),
            }),
            Command::Login { input } => self.login(input, req.actor).await,
            Command::KiteCallback {
                request_token,
                state,
                status,
                action: _,
            } => self.kite_callback(request_token, state, status).await,
            Command::RefreshInstruments => self.refresh_instruments(req.actor).await,
            Command::Preflight => Ok(Reply::Preflight(self.preflight().await?)),
            Command::KillTest => self.kill_test(req.actor).await,
            Command::OrderUpdate(update) => self.order_update(&update).await,
            Command::PollOrders => self.poll_orders().await,
            Command::Reconcile => self.reconcile_live().await,
            Command::Backtest { key, span } => self
                .backtests
                .start(
                    &self.store,
                    self.settings.clone(),
                    self.notifier.clone(),
                    key,
                    &span,
                    self.clock.today_ist(),
                )
                .await
                .map_err(HandlerError::Backtest),
        }
    }

    /// UTC instant of today's IST midnight: the start of the trading day.
    fn day_start(&self) -> DateTime<Utc> {
        let date = self.clock.today_ist();
        date.and_hms_opt(0, 0, 0)
            .and_then(|d| d.and_local_timezone(IST).earliest())
            .map(|d| d.with_timezone(&Utc))
            .unwrap_or_else(|| self.clock.now())
    }

    async fn last_price(&self, key: &InstrumentKey) -> Result<Option<Paise>, StoreError> {
        self.store
            .last_price(key, self.settings.trading.interval)
            .await
    }

    /// The state the risk engine checks against, read now.
    async fn risk_context(
        &self,
        key: Option<&InstrumentKey>,
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<RiskContext, StoreError> {
        let state = self.store.system_state().await?;
        let open = self.store.open_positions().await?;
        let keys: Vec<InstrumentKey> = open.iter().map(|p| p.key.clone()).collect();
        let lasts = self
            .store
            .last_prices(&keys, self.settings.trading.interval)
            .await?;
        let earned_before_today = self.earned_before_today(&open).await?;
        let mut positions: Vec<_> = open.into_iter().zip(lasts).collect();
        if let Some(link) = &self.market {
            for (p, last) in positions.iter_mut() {
                if let Some(lp) = link.prices.get(&p.key) {
                    *last = Some(lp.price);
                }
            }
        }
        let (last_price, price_at) = match key {
            Some(k) if self.market.is_some() => match self.price_point(k).await? {
                Some(pp) => (Some(pp.price), pp.at),
                None => (None, None),
            },
            Some(k) => (self.last_price(k).await?, None),
            None => (None, None),
        };
        let since = self.day_start();
        let history = chrono::Duration::seconds(
            i64::try_from(self.settings.risk.duplicate_window_seconds)
                .unwrap_or(0)
                .max(risk::RATE_WINDOW_SECONDS),
        );
        let recent_orders = self
            .store
            .orders_for_risk(self.clock.now() - history, risk::ANOMALY_SAMPLE as i64)
            .await?;
        Ok(RiskContext {
            halted: state.halted,
            paused: state.paused,
            last_price,
            positions,
            orders_today: self.store.count_orders_since(since).await?,
            realized_today: self.store.realized_since(since).await?,
            earned_before_today,
            expires_at,
            price_at,
            max_price_age_seconds: self.freshness_required(),
            recent_orders,
            circuit_band: None,
            margin: None,
            working_entries: self.working_entries().await?,
            fill_slippage_bps: self.settings.entry_slippage_bps(),
            tick_size: match key {
                Some(k) => self.store.instrument(k).await?.map(|i| i.tick_size),
                None => None,
            },
        })
    }

    /// Entries recorded but not final, by what they may still add (see
    /// [`RiskContext::working_entries`]).
    async fn working_entries(&self) -> Result<Vec<risk::WorkingEntry>, StoreError> {
        Ok(self
            .store
            .open_orders()
            .await?
            .into_iter()
            .filter(|o| o.request.is_entry())
            .map(|o| risk::WorkingEntry {
                quantity: o.request.side.sign() * (o.request.quantity - o.filled_quantity).max(0),
                price: match o.request.order_type {
                    crate::domain::OrderType::Limit(p) => p,
                    _ => o.request.reference_price,
                },
                key: o.request.key,
                product: o.request.product,
                tag: o.request.tag,
            })
            .collect())
    }

    /// What carried positions earned before today's session, to be taken out of today's P&L
    /// (see `risk::day`): previous closes are read only for instruments held at the open.
    async fn earned_before_today(&self, open: &[Position]) -> Result<Paise, StoreError> {
        let start = self.day_start();
        let now = risk::day::holdings(open);
        let today = self.store.fills_by_instrument_since(start).await?;
        let carried: Vec<InstrumentKey> = risk::day::held_at_open(&now, &today)
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        // Even with nothing carried by net quantity the instruments still count: products that
        // offset each other at the open locked in P&L before today (see `risk::day`).
        let closes = self
            .store
            .closes_before(&carried, self.settings.trading.interval, start)
            .await?;
        let closes: std::collections::HashMap<&InstrumentKey, Paise> = carried
            .iter()
            .zip(closes)
            .filter_map(|(k, c)| {
                if c.is_none() {
                    tracing::warn!(instrument = %k, "no close stored before today: today's P&L counts this carried position from its average price");
                }
                c.map(|c| (k, c))
            })
            .collect();
        Ok(risk::day::earned_before_today(&now, &today, |k| {
            closes.get(k).copied()
        }))
    }

    async fn notify(&self, alert: Alert) {
        if let Err(e) = self.notifier.alert(&alert).await {
            tracing::error!(?alert, "could not send an alert: {e}");
        }
    }

    async fn edit_card(&self, proposal_id: i64, outcome: &Outcome) {
        let mut unposted = self.unposted.lock().await;
        let proposal = match self.store.proposal(proposal_id).await {
            Ok(Some(p)) => p,
            Ok(None) => return,
            Err(e) => {
                tracing::error!(
                    proposal_id,
                    "could not re-read a proposal to edit its card: {e}"
                );
                return;
            }
        };
        let Some(message_id) = proposal.message_id else {
            tracing::info!(
                proposal_id,
                "the card is not posted yet; it is edited once it is"
            );
            unposted.insert(proposal_id, outcome.clone());
            return;
        };
        drop(unposted);
        if let Err(e) = self
            .notifier
            .update_proposal(&proposal, message_id, outcome)
            .await
        {
            tracing::error!(proposal_id, "could not edit the proposal card: {e}");
        }
    }

    /// Halts on the daily loss limit; alerts only when this call halted it.
    async fn halt_for_daily_loss(&self, loss: Paise, limit: Paise) -> Result<(), StoreError> {
        let reason = DenyReason::MaxDailyLoss { loss, max: limit }.to_string();
        if self.store.set_halt(&reason, self.clock.now()).await? {
            tracing::warn!("{reason}: trading halted");
            self.notify(Alert::DailyLossHalt { loss, limit }).await;
        }
        Ok(())
    }

    /// After fills: halt when today's loss has reached the limit.
    async fn check_daily_loss(&self) -> Result<(), StoreError> {
        let ctx = self.risk_context(None, None).await?;
        let loss = ctx.day_loss();
        let limit = self.settings.risk.max_daily_loss;
        if loss >= limit {
            self.halt_for_daily_loss(loss, limit).await?;
        }
        Ok(())
    }

    async fn after_exits(&self, closed: &[ExitFill]) -> Result<(), StoreError> {
        for c in closed {
            self.notify(Alert::PositionClosed {
                key: c.key.clone(),
                reason: c.reason.clone(),
                quantity: c.quantity,
                price: c.price,
                pnl: c.pnl,
            })
            .await;
        }
        if !closed.is_empty() {
            self.check_daily_loss().await?;
        }
        Ok(())
    }

    async fn check_exits(&self) -> Result<Vec<ExitFill>, HandlerError> {
        let report = {
            let book = self.oms.lock_book().await?;
            let r = self.oms.check_exits(&book).await;
            book.release().await;
            r?
        };
        // A failed exit (an overflow on an absurd price, a stale order) stops only that exit
        // and is told to the operator.
        for e in &report.errors {
            tracing::error!(recoverable = e.is_recoverable(), "bracket exit: {e}");
            self.notify(Alert::ScanFailed {
                key: None,
                error: crate::texts::exit_failed(&e.to_string()),
            })
            .await;
        }
        self.after_exits(&report.closed).await?;
        Ok(report.closed)
    }

    async fn decided_elsewhere(&self, proposal_id: i64) -> Result<Reply, HandlerError> {
        Ok(Reply::Decision(
            match self.store.proposal(proposal_id).await? {
                None => Decision::NotFound { proposal_id },
                Some(p) => Decision::AlreadyDecided {
                    proposal_id,
                    status: p.status,
                },
            },
        ))
    }

    async fn approve(
        &self,
        proposal_id: i64,
        by: Option<i64>,
        claimed: Option<Claimed>,
    ) -> Result<Reply, HandlerError> {
        let now = self.clock.now();
        if !self
            .store
            .transition_proposal(
                proposal_id,
                ProposalStatus::Pending,
                ProposalStatus::Approved,
                now,
                by,
                None,
            )
            .await?
        {
            return self.decided_elsewhere(proposal_id).await;
        }
        // Won: the caller may answer now ("Placing…"); the outcome reaches the card below.
        if let Some(tx) = claimed {
            let _ = tx.send(());
        }
        let Some(p) = self.store.proposal(proposal_id).await? else {
            return Ok(Reply::Decision(Decision::NotFound { proposal_id }));
        };
        let outcome = match self.oms.lock_book().await {
            Ok(book) => {
                let o = self.execute_approved(&book, &p).await;
                book.release().await;
                o
            }
            Err(e) => Err(e.into()),
        };
        let (status, detail, outcome) = match outcome {
            Ok(o) => o,
            Err(e) => {
                // The proposal must not stay Approved: record the failure, then report it.
                let reason = e.to_string();
                (
                    ProposalStatus::Failed,
                    reason.clone(),
                    Outcome::Failed { reason },
                )
            }
        };
        self.store
            .transition_proposal(
                proposal_id,
                ProposalStatus::Approved,
                status,
                self.clock.now(),
                None,
                Some(&detail),
            )
            .await?;
        // The operator's card first: the follow-up alerts and the daily-loss check after a
        // fill need not delay it.
        self.edit_card(proposal_id, &outcome).await;
        match &outcome {
            Outcome::Vetoed(reason) => {
                self.notify(Alert::Vetoed {
                    proposal_id,
                    key: p.key.clone(),
                    reason: reason.clone(),
                })
                .await;
                if let DenyReason::MaxDailyLoss { loss, max } = reason {
                    self.halt_for_daily_loss(*loss, *max).await?;
                }
            }
            Outcome::Failed { reason } => {
                self.notify(Alert::OrderFailed {
                    key: p.key.clone(),
                    error: reason.clone(),
                })
                .await
            }
            Outcome::Executed { .. } => self.check_daily_loss().await?,
            Outcome::BrokerRejected { message } => {
                self.notify(Alert::OrderFailed {
                    key: p.key.clone(),
                    error: crate::texts::broker_rejected(message),
                })
                .await
            }
            Outcome::Rejected | Outcome::Expired | Outcome::Working { .. } => {}
            Outcome::Checking { tag } => {
                self.notify(Alert::Broker {
                    key: Some(p.key.clone()),
                    text: crate::texts::order_answer_lost(tag),
                })
                .await
            }
        }
        Ok(Reply::Decision(Decision::Decided {
            proposal_id,
            outcome,
        }))
    }

    /// Risk check and placement of an approved proposal; (final status, stored detail, outcome).
    async fn execute_approved(
        &self,
        book: &crate::oms::BookGuard<'_>,
        p: &Proposal,
    ) -> Result<(ProposalStatus, String, Outcome), HandlerError> {
        let mut ctx = self.risk_context(Some(&p.key), Some(p.expires_at)).await?;
        let live = self.oms.broker().mode() == crate::config::Mode::Live;
        let order_type =
            if live && self.settings.live.entry_order == crate::config::EntryOrder::Limit {
                OrderType::Limit(p.entry)
            } else {
                OrderType::Market
            };
        let req = OrderRequest {
            key: p.key.clone(),
            side: p.side,
            quantity: p.quantity,
            order_type,
            product: p.product,
            tag: proposal_tag(p.id),
            purpose: OrderPurpose::Entry { proposal_id: p.id },
            reference_price: p.entry,
        };
        // Live: Kite is asked for the order's margin and circuit band only for an order that
        // passes everything else; the decision audited is the one taken with them.
        let mut verdict = self.risk.check(req, &ctx);
        if let (Some(ports), Ok(passed)) = (&self.risk_ports, &verdict) {
            let req = passed.inner().clone();
            let kite = HandlerError::RiskReads;
            ctx.margin = Some(ports.margins.order_margin(&req).await.map_err(kite)?);
            ctx.circuit_band = ports.circuits.circuit_band(&req.key).await.map_err(kite)?;
            verdict = self.risk.check(req, &ctx);
        }
        let approved = match verdict {
            Ok(a) => a,
            Err(refused) => {
                self.store.record_risk_decision(&refused.decision).await?;
                let reason = refused.reason;
                return Ok((
                    ProposalStatus::Vetoed,
                    reason.to_string(),
                    Outcome::Vetoed(reason),
                ));
            }
        };
        // `[strategy] exit = "cross"`: the position ends on the opposite cross only.
        let brackets =
            (self.settings.strategy.exit == crate::config::ExitRule::Bracket).then_some(Brackets {
                stop: p.stop,
                target: p.target,
            });
        let placement = self.oms.place(book, approved, brackets).await?;
        let mode = self.oms.mode().to_string();
        let executed = |order: &crate::domain::Order, price: Paise| {
            let order_id = match &order.state {
                OrderState::Filled {
                    broker_order_id, ..
                }
                | OrderState::Open { broker_order_id } => broker_order_id.clone(),
                _ => order.id.to_string(),
            };
            (
                ProposalStatus::Executed,
                crate::texts::order_detail(&order_id, p.side, p.quantity, price),
                Outcome::Executed {
                    side: p.side,
                    quantity: order.request.quantity,
                    fill_price: price,
                    mode: mode.clone(),
                    order_id,
                },
            )
        };
        let live = self.oms.broker().mode() == crate::config::Mode::Live;
        let working = |order: &crate::domain::Order| {
            let order_id = match &order.state {
                OrderState::Open { broker_order_id } => broker_order_id.clone(),
                _ => order.request.tag.clone(),
            };
            let price = match order.request.order_type {
                OrderType::Limit(p) => p,
                _ => order.request.reference_price,
            };
            (
                ProposalStatus::Executed,
                crate::texts::order_working_detail(&order_id, p.side, p.quantity, price),
                Outcome::Working {
                    side: p.side,
                    quantity: order.request.quantity,
                    price,
                    order_id,
                },
            )
        };
        Ok(match placement {
            Placement::Filled { order, fill, .. } => executed(&order, fill.price),
            Placement::Working { order } if live => working(&order),
            Placement::Working { order } => executed(&order, order.request.reference_price),
            Placement::Unknown { order } => (
                ProposalStatus::Executed,
                crate::texts::order_sent_answer_lost(&order.request.tag),
                Outcome::Checking {
                    tag: order.request.tag.clone(),
                },
            ),
            Placement::AlreadyPlaced { order } => match &order.state {
                OrderState::Filled { avg_price, .. } => executed(&order, *avg_price),
                OrderState::Open { .. } if live => working(&order),
                OrderState::Open { .. } => executed(&order, order.request.reference_price),
                OrderState::Unknown => (
                    ProposalStatus::Executed,
                    crate::texts::order_being_checked(&order.request.tag),
                    Outcome::Checking {
                        tag: order.request.tag.clone(),
                    },
                ),
                other => {
                    let reason = crate::texts::entry_order_state(other.name());
                    (
                        ProposalStatus::Failed,
                        reason.clone(),
                        Outcome::Failed { reason },
                    )
                }
            },
            Placement::Rejected { reason, .. } if live => (
                ProposalStatus::Failed,
                crate::texts::rejected_by_broker_detail(&reason),
                Outcome::BrokerRejected { message: reason },
            ),
            Placement::Rejected { reason, .. } => (
                ProposalStatus::Failed,
                reason.clone(),
                Outcome::Failed { reason },
            ),
        })
    }

    async fn reject(&self, proposal_id: i64, by: Option<i64>) -> Result<Reply, HandlerError> {
        if !self
            .store
            .transition_proposal(
                proposal_id,
                ProposalStatus::Pending,
                ProposalStatus::Rejected,
                self.clock.now(),
                by,
                Some(crate::texts::REJECTED_BY_OPERATOR),
            )
            .await?
        {
            return self.decided_elsewhere(proposal_id).await;
        }
        self.edit_card(proposal_id, &Outcome::Rejected).await;
        Ok(Reply::Decision(Decision::Decided {
            proposal_id,
            outcome: Outcome::Rejected,
        }))
    }

    async fn expiry_sweep(&self) -> Result<Reply, HandlerError> {
        let expired = self.store.expire_due_proposals(self.clock.now()).await?;
        for p in &expired {
            if let Some(message_id) = p.message_id
                && let Err(e) = self
                    .notifier
                    .update_proposal(p, message_id, &Outcome::Expired)
                    .await
            {
                tracing::error!(proposal = p.id, "could not edit an expired card: {e}");
            }
        }
        Ok(Reply::Done {
            changed: expired.len() as u32,
        })
    }

    async fn scan(&self, only: Option<&InstrumentKey>) -> Result<Reply, HandlerError> {
        // Bracket exits reduce exposure, so they run even when the scan itself may not.
        self.check_exits().await?;
        let state = self.store.system_state().await?;
        if state.halted {
            return Err(HandlerError::Refused(DenyReason::Halted));
        }
        if state.paused {
            // Paused: no new proposals; the reply says so instead of scanning.
            return Ok(Reply::Paused);
        }
        let open: Vec<InstrumentKey> = self
            .store
            .open_positions()
            .await?
            .into_iter()
            .map(|p| p.key)
            .collect();
        let keys: Vec<InstrumentKey> = match only {
            Some(k) => vec![k.clone()],
            None => {
                let mut seen = std::collections::HashSet::new();
                self.settings
                    .trading
                    .watchlist
                    .iter()
                    .filter(|k| seen.insert((*k).clone()))
                    .cloned()
                    .collect()
            }
        };
        let (fresh, stale) = self.prepare_scan(keys).await;
        let scanned = if stale.is_empty() {
            self.scanner.scan(only, &open).await
        } else {
            self.scanner.scan_keys(&fresh, &open).await
        };
        let result = match scanned.map(|mut r| {
            r.summary.stale = stale;
            r
        }) {
            Ok(r) => r,
            Err(e) => {
                self.notify(Alert::ScanFailed {
                    key: only.cloned(),
                    error: e.to_string(),
                })
                .await;
                return Err(HandlerError::Scan(e));
            }
        };
        let mut summary = result.summary.clone();
        let mut unposted = 0u32;
        for card in &result.proposals {
            if !self.post_card(card).await? {
                unposted += 1;
            }
        }
        if unposted > 0 {
            summary.proposals = summary.proposals.saturating_sub(unposted);
            summary.errors += unposted;
            self.store
                .count_unposted_cards(summary.id, unposted)
                .await?;
        }
        for (key, reason) in &result.exits {
            let report = {
                let book = self.oms.lock_book().await?;
                let r = self.oms.close_instrument(&book, key, reason).await;
                book.release().await;
                r?
            };
            for e in &report.errors {
                self.notify(Alert::OrderFailed {
                    key: key.clone(),
                    error: e.to_string(),
                })
                .await;
            }
            self.after_exits(&report.closed).await?;
        }
        for (key, error) in &result.errors {
            self.notify(Alert::ScanFailed {
                key: Some(key.clone()),
                error: error.clone(),
            })
            .await;
        }
        Ok(Reply::Scan(summary))
    }

    /// Posts a proposal's card (the notifier retries a photo once, then falls back to text)
    /// and stores its message id in the same step. When no card could be posted the proposal
    /// is marked Failed with the reason and the operator is alerted: a pending proposal
    /// without buttons could never be approved and would block its instrument. Returns
    /// whether the card was posted.
    async fn post_card(&self, card: &ProposalCard) -> Result<bool, HandlerError> {
        let id = card.proposal.id;
        match self.notifier.post_proposal(card).await {
            Ok(message_id) => {
                // A decision taken before the card existed (e.g. on the dashboard) left its
                // outcome here: saving the id and taking it is one step under the lock.
                let decided = {
                    let mut waiting = self.unposted.lock().await;
                    self.store.set_proposal_message(id, message_id).await?;
                    waiting.remove(&id)
                };
                if let Some(outcome) = decided {
                    self.edit_card(id, &outcome).await;
                } else if let Some(p) = self.store.proposal(id).await?
                    && p.status == ProposalStatus::Expired
                {
                    // The expiry sweep may have run between the post and the save, when it
                    // could not yet edit this card: do it now, so no live buttons stay behind.
                    self.edit_card(id, &Outcome::Expired).await;
                }
                Ok(true)
            }
            Err(e) => {
                self.unposted.lock().await.remove(&id);
                let reason = crate::texts::card_not_posted(&e.to_string());
                tracing::error!(proposal = id, "{reason}");
                self.store
                    .transition_proposal(
                        id,
                        ProposalStatus::Pending,
                        ProposalStatus::Failed,
                        self.clock.now(),
                        None,
                        Some(&reason),
                    )
                    .await?;
                self.notify(Alert::ScanFailed {
                    key: Some(card.proposal.key.clone()),
                    error: crate::texts::proposal_not_posted(id, &reason),
                })
                .await;
                Ok(false)
            }
        }
    }

    /// Start-up: a pending proposal without a message id lost its card to a crash between
    /// posting and saving (or was never posted). One still within its time gets a fresh card;
    /// one already due is expired with a note. Returns how many were handled.
    pub async fn repost_unposted(&self) -> Result<u32, HandlerError> {
        let now = self.clock.now();
        let mut handled = 0;
        for p in self.store.pending_proposals().await? {
            if p.message_id.is_some() {
                continue;
            }
            handled += 1;
            if p.expires_at <= now {
                self.store
                    .transition_proposal(
                        p.id,
                        ProposalStatus::Pending,
                        ProposalStatus::Expired,
                        now,
                        None,
                        Some(crate::texts::EXPIRED_UNPOSTED),
                    )
                    .await?;
                continue;
            }
            let card = ProposalCard {
                chart_png: p
                    .chart_path
                    .as_ref()
                    .map(std::path::PathBuf::from)
                    .filter(|path| path.exists()),
                capital: self.settings.capital_on(self.clock.today_ist()),
                proposal: p,
            };
            self.post_card(&card).await?;
        }
        Ok(handled)
    }

    async fn kill(&self, actor: Actor) -> Result<KillReport, HandlerError> {
        let who = crate::texts::kill_by(actor);
        let FlattenReport {
            cancelled,
            closed,
            errors,
        } = {
            let book = self.oms.lock_book().await?;
            // Halt first: nothing new may open while we are closing.
            let r = match self.store.set_halt(&who, self.clock.now()).await {
                Ok(_) => self
                    .oms
                    .flatten(&book, "kill")
                    .await
                    .map_err(HandlerError::from),
                Err(e) => Err(e.into()),
            };
            book.release().await;
            r?
        };
        let report = KillReport {
            cancelled_orders: cancelled,
            closed: closed
                .iter()
                .map(|c| ClosedPosition {
                    key: c.key.clone(),
                    quantity: c.quantity,
                    price: c.price,
                    pnl: c.pnl,
                })
                .collect(),
            realized_today: self.store.realized_since(self.day_start()).await?,
            errors: errors
                .iter()
                .map(|e| KillProblem {
                    text: e.to_string(),
                    recoverable: e.is_recoverable(),
                })
                .collect(),
        };
        for e in &errors {
            tracing::error!(recoverable = e.is_recoverable(), "kill: {e}");
        }
        self.store
            .log_trade_event(
                self.clock.now(),
                "kill",
                None,
                None,
                &crate::texts::kill_logged(
                    &who,
                    report.cancelled_orders,
                    report.closed.len(),
                    report.errors.len(),
                ),
            )
            .await?;
        self.notify(Alert::KillDone(report.clone())).await;
        Ok(report)
    }

    async fn position_views(&self) -> Result<Vec<PositionView>, HandlerError> {
        let open = self.store.open_positions().await?;
        let keys: Vec<InstrumentKey> = open.iter().map(|p| p.key.clone()).collect();
        let lasts = self
            .store
            .last_prices(&keys, self.settings.trading.interval)
            .await?;
        let mut out = Vec::with_capacity(open.len());
        let now = self.clock.now();
        for (position, stored) in open.into_iter().zip(lasts) {
            let point = if self.market.is_some() {
                self.price_point(&position.key).await?
            } else {
                None
            };
            let last_price = point.map(|p| p.price).or(stored);
            let price_age_seconds = point
                .and_then(|p| p.at)
                .map(|at| (now - at).num_seconds().max(0));
            let unrealized = last_price.map_or(Paise::ZERO, |l| position.unrealized(l));
            out.push(PositionView {
                position,
                last_price,
                unrealized,
                price_age_seconds,
            });
        }
        Ok(out)
    }

    async fn status(&self) -> Result<StatusReport, HandlerError> {
        let state = self.store.system_state().await?;
        let ctx = self.risk_context(None, None).await?;
        let positions = self.position_views().await?;
        Ok(StatusReport {
            mode: self.oms.mode().to_string(),
            halted: state.halted,
            paused: state.paused,
            last_scan: self.store.last_scan_run().await?,
            next_scan: self.next_scan.as_ref().and_then(|f| f()),
            realized_today: ctx.realized_today,
            unrealized: positions.iter().map(|p| p.unrealized).sum(),
            day_pnl: ctx.day_pnl(),
            positions,
            pending: self.store.pending_proposals().await?,
            loss_used: ctx.day_loss(),
            loss_limit: self.settings.risk.max_daily_loss,
            orders_today: ctx.orders_today,
            orders_limit: self.settings.risk.max_orders_per_day,
            kite: self.kite_line(),
            backtest: self.backtests.progress_text(),
        })
    }
}

/// The operator actions the audit records: (command name, proposal).
fn audit_name(c: &Command) -> Option<(&'static str, Option<i64>)> {
    match c {
        Command::Approve { proposal_id } => Some(("approve", Some(*proposal_id))),
        Command::Reject { proposal_id } => Some(("reject", Some(*proposal_id))),
        Command::Pause => Some(("pause", None)),
        Command::Resume => Some(("resume", None)),
        Command::Kill => Some(("kill", None)),
        _ => None,
    }
}

/// The bot, the status page and the scheduler reach the handler through this trait; errors
/// become the text shown to the operator (they carry no secrets).
#[async_trait::async_trait]
impl CommandHandler for Handler {
    async fn handle(&self, req: Request) -> Result<Reply, CommandError> {
        Ok(Handler::handle(self, req).await?)
    }

    async fn handle_claimed(&self, req: Request, claimed: Claimed) -> Result<Reply, CommandError> {
        Ok(Handler::handle_claimed(self, req, Some(claimed)).await?)
    }
}

/// The broker of the configured mode: paper, or Kite (MODE=live) with the stored login
/// session. A kill must never report a close that no broker confirmed, so live never falls
/// back to paper.
pub async fn configured_broker_for(
    store: &Store,
    settings: &Arc<Settings>,
    clock: &Arc<dyn Clock>,
) -> Result<Arc<dyn crate::oms::Broker>, HandlerError> {
    match settings.mode {
        crate::config::Mode::Paper => configured_broker(store, settings, clock),
        crate::config::Mode::Live => {
            let session = crate::market::SessionProvider::load(
                store.clone(),
                settings.clone(),
                clock.clone(),
            )
            .await?;
            // Without a key or a session nothing could be cancelled or closed at Kite: refuse
            // before the halt or any order is touched.
            if !session.configured() || session.current().is_err() {
                return Err(HandlerError::LiveBrokerUnavailable);
            }
            let broker = crate::oms::KiteBroker::new(
                settings,
                store.clone(),
                crate::oms::TokenSource::Session(Arc::new(session)),
            )
            .map_err(|_| HandlerError::LiveBrokerUnavailable)?
            .with_order_limiter(crate::market::kite_order_limiter());
            Ok(Arc::new(broker))
        }
    }
}

/// The paper broker (MODE=paper); MODE=live needs [`configured_broker_for`].
pub fn configured_broker(
    store: &Store,
    settings: &Arc<Settings>,
    clock: &Arc<dyn Clock>,
) -> Result<Arc<dyn crate::oms::Broker>, HandlerError> {
    match settings.mode {
        crate::config::Mode::Paper => Ok(Arc::new(PaperBroker::new(
            store.clone(),
            settings.clone(),
            clock.clone(),
        ))),
        crate::config::Mode::Live => Err(HandlerError::LiveBrokerUnavailable),
    }
}

/// `mft kill` acting directly on `store` (used when no service runs on its database): halts,
/// cancels open orders and squares off every position with the configured broker (Kite in
/// MODE=live, with the stored session) under the database's book lock (alerts only logged).
pub async fn kill_directly(
    settings: Arc<Settings>,
    store: Store,
) -> Result<KillReport, HandlerError> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let broker = configured_broker_for(&store, &settings, &clock).await?;
    // The kill report is logged and kept for the dashboard's Alerts page.
    let notifier = Arc::new(crate::web::live::RecordingNotifier::new(
        Arc::new(LogNotifier),
        store.clone(),
        clock.clone(),
        crate::web::live::LiveHub::new(),
    ));
    let handler = Handler::new(
        store.clone(),
        settings,
        clock,
        broker,
        notifier,
        Arc::new(NoScanner),
    );
    let reply = handler
        .handle(Request {
            command: Command::Kill,
            actor: Actor::Cli,
        })
        .await;
    match reply? {
        Reply::Killed(report) => Ok(report),
        other => Err(HandlerError::UnexpectedReply {
            command: "kill",
            reply: format!("{other:?}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oms::BrokerError;

    fn busy() -> StoreError {
        StoreError::BookLockBusy {
            detail: "held by pid 7".into(),
        }
    }

    #[test]
    fn handler_errors_reach_callers_in_their_class_with_their_text() {
        let cases: Vec<(HandlerError, CommandError)> = vec![
            (
                HandlerError::Refused(DenyReason::Halted),
                CommandError::Refused(DenyReason::Halted),
            ),
            (
                HandlerError::Store(busy()),
                CommandError::Unavailable(
                    "another mft process kept the order book locked (held by pid 7); retry, and \
                     check that no command is stuck"
                        .into(),
                ),
            ),
            (
                HandlerError::Oms(OmsError::Unknown {
                    tag: "mft-p7".into(),
                    source: BrokerError::Unavailable("timeout".into()),
                }),
                CommandError::Failed(
                    "the broker's answer for order mft-p7 is unknown (the broker could not be \
                     reached or failed: timeout; check the connection and the order book before \
                     retrying); the order stays Submitting and is reconciled by its tag on the \
                     next placement: check the broker's order book"
                        .into(),
                ),
            ),
            (
                HandlerError::Scan(ScanError::AllStale),
                CommandError::Unavailable(
                    "the scan failed: nothing to scan: every instrument's data is stale".into(),
                ),
            ),
            (
                HandlerError::Scan(ScanError::Failed {
                    message: "cannot create the charts folder x".into(),
                    recoverable: false,
                }),
                CommandError::Failed("the scan failed: cannot create the charts folder x".into()),
            ),
            (
                HandlerError::Session(crate::market::SessionError::Expired),
                CommandError::Failed("Kite session expired: tap Log in".into()),
            ),
            (
                HandlerError::Market(crate::market::MarketError::RetriesExhausted {
                    what: "quote".into(),
                    attempts: 3,
                    retries: 2,
                    last: "429".into(),
                }),
                CommandError::Unavailable(
                    "quote failed 3 times (2 retries with exponential backoff); last error: 429. \
                     Try again later or raise [kite] max_retries"
                        .into(),
                ),
            ),
            (
                HandlerError::LiveBrokerUnavailable,
                CommandError::Invalid(crate::texts::KILL_LIVE_UNAVAILABLE.into()),
            ),
            (
                HandlerError::Backtest(crate::app::backtest_job::BacktestStartError::BadSpan {
                    span: "1q".into(),
                }),
                CommandError::Invalid(
                    "span \"1q\" is not a number followed by d, w, m or y (e.g. 30d, 6m, 1y)"
                        .into(),
                ),
            ),
            (
                HandlerError::UnexpectedReply {
                    command: "kill",
                    reply: "Paused".into(),
                },
                CommandError::Failed(
                    "internal error: kill answered Paused; report this with the log".into(),
                ),
            ),
        ];
        for (e, want) in cases {
            let recoverable = e.is_recoverable();
            let got = CommandError::from(e);
            assert_eq!(got, want);
            assert_eq!(got.is_recoverable(), recoverable, "{got}");
        }
    }
}
