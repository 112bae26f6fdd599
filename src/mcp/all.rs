//! `mft mcp serve all` on stdio: one MCP server carrying the tools of all five, named
//! `<server>__<tool>` (the names the Analysis Agent uses), since one stdio stream holds one
//! server. Calls are routed to the server the prefix names.

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, Implementation, ListToolsResult,
    PaginatedRequestParams, ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler};

use super::McpContext;
use super::market_data::MarketData;
use super::news::NewsServer;
use super::technical::TechnicalAnalysis;
use super::trade_log::TradeLog;
use super::zerodha::Zerodha;

#[derive(Clone)]
pub struct AllServers {
    market_data: MarketData,
    technical_analysis: TechnicalAnalysis,
    news: NewsServer,
    zerodha: Zerodha,
    trade_log: TradeLog,
}

impl AllServers {
    pub fn new(ctx: McpContext) -> AllServers {
        AllServers {
            market_data: MarketData::new(ctx.clone()),
            technical_analysis: TechnicalAnalysis::new(ctx.clone()),
            news: NewsServer::new(ctx.clone()),
            zerodha: Zerodha::new(ctx.clone()),
            trade_log: TradeLog::new(ctx),
        }
    }
}

impl ServerHandler for AllServers {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("mft", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "MFT-1's five MCP servers in one: tools are named <server>__<tool> \
                 (market_data, technical_analysis, news, zerodha read-only, trade_log)."
                    .to_string(),
            )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let mut all = self.market_data.list_tools(None, context.clone()).await?;
        all.tools = Vec::new();
        let parts = [
            (
                "market_data",
                self.market_data.list_tools(None, context.clone()).await?,
            ),
            (
                "technical_analysis",
                self.technical_analysis
                    .list_tools(None, context.clone())
                    .await?,
            ),
            ("news", self.news.list_tools(None, context.clone()).await?),
            (
                "zerodha",
                self.zerodha.list_tools(None, context.clone()).await?,
            ),
            ("trade_log", self.trade_log.list_tools(None, context).await?),
        ];
        for (server, list) in parts {
            for mut t in list.tools {
                t.name = format!("{server}__{}", t.name).into();
                all.tools.push(t);
            }
        }
        Ok(all)
    }

    async fn call_tool(
        &self,
        mut request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let name = request.name.to_string();
        let Some((server, tool)) = name.split_once("__") else {
            return Err(ErrorData::invalid_params(
                format!("tool {name:?} is not <server>__<tool>, e.g. market_data__get_candles"),
                None,
            ));
        };
        request.name = tool.to_string().into();
        match server {
            "market_data" => self.market_data.call_tool(request, context).await,
            "technical_analysis" => self.technical_analysis.call_tool(request, context).await,
            "news" => self.news.call_tool(request, context).await,
            "zerodha" => self.zerodha.call_tool(request, context).await,
            "trade_log" => self.trade_log.call_tool(request, context).await,
            other => Err(ErrorData::invalid_params(
                format!("unknown server {other:?} in {name:?}"),
                None,
            )),
        }
    }
}
