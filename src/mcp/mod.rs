//! The MCP layer: five rmcp servers (market_data, technical_analysis, news, zerodha read-only,
//! trade_log), their transports (in-process duplex, stdio, streamable HTTP) and the client hub
//! through which the LLM Analysis Agent ([`analyst`]) queries them as `<server>__<tool>`.
//!
//! Tool failures the model should read (no data, unknown symbol, news not configured, no Kite
//! session) come back as `isError: true` results whose text says what to do; malformed
//! arguments are JSON-RPC errors.

pub mod all;
pub mod analyst;
pub mod hub;
pub mod llm;
pub mod market_data;
pub mod news;
pub mod serve;
pub mod technical;
pub mod trade_log;
pub mod zerodha;

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};

use crate::clock::{Clock, IST};
use crate::config::Settings;
use crate::domain::{InstrumentKey, Interval};
use crate::store::Store;

/// The five servers, in the order `mft mcp list` shows them.
pub const SERVERS: [&str; 5] = [
    "market_data",
    "technical_analysis",
    "news",
    "zerodha",
    "trade_log",
];

/// Errors of the MCP layer (transports, the hub). Tool failures are tool results instead.
#[derive(Debug, thiserror::Error)]
pub enum McpError {
    #[error(
        "unknown MCP server {0:?}: expected one of market_data, technical_analysis, news, zerodha, trade_log, or all"
    )]
    UnknownServer(String),
    #[error("MCP server {server} did not start: {message}")]
    Start { server: String, message: String },
    #[error("MCP call {tool} failed: {message}")]
    Call { tool: String, message: String },
    #[error(
        "refusing to serve MCP over HTTP on {addr} without MCP_TOKEN: set MCP_TOKEN, or bind a loopback address (127.0.0.1)"
    )]
    TokenRequired { addr: String },
    #[error("cannot listen on {addr}: {source}; is the address valid and the port free?")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("MCP transport failed: {0}")]
    Transport(String),
}

/// What every server reads: the store, the settings, the clock and an HTTP client (news).
#[derive(Clone)]
pub struct McpContext {
    pub store: Store,
    pub settings: Arc<Settings>,
    pub clock: Arc<dyn Clock>,
    pub http: reqwest::Client,
}

impl McpContext {
    pub fn new(store: Store, settings: Arc<Settings>, clock: Arc<dyn Clock>) -> Self {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(20))
            .build()
            .unwrap_or_default();
        Self {
            store,
            settings,
            clock,
            http,
        }
    }
}

/// RFC 3339 in IST, the time format of every tool.
pub fn ist(ts: DateTime<Utc>) -> String {
    ts.with_timezone(&IST).to_rfc3339()
}

pub(crate) fn parse_symbol(s: &str) -> Result<InstrumentKey, String> {
    let s = s.trim();
    let with_exchange = if s.contains(':') {
        s.to_string()
    } else {
        format!("NSE:{s}")
    };
    with_exchange
        .to_uppercase()
        .parse::<InstrumentKey>()
        .map_err(|e| format!("symbol {s:?} is not EXCHANGE:TRADINGSYMBOL (e.g. NSE:INFY): {e}"))
}

pub(crate) fn parse_interval(s: &str) -> Result<Interval, String> {
    s.trim().parse::<Interval>().map_err(|_| {
        format!(
            "interval {s:?} is not one of minute, 3minute, 5minute, 10minute, 15minute, 30minute, 60minute, day"
        )
    })
}

/// A time bound: RFC 3339, `YYYY-MM-DD HH:MM[:SS]` (IST) or `YYYY-MM-DD` (IST; the start of the
/// day, or its end when `end_of_day`).
pub(crate) fn parse_time(s: &str, end_of_day: bool) -> Result<DateTime<Utc>, String> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    for f in [
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(n) = NaiveDateTime::parse_from_str(s, f)
            && let Some(t) = IST.from_local_datetime(&n).earliest()
        {
            return Ok(t.with_timezone(&Utc));
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        let time = if end_of_day {
            d.and_hms_opt(23, 59, 59)
        } else {
            d.and_hms_opt(0, 0, 0)
        };
        if let Some(n) = time
            && let Some(t) = IST.from_local_datetime(&n).earliest()
        {
            return Ok(t.with_timezone(&Utc));
        }
    }
    Err(format!(
        "time {s:?} is not RFC 3339 (2026-11-25T09:15:00+05:30) or a date (2026-11-25, IST)"
    ))
}

/// `f64` that JSON can carry: NaN and infinities become null.
pub(crate) fn finite(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

/// Known series as text for "no candles" messages, bounded.
pub(crate) async fn known_series_text(store: &Store) -> String {
    match store.candle_summary().await {
        Ok(rows) if rows.is_empty() => "none (import or fetch candles first)".into(),
        Ok(rows) => {
            let mut names: Vec<String> = rows
                .iter()
                .take(30)
                .map(|r| format!("{} {}", r.key, r.interval))
                .collect();
            if rows.len() > 30 {
                names.push(format!("… {} more", rows.len() - 30));
            }
            names.join(", ")
        }
        Err(e) => format!("(could not list them: {e})"),
    }
}
