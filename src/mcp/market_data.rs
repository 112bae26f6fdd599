//! MCP server `market_data`: instruments, stored candles (closed only), last prices and the
//! list of stored series.

use rmcp::handler::server::{router::tool::ToolRouter, wrapper::Parameters};
use rmcp::{Json, ServerHandler, schemars, tool, tool_handler, tool_router};
use serde::{Deserialize, Serialize};

use super::{McpContext, finite, ist, known_series_text, parse_interval, parse_symbol, parse_time};
use crate::agents::analyst::closed_candles;
use crate::domain::Interval;

/// Most candles one get_candles call returns.
pub const MAX_CANDLES: usize = 2000;
const DEFAULT_CANDLES: usize = 200;

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct ListInstrumentsArgs {
    /// Part of the trading symbol or company name, e.g. "INFY" or "Infosys"
    pub query: String,
    /// Only this exchange, e.g. "NSE"
    pub exchange: Option<String>,
    /// At most this many (default 20, max 200)
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct InstrumentInfo {
    /// EXCHANGE:TRADINGSYMBOL
    pub symbol: String,
    pub name: String,
    pub exchange: String,
    pub instrument_type: String,
    pub segment: String,
    pub tick_size: f64,
    pub lot_size: i64,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Instruments {
    pub instruments: Vec<InstrumentInfo>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct GetCandlesArgs {
    /// EXCHANGE:TRADINGSYMBOL, e.g. NSE:INFY
    pub symbol: String,
    /// minute, 3minute, 5minute, 10minute, 15minute, 30minute, 60minute or day
    pub interval: String,
    /// Start (RFC 3339, or YYYY-MM-DD in IST), inclusive
    pub from: Option<String>,
    /// End (RFC 3339, or YYYY-MM-DD in IST), inclusive
    pub to: Option<String>,
    /// The last N candles of the range (default 200, max 2000)
    pub limit: Option<u32>,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct CandleOut {
    /// Open time, RFC 3339 in IST
    pub time: String,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub volume: i64,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Candles {
    pub symbol: String,
    pub interval: String,
    /// Closed candles only, oldest first
    pub candles: Vec<CandleOut>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct GetLastPriceArgs {
    /// EXCHANGE:TRADINGSYMBOL list, e.g. ["NSE:INFY"]
    pub symbols: Vec<String>,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct LastPrice {
    pub symbol: String,
    pub price: f64,
    /// When this price was the last one (RFC 3339, IST): the candle's close time or Kite's quote time
    pub time: String,
    /// "kite" (live quote) or "candle:<interval>" (the latest stored candle's close)
    pub source: String,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct LastPrices {
    pub prices: Vec<LastPrice>,
    /// Symbols without any price, with the reason
    pub missing: Vec<String>,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct SeriesInfo {
    pub symbol: String,
    pub interval: String,
    pub first: String,
    pub last: String,
    pub rows: i64,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct SeriesList {
    pub series: Vec<SeriesInfo>,
}

#[derive(Clone)]
pub struct MarketData {
    ctx: McpContext,
    tool_router: ToolRouter<Self>,
}

#[tool_router]
impl MarketData {
    pub fn new(ctx: McpContext) -> Self {
        Self {
            ctx,
            tool_router: Self::tool_router(),
        }
    }

    #[tool(
        description = "Find instruments by trading symbol or company name (from the stored Kite instruments dump).",
        annotations(read_only_hint = true)
    )]
    async fn list_instruments(
        &self,
        Parameters(a): Parameters<ListInstrumentsArgs>,
    ) -> Result<Json<Instruments>, String> {
        let limit = i64::from(a.limit.unwrap_or(20).clamp(1, 200));
        let rows = self
            .ctx
            .store
            .search_instruments(a.query.trim(), a.exchange.as_deref(), limit)
            .await
            .map_err(|e| e.to_string())?;
        if rows.is_empty() {
            let stored = self.ctx.store.instrument_count(None).await.unwrap_or(0);
            return Err(if stored == 0 {
                format!(
                    "no instruments are stored: run `mft data sync-instruments` first; series with candles: {}",
                    known_series_text(&self.ctx.store).await
                )
            } else {
                format!(
                    "no instrument matches {:?}{}; try part of the symbol or company name",
                    a.query,
                    a.exchange
                        .as_deref()
                        .map(|e| format!(" on {e}"))
                        .unwrap_or_default()
                )
            });
        }
        Ok(Json(Instruments {
            instruments: rows
                .into_iter()
                .map(|i| InstrumentInfo {
                    symbol: i.key().to_string(),
                    name: i.name,
                    exchange: i.exchange,
                    instrument_type: i.instrument_type,
                    segment: i.segment,
                    tick_size: i.tick_size,
                    lot_size: i.lot_size,
                })
                .collect(),
        }))
    }

    #[tool(
        description = "Closed candles of a stored series, oldest first (limit <= 2000, default 200). Times are RFC 3339 in IST.",
        annotations(read_only_hint = true)
    )]
    async fn get_candles(
        &self,
        Parameters(a): Parameters<GetCandlesArgs>,
    ) -> Result<Json<Candles>, String> {
        let key = parse_symbol(&a.symbol)?;
        let interval = parse_interval(&a.interval)?;
        let from = a
            .from
            .as_deref()
            .map(|s| parse_time(s, false))
            .transpose()?;
        let to = a.to.as_deref().map(|s| parse_time(s, true)).transpose()?;
        if let (Some(f), Some(t)) = (from, to)
            && f > t
        {
            return Err(format!("from {} is after to {}", ist(f), ist(t)));
        }
        let limit = a.limit.map_or(DEFAULT_CANDLES, |l| l as usize);
        if limit == 0 || limit > MAX_CANDLES {
            return Err(format!("limit {limit} must be from 1 to {MAX_CANDLES}"));
        }
        let store = &self.ctx.store;
        let candles = if from.is_none() && to.is_none() {
            // One extra: the newest may still be forming.
            store.last_candles(&key, interval, limit + 1).await
        } else {
            store.candles(&key, interval, from, to).await
        }
        .map_err(|e| e.to_string())?;
        if candles.is_empty() {
            return Err(format!(
                "no candles for {key} {interval}{}; known series: {}",
                if from.is_some() || to.is_some() {
                    " in that range"
                } else {
                    ""
                },
                known_series_text(store).await
            ));
        }
        let closed = closed_candles(&candles, interval, self.ctx.clock.now());
        let skip = closed.len().saturating_sub(limit);
        Ok(Json(Candles {
            symbol: key.to_string(),
            interval: interval.to_string(),
            candles: closed[skip..]
                .iter()
                .map(|c| CandleOut {
                    time: ist(c.ts),
                    open: c.open,
                    high: c.high,
                    low: c.low,
                    close: c.close,
                    volume: c.volume,
                })
                .collect(),
        }))
    }

    #[tool(
        description = "Last price of each symbol with its time: Kite's live quote when logged in, else the latest stored candle's close.",
        annotations(read_only_hint = true)
    )]
    async fn get_last_price(
        &self,
        Parameters(a): Parameters<GetLastPriceArgs>,
    ) -> Result<Json<LastPrices>, String> {
        if a.symbols.is_empty() || a.symbols.len() > 100 {
            return Err("give 1 to 100 symbols, e.g. [\"NSE:INFY\"]".into());
        }
        let mut keys = Vec::new();
        for s in &a.symbols {
            keys.push(parse_symbol(s)?);
        }
        let mut out = LastPrices {
            prices: Vec::new(),
            missing: Vec::new(),
        };
        let live = super::zerodha::live_prices(&self.ctx, &keys).await;
        for key in keys {
            if let Some(p) = live.get(&key.to_string()) {
                out.prices.push(p.clone());
                continue;
            }
            match last_stored_price(&self.ctx, &key).await {
                Ok(Some(p)) => out.prices.push(p),
                Ok(None) => out
                    .missing
                    .push(format!("{key}: no candles stored and no live quote")),
                Err(e) => out.missing.push(format!("{key}: {e}")),
            }
        }
        if out.prices.is_empty() {
            return Err(format!(
                "no price for {}; known series: {}",
                out.missing.join("; "),
                known_series_text(&self.ctx.store).await
            ));
        }
        Ok(Json(out))
    }

    #[tool(
        description = "Every stored candle series: symbol, interval, first and last candle time, rows.",
        annotations(read_only_hint = true)
    )]
    async fn list_series(&self) -> Result<Json<SeriesList>, String> {
        let rows = self
            .ctx
            .store
            .candle_summary()
            .await
            .map_err(|e| e.to_string())?;
        Ok(Json(SeriesList {
            series: rows
                .into_iter()
                .map(|r| SeriesInfo {
                    symbol: r.key.to_string(),
                    interval: r.interval.to_string(),
                    first: ist(r.first),
                    last: ist(r.last),
                    rows: r.rows,
                })
                .collect(),
        }))
    }
}

/// The close of the stored closed candle that ends last (any interval), with its close time.
pub async fn last_stored_price(
    ctx: &McpContext,
    key: &crate::domain::InstrumentKey,
) -> Result<Option<LastPrice>, crate::store::StoreError> {
    let now = ctx.clock.now();
    let mut best: Option<(chrono::DateTime<chrono::Utc>, f64, Interval)> = None;
    for interval in Interval::ALL {
        let c = ctx.store.last_candles(key, interval, 2).await?;
        if let Some(c) = closed_candles(&c, interval, now).last() {
            let end = c.ts + interval.duration();
            if best.is_none_or(|(e, _, _)| end > e) && finite(c.close).is_some() {
                best = Some((end, c.close, interval));
            }
        }
    }
    Ok(best.map(|(end, price, interval)| LastPrice {
        symbol: key.to_string(),
        price,
        time: ist(end),
        source: format!("candle:{interval}"),
    }))
}

#[tool_handler(
    router = self.tool_router,
    name = "market_data",
    version = "0.1.0",
    instructions = "MFT-1 market data: instruments, stored NSE/BSE candles (closed only, IST times), last prices."
)]
impl ServerHandler for MarketData {}
