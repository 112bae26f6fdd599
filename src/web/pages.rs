//! The dashboard's HTML, rendered on the server: one layout (navigation, state badges, the live
//! indicator) around each page's `<main>`. Every dynamic value is escaped; texts shared with
//! Telegram (captions, outcome lines, button labels) come from `crate::texts`.

use std::collections::HashMap;
use std::fmt::Write as _;

use chrono::{DateTime, Utc};

use crate::config::RiskSettings;
use crate::domain::{Order, OrderPurpose, OrderState, Paise, Proposal, ProposalStatus};
use crate::ports::{PositionView, StatusReport};
use crate::store::{ActionEntry, AlertEntry, ScanRun};
use crate::texts::{self, esc, ist_datetime};

/// The pages, for the navigation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Overview,
    Queue,
    History,
    Trades,
    Risk,
    Alerts,
    Kill,
    Login,
}

const NAV: &[(Nav, &str, &str)] = &[
    (Nav::Overview, "/", "Overview"),
    (Nav::Queue, "/queue", "Queue"),
    (Nav::History, "/history", "History"),
    (Nav::Trades, "/trades", "Trades"),
    (Nav::Risk, "/risk", "Risk"),
    (Nav::Alerts, "/alerts", "Alerts"),
    (Nav::Kill, "/kill", "Kill"),
];

/// What every page needs besides its own content.
#[derive(Debug, Clone, Default)]
pub struct Ctx {
    /// The request may act (token given).
    pub operator: bool,
    /// The session's CSRF token for forms (cookie logins).
    pub csrf: Option<String>,
    /// A token is configured (so a login form makes sense).
    pub token_configured: bool,
    /// A one-line result of the last action (from `?flash=`).
    pub flash: Option<String>,
    /// The status for the header badges, if it could be read.
    pub status: Option<StatusReport>,
    /// This page's path, to come back to after an action.
    pub path: String,
    /// The service's clock at rendering: countdowns run against it, not the browser's clock.
    pub now: Option<DateTime<Utc>>,
}

pub fn signed(p: Paise) -> String {
    if p.0 > 0 {
        format!("+{p}")
    } else {
        p.to_string()
    }
}

fn pnl_class(p: Paise) -> &'static str {
    match p.0.signum() {
        1 => "pos",
        -1 => "neg",
        _ => "",
    }
}

/// The whole document around `main`.
pub fn layout(title: &str, nav: Nav, ctx: &Ctx, main: &str) -> String {
    let mut out = String::with_capacity(main.len() + 4096);
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · MFT-1</title>\
         <link rel=\"stylesheet\" href=\"/assets/app.css\">\
         <script src=\"/assets/app.js\" defer></script></head>\n\
         <body data-live=\"{}\" data-now=\"{}\">\n<header><div class=\"top\"><a class=\"brand\" href=\"/\">MFT-1</a>",
        esc(title),
        if matches!(nav, Nav::Login) {
            "off"
        } else {
            "on"
        },
        ctx.now.map(|t| t.to_rfc3339()).unwrap_or_default()
    );
    if let Some(s) = &ctx.status {
        let _ = write!(out, "<span class=\"badge mode\">{}</span>", esc(&s.mode));
        if s.halted {
            out.push_str("<span class=\"badge halted\" id=\"halted-badge\">HALTED</span>");
        } else if s.paused {
            out.push_str("<span class=\"badge paused\">PAUSED</span>");
        }
    }
    out.push_str(
        "<span id=\"live\" class=\"live\" title=\"live updates\" role=\"status\">connecting…</span>",
    );
    if ctx.operator && ctx.csrf.is_some() {
        let _ = write!(
            out,
            "<form method=\"post\" action=\"/logout\" class=\"inline\">{}<button class=\"link\">Log out</button></form>",
            csrf_field(ctx)
        );
    } else if !ctx.operator && ctx.token_configured {
        out.push_str("<a class=\"login\" href=\"/login\">Log in</a>");
    }
    out.push_str("</div><nav>");
    for (n, href, label) in NAV {
        let mut label = label.to_string();
        if *n == Nav::Queue
            && let Some(s) = &ctx.status
            && !s.pending.is_empty()
        {
            label = format!("{label} ({})", s.pending.len());
        }
        let _ = write!(
            out,
            "<a href=\"{href}\"{}>{}</a>",
            if *n == nav {
                " class=\"active\" aria-current=\"page\""
            } else {
                ""
            },
            esc(&label)
        );
    }
    out.push_str("</nav></header>\n<main id=\"main\">\n");
    if let Some(f) = &ctx.flash {
        let _ = writeln!(out, "<p class=\"flash\" role=\"status\">{}</p>", esc(f));
    }
    if !ctx.operator && !ctx.token_configured {
        out.push_str(
            "<p class=\"note\">Read-only: this dashboard has no STATUS_TOKEN, so it answers on \
             loopback only and cannot act. Set STATUS_TOKEN to approve, reject, pause or kill here.</p>\n",
        );
    }
    out.push_str(main);
    out.push_str("\n</main>\n<div id=\"toast\" role=\"status\" aria-live=\"polite\"></div>\n</body></html>\n");
    out
}

