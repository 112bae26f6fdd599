//! Every tool of the five MCP servers, called through an rmcp client over the in-process
//! duplex (the same protocol path as any outside client), on SQLite and, when
//! TEST_DATABASE_URL is set, PostgreSQL.

mod support;

use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use mft::clock::ManualClock;
use mft::config::{Secret, Settings};
use mft::domain::{Candle, Instrument, InstrumentKey, Interval, NewProposal, Paise, Product, Side};
use mft::mcp::{McpContext, SERVERS, hub};
use rmcp::model::{CallToolRequestParams, CallToolResult};
use serde_json::{Value, json};
use support::openai_fake::{NewsFake, article};

fn now() -> DateTime<Utc> {
    // Wed 2026-11-25 15:30 IST
    Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).unwrap()
}

/// 300 closed 15-minute candles ending at `now`, plus one still forming.
fn candles() -> Vec<Candle> {
    let n = 301;
    let first = now() - Duration::minutes(15 * 300);
    (0..n)
        .map(|i| {
            let c = 1500.0 + (i as f64 * 0.3).sin() * 20.0 + i as f64 * 0.1;
            Candle {
                ts: first + Duration::minutes(15 * i as i64),
                open: c - 1.0,
                high: c + 3.0,
                low: c - 3.0,
                close: c,
                volume: 10_000 + i as i64,
                oi: None,
            }
        })
        .collect()
}

fn infy() -> Instrument {
    Instrument {
        instrument_token: 408065,
        exchange_token: 1594,
        tradingsymbol: "INFY".into(),
        name: "INFOSYS".into(),
        last_price: 0.0,
        expiry: None,
        strike: 0.0,
        tick_size: 0.05,
        lot_size: 1,
        instrument_type: "EQ".into(),
        segment: "NSE".into(),
        exchange: "NSE".into(),
    }
}

async fn call(
    c: &rmcp::service::RunningService<rmcp::RoleClient, ()>,
    tool: &str,
    args: Value,
) -> CallToolResult {
    let map = args.as_object().cloned().unwrap_or_default();
    c.call_tool(CallToolRequestParams::new(tool.to_string()).with_arguments(map))
        .await
        .unwrap_or_else(|e| panic!("{tool}: {e}"))
}

fn ok(r: &CallToolResult, tool: &str) -> Value {
    assert_ne!(
        r.is_error,
        Some(true),
        "{tool} failed: {}",
        hub::result_text(r)
    );
    r.structured_content
        .clone()
        .unwrap_or_else(|| panic!("{tool}: no structured content"))
}

fn err(r: &CallToolResult, tool: &str) -> String {
    assert_eq!(
        r.is_error,
        Some(true),
        "{tool} should fail: {}",
        hub::result_text(r)
    );
    hub::result_text(r)
}

