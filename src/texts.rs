//! Every operator-facing text (Telegram messages, card captions, alerts, page snippets), in one
//! place: Telegram HTML (all dynamic values escaped), money via
//! `Paise`'s Display (₹1,23,456.50), times in IST. Lines the operator (or a checker) scans for a
//! keyword — Executed, Vetoed, HALTED, ... — start with that word, not with a tag.

use crate::clock::IST;
use crate::config::RiskSettings;
use crate::domain::{DenyReason, Paise, Proposal, ProposalStatus};
use crate::ports::{
    Alert, Decision, KillReport, Outcome, PositionView, ProposalCard, Reply, ScanSummary,
    StatusReport,
};
use chrono::{DateTime, Utc};
use std::fmt::Write as _;

/// Telegram's caption limit (characters).
pub const CAPTION_LIMIT: usize = 1024;
/// Telegram's message text limit (characters).
pub const MESSAGE_LIMIT: usize = 4096;
/// Telegram's callback answer limit (characters).
pub const ANSWER_LIMIT: usize = 200;
/// Longest list shown in one message; the rest is counted.
const MAX_LIST: usize = 15;

pub const APPROVE: &str = "Approve";
pub const REJECT: &str = "Reject";
pub const CONFIRM_KILL: &str = "Confirm kill";
pub const CONFIRM_RESUME: &str = "Confirm resume";
pub const CANCEL: &str = "Cancel";

/// Escapes text for Telegram's HTML parse mode.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            _ => out.push(c),
        }
    }
    out
}

// Live orders: the proposal's stored detail, the operator's alerts about orders at the broker,
// the protective pair, and reconciliation. Plain text: `alert` escapes it.

/// The alert when the broker rejected an approved proposal's order.
pub fn broker_rejected(message: &str) -> String {
    format!("Rejected by broker: {message}")
}

/// The stored detail of a proposal whose order the broker rejected.
pub fn rejected_by_broker_detail(reason: &str) -> String {
    format!("rejected by broker: {reason}")
}

/// The alert when the broker rejected a live order (any source of broker news).
pub fn order_rejected_by_broker(reason: &str, tag: &str) -> String {
    format!("Rejected by broker: {reason} (order {tag})")
}

/// The alert when the broker's answer to a placement was lost.
pub fn order_answer_lost(tag: &str) -> String {
    format!("order {tag}: the broker's answer was lost; checking by its tag (never sent twice)")
}

/// The stored detail of a proposal whose order was sent but the broker's answer lost.
pub fn order_sent_answer_lost(tag: &str) -> String {
    format!("order {tag} sent; the broker's answer was lost: checking by its tag")
}

/// The stored detail of a proposal whose earlier order is still being looked up by its tag.
pub fn order_being_checked(tag: &str) -> String {
    format!("order {tag} is being checked at the broker")
}

/// The stored detail of a proposal whose live order is working: "order 2401 BUY 10 working at
/// ₹1,500.00".
pub fn order_working_detail(
    order_id: &str,
    side: crate::domain::Side,
    quantity: i64,
    price: Paise,
) -> String {
    format!("order {order_id} {side} {quantity} working at {price}")
}

/// The alert when Kite acknowledged a live order.
pub fn order_working_at_kite(order: &crate::domain::Order) -> String {
    let r = &order.request;
    format!(
        "order {} {} {} is working at Kite",
        r.tag, r.side, r.quantity
    )
}

/// The alert of a live fill; `position` is the signed quantity held after it.
pub fn live_fill(
    order: &crate::domain::Order,
    fill: &crate::domain::Fill,
    position: i64,
) -> String {
    format!(
        "fill: {} {} @ {} (order {}, {} of {} filled); position {position}",
        fill.side,
        fill.quantity,
        fill.price,
        order.request.tag,
        order.filled_quantity,
        order.request.quantity
    )
}

/// The alert when a live order was cancelled at the broker.
pub fn order_cancelled(order: &crate::domain::Order) -> String {
    format!(
        "order {} cancelled ({} of {} filled)",
        order.request.tag, order.filled_quantity, order.request.quantity
    )
}

/// The alert when a protective stop or target was placed for a fill.
pub fn protective_placed(order: &crate::domain::Order) -> String {
    let r = &order.request;
    format!(
        "protective order {} {} {} placed ({})",
        r.tag,
        r.side,
        r.quantity,
        order.state.name()
    )
}

/// The alert when a protective order was made smaller because its pair filled in part.
pub fn protective_resized(order: &crate::domain::Order) -> String {
    let r = &order.request;
    format!(
        "protective order {} resized to {} still to fill: its pair filled in part",
        r.tag,
        r.quantity - order.filled_quantity
    )
}

/// The alert when a protective order was cancelled because its stop / target pair filled.
pub fn pair_filled_cancelled(tag: &str) -> String {
    format!("order {tag} cancelled: its pair filled")
}

/// The alert when a protective follow-up failed: the position may be unprotected.
pub fn protection_problem(error: &str) -> String {
    format!("PROTECTION PROBLEM: {error}; check the position on Kite")
}

/// The alert of one reconciliation difference, already corrected in the store.
pub fn reconciliation_mismatch(mismatch: &str) -> String {
    format!("reconciliation: {mismatch}; the store now follows Kite (audited)")
}

/// The alert when a reconciliation could not correct a difference.
pub fn reconciliation_failed(error: &str) -> String {
    format!("reconciliation failed: {error}")
}

/// A reconciliation difference: an order Kite reports final or filled differently.
pub fn reconcile_order_differs(
    order: &crate::domain::Order,
    kite_status: &str,
    kite_filled: i64,
) -> String {
    format!(
        "order {} on {}: ours {}, Kite {kite_status} {kite_filled}/{} filled",
        order.request.tag,
        order.request.key,
        order.state.name(),
        order.request.quantity
    )
}

/// A reconciliation difference: an order in flight here that Kite does not know (yet).
pub fn reconcile_order_unknown(order: &crate::domain::Order) -> String {
    format!(
        "order {} on {} is {} here and unknown to Kite",
        order.request.tag,
        order.request.key,
        order.state.name()
    )
}

/// A reconciliation difference: an order open here that Kite's order book does not have.
pub fn reconcile_order_missing(order: &crate::domain::Order) -> String {
    format!(
        "order {} on {} is open here but not in Kite's order book",
        order.request.tag, order.request.key
    )
}

/// A reconciliation difference: a position whose quantity differs from Kite's.
pub fn reconcile_position_differs(
    key: &crate::domain::InstrumentKey,
    product: crate::domain::Product,
    ours: i64,
    kite: i64,
) -> String {
    format!(
        "position {key} {}: ours {ours}, Kite {kite}",
        product.as_str()
    )
}

/// `14:25 IST`
pub fn ist_time(ts: DateTime<Utc>) -> String {
    format!("{} IST", ts.with_timezone(&IST).format("%H:%M"))
}

/// `25 Nov 14:25 IST`
pub fn ist_datetime(ts: DateTime<Utc>) -> String {
    format!("{} IST", ts.with_timezone(&IST).format("%d %b %H:%M"))
}

