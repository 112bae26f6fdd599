//! Transports for outside MCP clients: `mft mcp serve NAME` on stdio, `--http ADDR` as
//! streamable HTTP at `/mcp/<name>` behind `Authorization: Bearer <MCP_TOKEN>`.

use std::net::SocketAddr;

use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rmcp::ServiceExt;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use subtle::ConstantTimeEq;
use tokio_util::sync::CancellationToken;

use super::{McpContext, McpError, SERVERS};

/// `NAME` or `all` as server names.
pub fn selected(name: &str) -> Result<Vec<&'static str>, McpError> {
    if name == "all" {
        return Ok(SERVERS.to_vec());
    }
    SERVERS
        .iter()
        .find(|s| **s == name)
        .map(|s| vec![*s])
        .ok_or_else(|| McpError::UnknownServer(name.to_string()))
}

/// Serves one server on stdin/stdout until the client closes the stream.
pub async fn serve_stdio(ctx: McpContext, name: &str) -> Result<(), McpError> {
    use super::*;
    match name {
        "market_data" => serve_one(name, market_data::MarketData::new(ctx)).await,
        "technical_analysis" => serve_one(name, technical::TechnicalAnalysis::new(ctx)).await,
        "news" => serve_one(name, news::NewsServer::new(ctx)).await,
        "zerodha" => serve_one(name, zerodha::Zerodha::new(ctx)).await,
        "trade_log" => serve_one(name, trade_log::TradeLog::new(ctx)).await,
        "all" => serve_one(name, all::AllServers::new(ctx)).await,
        other => Err(McpError::UnknownServer(other.to_string())),
    }
}

/// One server on stdin/stdout: initialize, then wait for the client to close.
async fn serve_one<S: rmcp::ServerHandler>(name: &str, server: S) -> Result<(), McpError> {
    server
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| McpError::Start {
            server: name.to_string(),
            message: e.to_string(),
        })?
        .waiting()
        .await
        .map(|_| ())
        .map_err(|e| McpError::Transport(e.to_string()))
}

fn is_loopback(addr: &SocketAddr) -> bool {
    addr.ip().is_loopback()
}

/// The axum router serving `names` at `/mcp/<name>`, requiring `token` when given.
pub fn router(
    ctx: &McpContext,
    names: &[&str],
    token: Option<String>,
    ct: CancellationToken,
) -> axum::Router {
    use super::*;
    let mut app = axum::Router::new();
    for name in names {
        let config =
            StreamableHttpServerConfig::default().with_cancellation_token(ct.child_token());
        // Without a token only loopback Host headers pass (rmcp's DNS-rebinding guard); with
        // one, the bearer check guards a server that may be reached under any host name.
        let config = if token.is_some() {
            config.disable_allowed_hosts()
        } else {
            config
        };
        let path = format!("/mcp/{name}");
        let c = ctx.clone();
        app = match *name {
            "market_data" => app.nest_service(
                &path,
                StreamableHttpService::<_, LocalSessionManager>::new(
                    move || Ok(market_data::MarketData::new(c.clone())),
                    Default::default(),
                    config,
                ),
            ),
            "technical_analysis" => app.nest_service(
                &path,
                StreamableHttpService::<_, LocalSessionManager>::new(
                    move || Ok(technical::TechnicalAnalysis::new(c.clone())),
                    Default::default(),
                    config,
                ),
            ),
            "news" => app.nest_service(
                &path,
                StreamableHttpService::<_, LocalSessionManager>::new(
                    move || Ok(news::NewsServer::new(c.clone())),
                    Default::default(),
                    config,
                ),
            ),
            "zerodha" => app.nest_service(
                &path,
                StreamableHttpService::<_, LocalSessionManager>::new(
                    move || Ok(zerodha::Zerodha::new(c.clone())),
                    Default::default(),
                    config,
                ),
            ),
            _ => app.nest_service(
                &path,
                StreamableHttpService::<_, LocalSessionManager>::new(
                    move || Ok(trade_log::TradeLog::new(c.clone())),
                    Default::default(),
                    config,
                ),
            ),
        };
    }
    match token {
        Some(token) => app.layer(axum::middleware::from_fn(
            move |req: Request, next: Next| {
                let token = token.clone();
                async move { check_bearer(&token, req, next).await }
            },
        )),
        None => app,
    }
}

async fn check_bearer(token: &str, req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if bool::from(given.as_bytes().ct_eq(token.as_bytes())) && !token.is_empty() {
        next.run(req).await
    } else {
        (
            StatusCode::UNAUTHORIZED,
            [(axum::http::header::WWW_AUTHENTICATE, "Bearer")],
            "missing or wrong bearer token: send Authorization: Bearer <MCP_TOKEN>",
        )
            .into_response()
    }
}

/// Binds `addr` (refusing a non-loopback address without a token) and returns the listener.
pub async fn bind(addr: &str, token: Option<&str>) -> Result<tokio::net::TcpListener, McpError> {
    let parsed: SocketAddr = addr.parse().map_err(|e| McpError::Bind {
        addr: addr.to_string(),
        source: std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{e} (expected IP:PORT, e.g. 127.0.0.1:8600)"),
        ),
    })?;
    if !is_loopback(&parsed) && token.is_none_or(|t| t.trim().is_empty()) {
        return Err(McpError::TokenRequired {
            addr: addr.to_string(),
        });
    }
    tokio::net::TcpListener::bind(parsed)
        .await
        .map_err(|source| McpError::Bind {
            addr: addr.to_string(),
            source,
        })
}

/// Serves `names` over streamable HTTP on `listener` until `ct` is cancelled.
pub async fn serve_http(
    ctx: McpContext,
    names: &[&str],
    listener: tokio::net::TcpListener,
    token: Option<String>,
    ct: CancellationToken,
) -> Result<(), McpError> {
    let app = router(
        &ctx,
        names,
        token.filter(|t| !t.trim().is_empty()),
        ct.clone(),
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { ct.cancelled_owned().await })
        .await
        .map_err(|e| McpError::Transport(e.to_string()))
}