fn csrf_field(ctx: &Ctx) -> String {
    match &ctx.csrf {
        Some(t) => format!("<input type=\"hidden\" name=\"csrf\" value=\"{}\">", esc(t)),
        None => String::new(),
    }
}

/// A one-button form posting to `action`.
fn button(ctx: &Ctx, action: &str, label: &str, class: &str) -> String {
    format!(
        "<form method=\"post\" action=\"{}\" class=\"act\">{}<input type=\"hidden\" name=\"back\" value=\"{}\">\
         <button class=\"{}\">{}</button></form>",
        esc(action),
        csrf_field(ctx),
        esc(&ctx.path),
        class,
        esc(label)
    )
}

fn bar(used: Paise, limit: Paise) -> String {
    let pct = if limit.0 <= 0 {
        0.0
    } else {
        (used.0 as f64 * 100.0 / limit.0 as f64).clamp(0.0, 100.0)
    };
    // A native meter: green below 75 %, amber up to the limit, red at it (no inline styles,
    // which the page's content security policy forbids).
    format!(
        "<meter class=\"bar\" min=\"0\" max=\"100\" low=\"75\" high=\"99.9\" optimum=\"0\" \
         value=\"{pct:.1}\" title=\"{pct:.0}% used\">{pct:.0}%</meter>"
    )
}

fn count_bar(used: u32, limit: u32) -> String {
    bar(Paise(i64::from(used)), Paise(i64::from(limit)))
}

pub fn positions_table(list: &[PositionView]) -> String {
    if list.is_empty() {
        return "<p class=\"empty\">No open positions.</p>\n".into();
    }
    let mut out = String::from(
        "<div class=\"scroll\"><table id=\"positions\"><thead><tr><th>Instrument</th><th>Qty</th>\
         <th>Avg</th><th>Last</th><th>P&amp;L</th><th>Stop</th><th>Target</th></tr></thead><tbody>\n",
    );
    for v in list {
        let p = &v.position;
        let opt = |x: Option<Paise>| x.map(|x| x.to_string()).unwrap_or_else(|| "-".into());
        let _ = writeln!(
            out,
            "<tr><td>{} <small>{}</small></td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num {}\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            esc(&p.key.to_string()),
            p.product.as_str(),
            p.quantity,
            p.avg_price,
            match (v.last_price, v.price_age_seconds) {
                (Some(l), Some(a)) => format!("{l} <small>({} old)</small>", crate::texts::age(a)),
                (l, _) => opt(l),
            },
            pnl_class(v.unrealized),
            signed(v.unrealized),
            opt(p.stop),
            opt(p.target)
        );
    }
    out.push_str("</tbody></table></div>\n");
    out
}

/// What the overview knows about the broker session. Paper mode needs none; the Kite session
/// store (login flow) is not part of this build, so live mode shows that plainly.
/// The Kite session as `/status` reports it ("session active until 06:00 IST tomorrow (user
/// AB1234)", "expired: tap Log in"), or why there is none.
fn kite_session_line(s: &StatusReport) -> String {
    match &s.kite {
        Some(k) => esc(k),
        None if s.mode == "paper" => {
            "not configured: paper trading uses stored prices (set ZERODHA_API_KEY for live data)"
                .into()
        }
        None => "not configured: set ZERODHA_API_KEY and log in".into(),
    }
}

