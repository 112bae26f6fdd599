//! The report of a run, in `--out`: report.json, trades.csv, equity.png (the equity + drawdown
//! chart) and report.html (one self-contained page: styles inline, the chart as a data URI).
//! Files are written under a temporary name and renamed, report.json last, so a folder with a
//! report.json holds a whole report.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde_json::{Value, json};

use super::engine::Outcome;
use super::metrics::{Metrics, fmt_opt};
use super::{BacktestError, Spec};
use crate::clock::IST;
use crate::config::{ChartSettings, Settings};
use crate::domain::{Interval, Paise};

/// The CSV header of trades.csv, exactly.
pub const TRADES_HEADER: &str = "entry_time,exit_time,symbol,side,quantity,entry_price,exit_price,pnl,charges,bars_held,exit_reason";

/// What the report describes.
pub struct Context<'a> {
    pub run_id: &'a str,
    pub settings: &'a Settings,
    pub spec: &'a Spec,
}

fn opt(v: Option<f64>) -> Value {
    match v {
        Some(x) if x.is_finite() => json!(x),
        _ => json!("n/a"),
    }
}

fn rupees(p: Paise) -> Value {
    json!(p.as_rupees_f64())
}

fn ist(t: chrono::DateTime<chrono::Utc>) -> String {
    t.with_timezone(&IST).to_rfc3339()
}

/// The metrics as JSON, "n/a" for undefined values.
pub fn metrics_json(m: &Metrics) -> Value {
    json!({
        "starting_balance": m.starting_balance,
        "final_balance": m.final_balance,
        "profit_total_abs": m.profit_total_abs,
        "profit_total": m.profit_total,
        "cagr": opt(m.cagr),
        "sharpe": opt(m.sharpe),
        "sortino": opt(m.sortino),
        "calmar": opt(m.calmar),
        "max_drawdown_account": m.max_drawdown_account,
        "max_drawdown_abs": m.max_drawdown_abs,
        "drawdown_start": m.drawdown_start.map_or(json!("n/a"), |t| json!(ist(t))),
        "drawdown_end": m.drawdown_end.map_or(json!("n/a"), |t| json!(ist(t))),
        "max_drawdown_duration_days": m.max_drawdown_duration_days,
        "profit_factor": opt(m.profit_factor),
        "expectancy": opt(m.expectancy),
        "winrate": opt(m.winrate),
        "total_trades": m.total_trades,
        "wins": m.wins,
        "losses": m.losses,
        "profit_mean_abs": opt(m.profit_mean_abs),
        "best_trade_abs": opt(m.best_trade_abs),
        "worst_trade_abs": opt(m.worst_trade_abs),
        "holding_avg_days": opt(m.holding_avg_days),
        "bars_held_avg": opt(m.bars_held_avg),
        "exposure_pct": opt(m.exposure_pct),
        "total_charges": m.total_charges,
        "market_change": opt(m.market_change),
        "trading_days": m.trading_days,
    })
}

/// report.json.
pub fn report_json(ctx: &Context<'_>, o: &Outcome, m: &Metrics) -> Value {
    let b = &ctx.settings.backtest;
    json!({
        "run_id": ctx.run_id,
        "symbols": ctx.settings.trading.watchlist.iter().map(|k| k.to_string()).collect::<Vec<_>>(),
        "interval": ctx.spec.interval.as_str(),
        "from": ctx.spec.from.to_string(),
        "to": ctx.spec.to.to_string(),
        "llm": format!("{:?}", ctx.spec.llm).to_lowercase(),
        "settings": {
            "backtest": serde_json::to_value(b).unwrap_or(Value::Null),
            "strategy": serde_json::to_value(&ctx.settings.strategy).unwrap_or(Value::Null),
            "risk": serde_json::to_value(&ctx.settings.risk).unwrap_or(Value::Null),
        },
        "conventions": {
            "returns": "daily, from the equity at the last bar of each IST date",
            "annualisation": "sqrt(252)",
            "risk_free_rate": 0.0,
            "sortino_downside": "sqrt(mean(min(r, 0)^2))",
            "cagr_year_days": 365.25,
            "open_positions": "marked at the last close",
            "pnl": "net of charges",
        },
        "bars": o.bars,
        "metrics": metrics_json(m),
        "open_positions": o.open.iter().map(|t| json!({
            "entry_time": ist(t.entry_time),
            "symbol": t.key.to_string(),
            "side": t.side.as_str(),
            "quantity": t.quantity,
            "entry_price": rupees(t.entry_price),
            "last_close": rupees(t.last_close),
            "unrealized_pnl": rupees(t.unrealized),
            "charges": rupees(t.charges),
            "bars_held": t.bars_held,
        })).collect::<Vec<_>>(),
        "refused_entries": o.refused,
        "skipped_entries": o.skipped,
        "unfilled_orders_at_end": o.unfilled,
    })
}

