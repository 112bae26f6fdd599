//! The chat commands as one typed enum: its doc comments are the /help text and what
//! setMyCommands registers, so the list the operator sees cannot drift from what is parsed.

use teloxide::utils::command::BotCommands;

/// MFT-1 commands:
#[derive(BotCommands, Debug, Clone, PartialEq, Eq)]
#[command(rename_rule = "lowercase")]
pub enum BotCommand {
    /// Introduce the bot and list the commands.
    Start,
    /// Show this list of commands.
    Help,
    /// Mode, halt, last and next scan, today's P&L, positions, pending proposals, limits used.
    Status,
    /// Open positions with their P&L.
    Positions,
    /// Pending and recent proposals.
    Proposals,
    /// Scan now: the whole watchlist, or one instrument as EXCHANGE:SYMBOL (e.g. /scan NSE:INFY).
    Scan(String),
    /// No new entries: no new proposals, and approvals are vetoed (PAUSED). Exits, /kill and expiry still run.
    Pause,
    /// Start making proposals again and lift a halt (asks to confirm).
    Resume,
    /// Show the risk limits.
    Risk,
    /// Cancel open orders, square off every position and halt (asks to confirm); /kill test is a dry run that changes nothing.
    Kill(String),
    /// Kite login button for today's session; /login <redirected URL or request_token> completes a login by hand.
    Login(String),
    /// Pre-flight checklist: Kite session, margin, risk limits, paper days, stuck orders, data, kill drill.
    Preflight,
    /// How proposal N came about: the analysis trace (e.g. /why 12).
    Why(String),
    /// Backtest one instrument over a span in the background, e.g. /backtest NSE:INFY 1y (30d, 6m, 1y).
    Backtest(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_command() {
        let cases = [
            ("/start", BotCommand::Start),
            ("/help", BotCommand::Help),
            ("/status", BotCommand::Status),
            ("/positions", BotCommand::Positions),
            ("/proposals", BotCommand::Proposals),
            ("/scan", BotCommand::Scan(String::new())),
            ("/scan NSE:INFY", BotCommand::Scan("NSE:INFY".into())),
            ("/pause", BotCommand::Pause),
            ("/resume", BotCommand::Resume),
            ("/risk", BotCommand::Risk),
            ("/kill", BotCommand::Kill(String::new())),
            ("/kill test", BotCommand::Kill("test".into())),
            ("/login", BotCommand::Login(String::new())),
            ("/login abc123", BotCommand::Login("abc123".into())),
            ("/preflight", BotCommand::Preflight),
            ("/status@mft_bot", BotCommand::Status),
        ];
        for (text, want) in cases {
            assert_eq!(
                BotCommand::parse(text, "mft_bot").ok(),
                Some(want),
                "{text}"
            );
        }
        assert!(BotCommand::parse("/nope", "mft_bot").is_err());
        assert!(BotCommand::parse("/status@other_bot", "mft_bot").is_err());
    }

    #[test]
    fn every_command_is_registered_with_a_description() {
        let cmds = BotCommand::bot_commands();
        let names: Vec<&str> = cmds.iter().map(|c| c.command.as_str()).collect();
        for want in [
            "start",
            "help",
            "status",
            "positions",
            "proposals",
            "scan",
            "pause",
            "resume",
            "risk",
            "kill",
            "login",
            "preflight",
        ] {
            assert!(
                names.iter().any(|n| n.trim_start_matches('/') == want),
                "{want} missing from {names:?}"
            );
        }
        assert!(cmds.iter().all(|c| !c.description.is_empty()));
    }

    #[test]
    fn help_lists_every_command() {
        let h = crate::texts::help(&BotCommand::descriptions().to_string());
        for c in [
            "/start",
            "/help",
            "/status",
            "/positions",
            "/proposals",
            "/scan",
            "/pause",
            "/resume",
            "/risk",
            "/kill",
        ] {
            assert!(h.contains(c), "{c} missing from {h}");
        }
    }
}
