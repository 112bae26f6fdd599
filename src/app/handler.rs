//! The one command handler: every [`Command`] from the bot, the scheduler, the status page and
//! the CLI is executed here (compare-and-set decisions, risk check, OMS, card edits, alerts).
//!
//! Shared behind an `Arc` and called concurrently. Exactly-once decisions come from the store's
//! compare-and-set on the proposal; everything that reads the book and then trades (approvals,
//! exits, square-off, kill) runs under one `book` lock so a risk check sees the state the order
//! is placed into.
//!
//! `mft kill` on the command line calls [`kill_from_cli`]: a handler with the paper broker and
//! a [`LogNotifier`], sending [`Command::Kill`] against the same database.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::clock::{Clock, IST, SystemClock};
use crate::config::Settings;
use crate::domain::{
    Actor, Command, DenyReason, InstrumentKey, OrderPurpose, OrderRequest, OrderState, OrderType,
    Paise, Product, Proposal, ProposalStatus, Request,
};
use crate::oms::{
    Brackets, ExitFill, FlattenReport, Oms, OmsError, PaperBroker, Placement, proposal_tag,
};
use crate::ports::{
    Alert, ClosedPosition, CommandError, CommandHandler, Decision, KillReport, Notifier,
    NotifyError, Outcome, PositionView, ProposalCard, Reply, ScanError, ScanResult, Scanner,
    StatusReport,
};
use crate::risk::{RiskContext, RiskEngine};
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
        Err("scanning is not available from this command; use `mft run`".into())
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
    Scan(String),
    #[error("internal error: {0}")]
    Internal(String),
    #[error("{0}")]
    Backtest(String),
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
    book: tokio::sync::Mutex<()>,
    next_scan: Option<NextScan>,
    backtests: super::backtest_job::Backtests,
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
            book: tokio::sync::Mutex::new(()),
            next_scan: None,
            backtests: super::backtest_job::Backtests::default(),
        }
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
            let _book = self.book.lock().await;
            self.oms.reconcile().await?
        };
        if orders > 0 {
            tracing::warn!(orders, "reconciled in-flight orders after a restart");
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
                _ => None,
            });
            let (status, detail, outcome) = match filled {
                Some((order_id, price, quantity)) => (
                    ProposalStatus::Executed,
                    format!("order {order_id} {} {quantity} at {price}", p.side),
                    Outcome::Executed {
                        side: p.side,
                        quantity,
                        fill_price: price,
                        mode: self.oms.mode().to_string(),
                        order_id,
                    },
                ),
                None => {
                    let reason = "interrupted by a restart before the order was placed".to_string();
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
        let by = match req.actor {
            Actor::Telegram { user_id } => Some(user_id),
            Actor::Scheduler | Actor::Cli => None,
        };
        match req.command {
            Command::Approve { proposal_id } => self.approve(proposal_id, by).await,
            Command::Reject { proposal_id } => self.reject(proposal_id, by).await,
            Command::ExpirySweep => self.expiry_sweep().await,
            Command::Scan { only } => self.scan(only.as_ref()).await,
            Command::SquareOff => {
                let report = {
                    let _book = self.book.lock().await;
                    self.oms.square_off(Product::Mis).await?
                };
                let changed = report.closed.len() as u32;
                self.after_exits(&report.closed).await?;
                for e in &report.errors {
                    tracing::error!("square-off: {e}");
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
        let positions: Vec<_> = open.into_iter().zip(lasts).collect();
        let last_price = match key {
            Some(k) => self.last_price(k).await?,
            None => None,
        };
        let since = self.day_start();
        Ok(RiskContext {
            halted: state.halted,
            last_price,
            positions,
            orders_today: self.store.count_orders_since(since).await?,
            realized_today: self.store.realized_since(since).await?,
            expires_at,
        })
    }

    async fn notify(&self, alert: Alert) {
        if let Err(e) = self.notifier.alert(&alert).await {
            tracing::error!(?alert, "could not send an alert: {e}");
        }
    }

    async fn edit_card(&self, proposal_id: i64, outcome: &Outcome) {
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
            tracing::info!(proposal_id, "proposal has no card message; nothing to edit");
            return;
        };
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
        let closed = {
            let _book = self.book.lock().await;
            self.oms.check_exits().await?
        };
        self.after_exits(&closed).await?;
        Ok(closed)
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

    async fn approve(&self, proposal_id: i64, by: Option<i64>) -> Result<Reply, HandlerError> {
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
        let Some(p) = self.store.proposal(proposal_id).await? else {
            return Ok(Reply::Decision(Decision::NotFound { proposal_id }));
        };
        let outcome = {
            let _book = self.book.lock().await;
            self.execute_approved(&p).await
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
            Outcome::Rejected | Outcome::Expired => {}
        }
        Ok(Reply::Decision(Decision::Decided {
            proposal_id,
            outcome,
        }))
    }

    /// Risk check and placement of an approved proposal; (final status, stored detail, outcome).
    async fn execute_approved(
        &self,
        p: &Proposal,
    ) -> Result<(ProposalStatus, String, Outcome), HandlerError> {
        let ctx = self.risk_context(Some(&p.key), Some(p.expires_at)).await?;
        let req = OrderRequest {
            key: p.key.clone(),
            side: p.side,
            quantity: p.quantity,
            order_type: OrderType::Market,
            product: p.product,
            tag: proposal_tag(p.id),
            purpose: OrderPurpose::Entry { proposal_id: p.id },
            reference_price: p.entry,
        };
        let approved = match self.risk.check(req, &ctx) {
            Ok(a) => a,
            Err(refused) => {
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
        let placement = self.oms.place(approved, brackets).await?;
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
                format!("order {order_id} {} {} at {price}", p.side, p.quantity),
                Outcome::Executed {
                    side: p.side,
                    quantity: order.request.quantity,
                    fill_price: price,
                    mode: mode.clone(),
                    order_id,
                },
            )
        };
        Ok(match placement {
            Placement::Filled { order, fill, .. } => executed(&order, fill.price),
            Placement::Working { order } => executed(&order, order.request.reference_price),
            Placement::AlreadyPlaced { order } => match &order.state {
                OrderState::Filled { avg_price, .. } => executed(&order, *avg_price),
                OrderState::Open { .. } => executed(&order, order.request.reference_price),
                other => {
                    let reason = format!("the order for this proposal is {}", other.name());
                    (
                        ProposalStatus::Failed,
                        reason.clone(),
                        Outcome::Failed { reason },
                    )
                }
            },
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
                Some("rejected by the operator"),
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
        let result = match self.scanner.scan(only, &open).await {
            Ok(r) => r,
            Err(e) => {
                let error = e.to_string();
                self.notify(Alert::ScanFailed {
                    key: only.cloned(),
                    error: error.clone(),
                })
                .await;
                return Err(HandlerError::Scan(error));
            }
        };
        for card in &result.proposals {
            match self.notifier.post_proposal(card).await {
                Ok(message_id) => {
                    self.store
                        .set_proposal_message(card.proposal.id, message_id)
                        .await?
                }
                Err(e) => tracing::error!(
                    proposal = card.proposal.id,
                    "could not post the proposal card: {e}"
                ),
            }
        }
        for (key, reason) in &result.exits {
            let report = {
                let _book = self.book.lock().await;
                self.oms.close_instrument(key, reason).await?
            };
            for e in &report.errors {
                self.notify(Alert::OrderFailed {
                    key: key.clone(),
                    error: e.clone(),
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
        Ok(Reply::Scan(result.summary))
    }

    async fn kill(&self, actor: Actor) -> Result<KillReport, HandlerError> {
        let who = match actor {
            Actor::Telegram { user_id } => format!("/kill by Telegram user {user_id}"),
            Actor::Scheduler => "kill by the scheduler".to_string(),
            Actor::Cli => "`mft kill` on the command line".to_string(),
        };
        let FlattenReport {
            cancelled,
            closed,
            errors,
        } = {
            let _book = self.book.lock().await;
            // Halt first: nothing new may open while we are closing.
            self.store.set_halt(&who, self.clock.now()).await?;
            self.oms.flatten("kill").await?
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
            errors,
        };
        self.store
            .log_trade_event(
                self.clock.now(),
                "kill",
                None,
                None,
                &format!(
                    "{who}: cancelled {}, closed {}, errors {}",
                    report.cancelled_orders,
                    report.closed.len(),
                    report.errors.len()
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
        for (position, last_price) in open.into_iter().zip(lasts) {
            let unrealized = last_price.map_or(Paise::ZERO, |l| position.unrealized(l));
            out.push(PositionView {
                position,
                last_price,
                unrealized,
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
            positions,
            pending: self.store.pending_proposals().await?,
            loss_used: ctx.day_loss(),
            loss_limit: self.settings.risk.max_daily_loss,
            orders_today: ctx.orders_today,
            orders_limit: self.settings.risk.max_orders_per_day,
            backtest: self.backtests.progress_text(),
        })
    }
}

/// The bot, the status page and the scheduler reach the handler through this trait; errors
/// become the text shown to the operator (they carry no secrets).
#[async_trait::async_trait]
impl CommandHandler for Handler {
    async fn handle(&self, req: Request) -> Result<Reply, CommandError> {
        Handler::handle(self, req)
            .await
            .map_err(|e| CommandError(e.to_string()))
    }
}

/// `mft kill`: halts, cancels open orders and squares off every position in the database at
/// `settings.database_url` (paper broker, alerts only logged), then closes the store.
pub async fn kill_from_cli(settings: Arc<Settings>) -> Result<KillReport, HandlerError> {
    let store = Store::connect(&settings.database_url).await?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let broker = Arc::new(PaperBroker::new(
        store.clone(),
        settings.clone(),
        clock.clone(),
    ));
    let handler = Handler::new(
        store.clone(),
        settings,
        clock,
        broker,
        Arc::new(LogNotifier),
        Arc::new(NoScanner),
    );
    let reply = handler
        .handle(Request {
            command: Command::Kill,
            actor: Actor::Cli,
        })
        .await;
    store.close().await;
    match reply? {
        Reply::Killed(report) => Ok(report),
        other => Err(HandlerError::Internal(format!(
            "unexpected reply to kill: {other:?}"
        ))),
    }
}