/// Cuts `s` to at most `max` characters, ending with an ellipsis when cut.
pub fn truncate_chars(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

fn signed(p: Paise) -> String {
    if p.0 > 0 {
        format!("+{p}")
    } else {
        p.to_string()
    }
}

/// `/help`: `commands` is the bot's command list (its doc comments).
pub fn help(commands: &str) -> String {
    format!(
        "{}\n\nProposal cards carry Approve / Reject buttons; /kill and /resume ask to confirm.",
        esc(commands)
    )
}

pub fn start(commands: &str) -> String {
    format!(
        "MFT-1 trading co-pilot. I post trade proposals here with a chart and Approve / Reject \
         buttons; nothing is ordered without your tap and the risk checks.\n\n{}",
        help(commands)
    )
}

pub fn unknown_command(text: &str) -> String {
    let cmd = text.split_whitespace().next().unwrap_or(text);
    format!(
        "Unknown command {}. Send /help for the list of commands.",
        esc(&truncate_chars(cmd, 40))
    )
}

pub fn bad_argument(command: &str, problem: &str) -> String {
    format!(
        "Bad argument for /{}: {}. Send /help for the usage.",
        esc(command),
        esc(problem)
    )
}

pub fn not_a_command() -> String {
    "I only understand commands. Send /help for the list.".into()
}

pub fn not_authorized() -> String {
    "Not authorized.".into()
}

pub fn command_failed(what: &str, error: &str) -> String {
    format!(
        "Failed: {} could not be done: {}",
        esc(what),
        esc(&truncate_chars(error, 500))
    )
}

pub fn kill_confirm() -> String {
    "Kill: cancel all open orders, square off every position at the last price and HALT new \
     entries until /resume?\nTap Confirm kill within 2 minutes."
        .into()
}

pub fn resume_confirm() -> String {
    "Resume: allow new proposals again (and lift a halt, if any)?\nTap Confirm resume within 2 minutes."
        .into()
}

pub fn confirm_expired() -> String {
    "This confirmation has expired or was already used: send the command again.".into()
}

pub fn kill_confirmed() -> String {
    "Kill confirmed: closing everything…".into()
}

pub fn resume_confirmed() -> String {
    "Resume confirmed.".into()
}

pub fn cancelled() -> String {
    "Cancelled: nothing was changed.".into()
}

fn list_more(out: &mut String, shown: usize, total: usize) {
    if total > shown {
        let _ = writeln!(out, "… and {} more", total - shown);
    }
}

fn position_line(v: &PositionView) -> String {
    let p = &v.position;
    let dir = if p.quantity >= 0 { "long" } else { "short" };
    let last = match (v.last_price, v.price_age_seconds) {
        (Some(l), Some(a)) => format!(", last {l} ({} old)", age(a)),
        (Some(l), None) => format!(", last {l}"),
        _ => String::new(),
    };
    format!(
        "• {} {} {} ({}) @ {}{}, unrealized {}",
        esc(&p.key.to_string()),
        dir,
        p.quantity.abs(),
        p.product.as_str(),
        p.avg_price,
        last,
        signed(v.unrealized)
    )
}

fn proposal_line(p: &Proposal) -> String {
    let when = if p.status == ProposalStatus::Pending {
        format!("expires {}", ist_time(p.expires_at))
    } else {
        format!("{} {}", p.status.as_str(), ist_datetime(p.created_at))
    };
    format!(
        "• #{} {} {} {} @ {}, stop {}, target {} ({})",
        p.id,
        p.side,
        p.quantity,
        esc(&p.key.to_string()),
        p.entry,
        p.stop,
        p.target,
        when
    )
}

fn scan_line(s: &ScanSummary) -> String {
    let state = match s.finished_at {
        Some(_) => "",
        None => " (running)",
    };
    format!(
        "{}{}: {} instruments, {} proposals, {} errors",
        ist_datetime(s.started_at),
        state,
        s.instruments,
        s.proposals,
        s.errors
    )
}

pub fn status(s: &StatusReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "<b>MFT-1 status</b>");
    let _ = writeln!(out, "Mode: {}", esc(&s.mode));
    if let Some(k) = &s.kite {
        let _ = writeln!(out, "Kite: {}", esc(k));
    }
    if s.halted {
        let _ = writeln!(out, "HALTED: new entries are blocked until /resume");
    } else if s.paused {
        let _ = writeln!(out, "Paused: no new proposals until /resume");
    } else {
        let _ = writeln!(out, "Trading: active");
    }
    let _ = writeln!(
        out,
        "Last scan: {}",
        s.last_scan
            .as_ref()
            .map(scan_line)
            .unwrap_or_else(|| "none yet".into())
    );
    let _ = writeln!(
        out,
        "Next scan: {}",
        s.next_scan
            .map(ist_datetime)
            .unwrap_or_else(|| "not scheduled".into())
    );
    let _ = writeln!(
        out,
        "Today's P&amp;L: {} (realized {}, open positions since yesterday's close {})",
        signed(s.day_pnl),
        signed(s.realized_today),
        signed(s.day_pnl - s.realized_today)
    );
    let _ = writeln!(out, "Daily loss used: {} of {}", s.loss_used, s.loss_limit);
    let _ = writeln!(
        out,
        "Orders today: {} of {}",
        s.orders_today, s.orders_limit
    );
    if let Some(b) = &s.backtest {
        let _ = writeln!(out, "Backtest running: {}", esc(b));
    }
    let _ = writeln!(out, "\nOpen positions: {}", s.positions.len());
    for v in s.positions.iter().take(MAX_LIST) {
        let _ = writeln!(out, "{}", position_line(v));
    }
    list_more(&mut out, MAX_LIST, s.positions.len());
    let _ = writeln!(out, "\nPending proposals: {}", s.pending.len());
    for p in s.pending.iter().take(MAX_LIST) {
        let _ = writeln!(out, "{}", proposal_line(p));
    }
    list_more(&mut out, MAX_LIST, s.pending.len());
    out
}

pub fn positions(list: &[PositionView]) -> String {
    if list.is_empty() {
        return "No open positions.".into();
    }
    let mut out = format!("<b>Open positions</b>: {}\n", list.len());
    for v in list.iter().take(MAX_LIST) {
        let _ = writeln!(out, "{}", position_line(v));
    }
    list_more(&mut out, MAX_LIST, list.len());
    let total = list.iter().fold(Paise::ZERO, |a, v| a + v.unrealized);
    let _ = writeln!(out, "Unrealized total: {}", signed(total));
    out
}

pub fn proposals(list: &[Proposal]) -> String {
    if list.is_empty() {
        return "No proposals.".into();
    }
    let mut out = format!("<b>Proposals</b>: {}\n", list.len());
    for p in list.iter().take(MAX_LIST) {
        let _ = writeln!(out, "{}", proposal_line(p));
    }
    list_more(&mut out, MAX_LIST, list.len());
    out
}