pub fn overview(ctx: &Ctx, s: &StatusReport) -> String {
    let mut out = String::from("<h1>Overview</h1>\n<section class=\"grid\">");
    let state = if s.halted {
        "<strong class=\"neg\">HALTED</strong>: new entries blocked until Resume"
    } else if s.paused {
        "<strong>Paused</strong>: no new proposals until Resume"
    } else {
        "<strong class=\"pos\">Active</strong>"
    };
    let last = match &s.last_scan {
        Some(l) => format!(
            "{}: {} instruments, {} proposals, {} errors{}",
            ist_datetime(l.started_at),
            l.instruments,
            l.proposals,
            l.errors,
            if l.finished_at.is_none() {
                " (running)"
            } else {
                ""
            }
        ),
        None => "none yet".into(),
    };
    let next = s
        .next_scan
        .map(ist_datetime)
        .unwrap_or_else(|| "not scheduled".into());
    let _ = write!(
        out,
        "<div class=\"card\"><h2>System</h2><dl>\
         <dt>Mode</dt><dd id=\"mode\">{}</dd>\
         <dt>Trading</dt><dd id=\"state\">{}</dd>\
         <dt>Kite session</dt><dd>{}</dd>\
         <dt>Last scan</dt><dd id=\"last-scan\">{}</dd>\
         <dt>Next scan</dt><dd>{}</dd></dl>",
        esc(&s.mode),
        state,
        kite_session_line(s),
        esc(&last),
        esc(&next)
    );
    if ctx.operator {
        out.push_str("<div class=\"actions\">");
        if s.halted || s.paused {
            out.push_str(&button(ctx, "/resume", "Resume", "ok"));
        } else {
            out.push_str(&button(ctx, "/pause", "Pause", ""));
        }
        if !s.halted && !s.paused {
            out.push_str(&button(ctx, "/scan", "Scan now", ""));
        }
        out.push_str("<a class=\"button danger\" href=\"/kill\">Kill…</a></div>");
    }
    out.push_str("</div>");
    let _ = write!(
        out,
        "<div class=\"card\"><h2>Today</h2><dl>\
         <dt>Day P&amp;L</dt><dd id=\"day-pnl\" class=\"{}\">{}</dd>\
         <dt>Realized P&amp;L</dt><dd id=\"realized\" class=\"{}\">{}</dd>\
         <dt>Unrealized P&amp;L</dt><dd id=\"unrealized\" class=\"{}\">{}</dd>\
         <dt>Daily loss used</dt><dd id=\"loss\">{} of {}{}</dd>\
         <dt>Orders today</dt><dd id=\"orders-today\">{} of {}</dd></dl></div>",
        pnl_class(s.day_pnl),
        signed(s.day_pnl),
        pnl_class(s.realized_today),
        signed(s.realized_today),
        pnl_class(s.unrealized),
        signed(s.unrealized),
        s.loss_used,
        s.loss_limit,
        bar(s.loss_used, s.loss_limit),
        s.orders_today,
        s.orders_limit
    );
    out.push_str("</section>\n");
    let _ = write!(
        out,
        "<h2>Open positions ({})</h2>\n{}",
        s.positions.len(),
        positions_table(&s.positions)
    );
    let _ = writeln!(out, "<h2>Pending proposals ({})</h2>", s.pending.len());
    if s.pending.is_empty() {
        out.push_str("<p class=\"empty\">None.</p>\n");
    } else {
        out.push_str("<ul class=\"plain\">");
        for p in &s.pending {
            let _ = write!(
                out,
                "<li><a href=\"/queue#p{}\">#{} {} {} {}</a> — {}</li>",
                p.id,
                p.id,
                p.side,
                p.quantity,
                esc(&p.key.to_string()),
                countdown(p.expires_at)
            );
        }
        out.push_str("</ul>\n");
    }
    out
}

fn countdown(expires_at: DateTime<Utc>) -> String {
    format!(
        "<span class=\"countdown\" data-expires=\"{}\">expires {}</span>",
        expires_at.to_rfc3339(),
        esc(&texts::ist_time(expires_at))
    )
}

