//! MCP server `zerodha`: the operator's Kite account, read-only. Every tool is a GET; none can
//! place, modify or cancel anything. Without a Kite session each tool says so.

use std::collections::HashMap;

use kiteconnect::{AccessToken, KiteConnect};
use rmcp::handler::server::{router::tool::ToolRouter, wrapper::Parameters};
use rmcp::{Json, ServerHandler, schemars, tool, tool_handler, tool_router};
use serde::{Deserialize, Serialize};

use super::market_data::LastPrice;
use super::{McpContext, ist, parse_symbol};
use crate::domain::InstrumentKey;

/// Kite's answer (the envelope's `data`) as Kite sent it.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct KiteData {
    pub data: serde_json::Value,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct OrderIdArgs {
    /// Kite order id
    pub order_id: String,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct SymbolsArgs {
    /// EXCHANGE:TRADINGSYMBOL list, e.g. ["NSE:INFY"] (at most 500)
    pub symbols: Vec<String>,
}

/// A Kite client with the configured session, or the reason there is none.
pub fn kite_client(ctx: &McpContext) -> Result<KiteConnect, String> {
    kite_client_for(&ctx.settings.zerodha)
}

/// [`kite_client`] from the Zerodha settings alone.
pub fn kite_client_for(z: &crate::config::ZerodhaSettings) -> Result<KiteConnect, String> {
    let api_key = z
        .api_key
        .as_ref()
        .map(|s| s.expose().trim())
        .filter(|s| !s.is_empty())
        .ok_or("Kite is not configured (ZERODHA_API_KEY is not set): account data is unavailable; continue without it")?;
    let token = z
        .access_token
        .as_ref()
        .map(|s| s.expose().trim())
        .filter(|s| !s.is_empty())
        .ok_or("no Kite session: log in with /login (or set ZERODHA_ACCESS_TOKEN); account data is unavailable until then")?;
    let token = AccessToken::new(token)
        .map_err(|_| "the Kite access token is malformed: log in again with /login".to_string())?;
    KiteConnect::builder(api_key)
        .base_url(z.api_url.trim_end_matches('/'))
        .access_token(token)
        .app_name("mft")
        .build()
        .map_err(|e| format!("ZERODHA_API_URL is not usable: {e}"))
}

fn kite_error(what: &str, e: kiteconnect::Error) -> String {
    if e.is_session_expired() {
        return "Kite session expired: send /login, then try again".into();
    }
    format!("Kite {what} failed: {e}")
}

/// Live last prices from Kite's LTP endpoint when a session is configured; empty otherwise or
/// when Kite fails (the caller falls back to stored candles).
pub async fn live_prices(ctx: &McpContext, keys: &[InstrumentKey]) -> HashMap<String, LastPrice> {
    let Ok(kite) = kite_client(ctx) else {
        return HashMap::new();
    };
    let names: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    match kite.ltp(&refs).raw().await {
        Ok(v) => {
            let now = ist(ctx.clock.now());
            names
                .iter()
                .filter_map(|n| {
                    let price = v.get(n)?.get("last_price")?.as_f64()?;
                    price.is_finite().then(|| {
                        (
                            n.clone(),
                            LastPrice {
                                symbol: n.clone(),
                                price,
                                time: now.clone(),
                                source: "kite".into(),
                            },
                        )
                    })
                })
                .collect()
        }
        Err(e) => {
            tracing::warn!(error = %e, "Kite LTP failed; using stored candles");
            HashMap::new()
        }
    }
}

#[derive(Clone)]
pub struct Zerodha {
    ctx: McpContext,
    tool_router: ToolRouter<Self>,
}

impl Zerodha {
    /// Sends one read and hands Kite's JSON through as it came (no strict typed decoding).
    async fn read(
        &self,
        what: &str,
        call: impl FnOnce(&KiteConnect) -> RawFuture,
    ) -> Result<Json<KiteData>, String> {
        let kite = kite_client(&self.ctx)?;
        let data = call(&kite).await.map_err(|e| kite_error(what, e))?;
        Ok(Json(KiteData { data }))
    }
}

type RawFuture = std::pin::Pin<
    Box<dyn std::future::Future<Output = kiteconnect::Result<serde_json::Value>> + Send>,
>;

fn untyped<T: Send + 'static>(c: kiteconnect::Call<T>) -> RawFuture {
    Box::pin(c.raw())
}

