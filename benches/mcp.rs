//! The MCP layer's costs: one tool call's round trip in-process (rmcp client over the in-memory
//! duplex) and over streamable HTTP on loopback, p50/p99; the Analysis Agent's own overhead per
//! analysis against the scripted OpenAI-compatible fake (one tool call + verdict), with the
//! fake's time (its measured HTTP round trip per request) taken out; and a rules-only scan of
//! 500 instruments x 300 candles on SQLite.
//!
//! Run: `cargo bench --bench mcp` (release). Targets: in-process p99 <= 1 ms, agent overhead
//! <= 5 ms per analysis, rules-only scan <= 1 s.

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use mft::agents::{Analyst, MetaAgent, RuleAnalyst};
use mft::clock::ManualClock;
use mft::config::{AnalystMode, Secret, Settings};
use mft::domain::{Candle, InstrumentKey, Interval};
use mft::mcp::analyst::LlmAnalyst;
use mft::mcp::hub::{Hub, connect_named};
use mft::mcp::llm::{ChatClient, Prompts};
use mft::mcp::{McpContext, serve};
use mft::store::Store;
use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::service::RunningService;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::json;
use support::openai_fake::{OpenAiFake, Step};
use tokio_util::sync::CancellationToken;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 25, 7, 31, 0).unwrap()
}

