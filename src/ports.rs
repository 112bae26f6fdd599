//! The handler's ports: the one command-handler trait that bot, web and jobs send Commands
//! through, the typed values it answers (Reply, Outcome, Alert, StatusReport, ...), the
//! outbound notifier (Telegram) and the scanner the agents implement.
//!
//! This module sits low in the layering (it imports only `domain` and `config`), so bot, web,
//! jobs, agents and store depend on it without depending on each other or on `app`.

use crate::domain::{DenyReason, InstrumentKey, Paise, Position, Proposal, Request, Side};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// How a decided proposal ended; the card's outcome line is rendered from this.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Outcome {
    Executed {
        side: Side,
        quantity: i64,
        fill_price: Paise,
        /// "paper" or "live"
        mode: String,
        order_id: String,
    },
    Vetoed(DenyReason),
    Rejected,
    Expired,
    Failed {
        reason: String,
    },
    /// Live: accepted by the broker and working (a LIMIT away from the market); the card is
    /// edited again when it fills.
    Working {
        side: Side,
        quantity: i64,
        price: Paise,
        order_id: String,
    },
    /// Live: sent, but the broker's answer was lost; its tag is being looked up.
    Checking {
        tag: String,
    },
    /// Live: the broker rejected the order (Kite's status message).
    BrokerRejected {
        message: String,
    },
}

/// Something the operator should hear about without asking.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Alert {
    Started {
        mode: String,
        watchlist: usize,
        halted: bool,
    },
    Stopping,
    ScanFailed {
        key: Option<InstrumentKey>,
        error: String,
    },
    Vetoed {
        proposal_id: i64,
        key: InstrumentKey,
        reason: DenyReason,
    },
    DailyLossHalt {
        loss: Paise,
        limit: Paise,
    },
    KillDone(KillReport),
    OrderFailed {
        key: InstrumentKey,
        error: String,
    },
    /// Live: an order placed, filled, cancelled or rejected at the broker, or a difference
    /// the reconciliation corrected (every live order and fill is also an alert).
    Broker {
        key: Option<InstrumentKey>,
        text: String,
    },
    /// A paper bracket exit or square-off closed a position.
    PositionClosed {
        key: InstrumentKey,
        reason: String,
        quantity: i64,
        price: Paise,
        pnl: Paise,
    },
    /// The LLM analyst failed this many analyses in a row (sent once per streak).
    AnalystFailing {
        failures: u32,
        error: String,
    },
    /// The LLM's daily budget is spent (sent once per IST day); `fallback` says what runs now.
    LlmBudgetSpent {
        detail: String,
        fallback: String,
    },
    /// The daily Kite login link (the message carries a "Log in to Kite" URL button).
    LoginLink {
        url: String,
    },
    /// A Kite login completed.
    SessionActive {
        user_id: String,
        expires_at: DateTime<Utc>,
        /// The session's expiry as the operator reads it ("06:00 IST tomorrow").
        until: String,
    },
    /// The Kite session ended (06:00 IST or TokenException); `login_url` is a fresh login link.
    SessionExpired {
        reason: String,
        login_url: Option<String>,
    },
    /// A /backtest finished: the summary, with the equity chart when it was drawn.
    BacktestDone {
        key: InstrumentKey,
        summary: String,
        chart_png: Option<std::path::PathBuf>,
    },
    /// A /backtest failed (bad input, no data, interrupted).
    BacktestFailed {
        key: InstrumentKey,
        error: String,
    },
}

/// What the Telegram side needs to post a proposal card.
#[derive(Debug, Clone, PartialEq)]
pub struct ProposalCard {
    pub proposal: Proposal,
    /// PNG of the proposal chart; None when rendering failed (the card is then sent as text).
    pub chart_png: Option<PathBuf>,
    /// Capital the risk % is computed against.
    pub capital: Paise,
}

/// Outbound messages. Implemented by the Telegram bot; tests use a recording fake.
#[async_trait::async_trait]
pub trait Notifier: Send + Sync {
    /// Posts a new card (chart photo, caption, Approve / Reject). Returns the message id.
    async fn post_proposal(&self, card: &ProposalCard) -> Result<i64, NotifyError>;
    /// Edits a card after its outcome: buttons removed, an outcome line added.
    async fn update_proposal(
        &self,
        proposal: &Proposal,
        message_id: i64,
        outcome: &Outcome,
    ) -> Result<(), NotifyError>;
    async fn alert(&self, alert: &Alert) -> Result<(), NotifyError>;
}

#[derive(Debug, thiserror::Error)]
#[error("could not notify the operator: {0}")]
pub struct NotifyError(pub String);