#[tool_router]
impl Zerodha {
    pub fn new(ctx: McpContext) -> Self {
        Self {
            ctx,
            tool_router: Self::tool_router(),
        }
    }

    #[tool(
        description = "The Kite user's profile (name, email, exchanges, products).",
        annotations(read_only_hint = true, destructive_hint = false)
    )]
    async fn get_profile(&self) -> Result<Json<KiteData>, String> {
        self.read("profile", |k| untyped(k.profile())).await
    }

    #[tool(
        description = "Funds and margins of the equity and commodity segments.",
        annotations(read_only_hint = true, destructive_hint = false)
    )]
    async fn get_margins(&self) -> Result<Json<KiteData>, String> {
        self.read("margins", |k| untyped(k.margins())).await
    }

    #[tool(
        description = "Net and day positions.",
        annotations(read_only_hint = true, destructive_hint = false)
    )]
    async fn get_positions(&self) -> Result<Json<KiteData>, String> {
        self.read("positions", |k| untyped(k.positions())).await
    }

    #[tool(
        description = "Long-term holdings in the demat account.",
        annotations(read_only_hint = true, destructive_hint = false)
    )]
    async fn get_holdings(&self) -> Result<Json<KiteData>, String> {
        self.read("holdings", |k| untyped(k.holdings())).await
    }

    #[tool(
        description = "Today's orders.",
        annotations(read_only_hint = true, destructive_hint = false)
    )]
    async fn get_orders(&self) -> Result<Json<KiteData>, String> {
        self.read("orders", |k| untyped(k.orders())).await
    }

    #[tool(
        description = "Every state of one order.",
        annotations(read_only_hint = true, destructive_hint = false)
    )]
    async fn get_order_history(
        &self,
        Parameters(a): Parameters<OrderIdArgs>,
    ) -> Result<Json<KiteData>, String> {
        let id = a.order_id.trim().to_string();
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(format!(
                "order_id {:?} is not a Kite order id (digits)",
                a.order_id
            ));
        }
        self.read("order history", move |k| untyped(k.order_history(&id)))
            .await
    }

    #[tool(
        description = "Today's trades (fills).",
        annotations(read_only_hint = true, destructive_hint = false)
    )]
    async fn get_trades(&self) -> Result<Json<KiteData>, String> {
        self.read("trades", |k| untyped(k.trades())).await
    }

    #[tool(
        description = "Full market quotes (last price, depth, OHLC, circuit limits) for EXCHANGE:SYMBOL instruments.",
        annotations(read_only_hint = true, destructive_hint = false)
    )]
    async fn get_quote(
        &self,
        Parameters(a): Parameters<SymbolsArgs>,
    ) -> Result<Json<KiteData>, String> {
        if a.symbols.is_empty() || a.symbols.len() > 500 {
            return Err("give 1 to 500 symbols, e.g. [\"NSE:INFY\"]".into());
        }
        let mut names = Vec::new();
        for s in &a.symbols {
            names.push(parse_symbol(s)?.to_string());
        }
        self.read("quote", move |k| {
            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
            untyped(k.quote(&refs))
        })
        .await
    }
}

#[tool_handler(
    router = self.tool_router,
    name = "zerodha",
    version = "0.1.0",
    instructions = "The operator's Zerodha Kite account, read-only: profile, margins, positions, holdings, orders, trades, quotes."
)]
impl ServerHandler for Zerodha {}
