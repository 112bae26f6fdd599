//! The MCP servers as outside clients reach them: `mft mcp serve market_data` spoken to over
//! the child's stdin/stdout, streamable HTTP at /mcp/<name> with and without the bearer token,
//! the refusal to serve a non-loopback address without MCP_TOKEN, and `mft mcp list`.

mod support;

use std::sync::Arc;
use std::time::Duration;

use chrono::{Duration as Dur, TimeZone, Utc};
use mft::clock::ManualClock;
use mft::config::Settings;
use mft::domain::{Candle, InstrumentKey, Interval};
use mft::mcp::{McpContext, McpError, serve};
use mft::store::Store;
use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::json;
use tokio::process::Command;
use tokio_util::sync::CancellationToken;

fn candles() -> Vec<Candle> {
    let t0 = Utc.with_ymd_and_hms(2026, 11, 24, 3, 45, 0).unwrap();
    (0..50)
        .map(|i| Candle {
            ts: t0 + Dur::minutes(15 * i),
            open: 100.0,
            high: 101.0,
            low: 99.0,
            close: 100.0 + i as f64 * 0.1,
            volume: 1000,
            oi: None,
        })
        .collect()
}

async fn seeded(dir: &std::path::Path) -> (String, Store) {
    let url = format!("sqlite://{}", dir.join("mft.db").display());
    let store = Store::connect(&url).await.unwrap();
    store
        .upsert_candles(
            &InstrumentKey::new("NSE", "INFY"),
            Interval::Minute15,
            &candles(),
        )
        .await
        .unwrap();
    (url, store)
}

fn mft(dir: &std::path::Path, db: &str, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mft"));
    c.args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", db)
        .kill_on_drop(true);
    c
}