/// trades.csv (closed trades; times RFC 3339 in IST, prices and P&L in rupees).
pub fn trades_csv(o: &Outcome) -> String {
    let mut s = String::new();
    s.push_str(TRADES_HEADER);
    s.push('\n');
    for t in &o.trades {
        let reason = if t.exit_reason.contains([',', '"']) {
            format!("\"{}\"", t.exit_reason.replace('"', "\"\""))
        } else {
            t.exit_reason.clone()
        };
        let _ = writeln!(
            s,
            "{},{},{},{},{},{},{},{},{},{},{}",
            ist(t.entry_time),
            ist(t.exit_time),
            t.key,
            t.side.as_str(),
            t.quantity,
            t.entry_price.to_decimal_string(),
            t.exit_price.to_decimal_string(),
            t.pnl.to_decimal_string(),
            t.charges.to_decimal_string(),
            t.bars_held,
            reason
        );
    }
    s
}

fn pct(x: f64) -> String {
    format!("{:.2}%", x * 100.0)
}

fn opt_pct(x: Option<f64>) -> String {
    x.map_or("n/a".into(), pct)
}

/// The lines of the summary (stdout, Telegram, the HTML page).
pub fn summary_lines(ctx: &Context<'_>, o: &Outcome, m: &Metrics) -> Vec<(String, String)> {
    let r = |v: f64| Paise::from_rupees_f64(v).to_string();
    vec![
        ("Run".into(), ctx.run_id.to_string()),
        (
            "Instruments".into(),
            ctx.settings
                .trading
                .watchlist
                .iter()
                .map(|k| k.to_string())
                .collect::<Vec<_>>()
                .join(", "),
        ),
        (
            "Span".into(),
            format!(
                "{} to {} ({}, {} bars)",
                ctx.spec.from, ctx.spec.to, ctx.spec.interval, o.bars
            ),
        ),
        ("Starting balance".into(), r(m.starting_balance)),
        (
            "Final equity".into(),
            format!(
                "{} ({} open position(s) at the last close)",
                r(m.final_balance),
                o.open.len()
            ),
        ),
        (
            "Net P&L".into(),
            format!("{} ({})", r(m.profit_total_abs), pct(m.profit_total)),
        ),
        ("CAGR".into(), opt_pct(m.cagr)),
        ("Sharpe (daily, √252, rf 0)".into(), fmt_opt(m.sharpe, 2)),
        ("Sortino (daily, √252, rf 0)".into(), fmt_opt(m.sortino, 2)),
        ("Calmar".into(), fmt_opt(m.calmar, 2)),
        (
            "Max drawdown".into(),
            format!(
                "{} ({}), longest underwater {:.1} days",
                pct(m.max_drawdown_account),
                r(m.max_drawdown_abs),
                m.max_drawdown_duration_days
            ),
        ),
        (
            "Trades".into(),
            format!(
                "{} closed ({} won, {} lost)",
                m.total_trades, m.wins, m.losses
            ),
        ),
        ("Win rate".into(), opt_pct(m.winrate)),
        ("Profit factor".into(), fmt_opt(m.profit_factor, 2)),
        (
            "Expectancy (per trade)".into(),
            m.expectancy.map_or("n/a".into(), r),
        ),
        (
            "Best / worst trade".into(),
            format!(
                "{} / {}",
                m.best_trade_abs.map_or("n/a".into(), r),
                m.worst_trade_abs.map_or("n/a".into(), r)
            ),
        ),
        (
            "Average hold".into(),
            format!(
                "{} days ({} bars)",
                fmt_opt(m.holding_avg_days, 1),
                fmt_opt(m.bars_held_avg, 1)
            ),
        ),
        (
            "Exposure".into(),
            m.exposure_pct.map_or("n/a".into(), |x| format!("{x:.1}%")),
        ),
        ("Total charges".into(), r(m.total_charges)),
        ("Buy and hold".into(), opt_pct(m.market_change)),
        ("Refused by risk".into(), refused_text(ctx, o)),
    ]
}

fn refused_text(ctx: &Context<'_>, o: &Outcome) -> String {
    if o.refused.is_empty() {
        return "none".into();
    }
    let mut t = o
        .refused
        .iter()
        .map(|(k, v)| format!("{k} x{v}"))
        .collect::<Vec<_>>()
        .join(", ");
    if o.refused.contains_key("OUTSIDE_TRADING_WINDOW") && ctx.spec.interval == Interval::Day {
        t.push_str(&format!(
            " (daily bars fill at 09:15 IST; [risk] trading_window is {} {})",
            ctx.settings.risk.trading_days, ctx.settings.risk.trading_window
        ));
    }
    t
}