/// Result of a decision command (Approve / Reject).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Decision {
    /// This command decided it; the card has been (or is being) edited.
    Decided {
        proposal_id: i64,
        outcome: Outcome,
    },
    /// Someone (or something: the expiry sweep) decided it before.
    AlreadyDecided {
        proposal_id: i64,
        status: crate::domain::ProposalStatus,
    },
    NotFound {
        proposal_id: i64,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PositionView {
    pub position: Position,
    pub last_price: Option<Paise>,
    pub unrealized: Paise,
    /// Age of `last_price` in seconds (a live tick, or the stored candle's close) when the
    /// report was made; None when unknown.
    #[serde(default)]
    pub price_age_seconds: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    pub mode: String,
    pub halted: bool,
    pub paused: bool,
    pub last_scan: Option<ScanSummary>,
    pub next_scan: Option<DateTime<Utc>>,
    pub realized_today: Paise,
    /// Unrealized P&L of the open positions from their average prices (lifetime).
    pub unrealized: Paise,
    /// Today's P&L: realized today plus the change in unrealized P&L since the previous
    /// session's close (what the daily-loss limit counts; see `risk::day`).
    pub day_pnl: Paise,
    pub positions: Vec<PositionView>,
    pub pending: Vec<Proposal>,
    /// Today's loss counted against the limit (0 when in profit).
    pub loss_used: Paise,
    pub loss_limit: Paise,
    pub orders_today: u32,
    pub orders_limit: u32,
    /// The Kite session as the operator reads it ("active until 06:00 IST tomorrow (user
    /// AB1234)", "expired: tap Log in"); None when Kite is not configured.
    #[serde(default)]
    pub kite: Option<String>,
    /// The running /backtest, e.g. "NSE:INFY day 2025-11-30..2026-11-30: 45% (560 of 1,240 bars)".
    pub backtest: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScanSummary {
    pub id: i64,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub instruments: u32,
    pub proposals: u32,
    pub errors: u32,
    /// Instruments not analysed because their latest closed candle is missing, as
    /// "stale data for NSE:X (last candle 10:15, expected 10:30)".
    #[serde(default)]
    pub stale: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClosedPosition {
    pub key: InstrumentKey,
    pub quantity: i64,
    pub price: Paise,
    pub pnl: Paise,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KillReport {
    pub cancelled_orders: u32,
    pub closed: Vec<ClosedPosition>,
    pub realized_today: Paise,
    /// What the kill could not do (an order it could not cancel, a position it could not close).
    pub errors: Vec<KillProblem>,
}

/// One thing a kill could not do, as its report carries it to the chat, the page and `mft kill`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KillProblem {
    /// The operator's text: what failed and what to do.
    pub text: String,
    /// Running the kill again may finish it without anyone changing anything (the broker or the
    /// database was unavailable for the moment).
    pub recoverable: bool,
}

impl std::fmt::Display for KillProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// The handler's answer to a command; the bot renders it as text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Reply {
    Decision(Decision),
    Scan(ScanSummary),
    Status(StatusReport),
    Positions(Vec<PositionView>),
    Proposals(Vec<Proposal>),
    Risk(crate::config::RiskSettings),
    Paused,
    /// `was_halted`: the resume also lifted a halt.
    Resumed {
        was_halted: bool,
    },
    Killed(KillReport),
    /// A /backtest started in the background.
    BacktestStarted {
        key: InstrumentKey,
        interval: crate::domain::Interval,
        from: chrono::NaiveDate,
        to: chrono::NaiveDate,
    },
    /// A /backtest is already running (at most one at a time): what it is doing.
    BacktestBusy {
        running: String,
    },
    /// Maintenance commands (expiry sweep, square-off, exit checks): how many things changed.
    Done {
        changed: u32,
    },
    /// `/why N`: the proposal and the trace of the analysis that produced it.
    Why {
        proposal_id: i64,
        proposal: Option<Box<Proposal>>,
        trace: Option<Box<crate::domain::AnalysisTrace>>,
    },
    /// A fresh Kite login link (shown with a "Log in to Kite" URL button).
    LoginLink {
        url: String,
    },
    /// A Kite login completed and the session is stored.
    LoggedIn {
        user_id: String,
        user_name: String,
        expires_at: DateTime<Utc>,
        until: String,
    },
    /// A login redirect or pasted token that was refused before any call to Kite (bad, used or
    /// expired state; status not success; malformed token). Nothing was stored.
    LoginRefused {
        reason: String,
    },
    /// Nothing done, and why (e.g. a scheduled job on an NSE holiday).
    Skipped {
        reason: String,
    },
    Preflight(PreflightReport),
    KillTest(KillTestReport),
}

/// One pre-flight check's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CheckLevel {
    Ok,
    Warning,
    Failed,
}

impl CheckLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckLevel::Ok => "ok",
            CheckLevel::Warning => "warning",
            CheckLevel::Failed => "failed",
        }
    }
}

/// One line of the pre-flight checklist.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreflightLine {
    pub level: CheckLevel,
    pub check: String,
    pub detail: String,
    /// What to do, for warnings and failures.
    pub fix: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreflightReport {
    pub lines: Vec<PreflightLine>,
}

impl PreflightReport {
    pub fn failed(&self) -> bool {
        self.lines.iter().any(|l| l.level == CheckLevel::Failed)
    }
}

/// What `/kill test` found: what a real kill would cancel and close. Nothing was changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KillTestReport {
    /// Open orders (tag, instrument) that would be cancelled.
    pub would_cancel: Vec<String>,
    /// Positions that would be squared off at their last price.
    pub would_close: Vec<ClosedPosition>,
    pub at: DateTime<Utc>,
}

