//! The client side: rmcp clients connected to the five servers (in-process over an in-memory
//! duplex by default, the same protocol path as any outside client), their tools as function
//! tools named `<server>__<tool>`, and calls routed back by that name.

use std::sync::Arc;

use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::RunningService;
use rmcp::{RoleClient, ServerHandler, ServiceExt};

use super::{McpContext, McpError, SERVERS};

/// Size of each in-memory pipe between the agent and a server.
const DUPLEX_BYTES: usize = 1 << 20;

/// One tool as the model sees it.
#[derive(Debug, Clone)]
pub struct HubTool {
    pub server: String,
    pub tool: String,
    /// `<server>__<tool>`
    pub function: String,
    pub description: String,
    pub input_schema: serde_json::Map<String, serde_json::Value>,
}

/// Connected clients and their tools. Cheap to clone.
#[derive(Clone)]
pub struct Hub {
    clients: Arc<Vec<(String, RunningService<RoleClient, ()>)>>,
    tools: Arc<Vec<HubTool>>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("tools", &self.tools.len())
            .finish()
    }
}

/// Serves `server` on one end of an in-memory duplex and returns a client on the other end.
pub async fn connect_in_process<S: ServerHandler>(
    name: &str,
    server: S,
) -> Result<RunningService<RoleClient, ()>, McpError> {
    let (client_io, server_io) = tokio::io::duplex(DUPLEX_BYTES);
    let label = name.to_string();
    tokio::spawn(async move {
        match server.serve(server_io).await {
            Ok(running) => {
                let _ = running.waiting().await;
            }
            Err(e) => {
                tracing::error!(server = %label, error = %e, "in-process MCP server failed to start")
            }
        }
    });
    ().serve(client_io).await.map_err(|e| McpError::Start {
        server: name.to_string(),
        message: e.to_string(),
    })
}

/// A client of server `name` (one of [`SERVERS`]) running in this process.
pub async fn connect_named(
    ctx: &McpContext,
    name: &str,
) -> Result<RunningService<RoleClient, ()>, McpError> {
    use super::*;
    match name {
        "market_data" => connect_in_process(name, market_data::MarketData::new(ctx.clone())).await,
        "technical_analysis" => {
            connect_in_process(name, technical::TechnicalAnalysis::new(ctx.clone())).await
        }
        "news" => connect_in_process(name, news::NewsServer::new(ctx.clone())).await,
        "zerodha" => connect_in_process(name, zerodha::Zerodha::new(ctx.clone())).await,
        "trade_log" => connect_in_process(name, trade_log::TradeLog::new(ctx.clone())).await,
        other => Err(McpError::UnknownServer(other.to_string())),
    }
}

impl Hub {
    /// All five servers in this process.
    pub async fn in_process(ctx: &McpContext) -> Result<Hub, McpError> {
        let mut clients = Vec::new();
        for name in SERVERS {
            clients.push((name.to_string(), connect_named(ctx, name).await?));
        }
        Hub::from_clients(clients).await
    }

    /// Lists the tools of already connected clients (any transport).
    pub async fn from_clients(
        clients: Vec<(String, RunningService<RoleClient, ()>)>,
    ) -> Result<Hub, McpError> {
        let mut tools = Vec::new();
        for (server, client) in &clients {
            let listed = client.list_all_tools().await.map_err(|e| McpError::Start {
                server: server.clone(),
                message: format!("listing tools failed: {e}"),
            })?;
            for t in listed {
                tools.push(HubTool {
                    server: server.clone(),
                    tool: t.name.to_string(),
                    function: format!("{server}__{}", t.name),
                    description: t.description.map(|d| d.to_string()).unwrap_or_default(),
                    input_schema: (*t.input_schema).clone(),
                });
            }
        }
        Ok(Hub {
            clients: Arc::new(clients),
            tools: Arc::new(tools),
        })
    }

    pub fn tools(&self) -> &[HubTool] {
        &self.tools
    }

    /// Splits `<server>__<tool>`.
    pub fn resolve(&self, function: &str) -> Option<&HubTool> {
        self.tools.iter().find(|t| t.function == function)
    }

    /// Calls `tool` on `server`. Tool failures are `Ok` with `is_error`; `Err` is a protocol
    /// or transport failure.
    pub async fn call(
        &self,
        server: &str,
        tool: &str,
        arguments: serde_json::Map<String, serde_json::Value>,
    ) -> Result<CallToolResult, McpError> {
        let client = self
            .clients
            .iter()
            .find(|(s, _)| s == server)
            .map(|(_, c)| c)
            .ok_or_else(|| McpError::UnknownServer(server.to_string()))?;
        client
            .call_tool(CallToolRequestParams::new(tool.to_string()).with_arguments(arguments))
            .await
            .map_err(|e| McpError::Call {
                tool: format!("{server}__{tool}"),
                message: e.to_string(),
            })
    }
}

/// The text a tool result carries (its text blocks joined), for the model and the trace.
pub fn result_text(r: &CallToolResult) -> String {
    let mut parts: Vec<String> = r
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect();
    if parts.is_empty()
        && let Some(v) = &r.structured_content
    {
        parts.push(v.to_string());
    }
    parts.join("\n")
}