/// `n` closed 15-minute candles ending one minute before [`now`], gently rising (no fresh cross).
fn candles(n: usize, base: f64) -> Vec<Candle> {
    let last_close = now() - chrono::Duration::minutes(1);
    let first = last_close - chrono::Duration::minutes(15 * n as i64);
    (0..n)
        .map(|i| {
            let c = base + i as f64 * 0.05 + (i as f64 * 0.7).sin() * 0.3;
            Candle {
                ts: first + chrono::Duration::minutes(15 * i as i64),
                open: c,
                high: c + 0.5,
                low: c - 0.5,
                close: c,
                volume: 1000 + i as i64,
                oi: None,
            }
        })
        .collect()
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn report(what: &str, mut v: Vec<Duration>) -> Duration {
    v.sort();
    let (p50, p99) = (pct(&v, 0.5), pct(&v, 0.99));
    println!(
        "{what:<58} n={:<5} p50 {:>8.3} ms  p99 {:>8.3} ms  max {:>8.3} ms",
        v.len(),
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        v.last().unwrap().as_secs_f64() * 1e3
    );
    p50
}

async fn time_calls(
    client: &RunningService<rmcp::RoleClient, ()>,
    tool: &str,
    args: serde_json::Value,
    n: usize,
) -> Vec<Duration> {
    let args = args.as_object().cloned().unwrap_or_default();
    let mut out = Vec::with_capacity(n);
    for i in 0..n + n / 10 {
        let t = Instant::now();
        let r = client
            .call_tool(CallToolRequestParams::new(tool.to_string()).with_arguments(args.clone()))
            .await
            .expect("tool call");
        let d = t.elapsed();
        assert_ne!(r.is_error, Some(true), "{tool}: {:?}", r.content);
        // The first tenth warms caches and connections.
        if i >= n / 10 {
            out.push(d);
        }
    }
    out
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let store = Store::connect(&url).await.unwrap();
    let key = InstrumentKey::new("NSE", "INFY");
    store
        .upsert_candles(&key, Interval::Minute15, &candles(300, 1500.0))
        .await
        .unwrap();
    let clock = ManualClock::new(now());

    // 1. Tool round trips.
    let settings = Arc::new(Settings::default());
    let ctx = McpContext::new(store.clone(), settings.clone(), Arc::new(clock.clone()));
    let ta = connect_named(&ctx, "technical_analysis").await.unwrap();
    let md = connect_named(&ctx, "market_data").await.unwrap();
    let compute = json!({"indicator": "ema", "params": {"period": 5}, "close": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]});
    let candles_args = json!({"symbol": "NSE:INFY", "interval": "15minute", "limit": 20});
    let in_compute = report(
        "in-process technical_analysis.compute (8 values)",
        time_calls(&ta, "compute", compute.clone(), 2000).await,
    );
    report(
        "in-process market_data.get_candles (20 of 300, SQLite)",
        time_calls(&md, "get_candles", candles_args.clone(), 2000).await,
    );

    let listener = serve::bind("127.0.0.1:0", Some("bench-token"))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let ct = CancellationToken::new();
    tokio::spawn(serve::serve_http(
        ctx.clone(),
        &["technical_analysis", "market_data"],
        listener,
        Some("bench-token".into()),
        ct.clone(),
    ));
    let http = |name: &str| {
        StreamableHttpClientTransport::from_config(
            StreamableHttpClientTransportConfig::with_uri(format!("http://{addr}/mcp/{name}"))
                .auth_header("bench-token"),
        )
    };
    let hta = ().serve(http("technical_analysis")).await.unwrap();
    let hmd = ().serve(http("market_data")).await.unwrap();
    let http_compute = report(
        "HTTP technical_analysis.compute (8 values)",
        time_calls(&hta, "compute", compute, 500).await,
    );
    report(
        "HTTP market_data.get_candles (20 of 300, SQLite)",
        time_calls(&hmd, "get_candles", candles_args, 500).await,
    );
    println!(
        "HTTP / in-process (compute p50): {:.1}x",
        http_compute.as_secs_f64() / in_compute.as_secs_f64()
    );
    ct.cancel();

    // 2. The agent's own overhead per analysis.
    let fake = OpenAiFake::start().await;
    let mut s = Settings::default();
    s.openai.base_url = Some(fake.base_url());
    s.openai.api_key = Some(Secret::new("bench"));
    s.openai.model = Some("bench-model".into());
    s.llm.daily_token_limit = 0;
    s.llm.daily_cost_cap = mft::domain::Paise(0);
    s.llm.max_analyses_per_scan = 1_000_000;
    let s = Arc::new(s);
    let ctx = McpContext::new(store.clone(), s.clone(), Arc::new(clock.clone()));
    let hub = Hub::in_process(&ctx).await.unwrap();
    let agent = LlmAnalyst::new(
        hub,
        ChatClient::from_settings(&s),
        store.clone(),
        s.clone(),
        Arc::new(clock.clone()),
        Prompts::load(&s.analysis).unwrap(),
        AnalystMode::Llm,
    );
    let last = store
        .last_candles(&key, Interval::Minute15, 300)
        .await
        .unwrap();
    let price = last.last().unwrap().close;
    let entry = (price / 0.05).round() * 0.05;
    let verdict = json!({"action": "buy", "entry": entry, "stop": entry - 2.0, "target": entry + 4.0,
                         "confidence": 0.6, "rationale": "bench", "evidence": []});
    let script = || {
        vec![
            Step::tool(
                "market_data__get_candles",
                json!({"symbol": "NSE:INFY", "interval": "15minute", "limit": 50}),
            ),
            Step::verdict(verdict.clone()),
        ]
    };
    const ANALYSES: usize = 300;
    let mut total = Vec::new();
    for i in 0..ANALYSES + 30 {
        fake.clear();
        fake.script(script());
        let t = Instant::now();
        let sig = agent
            .analyse(&key, Interval::Minute15, &last)
            .await
            .unwrap();
        let d = t.elapsed();
        assert!(matches!(sig, mft::domain::Signal::Entry(_)), "{sig:?}");
        if i >= 30 {
            total.push(d);
        }
    }
    // The fake's time: a chat request of the same size, straight to the fake.
    let body = fake.requests().last().cloned().unwrap();
    let client = reqwest::Client::new();
    let mut rtt = Vec::new();
    for i in 0..ANALYSES * 2 + 30 {
        fake.clear();
        fake.script(vec![Step::verdict(verdict.clone())]);
        let t = Instant::now();
        let r = client
            .post(format!("{}/chat/completions", fake.base_url()))
            .json(&body)
            .send()
            .await
            .unwrap();
        let _ = r.bytes().await.unwrap();
        if i >= 30 {
            rtt.push(t.elapsed());
        }
    }
    let p_total = report("analysis (1 tool call + verdict, fake endpoint)", total);
    let p_rtt = report("  fake endpoint round trip per request", rtt);
    let overhead = p_total.saturating_sub(p_rtt * 2);
    println!(
        "agent overhead per analysis (p50 total - 2 x p50 fake round trip): {:.3} ms (target <= 5 ms)",
        overhead.as_secs_f64() * 1e3
    );

    // 3. Rules-only scan: 500 instruments x 300 candles.
    let mut s = Settings::default();
    let keys: Vec<InstrumentKey> = (0..500)
        .map(|i| InstrumentKey::new("NSE", &format!("SCAN{i:03}")))
        .collect();
    for (i, k) in keys.iter().enumerate() {
        store
            .upsert_candles(k, Interval::Minute15, &candles(300, 100.0 + i as f64))
            .await
            .unwrap();
    }
    s.trading.watchlist = keys;
    s.trading.lookback_bars = 300;
    s.charts.dir = dir.path().join("charts").to_string_lossy().into_owned();
    let s = Arc::new(s);
    let rules: Arc<dyn Analyst> = Arc::new(RuleAnalyst::with_clock(
        s.strategy.clone(),
        Arc::new(clock.clone()),
    ));
    let meta = MetaAgent::new(store.clone(), rules, s.clone(), Arc::new(clock.clone()));
    let mut scans = Vec::new();
    for i in 0..6 {
        let t = Instant::now();
        let out = meta.scan(None, &[]).await.unwrap();
        let d = t.elapsed();
        assert_eq!(out.summary.instruments, 500);
        assert!(out.errors.is_empty(), "{:?}", &out.errors[..1]);
        if i > 0 {
            scans.push(d);
        }
    }
    report(
        "rules-only scan, 500 instruments x 300 candles (SQLite)",
        scans,
    );
}