pub fn risk(r: &RiskSettings) -> String {
    let allowed = if r.allowed_instruments.is_empty() {
        "the watchlist".to_string()
    } else {
        r.allowed_instruments
            .iter()
            .map(|k| esc(&k.to_string()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "<b>Risk limits</b>\n\
         Trading window: {} IST, {}\n\
         Max price deviation: {:.2}%\n\
         Max position value: {}\n\
         Max open positions: {}\n\
         Max orders per day: {}\n\
         Max orders per minute: {}\n\
         Duplicate window: {}\n\
         Max daily loss: {}\n\
         Allowed instruments: {}",
        r.trading_window,
        r.trading_days,
        r.max_price_deviation_pct,
        r.max_position_value,
        r.max_open_positions,
        r.max_orders_per_day,
        r.max_orders_per_minute,
        if r.duplicate_window_seconds == 0 {
            "off".to_string()
        } else {
            format!("{}s", r.duplicate_window_seconds)
        },
        r.max_daily_loss,
        allowed
    )
}

/// What the operator can do about a refusal, per stable code.
pub fn deny_hint(r: &DenyReason) -> &'static str {
    match r {
        DenyReason::Halted => "send /resume when it is safe to trade again",
        DenyReason::Paused => "send /resume to allow entries",
        DenyReason::OutsideTradingWindow { .. } => {
            "wait for the window or change [risk] trading_window"
        }
        DenyReason::InstrumentNotAllowed { .. } => {
            "add it to [risk] allowed_instruments or the watchlist"
        }
        DenyReason::ProposalExpired { .. } => "wait for a fresh proposal",
        DenyReason::PriceDeviation { .. } => "the price moved away: wait for a fresh proposal",
        DenyReason::StalePrice { .. } => "check the Kite session and the ticker",
        DenyReason::MaxPositionValue { .. } => "reduce the size or raise [risk] max_position_value",
        DenyReason::MaxOpenPositions { .. } => "close a position first",
        DenyReason::MaxOrdersPerDay { .. } => "no more entries today",
        DenyReason::MaxDailyLoss { .. } => "no more entries today",
        DenyReason::InsufficientCapital { .. } => "free capital or margin first",
        DenyReason::DuplicateOrder { .. } => {
            "looks like a double order: check /orders before approving again"
        }
        DenyReason::OrderRate { .. } => "wait a minute; orders are coming unusually fast",
        DenyReason::CircuitLimit { .. } => {
            "the exchange would refuse it: wait for a fresh proposal"
        }
        DenyReason::OrderValueAnomaly { .. } => {
            "far larger than recent orders: check the sizing before approving a similar one"
        }
        DenyReason::ExitMismatch { .. } => {
            "the exit does not match the book: check /positions and the broker"
        }
    }
}

/// A refusal as the operator reads it: "CODE — what happened (what to do)".
pub fn deny_reason(r: &DenyReason) -> String {
    format!("{} — {} ({})", r.code(), r.explanation(), deny_hint(r))
}

pub fn scan(s: &ScanSummary) -> String {
    let mut out = format!("Scan done: {}", scan_line(s));
    for line in &s.stale {
        out.push('\n');
        out.push_str(&esc(line));
    }
    out
}

/// The label of the inline URL button that opens Kite's login page.
pub const LOG_IN_TO_KITE: &str = "Log in to Kite";

/// The page the browser shows after Kite's redirect: "Logged in to Kite as AB1234. You can close this tab."
pub fn logged_in_page(user_id: &str) -> String {
    format!("Logged in to Kite as {user_id}. You can close this tab.")
}

/// The message above the login button.
pub fn login_link() -> String {
    "Log in to Kite for today's session: tap the button (the link works once, for 15 minutes)."
        .into()
}

/// "Kite session active until 06:00 IST tomorrow (user AB1234)".
pub fn session_active(user_id: &str, until: &str) -> String {
    format!(
        "Kite session active until {} (user {})",
        esc(until),
        esc(user_id)
    )
}

/// The session expired: whatever needs Kite says this until the next login.
pub fn session_expired(reason: &str) -> String {
    format!(
        "Kite session expired: tap Log in\n({}; paper trading on stored data continues)",
        esc(reason)
    )
}

/// How the expiry reads: "06:00 IST tomorrow" / "06:00 IST today" / a date.
pub fn session_until(expires_at: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let e = expires_at.with_timezone(&IST);
    let today = now.with_timezone(&IST).date_naive();
    let day = if e.date_naive() == today {
        "today".to_string()
    } else if Some(e.date_naive()) == today.succ_opt() {
        "tomorrow".to_string()
    } else {
        e.format("%a %d %b").to_string()
    };
    format!("{} IST {day}", e.format("%H:%M"))
}

/// "stale data for NSE:X (last candle 10:15, expected 10:30)".
pub fn stale_data(key: &str, last: Option<DateTime<Utc>>, expected: DateTime<Utc>) -> String {
    let hm = |t: DateTime<Utc>| {
        let l = t.with_timezone(&IST);
        let e = expected.with_timezone(&IST);
        if l.date_naive() == e.date_naive() {
            l.format("%H:%M").to_string()
        } else {
            l.format("%Y-%m-%d %H:%M").to_string()
        }
    };
    format!(
        "stale data for {key} (last candle {}, expected {})",
        last.map(hm).unwrap_or_else(|| "none".into()),
        hm(expected)
    )
}

/// A price's age as the operator reads it: "12s", "5m", "3h", "2d".
pub fn age(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86_400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// The checklist, one line per check: `ok      Kite session: ...` / `failed  ...  -> fix`.
/// Plain text (the CLI prints it; the bot escapes it).
pub fn preflight(p: &crate::ports::PreflightReport) -> String {
    let mut out = String::from("Pre-flight checklist\n");
    for l in &p.lines {
        let _ = write!(out, "{:<8}{}: {}", l.level.as_str(), l.check, l.detail);
        if let Some(fix) = &l.fix {
            let _ = write!(out, " -> {fix}");
        }
        out.push('\n');
    }
    let failed = p
        .lines
        .iter()
        .filter(|l| l.level == crate::ports::CheckLevel::Failed)
        .count();
    let warned = p
        .lines
        .iter()
        .filter(|l| l.level == crate::ports::CheckLevel::Warning)
        .count();
    let _ = write!(
        out,
        "{failed} failed, {warned} warning(s), {} ok",
        p.lines.len() - failed - warned
    );
    out
}

/// `/kill test`: what a kill would do, changing nothing.
pub fn kill_test(k: &crate::ports::KillTestReport) -> String {
    let mut out = String::from("Kill test (dry run, nothing changed):\n");
    let _ = writeln!(out, "would cancel {} open order(s)", k.would_cancel.len());
    for o in k.would_cancel.iter().take(MAX_LIST) {
        let _ = writeln!(out, "  {}", esc(o));
    }
    let _ = writeln!(out, "would close {} position(s)", k.would_close.len());
    for c in k.would_close.iter().take(MAX_LIST) {
        let _ = writeln!(
            out,
            "  {} x{} at {} (P&amp;L {})",
            esc(&c.key.to_string()),
            c.quantity,
            c.price,
            signed(c.pnl)
        );
    }
    out.push_str("and halt trading until /resume. Recorded as the last kill drill.");
    out
}

pub fn kill_report(k: &KillReport) -> String {
    let mut out = String::from("Kill done: trading is HALTED until /resume.\n");
    let _ = writeln!(out, "Cancelled open orders: {}", k.cancelled_orders);
    if k.closed.is_empty() {
        let _ = writeln!(out, "Closed positions: none (already flat)");
    } else {
        let _ = writeln!(out, "Closed positions: {}", k.closed.len());
        for c in k.closed.iter().take(MAX_LIST) {
            let _ = writeln!(
                out,
                "• {} {} @ {}, P&amp;L {}",
                esc(&c.key.to_string()),
                c.quantity,
                c.price,
                signed(c.pnl)
            );
        }
        list_more(&mut out, MAX_LIST, k.closed.len());
    }
    let _ = writeln!(
        out,
        "Today's realized P&amp;L: {}",
        signed(k.realized_today)
    );
    if !k.errors.is_empty() {
        let _ = writeln!(out, "Errors ({}):", k.errors.len());
        for e in k.errors.iter().take(MAX_LIST) {
            let _ = writeln!(out, "• {}", esc(&truncate_chars(&e.text, 300)));
        }
        list_more(&mut out, MAX_LIST, k.errors.len());
    }
    out
}

/// The one-line outcome added to a card; it begins with Executed, Vetoed, Rejected, Expired or
/// Failed.
pub fn outcome_line(o: &Outcome) -> String {
    match o {
        Outcome::Executed {
            side,
            quantity,
            fill_price,
            mode,
            order_id,
        } => format!(
            "Executed: {side} {quantity} @ {fill_price} ({}, order {})",
            esc(mode),
            esc(order_id)
        ),
        Outcome::Vetoed(r) => format!("Vetoed: {}", esc(&deny_reason(r))),
        Outcome::Rejected => "Rejected by the operator; no order placed.".into(),
        Outcome::Expired => "Expired: not decided in time; no order placed.".into(),
        Outcome::Failed { reason } => {
            format!("Failed: {}", esc(&truncate_chars(reason, 300)))
        }
        Outcome::Working {
            side,
            quantity,
            price,
            order_id,
        } => format!(
            "Order placed: {side} {quantity} limit {price} (live, order {}), working at the broker",
            esc(order_id)
        ),
        Outcome::Checking { tag } => format!("{CHECKING_WITH_BROKER} (order {})", esc(tag)),
        Outcome::BrokerRejected { message } => {
            format!("Rejected by broker: {}", esc(&truncate_chars(message, 300)))
        }
    }
}

/// The card line of an order whose answer was lost: it is being looked up, not failed.
pub const CHECKING_WITH_BROKER: &str = "Checking with the broker…";

fn pct_of(part: Paise, whole: Paise) -> f64 {
    if whole.0 == 0 {
        0.0
    } else {
        part.0 as f64 * 100.0 / whole.0 as f64
    }
}

/// The card caption: every field of item 6, then the outcome line once decided. The rationale
/// is cut so the whole caption stays within Telegram's 1024 characters.
pub fn proposal_caption(p: &Proposal, capital: Paise, outcome: Option<&Outcome>) -> String {
    let risk = p.risk();
    let head = format!(
        "<b>{} {}</b> · proposal #{}\n\
         Quantity: {} ({})\n\
         Entry: {}\n\
         Stop: {}\n\
         Target: {}\n\
         Risk: {} ({:.2}% of capital {})\n\
         Reward:risk {:.2} · confidence {:.0}%\n",
        p.side,
        esc(&p.key.to_string()),
        p.id,
        p.quantity,
        p.product.as_str(),
        p.entry,
        p.stop,
        p.target,
        risk,
        pct_of(risk, capital),
        capital,
        p.reward_risk(),
        (p.confidence * 100.0).clamp(0.0, 100.0),
    );
    let tail = match outcome {
        None => format!("\nexpires {}", ist_time(p.expires_at)),
        Some(o) => format!(
            "\nexpires {}\n\n{}",
            ist_time(p.expires_at),
            outcome_line(o)
        ),
    };
    let fixed = head.chars().count() + tail.chars().count() + "<i></i>".len();
    let budget = CAPTION_LIMIT.saturating_sub(fixed);
    // Escape as we go so an entity is never cut in half.
    let mut rationale = String::new();
    let mut used = 0;
    let mut cut = false;
    for c in p.rationale.chars() {
        let e = esc(&c.to_string());
        let n = e.chars().count();
        if used + n > budget.saturating_sub(1) {
            cut = true;
            break;
        }
        rationale.push_str(&e);
        used += n;
    }
    if cut {
        rationale.push('…');
    }
    let mut out = format!("{head}<i>{rationale}</i>{tail}");
    if out.chars().count() > CAPTION_LIMIT {
        // Only reachable with a pathological outcome text: keep the head and the outcome word.
        out = truncate_chars(&out, CAPTION_LIMIT);
    }
    out
}

/// The caption for a card being posted.
pub fn card_caption(card: &ProposalCard) -> String {
    proposal_caption(&card.proposal, card.capital, None)
}

/// The answer to an Approve tap that won its proposal: the order is being placed; the outcome
/// then edits the card.
pub const PLACING: &str = "Placing…";

/// How a failed approval names itself in [`command_failed`].
pub fn approve_what(proposal_id: i64) -> String {
    format!("Approve #{proposal_id}")
}

/// An approval's task ended without an answer (it panicked or was cancelled).
pub fn approval_stopped(proposal_id: i64) -> String {
    format!(
        "Approve #{proposal_id} stopped before it finished; check its card and /positions \
         before approving anything else for that instrument."
    )
}

/// Short callback answer (<= 200 chars) for an Approve / Reject tap.
pub fn decision_answer(d: &Decision) -> String {
    let s = match d {
        Decision::Decided { outcome, .. } => match outcome {
            Outcome::Executed {
                side,
                quantity,
                fill_price,
                mode,
                ..
            } => format!("Executed {side} {quantity} @ {fill_price} ({mode})"),
            Outcome::Vetoed(r) => format!("Vetoed: {}", deny_reason(r)),
            Outcome::Rejected => "Rejected".into(),
            Outcome::Expired => "Expired".into(),
            Outcome::Failed { reason } => format!("Failed: {reason}"),
            Outcome::Working {
                side,
                quantity,
                price,
                ..
            } => format!("Order placed: {side} {quantity} limit {price} (live)"),
            Outcome::Checking { .. } => CHECKING_WITH_BROKER.to_string(),
            Outcome::BrokerRejected { message } => format!("Rejected by broker: {message}"),
        },
        Decision::AlreadyDecided { status, .. } => {
            format!("Already decided ({})", status.as_str())
        }
        Decision::NotFound { proposal_id } => format!("Proposal #{proposal_id} not found"),
    };
    truncate_chars(&s, ANSWER_LIMIT)
}

/// Short callback answer for any reply (decisions get their own wording).
pub fn reply_answer(r: &Reply) -> String {
    match r {
        Reply::Decision(d) => decision_answer(d),
        Reply::Killed(_) => "Kill done: HALTED".into(),
        Reply::Resumed { .. } => "Resumed".into(),
        Reply::Paused => "Paused".into(),
        _ => "Done".into(),
    }
}

/// A full chat message for a reply.
pub fn reply(r: &Reply) -> String {
    let s = match r {
        Reply::Decision(d) => match d {
            Decision::Decided {
                proposal_id,
                outcome,
            } => {
                format!("Proposal #{proposal_id}: {}", outcome_line(outcome))
            }
            Decision::AlreadyDecided {
                proposal_id,
                status,
            } => format!(
                "Proposal #{proposal_id} was already decided ({}).",
                status.as_str()
            ),
            Decision::NotFound { proposal_id } => format!("Proposal #{proposal_id} not found."),
        },
        Reply::Scan(s) => scan(s),
        Reply::Status(s) => status(s),
        Reply::Positions(p) => positions(p),
        Reply::Proposals(p) => proposals(p),
        Reply::Risk(r) => risk(r),
        Reply::Paused => "Paused: no new entries until /resume (no new proposals; approvals are vetoed with PAUSED). Exits, /kill and expiry still run.".into(),
        Reply::Resumed { was_halted } => {
            if *was_halted {
                "Resumed: the halt is lifted and new proposals are allowed again.".into()
            } else {
                "Resumed: new proposals are allowed again.".into()
            }
        }
        Reply::Killed(k) => kill_report(k),
        Reply::Done { changed } => format!("Done: {changed} changed."),
        Reply::Why {
            proposal_id,
            proposal,
            trace,
        } => why(*proposal_id, proposal.as_deref(), trace.as_deref(), true),
        Reply::LoginLink { .. } => login_link(),
        Reply::LoggedIn { user_id, until, .. } => session_active(user_id, until),
        Reply::LoginRefused { reason } => format!("Login refused: {}", esc(reason)),
        Reply::Skipped { reason } => format!("Skipped: {}", esc(reason)),
        Reply::Preflight(p) => esc(&preflight(p)),
        Reply::KillTest(k) => kill_test(k),
        Reply::BacktestStarted {
            key,
            interval,
            from,
            to,
        } => format!(
            "Backtest of {} ({interval}, {from} to {to}) started in the background; the equity chart and summary follow. /status shows its progress.",
            esc(&key.to_string())
        ),
        Reply::BacktestBusy { running } => format!(
            "A backtest is already running ({}). One runs at a time; /status shows its progress.",
            esc(running)
        ),
    };
    truncate_chars(&s, MESSAGE_LIMIT)
}

pub fn alert(a: &Alert) -> String {
    let s = match a {
        Alert::LoginLink { .. } => login_link(),
        Alert::SessionActive { user_id, until, .. } => session_active(user_id, until),
        Alert::SessionExpired { reason, .. } => session_expired(reason),
        Alert::Started {
            mode,
            watchlist,
            halted,
        } => {
            let mut s = format!(
                "MFT-1 started in {} mode, watching {watchlist} instruments.",
                esc(mode)
            );
            if *halted {
                s.push_str("\nHALTED: new entries are blocked until /resume.");
            }
            s
        }
        Alert::Stopping => "MFT-1 is stopping.".into(),
        Alert::ScanFailed { key, error } => match key {
            Some(k) => format!(
                "Scan failed for {}: {}",
                esc(&k.to_string()),
                esc(&truncate_chars(error, 500))
            ),
            None => format!("Scan failed: {}", esc(&truncate_chars(error, 500))),
        },
        Alert::Vetoed {
            proposal_id,
            key,
            reason,
        } => format!(
            "Vetoed: proposal #{proposal_id} {} — {}",
            esc(&key.to_string()),
            esc(&deny_reason(reason))
        ),
        Alert::DailyLossHalt { loss, limit } => format!(
            "HALTED: today's loss {loss} reached the daily limit {limit}. New entries are \
             blocked until /resume; exits still run."
        ),
        Alert::KillDone(k) => kill_report(k),
        Alert::OrderFailed { key, error } => format!(
            "Order failed for {}: {}",
            esc(&key.to_string()),
            esc(&truncate_chars(error, 500))
        ),
        Alert::Broker { key, text } => match key {
            Some(k) => format!(
                "Kite · {}: {}",
                esc(&k.to_string()),
                esc(&truncate_chars(text, 1000))
            ),
            None => format!("Kite: {}", esc(&truncate_chars(text, 1000))),
        },
        Alert::PositionClosed {
            key,
            reason,
            quantity,
            price,
            pnl,
        } => format!(
            "Position closed: {} {quantity} @ {price} ({}), P&amp;L {}",
            esc(&key.to_string()),
            esc(reason),
            signed(*pnl)
        ),
        Alert::AnalystFailing { failures, error } => format!(
            "LLM analyst failing: {failures} analyses in a row produced nothing. Last error: {}\nScans go on; affected instruments get no proposal. Check OPENAI_BASE_URL / the model.",
            esc(&truncate_chars(error, 500))
        ),
        Alert::LlmBudgetSpent { detail, fallback } => format!(
            "LLM budget spent for today: {}. Until tomorrow (IST) scans use: {}.",
            esc(detail),
            esc(fallback)
        ),
        Alert::BacktestDone { key, summary, .. } => format!(
            "<b>Backtest of {} done</b>\n<pre>{}</pre>",
            esc(&key.to_string()),
            esc(summary)
        ),
        Alert::BacktestFailed { key, error } => format!(
            "Backtest of {} failed: {}",
            esc(&key.to_string()),
            esc(error)
        ),
    };
    truncate_chars(&s, MESSAGE_LIMIT)
}

/// `/why N` and `mft why N`: how proposal N came about, compactly. `html` escapes for Telegram.
pub fn why(
    proposal_id: i64,
    proposal: Option<&Proposal>,
    trace: Option<&crate::domain::AnalysisTrace>,
    html: bool,
) -> String {
    let e = |s: &str| if html { esc(s) } else { s.to_string() };
    let Some(p) = proposal else {
        return format!("Proposal #{proposal_id} not found.");
    };
    let mut out = format!(
        "Why #{}: {} {} x{} @ {} (stop {}, target {}), {}\n",
        p.id,
        p.side,
        e(&p.key.to_string()),
        p.quantity,
        p.entry,
        p.stop,
        p.target,
        p.status.as_str()
    );
    let Some(t) = trace else {
        let _ = write!(
            out,
            "Made by the rule analyst (no LLM trace).\nRationale: {}",
            e(&p.rationale)
        );
        return truncate_chars(&out, MESSAGE_LIMIT);
    };
    let _ = writeln!(
        out,
        "Analyst: {} · model {} · prompt {}",
        e(&t.analyst),
        e(&t.model),
        e(&t.prompt_hash.chars().take(12).collect::<String>())
    );
    let _ = writeln!(
        out,
        "Tokens {} in / {} out · cost {} · {:.1} s",
        t.tokens_in,
        t.tokens_out,
        t.cost,
        t.latency_ms as f64 / 1000.0
    );
    let _ = writeln!(out, "Tool calls ({}):", t.tool_calls.len());
    for (i, c) in t.tool_calls.iter().enumerate().take(MAX_LIST) {
        let args = truncate_chars(&c.arguments, 120);
        let _ = write!(
            out,
            "{}. {}.{} {} → {} B, {} ms",
            i + 1,
            e(&c.server),
            e(&c.tool),
            e(&args),
            c.result_bytes,
            c.duration_ms
        );
        if let Some(err) = &c.error {
            let _ = write!(out, " (error: {})", e(&truncate_chars(err, 160)));
        }
        out.push('\n');
    }
    if t.tool_calls.len() > MAX_LIST {
        let _ = writeln!(out, "… {} more", t.tool_calls.len() - MAX_LIST);
    }
    match (&t.verdict, &t.error) {
        (Some(v), _) => {
            let _ = writeln!(
                out,
                "Verdict: {} entry {} stop {} target {} confidence {}",
                e(v["action"].as_str().unwrap_or("?")),
                v["entry"],
                v["stop"],
                v["target"],
                v["confidence"]
            );
            let _ = writeln!(
                out,
                "Rationale: {}",
                e(v["rationale"].as_str().unwrap_or(""))
            );
            if let Some(ev) = v["evidence"].as_array() {
                for item in ev.iter().take(5) {
                    let _ = writeln!(
                        out,
                        "· {}: {}",
                        e(item["tool"].as_str().unwrap_or("?")),
                        e(&truncate_chars(item["fact"].as_str().unwrap_or(""), 200))
                    );
                }
            }
        }
        (None, Some(err)) => {
            let _ = writeln!(out, "Error: {}", e(err));
        }
        (None, None) => {}
    }
    truncate_chars(out.trim_end(), MESSAGE_LIMIT)
}

/// `mft kill` (and any kill) with MODE=live while no live broker exists.
pub const KILL_LIVE_UNAVAILABLE: &str = "MODE=live: mft kill needs ZERODHA_API_KEY and a Kite \
     session (`mft login`, or ZERODHA_ACCESS_TOKEN) to cancel and close at Kite, and it will not \
     pretend to close live positions on paper. Nothing was changed. Log in, or close the positions \
     in Kite (web or app) now";

/// Why a proposal was marked failed when its card could not be posted.
pub fn card_not_posted(error: &str) -> String {
    format!(
        "its card could not be posted ({}); marked failed so it blocks nothing. The next scan may propose it again",
        truncate_chars(error, 300)
    )
}

/// The note on a pending proposal expired at start-up because its card was never confirmed
/// posted.
pub const EXPIRED_UNPOSTED: &str =
    "expired at start-up: its card was never confirmed posted (the service stopped first)";

/// The state an order left in flight by a crash is rejected with when the broker never got it:
/// it is not sent late (the market has moved on).
pub const NOT_SENT_LATE: &str = "interrupted before it reached the broker; not sent late";

/// Why a proposal left Approved by a crash is settled as failed at start-up.
pub const INTERRUPTED_BY_RESTART: &str = "interrupted by a restart before the order was placed";

/// The stored detail of a rejected proposal.
pub const REJECTED_BY_OPERATOR: &str = "rejected by the operator";

/// The stored detail of an executed proposal: "order paper-mft-p7 BUY 10 at ₹1,500.75".
pub fn order_detail(
    order_id: &str,
    side: crate::domain::Side,
    quantity: i64,
    price: Paise,
) -> String {
    format!("order {order_id} {side} {quantity} at {price}")
}

/// An approved proposal whose order exists but is neither filled nor working.
pub fn entry_order_state(state: &str) -> String {
    format!("the order for this proposal is {state}")
}

/// The start-up alert when positions and fills disagree for an instrument.
pub fn book_inconsistent(instrument: &str, positions: i64, fills: i64) -> String {
    format!(
        "the book is inconsistent for {instrument}: positions hold {positions}, fills net {fills}; check before trading it"
    )
}

/// The alert when a paper stop/target exit could not be carried out.
pub fn exit_failed(error: &str) -> String {
    format!("a stop/target exit failed: {error}")
}

/// The alert when the intraday square-off could not close a position; it stays open.
pub fn square_off_failed(error: &str) -> String {
    format!("the square-off could not close everything: {error}; close it by hand or /kill")
}

/// The alert when a proposal's card could not be posted.
pub fn proposal_not_posted(proposal_id: i64, reason: &str) -> String {
    format!("proposal #{proposal_id}: {reason}")
}

/// Who asked for a kill, as the halt reason and the trade log record it.
pub fn kill_by(actor: crate::domain::Actor) -> String {
    match actor {
        crate::domain::Actor::Telegram { user_id } => format!("/kill by Telegram user {user_id}"),
        crate::domain::Actor::Scheduler => "kill by the scheduler".into(),
        crate::domain::Actor::Cli => "`mft kill` on the command line".into(),
        crate::domain::Actor::Web => "kill from the web dashboard".into(),
    }
}

/// The trade log line of a kill.
pub fn kill_logged(who: &str, cancelled: u32, closed: usize, errors: usize) -> String {
    format!("{who}: cancelled {cancelled}, closed {closed}, errors {errors}")
}

/// The action audit's result of a command that failed.
pub fn action_failed(error: &str) -> String {
    format!("error: {error}")
}

/// Caption of the equity chart a finished /backtest sends (the summary follows as text).
pub fn backtest_chart_caption(key: &crate::domain::InstrumentKey) -> String {
    format!("Backtest of {}: equity and drawdown", esc(&key.to_string()))
}

/// The Kite line of /status and the status page.
pub fn kite_session_line(
    expires_at: Option<DateTime<Utc>>,
    user_id: &str,
    now: DateTime<Utc>,
) -> String {
    match expires_at {
        Some(at) => format!(
            "session active until {} (user {user_id})",
            session_until(at, now)
        ),
        None => "session from ZERODHA_ACCESS_TOKEN".into(),
    }
}

/// Why a scheduled job does not run today.
pub fn market_closed(today: chrono::NaiveDate, reason: &str) -> String {
    format!("NSE is closed today ({today}, {reason})")
}

/// Why a Kite login redirect was refused; nothing was stored for any of them.
pub mod login_refused {
    pub fn status(other: &str) -> String {
        format!(
            "Kite reported the login as {other:?}, not success: nothing was stored. Send /login to try again"
        )
    }
    pub const NO_STATUS: &str = "the redirect has no status parameter: nothing was stored";
    pub const NO_STATE: &str =
        "the redirect carries no state: use the button from /login (nothing was stored)";
    pub fn bad_token(e: &dyn std::fmt::Display) -> String {
        format!("{e}: nothing was stored")
    }
}

/// An open order as the kill drill and the checklist list it.
pub fn order_ref(tag: &str, key: &crate::domain::InstrumentKey) -> String {
    format!("{tag} {key}")
}

/// Who asked for a kill drill, and the trade log line it leaves.
pub fn kill_test_logged(
    actor: crate::domain::Actor,
    would_cancel: usize,
    would_close: usize,
) -> String {
    let who = match actor {
        crate::domain::Actor::Telegram { user_id } => {
            format!("/kill test by Telegram user {user_id}")
        }
        crate::domain::Actor::Scheduler => "kill test by the scheduler".into(),
        crate::domain::Actor::Cli => "kill test on the command line".into(),
        crate::domain::Actor::Web => "kill test on the dashboard".into(),
    };
    format!("{who}: would cancel {would_cancel}, would close {would_close}")
}

/// The pre-flight checklist's lines: what each check found and, when it is not ok, the fix.
/// The handler decides what to check; the words are here.
pub mod preflight {
    use super::{ist_datetime, session_until};
    use crate::domain::Paise;
    use crate::ports::CheckLevel::{self, Failed, Ok as Good, Warning};
    use crate::ports::PreflightLine;
    use chrono::{DateTime, Utc};
    use std::fmt::Display;

    const SESSION: &str = "Kite session";
    const MARGIN: &str = "Margin";
    const OPEN_ORDERS: &str = "Open orders";
    const DATA: &str = "Data freshness";
    const KILL: &str = "Kill switch";

    fn line(level: CheckLevel, check: &str, detail: String, fix: Option<&str>) -> PreflightLine {
        PreflightLine {
            level,
            check: check.to_string(),
            detail,
            fix: fix.map(str::to_string),
        }
    }

    pub fn not_connected() -> PreflightLine {
        line(
            Failed,
            SESSION,
            "not connected".into(),
            Some("run `mft preflight` or /preflight from the service"),
        )
    }

    pub fn no_api_key() -> PreflightLine {
        line(
            Failed,
            SESSION,
            "ZERODHA_API_KEY is not set".into(),
            Some("set ZERODHA_API_KEY and ZERODHA_API_SECRET in .env, then send /login"),
        )
    }

    pub fn no_session(e: &dyn Display) -> PreflightLine {
        line(
            Failed,
            SESSION,
            e.to_string(),
            Some("send /login (or run `mft login`) and log in on Kite"),
        )
    }

    pub fn bad_api_url(e: &dyn Display) -> PreflightLine {
        line(
            Failed,
            SESSION,
            e.to_string(),
            Some("check ZERODHA_API_URL"),
        )
    }

    /// `expires_at` None: the token came from ZERODHA_ACCESS_TOKEN.
    pub fn session_ok(
        user_id: &str,
        expires_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> PreflightLine {
        let until = match expires_at {
            Some(at) => format!("token expires {}", session_until(at, now)),
            None => "token from ZERODHA_ACCESS_TOKEN, expires 06:00 IST".into(),
        };
        line(
            Good,
            SESSION,
            format!("API reachable, logged in as {user_id} ({until})"),
            None,
        )
    }

    pub fn token_rejected() -> PreflightLine {
        line(
            Failed,
            SESSION,
            "Kite rejected the access token (TokenException)".into(),
            Some("send /login and log in on Kite"),
        )
    }

    pub fn api_unreachable(e: &dyn Display) -> PreflightLine {
        line(
            Failed,
            SESSION,
            format!("Kite API unreachable: {e}"),
            Some("check the network and ZERODHA_API_URL"),
        )
    }

    pub fn margin_unchecked() -> PreflightLine {
        line(
            Warning,
            MARGIN,
            "not checked (no valid Kite session)".into(),
            Some("log in, then run the checklist again"),
        )
    }

    pub fn margin(available: Paise, capital: Paise) -> PreflightLine {
        if capital > available {
            line(
                Warning,
                MARGIN,
                format!("available equity margin {available} is below [trading] capital {capital}"),
                Some("lower [trading] capital or add funds"),
            )
        } else {
            line(
                Good,
                MARGIN,
                format!("available equity margin {available} covers [trading] capital {capital}"),
                None,
            )
        }
    }

    pub fn margin_unreadable(e: &dyn Display) -> PreflightLine {
        line(
            Failed,
            MARGIN,
            format!("cannot read margins: {e}"),
            Some("check the Kite session and try again"),
        )
    }

    /// `pct` of capital against the `max_pct` a careful start uses.
    pub fn daily_loss(limit: Paise, pct: f64, max_pct: f64) -> PreflightLine {
        if pct > max_pct {
            line(
                Warning,
                "Daily loss limit",
                format!("{limit} is {pct:.1}% of capital (above {max_pct}%)"),
                Some(&format!(
                    "lower [risk] max_daily_loss to {max_pct}% of capital or less"
                )),
            )
        } else {
            line(
                Good,
                "Daily loss limit",
                format!("{limit} is {pct:.1}% of capital"),
                None,
            )
        }
    }

    /// `pct` of capital against the `max_pct` a careful start uses.
    pub fn position_limit(limit: Paise, pct: f64, max_pct: f64) -> PreflightLine {
        if pct > max_pct {
            line(
                Warning,
                "Position limit",
                format!("{limit} is {pct:.1}% of capital (above {max_pct}%)"),
                Some(&format!(
                    "lower [risk] max_position_value to {max_pct}% of capital or less"
                )),
            )
        } else {
            line(
                Good,
                "Position limit",
                format!("{limit} is {pct:.1}% of capital"),
                None,
            )
        }
    }

    pub fn leverage(lev: f64) -> PreflightLine {
        if lev > 1.0 {
            line(
                Warning,
                "Leverage",
                format!("{lev} (above 1)"),
                Some("set [trading] leverage = 1 until the strategy has a track record"),
            )
        } else {
            line(Good, "Leverage", format!("{lev}"), None)
        }
    }

    pub fn paper_days(days: usize, min_days: usize) -> PreflightLine {
        if days < min_days {
            line(
                Warning,
                "Paper trading",
                format!("{days} trading day(s) with paper activity (fewer than {min_days})"),
                Some(&format!(
                    "keep MODE=paper for at least {min_days} trading days"
                )),
            )
        } else {
            line(
                Good,
                "Paper trading",
                format!("{days} trading days with paper activity"),
                None,
            )
        }
    }

    /// A stuck-orders entry when the comparison with Kite itself failed.
    pub fn compare_failed(e: &dyn Display) -> String {
        format!("could not compare with Kite: {e}")
    }

    /// `stuck`: orders open longer than `minutes` and, live, differences from Kite's book.
    pub fn open_orders(stuck: &[String], minutes: i64, live: bool) -> PreflightLine {
        if stuck.is_empty() {
            line(
                Good,
                OPEN_ORDERS,
                format!("none open longer than {minutes} minutes"),
                None,
            )
        } else {
            line(
                Failed,
                OPEN_ORDERS,
                format!(
                    "{} stuck longer than {minutes} minutes{}: {}",
                    stuck.len(),
                    if live { " or different from Kite" } else { "" },
                    stuck.join(", ")
                ),
                Some("check them on Kite and cancel or reconcile before trading"),
            )
        }
    }

    /// `stale`: one entry per series behind (see [`super::stale_data`]).
    pub fn data(watchlist: usize, stale: &[String]) -> PreflightLine {
        if stale.is_empty() {
            line(
                Good,
                DATA,
                format!("{watchlist} of {watchlist} watchlist series up to date"),
                None,
            )
        } else {
            line(
                Warning,
                DATA,
                stale.join("; "),
                Some("log in so scans fetch candles, or `mft data fetch`"),
            )
        }
    }

    /// How the kill switch was last exercised.
    #[derive(Debug, Clone, Copy)]
    pub enum Drill {
        DryRun,
        RealKill,
    }

    /// `last`: when and how the kill switch was last exercised; older than `max_age_days` warns.
    pub fn kill_switch(
        last: Option<(DateTime<Utc>, Drill)>,
        now: DateTime<Utc>,
        max_age_days: i64,
    ) -> PreflightLine {
        let what = |d: Drill| match d {
            Drill::DryRun => "dry run",
            Drill::RealKill => "real kill",
        };
        match last {
            None => line(
                Warning,
                KILL,
                "never exercised".into(),
                Some("send /kill test (a dry run that changes nothing)"),
            ),
            Some((at, d)) if now - at > chrono::Duration::days(max_age_days) => line(
                Warning,
                KILL,
                format!(
                    "last exercised {} ({}), over {max_age_days} days ago",
                    ist_datetime(at),
                    what(d)
                ),
                Some("send /kill test"),
            ),
            Some((at, d)) => line(
                Good,
                KILL,
                format!("last exercised {} ({})", ist_datetime(at), what(d)),
                None,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{DenyReason, InstrumentKey, Product, Side};
    use chrono::TimeZone;

    fn proposal(rationale: &str) -> Proposal {
        Proposal {
            id: 12,
            key: InstrumentKey::new("NSE", "M&M"),
            side: Side::Buy,
            quantity: 10,
            entry: Paise(150_000),
            stop: Paise(148_000),
            target: Paise(154_000),
            product: Product::Mis,
            confidence: 0.7,
            rationale: rationale.into(),
            status: ProposalStatus::Pending,
            created_at: Utc.with_ymd_and_hms(2026, 11, 25, 8, 45, 0).unwrap(),
            // 14:25 IST
            expires_at: Utc.with_ymd_and_hms(2026, 11, 25, 8, 55, 0).unwrap(),
            chart_path: None,
            message_id: None,
            decided_at: None,
            decided_by: None,
            outcome: None,
        }
    }

    #[test]
    fn caption_has_every_field_escaped() {
        let c = proposal_caption(
            &proposal("EMA20 <crossed> EMA50 & RSI 61"),
            Paise::from_rupees(100_000),
            None,
        );
        assert!(c.contains("BUY NSE:M&amp;M"), "{c}");
        assert!(c.contains("Quantity: 10"));
        assert!(c.contains("Entry: ₹1,500.00"));
        assert!(c.contains("Stop: ₹1,480.00"));
        assert!(c.contains("Target: ₹1,540.00"));
        assert!(c.contains("Risk: ₹200.00 (0.20% of capital ₹1,00,000.00)"));
        assert!(c.contains("Reward:risk 2.00"));
        assert!(c.contains("EMA20 &lt;crossed&gt; EMA50 &amp; RSI 61"));
        assert!(c.contains("expires 14:25 IST"), "{c}");
    }

    #[test]
    fn long_rationale_is_cut_to_the_caption_limit() {
        let long = "&".repeat(3000);
        let out = Outcome::Vetoed(DenyReason::MaxDailyLoss {
            loss: Paise(250_000),
            max: Paise(200_000),
        });
        for o in [None, Some(&out)] {
            let c = proposal_caption(&proposal(&long), Paise::from_rupees(100_000), o);
            assert!(c.chars().count() <= CAPTION_LIMIT, "{}", c.chars().count());
            assert!(c.contains("expires 14:25 IST"));
            // No entity cut in half.
            assert!(!c.contains("&amp…") && !c.contains("&am…"));
            assert!(c.contains("&amp;…"));
        }
        let c = proposal_caption(&proposal(&long), Paise::from_rupees(100_000), Some(&out));
        assert!(
            c.lines()
                .last()
                .unwrap()
                .starts_with("Vetoed: MAX_DAILY_LOSS")
        );
    }

    #[test]
    fn outcome_lines_begin_with_the_keyword() {
        let cases = [
            (
                Outcome::Executed {
                    side: Side::Buy,
                    quantity: 10,
                    fill_price: Paise(150_075),
                    mode: "paper".into(),
                    order_id: "P-7".into(),
                },
                "Executed",
            ),
            (Outcome::Vetoed(DenyReason::Halted), "Vetoed"),
            (Outcome::Rejected, "Rejected"),
            (Outcome::Expired, "Expired"),
            (
                Outcome::Failed {
                    reason: "broker <down>".into(),
                },
                "Failed",
            ),
        ];
        for (o, word) in cases {
            let line = outcome_line(&o);
            assert!(line.starts_with(word), "{line}");
            let c = proposal_caption(&proposal("x"), Paise::from_rupees(100_000), Some(&o));
            assert!(c.lines().last().unwrap().starts_with(word));
        }
        let l = outcome_line(&Outcome::Executed {
            side: Side::Buy,
            quantity: 10,
            fill_price: Paise(150_075),
            mode: "paper".into(),
            order_id: "P-7".into(),
        });
        assert_eq!(l, "Executed: BUY 10 @ ₹1,500.75 (paper, order P-7)");
        assert!(outcome_line(&Outcome::Vetoed(DenyReason::Halted)).contains("HALTED"));
    }

    #[test]
    fn status_shows_halt_limits_and_lists() {
        let s = StatusReport {
            mode: "paper".into(),
            halted: true,
            paused: false,
            last_scan: None,
            next_scan: Some(Utc.with_ymd_and_hms(2026, 11, 25, 9, 0, 0).unwrap()),
            realized_today: Paise(-12_345),
            unrealized: Paise(50_000),
            day_pnl: Paise(-2_345),
            positions: vec![],
            pending: vec![proposal("r")],
            loss_used: Paise(12_345),
            loss_limit: Paise(200_000),
            orders_today: 3,
            orders_limit: 20,
            kite: None,
            backtest: None,
        };
        let t = status(&s);
        assert!(t.contains("Mode: paper"));
        assert!(t.contains("\nHALTED"));
        assert!(t.contains("Next scan: 25 Nov 14:30 IST"));
        assert!(t.contains(
            "Today's P&amp;L: -₹23.45 (realized -₹123.45, open positions since yesterday's close +₹100.00)"
        ));
        assert!(t.contains("Daily loss used: ₹123.45 of ₹2,000.00"));
        assert!(t.contains("Orders today: 3 of 20"));
        assert!(t.contains("#12 BUY 10 NSE:M&amp;M"));
    }

    #[test]
    fn answers_fit_telegram() {
        let d = Decision::Decided {
            proposal_id: 1,
            outcome: Outcome::Failed {
                reason: "x".repeat(1000),
            },
        };
        assert!(decision_answer(&d).chars().count() <= ANSWER_LIMIT);
        let d = Decision::AlreadyDecided {
            proposal_id: 1,
            status: ProposalStatus::Executed,
        };
        assert_eq!(decision_answer(&d), "Already decided (executed)");
    }

    #[test]
    fn texts_moved_from_the_handler_and_the_oms_read_as_before() {
        use crate::domain::Actor;
        assert_eq!(
            NOT_SENT_LATE,
            "interrupted before it reached the broker; not sent late"
        );
        assert_eq!(
            INTERRUPTED_BY_RESTART,
            "interrupted by a restart before the order was placed"
        );
        assert_eq!(REJECTED_BY_OPERATOR, "rejected by the operator");
        assert_eq!(
            order_detail("paper-mft-p7", Side::Buy, 10, Paise(150_075)),
            "order paper-mft-p7 BUY 10 at ₹1,500.75"
        );
        assert_eq!(
            entry_order_state("rejected"),
            "the order for this proposal is rejected"
        );
        assert_eq!(
            book_inconsistent("NSE:INFY", 10, 5),
            "the book is inconsistent for NSE:INFY: positions hold 10, fills net 5; check before trading it"
        );
        assert_eq!(exit_failed("boom"), "a stop/target exit failed: boom");
        assert_eq!(proposal_not_posted(7, "no chat"), "proposal #7: no chat");
        assert_eq!(
            kill_by(Actor::Telegram { user_id: 42 }),
            "/kill by Telegram user 42"
        );
        assert_eq!(kill_by(Actor::Scheduler), "kill by the scheduler");
        assert_eq!(kill_by(Actor::Cli), "`mft kill` on the command line");
        assert_eq!(kill_by(Actor::Web), "kill from the web dashboard");
        assert_eq!(
            kill_logged("kill by the scheduler", 1, 2, 0),
            "kill by the scheduler: cancelled 1, closed 2, errors 0"
        );
        assert_eq!(action_failed("HALTED"), "error: HALTED");
        assert_eq!(PLACING, "Placing…");
        assert_eq!(approve_what(7), "Approve #7");
        assert!(approval_stopped(7).chars().count() <= ANSWER_LIMIT);
    }

    #[test]
    fn preflight_lines_read_as_before() {
        use crate::ports::CheckLevel;
        let l = preflight::daily_loss(Paise::from_rupees(5_000), 5.0, 2.0);
        assert_eq!(l.level, CheckLevel::Warning);
        assert_eq!(l.check, "Daily loss limit");
        assert_eq!(l.detail, "₹5,000.00 is 5.0% of capital (above 2%)");
        assert_eq!(
            l.fix.as_deref(),
            Some("lower [risk] max_daily_loss to 2% of capital or less")
        );
        let l = preflight::position_limit(Paise::from_rupees(10_000), 10.0, 20.0);
        assert_eq!(l.level, CheckLevel::Ok);
        assert_eq!(l.detail, "₹10,000.00 is 10.0% of capital");
        assert_eq!(l.fix, None);
        let l = preflight::paper_days(2, 5);
        assert_eq!(
            l.detail,
            "2 trading day(s) with paper activity (fewer than 5)"
        );
        assert_eq!(
            l.fix.as_deref(),
            Some("keep MODE=paper for at least 5 trading days")
        );
        let l = preflight::margin(Paise::from_rupees(50_000), Paise::from_rupees(100_000));
        assert_eq!(l.level, CheckLevel::Warning);
        assert_eq!(
            l.detail,
            "available equity margin ₹50,000.00 is below [trading] capital ₹1,00,000.00"
        );
        let stuck = vec!["MFTP1E NSE:INFY".to_string()];
        let l = preflight::open_orders(&stuck, 15, true);
        assert_eq!(l.level, CheckLevel::Failed);
        assert_eq!(
            l.detail,
            "1 stuck longer than 15 minutes or different from Kite: MFTP1E NSE:INFY"
        );
        let now = Utc::now();
        let l = preflight::kill_switch(
            Some((now - chrono::Duration::days(31), preflight::Drill::DryRun)),
            now,
            30,
        );
        assert_eq!(l.level, CheckLevel::Warning);
        assert!(
            l.detail.ends_with("(dry run), over 30 days ago"),
            "{}",
            l.detail
        );
        assert_eq!(
            preflight::kill_switch(None, now, 30).detail,
            "never exercised"
        );
        assert_eq!(
            kill_test_logged(crate::domain::Actor::Telegram { user_id: 7 }, 2, 3),
            "/kill test by Telegram user 7: would cancel 2, would close 3"
        );
        assert_eq!(
            login_refused::status("cancelled"),
            "Kite reported the login as \"cancelled\", not success: nothing was stored. Send /login to try again"
        );
    }

    /// A live MIS order as the live-order texts see it.
    fn live_order(state: crate::domain::OrderState, filled: i64) -> crate::domain::Order {
        let at = Utc.with_ymd_and_hms(2026, 11, 25, 8, 45, 0).unwrap();
        crate::domain::Order {
            id: 3,
            request: crate::domain::OrderRequest {
                key: InstrumentKey::new("NSE", "M&M"),
                side: Side::Sell,
                quantity: 10,
                order_type: crate::domain::OrderType::StopMarket {
                    trigger: Paise(148_000),
                },
                product: Product::Mis,
                tag: "MFTP7S1".into(),
                purpose: crate::domain::OrderPurpose::Exit {
                    reason: "stop".into(),
                },
                reference_price: Paise(148_000),
            },
            state,
            filled_quantity: filled,
            created_at: at,
            updated_at: at,
        }
    }

    #[test]
    fn live_order_texts_read_as_before() {
        use crate::domain::{Fill, OrderState};
        assert_eq!(
            broker_rejected("margin exceeds"),
            "Rejected by broker: margin exceeds"
        );
        assert_eq!(
            rejected_by_broker_detail("margin exceeds"),
            "rejected by broker: margin exceeds"
        );
        assert_eq!(
            order_rejected_by_broker("margin exceeds", "MFTP7E"),
            "Rejected by broker: margin exceeds (order MFTP7E)"
        );
        assert_eq!(
            order_answer_lost("MFTP7E"),
            "order MFTP7E: the broker's answer was lost; checking by its tag (never sent twice)"
        );
        assert_eq!(
            order_sent_answer_lost("MFTP7E"),
            "order MFTP7E sent; the broker's answer was lost: checking by its tag"
        );
        assert_eq!(
            order_being_checked("MFTP7E"),
            "order MFTP7E is being checked at the broker"
        );
        assert_eq!(
            order_working_detail("2401", Side::Buy, 10, Paise(150_000)),
            "order 2401 BUY 10 working at ₹1,500.00"
        );
        let open = live_order(
            OrderState::Open {
                broker_order_id: "2402".into(),
            },
            4,
        );
        assert_eq!(
            order_working_at_kite(&open),
            "order MFTP7S1 SELL 10 is working at Kite"
        );
        let fill = Fill {
            order_id: 3,
            key: open.request.key.clone(),
            side: Side::Sell,
            quantity: 4,
            price: Paise(147_950),
            ts: open.updated_at,
        };
        assert_eq!(
            live_fill(&open, &fill, 6),
            "fill: SELL 4 @ ₹1,479.50 (order MFTP7S1, 4 of 10 filled); position 6"
        );
        assert_eq!(
            order_cancelled(&open),
            "order MFTP7S1 cancelled (4 of 10 filled)"
        );
        assert_eq!(
            protective_placed(&open),
            "protective order MFTP7S1 SELL 10 placed (open)"
        );
        assert_eq!(
            pair_filled_cancelled("MFTP7T1"),
            "order MFTP7T1 cancelled: its pair filled"
        );
        assert_eq!(
            protection_problem("cancelling MFTP7T1: boom"),
            "PROTECTION PROBLEM: cancelling MFTP7T1: boom; check the position on Kite"
        );
        assert_eq!(
            reconciliation_mismatch("position NSE:INFY MIS: ours 0, Kite 5"),
            "reconciliation: position NSE:INFY MIS: ours 0, Kite 5; the store now follows Kite (audited)"
        );
        assert_eq!(reconciliation_failed("boom"), "reconciliation failed: boom");
        assert_eq!(
            reconcile_order_differs(&open, "COMPLETE", 10),
            "order MFTP7S1 on NSE:M&M: ours open, Kite COMPLETE 10/10 filled"
        );
        assert_eq!(
            reconcile_order_unknown(&live_order(OrderState::Submitting, 0)),
            "order MFTP7S1 on NSE:M&M is submitting here and unknown to Kite"
        );
        assert_eq!(
            reconcile_order_missing(&open),
            "order MFTP7S1 on NSE:M&M is open here but not in Kite's order book"
        );
        assert_eq!(
            reconcile_position_differs(&InstrumentKey::new("NSE", "INFY"), Product::Cnc, 5, -2),
            "position NSE:INFY CNC: ours 5, Kite -2"
        );
    }
}