pub fn summary_text(ctx: &Context<'_>, o: &Outcome, m: &Metrics) -> String {
    let lines = summary_lines(ctx, o, m);
    let w = lines
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0);
    let mut s = String::new();
    for (k, v) in lines {
        let pad = w - k.chars().count();
        let _ = writeln!(s, "{k}{}  {v}", " ".repeat(pad));
    }
    s
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// report.html: everything inline, so it opens from disk anywhere.
pub fn report_html(ctx: &Context<'_>, o: &Outcome, m: &Metrics, png: Option<&[u8]>) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>MFT-1 backtest {}</title><style>\
         body{{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}}\
         table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}\
         th{{background:#f3f3f3}}td:first-child,th:first-child{{text-align:left}}img{{max-width:100%}}\
         .neg{{color:#b00}}.pos{{color:#070}}</style></head><body>\n",
        esc(ctx.run_id)
    );
    let _ = writeln!(h, "<h1>Backtest {}</h1>", esc(ctx.run_id));
    h.push_str("<table><tbody>\n");
    for (k, v) in summary_lines(ctx, o, m) {
        let _ = writeln!(h, "<tr><th>{}</th><td>{}</td></tr>", esc(&k), esc(&v));
    }
    h.push_str("</tbody></table>\n");
    if let Some(png) = png {
        let b64 = base64::engine::general_purpose::STANDARD.encode(png);
        let _ = writeln!(
            h,
            "<h2>Equity and drawdown</h2><img alt=\"equity and drawdown\" src=\"data:image/png;base64,{b64}\">"
        );
    }
    let _ = writeln!(h, "<h2>Trades ({})</h2><table><thead><tr>", o.trades.len());
    for c in TRADES_HEADER.split(',') {
        let _ = write!(h, "<th>{c}</th>");
    }
    h.push_str("</tr></thead><tbody>\n");
    for t in &o.trades {
        let cls = if t.pnl.0 < 0 { "neg" } else { "pos" };
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td class=\"{cls}\">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&ist(t.entry_time)),
            esc(&ist(t.exit_time)),
            esc(&t.key.to_string()),
            t.side.as_str(),
            t.quantity,
            t.entry_price.to_decimal_string(),
            t.exit_price.to_decimal_string(),
            t.pnl.to_decimal_string(),
            t.charges.to_decimal_string(),
            t.bars_held,
            esc(&t.exit_reason)
        );
    }
    h.push_str("</tbody></table>\n");
    if !o.open.is_empty() {
        h.push_str("<h2>Open at the end (marked at the last close)</h2><table><thead><tr><th>symbol</th><th>entry_time</th><th>side</th><th>quantity</th><th>entry_price</th><th>last_close</th><th>unrealized</th></tr></thead><tbody>\n");
        for t in &o.open {
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&t.key.to_string()),
                esc(&ist(t.entry_time)),
                t.side.as_str(),
                t.quantity,
                t.entry_price.to_decimal_string(),
                t.last_close.to_decimal_string(),
                t.unrealized.to_decimal_string()
            );
        }
        h.push_str("</tbody></table>\n");
    }
    h.push_str("<p>Sharpe and Sortino use daily returns (equity at the last bar of each IST date), annualised with √252, risk-free rate 0. P&amp;L is net of charges.</p>\n</body></html>\n");
    h
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), BacktestError> {
    let tmp = path.with_extension(format!(
        "{}.tmp",
        path.extension().and_then(|e| e.to_str()).unwrap_or("")
    ));
    let err = |e: std::io::Error| BacktestError::Report {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    std::fs::write(&tmp, bytes).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

/// Equity points (rupees) thinned to at most `max` for the chart (the last point kept).
fn chart_points(o: &Outcome, max: usize) -> Vec<(chrono::DateTime<chrono::Utc>, f64)> {
    let n = o.equity.len();
    let step = n.div_ceil(max.max(1)).max(1);
    let mut pts: Vec<_> = o
        .equity
        .iter()
        .step_by(step)
        .map(|(t, e)| (*t, e.as_rupees_f64()))
        .collect();
    if let Some(&(t, e)) = o.equity.last()
        && pts.last().map(|p| p.0) != Some(t)
    {
        pts.push((t, e.as_rupees_f64()));
    }
    pts
}

/// Writes the four files into `dir` (created).
pub fn write_all(
    dir: &Path,
    ctx: &Context<'_>,
    o: &Outcome,
    m: &Metrics,
    charts: &ChartSettings,
) -> Result<PathBuf, BacktestError> {
    std::fs::create_dir_all(dir).map_err(|e| BacktestError::Report {
        path: dir.to_path_buf(),
        message: e.to_string(),
    })?;
    write_file(&dir.join("trades.csv"), trades_csv(o).as_bytes())?;
    let title = format!(
        "Backtest {} · {}",
        ctx.settings
            .trading
            .watchlist
            .iter()
            .map(|k| k.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        ctx.spec.interval
    );
    let pts = chart_points(o, 4000);
    let png =
        crate::chart::render_equity(&pts, &title, charts.width, charts.height).map_err(|e| {
            BacktestError::Report {
                path: dir.join("equity.png"),
                message: e.to_string(),
            }
        })?;
    write_file(&dir.join("equity.png"), &png)?;
    write_file(
        &dir.join("report.html"),
        report_html(ctx, o, m, Some(&png)).as_bytes(),
    )?;
    let json = serde_json::to_string_pretty(&report_json(ctx, o, m)).unwrap_or_default();
    write_file(&dir.join("report.json"), json.as_bytes())?;
    Ok(dir.to_path_buf())
}
