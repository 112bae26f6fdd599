//! Commands: the one way the bot, the status page, the CLI and the scheduler ask the system to act,
//! and the typed replies the handler gives back (the bot renders them; it never edits tables).

use super::InstrumentKey;
use serde::{Deserialize, Serialize};

/// Who asked. Telegram user ids for the bot; `Scheduler` and `Cli` for the others; `Web` for
/// the dashboard (an operator logged in with STATUS_TOKEN).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Actor {
    Telegram { user_id: i64 },
    Scheduler,
    Cli,
    Web,
}

impl Actor {
    /// How the action audit names the actor: `telegram:<user id>`, `scheduler`, `cli`, `web`.
    pub fn name(&self) -> String {
        match self {
            Actor::Telegram { user_id } => format!("telegram:{user_id}"),
            Actor::Scheduler => "scheduler".into(),
            Actor::Cli => "cli".into(),
            Actor::Web => "web".into(),
        }
    }
}

/// Everything the system can be asked to do. One handler (`app::Handler`) executes these.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    /// Scan the watchlist now (or one instrument).
    Scan {
        only: Option<InstrumentKey>,
    },
    /// Approve a pending proposal: compare-and-set, risk check, then the OMS.
    Approve {
        proposal_id: i64,
    },
    /// Reject a pending proposal.
    Reject {
        proposal_id: i64,
    },
    /// Expire pending proposals past their expiry time.
    ExpirySweep,
    /// Square off intraday (MIS) positions at the end of the day.
    SquareOff,
    /// Check paper bracket exits (stop/target) against the latest stored candles.
    CheckExits,
    /// Stop making new proposals (exits still run).
    Pause,
    /// Start making proposals again; also lifts a halt.
    Resume,
    /// Cancel open orders, square off everything, persist the halt.
    Kill,
    Status,
    Positions,
    Proposals,
    Risk,
    /// How proposal N came about: its analysis trace (LLM) or the rules' rationale.
    Why {
        proposal_id: i64,
    },
    /// Without input: a fresh Kite login link. With the redirected URL or a bare request_token
    /// pasted by the operator: complete the login.
    Login {
        input: Option<String>,
    },
    /// Kite's redirect to GET /kite/callback, with its query parameters as received.
    KiteCallback {
        request_token: Option<String>,
        state: Option<String>,
        status: Option<String>,
        action: Option<String>,
    },
    /// Download Kite's instruments dump into the store.
    RefreshInstruments,
    /// The pre-flight checklist.
    Preflight,
    /// A dry run of /kill: reports what it would cancel and close, changes nothing.
    KillTest,
    /// An order update pushed by the broker (postback, ticker order message): merged into the
    /// order and the position idempotently.
    OrderUpdate(Box<super::BrokerOrderUpdate>),
    /// Ask the broker about every order still open (the fallback when pushes are lost).
    PollOrders,
    /// Compare the store's open orders and positions with the broker's and correct the store.
    Reconcile,
    /// Backtest one instrument over the last `span` ("30d", "6m", "1y") in the background;
    /// the equity chart and summary arrive as an alert. One at a time.
    Backtest {
        key: InstrumentKey,
        span: String,
    },
}

/// A command with who sent it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    pub command: Command,
    pub actor: Actor,
}