#[tokio::test]
async fn stdio_child_answers_an_rmcp_client() {
    let dir = tempfile::tempdir().unwrap();
    let (db, store) = seeded(dir.path()).await;
    store.close().await;
    let mut child = mft(dir.path(), &db, &["mcp", "serve", "market_data"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let stdin = child.stdin.take().unwrap();
    let client = tokio::time::timeout(Duration::from_secs(20), ().serve((stdout, stdin)))
        .await
        .expect("initialize within 20 s")
        .expect("initialize");
    let info = client.peer_info().expect("server info");
    assert_eq!(
        info.server_info.as_ref().map(|i| i.name.as_str()),
        Some("market_data")
    );
    let tools: Vec<String> = client
        .list_all_tools()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    assert_eq!(tools.len(), 4, "{tools:?}");
    for t in [
        "list_instruments",
        "get_candles",
        "get_last_price",
        "list_series",
    ] {
        assert!(tools.iter().any(|x| x == t), "{t} missing from {tools:?}");
    }
    let r = client
        .call_tool(
            CallToolRequestParams::new("get_candles").with_arguments(
                json!({"symbol": "NSE:INFY", "interval": "15minute", "limit": 3})
                    .as_object()
                    .unwrap()
                    .clone(),
            ),
        )
        .await
        .unwrap();
    let v = r.structured_content.unwrap();
    assert_eq!(v["candles"].as_array().unwrap().len(), 3);
    assert_eq!(v["candles"][2]["close"], 104.9);
    client.cancel().await.unwrap();
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("exits when stdin closes")
        .unwrap();
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn http_requires_the_bearer_token() {
    let dir = tempfile::tempdir().unwrap();
    let (_db, store) = seeded(dir.path()).await;
    let ctx = McpContext::new(
        store,
        Arc::new(Settings::default()),
        Arc::new(ManualClock::new(Utc::now())),
    );
    let listener = serve::bind("127.0.0.1:0", Some("s3cret")).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let ct = CancellationToken::new();
    let names = serve::selected("all").unwrap();
    let server = tokio::spawn(serve::serve_http(
        ctx,
        &*Box::leak(names.into_boxed_slice()),
        listener,
        Some("s3cret".into()),
        ct.clone(),
    ));

    // Without the token: 401 before any MCP.
    let raw = reqwest::Client::new()
        .post(format!("http://{addr}/mcp/market_data"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 401);
    let denied = ()
        .serve(StreamableHttpClientTransport::from_uri(format!(
            "http://{addr}/mcp/market_data"
        )))
        .await;
    assert!(
        denied.is_err(),
        "a client without the token must not get in"
    );
    let wrong = ()
        .serve(StreamableHttpClientTransport::from_config(
            StreamableHttpClientTransportConfig::with_uri(format!("http://{addr}/mcp/market_data"))
                .auth_header("nope"),
        ))
        .await;
    assert!(wrong.is_err());

    // With it: every server at /mcp/<name>.
    for (name, tools) in [
        ("market_data", 4),
        ("technical_analysis", 3),
        ("news", 2),
        ("zerodha", 8),
        ("trade_log", 4),
    ] {
        let client = ()
            .serve(StreamableHttpClientTransport::from_config(
                StreamableHttpClientTransportConfig::with_uri(format!("http://{addr}/mcp/{name}"))
                    .auth_header("s3cret"),
            ))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            client.list_all_tools().await.unwrap().len(),
            tools,
            "{name}"
        );
        if name == "market_data" {
            let r = client
                .call_tool(
                    CallToolRequestParams::new("list_series")
                        .with_arguments(serde_json::Map::new()),
                )
                .await
                .unwrap();
            assert_eq!(
                r.structured_content.unwrap()["series"][0]["symbol"],
                "NSE:INFY"
            );
        }
        client.cancel().await.unwrap();
    }
    ct.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
}

#[tokio::test]
async fn http_without_token_only_on_loopback() {
    match serve::bind("0.0.0.0:0", None).await {
        Err(McpError::TokenRequired { addr }) => assert_eq!(addr, "0.0.0.0:0"),
        other => panic!(
            "expected a refusal, got {:?}",
            other.map(|l| l.local_addr())
        ),
    }
    assert!(serve::bind("0.0.0.0:0", Some("t")).await.is_ok());
    // Loopback without a token serves openly (rmcp keeps its loopback Host check).
    let dir = tempfile::tempdir().unwrap();
    let (_db, store) = seeded(dir.path()).await;
    let ctx = McpContext::new(
        store,
        Arc::new(Settings::default()),
        Arc::new(ManualClock::new(Utc::now())),
    );
    let listener = serve::bind("127.0.0.1:0", None).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let ct = CancellationToken::new();
    tokio::spawn(serve::serve_http(
        ctx,
        &["trade_log"],
        listener,
        None,
        ct.clone(),
    ));
    let client = ()
        .serve(StreamableHttpClientTransport::from_uri(format!(
            "http://{addr}/mcp/trade_log"
        )))
        .await
        .unwrap();
    assert_eq!(client.list_all_tools().await.unwrap().len(), 4);
    client.cancel().await.unwrap();
    ct.cancel();
    assert!(matches!(
        serve::selected("nope"),
        Err(McpError::UnknownServer(_))
    ));
}

#[tokio::test]
async fn mcp_list_and_refusals_from_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let (db, store) = seeded(dir.path()).await;
    store.close().await;
    let out = mft(dir.path(), &db, &["mcp", "list"])
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for s in [
        "market_data",
        "technical_analysis",
        "news",
        "zerodha",
        "trade_log",
        "get_candles",
        "compute_for",
        "search_news",
        "get_quote",
        "get_proposal",
    ] {
        assert!(text.contains(s), "{s} missing from:\n{text}");
    }
    let out = mft(
        dir.path(),
        &db,
        &["mcp", "serve", "all", "--http", "0.0.0.0:0"],
    )
    .output()
    .await
    .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("without MCP_TOKEN"), "{err}");
    let out = mft(dir.path(), &db, &["mcp", "serve", "bogus"])
        .output()
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown MCP server \"bogus\""));
}

#[tokio::test]
async fn stdio_all_carries_every_tool_prefixed_by_its_server() {
    let dir = tempfile::tempdir().unwrap();
    let (db, store) = seeded(dir.path()).await;
    store.close().await;
    let mut child = mft(dir.path(), &db, &["mcp", "serve", "all"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (stdout, stdin) = (child.stdout.take().unwrap(), child.stdin.take().unwrap());
    let client = ().serve((stdout, stdin)).await.unwrap();
    let tools: Vec<String> = client
        .list_all_tools()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    assert_eq!(tools.len(), 21, "{tools:?}");
    assert!(tools.contains(&"zerodha__get_quote".to_string()));
    let r = client
        .call_tool(
            CallToolRequestParams::new("market_data__list_series")
                .with_arguments(serde_json::Map::new()),
        )
        .await
        .unwrap();
    assert_eq!(
        r.structured_content.unwrap()["series"][0]["symbol"],
        "NSE:INFY"
    );
    let r = client
        .call_tool(
            CallToolRequestParams::new("news__headlines")
                .with_arguments(json!({"symbol": "NSE:INFY"}).as_object().unwrap().clone()),
        )
        .await
        .unwrap();
    assert_eq!(r.is_error, Some(true));
    assert!(hub_text(&r).contains("news is not configured"));
    client.cancel().await.unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
}

fn hub_text(r: &rmcp::model::CallToolResult) -> String {
    mft::mcp::hub::result_text(r)
}