pub fn queue(ctx: &Ctx, pending: &[Proposal], capital: Paise) -> String {
    let mut out = format!("<h1>Proposal queue ({})</h1>\n", pending.len());
    if pending.is_empty() {
        out.push_str(
            "<p class=\"empty\" id=\"queue-empty\">No pending proposals. New ones appear here as \
             soon as a scan makes them.</p>\n",
        );
        return out;
    }
    out.push_str("<div class=\"cards\">");
    for p in pending {
        let _ = write!(
            out,
            "<article class=\"proposal card\" id=\"p{id}\" data-id=\"{id}\">",
            id = p.id
        );
        if p.chart_path.is_some() {
            let _ = write!(
                out,
                "<img class=\"chart\" src=\"/proposals/{id}/chart.png\" alt=\"chart of proposal #{id}\" \
                 width=\"1280\" height=\"800\" loading=\"lazy\">",
                id = p.id
            );
        }
        let _ = write!(
            out,
            "<div class=\"caption\">{}</div><p>{}</p>",
            texts::proposal_caption(p, capital, None),
            countdown(p.expires_at)
        );
        if ctx.operator {
            out.push_str("<div class=\"actions\">");
            out.push_str(&button(
                ctx,
                &format!("/proposals/{}/approve", p.id),
                texts::APPROVE,
                "ok approve",
            ));
            out.push_str(&button(
                ctx,
                &format!("/proposals/{}/reject", p.id),
                texts::REJECT,
                "reject",
            ));
            out.push_str("</div>");
        }
        out.push_str("</article>");
    }
    out.push_str("</div>\n");
    out
}

/// The denial code of a vetoed proposal's stored outcome ("CODE: explanation").
fn veto_code(p: &Proposal) -> Option<&str> {
    if p.status != ProposalStatus::Vetoed {
        return None;
    }
    p.outcome.as_deref()?.split(':').next().map(str::trim)
}

pub fn history(
    list: &[Proposal],
    actions: &[ActionEntry],
    traces: &HashMap<i64, String>,
) -> String {
    let mut out = String::from("<h1>History</h1>\n");
    if list.is_empty() {
        out.push_str("<p class=\"empty\">No proposals yet.</p>\n");
        return out;
    }
    out.push_str(
        "<div class=\"scroll\"><table id=\"history\"><thead><tr><th>#</th><th>Created</th>\
         <th>Proposal</th><th>Outcome</th><th>Veto</th><th>Decided by</th><th>Detail</th>\
         <th>Trace</th></tr></thead><tbody>\n",
    );
    for p in list {
        let by: Vec<&str> = actions
            .iter()
            .filter(|a| a.proposal_id == Some(p.id) && !a.result.starts_with("Already"))
            .map(|a| a.actor.as_str())
            .collect();
        let by = match (by.first(), p.status) {
            (Some(a), _) => (*a).to_string(),
            (None, ProposalStatus::Expired) => "expiry".into(),
            (None, _) => String::new(),
        };
        let trace = traces
            .get(&p.id)
            .map(|href| format!("<a href=\"{}\">trace</a>", esc(href)))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "<tr data-id=\"{}\"><td>{}</td><td>{}</td><td>{} {} {} @ {}</td>\
             <td class=\"status-{}\">{}</td><td>{}</td><td>{}</td><td class=\"detail\">{}</td><td>{}</td></tr>",
            p.id,
            p.id,
            esc(&ist_datetime(p.created_at)),
            p.side,
            p.quantity,
            esc(&p.key.to_string()),
            p.entry,
            p.status.as_str(),
            p.status.as_str(),
            veto_code(p).map(esc).unwrap_or_default(),
            esc(&by),
            esc(&texts::truncate_chars(
                p.outcome.as_deref().unwrap_or(""),
                160
            )),
            trace
        );
    }
    out.push_str("</tbody></table></div>\n");
    out
}

fn order_price(o: &Order) -> String {
    match &o.state {
        OrderState::Filled { avg_price, .. } => avg_price.to_string(),
        _ => o.request.reference_price.to_string(),
    }
}