/// The one command handler, as the bot, the status page and the scheduler see it. The app
/// implements it for `app::handler::Handler`; tests use a recording fake.
#[async_trait::async_trait]
pub trait CommandHandler: Send + Sync {
    async fn handle(&self, req: Request) -> Result<Reply, CommandError>;

    /// [`handle`](Self::handle), firing `claimed` as soon as an Approve has won its proposal
    /// (before the risk check and the broker), so a caller that must answer at once (a
    /// Telegram button) can; the final reply still comes back from this call. `claimed` is
    /// dropped unfired when the command ends without winning. The default never fires it: the
    /// caller then answers with the final reply.
    async fn handle_claimed(&self, req: Request, claimed: Claimed) -> Result<Reply, CommandError> {
        drop(claimed);
        self.handle(req).await
    }
}

/// The "this Approve won its proposal" signal of [`CommandHandler::handle_claimed`].
pub type Claimed = tokio::sync::oneshot::Sender<()>;

/// A command that could not be carried out, classified for the caller (the bot, the status
/// page, the scheduler). The text is shown to the operator as it is, so it says what failed and
/// what to do, and never carries secrets.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CommandError {
    /// Not allowed now (HALTED, outside the trading window, ...): nothing was done.
    #[error("{0}")]
    Refused(DenyReason),
    /// The command cannot work as given (bad input, a command this process cannot run, a
    /// setting that forbids it): change the request or the settings; retrying alone does not help.
    #[error("{0}")]
    Invalid(String),
    /// Something failed for the moment (the database busy or unreachable, the broker or Kite
    /// unavailable): the same command may succeed when retried.
    #[error("{0}")]
    Unavailable(String),
    /// Needs the operator before anything is retried (an order whose fate is unknown, a corrupt
    /// or inconsistent book, a bug): the text says what to check.
    #[error("{0}")]
    Failed(String),
}

impl CommandError {
    /// Whether retrying the same command may succeed without anyone changing anything.
    pub fn is_recoverable(&self) -> bool {
        matches!(self, CommandError::Unavailable(_))
    }
}

/// What a scan produced, as the handler needs it (the agents' `MetaAgent` implements
/// [`Scanner`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ScanResult {
    pub summary: ScanSummary,
    /// New pending proposals to post as cards.
    pub proposals: Vec<ProposalCard>,
    /// Exit signals for open positions: (instrument, reason).
    pub exits: Vec<(InstrumentKey, String)>,
    /// Instruments that failed: (instrument, error).
    pub errors: Vec<(InstrumentKey, String)>,
}

/// Why a whole scan failed. One instrument's failure is not a `ScanError`: it is reported in
/// [`ScanResult::errors`] and the others are still scanned.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// Every instrument's latest candle is missing: nothing was analysed. The next scan after
    /// the data arrives works.
    #[error("nothing to scan: every instrument's data is stale")]
    AllStale,
    /// This process does not scan (`mft kill`, the CLI).
    #[error("scanning is not available from this command; use `mft run`")]
    NotAvailable,
    /// The scanner itself failed (the database, the charts folder, the strategy settings, the
    /// analyst); `recoverable` says whether the next scan may work without the operator
    /// changing anything.
    #[error("{message}")]
    Failed { message: String, recoverable: bool },
}

impl ScanError {
    /// Whether the next scan may succeed without anyone changing anything.
    pub fn is_recoverable(&self) -> bool {
        match self {
            ScanError::AllStale => true,
            ScanError::NotAvailable => false,
            ScanError::Failed { recoverable, .. } => *recoverable,
        }
    }
}

/// Runs the analysis over the watchlist (or one instrument). Implemented by the meta-agent.
#[async_trait::async_trait]
pub trait Scanner: Send + Sync {
    async fn scan(
        &self,
        only: Option<&InstrumentKey>,
        open_positions: &[InstrumentKey],
    ) -> Result<ScanResult, ScanError>;

    /// Scans exactly `keys` (the handler leaves out instruments with stale data). The default
    /// scans them one by one and merges the results; the meta-agent does it in one run.
    async fn scan_keys(
        &self,
        keys: &[InstrumentKey],
        open_positions: &[InstrumentKey],
    ) -> Result<ScanResult, ScanError> {
        let mut merged: Option<ScanResult> = None;
        for k in keys {
            let r = self.scan(Some(k), open_positions).await?;
            merged = Some(match merged {
                None => r,
                Some(mut m) => {
                    m.summary.instruments += r.summary.instruments;
                    m.summary.proposals += r.summary.proposals;
                    m.summary.errors += r.summary.errors;
                    m.summary.finished_at = r.summary.finished_at;
                    m.proposals.extend(r.proposals);
                    m.exits.extend(r.exits);
                    m.errors.extend(r.errors);
                    m
                }
            });
        }
        match merged {
            Some(m) => Ok(m),
            None => Err(ScanError::AllStale),
        }
    }
}
