//! The status page: /healthz open, / behind STATUS_TOKEN (bearer or ?token=), no secret in it.

use chrono::{TimeZone, Utc};
use mft::config::Secret;
use mft::domain::{
    Actor, Command, InstrumentKey, Paise, Position, Product, Proposal, ProposalStatus, Request,
    Side,
};
use mft::ports::{CommandError, CommandHandler};
use mft::ports::{PositionView, Reply, StatusReport};
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "st-9f8e7d6c5b4a";

#[derive(Default)]
struct FakeHandler {
    requests: Mutex<Vec<Request>>,
}

#[async_trait::async_trait]
impl CommandHandler for FakeHandler {
    async fn handle(&self, req: Request) -> Result<Reply, CommandError> {
        self.requests.lock().unwrap().push(req);
        let t = Utc.with_ymd_and_hms(2026, 11, 25, 8, 45, 0).unwrap();
        Ok(Reply::Status(StatusReport {
            mode: "paper".into(),
            halted: true,
            paused: false,
            last_scan: None,
            next_scan: None,
            realized_today: Paise(-12_345),
            unrealized: Paise(500),
            positions: vec![PositionView {
                position: Position {
                    key: InstrumentKey::new("NSE", "M&M"),
                    product: Product::Mis,
                    quantity: 10,
                    avg_price: Paise(150_000),
                    realized_pnl: Paise(0),
                    stop: Some(Paise(148_000)),
                    target: None,
                    opened_at: t,
                    updated_at: t,
                },
                last_price: Some(Paise(150_050)),
                unrealized: Paise(500),
            }],
            pending: vec![Proposal {
                id: 9,
                key: InstrumentKey::new("NSE", "INFY"),
                side: Side::Buy,
                quantity: 5,
                entry: Paise(150_000),
                stop: Paise(148_000),
                target: Paise(154_000),
                product: Product::Mis,
                confidence: 0.6,
                rationale: "<script>alert(1)</script>".into(),
                status: ProposalStatus::Pending,
                created_at: t,
                expires_at: t,
                chart_path: None,
                message_id: None,
                decided_at: None,
                decided_by: None,
                outcome: None,
            }],
            loss_used: Paise(12_345),
            loss_limit: Paise(200_000),
            orders_today: 2,
            orders_limit: 20,
            backtest: None,
        }))
    }
}

/// Serves `app` on 127.0.0.1:0 and returns its base URL.
async fn spawn(app: axum::Router) -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    format!("http://{addr}")
}

async fn get(base: &str, uri: &str, bearer: Option<&str>) -> (u16, String, String) {
    let mut req = reqwest::Client::new().get(format!("{base}{uri}"));
    if let Some(b) = bearer {
        req = req.header("authorization", format!("Bearer {b}"));
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let ctype = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, ctype, resp.text().await.unwrap())
}

#[tokio::test]
async fn healthz_is_open_and_json() {
    let app = spawn(mft::web::router(
        Arc::new(FakeHandler::default()),
        Some(Secret::new(TOKEN)),
    ))
    .await;
    let (status, ctype, body) = get(&app, "/healthz", None).await;
    assert_eq!(status, 200);
    assert!(ctype.starts_with("application/json"));
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v, serde_json::json!({"status": "ok"}));
}

#[tokio::test]
async fn the_page_needs_the_token_when_one_is_set() {
    let handler = Arc::new(FakeHandler::default());
    let app = spawn(mft::web::router(handler.clone(), Some(Secret::new(TOKEN)))).await;
    for (uri, bearer) in [
        ("/", None),
        ("/", Some("wrong")),
        ("/?token=wrong", None),
        ("/?token=", None),
        ("/", Some("st-9f8e7d6c5b4")),
    ] {
        let (status, _, body) = get(&app, uri, bearer).await;
        assert_eq!(status, 401, "{uri} {bearer:?}");
        assert!(!body.contains(TOKEN));
    }
    assert!(
        handler.requests.lock().unwrap().is_empty(),
        "no status without the token"
    );

    let (status, ctype, body) = get(&app, "/", Some(TOKEN)).await;
    assert_eq!(status, 200);
    assert!(ctype.starts_with("text/html"));
    assert!(
        !body.contains(TOKEN),
        "the token must never appear in the page"
    );
    let (status, _, body) = get(&app, &format!("/?token={TOKEN}"), None).await;
    assert_eq!(status, 200);
    assert!(
        !body.contains(TOKEN),
        "the token must never appear in the page"
    );
    let reqs = handler.requests.lock().unwrap().clone();
    assert_eq!(reqs.len(), 2);
    assert!(
        reqs.iter()
            .all(|r| r.command == Command::Status && r.actor == Actor::Cli)
    );
}

#[tokio::test]
async fn the_page_shows_the_status_escaped() {
    let app = spawn(mft::web::router(Arc::new(FakeHandler::default()), None)).await;
    let (status, _, body) = get(&app, "/", None).await;
    assert_eq!(status, 200);
    for want in [
        "<td id=\"mode\">paper</td>",
        "HALTED",
        "<td id=\"last-scan\">none yet</td>",
        "realized -₹123.45, unrealized +₹5.00",
        "₹123.45 of ₹2,000.00",
        "Open positions (1)",
        "NSE:M&amp;M",
        "₹1,500.50",
        "Pending proposals (1)",
        "NSE:INFY",
    ] {
        assert!(body.contains(want), "{want:?} missing from {body}");
    }
    assert!(!body.contains("<script>"), "rationale is not shown raw");
}

#[tokio::test]
async fn serve_binds_and_stops_on_shutdown() {
    let shutdown = CancellationToken::new();
    // Find a free port, then serve on it.
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let task = tokio::spawn(mft::web::serve(
        addr.to_string(),
        Arc::new(FakeHandler::default()),
        Some(Secret::new(TOKEN)),
        shutdown.clone(),
    ));
    let url = format!("http://{addr}/healthz");
    let mut ok = false;
    for _ in 0..100 {
        if let Ok(r) = reqwest::get(&url).await {
            assert_eq!(r.status().as_u16(), 200);
            ok = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(ok, "status page never answered");
    let r = reqwest::get(format!("http://{addr}/")).await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    shutdown.cancel();
    let res = tokio::time::timeout(std::time::Duration::from_secs(10), task)
        .await
        .expect("serve did not stop")
        .unwrap();
    assert!(res.is_ok());

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let e = mft::web::serve(
        taken.local_addr().unwrap().to_string(),
        Arc::new(FakeHandler::default()),
        None,
        CancellationToken::new(),
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("STATUS_ADDR"), "{e}");
}