/// A Kite fake for the read-only account endpoints: every GET answers an envelope naming its
/// path; /quote carries circuit limits; the token "expired" gets a TokenException.
async fn kite_account_fake() -> String {
    use axum::extract::Request;
    async fn any(req: Request) -> axum::response::Response {
        use axum::response::IntoResponse;
        let auth = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        if auth.ends_with(":expired") {
            return (axum::http::StatusCode::FORBIDDEN, axum::Json(json!({"status": "error", "error_type": "TokenException", "message": "Incorrect `api_key` or `access_token`."}))).into_response();
        }
        assert_eq!(
            req.method(),
            axum::http::Method::GET,
            "the zerodha server must only read"
        );
        let path = req.uri().path().to_string();
        let data = if path.starts_with("/quote") {
            json!({"NSE:INFY": {"instrument_token": 408065, "last_price": 1510.0, "lower_circuit_limit": 1359.0, "upper_circuit_limit": 1661.0}})
        } else {
            json!({"path": path})
        };
        axum::Json(json!({"status": "success", "data": data})).into_response()
    }
    let app = axum::Router::new().fallback(any);
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(l, app).await;
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn every_tool_through_an_rmcp_client_on_both_backends() {
    let news = NewsFake::start().await;
    news.set_articles(vec![article(
        "Economic Times",
        "Infosys wins a large deal",
        "A $1bn deal.",
    )]);
    let kite = kite_account_fake().await;
    for db in support::db::test_stores().await {
        let store = db.store.clone();
        store.upsert_instruments(&[infy()]).await.unwrap();
        let key = InstrumentKey::new("NSE", "INFY");
        store
            .upsert_candles(&key, Interval::Minute15, &candles())
            .await
            .unwrap();
        let p = store
            .insert_proposal(&NewProposal {
                key: key.clone(),
                side: Side::Buy,
                quantity: 10,
                entry: Paise(150_000),
                stop: Paise(148_000),
                target: Paise(154_000),
                product: Product::Mis,
                confidence: 0.6,
                rationale: "LLM: test".into(),
                created_at: now(),
                expires_at: now() + Duration::minutes(10),
            })
            .await
            .unwrap()
            .unwrap();
        let trace = mft::domain::AnalysisTrace {
            id: 0,
            created_at: now(),
            key: key.clone(),
            analyst: "llm".into(),
            model: "fake-model".into(),
            prompt_hash: "ab".repeat(32),
            tool_calls: vec![mft::domain::ToolCallRecord {
                server: "market_data".into(),
                tool: "get_candles".into(),
                arguments: "{}".into(),
                result_bytes: 10,
                duration_ms: 1,
                error: None,
            }],
            tokens_in: 100,
            tokens_out: 20,
            cost: Paise(3),
            latency_ms: 12,
            verdict: Some(json!({"action": "buy"})),
            error: None,
            proposal_id: None,
        };
        let tid = store.insert_analysis_trace(&trace).await.unwrap();
        store.link_analysis_trace(tid, p.id).await.unwrap();

        let mut settings = Settings::default();
        settings.news.api_key = Some(Secret::new("news-key"));
        settings.news.api_url = Some(news.url());
        settings.zerodha.api_key = Some(Secret::new("kite-key"));
        settings.zerodha.access_token = Some(Secret::new("good"));
        settings.zerodha.api_url = kite.clone();
        let ctx = McpContext::new(
            store.clone(),
            Arc::new(settings.clone()),
            Arc::new(ManualClock::new(now() + Duration::minutes(5))),
        );

        // market_data
        let c = hub::connect_named(&ctx, "market_data").await.unwrap();
        let names: Vec<String> = c
            .list_all_tools()
            .await
            .unwrap()
            .into_iter()
            .map(|t| t.name.to_string())
            .collect();
        assert_eq!(names.len(), 4, "{names:?}");
        for t in c.list_all_tools().await.unwrap() {
            assert!(t.output_schema.is_some(), "{} has no output schema", t.name);
        }
        let v = ok(
            &call(&c, "list_instruments", json!({"query": "infosys"})).await,
            "list_instruments",
        );
        assert_eq!(v["instruments"][0]["symbol"], "NSE:INFY", "{} {v}", db.name);
        assert_eq!(v["instruments"][0]["tick_size"], 0.05);
        let e = err(
            &call(&c, "list_instruments", json!({"query": "NOSUCH"})).await,
            "list_instruments",
        );
        assert!(e.contains("no instrument matches"), "{e}");
        let v = ok(
            &call(
                &c,
                "get_candles",
                json!({"symbol": "NSE:INFY", "interval": "15minute", "limit": 10}),
            )
            .await,
            "get_candles",
        );
        let cs = v["candles"].as_array().unwrap();
        assert_eq!(cs.len(), 10);
        // The forming candle (opened at `now`) is not returned; the last closed one opened at 15:15 IST.
        assert_eq!(cs[9]["time"], "2026-11-25T15:15:00+05:30", "{}", cs[9]);
        assert!(cs[0]["time"].as_str() < cs[9]["time"].as_str());
        let v = ok(
            &call(
                &c,
                "get_candles",
                json!({"symbol": "NSE:INFY", "interval": "15minute"}),
            )
            .await,
            "get_candles",
        );
        assert_eq!(v["candles"].as_array().unwrap().len(), 200, "default limit");
        let e = err(
            &call(
                &c,
                "get_candles",
                json!({"symbol": "NSE:XYZ", "interval": "15minute"}),
            )
            .await,
            "get_candles",
        );
        assert!(
            e.contains("no candles for NSE:XYZ 15minute; known series: NSE:INFY 15minute"),
            "{e}"
        );
        let e = err(
            &call(
                &c,
                "get_candles",
                json!({"symbol": "NSE:INFY", "interval": "15minute", "limit": 5000}),
            )
            .await,
            "get_candles",
        );
        assert!(e.contains("limit 5000 must be from 1 to 2000"), "{e}");
        let e = err(
            &call(
                &c,
                "get_candles",
                json!({"symbol": "NSE:INFY", "interval": "7minute"}),
            )
            .await,
            "get_candles",
        );
        assert!(e.contains("interval \"7minute\" is not one of"), "{e}");
        let v = ok(
            &call(&c, "get_last_price", json!({"symbols": ["NSE:INFY"]})).await,
            "get_last_price",
        );
        // The Kite session is configured: the live LTP path is tried first; the fake's /quote/ltp
        // answer has no last_price for that shape, so the stored candle is used.
        assert!(v["prices"][0]["price"].as_f64().unwrap() > 0.0, "{v}");
        assert!(v["prices"][0]["time"].as_str().unwrap().ends_with("+05:30"));
        let v = ok(&call(&c, "list_series", json!({})).await, "list_series");
        assert_eq!(v["series"][0]["symbol"], "NSE:INFY");
        assert_eq!(v["series"][0]["rows"], 301);

        // technical_analysis
        let c = hub::connect_named(&ctx, "technical_analysis")
            .await
            .unwrap();
        let v = ok(
            &call(&c, "list_indicators", json!({})).await,
            "list_indicators",
        );
        assert!(
            v["indicators"]
                .as_array()
                .unwrap()
                .iter()
                .any(|i| i["name"] == "rsi" && i["params"][0]["default"] == 14.0)
        );
        let v = ok(
            &call(
                &c,
                "compute",
                json!({"indicator": "sma", "params": {"period": 3}, "close": [1.0, 2.0, 3.0, 4.0]}),
            )
            .await,
            "compute",
        );
        assert_eq!(v["outputs"]["sma"], json!([null, null, 2.0, 3.0]));
        let e = err(
            &call(&c, "compute", json!({"indicator": "atr", "close": [1.0]})).await,
            "compute",
        );
        assert!(
            e.contains("atr needs the arrays high, low, close; high is missing"),
            "{e}"
        );
        let v = ok(&call(&c, "compute_for", json!({"symbol": "NSE:INFY", "interval": "15minute", "indicators": ["rsi14", "ema20"], "last": 2})).await, "compute_for");
        let rows = v["rows"].as_array().unwrap();
        assert_eq!(rows.len(), 2);
        // Identical to `mft ta` (the same snapshot over every stored candle).
        let all = store
            .candles(&key, Interval::Minute15, None, None)
            .await
            .unwrap();
        let snap = mft::ta::snapshot(&all).unwrap();
        assert_eq!(
            rows[1]["values"]["rsi14"].as_f64(),
            snap.last().unwrap().rsi14
        );
        assert_eq!(
            rows[1]["values"]["ema20"].as_f64(),
            snap.last().unwrap().ema20
        );

        // news
        let c = hub::connect_named(&ctx, "news").await.unwrap();
        let v = ok(
            &call(&c, "search_news", json!({"query": "Infosys", "limit": 5})).await,
            "search_news",
        );
        assert_eq!(v["articles"][0]["source"], "Economic Times");
        assert_eq!(v["cached"], false);
        let v = ok(
            &call(&c, "search_news", json!({"query": "Infosys", "limit": 5})).await,
            "search_news",
        );
        assert_eq!(
            v["cached"], true,
            "the second identical search is served from the store"
        );
        let v = ok(
            &call(&c, "headlines", json!({"symbol": "NSE:INFY", "days": 2})).await,
            "headlines",
        );
        assert_eq!(
            v["query"], "\"INFOSYS\"",
            "headlines searches the company name"
        );
        let q = news.queries();
        assert!(
            q.iter()
                .any(|q| q.contains("sortBy=publishedAt") && q.contains("pageSize=5")),
            "{q:?}"
        );
        assert!(news.keys().iter().all(|k| k == "news-key"));
        news.set_status(Some(429));
        let e = err(
            &call(&c, "search_news", json!({"query": "TCS"})).await,
            "search_news",
        );
        assert!(e.contains("429"), "{e}");
        news.set_status(Some(401));
        let e = err(
            &call(&c, "search_news", json!({"query": "Wipro"})).await,
            "search_news",
        );
        assert!(e.contains("401") && e.contains("NEWS_API_KEY"), "{e}");
        news.set_status(None);

        // zerodha: read-only, every tool annotated so
        let c = hub::connect_named(&ctx, "zerodha").await.unwrap();
        let tools = c.list_all_tools().await.unwrap();
        let mut names: Vec<String> = tools.iter().map(|t| t.name.to_string()).collect();
        names.sort();
        assert_eq!(
            names,
            [
                "get_holdings",
                "get_margins",
                "get_order_history",
                "get_orders",
                "get_positions",
                "get_profile",
                "get_quote",
                "get_trades"
            ]
        );
        for t in &tools {
            assert_eq!(
                t.annotations.as_ref().and_then(|a| a.read_only_hint),
                Some(true),
                "{}",
                t.name
            );
        }
        for (tool, args, path) in [
            ("get_profile", json!({}), "/user/profile"),
            ("get_margins", json!({}), "/user/margins"),
            ("get_positions", json!({}), "/portfolio/positions"),
            ("get_holdings", json!({}), "/portfolio/holdings"),
            ("get_orders", json!({}), "/orders"),
            (
                "get_order_history",
                json!({"order_id": "151220000000000"}),
                "/orders/151220000000000",
            ),
            ("get_trades", json!({}), "/trades"),
        ] {
            let v = ok(&call(&c, tool, args).await, tool);
            assert_eq!(v["data"]["path"], path, "{tool}");
        }
        let v = ok(
            &call(&c, "get_quote", json!({"symbols": ["NSE:INFY"]})).await,
            "get_quote",
        );
        assert_eq!(v["data"]["NSE:INFY"]["upper_circuit_limit"], 1661.0);

        let mut no_session = settings.clone();
        no_session.zerodha.access_token = None;
        let ctx2 = McpContext::new(
            store.clone(),
            Arc::new(no_session),
            Arc::new(ManualClock::new(now())),
        );
        let c2 = hub::connect_named(&ctx2, "zerodha").await.unwrap();
        let e = err(
            &call(&c2, "get_positions", json!({})).await,
            "get_positions",
        );
        assert!(e.contains("no Kite session") && e.contains("/login"), "{e}");
        let mut expired = settings.clone();
        expired.zerodha.access_token = Some(Secret::new("expired"));
        let ctx3 = McpContext::new(
            store.clone(),
            Arc::new(expired),
            Arc::new(ManualClock::new(now())),
        );
        let c3 = hub::connect_named(&ctx3, "zerodha").await.unwrap();
        let e = err(&call(&c3, "get_margins", json!({})).await, "get_margins");
        assert!(e.contains("Kite session expired: send /login"), "{e}");
        let mut no_news = settings.clone();
        no_news.news.api_key = None;
        let ctx4 = McpContext::new(
            store.clone(),
            Arc::new(no_news),
            Arc::new(ManualClock::new(now())),
        );
        let c4 = hub::connect_named(&ctx4, "news").await.unwrap();
        let e = err(
            &call(&c4, "headlines", json!({"symbol": "NSE:INFY"})).await,
            "headlines",
        );
        assert!(e.contains("news is not configured"), "{e}");

        // trade_log
        let c = hub::connect_named(&ctx, "trade_log").await.unwrap();
        let v = ok(&call(&c, "list_trades", json!({})).await, "list_trades");
        assert_eq!(v["trades"], json!([]));
        let v = ok(
            &call(&c, "performance", json!({"symbol": "NSE:INFY"})).await,
            "performance",
        );
        assert_eq!(v["trades"], 0);
        let v = ok(
            &call(&c, "list_proposals", json!({"status": "pending"})).await,
            "list_proposals",
        );
        assert_eq!(v["proposals"][0]["id"], p.id);
        let e = err(
            &call(&c, "list_proposals", json!({"status": "maybe"})).await,
            "list_proposals",
        );
        assert!(e.contains("is not one of pending"), "{e}");
        let v = ok(
            &call(&c, "get_proposal", json!({"id": p.id})).await,
            "get_proposal",
        );
        assert_eq!(v["proposal"]["entry"], 1500.0);
        assert_eq!(v["trace"]["model"], "fake-model", "{v}");
        assert_eq!(v["trace"]["tool_calls"][0]["tool"], "get_candles");
        let e = err(
            &call(&c, "get_proposal", json!({"id": 999_999})).await,
            "get_proposal",
        );
        assert!(e.contains("no proposal #999999"), "{e}");

        // The hub sees every tool as <server>__<tool>.
        let h = hub::Hub::in_process(&ctx).await.unwrap();
        assert_eq!(h.tools().len(), 4 + 3 + 2 + 8 + 4);
        assert!(h.resolve("market_data__get_candles").is_some());
        assert!(h.resolve("technical_analysis__compute_for").is_some());
        assert_eq!(SERVERS.len(), 5);
    }
}

#[test]
fn round_trips_pair_fills_and_performance_adds_up() {
    use mft::domain::Fill;
    use mft::mcp::trade_log::{performance, round_trips};
    let k = InstrumentKey::new("NSE", "INFY");
    let f = |side, q, price: i64, m| Fill {
        order_id: 1,
        key: k.clone(),
        side,
        quantity: q,
        price: Paise(price * 100),
        ts: now() + Duration::minutes(m),
    };
    let fills = vec![
        f(Side::Buy, 10, 100, 0),
        f(Side::Sell, 10, 110, 30), // +100
        f(Side::Sell, 5, 120, 40),
        f(Side::Buy, 5, 130, 100), // -50 (short)
        f(Side::Buy, 4, 100, 200),
        f(Side::Sell, 4, 90, 260), // -40
    ];
    let t: Vec<_> = round_trips(&fills).into_iter().map(|(_, t, _)| t).collect();
    assert_eq!(t.len(), 3);
    assert_eq!(
        (
            t[0].side.as_str(),
            t[0].entry,
            t[0].exit,
            t[0].pnl,
            t[0].hold_minutes
        ),
        ("BUY", 100.0, 110.0, 100.0, 30)
    );
    assert_eq!(
        (t[1].side.as_str(), t[1].entry, t[1].exit, t[1].pnl),
        ("SELL", 120.0, 130.0, -50.0)
    );
    let p = performance(&t);
    assert_eq!(p.trades, 3);
    assert_eq!(p.wins, 1);
    assert_eq!(p.net_pnl, 10.0);
    assert!((p.profit_factor.unwrap() - 100.0 / 90.0).abs() < 1e-9);
    assert_eq!(p.max_drawdown, 90.0);
}
