//! MCP server `trade_log`: round-trip trades rebuilt from the stored fills, their performance,
//! proposals, and one proposal with its analysis trace.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use rmcp::handler::server::{router::tool::ToolRouter, wrapper::Parameters};
use rmcp::{Json, ServerHandler, schemars, tool, tool_handler, tool_router};
use serde::{Deserialize, Serialize};

use super::{McpContext, ist, parse_symbol, parse_time};
use crate::domain::{Fill, InstrumentKey, ProposalStatus, Side};

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct ListTradesArgs {
    /// Trades closed at or after (RFC 3339 or YYYY-MM-DD, IST)
    pub from: Option<String>,
    /// Trades closed at or before
    pub to: Option<String>,
    /// Only this EXCHANGE:TRADINGSYMBOL
    pub symbol: Option<String>,
    /// Newest N (default 50, max 1000)
    pub limit: Option<u32>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct PerformanceArgs {
    pub from: Option<String>,
    pub to: Option<String>,
    pub symbol: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct ListProposalsArgs {
    /// pending, approved, rejected, expired, executed, vetoed or failed
    pub status: Option<String>,
    /// Newest N (default 20, max 500)
    pub limit: Option<u32>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct GetProposalArgs {
    /// Proposal number (as on the card)
    pub id: i64,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Trade {
    pub symbol: String,
    /// BUY (long) or SELL (short)
    pub side: String,
    pub quantity: i64,
    /// Average entry price, rupees
    pub entry: f64,
    /// Average exit price, rupees
    pub exit: f64,
    /// Realized P&L, rupees
    pub pnl: f64,
    pub opened_at: String,
    pub closed_at: String,
    pub hold_minutes: i64,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Trades {
    pub trades: Vec<Trade>,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Performance {
    pub trades: u32,
    pub wins: u32,
    /// 0..1; null without trades
    pub win_rate: Option<f64>,
    /// Rupees
    pub net_pnl: f64,
    /// Gross profit / gross loss; null without losing trades
    pub profit_factor: Option<f64>,
    /// Average P&L per trade, rupees
    pub expectancy: Option<f64>,
    pub average_hold_minutes: Option<f64>,
    /// Largest fall of cumulative P&L from its peak, rupees (>= 0)
    pub max_drawdown: f64,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct ProposalOut {
    pub id: i64,
    pub symbol: String,
    pub side: String,
    pub quantity: i64,
    pub entry: f64,
    pub stop: f64,
    pub target: f64,
    pub product: String,
    pub confidence: f64,
    pub rationale: String,
    pub status: String,
    pub created_at: String,
    pub expires_at: String,
    pub outcome: Option<String>,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Proposals {
    pub proposals: Vec<ProposalOut>,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct ProposalWithTrace {
    pub proposal: ProposalOut,
    /// The LLM analysis that produced it (model, prompt hash, tool calls, tokens, cost,
    /// latency, verdict); null for rule-based proposals
    pub trace: Option<serde_json::Value>,
}

fn proposal_out(p: crate::domain::Proposal) -> ProposalOut {
    ProposalOut {
        id: p.id,
        symbol: p.key.to_string(),
        side: p.side.as_str().into(),
        quantity: p.quantity,
        entry: p.entry.as_rupees_f64(),
        stop: p.stop.as_rupees_f64(),
        target: p.target.as_rupees_f64(),
        product: p.product.as_str().into(),
        confidence: p.confidence,
        rationale: p.rationale,
        status: p.status.as_str().into(),
        created_at: ist(p.created_at),
        expires_at: ist(p.expires_at),
        outcome: p.outcome,
    }
}

/// Round trips from fills in time order: a trade opens when a position leaves zero and closes
/// when it returns to zero (a fill that flips the position closes one trade and opens the next).
pub fn round_trips(fills: &[Fill]) -> Vec<(InstrumentKey, Trade, DateTime<Utc>)> {
    struct Open {
        qty: i64,
        cost: f64,
        opened: DateTime<Utc>,
        size: i64,
        exit_value: f64,
        exit_qty: i64,
        pnl: f64,
    }
    let mut open: HashMap<InstrumentKey, Open> = HashMap::new();
    let mut out = Vec::new();
    for f in fills {
        let mut q = f.quantity * f.side.sign();
        let price = f.price.as_rupees_f64();
        while q != 0 {
            let o = open.entry(f.key.clone()).or_insert(Open {
                qty: 0,
                cost: 0.0,
                opened: f.ts,
                size: 0,
                exit_value: 0.0,
                exit_qty: 0,
                pnl: 0.0,
            });
            if o.qty == 0 || o.qty.signum() == q.signum() {
                if o.qty == 0 {
                    o.opened = f.ts;
                }
                o.cost += price * q.abs() as f64;
                o.qty += q;
                o.size += q.abs();
                q = 0;
            } else {
                let close = q.abs().min(o.qty.abs());
                let avg = o.cost / o.qty.abs() as f64;
                o.pnl += (price - avg) * close as f64 * o.qty.signum() as f64;
                o.cost -= avg * close as f64;
                o.exit_value += price * close as f64;
                o.exit_qty += close;
                let long = o.qty > 0;
                o.qty += close * q.signum();
                q -= close * q.signum();
                if o.qty == 0 {
                    let o = open.remove(&f.key).unwrap_or_else(|| unreachable!());
                    let entry_avg =
                        (o.exit_value - o.pnl * if long { 1.0 } else { -1.0 }) / o.exit_qty as f64;
                    out.push((
                        f.key.clone(),
                        Trade {
                            symbol: f.key.to_string(),
                            side: if long { Side::Buy } else { Side::Sell }.as_str().into(),
                            quantity: o.size,
                            entry: (entry_avg * 100.0).round() / 100.0,
                            exit: ((o.exit_value / o.exit_qty as f64) * 100.0).round() / 100.0,
                            pnl: (o.pnl * 100.0).round() / 100.0,
                            opened_at: ist(o.opened),
                            closed_at: ist(f.ts),
                            hold_minutes: (f.ts - o.opened).num_minutes(),
                        },
                        f.ts,
                    ));
                }
            }
        }
    }
    out
}

#[derive(Clone)]
pub struct TradeLog {
    ctx: McpContext,
    tool_router: ToolRouter<Self>,
}

impl TradeLog {
    async fn trades(
        &self,
        from: Option<&str>,
        to: Option<&str>,
        symbol: Option<&str>,
    ) -> Result<Vec<Trade>, String> {
        let from = from.map(|s| parse_time(s, false)).transpose()?;
        let to = to.map(|s| parse_time(s, true)).transpose()?;
        let symbol = symbol.map(parse_symbol).transpose()?;
        // All fills: a trade that opened before `from` must still pair up.
        let fills = self
            .ctx
            .store
            .fills_since(DateTime::<Utc>::UNIX_EPOCH)
            .await
            .map_err(|e| e.to_string())?;
        Ok(round_trips(&fills)
            .into_iter()
            .filter(|(k, _, closed)| {
                symbol.as_ref().is_none_or(|s| s == k)
                    && from.is_none_or(|f| *closed >= f)
                    && to.is_none_or(|t| *closed <= t)
            })
            .map(|(_, t, _)| t)
            .collect())
    }
}

/// Win rate, profit factor, expectancy, hold time and drawdown of closed trades.
pub fn performance(trades: &[Trade]) -> Performance {
    let n = trades.len();
    let wins = trades.iter().filter(|t| t.pnl > 0.0).count();
    let profit: f64 = trades.iter().filter(|t| t.pnl > 0.0).map(|t| t.pnl).sum();
    let loss: f64 = -trades
        .iter()
        .filter(|t| t.pnl < 0.0)
        .map(|t| t.pnl)
        .sum::<f64>();
    let net = profit - loss;
    let (mut peak, mut cum, mut dd) = (0.0f64, 0.0f64, 0.0f64);
    for t in trades {
        cum += t.pnl;
        peak = peak.max(cum);
        dd = dd.max(peak - cum);
    }
    let round = |x: f64| (x * 100.0).round() / 100.0;
    Performance {
        trades: n as u32,
        wins: wins as u32,
        win_rate: (n > 0).then(|| wins as f64 / n as f64),
        net_pnl: round(net),
        profit_factor: (loss > 0.0).then(|| profit / loss),
        expectancy: (n > 0).then(|| round(net / n as f64)),
        average_hold_minutes: (n > 0)
            .then(|| trades.iter().map(|t| t.hold_minutes as f64).sum::<f64>() / n as f64),
        max_drawdown: round(dd),
    }
}

#[tool_router]
impl TradeLog {
    pub fn new(ctx: McpContext) -> Self {
        Self {
            ctx,
            tool_router: Self::tool_router(),
        }
    }

    #[tool(
        description = "Closed round-trip trades (from the fills), newest first.",
        annotations(read_only_hint = true)
    )]
    async fn list_trades(
        &self,
        Parameters(a): Parameters<ListTradesArgs>,
    ) -> Result<Json<Trades>, String> {
        let mut trades = self
            .trades(a.from.as_deref(), a.to.as_deref(), a.symbol.as_deref())
            .await?;
        trades.reverse();
        trades.truncate(a.limit.unwrap_or(50).clamp(1, 1000) as usize);
        Ok(Json(Trades { trades }))
    }

    #[tool(
        description = "Performance of closed trades: count, win rate, net P&L, profit factor, expectancy, average hold, max drawdown.",
        annotations(read_only_hint = true)
    )]
    async fn performance(
        &self,
        Parameters(a): Parameters<PerformanceArgs>,
    ) -> Result<Json<Performance>, String> {
        let trades = self
            .trades(a.from.as_deref(), a.to.as_deref(), a.symbol.as_deref())
            .await?;
        Ok(Json(performance(&trades)))
    }

    #[tool(
        description = "Recent proposals, newest first, optionally of one status.",
        annotations(read_only_hint = true)
    )]
    async fn list_proposals(
        &self,
        Parameters(a): Parameters<ListProposalsArgs>,
    ) -> Result<Json<Proposals>, String> {
        let status = match a.status.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            Some(s) => Some(ProposalStatus::parse(&s.to_ascii_lowercase()).ok_or_else(|| {
                format!("status {s:?} is not one of pending, approved, rejected, expired, executed, vetoed, failed")
            })?),
            None => None,
        };
        let limit = a.limit.unwrap_or(20).clamp(1, 500) as usize;
        let scan = if status.is_some() { 5000 } else { limit as i64 };
        let rows = self
            .ctx
            .store
            .recent_proposals(scan)
            .await
            .map_err(|e| e.to_string())?;
        Ok(Json(Proposals {
            proposals: rows
                .into_iter()
                .filter(|p| status.is_none_or(|s| p.status == s))
                .take(limit)
                .map(proposal_out)
                .collect(),
        }))
    }

    #[tool(
        description = "One proposal with the analysis trace of the LLM analysis that produced it.",
        annotations(read_only_hint = true)
    )]
    async fn get_proposal(
        &self,
        Parameters(a): Parameters<GetProposalArgs>,
    ) -> Result<Json<ProposalWithTrace>, String> {
        let p = self
            .ctx
            .store
            .proposal(a.id)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| {
                format!(
                    "no proposal #{}; list_proposals shows the recent ones",
                    a.id
                )
            })?;
        let trace = self
            .ctx
            .store
            .analysis_trace_for_proposal(a.id)
            .await
            .map_err(|e| e.to_string())?
            .map(|t| serde_json::to_value(t).unwrap_or_default());
        Ok(Json(ProposalWithTrace {
            proposal: proposal_out(p),
            trace,
        }))
    }
}

#[tool_handler(
    router = self.tool_router,
    name = "trade_log",
    version = "0.1.0",
    instructions = "MFT-1's own record: trades, performance, proposals and their analysis traces."
)]
impl ServerHandler for TradeLog {}