pub fn trades(
    orders: &[Order],
    realized: &HashMap<i64, Paise>,
    has_equity: bool,
    scans: &[ScanRun],
) -> String {
    let mut out = String::from("<h1>Trades</h1>\n<h2>Equity</h2>\n");
    if has_equity {
        out.push_str(
            "<img class=\"chart\" id=\"equity\" src=\"/equity.png\" alt=\"equity curve and drawdown\" \
             width=\"1280\" height=\"640\">\n",
        );
    } else {
        out.push_str(
            "<p class=\"empty\">No fills yet: the equity curve starts with the first trade.</p>\n",
        );
    }
    let _ = writeln!(out, "<h2>Orders ({})</h2>", orders.len());
    if orders.is_empty() {
        out.push_str("<p class=\"empty\" id=\"no-orders\">No orders yet.</p>\n");
    } else {
        out.push_str(
            "<div class=\"scroll\"><table id=\"orders\"><thead><tr><th>Time</th><th>Order</th>\
             <th>Side</th><th>Qty</th><th>Instrument</th><th>Price</th><th>State</th>\
             <th>Realized</th><th>Why</th></tr></thead><tbody>\n",
        );
        for o in orders {
            let id = match &o.state {
                OrderState::Open { broker_order_id }
                | OrderState::Filled {
                    broker_order_id, ..
                } => broker_order_id.clone(),
                _ => format!("#{}", o.id),
            };
            let why = match &o.request.purpose {
                OrderPurpose::Entry { proposal_id } => format!("entry, proposal #{proposal_id}"),
                OrderPurpose::Exit { reason } => format!("exit: {reason}"),
            };
            let _ = writeln!(
                out,
                "<tr class=\"order-{}\"><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td>\
                 <td>{}</td><td class=\"num\">{}</td><td>{}</td><td class=\"num {}\">{}</td><td>{}</td></tr>",
                o.state.name(),
                esc(&ist_datetime(o.created_at)),
                esc(&id),
                o.request.side,
                o.request.quantity,
                esc(&o.request.key.to_string()),
                order_price(o),
                o.state.name(),
                realized.get(&o.id).map_or("", |p| pnl_class(*p)),
                realized
                    .get(&o.id)
                    .filter(|p| p.0 != 0 || matches!(o.request.purpose, OrderPurpose::Exit { .. }))
                    .map(|p| signed(*p))
                    .unwrap_or_default(),
                esc(&why)
            );
        }
        out.push_str("</tbody></table></div>\n");
    }
    out.push_str("<h2>Scan log</h2>\n");
    if scans.is_empty() {
        out.push_str("<p class=\"empty\">No scans yet.</p>\n");
    } else {
        out.push_str(
            "<div class=\"scroll\"><table id=\"scans\"><thead><tr><th>Started</th><th>Took</th>\
             <th>Instruments</th><th>Proposals</th><th>Errors</th></tr></thead><tbody>\n",
        );
        for s in scans {
            let took = match s.finished_at {
                Some(f) => format!(
                    "{:.1} s",
                    (f - s.started_at).num_milliseconds() as f64 / 1000.0
                ),
                None => "running".into(),
            };
            let errors = match &s.error_text {
                Some(t) if s.errors > 0 => {
                    format!("{}: {}", s.errors, texts::truncate_chars(t, 200))
                }
                _ => s.errors.to_string(),
            };
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
                esc(&ist_datetime(s.started_at)),
                took,
                s.instruments,
                s.proposals,
                esc(&errors)
            );
        }
        out.push_str("</tbody></table></div>\n");
    }
    out
}

