//! Commands: the one way the bot, the status page, the CLI and the scheduler ask the system to act,
//! and the typed replies the handler gives back (the bot renders them; it never edits tables).

use super::InstrumentKey;
use serde::{Deserialize, Serialize};

/// Who asked. Telegram user ids for the bot; `Scheduler` and `Cli` for the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Actor {
    Telegram { user_id: i64 },
    Scheduler,
    Cli,
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