pub fn risk(r: &RiskSettings, s: &StatusReport) -> String {
    let mut out = String::from(
        "<h1>Risk limits</h1>\n<div class=\"scroll\"><table id=\"limits\"><thead><tr><th>Limit</th>\
         <th>Value</th><th>Used now</th></tr></thead><tbody>\n",
    );
    let largest = s
        .positions
        .iter()
        .map(|v| {
            let price = v.last_price.unwrap_or(v.position.avg_price);
            price * v.position.quantity.abs()
        })
        .max()
        .unwrap_or(Paise::ZERO);
    let open = s.positions.len() as u32;
    let allowed = if r.allowed_instruments.is_empty() {
        "the watchlist".to_string()
    } else {
        r.allowed_instruments
            .iter()
            .map(|k| k.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let rows = [
        (
            "Max daily loss",
            r.max_daily_loss.to_string(),
            format!("{}{}", s.loss_used, bar(s.loss_used, r.max_daily_loss)),
        ),
        (
            "Max orders per day",
            r.max_orders_per_day.to_string(),
            format!(
                "{}{}",
                s.orders_today,
                count_bar(s.orders_today, r.max_orders_per_day)
            ),
        ),
        (
            "Max open positions",
            r.max_open_positions.to_string(),
            format!("{open}{}", count_bar(open, r.max_open_positions)),
        ),
        (
            "Max position value",
            r.max_position_value.to_string(),
            format!("largest {largest}{}", bar(largest, r.max_position_value)),
        ),
        (
            "Max price deviation",
            format!("{:.2}%", r.max_price_deviation_pct),
            "checked at each approval".into(),
        ),
        (
            "Trading window",
            format!("{} IST, {}", r.trading_window, r.trading_days),
            String::new(),
        ),
        ("Allowed instruments", esc(&allowed), String::new()),
        (
            "Halt",
            if s.halted {
                "HALTED".into()
            } else {
                "not halted".into()
            },
            String::new(),
        ),
    ];
    for (name, value, used) in rows {
        let _ = writeln!(
            out,
            "<tr><th>{name}</th><td>{value}</td><td>{used}</td></tr>"
        );
    }
    out.push_str("</tbody></table></div>\n");
    out
}

pub fn alerts(list: &[AlertEntry]) -> String {
    let mut out = String::from("<h1>Alerts sent</h1>\n");
    if list.is_empty() {
        out.push_str("<p class=\"empty\">No alerts yet.</p>\n");
        return out;
    }
    out.push_str("<ul class=\"alerts\" id=\"alerts\">");
    for a in list {
        let status = if a.delivered {
            String::new()
        } else {
            format!(
                " <span class=\"neg\">not delivered: {}</span>",
                esc(a.error.as_deref().unwrap_or("unknown error"))
            )
        };
        // The text is the Telegram HTML the operator got: its values are escaped already and
        // its only tags are <b>/<i>.
        let _ = write!(
            out,
            "<li class=\"alert-{}\"><time>{}</time>{}<div class=\"caption\">{}</div></li>",
            esc(&a.kind),
            esc(&ist_datetime(a.ts)),
            status,
            a.text
        );
    }
    out.push_str("</ul>\n");
    out
}

pub fn kill(ctx: &Ctx, s: Option<&StatusReport>) -> String {
    let mut out = String::from("<h1>Kill switch</h1>\n");
    let _ = write!(
        out,
        "<p class=\"warning\">{}</p>",
        esc(&texts::kill_confirm())
            .replace('\n', "<br>")
            .replace(" within 2 minutes", "")
            .replace("Tap ", "Press ")
    );
    if let Some(s) = s {
        let _ = write!(
            out,
            "<p>Now: {} open position(s), {} pending proposal(s){}.</p>",
            s.positions.len(),
            s.pending.len(),
            if s.halted { ", already HALTED" } else { "" }
        );
    }
    if ctx.operator {
        let _ = write!(
            out,
            "<form method=\"post\" action=\"/kill\" class=\"act kill\" id=\"kill-form\">{}\
             <input type=\"hidden\" name=\"back\" value=\"/\"><input type=\"hidden\" name=\"confirm\" value=\"yes\">\
             <button class=\"danger\" id=\"confirm-kill\">{}</button> <a class=\"button\" href=\"/\">{}</a></form>",
            csrf_field(ctx),
            esc(texts::CONFIRM_KILL),
            esc(texts::CANCEL)
        );
    } else {
        out.push_str("<p>Log in with STATUS_TOKEN to use the kill switch.</p>");
    }
    out
}

pub fn login(message: Option<&str>, next: &str, token_configured: bool) -> String {
    let mut out = String::from("<h1>Log in</h1>\n");
    if let Some(m) = message {
        let _ = write!(out, "<p class=\"error\" role=\"alert\">{}</p>", esc(m));
    }
    if !token_configured {
        out.push_str(
            "<p>This dashboard has no STATUS_TOKEN: it is read-only on loopback. Set \
             STATUS_TOKEN and restart to log in and act.</p>",
        );
        return out;
    }
    let _ = write!(
        out,
        "<form method=\"post\" action=\"/login\" class=\"login\" id=\"login-form\">\
         <input type=\"hidden\" name=\"next\" value=\"{}\">\
         <label for=\"token\">STATUS_TOKEN</label>\
         <input type=\"password\" id=\"token\" name=\"token\" autocomplete=\"current-password\" required autofocus>\
         <button class=\"ok\" id=\"login-button\">Log in</button></form>\
         <p class=\"note\">The token is in the service's settings (STATUS_TOKEN), or in the login \
         URL it printed at start when it generated one.</p>",
        esc(next)
    );
    out
}
